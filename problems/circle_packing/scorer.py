"""Trusted scorer for circle packing: 26 disjoint circles in the unit square, maximise sum(r).

The candidate returns 26 rows (x, y, r): the centre and radius of each circle, as a (26, 3)
numpy array or a list of 26 lists/tuples of three real numbers. Nothing else is read: the
number of circles is the number of rows, and the score is recomputed here from the radii.

Exactness. Every float64 is an exact rational number, so each check is decided exactly on the
values returned (fractions.Fraction of the floats), with no tolerance:
  - every r > 0;
  - containment: x - r >= 0, x + r <= 1, y - r >= 0, y + r <= 1;
  - disjointness: for every pair, (x_i - x_j)^2 + (y_i - y_j)^2 >= (r_i + r_j)^2 (squared, so
    no square root is taken; touching circles are allowed).
Floating-point rounding can therefore neither reject a valid packing nor accept one that
overlaps by a single ulp. (Public evaluators that accept overlaps up to 1e-12 or 1e-9 reward
candidates that exploit the tolerance: arena entries that beat the leader at tolerance 1e-9
all failed at tolerance 0.) The cost is 26 * 4 + 325 rational comparisons, a few milliseconds.

Score = sum of the radii, math.fsum of the float64 values (correctly rounded, so within half an
ulp of the exact sum). Amounts quoted in the feedback (how far a circle crosses a wall, how
deep two circles overlap) are float approximations of the exact quantities; only their sign
decides validity, and that sign is exact.
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction
from typing import Any

import numpy as np

from discovery.types import OK, Evaluation
from problems.checks import Rejected, check_dtype, describe, is_real, plural

EVALUATOR_VERSION = "1"
N_CIRCLES = 26
BEST_KNOWN_VALUE = 2.6359830849
CONTACT_TOLERANCE = 1e-9  # gaps below this count as contacts in the feedback (not in the checks)

COLUMNS = ("x", "y", "r")
_FLOAT_MAX = Fraction(np.finfo(np.float64).max)
_FORMAT = (
    f"return a ({N_CIRCLES}, 3) numpy array or a list of {N_CIRCLES} [x, y, r] triples of real "
    f"numbers"
)


def _as_circles(output: Any) -> np.ndarray:
    """Turns the candidate's output into a (26, 3) float64 array, or raises Rejected."""
    if isinstance(output, np.ndarray):
        return _array_circles(output)
    if isinstance(output, (list, tuple)):
        return _list_circles(output)
    raise Rejected(
        "type",
        f"construct() must {_FORMAT}; got {type(output).__name__} {describe(output)}. Only the "
        f"rows are read: the score is recomputed from the radii, and no claimed score or count "
        f"is ever used.",
        type=type(output).__name__,
    )


def _check_count(n: int) -> None:
    if n != N_CIRCLES:
        raise Rejected(
            "count",
            f"construct() returned {n} circles; exactly {N_CIRCLES} are required ({_FORMAT}).",
            n=n,
        )


def _array_circles(array: np.ndarray) -> np.ndarray:
    if array.ndim != 2 or array.shape[1] != 3:
        raise Rejected(
            "shape",
            f"construct() returned a {array.ndim}-D array of shape {array.shape}; {_FORMAT} "
            f"(one row (x, y, r) per circle).",
            shape=list(array.shape),
        )
    check_dtype(array, "construct")
    _check_count(array.shape[0])
    return array.astype(np.float64)


def _list_circles(rows: list | tuple) -> np.ndarray:
    _check_count(len(rows))
    circles = np.empty((N_CIRCLES, 3), dtype=np.float64)
    for i, row in enumerate(rows):
        if not isinstance(row, (list, tuple)):
            raise Rejected(
                "type",
                f"circle {i} is a {type(row).__name__} ({describe(row)}); {_FORMAT}.",
                index=i,
                type=type(row).__name__,
            )
        if len(row) != 3:
            raise Rejected(
                "shape",
                f"circle {i} has {len(row)} entries ({describe(row)}); each circle is exactly "
                f"[x, y, r].",
                index=i,
                length=len(row),
            )
        for k, item in enumerate(row):
            if not is_real(item):
                raise Rejected(
                    "type",
                    f"circle {i}: {COLUMNS[k]} is a {type(item).__name__} ({describe(item)}); "
                    f"x, y and r must be real numbers.",
                    index=i,
                    column=COLUMNS[k],
                    type=type(item).__name__,
                )
            try:
                circles[i, k] = float(item)
            except OverflowError:
                raise Rejected(
                    "finite",
                    f"circle {i}: {COLUMNS[k]} = {describe(item)} is too large to be a finite "
                    f"float; every value must be a finite real number.",
                    index=i,
                    column=COLUMNS[k],
                ) from None
    return circles


def _circle(circles: np.ndarray, i: int) -> str:
    x, y, r = (float(v) for v in circles[i])
    return f"circle {i} (x={x!r}, y={y!r}, r={r!r})"


def _check_finite_and_positive(circles: np.ndarray) -> None:
    bad = np.argwhere(~np.isfinite(circles))
    if bad.size:
        i, k = (int(v) for v in bad[0])
        value = float(circles[i, k])
        raise Rejected(
            "finite",
            f"circle {i}: {COLUMNS[k]} = {value!r} is not finite "
            f"({plural(len(bad), 'non-finite value')}); every value must be a finite real number.",
            index=i,
            column=COLUMNS[k],
            value=repr(value),  # a string: NaN and inf are not valid JSON numbers
            count=len(bad),
        )
    r = circles[:, 2]
    bad = np.flatnonzero(~(r > 0.0))
    if bad.size:
        i = int(bad[np.argmin(r[bad])])
        raise Rejected(
            "radius",
            f"{_circle(circles, i)} has radius {float(r[i])!r} <= 0 "
            f"({plural(bad.size, 'circle')} with a non-positive radius; this is the smallest); "
            f"every radius must be > 0.",
            index=i,
            r=float(r[i]),
            count=int(bad.size),
        )


_Exact = tuple[Fraction, Fraction, Fraction]  # (x, y, r) of one circle, exactly


def _wall_violations(q: list[_Exact]) -> list[tuple[Fraction, int, str]]:
    """(amount crossed, circle, wall) for every circle crossing a wall, decided exactly."""
    found = []
    for i, (x, y, r) in enumerate(q):
        for amount, wall in ((r - x, "left wall x = 0"), (x + r - 1, "right wall x = 1"),
                             (r - y, "bottom wall y = 0"), (y + r - 1, "top wall y = 1")):
            if amount > 0:
                found.append((amount, i, wall))
    return found


def _pair_overlaps(q: list[_Exact]) -> list[tuple[float, int, int]]:
    """(overlap depth, i, j) for every overlapping pair; overlap is decided exactly on squares.

    Depth r_i + r_j - d = (s^2 - d^2) / (s + d) with s = r_i + r_j, computed from the exact
    positive excess s^2 - d^2, so even a one-ulp overlap gets a positive (tiny) depth.
    """
    found = []
    for (i, (xi, yi, ri)), (j, (xj, yj, rj)) in itertools.combinations(enumerate(q), 2):
        d2 = (xi - xj) ** 2 + (yi - yj) ** 2
        s = ri + rj
        excess = s * s - d2
        if excess > 0:
            found.append((_depth(excess, s, d2), i, j))
    return found


def _finite(q: Fraction) -> float:
    """q as a float, clamped to the largest finite float (huge coordinates stay JSON-safe)."""
    return float(min(q, _FLOAT_MAX))


def _depth(excess: Fraction, s: Fraction, d2: Fraction) -> float:
    """r_i + r_j - d as a positive float: (s^2 - d^2) / (s + d), or s - d for huge values."""
    if s <= 4:  # then d < s <= 4 and every quantity is a modest float
        return float(excess) / (float(s) + math.sqrt(float(d2)))
    return max(_finite(s) - math.sqrt(_finite(d2)), math.ulp(0.0))


def _check_geometry(circles: np.ndarray) -> None:
    q = [tuple(Fraction(float(v)) for v in row) for row in circles]
    walls = _wall_violations(q)
    pairs = _pair_overlaps(q)
    if not walls and not pairs:
        return
    where: dict[str, Any] = {"wall_violations": len(walls), "overlapping_pairs": len(pairs)}
    parts = []
    if walls:
        amount, i, wall = max(walls, key=lambda v: v[0])  # first of equals
        amount = _finite(amount)  # huge coordinates: quote at most 1.8e308
        parts.append(
            f"{_circle(circles, i)} crosses the {wall} by {amount:.3g} "
            f"({plural(len(walls), 'wall violation')}; this is the worst)"
        )
        where.update(worst_wall_circle=i, worst_wall=wall, worst_wall_amount=amount)
    if pairs:
        depth, i, j = max(pairs, key=lambda v: v[0])
        parts.append(
            f"circles {i} and {j} overlap by {depth:.3g}: {_circle(circles, i)} and "
            f"{_circle(circles, j)} ({plural(len(pairs), 'overlapping pair')}; this is the deepest)"
        )
        where.update(worst_pair=[i, j], worst_overlap=depth)
    check = "containment" if walls else "overlap"
    raise Rejected(
        check,
        "; also ".join(parts) + ". Checks are exact (rational arithmetic, no tolerance): keep "
        "every circle inside [0, 1]^2 and every pair at centre distance >= r_i + r_j; shrink "
        "radii by a relative 1e-12 after any floating-point optimisation.",
        **where,
    )


def score(output: Any) -> Evaluation:
    """Scores what construct() returned; status ok with the sum of radii, or invalid."""
    try:
        circles = _as_circles(output)
        _check_finite_and_positive(circles)
        _check_geometry(circles)
    except Rejected as rejected:
        return rejected.evaluation(EVALUATOR_VERSION)
    return _ok(circles)


def _ok(circles: np.ndarray) -> Evaluation:
    x, y, r = circles[:, 0], circles[:, 1], circles[:, 2]
    total = math.fsum(r.tolist())
    # Gaps in float (feedback only; validity was decided exactly above).
    # Both are >= 0 exactly; clipping removes rounding noise of order 1e-17.
    wall_gap = np.maximum(np.minimum.reduce([x - r, 1.0 - x - r, y - r, 1.0 - y - r]), 0.0)
    dist = np.hypot(x[:, None] - x[None, :], y[:, None] - y[None, :])
    pair_gap = np.maximum(dist - (r[:, None] + r[None, :]), 0.0)
    np.fill_diagonal(pair_gap, np.inf)
    upper = np.triu_indices(N_CIRCLES, 1)
    wall_contacts = int(np.count_nonzero(
        np.stack([x - r, 1.0 - x - r, y - r, 1.0 - y - r]) <= CONTACT_TOLERANCE
    ))
    pair_contacts = int(np.count_nonzero(pair_gap[upper] <= CONTACT_TOLERANCE))
    slack = np.minimum(wall_gap, pair_gap.min(axis=1))
    loosest = int(np.argmax(slack))
    smallest = int(np.argmin(r))
    gap = BEST_KNOWN_VALUE - total
    relation = (
        f"{gap:.6g} below the best known {BEST_KNOWN_VALUE:.10f}"
        if gap > 0
        else f"{-gap:.3g} above the best known {BEST_KNOWN_VALUE:.10f} (a new record if it holds)"
    )
    loose = (
        f"circle {loosest} has the most room: it could grow by {float(slack[loosest]):.3g} "
        f"without moving anything"
        if slack[loosest] > CONTACT_TOLERANCE
        else "no circle can grow without moving others"
    )
    feedback = (
        f"ok: sum of radii {total:.10f} with {N_CIRCLES} circles; {relation}. Radii range from "
        f"{float(r[smallest]):.6f} (circle {smallest}) to {float(r.max()):.6f}; "
        f"{pair_contacts} circle-circle and {wall_contacts} circle-wall contacts within "
        f"{CONTACT_TOLERANCE:g}; {loose}. Good packings are rigid: every circle is held in place "
        f"by contacts."
    )
    return Evaluation(
        status=OK,
        score=total,
        metrics={
            "n": N_CIRCLES,
            "sum_radii": total,
            "min_radius": float(r[smallest]),
            "max_radius": float(r.max()),
            "pair_contacts": pair_contacts,
            "wall_contacts": wall_contacts,
            "min_pair_gap": float(pair_gap[upper].min()),
            "min_wall_gap": float(wall_gap.min()),
            "loosest_circle": loosest,
            "loosest_slack": float(slack[loosest]),
            "gap_to_best_known": gap,
        },
        feedback=feedback,
        evaluator_version=EVALUATOR_VERSION,
    )
