"""The trusted result reader on its own."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

from sandbox.result import ResultError, read_result


def test_json_with_nan_and_infinity(tmp_path):
    (tmp_path / "result.json").write_text('[NaN, Infinity, -Infinity, 1.5, {"a": null}]')
    out = read_result(str(tmp_path), 1_000_000)
    assert math.isnan(out[0]) and out[1] == math.inf and out[2] == -math.inf
    assert out[3:] == [1.5, {"a": None}]


def test_npy_round_trip(tmp_path):
    np.save(tmp_path / "result.npy", np.eye(3, dtype=np.int32), allow_pickle=False)
    out = read_result(str(tmp_path), 10_000)
    assert out.dtype == np.int32 and (out == np.eye(3)).all()


@pytest.mark.parametrize("setup, message", [
    (lambda d: None, "no result file"),
    (lambda d: (d / "result.json").write_text("[1, 2"), "result JSON is invalid"),
    (lambda d: (d / "result.json").write_text("[" * 100_000 + "]" * 100_000),
     "nested too deeply"),
    (lambda d: (d / "result.json").write_text("1" * 2_000_001), "too large"),
    (lambda d: ((d / "result.json").write_text("1"), (d / "result.npy").write_bytes(b"x")),
     "both"),
    (lambda d: (d / "result.npy").write_bytes(b"\x93NUMPY garbage"), "result array is invalid"),
    (lambda d: os.mkfifo(d / "result.json"), "not a regular file"),
    (lambda d: ((d / "x").write_text("1"), os.link(d / "x", d / "result.json")), "hard link"),
])
def test_bad_results_are_errors(tmp_path, setup, message):
    setup(tmp_path)
    with pytest.raises(ResultError, match=message):
        read_result(str(tmp_path), 1_000_000)
