"""Secrets: an API key reaches the provider in the Authorization header and nowhere else.

A real campaign runs through the `discovery` command (a subprocess whose environment holds a
unique fake OPENAI_API_KEY from its start, as a user's shell would), against the local stub LLM
server, with Prefect logging at DEBUG. The stub's scripted candidates hunt for the key: they read
their own environment, /proc/self/environ, their parents' and every readable /proc/*/environ,
print what they find to stdout and stderr, raise it in an exception and return it as their
answer. Then the campaign is exported and every dashboard page is rendered, and the key is looked
for in every artefact: the SQLite file (and -wal/-shm), every exported file (Parquet decoded), the
command's stdout/stderr (the logs), the Prefect home (its database and logs), the dashboard text
and the requests the stub received, where it may appear only in the Authorization header.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.stub_llm import StubLLMServer

REPO = Path(__file__).resolve().parents[2]
TOY = REPO / "tests" / "flows" / "toy_problem.py"

HUNT = r'''
import os, sys

def _hunt():
    found = []
    for k, v in os.environ.items():
        found.append(f"env {k}={v}")
    pids = ["self", str(os.getppid()), "1"]
    try:
        pids += [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError as exc:
        found.append(f"/proc: {exc!r}")
    for pid in pids:
        for name in ("environ", "cmdline"):
            try:
                with open(f"/proc/{pid}/{name}", "rb") as f:
                    data = f.read().replace(b"\0", b"\n").decode(errors="replace")
                if "KEY" in data or "sk-" in data:
                    found.append(f"/proc/{pid}/{name}: {data}")
            except OSError:
                pass
    return "\n".join(found)

'''

PROGRAMS = {
    "prints": HUNT + (
        "def construct():\n"
        "    text = _hunt()\n"
        "    print(text)\n"
        "    print(text, file=sys.stderr)\n"
        "    return [3.0 + 0.0 * len(text)]\n"
    ),
    "returns": HUNT + (
        "def construct():\n"
        "    return [3.0, _hunt() or 'nothing']\n"
    ),
    "raises": HUNT + (
        "def construct():\n"
        "    raise RuntimeError(_hunt() or 'nothing found')\n"
    ),
    "scores": HUNT + (
        "def construct():\n"
        "    text = _hunt()\n"
        "    return [3.0 + (1.0 if 'sk-test-' in text else 0.0)]\n"
    ),
}


def _reply(name: str, code: str) -> str:
    return f"Hunting for keys ({name}).\n```python\n{code}```"


def _env(tmp_path: Path, key: str, db: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.pop("PREFECT_API_URL", None)  # the command starts its own Prefect server, with its home here
    env.pop("DISCOVERY_MODEL", None)
    env.update(
        OPENAI_API_KEY=key,
        DISCOVERY_DB_URL=f"sqlite:///{db}",
        PREFECT_HOME=str(tmp_path / "prefect-home"),
        PREFECT_LOGGING_LEVEL="DEBUG",
        PREFECT_LOGGING_TO_API_LEVEL="DEBUG",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
    )
    return env


def _texts_of_page(at) -> str:
    """Every element of a rendered AppTest page: its protobuf text and, for tables, the values."""
    parts = []

    def walk(node):
        proto = getattr(node, "proto", None)
        if proto is not None:
            parts.append(str(proto))
        value = getattr(node, "value", None) if type(node).__name__ in ("Dataframe", "Table", "Json") else None
        if value is not None:
            parts.append(value.to_csv() if hasattr(value, "to_csv") else str(value))
        children = getattr(node, "children", None)
        if isinstance(children, dict):
            for child in children.values():
                walk(child)

    walk(at._tree)
    return "\n".join(parts)


def _file_text(path: Path) -> str:
    data = path.read_bytes()
    text = data.decode("latin-1")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        text += json.dumps(pq.read_table(path).to_pylist(), default=str)
    return text


def _grep(root: Path, key: str) -> list[str]:
    return [str(p) for p in sorted(root.rglob("*")) if p.is_file() and key in _file_text(p)]


def test_the_api_key_is_only_ever_in_the_authorization_header(tmp_path, monkeypatch):
    key = f"sk-test-{uuid.uuid4().hex}"
    db = tmp_path / "campaign.db"
    # the toy problem without its best-known value of 0 (the campaign page divides by it)
    problem = tmp_path / "secret_toy.py"
    problem.write_text(
        "import dataclasses, importlib.util\n"
        f"spec = importlib.util.spec_from_file_location('toy_base_for_secrets', {str(TOY)!r})\n"
        "base = importlib.util.module_from_spec(spec); spec.loader.exec_module(base)\n"
        "PROBLEM = dataclasses.replace(base.PROBLEM, name='secret_toy', best_known=None)\n"
    )
    names = list(PROGRAMS)
    replies = [_reply(n, PROGRAMS[n]) for n in names]

    with StubLLMServer(contents=replies * 2, default_content=replies[0], api_key=key) as stub:
        run = subprocess.run(
            [sys.executable, "-m", "flows.cli", "run", str(problem), "--model", "openai/stub-model",
             "--api-base", stub.url, "--api-key-env", "OPENAI_API_KEY", "--chains", "1", "--k", "2",
             "--budget", "4", "--seed", "0", "--llm-concurrency", "1", "--db", f"sqlite:///{db}", "--quiet"],
            cwd=tmp_path, env=_env(tmp_path, key, db), capture_output=True, text=True, timeout=300,
        )
        requests = list(stub.requests)
    assert run.returncode == 0, run.stdout + run.stderr
    logs = run.stdout + "\n" + run.stderr
    assert "DEBUG" in logs, "Prefect logged at DEBUG (else the logs checked are not the verbose ones)"

    # the provider got the key, in the Authorization header only
    chats = [r for r in requests if r.index >= 0]
    assert len(chats) >= 4  # the proposals (and the command's reachability check)
    for r in requests:
        for header, value in r.headers.items():
            if header == "authorization":
                assert value == f"Bearer {key}"
            else:
                assert key not in value, f"key in the {header} header of {r.path}"
        assert key not in r.path and key not in r.raw.decode("latin-1"), f"key in the body of {r.path}"
    assert all(r.headers.get("authorization") == f"Bearer {key}" for r in chats)

    # the candidates ran: one raised, the others answered, and none of them saw the key
    from db import repository as repo
    from db.engine import dispose_engines, get_engine

    engine = get_engine(f"sqlite:///{db}")
    campaign = repo.list_campaigns(engine)[0]
    assert campaign.status == "completed"
    cands = repo.candidates_of(engine, campaign.id)
    evaluations = [e for c, e in cands if c.role == "proposal"]
    assert len(evaluations) == 4 and {e.status for e in evaluations} >= {"ok", "error"}
    hunted = "\n".join(e.stdout + e.stderr + e.feedback for e in evaluations)
    assert "env " in hunted, "the hunting program ran and printed what it found"

    # export, then every dashboard page
    from flows.export import export_dataset

    out = tmp_path / "export"
    export_dataset([campaign.id], out_dir=out, db_url=f"sqlite:///{db}", formats="sft,preference,rl")
    trajectory = repo.steps_of(engine, campaign.id)[0].trajectory_id
    dashboard = _render_dashboard(monkeypatch, f"sqlite:///{db}", campaign.id, trajectory, [c.id for c, _ in cands])
    dispose_engines()

    leaks = {
        "database files": [str(p) for p in tmp_path.glob(db.name + "*") if key in _file_text(p)],
        "export files": _grep(out, key),
        "prefect home": _grep(tmp_path / "prefect-home", key),
        "command stdout/stderr and logs": [s for s in ("stdout", "stderr") if key in getattr(run, s)],
        "dashboard": [page for page, text in dashboard.items() if key in text],
        "anything else under the test folder": _grep(tmp_path, key),
    }
    assert list((tmp_path / "prefect-home").rglob("*")), "the Prefect home holds the server's files"
    assert sorted(p.name for p in out.iterdir()), "the export wrote files"
    assert all(len(text) > 200 for text in dashboard.values())
    assert not any(leaks.values()), leaks


def _render_dashboard(monkeypatch, url: str, campaign_id: int, trajectory: int, candidates: list[int]) -> dict[str, str]:
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("DISCOVERY_DB_URL", url)
    app = str(REPO / "dashboard" / "app.py")
    pages: list[tuple[str, str | None, dict]] = [
        ("campaigns", None, {}),
        ("campaign", "campaign", {"campaign": campaign_id}),
        ("trajectory", "trajectory", {"campaign": campaign_id, "trajectory": trajectory}),
        ("compare", "compare", {}),
        ("export", "export", {"campaign": campaign_id}),
        *[(f"candidate {c}", "candidate", {"candidate": c}) for c in candidates],
    ]
    out = {}
    for label, page, params in pages:
        at = AppTest.from_file(app, default_timeout=120)
        if page:
            at.switch_page(f"views/{page}.py")
        for name, value in params.items():
            at.query_params[name] = str(value)
        at.run()
        assert not at.exception, (label, [e.value for e in at.exception])
        out[label] = _texts_of_page(at)
    return out


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
