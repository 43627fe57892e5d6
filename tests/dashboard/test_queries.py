"""dashboard.queries against a real database written by real campaigns, checked against the
repository's own reads (db.repository), and the read-only engine's guarantees."""

from __future__ import annotations

import hashlib
import math
import sqlite3

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from dashboard import queries as q
from db import repository as repo
from db.engine import DatabaseError, get_engine, get_reader


@pytest.fixture()
def reader(browse_db):
    return get_reader(browse_db.url)


@pytest.fixture()
def writer(browse_db):
    return get_engine(browse_db.url)


def _same(a, b) -> bool:
    if a is None or (isinstance(a, float) and math.isnan(a)):
        return b is None or (isinstance(b, float) and math.isnan(b))
    return a == pytest.approx(b, rel=0, abs=0)


def test_campaign_table_matches_each_campaigns_summary(browse_db, reader, writer):
    table = q.campaign_table(reader, best_known=lambda p: 0.380924 if p == "erdos_min_overlap" else None)
    assert list(table.columns) == list(q.CAMPAIGN_COLUMNS)
    campaigns = repo.list_campaigns(writer)
    assert list(table["id"]) == sorted((c.id for c in campaigns), reverse=True)  # newest first
    for row in table.itertuples():
        summary = repo.summarize(writer, row.id)
        assert row.steps == summary.steps
        assert row.evaluations == summary.evaluations
        assert _same(row.best_score, summary.best_score)
        assert _same(row.seed_score, summary.seed_score)
        assert row.cost_usd == pytest.approx(summary.cost_usd)
        assert row.prompt_tokens == summary.prompt_tokens
        assert row.status == summary.campaign.status == "completed"
        assert row.duration_s == pytest.approx(summary.duration_s)
        # minimising: best known / best, so below 1.0 until the best-known bound is matched
        assert row.best_known_ratio == pytest.approx(0.380924 / summary.best_score)
        assert 0.9 < row.best_known_ratio < 1.0


def test_campaign_table_without_a_best_known_lookup_leaves_the_ratio_empty(reader):
    table = q.campaign_table(reader)
    assert table["best_known"].isna().all() and table["best_known_ratio"].isna().all()


def test_campaign_info_totals_and_best(browse_db, reader, writer):
    info = q.campaign_info(reader, browse_db.simpletes)
    summary = repo.summarize(writer, browse_db.simpletes)
    assert info["eval_status"] == summary.by_status
    assert info["step_status"] == summary.step_status
    assert info["steps"] == summary.steps == 32
    assert info["candidates"] == summary.candidates
    assert info["best_candidate_id"] == summary.best_candidate_id
    assert info["best_score"] == summary.best_score
    assert info["trajectories"] == 2
    assert info["config"]["chains"] == 2 and info["config"]["k"] == 4
    assert info["first_step_at"] <= info["last_step_at"]
    assert q.campaign_info(reader, 10_000) is None


def test_campaign_points_are_every_step_in_order_with_its_evaluation(browse_db, reader, writer):
    points = q.campaign_points(reader, browse_db.simpletes)
    steps = repo.steps_of(writer, browse_db.simpletes)
    assert list(points["step_id"]) == [s.id for s in steps]
    assert list(points.columns) == list(q.POINT_COLUMNS)
    assert str(points["candidate_id"].dtype) == "Int64"
    assert str(points["created_at"].dt.tz) == "UTC"
    trace = {step_id: (status, score) for step_id, status, score in repo.evaluation_trace(writer, browse_db.simpletes)}
    evaluated = points[points["eval_status"].notna()]
    assert len(evaluated) == len(trace)
    for row in evaluated.itertuples():
        status, score = trace[row.step_id]
        assert row.eval_status == status
        assert _same(row.score, score)
    assert set(points["trajectory"]) == {0, 1}


def test_trajectory_table_and_nodes_agree_with_the_points(browse_db, reader):
    points = q.campaign_points(reader, browse_db.simpletes)
    table = q.trajectory_table(reader, browse_db.simpletes)
    assert list(table["index"]) == [0, 1]
    assert table["steps"].sum() == len(points)
    for row in table.itertuples():
        mine = points[points["trajectory"] == row.index]
        assert row.steps == len(mine)
        assert row.candidates == mine["candidate_id"].notna().sum()
        ok = mine[mine["eval_status"] == "ok"]["score"]
        assert row.ok == len(ok)
        assert row.best_score == pytest.approx(ok.min())  # erdos_min_overlap minimises
        nodes = q.trajectory_nodes(reader, int(row.trajectory_id))
        assert list(nodes.columns) == list(q.NODE_COLUMNS)
        assert sorted(nodes["step_id"]) == sorted(mine["step_id"])
        keys = list(zip(nodes["index"], nodes["sample"]))
        assert keys == sorted(keys)
        assert set(nodes["sample"]) == {0, 1, 2, 3}  # k = 4


def test_candidate_detail_has_program_parent_evaluation_prompt_and_children(browse_db, reader, writer):
    points = q.campaign_points(reader, browse_db.simpletes)
    steps = {s.id: s for s in repo.steps_of(writer, browse_db.simpletes)}
    # a proposal from the second move: its parent is a program of the first move, or the seed
    row = points[points["candidate_id"].notna()].iloc[-1]
    detail = q.candidate_detail(reader, int(row["candidate_id"]))
    cand, evaluation = repo.get_candidate(writer, int(row["candidate_id"]))
    step = steps[int(row["step_id"])]
    assert detail["candidate"]["code"] == cand.code
    assert detail["candidate"]["program_hash"] == cand.program_hash
    assert detail["evaluation"]["status"] == evaluation.status
    assert detail["evaluation"]["feedback"] == evaluation.feedback
    assert detail["step"]["messages"] == step.messages  # the exact prompt
    assert detail["step"]["response"] == step.response  # the raw response
    assert detail["step"]["trajectory"] == row["trajectory"]
    parent, _ = repo.get_candidate(writer, step.parent_candidate_id)
    assert detail["parent"]["id"] == parent.id and detail["parent"]["code"] == parent.code
    # the parent lists this candidate among its children
    assert int(row["candidate_id"]) in q.candidate_detail(reader, parent.id)["children"]
    assert q.candidate_detail(reader, 10**9) is None


def test_the_seed_program_has_no_step_and_no_parent(browse_db, reader):
    best = q.campaign_candidate_ids(reader, browse_db.simpletes)
    seed = best[best["role"] == "seed"]
    assert len(seed) == 1
    detail = q.candidate_detail(reader, int(seed["candidate_id"].iloc[0]))
    assert detail["step"] is None and detail["parent"] is None
    assert detail["evaluation"]["status"] == "ok"
    assert len(detail["children"]) > 0  # the first move of every chain starts from the seed
    proposals = best[best["role"] != "seed"]
    assert list(proposals["score"]) == sorted(proposals["score"])  # minimise: best first


def test_comparison_and_export_tables(browse_db, reader, writer):
    table = q.comparison_table(reader)
    row = table[table["id"] == browse_db.comparison].iloc[0]
    stored, runs = repo.get_comparison(writer, browse_db.comparison)
    assert row["strategies"] == "simpletes, best_of_n"
    assert row["seeds"] == 2 and row["runs"] == len(runs) == 4 and row["campaigns"] == 4
    assert row["status"] == stored.status == "completed"
    detail = q.comparison_detail(reader, browse_db.comparison)
    assert detail["results"] == stored.results
    assert [(r["strategy"], r["seed"]) for r in detail["runs"]] == [(r.strategy, r.seed) for r in runs]
    assert q.comparison_detail(reader, 999) is None

    exports = q.export_table(reader)
    row = exports[exports["id"] == browse_db.export].iloc[0]
    stored = repo.get_export(writer, browse_db.export)
    assert row["rows"] == sum(n for by_split in stored.row_counts.values() for n in by_split.values()) > 0
    assert row["campaigns"] == str(browse_db.simpletes)
    assert row["command"] == stored.command and row["status"] == "completed"


def test_database_status(tmp_path, browse_db, reader):
    assert q.database_status(reader) == "ok"
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()  # a file with no tables
    assert q.database_status(get_reader(f"sqlite:///{empty}")) == "empty"
    fresh = f"sqlite:///{tmp_path / 'fresh.db'}"
    get_engine(fresh)  # migrated, no campaigns
    assert q.database_status(get_reader(fresh)) == "no_campaigns"
    with get_engine(fresh).begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0001'"))
    get_reader(fresh).dispose()
    assert q.database_status(get_reader(fresh)) == "outdated"


def test_the_reader_never_creates_a_file_and_cannot_write(tmp_path, browse_db, reader):
    missing = tmp_path / "nothing-here.db"
    with pytest.raises(DatabaseError, match="no database at .*discovery run"):
        get_reader(f"sqlite:///{missing}")
    assert not missing.exists()
    before = hashlib.sha256(browse_db.path.read_bytes()).hexdigest()
    with pytest.raises(OperationalError, match="readonly|read-only|query_only"):
        with reader.begin() as conn:
            conn.execute(text("UPDATE campaign SET name = 'changed'"))
    assert hashlib.sha256(browse_db.path.read_bytes()).hexdigest() == before


def test_the_reader_sees_rows_written_after_it_opened(tmp_path):
    url = f"sqlite:///{tmp_path / 'live.db'}"
    writer = get_engine(url)
    reader = get_reader(url)
    assert q.campaign_table(reader).empty
    repo.create_campaign(writer, name="live", problem="erdos_min_overlap", strategy="simpletes", model="offline",
                         seed=0, budget=4, direction="minimize", evaluator_version="1", config={})
    table = q.campaign_table(reader)
    assert list(table["name"]) == ["live"] and table["steps"].iloc[0] == 0
    assert math.isnan(table["best_score"].iloc[0])


def test_change_marker_moves_when_a_campaign_is_added_or_changes_status(tmp_path):
    url = f"sqlite:///{tmp_path / 'marker.db'}"
    writer, reader = get_engine(url), get_reader(url)
    empty = q.change_marker(reader)
    cid = repo.create_campaign(writer, name="m", problem="erdos_min_overlap", strategy="simpletes", model="offline",
                               seed=0, budget=4, direction="minimize", evaluator_version="1", config={})
    created = q.change_marker(reader)
    assert created != empty and created[-1] == 1  # last: campaigns running or about to
    repo.set_campaign_status(writer, cid, "running")
    assert q.change_marker(reader)[-1] == 1
    repo.set_campaign_status(writer, cid, "completed")
    done = q.change_marker(reader)
    assert done not in (empty, created) and done[-1] == 0
    assert q.change_marker(reader) == done  # nothing changed: the same marker
    assert q.campaign_head(reader, cid)[0] == "completed" and q.campaign_head(reader, cid + 1) is None


def test_migration_0004_adds_the_browsing_indexes_and_the_totals_use_them(tmp_path):
    from alembic import command
    from sqlalchemy import inspect

    from db.engine import dispose_engines
    from tests.migrations import alembic, kept_campaign, old_database, schema_diff

    url = f"sqlite:///{tmp_path / 'old.db'}"
    cid = kept_campaign(old_database(url, "0003"))
    dispose_engines()
    engine = get_engine(url)  # upgrades to head
    names = {ix["name"] for ix in inspect(engine).get_indexes("step")}
    assert {"ix_step_campaign_cover", "ix_step_parent_candidate"} <= names and "ix_step_campaign_created" not in names
    assert "ix_candidate_campaign_role" in {ix["name"] for ix in inspect(engine).get_indexes("candidate")}
    assert schema_diff(engine) == []
    with engine.connect() as conn:
        plan = " ".join(str(r[-1]) for r in conn.exec_driver_sql(
            "EXPLAIN QUERY PLAN SELECT count(*), sum(prompt_tokens), sum(cost_usd), min(created_at) "
            "FROM step WHERE campaign_id = 1"))
        assert "COVERING INDEX ix_step_campaign_cover" in plan, plan
    assert repo.get_campaign(engine, cid).name == "kept"
    alembic(engine, command.downgrade, "0003")
    assert "ix_step_campaign_created" in {ix["name"] for ix in inspect(engine).get_indexes("step")}
    assert repo.get_campaign(engine, cid).name == "kept"
    dispose_engines()


def test_best_known_ratio_is_one_at_the_best_known_value_and_none_when_undefined():
    assert q.best_known_ratio(2.0, 2.0, "maximize") == q.best_known_ratio(0.38, 0.38, "minimize") == 1.0
    assert q.best_known_ratio(1.0, 2.0, "maximize") == 0.5  # half the best known
    assert q.best_known_ratio(0.4, 0.38, "minimize") == pytest.approx(0.95)  # worse than it: below 1
    assert q.best_known_ratio(3.0, 0.0, "maximize") is None  # a best-known value of 0 has no ratio
    assert q.best_known_ratio(0.0, 0.38, "minimize") is None
    assert q.best_known_ratio(None, 1.0, "maximize") is None and q.best_known_ratio(1.0, None, "maximize") is None
    assert q.best_known_ratio(float("nan"), 1.0, "maximize") is None
