"""The SABRE baseline: Qiskit's own layout + routing, run on the trusted side.

Exactly what runs, per case: the circuit is rebuilt as a Qiskit QuantumCircuit holding only its
two-qubit gates (cx -> CXGate, cz -> CZGate, cp -> CPhaseGate(pi/4), rzz -> RZZGate(pi/4); the
angles do not affect routing), and the coupling map as CouplingMap(edges) made symmetric. Then

    PassManager([SabreLayout(coupling_map, seed=SEED, max_iterations=4,
                             swap_trials=20, layout_trials=20)]).run(circuit)

is run and the SwapGates in its output are counted; added CNOTs = 3 per SWAP. SabreLayout is
Qiskit's LightSABRE: it chooses the initial layout by forward-backward routing passes and routes
the circuit in the same pass (with skip_routing=False, the default), keeping the trial with the
fewest SWAPs. max_iterations=4 and 20 x 20 trials are the settings of Qiskit's
optimization_level=3 preset layout stage; no other pass runs (no VF2Layout, no gate
cancellation, no basis translation), so the count is SABRE's routing overhead alone. The trial
counts are explicit because their defaults depend on the machine's CPU count.

SABRE is deterministic for a fixed seed and trial count, so results are cached in memory per
(circuit, coupling map, configuration, Qiskit version).
"""

from __future__ import annotations

import hashlib
import json
import math
import threading

from problems.qubit_routing.suite import Case, Circuit, Coupling

SEED = 2024
MAX_ITERATIONS = 4
SWAP_TRIALS = 20
LAYOUT_TRIALS = 20
CONFIG = (
    f"SabreLayout(seed={SEED}, max_iterations={MAX_ITERATIONS}, swap_trials={SWAP_TRIALS}, "
    f"layout_trials={LAYOUT_TRIALS})"
)

_lock = threading.Lock()
_cache: dict[str, int] = {}


def qiskit_version() -> str:
    try:
        import qiskit
    except ImportError as exc:
        raise RuntimeError(
            "the qubit_routing baseline needs qiskit in the platform environment "
            "(pip install qiskit); it never runs in the candidate's sandbox"
        ) from exc
    return qiskit.__version__


def to_qiskit(circuit: Circuit):
    """The circuit as a Qiskit QuantumCircuit (two-qubit gates only)."""
    from qiskit import QuantumCircuit

    qc = QuantumCircuit(circuit.num_qubits)
    for name, a, b in circuit.gates:
        if name == "cx":
            qc.cx(a, b)
        elif name == "cz":
            qc.cz(a, b)
        elif name == "cp":
            qc.cp(math.pi / 4, a, b)
        elif name == "rzz":
            qc.rzz(math.pi / 4, a, b)
        else:
            raise ValueError(f"unknown gate {name!r}")
    return qc


def run_sabre(circuit: Circuit, coupling: Coupling):
    """Runs the baseline; returns (routed QuantumCircuit, initial layout as a list of physical
    qubits per logical qubit)."""
    from qiskit.transpiler import CouplingMap, PassManager
    from qiskit.transpiler.passes import SabreLayout

    coupling_map = CouplingMap([list(e) for e in coupling.edges])
    coupling_map.make_symmetric()
    layout_pass = SabreLayout(
        coupling_map,
        seed=SEED,
        max_iterations=MAX_ITERATIONS,
        swap_trials=SWAP_TRIALS,
        layout_trials=LAYOUT_TRIALS,
    )
    routed = PassManager([layout_pass]).run(to_qiskit(circuit))
    layout = routed.layout.initial_index_layout(filter_ancillas=True)
    return routed, list(layout)


def _key(case: Case, version: str) -> str:
    data = json.dumps(
        [case.circuit.as_data(), case.coupling.as_data(), CONFIG, version], sort_keys=True
    )
    return hashlib.sha256(data.encode()).hexdigest()


def sabre_swaps(case: Case) -> int:
    """SWAPs SABRE inserts for `case` (cached per circuit, coupling, config, Qiskit version)."""
    key = _key(case, qiskit_version())
    with _lock:
        if key not in _cache:
            routed, _ = run_sabre(case.circuit, case.coupling)
            _cache[key] = int(routed.count_ops().get("swap", 0))
        return _cache[key]


def sabre_added_cnots(case: Case) -> int:
    return 3 * sabre_swaps(case)


def sabre_routing(case: Case) -> dict:
    """SABRE's routing of `case` in the candidate's output format ({"layout", "ops"}); the
    routed Qiskit circuit is on physical qubits 0..m-1 in order, SWAPs included."""
    with _lock:
        routed, layout = run_sabre(case.circuit, case.coupling)
    ops = []
    for instruction in routed.data:
        p, q = (routed.find_bit(qubit).index for qubit in instruction.qubits)
        ops.append([instruction.operation.name, p, q])
    return {"layout": layout, "ops": ops}
