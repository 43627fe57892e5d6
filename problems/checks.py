"""Checks shared by the trusted scorers: how a rejection is raised and reported, the helpers its
messages use, and the reader for a candidate's flat vector of real numbers.

A scorer raises `Rejected(check, message, **where)` at the first failed check and turns it into
its invalid Evaluation with `rejected.evaluation(EVALUATOR_VERSION)`: metrics {"check": check,
**where}, feedback "invalid (<check> check): <message>".

`Vector` reads what construct() returned when the answer is the n values of a step function (a
1-D list, tuple or numpy array of reals): only the values are read, so n is their count and
nothing the candidate claims is used. What differs between problems (the symbol in messages, the
size cap, the wording) is a field of the Vector; the checks themselves are the same for all.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from discovery.types import INVALID, Evaluation

# numpy dtype kinds accepted as real numbers (not bool, complex, str, object); floats at most
# 64-bit, so that no float128 is silently rounded.
ACCEPTED_KINDS = {"f": "float", "i": "integer", "u": "unsigned integer"}


class Rejected(Exception):
    """A check failed; carries the feedback line and the metrics that locate the failure."""

    def __init__(self, check: str, message: str, **where: Any) -> None:
        super().__init__(message)
        self.check = check
        self.message = message
        self.where = where

    def evaluation(self, evaluator_version: str) -> Evaluation:
        """The invalid Evaluation that reports this failure."""
        return Evaluation(
            status=INVALID,
            metrics={"check": self.check, **self.where},
            feedback=f"invalid ({self.check} check): {self.message}",
            evaluator_version=evaluator_version,
        )


def describe(value: Any) -> str:
    """repr(value), cut to at most 60 characters for feedback."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def plural(k: int, noun: str) -> str:
    """k and the noun, plural unless k is 1: "1 value", "3 values"."""
    return f"{k} {noun}" if k == 1 else f"{k} {noun}s"


def is_real(item: Any) -> bool:
    """True for a Python or numpy int or float; False for bools and everything else."""
    return not isinstance(item, (bool, np.bool_)) and isinstance(
        item, (int, float, np.integer, np.floating)
    )


def check_dtype(array: np.ndarray, entrypoint: str) -> None:
    """Rejects arrays whose dtype is not a real number type of at most 64 bits."""
    kind = array.dtype.kind
    if kind not in ACCEPTED_KINDS or (kind == "f" and array.dtype.itemsize > 8):
        raise Rejected(
            "dtype",
            f"{entrypoint}() returned an array of dtype {array.dtype}; return real numbers "
            f"(float64, float32 or integers), not booleans, complex numbers, strings or objects.",
            dtype=str(array.dtype),
        )


@dataclasses.dataclass(frozen=True)
class Vector:
    """Reads a candidate's flat vector of n real values into a finite float64 array.

    symbol: the vector's name in messages ("h" gives "h[3] = ..." and "the n values of h").
    max_size: the most values accepted (n >= 1 always).
    entrypoint: the candidate's function, named in messages ("construct").
    derived: ends the wrong-type message after "Only the values are read: ", saying what is
        computed from the values alone (e.g. "n and the piece width 2/n come from their count,
        and no claimed bound or count is ever used.").
    overflow_check, overflow_rule: the check failed, and the text after "h[i] = <value> ", when
        a list item is a Python int too large for a float.
    finite_rule: ends the message for a NaN or infinite value (e.g. "every value must be a
        finite real in [0, 1].").
    """

    symbol: str
    max_size: int
    entrypoint: str
    derived: str
    overflow_check: str
    overflow_rule: str
    finite_rule: str

    def read(self, output: Any) -> np.ndarray:
        """The values as a finite float64 vector, or raises Rejected saying why not."""
        if isinstance(output, np.ndarray):
            values = self._array_values(output)
        elif isinstance(output, (list, tuple)):
            values = self._list_values(output)
        else:
            raise Rejected(
                "type",
                f"{self.entrypoint}() must return a 1-D list or numpy array of the n values of "
                f"{self.symbol}; got {type(output).__name__} {describe(output)}. Only the values "
                f"are read: {self.derived}",
                type=type(output).__name__,
            )
        self._check_finite(values)
        return values

    def _check_size(self, n: int) -> None:
        if n == 0:
            raise Rejected(
                "empty",
                f"{self.entrypoint}() returned no values; return n >= 1 values of {self.symbol}.",
                n=0,
            )
        if n > self.max_size:
            raise Rejected(
                "size",
                f"{self.entrypoint}() returned {n} values; at most {self.max_size} pieces are "
                f"accepted.",
                n=n,
            )

    def _array_values(self, array: np.ndarray) -> np.ndarray:
        if array.ndim != 1:
            raise Rejected(
                "shape",
                f"{self.entrypoint}() returned a {array.ndim}-D array of shape {array.shape}; "
                f"return a flat 1-D array of the n values of {self.symbol}.",
                shape=list(array.shape),
            )
        check_dtype(array, self.entrypoint)
        self._check_size(array.size)
        return array.astype(np.float64)

    def _list_values(self, items: list | tuple) -> np.ndarray:
        self._check_size(len(items))
        s = self.symbol
        values = np.empty(len(items), dtype=np.float64)
        for i, item in enumerate(items):
            if not is_real(item):
                kind = type(item).__name__
                nested = isinstance(item, (list, tuple, dict))
                hint = "return a flat 1-D list of" if nested else "return only real numbers:"
                raise Rejected(
                    "type",
                    f"{s}[{i}] is a {kind} ({describe(item)}); {hint} the n values of {s}, "
                    f"nothing else.",
                    index=i,
                    type=kind,
                )
            try:
                values[i] = float(item)
            except OverflowError:
                raise Rejected(
                    self.overflow_check,
                    f"{s}[{i}] = {describe(item)} {self.overflow_rule}",
                    index=i,
                ) from None
        return values

    def _check_finite(self, values: np.ndarray) -> None:
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            i = int(bad[0])
            raise Rejected(
                "finite",
                f"{self.symbol}[{i}] = {float(values[i])!r} is not finite "
                f"({plural(bad.size, 'non-finite value')}); {self.finite_rule}",
                index=i,
                value=repr(float(values[i])),  # a string: NaN and inf are not valid JSON numbers
                count=int(bad.size),
            )
