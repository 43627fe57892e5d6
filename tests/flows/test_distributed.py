"""One campaign's evaluations spread over two machines' worth of workers, for real.

A real PostgreSQL server (tests/pg.py), a real `prefect server start` on 127.0.0.1 and two
`discovery worker` processes (Prefect task workers); the campaign flow runs in this process with
eval_on="workers" and defers every evaluation to them. The rows must be complete (each
candidate evaluated exactly once), carry both workers' marks, and the campaign must find what
the same campaign run locally on SQLite finds (the offline proposer is deterministic).
"""

from __future__ import annotations

import time
from collections import Counter

import pytest
from sqlalchemy import func, select

from tests.prefect_server import VENV_BIN, PrefectServer

pytestmark = pytest.mark.slow

SETTINGS = dict(budget=16, chains=2, k=4, seed=3, sandbox="process", eval_slots=4)


def _wait_for_workers(server: PrefectServer, n: int, timeout: float = 120) -> None:
    from flows.workers import serving_workers

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for label, proc, _ in server.procs:
            if proc.poll() is not None:
                raise AssertionError(f"{label} exited ({proc.returncode}):\n{server.logs()}")
        if serving_workers() >= n:
            return
        time.sleep(0.5)
    raise AssertionError(f"{n} workers did not register within {timeout:.0f}s:\n{server.logs()}")


def test_campaign_evaluations_run_on_two_workers(tmp_path, pg_url):
    from prefect.settings import PREFECT_API_URL, PREFECT_RESULTS_LOCAL_STORAGE_PATH, temporary_settings

    from db.engine import get_engine
    from db.models import Candidate, Evaluation
    from flows.api import run_campaign
    from flows.campaign import WORKER_KEY

    server = PrefectServer(tmp_path / "prefect").start()
    try:
        get_engine(pg_url)  # migrate once, before the workers connect
        workers = [server.spawn(f"worker{i}", [str(VENV_BIN / "discovery"), "worker", "--limit", "2"],
                                DISCOVERY_DB_URL=pg_url) for i in (1, 2)]
        updates = {PREFECT_API_URL: server.api_url, PREFECT_RESULTS_LOCAL_STORAGE_PATH: server.storage}
        with temporary_settings(updates=updates):
            _wait_for_workers(server, 2)
            t0 = time.monotonic()
            dist = run_campaign("erdos_min_overlap", db_url=pg_url, eval_on="workers", **SETTINGS)
            wall = time.monotonic() - t0
            local = run_campaign("erdos_min_overlap", **SETTINGS)  # this test's SQLite file, in-process
        assert dist.campaign.status == "completed", dist.campaign.error
        assert dist.campaign.config["eval_on"] == "workers"

        engine = get_engine(pg_url)
        cid = dist.campaign.id
        with engine.connect() as con:
            cands = con.execute(select(Candidate.id, Candidate.evaluation_id).where(Candidate.campaign_id == cid)).all()
            evs = con.execute(select(Evaluation.id, Evaluation.cache_key, Evaluation.metrics, Evaluation.kind)
                              .where(Evaluation.campaign_id == cid)).all()
            per_key = con.execute(select(Evaluation.cache_key, func.count()).where(Evaluation.campaign_id == cid)
                                  .group_by(Evaluation.cache_key)).all()
        # the seed plus one candidate per parsed proposal, every one with its evaluation
        assert len(cands) == 1 + SETTINGS["budget"] - dist.step_status.get("parse_error", 0)
        assert all(ev_id is not None for _, ev_id in cands)
        assert {ev_id for _, ev_id in cands} <= {e.id for e in evs}
        assert all(n == 1 for _, n in per_key)  # each program evaluated exactly once
        assert {e.kind for e in evs} == {"search"}

        marks = Counter(e.metrics.get(WORKER_KEY) for e in evs)
        pids = {str(p.pid) for p in workers}
        assert None not in marks, f"an evaluation ran outside the workers: {marks}"
        assert {m.rsplit(":", 1)[1] for m in marks} == pids, f"evaluations by worker: {marks}"

        assert dist.best_score == local.best_score
        assert dist.evaluations == local.evaluations
        print(f"\ndistributed campaign: {wall:.1f}s, evaluations by worker {dict(marks)}")
    finally:
        server.stop()
