"""Shared test set-up: isolate every test from the user's database, Prefect home and secrets."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# Set before anything imports prefect or litellm.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
sys._called_from_test = True  # type: ignore[attr-defined]  # problem entry points: built-ins only

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch):
    """Each test gets its own database file and no model configured."""
    monkeypatch.setenv("DISCOVERY_DB_URL", f"sqlite:///{tmp_path / 'discovery.db'}")
    monkeypatch.delenv("DISCOVERY_MODEL", raising=False)
    yield


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory):
    """One ephemeral Prefect API for the whole session (started only by tests that ask for it)."""
    home = tmp_path_factory.mktemp("prefect-home")
    os.environ["PREFECT_HOME"] = str(home)
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


# ---------------------------------------------------------------- PostgreSQL


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL server for the session (tests/pg.py), started by the first test that asks.

    Not installed: the test is skipped locally, and fails under CI (CI=true), which must run it
    (.ci/run installs Debian's `postgresql`)."""
    from tests.pg import PostgresUnavailable, start_server

    try:
        server = start_server()
    except PostgresUnavailable as exc:
        if _in_ci():
            pytest.fail(f"{exc} (CI must run the PostgreSQL tests)", pytrace=False)
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        from db.engine import dispose_engines

        dispose_engines()
        server.stop()


@pytest.fixture()
def pg_url(postgres_server):
    """The postgresql+psycopg:// URL of a fresh, empty database, dropped after the test."""
    from db.engine import dispose_engines

    url = postgres_server.create_database()
    yield url
    dispose_engines()  # the cached engines hold connections to it
    postgres_server.drop_database(url)
