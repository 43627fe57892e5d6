"""The Sandbox interface: run untrusted program text, return what it produced as data.

A sandbox knows nothing about problems or scores. It writes the candidate program and a small
trusted runner into a fresh private directory, runs the runner (which imports the program,
calls its entrypoint with JSON arguments, and writes the return value to a file), enforces the
limits from outside the candidate's process, and reads the output file back as plain data
(JSON values or a NumPy array loaded with allow_pickle=False). Scoring happens elsewhere, in
trusted code, from that data alone.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, Protocol, runtime_checkable

RunStatus = Literal["ok", "error", "timeout", "killed"]


@dataclasses.dataclass(frozen=True)
class Limits:
    """Resource limits for one sandboxed run.

    Attributes:
      wall_seconds: wall-clock limit; on expiry the whole process tree is killed (status timeout).
      cpu_seconds: CPU-time limit of the candidate (RLIMIT_CPU); exceeding it kills (status killed).
      memory_mb: address-space limit (RLIMIT_AS) in MiB.
      max_processes: limit on processes/threads the candidate may create (RLIMIT_NPROC).
      max_file_mb: largest file the candidate may write (RLIMIT_FSIZE) in MiB.
      max_output_bytes: stdout and stderr are each truncated to their last this-many bytes.
      max_result_bytes: the result file is rejected if larger than this.
      cpus: CPUs the candidate may use (thread-count environment variables; Docker: nano_cpus).
    """

    wall_seconds: float = 60.0
    cpu_seconds: float = 60.0
    memory_mb: int = 2048
    max_processes: int = 64
    max_file_mb: int = 64
    max_output_bytes: int = 20_000
    max_result_bytes: int = 64 * 1024 * 1024
    cpus: int = 1


@dataclasses.dataclass(frozen=True)
class RunRequest:
    """One program to run.

    Attributes:
      program: the candidate's full source text (written to candidate.py in the work dir).
      entrypoint: the function the runner calls, e.g. "construct".
      kwargs: JSON-serialisable keyword arguments passed to the entrypoint.
      limits: resource limits.
      inputs: numeric numpy arrays passed to the entrypoint as extra keyword arguments; they
        cross into the work dir as .npy files (no pickle) and are loaded by the runner, so
        instance data never travels as JSON and a candidate mutating them changes nothing outside.
      python: interpreter of the candidate environment (a venv holding only what the problem
        declares, see sandbox.envs); None = the sandbox's default interpreter.
      requirements: what the problem declares its candidates may import (the docker backend
        runs them in an image holding exactly these; the others use `python`'s venv).
      image: docker backend only: the image to run in (a problem's own image); None = the
        sandbox's image, else $DISCOVERY_DOCKER_IMAGE, else one built locally for requirements.
    """

    program: str
    entrypoint: str
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    limits: Limits = dataclasses.field(default_factory=Limits)
    inputs: dict[str, Any] = dataclasses.field(default_factory=dict)
    python: str | None = None
    requirements: tuple[str, ...] | None = None
    image: str | None = None


@dataclasses.dataclass(frozen=True)
class RunResult:
    """What came out of a sandboxed run, measured from outside the candidate.

    Attributes:
      status: ok (exit 0 and a readable result), error (raised, non-zero exit, no/garbled
        result), timeout (wall clock), killed (CPU/memory/file-size limit or a signal).
      output: the entrypoint's return value as data (JSON value or numpy.ndarray); None unless ok.
      error: one-line reason when status is not ok (e.g. the exception line of the traceback).
      exit_code: process exit code, or None when killed by a signal.
      signal: the signal number that ended the process, if any.
      stdout: tail of standard output (max_output_bytes).
      stderr: tail of standard error (max_output_bytes).
      duration_s: wall-clock seconds.
      cpu_s: user+system CPU seconds of the process tree (from wait4/rusage, not the candidate).
      backend: the backend's name.
    """

    status: RunStatus
    output: Any = None
    error: str = ""
    exit_code: int | None = None
    signal: int | None = None
    stdout: str = ""
    stderr: str = ""
    duration_s: float = 0.0
    cpu_s: float = 0.0
    backend: str = ""


@runtime_checkable
class Sandbox(Protocol):
    """Runs untrusted programs in isolation. Implementations must be thread-safe."""

    name: str

    def run(self, request: RunRequest) -> RunResult:
        """Runs request.program and returns its result; never raises for candidate behaviour."""
        ...
