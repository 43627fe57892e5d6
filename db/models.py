"""SQLAlchemy 2.0 typed models: Campaign, Trajectory, Step, Candidate, Evaluation.

Every row is written as the event happens (an LLM call, a parsed candidate, an evaluation).
Idempotency keys make a resumed campaign reuse finished work instead of duplicating it:
  - Trajectory: (campaign_id, index)
  - Step (one proposer call): (trajectory_id, index, sample)
  - Candidate: step_id (one per step); the seed candidate: (campaign_id, role="seed")
  - Evaluation: (campaign_id, cache_key) where cache_key is the program hash (cached problems)
    or "candidate:<id>" (problems that opt out of caching, such as timings).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Campaign(Base):
    """A problem + strategy + proposer config + budget + seed; owns trajectories."""

    __tablename__ = "campaign"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    problem: Mapped[str] = mapped_column(String(200), index=True)
    strategy: Mapped[str] = mapped_column(String(50))
    model: Mapped[str] = mapped_column(String(200))  # "offline" or a litellm model string
    seed: Mapped[int] = mapped_column(Integer)
    budget: Mapped[int] = mapped_column(Integer)  # samples (proposals), each yields one outcome
    config: Mapped[dict[str, Any]] = mapped_column(JSON)  # the resolved CampaignConfig
    status: Mapped[str] = mapped_column(String(20), default="created")
    direction: Mapped[str] = mapped_column(String(10))
    evaluator_version: Mapped[str] = mapped_column(String(50), default="")
    error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class Trajectory(Base):
    """An ordered chain of steps (a SimpleTES chain), optionally branched from another."""

    __tablename__ = "trajectory"
    __table_args__ = (UniqueConstraint("campaign_id", "index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaign.id", ondelete="CASCADE"), index=True)
    index: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(30), default="chain")
    parent_trajectory_id: Mapped[int | None] = mapped_column(ForeignKey("trajectory.id"))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Step(Base):
    """One proposer call (an LLM call or an offline proposal) and what became of it."""

    __tablename__ = "step"
    __table_args__ = (
        UniqueConstraint("trajectory_id", "index", "sample"),
        # covers the per-campaign totals and best-so-far points (migration 0004)
        Index("ix_step_campaign_cover", "campaign_id", "id", "trajectory_id", "status", "prompt_tokens",
              "completion_tokens", "cost_usd", "created_at"),
        Index("ix_step_parent_candidate", "parent_candidate_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaign.id", ondelete="CASCADE"))
    trajectory_id: Mapped[int] = mapped_column(ForeignKey("trajectory.id", ondelete="CASCADE"))
    index: Mapped[int] = mapped_column(Integer)  # move number within the trajectory
    sample: Mapped[int] = mapped_column(Integer)  # sample number within the move (0..K-1)
    mode: Mapped[str] = mapped_column(String(20))
    parent_candidate_id: Mapped[int | None] = mapped_column(ForeignKey("candidate.id"))
    messages: Mapped[list[Any]] = mapped_column(JSON)
    response: Mapped[str] = mapped_column(Text, default="")
    model: Mapped[str] = mapped_column(String(200))
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    latency_s: Mapped[float] = mapped_column(Float, default=0.0)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(20))  # ok | llm_error | parse_error
    error: Mapped[str] = mapped_column(Text, default="")
    committed: Mapped[bool | None] = mapped_column(default=None)  # set when the move finished
    bookkeeping: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Candidate(Base):
    """A program: its source, its parents, the step that produced it, its content hash."""

    __tablename__ = "candidate"
    __table_args__ = (
        UniqueConstraint("step_id"),
        Index("ix_candidate_campaign_hash", "campaign_id", "program_hash"),
        Index("ix_candidate_campaign_role", "campaign_id", "role", "evaluation_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaign.id", ondelete="CASCADE"))
    step_id: Mapped[int | None] = mapped_column(ForeignKey("step.id", ondelete="CASCADE", use_alter=True))
    role: Mapped[str] = mapped_column(String(20), default="proposal")  # proposal | seed
    code: Mapped[str] = mapped_column(Text)
    program_hash: Mapped[str] = mapped_column(String(64))
    parent_ids: Mapped[list[Any]] = mapped_column(JSON, default=list)
    diff: Mapped[str] = mapped_column(Text, default="")
    evaluation_id: Mapped[int | None] = mapped_column(ForeignKey("evaluation.id", use_alter=True))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Evaluation(Base):
    """What the trusted scorer concluded about a program (shared by identical programs)."""

    __tablename__ = "evaluation"
    __table_args__ = (
        UniqueConstraint("campaign_id", "cache_key"),
        Index("ix_evaluation_campaign_score", "campaign_id", "status", "score"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaign.id", ondelete="CASCADE"))
    candidate_id: Mapped[int] = mapped_column(ForeignKey("candidate.id", use_alter=True))
    cache_key: Mapped[str] = mapped_column(String(80))
    kind: Mapped[str] = mapped_column(String(20), default="search")  # search | holdout
    status: Mapped[str] = mapped_column(String(20))
    score: Mapped[float | None] = mapped_column(Float)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    feedback: Mapped[str] = mapped_column(Text, default="")
    stdout: Mapped[str] = mapped_column(Text, default="")
    stderr: Mapped[str] = mapped_column(Text, default="")
    duration_s: Mapped[float] = mapped_column(Float, default=0.0)
    cpu_s: Mapped[float] = mapped_column(Float, default=0.0)
    backend: Mapped[str] = mapped_column(String(20), default="")
    evaluator_version: Mapped[str] = mapped_column(String(50), default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Comparison(Base):
    """Several strategies x seeds run at one budget on one problem, and what came of it.

    `results` holds the ranked table rows, the per-strategy bands and every run's best-so-far
    curve (discovery.comparison.ComparisonResult.to_dict), so a dashboard redraws the comparison
    without recomputing it; `config` holds the settings shared by every run (overrides, --set
    assignments, config file, model).
    """

    __tablename__ = "comparison"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    problem: Mapped[str] = mapped_column(String(200), index=True)
    strategies: Mapped[list[Any]] = mapped_column(JSON)
    seeds: Mapped[list[Any]] = mapped_column(JSON)
    budget: Mapped[int] = mapped_column(Integer)
    target_pct: Mapped[float] = mapped_column(Float)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(20), default="created")  # created | running | completed | failed
    plot_path: Mapped[str] = mapped_column(Text, default="")
    results: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class ComparisonRun(Base):
    """One strategy x seed campaign of a comparison: its campaign, wall time and outcome."""

    __tablename__ = "comparison_run"
    __table_args__ = (UniqueConstraint("comparison_id", "strategy", "seed"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    comparison_id: Mapped[int] = mapped_column(ForeignKey("comparison.id", ondelete="CASCADE"), index=True)
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaign.id", ondelete="SET NULL"))
    strategy: Mapped[str] = mapped_column(String(50))
    seed: Mapped[int] = mapped_column(Integer)
    wall_s: Mapped[float | None] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(20), default="queued")  # queued | running | completed | stopped | failed | interrupted | cancelled
    error: Mapped[str] = mapped_column(Text, default="")


class Export(Base):
    """One `discovery export`: who ran it, when, with what, and what it wrote.

    `params` holds everything needed to run it again (the resolved campaign ids, formats,
    filters, and the selectors they came from); `files` maps each written file (relative to
    out_dir) to its sha256, size and row count, so a replay can be checked byte for byte.
    `replay_of` is the export whose parameters a replay re-used (the first of a chain).
    """

    __tablename__ = "export"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(200), default="")  # who ran it (not "user": reserved in PostgreSQL)
    command: Mapped[str] = mapped_column(Text, default="")
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    out_dir: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default="running")  # running | completed | failed
    row_counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # format -> split -> rows
    dropped: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # reason -> rows
    files: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # path -> {sha256, bytes, rows}
    stats: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # the shaper's stats, versions
    error: Mapped[str] = mapped_column(Text, default="")
    replay_of: Mapped[int | None] = mapped_column(ForeignKey("export.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class TrainingRun(Base):
    """One `discovery train sft|dpo|grpo`: the data, the base model, the settings, what came out.

    `data` says what was trained on (the export id and the sha256 of every file read, or for
    GRPO the prompt source and the reward campaign); `config` holds the resolved settings (every
    knob, so the run can be repeated) and the library versions; `metrics` the trainer's log
    history (loss, rewards, ...) and summary figures. `reward_campaigns` maps each problem to
    the campaign that holds every completion the GRPO reward function scored.
    """

    __tablename__ = "training_run"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    method: Mapped[str] = mapped_column(String(10))  # sft | dpo | grpo
    base_model: Mapped[str] = mapped_column(Text)
    output_dir: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(20), default="running")  # running | completed | failed | interrupted
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    reward_campaigns: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    username: Mapped[str] = mapped_column(String(200), default="")
    command: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
