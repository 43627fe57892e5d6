"""The database layer on a real PostgreSQL server (tests/pg.py): the same repository as on SQLite,
idempotent and lossless under concurrent writers (threads, and processes with their own engines),
a whole campaign through the real flow, and the export of it, equal to the same on SQLite.

Needs PostgreSQL's server binaries: skipped without them, failed without them under CI.
"""

from __future__ import annotations

import datetime as dt
import math
import multiprocessing
import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from db import repository as repo
from db.engine import dispose_engines, get_engine, get_reader, normalize_url, resolve_url
from db.models import Campaign, Candidate, Evaluation, Step, Trajectory
from tests.db import _race


@pytest.fixture()
def engine(pg_url):
    return get_engine(pg_url)


def _campaign(engine, **kw) -> int:
    args = dict(name="c", problem="p", strategy="simpletes", model="offline", seed=1, budget=4,
                direction="minimize", evaluator_version="1", config={"problem": "p"})
    args.update(kw)
    return repo.create_campaign(engine, **args)


def _counts(engine, campaign_id: int) -> dict[str, int]:
    counts = repo.count_rows(engine, campaign_id)
    with engine.connect() as conn:
        counts["seeds"] = conn.scalar(select(func.count()).where(Candidate.campaign_id == campaign_id,
                                                                 Candidate.role == "seed"))
    return counts


# ---------------------------------------------------------------- URLs, engines, pool


def test_bare_postgresql_urls_use_psycopg(pg_url):
    bare = pg_url.replace("postgresql+psycopg://", "postgresql://")
    assert normalize_url(bare) == pg_url == resolve_url(bare)
    assert normalize_url(pg_url.replace("postgresql+psycopg://", "postgres://")) == pg_url
    assert normalize_url("sqlite:///x.db") == "sqlite:///x.db"
    engine = get_engine(bare)
    assert engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg"
    assert engine is get_engine(pg_url)  # one cached engine per database, whichever spelling


@pytest.mark.parametrize("url, pattern", [
    ("postgresql+psycopg2://u:secret@127.0.0.1/db", "cannot use the driver 'psycopg2'"),
    ("postgresql+asyncpg://u:secret@127.0.0.1/db", "cannot use the driver 'asyncpg'"),
])
def test_postgres_urls_with_another_driver_give_one_line_errors(url, pattern):
    from db.engine import DatabaseError

    with pytest.raises(DatabaseError, match=pattern) as info:
        get_engine(url)
    assert "\n" not in str(info.value) and "secret" not in str(info.value)


def test_an_unreachable_server_is_one_line_error(postgres_server):
    from db.engine import DatabaseError

    url = postgres_server.url("nosuchdb").replace("postgres@", "postgres:secret@")
    with pytest.raises(DatabaseError, match="cannot reach database .*nosuchdb") as info:
        get_engine(url)
    assert "\n" not in str(info.value) and "secret" not in str(info.value)


def test_engine_is_a_bounded_pre_pinged_pool_shared_by_20_threads(engine):
    assert engine.pool._pre_ping and engine.pool.size() == 10 and engine.pool._max_overflow == 20
    cid = _campaign(engine)
    errors: list[BaseException] = []
    barrier = threading.Barrier(20)

    def worker(n: int) -> None:
        try:
            barrier.wait(timeout=60)
            tid = repo.ensure_trajectory(engine, cid, n)
            for i in range(10):
                _step(engine, cid, tid, index=i)
                with engine.connect() as conn:
                    conn.execute(text("SELECT pg_sleep(0.005)"))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert repo.count_rows(engine, cid)["steps"] == 200
    assert engine.pool.checkedout() == 0 and engine.pool.size() + engine.pool._max_overflow <= 30


def test_sessions_are_utc_and_timestamps_aware(engine):
    cid = _campaign(engine)
    with engine.connect() as conn:
        assert conn.execute(text("SHOW TimeZone")).scalar() == "UTC"
    created = repo.get_campaign(engine, cid).created_at
    assert created.utcoffset() == dt.timedelta(0)
    assert abs((dt.datetime.now(dt.timezone.utc) - created).total_seconds()) < 60


def test_reader_refuses_writes(engine, pg_url):
    cid = _campaign(engine)
    reader = get_reader(pg_url)
    with reader.connect() as conn:
        assert conn.execute(select(Campaign.name).where(Campaign.id == cid)).scalar() == "c"
        with pytest.raises(DBAPIError, match="read-only transaction"):
            conn.execute(text("UPDATE campaign SET name = 'x'"))
    with pytest.raises(DBAPIError, match="read-only transaction"):
        repo.set_campaign_status(reader, cid, "running")
    assert repo.get_campaign(engine, cid).status == "created"


def test_read_snapshot_is_repeatable_read_and_read_only(engine):
    cid = _campaign(engine)
    with repo.read_snapshot(engine) as conn:
        assert conn.execute(text("SHOW transaction_isolation")).scalar() == "repeatable read"
        assert conn.execute(text("SHOW transaction_read_only")).scalar() == "on"
        before = conn.execute(select(func.count()).select_from(Campaign)).scalar()
        _campaign(engine)  # committed by another connection while the snapshot is open
        assert conn.execute(select(func.count()).select_from(Campaign)).scalar() == before
        with pytest.raises(DBAPIError, match="read-only transaction"):
            conn.execute(text("DELETE FROM campaign"))
    # the pooled connection went back without the snapshot's settings: writes work again
    repo.set_campaign_status(engine, cid, "running")
    with engine.connect() as conn:
        assert conn.execute(text("SHOW transaction_isolation")).scalar() == "read committed"
        assert conn.execute(text("SHOW transaction_read_only")).scalar() == "off"
    assert repo.get_campaign(engine, cid).status == "running"


# ---------------------------------------------------------------- idempotent writers


def _step(engine, cid, tid, index=0, sample=0, candidate=True, parent=None):
    cand = dict(code=f"x = {index}{sample}", program_hash=f"h{index}{sample}", parent_ids=[], diff="") if candidate else None
    return repo.record_step(
        engine, campaign_id=cid, trajectory_id=tid, index=index, sample=sample, mode="propose",
        messages=[{"role": "user", "content": "hi"}], parent_candidate_id=parent, response="r", model="offline",
        prompt_tokens=3, completion_tokens=5, cost_usd=0.25, latency_s=0.1, attempts=1,
        status="ok" if candidate else "parse_error", error="" if candidate else "bad", candidate=cand,
    )


def test_every_writer_is_idempotent(engine):
    cid = _campaign(engine)
    seed = repo.ensure_seed_candidate(engine, cid, "seed = 1", "hs")
    assert repo.ensure_seed_candidate(engine, cid, "seed = 1", "hs") == seed
    tid = repo.ensure_trajectory(engine, cid, 0)
    assert repo.ensure_trajectory(engine, cid, 0) == tid
    first = _step(engine, cid, tid, parent=seed)
    assert _step(engine, cid, tid, parent=seed) == first and first[1] is not None
    no_cand = _step(engine, cid, tid, sample=1, candidate=False)
    assert _step(engine, cid, tid, sample=1, candidate=False) == no_cand and no_cand[1] is None
    fields = _race.fields(1)
    ev = repo.record_evaluation(engine, campaign_id=cid, candidate_id=first[1], cache_key="h00", fields=fields)
    assert repo.record_evaluation(engine, campaign_id=cid, candidate_id=first[1], cache_key="h00", fields=fields) == ev
    hold = repo.record_evaluation(engine, campaign_id=cid, candidate_id=first[1], cache_key="holdout:h00",
                                  fields=fields, kind="holdout")
    assert repo.record_evaluation(engine, campaign_id=cid, candidate_id=first[1], cache_key="holdout:h00",
                                  fields=fields, kind="holdout") == hold != ev
    assert _counts(engine, cid) == {"trajectories": 1, "steps": 2, "candidates": 2, "evaluations": 2, "seeds": 1}
    cand, linked = repo.get_candidate(engine, first[1])
    assert linked.id == ev, "a holdout evaluation never replaces the search evaluation"


def test_the_savepoint_fallback_for_other_databases_is_idempotent_too(engine, monkeypatch):
    """Databases without ON CONFLICT get a SAVEPOINT around the INSERT; here it runs on PostgreSQL,
    where the transaction goes on after the rolled-back duplicate."""
    from sqlalchemy.exc import IntegrityError

    monkeypatch.setattr(repo, "ON_CONFLICT_DIALECTS", ())
    cid = _campaign(engine)
    tid = repo.ensure_trajectory(engine, cid, 0)
    first = _step(engine, cid, tid)
    assert _step(engine, cid, tid) == first
    ev = repo.record_evaluation(engine, campaign_id=cid, candidate_id=first[1], cache_key="k", fields=_race.fields(1))
    assert repo.record_evaluation(engine, campaign_id=cid, candidate_id=first[1], cache_key="k",
                                  fields=_race.fields(1)) == ev
    assert repo.count_rows(engine, cid) == {"trajectories": 1, "steps": 1, "candidates": 1, "evaluations": 1}
    with pytest.raises(IntegrityError):
        _step(engine, cid, 999)


def test_a_missing_parent_row_is_an_error_not_a_silent_none(engine):
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError):
        repo.ensure_trajectory(engine, 999, 0)
    cid = _campaign(engine)
    with pytest.raises(IntegrityError):
        _step(engine, cid, 999)
    assert repo.count_rows(engine, cid) == {"trajectories": 0, "steps": 0, "candidates": 0, "evaluations": 0}


def test_nan_metrics_and_nul_characters_are_stored_not_lost(engine):
    """PostgreSQL's json rejects NaN/Infinity and its text rejects NUL: db.engine maps both."""
    cid = _campaign(engine, config={"target": math.inf})
    tid = repo.ensure_trajectory(engine, cid, 0)
    _, cand = repo.record_step(
        engine, campaign_id=cid, trajectory_id=tid, index=0, sample=0, mode="propose",
        messages=[{"role": "user", "content": "a\x00b"}], parent_candidate_id=None, response="out\x00put",
        model="offline", prompt_tokens=0, completion_tokens=0, cost_usd=0.0, latency_s=0.0, attempts=1,
        status="ok", error="", candidate=dict(code="print('\x00')", program_hash="h", parent_ids=[], diff=""),
    )
    fields = dict(_race.fields(0), metrics={"excess": math.nan, "bounds": [-math.inf, 1.5], "n": {"__float__": 2}},
                  stdout="\x00\x00binary", status="invalid", score=None)
    ev = repo.record_evaluation(engine, campaign_id=cid, candidate_id=cand, cache_key="h", fields=fields)
    stored = repo.find_evaluation(engine, cid, "h")
    assert stored.id == ev and stored.stdout == "\ufffd\ufffdbinary"
    assert math.isnan(stored.metrics["excess"]) and stored.metrics["bounds"] == [-math.inf, 1.5]
    assert stored.metrics["n"] == {"__float__": 2}
    (step,) = repo.steps_of(engine, cid)
    assert step.response == "out\ufffdput" and step.messages == [{"role": "user", "content": "a\x00b"}]
    assert repo.get_campaign(engine, cid).config == {"target": math.inf}
    assert repo.get_candidate(engine, cand)[0].code == "print('\ufffd')"


# ---------------------------------------------------------------- concurrent writers


def test_threads_racing_on_the_same_keys_store_one_row_each(engine):
    cid = _campaign(engine)
    keys = list(range(60))
    n_threads = 8
    barrier = threading.Barrier(n_threads)
    results: dict[int, dict[int, tuple]] = {}
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            barrier.wait(timeout=60)
            order = keys if n % 2 == 0 else keys[::-1]
            results[n] = {key: _race.write_key(engine, cid, key) for key in order}
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for key in keys:  # every thread got the same rows back
        assert len({results[n][key] for n in range(n_threads)}) == 1
    _assert_one_row_per_key(engine, cid, keys, results[0])


def _assert_one_row_per_key(engine, cid, keys, ids):
    assert _counts(engine, cid) == {"trajectories": min(len(keys), _race.N_TRAJECTORIES), "steps": len(keys),
                                    "candidates": len(keys) + 1, "evaluations": len(keys), "seeds": 1}
    with engine.connect() as conn:
        rows = conn.execute(
            select(Step.index, Step.id, Candidate.id, Evaluation.id, Evaluation.cache_key, Trajectory.index)
            .join(Candidate, Candidate.step_id == Step.id)
            .join(Evaluation, Evaluation.id == Candidate.evaluation_id)
            .join(Trajectory, Trajectory.id == Step.trajectory_id)
            .where(Step.campaign_id == cid)
        ).all()
    stored = {key: (step, cand, ev) for key, step, cand, ev, _, _ in rows}
    assert sorted(stored) == sorted(keys)
    assert all(cache_key == f"h{key}" and traj == key % _race.N_TRAJECTORIES
               for key, _, _, _, cache_key, traj in rows)
    assert {key: ids[key][2:] for key in keys} == stored


def _spawn(url, campaign_id, key_sets):
    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter and engine per worker
    barrier = ctx.Barrier(len(key_sets))
    results = ctx.Queue()
    procs = [ctx.Process(target=_race.writer, args=(url, campaign_id, keys, barrier, results)) for keys in key_sets]
    for p in procs:
        p.start()
    try:
        out = [results.get(timeout=300) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()
    errors = [detail for status, detail in out if status != "ok"]
    assert errors == [], errors[0]
    assert all(p.exitcode == 0 for p in procs)
    return [detail for _, detail in out]


def test_processes_opening_an_empty_database_at_once_migrate_it_once(pg_url):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from db.engine import alembic_head
    from db.models import Base

    _spawn(pg_url, None, [[], [], [], []])
    engine = get_engine(pg_url, migrate=False)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [alembic_head()]
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


def test_processes_racing_on_the_same_keys_lose_and_duplicate_nothing(engine, pg_url):
    """4 processes x 200 keys, each sharing half of its keys with the next: 500 distinct keys."""
    cid = _campaign(engine)
    key_sets = [list(range(100 * p, 100 * p + 200)) for p in range(4)]
    outs = _spawn(pg_url, cid, key_sets)
    keys = sorted(set().union(*key_sets))
    assert len(keys) == 500
    merged: dict[int, tuple] = {}
    for out in outs:
        for key, ids in out.items():
            assert merged.setdefault(key, ids) == ids, f"key {key}: two processes got different rows"
    assert sorted(merged) == keys
    _assert_one_row_per_key(engine, cid, keys, merged)


# ---------------------------------------------------------------- a whole campaign, and its export


def _fingerprint(engine, cid):
    """What a campaign stored, in key order. The two chains run concurrently, so row ids depend on
    timing: every candidate id (a parent, a strategy's `*_ref` in bookkeeping) is replaced by its
    key, (trajectory index, move, sample) or "seed"."""
    steps = repo.steps_of(engine, cid)
    cands = repo.candidates_of(engine, cid)
    by_step = {c.step_id: (c, e) for c, e in cands if c.step_id is not None}
    with engine.connect() as conn:
        traj = dict(conn.execute(select(Trajectory.id, Trajectory.index).where(Trajectory.campaign_id == cid)).all())
    key_of_step = {s.id: (traj[s.trajectory_id], s.index, s.sample) for s in steps}
    key = {c.id: key_of_step[c.step_id] if c.step_id is not None else "seed" for c, _ in cands}
    key[None] = None

    def keyed(bookkeeping):
        return {k: key.get(v, ("unknown", v)) if k.endswith("_ref") else v for k, v in bookkeeping.items()}

    rows = []
    for s in steps:
        cand, ev = by_step.get(s.id, (None, None))
        rows.append((*key_of_step[s.id], s.mode, s.status, s.committed, keyed(s.bookkeeping),
                     key[s.parent_candidate_id], s.messages, s.response, cand and cand.program_hash,
                     cand and cand.code, cand and [key[p] for p in cand.parent_ids], cand and cand.diff,
                     ev and ev.status, ev and ev.score, ev and ev.metrics, ev and ev.feedback))
    seeds = [(c.program_hash, e.status, e.score, e.metrics) for c, e in cands if c.role == "seed"]
    return seeds, sorted(rows, key=lambda r: r[:3])


def _export_files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def _without_step_ids(files: dict[str, bytes]) -> dict[str, list]:
    """The JSON Lines files' rows without their step ids (`step_id`, `chosen_step_id`, ...); the
    Parquet files hold the same rows."""
    import json

    return {name: [{k: v for k, v in json.loads(line).items() if not k.endswith("step_id")}
                   for line in data.splitlines()]
            for name, data in files.items() if name.endswith(".jsonl")}


def _copy_campaign(source, target, cid: int) -> None:
    """Copies a campaign's rows, ids and all, from one database to another (schema at head)."""
    from sqlalchemy import insert, update

    tables = (Campaign, Trajectory, Candidate, Step, Evaluation)
    with source.connect() as conn:
        rows = {m: [dict(r) for r in conn.execute(select(m.__table__).where(
            (m.id if m is Campaign else m.campaign_id) == cid).order_by(m.id)).mappings()] for m in tables}
    links = [(r["id"], r["step_id"], r["evaluation_id"]) for r in rows[Candidate]]
    for r in rows[Candidate]:  # candidate <-> step and candidate <-> evaluation point at each other
        r.update(step_id=None, evaluation_id=None)
    with target.begin() as conn:
        for m in tables:
            conn.execute(insert(m), rows[m])
        for cand_id, step_id, ev_id in links:
            conn.execute(update(Candidate).where(Candidate.id == cand_id).values(step_id=step_id, evaluation_id=ev_id))


def _assert_dashboard_reads_alike(pg_url: str, sqlite_url: str, cid: int) -> None:
    """The dashboard's queries (dashboard.queries, through the read-only engine) run on PostgreSQL
    and give the frames they give on SQLite: same columns, dtypes and row counts."""
    import pandas as pd

    from dashboard import queries as q

    readers = (get_reader(pg_url), get_reader(sqlite_url))
    with readers[0].connect() as conn:
        trajectory_id = conn.scalar(select(Trajectory.id).where(Trajectory.campaign_id == cid, Trajectory.index == 0))
    for name, args in (("database_status", ()), ("campaign_table", ()), ("campaign_info", (cid,)),
                       ("campaign_points", (cid,)), ("trajectory_table", (cid,)),
                       ("trajectory_nodes", (trajectory_id,)), ("campaign_candidate_ids", (cid,)),
                       ("candidate_detail", (2,)), ("comparison_table", ()), ("export_table", ())):
        query = getattr(q, name)
        pg, lite = (query(reader, *args) for reader in readers)
        if isinstance(pg, pd.DataFrame):
            assert (list(pg.columns), dict(pg.dtypes.astype(str)), len(pg)) == (
                list(lite.columns), dict(lite.dtypes.astype(str)), len(lite)), name
        elif isinstance(pg, dict):
            assert sorted(pg) == sorted(lite), name
        else:
            assert pg == lite, name


@pytest.mark.slow
def test_campaign_and_export_on_postgres_equal_the_same_on_sqlite(postgres_server, pg_url, tmp_path, prefect_harness):
    """The same seed through the real flow on both databases stores the same campaign, key by key.

    Row ids are not part of that: the two chains write concurrently, so which step gets which id
    depends on timing (on any database). The export writes `step_id` into every row, so its files
    from two runs are equal but for those ids; exported from the same rows (the SQLite campaign
    copied, ids and all, into PostgreSQL) they are equal byte for byte.
    """
    from flows.api import run_campaign
    from flows.export import export_dataset

    sqlite_url = f"sqlite:///{tmp_path / 'same.db'}"
    results = {}
    for name, url in (("postgresql", pg_url), ("sqlite", sqlite_url)):
        summary = run_campaign("erdos_min_overlap", chains=2, k=2, budget=16, seed=0, db_url=url)
        assert summary.campaign.status == "completed" and summary.steps == 16
        engine = get_engine(url)
        with repo.read_snapshot(engine) as conn:  # the export's read, on its own
            steps = list(repo.iter_export_steps(conn, [summary.campaign.id], chunk=5))
        report = export_dataset([summary.campaign.id], out_dir=tmp_path / f"export-{name}", db_url=url)
        assert report.status == "completed", report.error
        results[name] = (summary, _fingerprint(engine, summary.campaign.id), steps, report,
                         _export_files(tmp_path / f"export-{name}"))
    (pg, pg_rows, pg_steps, pg_report, pg_files), (lite, lite_rows, lite_steps, lite_report, lite_files) = (
        results["postgresql"], results["sqlite"])
    assert pg_rows == lite_rows  # the same candidates, programs and scores, key by key
    assert (pg.best_score, pg.seed_score, pg.evaluations, pg.candidates, pg.by_status) == (
        lite.best_score, lite.seed_score, lite.evaluations, lite.candidates, lite.by_status)
    assert len(pg_steps) == 16
    bookkeeping = repo.EXPORT_STEP_COLUMNS.index("bookkeeping")  # holds candidate ids (chain_best_ref)
    assert [r[1:bookkeeping] + r[bookkeeping + 1:] for r in pg_steps] == [
        r[1:bookkeeping] + r[bookkeeping + 1:] for r in lite_steps]
    assert pg_report.row_counts == lite_report.row_counts and pg_report.row_counts
    assert sorted(pg_files) == sorted(lite_files) and "README.md" in pg_files
    assert pg_files["README.md"] == lite_files["README.md"]
    assert _without_step_ids(pg_files) == _without_step_ids(lite_files)

    _assert_dashboard_reads_alike(pg_url, sqlite_url, pg.campaign.id)

    # the SQLite campaign's very rows in PostgreSQL: the export is the same, byte for byte
    copy_url = postgres_server.create_database("copy")
    copy = get_engine(copy_url)
    _copy_campaign(get_engine(sqlite_url), copy, lite.campaign.id)
    assert _fingerprint(copy, lite.campaign.id) == lite_rows
    report = export_dataset([lite.campaign.id], out_dir=tmp_path / "export-copy", db_url=copy_url)
    assert report.status == "completed", report.error
    copy_files = _export_files(tmp_path / "export-copy")
    different = [name for name in lite_files if copy_files.get(name) != lite_files[name]]
    assert different == [] and sorted(copy_files) == sorted(lite_files), different
    assert {k: v["sha256"] for k, v in report.files.items()} == {k: v["sha256"] for k, v in lite_report.files.items()}
    dispose_engines()
    postgres_server.drop_database(copy_url)
