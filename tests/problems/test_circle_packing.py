"""The trusted circle packing scorer: hand-computed packings, exactness, every rejection, and
adversarial candidate outputs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.problems import scoring
from tests.problems.scoring import run_program

from problems.base import EVOLVE_END, EVOLVE_START
from problems.circle_packing import PROBLEM
from problems.circle_packing.scorer import N_CIRCLES, score

ULP_0125 = 2.0**-55  # spacing of floats in [0.125, 0.25)


def assert_invalid(output, check: str, *fragments: str):
    return scoring.assert_invalid(score, output, check, *fragments)


def seed_output():
    return run_program(PROBLEM.seed_program)


def dyadic_packing() -> list[list[float]]:
    """26 circles whose every coordinate is a dyadic rational, so every contact is exact.

    A 4 x 4 grid of radius 1/8 (centres (2i+1)/8) touches its neighbours and the walls; nine
    circles of radius 3/64 sit in the interior gaps (the gap allows 1/8 (sqrt 2 - 1) = 0.0518);
    one circle of radius 1/32 at (1/4, 1/32) touches the bottom wall and the two grid circles
    beside it: distance^2 = (1/8)^2 + (1/8 - 1/32)^2 = (1/8 + 1/32)^2 exactly.
    Sum = 16/8 + 9 * 3/64 + 1/32 = 2.453125.
    """
    grid = [[(2 * i + 1) / 8, (2 * j + 1) / 8, 0.125] for j in range(4) for i in range(4)]
    gaps = [[0.25 * (i + 1), 0.25 * (j + 1), 3 / 64] for j in range(3) for i in range(3)]
    return grid + gaps + [[0.25, 1 / 32, 1 / 32]]


def filler() -> list[list[float]]:
    """24 small circles in the top-right corner (x, y >= 0.7), clear of everything else used."""
    return [[0.72 + 0.05 * i, 0.75 + 0.05 * j, 0.02] for j in range(4) for i in range(6)]


def with_pair(a, b) -> list[list[float]]:
    return [list(a), list(b)] + filler()


# --- hand-computed values -------------------------------------------------------------------


def test_dyadic_packing_scores_exactly():
    circles = dyadic_packing()
    assert len(circles) == N_CIRCLES
    evaluation = score(circles)
    assert evaluation.status == "ok", evaluation.feedback
    assert evaluation.score == 2.453125
    metrics = evaluation.metrics
    assert metrics["sum_radii"] == 2.453125
    assert metrics["pair_contacts"] == 24 + 2  # grid neighbours, and the small bottom circle
    assert metrics["wall_contacts"] == 16 + 1
    assert metrics["min_pair_gap"] == 0.0 and metrics["min_wall_gap"] == 0.0
    assert metrics["min_radius"] == 1 / 32 and metrics["max_radius"] == 0.125
    gap_slack = 0.125 * math.sqrt(2) - 0.125 - 3 / 64
    assert metrics["loosest_slack"] == pytest.approx(gap_slack, abs=1e-15)
    assert 16 <= metrics["loosest_circle"] <= 24
    assert metrics["gap_to_best_known"] == pytest.approx(2.6359830849 - 2.453125)
    assert "sum of radii 2.4531250000" in evaluation.feedback
    assert f"circle {metrics['loosest_circle']} has the most room" in evaluation.feedback
    assert evaluation.evaluator_version == PROBLEM.evaluator_version


def test_equivalent_output_forms_score_the_same():
    circles = dyadic_packing()
    expected = score(circles).score
    assert score(np.array(circles)).score == expected
    assert score(np.array(circles, dtype=np.float32)).score == expected  # all values are dyadic
    assert score(tuple(tuple(row) for row in circles)).score == expected
    assert score([np.array(row) for row in circles]).status == "invalid"  # rows must be lists


def test_score_is_recomputed_not_read():
    circles = dyadic_packing()
    circles[0][2] = 0.0625  # a smaller circle: the sum drops by exactly 1/16
    assert score(circles).score == 2.453125 - 0.0625


def test_seed_program_scores_in_expected_band():
    assert EVOLVE_START in PROBLEM.seed_program and EVOLVE_END in PROBLEM.seed_program
    circles = seed_output()
    assert isinstance(circles, np.ndarray) and circles.shape == (N_CIRCLES, 3)
    evaluation = score(circles)
    assert evaluation.status == "ok", evaluation.feedback
    assert 2.4 < evaluation.score < 2.5
    assert evaluation.score < PROBLEM.best_known.value
    assert evaluation.score == math.fsum(circles[:, 2].tolist())
    assert "below the best known 2.6359830849" in evaluation.feedback
    # the JSON round trip the sandbox performs does not change the score
    assert score(circles.tolist()).score == evaluation.score


def test_seed_through_the_sandbox():
    from problems.evaluate import evaluate
    from sandbox import get_sandbox

    evaluation = evaluate(PROBLEM, PROBLEM.seed_program, get_sandbox())
    assert evaluation.status == "ok", evaluation.feedback
    assert evaluation.score == score(seed_output()).score
    assert evaluation.backend in ("bwrap", "process")
    assert evaluation.evaluator_version == PROBLEM.evaluator_version


def test_perturbing_a_seed_literal_can_improve_it():
    base = score(seed_output()).score
    old = "ROW_Y = (0.1, 0.3, 0.5, 0.7, 0.9)"
    variant = PROBLEM.seed_program.replace(old, "ROW_Y = (0.1, 0.3, 0.51, 0.7, 0.9)")
    assert variant != PROBLEM.seed_program
    improved = score(run_program(variant))
    assert improved.status == "ok", improved.feedback
    assert improved.score > base + 5e-4


def test_seed_helper_output_passes_the_exact_checks_for_random_centres():
    namespace: dict = {}
    exec(compile(PROBLEM.seed_program, "seed.py", "exec"), namespace)
    rng = np.random.default_rng(3)
    for _ in range(20):
        centres = rng.uniform(0.05, 0.95, size=(N_CIRCLES, 2))
        radii = namespace["max_radii"](centres)
        evaluation = score(np.column_stack([centres, radii]))
        assert evaluation.status == "ok", evaluation.feedback


# --- exactness ------------------------------------------------------------------------------


def test_touching_circles_are_valid_on_a_diagonal():
    # centres 3-4-5 apart: dx = 3/16, dy = 4/16, distance 5/16 = 1/8 + 3/16 exactly
    evaluation = score(with_pair((0.25, 0.25, 0.125), (0.4375, 0.5, 0.1875)))
    assert evaluation.status == "ok", evaluation.feedback
    assert evaluation.metrics["min_pair_gap"] == 0.0


def test_one_ulp_overlap_is_rejected_even_where_floats_round_it_away():
    big = np.nextafter(0.1875, 1.0)
    assert big - 0.1875 == ULP_0125
    # the naive float checks accept it: 1/8 + big rounds to 5/16
    assert math.hypot(0.4375 - 0.25, 0.5 - 0.25) >= 0.125 + big
    assert (0.4375 - 0.25) ** 2 + (0.5 - 0.25) ** 2 >= (0.125 + big) ** 2
    evaluation = assert_invalid(
        with_pair((0.25, 0.25, 0.125), (0.4375, 0.5, big)), "overlap",
        "circles 0 and 1 overlap by", "1 overlapping pair",
    )
    assert evaluation.metrics["worst_pair"] == [0, 1]
    assert 0 < evaluation.metrics["worst_overlap"] < 1e-16
    assert evaluation.metrics["wall_violations"] == 0


def test_valid_pair_that_a_naive_float_check_rejects_is_accepted():
    # the largest r_j for which (r_i + r_j)^2 <= d^2 holds exactly (found by search)
    a = (0.33150369607980024, 0.3041258295964396, 0.1527754613942179)
    b = (0.5178475281702485, 0.5274264260959494, 0.13806329144864182)
    assert not (a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2 >= (a[2] + b[2]) ** 2
    evaluation = score(with_pair(a, b))
    assert evaluation.status == "ok", evaluation.feedback
    bigger = (b[0], b[1], float(np.nextafter(b[2], 1.0)))
    assert_invalid(with_pair(a, bigger), "overlap", "circles 0 and 1")


def test_grid_circle_one_ulp_too_big_overlaps_its_four_neighbours():
    circles = dyadic_packing()
    circles[5][2] = 0.125 + ULP_0125  # the interior grid circle at (3/8, 3/8)
    assert 0.125 + circles[5][2] == 0.25  # rounded away in float arithmetic
    evaluation = assert_invalid(circles, "overlap", "4 overlapping pairs", "circle 5 (x=0.375")
    assert 5 in evaluation.metrics["worst_pair"]


def test_wall_contact_is_exact():
    # one circle touching the top and right walls, 25 small ones in a row along the bottom
    circles = [[0.75, 0.75, 0.25]] + [[0.02 + 0.039 * k, 0.02, 0.01] for k in range(25)]
    assert score(circles).status == "ok"
    # x + r = 3/4 + (1/4 + 2^-54) rounds to 1.0 in float, but crosses the wall exactly
    circles[0][2] = float(np.nextafter(0.25, 1.0))
    assert 0.75 + circles[0][2] == 1.0
    evaluation = assert_invalid(circles, "containment", "circle 0", "right wall x = 1")
    assert evaluation.metrics["wall_violations"] == 2  # the top wall too
    assert 0 < evaluation.metrics["worst_wall_amount"] < 1e-15


def test_centre_moved_one_ulp_through_a_wall():
    circles = dyadic_packing()
    circles[0][0] = float(np.nextafter(0.125, 0.0))
    evaluation = assert_invalid(circles, "containment", "circle 0", "left wall x = 0")
    assert evaluation.metrics["worst_wall_circle"] == 0


def test_overlap_within_a_1e_12_tolerance_is_rejected():
    circles = dyadic_packing()
    circles[5][2] = 0.125 + 1e-13
    assert_invalid(circles, "overlap", "circles")


# --- feedback names the worst offender ------------------------------------------------------


def test_worst_wall_violation_is_named():
    circles = dyadic_packing()
    circles[3][0] = 0.875 + 1e-3  # grid circle at the right wall, pushed out by 1e-3
    circles[12][1] = 0.125 - 1e-2  # grid circle at the bottom-left, pushed down by 1e-2
    evaluation = assert_invalid(circles, "containment", "circle 12", "bottom wall y = 0", "0.01")
    assert evaluation.metrics["worst_wall_circle"] == 12
    assert evaluation.metrics["worst_wall_amount"] == pytest.approx(1e-2)
    # moving them also creates overlaps, which the feedback reports as well
    assert "also circles" in evaluation.feedback


def test_deepest_overlap_is_named():
    circles = dyadic_packing()
    circles[5][2] = 0.126  # overlaps 4 neighbours by 1e-3
    circles[16][2] = 0.06  # a gap circle overlapping its 4 grid neighbours by 8e-3 or more
    # the deepest: the enlarged grid circle 5 at (3/8, 3/8) and the gap circle 16 at (1/4, 1/4)
    evaluation = assert_invalid(circles, "overlap", "circles 5 and 16 overlap by 0.00922",
                                "8 overlapping pairs")
    assert evaluation.metrics["worst_pair"] == [5, 16]
    assert evaluation.metrics["worst_overlap"] == pytest.approx(
        0.126 + 0.06 - 0.125 * math.sqrt(2), rel=1e-9
    )


# --- rejections -----------------------------------------------------------------------------


@pytest.mark.parametrize("output", [None, 2.7, 3, "2.6359", b"\x00", {0.5}, {"score": 3.0}])
def test_rejects_anything_not_a_list_of_circles(output):
    assert_invalid(output, "type", f"({N_CIRCLES}, 3) numpy array")


def test_rejects_dict_with_claimed_score():
    circles = dyadic_packing()
    evaluation = assert_invalid(
        {"circles": circles, "sum_radii": 2.7, "n": 26}, "type", "got dict", "no claimed score"
    )
    assert evaluation.metrics["type"] == "dict"


@pytest.mark.parametrize("n", [0, 1, 25, 27, 100])
def test_rejects_wrong_count(n):
    circles = (dyadic_packing() * 4)[:n]
    assert_invalid(circles, "count", f"returned {n} circles", "exactly 26")
    assert_invalid(np.array(circles).reshape(n, 3), "count", f"returned {n} circles")


def test_rejects_a_single_circle_even_the_largest():
    assert_invalid([[0.5, 0.5, 0.5]], "count", "returned 1 circles")
    assert_invalid(np.array([[0.5, 0.5, 0.5]]), "count")


def test_rejects_appended_claimed_score():
    circles = dyadic_packing()
    assert_invalid(circles + [[2.7, 2.7, 2.7]], "count", "returned 27 circles")
    assert_invalid(circles + [2.7], "count")
    assert_invalid(np.column_stack([circles, np.full(26, 2.7)]), "shape", "shape (26, 4)")


def test_rejects_huge_outputs():
    assert_invalid([[0.5, 0.5, 0.001]] * 10**6, "count", "1000000")
    assert_invalid(np.zeros((10**6, 3)), "count", "1000000")
    assert_invalid(np.zeros(10**6), "shape", "1-D array")


def test_rejects_wrong_shapes():
    circles = np.array(dyadic_packing())
    assert_invalid(circles.ravel(), "shape", "1-D array of shape (78,)")
    assert_invalid(circles[:, :2], "shape", "shape (26, 2)")
    assert_invalid(circles.T, "shape", "shape (3, 26)")
    assert_invalid(circles[:, :, None], "shape", "3-D")
    assert_invalid(np.array(0.5), "shape", "0-D")


def test_rejects_ragged_and_nested_rows():
    circles = dyadic_packing()
    ragged = [row[:] for row in circles]
    ragged[7] = [0.5, 0.5]
    assert_invalid(ragged, "shape", "circle 7 has 2 entries")
    ragged[7] = [0.5, 0.5, 0.01, 0.0]
    assert_invalid(ragged, "shape", "circle 7 has 4 entries")
    nested = [row[:] for row in circles]
    nested[3] = [0.5, 0.5, [0.01]]
    assert_invalid(nested, "type", "circle 3: r is a list")
    flat = [row[:] for row in circles]
    flat[0] = 0.5
    assert_invalid(flat, "type", "circle 0 is a float")


def test_rejects_bools_strings_and_none():
    circles = dyadic_packing()
    for k, bad, kind in [(2, True, "bool"), (0, np.bool_(False), "bool"), (1, "0.5", "str"),
                         (2, None, "NoneType"), (0, 0.5 + 0j, "complex")]:
        broken = [row[:] for row in circles]
        broken[4][k] = bad
        assert_invalid(broken, "type", f"circle 4: {'xyr'[k]} is a {kind}")
    assert_invalid(np.ones((26, 3), dtype=bool), "dtype", "dtype bool")
    assert_invalid(np.array(circles).astype(str), "dtype", "<U")
    assert_invalid(np.array(circles, dtype=object), "dtype", "dtype object")
    assert_invalid(np.array(circles, dtype=complex), "dtype", "complex128")


def test_rejects_long_double():
    if np.dtype(np.longdouble).itemsize <= 8:
        pytest.skip("long double is float64 on this platform")
    assert_invalid(np.array(dyadic_packing(), dtype=np.longdouble), "dtype")


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_rejects_non_finite(bad):
    for k in range(3):
        circles = dyadic_packing()
        circles[9][k] = bad
        evaluation = assert_invalid(circles, "finite", f"circle 9: {'xyr'[k]} = {bad!r}")
        assert evaluation.metrics["value"] == repr(bad)  # JSON-safe
        assert_invalid(np.array(circles), "finite", "circle 9")


def test_rejects_huge_python_int():
    circles = dyadic_packing()
    circles[2][2] = 10**400
    assert_invalid(circles, "finite", "circle 2: r = ", "too large")


def test_rejects_non_positive_radii_naming_the_smallest():
    circles = dyadic_packing()
    circles[3][2] = 0.0
    evaluation = assert_invalid(circles, "radius", "circle 3", "radius 0.0 <= 0")
    assert evaluation.metrics["count"] == 1
    circles[20][2] = -0.5  # a negative radius cannot pay for a bigger circle elsewhere
    circles[0][2] = 0.25
    evaluation = assert_invalid(circles, "radius", "circle 20", "2 circles")
    assert evaluation.metrics["index"] == 20 and evaluation.metrics["r"] == -0.5
    circles = dyadic_packing()
    circles[3][2] = -0.0
    assert_invalid(circles, "radius", "circle 3")


def test_tiny_positive_radius_is_valid_and_scored_honestly():
    circles = dyadic_packing()
    circles[25][2] = 5e-324  # the smallest positive float
    evaluation = score(circles)
    assert evaluation.status == "ok"
    assert evaluation.score == 2.453125 - 1 / 32  # 5e-324 is lost in the correctly rounded sum


def test_coincident_circles_are_rejected():
    circles = [[0.5, 0.5, 0.5]] * 26  # 26 copies of the inscribed circle would sum to 13
    assert_invalid(circles, "overlap", "325 overlapping pairs")


def test_huge_square_escape_is_rejected():
    circles = dyadic_packing()
    circles[0] = [1e300, 1e300, 1e299]
    assert_invalid(circles, "containment", "circle 0 (x=1e+300", "2 wall violations")


def test_problem_metadata():
    assert PROBLEM.name == "circle_packing"
    assert PROBLEM.direction == "maximize"
    assert PROBLEM.entrypoint == "construct" and PROBLEM.entry_kwargs == {}
    assert PROBLEM.requirements == ("numpy",)
    assert PROBLEM.best_known.value == 2.6359830849
    assert "einsteinarena.com" in PROBLEM.best_known.citation
    assert PROBLEM.references["AlphaEvolve 2025"].value == 2.635863
    assert PROBLEM.limits.memory_mb == 1024 and PROBLEM.limits.cpus == 1
    assert PROBLEM.evaluator_version == "1"
    text = PROBLEM.description
    for fragment in ("construct()", "(26, 3)", "x - r >= 0", "(r_i + r_j)^2", "exact",
                     "EVOLVE-BLOCK-START", "numpy", "2.6359830849", "max_radii",
                     "30 s wall clock", "1024 MiB memory"):
        assert fragment in text, fragment
    start = PROBLEM.seed_program.index(EVOLVE_START)
    assert "def construct" in PROBLEM.seed_program[start:]
    assert "import numpy as np" in PROBLEM.seed_program[:start]
    assert "def max_radii" in PROBLEM.seed_program[:start]


def test_enormous_values_are_rejected_without_breaking_the_scorer():
    circles = dyadic_packing()
    circles[5] = [0.5, 0.5, 1e300]  # overlaps everything and crosses every wall
    evaluation = assert_invalid(
        circles, "containment", "circle 5", "by 1e+300", "4 wall violations", "25 overlapping pairs"
    )
    assert evaluation.metrics["worst_wall_amount"] == 1e300
    assert 5 in evaluation.metrics["worst_pair"]
    assert evaluation.metrics["worst_overlap"] == pytest.approx(1e300)
    extreme = [[-1.7e308, 1.7e308, 1.7e308]] * 26
    evaluation = assert_invalid(extreme, "containment", "52 wall violations", "325 overlapping")
    assert math.isfinite(evaluation.metrics["worst_wall_amount"])  # JSON-safe
    assert math.isfinite(evaluation.metrics["worst_overlap"])
