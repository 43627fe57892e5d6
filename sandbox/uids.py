"""A uid of its own for every evaluation that runs as root (process and bwrap backends).

The kernel counts RLIMIT_NPROC per real uid across the whole machine, and signals and /proc
access follow the uid too. Were every candidate to run as `nobody` (65534), one candidate's
fork bomb would use up the process allowance of every other candidate evaluated at the same
time, and an honest program would fail to start because of its neighbour. So each run leases a
uid from a range no account uses (`BASE` .. `BASE + SPAN - 1`), held with an exclusive `flock`
on a root-only lock file: leases are unique across threads and processes on the machine (two
campaigns, evaluation workers), and a process that dies releases its leases with its files.
After a run every process still holding the uid is killed before the lease is given back.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
from typing import Iterator

BASE = 1_900_000_000  # far above login accounts, subordinate-uid ranges (100000+) and nobody
SPAN = 4096
LOCK_DIR = "/run/discovery-sandbox-uids"


class NoFreeUid(RuntimeError):
    """Every uid of the range is leased (more than SPAN evaluations at once on this machine)."""


@contextlib.contextmanager
def lease(lock_dir: str = LOCK_DIR) -> Iterator[int]:
    """Yields a uid that no other evaluation on this machine holds until the block ends."""
    os.makedirs(lock_dir, mode=0o700, exist_ok=True)
    start = random.randrange(SPAN)  # spread concurrent lessees over the range
    for i in range(SPAN):
        uid = BASE + (start + i) % SPAN
        fd = os.open(os.path.join(lock_dir, str(uid)), os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        try:
            yield uid
        finally:
            os.close(fd)  # releases the lock
        return
    raise NoFreeUid(f"all {SPAN} sandbox uids from {BASE} are in use: too many evaluations at once on this machine")


def holds_uid(pid: str, uid: int) -> bool:
    """Whether process `pid` (a /proc entry name) has `uid` as its real, effective, saved or
    file-system uid (False once it is gone)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Uid:"):
                    return str(uid) in line.split()[1:]
    except OSError:
        pass
    return False
