"""A cheap, deterministic, local embedding of program text (no model, no network).

A program is cut into tokens by a regular expression (identifiers and keywords, numbers,
string literals, operators; comments and whitespace are dropped), and every token n-gram for n
in `NGRAMS` is hashed into one of `DIM` buckets with a stable hash (zlib.crc32, never Python's
per-process randomised `hash()`). A second bit of the same hash gives the sign of the count, so
collisions cancel on average rather than pile up. The count vector is L2-normalised.

Programs that share most of their token n-grams get nearby vectors; so two programs that differ
in one literal are much closer than two programs written around different ideas. It is what
ExIt's diversity bonus needs (distances of a group's children from their centroid), and it
costs microseconds; it is not a semantic embedding of what the code does.
"""

from __future__ import annotations

import re
import zlib
from typing import Sequence

import numpy as np

DIM = 1024
NGRAMS = (1, 2, 3)

_TOKEN = re.compile(
    r"""
    \#[^\n]*                                   # comment (dropped)
  | (?P<string>(?:[rbuRBUfF]{0,2})(?:'''[\s\S]*?'''|\"\"\"[\s\S]*?\"\"\"|'[^'\n]*'|"[^"\n]*"))
  | (?P<number>\d[\d_]*\.?[\d_]*(?:[eE][-+]?\d+)?j?|\.\d[\d_]*(?:[eE][-+]?\d+)?j?)
  | (?P<name>[^\W\d]\w*)
  | (?P<op>\*\*=?|//=?|>>=?|<<=?|->|:=|[-+*/%@&|^=<>!]=|[^\s\w])
    """,
    re.VERBOSE,
)


def tokens(code: str) -> list[str]:
    """The tokens of `code` in order (comments and whitespace dropped)."""
    out = []
    for match in _TOKEN.finditer(code):
        if match.lastgroup is not None:  # a comment matches no named group
            out.append(match.group())
    return out


def _bucket(gram: str, dim: int) -> tuple[int, float]:
    h = zlib.crc32(gram.encode("utf-8"))
    return h % dim, (1.0 if (h >> 31) & 1 == 0 else -1.0)


def embed(code: str, dim: int = DIM, ngrams: Sequence[int] = NGRAMS) -> np.ndarray:
    """The L2-normalised hashed token n-gram vector of `code` (all zeros when it has no token)."""
    if dim < 1 or not ngrams or min(ngrams) < 1:
        raise ValueError("embed needs dim >= 1 and n-gram sizes >= 1")
    vector = np.zeros(dim, dtype=np.float64)
    toks = tokens(code)
    for n in ngrams:
        for i in range(len(toks) - n + 1):
            index, sign = _bucket("\x1f".join(toks[i : i + n]), dim)
            vector[index] += sign
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


def embed_many(codes: Sequence[str], dim: int = DIM, ngrams: Sequence[int] = NGRAMS) -> np.ndarray:
    """One row per program: `embed` of each, stacked into a (len(codes), dim) array."""
    if not codes:
        return np.zeros((0, dim), dtype=np.float64)
    return np.stack([embed(code, dim, ngrams) for code in codes])


def cosine_distance(a: np.ndarray, b: np.ndarray) -> float:
    """1 - cosine similarity of two embeddings (0 for identical directions, 1 when one is zero)."""
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 or nb == 0.0:
        return 1.0
    return 1.0 - float(np.dot(a, b)) / (na * nb)
