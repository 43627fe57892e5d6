"""Benchmark instances for qubit routing, generated deterministically by trusted code.

Plain data only (no quantum SDK): a circuit is {"num_qubits": n, "gates": [[name, a, b], ...]}
holding only its two-qubit gates, in program order, on logical qubits 0..n-1; a coupling map is
{"num_qubits": m, "edges": [[p, q], ...]}, undirected, on physical qubits 0..m-1.

Single-qubit gates are left out on purpose: they never need routing, and dropping them changes
neither which two-qubit gates depend on which (two gates sharing a qubit stay ordered along that
qubit's wire) nor the number of SWAPs a router needs. Gate names are "cx", "cz", "cp" and "rzz";
"swap" is reserved for the SWAPs a router inserts, and no circuit here contains one.

A case is one circuit on one coupling map; the search suite and the held-out suite use the same
three coupling maps (heavy-hex 25, grid 5x5, line 20) with different circuits (other seeds and
sizes) so a router tuned to the search circuits can be checked on circuits it never saw.
"""

from __future__ import annotations

import dataclasses
import random
from collections import deque
from functools import lru_cache

Gate = tuple[str, int, int]
GATE_NAMES = ("cx", "cz", "cp", "rzz")


@dataclasses.dataclass(frozen=True)
class Circuit:
    name: str
    num_qubits: int
    gates: tuple[Gate, ...]

    def as_data(self) -> dict:
        """What the candidate receives: {"num_qubits": n, "gates": [[name, a, b], ...]}."""
        return {"num_qubits": self.num_qubits, "gates": [list(g) for g in self.gates]}


@dataclasses.dataclass(frozen=True)
class Coupling:
    name: str
    num_qubits: int
    edges: tuple[tuple[int, int], ...]

    def as_data(self) -> dict:
        """What the candidate receives: {"num_qubits": m, "edges": [[p, q], ...]}."""
        return {"num_qubits": self.num_qubits, "edges": [list(e) for e in self.edges]}

    @property
    def edge_set(self) -> frozenset[tuple[int, int]]:
        return _edge_set(self.edges)

    @property
    def diameter(self) -> int:
        return _diameter(self.num_qubits, self.edges)


@dataclasses.dataclass(frozen=True)
class Case:
    circuit: Circuit
    coupling: Coupling

    @property
    def name(self) -> str:
        return f"{self.circuit.name}@{self.coupling.name}"


@lru_cache(maxsize=None)
def _edge_set(edges: tuple[tuple[int, int], ...]) -> frozenset[tuple[int, int]]:
    return frozenset(edges) | frozenset((q, p) for p, q in edges)


@lru_cache(maxsize=None)
def _diameter(m: int, edges: tuple[tuple[int, int], ...]) -> int:
    adjacency = [[] for _ in range(m)]
    for p, q in edges:
        adjacency[p].append(q)
        adjacency[q].append(p)
    worst = 0
    for source in range(m):
        dist = [-1] * m
        dist[source] = 0
        queue = deque([source])
        while queue:
            u = queue.popleft()
            for v in adjacency[u]:
                if dist[v] < 0:
                    dist[v] = dist[u] + 1
                    queue.append(v)
        if min(dist) < 0:
            raise ValueError("coupling map is not connected")
        worst = max(worst, max(dist))
    return worst


# --- coupling maps ---------------------------------------------------------------------------


def heavy_hex(rows: int = 3, cols: int = 7) -> Coupling:
    """An IBM-like heavy-hex lattice: `rows` lines of `cols` qubits; between row r and r+1 a
    bridge qubit joins the two rows at every 4th column (offset 0 for even r, 2 for odd r).
    Numbered as IBM numbers its devices: a row, then the bridges below it, then the next row.
    Every qubit has degree <= 3 and every cell is a 12-qubit heavy hexagon."""
    edges: list[tuple[int, int]] = []
    row_start: list[int] = []
    bridges: list[list[tuple[int, int]]] = []  # per gap: (bridge qubit, column)
    index = 0
    for r in range(rows):
        row_start.append(index)
        edges.extend((index + c, index + c + 1) for c in range(cols - 1))
        index += cols
        if r < rows - 1:
            gap = []
            for c in range(0 if r % 2 == 0 else 2, cols, 4):
                gap.append((index, c))
                index += 1
            bridges.append(gap)
    for r, gap in enumerate(bridges):
        for bridge, c in gap:
            edges.append((row_start[r] + c, bridge))
            edges.append((bridge, row_start[r + 1] + c))
    return Coupling(f"heavy_hex_{index}", index, tuple(sorted(edges)))


def grid(rows: int = 5, cols: int = 5) -> Coupling:
    """A rows x cols square lattice, qubit r * cols + c."""
    edges = [(r * cols + c, r * cols + c + 1) for r in range(rows) for c in range(cols - 1)]
    edges += [(r * cols + c, (r + 1) * cols + c) for r in range(rows - 1) for c in range(cols)]
    return Coupling(f"grid_{rows}x{cols}", rows * cols, tuple(sorted(edges)))


def line(n: int = 20) -> Coupling:
    """n qubits in a line."""
    return Coupling(f"line_{n}", n, tuple((i, i + 1) for i in range(n - 1)))


# --- circuits (two-qubit gates only) ---------------------------------------------------------


def qft(n: int) -> Circuit:
    """Quantum Fourier transform on n qubits: the controlled phases cp(j, i) for i < j, in
    textbook order (the Hadamards and the final qubit reversal are not two-qubit gates)."""
    gates = [("cp", j, i) for i in range(n) for j in range(i + 1, n)]
    return Circuit(f"qft_{n}", n, tuple(gates))


def _toffoli(a: int, b: int, c: int) -> list[Gate]:
    """The CNOTs of the standard 6-CNOT Toffoli decomposition (controls a, b; target c)."""
    return [("cx", b, c), ("cx", a, c), ("cx", b, c), ("cx", a, c), ("cx", a, b), ("cx", a, b)]


def ripple_adder(bits: int) -> Circuit:
    """Cuccaro ripple-carry adder of two `bits`-bit registers: qubits c0, then a_i, b_i
    interleaved (a_i = 1 + 2i, b_i = 2 + 2i), then the carry-out z; 2 * bits + 2 qubits.
    MAJ(x, y, z) = cx(z, y), cx(z, x), ccx(x, y, z); UMA(x, y, z) = ccx(x, y, z), cx(z, x),
    cx(x, y); Toffolis use the 6-CNOT decomposition."""

    def a(i: int) -> int:
        return 1 + 2 * i

    def b(i: int) -> int:
        return 2 + 2 * i

    z = 2 * bits + 1
    gates: list[Gate] = []

    def maj(x: int, y: int, w: int) -> None:
        gates.extend([("cx", w, y), ("cx", w, x)] + _toffoli(x, y, w))

    def uma(x: int, y: int, w: int) -> None:
        gates.extend(_toffoli(x, y, w) + [("cx", w, x), ("cx", x, y)])

    carries = [0] + [a(i) for i in range(bits - 1)]
    for i in range(bits):
        maj(carries[i], b(i), a(i))
    gates.append(("cx", a(bits - 1), z))
    for i in reversed(range(bits)):
        uma(carries[i], b(i), a(i))
    return Circuit(f"adder_{bits}", 2 * bits + 2, tuple(gates))


def ghz_star(n: int, seed: int) -> Circuit:
    """GHZ state preparation by fan-out: cx(0, t) for every other qubit t, in a seeded order."""
    targets = list(range(1, n))
    random.Random(seed).shuffle(targets)
    return Circuit(f"ghz_{n}_s{seed}", n, tuple(("cx", 0, t) for t in targets))


def _random_regular_graph(n: int, degree: int, rng: random.Random) -> list[tuple[int, int]]:
    """A simple random `degree`-regular graph on n nodes (pairing model with restarts)."""
    while True:
        stubs = [v for v in range(n) for _ in range(degree)]
        rng.shuffle(stubs)
        edges = set()
        ok = True
        for i in range(0, len(stubs), 2):
            u, v = sorted((stubs[i], stubs[i + 1]))
            if u == v or (u, v) in edges:
                ok = False
                break
            edges.add((u, v))
        if ok:
            return sorted(edges)


def qaoa(n: int, layers: int, seed: int, degree: int = 3) -> Circuit:
    """QAOA-like MaxCut circuit on a random `degree`-regular graph: `layers` rounds of rzz on
    every edge (edge order shuffled per round; the mixers are single-qubit and left out)."""
    rng = random.Random(seed)
    edges = _random_regular_graph(n, degree, rng)
    gates: list[Gate] = []
    for _ in range(layers):
        order = edges[:]
        rng.shuffle(order)
        gates.extend(("rzz", u, v) for u, v in order)
    return Circuit(f"qaoa_{n}_p{layers}_s{seed}", n, tuple(gates))


def random_cx(n: int, layers: int, seed: int) -> Circuit:
    """`layers` layers of CNOTs on a random perfect matching of the qubits (random directions)."""
    rng = random.Random(seed)
    gates: list[Gate] = []
    for _ in range(layers):
        qubits = list(range(n))
        rng.shuffle(qubits)
        for i in range(0, n - 1, 2):
            gates.append(("cx", qubits[i], qubits[i + 1]))
    return Circuit(f"random_cx_{n}_l{layers}_s{seed}", n, tuple(gates))


# --- suites ----------------------------------------------------------------------------------

COUPLINGS = (heavy_hex(3, 7), grid(5, 5), line(20))


def _cases(circuits: list[Circuit]) -> tuple[Case, ...]:
    return tuple(
        Case(circuit, coupling)
        for circuit in circuits
        for coupling in COUPLINGS
        if circuit.num_qubits <= coupling.num_qubits
    )


@lru_cache(maxsize=None)
def search_suite() -> tuple[Case, ...]:
    """The cases every search evaluation runs (6 circuits x 3 coupling maps)."""
    return _cases([
        qft(12),
        ripple_adder(5),
        ghz_star(16, seed=1),
        qaoa(12, layers=2, seed=1),
        qaoa(16, layers=1, seed=2),
        random_cx(14, layers=8, seed=1),
    ])


@lru_cache(maxsize=None)
def holdout_suite() -> tuple[Case, ...]:
    """Held-out cases (other sizes and seeds), scored only with split="holdout"."""
    return _cases([
        qft(14),
        ripple_adder(7),
        ghz_star(20, seed=11),
        qaoa(14, layers=2, seed=11),
        qaoa(18, layers=1, seed=12),
        random_cx(16, layers=8, seed=11),
    ])


def suite(split: str) -> tuple[Case, ...]:
    if split == "search":
        return search_suite()
    if split == "holdout":
        return holdout_suite()
    raise ValueError(f"unknown split {split!r}; expected 'search' or 'holdout'")
