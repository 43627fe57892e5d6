"""Search efficiency side by side: best score against evaluations, every strategy versus OpenEvolve.

Part 1, ours: for each problem (default erdos_min_overlap and circle_packing) one
`flows.compare.compare_strategies` call (the Python call behind `discovery compare`) with all five
strategies (simpletes, exit, r3l, best_of_n, greedy_refine), seeds 0..S-1, the offline proposer
(no model: it mutates numbers in the parent's evolve block) and one budget, into a fresh SQLite
database. Printed: compare's own table (flows.cli's printer, exactly what `discovery compare`
prints), a curve table (median best-so-far at 25/50/75/100 % of the budget) and the PNG paths.

Part 2, OpenEvolve 0.4.0 (peer venv .bench-venvs/openevolve, bench/peer_venv.py) on the same
problem, seed program, budget (iterations = our budget) and proposer: OpenEvolve's LLM is a local
stub server (tests/stub_llm.py, in this process, 127.0.0.1) whose responder reads the parent
program from OpenEvolve's prompt (the "# Current Program" fence of its full-rewrite template) and
the other programs it shows (top/diverse programs and inspirations: our proposer recombines
literals with such programs), applies OUR offline proposer's mutation
(`discovery.proposers.offline.OfflineProposer.respond` + `discovery.edits.apply_response`, with
rng seed `seed_for("openevolve", seed, call index)`), and answers the whole child in a ```python
fence (OpenEvolve runs with diff_based_evolution off). OpenEvolve's evaluator file runs the
candidate's entrypoint in a `python -I` subprocess of the peer venv (the problem's wall and CPU
limits, one BLAS thread), hands the output to OUR trusted scorer (`get_problem(name).score`,
imported from this repository) and appends every evaluation (status, score, program hash) to a
JSONL file in the run dir, in OpenEvolve's evaluation order. OpenEvolve maximises
combined_score: the score for maximise problems, minus the score for minimise problems, -1e9 when
invalid. One OpenEvolve worker (evaluator.parallel_evaluations = 1) per run, so every run's LLM
calls arrive in order and the stub's answers are a function of (seed, call index); random_seed =
the seed; everything else is OpenEvolve's default. Its curves go through the same code as ours
(discovery.comparison: best_curve, compare, plot), and a side-by-side PNG adds them to ours.
An audit line per OpenEvolve run checks that every parent the stub read from a prompt is a
program OpenEvolve evaluated (stub-calls.jsonl in the run dir: parent, programs shown, child, the
change). OpenEvolve is not bit-reproducible per seed even so (two runs of one seed part after a
few iterations: its program ids are uuid4s), whereas ours is (offline proposer, fixed seeds).

    .venv/bin/python bench/search_efficiency.py [--budget 192] [--seeds 3] [--seed-base 0]
        [--problems erdos_min_overlap,circle_packing] [--strategies simpletes,exit,r3l,best_of_n,greedy_refine]
        [--target-pct 1.0] [--parallel 2] [--skip-openevolve] [--out DIR]

Defaults: budget 192 (a multiple of 16 = lcm of chains x k = 16, k = 4, exit.group = 8; at least
r3l.turns = 3), seeds 3 (0, 1, 2), both problems, all five strategies, target 1 % better than the
seed, `parallel` = cores (campaigns at once in compare; OpenEvolve runs at once), out = a new temp
dir holding the SQLite database, the PNGs, OpenEvolve's run dirs and results.json. Runtime: the
trial runs used 0.19 CPU s per evaluation all in (ours and OpenEvolve, both problems; the closing
line prints this run's figure), and the defaults make 2 problems x 3 seeds x (5 + 1) x 192 = 6912
evaluations, about 1300 CPU s: some 11-13 min on 2 idle cores, nearer 20 min when something else
keeps them busy. A budget that does not suit every strategy is refused naming one that does.

What "evaluations" counts (the x axis):
  ours        candidates that received an evaluation, in step order (discovery.comparison): a cache
              hit on an identical program counts, a proposal that did not parse does not, and an
              R^3L reflection spends budget but is no evaluation (so r3l ends before x = budget;
              its curve is held at its last value). The seed program is x = 0 (not counted).
  openevolve  calls of the evaluator file in order, its evaluation of the initial program
              excluded (it is x = 0, as ours); one per iteration whose answer parsed into a new
              program (OpenEvolve does not cache identical programs).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import itertools
import json
import math
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STRATEGIES = ("simpletes", "exit", "r3l", "best_of_n", "greedy_refine")
PROBLEMS = ("erdos_min_overlap", "circle_packing")
FRACTIONS = (0.25, 0.5, 0.75, 1.0)
STUB_MODEL = "stub-model"
DUMMY_KEY = "sk-bench-dummy-not-a-real-key"
RESULT_MARK = "BENCH-RESULT "
OE_NAME = "openevolve"


# ------------------------------------------------------------------ OpenEvolve's side: files and driver

OE_EVALUATOR = '''"""OpenEvolve evaluator for bench/search_efficiency.py: {problem} scored by the platform's
trusted scorer (problems.{problem}); every evaluation is appended to {log}."""
import hashlib
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, {repo!r})
from problems import get_problem  # noqa: E402  (the platform's registry and trusted scorer)

PROBLEM = get_problem({problem!r})
LOG = {log!r}
SIGN = {sign!r}  # OpenEvolve maximises combined_score
WALL_S = PROBLEM.limits.wall_seconds
CPU_S = PROBLEM.limits.cpu_seconds
RUNNER = r"""
import importlib.util, json, sys
path, entry, kwargs, out = sys.argv[1:5]
spec = importlib.util.spec_from_file_location("candidate", path)
module = importlib.util.module_from_spec(spec)
sys.modules["candidate"] = module
spec.loader.exec_module(module)
value = getattr(module, entry)(**json.loads(kwargs))
np = sys.modules.get("numpy")
if np is not None and isinstance(value, np.ndarray):
    if value.dtype.kind not in "biufc":
        raise TypeError("returned ndarray has non-numeric dtype %s" % value.dtype)
    with open(out + ".npy", "wb") as f:
        np.save(f, value, allow_pickle=False)
else:
    def plain(o):
        if hasattr(o, "tolist"):
            return o.tolist()
        raise TypeError("Object of type %s is not JSON serializable" % type(o).__name__)
    with open(out + ".json", "w") as f:
        f.write(json.dumps(value, allow_nan=True, default=plain))
"""


def _limits():
    resource.setrlimit(resource.RLIMIT_CPU, (int(math.ceil(CPU_S)), int(math.ceil(CPU_S)) + 1))


def _run_and_score(program_path):
    """(status, score, note): the candidate's entrypoint in a subprocess, its output scored."""
    with tempfile.TemporaryDirectory(prefix="oe-cand-") as d:
        out = os.path.join(d, "result")
        env = {{"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "OMP_NUM_THREADS": "1",
               "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}}
        try:
            done = subprocess.run([sys.executable, "-I", "-B", "-c", RUNNER, program_path, PROBLEM.entrypoint,
                                   json.dumps(PROBLEM.entry_kwargs), out], capture_output=True, text=True,
                                  timeout=WALL_S, env=env, cwd=d, preexec_fn=_limits)
        except subprocess.TimeoutExpired:
            return "timeout", None, "wall limit %gs" % WALL_S
        if done.returncode != 0:
            return "error", None, (done.stderr.strip().splitlines() or ["exit %d" % done.returncode])[-1][:200]
        try:
            if os.path.exists(out + ".npy"):
                import numpy as np
                output = np.load(out + ".npy", allow_pickle=False)
            else:
                with open(out + ".json") as f:
                    output = json.load(f)
        except Exception as exc:
            return "error", None, "unreadable output: %s" % exc
    try:
        ev = PROBLEM.score(output)
    except Exception as exc:  # a broken scorer costs this evaluation (as in problems/evaluate.py)
        return "error", None, "evaluator error: %s: %s" % (type(exc).__name__, exc)
    return ev.status, (float(ev.score) if ev.score is not None else None), ev.feedback[:200]


def evaluate(program_path):
    start = time.time()
    with open(program_path) as f:
        code = f.read()
    status, score, note = _run_and_score(program_path)
    ok = status == "ok" and score is not None and math.isfinite(score)
    with open(LOG, "a") as f:  # one line per evaluation, in OpenEvolve's order
        f.write(json.dumps({{"t": start, "wall_s": time.time() - start, "sha": hashlib.sha256(code.encode()).hexdigest(),
                            "sha_stripped": hashlib.sha256(code.strip().encode()).hexdigest(),
                            "status": status, "score": score if ok else None, "note": note}}) + "\\n")
    return {{"combined_score": SIGN * score if ok else -1e9, "valid": 1.0 if ok else 0.0}}
'''


def openevolve_evaluator_source(problem: str, direction: str, log: str) -> str:
    return OE_EVALUATOR.format(repo=str(REPO), problem=problem, log=log,
                               sign=1.0 if direction == "maximize" else -1.0)


def openevolve_config(api_base: str, iterations: int, seed: int, eval_timeout: float) -> dict:
    """OpenEvolve settings (Config.from_dict): its defaults except full rewrites, one-stage
    evaluation, one worker, the stub, the seed, quiet logging, no checkpoint before the end."""
    return {
        "max_iterations": iterations,
        "random_seed": seed,
        "log_level": "WARNING",
        "checkpoint_interval": iterations + 1,
        "diff_based_evolution": False,  # the stub answers with a full program
        "llm": {"api_base": api_base, "api_key": DUMMY_KEY,
                "models": [{"name": STUB_MODEL, "weight": 1.0}]},
        "evaluator": {"parallel_evaluations": 1, "cascade_evaluation": False,
                      "timeout": int(math.ceil(eval_timeout))},
    }


def openevolve_driver(spec_path: str) -> None:
    """Driver mode, run by the peer venv's python: one OpenEvolve run; prints one JSON line."""
    import asyncio

    from openevolve.config import Config
    from openevolve.controller import OpenEvolve

    spec = json.loads(Path(spec_path).read_text())
    cfg = Config.from_dict(spec["config"])
    cfg.llm.update_model_params({"system_message": cfg.prompt.system_message})  # as load_config does
    start = time.perf_counter()
    controller = OpenEvolve(spec["initial_program"], spec["evaluator"], cfg, output_dir=spec["output_dir"])
    best = asyncio.run(controller.run(iterations=spec["iterations"]))
    print(RESULT_MARK + json.dumps({"wall": time.perf_counter() - start,
                                    "best_metrics": dict(best.metrics) if best else None}), flush=True)


# ------------------------------------------------------------------ the stub's responder (our proposer)

_CURRENT = re.compile(r"# Current Program\n```[\w+-]*\n(.*?)\n```[ \t]*\n", re.DOTALL)
_FENCE = re.compile(r"```[\w+-]*\n(.*?)```", re.DOTALL)


def parse_openevolve_prompt(user: str) -> tuple[str, list[str]]:
    """(parent program, other programs shown) from OpenEvolve's full-rewrite user message.

    The parent sits in the fence under "# Current Program" (prompts/defaults/full_rewrite_user.txt);
    the top, diverse and inspiration programs in fences of the "# Program Evolution History"
    section before it. Raises ValueError when there is no current program.
    """
    found = list(_CURRENT.finditer(user))
    if not found:
        raise ValueError("no '# Current Program' fence in the prompt")
    current = found[-1]
    parent = current.group(1)
    if not parent.endswith("\n"):
        parent += "\n"  # OpenEvolve strips the programs it parses; a final newline changes nothing
    history = user[: current.start()]
    others = [m.group(1) for m in _FENCE.finditer(history)]
    return parent, others


class MutationResponder:
    """The stub's responder: our offline proposer's mutation of the prompt's parent program."""

    def __init__(self, seed: int, audit: Path | None = None) -> None:
        from discovery.proposers.offline import OfflineProposer

        self.seed = seed
        self.audit = audit  # JSONL: one line per call (parent, programs shown, child, the change)
        self.proposer = OfflineProposer()
        self.counter = itertools.count()
        self.lock = threading.Lock()
        self.calls = 0
        self.failures: list[str] = []

    def __call__(self, body: dict) -> str:
        import random
        import tokenize

        from discovery.edits import ParseError, apply_response
        from discovery.strategy import Node, seed_for

        with self.lock:
            index = next(self.counter)
            self.calls += 1
        try:
            messages = body.get("messages") or []
            user = next(m.get("content") for m in reversed(messages) if m.get("role") == "user")
            if isinstance(user, list):  # content parts
                user = "".join(p.get("text", "") for p in user if isinstance(p, dict))
            parent, others = parse_openevolve_prompt(user)
            inspirations = [Node(ref=i, code=c if c.endswith("\n") else c + "\n", score=None, status="ok")
                            for i, c in enumerate(others)]
            rng = random.Random(seed_for(OE_NAME, self.seed, index))
            text = self.proposer.respond(parent, inspirations, rng)
            child = apply_response(parent, text)
        except (ParseError, tokenize.TokenError, SyntaxError, ValueError, StopIteration) as exc:
            with self.lock:
                self.failures.append(f"call {index}: {type(exc).__name__}: {exc}"[:200])
                self._audit({"call": index, "error": f"{type(exc).__name__}: {exc}"[:200]})
            return ""  # no code: OpenEvolve records "No valid code found", no evaluation (as ours)
        with self.lock:
            self._audit({"call": index, "parent_sha": _sha(parent.strip()), "shown": len(others),
                         "child_sha": _sha(child.strip()), "change": text.split("\n\n", 1)[0][:300]})
        return f"```python\n{child}```\n"

    def _audit(self, record: dict) -> None:
        if self.audit is not None:
            with open(self.audit, "a") as f:
                f.write(json.dumps(record) + "\n")


# ------------------------------------------------------------------ helpers


def _median(values: list):
    import statistics

    return statistics.median(values) if values else None


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def curve_at(curve: list, x: int):
    """A best-so-far curve's value after x evaluations, held at its last value after its end."""
    return curve[min(x, len(curve) - 1)] if curve else None


def fmt(value, spec: str = ".6g") -> str:
    return "-" if value is None else format(value, spec)


def grid(budget: int) -> list[int]:
    return [int(round(f * budget)) for f in FRACTIONS]


def curve_rows(result, budget: int, names: list[str]) -> list[str]:
    """Lines of the curve table for `names` of a ComparisonResult: median best at each x."""
    xs = grid(budget)
    lines = []
    for name in names:
        band = result.bands.get(name)
        row = next((r for r in result.rows if r.strategy == name), None)
        if band is None or row is None:
            continue
        cells = " ".join(f"{fmt(curve_at(band.median, x), '.7g'):>11s}" for x in xs)
        spread = "-" if row.final_min is None else f"[{row.final_min:.7g}, {row.final_max:.7g}]"
        to_target = f"{fmt(row.evals_to_target_median, 'g')} ({row.reached}/{row.completed})"
        lines.append(f"  {name:14s} {cells} {spread:>25s} {fmt(row.evaluations_median, 'g'):>6s} {to_target:>12s}")
    return lines


def curve_header(budget: int) -> str:
    cells = " ".join(f"{'x=' + str(x) + f' ({int(f * 100)}%)':>11s}" for x, f in zip(grid(budget), FRACTIONS))
    return f"  {'system':14s} {cells} {'final [min, max]':>25s} {'evals':>6s} {'to target':>12s}"


def versions(peer_python: Path | None) -> str:
    import importlib.metadata as md

    def v(name):
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            return "?"

    parts = [f"python {platform.python_version()}", f"discovery-platform {v('discovery-platform')}",
             f"prefect {v('prefect')}", f"numpy {v('numpy')}"]
    if peer_python is not None:
        probe = ("import importlib.metadata as m, platform; "
                 "print(m.version('openevolve'), m.version('numpy'), platform.python_version())")
        out = subprocess.run([str(peer_python), "-c", probe], capture_output=True, text=True).stdout.split()
        if len(out) == 3:
            parts.append(f"openevolve {out[0]} (peer venv: numpy {out[1]}, python {out[2]})")
    return ", ".join(parts)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def compare_command(problem: str, names: list[str], args, db_url: str, plot: Path) -> str:
    return shlex.join(["discovery", "compare", problem, "--strategies", ",".join(names), "--budget", str(args.budget),
                       "--seeds", str(args.seeds), "--seed-base", str(args.seed_base), "--target-pct",
                       f"{args.target_pct:g}", "--model", "offline", "--db", db_url, "--plot", str(plot)]
                      + (["--parallel", str(args.parallel)] if args.parallel else []))


# ------------------------------------------------------------------ part 1: ours


def run_ours(problem: str, names: list[str], args, out: Path, db_url: str):
    from flows.compare import compare_strategies

    def progress(p) -> None:
        if p.state not in ("queued", "running"):
            best = "-" if p.best_score is None else f"{p.best_score:.7g}"
            print(f"  [ours {problem}] {p.strategy} seed {p.seed}: {p.state}, {p.done}/{p.total}, best {best}",
                  file=sys.stderr, flush=True)

    plot = out / f"ours-{problem}.png"
    start = time.perf_counter()
    report = compare_strategies(problem, strategies=names, seeds=args.seeds, budget=args.budget,
                                seed_base=args.seed_base, target_pct=args.target_pct, parallel=args.parallel,
                                plot_path=plot, db_url=db_url, progress=progress, model="offline",
                                name=f"search_efficiency {problem} budget {args.budget}")
    return report, time.perf_counter() - start, compare_command(problem, names, args, db_url, plot)


# ------------------------------------------------------------------ part 2: OpenEvolve


def run_openevolve_one(python: Path, problem: str, seed: int, args, out: Path) -> dict:
    """One OpenEvolve run against its own stub (in this process); returns its evaluations."""
    from problems import get_problem
    from tests.stub_llm import StubLLMServer
    from vs_openevolve import clean_env

    prob = get_problem(problem)
    d = out / f"openevolve-{problem}-seed{seed}"
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    (d / "initial_program.py").write_text(prob.seed_program)
    log = d / "evaluations.jsonl"
    (d / "evaluator.py").write_text(openevolve_evaluator_source(problem, prob.direction, str(log)))
    responder = MutationResponder(seed, audit=d / "stub-calls.jsonl")
    start = time.perf_counter()
    with StubLLMServer(responder, model=STUB_MODEL) as stub:
        spec = {"config": openevolve_config(stub.url, args.budget, seed, prob.limits.wall_seconds + 30),
                "iterations": args.budget, "initial_program": str(d / "initial_program.py"),
                "evaluator": str(d / "evaluator.py"), "output_dir": str(d / "openevolve_output")}
        (d / "spec.json").write_text(json.dumps(spec, indent=1))
        cmd = [str(python), str(Path(__file__).resolve()), "--oe-driver", str(d / "spec.json")]
        done = subprocess.run(cmd, capture_output=True, text=True, env=clean_env(), cwd=d,
                              timeout=max(900, 60 * args.budget))
        stub_calls = len(stub.chat_requests)
        stub_errors = [repr(e) for e in stub.errors]
    wall = time.perf_counter() - start
    (d / "driver.stdout").write_text(done.stdout)
    (d / "driver.stderr").write_text(done.stderr)
    found = [ln for ln in done.stdout.splitlines() if ln.startswith(RESULT_MARK)]
    if done.returncode or not found:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"OpenEvolve driver exit {done.returncode} (see {d}): {tail[:200]}")
    lines = [json.loads(ln) for ln in log.read_text().splitlines() if ln.strip()] if log.exists() else []
    seed_sha = hashlib.sha256(prob.seed_program.encode()).hexdigest()
    if not lines or lines[0]["sha"] != seed_sha:
        raise RuntimeError(f"OpenEvolve's first evaluation is not the seed program (see {log})")
    again = sum(1 for ln in lines[1:] if ln["sha"] == seed_sha)
    # Audit: every parent the stub read from a prompt should be a program OpenEvolve evaluated.
    status_of = {ln["sha_stripped"]: ln["status"] for ln in lines}
    calls = [json.loads(ln) for ln in (d / "stub-calls.jsonl").read_text().splitlines() if ln.strip()] \
        if (d / "stub-calls.jsonl").exists() else []
    parents = [status_of.get(c["parent_sha"]) for c in calls if "parent_sha" in c]
    audit = {"parents": len(parents), "found": sum(p is not None for p in parents),
             "ok": sum(p == "ok" for p in parents), "shown_median": _median([c["shown"] for c in calls if "shown" in c])}
    return {"seed": seed, "dir": str(d), "wall_s": wall, "evaluations": lines, "stub_calls": stub_calls,
            "parent_audit": audit,
            "mutation_failures": responder.failures, "stub_errors": stub_errors, "seed_reevaluated": again,
            "command": shlex.join(cmd), "best_metrics": json.loads(found[-1][len(RESULT_MARK):])["best_metrics"]}


def openevolve_result(runs: list[dict], direction: str, target_pct: float, seeds: int):
    """OpenEvolve's runs through discovery.comparison, as one more 'strategy'."""
    from discovery import comparison as cmp

    data = []
    for r in runs:
        seed_line, rest = r["evaluations"][0], r["evaluations"][1:]
        data.append(cmp.RunData(
            strategy=OE_NAME, seed=r["seed"], seed_score=seed_line["score"],
            samples=[cmp.Sample(i, ln["status"], ln["score"]) for i, ln in enumerate(rest)],
            llm_calls=r["stub_calls"], wall_s=r["wall_s"]))
    return cmp.compare(data, strategies=[OE_NAME], direction=direction, target_pct=target_pct,
                       seeds_per_strategy=seeds)


def side_by_side(ours, theirs, direction: str):
    """One ComparisonResult holding our strategies and OpenEvolve, re-ranked (for one PNG)."""
    import dataclasses

    from discovery import comparison as cmp

    rows = sorted(list(ours.rows) + list(theirs.rows), key=lambda r: cmp.rank_key(r.final_median, direction))
    return dataclasses.replace(ours, rows=[dataclasses.replace(r, rank=i + 1) for i, r in enumerate(rows)],
                               bands={**ours.bands, **theirs.bands}, runs=list(ours.runs) + list(theirs.runs))


# ------------------------------------------------------------------ main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=int, default=192, help="proposals per run (ours) = iterations (OpenEvolve)")
    ap.add_argument("--seeds", type=int, default=3, help="runs per strategy and for OpenEvolve")
    ap.add_argument("--seed-base", type=int, default=0, help="first seed")
    ap.add_argument("--problems", default=",".join(PROBLEMS))
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    ap.add_argument("--target-pct", type=float, default=1.0, help="evaluations to reach seed score + this %%")
    ap.add_argument("--parallel", type=int, default=None, help="campaigns / OpenEvolve runs at once (default: cores)")
    ap.add_argument("--skip-openevolve", action="store_true", help="part 1 only")
    ap.add_argument("--out", type=Path, default=None, help="output dir (default: a new temp dir)")
    ap.add_argument("--oe-driver", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.oe_driver:
        return openevolve_driver(args.oe_driver)

    sys.path.insert(0, str(REPO))
    for key, value in {"PREFECT_LOGGING_LEVEL": "WARNING", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                       "DO_NOT_TRACK": "1", "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                       "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120"}.items():
        os.environ.setdefault(key, value)
    os.environ.pop("DISCOVERY_MODEL", None)  # the offline proposer, whatever the environment says
    out = (args.out or Path(tempfile.mkdtemp(prefix="bench-search-efficiency-"))).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if "PREFECT_API_URL" not in os.environ:
        os.environ.setdefault("PREFECT_HOME", str(out / "prefect-home"))  # a private ephemeral API
    db_url = f"sqlite:///{out / 'ours.db'}"
    problems = [p.strip() for p in args.problems.split(",") if p.strip()]
    names = [s.strip() for s in args.strategies.split(",") if s.strip()]

    python = None
    if not args.skip_openevolve:
        from peer_venv import ensure_peer_venv  # bench/ is this script's sys.path[0]

        python = ensure_peer_venv()
        has_numpy = subprocess.run([str(python), "-c", "import numpy"], capture_output=True).returncode == 0
        if not has_numpy:  # our scorers (and the seed programs) need numpy
            subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "numpy"],
                           check=True)

    started = time.perf_counter()
    command = shlex.join([sys.executable, *sys.argv])
    print(f"command: {command}")
    print(f"machine: {platform.node()}, {cpu_model()}, {os.cpu_count()} cores, {platform.platform()}")
    print(f"load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"versions: {versions(python)}")
    print(f"budget {args.budget} proposals per run (OpenEvolve: {args.budget} iterations); seeds "
          f"{args.seed_base}..{args.seed_base + args.seeds - 1}; problems {', '.join(problems)}; strategies "
          f"{', '.join(names)}; proposer: offline (ours) / the offline proposer's mutation behind a stub LLM "
          f"(OpenEvolve); target: seed score {args.target_pct:g}% better; out {out}")
    print()

    results: dict = {"command": command, "budget": args.budget, "seeds": args.seeds, "seed_base": args.seed_base,
                     "problems": {}}
    evaluated = 0  # candidates scored, both systems, seed programs not counted
    from discovery import comparison as cmp
    from flows.cli import _print_comparison
    from discovery.config import ConfigError
    from problems import get_problem

    for problem in problems:
        prob = get_problem(problem)
        direction = prob.direction
        print(f"=== {problem} ({direction}; {'lower' if direction == 'minimize' else 'higher'} is better) ===")
        try:
            report, ours_wall, ccmd = run_ours(problem, names, args, out, db_url)
        except ConfigError as exc:
            raise SystemExit(f"{problem}: {exc}") from None
        print(f"part 1, ours: {ccmd}")
        print(f"  (run in this process as flows.compare.compare_strategies(..., model='offline'); "
              f"{ours_wall:.0f} s wall, load average now {os.getloadavg()[0]:.2f})")
        _print_comparison(report)
        if report.result is not None:
            evaluated += sum(c.evaluations for c in report.result.runs)
        entry = {"direction": direction, "comparison_id": report.id, "ours_wall_s": ours_wall,
                 "compare_command": ccmd, "ours_plot": report.plot_path,
                 "ours": report.result.to_dict() if report.result else None}
        theirs = None
        if python is not None:
            print(f"part 2, OpenEvolve: {args.seeds} run(s), iterations {args.budget}, driver "
                  f"`{python} {Path(__file__).resolve()} --oe-driver RUN_DIR/spec.json` per run")
            start = time.perf_counter()
            seeds = list(range(args.seed_base, args.seed_base + args.seeds))
            workers = min(args.parallel or os.cpu_count() or 1, len(seeds))
            runs, errors = [], []
            with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
                futures = {pool.submit(run_openevolve_one, python, problem, s, args, out): s for s in seeds}
                for fut in concurrent.futures.as_completed(futures):
                    try:
                        r = fut.result()
                        runs.append(r)
                        print(f"  [openevolve {problem}] seed {r['seed']}: {len(r['evaluations']) - 1} evaluations, "
                              f"{r['stub_calls']} LLM calls, {r['wall_s']:.0f} s", file=sys.stderr, flush=True)
                    except Exception as exc:
                        errors.append(f"seed {futures[fut]}: {type(exc).__name__}: {exc}")
            oe_wall = time.perf_counter() - start
            runs.sort(key=lambda r: r["seed"])
            evaluated += sum(len(r["evaluations"]) - 1 for r in runs)
            for e in errors:
                print(f"  OpenEvolve run failed: {e}")
            entry["openevolve_wall_s"] = oe_wall
            entry["openevolve_errors"] = errors
            entry["openevolve_runs"] = [{k: v for k, v in r.items()} for r in runs]
            if runs:
                theirs = openevolve_result(runs, direction, args.target_pct, args.seeds)
                entry["openevolve"] = theirs.to_dict()
                for r in runs:
                    ev = r["evaluations"][1:]
                    print(f"  seed {r['seed']}: {len(ev)} evaluations ({sum(e['status'] == 'ok' for e in ev)} ok) of "
                          f"{r['stub_calls']} LLM calls; seed score {r['evaluations'][0]['score']!r}; offline "
                          f"mutation failures {len(r['mutation_failures'])}; seed program re-evaluated "
                          f"{r['seed_reevaluated']}x; {r['wall_s']:.0f} s; run dir {r['dir']}")
                    a = r["parent_audit"]
                    print(f"    parents read from the prompts: {a['found']}/{a['parents']} are programs OpenEvolve "
                          f"evaluated, {a['ok']} of them valid; median {fmt(a['shown_median'], 'g')} other programs "
                          f"shown per prompt (stub-calls.jsonl)")
                print(f"  ({oe_wall:.0f} s wall for the OpenEvolve runs, {workers} at once)")
        print()
        if report.result is not None:
            print(f"curve table, {problem}: median over seeds of the best score after x evaluations "
                  f"(x = 25/50/75/100% of budget {args.budget}; a run that ended earlier is held at its last value); "
                  f"final = the last value, [min, max] over seeds; evals = median evaluations; to target = "
                  f"median evaluations to seed {args.target_pct:g}% better (runs that reached it)")
            print(f"  seed score: ours {fmt(report.result.seed_score, '.10g')}"
                  + (f", openevolve {fmt(theirs.seed_score, '.10g')}" if theirs else ""))
            print(curve_header(args.budget))
            ranked = [r.strategy for r in report.rows]
            for line in curve_rows(report.result, args.budget, ranked):
                print(line)
            if theirs is not None:
                for line in curve_rows(theirs, args.budget, [OE_NAME]):
                    print(line)
            print(f"  (ours: comparison {report.id} in {db_url}: `discovery comparisons {report.id} --db {db_url}`; "
                  f"openevolve: evaluations.jsonl in the run dirs above)")
            best_row = next((r for r in report.rows if r.final_median is not None), None)
            oe_row = theirs.rows[0] if theirs is not None and theirs.rows else None
            if best_row is not None and oe_row is not None and oe_row.final_median is not None:
                seed_score = report.result.seed_score
                ratio = best_row.final_median / oe_row.final_median if oe_row.final_median else math.nan
                better = "< 1: ours lower (better)" if direction == "minimize" else "> 1: ours higher (better)"
                print(f"ratio, same run: ours' best strategy ({best_row.strategy}) final median "
                      f"{best_row.final_median:.10g} / openevolve final median {oe_row.final_median:.10g} = "
                      f"{ratio:.6f} ({better})")
                if seed_score is not None:
                    gain_ours = abs(best_row.final_median - seed_score)
                    gain_oe = abs(oe_row.final_median - seed_score)
                    gain = gain_ours / gain_oe if gain_oe else math.inf
                    print(f"  improvement over the seed score {seed_score:.10g}: ours {gain_ours:.6g} / openevolve "
                          f"{gain_oe:.6g} = {gain:.4g} (> 1: ours improved more)")
                    entry["ratio_final_median"] = ratio
                    entry["ratio_improvement"] = gain
                    entry["ours_best_strategy"] = best_row.strategy
                both = side_by_side(report.result, theirs, direction)
                path = out / f"side-by-side-{problem}.png"
                title = (f"{problem}: ours vs OpenEvolve 0.4.0, offline proposer, budget {args.budget}, "
                         f"{args.seeds} seed{'s' if args.seeds != 1 else ''}")
                entry["side_by_side_plot"] = str(cmp.plot(both, path, title=title))
        print(f"PNG: ours {report.plot_path or '(none)'}"
              + (f"; side by side {entry['side_by_side_plot']}" if "side_by_side_plot" in entry else ""))
        print()
        results["problems"][problem] = entry

    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    print("comparison ids: " + ", ".join(f"{p} {e['comparison_id']}" for p, e in results["problems"].items())
          + f" (database {db_url})")
    import resource

    cpu = sum(getattr(resource.getrusage(who), f) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
              for f in ("ru_utime", "ru_stime"))
    print(f"results: {out / 'results.json'}; total bench time {time.perf_counter() - started:.0f} s; "
          f"CPU {cpu:.0f} s (this process and the children it waited for; not the Prefect server) for {evaluated} "
          f"evaluations = "
          f"{cpu / max(evaluated, 1):.3f} CPU s each; "
          f"load average at end {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    from db.engine import dispose_engines

    dispose_engines()


if __name__ == "__main__":
    main()
