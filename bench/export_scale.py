"""Export at scale: time and memory of `discovery export` for 10,000 and 100,000 stored steps.

Builds a synthetic SQLite database per size through the real schema (Alembic migrations, the
models' tables, bulk Core inserts): a few SimpleTES-like campaigns of C chains whose moves have
K samples, each step with a prompt of a few KB (system + user message: task text, parent
program, its feedback), a response, a candidate program and its search evaluation, the parent
links and the strategy's bookkeeping. Then, in a fresh subprocess per size (so one size's
high-water mark cannot hide another's), it runs `flows.export.export_dataset` on every campaign
(all three formats, JSONL + Parquet) and prints, side by side:

  steps, rows written, wall seconds, steps/s, rows/s, the data written (MB), and two memory
  figures: the RSS high-water mark's growth during the export (resource.getrusage, measured
  against the RSS just before it), and the peak of Python allocations during a second run under
  tracemalloc (which excludes Arrow's own buffers, and slows the run, so it is not timed). Each
  measuring process first exports a 50-step database, so the imports an export needs are not
  counted as its memory.

"Memory does not grow with the number of rows" shows as similar peaks at 10k and 100k steps.

    python bench/export_scale.py [--sizes 10000,100000] [--prompt-kb 3] [--k 4] [--chains 4]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

TASK = ("Find a step function f on [0, 2] with values in [0, 1] and integral 1 that minimises the maximum "
        "overlap M(f) = max_x integral f(t) (1 - f(x + t)) dt; the best known bound is 0.380924. ")


def _program(rng: random.Random, n_values: int = 60) -> str:
    values = ", ".join(f"{rng.random():.6f}" for _ in range(n_values))
    return ("import numpy as np\n\n# EVOLVE-BLOCK-START\n"
            f"VALUES = [{values}]\n\n\ndef construct():\n    h = np.asarray(VALUES, dtype=float)\n"
            "    h = np.clip(h, 0.0, 1.0)\n    return {'heights': (h / h.sum() * len(h) / 2).tolist()}\n"
            "# EVOLVE-BLOCK-END\n")


def build_db(url: str, steps: int, *, campaigns: int = 4, chains: int | tuple[int, ...] = 4, k: int = 4,
             prompt_kb: float = 3.0, seed: int = 0, problem: str | tuple[str, ...] = "erdos_min_overlap",
             shares: tuple[float, ...] | None = None) -> dict[str, int]:
    """Writes `steps` steps (split over `campaigns` completed SimpleTES-like campaigns) into the
    empty database at url (ids from 1), through the real schema; returns counts. Scores are a noisy descent from the
    seed's 0.4066 (minimise), ~85 % of programs ok, ~5 % of responses unparsable. `problem` may
    be several names: campaign i is of problem[i % len(problem)]. `shares` (one weight per
    campaign; it sets the number of campaigns) splits the steps unevenly instead of equally, and
    `chains` may be one number per campaign."""
    from db.engine import get_engine
    from db.models import utcnow

    engine = get_engine(url)
    with engine.connect() as conn:
        if conn.exec_driver_sql("SELECT count(*) FROM campaign").scalar():
            raise ValueError(f"build_db writes into an empty database; {url} has campaigns")
    rng = random.Random(seed)
    now = utcnow()
    system = (TASK * max(1, int(prompt_kb * 1024 * 0.4 / len(TASK))))[: int(prompt_kb * 1024 * 0.4)]
    ids = {"step": 0, "cand": 0, "eval": 0, "traj": 0}
    if shares is not None:
        campaigns = len(shares)
        per_campaign = [int(steps * w / sum(shares)) for w in shares]
        per_campaign[0] += steps - sum(per_campaign)
    else:
        per_campaign = [steps // campaigns + (1 if i < steps % campaigns else 0) for i in range(campaigns)]
    counts = {"campaigns": campaigns, "steps": 0, "candidates": 0, "evaluations": 0}

    def nid(kind: str) -> int:
        ids[kind] += 1
        return ids[kind]

    with engine.connect() as conn:
        # Candidates and evaluations (and steps and candidates) point at each other, and SQLite checks
        # deferred keys with a table scan per insert: load with the checks off, verify them at the end.
        raw = conn.connection.driver_connection
        raw.execute("PRAGMA foreign_keys=OFF")
        try:
            with conn.begin():
                _load(conn, counts, rng, now, system, nid, per_campaign, chains, k, prompt_kb, problem)
            broken = raw.execute("PRAGMA foreign_key_check").fetchall()
        finally:
            raw.execute("PRAGMA foreign_keys=ON")
    if broken:
        raise RuntimeError(f"the synthetic database breaks foreign keys: {broken[:3]}")
    return counts


def _load(conn, counts, rng, now, system, nid, per_campaign, chains, k, prompt_kb, problem) -> None:
    from sqlalchemy import insert

    from db.models import Campaign, Candidate, Evaluation, Step, Trajectory

    all_chains = chains
    for c in range(len(per_campaign)):
        cid = c + 1
        chains = all_chains if isinstance(all_chains, int) else all_chains[c % len(all_chains)]
        name = problem if isinstance(problem, str) else problem[c % len(problem)]
        conn.execute(insert(Campaign), [dict(
            id=cid, name=f"bench {cid}", problem=name, strategy="simpletes", model="offline", seed=c,
            budget=per_campaign[c], config={"problem": name, "chains": chains, "k": k}, status="completed",
            direction="minimize", evaluator_version="1", error="", created_at=now, started_at=now,
            finished_at=now)])
        seed_code = _program(rng)
        seed_cand, seed_eval = nid("cand"), nid("eval")
        conn.execute(insert(Candidate), [dict(id=seed_cand, campaign_id=cid, step_id=None, role="seed",
                                              code=seed_code, program_hash=hashlib.sha256(seed_code.encode()).hexdigest(),
                                              parent_ids=[], diff="", evaluation_id=seed_eval, created_at=now)])
        conn.execute(insert(Evaluation), [dict(id=seed_eval, campaign_id=cid, candidate_id=seed_cand,
                                               cache_key=f"seed-{cid}", kind="search", status="ok",
                                               score=0.4065945292, metrics={}, feedback="ok", stdout="",
                                               stderr="", duration_s=0.1, cpu_s=0.1, backend="bench",
                                               evaluator_version="1", created_at=now)])
        counts["candidates"] += 1
        counts["evaluations"] += 1
        traj_ids = [nid("traj") for _ in range(chains)]
        conn.execute(insert(Trajectory), [dict(id=t, campaign_id=cid, index=i, kind="chain",
                                               parent_trajectory_id=None, created_at=now)
                                          for i, t in enumerate(traj_ids)])
        parents = [(seed_cand, seed_code, 0.4065945292, "ok")] * chains
        chain_best = [0.4065945292] * chains
        remaining = per_campaign[c]
        move = 0
        step_rows, cand_rows, eval_rows = [], [], []
        while remaining > 0:
            for chain in range(chains):
                if remaining <= 0:
                    break
                samples = min(k, remaining)
                remaining -= samples
                p_id, p_code, p_score, p_status = parents[chain]
                feedback = f"status {p_status}; score {p_score:.10f}; " + "overlap profile ok; " * 8
                user = (f"Improve the program below.\n\n```python\n{p_code}```\n\nFeedback: {feedback}\n"
                        + "Rewrite the evolve block. " * max(1, int(prompt_kb * 1024 * 0.6 - len(p_code)) // 26))
                messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
                outcomes = []
                for s in range(samples):
                    sid = nid("step")
                    parse_ok = rng.random() > 0.05
                    code = _program(rng) if parse_ok else None
                    response = f"```python\n{code}```" if parse_ok else "I think we should try something else."
                    step_rows.append(dict(
                        id=sid, campaign_id=cid, trajectory_id=traj_ids[chain], index=move, sample=s,
                        mode="refine", parent_candidate_id=p_id, messages=messages, response=response,
                        model="offline", prompt_tokens=len(user) // 4, completion_tokens=len(response) // 4,
                        cost_usd=0.0, latency_s=0.01, attempts=1, status="ok" if parse_ok else "parse_error",
                        error="" if parse_ok else "no code block", committed=False, bookkeeping={},
                        created_at=now))
                    if not parse_ok:
                        outcomes.append((sid, None, None, None, None))
                        continue
                    cand, ev = nid("cand"), nid("eval")
                    ok = rng.random() > 0.15
                    score = max(0.3809, p_score + rng.gauss(0.3, 1.0) * 0.002 * (p_score - 0.3805) / 0.026) if ok else None
                    cand_rows.append(dict(id=cand, campaign_id=cid, step_id=sid, role="proposal", code=code,
                                          program_hash=hashlib.sha256(code.encode()).hexdigest(),
                                          parent_ids=[p_id], diff="", evaluation_id=ev, created_at=now))
                    eval_rows.append(dict(id=ev, campaign_id=cid, candidate_id=cand, cache_key=f"e{ev}",
                                          kind="search", status="ok" if ok else "invalid", score=score,
                                          metrics={}, feedback="ok" if ok else "heights must be in [0, 1]",
                                          stdout="", stderr="", duration_s=0.1, cpu_s=0.1, backend="bench",
                                          evaluator_version="1", created_at=now))
                    outcomes.append((sid, cand, code, score, "ok" if ok else "invalid"))
                valid = [o for o in outcomes if o[3] is not None]
                winner = min(valid, key=lambda o: o[3]) if valid else None
                if winner is not None and winner[3] < p_score:
                    parents[chain] = (winner[1], winner[2], winner[3], "ok")
                    chain_best[chain] = min(chain_best[chain], winner[3])
                by_step = {r["id"]: r for r in step_rows[-samples:]}
                for sid, _cand, _code, score, _status in outcomes:
                    by_step[sid]["committed"] = winner is not None and sid == winner[0]
                    by_step[sid]["bookkeeping"] = {
                        "reward": None if score is None else (p_score - score) / p_score,
                        "committed": winner is not None and sid == winner[0],
                        "chain_best": chain_best[chain], "chain_best_ref": parents[chain][0],
                        "restarted": False}
            move += 1
            if len(step_rows) >= 5000 or remaining <= 0:
                conn.execute(insert(Step), step_rows)
                if cand_rows:
                    conn.execute(insert(Candidate), cand_rows)
                    conn.execute(insert(Evaluation), eval_rows)
                counts["steps"] += len(step_rows)
                counts["candidates"] += len(cand_rows)
                counts["evaluations"] += len(eval_rows)
                step_rows, cand_rows, eval_rows = [], [], []


def _rss_kib() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def measure(url: str, out: str, mode: str) -> dict:
    """One export of every campaign at url into out; mode "time" (RSS) or "tracemalloc"."""
    import resource

    from db.engine import get_engine
    from db.repository import find_campaigns
    from flows.export import export_dataset

    engine = get_engine(url)
    ids = [c.id for c in find_campaigns(engine)]
    # A warm-up export of a 50-step database: what a first export imports is not its memory.
    warm = Path(out).parent / f"{Path(out).name}-warm-up"
    warm.mkdir()
    build_db(f"sqlite:///{warm / 'warm.db'}", 50, campaigns=1)
    export_dataset([1], out_dir=warm / "out", db_url=f"sqlite:///{warm / 'warm.db'}")

    result: dict = {}
    if mode == "tracemalloc":
        import tracemalloc

        tracemalloc.start()
        report = export_dataset(ids, out_dir=out, db_url=url)
        result["tracemalloc_peak_mib"] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    else:
        before = _rss_kib()
        t = time.perf_counter()
        report = export_dataset(ids, out_dir=out, db_url=url)
        result["wall_s"] = time.perf_counter() - t
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        result["rss_before_mib"] = before / 1024
        result["rss_growth_mib"] = max(0, peak - before) / 1024
    result["rows"] = report.rows
    result["row_counts"] = report.row_counts
    result["dropped"] = report.dropped
    result["bytes"] = {"jsonl": sum(f["bytes"] for p, f in report.files.items() if p.endswith(".jsonl")),
                       "parquet": sum(f["bytes"] for p, f in report.files.items() if p.endswith(".parquet"))}
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000", help="Comma-separated numbers of stored steps.")
    ap.add_argument("--campaigns", type=int, default=4)
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--prompt-kb", type=float, default=3.0)
    ap.add_argument("--keep", action="store_true", help="Keep the temporary folder (databases and exports).")
    ap.add_argument("--measure", nargs=3, metavar=("URL", "OUT", "MODE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(measure(*args.measure)))
        return

    tmp = Path(tempfile.mkdtemp(prefix="bench-export-"))
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        url = f"sqlite:///{tmp / f'bench-{n}.db'}"
        t = time.perf_counter()
        counts = build_db(url, n, campaigns=args.campaigns, chains=args.chains, k=args.k, prompt_kb=args.prompt_kb)
        build_s = time.perf_counter() - t
        db_mib = (tmp / f"bench-{n}.db").stat().st_size / 2**20
        measured = {}
        for mode in ("time", "tracemalloc"):
            out = tmp / f"export-{n}-{mode}"
            proc = subprocess.run([sys.executable, __file__, "--measure", url, str(out), mode], cwd=REPO,
                                  capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                sys.exit(f"export of {n} steps failed:\n{proc.stderr}")
            measured[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append((n, counts, build_s, db_mib, measured))

    print(f"cores {os.cpu_count()}; {args.campaigns} campaigns, C={args.chains} K={args.k}, prompts ~{args.prompt_kb:g} KB; "
          f"formats sft, preference, rl; JSONL + Parquet (zstd)")
    print(f"{'steps':>8s} {'db MiB':>7s} {'rows out':>9s} {'export s':>9s} {'steps/s':>8s} {'rows/s':>8s} "
          f"{'JSONL MiB':>9s} {'Parquet MiB':>11s} {'RSS growth MiB':>14s} {'py peak MiB':>11s}")
    for n, counts, build_s, db_mib, m in rows:
        t, tm = m["time"], m["tracemalloc"]
        print(f"{counts['steps']:8d} {db_mib:7.1f} {t['rows']:9d} {t['wall_s']:9.2f} {counts['steps'] / t['wall_s']:8.0f} "
              f"{t['rows'] / t['wall_s']:8.0f} {t['bytes']['jsonl'] / 2**20:9.1f} {t['bytes']['parquet'] / 2**20:11.1f} "
              f"{t['rss_growth_mib']:14.1f} {tm['tracemalloc_peak_mib']:11.1f}")
    for n, counts, build_s, db_mib, m in rows:
        print(f"{n} steps: rows {json.dumps(m['time']['row_counts'])}; dropped {json.dumps(m['time']['dropped'])}; "
              f"database built in {build_s:.1f} s")
    if args.keep:
        print(f"kept: {tmp}")
    else:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
