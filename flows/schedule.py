"""Campaigns on a timetable: Prefect deployments of one flow, `scheduled_campaign`, with cron schedules.

    from flows.schedule import schedule_campaign, list_schedules, unschedule
    schedule_campaign("erdos_min_overlap", cron="0 2 * * *", name="nightly-erdos", budget=64)

A deployment stores the campaign's settings (the problem, a --config file's values, --set
assignments and flags, merged here) as its parameters; each scheduled run resolves them exactly
like `discovery run` (discovery.config.resolve, on the worker's machine) and runs a normal
campaign through flows.api.run_campaign, so it is one more campaign row in the database, seen by
`discovery show` and the dashboard, and one more flow run in the Prefect UI. The database is the
worker's DISCOVERY_DB_URL, or a password-free URL stored with the schedule (secrets never go into
deployment parameters: an API key is named by `api_key_env`, a database password stays in the
worker's environment).

The deployments live in a real Prefect API (`prefect server start`, PREFECT_API_URL) and run on
a process work pool (`prefect worker start --pool discovery`), which runs the flow from this
checkout (the deployment's source is the repository folder, so a worker on another machine needs
the same checkout at the same path).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import re
from pathlib import Path
from typing import Any, Sequence

from prefect import flow

from discovery.config import ConfigError, load_file, parse_assignments, resolve

REPO = Path(__file__).resolve().parents[1]
ENTRYPOINT = "flows/schedule.py:scheduled_campaign"
FLOW_NAME = "scheduled-campaign"
DEFAULT_POOL = "discovery"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class UnknownSchedule(ConfigError):
    """No scheduled campaign of that name."""


@flow(name=FLOW_NAME, log_prints=False, persist_result=False)
def scheduled_campaign(config: dict[str, Any], db_url: str | None = None) -> dict[str, Any]:
    """One scheduled campaign run: resolves `config` like `discovery run` and runs it.

    `config` holds settings (problem, strategy, budget, ..., nested exit/r3l tables); the
    database is `db_url`, else the worker's DISCOVERY_DB_URL.
    """
    from flows.api import run_campaign

    cfg = resolve(**config)
    summary = run_campaign(cfg, db_url=db_url)
    return {
        "campaign_id": summary.campaign.id,
        "status": summary.campaign.status,
        "best_score": summary.best_score,
    }


# ------------------------------------------------------------------ the Prefect API


def require_api() -> str:
    """The configured PREFECT_API_URL, checked to answer; raises PrefectUnavailable (one line)."""
    from prefect.client.orchestration import get_client
    from prefect.settings import get_current_settings

    from flows.compare import PrefectUnavailable

    url = get_current_settings().api.url
    fix = ("run `prefect server start` and set PREFECT_API_URL=http://127.0.0.1:4200/api "
           "(schedules and workers need a Prefect server, not the ephemeral API `discovery run` starts)")
    if not url:
        raise PrefectUnavailable(f"PREFECT_API_URL is not set: {fix}")
    try:
        with get_client(sync_client=True) as client:
            failure = client.api_healthcheck()
    except Exception as exc:  # noqa: BLE001 - any connection problem is the same advice
        raise PrefectUnavailable(f"the Prefect API at {url} does not answer ({type(exc).__name__}): {fix}") from None
    if failure is not None:
        raise PrefectUnavailable(f"the Prefect API at {url} does not answer ({type(failure).__name__}): {fix}")
    return url


def _ensure_pool(name: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            pool = client.read_work_pool(name)
        except ObjectNotFound:
            try:
                client.create_work_pool(WorkPoolCreate(name=name, type="process"))
            except ObjectAlreadyExists:  # created meanwhile by someone else
                pass
            return
    if pool.type != "process":
        raise ConfigError(
            f"work pool {name!r} is of type {pool.type!r}, not 'process': pass --pool with another name")


# ------------------------------------------------------------------ settings and validation


def settings(
    problem: str | None = None,
    *,
    config_file: str | Path | None = None,
    assignments: Sequence[str] = (),
    **overrides: Any,
) -> dict[str, Any]:
    """The settings a schedule stores: the config file's values, then `--set`, then non-None
    flags (the same precedence as `discovery run`); validated now, resolved again at run time."""
    from discovery.config import _merge

    data: dict[str, Any] = load_file(config_file) if config_file else {}
    data = _merge(data, parse_assignments(assignments))
    if problem is not None:
        overrides["problem"] = problem
    data = _merge(data, {k: v for k, v in overrides.items() if v is not None})
    cfg = resolve(**data)  # raises ConfigError (one line) for a bad setting
    from problems import get_problem

    get_problem(cfg.problem)  # raises ProblemError for an unknown problem
    return data


def check_cron(cron: str, timezone: str = "UTC") -> None:
    """Raises ConfigError (one line) unless `cron` is a valid cron string and `timezone` an IANA zone."""
    from pydantic import ValidationError
    from prefect.client.schemas.schedules import CronSchedule

    if len(str(cron).split()) not in (5, 6):
        raise ConfigError(f"cron {cron!r} needs 5 fields (minute hour day month weekday), e.g. \"0 2 * * *\"")
    try:
        CronSchedule(cron=cron, timezone=timezone)
    except ValidationError as exc:
        msg = exc.errors()[0]["msg"].removeprefix("Value error, ")
        raise ConfigError(f"invalid schedule (cron {cron!r}, timezone {timezone!r}): {msg}") from None


def _check_db_url(db_url: str | None) -> None:
    if not db_url:
        return
    from sqlalchemy.engine import make_url

    try:
        url = make_url(db_url)
    except Exception:  # noqa: BLE001
        raise ConfigError(f"database URL {db_url!r} does not parse: pass a SQLAlchemy URL") from None
    if url.password:
        raise ConfigError("the database URL carries a password, which a schedule would store in the clear: "
                          "set DISCOVERY_DB_URL in the worker's environment instead of --db")


def _default_name(cfg_problem: str) -> str:
    stem = Path(cfg_problem).stem if cfg_problem.endswith(".py") else cfg_problem
    return re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-") or "campaign"


# ------------------------------------------------------------------ the API


@dataclasses.dataclass(frozen=True)
class ScheduleInfo:
    """One scheduled campaign (a deployment of the scheduled-campaign flow)."""

    name: str
    deployment_id: str
    cron: str
    timezone: str
    active: bool
    work_pool: str
    problem: str
    settings: dict[str, Any]
    db_url: str | None


def schedule_campaign(
    problem: str | None = None,
    *,
    cron: str,
    name: str | None = None,
    work_pool: str = DEFAULT_POOL,
    timezone: str = "UTC",
    db_url: str | None = None,
    config_file: str | Path | None = None,
    assignments: Sequence[str] = (),
    **overrides: Any,
) -> str:
    """Registers (or replaces) a deployment that runs this campaign on `cron`; returns its id.

    Settings are validated first; the work pool (type "process") is created if missing. The
    campaigns it runs are labelled `name` unless the settings give one.
    """
    check_cron(cron, timezone)
    _check_db_url(db_url)
    data = settings(problem, config_file=config_file, assignments=assignments, **overrides)
    name = name or _default_name(str(data["problem"]))
    if not _NAME_RE.match(name):
        raise ConfigError(f"schedule name {name!r}: use letters, digits, '.', '_' or '-' (at most 100)")
    data.setdefault("name", name)  # its campaigns are labelled with the schedule's name
    require_api()
    _ensure_pool(work_pool)
    from prefect.schedules import Cron

    source = scheduled_campaign.from_source(source=str(REPO), entrypoint=ENTRYPOINT)
    with contextlib.redirect_stdout(io.StringIO()):  # deploy() prints a table of what it applied
        deployment_id = source.deploy(
            name=name,
            work_pool_name=work_pool,
            schedules=[Cron(cron, timezone=timezone)],
            parameters={"config": data, "db_url": db_url},
            description=f"discovery campaign on {data['problem']} (discovery schedule)",
            tags=["discovery"],
            build=False,
            push=False,
            print_next_steps=False,
            ignore_warnings=True,
        )
    return str(deployment_id)


def _full_name(name: str) -> str:
    return name if "/" in name else f"{FLOW_NAME}/{name}"


def _info(dep: Any, pools: dict | None = None) -> ScheduleInfo:
    cron, tz, active = "", "", False
    for s in dep.schedules or []:
        sched = s.schedule
        if getattr(sched, "cron", None):
            cron, tz, active = sched.cron, sched.timezone or "UTC", bool(s.active)
            break
    params = dict(dep.parameters or {})
    data = dict(params.get("config") or {})
    return ScheduleInfo(
        name=dep.name,
        deployment_id=str(dep.id),
        cron=cron,
        timezone=tz,
        active=active and not getattr(dep, "paused", False),
        work_pool=dep.work_pool_name or "",
        problem=str(data.get("problem", "")),
        settings=data,
        db_url=params.get("db_url"),
    )


def list_schedules() -> list[ScheduleInfo]:
    """Every scheduled campaign the Prefect API holds, by name."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    require_api()
    with get_client(sync_client=True) as client:
        deps = client.read_deployments(flow_filter=FlowFilter(name=FlowFilterName(any_=[FLOW_NAME])))
    return sorted((_info(d) for d in deps), key=lambda s: s.name)


def get_schedule(name: str) -> ScheduleInfo:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    require_api()
    with get_client(sync_client=True) as client:
        try:
            return _info(client.read_deployment_by_name(_full_name(name)))
        except ObjectNotFound:
            raise UnknownSchedule(f"no scheduled campaign named {name!r}: see `discovery schedules`") from None


def unschedule(name: str) -> str:
    """Deletes the scheduled campaign `name` (its deployment; past runs and campaigns stay)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    require_api()
    with get_client(sync_client=True) as client:
        try:
            dep = client.read_deployment_by_name(_full_name(name))
        except ObjectNotFound:
            raise UnknownSchedule(f"no scheduled campaign named {name!r}: see `discovery schedules`") from None
        client.delete_deployment(dep.id)
    return str(dep.id)


__all__ = [
    "ScheduleInfo",
    "UnknownSchedule",
    "get_schedule",
    "list_schedules",
    "require_api",
    "schedule_campaign",
    "scheduled_campaign",
    "unschedule",
]
