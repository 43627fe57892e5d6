"""The `discovery` command line: a thin layer over flows.api (every command is one API call)."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer

from discovery.config import STRATEGIES

# Quiet, offline-safe defaults for libraries imported later (a user's own settings win).
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Evaluation-driven discovery: propose programs, score them in a sandbox, search, store every step in SQL.",
)


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _known_errors() -> tuple[type[BaseException], ...]:
    from db.engine import DatabaseError
    from db.repository import UnknownCampaign, UnknownComparison, UnknownExport, UnknownTrainingRun
    from discovery.config import ConfigError
    from problems import ProblemError

    errors: list[type[BaseException]] = [
        DatabaseError, UnknownCampaign, UnknownComparison, UnknownExport, UnknownTrainingRun, ConfigError,
        ProblemError, FileNotFoundError,
    ]
    try:
        from discovery.proposers.llm import ProposerUnreachable

        errors.append(ProposerUnreachable)
    except ImportError:  # pragma: no cover
        pass
    try:
        from flows.compare import PrefectUnavailable

        errors.append(PrefectUnavailable)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)


def _guard(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except _known_errors() as exc:
        message = exc.args[0] if getattr(exc, "args", None) else str(exc)
        _fail(str(message).splitlines()[0] if message else type(exc).__name__)
    except Exception as exc:
        from db.engine import outage_cause

        cause = outage_cause(exc)
        if cause is None:
            raise
        _fail(f"database unavailable ({cause}): check that it is reachable and not locked by another "
              "program, then run the command again")


class _ProgressBar:
    """A rich progress bar showing samples done and the best score so far."""

    def __init__(self, label: str) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("best {task.fields[best]}  (seed {task.fields[seed]})"),
            TimeElapsedColumn(),
            transient=False,
        )
        self.task = self.progress.add_task(label, total=None, best="-", seed="-")

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *exc):
        self.progress.stop()

    def __call__(self, p) -> None:
        fmt = lambda v: "-" if v is None else f"{v:.6g}"  # noqa: E731
        self.progress.update(self.task, total=p.total, completed=p.done, best=fmt(p.best_score), seed=fmt(p.seed_score))


def _with_progress(label: str, quiet: bool, fn, *args, **kwargs):
    """Calls a campaign API function, with a progress bar unless quiet."""
    if quiet:
        return _guard(fn, *args, **kwargs)
    with _ProgressBar(label) as bar:
        return _guard(fn, *args, progress=bar, **kwargs)


def _design(campaign) -> str:
    """The stored configuration's design line ("" if it no longer validates)."""
    from discovery.config import CampaignConfig

    try:
        return CampaignConfig.model_validate(campaign.config).design()
    except Exception:  # noqa: BLE001 - an old or edited row: show the rest anyway
        return ""


def _print_summary(s, *, code: bool = True, whole: bool = False) -> None:
    from rich.console import Console
    from rich.syntax import Syntax
    from rich.table import Table

    c = s.campaign
    console = Console()
    table = Table(title=f"campaign {c.id}: {c.name}", show_header=False)
    rows = [
        ("problem", f"{c.problem} ({c.direction})"),
        ("strategy", c.strategy + (f" ({_design(c)})" if _design(c) else "")),
        ("proposer", c.model),
        ("status", c.status + (f" ({c.error})" if c.error else "")),
        ("seed", str(c.seed)),
        ("budget", f"{s.steps}/{c.budget} proposer calls"),
        ("candidates", f"{s.candidates} ({s.evaluations} evaluations, {s.unevaluated_candidates} not evaluated)"),
        ("evaluations", ", ".join(f"{k} {v}" for k, v in sorted(s.by_status.items())) or "-"),
        ("steps", ", ".join(f"{k} {v}" for k, v in sorted(s.step_status.items())) or "-"),
        ("seed score", "-" if s.seed_score is None else f"{s.seed_score:.10g}"),
        ("best score", "-" if s.best_score is None else f"{s.best_score:.10g} (candidate {s.best_candidate_id})"),
        ("tokens", f"{s.prompt_tokens} in, {s.completion_tokens} out"),
        ("cost", f"${s.cost_usd:.4f}"),
        ("duration", "-" if s.duration_s is None else f"{s.duration_s:.1f} s"),
    ]
    for k, v in rows:
        table.add_row(k, v)
    console.print(table)
    if code and s.best_code:
        from discovery.edits import ParseError, split_program

        try:
            if whole:
                raise ParseError("whole program requested")
            block = split_program(s.best_code).block
            title = f"best program, evolve block (whole program: discovery show {c.id} --code)"
        except ParseError:
            block, title = s.best_code, "best program"
        console.print(f"[bold]{title}[/bold]")
        console.print(Syntax(block.strip("\n"), "python", word_wrap=True))


@app.command("problems")
def problems_cmd(
    full: bool = typer.Option(False, "--full", help="Do not shorten the citations."),
) -> None:
    """List the problems (built-in and installed) with their best-known values."""
    from rich.console import Console
    from rich.table import Table

    from flows.api import list_problems

    table = Table(show_lines=False)
    table.add_column("problem", no_wrap=True)
    table.add_column("direction", no_wrap=True)
    table.add_column("best known", no_wrap=True)
    table.add_column("source", overflow="fold")
    if full:
        table.add_column("what", overflow="fold")
    for p in _guard(list_problems):
        best, source = ("-", "-") if p.best_known is None else (f"{p.best_known.value:.10g}", p.best_known.citation)
        if not full and len(source) > 40:
            source = source[:37] + "..."
        table.add_row(p.name, p.direction, best, source, *([p.title] if full else []))
    Console(width=220 if full else None).print(table)


@app.command("run")
def run_cmd(
    problem: Optional[str] = typer.Argument(None, help="Problem name or path to a problem module (or set it in --config)."),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML or YAML campaign file; flags override it."),
    strategy: Optional[str] = typer.Option(None, help=f"Search strategy: {', '.join(STRATEGIES)} (default simpletes)."),
    model: Optional[str] = typer.Option(None, help="litellm model string; default DISCOVERY_MODEL, else offline."),
    api_base: Optional[str] = typer.Option(None, "--api-base", help="Base URL of an OpenAI-compatible server."),
    api_key_env: Optional[str] = typer.Option(None, "--api-key-env", help="Env variable holding the API key."),
    chains: Optional[int] = typer.Option(None, help="C: independent chains."),
    k: Optional[int] = typer.Option(None, "--k", help="K: candidates per prompt (best one committed)."),
    budget: Optional[int] = typer.Option(None, help="Total proposals, a multiple of chains x k."),
    seed: Optional[int] = typer.Option(None, help="Master seed."),
    restart_every: Optional[int] = typer.Option(None, "--restart-every", help="R: cut chains to their best every R commits."),
    sandbox: Optional[str] = typer.Option(None, help="auto, process, bwrap or docker."),
    eval_slots: Optional[int] = typer.Option(None, "--eval-slots", help="Evaluations at once (default: cores)."),
    eval_on: Optional[str] = typer.Option(
        None, "--eval-on", help="local (default) or workers (`discovery worker` processes; needs PREFECT_API_URL)."),
    llm_concurrency: Optional[int] = typer.Option(None, "--llm-concurrency", help="LLM calls in flight at once."),
    max_cost: Optional[float] = typer.Option(None, "--max-cost", help="Stop proposing after this many USD."),
    name: Optional[str] = typer.Option(None, help="A label for the campaign."),
    sets: Optional[list[str]] = typer.Option(
        None, "--set", help="KEY=VALUE setting, repeatable (e.g. --set exit.kappa=5 --set r3l.turns=4); flags win."),
    db: Optional[str] = typer.Option(None, "--db", help="SQLAlchemy URL (default DISCOVERY_DB_URL or sqlite:///./discovery.db)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Run a discovery campaign to the end of its budget."""
    from discovery.config import resolve
    from flows.api import run_campaign

    cfg = _guard(
        resolve,
        config,
        assignments=sets or (),
        problem=problem,
        strategy=strategy,
        model=model,
        api_base=api_base,
        api_key_env=api_key_env,
        chains=chains,
        k=k,
        budget=budget,
        seed=seed,
        restart_every=restart_every,
        sandbox=sandbox,
        eval_slots=eval_slots,
        eval_on=eval_on,
        llm_concurrency=llm_concurrency,
        max_cost_usd=max_cost,
        name=name,
    )
    created: list[int] = []

    def on_created(cid: int) -> None:
        # printed once the inputs are checked, so a bad input prints only its one error line
        if cfg.model is None:
            typer.echo("proposer: offline (no model configured; pass --model or set DISCOVERY_MODEL to use an LLM)")
        else:
            typer.echo(f"proposer: {cfg.model}" + (f" at {cfg.api_base}" if cfg.api_base else ""))
        created.append(cid)
        typer.echo(f"campaign {cid}: {cfg.problem}, {cfg.strategy} ({cfg.design()}), budget={cfg.budget}, seed {cfg.seed}")

    try:
        summary = _with_progress(cfg.problem, quiet, run_campaign, cfg, db_url=db, on_created=on_created)
    except KeyboardInterrupt:
        if created:
            _fail(f"interrupted; continue with `discovery resume {created[0]}`", 130)
        raise
    _print_summary(summary)


@app.command("resume")
def resume_cmd(
    campaign_id: int = typer.Argument(..., help="Campaign id (see `discovery show`)."),
    db: Optional[str] = typer.Option(None, "--db", help="SQLAlchemy URL."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Continue a campaign from the database after it was stopped or killed."""
    from flows.api import resume_campaign

    summary = _with_progress(f"campaign {campaign_id}", quiet, resume_campaign, campaign_id, db_url=db)
    _print_summary(summary)


@app.command("show")
def show_cmd(
    campaign_id: int = typer.Argument(..., help="Campaign id."),
    db: Optional[str] = typer.Option(None, "--db", help="SQLAlchemy URL."),
    config: bool = typer.Option(False, "--config", help="Also print the resolved configuration."),
    code: bool = typer.Option(False, "--code", help="Print the whole best program, not only its evolve block."),
    json_out: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Best score, best program, counts and cost of a campaign."""
    from flows.api import show_campaign

    s = _guard(show_campaign, campaign_id, db_url=db)
    if json_out:
        c = s.campaign
        typer.echo(json.dumps({
            "id": c.id, "problem": c.problem, "strategy": c.strategy, "model": c.model, "status": c.status,
            "seed": c.seed, "budget": c.budget, "steps": s.steps, "candidates": s.candidates,
            "evaluations": s.evaluations, "by_status": s.by_status, "seed_score": s.seed_score,
            "best_score": s.best_score, "best_candidate_id": s.best_candidate_id, "cost_usd": s.cost_usd,
            "prompt_tokens": s.prompt_tokens, "completion_tokens": s.completion_tokens, "config": c.config,
        }, indent=2))
        return
    _print_summary(s, whole=code)
    if config:
        typer.echo(json.dumps(s.campaign.config, indent=2))


@app.command("evaluate")
def evaluate_cmd(
    campaign_id: int = typer.Argument(..., help="Campaign id."),
    holdout: bool = typer.Option(True, "--holdout/--recheck", help="Held-out instances, or the search ones again."),
    top: int = typer.Option(5, help="How many of the best distinct programs to re-score."),
    db: Optional[str] = typer.Option(None, "--db", help="SQLAlchemy URL."),
) -> None:
    """Re-score a campaign's best programs on held-out instances and store those evaluations."""
    from flows.api import evaluate_campaign

    rows = _guard(evaluate_campaign, campaign_id, holdout=holdout, top=top, db_url=db)
    label = "holdout" if holdout else "recheck"
    typer.echo(f"{'candidate':>9s}  {'search score':>14s}  {label + ' status':>15s}  {label + ' score':>14s}")
    for r in rows:
        score = "-" if r.evaluation.score is None else f"{r.evaluation.score:.8g}"
        search = "-" if r.search_score is None else f"{r.search_score:.8g}"
        typer.echo(f"{r.candidate_id:9d}  {search:>14s}  {r.evaluation.status:>15s}  {score:>14s}")
    if not rows:
        typer.echo("no successfully evaluated programs to re-score")


@app.command("eval")
def eval_cmd(
    problem: str = typer.Argument(..., help="Problem name or module path."),
    file: Path = typer.Argument(..., help="Program file to score."),
    sandbox: str = typer.Option("auto", help="auto, process, bwrap or docker."),
    json_out: bool = typer.Option(False, "--json", help="Print the evaluation as JSON."),
) -> None:
    """Score one program file in the sandbox exactly as a campaign would."""
    import dataclasses

    from flows.api import evaluate_file

    ev = _guard(evaluate_file, problem, file, sandbox=sandbox)
    if json_out:
        typer.echo(json.dumps(dataclasses.asdict(ev), indent=2, default=str))
    else:
        typer.echo(f"status:   {ev.status}")
        typer.echo(f"score:    {ev.score}")
        typer.echo(f"metrics:  {json.dumps(dict(ev.metrics), default=str)}")
        typer.echo(f"duration: {ev.duration_s:.3f} s wall, {ev.cpu_s:.3f} s CPU ({ev.backend})")
        typer.echo(f"feedback: {ev.feedback}")
        if ev.stderr.strip():
            typer.echo("stderr (tail):\n" + ev.stderr[-2000:])
    if ev.status != "ok":
        raise typer.Exit(1)


@app.command("dashboard")
def dashboard_cmd(
    db: Optional[str] = typer.Option(None, "--db", help="SQLAlchemy URL (default DISCOVERY_DB_URL or sqlite:///./discovery.db)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0 shares it on the network)."),
    port: int = typer.Option(8501, "--port", help="Port to listen on."),
    open_browser: bool = typer.Option(False, "--open/--no-open", help="Open it in a web browser once it is up."),
) -> None:
    """Browse campaigns, trajectories and candidates in a local web dashboard (read-only; Ctrl-C stops it)."""
    from flows.dashboard import DashboardError, launch_dashboard

    try:
        code = _guard(launch_dashboard, db_url=db, host=host, port=port, open_browser=open_browser)
    except DashboardError as exc:
        _fail(str(exc))
    raise typer.Exit(code)


class _CompareProgressBars:
    """One rich progress row per strategy x seed run of a comparison (thread-safe updates)."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("best {task.fields[best]}  {task.fields[state]}"),
            TimeElapsedColumn(),
            transient=False,
        )
        self.tasks: dict[tuple[str, int], int] = {}
        self.started: set[tuple[str, int]] = set()

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *exc):
        self.progress.stop()

    def __call__(self, p) -> None:
        key = (p.strategy, p.seed)
        best = "-" if p.best_score is None else f"{p.best_score:.6g}"
        state = p.state if p.campaign_id is None else f"{p.state} (campaign {p.campaign_id})"
        if key not in self.tasks:
            self.tasks[key] = self.progress.add_task(f"{p.strategy} seed {p.seed}", total=p.total or None,
                                                     best=best, state=state, start=False)
            return
        task = self.tasks[key]
        if p.state == "running" and key not in self.started:
            self.started.add(key)
            self.progress.start_task(task)
        self.progress.update(task, total=p.total or None, completed=p.done, best=best, state=state)
        if p.state != "running":
            self.progress.stop_task(task)


def _num(value, fmt: str = ".6g") -> str:
    if value is None:
        return "-"
    if fmt == "int":
        return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"
    return format(value, fmt)


def _wide_console():
    """A rich console; when the output is piped or captured, wide enough not to squash tables."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=180)


def _print_comparison(r) -> None:
    from rich.markup import escape
    from rich.table import Table

    console = _wide_console()
    seeds = len(r.seeds)
    title = (f"comparison {r.id}: {r.problem} ({r.direction or '?'}), budget {r.budget}, "
             f"{seeds} seed{'s' if seeds != 1 else ''} ({r.seeds[0]}..{r.seeds[-1]}), status {r.status}")
    if r.result is None:
        console.print(f"[bold]{title}[/bold]")
        console.print("no results stored" + (f": {r.error}" if r.error else " yet (the comparison has not finished)"))
    else:
        sign = "+" if r.direction == "maximize" else "-"
        table = Table(
            title=title,
            caption=(f"medians over each strategy's completed seeds; target = seed score {sign} "
                     f"{r.target_pct:g}% of |seed score|; evals = candidates scored (step order, cache hits count)"),
        )
        table.add_column("#", justify="right")
        table.add_column("strategy", no_wrap=True)
        table.add_column(f"final best (median of {seeds})", justify="right")
        table.add_column(escape("[min, max]"), justify="right")
        table.add_column(f"evals to {sign}{r.target_pct:g}% (median, reached)", justify="right")
        table.add_column("evaluations", justify="right")
        table.add_column("LLM calls", justify="right")
        table.add_column("tokens", justify="right")
        table.add_column("USD", justify="right")
        table.add_column("wall s", justify="right")
        for row in r.rows:
            spread = "-" if row.final_min is None else escape(f"[{row.final_min:.6g}, {row.final_max:.6g}]")
            to_target = f"{_num(row.evals_to_target_median, 'int')} ({row.reached}/{row.completed})"
            done = "" if row.completed == row.runs else f" ({row.completed}/{row.runs} ran)"
            table.add_row(
                str(row.rank), escape(row.strategy + done), _num(row.final_median), spread, to_target,
                _num(row.evaluations_median, "int"), _num(row.llm_calls_median, "int"), _num(row.tokens_median, "int"),
                "-" if row.cost_usd_median is None else f"${row.cost_usd_median:.4f}", _num(row.wall_s_median, ".1f"),
            )
        console.print(table)
        if r.result.seed_score is not None:
            typer.echo(f"seed score {r.result.seed_score:.10g}; target {r.result.target:.10g}")
    for run in r.failed:
        typer.echo(f"failed: {run.strategy} seed {run.seed}"
                   + (f" (campaign {run.campaign_id})" if run.campaign_id else "") + f": {run.error}")
    if r.plot_path:
        typer.echo(f"plot: {r.plot_path}")
    elif r.error:
        typer.echo(f"note: {r.error}")
    typer.echo(f"stored as comparison {r.id}; see it again with `discovery comparisons {r.id}`")


@app.command("compare")
def compare_cmd(
    problem: str = typer.Argument(..., help="Problem name or path to a problem module."),
    strategies: str = typer.Option(..., "--strategies", help=f"Comma-separated strategies from {', '.join(STRATEGIES)}."),
    budget: int = typer.Option(..., "--budget", help="Proposals per run, the same for every strategy."),
    seeds: int = typer.Option(3, "--seeds", help="Runs per strategy (master seeds seed-base, seed-base+1, ...)."),
    seed_base: int = typer.Option(0, "--seed-base", help="First master seed."),
    target_pct: float = typer.Option(1.0, "--target-pct", help="Evaluations-to-target measures reaching seed score + this %."),
    parallel: Optional[int] = typer.Option(
        None, "--parallel", help="Campaigns at once (default: cores); use 1 for timing problems such as lasso_path."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="PNG path (default comparisons/comparison-<id>-<problem>.png)."),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML or YAML campaign file shared by every run."),
    sets: Optional[list[str]] = typer.Option(None, "--set", help="KEY=VALUE setting for every run, repeatable."),
    name: Optional[str] = typer.Option(None, help="A label for the comparison."),
    model: Optional[str] = typer.Option(None, help="litellm model string; default DISCOVERY_MODEL, else offline."),
    api_base: Optional[str] = typer.Option(None, "--api-base", help="Base URL of an OpenAI-compatible server."),
    api_key_env: Optional[str] = typer.Option(None, "--api-key-env", help="Env variable holding the API key."),
    db: Optional[str] = typer.Option(None, "--db", help="SQLAlchemy URL (default DISCOVERY_DB_URL or sqlite:///./discovery.db)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
) -> None:
    """Run several strategies x seeds at one budget; print a table, write a plot, store it."""
    from flows.compare import ComparisonInterrupted, compare_strategies

    kwargs = dict(
        strategies=strategies, seeds=seeds, budget=budget, seed_base=seed_base, target_pct=target_pct,
        parallel=parallel, plot_path=plot, config_file=config, assignments=sets or (), db_url=db,
        model=model, api_base=api_base, api_key_env=api_key_env, name=name,
    )
    try:
        if quiet:
            report = _guard(compare_strategies, problem, **kwargs)
        else:
            with _CompareProgressBars() as bars:
                report = _guard(compare_strategies, problem, progress=bars, **kwargs)
    except ComparisonInterrupted as stopped:
        ids = " ".join(map(str, stopped.campaign_ids))
        _fail(f"interrupted; comparison {stopped.comparison_id} is stored as failed"
              + (f"; its unfinished campaigns can be continued with `discovery resume ID` ({ids})" if ids else ""), 130)
    _print_comparison(report)


@app.command("comparisons")
def comparisons_cmd(
    comparison_id: Optional[int] = typer.Argument(None, help="Comparison id to show (omit to list them all)."),
    db: Optional[str] = typer.Option(None, "--db", help="SQLAlchemy URL."),
    json_out: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """List stored comparisons, or show one (table and plot path) without re-running it."""
    import dataclasses

    from flows.compare import list_comparisons, show_comparison

    if comparison_id is not None:
        report = _guard(show_comparison, comparison_id, db_url=db)
        if json_out:
            typer.echo(json.dumps({
                "id": report.id, "name": report.name, "problem": report.problem, "strategies": report.strategies,
                "seeds": report.seeds, "budget": report.budget, "target_pct": report.target_pct,
                "status": report.status, "plot_path": report.plot_path, "config": report.config,
                "error": report.error, "runs": [dataclasses.asdict(r) for r in report.runs],
                "results": report.result.to_dict() if report.result else None,
            }, indent=2, default=str))
            return
        _print_comparison(report)
        return
    reports = _guard(list_comparisons, db_url=db)
    if not reports:
        typer.echo("no comparisons yet: start one with `discovery compare PROBLEM --strategies a,b --budget N`")
        return
    from rich.markup import escape
    from rich.table import Table

    table = Table()
    for col in ("id", "name", "problem", "strategies", "seeds", "budget", "status", "best (median final)", "created"):
        table.add_column(col, overflow="fold")
    for r in reports:
        top = r.rows[0] if r.rows and r.rows[0].final_median is not None else None
        best = "-" if top is None else f"{top.strategy} {top.final_median:.6g}"
        created = r.created_at.strftime("%Y-%m-%d %H:%M") if r.created_at else "-"
        table.add_row(str(r.id), escape(r.name), escape(r.problem), ", ".join(r.strategies), str(len(r.seeds)),
                      str(r.budget), r.status, best, created)
    _wide_console().print(table)
    typer.echo("show one with `discovery comparisons ID`")


def _command_line() -> str:
    """The command as the user typed it (for the export record)."""
    import shlex

    name = Path(sys.argv[0]).name if sys.argv else ""
    if name in ("discovery", "cli.py", "__main__.py"):
        return shlex.join(["discovery", *sys.argv[1:]])
    return ""


def _print_counts(r, title: str) -> None:
    """Rows per format and split, then the dropped rows per reason, of an export or a preview."""
    from rich.table import Table

    from discovery.export.schema import SPLITS

    table = Table(title=title)
    table.add_column("format")
    for split in SPLITS:
        table.add_column(split, justify="right")
    table.add_column("total", justify="right")
    for fmt in r.formats:
        counts = r.row_counts.get(fmt, {})
        table.add_row(fmt, *[str(counts.get(s, 0)) for s in SPLITS], str(sum(counts.values())))
    _wide_console().print(table)
    for fmt, reasons in r.dropped.items():
        typer.echo(f"dropped {fmt}: " + ", ".join(f"{reason} {n}" for reason, n in reasons.items()))


def _campaigns_title(what: str, r) -> str:
    return f"{what}: {r.rows} rows from {len(r.campaigns)} campaign{'s' if len(r.campaigns) != 1 else ''}"


def _print_export(r) -> None:
    _print_counts(r, _campaigns_title(f"export {r.id}", r))
    typer.echo(f"out: {r.out_dir}")
    if r.replay_of is not None and r.identical is not None:
        typer.echo(f"replay of export {r.replay_of}: "
                   + ("identical files (same sha256)" if r.identical else
                      f"files differ from the original: {', '.join(r.differing)}"))
    typer.echo(f"stored as export {r.id}; regenerate with `discovery export --replay {r.replay_of or r.id} --out DIR`"
               f", details with `discovery exports {r.id}`")


def _split_list(values: Optional[list[str]]) -> Optional[list[str]]:
    if not values:
        return None
    return [v.strip() for item in values for v in item.split(",") if v.strip()] or None


@app.command("export")
def export_cmd(
    campaign_ids: Optional[list[int]] = typer.Argument(None, help="Campaign ids to export (or --all / --problem / --strategy)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (created; must be empty unless --overwrite)."),
    formats: str = typer.Option("sft,preference,rl", "--format", help="Comma-separated formats: sft, preference, rl."),
    all_campaigns: bool = typer.Option(False, "--all", help="Every completed, stopped or interrupted campaign."),
    all_valid: bool = typer.Option(False, "--all-valid", help="SFT keeps every ok program, not only improvements."),
    top_pct: Optional[float] = typer.Option(None, "--top-pct", help="Keep the top R% of each campaign's trajectories."),
    prefix_to_best: bool = typer.Option(False, "--prefix-to-best", help="Keep trajectories up to their best move."),
    min_gap: float = typer.Option(0.0, "--min-gap", help="Least normalised-reward gap of a preference pair."),
    keep_guidance: bool = typer.Option(False, "--keep-guidance", help="R^3L retries keep the reflection guidance."),
    validation_problems: Optional[str] = typer.Option(
        None, "--validation-problems", help="Comma-separated problems whose rows form the validation split."),
    problem: Optional[list[str]] = typer.Option(None, "--problem", help="Select campaigns of this problem (repeatable)."),
    strategy: Optional[list[str]] = typer.Option(None, "--strategy", help="Select campaigns of this strategy (repeatable)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier export in --out."),
    replay: Optional[int] = typer.Option(None, "--replay", help="Run export ID again with its stored parameters."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Count the rows per format and split, and the dropped "
                                 "rows per reason, and write nothing (--out not needed)."),
    db: Optional[str] = typer.Option(None, "--db", help="SQLAlchemy URL (default DISCOVERY_DB_URL or sqlite:///./discovery.db)."),
    json_out: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Export campaigns as post-training datasets (SFT, preference, RL) in JSONL and Parquet, with a card."""
    from discovery.export.schema import ExportFilters
    from flows.export import export_dataset, preview_export, reproduce_export

    problems, strategies = _split_list(problem), _split_list(strategy)
    command = _command_line() or None
    if replay is not None and dry_run:
        _fail("--dry-run previews a new export: drop --replay (`discovery exports ID` shows what it wrote)")
    if replay is not None:
        given = [name for name, used in (
            ("campaign ids", bool(campaign_ids)), ("--all", all_campaigns), ("--problem", bool(problems)),
            ("--strategy", bool(strategies)), ("--format", formats != "sft,preference,rl"),
            ("--all-valid", all_valid), ("--top-pct", top_pct is not None), ("--prefix-to-best", prefix_to_best),
            ("--min-gap", min_gap != 0.0), ("--keep-guidance", keep_guidance),
            ("--validation-problems", validation_problems is not None)) if used]
        if given:
            _fail(f"--replay re-uses the stored export's campaigns, formats and filters: drop {given[0]}")
        report = _guard(reproduce_export, replay, out_dir=out, db_url=db, overwrite=overwrite, command=command)
    else:
        if out is None and not dry_run:
            _fail("no output folder: pass --out DIR (or --dry-run to count the rows without writing)")
        if campaign_ids and (all_campaigns or problems or strategies):
            _fail("pass campaign ids or --all / --problem / --strategy, not both")
        if not campaign_ids and not (all_campaigns or problems or strategies):
            _fail("no campaigns chosen: pass campaign ids (see `discovery show ID`), --problem P, --strategy S, "
                  "or --all for every finished campaign")
        vp = tuple(v.strip() for v in (validation_problems or "").split(",") if v.strip())
        filters = ExportFilters(improved_only=not all_valid, top_pct=top_pct, prefix_to_best=prefix_to_best,
                                min_gap=min_gap, keep_guidance=keep_guidance, validation_problems=vp)
        if dry_run:
            preview = _guard(preview_export, campaign_ids or None, formats=formats, filters=filters,
                             problems=problems, strategies=strategies, db_url=db)
            _print_preview(preview, out, json_out)
            return
        report = _guard(export_dataset, campaign_ids or None, out_dir=out, formats=formats, filters=filters,
                        problems=problems, strategies=strategies, db_url=db, overwrite=overwrite, command=command)
    if json_out:
        typer.echo(json.dumps(_export_json(report), indent=2, default=str))
        return
    _print_export(report)


def _print_preview(p, out: Optional[Path], json_out: bool) -> None:
    import dataclasses

    from flows.export import regenerate_command

    command = p.command if out is None else regenerate_command(
        {"campaigns": p.campaigns, "formats": p.formats, "filters": p.filters}, out_dir=str(out))
    if json_out:
        typer.echo(json.dumps({**dataclasses.asdict(p), "rows": p.rows, "command": command}, indent=2, default=str))
        return
    typer.echo(f"campaigns: {' '.join(map(str, p.campaigns))} ({p.steps} steps read)")
    _print_counts(p, _campaigns_title("dry run", p))
    if not p.rows:
        typer.echo("no rows pass the filters: loosen them (e.g. --all-valid, no --top-pct); the export would fail")
    typer.echo("dry run: nothing was written or stored; to write it:")
    typer.echo(f"  {command}")


def _export_json(r) -> dict:
    import dataclasses

    out = dataclasses.asdict(r)
    out["differing"] = list(r.differing)
    return out


@app.command("exports")
def exports_cmd(
    export_id: Optional[int] = typer.Argument(None, help="Export id to show (omit to list them all)."),
    db: Optional[str] = typer.Option(None, "--db", help="SQLAlchemy URL."),
    json_out: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """List stored exports, or show one: who, when, parameters, counts, files and their sha256."""
    from rich.markup import escape
    from rich.table import Table

    from flows.export import list_exports, regenerate_command, show_export

    if export_id is not None:
        r = _guard(show_export, export_id, db_url=db)
        if json_out:
            typer.echo(json.dumps(_export_json(r), indent=2, default=str))
            return
        _print_export(r)
        when = r.created_at.strftime("%Y-%m-%d %H:%M:%S") if r.created_at else "-"
        typer.echo(f"status: {r.status}" + (f" ({r.error})" if r.error else ""))
        typer.echo(f"by {r.username} at {when} UTC: {r.command}")
        typer.echo(f"campaigns: {' '.join(map(str, r.campaigns))}")
        typer.echo("filters: " + ", ".join(f"{k}={v}" for k, v in r.filters.items()))
        typer.echo(f"equivalent command: {regenerate_command(r.params)}")
        if r.files:
            table = Table(title="files")
            for col in ("file", "rows", "bytes", "sha256"):
                table.add_column(col, overflow="fold")
            for path, f in r.files.items():
                table.add_row(escape(path), "-" if f.get("rows") is None else str(f["rows"]), str(f.get("bytes", "-")),
                              f.get("sha256", "-"))
            _wide_console().print(table)
        return
    reports = _guard(list_exports, db_url=db)
    if json_out:
        typer.echo(json.dumps([_export_json(r) for r in reports], indent=2, default=str))
        return
    if not reports:
        typer.echo("no exports yet: make one with `discovery export CAMPAIGN_IDS --out DIR`")
        return
    table = Table()
    for col in ("id", "created", "user", "status", "campaigns", "formats", "rows", "out", "replay of"):
        table.add_column(col, overflow="fold")
    for r in reports:
        created = r.created_at.strftime("%Y-%m-%d %H:%M") if r.created_at else "-"
        camps = ", ".join(map(str, r.campaigns[:6])) + (" ..." if len(r.campaigns) > 6 else "")
        replay = "-" if r.replay_of is None else (
            f"{r.replay_of} ({'identical' if r.identical else 'differs'})" if r.identical is not None else str(r.replay_of))
        table.add_row(str(r.id), created, escape(r.username), r.status, camps, ",".join(r.formats), str(r.rows),
                      escape(r.out_dir), replay)
    _wide_console().print(table)
    typer.echo("show one with `discovery exports ID`")


# ---------------------------------------------------------------- schedules and workers


def _settings_from(assignments: Optional[list[str]]) -> dict:
    """--set KEY=VALUE pairs (values read as YAML scalars: 0.1, true, "text") as a dict."""
    import yaml

    out = {}
    for item in assignments or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            _fail(f"--set takes KEY=VALUE, not {item!r} (e.g. --set warmup_steps=10)")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            out[key.strip()] = value
    return out


def _print_training(r) -> None:
    typer.echo(f"training run {r.id}: {r.method} of {r.base_model} -> {r.output_dir}  [{r.status}]"
               + (f" ({r.error})" if r.error else ""))
    data = r.data
    where = data.get("folder") or ", ".join(map(str, data.get("campaigns", []))) or data.get("source", "")
    typer.echo(f"data: {data.get('source', '?')} {where}" + (f" (export {data['export_id']})" if data.get("export_id")
                                                               else "")
               + (f", {data['rows']} rows" if "rows" in data else "")
               + (f", {data['prompts']} prompts" if "prompts" in data else ""))
    train_metrics = r.metrics.get("train", {})
    if train_metrics:
        typer.echo("metrics: " + ", ".join(f"{k}={_num(v)}" for k, v in sorted(train_metrics.items())))
    rewards = [h for h in r.metrics.get("log_history", []) if "reward" in h]
    if rewards:
        typer.echo("mean reward by step: " + ", ".join(f"{h.get('step', '?')}: {_num(h['reward'])}" for h in rewards))
    for problem, cid in r.reward_campaigns.items():
        typer.echo(f"reward campaign {cid} ({problem}): every scored completion; browse with `discovery show {cid}` "
                   f"or export with `discovery export {cid} --out DIR`")


@app.command("train")
def train_cmd(
    method: str = typer.Argument(..., help="sft (chat records), dpo (preference pairs) or grpo (RL, sandboxed rewards)."),
    model: str = typer.Option(..., "--model", help="Base model: a save_pretrained folder or a hub id."),
    out: Path = typer.Option(..., "--out", help="Where the trained model is written (absent or empty)."),
    data: Optional[Path] = typer.Option(None, "--data", help="An export folder (`discovery export ... --out DIR`)."),
    campaign: Optional[list[int]] = typer.Option(None, "--campaign", help="Train on these finished campaigns "
                                                 "(repeatable; sft/dpo export them into OUT/data first)."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Optimisation steps (default: one epoch)."),
    epochs: Optional[float] = typer.Option(None, "--epochs", help="Epochs when --max-steps is not given."),
    learning_rate: Optional[float] = typer.Option(None, "--lr", help="Learning rate (default: TRL's for the method)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Per-device batch size (default 2)."),
    grad_accum: Optional[int] = typer.Option(None, "--grad-accum", help="Gradient accumulation steps."),
    max_length: Optional[int] = typer.Option(None, "--max-length", help="SFT/DPO: tokens of prompt + answer."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Training seed (default 0)."),
    beta: Optional[float] = typer.Option(None, "--beta", help="DPO temperature / GRPO KL coefficient."),
    num_generations: Optional[int] = typer.Option(None, "--num-generations", help="GRPO: completions per prompt."),
    max_completion_length: Optional[int] = typer.Option(None, "--max-completion-length",
                                                        help="GRPO: tokens per completion (default 256)."),
    temperature: Optional[float] = typer.Option(None, "--temperature", help="GRPO: sampling temperature."),
    invalid_reward: Optional[float] = typer.Option(None, "--invalid-reward", help="GRPO: reward of a completion "
                                                   "that is not an ok program (default: below the seed)."),
    sandbox: Optional[str] = typer.Option(None, "--sandbox", help="GRPO: auto, process, bwrap or docker."),
    eval_slots: Optional[int] = typer.Option(None, "--eval-slots", help="GRPO: completions scored at once."),
    assignments: Optional[list[str]] = typer.Option(None, "--set", help="Any other TRL config field, KEY=VALUE "
                                                    "(repeatable), e.g. --set warmup_steps=10."),
    db: Optional[str] = typer.Option(None, "--db", help="SQLAlchemy URL (default DISCOVERY_DB_URL or sqlite:///./discovery.db)."),
    json_out: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Fine-tune a model on what campaigns found (needs the `train` extra): SFT, DPO, or GRPO with our
    sandboxed evaluators as the reward. Stores the run (data, model, settings, metrics) in the database."""
    from flows.train import train

    report = _guard(
        train, method, model=model, out_dir=out, data=data, campaigns=campaign or None, db_url=db,
        command=_command_line() or None, max_steps=max_steps, epochs=epochs, learning_rate=learning_rate,
        batch_size=batch_size, grad_accum=grad_accum, max_length=max_length, seed=seed, beta=beta,
        num_generations=num_generations, max_completion_length=max_completion_length, temperature=temperature,
        invalid_reward=invalid_reward, sandbox=sandbox, eval_slots=eval_slots, trl=_settings_from(assignments),
    )
    if json_out:
        typer.echo(json.dumps(dataclasses.asdict(report), indent=2, default=str))
        return
    _print_training(report)


@app.command("trainings")
def trainings_cmd(
    run_id: Optional[int] = typer.Argument(None, help="Training run id to show (omit to list them all)."),
    db: Optional[str] = typer.Option(None, "--db", help="SQLAlchemy URL."),
    json_out: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """List stored training runs, or show one: data, base model, output, settings, metrics, reward campaigns."""
    from flows.train import list_training_runs, show_training_run

    runs = [_guard(show_training_run, run_id, db_url=db)] if run_id is not None else _guard(list_training_runs, db_url=db)
    if json_out:
        typer.echo(json.dumps([dataclasses.asdict(r) for r in runs], indent=2, default=str))
        return
    if not runs:
        typer.echo("no training runs yet: start one with `discovery train sft|dpo|grpo --model M --out DIR`")
    for r in runs:
        _print_training(r)
        if run_id is not None:
            typer.echo(f"by {r.username}: {r.command}")
            typer.echo("settings: " + ", ".join(f"{k}={v}" for k, v in r.config.get("settings", {}).items()
                                                if v not in (None, {}, [])))
            typer.echo("versions: " + ", ".join(f"{k} {v}" for k, v in r.config.get("versions", {}).items()))


@app.command("schedule")
def schedule_cmd(
    problem: Optional[str] = typer.Argument(None, help="Problem name or path to a problem module (or set it in --config)."),
    cron: str = typer.Option(..., "--cron", help='Cron string, e.g. "0 2 * * *" (02:00 every day).'),
    name: Optional[str] = typer.Option(None, "--name", help="Schedule name (default: the problem); also the campaigns' label."),
    pool: str = typer.Option("discovery", "--pool", help="Process work pool the runs go to (created if missing)."),
    timezone: str = typer.Option("UTC", "--timezone", help="IANA time zone of the cron string."),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML or YAML campaign file (its values are stored)."),
    strategy: Optional[str] = typer.Option(None, help=f"Search strategy: {', '.join(STRATEGIES)} (default simpletes)."),
    model: Optional[str] = typer.Option(None, help="litellm model string; default the worker's DISCOVERY_MODEL, else offline."),
    api_base: Optional[str] = typer.Option(None, "--api-base", help="Base URL of an OpenAI-compatible server."),
    api_key_env: Optional[str] = typer.Option(None, "--api-key-env", help="Env variable (on the worker) holding the API key."),
    chains: Optional[int] = typer.Option(None, help="C: independent chains."),
    k: Optional[int] = typer.Option(None, "--k", help="K: candidates per prompt."),
    budget: Optional[int] = typer.Option(None, help="Total proposals, a multiple of chains x k."),
    seed: Optional[int] = typer.Option(None, help="Master seed."),
    sandbox: Optional[str] = typer.Option(None, help="auto, process, bwrap or docker."),
    eval_slots: Optional[int] = typer.Option(None, "--eval-slots", help="Evaluations at once."),
    eval_on: Optional[str] = typer.Option(None, "--eval-on", help="local (default) or workers (`discovery worker`)."),
    llm_concurrency: Optional[int] = typer.Option(None, "--llm-concurrency", help="LLM calls in flight at once."),
    max_cost: Optional[float] = typer.Option(None, "--max-cost", help="Stop proposing after this many USD."),
    sets: Optional[list[str]] = typer.Option(None, "--set", help="KEY=VALUE setting, repeatable; flags win."),
    db: Optional[str] = typer.Option(None, "--db", help="Database URL without a password (default: the worker's DISCOVERY_DB_URL)."),
) -> None:
    """Run a campaign on a timetable: a Prefect deployment with a cron schedule (needs PREFECT_API_URL)."""
    from flows.schedule import schedule_campaign

    overrides = dict(
        strategy=strategy, model=model, api_base=api_base, api_key_env=api_key_env, chains=chains, k=k,
        budget=budget, seed=seed, sandbox=sandbox, eval_slots=eval_slots, eval_on=eval_on,
        llm_concurrency=llm_concurrency, max_cost_usd=max_cost,
    )
    dep_id = _guard(schedule_campaign, problem, cron=cron, name=name, work_pool=pool, timezone=timezone, db_url=db,
                    config_file=config, assignments=sets or (), **overrides)
    typer.echo(f"scheduled {name or problem or 'campaign'} (deployment {dep_id}): cron {cron!r} ({timezone}), "
               f"work pool {pool!r}")
    typer.echo(f"runs start when a worker serves the pool: prefect worker start --pool {pool}")


@app.command("schedules")
def schedules_cmd(
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List the scheduled campaigns (Prefect deployments; needs PREFECT_API_URL)."""
    from rich.markup import escape
    from rich.table import Table

    from flows.schedule import list_schedules

    items = _guard(list_schedules)
    if json_out:
        import dataclasses

        typer.echo(json.dumps([dataclasses.asdict(i) for i in items], indent=2, default=str))
        return
    if not items:
        typer.echo('no scheduled campaigns: add one with `discovery schedule PROBLEM --cron "0 2 * * *"`')
        return
    table = Table()
    for col in ("name", "cron", "timezone", "active", "pool", "problem", "settings"):
        table.add_column(col, overflow="fold")
    for i in items:
        extra = ", ".join(f"{k}={v}" for k, v in i.settings.items() if k != "problem")
        table.add_row(escape(i.name), i.cron, i.timezone, "yes" if i.active else "no", escape(i.work_pool),
                      escape(i.problem), escape(extra))
    _wide_console().print(table)


@app.command("unschedule")
def unschedule_cmd(
    name: str = typer.Argument(..., help="Schedule name (see `discovery schedules`)."),
) -> None:
    """Remove a scheduled campaign (its past runs and campaigns stay)."""
    from flows.schedule import unschedule

    _guard(unschedule, name)
    typer.echo(f"unscheduled {name}")


@app.command("worker")
def worker_cmd(
    limit: Optional[int] = typer.Option(None, "--limit", help="Evaluations at once in this worker (default: cores)."),
) -> None:
    """Serve campaign evaluations (campaigns run with --eval-on workers); needs PREFECT_API_URL and DISCOVERY_DB_URL."""
    from flows.workers import serve_evaluations

    _guard(serve_evaluations, limit=limit)


def main() -> int:
    """Console entry point: usage errors become one `error:` line with exit code 2."""
    try:
        return _main()
    finally:
        engine = sys.modules.get("db.engine")
        if engine is not None:  # close SQLite cleanly: no -wal/-shm files left beside the database
            engine.dispose_engines()


def _main() -> int:
    try:
        code = app(standalone_mode=False)
    except typer.Abort:
        typer.echo("error: aborted", err=True)
        return 130
    except typer.TyperException as exc:  # usage errors: bad option values, missing arguments
        ctx = getattr(exc, "ctx", None)
        where = f" (see `discovery {ctx.info_name} --help`)" if ctx is not None and ctx.parent else ""
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        typer.echo(f"error: {' '.join(message.split())}{where}", err=True)
        return getattr(exc, "exit_code", 2) or 2
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
