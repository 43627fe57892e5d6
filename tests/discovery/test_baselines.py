"""The baselines: best_of_n samples the seed prompt independently; greedy_refine climbs one chain."""

from __future__ import annotations

import pytest

from discovery.edits import split_program
from discovery.proposers.offline import OfflineProposer
from discovery.strategies.baselines import best_of_n, greedy_refine
from discovery.strategy import Move

from tests.discovery.fakes import TOY_TASK, outcomes_for, run, samples_of, seed_node, set_block


def step_a(move: Move, sample: int) -> str:
    """Moves A by +0.5 from the parent (towards 3.7 from 1.0), whatever the sample."""
    ns: dict = {}
    exec(split_program(move.parent.code).block, ns)
    return set_block(round(ns["A"] + 0.5, 6), ns["B"])


def test_best_of_n_issues_every_sample_at_once_from_the_seed_prompt():
    strategy = best_of_n(TOY_TASK, budget=12, k=3, seed=5)
    seed = seed_node()
    strategy.start(seed)
    moves = strategy.next_moves()
    assert strategy.name == "best_of_n"
    assert len(moves) == 4 and sum(m.samples for m in moves) == 12 == strategy.total_samples()
    assert all(m.parent == seed and m.inspirations == () for m in moves)
    assert all(m.messages == moves[0].messages for m in moves), "every sample sees the same prompt"
    assert len({m.seed for m in moves}) == 4, "but draws are independent"
    assert strategy.next_moves() == []
    for move in moves:
        strategy.observe(move, outcomes_for(move, step_a))
    assert strategy.done()
    # no refinement: every candidate is one step from the seed, so the best is A = 1.5
    assert split_program(strategy.best().code).block.startswith("A = 1.5")


def test_greedy_refine_keeps_one_move_in_flight_and_refines_the_best():
    strategy = greedy_refine(TOY_TASK, budget=6, k=1, seed=5)
    strategy.start(seed_node())
    history = []
    while not strategy.done():
        moves = strategy.next_moves()
        assert len(moves) == 1, "one chain: strictly sequential"
        history.append(moves[0])
        strategy.observe(moves[0], outcomes_for(moves[0], step_a))
    assert strategy.name == "greedy_refine" and len(history) == 6
    assert all(m.inspirations == () for m in history)
    parents_a = [float(split_program(m.parent.code).block.split()[2]) for m in history]
    assert parents_a == [1.0, 1.5, 2.0, 2.5, 3.0, 3.5], "each move refines the previous best"


def test_greedy_refine_beats_best_of_n_on_the_toy_with_the_offline_proposer():
    proposer = OfflineProposer()

    def respond(move, sample):
        return proposer.propose(move, sample).text

    scores = {}
    for build in (best_of_n, greedy_refine):
        finals = []
        for seed in range(3):
            strategy = build(TOY_TASK, budget=40, k=2, seed=seed)
            strategy.start(seed_node())
            assert samples_of(run(strategy, respond)) == 40
            finals.append(strategy.best().score)
        scores[build.__name__] = sorted(finals)[1]
    assert scores["greedy_refine"] > scores["best_of_n"]


@pytest.mark.parametrize("build", [best_of_n, greedy_refine])
def test_budget_must_be_a_multiple_of_k(build):
    with pytest.raises(ValueError, match="multiple of k = 4"):
        build(TOY_TASK, budget=10, k=4, seed=0)
