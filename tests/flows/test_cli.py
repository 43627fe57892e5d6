"""The `discovery` command as a user runs it: real processes, real SQLite files (SIGKILL and resume: tests/reliability/test_faults.py)."""

from __future__ import annotations

import hashlib
import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _env(tmp_path: Path, db: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DISCOVERY_DB_URL=f"sqlite:///{db}",
        PREFECT_HOME=str(tmp_path / "prefect-home"),
        PREFECT_LOGGING_LEVEL="WARNING",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
    )
    env.pop("PREFECT_API_URL", None)  # each CLI process starts its own ephemeral API, as a user's does
    env.pop("DISCOVERY_MODEL", None)
    return env


def _cli(args, env, timeout=300, **kw):
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=timeout, **kw,
    )


def _count(db: Path, sql: str) -> int:
    con = sqlite3.connect(db, timeout=30)
    try:
        return con.execute(sql).fetchone()[0]
    finally:
        con.close()


def _digest(db: Path) -> str:
    con = sqlite3.connect(db, timeout=30)
    try:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        dump = "\n".join(con.iterdump())
    finally:
        con.close()
    return hashlib.sha256(dump.encode()).hexdigest()


def test_problems_lists_erdos_with_best_known(tmp_path):
    out = _cli(["problems"], _env(tmp_path, tmp_path / "d.db"), timeout=120)
    assert out.returncode == 0, out.stderr
    assert "erdos_min_overlap" in out.stdout and "0.38087" in out.stdout


def test_eval_scores_a_program_file_like_a_campaign(tmp_path):
    from problems import get_problem

    program = tmp_path / "p.py"
    program.write_text(get_problem("erdos_min_overlap").seed_program)
    out = _cli(["eval", "erdos_min_overlap", str(program), "--json"], _env(tmp_path, tmp_path / "d.db"), timeout=120)
    assert out.returncode == 0, out.stderr
    import json

    ev = json.loads(out.stdout)
    assert ev["status"] == "ok" and 0.38 < ev["score"] < 0.5
    bad = tmp_path / "bad.py"
    bad.write_text("def construct():\n    return {'bound': 0.1}\n")
    out = _cli(["eval", "erdos_min_overlap", str(bad)], _env(tmp_path, tmp_path / "d.db"), timeout=120)
    assert out.returncode == 1 and "status:   invalid" in out.stdout


@pytest.fixture(scope="module")
def populated_db(tmp_path_factory):
    """A database holding one finished campaign, and its digest (shared: no case may change it)."""
    tmp_path = tmp_path_factory.mktemp("populated")
    db = tmp_path / "kept.db"
    env = _env(tmp_path, db)
    out = _cli(["run", "erdos_min_overlap", "--chains", "1", "--k", "2", "--budget", "4", "--quiet"], env)
    assert out.returncode == 0, out.stderr
    return db, env, _digest(db)


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.mark.parametrize(
    "args, pattern",
    [
        (["run", "no_such_problem"], "unknown problem"),
        (["run", "erdos_min_overlap", "--budget", "many"], "Invalid value for '--budget'"),
        (["run", "erdos_min_overlap", "--budget", "10"], "not a multiple of chains x k"),
        (["run", "erdos_min_overlap", "--model", "openai/m", "--api-base", "http://127.0.0.1:{port}/v1"], "openai/m"),
        (["run", "erdos_min_overlap", "--db", "nosuchdialect://x"], "database URL"),
        (["resume", "999"], "no campaign with id 999"),
        (["show", "999"], "no campaign with id 999"),
        (["eval", "erdos_min_overlap", "/no/such/file.py"], "not found"),
    ],
)
def test_bad_input_gives_one_line_error_and_keeps_stored_data(populated_db, args, pattern):
    db, env, digest = populated_db
    args = [a.replace("{port}", str(_closed_port())) for a in args]
    out = _cli(args, env, timeout=180)
    assert out.returncode != 0
    assert pattern in out.stderr
    error_lines = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1, out.stderr
    assert "Traceback" not in out.stderr
    assert _digest(db) == digest, "stored data must be left intact"


