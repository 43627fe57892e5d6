"""The lasso path problem: trusted numerics, the evaluator's arithmetic, and reward hacks run
through the real sandbox (each is scored invalid, fails, or gains nothing)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from discovery.types import OK
from problems import get_problem
from problems.base import EVOLVE_END, EVOLVE_START
from problems.evaluate import evaluate
from problems.lasso_path import PROBLEM
from problems.lasso_path.evaluator import LassoEvaluator, Settings
from problems.lasso_path.instances import (
    HOLDOUT_SUITE,
    SEARCH_SUITE,
    Shape,
    make_instance,
    shuffled,
)
from problems.lasso_path.programs import NULL_SOURCE
from problems.lasso_path.reference import (
    RTOL,
    check_path,
    duality_gaps,
    objectives,
    reference_path,
)
from sandbox.base import RunResult

# --- trusted numerics -------------------------------------------------------------------------


def orthogonal_instance(n=64, p=8, seed=0):
    """X with X^T X = n I, so the lasso solution is soft-thresholding of X^T y / n."""
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((n, p)))
    X = Q * np.sqrt(n)
    y = X @ np.array([3.0, -2.0, 1.5, 0, 0, 0.5, 0, 0]) + 0.3 * rng.standard_normal(n)
    alpha_max = np.abs(X.T @ y).max() / n
    return X, y, alpha_max * np.logspace(0, -2, 12)


def test_reference_matches_closed_form_on_orthogonal_design():
    X, y, alphas = orthogonal_instance()
    z = X.T @ y / X.shape[0]
    exact = np.sign(z) * np.maximum(np.abs(z)[None, :] - alphas[:, None], 0.0)
    ref = reference_path(X, y, alphas)
    assert ref.W.shape == (alphas.size, X.shape[1])
    np.testing.assert_allclose(ref.W, exact, atol=1e-10)
    np.testing.assert_allclose(ref.objective, objectives(X, y, exact, alphas), rtol=1e-12)
    assert ref.max_gap <= 1e-8
    assert np.all(ref.W[0] == 0.0)  # alphas[0] = alpha_max


def test_duality_gap_certifies_optimum_and_detects_suboptimal_points():
    X, y, alphas = orthogonal_instance(seed=1)
    ref = reference_path(X, y, alphas)
    assert np.all(duality_gaps(X, y, ref.W, alphas) <= 1e-9)
    worse = ref.W * 0.9
    assert np.all(duality_gaps(X, y, worse[1:], alphas[1:]) > 1e-4)


def test_reference_agrees_with_an_independent_coordinate_descent():
    inst = make_instance(Shape("t", "toeplitz", 30, 12, k=4, rho=0.7, n_alphas=8), seed=3)
    X, y, alphas = inst.X, inst.y, inst.alphas
    n, p = X.shape
    W = np.zeros((alphas.size, p))
    w = np.zeros(p)
    norms = (X * X).sum(axis=0) / n
    for k, alpha in enumerate(alphas):  # textbook cyclic CD with partial residuals, many sweeps
        for _ in range(1500):
            for j in range(p):
                r = y - X @ w + X[:, j] * w[j]
                z = X[:, j] @ r / n
                w[j] = np.sign(z) * max(abs(z) - alpha, 0.0) / norms[j]
        W[k] = w
    ref = reference_path(X, y, alphas)
    np.testing.assert_allclose(ref.objective, objectives(X, y, W, alphas), rtol=1e-10)


def test_check_path_accepts_the_reference_and_names_every_failure():
    inst = make_instance(SEARCH_SUITE[1], seed=5)
    X, y, alphas = inst.X, inst.y, inst.alphas
    ref = reference_path(X, y, alphas)
    assert check_path(ref.W, X, y, alphas, ref.objective).ok
    assert check_path(ref.W.tolist(), X, y, alphas, ref.objective).ok
    zeros = check_path(np.zeros_like(ref.W), X, y, alphas, ref.objective)
    assert not zeros.ok and zeros.check == "objective" and zeros.worst_index >= 1
    assert "alpha index" in zeros.message and zeros.max_excess > RTOL
    transposed = check_path(ref.W.T, X, y, alphas, ref.objective)
    assert transposed.check == "shape" and "transposed" in transposed.message
    nan = ref.W.copy()
    nan[7, 3] = np.nan
    assert check_path(nan, X, y, alphas, ref.objective).check == "finite"
    assert check_path({"score": 99}, X, y, alphas, ref.objective).check == "type"
    assert check_path(["a"] * alphas.size, X, y, alphas, ref.objective).check == "type"
    slightly_off = ref.W * (1 - 1e-3)
    assert check_path(slightly_off, X, y, alphas, ref.objective).check == "objective"


def test_instances_are_seeded_and_copies_are_equivalent():
    shape = SEARCH_SUITE[2]
    a, b, c = make_instance(shape, 11), make_instance(shape, 11), make_instance(shape, 12)
    assert np.array_equal(a.X, b.X) and np.array_equal(a.y, b.y)
    assert not np.array_equal(a.X, c.X)
    assert a.X.shape == (shape.n, shape.p) and a.alphas.size == shape.n_alphas
    assert a.alphas[0] == pytest.approx(np.abs(a.X.T @ a.y).max() / shape.n)
    ref = reference_path(a.X, a.y, a.alphas)
    copy, cols, signs = shuffled(a, np.random.default_rng(0))
    assert not np.array_equal(copy["X"], a.X)
    W = ref.W[:, cols] * signs  # the same solution in the copy's coordinates
    np.testing.assert_allclose(objectives(copy["X"], copy["y"], W, copy["alphas"]),
                               ref.objective, rtol=1e-12)
    assert check_path(W, copy["X"], copy["y"], copy["alphas"], ref.objective).ok
    assert not check_path(ref.W, copy["X"], copy["y"], copy["alphas"], ref.objective).ok


def test_search_and_holdout_suites_are_disjoint():
    key = lambda s: (s.design, s.n, s.p)  # noqa: E731
    assert not {s.name for s in SEARCH_SUITE} & {s.name for s in HOLDOUT_SUITE}
    assert not {key(s) for s in SEARCH_SUITE} & {key(s) for s in HOLDOUT_SUITE}


def test_problem_is_registered_with_its_contract():
    problem = get_problem("lasso_path")
    assert problem is PROBLEM
    assert problem.direction == "maximize" and problem.entrypoint == "lasso_path"
    assert problem.requirements == ("numpy", "scipy")
    assert problem.has_holdout and not problem.cache_evaluations
    assert problem.evaluator is not None and problem.limits.max_processes == 1
    assert EVOLVE_START in problem.seed_program and EVOLVE_END in problem.seed_program
    assert "NumPy and SciPy" in problem.description
    for shape in SEARCH_SUITE:
        assert shape.name in problem.description
    for shape in HOLDOUT_SUITE:
        assert shape.name not in problem.description


def test_seed_solves_a_small_instance_in_process():
    namespace: dict = {"__name__": "seed_under_test"}
    exec(compile(PROBLEM.seed_program, "seed.py", "exec"), namespace)
    inst = make_instance(Shape("t", "gaussian", 80, 120, k=5), seed=2)
    W = namespace["lasso_path"](inst.X, inst.y, inst.alphas)
    ref = reference_path(inst.X, inst.y, inst.alphas)
    assert check_path(W, inst.X, inst.y, inst.alphas, ref.objective).ok


# --- the evaluator's arithmetic, with a scripted sandbox ---------------------------------------


class ScriptedSandbox:
    """Answers like the real sandbox would, with fixed CPU times: null 0.2 s, candidate
    0.2 s + cand[i], baseline sklearn base[i] plus a 0.01 s first-call overhead."""

    name = "scripted"

    def __init__(self, cand, base, wrong_shape=None):
        self.cand, self.base, self.wrong_shape = cand, base, wrong_shape
        self.calls: list[str] = []
        self.fingerprints: list[tuple[int, tuple]] = []

    def _which(self, X):
        return next(i for i, s in enumerate(SMALL_SEARCH) if X.shape == (s.n, s.p))

    def run(self, request):
        if request.entrypoint == "time_baselines":
            self.calls.append("baseline")
            order = request.kwargs["order"]
            times, objs = {}, {}
            for i in order:
                X, y, a = (request.inputs[f"{k}{i}"] for k in ("X", "y", "alphas"))
                times[str(i)] = self.base[i]
                objs[str(i)] = reference_path(X, y, a).objective.tolist()
            out = {"versions": {"sklearn": "x"}, "first_call_s": {"sklearn": 0.01},
                   "times": {"sklearn": times}, "objectives": {"sklearn": objs}}
            return RunResult(status="ok", output=out, cpu_s=2.0, duration_s=2.0)
        X, y, a = (request.inputs[k] for k in ("X", "y", "alphas"))
        i = self._which(X)
        if repr(NULL_SOURCE) in request.program:
            self.calls.append(f"null{i}")
            return RunResult(status="ok", output=np.zeros((a.size, X.shape[1])), cpu_s=0.2,
                             duration_s=0.2)
        self.calls.append(f"cand{i}")
        # invariant under the per-call row/column permutation and sign flips of the copies
        self.fingerprints.append((i, tuple(np.round(np.sort(np.linalg.norm(X, axis=0)), 9))))
        W = reference_path(X, y, a).W
        if i == self.wrong_shape:
            W = np.zeros_like(W)
        return RunResult(status="ok", output=W, cpu_s=0.2 + self.cand[i], duration_s=0.3)


SMALL_SEARCH = (
    Shape("t_tall", "gaussian", 600, 60, k=6),
    Shape("t_wide", "gaussian", 60, 300, k=5),
    Shape("t_toeplitz", "toeplitz", 150, 150, k=8, rho=0.8),
)
SMALL_HOLDOUT = (Shape("h_equicorrelated", "equicorrelated", 120, 120, k=6, rho=0.6),)
FAST = Settings(min_rounds=2, max_rounds=3, budget_s=4.0, celer=False)
ONE = Settings(min_rounds=1, max_rounds=1, celer=False)  # validity only: one timed round


def small_problem(settings=FAST):
    return dataclasses.replace(
        PROBLEM, evaluator=LassoEvaluator(SMALL_SEARCH, SMALL_HOLDOUT, settings))


def test_score_is_the_geometric_mean_of_null_subtracted_speedups():
    sandbox = ScriptedSandbox(cand=[0.05, 0.4, 0.001], base=[0.09, 0.19, 0.04])
    problem = small_problem(dataclasses.replace(FAST, min_rounds=3, max_rounds=3))
    evaluation = evaluate(problem, PROBLEM.seed_program, sandbox)
    assert evaluation.status == OK, evaluation.feedback
    expected = [0.1 / 0.05, 0.2 / 0.4, 0.05 / 0.005]  # the last one at the 5 ms floor
    assert evaluation.score == pytest.approx(math.prod(expected) ** (1 / 3), rel=1e-6)
    assert evaluation.metrics["rounds"] == 3
    assert evaluation.metrics["worst_shape"] == "t_wide"
    assert evaluation.metrics["t_tall.speedup"] == pytest.approx(2.0, rel=1e-3)
    assert "5 ms floor" in evaluation.feedback and "t_wide" in evaluation.feedback
    assert sandbox.calls.count("baseline") == 3
    # one untimed call per shape on a fresh instance first, then 3 timed rounds with null runs
    assert sorted(sandbox.calls[:3]) == ["cand0", "cand1", "cand2"]
    assert all(sandbox.calls.count(f"cand{i}") == 4 and sandbox.calls.count(f"null{i}") == 3
               for i in range(3))


def test_speed_is_timed_on_fixed_instances_and_correctness_checked_on_fresh_ones():
    from problems.lasso_path.evaluator import timing_seed

    shape = SMALL_SEARCH[0]
    assert timing_seed("search", shape) == timing_seed("search", shape) != timing_seed("holdout", shape)
    runs = []
    for _ in range(2):
        sandbox = ScriptedSandbox(cand=[0.05, 0.4, 0.01], base=[0.09, 0.19, 0.04])
        assert evaluate(small_problem(ONE), PROBLEM.seed_program, sandbox).status == OK
        runs.append(sandbox.fingerprints)
    (checks_a, timed_a), (checks_b, timed_b) = ((r[:3], r[3:]) for r in runs)
    assert sorted(timed_a) == sorted(timed_b), "the timing instances are the same in every evaluation"
    assert not set(checks_a) & set(checks_b), "the correctness instances are fresh every evaluation"
    assert not set(checks_a) & set(timed_a)


def test_one_wrong_path_makes_the_evaluation_invalid_and_names_where():
    sandbox = ScriptedSandbox(cand=[0.05] * 3, base=[0.1] * 3, wrong_shape=1)
    evaluation = evaluate(small_problem(), PROBLEM.seed_program, sandbox)
    assert evaluation.status == "invalid" and evaluation.score is None
    assert evaluation.metrics["shape"] == "t_wide"
    assert evaluation.metrics["alpha_index"] >= 1
    assert "t_wide" in evaluation.feedback and "alpha index" in evaluation.feedback
    assert "instance seed" in evaluation.feedback


# --- the real sandbox: the seed and the reward hacks --------------------------------------------

SEEDS = (101, 202, 303)  # fixed instances, so timing comparisons see the same problems
SAME = dataclasses.replace(FAST, instance_seeds=SEEDS, min_rounds=3, max_rounds=3)


def run_real(program, settings=ONE, split="search"):
    from sandbox import get_sandbox

    return evaluate(small_problem(settings), program, get_sandbox(), split)


def seed_with(block_prefix="", call_prefix="", call_suffix=""):
    """The seed program with code added at module level, or at the start/end of lasso_path."""
    program = PROBLEM.seed_program
    if block_prefix:
        program = program.replace(EVOLVE_START, EVOLVE_START + "\n" + block_prefix)
    if call_prefix or call_suffix:
        head = '    """Returns the coefficients along the path, shape (len(alphas), p)."""\n'
        assert head in program
        program = program.replace("def lasso_path(X, y, alphas):\n" + head,
                                  "def lasso_path(X, y, alphas):\n" + head + call_prefix)
        if call_suffix:
            program = program.replace("    return W\n", call_suffix + "    return W\n")
    return program


@pytest.fixture(scope="module")
def seed_on_fixed_instances():
    return run_real(PROBLEM.seed_program, SAME)


def test_seed_is_valid_and_gets_a_positive_speedup(seed_on_fixed_instances):
    evaluation = seed_on_fixed_instances
    assert evaluation.status == OK, evaluation.feedback
    assert 0 < evaluation.score < 10
    assert evaluation.metrics["max_rel_excess"] <= RTOL
    for shape in SMALL_SEARCH:
        assert evaluation.metrics[f"{shape.name}.time_s"] > 0
        assert evaluation.metrics[f"{shape.name}.sklearn_s"] > 0
    assert evaluation.cpu_s > 0 and evaluation.backend in ("bwrap", "process")


def test_seed_on_the_holdout_split():
    evaluation = run_real(PROBLEM.seed_program, FAST, split="holdout")
    assert evaluation.status == OK, evaluation.feedback
    assert evaluation.metrics["split"] == "holdout"
    assert "h_equicorrelated.speedup" in evaluation.metrics


@pytest.mark.slow
def test_seed_scores_on_the_real_search_suite():
    from sandbox import get_sandbox

    evaluation = evaluate(PROBLEM, PROBLEM.seed_program, get_sandbox())
    assert evaluation.status == OK, evaluation.feedback
    assert 0.005 < evaluation.score < 1.0
    assert evaluation.metrics["sklearn_max_rel_excess"] <= RTOL


def assert_no_gain(evaluation, reference):
    """No measured gain over the unpatched seed (the ratio of two noisy measurements on the same
    instances; never a wall-clock threshold). The small FAST instances time in milliseconds, so
    two honest measurements were seen 1.68x apart on an idle CI machine and 2.6x apart (0.39)
    on a loaded one; an attack on the clocks that worked would report a speedup of 10x or more
    (or infinite), so a ratio below 2.5 tells them apart. A slower measurement is no gain: no
    lower bound."""
    assert evaluation.status == OK, evaluation.feedback
    ratio = evaluation.score / reference.score
    assert 0 < ratio < 2.5, (evaluation.score, reference.score)


def test_patching_the_clocks_gains_nothing(seed_on_fixed_instances):
    patch = (
        "import time as _t\n"
        "for _name in ('time', 'perf_counter', 'process_time', 'thread_time', 'monotonic'):\n"
        "    setattr(_t, _name, lambda: 0.0)\n"
        "    setattr(_t, _name + '_ns', lambda: 0)\n"
    )
    evaluation = run_real(seed_with(block_prefix=patch), SAME)
    assert_no_gain(evaluation, seed_on_fixed_instances)


def test_sleeping_gains_nothing(seed_on_fixed_instances):
    evaluation = run_real(seed_with(call_prefix="    import time; time.sleep(0.3)\n"), SAME)
    assert_no_gain(evaluation, seed_on_fixed_instances)


def test_returning_zeros_is_invalid():
    program = "import numpy as np\n\ndef lasso_path(X, y, alphas):\n    return np.zeros((len(alphas), X.shape[1]))\n"
    evaluation = run_real(program)
    assert evaluation.status == "invalid"
    assert evaluation.metrics["check"] == "objective"
    assert "alpha index" in evaluation.feedback


def test_a_path_for_another_instance_is_invalid():
    # Solves a different problem of the same shape (its own data, the given alphas).
    other = seed_with(call_prefix=(
        "    rng = np.random.default_rng(0)\n"
        "    X = rng.standard_normal(np.shape(X))\n"
        "    y = X[:, :3].sum(axis=1)\n"))
    evaluation = run_real(other)
    assert evaluation.status == "invalid"
    assert evaluation.metrics["check"] == "objective"


def test_caching_across_calls_is_invalid_or_honest(tmp_path):
    # Returns the path saved by an earlier call when it can find one, else computes and saves.
    cache = (
        "    import os\n"
        "    for d in (os.path.expanduser('~'), '/tmp', '/var/tmp', '/dev/shm', os.getcwd()):\n"
        "        f = os.path.join(d, 'lasso_cache_%d_%d.npy' % X.shape)\n"
        "        if os.path.exists(f):\n"
        "            return np.load(f)\n"
    )
    save = (
        "    for d in (os.path.expanduser('~'), '/tmp', '/var/tmp', '/dev/shm', os.getcwd()):\n"
        "        try:\n"
        "            np.save(os.path.join(d, 'lasso_cache_%d_%d.npy' % X.shape), W)\n"
        "        except OSError:\n"
        "            pass\n"
    )
    evaluation = run_real(seed_with(call_prefix=cache, call_suffix=save),
                          dataclasses.replace(ONE, min_rounds=2, max_rounds=2))
    # A cache hit returns the path of another copy (columns permuted): invalid. Otherwise every
    # call computed its own path, which is honest work.
    assert evaluation.status in ("ok", "invalid"), evaluation.feedback


def test_writing_a_fake_result_file_and_exiting_is_invalid():
    program = (
        "import json, os\nimport numpy as np\n\n"
        "def lasso_path(X, y, alphas):\n"
        "    np.save('result.npy', np.zeros((len(alphas), X.shape[1])))\n"
        "    os._exit(0)\n"
    )
    assert run_real(program).status == "invalid"
    claim = (
        "import json, os\n\n"
        "def lasso_path(X, y, alphas):\n"
        "    with open('result.json', 'w') as f:\n"
        "        json.dump({'speedup': 1000.0, 'valid': True}, f)\n"
        "    os._exit(0)\n"
    )
    evaluation = run_real(claim)
    assert evaluation.status == "invalid" and evaluation.metrics["check"] == "type"


def test_a_background_process_cannot_be_started():
    # The work would be done in a child that outlives the call: its CPU time would escape the
    # accounting, so the timed runs allow no second process at all.
    program = (
        "import os\nimport numpy as np\n\n"
        "def lasso_path(X, y, alphas):\n"
        "    if os.fork() == 0:  # the child would do the work and stay alive\n"
        "        while True:\n"
        "            pass\n"
        "    return np.zeros((len(alphas), X.shape[1]))\n"
    )
    evaluation = run_real(program)
    assert evaluation.status == "error"
    assert "Resource temporarily unavailable" in evaluation.feedback or \
        "BlockingIOError" in evaluation.feedback


def test_a_thread_cannot_be_started():
    program = seed_with(call_prefix=(
        "    import threading\n"
        "    threading.Thread(target=lambda: None).start()\n"))
    evaluation = run_real(program)
    assert evaluation.status == "error"


def test_mutating_the_inputs_does_not_affect_the_check():
    program = seed_with(call_suffix="    X[...] = 0.0\n    y[...] = 0.0\n    alphas[...] = 1e9\n")
    evaluation = run_real(program)
    assert evaluation.status == OK, evaluation.feedback


def test_the_baseline_cannot_be_imported():
    program = (
        "from sklearn.linear_model import lasso_path as _sk\n\n"
        "def lasso_path(X, y, alphas):\n"
        "    return _sk(X, y, alphas=alphas)[1].T\n"
    )
    evaluation = run_real(program)
    assert evaluation.status == "error"
    assert "sklearn" in evaluation.feedback
    assert "ModuleNotFoundError" in evaluation.feedback or "ImportError" in evaluation.feedback


def test_the_seed_scores_on_the_docker_backend_with_its_baseline_in_an_image_of_its_own():
    """On docker the trusted scikit-learn baseline runs in an image holding what it imports
    (baseline_requirements), the candidate in the image of the problem's requirements."""
    from problems.lasso_path.evaluator import baseline_requirements
    from sandbox import DockerSandbox
    from tests.sandbox.conftest import require_docker

    require_docker()
    sb = DockerSandbox()
    try:
        evaluation = evaluate(small_problem(ONE), PROBLEM.seed_program, sb)
        assert evaluation.status == OK, evaluation.feedback
        assert evaluation.backend == "docker" and 0 < evaluation.score < 10
        assert evaluation.metrics["sklearn_max_rel_excess"] <= RTOL
        assert "scikit-learn" in baseline_requirements(True)
    finally:
        sb.close()
