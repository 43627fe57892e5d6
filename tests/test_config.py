"""Campaign configuration: files, overrides, env, and one-line errors."""

from __future__ import annotations

import pytest

from discovery.config import CampaignConfig, ConfigError, resolve


def test_toml_file_with_flag_overrides(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[campaign]\nproblem = "erdos_min_overlap"\nchains = 2\nk = 3\nbudget = 12\nseed = 7\n')
    cfg = resolve(f, budget=24, seed=None)
    assert (cfg.problem, cfg.chains, cfg.k, cfg.budget, cfg.seed) == ("erdos_min_overlap", 2, 3, 24, 7)
    assert cfg.steps_per_chain == 4 and cfg.model is None and cfg.proposer_name == "offline"


def test_yaml_file(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("problem: erdos_min_overlap\nchains: 1\nk: 2\nbudget: 4\nmodel: openai/x\napi_base: http://127.0.0.1:1/v1\n")
    cfg = resolve(f)
    assert cfg.model == "openai/x" and cfg.api_base == "http://127.0.0.1:1/v1"


def test_discovery_model_env_is_the_fallback(monkeypatch):
    monkeypatch.setenv("DISCOVERY_MODEL", "hosted_vllm/qwen")
    assert resolve(problem="p", chains=1, k=1, budget=1).model == "hosted_vllm/qwen"
    assert resolve(problem="p", chains=1, k=1, budget=1, model="offline").model is None


def test_config_round_trips_through_json():
    cfg = resolve(problem="p", chains=2, k=2, budget=8, seed=3)
    assert CampaignConfig.model_validate(cfg.model_dump(mode="json")) == cfg


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        (dict(budget=10), r"budget 10 is not a multiple of chains x k = 16 for simpletes; use 16 or 32"),
        (dict(budget=-4), r"invalid budget"),
        (dict(chains=0), r"invalid chains"),
        (dict(colour="red"), r"unknown setting 'colour'"),
        (dict(sandbox="vm"), r"invalid sandbox"),
    ],
)
def test_bad_settings_give_one_line_errors(kwargs, pattern):
    with pytest.raises(ConfigError, match=pattern) as info:
        resolve(problem="p", **kwargs)
    assert "\n" not in str(info.value)


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        resolve(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("problem = [unclosed\n")
    with pytest.raises(ConfigError, match="does not parse"):
        resolve(bad)
    other = tmp_path / "c.ini"
    other.write_text("x")
    with pytest.raises(ConfigError, match="unknown extension"):
        resolve(other)


def test_strategy_settings_map_onto_the_strategies_params_with_their_defaults():
    import dataclasses

    from discovery.config import ExItSettings, R3LSettings
    from discovery.strategies.exit import ExItParams
    from discovery.strategies.r3l import R3LParams

    for settings, params in ((ExItSettings(), ExItParams), (R3LSettings(), R3LParams)):
        built = params(budget=64, **settings.model_dump())
        defaults = params(budget=64)
        for name, value in settings.model_dump().items():
            assert getattr(built, name) == value == getattr(defaults, name), (params.__name__, name)
        assert {f.name for f in dataclasses.fields(params)} >= set(settings.model_dump())
