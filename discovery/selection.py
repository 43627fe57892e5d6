"""Inspiration selection: which of a chain's committed programs a prompt shows.

A selector sees one chain's graph (each committed node with its parent, its fitness, higher is
better, and how often it was shown) and returns up to n refs, the chain best first. Selectors
are pure functions of (graph, n, rng); the rng comes from `move_rng`, so a selection never
depends on another chain or on the order in which moves finish.

- `RankPUCT` (SimpleTES's "rpucg"): value V(s) = max(r(s), gamma * max_child V(child)), with
  r the chain's fitness min-max normalised to [0, 1] (so the discount means the same for
  negative scores and minimised problems); Q = percentile rank of V, P = percentile rank of
  raw fitness; score = Q + c * P * sqrt(1 + total visits) / (1 + visits). Greedy top-n with
  anti-inbreeding: a picked node's parent and children are skipped while others remain.
- `EliteBand` (SimpleTES's "balance"): the best, then each slot from the top elite_ratio with
  probability p_elite, from the 10-60% band with p_mid, else uniformly.
"""

from __future__ import annotations

import dataclasses
import math
import random
from typing import Protocol, Sequence


@dataclasses.dataclass(frozen=True)
class GraphNode:
    """One committed node of a chain, as a selector sees it.

    Attributes:
      ref: the node's ref.
      parent: the ref of the node it was committed under (None for the chain's root).
      fitness: the score mapped to higher-is-better (-inf when the node has no score).
      visits: how many prompts have shown it since the chain's last restart.
    """

    ref: int
    parent: int | None
    fitness: float
    visits: int = 0


class Selector(Protocol):
    """Chooses which committed nodes of a chain a prompt shows."""

    name: str

    def select(self, nodes: Sequence[GraphNode], n: int, rng: random.Random) -> list[int]:
        """Up to n distinct refs from nodes, the best node (highest fitness) first."""


def best_ref(nodes: Sequence[GraphNode]) -> int:
    """The ref of the fittest node; ties go to the node listed first."""
    best = nodes[0]
    for node in nodes[1:]:
        if node.fitness > best.fitness:
            best = node
    return best.ref


def percentile_ranks(values: Sequence[float]) -> list[float]:
    """Rank of each value scaled to [0, 1] (ties share their average rank; one value -> 1.0)."""
    n = len(values)
    if n == 1:
        return [1.0]
    order = sorted(range(n), key=lambda i: values[i])
    ranks = [0.0] * n
    i = 0
    while i < n:
        j = i
        while j + 1 < n and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 / (n - 1)
        i = j + 1
    return ranks


def normalised_fitness(nodes: Sequence[GraphNode]) -> dict[int, float]:
    """Fitness min-max scaled to [0, 1] over the finite values; -inf -> 0; all equal -> 1."""
    finite = [n.fitness for n in nodes if math.isfinite(n.fitness)]
    lo, hi = (min(finite), max(finite)) if finite else (0.0, 0.0)
    out = {}
    for node in nodes:
        if not math.isfinite(node.fitness):
            out[node.ref] = 0.0
        else:
            out[node.ref] = 1.0 if hi == lo else (node.fitness - lo) / (hi - lo)
    return out


def propagated_values(nodes: Sequence[GraphNode], gamma: float) -> dict[int, float]:
    """V(s) = max(r(s), gamma * max over children V(child)), computed bottom-up."""
    r = normalised_fitness(nodes)
    parent = {n.ref: n.parent for n in nodes if n.parent in r and n.parent != n.ref}
    depth: dict[int, int] = {}
    for ref in r:
        path: list[int] = []
        seen: set[int] = set()
        cur: int | None = ref
        while cur is not None and cur not in depth and cur not in seen:
            path.append(cur)
            seen.add(cur)
            cur = parent.get(cur)
        base = depth.get(cur, -1) if cur is not None and cur not in seen else -1
        for i, node in enumerate(reversed(path)):  # a cycle cannot come from commits
            depth[node] = base + 1 + i
    values = dict(r)
    for ref in sorted(r, key=lambda x: -depth[x]):  # children before their parents
        up = parent.get(ref)
        if up is not None and depth[up] < depth[ref]:
            values[up] = max(values[up], gamma * values[ref])
    return values


@dataclasses.dataclass(frozen=True)
class RankPUCT:
    """Rank-based PUCT over the chain graph with a discounted subtree value.

    Attributes:
      c: exploration weight.
      gamma: discount of a child's value when propagated to its parent.
    """

    c: float = 0.5
    gamma: float = 0.8
    name: str = "puct"

    def scores(self, nodes: Sequence[GraphNode]) -> dict[int, float]:
        """The PUCT score of every node."""
        v = propagated_values(nodes, self.gamma)
        q = percentile_ranks([v[n.ref] for n in nodes])
        p = percentile_ranks([n.fitness for n in nodes])
        total = sum(n.visits for n in nodes)
        return {
            n.ref: q[i] + self.c * p[i] * math.sqrt(1 + total) / (1 + n.visits)
            for i, n in enumerate(nodes)
        }

    def select(self, nodes: Sequence[GraphNode], n: int, rng: random.Random) -> list[int]:
        """The chain best, then the highest scores, skipping neighbours of picked nodes."""
        if n <= 0 or not nodes:
            return []
        score = self.scores(nodes)
        position = {node.ref: i for i, node in enumerate(nodes)}
        ranked = sorted(nodes, key=lambda x: (-score[x.ref], -x.fitness, position[x.ref]))
        neighbours: dict[int, set[int]] = {node.ref: set() for node in nodes}
        for node in nodes:
            if node.parent is not None and node.parent in neighbours:
                neighbours[node.ref].add(node.parent)
                neighbours[node.parent].add(node.ref)
        picked = [best_ref(nodes)]
        blocked = set(neighbours[picked[0]])
        skipped: list[int] = []
        for node in ranked:
            if len(picked) >= n:
                break
            if node.ref in picked:
                continue
            if node.ref in blocked:
                skipped.append(node.ref)
                continue
            picked.append(node.ref)
            blocked |= neighbours[node.ref]
        for ref in skipped:  # not enough unrelated nodes: fill up in score order
            if len(picked) >= n:
                break
            if ref not in picked:
                picked.append(ref)
        return picked


@dataclasses.dataclass(frozen=True)
class EliteBand:
    """The best, then slots drawn from the elite, a middle band, or anywhere.

    Attributes:
      elite_ratio: the top fraction of the chain (by fitness) that counts as elite.
      p_elite: probability a slot is drawn from the elite.
      p_mid: probability a slot is drawn from the 10-60% band; otherwise uniformly.
    """

    elite_ratio: float = 0.2
    p_elite: float = 0.7
    p_mid: float = 0.2
    name: str = "elite"

    def select(self, nodes: Sequence[GraphNode], n: int, rng: random.Random) -> list[int]:
        """The best, then n - 1 distinct draws."""
        if n <= 0 or not nodes:
            return []
        position = {node.ref: i for i, node in enumerate(nodes)}
        ranked = [x.ref for x in sorted(nodes, key=lambda x: (-x.fitness, position[x.ref]))]
        size = len(ranked)
        elite = ranked[: max(1, math.ceil(self.elite_ratio * size))]
        lo = int(0.1 * size)
        band = ranked[lo : max(lo + 1, int(0.6 * size))]
        picked = [ranked[0]]
        while len(picked) < min(n, size):
            u = rng.random()
            pool = elite if u < self.p_elite else band if u < self.p_elite + self.p_mid else ranked
            free = [ref for ref in pool if ref not in picked]
            if not free:
                free = [ref for ref in ranked if ref not in picked]
            picked.append(rng.choice(free))
        return picked


SELECTORS: dict[str, type] = {"puct": RankPUCT, "elite": EliteBand}


def make_selector(name: str, **params: float) -> Selector:
    """The selector called `name` ("puct" or "elite"), with optional parameters."""
    try:
        cls = SELECTORS[name]
    except KeyError:
        raise ValueError(
            f"unknown selector {name!r}; valid names: {', '.join(sorted(SELECTORS))}"
        ) from None
    return cls(**params)
