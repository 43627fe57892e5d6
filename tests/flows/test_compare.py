"""`discovery compare` end to end: real Prefect flow runs, the sandbox and SQLite (no fakes on the path)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from db import repository as repo
from db.engine import alembic_head, get_engine, session_scope
from db.models import Comparison, ComparisonRun
from discovery import comparison as cmp
from discovery.config import ConfigError
from flows import api
from flows.compare import compare_strategies, list_comparisons, show_comparison
from problems import ProblemError

REPO = Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n"
pytestmark = pytest.mark.usefixtures("prefect_harness")


def _recompute(report) -> dict:
    """The comparison's result rebuilt from the campaigns' stored rows."""
    engine = get_engine()
    data = []
    for run in report.runs:
        if run.status != "completed":
            continue
        s = repo.summarize(engine, run.campaign_id)
        data.append(cmp.RunData(
            strategy=run.strategy, seed=run.seed, seed_score=s.seed_score,
            samples=[cmp.Sample(*t) for t in repo.evaluation_trace(engine, run.campaign_id)],
            llm_calls=s.steps, tokens=s.prompt_tokens + s.completion_tokens, cost_usd=s.cost_usd,
            wall_s=run.wall_s, campaign_id=run.campaign_id,
        ))
    return cmp.compare(data, strategies=report.strategies, direction="minimize", target_pct=report.target_pct,
                       seeds_per_strategy=len(report.seeds)).to_dict()


def test_compare_runs_every_strategy_and_seed_and_stores_the_comparison(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    events = []
    strategies, budget = ["simpletes", "best_of_n", "greedy_refine"], 8
    report = compare_strategies(
        "erdos_min_overlap", strategies=",".join(strategies), seeds=2, budget=budget, seed_base=4, parallel=2,
        chains=2, k=2, progress=events.append,
    )
    assert report.status == "completed" and not report.failed and report.error == ""
    assert report.seeds == [4, 5] and report.strategies == strategies
    # seed-major queue: every strategy's first seed before any second seed
    assert [(r.strategy, r.seed) for r in report.runs] == [(s, seed) for seed in (4, 5) for s in strategies]
    engine = get_engine()
    cores = os.cpu_count() or 1
    for run in report.runs:
        campaign = repo.get_campaign(engine, run.campaign_id)
        assert run.status == campaign.status == "completed" and run.wall_s > 0
        assert (campaign.strategy, campaign.seed, campaign.budget) == (run.strategy, run.seed, budget)
        assert campaign.config["chains"] == 2 and campaign.config["eval_slots"] == max(1, cores // 2)
        assert repo.count_rows(engine, run.campaign_id)["steps"] == budget
    with session_scope(engine) as s:
        assert s.scalar(select(func.count()).select_from(Comparison)) == 1
        assert s.scalar(select(func.count()).select_from(ComparisonRun)) == len(strategies) * 2

    stored = report.result.to_dict()
    assert stored == _recompute(report), "the stored table and curves are what the campaigns' rows give"
    for rc in report.result.runs:
        summary = repo.summarize(engine, rc.campaign_id)
        assert rc.final == summary.best_score and rc.curve[0] == summary.seed_score
        assert rc.evaluations == budget - summary.step_status.get("parse_error", 0) - summary.step_status.get("llm_error", 0)
    rows = report.rows
    assert sorted(r.strategy for r in rows) == sorted(strategies) and [r.rank for r in rows] == [1, 2, 3]
    assert [r.final_median for r in rows] == sorted(r.final_median for r in rows), "minimise: best first"
    assert all(r.completed == r.runs == 2 and r.llm_calls_median == budget for r in rows)

    plot = Path(report.plot_path)
    assert plot == (tmp_path / "comparisons" / f"comparison-{report.id}-erdos_min_overlap.png").resolve()
    assert plot.read_bytes()[:8] == PNG and plot.stat().st_size > 10_000

    assert show_comparison(report.id) == report
    assert [c.id for c in list_comparisons()] == [report.id]
    states = {}
    for e in events:
        states.setdefault((e.strategy, e.seed), []).append(e.state)
    assert all(s[0] == "queued" and "running" in s and s[-1] == "completed" for s in states.values())
    assert len(states) == len(strategies) * 2


def test_a_failed_run_is_recorded_and_the_others_go_on(tmp_path, monkeypatch):
    real = api.run_campaign

    def flaky(cfg, **kw):
        if cfg.strategy == "best_of_n" and cfg.seed == 1:
            raise RuntimeError("sandbox exploded\nsecond line")
        return real(cfg, **kw)

    monkeypatch.setattr(api, "run_campaign", flaky)
    report = compare_strategies(
        "erdos_min_overlap", strategies=["greedy_refine", "best_of_n"], seeds=2, budget=4, k=2,
        plot_path=tmp_path / "mine.png",
    )
    assert report.status == "completed"
    assert [(r.strategy, r.seed, r.error) for r in report.failed] == [("best_of_n", 1, "RuntimeError: sandbox exploded")]
    assert "1 of 4 runs failed: best_of_n seed 1" in report.error
    rows = {r.strategy: r for r in report.rows}
    assert (rows["best_of_n"].completed, rows["best_of_n"].runs) == (1, 2)
    assert rows["greedy_refine"].completed == 2
    assert report.plot_path == str((tmp_path / "mine.png").resolve()) and (tmp_path / "mine.png").is_file()


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        (dict(strategies="simpletes,nope"), "unknown strategy 'nope': valid strategies are simpletes, exit, r3l"),
        (dict(strategies="simpletes,simpletes"), "listed twice"),
        (dict(strategies="simpletes,exit", budget=20),
         "budget 20 does not suit every strategy: it must be a multiple of chains x k = 16 for simpletes and a "
         "multiple of exit.group = 8 for exit; use budget 32"),
        (dict(strategies="best_of_n,greedy_refine", budget=6, k=4),
         "a multiple of k = 4 for best_of_n and a multiple of k = 4 for greedy_refine; use budget 8"),
        (dict(strategies="simpletes,best_of_n", budget=9, chains=2, k=3), "use budget 12"),
        (dict(strategies="simpletes,best_of_n", budget=12, assignments=["nope=1"]), "unknown setting 'nope'"),
        (dict(strategies="simpletes", budget=12, chains=0), "simpletes: invalid chains"),
        (dict(seeds=0), "seeds must be"),
        (dict(target_pct=-1.0), "target_pct"),
        (dict(plot_path="out.pdf"), "must end in .png"),
        (dict(seed=3), "seed is set by the comparison"),
    ],
)
def test_bad_input_raises_one_line_and_writes_nothing(tmp_path, kwargs, pattern):
    args = dict(strategies="simpletes,best_of_n", seeds=2, budget=16)
    args.update(kwargs)
    with pytest.raises(ConfigError) as info:
        compare_strategies("erdos_min_overlap", **args)
    message = str(info.value)
    assert pattern in message and "\n" not in message
    assert not (tmp_path / "discovery.db").exists(), "nothing is written on bad input"


def test_unknown_problem_writes_nothing(tmp_path):
    with pytest.raises(ProblemError):
        compare_strategies("no_such_problem", strategies="simpletes", budget=16)
    assert not (tmp_path / "discovery.db").exists()


# ---------------------------------------------------------------- storage


def test_migration_0002_matches_the_models_and_upgrades_a_0001_database(tmp_path):
    from alembic import command
    from sqlalchemy import inspect

    from db.engine import dispose_engines
    from tests.migrations import alembic, kept_campaign, old_database, revision, schema_diff

    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = old_database(url, "0001")
    cid = kept_campaign(old)
    assert not inspect(old).has_table("comparison")
    dispose_engines()
    engine = get_engine(url)  # opening migrates to head
    assert {"comparison", "comparison_run"} <= set(inspect(engine).get_table_names())
    assert repo.get_campaign(engine, cid).name == "kept"
    assert revision(engine) == alembic_head() and schema_diff(engine) == []
    comparison_id, runs = repo.create_comparison(engine, name="n", problem="p", strategies=["simpletes"], seeds=[0],
                                                 budget=4, target_pct=1.0, config={})
    repo.update_comparison_run(engine, runs[("simpletes", 0)], campaign_id=cid, status="completed", wall_s=1.5)
    row, stored = repo.get_comparison(engine, comparison_id)
    assert row.status == "running" and [(r.campaign_id, r.status, r.wall_s) for r in stored] == [(cid, "completed", 1.5)]
    alembic(engine, command.downgrade, "0001")
    assert not inspect(engine).has_table("comparison") and repo.get_campaign(engine, cid).name == "kept"
    dispose_engines()


# ---------------------------------------------------------------- the command line


def _env(tmp_path: Path, db: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(DISCOVERY_DB_URL=f"sqlite:///{db}", PREFECT_HOME=str(tmp_path / "prefect-home"),
               PREFECT_LOGGING_LEVEL="WARNING", PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1")
    env.pop("PREFECT_API_URL", None)  # the CLI starts its own ephemeral API, as a user's does
    env.pop("DISCOVERY_MODEL", None)
    return env


def _cli(args, env, cwd, timeout=300):
    # a leaked Prefect server would keep the pipes open and hit the timeout
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_cli_compare_prints_the_table_and_plot_and_comparisons_shows_it_again(tmp_path):
    db = tmp_path / "cli.db"
    env = _env(tmp_path, db)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    out = _cli(["compare", "erdos_min_overlap", "--strategies", "simpletes,best_of_n", "--seeds", "2", "--budget", "4",
                "--set", "chains=1", "--set", "k=2", "--target-pct", "0.5", "--quiet"], env, tmp_path)
    assert out.returncode == 0, out.stderr
    for text in ("final best (median of 2)", "[min, max]", "evals to -0.5% (median, reached)", "LLM calls",
                 "simpletes", "best_of_n", "stored as comparison 1", "discovery comparisons 1"):
        assert text in out.stdout, out.stdout
    plot = tmp_path / "comparisons" / "comparison-1-erdos_min_overlap.png"
    assert f"plot: {plot}" in out.stdout and plot.read_bytes()[:8] == PNG
    con = sqlite3.connect(db)
    try:
        assert con.execute("SELECT status, plot_path FROM comparison").fetchall() == [("completed", str(plot))]
        runs = con.execute(
            "SELECT r.strategy, r.seed, c.status, (SELECT count(*) FROM step s WHERE s.campaign_id = c.id) "
            "FROM comparison_run r JOIN campaign c ON c.id = r.campaign_id ORDER BY r.id").fetchall()
    finally:
        con.close()
    assert runs == [("simpletes", 0, "completed", 4), ("best_of_n", 0, "completed", 4),
                    ("simpletes", 1, "completed", 4), ("best_of_n", 1, "completed", 4)]

    again = _cli(["comparisons", "1"], env, tmp_path, timeout=120)
    assert again.returncode == 0, again.stderr
    table = lambda text: [line for line in text.splitlines() if "│" in line]  # noqa: E731
    assert table(again.stdout) == table(out.stdout) and f"plot: {plot}" in again.stdout
    listed = _cli(["comparisons"], env, tmp_path, timeout=120)
    assert listed.returncode == 0 and "erdos_min_overlap" in listed.stdout and "completed" in listed.stdout
    as_json = json.loads(_cli(["comparisons", "1", "--json"], env, tmp_path, timeout=120).stdout)
    assert as_json["results"]["direction"] == "minimize" and len(as_json["runs"]) == 4
    missing = _cli(["comparisons", "9"], env, tmp_path, timeout=120)
    assert missing.returncode == 2 and missing.stderr.strip() == "error: no comparison with id 9 (recent ids: 1)"


def test_cli_compare_bad_budget_is_one_line_and_creates_no_database(tmp_path):
    db = tmp_path / "none.db"
    out = _cli(["compare", "erdos_min_overlap", "--strategies", "simpletes,exit", "--budget", "20"],
               _env(tmp_path, db), REPO, timeout=120)
    assert out.returncode == 2
    assert out.stderr.splitlines() == [
        "error: budget 20 does not suit every strategy: it must be a multiple of chains x k = 16 for simpletes "
        "and a multiple of exit.group = 8 for exit; use budget 32, which suits simpletes, exit (or change those settings)"
    ]
    assert not db.exists()


def test_cli_run_set_reaches_the_stored_config(tmp_path):
    from prefect.settings import PREFECT_API_URL

    db = tmp_path / "set.db"
    env = _env(tmp_path, db)
    env["PREFECT_API_URL"] = PREFECT_API_URL.value()  # the session's API: no server start-up to wait for
    out = _cli(["run", "erdos_min_overlap", "--strategy", "simpletes", "--set", "exit.kappa=5", "--set", "chains=1",
                "--set", "k=3", "--k", "2", "--budget", "2", "--quiet"], env, REPO)
    assert out.returncode == 0, out.stderr
    con = sqlite3.connect(db)
    try:
        config = json.loads(con.execute("SELECT config FROM campaign").fetchone()[0])
    finally:
        con.close()
    assert config["exit"]["kappa"] == 5.0 and config["chains"] == 1
    assert config["k"] == 2, "a flag wins over --set"
    bad = _cli(["run", "erdos_min_overlap", "--set", "exit.nope=1"], _env(tmp_path, db), REPO, timeout=120)
    assert bad.returncode == 2 and "unknown setting 'exit.nope'" in bad.stderr
