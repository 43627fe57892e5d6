"""DockerSandbox: the same trusted runner, in warm Docker containers reused across evaluations.

Containers. One container serves one evaluation at a time and is reused for the next ones. It
is created (docker-py; the engine of DOCKER_HOST or the default socket) with:
  - no network (network_mode none: a loopback of its own only); a private IPC namespace without
    /dev/shm (ipc_mode none) whose System V and POSIX message-queue limits are 0, so no IPC
    object can outlive a process;
  - a read-only root file system and one writable place, a tmpfs at /work (the work dir: mode
    0700, owned by the sandbox uid, noexec/nosuid/nodev, 4 x max_file_mb + 64 MiB);
  - uid/gid 65532 ("sandbox", see UID) for every process in it, every capability dropped,
    no-new-privileges, the engine's default seccomp profile;
  - memory = memory_mb + the work tmpfs + max_file_mb + 96 MiB for the supervisor, swap off;
    nano_cpus = cpus (at most the engine's CPU count); pids_limit = max_processes + 1;
  - no environment from the host (only what the image sets; docker-py's proxy injection off),
    log driver none, auto-remove.

Its pid 1 is the trusted supervisor (sandbox/images/supervisor.py; its docstring says why a pid 1
of the candidate's uid can be trusted: non-dumpable, immune to signals from inside its pid
namespace, and its own attributes verified after every evaluation). The host attaches to its
stdin/stdout once, sends the supervisor's source and sandbox/result.py, and then one request per
evaluation: sandbox/runner.py, the candidate, args.json and the input arrays; so the image needs
nothing but Python (and numpy) and never holds a stale copy of the trusted code, and an
evaluation costs no docker API call at all (no exec, no container start). The supervisor runs
`python -I -B runner.py` in /work in a new session with the environment built by
sandbox._exec.base_env (nothing of the host's environment: API keys never reach the candidate),
enforces the wall clock, then SIGKILLs every other process in the container (kill(-1)) until
none is left and reaps them all (the CPU time of the whole tree, background processes included,
is the growth of its RUSAGE_CHILDREN), reads the result file back without following links,
wipes /work and verifies the container: no other process, an empty /work, no IPC object, its own
attributes unchanged. Only a reply with `clean` true returns the container to the pool; anything
else (a failed verification, a malformed or missing reply, the host's own deadline passing)
removes the container (SIGKILL to everything in it) and the next evaluation gets a fresh one.
When the host process dies, its attach closes, the supervisor reads EOF and exits, and the
container removes itself.

Limits:
  wall_seconds  -> the supervisor's deadline (status timeout, everything killed); the host waits
                   wall_seconds + 30 s and then removes the container (status timeout).
  cpu_seconds   -> RLIMIT_CPU in the runner (SIGXCPU, then SIGKILL: status killed).
  memory_mb     -> RLIMIT_AS in the runner (MemoryError: status killed, "memory limit") and the
                   container's memory cgroup (above): an OOM kill during the run (the cgroup's
                   oom_kill counter) is status killed too. The candidate has oom_score_adj 1000.
  max_processes -> pids_limit (the pids cgroup counts every process and thread of the
                   evaluation; +1 for the supervisor). RLIMIT_NPROC is not used: it counts every
                   process of the uid on the host, so concurrent evaluations in other
                   containers would share one budget.
  max_file_mb   -> RLIMIT_FSIZE in the runner, and the size of the /work tmpfs.
  cpus          -> nano_cpus, and the thread-count variables as in the other backends.
  max_output_bytes / max_result_bytes -> as in the other backends.
Containers are pooled per (image, memory_mb, cpus, max_processes, max_file_mb).

Image. `image=`, else $DISCOVERY_DOCKER_IMAGE, else sandbox.images.build.ensure_local_image()
(built from this machine's own interpreter and numpy, no registry needed). The image defines the
candidate environment: RunRequest.python is ignored on this backend (it is still checked to be
an interpreter path, as on the others). sandbox/images/Dockerfile is the default image for real
users; any image with `python3` on its PATH works.

Failures that are not the candidate's (no engine, an image that cannot start the supervisor, a
container that cannot be created) raise DockerSandboxError, so the caller can retry or stop
rather than record an evaluation; everything the candidate does is a RunResult.
"""

from __future__ import annotations

import atexit
import dataclasses
import io
import json
import os
import secrets
import signal as signals
import socket
import threading
import time
import weakref
from pathlib import Path
from typing import Any

from sandbox._exec import (EXIT_MEMORY, EXIT_SETUP, RUNNER_SOURCE, _last_line,
                           _signal_reason, base_env, check_inputs, check_python, new_token)
from sandbox.base import Limits, RunRequest, RunResult
from sandbox.result import ResultError, parse_json, parse_npy

IMAGE_VAR = "DISCOVERY_DOCKER_IMAGE"
WORK = "/work"
# Every process in the container (the supervisor and the candidate) runs as this uid: not root,
# and not the host's nobody (65534), which other programs on the host may use (the process and
# bwrap backends run each candidate as a uid of its own, sandbox/uids.py). (65532 is
# "nonroot" in distroless images; no login user of a host has it.)
UID = 65532
LABEL = "org.discovery.sandbox"
HOST_GRACE_S = 30.0  # beyond wall_seconds, before the host gives up on a supervisor
STARTUP_TIMEOUT_S = 60.0  # a new container's supervisor must say ready within this
TRUSTED_MB = 96  # memory for the supervisor (plus max_file_mb for the result it holds)
NPROC_CEILING = 1 << 22  # RLIMIT_NPROC handed to the runner: effectively none (see above)
INPUT_BANDWIDTH = 50 << 20  # bytes/s assumed for a request when setting the host deadline
MAX_HEADER = 1 << 20
MAX_SUPERVISOR_STDERR = 1 << 16
SYSCTLS = {"kernel.shmmni": "0", "kernel.shmall": "0", "kernel.msgmni": "0",
           "kernel.sem": "0 0 0 0", "fs.mqueue.queues_max": "0"}

SUPERVISOR_SOURCE = Path(__file__).with_name("images").joinpath("supervisor.py").read_bytes()
RESULT_SOURCE = Path(__file__).with_name("result.py").read_bytes()
BOOTSTRAP = ("import sys;exec(compile(sys.stdin.buffer.read(int(sys.argv[1])),"
             "'discovery-sandbox-supervisor','exec'),{'__name__':'__main__'})")


class DockerSandboxError(RuntimeError):
    """The docker backend cannot run anything (no engine, an image that cannot start the
    supervisor, containers failing to be created); not caused by a candidate."""


class _Lost(Exception):
    """The supervisor's reply is missing or malformed (it died, or the stream broke)."""


class _HostTimeout(Exception):
    """The host's own deadline passed before the supervisor replied."""


def _docker_module():
    try:
        import docker
    except ImportError as exc:  # pragma: no cover - docker is a dependency
        raise DockerSandboxError(f"docker-py is not installed ({exc})") from None
    return docker


def _engine_errors() -> tuple[type[BaseException], ...]:
    import requests

    docker = _docker_module()
    return (docker.errors.DockerException, requests.exceptions.RequestException, OSError)


def docker_available(timeout: float = 10.0) -> tuple[bool, str]:
    """(reachable, reason): a Docker engine answers a ping (DOCKER_HOST or the default socket)."""
    try:
        docker = _docker_module()
        client = docker.from_env(timeout=timeout)
        try:
            client.ping()
            return True, f"docker engine {client.version().get('Version', '?')}"
        finally:
            client.close()
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        return False, f"no Docker engine reachable: {type(exc).__name__}: {exc}"


def default_image(client=None) -> str:
    """$DISCOVERY_DOCKER_IMAGE, else the locally built image (built on first use)."""
    image = os.environ.get(IMAGE_VAR, "").strip()
    if image:
        return image
    from sandbox.images.build import ensure_local_image

    return ensure_local_image(client)


def _local_image(client, packages: tuple[str, ...]) -> str:
    """The locally built image holding exactly `packages` (with what they require)."""
    from sandbox.images.build import ensure_local_image

    return ensure_local_image(client, packages=packages)


class _Channel:
    """The attach stream of one container: requests go to the supervisor's stdin, replies come
    back on its stdout, demultiplexed from docker's 8-byte frame headers (no TTY, so docker
    copies stdin verbatim: no detach-key processing)."""

    def __init__(self, sock):
        self.sock = sock  # docker-py's wrapper keeps the HTTP response (and connection) alive
        self.raw = getattr(sock, "_sock", sock)
        self.frames = bytearray()
        self.out = bytearray()
        self.err = bytearray()

    def alive(self) -> bool:
        """False if the supervisor has closed the stream (or said something unasked)."""
        try:
            self.raw.settimeout(0.0)  # a peek that never waits
            self.raw.recv(1, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return not self.out and not self.frames
        except OSError:
            return False
        return False  # EOF, or bytes nobody asked for

    def send(self, data: bytes, deadline: float) -> None:
        self.raw.settimeout(max(0.001, deadline - time.monotonic()))
        try:
            self.raw.sendall(data)
        except socket.timeout:
            raise _HostTimeout() from None
        except OSError as exc:
            raise _Lost(f"the sandbox supervisor is gone ({exc})") from None

    def stderr(self) -> str:
        return _last_line(bytes(self.err).decode("utf-8", "replace"))

    def reply(self, deadline: float, cap: int) -> tuple[dict, bytes, bytes, bytes]:
        while True:
            parsed = self._parse(cap)
            if parsed is not None:
                return parsed
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _HostTimeout()
            self.raw.settimeout(remaining)
            try:
                chunk = self.raw.recv(1 << 20)
            except socket.timeout:
                raise _HostTimeout() from None
            except OSError as exc:
                raise _Lost(f"the sandbox stream broke ({exc})") from None
            if not chunk:
                raise _Lost("the sandbox supervisor ended without a reply")
            self._demux(chunk, cap)

    def _demux(self, chunk: bytes, cap: int) -> None:
        self.frames += chunk
        pos = 0
        while len(self.frames) - pos >= 8:
            stream = self.frames[pos]
            size = int.from_bytes(self.frames[pos + 4:pos + 8], "big")
            if len(self.frames) - pos - 8 < size:
                break
            data = self.frames[pos + 8:pos + 8 + size]
            pos += 8 + size
            if stream == 2:
                self.err += data
                if len(self.err) > 2 * MAX_SUPERVISOR_STDERR:
                    del self.err[:len(self.err) - MAX_SUPERVISOR_STDERR]
            else:
                self.out += data
                if len(self.out) > cap:
                    raise _Lost(f"the supervisor's reply exceeds {cap} bytes")
        del self.frames[:pos]

    def _parse(self, cap: int) -> tuple[dict, bytes, bytes, bytes] | None:
        end = self.out.find(b"\n", 0, MAX_HEADER)
        if end < 0:
            if len(self.out) >= MAX_HEADER:
                raise _Lost("malformed reply from the sandbox supervisor")
            return None
        try:
            reply = json.loads(bytes(self.out[:end]))
            n_out, n_err, n_res = (int(n) for n in reply["lengths"])
        except (ValueError, KeyError, TypeError):
            raise _Lost("malformed reply from the sandbox supervisor") from None
        if min(n_out, n_err, n_res) < 0 or n_out + n_err + n_res > cap:
            raise _Lost("malformed reply from the sandbox supervisor")
        need = end + 1 + n_out + n_err + n_res
        if len(self.out) < need:
            return None
        body = bytes(self.out[end + 1:need])
        del self.out[:need]
        return reply, body[:n_out], body[n_out:n_out + n_err], body[n_out + n_err:]

    def close(self) -> None:
        for obj in (self.sock, self.raw, getattr(self.sock, "_response", None)):
            try:
                if obj is not None:
                    obj.close()
            except Exception:  # noqa: BLE001
                pass


@dataclasses.dataclass(eq=False)
class _Container:
    id: str
    key: tuple
    channel: _Channel | None = None
    last_used: float = 0.0
    runs: int = 0
    cpu_reported: float = 0.0  # cpu_s of its runs so far (for the host-timeout estimate)


class DockerSandbox:
    """Runs candidates in warm Docker containers (see the module docstring). Thread-safe: one
    container per concurrent evaluation. Close it (or use it as a context manager) to remove its
    containers; whatever is left is removed at interpreter exit, and the containers of a process
    that died remove themselves."""

    name = "docker"

    def __init__(self, image: str | None = None, *, reuse: bool = True, max_idle: int = 4,
                 idle_timeout: float = 600.0, python: str = "python3", client=None,
                 host_grace_s: float = HOST_GRACE_S):
        """image: the image (default $DISCOVERY_DOCKER_IMAGE, else the local build);
        reuse: keep containers warm between evaluations (False: a fresh container per run);
        max_idle: warm containers kept at most (the least recently used is removed beyond it);
        idle_timeout: a warm container unused this long is removed instead of reused;
        python: the interpreter command inside the image; client: a docker.DockerClient;
        host_grace_s: how long past wall_seconds the host waits for the supervisor's reply
        before it removes the container (status timeout)."""
        self.image = image
        self.host_grace_s = float(host_grace_s)
        self.reuse = reuse
        self.max_idle = max(0, int(max_idle))
        self.idle_timeout = float(idle_timeout)
        self.python = python
        self._client = client
        self._resolved: dict = {}  # image wanted / ("local", requirements) -> tag
        self._ncpu: int | None = None
        self._lock = threading.Lock()
        self._idle: list[_Container] = []
        self._live: dict[str, _Container] = {}
        self._closed = False
        self.created = 0  # containers created by this sandbox (for tests and diagnostics)
        _instances.add(self)

    # -- engine and image ------------------------------------------------------------------
    def _docker(self):
        with self._lock:
            if self._client is None:
                docker = _docker_module()
                try:
                    client = docker.from_env(timeout=120, max_pool_size=32)
                    client.ping()
                except Exception as exc:  # noqa: BLE001
                    raise DockerSandboxError(f"no Docker engine reachable: "
                                             f"{type(exc).__name__}: {exc}") from exc
                self._client = client
            return self._client

    def image_tag(self, request: RunRequest | None = None) -> str:
        """The image a request runs in: request.image (a problem's own), else this sandbox's
        image, else $DISCOVERY_DOCKER_IMAGE, else the local build holding request.requirements
        (numpy when the request declares none); built on first use, then cached."""
        wanted = request.image if request is not None and request.image else self.image
        packages = None if request is None or request.requirements is None else tuple(request.requirements)
        memo_key = wanted or ("local", packages)
        with self._lock:
            found = self._resolved.get(memo_key)
            if found is not None:
                return found
        client = self._docker()
        try:
            if wanted:
                image = wanted
            elif packages is None:
                image = default_image(client)
            else:
                image = os.environ.get(IMAGE_VAR, "").strip() or _local_image(client, packages)
        except DockerSandboxError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise DockerSandboxError(f"the sandbox image could not be built: "
                                     f"{type(exc).__name__}: {exc}") from exc
        with self._lock:
            self._resolved[memo_key] = image
        return image

    def _cpus(self, cpus: int) -> float:
        if self._ncpu is None:
            try:
                self._ncpu = int(self._docker().info().get("NCPU") or os.cpu_count() or 1)
            except _engine_errors():
                self._ncpu = os.cpu_count() or 1
        return float(max(0.01, min(float(cpus), float(self._ncpu))))

    # -- containers --------------------------------------------------------------------------
    @staticmethod
    def _key(image: str, limits: Limits) -> tuple:
        return (image, int(limits.memory_mb), int(limits.cpus), int(limits.max_processes),
                int(limits.max_file_mb))

    def _create(self, key: tuple) -> _Container:
        docker = _docker_module()
        image, memory_mb, cpus, max_processes, max_file_mb = key
        work_mb = 4 * max_file_mb + 64
        mem_mb = memory_mb + work_mb + max_file_mb + TRUSTED_MB
        api = self._docker().api
        host_config = api.create_host_config(
            read_only=True,
            network_mode="none",
            ipc_mode="none",
            tmpfs={WORK: (f"rw,nosuid,nodev,noexec,size={work_mb}m,nr_inodes=65536,mode=700,"
                          f"uid={UID},gid={UID}")},
            mem_limit=f"{mem_mb}m",
            memswap_limit=f"{mem_mb}m",
            nano_cpus=int(self._cpus(cpus) * 1e9),
            pids_limit=int(max_processes) + 1,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges:true"],
            sysctls=dict(SYSCTLS),
            log_config=docker.types.LogConfig(type=docker.types.LogConfig.types.NONE),
            ulimits=[docker.types.Ulimit(name="core", soft=0, hard=0)],
            auto_remove=True,
        )
        try:
            created = api.create_container(
                image, command=[self.python, "-I", "-B", "-c", BOOTSTRAP,
                                str(len(SUPERVISOR_SOURCE))],
                user=f"{UID}:{UID}", hostname="sandbox", working_dir="/",
                name=f"discovery-sbx-{os.getpid()}-{secrets.token_hex(4)}",
                host_config=host_config, environment=None, use_config_proxy=False,
                stdin_open=True, tty=False,  # StdinOnce: our attach closing ends the container
                labels={LABEL: "1", f"{LABEL}.owner": f"{socket.gethostname()}:{os.getpid()}"})
        except _engine_errors() as exc:
            raise DockerSandboxError(f"could not create a sandbox container from {image!r}: "
                                     f"{exc}") from exc
        ct = _Container(created["Id"], key)
        with self._lock:
            self._live[ct.id] = ct
            self.created += 1
        try:
            try:
                sock = api.attach_socket(ct.id, params={"stdin": 1, "stdout": 1, "stderr": 1,
                                                        "stream": 1})
                ct.channel = _Channel(sock)
                api.start(ct.id)
            except _engine_errors() as exc:
                raise DockerSandboxError(f"could not start a sandbox container from {image!r}: "
                                         f"{exc}") from exc
            deadline = time.monotonic() + STARTUP_TIMEOUT_S
            hello = json.dumps({"support": [["result.py", len(RESULT_SOURCE)]]}).encode()
            try:
                ct.channel.send(SUPERVISOR_SOURCE + hello + b"\n" + RESULT_SOURCE, deadline)
                reply = ct.channel.reply(deadline, MAX_HEADER)[0]
            except (_Lost, _HostTimeout) as exc:
                raise DockerSandboxError(
                    f"the sandbox supervisor did not start in a container of {image!r} "
                    f"({self.python} -I -B -c ...): {type(exc).__name__}: {exc} "
                    f"{ct.channel.stderr()}".strip()) from None
            if not reply.get("ready") or reply.get("uid") != UID:
                raise DockerSandboxError(f"unexpected hello from the sandbox supervisor: {reply}")
        except BaseException:
            self._remove(ct)
            raise
        ct.last_used = time.monotonic()
        return ct

    def _remove(self, ct: _Container) -> None:
        with self._lock:
            self._live.pop(ct.id, None)
        client = self._client
        try:
            if client is not None:
                client.api.remove_container(ct.id, force=True)
        except _engine_errors():
            pass  # already gone (auto-remove), or being removed
        finally:
            if ct.channel is not None:
                ct.channel.close()

    def _acquire(self, key: tuple) -> _Container:
        stale, chosen = [], None
        with self._lock:
            if self._closed:
                raise DockerSandboxError("the docker sandbox is closed")
            now = time.monotonic()
            for ct in reversed(list(self._idle)):  # the most recently used first
                if ct.key != key:
                    continue
                self._idle.remove(ct)
                if now - ct.last_used < self.idle_timeout and ct.channel.alive():
                    chosen = ct
                    break
                stale.append(ct)
        for ct in stale:
            self._remove(ct)
        return chosen if chosen is not None else self._create(key)

    def _release(self, ct: _Container, reusable: bool) -> None:
        evict = []
        with self._lock:
            if reusable and self.reuse and not self._closed and ct.id in self._live:
                ct.last_used = time.monotonic()
                self._idle.append(ct)
                while len(self._idle) > self.max_idle:
                    evict.append(self._idle.pop(0))  # the least recently used
            else:
                evict.append(ct)
        for c in evict:
            self._remove(c)

    def idle_containers(self) -> list[str]:
        """Ids of the warm containers waiting for an evaluation."""
        with self._lock:
            return [c.id for c in self._idle]

    def live_containers(self) -> list[str]:
        """Ids of every container this sandbox holds (idle or running an evaluation)."""
        with self._lock:
            return list(self._live)

    def close(self) -> None:
        """Removes every container of this sandbox; later runs raise DockerSandboxError.
        Evaluations still running lose their container too."""
        with self._lock:
            self._closed = True
            victims = list(self._live.values())
            self._idle.clear()
        for ct in victims:
            self._remove(ct)

    def __enter__(self) -> DockerSandbox:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- one evaluation --------------------------------------------------------------------
    @staticmethod
    def _request(request: RunRequest, inputs: dict[str, Any], token: str) -> bytes:
        limits = dataclasses.asdict(request.limits)
        limits["max_processes"] = NPROC_CEILING  # the pids cgroup is the limit (docstring)
        args = {"entrypoint": request.entrypoint, "kwargs": request.kwargs,
                "inputs": sorted(inputs), "limits": limits,
                "setup": {"isolate": False, "drop": False}}
        files = [("runner.py", RUNNER_SOURCE.read_bytes()),
                 ("candidate.py", request.program.encode("utf-8", errors="surrogatepass")),
                 ("args.json", json.dumps(args).encode())]
        if inputs:
            import numpy as np

            for name, arr in inputs.items():
                buf = io.BytesIO()
                np.save(buf, arr, allow_pickle=False)
                files.append((f"inputs/{name}.npy", buf.getvalue()))
        lim = request.limits
        header = {"files": [[n, len(b)] for n, b in files], "work": WORK,
                  "env": base_env(lim, WORK, token),
                  "wall_seconds": float(lim.wall_seconds),
                  "max_output_bytes": int(lim.max_output_bytes),
                  "max_result_bytes": int(lim.max_result_bytes)}
        return b"".join([json.dumps(header).encode(), b"\n", *(b for _, b in files)])

    def run(self, request: RunRequest) -> RunResult:
        # Caller bugs raise ValueError here, before anything is started.
        inputs = check_inputs(request.inputs, request.kwargs)
        check_python(request.python)  # checked as on the other backends; the image decides
        start = time.monotonic()
        try:
            payload = self._request(request, inputs, new_token())
        except (TypeError, ValueError) as exc:  # kwargs not JSON, bad program text
            return RunResult(status="error", error=f"bad request: {exc}", backend=self.name,
                             duration_s=time.monotonic() - start)
        limits = request.limits
        ct = self._acquire(self._key(self.image_tag(request), limits))
        deadline = (time.monotonic() + float(limits.wall_seconds) + self.host_grace_s
                    + len(payload) / INPUT_BANDWIDTH)
        cap = 2 * int(limits.max_output_bytes) + int(limits.max_result_bytes) + MAX_HEADER
        try:
            ct.channel.send(payload, deadline)
            reply, out, err, result = ct.channel.reply(deadline, cap)
        except _HostTimeout:
            cpu = self._container_cpu(ct)
            self._release(ct, reusable=False)
            return RunResult(status="timeout", error=(
                f"wall-clock limit ({limits.wall_seconds:g}s) exceeded; the sandbox did not "
                f"answer within {self.host_grace_s:g}s more and its container was removed"),
                duration_s=time.monotonic() - start, cpu_s=cpu, backend=self.name)
        except _Lost as exc:
            detail = ct.channel.stderr()
            self._release(ct, reusable=False)
            return RunResult(status="error", error=(
                f"the sandbox supervisor was lost, container removed: {exc}"
                + (f" ({detail})" if detail else "")), duration_s=time.monotonic() - start,
                backend=self.name)
        except BaseException:
            self._release(ct, reusable=False)
            raise
        ct.runs += 1
        ct.cpu_reported += float(reply.get("cpu_s") or 0.0)
        self._release(ct, reusable=bool(reply.get("clean")))
        return _classify(reply, out, err, result, limits, self.name, time.monotonic() - start)

    def _container_cpu(self, ct: _Container) -> float:
        """CPU seconds of the container's cgroup beyond what its earlier runs reported (only when
        the supervisor did not answer; includes the supervisor's own CPU)."""
        try:
            stats = self._docker().api.stats(ct.id, stream=False, one_shot=True)
            total = stats["cpu_stats"]["cpu_usage"]["total_usage"] / 1e9
            return max(0.0, total - ct.cpu_reported)
        except Exception:  # noqa: BLE001
            return 0.0


def _classify(reply: dict, out: bytes, err: bytes, result: bytes, limits: Limits,
              backend: str, duration: float) -> RunResult:
    code, sig = reply.get("exit_code"), reply.get("signal")
    cpu_s = float(reply.get("cpu_s") or 0.0)
    oom = (reply.get("oom_kills") or 0) > 0
    stdout = out.decode("utf-8", errors="replace")
    stderr = err.decode("utf-8", errors="replace")
    common = dict(exit_code=code, signal=sig, stdout=stdout, stderr=stderr, duration_s=duration,
                  cpu_s=cpu_s, backend=backend)
    oom_reason = "memory limit (the container ran out of memory: killed by the kernel)"
    if reply.get("timed_out"):
        return RunResult(status="timeout", error=f"wall-clock limit ({limits.wall_seconds:g}s) "
                         "exceeded", **common)
    if sig is not None:
        if oom and sig == signals.SIGKILL:
            return RunResult(status="killed", error=oom_reason, **common)
        return RunResult(status="killed", error=_signal_reason(sig, cpu_s, limits), **common)
    if code == EXIT_MEMORY:
        return RunResult(status="killed", error="memory limit", **common)
    if code == EXIT_SETUP:
        return RunResult(status="error", error=_last_line(stderr) or "sandbox setup failed",
                         **common)
    if code is None:
        return RunResult(status="error", error="the runner's exit status was lost", **common)
    if code != 0:
        if oom:
            return RunResult(status="killed", error=oom_reason, **common)
        return RunResult(status="error", error=_last_line(stderr) or f"exited with code {code}",
                         **common)
    if reply.get("result_error"):
        return RunResult(status="error", error=str(reply["result_error"])[:500], **common)
    try:
        output = parse_npy(result) if reply.get("result_kind") == "npy" else parse_json(result)
    except ResultError as exc:
        return RunResult(status="error", error=str(exc), **common)
    return RunResult(status="ok", output=output, **common)


_instances: weakref.WeakSet[DockerSandbox] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    """Removes the containers of every DockerSandbox still open at interpreter exit."""
    for sb in list(_instances):
        try:
            sb.close()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass
