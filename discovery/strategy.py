"""The Strategy interface: a search loop as a pure ask/observe state machine.

A strategy never calls a model, a sandbox or a database. The flow asks it for `Move`s (one
prompt to sample `samples` candidates from), runs them, and hands back one `Outcome` per sample.
Everything a strategy decides is a function of (its config, the campaign seed, the outcomes it
has observed), so a campaign is reproducible, and resuming is replaying the stored outcomes:
the flow re-asks for moves and answers from the database whatever was already done.

Randomness: a strategy derives a fresh `random.Random` for each move from
(seed, trajectory, index) with `move_rng`, never from shared mutable state, so the order in
which concurrent moves finish cannot change what it does next.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any, Mapping, Protocol, Sequence

from discovery.types import Direction

Message = Mapping[str, str]  # {"role": "system"|"user"|"assistant", "content": ...}


@dataclasses.dataclass(frozen=True)
class Task:
    """What a strategy needs to know about a problem (no scorer: strategies never score).

    Attributes:
      name: problem name.
      description: task text for the proposer.
      direction: "maximize" or "minimize".
      entrypoint: function the candidate must define.
      seed_program: full source of the seed program (with evolve-block markers).
      best_known: best-known value, if any (shown in prompts as a target).
    """

    name: str
    description: str
    direction: Direction
    entrypoint: str
    seed_program: str
    best_known: float | None = None


@dataclasses.dataclass(frozen=True)
class Node:
    """A program the strategy knows, with its evaluation summarised.

    Attributes:
      ref: stable id chosen by the caller (the flow uses the Candidate row id).
      code: full program text.
      score: the problem's score, None unless the evaluation was ok.
      status: evaluation status ("ok", "invalid", "error", "timeout", "killed").
      feedback: the evaluator's feedback text.
      metrics: the evaluator's metrics.
    """

    ref: int
    code: str
    score: float | None
    status: str
    feedback: str = ""
    metrics: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Move:
    """One prompt from which `samples` candidates are drawn.

    Attributes:
      trajectory: index of the trajectory (SimpleTES chain) this move extends.
      index: 0-based position of the move in that trajectory; (trajectory, index, sample) is
        the idempotency key of each LLM call.
      mode: what kind of move (propose, refine, diverge, reflect, retry).
      messages: the chat messages sent to an LLM proposer.
      parent: the program edits apply to.
      inspirations: other programs shown in the prompt (the offline proposer recombines them).
      samples: how many candidates to draw from this prompt (K).
      seed: seed for this move; sample s uses seed_for(seed, s).
      answer: what the response must hold: "program" (an edit of `parent`, parsed by the flow
        into a candidate that is evaluated) or "text" (free text such as an R^3L reflection,
        handed back verbatim in `Outcome.text`; no candidate, no evaluation).
      keep_prefix: evolve-block text the new program must start with verbatim (a location
        pivot: the lines before a failing line are kept and the rest is regenerated); "" = none.
      context: structured facts about the move for proposers that cannot read prose (the
        offline proposer) and for the record, e.g. an episode's turn scores for a reflection.
        JSON-serialisable.
    """

    trajectory: int
    index: int
    mode: str
    messages: tuple[Message, ...]
    parent: Node
    inspirations: tuple[Node, ...]
    samples: int
    seed: int
    answer: str = "program"
    keep_prefix: str = ""
    context: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What one sample of a move produced.

    Attributes:
      sample: 0-based sample index within the move.
      node: the evaluated candidate, or None when no program came out (call failed or the
        response did not parse).
      error: why no program came out (becomes feedback), empty otherwise.
      text: the raw response text ("" when the call failed): multi-turn strategies replay it
        verbatim as the assistant turn, and "text" moves (reflections) read it.
    """

    sample: int
    node: Node | None
    error: str = ""
    text: str = ""


@dataclasses.dataclass(frozen=True)
class MoveResult:
    """What the strategy made of a finished move.

    Attributes:
      committed: sample index the strategy committed to the trajectory, or None.
      bookkeeping: per-sample dicts of strategy fields (reward, informativeness, pivot, ...)
        stored with each step.
    """

    committed: int | None
    bookkeeping: Mapping[int, Mapping[str, Any]] = dataclasses.field(default_factory=dict)


class Strategy(Protocol):
    """A search loop. Implementations are deterministic given seed and observed outcomes."""

    name: str
    # True when observe() must see moves in the order next_moves() issued them (a strategy
    # with state shared across moves, such as ExIt's buffer); the flow then holds back
    # finished moves until every earlier one has finished.
    ordered: bool

    def start(self, seed_node: Node) -> None:
        """Receives the evaluated seed program; called once before any move."""

    def next_moves(self) -> list[Move]:
        """Moves that can be issued now (not already in flight); empty when waiting or done."""

    def observe(self, move: Move, outcomes: Sequence[Outcome]) -> MoveResult:
        """Takes every outcome of a move issued by next_moves (sorted by sample)."""

    def done(self) -> bool:
        """True when the budget is spent and no move is in flight."""

    def best(self) -> Node | None:
        """Best node observed so far (by the problem's direction)."""

    def total_samples(self) -> int:
        """The whole budget in samples (candidate proposals), fixed at construction."""


class BestSoFar:
    """The best ok node offered so far (the archive a strategy reports from).

    Ties go to the smallest key (callers use (trajectory, index, sample) or similar, with the
    seed's key smallest), so the answer never depends on the order outcomes arrived in.
    """

    def __init__(self, direction: Direction) -> None:
        self.direction = direction
        self.node: Node | None = None
        self.key: tuple[int, ...] = ()

    def offer(self, node: Node | None, key: tuple[int, ...]) -> bool:
        """Keeps `node` if it is ok and better (or as good with a smaller key); True if kept."""
        from discovery.types import OK, fitness

        if node is None or node.status != OK:
            return False
        if self.node is not None:
            f = fitness(node.score, self.direction)
            g = fitness(self.node.score, self.direction)
            if f < g or (f == g and key >= self.key):
                return False
        self.node, self.key = node, key
        return True


def move_rng(seed: int, trajectory: int, index: int, salt: str = "") -> random.Random:
    """A Random seeded from (seed, trajectory, index, salt), stable across runs and platforms."""
    return random.Random(f"{seed}:{trajectory}:{index}:{salt}")


def seed_for(*parts: Any) -> int:
    """A stable 63-bit integer seed derived from parts."""
    return random.Random(":".join(str(p) for p in parts)).getrandbits(63)
