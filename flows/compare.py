"""Strategy comparisons: every strategy x seed at one budget, summarised, plotted and stored.

    from flows.compare import compare_strategies, show_comparison, list_comparisons
    report = compare_strategies("erdos_min_overlap", strategies=["simpletes", "best_of_n"],
                                seeds=3, budget=48, chains=2, k=4)
    for row in report.rows:          # ranked by median final best, best first
        print(row.strategy, row.final_median, row.final_min, row.final_max)
    print(report.plot_path)          # PNG: best score against evaluations, a band over seeds
    again = show_comparison(report.id)   # from the database, nothing re-run

What happens, in order:
  1. Everything is checked before anything is written: the strategy names, the problem, and one
     resolved CampaignConfig per strategy x seed (same problem, budget, settings; seeds
     seed_base .. seed_base + seeds - 1). A budget that does not suit every strategy is refused
     with one line naming what each needs and a budget that suits all (their least common
     multiple). Errors are ConfigError / ProblemError / ProposerUnreachable, one line each.
  2. A `comparison` row and one queued `comparison_run` row per strategy x seed are stored.
  3. Every run is one campaign, run by flows.api.run_campaign as its own Prefect flow run, on a
     pool of `parallel` threads, queued seed-major (every strategy's seed 0, then every seed 1,
     ...) so every strategy makes progress early. A failed run is stored with its error and the
     others go on; the report lists it.
  4. The campaigns' stored evaluations become best-so-far curves (discovery.comparison), the
     table rows and bands are stored on the comparison row (so a dashboard redraws it without
     recomputing) and a PNG is written.

Ctrl-C: queued runs are cancelled, running campaigns stop at their next outcome (status
"interrupted", continued with `discovery resume ID`), the comparison is stored as failed, and
ComparisonInterrupted (a KeyboardInterrupt) says which campaigns to resume.

Load: `parallel` defaults to the number of cores (capped by the number of runs), and each
campaign gets eval_slots = max(1, cores // parallel) unless eval_slots is set explicitly, so the
sandbox runs about one evaluation per core in total. Problems whose score is a timing (such as
lasso_path) need an unloaded machine to be compared fairly: pass parallel=1 (`--parallel 1`),
which also gives the one campaign every core for its evaluations.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime as dt
import json
import math
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from db import repository as repo
from db.engine import get_engine
from db.repository import UnknownComparison
from discovery import comparison as cmp
from discovery.config import (
    STRATEGIES,
    CampaignConfig,
    ConfigError,
    load_file,
    parse_assignments,
    parse_names,
    resolve,
)
from problems import get_problem

__all__ = [
    "ComparisonInterrupted",
    "ComparisonReport",
    "PrefectUnavailable",
    "RunProgress",
    "RunRecord",
    "UnknownComparison",
    "compare_strategies",
    "list_comparisons",
    "show_comparison",
]

PLOT_DIR = "comparisons"
# Set by compare_strategies itself (one value per run), so not accepted as shared overrides.
_PER_RUN = ("problem", "strategy", "seed", "budget")


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """One strategy x seed run of a comparison, as stored."""

    strategy: str
    seed: int
    campaign_id: int | None
    status: str  # queued | running | completed | stopped | failed | interrupted | cancelled
    wall_s: float | None
    error: str


@dataclasses.dataclass(frozen=True)
class RunProgress:
    """A progress event for one run (state queued/running/completed/stopped/failed)."""

    strategy: str
    seed: int
    state: str
    done: int = 0
    total: int = 0
    best_score: float | None = None
    seed_score: float | None = None
    campaign_id: int | None = None
    error: str = ""


CompareProgressFn = Callable[[RunProgress], None]


class PrefectUnavailable(RuntimeError):
    """The Prefect API cannot be started or reached (one line naming the fix)."""


class ComparisonInterrupted(KeyboardInterrupt):
    """Ctrl-C during a comparison: queued runs were cancelled, running campaigns stopped at their
    next outcome (status "interrupted", resumable with `discovery resume ID`), the comparison
    stored as failed."""

    def __init__(self, comparison_id: int, campaign_ids: Sequence[int]) -> None:
        super().__init__(f"comparison {comparison_id} interrupted")
        self.comparison_id = comparison_id
        self.campaign_ids = list(campaign_ids)


@dataclasses.dataclass(frozen=True)
class ComparisonReport:
    """A stored comparison: its settings, runs, and (once finished) the computed result."""

    id: int
    name: str
    problem: str
    strategies: list[str]
    seeds: list[int]
    budget: int
    target_pct: float
    status: str
    plot_path: str
    config: dict[str, Any]
    runs: list[RunRecord]
    result: cmp.ComparisonResult | None
    error: str
    created_at: dt.datetime | None
    finished_at: dt.datetime | None

    @property
    def rows(self) -> list[cmp.StrategyRow]:
        """Table rows, ranked by median final best (empty until the comparison finished)."""
        return list(self.result.rows) if self.result else []

    @property
    def failed(self) -> list[RunRecord]:
        return [r for r in self.runs if r.status == "failed"]

    @property
    def direction(self) -> str:
        return self.result.direction if self.result else ""


# ---------------------------------------------------------------- checking the input


def _strategy_list(strategies: str | Sequence[str]) -> list[str]:
    names = parse_names(strategies, STRATEGIES, noun="strategy", plural="strategies",
                        example="--strategies simpletes,best_of_n")
    twice = [n for i, n in enumerate(names) if n in names[:i]]
    if twice:
        raise ConfigError(f"strategy {twice[0]!r} is listed twice: name each strategy once")
    return names


def _budget_needs(config_file, assignments, base: dict[str, Any]) -> dict[str, tuple[int, str, int]]:
    """strategy -> (budget unit, what the unit is, minimum budget) under the shared settings.

    CampaignConfig.budget_rule, read off a probe configuration that any budget fits.
    """
    probe = resolve(config_file, assignments=assignments, **{**base, "strategy": "r3l", "budget": 10**9})
    return {name: probe.budget_rule(name) for name in STRATEGIES}


def _common_budget(budget: int, needs: dict[str, tuple[int, str, int]], names: Sequence[str]) -> int:
    """The smallest budget >= the one asked for that suits every named strategy."""
    unit = math.lcm(*(needs.get(n, (1, "", 1))[0] for n in names))
    least = max([budget] + [needs.get(n, (1, "", 1))[2] for n in names])
    return -(-least // unit) * unit


def _resolve_configs(
    problem: str, names: list[str], seeds: list[int], budget: int, config_file, assignments, base: dict[str, Any]
) -> dict[tuple[str, int], CampaignConfig]:
    def one(name: str, seed: int, b: int) -> CampaignConfig:
        return resolve(config_file, assignments=assignments, **base, problem=problem, strategy=name, budget=b, seed=seed)

    errors: dict[str, str] = {}
    configs: dict[tuple[str, int], CampaignConfig] = {}
    for name in names:
        try:
            for seed in seeds:
                configs[(name, seed)] = one(name, seed, budget)
        except ConfigError as exc:
            errors[name] = str(exc)
    if not errors:
        return configs
    try:
        needs = _budget_needs(config_file, assignments, {**base, "problem": problem})
    except ConfigError:
        name = next(iter(errors))
        raise ConfigError(f"{name}: {errors[name]}") from None
    suggestion = _common_budget(budget, needs, names)
    budget_bound = []
    for name in errors:
        try:
            one(name, seeds[0], suggestion)
            budget_bound.append(name)
        except ConfigError:
            raise ConfigError(f"{name}: {errors[name]}") from None
    wants = []
    for name in budget_bound:
        unit, what, least = needs.get(name, (1, "", 1))
        if unit > 1 and budget % unit:
            wants.append(f"a multiple of {what} = {unit} for {name}")
        if budget < least:
            wants.append(f"at least r3l.turns = {least} for {name}")
    raise ConfigError(
        f"budget {budget} does not suit every strategy: it must be {' and '.join(wants) or 'changed'}; "
        f"use budget {suggestion}, which suits {', '.join(names)} (or change those settings)"
    )


def _preflight_strategies(configs: dict[tuple[str, int], CampaignConfig], names: list[str], seeds: list[int], prob) -> None:
    """Builds each strategy once, so a strategy that cannot run fails before anything is stored."""
    from flows.factory import make_strategy

    for name in names:
        try:
            make_strategy(configs[(name, seeds[0])], prob)
        except ImportError as exc:
            raise ConfigError(f"strategy {name} is not available in this installation ({exc})") from None
        except (ValueError, TypeError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ConfigError(f"strategy {name} cannot run with these settings: {first}") from None


def _user_sets_eval_slots(config_file, assignments, overrides: dict[str, Any]) -> bool:
    if overrides.get("eval_slots") is not None or "eval_slots" in parse_assignments(assignments):
        return True
    return bool(config_file) and "eval_slots" in load_file(config_file)


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


# ---------------------------------------------------------------- running


def _ensure_prefect_api() -> None:
    """Starts (or reaches) the Prefect API once, in this thread, before the pool starts.

    Without a PREFECT_API_URL, the first flow run of a process starts an ephemeral API server;
    several threads doing that at once each start one (all but one are never stopped), and the
    first runs' wall time would include the server's start-up.
    """
    from prefect.client.orchestration import get_client

    fix = ("set PREFECT_API_URL to a running server (`prefect server start`) or raise "
           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS")
    try:
        with get_client(sync_client=True) as client:
            failure = client.api_healthcheck()
    except Exception as exc:  # the ephemeral server did not start in time, or the URL is wrong
        raise PrefectUnavailable(f"cannot start or reach the Prefect API ({_one_line(exc)}): {fix}") from None
    if failure is not None:
        raise PrefectUnavailable(f"the Prefect API does not answer ({_one_line(failure)}): {fix}")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")[:2000]


def _run_one(engine, db_url, run_id: int, cfg: CampaignConfig, progress: CompareProgressFn | None,
             stop: threading.Event):
    """Runs one campaign; returns (RunRecord, RunData or None). Never raises for a failed run.

    Once `stop` is set, a run that has not started is cancelled and a running campaign is
    stopped at its next outcome by a KeyboardInterrupt raised from its progress callback, which
    flows.api records as status "interrupted" (resumable).
    """
    from flows.api import run_campaign

    if stop.is_set():
        repo.update_comparison_run(engine, run_id, status="cancelled", error="comparison interrupted")
        return RunRecord(cfg.strategy, cfg.seed, None, "cancelled", None, "comparison interrupted"), None
    created: list[int] = []

    def emit(state: str, **kw: Any) -> None:
        if progress is not None:
            progress(RunProgress(cfg.strategy, cfg.seed, state, campaign_id=created[0] if created else None, **kw))

    def on_created(campaign_id: int) -> None:
        created.append(campaign_id)
        repo.update_comparison_run(engine, run_id, campaign_id=campaign_id, status="running")
        emit("running", total=cfg.budget)

    def on_progress(p) -> None:
        if stop.is_set():
            raise KeyboardInterrupt("comparison interrupted")
        emit("running", done=p.done, total=p.total, best_score=p.best_score, seed_score=p.seed_score)

    start = time.monotonic()
    try:
        summary = run_campaign(cfg, db_url=db_url, on_created=on_created, progress=on_progress)
    except KeyboardInterrupt:
        wall = time.monotonic() - start
        error = "interrupted by the user" + (f"; continue with `discovery resume {created[0]}`" if created else "")
        repo.update_comparison_run(engine, run_id, status="interrupted", wall_s=wall, error=error)
        emit("interrupted", error=error)
        return RunRecord(cfg.strategy, cfg.seed, created[0] if created else None, "interrupted", wall, error), None
    except Exception as exc:  # one failed run is recorded; the comparison goes on
        wall = time.monotonic() - start
        error = _one_line(exc)
        repo.update_comparison_run(engine, run_id, status="failed", wall_s=wall, error=error)
        emit("failed", error=error)
        return RunRecord(cfg.strategy, cfg.seed, created[0] if created else None, "failed", wall, error), None
    wall = time.monotonic() - start
    c = summary.campaign
    repo.update_comparison_run(engine, run_id, status=c.status, wall_s=wall, error=c.error or "")
    emit(c.status, done=summary.steps, total=cfg.budget, best_score=summary.best_score, seed_score=summary.seed_score)
    trace = repo.evaluation_trace(engine, c.id)
    data = cmp.RunData(
        strategy=cfg.strategy,
        seed=cfg.seed,
        seed_score=summary.seed_score,
        samples=[cmp.Sample(step_id, status, score) for step_id, status, score in trace],
        llm_calls=summary.steps,
        tokens=summary.prompt_tokens + summary.completion_tokens,
        cost_usd=summary.cost_usd,
        wall_s=wall,
        campaign_id=c.id,
    )
    return RunRecord(cfg.strategy, cfg.seed, c.id, c.status, wall, c.error or ""), data


def compare_strategies(
    problem: str,
    *,
    strategies: str | Sequence[str],
    seeds: int = 3,
    budget: int,
    seed_base: int = 0,
    target_pct: float = 1.0,
    parallel: int | None = None,
    plot_path: str | Path | None = None,
    config_file: str | Path | None = None,
    assignments: Sequence[str] = (),
    db_url: str | None = None,
    progress: CompareProgressFn | None = None,
    **overrides: Any,
) -> ComparisonReport:
    """Runs every strategy x seed at one budget, stores and plots the comparison, returns it.

    `strategies`: names (a list or "a,b,c"); `seeds` runs per strategy, with master seeds
    seed_base .. seed_base + seeds - 1; `target_pct`: the improvement over the seed score that
    "evaluations to target" measures; `parallel`: campaigns at once (default: cores, see the
    module docstring); `plot_path`: PNG path (default comparisons/comparison-<id>-<problem>.png
    under the current directory); `config_file`, `assignments` ("exit.kappa=5") and keyword
    `overrides` (chains=2, k=4, model=..., name=... labels the comparison) are shared by every run.
    `progress(RunProgress)` is called from worker threads as runs start, advance and end.
    """
    names = _strategy_list(strategies)
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ConfigError(f"seeds must be a whole number of runs per strategy, at least 1, not {seeds!r}")
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise ConfigError(f"budget must be a positive whole number of proposals, not {budget!r}")
    if not isinstance(target_pct, (int, float)) or not math.isfinite(target_pct) or target_pct < 0:
        raise ConfigError(f"target_pct must be a percentage >= 0 (1.0 = seed score + 1%), not {target_pct!r}")
    if parallel is not None and (isinstance(parallel, bool) or not isinstance(parallel, int) or parallel < 1):
        raise ConfigError(f"parallel must be at least 1 campaign at a time, not {parallel!r}")
    if plot_path is not None and Path(plot_path).suffix.lower() != ".png":
        raise ConfigError(f"plot path {plot_path} must end in .png (the plot is a PNG image)")
    fixed = [k for k in _PER_RUN if k in overrides]
    if fixed:
        raise ConfigError(f"{fixed[0]} is set by the comparison for every run; use the compare arguments, not an override")
    name = str(overrides.pop("name", None) or "")
    shared = {k: v for k, v in overrides.items() if v is not None}
    seed_list = list(range(seed_base, seed_base + seeds))
    prob = get_problem(problem)

    cores = os.cpu_count() or 1
    n_runs = len(names) * len(seed_list)
    workers = min(parallel or cores, n_runs)
    base = dict(shared)
    if not _user_sets_eval_slots(config_file, assignments, shared):
        base["eval_slots"] = max(1, cores // workers)
    configs = _resolve_configs(problem, names, seed_list, budget, config_file, list(assignments), base)
    _preflight_strategies(configs, names, seed_list, prob)
    first = configs[(names[0], seed_list[0])]
    from flows.factory import make_proposer

    preflight = getattr(make_proposer(first), "preflight", None)
    if preflight is not None:
        preflight()

    engine = get_engine(db_url)
    _ensure_prefect_api()
    label = name or f"{prob.name}: {', '.join(names)}"
    stored_config = _jsonable({
        "overrides": shared,
        "assignments": list(assignments),
        "config_file": str(config_file) if config_file else None,
        "model": first.proposer_name,
        "seed_base": seed_base,
        "parallel": workers,
        "eval_slots": first.eval_slots,
        "direction": prob.direction,
    })
    cid, run_ids = repo.create_comparison(
        engine, name=label, problem=problem, strategies=names, seeds=seed_list, budget=budget,
        target_pct=float(target_pct), config=stored_config,
    )
    jobs = [(s, seed) for seed in seed_list for s in names]  # seed-major: every strategy starts early
    for s, seed in jobs:
        if progress is not None:
            progress(RunProgress(s, seed, "queued", total=budget))
    stop = threading.Event()
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"compare-{cid}")
    futures = {}
    for s, seed in jobs:
        cfg = configs[(s, seed)].model_copy(update={"name": f"compare {cid}: {s} seed {seed}"})
        futures[pool.submit(_run_one, engine, db_url, run_ids[(s, seed)], cfg, progress, stop)] = (s, seed)
    outcomes: dict[tuple[str, int], tuple[RunRecord, cmp.RunData | None]] = {}
    try:
        for fut in concurrent.futures.as_completed(futures):
            outcomes[futures[fut]] = fut.result()
    except BaseException as exc:  # Ctrl-C, or a storage error in a worker's bookkeeping
        _wind_down(engine, cid, pool, futures, run_ids, stop)
        if isinstance(exc, KeyboardInterrupt):
            repo.finish_comparison(engine, cid, status="failed", error="interrupted by the user")
            _, runs = repo.get_comparison(engine, cid)
            raise ComparisonInterrupted(cid, [r.campaign_id for r in runs if r.status == "interrupted"]) from None
        repo.finish_comparison(engine, cid, status="failed", error=_one_line(exc))
        raise
    pool.shutdown(wait=True)

    data = [outcomes[key][1] for key in jobs if outcomes[key][1] is not None]
    result = cmp.compare(data, strategies=names, direction=prob.direction, target_pct=float(target_pct),
                         seeds_per_strategy=len(seed_list))
    if not data:
        first_error = next((outcomes[k][0].error for k in jobs if outcomes[k][0].error), "unknown error")
        repo.finish_comparison(engine, cid, status="failed", results=result.to_dict(),
                               error=f"every run failed; first error: {first_error}")
        return show_comparison(cid, db_url=db_url)
    path = Path(plot_path) if plot_path is not None else Path.cwd() / PLOT_DIR / f"comparison-{cid}-{prob.name}.png"
    title = (f"{prob.name}: best score vs evaluations, budget {budget}, {len(seed_list)} seed"
             f"{'s' if len(seed_list) != 1 else ''} (median, min-max band)")
    error = ""
    try:
        written = str(cmp.plot(result, path, title=title).resolve())
    except Exception as exc:  # the results are worth keeping without a picture
        written, error = "", f"plot not written to {path}: {_one_line(exc)}"
    failed = [f"{k[0]} seed {k[1]}" for k in jobs if outcomes[k][0].status == "failed"]
    if failed and not error:
        error = f"{len(failed)} of {len(jobs)} runs failed: {', '.join(failed)}"
    repo.finish_comparison(engine, cid, status="completed", results=result.to_dict(), plot_path=written, error=error)
    return show_comparison(cid, db_url=db_url)


def _wind_down(engine, cid: int, pool, futures, run_ids, stop: threading.Event) -> None:
    """Cancels queued runs and waits for running campaigns to stop at their next outcome."""
    stop.set()
    pool.shutdown(wait=False, cancel_futures=True)
    for fut, key in futures.items():
        if fut.cancelled():
            repo.update_comparison_run(engine, run_ids[key], status="cancelled", error="comparison interrupted")
    concurrent.futures.wait([f for f in futures if not f.cancelled()])


# ---------------------------------------------------------------- reading back


def _report(row, runs) -> ComparisonReport:
    return ComparisonReport(
        id=row.id,
        name=row.name,
        problem=row.problem,
        strategies=list(row.strategies),
        seeds=list(row.seeds),
        budget=row.budget,
        target_pct=row.target_pct,
        status=row.status,
        plot_path=row.plot_path or "",
        config=dict(row.config or {}),
        runs=[RunRecord(r.strategy, r.seed, r.campaign_id, r.status, r.wall_s, r.error or "") for r in runs],
        result=cmp.ComparisonResult.from_dict(row.results) if row.results else None,
        error=row.error or "",
        created_at=row.created_at,
        finished_at=row.finished_at,
    )


def show_comparison(comparison_id: int, db_url: str | None = None) -> ComparisonReport:
    """A stored comparison, read from the database (nothing is re-run or recomputed)."""
    row, runs = repo.get_comparison(get_engine(db_url), comparison_id)
    return _report(row, runs)


def list_comparisons(db_url: str | None = None) -> list[ComparisonReport]:
    """Every stored comparison, oldest first."""
    engine = get_engine(db_url)
    return [_report(*repo.get_comparison(engine, row.id)) for row in repo.list_comparisons(engine)]
