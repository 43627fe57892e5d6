"""Trusted instance generation for the lasso path problem: shape suites, designs, alpha grids.

Every instance is generated here, in the platform's process, from a seed the candidate never
sees. A `Shape` is public (the search suite is listed in the task text); the seed of each
evaluation is fresh (drawn from `secrets`), so no candidate can know or precompute an instance.

Designs (X is n x p, float64, C order; no intercept, nothing is centred or scaled):
  gaussian        i.i.d. N(0, 1) entries;
  toeplitz        rows are Gaussian with covariance rho^|i - j| (an AR(1) process over columns);
  equicorrelated  every pair of columns has correlation rho (one shared factor);
  sparse          each entry is N(0, 1) with probability `density`, else exactly 0 (stored dense).
The response is y = X w* + sigma * eps with `k` non-zero entries in w* (random positions, random
signs, magnitudes 1 + |N(0, 1)|) and sigma set for a signal-to-noise ratio `snr`
(||X w*|| / (sigma sqrt(n)) = snr). The alpha grid is geometric: n_alphas values from
alpha_max = max|X^T y| / n (the smallest alpha whose solution is 0) down to eps * alpha_max.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Shape:
    """One entry of a suite: a design family, its size and the alpha grid."""

    name: str
    design: str  # gaussian | toeplitz | equicorrelated | sparse
    n: int
    p: int
    k: int  # non-zeros in the true coefficients
    rho: float = 0.0  # correlation (toeplitz, equicorrelated)
    density: float = 1.0  # fraction of non-zero entries (sparse)
    snr: float = 3.0
    n_alphas: int = 50
    eps: float = 1e-2

    def describe(self) -> str:
        extra = ""
        if self.design in ("toeplitz", "equicorrelated"):
            extra = f", rho={self.rho:g}"
        elif self.design == "sparse":
            extra = f", density={self.density:g}"
        return (f"{self.name}: {self.design} X of {self.n} x {self.p}{extra}, {self.k} true "
                f"non-zeros, SNR {self.snr:g}, {self.n_alphas} alphas down to "
                f"{self.eps:g} * alpha_max")


@dataclasses.dataclass(frozen=True)
class Instance:
    """One generated lasso path problem."""

    shape: Shape
    seed: int
    X: np.ndarray
    y: np.ndarray
    alphas: np.ndarray

    @property
    def label(self) -> str:
        return f"{self.shape.name} (seed {self.seed})"

    def arrays(self) -> dict[str, np.ndarray]:
        return {"X": self.X, "y": self.y, "alphas": self.alphas}


def design_matrix(shape: Shape, rng: np.random.Generator) -> np.ndarray:
    n, p = shape.n, shape.p
    z = rng.standard_normal((n, p))
    if shape.design == "gaussian":
        return z
    if shape.design == "toeplitz":
        rho = shape.rho
        scale = np.sqrt(1.0 - rho * rho)
        X = np.empty_like(z)
        X[:, 0] = z[:, 0]
        for j in range(1, p):
            X[:, j] = rho * X[:, j - 1] + scale * z[:, j]
        return X
    if shape.design == "equicorrelated":
        rho = shape.rho
        common = rng.standard_normal((n, 1))
        return np.sqrt(1.0 - rho) * z + np.sqrt(rho) * common
    if shape.design == "sparse":
        mask = rng.random((n, p)) < shape.density
        return np.where(mask, z, 0.0)
    raise ValueError(f"unknown design {shape.design!r}")


def alpha_grid(X: np.ndarray, y: np.ndarray, n_alphas: int, eps: float) -> np.ndarray:
    alpha_max = float(np.max(np.abs(X.T @ y))) / X.shape[0]
    return alpha_max * np.logspace(0.0, np.log10(eps), n_alphas)


def make_instance(shape: Shape, seed: int) -> Instance:
    """The instance of `shape` for `seed` (deterministic)."""
    rng = np.random.default_rng([int(seed), 0x1A550])
    X = design_matrix(shape, rng)
    w = np.zeros(shape.p)
    support = rng.choice(shape.p, size=min(shape.k, shape.p), replace=False)
    w[support] = rng.choice([-1.0, 1.0], size=support.size) * (1.0 + np.abs(
        rng.standard_normal(support.size)))
    signal = X @ w
    sigma = np.linalg.norm(signal) / (shape.snr * np.sqrt(shape.n))
    if not sigma > 0:
        sigma = 1.0
    y = signal + sigma * rng.standard_normal(shape.n)
    alphas = alpha_grid(X, y, shape.n_alphas, shape.eps)
    return Instance(shape, int(seed), np.ascontiguousarray(X), y, alphas)


def shuffled(instance: Instance, rng: np.random.Generator) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """An equivalent copy of `instance` for one timed run: rows permuted, columns permuted and
    sign-flipped. The objective values along the path are unchanged (w'[j] = s[j] w[perm[j]]),
    so one reference serves every copy, while no two runs see byte-identical data.

    Returns (arrays, column permutation, column signs)."""
    n, p = instance.X.shape
    rows = rng.permutation(n)
    cols = rng.permutation(p)
    signs = rng.choice([-1.0, 1.0], size=p)
    X = np.ascontiguousarray(instance.X[np.ix_(rows, cols)] * signs)
    y = np.ascontiguousarray(instance.y[rows])
    return {"X": X, "y": y, "alphas": instance.alphas.copy()}, cols, signs


# The search suite, listed in the task text. Sized so that scikit-learn's lasso_path (tol 1e-6,
# one thread) takes roughly 25-100 ms on each on the development machine (AMD EPYC, 2 cores).
SEARCH_SUITE: tuple[Shape, ...] = (
    Shape("tall_gaussian", "gaussian", 6000, 500, k=50),
    Shape("wide_gaussian", "gaussian", 120, 1000, k=8),
    Shape("toeplitz_09", "toeplitz", 400, 400, k=20, rho=0.9),
    Shape("sparse_design", "sparse", 1500, 1000, k=40, density=0.1),
    Shape("dense_solution", "gaussian", 1500, 600, k=300),
    Shape("square_gaussian", "gaussian", 700, 700, k=35),
)

# Held-out shapes (split="holdout"): never shown to the search; other families, sizes, grids.
HOLDOUT_SUITE: tuple[Shape, ...] = (
    Shape("toeplitz_tall_07", "toeplitz", 6000, 400, k=40, rho=0.7, n_alphas=100, eps=1e-3),
    Shape("very_wide", "gaussian", 80, 2000, k=6),
    Shape("equicorrelated_08", "equicorrelated", 300, 300, k=15, rho=0.8),
    Shape("sparse_wide", "sparse", 400, 1200, k=20, density=0.05),
    Shape("toeplitz_wide_05", "toeplitz", 200, 800, k=15, rho=0.5),
)
