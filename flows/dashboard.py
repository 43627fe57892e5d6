"""`discovery dashboard`: the Streamlit app (dashboard/app.py) on a campaigns database.

The app only reads: it opens the database read-only and so cannot migrate it. The launcher
opens an existing database once first, which migrates it to the newest schema, and never
creates a missing SQLite file (the app then shows how to run a first campaign). The app runs
as a child process (`python -m streamlit run ...`) with `DISCOVERY_DB_URL` set; Ctrl-C (or
SIGTERM) is forwarded to it and its exit code returned.

    from flows.dashboard import launch_dashboard
    launch_dashboard(db_url="sqlite:///runs.db", port=8502)   # blocks until stopped
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

APP = Path(__file__).resolve().parents[1] / "dashboard" / "app.py"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8501
HEALTH_PATH = "/_stcore/health"
FORWARD_AFTER_S = 1.0  # a stop signal the app did not get itself is forwarded after this long
STOP_GRACE_S = 15.0  # after a stop signal, how long the app may take to stop before SIGTERM, then SIGKILL


class DashboardError(RuntimeError):
    """A one-line, actionable problem starting the dashboard (port taken, app missing)."""


def dashboard_command(
    *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, headless: bool = True, app: str | Path | None = None,
) -> list[str]:
    """The command line that serves the app: local only, no telemetry, no file watcher, no dev tools."""
    return [
        sys.executable, "-m", "streamlit", "run", str(Path(app or APP).resolve()),
        "--server.address", host,
        "--server.port", str(port),
        "--server.headless", "true" if headless else "false",
        "--browser.gatherUsageStats", "false",
        "--global.developmentMode", "false",
        "--server.fileWatcherType", "none",
        "--client.toolbarMode", "minimal",
    ]


def local_address(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> str:
    """The URL a browser on this machine uses (a wildcard listen address is reached via loopback)."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


def wait_until_ready(url: str, timeout: float = 60.0, *, process: subprocess.Popen | None = None,
                     interval: float = 0.2) -> bool:
    """Polls url's /_stcore/health until it answers "ok": True then; False on timeout or if process exits."""
    health = url if url.rstrip("/").endswith(HEALTH_PATH) else url.rstrip("/") + HEALTH_PATH
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through an HTTP proxy
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            return False
        try:
            with opener.open(health, timeout=min(5.0, max(0.5, interval * 5))) as response:
                if response.status == 200 and response.read().strip() == b"ok":
                    return True
        except (urllib.error.URLError, OSError, ValueError):
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def _prepare_database(url: str) -> str:
    """Validates url, migrates an existing database, and returns the URL the app gets.

    A relative SQLite path is made absolute (the app must find the same file); a missing
    SQLite file is left missing.
    """
    from sqlalchemy.engine import make_url

    from db.engine import DatabaseError, _check_url, get_engine

    _check_url(url)  # one-line DatabaseError for a bad URL, unknown driver or missing folder
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database in (None, "", ":memory:") or parsed.query.get("mode") == "memory":
            raise DatabaseError(
                f"{url!r} is an in-memory database, which the dashboard (another process) cannot see: "
                "pass --db sqlite:///PATH")
        if str(parsed.query.get("uri", "")).lower() not in ("true", "1"):
            path = Path(parsed.database).expanduser().resolve()
            parsed = parsed.set(database=str(path))
            url = parsed.render_as_string(hide_password=False)
            if not path.exists():
                return url
    get_engine(url).dispose()  # migrates to the newest revision (a server database: checks it is reachable)
    return url


def _say(message: str) -> None:
    print(message, flush=True)


def _port_in_use(host: str, port: int) -> bool:
    address = local_address(host, port).split("//", 1)[1].rsplit(":", 1)[0].strip("[]")
    try:
        with socket.create_connection((address, port), timeout=1.0):
            return True
    except OSError:
        return False


def launch_dashboard(
    *, db_url: str | None = None, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, open_browser: bool = False,
    app: str | Path | None = None, ready_timeout: float = 120.0, echo: Callable[[str], None] | None = None,
) -> int:
    """Serves the dashboard on host:port for the database db_url until stopped; returns the app's exit code.

    Raises db.engine.DatabaseError for a bad URL or unreadable database and DashboardError when the port
    is taken or the app is missing, before anything is started.
    """
    from db.engine import ENV_VAR, resolve_url

    echo = echo or _say
    url = _prepare_database(resolve_url(db_url))
    app_path = Path(app or APP).resolve()
    if not app_path.is_file():
        raise DashboardError(f"dashboard app {app_path} is missing: reinstall discovery-platform")
    if not 0 < port < 65536:
        raise DashboardError(f"port {port} is out of range: pass --port between 1 and 65535")
    if _port_in_use(host, port):
        raise DashboardError(f"port {port} is already in use on {host}: pass another --port")

    env = dict(os.environ)
    env[ENV_VAR] = url
    address = local_address(host, port)
    proc = subprocess.Popen(dashboard_command(host=host, port=port, headless=True, app=app_path), env=env)

    # A terminal's Ctrl-C reaches the whole process group, the app included; a signal sent to this
    # process alone is forwarded once the app has not reacted to it within FORWARD_AFTER_S.
    stop: dict[str, float] = {}

    def on_signal(signum, _frame):  # noqa: ANN001
        stop.setdefault("at", time.monotonic())
        stop.setdefault("signum", signum)

    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        try:
            previous[sig] = signal.signal(sig, on_signal)
        except ValueError:  # not the main thread: the caller handles signals
            break
    try:
        from sqlalchemy.engine import make_url

        shown = make_url(url).render_as_string(hide_password=True)
        echo(f"dashboard: starting on {address} (database {shown})")
        deadline = time.monotonic() + ready_timeout
        ready = False
        while not ready and not stop and proc.poll() is None and time.monotonic() < deadline:
            ready = wait_until_ready(address, 1.0, process=proc)
        if ready and not stop:
            echo(f"dashboard: {address}  (Ctrl-C to stop)")
            if open_browser:
                import webbrowser

                webbrowser.open(address)
        elif not stop and proc.poll() is None:
            echo(f"dashboard: not answering on {address} after {ready_timeout:.0f} s; still waiting (Ctrl-C to stop)")
        code = _wait(proc, stop)
        if stop and code == -int(stop["signum"]):
            # asked to stop and stopped by that signal: a slow shutdown that got the forwarded
            # Ctrl-C a second time ends by the signal itself; that is still the stop asked for
            code = 0
    finally:
        if proc.poll() is None:  # an unexpected error in this process: do not leave the app behind
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 128 - code if code < 0 else code


def _wait(proc: subprocess.Popen, stop: dict[str, float]) -> int:
    """Waits for the app to exit, forwarding a stop signal it did not get and escalating if it hangs."""
    forwarded = False
    while True:
        try:
            return proc.wait(timeout=0.25)
        except subprocess.TimeoutExpired:
            pass
        if not stop:
            continue
        waited = time.monotonic() - stop["at"]
        if not forwarded and waited > FORWARD_AFTER_S:
            forwarded = True
            try:
                proc.send_signal(signal.SIGINT if stop["signum"] == signal.SIGINT else signal.SIGTERM)
            except ProcessLookupError:
                pass
        if waited > STOP_GRACE_S:
            proc.terminate()
            try:
                return proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                return proc.wait()
