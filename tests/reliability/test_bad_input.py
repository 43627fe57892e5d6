"""Bad input through the real `discovery` command: every case is one `error:` line that names the
problem and its fix, a non-zero exit code, and a database (and folder) left exactly as it was.

One small real campaign is stored once per module; every case runs the CLI in a subprocess
against its own byte-for-byte copy of that database, in its own folder, so the cases can run a
few at a time (each CLI process pays the import of Prefect) and a change is pinned to its case.
Set INPUT_ROWS_MD=path to also write one markdown row per case (what was actually printed).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

REPO = Path(__file__).resolve().parents[2]
TOY = REPO / "tests" / "flows" / "toy_problem.py"
WORKERS = 3  # CLI processes at once (each is mostly import time)
TIMEOUT_S = 90


# ---------------------------------------------------------------- problem modules and configs

SYNTAX_ERROR = "from problems.base import Problem\nPROBLEM = Problem(name='x',\n"
NO_PROBLEM = "from problems.base import Problem\nSOMETHING_ELSE = 1\n"
_TOY_IMPORT = (
    "import dataclasses, importlib.util\n"
    f"spec = importlib.util.spec_from_file_location('toy_base_for_bad_input', {str(TOY)!r})\n"
    "base = importlib.util.module_from_spec(spec); spec.loader.exec_module(base)\n"
)
NO_ENTRYPOINT = _TOY_IMPORT + (
    "SEED = '''# EVOLVE-BLOCK-START\nVALUES = [1.0]\n# EVOLVE-BLOCK-END\n'''\n"
    "PROBLEM = dataclasses.replace(base.PROBLEM, name='no_entry', seed_program=SEED)\n"
)
SCORER_RAISES = _TOY_IMPORT + (
    "def score(output):\n    raise ZeroDivisionError('scorer bug on purpose')\n"
    "PROBLEM = dataclasses.replace(base.PROBLEM, name='raising_scorer', score=score)\n"
)
SMALL = ["--chains", "1", "--k", "2", "--budget", "4"]  # a valid design: only the bad input is wrong
GOOD_PROGRAM = "def construct():\n    return [3.0, 3.0]\n"


@dataclasses.dataclass
class Case:
    name: str  # the bad input, as the row of the report says it
    args: list[str]  # CLI arguments; "{db}" = the case's database URL, "{dir}" = its folder
    words: tuple[str, ...]  # each must appear in the error line (case-insensitive): names problem + fix
    files: dict[str, str | bytes] = dataclasses.field(default_factory=dict)  # written in the case folder
    db_file: str | bytes | None = None  # None: a copy of the module's campaign database
    exit_code: int | None = None  # exact code expected (None: any non-zero)
    one_line: bool = True  # the output is one `error:` line (the scorer case prints an evaluation)
    setup: Callable[["Case", Path], object] | None = None  # returns something to keep alive (a socket)
    # an empty file is a valid empty SQLite database: opening it creates the schema (no rows), and
    # that is the only change allowed
    schema_only: bool = False


def _busy_port(case: Case, folder: Path):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    case.args = [a.replace("{port}", str(sock.getsockname()[1])) for a in case.args]
    return sock


CASES = [
    Case("problem module with a syntax error", ["run", "{dir}/bad_syntax.py", "--db", "{db}", "--quiet"],
         ("bad_syntax.py", "syntax error", "fix"), files={"bad_syntax.py": SYNTAX_ERROR}),
    Case("problem module without PROBLEM", ["run", "{dir}/no_problem.py", "--db", "{db}", "--quiet"],
         ("no_problem.py", "defines no PROBLEM", "add"), files={"no_problem.py": NO_PROBLEM}),
    Case("PROBLEM whose seed lacks the entrypoint", ["run", "{dir}/no_entry.py", "--db", "{db}", "--quiet"],
         ("construct", "seed"), files={"no_entry.py": NO_ENTRYPOINT}),
    Case("scorer that raises (discovery eval)", ["eval", "{dir}/raising.py", "{dir}/program.py"],
         ("status:   error", "evaluator error", "ZeroDivisionError"), exit_code=1, one_line=False,
         files={"raising.py": SCORER_RAISES, "program.py": GOOD_PROGRAM}),
    Case("config TOML with an unknown key", ["run", "--config", "{dir}/c.toml", "--db", "{db}", "--quiet"],
         ("bogus_key",), files={"c.toml": 'problem = "erdos_min_overlap"\nbogus_key = 1\n'}),
    Case("config TOML with a wrong type", ["run", "--config", "{dir}/c.toml", "--db", "{db}", "--quiet"],
         ("chains",), files={"c.toml": 'problem = "erdos_min_overlap"\nchains = "four"\n'}),
    Case("config TOML with a negative budget", ["run", "--config", "{dir}/c.toml", "--db", "{db}", "--quiet"],
         ("budget",), files={"c.toml": 'problem = "erdos_min_overlap"\nbudget = -4\n'}),
    Case("malformed TOML", ["run", "--config", "{dir}/c.toml", "--db", "{db}", "--quiet"],
         ("c.toml",), files={"c.toml": 'problem = "erdos_min_overlap\nbudget = [\n'}),
    Case("--set with an unknown key", ["run", "erdos_min_overlap", "--set", "nosuch.knob=5", "--db", "{db}", "--quiet"],
         ("nosuch",)),
    Case("unknown strategy", ["run", "erdos_min_overlap", "--strategy", "nosuch", "--db", "{db}", "--quiet"],
         ("strategy", "simpletes")),
    Case("unknown campaign id (show)", ["show", "999", "--db", "{db}"], ("999", "recent ids")),
    Case("unknown campaign id (resume)", ["resume", "999", "--db", "{db}", "--quiet"], ("999", "recent ids")),
    Case("unknown campaign id (export)", ["export", "999", "--out", "{dir}/out", "--db", "{db}"], ("999",)),
    Case("unknown campaign id (evaluate)", ["evaluate", "999", "--recheck", "--db", "{db}"], ("999", "recent ids")),
    Case("unknown comparison id", ["comparisons", "999", "--db", "{db}"], ("999", "comparison")),
    Case("unknown export id", ["exports", "999", "--db", "{db}"], ("999", "export")),
    Case("unknown export id (--replay)", ["export", "--replay", "999", "--out", "{dir}/out", "--db", "{db}"],
         ("999", "export")),
    Case("unknown problem name", ["run", "no_such_problem", "--db", "{db}", "--quiet"],
         ("no_such_problem", "known", "erdos_min_overlap")),
    Case("program file that does not exist (eval)", ["eval", "erdos_min_overlap", "{dir}/missing.py"],
         ("missing.py", "pass")),
    Case("--db in a folder that does not exist", ["show", "1", "--db", "sqlite:///{dir}/nope/d.db"],
         ("nope", "does not exist", "create it")),
    Case("--db in a folder that does not exist (run)",
         ["run", "erdos_min_overlap", *SMALL, "--db", "sqlite:///{dir}/nope/d.db", "--quiet"],
         ("nope", "does not exist", "create it")),
    Case("--db that is not a URL", ["show", "1", "--db", "not a url"], ("not a url", "sqlite:///")),
    Case("export --out under a regular file", ["export", "1", "--out", "{dir}/a_file/sub", "--db", "{db}"],
         ("a_file",), files={"a_file": "not a folder\n"}),
    Case("export --out where nothing can be written (/proc)",
         ["export", "1", "--out", "/proc/discovery-export-out", "--db", "{db}"],
         ("/proc/discovery-export-out", "writable folder")),
    Case("--db where nothing can be written (/proc)", ["run", "erdos_min_overlap", *SMALL, "--db",
                                                         "sqlite:////proc/discovery-d.db", "--quiet"],
         ("/proc/discovery-d.db", "permissions")),
    Case("corrupt database file (run)", ["run", "erdos_min_overlap", *SMALL, "--db", "{db}", "--quiet"],
         ("d.db", "database"), db_file=os.urandom(8192)),
    Case("corrupt database file (show)", ["show", "1", "--db", "{db}"], ("d.db", "database"), db_file=os.urandom(8192)),
    Case("corrupt database file (dashboard)", ["dashboard", "--db", "{db}", "--port", "0"], ("d.db", "database"),
         db_file=os.urandom(8192)),
    Case("empty file as the database (show)", ["show", "1", "--db", "{db}"], ("no campaign with id 1", "discovery run"),
         db_file=b"", schema_only=True),
    Case("schedule with a bad cron", ["schedule", "erdos_min_overlap", "--cron", "61 25 * * *", "--db", "{db}"],
         ("cron",)),
    Case("dashboard --port already in use", ["dashboard", "--db", "{db}", "--port", "{port}"], ("port",),
         setup=_busy_port),
]


# ---------------------------------------------------------------- the stored campaign and the runner


@pytest.fixture(scope="module")
def stored_db(tmp_path_factory, prefect_harness) -> Path:
    from db.engine import dispose_engines
    from flows.api import run_campaign

    path = tmp_path_factory.mktemp("bad-input") / "campaign.db"
    summary = run_campaign("erdos_min_overlap", chains=1, k=2, budget=4, seed=0, db_url=f"sqlite:///{path}")
    assert summary.campaign.id == 1 and summary.campaign.status == "completed"
    dispose_engines()
    con = sqlite3.connect(path)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    return path


def _snapshot(folder: Path) -> dict[str, str]:
    """relative path -> sha256 of every file under `folder` ("<dir>" for folders)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        out[str(p.relative_to(folder))] = "<dir>" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@dataclasses.dataclass
class Outcome:
    case: Case
    command: str
    code: int
    stdout: str
    stderr: str
    before: dict[str, str]
    after: dict[str, str]
    folder: Path

    @property
    def message(self) -> str:
        text = (self.stderr.strip() or self.stdout.strip())
        return text if self.case.one_line else " / ".join(line for line in (self.stdout + self.stderr).splitlines()
                                                             if line.startswith(("status:", "feedback:")))


def _env(folder: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DISCOVERY_DB_URL=f"sqlite:///{folder / 'd.db'}",
        PREFECT_HOME=str(folder.parent / f"{folder.name}-prefect-home"),
        PREFECT_LOGGING_LEVEL="WARNING",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        COLUMNS="200",
    )
    env.pop("PREFECT_API_URL", None)
    env.pop("DISCOVERY_MODEL", None)
    return env


def _run_case(case: Case, folder: Path, stored: Path) -> Outcome:
    folder.mkdir(parents=True)
    db = folder / "d.db"
    if case.db_file is None:
        shutil.copyfile(stored, db)
    else:
        db.write_bytes(case.db_file.encode() if isinstance(case.db_file, str) else case.db_file)
    for name, text in case.files.items():
        (folder / name).write_bytes(text.encode() if isinstance(text, str) else text)
    keep = case.setup(case, folder) if case.setup else None
    args = [a.replace("{db}", f"sqlite:///{db}").replace("{dir}", str(folder)) for a in case.args]
    before = _snapshot(folder)
    try:
        proc = subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=folder, env=_env(folder),
                              capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:  # e.g. a dashboard that started instead of failing
        out = lambda b: b.decode(errors="replace") if isinstance(b, bytes) else (b or "")  # noqa: E731
        proc = subprocess.CompletedProcess(args, 0, out(exc.stdout), out(exc.stderr) + f"\n(still running after {TIMEOUT_S} s)")
    finally:
        if keep is not None:
            keep.close()
    after = _snapshot(folder)
    shown = " ".join(a.replace(str(folder), ".") for a in args)
    return Outcome(case, f"discovery {shown}", proc.returncode, proc.stdout, proc.stderr, before, after, folder)


@pytest.fixture(scope="module")
def outcomes(stored_db, tmp_path_factory) -> dict[str, Outcome]:
    root = tmp_path_factory.mktemp("cases")
    with concurrent.futures.ThreadPoolExecutor(WORKERS) as pool:
        futures = {c.name: pool.submit(_run_case, c, root / f"case{i:02d}", stored_db) for i, c in enumerate(CASES)}
        results = {name: f.result() for name, f in futures.items()}
    rows_md = os.environ.get("INPUT_ROWS_MD")
    if rows_md:
        lines = ["| bad input | command | exit code | the one-line message | nothing changed? |",
                 "|---|---|---|---|---|"]
        for c in CASES:
            o = results[c.name]
            same = "yes" if o.before == o.after else f"NO: {_diff(o)}"
            if c.schema_only and o.before.keys() == o.after.keys() and not _row_counts(o.folder / "d.db").keys() - {"alembic_version"}:
                same = "yes: the empty file gained the schema only (no rows)" if o.before != o.after else "yes"
            cell = lambda s: s.replace("|", "\\|").replace("\n", " ⏎ ")  # noqa: E731
            message = o.message.replace(str(o.folder), ".")
            lines.append(f"| {cell(c.name)} | `{cell(o.command)}` | {o.code} | {cell(message)} | {same} |")
        Path(rows_md).write_text("\n".join(lines) + "\n")
    return results


def _diff(o: Outcome) -> str:
    keys = sorted(set(o.before) | set(o.after))
    return ", ".join(f"{k} {'added' if k not in o.before else 'removed' if k not in o.after else 'changed'}"
                     for k in keys if o.before.get(k) != o.after.get(k))


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_one_actionable_line_and_changes_nothing(case, outcomes):
    o = outcomes[case.name]
    everything = o.stdout + o.stderr
    assert o.code != 0, f"exit code 0 for {o.command}: {everything}"
    if case.exit_code is not None:
        assert o.code == case.exit_code, everything
    assert "Traceback" not in everything and 'File "' not in everything, everything
    if case.one_line:
        lines = [line for line in everything.splitlines() if line.strip()]
        assert len(lines) == 1, f"not one line: {everything!r}"
        assert lines[0].startswith("error: "), lines[0]
    for word in case.words:
        assert word.lower() in everything.lower(), f"{word!r} not in {everything!r}"
    if case.schema_only:
        assert set(o.after) == set(o.before), f"{_diff(o)} after {o.command}"
        assert [k for k in o.after if o.before[k] != o.after[k]] in ([], ["d.db"])
        assert _row_counts(o.folder / "d.db") in ({}, {"alembic_version": 1}), "an empty database gained rows"
        return
    assert o.before == o.after, f"{_diff(o)} after {o.command}: {everything}"


def _row_counts(db: Path) -> dict[str, int]:
    """table -> rows, for the tables that hold any."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        counts = {t: con.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in tables}
    finally:
        con.close()
    return {t: n for t, n in counts.items() if n}
