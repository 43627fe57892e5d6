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

from discovery.types import INVALID, OK, Evaluation

EVALUATOR_VERSION = "1"
MAX_PIECES = 20_000
INTEGRAL_TOLERANCE = 1e-6
NEAR_MAX_TOLERANCE = 1e-9  # shifts within this of the maximum count as near-maximal
BEST_KNOWN_VALUE = 0.380870

_ACCEPTED_KINDS = {"f": "float", "i": "integer", "u": "unsigned integer"}


class _Rejected(Exception):
    """A check failed; carries the feedback line and the metrics that locate the failure."""

    def __init__(self, check: str, message: str, **where: Any) -> None:
        super().__init__(message)
        self.check = check
        self.message = message
        self.where = where


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _as_values(output: Any) -> np.ndarray:
    """Turns the candidate's output into a float64 vector, or raises _Rejected saying why."""
    if isinstance(output, np.ndarray):
        return _array_values(output)
    if isinstance(output, (list, tuple)):
        return _list_values(output)
    raise _Rejected(
        "type",
        f"construct() must return a 1-D list or numpy array of the n values of h; got "
        f"{type(output).__name__} {_describe(output)}. Only the values are read: n and the piece "
        f"width 2/n come from their count, and no claimed bound or count is ever used.",
        type=type(output).__name__,
    )


def _check_size(n: int) -> None:
    if n == 0:
        raise _Rejected("empty", "construct() returned no values; return n >= 1 values of h.", n=0)
    if n > MAX_PIECES:
        raise _Rejected(
            "size",
            f"construct() returned {n} values; at most {MAX_PIECES} pieces are accepted.",
            n=n,
        )


def _array_values(array: np.ndarray) -> np.ndarray:
    if array.ndim != 1:
        raise _Rejected(
            "shape",
            f"construct() returned a {array.ndim}-D array of shape {array.shape}; return a flat "
            f"1-D array of the n values of h.",
            shape=list(array.shape),
        )
    kind = array.dtype.kind
    if kind not in _ACCEPTED_KINDS or (kind == "f" and array.dtype.itemsize > 8):
        raise _Rejected(
            "dtype",
            f"construct() returned an array of dtype {array.dtype}; return real numbers "
            f"(float64, float32 or integers), not booleans, complex numbers, strings or objects.",
            dtype=str(array.dtype),
        )
    _check_size(array.size)
    return array.astype(np.float64)


def _list_values(items: list | tuple) -> np.ndarray:
    _check_size(len(items))
    values = np.empty(len(items), dtype=np.float64)
    for i, item in enumerate(items):
        if isinstance(item, (bool, np.bool_)) or not isinstance(
            item, (int, float, np.integer, np.floating)
        ):
            kind = type(item).__name__
            nested = isinstance(item, (list, tuple, dict))
            hint = "return a flat 1-D list of" if nested else "return only real numbers:"
            raise _Rejected(
                "type",
                f"h[{i}] is a {kind} ({_describe(item)}); {hint} the n values of h, nothing else.",
                index=i,
                type=kind,
            )
        try:
            values[i] = float(item)
        except OverflowError:
            raise _Rejected(
                "range",
                f"h[{i}] = {_describe(item)} is outside [0, 1]; every value must satisfy "
                f"0 <= h[i] <= 1.",
                index=i,
            ) from None
    return values


def _count(k: int, noun: str) -> str:
    return f"{k} {noun}" if k == 1 else f"{k} {noun}s"


def _check_values(h: np.ndarray) -> None:
    bad = np.flatnonzero(~np.isfinite(h))
    if bad.size:
        i = int(bad[0])
        raise _Rejected(
            "finite",
            f"h[{i}] = {float(h[i])!r} is not finite ({_count(bad.size, 'non-finite value')}); "
            f"every value must be a finite real in [0, 1].",
            index=i,
            value=repr(float(h[i])),  # a string: NaN and inf are not valid JSON numbers
            count=int(bad.size),
        )
    bad = np.flatnonzero((h < 0.0) | (h > 1.0))
    if bad.size:
        first = int(bad[0])
        excess = np.maximum(-h[bad], h[bad] - 1.0)
        i = int(bad[int(np.argmax(excess))])  # the worst offender
        side = "below 0" if h[i] < 0.0 else "above 1"
        where = f"the first at h[{first}]; " if first != i else ""
        raise _Rejected(
            "range",
            f"h[{i}] = {float(h[i])!r} is the furthest {side} ({_count(bad.size, 'value')} outside [0, 1], "
            f"{where}worst shown); "
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
        h = _as_values(output)
        _check_values(h)
        n = h.size
        integral = math.fsum(h.tolist()) * 2.0 / n
        integral_error = abs(integral - 1.0)
        if not integral_error <= INTEGRAL_TOLERANCE:
            raise _Rejected(
                "integral",
                f"the integral sum(h) * 2 / n is {integral!r} "
                f"(error {integral_error:.3g}, n = {n}); "
                f"it must equal 1 within {INTEGRAL_TOLERANCE:g}. Rescale or shift h (then clip) "
                f"so that sum(h) == n / 2.",
                n=n,
                integral=integral,
                integral_error=integral_error,
            )
    except _Rejected as rejected:
        return Evaluation(
            status=INVALID,
            metrics={"check": rejected.check, **rejected.where},
            feedback=f"invalid ({rejected.check} check): {rejected.message}",
            evaluator_version=EVALUATOR_VERSION,
        )

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
