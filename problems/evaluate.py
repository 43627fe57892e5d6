"""Evaluate one candidate program: run it in a sandbox, then score what it produced.

The candidate runs only inside the sandbox; the problem's trusted scorer runs here, in the
caller's process, on the plain data that came back. Candidate behaviour (raising, hanging,
exhausting memory, returning garbage) and a failing scorer each cost one Evaluation, never the
campaign. A sandbox that itself raises is an infrastructure failure, not the candidate's, and
the exception propagates so the caller can retry or stop.
"""

from __future__ import annotations

import dataclasses
import signal as signals

from discovery.types import ERROR, OK, Evaluation
from problems.base import Problem, Split
from sandbox.base import Limits, RunRequest, RunResult, Sandbox

TRACEBACK_LINES = 12  # lines of stderr quoted in the feedback of a failed run
TRACEBACK_CHARS = 2_000


def candidate_request(
    problem: Problem,
    program: str,
    *,
    kwargs: dict | None = None,
    inputs: dict | None = None,
    limits: Limits | None = None,
    entrypoint: str | None = None,
) -> RunRequest:
    """A RunRequest for `program` in the problem's own candidate environment.

    Custom evaluators build every sandboxed run through this, so each runs with the problem's
    limits and in a venv holding only `problem.requirements`.
    """
    return RunRequest(
        program=program,
        entrypoint=entrypoint or problem.entrypoint,
        kwargs=dict(problem.entry_kwargs if kwargs is None else kwargs),
        limits=limits or problem.limits,
        inputs=dict(inputs or {}),
        python=candidate_python(problem.requirements),
        requirements=tuple(problem.requirements),
        image=problem.docker_image,
    )


def candidate_python(requirements) -> str | None:
    """The interpreter of the candidate environment for `requirements` (built once, cached)."""
    from sandbox.envs import candidate_python as build

    return build(tuple(requirements))


def run_fields(problem: Problem, run: RunResult, sandbox: Sandbox) -> dict:
    """The sandbox fields of an Evaluation, from one run."""
    return {
        "stdout": run.stdout,
        "stderr": run.stderr,
        "duration_s": float(run.duration_s),
        "cpu_s": float(run.cpu_s),
        "backend": run.backend or getattr(sandbox, "name", "") or "none",
        "evaluator_version": problem.evaluator_version,
    }


def failed_run(problem: Problem, run: RunResult, sandbox: Sandbox, entrypoint: str | None = None) -> Evaluation:
    """The Evaluation of a run that did not finish with a readable result."""
    return Evaluation(
        status=run.status,
        metrics=_run_metrics(run),
        feedback=run_feedback(run, problem.limits, entrypoint or problem.entrypoint),
        **run_fields(problem, run, sandbox),
    )


def evaluate(problem: Problem, program: str, sandbox: Sandbox, split: Split = "search") -> Evaluation:
    """Runs `program` for `problem` in `sandbox` and returns its Evaluation (never raises for
    anything the candidate or the scorer does).

    Problems with a custom `evaluator` (several runs, instances, timings) are delegated to it;
    `split` chooses the search instances or the held-out ones.
    """
    if problem.evaluator is not None:
        return _guarded(problem, lambda: problem.evaluator(problem, program, sandbox, split), {})
    run = sandbox.run(candidate_request(problem, program))
    if run.status != OK:
        return failed_run(problem, run, sandbox)
    fields = run_fields(problem, run, sandbox)
    evaluation = _guarded(problem, lambda: problem.score(run.output), fields)
    return dataclasses.replace(evaluation, **fields)


def _guarded(problem: Problem, scorer, fields: dict) -> Evaluation:
    """Calls trusted scoring code; a broken scorer costs this evaluation, not the campaign."""
    try:
        evaluation = scorer()
        if not isinstance(evaluation, Evaluation):
            raise TypeError(f"the scorer returned {type(evaluation).__name__}, not an Evaluation")
        return evaluation
    except Exception as exc:
        message = f"{type(exc).__name__}: {exc}".replace("\n", " ")
        return Evaluation(
            status=ERROR,
            metrics={"evaluator_error": message},
            feedback=f"evaluator error: {message} (the trusted scorer failed on this output; "
            f"this is not necessarily the program's fault)",
            **({"evaluator_version": problem.evaluator_version} | fields),
        )


def _run_metrics(run: RunResult) -> dict:
    metrics: dict = {"run_status": run.status}
    if run.exit_code is not None:
        metrics["exit_code"] = run.exit_code
    if run.signal is not None:
        metrics["signal"] = run.signal
    return metrics


def _signal_name(number: int) -> str:
    try:
        return signals.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _killed_reason(run: RunResult, limits: Limits) -> str:
    """Names the limit that most likely ended the run."""
    text = f"{run.error}\n{run.stderr}".lower()
    sig = run.signal
    if sig == getattr(signals, "SIGXCPU", -1) or "cpu" in text:
        return f"the CPU-time limit ({limits.cpu_seconds:g} s)"
    if sig == getattr(signals, "SIGXFSZ", -1) or "file size" in text:
        return f"the file-size limit ({limits.max_file_mb} MiB)"
    if "memory" in text or "cannot allocate" in text:
        return f"the memory limit ({limits.memory_mb} MiB)"
    if "process" in text or "resource temporarily unavailable" in text:
        return f"the process limit ({limits.max_processes})"
    return (
        f"a resource limit (CPU {limits.cpu_seconds:g} s, memory {limits.memory_mb} MiB, "
        f"file size {limits.max_file_mb} MiB, processes {limits.max_processes})"
    )


def _traceback_tail(stderr: str) -> str:
    lines = [line for line in stderr.rstrip().splitlines() if line.strip()]
    tail = "\n".join(lines[-TRACEBACK_LINES:])
    return tail[-TRACEBACK_CHARS:]


def run_feedback(run: RunResult, limits: Limits, entrypoint: str) -> str:
    """Feedback a model can act on for a run that did not finish with a readable result."""
    if run.status == "timeout":
        head = (
            f"timeout: the program did not finish within the wall-clock limit of "
            f"{limits.wall_seconds:g} s (start-up included) and was killed; make {entrypoint}() "
            f"faster or do less work."
        )
    elif run.status == "killed":
        how = f" by {_signal_name(run.signal)}" if run.signal else ""
        head = f"killed{how}: the program hit {_killed_reason(run, limits)}."
        if run.error:
            head += f" {run.error}"
    else:
        reason = run.error or (
            f"exit code {run.exit_code}" if run.exit_code is not None else "no readable result"
        )
        head = f"error: {reason}"
        if "memoryerror" in reason.lower():
            head += f" (the memory limit is {limits.memory_mb} MiB)"
    tail = _traceback_tail(run.stderr)
    return f"{head}\nlast lines of stderr:\n{tail}" if tail else head
