"""Seed program for the first autocorrelation inequality.

construct() returns the values f[0], ..., f[n-1] >= 0 of a step function on [-1/4, 1/4] with n
equal pieces of width 1/(2n). The trusted evaluator scores
2n * max(np.convolve(f, f)) / sum(f)^2 (lower is better; a constant f scores exactly 2).
"""

import numpy as np

# EVOLVE-BLOCK-START
N_PIECES = 100  # number of equal pieces of [-1/4, 1/4]
POWER = 0.48  # f(x) = (4x + 1)^(-POWER): a one-sided, integrable spike at the left end


def construct():
    """Returns f as a 1-D numpy array of N_PIECES nonnegative values."""
    x = -0.25 + (np.arange(N_PIECES) + 0.5) / (2 * N_PIECES)  # midpoints of the pieces
    return (4.0 * x + 1.0) ** (-POWER)
# EVOLVE-BLOCK-END
