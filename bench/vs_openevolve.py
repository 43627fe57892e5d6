"""Platform throughput side by side: this platform versus OpenEvolve 0.4.0, same problem, same stub LLM.

Both systems run the same trivial problem (tests/flows/toy_problem.py: construct() returns a list
of numbers, the score is -sum((x - 3)^2)) against the same local stub LLM: a real
OpenAI-compatible HTTP server on 127.0.0.1 (tests/stub_llm.py), run in its own process so that
neither system shares an interpreter with it, answering every call after a fixed latency with a
distinct complete program in a ```python fence (a full rewrite, which both systems parse; OpenEvolve
runs with diff_based_evolution off). Nothing ever contacts a real provider: the only URL given to
either system is the stub's, and the API keys are dummies.

  ours        `flows.api.run_campaign` (SimpleTES C=4 K=4, litellm `openai/stub-model`), in this
              process, every candidate run in our sandbox: "process" (our cheapest backend: we
              have no in-process/no-sandbox option) and "bwrap" (the default on this machine).
  openevolve  `openevolve.controller.OpenEvolve(...).run(iterations=N)` in a driver subprocess
              running in the peer venv (.bench-venvs/openevolve, bench/peer_venv.py). OpenEvolve
              itself sandboxes nothing: it calls the user's evaluate(program_path) in a thread
              of its worker process (its memory/CPU limit settings are documented as not
              implemented). Our evaluator file for it either imports the candidate right there
              ("in-process") or runs it in a plain `python -I` subprocess ("subprocess": a spawn
              per candidate, like ours, but no isolation).

For each stub latency (default 0 s and 1 s) every system is swept over concurrency settings:
OpenEvolve's `evaluator.parallel_evaluations` (its number of worker processes; each worker does
one LLM call then one evaluation, so it is both the LLM and the evaluation concurrency), ours
`llm_concurrency` = `eval_slots` = c (coupled, like OpenEvolve) and `llm_concurrency` = c with
`eval_slots` = cores (decoupled). The printout gives every row, then side-by-side ratios at equal
concurrency and at each system's best measured settings, and what decoupled LLM concurrency buys.
`--eval-cpu-ms` makes every candidate (not the seed) burn CPU in construct(), for the case where
evaluation slots are a real resource (the trivial problem leaves them idle).

    .venv/bin/python bench/vs_openevolve.py [--budget 32] [--latencies 0,1] [--concurrency 2,4,8,16]
        [--equal 2] [--eval-slots 2] [--repeats 1] [--sandboxes process,bwrap]
        [--oe-evals in-process,subprocess] [--eval-cpu-ms 0]

(about 5 minutes with the defaults on 2 cores; the peer venv is created on first use, ~15 s)

Wall time per row covers one whole campaign/run (setup, the seed program's evaluation, the N
candidates, shutdown) after one warm-up run of the same system in the same process that is not
timed (our warm-up starts the ephemeral Prefect API). Candidates are the proposal calls the stub
served (ours' 1-token preflight probe is counted apart); evaluated is what each system reports.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parents[1]
TOY = REPO / "tests" / "flows" / "toy_problem.py"
DUMMY_KEY = "sk-bench-dummy-not-a-real-key"
RESULT_MARK = "BENCH-RESULT "
STUB_MODEL = "stub-model"


# ------------------------------------------------------------------ pure helpers


def candidate_program(i: int, cpu_ms: float = 0.0) -> str:
    """The i-th program the stub hands out: the toy seed's shape with distinct values; with
    cpu_ms > 0, construct() first burns that much CPU time of its own thread."""
    burn = (f"    import time\n    end = time.thread_time() + {cpu_ms / 1000.0!r}\n"
            "    while time.thread_time() < end:\n        pass\n") if cpu_ms > 0 else ""
    return ("import math\n\n# EVOLVE-BLOCK-START\n"
            f"VALUES = [3.0, 2.9, {i}.5]\n\n\ndef construct():\n{burn}    return list(VALUES)\n"
            "# EVOLVE-BLOCK-END\n")


def stub_reply(i: int, cpu_ms: float = 0.0) -> str:
    """The stub's i-th answer: a complete program in a python fence (a full rewrite)."""
    return f"Here is the improved program.\n\n```python\n{candidate_program(i, cpu_ms)}```\n"


def parse_ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def overhead_ms(wall_s: float, candidates: int, latency_s: float, llm_cap: int) -> float:
    """Wall time per candidate beyond what the stub's latency alone forces at that many LLM
    calls in flight: (wall - N * latency / min(cap, N)) / N, in ms. At latency 0 it is wall / N."""
    if candidates <= 0:
        return math.nan
    ideal = candidates * latency_s / max(1, min(llm_cap, candidates))
    return 1000.0 * (wall_s - ideal) / candidates


OE_EVALUATOR = '''"""OpenEvolve evaluator for bench/vs_openevolve.py: the toy problem (score -sum((x - 3)^2))."""
import importlib.util
import json
import math
import subprocess
import sys
import uuid

MODE = {mode!r}
COUNT_FILE = {count_file!r}
RUNNER = ("import json, runpy, sys; ns = runpy.run_path(sys.argv[1]); "
          "print(json.dumps(ns['construct']()))")


def _construct_in_process(path):
    spec = importlib.util.spec_from_file_location("candidate_" + uuid.uuid4().hex, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.construct()


def _construct_in_subprocess(path):
    done = subprocess.run([sys.executable, "-I", "-c", RUNNER, path], capture_output=True,
                          text=True, timeout=3)
    if done.returncode:
        raise RuntimeError(done.stderr[-300:])
    return json.loads(done.stdout)


def _score(output):
    if not isinstance(output, list) or not output or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in output):
        return None
    if len(output) > 100 or not all(math.isfinite(v) for v in output):
        return None
    return -sum((v - 3.0) ** 2 for v in output)


def evaluate(program_path):
    construct = _construct_in_subprocess if MODE == "subprocess" else _construct_in_process
    try:
        value = _score(construct(program_path))
    except Exception:
        value = None
    with open(COUNT_FILE, "a") as f:  # one line per evaluation: 1 valid, 0 not
        f.write("0\\n" if value is None else "1\\n")
    return {{"combined_score": value if value is not None else -1e9,
             "valid": 0.0 if value is None else 1.0}}
'''


def openevolve_evaluator_source(mode: str, count_file: str) -> str:
    """The evaluator file OpenEvolve loads: the toy problem's scoring, in-process or subprocess."""
    if mode not in ("in-process", "subprocess"):
        raise ValueError(f"unknown OpenEvolve evaluation mode {mode!r}")
    return OE_EVALUATOR.format(mode=mode, count_file=count_file)


def openevolve_config(api_base: str, workers: int, iterations: int) -> dict:
    """OpenEvolve settings (Config.from_dict) for one row: its defaults except what the
    comparison needs (full rewrites, one-stage evaluation, the stub, quiet logging)."""
    return {
        "max_iterations": iterations,
        "log_level": "WARNING",
        "diff_based_evolution": False,  # the stub answers with a full program
        "llm": {"api_base": api_base, "api_key": DUMMY_KEY,
                "models": [{"name": STUB_MODEL, "weight": 1.0}]},
        "evaluator": {"parallel_evaluations": workers,
                      "cascade_evaluation": False},  # single-stage evaluator (its own advice)
    }


@dataclass(frozen=True)
class Measure:
    """One timed run of one row."""

    wall: float  # seconds, the whole campaign/run call
    first_call: float  # seconds from the run's start to the stub receiving the first proposal call
    candidates: int  # proposal calls the stub served
    evaluated: int  # evaluations the system reports (seed included)
    ok: int  # of those, valid scores
    peak_llm: int  # most chat calls in flight at once, as the stub saw them
    probes: int  # 1-token probe calls (ours' preflight)


def measure_from(wall: float, start_mono: float, stats: dict, evaluated: int, ok: int) -> Measure:
    """A Measure from a run's wall time, its start (time.monotonic, system-wide on Linux) and the
    stub's stats."""
    first = stats.get("first_at")
    return Measure(wall, (first - start_mono) if first is not None else math.nan, stats["calls"],
                   evaluated, ok, stats["max_concurrent"], stats["probes"])


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


@dataclass
class Row:
    system: str  # "ours" or "openevolve"
    variant: str  # sandbox backend (ours) or evaluation mode (openevolve)
    llm: int  # LLM calls in flight allowed by the settings
    evals: int  # evaluations in flight allowed by the settings
    latency: float
    llm_cap: int = 0  # effective cap on LLM calls in flight (ours: min(llm, C x K)); 0 = llm
    runs: list[Measure] = field(default_factory=list)
    error: str = ""

    @property
    def wall(self) -> float:
        return median([m.wall for m in self.runs]) if self.runs else math.nan

    @property
    def first_call(self) -> float:
        return median([m.first_call for m in self.runs]) if self.runs else math.nan

    @property
    def candidates(self) -> int:
        return min((m.candidates for m in self.runs), default=0)

    @property
    def evaluated(self) -> int:
        return min((m.evaluated for m in self.runs), default=0)

    @property
    def ok(self) -> int:
        return min((m.ok for m in self.runs), default=0)

    @property
    def peak_llm(self) -> int:
        return max((m.peak_llm for m in self.runs), default=0)

    @property
    def label(self) -> str:
        return f"{self.system}/{self.variant}"

    @property
    def settings(self) -> str:
        if self.system == "openevolve":
            return f"workers={self.llm}"
        return f"llm={self.llm} eval={self.evals}"

    @property
    def rate(self) -> float:
        return self.candidates / self.wall if self.candidates and self.wall > 0 else math.nan

    @property
    def rate_after_first(self) -> float:
        """Candidates per second from the first proposal call to the end of the run."""
        span = self.wall - self.first_call
        return self.candidates / span if self.candidates and span > 0 else math.nan

    @property
    def overhead(self) -> float:
        return overhead_ms(self.wall, self.candidates, self.latency, self.llm_cap or self.llm)


def best(rows: list[Row], label: str, latency: float) -> Row | None:
    """The row of `label` at `latency` with the most candidates per second."""
    pool = [r for r in rows if r.label == label and r.latency == latency and not r.error]
    return max(pool, key=lambda r: r.rate, default=None)


def find(rows: list[Row], label: str, latency: float, llm: int, evals: int) -> Row | None:
    for r in rows:
        if r.label == label and r.latency == latency and r.llm == llm and r.evals == evals and not r.error:
            return r
    return None


def format_table(rows: list[Row]) -> list[str]:
    head = (f"{'system':22s} {'settings':18s} {'latency s':>9s} {'cands':>6s} {'evald':>6s} "
            f"{'ok':>4s} {'wall s':>7s} {'cand/s':>7s} {'ovh ms/cand':>11s} {'peak LLM':>8s} "
            f"{'1st call s':>10s} {'cand/s after':>12s}")
    lines = [head, "-" * len(head)]
    for r in rows:
        if r.error:
            lines.append(f"{r.label:22s} {r.settings:18s} {r.latency:9g}  FAILED: {r.error}")
            continue
        lines.append(f"{r.label:22s} {r.settings:18s} {r.latency:9g} {r.candidates:6d} {r.evaluated:6d} "
                     f"{r.ok:4d} {r.wall:7.2f} {r.rate:7.2f} {r.overhead:11.1f} {r.peak_llm:8d} "
                     f"{r.first_call:10.2f} {r.rate_after_first:12.2f}")
    return lines


def _vs(a: Row | None, b: Row | None) -> str:
    """One comparison line: a against b, cand/s and overhead, with a / b."""
    if a is None or b is None:
        return "n/a (a row is missing or failed)"
    return (f"{a.label + ' ' + a.settings:36s} vs {b.label + ' ' + b.settings:36s} "
            f"cand/s {a.rate:6.2f} / {b.rate:6.2f} = {a.rate / b.rate:5.2f}   "
            f"ovh ms/cand {a.overhead:6.1f} / {b.overhead:6.1f} = {a.overhead / b.overhead:5.2f}")


def format_ratios(rows: list[Row], latencies: list[float], equal: int, eval_slots: int,
                  ours: list[str], theirs: list[str], top: int) -> list[str]:
    """Side-by-side comparisons from the rows of this run, each as a / b."""
    lines = []
    for lat in latencies:
        lines.append(f"latency {lat:g} s")
        lines.append(f"  equal concurrency: {equal} LLM calls and {equal} evaluations at most in flight")
        lines += ["    " + _vs(find(rows, o, lat, equal, equal), find(rows, t, lat, equal, equal))
                  for o in ours for t in theirs]
        lines.append("  each system's best measured settings (most cand/s in this run's sweep)")
        lines += ["    " + _vs(best(rows, o, lat), best(rows, t, lat)) for o in ours for t in theirs]
        if top <= eval_slots:
            continue
        lines.append(f"  LLM calls in flight beyond evaluation slots (ours llm={top} eval={eval_slots}): against "
                     f"ours with {eval_slots} calls, ours coupled at {top}, and openevolve at {eval_slots} evaluations")
        for o in ours:
            dec = find(rows, o, lat, top, eval_slots)
            lines.append("    " + _vs(dec, find(rows, o, lat, eval_slots, eval_slots)))
            lines.append("    " + _vs(dec, find(rows, o, lat, top, top)))
            lines += ["    " + _vs(dec, find(rows, t, lat, eval_slots, eval_slots)) for t in theirs]
    return lines


# ------------------------------------------------------------------ the stub, in its own process


def serve_stub(latency: float, cpu_ms: float) -> None:
    """Stub-process mode: serve until stdin closes, then print what the stub saw as JSON."""
    sys.path.insert(0, str(REPO))
    from tests.stub_llm import StubLLMServer

    counter = itertools.count()
    with StubLLMServer(lambda _body: stub_reply(next(counter), cpu_ms), latency_s=latency,
                       model=STUB_MODEL) as stub:
        print(stub.url, flush=True)
        sys.stdin.read()
        reqs = stub.chat_requests
    probe = [isinstance(r.body, dict) and r.body.get("max_tokens") == 1 for r in reqs]
    arrivals = [r.received_at for r, p in zip(reqs, probe) if not p]
    print(json.dumps({"calls": len(arrivals), "probes": sum(probe), "max_concurrent": stub.max_concurrent,
                      "first_at": min(arrivals, default=None)}), flush=True)


@contextlib.contextmanager
def stub_process(latency: float, cpu_ms: float = 0.0) -> Iterator[tuple[str, dict]]:
    """Runs the stub in a child process; yields (url, stats), stats filled in on exit."""
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--serve-stub", str(latency),
                             "--eval-cpu-ms", str(cpu_ms)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=clean_env())
    stats: dict = {}
    try:
        url = proc.stdout.readline().strip()
        if not url.startswith("http://127.0.0.1:"):
            raise RuntimeError(f"stub process did not start (said {url!r})")
        yield url, stats
    finally:
        out, _ = proc.communicate(timeout=60)
        last = (out.strip().splitlines() or ["{}"])[-1]
        stats.update(json.loads(last))


def clean_env(extra: dict | None = None) -> dict:
    """This environment with dummy keys, no provider base URLs and no proxy for 127.0.0.1."""
    env = {k: v for k, v in os.environ.items()
           if not k.upper().startswith(("OPENAI_", "ANTHROPIC_", "AZURE_", "GEMINI_"))}
    env.update(OPENAI_API_KEY=DUMMY_KEY, NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    env.update(extra or {})
    return env


# ------------------------------------------------------------------ OpenEvolve (peer venv)


def openevolve_driver(spec_path: str) -> None:
    """Driver mode, run by the peer venv's python: one untimed warm-up run against a local stub,
    then the timed run against the spec's stub; prints the result as one JSON line."""
    import asyncio
    import logging

    sys.path.insert(0, str(REPO))
    from openevolve.config import Config
    from openevolve.controller import OpenEvolve

    from tests.stub_llm import StubLLMServer

    spec = json.loads(Path(spec_path).read_text())
    work = Path(spec["work_dir"])
    count_file = Path(spec["count_file"])

    def config(api_base: str, iterations: int) -> Config:
        cfg = Config.from_dict(openevolve_config(api_base, spec["workers"], iterations))
        cfg.llm.update_model_params({"system_message": cfg.prompt.system_message})  # as load_config does
        return cfg

    def one_run(api_base: str, iterations: int, out: str) -> tuple[float, float]:
        start_mono, start = time.monotonic(), time.perf_counter()
        controller = OpenEvolve(spec["initial_program"], spec["evaluator"], config(api_base, iterations),
                                output_dir=str(work / out))
        asyncio.run(controller.run(iterations=iterations))
        wall = time.perf_counter() - start
        logging.getLogger().handlers.clear()  # each controller adds its own handlers
        return wall, start_mono

    counter = itertools.count()
    with StubLLMServer(lambda _b: stub_reply(10_000 + next(counter)), model=STUB_MODEL) as warm:
        one_run(warm.url, 1, "warmup")
    count_file.write_text("")
    wall, start_mono = one_run(spec["api_base"], spec["iterations"], "run")
    marks = count_file.read_text().split()
    print(RESULT_MARK + json.dumps({"wall": wall, "start_mono": start_mono, "evaluated": len(marks),
                                    "ok": marks.count("1")}), flush=True)


def run_openevolve(python: Path, row: Row, budget: int, work: Path, cpu_ms: float) -> Measure:
    """One OpenEvolve run: a driver subprocess in the peer venv against a fresh stub process."""
    d = Path(tempfile.mkdtemp(prefix=f"oe-{row.variant}-{row.llm}-", dir=work))
    (d / "initial_program.py").write_text(seed_program())
    count_file = d / "evaluated.txt"
    (d / "evaluator.py").write_text(openevolve_evaluator_source(row.variant, str(count_file)))
    with stub_process(row.latency, cpu_ms) as (url, stats):
        spec = {"api_base": url, "workers": row.llm, "iterations": budget, "work_dir": str(d),
                "count_file": str(count_file), "initial_program": str(d / "initial_program.py"),
                "evaluator": str(d / "evaluator.py")}
        (d / "spec.json").write_text(json.dumps(spec))
        done = subprocess.run([str(python), str(Path(__file__).resolve()), "--oe-driver", str(d / "spec.json")],
                              capture_output=True, text=True, env=clean_env(), timeout=900, cwd=d)
    found = [ln for ln in done.stdout.splitlines() if ln.startswith(RESULT_MARK)]
    if done.returncode or not found:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"OpenEvolve driver exit {done.returncode} (see {d}): {tail[:160]}")
    result = json.loads(found[-1][len(RESULT_MARK):])
    return measure_from(result["wall"], result["start_mono"], stats, result["evaluated"], result["ok"])


def seed_program() -> str:
    """The toy problem's seed program (OpenEvolve's initial program)."""
    from problems import get_problem

    return get_problem(str(TOY)).seed_program


# ------------------------------------------------------------------ ours


def run_ours(row: Row, budget: int, chains: int, k: int, cpu_ms: float) -> Measure:
    """One run of ours: flows.api.run_campaign against a fresh stub process."""
    from discovery.config import resolve
    from flows.api import run_campaign

    with stub_process(row.latency, cpu_ms) as (url, stats):
        cfg = resolve(problem=str(TOY), model=f"openai/{STUB_MODEL}", api_base=url, chains=chains, k=k,
                      budget=budget, sandbox=row.variant, llm_concurrency=row.llm, eval_slots=row.evals, seed=0)
        start_mono, start = time.monotonic(), time.perf_counter()
        summary = run_campaign(cfg)
        wall = time.perf_counter() - start
    return measure_from(wall, start_mono, stats, summary.evaluations, summary.by_status.get("ok", 0))


def warm_up_ours(sandboxes: list[str]) -> float:
    """Starts the ephemeral Prefect API and litellm with one 1-candidate campaign per backend."""
    from discovery.config import resolve
    from flows.api import run_campaign

    start = time.perf_counter()
    for sb in sandboxes:
        with stub_process(0.0) as (url, _):
            run_campaign(resolve(problem=str(TOY), model=f"openai/{STUB_MODEL}", api_base=url,
                                 chains=1, k=1, budget=1, sandbox=sb, seed=0))
    return time.perf_counter() - start


# ------------------------------------------------------------------ main


def plan(latencies: list[float], grid: list[int], eval_slots: int, sandboxes: list[str],
         oe_evals: list[str], llm_cap: int) -> list[Row]:
    """Every row to measure, in run order: rows that are compared run next to each other, so that
    a change in the machine's load hits both sides of a comparison alike."""
    rows = []
    for lat in latencies:
        for c in grid:
            rows += [Row("openevolve", mode, c, c, lat) for mode in oe_evals]
            rows += [Row("ours", sb, c, c, lat, min(c, llm_cap)) for sb in sandboxes]
            rows += [Row("ours", sb, c, eval_slots, lat, min(c, llm_cap)) for sb in sandboxes if c > eval_slots]
    return rows


def display_order(rows: list[Row]) -> list[Row]:
    """Rows grouped for reading: by latency, then system/variant, then settings."""
    return sorted(rows, key=lambda r: (r.latency, r.system != "openevolve", r.label, r.llm, r.evals))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=int, default=32, help="candidates per row (a multiple of chains x k)")
    ap.add_argument("--latencies", default="0,1", help="stub LLM latencies in seconds")
    ap.add_argument("--concurrency", default="2,4,8,16", help="concurrency settings swept for both systems")
    ap.add_argument("--equal", type=int, default=2, help="the concurrency compared head to head")
    ap.add_argument("--eval-slots", type=int, default=os.cpu_count() or 1, help="ours' decoupled eval slots")
    ap.add_argument("--repeats", type=int, default=1, help="timed runs per row (the table shows medians)")
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--sandboxes", default="process,bwrap", help="our sandbox backends to measure")
    ap.add_argument("--oe-evals", default="in-process,subprocess", help="OpenEvolve evaluator modes")
    ap.add_argument("--eval-cpu-ms", type=float, default=0.0,
                    help="CPU ms each candidate's construct() burns (0: the trivial problem as is)")
    ap.add_argument("--serve-stub", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--oe-driver", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_stub is not None:
        return serve_stub(args.serve_stub, args.eval_cpu_ms)
    if args.oe_driver:
        return openevolve_driver(args.oe_driver)

    sys.path.insert(0, str(REPO))
    os.environ.update(clean_env({"PREFECT_LOGGING_LEVEL": "WARNING", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                                 "DO_NOT_TRACK": "1", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}))
    for key in [k for k in os.environ if k.upper().startswith(("OPENAI_", "ANTHROPIC_", "AZURE_", "GEMINI_"))]:
        if key != "OPENAI_API_KEY":
            del os.environ[key]
    latencies, grid = parse_floats(args.latencies), sorted(set(parse_ints(args.concurrency) + [args.equal]))
    sandboxes = [s for s in args.sandboxes.split(",") if s]
    oe_evals = [s for s in args.oe_evals.split(",") if s]
    unknown = [s for s in sandboxes if s not in ("process", "bwrap", "docker")] + \
        [m for m in oe_evals if m not in ("in-process", "subprocess")]
    if unknown:
        raise SystemExit(f"unknown --sandboxes/--oe-evals value(s) {unknown}: sandboxes are process, bwrap, "
                         "docker; OpenEvolve evaluations are in-process, subprocess")
    if args.budget % (args.chains * args.k):
        raise SystemExit(f"--budget {args.budget} must be a multiple of chains x k = {args.chains * args.k}")

    from peer_venv import ensure_peer_venv  # bench/ is this script's sys.path[0]

    python = ensure_peer_venv()
    work = Path(tempfile.mkdtemp(prefix="bench-vs-openevolve-"))
    os.environ["DISCOVERY_DB_URL"] = f"sqlite:///{work / 'ours.db'}"
    started = time.perf_counter()
    warm = warm_up_ours(sandboxes)

    rows = plan(latencies, grid, args.eval_slots, sandboxes, oe_evals, args.chains * args.k)
    for i, row in enumerate(rows, 1):
        t = time.perf_counter()
        try:
            for _ in range(args.repeats):
                row.runs.append(run_openevolve(python, row, args.budget, work, args.eval_cpu_ms)
                                if row.system == "openevolve"
                                else run_ours(row, args.budget, args.chains, args.k, args.eval_cpu_ms))
        except Exception as exc:  # a failed row is reported, the others still run
            row.error = f"{type(exc).__name__}: {str(exc)[:160]}"
        print(f"[{i}/{len(rows)}] {row.label} {row.settings} latency {row.latency:g}: "
              f"{row.error or f'{row.rate:.2f} cand/s'} ({time.perf_counter() - t:.1f} s)", file=sys.stderr, flush=True)

    version = subprocess.run([str(python), "-c", "import openevolve; print(openevolve.__version__)"],
                             capture_output=True, text=True).stdout.strip()
    top = max(grid)
    print(f"openevolve {version} (peer venv {python.parent.parent.relative_to(REPO)}); ours: run_campaign, "
          f"SimpleTES C={args.chains} K={args.k}; budget {args.budget} candidates per row; {args.repeats} timed "
          f"run(s) per row (medians); cores {os.cpu_count()}; "
          f"load average {os.getloadavg()[0]:.2f}")
    print("stub: tests/stub_llm.py in its own process on 127.0.0.1, fixed latency per row, a distinct full "
          "program per call" + (f"; each candidate burns {args.eval_cpu_ms:g} ms of CPU in construct()"
                                if args.eval_cpu_ms > 0 else "; candidates do no work beyond returning 3 numbers"))
    print(f"our warm-up (ephemeral Prefect API start, one 1-candidate campaign per backend): {warm:.2f} s, "
          "not counted; OpenEvolve: one untimed 1-iteration run per driver process")
    print("settings: openevolve workers=W -> evaluator.parallel_evaluations=W processes, each one LLM call then "
          "one evaluation (W calls and W evaluations in flight at most); ours llm=L eval=E -> llm_concurrency=L, "
          f"eval_slots=E (LLM calls in flight are also capped by C x K = {args.chains * args.k})")
    print("cands: proposal calls the stub served; evald: evaluations each system reports, seed program "
          "included; ok: of those, valid scores. Ours' 1-token preflight probe (run_campaign checks the "
          "endpoint first) is not a candidate, but its latency is in wall s")
    print("ovh ms/cand = (wall - cands x latency / min(LLM cap, cands)) / cands: wall time per candidate beyond "
          "what the stub's latency alone forces at that many calls in flight (at latency 0: wall / cands)")
    print("peak LLM: most chat calls in flight at once, as the stub saw them; 1st call s: from the run's start "
          "to the stub receiving the first proposal call (set-up: ours creates the campaign, probes the "
          "endpoint, evaluates the seed, starts the flow; openevolve builds its controller, evaluates the seed, "
          "starts its process pool); cand/s after: cands / (wall s - 1st call s)")
    print()
    print("\n".join(format_table(display_order(rows))))
    print()
    ours = [f"ours/{s}" for s in sandboxes]
    theirs = [f"openevolve/{m}" for m in oe_evals]
    print("comparisons, this run: a vs b, value a / value b = ratio (cand/s ratio > 1: a is faster; "
          "overhead ratio > 1: a costs more per candidate)")
    print("\n".join(format_ratios(rows, latencies, args.equal, args.eval_slots, ours, theirs, top)))
    print(f"\ntotal bench time {time.perf_counter() - started:.0f} s")
    from db.engine import dispose_engines

    dispose_engines()
    if any(r.error for r in rows):
        print(f"work files kept for the failed rows: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
