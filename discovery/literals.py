"""Numeric literals of an evolve block: where they are, and nearby values for them.

`analyse_block` tokenizes a program (with the `tokenize` module, so strings and comments are
never mistaken for numbers) and lists, for its evolve block, every decimal numeric literal
(a unary minus included), every list or tuple literal made only of numbers, and the block's
token shape (its tokens with numbers blanked), which tells when two blocks differ only in
their literal values. `perturb` proposes a nearby value of the same kind and sign.
"""

from __future__ import annotations

import dataclasses
import io
import keyword
import math
import random
import tokenize

from discovery.edits import split_program

MAX_VECTOR = 64  # longest list/tuple literal treated as a tunable vector
_SKIPPED = (tokenize.COMMENT, tokenize.NL)
_CLOSERS = (")", "]", "}")

Token = tuple[tokenize.TokenInfo, int, int]  # a token with its [start, end) offsets in the block


@dataclasses.dataclass(frozen=True)
class NumberLiteral:
    """A numeric literal: [start, end) offsets in the block (a unary minus included)."""

    start: int
    end: int
    value: float
    is_int: bool


@dataclasses.dataclass(frozen=True)
class VectorLiteral:
    """A list or tuple literal holding only numbers."""

    start: int
    end: int
    items: tuple[NumberLiteral, ...]
    is_tuple: bool


@dataclasses.dataclass(frozen=True)
class BlockLiterals:
    """An evolve block with its literals and token structure."""

    text: str
    numbers: tuple[NumberLiteral, ...]
    vectors: tuple[VectorLiteral, ...]
    shape: tuple[tuple[int, str], ...]  # token types and strings, numbers blanked


def _tokens(code: str, begin: int, end: int) -> list[Token]:
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


def _is_subscript(sig: list[Token], j: int) -> bool:
    """True when sig[j] is a '[' opening a subscript (after a name or a closing bracket)."""
    if j < 1 or sig[j][0].string != "[":
        return False
    prev = sig[j - 1][0]
    return prev.string in _CLOSERS or (
        prev.type == tokenize.NAME and not keyword.iskeyword(prev.string)
    )


def analyse_block(code: str) -> BlockLiterals:
    """Finds the numeric literals, number-only list/tuple literals and token shape of the
    evolve block of `code`. Raises ParseError (no markers) or tokenize errors."""
    split = split_program(code)
    begin = len(split.prefix)
    toks = _tokens(code, begin, begin + len(split.block))
    sig = [(t, a, b) for t, a, b in toks if t.type not in _SKIPPED]
    numbers: list[NumberLiteral] = []
    number_at: dict[int, NumberLiteral] = {}  # index in sig -> number (with its unary minus)
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
        num = NumberLiteral(start=a, end=b, value=value, is_int=is_int)
        numbers.append(num)
        number_at[i] = num
    vectors: list[VectorLiteral] = []
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
    return BlockLiterals(split.block, tuple(numbers), tuple(vectors), shape)


def _vector(
    sig: list[Token], j: int, i: int, number_at: dict[int, NumberLiteral]
) -> VectorLiteral | None:
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
    if not allowed or not items or len(items) != numbers_in or len(items) > MAX_VECTOR:
        return None
    if opener == "(" and commas == 0:
        return None  # a parenthesised number, not a tuple
    return VectorLiteral(sig[j][1], sig[i][2], tuple(items), opener == "(")


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
