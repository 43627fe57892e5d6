"""Chart-ready frames and Altair charts for the dashboard (pure: pandas + altair, no I/O).

dashboard/queries.py reads the database into DataFrames; the functions here reshape them and
build the charts the Streamlit pages show. Nothing here touches a database or Streamlit, so
every function can be tested on hand-built frames.

Row budget: Streamlit embeds a chart's data in the page and Altair refuses more than 5000 rows
per dataset by default, so every frame meant for a chart is reduced here (improvement points
for best-so-far lines, change points and even thinning for comparison bands, the last
`max_nodes` nodes for the tree).

Scores: only an evaluation with status "ok" and a finite score counts as a valid score; the
problem's direction ("maximize" | "minimize") decides what "better" means.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import altair as alt
import numpy as np
import pandas as pd

from discovery.comparison import ComparisonResult, better

__all__ = [
    "MAX_ROWS",
    "STATUS_COLOURS",
    "better",
    "progress_frame",
    "progress_lines",
    "progress_chart",
    "status_chart",
    "throughput",
    "tree_layout",
    "tree_chart",
    "comparison_lines",
    "comparison_chart",
    "comparison_table",
]

MAX_ROWS = 5000  # Altair's default per-dataset limit
COMPARISON_POINTS = 500  # at most this many points per strategy in the comparison chart
BEST_OVERALL = "best overall"
X_TITLES = {"evaluations": "evaluations", "elapsed_s": "elapsed (s)", "cost_usd": "cost (USD, cumulative)"}

# Fixed colours per evaluation status (also used for the hollow tree nodes).
STATUS_COLOURS: dict[str, str] = {
    "ok": "#2ca02c",
    "invalid": "#ff7f0e",
    "error": "#d62728",
    "timeout": "#9467bd",
    "killed": "#8b0000",
}
OTHER_COLOUR = "#9e9e9e"
# Tree node states that are not evaluation statuses.
NODE_STATE_COLOURS: dict[str, str] = {
    "not evaluated": "#c7c7c7",
    "no program": OTHER_COLOUR,
    "seed/other": "#555555",
}
BEST_OVERALL_COLOUR = "#222222"
LINE_PALETTE = [
    "#4c78a8", "#f58518", "#e45756", "#72b7b2", "#54a24b",
    "#eeca3b", "#b279a2", "#ff9da6", "#9d755d", "#bab0ac",
]

PROGRESS_COLUMNS = [
    "step_id", "trajectory", "candidate_id", "eval_status", "score",
    "evaluations", "elapsed_s", "cost_usd", "best", "trajectory_best",
]
LINE_COLUMNS = ["line", "x", "y", "step_id", "candidate_id", "improvement"]
EDGE_COLUMNS = ["x", "y", "x2", "y2", "candidate_id", "step_id"]
BAND_COLUMNS = ["strategy", "rank", "x", "median", "low", "high"]


# ---------------------------------------------------------------- helpers


def _check_direction(direction: str) -> None:
    if direction not in ("maximize", "minimize"):
        raise ValueError(f"direction must be 'maximize' or 'minimize', not {direction!r}")


def _sign(direction: str) -> float:
    """+1 when higher is better, -1 when lower is better."""
    _check_direction(direction)
    return 1.0 if direction == "maximize" else -1.0


def _is_missing(value: Any) -> bool:
    """None, pandas NA or a NaN float."""
    if value is None or value is pd.NA:
        return True
    try:
        return bool(math.isnan(value))
    except TypeError:
        return False


def _valid_scores(status: pd.Series, score: pd.Series) -> pd.Series:
    """Boolean mask: status "ok" and a finite score."""
    s = pd.to_numeric(score, errors="coerce").astype(float)
    return status.eq("ok").fillna(False).astype(bool) & np.isfinite(s)


def _fitness(score: pd.Series, valid: pd.Series, direction: str) -> pd.Series:
    """Scores mapped to 'higher is better', -inf where not valid (so cummax skips them)."""
    s = pd.to_numeric(score, errors="coerce").astype(float) * _sign(direction)
    return s.where(valid, -np.inf)


def _from_fitness(fit: pd.Series, direction: str) -> pd.Series:
    """Inverse of _fitness; -inf (no valid score yet) becomes NaN."""
    return (fit * _sign(direction)).where(np.isfinite(fit), np.nan)


def _thin_positions(n: int, keep: int) -> np.ndarray:
    """At most `keep` (>= 2) evenly spaced positions of 0..n-1, always the first and the last."""
    if n <= keep:
        return np.arange(n)
    keep = max(keep, 2)
    return np.unique(np.linspace(0, n - 1, keep).round().astype(int))


def _hline(value: float, label: str, colour: str) -> alt.LayerChart:
    """A dashed horizontal rule at y=value with a text label at the left edge."""
    data = pd.DataFrame({"y": [float(value)], "label": [label]})
    base = alt.Chart(data)
    rule = base.mark_rule(strokeDash=[6, 4], color=colour, strokeWidth=1.5).encode(
        y="y:Q", tooltip=[alt.Tooltip("label:N", title="line"), alt.Tooltip("y:Q", title="score")]
    )
    text = base.mark_text(align="left", baseline="bottom", dx=4, dy=-3, color=colour).encode(
        x=alt.value(0), y="y:Q", text="label:N"
    )
    return alt.layer(rule, text)


def _line_colour_scale(names: list[str]) -> alt.Scale:
    """'best overall' dark, the trajectories from a categorical palette, in the given order."""
    colours, i = [], 0
    for name in names:
        if name == BEST_OVERALL:
            colours.append(BEST_OVERALL_COLOUR)
        else:
            colours.append(LINE_PALETTE[i % len(LINE_PALETTE)])
            i += 1
    return alt.Scale(domain=names, range=colours)


# ---------------------------------------------------------------- campaign progress


def progress_frame(points: pd.DataFrame, direction: str, seed_score: float | None = None) -> pd.DataFrame:
    """The evaluated steps of a campaign with running counters and best-so-far values.

    Keeps the rows whose eval_status is not None, in step order, with columns
      step_id, trajectory, candidate_id, eval_status, score,
      evaluations     1-based count of evaluated rows so far,
      elapsed_s       seconds since the first step's created_at (over ALL steps),
      cost_usd        cumulative USD up to and including this step (ALL steps, incl. failed calls),
      best            campaign best-so-far over valid scores, starting from seed_score when given
                      (NaN until a valid score exists),
      trajectory_best best-so-far within this row's trajectory (no seed; NaN until one).
    """
    _check_direction(direction)
    if points.empty:
        return pd.DataFrame({c: pd.Series(dtype=float) for c in PROGRESS_COLUMNS}).astype(
            {"step_id": "int64", "trajectory": "int64", "candidate_id": "Int64", "eval_status": object,
             "evaluations": "int64"}
        )
    df = points.sort_values("step_id", kind="stable").reset_index(drop=True)
    created = pd.to_datetime(df["created_at"], utc=True)
    elapsed = (created - created.min()).dt.total_seconds()
    cost = pd.to_numeric(df["cost_usd"], errors="coerce").fillna(0.0).astype(float).cumsum()

    score = pd.to_numeric(df["score"], errors="coerce").astype(float)
    valid = _valid_scores(df["eval_status"], score)
    fit = _fitness(score, valid, direction)
    overall = fit.cummax()
    if not _is_missing(seed_score) and math.isfinite(float(seed_score)):
        overall = np.maximum(overall, float(seed_score) * _sign(direction))
    per_trajectory = fit.groupby(df["trajectory"], sort=False).cummax()

    out = pd.DataFrame(
        {
            "step_id": df["step_id"],
            "trajectory": df["trajectory"],
            "candidate_id": df["candidate_id"].astype("Int64"),
            "eval_status": df["eval_status"].astype(object),
            "score": score,
            "elapsed_s": elapsed,
            "cost_usd": cost,
            "best": _from_fitness(overall, direction),
            "trajectory_best": _from_fitness(per_trajectory, direction),
        }
    )
    out = out[df["eval_status"].notna().to_numpy()].reset_index(drop=True)
    out.insert(5, "evaluations", np.arange(1, len(out) + 1, dtype="int64"))
    return out[PROGRESS_COLUMNS]


def _line_points(part: pd.DataFrame, name: str, x: str, y: str) -> pd.DataFrame:
    """One line reduced to its improvement points (y changed, first valid included) plus its last point."""
    values = part[y]
    defined = values.notna()
    improved = defined & values.ne(values.shift())
    keep = improved.copy()
    if len(part) and defined.iloc[-1]:
        keep.iloc[-1] = True
    kept = part[keep.to_numpy()]
    return pd.DataFrame(
        {
            "line": name,
            "x": kept[x].astype(float).to_numpy(),
            "y": kept[y].astype(float).to_numpy(),
            "step_id": kept["step_id"].to_numpy(),
            "candidate_id": kept["candidate_id"].astype("Int64").array,
            "improvement": improved[keep.to_numpy()].to_numpy(dtype=bool),
        }
    )


def progress_lines(
    frame: pd.DataFrame, x: str, direction: str, max_lines: int = 12, max_rows: int = MAX_ROWS
) -> tuple[pd.DataFrame, int]:
    """Long-form best-so-far lines of a progress_frame against x, ready for progress_chart.

    x is one of "evaluations", "elapsed_s", "cost_usd". Returns (lines, hidden): lines has
    columns line ("best overall" or "trajectory N"), x, y, step_id, candidate_id, improvement
    (True where y got better; the last point of a line is kept even when it is not an
    improvement so the step-after line reaches the line's end). "best overall" comes first, then
    the trajectories by index. When there are more than max_lines trajectories, only the
    max_lines with the best final best (direction-aware; never-valid ones last, ties by index)
    are drawn and `hidden` is how many were left out. When the reduced lines still exceed
    max_rows, every line is evenly thinned (first and last points kept).
    """
    if x not in X_TITLES:
        raise ValueError(f"x must be one of {sorted(X_TITLES)}, not {x!r}")
    _check_direction(direction)
    if frame.empty:
        empty = pd.DataFrame({c: pd.Series(dtype=float) for c in LINE_COLUMNS}).astype(
            {"line": object, "step_id": "int64", "candidate_id": "Int64", "improvement": bool}
        )
        return empty, 0

    trajectories = sorted(frame["trajectory"].unique().tolist())
    hidden = 0
    if len(trajectories) > max_lines:
        finals = (frame.groupby("trajectory")["trajectory_best"].last() * _sign(direction)).fillna(-np.inf)
        ranked = sorted(trajectories, key=lambda t: (-finals[t], t))
        kept = set(ranked[:max_lines])
        hidden = len(trajectories) - len(kept)
        trajectories = [t for t in trajectories if t in kept]

    parts = [_line_points(frame, BEST_OVERALL, x, "best")]
    for t, part in frame[frame["trajectory"].isin(trajectories)].groupby("trajectory", sort=True):
        parts.append(_line_points(part, f"trajectory {t}", x, "trajectory_best"))
    parts = [p for p in parts if len(p)]

    total = sum(len(p) for p in parts)
    if total > max_rows and parts:
        budget = max(2, max_rows // len(parts))
        parts = [p.iloc[_thin_positions(len(p), budget)] for p in parts]
    lines = pd.concat(parts, ignore_index=True) if parts else _line_points(frame.iloc[:0], BEST_OVERALL, x, "best")
    return lines[LINE_COLUMNS], hidden


def progress_chart(
    lines: pd.DataFrame, x: str, best_known: float | None = None, x_title: str | None = None
) -> alt.LayerChart:
    """Best-so-far step lines (one per line, "best overall" thicker and dark), points with
    tooltips at the improvements, and a dashed "best known" rule when best_known is given."""
    title = x_title or X_TITLES.get(x, x)
    names = list(dict.fromkeys(lines["line"].tolist()))
    colour = alt.Color("line:N", title=None, scale=_line_colour_scale(names), sort=names)
    x_enc = alt.X("x:Q", title=title)
    y_enc = alt.Y("y:Q", title="best score so far", scale=alt.Scale(zero=False))
    base = alt.Chart(lines)
    steps = base.mark_line(interpolate="step-after").encode(
        x=x_enc,
        y=y_enc,
        color=colour,
        strokeWidth=alt.when(alt.datum.line == BEST_OVERALL).then(alt.value(3.0)).otherwise(alt.value(1.5)),
    )
    dots = (
        base.transform_filter(alt.datum.improvement)
        .mark_circle(size=40)
        .encode(
            x=x_enc,
            y=y_enc,
            color=colour,
            tooltip=[
                alt.Tooltip("line:N"),
                alt.Tooltip("x:Q", title=title),
                alt.Tooltip("y:Q", title="best"),
                alt.Tooltip("step_id:Q", title="step"),
                alt.Tooltip("candidate_id:Q", title="candidate"),
            ],
        )
    )
    layers: list[Any] = [steps, dots]
    if not _is_missing(best_known):
        layers.append(_hline(float(best_known), f"best known {float(best_known):.6g}", "firebrick"))
    return alt.layer(*layers)


def _status_order(statuses: list[str]) -> list[str]:
    known = [s for s in STATUS_COLOURS if s in statuses]
    return known + [s for s in statuses if s not in STATUS_COLOURS]


def status_chart(counts: Mapping[str | None, int]) -> alt.LayerChart:
    """Horizontal bars of evaluation counts by status (ok, invalid, error, timeout, killed, then
    any other status), with fixed colours per status and the count written at the bar's end.
    A None key is shown as "not evaluated"."""
    named = {("not evaluated" if k is None else str(k)): int(v) for k, v in counts.items()}
    order = _status_order(list(named))
    data = pd.DataFrame({"status": order, "count": [named[s] for s in order]})
    colours = [STATUS_COLOURS.get(s, OTHER_COLOUR) for s in order]
    base = alt.Chart(data).encode(
        y=alt.Y("status:N", sort=order, title=None),
        x=alt.X("count:Q", title="evaluations"),
        tooltip=[alt.Tooltip("status:N"), alt.Tooltip("count:Q")],
    )
    colour = alt.Color("status:N", scale=alt.Scale(domain=order, range=colours), legend=None)
    bars = base.mark_bar().encode(color=colour)
    text = base.mark_text(align="left", dx=3).encode(text="count:Q")
    return alt.layer(bars, text)


def throughput(frame: pd.DataFrame, window_s: float = 300.0, end_s: float | None = None) -> dict[str, Any]:
    """Evaluation rate of a progress_frame.

    Returns {"evaluations": n, "per_min": n per minute of elapsed time (from the first step to
    end_s), "recent_per_min": evaluations per minute during the last window_s seconds before
    end_s}. end_s defaults to the last evaluation's elapsed_s (pass the campaign's current
    elapsed time to account for a stall). per_min is None when no time has elapsed;
    recent_per_min is None when less than window_s has elapsed.
    """
    n = int(len(frame))
    if n == 0 and end_s is None:
        return {"evaluations": 0, "per_min": None, "recent_per_min": None}
    elapsed = pd.to_numeric(frame["elapsed_s"], errors="coerce").astype(float)
    end = float(end_s) if end_s is not None else float(elapsed.max())
    per_min = n / (end / 60.0) if end > 0 else None
    recent = None
    if window_s > 0 and end >= window_s:
        in_window = int(((elapsed > end - window_s) & (elapsed <= end)).sum())
        recent = in_window / (window_s / 60.0)
    return {"evaluations": n, "per_min": per_min, "recent_per_min": recent}


# ---------------------------------------------------------------- trajectory tree


def _node_labels(df: pd.DataFrame) -> pd.Series:
    """'#<candidate id>' for a node with a program, '<index>.<sample> <step_status>' otherwise."""
    cid = df["candidate_id"]
    with_program = "#" + cid.astype("string")
    move = df["index"].astype("string") + "." + df["sample"].astype("string")
    without = move + " " + df["step_status"].astype("string")
    return with_program.where(cid.notna(), without).astype(object)


def tree_layout(nodes: pd.DataFrame, max_nodes: int = 4000) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """Places the steps of one trajectory as a tree: returns (placed, edges, omitted).

    Layout (deterministic, vectorised, O(n log n) for the sort):
      - x = the move index; y = the node's rank within its move (by sample), centred on 0, i.e.
        y = rank - (k - 1) / 2 for the k nodes of that move. A SimpleTES move with K samples
        from one parent becomes a column of K nodes fanning out from the parent's node; an
        R^3L/ExIt chain with one node per move is a horizontal line at y = 0.
      - A parent_candidate_id that is not a placed candidate becomes a root node at x = -1 with
        external=True, one per distinct id, ordered by id and centred on 0 the same way. Its
        label is "seed/other #ID" (the campaign's seed or another trajectory's program), or
        "earlier #ID" when it is a candidate of this trajectory left out by max_nodes. When
        steps were left out, the roots sit one column before the first placed move instead of
        at -1, so the chart does not span the omitted moves.
      - Steps without a program (parse/LLM errors) are nodes too (candidate_id NA) so failures
        show; their label is "<index>.<sample> <step_status>".
      - At most max_nodes steps are placed: the last ones by (index, sample), plus the roots
        they need; `omitted` counts the steps left out.

    placed: the nodes' columns (step_id, index, sample as nullable Int64) plus x, y, label,
    external; roots first, then the steps by (index, sample). edges: x, y (parent), x2, y2
    (child), candidate_id and step_id of the child, one per placed step with a parent.
    """
    base_cols = list(nodes.columns)
    placed_cols = base_cols + [c for c in ("x", "y", "label", "external") if c not in base_cols]
    df = nodes.sort_values(["index", "sample"], kind="stable").reset_index(drop=True)
    for col in ("step_id", "index", "sample", "candidate_id", "parent_candidate_id"):
        if col in df.columns:
            df[col] = df[col].astype("Int64")
    all_candidates = df["candidate_id"].dropna()
    omitted = max(0, len(df) - max(int(max_nodes), 0))
    if omitted:
        df = df.iloc[omitted:].reset_index(drop=True)

    df["x"] = df["index"].astype(float)
    by_move = df.groupby("index", sort=False)["sample"]
    df["y"] = by_move.cumcount().astype(float) - (by_move.transform("size").astype(float) - 1.0) / 2.0
    df["label"] = _node_labels(df) if len(df) else pd.Series(dtype=object)
    df["external"] = False

    parents = df["parent_candidate_id"]
    need = parents.notna() & ~parents.isin(df["candidate_id"].dropna())
    root_ids = np.sort(parents[need].unique().astype("int64")) if need.any() else np.array([], dtype="int64")
    r = len(root_ids)
    roots = df.iloc[:0].reindex(range(r))
    roots["candidate_id"] = pd.array(root_ids, dtype="Int64")
    roots["x"] = -1.0 if not omitted or not len(df) else float(df["index"].min()) - 1.0
    roots["y"] = np.arange(r, dtype=float) - (r - 1) / 2.0
    ours = np.isin(root_ids, all_candidates.to_numpy(dtype="int64"))
    roots["label"] = [f"{'earlier' if o else 'seed/other'} #{i}" for i, o in zip(root_ids, ours)]
    roots["external"] = True
    placed = pd.concat([roots, df], ignore_index=True) if r else df
    placed["external"] = placed["external"].astype(bool)
    placed = placed[placed_cols]

    # edges: every placed step with a parent, from the parent's position
    where = placed.loc[placed["candidate_id"].notna(), ["candidate_id", "x", "y"]]
    where = where.set_index("candidate_id")
    children = df[df["parent_candidate_id"].notna()]
    src = where.reindex(children["parent_candidate_id"].to_numpy())
    edges = pd.DataFrame(
        {
            "x": src["x"].to_numpy(dtype=float),
            "y": src["y"].to_numpy(dtype=float),
            "x2": children["x"].to_numpy(dtype=float),
            "y2": children["y"].to_numpy(dtype=float),
            "candidate_id": children["candidate_id"].array,
            "step_id": children["step_id"].array,
        }
    )
    return placed.reset_index(drop=True), edges[EDGE_COLUMNS], omitted


def _node_state(placed: pd.DataFrame) -> pd.Series:
    """Per node: "ok" (valid score), else its eval status, else "no program" (no candidate) or
    "not evaluated"; roots are "seed/other"."""
    status = placed["eval_status"].astype(object)
    valid = _valid_scores(status, placed["score"]).to_numpy()
    no_program = placed["candidate_id"].isna().to_numpy()
    fallback = np.where(no_program, "no program", "not evaluated")
    state = np.where(status.notna().to_numpy(), status.astype(str).to_numpy(), fallback).astype(object)
    state[(state == "ok") & ~valid] = "not evaluated"  # an "ok" without a finite score cannot be drawn by score
    state[placed["external"].astype(bool).to_numpy()] = "seed/other"
    return pd.Series(state, index=placed.index, dtype=object)


ROOT_FILL = "#9e9e9e"  # parents from outside the trajectory (the seed, another trajectory's program)


def _robust_domain(data: pd.DataFrame, direction: str, quantile: float = 0.9) -> dict[str, Any]:
    """A colour domain from the best score to the 90th-percentile-worst one, clamped, so a few
    very bad programs do not squeeze every good one into one colour ({} when too few scores)."""
    scores = data.loc[data["has_score"], "score"].astype(float)
    if scores.nunique() < 3:
        return {}
    if direction == "minimize":
        lo, hi = float(scores.min()), float(scores.quantile(quantile))
    else:
        lo, hi = float(scores.quantile(1 - quantile)), float(scores.max())
    return {"domain": [lo, hi], "clamp": True} if hi > lo else {}


def tree_chart(placed: pd.DataFrame, edges: pd.DataFrame, direction: str) -> alt.LayerChart:
    """The trajectory tree: grey rules for edges, circles for nodes.

    Nodes with a valid score are filled by score on the "viridis" scheme, reversed for minimize,
    so better is always brighter; the colour domain runs from the best score to the 90th
    percentile worst (clamped). Committed nodes (the samples a move kept) have a thick
    outline; roots from outside the trajectory are grey. Other nodes are hollow (white fill) with an outline coloured
    by their state (eval status, "no program", "not evaluated", "seed/other"). Clicking a node
    selects it through the point selection named "node" on field candidate_id (what
    `st.altair_chart(chart, on_select="rerun")` returns); the selected node is drawn larger.
    """
    _check_direction(direction)
    data = placed.copy()
    data["state"] = _node_state(data)
    data["has_score"] = data["state"].eq("ok")
    present = set(data["state"]) - {"ok"}  # scored nodes are outlined by the condition, not the legend
    states = _status_order(sorted(s for s in present if s not in NODE_STATE_COLOURS))
    states += [s for s in NODE_STATE_COLOURS if s in present]
    state_colours = [STATUS_COLOURS.get(s, NODE_STATE_COLOURS.get(s, OTHER_COLOUR)) for s in states]

    node = alt.selection_point(name="node", fields=["candidate_id"], on="click")
    x_enc = alt.X("x:Q", title="move (index); leftmost column: parents from outside", axis=alt.Axis(tickMinStep=1))
    y_enc = alt.Y("y:Q", axis=None)
    lines = alt.Chart(edges).mark_rule(color="#b0b0b0", strokeWidth=0.8).encode(
        x=x_enc, y=y_enc, x2=alt.X2("x2"), y2=alt.Y2("y2")
    )
    score_scale = alt.Scale(scheme="viridis", reverse=direction == "minimize", **_robust_domain(data, direction))
    circles = (
        alt.Chart(data)
        .mark_circle(strokeWidth=1.5, opacity=1.0)
        .encode(
            x=x_enc,
            y=y_enc,
            fill=alt.when(alt.datum.has_score)
            .then(alt.Fill("score:Q", title="score", scale=score_scale))
            .otherwise(alt.value("white")),
            stroke=alt.when(alt.datum.has_score)
            .then(alt.value("#333333"))
            .otherwise(alt.Stroke("state:N", title="no score", scale=alt.Scale(domain=states, range=state_colours))),
            size=alt.when(node, empty=False).then(alt.value(260)).otherwise(alt.value(70)),
            strokeWidth=alt.when(alt.datum.committed == True).then(alt.value(3.0)).otherwise(alt.value(1.2)),  # noqa: E712
            tooltip=[
                alt.Tooltip("label:N", title="node"),
                alt.Tooltip("candidate_id:Q", title="candidate"),
                alt.Tooltip("index:Q", title="move"),
                alt.Tooltip("sample:Q"),
                alt.Tooltip("mode:N"),
                alt.Tooltip("eval_status:N", title="status"),
                alt.Tooltip("score:Q"),
                alt.Tooltip("committed:N", title="kept (committed)"),
            ],
        )
        .add_params(node)
    )
    roots = alt.Chart(data[data["external"].astype(bool)]).mark_circle(size=90, color=ROOT_FILL, opacity=1.0).encode(
        x=x_enc, y=y_enc, tooltip=[alt.Tooltip("label:N", title="parent from outside")])
    return alt.layer(lines, circles, roots)


# ---------------------------------------------------------------- strategy comparison


def _as_result(results: Mapping[str, Any] | ComparisonResult) -> ComparisonResult:
    return results if isinstance(results, ComparisonResult) else ComparisonResult.from_dict(results)


def _floats(values: list[float | None]) -> np.ndarray:
    return np.array([np.nan if _is_missing(v) else float(v) for v in values], dtype=float)


def _change_positions(*columns: np.ndarray) -> np.ndarray:
    """Positions where any column differs from the previous position (NaN == NaN), plus first and last."""
    n = len(columns[0])
    if n == 0:
        return np.arange(0)
    changed = np.zeros(n, dtype=bool)
    changed[0] = changed[-1] = True
    for col in columns:
        a, b = col[1:], col[:-1]
        same = (a == b) | (np.isnan(a) & np.isnan(b))
        changed[1:] |= ~same
    return np.flatnonzero(changed)


def comparison_lines(
    results: Mapping[str, Any] | ComparisonResult, max_points: int = COMPARISON_POINTS
) -> pd.DataFrame:
    """Per strategy, in rank order, the band over seeds against evaluations: columns strategy,
    rank, x, median, low, high (NaN where no seed has a valid score yet).

    Each strategy keeps only the x where median, low or high change (plus the first and last x),
    which a step-after line redraws exactly; beyond max_points per strategy (and beyond
    MAX_ROWS in total) the points are evenly thinned, keeping the first and last.
    """
    result = _as_result(results)
    rank = {r.strategy: r.rank for r in result.rows}
    names = [r.strategy for r in sorted(result.rows, key=lambda r: r.rank)]
    names += [s for s in result.bands if s not in rank]
    names = [s for s in names if s in result.bands and result.bands[s].median]
    budget = min(max_points, MAX_ROWS // max(len(names), 1))
    parts = []
    for name in names:
        b = result.bands[name]
        med, low, high = _floats(b.median), _floats(b.low), _floats(b.high)
        pos = _change_positions(med, low, high)
        pos = pos[_thin_positions(len(pos), budget)]
        parts.append(
            pd.DataFrame(
                {
                    "strategy": name,
                    "rank": rank.get(name, len(result.rows) + 1),
                    "x": pos.astype("int64"),
                    "median": med[pos],
                    "low": low[pos],
                    "high": high[pos],
                }
            )
        )
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=float) for c in BAND_COLUMNS}).astype(
            {"strategy": object, "rank": "int64", "x": "int64"}
        )
    return pd.concat(parts, ignore_index=True)[BAND_COLUMNS]


def comparison_chart(results: Mapping[str, Any] | ComparisonResult) -> alt.LayerChart:
    """Median best-so-far step line and shaded min-max band per strategy against evaluations,
    points with tooltips at the changes, dashed rules at the seed score and the target."""
    result = _as_result(results)
    lines = comparison_lines(result)
    names = list(dict.fromkeys(lines["strategy"].tolist()))
    colour = alt.Color("strategy:N", sort=names, scale=alt.Scale(domain=names, range=LINE_PALETTE), title=None)
    x_enc = alt.X("x:Q", title="evaluations (candidates scored, in step order)")
    y_title = f"best score so far ({result.direction})"
    base = alt.Chart(lines)
    band = base.mark_area(interpolate="step-after", opacity=0.18).encode(
        x=x_enc, y=alt.Y("low:Q", title=y_title, scale=alt.Scale(zero=False)), y2=alt.Y2("high"), color=colour
    )
    median = base.mark_line(interpolate="step-after", strokeWidth=2).encode(
        x=x_enc, y=alt.Y("median:Q", title=y_title, scale=alt.Scale(zero=False)), color=colour
    )
    dots = base.mark_circle(size=25).encode(
        x=x_enc,
        y=alt.Y("median:Q", title=y_title),
        color=colour,
        tooltip=[
            alt.Tooltip("strategy:N"),
            alt.Tooltip("x:Q", title="evaluations"),
            alt.Tooltip("median:Q", title="median best"),
            alt.Tooltip("low:Q", title="min over seeds"),
            alt.Tooltip("high:Q", title="max over seeds"),
        ],
    )
    layers: list[Any] = [band, median, dots]
    if not _is_missing(result.seed_score):
        layers.append(_hline(result.seed_score, f"seed {result.seed_score:.6g}", "#666666"))
    if not _is_missing(result.target) and result.target != result.seed_score:
        sign = "+" if result.direction == "maximize" else "-"
        label = f"target: seed {sign}{result.target_pct:g}% ({result.target:.6g})"
        layers.append(_hline(result.target, label, "firebrick"))
    return alt.layer(*layers)


TABLE_COLUMNS = {
    "rank": "rank",
    "strategy": "strategy",
    "final_median": "final best (median)",
    "final_min": "final best (min)",
    "final_max": "final best (max)",
    "reached": "reached target",
    "evals_to_target_median": "evals to target (median)",
    "evaluations_median": "evaluations (median)",
    "llm_calls_median": "LLM calls (median)",
    "tokens_median": "tokens (median)",
    "cost_usd_median": "USD (median)",
    "wall_s_median": "wall s (median)",
    "completed": "completed runs",
    "runs": "runs",
}


def comparison_table(results: Mapping[str, Any] | ComparisonResult) -> pd.DataFrame:
    """The ranked strategy rows, best first, with readable column names. "reached target" is
    "k/n" (completed runs that reached their target / completed runs); missing numbers are NaN."""
    result = _as_result(results)
    rows = sorted(result.rows, key=lambda r: r.rank)
    data: dict[str, list[Any]] = {key: [getattr(r, key) for r in rows] for key in TABLE_COLUMNS}
    data["reached"] = [f"{r.reached}/{r.completed}" for r in rows]
    table = pd.DataFrame(data)
    for key in TABLE_COLUMNS:
        if key.endswith("_median") or key in ("final_min", "final_max"):
            table[key] = pd.to_numeric(table[key], errors="coerce").astype(float)
    return table.rename(columns=TABLE_COLUMNS).reset_index(drop=True)
