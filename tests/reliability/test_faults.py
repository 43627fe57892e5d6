"""Faults under a real campaign: model-server faults, SIGKILLs, a locked SQLite file, a
PostgreSQL restart. Every test checks the rows the database holds afterwards, not only the
status: exactly the budget, one row per proposer call, no duplicate, no gap, every candidate
evaluated once, and (where the proposer is deterministic) the same result as a campaign that
never saw the fault.

Each test has a pytest-timeout backstop: a run that hangs fails instead of blocking CI.
"""

from __future__ import annotations

import io
import itertools
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from db import repository as repo
from db.engine import get_engine
from flows.api import resume_campaign, run_campaign
from tests.stub_llm import StubLLMServer

REPO = Path(__file__).resolve().parents[2]
TOY = str(REPO / "tests" / "flows" / "toy_problem.py")


def _block(values) -> str:
    return f"```python\nVALUES = {values!r}\n\n\ndef construct():\n    return list(VALUES)\n```"


def _rows_ok(engine, cid, budget, k):
    """The database invariants after a campaign: exact budget, no duplicate, no gap, one
    candidate per parsed step, every candidate linked to exactly one stored evaluation."""
    steps = repo.steps_of(engine, cid)
    cands = repo.candidates_of(engine, cid)
    assert len(steps) == budget
    keys = [(s.trajectory_id, s.index, s.sample) for s in steps]
    assert len(set(keys)) == budget, "a duplicated (trajectory, index, sample)"
    by_traj: dict[int, set[int]] = {}
    moves: dict[tuple[int, int], list] = {}
    for s in steps:
        by_traj.setdefault(s.trajectory_id, set()).add(s.index)
        moves.setdefault((s.trajectory_id, s.index), []).append(s)
    for traj, indexes in by_traj.items():
        assert indexes == set(range(len(indexes))), f"gap in move indexes of trajectory {traj}: {sorted(indexes)}"
    for group in moves.values():
        assert sorted(s.sample for s in group) == list(range(k))
        assert all(s.committed is not None for s in group), "every finished move stores its commit"
    by_step = {c.step_id: (c, e) for c, e in cands if c.step_id is not None}
    assert len(by_step) == len([c for c, _ in cands if c.step_id is not None]), "two candidates on one step"
    for s in steps:
        if s.status == "ok":
            assert s.id in by_step, f"step {s.id} parsed but has no candidate"
        else:
            assert s.id not in by_step and s.error, f"failed step {s.id} must carry an error text"
    assert all(e is not None for _, e in cands), "a candidate without an evaluation"
    return steps, cands


def _fingerprint(engine, cid):
    """What the campaign found, independent of row ids and completion order."""
    steps = repo.steps_of(engine, cid)
    cands = repo.candidates_of(engine, cid)
    t0 = min(s.trajectory_id for s in steps)
    by_step = {c.step_id: (c, e) for c, e in cands if c.step_id is not None}
    rows = []
    for s in steps:
        c, e = by_step.get(s.id, (None, None))
        rows.append((s.trajectory_id - t0, s.index, s.sample, s.status, s.committed, s.response,
                     c.code if c else None, e.score if e else None))
    summary = repo.summarize(engine, cid)
    return sorted(rows, key=repr), summary.best_score, summary.best_code


# ------------------------------------------------------------------ 1. model-server faults

# Fault schedule by the order in which proposal requests arrive (llm_concurrency=1, so they
# arrive one at a time and the request after a failed one is its retry). With llm_retries=2 a
# call has 3 attempts.
SCHEDULE = [
    "429", "429", None,                            # call 1: two rate limits (Retry-After: 1), then ok
    "500", "503", None,                            # call 2: server errors, then ok
    "drop", "reset", None,                         # call 3: closed socket, TCP reset, then ok
    "hang", "trickle", "stall",                    # call 4: never-ending responses: gives up (llm_error)
    "invalid_json", "truncated_json", "empty",     # call 5: malformed bodies, then empty content (parse_error)
    "500", "500", "500",                           # call 6: gives up (llm_error)
    "empty",                                       # call 7: empty content at once (parse_error)
    "delay:0.3",                                   # call 8: slow but within the timeout: ok
]
LLM_TIMEOUT_S = 1.0
HANG_MAX_S = 40.0  # the stub itself ends a hanging response only after this long


@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.timeout(150)
def test_model_server_faults_cost_rows_not_the_campaign():
    counter = itertools.count()
    lock = threading.Lock()
    plan: dict[int, str | None] = {}

    def faults(index, body):
        if body.get("max_tokens") == 1:  # the preflight probe
            return None
        with lock:
            n = next(counter)
        plan[index] = SCHEDULE[n] if n < len(SCHEDULE) else None
        return plan[index]

    values = itertools.count()

    def responder(body):
        with lock:
            v = next(values)
        return _block([3.0 + 0.1 * v, 2.5])

    budget = 8
    started = time.monotonic()
    with StubLLMServer(responder, faults=faults, hang_max_s=HANG_MAX_S) as stub:
        summary = run_campaign(
            TOY, model="openai/stub-model", api_base=stub.url, chains=2, k=2, budget=budget, seed=0,
            llm_concurrency=1, llm_retries=2, llm_timeout_s=LLM_TIMEOUT_S, eval_slots=1,
        )
        requests = [r for r in stub.chat_requests if r.body.get("max_tokens") != 1]
    wall = time.monotonic() - started
    cid = summary.campaign.id
    assert summary.campaign.status == "completed", summary.campaign.error
    engine = get_engine()
    steps, _ = _rows_ok(engine, cid, budget, 2)

    # every HTTP attempt is counted on exactly one step
    assert len(requests) == len(SCHEDULE) == sum(s.attempts for s in steps)
    by_status: dict[str, list] = {}
    for s in steps:
        by_status.setdefault(s.status, []).append(s)
    llm_errors = by_status.get("llm_error", [])
    parse_errors = by_status.get("parse_error", [])
    assert len(llm_errors) == 2 and all(s.attempts == 3 and "gave up after 3 attempts" in s.error for s in llm_errors)
    assert any("timed out" in s.error for s in llm_errors), [s.error for s in llm_errors]
    assert len(parse_errors) == 2 and sorted(s.attempts for s in parse_errors) == [1, 3]
    assert all(s.error for s in parse_errors)
    ok = by_status.get("ok", [])
    assert sorted(s.attempts for s in ok) == [1, 3, 3, 3]

    # retries back off: the retry after a 429 waits at least its Retry-After (1 s)
    times = [r.received_at for r in requests]
    kinds = [r.fault.kind + (str(r.fault.status) if r.fault.kind == "status" else "") if r.fault else "ok"
             for r in requests]
    gaps = {i: times[i + 1] - times[i] for i in range(len(times) - 1)}
    for i, kind in enumerate(kinds):
        if kind == "status429":
            assert gaps[i] >= 1.0 - 0.01, f"retry {gaps[i]:.3f}s after a 429 with Retry-After: 1"
    # a never-ending response is cut at the attempt's hard cap, not when the server gives up
    trickle = kinds.index("trickle")
    hang = kinds.index("hang")
    stall = kinds.index("stall")
    assert gaps[trickle] >= LLM_TIMEOUT_S, gaps[trickle]
    for i in (hang, trickle, stall):
        assert gaps.get(i, 0.0) < HANG_MAX_S / 2, f"attempt {kinds[i]} was not cut at its timeout"
    print(f"\n[faults] wall {wall:.1f}s; kinds {kinds}; gaps "
          + ", ".join(f"{kinds[i]}->{g:.2f}s" for i, g in gaps.items())
          + f"; steps {[(s.status, s.attempts) for s in steps]}; errors {[s.error for s in llm_errors + parse_errors]}")


# ------------------------------------------------------------------ 2. SIGKILL, many times

KILLS = 8
KILL_BUDGET = 48
KILL_ARGS = ["--chains", "2", "--k", "2", "--budget", str(KILL_BUDGET), "--seed", "7", "--quiet"]


def _cli_env(db: Path, home: Path) -> dict[str, str]:
    import prefect.settings

    env = dict(os.environ)
    env.update(
        DISCOVERY_DB_URL=f"sqlite:///{db}",
        PREFECT_HOME=str(home),
        PREFECT_LOGGING_LEVEL="WARNING",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        # the session's Prefect API: a CLI process need not start its own (about 5 s each)
        PREFECT_API_URL=str(prefect.settings.PREFECT_API_URL.value()),
    )
    env.pop("DISCOVERY_MODEL", None)
    return env


# rows of any kind a campaign writes as it progresses
PROGRESS = ("SELECT (SELECT count(*) FROM step) + (SELECT count(*) FROM candidate) "
            "+ (SELECT count(*) FROM evaluation) + (SELECT count(*) FROM trajectory)")


def _count(db: Path, sql: str) -> int | None:
    if not db.exists():
        return None  # (sqlite3.connect would create it)
    try:
        con = sqlite3.connect(db, timeout=5)
        try:
            return con.execute(sql).fetchone()[0]
        finally:
            con.close()
    except sqlite3.OperationalError:
        return None  # not created yet, or mid-migration


@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.timeout(240)
def test_repeated_sigkill_and_resume_leaves_exactly_the_uninterrupted_campaign(tmp_path):
    db = tmp_path / "killed.db"
    env = _cli_env(db, tmp_path / "home")
    rng = random.Random(20261129)
    log = []
    kills = 0
    runs = 0
    while True:
        exists = (_count(db, "SELECT count(*) FROM campaign") or 0) > 0
        args = ["resume", "1", "--quiet"] if exists else ["run", TOY, *KILL_ARGS]
        before = _count(db, PROGRESS) or 0
        proc = subprocess.Popen([sys.executable, "-m", "flows.cli", *args], cwd=REPO, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        runs += 1
        if kills >= KILLS:
            out, err = proc.communicate(timeout=150)
            assert proc.returncode == 0, err.decode()[-3000:]
            break
        # kill at a random moment after this process has made some progress (at least one new
        # row of any kind), so every kill lands in the middle of real work
        delay = rng.uniform(0.0, 0.5)
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
            if (_count(db, PROGRESS) or 0) > before:
                break
        # progress seen (or the process ended): wait the random delay, then SIGKILL
        time.sleep(delay)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            kills += 1
            log.append((args[0], round(delay, 2), _count(db, "SELECT count(*) FROM step")))
        else:
            out, err = proc.communicate()
            assert proc.returncode == 0, err.decode()[-3000:]
            log.append((args[0], "finished", _count(db, "SELECT count(*) FROM step")))
            if _count(db, "SELECT count(*) FROM step") == KILL_BUDGET and \
                    _count(db, "SELECT count(*) FROM campaign WHERE status = 'completed'") == 1:
                break
    print(f"\n[sigkill] {kills} kills in {runs} processes: {log}")

    engine = get_engine(f"sqlite:///{db}")
    steps, cands = _rows_ok(engine, 1, KILL_BUDGET, 2)
    summary = repo.summarize(engine, 1)
    assert summary.campaign.status == "completed" and summary.unevaluated_candidates == 0
    con = sqlite3.connect(db)
    # an evaluation is stored once per program (cache key), and every link points at one
    assert con.execute("SELECT count(*) FROM evaluation GROUP BY campaign_id, cache_key HAVING count(*) > 1").fetchall() == []
    assert con.execute("SELECT count(*) FROM candidate c LEFT JOIN evaluation e ON e.id = c.evaluation_id "
                       "WHERE e.id IS NULL").fetchone()[0] == 0
    assert con.execute("SELECT count(*) FROM candidate WHERE role = 'seed'").fetchone()[0] == 1
    con.close()

    ref = run_campaign(TOY, chains=2, k=2, budget=KILL_BUDGET, seed=7)
    assert ref.campaign.status == "completed"
    assert _fingerprint(engine, 1) == _fingerprint(get_engine(), ref.campaign.id), \
        "a campaign killed 8 times and resumed is the campaign that was never killed"
    assert kills == KILLS


# ------------------------------------------------------------------ 3a. a locked SQLite file


def _sqlite_file() -> Path:
    return Path(os.environ["DISCOVERY_DB_URL"].removeprefix("sqlite:///"))


def _in_thread(fn, *args, **kwargs):
    """Runs fn in a thread; returns (thread, result dict with "value" or "error")."""
    out: dict = {}

    def run():
        try:
            out["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            out["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def _wait_for(pred, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _hold_exclusive(db: Path, seconds: float) -> tuple[int, int, float]:
    """Takes SQLite's exclusive lock (BEGIN EXCLUSIVE) for `seconds`; returns the step count when
    it was taken, when it was released, and the release time (monotonic)."""
    con = sqlite3.connect(db, timeout=30, isolation_level=None)
    try:
        con.execute("BEGIN EXCLUSIVE")
        at_lock = con.execute("SELECT count(*) FROM step").fetchone()[0]
        time.sleep(seconds)
        at_release = con.execute("SELECT count(*) FROM step").fetchone()[0]
        con.execute("COMMIT")
        return at_lock, at_release, time.monotonic()
    finally:
        con.close()


LOCK_BUDGET = 32
LOCK_SETTINGS = dict(chains=2, k=2, budget=LOCK_BUDGET, seed=3)


@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.timeout(150)
def test_sqlite_lock_shorter_than_the_busy_timeout_is_waited_out():
    db = _sqlite_file()
    t, out = _in_thread(run_campaign, TOY, **LOCK_SETTINGS)
    _wait_for(lambda: (_count(db, "SELECT count(*) FROM step") or 0) >= 2 or not t.is_alive(), 60, "2 steps")
    assert t.is_alive(), "the campaign finished before the lock could be taken"
    at_lock, at_release, released = _hold_exclusive(db, 4.0)
    t.join(120)
    assert not t.is_alive(), "the campaign hangs after the lock was released"
    finished = time.monotonic()
    assert "error" not in out, repr(out.get("error"))
    summary = out["value"]
    assert summary.campaign.status == "completed", summary.campaign.error
    assert at_release == at_lock < LOCK_BUDGET, "nothing is written while another process holds the lock"
    engine = get_engine()
    _rows_ok(engine, summary.campaign.id, LOCK_BUDGET, 2)
    ref = run_campaign(TOY, **LOCK_SETTINGS)
    assert _fingerprint(engine, summary.campaign.id) == _fingerprint(engine, ref.campaign.id)
    print(f"\n[sqlite-lock 4s] locked at {at_lock} steps, released at {at_release}, "
          f"campaign finished {finished - released:.1f}s after release with {LOCK_BUDGET} steps")


@pytest.fixture(scope="module")
def long_lock(prefect_harness, tmp_path_factory):
    """A campaign started through the CLI entry point (in this process, so the busy timeout can
    be cut to 0.3 s) while another connection holds BEGIN EXCLUSIVE for 10 s (longer than the
    busy timeout and than Prefect's propose retries, 1 + 5 s). Returns what happened."""
    import db.engine as db_engine
    from flows import cli

    db = tmp_path_factory.mktemp("long-lock") / "locked.db"
    url = f"sqlite:///{db}"
    argv = ["discovery", "run", TOY, "--chains", "2", "--k", "2", "--budget", str(LOCK_BUDGET), "--seed", "3",
            "--db", url, "--quiet"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(db_engine, "BUSY_TIMEOUT_MS", 300)  # read when the engine connects
        mp.setattr(sys, "argv", argv)
        stderr = io.StringIO()
        mp.setattr(sys, "stderr", stderr)  # the CLI's error line (typer echoes to sys.stderr)
        t, out = _in_thread(cli.main)
        _wait_for(lambda: (_count(db, "SELECT count(*) FROM step") or 0) >= 2 or not t.is_alive(), 60, "2 steps")
        assert t.is_alive(), "the campaign finished before the lock could be taken"
        at_lock, _, released = _hold_exclusive(db, 10.0)
        t.join(120)
        assert not t.is_alive()
        con = sqlite3.connect(db)
        status, error = con.execute("SELECT status, error FROM campaign WHERE id = 1").fetchone()
        con.close()
        steps = _count(db, "SELECT count(*) FROM step")
    db_engine.dispose_engines()  # the next engine for this URL gets the normal busy timeout
    return dict(db=db, url=url, at_lock=at_lock, out=out, status=status, error=error, steps=steps,
                stderr=stderr.getvalue())


@pytest.mark.timeout(150)
def test_sqlite_lock_longer_than_the_busy_timeout_fails_then_resume_completes(long_lock):
    err = long_lock["out"].get("error")
    print(f"\n[sqlite-lock 10s, busy 0.3s] locked at {long_lock['at_lock']} steps; outcome: "
          f"{type(err).__name__ + ': ' + str(err).splitlines()[0] if err else long_lock['out'].get('value')}; "
          f"status row {long_lock['status']!r}; steps {long_lock['steps']}")
    assert long_lock["steps"] < LOCK_BUDGET, "the lock outlasting the busy timeout must stop the campaign"
    resumed = resume_campaign(1, db_url=long_lock["url"])
    assert resumed.campaign.status == "completed"
    engine = get_engine(long_lock["url"])
    _rows_ok(engine, 1, LOCK_BUDGET, 2)
    ref = run_campaign(TOY, **LOCK_SETTINGS)
    assert _fingerprint(engine, 1) == _fingerprint(get_engine(), ref.campaign.id), "no silent loss"


@pytest.mark.timeout(150)
def test_sqlite_lock_longer_than_the_busy_timeout_reports_one_clear_line(long_lock):
    err = long_lock["out"].get("error")
    assert err is None, f"the CLI raised {type(err).__name__}: {err}"
    assert long_lock["out"]["value"] != 0, "the CLI must exit non-zero"
    assert "Traceback" not in long_lock["stderr"], long_lock["stderr"]
    lines = [line for line in long_lock["stderr"].splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and lines[0].startswith("error: the database became unavailable mid-campaign ("), lines
    assert "discovery resume 1" in lines[0], lines[0]
    assert long_lock["status"] == "failed" and "locked" in long_lock["error"], (long_lock["status"], long_lock["error"])


# ------------------------------------------------------------------ 3b. PostgreSQL restarted


def _restart_postgres(server, down_s: float) -> None:
    """Stops the session's server (fast: every connection is cut) and starts it again on the same
    data folder and port, exactly as tests/pg.py started it."""
    done = server._run("pg_ctl", "-D", str(server.data), "-m", "fast", "-w", "-t", "60", "stop")
    assert done.returncode == 0, done.stderr
    time.sleep(down_s)
    options = (f"-p {server.port} -h 127.0.0.1 -k {server.sockets} -c fsync=off -c synchronous_commit=off "
               f"-c full_page_writes=off -c max_connections=300")
    done = server._run("pg_ctl", "-D", str(server.data), "-l", str(server.log), "-o", options, "-w", "-t", "60",
                       "start")
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def pg_restart(prefect_harness, postgres_server):
    """A campaign on a fresh PostgreSQL database whose server is stopped (pg_ctl -m fast) once 4
    steps are stored, kept down 2 s, and started again on the same data folder and port.
    Returns what happened; the database is dropped when the module ends."""
    from sqlalchemy import text

    from db.engine import dispose_engines

    url = postgres_server.create_database("faults")
    engine = get_engine(url)
    ids: list[int] = []
    t, out = _in_thread(run_campaign, TOY, db_url=url, on_created=ids.append, **LOCK_SETTINGS)

    def steps() -> int:
        with engine.connect() as c:
            return c.execute(text("SELECT count(*) FROM step")).scalar()

    _wait_for(lambda: not t.is_alive() or (ids and steps() >= 4), 60, "4 steps")
    assert t.is_alive(), "the campaign finished before the restart"
    at_stop = steps()
    down = time.monotonic()
    _restart_postgres(postgres_server, 2.0)
    up = time.monotonic()
    t.join(150)
    assert not t.is_alive(), "the campaign hangs after the restart"
    row = repo.get_campaign(engine, ids[0])
    yield dict(url=url, engine=engine, cid=ids[0], out=out, at_stop=at_stop, down_s=up - down,
               status=row.status, error=row.error, steps=steps())
    dispose_engines()
    postgres_server.drop_database(url)


@pytest.mark.timeout(180)
def test_postgres_restart_mid_campaign_then_resume_has_exact_rows(pg_restart):
    err = pg_restart["out"].get("error")
    engine, cid, url = pg_restart["engine"], pg_restart["cid"], pg_restart["url"]
    print(f"\n[pg-restart] stopped at {pg_restart['at_stop']} steps, down {pg_restart['down_s']:.1f}s; outcome: "
          f"{type(err).__name__ + ': ' + str(err).splitlines()[0] if err else 'completed'}; "
          f"status row {pg_restart['status']!r}; steps {pg_restart['steps']}")
    if err is not None:
        resumed = resume_campaign(cid, db_url=url)
        assert resumed.campaign.status == "completed"
    else:
        assert pg_restart["out"]["value"].campaign.status == "completed"
    _rows_ok(engine, cid, LOCK_BUDGET, 2)
    ref = run_campaign(TOY, db_url=url, **LOCK_SETTINGS)
    assert _fingerprint(engine, cid) == _fingerprint(engine, ref.campaign.id), "no lost or changed row"


@pytest.mark.timeout(180)
def test_postgres_restart_mid_campaign_rides_through_or_reports_one_clear_line(pg_restart):
    from db.engine import DatabaseError

    err = pg_restart["out"].get("error")
    if err is None:
        return  # rode through
    assert isinstance(err, DatabaseError) and "\n" not in str(err), f"{type(err).__name__}: {err}"
    assert pg_restart["status"] == "failed", pg_restart["status"]
