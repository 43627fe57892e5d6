"""Erdős minimum overlap problem: find a step function whose overlap bound is as small as possible.

The seed program is package data (`seed.py`, read as text, never imported by the platform); the
trusted scorer is `scorer.score`.
"""

from __future__ import annotations


from problems.base import BestKnown, Problem, read_seed
from problems.erdos_min_overlap.scorer import (
    EVALUATOR_VERSION,
    INTEGRAL_TOLERANCE,
    MAX_PIECES,
    score,
)
from sandbox.base import Limits

LIMITS = Limits(wall_seconds=10.0, cpu_seconds=10.0, memory_mb=1024, cpus=1)

BEST_KNOWN = BestKnown(0.380870, "TTT-Discover 600-piece construction, 2025 (arXiv 2601.16175)")
REFERENCES = {
    "AlphaEvolve 2025": BestKnown(0.380924, "AlphaEvolve, 95-piece step function, 2025"),
    "Haugland 2016": BestKnown(
        0.380927, "J. K. Haugland, The minimum overlap problem revisited, 2016"
    ),
}

DESCRIPTION = f"""\
Erdős minimum overlap problem (minimise; lower is better).

Background. Split {{1, ..., 2n}} into two sets A and B of n elements each and let M_k count the
pairs (a, b) in A x B with a - b = k. Erdős asked for c = lim M(n)/n, where M(n) is the minimum
over splits of max_k M_k. Every step function h gives an upper bound on c, and you are asked
for a step function whose bound is as small as possible.

The bound. h: [0, 2] -> [0, 1] with integral 1; h and 1 - h are taken as zero outside [0, 2]:
    C(h) = max over shifts t of  integral h(x + t) * (1 - h(x)) dx .

What construct() must return. Define `construct()` with no arguments. It returns the values
h[0], ..., h[n-1] of h on n equal pieces of [0, 2] (piece i is [2i/n, 2(i+1)/n)), as a flat 1-D
list or numpy array of real numbers. The trusted evaluator checks, from the values alone:
  - 1 <= n <= {MAX_PIECES};
  - every value is finite and satisfies 0 <= h[i] <= 1 exactly (clip after any arithmetic);
  - the integral sum(h) * 2 / n equals 1 within {INTEGRAL_TOLERANCE:g} (the seed's `normalise(f)`
    helper returns clip(f + c, 0, 1) with the offset c that makes it exact).
Return only the values: n and the piece width 2/n are derived from their count; dicts, extra
entries, claimed scores or counts, nested lists, booleans and strings are rejected.

Scoring. For equal-width steps the maximum over real shifts is attained at multiples of the
piece width, so the evaluator computes
    bound = max(np.correlate(h, 1 - h, "full")) * 2 / n
and reports score = bound + |sum(h) * 2 / n - 1| (a certified upper bound on c). The feedback
also says how many shifts are near-maximal: good constructions equioscillate, with many shifts
attaining the maximum.

Reference values (lower is better):
  - best known {BEST_KNOWN.value:.6f}: {BEST_KNOWN.citation};
  - AlphaEvolve 2025: 0.380924 (95-piece step function);
  - Haugland 2016: 0.380927.
The best proved lower bound on c is 0.379005 (White 2022), so no valid construction scores
below that.

Rules. Only the code between # EVOLVE-BLOCK-START and # EVOLVE-BLOCK-END may change; keep the
lines outside it (`import numpy as np` and the `normalise` helper, which you may call). numpy
is available; nothing beyond it and the standard library is. The program runs in a sandbox
with no network and no files to read. Limits, Python and numpy start-up included:
{LIMITS.wall_seconds:g} s wall clock, {LIMITS.cpu_seconds:g} s CPU, {LIMITS.memory_mb} MiB \
memory, {LIMITS.cpus} CPU.
You may build h from a formula, run an optimisation inside construct() within those limits, or
return literal values (a few hundred pieces is practical).
"""



PROBLEM = Problem(
    name="erdos_min_overlap",
    title="Erdős minimum overlap: upper bound from a step function",
    description=DESCRIPTION,
    seed_program=read_seed(__package__),
    entrypoint="construct",
    direction="minimize",
    score=score,
    limits=LIMITS,
    best_known=BEST_KNOWN,
    references=REFERENCES,
    evaluator_version=EVALUATOR_VERSION,
)
