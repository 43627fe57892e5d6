"""Trusted scorer for the Erdős minimum overlap problem.

The candidate returns the values h[0..n-1] of a step function on [0, 2] with n equal pieces of
width dx = 2/n. Everything is recomputed here from those values alone: n is their count, dx is
2/n, and no count, width or claimed bound from the candidate is ever read. (A public evaluator
was fooled by a candidate that reported a fractional point count used for dx, and then returned
the candidate's claimed value; neither is possible here.)

The bound. For a measurable h: [0, 2] -> [0, 1] with integral 1 (h and 1 - h both zero outside
[0, 2]), the minimum overlap constant is at most

    C(h) = sup over real t of  integral h(x + t) (1 - h(x)) dx .

For two step functions on the same grid of width dx, the correlation is piecewise linear in t
with breakpoints at multiples of dx, so the sup is attained at a lattice shift t = k dx, where
it equals dx * sum_i h[i + k] (1 - h[i]) = dx * np.correlate(h, 1 - h, "full")[k + n - 1].

Certification when the integral is not exactly 1. Let I = dx * sum(h) and e = |I - 1|. If
I < 1, g = h + d with 0 <= d <= 1 - h and integral(d) = e exists on the same grid (there is
room: integral(1 - h) = 2 - I > e), and for every shift
    C_t(g) - C_t(h) = integral d(x + t)(1 - g(x)) - integral h(x + t) d(x) <= integral d = e.
If I > 1, g = h - d with 0 <= d <= h and integral(d) = e, and
    C_t(g) - C_t(h) = integral g(x + t) d(x) - integral d(x + t)(1 - h(x)) <= integral d = e.
Either way g is feasible (values in [0, 1], integral exactly 1) and C(g) <= C(h) + e, so the
reported score C(h) + e is a valid upper bound. Candidates with e > 1e-6 are rejected anyway.

Floating point: the sums are float64 (the integral with math.fsum); their rounding error is of
order n * 1e-16, far below the sixth decimal at which results are compared.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from discovery.types import OK, Evaluation
from problems.checks import Rejected, Vector, plural

EVALUATOR_VERSION = "1"
MAX_PIECES = 20_000
INTEGRAL_TOLERANCE = 1e-6
NEAR_MAX_TOLERANCE = 1e-9  # shifts within this of the maximum count as near-maximal
BEST_KNOWN_VALUE = 0.380870

VALUES = Vector(
    symbol="h",
    max_size=MAX_PIECES,
    entrypoint="construct",
    derived="n and the piece width 2/n come from their count, and no claimed bound or count "
    "is ever used.",
    overflow_check="range",
    overflow_rule="is outside [0, 1]; every value must satisfy 0 <= h[i] <= 1.",
    finite_rule="every value must be a finite real in [0, 1].",
)


def _check_range(h: np.ndarray) -> None:
    """Rejects values outside [0, 1] (VALUES.read has already rejected non-finite ones)."""
    bad = np.flatnonzero((h < 0.0) | (h > 1.0))
    if bad.size:
        first = int(bad[0])
        excess = np.maximum(-h[bad], h[bad] - 1.0)
        i = int(bad[int(np.argmax(excess))])  # the worst offender
        side = "below 0" if h[i] < 0.0 else "above 1"
        where = f"the first at h[{first}]; " if first != i else ""
        raise Rejected(
            "range",
            f"h[{i}] = {float(h[i])!r} is the furthest {side} "
            f"({plural(bad.size, 'value')} outside [0, 1], {where}worst shown); "
            f"every value must satisfy 0 <= h[i] <= 1 exactly (clip after any arithmetic).",
            index=i,
            first_index=first,
            value=float(h[i]),
            count=int(bad.size),
        )


def overlap_bound(h: np.ndarray) -> tuple[float, np.ndarray]:
    """Returns (C(h), correlations): the max over lattice shifts and the per-shift values.

    correlations[m] = dx * sum_i h[i + k] (1 - h[i]) for shift k = m - (n - 1) pieces.
    """
    n = h.size
    correlations = np.correlate(h, 1.0 - h, "full") * (2.0 / n)
    return float(correlations.max()), correlations


def score(output: Any) -> Evaluation:
    """Scores what construct() returned; status ok with the certified bound, or invalid."""
    try:
        h = VALUES.read(output)
        _check_range(h)
        n = h.size
        integral = math.fsum(h.tolist()) * 2.0 / n
        integral_error = abs(integral - 1.0)
        if not integral_error <= INTEGRAL_TOLERANCE:
            raise Rejected(
                "integral",
                f"the integral sum(h) * 2 / n is {integral!r} "
                f"(error {integral_error:.3g}, n = {n}); "
                f"it must equal 1 within {INTEGRAL_TOLERANCE:g}. Rescale or shift h (then clip) "
                f"so that sum(h) == n / 2.",
                n=n,
                integral=integral,
                integral_error=integral_error,
            )
    except Rejected as rejected:
        return rejected.evaluation(EVALUATOR_VERSION)

    bound, correlations = overlap_bound(h)
    certified = bound + integral_error
    argmax = int(np.argmax(correlations))
    near_max = int(np.count_nonzero(correlations >= bound - NEAR_MAX_TOLERANCE))
    gap = certified - BEST_KNOWN_VALUE
    relation = (
        f"{gap:.6f} above the best known {BEST_KNOWN_VALUE:.6f}"
        if gap > 0
        else f"{-gap:.6f} below the best known {BEST_KNOWN_VALUE:.6f} (a new record if it holds)"
    )
    feedback = (
        f"ok: certified bound {certified:.9f} (overlap {bound:.9f} + integral error "
        f"{integral_error:.2g}) with n = {n} pieces; {relation}. The maximum is attained at shift "
        f"{argmax - (n - 1)} pieces; {near_max} of {correlations.size} shifts are within "
        f"{NEAR_MAX_TOLERANCE:g} of it (good constructions make many shifts near-maximal)."
    )
    return Evaluation(
        status=OK,
        score=certified,
        metrics={
            "n": n,
            "bound": bound,
            "integral": integral,
            "integral_error": integral_error,
            "argmax_shift": argmax - (n - 1),
            "near_max_shifts": near_max,
            "gap_to_best_known": gap,
        },
        feedback=feedback,
        evaluator_version=EVALUATOR_VERSION,
    )
