"""The trusted Erdős minimum overlap scorer: hand-computed values and every rejection."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.problems import scoring
from tests.problems.scoring import run_program

from problems.base import EVOLVE_END, EVOLVE_START
from problems.erdos_min_overlap import PROBLEM
from problems.erdos_min_overlap.scorer import MAX_PIECES, overlap_bound, score


def assert_invalid(output, check: str, *fragments: str):
    return scoring.assert_invalid(score, output, check, *fragments)


def seed_output():
    return run_program(PROBLEM.seed_program)


# --- hand-computed values -------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 8, 64, 1024])
def test_constant_half_scores_exactly_half(n):
    evaluation = score([0.5] * n)
    assert evaluation.status == "ok"
    assert evaluation.score == 0.5
    assert evaluation.metrics["n"] == n
    assert evaluation.metrics["integral_error"] == 0.0


def test_constant_half_with_non_dyadic_n():
    evaluation = score(np.full(10, 0.5))
    assert evaluation.score == pytest.approx(0.5, abs=1e-15)


def test_hand_checked_four_piece_example():
    # h = (1/4, 3/4, 3/4, 1/4), dx = 1/2, 1 - h = (3/4, 1/4, 1/4, 3/4).
    # Shift +1: h1 g0 + h2 g1 + h3 g2 = 9/16 + 3/16 + 1/16 = 13/16; shift -1 is the mirror image.
    # Shift 0: 4 * 3/16 = 12/16; shifts +-2: 10/16; shifts +-3: 3/16. Max 13/16 * 1/2 = 13/32.
    evaluation = score([0.25, 0.75, 0.75, 0.25])
    assert evaluation.status == "ok"
    assert evaluation.score == 13 / 32
    assert evaluation.metrics["bound"] == 13 / 32
    assert evaluation.metrics["near_max_shifts"] == 2
    assert abs(evaluation.metrics["argmax_shift"]) == 1
    _, correlations = overlap_bound(np.array([0.25, 0.75, 0.75, 0.25]))
    assert correlations * 32 == pytest.approx([3, 10, 13, 12, 13, 10, 3])


def test_two_piece_indicator_and_shift_convention():
    # h = (1, 0): integral 1; h(x + t)(1 - h(x)) overlaps fully at t = -1 (one piece), bound 1.
    evaluation = score([1, 0])  # integers are real numbers too
    assert evaluation.status == "ok"
    assert evaluation.score == 1.0
    assert evaluation.metrics["argmax_shift"] == -1
    assert evaluation.metrics["near_max_shifts"] == 1


def test_accepts_float32_and_integer_arrays_and_tuples():
    assert score(np.full(4, 0.5, dtype=np.float32)).score == 0.5
    assert score(np.array([1, 0], dtype=np.int64)).score == 1.0
    assert score(np.array([1, 0], dtype=np.uint8)).score == 1.0
    assert score((0.5, 0.5)).score == 0.5


def test_seed_program_scores_in_expected_band():
    assert EVOLVE_START in PROBLEM.seed_program and EVOLVE_END in PROBLEM.seed_program
    h = seed_output()
    evaluation = score(h)
    assert evaluation.status == "ok", evaluation.feedback
    assert 0.39 < evaluation.score < 0.42
    assert evaluation.score > PROBLEM.best_known.value
    assert 40 <= evaluation.metrics["n"] <= 60
    assert evaluation.metrics["integral_error"] < 1e-12
    assert "above the best known" in evaluation.feedback
    # the JSON round trip the sandbox performs does not change the score
    assert score([float(v) for v in h]).score == evaluation.score


def test_certified_bound_adds_the_mass_error():
    n = 8
    h = np.full(n, 0.5 + 1e-7)  # integral 1 + 2e-7
    evaluation = score(h)
    assert evaluation.status == "ok"
    bound, _ = overlap_bound(h)
    error = evaluation.metrics["integral_error"]
    assert error == pytest.approx(2e-7, rel=1e-6)
    assert evaluation.score == bound + error
    assert evaluation.metrics["bound"] == bound


def test_mass_error_certificate_holds_for_a_repaired_function():
    # Removing the excess mass by scaling gives a feasible g whose bound is within the error.
    rng = np.random.default_rng(0)
    h = np.clip(rng.uniform(0.2, 0.8, 50), 0, 1)
    h *= 25 / h.sum()
    h_off = h * (1 + 4e-7)
    evaluation = score(h_off)
    assert evaluation.status == "ok"
    exact, _ = overlap_bound(h)
    assert exact <= evaluation.score + 1e-15


def test_ok_feedback_and_metrics():
    evaluation = score([0.5] * 4)
    assert evaluation.evaluator_version == PROBLEM.evaluator_version
    for key in ("n", "bound", "integral_error", "argmax_shift", "near_max_shifts"):
        assert key in evaluation.metrics
    assert "0.500000000" in evaluation.feedback and "n = 4" in evaluation.feedback
    assert "best known 0.380870" in evaluation.feedback


# --- rejections -------------------------------------------------------------------------------


def test_rejects_dict_with_claimed_bound_and_point_count():
    h = [float(v) for v in seed_output()]
    evaluation = assert_invalid(
        {"h": h, "c5_bound": 0.3808, "n_points": len(h) + 0.9999999999}, "type", "got dict"
    )
    assert evaluation.metrics["type"] == "dict"


def test_rejects_list_with_appended_count():
    h = [float(v) for v in seed_output()]
    n = len(h)
    assert_invalid(h + ["n"], "type", f"h[{n}] is a str")
    assert_invalid(h + [float(n) + 0.9999999999], "range", f"h[{n}]", "above 1")


def test_fractional_count_cannot_change_dx():
    # The hack that fooled a public evaluator: a float count used for dx. Here n is the length.
    h = np.full(48, 0.5)
    assert score(h).score == pytest.approx(0.5, abs=1e-15)


def test_rejects_value_slightly_above_one():
    h = [0.5] * 8
    h[3] = 1.0 + 1e-12
    h[4] = 0.0 - 1e-12 + 1e-12  # stays valid (exactly 0)
    evaluation = assert_invalid(h, "range", "h[3] = 1.000000000001", "above 1")
    assert evaluation.metrics["index"] == 3


def test_rejects_negative_value():
    h = [0.5] * 8
    h[5] = -1e-15
    assert_invalid(h, "range", "h[5]", "below 0")


def test_rejects_integral_off_by_1e_3():
    h = np.full(100, 0.5 + 0.0005)  # integral 1.001
    evaluation = assert_invalid(h, "integral", "1.001", "error 0.001", "within 1e-06")
    assert evaluation.metrics["integral_error"] == pytest.approx(1e-3)
    assert evaluation.metrics["n"] == 100


def test_rejects_integral_just_above_tolerance():
    assert_invalid(np.full(8, 0.5 + 1e-6), "integral")


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_rejects_non_finite(bad):
    h = [0.5] * 6
    h[2] = bad
    evaluation = assert_invalid(h, "finite", "h[2]", "not finite")
    assert evaluation.metrics["index"] == 2
    assert evaluation.metrics["value"] == repr(bad)  # JSON-safe
    assert_invalid(np.array(h), "finite", "h[2]")


def test_rejects_too_many_pieces():
    assert_invalid([0.5] * (MAX_PIECES + 1), "size", str(MAX_PIECES + 1), f"at most {MAX_PIECES}")
    assert_invalid(np.full(10**6, 0.5), "size", "1000000")
    assert score([0.5] * MAX_PIECES).status == "ok"


@pytest.mark.parametrize("output", [[], (), np.array([])])
def test_rejects_empty(output):
    assert_invalid(output, "empty", "no values")


def test_rejects_bools():
    assert_invalid([True, False], "type", "h[0] is a bool")
    assert_invalid([0.5, np.bool_(True)], "type", "h[1] is a bool")
    assert_invalid(np.array([True, False]), "dtype", "dtype bool")


def test_rejects_strings():
    assert_invalid("0.5, 0.5", "type", "got str")
    assert_invalid(["0.5", "0.5"], "type", "h[0] is a str")
    assert_invalid(np.array(["0.5", "0.5"]), "dtype", "<U3")


def test_rejects_nested_and_ragged():
    assert_invalid([[0.5], [0.5]], "type", "h[0] is a list", "flat 1-D list")
    assert_invalid([0.5, [0.5, 0.5]], "type", "h[1] is a list")
    assert_invalid(np.full((2, 2), 0.5), "shape", "2-D array of shape (2, 2)")
    assert_invalid(np.array(0.5), "shape", "0-D")


def test_rejects_object_and_complex():
    assert_invalid(np.array([0.5, 0.5], dtype=object), "dtype", "dtype object")
    assert_invalid(np.array([0.5 + 0j, 0.5]), "dtype", "complex128")
    assert_invalid([0.5 + 0j, 0.5], "type", "h[0] is a complex")
    assert_invalid([0.5, None], "type", "h[1] is a NoneType")


def test_rejects_long_double():
    if np.dtype(np.longdouble).itemsize <= 8:
        pytest.skip("long double is float64 on this platform")
    assert_invalid(np.full(4, 0.5, dtype=np.longdouble), "dtype")


@pytest.mark.parametrize("output", [None, 0.38, 3, {"bound": 0.3}, b"\x00", {0.5, 0.5}])
def test_rejects_anything_not_a_vector(output):
    assert_invalid(output, "type", "1-D list or numpy array")


def test_rejects_huge_python_int():
    assert_invalid([10**400, 0], "range", "h[0]")


def test_perturbing_a_seed_literal_can_improve_it():
    base = score(seed_output()).score
    namespace: dict = {"__name__": "seed_variant"}
    variant = PROBLEM.seed_program.replace("WIDTH = 0.92", "WIDTH = 1.0")
    assert variant != PROBLEM.seed_program
    exec(compile(variant, "seed.py", "exec"), namespace)
    improved = score(namespace["construct"]()).score
    assert improved < base - 0.005


def test_problem_metadata():
    assert PROBLEM.name == "erdos_min_overlap"
    assert PROBLEM.direction == "minimize"
    assert PROBLEM.entrypoint == "construct" and PROBLEM.entry_kwargs == {}
    assert PROBLEM.best_known.value == 0.380870
    assert "2601.16175" in PROBLEM.best_known.citation
    assert {r.value for r in PROBLEM.references.values()} == {0.380924, 0.380927}
    assert PROBLEM.limits.memory_mb == 1024
    assert PROBLEM.limits.wall_seconds <= 10 and PROBLEM.limits.cpu_seconds <= 10
    text = PROBLEM.description
    for fragment in ("construct()", "0 <= h[i] <= 1", "sum(h) * 2 / n", "EVOLVE-BLOCK-START",
                     "numpy", "0.380870", "10 s wall clock", "1024 MiB memory"):
        assert fragment in text, fragment
    start = PROBLEM.seed_program.index(EVOLVE_START)
    assert "def construct" in PROBLEM.seed_program[start:]
    assert "import numpy as np" in PROBLEM.seed_program[:start]


def test_range_feedback_names_the_worst_offender_and_the_first():
    from problems.erdos_min_overlap.scorer import score

    h = [0.5] * 10
    h[2], h[7] = 1.0000001, 1.5
    ev = score(h)
    assert ev.status == "invalid"
    assert ev.metrics["index"] == 7 and ev.metrics["first_index"] == 2 and ev.metrics["count"] == 2
    assert "h[7] = 1.5 is the furthest above 1" in ev.feedback and "first at h[2]" in ev.feedback
