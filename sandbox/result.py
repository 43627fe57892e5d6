"""Trusted side: read the candidate's result file back as plain data.

The work dir belongs to the candidate, so the file may be forged, a symlink, a hard link to a
file the candidate cannot read, a FIFO or huge. It is opened without following symlinks, must be
a regular file with a single link, is size-capped, and is parsed only as JSON or as a NumPy array
with allow_pickle=False. Any problem is an error string, never an exception.
"""

from __future__ import annotations

import io
import json
import os
import stat
from typing import Any

RESULT_JSON = "result.json"
RESULT_NPY = "result.npy"


class ResultError(Exception):
    """The result file is missing, unsafe or unreadable (message is one line)."""


def _read_capped(path: str, max_bytes: int) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ResultError("no result file") from None
    except OSError as exc:
        raise ResultError(f"result file cannot be opened ({exc.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ResultError("result file is not a regular file")
        if st.st_nlink != 1:
            raise ResultError("result file is a hard link")
        if st.st_size > max_bytes:
            raise ResultError(f"result file too large ({st.st_size} > {max_bytes} bytes)")
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:
                raise ResultError(f"result file too large (> {max_bytes} bytes)")
        return b"".join(chunks)
    finally:
        os.close(fd)


def parse_json(data: bytes) -> Any:
    """JSON with NaN/Infinity/-Infinity tokens parsed as floats (the scorer rejects them)."""
    try:
        return json.loads(data.decode("utf-8"))
    except RecursionError:
        raise ResultError("result JSON is nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise ResultError(f"result JSON is invalid ({str(exc).splitlines()[0][:200]})") from None


def parse_npy(data: bytes) -> Any:
    """A numeric ndarray from .npy bytes; pickled (object) arrays are refused."""
    import numpy as np

    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - any malformed file is just a bad result
        msg = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise ResultError(f"result array is invalid ({msg})") from None
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "biufc":
        raise ResultError(f"result array has non-numeric dtype {getattr(arr, 'dtype', '?')}")
    return arr


def read_result(work_dir: str, max_bytes: int) -> Any:
    """Returns the entrypoint's return value; raises ResultError with a one-line reason."""
    npy, js = os.path.join(work_dir, RESULT_NPY), os.path.join(work_dir, RESULT_JSON)
    has_npy, has_json = os.path.lexists(npy), os.path.lexists(js)
    if has_npy and has_json:
        raise ResultError("both result.npy and result.json present")
    if has_npy:
        return parse_npy(_read_capped(npy, max_bytes))
    return parse_json(_read_capped(js, max_bytes))
