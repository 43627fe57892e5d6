"""Seed program for the Erdős minimum overlap problem.

construct() returns the values of a step function h on [0, 2] with n equal pieces, each value
in [0, 1] and sum(h) * 2 / n == 1. The trusted evaluator scores
max(np.correlate(h, 1 - h, "full")) * 2 / n (lower is better).
"""

import numpy as np


def normalise(f):
    """Returns clip(f + c, 0, 1) with the offset c chosen so that sum(h) * 2 / n == 1.

    The integral of clip(f + c, 0, 1) grows continuously and monotonically with c, from 0
    (every value clipped to 0) to 2 (every value clipped to 1), so bisection finds c.
    """
    f = np.asarray(f, dtype=float)
    n = f.size
    lo, hi = -f.max(), 1.0 - f.min()
    for _ in range(200):
        c = 0.5 * (lo + hi)
        if np.clip(f + c, 0.0, 1.0).sum() * 2.0 / n > 1.0:
            hi = c
        else:
            lo = c
    return np.clip(f + 0.5 * (lo + hi), 0.0, 1.0)


# EVOLVE-BLOCK-START
N_PIECES = 48  # number of equal pieces of [0, 2]
HEIGHT = 1.0  # height of the bump before clipping
WIDTH = 0.92  # half-width of the bump
POWER = 2.0  # shape exponent: 1 is a tent, 2 a parabola, large values a plateau
CENTER = 1.0  # where the bump peaks, in [0, 2]


def construct():
    """Returns h as a 1-D numpy array of N_PIECES values in [0, 1] with integral 1."""
    x = (np.arange(N_PIECES) + 0.5) * (2.0 / N_PIECES)  # midpoints of the pieces
    bump = HEIGHT * (1.0 - np.abs((x - CENTER) / WIDTH) ** POWER)
    return normalise(bump)
# EVOLVE-BLOCK-END
