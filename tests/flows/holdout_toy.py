"""A toy problem with instances: construct(instance) returns numbers; the target depends on the
instance, and the held-out split uses targets the search never sees."""

import dataclasses

from discovery.types import Evaluation
from problems.base import Problem
from problems.evaluate import candidate_request, failed_run, run_fields
from sandbox.base import Limits

TARGETS = {"search": [3.0, 3.0], "holdout": [5.0, 1.0]}

SEED = '''# EVOLVE-BLOCK-START
VALUES = [1.0, 1.0]


def construct(instance):
    return list(VALUES)
# EVOLVE-BLOCK-END
'''


def evaluator(problem, program, sandbox, split):
    run = sandbox.run(candidate_request(problem, program, kwargs={"instance": split}))
    if run.status != "ok":
        return failed_run(problem, run, sandbox)
    out = run.output
    if not isinstance(out, list) or len(out) != 2 or not all(isinstance(v, (int, float)) for v in out):
        return dataclasses.replace(Evaluation("invalid", feedback="return two numbers"), **run_fields(problem, run, sandbox))
    value = -sum((a - b) ** 2 for a, b in zip(out, TARGETS[split]))
    return Evaluation("ok", score=value, metrics={"split": split}, feedback=f"{value}", **run_fields(problem, run, sandbox))


PROBLEM = Problem(
    name="holdout_toy",
    title="Toy with held-out instances",
    description="construct(instance) returns two numbers close to the instance's hidden targets.",
    seed_program=SEED,
    entrypoint="construct",
    direction="maximize",
    score=lambda output: Evaluation("invalid", feedback="scored by the evaluator"),
    evaluator=evaluator,
    has_holdout=True,
    requirements=(),
    limits=Limits(wall_seconds=5, cpu_seconds=3, memory_mb=512),
)
