"""Lasso regularisation path, algorithm speed: be faster than scikit-learn's lasso_path.

The candidate defines lasso_path(X, y, alphas) -> W with shape (len(alphas), p). The trusted
evaluator (evaluator.LassoEvaluator) checks every returned path against a certified reference on
fresh instances and times each call in its own sandboxed process, from outside. The seed program
is package data (`seed.py`, read as text, never imported by the platform).
"""

from __future__ import annotations


from problems.base import BestKnown, Problem, read_seed
from problems.lasso_path.evaluator import (
    CELER_TOL,
    EVALUATOR_VERSION,
    RUN_LIMITS,
    SKLEARN_MAX_ITER,
    SKLEARN_TOL,
    LassoEvaluator,
    Settings,
    unused_score,
)
from problems.lasso_path.instances import SEARCH_SUITE
from problems.lasso_path.programs import PRELOADED
from problems.lasso_path.reference import RTOL

_SUITE_LINES = "\n".join(f"  - {shape.describe()}" for shape in SEARCH_SUITE)
_SETTINGS = Settings()
_RTOL = f"{RTOL:.0e}".replace("e-0", "e-")  # 1e-6
_PRELOADED = ", ".join(PRELOADED)
_SKLEARN_TOL = f"{SKLEARN_TOL:.0e}".replace("e-0", "e-")

DESCRIPTION = f"""\
Lasso regularisation path, as fast as possible (maximise the speedup over scikit-learn).

Define `lasso_path(X, y, alphas)`:
  - X: float64 array of shape (n, p), C order; y: float64 array of shape (n,);
  - alphas: float64 array of positive values in decreasing order (a geometric grid from
    alpha_max = max|X^T y| / n, where the solution is exactly 0, down to eps * alpha_max);
  - return W, a real array of shape (len(alphas), p): row k is a minimiser of
        (1 / (2 n)) * ||y - X w||^2 + alphas[k] * ||w||_1
    (no intercept, nothing centred or standardised).

Correctness. Every returned path is checked at every alpha: your objective value must not exceed
that of a certified high-precision reference solution by more than {_RTOL} relative. One miss
anywhere makes the whole evaluation invalid (the feedback names the shape, alpha index and
excess). Every evaluation first checks one instance per shape generated fresh from seeds you
never see; speed is then measured on fixed instances (one per shape, also unseen, so scores of
different programs are comparable), and every call gets a different but equivalent copy (rows
permuted, columns permuted and sign-flipped), so nothing can be precomputed or cached between
calls. Do not assume anything beyond the above.

Speed. Each timed call runs in its own fresh process (one CPU thread; BLAS pinned to 1 thread)
that loads one instance and calls lasso_path once. Its CPU time (user + system of the whole
process tree, measured by the operating system outside your process) minus that of an identical
process whose lasso_path returns zeros is your time; clocks inside your process are never read.
Times below {_SETTINGS.min_time_s * 1000:g} ms count as {_SETTINGS.min_time_s * 1000:g} ms.
The baseline is scikit-learn's coordinate descent, `sklearn.linear_model.lasso_path(X, y,
alphas=alphas, tol={_SKLEARN_TOL}, max_iter={SKLEARN_MAX_ITER})` (its default tol 1e-4 misses
the accuracy requirement on wide shapes), timed on the same instances, one thread, including its
first-call overhead in a fresh process. Score = geometric mean over the shapes below of
(scikit-learn time / your time), medians over several interleaved runs. The seed program (plain
cyclic coordinate descent in Python) scores about 0.05.

Search suite (the score; held-out shapes of other families and sizes are used to check that
speedups generalise, so do not specialise to these sizes):
{_SUITE_LINES}
Designs: gaussian = i.i.d. N(0, 1) entries; toeplitz = rows with covariance rho^|i-j|;
sparse = N(0, 1) entries with probability `density`, else 0 (stored as a dense array); the
response is X w* + noise with the stated number of non-zeros in w*.

Rules. Only the code between # EVOLVE-BLOCK-START and # EVOLVE-BLOCK-END may change. You may
use the Python standard library, NumPy and SciPy, nothing else (scikit-learn, numba, Cython and
compilers are not available; there is no network). {_PRELOADED} are imported before your
program runs, so importing them costs nothing; other imports count toward your time. Limits per
call: {RUN_LIMITS.cpu_seconds:g} s CPU, {RUN_LIMITS.wall_seconds:g} s wall clock, \
{RUN_LIMITS.memory_mb} MiB memory, one process with one thread (starting a
thread or a subprocess fails).

Ideas known to work: screening rules (strong rules, gap safe rules) and working sets, covariance
(Gram) updates when n > p, solving small active sets exactly, fewer passes in Python,
vectorised or BLAS-level inner loops, and stopping rules matched to the tolerance (it is on the
objective value, which converges faster than the coefficients or the duality gap).
"""



PROBLEM = Problem(
    name="lasso_path",
    title="Lasso regularisation path: speedup over scikit-learn",
    description=DESCRIPTION,
    seed_program=read_seed(__package__),
    entrypoint="lasso_path",
    direction="maximize",
    score=unused_score,
    limits=RUN_LIMITS,
    references={
        "scikit-learn": BestKnown(
            1.0, f"sklearn.linear_model.lasso_path, coordinate descent, tol={SKLEARN_TOL:g} "
            f"(the baseline; celer {CELER_TOL:g}-tol timings are in the metrics when installed)"),
    },
    evaluator_version=EVALUATOR_VERSION,
    cache_evaluations=False,
    requirements=("numpy", "scipy"),
    evaluator=LassoEvaluator(),
    has_holdout=True,
)
