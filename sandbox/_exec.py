"""Shared machinery of the subprocess-based sandboxes (process and bwrap).

Each run: a fresh private work dir with runner.py, candidate.py, args.json and inputs/<name>.npy
for each input array; a child started in
its own session with an environment built from scratch plus a unique token; stdout/stderr read
through pipes into bounded tail buffers; a wall-clock deadline enforced from outside (SIGKILL to
the process group); CPU time and exit status from os.wait4; afterwards every process still
carrying the token is SIGKILLed, and the work dir is removed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Sequence

from sandbox.base import Limits, RunRequest, RunResult
from sandbox.result import ResultError, read_result

RUNNER_SOURCE = Path(__file__).with_name("runner.py")
TOKEN_VAR = "DISCOVERY_SANDBOX_TOKEN"
EXIT_MEMORY = 86  # keep in sync with runner.py
EXIT_SETUP = 87
NOBODY = 65534
PASS_THROUGH = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")  # some CPUs need these; nothing else
DRAIN_GRACE_S = 2.0
INPUTS_DIR = "inputs"
NUMERIC_KINDS = "biufc"  # bool, signed/unsigned int, float, complex
_INTERPRETER_QUERY = (
    "import json, os, site, sys\n"
    "dirs = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,\n"
    "        os.path.dirname(os.path.realpath(sys.executable))]\n"
    "path = {os.path.realpath(p) for p in sys.path if p}\n"
    "base = site.getsitepackages([sys.base_prefix, sys.base_exec_prefix])\n"
    "hide = [p for p in base if os.path.isdir(p) and os.path.realpath(p) not in path]\n"
    "print(json.dumps({'dirs': dirs, 'hide': hide}))\n")
_interp_lock = threading.Lock()
_interp_cache: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def interpreter_dirs(python: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(prefixes, hidden) of an interpreter, asked once per interpreter (thread-safe).

    prefixes: its prefix, base prefix, exec prefixes and the directory of its real executable
    (as given and resolved), to be made visible read-only. hidden: site-packages dirs of the base
    interpreter that are not on this interpreter's sys.path (a venv without system site
    packages), to be covered with an empty dir so a candidate cannot add them to sys.path."""
    key = os.path.abspath(python)
    with _interp_lock:
        cached = _interp_cache.get(key)
        if cached is None:
            out = subprocess.run([key, "-I", "-c", _INTERPRETER_QUERY], capture_output=True,
                                 text=True, timeout=60, env={"PATH": "/usr/bin:/bin"},
                                 check=True)
            info = json.loads(out.stdout)
            dirs = sorted({os.path.realpath(p) for p in info["dirs"]}
                          | {os.path.abspath(p) for p in info["dirs"]})
            hide = sorted({os.path.realpath(p) for p in info["hide"]})
            hide = [h for h in hide if not any(_inside(d, h) for d in dirs)]
            cached = _interp_cache[key] = (tuple(dirs), tuple(hide))
        return cached


def check_inputs(inputs: Any, kwargs: Any) -> dict[str, Any]:
    """The request's input arrays as {name: ndarray}; ValueError for a caller bug (a name that
    is not an identifier or clashes with kwargs, a non-numeric array)."""
    if not inputs:
        return {}
    if not isinstance(inputs, dict):
        raise ValueError(f"RunRequest.inputs must be a dict of name -> numpy array, not "
                         f"{type(inputs).__name__}")
    import numpy as np

    out = {}
    for name, value in inputs.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"input name {name!r} is not a Python identifier")
        if kwargs and name in kwargs:
            raise ValueError(f"input {name!r} is also given in kwargs")
        arr = value if isinstance(value, np.ndarray) else np.asarray(value)
        if arr.dtype.kind not in NUMERIC_KINDS:
            raise ValueError(f"input {name!r} has non-numeric dtype {arr.dtype}; inputs must be "
                             f"numeric arrays (bool, int, float, complex)")
        out[name] = arr
    return out


def check_python(python: str | None) -> None:
    if python is None:
        return
    if not isinstance(python, str) or not os.path.isabs(python) or not os.path.isfile(python):
        raise ValueError(f"RunRequest.python must be the absolute path of an interpreter, got "
                         f"{python!r}")


def is_root() -> bool:
    return os.geteuid() == 0


def new_token() -> str:
    """A run token: `<platform pid>-<random>`; the pid prefix lets tools (and the tests) tell
    this process's runs from those of other platform processes on the same machine."""
    return f"{os.getpid()}-{secrets.token_hex(16)}"


def base_env(limits: Limits, home: str, token: str) -> dict[str, str]:
    """The candidate's whole environment: nothing is inherited except PASS_THROUGH."""
    threads = str(max(1, int(limits.cpus)))
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": home,
        "TMPDIR": home,
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "OMP_NUM_THREADS": threads,
        "OPENBLAS_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
        "NUMEXPR_NUM_THREADS": threads,
        TOKEN_VAR: token,
    }
    for name in PASS_THROUGH:
        if name in os.environ:
            env[name] = os.environ[name]
    return env


class _Tail:
    """Keeps only the last `limit` bytes written to it."""

    def __init__(self, limit: int):
        self.limit = max(0, int(limit))
        self.buf = bytearray()

    def add(self, chunk: bytes) -> None:
        self.buf += chunk
        if len(self.buf) > 2 * self.limit + 65536:
            del self.buf[: len(self.buf) - self.limit]

    def text(self) -> str:
        data = bytes(self.buf[-self.limit:]) if self.limit else b""
        return data.decode("utf-8", errors="replace")


def kill_token_holders(token: str, rounds: int = 20, uid: int | None = None) -> int:
    """SIGKILLs every process whose initial environment carries the run token, and (given the
    run's own `uid`) every process of that uid, which also finds a process that dropped the
    token; repeats until a scan finds none (a process may fork while we scan). Returns how many
    kills were sent."""
    from sandbox.uids import holds_uid

    needle = f"{TOKEN_VAR}={token}".encode()
    me, sent = os.getpid(), 0
    for _ in range(rounds):
        found = []
        for name in os.listdir("/proc"):  # one pass: the run's uid, else the token
            if not name.isdigit() or int(name) == me:
                continue
            if uid is not None and holds_uid(name, uid):
                found.append(int(name))
                continue
            try:
                with open(f"/proc/{name}/environ", "rb") as f:
                    data = f.read()
            except OSError:
                continue
            if needle in data.split(b"\0"):
                found.append(int(name))
        for pid in found:
            try:
                os.kill(pid, signal.SIGKILL)
                sent += 1
            except OSError:
                pass
        if not found:
            break
        time.sleep(0.01)
    return sent


def _killpg(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass


def _exited(pid: int) -> bool:
    """True once `pid` has terminated, without reaping it."""
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return info is not None


@dataclasses.dataclass
class Outcome:
    timed_out: bool
    exit_code: int | None
    signal: int | None
    cpu_s: float
    stdout: str
    stderr: str


def execute(argv: Sequence[str], env: dict[str, str], cwd: str, limits: Limits,
            token: str) -> Outcome:
    """Runs argv in a new session and enforces the wall clock from outside; leaves no process
    with the token behind."""
    start = time.monotonic()
    proc = subprocess.Popen(list(argv), cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, close_fds=True)
    pid = proc.pid
    tails = {proc.stdout.fileno(): _Tail(limits.max_output_bytes),
             proc.stderr.fileno(): _Tail(limits.max_output_bytes)}
    sel = selectors.DefaultSelector()
    for fd in tails:
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ)
    pidfd = None
    try:
        pidfd = os.pidfd_open(pid)
        sel.register(pidfd, selectors.EVENT_READ)
    except (AttributeError, OSError):
        pass

    def pump(timeout: float) -> bool:
        """Reads available output; returns True if the process has exited."""
        exited = False
        for key, _ in sel.select(timeout):
            if key.fd == pidfd:
                exited = True
                continue
            try:
                chunk = os.read(key.fd, 1 << 16)
            except BlockingIOError:
                continue
            if chunk:
                tails[key.fd].add(chunk)
            else:
                sel.unregister(key.fd)
        return exited or (pidfd is None and _exited(pid))

    timed_out = False
    try:
        deadline = start + limits.wall_seconds
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            if pump(min(remaining, 1.0 if pidfd is not None else 0.02)):
                break
    finally:
        # The (possibly zombie) leader still reserves its pgid, so this cannot hit a stranger.
        _killpg(pid)
        kill_token_holders(token)
        _, status, usage = os.wait4(pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if pidfd is not None:
            sel.unregister(pidfd)
            os.close(pidfd)
    drain_until = time.monotonic() + DRAIN_GRACE_S
    while sel.get_map() and time.monotonic() < drain_until:
        pump(0.05)
    sel.close()
    proc.stdout.close()
    proc.stderr.close()
    sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
    out, err = (t.text() for t in tails.values())
    return Outcome(timed_out, code, sig, usage.ru_utime + usage.ru_stime, out, err)


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1][:500] if lines else ""


def _signal_reason(sig: int, cpu_s: float, limits: Limits) -> str:
    try:
        name = signal.Signals(sig).name
    except ValueError:
        name = f"signal {sig}"
    if sig == signal.SIGXCPU or (sig == signal.SIGKILL and cpu_s >= limits.cpu_seconds):
        return f"cpu limit ({limits.cpu_seconds:g}s) exceeded ({name})"
    if sig == signal.SIGXFSZ:
        return f"file size limit ({limits.max_file_mb} MiB) exceeded (SIGXFSZ)"
    if sig == signal.SIGSEGV:
        return "killed by SIGSEGV (possibly the memory limit)"
    return f"killed by {name}"


def classify(outcome: Outcome, work_dir: str, limits: Limits, backend: str,
             duration: float) -> RunResult:
    common = dict(exit_code=outcome.exit_code, signal=outcome.signal, stdout=outcome.stdout,
                  stderr=outcome.stderr, duration_s=duration, cpu_s=outcome.cpu_s,
                  backend=backend)
    if outcome.timed_out:
        return RunResult(status="timeout", error=f"wall-clock limit ({limits.wall_seconds:g}s) "
                         "exceeded", **common)
    if outcome.signal is not None:
        return RunResult(status="killed",
                         error=_signal_reason(outcome.signal, outcome.cpu_s, limits), **common)
    code = outcome.exit_code
    if code == EXIT_MEMORY:
        return RunResult(status="killed", error="memory limit", **common)
    if code == EXIT_SETUP:
        return RunResult(status="error", error=_last_line(outcome.stderr)
                         or "sandbox setup failed", **common)
    if code != 0:
        return RunResult(status="error", error=_last_line(outcome.stderr)
                         or f"exited with code {code}", **common)
    try:
        output = read_result(work_dir, limits.max_result_bytes)
    except ResultError as exc:
        return RunResult(status="error", error=str(exc), **common)
    return RunResult(status="ok", output=output, **common)


def _remove_tree(path: str) -> None:
    def onerror(func, p, _exc):  # a candidate may chmod 000 its own dirs (non-root runs)
        try:
            os.chmod(os.path.dirname(p), 0o700)
            os.chmod(p, 0o700)
            func(p)
        except OSError:
            pass

    shutil.rmtree(path, onerror=onerror)
    if os.path.lexists(path):
        shutil.rmtree(path, ignore_errors=True)


class SubprocessSandbox:
    """Base of ProcessSandbox and BwrapSandbox; subclasses build the command line."""

    name = "subprocess"

    def __init__(self, python: str | None = None, work_root: str | None = None):
        import sys

        self.python = python or sys.executable
        self.work_root = work_root or tempfile.gettempdir()

    # -- hooks ---------------------------------------------------------------------------
    def _command(self, work_dir: str, request: RunRequest, token: str
                 ) -> tuple[list[str], dict[str, str]]:
        raise NotImplementedError

    def _setup(self, request: RunRequest) -> dict:
        """The runner's set-up section of args.json."""
        return {}

    def _python(self, request: RunRequest) -> str:
        """The interpreter of this run: the request's, else the sandbox's default."""
        return request.python or self.python

    def _translate(self, outcome: Outcome) -> Outcome:
        """A runner behind a pid-1 reaper (and bwrap) reports death by signal N as 128 + N."""
        code = outcome.exit_code
        if outcome.signal is None and code is not None and 128 < code < 128 + 65:
            outcome.signal, outcome.exit_code = code - 128, None
        return outcome

    # -- the run -------------------------------------------------------------------------
    def _prepare(self, request: RunRequest, inputs: dict[str, Any], uid: int | None) -> str:
        setup = self._setup(request)
        if uid is not None:
            setup["uid"] = uid
        args = {"entrypoint": request.entrypoint, "kwargs": request.kwargs,
                "inputs": sorted(inputs), "limits": dataclasses.asdict(request.limits),
                "setup": setup}
        files = {"runner.py": RUNNER_SOURCE.read_bytes(),
                 "candidate.py": request.program.encode("utf-8", errors="surrogatepass"),
                 "args.json": json.dumps(args).encode()}
        work_dir = tempfile.mkdtemp(prefix="sbx-", dir=self.work_root)  # mode 0700
        try:
            self._fill(work_dir, files, inputs, NOBODY if uid is None else uid)
        except BaseException:
            _remove_tree(work_dir)
            raise
        return work_dir

    def _fill(self, work_dir: str, files: dict[str, bytes], inputs: dict[str, Any], uid: int) -> None:
        owned = [work_dir]
        for name, data in files.items():
            path = os.path.join(work_dir, name)
            with open(path, "wb") as f:
                f.write(data)
            owned.append(path)
        if inputs:
            import numpy as np

            in_dir = os.path.join(work_dir, INPUTS_DIR)
            os.mkdir(in_dir, 0o700)
            owned.append(in_dir)
            for name, arr in inputs.items():
                path = os.path.join(in_dir, f"{name}.npy")
                with open(path, "wb") as f:
                    np.save(f, arr, allow_pickle=False)
                owned.append(path)
        if is_root():
            for path in owned:
                os.chown(path, uid, uid)

    def run(self, request: RunRequest) -> RunResult:
        # Caller bugs raise ValueError here, before anything is started or written.
        inputs = check_inputs(request.inputs, request.kwargs)
        check_python(request.python)
        if not is_root():
            return self._run(request, inputs, None)
        from sandbox.uids import lease

        with lease() as uid:  # as root: a uid no concurrent evaluation shares (see sandbox/uids.py)
            return self._run(request, inputs, uid)

    def _run(self, request: RunRequest, inputs: dict[str, Any], uid: int | None) -> RunResult:
        start = time.monotonic()
        token = new_token()
        work_dir = None
        try:
            try:
                work_dir = self._prepare(request, inputs, uid)
            except (TypeError, ValueError) as exc:  # kwargs not JSON, bad program text
                return RunResult(status="error", error=f"bad request: {exc}", backend=self.name,
                                 duration_s=time.monotonic() - start)
            argv, env = self._command(work_dir, request, token)
            try:
                outcome = self._translate(execute(argv, env, work_dir, request.limits, token))
            except OSError as exc:
                return RunResult(status="error", error=f"could not start: {exc}",
                                 backend=self.name, duration_s=time.monotonic() - start)
            return classify(outcome, work_dir, request.limits, self.name,
                            time.monotonic() - start)
        except Exception as exc:  # noqa: BLE001 - a sandbox fault costs one run, not the campaign
            return RunResult(status="error", error=f"sandbox failure: {type(exc).__name__}: "
                             f"{exc}", backend=self.name, duration_s=time.monotonic() - start)
        finally:
            try:
                kill_token_holders(token, uid=uid)
            finally:
                if work_dir is not None:
                    _remove_tree(work_dir)
