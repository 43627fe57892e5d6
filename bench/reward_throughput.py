"""Throughput of the GRPO reward function: completions scored per second, per sandbox and slots.

Usage: python bench/reward_throughput.py [--prompts 8] [--generations 8] [--calls 3]
                                        [--sandboxes process,bwrap] [--slots 1,2]

What a GPU user sizing `--eval-slots` wants to know: how long one GRPO step waits for its
rewards. The completions are real: a SimpleTES campaign on erdos_min_overlap (offline
proposer) is run first (not timed), and each reward call gets `--prompts` of its prompts with
`--generations` completions each, taken in turn from the campaign's stored answers to that
prompt's parent program, so the programs are a campaign's real mix; identical programs within
a reward campaign are scored once ("evaluated": the evaluations made over all calls of a row,
the first included; "ok" and "unparsable": completions of the timed calls).
Every row uses a new SandboxReward (a new reward campaign: nothing is reused from an earlier
row's evaluations) and runs `--calls` calls; the first call of each row also evaluates the seed
once (the invalid-reward reference) and is reported apart. Ratios are within this run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

from db import repository as repo  # noqa: E402
from db.engine import get_engine  # noqa: E402
from flows.api import run_campaign  # noqa: E402
from flows.rewards import SandboxReward  # noqa: E402
from flows.train import grpo_dataset  # noqa: E402
from sandbox import bwrap_available  # noqa: E402


def _batches(url: str, cid: int, prompts: int, generations: int, calls: int):
    """`calls` reward calls, each `prompts` x `generations` real (prompt row, answer) pairs: the
    answers to a row are the campaign's stored answers to the same parent program, in turn."""
    engine = get_engine(url)
    rows = grpo_dataset(campaigns=[cid], db_url=url)
    responses = {s.id: s.response for s in repo.steps_of(engine, cid)}
    by_parent: dict[str, list[str]] = {}
    for p in repo.step_prompts(engine, campaign_ids=[cid]):
        if responses.get(p.step_id):
            by_parent.setdefault(p.parent_code, []).append(responses[p.step_id])
    rows = [r for r in rows if len(by_parent.get(r["parent_program"], [])) >= 2]
    out, k, used = [], 0, {}
    for _ in range(calls):
        batch = []
        for p in range(prompts):
            row = rows[(k + p) % len(rows)]
            answers = by_parent[row["parent_program"]]
            for _g in range(generations):
                i = used.get(id(row), 0)
                used[id(row)] = i + 1
                batch.append((row, answers[i % len(answers)]))
        k += prompts
        out.append(batch)
    return out


def _call(reward: SandboxReward, batch) -> float:
    start = time.perf_counter()
    reward(prompts=[r["prompt"] for r, _ in batch],
           completions=[[{"role": "assistant", "content": a}] for _, a in batch],
           problem=[r["problem"] for r, _ in batch], parent_program=[r["parent_program"] for r, _ in batch],
           keep_prefix=[r["keep_prefix"] for r, _ in batch])
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--generations", type=int, default=8)
    ap.add_argument("--calls", type=int, default=3)
    ap.add_argument("--sandboxes", default="process,bwrap")
    ap.add_argument("--slots", default="1,2")
    args = ap.parse_args()
    sandboxes = [s for s in args.sandboxes.split(",") if s != "bwrap" or bwrap_available()[0]]
    slots = [int(s) for s in args.slots.split(",")]

    folder = Path(tempfile.mkdtemp(prefix="reward-bench-"))
    url = f"sqlite:///{folder / 'bench.db'}"
    summary = run_campaign("erdos_min_overlap", chains=4, k=4, budget=128, seed=0, db_url=url)
    batches = _batches(url, summary.campaign.id, args.prompts, args.generations, args.calls + 1)
    n = args.prompts * args.generations
    print(f"cores: {os.cpu_count()}; {n} completions per call ({args.prompts} prompts x {args.generations}), "
          f"{args.calls} timed calls per row after a first call that also scores the seed")
    print(f"{'sandbox':8s} {'slots':>5s} {'first call s':>12s} {'median call s':>13s} {'completions/s':>13s} "
          f"{'ms/completion':>13s} {'ok':>4s} {'unparsable':>10s} {'evaluated':>9s}")
    rates: dict[tuple[str, int], float] = {}
    for sandbox in sandboxes:
        for slot in slots:
            reward = SandboxReward(db_url=url, sandbox=sandbox, eval_slots=slot, model=f"bench-{sandbox}-{slot}")
            first = _call(reward, batches[0])
            times, ok, bad = [], 0, 0
            for batch in batches[1:]:
                times.append(_call(reward, batch))
                ok += sum(s.status == "ok" for s in reward.last)
                bad += sum(s.status == "parse_error" for s in reward.last)
            reward.close()
            cid = reward.campaign_ids["erdos_min_overlap"]
            distinct = repo.count_rows(get_engine(url), cid)["evaluations"] - 1  # minus the seed's
            med = statistics.median(times)
            rates[(sandbox, slot)] = n / med
            print(f"{sandbox:8s} {slot:5d} {first:12.2f} {med:13.2f} {n / med:13.1f} {1000 * med / n:13.1f} "
                  f"{ok:4d} {bad:10d} {distinct:9d}")
    for sandbox in sandboxes:
        if len(slots) > 1:
            base = rates[(sandbox, slots[0])]
            print(f"{sandbox}: " + ", ".join(f"{s} slots = {rates[(sandbox, s)] / base:.2f}x {slots[0]} slot(s)"
                                             for s in slots[1:]))
    print(f"database: {folder / 'bench.db'}")


if __name__ == "__main__":
    main()
