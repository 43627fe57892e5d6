"""The local program embedding: deterministic, normalised, and closer for similar programs."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import numpy as np
import pytest

from discovery.embedding import DIM, cosine_distance, embed, embed_many, tokens

from tests.discovery.fakes import TOY

LOOP = '''
def solve(n):
    total = 0
    for i in range(n):
        total += i * i
    return total
'''

LOOP_TWEAKED = LOOP.replace("i * i", "i * i * 2")

RECURSIVE = '''
import functools

@functools.lru_cache(maxsize=None)
def fib(k):
    return k if k < 2 else fib(k - 1) + fib(k - 2)

def solve(n):
    return sum(fib(k) for k in range(n)) / max(n, 1)
'''


def test_tokens_drop_comments_and_whitespace():
    assert tokens("x = 1.5e3  # note\nif x >= 2: print('a b')") == [
        "x", "=", "1.5e3", "if", "x", ">=", "2", ":", "print", "(", "'a b'", ")",
    ]


def test_embedding_is_normalised_and_deterministic_across_processes():
    vector = embed(LOOP)
    assert vector.shape == (DIM,) and np.linalg.norm(vector) == pytest.approx(1.0)
    assert np.array_equal(vector, embed(LOOP))
    # A new interpreter has a different hash() salt; the embedding must not change.
    script = (
        "import sys; from discovery.embedding import embed; "
        "v = embed(sys.stdin.read()); print(repr([round(float(x), 12) for x in v if x]))"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", script], input=LOOP, capture_output=True, text=True, check=True,
            env={"PYTHONHASHSEED": salt, "PATH": ""}, cwd=str(pathlib.Path(__file__).parents[2]),
        ).stdout
        for salt in ("1", "2")
    }
    assert len(outputs) == 1
    assert outputs.pop().strip() == repr([round(float(x), 12) for x in vector if x])


def test_similar_programs_are_closer_than_dissimilar_ones():
    base, tweaked, other = embed(LOOP), embed(LOOP_TWEAKED), embed(RECURSIVE)
    assert cosine_distance(base, tweaked) < cosine_distance(base, other)
    assert np.linalg.norm(base - tweaked) < np.linalg.norm(base - other)
    a1, a2 = embed(TOY), embed(TOY.replace("A = 1.0", "A = 1.5"))
    assert 0 < np.linalg.norm(a1 - a2) < np.linalg.norm(a1 - other)
    assert cosine_distance(base, base) == pytest.approx(0.0, abs=1e-12)


def test_edge_cases():
    assert not embed("").any() and not embed("# only a comment\n").any()
    assert cosine_distance(embed(""), embed(LOOP)) == 1.0
    rows = embed_many([LOOP, RECURSIVE])
    assert rows.shape == (2, DIM) and np.array_equal(rows[1], embed(RECURSIVE))
    assert embed_many([]).shape == (0, DIM)
    assert embed(LOOP, dim=16).shape == (16,)
    with pytest.raises(ValueError):
        embed(LOOP, dim=0)
