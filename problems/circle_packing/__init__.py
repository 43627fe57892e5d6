"""Circle packing: 26 disjoint circles in the unit square with the largest sum of radii.

The seed program is package data (`seed.py`, read as text, never imported by the platform); the
trusted scorer is `scorer.score`.
"""

from __future__ import annotations


from problems.base import BestKnown, Problem, read_seed
from problems.circle_packing.scorer import BEST_KNOWN_VALUE, EVALUATOR_VERSION, N_CIRCLES, score
from sandbox.base import Limits

LIMITS = Limits(wall_seconds=30.0, cpu_seconds=30.0, memory_mb=1024, cpus=1)

BEST_KNOWN = BestKnown(
    BEST_KNOWN_VALUE,
    "single known basin, 2.6359830849-2.6359830853: SimpleTES 2026 artifact 2.635983084921 "
    "(overlap tolerance 1e-12); Numaro 2026 2.6359830853 "
    "(https://numaro.tech/research/circle-packing-unit-square-2026/); Einstein Arena calls "
    "n = 26 a single basin where only precision polishing remains "
    "(https://einsteinarena.com/problems/circle-packing/threads/184)",
)
REFERENCES = {
    "AlphaEvolve 2025": BestKnown(
        2.635863, "AlphaEvolve (Novikov et al.), 2025; 2.6358627564 recomputed from its data"
    ),
    "before AlphaEvolve": BestKnown(2.634, "best value reported before AlphaEvolve, 2025"),
}

DESCRIPTION = f"""\
Circle packing in the unit square (maximise; higher is better).

Task. Place {N_CIRCLES} circles with disjoint interiors inside the unit square [0, 1] x [0, 1]
so that the sum of their radii is as large as possible. Circles may touch each other and the
walls; they may not overlap or stick out, not even by a rounding error.

What construct() must return. Define `construct()` with no arguments. It returns the
{N_CIRCLES} circles as a numpy array of shape ({N_CIRCLES}, 3), or as a list of {N_CIRCLES} lists
[x, y, r]: centre (x, y) and radius r of each circle, real numbers (float64 is exact; float32
and integers are accepted). Return only the circles: dicts, claimed scores, extra rows or
columns, nested lists, booleans and strings are rejected.

Checks. The trusted evaluator decides every check exactly, on the float values returned,
treated as exact rational numbers (no tolerance at all):
  - every value finite and every r > 0;
  - every circle inside the square: x - r >= 0, x + r <= 1, y - r >= 0, y + r <= 1;
  - every pair disjoint: (x_i - x_j)^2 + (y_i - y_j)^2 >= (r_i + r_j)^2.
An overlap of one ulp makes the construction invalid, so after any floating-point optimisation
shrink the radii slightly (the seed's helper `max_radii` shrinks them by a relative 1e-12).
A rejection says which check failed and names the worst offender (the circle that crosses a
wall the most, the pair that overlaps the deepest).

Scoring. score = sum of the radii (math.fsum of the returned r values), recomputed by the
evaluator. The feedback also counts contacts and names the circle with the most room to grow.

Reference values (higher is better):
  - best known {BEST_KNOWN_VALUE:.10f}: the strong searches reported so far all end in the
    same basin (2.6359830849-2.6359830853, the last digits depending on the overlap tolerance
    used; Einstein Arena calls n = 26 a single basin);
  - AlphaEvolve 2025: 2.635863;
  - best reported before AlphaEvolve: 2.634.
With exact checks (no tolerance) the basin's value is reachable to within about 1e-10.

Rules. Only the code between # EVOLVE-BLOCK-START and # EVOLVE-BLOCK-END may change; keep the
lines outside it (`import numpy as np`, N_CIRCLES and the helper
`max_radii(centres, passes=10, margin=1e-12)`, which you may call: for fixed centres it
returns radii that pass the exact checks, by shrinking overlapping pairs and then growing each
circle until it touches a wall or a neighbour). numpy is available; nothing beyond it and the
standard library is (no scipy). The program runs in a sandbox with no network and no files to
read. Limits, Python and numpy start-up included: {LIMITS.wall_seconds:g} s wall clock,
{LIMITS.cpu_seconds:g} s CPU, {LIMITS.memory_mb} MiB memory, {LIMITS.cpus} CPU.
You may compute the packing (e.g. optimise centres and radii with a penalty method or
gradient steps in numpy within those limits) or return literal coordinates.
"""



PROBLEM = Problem(
    name="circle_packing",
    title=f"Circle packing: {N_CIRCLES} circles in the unit square, maximum sum of radii",
    description=DESCRIPTION,
    seed_program=read_seed(__package__),
    entrypoint="construct",
    direction="maximize",
    score=score,
    limits=LIMITS,
    best_known=BEST_KNOWN,
    references=REFERENCES,
    evaluator_version=EVALUATOR_VERSION,
    requirements=("numpy",),
)
