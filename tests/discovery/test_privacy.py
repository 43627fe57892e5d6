"""Privacy: secrets and this machine's absolute paths are found; look-alikes are not."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

import discovery
from discovery.export.privacy import ABSOLUTE_PATH, SECRET, Privacy, looks_secret

AWS = "AKIA" + "ABCDEFGHIJKLMNOP"  # split so the source itself holds no key-shaped literal
GITHUB = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
HF = "hf_" + "AbCdEfGhIjKlMnOpQrStUvWxYz012345"


@pytest.mark.parametrize(
    "text",
    [
        "key = 'sk-" + "proj-Ab3dEfGhIjKlMnOpQrStUvWx'",
        "ANTHROPIC=sk-" + "ant-api03-Zz9yXwVuTsRqPoNmLkJi",
        f"aws_access_key_id={AWS}",
        f"token: {GITHUB}",
        "github_pat_" + "11ABCDEFG0123456789_abcdefghijklmnop",
        f"login({HF!r})",
        "Authorization: Bearer " + "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abc",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIE...",
        "-----BEGIN OPENSSH PRIVATE KEY-----",
        "-----BEGIN PRIVATE KEY-----",
    ],
)
def test_secret_shapes_are_found(text):
    assert Privacy().find_leak(text) == SECRET


@pytest.mark.parametrize(
    "text",
    [
        "from sklearn.linear_model import Lasso  # sk-learn",
        "task-specific-parameters-for-the-solver",  # 'sk-' inside a word, no digit
        "the disk-based cache is a bottleneck here",
        "headers = {'Authorization': f'Bearer {token}'}",
        "A bearer of bad news",
        "-----BEGIN PUBLIC KEY-----",
        "AKIA is not a key by itself",
        "hf_hub_download(repo_id=repo)",
        "x = 0.123456789012345678901234567890",
    ],
)
def test_ordinary_text_is_not_a_secret(text):
    assert Privacy().find_leak(text) is None


def test_environment_values_are_secrets_whatever_their_shape():
    env = {
        "MY_SERVICE_API_KEY": "xq7-Zr2pLm9wQvTt44",
        "DB_PASSWORD": "hunter22",
        "SHORT_TOKEN": "abc123",  # too short
        "PIP_KEYRING_PROVIDER": "subprocess",  # a plain word: would flag ordinary code
        "PATH": "/usr/bin:/bin",  # not a secret-named variable
        "github_token": "lower-case-name-42",  # names match case-insensitively
    }
    privacy = Privacy.for_this_machine(env=env)
    assert privacy.find_leak("client = Client('xq7-Zr2pLm9wQvTt44')") == SECRET
    assert privacy.find_leak("password = 'hunter22'") == SECRET
    assert privacy.find_leak("token lower-case-name-42 here") == SECRET
    assert privacy.find_leak("x = 'abc123'") is None
    assert privacy.find_leak("import subprocess\nsubprocess.run(cmd)") is None
    assert privacy.find_leak("/usr/bin:/bin") is None


def test_looks_secret():
    assert looks_secret("hunter22") and looks_secret("correcthorsebatterystaple")
    assert not looks_secret("subprocess") and not looks_secret("short") and not looks_secret("        ")


def test_find_leak_never_returns_the_secret():
    privacy = Privacy.for_this_machine(env={"X_TOKEN": "s3cr3t-value-99"})
    assert privacy.find_leak("value s3cr3t-value-99") == "secret"


def test_this_machines_paths(tmp_path):
    home = os.path.expanduser("~")
    privacy = Privacy.for_this_machine(extra_paths=[tmp_path / "db"], env={})
    # home, cwd, interpreter prefix, temp dir, repository root, extra paths
    for path in (home, os.getcwd(), sys.prefix, tempfile.gettempdir(), str(tmp_path / "db")):
        if path.rstrip("/") in ("", "/"):
            continue
        assert privacy.find_leak(f'File "{path}/x.py", line 3') == ABSOLUTE_PATH, path
    root = Path(discovery.__file__).resolve().parents[1]  # the repository root
    assert privacy.find_leak(f"{root}/discovery/export/shape.py") == ABSOLUTE_PATH


def test_path_prefixes_match_whole_paths_only():
    privacy = Privacy(paths=["/home/alice", "/work/main"])
    for text in (
        "/home/alice",
        'File "/home/alice/proj/x.py", line 1',
        "see file:///home/alice/notes.txt",
        "cd /work/main && make",
        "(/work/main/.venv/lib/python3.11/site-packages/numpy/core.py)",
        "'/home/alice'",
    ):
        assert privacy.find_leak(text) == ABSOLUTE_PATH, text
    for text in (
        "/home/alicexyz/file",  # another user
        "/srv/home/alice/file",  # a different path that merely contains the prefix
        "/work/mainline/x",
        "home/alice/x",  # relative
        'File "/sandbox/candidate.py", line 12',  # the bwrap sandbox's virtual path
        'File "/usr/lib/python3.11/json/decoder.py", line 337',
        "/opt/conda/lib/python3.11/site-packages/numpy/__init__.py",
    ):
        assert privacy.find_leak(text) is None, text


def test_generic_folders_are_never_private():
    # even when home, the prefix or the cwd is one of them (a container running as root in /)
    privacy = Privacy(paths=["/", "/usr", "/usr/local", "/home", "/tmp/../usr", "/sandbox"])
    assert privacy.paths == ()
    assert privacy.find_leak('File "/usr/lib/python3/x.py"; /sandbox/candidate.py; /home/x') is None


def test_temp_dir_paths_are_private():
    privacy = Privacy(paths=["/tmp"])
    assert privacy.find_leak('File "/tmp/sbx-1234/candidate.py", line 3') == ABSOLUTE_PATH
    assert privacy.find_leak("/tmpfoo/x") is None


def test_symlinked_paths_match_in_both_forms(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    privacy = Privacy(paths=[link])
    assert privacy.find_leak(f"{link}/a.py") == ABSOLUTE_PATH
    assert privacy.find_leak(f"{real}/a.py") == ABSOLUTE_PATH


def test_disabled_finds_nothing():
    assert Privacy.disabled().find_leak(f"{AWS} /home/alice") is None
