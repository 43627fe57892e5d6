"""BwrapSandbox: the same runner, inside bubblewrap.

The candidate sees a new root holding only read-only /usr (plus the /bin, /lib* symlinks or
dirs), the dynamic-loader and time-zone files from /etc, the interpreter's prefixes (resolved by
asking the configured interpreter for sys.prefix/base_prefix/exec_prefix; e.g. the pyenv
installation under /root and the venv, but not the rest of the checkout), a fresh /proc of its
own pid namespace, a minimal /dev, a read-only empty /tmp and its work dir read-write at
/sandbox. Network, IPC, UTS and pid namespaces are private, the environment is cleared and set
explicitly, and bwrap sets no_new_privs.

Identity. Run as root, `--unshare-user --uid 65534` works but only *inside* a user namespace
whose 65534 maps back to host uid 0, and the kernel does not enforce RLIMIT_NPROC for host uid 0
(a fork bomb would be unbounded). So as root we do not create a user namespace: bwrap keeps only
CAP_SETUID/CAP_SETGID/CAP_DAC_OVERRIDE, and the trusted runner drops to the real uid/gid 65534
(losing all capabilities) before importing the candidate. Not as root, bwrap creates a user
namespace and the candidate runs as 65534 mapped to the platform's uid.

With --as-pid-1 the runner is the namespace's pid 1: it forks, reaps every process (so the CPU
time of the whole tree reaches os.wait4 on bwrap) and exits with the runner's status. Killing the
outer bwrap (SIGKILL to its process group) kills that pid 1 (directly and through
--die-with-parent), which makes the kernel kill every process in the pid namespace.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading

from sandbox._exec import SubprocessSandbox, base_env, is_root
from sandbox.base import RunRequest

INSIDE_WORK = "/sandbox"
_ETC = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime",
        "/etc/alternatives")
_TOP = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_PREFIX_QUERY = ("import json, os, sys; print(json.dumps([sys.prefix, sys.base_prefix, "
                 "sys.exec_prefix, sys.base_exec_prefix, os.path.dirname(os.path.realpath("
                 "sys.executable))]))")


def find_bwrap() -> str | None:
    return shutil.which("bwrap", path="/usr/bin:/bin:/usr/local/bin:" + os.environ.get("PATH", ""))


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


class BwrapSandbox(SubprocessSandbox):
    """Runs the candidate under bubblewrap (see the module docstring)."""

    name = "bwrap"

    def __init__(self, python: str | None = None, work_root: str | None = None,
                 bwrap: str | None = None):
        super().__init__(python, work_root)
        self.bwrap = bwrap or find_bwrap() or "bwrap"
        self._fs_args: list[str] | None = None
        self._lock = threading.Lock()

    # -- file system view ----------------------------------------------------------------
    def _interpreter_dirs(self) -> list[str]:
        out = subprocess.run([self.python, "-I", "-c", _PREFIX_QUERY], capture_output=True,
                             text=True, timeout=60, env={"PATH": "/usr/bin:/bin"}, check=True)
        return sorted({os.path.realpath(p) for p in json.loads(out.stdout)}
                      | {os.path.abspath(p) for p in json.loads(out.stdout)})

    def _filesystem(self) -> list[str]:
        with self._lock:
            if self._fs_args is None:
                args = ["--ro-bind", "/usr", "/usr"]
                for top in _TOP:
                    if os.path.islink(top):
                        args += ["--symlink", os.readlink(top), top]
                    elif os.path.isdir(top):
                        args += ["--ro-bind", top, top]
                for path in _ETC:
                    args += ["--ro-bind-try", path, path]
                # /proc, /dev and an empty /tmp first: an interpreter that lives under /tmp (a
                # checkout cloned there) is bound on top of the empty /tmp below, not hidden by it.
                args += ["--proc", "/proc", "--dev", "/dev", "--perms", "0755", "--tmpfs", "/tmp"]
                bound = ["/usr", *_TOP]
                made: set[str] = set()
                for d in self._interpreter_dirs():
                    if any(_inside(d, b) for b in bound) or not os.path.isdir(d):
                        continue
                    ancestors = []
                    p = os.path.dirname(d)
                    while p != "/":
                        ancestors.append(p)
                        p = os.path.dirname(p)
                    for a in reversed(ancestors):  # bwrap would create them 0700
                        if a not in made and not any(_inside(a, b) for b in bound):
                            args += ["--perms", "0755", "--dir", a]
                            made.add(a)
                    args += ["--ro-bind", d, d]
                    bound.append(d)
                args += ["--remount-ro", "/tmp"]
                self._fs_args = args
            return self._fs_args

    # -- hooks ---------------------------------------------------------------------------
    def _setup(self) -> dict:
        return {"isolate": False, "drop": is_root()}

    def _command(self, work_dir: str, request: RunRequest, token: str
                 ) -> tuple[list[str], dict[str, str]]:
        env = base_env(request.limits, INSIDE_WORK, token)
        argv = [self.bwrap, "--die-with-parent", "--new-session", "--as-pid-1"]
        if is_root():
            argv += ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
                     "--unshare-cgroup-try", "--cap-drop", "ALL",
                     "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID",
                     "--cap-add", "CAP_DAC_OVERRIDE"]
        else:
            argv += ["--unshare-all", "--unshare-user", "--uid", "65534", "--gid", "65534"]
        argv += self._filesystem()
        argv += ["--bind", work_dir, INSIDE_WORK, "--chdir", INSIDE_WORK,
                 "--hostname", "sandbox", "--clearenv"]
        for key, value in env.items():
            argv += ["--setenv", key, value]
        argv += ["--", self.python, "-I", "-B", "runner.py"]
        # bwrap itself gets the same scrubbed environment (it needs none).
        return argv, base_env(request.limits, INSIDE_WORK, token)
