"""Trusted runner: copied into each run's work dir and started there as `python -I -B runner.py`.

Order matters: read args.json, isolate (process backend as root: private network/mount/IPC/UTS/
pid namespaces, with a reaping pid 1), set resource limits, drop to nobody (when root), load the
input arrays (inputs/<name>.npy, allow_pickle=False), and only then import the candidate. Needs
the standard library only; NumPy is imported only when there are inputs, or used if the
candidate returned an ndarray (then it is already imported).

Exit codes: 0 result written; 1 the candidate raised (traceback on stderr); EXIT_MEMORY on
MemoryError; EXIT_SETUP if the sandbox could not be set up (the candidate never ran).
"""

import json
import os
import resource
import signal
import sys
import traceback

EXIT_MEMORY = 86
EXIT_SETUP = 87
NOBODY = 65534


def _libc():
    import ctypes

    return ctypes, ctypes.CDLL(None, use_errno=True)


def _check(ctypes, rc, what):
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _inside(path, root):
    return path == root or path.startswith(root.rstrip("/") + "/")


def _mount(src, target, fstype, flags, data=None):
    ctypes, libc = _libc()
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                           ctypes.c_char_p]
    enc = lambda s: s.encode() if s is not None else None  # noqa: E731
    _check(ctypes, libc.mount(enc(src), enc(target), enc(fstype), flags, enc(data)),
           f"mount {target}")


MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
ST_NOATIME, ST_NODIRATIME, ST_RELATIME, MS_RELATIME = 1024, 2048, 4096, 1 << 21


def _remount_read_only(path):
    """Makes the bind mount at `path` read-only, keeping the flags it already has."""
    have = os.statvfs(path).f_flag
    flags = have & (MS_NOSUID | MS_NODEV | MS_NOEXEC | ST_NOATIME | ST_NODIRATIME)
    if have & ST_RELATIME:
        flags |= MS_RELATIME
    _mount(None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | flags)


def _isolate(hide, prefixes=(), empty=()):
    """New network (loopback down), mount, IPC, UTS and pid namespaces. In the private mount
    namespace, cover shared writable dirs, the work root and `hide` with empty root-owned tmpfs,
    bind back the work dir, bind the interpreter prefixes (the trusted side's `prefixes` and this
    interpreter's own) read-only (also making prefixes under 0700 dirs such as /root reachable
    for nobody), and cover `empty` (base site-packages a venv does not use) with an empty
    read-only tmpfs."""
    ctypes, libc = _libc()
    _check(ctypes, libc.unshare(0x00020000 | 0x04000000 | 0x08000000 | 0x40000000 | 0x20000000),
           "unshare")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing propagates back to the host
    work = os.path.realpath(os.getcwd())
    prefixes = {os.path.realpath(p) for p in
                (*prefixes, sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)}
    prefixes = {p for p in prefixes if p != "/" and os.path.isdir(p)}
    keep = {work} | prefixes
    # every world-writable place a candidate could leave files in for a later one (or read
    # another's): the temp dirs, the lock dirs, POSIX shared memory and message queues
    cover = {os.path.realpath(p) for p in [*hide, "/tmp", "/var/tmp", "/dev/shm", "/run/lock", "/var/lock",
                                           "/dev/mqueue", os.path.dirname(work)]}
    for k in keep:  # ancestors nobody cannot search (e.g. /root with a pyenv interpreter)
        p = k
        while p != "/":
            p = os.path.dirname(p)
            if p != "/" and not os.stat(p).st_mode & 0o001:
                cover.add(p)
    cover = {c for c in cover if c != "/" and os.path.isdir(c)
             and not any(_inside(c, k) for k in keep)}
    tops = sorted(c for c in cover if not any(c != o and _inside(c, o) for o in cover))
    fds = {k: os.open(k, os.O_PATH | os.O_DIRECTORY) for k in keep}
    for c in tops:
        _mount("tmpfs", c, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755,size=1m")
    for k in sorted(keep, key=len):
        if k in prefixes or any(_inside(k, c) for c in tops):
            os.makedirs(k, exist_ok=True)
            _mount(f"/proc/self/fd/{fds[k]}", k, None, MS_BIND | MS_REC)
            if k in prefixes:
                _remount_read_only(k)
    for fd in fds.values():
        os.close(fd)
    for d in sorted({os.path.realpath(e) for e in empty}):
        if os.path.isdir(d) and not any(_inside(k, d) for k in keep):
            _mount("tmpfs", d, "tmpfs", MS_NOSUID | MS_NODEV | MS_RDONLY, "mode=755,size=4k")
    os.chdir(work)


def _enter_pid_namespace():
    """After unshare(CLONE_NEWPID): fork; this process waits and exits with the child's status,
    the child is pid 1 of the new namespace (dies with us) and gets a /proc of its own."""
    child = os.fork()
    if child == 0:
        ctypes, libc = _libc()
        _check(ctypes, libc.prctl(1, 9, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")
        _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        return
    _wait_and_mirror(child)


def _wait_and_mirror(child, init=False):
    """Reaps every child until `child` ends, then exits with its status (128 + N if it died
    from signal N).

    As pid 1 (init=True) it first kills and reaps everything still alive in the namespace, so
    that the CPU time of processes the candidate left running is part of this process's
    rusage, which the sandbox reads from outside with wait4 (a timing problem must not be
    fooled by work done in a background process)."""
    code = None
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            os._exit(EXIT_SETUP if code is None else code)
        except InterruptedError:
            continue
        if pid == child:
            code = 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            if not init:
                os._exit(code)
        if code is not None:
            try:
                os.kill(-1, signal.SIGKILL)  # pid 1: every other process of this namespace
            except (ProcessLookupError, PermissionError):
                pass


def _reap_as_init():
    """As pid 1 of a pid namespace: fork; the child goes on as the runner, this process reaps
    everything (so wait4 from outside accounts the CPU of the whole tree and no zombie is left
    to the host) and exits with the runner's status. The namespace dies with it."""
    child = os.fork()
    if child == 0:
        return
    _wait_and_mirror(child, init=True)


def _limit(which, value):
    _, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(which, (value, value))


def _set_limits(lim):
    cpu = max(1, int(-(-float(lim["cpu_seconds"]) // 1)))
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft_hard = cpu + 1 if hard == resource.RLIM_INFINITY else min(cpu + 1, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (min(cpu, soft_hard), soft_hard))  # SIGXCPU, then KILL
    _limit(resource.RLIMIT_AS, int(lim["memory_mb"]) * 1024 * 1024)
    _limit(resource.RLIMIT_NPROC, int(lim["max_processes"]))
    _limit(resource.RLIMIT_FSIZE, int(lim["max_file_mb"]) * 1024 * 1024)
    _limit(resource.RLIMIT_CORE, 0)


def _drop_privileges(uid):
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
    if {os.getuid(), os.geteuid(), os.getgid(), os.getegid()} != {uid}:
        raise OSError("privilege drop did not take effect")


def _no_new_privs():
    ctypes, libc = _libc()
    _check(ctypes, libc.prctl(38, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")  # no setuid gains


def _plain(obj):
    if hasattr(obj, "tolist"):  # NumPy scalars and arrays nested in containers
        return obj.tolist()
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def _write_result(value):
    np = sys.modules.get("numpy")
    if np is not None and isinstance(value, np.ndarray):
        if value.dtype.kind not in "biufc":
            raise TypeError(f"returned ndarray has non-numeric dtype {value.dtype}")
        with open("result.npy", "wb") as f:
            np.save(f, value, allow_pickle=False)
    else:
        text = json.dumps(value, allow_nan=True, default=_plain)
        with open("result.json", "w", encoding="utf-8") as f:
            f.write(text)


def _load_inputs(names):
    """The input arrays, each from inputs/<name>.npy (no pickle); numpy only if there are any."""
    if not names:
        return {}
    try:
        import numpy as np
    except ImportError as exc:
        raise ImportError(f"inputs need numpy in the candidate environment ({exc})") from None
    out = {}
    for name in names:
        if not name.isidentifier():
            raise ValueError(f"bad input name {name!r}")
        with open(os.path.join("inputs", name + ".npy"), "rb") as f:
            out[name] = np.load(f, allow_pickle=False)
    return out


def _flush():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass


def main():
    try:
        with open("args.json", encoding="utf-8") as f:
            args = json.load(f)
        setup = args.get("setup") or {}
        if setup.get("isolate"):
            _isolate(setup.get("hide") or [], setup.get("prefixes") or [],
                     setup.get("empty") or [])
            _enter_pid_namespace()
        if os.getpid() == 1:  # bwrap --as-pid-1, or the namespace just entered
            _reap_as_init()
        _no_new_privs()
        _set_limits(args["limits"])
        if setup.get("drop") and os.geteuid() == 0:
            _drop_privileges(int(setup.get("uid", NOBODY)))
        entrypoint, kwargs = args["entrypoint"], dict(args.get("kwargs") or {})
        kwargs.update(_load_inputs(args.get("inputs") or []))
    except Exception as exc:
        sys.stderr.write(f"sandbox setup failed: {type(exc).__name__}: {exc}\n")
        _flush()
        os._exit(EXIT_SETUP)
    try:
        import importlib.util

        spec = importlib.util.spec_from_file_location("candidate", os.path.abspath("candidate.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules["candidate"] = module
        spec.loader.exec_module(module)
        _write_result(getattr(module, entrypoint)(**kwargs))
    except MemoryError:
        try:
            os.write(2, b"\nMemoryError: memory limit\n")
        finally:
            os._exit(EXIT_MEMORY)
    except SystemExit:
        _flush()
        raise
    except BaseException:
        try:
            traceback.print_exc()
        except MemoryError:
            os._exit(EXIT_MEMORY)
        _flush()
        os._exit(1)
    _flush()
    os._exit(0)  # do not wait for threads the candidate left running


if __name__ == "__main__":
    main()
