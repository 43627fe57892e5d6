"""Trusted verifier of one routed circuit.

The candidate returns {"layout": [...], "ops": [...]}: layout[l] is the physical qubit that holds
logical qubit l at the start, and ops is the routed program on physical qubits, each op
[name, p, q]; name "swap" exchanges whatever p and q hold, any other name is one of the
circuit's gates. The verifier replays the ops, tracking where every logical qubit is, and checks:

  format    the output is exactly {"layout": list, "ops": list}; every op is [str, int, int];
  layout    one physical qubit per logical qubit, each in range, no two the same (injective);
  qubits    both qubits of an op are in range and distinct;
  coupling  both qubits of every op (SWAPs included) are joined by an edge of the coupling map;
  extra     a non-swap op maps (through the current layout) to a pending input gate with the
            same name and the same (ordered) logical qubits; anything else is a fake, duplicated
            or unknown gate, or a gate on a physical qubit that holds no logical qubit;
  order     the gates are executed in a topological order of the circuit's dependency DAG: a
            gate runs only after every earlier gate that shares a qubit with it (gates on
            disjoint qubits may be reordered freely);
  missing   at the end, every input gate has been executed exactly once.

Checking the DAG order reduces to per-qubit queues: each logical qubit's gates form a chain in
program order, and a gate is ready exactly when it is at the head of both its qubits' chains.
The added cost is 3 CNOTs per SWAP; nothing the candidate reports about itself is read.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from problems.qubit_routing.suite import Case

CNOTS_PER_SWAP = 3
MAX_OPS = 200_000


class RoutingError(Exception):
    """A check failed: `check` names it, `message` says where and what, `where` locates it."""

    def __init__(self, check: str, message: str, **where: Any) -> None:
        super().__init__(message)
        self.check = check
        self.message = message
        self.where = where


@dataclasses.dataclass(frozen=True)
class Routed:
    swaps: int
    ops: int

    @property
    def added_cnots(self) -> int:
        return CNOTS_PER_SWAP * self.swaps


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _gate_text(index: int, gate: tuple[str, int, int]) -> str:
    name, a, b = gate
    return f"input gate #{index} ({name} {a} {b})"


def _check_layout(layout: Any, n: int, m: int) -> list[int]:
    if not isinstance(layout, (list, tuple)):
        raise RoutingError("format", f"layout is a {type(layout).__name__}; return a list of "
                           f"{n} physical qubits (layout[l] = where logical qubit l starts).")
    if len(layout) != n:
        raise RoutingError("layout", f"layout has {len(layout)} entries; the circuit has {n} "
                           f"logical qubits, so it needs exactly {n}.", length=len(layout))
    seen: dict[int, int] = {}
    for logical, physical in enumerate(layout):
        if not _is_int(physical):
            raise RoutingError("layout", f"layout[{logical}] = {_short(physical)} is not an "
                               f"integer physical qubit.", logical=logical)
        if not 0 <= physical < m:
            raise RoutingError("layout", f"layout[{logical}] = {physical} is not a physical "
                               f"qubit (the device has qubits 0..{m - 1}).", logical=logical)
        if physical in seen:
            raise RoutingError("layout", f"layout is not injective: logical qubits "
                               f"{seen[physical]} and {logical} both start on physical qubit "
                               f"{physical}.", logical=logical, physical=physical)
        seen[physical] = logical
    return list(layout)


def verify(case: Case, output: Any) -> Routed:
    """Replays the candidate's routing of `case`; returns its SWAP count or raises RoutingError."""
    circuit, coupling = case.circuit, case.coupling
    n, m = circuit.num_qubits, coupling.num_qubits
    if not isinstance(output, dict):
        raise RoutingError("format", f"route() returned a {type(output).__name__}; return a dict "
                           f'{{"layout": [...], "ops": [...]}}.')
    extra_keys = sorted(str(k) for k in output if k not in ("layout", "ops"))
    if extra_keys or "layout" not in output or "ops" not in output:
        raise RoutingError("format", f"the result must have exactly the keys 'layout' and 'ops' "
                           f"(got {sorted(str(k) for k in output)}); scores, counts and other "
                           f"extras are not accepted: everything is recomputed from the ops.")
    layout = _check_layout(output["layout"], n, m)
    ops = output["ops"]
    if not isinstance(ops, (list, tuple)):
        raise RoutingError("format", f"ops is a {type(ops).__name__}; return a list of "
                           f"[name, p, q] operations.")
    if len(ops) > MAX_OPS:
        raise RoutingError("format", f"{len(ops)} ops is more than the {MAX_OPS} accepted.")

    edges = coupling.edge_set
    gates = circuit.gates
    chains: list[list[int]] = [[] for _ in range(n)]  # gate indices on each logical qubit
    for index, (_, a, b) in enumerate(gates):
        chains[a].append(index)
        chains[b].append(index)
    head = [0] * n  # position of the next pending gate in each chain
    done = [False] * len(gates)
    where = [None] * m  # physical -> logical (None = free)
    for logical, physical in enumerate(layout):
        where[physical] = logical
    swaps = 0

    for i, op in enumerate(ops):
        if not isinstance(op, (list, tuple)) or len(op) != 3:
            raise RoutingError("format", f"op #{i} is {_short(op)}; every op is a list "
                               f"[name, p, q] (a gate name or 'swap', two physical qubits).", op=i)
        name, p, q = op
        if not isinstance(name, str) or not _is_int(p) or not _is_int(q):
            raise RoutingError("format", f"op #{i} is {_short(op)}; every op is [name, p, q] "
                               f"with a string name and two integer physical qubits.", op=i)
        if not (0 <= p < m and 0 <= q < m) or p == q:
            raise RoutingError("qubits", f"op #{i} ({name} {p} {q}) needs two distinct physical "
                               f"qubits in 0..{m - 1}.", op=i)
        if (p, q) not in edges:
            raise RoutingError("coupling", f"op #{i} ({name} {p} {q}) acts on physical qubits "
                               f"{p} and {q}, which are not coupled on {coupling.name}.", op=i)
        if name == "swap":
            where[p], where[q] = where[q], where[p]
            swaps += 1
            continue
        a, b = where[p], where[q]
        if a is None or b is None:
            empty = p if a is None else q
            raise RoutingError("extra", f"op #{i} ({name} {p} {q}) acts on physical qubit "
                               f"{empty}, which holds no logical qubit at that point: the circuit "
                               f"has no such gate.", op=i)
        _execute(i, (name, a, b), (p, q), gates, chains, head, done)

    for index, finished in enumerate(done):
        if not finished:
            raise RoutingError("missing", f"{_gate_text(index, gates[index])} is never executed; "
                               f"every gate of the circuit must appear exactly once.",
                               gate=index, ops=len(ops))
    return Routed(swaps=swaps, ops=len(ops))


def _execute(i, gate, physical, gates, chains, head, done) -> None:
    """Marks the input gate that op #i executes as done, or raises (extra / order)."""
    name, a, b = gate
    chain = chains[a]
    if head[a] < len(chain):
        index = chain[head[a]]
        if gates[index] == gate:
            if chains[b][head[b]] != index:  # b has an earlier gate still pending
                blocker = chains[b][head[b]]
                raise RoutingError(
                    "order", f"op #{i} executes {_gate_text(index, gates[index])} before "
                    f"{_gate_text(blocker, gates[blocker])}, which comes earlier on logical qubit "
                    f"{b} and must run first.", op=i, gate=index, blocker=blocker)
            done[index] = True
            head[a] += 1
            head[b] += 1
            return
    # Not the next gate on qubit a: an out-of-order gate, or one the circuit does not have.
    pending = [k for k in chain[head[a]:] if gates[k] == gate]
    p, q = physical
    if pending:
        index = pending[0]
        blocker = chain[head[a]]
        raise RoutingError(
            "order", f"op #{i} executes {_gate_text(index, gates[index])} before "
            f"{_gate_text(blocker, gates[blocker])}, which comes earlier on logical qubit {a} "
            f"and must run first.", op=i, gate=index, blocker=blocker)
    executed = any(gates[k] == gate for k in chain[: head[a]])
    reversed_gate = (name, b, a)
    if executed:
        what = "a duplicate: that gate was already executed"
    elif any(gates[k] == reversed_gate for k in chain[head[a]:]):
        what = (f"not a gate of the circuit (it has {name} {b} {a}: qubit order matters, "
                f"[name, p, q] applies the gate to the qubits on p and q in that order)")
    else:
        what = "not a gate of the circuit"
    raise RoutingError(
        "extra", f"op #{i} ({name} {p} {q}) is {name} on logical qubits ({a}, {b}), which is "
        f"{what} (no extra gates: only the circuit's gates and 'swap').", op=i)
