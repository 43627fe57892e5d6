"""The problem contract: what a problem module provides.

A problem is data (task text, seed program, entrypoint, direction, limits, best-known value)
plus one trusted function, `score(output) -> Evaluation`, that turns what the candidate
*produced* (plain data that crossed the sandbox boundary) into a score and feedback. The scorer
never sees the candidate's process and never trusts a number the candidate reports about itself.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Literal

from discovery.types import Direction, Evaluation
from sandbox.base import Limits, Sandbox

Split = Literal["search", "holdout"]
# A custom trusted evaluator: (problem, program, sandbox, split) -> Evaluation. Problems whose
# score needs several sandboxed runs (instances, timings, baselines) provide one; it must fill
# in the Evaluation's sandbox fields itself and never raise for anything the candidate does.
Evaluator = Callable[["Problem", str, Sandbox, Split], Evaluation]

EVOLVE_START = "# EVOLVE-BLOCK-START"
EVOLVE_END = "# EVOLVE-BLOCK-END"


@dataclasses.dataclass(frozen=True)
class BestKnown:
    """Best value known for the problem, with where it comes from."""

    value: float
    citation: str


@dataclasses.dataclass(frozen=True)
class Problem:
    """A problem the platform can search on.

    Attributes:
      name: registry name (lowercase, underscores).
      title: one-line human title.
      description: the task text the proposer reads.
      seed_program: full source of a program that runs and scores; the part between
        EVOLVE_START and EVOLVE_END is what proposers rewrite.
      entrypoint: the function the candidate defines; the sandbox runner calls it.
      direction: "maximize" or "minimize" the score.
      score: trusted scorer, `score(output) -> Evaluation` (status ok or invalid; the sandbox
        fields of the Evaluation are filled in by the caller).
      entry_kwargs: JSON keyword arguments passed to the entrypoint.
      limits: sandbox limits for one evaluation.
      best_known: best value known, with citation (None if not applicable).
      references: other reference values (name -> BestKnown) shown beside the best known.
      evaluator_version: bump whenever scoring changes; stored with every evaluation.
      cache_evaluations: identical programs are evaluated once per campaign (False for timing
        problems, whose score is a measurement).
      requirements: the pip requirements of the candidate environment (what a candidate may
        import beyond the standard library); the sandbox runs candidates in a venv holding only
        these, so baselines, references and the platform itself are out of reach.
      docker_image: the image the docker sandbox backend runs this problem's candidates in (None:
        $DISCOVERY_DOCKER_IMAGE, else an image built locally holding `requirements`).
      evaluator: custom trusted evaluator for multi-run problems (see Evaluator); None = one
        sandboxed run of the entrypoint with entry_kwargs, scored by `score`.
      has_holdout: the evaluator keeps held-out instances the search never sees
        (split="holdout"); `discovery evaluate ID --holdout` re-scores best programs on them.
    """

    name: str
    title: str
    description: str
    seed_program: str
    entrypoint: str
    direction: Direction
    score: Callable[[Any], Evaluation]
    entry_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    limits: Limits = dataclasses.field(default_factory=Limits)
    best_known: BestKnown | None = None
    references: dict[str, BestKnown] = dataclasses.field(default_factory=dict)
    evaluator_version: str = "1"
    cache_evaluations: bool = True
    requirements: tuple[str, ...] = ("numpy",)
    docker_image: str | None = None
    evaluator: Evaluator | None = None
    has_holdout: bool = False

    def __post_init__(self) -> None:
        if self.direction not in ("maximize", "minimize"):
            raise ValueError(f"problem {self.name}: direction must be maximize or minimize")
        if EVOLVE_START not in self.seed_program or EVOLVE_END not in self.seed_program:
            raise ValueError(
                f"problem {self.name}: the seed program needs {EVOLVE_START} and {EVOLVE_END} markers"
            )


def read_seed(package: str, filename: str = "seed.py") -> str:
    """The seed program shipped as package data next to a problem's __init__.py."""
    from importlib import resources

    return resources.files(package).joinpath(filename).read_text(encoding="utf-8")
