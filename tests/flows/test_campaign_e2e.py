"""End-to-end campaigns through Prefect, the sandbox and SQLite (no fakes on the path)."""

from __future__ import annotations

from pathlib import Path

import pytest

from db import repository as repo
from db.engine import get_engine
from flows.api import resume_campaign, run_campaign
from tests.stub_llm import StubLLMServer, cycling

TOY = str(Path(__file__).with_name("toy_problem.py"))
pytestmark = pytest.mark.usefixtures("prefect_harness")


def _rows(cid):
    engine = get_engine()
    return repo.steps_of(engine, cid), repo.candidates_of(engine, cid)


def _assert_consistent(cid, budget, k):
    """Every sample has one step; every candidate one evaluation; one commit at most per move."""
    steps, cands = _rows(cid)
    assert len(steps) == budget
    assert len({(s.trajectory_id, s.index, s.sample) for s in steps}) == budget
    by_step = {c.step_id: (c, e) for c, e in cands if c.step_id is not None}
    for s in steps:
        assert s.messages and s.messages[0]["role"] == "system" and s.messages[-1]["role"] == "user"
        assert s.committed is not None, "every finished move stores what the strategy committed"
        if s.status == "ok":
            cand, ev = by_step[s.id]
            assert ev is not None and cand.parent_ids == [s.parent_candidate_id]
        else:
            assert s.id not in by_step and s.error
    moves = {}
    for s in steps:
        moves.setdefault((s.trajectory_id, s.index), []).append(s)
    for group in moves.values():
        assert len(group) == k and sum(bool(s.committed) for s in group) <= 1
    assert all(e is not None for _, e in cands)
    return steps, cands


def test_offline_campaign_improves_erdos_and_stores_everything():
    summary = run_campaign("erdos_min_overlap", chains=2, k=4, budget=48, seed=3)
    assert summary.campaign.status == "completed"
    assert summary.campaign.model == "offline"
    steps, cands = _assert_consistent(summary.campaign.id, 48, 4)
    assert summary.seed_score is not None and summary.best_score is not None
    assert summary.best_score < summary.seed_score, "the search must beat the seed program"
    assert summary.unevaluated_candidates == 0
    stored = summary.campaign.config
    assert stored["problem"] == "erdos_min_overlap" and stored["budget"] == 48 and stored["chains"] == 2
    # identical programs were evaluated once: evaluations <= distinct program hashes
    hashes = {c.program_hash for c, _ in cands}
    assert summary.evaluations == len({e.id for _, e in cands}) <= len(hashes)


def test_same_seed_reproduces_candidates_and_scores():
    def fingerprint(cid):
        steps, cands = _rows(cid)
        by_step = {c.step_id: (c, e) for c, e in cands}
        return [
            (s.index, s.sample, s.status, s.committed, by_step[s.id][0].code if s.id in by_step else None,
             by_step[s.id][1].score if s.id in by_step else None)
            for s in sorted(steps, key=lambda s: (s.trajectory_id - steps[0].trajectory_id, s.index, s.sample))
        ]

    a = run_campaign("erdos_min_overlap", chains=2, k=2, budget=16, seed=11)
    b = run_campaign("erdos_min_overlap", chains=2, k=2, budget=16, seed=11)
    c = run_campaign("erdos_min_overlap", chains=2, k=2, budget=16, seed=12)
    assert fingerprint(a.campaign.id) == fingerprint(b.campaign.id)
    assert fingerprint(a.campaign.id) != fingerprint(c.campaign.id)


def _block(values) -> str:
    return f"```python\nVALUES = {values!r}\n\n\ndef construct():\n    return list(VALUES)\n```"


def test_litellm_campaign_against_local_stub_server():
    scripted = [
        _block([3.0, 2.5, 4.0]),
        "<<<<<<< SEARCH\nVALUES = [1.0, 2.0, 5.0]\n=======\nVALUES = [3.0, 3.0, 3.5]\n>>>>>>> REPLACE",
        "I would rather not write code today.",
        _block([2.9, 3.1]),
        "```python\ndef construct(:\n    return [3]\n```",
        _block([3.0]),
    ]
    with StubLLMServer(cycling(scripted)) as stub:
        summary = run_campaign(
            TOY, model="openai/stub-model", api_base=stub.url, chains=2, k=3, budget=12, seed=0, llm_retries=1,
        )
        requests = stub.chat_requests
    cid = summary.campaign.id
    steps, cands = _assert_consistent(cid, 12, 3)
    assert summary.campaign.model == "openai/stub-model"
    sent = {r.body["messages"][-1]["content"] for r in requests if r.body.get("max_tokens") != 1}
    stored = {s.messages[-1]["content"] for s in steps}
    assert stored <= sent, "the stored prompt is exactly what the server received"
    assert {s.response for s in steps} <= set(scripted)
    assert all(s.model == "openai/stub-model" and s.prompt_tokens > 0 and s.completion_tokens > 0 for s in steps)
    statuses = {s.status for s in steps}
    assert "ok" in statuses and "parse_error" in statuses
    parse_errors = [s for s in steps if s.status == "parse_error"]
    assert all(s.error for s in parse_errors)
    assert summary.best_score is not None and summary.best_score > summary.seed_score
    # no header or body the server saw carries a secret we did not configure
    assert all("authorization" not in r.headers or "sk-" not in r.headers["authorization"] for r in requests)


HOSTILE = {
    "hang": "import time\n\ndef construct():\n    time.sleep(1000)\n",
    "burn": "def construct():\n    while True:\n        pass\n",
    "memory": "def construct():\n    x = bytearray(4 * 1024 ** 3)\n    return [len(x)]\n",
    "fork": (
        "import os\n\ndef construct():\n    for _ in range(10000):\n        try:\n            if os.fork() == 0:\n"
        "                import time; time.sleep(30); os._exit(0)\n        except OSError:\n            break\n    return [3.0]\n"
    ),
    "network": (
        "import socket\n\ndef construct():\n    s = socket.create_connection(('127.0.0.1', PORT), timeout=1)\n"
        "    s.sendall(b'leak')\n    return [3.0]\n"
    ),
    "secret": "import os\n\ndef construct():\n    return [float(len(os.environ.get('OPENAI_API_KEY', '')))]\n",
    "escape": "def construct():\n    open(TARGET, 'w').write('x')\n    return [3.0]\n",
    "raises": "def construct():\n    raise ValueError('boom')\n",
}


def test_hostile_candidates_are_contained_and_the_campaign_goes_on(tmp_path, monkeypatch):
    import socket

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret-123")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    listener.settimeout(0.1)
    port = listener.getsockname()[1]
    target = Path(__file__).resolve().parents[2] / f"escape-{tmp_path.name}.txt"
    programs = [
        f"```python\n# hostile: {name}\nPORT = {port}\nTARGET = {str(target)!r}\n{code}```" for name, code in HOSTILE.items()
    ]
    with StubLLMServer(cycling(programs)) as stub:
        summary = run_campaign(
            TOY, model="openai/stub-model", api_base=stub.url, chains=1, k=len(programs), budget=len(programs),
            seed=0, llm_concurrency=len(programs), eval_slots=2,
        )
    cid = summary.campaign.id
    assert summary.campaign.status == "completed"
    steps, cands = _assert_consistent(cid, len(programs), len(programs))
    by_step = {c.step_id: e for c, e in cands}
    status = {}
    for s in steps:
        name = s.response.split("# hostile: ", 1)[1].split("\n", 1)[0]
        status[name] = by_step[s.id]
    assert set(status) == set(HOSTILE)
    assert status["hang"].status == "timeout"
    assert status["burn"].status in ("killed", "timeout")
    assert status["memory"].status in ("killed", "error")
    assert "MemoryError" in status["memory"].feedback or status["memory"].status == "killed"
    assert status["fork"].status in ("ok", "killed", "error", "timeout")
    assert status["network"].status == "error"
    assert status["secret"].status == "ok" and status["secret"].metrics["n"] == 1
    assert status["secret"].score == -9.0, "the key must be invisible: len('') == 0 -> (0 - 3)^2"
    assert status["escape"].status == "error" and not target.exists()
    assert status["raises"].status == "error" and "boom" in status["raises"].feedback
    try:
        conn, _ = listener.accept()
        leaked = conn.recv(16)
    except (TimeoutError, socket.timeout):
        leaked = b""
    listener.close()
    assert leaked == b""
    for _, ev in cands:
        assert "sk-test-secret-123" not in (ev.stdout + ev.stderr + ev.feedback)


def test_resume_of_a_finished_campaign_changes_nothing():
    summary = run_campaign("erdos_min_overlap", chains=1, k=2, budget=6, seed=5)
    before = repo.count_rows(get_engine(), summary.campaign.id)
    again = resume_campaign(summary.campaign.id)
    assert repo.count_rows(get_engine(), summary.campaign.id) == before
    assert again.best_score == summary.best_score and again.campaign.status == "completed"


def test_cost_cap_stops_proposing_and_survives_resume():
    reply = _block([3.0, 3.0])
    with StubLLMServer(default_content=reply) as stub:
        # every call costs ~ (prompt + completion tokens) * $1 per token: the cap is hit at once
        summary = run_campaign(
            TOY, model="openai/stub-model", api_base=stub.url, chains=1, k=2, budget=8, seed=0,
            llm_concurrency=1, input_cost_per_mtok=1e6, output_cost_per_mtok=1e6, max_cost_usd=1.0,
        )
        assert summary.campaign.status == "stopped" and "cost cap" in summary.campaign.error
        assert 1 <= summary.steps < 8 and summary.cost_usd >= 1.0
        calls = len(stub.chat_requests)
        again = resume_campaign(summary.campaign.id)
        assert again.steps == summary.steps and len(stub.chat_requests) == calls, "a resume respects the spent budget"


def test_problems_that_opt_out_of_caching_evaluate_every_candidate(tmp_path):
    module = tmp_path / "timed_toy.py"
    module.write_text(
        "import dataclasses, importlib.util\n"
        f"spec = importlib.util.spec_from_file_location('toy_base', {TOY!r})\n"
        "base = importlib.util.module_from_spec(spec); spec.loader.exec_module(base)\n"
        "PROBLEM = dataclasses.replace(base.PROBLEM, name='timed_toy', cache_evaluations=False)\n"
    )
    reply = _block([3.0, 3.0])  # every proposal is the same program
    with StubLLMServer(default_content=reply) as stub:
        summary = run_campaign(str(module), model="openai/stub-model", api_base=stub.url, chains=1, k=2, budget=4)
    _, cands = _rows(summary.campaign.id)
    proposals = [(c, e) for c, e in cands if c.role == "proposal"]
    assert len({c.program_hash for c, _ in proposals}) == 1
    assert len({e.id for _, e in proposals}) == 4, "a timing problem measures every candidate"

    with StubLLMServer(default_content=reply) as stub:
        cached = run_campaign(TOY, model="openai/stub-model", api_base=stub.url, chains=1, k=2, budget=4)
    _, cands = _rows(cached.campaign.id)
    assert len({e.id for c, e in cands if c.role == "proposal"}) == 1, "identical programs are evaluated once"


def test_a_campaign_on_the_docker_sandbox_matches_the_same_campaign_on_the_default_one():
    """`--sandbox docker`: every evaluation runs in a warm container and scores exactly as on the
    default sandbox (the offline proposer makes the same candidates)."""
    from tests.sandbox.conftest import require_docker

    require_docker()
    docker = run_campaign("erdos_min_overlap", chains=1, k=2, budget=6, seed=7, sandbox="docker")
    local = run_campaign("erdos_min_overlap", chains=1, k=2, budget=6, seed=7)
    assert docker.campaign.status == local.campaign.status == "completed"
    _, on_docker = _rows(docker.campaign.id)
    _, on_default = _rows(local.campaign.id)
    assert {e.backend for _, e in on_docker} == {"docker"}
    # (sorted: ids follow the order in which concurrent proposals were stored)
    assert sorted((c.program_hash, e.status, e.score) for c, e in on_docker) == \
        sorted((c.program_hash, e.status, e.score) for c, e in on_default)
