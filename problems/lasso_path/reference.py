"""Trusted numerics for the lasso path problem: objective, duality gap, reference path, check.

Objective at one alpha (no intercept):  P(w) = ||y - X w||^2 / (2 n) + alpha * ||w||_1.

Dual certificate. For any w, with r = y - X w and s = max(n alpha, ||X^T r||_inf), the point
theta = r / s satisfies ||X^T theta||_inf <= 1, and
    D(theta) = (||y||^2 - ||y - n alpha theta||^2) / (2 n)
is a lower bound on min P. So P(w) - D(theta) >= P(w) - min P: a small gap certifies w.

The reference path is scikit-learn's coordinate descent run to a tight tolerance and then
certified alpha by alpha with the gap above, computed here independently of scikit-learn; if a
gap is not below REFERENCE_GAP * P, the instance is solved again to a tighter tolerance. The
candidate's path is accepted when, at every alpha, P(w_candidate) <= P(w_reference) * (1 + RTOL).
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np

RTOL = 1e-6  # the candidate's objective may exceed the reference by this much, relatively
REFERENCE_GAP = 1e-8  # the reference's certified relative duality gap at every alpha
_REFERENCE_SETTINGS = ((1e-10, 100_000), (1e-13, 1_000_000))  # (sklearn tol, max_iter) tries


def objectives(X: np.ndarray, y: np.ndarray, W: np.ndarray, alphas: np.ndarray) -> np.ndarray:
    """P(W[k]) at alphas[k] for every k; W has shape (len(alphas), p)."""
    n = X.shape[0]
    R = y[:, None] - X @ W.T
    return np.einsum("ik,ik->k", R, R) / (2.0 * n) + alphas * np.abs(W).sum(axis=1)


def duality_gaps(X: np.ndarray, y: np.ndarray, W: np.ndarray, alphas: np.ndarray) -> np.ndarray:
    """Certified gaps P(W[k]) - D(theta_k), each relative to P(W[k])."""
    n = X.shape[0]
    R = y[:, None] - X @ W.T  # residuals, one column per alpha
    primal = np.einsum("ik,ik->k", R, R) / (2.0 * n) + alphas * np.abs(W).sum(axis=1)
    corr = np.abs(X.T @ R).max(axis=0)
    shrink = (n * alphas) / np.maximum(n * alphas, corr)  # n alpha / s
    V = y[:, None] - R * shrink
    dual = (float(y @ y) - np.einsum("ik,ik->k", V, V)) / (2.0 * n)
    return (primal - dual) / primal


@dataclasses.dataclass(frozen=True)
class Reference:
    """The certified reference path of one instance."""

    W: np.ndarray  # (n_alphas, p)
    objective: np.ndarray  # P(W[k]) at alphas[k]
    max_gap: float  # largest certified relative duality gap along the path


class ReferenceError(RuntimeError):
    """The reference could not be certified (a trusted-side failure, not the candidate's)."""


def reference_path(X: np.ndarray, y: np.ndarray, alphas: np.ndarray) -> Reference:
    """A certified high-precision lasso path (scikit-learn coordinate descent, gap-checked)."""
    from sklearn.linear_model import lasso_path

    gaps = None
    for tol, max_iter in _REFERENCE_SETTINGS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, coefs, _ = lasso_path(X, y, alphas=alphas, tol=tol, max_iter=max_iter)
        W = np.ascontiguousarray(coefs.T)
        gaps = duality_gaps(X, y, W, alphas)
        if np.all(np.isfinite(gaps)) and gaps.max() <= REFERENCE_GAP:
            return Reference(W, objectives(X, y, W, alphas), float(gaps.max()))
    raise ReferenceError(
        f"reference path not certified: largest relative duality gap {float(np.nanmax(gaps)):.2e}"
        f" > {REFERENCE_GAP:g}")


@dataclasses.dataclass(frozen=True)
class Check:
    """Outcome of checking one returned path."""

    ok: bool
    check: str  # "objective" | "shape" | "type" | "finite" | "" when ok
    message: str  # one line, for the feedback
    max_excess: float = float("nan")  # max over alphas of (P_cand - P_ref) / P_ref
    worst_index: int = -1


def check_path(output, X: np.ndarray, y: np.ndarray, alphas: np.ndarray,
               reference_objective: np.ndarray) -> Check:
    """Checks a candidate's returned path against the reference objective values."""
    n_alphas, p = alphas.size, X.shape[1]
    if isinstance(output, (list, tuple)):
        try:
            output = np.asarray(output, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            return Check(False, "type", f"the returned value is not a numeric array ({exc})")
    if not isinstance(output, np.ndarray) or output.dtype.kind not in "biuf":
        kind = (f"an array of dtype {output.dtype}" if isinstance(output, np.ndarray)
                else type(output).__name__)
        return Check(False, "type", f"lasso_path must return a real numpy array of shape "
                     f"(len(alphas), p) = ({n_alphas}, {p}); got {kind}")
    if output.shape != (n_alphas, p):
        hint = (" (transposed? return one row per alpha)"
                if output.shape == (p, n_alphas) else "")
        return Check(False, "shape", f"lasso_path returned shape {output.shape}, expected "
                     f"(len(alphas), p) = ({n_alphas}, {p}){hint}")
    W = output.astype(np.float64)
    if not np.all(np.isfinite(W)):
        k = int(np.flatnonzero(~np.all(np.isfinite(W), axis=1))[0])
        return Check(False, "finite", f"the row for alpha index {k} has NaN or infinite values",
                     worst_index=k)
    with np.errstate(over="ignore", invalid="ignore"):
        obj = objectives(X, y, W, alphas)
    excess = (obj - reference_objective) / reference_objective
    excess = np.where(np.isfinite(excess), excess, np.inf)
    k = int(np.argmax(excess))
    worst = float(excess[k])
    if worst > RTOL:
        return Check(False, "objective",
                     f"at alpha index {k} (alpha = {alphas[k]:.6g}) the objective "
                     f"{obj[k]:.10g} exceeds the reference optimum {reference_objective[k]:.10g} "
                     f"by {worst:.3g} relative (tolerance {RTOL:g})",
                     max_excess=worst, worst_index=k)
    return Check(True, "", "", max_excess=worst, worst_index=k)
