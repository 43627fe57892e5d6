"""qubit_routing: the verifier, the SABRE baseline, the evaluator and reward hacks."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from discovery.types import Evaluation
from problems import get_problem
from problems.evaluate import candidate_python, evaluate
from problems.qubit_routing import PROBLEM
from problems.qubit_routing.evaluator import failure_penalty, score_outputs
from problems.qubit_routing.suite import (
    Case,
    Circuit,
    COUPLINGS,
    grid,
    heavy_hex,
    holdout_suite,
    line,
    search_suite,
)
from problems.qubit_routing.verify import RoutingError, verify
from sandbox.base import RunRequest, RunResult

qiskit = pytest.importorskip("qiskit")

from problems.qubit_routing import baseline  # noqa: E402  (needs qiskit)

LINE4 = line(4)  # 0 - 1 - 2 - 3
TOY = Circuit("toy", 3, (("cx", 0, 1), ("cz", 1, 2), ("cx", 0, 2)))
TOY_CASE = Case(TOY, LINE4)
# Trivial layout; cx 0 1 and cz 1 2 act on coupled qubits; then swap(0, 1) moves logical 0 onto
# physical 1, next to logical 2 on physical 2, for the last gate cx 0 2.
TOY_OK = {
    "layout": [0, 1, 2],
    "ops": [["cx", 0, 1], ["cz", 1, 2], ["swap", 0, 1], ["cx", 1, 2]],
}


def rejected(case: Case, output) -> RoutingError:
    with pytest.raises(RoutingError) as info:
        verify(case, output)
    return info.value


# --- suite -----------------------------------------------------------------------------------


def test_coupling_maps_are_the_documented_ones():
    hh = heavy_hex(3, 7)
    assert (hh.name, hh.num_qubits, len(hh.edges)) == ("heavy_hex_25", 25, 26)
    degree = [0] * hh.num_qubits
    for p, q in hh.edges:
        degree[p] += 1
        degree[q] += 1
    assert max(degree) == 3  # heavy-hex: degree <= 3
    assert (grid(5, 5).num_qubits, len(grid(5, 5).edges)) == (25, 40)
    assert line(20).diameter == 19 and grid(5, 5).diameter == 8
    assert [c.name for c in COUPLINGS] == ["heavy_hex_25", "grid_5x5", "line_20"]


def test_suites_are_deterministic_and_disjoint():
    assert len(search_suite()) == 18 and len(holdout_suite()) == 18
    names = {c.circuit.name for c in search_suite()}
    assert not names & {c.circuit.name for c in holdout_suite()}
    from problems.qubit_routing import suite as module

    assert module.qaoa(12, 2, seed=1) == module.qaoa(12, 2, seed=1)
    assert module.random_cx(14, 8, seed=1) != module.random_cx(14, 8, seed=2)
    for case in search_suite() + holdout_suite():
        circuit = case.circuit
        assert circuit.num_qubits <= case.coupling.num_qubits
        assert all(name != "swap" and a != b for name, a, b in circuit.gates)
        assert all(0 <= q < circuit.num_qubits for _, a, b in circuit.gates for q in (a, b))


# --- verifier: accepts ------------------------------------------------------------------------


def test_verifier_accepts_a_correct_routing_and_counts_swaps():
    routed = verify(TOY_CASE, TOY_OK)
    assert routed.swaps == 1 and routed.added_cnots == 3


def test_verifier_accepts_reordering_of_commuting_gates():
    circuit = Circuit("two", 4, (("cx", 0, 1), ("cx", 2, 3), ("cx", 1, 2)))
    out = {"layout": [0, 1, 2, 3], "ops": [["cx", 2, 3], ["cx", 0, 1], ["cx", 1, 2]]}
    assert verify(Case(circuit, LINE4), out).swaps == 0


def test_verifier_accepts_free_physical_qubits_and_swaps_with_them():
    out = {"layout": [0, 1, 3], "ops": [["cx", 0, 1], ["swap", 3, 2], ["cz", 1, 2],
                                        ["swap", 1, 0], ["swap", 1, 2], ["cx", 0, 1]]}
    # after swap(3,2): l2 on 2; cz l1 l2 on (1,2); swap(1,0): l0 on 1, l1 on 0;
    # swap(1,2): l0 on 2, l2 on 1; cx l0 l2 would be (2,1), not (0,1):
    err = rejected(TOY_CASE, out)
    assert err.check == "extra"
    out["ops"][-1] = ["cx", 2, 1]
    assert verify(TOY_CASE, out).swaps == 3


def test_verifier_accepts_qiskit_sabre_output_on_every_case():
    for case in search_suite() + holdout_suite():
        routing = baseline.sabre_routing(case)
        routed = verify(case, routing)
        assert routed.added_cnots == baseline.sabre_added_cnots(case), case.name


# --- verifier: rejects ------------------------------------------------------------------------


def test_rejects_gate_on_uncoupled_qubits():
    out = {"layout": [0, 1, 2], "ops": [["cx", 0, 1], ["cz", 1, 2], ["cx", 0, 2]]}
    err = rejected(TOY_CASE, out)
    assert err.check == "coupling" and err.where["op"] == 2
    assert "not coupled" in err.message and "line_4" in err.message


def test_rejects_swap_on_uncoupled_qubits():
    out = {"layout": [0, 1, 2], "ops": [["cx", 0, 1], ["cz", 1, 2], ["swap", 0, 2],
                                        ["cx", 2, 1]]}
    err = rejected(TOY_CASE, out)
    assert err.check == "coupling" and err.where["op"] == 2


def test_rejects_dropped_gate():
    out = {"layout": [0, 1, 2], "ops": [["cx", 0, 1], ["cz", 1, 2]]}
    err = rejected(TOY_CASE, out)
    assert err.check == "missing" and err.where["gate"] == 2
    assert "input gate #2 (cx 0 2)" in err.message


def test_rejects_reordered_dependent_pair():
    out = {"layout": [0, 1, 2], "ops": [["cz", 1, 2], ["cx", 0, 1], ["swap", 0, 1],
                                        ["cx", 1, 2]]}
    err = rejected(TOY_CASE, out)
    assert err.check == "order" and err.where == {"op": 0, "gate": 1, "blocker": 0}
    assert "input gate #0 (cx 0 1)" in err.message


def test_rejects_duplicated_gate():
    out = {"layout": [0, 1, 2], "ops": [["cx", 0, 1], ["cx", 0, 1], *TOY_OK["ops"][1:]]}
    err = rejected(TOY_CASE, out)
    assert err.check == "extra" and err.where["op"] == 1 and "duplicate" in err.message


def test_rejects_non_injective_layout():
    err = rejected(TOY_CASE, {"layout": [0, 1, 1], "ops": TOY_OK["ops"]})
    assert err.check == "layout" and "not injective" in err.message


@pytest.mark.parametrize("layout", [[0, 1], [0, 1, 4], [0, 1, -1], [0, 1, True], [0, 1, 2.0],
                                    "012"])
def test_rejects_bad_layouts(layout):
    assert rejected(TOY_CASE, {"layout": layout, "ops": TOY_OK["ops"]}).check in (
        "layout", "format")


def test_rejects_fake_and_mislabelled_gates():
    fake = {"layout": [0, 1, 2], "ops": [*TOY_OK["ops"], ["cz", 1, 2]]}
    assert rejected(TOY_CASE, fake).check == "extra"
    renamed = {"layout": [0, 1, 2], "ops": [["cz", 0, 1], *TOY_OK["ops"][1:]]}
    assert rejected(TOY_CASE, renamed).check == "extra"
    flipped = {"layout": [0, 1, 2], "ops": [["cx", 1, 0], *TOY_OK["ops"][1:]]}
    err = rejected(TOY_CASE, flipped)
    assert err.check == "extra" and "qubit order matters" in err.message
    on_empty = {"layout": [0, 1, 2], "ops": [["cx", 2, 3], *TOY_OK["ops"]]}
    assert rejected(TOY_CASE, on_empty).check == "extra"


@pytest.mark.parametrize("output", [
    None, [], {"layout": [0, 1, 2]}, {"layout": [0, 1, 2], "ops": "cx 0 1"},
    {"layout": [0, 1, 2], "ops": [["cx", 0]]}, {"layout": [0, 1, 2], "ops": [[1, 0, 1]]},
    {"layout": [0, 1, 2], "ops": [["cx", 0, 0]]}, {"layout": [0, 1, 2], "ops": [["cx", 0, 9]]},
    {"layout": [0, 1, 2], "ops": [["cx", False, True]]},
])
def test_rejects_malformed_output(output):
    assert rejected(TOY_CASE, output).check in ("format", "qubits")


def test_rejects_claimed_score_in_output():
    err = rejected(TOY_CASE, {**TOY_OK, "score": 100.0})
    assert err.check == "format" and "exactly the keys" in err.message


# --- trusted scoring without a sandbox ---------------------------------------------------------


def test_sabre_routing_scores_zero_and_better_routing_scores_positive():
    outputs = {case.name: baseline.sabre_routing(case) for case in search_suite()}
    evaluation = PROBLEM.score(outputs)
    assert evaluation.status == "ok" and evaluation.score == pytest.approx(0.0)
    assert evaluation.metrics["failed_cases"] == 0
    assert evaluation.metrics["qiskit_version"] == qiskit.__version__
    # A missing case is charged the failure penalty.
    first = search_suite()[0]
    del outputs[first.name]
    evaluation = PROBLEM.score(outputs)
    total_sabre = evaluation.metrics["sabre_added_cnots"]
    expected = 100 * (1 - (total_sabre - baseline.sabre_added_cnots(first)
                           + failure_penalty(first)) / total_sabre)
    assert evaluation.score == pytest.approx(expected) and evaluation.score < 0
    assert "1 case(s) failed" in evaluation.feedback


def test_invalid_case_makes_everything_invalid_and_is_named():
    outputs = {case.name: baseline.sabre_routing(case) for case in search_suite()}
    case = search_suite()[4]
    outputs[case.name]["ops"] = outputs[case.name]["ops"][:-1]
    evaluation = score_outputs(outputs)
    assert evaluation.status == "invalid"
    assert evaluation.metrics["case"] == case.name and evaluation.metrics["check"] == "missing"
    assert case.name in evaluation.feedback and "missing check" in evaluation.feedback


# --- the evaluator with a fake sandbox ---------------------------------------------------------


class SabreSandbox:
    """Answers every case with Qiskit's own routing, except cases named in `fail`."""

    name = "fake"

    def __init__(self, fail: dict[str, RunResult] | None = None, patch=None):
        self.fail = fail or {}
        self.patch = patch
        self.requests: list[RunRequest] = []
        self.by_data = {
            (repr(c.circuit.as_data()), repr(c.coupling.as_data())): c
            for c in search_suite() + holdout_suite()
        }

    def run(self, request: RunRequest) -> RunResult:
        self.requests.append(request)
        case = self.by_data[(repr(request.kwargs["circuit"]), repr(request.kwargs["coupling"]))]
        if case.name in self.fail:
            return self.fail[case.name]
        output = baseline.sabre_routing(case)
        if self.patch:
            output = self.patch(case, output)
        return RunResult(status="ok", output=output, duration_s=0.1, cpu_s=0.1, backend="fake")


def test_evaluator_runs_each_case_in_its_own_sandboxed_run():
    sandbox = SabreSandbox()
    evaluation = evaluate(PROBLEM, PROBLEM.seed_program, sandbox)
    assert evaluation.status == "ok" and evaluation.score == pytest.approx(0.0)
    assert len(sandbox.requests) == len(search_suite())
    request = sandbox.requests[0]
    assert request.entrypoint == "route" and request.limits == PROBLEM.limits
    assert set(request.kwargs) == {"circuit", "coupling"}
    assert set(request.kwargs["circuit"]) == {"num_qubits", "gates"}  # no names, no baseline
    assert evaluation.backend == "fake" and evaluation.cpu_s == pytest.approx(1.8)
    assert evaluation.metrics["split"] == "search"


def test_evaluator_holdout_uses_the_held_out_cases():
    sandbox = SabreSandbox()
    evaluation = evaluate(PROBLEM, PROBLEM.seed_program, sandbox, "holdout")
    assert evaluation.status == "ok" and evaluation.metrics["split"] == "holdout"
    assert set(evaluation.metrics["per_case"]) == {c.name for c in holdout_suite()}


def test_timed_out_case_counts_as_failed_with_feedback():
    case = search_suite()[2]
    timeout = RunResult(status="timeout", error="wall-clock limit", duration_s=5.0)
    evaluation = evaluate(PROBLEM, "program", SabreSandbox(fail={case.name: timeout}))
    assert evaluation.status == "ok" and evaluation.score < 0
    assert evaluation.metrics["failed_cases"] == 1
    assert evaluation.metrics["per_case"][case.name]["added"] == failure_penalty(case)
    assert f"{case.name} (timeout: wall-clock limit)" in evaluation.feedback


def test_every_case_failing_is_the_run_status():
    crash = RunResult(status="error", error="ModuleNotFoundError: No module named 'qiskit'",
                      exit_code=1, stderr="ModuleNotFoundError: No module named 'qiskit'\n")
    sandbox = SabreSandbox(fail={c.name: crash for c in search_suite()})
    evaluation = evaluate(PROBLEM, "program", sandbox)
    assert evaluation.status == "error" and evaluation.score is None
    assert "every one of the 18 cases failed" in evaluation.feedback
    assert "No module named 'qiskit'" in evaluation.feedback


def test_evaluator_invalid_names_case_check_and_op():
    target = search_suite()[7]

    def break_it(case, output):
        if case == target:
            output["ops"].insert(3, ["swap", 0, 24])  # not an edge of any device here
        return output

    evaluation = evaluate(PROBLEM, "program", SabreSandbox(patch=break_it))
    assert evaluation.status == "invalid"
    assert evaluation.metrics["case"] == target.name
    assert evaluation.metrics["check"] == "coupling" and evaluation.metrics["op"] == 3
    assert target.name in evaluation.feedback and "op #3" in evaluation.feedback


def test_evaluator_error_when_the_baseline_is_unavailable(monkeypatch):
    def no_qiskit():
        raise RuntimeError("the qubit_routing baseline needs qiskit")

    monkeypatch.setattr(baseline, "qiskit_version", no_qiskit)
    evaluation = evaluate(PROBLEM, "program", SabreSandbox())
    assert evaluation.status == "error" and "needs qiskit" in evaluation.feedback


# --- the real sandbox: seed program and reward hacks ---------------------------------------------


@pytest.fixture(scope="module")
def sandbox():
    from sandbox import get_sandbox

    return get_sandbox()


@pytest.fixture(scope="module")
def seed_evaluation(sandbox) -> Evaluation:
    return evaluate(PROBLEM, PROBLEM.seed_program, sandbox)


def _program(body: str) -> str:
    """A candidate whose evolve block is `body` (the seed's helpers replaced)."""
    head, _, rest = PROBLEM.seed_program.partition("# EVOLVE-BLOCK-START\n")
    _, _, tail = rest.partition("# EVOLVE-BLOCK-END")
    return f"{head}# EVOLVE-BLOCK-START\n{body}\n# EVOLVE-BLOCK-END{tail}"


def test_registry_finds_the_problem():
    problem = get_problem("qubit_routing")
    assert problem is PROBLEM
    assert problem.direction == "maximize" and problem.has_holdout and problem.evaluator
    assert "qiskit" not in " ".join(problem.requirements)
    assert "NOT installed" in problem.description


def test_seed_program_runs_and_scores(seed_evaluation):
    evaluation = seed_evaluation
    assert evaluation.status == "ok", evaluation.feedback
    assert evaluation.score < 0  # the greedy router adds more CNOTs than SABRE
    assert evaluation.metrics["failed_cases"] == 0
    assert "Worst case:" in evaluation.feedback and "Per case" in evaluation.feedback
    assert evaluation.duration_s < 30
    assert evaluation.backend in ("bwrap", "process")


def test_seed_program_scores_on_holdout(sandbox):
    evaluation = evaluate(PROBLEM, PROBLEM.seed_program, sandbox, "holdout")
    assert evaluation.status == "ok", evaluation.feedback
    assert evaluation.score < 0


def test_hack_unrouted_input_is_invalid(sandbox):
    program = _program(
        "def route(circuit, coupling):\n"
        "    return {'layout': list(range(circuit['num_qubits'])),\n"
        "            'ops': [list(g) for g in circuit['gates']]}\n"
    )
    evaluation = evaluate(PROBLEM, program, sandbox)
    assert evaluation.status == "invalid"
    assert evaluation.metrics["check"] == "coupling"
    assert "op #" in evaluation.feedback and evaluation.metrics["case"] in evaluation.feedback


def test_hack_claimed_score_is_invalid(sandbox):
    program = PROBLEM.seed_program.replace(
        'return {"layout": layout, "ops": ops}',
        'return {"layout": layout, "ops": ops, "score": 100.0, "added_cnots": 0}',
    )
    assert program != PROBLEM.seed_program
    evaluation = evaluate(PROBLEM, program, sandbox)
    assert evaluation.status == "invalid" and evaluation.metrics["check"] == "format"


def test_hack_swaps_on_uncoupled_qubits_are_invalid(sandbox):
    # "Teleport" each gate's qubits together with one long-range SWAP.
    program = PROBLEM.seed_program.replace(
        "            for step in path[1:-1]:  # walk a up to the neighbour of b\n"
        "                swap(position[a], step)\n",
        "            swap(position[a], path[-2])\n",
    )
    assert program != PROBLEM.seed_program
    evaluation = evaluate(PROBLEM, program, sandbox)
    assert evaluation.status == "invalid" and evaluation.metrics["check"] == "coupling"


def test_hack_extra_fake_gates_are_invalid(sandbox):
    program = PROBLEM.seed_program.replace(
        '    return {"layout": layout, "ops": ops}',
        '    ops.append(["cx", *coupling["edges"][0]])\n'
        '    return {"layout": layout, "ops": ops}',
    )
    assert program != PROBLEM.seed_program
    evaluation = evaluate(PROBLEM, program, sandbox)
    assert evaluation.status == "invalid" and evaluation.metrics["check"] == "extra"


def test_hack_importing_qiskit_fails_or_is_scored_honestly(sandbox, seed_evaluation):
    program = "import qiskit\n" + PROBLEM.seed_program
    evaluation = evaluate(PROBLEM, program, sandbox)
    python = candidate_python(PROBLEM.requirements) or sys.executable
    has_qiskit = subprocess.run([python, "-I", "-c", "import qiskit"],
                                capture_output=True).returncode == 0
    if not has_qiskit:
        assert evaluation.status == "error"
        assert "qiskit" in evaluation.feedback and "every one of the" in evaluation.feedback
    else:  # candidate environments not built yet: the import works, the score stays honest
        assert evaluation.status == "ok"
        assert evaluation.score == pytest.approx(seed_evaluation.score)


@pytest.mark.slow
def test_hanging_case_is_killed_from_outside_and_counted_failed(sandbox):
    program = PROBLEM.seed_program.replace(
        "    n = circuit[\"num_qubits\"]\n",
        "    n = circuit[\"num_qubits\"]\n"
        "    if n == 16 and coupling['num_qubits'] == 20 and len(circuit['gates']) == 15:\n"
        "        while True:\n"
        "            pass\n",
        1,
    )
    assert program != PROBLEM.seed_program
    evaluation = evaluate(PROBLEM, program, sandbox)
    assert evaluation.status == "ok", evaluation.feedback
    assert evaluation.metrics["failed_cases"] == 1
    per_case = evaluation.metrics["per_case"]["ghz_16_s1@line_20"]
    assert per_case["failed"].startswith(("timeout", "killed"))
    assert "ghz_16_s1@line_20" in evaluation.feedback


def test_problem_is_frozen_and_cacheable():
    assert PROBLEM.cache_evaluations
    with pytest.raises(dataclasses.FrozenInstanceError):
        PROBLEM.name = "x"  # type: ignore[misc]
