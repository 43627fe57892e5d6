"""Trusted scorer for the first autocorrelation inequality (upper bound on C1; lower is better).

The candidate returns the values a[0..n-1] >= 0 of a step function f on [-1/4, 1/4] with n
equal pieces of width h = 1/(2n) (piece i is [-1/4 + i h, -1/4 + (i + 1) h)). Everything is
recomputed here from those values alone: n is their count and h is 1/(2n); no count, width or
claimed constant from the candidate is ever read.

The constant. For nonnegative f supported on [-1/4, 1/4], the autoconvolution inequality
    max_t (f * f)(t) >= C1 (integral f)^2
holds for the best constant C1, and every f gives the upper bound
    C1 <= R(f) = max_t (f * f)(t) / (integral f)^2 .
For a step function, f * f is piecewise linear with breakpoints t_m = -1/2 + m h, and at the
breakpoints (f * f)(-1/2 + (k + 1) h) = h * sum_{i+j=k} a_i a_j = h * conv(a, a)[k]. A piecewise
linear function attains its maximum at a breakpoint, and integral f = h * sum(a), so
    R(f) = h * max_k conv(a, a)[k] / (h sum(a))^2 = 2n * max(np.convolve(a, a)) / sum(a)^2 .
R is invariant under scaling f by a positive constant. A constant f gives exactly 2. (On
[0, 1] instead of [-1/4, 1/4] the same ratio is halved; records here use [-1/4, 1/4].)

Floating point. The values are first scaled by a power of two so that max(a) is in [0.5, 1):
exact (apart from values below 2^-1022 times the maximum, whose contribution is below 1e-300),
and it keeps huge or tiny inputs from overflowing. sum(a) is math.fsum (correctly rounded).
np.convolve is the direct O(n^2) sum (numpy does not use an FFT); every conv entry is a sum of
at most n nonnegative products, so its relative error is at most about (n + 1) * 2^-53, and the
score's relative error at most about (n + 4) * 2^-53 (1.1e-11 at the cap of 100000 pieces), far
below the seventh decimal at which records are compared and too small for a candidate to
exploit. Direct convolution of 100000 values takes about a second here, which sets the cap.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from discovery.types import OK, Evaluation
from problems.checks import Rejected, Vector, plural

EVALUATOR_VERSION = "1"
MAX_PIECES = 100_000
BEST_KNOWN_VALUE = 1.5028609
LOWER_BOUND = 1.28  # proved: Cloninger and Steinerberger 2017; no valid f scores below it
NEAR_MAX_TOLERANCE = 1e-6  # relative: breakpoints within this of the maximum count as near-maximal

VALUES = Vector(
    symbol="f",
    max_size=MAX_PIECES,
    entrypoint="construct",
    derived="n and the piece width 1/(2n) come from their count, and no claimed constant or "
    "count is ever used.",
    overflow_check="finite",
    overflow_rule="is too large to be a finite float; every value must be a finite real >= 0.",
    finite_rule="every value must be a finite real >= 0.",
)


def _check_sign(a: np.ndarray) -> None:
    """Rejects negative values and an all-zero f (VALUES.read has already rejected non-finite
    ones)."""
    bad = np.flatnonzero(a < 0.0)
    if bad.size:
        i = int(bad[np.argmin(a[bad])])
        raise Rejected(
            "negative",
            f"f[{i}] = {float(a[i])!r} is below 0 ({plural(bad.size, 'negative value')}; this is "
            f"the most negative); f must be nonnegative: every value must satisfy f[i] >= 0 "
            f"exactly (clip with np.maximum(f, 0) after any arithmetic).",
            index=i,
            value=float(a[i]),
            count=int(bad.size),
        )
    if not np.any(a > 0.0):
        raise Rejected(
            "zero",
            f"all {a.size} values are 0, so the integral of f is 0 and the ratio is undefined; "
            f"f needs a positive integral.",
            n=int(a.size),
        )


def autoconvolution_bound(a: np.ndarray) -> tuple[float, np.ndarray]:
    """Returns (R(f), breakpoint values): 2n max(conv(a, a)) / sum(a)^2, and the values of
    (f * f)(t) / (integral f)^2 at the breakpoints t = -1/2 + (k + 1) / (2n), k = 0..2n-2."""
    a = np.asarray(a, dtype=np.float64)
    n = a.size
    _, exponent = math.frexp(float(a.max()))
    a = np.ldexp(a, -exponent)  # exact power-of-two scaling: max(a) in [0.5, 1)
    total = math.fsum(a.tolist())
    conv = np.convolve(a, a)
    scale = 2.0 * n / (total * total)
    bound = 2.0 * n * float(conv.max()) / (total * total)  # one rounding fewer than conv * scale
    return bound, conv * scale


def score(output: Any) -> Evaluation:
    """Scores what construct() returned; status ok with the upper bound R(f) on C1, or invalid."""
    try:
        a = VALUES.read(output)
        _check_sign(a)
    except Rejected as rejected:
        return rejected.evaluation(EVALUATOR_VERSION)

    n = a.size
    bound, ratios = autoconvolution_bound(a)
    argmax = int(np.argmax(ratios))
    peak_t = -0.5 + (argmax + 1) / (2 * n)
    near_max = int(np.count_nonzero(ratios >= bound * (1.0 - NEAR_MAX_TOLERANCE)))
    zeros = int(np.count_nonzero(a == 0.0))
    gap = bound - BEST_KNOWN_VALUE
    relation = (
        f"{gap:.7f} above the best known {BEST_KNOWN_VALUE:.7f}"
        if gap > 0
        else f"{-gap:.7f} below the best known {BEST_KNOWN_VALUE:.7f} (a new record if it holds)"
    )
    feedback = (
        f"ok: C1 bound {bound:.9f} with n = {n} pieces; {relation}. The maximum of f*f is at "
        f"t = {peak_t:.6f} (breakpoint {argmax} of {ratios.size}); {near_max} of {ratios.size} "
        f"breakpoints are within a relative {NEAR_MAX_TOLERANCE:g} of it (good constructions "
        f"make f*f flat near its maximum, with many near-maximal breakpoints); "
        f"{plural(zeros, 'piece')} of f are exactly 0."
    )
    return Evaluation(
        status=OK,
        score=bound,
        metrics={
            "n": n,
            "c1_bound": bound,
            "argmax_t": peak_t,
            "argmax_index": argmax,
            "near_max_breakpoints": near_max,
            "zero_pieces": zeros,
            "gap_to_best_known": gap,
        },
        feedback=feedback,
        evaluator_version=EVALUATOR_VERSION,
    )
