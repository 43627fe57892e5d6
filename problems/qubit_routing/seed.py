"""Seed program for qubit routing: a trivial layout and greedy shortest-path SWAPs.

route(circuit, coupling) gets plain data:
  circuit  = {"num_qubits": n, "gates": [[name, a, b], ...]}  two-qubit gates, logical qubits
  coupling = {"num_qubits": m, "edges": [[p, q], ...]}         undirected, physical qubits
and returns {"layout": [physical qubit of logical 0, 1, ...], "ops": [[name, p, q], ...]}, the
routed program on physical qubits, where ["swap", p, q] exchanges what p and q hold.
"""

from collections import deque


# EVOLVE-BLOCK-START
def shortest_path(adjacency, source, target):
    """A shortest path source -> target (list of physical qubits), by breadth-first search."""
    parent = {source: None}
    queue = deque([source])
    while queue:
        u = queue.popleft()
        if u == target:
            break
        for v in adjacency[u]:
            if v not in parent:
                parent[v] = u
                queue.append(v)
    path = [target]
    while parent[path[-1]] is not None:
        path.append(parent[path[-1]])
    return path[::-1]


def route(circuit, coupling):
    """Places logical qubit i on physical qubit i, then executes the gates in program order;
    before a gate whose qubits are not adjacent, SWAPs its first qubit along a shortest path
    until it sits next to the second."""
    n = circuit["num_qubits"]
    m = coupling["num_qubits"]
    adjacency = [set() for _ in range(m)]
    for p, q in coupling["edges"]:
        adjacency[p].add(q)
        adjacency[q].add(p)

    layout = list(range(n))  # trivial initial layout
    position = list(layout)  # logical -> physical, updated by every SWAP
    occupant = [None] * m  # physical -> logical (None = free)
    for logical, physical in enumerate(position):
        occupant[physical] = logical
    ops = []

    def swap(p, q):
        ops.append(["swap", p, q])
        a, b = occupant[p], occupant[q]
        occupant[p], occupant[q] = b, a
        if a is not None:
            position[a] = q
        if b is not None:
            position[b] = p

    for name, a, b in circuit["gates"]:
        if position[b] not in adjacency[position[a]]:
            path = shortest_path(adjacency, position[a], position[b])
            for step in path[1:-1]:  # walk a up to the neighbour of b
                swap(position[a], step)
        ops.append([name, position[a], position[b]])
    return {"layout": layout, "ops": ops}
# EVOLVE-BLOCK-END
