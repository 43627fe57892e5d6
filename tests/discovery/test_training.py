"""discovery.training: settings, the reward rule, completion text, GRPO groups and records (pure)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from discovery.config import ConfigError
from discovery.training import (
    completion_text,
    group_keys,
    grpo_records,
    invalid_reward_for,
    keep_prefix,
    preference_records,
    prompt_messages,
    reward_of,
    settings,
    sft_records,
)

# ---------------------------------------------------------------- settings


def test_settings_defaults_and_none_knobs_left_at_default():
    cfg = settings("grpo", max_steps=None, learning_rate=None, num_generations=4, batch_size=4)
    assert (cfg.method, cfg.max_steps, cfg.learning_rate, cfg.num_generations) == ("grpo", -1, None, 4)
    assert cfg.batch_size == 4 and cfg.sandbox == "auto" and cfg.trl == {}


@pytest.mark.parametrize("method, knobs, fragment", [
    ("ppo", {}, "unknown training method 'ppo'"),
    ("sft", {"max_steps": 0}, "max_steps must be positive"),
    ("sft", {"max_steps": -5}, "max_steps must be positive"),
    ("sft", {"learning_rate": -1e-5}, "learning_rate must be a positive number"),
    ("sft", {"learning_rate": float("nan")}, "learning_rate must be a positive number"),
    ("sft", {"batch_size": 0}, "training setting batch_size"),
    ("sft", {"epochs": 0}, "epochs must be positive"),
    ("grpo", {"num_generations": 1}, "training setting num_generations"),
    ("grpo", {"batch_size": 3, "num_generations": 2}, "must be a multiple of num_generations (2)"),
    ("grpo", {"invalid_reward": float("inf")}, "invalid_reward must be a finite number"),
    ("dpo", {"bogus": 1}, "training setting bogus"),
    ("grpo", {"temperature": 0}, "training setting temperature"),
    ("grpo", {"sandbox": "chroot"}, "training setting sandbox"),
])
def test_bad_settings_are_one_line_config_errors(method, knobs, fragment):
    with pytest.raises(ConfigError) as info:
        settings(method, **knobs)
    message = str(info.value)
    assert fragment in message and "\n" not in message


def test_grpo_batch_may_span_accumulation_steps():
    cfg = settings("grpo", batch_size=2, grad_accum=2, num_generations=4)
    assert cfg.batch_size * cfg.grad_accum == 4


# ---------------------------------------------------------------- rewards


def test_reward_is_fitness_of_an_ok_program():
    assert reward_of("ok", 0.39, "minimize", -9.0) == -0.39
    assert reward_of("ok", 2.63, "maximize", -9.0) == 2.63


@pytest.mark.parametrize("status, score", [
    (None, None), ("parse_error", None), ("invalid", None), ("error", None), ("timeout", None), ("killed", None),
    ("ok", None), ("ok", float("nan")), ("ok", float("inf")),
])
def test_every_other_outcome_gets_the_invalid_reward(status, score):
    assert reward_of(status, score, "minimize", -1.5) == -1.5


def test_default_invalid_reward_sits_below_the_seed_by_its_size():
    assert invalid_reward_for(0.4, "minimize") == pytest.approx(-1.4)  # f = -0.4, minus max(0.4, 1)
    assert invalid_reward_for(150.0, "minimize") == -300.0  # f = -150, minus 150
    assert invalid_reward_for(2.5, "maximize") == 0.0  # f = 2.5, minus 2.5
    assert invalid_reward_for(0.0, "maximize") == -1.0
    assert invalid_reward_for(None, "maximize") == -1.0  # a seed that fails: still defined
    assert invalid_reward_for(0.4, "minimize", override=-7) == -7.0
    for seed, direction in [(0.4, "minimize"), (150.0, "minimize"), (2.5, "maximize"), (-3.0, "maximize")]:
        f_seed = seed if direction == "maximize" else -seed
        assert invalid_reward_for(seed, direction) < f_seed


# ---------------------------------------------------------------- completions and prompts


@pytest.mark.parametrize("completion, text", [
    ("plain", "plain"),
    ([{"role": "assistant", "content": "conv"}], "conv"),
    ([{"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}], "ab"),
    ([{"role": "user", "content": "not mine"}, {"role": "assistant", "content": "mine"}], "mine"),
    ({"role": "assistant", "content": "one message"}, "one message"),
    ([{"role": "assistant", "content": [{"type": "text", "text": "part"}, {"type": "image"}]}], "part"),
    (None, ""), (42, ""), (3.5, ""), ([None, 7, "x"], ""), ([{"content": None}], ""), (b"bytes", ""),
    ([{"role": "assistant", "content": {"nested": 1}}], ""),
])
def test_completion_text_reads_every_shape_and_garbage_as_no_text(completion, text):
    assert completion_text(completion) == text


def test_prompt_messages():
    assert prompt_messages("hi") == [{"role": "user", "content": "hi"}]
    assert prompt_messages([{"role": "system", "content": 1}, "junk"]) == [{"role": "system", "content": "1"}]
    assert prompt_messages(None) == [] and prompt_messages(5) == []


def test_group_keys_number_groups_by_first_appearance_and_samples_within():
    p1, p2 = [{"role": "user", "content": "a"}], [{"role": "user", "content": "b"}]
    keys = group_keys([p1, p1, p2, p2, p1, p2], ["x"] * 6, ["P"] * 6)
    assert keys == [(0, 0), (0, 1), (1, 0), (1, 1), (0, 2), (1, 2)]
    # the same prompt with another parent or problem is another group
    assert group_keys([p1, p1, p1], ["x", "x", "y"], ["P", "Q", "P"]) == [(0, 0), (1, 0), (2, 0)]


def test_keep_prefix_takes_whole_lines():
    block = "a = 1\nb = 2\nc = 3\n"
    assert keep_prefix(block, 0) == "" and keep_prefix(block, 2) == "a = 1\nb = 2\n"
    assert keep_prefix(block, 9) == block


# ---------------------------------------------------------------- records


def test_records_have_trl_conversational_shapes():
    msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    sft = sft_records([{"messages": [*msgs, {"role": "assistant", "content": "a"}], "score": 1.0}])
    assert sft == [{"prompt": msgs, "completion": [{"role": "assistant", "content": "a"}]}]
    # multi-turn (R^3L): the last answer is the completion, earlier turns are context
    turns = [*msgs, {"role": "assistant", "content": "a1"}, {"role": "user", "content": "fb"},
             {"role": "assistant", "content": "a2"}]
    assert sft_records([{"messages": turns}]) == [{"prompt": turns[:4], "completion": [turns[4]]}]
    assert sft_records([{"messages": msgs}]) == []  # no answer: nothing to learn
    pref = preference_records([{"prompt": msgs, "chosen": [{"role": "assistant", "content": "good"}],
                                "rejected": [{"role": "assistant", "content": "bad"}], "kind": "group"}])
    assert pref == [{"prompt": msgs, "chosen": [{"role": "assistant", "content": "good"}],
                     "rejected": [{"role": "assistant", "content": "bad"}]}]


def test_grpo_records_keep_one_row_per_prompt_and_parent():
    def src(step_id, messages, parent, keep=""):
        return SimpleNamespace(step_id=step_id, problem="erdos", messages=messages, parent_code=parent, keep_prefix=keep)

    m1, m2 = [{"role": "user", "content": "1"}], [{"role": "user", "content": "2"}]
    rows = grpo_records([src(1, m1, "P"), src(2, m1, "P"), src(3, m2, "P"), src(4, m1, "Q", "k\n")])
    assert [r["source_step_id"] for r in rows] == [1, 3, 4]
    assert rows[2] == {"prompt": m1, "problem": "erdos", "parent_program": "Q", "keep_prefix": "k\n",
                       "source_step_id": 4}
    assert len(grpo_records([src(1, m1, "P"), src(2, m1, "P")], dedupe=False)) == 2
