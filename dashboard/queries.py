"""What the dashboard reads, as plain functions over a read-only engine (no Streamlit here).

Each function is one or a few SQL statements returning a pandas DataFrame or a dict, shaped for
one page: the pages cache them (`dashboard.state`) and draw them (`dashboard.charts`). They only
read, and only through `db.engine.get_reader`, so browsing never blocks or alters a campaign.

    from db.engine import get_reader
    from dashboard import queries as q
    engine = get_reader("sqlite:///discovery.db")
    q.database_status(engine)            # "ok" | "empty" | "outdated" | "no_campaigns"
    table = q.campaign_table(engine)     # one row per campaign, newest first
    points = q.campaign_points(engine, 3)
    detail = q.candidate_detail(engine, 120)

Scales: every per-campaign query is served by an index on campaign_id (step, candidate,
evaluation); the campaign table aggregates each table once with GROUP BY, not once per campaign.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any, Callable, Mapping

import pandas as pd
from sqlalchemy import Engine, and_, func, inspect, select, text
from sqlalchemy.orm import aliased

from db.models import Campaign, Candidate, Comparison, ComparisonRun, Evaluation, Export, Step, Trajectory

STATUSES = ("ok", "invalid", "error", "timeout", "killed")
CAMPAIGN_COLUMNS = (
    "id", "name", "problem", "strategy", "model", "status", "direction", "seed", "budget", "steps", "evaluations",
    "best_score", "seed_score", "best_known", "best_known_ratio", "prompt_tokens", "completion_tokens", "cost_usd",
    "created_at", "started_at", "finished_at", "duration_s",
)
POINT_COLUMNS = ("step_id", "trajectory", "trajectory_id", "created_at", "cost_usd", "candidate_id", "eval_status",
                 "score")
NODE_COLUMNS = ("step_id", "index", "sample", "mode", "step_status", "committed", "candidate_id",
                "parent_candidate_id", "eval_status", "score")

BestKnown = Callable[[str], "float | None"]


# ---------------------------------------------------------------- the database as a whole


def database_status(engine: Engine) -> str:
    """"empty" (no tables: nothing has run), "outdated" (older schema than this version's
    migrations: `discovery dashboard` upgrades it on start), "no_campaigns", or "ok"."""
    from db.engine import alembic_head

    inspector = inspect(engine)
    if not inspector.has_table("campaign"):
        return "empty"
    with engine.connect() as conn:
        revision = None
        if inspector.has_table("alembic_version"):
            revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        if revision != alembic_head():
            return "outdated"
        if conn.execute(select(Campaign.id).limit(1)).first() is None:
            return "no_campaigns"
    return "ok"


def change_marker(engine: Engine) -> tuple:
    """A few aggregates over the small tables that change whenever a campaign, comparison or
    export is created, starts, finishes or changes status: what the dashboard keys its cached
    lists on (read in a few milliseconds whatever the size of the step table). The last element
    is the number of campaigns running (or created and not yet started)."""
    with engine.connect() as conn:
        campaigns = tuple(conn.execute(
            select(func.count(), func.max(Campaign.id), func.max(Campaign.started_at), func.max(Campaign.finished_at),
                   func.count().filter(Campaign.status.in_(("running", "created"))),
                   func.count().filter(Campaign.status == "failed"))).one())
        comparisons = tuple(conn.execute(
            select(func.count(), func.max(Comparison.finished_at),
                   func.count().filter(Comparison.status == "running"))).one())
        exports = tuple(conn.execute(select(func.count(), func.max(Export.finished_at))).one())
    return (*campaigns[:4], campaigns[5], *comparisons, *exports, campaigns[4])


def campaign_head(engine: Engine, campaign_id: int) -> tuple[str, Any] | None:
    """(status, finished_at) of one campaign, by primary key (None for an unknown id)."""
    with engine.connect() as conn:
        row = conn.execute(select(Campaign.status, Campaign.finished_at).where(Campaign.id == campaign_id)).first()
    return None if row is None else (row[0], row[1])


def _aware(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def _utc(series: pd.Series) -> pd.Series:
    return pd.to_datetime(series, utc=True)


def best_known_ratio(best: float | None, known: float | None, direction: str) -> float | None:
    """How close the best score is to the best-known value: best/known when maximising,
    known/best when minimising, so 1.0 means "matches it" and above 1.0 "beats it"."""
    if best is None or known is None or not (math.isfinite(best) and math.isfinite(known)):
        return None
    if direction == "maximize":
        return best / known if known != 0 else None
    return known / best if best != 0 else None


# ---------------------------------------------------------------- campaigns


def campaign_table(engine: Engine, best_known: BestKnown | None = None) -> pd.DataFrame:
    """One row per campaign, newest first, with CAMPAIGN_COLUMNS.

    `steps` is the proposer calls made (the budget used), `evaluations` the search evaluations
    stored, `best_score` the best ok search score (direction-aware), `seed_score` the seed
    program's, `best_known` what best_known(problem) returns and `best_known_ratio` the ratio
    of the two (see best_known_ratio), `duration_s` finished - started (or now - started while running).
    """
    with engine.connect() as conn:
        campaigns = conn.execute(
            select(Campaign.id, Campaign.name, Campaign.problem, Campaign.strategy, Campaign.model, Campaign.status,
                   Campaign.direction, Campaign.seed, Campaign.budget, Campaign.created_at, Campaign.started_at,
                   Campaign.finished_at).order_by(Campaign.id.desc())
        ).mappings().all()
        steps = {r[0]: r[1:] for r in conn.execute(
            select(Step.campaign_id, func.count(), func.coalesce(func.sum(Step.prompt_tokens), 0),
                   func.coalesce(func.sum(Step.completion_tokens), 0), func.coalesce(func.sum(Step.cost_usd), 0.0))
            .group_by(Step.campaign_id))}
        evals = {r[0]: r[1:] for r in conn.execute(
            select(Evaluation.campaign_id, func.count(),
                   func.max(Evaluation.score).filter(Evaluation.status == "ok"),
                   func.min(Evaluation.score).filter(Evaluation.status == "ok"))
            .where(Evaluation.kind == "search").group_by(Evaluation.campaign_id))}
        seeds = dict(conn.execute(
            select(Candidate.campaign_id, Evaluation.score)
            .join(Evaluation, Evaluation.id == Candidate.evaluation_id)
            .where(Candidate.role == "seed", Evaluation.status == "ok")).all())
    now = dt.datetime.now(dt.timezone.utc)
    known_cache: dict[str, float | None] = {}
    rows = []
    for c in campaigns:
        n_steps, ptok, ctok, cost = steps.get(c["id"], (0, 0, 0, 0.0))
        n_evals, hi, lo = evals.get(c["id"], (0, None, None))
        best = hi if c["direction"] == "maximize" else lo
        if best_known is not None and c["problem"] not in known_cache:
            known_cache[c["problem"]] = best_known(c["problem"])
        known = known_cache.get(c["problem"])
        started, finished = _aware(c["started_at"]), _aware(c["finished_at"])
        end = finished or (now if c["status"] == "running" else None)
        rows.append({
            **{k: c[k] for k in ("id", "name", "problem", "strategy", "model", "status", "direction", "seed", "budget")},
            "steps": int(n_steps), "evaluations": int(n_evals), "best_score": best, "seed_score": seeds.get(c["id"]),
            "best_known": known, "best_known_ratio": best_known_ratio(best, known, c["direction"]),
            "prompt_tokens": int(ptok), "completion_tokens": int(ctok), "cost_usd": float(cost),
            "created_at": _aware(c["created_at"]), "started_at": started, "finished_at": finished,
            "duration_s": (end - started).total_seconds() if started and end else None,
        })
    frame = pd.DataFrame(rows, columns=list(CAMPAIGN_COLUMNS))
    for col in ("created_at", "started_at", "finished_at"):
        frame[col] = _utc(frame[col])
    for col in ("best_score", "seed_score", "best_known", "best_known_ratio", "duration_s"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
    return frame


def campaign_info(engine: Engine, campaign_id: int) -> dict[str, Any] | None:
    """The campaign row (config included) and its totals, or None for an unknown id:
    steps, step_status {status: n}, eval_status {status: n} (search evaluations), candidates,
    prompt/completion tokens, cost_usd, seed_score, best_score, best_candidate_id,
    first_step_at, last_step_at, trajectories."""
    with engine.connect() as conn:
        row = conn.execute(select(Campaign.__table__).where(Campaign.id == campaign_id)).mappings().first()
        if row is None:
            return None
        info: dict[str, Any] = dict(row)
        for key in ("created_at", "started_at", "finished_at"):
            info[key] = _aware(info[key])
        steps, ptok, ctok, cost, first, last = conn.execute(
            select(func.count(), func.coalesce(func.sum(Step.prompt_tokens), 0),
                   func.coalesce(func.sum(Step.completion_tokens), 0), func.coalesce(func.sum(Step.cost_usd), 0.0),
                   func.min(Step.created_at), func.max(Step.created_at))
            .where(Step.campaign_id == campaign_id)).one()
        info.update(steps=int(steps), prompt_tokens=int(ptok), completion_tokens=int(ctok), cost_usd=float(cost),
                    first_step_at=_aware(first), last_step_at=_aware(last))
        info["step_status"] = dict(conn.execute(
            select(Step.status, func.count()).where(Step.campaign_id == campaign_id).group_by(Step.status)).all())
        info["eval_status"] = dict(conn.execute(
            select(Evaluation.status, func.count())
            .where(Evaluation.campaign_id == campaign_id, Evaluation.kind == "search")
            .group_by(Evaluation.status)).all())
        info["candidates"] = conn.execute(
            select(func.count()).select_from(Candidate).where(Candidate.campaign_id == campaign_id)).scalar()
        info["trajectories"] = conn.execute(
            select(func.count()).select_from(Trajectory).where(Trajectory.campaign_id == campaign_id)).scalar()
        info["seed_score"] = conn.execute(
            select(Evaluation.score).join(Candidate, Candidate.evaluation_id == Evaluation.id)
            .where(Candidate.campaign_id == campaign_id, Candidate.role == "seed", Evaluation.status == "ok")
        ).scalar()
        order = Evaluation.score.desc() if info["direction"] == "maximize" else Evaluation.score.asc()
        best = conn.execute(
            select(Evaluation.score, Candidate.id).join(Candidate, Candidate.evaluation_id == Evaluation.id)
            .where(Candidate.campaign_id == campaign_id, Evaluation.status == "ok", Evaluation.kind == "search",
                   Evaluation.score.is_not(None))
            .order_by(order, Candidate.id).limit(1)).first()
        info["best_score"], info["best_candidate_id"] = (best[0], best[1]) if best else (None, None)
    return info


def campaign_points(engine: Engine, campaign_id: int) -> pd.DataFrame:
    """Every step of the campaign in step-id order with POINT_COLUMNS: its trajectory, time,
    cost, and its candidate's search evaluation (eval_status None: no program, or not yet
    evaluated; score NaN unless the evaluation has one)."""
    stmt = (
        select(Step.id.label("step_id"), Trajectory.index.label("trajectory"), Step.trajectory_id,
               Step.created_at, Step.cost_usd, Candidate.id.label("candidate_id"),
               Evaluation.status.label("eval_status"), Evaluation.score)
        .select_from(Step)
        .join(Trajectory, Trajectory.id == Step.trajectory_id)
        .outerjoin(Candidate, Candidate.step_id == Step.id)
        .outerjoin(Evaluation, and_(Evaluation.id == Candidate.evaluation_id, Evaluation.kind == "search"))
        .where(Step.campaign_id == campaign_id)
        .order_by(Step.id)
    )
    with engine.connect() as conn:
        frame = _frame(conn.execute(stmt), POINT_COLUMNS)
    return _typed(frame, ints=("step_id", "trajectory", "trajectory_id"), nullable=("candidate_id",),
                  floats=("cost_usd", "score"), times=("created_at",), objects=("eval_status",))


def _frame(result, columns) -> pd.DataFrame:
    """A DataFrame from a result's rows as plain tuples (pandas builds it about twice as fast
    from tuples as from SQLAlchemy Row objects: bench/dashboard_scale.py)."""
    return pd.DataFrame([tuple(r) for r in result], columns=list(columns))


def _typed(frame: pd.DataFrame, *, ints=(), nullable=(), floats=(), times=(), objects=(), bools=()) -> pd.DataFrame:
    for col in ints:
        frame[col] = frame[col].astype("int64")
    for col in nullable:
        frame[col] = frame[col].astype("Int64")
    for col in floats:
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("float64")
    for col in times:
        frame[col] = _utc(frame[col])
    for col in objects:
        frame[col] = frame[col].astype(object).where(frame[col].notna(), None)
    for col in bools:
        frame[col] = frame[col].astype(object).where(frame[col].notna(), None)
    return frame


# ---------------------------------------------------------------- trajectories


def trajectory_table(engine: Engine, campaign_id: int) -> pd.DataFrame:
    """One row per trajectory of the campaign (index order): trajectory_id, index, kind,
    parent_trajectory_id, steps, candidates, ok (ok evaluations), best_score (direction-aware),
    first_at, last_at."""
    with engine.connect() as conn:
        direction = conn.execute(select(Campaign.direction).where(Campaign.id == campaign_id)).scalar()
        trajectories = conn.execute(
            select(Trajectory.id, Trajectory.index, Trajectory.kind, Trajectory.parent_trajectory_id)
            .where(Trajectory.campaign_id == campaign_id).order_by(Trajectory.index)).all()
        per = {r[0]: r[1:] for r in conn.execute(
            select(Step.trajectory_id, func.count(Step.id), func.count(Candidate.id),
                   func.count(Evaluation.id).filter(Evaluation.status == "ok"),
                   func.max(Evaluation.score).filter(Evaluation.status == "ok"),
                   func.min(Evaluation.score).filter(Evaluation.status == "ok"),
                   func.min(Step.created_at), func.max(Step.created_at))
            .select_from(Step)
            .outerjoin(Candidate, Candidate.step_id == Step.id)
            .outerjoin(Evaluation, and_(Evaluation.id == Candidate.evaluation_id, Evaluation.kind == "search"))
            .where(Step.campaign_id == campaign_id)
            .group_by(Step.trajectory_id))}
    rows = []
    for tid, index, kind, parent in trajectories:
        steps, cands, ok, hi, lo, first, last = per.get(tid, (0, 0, 0, None, None, None, None))
        rows.append({"trajectory_id": tid, "index": index, "kind": kind, "parent_trajectory_id": parent,
                     "steps": steps, "candidates": cands, "ok": ok,
                     "best_score": hi if direction == "maximize" else lo, "first_at": first, "last_at": last})
    columns = ["trajectory_id", "index", "kind", "parent_trajectory_id", "steps", "candidates", "ok", "best_score",
               "first_at", "last_at"]
    frame = pd.DataFrame(rows, columns=columns)
    return _typed(frame, nullable=("parent_trajectory_id",), floats=("best_score",), times=("first_at", "last_at"))


def trajectory_nodes(engine: Engine, trajectory_id: int) -> pd.DataFrame:
    """Every step of one trajectory, ordered by (move index, sample), with NODE_COLUMNS."""
    stmt = (
        select(Step.id, Step.index, Step.sample, Step.mode, Step.status, Step.committed, Candidate.id,
               Step.parent_candidate_id, Evaluation.status, Evaluation.score)
        .select_from(Step)
        .outerjoin(Candidate, Candidate.step_id == Step.id)
        .outerjoin(Evaluation, and_(Evaluation.id == Candidate.evaluation_id, Evaluation.kind == "search"))
        .where(Step.trajectory_id == trajectory_id)
        .order_by(Step.index, Step.sample)
    )
    with engine.connect() as conn:
        frame = _frame(conn.execute(stmt), NODE_COLUMNS)
    return _typed(frame, ints=("step_id", "index", "sample"), nullable=("candidate_id", "parent_candidate_id"),
                  floats=("score",), objects=("eval_status",), bools=("committed",))


# ---------------------------------------------------------------- one candidate


def _evaluation_dict(row: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    keys = ("id", "status", "score", "metrics", "feedback", "stdout", "stderr", "duration_s", "cpu_s", "backend",
            "evaluator_version", "kind", "cache_key", "candidate_id", "created_at")
    return {k: row[k] for k in keys}


def candidate_detail(engine: Engine, candidate_id: int) -> dict[str, Any] | None:
    """Everything the candidate page shows, or None for an unknown id:
    candidate (id, campaign_id, role, code, program_hash, parent_ids, diff, created_at, step_id),
    evaluation (its search evaluation, or None; `shared_with` says when an identical earlier
    program's evaluation is reused), holdout (holdout evaluations of the same program),
    step (the proposer call: messages, response, model, tokens, cost, latency, attempts, status,
    error, mode, bookkeeping, index, sample, trajectory index and id; None for the seed),
    parent (id, code, score, status of the program the step started from; None if none),
    children (ids of candidates whose step started from this one), campaign (id, name, problem,
    strategy, direction)."""
    with engine.connect() as conn:
        cand = conn.execute(select(Candidate.__table__).where(Candidate.id == candidate_id)).mappings().first()
        if cand is None:
            return None
        out: dict[str, Any] = {"candidate": dict(cand)}
        campaign = conn.execute(
            select(Campaign.id, Campaign.name, Campaign.problem, Campaign.strategy, Campaign.direction, Campaign.model)
            .where(Campaign.id == cand["campaign_id"])).mappings().first()
        out["campaign"] = dict(campaign) if campaign else None
        evaluation = None
        if cand["evaluation_id"] is not None:
            evaluation = conn.execute(
                select(Evaluation.__table__).where(Evaluation.id == cand["evaluation_id"])).mappings().first()
        out["evaluation"] = _evaluation_dict(evaluation)
        if out["evaluation"] is not None:
            owner = out["evaluation"]["candidate_id"]
            out["evaluation"]["shared_with"] = owner if owner != candidate_id else None
        out["holdout"] = [_evaluation_dict(r) for r in conn.execute(
            select(Evaluation.__table__).where(Evaluation.candidate_id == candidate_id, Evaluation.kind != "search")
            .order_by(Evaluation.id)).mappings()]
        step = None
        if cand["step_id"] is not None:
            step = conn.execute(
                select(Step.__table__, Trajectory.index.label("trajectory"))
                .join(Trajectory, Trajectory.id == Step.trajectory_id)
                .where(Step.id == cand["step_id"])).mappings().first()
        out["step"] = dict(step) if step is not None else None
        parent_id = step["parent_candidate_id"] if step is not None else None
        if parent_id is None and cand["parent_ids"]:
            parent_id = cand["parent_ids"][0]
        out["parent"] = None
        if parent_id is not None:
            parent = conn.execute(
                select(Candidate.id, Candidate.code, Candidate.role, Evaluation.status, Evaluation.score)
                .outerjoin(Evaluation, Evaluation.id == Candidate.evaluation_id)
                .where(Candidate.id == parent_id)).mappings().first()
            out["parent"] = dict(parent) if parent is not None else None
        child = aliased(Candidate)
        out["children"] = [r[0] for r in conn.execute(
            select(child.id).join(Step, Step.id == child.step_id)
            .where(Step.parent_candidate_id == candidate_id, Step.campaign_id == cand["campaign_id"])
            .order_by(child.id).limit(500))]
    return out


def campaign_candidate_ids(engine: Engine, campaign_id: int, limit: int = 50) -> pd.DataFrame:
    """The best `limit` ok candidates of a campaign (direction-aware) plus the seed, for a picker:
    candidate_id, role, score, status, trajectory, index."""
    with engine.connect() as conn:
        direction = conn.execute(select(Campaign.direction).where(Campaign.id == campaign_id)).scalar()
        order = Evaluation.score.desc() if direction == "maximize" else Evaluation.score.asc()
        base = (select(Candidate.id, Candidate.role, Evaluation.score, Evaluation.status, Trajectory.index, Step.index)
                .outerjoin(Evaluation, Evaluation.id == Candidate.evaluation_id)
                .outerjoin(Step, Step.id == Candidate.step_id)
                .outerjoin(Trajectory, Trajectory.id == Step.trajectory_id)
                .where(Candidate.campaign_id == campaign_id))
        seed = conn.execute(base.where(Candidate.role == "seed")).all()
        best = conn.execute(base.where(Evaluation.status == "ok", Evaluation.kind == "search",
                                       Candidate.role != "seed")
                            .order_by(order, Candidate.id).limit(limit)).all()
    frame = pd.DataFrame([*seed, *best], columns=["candidate_id", "role", "score", "status", "trajectory", "index"])
    return _typed(frame, ints=("candidate_id",), nullable=("trajectory", "index"), floats=("score",))


# ---------------------------------------------------------------- comparisons and exports


def comparison_table(engine: Engine) -> pd.DataFrame:
    """One row per stored comparison, newest first: id, name, problem, strategies (comma list),
    seeds (n), budget, target_pct, status, runs, campaigns, created_at, finished_at."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(Comparison.id, Comparison.name, Comparison.problem, Comparison.strategies, Comparison.seeds,
                   Comparison.budget, Comparison.target_pct, Comparison.status, Comparison.created_at,
                   Comparison.finished_at).order_by(Comparison.id.desc())).mappings().all()
        runs = {r[0]: r[1:] for r in conn.execute(
            select(ComparisonRun.comparison_id, func.count(), func.count(ComparisonRun.campaign_id))
            .group_by(ComparisonRun.comparison_id))}
    out = [{"id": r["id"], "name": r["name"], "problem": r["problem"],
            "strategies": ", ".join(map(str, r["strategies"] or [])), "seeds": len(r["seeds"] or []),
            "budget": r["budget"], "target_pct": r["target_pct"], "status": r["status"],
            "runs": runs.get(r["id"], (0, 0))[0], "campaigns": runs.get(r["id"], (0, 0))[1],
            "created_at": r["created_at"], "finished_at": r["finished_at"]} for r in rows]
    columns = ["id", "name", "problem", "strategies", "seeds", "budget", "target_pct", "status", "runs", "campaigns",
               "created_at", "finished_at"]
    return _typed(pd.DataFrame(out, columns=columns), times=("created_at", "finished_at"))


def comparison_detail(engine: Engine, comparison_id: int) -> dict[str, Any] | None:
    """The comparison row (results included) and its runs (strategy, seed, campaign_id, status,
    wall_s, error) in queue order, or None for an unknown id."""
    with engine.connect() as conn:
        row = conn.execute(select(Comparison.__table__).where(Comparison.id == comparison_id)).mappings().first()
        if row is None:
            return None
        runs = conn.execute(
            select(ComparisonRun.strategy, ComparisonRun.seed, ComparisonRun.campaign_id, ComparisonRun.status,
                   ComparisonRun.wall_s, ComparisonRun.error)
            .where(ComparisonRun.comparison_id == comparison_id).order_by(ComparisonRun.id)).mappings().all()
    return {**dict(row), "runs": [dict(r) for r in runs]}


def export_table(engine: Engine) -> pd.DataFrame:
    """One row per export, newest first: id, status, campaigns, formats, rows, out_dir, username,
    replay_of, created_at, finished_at, error, command."""
    with engine.connect() as conn:
        rows = conn.execute(select(Export.__table__).order_by(Export.id.desc())).mappings().all()
    out = []
    for r in rows:
        params = r["params"] or {}
        counts = r["row_counts"] or {}
        out.append({
            "id": r["id"], "status": r["status"], "campaigns": ", ".join(map(str, params.get("campaigns", []))),
            "formats": ", ".join(params.get("formats", [])),
            "rows": sum(int(n) for by_split in counts.values() for n in (by_split or {}).values()),
            "out_dir": r["out_dir"], "username": r["username"], "replay_of": r["replay_of"],
            "created_at": r["created_at"], "finished_at": r["finished_at"], "error": r["error"],
            "command": r["command"],
        })
    columns = ["id", "status", "campaigns", "formats", "rows", "out_dir", "username", "replay_of", "created_at",
               "finished_at", "error", "command"]
    return _typed(pd.DataFrame(out, columns=columns), nullable=("replay_of",), times=("created_at", "finished_at"))
