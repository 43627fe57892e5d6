"""Prompt building: content, bounds and error normalisation."""

from __future__ import annotations

from discovery.prompts import PromptLimits, build_messages, normalise_error, truncate
from discovery.strategy import Node

from tests.discovery.fakes import TOY, TOY_TASK


def parent() -> Node:
    return Node(ref=3, code=TOY, score=-9.85, status="ok", feedback="solve() = -9.85",
                metrics={"loss": 9.85, "note": "far"})


def test_messages_hold_rules_parent_inspirations_and_errors():
    insp = Node(ref=4, code=TOY.replace("A = 1.0", "A = 2.0"), score=-3.12, status="ok",
                feedback="closer")
    system, user = build_messages(TOY_TASK, parent(), [insp], [("NameError: name 'q' is not defined", 3)])
    assert system["role"] == "system" and user["role"] == "user"
    s = system["content"]
    for needed in ("expert", "`solve`", "# EVOLVE-BLOCK-START", "<<<<<<< SEARCH", "=======",
                   ">>>>>>> REPLACE", "```python"):
        assert needed in s
    u = user["content"]
    assert TOY_TASK.description in u and "maximize" in u
    assert "Best known value: 0" in u
    assert "Score: -9.85" in u and "- loss: 9.85" in u and "solve() = -9.85" in u
    assert "A = 1.0" in u and "A = 2.0" in u and "Score: -3.12" in u and "closer" in u
    assert "3 x NameError: name 'q' is not defined" in u
    assert u.index("Current program") < u.index("Inspiration 1") < u.index("Frequent errors")


def test_minimize_and_no_target():
    task = TOY_TASK.__class__(**{**TOY_TASK.__dict__, "direction": "minimize", "best_known": None})
    system, user = build_messages(task, parent(), [], [])
    assert "lower score is better" in system["content"]
    assert "minimize" in user["content"] and "Best known" not in user["content"]
    assert "Frequent errors" not in user["content"] and "Inspiration" not in user["content"]


def test_long_fields_are_truncated_with_a_marker():
    long_code = TOY + "\n".join(f"# filler {i}" for i in range(5000))
    node = Node(ref=1, code=long_code, score=None, status="error", feedback="x" * 10_000)
    _, user = build_messages(TOY_TASK, node, [], [], PromptLimits(code_chars=1000, feedback_chars=100))
    u = user["content"]
    assert "characters truncated ...]" in u and len(u) < 4000
    assert "Score: none (status: error)" in u
    assert truncate("abc", 10) == "abc"
    cut = truncate("a" * 50 + "b" * 50, 20)
    assert cut.startswith("a" * 10) and cut.endswith("b" * 10) and "[... 80 characters truncated ...]" in cut


def test_normalise_error_groups_similar_errors():
    a = normalise_error(
        'Traceback (most recent call last):\n  File "/tmp/run_123/candidate.py", line 42, in solve\n'
        "IndexError: index 17 is out of bounds for axis 0 with size 10"
    )
    b = normalise_error(
        'Traceback (most recent call last):\n  File "/tmp/run_9/candidate.py", line 7, in solve\n'
        "IndexError: index 3 is out of bounds for axis 0 with size 2"
    )
    assert a == b == "IndexError: index N is out of bounds for axis N with size N"
    assert normalise_error("<object at 0x7f3a2b> failed in /home/u/x/y.py") == "<object at <addr>> failed in <path>"
    assert normalise_error("timed out after 12.5 s") == "timed out after N s"
    assert normalise_error("") == ""
