"""Generic hostile candidates against every shipped problem, through the real sandbox: the
default one (bubblewrap here) and the docker backend, whose image for each problem holds exactly
that problem's requirements.

Whatever the problem, none of these may come out "ok": a claimed score, a forged result file
followed by an early exit, NaN, reading the platform's files (reference data, the database),
importing a baseline library the candidate environment does not provide.
"""

from __future__ import annotations

import pytest

from problems import get_problem, problem_names
from problems.evaluate import evaluate
from sandbox import get_sandbox

REPO = __import__("pathlib").Path(__file__).resolve().parents[2]

HOSTILE = {
    "claimed_score": "def {entry}(*args, **kwargs):\n    return {{'score': 1e9, 'bound': 0.0, 'speedup': 1e9}}\n",
    "forged_result_then_exit": (
        "import json, os\n"
        "def {entry}(*args, **kwargs):\n"
        "    json.dump({{'score': 1e9}}, open('result.json', 'w'))\n"
        "    os._exit(0)\n"
    ),
    "nan": "def {entry}(*args, **kwargs):\n    return [float('nan')] * 8\n",
    "read_platform_files": (
        "import os\n"
        "def {entry}(*args, **kwargs):\n"
        "    found = []\n"
        "    for root in ({repo!r}, {repo!r} + '/problems', '/root'):\n"
        "        found += os.listdir(root)\n"
        "    return found\n"
    ),
    "import_baselines": "def {entry}(*args, **kwargs):\n    import sklearn, qiskit\n    return [1.0]\n",
}


@pytest.fixture(scope="module")
def docker_per_problem():
    """A docker sandbox with no fixed image: each problem's runs get the image of its requirements."""
    from sandbox import DockerSandbox
    from tests.sandbox.conftest import require_docker

    require_docker()
    sb = DockerSandbox(max_idle=6)
    yield sb
    sb.close()


@pytest.fixture(params=["default", "docker"])
def backend(request):
    return get_sandbox() if request.param == "default" else request.getfixturevalue("docker_per_problem")


@pytest.mark.slow
@pytest.mark.parametrize("attack", sorted(HOSTILE))
@pytest.mark.parametrize("name", sorted(problem_names()))
def test_hostile_candidate_is_never_scored_ok(name, attack, backend):
    problem = get_problem(name)
    program = HOSTILE[attack].format(entry=problem.entrypoint, repo=str(REPO))
    ev = evaluate(problem, program, backend)
    assert ev.status in ("invalid", "error"), (name, attack, ev.status, ev.score, ev.feedback[:500])
    assert ev.score is None and ev.feedback
