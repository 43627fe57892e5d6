"""evaluate(): sandbox run + trusted scoring, with a fake sandbox (and the real one if present)."""

from __future__ import annotations

import dataclasses
import importlib.util
import signal

import pytest

from discovery.types import Evaluation
from problems.erdos_min_overlap import PROBLEM
from problems.evaluate import evaluate
from sandbox.base import RunRequest, RunResult, Sandbox

TRACEBACK = """Traceback (most recent call last):
  File "runner.py", line 40, in main
    result = fn(**kwargs)
  File "candidate.py", line 7, in construct
    return 1 / 0
ZeroDivisionError: division by zero
"""


class FakeSandbox:
    """Returns a fixed RunResult and remembers the request."""

    name = "fake"

    def __init__(self, result: RunResult):
        self.result = result
        self.requests: list[RunRequest] = []

    def run(self, request: RunRequest) -> RunResult:
        self.requests.append(request)
        return self.result


def run_result(**fields) -> RunResult:
    base = dict(stdout="out", stderr="", duration_s=0.25, cpu_s=0.2, backend="fake")
    base.update(fields)
    return RunResult(**base)


def test_fake_sandbox_satisfies_protocol():
    assert isinstance(FakeSandbox(run_result(status="ok")), Sandbox)


def test_ok_run_is_scored_and_filled_in():
    sandbox = FakeSandbox(run_result(status="ok", output=[0.25, 0.75, 0.75, 0.25], stderr="warn"))
    evaluation = evaluate(PROBLEM, PROBLEM.seed_program, sandbox)
    assert evaluation.status == "ok"
    assert evaluation.score == 13 / 32
    assert (evaluation.stdout, evaluation.stderr) == ("out", "warn")
    assert (evaluation.duration_s, evaluation.cpu_s) == (0.25, 0.2)
    assert evaluation.backend == "fake"
    assert evaluation.evaluator_version == PROBLEM.evaluator_version
    (request,) = sandbox.requests
    assert request.program == PROBLEM.seed_program
    assert request.entrypoint == "construct"
    assert request.kwargs == {}
    assert request.limits == PROBLEM.limits


def test_ok_run_with_invalid_output():
    sandbox = FakeSandbox(run_result(status="ok", output={"c5_bound": 0.3}))
    evaluation = evaluate(PROBLEM, "program", sandbox)
    assert evaluation.status == "invalid"
    assert evaluation.score is None
    assert "got dict" in evaluation.feedback
    assert evaluation.backend == "fake" and evaluation.duration_s == 0.25


def test_error_run_quotes_error_and_traceback():
    sandbox = FakeSandbox(
        run_result(status="error", error="ZeroDivisionError: division by zero", exit_code=1,
                   stderr=TRACEBACK)
    )
    evaluation = evaluate(PROBLEM, "program", sandbox)
    assert evaluation.status == "error"
    assert evaluation.score is None
    assert evaluation.feedback.startswith("error: ZeroDivisionError: division by zero")
    assert 'File "candidate.py", line 7, in construct' in evaluation.feedback
    assert evaluation.metrics["exit_code"] == 1
    assert evaluation.stderr == TRACEBACK
    assert evaluation.evaluator_version == PROBLEM.evaluator_version


def test_error_run_without_message():
    evaluation = evaluate(PROBLEM, "program", FakeSandbox(run_result(status="error", exit_code=3)))
    assert evaluation.status == "error"
    assert "exit code 3" in evaluation.feedback


def test_memory_error_mentions_memory_limit():
    sandbox = FakeSandbox(run_result(status="error", error="MemoryError", stderr="MemoryError\n"))
    evaluation = evaluate(PROBLEM, "program", sandbox)
    assert f"{PROBLEM.limits.memory_mb} MiB" in evaluation.feedback


def test_timeout_names_the_wall_clock_limit():
    sandbox = FakeSandbox(run_result(status="timeout", error="wall-clock limit", duration_s=10.0))
    evaluation = evaluate(PROBLEM, "program", sandbox)
    assert evaluation.status == "timeout"
    assert f"{PROBLEM.limits.wall_seconds:g} s" in evaluation.feedback
    assert "wall-clock" in evaluation.feedback
    assert evaluation.duration_s == 10.0


def test_killed_by_cpu_limit():
    sandbox = FakeSandbox(run_result(status="killed", signal=int(signal.SIGXCPU)))
    evaluation = evaluate(PROBLEM, "program", sandbox)
    assert evaluation.status == "killed"
    assert "SIGXCPU" in evaluation.feedback
    assert f"CPU-time limit ({PROBLEM.limits.cpu_seconds:g} s)" in evaluation.feedback
    assert evaluation.metrics["signal"] == int(signal.SIGXCPU)


def test_killed_by_memory_limit():
    sandbox = FakeSandbox(
        run_result(status="killed", signal=int(signal.SIGKILL), error="memory limit exceeded")
    )
    evaluation = evaluate(PROBLEM, "program", sandbox)
    assert "SIGKILL" in evaluation.feedback
    assert f"memory limit ({PROBLEM.limits.memory_mb} MiB)" in evaluation.feedback


def test_scorer_raising_is_an_evaluator_error():
    def broken(output):
        raise KeyError("oops")

    problem = dataclasses.replace(PROBLEM, score=broken)
    evaluation = evaluate(problem, "program", FakeSandbox(run_result(status="ok", output=[0.5])))
    assert evaluation.status == "error"
    assert evaluation.score is None
    assert evaluation.feedback.startswith("evaluator error: KeyError")
    assert "evaluator_error" in evaluation.metrics
    assert evaluation.backend == "fake"


def test_scorer_returning_garbage_is_an_evaluator_error():
    problem = dataclasses.replace(PROBLEM, score=lambda output: 0.1)
    evaluation = evaluate(problem, "program", FakeSandbox(run_result(status="ok", output=[0.5])))
    assert evaluation.status == "error"
    assert "evaluator error" in evaluation.feedback and "float" in evaluation.feedback


def test_scorer_never_sees_anything_but_the_output():
    seen = []

    def recording(output):
        seen.append(output)
        return Evaluation(status="ok", score=1.0)

    problem = dataclasses.replace(PROBLEM, score=recording)
    evaluate(problem, "program", FakeSandbox(run_result(status="ok", output=[0.5, 0.5])))
    assert seen == [[0.5, 0.5]]


# --- the real process sandbox, when it is available -----------------------------------------

HAS_PROCESS = importlib.util.find_spec("sandbox.process") is not None
needs_process = pytest.mark.skipif(not HAS_PROCESS, reason="sandbox/process.py not present")


@needs_process
def test_seed_through_process_sandbox():
    from sandbox.process import ProcessSandbox

    evaluation = evaluate(PROBLEM, PROBLEM.seed_program, ProcessSandbox())
    assert evaluation.status == "ok", evaluation.feedback
    assert 0.39 < evaluation.score < 0.42
    assert evaluation.backend == "process"
    assert evaluation.duration_s > 0


@needs_process
def test_raising_program_through_process_sandbox():
    from sandbox.process import ProcessSandbox

    program = PROBLEM.seed_program.replace(
        "    return normalise(bump)", "    raise ValueError('bad construction')"
    )
    assert program != PROBLEM.seed_program
    evaluation = evaluate(PROBLEM, program, ProcessSandbox())
    assert evaluation.status == "error"
    assert "ValueError: bad construction" in evaluation.feedback
