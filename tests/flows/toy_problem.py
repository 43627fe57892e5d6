"""A small user problem used by the end-to-end tests (also shows the add-a-problem contract).

The candidate's construct() returns a list of numbers; the score is -sum((x - 3)^2), so the
best possible score is 0. Tight limits keep hostile candidates cheap.
"""

import math

from discovery.types import Evaluation
from problems.base import BestKnown, Problem
from sandbox.base import Limits

SEED = '''import math

# EVOLVE-BLOCK-START
VALUES = [1.0, 2.0, 5.0]


def construct():
    return list(VALUES)
# EVOLVE-BLOCK-END
'''


def score(output) -> Evaluation:
    if not isinstance(output, list) or not output or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in output
    ):
        return Evaluation("invalid", feedback="construct() must return a non-empty list of numbers")
    if len(output) > 100 or not all(math.isfinite(v) for v in output):
        return Evaluation("invalid", feedback="at most 100 finite numbers")
    value = -sum((v - 3.0) ** 2 for v in output)
    return Evaluation("ok", score=value, metrics={"n": len(output)}, feedback=f"score {value:.4f}")


PROBLEM = Problem(
    name="toy_squares",
    title="Toy: bring every value to 3",
    description="Return a list of numbers from construct(); the score is -sum((x - 3)^2). Maximise it.",
    seed_program=SEED,
    entrypoint="construct",
    direction="maximize",
    score=score,
    limits=Limits(wall_seconds=3.0, cpu_seconds=2.0, memory_mb=512, max_processes=32),
    best_known=BestKnown(0.0, "by construction"),
    evaluator_version="toy-1",
)
