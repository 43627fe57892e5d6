"""`discovery export` end to end: real campaigns (Prefect, sandbox, SQLite), real files, and the
real readers a trainer uses (the Hugging Face `datasets` library, pandas, pyarrow)."""

from __future__ import annotations

import getpass
import hashlib
import importlib.util
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import tracemalloc
from pathlib import Path

import pytest

# The datasets library must never reach the network here, nor write to the user's cache.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from sqlalchemy import event, func, select  # noqa: E402
from sqlalchemy.engine import Engine  # noqa: E402

from db import repository as repo  # noqa: E402
from db.engine import dispose_engines, get_engine, session_scope  # noqa: E402
from db.models import Export, Step  # noqa: E402
from discovery.export.schema import COLUMNS, FORMATS, SPLITS, ExportFilters  # noqa: E402
from flows.export import (  # noqa: E402
    ExportError,
    ExportPreview,
    UnknownExport,
    export_dataset,
    list_exports,
    preview_export,
    regenerate_command,
    reproduce_export,
    show_export,
)

REPO = Path(__file__).resolve().parents[2]


def _bench():
    """bench/export_scale.py, whose build_db writes a synthetic database through the real schema."""
    spec = importlib.util.spec_from_file_location("bench_export_scale", REPO / "bench" / "export_scale.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _synthetic(path: Path, steps: int, **kw) -> str:
    url = f"sqlite:///{path}"
    _bench().build_db(url, steps, **kw)
    return url


def _jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def _tree(folder: Path) -> dict[str, bytes]:
    """Every file under folder (hidden ones too) -> its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _leftovers(parent: Path) -> list[str]:
    """Staging or replaced folders an export may leave beside its output (it must leave none)."""
    return sorted(p.name for p in parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name)


def _exports(url: str) -> int:
    with session_scope(get_engine(url)) as s:
        return s.scalar(select(func.count()).select_from(Export))


def _check_types(fmt: str, row: dict) -> None:
    assert list(row) == list(COLUMNS[fmt]), f"{fmt} row columns {list(row)}"
    for col, kind in COLUMNS[fmt].items():
        value = row[col]
        if kind.endswith("?") and value is None:
            continue
        base = kind.rstrip("?")
        if base == "string":
            assert isinstance(value, str), (fmt, col, value)
        elif base == "int64":
            assert isinstance(value, int) and not isinstance(value, bool), (fmt, col, value)
        elif base == "float64":
            assert isinstance(value, float), (fmt, col, value)
        elif base == "bool":
            assert isinstance(value, bool), (fmt, col, value)
        else:
            assert base == "messages" and isinstance(value, list) and value, (fmt, col, value)
            for m in value:
                assert set(m) == {"role", "content"} and all(isinstance(v, str) for v in m.values()), m


def _load_dataset(*args, tmp: Path, **kw):
    import datasets

    datasets.disable_progress_bars()
    return datasets.load_dataset(*args, cache_dir=str(tmp / "hf-cache"), **kw)


# ---------------------------------------------------------------- real campaigns


@pytest.fixture(scope="module")
def campaigns(prefect_harness, tmp_path_factory):
    """Small real campaigns: SimpleTES, ExIt and R^3L on Erdős, and SimpleTES on circle packing."""
    from flows.api import run_campaign

    url = f"sqlite:///{tmp_path_factory.mktemp('export-campaigns') / 'campaigns.db'}"
    ids = {}
    for key, problem, settings in (
        ("simpletes", "erdos_min_overlap", dict(strategy="simpletes", chains=2, k=4, budget=16)),
        ("exit", "erdos_min_overlap", dict(strategy="exit", budget=32, exit={"group": 4, "min_buffer": 4, "parallel": 2})),
        ("r3l", "erdos_min_overlap", dict(strategy="r3l", budget=24, r3l={"episodes": 2, "turns": 3})),
        ("circle", "circle_packing", dict(strategy="simpletes", chains=2, k=2, budget=8)),
    ):
        summary = run_campaign(problem, db_url=url, seed=1, **settings)
        assert summary.campaign.status == "completed", summary.campaign.error
        ids[key] = summary.campaign.id
    yield url, ids
    dispose_engines()


@pytest.fixture(scope="module")
def exported(campaigns, tmp_path_factory):
    url, ids = campaigns
    out = tmp_path_factory.mktemp("export-out") / "erdos-v1"
    report = export_dataset(list(ids.values()), out_dir=out, db_url=url,
                            filters=ExportFilters(validation_problems=("circle_packing",)))
    return url, ids, out, report


def test_every_format_is_written_as_jsonl_and_parquet_that_datasets_and_pandas_load(exported, tmp_path):
    import pandas as pd
    import pyarrow.parquet as pq

    url, ids, out, report = exported
    assert report.status == "completed" and report.error == ""
    assert report.formats == list(FORMATS) and report.campaigns == sorted(ids.values())
    written = {(fmt, split) for fmt in FORMATS for split in SPLITS if report.row_counts.get(fmt, {}).get(split)}
    assert {(f, s) for f, s in written if s == "train"} == {(f, "train") for f in FORMATS}
    assert ("rl", "validation") in written, "the held-out problem's steps are RL rows at least"
    expected = {"README.md"} | {f"{f}/{s}.{ext}" for f, s in written for ext in ("jsonl", "parquet")}
    assert set(_tree(out)) == expected, "only non-empty format/split files, the card, nothing hidden"
    assert set(report.files) == expected
    assert _leftovers(out.parent) == []

    strategies, providers = set(), set()
    for fmt, split in sorted(written):
        rows = _jsonl(out / fmt / f"{split}.jsonl")
        assert len(rows) == report.row_counts[fmt][split] == report.files[f"{fmt}/{split}.jsonl"]["rows"]
        for row in rows:
            _check_types(fmt, row)
            assert row["split"] == split
            assert row["problem"] == ("circle_packing" if split == "validation" else "erdos_min_overlap")
        assert len({r["id"] for r in rows}) == len(rows), "ids are unique"
        strategies |= {r["strategy"] for r in rows}
        providers |= {r["campaign_id"] for r in rows}
        # the same rows in Parquet, read three ways
        parquet = out / fmt / f"{split}.parquet"
        assert pq.read_table(parquet).to_pylist() == rows
        ds = _load_dataset("parquet", data_files=str(parquet), split="train", tmp=tmp_path)
        assert ds.column_names == list(COLUMNS[fmt]) and ds.num_rows == len(rows)
        assert ds.to_list() == rows
        df = pd.read_parquet(parquet)
        assert list(df.columns) == list(COLUMNS[fmt]) and len(df) == len(rows)
        assert df["id"].tolist() == [r["id"] for r in rows]
        assert pd.read_json(out / fmt / f"{split}.jsonl", lines=True)["id"].tolist() == df["id"].tolist()
    assert strategies == {"simpletes", "exit", "r3l"} and providers == set(ids.values())

    # the card's configs: load_dataset(folder, format) gives every split of that format
    for fmt in FORMATS:
        dd = _load_dataset(str(out), fmt, tmp=tmp_path)
        assert {s: dd[s].num_rows for s in dd} == {s: n for s, n in report.row_counts[fmt].items() if n}

    # every row names the stored step it came from
    engine = get_engine(url)
    with session_scope(engine) as s:
        step_campaign = dict(s.execute(select(Step.id, Step.campaign_id)).all())
    for fmt, split in written:
        for row in _jsonl(out / fmt / f"{split}.jsonl"):
            for col in ("step_id", "chosen_step_id", "rejected_step_id"):
                if col in row:
                    assert step_campaign[row[col]] == row["campaign_id"]


def test_the_card_says_where_every_row_came_from(exported):
    from problems import get_problem

    url, ids, out, report = exported
    card = (out / "README.md").read_text(encoding="utf-8")
    front, body = card.split("---\n", 2)[1:]
    import yaml

    meta = yaml.safe_load(front)
    configs = {c["config_name"]: c["data_files"] for c in meta["configs"]}
    assert set(configs) == set(FORMATS)
    assert configs["rl"] == [{"split": "train", "path": "rl/train.parquet"},
                             {"split": "validation", "path": "rl/validation.parquet"}]
    for cid in ids.values():
        assert f"\n| {cid} | " in body, "every campaign has a row"
    for text in ("simpletes", "exit", "r3l", "offline", "circle_packing", "erdos_min_overlap", "completed",
                 get_problem("erdos_min_overlap").best_known.citation, "## Licence", "providers' terms",
                 "| validation_problems | circle_packing |", f"discovery export --replay {report.id} --out <folder>",
                 "discovery export " + " ".join(map(str, sorted(ids.values()))) + " --validation-problems circle_packing",
                 "## Rows dropped, by reason", "not_improved", "## Score ranges"):
        assert text in body, text
    for fmt in FORMATS:
        counts = report.row_counts[fmt]
        assert f"| {fmt} | {counts.get('train', 0)} | {counts.get('validation', 0)} | {sum(counts.values())} |" in body
    # nothing of the folder or the moment: the card is the same wherever and whenever it is made
    assert str(out.parent) not in card and report.created_at.strftime("%Y-%m-%d") not in card


def test_the_export_is_recorded_and_a_replay_gives_the_same_bytes(exported, tmp_path):
    url, ids, out, report = exported
    engine = get_engine(url)
    row = repo.get_export(engine, report.id)
    assert row.status == "completed" and row.username == getpass.getuser() and row.out_dir == str(out)
    assert row.created_at is not None and row.finished_at is not None and row.finished_at >= row.created_at
    assert row.params["campaigns"] == sorted(ids.values()) and row.params["formats"] == list(FORMATS)
    assert row.params["filters"]["validation_problems"] == ["circle_packing"]
    assert row.params["filters"]["improved_only"] is True and row.params["filters"]["top_pct"] is None
    assert row.row_counts == report.row_counts and row.command.startswith("discovery export ")
    assert sum(n for by_reason in row.dropped.values() for n in by_reason.values()) > 0
    tree = _tree(out)
    for path, entry in row.files.items():
        assert entry["sha256"] == hashlib.sha256(tree[path]).hexdigest() and entry["bytes"] == len(tree[path])
    assert show_export(report.id, db_url=url) == report

    again = reproduce_export(report.id, out_dir=tmp_path / "again", db_url=url)
    assert again.id != report.id and again.replay_of == report.id and again.status == "completed"
    assert again.identical is True and again.differing == ()
    assert _tree(tmp_path / "again") == tree, "byte-identical files, card included"
    assert again.command.startswith(f"discovery export --replay {report.id} --out ")

    # by default a replay writes where the original did, which takes overwrite
    with pytest.raises(ExportError, match=r"is not empty: choose another folder, or pass overwrite=True"):
        reproduce_export(report.id, db_url=url)
    third = reproduce_export(report.id, db_url=url, overwrite=True)
    assert third.out_dir == str(out) and third.identical and _tree(out) == tree
    assert _leftovers(out.parent) == [] and _leftovers(tmp_path) == []
    # a replay of a replay is a replay of the first export
    fourth = reproduce_export(again.id, out_dir=tmp_path / "fourth", db_url=url)
    assert fourth.replay_of == report.id and fourth.identical and _tree(tmp_path / "fourth") == tree
    listed = list_exports(db_url=url)
    assert [r.id for r in listed] == [report.id, again.id, third.id, fourth.id]
    assert [r.identical for r in listed] == [None, True, True, True]
    with pytest.raises(UnknownExport, match=r"no export with id 999 \(recent ids: "):
        reproduce_export(999, out_dir=tmp_path / "x", db_url=url)


def test_filters_change_what_is_kept_and_are_stored(campaigns, tmp_path):
    url, ids = campaigns
    wide = export_dataset([ids["simpletes"], ids["r3l"]], out_dir=tmp_path / "wide", db_url=url,
                          formats="sft,rl", filters=ExportFilters(improved_only=False))
    narrow = export_dataset([ids["simpletes"], ids["r3l"]], out_dir=tmp_path / "narrow", db_url=url,
                            formats=["rl", "sft"], filters=ExportFilters(top_pct=50, prefix_to_best=True))
    assert wide.formats == narrow.formats == ["sft", "rl"]
    assert not (tmp_path / "wide" / "preference").exists()
    assert sum(wide.row_counts["sft"].values()) > sum(narrow.row_counts["sft"].values())
    assert sum(wide.row_counts["rl"].values()) > sum(narrow.row_counts["rl"].values())
    assert "top_pct" in narrow.dropped["rl"] and "prefix_to_best" in narrow.dropped["rl"]
    stored = repo.get_export(get_engine(url), narrow.id).params["filters"]
    assert stored["top_pct"] == 50 and stored["prefix_to_best"] is True
    card = (tmp_path / "narrow" / "README.md").read_text()
    assert f"discovery export {ids['simpletes']} {ids['r3l']} --format sft,rl --top-pct 50 --prefix-to-best" in card


# ---------------------------------------------------------------- bad input: one line, nothing written


@pytest.fixture
def small_db(tmp_path):
    url = _synthetic(tmp_path / "small.db", 240, campaigns=3, problem=("erdos_min_overlap", "synthetic_b"))
    yield url
    dispose_engines()


@pytest.fixture
def readonly_dir(tmp_path):
    """A folder no process may write in, root included (chattr +i when running as root)."""
    folder = tmp_path / "readonly"
    folder.mkdir()
    folder.chmod(0o555)
    immutable = False
    if os.geteuid() == 0:
        immutable = shutil.which("chattr") is not None and subprocess.run(
            ["chattr", "+i", str(folder)], capture_output=True).returncode == 0
        if not immutable:
            folder.chmod(0o755)
            pytest.skip("running as root without chattr +i: no folder is read-only")
    yield folder
    if immutable:
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    folder.chmod(0o755)


BAD_INPUT = [
    ("unknown_campaign", r"^no campaign with id 99 \(recent ids: 3, 2, 1\)$"),
    ("top_pct_zero", r"^top_pct must be a percentage in \(0, 100\]"),
    ("top_pct_high", r"^top_pct must be a percentage in \(0, 100\]"),
    ("min_gap", r"^min_gap must be a number >= 0"),
    ("format", r"^unknown format 'dpo': valid formats are sft, preference, rl$"),
    ("validation", r"^validation problem 'circle_packing' is not among the exported campaigns' problems: "
                   r"choose from erdos_min_overlap, synthetic_b$"),
    ("running", r"^campaign 2 is running: only completed, stopped, interrupted campaigns are exported"),
    ("not_empty", r"^output folder .*/full is not empty: choose another folder, or pass overwrite=True"),
    ("not_an_export", r"^output folder .*/full is not empty and holds no earlier export"),
    ("under_a_file", r"^cannot create output folder .*/file.txt/out: .*/file.txt is a file, not a folder$"),
    ("is_a_file", r"^output path .*/file.txt is a file, not a folder"),
    ("no_campaigns", r"^no campaigns given"),
    ("ids_and_selectors", r"^pass campaign ids or problem/strategy selectors, not both$"),
    ("nothing_selected", r"^no completed/stopped/interrupted campaign of problem nope"),
    ("chunk", r"^chunk must be a whole number of rows, at least 1, not 0$"),
]
OUT_DIR_CASES = {"not_empty", "not_an_export", "under_a_file", "is_a_file"}


def _bad_input(case: str, url: str, tmp_path: Path) -> tuple[list | None, dict]:
    """(campaign ids, keyword arguments) of export_dataset for a BAD_INPUT case."""
    (tmp_path / "file.txt").write_text("not a folder")
    full = tmp_path / "full"
    full.mkdir()
    (full / "notes.txt").write_text("mine")
    kwargs: dict = dict(db_url=url, out_dir=tmp_path / "out")
    ids: list | None = [1, 2, 3]
    if case == "unknown_campaign":
        ids = [1, 99]
    elif case == "top_pct_zero":
        kwargs["filters"] = ExportFilters(top_pct=0)
    elif case == "top_pct_high":
        kwargs["filters"] = ExportFilters(top_pct=150)
    elif case == "min_gap":
        kwargs["filters"] = ExportFilters(min_gap=-0.1)
    elif case == "format":
        kwargs["formats"] = "sft,dpo"
    elif case == "validation":
        kwargs["filters"] = ExportFilters(validation_problems=("circle_packing",))
    elif case == "running":
        repo.set_campaign_status(get_engine(url), 2, "running")
    elif case == "not_empty":
        kwargs["out_dir"] = full
    elif case == "not_an_export":
        kwargs.update(out_dir=full, overwrite=True)
    elif case == "under_a_file":
        kwargs["out_dir"] = tmp_path / "file.txt" / "out"
    elif case == "is_a_file":
        kwargs["out_dir"] = tmp_path / "file.txt"
    elif case == "no_campaigns":
        ids = []
    elif case == "ids_and_selectors":
        kwargs["problems"] = ["erdos_min_overlap"]
    elif case == "nothing_selected":
        ids = None
        kwargs["problems"] = "nope"
    elif case == "chunk":
        kwargs["chunk"] = 0
    return ids, kwargs


@pytest.mark.parametrize("case, pattern", BAD_INPUT)
def test_bad_input_is_one_line_and_writes_nothing(small_db, tmp_path, case, pattern):
    url = small_db
    ids, kwargs = _bad_input(case, url, tmp_path)
    full = tmp_path / "full"
    before = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("small.db"))
    with pytest.raises(ExportError, match=pattern) as info:
        export_dataset(ids, **kwargs)
    assert "\n" not in str(info.value)
    after = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("small.db"))
    assert after == before, "no file or folder was created"
    assert (full / "notes.txt").read_text() == "mine" and len(list(full.iterdir())) == 1
    assert _exports(url) == 0, "nothing is recorded for input refused before the export started"


def test_an_unwritable_output_folder_is_one_line_and_writes_nothing(small_db, readonly_dir, tmp_path):
    for out in (readonly_dir / "out", readonly_dir / "deeper" / "out"):
        with pytest.raises(ExportError, match=rf"^cannot write the output folder {out}: cannot create files in "
                                              rf"{readonly_dir} \((Permission denied|Operation not permitted|"
                                              rf"Read-only file system)\); choose a writable folder$"):
            export_dataset([1, 2], out_dir=out, db_url=small_db)
    assert list(readonly_dir.iterdir()) == [] and _exports(small_db) == 0
    # a missing parent that can be made is made, and removed again when the export fails later
    with pytest.raises(ExportError, match="no rows passed the filters"):
        export_dataset([1], out_dir=tmp_path / "new" / "deeper" / "out", db_url=small_db,
                       filters=ExportFilters(min_gap=1.0), formats="preference")
    assert not (tmp_path / "new").exists()


def test_a_failure_while_writing_is_recorded_and_leaves_no_partial_files(small_db, tmp_path, monkeypatch):
    import errno

    import flows.export as export

    real_add, written = export._FileWriter.add, []

    def add(self, row):
        if len(written) == 150:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.parquet_rel))
        written.append(row["id"])
        real_add(self, row)

    monkeypatch.setattr(export._FileWriter, "add", add)
    out = tmp_path / "out"
    with pytest.raises(ExportError, match=r"^export 1 failed writing .*: No space left on device; nothing was left in "):
        export_dataset([1, 2, 3], out_dir=out, db_url=small_db, batch_rows=16)
    assert not out.exists() and _leftovers(tmp_path) == []
    row = repo.get_export(get_engine(small_db), 1)
    assert row.status == "failed" and "No space left on device" in row.error and row.finished_at is not None
    assert row.files == {} and row.row_counts == {}
    assert show_export(1, db_url=small_db).status == "failed"

    # and a shaper bug (a row off the schema) is a failed export too, never a partial file
    monkeypatch.setattr(export._FileWriter, "add", real_add)
    import discovery.export.shape as shape_module

    real_shape = shape_module.shape

    def broken(*a, **kw):
        for i, (fmt, row) in enumerate(real_shape(*a, **kw)):
            yield fmt, ({**row, "extra": 1} if i == 40 else row)

    monkeypatch.setattr(shape_module, "shape", broken)
    with pytest.raises(RuntimeError, match=r"does not match the schema \(missing \[\], extra \['extra'\]\)"):
        export_dataset([1], out_dir=out, db_url=small_db)
    assert not out.exists() and _leftovers(tmp_path) == []
    assert repo.get_export(get_engine(small_db), 2).status == "failed"


def test_selectors_running_campaigns_and_the_card_of_a_selection(small_db, tmp_path):
    engine = get_engine(small_db)
    repo.set_campaign_status(engine, 3, "running")
    report = export_dataset(problems=["erdos_min_overlap"], out_dir=tmp_path / "a", db_url=small_db)
    assert report.campaigns == [1], "campaign 3 (erdos, running) is skipped by a selector"
    assert report.params["selection"] == {"ids": None, "problems": ["erdos_min_overlap"], "strategies": None}
    card = (tmp_path / "a" / "README.md").read_text()
    assert "selected with --problem erdos_min_overlap" in card and "discovery export 1 --out <folder>" in card
    everything = export_dataset(out_dir=tmp_path / "b", db_url=small_db,
                                filters=ExportFilters(validation_problems=("synthetic_b",)))
    assert everything.campaigns == [1, 2]
    assert set(everything.row_counts["rl"]) == {"train", "validation"}
    assert all(r["problem"] == "synthetic_b" for r in _jsonl(tmp_path / "b" / "rl" / "validation.jsonl"))
    assert "(not installed here)" in (tmp_path / "b" / "README.md").read_text()


def test_an_empty_folder_is_filled_and_a_killed_exports_staging_is_cleaned_up(small_db, tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".out.tmp-{int(dead.stdout)}-0a1b2c3d"  # what a killed export leaves
    stale.mkdir()
    (stale / "rl").mkdir()
    (stale / "rl" / "train.jsonl").write_text("{}\n")
    out = tmp_path / "out"
    out.mkdir()
    report = export_dataset([1], out_dir=out, db_url=small_db, formats="rl")
    assert report.status == "completed" and sorted(_tree(out)) == ["README.md", "rl/train.jsonl", "rl/train.parquet"]
    assert not stale.exists() and _leftovers(tmp_path) == []


# ---------------------------------------------------------------- the preview (dry run): counts, nothing written


def _database(url: str) -> tuple[dict[str, int], list[str]]:
    """Rows per table, and the whole content as SQL (sqlite3's dump), of a SQLite database."""
    path = url.removeprefix("sqlite:///")
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [t for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        counts = {t: con.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in tables}
        return counts, list(con.iterdump())
    finally:
        con.close()


def _assert_same_as_export(preview: ExportPreview, report) -> None:
    assert isinstance(preview, ExportPreview) and report.status == "completed"
    assert preview.campaigns == report.campaigns and preview.formats == report.formats
    assert preview.filters == report.filters
    assert preview.row_counts == report.row_counts, "the rows per format and split the export wrote"
    assert preview.dropped == report.dropped, "the rows the export dropped, per reason"
    assert preview.rows == report.rows
    assert preview.steps == sum(report.stats["steps"].values())
    assert preview.command == regenerate_command(report.params)


@pytest.mark.parametrize(
    "setting, ids, kwargs",
    [
        ("default", ("simpletes", "exit", "r3l", "circle"), {}),
        ("all_valid", ("simpletes", "r3l"), dict(formats="sft,rl", filters=ExportFilters(improved_only=False))),
        ("top_pct", ("simpletes", "exit", "r3l"), dict(filters=ExportFilters(top_pct=50, prefix_to_best=True))),
        ("validation", ("simpletes", "exit", "circle"),
         dict(filters=ExportFilters(min_gap=0.05, validation_problems=("circle_packing",)))),
        ("selector", None, dict(problems="erdos_min_overlap", strategies="exit,r3l", formats=["preference", "sft"])),
    ],
)
def test_a_preview_counts_what_the_export_writes(campaigns, tmp_path, setting, ids, kwargs):
    url, camps = campaigns
    chosen = None if ids is None else [camps[k] for k in ids]
    exports = _exports(url)
    preview = preview_export(chosen, db_url=url, **kwargs)
    assert _exports(url) == exports, "a preview stores no export row"
    assert list(tmp_path.iterdir()) == []
    assert preview.rows > 0 and set(preview.row_counts) == set(preview.formats)
    report = export_dataset(chosen, out_dir=tmp_path / "out", db_url=url, **kwargs)
    _assert_same_as_export(preview, report)
    if setting == "validation":
        assert preview.row_counts["rl"]["validation"] > 0
    if setting == "top_pct":
        assert "top_pct" in preview.dropped["rl"] and "prefix_to_best" in preview.dropped["rl"]
    if setting == "selector":
        assert preview.campaigns == sorted([camps["exit"], camps["r3l"]]) and preview.formats == ["sft", "preference"]
        assert preview.command.startswith(f"discovery export {camps['exit']} {camps['r3l']} --format sft,preference ")


def test_a_preview_writes_nothing_and_removes_its_key_table(small_db, tmp_path, monkeypatch):
    import flows.export as export

    scratch = tmp_path / "scratch"  # where tempfile puts the preview's temporary folder
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    keys = []

    class Spy(export.DiskDedup):
        def __init__(self, path, *a, **kw):
            keys.append(Path(path))
            super().__init__(path, *a, **kw)

    monkeypatch.setattr(export, "DiskDedup", Spy)
    tables, dump = _database(small_db)
    before = _tree(tmp_path)
    previews = [
        preview_export([1, 2, 3], db_url=small_db),
        preview_export([1, 2], db_url=small_db, formats="sft,rl",
                       filters=ExportFilters(improved_only=False, top_pct=50, validation_problems=("synthetic_b",))),
        preview_export(problems="synthetic_b", db_url=small_db, chunk=7),
        preview_export([1], db_url=small_db, formats="preference", filters=ExportFilters(min_gap=1.0)),
    ]
    assert [p.steps for p in previews] == [240, 160, 80, 80] and all(p.rows for p in previews[:3])
    assert len(keys) == len(previews) and all(k.parent.parent == scratch for k in keys), keys
    assert list(scratch.iterdir()) == [], "the temporary folder of the key table is removed"
    assert _database(small_db) == (tables, dump), "the database is unchanged"
    assert tables["export"] == 0
    assert {k: v for k, v in _tree(tmp_path).items() if not k.startswith("small.db")} == \
        {k: v for k, v in before.items() if not k.startswith("small.db")}, "no file appears"
    # and the counts are what an export writes, on the synthetic database too
    _assert_same_as_export(previews[1], export_dataset(
        [1, 2], out_dir=tmp_path / "out", db_url=small_db, formats="sft,rl",
        filters=ExportFilters(improved_only=False, top_pct=50, validation_problems=("synthetic_b",))))


@pytest.mark.parametrize("case, pattern", [(c, p) for c, p in BAD_INPUT if c not in OUT_DIR_CASES])
def test_a_preview_refuses_bad_input_as_the_export_does(small_db, tmp_path, case, pattern):
    ids, kwargs = _bad_input(case, small_db, tmp_path)
    before = _tree(tmp_path)
    with pytest.raises(ExportError, match=pattern) as refused:
        export_dataset(ids, **kwargs)
    kwargs.pop("out_dir")
    with pytest.raises(ExportError) as info:
        preview_export(ids, **kwargs)
    assert type(info.value) is ExportError and str(info.value) == str(refused.value)
    assert "\n" not in str(info.value)
    assert _tree(tmp_path).keys() == before.keys() and _exports(small_db) == 0


def test_a_preview_that_keeps_nothing_says_why_instead_of_raising(small_db, tmp_path):
    preview = preview_export([1], db_url=small_db, formats="preference", filters=ExportFilters(min_gap=1.0))
    assert preview.rows == 0 and preview.row_counts == {"preference": {}}
    assert preview.steps == 80 and list(preview.dropped) == ["preference"]
    assert list(preview.dropped["preference"]) == ["min_gap"] and preview.dropped["preference"]["min_gap"] > 0
    n = preview.dropped["preference"]["min_gap"]
    with pytest.raises(ExportError, match=rf"no rows passed the filters \(preference: {n} min_gap\)"):
        export_dataset([1], out_dir=tmp_path / "out", db_url=small_db, formats="preference",
                       filters=ExportFilters(min_gap=1.0))
    # a format without rows beside one with rows: {} in both, so a UI can say 0
    preview = preview_export([1], db_url=small_db, formats="sft,preference", filters=ExportFilters(min_gap=1.0))
    assert preview.row_counts["preference"] == {} and preview.row_counts["sft"]["train"] > 0
    _assert_same_as_export(preview, export_dataset([1], out_dir=tmp_path / "out", db_url=small_db,
                                                   formats="sft,preference", filters=ExportFilters(min_gap=1.0)))


# ---------------------------------------------------------------- memory: streaming, not loading


def test_export_streams_memory_does_not_grow_with_rows(tmp_path):
    """The step query streams (stream_results + yield_per), and the Python heap's peak during an
    export stays flat when the rows quadruple, far below the text written."""
    streamed = []

    def spy(conn, cursor, statement, parameters, context, executemany):
        if "FROM trajectory JOIN step" in statement:
            opts = context.execution_options
            streamed.append((opts.get("stream_results"), opts.get("yield_per")))

    event.listen(Engine, "before_cursor_execute", spy)
    try:
        peaks, sizes = [], []
        for n in (1000, 4000):
            url = _synthetic(tmp_path / f"s{n}.db", n, campaigns=2, prompt_kb=3.0)
            if n == 1000:  # a first export imports what exports need: not the export's memory
                export_dataset([1], out_dir=tmp_path / "warm-up", db_url=url, chunk=200)
            tracemalloc.start()
            report = export_dataset([1, 2], out_dir=tmp_path / f"out{n}", db_url=url, batch_rows=64, chunk=200)
            peaks.append(tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()
            sizes.append(sum(f["bytes"] for p, f in report.files.items() if p.endswith(".jsonl")))
            assert sum(report.row_counts["rl"].values()) == n
    finally:
        event.remove(Engine, "before_cursor_execute", spy)
        dispose_engines()
    assert streamed and all(s == (True, 200) for s in streamed), streamed
    assert sizes[1] > 3.5 * sizes[0]
    assert peaks[1] < 1.5 * peaks[0], f"peak {peaks[1] / 2**20:.1f} MiB at 4,000 steps vs {peaks[0] / 2**20:.1f} at 1,000"
    assert peaks[1] < sizes[1] / 3, f"peak {peaks[1] / 2**20:.1f} MiB for {sizes[1] / 2**20:.1f} MiB written"


def test_disk_dedup_remembers_keys_across_commits(tmp_path):
    from flows.export import DiskDedup

    with DiskDedup(tmp_path / "keys.sqlite", commit_every=3) as d:
        keys = [hashlib.blake2b(str(i).encode(), digest_size=16).digest() for i in range(10)]
        assert [d.seen(k) for k in keys] == [False] * 10
        assert [d.seen(k) for k in keys] == [True] * 10 and d.keys == 10
    assert not (tmp_path / "keys.sqlite").exists()


# ---------------------------------------------------------------- storage


def test_migration_0003_adds_the_export_table_and_matches_the_models(tmp_path):
    from alembic import command
    from sqlalchemy import inspect

    from db.engine import alembic_head
    from tests.migrations import alembic, kept_campaign, old_database, revision, schema_diff

    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = old_database(url, "0002")
    cid = kept_campaign(old)
    assert not inspect(old).has_table("export")
    dispose_engines()
    engine = get_engine(url)
    assert inspect(engine).has_table("export") and repo.get_campaign(engine, cid).name == "kept"
    assert revision(engine) == alembic_head() and schema_diff(engine) == []
    first = repo.create_export(engine, username="u", command="c", params={"campaigns": [cid]}, out_dir="/x")
    second = repo.create_export(engine, username="u", command="c", params={}, out_dir="/y", replay_of=first)
    assert repo.get_export(engine, second).replay_of == first
    alembic(engine, command.downgrade, "0002")
    assert not inspect(engine).has_table("export") and repo.get_campaign(engine, cid).name == "kept"
    dispose_engines()


# ---------------------------------------------------------------- the command line


def _cli(args, tmp_path, db_url, timeout=180):
    env = dict(os.environ, DISCOVERY_DB_URL=db_url, PREFECT_HOME=str(tmp_path / "prefect-home"))
    env.pop("DISCOVERY_MODEL", None)
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_cli_export_exports_and_replay(small_db, tmp_path):
    out = tmp_path / "data"
    done = _cli(["export", "1", "2", "--out", str(out), "--format", "sft,rl", "--all-valid",
                 "--validation-problems", "synthetic_b"], tmp_path, small_db)
    assert done.returncode == 0, done.stderr
    report = show_export(1, db_url=small_db)
    assert report.status == "completed" and report.formats == ["sft", "rl"]
    assert report.command == f"discovery export 1 2 --out {out} --format sft,rl --all-valid --validation-problems synthetic_b"
    for fmt in ("sft", "rl"):
        counts = report.row_counts[fmt]
        assert f"{fmt}" in done.stdout and str(sum(counts.values())) in done.stdout
    assert f"out: {out}" in done.stdout and "stored as export 1" in done.stdout
    assert "dropped sft: " in done.stdout

    listed = _cli(["exports"], tmp_path, small_db)
    assert listed.returncode == 0 and "completed" in listed.stdout and "sft,rl" in listed.stdout
    shown = _cli(["exports", "1"], tmp_path, small_db)
    assert shown.returncode == 0, shown.stderr
    assert report.files["rl/train.parquet"]["sha256"] in shown.stdout
    assert "equivalent command: discovery export 1 2 --format sft,rl --all-valid" in shown.stdout

    replay = _cli(["export", "--replay", "1", "--out", str(tmp_path / "again")], tmp_path, small_db)
    assert replay.returncode == 0, replay.stderr
    assert "replay of export 1: identical files (same sha256)" in replay.stdout
    assert _tree(tmp_path / "again") == _tree(out)

    as_json = _cli(["exports", "2", "--json"], tmp_path, small_db)
    assert json.loads(as_json.stdout)["identical"] is True


def _table_row(fmt: str, counts: dict[str, int]) -> str:
    """A regex for one row of the rows-per-format table: format, train, validation, total."""
    cells = [counts.get(s, 0) for s in SPLITS] + [sum(counts.values())]
    return rf"\b{fmt}\W+" + r"\W+".join(map(str, cells)) + r"\b"


def test_cli_dry_run_prints_the_counts_and_writes_nothing(small_db, tmp_path):
    def files():
        return {k for k in _tree(tmp_path) if not k.startswith(("small.db", "prefect-home"))}

    tables, dump = _database(small_db)
    before = files()
    args = ["1", "2", "--format", "sft,rl", "--all-valid", "--validation-problems", "synthetic_b"]
    expected = preview_export([1, 2], db_url=small_db, formats="sft,rl",
                              filters=ExportFilters(improved_only=False, validation_problems=("synthetic_b",)))
    done = _cli(["export", *args, "--dry-run"], tmp_path, small_db)  # no --out
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert f"campaigns: 1 2 ({expected.steps} steps read)" in out
    assert f"dry run: {expected.rows} rows from 2 campaigns" in out
    for fmt in ("sft", "rl"):
        assert re.search(_table_row(fmt, expected.row_counts[fmt]), out), (fmt, out)
    for fmt, reasons in expected.dropped.items():
        assert f"dropped {fmt}: " + ", ".join(f"{r} {n}" for r, n in reasons.items()) in out
    assert "nothing was written or stored" in out
    assert "discovery export 1 2 --format sft,rl --all-valid --validation-problems synthetic_b --out <folder>" in out

    # with --out: the command names it, and it is not created
    data = tmp_path / "data"
    done = _cli(["export", *args, "--out", str(data), "--dry-run", "--json"], tmp_path, small_db)
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["row_counts"] == expected.row_counts and shown["dropped"] == expected.dropped
    assert shown["rows"] == expected.rows and shown["campaigns"] == [1, 2]
    assert shown["command"] == f"discovery export {' '.join(args)} --out {data}"
    # nothing passes: exit 0 all the same, and the reasons
    done = _cli(["export", "1", "--format", "preference", "--min-gap", "1", "--dry-run"], tmp_path, small_db)
    assert done.returncode == 0, done.stderr
    assert "dry run: 0 rows from 1 campaign" in done.stdout and "dropped preference: min_gap " in done.stdout
    assert "no rows pass the filters" in done.stdout

    assert not data.exists() and files() == before, "no file written"
    assert _database(small_db) == (tables, dump), "the database is unchanged, no export row"


@pytest.mark.parametrize(
    "args, message",
    [
        (["export", "7", "--dry-run"], "error: no campaign with id 7 (recent ids: 3, 2, 1)"),
        (["export", "1", "--dry-run", "--top-pct", "0"], "error: top_pct must be a percentage in (0, 100]"),
        (["export", "--replay", "1", "--dry-run"], "error: --dry-run previews a new export: drop --replay"),
        (["export", "7", "--out", "{out}"], "error: no campaign with id 7 (recent ids: 3, 2, 1)"),
        (["export", "--out", "{out}"], "error: no campaigns chosen: pass campaign ids"),
        (["export", "1", "--out", "{out}", "--top-pct", "0"], "error: top_pct must be a percentage in (0, 100]"),
        (["export", "1", "--out", "{out}", "--format", "dpo"], "error: unknown format 'dpo'"),
        (["export", "1"], "error: no output folder: pass --out DIR"),
        (["export", "--replay", "1", "--out", "{out}", "--top-pct", "5"], "error: --replay re-uses the stored"),
        (["export", "--replay", "4", "--out", "{out}"], "error: no export with id 4 (no exports yet"),
        (["exports", "3"], "error: no export with id 3"),
    ],
)
def test_cli_errors_are_one_line(small_db, tmp_path, args, message):
    out = tmp_path / "never"
    done = _cli([a.replace("{out}", str(out)) for a in args], tmp_path, small_db)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stderr.startswith(message) and done.stderr.count("\n") == 1, done.stderr
    assert not out.exists() and _exports(small_db) == 0
