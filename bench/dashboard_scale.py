"""Dashboard at scale: every page's queries, charts and whole script run at 10,000 and 100,000 steps.

For each size the script builds a SQLite database through the real schema with
bench/export_scale.build_db (SimpleTES-like campaigns, prompts of ~3 KB, one candidate and one
search evaluation per parsed response, ~5 % unparsable): four campaigns holding 70 / 10 / 10 / 10 %
of the steps, the large one with C=8 chains (the others C=4), K=4 samples a move, so the
per-campaign pages see one big campaign. It then stores one comparison over the four campaigns
(the results computed by discovery.comparison.compare from their evaluation traces, as
`discovery compare` stores them; one strategy, the four campaigns as its four seeds).

Then, for each database, it measures:

  queries  every dashboard/queries.py function a page calls, on what that page reads (the
           largest campaign, its largest trajectory, its best candidate, the comparison):
           cold = the first call on a fresh read-only engine (new connection, empty SQLite page
           cache; the OS file cache stays warm), warm = a second call on the same engine;
           medians over --repeats;
  charts   the dashboard/charts.py functions on the biggest inputs (the large campaign's
           points; its largest trajectory's nodes; the comparison), Altair's to_dict included;
  pages    the whole page script through streamlit.testing.v1.AppTest (`at.run()` wall time):
           first = the first run after clearing Streamlit's caches and the engines (cold);
           warm = the faster of two immediate reruns of the same session (warm Streamlit
           caches; a first run longer than the live totals' 3 s TTL makes the next rerun
           re-read them, hence two); and one more rerun after sleeping that TTL, which re-reads
           the live totals (campaign table, campaign info) but not the heavy per-campaign
           queries: what a click after a few seconds of reading costs. Imports are paid by a
           warm-up pass over every page on a 200-step database first, so they are not counted.

and prints one table: page, query/step, rows returned at each size, milliseconds at each size
(cold / warm) and the 100k / 10k ratio of the warm times, plus the database files' sizes.

    python bench/dashboard_scale.py [--sizes 10000,100000] [--repeats 3] [--keep DIR]

--keep DIR keeps the databases in DIR and reuses the ones this script left there (same sizes).
(An earlier version also tried fixes on a copy of the database; they are now migration 0004 and
dashboard/queries.py; BENCHMARKS.md keeps the before/after figures.)
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

SHARES = (0.7, 0.1, 0.1, 0.1)  # the large campaign first
CHAINS = (8, 4, 4, 4)
K = 4
APP = REPO / "dashboard" / "app.py"
PAGES = ("campaigns", "campaign", "trajectory", "candidate", "compare", "export")
PAGE_TIMEOUT_S = 300
PAGE_RUN = "whole page: at.run()"
PAGE_TTL = "whole page: rerun after the live TTL"


# ---------------------------------------------------------------- the databases


def seed_comparison(url: str) -> int:
    """Stores one completed comparison over every campaign of the database (one strategy, each
    campaign a seed), its results computed from the campaigns' evaluation traces."""
    from sqlalchemy import func, select

    import db.repository as repo
    from db.engine import get_engine
    from db.models import Campaign, Candidate, Evaluation, Step
    from discovery import comparison as cmp

    engine = get_engine(url)
    with engine.connect() as conn:
        campaigns = conn.execute(select(Campaign.id, Campaign.seed, Campaign.strategy, Campaign.problem,
                                        Campaign.direction, Campaign.budget).order_by(Campaign.id)).all()
        per_step = {r[0]: r[1:] for r in conn.execute(
            select(Step.campaign_id, func.count(), func.sum(Step.prompt_tokens + Step.completion_tokens))
            .group_by(Step.campaign_id))}
        seeds = dict(conn.execute(select(Candidate.campaign_id, Evaluation.score)
                                  .join(Evaluation, Evaluation.id == Candidate.evaluation_id)
                                  .where(Candidate.role == "seed")).all())
    strategy, problem, direction = campaigns[0].strategy, campaigns[0].problem, campaigns[0].direction
    runs = []
    for c in campaigns:
        trace = repo.evaluation_trace(engine, c.id)
        steps, tokens = per_step[c.id]
        runs.append(cmp.RunData(strategy=strategy, seed=c.seed, seed_score=seeds.get(c.id),
                                samples=[cmp.Sample(s, status, score) for s, status, score in trace],
                                llm_calls=int(steps), tokens=int(tokens), cost_usd=0.0, wall_s=0.0,
                                campaign_id=c.id))
    result = cmp.compare(runs, strategies=[strategy], direction=direction, target_pct=1.0)
    seed_list = [c.seed for c in campaigns]
    cid, run_ids = repo.create_comparison(
        engine, name="bench: the seeded campaigns", problem=problem, strategies=[strategy], seeds=seed_list,
        budget=max(c.budget for c in campaigns), target_pct=1.0, config={"bench": "dashboard_scale"})
    for c in campaigns:
        repo.update_comparison_run(engine, run_ids[(strategy, c.seed)], campaign_id=c.id, status="completed",
                                   wall_s=0.0)
    repo.finish_comparison(engine, cid, status="completed", results=result.to_dict())
    return cid


def build(path: Path, steps: int) -> tuple[dict[str, int], float, bool]:
    """Builds (or reuses) the database at path; returns (counts, build seconds, reused)."""
    from sqlalchemy import create_engine, text

    from export_scale import build_db

    url = f"sqlite:///{path}"
    if path.exists():
        engine = create_engine(url)
        with engine.connect() as conn:
            counts = {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar()
                      for t in ("campaign", "step", "candidate", "evaluation", "comparison")}
        engine.dispose()
        if counts["step"] == steps and counts["comparison"] == 1:
            return ({"campaigns": counts["campaign"], "steps": counts["step"], "candidates": counts["candidate"],
                     "evaluations": counts["evaluation"]}, 0.0, True)
        path.unlink()
    t = time.perf_counter()
    counts = build_db(url, steps, chains=CHAINS, k=K, shares=SHARES)
    seed_comparison(url)
    from db.engine import dispose_engines

    dispose_engines()
    return counts, time.perf_counter() - t, False


# ---------------------------------------------------------------- what the pages read


def targets(url: str) -> dict[str, Any]:
    """The ids the per-campaign pages are opened on: the largest campaign, its largest
    trajectory, its best candidate, the comparison."""
    from sqlalchemy import func, select

    from dashboard import queries as q
    from db.engine import get_reader
    from db.models import Comparison, Step

    engine = get_reader(url)
    with engine.connect() as conn:
        campaign = conn.execute(select(Step.campaign_id).group_by(Step.campaign_id)
                                .order_by(func.count().desc()).limit(1)).scalar()
        comparison = conn.execute(select(func.max(Comparison.id))).scalar()
    info = q.campaign_info(engine, campaign)
    trajectories = q.trajectory_table(engine, campaign)
    largest = trajectories.sort_values(["steps", "index"], ascending=[False, True]).iloc[0]
    return {"campaign": int(campaign), "direction": info["direction"], "seed_score": info["seed_score"],
            "problem": info["problem"], "trajectory_index": int(largest["index"]),
            "trajectory_id": int(largest["trajectory_id"]), "candidate": int(info["best_candidate_id"]),
            "comparison": comparison}


def _rows(value: Any) -> int:
    if value is None:
        return 0
    if hasattr(value, "shape"):
        return int(value.shape[0])
    if isinstance(value, dict):
        if "children" in value:  # candidate_detail: the candidate plus its children's ids
            return 1 + len(value["children"])
        if "runs" in value:  # comparison_detail: its runs
            return len(value["runs"])
        return 1
    if isinstance(value, (list, tuple)):
        return len(value)
    return 1


def query_plan(t: dict[str, Any]) -> dict[str, list[tuple[str, Callable]]]:
    """Per page, the queries it makes (in page order) as (label, fn(engine))."""
    from dashboard import queries as q

    c, tid, cand, comp = t["campaign"], t["trajectory_id"], t["candidate"], t["comparison"]
    status = ("database_status (app.py, every page)", q.database_status)
    table = ("campaign_table", lambda e: q.campaign_table(e, None))
    info = ("campaign_info(campaign)", lambda e: q.campaign_info(e, c))
    trajectories = ("trajectory_table(campaign)", lambda e: q.trajectory_table(e, c))
    return {
        "campaigns": [status, table],
        "campaign": [table, info, ("campaign_points(campaign)", lambda e: q.campaign_points(e, c)), trajectories,
                     ("campaign_candidate_ids(campaign)", lambda e: q.campaign_candidate_ids(e, c))],
        "trajectory": [table, info, trajectories, ("trajectory_nodes(trajectory)", lambda e: q.trajectory_nodes(e, tid))],
        "candidate": [("candidate_detail(best)", lambda e: q.candidate_detail(e, cand))],
        "compare": [("comparison_table", q.comparison_table), ("comparison_detail", lambda e: q.comparison_detail(e, comp))],
        "export": [table, ("export_table", q.export_table)],
    }


def time_query(url: str, fn: Callable, repeats: int) -> tuple[float, float, int]:
    """(cold ms, warm ms, rows): medians over repeats; cold on a fresh engine."""
    from db.engine import dispose_engines, get_reader

    cold, warm, rows = [], [], 0
    for _ in range(repeats):
        dispose_engines()
        engine = get_reader(url)
        t0 = time.perf_counter()
        fn(engine)
        cold.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        out = fn(engine)
        warm.append(time.perf_counter() - t0)
        rows = _rows(out)
    dispose_engines()
    return statistics.median(cold) * 1e3, statistics.median(warm) * 1e3, rows


def chart_plan(url: str, t: dict[str, Any]) -> dict[str, list[tuple[str, Callable[[], Any]]]]:
    """Per page, the chart building on the biggest inputs, as (label, fn() -> rows drawn)."""
    try:
        from dashboard import charts
    except Exception as exc:  # noqa: BLE001 - charts.py is being written: say so, time the rest
        print(f"charts not timed: dashboard.charts does not import ({type(exc).__name__}: {exc})")
        return {}
    from dashboard import queries as q
    from db.engine import get_reader

    engine = get_reader(url)
    points = q.campaign_points(engine, t["campaign"])
    nodes = q.trajectory_nodes(engine, t["trajectory_id"])
    info = q.campaign_info(engine, t["campaign"])
    results = (q.comparison_detail(engine, t["comparison"]) or {}).get("results") or {}
    direction = t["direction"]
    plan: dict[str, list[tuple[str, Callable[[], Any]]]] = {}

    def progress() -> int:
        frame = charts.progress_frame(points, direction, t["seed_score"])
        charts.throughput(frame)
        lines, _hidden = charts.progress_lines(frame, "evaluations", direction)
        charts.progress_chart(lines, "evaluations", best_known=0.380924, x_title="evaluations").to_dict()
        charts.status_chart(info["eval_status"]).to_dict()
        return len(lines)

    def tree() -> int:
        placed, edges, _omitted = charts.tree_layout(nodes)
        charts.tree_chart(placed, edges, direction).to_dict()
        return len(placed)

    def comparison() -> int:
        chart = charts.comparison_chart(results)
        chart.to_dict()
        charts.comparison_table(results)
        return len(charts.comparison_lines(results))

    needs = {"campaign": ("progress_frame+progress_lines+progress_chart+status_chart .to_dict()", progress,
                          ("progress_frame", "progress_lines", "progress_chart", "status_chart", "throughput")),
             "trajectory": ("tree_layout+tree_chart .to_dict()", tree, ("tree_layout", "tree_chart")),
             "compare": ("comparison_chart .to_dict() + comparison_table", comparison,
                         ("comparison_chart", "comparison_table", "comparison_lines"))}
    for page, (label, fn, names) in needs.items():
        missing = [n for n in names if not hasattr(charts, n)]
        if missing:
            print(f"charts of the {page} page not timed: dashboard.charts has no {', '.join(missing)} yet")
            continue
        plan[page] = [(label, fn)]
    return plan


def time_chart(fn: Callable[[], int], repeats: int) -> tuple[float, float, int]:
    """(first ms, median of the next repeats ms, rows drawn)."""
    t0 = time.perf_counter()
    rows = fn()
    first = time.perf_counter() - t0
    rest = []
    for _ in range(max(1, repeats - 1)):
        t0 = time.perf_counter()
        fn()
        rest.append(time.perf_counter() - t0)
    return first * 1e3, statistics.median(rest) * 1e3, rows


# ---------------------------------------------------------------- whole pages


def _clear_caches() -> None:
    import streamlit as st

    from db.engine import dispose_engines

    st.cache_data.clear()
    st.cache_resource.clear()
    dispose_engines()


def page_params(page: str, t: dict[str, Any]) -> dict[str, str]:
    return {"campaigns": {}, "campaign": {"campaign": str(t["campaign"])},
            "trajectory": {"campaign": str(t["campaign"]), "trajectory": str(t["trajectory_index"])},
            "candidate": {"candidate": str(t["candidate"])}, "compare": {"comparison": str(t["comparison"])},
            "export": {}}[page]


def _problems(at) -> list[str]:
    out = [f"exception: {e.value}" for e in at.exception]
    out += [f"st.error: {e.value}" for e in at.error]
    return out


def time_page(url: str, page: str, t: dict[str, Any], ttl_rerun: bool = True) -> tuple[dict[str, float], list[str]]:
    """One page through AppTest, Streamlit's caches and the engines cleared first; ms of
    first (cold caches), warm (the faster of two immediate reruns: the first run may outlast the
    live totals' TTL) and ttl (a rerun once the live totals' TTL has expired: what a click after
    a few seconds of reading costs); and the problems the page showed."""
    from streamlit.testing.v1 import AppTest

    from dashboard.state import LIVE_TTL_S

    os.environ["DISCOVERY_DB_URL"] = url
    at = AppTest.from_file(str(APP), default_timeout=PAGE_TIMEOUT_S)
    at.run()  # AppTest needs one run before switch_page; then the caches it filled are dropped
    _clear_caches()
    at.switch_page(f"views/{page}.py")
    for name, value in page_params(page, t).items():
        at.query_params[name] = value
    out: dict[str, float] = {}

    def run(key: str) -> None:
        t0 = time.perf_counter()
        at.run()
        out[key] = (time.perf_counter() - t0) * 1e3

    run("first")
    problems = _problems(at)
    run("warm")
    again = out["warm"]
    run("warm")
    out["warm"] = min(out["warm"], again)
    if ttl_rerun:
        time.sleep(LIVE_TTL_S + 0.2)
        run("ttl")
    problems += [p for p in _problems(at) if p not in problems]
    return out, problems


# ---------------------------------------------------------------- main


def measure(url: str, repeats: int) -> tuple[dict[tuple[str, str], tuple[float, float, int]], list[str], dict]:
    """Every measurement of one database, keyed by (page, label); and the problems seen."""
    t = targets(url)
    results: dict[tuple[str, str], tuple[float, float, int]] = {}
    seen: dict[str, tuple[float, float, int]] = {}
    for page, queries in query_plan(t).items():
        for label, fn in queries:
            if label not in seen:  # a query several pages make is timed once
                seen[label] = time_query(url, fn, repeats)
            results[(page, label)] = seen[label]
    problems: list[str] = []
    for page, steps in chart_plan(url, t).items():
        for label, fn in steps:
            try:
                results[(page, label)] = time_chart(fn, repeats)
            except Exception as exc:  # noqa: BLE001 - charts.py is being written: say so, time the rest
                problems.append(f"{page}: chart {label}: {type(exc).__name__}: {str(exc).splitlines()[0]}")
    for page in PAGES:
        try:
            ms, issues = time_page(url, page, t)
        except Exception as exc:  # noqa: BLE001 - a page that does not run yet: say so, keep the rest
            problems.append(f"{page}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            continue
        results[(page, PAGE_RUN)] = (ms["first"], ms["warm"], 0)
        results[(page, PAGE_TTL)] = (float("nan"), ms["ttl"], 0)
        problems += [f"{page}: {p}" for p in issues]
    _clear_caches()
    return results, problems, t


def warm_up(folder: Path) -> None:
    """Every page once on a small database: imports and first-use costs are not counted."""
    from db.engine import dispose_engines
    from export_scale import build_db

    path = folder / "warm-up.db"
    if path.exists():
        path.unlink()
    build_db(f"sqlite:///{path}", 200, chains=(2, 2), k=2, shares=(0.5, 0.5))
    seed_comparison(f"sqlite:///{path}")
    dispose_engines()
    url = f"sqlite:///{path}"
    t = targets(url)
    for page in PAGES:
        try:
            time_page(url, page, t, ttl_rerun=False)
        except Exception:  # noqa: BLE001 - reported by the measured runs
            pass
    for steps in chart_plan(url, t).values():
        for _label, fn in steps:
            try:
                fn()
            except Exception:  # noqa: BLE001 - reported by the measured runs
                pass
    _clear_caches()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000", help="Comma-separated numbers of stored steps (two or more).")
    ap.add_argument("--repeats", type=int, default=3, help="Repeats per query (medians are printed).")
    ap.add_argument("--keep", metavar="DIR", help="Keep the databases in DIR (and reuse those already there).")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    logging.disable(logging.WARNING)  # AppTest's "no runtime found" notices (page exceptions are collected)

    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-dashboard-"))
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        built = {}
        for n in sizes:
            path = folder / f"dashboard-{n}.db"
            counts, build_s, reused = build(path, n)
            built[n] = (path, counts, build_s, reused)
        warm_up(folder)
        measured = {}
        for n in sizes:
            t0 = time.perf_counter()
            measured[n] = measure(f"sqlite:///{built[n][0]}", args.repeats)
            measured[n] = (*measured[n], time.perf_counter() - t0)
        report(sizes, built, measured, args, time.perf_counter() - start)
    finally:
        from db.engine import dispose_engines

        dispose_engines()
        if args.keep:
            print(f"kept: {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


def report(sizes, built, measured, args, total_s: float) -> None:
    import platform

    import sqlite3

    import streamlit

    print(f"cores {os.cpu_count()}; Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
          f"Streamlit {streamlit.__version__}; repeats {args.repeats}")
    print(f"campaigns: {len(SHARES)} SimpleTES-like, shares of the steps {'/'.join(f'{s:.0%}' for s in SHARES)}, "
          f"C={'/'.join(map(str, CHAINS))}, K={K}, prompts ~3 KB; 1 stored comparison over them")
    for n in sizes:
        path, counts, build_s, reused = built[n]
        t = measured[n][2]
        how = "reused" if reused else f"built in {build_s:.1f} s"
        print(f"{n} steps: {counts['candidates']} candidates, {counts['evaluations']} evaluations; "
              f"SQLite file {path.stat().st_size / 2**20:.1f} MiB ({how}); pages opened on campaign {t['campaign']}, "
              f"trajectory {t['trajectory_index']} (id {t['trajectory_id']}), candidate {t['candidate']}, "
              f"comparison {t['comparison']}; measured in {measured[n][3]:.1f} s")
    small, big = sizes[0], sizes[-1]
    ks, kb = f"{small // 1000}k", f"{big // 1000}k"
    header = (f"| page | query/step | rows {ks} | rows {kb} | {ks} cold ms | {ks} warm ms | "
              f"{kb} cold ms | {kb} warm ms | ratio warm {kb}/{ks} |")
    print()
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    keys = list(dict.fromkeys(k for n in sizes for k in measured[n][0]))
    order = {p: i for i, p in enumerate(PAGES)}
    keys.sort(key=lambda k: order[k[0]])  # stable: page order, then queries, charts, whole page
    for page, label in keys:
        a = measured[small][0].get((page, label))
        b = measured[big][0].get((page, label))

        def cell(m, i, fmt="{:.1f}"):
            return "-" if m is None or m[i] != m[i] else fmt.format(m[i])

        rows_a = "" if label.startswith("whole page") else cell(a, 2, "{:d}")
        rows_b = "" if label.startswith("whole page") else cell(b, 2, "{:d}")
        ratio = "-" if a is None or b is None or a[1] <= 0 else f"{b[1] / a[1]:.1f}"
        first = keys.index(next(k for k in keys if k[1] == label)) == keys.index((page, label))
        if not first and not label.startswith("whole page"):
            label += " (timed once)"
        print(f"| {page} | {label} | {rows_a} | {rows_b} | {cell(a, 0)} | {cell(a, 1)} | {cell(b, 0)} | "
              f"{cell(b, 1)} | {ratio} |")
    print()
    print("cold/warm: queries = first call on a fresh engine / second call (medians); charts = first call / "
          "median of the next; whole page = first at.run() after clearing Streamlit's caches / the faster of two "
          "immediate reruns; rerun after the live TTL = one more rerun after sleeping the live totals' TTL "
          "(dashboard.state.LIVE_TTL_S) + 0.2 s")
    for n in sizes:
        for p in measured[n][1]:
            print(f"problem at {n} steps: {p}")
    print(f"total {total_s:.0f} s")


if __name__ == "__main__":
    main()
