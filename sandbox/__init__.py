"""Sandboxes for untrusted candidate programs (see sandbox/base.py for the interface).

Backends:
  bwrap   - bubblewrap: private pid/net/ipc/uts/mount namespaces, a file-system view holding only
            the interpreter and the work dir, a uid of the run's own as root (else 65534 in a
            user namespace), rlimits. Preferred.
  process - a plain child process. As root: private net/mount/ipc/uts/pid namespaces (with a
            reaping pid 1 and its own /proc), /tmp, /var/tmp, /dev/shm, /run/lock, /dev/mqueue,
            this checkout and every top-level folder but /usr, /etc, /dev, /proc and /sys hidden
            (the interpreter's prefixes bound back read-only), a uid of the run's own, rlimits,
            no_new_privs. It still sees /usr, /etc and /sys (what any uid may read there). Not as root:
            rlimits and a scrubbed environment only (network, files and /proc of the platform's
            own user stay reachable, and a child that clears its environment and calls setsid
            can outlive the run).
  docker  - warm Docker containers reused across evaluations (sandbox/docker.py): no network,
            read-only root file system with a tmpfs work dir wiped and verified after every
            run, uid 65534 with no capabilities, memory/CPU/pids limits of the container plus
            the runner's rlimits, a trusted supervisor as the container's pid 1. The image (not
            RunRequest.python) defines the candidate environment: DockerSandbox(image=...), else
            $DISCOVERY_DOCKER_IMAGE, else an image built locally from this machine's own
            interpreter and numpy (sandbox/images/build.py). Needs a reachable Docker engine;
            never chosen by "auto".

Per request, RunRequest.python selects the interpreter (a candidate env from
sandbox.envs.candidate_python, holding only a problem's requirements; its prefixes and its base
interpreter's are made visible read-only) and RunRequest.inputs passes numeric arrays as .npy
files (bad inputs raise ValueError from run() before anything starts).

get_sandbox() / get_sandbox("auto") picks bwrap if it is installed and a probe run works here
(probed once per process), else process.
"""

from __future__ import annotations

import threading

from sandbox.base import Limits, RunRequest, RunResult, RunStatus, Sandbox
from sandbox.bwrap import BwrapSandbox, find_bwrap
from sandbox.docker import DockerSandbox, DockerSandboxError, docker_available
from sandbox.process import ProcessSandbox

__all__ = ["BwrapSandbox", "DockerSandbox", "DockerSandboxError", "Limits", "ProcessSandbox",
           "RunRequest", "RunResult", "RunStatus", "Sandbox", "bwrap_available",
           "docker_available", "get_sandbox"]

BACKENDS = ("auto", "bwrap", "docker", "process")
_probe_lock = threading.Lock()
_probe: tuple[bool, str] | None = None


def bwrap_available() -> tuple[bool, str]:
    """(works, reason): bwrap is installed and a trivial candidate runs under it (cached)."""
    global _probe
    with _probe_lock:
        if _probe is None:
            if find_bwrap() is None:
                _probe = (False, "bwrap is not installed")
            else:
                result = BwrapSandbox().run(RunRequest(
                    program="def probe():\n    return [1]\n", entrypoint="probe",
                    limits=Limits(wall_seconds=30, cpu_seconds=30)))
                ok = result.status == "ok" and result.output == [1]
                _probe = (ok, "ok" if ok else f"bwrap probe failed: {result.status}: "
                          f"{result.error or result.stderr.strip()[-200:]}")
        return _probe


def get_sandbox(name: str | None = None) -> Sandbox:
    """A sandbox by backend name; None or "auto" prefers bwrap when it works here. "docker" is
    a DockerSandbox with its default image (nothing contacts the engine until the first run)."""
    if name is None or name == "auto":
        return BwrapSandbox() if bwrap_available()[0] else ProcessSandbox()
    if name == "bwrap":
        return BwrapSandbox()
    if name == "docker":
        return DockerSandbox()
    if name == "process":
        return ProcessSandbox()
    raise ValueError(f"unknown sandbox {name!r}; valid names: {', '.join(BACKENDS)}")
