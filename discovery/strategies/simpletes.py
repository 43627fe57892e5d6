"""SimpleTES: C independent chains, each refined L times by best-of-K moves.

Every chain starts at the seed program. A move of chain c shows the chain's best node (the
parent edits apply to), n inspirations chosen by a selector over the chain's own graph, and the
chain's most frequent error messages; K candidates are sampled from that one prompt. All K
count (the budget is exactly C * L * K samples and every failure feeds the error histogram),
but only the best valid one is committed to the chain, as a child of the parent. Every R
commits a chain is cut back to its single best node, and its graph and visit counts restart.

Chains share nothing: a chain's moves depend only on the seed, the campaign seed and its own
outcomes, so the order in which different chains' moves finish changes nothing.
"""

from __future__ import annotations

import collections
import dataclasses
import math
from typing import Any, Sequence

from discovery.prompts import PromptLimits, build_messages, normalise_error
from discovery.selection import GraphNode, Selector, make_selector
from discovery.strategy import BestSoFar, Move, MoveResult, Node, Outcome, Task, move_rng, seed_for
from discovery.types import OK, fitness

_TOP_ERRORS = 10


@dataclasses.dataclass(frozen=True)
class SimpleTESParams:
    """SimpleTES's design tuple and prompt bounds.

    Attributes:
      chains: C, independent chains.
      k: K, candidates sampled per move (only the best is committed).
      steps: L, moves per chain.
      restart_every: R, cut a chain back to its best node every R commits (0 = never).
      inspirations: n, programs shown besides the parent (at most).
      selector: inspiration selector name ("puct" or "elite").
      max_code_chars: longest program text in a prompt.
      max_feedback_chars: longest evaluator feedback in a prompt.
      max_description_chars: longest task description in a prompt.
    """

    chains: int = 4
    k: int = 4
    steps: int = 10
    restart_every: int = 0
    inspirations: int = 4
    selector: str = "puct"
    max_code_chars: int = 20_000
    max_feedback_chars: int = 2_000
    max_description_chars: int = 10_000

    def __post_init__(self) -> None:
        for field in ("chains", "k", "steps"):
            if getattr(self, field) < 1:
                raise ValueError(f"SimpleTESParams.{field} must be at least 1")
        if self.restart_every < 0 or self.inspirations < 0:
            raise ValueError("SimpleTESParams.restart_every and inspirations must be >= 0")
        make_selector(self.selector)  # raises ValueError listing valid names

    @property
    def limits(self) -> PromptLimits:
        return PromptLimits(
            code_chars=self.max_code_chars,
            feedback_chars=self.max_feedback_chars,
            description_chars=self.max_description_chars,
        )


@dataclasses.dataclass
class _Chain:
    """One chain's state: its committed graph, visit counts, errors and progress."""

    index: int
    nodes: dict[int, Node] = dataclasses.field(default_factory=dict)  # commit order
    parents: dict[int, int | None] = dataclasses.field(default_factory=dict)
    visits: dict[int, int] = dataclasses.field(default_factory=dict)
    errors: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    best: int | None = None
    commits: int = 0
    issued: int = 0
    observed: int = 0
    in_flight: Move | None = None

    def reset(self, root: Node) -> None:
        """Makes `root` the chain's only node, with no visits."""
        self.nodes = {root.ref: root}
        self.parents = {root.ref: None}
        self.visits = {}
        self.best = root.ref


class SimpleTES:
    """The SimpleTES strategy (see the module docstring); implements `Strategy`."""

    name = "simpletes"
    ordered = False  # chains share nothing

    def __init__(self, task: Task, params: SimpleTESParams, seed: int) -> None:
        self.task = task
        self.params = params
        self.seed = seed
        self.selector: Selector = make_selector(params.selector)
        self._chains = [_Chain(index=c) for c in range(params.chains)]
        self._archive = BestSoFar(task.direction)
        self._started = False

    # -- helpers -----------------------------------------------------------------------------

    def _fitness(self, node: Node) -> float:
        return fitness(node.score, self.task.direction) if node.status == OK else -math.inf

    def chain_graph(self, chain: int) -> list[GraphNode]:
        """The chain's committed nodes (since its last restart) in commit order."""
        c = self._chains[chain]
        return [
            GraphNode(ref, c.parents[ref], self._fitness(node), c.visits.get(ref, 0))
            for ref, node in c.nodes.items()
        ]

    def chain_best(self, chain: int) -> Node:
        """The best committed node of a chain (the parent of its next move)."""
        c = self._chains[chain]
        assert c.best is not None, "start() has not been called"
        return c.nodes[c.best]

    def chain_errors(self, chain: int) -> list[tuple[str, int]]:
        """The chain's most frequent normalised errors with counts, most frequent first."""
        return self._chains[chain].errors.most_common(_TOP_ERRORS)

    # -- Strategy ------------------------------------------------------------------------------

    def start(self, seed_node: Node) -> None:
        """Makes the evaluated seed the root of every chain."""
        if self._started:
            raise RuntimeError("SimpleTES.start called twice")
        self._started = True
        for chain in self._chains:
            chain.reset(seed_node)
        self._archive.offer(seed_node, (-1, -1, -1))

    def next_moves(self) -> list[Move]:
        """One move per chain that has steps left and no move in flight."""
        if not self._started:
            raise RuntimeError("SimpleTES.start must be called before next_moves")
        moves = []
        for chain in self._chains:
            if chain.in_flight is None and chain.issued < self.params.steps:
                chain.in_flight = self._make_move(chain)
                chain.issued += 1
                moves.append(chain.in_flight)
        return moves

    def _make_move(self, chain: _Chain) -> Move:
        index = chain.issued
        parent = chain.nodes[chain.best]  # type: ignore[index]
        rng = move_rng(self.seed, chain.index, index, "inspirations")
        picks = self.selector.select(self.chain_graph(chain.index), self.params.inspirations + 1, rng)
        inspirations = tuple(chain.nodes[r] for r in picks if r != parent.ref)
        inspirations = inspirations[: self.params.inspirations]
        messages = build_messages(
            self.task, parent, inspirations, self.chain_errors(chain.index), self.params.limits
        )
        return Move(
            trajectory=chain.index,
            index=index,
            mode="propose" if index == 0 else "refine",
            messages=messages,
            parent=parent,
            inspirations=inspirations,
            samples=self.params.k,
            seed=seed_for(self.seed, chain.index, index),
        )

    def observe(self, move: Move, outcomes: Sequence[Outcome]) -> MoveResult:
        """Commits the best valid sample of the move to its chain; all samples are counted."""
        if not 0 <= move.trajectory < len(self._chains):
            raise ValueError(f"move for unknown chain {move.trajectory}")
        chain = self._chains[move.trajectory]
        if chain.in_flight is None or chain.in_flight.index != move.index:
            raise ValueError(f"move {move.trajectory}/{move.index} is not in flight")
        ordered = sorted(outcomes, key=lambda o: o.sample)
        if [o.sample for o in ordered] != list(range(move.samples)):
            raise ValueError(
                f"move {move.trajectory}/{move.index} needs outcomes for samples 0..{move.samples - 1}"
            )
        parent_fitness = self._fitness(move.parent)
        winner: Outcome | None = None
        winner_fitness = -math.inf
        for outcome in ordered:
            node = outcome.node
            if node is None:
                chain.errors[normalise_error(outcome.error) or "no program in the response"] += 1
                continue
            self._archive.offer(node, (move.trajectory, move.index, outcome.sample))
            if node.status != OK:
                chain.errors[normalise_error(node.feedback) or f"evaluation {node.status}"] += 1
            elif winner is None or self._fitness(node) > winner_fitness:
                winner, winner_fitness = outcome, self._fitness(node)
        restarted = False
        if winner is not None and winner.node is not None:
            restarted = self._commit(chain, winner.node, move)
        for ref in (move.parent.ref, *(n.ref for n in move.inspirations)):
            if not restarted and ref in chain.nodes:
                chain.visits[ref] = chain.visits.get(ref, 0) + 1
        chain.in_flight = None
        chain.observed += 1
        best = chain.nodes[chain.best]  # type: ignore[index]
        bookkeeping: dict[int, dict[str, Any]] = {}
        for outcome in ordered:
            node = outcome.node
            reward = None
            if node is not None and node.status == OK and math.isfinite(parent_fitness):
                scale = abs(parent_fitness) if abs(parent_fitness) > 1e-12 else 1.0
                reward = (self._fitness(node) - parent_fitness) / scale
            bookkeeping[outcome.sample] = {
                "reward": reward,
                "committed": winner is not None and outcome.sample == winner.sample,
                "chain_best": best.score,
                "chain_best_ref": best.ref,
                "restarted": restarted,
            }
        return MoveResult(
            committed=winner.sample if winner is not None else None, bookkeeping=bookkeeping
        )

    def _commit(self, chain: _Chain, node: Node, move: Move) -> bool:
        """Adds node under the move's parent; returns True when this commit restarted the chain."""
        if node.ref not in chain.nodes:
            chain.nodes[node.ref] = node
            chain.parents[node.ref] = move.parent.ref if move.parent.ref in chain.nodes else None
        if self._fitness(node) > self._fitness(chain.nodes[chain.best]):  # type: ignore[index]
            chain.best = node.ref
        chain.commits += 1
        every = self.params.restart_every
        if every and chain.commits % every == 0:
            chain.reset(chain.nodes[chain.best])  # type: ignore[index]
            return True
        return False

    def done(self) -> bool:
        """True when every chain has issued and observed all its moves."""
        return all(
            c.observed >= self.params.steps and c.in_flight is None for c in self._chains
        )

    def best(self) -> Node | None:
        """The best ok node observed (the seed included); ties go to the earliest move."""
        return self._archive.node

    def total_samples(self) -> int:
        """C * L * K."""
        return self.params.chains * self.params.steps * self.params.k
