"""Red team: every attack of tests/reliability/attacks.py against every sandbox backend (process,
bwrap, docker) and the shipped problems it applies to, through the real evaluation path
(problems.evaluate.evaluate), and a handful of them through a real campaign.

For each case: the evaluation's status is one the attack allows; an "ok" score is what the
trusted scorer computes honestly (never the claimed one); no breach is reported by the attack;
nothing is left running (no process carrying this test's sandbox token or the attack's marker;
on docker, no container beyond the sandbox's own and the warm container clean); the host is
unchanged (a world-writable canary file and its directory, a SQLite database file, the checkout,
a watched host process of the sandbox's own uid, host sockets that must receive nothing).

lasso_path runs with a one-shape suite and one timed round, qubit_routing with two of its cases
(the evaluators are unchanged; only the amount of work is).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import socket
import sqlite3
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest

from problems import get_problem
from problems.evaluate import candidate_request, evaluate
from sandbox import BwrapSandbox, ProcessSandbox
from sandbox.bwrap import find_bwrap
from tests.reliability.attacks import ALL, CATALOGUE, CLAIMED, ESCAPE, EXHAUSTION, SMALL, Attack
from tests.sandbox.conftest import leftovers, require_docker

REPO = Path(__file__).resolve().parents[2]
SECRET = "sk-redteam-" + uuid.uuid4().hex
BACKENDS = [
    pytest.param("process", id="process"),
    pytest.param("bwrap", id="bwrap", marks=pytest.mark.skipif(
        find_bwrap() is None, reason="bwrap (bubblewrap) is not installed")),
    pytest.param("docker", id="docker"),
]
BACKEND_NAMES = tuple(p.values[0] for p in BACKENDS)
_MARKS = {p.values[0]: p.marks for p in BACKENDS}


def _cases() -> list:
    """(attack, problem, backend) cases.

    Every attack runs on every backend for each problem it names. An escape or exhaustion attack
    does not depend on the problem's answer, so it names only erdos_min_overlap, where it runs on
    every backend; it also runs once on each other shipped problem, on a backend that rotates
    with the attack (attack i, j-th other problem: backend (i + j) mod 3). So every attack meets
    every problem and every backend, and every (problem, backend) pair meets many attacks: each
    problem's own limits, image, entry point and candidate environment are attacked on each
    backend without running the full attack x problem x backend product."""
    out = []
    for i, attack in enumerate(CATALOGUE):
        runs = [(name, b) for name in attack.problems for b in BACKEND_NAMES]
        if attack.category in (ESCAPE, EXHAUSTION):
            others = [name for name in ALL if name not in attack.problems]
            runs += [(name, BACKEND_NAMES[(i + j) % len(BACKEND_NAMES)]) for j, name in enumerate(others)]
        out += [pytest.param(attack, name, b, id=f"{attack.name}-{name}-{b}", marks=_MARKS[b]) for name, b in runs]
    return out


CASES = _cases()


# ---------------------------------------------------------------- problems, shrunk in work only

def _lasso_small(problem):
    from problems.lasso_path.evaluator import LassoEvaluator, Settings
    from problems.lasso_path.instances import Shape

    # big enough that the seed's time is well above the 5 ms floor the timing check looks at
    search = (Shape("rt_wide", "gaussian", 60, 200, k=5),)
    holdout = (Shape("rt_hold", "gaussian", 200, 40, k=5),)
    return dataclasses.replace(problem, evaluator=LassoEvaluator(
        search, holdout, Settings(min_rounds=1, max_rounds=1, celer=False)))


@pytest.fixture(scope="module", autouse=True)
def _small_qubit_suite():
    """qubit_routing evaluates two of its cases (a QFT on heavy-hex, GHZ on a line)."""
    from problems.qubit_routing import evaluator as qr
    from problems.qubit_routing.suite import suite

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(qr, "suite", lambda split: tuple(suite(split)[i] for i in (0, 8)))
        yield


_problems: dict = {}


def problem_for(name: str):
    if name not in _problems:
        problem = get_problem(name)
        _problems[name] = _lasso_small(problem) if name == "lasso_path" else problem
    return _problems[name]


_seed_scores: dict = {}


def seed_score(name: str) -> float:
    """The seed program's score (deterministic for every problem but lasso_path)."""
    if name not in _seed_scores:
        ev = evaluate(problem_for(name), problem_for(name).seed_program, ProcessSandbox())
        assert ev.status == "ok", ev.feedback
        _seed_scores[name] = ev.score
    return _seed_scores[name]


def limited(problem, attack: Attack):
    """The problem under the attack's limits. lasso_path runs candidates under its evaluator's
    own run limits (one process: no threads, no fork, so no CPU time escapes the timing), so the
    attack's limits go there, keeping that one-process rule."""
    if not attack.limits:
        return problem
    if problem.name == "lasso_path":
        settings = problem.evaluator.settings
        small = {k: v for k, v in attack.limits.items() if k != "max_processes"}
        # time for the honest solve besides the attack (the seed needs about 1 s of CPU here)
        small["cpu_seconds"] = max(small.get("cpu_seconds", 0), 8.0)
        small["wall_seconds"] = max(small.get("wall_seconds", 0), 10.0)
        settings = dataclasses.replace(settings, run_limits=dataclasses.replace(settings.run_limits, **small))
        evaluator = type(problem.evaluator)(problem.evaluator.suites["search"], problem.evaluator.suites["holdout"],
                                            settings)
        return dataclasses.replace(problem, evaluator=evaluator)
    return dataclasses.replace(problem, limits=dataclasses.replace(problem.limits, **attack.limits))


# ---------------------------------------------------------------- sandboxes

@pytest.fixture(scope="module")
def sandboxes():
    made: dict = {}
    yield made
    if "docker" in made:
        made["docker"].close()


@pytest.fixture
def backend(request, sandboxes):
    name = request.param
    if name not in sandboxes:
        if name == "docker":
            require_docker()
            from sandbox import DockerSandbox

            sandboxes[name] = DockerSandbox(max_idle=6)  # no fixed image: each problem's own
        else:
            sandboxes[name] = ProcessSandbox() if name == "process" else BwrapSandbox()
    return sandboxes[name]


# ---------------------------------------------------------------- the host that must not change

class Host:
    """Things outside the sandbox an attack might reach, and checks that it did not."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="redteam-host-"))
        self.dir.chmod(0o777)
        self.canary = self.dir / "canary.txt"
        self.canary_text = "canary-" + uuid.uuid4().hex
        self.canary.write_text(self.canary_text)
        self.canary.chmod(0o666)
        self.db = self.dir / "discovery.db"
        with sqlite3.connect(self.db) as con:
            con.execute("create table secrets (value text)")
            con.execute("insert into secrets values (?)", (SECRET,))
        self.db.chmod(0o666)
        self.tcp = socket.create_server(("0.0.0.0", 0))
        self.tcp.setblocking(False)
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("0.0.0.0", 0))
        self.udp.setblocking(False)
        self.abstract_name = "redteam-" + uuid.uuid4().hex
        self.abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.abstract.bind("\0" + self.abstract_name)
        self.abstract.listen(5)
        self.abstract.setblocking(False)
        # a host process of the sandbox's uid (65534) that kill(-1, SIGKILL) must not reach
        self.watched = subprocess.Popen(
            ["/bin/sleep", "3600"],
            user=65534 if os.geteuid() == 0 else None, env={})
        self.snapshot = self._state()

    def _state(self):
        return {
            "dir": sorted(p.name for p in self.dir.iterdir()),
            "canary": self.canary.read_bytes() if self.canary.exists() else None,
            "db": hashlib.sha256(self.db.read_bytes()).hexdigest(),
            "repo": sorted(p.name for p in REPO.iterdir()),
        }

    def ctx(self, marker: str, victim_secret: str = "") -> dict:
        return {"port": self.tcp.getsockname()[1], "udp_port": self.udp.getsockname()[1],
                "canary": str(self.canary), "canary_text": self.canary_text,
                "canary_dir": str(self.dir), "db": str(self.db), "repo": str(REPO),
                "secret": SECRET, "host_pid": os.getpid(), "marker": marker,
                "victim_secret": (victim_secret or "victim-" + uuid.uuid4().hex)[::-1],
                "claimed": CLAIMED, "abstract": self.abstract_name, "root_listing": sorted(os.listdir("/root"))}

    def assert_unchanged(self, marker: str = ""):
        assert self._state() == self.snapshot, "the host changed"
        if marker:
            planted = marker_files(marker)
            assert planted == [], f"the attack left files on the host: {planted}"
        with pytest.raises(BlockingIOError):
            conn, _ = self.tcp.accept()
            conn.close()
        with pytest.raises(BlockingIOError):
            self.udp.recv(64)
        with pytest.raises(BlockingIOError):
            conn, _ = self.abstract.accept()
            conn.close()
        assert self.watched.poll() is None, "a host process of the sandbox's uid was killed"

    def close(self):
        self.watched.kill()
        self.watched.wait()
        self.tcp.close()
        self.udp.close()
        self.abstract.close()
        for p in self.dir.iterdir():
            p.unlink()
        self.dir.rmdir()


# world-writable host directories outside the ones the sandboxes hide
WORLD_WRITABLE = ("/run/lock", "/var/lock", "/var/tmp", "/dev/shm", "/tmp")


def marker_files(marker: str) -> list[str]:
    found = []
    for d in WORLD_WRITABLE:
        try:
            found += [os.path.realpath(os.path.join(d, n)) for n in os.listdir(d) if marker in n]
        except OSError:
            pass
    return sorted(set(found))


@pytest.fixture
def marker():
    """A unique marker for one case; host files an attack planted under it are removed after."""
    value = "redteam-" + uuid.uuid4().hex
    yield value
    for path in marker_files(value):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


OUTCOMES: list[dict] = []  # (attack, backend, problem, statuses): dumped to $REDTEAM_OUTCOMES


@pytest.fixture(scope="module", autouse=True)
def _dump_outcomes():
    yield
    target = os.environ.get("REDTEAM_OUTCOMES")
    if target:
        import json

        Path(target).write_text(json.dumps(OUTCOMES, indent=1))


@pytest.fixture(scope="module")
def host():
    h = Host()
    yield h
    h.close()


# ---------------------------------------------------------------- checks after every case

PROBE = (
    "import os\n"
    "def probe():\n"
    "    procs = []\n"
    "    for p in os.listdir('/proc'):\n"
    "        if p.isdigit() and int(p) != os.getpid():\n"
    "            try:\n"
    "                procs.append(open(f'/proc/{p}/cmdline', 'rb').read().decode(errors='replace'))\n"
    "            except OSError:\n"
    "                pass\n"
    "    return {'work': sorted(os.listdir('/work')), 'procs': procs}\n"
)


def assert_nothing_left(sb, problem, marker: str):
    assert leftovers(marker) == [], f"processes left running (marker {marker})"
    assert leftovers() == [], "processes carrying this test's sandbox token left running"
    if sb.name != "docker":
        return
    # the warm container that served the attack is clean for the next evaluation
    request = candidate_request(problem, PROBE, entrypoint="probe", kwargs={})
    for _ in range(2):  # a run right after a hostile one may land in any idle container
        r = sb.run(request)
        assert r.status == "ok", r
        assert r.output["work"] == ["args.json", "candidate.py", "runner.py"], r.output
        others = [c for c in r.output["procs"] if "discovery-sandbox-supervisor" not in c]
        assert others == [], f"processes left in the warm container: {others}"
    # no container of ours beyond those the sandbox knows about
    from sandbox.docker import LABEL

    engine = sb._docker()
    owner = f"{socket.gethostname()}:{os.getpid()}"
    ours = {c.id for c in engine.containers.list(all=True, filters={"label": f"{LABEL}.owner={owner}"})}
    assert ours <= set(sb.live_containers()), (ours, sb.live_containers())
    assert len(sb.live_containers()) <= sb.max_idle + 1


def assert_honest(ev, attack: Attack, problem, sb, program: str):
    """An ok evaluation's score is the trusted one, never a claimed one."""
    assert ev.score is not None and math.isfinite(ev.score)
    assert ev.score != CLAIMED and abs(ev.score) < 1e6
    honest = attack.honest
    if honest == "seed" and problem.name == "lasso_path":
        honest = "timing"  # lasso_path's score is measured time: check that it was really measured
    if honest == "seed":
        assert ev.score == seed_score(problem.name), (ev.score, seed_score(problem.name))
    elif honest == "rescore":
        run = sb.run(candidate_request(problem, program))
        assert run.status == "ok", run
        expected = problem.score(run.output)
        assert expected.status == "ok" and ev.score == expected.score, (ev.score, expected)
    elif honest == "timing":
        from problems.lasso_path.evaluator import Settings

        floor = Settings().min_time_s
        times = {k: v for k, v in ev.metrics.items() if k.endswith(".time_s")}
        assert times and all(v > floor for v in times.values()), times
        assert "CACHE-HIT" not in ev.feedback
    else:
        pytest.fail(f"{attack.name}: status ok is not acceptable here")


def _evaluate_with_victim(problem, program, sb, host, marker):
    """Runs a victim candidate carrying a secret while the attacker evaluates."""
    victim_secret = "victim-" + uuid.uuid4().hex
    entry = problem.entrypoint
    victim = (problem.seed_program.replace(f"def {entry}(", "def _victim_honest(", 1)
              + f"\nVICTIM_SECRET = {victim_secret!r}\n"
              f"def {entry}(*args, **kwargs):\n    import time\n    time.sleep(3)\n"
              f"    return [0.0]\n")  # run directly (no instance arguments): it only has to be running
    results = []
    t = threading.Thread(target=lambda: results.append(sb.run(candidate_request(problem, victim))))
    t.start()
    time.sleep(0.8)
    return victim_secret, t, results


# Holes found: (attack, backend, problem) -> what happened. Marked xfail(strict=True), so the
# suite stays green while a hole is open and fails as soon as it is closed. Empty: the two found
# so far (the process backend left /run/lock visible; lasso_path's baseline could not run on
# docker) are fixed and covered by tests/sandbox/test_sandbox.py and tests/problems/test_lasso_path.py.
HOLES: dict[tuple[str, str, str], str] = {}


@pytest.mark.parametrize("attack,problem_name,backend", CASES, indirect=["backend"])
def test_attack(attack: Attack, problem_name: str, backend, host, monkeypatch, request, marker):
    hole = HOLES.get((attack.name, backend.name, problem_name))
    if hole:
        request.node.add_marker(pytest.mark.xfail(strict=True, reason=hole))
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    problem = limited(problem_for(problem_name), attack)
    victim = None
    record = {"attack": attack.name, "backend": backend.name, "problem": problem_name,
              "statuses": [], "breach": ""}
    OUTCOMES.append(record)
    for attempt in range(attack.repeat):
        if attack.name == "read_other_candidates":
            victim_secret, thread, victim_runs = _evaluate_with_victim(problem, None, backend, host, marker)
            ctx = host.ctx(marker, victim_secret)
            victim = (thread, victim_runs)
        else:
            ctx = host.ctx(marker)
        program = attack.program(problem, ctx)
        start = time.monotonic()
        ev = evaluate(problem, program, backend)
        elapsed = time.monotonic() - start
        if victim:
            victim[0].join(30)
            assert victim[1] and victim[1][0].status == "ok", victim[1]
        record["statuses"].append(ev.status)
        if "BREACH" in ev.stdout:
            record["breach"] = ev.stdout[ev.stdout.index("BREACH"):][:300]
        detail = (attack.name, backend.name, problem_name, ev.status, ev.score, ev.feedback[:600],
                  ev.stdout[-300:])
        assert "BREACH" not in ev.stdout, detail
        expect = set(attack.expect)
        if problem_name == "lasso_path" and attack.category == EXHAUSTION:
            expect.add("error")  # lasso_path allows one process: an attack that forks fails (EAGAIN)
        assert ev.status in expect, detail
        assert ev.score != CLAIMED
        if ev.status == "ok":
            assert_honest(ev, attack, problem, backend, program)
        else:
            assert ev.score is None and ev.feedback, detail
        for text in (ev.stdout, ev.stderr, ev.feedback):
            assert SECRET not in text and host.canary_text not in text
        if attack.limits:
            # exhaustion is contained within its limits (plus start-up and clean-up slack)
            assert elapsed < attack.limits["wall_seconds"] + 20, elapsed
            assert len(ev.stdout) <= attack.limits["max_output_bytes"]
            assert len(ev.stderr) <= attack.limits["max_output_bytes"]
    assert_nothing_left(backend, problem, marker)
    host.assert_unchanged(marker)


# ---------------------------------------------------------------- through a real campaign

CAMPAIGN_ATTACKS = ("fs_write_outside", "proc_environ", "cpu_burn", "memory_bomb", "fork_bomb",
                    "orphans_and_zombies", "claimed_score", "nan_answer", "forged_result_file",
                    "erdos_within_tolerance", "segfault")


@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize("backend_name", [p.values[0] for p in BACKENDS], ids=[p.id for p in BACKENDS])
def test_attacks_through_a_campaign(backend_name, host, tmp_path, monkeypatch, marker):
    """The attacks go through run_campaign (stub LLM proposer, real sandbox, SQLite): the
    campaign completes its budget and each attack's evaluation is stored with the right status."""
    from db import repository as repo
    from db.engine import get_engine
    from flows.api import run_campaign
    from tests.reliability.attacks import BY_NAME
    from tests.stub_llm import StubLLMServer, cycling

    if backend_name == "docker":
        require_docker()
    if backend_name == "bwrap" and find_bwrap() is None:
        pytest.skip("bwrap is not installed")
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    module = tmp_path / "redteam_erdos.py"
    module.write_text(
        "import dataclasses\n"
        "from problems import get_problem\n"
        "from sandbox.base import Limits\n"
        "base = get_problem('erdos_min_overlap')\n"
        f"PROBLEM = dataclasses.replace(base, name='redteam_erdos', limits=Limits(**{SMALL!r}))\n")
    erdos = get_problem("erdos_min_overlap")
    programs = [f"```python\n# attack: {name}\n{BY_NAME[name].program(erdos, host.ctx(marker))}```"
                for name in CAMPAIGN_ATTACKS]
    with StubLLMServer(cycling(programs)) as stub:
        summary = run_campaign(str(module), model="openai/stub-model", api_base=stub.url, chains=1,
                               k=len(programs), budget=len(programs), seed=0,
                               llm_concurrency=len(programs), eval_slots=2, sandbox=backend_name)
    cid = summary.campaign.id
    assert summary.campaign.status == "completed", summary.campaign.error
    engine = get_engine()
    steps = repo.steps_of(engine, cid)
    by_step = {c.step_id: e for c, e in repo.candidates_of(engine, cid)}
    assert len(steps) == len(programs)
    got = {}
    for s in steps:
        assert s.status == "ok", (s.status, s.error)
        name = s.response.split("# attack: ", 1)[1].split("\n", 1)[0]
        got[name] = by_step[s.id]
    assert set(got) == set(CAMPAIGN_ATTACKS)
    for name, ev in got.items():
        attack = BY_NAME[name]
        expect = set(attack.expect)
        if (name, backend_name, "erdos_min_overlap") in HOLES:
            expect.add("invalid")  # the breach is returned instead of the answer: see HOLES
        assert ev is not None and ev.status in expect, (name, ev and ev.status, ev and ev.feedback)
        assert ev.backend == backend_name, (name, ev.backend)
        assert ev.score != CLAIMED
        if ev.status == "ok" and attack.honest == "seed":
            assert ev.score == seed_score("erdos_min_overlap"), (name, ev.score)
        for text in (ev.stdout, ev.stderr, ev.feedback):
            assert SECRET not in text
    assert leftovers(marker) == []
    host.assert_unchanged(marker)
