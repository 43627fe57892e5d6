"""R^3L at inference time: multi-turn episodes, reflection on failures, retry from the pivot.

The search runs in rounds. Round r starts from the best ok program found so far (round 0: the
seed) and runs `episodes` base episodes concurrently. An episode is a multi-turn chat of up to
T turns, one proposer call (one sample) per turn: the model improves the start program, sees
its new program's evaluation, improves again, and so on. Every turn edits the latest program
the episode produced (valid or not, so the model can fix it), else the start program.

A base episode fails when it produced no ok program, its best is not strictly better than its
start program, or (with a target) its best is worse than the target. A failed episode is
reflected on: one "text" move asks the model for a JSON reflection (`discovery.reflection`)
naming the turn k where it went wrong. The retry replays turns < k verbatim (no call, no
evaluation: their outcomes are reused), then asks turn k again with exactly the base episode's
turn-k messages plus one user message holding the guidance, and continues to the end. With a
location pivot (turn k's program failed with a traceback inside the evolve block) the retry's
turn k continues that failed program from the line before the failure (`Move.keep_prefix`).
A reflection that does not parse, or says "success", is recorded and skipped (no retry).

Budget (every proposer call counts: turns and reflections), deterministic whatever the timing:
at round start, with R calls remaining, episode e (in order) reserves r_e = min(R, 2T + 1)
calls and R shrinks by r_e; episodes with r_e = 0 do not run. An episode runs min(T, r_e) base
turns, reflects only when at least 2 reserved calls remain after them, and retries with at most
the rest. Unspent calls return to the pool when the round ends, and rounds continue until the
budget is spent, so exactly `budget` calls are made. The next round starts only after every
episode of the round (with its reflection and retry) has finished, so its start program does
not depend on the order in which moves finish.

Numbering: base episode (round r, episode e) is trajectory 2 * (r * episodes + e) and its retry
that + 1; turn t is move index t in either (a retry from pivot k has no moves 0..k-1: those
turns are replayed), and the reflection is move index T of the base trajectory.

Bookkeeping (MoveResult.bookkeeping[0], JSON-serialisable), by "phase":
- "base": round, episode, turn, trajectory, start_ref, start_score, score, status, improved,
  episode_best; on the last base turn also last_turn, episode_result, failed, failure, reflect,
  reflect_skipped ("succeeded" / "budget" / None).
- "reflect": round, episode, trajectory, base_trajectory, reflection (dict or None),
  reflection_error, skipped_reason ("unparsable" / "success" / None), retry_trajectory, pivot,
  pivot_kind, kept_lines, retry_turns.
- "retry": the "base" per-turn fields plus base_trajectory, pivot, pivot_kind ("turn" /
  "location"), kept_lines, guidance, guidance_index (its position in Move.messages),
  distilled_messages (Move.messages without the guidance); on the last retry turn also
  last_turn, beat_base, weight (alpha if beat_base else 1.0), mask (per assistant turn of the
  retry: 0 before the pivot, 1 from it), base_mask (same for the base episode), retry_best,
  base_best.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

from discovery.edits import location_prefix
from discovery.prompts import (
    PromptLimits,
    default_instruction,
    format_score,
    normalise_error,
    program_section,
    system_message,
    task_header,
    truncate,
)
from discovery.reflection import (
    CONTEXT_SCHEMA,
    NO_PROGRAM,
    Reflection,
    ReflectionError,
    guidance_message,
    parse_reflection,
    reflection_messages,
)
from discovery.strategy import BestSoFar, Message, Move, MoveResult, Node, Outcome, Task, seed_for
from discovery.types import OK, better, fitness

FAILED_CALL = "(no answer: the call failed)"


@dataclasses.dataclass(frozen=True)
class R3LParams:
    """R^3L's knobs (the fields of `discovery.config.R3LSettings` plus budget) and prompt bounds.

    Attributes:
      budget: total proposer calls, turns and reflections alike.
      episodes: base episodes per round (run concurrently).
      turns: T, turns per episode.
      alpha: weight stored for a retry that beat its base episode (positive amplification).
      target: an episode whose best is worse than this failed (None: no target).
      location_pivot: continue a pivot program that failed inside the evolve block from the
        line before the failure instead of rewriting the turn.
      max_code_chars: longest program text in a prompt.
      max_feedback_chars: longest evaluator feedback in a prompt.
      max_description_chars: longest task description in a prompt.
    """

    budget: int
    episodes: int = 4
    turns: int = 3
    alpha: float = 3.0
    target: float | None = None
    location_pivot: bool = True
    max_code_chars: int = 20_000
    max_feedback_chars: int = 2_000
    max_description_chars: int = 10_000

    def __post_init__(self) -> None:
        for field in ("budget", "episodes", "turns"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"R3LParams.{field} must be an integer of at least 1")
        if not math.isfinite(self.alpha) or self.alpha < 1.0:
            raise ValueError("R3LParams.alpha must be a finite number of at least 1")
        if self.target is not None and not math.isfinite(self.target):
            raise ValueError("R3LParams.target must be a finite number or None")

    @property
    def limits(self) -> PromptLimits:
        return PromptLimits(
            code_chars=self.max_code_chars,
            feedback_chars=self.max_feedback_chars,
            description_chars=self.max_description_chars,
        )

    @property
    def reservation(self) -> int:
        """Calls one episode may spend: T turns, a reflection and T retry turns."""
        return 2 * self.turns + 1


@dataclasses.dataclass(frozen=True)
class _Turn:
    """One finished turn of an episode: what the model said and what came of it."""

    node: Node | None
    error: str
    text: str
    parent_turn: int  # turn whose program was edited; -1 = start program, or base turn k (location)


@dataclasses.dataclass
class _Episode:
    """A base episode or a retry: its chat so far and its turns."""

    trajectory: int
    phase: str  # "base" | "retry"
    start: Node
    length: int  # turns it will have
    session: int  # turns announced in its messages (the base episode's length)
    messages: list[Message]
    turns: list[_Turn] = dataclasses.field(default_factory=list)
    pivot: int = 0  # first turn generated (0 for a base episode)
    pivot_kind: str = "turn"
    keep_prefix: str = ""
    location: Node | None = None  # the failed program a location pivot continues
    guidance: str = ""
    guidance_index: int | None = None

    @property
    def complete(self) -> bool:
        return len(self.turns) >= self.length

    def latest(self) -> tuple[Node, int]:
        """The program the next turn edits, with its turn index (-1: the start program)."""
        for i in range(len(self.turns) - 1, -1, -1):
            node = self.turns[i].node
            if node is not None:
                return node, i
        return self.start, -1


@dataclasses.dataclass
class _Slot:
    """One base episode of a round with its reservation, reflection and retry."""

    round: int
    episode: int
    reservation: int
    base: _Episode
    spent: int = 0
    reflect_pending: bool = False
    retry: _Episode | None = None
    in_flight: Move | None = None
    finished: bool = False


class R3L:
    """The R^3L strategy (see the module docstring); implements `Strategy`."""

    name = "r3l"
    ordered = False  # episodes of a round share nothing; rounds are separated by a barrier

    def __init__(self, task: Task, params: R3LParams, seed: int) -> None:
        self.task = task
        self.params = params
        self.seed = seed
        self._seed_node: Node | None = None
        self._archive = BestSoFar(task.direction)
        self._round = -1
        self._slots: list[_Slot] = []
        self._in_flight: dict[tuple[int, int], _Slot] = {}
        self._spent = 0
        self._round_starts: list[Node] = []

    # -- helpers -----------------------------------------------------------------------------

    def _fitness(self, node: Node | None) -> float:
        if node is None or node.status != OK:
            return -math.inf
        return fitness(node.score, self.task.direction)

    def _episode_best(self, turns: Sequence[_Turn]) -> Node | None:
        """The best ok node among `turns` (the earliest on ties)."""
        best: Node | None = None
        for turn in turns:
            if turn.node is not None and self._fitness(turn.node) > self._fitness(best):
                best = turn.node
        return best

    def _verdict(self, start: Node, result: Node | None) -> str:
        """Why an episode with best `result` failed ("" when it did not)."""
        if result is None:
            return "no turn produced a valid program"
        if self._fitness(result) <= self._fitness(start):
            return "its best program is not better than the start program"
        target = self.params.target
        if target is not None and better(target, result.score, self.task.direction):
            return (
                f"its best score {format_score(result.score)} is worse than "
                f"the target {format_score(target)}"
            )
        return ""

    @property
    def remaining(self) -> int:
        """Calls not yet issued."""
        return self.params.budget - self._spent

    @property
    def round(self) -> int:
        """Index of the current round (-1 before the first)."""
        return self._round

    def round_start(self, round: int) -> Node:
        """The start program of round `round`."""
        return self._round_starts[round]

    # -- messages ----------------------------------------------------------------------------

    def _opening(self, start: Node, session: int) -> list[Message]:
        limits = self.params.limits
        parts = task_header(self.task, limits)
        parts.append("# Current program (your edits apply to this one)")
        parts.append(program_section("Current program", start, limits))
        session_note = (
            f"This is a session of {session} turns: after each answer you will see how your new "
            "program scored, and you can improve it again."
            if session > 1
            else "You have one answer in this session."
        )
        parts.append("# Instruction\n" + default_instruction(self.task) + "\n" + session_note)
        return [
            {"role": "system", "content": system_message(self.task)},
            {"role": "user", "content": "\n\n".join(parts)},
        ]

    def _evaluation(self, ep: _Episode) -> str:
        """The user message answering the episode's latest turn."""
        limits = self.params.limits
        index = len(ep.turns) - 1
        turn = ep.turns[index]
        parts = [f"# Evaluation of your answer (turn {index + 1} of {ep.session})"]
        if turn.node is None:
            reason = turn.error or "the call failed"
            _, j = ep.latest()
            where = "the start program" if j < 0 else f"your program from turn {j + 1}"
            parts.append(
                "No program could be built from your answer: "
                + truncate(reason.strip(), limits.feedback_chars)
                + f"\nYour next edits still apply to {where}."
            )
        else:
            title = "Your current program (your next edits apply to it)"
            parts.append(program_section(title, turn.node, limits))
        best = self._episode_best(ep.turns)
        parts.append(
            f"Best score in this session so far: {format_score(best.score if best else None)} "
            f"(start program: {format_score(ep.start.score)})."
        )
        goal = "higher" if self.task.direction == "maximize" else "lower"
        if turn.node is None or turn.node.status != OK:
            instruction = (
                f"Fix the problem above, then improve the program so that it scores {goal}. "
                "Change only the evolve block, and answer in one of the two forms."
            )
        else:
            instruction = (
                f"Improve the program again so that it scores {goal}. Change only the evolve block, "
                "and answer in one of the two forms."
            )
        parts.append("# Instruction\n" + instruction)
        return "\n\n".join(parts)

    # -- rounds ------------------------------------------------------------------------------

    def _begin_round(self) -> None:
        self._round += 1
        start = self._archive.node if self._archive.node is not None else self._seed_node
        assert start is not None
        self._round_starts.append(start)
        remaining = self.remaining
        self._slots = []
        T, E = self.params.turns, self.params.episodes
        for e in range(E):
            reservation = min(remaining, self.params.reservation)
            if reservation <= 0:
                break
            remaining -= reservation
            length = min(T, reservation)
            base = _Episode(
                trajectory=2 * (self._round * E + e),
                phase="base",
                start=start,
                length=length,
                session=length,
                messages=self._opening(start, length),
            )
            slot = _Slot(round=self._round, episode=e, reservation=reservation, base=base)
            self._slots.append(slot)

    def _round_finished(self) -> bool:
        return all(slot.finished for slot in self._slots)

    # -- Strategy ------------------------------------------------------------------------------

    def start(self, seed_node: Node) -> None:
        """Receives the evaluated seed program, the start of round 0."""
        if self._seed_node is not None:
            raise RuntimeError("R3L.start called twice")
        self._seed_node = seed_node
        self._archive.offer(seed_node, (-1, -1, -1))

    def next_moves(self) -> list[Move]:
        """The next move of every episode of the round that has none in flight."""
        if self._seed_node is None:
            raise RuntimeError("R3L.start must be called before next_moves")
        if self._round_finished():
            if self.remaining <= 0:
                return []
            self._begin_round()
        moves = []
        for slot in self._slots:
            move = self._next_for(slot)
            if move is not None:
                slot.in_flight = move
                slot.spent += move.samples
                self._spent += move.samples
                self._in_flight[(move.trajectory, move.index)] = slot
                moves.append(move)
        return moves

    def _next_for(self, slot: _Slot) -> Move | None:
        if slot.finished or slot.in_flight is not None:
            return None
        if not slot.base.complete:
            return self._turn_move(slot, slot.base)
        if slot.reflect_pending:
            return self._reflect_move(slot)
        if slot.retry is not None and not slot.retry.complete:
            return self._turn_move(slot, slot.retry)
        return None  # pragma: no cover - a slot in this state is finished

    def _turn_move(self, slot: _Slot, ep: _Episode) -> Move:
        t = len(ep.turns)
        keep = ""
        if ep.phase == "retry" and t == ep.pivot and ep.location is not None:
            parent, keep = ep.location, ep.keep_prefix
        else:
            parent, _ = ep.latest()
        mode = "retry" if ep.phase == "retry" else ("propose" if t == 0 else "refine")
        context: dict[str, Any] = {
            "phase": ep.phase,
            "round": slot.round,
            "episode": slot.episode,
            "turn": t,
            "turns": ep.length,
        }
        if ep.phase == "retry":
            context.update(pivot=ep.pivot, pivot_kind=ep.pivot_kind, base_trajectory=slot.base.trajectory)
        return Move(
            trajectory=ep.trajectory,
            index=t,
            mode=mode,
            messages=tuple(ep.messages),
            parent=parent,
            inspirations=(),
            samples=1,
            seed=seed_for(self.seed, ep.trajectory, t),
            answer="program",
            keep_prefix=keep,
            context=context,
        )

    def _reflect_context(self, slot: _Slot) -> dict[str, Any]:
        base = slot.base
        limits = self.params.limits
        turns = []
        for i, turn in enumerate(base.turns):
            node = turn.node
            if node is None:
                status, feedback, code = NO_PROGRAM, "", None
                error = (turn.error or "the call failed").strip()
            else:
                status, code = node.status, node.code
                error = ""
                if node.status != OK:
                    error = normalise_error(node.feedback) or f"evaluation {node.status}"
                feedback = truncate(node.feedback.strip(), limits.feedback_chars)
            turns.append(
                {
                    "turn": i,
                    "parent": turn.parent_turn,
                    "status": status,
                    "score": node.score if node is not None and node.status == OK else None,
                    "error": error,
                    "feedback": feedback,
                    "code": code,
                }
            )
        result = self._episode_best(base.turns)
        failure = self._verdict(base.start, result)
        return {
            "schema": CONTEXT_SCHEMA,
            "task": self.task.name,
            "direction": self.task.direction,
            "best_known": self.task.best_known,
            "target": self.params.target,
            "round": slot.round,
            "episode": slot.episode,
            "trajectory": base.trajectory,
            "start_ref": base.start.ref,
            "start_score": base.start.score if base.start.status == OK else None,
            "start_status": base.start.status,
            "start_code": base.start.code,
            "turns": turns,
            "result": result.score if result is not None else None,
            "failed": bool(failure),
            "failure": failure,
        }

    def _reflect_move(self, slot: _Slot) -> Move:
        context = self._reflect_context(slot)
        index = self.params.turns
        return Move(
            trajectory=slot.base.trajectory,
            index=index,
            mode="reflect",
            messages=reflection_messages(self.task, context, self.params.limits),
            parent=slot.base.start,
            inspirations=(),
            samples=1,
            seed=seed_for(self.seed, slot.base.trajectory, index),
            answer="text",
            context=context,
        )

    def observe(self, move: Move, outcomes: Sequence[Outcome]) -> MoveResult:
        """Takes the one outcome of a turn or reflection move."""
        slot = self._in_flight.get((move.trajectory, move.index))
        if slot is None or slot.in_flight is None or slot.in_flight.index != move.index or (
            slot.in_flight.trajectory != move.trajectory
        ):
            raise ValueError(f"move {move.trajectory}/{move.index} is not in flight")
        if sorted(o.sample for o in outcomes) != list(range(move.samples)):
            raise ValueError(
                f"move {move.trajectory}/{move.index} needs outcomes for samples 0..{move.samples - 1}"
            )
        move = slot.in_flight  # the move as issued
        outcome = min(outcomes, key=lambda o: o.sample)
        del self._in_flight[(move.trajectory, move.index)]
        slot.in_flight = None
        if move.mode == "reflect":
            bookkeeping = self._observe_reflection(slot, move, outcome)
            return MoveResult(committed=None, bookkeeping={outcome.sample: bookkeeping})
        ep = slot.base if move.trajectory == slot.base.trajectory else slot.retry
        assert ep is not None
        return self._observe_turn(slot, ep, move, outcome)

    def _observe_turn(self, slot: _Slot, ep: _Episode, move: Move, outcome: Outcome) -> MoveResult:
        t = len(ep.turns)
        key = (move.trajectory, move.index, outcome.sample)
        if ep.phase == "retry" and t == ep.pivot and ep.location is not None:
            parent_turn = ep.pivot
        else:
            _, parent_turn = ep.latest()
        before = self._episode_best(ep.turns)
        floor = max(self._fitness(before), self._fitness(ep.start))
        node = outcome.node
        ep.turns.append(
            _Turn(node=node, error=outcome.error, text=outcome.text, parent_turn=parent_turn)
        )
        ep.messages.append({"role": "assistant", "content": outcome.text or FAILED_CALL})
        ep.messages.append({"role": "user", "content": self._evaluation(ep)})
        self._archive.offer(node, key)
        episode_best = self._episode_best(ep.turns)
        info: dict[str, Any] = {
            "phase": ep.phase,
            "round": slot.round,
            "episode": slot.episode,
            "turn": t,
            "trajectory": ep.trajectory,
            "start_ref": ep.start.ref,
            "start_score": ep.start.score,
            "score": node.score if node is not None and node.status == OK else None,
            "status": node.status if node is not None else NO_PROGRAM,
            "improved": self._fitness(node) > floor,
            "episode_best": episode_best.score if episode_best is not None else None,
        }
        if ep.phase == "retry":
            info.update(self._retry_info(slot, ep, move))
        if ep.complete:
            info["last_turn"] = True
            if ep.phase == "base":
                info.update(self._finish_base(slot))
            else:
                info.update(self._finish_retry(slot))
        committed = outcome.sample if node is not None and node.status == OK else None
        return MoveResult(committed=committed, bookkeeping={outcome.sample: info})

    def _retry_info(self, slot: _Slot, ep: _Episode, move: Move) -> dict[str, Any]:
        distilled = [dict(m) for i, m in enumerate(move.messages) if i != ep.guidance_index]
        return {
            "base_trajectory": slot.base.trajectory,
            "pivot": ep.pivot,
            "pivot_kind": ep.pivot_kind,
            "kept_lines": ep.keep_prefix.count("\n"),
            "guidance": ep.guidance,
            "guidance_index": ep.guidance_index,
            "distilled_messages": distilled,
        }

    def _finish_base(self, slot: _Slot) -> dict[str, Any]:
        base = slot.base
        result = self._episode_best(base.turns)
        failure = self._verdict(base.start, result)
        skipped: str | None = None
        if not failure:
            skipped = "succeeded"
        elif slot.reservation - slot.spent < 2:
            skipped = "budget"
        slot.reflect_pending = skipped is None
        slot.finished = not slot.reflect_pending
        return {
            "episode_result": result.score if result is not None else None,
            "failed": bool(failure),
            "failure": failure,
            "reflect": slot.reflect_pending,
            "reflect_skipped": skipped,
        }

    def _observe_reflection(self, slot: _Slot, move: Move, outcome: Outcome) -> dict[str, Any]:
        slot.reflect_pending = False
        base = slot.base
        turns = len(base.turns)
        info: dict[str, Any] = {
            "phase": "reflect",
            "round": slot.round,
            "episode": slot.episode,
            "trajectory": move.trajectory,
            "base_trajectory": base.trajectory,
            "reflection": None,
            "reflection_error": "",
            "skipped_reason": None,
            "retry_trajectory": None,
            "pivot": None,
            "pivot_kind": None,
            "kept_lines": 0,
            "retry_turns": 0,
        }
        reflection: Reflection | None = None
        if not outcome.text.strip() and outcome.error:
            info["reflection_error"] = f"the reflection call failed: {' '.join(outcome.error.split())}"
        else:
            try:
                reflection = parse_reflection(outcome.text, turns)
            except ReflectionError as exc:
                info["reflection_error"] = str(exc)
        if reflection is None:
            info["skipped_reason"] = "unparsable"
            slot.finished = True
            return info
        info["reflection"] = reflection.as_dict()
        if reflection.outcome == "success" or reflection.retry_from is None:
            info["skipped_reason"] = "success"
            slot.finished = True
            return info
        retry = self._make_retry(slot, reflection)
        slot.retry = retry
        info.update(
            retry_trajectory=retry.trajectory,
            pivot=retry.pivot,
            pivot_kind=retry.pivot_kind,
            kept_lines=retry.keep_prefix.count("\n"),
            retry_turns=retry.length - retry.pivot,
        )
        return info

    def _make_retry(self, slot: _Slot, reflection: Reflection) -> _Episode:
        base = slot.base
        k = reflection.retry_from
        assert k is not None and 0 <= k < len(base.turns)
        left = slot.reservation - slot.spent
        new_turns = min(len(base.turns) - k, left)
        assert new_turns >= 1
        pivot_turn = base.turns[k]
        keep, location = "", None
        if self.params.location_pivot and pivot_turn.node is not None and pivot_turn.node.status != OK:
            keep = location_prefix(pivot_turn.node.code, pivot_turn.node.feedback)
            location = pivot_turn.node if keep else None
        guidance = guidance_message(reflection, kept_prefix=keep, pivot=k if keep else None)
        prefix = list(base.messages[: 2 + 2 * k])  # exactly the base episode's turn-k messages
        return _Episode(
            trajectory=base.trajectory + 1,
            phase="retry",
            start=base.start,
            length=k + new_turns,
            session=base.session,
            messages=prefix + [{"role": "user", "content": guidance}],
            turns=list(base.turns[:k]),
            pivot=k,
            pivot_kind="location" if keep else "turn",
            keep_prefix=keep,
            location=location,
            guidance=guidance,
            guidance_index=len(prefix),
        )

    def _finish_retry(self, slot: _Slot) -> dict[str, Any]:
        retry, base = slot.retry, slot.base
        assert retry is not None
        slot.finished = True
        retry_best = self._episode_best(retry.turns)
        base_best = self._episode_best(base.turns)
        if base_best is None:
            beat = retry_best is not None
        else:
            beat = self._fitness(retry_best) > self._fitness(base_best)
        k = retry.pivot
        return {
            "beat_base": beat,
            "weight": float(self.params.alpha) if beat else 1.0,
            "mask": [0 if i < k else 1 for i in range(len(retry.turns))],
            "base_mask": [0 if i < k else 1 for i in range(len(base.turns))],
            "retry_best": retry_best.score if retry_best is not None else None,
            "base_best": base_best.score if base_best is not None else None,
        }

    def done(self) -> bool:
        """True when the whole budget has been issued and every move observed."""
        return self._seed_node is not None and self.remaining <= 0 and not self._in_flight

    def best(self) -> Node | None:
        """The best ok node observed (the seed included); ties go to the earliest move."""
        return self._archive.node

    def total_samples(self) -> int:
        """The budget: every proposer call, turns and reflections."""
        return self.params.budget
