"""Helpers shared by the construction scorers' tests."""

from __future__ import annotations

import json


def run_program(program: str, entrypoint: str = "construct"):
    """Runs a program in-process (trusted test code only) and returns its entrypoint's output."""
    namespace: dict = {"__name__": "seed_under_test"}
    exec(compile(program, "seed.py", "exec"), namespace)
    return namespace[entrypoint]()


def assert_invalid(score, output, check: str, *fragments: str):
    """score(output) is invalid by `check`, with a one-line feedback holding every fragment."""
    evaluation = score(output)
    assert evaluation.status == "invalid", evaluation
    assert evaluation.score is None
    assert evaluation.metrics["check"] == check
    assert "\n" not in evaluation.feedback
    json.dumps(dict(evaluation.metrics), allow_nan=False)  # metrics are stored as JSON
    for fragment in fragments:
        assert fragment in evaluation.feedback, (fragment, evaluation.feedback)
    return evaluation
