"""Campaign configuration: one pydantic model, loadable from TOML or YAML, overridable by flags.

The resolved configuration is stored with the campaign, so `discovery show` and `resume` see
exactly what ran. Secrets are never part of it: an API key is named by the environment
variable that holds it (`api_key_env`), never by value.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

OFFLINE = "offline"
STRATEGIES = ("simpletes",)


class ConfigError(ValueError):
    """A one-line, actionable configuration problem."""


class CampaignConfig(BaseModel):
    """Everything that defines a campaign.

    Attributes:
      problem: built-in problem name, installed entry point, or path to a problem module.
      strategy: search strategy name.
      name: free-text label.
      seed: master seed; with the offline proposer the same seed reproduces the campaign.
      model: litellm model string (e.g. openai/gpt-4o-mini, hosted_vllm/NAME); None = offline.
      api_base: base URL of an OpenAI-compatible server, if any.
      api_key_env: name of the environment variable holding the API key (never the key).
      temperature, max_tokens, llm_timeout_s, llm_retries: proposer call settings.
      llm_concurrency: LLM calls in flight at once (independent of evaluation slots).
      input_cost_per_mtok / output_cost_per_mtok: USD prices for models litellm cannot price.
      max_cost_usd: stop issuing LLM calls once the campaign spent this much (None = no cap).
      chains: C, independent SimpleTES chains.
      k: K, candidates sampled per prompt; only the best is committed.
      budget: total candidate proposals, C x L x K (L = steps per chain is derived).
      restart_every: cut a chain back to its best node every R commits (0 = never).
      inspirations: programs shown in each prompt besides the parent.
      selector: inspiration selector ("puct" or "elite").
      sandbox: "auto" (bwrap when it works, else process), "process", or "bwrap".
      eval_slots: evaluations running at once (default: number of CPU cores).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    problem: str
    strategy: Literal["simpletes"] = "simpletes"
    name: str = ""
    seed: int = 0
    model: str | None = None
    api_base: str | None = None
    api_key_env: str | None = None
    temperature: float = Field(0.8, ge=0.0, le=2.0)
    max_tokens: int = Field(4096, ge=1)
    llm_timeout_s: float = Field(120.0, gt=0)
    llm_retries: int = Field(4, ge=0)
    llm_concurrency: int = Field(4, ge=1)
    input_cost_per_mtok: float | None = Field(None, ge=0)
    output_cost_per_mtok: float | None = Field(None, ge=0)
    max_cost_usd: float | None = Field(None, gt=0)
    chains: int = Field(4, ge=1)
    k: int = Field(4, ge=1)
    budget: int = Field(192, ge=1)
    restart_every: int = Field(0, ge=0)
    inspirations: int = Field(4, ge=0)
    selector: Literal["puct", "elite"] = "puct"
    sandbox: Literal["auto", "process", "bwrap"] = "auto"
    eval_slots: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)

    @model_validator(mode="after")
    def _budget_fits(self) -> "CampaignConfig":
        per_round = self.chains * self.k
        if self.budget % per_round:
            low = max(per_round, self.budget // per_round * per_round)
            raise ValueError(
                f"budget {self.budget} is not a multiple of chains x k = {per_round}; "
                f"use {low} or {low + per_round}"
            )
        return self

    @property
    def steps_per_chain(self) -> int:
        return self.budget // (self.chains * self.k)

    @property
    def proposer_name(self) -> str:
        return self.model or OFFLINE


def load_file(path: str | Path) -> dict[str, Any]:
    """Reads a TOML or YAML campaign file into a dict (the [campaign] table if present)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} not found: pass an existing .toml or .yaml file to --config")
    text = p.read_text(encoding="utf-8")
    try:
        if p.suffix == ".toml":
            data = tomllib.loads(text)
        elif p.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            raise ConfigError(f"config file {p}: unknown extension {p.suffix!r}; use .toml, .yaml or .yml")
    except (tomllib.TOMLDecodeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"config file {p} does not parse: {str(exc).splitlines()[0]}") from None
    except Exception as exc:  # yaml.YAMLError
        raise ConfigError(f"config file {p} does not parse: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must hold a table of settings, not {type(data).__name__}")
    return dict(data.get("campaign", data))


def resolve(file: str | Path | None = None, /, **overrides: Any) -> CampaignConfig:
    """Builds the campaign configuration: file values, then non-None overrides, then env.

    `DISCOVERY_MODEL` supplies the model when neither the file nor the overrides name one.
    """
    data: dict[str, Any] = load_file(file) if file else {}
    data.update({k: v for k, v in overrides.items() if v is not None})
    if not data.get("model") and os.environ.get("DISCOVERY_MODEL"):
        data["model"] = os.environ["DISCOVERY_MODEL"]
    if data.get("model") in ("", OFFLINE):
        data["model"] = None
    try:
        return CampaignConfig(**data)
    except ValidationError as exc:
        raise ConfigError(_one_line(exc)) from None


def _one_line(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(x) for x in err["loc"]) or "config"
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "missing" and where == "problem":
        return "no problem given: pass a problem name or module path (see `discovery problems`) or set problem in --config"
    if err["type"] == "missing":
        return f"missing setting {where!r}"
    if err["type"] == "extra_forbidden":
        fields = ", ".join(sorted(CampaignConfig.model_fields))
        return f"unknown setting {where!r}: valid settings are {fields}"
    return f"invalid {where}: {msg}" if where != "config" else msg
