"""The Python API: everything the CLI does, as plain calls for notebooks and scripts.

    from flows.api import run_campaign, resume_campaign, show_campaign, evaluate_file
    summary = run_campaign("erdos_min_overlap", budget=64, chains=4, k=4, seed=1)
    print(summary.best_score, summary.best_code)

Every function raises a one-line, actionable exception on bad input (ConfigError,
ProblemError, DatabaseError, UnknownCampaign, ProposerUnreachable) before writing anything.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from db import repository as repo
from db.engine import DatabaseError, get_engine, outage_cause
from db.repository import CampaignSummary
from discovery.config import CampaignConfig, ConfigError, resolve
from discovery.types import Evaluation
from flows.campaign import ProgressFn, evaluation_fields, run_flow
from flows.factory import make_proposer, make_runtime
from flows.workers import check_ready as check_workers_ready
from problems import get_problem


def run_campaign(
    config: CampaignConfig | str | None = None,
    /,
    *,
    config_file: str | Path | None = None,
    db_url: str | None = None,
    progress: ProgressFn | None = None,
    on_created: Any = None,
    **overrides: Any,
) -> CampaignSummary:
    """Creates a campaign and runs it to the end of its budget; returns its summary.

    `config` is a CampaignConfig, or a problem name/path with settings given as keyword
    overrides (chains=4, k=4, budget=64, seed=0, model=None -> offline proposer, ...).
    `on_created(campaign_id)` is called once the campaign row exists (before any proposal).
    """
    if isinstance(config, CampaignConfig):
        cfg = config
    else:
        if config is not None:
            overrides["problem"] = config
        cfg = resolve(config_file, **overrides)
    problem = get_problem(cfg.problem)
    engine = get_engine(db_url)
    proposer = make_proposer(cfg)
    preflight = getattr(proposer, "preflight", None)
    if preflight is not None:
        preflight()
    check_workers_ready(cfg)
    stored_config = cfg.model_dump(mode="json")
    stored_config["problem"] = cfg.problem
    campaign_id = repo.create_campaign(
        engine,
        name=cfg.name or f"{problem.name}/{cfg.strategy}",
        problem=cfg.problem,
        strategy=cfg.strategy,
        model=cfg.proposer_name,
        seed=cfg.seed,
        budget=cfg.budget,
        direction=problem.direction,
        evaluator_version=problem.evaluator_version,
        config=stored_config,
    )
    if on_created is not None:
        on_created(campaign_id)
    return _execute(campaign_id, cfg, problem, proposer, engine, progress)


def resume_campaign(campaign_id: int, *, db_url: str | None = None, progress: ProgressFn | None = None) -> CampaignSummary:
    """Continues a campaign from what the database holds, to the exact end of its budget."""
    engine = get_engine(db_url)
    row = repo.get_campaign(engine, campaign_id)
    try:
        cfg = CampaignConfig.model_validate(row.config)
    except Exception as exc:
        raise ConfigError(f"campaign {campaign_id} has a stored configuration this version cannot read: {exc}") from None
    problem = get_problem(cfg.problem)
    proposer = make_proposer(cfg)
    check_workers_ready(cfg)
    return _execute(campaign_id, cfg, problem, proposer, engine, progress)


def _execute(campaign_id, cfg, problem, proposer, engine, progress) -> CampaignSummary:
    repo.set_campaign_status(engine, campaign_id, "running")
    rt = make_runtime(campaign_id, engine, cfg, problem, proposer)
    try:
        result = run_flow(rt, progress)
    except KeyboardInterrupt:
        repo.set_campaign_status(engine, campaign_id, "interrupted", error="interrupted by the user")
        raise
    except BaseException as exc:
        cause = outage_cause(exc)
        if cause is None:
            repo.set_campaign_status(engine, campaign_id, "failed", error=f"{type(exc).__name__}: {exc}"[:2000])
            raise
        # The database went away: marking the campaign failed is itself a write to it, so that
        # write waits (bounded) for the database to come back instead of being lost or raising a
        # second, less clear error.
        _mark_failed_patiently(engine, campaign_id, f"database unavailable: {cause}")
        raise DatabaseError(
            f"the database became unavailable mid-campaign ({cause}): every completed step is stored; "
            f"run `discovery resume {campaign_id}` once it is reachable again") from exc
    status = "stopped" if result.get("stopped_reason") else "completed"
    repo.set_campaign_status(engine, campaign_id, status, error=result.get("stopped_reason", ""))
    return repo.summarize(engine, campaign_id)


OUTAGE_PATIENCE_S = 30.0  # how long a failed campaign waits for its database to record the failure


def _mark_failed_patiently(engine, campaign_id: int, error: str) -> None:
    """Records status 'failed' with `error`, retrying with backoff for OUTAGE_PATIENCE_S while the
    database is unavailable. If it stays unavailable the row keeps 'running'; resume works on it
    all the same (it picks up every campaign that did not complete)."""
    import logging
    import time

    deadline = time.monotonic() + OUTAGE_PATIENCE_S
    delay = 0.25
    while True:
        try:
            repo.set_campaign_status(engine, campaign_id, "failed", error=error[:2000])
            return
        except Exception as exc:  # noqa: BLE001 - only outages are retried
            if outage_cause(exc) is None or time.monotonic() + delay > deadline:
                logging.getLogger(__name__).warning(
                    "campaign %s could not be marked failed (%s): it shows 'running' until resumed",
                    campaign_id, outage_cause(exc) or exc)
                return
            time.sleep(delay)
            delay = min(delay * 2, 4.0)


def show_campaign(campaign_id: int, *, db_url: str | None = None) -> CampaignSummary:
    """Best score, best program, counts, tokens and cost of a campaign."""
    return repo.summarize(get_engine(db_url), campaign_id)


def evaluate_file(problem: str, path: str | Path, *, sandbox: str = "auto") -> Evaluation:
    """Scores one program file in the sandbox exactly as a campaign would."""
    from problems.evaluate import evaluate
    from sandbox import get_sandbox

    prob = get_problem(problem)
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"program file {p} not found: pass the path of a .py file")
    return evaluate(prob, p.read_text(encoding="utf-8"), get_sandbox(sandbox))


@dataclasses.dataclass(frozen=True)
class Rescored:
    """One program re-scored after the search: its search evaluation beside the new one."""

    candidate_id: int
    search_score: float | None
    evaluation: Evaluation
    evaluation_id: int


def evaluate_campaign(
    campaign_id: int,
    *,
    holdout: bool = True,
    top: int = 5,
    sandbox: str | None = None,
    db_url: str | None = None,
) -> list[Rescored]:
    """Re-scores the campaign's `top` best distinct programs and stores those evaluations.

    holdout=True uses the problem's held-out instances (split "holdout", which the search never
    saw); holdout=False re-runs the search instances (kind "recheck", e.g. to see timing noise).
    The new evaluations are stored beside the search ones (kind holdout/recheck) and never change
    what the search recorded; asking again returns the stored evaluations.
    """
    from problems.evaluate import evaluate
    from sandbox import get_sandbox

    engine = get_engine(db_url)
    row = repo.get_campaign(engine, campaign_id)
    cfg = CampaignConfig.model_validate(row.config)
    problem = get_problem(cfg.problem)
    if holdout and not problem.has_holdout:
        raise ConfigError(
            f"problem {problem.name} keeps no held-out instances (its score does not depend on instances); "
            f"use --recheck to re-score on the search instances"
        )
    if top < 1:
        raise ConfigError(f"top must be at least 1, not {top}")
    kind, split = ("holdout", "holdout") if holdout else ("recheck", "search")
    box = get_sandbox(sandbox or cfg.sandbox)
    out = []
    for cand, search_ev in repo.top_candidates(engine, campaign_id, problem.direction, top):
        key = f"{kind}:{problem.evaluator_version}:{cand.program_hash}"
        stored = repo.find_evaluation(engine, campaign_id, key)
        if stored is not None:
            ev = _as_evaluation(stored)
            ev_id = stored.id
        else:
            ev = evaluate(problem, cand.code, box, split)
            ev_id = repo.record_evaluation(
                engine, campaign_id=campaign_id, candidate_id=cand.id, cache_key=key,
                fields=evaluation_fields(ev), kind=kind,
            )
        out.append(Rescored(cand.id, search_ev.score, ev, ev_id))
    return out


def _as_evaluation(row) -> Evaluation:
    return Evaluation(
        status=row.status, score=row.score, metrics=dict(row.metrics or {}), feedback=row.feedback,
        stdout=row.stdout, stderr=row.stderr, duration_s=row.duration_s, cpu_s=row.cpu_s,
        backend=row.backend, evaluator_version=row.evaluator_version,
    )


def list_problems():
    """Every problem the registry knows (built-in and installed)."""
    from problems import list_problems as _list

    return _list()
