"""Trusted evaluator for qubit routing: one sandboxed run per case, verified and compared to SABRE.

Each case (a circuit on a coupling map) is a separate sandboxed run of route(circuit, coupling)
with the problem's per-case limits, so the time limit of every case is enforced from outside the
candidate. Runs go CASE_WORKERS at a time. The output of every run is verified by
`verify.verify` (the candidate's own numbers are never read) and its SWAPs counted; the
baseline is Qiskit's SABRE on the same case, computed here (see `baseline`).

Score (maximise) = 100 * (1 - sum of the candidate's added CNOTs / sum of SABRE's added CNOTs)
over the suite: the percentage of SABRE's routing overhead the candidate saves (0 = as good as
SABRE, negative = worse). Added CNOTs = 3 per SWAP.

  - Any case whose output fails a check makes the whole evaluation invalid; the feedback names
    the first such case in suite order and its first violated check.
  - A case whose run fails (timeout, killed, raised) counts as failed: it is charged
    3 * (two-qubit gates) * (coupling diameter - 1) added CNOTs, more than the naive
    shortest-path router can ever need, so failing is never cheaper than routing naively.
    If every case fails, the evaluation takes the status of the first failed run.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import time
from typing import Any, Mapping

from discovery.types import INVALID, OK, Evaluation
from problems.base import Problem, Split
from problems.evaluate import candidate_request, failed_run
from problems.qubit_routing import baseline
from problems.qubit_routing.suite import Case, suite
from problems.qubit_routing.verify import CNOTS_PER_SWAP, RoutingError, verify
from sandbox.base import RunResult, Sandbox

EVALUATOR_VERSION = "1"
CASE_WORKERS = 2  # sandboxed case runs in flight at once


def failure_penalty(case: Case) -> int:
    """Added CNOTs charged for a case whose run failed (an upper bound on naive routing)."""
    return CNOTS_PER_SWAP * len(case.circuit.gates) * max(case.coupling.diameter - 1, 0)


@dataclasses.dataclass(frozen=True)
class CaseOutcome:
    case: Case
    added: int  # added CNOTs (the penalty when failed)
    sabre: int
    failed: str = ""  # why the run failed ("" when it produced a verified routing)
    duration_s: float = 0.0


class _Invalid(Exception):
    def __init__(self, case: Case, error: RoutingError) -> None:
        super().__init__(error.message)
        self.case = case
        self.error = error


def _outcome(case: Case, output: Any, duration_s: float = 0.0) -> CaseOutcome:
    try:
        routed = verify(case, output)
    except RoutingError as error:
        raise _Invalid(case, error) from None
    return CaseOutcome(case, routed.added_cnots, baseline.sabre_added_cnots(case),
                       duration_s=duration_s)


def _failed(case: Case, run: RunResult | None, reason: str = "") -> CaseOutcome:
    if not reason and run is not None:
        reason = run.status if not run.error else f"{run.status}: {run.error}"
    return CaseOutcome(case, failure_penalty(case), baseline.sabre_added_cnots(case),
                       failed=reason or "no output",
                       duration_s=run.duration_s if run is not None else 0.0)


def _invalid_evaluation(invalid: _Invalid, split: Split) -> Evaluation:
    case, error = invalid.case, invalid.error
    return Evaluation(
        status=INVALID,
        metrics={"check": error.check, "case": case.name, "circuit": case.circuit.name,
                 "coupling": case.coupling.name, "split": split, **error.where},
        feedback=(f"invalid ({error.check} check) on case {case.name} (circuit "
                  f"{case.circuit.name} on coupling map {case.coupling.name}): {error.message}"),
        evaluator_version=EVALUATOR_VERSION,
    )


def _summary(outcomes: list[CaseOutcome], split: Split) -> Evaluation:
    total = sum(o.added for o in outcomes)
    total_sabre = sum(o.sabre for o in outcomes)
    score = 100.0 * (1.0 - total / total_sabre)
    worst = max(outcomes, key=lambda o: (o.added - o.sabre, o.added))
    failed = [o for o in outcomes if o.failed]
    lines = [
        f"ok: score {score:.2f} = 100 * (1 - {total} / {total_sabre}): your routings add {total} "
        f"CNOTs (3 per SWAP) over {len(outcomes)} cases, Qiskit SABRE adds {total_sabre} "
        f"({'fewer' if total < total_sabre else 'more' if total > total_sabre else 'as many'}"
        f"{'' if total == total_sabre else ' than SABRE'}).",
        f"Worst case: {worst.case.name}: {worst.added} added CNOTs vs SABRE {worst.sabre} "
        f"({worst.added - worst.sabre:+d}).",
    ]
    if failed:
        lines.append(
            f"{len(failed)} case(s) failed and were charged 3 x gates x (diameter - 1) added "
            f"CNOTs: " + "; ".join(f"{o.case.name} ({o.failed})" for o in failed)
        )
    lines.append("Per case, added CNOTs yours / SABRE:")
    lines += [
        f"  {o.case.name}: {o.added} / {o.sabre} ({o.added - o.sabre:+d})"
        + (" FAILED" if o.failed else "")
        for o in outcomes
    ]
    metrics = {
        "split": split,
        "added_cnots": total,
        "sabre_added_cnots": total_sabre,
        "cases": len(outcomes),
        "failed_cases": len(failed),
        "worst_case": worst.case.name,
        "per_case": {
            o.case.name: {"added": o.added, "sabre": o.sabre, "failed": o.failed,
                          "duration_s": round(o.duration_s, 3)}
            for o in outcomes
        },
        "baseline": baseline.CONFIG,
        "qiskit_version": baseline.qiskit_version(),
    }
    return Evaluation(status=OK, score=score, metrics=metrics, feedback="\n".join(lines),
                      evaluator_version=EVALUATOR_VERSION)


def score_outputs(outputs: Mapping[str, Any], split: Split = "search") -> Evaluation:
    """Scores route() results already produced, keyed by case name (a missing case counts as
    failed). The trusted part of `evaluate`, usable without a sandbox."""
    if not isinstance(outputs, Mapping):
        return Evaluation(status=INVALID, metrics={"check": "format"},
                          feedback="expected a mapping from case name to route() result",
                          evaluator_version=EVALUATOR_VERSION)
    outcomes = []
    try:
        for case in suite(split):
            if case.name in outputs:
                outcomes.append(_outcome(case, outputs[case.name]))
            else:
                outcomes.append(_failed(case, None, "no output"))
    except _Invalid as invalid:
        return _invalid_evaluation(invalid, split)
    return _summary(outcomes, split)


def score(output: Any) -> Evaluation:
    """Problem.score: `output` maps each search case name to what route() returned for it."""
    return score_outputs(output, "search")


def evaluate(problem: Problem, program: str, sandbox: Sandbox, split: Split = "search") -> Evaluation:
    """Runs route() once per case of the split in `sandbox`, verifies and scores the results."""
    cases = suite(split)
    for case in cases:  # the trusted baseline first: a missing qiskit is not the candidate's fault
        baseline.sabre_added_cnots(case)
    started = time.monotonic()

    def run(case: Case) -> RunResult:
        kwargs = {"circuit": case.circuit.as_data(), "coupling": case.coupling.as_data()}
        return sandbox.run(candidate_request(problem, program, kwargs=kwargs))

    outcomes: list[CaseOutcome] = []
    runs: list[RunResult] = []
    invalid: _Invalid | None = None
    with concurrent.futures.ThreadPoolExecutor(max_workers=CASE_WORKERS) as pool:
        futures = [pool.submit(run, case) for case in cases]
        for case, future in zip(cases, futures):
            result = future.result()
            runs.append(result)
            if result.status != OK:
                outcomes.append(_failed(case, result))
                continue
            try:
                outcomes.append(_outcome(case, result.output, result.duration_s))
            except _Invalid as error:
                invalid = error
                for pending in futures:
                    pending.cancel()
                break

    fields = {
        "stdout": runs[-1].stdout if invalid else next((r.stdout for r in runs if r.stdout), ""),
        "stderr": runs[-1].stderr if invalid else next((r.stderr for r in runs if r.stderr), ""),
        "duration_s": time.monotonic() - started,
        "cpu_s": float(sum(r.cpu_s for r in runs)),
        "backend": next((r.backend for r in runs if r.backend), "") or getattr(sandbox, "name", "")
        or "none",
        "evaluator_version": problem.evaluator_version,
    }
    if invalid is not None:
        return dataclasses.replace(_invalid_evaluation(invalid, split), **fields)
    if all(o.failed for o in outcomes):
        first = runs[0]
        evaluation = failed_run(problem, first, sandbox)
        note = (f"every one of the {len(cases)} cases failed; the first ({cases[0].name}, a "
                f"circuit of {cases[0].circuit.num_qubits} qubits) with:\n")
        return dataclasses.replace(evaluation, feedback=note + evaluation.feedback,
                                   metrics={**evaluation.metrics, "split": split,
                                            "failed_cases": len(cases)}, **fields)
    evaluation = _summary(outcomes, split)
    return dataclasses.replace(evaluation, **fields)
