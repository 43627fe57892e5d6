"""What must never leave this machine in an exported dataset: secrets and its own absolute paths.

A `Privacy` knows two things and answers one question, `find_leak(text)`:

- secrets: the shapes of common credentials (OpenAI/Anthropic-style `sk-...` keys, AWS access
  key ids, GitHub, Hugging Face, Slack and Google API tokens, `Bearer <token>` headers, PEM
  private-key headers) and the literal values of this process's environment variables whose
  names contain KEY, TOKEN, SECRET or PASSWORD (values of at least 8 characters, except plain
  words of letters only shorter than 16, such as PIP_KEYRING_PROVIDER=subprocess, which would
  flag ordinary code);
- this machine's absolute paths: the home directory, the current working directory, the
  repository root, the interpreter prefix (the venv) and the temp dir, plus any extra paths
  the caller adds (the database file's folder), each matched as a path prefix inside text.

A path prefix matches only as a whole path: `/home/alice` matches in `"/home/alice/x.py"`,
`'File "/home/alice"'` and `file:///home/alice/x`, but not in `/home/alicexyz` nor in
`/srv/home/alice` (the prefix must start a path, not continue one). Generic system folders
(`/`, `/usr`, `/usr/local`, `/opt`, `/home`, ...) are never treated as private even if one
of the sources above is one of them, so `/usr/lib/python3.11/...` in a traceback, or the bwrap
sandbox's virtual `/sandbox/candidate.py`, is not a leak; the temp dir (usually `/tmp`) is, so a
traceback through `/tmp/sbx-1234/candidate.py` (the process sandbox's work dir) is.

`find_leak` returns "secret" or "absolute_path" (secrets first), never the matched text.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Iterable, Mapping

SECRET = "secret"
ABSOLUTE_PATH = "absolute_path"

# Credential shapes, each with the literal texts one of which any match contains (a fast
# `in` test that skips the regular expression on almost every text). Each is anchored so ordinary
# code and prose do not match: `sk-learn` is too short, a `{token}` placeholder has braces, and
# an `sk-` key needs a digit somewhere in it.
SECRET_PATTERNS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("sk-",), r"\bsk-(?=[A-Za-z0-9_\-]*[0-9])[A-Za-z0-9_\-]{20,}"),  # OpenAI sk-/sk-proj-, Anthropic sk-ant-
    (("AKIA", "ASIA"), r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),  # AWS access key id
    (("ghp_", "gho_", "ghu_", "ghs_", "ghr_"), r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"),  # GitHub tokens
    (("github_pat_",), r"\bgithub_pat_[A-Za-z0-9_]{22,}"),  # GitHub fine-grained token
    (("hf_",), r"\bhf_[A-Za-z0-9]{30,}\b"),  # Hugging Face
    (("xox",), r"\bxox[abprs]-[A-Za-z0-9\-]{10,}"),  # Slack
    (("AIza",), r"\bAIza[0-9A-Za-z_\-]{35}\b"),  # Google API key
    (("Bearer", "bearer", "BEARER"), r"\b(?:[Bb]earer|BEARER)[ \t]+[A-Za-z0-9\-._~+/]{20,}=*"),  # HTTP auth
    (("-----BEGIN",), r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"),  # PEM / PGP private key
)
SECRET_ENV_WORDS = ("KEY", "TOKEN", "SECRET", "PASSWORD")
MIN_SECRET_CHARS = 8

# Folders too generic to say anything about this machine, never private prefixes themselves.
GENERIC_PATHS = frozenset(
    {
        "/", "/bin", "/sbin", "/lib", "/lib64", "/usr", "/usr/bin", "/usr/lib", "/usr/local",
        "/usr/local/bin", "/usr/local/lib", "/opt", "/etc", "/var", "/var/tmp", "/home", "/Users",
        "/srv", "/mnt", "/media", "/sandbox", "/private", "/System", "/Library", "/dev", "/proc",
    }
)
_PATH_CHAR = r"A-Za-z0-9._\-~"  # characters that continue a path component


def looks_secret(value: str) -> bool:
    """True for an environment value worth treating as a secret literal (see the module docstring)."""
    value = value.strip()
    if len(value) < MIN_SECRET_CHARS:
        return False
    return not (value.isalpha() and len(value) < 16)


def _normalise(path: str | os.PathLike[str]) -> list[str]:
    """The absolute forms of `path` (as given and with symlinks resolved), without trailing '/'."""
    text = os.fspath(path).strip()
    if not text:
        return []
    out = []
    for form in (os.path.abspath(text), os.path.realpath(text)):
        form = form.rstrip("/") or "/"
        if form not in GENERIC_PATHS and form not in out:
            out.append(form)
    return out


def _repository_root() -> str | None:
    """The folder holding this package's pyproject.toml (a source checkout), if any."""
    root = Path(__file__).resolve().parents[2]
    return str(root) if (root / "pyproject.toml").is_file() else None


class Privacy:
    """Finds secrets and private absolute paths in text (see the module docstring).

    Args:
      secret_values: literal strings that are secrets (those failing `looks_secret` are ignored).
      paths: absolute path prefixes private to this machine (generic folders are ignored).
      patterns: credential shapes: (trigger literals, regular expression) pairs.
    """

    def __init__(
        self,
        secret_values: Iterable[str] = (),
        paths: Iterable[str | os.PathLike[str]] = (),
        patterns: Iterable[tuple[tuple[str, ...], str]] = SECRET_PATTERNS,
    ) -> None:
        self._patterns = [(tuple(triggers), re.compile(p)) for triggers, p in patterns]
        self._values = tuple(sorted({v.strip() for v in secret_values if looks_secret(v)}))
        prefixes: list[str] = []
        for path in paths:
            prefixes.extend(p for p in _normalise(path) if p not in prefixes)
        self.paths: tuple[str, ...] = tuple(sorted(prefixes, key=lambda p: (-len(p), p)))
        self._paths = None
        if self.paths:
            body = "|".join(re.escape(p) for p in self.paths)
            self._paths = re.compile(f"(?<![{_PATH_CHAR}])(?:{body})(?![{_PATH_CHAR}])")

    @classmethod
    def for_this_machine(
        cls,
        extra_paths: Iterable[str | os.PathLike[str]] = (),
        env: Mapping[str, str] = os.environ,
    ) -> "Privacy":
        """The secrets in `env` plus the credential shapes, and this machine's private paths."""
        values = [
            value
            for name, value in env.items()
            if any(word in name.upper() for word in SECRET_ENV_WORDS) and looks_secret(value)
        ]
        paths: list[str | os.PathLike[str]] = [
            os.path.expanduser("~"),
            os.getcwd(),
            sys.prefix,
            tempfile.gettempdir(),
        ]
        root = _repository_root()
        if root is not None:
            paths.append(root)
        home = env.get("HOME")
        if home:
            paths.append(home)
        paths.extend(extra_paths)
        return cls(secret_values=values, paths=paths)

    @classmethod
    def disabled(cls) -> "Privacy":
        """A Privacy that finds nothing (for tests of other rules)."""
        return cls(patterns=())

    def find_leak(self, text: str) -> str | None:
        """"secret", "absolute_path" or None; never the matched text itself."""
        for triggers, pattern in self._patterns:
            if any(t in text for t in triggers) and pattern.search(text):
                return SECRET
        if any(value in text for value in self._values):
            return SECRET
        if self._paths is not None and any(p in text for p in self.paths) and self._paths.search(text):
            return ABSOLUTE_PATH
        return None
