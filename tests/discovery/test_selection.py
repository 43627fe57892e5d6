"""Inspiration selectors: RankPUCT by hand, anti-inbreeding, best first, elite band proportions."""

from __future__ import annotations

import random

import pytest

from discovery.selection import (
    EliteBand,
    GraphNode,
    RankPUCT,
    make_selector,
    percentile_ranks,
    propagated_values,
)

# root(1) -> 2 -> 4, root(1) -> 3
NODES = [
    GraphNode(1, None, 1.0, visits=2),
    GraphNode(2, 1, 3.0, visits=1),
    GraphNode(3, 1, 2.0, visits=0),
    GraphNode(4, 2, 0.5, visits=0),
]


def test_percentile_ranks_with_ties():
    assert percentile_ranks([5.0]) == [1.0]
    assert percentile_ranks([1.0, 3.0, 2.0]) == [0.0, 1.0, 0.5]
    assert percentile_ranks([1.0, 1.0, 2.0]) == [0.25, 0.25, 1.0]


def test_rank_puct_by_hand():
    # fitness min-max normalised: r = 0.2, 1.0, 0.6, 0.0
    # V4 = 0, V2 = max(1, .8*0) = 1, V3 = .6, V1 = max(.2, .8*1, .8*.6) = .8
    values = propagated_values(NODES, 0.8)
    assert values == pytest.approx({1: 0.8, 2: 1.0, 3: 0.6, 4: 0.0})
    # Q (ranks of V) = 2/3, 1, 1/3, 0; P (ranks of fitness) = 1/3, 1, 2/3, 0; sqrt(1 + 3) = 2
    scores = RankPUCT(c=0.5, gamma=0.8).scores(NODES)
    assert scores[1] == pytest.approx(2 / 3 + 0.5 * (1 / 3) * 2 / 3)
    assert scores[2] == pytest.approx(1 + 0.5 * 1 * 2 / 2)
    assert scores[3] == pytest.approx(1 / 3 + 0.5 * (2 / 3) * 2 / 1)
    assert scores[4] == pytest.approx(0.0)


def test_discount_is_direction_free():
    # All-negative fitness (a minimised problem): a bad parent must not be lifted above its child.
    nodes = [GraphNode(1, None, -10.0), GraphNode(2, 1, -9.0)]
    values = propagated_values(nodes, 0.8)
    assert values[2] == 1.0 and values[1] == pytest.approx(0.8)


def test_anti_inbreeding_and_fill_up():
    rng = random.Random(0)
    # Best is 2; its parent 1 and child 4 are skipped while 3 remains.
    assert RankPUCT().select(NODES, 2, rng) == [2, 3]
    # Asking for more than the unrelated nodes: fill up in score order (1 before 4).
    assert RankPUCT().select(NODES, 3, rng) == [2, 3, 1]
    assert RankPUCT().select(NODES, 10, rng) == [2, 3, 1, 4]


def test_best_always_included_even_when_its_score_is_not_top():
    nodes = [GraphNode(1, None, 5.0, visits=50), GraphNode(2, 1, 1.0), GraphNode(3, None, 2.0)]
    for selector in (RankPUCT(c=5.0), EliteBand()):
        picks = selector.select(nodes, 2, random.Random(1))
        assert picks[0] == 1 and len(set(picks)) == 2
    assert RankPUCT().select(nodes, 1, random.Random(0)) == [1]
    assert RankPUCT().select(nodes, 0, random.Random(0)) == []


def test_elite_band_proportions():
    # 100 nodes, fitness = -rank; second slot: elite = ranks 1..19 (top 20 minus the best),
    # band = ranks 10..59, uniform = ranks 1..99.
    nodes = [GraphNode(i, None, -float(i)) for i in range(100)]
    rng = random.Random(1234)
    draws = [EliteBand().select(nodes, 2, rng)[1] for _ in range(10_000)]
    top = sum(d < 20 for d in draws) / len(draws)
    mid = sum(20 <= d < 60 for d in draws) / len(draws)
    low = sum(d >= 60 for d in draws) / len(draws)
    assert top == pytest.approx(0.7 + 0.2 * 10 / 50 + 0.1 * 19 / 99, abs=0.02)
    assert mid == pytest.approx(0.2 * 40 / 50 + 0.1 * 40 / 99, abs=0.02)
    assert low == pytest.approx(0.1 * 40 / 99, abs=0.01)
    assert all(EliteBand().select(nodes, 2, random.Random(5))[0] == 0 for _ in range(3))


def test_elite_band_small_chains_and_distinct_picks():
    nodes = [GraphNode(i, None, float(i)) for i in range(3)]
    picks = EliteBand().select(nodes, 5, random.Random(0))
    assert picks[0] == 2 and sorted(picks) == [0, 1, 2]


def test_make_selector():
    assert isinstance(make_selector("puct"), RankPUCT)
    assert isinstance(make_selector("elite", p_elite=0.5), EliteBand)
    with pytest.raises(ValueError, match="valid names: elite, puct"):
        make_selector("greedy")
