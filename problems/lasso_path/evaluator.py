"""Trusted evaluator of the lasso path problem: correctness on fresh instances, speed measured
from outside the candidate's process.

One evaluation:
  1. Correctness: for every shape of the split's suite, a fresh instance from a seed drawn with
     `secrets` (the candidate never sees a seed; the search and holdout suites are disjoint),
     its certified reference path (reference.py), and one untimed candidate call on a shuffled
     copy, checked at every alpha.
  2. Speed, on each shape's fixed timing instance (seed derived from the split and the shape
     name, reference cached; fixed so that the score measures the program, not the luck of the
     draw: with fresh timing instances the score's CV over 10 evaluations was 13 %). Rounds (at least MIN_ROUNDS, more while the time budget allows, at most MAX_ROUNDS). In each
     round every instance is given a fresh equivalent copy (rows permuted, columns permuted and
     sign-flipped: the same objective values, never the same bytes twice), and, in a shuffled
     order of shapes and a shuffled order within each pair:
       - a candidate run: its own sandboxed process (the problem's candidate environment, one
         thread) that loads the copy from .npy inputs and calls lasso_path once; its CPU time
         (user + system of the whole process tree, from wait4, outside the candidate) is recorded
         and its returned path is checked at every alpha against the reference (any miss ends
         the evaluation as invalid, naming the shape, instance, alpha index and excess);
       - a null run: the same wrapper, imports and data loading with a trivial lasso_path.
     and one baseline run per round, at a random place among them: a trusted sandboxed process
     (the platform's interpreter, one thread) that imports scikit-learn once and times its
     lasso_path on the same copies with a CPU clock around each call, plus the
     first-call overhead of a fresh process (measured on a tiny problem), and celer the same
     way when it is installed.
  3. Candidate time per shape = median(candidate CPU) - median(null CPU), at least MIN_TIME_S.
     Baseline time = median over rounds. Score = geometric mean over shapes of
     sklearn time / candidate time (a speedup: higher is better).

Why the baseline is timed in-process: importing scikit-learn costs ~1.3 CPU s in a fresh
process with a spread of ~45 ms between runs, larger than many of the times measured, so a
null-subtracted outside measurement of it would need dozens of runs per shape. The baseline is
trusted code, so timing it inside its own process is safe; the candidate is untrusted, so it is
only ever timed from outside (nothing it does to its own clocks, caches or files matters: every
call is a new process on a new copy, and the work dir is deleted after each run).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import secrets
import statistics
import time
from typing import Sequence

import numpy as np

from discovery.types import ERROR, INVALID, OK, Evaluation
from problems.base import Problem, Split
from problems.evaluate import candidate_request, failed_run, run_fields
from problems.lasso_path.instances import (
    HOLDOUT_SUITE,
    SEARCH_SUITE,
    Instance,
    Shape,
    make_instance,
    shuffled,
)
from problems.lasso_path.programs import BASELINE_PROGRAM, candidate_program, null_program


def baseline_requirements(celer: bool) -> tuple[str, ...]:
    """What the trusted baseline run imports (scikit-learn, and celer when it is timed and installed)."""
    import importlib.util

    timed = celer and importlib.util.find_spec("celer") is not None
    return ("numpy", "scipy", "scikit-learn") + (("celer",) if timed else ())
from problems.lasso_path.reference import RTOL, check_path, reference_path
from sandbox.base import Limits, RunRequest, RunResult, Sandbox

EVALUATOR_VERSION = "1"
SKLEARN_TOL = 1e-6  # scikit-learn's default 1e-4 misses the 1e-6 objective tolerance on wide shapes
SKLEARN_MAX_ITER = 10_000
CELER_TOL = 1e-8

# max_processes=1: no threads or subprocesses. A process still alive when the runner exits is
# killed but not reaped inside the sandbox, so its CPU time would escape wait4; forbidding fork
# and clone closes that hole (and enforces the one-CPU rule).
RUN_LIMITS = Limits(wall_seconds=60.0, cpu_seconds=20.0, memory_mb=3072, cpus=1, max_processes=1)
BASELINE_LIMITS = Limits(wall_seconds=600.0, cpu_seconds=300.0, memory_mb=4096, cpus=1)


@dataclasses.dataclass(frozen=True)
class Settings:
    """How much measuring one evaluation does."""

    min_rounds: int = 2
    max_rounds: int = 9
    budget_s: float = 40.0  # start another round only if it is expected to end within this
    min_time_s: float = 0.005  # a candidate time below this counts as this
    run_limits: Limits = RUN_LIMITS
    baseline_limits: Limits = BASELINE_LIMITS
    celer: bool = True  # time celer too when it is installed (a reference, not in the score)
    # Tests and benchmarks only: fixed instance seeds (one per shape) instead of fresh ones from
    # `secrets`, to compare programs on the same instances. Never set for a real problem.
    instance_seeds: tuple[int, ...] | None = None


TIMING_SALT = "lasso_path/timing/1"


def timing_seed(split: str, shape: Shape) -> int:
    """The fixed instance seed of a shape's timing instance (stable across evaluations, so the
    score compares programs on the same instances; correctness is checked on fresh ones)."""
    digest = hashlib.sha256(f"{TIMING_SALT}:{split}:{shape.name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


@functools.lru_cache(maxsize=32)
def timing_instance(shape: Shape, seed: int):
    """A timing instance and its certified reference path, computed once per process."""
    instance = make_instance(shape, seed)
    return instance, reference_path(instance.X, instance.y, instance.alphas)


class _Stop(Exception):
    """Ends an evaluation early with this Evaluation (candidate failure or invalid output)."""

    def __init__(self, evaluation: Evaluation):
        super().__init__(evaluation.status)
        self.evaluation = evaluation


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def _geomean(values: Sequence[float]) -> float:
    return float(math.exp(sum(math.log(v) for v in values) / len(values)))


def _size(shape: Shape) -> str:
    return f"{shape.n} x {shape.p}"


class LassoEvaluator:
    """The Evaluator of the problem; suites and settings are parameters so tests can shrink them."""

    def __init__(self, search: Sequence[Shape] = SEARCH_SUITE,
                 holdout: Sequence[Shape] = HOLDOUT_SUITE, settings: Settings = Settings()):
        self.suites = {"search": tuple(search), "holdout": tuple(holdout)}
        self.settings = settings

    # -- one evaluation --------------------------------------------------------------------
    def __call__(self, problem: Problem, program: str, sandbox: Sandbox, split: Split) -> Evaluation:
        return _Evaluation(self, problem, program, sandbox, split).run()


class _Evaluation:
    def __init__(self, owner: LassoEvaluator, problem: Problem, program: str, sandbox: Sandbox,
                 split: Split):
        if split not in owner.suites:
            raise ValueError(f"unknown split {split!r}")
        self.problem, self.sandbox, self.split = problem, sandbox, split
        self.settings = owner.settings
        self.suite = owner.suites[split]
        self.candidate = candidate_program(program)
        self.null = null_program()
        self.sys_rng = secrets.SystemRandom()
        self.rng = np.random.default_rng(self.sys_rng.getrandbits(128))
        S = len(self.suite)
        self.cand_cpu: list[list[float]] = [[] for _ in range(S)]
        self.null_cpu: list[list[float]] = [[] for _ in range(S)]
        self.base: dict[str, list[list[float]]] = {}
        self.base_excess: dict[str, float] = {}
        self.versions: dict[str, str] = {}
        self.excess = [-math.inf] * S
        self.sandbox_wall = 0.0
        self.cand_cpu_total = 0.0
        self.last_run: RunResult | None = None
        self.round = 0
        self.checking = False

    def run(self) -> Evaluation:
        start = time.monotonic()
        s = self.settings
        try:
            # 1. Correctness on fresh instances (seeds from `secrets`), one untimed call each.
            fresh = [self.sys_rng.getrandbits(63) for _ in self.suite]
            self.instances: list[Instance] = [
                make_instance(shape, seed) for shape, seed in zip(self.suite, fresh, strict=True)]
            self.references = [reference_path(i.X, i.y, i.alphas) for i in self.instances]
            self.checking = True
            for i in range(len(self.suite)):
                self._candidate(i, shuffled(self.instances[i], self.rng)[0])
            self.checking = False
            # 2. Speed on the suite's fixed timing instances (fresh copies every call).
            seeds = s.instance_seeds or [timing_seed(self.split, shape) for shape in self.suite]
            pairs = [timing_instance(shape, seed) for shape, seed in zip(self.suite, seeds, strict=True)]
            self.instances = [inst for inst, _ in pairs]
            self.references = [ref for _, ref in pairs]
        except _Stop as stop:
            return stop.evaluation
        timing_start = time.monotonic()
        try:
            while self.round < s.max_rounds:
                self._one_round()
                self.round += 1
                per_round = (time.monotonic() - timing_start) / self.round
                if self.round >= s.min_rounds and (
                        time.monotonic() - timing_start + per_round > s.budget_s):
                    break
        except _Stop as stop:
            return stop.evaluation
        return self._result(time.monotonic() - start)

    # -- rounds ----------------------------------------------------------------------------
    def _one_round(self) -> None:
        copies = [shuffled(inst, self.rng)[0] for inst in self.instances]
        order = [int(i) for i in self.rng.permutation(len(self.suite))]
        baseline_at = int(self.rng.integers(0, len(order) + 1))
        for position, i in enumerate(order):
            if position == baseline_at:
                self._baseline(copies, order)
            kinds = ["candidate", "null"]
            self.rng.shuffle(kinds)
            for kind in kinds:
                if kind == "candidate":
                    self._candidate(i, copies[i])
                else:
                    self._null(i, copies[i])
        if baseline_at == len(order):
            self._baseline(copies, order)

    def _sandboxed(self, request: RunRequest) -> RunResult:
        run = self.sandbox.run(request)
        self.sandbox_wall += float(run.duration_s)
        return run

    def _where(self, i: int) -> str:
        inst = self.instances[i]
        when = "fresh-instance check" if self.checking else f"timing round {self.round + 1}"
        return f"shape {inst.shape.name} ({_size(inst.shape)}, instance seed {inst.seed}, {when})"

    def _candidate(self, i: int, arrays: dict) -> None:
        request = candidate_request(self.problem, self.candidate, kwargs={}, inputs=arrays,
                                    limits=self.settings.run_limits)
        run = self._sandboxed(request)
        self.last_run = run
        self.cand_cpu_total += float(run.cpu_s)
        if run.status != OK:
            evaluation = failed_run(self.problem, run, self.sandbox)
            evaluation = dataclasses.replace(
                evaluation, feedback=f"on {self._where(i)}: {evaluation.feedback}",
                metrics={**evaluation.metrics, "shape": self.suite[i].name,
                         "round": self.round + 1, "split": self.split})
            raise _Stop(evaluation)
        check = check_path(run.output, arrays["X"], arrays["y"], arrays["alphas"],
                           self.references[i].objective)
        if not check.ok:
            metrics = {"check": check.check, "shape": self.suite[i].name,
                       "instance_seed": self.instances[i].seed, "round": self.round + 1,
                       "split": self.split}
            if check.worst_index >= 0:
                metrics["alpha_index"] = check.worst_index
            if math.isfinite(check.max_excess):
                metrics["rel_excess"] = check.max_excess
            raise _Stop(Evaluation(
                status=INVALID, metrics=metrics,
                feedback=f"invalid: on {self._where(i)}: {check.message}.",
                **run_fields(self.problem, run, self.sandbox)))
        self.excess[i] = max(self.excess[i], check.max_excess)
        if not self.checking:
            self.cand_cpu[i].append(float(run.cpu_s))

    def _null(self, i: int, arrays: dict) -> None:
        request = candidate_request(self.problem, self.null, kwargs={}, inputs=arrays,
                                    limits=self.settings.run_limits)
        run = self._sandboxed(request)
        if run.status != OK:
            raise RuntimeError(f"the null timing run failed on shape {self.suite[i].name}: "
                               f"{run.status}: {run.error or run.stderr[-300:]}")
        self.null_cpu[i].append(float(run.cpu_s))

    def _baseline(self, copies: list[dict], order: list[int]) -> None:
        # python=None: the platform's own interpreter (which has the baselines) on process and
        # bwrap; requirements: what the docker backend's image for this run must hold
        inputs = {}
        for i, arrays in enumerate(copies):
            for key, value in arrays.items():
                inputs[f"{key}{i}"] = value
        request = RunRequest(
            program=BASELINE_PROGRAM, entrypoint="time_baselines",
            kwargs={"order": order, "sklearn_tol": SKLEARN_TOL,
                    "sklearn_max_iter": SKLEARN_MAX_ITER,
                    "celer_tol": CELER_TOL if self.settings.celer else None},
            inputs=inputs, limits=self.settings.baseline_limits, python=None,
            requirements=baseline_requirements(self.settings.celer))
        run = self._sandboxed(request)
        if run.status != OK or not isinstance(run.output, dict):
            raise RuntimeError(f"the baseline timing run failed: {run.status}: "
                               f"{run.error or run.stderr[-500:]}")
        out = run.output
        self.versions.update(out.get("versions") or {})
        for solver, times in out["times"].items():
            if solver == "celer" and not self.settings.celer:
                continue
            overhead = float(out["first_call_s"][solver])
            rows = self.base.setdefault(solver, [[] for _ in self.suite])
            for i in range(len(self.suite)):
                rows[i].append(float(times[str(i)]) + overhead)
                obj = np.asarray(out["objectives"][solver][str(i)], dtype=np.float64)
                ref = self.references[i].objective
                excess = float(np.max((obj - ref) / ref))
                self.base_excess[solver] = max(self.base_excess.get(solver, -math.inf), excess)

    # -- the score -------------------------------------------------------------------------
    def _result(self, elapsed: float) -> Evaluation:
        s = self.settings
        metrics: dict = {"split": self.split, "rounds": self.round}
        lines = []
        speedups = []
        cand_times = []
        for i, shape in enumerate(self.suite):
            raw = _median(self.cand_cpu[i]) - _median(self.null_cpu[i])
            t_cand = max(raw, s.min_time_s)
            t_sk = _median(self.base["sklearn"][i])
            speedup = t_sk / t_cand
            speedups.append(speedup)
            cand_times.append(t_cand)
            name = shape.name
            metrics[f"{name}.time_s"] = round(t_cand, 5)
            metrics[f"{name}.sklearn_s"] = round(t_sk, 5)
            metrics[f"{name}.speedup"] = round(speedup, 4)
            metrics[f"{name}.null_s"] = round(_median(self.null_cpu[i]), 4)
            line = (f"  {name} ({_size(shape)}): yours {t_cand * 1000:.1f} ms, scikit-learn "
                    f"{t_sk * 1000:.1f} ms, speedup {speedup:.3f}x")
            if raw < s.min_time_s:
                line += f" (your time counted as the {s.min_time_s * 1000:g} ms floor)"
            if "celer" in self.base:
                t_ce = _median(self.base["celer"][i])
                metrics[f"{name}.celer_s"] = round(t_ce, 5)
                metrics[f"{name}.celer_speedup"] = round(t_sk / t_ce, 4)
            lines.append(line)
        score = _geomean(speedups)
        worst = int(np.argmin(speedups))
        metrics["speedup"] = score
        metrics["worst_shape"] = self.suite[worst].name
        metrics["worst_speedup"] = round(speedups[worst], 4)
        metrics["max_rel_excess"] = float(max(self.excess))
        metrics["reference_max_gap"] = float(max(r.max_gap for r in self.references))
        metrics["sklearn_max_rel_excess"] = float(self.base_excess.get("sklearn", math.nan))
        for solver, version in self.versions.items():
            metrics[f"{solver}_version"] = version
        if "celer" in self.base:
            celer = _geomean([_median(self.base["sklearn"][i]) / _median(self.base["celer"][i])
                              for i in range(len(self.suite))])
            metrics["celer_speedup"] = round(celer, 4)
            metrics["celer_max_rel_excess"] = float(self.base_excess.get("celer", math.nan))
        metrics["evaluation_s"] = round(elapsed, 2)
        n_values = sum(inst.alphas.size for inst in self.instances) * self.round
        head = (f"speedup over scikit-learn's lasso_path: {score:.4f}x (geometric mean over "
                f"{len(self.suite)} shapes, {self.round} timed runs each; CPU time measured "
                f"outside your process minus a null run). Worst shape: "
                f"{self.suite[worst].name} at {speedups[worst]:.3f}x.")
        check = (f"Correctness: all {n_values} objective values within {RTOL:g} of the "
                 f"reference (largest relative excess {max(self.excess):.2e}).")
        parts = [head, "Per shape (median CPU time of one call):", *lines, check]
        if "celer_speedup" in metrics:
            parts.append(f"For reference, celer {self.versions.get('celer', '')} runs at "
                         f"{metrics['celer_speedup']:.3f}x scikit-learn on this suite.")
        last = self.last_run
        fields = run_fields(self.problem, last, self.sandbox) if last is not None else {
            "evaluator_version": self.problem.evaluator_version}
        fields["duration_s"] = round(self.sandbox_wall, 3)
        fields["cpu_s"] = round(self.cand_cpu_total, 3)
        return Evaluation(status=OK, score=score, metrics=metrics, feedback="\n".join(parts),
                          **fields)


def unused_score(output) -> Evaluation:
    """Problem.score is not used: this problem is scored by its evaluator."""
    return Evaluation(status=ERROR, feedback="lasso_path is scored by its custom evaluator")
