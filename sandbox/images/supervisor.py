# discovery-sandbox: supervisor (pid 1 of a docker sandbox container)
"""Trusted supervisor: pid 1 of a docker sandbox container, one evaluation at a time.

Standard library only. sandbox/docker.py creates the container with this as its command,
`python3 -I -B -c <bootstrap> <n>` as the sandbox uid (65532) with no capabilities, attaches to
its stdin/stdout and sends this source (n bytes, which the bootstrap reads and runs), then a
hello:

  one JSON line  {"support": [[name, size], ...]}   then the bytes of each support file
                 (sandbox/result.py: the trusted result-file reader, used as it is)

answered by a reply with {"ready": true}. Then, for each evaluation, a request:

  one JSON line  {"files": [[name, size], ...], "work": dir, "env": {...},
                  "wall_seconds": s, "max_output_bytes": n, "max_result_bytes": n}
                 then the bytes of every file (runner.py, candidate.py, args.json, inputs/*.npy)

answered by one reply: a JSON line (the runner's exit status or signal, timed out, CPU seconds,
OOM kills during the run, result kind or error, `clean` and the problems found, `lengths`)
followed by the stdout tail, the stderr tail and the result file's bytes. EOF on stdin (the host
closed its attach, or died) ends this process, and with it the container.

Why a pid 1 that shares the candidate's uid can be trusted:
  - it is non-dumpable: no ptrace, no /proc/1/mem, /proc/1/fd or /proc/1/environ, no
    process_vm_writev or pidfd_getfd for anyone without CAP_SYS_PTRACE (nobody has it here);
  - as pid 1 of the pid namespace it gets no signal from inside the namespace that it does not
    handle (SIGKILL and SIGSTOP included), and it handles none;
  - what a same-uid process can still change on it (its rlimits through prlimit, its nice
    value, CPU affinity, scheduling policy, I/O priority) is snapshotted at start and compared
    after every evaluation: any change makes the evaluation's clean-up unverified, so the host
    discards the container (and this process exits) before another evaluation could inherit it.

Per evaluation: it checks the work dir (a tmpfs) is empty, writes the files, starts
`python -I -B runner.py` there in a new session with exactly the environment it was given, default
signal dispositions and oom_score_adj 1000 (the kernel's OOM killer takes the candidate first);
reads stdout/stderr into bounded tails; enforces the wall clock; then kill(-1, SIGKILL) until no
process but itself is left (everything else in the container is the candidate's) and reaps them
all, so the CPU time of the whole tree (background processes included) is in the growth of its
RUSAGE_CHILDREN; reads the result file (no symlinks, a regular file with one link, size-capped);
wipes the work dir and verifies: no other process, an empty work dir, no System V IPC object or
POSIX message queue, its own attributes unchanged. Any internal failure ends this process (the
host then sees a lost supervisor and discards the container): it never goes on in a state it
has not verified.
"""

import ctypes
import json
import os
import platform
import resource
import selectors
import signal
import stat
import sys
import time
import traceback

EXIT_SETUP = 87  # keep in sync with runner.py
MAX_HEADER = 1 << 20
DRAIN_GRACE_S = 2.0
KILL_DEADLINE_S = 10.0
RESULT_NAMES = ("result.json", "result.npy")
_IOPRIO_GET = {"x86_64": 252, "aarch64": 31, "arm64": 31}.get(platform.machine())

_libc = ctypes.CDLL(None, use_errno=True)


class _Tail:
    """Keeps only the last `limit` bytes written to it."""

    def __init__(self, limit):
        self.limit = max(0, int(limit))
        self.buf = bytearray()

    def add(self, chunk):
        self.buf += chunk
        if len(self.buf) > 2 * self.limit + 65536:
            del self.buf[: len(self.buf) - self.limit]

    def data(self):
        return bytes(self.buf[-self.limit:]) if self.limit else b""


def _read_exact(stream, n):
    data = stream.read(n)
    if data is None or len(data) != n:
        raise EOFError("request truncated")
    return data


def _safe_name(name):
    parts = name.split("/")
    if (not name or name.startswith("/") or any(p in ("", ".", "..") for p in parts)
            or len(parts) > 2):
        raise ValueError(f"bad file name in request: {name!r}")
    return name


def _attributes():
    """What another process of our uid could change on us and a forked runner would inherit."""
    attrs = {}
    for name in dir(resource):
        if name.startswith("RLIMIT_"):
            try:
                attrs[name] = resource.getrlimit(getattr(resource, name))
            except (OSError, ValueError):
                pass
    attrs["nice"] = os.getpriority(os.PRIO_PROCESS, 0)
    attrs["affinity"] = sorted(os.sched_getaffinity(0))
    attrs["policy"] = os.sched_getscheduler(0)
    attrs["priority"] = os.sched_getparam(0).sched_priority
    if _IOPRIO_GET is not None:
        attrs["ioprio"] = _libc.syscall(_IOPRIO_GET, 1, 0)  # IOPRIO_WHO_PROCESS, self
    with open("/proc/self/oom_score_adj") as f:
        attrs["oom_score_adj"] = f.read().strip()
    return attrs


def _wipe(root):
    """Removes everything inside `root`, iteratively (any depth); the candidate ran as our uid,
    so a directory it made unreadable is made readable again first. What cannot be removed is
    found by the verification that follows."""
    os.chmod(root, 0o700)
    stack = [(root, False)]
    while stack:
        path, emptied = stack.pop()
        if emptied:
            if path != root:
                try:
                    os.rmdir(path)
                except OSError:
                    pass
            continue
        stack.append((path, True))
        try:
            names = os.listdir(path)
        except OSError:
            continue
        for name in names:
            p = os.path.join(path, name)
            try:
                is_dir = stat.S_ISDIR(os.lstat(p).st_mode)
            except OSError:
                continue
            if is_dir:
                try:
                    os.chmod(p, 0o700)
                except OSError:
                    pass
                stack.append((p, False))
            else:
                try:
                    os.unlink(p)
                except OSError:
                    pass


def _oom_kills():
    """OOM kills so far in this container's memory cgroup (v1 or v2), or None if unknown."""
    for path in ("/sys/fs/cgroup/memory/memory.oom_control", "/sys/fs/cgroup/memory.events"):
        try:
            with open(path) as f:
                for line in f:
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
        except (OSError, ValueError):
            continue
    return None


def _other_pids():
    me = os.getpid()
    return sorted(int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != me)


def _ipc_objects():
    """System V IPC objects and POSIX message queues in the container's IPC namespace."""
    found = []
    for kind in ("shm", "sem", "msg"):
        try:
            with open(f"/proc/sysvipc/{kind}") as f:
                rows = [ln.split() for ln in f.read().splitlines()[1:] if ln.strip()]
        except OSError:
            rows = []
        found += [f"sysv {kind} {r[1] if len(r) > 1 else '?'}" for r in rows]
    try:
        found += [f"mqueue {name}" for name in os.listdir("/dev/mqueue")]
    except OSError:
        pass
    return found


def _reap(statuses):
    """Reaps every child that has ended (orphans are reparented to us, pid 1); returns how
    many."""
    n = 0
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return n
        except InterruptedError:
            continue
        if pid == 0:
            return n
        statuses[pid] = status
        n += 1


def _kill_everything(statuses):
    """SIGKILLs every other process in the container (all of them the candidate's) until none is
    left, reaping them all. True once /proc shows nobody but us."""
    deadline = time.monotonic() + KILL_DEADLINE_S
    while time.monotonic() < deadline:
        try:
            os.kill(-1, signal.SIGKILL)  # everyone we may signal but ourselves
            signalled = True
        except ProcessLookupError:
            signalled = False  # kill(-1) counts zombies too: nothing at all is left
        reaped = _reap(statuses)
        if not signalled:
            return not _other_pids()
        if not reaped:
            time.sleep(0.001)
    return False


def _start_runner(work, env):
    r_out, w_out = os.pipe()
    r_err, w_err = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            null = os.open("/dev/null", os.O_RDONLY)
            os.dup2(null, 0)
            os.dup2(w_out, 1)
            os.dup2(w_err, 2)
            os.closerange(3, 1 << 16)
            for sig in signal.valid_signals():
                if sig not in (signal.SIGKILL, signal.SIGSTOP):
                    try:
                        signal.signal(sig, signal.SIG_DFL)
                    except (OSError, ValueError, RuntimeError):
                        pass
            signal.pthread_sigmask(signal.SIG_SETMASK, [])
            try:
                with open("/proc/self/oom_score_adj", "w") as f:
                    f.write("1000")
            except OSError:
                pass
            os.chdir(work)
            os.execve(sys.executable, [sys.executable, "-I", "-B", "runner.py"], env)
        except BaseException:
            pass
        os._exit(EXIT_SETUP)
    os.close(w_out)
    os.close(w_err)
    return pid, r_out, r_err


def _evaluate(header, files, result_mod, baseline):
    work = header["work"]
    problems = []
    if os.listdir(work):  # cannot happen: the previous evaluation verified it empty
        raise RuntimeError("the work dir is not empty before the run")
    for name, data in files:
        path = os.path.join(work, name)
        if "/" in name:
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
    oom_before = _oom_kills()
    usage_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    limit = int(header["max_output_bytes"])
    start = time.monotonic()
    pid, r_out, r_err = _start_runner(work, header["env"])
    tails = {r_out: _Tail(limit), r_err: _Tail(limit)}
    sel = selectors.DefaultSelector()
    for fd in tails:
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ)
    pidfd = os.pidfd_open(pid)
    sel.register(pidfd, selectors.EVENT_READ)

    def pump(timeout):
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
        return exited

    timed_out = False
    deadline = start + float(header["wall_seconds"])
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            timed_out = True
            break
        if pump(min(remaining, 1.0)):
            break
    duration = time.monotonic() - start
    statuses = {}
    if not _kill_everything(statuses):
        problems.append(f"processes survived the clean-up: {_other_pids()}")
    sel.unregister(pidfd)
    os.close(pidfd)
    drain_until = time.monotonic() + DRAIN_GRACE_S  # every writer is dead: EOF comes at once
    while sel.get_map() and time.monotonic() < drain_until:
        pump(0.05)
    sel.close()
    for fd in tails:
        os.close(fd)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = ((usage.ru_utime + usage.ru_stime)
             - (usage_before.ru_utime + usage_before.ru_stime))
    status = statuses.get(pid)
    exit_code = sig = None
    if status is None:
        problems.append("the runner's exit status was not collected")
    elif os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
    elif os.WIFEXITED(status):
        exit_code = os.WEXITSTATUS(status)

    result_kind, result_error, result = None, "", b""
    if not timed_out and exit_code == 0:
        paths = [os.path.join(work, n) for n in RESULT_NAMES]
        present = [os.path.lexists(p) for p in paths]
        try:
            if all(present):
                raise result_mod["ResultError"]("both result.npy and result.json present")
            result_kind = "npy" if present[1] else "json"
            result = result_mod["_read_capped"](paths[1] if present[1] else paths[0],
                                                int(header["max_result_bytes"]))
        except result_mod["ResultError"] as exc:
            result_kind, result_error = None, str(exc)
    oom_after = _oom_kills()

    _wipe(work)
    left = os.listdir(work)
    if left:
        problems.append(f"work dir not empty after the wipe: {left[:5]}")
    if _other_pids():
        problems.append(f"processes left: {_other_pids()}")
    ipc = _ipc_objects()
    if ipc:
        problems.append(f"IPC objects left: {ipc[:5]}")
    now = _attributes()
    changed = sorted(k for k in set(baseline) | set(now) if baseline.get(k) != now.get(k))
    if changed:
        problems.append(f"the supervisor's own attributes were changed: {changed}")
    reply = {
        "exit_code": exit_code, "signal": sig, "timed_out": timed_out, "cpu_s": cpu_s,
        "duration_s": duration,
        "oom_kills": (None if oom_before is None or oom_after is None
                      else oom_after - oom_before),
        "result_kind": result_kind, "result_error": result_error,
        "clean": not problems, "problems": problems,
    }
    return reply, tails[r_out].data(), tails[r_err].data(), result


def _send(reply, out=b"", err=b"", result=b""):
    reply["lengths"] = [len(out), len(err), len(result)]
    view = memoryview(json.dumps(reply).encode() + b"\n" + out + err + result)
    while view:
        view = view[os.write(1, view):]


def main():
    if _libc.prctl(4, 0, 0, 0, 0) != 0:  # PR_SET_DUMPABLE = 0
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE)")
    for sig in signal.valid_signals():
        if sig not in (signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD):
            try:
                signal.signal(sig, signal.SIG_IGN)
            except (OSError, ValueError, RuntimeError):
                pass
    stdin = sys.stdin.buffer
    hello = json.loads(stdin.readline(MAX_HEADER))
    support = {n: _read_exact(stdin, int(size)) for n, size in hello["support"]}
    result_mod = {"__name__": "sandbox_result"}
    exec(compile(support["result.py"].decode("utf-8"), "result.py", "exec"), result_mod)
    baseline = _attributes()
    _send({"ready": True, "pid": os.getpid(), "uid": os.getuid()})
    while True:
        line = stdin.readline(MAX_HEADER)
        if not line:
            os._exit(0)  # the host closed its end: the container ends with us
        try:
            header = json.loads(line)
            files = [(_safe_name(n), _read_exact(stdin, int(size)))
                     for n, size in header["files"]]
            reply, out, err, result = _evaluate(header, files, result_mod, baseline)
            _send(reply, out, err, result)
        except BaseException:
            traceback.print_exc()
            sys.stderr.flush()
            os._exit(3)  # never go on unverified: the host discards the container
        if not reply["clean"]:
            os._exit(0)


if __name__ == "__main__":
    main()
