"""Wall-clock overhead of one sandboxed run of a trivial candidate, per backend.

Usage: python bench/sandbox_overhead.py [--runs N] [--env] [--no-docker]

The floor is a bare `python -I -c pass` subprocess with the same interpreter. --env adds rows
for the same candidate run with the interpreter of a ("numpy",) candidate env (sandbox.envs,
built once into the env cache if missing; not for docker, whose image is the environment).

Docker rows (when an engine is reachable): "docker cold" starts a fresh container for every run
and removes it afterwards (DockerSandbox(reuse=False): create, attach, start, the supervisor's
hello, the run, remove); "docker warm" reuses one container (the default: the run is one request
to the container's supervisor, no docker API call). Both use the locally built image
(sandbox/images/build.py, built first if missing, not timed), and each row's first run is a
warm-up that is not counted.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sandbox import (DockerSandbox, Limits, RunRequest, bwrap_available,  # noqa: E402
                     docker_available, get_sandbox)

PROGRAM = "def construct():\n    return [1.0]\n"


def _stats(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]
    return statistics.median(ordered), p90


def _floor(runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-I", "-c", "pass"], check=True)
        out.append(time.perf_counter() - t)
    return out


def _timed(name: str, sb, runs: int, python: str | None = None) -> list[float]:
    request = RunRequest(PROGRAM, "construct", limits=Limits(wall_seconds=60), python=python)
    sb.run(request)  # warm-up (bwrap: resolves the interpreter's prefixes; docker: the image)
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        result = sb.run(request)
        out.append(time.perf_counter() - t)
        if result.status != "ok" or result.output != [1.0]:
            raise SystemExit(f"{name}: unexpected result {result}")
    return out


def _backend(name: str, runs: int, python: str | None = None) -> list[float]:
    return _timed(name, get_sandbox(name), runs, python)


def _docker(runs: int, reuse: bool) -> list[float]:
    from sandbox.images.build import ensure_local_image

    with DockerSandbox(ensure_local_image(), reuse=reuse) as sb:
        samples = _timed("docker " + ("warm" if reuse else "cold"), sb, runs)
        if reuse and sb.created != 1:
            raise SystemExit(f"docker warm: {sb.created} containers were created, expected 1")
        return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--env", action="store_true", help="also run in a numpy candidate env")
    parser.add_argument("--no-docker", action="store_true", help="skip the docker rows")
    args = parser.parse_args()
    rows = [("python -I -c pass", _floor(args.runs))]
    ok, reason = bwrap_available()
    backends = ["process"] + (["bwrap"] if ok else [])
    for name in backends:
        rows.append((name, _backend(name, args.runs)))
    docker_ok, docker_reason = (False, "--no-docker") if args.no_docker else docker_available()
    if docker_ok:
        rows.append(("docker cold", _docker(args.runs, reuse=False)))
        rows.append(("docker warm", _docker(args.runs, reuse=True)))
    if args.env:
        from sandbox.envs import candidate_python

        python = candidate_python(("numpy",))
        for name in backends:
            rows.append((f"{name} (numpy env)", _backend(name, args.runs, python)))
    floor_med, floor_p90 = _stats(rows[0][1])
    print(f"runs per row: {args.runs}")
    print(f"{'backend':<20}{'median ms':>11}{'p90 ms':>10}{'x floor (median)':>18}"
          f"{'x floor (p90)':>15}")
    for name, samples in rows:
        med, p90 = _stats(samples)
        print(f"{name:<20}{med * 1e3:>11.1f}{p90 * 1e3:>10.1f}{med / floor_med:>18.2f}"
              f"{p90 / floor_p90:>15.2f}")
    if not ok:
        print(f"bwrap skipped: {reason}")
    if not docker_ok:
        print(f"docker skipped: {docker_reason}")


if __name__ == "__main__":
    main()
