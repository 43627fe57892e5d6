"""Evaluation workers: Prefect task workers that run the evaluations of campaigns with eval_on="workers".

    from flows.workers import serve_evaluations
    serve_evaluations()          # what `discovery worker` runs; blocks until Ctrl-C / SIGTERM

A worker needs the Prefect server (PREFECT_API_URL) and the campaigns' database
(DISCOVERY_DB_URL) the campaign flows use, plus the task-scheduling storage through which
Prefect hands a deferred task its parameters: by default a folder (PREFECT_RESULTS_LOCAL_STORAGE_PATH,
~/.prefect/storage), which every worker and campaign process must share (one machine: nothing to
do; several machines: a shared mount, or a storage block named by
PREFECT_TASKS_SCHEDULING_DEFAULT_STORAGE_BLOCK, e.g. S3 via prefect-aws).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from discovery.config import CampaignConfig, ConfigError

log = logging.getLogger("discovery.workers")


def _require_db() -> str:
    url = os.environ.get("DISCOVERY_DB_URL", "").strip()
    if not url:
        raise ConfigError("DISCOVERY_DB_URL is not set: a worker writes evaluations to the campaigns' database, "
                          "so set it to the same URL the campaigns use (e.g. postgresql+psycopg://HOST/discovery)")
    from db.engine import get_engine

    get_engine(url)  # raises DatabaseError (one line) when unreachable; migrates a new database
    return url


def serving_workers() -> int:
    """How many task workers currently serve the evaluate task (as the Prefect API sees them)."""
    from prefect.client.orchestration import get_client

    from flows.campaign import evaluate_task

    with get_client(sync_client=True) as client:
        resp = client._client.post(  # noqa: SLF001 - no public client method for this route
            "/task_workers/filter", json={"task_worker_filter": {"task_keys": [evaluate_task.task_key]}})
        resp.raise_for_status()
        return len(resp.json())


def check_ready(cfg: CampaignConfig) -> None:
    """Before a campaign with eval_on="workers" writes anything: a real Prefect API must answer
    (raises PrefectUnavailable, one line); warns when no worker serves evaluations yet."""
    if cfg.eval_on != "workers":
        return
    from flows.schedule import require_api

    require_api()
    try:
        n = serving_workers()
    except Exception:  # noqa: BLE001 - an older server: skip the hint
        return
    if n == 0:
        log.warning("no evaluation worker is running yet: the campaign waits until one starts "
                    "(`discovery worker` with the same PREFECT_API_URL and DISCOVERY_DB_URL)")


def serve_evaluations(limit: int | None = None, **kwargs: Any) -> None:
    """Runs a Prefect task worker serving campaign evaluations until interrupted.

    `limit`: evaluations at once in this worker (default: CPU cores).
    """
    from prefect.task_worker import serve

    from flows.campaign import evaluate_task
    from flows.schedule import require_api

    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be at least 1, not {limit}")
    require_api()
    _require_db()
    limit = limit or os.cpu_count() or 1
    serve(evaluate_task, limit=limit, **kwargs)


__all__ = ["check_ready", "serve_evaluations", "serving_workers"]
