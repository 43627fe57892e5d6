"""The trusted first-autocorrelation scorer: hand-computed values, the float error bound, every
rejection, and adversarial candidate outputs."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from tests.problems import scoring
from tests.problems.scoring import run_program

from problems.autocorrelation_first import PROBLEM
from problems.autocorrelation_first.scorer import (
    LOWER_BOUND,
    MAX_PIECES,
    autoconvolution_bound,
    score,
)
from problems.base import EVOLVE_END, EVOLVE_START


def assert_invalid(output, check: str, *fragments: str):
    return scoring.assert_invalid(score, output, check, *fragments)


def seed_output():
    return run_program(PROBLEM.seed_program)


def exact_c1(values) -> Fraction:
    """2n max(conv(a, a)) / sum(a)^2 in exact rational arithmetic."""
    a = [Fraction(float(v)) for v in values]
    n = len(a)
    conv = [sum(a[i] * a[k - i] for i in range(max(0, k - n + 1), min(k, n - 1) + 1))
            for k in range(2 * n - 1)]
    return 2 * n * max(conv) / sum(a) ** 2


# --- hand-computed values -------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 7, 64, 100, 1000, 12345])
def test_constant_function_scores_exactly_two(n):
    # conv(1, 1) peaks at n in the middle: 2n * n / n^2 = 2
    evaluation = score([1.0] * n)
    assert evaluation.status == "ok"
    assert evaluation.score == 2.0
    assert evaluation.metrics["n"] == n
    assert evaluation.metrics["argmax_t"] == 0.0  # f * f peaks at t = 0
    assert evaluation.metrics["near_max_breakpoints"] == 1
    assert score(np.full(n, 3.7)).score == pytest.approx(2.0, rel=1e-12)


def test_hand_checked_small_cases():
    # (1, 2, 1): conv (1, 4, 6, 4, 1), sum 4: 2 * 3 * 6 / 16 = 9/4
    assert score([1, 2, 1]).score == 2.25
    # (3, 1): conv (9, 6, 1), sum 4: 2 * 2 * 9 / 16 = 9/4, peak at the first breakpoint
    evaluation = score([3.0, 1.0])
    assert evaluation.score == 2.25
    assert evaluation.metrics["argmax_index"] == 0
    assert evaluation.metrics["argmax_t"] == -0.25
    # (1, 0): f = 1 on [-1/4, 0); f * f is a tent on [-1/2, 0] peaking at t = -1/4 with
    # height 1/4; integral f = 1/4; ratio (1/4) / (1/16) = 4
    evaluation = score([1, 0])
    assert evaluation.score == 4.0
    assert evaluation.metrics["argmax_t"] == -0.25
    assert evaluation.metrics["zero_pieces"] == 1
    # a spike in one of n pieces: 2n
    assert score([0, 0, 5, 0]).score == 8.0


def test_breakpoint_values_match_the_continuous_autoconvolution():
    # f = (2, 1) on [-1/4, 0), [0, 1/4); h = 1/4. (f * f)(t) at t = -1/2 + (k + 1) h is
    # h * conv[k] = (4, 4, 1) / 4, and integral f = 3/4, so ratios = (4, 4, 1) / 4 / (9/16).
    bound, ratios = autoconvolution_bound(np.array([2.0, 1.0]))
    assert ratios.tolist() == pytest.approx([16 / 9, 16 / 9, 4 / 9])
    assert bound == pytest.approx(16 / 9)
    # a direct numerical autoconvolution of the step function agrees at the breakpoints
    grid = 4000
    x = np.linspace(-0.25, 0.25, grid, endpoint=False) + 0.25 / grid
    f = np.where(x < 0, 2.0, 1.0)
    dx = 0.5 / grid
    ff = np.convolve(f, f) * dx  # (f * f) sampled at t = 2 x_0 + m dx
    assert ff.max() / (f.sum() * dx) ** 2 == pytest.approx(16 / 9, rel=1e-3)


def test_scale_invariance_and_extreme_magnitudes():
    a = np.array([1.0, 2.0, 1.0])
    assert score(a * 2.0**40).score == 2.25
    assert score(a * 1e300).score == pytest.approx(2.25, rel=1e-15)  # no overflow
    assert score(a * 1e-300).score == pytest.approx(2.25, rel=1e-15)
    assert score([5e-324] * 10).score == 2.0  # subnormal values
    assert score([1e308] * 10).score == pytest.approx(2.0, rel=1e-15)
    assert score([2.0**1023] * 10).score == 2.0


def test_float_result_is_within_the_stated_error_bound():
    rng = np.random.default_rng(7)
    for n in (5, 40, 120):
        a = rng.uniform(0.0, 1.0, n) ** 3
        exact = exact_c1(a)
        got = score(a).score
        assert abs(Fraction(got) - exact) <= exact * (n + 4) * Fraction(1, 2**53)


def test_accepts_float32_integer_arrays_and_tuples():
    assert score(np.array([1, 2, 1], dtype=np.float32)).score == 2.25
    assert score(np.array([1, 2, 1], dtype=np.int64)).score == 2.25
    assert score(np.array([1, 2, 1], dtype=np.uint8)).score == 2.25
    assert score((1.0, 2.0, 1.0)).score == 2.25


def test_no_valid_function_beats_the_proved_lower_bound():
    rng = np.random.default_rng(11)
    for _ in range(200):
        n = int(rng.integers(1, 300))
        a = rng.uniform(0, 1, n) ** rng.uniform(0.2, 5)
        assert score(a).score >= LOWER_BOUND


def test_seed_program_scores_in_expected_band():
    assert EVOLVE_START in PROBLEM.seed_program and EVOLVE_END in PROBLEM.seed_program
    f = seed_output()
    evaluation = score(f)
    assert evaluation.status == "ok", evaluation.feedback
    assert 1.6 < evaluation.score < 1.7
    assert evaluation.score > PROBLEM.best_known.value
    assert evaluation.metrics["n"] == 100
    assert "above the best known 1.5028609" in evaluation.feedback
    # the JSON round trip the sandbox performs does not change the score
    assert score([float(v) for v in f]).score == evaluation.score


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
    variant = PROBLEM.seed_program.replace("POWER = 0.48", "POWER = 0.5")
    assert variant != PROBLEM.seed_program
    improved = score(run_program(variant)).score
    assert improved < base - 0.02


def test_ok_feedback_and_metrics():
    evaluation = score([1.0] * 4)
    assert evaluation.evaluator_version == PROBLEM.evaluator_version
    for key in ("n", "c1_bound", "argmax_t", "near_max_breakpoints", "gap_to_best_known"):
        assert key in evaluation.metrics
    assert "C1 bound 2.000000000" in evaluation.feedback and "n = 4" in evaluation.feedback
    assert "t = 0.000000" in evaluation.feedback
    assert evaluation.metrics["gap_to_best_known"] == pytest.approx(2 - 1.5028609)


# --- rejections -----------------------------------------------------------------------------


@pytest.mark.parametrize("output", [None, 1.5, 3, "1.0, 1.0", b"\x00", {1.0}, {"c1": 1.2}])
def test_rejects_anything_not_a_vector(output):
    assert_invalid(output, "type", "1-D list or numpy array")


def test_rejects_dict_with_claimed_score_and_count():
    f = [float(v) for v in seed_output()]
    evaluation = assert_invalid({"values": f, "c1": 1.40, "n": 200.5}, "type", "got dict")
    assert evaluation.metrics["type"] == "dict"


def test_rejects_appended_claimed_score():
    f = [float(v) for v in seed_output()]
    assert_invalid(f + ["C1=1.4"], "type", f"f[{len(f)}] is a str")
    # a number appended is just one more piece: scored honestly, not trusted
    evaluation = score(f + [1.4])
    assert evaluation.status == "ok" and evaluation.metrics["n"] == len(f) + 1
    assert evaluation.score == pytest.approx(float(exact_c1(f + [1.4])), rel=1e-13)


def test_negative_values_are_rejected_naming_the_most_negative():
    f = [1.0] * 10
    f[2], f[6] = -0.5, -2.0  # signed f (the third autocorrelation problem) scores lower
    evaluation = assert_invalid(f, "negative", "f[6] = -2.0", "2 negative values", "most negative")
    assert evaluation.metrics["index"] == 6 and evaluation.metrics["count"] == 2
    assert_invalid(np.array(f), "negative", "f[6]")


def test_tiny_negative_values_exploiting_tolerance_are_rejected():
    f = [1.0] * 10
    f[4] = -1e-300
    assert_invalid(f, "negative", "f[4] = -1e-300")
    f[4] = -5e-324
    assert_invalid(f, "negative", "f[4]")


def test_negative_zero_is_zero():
    assert score([-0.0, 1.0, 1.0]).status == "ok"


def test_rejects_all_zero():
    assert_invalid([0.0] * 5, "zero", "all 5 values are 0")
    assert_invalid(np.zeros(3, dtype=np.int64), "zero")


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_rejects_non_finite(bad):
    f = [1.0] * 6
    f[2] = bad
    evaluation = assert_invalid(f, "finite", "f[2]", "not finite")
    assert evaluation.metrics["value"] == repr(bad)  # JSON-safe
    assert_invalid(np.array(f), "finite", "f[2]")


def test_rejects_huge_python_int():
    assert_invalid([10**400, 1], "finite", "f[0]", "too large")


def test_huge_finite_python_int_is_scored_honestly():
    assert score([10**300, 2 * 10**300, 10**300]).score == pytest.approx(2.25, rel=1e-15)


@pytest.mark.slow  # direct convolution of 100000 values: about a second
def test_size_cap():
    assert_invalid([1.0] * (MAX_PIECES + 1), "size", str(MAX_PIECES + 1), f"at most {MAX_PIECES}")
    assert_invalid(np.ones(10**7), "size", "10000000")
    assert score(np.ones(MAX_PIECES)).score == pytest.approx(2.0, rel=1e-12)


@pytest.mark.parametrize("output", [[], (), np.array([])])
def test_rejects_empty(output):
    assert_invalid(output, "empty", "no values")


def test_rejects_bools():
    assert_invalid([True, True], "type", "f[0] is a bool")
    assert_invalid([1.0, np.bool_(True)], "type", "f[1] is a bool")
    assert_invalid(np.array([True, False]), "dtype", "dtype bool")


def test_rejects_strings():
    assert_invalid(["1.0", "1.0"], "type", "f[0] is a str")
    assert_invalid(np.array(["1.0", "1.0"]), "dtype", "<U3")


def test_rejects_nested_and_ragged():
    assert_invalid([[1.0], [1.0]], "type", "f[0] is a list", "flat 1-D list")
    assert_invalid([1.0, [1.0, 2.0]], "type", "f[1] is a list")
    assert_invalid([1.0, {"f": 1.0}], "type", "f[1] is a dict")
    assert_invalid(np.ones((2, 2)), "shape", "2-D array of shape (2, 2)")
    assert_invalid(np.array(1.0), "shape", "0-D")


def test_rejects_object_complex_and_none():
    assert_invalid(np.array([1.0, 1.0], dtype=object), "dtype", "dtype object")
    assert_invalid(np.array([1.0 + 0j, 1.0]), "dtype", "complex128")
    assert_invalid([1.0 + 0j, 1.0], "type", "f[0] is a complex")
    assert_invalid([1.0, None], "type", "f[1] is a NoneType")


def test_rejects_long_double():
    if np.dtype(np.longdouble).itemsize <= 8:
        pytest.skip("long double is float64 on this platform")
    assert_invalid(np.ones(4, dtype=np.longdouble), "dtype")


def test_problem_metadata():
    assert PROBLEM.name == "autocorrelation_first"
    assert PROBLEM.direction == "minimize"
    assert PROBLEM.entrypoint == "construct" and PROBLEM.entry_kwargs == {}
    assert PROBLEM.requirements == ("numpy",)
    assert PROBLEM.best_known.value == 1.5028609
    assert "einsteinarena.com" in PROBLEM.best_known.citation
    assert {r.value for r in PROBLEM.references.values()} == {1.5031636, 1.5052940, 1.5097202}
    assert PROBLEM.limits.memory_mb == 1024 and PROBLEM.limits.cpus == 1
    assert PROBLEM.evaluator_version == "1"
    text = PROBLEM.description
    for fragment in ("construct()", "[-1/4, 1/4]", "1/(2n)",
                     "2n * max(np.convolve(f, f)) / sum(f)^2",
                     "exactly 2", "f[i] >= 0", str(MAX_PIECES), "EVOLVE-BLOCK-START", "numpy",
                     "1.5028609", "1.28", "30 s wall clock", "1024 MiB memory"):
        assert fragment in text, fragment
    start = PROBLEM.seed_program.index(EVOLVE_START)
    assert "def construct" in PROBLEM.seed_program[start:]
    assert "import numpy as np" in PROBLEM.seed_program[:start]
