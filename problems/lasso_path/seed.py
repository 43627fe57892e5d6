"""Seed program for the lasso path problem.

lasso_path(X, y, alphas) returns W of shape (len(alphas), p): row k minimises
    (1 / (2 n)) * ||y - X w||^2 + alphas[k] * ||w||_1      (no intercept).
Plain cyclic coordinate descent in NumPy: warm starts along the path, an active set (sweeps
visit only the non-zero coefficients; the full gradient, computed once per outer iteration,
adds the features that violate optimality) and a duality-gap stopping rule.
"""

import numpy as np

# EVOLVE-BLOCK-START
GAP_TOL = 5e-7  # stop at an alpha once the duality gap is below GAP_TOL * primal objective
INNER_TOL = 1e-6  # sweeps over the active set stop when no coefficient moves more than this (relative)
MAX_SWEEPS = 10_000  # per outer iteration


def _soft(z, t):
    return np.sign(z) * max(abs(z) - t, 0.0)


def lasso_path(X, y, alphas):
    """Returns the coefficients along the path, shape (len(alphas), p)."""
    X = np.asfortranarray(X, dtype=np.float64)  # columns contiguous: X[:, j] is cheap
    y = np.asarray(y, dtype=np.float64)
    alphas = np.asarray(alphas, dtype=np.float64)
    n, p = X.shape
    norms = np.einsum("ij,ij->j", X, X) / n  # (1/n) ||x_j||^2
    columns = [X[:, j] for j in range(p)]
    W = np.zeros((alphas.size, p))
    w = np.zeros(p)
    r = y.copy()  # residual y - X w
    for k, alpha in enumerate(alphas):
        inner_tol = INNER_TOL
        while True:
            r = y - X @ w  # refresh to avoid drift
            grad = X.T @ r / n  # correlations; optimality: |grad_j| <= alpha, = alpha * sign(w_j) if w_j != 0
            l1 = np.abs(w).sum()
            primal = 0.5 * (r @ r) / n + alpha * l1
            scale = max(alpha, np.abs(grad).max())  # dual point theta = r / (n * scale) is feasible
            v = y - (alpha / scale) * r
            dual = 0.5 * ((y @ y) - (v @ v)) / n
            if primal - dual <= GAP_TOL * primal:
                break
            active = np.flatnonzero((w != 0.0) | ((np.abs(grad) > alpha) & (norms > 0)))
            for _ in range(MAX_SWEEPS):
                biggest = 0.0
                for j in active:
                    xj = columns[j]
                    old = w[j]
                    new = _soft(old + (xj @ r) / (n * norms[j]), alpha / norms[j])
                    if new != old:
                        r -= (new - old) * xj
                        w[j] = new
                        biggest = max(biggest, abs(new - old) * np.sqrt(norms[j]))
                if biggest <= inner_tol * max(1.0, np.sqrt(r @ r / n)):
                    break
            inner_tol *= 0.1
        W[k] = w
    return W
# EVOLVE-BLOCK-END
