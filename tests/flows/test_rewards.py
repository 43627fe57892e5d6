"""flows.rewards.SandboxReward on real campaigns, a real sandbox and a real database.

Rewards equal the fitness `discovery eval` gives the same programs; every scored completion is
stored as a campaign of its own that exports like any other; garbage gets the invalid reward.
(Hostile programs: tests/reliability/test_reward_attacks.py.)
"""

from __future__ import annotations

import json
import math
import sqlite3

import pytest

from db import repository as repo
from db.engine import dispose_engines, get_engine
from discovery.edits import apply_continuation
from discovery.types import program_hash
from flows.api import evaluate_file, run_campaign
from flows.export import export_dataset
from flows.rewards import SandboxReward
from flows.train import grpo_dataset

PROBLEM = "erdos_min_overlap"


@pytest.fixture(scope="module")
def campaign(prefect_harness, tmp_path_factory):
    """A finished SimpleTES campaign (2 chains x 4 samples) on Erdős, in its own database."""
    url = f"sqlite:///{tmp_path_factory.mktemp('rewards') / 'campaign.db'}"
    summary = run_campaign(PROBLEM, chains=2, k=4, budget=16, seed=3, db_url=url, sandbox="process")
    yield url, summary.campaign.id
    dispose_engines()


def _samples_of(url: str, source_step_id: int) -> list[str]:
    """The stored responses of the move the prompt row came from (answers to that very prompt)."""
    engine = get_engine(url)
    steps = repo.steps_of(engine, [s for s in repo.steps_of(engine, _campaign_of(url, source_step_id))
                                   if s.id == source_step_id][0].campaign_id)
    source = next(s for s in steps if s.id == source_step_id)
    return [s.response for s in steps if s.trajectory_id == source.trajectory_id and s.index == source.index]


def _campaign_of(url: str, step_id: int) -> int:
    con = sqlite3.connect(url.removeprefix("sqlite:///"))
    try:
        return con.execute("select campaign_id from step where id = ?", (step_id,)).fetchone()[0]
    finally:
        con.close()


def _trl_call(reward, rows, completions_per_row):
    """Calls `reward` as TRL's GRPOTrainer does: every column repeated for each completion."""
    prompts, completions, columns = [], [], {"problem": [], "parent_program": [], "keep_prefix": [],
                                             "source_step_id": []}
    for row, completions_of_row in zip(rows, completions_per_row):
        for c in completions_of_row:
            prompts.append(row["prompt"])
            completions.append([{"role": "assistant", "content": c}] if isinstance(c, str) else c)
            for k in columns:
                columns[k].append(row[k])
    return reward(prompts=prompts, completions=completions, completion_ids=[[1]] * len(completions),
                  trainer_state=None, **columns)


def test_grpo_dataset_is_one_row_per_prompt_with_its_parent(campaign):
    url, cid = campaign
    rows = grpo_dataset(campaigns=[cid], db_url=url)
    engine = get_engine(url)
    steps = repo.steps_of(engine, cid)
    moves = {(s.trajectory_id, s.index) for s in steps}
    assert len(rows) <= len(moves) and rows
    for row in rows:
        step = next(s for s in steps if s.id == row["source_step_id"])
        assert row["prompt"] == step.messages
        parent, _ = repo.get_candidate(engine, step.parent_candidate_id)
        assert row["parent_program"] == parent.code and row["problem"] == PROBLEM and row["keep_prefix"] == ""
    assert len({json.dumps([r["prompt"], r["parent_program"]]) for r in rows}) == len(rows)


def test_rewards_equal_discovery_eval_and_every_completion_is_stored(campaign, tmp_path):
    url, cid = campaign
    rows = grpo_dataset(campaigns=[cid], db_url=url)[:2]
    answers = [_samples_of(url, r["source_step_id"]) for r in rows]
    answers[1] = answers[1][:2] + ["no code at all", "```python\nunclosed", None]
    reward = SandboxReward(db_url=url, sandbox="process", eval_slots=2, model="trainee-x")
    rewards = _trl_call(reward, rows, answers)
    flat = [a for group in answers for a in group]
    assert len(rewards) == len(flat) and all(isinstance(r, float) and math.isfinite(r) for r in rewards)

    engine = get_engine(url)
    seed_ev = evaluate_file(PROBLEM, _write(tmp_path / "seed.py", _seed()), sandbox="process")
    invalid = -seed_ev.score - max(seed_ev.score, 1.0)
    evals = {}
    for i, (row, text, got) in enumerate(zip([r for r, g in zip(rows, answers) for _ in g], flat, rewards)):
        if not isinstance(text, str) or text in ("no code at all", "```python\nunclosed"):
            assert got == pytest.approx(invalid, abs=0), (i, got)
            continue
        code = apply_continuation(row["parent_program"], row["keep_prefix"], text)
        if program_hash(code) not in evals:  # `discovery eval` of the same program, in the same sandbox
            evals[program_hash(code)] = evaluate_file(PROBLEM, _write(tmp_path / f"p{i}.py", code), sandbox="process")
        ev = evals[program_hash(code)]
        expected = -ev.score if ev.status == "ok" else invalid
        assert got == expected, (i, ev.status, got, expected)
    assert any(ev.status == "ok" for ev in evals.values())

    # stored: one campaign, one trajectory for the call, one move per prompt, one sample per completion
    rid = reward.campaign_ids[PROBLEM]
    assert rid != cid
    camp = repo.get_campaign(engine, rid)
    assert (camp.strategy, camp.model, camp.status, camp.problem) == ("grpo", "trainee-x", "running", PROBLEM)
    steps = repo.steps_of(engine, rid)
    assert len(steps) == len(flat)
    assert {s.trajectory_id for s in steps} == {steps[0].trajectory_id}
    assert sorted((s.index, s.sample) for s in steps) == [(g, k) for g, group in enumerate(answers)
                                                          for k in range(len(group))]
    by_step = {c.step_id: (c, e) for c, e in repo.candidates_of(engine, rid) if c.step_id}
    for s, text, got in zip(sorted(steps, key=lambda s: (s.index, s.sample)), flat, rewards):
        assert s.response == (text if isinstance(text, str) else "")
        assert s.bookkeeping["reward"] == got
        assert s.messages == rows[s.index]["prompt"]
        if s.status == "ok":
            cand, ev = by_step[s.id]
            assert ev is not None and (-ev.score if ev.status == "ok" else invalid) == got
            parent, _ = repo.get_candidate(engine, s.parent_candidate_id)
            assert parent.code == rows[s.index]["parent_program"] and parent.step_id is None
        else:
            assert s.status == "parse_error" and s.id not in by_step and s.error
    for index in range(len(rows)):  # the best ok sample of each group is committed
        group = [s for s in steps if s.index == index]
        oks = [s for s in group if s.id in by_step and by_step[s.id][1].status == "ok"]
        committed = [s for s in group if s.committed]
        assert len(committed) == (1 if oks else 0)
        if oks:
            assert committed[0].bookkeeping["reward"] == max(s.bookkeeping["reward"] for s in oks)

    # a second call is a second trajectory; close() completes the campaign with its budget
    _trl_call(reward, rows[:1], [answers[0][:2]])
    reward.close()
    camp = repo.get_campaign(engine, rid)
    assert camp.status == "completed" and camp.budget == len(flat) + 2
    assert len({s.trajectory_id for s in repo.steps_of(engine, rid)}) == 2

    # the rollouts export like any campaign: one RL group per GRPO group
    report = export_dataset([rid], out_dir=tmp_path / "rollouts", db_url=url, formats=["rl", "preference"])
    assert report.row_counts["rl"]["train"] == len([t for t in flat if isinstance(t, str)]) + 2
    import pyarrow.parquet as pq

    rl = pq.read_table(tmp_path / "rollouts" / "rl" / "train.parquet").to_pylist()
    assert len({r["group_id"] for r in rl}) == len(rows) + 1


def test_garbage_completions_get_the_invalid_reward_and_are_stored(campaign):
    url, cid = campaign
    row = grpo_dataset(campaigns=[cid], db_url=url)[0]
    garbage = [
        None, 7, 3.5, {"role": "assistant"}, [{"role": "assistant", "content": None}], [], "", "   \n\t",
        "\x00" * 100, "```python\n" + "\x00bad\n```", "x" * 300_000, "```python\n" + "(" * 5000 + "\n```",
        "<<<<<<< SEARCH\nnothing like this\n=======\nx = 1\n>>>>>>> REPLACE\n",
        "<<<<<<< SEARCH\n" * 2000, "```python\ndef construct(:\n```", "```\n" * 1000,
        "\ud800 lone surrogate ```python\nx = 1\n```", "🙂" * 10_000,
        [{"role": "assistant", "content": [{"type": "text", "text": "```python\n# EVOLVE-BLOCK-START\n"}]}],
    ]
    reward = SandboxReward(db_url=url, sandbox="process", eval_slots=2)
    rewards = reward(prompts=[row["prompt"]] * len(garbage), completions=garbage,
                     problem=[PROBLEM] * len(garbage), parent_program=[row["parent_program"]] * len(garbage),
                     keep_prefix=[""] * len(garbage))
    reward.close()
    rc = reward._campaigns[PROBLEM]
    assert rewards == [rc.invalid_reward] * len(garbage), [s.error for s in reward.last]
    engine = get_engine(url)
    steps = repo.steps_of(engine, reward.campaign_ids[PROBLEM])
    assert len(steps) == len(garbage)
    evaluated = {c.step_id: e for c, e in repo.candidates_of(engine, reward.campaign_ids[PROBLEM]) if c.step_id}
    for s in steps:  # unparsable, or parsed into a program that does not score
        assert (s.status == "parse_error" and s.error) or evaluated[s.id].status != "ok", (s.status, s.response[:80])
    assert sum(s.status == "ok" for s in steps) == 1  # the block `x = 1` (no construct()): evaluated, not ok
    assert any("\ufffd" in s.response for s in steps)  # NULs stored as U+FFFD, the row kept


def test_bad_columns_are_one_line_errors(campaign):
    url, _ = campaign
    reward = SandboxReward(db_url=url, sandbox="process")
    with pytest.raises(ValueError, match="needs the dataset column 'parent_program'"):
        reward(prompts=["p"], completions=["c"], problem=[PROBLEM])
    with pytest.raises(ValueError, match="got 2 completions but 1 values of 'problem'"):
        reward(prompts=["p", "p"], completions=["c", "c"], problem=[PROBLEM], parent_program=["x", "x"])
    assert reward.campaign_ids == {}


def _seed() -> str:
    from problems import get_problem

    return get_problem(PROBLEM).seed_program


def _write(path, text: str):
    path.write_text(text)
    return path
