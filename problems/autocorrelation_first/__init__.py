"""First autocorrelation inequality: a nonnegative step function whose autoconvolution has the
smallest possible maximum, giving an upper bound on the constant C1.

The seed program is package data (`seed.py`, read as text, never imported by the platform); the
trusted scorer is `scorer.score`.
"""

from __future__ import annotations


from problems.autocorrelation_first.scorer import (
    BEST_KNOWN_VALUE,
    EVALUATOR_VERSION,
    LOWER_BOUND,
    MAX_PIECES,
    score,
)
from problems.base import BestKnown, Problem, read_seed
from sandbox.base import Limits

LIMITS = Limits(wall_seconds=30.0, cpu_seconds=30.0, memory_mb=1024, cpus=1)

BEST_KNOWN = BestKnown(
    BEST_KNOWN_VALUE,
    "Einstein Arena, 2026 "
    "(https://einsteinarena.com/problems/first-autocorrelation-inequality/threads/204)",
)
REFERENCES = {
    "AlphaEvolve v2": BestKnown(1.5031636, "AlphaEvolve v2 (Novikov et al.), 2025"),
    "AlphaEvolve v1": BestKnown(1.5052940, "AlphaEvolve (Novikov et al.), 2025"),
    "Matolcsi-Vinuesa 2010": BestKnown(
        1.5097202, "M. Matolcsi and C. Vinuesa, Improved bounds on the supremum of "
        "autoconvolutions, 2010"
    ),
}

DESCRIPTION = f"""\
First autocorrelation inequality (minimise; lower is better).

Background. There is a best constant C1 such that every nonnegative function f supported on
[-1/4, 1/4] satisfies
    max over t of (f * f)(t) >= C1 * (integral of f)^2 ,
where (f * f)(t) = integral f(x) f(t - x) dx is the autoconvolution. Every such f gives the
upper bound C1 <= max_t (f * f)(t) / (integral f)^2, and you are asked for an f whose bound is
as small as possible. (This normalisation uses the interval [-1/4, 1/4], length 1/2; on [0, 1]
the same ratio is half as large. All values below use [-1/4, 1/4].)

What construct() must return. Define `construct()` with no arguments. It returns the values
f[0], ..., f[n-1] of a step function on n equal pieces of [-1/4, 1/4] (piece i is
[-1/4 + i/(2n), -1/4 + (i+1)/(2n)), width h = 1/(2n)), as a flat 1-D list or numpy array of real
numbers. The trusted evaluator checks, from the values alone:
  - 1 <= n <= {MAX_PIECES};
  - every value is finite and f[i] >= 0 exactly (clip with np.maximum(f, 0) after arithmetic);
  - at least one value is positive.
The scale of f does not matter (the ratio is scale-invariant). Return only the values: n and h
come from their count; dicts, claimed scores or counts, nested lists, booleans and strings are
rejected.

Scoring. f * f is piecewise linear with breakpoints at multiples of h, where it equals
h * np.convolve(f, f), and integral f = h * sum(f), so the evaluator computes
    score = 2n * max(np.convolve(f, f)) / sum(f)^2 .
A constant f scores exactly 2. The feedback says where f * f peaks and how many breakpoints are
near-maximal: good constructions make f * f flat near its maximum.

Reference values (lower is better):
  - best known {BEST_KNOWN.value:.7f}: Einstein Arena, 2026;
  - AlphaEvolve v2 2025: 1.5031636; AlphaEvolve v1 2025: 1.5052940;
  - Matolcsi and Vinuesa 2010: 1.5097202.
The best proved lower bound is C1 >= {LOWER_BOUND} (Cloninger and Steinerberger 2017), so no
valid construction scores below that.

Rules. Only the code between # EVOLVE-BLOCK-START and # EVOLVE-BLOCK-END may change; keep the
line outside it (`import numpy as np`). numpy is available; nothing beyond it and the standard
library is. The program runs in a sandbox with no network and no files to read. Limits,
Python and numpy start-up included: {LIMITS.wall_seconds:g} s wall clock,
{LIMITS.cpu_seconds:g} s CPU, {LIMITS.memory_mb} MiB memory, {LIMITS.cpus} CPU.
You may build f from a formula, run an optimisation inside construct() within those limits (for
example gradient steps on a smooth surrogate of the maximum, or a prox-linear method), or return
literal values. For scale: a 972-piece construction reaches 1.50387 (SimpleTES, 2026).
"""



PROBLEM = Problem(
    name="autocorrelation_first",
    title="First autocorrelation inequality: upper bound on C1 from a step function",
    description=DESCRIPTION,
    seed_program=read_seed(__package__),
    entrypoint="construct",
    direction="minimize",
    score=score,
    limits=LIMITS,
    best_known=BEST_KNOWN,
    references=REFERENCES,
    evaluator_version=EVALUATOR_VERSION,
    requirements=("numpy",),
)
