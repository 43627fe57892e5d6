"""Qubit routing (compiler heuristic): place a circuit's qubits on a device and insert SWAPs.

The candidate defines route(circuit, coupling) on plain data (no quantum SDK). The trusted
evaluator (`evaluator.evaluate`) runs it once per case in the sandbox, verifies every routing by
replay (`verify`), and scores the saving in added CNOTs against Qiskit's SABRE, which runs on the
trusted side (`baseline`). The cases (`suite`) are generated deterministically; held-out cases
are scored only with split="holdout". The seed program is package data (`seed.py`, read as
text, never imported by the platform).
"""

from __future__ import annotations

import textwrap

from problems.base import BestKnown, Problem, read_seed
from problems.qubit_routing import baseline, evaluator
from problems.qubit_routing.suite import COUPLINGS, search_suite
from problems.qubit_routing.verify import MAX_OPS
from sandbox.base import Limits

# Limits of ONE case (each case is its own sandboxed run); start-up included.
LIMITS = Limits(wall_seconds=5.0, cpu_seconds=5.0, memory_mb=1024, cpus=1,
                max_result_bytes=16 * 1024 * 1024)

REFERENCES = {
    "Qiskit SABRE": BestKnown(
        0.0,
        f"the baseline itself, Qiskit LightSABRE: {baseline.CONFIG} (Zou et al., "
        f"arXiv:2409.08368)",
    ),
}


def _suite_text() -> str:
    circuits = sorted({case.circuit.name for case in search_suite()})
    couplings = ", ".join(f"{c.name} ({c.num_qubits} qubits, {len(c.edges)} edges)"
                          for c in COUPLINGS)
    text = (f"{len(search_suite())} cases: the circuits {', '.join(circuits)} on each of the "
            f"coupling maps {couplings}")
    return textwrap.fill(text, width=96)


DESCRIPTION = f"""\
Qubit routing (maximise; higher is better).

A quantum device can apply a two-qubit gate only to physical qubits joined by an edge of its
coupling graph. Routing maps a circuit onto the device: choose an initial layout (which physical
qubit holds each logical qubit) and insert SWAPs that move logical qubits around so that every
gate acts on coupled qubits. Each SWAP costs 3 CNOTs. Write a router that adds fewer CNOTs than
Qiskit's SABRE (LightSABRE), the standard heuristic.

Input. Define `route(circuit, coupling)`. Both arguments are plain JSON data:
  circuit  = {{"num_qubits": n, "gates": [[name, a, b], ...]}}
      the circuit's two-qubit gates in program order, on logical qubits 0..n-1, with a != b;
      names are "cx", "cz", "cp", "rzz" ("cx" a b: control a, target b). Single-qubit gates
      are left out: they never need routing and do not change which gates depend on which.
  coupling = {{"num_qubits": m, "edges": [[p, q], ...]}}
      the device, physical qubits 0..m-1, m >= n; edges are undirected and the graph is
      connected.

Output. Return a dict with exactly two keys:
  {{"layout": [p_0, ..., p_(n-1)], "ops": [[name, p, q], ...]}}
  - layout[l] is the physical qubit holding logical qubit l at the start: n distinct integers
    in 0..m-1 (extra physical qubits start empty).
  - ops is the routed program on physical qubits, in execution order. ["swap", p, q] exchanges
    whatever p and q hold (a logical qubit or nothing). Any other op [name, p, q] is one gate of
    the circuit, applied to the logical qubits that sit on p and q at that moment, in that order
    (for "cx", p holds the control).

Verification (by trusted code, replaying your ops and tracking every SWAP):
  - every op, SWAPs included, acts on two distinct physical qubits joined by an edge;
  - each non-swap op must be a gate of the circuit, with the same name and the same logical
    qubits in the same order; no extra, fake or duplicated gates, none on an empty qubit;
  - every gate of the circuit appears exactly once;
  - the order is a valid topological order of the circuit's dependency graph: gates that share
    a logical qubit keep their relative order; gates on disjoint qubits may be reordered freely;
  - the layout is injective and in range.
An output that fails any check on any case makes the whole evaluation invalid; the feedback
names the case, the check and the op or gate index. Returning a score, counts or any other key
makes the output invalid: everything is recomputed from layout and ops.

Scoring. Added CNOTs = 3 x (number of SWAPs). The baseline is
Qiskit's SABRE, run by the evaluator on the same cases:
    {baseline.CONFIG}
i.e. LightSABRE with the trial settings of Qiskit's optimization level 3, layout and routing
only, no other pass (the Qiskit version is in the metrics). Over the whole suite,
    score = 100 * (1 - sum of your added CNOTs / sum of SABRE's added CNOTs),
the percentage of SABRE's overhead you save: 0 is as good as SABRE, negative is worse, 100
would be no SWAPs at all. The feedback lists every case (yours / SABRE) and the worst case.

Suite.
{_suite_text()}.
Circuits: QFT (all-to-all controlled phases), Cuccaro ripple-carry
adders (Toffolis as 6 CNOTs), GHZ by fan-out from qubit 0, QAOA-like layers of rzz on random
3-regular graphs, and layers of random CNOTs. Held-out circuits of other sizes and seeds (same
families, same devices) are used to check that a router generalises; do not special-case
particular instances.

Rules. Only the code between # EVOLVE-BLOCK-START and # EVOLVE-BLOCK-END may change. Each case
is a separate run of route() in a sandbox with no network and no files to read, with limits per
case (Python start-up included): {LIMITS.wall_seconds:g} s wall clock, {LIMITS.cpu_seconds:g} s CPU, {LIMITS.memory_mb} MiB memory, {LIMITS.cpus} CPU, at most {MAX_OPS} ops.
A case that times out, crashes or exceeds a limit counts as failed and is charged
3 x (number of gates) x (coupling diameter - 1) added CNOTs. Python's standard library and
numpy are available; qiskit and every other quantum SDK are NOT installed in your environment
(importing one fails), so implement the routing yourself (e.g. look-ahead SWAP scoring over
the front layer and upcoming gates, layout search by forward/backward passes, several seeded
trials keeping the best, exact search on small windows), within the time limit.
"""



PROBLEM = Problem(
    name="qubit_routing",
    title="Qubit routing: fewer added CNOTs than Qiskit SABRE",
    description=DESCRIPTION,
    seed_program=read_seed(__package__),
    entrypoint="route",
    direction="maximize",
    score=evaluator.score,
    limits=LIMITS,
    best_known=None,
    references=REFERENCES,
    evaluator_version=evaluator.EVALUATOR_VERSION,
    cache_evaluations=True,
    requirements=("numpy",),
    evaluator=evaluator.evaluate,
    has_holdout=True,
)
