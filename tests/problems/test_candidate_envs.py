"""Every problem's candidate environment: no secrets, no platform, no baselines."""

from __future__ import annotations

import pytest

from problems import get_problem, problem_names
from problems.evaluate import candidate_request
from sandbox import get_sandbox

PROBE = '''
import importlib, os

def probe():
    seen = dict(os.environ)
    for path in ("/proc/self/environ", "/proc/1/environ"):
        try:
            seen[path] = open(path, "rb").read().decode("latin-1")
        except OSError as exc:
            seen[path] = f"unreadable: {type(exc).__name__}"
    reachable = {}
    for module in ("sklearn", "qiskit", "prefect", "sqlalchemy", "litellm", "discovery", "problems", "db", "flows"):
        try:
            importlib.import_module(module)
            reachable[module] = True
        except Exception:
            reachable[module] = False
    return {"env": seen, "reachable": reachable}
'''


@pytest.mark.parametrize("name", sorted(problem_names()))
def test_api_keys_and_platform_are_absent_in_every_candidate_environment(name, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret-123")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-secret-456")
    problem = get_problem(name)
    request = candidate_request(problem, PROBE, kwargs={}, entrypoint="probe")
    assert request.python is not None, "each problem runs in its own candidate environment"
    run = get_sandbox().run(request)
    assert run.status == "ok", run.error
    blob = repr(run.output) + run.stdout + run.stderr
    assert "sk-test-secret-123" not in blob and "sk-ant-test-secret-456" not in blob
    assert not any(run.output["reachable"].values()), run.output["reachable"]
