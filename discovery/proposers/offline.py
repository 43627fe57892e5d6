"""The offline proposer: mutates numeric literals of the evolve block, with no model and no network.

It is the embedded default (a campaign runs on a fresh machine) and the no-LLM ablation. Each
response is a function of `seed_for(move.seed, sample)` only, and is written in the same edit
format an LLM uses (SEARCH/REPLACE edits, now and then a whole rewritten block in a fence), so
`discovery.edits.apply_response` rebuilds the program exactly as it would for a model.

One response makes one to three changes to the parent's evolve block:
- a scalar literal is perturbed: floats by log-normal (multiplicative) or additive noise of a
  random scale, keeping their sign; ints by small steps, never crossing below 1 when positive
  (they tend to be sizes and counts) nor below 0 when zero;
- a small list or tuple of numbers is jittered, extended by one element, or shortened by one;
- or literals are recombined: when an inspiration's evolve block has the same token structure
  as the parent's, some of its literal values are copied (or blended) in at the same positions.

Other kinds of move:
- "diverge" (ExIt): the offline stand-in for "take a substantially different approach" is a
  large jump: about half of all literal sites (at least one) are perturbed three times over.
- a move with `keep_prefix` (an R^3L location pivot): only literals after the kept lines are
  changed, so the kept lines stay verbatim.
- a "reflect" text move (R^3L): a heuristic reflection in the JSON the strategy asks for,
  built from the episode facts in `move.context` (discovery.reflection.offline_reflection).
  It has no insight a model would have; it makes the reflect/retry machinery run offline.
"""

from __future__ import annotations

import dataclasses
import random
import time
import tokenize
from typing import Sequence

from discovery.edits import (
    EVOLVE_END,
    EVOLVE_START,
    ParseError,
    apply_response,
    render_edits,
    split_program,
)
from discovery.literals import (
    MAX_VECTOR,
    BlockLiterals,
    NumberLiteral,
    VectorLiteral,
    analyse_block,
    format_number,
    perturb,
)
from discovery.proposers.base import Proposal
from discovery.strategy import Move, Node, seed_for


@dataclasses.dataclass(frozen=True)
class _Change:
    """Replace block[start:end] by text."""

    start: int
    end: int
    text: str
    note: str


def _scalar_change(block: BlockLiterals, num: NumberLiteral, rng: random.Random) -> _Change:
    old = block.text[num.start : num.end]
    new = format_number(perturb(num.value, num.is_int, rng), num.is_int)
    return _Change(num.start, num.end, new, f"{old} -> {new}")


def _vector_change(block: BlockLiterals, vec: VectorLiteral, rng: random.Random) -> _Change:
    values = [(n.value, n.is_int) for n in vec.items]
    op = rng.choice(("jitter", "extend", "shorten")) if len(values) < MAX_VECTOR else "shorten"
    if op == "shorten" and len(values) <= 1:
        op = "extend"
    if op == "jitter":
        values = [(perturb(v, i, rng), i) for v, i in values]
    elif op == "extend":
        at = rng.randrange(len(values) + 1)
        left, right = values[max(at - 1, 0)], values[min(at, len(values) - 1)]
        is_int = left[1] and right[1]
        mid = (left[0] + right[0]) / 2
        values.insert(at, (perturb(round(mid) if is_int else mid, is_int, rng), is_int))
    else:
        del values[rng.randrange(len(values))]
    items = ", ".join(format_number(v, i) for v, i in values)
    open_, close = ("(", ")") if vec.is_tuple else ("[", "]")
    text = open_ + items + ("," if vec.is_tuple and len(values) == 1 else "") + close
    note = f"{op} a {'tuple' if vec.is_tuple else 'list'} of {len(vec.items)} numbers"
    return _Change(vec.start, vec.end, text, note)


def _recombine(block: BlockLiterals, other: BlockLiterals, rng: random.Random) -> list[_Change]:
    pairs = [
        (a, b) for a, b in zip(block.numbers, other.numbers) if a.value != b.value
    ]
    chosen = [p for p in pairs if rng.random() < 0.5] or ([rng.choice(pairs)] if pairs else [])
    changes = []
    for a, b in chosen:
        if rng.random() < 0.75:
            text = other.text[b.start : b.end]
        else:  # blend between the two values, past the inspiration now and then
            u = rng.uniform(0.0, 1.5)
            value = a.value + u * (b.value - a.value)
            is_int = a.is_int and b.is_int
            text = format_number(round(value) if is_int else value, is_int)
        old = block.text[a.start : a.end]
        if text != old:
            changes.append(_Change(a.start, a.end, text, f"{old} -> {text} (recombined)"))
    return changes


def _overlaps(change: _Change, chosen: Sequence[_Change]) -> bool:
    return any(change.start < c.end and c.start < change.end for c in chosen)


def _apply(text: str, changes: Sequence[_Change]) -> str:
    for c in sorted(changes, key=lambda c: c.start, reverse=True):
        text = text[: c.start] + c.text + text[c.end :]
    return text


@dataclasses.dataclass
class OfflineProposer:
    """Mutates and recombines numeric literals; answers in the LLM edit format.

    Attributes:
      p_rewrite: probability of answering with the whole rewritten block in a fence.
      p_recombine: probability of recombining with an inspiration when one matches.
      p_vector: probability that a change works on a list/tuple literal when there is one.
      max_changes: at most this many literal changes per response.
    """

    p_rewrite: float = 0.1
    p_recombine: float = 0.3
    p_vector: float = 0.25
    max_changes: int = 3
    name: str = "offline"
    model: str = "offline"

    def propose(self, move: Move, sample: int) -> Proposal:
        """One response for sample `sample` of `move`; a Proposal with an error if none."""
        t0 = time.perf_counter()
        rng = random.Random(seed_for(move.seed, sample))
        text, error = "", ""
        try:
            if move.answer == "text":
                text = self.reflect(move)
            else:
                text = self.respond(
                    move.parent.code,
                    () if move.keep_prefix else move.inspirations,
                    rng,
                    keep_prefix=move.keep_prefix,
                    diverge=move.mode == "diverge",
                )
        except (ParseError, tokenize.TokenError, SyntaxError, ValueError) as exc:
            error = f"offline proposer: {exc}"
        return Proposal(
            text=text,
            model=self.model,
            latency_s=time.perf_counter() - t0,
            error=error,
            finish_reason="stop" if text else "error",
        )

    def reflect(self, move: Move) -> str:
        """A reflection for an R^3L "reflect" move, from the facts in `move.context`."""
        if move.mode != "reflect":
            raise ValueError(f"cannot answer a text move of mode {move.mode!r} without a model")
        from discovery.reflection import offline_reflection

        return offline_reflection(move.context)

    def respond(
        self,
        parent_code: str,
        inspirations: Sequence[Node],
        rng: random.Random,
        *,
        keep_prefix: str = "",
        diverge: bool = False,
    ) -> str:
        """The response text for one sample; raises ValueError when nothing can be mutated.

        With `keep_prefix`, only literals after those kept lines change; with `diverge`, many
        sites change by large factors.
        """
        block = analyse_block(parent_code)
        if keep_prefix:
            if not block.text.startswith(keep_prefix):
                raise ValueError("the kept prefix is not the start of the evolve block")
            cut = len(keep_prefix)
            block = dataclasses.replace(
                block,
                numbers=tuple(n for n in block.numbers if n.start >= cut),
                vectors=tuple(v for v in block.vectors if v.start >= cut),
            )
        if not block.numbers:
            where = " after the kept lines" if keep_prefix else ""
            raise ValueError(f"the evolve block has no numeric literal to mutate{where}")
        for _ in range(8):
            changes = self._diverge(block, rng) if diverge else self._changes(block, inspirations, rng)
            new_block = _apply(block.text, changes)
            if changes and new_block != block.text:
                return self._render(parent_code, block, changes, new_block, rng)
        raise ValueError("no mutation changed the evolve block")

    def _diverge(self, block: BlockLiterals, rng: random.Random) -> list[_Change]:
        """A large jump: about half the scalar sites, each perturbed three times over."""
        sites = [n for n in block.numbers if rng.random() < 0.5] or [rng.choice(block.numbers)]
        changes = []
        for num in sites:
            value = num.value
            for _ in range(3):
                value = perturb(value, num.is_int, rng)
            old = block.text[num.start : num.end]
            new = format_number(value, num.is_int)
            if new != old:
                changes.append(_Change(num.start, num.end, new, f"{old} -> {new} (diverge)"))
        return changes

    def _changes(
        self, block: BlockLiterals, inspirations: Sequence[Node], rng: random.Random
    ) -> list[_Change]:
        if inspirations and rng.random() < self.p_recombine:
            others = [n for n in inspirations if n.code != ""]
            rng.shuffle(others)
            for node in others:
                try:
                    other = analyse_block(node.code)
                except (ParseError, tokenize.TokenError, SyntaxError):
                    continue
                if other.shape == block.shape:
                    changes = _recombine(block, other, rng)
                    if changes:
                        return changes
        roll = rng.random()
        count = 1 if roll < 0.5 else 2 if roll < 0.8 else 3
        count = max(1, min(count, self.max_changes))
        chosen: list[_Change] = []
        for _ in range(count * 3):
            if len(chosen) >= count:
                break
            if block.vectors and rng.random() < self.p_vector:
                change = _vector_change(block, rng.choice(block.vectors), rng)
            else:
                change = _scalar_change(block, rng.choice(block.numbers), rng)
            if not _overlaps(change, chosen) and change.text != block.text[change.start : change.end]:
                chosen.append(change)
        return chosen

    def _render(
        self,
        parent_code: str,
        block: BlockLiterals,
        changes: Sequence[_Change],
        new_block: str,
        rng: random.Random,
    ) -> str:
        split = split_program(parent_code)
        child = split.join(new_block)
        notes = "\n".join(f"- {c.note}" for c in sorted(changes, key=lambda c: c.start))
        head = f"Offline mutation of {len(changes)} literal site(s):\n{notes}\n\n"
        if rng.random() >= self.p_rewrite:  # edits, checked to rebuild exactly this child
            edits = render_edits(block.text, new_block)
            if edits is not None:
                text = head + edits
                try:
                    if apply_response(parent_code, text) == child:
                        return text
                except ParseError:
                    pass
        fenced = f"```python\n{EVOLVE_START}\n{new_block}{EVOLVE_END}\n```\n"
        return head + fenced
