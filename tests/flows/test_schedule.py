"""Campaigns on a timetable: a real Prefect server, a real process worker, a real campaign row.

The slow test schedules a campaign (a deployment with a cron schedule), reads it back through
the Prefect client and `discovery schedules`, triggers one run now, lets a
`prefect worker start --pool discovery --type process` run it against a SQLite file, and removes
the schedule with `discovery unschedule`. Every process has its own PREFECT_HOME.
"""

from __future__ import annotations

import sqlite3
import subprocess
import time

import pytest

from tests.prefect_server import VENV_BIN, PrefectServer

SETTINGS = dict(budget=8, chains=2, k=4, seed=1, sandbox="process", eval_slots=2)


def _discovery(server: PrefectServer, *args: str, timeout: float = 180, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / "discovery"), *args], env=server.env(**env), capture_output=True,
                          text=True, timeout=timeout, cwd=str(server.root))


def _campaigns(db) -> list[tuple]:
    if not db.exists():
        return []
    con = sqlite3.connect(db, timeout=30)
    try:
        return con.execute("SELECT id, status, name, budget FROM campaign").fetchall()
    except sqlite3.OperationalError:  # not migrated yet
        return []
    finally:
        con.close()


def test_schedule_needs_a_prefect_server():
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.compare import PrefectUnavailable
    from flows.schedule import list_schedules, schedule_campaign

    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        with pytest.raises(PrefectUnavailable, match="prefect server start.*PREFECT_API_URL"):
            schedule_campaign("erdos_min_overlap", cron="0 2 * * *", budget=8, chains=2, k=4)
        with pytest.raises(PrefectUnavailable, match="PREFECT_API_URL is not set"):
            list_schedules()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(cron="every night"), "cron 'every night' needs 5 fields"),
        (dict(cron="61 2 * * *"), "invalid schedule"),
        (dict(cron="0 2 * * *", timezone="Mars/Olympus"), "invalid schedule"),
        (dict(cron="0 2 * * *", budget=7), "budget 7 is not a multiple"),
        (dict(cron="0 2 * * *", db_url="postgresql+psycopg://u:secret@db/x"), "carries a password"),
        (dict(cron="0 2 * * *", name="bad name!"), "schedule name"),
    ],
)
def test_schedule_validates_before_talking_to_prefect(kwargs, message):
    from discovery.config import ConfigError
    from flows.schedule import schedule_campaign

    args = dict(chains=2, k=4, budget=8) | kwargs
    with pytest.raises(ConfigError, match=message) as info:
        schedule_campaign("erdos_min_overlap", **args)
    assert "\n" not in str(info.value)


@pytest.mark.slow
def test_scheduled_campaign_runs_on_a_process_worker(tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.schedule import FLOW_NAME, list_schedules, schedule_campaign

    server = PrefectServer(tmp_path / "prefect").start()
    db = tmp_path / "scheduled.db"
    try:
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            dep_id = schedule_campaign("erdos_min_overlap", cron="0 2 * * *", name="nightly-erdos", **SETTINGS)
            with get_client(sync_client=True) as client:
                dep = client.read_deployment_by_name(f"{FLOW_NAME}/nightly-erdos")
                pool = client.read_work_pool("discovery")
            assert str(dep.id) == dep_id
            assert pool.type == "process"
            assert dep.work_pool_name == "discovery"
            assert dep.entrypoint == "flows/schedule.py:scheduled_campaign"
            [sched] = dep.schedules
            assert sched.schedule.cron == "0 2 * * *" and sched.schedule.timezone == "UTC" and sched.active
            assert dep.parameters == {
                "config": {"problem": "erdos_min_overlap", "name": "nightly-erdos", **SETTINGS}, "db_url": None}
            assert [s.name for s in list_schedules()] == ["nightly-erdos"]

            out = _discovery(server, "schedules")
            assert out.returncode == 0, out.stderr
            assert "nightly-erdos" in out.stdout and "0 2 * * *" in out.stdout and "erdos_min_overlap" in out.stdout

            flow_run = run_deployment(f"{FLOW_NAME}/nightly-erdos", timeout=0)
            server.spawn("worker", [str(VENV_BIN / "prefect"), "worker", "start", "--pool", "discovery",
                                    "--type", "process"], DISCOVERY_DB_URL=f"sqlite:///{db}")
            deadline = time.monotonic() + 300
            state = None
            while time.monotonic() < deadline:
                with get_client(sync_client=True) as client:
                    state = client.read_flow_run(flow_run.id).state
                if state is not None and state.is_final():
                    break
                time.sleep(1)
            assert state is not None and state.is_completed(), f"flow run ended {state}:\n{server.logs()}"
        rows = _campaigns(db)
        assert len(rows) == 1, rows
        _, status, name, budget = rows[0]
        assert (status, name, budget) == ("completed", "nightly-erdos", 8)

        out = _discovery(server, "unschedule", "nightly-erdos")
        assert out.returncode == 0, out.stderr
        out = _discovery(server, "schedules")
        assert out.returncode == 0 and "no scheduled campaigns" in out.stdout, out.stdout + out.stderr
        out = _discovery(server, "unschedule", "nightly-erdos")
        assert out.returncode == 2 and out.stderr.strip() == (
            "error: no scheduled campaign named 'nightly-erdos': see `discovery schedules`")
    finally:
        server.stop()
