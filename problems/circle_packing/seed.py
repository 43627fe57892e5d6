"""Seed program for circle packing: 26 disjoint circles in the unit square, maximise sum of radii.

construct() returns a (26, 3) numpy array whose rows are (x, y, r): centre and radius of one
circle. The trusted evaluator checks, in exact rational arithmetic, that every circle lies in
[0, 1] x [0, 1] and that no two circles overlap (touching is allowed), then scores sum(r).
"""

import numpy as np

N_CIRCLES = 26


def max_radii(centres, passes=10, margin=1e-12):
    """Returns radii for fixed centres that pass the exact checks (as large as a greedy can).

    First shrinks every overlapping pair in proportion, then grows each circle in turn until it
    touches a wall or a neighbour; finally shrinks all radii by the relative `margin`, which
    absorbs floating-point rounding. Radii of circles whose centre lies outside the square or
    on another centre come out as 0 (and are rejected: every radius must be positive).
    """
    c = np.asarray(centres, dtype=float)
    x, y = c[:, 0], c[:, 1]
    wall = np.maximum(np.minimum.reduce([x, 1.0 - x, y, 1.0 - y]), 0.0)
    d = np.hypot(x[:, None] - x[None, :], y[:, None] - y[None, :])
    np.fill_diagonal(d, np.inf)
    r = wall.copy()
    n = len(c)
    for i in range(n):
        for j in range(i + 1, n):
            if r[i] + r[j] > d[i, j]:
                s = d[i, j] / (r[i] + r[j])
                r[i] *= s
                r[j] *= s
    for _ in range(passes):
        for i in range(n):
            r[i] = max(0.0, min(wall[i], float(np.min(d[i] - r))))
    return r * (1.0 - margin)


# EVOLVE-BLOCK-START
ROWS = (5, 5, 6, 5, 5)  # circles per row, bottom to top (must add up to 26)
ROW_Y = (0.1, 0.3, 0.5, 0.7, 0.9)  # height of each row's centres
ROW_SHIFT = (0.0, 0.0, 0.0, 0.0, 0.0)  # horizontal shift of each row, as a fraction of its spacing


def construct():
    """Places the circles in rows of evenly spaced centres and gives them the largest radii
    the greedy max_radii finds; returns a (26, 3) array of (x, y, r)."""
    centres = []
    for count, y, shift in zip(ROWS, ROW_Y, ROW_SHIFT):
        spacing = 1.0 / count
        for i in range(count):
            x = (i + 0.5 + shift) * spacing
            centres.append((x, y))
    centres = np.array(centres[:N_CIRCLES])
    radii = max_radii(centres)
    return np.column_stack([centres, radii])
# EVOLVE-BLOCK-END
