"""Shaping stored steps into post-training rows: SFT records, preference pairs, step-level RL.

`shape(steps, ...)` reads `StepView`s ordered by (campaign_id, trajectory, index, sample) and
yields `(format, row)` pairs, each row a dict with exactly the columns of `COLUMNS[format]`. It
is a pure, streaming function: it holds one move (the samples of one prompt) at a time, and for
an R^3L campaign one base episode (its turns and reflection) together with its retry trajectory
(the next trajectory index), so memory does not grow with the number of rows. Deduplication
goes through a `Dedup` (a set in tests, an on-disk store in the exporter) and sees only
fixed-size digests. Same input, same rows in the same order: within a move (or an R^3L episode)
the SFT rows come first, then the preference rows, then the RL rows, each by sample/turn.

Normalised reward. With the problem's `ProblemScale` (f_lo, f_hi) and f = fitness(score)
(direction-aware: higher is better), an ok program's reward is clip((f - f_lo)/(f_hi - f_lo),
0, 1); an invalid, failed or unevaluated program, a parse failure and a failed call are 0. A
degenerate scale (f_lo missing, or f_hi <= f_lo) gives 1.0 to an ok program at or above f_hi
and 0.0 below it; with no f_hi at all every ok program gets 1.0. This scale is stationary over
the export (unlike ExIt's running scale, whose stored rewards are not re-exported).

Which rows each format holds:

- sft: one row per step whose program evaluated ok and, with `improved_only`, strictly beat its
  parent: fitness(score) > fitness(parent_score) when the parent is ok, and any ok child of a
  parent whose evaluation failed (a fix); a parent with no stored evaluation is not beaten.
  Without `improved_only` every ok step qualifies. messages = the prompt exactly as sent plus
  {"role": "assistant", "content": response}. An R^3L retry turn uses its
  `distilled_messages` (the guidance removed) unless `keep_guidance`. An R^3L reflection is an
  SFT row (mode "reflect", R^3L's "learn to reflect" item) exactly when the retry it led to
  finished and beat its base episode: score = the retry's best, parent_score = the base
  episode's best, reward = the retry's normalised best. Multi-turn (R^3L) rows carry earlier
  assistant turns as context: train on the last assistant message only. Deduplicated by
  (prompt, response), then by program hash; the first occurrence wins.
- preference, kind "group": for every move with at least two samples (SimpleTES, best_of_n,
  greedy_refine with k > 1, an ExIt group), chosen = the best ok sample (ties: lowest sample),
  rejected = the worst other sample with a response (an invalid program or an unparsable
  response is worst; ties: lowest sample; a failed call with no text is never a candidate),
  prompt = the shared prompt messages, chosen/rejected = one assistant message each. Kept only
  when chosen_reward > rejected_reward + min_gap. kind "r3l_retry": for a retry that finished
  and beat its base episode: prompt = the retry's pivot-turn prompt without guidance (the base
  episode's messages up to the pivot, the shared prefix), rejected = the base episode's turns
  from the pivot on (assistant and feedback messages in order, ending with its last assistant
  turn), chosen = the retry's turns from the pivot on, distilled (no guidance, whatever
  `keep_guidance` says: the base never saw it); scores/rewards = the episodes' bests (the retry's
  best includes the replayed turns before the pivot, as R^3L compares them); the step ids are
  those of the two pivot turns. Also subject to min_gap. Deduplicated by (prompt, chosen,
  rejected); not by program hash (one program may be chosen over different rejected ones).
- rl: one row per step with a response and a known outcome (an evaluated program or a parse
  failure; a failed call with no text or an unevaluated program has no row); R^3L reflections
  have none. prompt = messages, completion = [assistant response], group_id =
  "<campaign>:<trajectory>:<index>" (one prompt's samples), reward = the normalised reward,
  advantage = (r - mean) / std over the group (population std; 0 when std is 0 or the group has
  one sample), times the stored ExIt diversity coefficient when there is one; informativeness =
  ExIt's stored S of the group, diversity = the stored coefficient (None for other
  strategies). R^3L: the base episode and its retry form one group, group_id
  "<campaign>:<base trajectory>:episode", and every turn of an episode carries the episode's
  reward (the normalised best of the episode, the retry's counting its replayed turns) and
  advantage (so +1 / -1 between a base and its retry, 0 without a retry or on a tie):
  loss_mask = 0 on base turns before the pivot of an existing retry (the shared prefix, pivotal
  credit) and 1 elsewhere; weight = the retry's stored weight (alpha) on retry rows when it
  beat the base, else 1.0; off_policy = True on retry rows (sampled with guidance; their prompt
  is the distilled one unless keep_guidance); pivot = the pivot on retry rows and on the base
  rows of a retried episode. A row whose own program is not ok never gets a positive advantage
  (it is clamped to 0, which matters only inside an R^3L episode that did well overall).
  Advantages are computed over the group as sampled, before filters, privacy drops or
  anything else removes rows. RL rows are not deduplicated: identical samples in a group are
  legitimate rollouts, and dropping them would change the group the advantage describes.

Filters (every format): `top_pct` keeps, per campaign, the ceil(R% of its trajectories) (at
least one) with the best `TrajectoryStats.best_score` (ties: lower trajectory index; no score
ranks last; a trajectory without stats is dropped); `prefix_to_best` drops steps after their
trajectory's `best_index` (all of a trajectory that never reached an ok program). An R^3L pair
follows its retry trajectory: dropped with it by top_pct, and under prefix_to_best its chosen
suffix ends at the retry's best turn (the rejected base suffix is kept whole). No row whose
text (messages, response/completion, chosen/rejected) holds a secret or one of this machine's
absolute paths is exported (`Privacy`). split = "validation" for a campaign whose problem is
in `validation_problems`, else "train".

Every candidate row that is not exported is counted in `ShapeStats` under the first reason
that applies, in this order: top_pct / prefix_to_best; invalid / not_evaluated /
not_improved / no_response / unfinished / no_pair / min_gap; secret / absolute_path;
duplicate_prompt_response / duplicate_program. "invalid" is a step with no ok program (a failed
evaluation, an unparsable response or a failed call), "not_evaluated" one whose program has no
stored evaluation, "unfinished" an R^3L retry whose move never finished. An sft or rl candidate
is a step (a reflection for sft only), a group-preference candidate a move with at least two
samples, an R^3L pair candidate a retry trajectory.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from typing import Any, Iterable, Iterator, Mapping, Protocol, Sequence

from discovery.export.privacy import Privacy
from discovery.export.schema import (
    COLUMNS,
    FORMATS,
    SPLITS,
    CampaignView,
    ExportFilters,
    ProblemScale,
    StepView,
    TrajectoryStats,
)
from discovery.strategies.exit import group_advantages, normalised_score
from discovery.strategies.r3l import FAILED_CALL
from discovery.types import OK, fitness

Row = dict[str, Any]
Messages = list[dict[str, str]]

# Why a candidate row was not exported (ShapeStats keys).
TOP_PCT = "top_pct"
PREFIX_TO_BEST = "prefix_to_best"
INVALID = "invalid"
NOT_EVALUATED = "not_evaluated"
NOT_IMPROVED = "not_improved"
NO_RESPONSE = "no_response"
UNFINISHED = "unfinished"
NO_PAIR = "no_pair"
MIN_GAP = "min_gap"
DUPLICATE_PROGRAM = "duplicate_program"
DUPLICATE_PROMPT_RESPONSE = "duplicate_prompt_response"
# "secret" and "absolute_path" come from Privacy.find_leak.

LLM_ERROR = "llm_error"
PARSE_ERROR = "parse_error"
REFLECT = "reflect"


# -- deduplication -----------------------------------------------------------------------------


class Dedup(Protocol):
    """Remembers keys (16-byte digests): `seen` is True for a key seen before, else records it."""

    def seen(self, key: bytes) -> bool: ...


class MemoryDedup:
    """A `Dedup` in a set (tests, small exports)."""

    def __init__(self) -> None:
        self._keys: set[bytes] = set()

    def seen(self, key: bytes) -> bool:
        if key in self._keys:
            return True
        self._keys.add(key)
        return False

    def __len__(self) -> int:
        return len(self._keys)


def dedup_key(fmt: str, kind: str, *parts: str) -> bytes:
    """A 16-byte blake2b digest of `parts`, namespaced by format and kind (length-prefixed parts)."""
    h = hashlib.blake2b(f"{fmt}\0{kind}\0".encode(), digest_size=16)
    for part in parts:
        data = part.encode("utf-8", "surrogatepass")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.digest()


# -- statistics --------------------------------------------------------------------------------


class ShapeStats:
    """What `shape` kept and dropped: rows per format and split, drops by reason, score ranges.

    Attributes:
      steps: StepViews read.
      kept: format -> split -> rows exported.
      dropped: format -> split -> reason -> candidate rows not exported.
      problems: problem -> {"rows": {format: n}, "min_score", "max_score"} over exported rows
        (the scores of sft/rl rows, and both scores of preference pairs).
    """

    def __init__(self) -> None:
        self.steps = 0
        self.kept: dict[str, dict[str, int]] = {}
        self.dropped: dict[str, dict[str, dict[str, int]]] = {}
        self.problems: dict[str, dict[str, Any]] = {}

    def start(self, formats: Sequence[str]) -> None:
        """Makes every format and split appear in `kept`, even with no row."""
        for fmt in formats:
            for split in SPLITS:
                self.kept.setdefault(fmt, {}).setdefault(split, 0)

    def keep(self, fmt: str, split: str, problem: str, scores: Iterable[float | None]) -> None:
        self.kept.setdefault(fmt, {}).setdefault(split, 0)
        self.kept[fmt][split] += 1
        entry = self.problems.setdefault(problem, {"rows": {}, "min_score": None, "max_score": None})
        entry["rows"][fmt] = entry["rows"].get(fmt, 0) + 1
        for score in scores:
            if score is None:
                continue
            if entry["min_score"] is None or score < entry["min_score"]:
                entry["min_score"] = float(score)
            if entry["max_score"] is None or score > entry["max_score"]:
                entry["max_score"] = float(score)

    def drop(self, fmt: str, split: str, reason: str, n: int = 1) -> None:
        if n <= 0:
            return
        by_reason = self.dropped.setdefault(fmt, {}).setdefault(split, {})
        by_reason[reason] = by_reason.get(reason, 0) + n

    def dropped_total(self, fmt: str, reason: str) -> int:
        """Rows of `fmt` dropped for `reason`, both splits."""
        return sum(r.get(reason, 0) for r in self.dropped.get(fmt, {}).values())

    def kept_total(self, fmt: str) -> int:
        return sum(self.kept.get(fmt, {}).values())

    def as_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy with sorted keys."""
        return {
            "steps": self.steps,
            "kept": {f: dict(sorted(s.items())) for f, s in sorted(self.kept.items())},
            "dropped": {
                f: {s: dict(sorted(r.items())) for s, r in sorted(by_split.items())}
                for f, by_split in sorted(self.dropped.items())
            },
            "problems": {
                p: {"rows": dict(sorted(e["rows"].items())), "min_score": e["min_score"], "max_score": e["max_score"]}
                for p, e in sorted(self.problems.items())
            },
        }


# -- small pure rules --------------------------------------------------------------------------


def normalised_reward(score: float | None, status: str | None, scale: ProblemScale, direction: str) -> float:
    """The program's reward in [0, 1] on the problem's scale (see the module docstring)."""
    if status != OK or score is None:
        return 0.0
    f = fitness(score, direction)  # type: ignore[arg-type]
    lo, hi = scale.f_lo, scale.f_hi
    if hi is None:
        return 1.0
    if lo is None or hi <= lo:
        return 1.0 if f >= hi else 0.0
    return normalised_score(f, lo, hi)


def improved(step: StepView, direction: str) -> bool:
    """The step's program is ok and strictly better than its parent (any ok fix of a failed one)."""
    if step.eval_status != OK or step.parent_status is None:
        return False
    if step.parent_status != OK:
        return True
    return fitness(step.score, direction) > fitness(step.parent_score, direction)  # type: ignore[arg-type]


def top_trajectories(stats: Sequence[TrajectoryStats], pct: float, direction: str) -> frozenset[int]:
    """The ceil(pct% of them) (at least one) trajectories with the best best_score."""
    if not stats:
        return frozenset()
    n = max(1, math.ceil(len(stats) * pct / 100.0 - 1e-9))
    ranked = sorted(stats, key=lambda s: (-fitness(s.best_score, direction), s.trajectory))  # type: ignore[arg-type]
    return frozenset(s.trajectory for s in ranked[:n])


def messages_of(messages: Sequence[Mapping[str, Any]]) -> Messages:
    """Plain {"role", "content"} dicts (other keys dropped)."""
    return [{"role": str(m["role"]), "content": str(m.get("content") or "")} for m in messages]


def assistant(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


def _has_text(step: StepView) -> bool:
    return step.status != LLM_ERROR and bool(step.response.strip())


def _known(step: StepView) -> bool:
    """The outcome is known: an evaluated program, or a response with no program."""
    return step.eval_status is not None or (step.program_hash is None and step.status == PARSE_ERROR)


def _fit(step: StepView | None, direction: str) -> float:
    if step is None or step.eval_status != OK:
        return -math.inf
    return fitness(step.score, direction)  # type: ignore[arg-type]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


class _Prompt:
    """One prompt's messages, with its canonical text and leak verdict computed once."""

    def __init__(self, messages: Sequence[Mapping[str, Any]], privacy: Privacy) -> None:
        self.messages = messages_of(messages)
        self._privacy = privacy
        self._json: str | None = None
        self._leak: str | None | bool = False  # False: not checked yet

    @property
    def json(self) -> str:
        if self._json is None:
            self._json = json.dumps(self.messages, ensure_ascii=False, separators=(",", ":"))
        return self._json

    @property
    def leak(self) -> str | None:
        if self._leak is False:
            self._leak = self._privacy.find_leak("\n".join(m["content"] for m in self.messages))
        return self._leak  # type: ignore[return-value]


@dataclasses.dataclass(frozen=True)
class _Context:
    """What every row of one campaign shares."""

    campaign: CampaignView
    split: str
    scale: ProblemScale
    top: frozenset[int] | None  # trajectories kept by top_pct (None: no such filter)
    r3l: bool

    def reward(self, step: StepView | None) -> float:
        if step is None:
            return 0.0
        return normalised_reward(step.score, step.eval_status, self.scale, self.campaign.direction)

    def common(self, fmt: str, key: str) -> Row:
        c = self.campaign
        return {
            "id": f"{fmt}:{c.campaign_id}:{key}",
            "split": self.split,
            "problem": c.problem,
            "strategy": c.strategy,
            "model": c.model or "",
            "campaign_id": c.campaign_id,
        }


@dataclasses.dataclass
class _Episode:
    """An R^3L base episode (turns and reflection) and its retry, as read so far."""

    base_trajectory: int
    base: list[StepView] = dataclasses.field(default_factory=list)
    retry: list[StepView] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class _EpisodeFacts:
    """What an R^3L episode's rows share: its parts, pivot, outcome, bests, rewards, advantages."""

    turns: list[StepView]  # the base turns
    reflection: StepView | None
    retry: list[StepView]  # the retry turns (from the pivot on)
    pivot: int | None  # None without a retry
    finished: bool  # the retry's last turn was observed (its bookkeeping says whether it won)
    beat: bool  # the retry finished and beat the base episode
    weight: float  # the retry's stored weight when it beat the base, else 1.0
    base_best: StepView | None
    retry_best: StepView | None  # over the replayed turns before the pivot and the retry
    base_reward: float
    retry_reward: float
    base_advantage: float
    retry_advantage: float


# -- the shaper --------------------------------------------------------------------------------


def shape(
    steps: Iterable[StepView],
    *,
    campaigns: Mapping[int, CampaignView],
    trajectories: Mapping[tuple[int, int], TrajectoryStats],
    scales: Mapping[str, ProblemScale],
    filters: ExportFilters,
    formats: Sequence[str] = FORMATS,
    dedup: Dedup | None = None,
    privacy: Privacy | None = None,
    stats: ShapeStats | None = None,
) -> Iterator[tuple[str, Row]]:
    """Yields (format, row) for `steps` (see the module docstring); streams.

    Args:
      steps: ordered by (campaign_id, trajectory, index, sample); a ValueError is raised on the
        first step out of that order.
      campaigns: every campaign the steps belong to.
      trajectories: per (campaign_id, trajectory) its best score and index (top_pct and
        prefix_to_best read them).
      scales: per problem name, the fitness range of the normalised reward.
      filters: what to keep.
      formats: the formats to produce (a subset of FORMATS).
      dedup: the seen-keys store; a fresh MemoryDedup when None.
      privacy: the leak detector; Privacy.for_this_machine() when None.
      stats: filled with what was kept and dropped, when given.
    """
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"unknown export formats {unknown}; expected a subset of {list(FORMATS)}")
    if filters.top_pct is not None and not 0.0 < filters.top_pct <= 100.0:
        raise ValueError(f"top_pct must be in (0, 100], got {filters.top_pct}")
    if filters.min_gap < 0.0:
        raise ValueError(f"min_gap must be >= 0, got {filters.min_gap}")
    shaper = _Shaper(
        campaigns=campaigns,
        trajectories=trajectories,
        scales=scales,
        filters=filters,
        formats=tuple(formats),
        dedup=dedup if dedup is not None else MemoryDedup(),
        privacy=privacy if privacy is not None else Privacy.for_this_machine(),
        stats=stats if stats is not None else ShapeStats(),
    )
    return shaper.run(steps)


class _Shaper:
    def __init__(
        self,
        *,
        campaigns: Mapping[int, CampaignView],
        trajectories: Mapping[tuple[int, int], TrajectoryStats],
        scales: Mapping[str, ProblemScale],
        filters: ExportFilters,
        formats: tuple[str, ...],
        dedup: Dedup,
        privacy: Privacy,
        stats: ShapeStats,
    ) -> None:
        self.campaigns = campaigns
        self.trajectories = trajectories
        self.scales = scales
        self.filters = filters
        self.formats = formats
        self.sft = "sft" in formats
        self.preference = "preference" in formats
        self.rl = "rl" in formats
        self.dedup = dedup
        self.privacy = privacy
        self.stats = stats
        self._leaks: dict[str, str | None] = {}  # verdicts on the current move's texts
        stats.start(formats)
        self._by_campaign: dict[int, list[TrajectoryStats]] = {}
        if filters.top_pct is not None:
            for (campaign_id, _), t in sorted(trajectories.items()):
                self._by_campaign.setdefault(campaign_id, []).append(t)

    # -- driving -------------------------------------------------------------------------------

    def run(self, steps: Iterable[StepView]) -> Iterator[tuple[str, Row]]:
        ctx: _Context | None = None
        episode: _Episode | None = None
        for move in self._moves(steps):
            first = move[0]
            if ctx is None or first.campaign_id != ctx.campaign.campaign_id:
                if episode is not None:
                    yield from self._episode(ctx, episode)  # type: ignore[arg-type]
                    episode = None
                ctx = self._context(first.campaign_id)
            if not ctx.r3l:
                yield from self._move(ctx, move)
                continue
            base_trajectory = first.trajectory - first.trajectory % 2
            if episode is not None and episode.base_trajectory != base_trajectory:
                yield from self._episode(ctx, episode)
                episode = None
            if episode is None:
                episode = _Episode(base_trajectory)
            (episode.base if first.trajectory == base_trajectory else episode.retry).extend(move)
        if episode is not None and ctx is not None:
            yield from self._episode(ctx, episode)

    def _moves(self, steps: Iterable[StepView]) -> Iterator[list[StepView]]:
        """The steps grouped by move, checking the order."""
        move: list[StepView] = []
        previous: tuple[int, int, int, int] | None = None
        for step in steps:
            key = (step.campaign_id, step.trajectory, step.index, step.sample)
            if previous is not None and key <= previous:
                raise ValueError(f"steps must be ordered by (campaign, trajectory, index, sample): {key} after {previous}")
            if move and key[:3] != previous[:3]:  # type: ignore[index]
                yield move
                move = []
            move.append(step)
            previous = key
            self.stats.steps += 1
        if move:
            yield move

    def _context(self, campaign_id: int) -> _Context:
        campaign = self.campaigns.get(campaign_id)
        if campaign is None:
            raise ValueError(f"no CampaignView for campaign {campaign_id}")
        scale = self.scales.get(campaign.problem)
        if scale is None:
            raise ValueError(f"no ProblemScale for problem {campaign.problem!r}")
        top = None
        if self.filters.top_pct is not None:
            top = top_trajectories(self._by_campaign.get(campaign_id, []), self.filters.top_pct, campaign.direction)
        split = "validation" if campaign.problem in self.filters.validation_problems else "train"
        return _Context(campaign, split, scale, top, campaign.strategy == "r3l")

    def _filtered(self, ctx: _Context, trajectory: int, index: int) -> str | None:
        """top_pct / prefix_to_best, or None when the step passes both."""
        if ctx.top is not None and trajectory not in ctx.top:
            return TOP_PCT
        if self.filters.prefix_to_best:
            t = self.trajectories.get((ctx.campaign.campaign_id, trajectory))
            if t is None or t.best_index is None or index > t.best_index:
                return PREFIX_TO_BEST
        return None

    def _prompt(self, messages: Sequence[Mapping[str, Any]]) -> _Prompt:
        return _Prompt(messages, self.privacy)

    def _leak(self, prompt: _Prompt, *texts: str) -> str | None:
        if prompt.leak is not None:
            return prompt.leak
        for text in texts:
            if text not in self._leaks:
                self._leaks[text] = self.privacy.find_leak(text)
            if self._leaks[text] is not None:
                return self._leaks[text]
        return None

    def _emit(self, fmt: str, ctx: _Context, row: Row, scores: Iterable[float | None]) -> tuple[str, Row]:
        assert row.keys() == COLUMNS[fmt].keys(), (fmt, sorted(set(row) ^ set(COLUMNS[fmt])))
        self.stats.keep(fmt, ctx.split, ctx.campaign.problem, scores)
        return fmt, row

    # -- one move (every strategy but R^3L) ----------------------------------------------------

    def _move(self, ctx: _Context, move: list[StepView]) -> Iterator[tuple[str, Row]]:
        self._leaks.clear()
        first = move[0]
        reason = self._filtered(ctx, first.trajectory, first.index)
        if reason is not None:
            for fmt, n in (("sft", len(move)), ("preference", int(len(move) >= 2)), ("rl", len(move))):
                if fmt in self.formats:
                    self.stats.drop(fmt, ctx.split, reason, n)
            return
        prompt = self._prompt(first.messages)
        if self.sft:
            for step in move:
                yield from self._sft_step(ctx, step, prompt)
        if self.preference and len(move) >= 2:
            yield from self._group_pair(ctx, move, prompt)
        if self.rl:
            yield from self._rl_group(ctx, move, prompt)

    def _sft_step(self, ctx: _Context, step: StepView, prompt: _Prompt, reason: str | None = None) -> Iterator[tuple[str, Row]]:
        if reason is None:
            if step.eval_status is None:
                reason = NOT_EVALUATED if step.program_hash is not None else INVALID
            elif step.eval_status != OK:
                reason = INVALID
            elif self.filters.improved_only and not improved(step, ctx.campaign.direction):
                reason = NOT_IMPROVED
        yield from self._sft_row(
            ctx, step, prompt, reason,
            score=step.score, parent_score=step.parent_score, reward=ctx.reward(step),
            program=step.program_hash,
        )

    def _sft_row(
        self,
        ctx: _Context,
        step: StepView,
        prompt: _Prompt,
        reason: str | None,
        *,
        score: float | None,
        parent_score: float | None,
        reward: float,
        program: str | None,
    ) -> Iterator[tuple[str, Row]]:
        if reason is None and score is None:
            reason = INVALID
        reason = reason or self._leak(prompt, step.response)
        if reason is None and self.dedup.seen(dedup_key("sft", "prompt_response", prompt.json, step.response)):
            reason = DUPLICATE_PROMPT_RESPONSE
        if reason is None and program is not None and self.dedup.seen(dedup_key("sft", "program", program)):
            reason = DUPLICATE_PROGRAM
        if reason is not None:
            self.stats.drop("sft", ctx.split, reason)
            return
        row = ctx.common("sft", f"{step.trajectory}:{step.index}:{step.sample}")
        row.update(
            messages=[*prompt.messages, assistant(step.response)],
            score=float(score),  # type: ignore[arg-type]
            parent_score=_number(parent_score),
            reward=reward,
            mode=step.mode,
            step_id=step.step_id,
        )
        yield self._emit("sft", ctx, row, [score])

    def _group_pair(self, ctx: _Context, move: list[StepView], prompt: _Prompt) -> Iterator[tuple[str, Row]]:
        direction = ctx.campaign.direction
        usable = [s for s in move if _has_text(s) and _known(s)]
        good = [s for s in usable if s.eval_status == OK]
        reason = None
        if not good or len(usable) < 2:
            reason = NO_PAIR
        else:
            chosen = max(good, key=lambda s: (_fit(s, direction), -s.sample))
            rejected = min((s for s in usable if s is not chosen), key=lambda s: (_fit(s, direction), s.sample))
            chosen_reward, rejected_reward = ctx.reward(chosen), ctx.reward(rejected)
            if not chosen_reward > rejected_reward + self.filters.min_gap:
                reason = MIN_GAP
        if reason is None:
            chosen_messages = [assistant(chosen.response)]
            rejected_messages = [assistant(rejected.response)]
            yield from self._pair_row(
                ctx, prompt, chosen_messages, rejected_messages,
                key=f"{chosen.trajectory}:{chosen.index}:{chosen.sample}:{rejected.sample}",
                kind="group", chosen=chosen, rejected=rejected,
                chosen_score=chosen.score, rejected_score=rejected.score,
                chosen_reward=chosen_reward, rejected_reward=rejected_reward,
            )
        else:
            self.stats.drop("preference", ctx.split, reason)

    def _pair_row(
        self,
        ctx: _Context,
        prompt: _Prompt,
        chosen_messages: Messages,
        rejected_messages: Messages,
        *,
        key: str,
        kind: str,
        chosen: StepView,
        rejected: StepView,
        chosen_score: float | None,
        rejected_score: float | None,
        chosen_reward: float,
        rejected_reward: float,
    ) -> Iterator[tuple[str, Row]]:
        chosen_text = json.dumps(chosen_messages, ensure_ascii=False, separators=(",", ":"))
        rejected_text = json.dumps(rejected_messages, ensure_ascii=False, separators=(",", ":"))
        reason = self._leak(
            prompt, *(m["content"] for m in chosen_messages), *(m["content"] for m in rejected_messages)
        )
        if reason is None and self.dedup.seen(
            dedup_key("preference", "prompt_response", prompt.json, chosen_text, rejected_text)
        ):
            reason = DUPLICATE_PROMPT_RESPONSE
        if reason is not None:
            self.stats.drop("preference", ctx.split, reason)
            return
        row = ctx.common("preference", key)
        row.update(
            prompt=prompt.messages,
            chosen=chosen_messages,
            rejected=rejected_messages,
            kind=kind,
            chosen_score=_number(chosen_score),
            rejected_score=_number(rejected_score),
            chosen_reward=chosen_reward,
            rejected_reward=rejected_reward,
            chosen_step_id=chosen.step_id,
            rejected_step_id=rejected.step_id,
        )
        yield self._emit("preference", ctx, row, [chosen_score, rejected_score])

    def _rl_group(self, ctx: _Context, move: list[StepView], prompt: _Prompt) -> Iterator[tuple[str, Row]]:
        members = [s for s in move if _has_text(s) and _known(s)]
        rewards = [ctx.reward(s) for s in members]
        diversity = [_number(s.bookkeeping.get("diversity")) for s in members]
        scale = [1.0 if d is None else d for d in diversity]
        advantages = dict(zip((s.sample for s in members), group_advantages(rewards, scale)))
        by_sample = {s.sample: (r, d) for s, r, d in zip(members, rewards, diversity)}
        first = move[0]
        group_id = f"{first.campaign_id}:{first.trajectory}:{first.index}"
        for step in move:
            if step.sample not in by_sample:
                self.stats.drop("rl", ctx.split, NO_RESPONSE if not _has_text(step) else NOT_EVALUATED)
                continue
            reward, d = by_sample[step.sample]
            yield from self._rl_row(
                ctx, step, prompt, group_id=group_id, reward=reward, advantage=advantages[step.sample],
                informativeness=_number(step.bookkeeping.get("S")), diversity=d,
            )

    def _rl_row(
        self,
        ctx: _Context,
        step: StepView,
        prompt: _Prompt,
        *,
        group_id: str,
        reward: float,
        advantage: float,
        loss_mask: int = 1,
        weight: float = 1.0,
        off_policy: bool = False,
        informativeness: float | None = None,
        diversity: float | None = None,
        pivot: int | None = None,
    ) -> Iterator[tuple[str, Row]]:
        leak = self._leak(prompt, step.response)
        if leak is not None:
            self.stats.drop("rl", ctx.split, leak)
            return
        if step.eval_status != OK:
            advantage = min(advantage, 0.0)  # a failed program is never a positive example
        row = ctx.common("rl", f"{step.trajectory}:{step.index}:{step.sample}")
        row.update(
            prompt=prompt.messages,
            completion=[assistant(step.response)],
            reward=reward,
            group_id=group_id,
            advantage=float(advantage) + 0.0,
            loss_mask=loss_mask,
            weight=float(weight),
            mode=step.mode,
            status=step.eval_status or step.status,
            score=_number(step.score) if step.eval_status == OK else None,
            off_policy=off_policy,
            informativeness=informativeness,
            diversity=diversity,
            pivot=pivot,
            step_id=step.step_id,
        )
        yield self._emit("rl", ctx, row, [row["score"]])

    # -- one R^3L episode ----------------------------------------------------------------------

    def _facts(self, ctx: _Context, ep: _Episode) -> _EpisodeFacts:
        direction = ctx.campaign.direction
        turns = [s for s in ep.base if s.mode != REFLECT]
        retry = ep.retry
        pivot: int | None = None
        if retry:
            stored = retry[0].bookkeeping.get("pivot")
            pivot = stored if isinstance(stored, int) and not isinstance(stored, bool) else retry[0].index
        last = retry[-1].bookkeeping if retry else {}
        finished = bool(last.get("last_turn")) and "beat_base" in last
        beat = finished and bool(last["beat_base"])

        def best(steps: Iterable[StepView]) -> StepView | None:
            found = None
            for s in steps:
                if _fit(s, direction) > _fit(found, direction):
                    found = s
            return found

        base_best = best(turns)
        retry_best = best([*(s for s in turns if pivot is not None and s.index < pivot), *retry])
        rewards = ([ctx.reward(base_best)] if turns else []) + ([ctx.reward(retry_best)] if retry else [])
        advantages = group_advantages(rewards) if len(rewards) > 1 else [0.0] * len(rewards)
        return _EpisodeFacts(
            turns=turns,
            reflection=next((s for s in ep.base if s.mode == REFLECT), None),
            retry=retry,
            pivot=pivot,
            finished=finished,
            beat=beat,
            weight=float(last.get("weight", 1.0)) if beat else 1.0,
            base_best=base_best,
            retry_best=retry_best,
            base_reward=ctx.reward(base_best),
            retry_reward=ctx.reward(retry_best),
            base_advantage=advantages[0] if turns else 0.0,
            retry_advantage=advantages[-1] if retry else 0.0,
        )

    def _episode(self, ctx: _Context, ep: _Episode) -> Iterator[tuple[str, Row]]:
        self._leaks.clear()
        facts = self._facts(ctx, ep)
        # each turn's prompt: as sent for base turns; for retry turns the distilled copy unless
        # keep_guidance (None when unknown: the move never finished)
        prompts: dict[int, _Prompt | None] = {s.step_id: self._prompt(s.messages) for s in facts.turns}
        for s in facts.retry:
            messages = s.messages if self.filters.keep_guidance else s.bookkeeping.get("distilled_messages")
            prompts[s.step_id] = self._prompt(messages) if messages is not None else None
        if self.sft:
            yield from self._episode_sft(ctx, facts, prompts)
        if self.preference and facts.retry:
            yield from self._retry_pair(ctx, facts)
        if self.rl:
            yield from self._episode_rl(ctx, ep, facts, prompts)

    def _episode_sft(
        self, ctx: _Context, facts: _EpisodeFacts, prompts: Mapping[int, _Prompt | None]
    ) -> Iterator[tuple[str, Row]]:
        for step in facts.turns:
            yield from self._sft_step(ctx, step, prompts[step.step_id], self._filtered(ctx, step.trajectory, step.index))  # type: ignore[arg-type]
        reflection = facts.reflection
        if reflection is not None:
            reason = self._filtered(ctx, reflection.trajectory, reflection.index)
            if reason is None and not facts.beat:
                reason = NOT_IMPROVED
            yield from self._sft_row(
                ctx, reflection, self._prompt(reflection.messages), reason,
                score=facts.retry_best.score if facts.retry_best is not None else None,
                parent_score=facts.base_best.score if facts.base_best is not None else None,
                reward=facts.retry_reward, program=None,
            )
        for step in facts.retry:
            prompt = prompts[step.step_id]
            reason = self._filtered(ctx, step.trajectory, step.index)
            if reason is None and prompt is None:
                reason = UNFINISHED
            yield from self._sft_step(ctx, step, prompt or self._prompt([]), reason)

    def _episode_rl(
        self, ctx: _Context, ep: _Episode, facts: _EpisodeFacts, prompts: Mapping[int, _Prompt | None]
    ) -> Iterator[tuple[str, Row]]:
        group_id = f"{ctx.campaign.campaign_id}:{ep.base_trajectory}:episode"
        pivot = facts.pivot
        for step in (*facts.turns, *facts.retry):
            on_retry = step.trajectory != ep.base_trajectory
            prompt = prompts[step.step_id]
            reason = self._filtered(ctx, step.trajectory, step.index)
            if reason is None and not _has_text(step):
                reason = NO_RESPONSE
            if reason is None and not _known(step):
                reason = NOT_EVALUATED
            if reason is None and prompt is None:
                reason = UNFINISHED
            if reason is not None:
                self.stats.drop("rl", ctx.split, reason)
                continue
            masked = not on_retry and pivot is not None and step.index < pivot
            yield from self._rl_row(
                ctx, step, prompt,  # type: ignore[arg-type]
                group_id=group_id,
                reward=facts.retry_reward if on_retry else facts.base_reward,
                advantage=facts.retry_advantage if on_retry else facts.base_advantage,
                loss_mask=0 if masked else 1,
                weight=facts.weight if on_retry else 1.0,
                off_policy=on_retry,
                pivot=pivot,
            )

    def _retry_pair(self, ctx: _Context, facts: _EpisodeFacts) -> Iterator[tuple[str, Row]]:
        """The R^3L pair: base suffix (rejected) vs retry suffix (chosen) after a shared prefix."""
        retry, turns, pivot = facts.retry, facts.turns, facts.pivot
        retry_trajectory = retry[0].trajectory
        reason = None
        end = retry[-1]  # the last retry turn in the chosen suffix
        if ctx.top is not None and retry_trajectory not in ctx.top:
            reason = TOP_PCT
        elif self.filters.prefix_to_best:
            t = self.trajectories.get((ctx.campaign.campaign_id, retry_trajectory))
            upto = [s for s in retry if t is not None and t.best_index is not None and s.index <= t.best_index]
            if upto:
                end = upto[-1]
            else:
                reason = PREFIX_TO_BEST
        distilled = retry[0].bookkeeping.get("distilled_messages")
        end_distilled = end.bookkeeping.get("distilled_messages")
        if reason is None and (distilled is None or end_distilled is None or not facts.finished):
            reason = UNFINISHED
        elif reason is None and not facts.beat:
            reason = NOT_IMPROVED
        elif reason is None and not facts.retry_reward > facts.base_reward + self.filters.min_gap:
            reason = MIN_GAP
        prompt = self._prompt(distilled or [])
        n = len(prompt.messages)
        base_last = turns[-1] if turns else None
        if reason is None and (
            base_last is None or base_last.index < (pivot or 0) or messages_of(base_last.messages[:n]) != prompt.messages
        ):
            reason = NO_PAIR
        if reason is not None:
            self.stats.drop("preference", ctx.split, reason)
            return
        assert base_last is not None and end_distilled is not None
        rejected = [*messages_of(base_last.messages[n:]), assistant(base_last.response or FAILED_CALL)]
        chosen = [*messages_of(end_distilled[n:]), assistant(end.response or FAILED_CALL)]
        base_pivot = next((s for s in turns if s.index == pivot), base_last)
        yield from self._pair_row(
            ctx, prompt, chosen, rejected,
            key=f"{retry_trajectory}:{pivot}:0:r3l",
            kind="r3l_retry", chosen=retry[0], rejected=base_pivot,
            chosen_score=facts.retry_best.score if facts.retry_best is not None else None,
            rejected_score=facts.base_best.score if facts.base_best is not None else None,
            chosen_reward=facts.retry_reward, rejected_reward=facts.base_reward,
        )
