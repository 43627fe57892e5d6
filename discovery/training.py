"""Training on what campaigns found: settings, dataset records and the reward rule (pure).

`flows.train` wraps TRL's SFT, DPO and GRPO trainers; `flows.rewards` scores GRPO completions
in the sandbox. What they share and what can be decided without a model, a sandbox or a
database lives here, so it is unit-tested in milliseconds:

- `TrainSettings`: every knob of a run, validated with one-line errors (ConfigError).
- Dataset records in the conversational shapes TRL reads: SFT `{"prompt", "completion"}`, DPO
  `{"prompt", "chosen", "rejected"}` (from the export's sft and preference rows), and GRPO
  prompt rows `{"prompt", "problem", "parent_program", "keep_prefix", "source_step_id"}` (from
  stored steps: the prompt a proposer saw and the program it was asked to change).
- The reward rule. A completion is parsed into a program exactly as a campaign parses a
  response (`discovery.edits.apply_continuation` on the row's parent program), and:
    * an ok program's reward is its fitness: the problem's score when it maximises, minus the
      score when it minimises (higher is always better; rewards equal `discovery eval` scores
      up to that sign);
    * anything else (no text, an unparsable answer, an invalid program, an error, a timeout, a
      program killed by a limit) gets the run's `invalid_reward`, by default
      `fitness(seed) - max(|fitness(seed)|, 1)`: below the seed by at least its own size, so a
      broken answer ranks under any program within twice the seed's distance from zero, and
      the same for every completion of a problem (it does not depend on the batch).
- `group_keys`: which completions of one reward call answer the same prompt (one GRPO group),
  so they are stored as the samples of one move, as a campaign stores K samples.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any, Iterable, Literal, Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from discovery.config import ConfigError
from discovery.types import OK, fitness

Method = Literal["sft", "dpo", "grpo"]
METHODS: tuple[str, ...] = ("sft", "dpo", "grpo")

# A completion longer than this is not parsed (an answer that long is garbage, and the edit
# parser's work grows with it): it gets the invalid reward.
MAX_COMPLETION_CHARS = 200_000


class TrainSettings(BaseModel):
    """The knobs of one training run. None = TRL's own default for that method.

    Attributes:
      method: "sft" (chat records), "dpo" (preference pairs) or "grpo" (RL with our rewards).
      max_steps: optimisation steps; -1 = run `epochs` epochs.
      epochs: passes over the data when max_steps is -1.
      learning_rate, batch_size (per device), grad_accum, max_length (prompt + answer tokens,
        SFT/DPO), seed, beta (the KL / DPO temperature), logging_steps, save_steps.
      num_generations, max_completion_length, temperature: GRPO sampling (completions per
        prompt, their token limit, the sampling temperature).
      invalid_reward: the reward of a completion that is not an ok program (None: the default
        rule in the module docstring).
      eval_slots: GRPO completions scored at once in the sandbox.
      sandbox: the sandbox backend of the reward function (auto, process, bwrap, docker).
      trl: any further field of TRL's SFTConfig / DPOConfig / GRPOConfig, by name (checked
        against the installed TRL before anything runs).
    """

    model_config = ConfigDict(extra="forbid")

    method: Method
    max_steps: int = -1
    epochs: float = 1.0
    learning_rate: float | None = None
    batch_size: int = Field(default=2, ge=1)
    grad_accum: int = Field(default=1, ge=1)
    max_length: int | None = Field(default=None, ge=8)
    seed: int = 0
    beta: float | None = Field(default=None, ge=0.0)
    logging_steps: int = Field(default=1, ge=1)
    save_steps: int | None = Field(default=None, ge=1)
    num_generations: int = Field(default=4, ge=2)
    max_completion_length: int = Field(default=256, ge=1)
    temperature: float = Field(default=1.0, gt=0.0)
    invalid_reward: float | None = None
    eval_slots: int = Field(default=2, ge=1)
    sandbox: Literal["auto", "process", "bwrap", "docker"] = "auto"
    trl: dict[str, Any] = Field(default_factory=dict)

    @field_validator("max_steps")
    @classmethod
    def _steps(cls, v: int) -> int:
        if v == 0 or v < -1:
            raise ValueError("max_steps must be positive, or -1 to train for `epochs` epochs")
        return v

    @field_validator("learning_rate")
    @classmethod
    def _lr(cls, v: float | None) -> float | None:
        if v is not None and not (math.isfinite(v) and v > 0):
            raise ValueError("learning_rate must be a positive number")
        return v

    @field_validator("invalid_reward")
    @classmethod
    def _finite(cls, v: float | None) -> float | None:
        if v is not None and not math.isfinite(v):
            raise ValueError("invalid_reward must be a finite number")
        return v

    @model_validator(mode="after")
    def _epochs(self) -> "TrainSettings":
        if self.max_steps == -1 and not (self.epochs > 0):
            raise ValueError("epochs must be positive when max_steps is -1")
        if self.method == "grpo" and (self.batch_size * self.grad_accum) % self.num_generations:
            raise ValueError(
                f"batch_size x grad_accum ({self.batch_size} x {self.grad_accum}) must be a multiple of "
                f"num_generations ({self.num_generations}): each prompt's completions form one group")
        return self


def settings(method: str, **knobs: Any) -> TrainSettings:
    """TrainSettings from keyword knobs (None values are left at their defaults), or a
    one-line ConfigError naming the bad knob."""
    if method not in METHODS:
        raise ConfigError(f"unknown training method {method!r}: use one of {', '.join(METHODS)}")
    given = {k: v for k, v in knobs.items() if v is not None}
    try:
        return TrainSettings(method=method, **given)
    except ValidationError as exc:  # the first problem, one line
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        raise ConfigError(f"training setting {where}: {message}" if where else f"training settings: {message}"
                          ) from None


# ---------------------------------------------------------------- rewards


def invalid_reward_for(seed_score: float | None, direction: str, override: float | None = None) -> float:
    """The reward of a completion that is not an ok program (see the module docstring)."""
    if override is not None:
        return float(override)
    if seed_score is None or not math.isfinite(seed_score):
        return -1.0
    f = fitness(seed_score, direction)  # type: ignore[arg-type]
    return f - max(abs(f), 1.0)


def reward_of(status: str | None, score: float | None, direction: str, invalid_reward: float) -> float:
    """One completion's reward from its evaluation (status None: no program was parsed)."""
    if status == OK and score is not None and math.isfinite(score):
        return float(fitness(score, direction))  # type: ignore[arg-type]
    return float(invalid_reward)


def completion_text(completion: Any) -> str:
    """The answer text of one completion as TRL hands it over: a string (standard format), or
    a list of messages (conversational: the assistant's contents, joined). Anything else is
    garbage and reads as no text."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Mapping):
        completion = [completion]
    if isinstance(completion, (list, tuple)):
        parts = []
        for message in completion:
            if isinstance(message, Mapping) and message.get("role", "assistant") == "assistant":
                content = message.get("content")
                if isinstance(content, str):
                    parts.append(content)
                elif isinstance(content, list):  # content parts: [{"type": "text", "text": ...}]
                    parts += [p.get("text", "") for p in content if isinstance(p, Mapping)
                              and isinstance(p.get("text"), str)]
        return "".join(parts)
    return ""


def prompt_messages(prompt: Any) -> list[dict[str, str]]:
    """A prompt as stored messages: a conversational prompt as it is, a plain string as one
    user message; garbage as no messages."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    if isinstance(prompt, (list, tuple)):
        return [{"role": str(m.get("role", "user")), "content": str(m.get("content", ""))}
                for m in prompt if isinstance(m, Mapping)]
    return []


def group_keys(prompts: Sequence[Any], problems: Sequence[str], parents: Sequence[str]) -> list[tuple[int, int]]:
    """(group, sample) of each completion of one reward call: completions of the same problem,
    prompt and parent program form one group (GRPO's group), numbered by first appearance;
    samples count within their group."""
    groups: dict[str, int] = {}
    counts: dict[int, int] = {}
    out = []
    for prompt, problem, parent in zip(prompts, problems, parents):
        key = hashlib.sha256(json.dumps([problem, prompt_messages(prompt), parent], sort_keys=True,
                                        default=str).encode()).hexdigest()
        group = groups.setdefault(key, len(groups))
        out.append((group, counts.get(group, 0)))
        counts[group] = counts.get(group, 0) + 1
    return out


def keep_prefix(block: str, kept_lines: int) -> str:
    """The first `kept_lines` lines of an evolve block (R^3L's kept prefix at a pivot)."""
    if kept_lines <= 0:
        return ""
    return "".join(block.splitlines(keepends=True)[:kept_lines])


# ---------------------------------------------------------------- dataset records


def sft_records(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """TRL conversational prompt-completion records from exported sft rows: {"prompt": the
    messages before the last assistant message, "completion": [that message]}. TRL then computes
    the loss on the completion only (its default for this shape), with any chat template; a
    multi-turn (R^3L) row trains on its last answer, its earlier turns being context."""
    out = []
    for row in rows:
        messages = [dict(m) for m in row["messages"]]
        last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=None)
        if last is None:
            continue  # nothing to learn to say
        out.append({"prompt": messages[:last], "completion": [messages[last]]})
    return out


def preference_records(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """TRL conversational preference records from exported preference rows."""
    return [{"prompt": [dict(m) for m in row["prompt"]], "chosen": [dict(m) for m in row["chosen"]],
             "rejected": [dict(m) for m in row["rejected"]]} for row in rows]


def grpo_records(prompts: Iterable[Any], *, dedupe: bool = True) -> list[dict[str, Any]]:
    """GRPO prompt rows from stored step prompts (objects with step_id, problem, messages,
    parent_code and keep_prefix): one row per distinct (problem, prompt, parent), first wins."""
    out, seen = [], set()
    for p in prompts:
        key = (p.problem, json.dumps(p.messages, sort_keys=True), p.parent_code)
        if dedupe and key in seen:
            continue
        seen.add(key)
        out.append({"prompt": [dict(m) for m in p.messages], "problem": p.problem, "parent_program": p.parent_code,
                    "keep_prefix": p.keep_prefix, "source_step_id": p.step_id})
    return out
