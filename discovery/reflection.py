"""R^3L reflections: the reflector's prompt, parsing its answer, guidance, and an offline reflector.

After a failed base episode, R^3L asks the model to review the episode and answer with one JSON
object (see `Reflection`): what happened, why, whether it failed, what to do instead, and the
turn to retry from (the earliest turn that went wrong). `parse_reflection` reads that answer,
`guidance_message` renders it as the guidance shown to the retry, and `offline_reflection`
writes a reflection from the episode's facts alone, for the proposer that has no model.

The episode facts travel in `Move.context` of the reflect move (JSON-serialisable):

    {
      "schema": "r3l.reflect/1",
      "task": str,                      # problem name
      "direction": "maximize" | "minimize",
      "best_known": float | None,       # the task's best-known value
      "target": float | None,           # R3L target (an episode ending worse failed)
      "round": int, "episode": int, "trajectory": int,
      "start_ref": int,
      "start_score": float | None,      # None unless the start program is ok
      "start_status": str,
      "start_code": str,                # full text of the start program
      "turns": [                        # one per turn the episode had, in order
        {
          "turn": int,                  # 0-based
          "parent": int,                # turn whose program this turn edited, -1 = start
          "status": str,                # evaluation status, or "no_program" (call or parse failed)
          "score": float | None,        # None unless status == "ok"
          "error": str,                 # parse/call error, or the normalised evaluator error
                                        # of a failed evaluation; "" when ok
          "feedback": str,              # evaluator feedback (truncated), "" when no program
          "code": str | None,           # full program text, None when no program
        },
        ...
      ],
      "result": float | None,           # best ok score among the turns
      "failed": bool,
      "failure": str,                   # why it failed ("" when it did not)
    }
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from typing import Any, Iterator, Mapping

from discovery.edits import unified_diff
from discovery.prompts import PromptLimits, format_score, task_header, truncate
from discovery.strategy import Message, Task
from discovery.types import fitness

CONTEXT_SCHEMA = "r3l.reflect/1"
NO_PROGRAM = "no_program"
OUTCOMES = ("success", "failure", "success_but_inefficient")
FIELDS = ("summary", "root_cause", "outcome", "suggestion", "retry_from")
# Field names of the original R^3L prompt, accepted as aliases.
_ALIASES = {
    "summary": ("summary", "trajectory_summary"),
    "root_cause": ("root_cause", "root_cause_analysis"),
    "outcome": ("outcome", "trajectory_outcome"),
    "suggestion": ("suggestion", "improvement_suggestion"),
    "retry_from": ("retry_from", "retry_from_step"),
}
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\r?\n(.*?)```", re.S)
_SHOWN_CHARS = 60


class ReflectionError(ValueError):
    """A reflection answer is unusable; the message says what is wrong, on one line."""


@dataclasses.dataclass(frozen=True)
class Reflection:
    """A parsed reflection on one episode.

    Attributes:
      summary: what the episode tried and how it went.
      root_cause: why it went wrong ("" allowed only when outcome is "success").
      outcome: "success", "failure" or "success_but_inefficient".
      suggestion: what to do instead ("" allowed only when outcome is "success").
      retry_from: 0-based turn to retry from (None allowed only when outcome is "success").
    """

    summary: str
    root_cause: str
    outcome: str
    suggestion: str
    retry_from: int | None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# -- parsing -------------------------------------------------------------------------------------


def _one_line(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."


def _json_objects(text: str) -> Iterator[Any]:
    """Every JSON value found in `text`: the whole text, fenced blocks, then each '{...}'."""
    try:
        yield json.loads(text.strip())
    except ValueError:
        pass
    for match in _FENCE.finditer(text):
        try:
            yield json.loads(match.group(2).strip())
        except ValueError:
            pass
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except ValueError:
            continue
        yield value


def _find_object(text: str) -> dict[str, Any]:
    first: dict[str, Any] | None = None
    known = {name for names in _ALIASES.values() for name in names}
    for value in _json_objects(text):
        if not isinstance(value, dict):
            continue
        if known & set(value):
            return value
        if first is None:
            first = value
    if first is None:
        raise ReflectionError("no JSON object found in the reflection; answer with one JSON object")
    return first


def _field(obj: Mapping[str, Any], name: str) -> tuple[bool, Any]:
    for key in _ALIASES[name]:
        if key in obj:
            return True, obj[key]
    return False, None


def parse_reflection(text: str, turns: int) -> Reflection:
    """The reflection in `text` for an episode of `turns` turns.

    Accepts a bare JSON object, one inside a ```json (or plain ```) fence, or one with prose
    around it. Fields: summary (string), root_cause (string), outcome (one of OUTCOMES),
    suggestion (string), retry_from (integer 0..turns-1). When outcome is "success",
    root_cause, suggestion and retry_from may be null or missing. The original R^3L field
    names (trajectory_summary, root_cause_analysis, trajectory_outcome, improvement_suggestion,
    retry_from_step) are accepted too. Raises ReflectionError (one line) otherwise.
    """
    if turns < 1:
        raise ValueError("an episode has at least one turn")
    if not isinstance(text, str) or not text.strip():
        raise ReflectionError("the reflection is empty")
    obj = _find_object(text)

    present, outcome = _field(obj, "outcome")
    if not present:
        raise ReflectionError("the reflection JSON has no 'outcome' field")
    if not isinstance(outcome, str) or outcome.strip().lower() not in OUTCOMES:
        raise ReflectionError(
            f"outcome must be one of {', '.join(repr(o) for o in OUTCOMES)}, "
            f"not {_one_line(repr(outcome))}"
        )
    outcome = outcome.strip().lower()
    success = outcome == "success"

    values: dict[str, str] = {}
    for name in ("summary", "root_cause", "suggestion"):
        present, value = _field(obj, name)
        optional = success and name != "summary"
        if not present:
            if optional:
                values[name] = ""
                continue
            raise ReflectionError(f"the reflection JSON has no '{name}' field")
        if value is None and optional:
            values[name] = ""
            continue
        if not isinstance(value, str):
            raise ReflectionError(f"{name} must be a string, not {type(value).__name__}")
        if not value.strip() and not optional:
            raise ReflectionError(f"{name} is empty")
        values[name] = value.strip()

    present, retry = _field(obj, "retry_from")
    if not present and not success:
        raise ReflectionError("the reflection JSON has no 'retry_from' field")
    if retry is None:
        if not success:
            raise ReflectionError(
                f"retry_from must be an integer turn index for outcome {outcome!r}, not null"
            )
    elif isinstance(retry, bool) or not isinstance(retry, int):
        raise ReflectionError(f"retry_from must be an integer turn index, not {type(retry).__name__}")
    elif not 0 <= retry < turns:
        raise ReflectionError(
            f"retry_from {retry} is out of range: the episode had {turns} turn(s), "
            f"numbered 0..{turns - 1}"
        )
    return Reflection(
        summary=values["summary"],
        root_cause=values["root_cause"],
        outcome=outcome,
        suggestion=values["suggestion"],
        retry_from=retry,
    )


# -- prompts -------------------------------------------------------------------------------------

_REFLECTOR_SYSTEM = """You review one session in which an assistant tried to improve a Python \
program over several turns. After each turn the program was run by an automated evaluator, which \
reported a score (or an error) and feedback.

Find out why the session did not reach a better program. Start from what went wrong and keep \
asking why until you reach the decision or assumption that caused it (a wrong idea, a step too \
large, a bug that was never fixed, an ignored error message, ...). Then locate the earliest turn \
where that cause first showed, or where a different decision would have changed the result.

Answer with ONE JSON object and nothing else, with exactly these fields:
- "summary": one to three sentences on what the session tried and how it went.
- "root_cause": the chain of reasons down to the underlying mistake.
- "outcome": "failure" when no better program came out, "success_but_inefficient" when it \
improved but wasted turns, "success" when nothing needs to change.
- "suggestion": a concrete, self-contained instruction for another try: what to change, what \
to keep, and which pitfall to avoid.
- "retry_from": the integer index of that earliest turn (turns are numbered from 0; use 0 when \
the first idea was already the problem).

Example of the form (the content depends on the session):
{"summary": "Turn 0 doubled the step size and the score dropped; turns 1-2 tuned other \
constants around the worse program.", "root_cause": "The score dropped because the doubled step \
overshoots; the later turns never revisited that change because they assumed it was good.", \
"outcome": "failure", "suggestion": "Keep the original step size and instead refine the \
iteration count in small increments; check the score after each change.", "retry_from": 0}"""


def _turn_parent_code(context: Mapping[str, Any], parent: int) -> str:
    turns = context.get("turns", [])
    if 0 <= parent < len(turns) and turns[parent].get("code"):
        return str(turns[parent]["code"])
    return str(context.get("start_code", ""))


def reflection_messages(
    task: Task, context: Mapping[str, Any], limits: PromptLimits = PromptLimits()
) -> tuple[Message, ...]:
    """The reflector's system and user messages for the episode described by `context`."""
    turns = list(context.get("turns", []))
    parts = task_header(task, limits)
    target = context.get("target")
    if target is not None:
        parts.append(f"Target of this search: {format_score(target)} (a session ending worse failed).")
    parts.append(
        f"# The session under review\nThe assistant had {len(turns)} turn(s) to improve the start "
        "program below; turns are numbered from 0. Each turn's change is shown as a diff against "
        "the program it edited."
    )
    start_code = str(context.get("start_code", ""))
    parts.append(
        f"## Start program (score {format_score(context.get('start_score'))}, "
        f"status: {context.get('start_status', '?')})\n```python\n"
        + truncate(start_code, limits.code_chars).rstrip("\n")
        + "\n```"
    )
    for fact in turns:
        t = fact.get("turn")
        parent = int(fact.get("parent", -1))
        edited = "the start program" if parent < 0 else f"the program of turn {parent}"
        lines = [f"## Turn {t} (edited {edited})"]
        if fact.get("code") is None:
            error = str(fact.get("error") or "the call failed")
            lines.append(f"No program came out: {truncate(error, limits.feedback_chars)}")
        else:
            diff = unified_diff(_turn_parent_code(context, parent), str(fact["code"]))
            if diff:
                shown = truncate(diff, limits.code_chars).rstrip("\n")
                lines.append("Change:\n```diff\n" + shown + "\n```")
            else:
                lines.append("Change: none (the program is identical to the one it edited).")
            score, status = format_score(fact.get("score")), fact.get("status")
            lines.append(f"Result: score {score} (status: {status})")
            if fact.get("error"):
                lines.append(f"Error: {fact['error']}")
            if fact.get("feedback"):
                feedback = truncate(str(fact["feedback"]), limits.feedback_chars)
                lines.append("Evaluator feedback:\n" + feedback)
        parts.append("\n".join(lines))
    verdict = (
        f"The session counts as failed: {context.get('failure')}."
        if context.get("failed")
        else "The session did not fail by the search's criteria."
    )
    parts.append(
        f"# Result\nBest score over the session: {format_score(context.get('result'))}; "
        f"start score: {format_score(context.get('start_score'))}. {verdict}"
    )
    parts.append(
        "# Your answer\nAnswer with ONE JSON object with the fields summary, root_cause, outcome, "
        f"suggestion and retry_from (an integer from 0 to {max(len(turns) - 1, 0)}), and nothing else."
    )
    return (
        {"role": "system", "content": _REFLECTOR_SYSTEM},
        {"role": "user", "content": "\n\n".join(parts)},
    )


def guidance_message(reflection: Reflection, *, kept_prefix: str = "", pivot: int | None = None) -> str:
    """The guidance shown to a retry: what went wrong and what to do, to apply silently.

    `kept_prefix` (a location pivot) is the start of the evolve block kept verbatim; the model
    is told how many lines are kept and to write the rest. `pivot` is the 0-based turn the
    program with the failing line came from (shown 1-based, as in the session).
    """
    parts = [
        "# Guidance for this answer",
        "An earlier attempt that started from this same point went wrong.",
        f"What happened: {reflection.summary}" if reflection.summary else "",
        f"What went wrong: {reflection.root_cause}" if reflection.root_cause else "",
        f"What to do instead: {reflection.suggestion}" if reflection.suggestion else "",
    ]
    if kept_prefix:
        n = kept_prefix.count("\n")
        where = f" of the program from turn {pivot + 1}" if pivot is not None else ""
        parts.append(
            f"The first {n} line(s) of the evolve block{where} are kept exactly as they are; the "
            "failure happened right after them. Regenerate the rest of the evolve block: answer "
            "with one fenced ```python block holding only the lines that come after the kept "
            "ones (do not repeat them, no evolve-block markers), or with the whole evolve block "
            "starting with these lines unchanged. The kept lines:\n```python\n"
            + kept_prefix.rstrip("\n")
            + "\n```"
        )
    parts.append(
        "Apply this guidance in your answer, but do not mention it, any review or an earlier "
        "attempt: explain your idea as your own and answer in the usual form."
    )
    return "\n".join(p for p in parts if p)


# -- offline reflection ------------------------------------------------------------------------------


def _fit(score: Any, direction: str) -> float:
    if score is None or not isinstance(score, (int, float)) or not math.isfinite(score):
        return -math.inf
    return fitness(float(score), "minimize" if direction == "minimize" else "maximize")


def offline_reflection(context: Mapping[str, Any]) -> str:
    """A deterministic reflection (a JSON object `parse_reflection` accepts) from episode facts.

    The pivot is the first turn that produced no ok program or did not improve on the best
    score before it (the start program's included); when every turn improved (the episode
    failed on the target), the last turn. The root cause is that turn's normalised error or
    its score regression, and the suggestion matches it: fix the error, revert and take a
    smaller step, or push further.
    """
    direction = str(context.get("direction", "maximize"))
    turns = list(context.get("turns", [])) or [{"turn": 0, "status": NO_PROGRAM, "score": None}]
    start = context.get("start_score")
    best_before = _fit(start, direction)
    best_score = start
    pivot, kind, before = len(turns) - 1, "short", best_score
    for i, fact in enumerate(turns):
        status = fact.get("status")
        f = _fit(fact.get("score"), direction) if status == "ok" else -math.inf
        if status != "ok":
            pivot, kind, before = i, "error", best_score
            break
        if f <= best_before:
            pivot, kind, before = i, ("stall" if f == best_before else "regression"), best_score
            break
        best_before, best_score = f, fact.get("score")
    fact = turns[pivot]
    n = len(turns)
    result = context.get("result")
    summary = (
        f"Over {n} turn(s) the best score went from {format_score(start)} to {format_score(result)}; "
        f"turn {pivot} "
    )
    parent = int(fact.get("parent", -1))
    source = "the start program" if parent < 0 else f"the program of turn {parent}"
    if kind == "error":
        error = str(fact.get("error") or fact.get("status") or "unknown error")
        if fact.get("status") == NO_PROGRAM:
            summary += "produced no program."
            root = f"The answer could not be turned into a program: {error}."
            suggestion = (
                f"Edit {source} with SEARCH/REPLACE blocks that copy its lines exactly, or give the "
                "whole evolve block in one fenced python block; change only a few lines."
            )
        else:
            summary += f"produced a program that failed ({fact.get('status')})."
            root = f"The program of turn {pivot} failed to evaluate: {error}."
            suggestion = (
                f"Start again from {source} and fix the cause of '{error}' before changing anything "
                "else; keep the change small and check names, types and bounds."
            )
    elif kind in ("regression", "stall"):
        score = format_score(fact.get("score"))
        if kind == "stall":
            summary += f"did not improve on {format_score(before)} (score {score})."
            root = (
                f"The change in turn {pivot} left the score at {score}; "
                "the step did not move the objective."
            )
            suggestion = (
                f"Start again from {source} (score {format_score(before)}) and try a different change: "
                "alter another part of the program or take a larger step in a new direction."
            )
        else:
            summary += f"made the score worse: {score} after {format_score(before)}."
            root = (
                f"The change in turn {pivot} moved the score from {format_score(before)} to {score}: "
                "the step went in the wrong direction or was too large, and later turns built on it."
            )
            suggestion = (
                f"Revert to {source} (score {format_score(before)}) and take a smaller step, or move "
                "the changed values in the opposite direction."
            )
    else:
        summary += f"was the last one and the result {format_score(result)} missed the target."
        root = (
            "Every turn improved, but the steps were too small to reach the target "
            "in the turns available."
        )
        suggestion = "Keep the direction of the changes that helped and take larger steps along it."
    failed = bool(context.get("failed", True))
    reflection = {
        "summary": summary,
        "root_cause": root,
        "outcome": "failure" if failed else "success",
        "suggestion": suggestion,
        "retry_from": pivot,
    }
    return json.dumps(reflection)


__all__ = [
    "CONTEXT_SCHEMA",
    "FIELDS",
    "NO_PROGRAM",
    "OUTCOMES",
    "Reflection",
    "ReflectionError",
    "guidance_message",
    "offline_reflection",
    "parse_reflection",
    "reflection_messages",
]
