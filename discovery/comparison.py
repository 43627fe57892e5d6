"""Comparing strategies at an equal budget: best-so-far curves, per-strategy summaries, a plot.

Pure logic over plain numbers (no database, no Prefect): flows.compare gathers each campaign's
evaluations and hands them here as RunData; everything the table, the plot and the dashboard
show is computed by `compare()` and can be stored and re-read as JSON (`to_dict`/`from_dict`).

Definitions (the table header repeats them):
  - evaluations (x): candidates that received an evaluation, counted in step order. A program
    that parsed counts even when its score came from the cache of an identical program (the
    strategy spent a proposal on it); a response that did not parse, a failed LLM call and an
    R^3L reflection do not count (they produced no program to score).
  - best-so-far curve: y(0) = the seed program's score; y(x) = the best valid ("ok") score among
    the seed and the first x evaluated candidates, in the problem's direction. None while no
    valid score exists (only when the seed itself is invalid).
  - final best: the curve's last value. Per strategy: median over its completed seeds, and the
    spread [min, max] over them.
  - target: the seed score improved by `target_pct` % of |seed score| in the problem's
    direction (each run against its own seed score). Evaluations to target: the first x whose
    best-so-far is at least as good as the target and strictly better than the seed; per
    strategy the median over the seeds that reached it, and how many did ("k/n").
  - evaluations, LLM calls (= steps, proposer calls), tokens (prompt + completion), USD and
    wall seconds: medians over a strategy's completed runs.
  - band: on the grid x = 0..max n over the strategy's runs, the median and min/max over seeds,
    each curve held at its last value after its end.
  - rank: by median final best, best first; strategies with no completed run last.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from pathlib import Path
from typing import Any, Mapping, Sequence

from discovery.types import Direction, better



@dataclasses.dataclass(frozen=True)
class Sample:
    """One evaluated candidate of a campaign: its order key (the step id), status and score."""

    order: int
    status: str
    score: float | None


@dataclasses.dataclass(frozen=True)
class RunData:
    """What one finished campaign contributes to a comparison."""

    strategy: str
    seed: int
    seed_score: float | None
    samples: Sequence[Sample]
    llm_calls: int = 0
    tokens: int = 0
    cost_usd: float = 0.0
    wall_s: float = 0.0
    campaign_id: int | None = None


@dataclasses.dataclass(frozen=True)
class RunCurve:
    """One run's curve and what was read off it."""

    strategy: str
    seed: int
    campaign_id: int | None
    seed_score: float | None
    target: float | None
    curve: list[float | None]
    final: float | None
    evals_to_target: int | None
    evaluations: int
    llm_calls: int
    tokens: int
    cost_usd: float
    wall_s: float


@dataclasses.dataclass(frozen=True)
class Band:
    """Median and min/max over seeds at x = 0..len-1 (None where no seed has a valid score)."""

    median: list[float | None]
    low: list[float | None]
    high: list[float | None]

    @property
    def x(self) -> list[int]:
        return list(range(len(self.median)))


@dataclasses.dataclass(frozen=True)
class StrategyRow:
    """One line of the comparison table (medians are over the strategy's completed runs)."""

    strategy: str
    rank: int
    runs: int  # runs asked for (seeds)
    completed: int  # runs that finished and contribute numbers
    final_median: float | None
    final_min: float | None
    final_max: float | None
    reached: int  # completed runs that reached their target
    evals_to_target_median: float | None
    evaluations_median: float | None
    llm_calls_median: float | None
    tokens_median: float | None
    cost_usd_median: float | None
    wall_s_median: float | None


@dataclasses.dataclass(frozen=True)
class ComparisonResult:
    """Everything a table, a plot or a dashboard needs, without recomputation."""

    direction: Direction
    target_pct: float
    seed_score: float | None  # median over runs (the dashed seed line)
    target: float | None  # target of that median seed score (the dashed target line)
    rows: list[StrategyRow]  # ranked, best first
    bands: dict[str, Band]
    runs: list[RunCurve]

    def to_dict(self) -> dict[str, Any]:
        return {
            "direction": self.direction,
            "target_pct": self.target_pct,
            "seed_score": self.seed_score,
            "target": self.target,
            "rows": [dataclasses.asdict(r) for r in self.rows],
            "bands": {s: dataclasses.asdict(b) for s, b in self.bands.items()},
            "runs": [dataclasses.asdict(r) for r in self.runs],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ComparisonResult":
        return cls(
            direction=data["direction"],
            target_pct=float(data["target_pct"]),
            seed_score=data.get("seed_score"),
            target=data.get("target"),
            rows=[StrategyRow(**r) for r in data.get("rows", [])],
            bands={s: Band(**b) for s, b in data.get("bands", {}).items()},
            runs=[RunCurve(**r) for r in data.get("runs", [])],
        )


# ---------------------------------------------------------------- one run


def best_curve(seed_score: float | None, samples: Sequence[Sample], direction: Direction) -> list[float | None]:
    """y[0] = seed score; y[x] = best valid score after the first x evaluated candidates (by order)."""
    best = seed_score
    curve: list[float | None] = [best]
    for s in sorted(samples, key=lambda s: s.order):
        if s.status == "ok" and s.score is not None and math.isfinite(s.score):
            if best is None or better(s.score, best, direction):
                best = s.score
        curve.append(best)
    return curve


def target_of(seed_score: float | None, target_pct: float, direction: Direction) -> float | None:
    """The seed score moved by target_pct % of |seed score| in the problem's direction."""
    if seed_score is None:
        return None
    step = abs(seed_score) * target_pct / 100.0
    return seed_score + step if direction == "maximize" else seed_score - step


def _at_least(value: float, target: float, direction: Direction) -> bool:
    return value >= target if direction == "maximize" else value <= target


def evals_to_target(
    curve: Sequence[float | None], seed_score: float | None, target: float | None, direction: Direction
) -> int | None:
    """The first x whose best-so-far reaches the target and beats the seed (None: never)."""
    if target is None or seed_score is None:
        return None
    for x, y in enumerate(curve):
        if y is not None and _at_least(y, target, direction) and better(y, seed_score, direction):
            return x
    return None


def run_curve(run: RunData, direction: Direction, target_pct: float) -> RunCurve:
    curve = best_curve(run.seed_score, run.samples, direction)
    target = target_of(run.seed_score, target_pct, direction)
    return RunCurve(
        strategy=run.strategy,
        seed=run.seed,
        campaign_id=run.campaign_id,
        seed_score=run.seed_score,
        target=target,
        curve=curve,
        final=curve[-1],
        evals_to_target=evals_to_target(curve, run.seed_score, target, direction),
        evaluations=len(curve) - 1,
        llm_calls=run.llm_calls,
        tokens=run.tokens,
        cost_usd=run.cost_usd,
        wall_s=run.wall_s,
    )


# ---------------------------------------------------------------- across seeds


def median(values: Sequence[float | None]) -> float | None:
    """Median of the values that are not None (None when there are none)."""
    kept = [v for v in values if v is not None]
    return statistics.median(kept) if kept else None


def spread(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    kept = [v for v in values if v is not None]
    return (min(kept), max(kept)) if kept else (None, None)


def band(curves: Sequence[Sequence[float | None]]) -> Band:
    """Median and min/max over curves at each x = 0..max len-1, each held at its last value."""
    if not curves:
        return Band([], [], [])
    width = max(len(c) for c in curves)
    med, low, high = [], [], []
    for x in range(width):
        column = [c[min(x, len(c) - 1)] for c in curves if c]
        lo, hi = spread(column)
        med.append(median(column))
        low.append(lo)
        high.append(hi)
    return Band(med, low, high)


def rank_key(final_median: float | None, direction: Direction) -> tuple[bool, float]:
    """Sort key: strategies with a median final best first, best value first."""
    if final_median is None:
        return (True, 0.0)
    return (False, -final_median if direction == "maximize" else final_median)


def compare(
    runs: Sequence[RunData],
    *,
    strategies: Sequence[str],
    direction: Direction,
    target_pct: float,
    seeds_per_strategy: int | None = None,
) -> ComparisonResult:
    """Curves, bands and ranked table rows for the completed runs of each strategy.

    `strategies` fixes which rows exist (a strategy whose every run failed still gets a row);
    `seeds_per_strategy` is the number of runs asked for per strategy (default: those given).
    """
    curves = [run_curve(r, direction, target_pct) for r in runs]
    rows: list[StrategyRow] = []
    bands: dict[str, Band] = {}
    for name in strategies:
        mine = [c for c in curves if c.strategy == name]
        finals = [c.final for c in mine]
        lo, hi = spread(finals)
        hits = [c.evals_to_target for c in mine if c.evals_to_target is not None]
        rows.append(
            StrategyRow(
                strategy=name,
                rank=0,
                runs=seeds_per_strategy if seeds_per_strategy is not None else len(mine),
                completed=len(mine),
                final_median=median(finals),
                final_min=lo,
                final_max=hi,
                reached=len(hits),
                evals_to_target_median=median(hits),
                evaluations_median=median([c.evaluations for c in mine]),
                llm_calls_median=median([c.llm_calls for c in mine]),
                tokens_median=median([c.tokens for c in mine]),
                cost_usd_median=median([c.cost_usd for c in mine]),
                wall_s_median=median([c.wall_s for c in mine]),
            )
        )
        bands[name] = band([c.curve for c in mine])
    ordered = sorted(rows, key=lambda r: rank_key(r.final_median, direction))  # stable: ties keep input order
    ranked = [dataclasses.replace(r, rank=i + 1) for i, r in enumerate(ordered)]
    seed_score = median([c.seed_score for c in curves])
    return ComparisonResult(
        direction=direction,
        target_pct=target_pct,
        seed_score=seed_score,
        target=target_of(seed_score, target_pct, direction),
        rows=ranked,
        bands=bands,
        runs=curves,
    )


# ---------------------------------------------------------------- plot


def plot(result: ComparisonResult, path: str | Path, *, title: str) -> Path:
    """Writes a PNG: per strategy the median best-so-far line and a shaded min-max band over
    seeds, with dashed lines at the seed score and the target. Returns the path written.

    Uses matplotlib's object API with the Agg canvas (no display, no pyplot global state), so it
    is safe in threads and on headless machines.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    nan = float("nan")
    as_float = lambda values: [nan if v is None else float(v) for v in values]  # noqa: E731
    fig = Figure(figsize=(9, 5.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    colors = [f"C{i}" for i in range(10)]
    order = [r.strategy for r in result.rows]
    for i, name in enumerate(order):
        b = result.bands.get(name)
        if b is None or not b.median:
            continue
        color = colors[i % len(colors)]
        row = next(r for r in result.rows if r.strategy == name)
        ax.step(b.x, as_float(b.median), where="post", color=color, linewidth=1.8,
                label=f"{name} (median of {row.completed})")
        ax.fill_between(b.x, as_float(b.low), as_float(b.high), step="post", color=color, alpha=0.18, linewidth=0)
    if result.seed_score is not None:
        ax.axhline(result.seed_score, color="0.35", linestyle="--", linewidth=1.0,
                   label=f"seed {result.seed_score:.6g}")
    if result.target is not None and result.target != result.seed_score:
        ax.axhline(result.target, color="firebrick", linestyle="--", linewidth=1.0,
                   label=f"target: seed {'+' if result.direction == 'maximize' else '-'}{result.target_pct:g}% "
                         f"({result.target:.6g})")
    ax.set_xlabel("evaluations (candidates scored, in step order)")
    ax.set_ylabel(f"best score so far ({result.direction})")
    ax.set_title(title, fontsize=11)
    ax.grid(True, alpha=0.3)
    ax.margins(x=0.01)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize=9)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", dpi=110)
    return out
