"""`discovery dashboard` / flows.dashboard: the command line, the database checks, the child process."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from flows import dashboard
from flows.dashboard import DashboardError, dashboard_command, launch_dashboard, wait_until_ready

REPO = Path(__file__).resolve().parents[2]

TINY_APP = """
import os
import streamlit as st

st.write("tiny app on", os.environ["DISCOVERY_DB_URL"])
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _FakeProcess:
    """Stands in for the streamlit child: records how it was started and exits at once."""

    started: list[tuple[list[str], dict[str, str]]] = []

    def __init__(self, cmd, env=None, **_kw):
        _FakeProcess.started.append((list(cmd), dict(env or {})))
        self.returncode = 0
        self.pid = -1

    def poll(self):
        return self.returncode

    def wait(self, timeout=None):
        return self.returncode

    def send_signal(self, sig):  # pragma: no cover - never running
        pass

    terminate = kill = lambda self: None


@pytest.fixture
def fake_popen(monkeypatch):
    _FakeProcess.started = []
    monkeypatch.setattr(dashboard.subprocess, "Popen", _FakeProcess)
    return _FakeProcess.started


def test_dashboard_command_serves_the_app_locally_without_telemetry_or_watcher(tmp_path):
    cmd = dashboard_command()
    assert cmd[:4] == [sys.executable, "-m", "streamlit", "run"]
    assert cmd[4] == str(REPO / "dashboard" / "app.py") and Path(cmd[4]).is_absolute()
    opts = dict(zip(cmd[5::2], cmd[6::2]))
    assert opts == {
        "--server.address": "127.0.0.1",
        "--server.port": "8501",
        "--server.headless": "true",
        "--browser.gatherUsageStats": "false",
        "--global.developmentMode": "false",
        "--server.fileWatcherType": "none",
        "--client.toolbarMode": "minimal",
    }
    assert len(cmd) == 5 + 2 * len(opts)
    other = dashboard_command(host="0.0.0.0", port=9000, headless=False, app=tmp_path / "a.py")
    assert other[4] == str((tmp_path / "a.py").resolve())
    assert dict(zip(other[5::2], other[6::2]))["--server.port"] == "9000"
    assert dict(zip(other[5::2], other[6::2]))["--server.headless"] == "false"
    assert dict(zip(other[5::2], other[6::2]))["--server.address"] == "0.0.0.0"


def test_every_option_exists_in_the_installed_streamlit():
    from streamlit import config

    names = [a[2:] for a in dashboard_command()[5::2]]
    missing = [n for n in names if n not in config._config_options_template]
    assert not missing, f"streamlit has no option(s) {missing}"


@pytest.mark.parametrize("url", ["nope://x", "sqlite:////no/such/folder/d.db", "sqlite://", "sqlite:///:memory:"])
def test_bad_url_is_a_one_line_database_error_before_anything_starts(url, fake_popen):
    from db.engine import DatabaseError

    with pytest.raises(DatabaseError) as info:
        launch_dashboard(db_url=url, port=_free_port())
    assert "\n" not in str(info.value)
    assert fake_popen == []


def test_missing_sqlite_file_is_not_created_and_the_app_gets_an_absolute_url(tmp_path, monkeypatch, fake_popen):
    monkeypatch.chdir(tmp_path)
    app = tmp_path / "app.py"
    app.write_text(TINY_APP)
    code = launch_dashboard(db_url="sqlite:///./missing.db", port=_free_port(), app=app, echo=lambda _m: None)
    assert code == 0
    assert not (tmp_path / "missing.db").exists()
    (cmd, env), = fake_popen
    assert env["DISCOVERY_DB_URL"] == f"sqlite:///{tmp_path / 'missing.db'}"
    assert cmd[4] == str(app)
    assert os.listdir(tmp_path) == ["app.py"]


def test_existing_database_is_migrated_to_the_newest_revision(tmp_path, fake_popen):
    from db.engine import alembic_head, dispose_engines
    from tests.migrations import old_database

    db = tmp_path / "old.db"
    old_database(f"sqlite:///{db}", "0001")
    dispose_engines()
    app = tmp_path / "app.py"
    app.write_text(TINY_APP)
    assert launch_dashboard(db_url=f"sqlite:///{db}", port=_free_port(), app=app, echo=lambda _m: None) == 0
    con = sqlite3.connect(db)
    try:
        assert con.execute("select version_num from alembic_version").fetchone()[0] == alembic_head()
    finally:
        con.close()
    assert fake_popen[0][1]["DISCOVERY_DB_URL"] == f"sqlite:///{db}"


def test_missing_app_and_taken_port_are_one_line_errors(tmp_path, fake_popen):
    with pytest.raises(DashboardError, match="missing"):
        launch_dashboard(db_url=f"sqlite:///{tmp_path / 'd.db'}", app=tmp_path / "nope.py")
    app = tmp_path / "app.py"
    app.write_text(TINY_APP)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(DashboardError, match=f"port {port} is already in use"):
            launch_dashboard(db_url=f"sqlite:///{tmp_path / 'd.db'}", port=port, app=app)
    assert fake_popen == []


def test_launcher_serves_a_missing_database_without_creating_it_and_stops_on_ctrl_c(tmp_path):
    """The real child process: health answers, the database stays missing, Ctrl-C stops both."""
    app = tmp_path / "app.py"
    app.write_text(TINY_APP)
    db = tmp_path / "missing.db"
    port = _free_port()
    script = textwrap.dedent(f"""
        import sys
        from flows.dashboard import launch_dashboard
        sys.exit(launch_dashboard(db_url={f"sqlite:///{db}"!r}, port={port}, app={str(app)!r}))
    """)
    env = {k: v for k, v in os.environ.items() if k != "DISCOVERY_DB_URL"}
    log = tmp_path / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-u", "-c", script], cwd=REPO, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        assert wait_until_ready(f"http://127.0.0.1:{port}", 120, process=proc), log.read_text()
        _wait_for_text(log, f"dashboard: http://127.0.0.1:{port}  (Ctrl-C to stop)", proc)
        os.kill(proc.pid, signal.SIGINT)  # the launcher alone: it must forward the signal to streamlit
        assert proc.wait(timeout=60) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    _assert_group_gone(proc.pid)
    assert not db.exists()
    assert not wait_until_ready(f"http://127.0.0.1:{port}", 1)


def _wait_for_text(log: Path, text: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    import time

    deadline = time.monotonic() + timeout
    while text not in log.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, f"no {text!r} in:\n{log.read_text()}"
        time.sleep(0.1)


def _assert_group_gone(pgid: int) -> None:
    import time

    for _ in range(100):
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    pytest.fail(f"processes of group {pgid} are still running after the dashboard stopped")


def test_cli_help_lists_the_options():
    out = subprocess.run([sys.executable, "-m", "flows.cli", "dashboard", "--help"], cwd=REPO,
                         capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "200"})
    assert out.returncode == 0, out.stderr
    for option in ("--db", "--host", "--port", "--open", "--no-open", "127.0.0.1", "8501"):
        assert option in out.stdout, out.stdout
    assert "dashboard" in out.stdout.lower()


def test_cli_bad_url_prints_one_error_line(tmp_path):
    out = subprocess.run([sys.executable, "-m", "flows.cli", "dashboard", "--db", "nope://x",
                          "--port", str(_free_port())], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.startswith("error: unsupported database URL") and out.stderr.count("\n") == 1, out.stderr
