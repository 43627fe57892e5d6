"""A throwaway PostgreSQL server for tests: a real `postgres` on 127.0.0.1, a free port, a temp dir.

tests/conftest.py turns it into the session fixture `postgres_server` and the per-test fixture
`pg_url` (a fresh, empty database). Binaries come from `pg_config --bindir`, else the newest
/usr/lib/postgresql/*/bin, else PATH. PostgreSQL refuses to run as root, so as root the cluster
is created and run as the `postgres` system user (Debian's package creates it), else `nobody`,
in a private temp folder that user owns. The server runs with fsync off (a test database is
thrown away) and is stopped, and its folder removed, when the session ends.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import importlib.util
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
from pathlib import Path

SUPERUSER = "postgres"  # the cluster's superuser role (trust authentication on 127.0.0.1 only)


class PostgresUnavailable(RuntimeError):
    """PostgreSQL's server binaries are not installed here."""


def find_bindir() -> Path | None:
    """The folder holding initdb, pg_ctl and postgres, or None."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=30, check=True)
            candidates.append(Path(out.stdout.strip()))

    def version(path: str) -> tuple[int, ...]:
        part = Path(path).parent.name
        return tuple(int(x) for x in part.split(".") if x.isdigit())

    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)]
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).parent)
    for folder in candidates:
        if all((folder / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return folder
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _service_user() -> str | None:
    """The unprivileged user to run the server as when we are root (None: run as ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise PostgresUnavailable("running as root and neither a `postgres` nor a `nobody` user exists to run the server")


class PostgresServer:
    """One PostgreSQL cluster for a test session; `create_database()` hands out fresh databases."""

    def __init__(self, bindir: Path):
        self.bindir = bindir
        self.user = _service_user()
        # /tmp, not $TMPDIR: the service user must be able to reach the folder
        self.root = Path(tempfile.mkdtemp(prefix="discovery-pg-", dir="/tmp" if self.user else None))
        self.data = self.root / "data"
        self.sockets = self.root / "sock"
        self.log = self.root / "server.log"
        self.port = 0
        self._names = itertools.count(1)
        self._lock = threading.Lock()
        self._started = False
        self._owner = os.getpid()

    # ------------------------------------------------------------ life cycle

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self.user is not None:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(LC_ALL="C.UTF-8", LANG="C.UTF-8", TZ="UTC")
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=self.root)

    def start(self) -> "PostgresServer":
        self.sockets.mkdir()
        if self.user is not None:
            info = pwd.getpwnam(self.user)
            for path in (self.root, self.sockets):
                os.chown(path, info.pw_uid, info.pw_gid)
        os.chmod(self.root, 0o700)
        done = self._run("initdb", "-D", str(self.data), "-U", SUPERUSER, "-A", "trust", "-E", "UTF8",
                         "--locale=C.UTF-8", "--no-sync")
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
        last = ""
        for _ in range(5):  # the free port may be taken between probing and binding: try another
            self.port = _free_port()
            options = (f"-p {self.port} -h 127.0.0.1 -k {self.sockets} -c fsync=off -c synchronous_commit=off "
                       f"-c full_page_writes=off -c max_connections=300")
            done = self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60",
                             "start")
            if done.returncode == 0:
                self._started = True
                atexit.register(self.stop)  # also when the session ends without its fixture finalizers
                return self
            last = (self.log.read_text(errors="replace")[-2000:] if self.log.exists() else "") or done.stderr
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        raise RuntimeError(f"pg_ctl start failed: {last.strip()}")

    def stop(self) -> None:
        if os.getpid() != self._owner:
            return  # a forked child inherited this object: the server is its parent's
        if self._started:
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")
            self._started = False
        shutil.rmtree(self.root, ignore_errors=True)

    # ------------------------------------------------------------ databases

    def url(self, database: str = "postgres", driver: str = "postgresql+psycopg") -> str:
        return f"{driver}://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user=SUPERUSER, dbname="postgres",
                             autocommit=True, connect_timeout=30) as conn:
            conn.execute(sql)

    def create_database(self, prefix: str = "test") -> str:
        """A new empty database; returns its SQLAlchemy URL (postgresql+psycopg://...)."""
        with self._lock:
            name = f"{prefix}_{os.getpid()}_{next(self._names)}"
        self._admin(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def start_server() -> PostgresServer:
    """Starts a server, or raises PostgresUnavailable when PostgreSQL is not installed."""
    bindir = find_bindir()
    if bindir is None:
        raise PostgresUnavailable(
            "PostgreSQL server binaries not found (no `pg_config --bindir`, no /usr/lib/postgresql/*/bin): "
            "install them with `apt-get install -y postgresql`")
    if importlib.util.find_spec("psycopg") is None:
        raise PostgresUnavailable("the psycopg driver is not installed: pip install -e '.[dev]'")
    server = PostgresServer(bindir)
    try:
        return server.start()
    except BaseException:
        server.stop()  # removes the half-made cluster's folder
        raise
