"""The export's contract: what the shaper reads (StepView, CampaignView) and what it writes.

The reader (flows/export.py) streams `StepView`s out of the database ordered by
(campaign_id, trajectory, index, sample), so every move (one prompt and its samples) and every
trajectory is contiguous; it computes the small per-campaign / per-trajectory / per-problem
aggregates first (`CampaignView`, `TrajectoryStats`, `ProblemScale`). The shaper
(discovery/export/shape.py) turns that stream into rows of three formats, each a plain dict
with exactly the columns of `SFT_COLUMNS`, `PREFERENCE_COLUMNS` or `RL_COLUMNS` (types below,
so a writer can build a fixed Parquet schema). Messages are lists of {"role", "content"}.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

FORMATS = ("sft", "preference", "rl")
SPLITS = ("train", "validation")

Message = Mapping[str, str]


@dataclasses.dataclass(frozen=True)
class StepView:
    """One proposer call and what became of it, as stored.

    Attributes:
      step_id: the step row id.
      campaign_id, trajectory, index, sample: where it sits (trajectory = the trajectory's
        index within the campaign, index = the move number, sample = the sample in the move).
      mode: the move's mode (propose, refine, base, improve, debug, diverge, reflect, retry).
      messages: the prompt exactly as sent.
      response: the raw response text ("" when the call failed).
      status: step status: "ok", "llm_error" or "parse_error".
      committed: what the strategy committed (None if the move never finished).
      bookkeeping: the strategy's stored fields for this sample.
      program_hash, code: the candidate the response produced (None without one).
      eval_status, score: its search evaluation (None when not evaluated).
      parent_status, parent_score: the parent program's search evaluation.
    """

    step_id: int
    campaign_id: int
    trajectory: int
    index: int
    sample: int
    mode: str
    messages: Sequence[Message]
    response: str
    status: str
    committed: bool | None
    bookkeeping: Mapping[str, Any]
    program_hash: str | None
    code: str | None
    eval_status: str | None
    score: float | None
    parent_status: str | None
    parent_score: float | None


@dataclasses.dataclass(frozen=True)
class CampaignView:
    """What the shaper needs to know about a campaign."""

    campaign_id: int
    problem: str  # the problem's registry name
    strategy: str
    model: str
    direction: str  # "maximize" | "minimize"
    seed_score: float | None
    best_score: float | None


@dataclasses.dataclass(frozen=True)
class TrajectoryStats:
    """Per trajectory: its best ok score and the first move index that reached it."""

    campaign_id: int
    trajectory: int
    best_score: float | None
    best_index: int | None


@dataclasses.dataclass(frozen=True)
class ProblemScale:
    """Per problem, over the exported campaigns: the fitness range rewards are normalised by.

    f_lo is the worst seed fitness, f_hi the best fitness of any ok evaluation (fitness =
    score when maximising, -score when minimising); reward = clip((f - f_lo)/(f_hi - f_lo), 0, 1).
    """

    problem: str
    f_lo: float | None
    f_hi: float | None


@dataclasses.dataclass(frozen=True)
class ExportFilters:
    """What to keep.

    Attributes:
      improved_only: SFT keeps only steps whose program is ok and strictly better than its
        parent (else: every step whose program is ok).
      top_pct: keep only trajectories in the top R% by their best score (per campaign;
        0 < R <= 100, ceil, at least one); None = all.
      prefix_to_best: keep only the steps of a trajectory up to the move where it reached its
        best.
      min_gap: a preference pair needs chosen and rejected normalised rewards at least this far
        apart.
      keep_guidance: R^3L retries keep the reflection guidance in their prompt (default: the
        distilled copy without it, as R^3L trains).
      validation_problems: rows of these problems go to the validation split.
    """

    improved_only: bool = True
    top_pct: float | None = None
    prefix_to_best: bool = False
    min_gap: float = 0.0
    keep_guidance: bool = False
    validation_problems: tuple[str, ...] = ()


# Column name -> type, for the writers' fixed schemas. "messages" = list of {role, content}.
COMMON_COLUMNS: dict[str, str] = {
    "id": "string",  # stable: "<format>:<campaign>:<trajectory>:<index>:<sample>[:...]"
    "split": "string",
    "problem": "string",
    "strategy": "string",
    "model": "string",
    "campaign_id": "int64",
}
SFT_COLUMNS: dict[str, str] = {
    **COMMON_COLUMNS,
    "messages": "messages",  # prompt + the assistant response
    "score": "float64",
    "parent_score": "float64?",
    "reward": "float64",  # normalised score of the program
    "mode": "string",
    "step_id": "int64",
}
PREFERENCE_COLUMNS: dict[str, str] = {
    **COMMON_COLUMNS,
    "prompt": "messages",
    "chosen": "messages",  # assistant turn(s)
    "rejected": "messages",
    "kind": "string",  # "group" (same prompt, best vs worst sample) | "r3l_retry"
    "chosen_score": "float64?",
    "rejected_score": "float64?",
    "chosen_reward": "float64",
    "rejected_reward": "float64",
    "chosen_step_id": "int64",
    "rejected_step_id": "int64",
}
RL_COLUMNS: dict[str, str] = {
    **COMMON_COLUMNS,
    "prompt": "messages",
    "completion": "messages",  # one assistant message
    "reward": "float64",
    # one group = one prompt's samples ("<campaign>:<trajectory>:<index>"); R^3L: a base episode
    # and its retry, every turn with its episode's reward ("<campaign>:<base trajectory>:episode")
    "group_id": "string",
    "advantage": "float64",
    "loss_mask": "int64",  # 0 = the completion is excluded from the loss (R^3L shared prefix)
    "weight": "float64",  # R^3L positive amplification, else 1.0
    "mode": "string",
    "status": "string",  # step status, or the evaluation status when evaluated
    "score": "float64?",
    "off_policy": "bool",  # R^3L retries: sampled with guidance the trainee will not see
    "informativeness": "float64?",  # ExIt S of the group
    "diversity": "float64?",  # ExIt diversity coefficient
    "pivot": "int64?",  # R^3L pivot turn
    "step_id": "int64",
}
COLUMNS: dict[str, dict[str, str]] = {"sft": SFT_COLUMNS, "preference": PREFERENCE_COLUMNS, "rl": RL_COLUMNS}
