"""Core nouns shared by every layer: Evaluation, Program text, directions and statuses.

These are plain frozen dataclasses with no I/O, so strategies, problems, the database layer
and the dashboard can all speak about the same things without importing each other.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from typing import Any, Literal, Mapping

Direction = Literal["maximize", "minimize"]

# Evaluation statuses (the same strings are stored in the database).
OK = "ok"  # the candidate ran and the trusted scorer accepted its output
INVALID = "invalid"  # it ran, but what it produced fails the problem's checks
ERROR = "error"  # it raised, exited non-zero, or produced no readable output
TIMEOUT = "timeout"  # wall-clock limit reached; the whole process tree was killed
KILLED = "killed"  # killed by a resource limit (CPU time, memory, file size, signal)
EvaluationStatus = Literal["ok", "invalid", "error", "timeout", "killed"]
EVALUATION_STATUSES: tuple[str, ...] = (OK, INVALID, ERROR, TIMEOUT, KILLED)


def program_hash(code: str) -> str:
    """Content hash of a program (sha256 of its UTF-8 text, trailing whitespace normalised)."""
    normalised = "\n".join(line.rstrip() for line in code.strip().splitlines())
    return hashlib.sha256(normalised.encode("utf-8")).hexdigest()


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """What trusted code concluded about one candidate program.

    Attributes:
      status: one of EVALUATION_STATUSES.
      score: the problem's objective, in the problem's own units and direction; None unless ok.
      metrics: extra numbers and facts for the proposer and the dashboard.
      feedback: text the proposer reads in its next prompt (what failed, where, what scored).
      stdout: tail of the candidate's standard output.
      stderr: tail of the candidate's standard error.
      duration_s: wall-clock seconds of the sandboxed run (scoring excluded).
      cpu_s: CPU seconds of the candidate's process tree, measured from outside it.
      backend: sandbox backend that ran it ("process", "bwrap", "docker", or "none").
      evaluator_version: the problem's evaluator version string.
    """

    status: EvaluationStatus
    score: float | None = None
    metrics: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    feedback: str = ""
    stdout: str = ""
    stderr: str = ""
    duration_s: float = 0.0
    cpu_s: float = 0.0
    backend: str = "none"
    evaluator_version: str = ""

    def __post_init__(self) -> None:
        if self.status not in EVALUATION_STATUSES:
            raise ValueError(f"unknown evaluation status {self.status!r}")
        if self.status == OK:
            if self.score is None or not math.isfinite(self.score):
                raise ValueError("an ok evaluation needs a finite score")
        elif self.score is not None:
            raise ValueError(f"a {self.status} evaluation carries no score")

    @property
    def ok(self) -> bool:
        return self.status == OK


def fitness(score: float | None, direction: Direction) -> float:
    """Maps a score to 'higher is better'; a missing score is -inf."""
    if score is None:
        return -math.inf
    return score if direction == "maximize" else -score


def better(a: float | None, b: float | None, direction: Direction) -> bool:
    """True when score a is strictly better than score b under direction."""
    return fitness(a, direction) > fitness(b, direction)
