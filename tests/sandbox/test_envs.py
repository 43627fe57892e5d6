"""Candidate environments (sandbox.envs) and the per-request interpreter and input arrays of the
sandboxes, exercised for real on every backend.

On docker RunRequest.python is ignored: the image is the candidate environment (the platform's
numpy and the standard library, nothing else). Tests about what an env holds check that instead
there, and say so."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import sandbox._exec as exec_mod
from sandbox import Limits, ProcessSandbox, RunRequest
from sandbox import envs
from sandbox.envs import ENVS_DIR_VAR, MODE_VAR, CandidateEnvError, candidate_python

REPO = Path(__file__).resolve().parents[2]
SECRETS = {"OPENAI_API_KEY": "sk-test-secret-123", "ANTHROPIC_API_KEY": "sk-ant-test-secret-456"}
FORBIDDEN = ("sklearn", "scipy", "prefect", "sqlalchemy", "litellm",
             "discovery", "problems", "sandbox", "db", "flows")

IMPORTS = (
    "import importlib, sys\n"
    "def f(names):\n"
    "    out = {}\n"
    "    for name in names:\n"
    "        try:\n"
    "            importlib.import_module(name)\n"
    "            out[name] = 'imported'\n"
    "        except ImportError as e:\n"
    "            out[name] = 'ImportError: ' + str(e)\n"
    "    out['prefix'] = sys.prefix\n"
    "    out['numpy_version'] = getattr(sys.modules.get('numpy'), '__version__', None)\n"
    "    return out\n")


def run(sb, program, python=None, inputs=None, kwargs=None, entrypoint="f"):
    return sb.run(RunRequest(program=program, entrypoint=entrypoint, kwargs=kwargs or {},
                             inputs=inputs or {}, python=python,
                             limits=Limits(wall_seconds=60, cpu_seconds=60)))


# -- what a candidate env holds -----------------------------------------------------------------
def test_numpy_env_has_numpy_and_nothing_of_the_platform(sandbox, numpy_python):
    r = run(sandbox, IMPORTS, python=numpy_python, kwargs={"names": ["numpy", *FORBIDDEN]})
    assert r.status == "ok", r
    assert r.output["numpy"] == "imported"
    for name in FORBIDDEN:
        assert r.output[name].startswith("ImportError"), (name, r.output[name])
    if sandbox.name != "docker":  # docker: the image's interpreter, whatever python says
        assert r.output["prefix"] == os.path.dirname(os.path.dirname(numpy_python))
    assert r.output["numpy_version"] == np.__version__  # pinned to the platform's numpy


def test_stdlib_env_has_no_numpy(sandbox, stdlib_python):
    r = run(sandbox, IMPORTS, python=stdlib_python, kwargs={"names": ["numpy", "json", "scipy"]})
    assert r.status == "ok", r
    if sandbox.name == "docker":  # python is ignored: the image (with numpy) is the env
        assert r.output["numpy"] == "imported"
    else:
        assert r.output["numpy"].startswith("ImportError")
    assert r.output["json"] == "imported"
    assert r.output["scipy"].startswith("ImportError")


def test_base_site_packages_cannot_be_added_back(sandbox, numpy_python):
    """The base interpreter's site-packages (which here hold scipy etc.) are covered."""
    bases = subprocess.run([numpy_python, "-I", "-c", "import site, sys, json; print(json.dumps("
                            "site.getsitepackages([sys.base_prefix])))"], capture_output=True,
                           text=True, check=True)
    program = ("import os, sys\n"
               "def f(dirs):\n"
               "    sys.path.extend(dirs)\n"
               "    listed = [n for d in dirs if os.path.isdir(d) for n in os.listdir(d)]\n"
               "    try:\n"
               "        import scipy\n"
               "        return ['scipy imported', listed]\n"
               "    except ImportError:\n"
               "        return ['no scipy', listed]\n")
    r = run(sandbox, program, python=numpy_python, kwargs={"dirs": json.loads(bases.stdout)})
    assert r.status == "ok", r
    assert r.output == ["no scipy", []]


def test_env_is_read_only_for_the_candidate(sandbox, numpy_python):
    program = ("import os, sys\n"
               "def f():\n"
               "    try:\n"
               "        open(os.path.join(sys.prefix, 'planted.py'), 'w').write('x = 1')\n"
               "        return 'written'\n"
               "    except OSError as e:\n"
               "        return type(e).__name__\n")
    r = run(sandbox, program, python=numpy_python)
    assert r.status == "ok", r
    assert r.output in ("PermissionError", "OSError")
    prefix = os.path.dirname(os.path.dirname(numpy_python))
    assert not os.path.exists(os.path.join(prefix, "planted.py"))


@pytest.mark.parametrize("env", ["default", "stdlib", "numpy"])
def test_api_keys_are_absent_in_every_env(sandbox, env, request, monkeypatch):
    python = None if env == "default" else request.getfixturevalue(f"{env}_python")
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    program = (
        "import os\n"
        "def f():\n"
        "    out = {'environ': dict(os.environ)}\n"
        "    for pid in ('self', '1'):\n"
        "        try:\n"
        "            with open(f'/proc/{pid}/environ', 'rb') as fh:\n"
        "                out[pid] = fh.read().decode(errors='replace')\n"
        "        except OSError as e:\n"
        "            out[pid] = 'denied: ' + str(e)\n"
        "    print(out)\n"
        "    return out\n")
    r = run(sandbox, program, python=python)
    assert r.status == "ok", r
    for pid in ("self", "1"):  # read for real, or unreadable (not dumpable after the uid drop)
        assert "DISCOVERY_SANDBOX_TOKEN" in r.output[pid] or r.output[pid].startswith("denied")
    for key, value in SECRETS.items():
        assert key not in r.output["environ"]
        for text in (json.dumps(r.output), r.stdout, r.stderr):
            assert key not in text and value not in text


# -- input arrays -------------------------------------------------------------------------------
def _arrays():
    rng = np.random.default_rng(0)
    return {"points": rng.normal(size=(7, 3)), "ids": np.arange(5, dtype=np.int32),
            "mask": np.array([True, False, True]), "z": np.array([1 + 2j, -3j]),
            "scalar": np.array(4.5), "small": np.arange(6, dtype=np.uint8).reshape(2, 3)[:, ::2]}


DESCRIBE = (
    "import numpy as np\n"
    "def f(k, **arrays):\n"
    "    return {'k': k, 'arrays': {n: [type(a).__name__, a.dtype.str, list(a.shape),"
    " a.tolist() if a.dtype.kind != 'c' else [[v.real, v.imag] for v in a.ravel().tolist()]]\n"
    "                             for n, a in arrays.items()}}\n")


@pytest.mark.parametrize("env", ["default", "numpy"])
def test_inputs_arrive_as_keyword_arrays(sandbox, env, request):
    python = None if env == "default" else request.getfixturevalue("numpy_python")
    arrays = _arrays()
    r = run(sandbox, DESCRIBE, python=python, inputs=arrays, kwargs={"k": 3})
    assert r.status == "ok", r
    assert r.output["k"] == 3 and set(r.output["arrays"]) == set(arrays)
    for name, arr in arrays.items():
        kind, dtype, shape, values = r.output["arrays"][name]
        assert kind == "ndarray" and dtype == arr.dtype.str and shape == list(arr.shape), name
        if arr.dtype.kind == "c":
            assert values == [[v.real, v.imag] for v in arr.ravel().tolist()]
        else:
            assert values == arr.tolist(), name


def test_input_round_trip_is_exact(sandbox, numpy_python):
    x = np.random.default_rng(1).normal(size=(50, 4))
    r = run(sandbox, "def f(x):\n    return x\n", python=numpy_python, inputs={"x": x})
    assert r.status == "ok", r
    assert r.output.dtype == x.dtype and r.output.shape == x.shape
    np.testing.assert_array_equal(r.output, x)


def test_mutating_an_input_leaves_the_callers_array_unchanged(sandbox, numpy_python):
    x = np.arange(10.0)
    before = x.copy()
    program = ("def f(x):\n"
               "    x[:] = -1.0\n"
               "    x *= 2\n"
               "    open('inputs/x.npy', 'wb').write(b'garbage')\n"
               "    return 'mutated'\n")
    r = run(sandbox, program, python=numpy_python, inputs={"x": x})
    assert r.status == "ok" and r.output == "mutated", r
    np.testing.assert_array_equal(x, before)
    assert x.flags.writeable


@pytest.mark.parametrize("inputs, match", [
    ({"bad": np.array([{"a": 1}], dtype=object)}, "non-numeric dtype object"),
    ({"text": np.array(["a", "b"])}, "non-numeric dtype"),
    ({"not-an-identifier": np.zeros(2)}, "not a Python identifier"),
    ({"../escape": np.zeros(2)}, "not a Python identifier"),
    ({"1x": np.zeros(2)}, "not a Python identifier"),
    ({3: np.zeros(2)}, "not a Python identifier"),
    ({"k": np.zeros(2)}, "also given in kwargs"),
])
def test_bad_inputs_raise_before_running(sandbox, inputs, match, tmp_path, monkeypatch):
    def no_start(*args, **kwargs):
        raise AssertionError("a process was started for a bad request")

    monkeypatch.setattr(exec_mod, "execute", no_start)
    if sandbox.name == "docker":  # no host work dir: nothing may reach a container either
        _raises_before_docker_runs(sandbox, monkeypatch, match, inputs=inputs, kwargs={"k": 1})
        return
    sb = type(sandbox)(work_root=str(tmp_path))
    with pytest.raises(ValueError, match=match):
        sb.run(RunRequest(program="def f(**kw):\n    return 1\n", entrypoint="f",
                          kwargs={"k": 1}, inputs=inputs))
    assert list(tmp_path.iterdir()) == []


def _raises_before_docker_runs(sb, monkeypatch, match, **request):
    def no_run(*args, **kwargs):
        raise AssertionError("a container was used for a bad request")

    monkeypatch.setattr(sb, "_acquire", no_run)
    with pytest.raises(ValueError, match=match):
        sb.run(RunRequest(program="def f(**kw):\n    return 1\n", entrypoint="f", **request))


def test_bad_interpreter_raises_before_running(sandbox, tmp_path, monkeypatch):
    if sandbox.name == "docker":  # python is ignored there, but checked like everywhere
        _raises_before_docker_runs(sandbox, monkeypatch, "absolute path", python="python3")
        return
    sb = type(sandbox)(work_root=str(tmp_path))
    with pytest.raises(ValueError, match="absolute path"):
        sb.run(RunRequest(program="def f():\n    return 1\n", entrypoint="f",
                          python="python3"))
    assert list(tmp_path.iterdir()) == []


def test_inputs_in_a_stdlib_env_fail_clearly(sandbox, stdlib_python):
    r = run(sandbox, "def f(x):\n    return 1\n", python=stdlib_python,
            inputs={"x": np.zeros(3)})
    if sandbox.name == "docker":  # python is ignored: the image has numpy, inputs just work
        assert r.status == "ok" and r.output == 1, r
        return
    assert r.status == "error" and "inputs need numpy" in r.error, r


def test_default_and_env_interpreters_share_one_sandbox(numpy_python, stdlib_python):
    """One sandbox object serves several interpreters concurrently (views cached per python)."""
    from concurrent.futures import ThreadPoolExecutor

    from sandbox import get_sandbox

    sb = get_sandbox()
    pythons = [None, numpy_python, stdlib_python] * 3
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda p: run(sb, IMPORTS, python=p,
                                              kwargs={"names": ["numpy"]}), pythons))
    assert all(r.status == "ok" for r in results), [r.error for r in results]
    got = [r.output["numpy"] == "imported" for r in results]
    assert got == [p != stdlib_python for p in pythons]


# -- building and caching ------------------------------------------------------------------------
def test_env_layout(numpy_python, envs_dir):
    prefix = Path(numpy_python).parent.parent
    assert prefix.parent == Path(envs_dir) and prefix.name.startswith("py311-")
    site = prefix / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / \
        "site-packages"
    names = {p.name.split("-")[0].lower() for p in site.iterdir()}
    assert "numpy" in names and "pip" not in names and "setuptools" not in names
    assert (prefix / "pyvenv.cfg").read_text().count("include-system-site-packages = false")
    for dirpath, dirnames, filenames in os.walk(prefix):
        for entry in [dirpath] + [os.path.join(dirpath, n) for n in dirnames + filenames]:
            st = os.lstat(entry)
            if stat.S_ISLNK(st.st_mode):
                continue
            assert st.st_mode & stat.S_IROTH, entry
            assert not st.st_mode & stat.S_IWOTH, entry
            if stat.S_ISDIR(st.st_mode):
                assert st.st_mode & stat.S_IXOTH, entry
    assert not [p for p in os.listdir(envs_dir) if p.startswith(".build-")]


def test_cache_is_reused(numpy_python, monkeypatch):
    builds = envs.builds
    monkeypatch.setattr(envs, "_memo", {})  # as in a fresh process: only the disk cache remains
    assert candidate_python(("numpy",)) == numpy_python
    assert candidate_python(["numpy", " numpy "]) == numpy_python  # order/duplicates/space
    assert envs.builds == builds


def test_cache_is_reused_by_another_process(numpy_python):
    code = ("import sandbox.envs as e; p = e.candidate_python(('numpy',)); "
            "print(p, e.builds)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, env=dict(os.environ), check=True)
    assert out.stdout.split() == [numpy_python, "0"]


def _slow_builds(monkeypatch, delay=0.5):
    calls = []
    original = envs._build

    def slow(*args, **kwargs):
        calls.append(threading.get_ident())
        time.sleep(delay)  # widen the race window
        return original(*args, **kwargs)

    monkeypatch.setattr(envs, "_build", slow)
    return calls


def test_concurrent_first_builds_from_threads_build_once(tmp_path, monkeypatch):
    monkeypatch.setenv(ENVS_DIR_VAR, str(tmp_path))
    calls = _slow_builds(monkeypatch)
    barrier = threading.Barrier(4)
    results, errors = [], []

    def first_call():
        try:
            barrier.wait()
            results.append(candidate_python(("numpy",)))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=first_call) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(calls) == 1
    assert len(results) == 4 and len(set(results)) == 1
    assert os.path.exists(results[0]) and results[0].startswith(str(tmp_path))
    monkeypatch.setattr(envs, "_memo", {})
    assert candidate_python(("numpy",)) == results[0] and len(calls) == 1


def test_concurrent_first_builds_from_processes_build_once(tmp_path):
    code = ("import threading, time, sandbox.envs as e\n"
            "orig = e._build\n"
            "def slow(*a):\n"
            "    time.sleep(1.0)\n"
            "    return orig(*a)\n"
            "e._build = slow\n"
            "p = e.candidate_python(())\n"
            "print(p, e.builds)\n")
    env = dict(os.environ, **{ENVS_DIR_VAR: str(tmp_path)})
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, text=True) for _ in range(3)]
    outs = [p.communicate(timeout=120)[0].split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert len({o[0] for o in outs}) == 1
    assert sum(int(o[1]) for o in outs) == 1


def test_unknown_requirement_raises_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setenv(ENVS_DIR_VAR, str(tmp_path))
    name = "discovery-no-such-package-8d1f3a"
    with pytest.raises(CandidateEnvError) as info:
        candidate_python((name,))
    message = str(info.value)
    assert "\n" not in message and name in message and "fix:" in message
    assert MODE_VAR in message
    assert not [p for p in os.listdir(tmp_path) if not p.startswith(".locks")]


def test_shared_mode_returns_none(monkeypatch, tmp_path):
    monkeypatch.setenv(ENVS_DIR_VAR, str(tmp_path))
    monkeypatch.setenv(MODE_VAR, "shared")
    assert candidate_python(("numpy",)) is None
    assert list(tmp_path.iterdir()) == []


def test_pins_follow_the_platform():
    assert envs._pin("numpy") == f"numpy=={np.__version__}"
    assert envs._pin("NumPy") == f"NumPy=={np.__version__}"
    assert envs._pin("numpy>=1") == f"numpy=={np.__version__}"
    assert envs._pin("numpy>=999") == "numpy>=999"  # the platform's version is excluded
    assert envs._pin("discovery-no-such-package-8d1f3a") == "discovery-no-such-package-8d1f3a"
    assert envs._pin("discovery-platform") == "discovery-platform"  # editable: left alone


def test_build_environment_has_no_secrets(monkeypatch):
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PIP_INDEX_URL", "https://example.invalid/simple")
    env = envs._build_env()
    assert not set(SECRETS) & set(env)
    assert env["PIP_INDEX_URL"] == "https://example.invalid/simple"


def test_import_is_light():
    code = ("import sys, time; t = time.perf_counter(); import sandbox.envs; "
            "print(time.perf_counter() - t); "
            "print(','.join(m for m in ('numpy', 'importlib.metadata', 'packaging', 'venv', "
            "'pip') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, env={"PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    seconds, loaded = out.stdout.split("\n")[:2]
    assert loaded == "" and float(seconds) < 0.5


def test_process_sandbox_views_are_per_interpreter(numpy_python):
    prefixes, hidden = exec_mod.interpreter_dirs(numpy_python)
    assert os.path.dirname(os.path.dirname(numpy_python)) in prefixes
    assert os.path.realpath(sys.base_prefix) in prefixes
    assert hidden  # a venv without system site packages: the base site-packages are covered
    assert exec_mod.interpreter_dirs(numpy_python) is exec_mod.interpreter_dirs(numpy_python)
    default_prefixes, _ = exec_mod.interpreter_dirs(ProcessSandbox().python)
    assert os.path.dirname(os.path.dirname(numpy_python)) not in default_prefixes
