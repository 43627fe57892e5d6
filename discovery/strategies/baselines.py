"""Baselines every search strategy must beat, at the same budget.

- best_of_n: N independent samples from the seed prompt, no refinement. It is SimpleTES
  with N / K chains of a single move each: every move shows only the seed program (no
  inspirations, no error history, since each chain has seen nothing), so the samples are
  independent draws from one prompt, issued all at once.
- greedy_refine: one chain that always refines the best program so far. It is SimpleTES with
  one chain, no inspirations and no restarts: every move's parent is the chain's best node and
  K samples are drawn per move (K = 1 is the strictly sequential greedy loop).

Both reuse SimpleTES's tested move/commit logic rather than a second copy of it; only the
name and the design tuple differ, so the budget accounting is identical by construction.
"""

from __future__ import annotations

from discovery.strategies.simpletes import SimpleTES, SimpleTESParams
from discovery.strategy import Task


def _check(budget: int, k: int, name: str) -> None:
    if k < 1 or budget < k or budget % k:
        raise ValueError(f"{name}: budget {budget} must be a positive multiple of k = {k}")


def best_of_n(task: Task, *, budget: int, k: int, seed: int) -> SimpleTES:
    """`budget` independent samples of the seed prompt, in moves of `k` samples."""
    _check(budget, k, "best_of_n")
    strategy = SimpleTES(task, SimpleTESParams(chains=budget // k, k=k, steps=1, inspirations=0), seed)
    strategy.name = "best_of_n"
    return strategy


def greedy_refine(task: Task, *, budget: int, k: int, seed: int) -> SimpleTES:
    """One chain refining its best program, `k` samples per move, `budget // k` moves."""
    _check(budget, k, "greedy_refine")
    strategy = SimpleTES(task, SimpleTESParams(chains=1, k=k, steps=budget // k, inspirations=0), seed)
    strategy.name = "greedy_refine"
    return strategy
