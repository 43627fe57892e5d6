"""Every strategy end to end: Prefect, the sandbox, SQLite; offline and litellm (local stub).

Each strategy runs on two problems with each proposer and must spend exactly its budget,
store one row per proposer call, evaluate every program, and leave the bookkeeping its
training export needs. The kill-and-resume guarantee is checked per strategy in a real
process (SIGKILL mid-run, `discovery resume`, then the same candidates as an unkilled run).
"""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest

from db import repository as repo
from db.engine import get_engine
from discovery.proposers.offline import OfflineProposer
from flows.api import run_campaign
from problems import get_problem
from tests.flows.test_cli import REPO, _count, _env
from tests.stub_llm import StubLLMServer

PROBLEMS = ["erdos_min_overlap", "circle_packing"]

# Small settings per strategy (budgets chosen so every rule gets exercised at least once).
SETTINGS = {
    "exit": dict(budget=32, exit={"group": 4, "min_buffer": 4, "parallel": 2}),
    "r3l": dict(budget=24, r3l={"episodes": 2, "turns": 3}),
    "best_of_n": dict(budget=16, k=4),
    "greedy_refine": dict(budget=12, k=2),
}


def _steps_and_candidates(cid):
    engine = get_engine()
    steps = repo.steps_of(engine, cid)
    by_step = {c.step_id: (c, e) for c, e in repo.candidates_of(engine, cid) if c.step_id is not None}
    return steps, by_step


def _assert_budget_and_rows(summary, budget):
    """Exactly `budget` proposer calls stored once each; every program evaluated."""
    assert summary.campaign.status == "completed", summary.campaign.error
    steps, by_step = _steps_and_candidates(summary.campaign.id)
    assert len(steps) == budget
    assert len({(s.trajectory_id, s.index, s.sample) for s in steps}) == budget
    for s in steps:
        assert s.committed is not None, "every finished move stores what the strategy made of it"
        json.dumps(s.bookkeeping)
        if s.mode == "reflect":
            assert s.id not in by_step, "a reflection is text, never a candidate"
        elif s.status == "ok":
            cand, ev = by_step[s.id]
            assert ev is not None and ev.status in ("ok", "invalid", "error", "timeout", "killed")
            assert cand.parent_ids == [s.parent_candidate_id]
        else:
            assert s.id not in by_step and s.error
    assert summary.unevaluated_candidates == 0
    return steps, by_step


def _check_strategy_records(strategy, steps, by_step, seed_candidate_id):
    modes = Counter(s.mode for s in steps)
    if strategy == "exit":
        assert modes["base"] > 0 and modes["base"] < len(steps), f"buffer picks expected: {modes}"
        for s in steps:
            b = s.bookkeeping
            assert {"reward", "S", "mode", "depth", "advantage"} <= set(b), b
            assert 0.0 <= b["S"] <= 0.25 and 0.0 <= b["reward"] <= 1.0
    elif strategy == "r3l":
        reflections = [s for s in steps if s.mode == "reflect"]
        assert reflections, f"some base episode must fail and be reflected on: {modes}"
        retries = [s for s in steps if s.mode == "retry"]
        by_traj = {}
        for s in steps:
            by_traj.setdefault(s.trajectory_id, {})[s.index] = s
        for r in retries:
            assert {"pivot", "guidance", "distilled_messages"} <= set(r.bookkeeping), r.bookkeeping
            guidance = r.bookkeeping["guidance"]
            assert any(guidance in m["content"] for m in r.messages)
            assert not any(guidance in m["content"] for m in r.bookkeeping["distilled_messages"])
        finals = [r for r in retries if "beat_base" in r.bookkeeping]
        for r in finals:
            assert r.bookkeeping["weight"] in (1.0, 3.0)
            assert set(r.bookkeeping["mask"]) <= {0, 1}
    elif strategy == "best_of_n":
        assert all(s.parent_candidate_id == seed_candidate_id for s in steps)
        assert len({json.dumps(s.messages) for s in steps}) == 1
    elif strategy == "greedy_refine":
        assert len({s.trajectory_id for s in steps}) == 1


def _seed_candidate(cid):
    engine = get_engine()
    return next(c.id for c, _ in repo.candidates_of(engine, cid) if c.role == "seed")


@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize("problem", PROBLEMS)
@pytest.mark.parametrize("strategy", list(SETTINGS))
def test_strategy_runs_offline(strategy, problem):
    settings = dict(SETTINGS[strategy])
    budget = settings["budget"]
    summary = run_campaign(problem, strategy=strategy, seed=1, **settings)
    assert summary.campaign.strategy == strategy and summary.campaign.model == "offline"
    steps, by_step = _assert_budget_and_rows(summary, budget)
    _check_strategy_records(strategy, steps, by_step, _seed_candidate(summary.campaign.id))
    assert summary.best_score is not None


def _stub_responder(problem_name: str):
    """A scripted model: whole evolve blocks mutated from the seed's (valid for any parent),
    JSON reflections for reflection prompts (every third one malformed), and now and then prose
    with no code at all."""
    seed = get_problem(problem_name).seed_program
    mutate = OfflineProposer(p_rewrite=1.0)
    counter = itertools.count()
    lock = threading.Lock()

    def respond(body):
        with lock:
            n = next(counter)
        text = "\n".join(str(m.get("content", "")) for m in body["messages"])
        if "retry_from" in text:  # a reflection request
            if n % 3 == 2:
                return "I reflected deeply but will not write JSON."
            return json.dumps({
                "summary": "the episode changed parameters without improving",
                "root_cause": "steps were too large",
                "outcome": "failure",
                "suggestion": "make one small change at a time",
                "retry_from": 0,
            })
        if n % 7 == 6:
            return "No code this time, sorry."
        return mutate.respond(seed, (), random.Random(n))

    return respond


@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize("problem", PROBLEMS)
@pytest.mark.parametrize("strategy", list(SETTINGS))
def test_strategy_runs_through_litellm_against_the_stub(strategy, problem):
    settings = dict(SETTINGS[strategy])
    budget = settings["budget"]
    with StubLLMServer(_stub_responder(problem)) as stub:
        summary = run_campaign(
            problem, strategy=strategy, seed=2, model="openai/stub-model", api_base=stub.url,
            llm_retries=1, **settings,
        )
        requests = [r for r in stub.chat_requests if r.body.get("max_tokens") != 1]  # minus preflight
    assert summary.campaign.model == "openai/stub-model"
    steps, by_step = _assert_budget_and_rows(summary, budget)
    assert len(requests) == budget, "one HTTP request per proposer call, none repeated"
    sent = [json.dumps(r.body["messages"], sort_keys=True) for r in requests]
    stored = [json.dumps(s.messages, sort_keys=True) for s in steps]
    assert Counter(stored) == Counter(sent), "the stored prompts are exactly what the server received"
    assert any(s.status == "parse_error" for s in steps), "prose answers are recorded as parse errors"
    if strategy == "r3l":
        reflections = [s for s in steps if s.mode == "reflect"]
        assert any("reflection_error" in s.bookkeeping for s in reflections) or len(reflections) < 3


KILL_ARGS = {
    "exit": ["--budget", "64", "--set", "exit.group=4", "--set", "exit.min_buffer=4"],
    "r3l": ["--budget", "40", "--set", "r3l.episodes=3"],
    "best_of_n": ["--budget", "48", "--k", "4"],
    "greedy_refine": ["--budget", "40", "--k", "2"],
}


def _cli_here(args, db) -> int:
    """The `discovery` command in this process, on the session's Prefect API (no process start-up
    and no ephemeral API to pay for); returns its exit code."""
    from flows import cli

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", ["discovery", *args, "--db", f"sqlite:///{db}"])
        return cli.main()


@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize("strategy", list(KILL_ARGS))
def test_sigkill_then_resume_reproduces_the_unkilled_campaign(tmp_path, strategy):
    db = tmp_path / "killed.db"
    env = _env(tmp_path, db)
    extra = KILL_ARGS[strategy]
    budget = int(extra[extra.index("--budget") + 1])
    args = ["run", "erdos_min_overlap", "--strategy", strategy, "--seed", "5", "--quiet", *extra]
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, start_new_session=True,
    )
    deadline = time.monotonic() + 240
    kill_at = budget // 3
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
        if db.exists():
            try:
                if _count(db, "SELECT count(*) FROM step") >= kill_at:
                    break
            except sqlite3.OperationalError:
                continue
    assert proc.poll() is None, f"the campaign ended before it could be killed: {proc.communicate()[1][-2000:]}"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    steps_before = _count(db, "SELECT count(*) FROM step")
    assert kill_at <= steps_before < budget

    assert _cli_here(["resume", "1", "--quiet"], db) == 0
    query = (
        "SELECT t.\"index\", s.\"index\", s.sample, s.mode, s.response, c.code, e.score FROM step s "
        "LEFT JOIN candidate c ON c.step_id = s.id LEFT JOIN evaluation e ON e.id = c.evaluation_id "
        "JOIN trajectory t ON t.id = s.trajectory_id ORDER BY t.\"index\", s.\"index\", s.sample"
    )
    con = sqlite3.connect(db, timeout=30)
    killed = con.execute(query).fetchall()
    assert con.execute("SELECT status FROM campaign WHERE id = 1").fetchone()[0] == "completed"
    assert con.execute("SELECT count(*) FROM candidate WHERE evaluation_id IS NULL").fetchone()[0] == 0
    con.close()
    assert len(killed) == budget

    ref_db = tmp_path / "ref.db"
    assert _cli_here(args, ref_db) == 0
    con = sqlite3.connect(ref_db)
    reference = con.execute(query).fetchall()
    con.close()
    assert killed == reference, "a killed and resumed campaign is the campaign that was never killed"
