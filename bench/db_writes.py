"""Evaluations written per second, on SQLite and on PostgreSQL, through a campaign's own writes.

    .venv/bin/python bench/db_writes.py [--candidates 2000] [--writers 1,2,4,8] [--k 4]
                                        [--duplicates 0.0] [--pg-commit sync] [--no-postgres]

A row is one fresh database (a SQLite file in a temp folder, or a new database on a throwaway
PostgreSQL server started with tests/pg.py), holding ONE campaign (create_campaign, status
"running", the seed candidate and its evaluation, all before the clock), into which W writer
threads store --candidates candidates between them. Each thread is one chain (its own
trajectory, ensure_trajectory), like the concurrent chains / task threads of a campaign process
(flows/campaign.py), and stores every candidate with exactly the repository calls, in exactly
the transactions, that the campaign flow makes for it:

  per move (K samples)  load_move                  (the flow's look-up when it issues a move)
  per sample            record_step                (propose task: step + candidate, one txn)
                        find_evaluation            (evaluate task: the evaluation cache look-up)
                        record_evaluation          (evaluation row + candidate.evaluation_id, one txn)
                        or, for a repeated program, link_evaluation (a cache hit: no new row)
  per move              finish_move                (the strategy's commit: K step updates, one txn)

with payloads of a real campaign's size: a ~2 KB program (unique per candidate, so each one
gets its own evaluation unless --duplicates asks for repeats), a ~3 KB prompt (system + user
message holding the parent program), a ~2.2 KB response, a unified diff, a metrics dict, a
short stdout and feedback, SimpleTES-like bookkeeping. Payloads are built outside the timed
calls; the clock covers only the database work (SQLAlchemy ORM included: it is part of the path).

Columns: `wall s` is the row's wall time (all threads); `evals/s` = evaluations written / wall
(a candidate whose program repeats an earlier one is linked, not written, so with --duplicates
candidates/s is also shown); `median ms` / `p95 ms` are the per-candidate write latency: the
time of that candidate's repository calls (its step, look-up and evaluation; the move's
load_move is counted on its first sample and finish_move on its last). `check` compares the
database's row counts (trajectories, steps, candidates, evaluations, candidates left without an
evaluation, steps left uncommitted) with what was written; a mismatch aborts the run.

How a row relates to a campaign: a campaign process writes from as many threads as it has
tasks in flight (llm_concurrency + eval_slots), each write being one of the calls above, so
the row with W writers is the rate at which W concurrent chains/slots can store finished work
-- an upper bound on the campaign's evaluation rate that the database allows. (In a campaign a
candidate's step and its evaluation are written by different task threads; the transactions are
the same.) The "reading" line's ms of database work per candidate at 1 writer (wall /
candidates) is the database's share of the platform's per-candidate overhead (compare with
`overhead ms/cand` of bench/overhead.py, which includes these writes); if W writers sustain far
more evaluations per second than a campaign's W evaluation slots produce (each evaluation takes
the sandbox spawn plus the program's run time, see bench/sandbox_overhead.py), the database is
not the bottleneck. The final "reading" lines state the measured figures, nothing more. On
SQLite every repository transaction, the look-ups included, begins with BEGIN IMMEDIATE
(db/engine.py), so concurrent writers take turns on the write lock; a writer that finds it
taken waits in SQLite's busy handler, whose sleeps grow in steps, which shows in the p95 column.

Durability, stated in the header line: SQLite runs exactly as db/engine.py opens it (WAL,
synchronous=NORMAL: commits are not fsynced one by one; a crash may lose the last commits but
never corrupts). tests/pg.py starts PostgreSQL with fsync, synchronous_commit and
full_page_writes off (a test server); --pg-commit restarts that server in the mode(s) asked for,
each measured as its own backend (comma-separated, e.g. --pg-commit sync,async):
  sync     PostgreSQL's defaults (fsync, full_page_writes, synchronous_commit on): every commit
           waits for its WAL flush -- what a stock server does (the default here);
  async    fsync and full_page_writes on, synchronous_commit off: the same guarantee as the
           platform's SQLite (a crash may lose the last commits, never corrupts);
  nofsync  tests/pg.py's settings unchanged (fsync off: a crash can corrupt the cluster).
The SQLite/PG ratio is printed for every PostgreSQL mode at every writer count.

Without PostgreSQL's server binaries (or psycopg) one line says so and SQLite alone is measured.
Every database is dropped, the server stopped and temp folders removed at the end, on errors and
on Ctrl-C. Trial runs with small --candidates are noisy; report figures from the defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PG_MODES = {
    # mode -> server options that replace tests/pg.py's "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    "sync": "-c fsync=on -c synchronous_commit=on -c full_page_writes=on",
    "async": "-c fsync=on -c synchronous_commit=off -c full_page_writes=on",
    "nofsync": None,  # as tests/pg.py started it
}


# ---------------------------------------------------------------- payloads


SYSTEM_PROMPT = (
    "You are an expert mathematician and Python programmer improving a construction for an "
    "extremal combinatorics problem. You are shown the current program and its evaluation. "
    "Propose an improved program: keep the function signature `construct()`, return a list of "
    "floats, do not read files or the network, and finish within the time limit. Answer with one "
    "fenced python block holding the complete program, then at most three sentences on why the "
    "change should raise the score. Programs that fail to run, or that return values outside the "
    "allowed range, score nothing; programs identical to an earlier one are not re-evaluated."
)  # ~650 characters


def _program(tag: str) -> str:
    """A ~2 KB Python program whose constants depend on `tag` (a distinct program per tag)."""
    rng = random.Random(tag)
    values = ", ".join(f"{rng.random():.6f}" for _ in range(60))
    body = [
        '"""Step-function construction for the minimum-overlap problem."""',
        "import math",
        "",
        f"VALUES = [{values}]",
        "",
        "",
        "def smooth(xs, width=3):",
        "    out = []",
        "    for i in range(len(xs)):",
        "        lo, hi = max(0, i - width), min(len(xs), i + width + 1)",
        "        out.append(sum(xs[lo:hi]) / (hi - lo))",
        "    return out",
        "",
        "",
        "def normalise(xs):",
        "    total = sum(xs)",
        "    return [2.0 * x * len(xs) / total / 2.0 for x in xs]",
        "",
        "",
        "def construct():",
        f"    xs = smooth(VALUES, width={rng.randint(1, 5)})",
        f"    xs = [min(1.0, max(0.0, x + {rng.random() / 10:.6f} * math.sin(i))) for i, x in enumerate(xs)]",
        "    return normalise(xs)",
    ]
    return "\n".join(body) + "\n"


def _diff(parent: str, child: str) -> str:
    from discovery.edits import unified_diff

    return unified_diff(parent, child)


@dataclasses.dataclass(frozen=True)
class Payload:
    """What one candidate writes (built outside the timed calls)."""

    messages: list[dict[str, str]]
    response: str
    candidate: dict[str, Any]
    cache_key: str
    fields: dict[str, Any]
    bookkeeping: dict[str, Any]


def _payload(campaign_id: int, chain: int, number: int, parent_ref: int, parent_code: str,
             code: str, diff: str) -> Payload:
    from discovery.types import program_hash

    user = (f"## Current program (chain {chain}, move {number})\n```python\n{parent_code}```\n"
            f"## Its evaluation\nstatus ok, score 0.38{number % 1000:03d}; overlap bound reached on 41 of 60 "
            f"steps; the profile is too flat near x=0.5.\n## Task\nImprove the score.")  # ~2.4 KB
    response = f"```python\n{code}```\nSmoothing narrower and a sine perturbation should lower the overlap."
    phash = program_hash(code)
    score = 0.38 + (int(phash[:6], 16) % 10_000) / 1e6
    fields = {
        "status": "ok",
        "score": score,
        "metrics": {"run_status": "ok", "exit_code": 0, "n_values": 60, "max_value": 0.99731,
                    "min_value": 0.00412, "overlap": score, "instances": {"main": score},
                    "peak_rss_mb": 23.4},
        "feedback": f"score {score:.6f} (overlap of the construction; lower is better); 60 values in [0, 1]",
        "stdout": "constructed 60 values\nsmoothing width 3\n",
        "stderr": "",
        "duration_s": 0.143,
        "cpu_s": 0.121,
        "backend": "bwrap",
        "evaluator_version": "1",
    }
    return Payload(
        messages=[{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}],
        response=response,
        candidate={"code": code, "program_hash": phash, "parent_ids": [parent_ref], "diff": diff},
        cache_key=phash,
        fields=fields,
        bookkeeping={"reward": 0.0012, "committed": False, "chain_best": score, "chain_best_ref": parent_ref,
                     "restarted": False},
    )


# ---------------------------------------------------------------- one row


@dataclasses.dataclass
class Row:
    backend: str
    writers: int
    candidates: int
    evaluations: int
    wall_s: float
    latencies: list[float]
    check: str

    @property
    def evals_per_s(self) -> float:
        return self.evaluations / self.wall_s

    @property
    def cands_per_s(self) -> float:
        return self.candidates / self.wall_s


def _pct(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _chain(engine, campaign_id: int, chain: int, count: int, k: int, duplicates: float, seed_ref: int,
           seed_code: str, out: list[float], stop: threading.Event) -> tuple[int, int]:
    """Writes `count` candidates of trajectory `chain` as the campaign flow does; appends each
    candidate's write latency (s) to `out`; returns (evaluations written, candidates linked)."""
    from db import repository as repo

    rng = random.Random(f"chain-{chain}")
    traj_id = repo.ensure_trajectory(engine, campaign_id, chain)
    parent_ref, parent_code = seed_ref, seed_code
    base_diff = _diff(seed_code, _program(f"{campaign_id}-{chain}-diff"))
    written: list[str] = []  # tags of the programs this chain has had evaluated (to repeat)
    evals = links = 0
    move = done = 0
    while done < count and not stop.is_set():
        samples = min(k, count - done)
        step_ids: dict[int, int] = {}
        best: tuple[float, int, int, str] | None = None  # (score, sample, candidate id, code)
        t = time.perf_counter()
        repo.load_move(engine, traj_id, move)
        carry = time.perf_counter() - t  # charged to the move's first sample
        for sample in range(samples):
            number = done + sample
            if written and rng.random() < duplicates:
                tag = rng.choice(written)  # a program this chain already had evaluated
            else:
                tag = f"{campaign_id}-{chain}-{number}"
            code = _program(tag)
            p = _payload(campaign_id, chain, number, parent_ref, parent_code, code, base_diff)
            t = time.perf_counter()
            step_id, cand_id = repo.record_step(
                engine, campaign_id=campaign_id, trajectory_id=traj_id, index=move, sample=sample, mode="program",
                messages=p.messages, parent_candidate_id=parent_ref, response=p.response, model="openai/stub",
                prompt_tokens=812, completion_tokens=604, cost_usd=0.0021, latency_s=3.2, attempts=1, status="ok",
                error="", candidate=p.candidate)
            stored = repo.find_evaluation(engine, campaign_id, p.cache_key)
            if stored is not None:
                repo.link_evaluation(engine, cand_id, stored.id)
                links += 1
            else:
                repo.record_evaluation(engine, campaign_id=campaign_id, candidate_id=cand_id, cache_key=p.cache_key,
                                       fields=p.fields)
                written.append(tag)
                evals += 1
            elapsed = time.perf_counter() - t + carry
            carry = 0.0
            step_ids[sample] = step_id
            if best is None or p.fields["score"] < best[0]:
                best = (p.fields["score"], sample, cand_id, code)
            if sample == samples - 1:
                t = time.perf_counter()
                repo.finish_move(engine, step_ids, best[1],
                                 {s: dict(p.bookkeeping, committed=(s == best[1])) for s in step_ids})
                elapsed += time.perf_counter() - t
            out.append(elapsed)
        parent_ref, parent_code = best[2], best[3]  # the chain goes on from the move's winner
        done += samples
        move += 1
    return evals, links


def _expected(engine, campaign_id: int, want: dict[str, int]) -> str:
    """Compares the campaign's row counts with `want`; returns "ok" or raises SystemExit."""
    from sqlalchemy import func, select

    from db import repository as repo
    from db.engine import session_scope
    from db.models import Candidate, Step

    got = dict(repo.count_rows(engine, campaign_id))
    with session_scope(engine) as s:
        got["unevaluated"] = s.scalar(select(func.count()).where(Candidate.campaign_id == campaign_id,
                                                                 Candidate.evaluation_id.is_(None)))
        got["uncommitted"] = s.scalar(select(func.count()).where(Step.campaign_id == campaign_id,
                                                                 Step.committed.is_(None)))
    wrong = {k: (got.get(k), v) for k, v in want.items() if got.get(k) != v}
    if wrong:
        detail = ", ".join(f"{k}: found {g}, wrote {w}" for k, (g, w) in wrong.items())
        raise SystemExit(f"row-count check FAILED for campaign {campaign_id} ({engine.url.render_as_string()}): "
                         f"{detail}")
    return "ok"


def measure(backend: str, url: str, writers: int, candidates: int, k: int, duplicates: float) -> Row:
    from db import repository as repo
    from db.engine import dispose_engines, get_engine

    engine = get_engine(url)  # migrates the fresh database (not timed)
    try:
        cid = repo.create_campaign(
            engine, name=f"bench-db-writes/{writers}", problem="erdos_min_overlap", strategy="simpletes",
            model="openai/stub", seed=0, budget=candidates, direction="minimize", evaluator_version="1",
            config={"problem": "erdos_min_overlap", "chains": writers, "k": k, "budget": candidates,
                    "eval_slots": writers, "llm_concurrency": writers, "strategy": "simpletes"})
        repo.set_campaign_status(engine, cid, "running")
        seed_code = _program("seed")
        seed = _payload(cid, 0, 0, 0, "", seed_code, "")
        seed_ref = repo.ensure_seed_candidate(engine, cid, seed_code, seed.candidate["program_hash"])
        repo.record_evaluation(engine, campaign_id=cid, candidate_id=seed_ref, cache_key=seed.cache_key,
                               fields=seed.fields)

        shares = [candidates // writers + (1 if i < candidates % writers else 0) for i in range(writers)]
        latencies: list[list[float]] = [[] for _ in range(writers)]
        results: list[tuple[int, int] | None] = [None] * writers
        errors: list[BaseException] = []
        stop = threading.Event()
        start = threading.Barrier(writers + 1)

        def run(i: int) -> None:
            try:
                start.wait()
                results[i] = _chain(engine, cid, i, shares[i], k, duplicates, seed_ref, seed_code, latencies[i], stop)
            except BaseException as exc:  # noqa: BLE001 - reported by the main thread
                errors.append(exc)
                stop.set()

        threads = [threading.Thread(target=run, args=(i,), name=f"writer-{i}", daemon=True) for i in range(writers)]
        for t in threads:
            t.start()
        try:
            start.wait()
            t0 = time.perf_counter()
            for t in threads:
                while t.is_alive():
                    t.join(0.2)
            wall = time.perf_counter() - t0
        except BaseException:  # Ctrl-C: let the writers stop at their next candidate, then clean up
            stop.set()
            start.abort()
            for t in threads:
                t.join(60)
            raise
        if errors:
            exc = errors[0]
            raise SystemExit(f"{backend}, {writers} writers: a writer failed: {type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''}") from exc
        evals = sum(r[0] for r in results)  # type: ignore[index]
        check = _expected(engine, cid, {
            "trajectories": writers,
            "steps": candidates,
            "candidates": candidates + 1,  # + the seed
            "evaluations": evals + 1,
            "unevaluated": 0,
            "uncommitted": 0,
        })
        return Row(backend, writers, candidates, evals, wall, [x for lat in latencies for x in lat], check)
    finally:
        dispose_engines()


# ---------------------------------------------------------------- backends


class Backends:
    """Hands out one fresh database URL per row and removes everything it made in close()."""

    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-db-writes-"))
        self.server = None
        self.pg_mode: str | None = None
        self._n = 0

    def sqlite(self) -> tuple[str, Callable[[], None]]:
        self._n += 1
        path = self.tmp / f"row{self._n}.db"

        def drop() -> None:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        return f"sqlite:///{path}", drop

    def start_postgres(self) -> str | None:
        """Starts the throwaway server; returns None, or the one-line reason it cannot run here."""
        from tests.pg import PostgresUnavailable, start_server

        try:
            self.server = start_server()
        except PostgresUnavailable as exc:
            return str(exc)
        self.pg_mode = "nofsync"
        return None

    def set_pg_mode(self, mode: str) -> None:
        """Restarts the server with mode's durability settings (tests/pg.py's others unchanged)."""
        if mode == self.pg_mode:
            return
        srv = self.server
        options = (f"-p {srv.port} -h 127.0.0.1 -k {srv.sockets} -c max_connections=300 "
                   f"{PG_MODES[mode] or '-c fsync=off -c synchronous_commit=off -c full_page_writes=off'}")
        done = srv._run("pg_ctl", "-D", str(srv.data), "-l", str(srv.log), "-o", options, "-w", "-t", "60", "restart")
        if done.returncode != 0:
            raise SystemExit(f"could not restart PostgreSQL in mode {mode}: {done.stderr.strip() or done.stdout.strip()}")
        self.pg_mode = mode

    def postgres(self) -> tuple[str, Callable[[], None]]:
        url = self.server.create_database("bench_db_writes")
        return url, lambda: self.server.drop_database(url)

    def pg_settings(self) -> str:
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.server.port, user="postgres", dbname="postgres",
                             connect_timeout=30) as conn:
            vals = [conn.execute(f"SHOW {name}").fetchone()[0]
                    for name in ("server_version", "fsync", "synchronous_commit", "full_page_writes")]
        return f"PostgreSQL {vals[0].split()[0]} (fsync={vals[1]} synchronous_commit={vals[2]} full_page_writes={vals[3]})"

    def close(self) -> None:
        from db.engine import dispose_engines

        dispose_engines()
        if self.server is not None:
            self.server.stop()
            self.server = None
        shutil.rmtree(self.tmp, ignore_errors=True)


# ---------------------------------------------------------------- main


def _header(args) -> str:
    import sqlalchemy

    try:
        import psycopg
        pg_driver = f"psycopg {psycopg.__version__}"
    except ImportError:
        pg_driver = "psycopg not installed"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"machine: {os.cpu_count()} cores, load average {load}; Python {platform.python_version()}, "
            f"SQLAlchemy {sqlalchemy.__version__}, SQLite {sqlite3.sqlite_version} (WAL, synchronous=NORMAL), "
            f"{pg_driver}; {args.candidates} candidates per row, K={args.k} samples per move, "
            f"duplicates {args.duplicates:.0%}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--candidates", type=int, default=2000, help="candidates written per row (all writers together)")
    ap.add_argument("--writers", default="1,2,4,8", help="writer-thread counts, comma-separated")
    ap.add_argument("--k", type=int, default=4, help="samples per move (finish_move commits K steps at once)")
    ap.add_argument("--duplicates", type=float, default=0.0,
                    help="fraction of candidates repeating a program already evaluated (a cache hit: linked)")
    ap.add_argument("--pg-commit", default="sync",
                    help=f"PostgreSQL durability mode(s), comma-separated: {', '.join(PG_MODES)}")
    ap.add_argument("--no-postgres", action="store_true", help="measure SQLite only")
    args = ap.parse_args()
    writers = [int(w) for w in args.writers.split(",") if w.strip()]
    modes = [m.strip() for m in args.pg_commit.split(",") if m.strip()]
    bad = [m for m in modes if m not in PG_MODES]
    if bad or not writers or min(writers) < 1 or args.candidates < max(writers) or args.k < 1 \
            or not 0 <= args.duplicates < 1:
        ap.error(f"need writers >= 1, candidates >= max(writers), k >= 1, 0 <= duplicates < 1, "
                 f"pg modes among {list(PG_MODES)} (got unknown {bad})" if bad else
                 "need writers >= 1, candidates >= max(writers), k >= 1, 0 <= duplicates < 1")

    os.environ.pop("DISCOVERY_DB_URL", None)  # every URL below is explicit
    print(_header(args), flush=True)
    backends = Backends()
    rows: list[Row] = []
    try:
        plan: list[tuple[str, str | None]] = [("sqlite", None)]
        if args.no_postgres:
            print("PostgreSQL: skipped (--no-postgres)")
        else:
            reason = backends.start_postgres()
            if reason:
                print(f"PostgreSQL: not measured ({reason})")
            else:
                plan += [(f"pg-{mode}", mode) for mode in modes]
        cols = (f"{'backend':<12}{'writers':>8}{'candidates':>11}{'evals':>7}{'wall s':>8}{'evals/s':>9}"
                f"{'cands/s':>9}{'median ms':>10}{'p95 ms':>8}{'check':>7}")
        printed_cols = False
        for name, mode in plan:
            if mode is not None:
                backends.set_pg_mode(mode)
                print(f"{name}: {backends.pg_settings()}", flush=True)
            for w in writers:
                if not printed_cols:
                    print(cols, flush=True)
                    printed_cols = True
                url, drop = backends.postgres() if mode is not None else backends.sqlite()
                try:
                    row = measure(name, url, w, args.candidates, args.k, args.duplicates)
                finally:
                    drop()
                rows.append(row)
                lat = sorted(row.latencies)
                print(f"{row.backend:<12}{row.writers:>8}{row.candidates:>11}{row.evaluations:>7}{row.wall_s:>8.2f}"
                      f"{row.evals_per_s:>9.0f}{row.cands_per_s:>9.0f}{1e3 * statistics.median(lat):>10.2f}"
                      f"{1e3 * _pct(lat, 0.95):>8.2f}{row.check:>7}", flush=True)
    finally:
        backends.close()

    by = {(r.backend, r.writers): r for r in rows}
    pg_names = [n for n, m in plan if m is not None]
    if pg_names:
        print()
        heads = [f"sqlite/{n} evals/s" for n in pg_names]
        print(f"{'writers':>8}" + "".join(f"{h:>{len(h) + 3}}" for h in heads))
        for w in writers:
            s = by[("sqlite", w)]
            print(f"{w:>8}" + "".join(f"{s.evals_per_s / by[(n, w)].evals_per_s:>{len(h) + 3}.2f}"
                                      for n, h in zip(pg_names, heads)))
    print()
    for name, _ in plan:
        own = [r for r in rows if r.backend == name]
        top = max(own, key=lambda r: r.evals_per_s)
        one = next((r for r in own if r.writers == 1), own[0])
        print(f"reading: {name}: {1e3 * one.wall_s / one.candidates:.2f} ms of database work per candidate with "
              f"{one.writers} writer(s); at most {top.evals_per_s:.0f} evaluations/s (with {top.writers} writer(s))")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        print("\ninterrupted: databases dropped, server stopped, temp folders removed", file=sys.stderr)
        sys.exit(130)
