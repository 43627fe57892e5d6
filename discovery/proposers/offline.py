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
"""

from __future__ import annotations

import dataclasses
import io
import keyword
import math
import random
import time
import tokenize
from typing import Sequence

from discovery.edits import EVOLVE_END, EVOLVE_START, ParseError, apply_response, split_program
from discovery.proposers.base import Proposal
from discovery.strategy import Move, Node, seed_for

_MAX_LIST = 64  # longest list literal treated as a tunable vector
_SKIPPED = (tokenize.COMMENT, tokenize.NL)
_CLOSERS = (")", "]", "}")


@dataclasses.dataclass(frozen=True)
class _Number:
    """A numeric literal of the block: [start, end) offsets (a unary minus included)."""

    start: int
    end: int
    value: float
    is_int: bool


@dataclasses.dataclass(frozen=True)
class _Vector:
    """A list or tuple literal holding only numbers."""

    start: int
    end: int
    items: tuple[_Number, ...]
    is_tuple: bool


@dataclasses.dataclass(frozen=True)
class _Change:
    """Replace block[start:end] by text."""

    start: int
    end: int
    text: str
    note: str


@dataclasses.dataclass(frozen=True)
class _Block:
    """An evolve block with its literals and token structure."""

    text: str
    numbers: tuple[_Number, ...]
    vectors: tuple[_Vector, ...]
    shape: tuple[tuple[int, str], ...]  # token types and strings, numbers blanked


def _tokens(code: str, begin: int, end: int) -> list[tuple[tokenize.TokenInfo, int, int]]:
    """Tokens of `code` lying in [begin, end), with their offsets relative to begin."""
    line_starts = [0]
    for line in code.splitlines(keepends=True):
        line_starts.append(line_starts[-1] + len(line))
    out = []
    for tok in tokenize.generate_tokens(io.StringIO(code).readline):
        if tok.type in (tokenize.ENDMARKER, tokenize.INDENT, tokenize.DEDENT):
            continue
        a = line_starts[tok.start[0] - 1] + tok.start[1]
        b = line_starts[tok.end[0] - 1] + tok.end[1]
        if a >= begin and b <= end:
            out.append((tok, a - begin, b - begin))
    return out


def _parse_number(text: str) -> tuple[float, bool] | None:
    t = text.replace("_", "").lower()
    if t.endswith("j") or t.startswith(("0x", "0o", "0b")):
        return None
    if any(c in t for c in ".e"):
        return float(t), False
    return int(t), True


def _is_unary_context(prev: tokenize.TokenInfo | None) -> bool:
    if prev is None or prev.type in (tokenize.NEWLINE, tokenize.NL):
        return True
    if prev.type == tokenize.OP:
        return prev.string not in _CLOSERS
    return prev.type == tokenize.NAME and keyword.iskeyword(prev.string) and prev.string not in (
        "True",
        "False",
        "None",
    )


def _is_subscript(sig, j: int) -> bool:
    """True when sig[j] is a '[' opening a subscript (after a name or a closing bracket)."""
    if j < 1 or sig[j][0].string != "[":
        return False
    prev = sig[j - 1][0]
    return prev.string in _CLOSERS or (
        prev.type == tokenize.NAME and not keyword.iskeyword(prev.string)
    )


def analyse_block(code: str) -> _Block:
    """Finds the numeric literals, number-only list/tuple literals and token shape of the
    evolve block of `code`. Raises ParseError (no markers) or tokenize errors."""
    split = split_program(code)
    begin = len(split.prefix)
    toks = _tokens(code, begin, begin + len(split.block))
    sig = [(t, a, b) for t, a, b in toks if t.type not in _SKIPPED]
    numbers: list[_Number] = []
    number_at: dict[int, _Number] = {}  # index in sig -> number (with its unary minus)
    for i, (tok, a, b) in enumerate(sig):
        if tok.type != tokenize.NUMBER:
            continue
        parsed = _parse_number(tok.string)
        if parsed is None:
            continue
        value, is_int = parsed
        prev = sig[i - 1][0] if i >= 1 else None
        if is_int and _is_subscript(sig, i - 1):
            continue  # an index such as x[0]: changing it rarely means anything
        if prev is not None and prev.type == tokenize.OP and prev.string == "-":
            if _is_unary_context(sig[i - 2][0] if i >= 2 else None):
                a, value = sig[i - 1][1], -value
        num = _Number(start=a, end=b, value=value, is_int=is_int)
        numbers.append(num)
        number_at[i] = num
    vectors: list[_Vector] = []
    stack: list[int] = []
    for i, (tok, _, _) in enumerate(sig):
        if tok.type != tokenize.OP:
            continue
        if tok.string in ("(", "[", "{"):
            stack.append(i)
        elif tok.string in _CLOSERS and stack:
            j = stack.pop()
            vec = _vector(sig, j, i, number_at)
            if vec is not None:
                vectors.append(vec)
    shape = tuple(
        (t.type, "#" if t.type == tokenize.NUMBER else t.string) for t, _, _ in sig
    )
    return _Block(split.block, tuple(numbers), tuple(vectors), shape)


def _vector(sig, j: int, i: int, number_at: dict[int, _Number]) -> _Vector | None:
    opener = sig[j][0].string
    if opener not in ("(", "["):
        return None
    prev = sig[j - 1][0] if j >= 1 else None
    if prev is not None and (
        prev.string in _CLOSERS
        or (prev.type == tokenize.NAME and not keyword.iskeyword(prev.string))
        or prev.type in (tokenize.NUMBER, tokenize.STRING)
    ):
        return None  # a call or a subscript, not a literal
    inner = sig[j + 1 : i]
    items = [number_at[k] for k in range(j + 1, i) if k in number_at]
    allowed = all(
        t.type == tokenize.NUMBER or (t.type == tokenize.OP and t.string in (",", "-"))
        for t, _, _ in inner
    )
    numbers_in = sum(1 for t, _, _ in inner if t.type == tokenize.NUMBER)
    commas = sum(1 for t, _, _ in inner if t.string == ",")
    if not allowed or not items or len(items) != numbers_in or len(items) > _MAX_LIST:
        return None
    if opener == "(" and commas == 0:
        return None  # a parenthesised number, not a tuple
    return _Vector(sig[j][1], sig[i][2], tuple(items), opener == "(")


def format_number(value: float, is_int: bool) -> str:
    """Python literal text for a value (floats keep a '.' or an exponent)."""
    if is_int:
        return str(int(value))
    text = f"{value:.8g}"
    if not any(c in text for c in ".en"):
        text += ".0"
    return text


def _perturb_float(value: float, rng: random.Random) -> float:
    scale = rng.choice((0.01, 0.03, 0.1, 0.3, 1.0))
    if value == 0:
        return rng.gauss(0.0, rng.choice((1e-3, 1e-2, 0.1, 1.0)))
    if rng.random() < 0.5:
        return value * math.exp(rng.gauss(0.0, scale))
    new = value + rng.gauss(0.0, scale * abs(value))
    return -new if (new < 0) != (value < 0) else new  # reflect to keep the sign


def _perturb_int(value: int, rng: random.Random) -> int:
    if rng.random() < 0.7:
        step = rng.choice((1, 1, 1, 2, 3))
    else:
        step = max(1, round(abs(value) * rng.choice((0.1, 0.25, 0.5))))
    new = value + step if rng.random() < 0.5 else value - step
    if value >= 1:
        new = max(1, new)
    elif value == 0:
        new = max(0, new)
    else:
        new = min(-1, new)
    return new if new != value else value + (step if value >= 0 else -step)


def perturb(value: float, is_int: bool, rng: random.Random) -> float:
    """A nearby value of the same kind and sign."""
    return _perturb_int(int(value), rng) if is_int else _perturb_float(value, rng)


def _scalar_change(block: _Block, num: _Number, rng: random.Random) -> _Change:
    old = block.text[num.start : num.end]
    new = format_number(perturb(num.value, num.is_int, rng), num.is_int)
    return _Change(num.start, num.end, new, f"{old} -> {new}")


def _vector_change(block: _Block, vec: _Vector, rng: random.Random) -> _Change:
    values = [(n.value, n.is_int) for n in vec.items]
    op = rng.choice(("jitter", "extend", "shorten")) if len(values) < _MAX_LIST else "shorten"
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


def _recombine(block: _Block, other: _Block, rng: random.Random) -> list[_Change]:
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
            text = self.respond(move.parent.code, move.inspirations, rng)
        except (ParseError, tokenize.TokenError, SyntaxError, ValueError) as exc:
            error = f"offline proposer: {exc}"
        return Proposal(
            text=text,
            model=self.model,
            latency_s=time.perf_counter() - t0,
            error=error,
            finish_reason="stop" if text else "error",
        )

    def respond(self, parent_code: str, inspirations: Sequence[Node], rng: random.Random) -> str:
        """The response text for one sample; raises ValueError when nothing can be mutated."""
        block = analyse_block(parent_code)
        if not block.numbers:
            raise ValueError("the evolve block has no numeric literal to mutate")
        for _ in range(8):
            changes = self._changes(block, inspirations, rng)
            new_block = _apply(block.text, changes)
            if changes and new_block != block.text:
                return self._render(parent_code, block, changes, new_block, rng)
        raise ValueError("no mutation changed the evolve block")

    def _changes(
        self, block: _Block, inspirations: Sequence[Node], rng: random.Random
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
        block: _Block,
        changes: Sequence[_Change],
        new_block: str,
        rng: random.Random,
    ) -> str:
        split = split_program(parent_code)
        child = split.join(new_block)
        notes = "\n".join(f"- {c.note}" for c in sorted(changes, key=lambda c: c.start))
        head = f"Offline mutation of {len(changes)} literal site(s):\n{notes}\n\n"
        if rng.random() >= self.p_rewrite:
            edits = _search_replace(block.text, changes)
            if edits is not None:
                text = head + edits
                try:
                    if apply_response(parent_code, text) == child:
                        return text
                except ParseError:
                    pass
        fenced = f"```python\n{EVOLVE_START}\n{new_block}{EVOLVE_END}\n```\n"
        return head + fenced


def _line_of(line_starts: list[int], offset: int) -> int:
    lo, hi = 0, len(line_starts) - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if line_starts[mid] <= offset:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _search_replace(text: str, changes: Sequence[_Change]) -> str | None:
    """SEARCH/REPLACE edits turning block `text` into `_apply(text, changes)`, each edit's
    SEARCH lines unique in the block; None when that is impossible."""
    lines = text.splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))
    groups = sorted(
        [_line_of(starts, c.start), _line_of(starts, max(c.start, c.end - 1))] for c in changes
    )
    plain = [line.rstrip("\n") for line in lines]

    def unique(a: int, b: int) -> bool:
        window = plain[a : b + 1]
        m = len(window)
        return sum(plain[i : i + m] == window for i in range(len(plain) - m + 1)) == 1

    while True:
        merged: list[list[int]] = []
        for a, b in groups:
            if merged and a <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        grown = False
        for g in merged:
            while not unique(g[0], g[1]):
                if g[0] == 0 and g[1] == len(lines) - 1:
                    return None
                if g[0] > 0:
                    g[0] -= 1
                if not unique(g[0], g[1]) and g[1] < len(lines) - 1:
                    g[1] += 1
                grown = True
        groups = merged
        if not grown:
            break
    out = []
    for a, b in groups:
        lo, hi = starts[a], starts[b + 1]
        inside = [
            _Change(c.start - lo, c.end - lo, c.text, c.note)
            for c in changes
            if lo <= c.start < hi
        ]
        old = text[lo:hi]
        new = _apply(old, inside)
        out.append(
            "<<<<<<< SEARCH\n"
            + old
            + ("" if old.endswith("\n") else "\n")
            + "=======\n"
            + new
            + ("" if new.endswith("\n") or not new else "\n")
            + ">>>>>>> REPLACE\n"
        )
    return "\n".join(out)
