"""A throwaway Prefect server (and its workers) for integration tests: real processes on 127.0.0.1.

`PrefectServer(tmp)` runs `prefect server start` on a free port with its own PREFECT_HOME
(so nothing reads or writes the user's ~/.prefect), analytics off; `spawn(...)` starts further
processes (workers) with the same isolated environment pointed at the server. Every process
runs in its own process group and is killed with it on `stop()`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrefectServer:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.home = self.root / "prefect-home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.storage = self.root / "prefect-storage"  # shared task-parameter storage (one machine)
        self.storage.mkdir(exist_ok=True)
        self.port = free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self.procs: list[tuple[str, subprocess.Popen, Path]] = []

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env.update(
            PREFECT_HOME=str(self.home),
            PREFECT_API_URL=self.api_url,
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            DO_NOT_TRACK="1",
            PREFECT_LOGGING_LEVEL="INFO",
            PREFECT_RESULTS_LOCAL_STORAGE_PATH=str(self.storage),
            PYTHONUNBUFFERED="1",
        )
        env.update(extra)
        return env

    def spawn(self, label: str, args: list[str], **env: str) -> subprocess.Popen:
        log = self.root / f"{label}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                args, env=self.env(**env), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=str(Path(__file__).resolve().parents[1]), start_new_session=True,
            )
        self.procs.append((label, proc, log))
        return proc

    def start(self, timeout: float = 180) -> "PrefectServer":
        env = {"PREFECT_SERVER_API_HOST": "127.0.0.1", "PREFECT_SERVER_API_PORT": str(self.port)}
        proc = self.spawn("server", [str(VENV_BIN / "prefect"), "server", "start", "--host", "127.0.0.1",
                                     "--port", str(self.port), "--analytics-off", "--no-ui"],
                          **env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"prefect server exited ({proc.returncode}):\n{self.tail('server')}")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            time.sleep(0.5)
        raise RuntimeError(f"prefect server did not answer /api/health within {timeout:.0f}s:\n{self.tail('server')}")

    def tail(self, label: str, chars: int = 4000) -> str:
        for name, _, log in self.procs:
            if name == label and log.exists():
                return log.read_text(errors="replace")[-chars:]
        return ""

    def logs(self) -> str:
        return "\n".join(f"--- {name}\n{self.tail(name)}" for name, _, _ in self.procs)

    def stop(self) -> None:
        for _, proc, _ in reversed(self.procs):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for _, proc, _ in reversed(self.procs):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        self.procs.clear()
