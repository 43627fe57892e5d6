"""Noise of the lasso_path score: re-evaluates one program several times and prints the
coefficient of variation of the score (target < 5 %) and the wall time of each evaluation.

    .venv/bin/python bench/lasso_noise.py                 # the seed, 10 evaluations, search split
    .venv/bin/python bench/lasso_noise.py -n 5 --split holdout
    .venv/bin/python bench/lasso_noise.py --program my_candidate.py --fixed-instances

Each evaluation runs exactly as in a campaign: correctness on fresh instances, speed on the
suite's fixed timing instances; --fixed-instances replaces the timing instances by another fixed
set (seeds 1000, 1001, ...). Run it on an otherwise idle machine: the figures are CPU times, but
other load still perturbs caches and memory bandwidth.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from problems.evaluate import evaluate  # noqa: E402
from problems.lasso_path import PROBLEM  # noqa: E402
from problems.lasso_path.evaluator import LassoEvaluator  # noqa: E402
from sandbox import get_sandbox  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=10, help="evaluations (default 10)")
    parser.add_argument("--split", choices=("search", "holdout"), default="search")
    parser.add_argument("--program", help="program file (default: the seed program)")
    parser.add_argument("--sandbox", default="auto")
    parser.add_argument("--fixed-instances", action="store_true",
                        help="same instances every time (measurement noise only)")
    args = parser.parse_args()

    program = Path(args.program).read_text() if args.program else PROBLEM.seed_program
    problem = PROBLEM
    if args.fixed_instances:
        base = PROBLEM.evaluator
        suite = base.suites[args.split]
        settings = dataclasses.replace(base.settings,
                                       instance_seeds=tuple(1000 + i for i in range(len(suite))))
        problem = dataclasses.replace(PROBLEM, evaluator=LassoEvaluator(
            base.suites["search"], base.suites["holdout"], settings))
    sandbox = get_sandbox(args.sandbox)
    print(f"lasso_path noise: {args.n} evaluations of "
          f"{args.program or 'the seed program'} on the {args.split} split, sandbox "
          f"{sandbox.name}, {'timing instances seeded 1000+' if args.fixed_instances else 'instances as in a campaign'}")
    scores, walls, per_shape = [], [], {}
    for k in range(args.n):
        start = time.monotonic()
        evaluation = evaluate(problem, program, sandbox, args.split)
        wall = time.monotonic() - start
        if evaluation.status != "ok":
            print(f"  #{k + 1}: {evaluation.status}: {evaluation.feedback[:300]}")
            continue
        scores.append(evaluation.score)
        walls.append(wall)
        m = evaluation.metrics
        for key, value in m.items():
            if key.endswith(".speedup"):
                per_shape.setdefault(key[:-len(".speedup")], []).append(value)
        print(f"  #{k + 1}: score {evaluation.score:.4f}  rounds {m['rounds']}  "
              f"celer {m.get('celer_speedup', float('nan')):.3f}  wall {wall:.1f} s", flush=True)
    if len(scores) < 2:
        print("not enough successful evaluations")
        return
    mean = statistics.mean(scores)
    cv = statistics.stdev(scores) / mean
    print(f"score: mean {mean:.4f}  sd {statistics.stdev(scores):.4f}  CV {100 * cv:.1f} %  "
          f"(target < 5 %)")
    print(f"wall per evaluation: mean {statistics.mean(walls):.1f} s  "
          f"min {min(walls):.1f} s  max {max(walls):.1f} s")
    for name, values in per_shape.items():
        shape_cv = statistics.stdev(values) / statistics.mean(values)
        print(f"  {name:20s} speedup mean {statistics.mean(values):.4f}  CV {100 * shape_cv:.1f} %")


if __name__ == "__main__":
    main()
