"""Docker-specific behaviour of the docker sandbox backend (the hostile-candidate tests shared by
every backend are in test_sandbox.py, parametrised over process, bwrap and docker).

Needs a reachable Docker engine: skipped without one, failing in CI (see conftest.py). The image
is built locally from this machine's interpreter and numpy (sandbox/images/build.py), once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from sandbox import DockerSandbox, DockerSandboxError, Limits, RunRequest
from sandbox.docker import IMAGE_VAR, LABEL, UID
from tests.sandbox.conftest import leftovers, require_docker

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sb(docker_sandbox):
    return docker_sandbox


@pytest.fixture(scope="module")
def engine(docker_sandbox):
    """The docker-py client of the session's sandbox."""
    return docker_sandbox._docker()


def run(sb, program, entrypoint="f", kwargs=None, **limits):
    return sb.run(RunRequest(program=program, entrypoint=entrypoint, kwargs=kwargs or {},
                             limits=Limits(**{"wall_seconds": 30, **limits})))


def exists(engine, cid: str) -> bool:
    import docker

    try:
        engine.containers.get(cid)
        return True
    except docker.errors.NotFound:
        return False


def wait_gone(engine, cids, timeout=30.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        left = [c for c in cids if exists(engine, c)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


def test_root_fs_is_read_only(sb):
    program = (
        "import os, site, sys\n"
        "def f():\n"
        "    targets = ['/evil', '/etc/passwd', '/tmp/x', '/var/tmp/x', '/dev/shm/x',\n"
        "               os.path.join(site.getsitepackages()[0], 'sitecustomize.py'),\n"
        "               os.path.join(os.path.dirname(os.__file__), 'evil.py'), sys.executable]\n"
        "    out = {}\n"
        "    for t in targets:\n"
        "        try:\n"
        "            with open(t, 'a') as fh:\n"
        "                fh.write('x')\n"
        "            out[t] = 'written'\n"
        "        except OSError as e:\n"
        "            out[t] = type(e).__name__ + ': ' + os.strerror(e.errno or 0)\n"
        "    mounts = {l.split()[1]: l.split()[3] for l in open('/proc/mounts')}\n"
        "    return {'writes': out, 'root': mounts['/'], 'work': mounts['/work']}\n")
    r = run(sb, program)
    assert r.status == "ok", r
    assert all(v != "written" for v in r.output["writes"].values()), r.output
    assert r.output["root"].split(",")[0] == "ro"
    assert r.output["work"].split(",")[0] == "rw" and "noexec" in r.output["work"]


def test_candidate_is_non_root_without_capabilities(sb, engine):
    program = (
        "import os\n"
        "def f():\n"
        "    status = dict(l.split(':', 1) for l in open('/proc/self/status') if ':' in l)\n"
        "    return {'ids': [os.getuid(), os.geteuid(), os.getgid(), os.getegid()],\n"
        "            'groups': os.getgroups(),\n"
        "            'caps': {k: status[k].strip() for k in ('CapEff', 'CapPrm', 'CapBnd',"
        " 'CapAmb', 'CapInh')},\n"
        "            'nnp': status['NoNewPrivs'].strip(), 'cwd': os.getcwd()}\n")
    r = run(sb, program)
    assert r.status == "ok", r
    assert r.output["ids"] == [UID] * 4 and UID != 0
    assert set(r.output["caps"].values()) == {"0000000000000000"}, r.output["caps"]
    assert r.output["nnp"] == "1" and r.output["cwd"] == "/work"
    # the container as configured: nobody, no capabilities, read-only, no network
    cid = sb.idle_containers()[-1]
    attrs = engine.api.inspect_container(cid)
    host = attrs["HostConfig"]
    assert attrs["Config"]["User"] == f"{UID}:{UID}"
    assert host["CapDrop"] == ["ALL"] and not host.get("CapAdd")
    assert host["ReadonlyRootfs"] is True and host["NetworkMode"] == "none"
    assert host["IpcMode"] == "none" and host["Privileged"] is False
    assert any("no-new-privileges" in o for o in host["SecurityOpt"])
    assert host["PidsLimit"] == Limits().max_processes + 1
    assert host["Memory"] > Limits().memory_mb * 2**20 and host["NanoCpus"] == 10**9
    assert set(host["Tmpfs"]) == {"/work"}


def test_no_network_interfaces_but_loopback(sb):
    program = ("import socket\n"
               "def f():\n"
               "    names = sorted(n for _, n in socket.if_nameindex())\n"
               "    try:\n"
               "        socket.create_connection(('1.1.1.1', 53), timeout=2)\n"
               "        reach = 'connected'\n"
               "    except OSError as e:\n"
               "        reach = type(e).__name__\n"
               "    return [names, reach]\n")
    r = run(sb, program)
    assert r.status == "ok", r
    assert r.output[0] == ["lo"] and r.output[1] != "connected", r.output


def test_warm_container_is_reused(sb):
    program = "def f(i):\n    return i\n"
    assert run(sb, program, kwargs={"i": 0}).status == "ok"
    before, created = sb.idle_containers(), sb.created
    ids = []
    for i in range(1, 6):
        r = run(sb, program, kwargs={"i": i})
        assert r.status == "ok" and r.output == i, r
        ids.append(sb.idle_containers()[-1])
    assert sb.created == created, "a warm container was not reused"
    assert len(set(ids)) == 1 and ids[0] in before


def test_leftovers_never_reach_the_next_run(sb):
    """Files in the work dir, a detached background process, attempts at /tmp and at IPC
    objects: none of it survives into the next evaluation in the same container."""
    marker = f"sbx-marker-{uuid.uuid4().hex}"
    hostile = (
        "import ctypes, os, subprocess, sys\n"
        "def f(marker):\n"
        "    open('cached_answer.json', 'w').write('[42]')\n"
        "    os.makedirs('deep/er', exist_ok=True)\n"
        "    open('deep/er/x', 'w').write('x')\n"
        "    os.chmod('deep/er', 0)\n"
        "    os.chmod('deep', 0)\n"
        "    for p in ('/tmp/cache', '/dev/shm/cache', '/var/tmp/cache'):\n"
        "        try:\n"
        "            open(p, 'w').write('x')\n"
        "        except OSError:\n"
        "            pass\n"
        "    libc = ctypes.CDLL(None, use_errno=True)\n"
        "    ipc = [libc.shmget(4242, 4096, 0o1666), libc.msgget(4242, 0o1666),\n"
        "           libc.semget(4242, 1, 0o1666)]\n"
        "    subprocess.Popen([sys.executable, '-c', 'import time\\nwhile True: time.sleep(1)',"
        " marker], start_new_session=True, env={})\n"
        "    if os.fork() == 0:\n"
        "        os.setsid()\n"
        "        os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(600)',"
        " marker])\n"
        "    return ipc\n")
    r = run(sb, hostile, kwargs={"marker": marker})
    assert r.status == "ok", r
    assert r.output == [-1, -1, -1], "IPC objects could be created"
    container = sb.idle_containers()[-1]
    probe = (
        "import ctypes, os\n"
        "def f():\n"
        "    procs = []\n"
        "    for p in os.listdir('/proc'):\n"
        "        if p.isdigit():\n"
        "            procs.append(open(f'/proc/{p}/cmdline', 'rb').read().decode())\n"
        "    libc = ctypes.CDLL(None, use_errno=True)\n"
        "    return {'work': sorted(os.listdir('.')), 'procs': procs,\n"
        "            'tmp': sorted(os.listdir('/tmp')), 'shm': libc.shmget(4242, 0, 0)}\n")
    r = run(sb, probe)
    assert r.status == "ok", r
    assert sb.idle_containers()[-1] == container, "the same warm container must serve it"
    assert r.output["work"] == ["args.json", "candidate.py", "runner.py"]
    assert r.output["tmp"] == [] and r.output["shm"] == -1
    assert not any(marker in c for c in r.output["procs"]), r.output["procs"]
    assert len(r.output["procs"]) == 2  # the supervisor and this runner
    assert leftovers(marker) == []


def test_tampering_with_the_supervisor_discards_the_container(sb):
    """The candidate shares the supervisor's uid: signals to pid 1 are not delivered, its memory,
    fds and environment are unreadable, and whatever it can change on it (nice value, rlimits,
    CPU affinity) is detected afterwards and costs the container, not a later evaluation."""
    probe = (
        "import os, signal\n"
        "def f():\n"
        "    out = {}\n"
        "    for sig in (signal.SIGKILL, signal.SIGSTOP, signal.SIGTERM):\n"
        "        os.kill(1, sig)\n"
        "    for p in ('/proc/1/environ', '/proc/1/mem', '/proc/1/fd'):\n"
        "        try:\n"
        "            os.listdir(p) if p.endswith('fd') else open(p, 'rb').read(1)\n"
        "            out[p] = 'read'\n"
        "        except OSError as e:\n"
        "            out[p] = type(e).__name__\n"
        "    return out\n")
    r = run(sb, probe)
    assert r.status == "ok", r
    assert set(r.output.values()) == {"PermissionError"}, r.output
    container = sb.idle_containers()[-1]  # still clean: kept
    tampers = [
        "import os\ndef f():\n    os.setpriority(os.PRIO_PROCESS, 1, 5)\n    return 1\n",
        "import resource\ndef f():\n    resource.prlimit(1, resource.RLIMIT_CORE, (0, 0))\n"
        "    resource.prlimit(1, resource.RLIMIT_NPROC, (3, 3))\n    return 1\n",
    ]
    if len(os.sched_getaffinity(0)) > 1:
        tampers.append("import os\ndef f():\n    os.sched_setaffinity(1, {0})\n    return 1\n")
    for program in tampers:
        created = sb.created
        r = run(sb, program)
        assert r.status == "ok", r  # the candidate's own run is fine ...
        assert container not in sb.live_containers(), program  # ... but its container is gone
        r = run(sb, "import os\ndef f():\n    return os.getpriority(os.PRIO_PROCESS, 1)\n")
        assert r.status == "ok" and r.output == 0, r
        assert sb.created == created + 1
        container = sb.idle_containers()[-1]


def test_timeout_kills_everything_and_cleans_the_container(sb):
    marker = f"sbx-marker-{uuid.uuid4().hex}"
    program = (
        "import subprocess, sys\n"
        "def f(marker):\n"
        "    subprocess.Popen([sys.executable, '-c', 'while True: pass', marker],"
        " start_new_session=True)\n"
        "    while True:\n"
        "        pass\n")
    assert run(sb, "def f():\n    return 0\n").status == "ok"
    container, created = sb.idle_containers()[-1], sb.created
    r = run(sb, program, kwargs={"marker": marker}, wall_seconds=1.5, cpu_seconds=60)
    assert r.status == "timeout" and "wall-clock" in r.error, r
    assert 1.5 <= r.duration_s < 10 and r.cpu_s > 0.5
    assert leftovers(marker) == []
    # cleaned and verified, so reused
    assert sb.idle_containers()[-1] == container and sb.created == created
    r = run(sb, "import os\ndef f():\n    return [p for p in os.listdir('/proc') if p.isdigit()]\n")
    assert r.status == "ok" and len(r.output) == 2, r


def test_unanswering_supervisor_costs_the_container(docker_sandbox):
    """If the supervisor cannot answer (here: the container is frozen from outside), the host's
    own deadline ends the run as a timeout and removes the container."""
    sb = DockerSandbox(docker_sandbox.image_tag(), host_grace_s=1.0)
    try:
        assert run(sb, "def f():\n    return 0\n").status == "ok"
        cid = sb.idle_containers()[0]
        api = sb._docker().api
        timer = threading.Timer(0.5, api.pause, args=(cid,))
        timer.start()
        r = run(sb, "def f():\n    while True:\n        pass\n", wall_seconds=1, cpu_seconds=60)
        timer.join()
        assert r.status == "timeout" and "container was removed" in r.error, r
        assert r.duration_s < 10
        assert wait_gone(sb._docker(), [cid]) == []
        assert run(sb, "def f():\n    return 1\n").output == 1
    finally:
        sb.close()


def test_lost_supervisor_is_an_error_and_costs_the_container(docker_sandbox):
    sb = DockerSandbox(docker_sandbox.image_tag())
    try:
        assert run(sb, "def f():\n    return 0\n").status == "ok"
        cid = sb.idle_containers()[0]
        api = sb._docker().api
        timer = threading.Timer(0.5, api.kill, args=(cid,))
        timer.start()
        r = run(sb, "import time\ndef f():\n    time.sleep(5)\n")
        timer.join()
        assert r.status == "error" and "supervisor was lost" in r.error, r
        assert cid not in sb.live_containers()
        # an idle container killed from outside is replaced transparently
        assert run(sb, "def f():\n    return 1\n").output == 1
        cid = sb.idle_containers()[0]
        api.kill(cid)
        time.sleep(0.5)
        r = run(sb, "def f():\n    return 2\n")
        assert r.status == "ok" and r.output == 2, r
        assert cid not in sb.live_containers()
    finally:
        sb.close()


def test_oom_kill_is_status_killed(sb):
    """Processes each under RLIMIT_AS but together over the container's memory: the kernel's
    OOM killer ends them, and the run says so."""
    program = (
        "import os, time\n"
        "def f():\n"
        "    pids = []\n"
        "    for _ in range(8):\n"
        "        pid = os.fork()\n"
        "        if pid == 0:\n"
        "            b = bytearray(120 * 2**20)\n"
        "            for j in range(0, len(b), 4096):\n"
        "                b[j] = 1\n"
        "            time.sleep(5)\n"
        "            os._exit(0)\n"
        "        pids.append(pid)\n"
        "    dead = [os.WIFSIGNALED(os.waitpid(p, 0)[1]) for p in pids]\n"
        "    if any(dead):\n"
        "        raise RuntimeError(f'{sum(dead)} children were killed')\n"
        "    return 0\n")
    r = run(sb, program, memory_mb=200)
    assert r.status == "killed", r
    assert r.error.startswith("memory limit"), r
    assert run(sb, "def f():\n    return 1\n", memory_mb=200).output == 1


def test_request_python_is_ignored(sb):
    """The image defines the candidate environment; RunRequest.python (a host path) is checked
    but not used."""
    r = sb.run(RunRequest(program="import sys\ndef f():\n    return sys.executable\n",
                          entrypoint="f", python=sys.executable))
    assert r.status == "ok" and r.output.startswith("/usr/"), r
    with pytest.raises(ValueError):
        sb.run(RunRequest(program="def f():\n    return 1\n", entrypoint="f",
                          python="relative/python"))


def test_inputs_cross_as_npy(sb):
    import numpy as np

    x = np.arange(12, dtype=np.int32).reshape(3, 4)
    r = sb.run(RunRequest(program="def f(x, k):\n    x *= 0\n    return (x + k).tolist()\n",
                          entrypoint="f", kwargs={"k": 1}, inputs={"x": x}))
    assert r.status == "ok" and r.output == [[1] * 4] * 3, r
    assert x.sum() == 66  # the candidate changed its copy only


def test_no_host_environment_or_docker_proxy_config(docker_sandbox, tmp_path, monkeypatch):
    """Neither the host's environment nor docker-py's configured proxies reach a container."""
    secret = "sk-docker-secret-456"
    config = tmp_path / "docker-config"
    config.mkdir()
    (config / "config.json").write_text(json.dumps(
        {"proxies": {"default": {"httpProxy": f"http://{secret}@proxy:3128",
                                 "noProxy": secret}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    sb = DockerSandbox(docker_sandbox.image_tag())
    try:
        r = run(sb, "import os\ndef f():\n    return dict(os.environ)\n")
        assert r.status == "ok", r
        assert secret not in json.dumps(r.output)
        env = sb._docker().api.inspect_container(sb.idle_containers()[0])["Config"]["Env"]
        assert secret not in json.dumps(env), env
    finally:
        sb.close()


def test_cold_mode_uses_a_fresh_container_per_run(docker_sandbox):
    sb = DockerSandbox(docker_sandbox.image_tag(), reuse=False)
    try:
        for i in range(2):
            r = run(sb, "def f(i):\n    return i\n", kwargs={"i": i})
            assert r.status == "ok" and r.output == i, r
            assert sb.live_containers() == [] and sb.idle_containers() == []
        assert sb.created == 2
    finally:
        sb.close()


def test_containers_are_removed_on_close(docker_sandbox):
    sb = DockerSandbox(docker_sandbox.image_tag())
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda i: run(sb, "import time\ndef f(i):\n    time.sleep(0.3)\n"
                                                  "    return i\n", kwargs={"i": i}), range(2)))
    assert [r.output for r in results] == [0, 1]
    ids = sb.live_containers()
    assert len(ids) == 2
    sb.close()
    engine = docker_sandbox._docker()
    assert wait_gone(engine, ids) == []
    with pytest.raises(DockerSandboxError, match="closed"):
        run(sb, "def f():\n    return 0\n")


@pytest.mark.parametrize("ending", ["exit", "sigkill"])
def test_containers_go_away_with_the_platform_process(docker_sandbox, ending):
    """At interpreter exit the sandbox removes its containers; a platform process killed
    outright leaves containers whose supervisor sees its attach close and ends them."""
    script = (
        "import os, signal, sys\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "from sandbox import DockerSandbox, RunRequest\n"
        f"sb = DockerSandbox({docker_sandbox.image_tag()!r})\n"
        "r = sb.run(RunRequest(program='def f():\\n    return 1\\n', entrypoint='f'))\n"
        "assert r.status == 'ok', r\n"
        "print(sb.live_containers()[0], flush=True)\n"
        f"if {ending == 'sigkill'!r}:\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120)
    cid = out.stdout.strip()
    assert cid, out.stderr
    assert wait_gone(docker_sandbox._docker(), [cid]) == []


def test_concurrent_runs_use_separate_containers(sb):
    """Evaluations from threads never share a container; a hostile one does not disturb the
    others running at the same time."""
    program = ("import os, time\n"
               "def f(i):\n"
               "    open(f'mine-{i}', 'w').write('x')\n"
               "    time.sleep(0.2)\n"
               "    return [i, sorted(os.listdir('.'))]\n")
    bomb = ("import os\n"
            "def f(i):\n"
            "    while True:\n"
            "        try:\n"
            "            os.fork()\n"
            "        except OSError:\n"
            "            pass\n")

    def one(i):
        if i == 3:
            return run(sb, bomb, kwargs={"i": i}, max_processes=16, wall_seconds=2)
        return run(sb, program, kwargs={"i": i})

    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(one, range(9)))
    assert results[3].status in ("timeout", "killed"), results[3]
    for i, r in enumerate(results):
        if i == 3:
            continue
        assert r.status == "ok", r
        assert r.output == [i, ["args.json", "candidate.py", f"mine-{i}", "runner.py"]]
    assert leftovers() == []


def test_bad_image_raises(docker_sandbox):
    sb = DockerSandbox(f"discovery-sandbox:no-such-image-{uuid.uuid4().hex[:8]}")
    try:
        with pytest.raises(DockerSandboxError, match="could not create"):
            run(sb, "def f():\n    return 0\n")
    finally:
        sb.close()


def test_image_from_environment(monkeypatch, docker_sandbox):
    monkeypatch.setenv(IMAGE_VAR, docker_sandbox.image_tag())
    sb = DockerSandbox()
    try:
        assert sb.image_tag() == docker_sandbox.image_tag()
    finally:
        sb.close()


def test_local_image_is_cached_and_labelled(docker_sandbox):
    from sandbox.images.build import LABEL as IMAGE_LABEL
    from sandbox.images.build import ensure_local_image, image_tag

    tag = ensure_local_image()
    assert tag == image_tag() == docker_sandbox.image_tag()
    image = docker_sandbox._docker().images.get(tag)
    assert image.labels.get(IMAGE_LABEL) == "local"
    start = time.monotonic()
    assert ensure_local_image() == tag
    assert time.monotonic() - start < 1.0


def test_containers_carry_the_owner_label(sb, engine):
    assert run(sb, "def f():\n    return 0\n").status == "ok"
    labels = engine.api.inspect_container(sb.idle_containers()[-1])["Config"]["Labels"]
    assert labels[LABEL] == "1" and labels[f"{LABEL}.owner"].endswith(f":{os.getpid()}")


def test_require_docker_fails_in_ci_without_an_engine(monkeypatch):
    """In CI the docker tests never skip: an unreachable engine fails them."""
    require_docker()  # an engine is reachable here (else this test is skipped)
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="must run in CI"):
        require_docker()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        require_docker()


def test_each_problem_runs_in_an_image_of_its_own_requirements(docker_sandbox):
    """A problem declaring no requirements gets a stdlib-only image: numpy is not importable
    there, while the default (numpy) image has it; a request naming an image runs in that image."""
    probe = "def f():\n    try:\n        import numpy\n        return 'numpy'\n    except ImportError:\n        return 'none'\n"
    sb = DockerSandbox()
    try:
        stdlib = sb.run(RunRequest(program=probe, entrypoint="f", requirements=()))
        numpy = sb.run(RunRequest(program=probe, entrypoint="f", requirements=("numpy",)))
        assert (stdlib.status, stdlib.output) == ("ok", "none")
        assert (numpy.status, numpy.output) == ("ok", "numpy")
        tags = {sb.image_tag(RunRequest(program=probe, entrypoint="f", requirements=r)) for r in [(), ("numpy",)]}
        assert len(tags) == 2 and docker_sandbox.image_tag() in tags
        named = RunRequest(program=probe, entrypoint="f", requirements=(), image=docker_sandbox.image_tag())
        assert sb.image_tag(named) == docker_sandbox.image_tag()
        assert sb.run(named).output == "numpy"  # the named image wins over the requirements
    finally:
        sb.close()


def test_evaluate_passes_the_problems_requirements_and_image():
    from problems import get_problem
    from problems.evaluate import candidate_request

    problem = get_problem("erdos_min_overlap")
    request = candidate_request(problem, problem.seed_program)
    assert request.requirements == tuple(problem.requirements) and request.image == problem.docker_image is None
