"""SimpleTES with a fake evaluator: budget, best-of-K commits, restarts, errors, independence."""

from __future__ import annotations

import dataclasses
import json

import pytest

from discovery.edits import split_program
from discovery.proposers.offline import OfflineProposer
from discovery.strategies.simpletes import SimpleTES, SimpleTESParams
from discovery.strategy import Move, Outcome, Strategy

from tests.discovery.fakes import (
    TOY_TASK,
    evaluate,
    outcomes_for,
    ref_of,
    run,
    samples_of,
    seed_node,
    set_block,
)


def make(sign: float = 1.0, task=TOY_TASK, **params) -> SimpleTES:
    strategy = SimpleTES(task, SimpleTESParams(**params), seed=11)
    strategy.start(seed_node(sign))
    return strategy


def walk_a(move: Move, sample: int) -> str:
    """Sample s moves A by 0.1 * (s + 1) towards 3.7 from the parent's A."""
    ns: dict = {}
    exec(split_program(move.parent.code).block, ns)
    return set_block(round(ns["A"] + 0.1 * (sample + 1), 6), ns["B"])


def test_is_a_strategy_and_spends_exactly_the_budget():
    strategy: Strategy = make(chains=3, k=2, steps=4)
    assert strategy.name == "simpletes"
    for method in ("start", "next_moves", "observe", "done", "best", "total_samples"):
        assert callable(getattr(strategy, method))
    assert strategy.total_samples() == 3 * 4 * 2
    assert not strategy.done()
    history = run(strategy, walk_a)
    assert samples_of(history) == 24 and len(history) == 12
    assert strategy.done() and strategy.next_moves() == []
    modes = {(m.trajectory, m.index): m.mode for m, _ in history}
    assert modes[(0, 0)] == "propose" and modes[(2, 3)] == "refine"


def test_one_move_in_flight_per_chain():
    strategy = make(chains=2, k=1, steps=3)
    first = strategy.next_moves()
    assert [m.trajectory for m in first] == [0, 1] and strategy.next_moves() == []
    strategy.observe(first[1], outcomes_for(first[1], walk_a))
    again = strategy.next_moves()
    assert [(m.trajectory, m.index) for m in again] == [(1, 1)]
    with pytest.raises(ValueError, match="not in flight"):
        strategy.observe(first[1], outcomes_for(first[1], walk_a))
    with pytest.raises(ValueError, match="samples 0..0"):
        strategy.observe(first[0], [])


def test_only_the_best_of_k_is_committed():
    strategy = make(chains=1, k=4, steps=2)
    move = strategy.next_moves()[0]
    assert move.samples == 4 and move.parent.ref == 0
    result = strategy.observe(move, outcomes_for(move, walk_a))
    assert result.committed == 3  # A = 1.4 is the closest to 3.7
    assert [result.bookkeeping[s]["committed"] for s in range(4)] == [False, False, False, True]
    assert [g.ref for g in strategy.chain_graph(0)] == [0, ref_of(move, 3)]
    assert strategy.chain_graph(0)[1].parent == 0
    nxt = strategy.next_moves()[0]
    assert nxt.parent.ref == ref_of(move, 3) and "A = 1.4" in nxt.parent.code
    reward = result.bookkeeping[3]["reward"]
    assert reward == pytest.approx((move.parent.score - nxt.parent.score) / move.parent.score)
    assert result.bookkeeping[3]["chain_best"] == nxt.parent.score
    json.dumps(result.bookkeeping)


def test_ties_commit_the_lowest_sample():
    strategy = make(chains=1, k=3, steps=1)
    move = strategy.next_moves()[0]
    result = strategy.observe(move, outcomes_for(move, lambda m, s: set_block(2.0 if s else 0.5, 2.0)))
    assert result.committed == 1


def test_nothing_valid_commits_nothing_and_errors_reach_the_next_prompt():
    strategy = make(chains=1, k=3, steps=3)
    move = strategy.next_moves()[0]

    def broken(m: Move, s: int) -> str:
        if s == 0:
            return "I think A should be larger."  # no code: ParseError, Outcome.node None
        if s == 1:
            return set_block(1.0, 2.0).replace("B = 2.0", "B = undefined_name")
        return "<<<<<<< SEARCH\nA = 99.0\n=======\nA = 2.0\n>>>>>>> REPLACE\n"

    outcomes = outcomes_for(move, broken)
    assert outcomes[0].node is None and outcomes[2].node is None and outcomes[1].node.status == "error"
    result = strategy.observe(move, outcomes)
    assert result.committed is None and all(b["reward"] is None for b in result.bookkeeping.values())
    assert len(strategy.chain_graph(0)) == 1
    errors = dict(strategy.chain_errors(0))
    assert errors["NameError: name 'undefined_name' is not defined"] == 1
    assert sum(errors.values()) == 3
    nxt = strategy.next_moves()[0]
    user = nxt.messages[1]["content"]
    assert "Frequent errors" in user
    assert "1 x NameError: name 'undefined_name' is not defined" in user
    assert "SEARCH block N not found in the evolve block" in user
    # The same failure again is counted, not listed twice.
    strategy.observe(nxt, outcomes_for(nxt, broken))
    assert dict(strategy.chain_errors(0))["NameError: name 'undefined_name' is not defined"] == 2


def test_restart_cuts_the_chain_to_its_best():
    strategy = make(chains=1, k=2, steps=5, restart_every=2, inspirations=3)
    m0 = strategy.next_moves()[0]
    strategy.observe(m0, outcomes_for(m0, walk_a))
    m1 = strategy.next_moves()[0]
    assert m1.parent.ref == ref_of(m0, 1) and [n.ref for n in m1.inspirations] == [0]
    assert {g.ref: g.visits for g in strategy.chain_graph(0)} == {0: 1, ref_of(m0, 1): 0}
    r1 = strategy.observe(m1, outcomes_for(m1, walk_a))
    assert all(b["restarted"] for b in r1.bookkeeping.values())
    graph = strategy.chain_graph(0)
    assert len(graph) == 1 and graph[0].parent is None and graph[0].visits == 0
    assert graph[0].ref == ref_of(m1, 1)
    m2 = strategy.next_moves()[0]
    assert m2.parent.ref == graph[0].ref and m2.inspirations == ()
    strategy.observe(m2, outcomes_for(m2, walk_a))
    assert len(strategy.chain_graph(0)) == 2


def test_inspirations_come_from_the_chain_and_visits_are_counted():
    strategy = make(chains=2, k=2, steps=4, inspirations=2)
    for _ in range(3):
        for move in strategy.next_moves():
            strategy.observe(move, outcomes_for(move, walk_a))
    move = next(m for m in strategy.next_moves() if m.trajectory == 1)
    chain_refs = {g.ref for g in strategy.chain_graph(1)}
    assert move.parent.ref not in {n.ref for n in move.inspirations}
    assert 1 <= len(move.inspirations) <= 2
    assert {n.ref for n in move.inspirations} <= chain_refs
    assert all(ref == 0 or ref // 1_000_000 == 1 for ref in chain_refs)  # only chain 1's nodes
    assert sum(g.visits for g in strategy.chain_graph(1)) > 0


def test_minimize_direction():
    task = dataclasses.replace(TOY_TASK, direction="minimize")
    strategy = make(sign=-1.0, task=task, chains=1, k=4, steps=3, selector="elite")
    history = run(strategy, walk_a, sign=-1.0)
    assert [r.committed for _, r in history] == [3, 3, 3]
    best = strategy.best()
    assert "A = 2.2" in best.code and best.score == pytest.approx((2.2 - 3.7) ** 2 + (2.0 - 0.4) ** 2)
    assert "lower score is better" in history[0][0].messages[0]["content"]


def test_best_covers_everything_observed():
    strategy = make(chains=2, k=3, steps=2)
    seed_score = strategy.best().score
    run(strategy, walk_a)
    assert strategy.best().score > seed_score
    assert "A = 1.6" in strategy.best().code


def test_order_of_chains_does_not_change_later_moves():
    def play(order: list[int]) -> list[Move]:
        strategy = make(chains=3, k=3, steps=5, inspirations=2, restart_every=3)
        proposer = OfflineProposer()
        for _ in range(3):
            moves = {m.trajectory: m for m in strategy.next_moves()}
            results = {c: outcomes_for(moves[c], lambda m, s: proposer.propose(m, s).text) for c in moves}
            for c in order:
                strategy.observe(moves[c], results[c])
        return strategy.next_moves()

    a, b = play([0, 1, 2]), play([2, 0, 1])
    assert [m.messages for m in a] == [m.messages for m in b]
    assert a == b


def test_full_loop_with_the_offline_proposer_improves_the_toy():
    strategy = make(chains=2, k=4, steps=25, restart_every=10)
    proposer = OfflineProposer()
    seed_score = strategy.best().score
    history = run(strategy, lambda m, s: proposer.propose(m, s).text)
    assert samples_of(history) == strategy.total_samples() == 200
    assert seed_score < -9 and strategy.best().score > -0.5
    json.dumps([dict(r.bookkeeping) for _, r in history])


def test_params_are_validated():
    with pytest.raises(ValueError, match="chains"):
        SimpleTESParams(chains=0)
    with pytest.raises(ValueError, match="valid names"):
        SimpleTESParams(selector="nope")
    strategy = SimpleTES(TOY_TASK, SimpleTESParams(), seed=1)
    with pytest.raises(RuntimeError):
        strategy.next_moves()
    strategy.start(evaluate(0, TOY_TASK.seed_program))
    with pytest.raises(RuntimeError):
        strategy.start(evaluate(0, TOY_TASK.seed_program))
    with pytest.raises(ValueError, match="unknown chain"):
        strategy.observe(dataclasses.replace(strategy.next_moves()[0], trajectory=9), [Outcome(0, None)])
