"""Repository functions: every read and write the flows and the CLI make, one transaction each.

Writers are idempotent on the keys documented in db.models, so a resumed or retried task that
repeats a write gets the existing row back instead of a duplicate. The same holds for concurrent
writers (threads, processes, machines sharing one PostgreSQL): a keyed row is inserted with
INSERT ... ON CONFLICT DO NOTHING (see _insert_once) and the existing row read back in the same
transaction, never by catching an IntegrityError (which aborts a PostgreSQL transaction).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
from typing import Any, Iterable, Iterator, Sequence

from sqlalchemy import Connection, Engine, and_, case, create_engine, event, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased
from sqlalchemy.pool import NullPool

from db.engine import BUSY_TIMEOUT_MS, session_scope
from db.models import Campaign, Candidate, Evaluation, Step, Trajectory, utcnow


class UnknownCampaign(LookupError):
    """No campaign has that id."""


# ---------------------------------------------------------------- campaigns


def create_campaign(
    engine: Engine,
    *,
    name: str,
    problem: str,
    strategy: str,
    model: str,
    seed: int,
    budget: int,
    direction: str,
    evaluator_version: str,
    config: dict[str, Any],
) -> int:
    with session_scope(engine) as s:
        row = Campaign(
            name=name,
            problem=problem,
            strategy=strategy,
            model=model,
            seed=seed,
            budget=budget,
            direction=direction,
            evaluator_version=evaluator_version,
            config=config,
            status="created",
            error="",
        )
        s.add(row)
        s.flush()
        return row.id


def _get_or_explain(s: Session, model: type, row_id: int, error: type[LookupError], noun: str, empty_hint: str):
    """The `model` row with id `row_id`, or `error` naming up to five recent ids (or, in an
    empty table, `empty_hint`: how to make the first one)."""
    row = s.get(model, row_id)
    if row is None:
        known = s.scalars(select(model.id).order_by(model.id.desc()).limit(5)).all()
        hint = f"recent ids: {', '.join(map(str, known))}" if known else empty_hint
        raise error(f"no {noun} with id {row_id} ({hint})")
    return row


def _get_detached(engine: Engine, model: type, row_id: int, error: type[LookupError], noun: str, empty_hint: str):
    """`_get_or_explain` in its own transaction, the row detached from the session."""
    with session_scope(engine) as s:
        row = _get_or_explain(s, model, row_id, error, noun, empty_hint)
        s.expunge(row)
        return row


def _list(engine: Engine, model: type) -> list[Any]:
    """Every row of `model` in id order, detached from the session."""
    with session_scope(engine) as s:
        rows = list(s.scalars(select(model).order_by(model.id)))
        s.expunge_all()
        return rows


def get_campaign(engine: Engine, campaign_id: int) -> Campaign:
    return _get_detached(engine, Campaign, campaign_id, UnknownCampaign, "campaign",
                         "no campaigns yet: start one with `discovery run`")


def list_campaigns(engine: Engine) -> list[Campaign]:
    return _list(engine, Campaign)


def set_campaign_status(engine: Engine, campaign_id: int, status: str, *, error: str = "") -> None:
    values: dict[str, Any] = {"status": status, "error": error}
    now = utcnow()
    if status == "running":
        values["started_at"] = func.coalesce(Campaign.started_at, now)
        values["finished_at"] = None
    elif status in ("completed", "failed", "interrupted"):
        values["finished_at"] = now
    with session_scope(engine) as s:
        s.execute(update(Campaign).where(Campaign.id == campaign_id).values(**values))


def set_campaign_budget(engine: Engine, campaign_id: int, budget: int) -> None:
    """Stores a campaign's budget (a reward campaign's grows with every completion it scores)."""
    with session_scope(engine) as s:
        s.execute(update(Campaign).where(Campaign.id == campaign_id).values(budget=budget))


# ---------------------------------------------------------------- idempotent inserts


ON_CONFLICT_DIALECTS = ("postgresql", "sqlite")  # INSERT ... ON CONFLICT DO NOTHING RETURNING


def _insert_once(s: Session, model: type, values: dict[str, Any], keys: Sequence[str]) -> int | None:
    """Inserts one row of `model` unless a row with the same `keys` (a unique constraint) exists:
    returns the new row's id, or None when that row exists, in which case the caller reads it in
    the same transaction.

    PostgreSQL and SQLite: INSERT ... ON CONFLICT (keys) DO NOTHING RETURNING id. A conflict is
    not an error, so the transaction goes on; PostgreSQL first waits for a concurrent writer of
    the same key to commit or roll back, so a None means the row is committed, and the next
    statement (READ COMMITTED) sees it; SQLite writers hold the write lock (BEGIN IMMEDIATE).
    Other databases: the plain INSERT inside a SAVEPOINT, rolled back to on a duplicate key.
    """
    name = s.get_bind().dialect.name
    if name in ON_CONFLICT_DIALECTS:
        if name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        else:
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        stmt = dialect_insert(model).values(**values).on_conflict_do_nothing(index_elements=list(keys))
        return s.scalar(stmt.returning(model.id))
    try:
        with s.begin_nested():
            row = model(**values)
            s.add(row)
            s.flush()
            return row.id
    except IntegrityError:
        if s.scalar(select(model.id).filter_by(**{k: values[k] for k in keys})) is None:
            raise  # not a duplicate key (a missing parent row, say)
        return None


# ---------------------------------------------------------------- trajectories and steps


def ensure_trajectory(engine: Engine, campaign_id: int, index: int, kind: str = "chain") -> int:
    """Returns the id of trajectory `index` of the campaign, creating it once."""
    where = (Trajectory.campaign_id == campaign_id, Trajectory.index == index)
    with session_scope(engine) as s:
        found = s.scalar(select(Trajectory.id).where(*where))
        if found is not None:
            return found
        new = _insert_once(s, Trajectory, dict(campaign_id=campaign_id, index=index, kind=kind),
                           ("campaign_id", "index"))
        return new if new is not None else s.scalar(select(Trajectory.id).where(*where))


@dataclasses.dataclass(frozen=True)
class StoredSample:
    """One stored sample of a move: its step, its candidate (if any) and that candidate's evaluation."""

    step: Step
    candidate: Candidate | None
    evaluation: Evaluation | None


def load_move(engine: Engine, trajectory_id: int, index: int) -> dict[int, StoredSample]:
    """Every stored sample of move (trajectory, index), keyed by sample number."""
    with session_scope(engine) as s:
        rows = s.execute(
            select(Step, Candidate, Evaluation)
            .outerjoin(Candidate, Candidate.step_id == Step.id)
            .outerjoin(Evaluation, Evaluation.id == Candidate.evaluation_id)
            .where(Step.trajectory_id == trajectory_id, Step.index == index)
        ).all()
        s.expunge_all()
    return {step.sample: StoredSample(step, cand, ev) for step, cand, ev in rows}


def record_step(
    engine: Engine,
    *,
    campaign_id: int,
    trajectory_id: int,
    index: int,
    sample: int,
    mode: str,
    messages: Sequence[Any],
    parent_candidate_id: int | None,
    response: str,
    model: str,
    prompt_tokens: int,
    completion_tokens: int,
    cost_usd: float,
    latency_s: float,
    attempts: int,
    status: str,
    error: str,
    candidate: dict[str, Any] | None,
) -> tuple[int, int | None]:
    """Writes a step and, when the response parsed, its candidate, in one transaction.

    `candidate` holds code, program_hash, parent_ids and diff. Idempotent on
    (trajectory_id, index, sample): a repeat returns the stored ids and writes nothing.
    """
    with session_scope(engine) as s:
        step_id = _insert_once(s, Step, dict(
            campaign_id=campaign_id,
            trajectory_id=trajectory_id,
            index=index,
            sample=sample,
            mode=mode,
            messages=[dict(m) for m in messages],
            parent_candidate_id=parent_candidate_id,
            response=response,
            model=model,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost_usd=cost_usd,
            latency_s=latency_s,
            attempts=attempts,
            status=status,
            error=error,
            bookkeeping={},
        ), ("trajectory_id", "index", "sample"))
        if step_id is None:  # stored before (a retry, a resumed campaign, another worker): its ids
            step_id = s.scalar(
                select(Step.id).where(Step.trajectory_id == trajectory_id, Step.index == index, Step.sample == sample)
            )
            return step_id, s.scalar(select(Candidate.id).where(Candidate.step_id == step_id))
        candidate_id = None
        if candidate is not None:
            cand = Candidate(campaign_id=campaign_id, step_id=step_id, role="proposal", **candidate)
            s.add(cand)
            s.flush()
            candidate_id = cand.id
        return step_id, candidate_id


def finish_move(engine: Engine, step_ids: dict[int, int], committed: int | None, bookkeeping: dict[int, dict]) -> None:
    """Stores what the strategy made of a finished move on each of its steps (sample -> step id)."""
    with session_scope(engine) as s:
        for sample, step_id in step_ids.items():
            s.execute(
                update(Step)
                .where(Step.id == step_id)
                .values(committed=(sample == committed), bookkeeping=dict(bookkeeping.get(sample, {})))
            )


# ---------------------------------------------------------------- candidates and evaluations


def ensure_seed_candidate(engine: Engine, campaign_id: int, code: str, program_hash: str) -> int:
    """Returns the id of the campaign's seed candidate, creating it once.

    The key (campaign_id, role="seed") has no unique constraint, so concurrent callers take turns
    on the campaign's row: SELECT ... FOR NO KEY UPDATE on PostgreSQL (it does not block writers
    of the campaign's other rows), nothing on SQLite, whose writers already take turns.
    """
    return _ensure_stepless_candidate(engine, campaign_id, code, program_hash, "seed")


def ensure_parent_candidate(engine: Engine, campaign_id: int, code: str, program_hash: str) -> int:
    """Returns the id of a program that no step of this campaign produced but its steps start
    from (role "parent": a GRPO prompt's parent program), creating it once per program hash;
    the seed candidate when the program is the seed. Concurrent callers take turns as in
    ensure_seed_candidate."""
    return _ensure_stepless_candidate(engine, campaign_id, code, program_hash, "parent")


def _ensure_stepless_candidate(engine: Engine, campaign_id: int, code: str, program_hash: str, role: str) -> int:
    with session_scope(engine) as s:
        s.execute(select(Campaign.id).where(Campaign.id == campaign_id).with_for_update(key_share=True))
        where = [Candidate.campaign_id == campaign_id, Candidate.step_id.is_(None)]
        if role == "seed":
            where.append(Candidate.role == "seed")
        else:
            where += [Candidate.program_hash == program_hash, Candidate.role.in_(("seed", role))]
        found = s.scalar(select(Candidate.id).where(*where).order_by(Candidate.id).limit(1))
        if found is not None:
            return found
        cand = Candidate(campaign_id=campaign_id, step_id=None, role=role, code=code, program_hash=program_hash,
                         parent_ids=[], diff="")
        s.add(cand)
        s.flush()
        return cand.id


def next_trajectory_index(engine: Engine, campaign_id: int) -> int:
    """One more than the campaign's highest trajectory index (0 for a campaign without any)."""
    with session_scope(engine) as s:
        top = s.scalar(select(func.max(Trajectory.index)).where(Trajectory.campaign_id == campaign_id))
        return 0 if top is None else top + 1


@dataclasses.dataclass(frozen=True)
class StepPrompt:
    """A stored program step's prompt and the program it was asked to change."""

    step_id: int
    campaign_id: int
    problem: str
    messages: list[Any]
    parent_code: str
    kept_lines: int  # the first lines of the parent's evolve block the answer had to keep


def step_prompts(engine: Engine, *, campaign_ids: Sequence[int] = (), step_ids: Sequence[int] = ()) -> list[StepPrompt]:
    """The prompt and parent program of every program step of the given campaigns, or of the
    given steps (in step id order). Text moves (R^3L reflections) and steps without a parent are
    left out. `kept_lines` is R^3L's kept prefix, on the retry turn at the pivot only."""
    parent = aliased(Candidate)
    stmt = (
        select(Step.id, Step.campaign_id, Campaign.problem, Step.messages, parent.code, Step.index, Step.bookkeeping)
        .join(Campaign, Campaign.id == Step.campaign_id)
        .join(parent, parent.id == Step.parent_candidate_id)
        .where(Step.mode != "reflect")
        .order_by(Step.id)
    )
    if step_ids:
        stmt = stmt.where(Step.id.in_(list(step_ids)))
    else:
        stmt = stmt.where(Step.campaign_id.in_(list(campaign_ids)))
    out = []
    with session_scope(engine) as s:
        for step_id, campaign_id, problem, messages, code, index, bk in s.execute(stmt):
            bk = bk or {}
            kept = int(bk.get("kept_lines") or 0) if bk.get("pivot") == index else 0
            out.append(StepPrompt(step_id, campaign_id, problem, list(messages or []), code, kept))
    return out


def get_candidate(engine: Engine, candidate_id: int) -> tuple[Candidate, Evaluation | None]:
    with session_scope(engine) as s:
        cand = s.get(Candidate, candidate_id)
        if cand is None:
            raise LookupError(f"no candidate with id {candidate_id}")
        ev = s.get(Evaluation, cand.evaluation_id) if cand.evaluation_id else None
        s.expunge_all()
        return cand, ev


def find_evaluation(engine: Engine, campaign_id: int, cache_key: str) -> Evaluation | None:
    with session_scope(engine) as s:
        ev = s.scalar(select(Evaluation).where(Evaluation.campaign_id == campaign_id, Evaluation.cache_key == cache_key))
        if ev is not None:
            s.expunge(ev)
        return ev


def record_evaluation(
    engine: Engine,
    *,
    campaign_id: int,
    candidate_id: int,
    cache_key: str,
    fields: dict[str, Any],
    kind: str = "search",
) -> int:
    """Stores an evaluation once per (campaign, cache_key).

    A search evaluation becomes the candidate's evaluation (candidate.evaluation_id); other kinds
    (holdout, recheck) are stored beside it and never replace what the search saw.
    """
    with session_scope(engine) as s:
        ev_id = _insert_once(s, Evaluation, dict(campaign_id=campaign_id, candidate_id=candidate_id,
                                                 cache_key=cache_key, kind=kind, **fields),
                             ("campaign_id", "cache_key"))
        if ev_id is None:  # stored before, or an identical program's evaluation: shared
            ev_id = s.scalar(
                select(Evaluation.id).where(Evaluation.campaign_id == campaign_id, Evaluation.cache_key == cache_key)
            )
        if kind == "search":
            s.execute(update(Candidate).where(Candidate.id == candidate_id).values(evaluation_id=ev_id))
        return ev_id


def top_candidates(engine: Engine, campaign_id: int, direction: str, limit: int) -> list[tuple[Candidate, Evaluation]]:
    """The best `limit` distinct programs of a campaign by their search evaluation."""
    order = Evaluation.score.desc() if direction == "maximize" else Evaluation.score.asc()
    with session_scope(engine) as s:
        rows = s.execute(
            select(Candidate, Evaluation)
            .join(Evaluation, Evaluation.id == Candidate.evaluation_id)
            .where(Candidate.campaign_id == campaign_id, Evaluation.status == "ok", Evaluation.kind == "search")
            .order_by(order, Candidate.id)
        ).all()
        s.expunge_all()
    out, seen = [], set()
    for cand, ev in rows:
        if cand.program_hash in seen:
            continue
        seen.add(cand.program_hash)
        out.append((cand, ev))
        if len(out) == limit:
            break
    return out


def link_evaluation(engine: Engine, candidate_id: int, evaluation_id: int) -> None:
    with session_scope(engine) as s:
        s.execute(update(Candidate).where(Candidate.id == candidate_id).values(evaluation_id=evaluation_id))


# ---------------------------------------------------------------- summaries


@dataclasses.dataclass(frozen=True)
class CampaignSummary:
    campaign: Campaign
    steps: int
    candidates: int
    evaluations: int
    unevaluated_candidates: int
    by_status: dict[str, int]
    step_status: dict[str, int]
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    seed_score: float | None
    best_score: float | None
    best_candidate_id: int | None
    best_code: str | None
    duration_s: float | None


def summarize(engine: Engine, campaign_id: int) -> CampaignSummary:
    campaign = get_campaign(engine, campaign_id)
    with session_scope(engine) as s:
        steps, ptok, ctok, cost = s.execute(
            select(
                func.count(Step.id),
                func.coalesce(func.sum(Step.prompt_tokens), 0),
                func.coalesce(func.sum(Step.completion_tokens), 0),
                func.coalesce(func.sum(Step.cost_usd), 0.0),
            ).where(Step.campaign_id == campaign_id)
        ).one()
        step_status = dict(
            s.execute(select(Step.status, func.count()).where(Step.campaign_id == campaign_id).group_by(Step.status)).all()
        )
        n_cands = s.scalar(select(func.count(Candidate.id)).where(Candidate.campaign_id == campaign_id))
        unevaluated = s.scalar(
            select(func.count(Candidate.id)).where(Candidate.campaign_id == campaign_id, Candidate.evaluation_id.is_(None))
        )
        by_status = dict(
            s.execute(
                select(Evaluation.status, func.count())
                .where(Evaluation.campaign_id == campaign_id, Evaluation.kind == "search")
                .group_by(Evaluation.status)
            ).all()
        )
        order = Evaluation.score.desc() if campaign.direction == "maximize" else Evaluation.score.asc()
        best = s.execute(
            select(Evaluation.score, Candidate.id, Candidate.code)
            .join(Candidate, Candidate.evaluation_id == Evaluation.id)
            .where(Evaluation.campaign_id == campaign_id, Evaluation.status == "ok", Evaluation.kind == "search")
            .order_by(order, Candidate.id)
            .limit(1)
        ).first()
        seed_score = s.scalar(
            select(Evaluation.score)
            .join(Candidate, Candidate.evaluation_id == Evaluation.id)
            .where(Candidate.campaign_id == campaign_id, Candidate.role == "seed")
        )
    duration = None
    if campaign.started_at and campaign.finished_at:
        duration = (_aware(campaign.finished_at) - _aware(campaign.started_at)).total_seconds()
    return CampaignSummary(
        campaign=campaign,
        steps=steps,
        candidates=n_cands,
        evaluations=sum(by_status.values()),
        unevaluated_candidates=unevaluated,
        by_status=by_status,
        step_status=step_status,
        prompt_tokens=int(ptok),
        completion_tokens=int(ctok),
        cost_usd=float(cost),
        seed_score=seed_score,
        best_score=best[0] if best else None,
        best_candidate_id=best[1] if best else None,
        best_code=best[2] if best else None,
        duration_s=duration,
    )


def _aware(t: dt.datetime) -> dt.datetime:
    return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)


def campaign_cost(engine: Engine, campaign_id: int) -> float:
    """USD spent on proposer calls so far."""
    with session_scope(engine) as s:
        return float(s.scalar(select(func.coalesce(func.sum(Step.cost_usd), 0.0)).where(Step.campaign_id == campaign_id)))


def count_rows(engine: Engine, campaign_id: int) -> dict[str, int]:
    """Row counts per table for one campaign (used by tests and `discovery show`)."""
    with session_scope(engine) as s:
        return {
            "trajectories": s.scalar(select(func.count()).where(Trajectory.campaign_id == campaign_id)),
            "steps": s.scalar(select(func.count()).where(Step.campaign_id == campaign_id)),
            "candidates": s.scalar(select(func.count()).where(Candidate.campaign_id == campaign_id)),
            "evaluations": s.scalar(select(func.count()).where(Evaluation.campaign_id == campaign_id)),
        }


def steps_of(engine: Engine, campaign_id: int) -> list[Step]:
    with session_scope(engine) as s:
        rows = list(s.scalars(select(Step).where(Step.campaign_id == campaign_id).order_by(Step.id)))
        s.expunge_all()
        return rows


def candidates_of(engine: Engine, campaign_id: int) -> list[tuple[Candidate, Evaluation | None]]:
    with session_scope(engine) as s:
        rows = s.execute(
            select(Candidate, Evaluation)
            .outerjoin(Evaluation, Evaluation.id == Candidate.evaluation_id)
            .where(Candidate.campaign_id == campaign_id)
            .order_by(Candidate.id)
        ).all()
        s.expunge_all()
        return [(c, e) for c, e in rows]


def ids(rows: Iterable[Any]) -> list[int]:
    return [r.id for r in rows]


# ---------------------------------------------------------------- comparisons


class UnknownComparison(LookupError):
    """No comparison has that id."""


def evaluation_trace(engine: Engine, campaign_id: int) -> list[tuple[int, str, float | None]]:
    """(step id, status, score) of every proposed candidate with a search evaluation, in step
    order (a cache hit of an identical program is listed with the evaluation it shares)."""
    with session_scope(engine) as s:
        rows = s.execute(
            select(Candidate.step_id, Evaluation.status, Evaluation.score)
            .join(Evaluation, Evaluation.id == Candidate.evaluation_id)
            .where(Candidate.campaign_id == campaign_id, Candidate.step_id.is_not(None))
            .order_by(Candidate.step_id)
        ).all()
    return [(int(step_id), status, score) for step_id, status, score in rows]


def create_comparison(
    engine: Engine,
    *,
    name: str,
    problem: str,
    strategies: Sequence[str],
    seeds: Sequence[int],
    budget: int,
    target_pct: float,
    config: dict[str, Any],
) -> tuple[int, dict[tuple[str, int], int]]:
    """Creates a comparison (status running) and its queued runs in seed-major order, in one
    transaction; returns its id and the run ids keyed by (strategy, seed)."""
    from db.models import Comparison, ComparisonRun

    with session_scope(engine) as s:
        row = Comparison(
            name=name, problem=problem, strategies=list(strategies), seeds=list(seeds), budget=budget,
            target_pct=target_pct, config=config, status="running", plot_path="", results={}, error="",
        )
        s.add(row)
        s.flush()
        runs = {}
        for seed in seeds:
            for strategy in strategies:
                run = ComparisonRun(comparison_id=row.id, strategy=strategy, seed=seed, status="queued", error="")
                s.add(run)
                s.flush()
                runs[(strategy, seed)] = run.id
        return row.id, runs


def update_comparison_run(engine: Engine, run_id: int, **values: Any) -> None:
    """Sets fields of one comparison run (campaign_id, status, wall_s, error)."""
    from db.models import ComparisonRun

    with session_scope(engine) as s:
        s.execute(update(ComparisonRun).where(ComparisonRun.id == run_id).values(**values))


def finish_comparison(
    engine: Engine, comparison_id: int, *, status: str, results: dict[str, Any] | None = None,
    plot_path: str | None = None, error: str = "",
) -> None:
    """Stores a comparison's outcome (completed or failed), its results and plot path."""
    from db.models import Comparison

    values: dict[str, Any] = {"status": status, "error": error, "finished_at": utcnow()}
    if results is not None:
        values["results"] = results
    if plot_path is not None:
        values["plot_path"] = plot_path
    with session_scope(engine) as s:
        s.execute(update(Comparison).where(Comparison.id == comparison_id).values(**values))


def get_comparison(engine: Engine, comparison_id: int) -> tuple[Any, list[Any]]:
    """A comparison and its runs (in the order they were queued)."""
    from db.models import Comparison, ComparisonRun

    with session_scope(engine) as s:
        row = _get_or_explain(s, Comparison, comparison_id, UnknownComparison, "comparison",
                              "no comparisons yet: start one with `discovery compare`")
        runs = list(s.scalars(select(ComparisonRun).where(ComparisonRun.comparison_id == comparison_id)
                              .order_by(ComparisonRun.id)))
        s.expunge_all()
        return row, runs


def list_comparisons(engine: Engine) -> list[Any]:
    from db.models import Comparison

    return _list(engine, Comparison)


# ---------------------------------------------------------------- exports


class UnknownExport(LookupError):
    """No export has that id."""


EXPORTABLE_STATUSES = ("completed", "stopped", "interrupted")


def find_campaigns(
    engine: Engine, *, ids: Sequence[int] | None = None, problems: Sequence[str] | None = None,
    strategies: Sequence[str] | None = None,
) -> list[Campaign]:
    """Campaigns by id (in id order; unknown ids are simply absent), or every campaign whose
    problem and strategy are among the given ones (None = any)."""
    stmt = select(Campaign).order_by(Campaign.id)
    if ids is not None:
        stmt = stmt.where(Campaign.id.in_(list(ids)))
    if problems:
        stmt = stmt.where(Campaign.problem.in_(list(problems)))
    if strategies:
        stmt = stmt.where(Campaign.strategy.in_(list(strategies)))
    with session_scope(engine) as s:
        rows = list(s.scalars(stmt))
        s.expunge_all()
        return rows


def create_export(
    engine: Engine, *, username: str, command: str, params: dict[str, Any], out_dir: str, replay_of: int | None = None,
) -> int:
    """Stores a starting export (status running); returns its id."""
    from db.models import Export

    with session_scope(engine) as s:
        row = Export(username=username, command=command, params=params, out_dir=out_dir, status="running",
                     row_counts={}, dropped={}, files={}, stats={}, error="", replay_of=replay_of)
        s.add(row)
        s.flush()
        return row.id


def finish_export(engine: Engine, export_id: int, *, status: str, error: str = "", **values: Any) -> None:
    """Stores an export's outcome: status completed or failed, its error, and any of
    row_counts, dropped, files, stats."""
    from db.models import Export

    values.update(status=status, error=error, finished_at=utcnow())
    with session_scope(engine) as s:
        s.execute(update(Export).where(Export.id == export_id).values(**values))


def get_export(engine: Engine, export_id: int) -> Any:
    from db.models import Export

    return _get_detached(engine, Export, export_id, UnknownExport, "export",
                         "no exports yet: make one with `discovery export CAMPAIGN_IDS --out DIR`")


def list_exports(engine: Engine) -> list[Any]:
    from db.models import Export

    return _list(engine, Export)


@contextlib.contextmanager
def read_snapshot(engine: Engine) -> Iterator[Connection]:
    """A read-only connection that sees one consistent snapshot of the database, for long reads.

    SQLite: a separate connection whose transaction is a plain deferred BEGIN (a WAL reader),
    not the engine's BEGIN IMMEDIATE, so a long export never holds the write lock that running
    campaigns need; `query_only` forbids writes on it. Other databases: a REPEATABLE READ,
    read-only transaction on the engine's pool.
    """
    if engine.dialect.name != "sqlite":
        with engine.connect() as conn:
            conn = conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
            with conn.begin():
                yield conn
        return
    reader = create_engine(engine.url, poolclass=NullPool,
                           connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(reader, "connect")
    def _on_connect(dbapi_connection, _record):  # noqa: ANN001
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA query_only=ON")
        cursor.close()

    @event.listens_for(reader, "begin")
    def _on_begin(conn):  # noqa: ANN001
        conn.exec_driver_sql("BEGIN")

    try:
        with reader.connect() as conn:
            with conn.begin():
                yield conn
    finally:
        reader.dispose()


def export_campaign_scores(conn: Connection, campaign_ids: Sequence[int]) -> dict[int, tuple[float | None, float | None]]:
    """campaign id -> (seed score, best score) over ok search evaluations (direction-aware); the
    seed score is None unless the seed program's evaluation is ok."""
    ids = list(campaign_ids)
    seeds = dict(conn.execute(
        select(Candidate.campaign_id, Evaluation.score)
        .join(Evaluation, Evaluation.id == Candidate.evaluation_id)
        .where(Candidate.campaign_id.in_(ids), Candidate.role == "seed", Evaluation.status == "ok",
               Evaluation.score.is_not(None))
    ).all())
    extremes = conn.execute(
        select(Candidate.campaign_id, Campaign.direction, func.max(Evaluation.score), func.min(Evaluation.score))
        .join(Evaluation, Evaluation.id == Candidate.evaluation_id)
        .join(Campaign, Campaign.id == Candidate.campaign_id)
        .where(Candidate.campaign_id.in_(ids), Evaluation.status == "ok", Evaluation.kind == "search",
               Evaluation.score.is_not(None))
        .group_by(Candidate.campaign_id, Campaign.direction)
    ).all()
    best = {cid: (hi if direction == "maximize" else lo) for cid, direction, hi, lo in extremes}
    return {cid: (seeds.get(cid), best.get(cid)) for cid in ids}


def export_trajectory_bests(
    conn: Connection, campaign_ids: Sequence[int]
) -> list[tuple[int, int, float | None, int | None]]:
    """(campaign id, trajectory index, best ok search score, first move index reaching it) for
    every trajectory of the campaigns, ordered; (.., None, None) for a trajectory without one."""
    ids = list(campaign_ids)
    ok = (
        select(Trajectory.campaign_id.label("campaign_id"), Trajectory.index.label("trajectory"),
               Step.index.label("move"), Evaluation.score.label("score"), Campaign.direction.label("direction"))
        .select_from(Step)
        .join(Trajectory, Trajectory.id == Step.trajectory_id)
        .join(Campaign, Campaign.id == Trajectory.campaign_id)
        .join(Candidate, Candidate.step_id == Step.id)
        .join(Evaluation, Evaluation.id == Candidate.evaluation_id)
        .where(Trajectory.campaign_id.in_(ids), Evaluation.status == "ok", Evaluation.kind == "search",
               Evaluation.score.is_not(None))
        .cte("ok_moves")
    )
    best = (
        select(ok.c.campaign_id, ok.c.trajectory,
               case((func.max(ok.c.direction) == "maximize", func.max(ok.c.score)),
                    else_=func.min(ok.c.score)).label("best"))
        .group_by(ok.c.campaign_id, ok.c.trajectory)
        .cte("best")
    )
    reached = dict(
        ((cid, t), (b, m)) for cid, t, b, m in conn.execute(
            select(best.c.campaign_id, best.c.trajectory, best.c.best, func.min(ok.c.move))
            .join(ok, and_(ok.c.campaign_id == best.c.campaign_id, ok.c.trajectory == best.c.trajectory,
                           ok.c.score == best.c.best))
            .group_by(best.c.campaign_id, best.c.trajectory, best.c.best)
        )
    )
    out = []
    for cid, t in conn.execute(
        select(Trajectory.campaign_id, Trajectory.index).where(Trajectory.campaign_id.in_(ids))
        .order_by(Trajectory.campaign_id, Trajectory.index)
    ):
        b, m = reached.get((cid, t), (None, None))
        out.append((cid, t, b, m))
    return out


EXPORT_STEP_COLUMNS = (
    "step_id", "campaign_id", "trajectory", "index", "sample", "mode", "messages", "response", "status",
    "committed", "bookkeeping", "program_hash", "code", "eval_status", "score", "parent_status", "parent_score",
)


def iter_export_steps(conn: Connection, campaign_ids: Sequence[int], *, chunk: int = 1000) -> Iterator[tuple]:
    """Every step of the campaigns with its candidate, the candidate's search evaluation and the
    parent program's search evaluation, as plain tuples in EXPORT_STEP_COLUMNS order, ordered by
    (campaign, trajectory index, move index, sample); streamed `chunk` rows at a time (a
    server-side cursor where the driver has one), so memory does not grow with the rows."""
    parent = aliased(Candidate)
    parent_eval = aliased(Evaluation)
    stmt = (
        select(
            Step.id, Trajectory.campaign_id, Trajectory.index, Step.index, Step.sample, Step.mode, Step.messages,
            Step.response, Step.status, Step.committed, Step.bookkeeping, Candidate.program_hash, Candidate.code,
            Evaluation.status, Evaluation.score, parent_eval.status, parent_eval.score,
        )
        .select_from(Trajectory)
        .join(Step, Step.trajectory_id == Trajectory.id)
        .outerjoin(Candidate, Candidate.step_id == Step.id)
        .outerjoin(Evaluation, and_(Evaluation.id == Candidate.evaluation_id, Evaluation.kind == "search"))
        .outerjoin(parent, parent.id == Step.parent_candidate_id)
        .outerjoin(parent_eval, and_(parent_eval.id == parent.evaluation_id, parent_eval.kind == "search"))
        .order_by(Trajectory.campaign_id, Trajectory.index, Step.index, Step.sample)
    )
    for cid in sorted(set(campaign_ids)):  # one query per campaign: each is served in index order
        result = conn.execution_options(stream_results=True, yield_per=chunk).execute(
            stmt.where(Trajectory.campaign_id == cid))
        try:
            for part in result.partitions():
                for row in part:
                    yield tuple(row)
        finally:
            result.close()


def export_campaigns(conn: Connection, campaign_ids: Sequence[int]) -> list[dict[str, Any]]:
    """The campaign rows (id, name, problem, strategy, model, seed, budget, status, direction), id order."""
    t = Campaign.__table__
    cols = [t.c.id, t.c.name, t.c.problem, t.c.strategy, t.c.model, t.c.seed, t.c.budget, t.c.status, t.c.direction]
    rows = conn.execute(select(*cols).where(t.c.id.in_(list(campaign_ids))).order_by(t.c.id)).mappings().all()
    return [dict(r) for r in rows]


# ---------------------------------------------------------------- training runs


class UnknownTrainingRun(LookupError):
    """No training run has that id."""


def create_training_run(
    engine: Engine, *, method: str, base_model: str, output_dir: str, data: dict[str, Any], config: dict[str, Any],
    username: str = "", command: str = "",
) -> int:
    """Stores a starting training run (status running); returns its id."""
    from db.models import TrainingRun

    with session_scope(engine) as s:
        row = TrainingRun(method=method, base_model=base_model, output_dir=output_dir, data=data, config=config,
                          status="running", metrics={}, reward_campaigns={}, username=username, command=command,
                          error="")
        s.add(row)
        s.flush()
        return row.id


def update_training_run(engine: Engine, run_id: int, **values: Any) -> None:
    """Stores any of data, metrics, reward_campaigns on a training run."""
    from db.models import TrainingRun

    with session_scope(engine) as s:
        s.execute(update(TrainingRun).where(TrainingRun.id == run_id).values(**values))


def finish_training_run(engine: Engine, run_id: int, *, status: str, error: str = "", **values: Any) -> None:
    """Stores a training run's outcome: completed, failed or interrupted, its error, and any of
    metrics, data, reward_campaigns."""
    values.update(status=status, error=error, finished_at=utcnow())
    update_training_run(engine, run_id, **values)


def get_training_run(engine: Engine, run_id: int) -> Any:
    from db.models import TrainingRun

    return _get_detached(engine, TrainingRun, run_id, UnknownTrainingRun, "training run",
                         "no training runs yet: start one with `discovery train sft|dpo|grpo`")


def list_training_runs(engine: Engine) -> list[Any]:
    from db.models import TrainingRun

    return _list(engine, TrainingRun)
