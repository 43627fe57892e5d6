"""Per-candidate platform overhead: a full campaign versus the bare work it does, side by side.

With an instant stub LLM (a real HTTP server on 127.0.0.1 answering through litellm) and a
trivial problem, almost all of a campaign's time is the platform's own: Prefect task
orchestration, the database writes, prompt building, parsing and the sandbox spawn. This script
runs, in one process and one run:

  bare      the same proposer calls and the same sandboxed evaluations, driven by a plain
            ThreadPoolExecutor at the same concurrency: no Prefect, no database;
  platform  `flows.api.run_campaign` on the same problem, proposer and sandbox.

and prints seconds per candidate for each and their difference (the platform's overhead per
candidate), for the stub LLM and for the offline proposer.

    python bench/overhead.py [--budget 64] [--sandbox process]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import itertools
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

TRIVIAL = REPO / "tests" / "flows" / "toy_problem.py"


def _bare(problem, proposer, sandbox, moves, concurrency: int, eval_slots: int) -> float:
    """Proposals then evaluations with the same concurrency, nothing else; returns seconds."""
    from discovery.edits import ParseError, apply_response
    from discovery.types import program_hash
    from problems.evaluate import evaluate

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as llm, concurrent.futures.ThreadPoolExecutor(eval_slots) as ev:
        proposals = [llm.submit(proposer.propose, m, s) for m in moves for s in range(m.samples)]
        evals, seen = [], set()
        for (m, fut) in zip([m for m in moves for _ in range(m.samples)], proposals):
            try:
                code = apply_response(m.parent.code, fut.result().text)
            except ParseError:
                continue
            if program_hash(code) not in seen:  # the platform evaluates each distinct program once
                seen.add(program_hash(code))
                evals.append(ev.submit(evaluate, problem, code, sandbox))
        for f in evals:
            f.result()
    return time.perf_counter() - start


def _moves(problem, budget: int, chains: int, k: int, seed: int):
    """The first-step moves of a SimpleTES campaign, repeated to cover the budget."""
    from discovery.strategies.simpletes import SimpleTES, SimpleTESParams
    from discovery.strategy import Node
    from flows.factory import task_of

    strategy = SimpleTES(task_of(problem), SimpleTESParams(chains=chains, k=k, steps=budget // (chains * k)), seed=seed)
    strategy.start(Node(0, problem.seed_program, -1.0, "ok"))
    first = strategy.next_moves()
    return (first * (budget // (len(first) * k) + 1))[: budget // k]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=int, default=64)
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--sandbox", default="auto")
    ap.add_argument("--llm-concurrency", type=int, default=4)
    ap.add_argument("--eval-slots", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()

    from db.engine import dispose_engines
    from discovery.config import resolve
    from discovery.proposers.offline import OfflineProposer
    from flows.api import run_campaign
    from flows.factory import make_proposer
    from problems import get_problem
    from sandbox import get_sandbox
    from tests.stub_llm import StubLLMServer

    problem = get_problem(str(TRIVIAL))
    sandbox = get_sandbox(args.sandbox)
    counter = itertools.count()

    def reply(_body) -> str:  # a distinct program per call, so every candidate is evaluated
        return f"```python\nVALUES = [3.0, 2.9, {next(counter)}.5]\n\n\ndef construct():\n    return list(VALUES)\n```"
    tmp = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    os.environ["DISCOVERY_DB_URL"] = f"sqlite:///{tmp / 'bench.db'}"

    # Start the ephemeral Prefect API once, outside every measurement.
    t0 = time.perf_counter()
    run_campaign(str(TRIVIAL), chains=1, k=1, budget=1, sandbox=args.sandbox)
    prefect_start = time.perf_counter() - t0

    common = dict(chains=args.chains, k=args.k, budget=args.budget, sandbox=args.sandbox,
                  llm_concurrency=args.llm_concurrency, eval_slots=args.eval_slots, seed=0)
    rows = []
    with StubLLMServer(reply) as stub:
        for label, model in (("stub LLM (0 s latency)", "openai/stub"), ("offline proposer", None)):
            cfg = resolve(problem=str(TRIVIAL), model=model, api_base=stub.url if model else None, **common)
            proposer = make_proposer(cfg) if model else OfflineProposer()
            moves = _moves(problem, args.budget, args.chains, args.k, 0)
            proposer.propose(moves[0], 0)  # warm-up: litellm's first call pays its import
            bare = _bare(problem, proposer, sandbox, moves, args.llm_concurrency, args.eval_slots)
            t = time.perf_counter()
            summary = run_campaign(cfg)
            platform = time.perf_counter() - t
            n = summary.steps
            rows.append((label, n, summary.evaluations, bare / n, platform / n))

    print(f"sandbox backend: {sandbox.name}; eval slots {args.eval_slots}; LLM concurrency {args.llm_concurrency}; "
          f"budget {args.budget} candidates; cores {os.cpu_count()}")
    print(f"ephemeral Prefect API start + first 1-candidate campaign: {prefect_start:.2f} s (excluded below)")
    print(f"{'proposer':24s} {'candidates':>10s} {'evaluated':>9s} {'bare s/cand':>12s} {'platform s/cand':>16s} "
          f"{'overhead ms/cand':>17s} {'ratio':>6s}")
    for label, n, evaluated, bare, platform in rows:
        print(f"{label:24s} {n:10d} {evaluated:9d} {bare:12.4f} {platform:16.4f} {1000 * (platform - bare):17.1f} "
              f"{platform / bare:6.2f}")
    dispose_engines()


if __name__ == "__main__":
    main()
