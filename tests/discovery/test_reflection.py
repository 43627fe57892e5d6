"""R^3L reflections: parsing the reflector's JSON, its prompt, guidance and the offline reflector."""

from __future__ import annotations

import json
import random

import pytest

from discovery.reflection import (
    CONTEXT_SCHEMA,
    NO_PROGRAM,
    Reflection,
    ReflectionError,
    guidance_message,
    offline_reflection,
    parse_reflection,
    reflection_messages,
)

from tests.discovery.fakes import TOY, TOY_TASK

GOOD = {
    "summary": "Turn 0 moved A away from the optimum.",
    "root_cause": "The step went the wrong way.",
    "outcome": "failure",
    "suggestion": "Increase A in small steps.",
    "retry_from": 1,
}


def text(**changes) -> str:
    obj = dict(GOOD)
    for key, value in changes.items():
        if value is ...:
            obj.pop(key)
        else:
            obj[key] = value
    return json.dumps(obj)


@pytest.mark.parametrize(
    "answer",
    [
        text(),
        "  " + text() + "\n",
        "```json\n" + json.dumps(GOOD, indent=2) + "\n```",
        "```\n" + text() + "\n```",
        "Here is my review of the session.\n\n```json\n" + text() + "\n```\nGood luck!",
        "My analysis: " + text() + " -- that is all.",
        "First a set {x} and a dict {'a': 1}, then the answer " + text(),
    ],
)
def test_accepts_the_documented_forms(answer):
    r = parse_reflection(answer, turns=3)
    assert r == Reflection(
        summary=GOOD["summary"],
        root_cause=GOOD["root_cause"],
        outcome="failure",
        suggestion=GOOD["suggestion"],
        retry_from=1,
    )
    assert r.as_dict()["retry_from"] == 1
    json.dumps(r.as_dict())


def test_accepts_the_original_field_names_and_other_outcomes():
    original = {
        "trajectory_summary": "s",
        "root_cause_analysis": "why",
        "trajectory_outcome": "success_but_inefficient",
        "improvement_suggestion": "do better",
        "retry_from_step": 0,
    }
    r = parse_reflection(json.dumps(original), turns=2)
    assert (r.summary, r.root_cause, r.outcome, r.suggestion, r.retry_from) == (
        "s", "why", "success_but_inefficient", "do better", 0
    )
    assert parse_reflection(text(outcome="FAILURE"), turns=3).outcome == "failure"


def test_success_may_leave_the_retry_fields_empty():
    r = parse_reflection(json.dumps({"summary": "fine", "outcome": "success", "root_cause": None,
                                     "suggestion": None, "retry_from": None}), turns=3)
    assert r.outcome == "success" and r.retry_from is None and r.suggestion == "" and r.root_cause == ""
    r = parse_reflection(json.dumps({"summary": "fine", "outcome": "success"}), turns=3)
    assert r.retry_from is None


@pytest.mark.parametrize(
    "answer, message",
    [
        ("", "empty"),
        ("   \n", "empty"),
        ("The session failed because A went down; retry from turn 1.", "no JSON object"),
        ("[1, 2, 3]", "no JSON object"),
        ('{"summary": "x", "outcome": "failure", ', "no JSON object"),
        (text(outcome=...), "no 'outcome' field"),
        (text(root_cause=...), "no 'root_cause' field"),
        (text(suggestion=...), "no 'suggestion' field"),
        (text(summary=...), "no 'summary' field"),
        (text(retry_from=...), "no 'retry_from' field"),
        (text(outcome="partial"), "outcome must be one of"),
        (text(outcome=3), "outcome must be one of"),
        (text(retry_from=3), "retry_from 3 is out of range"),
        (text(retry_from=-1), "retry_from -1 is out of range"),
        (text(retry_from="1"), "retry_from must be an integer turn index, not str"),
        (text(retry_from=1.0), "retry_from must be an integer turn index, not float"),
        (text(retry_from=True), "retry_from must be an integer turn index, not bool"),
        (text(retry_from=None), "not null"),
        (text(summary=["a"]), "summary must be a string, not list"),
        (text(suggestion=""), "suggestion is empty"),
        (text(root_cause={"why": 1}), "root_cause must be a string"),
    ],
)
def test_rejects_with_one_line(answer, message):
    with pytest.raises(ReflectionError) as info:
        parse_reflection(answer, turns=3)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_turns_must_be_positive():
    with pytest.raises(ValueError):
        parse_reflection(text(), turns=0)


def context(turns, start=-9.85, direction="maximize", failed=True, result=None) -> dict:
    facts = []
    for i, (status, score) in enumerate(turns):
        code = None if status == NO_PROGRAM else TOY.replace("A = 1.0", f"A = {i + 2}.0")
        facts.append({
            "turn": i, "parent": i - 1, "status": status,
            "score": score if status == "ok" else None,
            "error": "" if status == "ok" else ("SEARCH block 1 not found" if status == NO_PROGRAM
                                                 else "NameError: name 'q' is not defined"),
            "feedback": "" if code is None else f"score {score}",
            "code": code,
        })
    scores = [s for st, s in turns if st == "ok"]
    return {
        "schema": CONTEXT_SCHEMA, "task": "toy", "direction": direction, "best_known": 0.0,
        "target": None, "round": 0, "episode": 0, "trajectory": 0, "start_ref": 0,
        "start_score": start, "start_status": "ok", "start_code": TOY, "turns": facts,
        "result": result if result is not None else (max(scores) if scores else None),
        "failed": failed, "failure": "its best program is not better than the start program",
    }


@pytest.mark.parametrize(
    "turns, pivot, words",
    [
        ([("ok", -12.0), ("ok", -11.0), ("ok", -10.5)], 0, "Revert to the start program"),
        ([("ok", -9.0), ("error", None), ("ok", -9.5)], 1, "NameError"),
        ([("ok", -9.0), ("ok", -9.0), ("ok", -8.0)], 1, "different change"),
        ([("ok", -9.0), ("ok", -8.0), (NO_PROGRAM, None)], 2, "SEARCH/REPLACE"),
        ([(NO_PROGRAM, None), (NO_PROGRAM, None)], 0, "could not be turned into a program"),
        ([("ok", -9.0), ("ok", -8.0), ("ok", -7.0)], 2, "larger steps"),
    ],
)
def test_offline_reflection_picks_a_sensible_pivot(turns, pivot, words):
    answer = offline_reflection(context(turns))
    r = parse_reflection(answer, turns=len(turns))
    assert r.retry_from == pivot and r.outcome == "failure"
    assert words in r.root_cause + " " + r.suggestion
    assert offline_reflection(context(turns)) == answer  # deterministic


def test_offline_reflection_minimize_and_success():
    ctx = context([("ok", 5.0), ("ok", 6.0)], start=5.5, direction="minimize", result=5.0)
    assert parse_reflection(offline_reflection(ctx), turns=2).retry_from == 1  # 6.0 is worse
    ctx["failed"] = False
    assert parse_reflection(offline_reflection(ctx), turns=2).outcome == "success"


def test_offline_reflection_always_parses():
    rng = random.Random(5)
    statuses = ["ok", "ok", "ok", "error", "invalid", "timeout", NO_PROGRAM]
    for _ in range(300):
        n = rng.randint(1, 5)
        turns = [(s, rng.uniform(-20, 0) if s == "ok" else None) for s in rng.choices(statuses, k=n)]
        start = rng.choice([None, -10.0])
        ctx = context(turns, start=start, direction=rng.choice(["maximize", "minimize"]))
        r = parse_reflection(offline_reflection(ctx), turns=n)
        assert 0 <= r.retry_from < n
    ctx = context([])
    assert parse_reflection(offline_reflection(ctx), turns=1).retry_from == 0


def test_reflection_messages_show_the_log_and_ask_for_json():
    ctx = context([("ok", -12.0), ("error", None), (NO_PROGRAM, None)])
    system, user = reflection_messages(TOY_TASK, ctx)
    assert system["role"] == "system" and user["role"] == "user"
    assert "ONE JSON object" in system["content"]
    for field in ("summary", "root_cause", "outcome", "suggestion", "retry_from",
                  "success_but_inefficient"):
        assert field in system["content"]
    u = user["content"]
    assert TOY_TASK.description in u and "Start program (score -9.85" in u
    assert "## Turn 0 (edited the start program)" in u and "## Turn 1 (edited the program of turn 0)" in u
    assert "-A = 1.0\n+A = 2.0" in u  # turn 0 as a diff against the start program
    assert "-A = 2.0\n+A = 3.0" in u  # turn 1 against turn 0
    assert "score -12 (status: ok)" in u and "NameError: name 'q' is not defined" in u
    assert "No program came out: SEARCH block 1 not found" in u
    assert "from 0 to 2" in u and "counts as failed" in u


def test_guidance_message():
    r = parse_reflection(text(), turns=3)
    g = guidance_message(r)
    assert GOOD["root_cause"] in g and GOOD["suggestion"] in g and GOOD["summary"] in g
    assert "do not mention it" in g and "kept" not in g
    g = guidance_message(r, kept_prefix="A = 2.0\nB = 2.0\n", pivot=0)
    assert "first 2 line(s) of the evolve block of the program from turn 1" in g
    assert "```python\nA = 2.0\nB = 2.0\n```" in g and "Regenerate the rest" in g
