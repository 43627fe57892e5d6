"""Response parsing and program assembly: from a proposer's text to a full candidate program.

A program has one evolve block, the lines between EVOLVE_START and EVOLVE_END. A response may
change that block and nothing else, in one of two forms:

- a fenced ```python block holding either a whole program (its evolve block is taken, the
  parent's code outside the block is kept exactly) or only the new body of the evolve block;
- one or more SEARCH/REPLACE edits, each matching exactly once inside the parent's block:

      <<<<<<< SEARCH
      old lines
      =======
      new lines
      >>>>>>> REPLACE

Edits are applied in order, each to the block as the previous edits left it. A match is
tried line for line exactly first, then ignoring trailing whitespace (and blank lines at the
edges of the SEARCH text). Every failure raises `ParseError` with a message a model can act on.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import textwrap

EVOLVE_START = "# EVOLVE-BLOCK-START"
EVOLVE_END = "# EVOLVE-BLOCK-END"

_SEARCH_RE = re.compile(r"^\s*<{5,}\s*SEARCH\s*$")
_DIVIDER_RE = re.compile(r"^\s*={5,}\s*$")
_REPLACE_RE = re.compile(r"^\s*>{5,}\s*REPLACE\s*$")
_FENCE_RE = re.compile(r"^\s*```+\s*([A-Za-z0-9_+-]*)\s*$")
_PYTHON_TAGS = ("", "python", "py", "python3")
_PREVIEW_CHARS = 80


class ParseError(ValueError):
    """A response could not be turned into a program; the message is meant for the proposer."""


@dataclasses.dataclass(frozen=True)
class Split:
    """A program cut at its evolve-block markers; `prefix + block + suffix` is the program.

    Attributes:
      prefix: everything up to and including the EVOLVE_START line (with its newline).
      block: the lines between the markers (each ending with a newline), possibly "".
      suffix: the EVOLVE_END line and everything after it.
    """

    prefix: str
    block: str
    suffix: str

    def join(self, block: str | None = None) -> str:
        """The program, with `block` in place of the evolve block when given."""
        return self.prefix + (self.block if block is None else block) + self.suffix


@dataclasses.dataclass(frozen=True)
class Edit:
    """One SEARCH/REPLACE edit, as lines without their newlines."""

    search: tuple[str, ...]
    replace: tuple[str, ...]


def _marker_lines(lines: list[str], marker: str) -> list[int]:
    return [i for i, line in enumerate(lines) if line.strip().startswith(marker)]


def split_program(code: str) -> Split:
    """Cuts `code` at its markers; raises ParseError unless there is exactly one of each, in order."""
    lines = code.splitlines(keepends=True)
    starts, ends = _marker_lines(lines, EVOLVE_START), _marker_lines(lines, EVOLVE_END)
    if len(starts) != 1 or len(ends) != 1:
        raise ParseError(
            f"the program needs exactly one '{EVOLVE_START}' line and one '{EVOLVE_END}' line "
            f"(found {len(starts)} and {len(ends)})"
        )
    start, end = starts[0], ends[0]
    if end < start:
        raise ParseError(f"'{EVOLVE_END}' comes before '{EVOLVE_START}'")
    prefix = "".join(lines[: start + 1])
    return Split(prefix=prefix, block="".join(lines[start + 1 : end]), suffix="".join(lines[end:]))


def check_compiles(code: str) -> None:
    """Raises ParseError naming the line when `code` is not valid Python."""
    try:
        compile(code, "candidate.py", "exec")
    except SyntaxError as exc:
        text = (exc.text or "").strip()
        where = f" at line {exc.lineno}" if exc.lineno else ""
        shown = f": {text[:_PREVIEW_CHARS]}" if text else ""
        raise ParseError(f"the assembled program does not compile: {exc.msg}{where}{shown}") from None
    except ValueError as exc:  # e.g. null bytes in the source
        raise ParseError(f"the assembled program does not compile: {exc}") from None


def parse_edits(response: str) -> list[Edit]:
    """The SEARCH/REPLACE edits in `response`, in order (empty when it has none)."""
    lines = response.splitlines()
    edits: list[Edit] = []
    i = 0
    while i < len(lines):
        if not _SEARCH_RE.match(lines[i]):
            i += 1
            continue
        number = len(edits) + 1
        j = i + 1
        while j < len(lines) and not _DIVIDER_RE.match(lines[j]):
            if _SEARCH_RE.match(lines[j]) or _REPLACE_RE.match(lines[j]):
                break
            j += 1
        if j >= len(lines) or not _DIVIDER_RE.match(lines[j]):
            raise ParseError(f"SEARCH block {number} has no '=======' line after its SEARCH lines")
        k = j + 1
        while k < len(lines) and not _REPLACE_RE.match(lines[k]):
            if _SEARCH_RE.match(lines[k]) or _DIVIDER_RE.match(lines[k]):
                break
            k += 1
        if k >= len(lines) or not _REPLACE_RE.match(lines[k]):
            raise ParseError(f"SEARCH block {number} has no '>>>>>>> REPLACE' line closing it")
        edits.append(Edit(search=tuple(lines[i + 1 : j]), replace=tuple(lines[j + 1 : k])))
        i = k + 1
    return edits


def _find(haystack: list[str], needle: list[str]) -> list[int]:
    m = len(needle)
    return [i for i in range(len(haystack) - m + 1) if haystack[i : i + m] == needle]


def _preview(line: str) -> str:
    return repr(line.strip()[:_PREVIEW_CHARS])


def _apply_edit(block_lines: list[str], edit: Edit, number: int, parent_code: str) -> list[str]:
    search = list(edit.search)
    if not any(line.strip() for line in search):
        raise ParseError(f"SEARCH block {number} is empty; copy the exact lines to replace")
    if any(EVOLVE_START in line or EVOLVE_END in line for line in search + list(edit.replace)):
        raise ParseError(
            f"SEARCH block {number} touches an evolve-block marker; edit only lines between the markers"
        )
    hits = _find(block_lines, search)
    width = len(search)
    if not hits:
        # Tolerant pass: ignore trailing whitespace and blank lines at the edges of SEARCH.
        first = next(i for i, line in enumerate(search) if line.strip())
        last = max(i for i, line in enumerate(search) if line.strip())
        trimmed = [line.rstrip() for line in search[first : last + 1]]
        hits = _find([line.rstrip() for line in block_lines], trimmed)
        width = len(trimmed)
    if len(hits) > 1:
        raise ParseError(
            f"SEARCH block {number} matches {len(hits)} places in the evolve block "
            f"(first line {_preview(search[0])}); include more surrounding lines so it matches once"
        )
    if not hits:
        first_line = next(line for line in search if line.strip())
        outside = [line.rstrip() for line in parent_code.splitlines()]
        if first_line.rstrip() in outside and first_line.rstrip() not in [
            line.rstrip() for line in block_lines
        ]:
            raise ParseError(
                f"SEARCH block {number} matches code outside the evolve block (first line was "
                f"{_preview(first_line)}); only lines between the markers can be changed"
            )
        raise ParseError(
            f"SEARCH block {number} not found in the evolve block: first line was "
            f"{_preview(first_line)}; copy the lines exactly as they appear in the current program"
        )
    at = hits[0]
    return block_lines[:at] + list(edit.replace) + block_lines[at + width :]


def apply_edits(parent_code: str, edits: list[Edit]) -> str:
    """The program obtained by applying `edits` in order to the parent's evolve block."""
    split = split_program(parent_code)
    block_lines = split.block.splitlines()
    for number, edit in enumerate(edits, start=1):
        block_lines = _apply_edit(block_lines, edit, number, parent_code)
    block = "".join(line + "\n" for line in block_lines)
    return split.join(block)


def _fenced_blocks(response: str) -> list[tuple[str, str]]:
    """(language tag, body) of each closed ``` fence in `response`."""
    blocks: list[tuple[str, str]] = []
    lines = response.splitlines(keepends=True)
    i = 0
    while i < len(lines):
        opening = _FENCE_RE.match(lines[i])
        if not opening:
            i += 1
            continue
        j = i + 1
        while j < len(lines) and not re.match(r"^\s*```+\s*$", lines[j]):
            j += 1
        if j >= len(lines):
            raise ParseError(
                "a ``` fence is never closed (was the answer cut off?); close every code block"
            )
        blocks.append((opening.group(1).lower(), "".join(lines[i + 1 : j])))
        i = j + 1
    return blocks


def _min_indent(text: str) -> str:
    indents = [line[: len(line) - len(line.lstrip())] for line in text.splitlines() if line.strip()]
    return min(indents, key=len) if indents else ""


def _as_block(body: str, parent_block: str) -> str:
    """A new block body, re-indented to the parent block's indentation when it lost it."""
    indent = _min_indent(parent_block)
    if indent and len(_min_indent(body)) < len(indent):
        body = textwrap.indent(textwrap.dedent(body), indent)
    if body and not body.endswith("\n"):
        body += "\n"
    return body


def choose_fenced_code(response: str) -> str:
    """The code of the fenced block that holds the program: the last one with both markers,
    else the only Python block, else the longest Python block. Raises ParseError if none."""
    blocks = [body for tag, body in _fenced_blocks(response) if tag in _PYTHON_TAGS]
    if not blocks:
        raise ParseError(
            "no ```python fenced block and no SEARCH/REPLACE edit found in the response; "
            "answer with SEARCH/REPLACE edits or one fenced block holding the new evolve block"
        )
    marked = [b for b in blocks if EVOLVE_START in b and EVOLVE_END in b]
    if marked:
        return marked[-1]
    return max(blocks, key=len)


def apply_response(parent_code: str, response: str) -> str:
    """The child program described by `response`, assembled on `parent_code`.

    Raises ParseError when the response holds no usable edit, an edit does not match exactly
    once inside the evolve block, or the assembled program does not compile.
    """
    split = split_program(parent_code)
    edits = parse_edits(response)
    if edits:
        child = apply_edits(parent_code, edits)
    else:
        code = choose_fenced_code(response)
        if EVOLVE_START in code or EVOLVE_END in code:
            block = split_program(code).block
        else:
            block = _as_block(code, split.block)
        child = split.join(block)
    check_compiles(child)
    return child


def apply_continuation(parent_code: str, keep_prefix: str, response: str) -> str:
    """Like `apply_response`, for a move whose first evolve-block lines must stay verbatim.

    `keep_prefix` is the start of the parent's evolve block (whole lines). The response may
    rewrite the block keeping that prefix, or give only the continuation (a fenced block
    without markers that does not repeat the kept lines), which is appended to the prefix.
    Raises ParseError when the result does not start with the kept lines.
    """
    if not keep_prefix:
        return apply_response(parent_code, response)
    split = split_program(parent_code)
    if not split.block.startswith(keep_prefix):
        raise ParseError("the kept prefix is not the start of the parent's evolve block")
    try:
        child = apply_response(parent_code, response)
        if split_program(child).block.startswith(keep_prefix):
            return child
    except ParseError:
        if parse_edits(response):
            raise
    if parse_edits(response):
        raise ParseError(
            f"the edits changed the first {keep_prefix.count(chr(10))} kept line(s) of the evolve block; "
            "keep them and change only what follows"
        )
    code = choose_fenced_code(response)
    if EVOLVE_START in code or EVOLVE_END in code:
        raise ParseError(
            f"the new evolve block does not start with the {keep_prefix.count(chr(10))} kept line(s); "
            "copy them unchanged, then write the rest"
        )
    continuation = code if code.endswith("\n") or not code else code + "\n"
    child = split.join(keep_prefix + continuation)
    check_compiles(child)
    return child


_CANDIDATE_FRAME = re.compile(r'File "[^"]*candidate\.py", line (\d+)')


def failing_line(feedback: str) -> int | None:
    """The candidate-file line of the innermost traceback frame in `feedback`, if any."""
    found = _CANDIDATE_FRAME.findall(feedback or "")
    return int(found[-1]) if found else None


def location_prefix(code: str, feedback: str) -> str:
    """The evolve-block lines of `code` before the line its traceback failed at.

    "" when the feedback names no candidate line, the line is outside the evolve block, or it
    is the block's first line (nothing to keep).
    """
    line = failing_line(feedback)
    if line is None:
        return ""
    try:
        split = split_program(code)
    except ParseError:
        return ""
    first = split.prefix.count("\n") + 1  # program line number of the block's first line
    block_lines = split.block.splitlines(keepends=True)
    kept = line - first
    if kept <= 0 or kept >= len(block_lines) + 1:
        return ""
    return "".join(block_lines[:kept])


def render_edits(block: str, new_block: str) -> str | None:
    """SEARCH/REPLACE edits turning evolve block `block` into `new_block`, each SEARCH part
    grown with context lines until it matches exactly once in `block`; "" when they are equal,
    None when some change cannot be given a unique SEARCH part."""
    old, new = block.splitlines(), new_block.splitlines()
    hunks = [
        [i1, i2, j1, j2]
        for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes()
        if tag != "equal"
    ]

    def unique(i1: int, i2: int) -> bool:
        window = old[i1:i2]
        if not any(line.strip() for line in window):
            return False
        return len(_find(old, window)) == 1

    while True:
        merged: list[list[int]] = []
        for h in hunks:  # hunks separated only by context they now share become one
            if merged and h[0] <= merged[-1][1]:
                merged[-1][1], merged[-1][3] = max(merged[-1][1], h[1]), max(merged[-1][3], h[3])
            else:
                merged.append(list(h))
        grown = False
        for h in merged:
            while not unique(h[0], h[1]):
                if h[0] == 0 and h[1] == len(old):
                    return None
                if h[0] > 0:  # the lines around a hunk are equal in both blocks
                    h[0], h[2] = h[0] - 1, h[2] - 1
                if not unique(h[0], h[1]) and h[1] < len(old):
                    h[1], h[3] = h[1] + 1, h[3] + 1
                grown = True
        hunks = merged
        if not grown:
            break
    return "\n".join(
        "<<<<<<< SEARCH\n"
        + "".join(line + "\n" for line in old[i1:i2])
        + "=======\n"
        + "".join(line + "\n" for line in new[j1:j2])
        + ">>>>>>> REPLACE\n"
        for i1, i2, j1, j2 in hunks
    )


def unified_diff(parent: str, child: str, context: int = 3) -> str:
    """A unified diff from `parent` to `child` ("" when they are equal)."""
    lines = difflib.unified_diff(
        parent.splitlines(keepends=True),
        child.splitlines(keepends=True),
        fromfile="parent.py",
        tofile="child.py",
        n=context,
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)
