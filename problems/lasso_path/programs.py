"""The programs the lasso path evaluator runs in the sandbox (source text, built here).

- `candidate_program(source)`: the submitted program behind a small wrapper that first imports
  PRELOADED (numpy, scipy.linalg, scipy.sparse), so every timed run, and its null run, pays the
  same start-up and importing those modules costs a candidate nothing. The submitted source is
  then compiled and executed as module `lasso_program` (tracebacks show its own line numbers).
- `null_program()`: the same wrapper around a trivial lasso_path (zeros of the right shape): the
  CPU time of start-up, imports, loading the inputs and writing the result, which is subtracted.
- `BASELINE_PROGRAM`: trusted; imports scikit-learn (and celer when installed), then times each
  solver on every instance of the round with a CPU clock around one call (see evaluator
  for why the baseline is timed in-process), and returns the times and the objective values.
"""

from __future__ import annotations

PRELOADED = ("numpy", "scipy", "scipy.linalg", "scipy.sparse")
PROGRAM_NAME = "lasso_program.py"

_WRAPPER = '''\
"""Timing wrapper: preloads {preloaded}, then runs the submitted program as `lasso_program`."""
import linecache as _linecache
import sys as _sys
import types as _types

import {imports}

_SOURCE = {source!r}
_NAME = {name!r}
_linecache.cache[_NAME] = (len(_SOURCE), None, _SOURCE.splitlines(True), _NAME)
_module = _types.ModuleType("lasso_program")
_module.__file__ = _NAME
_sys.modules["lasso_program"] = _module
exec(compile(_SOURCE, _NAME, "exec"), _module.__dict__)
if not callable(getattr(_module, "lasso_path", None)):
    raise AttributeError("the program defines no function lasso_path(X, y, alphas)")
lasso_path = _module.lasso_path
'''

NULL_SOURCE = '''\
import numpy as np


def lasso_path(X, y, alphas):
    return np.zeros((len(alphas), X.shape[1]))
'''


def candidate_program(source: str) -> str:
    """The submitted source behind the preloading wrapper."""
    return _WRAPPER.format(preloaded=", ".join(PRELOADED), imports=", ".join(PRELOADED),
                           source=source, name=PROGRAM_NAME)


def null_program() -> str:
    return candidate_program(NULL_SOURCE)


BASELINE_PROGRAM = '''\
"""Trusted baseline timing: scikit-learn's lasso_path (and celer's, when installed)."""
import time
import warnings

import numpy as np
from sklearn.linear_model import lasso_path as sklearn_lasso_path

try:
    import celer as _celer
    from celer import celer_path
except Exception:  # celer is an optional second reference
    _celer = celer_path = None


def _objectives(X, y, W, alphas):
    R = y[:, None] - X @ W.T
    return np.einsum("ik,ik->k", R, R) / (2.0 * X.shape[0]) + alphas * np.abs(W).sum(axis=1)


def _timed(solve):
    """CPU seconds of one call. time.thread_time() is used because inside the sandbox
    RLIMIT_CPU arms a process CPU timer, which makes the process clock tick-granular (4 ms);
    the thread clock stays exact. BLAS and OpenMP are pinned to one thread, so the call runs on
    this thread; should a helper thread show up anyway, the process clock is used instead."""
    start_thread, start_process = time.thread_time(), time.process_time()
    W = solve()
    thread = time.thread_time() - start_thread
    process = time.process_time() - start_process
    return (process if process > 1.05 * thread + 0.01 else thread), W


def _first_call_overhead(solve):
    """CPU seconds the first call in a fresh process costs beyond a warm call (tiny problem)."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 12))
    y = X[:, :3].sum(axis=1) + rng.standard_normal(30)
    alphas = np.max(np.abs(X.T @ y)) / 30 * np.logspace(0, -2, 10)
    cold = _timed(lambda: solve(X, y, alphas))[0]
    warm = sorted(_timed(lambda: solve(X, y, alphas))[0] for _ in range(3))[1]
    return max(0.0, cold - warm)


def time_baselines(order, sklearn_tol, sklearn_max_iter, celer_tol, **arrays):
    warnings.simplefilter("ignore")

    def sk(X, y, alphas):
        return sklearn_lasso_path(X, y, alphas=alphas, tol=sklearn_tol,
                                  max_iter=sklearn_max_iter)[1].T

    def ce(X, y, alphas):
        return celer_path(X, y, "lasso", alphas=alphas, tol=celer_tol)[1].T

    solvers = {"sklearn": sk}
    if celer_path is not None and celer_tol is not None:
        solvers["celer"] = ce
    import sklearn

    out = {"versions": {"sklearn": sklearn.__version__}, "first_call_s": {}, "times": {},
           "objectives": {}}
    if "celer" in solvers:
        out["versions"]["celer"] = getattr(_celer, "__version__", "?")
    for name, solve in solvers.items():
        out["first_call_s"][name] = _first_call_overhead(solve)
        out["times"][name] = {}
        out["objectives"][name] = {}
    for i in order:
        X, y, alphas = arrays[f"X{i}"], arrays[f"y{i}"], arrays[f"alphas{i}"]
        for name, solve in solvers.items():
            seconds, W = _timed(lambda: solve(X, y, alphas))
            out["times"][name][str(i)] = seconds
            out["objectives"][name][str(i)] = _objectives(X, y, W, alphas).tolist()
    return out
'''
