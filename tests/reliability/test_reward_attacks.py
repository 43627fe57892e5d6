"""The GRPO reward function under attack: every red-team program, and a model that emits garbage,
as completions of one reward call (as GRPOTrainer makes it), scored in the default sandbox.

Every completion gets a defined, finite reward and the call returns: an ok program earns its
honest fitness (the seed's, for attacks whose fallback is the seed's answer; never a claimed
score), anything else the invalid reward. Nothing is left on the host, no secret reaches the
stored rows, and every completion is stored in the reward campaign.
"""

from __future__ import annotations

import dataclasses
import math
import uuid

import pytest

from db import repository as repo
from db.engine import get_engine
from flows.rewards import SandboxReward
from problems import get_problem
from sandbox.base import Limits
from tests.reliability.attacks import CATALOGUE, CLAIMED, SMALL
from tests.reliability.test_redteam import SECRET, Host, marker_files, seed_score

PROBLEM = "erdos_min_overlap"
# needs a victim evaluation running beside it, which test_redteam arranges; not a completion
NEEDS_VICTIM = ("read_other_candidates",)
ATTACKS = [a for a in CATALOGUE if PROBLEM in a.problems and a.name not in NEEDS_VICTIM]

GARBAGE = [
    None, 12, [{"role": "assistant", "content": None}], "", "I cannot help with that.",
    "```python\ndef construct():\n    return [1.0] * 10\n",  # never closed
    "<<<<<<< SEARCH\nnot in the program\n=======\nx = 2\n>>>>>>> REPLACE\n", "\x00\x01\x02" * 1000,
    "```python\n" + "x = (" * 3000 + "\n```", "A" * 250_000, "```python\nimport os\nos._exit(3)\n```",
]


@pytest.fixture
def host():
    h = Host()
    yield h
    h.close()


def test_hostile_and_garbage_completions_get_defined_rewards(tmp_path, host, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    marker = "redteam-" + uuid.uuid4().hex
    erdos = get_problem(PROBLEM)
    small = dataclasses.replace(erdos, limits=Limits(**SMALL))  # the red team's limits: hangs end sooner
    fenced = [f"```python\n{a.program(small, host.ctx(marker))}```" for a in ATTACKS]
    completions = [[{"role": "assistant", "content": c}] for c in fenced] + GARBAGE
    n = len(completions)
    prompt = [{"role": "user", "content": "improve the construction"}]
    url = f"sqlite:///{tmp_path / 'rewards.db'}"
    reward = SandboxReward(db_url=url, sandbox="auto", eval_slots=2, problems={PROBLEM: small})
    try:
        rewards = reward(prompts=[prompt] * n, completions=completions, problem=[PROBLEM] * n,
                         parent_program=[erdos.seed_program] * n, keep_prefix=[""] * n)
    finally:
        reward.close()
        left = marker_files(marker)
        assert left == [], f"attacks left files on the host: {left}"
    assert len(rewards) == n and all(isinstance(r, float) and math.isfinite(r) for r in rewards)
    invalid = reward._campaigns[PROBLEM].invalid_reward
    honest = -seed_score(PROBLEM)
    assert invalid < honest
    for attack, got, scored in zip(ATTACKS, rewards, reward.last):
        detail = (attack.name, scored.status, got, scored.error)
        assert scored.status in set(attack.expect) | {"parse_error"} and scored.status != "parse_error", detail
        assert got not in (CLAIMED, -CLAIMED), detail
        if scored.status == "ok":
            assert got == -scored.score, detail
            if attack.honest == "seed":
                assert got == honest, detail
        else:
            assert got == invalid, detail
    assert rewards[len(ATTACKS):] == [invalid] * len(GARBAGE)
    host.assert_unchanged(marker)

    # every completion stored; what the sandbox let out holds no secret or host canary (the
    # completions themselves do: the attacker was told them, the worst case)
    engine = get_engine(url)
    cid = reward.campaign_ids[PROBLEM]
    steps = repo.steps_of(engine, cid)
    assert len(steps) == n and repo.get_campaign(engine, cid).budget == n
    evaluations = [e for _, e in repo.candidates_of(engine, cid) if e is not None]
    assert len(evaluations) >= len(ATTACKS)
    for e in evaluations:
        for text in (e.stdout, e.stderr, e.feedback, str(e.metrics)):
            assert SECRET not in text and host.canary_text not in text, (e.status, text[:300])
