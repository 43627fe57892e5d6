"""A separate virtual environment holding a peer system for side-by-side benchmarks.

The peer (OpenEvolve, from PyPI) is installed into `<repo>/.bench-venvs/<name>`, never into the
project's own environment, so nothing is added to the project's dependencies. The venv is
created on first use and reused afterwards (reinstalled only when the pinned version is missing).

    python bench/peer_venv.py            # creates/reuses .bench-venvs/openevolve, prints its python
"""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENVS = REPO / ".bench-venvs"
OPENEVOLVE = "openevolve==0.4.0"


def venv_python(root: Path) -> Path:
    """The interpreter of the venv at `root`."""
    return root / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def installed_version(python: Path, distribution: str) -> str | None:
    """The version of `distribution` installed for `python`, or None."""
    if not python.exists():
        return None
    probe = ("import importlib.metadata as m, sys\n"
             "try: print(m.version(sys.argv[1]))\n"
             "except m.PackageNotFoundError: pass\n")
    out = subprocess.run([str(python), "-c", probe, distribution], capture_output=True, text=True)
    return out.stdout.strip() or None


def ensure_peer_venv(requirement: str = OPENEVOLVE, name: str = "openevolve") -> Path:
    """Creates (or reuses) `.bench-venvs/<name>` with `requirement` installed; returns its python.

    Raises SystemExit with a one-line message naming the fix when the install fails.
    """
    root = VENVS / name
    python = venv_python(root)
    distribution, _, version = requirement.partition("==")
    have = installed_version(python, distribution)
    if have is not None and (not version or have == version):
        return python
    if not python.exists():
        try:
            venv.EnvBuilder(with_pip=True, clear=True).create(root)
        except (OSError, subprocess.CalledProcessError) as exc:
            raise SystemExit(f"peer venv: creating {root} failed ({exc}); fix: install the python3-venv "
                             f"package (ensurepip) for {sys.executable}, or delete {root} and re-run") from None
    cmd = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", requirement]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise SystemExit(f"peer venv: `{' '.join(cmd)}` failed ({last}); fix: check that PyPI is "
                         f"reachable (proxy/PIP_INDEX_URL), or delete {root} and re-run")
    return python


if __name__ == "__main__":
    print(ensure_peer_venv())
