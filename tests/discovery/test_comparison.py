"""Comparison logic with hand-computed numbers: curves, targets, medians, bands, ranks, the plot."""

from __future__ import annotations

import json

import pytest

from discovery import comparison as cmp
from discovery.comparison import RunData, Sample


def test_curve_orders_by_step_counts_cache_hits_and_invalid_programs_and_maximises():
    samples = [
        Sample(5, "ok", 2.0),
        Sample(3, "invalid", None),
        Sample(9, "error", None),
        Sample(4, "ok", 1.5),
        Sample(7, "ok", 2.0),  # a cache hit of the program of step 5: it counts, it changes nothing
    ]
    # order 3 (invalid) 4 (1.5) 5 (2.0) 7 (2.0) 9 (error)
    assert cmp.best_curve(1.0, samples, "maximize") == [1.0, 1.0, 1.5, 2.0, 2.0, 2.0]


def test_curve_minimises_and_never_gets_worse():
    samples = [Sample(1, "ok", 0.6), Sample(2, "ok", 0.45), Sample(3, "ok", 0.47), Sample(4, "ok", 0.40)]
    assert cmp.best_curve(0.5, samples, "minimize") == [0.5, 0.5, 0.45, 0.45, 0.40]
    assert cmp.best_curve(0.5, samples, "maximize") == [0.5, 0.6, 0.6, 0.6, 0.6]


def test_curve_without_a_valid_seed_starts_empty():
    samples = [Sample(1, "invalid", None), Sample(2, "ok", 3.0), Sample(3, "timeout", None)]
    assert cmp.best_curve(None, samples, "maximize") == [None, None, 3.0, 3.0]
    assert cmp.best_curve(None, [], "minimize") == [None]


@pytest.mark.parametrize(
    "seed, pct, direction, target",
    [
        (2.0, 10, "maximize", 2.2),
        (-2.0, 10, "maximize", -1.8),
        (0.5, 10, "minimize", 0.45),
        (-4.0, 25, "minimize", -5.0),
        (3.0, 0, "minimize", 3.0),
        (None, 1, "maximize", None),
    ],
)
def test_target_moves_the_seed_by_a_percentage_of_its_magnitude(seed, pct, direction, target):
    got = cmp.target_of(seed, pct, direction)
    assert got == pytest.approx(target) if target is not None else got is None


def test_evaluations_to_target_reached_and_not_reached():
    curve = [0.5, 0.5, 0.45, 0.45, 0.40]
    assert cmp.evals_to_target(curve, 0.5, cmp.target_of(0.5, 10, "minimize"), "minimize") == 2
    assert cmp.evals_to_target(curve, 0.5, cmp.target_of(0.5, 20, "minimize"), "minimize") == 4
    assert cmp.evals_to_target(curve, 0.5, cmp.target_of(0.5, 50, "minimize"), "minimize") is None
    # a 0% target still needs a strict improvement, and so does a seed score of 0
    assert cmp.evals_to_target(curve, 0.5, 0.5, "minimize") == 2
    assert cmp.evals_to_target([0.0, 0.0, 0.1], 0.0, cmp.target_of(0.0, 5, "maximize"), "maximize") == 2
    assert cmp.evals_to_target([None, 1.0], None, None, "maximize") is None


def test_median_and_spread_ignore_missing_values():
    assert cmp.median([3, 1, 2]) == 2
    assert cmp.median([1, 2, 3, 4]) == 2.5
    assert cmp.median([None, 4, None, 2]) == 3
    assert cmp.median([None]) is None and cmp.median([]) is None
    assert cmp.spread([0.3, None, 0.1, 0.2]) == (0.1, 0.3)
    assert cmp.spread([None]) == (None, None)


def test_band_holds_shorter_curves_at_their_last_value():
    b = cmp.band([[1, 2, 3], [1, 5], [0, 0, 0, 4]])
    assert b.x == [0, 1, 2, 3]
    # x=0: 1 1 0 | x=1: 2 5 0 | x=2: 3 5 0 | x=3: 3 5 4
    assert b.median == [1, 2, 3, 4]
    assert b.low == [0, 0, 0, 3]
    assert b.high == [1, 5, 5, 5]
    partial = cmp.band([[None, 2.0], [1.0, 1.0]])
    assert partial.median == [1.0, 1.5] and partial.low == [1.0, 1.0] and partial.high == [1.0, 2.0]
    assert cmp.band([]).median == []


def _runs() -> list[RunData]:
    """Strategy a (3 seeds), b (1 seed), c (none: every run failed); minimise, seed 1.0."""
    return [
        RunData("a", 0, 1.0, [Sample(1, "ok", 0.95), Sample(2, "ok", 0.85), Sample(3, "invalid", None)],
                llm_calls=4, tokens=100, cost_usd=0.1, wall_s=10.0, campaign_id=1),
        RunData("a", 1, 1.0, [Sample(11, "ok", 0.91), Sample(10, "ok", 0.92)],
                llm_calls=4, tokens=200, cost_usd=0.2, wall_s=20.0, campaign_id=2),
        RunData("a", 2, 1.0, [Sample(5, "ok", 0.7)], llm_calls=4, tokens=300, cost_usd=0.3, wall_s=30.0, campaign_id=3),
        RunData("b", 0, 1.0, [Sample(1, "ok", 0.8)], llm_calls=1, tokens=7, cost_usd=0.0, wall_s=1.0, campaign_id=4),
    ]


def test_compare_summarises_each_strategy_with_hand_computed_numbers():
    result = cmp.compare(_runs(), strategies=["a", "b", "c"], direction="minimize", target_pct=10,
                         seeds_per_strategy=3)
    rows = {r.strategy: r for r in result.rows}
    a = rows["a"]
    # curves: [1, .95, .85, .85] (reaches 0.9 at 2), [1, .92, .91] (never), [1, .7] (at 1)
    assert (a.final_median, a.final_min, a.final_max) == (0.85, 0.7, 0.91)
    assert (a.reached, a.completed, a.runs) == (2, 3, 3)
    assert a.evals_to_target_median == 1.5
    assert a.evaluations_median == 2 and a.llm_calls_median == 4 and a.tokens_median == 200
    assert a.cost_usd_median == pytest.approx(0.2) and a.wall_s_median == 20.0
    assert rows["b"].final_median == 0.8 and rows["b"].reached == 1 and rows["b"].evals_to_target_median == 1
    c = rows["c"]
    assert c.completed == 0 and c.runs == 3 and c.final_median is None and c.evals_to_target_median is None
    assert [r.strategy for r in result.rows] == ["b", "a", "c"] and [r.rank for r in result.rows] == [1, 2, 3]
    assert result.seed_score == 1.0 and result.target == pytest.approx(0.9)
    band = result.bands["a"]
    assert band.median == [1.0, 0.92, 0.85, 0.85]
    assert band.low == [1.0, 0.7, 0.7, 0.7] and band.high == [1.0, 0.95, 0.91, 0.91]
    assert result.bands["c"].median == []
    assert [r.evals_to_target for r in result.runs if r.strategy == "a"] == [2, None, 1]


def test_ranking_is_direction_aware_and_stable_on_ties():
    # no valid seed, so each final best is the one candidate's score
    runs = [RunData("x", 0, None, [Sample(1, "ok", 2.0)]), RunData("y", 0, None, [Sample(1, "ok", 3.0)]),
            RunData("z", 0, None, [Sample(1, "ok", 2.0)])]
    up = cmp.compare(runs, strategies=["x", "y", "z"], direction="maximize", target_pct=1)
    assert [r.strategy for r in up.rows] == ["y", "x", "z"]
    down = cmp.compare(runs, strategies=["x", "y", "z"], direction="minimize", target_pct=1)
    assert [r.strategy for r in down.rows] == ["x", "z", "y"]


def test_result_round_trips_through_json():
    result = cmp.compare(_runs(), strategies=["a", "b", "c"], direction="minimize", target_pct=10)
    stored = json.loads(json.dumps(result.to_dict()))
    assert cmp.ComparisonResult.from_dict(stored) == result


def test_plot_writes_a_png(tmp_path):
    result = cmp.compare(_runs(), strategies=["a", "b", "c"], direction="minimize", target_pct=10)
    path = cmp.plot(result, tmp_path / "sub" / "cmp.png", title="toy: a vs b vs c")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 10_000, "a plot with lines, bands, labels and a legend is not a few bytes"
    # an invalid seed and a strategy without runs still plot
    empty = cmp.compare([RunData("a", 0, None, [Sample(1, "invalid", None)])], strategies=["a", "b"],
                        direction="maximize", target_pct=1)
    assert cmp.plot(empty, tmp_path / "empty.png", title="nothing valid").read_bytes()[:4] == b"\x89PNG"
