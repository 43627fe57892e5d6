"""Post-training datasets from campaigns: SFT, preference and RL records as JSONL and Parquet.

    from flows.export import export_dataset, preview_export, reproduce_export, show_export, list_exports
    from discovery.export.schema import ExportFilters

    preview = preview_export([3, 4, 5], filters=ExportFilters(top_pct=50))  # a dry run: writes nothing
    print(preview.row_counts, preview.dropped, preview.command)           # what export_dataset would write
    report = export_dataset([3, 4, 5], out_dir="data/erdos-v1",
                            filters=ExportFilters(top_pct=50, validation_problems=("circle_packing",)))
    print(report.row_counts)       # {"sft": {"train": 812, "validation": 97}, "preference": {...}, ...}
    print(report.files)            # {"sft/train.parquet": {"sha256": ..., "bytes": ..., "rows": 812}, ...}
    again = reproduce_export(report.id, out_dir="data/erdos-v1-again")
    assert again.identical         # the same bytes, as long as the database has not changed

    from datasets import load_dataset
    sft = load_dataset("data/erdos-v1", "sft")          # the card's configs: train + validation
    rl = load_dataset("parquet", data_files="data/erdos-v1/rl/train.parquet")

What happens, in order:
  1. Everything is checked before anything is written, each problem one line (ExportError, a
     ConfigError): the formats, the filters (top_pct in (0, 100], min_gap >= 0, validation
     problems among the exported campaigns' problems), the campaigns (an unknown id is named; a
     campaign that is still created or running is refused, because its rows are still being
     written; completed, stopped and interrupted campaigns are exported), and the output folder
     (it must be empty or absent unless overwrite=True, and then it must hold an earlier export;
     its parent must be writable: a staging folder `.<name>.tmp-<pid>-<random>` is made beside it).
  2. An `export` row is stored (status running): who, when, the command, the parameters.
  3. One consistent read snapshot of the database (a WAL reader on SQLite, so running
     campaigns are never blocked): first the small aggregates (per campaign its seed and best
     score, per trajectory its best score and the first move reaching it, per problem the
     reward scale), then one streamed query per campaign of its steps with their candidate, the
     candidate's search evaluation and the parent program's, in (campaign, trajectory, move,
     sample) order, `chunk` rows at a time. discovery.export.shape turns that stream into rows;
     duplicates are recognised by a key table in a temporary SQLite file, so memory does not
     grow with the number of rows.
  4. Rows are written as they come: `<format>/<split>.jsonl` (one JSON object a line) and
     `<format>/<split>.parquet` (a fixed schema from discovery.export.schema.COLUMNS, written in
     row groups of `batch_rows`), only for the format/split pairs that have rows; then the
     dataset card README.md (Hugging Face card: YAML `configs` so `load_dataset(folder, format)`
     works, then campaigns, problems, counts, filters, score ranges, licence notice and the
     command that regenerates it). Nothing in the files depends on the time, the user or the
     folder, so a replay of the same parameters on the same database gives the same bytes.
  5. The staging folder replaces the output folder in one rename; the sha256 of every file,
     the row counts and the dropped counts are stored on the export row (status completed).
     On any failure after step 2 (a write error, Ctrl-C) the staging folder is removed, so no
     partial files are left, and the export row is stored as failed with its error.

preview_export (`discovery export ... --dry-run`) makes the same checks as step 1 (but has no
output folder) and the same read and shaping as step 3, and only counts the rows: it stores no
export row and writes no file (its key table is in a temporary folder, removed after). Its
counts are those export_dataset would write on the same database; when no row passes the
filters it returns zero counts with the dropped reasons instead of raising.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import getpass
import hashlib
import importlib.metadata
import json
import math
import os
import re
import secrets
import shlex
import shutil
import sqlite3
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from db import repository as repo
from db.engine import get_engine
from db.repository import EXPORTABLE_STATUSES, UnknownExport
from discovery.config import ConfigError, parse_names
from discovery.export.schema import (
    COLUMNS,
    FORMATS,
    SPLITS,
    CampaignView,
    ExportFilters,
    ProblemScale,
    StepView,
    TrajectoryStats,
)

__all__ = [
    "DiskDedup",
    "ExportError",
    "ExportPreview",
    "ExportReport",
    "UnknownExport",
    "arrow_schema",
    "export_dataset",
    "list_exports",
    "preview_export",
    "regenerate_command",
    "reproduce_export",
    "show_export",
]

CARD = "README.md"
CARD_MARK = "generated by `discovery export`"  # an existing folder holding this card may be overwritten
BATCH_ROWS = 1024  # Parquet row-group size, and the rows held in memory per open file
CHUNK = 1000  # step rows fetched from the database at a time


class ExportError(ConfigError):
    """An export that cannot be made as asked: one line naming the fix. Nothing was written."""


# ---------------------------------------------------------------- what an export is


@dataclasses.dataclass(frozen=True)
class ExportReport:
    """A stored export: its parameters, what it wrote, and (for a replay) whether it matched.

    row_counts: format -> split -> rows written; dropped: format -> reason -> rows the shaper did
    not export (both splits; per split in stats["shape"]["dropped"]);
    files: path relative to out_dir -> {"sha256", "bytes", "rows"} (rows is None for the card);
    identical: for a replay, whether every file has the same sha256 as in the export it
    replays (None when this is not a replay, or either export did not complete).
    """

    id: int
    status: str  # running | completed | failed
    out_dir: str
    campaigns: list[int]
    formats: list[str]
    filters: dict[str, Any]
    row_counts: dict[str, dict[str, int]]
    dropped: dict[str, dict[str, int]]
    files: dict[str, dict[str, Any]]
    stats: dict[str, Any]
    params: dict[str, Any]
    username: str
    command: str
    error: str
    replay_of: int | None
    created_at: dt.datetime | None
    finished_at: dt.datetime | None
    identical: bool | None = None
    differing: tuple[str, ...] = ()

    @property
    def rows(self) -> int:
        """Rows written, over every format and split."""
        return sum(n for splits in self.row_counts.values() for n in splits.values())


@dataclasses.dataclass(frozen=True)
class ExportPreview:
    """What an export with these parameters would write, counted without writing (a dry run).

    row_counts and dropped have the shapes of ExportReport's (a format with no row is {});
    steps: the stored steps read; command: the `discovery export` command line that writes it
    (`--out <folder>` to fill in).
    """

    campaigns: list[int]
    formats: list[str]
    filters: dict[str, Any]
    row_counts: dict[str, dict[str, int]]
    dropped: dict[str, dict[str, int]]
    steps: int
    command: str

    @property
    def rows(self) -> int:
        """Rows an export would write, over every format and split."""
        return sum(n for splits in self.row_counts.values() for n in splits.values())


def _report(row, original=None) -> ExportReport:
    params = dict(row.params or {})
    identical, differing = None, ()
    if original is not None and row.status == original.status == "completed":
        mine = {p: f.get("sha256") for p, f in (row.files or {}).items()}
        theirs = {p: f.get("sha256") for p, f in (original.files or {}).items()}
        differing = tuple(sorted(p for p in set(mine) | set(theirs) if mine.get(p) != theirs.get(p)))
        identical = not differing
    return ExportReport(
        id=row.id, status=row.status, out_dir=row.out_dir, campaigns=list(params.get("campaigns", [])),
        formats=list(params.get("formats", [])), filters=dict(params.get("filters", {})),
        row_counts=dict(row.row_counts or {}), dropped=dict(row.dropped or {}), files=dict(row.files or {}),
        stats=dict(row.stats or {}), params=params, username=row.username, command=row.command,
        error=row.error or "", replay_of=row.replay_of, created_at=row.created_at, finished_at=row.finished_at,
        identical=identical, differing=differing,
    )


def show_export(export_id: int, *, db_url: str | None = None) -> ExportReport:
    """A stored export, read from the database (nothing is re-run)."""
    return _show(get_engine(db_url), export_id)


def _show(engine, export_id: int) -> ExportReport:
    row = repo.get_export(engine, export_id)
    original = None
    if row.replay_of is not None:
        try:
            original = repo.get_export(engine, row.replay_of)
        except UnknownExport:
            original = None
    return _report(row, original)


def list_exports(*, db_url: str | None = None) -> list[ExportReport]:
    """Every stored export, oldest first."""
    engine = get_engine(db_url)
    rows = repo.list_exports(engine)
    by_id = {r.id: r for r in rows}
    return [_report(r, by_id.get(r.replay_of)) for r in rows]


# ---------------------------------------------------------------- checking the input


def _formats(formats: str | Sequence[str]) -> list[str]:
    names = parse_names(formats, FORMATS, noun="format", plural="formats", example="--format sft,rl",
                        error=ExportError)
    return [f for f in FORMATS if f in names]


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_filters(filters: ExportFilters) -> ExportFilters:
    if not isinstance(filters, ExportFilters):
        raise ExportError(f"filters must be a discovery.export.schema.ExportFilters, not {type(filters).__name__}")
    if filters.top_pct is not None and (not _number(filters.top_pct) or not 0 < filters.top_pct <= 100):
        raise ExportError(
            f"top_pct must be a percentage in (0, 100] (50 = the best half of each campaign's trajectories), "
            f"not {filters.top_pct!r}")
    if not _number(filters.min_gap) or filters.min_gap < 0:
        raise ExportError(
            f"min_gap must be a number >= 0 (the least difference of normalised rewards in a preference pair), "
            f"not {filters.min_gap!r}")
    for flag in ("improved_only", "prefix_to_best", "keep_guidance"):
        if not isinstance(getattr(filters, flag), bool):
            raise ExportError(f"{flag} must be True or False, not {getattr(filters, flag)!r}")
    vp = filters.validation_problems
    if isinstance(vp, str) or not all(isinstance(p, str) and p.strip() for p in vp):
        raise ExportError(f"validation_problems must be a list of problem names, not {vp!r}")
    return dataclasses.replace(filters, validation_problems=tuple(dict.fromkeys(p.strip() for p in vp)))


def _names(values: str | Sequence[str] | None) -> list[str] | None:
    if values is None:
        return None
    items = values.split(",") if isinstance(values, str) else list(values)
    return [str(v).strip() for v in items if str(v).strip()] or None


def _select_campaigns(engine, ids, problems, strategies) -> list:
    """The campaigns to export, checked (see the module docstring), in id order."""
    if ids is not None:
        if isinstance(ids, (int, str)):
            ids = [ids]
        try:
            wanted = [int(i) for i in ids]
        except (TypeError, ValueError):
            raise ExportError(f"campaign ids must be whole numbers, not {list(ids)!r}") from None
        if not wanted:
            raise ExportError("no campaigns given: pass campaign ids, or select them by problem or strategy")
        if problems or strategies:
            raise ExportError("pass campaign ids or problem/strategy selectors, not both")
        rows = repo.find_campaigns(engine, ids=wanted)
        found = {r.id for r in rows}
        missing = [i for i in dict.fromkeys(wanted) if i not in found]
        if missing:
            try:
                repo.get_campaign(engine, missing[0])
            except repo.UnknownCampaign as exc:
                raise ExportError(str(exc)) from None
        busy = [r for r in rows if r.status not in EXPORTABLE_STATUSES]
        if busy:
            r = busy[0]
            raise ExportError(
                f"campaign {r.id} is {r.status}: only {', '.join(EXPORTABLE_STATUSES)} campaigns are exported "
                f"(their rows no longer change); wait for it to finish, or `discovery resume {r.id}` it first")
        return rows
    rows = repo.find_campaigns(engine, problems=problems, strategies=strategies)
    ready = [r for r in rows if r.status in EXPORTABLE_STATUSES]
    if not ready:
        what = " and ".join(x for x in (
            f"problem {', '.join(problems)}" if problems else "",
            f"strategy {', '.join(strategies)}" if strategies else "") if x) or "any problem"
        others = {}
        for r in rows:
            others[r.status] = others.get(r.status, 0) + 1
        seen = f" ({', '.join(f'{n} {s}' for s, n in sorted(others.items()))})" if others else ""
        raise ExportError(f"no {'/'.join(EXPORTABLE_STATUSES)} campaign of {what}{seen}: see `discovery show ID` "
                          f"or run one with `discovery run`")
    return ready


def _check_validation_problems(filters: ExportFilters, rows) -> None:
    exported = sorted({r.problem for r in rows})
    unknown = [p for p in filters.validation_problems if p not in exported]
    if unknown:
        raise ExportError(f"validation problem {unknown[0]!r} is not among the exported campaigns' problems: "
                          f"choose from {', '.join(exported)}")


def _check_out_dir(out_dir: str | os.PathLike, overwrite: bool) -> Path:
    if out_dir is None or str(out_dir).strip() == "":
        raise ExportError("no output folder given: pass out_dir (--out DIR)")
    target = Path(os.path.abspath(Path(out_dir).expanduser()))
    if target.exists() and not target.is_dir():
        raise ExportError(f"output path {target} is a file, not a folder: choose a folder path")
    ancestor = target.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ExportError(f"cannot create output folder {target}: {ancestor} is a file, not a folder")
    if target.is_dir() and any(target.iterdir()):
        if not overwrite:
            raise ExportError(f"output folder {target} is not empty: choose another folder, or pass "
                              f"overwrite=True (--overwrite) to replace an earlier export there")
        if not _holds_export(target):
            raise ExportError(f"output folder {target} is not empty and holds no earlier export (no {CARD} "
                              f"{CARD_MARK}): refusing to replace it; choose another folder")
    return target


def _holds_export(folder: Path) -> bool:
    try:
        with open(folder / CARD, encoding="utf-8", errors="replace") as fh:
            return CARD_MARK in fh.read(8192)
    except OSError:
        return False


# ---------------------------------------------------------------- the staging folder


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


class _Staging:
    """`.<name>.tmp-<pid>-<random>` beside the output folder: written in full, then renamed into place.

    Creating it is the writability check; missing parent folders are created and removed again
    if the export does not complete. Staging folders of dead processes (a killed export) are
    cleaned up first.
    """

    def __init__(self, target: Path) -> None:
        self.target = target
        self.created: list[Path] = []
        missing = []
        p = target.parent
        while not p.exists():
            missing.append(p)
            p = p.parent
        try:
            for folder in reversed(missing):
                os.mkdir(folder)
                self.created.append(folder)
            self._clean_stale()
            self.path = target.parent / f".{target.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
            os.mkdir(self.path)
        except OSError as exc:
            self._remove_parents()
            where = Path(exc.filename).parent if exc.filename else target.parent
            raise ExportError(f"cannot write the output folder {target}: cannot create files in {where} "
                              f"({exc.strerror or type(exc).__name__}); choose a writable folder") from None

    def _clean_stale(self) -> None:
        pattern = re.compile(rf"^\.{re.escape(self.target.name)}\.(tmp|old)-(\d+)-[0-9a-f]+$")
        for entry in self.target.parent.iterdir():
            m = pattern.match(entry.name)
            if m and int(m.group(2)) != os.getpid() and not _pid_alive(int(m.group(2))):
                shutil.rmtree(entry, ignore_errors=True)

    def _remove_parents(self) -> None:
        for folder in reversed(self.created):
            try:
                folder.rmdir()
            except OSError:
                break
        self.created = []

    def discard(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        self._remove_parents()

    def commit(self) -> None:
        """Puts the staging folder in the output folder's place (replacing an earlier export)."""
        if self.target.is_dir() and any(self.target.iterdir()):
            old = self.target.parent / f".{self.target.name}.old-{os.getpid()}-{secrets.token_hex(4)}"
            os.rename(self.target, old)
            try:
                os.rename(self.path, self.target)
            except OSError:
                os.rename(old, self.target)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(self.path, self.target)  # an empty folder is replaced, an absent one made
        self.created = []


# ---------------------------------------------------------------- dedup on disk


class DiskDedup:
    """The shaper's Dedup protocol on a temporary SQLite file: memory stays flat with the rows.

    `seen(key)` records a 16-byte key and says whether it was recorded before. One transaction
    is kept open and committed every `commit_every` keys; the page cache is capped (8 MB), so
    what does not fit goes to the file.
    """

    def __init__(self, path: str | os.PathLike, commit_every: int = 50_000) -> None:
        self.path = Path(path)
        self._con = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        for pragma in ("journal_mode=OFF", "synchronous=OFF", "cache_size=-8192", "temp_store=FILE"):
            self._con.execute(f"PRAGMA {pragma}")
        self._con.execute("CREATE TABLE IF NOT EXISTS seen (key BLOB PRIMARY KEY) WITHOUT ROWID")
        self._con.execute("BEGIN")
        self._pending = 0
        self._every = commit_every
        self.keys = 0

    def seen(self, key: bytes) -> bool:
        cur = self._con.execute("INSERT OR IGNORE INTO seen (key) VALUES (?)", (bytes(key),))
        if cur.rowcount != 1:
            return True
        self.keys += 1
        self._pending += 1
        if self._pending >= self._every:
            self._con.execute("COMMIT")
            self._con.execute("BEGIN")
            self._pending = 0
        return False

    def close(self) -> None:
        try:
            self._con.close()
        finally:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> "DiskDedup":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---------------------------------------------------------------- writing


def _arrow_type(kind: str):
    import pyarrow as pa

    base = kind.rstrip("?")
    if base == "messages":
        return pa.list_(pa.struct([pa.field("role", pa.string()), pa.field("content", pa.string())]))
    return {"string": pa.string(), "int64": pa.int64(), "float64": pa.float64(), "bool": pa.bool_()}[base]


def arrow_schema(fmt: str):
    """The fixed Parquet schema of a format, from discovery.export.schema.COLUMNS."""
    import pyarrow as pa

    return pa.schema([pa.field(name, _arrow_type(kind), nullable=kind.endswith("?"))
                      for name, kind in COLUMNS[fmt].items()])


class _FileWriter:
    """One format/split: `<format>/<split>.jsonl` and `.parquet`, written as the rows come.

    The JSONL bytes are hashed as they are written (no second read of the biggest files).
    """

    def __init__(self, root: Path, fmt: str, split: str, batch_rows: int) -> None:
        import pyarrow.parquet as pq

        self.fmt, self.split = fmt, split
        self.columns = list(COLUMNS[fmt])
        self.keys = frozenset(self.columns)
        self.required = [c for c, k in COLUMNS[fmt].items() if not k.endswith("?")]
        self.schema = arrow_schema(fmt)
        folder = root / fmt
        folder.mkdir(exist_ok=True)
        self.jsonl_rel, self.parquet_rel = f"{fmt}/{split}.jsonl", f"{fmt}/{split}.parquet"
        self.jsonl = open(folder / f"{split}.jsonl", "wb", buffering=1 << 18)
        self.jsonl_sha256 = hashlib.sha256()
        self.jsonl_bytes = 0
        self.parquet = pq.ParquetWriter(folder / f"{split}.parquet", self.schema, compression="zstd",
                                        use_dictionary=True, write_statistics=True, version="2.6")
        self.batch: list[dict[str, Any]] = []
        self.batch_rows = batch_rows
        self.rows = 0

    def add(self, row: Mapping[str, Any]) -> None:
        if row.keys() != self.keys:
            extra = sorted(set(row) - self.keys)
            missing = [c for c in self.columns if c not in row]
            raise RuntimeError(f"a {self.fmt} row does not match the schema (missing {missing}, extra {extra}): "
                               f"a bug in discovery.export.shape")
        ordered = {c: row[c] for c in self.columns}
        if None in ordered.values():
            empty = [c for c in self.required if ordered[c] is None]
            if empty:
                raise RuntimeError(f"{self.fmt} row {ordered.get('id')}: column {empty[0]} is None but not "
                                   f"nullable: a bug in discovery.export.shape")
        try:
            line = json.dumps(ordered, ensure_ascii=False, allow_nan=False).encode("utf-8") + b"\n"
        except ValueError:
            bad = [c for c, v in ordered.items() if isinstance(v, float) and not math.isfinite(v)]
            raise RuntimeError(f"{self.fmt} row {ordered.get('id')}: column {bad} is not a finite number: "
                               f"a bug in discovery.export.shape") from None
        self.jsonl.write(line)
        self.jsonl_sha256.update(line)
        self.jsonl_bytes += len(line)
        self.batch.append(ordered)
        self.rows += 1
        if len(self.batch) >= self.batch_rows:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        if self.batch:
            self.parquet.write_batch(pa.RecordBatch.from_pylist(self.batch, schema=self.schema))
            self.batch = []

    def close(self) -> None:
        try:
            self._flush()
        finally:
            self.jsonl.close()
            self.parquet.close()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------- reading


@dataclasses.dataclass
class _Source:
    """What the reader found: the small aggregates, and counts of the streamed steps."""

    campaigns: list[dict[str, Any]]  # campaign rows (id order)
    views: dict[int, CampaignView]
    trajectories: dict[tuple[int, int], TrajectoryStats]
    scales: dict[str, ProblemScale]
    steps: dict[int, int] = dataclasses.field(default_factory=dict)  # campaign id -> steps read


def _fitness(score: float | None, direction: str) -> float | None:
    if score is None:
        return None
    return score if direction == "maximize" else -score


def _aggregates(conn, ids: Sequence[int]) -> _Source:
    campaigns = repo.export_campaigns(conn, ids)
    if len(campaigns) != len(set(ids)):
        gone = sorted(set(ids) - {c["id"] for c in campaigns})
        raise ExportError(f"campaign {gone[0]} is no longer in the database")
    scores = repo.export_campaign_scores(conn, ids)
    views = {}
    for c in campaigns:
        seed, best = scores.get(c["id"], (None, None))
        views[c["id"]] = CampaignView(
            campaign_id=c["id"], problem=c["problem"], strategy=c["strategy"], model=c["model"],
            direction=c["direction"], seed_score=seed, best_score=best,
        )
    trajectories = {
        (cid, t): TrajectoryStats(campaign_id=cid, trajectory=t, best_score=b, best_index=m)
        for cid, t, b, m in repo.export_trajectory_bests(conn, ids)
    }
    scales: dict[str, ProblemScale] = {}
    for problem in sorted({v.problem for v in views.values()}):
        mine = [v for v in views.values() if v.problem == problem]
        lows = [f for f in (_fitness(v.seed_score, v.direction) for v in mine) if f is not None]
        highs = [f for f in (_fitness(v.best_score, v.direction) for v in mine) if f is not None]
        scales[problem] = ProblemScale(problem=problem, f_lo=min(lows) if lows else None,
                                       f_hi=max(highs) if highs else None)
    return _Source(campaigns, views, trajectories, scales)


def _step_views(conn, ids: Sequence[int], source: _Source, chunk: int) -> Iterator[StepView]:
    counts = source.steps
    for row in repo.iter_export_steps(conn, ids, chunk=chunk):
        (step_id, cid, trajectory, index, sample, mode, messages, response, status, committed, bookkeeping,
         program_hash, code, eval_status, score, parent_status, parent_score) = row
        counts[cid] = counts.get(cid, 0) + 1
        yield StepView(
            step_id=step_id, campaign_id=cid, trajectory=trajectory, index=index, sample=sample, mode=mode,
            messages=messages or [], response=response or "", status=status, committed=committed,
            bookkeeping=bookkeeping or {}, program_hash=program_hash, code=code, eval_status=eval_status,
            score=score, parent_status=parent_status, parent_score=parent_score,
        )


# ---------------------------------------------------------------- the export itself


def _versions() -> dict[str, str]:
    import pyarrow as pa

    try:
        platform = importlib.metadata.version("discovery-platform")
    except importlib.metadata.PackageNotFoundError:
        platform = "unknown"
    shaper = hashlib.sha256()
    folder = Path(__file__).resolve().parents[1] / "discovery" / "export"
    for name in ("schema.py", "shape.py", "privacy.py"):
        p = folder / name
        shaper.update(name.encode() + b"\0" + (p.read_bytes() if p.exists() else b"") + b"\0")
    writer = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]
    return {"platform": platform, "pyarrow": pa.__version__, "shaper": shaper.hexdigest()[:16], "writer": writer}


_Sink = Callable[[str, str, Mapping[str, Any]], None]


def _shape_into(engine, params: Mapping[str, Any], sink: _Sink, dedup_path: Path, *,
                chunk: int) -> tuple[_Source, dict[str, Any]]:
    """Reads the campaigns of params over one read snapshot, shapes them, and hands every row
    to sink(format, split, row) as it comes; returns the aggregates and the shaper's stats
    (ShapeStats.as_dict(), JSON-safe). The dedup key table is the file dedup_path, removed after."""
    from discovery.export.privacy import Privacy
    from discovery.export.shape import ShapeStats, shape

    ids = list(params["campaigns"])
    formats = tuple(params["formats"])
    stats = ShapeStats()
    with DiskDedup(dedup_path) as dedup, repo.read_snapshot(engine) as conn:
        source = _aggregates(conn, ids)
        rows = shape(
            _step_views(conn, ids, source, chunk), campaigns=source.views, trajectories=source.trajectories,
            scales=source.scales, filters=_filters_from(params["filters"]), formats=formats, dedup=dedup,
            privacy=Privacy.for_this_machine(extra_paths=_private_paths(engine)), stats=stats,
        )
        for fmt, row in rows:
            split = row.get("split")
            if fmt not in formats or split not in SPLITS:
                raise RuntimeError(f"the shaper yielded a row of format {fmt!r}, split {split!r}, "
                                   f"not asked for: a bug in discovery.export.shape")
            sink(fmt, split, row)
    return source, _jsonable(stats.as_dict())


def _row_counts(formats: Sequence[str], counts: Mapping[tuple[str, str], int]) -> dict[str, dict[str, int]]:
    """format -> split -> rows, from (format, split) -> rows; only the splits with rows."""
    return {fmt: {split: counts[(fmt, split)] for split in SPLITS if counts.get((fmt, split))} for fmt in formats}


def _write(engine, params: dict[str, Any], folder: Path, card_id: int, *, chunk: int) -> dict:
    """Reads, shapes and writes everything into `folder`; returns the export row's fields."""
    filters = _filters_from(params["filters"])
    formats = tuple(params["formats"])
    batch_rows = int(params.get("batch_rows", BATCH_ROWS))
    writers: dict[tuple[str, str], _FileWriter] = {}

    def write(fmt: str, split: str, row: Mapping[str, Any]) -> None:
        writer = writers.get((fmt, split))
        if writer is None:
            writer = writers[(fmt, split)] = _FileWriter(folder, fmt, split, batch_rows)
        writer.add(row)

    try:
        source, shaped = _shape_into(engine, params, write, folder / ".dedup.sqlite", chunk=chunk)
    finally:
        for writer in writers.values():
            writer.close()
    row_counts = _row_counts(formats, {key: w.rows for key, w in writers.items()})
    if not writers:
        dropped = _dropped(shaped)
        why = "; ".join(f"{fmt}: " + ", ".join(f"{n} {reason}" for reason, n in reasons.items())
                        for fmt, reasons in dropped.items()) or "the campaigns have no steps"
        raise ExportError(f"no rows passed the filters ({why}): loosen them (e.g. --all-valid, no --top-pct)")
    card = _card(card_id, params, source, row_counts, shaped, formats, filters)
    (folder / CARD).write_text(card, encoding="utf-8", newline="\n")
    files: dict[str, dict[str, Any]] = {}
    for (fmt, split), w in sorted(writers.items(), key=lambda kv: (FORMATS.index(kv[0][0]), SPLITS.index(kv[0][1]))):
        files[w.jsonl_rel] = {"sha256": w.jsonl_sha256.hexdigest(), "bytes": w.jsonl_bytes, "rows": w.rows}
        files[w.parquet_rel] = {"sha256": _sha256(folder / w.parquet_rel),
                                "bytes": (folder / w.parquet_rel).stat().st_size, "rows": w.rows}
    files[CARD] = {"sha256": _sha256(folder / CARD), "bytes": (folder / CARD).stat().st_size, "rows": None}
    return {
        "row_counts": row_counts,
        "dropped": _dropped(shaped),
        "files": files,
        "stats": {"shape": shaped, "steps": {str(k): v for k, v in sorted(source.steps.items())},
                  "versions": _versions()},
    }


def _private_paths(engine) -> list[str]:
    """The database file's folder (SQLite), beside what Privacy.for_this_machine finds itself."""
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if database and database != ":memory:":
        return [os.path.dirname(os.path.abspath(database))]
    return []


def _dropped(shaped: Mapping[str, Any]) -> dict[str, dict[str, int]]:
    """format -> reason -> rows the shaper did not export (both splits), from ShapeStats.as_dict()."""
    out: dict[str, dict[str, int]] = {}
    for fmt, by_split in sorted((shaped.get("dropped") or {}).items()):
        reasons: dict[str, int] = {}
        for by_reason in by_split.values():
            for reason, n in by_reason.items():
                reasons[reason] = reasons.get(reason, 0) + int(n)
        if reasons:
            out[fmt] = dict(sorted(reasons.items()))
    return out


def _jsonable(value: Any) -> Any:
    """value with tuples as lists, keys as strings, non-finite floats as None (JSON column safe)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        return [_jsonable(v) for v in items]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)


def _filters_from(stored: Mapping[str, Any]) -> ExportFilters:
    fields = {f.name for f in dataclasses.fields(ExportFilters)}
    values = {k: v for k, v in stored.items() if k in fields}
    values["validation_problems"] = tuple(values.get("validation_problems", ()))
    return ExportFilters(**values)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")[:2000]


def _username() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry (containers) and no LOGNAME/USER
        return f"uid {os.getuid()}" if hasattr(os, "getuid") else "unknown"


def _run(engine, params: dict[str, Any], out_dir, *, overwrite: bool, command: str, replay_of: int | None,
         chunk: int) -> ExportReport:
    target = _check_out_dir(out_dir, overwrite)
    staging = _Staging(target)
    try:
        export_id = repo.create_export(engine, username=_username(), command=command, params=params,
                                       out_dir=str(target), replay_of=replay_of)
    except BaseException:
        staging.discard()
        raise
    card_id = replay_of if replay_of is not None else export_id
    try:
        fields = _write(engine, params, staging.path, card_id, chunk=chunk)
        staging.commit()
    except BaseException as exc:
        staging.discard()
        error = "interrupted by the user" if isinstance(exc, KeyboardInterrupt) else _one_line(exc)
        repo.finish_export(engine, export_id, status="failed", error=error)
        if isinstance(exc, ExportError):
            raise ExportError(f"export {export_id} failed: {exc}") from None
        if isinstance(exc, OSError):
            raise ExportError(f"export {export_id} failed writing {exc.filename or target}: "
                              f"{exc.strerror or exc}; nothing was left in {target}") from None
        raise
    repo.finish_export(engine, export_id, status="completed", **fields)
    return _show(engine, export_id)


def _prepare(campaigns, *, formats, filters, problems, strategies, db_url, chunk: int,
             batch_rows: int = BATCH_ROWS) -> tuple[Any, dict[str, Any]]:
    """Step 1 of the module docstring but the output folder: every check of the input, each
    problem one ExportError line; returns the engine and the export's parameters."""
    fmts = _formats(formats)
    filters = _check_filters(filters)
    for name, value in (("chunk", chunk), ("batch_rows", batch_rows)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ExportError(f"{name} must be a whole number of rows, at least 1, not {value!r}")
    problems, strategies = _names(problems), _names(strategies)
    engine = get_engine(db_url)
    rows = _select_campaigns(engine, campaigns, problems, strategies)
    _check_validation_problems(filters, rows)
    params = {
        "campaigns": [r.id for r in rows],
        "formats": fmts,
        "filters": {**dataclasses.asdict(filters), "validation_problems": list(filters.validation_problems)},
        "selection": {"ids": None if campaigns is None else [r.id for r in rows], "problems": problems,
                      "strategies": strategies},
        "batch_rows": int(batch_rows),  # the Parquet row-group size changes the bytes, so a replay re-uses it
    }
    return engine, params


def preview_export(
    campaigns: Sequence[int] | None = None,
    *,
    formats: str | Sequence[str] = FORMATS,
    filters: ExportFilters = ExportFilters(),
    problems: str | Sequence[str] | None = None,
    strategies: str | Sequence[str] | None = None,
    db_url: str | None = None,
    chunk: int = CHUNK,
) -> ExportPreview:
    """What export_dataset with the same arguments would write, counted without writing anything.

    The same checks (one ExportError line each; there is no output folder to check) and the
    same read and shaping as export_dataset, over one read snapshot; no export row is stored
    and no file is left (the dedup key table is in a temporary folder, removed after). When no
    row passes the filters, the counts are zero and `dropped` says why (export_dataset raises).
    """
    engine, params = _prepare(campaigns, formats=formats, filters=filters, problems=problems,
                              strategies=strategies, db_url=db_url, chunk=chunk)
    counts: dict[tuple[str, str], int] = {}

    def count(fmt: str, split: str, row: Mapping[str, Any]) -> None:
        counts[(fmt, split)] = counts.get((fmt, split), 0) + 1

    with tempfile.TemporaryDirectory(prefix="discovery-export-preview-") as scratch:
        source, shaped = _shape_into(engine, params, count, Path(scratch) / "dedup.sqlite", chunk=chunk)
    return ExportPreview(
        campaigns=list(params["campaigns"]), formats=list(params["formats"]), filters=dict(params["filters"]),
        row_counts=_row_counts(params["formats"], counts), dropped=_dropped(shaped),
        steps=sum(source.steps.values()), command=regenerate_command(params),
    )


def export_dataset(
    campaigns: Sequence[int] | None = None,
    *,
    out_dir: str | os.PathLike,
    formats: str | Sequence[str] = FORMATS,
    filters: ExportFilters = ExportFilters(),
    problems: str | Sequence[str] | None = None,
    strategies: str | Sequence[str] | None = None,
    db_url: str | None = None,
    overwrite: bool = False,
    command: str | None = None,
    chunk: int = CHUNK,
    batch_rows: int = BATCH_ROWS,
) -> ExportReport:
    """Exports campaigns as datasets under out_dir; returns the stored export.

    `campaigns`: ids; or None to select every completed/stopped/interrupted campaign whose
    problem is in `problems` and strategy in `strategies` (None = any). `formats`: some of
    "sft", "preference", "rl" (a list or "sft,rl"). `filters`: what to keep, and which problems
    go to the validation split. `overwrite`: replace an earlier export in out_dir.
    `command`: how the export was asked for, stored on the export row (default: the equivalent
    `discovery export` command). Raises ExportError (one line) before writing anything when the
    input is wrong; see the module docstring for what happens after.
    """
    engine, params = _prepare(campaigns, formats=formats, filters=filters, problems=problems,
                              strategies=strategies, db_url=db_url, chunk=chunk, batch_rows=batch_rows)
    if command is None:
        command = regenerate_command(params, out_dir=str(out_dir))
    return _run(engine, params, out_dir, overwrite=overwrite, command=command, replay_of=None, chunk=chunk)


def reproduce_export(
    export_id: int, *, out_dir: str | os.PathLike | None = None, db_url: str | None = None, overwrite: bool = False,
    command: str | None = None,
) -> ExportReport:
    """Runs a stored export again with its stored parameters (the same campaign ids, formats and
    filters) into out_dir (default: the folder it wrote, which then needs overwrite=True).

    The new export is stored with replay_of = the original (the first export of a replay chain);
    its `identical` tells whether every file has the same sha256 as the original's, which holds
    as long as the campaigns' rows and the platform's version have not changed.
    """
    engine = get_engine(db_url)
    original = repo.get_export(engine, export_id)
    root = original.replay_of if original.replay_of is not None else original.id
    params = dict(original.params or {})
    if not params.get("campaigns"):
        raise ExportError(f"export {export_id} stores no campaigns to export again")
    _formats(params.get("formats", []))
    _check_filters(_filters_from(params.get("filters", {})))
    rows = repo.find_campaigns(engine, ids=params["campaigns"])
    found = {r.id for r in rows}
    gone = [i for i in params["campaigns"] if i not in found]
    if gone:
        raise ExportError(f"export {export_id} cannot be replayed: campaign {gone[0]} is no longer in the database")
    target = original.out_dir if out_dir is None else out_dir
    if command is None:
        command = f"discovery export --replay {export_id} --out {shlex.quote(str(target))}"
    return _run(engine, params, target, overwrite=overwrite, command=command, replay_of=root, chunk=CHUNK)


# ---------------------------------------------------------------- the command that regenerates it


def _exact(value: float) -> str:
    """The shortest text that reads back as exactly value (50, 0.1, 0.123456789)."""
    short = f"{value:g}"
    return short if float(short) == value else repr(float(value))


def regenerate_command(params: Mapping[str, Any], out_dir: str = "<folder>") -> str:
    """The `discovery export` command line for stored parameters (campaign ids, not selectors)."""
    f = _filters_from(params.get("filters", {}))
    parts = ["discovery", "export", *map(str, params.get("campaigns", []))]
    if list(params.get("formats", FORMATS)) != list(FORMATS):
        parts += ["--format", ",".join(params["formats"])]
    if not f.improved_only:
        parts.append("--all-valid")
    if f.top_pct is not None:
        parts += ["--top-pct", _exact(f.top_pct)]
    if f.prefix_to_best:
        parts.append("--prefix-to-best")
    if f.min_gap:
        parts += ["--min-gap", _exact(f.min_gap)]
    if f.keep_guidance:
        parts.append("--keep-guidance")
    if f.validation_problems:
        parts += ["--validation-problems", ",".join(f.validation_problems)]
    line = shlex.join(parts)
    return f"{line} --out {out_dir if out_dir == '<folder>' else shlex.quote(out_dir)}"


# ---------------------------------------------------------------- the dataset card


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.10g}"
    return str(value)


def _cell(value: Any) -> str:
    return _fmt(value).replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return out


FILTER_MEANINGS = {
    "improved_only": "SFT keeps only programs that are ok and strictly better than their parent (else every ok program)",
    "top_pct": "keep only the top R% of each campaign's trajectories by their best score (- = all)",
    "prefix_to_best": "keep a trajectory's steps only up to the move where it reached its best",
    "min_gap": "a preference pair needs normalised rewards at least this far apart",
    "keep_guidance": "R^3L retries keep the reflection guidance in their prompt (else the distilled prompt)",
    "validation_problems": "rows of these problems form the validation split",
}


def _problem_info(name: str) -> tuple[str, str, str]:
    """(title, best known, source) of a problem as this installation knows it."""
    from problems import BUILTINS, ProblemError, get_problem

    try:
        p = get_problem(name)
    except ProblemError:
        return "(not installed here)", "-", "-"
    best = "-" if p.best_known is None else _fmt(p.best_known.value)
    cite = "-" if p.best_known is None else p.best_known.citation
    origin = "built in" if name in BUILTINS else "plug-in or file (its own licence applies)"
    return f"{p.title} ({origin})", best, cite


def _card(card_id: int, params: Mapping[str, Any], source: _Source, row_counts: dict[str, dict[str, int]],
          shaped: Mapping[str, Any], formats: Sequence[str], filters: ExportFilters) -> str:
    """The dataset card: deterministic (no time, user or folder in it)."""
    camps = source.campaigns
    problems = sorted({c["problem"] for c in camps})
    strategies = sorted({c["strategy"] for c in camps})
    models = sorted({c["model"] for c in camps})
    written = [f for f in formats if row_counts.get(f)]
    y = ["---", f"pretty_name: {json.dumps('discovery export: ' + ', '.join(problems))}", "license: other",
         "tags:", "- program-synthesis", "- code", "- discovery-platform", "configs:"]
    for i, fmt in enumerate(written):
        y.append(f"- config_name: {fmt}")
        if i == 0:
            y.append("  default: true")
        y.append("  data_files:")
        for split in SPLITS:
            if row_counts[fmt].get(split):
                y += [f"  - split: {split}", f"    path: {fmt}/{split}.parquet"]
    y.append("---")
    total_steps = sum(source.steps.values())
    lines = [
        *y, "",
        f"# discovery export {card_id}: {', '.join(problems)}", "",
        f"This dataset was {CARD_MARK} (export {card_id} in the platform's database) from "
        f"{len(camps)} campaign{'s' if len(camps) != 1 else ''} ({total_steps} stored proposer calls) of "
        f"{len(problems)} problem{'s' if len(problems) != 1 else ''}. Every row names where it came from: "
        f"`campaign_id`, and `step_id` (SFT, RL) or `chosen_step_id` / `rejected_step_id` (preference) are the "
        f"ids of the stored campaign and proposer call (`discovery show CAMPAIGN_ID`); `id` is stable across "
        f"re-exports.", "",
        "Only campaigns whose status is completed, stopped or interrupted are exported (their rows no longer "
        "change); a stopped or interrupted campaign contributes the moves it finished.", "",
        "## Files", "",
        *_table(["format", "split", "rows", "JSONL", "Parquet"],
                [(fmt, split, row_counts[fmt][split], f"`{fmt}/{split}.jsonl`", f"`{fmt}/{split}.parquet`")
                 for fmt in formats for split in SPLITS if row_counts.get(fmt, {}).get(split)]),
        "",
    ]
    empty = [f"{fmt}/{split}" for fmt in formats for split in SPLITS if not row_counts.get(fmt, {}).get(split)]
    if empty:
        lines += [f"No rows, so no files: {', '.join(empty)}.", ""]
    lines += [
        "```python",
        "from datasets import load_dataset",
        *[f'{fmt} = load_dataset("path/to/this/folder", "{fmt}")  # splits: '
          f'{", ".join(s for s in SPLITS if row_counts[fmt].get(s))}' for fmt in written],
        "# or one file: load_dataset(\"parquet\", data_files=\"FORMAT/SPLIT.parquet\"), "
        "pandas.read_parquet(...), pandas.read_json(..., lines=True)",
        "```", "",
        "## Columns", "",
    ]
    for fmt in formats:
        lines.append(f"- **{fmt}**: " + ", ".join(f"`{c}` ({t})" for c, t in COLUMNS[fmt].items()))
    lines += ["", "Types: `messages` is a list of `{role, content}`; a type ending in `?` may be null.", ""]
    lines += ["## Campaigns", ""]
    lines += _table(
        ["id", "problem", "strategy", "model", "seed", "status", "budget", "steps", "direction", "seed score",
         "best score"],
        [(c["id"], c["problem"], c["strategy"], c["model"], c["seed"], c["status"], c["budget"],
          source.steps.get(c["id"], 0), c["direction"], source.views[c["id"]].seed_score,
          source.views[c["id"]].best_score) for c in camps])
    lines += ["", "## Problems", ""]
    prob_rows = []
    for p in problems:
        title, best, cite = _problem_info(p)
        direction = next(c["direction"] for c in camps if c["problem"] == p)
        split = "validation" if p in filters.validation_problems else "train"
        prob_rows.append((p, title, direction, split, best, cite))
    lines += _table(["problem", "title", "direction", "split", "best known", "source of the best known"], prob_rows)
    count = lambda key, value: sum(1 for c in camps if c[key] == value)  # noqa: E731
    lines += ["", "## Strategies and models", "",
              "- strategies: " + ", ".join(f"{s} ({count('strategy', s)} campaigns)" for s in strategies),
              "- models: " + ", ".join(f"{m} ({count('model', m)} campaigns)" for m in models)
              + " (`offline` = the platform's own no-model proposer)", ""]
    lines += ["## Rows per format and split", ""]
    lines += _table(["format", *SPLITS, "total"],
                    [(fmt, *[row_counts.get(fmt, {}).get(s, 0) for s in SPLITS],
                      sum(row_counts.get(fmt, {}).values())) for fmt in formats])
    dropped = _dropped(shaped)
    reasons = sorted({r for by_reason in dropped.values() for r in by_reason})
    lines += ["", "## Rows dropped, by reason", "",
              "Candidate rows that were not exported, counted under the first reason that applied "
              "(see discovery/export/shape.py for the reasons and their order).", ""]
    lines += (_table(["reason", *formats], [(r, *[dropped.get(f, {}).get(r, 0) for f in formats]) for r in reasons])
              if reasons else ["None."])
    lines += ["", "## Filters", ""]
    fdict = dataclasses.asdict(filters)
    lines += _table(["filter", "value", "meaning"],
                    [(k, (", ".join(v) or "-") if isinstance(v, tuple) else v, FILTER_MEANINGS.get(k, ""))
                     for k, v in fdict.items()])
    lines += ["", "## Score ranges", "",
              "Per problem, over the exported campaigns: the seed programs' scores, the best scores, and the "
              "fitness range rewards are normalised by (fitness = score when maximising, -score when "
              "minimising; reward = clip((f - f_lo) / (f_hi - f_lo), 0, 1)).", ""]
    range_rows = []
    for p in problems:
        mine = [source.views[c["id"]] for c in camps if c["problem"] == p]
        seeds = [v.seed_score for v in mine if v.seed_score is not None]
        bests = [v.best_score for v in mine if v.best_score is not None]
        scale = source.scales[p]
        range_rows.append((p, _range(seeds), _range(bests), scale.f_lo, scale.f_hi))
    lines += _table(["problem", "seed scores", "best scores", "f_lo", "f_hi"], range_rows)
    kept = shaped.get("problems") or {}
    if kept:
        lines += ["", "Scores of the exported rows (SFT and RL rows' scores, both scores of preference pairs):", ""]
        lines += _table(["problem", "min score", "max score", *[f"{f} rows" for f in formats]],
                        [(p, e.get("min_score"), e.get("max_score"),
                          *[(e.get("rows") or {}).get(f, 0) for f in formats]) for p, e in sorted(kept.items())])
    lines += [
        "", "## Licence", "",
        "The problems' task texts and seed programs ship with the discovery platform (Apache-2.0) unless the "
        "Problems table says a problem is a plug-in or file, whose own licence applies. The best-known values "
        "come from the sources cited in the Problems table. The prompts quote those task texts; the responses "
        "and programs were written by the models listed above and are subject to their providers' terms of "
        "use: check them before training on or redistributing this dataset. Rows whose text held a secret "
        "(a credential, or a secret environment value of the exporting machine) or one of that machine's "
        "absolute paths were dropped (see Rows dropped).", "",
        "## Regenerate", "",
        "From the same database (`--db URL` or `DISCOVERY_DB_URL`), into any folder:", "",
        "```bash",
        f"discovery export --replay {card_id} --out <folder>",
        "# or, equivalently:",
        regenerate_command(params),
        "```", "",
        "The replay re-uses the stored campaign ids, formats and filters and gives byte-identical files "
        "while the campaigns' rows and the platform's version are unchanged, on a machine whose paths and "
        "secrets are the same (rows holding them are dropped); `discovery exports ID` shows the sha256 of "
        "every file, and a replay says whether it matched.",
    ]
    selection = params.get("selection") or {}
    if selection.get("ids") is None:
        sel = [f"--problem {p}" for p in selection.get("problems") or []]
        sel += [f"--strategy {s}" for s in selection.get("strategies") or []]
        lines += ["", f"The campaigns were selected with {' '.join(sel) if sel else '--all'}; the commands above "
                  f"name the campaign ids that selection gave, so campaigns added later are not included."]
    return "\n".join(lines) + "\n"


def _range(values: Sequence[float]) -> str:
    if not values:
        return "-"
    lo, hi = min(values), max(values)
    return _fmt(lo) if lo == hi else f"{_fmt(lo)} .. {_fmt(hi)}"
