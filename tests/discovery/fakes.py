"""Fakes for discovery tests: a toy problem scored in-process, and a flow-like driver."""

from __future__ import annotations

from typing import Callable, Sequence

from discovery.edits import ParseError, apply_response
from discovery.strategy import Move, MoveResult, Node, Outcome, Task

TOY = '''"""Toy problem: the score is a known function of two literals."""

# EVOLVE-BLOCK-START
A = 1.0
B = 2.0
# EVOLVE-BLOCK-END


def solve():
    return -((A - 3.7) ** 2 + (B - 0.4) ** 2)
'''

TOY_TASK = Task(
    name="toy",
    description="Choose A and B to maximise -((A - 3.7)**2 + (B - 0.4)**2).",
    direction="maximize",
    entrypoint="solve",
    seed_program=TOY,
    best_known=0.0,
)


def evaluate(ref: int, code: str, sign: float = 1.0) -> Node:
    """Runs the toy program in-process; an exception becomes an 'error' node."""
    namespace: dict = {}
    try:
        exec(compile(code, "candidate.py", "exec"), namespace)
        score = sign * float(namespace["solve"]())
    except Exception as exc:  # noqa: BLE001 - a fake evaluator reports every failure
        return Node(ref=ref, code=code, score=None, status="error", feedback=f"{type(exc).__name__}: {exc}")
    return Node(ref=ref, code=code, score=score, status="ok", feedback=f"solve() = {score:.4f}",
                metrics={"A_B_loss": -score})


def ref_of(move: Move, sample: int) -> int:
    """A ref that depends only on (trajectory, index, sample), never on the order of events."""
    return 1 + move.trajectory * 1_000_000 + move.index * 1_000 + sample


def set_literals(a: float | None = None, b: float | None = None) -> str:
    """A SEARCH/REPLACE response setting A and/or B of the seed's block."""
    edits = []
    if a is not None:
        edits.append(f"<<<<<<< SEARCH\nA = 1.0\n=======\nA = {a!r}\n>>>>>>> REPLACE\n")
    if b is not None:
        edits.append(f"<<<<<<< SEARCH\nB = 2.0\n=======\nB = {b!r}\n>>>>>>> REPLACE\n")
    return "\n".join(edits)


def set_block(a: float, b: float) -> str:
    """A whole-block response setting A and B."""
    return f"```python\n# EVOLVE-BLOCK-START\nA = {a!r}\nB = {b!r}\n# EVOLVE-BLOCK-END\n```\n"


Respond = Callable[[Move, int], str]


def outcomes_for(move: Move, respond: Respond, sign: float = 1.0) -> list[Outcome]:
    """Runs every sample of a move like the flow would: respond, parse, evaluate."""
    out = []
    for s in range(move.samples):
        try:
            code = apply_response(move.parent.code, respond(move, s))
        except ParseError as exc:
            out.append(Outcome(sample=s, node=None, error=str(exc)))
            continue
        out.append(Outcome(sample=s, node=evaluate(ref_of(move, s), code, sign)))
    return out


def run(strategy, respond: Respond, sign: float = 1.0) -> list[tuple[Move, MoveResult]]:
    """Drives a strategy to completion, one batch of moves at a time."""
    history = []
    while not strategy.done():
        moves = strategy.next_moves()
        assert moves, "a strategy that is not done must offer moves when nothing is in flight"
        for move in moves:
            history.append((move, strategy.observe(move, outcomes_for(move, respond, sign))))
    return history


def seed_node(sign: float = 1.0, code: str = TOY) -> Node:
    return evaluate(0, code, sign)


def samples_of(history: Sequence[tuple[Move, MoveResult]]) -> int:
    return sum(move.samples for move, _ in history)
