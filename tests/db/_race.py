"""Worker processes for tests/db/test_postgres.py (spawned: each imports only this and db/).

Each worker opens its own engine (get_engine migrates, so workers started on an empty database
race on the migrations too), waits at a barrier so that all of them write at once, then repeats
the repository's keyed writes for its keys and reports the ids it got back, or the error.
"""

from __future__ import annotations

import traceback
from typing import Any

N_TRAJECTORIES = 4


def fields(key: int) -> dict[str, Any]:
    return dict(status="ok", score=float(key), metrics={"key": key}, feedback="", stdout="", stderr="",
                duration_s=0.0, cpu_s=0.0, backend="none", evaluator_version="1")


def write_key(engine, campaign_id: int, key: int) -> tuple[int, int, int, int, int]:
    """Every keyed write of one sample: (seed id, trajectory id, step id, candidate id, evaluation id)."""
    from db import repository as repo

    seed = repo.ensure_seed_candidate(engine, campaign_id, "seed = 0", "seed-hash")
    tid = repo.ensure_trajectory(engine, campaign_id, key % N_TRAJECTORIES)
    step_id, cand_id = repo.record_step(
        engine, campaign_id=campaign_id, trajectory_id=tid, index=key, sample=key % 3, mode="propose",
        messages=[{"role": "user", "content": f"key {key}"}], parent_candidate_id=seed, response="r",
        model="offline", prompt_tokens=1, completion_tokens=1, cost_usd=0.0, latency_s=0.0, attempts=1,
        status="ok", error="", candidate=dict(code=f"x = {key}", program_hash=f"h{key}", parent_ids=[seed], diff=""),
    )
    ev_id = repo.record_evaluation(engine, campaign_id=campaign_id, candidate_id=cand_id, cache_key=f"h{key}",
                                   fields=fields(key))
    return seed, tid, step_id, cand_id, ev_id


def writer(url: str, campaign_id: int | None, keys: list[int], barrier, results) -> None:
    """Process target: writes `keys` (campaign_id None: only opens the database)."""
    try:
        from db.engine import dispose_engines, get_engine

        barrier.wait(timeout=120)  # every worker opens the database at once
        engine = get_engine(url)
        barrier.wait(timeout=120)  # and starts writing at once
        out = {key: write_key(engine, campaign_id, key) for key in keys} if campaign_id is not None else {}
        dispose_engines()
        results.put(("ok", out))
    except BaseException:  # noqa: BLE001 - reported to the test
        barrier.abort()  # the others stop waiting for this one
        results.put(("error", traceback.format_exc()))
