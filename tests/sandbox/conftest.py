"""Fixtures for the sandbox tests: one parametrised fixture per backend, and candidate envs
built once per test session in a session temp dir.

The docker backend needs a reachable Docker engine: without one the docker tests are skipped,
except in CI (the CI variable set), where they fail with the reason (.ci/run starts dockerd).
"""

from __future__ import annotations

import os
import time

import pytest

from sandbox import BwrapSandbox, ProcessSandbox
from sandbox._exec import TOKEN_VAR
from sandbox.bwrap import find_bwrap

BACKENDS = [
    pytest.param("process", id="process"),
    pytest.param("bwrap", id="bwrap", marks=pytest.mark.skipif(
        find_bwrap() is None, reason="bwrap (bubblewrap) is not installed")),
    pytest.param("docker", id="docker"),
]


def require_docker() -> None:
    """Skips the calling test when no Docker engine is reachable, unless in CI: there it fails."""
    from sandbox import docker_available

    ok, reason = docker_available()
    if ok:
        return
    if os.environ.get("CI"):
        pytest.fail(f"the docker sandbox tests must run in CI, but {reason} "
                    f"(.ci/run installs docker.io and starts dockerd)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def docker_sandbox():
    """One DockerSandbox for the session (its warm containers serve every docker test); the
    image is built locally on first use (sandbox/images/build.py). Closed at the end."""
    require_docker()
    from sandbox import DockerSandbox
    from sandbox.images.build import ensure_local_image

    start = time.monotonic()
    tag = ensure_local_image(log=lambda msg: print(f"\n{msg}"))
    print(f"\ndocker sandbox image {tag} ready in {time.monotonic() - start:.1f}s")
    sb = DockerSandbox(tag, max_idle=8)
    yield sb
    sb.close()


@pytest.fixture(scope="session")
def envs_dir(tmp_path_factory):
    """DISCOVERY_ENVS_DIR -> a session temp dir, so the suite builds each candidate env once
    (and never touches the user's cache)."""
    from sandbox.envs import ENVS_DIR_VAR, MODE_VAR

    path = str(tmp_path_factory.mktemp("candidate-envs"))
    saved = {k: os.environ.get(k) for k in (ENVS_DIR_VAR, MODE_VAR)}
    os.environ[ENVS_DIR_VAR] = path
    os.environ.pop(MODE_VAR, None)
    yield path
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def numpy_python(envs_dir):
    """The interpreter of a candidate env holding only numpy."""
    from sandbox.envs import candidate_python

    start = time.monotonic()
    python = candidate_python(("numpy",))
    print(f"\nnumpy candidate env built in {time.monotonic() - start:.1f}s: {python}")
    return python


@pytest.fixture(scope="session")
def stdlib_python(envs_dir):
    """The interpreter of a candidate env holding the standard library only."""
    from sandbox.envs import candidate_python

    return candidate_python(())


@pytest.fixture(params=BACKENDS)
def sandbox(request):
    if request.param == "docker":
        return request.getfixturevalue("docker_sandbox")
    return ProcessSandbox() if request.param == "process" else BwrapSandbox()


def needs_isolation(sandbox) -> None:
    """The process backend isolates network, file system and /proc only when run as root (bwrap
    and docker always do)."""
    if sandbox.name == "process" and os.geteuid() != 0:
        pytest.skip("the process backend isolates the network and file system only as root")


def leftovers(marker: str | None = None, wait_s: float = 2.0) -> list[int]:
    """Pids still carrying a sandbox token of this test process in their environment (or
    `marker` in their command line); waits up to wait_s for the kernel to finish tearing
    processes down. Runs of other platform processes on the machine are not counted."""
    mine = f"{TOKEN_VAR}={os.getpid()}-".encode()
    deadline = time.monotonic() + wait_s
    while True:
        found = []
        for name in os.listdir("/proc"):
            if not name.isdigit() or int(name) == os.getpid():
                continue
            try:
                with open(f"/proc/{name}/environ", "rb") as f:
                    env = f.read()
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    cmd = f.read()
            except OSError:
                continue
            if any(v.startswith(mine) for v in env.split(b"\0")) or (
                    marker and marker.encode() in cmd):
                found.append(int(name))
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)
