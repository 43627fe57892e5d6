"""The offline proposer: deterministic, always parseable, and able to improve a numeric program."""

from __future__ import annotations

import pytest

from discovery.edits import apply_response, split_program
from discovery.literals import analyse_block, format_number
from discovery.proposers.offline import OfflineProposer
from discovery.strategy import Move, Node

from tests.discovery.fakes import TOY, evaluate

VECTORS = '''import math

def helper(v):
    return sum(v)

# EVOLVE-BLOCK-START
WEIGHTS = [0.5, -1.25, 3.0, 2]
SHAPE = (4, 8)
N_ITER = 3
RATE = 1e-3
OFFSET = -0.75

def solve():
    total = 0.0
    for i in range(N_ITER):
        total += helper(WEIGHTS) * RATE + OFFSET * math.cos(i * 0.1)
    return total + SHAPE[0] * 0.0
# EVOLVE-BLOCK-END
'''

INDENTED = '''def solve():
    scale = 2.0
    # EVOLVE-BLOCK-START
    a = 0.25
    b = 3
    # EVOLVE-BLOCK-END
    return scale * a * b
'''

DUPLICATES = '''# EVOLVE-BLOCK-START
x = 1.0
y = 2.0
x = 1.0
z = [1, 2, 3]
# EVOLVE-BLOCK-END
def solve():
    return x + y + sum(z)
'''

PROGRAMS = [TOY, VECTORS, INDENTED, DUPLICATES]


def move_for(code: str, seed: int = 7, inspirations: tuple[Node, ...] = ()) -> Move:
    parent = Node(ref=0, code=code, score=0.0, status="ok")
    return Move(0, 0, "propose", (), parent, inspirations, 4, seed)


def test_same_seed_same_text_and_samples_differ():
    proposer = OfflineProposer()
    move = move_for(VECTORS)
    first = [proposer.propose(move, s).text for s in range(6)]
    again = [proposer.propose(move, s).text for s in range(6)]
    assert first == again
    assert len(set(first)) == len(first)
    assert proposer.propose(move_for(VECTORS, seed=8), 0).text != first[0]


def test_proposal_fields():
    proposal = OfflineProposer().propose(move_for(TOY), 0)
    assert proposal.ok and proposal.model == "offline"
    assert proposal.prompt_tokens == proposal.completion_tokens == 0
    assert proposal.latency_s >= 0
    assert OfflineProposer().name == "offline"


@pytest.mark.parametrize("code", PROGRAMS)
def test_every_response_parses_and_changes_only_the_block(code):
    proposer = OfflineProposer()
    forms = set()
    parent = split_program(code)
    for seed in range(40):
        move = move_for(code, seed)
        for s in range(3):
            text = proposer.propose(move, s).text
            child = apply_response(code, text)
            assert child != code
            got = split_program(child)
            assert (got.prefix, got.suffix) == (parent.prefix, parent.suffix)
            forms.add("edits" if "<<<<<<< SEARCH" in text else "block")
    assert forms == {"edits", "block"}


def test_literals_found_and_signs_and_sizes_respected():
    block = analyse_block(VECTORS)
    values = [n.value for n in block.numbers]
    assert -1.25 in values and -0.75 in values and 1e-3 in values
    assert 0 not in [n.value for n in block.numbers if n.is_int and n.value == 0]  # SHAPE[0] skipped
    assert len(block.vectors) == 2  # WEIGHTS and SHAPE; range(...) and helper(...) are calls
    proposer = OfflineProposer(p_vector=0.0, p_rewrite=0.0)
    for seed in range(200):
        child = apply_response(VECTORS, proposer.propose(move_for(VECTORS, seed), 0).text)
        namespace: dict = {}
        exec(child, namespace)
        assert namespace["N_ITER"] >= 1
        assert namespace["RATE"] > 0 and namespace["OFFSET"] < 0


def test_vectors_extend_and_shorten():
    proposer = OfflineProposer(p_vector=1.0)
    lengths = set()
    for seed in range(60):
        child = apply_response(VECTORS, proposer.propose(move_for(VECTORS, seed), 0).text)
        namespace: dict = {}
        exec(child, namespace)
        lengths.add(len(namespace["WEIGHTS"]))
    assert {3, 4, 5} <= lengths


def test_recombination_copies_inspiration_literals():
    other = TOY.replace("A = 1.0", "A = 3.5").replace("B = 2.0", "B = 0.5")
    inspiration = Node(ref=1, code=other, score=-0.05, status="ok")
    proposer = OfflineProposer(p_recombine=1.0)
    children = [
        apply_response(TOY, proposer.propose(move_for(TOY, seed, (inspiration,)), 0).text)
        for seed in range(20)
    ]
    assert any("A = 3.5" in c or "B = 0.5" in c for c in children)


def test_no_literal_is_an_error_proposal():
    code = "# EVOLVE-BLOCK-START\ndef f():\n    return 'x'\n# EVOLVE-BLOCK-END\n"
    proposal = OfflineProposer().propose(move_for(code), 0)
    assert not proposal.ok and "no numeric literal" in proposal.error and proposal.text == ""
    assert not OfflineProposer().propose(move_for("x = 1\n"), 0).ok


def test_greedy_loop_over_offline_proposals_improves_the_toy():
    proposer = OfflineProposer()
    best = evaluate(0, TOY)
    start = best.score
    for step in range(300):
        move = Move(0, step, "refine", (), best, (), 1, step)
        child = evaluate(step + 1, apply_response(best.code, proposer.propose(move, 0).text))
        if child.status == "ok" and child.score > best.score:
            best = child
    assert start < -9 and best.score > -0.05, best.score


def test_format_number_keeps_the_kind():
    assert format_number(5.0, False) == "5.0"
    assert format_number(1e-5, False) == "1e-05"
    assert format_number(-0.123456789, False) == "-0.12345679"
    assert format_number(7, True) == "7"


def test_kept_prefix_is_never_touched_and_the_answer_parses_as_a_continuation():
    from discovery.edits import apply_continuation

    block = split_program(VECTORS).block
    keep = "".join(block.splitlines(keepends=True)[:3])  # WEIGHTS, SHAPE, N_ITER kept
    proposer = OfflineProposer()
    parent = Node(ref=0, code=VECTORS, score=None, status="error", feedback="boom")
    changed_after = 0
    for seed in range(40):
        move = Move(0, 0, "retry", (), parent, (), 1, seed, keep_prefix=keep)
        proposal = proposer.propose(move, 0)
        assert proposal.ok, proposal.error
        child = apply_continuation(VECTORS, keep, proposal.text)
        new_block = split_program(child).block
        assert new_block.startswith(keep)
        changed_after += new_block != block
    assert changed_after == 40


def test_kept_prefix_with_nothing_after_it_is_an_error_proposal():
    block = split_program(TOY).block
    parent = Node(ref=0, code=TOY, score=None, status="error")
    move = Move(0, 0, "retry", (), parent, (), 1, 3, keep_prefix=block)
    proposal = OfflineProposer().propose(move, 0)
    assert not proposal.ok and "after the kept lines" in proposal.error


def test_diverge_moves_change_more_sites_by_larger_factors():
    import statistics

    proposer = OfflineProposer()
    parent = Node(ref=0, code=VECTORS, score=1.0, status="ok")

    def spread(mode: str) -> tuple[float, float]:
        sites, jumps = [], []
        before = analyse_block(VECTORS).numbers
        for seed in range(60):
            move = Move(0, 0, mode, (), parent, (), 1, seed)
            after = analyse_block(apply_response(VECTORS, proposer.propose(move, 0).text)).numbers
            if len(after) != len(before):  # a list grew or shrank: count it as one site
                sites.append(1)
                continue
            diffs = [(a.value, b.value) for a, b in zip(before, after) if a.value != b.value]
            sites.append(len(diffs))
            jumps += [abs(b - a) / max(abs(a), 1e-9) for a, b in diffs]
        return statistics.mean(sites), statistics.median(jumps)

    refine_sites, refine_jump = spread("refine")
    diverge_sites, diverge_jump = spread("diverge")
    assert diverge_sites > 1.5 * refine_sites
    assert diverge_jump > refine_jump


def test_text_moves_other_than_reflections_are_refused():
    parent = Node(ref=0, code=TOY, score=1.0, status="ok")
    move = Move(0, 0, "summarise", (), parent, (), 1, 3, answer="text")
    proposal = OfflineProposer().propose(move, 0)
    assert not proposal.ok and "without a model" in proposal.error
