"""BwrapSandbox: the same runner, inside bubblewrap.

The candidate sees a new root holding only read-only /usr (plus the /bin, /lib* symlinks or
dirs), the dynamic-loader and time-zone files from /etc, the interpreter's prefixes (resolved by
asking the run's interpreter, RunRequest.python or the default, for sys.prefix/base_prefix/
exec_prefix, once per interpreter; e.g. the pyenv installation under /root and the candidate
venv, but not the rest of the checkout; the base interpreter's site-packages are covered by an
empty read-only dir when the venv does not use them), a fresh /proc of its
own pid namespace, a minimal /dev, a read-only empty /tmp and its work dir read-write at
/sandbox. Network, IPC, UTS and pid namespaces are private, the environment is cleared and set
explicitly, and bwrap sets no_new_privs.

Identity. Run as root, `--unshare-user --uid 65534` works but only *inside* a user namespace
whose 65534 maps back to host uid 0, and the kernel does not enforce RLIMIT_NPROC for host uid 0
(a fork bomb would be unbounded). So as root we do not create a user namespace: bwrap keeps only
CAP_SETUID/CAP_SETGID/CAP_DAC_OVERRIDE, and the trusted runner drops to a real uid/gid leased
for this run alone (sandbox/uids.py; losing all capabilities) before importing the candidate. Not as root, bwrap creates a user
namespace and the candidate runs as 65534 mapped to the platform's uid.

With --as-pid-1 the runner is the namespace's pid 1: it forks, reaps every process (so the CPU
time of the whole tree reaches os.wait4 on bwrap) and exits with the runner's status. Killing the
outer bwrap (SIGKILL to its process group) kills that pid 1 (directly and through
--die-with-parent), which makes the kernel kill every process in the pid namespace.
"""

from __future__ import annotations

import os
import shutil
import threading

from sandbox._exec import SubprocessSandbox, _inside, base_env, interpreter_dirs, is_root
from sandbox.base import RunRequest

INSIDE_WORK = "/sandbox"
_ETC = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime",
        "/etc/alternatives")
_TOP = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")


def find_bwrap() -> str | None:
    return shutil.which("bwrap", path="/usr/bin:/bin:/usr/local/bin:" + os.environ.get("PATH", ""))


class BwrapSandbox(SubprocessSandbox):
    """Runs the candidate under bubblewrap (see the module docstring)."""

    name = "bwrap"

    def __init__(self, python: str | None = None, work_root: str | None = None,
                 bwrap: str | None = None):
        super().__init__(python, work_root)
        self.bwrap = bwrap or find_bwrap() or "bwrap"
        self._fs_args: dict[str, list[str]] = {}  # per interpreter
        self._lock = threading.Lock()

    # -- file system view ----------------------------------------------------------------
    def _filesystem(self, python: str) -> list[str]:
        """bwrap arguments of the file-system view for `python` (built once per interpreter)."""
        with self._lock:
            cached = self._fs_args.get(python)
        if cached is not None:
            return cached
        prefixes, empty = interpreter_dirs(python)
        args = ["--ro-bind", "/usr", "/usr"]
        for top in _TOP:
            if os.path.islink(top):
                args += ["--symlink", os.readlink(top), top]
            elif os.path.isdir(top):
                args += ["--ro-bind", top, top]
        for path in _ETC:
            args += ["--ro-bind-try", path, path]
        # /tmp first (read-only at the end), so an interpreter living under /tmp stays visible
        args += ["--perms", "0755", "--tmpfs", "/tmp"]
        bound = ["/usr", *_TOP]
        made: set[str] = {"/tmp"}
        for d in prefixes:
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
        for d in empty:  # the base interpreter's site-packages a venv does not use
            if any(_inside(d, b) for b in bound):
                args += ["--perms", "0755", "--tmpfs", d, "--remount-ro", d]
        args += ["--proc", "/proc", "--dev", "/dev", "--remount-ro", "/tmp"]
        with self._lock:
            return self._fs_args.setdefault(python, args)

    # -- hooks ---------------------------------------------------------------------------
    def _setup(self, request: RunRequest) -> dict:
        return {"isolate": False, "drop": is_root()}

    def _command(self, work_dir: str, request: RunRequest, token: str
                 ) -> tuple[list[str], dict[str, str]]:
        env = base_env(request.limits, INSIDE_WORK, token)
        argv = [self.bwrap, "--die-with-parent", "--new-session", "--as-pid-1"]
        if is_root():
            # The runner keeps SETUID/SETGID/DAC_OVERRIDE to set up and drop to nobody, and its
            # reaping pid 1 keeps KILL to end whatever the candidate leaves running (so that
            # process's CPU time is counted); the candidate loses every capability at the drop.
            argv += ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
                     "--unshare-cgroup-try", "--cap-drop", "ALL",
                     "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID",
                     "--cap-add", "CAP_DAC_OVERRIDE", "--cap-add", "CAP_KILL"]
        else:
            argv += ["--unshare-all", "--unshare-user", "--uid", "65534", "--gid", "65534"]
        python = self._python(request)
        argv += self._filesystem(python)
        argv += ["--bind", work_dir, INSIDE_WORK, "--chdir", INSIDE_WORK,
                 "--hostname", "sandbox", "--clearenv"]
        for key, value in env.items():
            argv += ["--setenv", key, value]
        argv += ["--", python, "-I", "-B", "runner.py"]
        # bwrap itself gets the same scrubbed environment (it needs none).
        return argv, base_env(request.limits, INSIDE_WORK, token)
