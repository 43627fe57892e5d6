"""Fixtures for the sandbox tests: one parametrised fixture per backend."""

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
]


@pytest.fixture(params=BACKENDS)
def sandbox(request):
    return ProcessSandbox() if request.param == "process" else BwrapSandbox()


def needs_isolation(sandbox) -> None:
    """The process backend isolates network, file system and /proc only when run as root."""
    if sandbox.name == "process" and os.geteuid() != 0:
        pytest.skip("the process backend isolates the network and file system only as root")


def leftovers(marker: str | None = None, wait_s: float = 2.0) -> list[int]:
    """Pids still carrying any sandbox token in their environment (or `marker` in their command
    line); waits up to wait_s for the kernel to finish tearing processes down."""
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
            if f"{TOKEN_VAR}=".encode() in env or (marker and marker.encode() in cmd):
                found.append(int(name))
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)
