"""Candidate environments: one virtual environment per set of pip requirements.

`candidate_python(requirements)` returns the interpreter of a venv that holds exactly
`requirements` (and what they depend on) plus the standard library, nothing of the platform's
own environment. A problem declares its requirements; every candidate for it runs with that
interpreter (RunRequest.python), so it cannot import the platform's packages (sqlalchemy,
litellm, prefect, the platform's own code, ...) merely because they are installed next to it.

Build (once per requirement set, machine-wide):
  - folder `$DISCOVERY_ENVS_DIR/<name>` (default ~/.cache/discovery/envs), named from a hash of
    the sorted requirements, the pins below, the Python version and implementation, the
    platform and the base interpreter;
  - `sys.executable -m venv --without-pip` (no system site packages) into a temp folder next to
    it, then the platform's own pip installs into it (`pip --python <env> install`), honouring
    PIP_* variables and pip config as they are; a requirement the platform itself has installed
    is pinned to that version (unless its specifier excludes it), so the wheel comes from pip's
    cache and the candidate sees the same numpy as the trusted scorer;
  - no pip or setuptools end up in the env (unless a requirement pulls them in); the tree is
    made world-readable (candidates run as an unprivileged uid of their own), a marker file is written and the temp
    folder is renamed into place atomically;
  - a per-env fcntl lock (plus a thread lock) makes concurrent processes and threads build once.

Set DISCOVERY_CANDIDATE_ENV=shared to skip all this: candidate_python then returns None and
candidates run with the sandbox's default interpreter (the platform's own, which sees every
package the platform has installed).
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Sequence

ENVS_DIR_VAR = "DISCOVERY_ENVS_DIR"
MODE_VAR = "DISCOVERY_CANDIDATE_ENV"
MARKER = "discovery-env.json"
SCHEMA = 1
PIP_TIMEOUT_S = 1800.0
_SECRET_WORDS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "CREDENTIAL")

_lock = threading.Lock()
_name_locks: dict[str, threading.Lock] = {}
_memo: dict[tuple[str, tuple[str, ...]], str] = {}
builds = 0  # environments built by this process (for tests and diagnostics)


class CandidateEnvError(RuntimeError):
    """A candidate environment could not be built (the message is one line, with the fix)."""


def envs_dir() -> str:
    return os.path.abspath(os.path.expanduser(
        os.environ.get(ENVS_DIR_VAR) or "~/.cache/discovery/envs"))


def candidate_python(requirements: Sequence[str]) -> str | None:
    """The python of the venv holding exactly `requirements` (built once, cached on disk);
    () means the standard library only. None when DISCOVERY_CANDIDATE_ENV=shared.
    Raises CandidateEnvError if the env cannot be built."""
    if os.environ.get(MODE_VAR, "").strip().lower() == "shared":
        return None
    if isinstance(requirements, str):
        requirements = (requirements,)
    reqs = tuple(sorted({r.strip() for r in requirements if r and r.strip()}))
    root = envs_dir()
    memo_key = (root, reqs)
    with _lock:
        python = _memo.get(memo_key)
        if python is not None and os.path.exists(python):
            return python
    pins = _pinned(reqs)
    name = _env_name(reqs, pins)
    with _lock:
        name_lock = _name_locks.setdefault(os.path.join(root, name), threading.Lock())
    with name_lock:
        python = _ensure(root, name, reqs, pins)
    with _lock:
        _memo[memo_key] = python
    return python


# -- naming and pins ------------------------------------------------------------------------
def _env_name(reqs: tuple[str, ...], pins: tuple[str, ...]) -> str:
    import hashlib
    import json
    import platform

    ident = {"schema": SCHEMA, "requirements": list(reqs), "pins": list(pins),
             "python": sys.version, "implementation": sys.implementation.name,
             "platform": [sys.platform, platform.machine()],
             "base": os.path.realpath(getattr(sys, "_base_executable", sys.executable))}
    digest = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:20]
    v = sys.version_info
    return f"py{v.major}{v.minor}-{digest}"


def _pinned(reqs: tuple[str, ...]) -> tuple[str, ...]:
    """The install arguments: each requirement pinned to the platform's installed version when
    it has one that satisfies the requirement (editable/URL installs are left alone)."""
    return tuple(_pin(r) for r in reqs)


def _pin(req: str) -> str:
    from importlib import metadata

    try:
        from packaging.requirements import InvalidRequirement, Requirement
    except ImportError:  # no packaging here: leave the requirement to pip as written
        return req
    try:
        parsed = Requirement(req)
    except InvalidRequirement:
        return req  # pip will report it
    if parsed.url or (parsed.marker is not None and not parsed.marker.evaluate()):
        return req
    dists = list(metadata.distributions(name=parsed.name))
    if not dists:
        return req
    if any(d.read_text("direct_url.json") for d in dists):  # editable, path or URL install:
        return req                                          # not on an index
    version = dists[0].version
    if parsed.specifier and not parsed.specifier.contains(version, prereleases=True):
        return req
    extras = f"[{','.join(sorted(parsed.extras))}]" if parsed.extras else ""
    return f"{parsed.name}{extras}=={version}"


# -- building -------------------------------------------------------------------------------
def _ready(path: str) -> bool:
    return (os.path.exists(os.path.join(path, "bin", "python"))
            and os.path.isfile(os.path.join(path, MARKER)))


def _ensure(root: str, name: str, reqs: tuple[str, ...], pins: tuple[str, ...]) -> str:
    import fcntl

    final = os.path.join(root, name)
    python = os.path.join(final, "bin", "python")
    if _ready(final):
        return python
    try:
        os.makedirs(root, mode=0o755, exist_ok=True)
        lock_dir = os.path.join(root, ".locks")
        os.makedirs(lock_dir, mode=0o755, exist_ok=True)
        lock_fd = os.open(os.path.join(lock_dir, name + ".lock"),
                          os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise CandidateEnvError(
            f"cannot create the candidate env cache {root!r} ({exc.strerror}); fix: set "
            f"{ENVS_DIR_VAR} to a writable directory") from None
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        if _ready(final):  # another process built it while we waited
            return python
        _discard_stale(root, name)
        _build(root, name, reqs, pins)
        return python
    finally:
        os.close(lock_fd)  # releases the flock


def _discard_stale(root: str, name: str) -> None:
    """Removes leftovers of interrupted builds (we hold the lock: nobody else is building)."""
    import shutil

    final = os.path.join(root, name)
    for entry in os.listdir(root):
        if entry.startswith(f".build-{name}-"):
            shutil.rmtree(os.path.join(root, entry), ignore_errors=True)
    if os.path.lexists(final) and not _ready(final):
        shutil.rmtree(final, ignore_errors=True)


def _build_env() -> dict[str, str]:
    """The platform's environment for venv/pip, minus secret-looking variables (a package's
    build step runs code) and Python path overrides; PIP_* and pip config pass as they are."""
    env = {}
    for key, value in os.environ.items():
        upper = key.upper()
        if upper in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE"):
            continue
        if not upper.startswith("PIP_") and any(w in upper for w in _SECRET_WORDS):
            continue
        env[key] = value
    return env


def _run(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    import subprocess

    try:
        proc = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, errors="replace", timeout=PIP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return -1, f"timed out after {PIP_TIMEOUT_S:g}s"
    except OSError as exc:
        return -1, str(exc)
    return proc.returncode, proc.stdout + "\n" + proc.stderr


def _failure(reqs: tuple[str, ...], output: str, step: str) -> CandidateEnvError:
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("ERROR:")] or lines[-1:] or ["(no output)"]
    reason = errors[0]
    culprits = [r for r in reqs if _req_name(r) and _req_name(r) in reason.lower()]
    named = ", ".join(culprits or reqs) or "(standard library only)"
    reason = reason if len(reason) <= 300 else reason[:297] + "..."
    return CandidateEnvError(
        f"cannot build the candidate environment for {named} ({step}: {reason}); fix: correct "
        f"the problem's requirements or make them installable with pip here (pip config / "
        f"PIP_INDEX_URL / PIP_FIND_LINKS), or set {MODE_VAR}=shared to run candidates with the "
        f"platform's interpreter")


def _req_name(req: str) -> str:
    import re

    m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req)
    return m.group(1).lower() if m else ""


def _make_readable(path: str) -> None:
    """u=rwX,go=rX on the whole tree (symlinks untouched), so any candidate uid can use it."""
    import stat

    for dirpath, dirnames, filenames in os.walk(path):
        for entry in [dirpath] + [os.path.join(dirpath, n) for n in dirnames + filenames]:
            st = os.lstat(entry)
            if stat.S_ISLNK(st.st_mode):
                continue
            mode = stat.S_IMODE(st.st_mode) & ~0o022
            mode |= 0o444 | (0o111 if stat.S_ISDIR(st.st_mode) or mode & 0o100 else 0)
            if mode != stat.S_IMODE(st.st_mode):
                os.chmod(entry, mode)


def _build(root: str, name: str, reqs: tuple[str, ...], pins: tuple[str, ...]) -> None:
    import importlib.util
    import json
    import shutil
    import tempfile
    import time

    global builds
    tmp = tempfile.mkdtemp(prefix=f".build-{name}-", dir=root)
    try:
        env = _build_env()
        target = os.path.join(tmp, "env")
        own_pip = importlib.util.find_spec("pip") is not None
        venv_args = [sys.executable, "-m", "venv"] + (["--without-pip"] if own_pip else [])
        code, out = _run(venv_args + [target], env)
        if code != 0:
            raise _failure(reqs, out, "venv")
        py = os.path.join(target, "bin", "python")
        if pins:
            if own_pip:  # the platform's pip installs into the env; no pip lands in it
                pip = [sys.executable, "-m", "pip", "--python", py]
            else:
                pip = [py, "-m", "pip"]
            code, out = _run(pip + ["install", "--no-input", "--no-warn-script-location",
                                    "--disable-pip-version-check", *pins], env)
            if code != 0:
                raise _failure(reqs, out, "pip install")
        if not own_pip:  # venv bootstrapped pip (and maybe setuptools) itself: strip them
            wanted = {_req_name(r) for r in reqs}
            extra = [p for p in ("pip", "setuptools") if p not in wanted]
            _run([py, "-m", "pip", "uninstall", "-y", *extra], env)
        code, out = _run([py, "-I", "-c", "import sys; assert sys.prefix != sys.base_prefix"],
                         env)
        if code != 0:
            raise _failure(reqs, out, "check")
        with open(os.path.join(target, MARKER), "w", encoding="utf-8") as f:
            json.dump({"requirements": list(reqs), "installed": list(pins),
                       "python": sys.version, "built_at": time.time()}, f, indent=1)
        _make_readable(target)
        os.chmod(tmp, 0o755)
        final = os.path.join(root, name)
        # Atomic within one file system; the venv's python is a symlink to the base
        # interpreter and the venv finds itself from there, so the move is harmless.
        os.rename(target, final)
        with _lock:
            builds += 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
