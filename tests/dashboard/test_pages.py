"""Every dashboard page, run with Streamlit's AppTest against a real database written by real
campaigns: what each page shows is checked against the repository's own reads."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from streamlit.testing.v1 import AppTest

from dashboard import queries as q
from dashboard.state import fmt_score
from db import repository as repo
from db.engine import get_engine, get_reader
from flows.export import preview_export
from problems import get_problem

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")


def run_page(page: str | None = None, **params) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    if page:
        at.switch_page(f"views/{page}.py")
    for name, value in params.items():
        at.query_params[name] = str(value)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def charts(at: AppTest) -> list[tuple[dict, dict[str, pd.DataFrame]]]:
    """Every Altair chart on the page: (its Vega-Lite spec, its datasets as DataFrames)."""
    out = []
    for element in at.get("vega_lite_chart"):
        datasets = {d.name: pa.ipc.open_stream(d.data.data).read_all().to_pandas() for d in element.proto.datasets}
        out.append((json.loads(element.proto.spec), datasets))
    return out


def texts(at: AppTest) -> str:
    parts = [e.value for kind in ("markdown", "caption", "info", "warning", "error", "success") for e in at.get(kind)]
    return "\n".join(str(p) for p in parts)


def metric(at: AppTest, label: str) -> str:
    (value,) = [m.value for m in at.metric if m.label == label]
    return value


@pytest.fixture()
def browse(browse_db, monkeypatch):
    monkeypatch.setenv("DISCOVERY_DB_URL", browse_db.url)
    return browse_db


@pytest.fixture()
def copy_db(browse_db, tmp_path, monkeypatch):
    """A private copy of the session database, for tests that write or change rows."""
    target = tmp_path / "copy.db"
    with sqlite3.connect(browse_db.path) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    url = f"sqlite:///{target}"
    monkeypatch.setenv("DISCOVERY_DB_URL", url)
    return url, target


def test_campaigns_page_lists_every_campaign_and_filters_them(browse):
    at = run_page()
    campaigns = repo.list_campaigns(get_engine(browse.url))
    (table,) = at.dataframe
    assert sorted(table.value["id"]) == sorted(c.id for c in campaigns)
    assert metric(at, "Campaigns") == f"{len(campaigns)} of {len(campaigns)}"
    row = table.value.set_index("id").loc[browse.simpletes]
    summary = repo.summarize(get_engine(browse.url), browse.simpletes)
    assert row["best_score"] == summary.best_score and row["steps"] == 32 and row["used"] == 1.0
    assert row["link"] == f"campaign?campaign={browse.simpletes}"

    strategy = next(m for m in at.multiselect if m.label == "Strategy")
    strategy.select("r3l").run()
    (table,) = at.dataframe
    assert list(table.value["id"]) == [browse.r3l]
    assert metric(at, "Campaigns") == f"1 of {len(campaigns)}"


def test_campaign_page_shows_best_so_far_with_the_best_known_line_and_totals(browse):
    at = run_page("campaign", campaign=browse.simpletes)
    engine = get_engine(browse.url)
    summary = repo.summarize(engine, browse.simpletes)
    assert at.selectbox[0].value == browse.simpletes
    assert metric(at, "Best score") == fmt_score(summary.best_score)
    assert metric(at, "Budget used") == "32 / 32"
    assert metric(at, "Evaluations") == f"{summary.evaluations:,}"
    assert metric(at, "Cost") == "$0.0000"

    (progress_spec, progress_data), (status_spec, status_data) = charts(at)
    lines = next(d for d in progress_data.values() if "line" in d.columns)
    best = lines[lines["line"] == "best overall"]
    assert best["y"].iloc[-1] == pytest.approx(summary.best_score)
    assert list(best["y"]) == sorted(best["y"], reverse=True)  # minimise: only ever goes down
    assert {"trajectory 0", "trajectory 1"} <= set(lines["line"])
    (known,) = [d for d in progress_data.values() if "label" in d.columns and d["label"].str.startswith("best known").all()]
    assert known["y"].iloc[0] == get_problem("erdos_min_overlap").best_known.value  # the reference line
    assert "strokeDash" in json.dumps(progress_spec)
    counts = next(d for d in status_data.values() if "count" in d.columns)
    assert dict(zip(counts["status"], counts["count"])) == summary.by_status

    # the x axis switches to wall time and to USD
    at.button_group[0].set_value("time").run()
    spec, _ = charts(at)[0]
    assert spec["layer"][0]["encoding"]["x"]["title"] == "seconds since the first proposal"
    # its trajectories and best programs are listed to open
    trajectories, best_programs = at.dataframe
    assert list(trajectories.value["index"]) == [0, 1]
    assert best_programs.value["candidate_id"].iloc[1] == summary.best_candidate_id


def test_a_running_campaign_refreshes_itself(copy_db):
    url, _ = copy_db
    engine = get_engine(url)
    campaign = repo.list_campaigns(engine)[0]
    repo.set_campaign_status(engine, campaign.id, "running")
    at = run_page("campaign", campaign=campaign.id)
    assert "refreshes every" in texts(at)
    repo.set_campaign_status(engine, campaign.id, "completed")


def test_an_unknown_campaign_id_says_so_and_shows_the_newest(browse):
    at = run_page("campaign", campaign=99999)
    assert "No campaign with id 99999" in texts(at)
    assert at.selectbox[0].value == max(c.id for c in repo.list_campaigns(get_engine(browse.url)))


def test_trajectory_page_draws_the_tree_with_clickable_nodes_and_lists_its_steps(browse):
    at = run_page("trajectory", campaign=browse.simpletes, trajectory=1)
    reader = get_reader(browse.url)
    table = q.trajectory_table(reader, browse.simpletes)
    nodes = q.trajectory_nodes(reader, int(table.set_index("index").loc[1, "trajectory_id"]))
    ((spec, data),) = charts(at)
    assert spec["params"][0]["name"] == "node"
    assert spec["params"][0]["select"]["fields"] == ["candidate_id"]
    drawn = next(d for d in data.values() if "state" in d.columns)
    assert sorted(drawn["step_id"].dropna().astype(int)) == sorted(nodes["step_id"])
    (steps,) = at.dataframe
    assert list(steps.value["step_id"]) == list(nodes["step_id"])
    assert at.selectbox[1].value == 1


def test_candidate_page_shows_program_diff_evaluation_and_the_exact_prompt(browse):
    engine = get_engine(browse.url)
    steps = repo.steps_of(engine, browse.simpletes)
    step = steps[-1]
    candidate = next(c for c, _ in repo.candidates_of(engine, browse.simpletes) if c.step_id == step.id)
    _, evaluation = repo.get_candidate(engine, candidate.id)
    parent, _ = repo.get_candidate(engine, step.parent_candidate_id)
    at = run_page("candidate", candidate=candidate.id)

    codes = at.code
    # (st.code trims the text's leading and trailing blank space; nothing else)
    assert codes[0].language == "python" and codes[0].value == candidate.code.strip()
    diff = codes[1]
    if parent.code != candidate.code:
        assert diff.language == "diff" and f"candidate {parent.id} (parent)" in diff.value
    assert evaluation.feedback.strip() in [c.value for c in codes]
    prompts = [c.value for c in codes if c.language == "markdown"]
    assert prompts == [m["content"].strip() for m in step.messages] + [step.response.strip()]  # every message, then the response
    assert metric(at, "Status") == evaluation.status
    links = {p.proto.label: p.proto.page for p in at.get("page_link")}
    assert links[f"Parent #{parent.id}"] == "candidate"
    assert links[f"Campaign #{browse.simpletes}"] == "campaign"


def test_the_seed_program_page_says_it_has_no_parent_and_no_prompt(browse):
    seed = next(c for c, _ in repo.candidates_of(get_engine(browse.url), browse.simpletes) if c.role == "seed")
    at = run_page("candidate", candidate=seed.id)
    shown = texts(at)
    assert "no parent" in shown and "no prompt" in shown
    assert at.code[0].value == seed.code.strip()
    assert "No candidate with id" in texts(run_page("candidate", candidate=10**9))


def test_compare_page_draws_the_stored_comparison(browse):
    at = run_page("compare", comparison=browse.comparison)
    stored, runs = repo.get_comparison(get_engine(browse.url), browse.comparison)
    ((spec, data),) = charts(at)
    bands = next(d for d in data.values() if "median" in d.columns)
    assert set(bands["strategy"]) == {"simpletes", "best_of_n"}
    ranked, run_table = at.dataframe
    assert list(ranked.value.iloc[:, 1]) == [r["strategy"] for r in stored.results["rows"]]
    assert list(run_table.value["campaign_id"]) == [r.campaign_id for r in runs]


def test_export_page_previews_the_counts_and_writes_through_the_cli_code(copy_db, tmp_path, browse_db):
    url, _ = copy_db
    engine = get_engine(url)
    before = len(repo.list_exports(engine))
    at = run_page("export", campaign=browse_db.simpletes)
    assert at.multiselect[0].value == [browse_db.simpletes]
    next(b for b in at.button if b.label == "Preview counts").click().run()
    assert not at.exception
    expected = preview_export([browse_db.simpletes], db_url=url)
    counts, _dropped = at.dataframe[:2]
    shown = {(r["format"], r["split"]): r["rows"] for r in counts.value.to_dict("records")}
    assert shown == {(f, s): n for f, by in expected.row_counts.items() for s, n in by.items()}
    assert len(repo.list_exports(engine)) == before  # a preview stores nothing

    out = tmp_path / "dataset"
    at.text_input[0].input(str(out)).run()
    next(b for b in at.button if b.label == "Write dataset").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    exports = repo.list_exports(engine)
    assert len(exports) == before + 1 and exports[-1].status == "completed"
    assert (out / "README.md").is_file() and (out / "sft" / "train.jsonl").is_file()
    assert f"Export {exports[-1].id}" in texts(at)


def test_browsing_every_page_leaves_the_database_unchanged(browse):
    files = [browse.path, Path(f"{browse.path}-wal")]

    def digest():
        return [hashlib.sha256(f.read_bytes()).hexdigest() if f.exists() else None for f in files]

    before = digest()
    run_page()
    run_page("campaign", campaign=browse.r3l)
    run_page("trajectory", campaign=browse.r3l)
    run_page("candidate", candidate=5)
    run_page("compare")
    run_page("export")
    assert digest() == before


@pytest.mark.parametrize("case", ["missing", "no tables", "no campaigns"])
def test_a_missing_or_empty_database_shows_how_to_run_a_first_campaign(case, tmp_path, monkeypatch):
    path = tmp_path / "first.db"
    if case == "no tables":
        sqlite3.connect(path).close()
    elif case == "no campaigns":
        get_engine(f"sqlite:///{path}")
    monkeypatch.setenv("DISCOVERY_DB_URL", f"sqlite:///{path}")
    at = run_page()
    assert at.title[0].value == "discovery dashboard"
    assert any("discovery run erdos_min_overlap" in c.value for c in at.code)
    assert path.exists() == (case != "missing")  # browsing never creates the file
