"""dashboard.charts: exact values on hand-built frames, row budgets, and the Vega-Lite specs."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dashboard import charts as C
from discovery import comparison as cmp
from discovery.comparison import RunData, Sample

NAN = float("nan")
REPO = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- builders and spec helpers


def make_points(rows):
    """rows: (step_id, trajectory, t_seconds, cost_usd, candidate_id|None, eval_status|None, score|None)."""
    t0 = pd.Timestamp("2025-01-01T12:00:00Z")
    return pd.DataFrame(
        {
            "step_id": [r[0] for r in rows],
            "trajectory": [r[1] for r in rows],
            "trajectory_id": [100 + r[1] for r in rows],
            "created_at": pd.to_datetime([t0 + pd.Timedelta(seconds=r[2]) for r in rows], utc=True),
            "cost_usd": [float(r[3]) for r in rows],
            "candidate_id": pd.array([r[4] for r in rows], dtype="Int64"),
            "eval_status": pd.Series([r[5] for r in rows], dtype=object),
            "score": [NAN if r[6] is None else float(r[6]) for r in rows],
        }
    )


# step, trajectory, t, cost, candidate, status, score
CAMPAIGN = [
    (1, 0, 0, 0.1, 1, "ok", 1.0),
    (2, 1, 10, 0.2, None, None, None),  # failed LLM call: costs money, no evaluation
    (3, 1, 20, 0.1, 3, "invalid", None),
    (4, 0, 30, 0.0, 4, "ok", 0.5),
    (5, 1, 40, 0.3, 5, "ok", 2.0),
    (6, 0, 50, 0.1, 6, "ok", 3.0),
    (7, 1, 60, 0.1, 7, None, None),  # not evaluated yet
]


def make_nodes(rows):
    """rows: (step_id, index, sample, step_status, candidate|None, parent|None, eval_status|None, score|None)."""
    return pd.DataFrame(
        {
            "step_id": [r[0] for r in rows],
            "index": [r[1] for r in rows],
            "sample": [r[2] for r in rows],
            "mode": ["explore"] * len(rows),
            "step_status": [r[3] for r in rows],
            "committed": pd.Series([None] * len(rows), dtype=object),
            "candidate_id": pd.array([r[4] for r in rows], dtype="Int64"),
            "parent_candidate_id": pd.array([r[5] for r in rows], dtype="Int64"),
            "eval_status": pd.Series([r[6] for r in rows], dtype=object),
            "score": [NAN if r[7] is None else float(r[7]) for r in rows],
        }
    )


# A SimpleTES-like trajectory: 2 moves x 3 samples; move 0 starts from the seed (#1), move 1 from #101.
TREE = [
    (10, 0, 0, "ok", 100, 1, "ok", 1.0),
    (11, 0, 1, "ok", 101, 1, "ok", 2.0),
    (12, 0, 2, "parse_error", None, 1, None, None),
    (13, 1, 0, "ok", 103, 101, "invalid", None),
    (14, 1, 1, "ok", 104, 101, "ok", 3.0),
    (15, 1, 2, "llm_error", None, 101, None, None),
]


def layers(spec):
    """All unit views of a chart spec (layers flattened), in drawing order."""
    if "layer" in spec:
        out = []
        for sub in spec["layer"]:
            out.extend(layers(sub))
        return out
    return [spec]


def mark_type(view):
    mark = view["mark"]
    return mark if isinstance(mark, str) else mark["type"]


def mark_prop(view, key):
    mark = view["mark"]
    return None if isinstance(mark, str) else mark.get(key)


def dataset_sizes(spec):
    return {name: len(values) for name, values in spec.get("datasets", {}).items()}


def tooltip_fields(view):
    tip = view["encoding"]["tooltip"]
    return [t["field"] for t in (tip if isinstance(tip, list) else [tip])]


def values(series):
    """A list with NaN/NA as None, for exact comparisons."""
    return [None if (v is pd.NA or (isinstance(v, float) and math.isnan(v))) else v for v in series.tolist()]


# ---------------------------------------------------------------- purity


def test_module_imports_no_database_flow_or_streamlit_code():
    code = (
        "import sys, dashboard.charts; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'db', 'flows', 'streamlit', 'sqlalchemy', 'prefect'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"
    assert C.better(2.0, 1.0, "maximize") and C.better(1.0, 2.0, "minimize")


# ---------------------------------------------------------------- progress_frame


def test_progress_frame_keeps_evaluated_rows_with_counters_and_maximise_bests():
    f = C.progress_frame(make_points(CAMPAIGN), "maximize")
    assert list(f.columns) == C.PROGRESS_COLUMNS
    assert f["step_id"].tolist() == [1, 3, 4, 5, 6]
    assert f["trajectory"].tolist() == [0, 1, 0, 1, 0]
    assert values(f["candidate_id"]) == [1, 3, 4, 5, 6]
    assert f["eval_status"].tolist() == ["ok", "invalid", "ok", "ok", "ok"]
    assert f["evaluations"].tolist() == [1, 2, 3, 4, 5]
    assert f["elapsed_s"].tolist() == [0.0, 20.0, 30.0, 40.0, 50.0]
    # cumulative over ALL steps, including the failed call of step 2
    assert f["cost_usd"].tolist() == pytest.approx([0.1, 0.4, 0.4, 0.7, 0.8])
    assert values(f["best"]) == [1.0, 1.0, 1.0, 2.0, 3.0]
    assert values(f["trajectory_best"]) == [1.0, None, 1.0, 2.0, 3.0]
    assert values(f["score"]) == [1.0, None, 0.5, 2.0, 3.0]


def test_progress_frame_minimise():
    f = C.progress_frame(make_points(CAMPAIGN), "minimize")
    assert values(f["best"]) == [1.0, 1.0, 0.5, 0.5, 0.5]
    assert values(f["trajectory_best"]) == [1.0, None, 0.5, 2.0, 0.5]


@pytest.mark.parametrize(
    "direction, seed, expected",
    [
        ("maximize", 1.5, [1.5, 1.5, 1.5, 2.0, 3.0]),
        ("maximize", 10.0, [10.0] * 5),
        ("minimize", 1.5, [1.0, 1.0, 0.5, 0.5, 0.5]),
        ("minimize", 0.2, [0.2] * 5),
        ("maximize", None, [1.0, 1.0, 1.0, 2.0, 3.0]),
        ("maximize", NAN, [1.0, 1.0, 1.0, 2.0, 3.0]),
    ],
)
def test_progress_frame_starts_the_campaign_best_from_the_seed(direction, seed, expected):
    f = C.progress_frame(make_points(CAMPAIGN), direction, seed_score=seed)
    assert values(f["best"]) == expected
    # the seed never enters the per-trajectory best
    first = C.progress_frame(make_points(CAMPAIGN), direction)
    assert values(f["trajectory_best"]) == values(first["trajectory_best"])


def test_progress_frame_ignores_scores_that_are_not_ok_and_nan_ok_scores():
    rows = [
        (1, 0, 0, 0.0, 1, "invalid", 99.0),  # a score on a non-ok row does not count
        (2, 0, 1, 0.0, 2, "ok", None),  # an ok row without a score does not count
        (3, 0, 2, 0.0, 3, "timeout", None),
        (4, 0, 3, 0.0, 4, "ok", -1.0),
        (5, 0, 4, 0.0, 5, "ok", float("inf")),
    ]
    f = C.progress_frame(make_points(rows), "maximize")
    assert values(f["best"]) == [None, None, None, -1.0, -1.0]
    assert values(f["trajectory_best"]) == [None, None, None, -1.0, -1.0]
    g = C.progress_frame(make_points(rows), "maximize", seed_score=-5.0)
    assert values(g["best"]) == [-5.0, -5.0, -5.0, -1.0, -1.0]


def test_progress_frame_sorts_by_step_and_measures_time_from_the_first_step_even_if_unevaluated():
    rows = [
        (9, 0, 100, 1.0, 9, "ok", 5.0),
        (2, 0, 40, 0.5, None, None, None),  # the earliest step: no evaluation
        (4, 0, 70, 0.25, 4, "ok", 7.0),
    ]
    f = C.progress_frame(make_points(rows), "maximize")
    assert f["step_id"].tolist() == [4, 9]
    assert f["elapsed_s"].tolist() == [30.0, 60.0]
    assert f["cost_usd"].tolist() == [0.75, 1.75]
    assert values(f["best"]) == [7.0, 7.0]
    assert f["evaluations"].tolist() == [1, 2]


def test_progress_frame_empty_and_all_unevaluated():
    empty = C.progress_frame(make_points([]), "maximize")
    assert empty.empty and list(empty.columns) == C.PROGRESS_COLUMNS
    none = C.progress_frame(make_points([(1, 0, 0, 0.1, None, None, None)]), "maximize", seed_score=1.0)
    assert none.empty and list(none.columns) == C.PROGRESS_COLUMNS


def test_progress_frame_rejects_an_unknown_direction():
    with pytest.raises(ValueError):
        C.progress_frame(make_points(CAMPAIGN), "up")


# ---------------------------------------------------------------- progress_lines


def line_rows(lines, name):
    part = lines[lines["line"] == name]
    return list(zip(part["x"].tolist(), part["y"].tolist(), part["improvement"].tolist()))


def test_progress_lines_keep_exactly_the_improvements_and_the_last_point_maximise():
    f = C.progress_frame(make_points(CAMPAIGN), "maximize")
    lines, hidden = C.progress_lines(f, "evaluations", "maximize")
    assert hidden == 0
    assert list(lines.columns) == C.LINE_COLUMNS
    assert list(dict.fromkeys(lines["line"])) == ["best overall", "trajectory 0", "trajectory 1"]
    assert line_rows(lines, "best overall") == [(1, 1.0, True), (4, 2.0, True), (5, 3.0, True)]
    assert line_rows(lines, "trajectory 0") == [(1, 1.0, True), (5, 3.0, True)]
    assert line_rows(lines, "trajectory 1") == [(4, 2.0, True)]
    best = lines[lines["line"] == "best overall"]
    assert best["step_id"].tolist() == [1, 5, 6]
    assert values(best["candidate_id"]) == [1, 5, 6]


def test_progress_lines_minimise_keep_a_last_point_that_is_not_an_improvement():
    f = C.progress_frame(make_points(CAMPAIGN), "minimize")
    lines, hidden = C.progress_lines(f, "evaluations", "minimize")
    assert hidden == 0
    assert line_rows(lines, "best overall") == [(1, 1.0, True), (3, 0.5, True), (5, 0.5, False)]
    assert line_rows(lines, "trajectory 0") == [(1, 1.0, True), (3, 0.5, True), (5, 0.5, False)]
    assert line_rows(lines, "trajectory 1") == [(4, 2.0, True)]


def test_progress_lines_seed_start_is_the_first_point_of_the_best_line():
    f = C.progress_frame(make_points(CAMPAIGN), "maximize", seed_score=1.5)
    lines, _ = C.progress_lines(f, "evaluations", "maximize")
    assert line_rows(lines, "best overall") == [(1, 1.5, True), (4, 2.0, True), (5, 3.0, True)]


@pytest.mark.parametrize(
    "x, expected",
    [("elapsed_s", [0.0, 40.0, 50.0]), ("cost_usd", [0.1, 0.7, 0.8]), ("evaluations", [1.0, 4.0, 5.0])],
)
def test_progress_lines_use_the_chosen_x(x, expected):
    f = C.progress_frame(make_points(CAMPAIGN), "maximize")
    lines, _ = C.progress_lines(f, x, "maximize")
    assert lines.loc[lines["line"] == "best overall", "x"].tolist() == pytest.approx(expected)


def test_progress_lines_reject_an_unknown_x():
    f = C.progress_frame(make_points(CAMPAIGN), "maximize")
    with pytest.raises(ValueError):
        C.progress_lines(f, "tokens", "maximize")


def five_trajectories():
    # finals: t0 = 1, t1 = 5, t2 = 3, t3 = never valid, t4 = 4
    rows = [
        (1, 0, 0, 0, 1, "ok", 1.0),
        (2, 1, 1, 0, 2, "ok", 5.0),
        (3, 2, 2, 0, 3, "ok", 3.0),
        (4, 3, 3, 0, 4, "error", None),
        (5, 4, 4, 0, 5, "ok", 4.0),
    ]
    return make_points(rows)


@pytest.mark.parametrize(
    "direction, kept",
    [("maximize", ["trajectory 1", "trajectory 4"]), ("minimize", ["trajectory 0", "trajectory 2"])],
)
def test_progress_lines_keep_the_best_trajectories_when_there_are_too_many(direction, kept):
    f = C.progress_frame(five_trajectories(), direction)
    lines, hidden = C.progress_lines(f, "evaluations", direction, max_lines=2)
    assert hidden == 3
    assert list(dict.fromkeys(lines["line"])) == ["best overall"] + kept


def test_progress_lines_hide_never_valid_trajectories_first():
    f = C.progress_frame(five_trajectories(), "maximize")
    lines, hidden = C.progress_lines(f, "evaluations", "maximize", max_lines=4)
    assert hidden == 1
    assert "trajectory 3" not in set(lines["line"])
    lines, hidden = C.progress_lines(f, "evaluations", "maximize", max_lines=5)
    assert hidden == 0  # not hidden, just nothing to draw
    assert "trajectory 3" not in set(lines["line"])


def test_progress_lines_of_a_big_campaign_stay_under_the_row_limit():
    n = 20_000
    rows = [(i + 1, i % 3, i, 0.001, i + 1, "ok", float(i)) for i in range(n)]  # improves every step
    f = C.progress_frame(make_points(rows), "maximize")
    lines, hidden = C.progress_lines(f, "evaluations", "maximize")
    assert hidden == 0
    assert len(lines) <= C.MAX_ROWS
    best = lines[lines["line"] == "best overall"]
    assert best["x"].iloc[0] == 1 and best["x"].iloc[-1] == n  # first and last kept
    assert best["y"].iloc[-1] == n - 1
    assert best["y"].is_monotonic_increasing and best["x"].is_monotonic_increasing
    for t in range(3):
        part = lines[lines["line"] == f"trajectory {t}"]
        assert part["y"].iloc[-1] == max(i for i in range(n) if i % 3 == t)
    C.progress_chart(lines, "evaluations").to_dict()  # Altair's own 5000-row check passes


def test_progress_lines_without_any_valid_score_draw_nothing_but_the_seed():
    rows = [(1, 0, 0, 0.0, 1, "error", None), (2, 1, 1, 0.0, 2, "invalid", None)]
    f = C.progress_frame(make_points(rows), "minimize")
    lines, hidden = C.progress_lines(f, "evaluations", "minimize")
    assert lines.empty and hidden == 0 and list(lines.columns) == C.LINE_COLUMNS
    C.progress_chart(lines, "evaluations").to_dict()
    f = C.progress_frame(make_points(rows), "minimize", seed_score=3.0)
    lines, _ = C.progress_lines(f, "evaluations", "minimize")
    assert line_rows(lines, "best overall") == [(1, 3.0, True), (2, 3.0, False)]


def test_progress_lines_of_an_empty_frame():
    lines, hidden = C.progress_lines(C.progress_frame(make_points([]), "maximize"), "evaluations", "maximize")
    assert lines.empty and hidden == 0 and list(lines.columns) == C.LINE_COLUMNS


# ---------------------------------------------------------------- progress_chart


def test_progress_chart_spec_with_best_known():
    f = C.progress_frame(make_points(CAMPAIGN), "maximize")
    lines, _ = C.progress_lines(f, "cost_usd", "maximize")
    spec = C.progress_chart(lines, "cost_usd", best_known=4.25).to_dict()
    views = layers(spec)
    assert [mark_type(v) for v in views] == ["line", "circle", "rule", "text"]
    step, dots, rule, text = views
    assert mark_prop(step, "interpolate") == "step-after"
    assert step["encoding"]["color"]["field"] == "line"
    assert step["encoding"]["color"]["scale"]["domain"] == ["best overall", "trajectory 0", "trajectory 1"]
    width = step["encoding"]["strokeWidth"]
    (cond,) = width["condition"] if isinstance(width["condition"], list) else [width["condition"]]
    assert cond["value"] == 3.0 and width["value"] == 1.5
    assert "best overall" in cond["test"]
    assert step["encoding"]["x"]["title"] == C.X_TITLES["cost_usd"]
    assert dots["transform"] == [{"filter": "datum.improvement"}]
    assert tooltip_fields(dots) == ["line", "x", "y", "step_id", "candidate_id"]
    assert mark_prop(rule, "strokeDash") == [6, 4]
    assert rule["encoding"]["y"]["field"] == "y"
    data = spec["datasets"]
    (rule_data,) = [v for v in data.values() if len(v) == 1 and "label" in v[0]]
    assert rule_data[0]["y"] == 4.25 and "best known" in rule_data[0]["label"]
    assert text["encoding"]["text"]["field"] == "label"
    assert len(spec["datasets"]) == 2
    assert max(dataset_sizes(spec).values()) == len(lines)


def test_progress_chart_without_best_known_has_no_rule_and_honours_x_title():
    f = C.progress_frame(make_points(CAMPAIGN), "maximize")
    lines, _ = C.progress_lines(f, "elapsed_s", "maximize")
    spec = C.progress_chart(lines, "elapsed_s", best_known=None, x_title="seconds").to_dict()
    views = layers(spec)
    assert [mark_type(v) for v in views] == ["line", "circle"]
    assert views[0]["encoding"]["x"]["title"] == "seconds"
    assert len(spec["datasets"]) == 1


def test_progress_chart_of_empty_lines_renders():
    lines, _ = C.progress_lines(C.progress_frame(make_points([]), "maximize"), "evaluations", "maximize")
    spec = C.progress_chart(lines, "evaluations", best_known=1.0).to_dict()
    assert [mark_type(v) for v in layers(spec)] == ["line", "circle", "rule", "text"]


# ---------------------------------------------------------------- status_chart


def test_status_chart_orders_and_colours_statuses():
    counts = {"error": 2, "weird": 1, "ok": 10, "killed": 1, None: 3, "invalid": 4, "timeout": 0}
    spec = C.status_chart(counts).to_dict()
    bars, text = layers(spec)
    assert mark_type(bars) == "bar" and mark_type(text) == "text"
    colour = bars["encoding"]["color"]
    order = ["ok", "invalid", "error", "timeout", "killed", "weird", "not evaluated"]
    assert colour["scale"]["domain"] == order
    assert colour["scale"]["range"] == ["#2ca02c", "#ff7f0e", "#d62728", "#9467bd", "#8b0000", "#9e9e9e", "#9e9e9e"]
    enc = spec["encoding"] if "encoding" in spec else bars["encoding"]
    assert enc["y"]["field"] == "status" and enc["y"]["sort"] == order
    assert enc["x"]["field"] == "count"
    (data,) = spec["datasets"].values()
    assert {r["status"]: r["count"] for r in data} == {
        "ok": 10, "invalid": 4, "error": 2, "timeout": 0, "killed": 1, "weird": 1, "not evaluated": 3,
    }


def test_status_chart_of_no_counts_renders():
    spec = C.status_chart({}).to_dict()
    assert [mark_type(v) for v in layers(spec)] == ["bar", "text"]


# ---------------------------------------------------------------- throughput


def test_throughput_overall_and_recent():
    frame = pd.DataFrame({"elapsed_s": [60.0 * i for i in range(11)]})  # 11 evaluations over 10 minutes
    t = C.throughput(frame, window_s=300.0)
    assert t["evaluations"] == 11
    assert t["per_min"] == pytest.approx(1.1)
    assert t["recent_per_min"] == pytest.approx(1.0)  # 360..600 s: 5 in 5 minutes


def test_throughput_recent_counts_a_burst_at_the_end():
    frame = pd.DataFrame({"elapsed_s": [0.0, 10.0] + [590.0 + i for i in range(10)]})
    t = C.throughput(frame, window_s=60.0)
    assert t["per_min"] == pytest.approx(12 / (599.0 / 60.0))
    assert t["recent_per_min"] == pytest.approx(10.0)


def test_throughput_until_a_later_end_sees_a_stall():
    frame = pd.DataFrame({"elapsed_s": [0.0, 60.0, 120.0]})
    t = C.throughput(frame, window_s=300.0, end_s=600.0)
    assert t["per_min"] == pytest.approx(0.3)
    assert t["recent_per_min"] == 0.0


def test_throughput_short_single_and_empty():
    assert C.throughput(pd.DataFrame({"elapsed_s": [0.0, 30.0, 60.0]}), window_s=300.0) == {
        "evaluations": 3, "per_min": pytest.approx(3.0), "recent_per_min": None,
    }
    one = C.throughput(pd.DataFrame({"elapsed_s": [5.0]}))
    assert one == {"evaluations": 1, "per_min": pytest.approx(12.0), "recent_per_min": None}
    at_start = C.throughput(pd.DataFrame({"elapsed_s": [0.0]}))
    assert at_start == {"evaluations": 1, "per_min": None, "recent_per_min": None}
    empty = C.progress_frame(make_points([]), "maximize")
    assert C.throughput(empty) == {"evaluations": 0, "per_min": None, "recent_per_min": None}


def test_throughput_on_a_progress_frame():
    f = C.progress_frame(make_points(CAMPAIGN), "maximize")
    t = C.throughput(f, window_s=30.0)
    assert t["per_min"] == pytest.approx(5 / (50 / 60))
    assert t["recent_per_min"] == pytest.approx(3 / 0.5)  # 30, 40 and 50 s are within (20, 50]


# ---------------------------------------------------------------- tree_layout


def test_tree_layout_places_a_small_tree_exactly():
    placed, edges, omitted = C.tree_layout(make_nodes(TREE))
    assert omitted == 0
    assert list(placed.columns) == list(make_nodes(TREE).columns) + ["x", "y", "label", "external"]
    assert values(placed["candidate_id"]) == [1, 100, 101, None, 103, 104, None]
    assert values(placed["step_id"]) == [None, 10, 11, 12, 13, 14, 15]
    assert placed["x"].tolist() == [-1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    assert placed["y"].tolist() == [0.0, -1.0, 0.0, 1.0, -1.0, 0.0, 1.0]
    assert placed["external"].tolist() == [True] + [False] * 6
    assert placed["label"].tolist() == [
        "seed/other #1", "#100", "#101", "0.2 parse_error", "#103", "#104", "1.2 llm_error",
    ]
    # one edge per step with a parent, from the parent's position to the child's
    assert list(edges.columns) == C.EDGE_COLUMNS
    got = list(zip(edges["x"], edges["y"], edges["x2"], edges["y2"], values(edges["candidate_id"])))
    assert got == [
        (-1.0, 0.0, 0.0, -1.0, 100),
        (-1.0, 0.0, 0.0, 0.0, 101),
        (-1.0, 0.0, 0.0, 1.0, None),  # the parse error still hangs off its parent
        (0.0, 0.0, 1.0, -1.0, 103),
        (0.0, 0.0, 1.0, 0.0, 104),
        (0.0, 0.0, 1.0, 1.0, None),
    ]
    assert edges["step_id"].tolist() == [10, 11, 12, 13, 14, 15]


def test_tree_layout_chain_with_several_external_parents_and_unsorted_input():
    # an ExIt-like chain: one node per move; moves 0 and 2 start from programs of other trajectories
    rows = [
        (23, 2, 0, "ok", 203, 7, "ok", 1.0),
        (21, 0, 0, "ok", 201, 9, "ok", 0.5),
        (22, 1, 0, "ok", 202, 201, "error", None),
        (24, 3, 0, "ok", 204, 203, None, None),
        (25, 4, 0, "ok", 205, 9, "ok", 0.1),
    ]
    placed, edges, omitted = C.tree_layout(make_nodes(rows))
    assert omitted == 0
    assert values(placed["candidate_id"]) == [7, 9, 201, 202, 203, 204, 205]
    assert placed["x"].tolist() == [-1.0, -1.0, 0.0, 1.0, 2.0, 3.0, 4.0]
    assert placed["y"].tolist() == [-0.5, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0]
    assert placed["label"].tolist()[:2] == ["seed/other #7", "seed/other #9"]
    got = list(zip(edges["x"], edges["y"], edges["x2"], edges["y2"], values(edges["candidate_id"])))
    assert got == [
        (-1.0, 0.5, 0.0, 0.0, 201),
        (0.0, 0.0, 1.0, 0.0, 202),
        (-1.0, -0.5, 2.0, 0.0, 203),
        (2.0, 0.0, 3.0, 0.0, 204),
        (-1.0, 0.5, 4.0, 0.0, 205),  # one root per distinct external parent
    ]


def test_tree_layout_node_without_parent_has_no_edge():
    rows = [(1, 0, 0, "llm_error", None, None, None, None), (2, 0, 1, "ok", 5, None, "ok", 1.0)]
    placed, edges, omitted = C.tree_layout(make_nodes(rows))
    assert len(placed) == 2 and not placed["external"].any()
    assert placed["y"].tolist() == [-0.5, 0.5]
    assert edges.empty and list(edges.columns) == C.EDGE_COLUMNS


def test_tree_layout_keeps_the_last_nodes_and_the_roots_they_need():
    placed, edges, omitted = C.tree_layout(make_nodes(TREE), max_nodes=2)
    assert omitted == 4
    assert values(placed["candidate_id"]) == [101, 104, None]
    assert values(placed["step_id"]) == [None, 14, 15]
    assert placed["external"].tolist() == [True, False, False]
    # "earlier": a left-out program of this trajectory
    assert placed["label"].tolist() == ["earlier #101", "#104", "1.2 llm_error"]
    assert placed["x"].tolist() == [0.0, 1.0, 1.0]  # the root column sits just before the first kept move
    assert placed["y"].tolist() == [0.0, -0.5, 0.5]  # ranks among the kept nodes of the move
    assert list(zip(edges["x"], edges["y"], edges["x2"], edges["y2"])) == [(0.0, 0.0, 1.0, -0.5), (0.0, 0.0, 1.0, 0.5)]


def test_tree_layout_truncation_with_a_kept_parent_needs_no_root():
    placed, edges, omitted = C.tree_layout(make_nodes(TREE), max_nodes=5)
    assert omitted == 1
    assert values(placed["candidate_id"]) == [1, 101, None, 103, 104, None]
    assert placed["external"].tolist() == [True] + [False] * 5
    assert placed["label"].tolist()[0] == "seed/other #1"
    assert placed["x"].tolist() == [-1.0, 0.0, 0.0, 1.0, 1.0, 1.0]  # as in the full layout: before move 0
    assert placed["y"].tolist() == [0.0, -0.5, 0.5, -1.0, 0.0, 1.0]
    assert len(edges) == 5


def test_tree_layout_truncation_needs_both_a_seed_root_and_an_earlier_root():
    placed, edges, omitted = C.tree_layout(make_nodes(TREE), max_nodes=4)
    assert omitted == 2
    assert values(placed["candidate_id"]) == [1, 101, None, 103, 104, None]
    assert placed["external"].tolist() == [True, True, False, False, False, False]
    assert placed["label"].tolist()[:2] == ["seed/other #1", "earlier #101"]
    assert placed["x"].tolist() == [-1.0, -1.0, 0.0, 1.0, 1.0, 1.0]
    assert placed["y"].tolist() == [-0.5, 0.5, 0.0, -1.0, 0.0, 1.0]
    assert list(zip(edges["x"], edges["y"], edges["x2"], edges["y2"])) == [
        (-1.0, -0.5, 0.0, 0.0),
        (-1.0, 0.5, 1.0, -1.0),
        (-1.0, 0.5, 1.0, 0.0),
        (-1.0, 0.5, 1.0, 1.0),
    ]


def test_tree_layout_empty():
    placed, edges, omitted = C.tree_layout(make_nodes([]))
    assert placed.empty and edges.empty and omitted == 0
    assert {"x", "y", "label", "external"} <= set(placed.columns)
    C.tree_chart(placed, edges, "maximize").to_dict()


def big_tree(n, k=8):
    """SimpleTES-like: moves of k samples, each move starting from sample 0 of the previous move
    (the seed #1 for move 0); the last sample of every third move fails to parse."""
    i = np.arange(n)
    parent = np.where(i < k, 1, (i // k - 1) * k + 1000)
    failed = (i % k == k - 1) & ((i // k) % 3 == 0)
    return pd.DataFrame(
        {
            "step_id": i + 1,
            "index": i // k,
            "sample": i % k,
            "mode": "explore",
            "step_status": np.where(failed, "parse_error", "ok"),
            "committed": pd.Series([None] * n, dtype=object),
            "candidate_id": pd.array(i + 1000, dtype="Int64").astype("Int64"),
            "parent_candidate_id": pd.array(parent, dtype="Int64"),
            "eval_status": pd.Series(np.where(failed, None, "ok"), dtype=object),
            "score": np.where(failed, np.nan, np.random.default_rng(0).random(n)),
        }
    ).assign(candidate_id=lambda d: d["candidate_id"].mask(pd.Series(failed)))


def test_tree_layout_of_100k_nodes_keeps_the_latest_within_the_chart_limit():
    # (its speed is measured by bench/dashboard_scale.py, not asserted here)
    nodes = big_tree(100_000)
    placed, edges, omitted = C.tree_layout(nodes, max_nodes=len(nodes))
    assert omitted == 0 and len(placed) == 100_001 and len(edges) == 100_000
    placed, edges, omitted = C.tree_layout(nodes)
    assert omitted == 96_000
    assert len(placed) == 4001 and placed["external"].sum() == 1  # the kept moves need one earlier parent
    assert placed["step_id"].iloc[1] == 96_001 and placed["step_id"].iloc[-1] == 100_000
    assert len(placed) <= C.MAX_ROWS and len(edges) <= C.MAX_ROWS
    spec = C.tree_chart(placed, edges, "maximize").to_dict()  # within Altair's row limit
    assert sorted(dataset_sizes(spec).values()) == [1, 4000, 4001]  # roots, edges, nodes


# ---------------------------------------------------------------- tree_chart


@pytest.mark.parametrize("direction, reverse", [("maximize", False), ("minimize", True)])
def test_tree_chart_spec(direction, reverse):
    placed, edges, _ = C.tree_layout(make_nodes(TREE))
    spec = C.tree_chart(placed, edges, direction).to_dict()
    views = layers(spec)
    assert [mark_type(v) for v in views] == ["rule", "circle", "circle"]
    rule, circle, roots = views
    assert rule["encoding"]["x2"]["field"] == "x2" and rule["encoding"]["y2"]["field"] == "y2"
    # parents from outside the trajectory: their own grey layer, only the external rows
    assert roots["mark"]["color"] == C.ROOT_FILL
    (roots_data,) = [spec["datasets"][roots["data"]["name"]]]
    assert [r["label"] for r in roots_data] == ["seed/other #1"]
    # the samples a move kept (committed) get a thick outline
    width = circle["encoding"]["strokeWidth"]
    (kept,) = width["condition"]
    assert kept["test"] == "(datum.committed === true)" and kept["value"] > width["value"]
    # the click selection Streamlit reads
    (param,) = spec["params"]
    assert param["name"] == "node"
    assert param["select"] == {"type": "point", "fields": ["candidate_id"], "on": "click"}
    assert param["views"] == [circle["name"]]
    # filled by score, better brighter
    fill = circle["encoding"]["fill"]
    assert fill["condition"]["field"] == "score"
    assert fill["condition"]["scale"]["scheme"] == "viridis"
    assert fill["condition"]["scale"]["reverse"] is reverse
    assert fill["condition"]["test"] == "datum.has_score" and fill["value"] == "white"
    # no score: hollow with an outline by state
    stroke = circle["encoding"]["stroke"]
    assert stroke["field"] == "state" and stroke["condition"]["test"] == "datum.has_score"
    assert dict(zip(stroke["scale"]["domain"], stroke["scale"]["range"])) == {
        "invalid": C.STATUS_COLOURS["invalid"],
        "no program": C.NODE_STATE_COLOURS["no program"],
        "seed/other": C.NODE_STATE_COLOURS["seed/other"],
    }
    size = circle["encoding"]["size"]
    (picked,) = size["condition"] if isinstance(size["condition"], list) else [size["condition"]]
    assert picked["param"] == "node" and picked["empty"] is False and picked["value"] > size["value"]
    assert set(tooltip_fields(circle)) >= {"candidate_id", "index", "sample", "mode", "eval_status", "score"}
    # the node data carries the state of every node
    nodes_data = spec["datasets"][circle["data"]["name"]]
    assert [(r["candidate_id"], r["state"], r["has_score"]) for r in nodes_data] == [
        (1, "seed/other", False),
        (100, "ok", True),
        (101, "ok", True),
        (None, "no program", False),
        (103, "invalid", False),
        (104, "ok", True),
        (None, "no program", False),
    ]


def test_tree_chart_rejects_an_unknown_direction():
    placed, edges, _ = C.tree_layout(make_nodes(TREE))
    with pytest.raises(ValueError):
        C.tree_chart(placed, edges, "sideways")


def test_tree_chart_marks_unevaluated_candidates():
    rows = [(1, 0, 0, "ok", 5, None, None, None), (2, 0, 1, "ok", 6, None, "timeout", None)]
    placed, edges, _ = C.tree_layout(make_nodes(rows))
    spec = C.tree_chart(placed, edges, "maximize").to_dict()
    nodes_data = spec["datasets"][layers(spec)[1]["data"]["name"]]
    assert [r["state"] for r in nodes_data] == ["not evaluated", "timeout"]


# ---------------------------------------------------------------- comparison


def comparison_result(direction="maximize", target_pct=10.0, seed_score=1.0, n_long=0):
    runs = [
        RunData("greedy", 0, seed_score, [Sample(1, "ok", 1.5), Sample(2, "invalid", None), Sample(3, "ok", 2.0)]),
        RunData("greedy", 1, seed_score, [Sample(1, "ok", 0.5), Sample(2, "ok", 1.2)]),
        RunData("random", 0, seed_score, [Sample(1, "error", None), Sample(2, "ok", 1.05)]),
        RunData("random", 1, seed_score, [Sample(1, "ok", 1.1)]),
    ]
    if n_long:
        runs.append(RunData("long", 0, seed_score, [Sample(i, "ok", float(i)) for i in range(1, n_long + 1)]))
    names = ["random", "greedy"] + (["long"] if n_long else []) + ["failed"]
    return cmp.compare(runs, strategies=names, direction=direction, target_pct=target_pct, seeds_per_strategy=2)


def test_comparison_lines_from_the_real_producer():
    result = comparison_result()
    # greedy curves [1, 1.5, 1.5, 2.0] and [1, 1, 1.2] -> held [1, 1, 1.2, 1.2]
    assert result.bands["greedy"].median == [1.0, 1.25, 1.35, 1.6]
    lines = C.comparison_lines(result.to_dict())
    assert list(lines.columns) == C.BAND_COLUMNS
    assert list(dict.fromkeys(lines["strategy"])) == ["greedy", "random"]  # rank order; "failed" has no band
    greedy = lines[lines["strategy"] == "greedy"]
    assert greedy["x"].tolist() == [0, 1, 2, 3]
    assert greedy["median"].tolist() == pytest.approx([1.0, 1.25, 1.35, 1.6])
    assert greedy["low"].tolist() == [1.0, 1.0, 1.2, 1.2]
    assert greedy["high"].tolist() == [1.0, 1.5, 1.5, 2.0]
    assert greedy["rank"].tolist() == [1] * 4
    # random curves [1, 1, 1.05] and [1, 1.1] -> held [1, 1.1, 1.1]: x=2 changes only the median/low
    random = lines[lines["strategy"] == "random"]
    assert random["x"].tolist() == [0, 1, 2]
    assert random["median"].tolist() == pytest.approx([1.0, 1.05, 1.075])
    # the object and its dict give the same frame
    pd.testing.assert_frame_equal(lines, C.comparison_lines(result))


def test_comparison_lines_drop_repeated_values_but_keep_the_last_x():
    runs = [RunData("flat", 0, 1.0, [Sample(1, "ok", 2.0)] + [Sample(i, "ok", 0.5) for i in range(2, 50)])]
    result = cmp.compare(runs, strategies=["flat"], direction="maximize", target_pct=5.0)
    lines = C.comparison_lines(result.to_dict())
    assert lines["x"].tolist() == [0, 1, 49]
    assert lines["median"].tolist() == [1.0, 2.0, 2.0]


def test_comparison_lines_downsample_long_bands_keeping_first_and_last():
    result = comparison_result(n_long=3000)  # improves at every evaluation
    lines = C.comparison_lines(result.to_dict())
    long = lines[lines["strategy"] == "long"]
    assert len(long) <= C.COMPARISON_POINTS
    assert long["x"].iloc[0] == 0 and long["x"].iloc[-1] == 3000
    assert long["median"].iloc[-1] == 3000.0
    assert long["x"].is_monotonic_increasing
    # the thinned points are the band's own values
    assert (long["median"] == long["x"].astype(float)).iloc[1:].all()
    assert len(lines) <= C.MAX_ROWS


def test_comparison_lines_none_values_are_nan():
    runs = [RunData("bad", 0, None, [Sample(1, "error", None), Sample(2, "ok", 3.0)])]
    result = cmp.compare(runs, strategies=["bad"], direction="minimize", target_pct=5.0)
    lines = C.comparison_lines(result.to_dict())
    assert lines["x"].tolist() == [0, 2]
    assert values(lines["median"]) == [None, 3.0]
    assert values(lines["low"]) == [None, 3.0]


def test_comparison_chart_spec():
    result = comparison_result()
    spec = C.comparison_chart(result.to_dict()).to_dict()
    views = layers(spec)
    assert [mark_type(v) for v in views] == ["area", "line", "circle", "rule", "text", "rule", "text"]
    band, line, dots = views[:3]
    assert mark_prop(band, "interpolate") == "step-after" and mark_prop(line, "interpolate") == "step-after"
    assert band["encoding"]["y"]["field"] == "low" and band["encoding"]["y2"]["field"] == "high"
    assert line["encoding"]["y"]["field"] == "median"
    assert line["encoding"]["color"]["scale"]["domain"] == ["greedy", "random"]
    assert tooltip_fields(dots) == ["strategy", "x", "median", "low", "high"]
    assert "maximize" in line["encoding"]["y"]["title"]
    rules = [v for v in spec["datasets"].values() if len(v) == 1 and "label" in v[0]]
    assert sorted(r[0]["y"] for r in rules) == pytest.approx([1.0, 1.1])
    assert any(r[0]["label"].startswith("target: seed +10%") for r in rules)
    assert all(mark_prop(v, "strokeDash") == [6, 4] for v in views if mark_type(v) == "rule")


def test_comparison_chart_without_seed_or_target():
    spec = C.comparison_chart(comparison_result(seed_score=None).to_dict()).to_dict()
    assert [mark_type(v) for v in layers(spec)] == ["area", "line", "circle"]
    # target_pct 0: the target equals the seed, one rule only
    spec = C.comparison_chart(comparison_result(target_pct=0.0).to_dict()).to_dict()
    assert [mark_type(v) for v in layers(spec)] == ["area", "line", "circle", "rule", "text"]


def test_comparison_chart_minimise_target_label():
    spec = C.comparison_chart(comparison_result(direction="minimize").to_dict()).to_dict()
    labels = [v[0]["label"] for v in spec["datasets"].values() if len(v) == 1 and "label" in v[0]]
    assert any(label.startswith("target: seed -10% (0.9)") for label in labels)


def test_comparison_table_in_rank_order_with_readable_columns():
    result = comparison_result()
    table = C.comparison_table(result.to_dict())
    assert table["strategy"].tolist() == ["greedy", "random", "failed"]
    assert table["rank"].tolist() == [1, 2, 3]
    assert list(table.columns) == list(C.TABLE_COLUMNS.values())
    greedy = table.iloc[0]
    assert greedy["final best (median)"] == pytest.approx(1.6)
    assert greedy["final best (min)"] == 1.2 and greedy["final best (max)"] == 2.0
    assert greedy["reached target"] == "2/2"  # target 1.1: both greedy runs got there
    assert greedy["evals to target (median)"] == pytest.approx(1.5)  # at x=1 and x=2
    assert greedy["evaluations (median)"] == pytest.approx(2.5)
    assert table.iloc[1]["reached target"] == "1/2"  # random: 1.1 yes, 1.05 no
    failed = table.iloc[2]
    assert failed["completed runs"] == 0 and failed["runs"] == 2
    assert math.isnan(failed["final best (median)"]) and failed["reached target"] == "0/0"
    assert table["final best (median)"].dtype == float


def test_comparison_of_no_runs():
    result = cmp.compare([], strategies=["a"], direction="maximize", target_pct=5.0)
    assert C.comparison_lines(result.to_dict()).empty
    assert [mark_type(v) for v in layers(C.comparison_chart(result.to_dict()).to_dict())] == ["area", "line", "circle"]
    assert C.comparison_table(result.to_dict())["strategy"].tolist() == ["a"]


def test_tree_colour_domain_runs_from_the_best_to_the_90th_percentile_and_clamps():
    values = [0.40, 0.39, 0.41, 0.38, 0.42, 0.395, 0.405, 0.385, 0.39, 0.9]
    rows = [(i, i, 0, "ok", 100 + i, 99 + i if i else 1, "ok", v) for i, v in enumerate(values)]
    placed, edges, _ = C.tree_layout(make_nodes(rows))
    for direction in ("minimize", "maximize"):
        circle = layers(C.tree_chart(placed, edges, direction).to_dict())[1]
        scale = circle["encoding"]["fill"]["condition"]["scale"]
        scores = pd.Series(values)
        if direction == "minimize":  # one outlier (0.9) must not squeeze the good programs into one colour
            assert scale["domain"] == [0.38, pytest.approx(scores.quantile(0.9))]
        else:
            assert scale["domain"] == [pytest.approx(scores.quantile(0.1)), 0.9]
        assert scale["clamp"] is True
