"""Response parsing: SEARCH/REPLACE edits, fenced programs and blocks, and their failures."""

from __future__ import annotations

import pytest

from discovery.edits import (
    EVOLVE_END,
    EVOLVE_START,
    ParseError,
    apply_response,
    render_edits,
    split_program,
    unified_diff,
)

PARENT = '''import math

CONST = 7

# EVOLVE-BLOCK-START
def f(x):
    y = x * 2
    return y + 1

def g(x):
    y = x * 2
    return y - 1
# EVOLVE-BLOCK-END


def run():
    return f(CONST) + g(CONST)
'''


def edit(search: str, replace: str) -> str:
    return f"<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE\n"


def test_split_round_trips_and_markers_match_problems():
    split = split_program(PARENT)
    assert split.join() == PARENT
    assert split.prefix.endswith(EVOLVE_START + "\n")
    assert split.suffix.startswith(EVOLVE_END)
    assert split.block.startswith("def f(x):")
    from problems.base import EVOLVE_END as P_END, EVOLVE_START as P_START

    assert (P_START, P_END) == (EVOLVE_START, EVOLVE_END)


def test_split_needs_one_pair_of_markers():
    with pytest.raises(ParseError, match="exactly one"):
        split_program("x = 1\n")
    with pytest.raises(ParseError, match="before"):
        split_program(f"{EVOLVE_END}\nx = 1\n{EVOLVE_START}\n")


def test_single_search_replace():
    child = apply_response(PARENT, "Idea: bigger.\n" + edit("    return y + 1", "    return y + 10"))
    assert "return y + 10" in child and "return y - 1" in child
    assert child.replace("y + 10", "y + 1") == PARENT


def test_multiple_edits_apply_in_order():
    text = edit("    return y + 1", "    return y + 2") + "\n" + edit("    return y + 2", "    return y + 3")
    text += edit("    return y - 1", "    return -y")
    child = apply_response(PARENT, text)
    assert "return y + 3" in child and "return -y" in child


def test_edits_inside_a_fence_are_found():
    text = "```python\n" + edit("    return y - 1", "    return y - 5") + "```\n"
    assert "return y - 5" in apply_response(PARENT, text)


def test_tolerant_match_ignores_trailing_whitespace_and_blank_edges():
    text = edit("\n    return y + 1   \n", "    return y + 4")
    assert "return y + 4" in apply_response(PARENT, text)


def test_not_found_names_the_block_and_its_first_line():
    text = edit("    return y + 1", "    return 0") + edit("    return z", "    return 1")
    with pytest.raises(ParseError, match=r"SEARCH block 2 not found in the evolve block: first line was 'return z'"):
        apply_response(PARENT, text)


def test_ambiguous_search_is_rejected():
    with pytest.raises(ParseError, match="SEARCH block 1 matches 2 places"):
        apply_response(PARENT, edit("    y = x * 2", "    y = x * 3"))


def test_edits_outside_the_block_are_rejected():
    with pytest.raises(ParseError, match="outside the evolve block"):
        apply_response(PARENT, edit("CONST = 7", "CONST = 8"))
    with pytest.raises(ParseError, match="marker"):
        apply_response(PARENT, edit(EVOLVE_END, "x = 1\n" + EVOLVE_END))


def test_malformed_edit_is_reported():
    with pytest.raises(ParseError, match="no '======='"):
        apply_response(PARENT, "<<<<<<< SEARCH\n    return y + 1\n>>>>>>> REPLACE\n")
    with pytest.raises(ParseError, match="REPLACE"):
        apply_response(PARENT, "<<<<<<< SEARCH\n    return y + 1\n=======\n    return 2\n")
    with pytest.raises(ParseError, match="empty"):
        apply_response(PARENT, edit("", "x = 1"))


def test_syntax_error_names_the_line():
    with pytest.raises(ParseError, match=r"does not compile: .* at line 8: return y \+"):
        apply_response(PARENT, edit("    y = x * 2\n    return y + 1", "    y = x * 2\n    return y +"))


def test_fenced_whole_program_keeps_parent_prefix_and_suffix():
    rewritten = PARENT.replace("CONST = 7", "CONST = 999").replace("return f(CONST)", "return 0 * f(CONST)")
    rewritten = rewritten.replace("return y + 1", "return y + 100")
    child = apply_response(PARENT, f"Here it is:\n```python\n{rewritten}```\nDone.")
    assert "CONST = 7" in child and "CONST = 999" not in child
    assert "return f(CONST) + g(CONST)" in child
    assert "return y + 100" in child
    assert split_program(child).prefix == split_program(PARENT).prefix
    assert split_program(child).suffix == split_program(PARENT).suffix


def test_fenced_block_body_only():
    child = apply_response(PARENT, "```python\ndef f(x):\n    return 1\n\ndef g(x):\n    return 2\n```")
    assert split_program(child).block == "def f(x):\n    return 1\n\ndef g(x):\n    return 2\n"


def test_fenced_body_is_reindented_to_an_indented_block():
    parent = "def outer():\n    # EVOLVE-BLOCK-START\n    x = 1\n    # EVOLVE-BLOCK-END\n    return x\n"
    child = apply_response(parent, "```python\nx = 2\n```")
    assert "    x = 2\n" in child
    assert compile(child, "c", "exec")


def test_marked_fence_preferred_over_snippets():
    block = "def f(x):\n    return 0\ndef g(x):\n    return 0\n"
    text = f"```python\nprint('usage')\n```\n```python\n{EVOLVE_START}\n{block}{EVOLVE_END}\n```"
    child = apply_response(PARENT, text)
    assert "print('usage')" not in child and "return 0" in child


def test_no_code_and_unclosed_fence():
    with pytest.raises(ParseError, match="no ```python fenced block and no SEARCH/REPLACE"):
        apply_response(PARENT, "I would try a larger constant.")
    with pytest.raises(ParseError, match="never closed"):
        apply_response(PARENT, "```python\nx = 1\n")


def test_unified_diff():
    child = apply_response(PARENT, edit("    return y + 1", "    return y + 10"))
    diff = unified_diff(PARENT, child)
    assert diff.startswith("--- parent.py\n+++ child.py\n")
    assert "-    return y + 1\n" in diff and "+    return y + 10\n" in diff
    assert unified_diff(PARENT, PARENT) == ""


def test_render_edits_round_trips_with_unique_context():
    block = split_program(PARENT).block
    new_block = block.replace("return y + 1", "return y + 7").replace("return y - 1", "return y - 7")
    text = render_edits(block, new_block)
    assert text.count("<<<<<<< SEARCH") == 2
    assert apply_response(PARENT, text) == split_program(PARENT).join(new_block)
    # "y = x * 2" occurs twice: the edit must grow context to be unique.
    second = block.replace("def g(x):\n    y = x * 2", "def g(x):\n    y = x * 3")
    text = render_edits(block, second)
    assert "def g(x):" in text
    assert apply_response(PARENT, text) == split_program(PARENT).join(second)
    assert render_edits(block, block) == ""
    assert "x = 1\nx = 1\n=======\nx = 1\nx = 2\n" in render_edits("x = 1\nx = 1\n", "x = 1\nx = 2\n")
    assert render_edits("\n\n", "\n\nx = 1\n") is None  # nothing non-blank to anchor on


# -- kept prefixes (R^3L location pivots) ------------------------------------------------------

_FAILING = (
    "import math\n# EVOLVE-BLOCK-START\na = 1\nb = 2\nc = a / 0\nd = 3\n# EVOLVE-BLOCK-END\n"
    "def f():\n    return a + b + c + d\n"
)
_TRACE = (
    'Traceback (most recent call last):\n  File "/sandbox/runner.py", line 259, in main\n'
    '  File "/sandbox/candidate.py", line 5, in <module>\n    c = a / 0\nZeroDivisionError: division by zero'
)


def test_failing_line_is_the_innermost_candidate_frame():
    from discovery.edits import failing_line

    nested = _TRACE.replace('line 5, in <module>', 'line 9, in f\n  File "/sandbox/candidate.py", line 5, in g')
    assert failing_line(_TRACE) == 5
    assert failing_line(nested) == 5
    assert failing_line("ValueError: no traceback") is None


def test_location_prefix_keeps_the_block_lines_before_the_failing_line():
    from discovery.edits import location_prefix

    assert location_prefix(_FAILING, _TRACE) == "a = 1\nb = 2\n"
    first_line = _TRACE.replace("line 5", "line 3")
    assert location_prefix(_FAILING, first_line) == "", "nothing to keep when the first block line fails"
    outside = _TRACE.replace("line 5", "line 9")
    assert location_prefix(_FAILING, outside) == "", "a failure outside the block keeps nothing"
    assert location_prefix(_FAILING, "no traceback") == ""


def test_apply_continuation_accepts_a_whole_block_or_only_the_rest():
    from discovery.edits import apply_continuation

    keep = "a = 1\nb = 2\n"
    whole = "```python\n# EVOLVE-BLOCK-START\na = 1\nb = 2\nc = a / 2\nd = 4\n# EVOLVE-BLOCK-END\n```"
    rest = "```python\nc = a / 2\nd = 4\n```"
    expected = _FAILING.replace("c = a / 0\nd = 3\n", "c = a / 2\nd = 4\n")
    assert apply_continuation(_FAILING, keep, whole) == expected
    assert apply_continuation(_FAILING, keep, rest) == expected
    edit = "<<<<<<< SEARCH\nc = a / 0\n=======\nc = a / 2\n>>>>>>> REPLACE"
    assert apply_continuation(_FAILING, keep, edit) == _FAILING.replace("a / 0", "a / 2")
    assert apply_continuation(_FAILING, "", rest) == apply_response(_FAILING, rest)


def test_apply_continuation_refuses_to_change_the_kept_lines():
    from discovery.edits import apply_continuation

    keep = "a = 1\nb = 2\n"
    changed = "```python\n# EVOLVE-BLOCK-START\na = 7\nc = 1\n# EVOLVE-BLOCK-END\n```"
    with pytest.raises(ParseError, match="kept line"):
        apply_continuation(_FAILING, keep, changed)
    edit = "<<<<<<< SEARCH\nb = 2\n=======\nb = 5\n>>>>>>> REPLACE"
    with pytest.raises(ParseError, match="kept line"):
        apply_continuation(_FAILING, keep, edit)
    with pytest.raises(ParseError, match="not the start"):
        apply_continuation(_FAILING, "x = 0\n", edit)
