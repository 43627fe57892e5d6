"""ProcessSandbox: the candidate runs as a plain child process (no bubblewrap needed).

As root, the runner puts itself in private network (loopback down), mount, IPC, UTS and pid
namespaces (a reaping pid 1 that takes every candidate process down with it, and a /proc
showing only the run's processes), hides /tmp, /var/tmp, /dev/shm, /run/lock, /dev/mqueue, the
work root and `hide` (default: this checkout and every top-level folder but the system's: /usr,
/etc, /dev, /proc, /sys and the /bin, /lib links) behind empty root-owned tmpfs mounts, binds
the prefixes of the run's interpreter (RunRequest.python or the default; asked once per
interpreter) back read-only, covers the base interpreter's site-packages with an empty
read-only tmpfs when the interpreter is a venv that does not use them, sets the rlimits and
drops to a uid of the run's own (sandbox/uids.py) with no_new_privs before importing the
candidate. Without root none of that is possible: the
candidate then runs as the platform's own user with rlimits and a scrubbed environment only
(it can use the network and read what that user can read). See sandbox/__init__.py.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from sandbox._exec import SubprocessSandbox, base_env, interpreter_dirs, is_root
from sandbox.base import RunRequest

_CHECKOUT = str(Path(__file__).resolve().parents[1])
# Top-level folders of the operating system a Python program may need; as root every other
# top-level folder (/home, /root, /opt, /srv, /mnt, /var, /run, other checkouts, ...) is hidden.
SYSTEM_DIRS = ("usr", "etc", "dev", "proc", "sys", "bin", "sbin", "lib", "lib32", "lib64", "libx32")


def host_folders(root: str = "/") -> list[str]:
    """The top-level folders of `root` outside SYSTEM_DIRS (real folders, not symlinks such as a
    merged /lib -> usr/lib): what the process backend hides as root. Interpreter prefixes under
    them (a venv in /work, a pyenv interpreter in /root) are bound back read-only by the runner."""
    out = []
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name)
        if name not in SYSTEM_DIRS and os.path.isdir(path) and not os.path.islink(path):
            out.append(path)
    return out


class ProcessSandbox(SubprocessSandbox):
    """Runs the candidate as `python -I -B runner.py` in a fresh work dir, in its own session."""

    name = "process"

    def __init__(self, python: str | None = None, work_root: str | None = None,
                 hide: Sequence[str] | None = None):
        """python: interpreter (default sys.executable); work_root: where work dirs are made
        (default the temp dir); hide: paths made invisible to the candidate when running as root
        (default: the checkout holding this package and every top-level folder outside
        SYSTEM_DIRS; the interpreter prefixes stay visible)."""
        super().__init__(python, work_root)
        default = [_CHECKOUT, *host_folders()]
        self.hide = [os.path.abspath(p) for p in (hide if hide is not None else default)]

    def _setup(self, request: RunRequest) -> dict:
        root = is_root()
        setup = {"isolate": root, "drop": root, "hide": self.hide}
        if root:  # bound back read-only in the runner's mount namespace
            prefixes, empty = interpreter_dirs(self._python(request))
            setup.update(prefixes=list(prefixes), empty=list(empty))
        return setup

    def _command(self, work_dir: str, request: RunRequest, token: str
                 ) -> tuple[list[str], dict[str, str]]:
        return ([self._python(request), "-I", "-B", "runner.py"],
                base_env(request.limits, work_dir, token))
