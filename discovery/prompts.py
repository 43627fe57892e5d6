"""Prompt building for a SimpleTES move: the chat messages a proposer reads.

The system message says who the model is, what the candidate must define, that only the evolve
block may change, and the two answer forms `discovery.edits` accepts, with one example of each.
The user message holds the task, the objective and target, the parent program with its score,
metrics and feedback, the inspirations, and the chain's most frequent errors. Long fields are
cut in the middle to a bounded size, with a marker saying how much was left out.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Mapping, Sequence

from discovery.edits import EVOLVE_END, EVOLVE_START
from discovery.strategy import Message, Node, Task

TRUNCATION_MARKER = "[... {n} characters truncated ...]"
_MAX_METRICS = 24
_MAX_METRIC_CHARS = 200
_ERROR_CHARS = 300


@dataclasses.dataclass(frozen=True)
class PromptLimits:
    """Character bounds for long fields of a prompt.

    Attributes:
      code_chars: longest program text shown (the parent and each inspiration).
      feedback_chars: longest evaluator feedback shown per program.
      description_chars: longest task description shown.
    """

    code_chars: int = 20_000
    feedback_chars: int = 2_000
    description_chars: int = 10_000


def truncate(text: str, limit: int) -> str:
    """`text` with its middle replaced by a marker when longer than `limit` characters."""
    if limit <= 0 or len(text) <= limit:
        return text
    head = limit // 2
    tail = limit - head
    cut = len(text) - head - tail
    return text[:head] + "\n" + TRUNCATION_MARKER.format(n=cut) + "\n" + text[len(text) - tail :]


_TRACEBACK_FILE = re.compile(r'File "[^"]*"')
_ADDRESS = re.compile(r"\b0x[0-9a-fA-F]+\b")
_PATH = re.compile(r"(?:[A-Za-z]:)?(?:[\\/][\w.\-]+){2,}[\\/]?|(?:\.{1,2}[\\/])[\w.\-\\/]+")
_NUMBER = re.compile(r"(?<![A-Za-z_])[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?")
_SPACE = re.compile(r"\s+")


def normalise_error(text: str) -> str:
    """An error message with numbers, paths and addresses blanked, so similar errors group.

    From a traceback only the final exception line is kept.
    """
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return ""
    if any(line.startswith("Traceback") for line in lines):
        lines = lines[-1:]
    out = " ".join(lines)
    out = _TRACEBACK_FILE.sub('File "<path>"', out)
    out = _ADDRESS.sub("<addr>", out)
    out = _PATH.sub("<path>", out)
    out = _NUMBER.sub("N", out)
    out = _SPACE.sub(" ", out).strip()
    return out[:_ERROR_CHARS]


def format_score(score: float | None) -> str:
    """A score for prompts: 6 significant digits, or 'none'."""
    if score is None or not math.isfinite(score):
        return "none"
    return f"{score:.6g}"


def _format_metrics(metrics: Mapping[str, Any]) -> str:
    items = list(metrics.items())
    lines = []
    for key, value in items[:_MAX_METRICS]:
        shown = format_score(value) if isinstance(value, float) else repr(value)
        if len(shown) > _MAX_METRIC_CHARS:
            shown = shown[:_MAX_METRIC_CHARS] + "..."
        lines.append(f"- {key}: {shown}")
    if len(items) > _MAX_METRICS:
        lines.append(f"- ... ({len(items) - _MAX_METRICS} more metrics)")
    return "\n".join(lines)


def program_section(title: str, node: Node, limits: PromptLimits) -> str:
    parts = [f"## {title}", f"Score: {format_score(node.score)} (status: {node.status})"]
    if node.metrics:
        parts.append("Metrics:\n" + _format_metrics(node.metrics))
    if node.feedback.strip():
        parts.append("Evaluator feedback:\n" + truncate(node.feedback.strip(), limits.feedback_chars))
    parts.append("```python\n" + truncate(node.code, limits.code_chars).rstrip("\n") + "\n```")
    return "\n".join(parts)


def system_message(task: Task) -> str:
    """Role, constraints and the answer format."""
    goal = "higher" if task.direction == "maximize" else "lower"
    return f"""You are an expert in algorithms, mathematics and scientific programming. You improve a \
Python program that an automated evaluator runs and scores; a {goal} score is better.

Rules:
- The program must keep defining `{task.entrypoint}`; the evaluator calls it.
- Only the code between the lines `{EVOLVE_START}` and `{EVOLVE_END}` may change. Everything \
outside that block is fixed: it is restored exactly as it was, whatever you write.
- The result must be valid Python that runs within the problem's limits.

Answer in one of two forms.

Form 1, SEARCH/REPLACE edits (preferred for focused changes). Each SEARCH part must copy lines \
of the current evolve block exactly, including indentation, and match exactly one place; \
several edits are applied in order:
<<<<<<< SEARCH
    step = 0.1
    for i in range(10):
=======
    step = 0.05
    for i in range(20):
>>>>>>> REPLACE

Form 2, the whole new evolve block in one fenced Python code block, markers included \
(preferred for rewrites):
```python
{EVOLVE_START}
def helper(x):
    return 2 * x
{EVOLVE_END}
```

Explain your idea in a few sentences first, then give the edits or the code block."""


def default_instruction(task: Task) -> str:
    """The closing instruction of a refine prompt."""
    better = "higher" if task.direction == "maximize" else "lower"
    return (
        f"Improve the current program so that it scores {better}. "
        "Use the metrics and feedback above; try a different idea when small tweaks stall. "
        "Change only the evolve block, and answer in one of the two forms."
    )


def task_header(task: Task, limits: PromptLimits) -> list[str]:
    """The task, objective and target paragraphs every user message starts with."""
    goal = "maximize" if task.direction == "maximize" else "minimize"
    parts = [
        f"# Task: {task.name}",
        truncate(task.description.strip(), limits.description_chars),
        f"Objective: {goal} the score.",
    ]
    if task.best_known is not None:
        parts.append(f"Best known value: {format_score(task.best_known)} (a target to reach or beat).")
    return parts


def user_message(
    task: Task,
    parent: Node,
    inspirations: Sequence[Node],
    errors: Sequence[tuple[str, int]],
    limits: PromptLimits,
    instruction: str | None = None,
) -> str:
    """Task, target, parent, inspirations, error histogram and the instruction.

    `instruction` replaces the default closing instruction (improve the current program).
    """
    parts = task_header(task, limits)
    parts.append("# Current program (your edits apply to this one)")
    parts.append(program_section("Current program", parent, limits))
    if inspirations:
        parts.append("# Other programs from this search, for ideas")
        for i, node in enumerate(inspirations, start=1):
            parts.append(program_section(f"Inspiration {i}", node, limits))
    if errors:
        lines = [f"- {count} x {message}" for message, count in errors]
        parts.append("# Frequent errors of recent candidates (avoid them)\n" + "\n".join(lines))
    parts.append("# Instruction\n" + (instruction or default_instruction(task)))
    return "\n\n".join(parts)


def build_messages(
    task: Task,
    parent: Node,
    inspirations: Sequence[Node],
    errors: Sequence[tuple[str, int]] = (),
    limits: PromptLimits = PromptLimits(),
    instruction: str | None = None,
) -> tuple[Message, ...]:
    """The system and user messages of one move (`instruction`: see user_message)."""
    return (
        {"role": "system", "content": system_message(task)},
        {"role": "user", "content": user_message(task, parent, inspirations, errors, limits, instruction)},
    )
