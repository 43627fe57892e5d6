"""Campaign configuration: one pydantic model, loadable from TOML or YAML, overridable by flags.

The resolved configuration is stored with the campaign, so `discovery show` and `resume` see
exactly what ran. Secrets are never part of it: an API key is named by the environment
variable that holds it (`api_key_env`), never by value.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

OFFLINE = "offline"
STRATEGIES = ("simpletes", "exit", "r3l", "best_of_n", "greedy_refine")
StrategyName = Literal["simpletes", "exit", "r3l", "best_of_n", "greedy_refine"]


class ConfigError(ValueError):
    """A one-line, actionable configuration problem."""


class ExItSettings(BaseModel):
    """ExIt's knobs (see discovery.strategies.exit).

    Attributes:
      group: G, children generated from one prompt; informativeness is their reward variance.
      capacity: N, instances the buffer holds.
      min_buffer: B_min, buffer size before instances are picked from it at all.
      p_select: p, probability of picking from the buffer (else the base instance).
      p_diverge: p_div, probability that a buffer pick uses the diverge prompt.
      kappa: inverse temperature of the softmax pick over informativeness S in [0, 0.25].
        10 makes the most informative instance up to e^2.5 = 12x likelier than an
        uninformative one; kappa near 1 would be nearly uniform (at most e^0.25 = 1.28x).
      diversity_bonus: scale each child's advantage by its distance from the group centroid.
      parallel: picks in flight at once (each pick's content depends only on the picks
        observed before it, so the campaign is reproducible whatever the timing).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    group: int = Field(8, ge=2)
    capacity: int = Field(64, ge=1)
    min_buffer: int = Field(8, ge=1)
    p_select: float = Field(0.5, ge=0.0, le=1.0)
    p_diverge: float = Field(0.2, ge=0.0, le=1.0)
    kappa: float = Field(10.0, ge=0.0)
    diversity_bonus: bool = True
    parallel: int = Field(2, ge=1)


class R3LSettings(BaseModel):
    """R^3L's knobs (see discovery.strategies.r3l).

    Attributes:
      episodes: base episodes per round (they run concurrently; every round starts from the
        best program found so far).
      turns: T, turns (program, evaluation, next program) per episode.
      alpha: positive-amplification weight stored for a retry that beat its base episode.
      target: an episode that ends below this score counts as failed even when it improved
        on its start (None: failed = invalid or no improvement over its start program).
      location_pivot: when the pivot turn's program failed with a traceback inside the
        evolve block, keep the block up to the failing line and regenerate the rest.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    episodes: int = Field(4, ge=1)
    turns: int = Field(3, ge=1)
    alpha: float = Field(3.0, ge=1.0)
    target: float | None = None
    location_pivot: bool = True


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
      k: K, candidates sampled per move (SimpleTES: only the best is committed); also the
        batch size of best_of_n and greedy_refine.
      budget: total proposer calls (every strategy spends exactly this many: program
        proposals, and for R^3L also reflections). SimpleTES: a multiple of C x K (L = steps
        per chain is derived); best_of_n and greedy_refine: a multiple of K; ExIt: a multiple
        of its group size G.
      restart_every: cut a chain back to its best node every R commits (0 = never).
      inspirations: programs shown in each prompt besides the parent.
      selector: inspiration selector ("puct" or "elite").
      sandbox: "auto" (bwrap when it works, else process), "process", "bwrap", or "docker" (warm
        containers; the image is the problem's docker_image, else $DISCOVERY_DOCKER_IMAGE, else
        one built locally holding the problem's requirements).
      eval_slots: evaluations running at once (default: number of CPU cores).
      eval_on: where evaluations run: "local" (this process's sandbox) or "workers" (Prefect
        task workers, `discovery worker`, on any machine sharing the database and Prefect API).
      exit: ExIt settings (a [campaign.exit] table in a file, `--set exit.kappa=5` on the CLI).
      r3l: R^3L settings ([campaign.r3l], `--set r3l.turns=4`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    problem: str
    strategy: StrategyName = "simpletes"
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
    sandbox: Literal["auto", "process", "bwrap", "docker"] = "auto"
    eval_slots: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    eval_on: Literal["local", "workers"] = "local"
    exit: ExItSettings = Field(default_factory=ExItSettings)
    r3l: R3LSettings = Field(default_factory=R3LSettings)

    def budget_rule(self, strategy: str | None = None) -> tuple[int, str, int]:
        """(unit, what the unit is, minimum) a budget must meet for `strategy` (default: this
        config's) under these settings: a multiple of unit, at least minimum."""
        return {
            "simpletes": (self.chains * self.k, "chains x k", 1),
            "best_of_n": (self.k, "k", 1),
            "greedy_refine": (self.k, "k", 1),
            "exit": (self.exit.group, "exit.group", 1),
            "r3l": (1, "", self.r3l.turns),
        }[strategy or self.strategy]

    @model_validator(mode="after")
    def _budget_fits(self) -> "CampaignConfig":
        unit, what, _ = self.budget_rule()
        if self.budget % unit:
            low = max(unit, self.budget // unit * unit)
            raise ValueError(
                f"budget {self.budget} is not a multiple of {what} = {unit} for {self.strategy}; "
                f"use {low} or {low + unit}"
            )
        if self.strategy == "r3l" and self.budget < self.r3l.turns:
            raise ValueError(
                f"budget {self.budget} is below one R^3L episode of r3l.turns = {self.r3l.turns} turns; "
                f"raise the budget or lower r3l.turns"
            )
        return self

    def design(self) -> str:
        """The strategy's design settings in one short line, e.g. "C=4 K=4" for SimpleTES."""
        if self.strategy == "simpletes":
            return f"C={self.chains} K={self.k}" + (f" R={self.restart_every}" if self.restart_every else "")
        if self.strategy == "exit":
            e = self.exit
            return f"G={e.group} N={e.capacity} kappa={e.kappa:g} p={e.p_select:g} p_div={e.p_diverge:g}"
        if self.strategy == "r3l":
            r = self.r3l
            return f"episodes={r.episodes} T={r.turns} alpha={r.alpha:g}"
        return f"K={self.k}"

    @property
    def steps_per_chain(self) -> int:
        return self.budget // (self.chains * self.k)

    @property
    def proposer_name(self) -> str:
        return self.model or OFFLINE


_SECTIONS: dict[str, type[BaseModel]] = {"exit": ExItSettings, "r3l": R3LSettings}


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


def parse_names(
    value: str | Sequence[str], valid: Sequence[str], *, noun: str, plural: str, example: str,
    error: type[ConfigError] = ConfigError,
) -> list[str]:
    """A comma-separated string (or a list) of names, stripped, each one of `valid`; raises
    `error` with a one-line message naming the first unknown name, or saying none was given."""
    names = value.split(",") if isinstance(value, str) else list(value)
    names = [str(n).strip() for n in names if str(n).strip()]
    listed = ", ".join(valid)
    if not names:
        raise error(f"no {plural} given: pass e.g. {example} (valid: {listed})")
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise error(f"unknown {noun} {unknown[0]!r}: valid {plural} are {listed}")
    return names


def parse_assignments(assignments: Sequence[str]) -> dict[str, Any]:
    """`["exit.kappa=5", "seed=3"]` -> `{"exit": {"kappa": "5"}, "seed": "3"}` (pydantic
    converts the strings; "none" and "null" become None)."""
    out: dict[str, Any] = {}
    for item in assignments:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {item!r} is not KEY=VALUE; write e.g. --set exit.kappa=5")
        parsed: Any = None if value.strip().lower() in ("none", "null") else value.strip()
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {item!r}: {part!r} is a setting, not a table")
            node = child
        node[leaf] = parsed
    return out


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def resolve(
    file: str | Path | None = None, /, *, assignments: Sequence[str] = (), **overrides: Any
) -> CampaignConfig:
    """Builds the campaign configuration: file values, then `--set` assignments, then non-None
    overrides, then env.

    `DISCOVERY_MODEL` supplies the model when neither the file nor the overrides name one.
    """
    data: dict[str, Any] = load_file(file) if file else {}
    data = _merge(data, parse_assignments(assignments))
    data = _merge(data, {k: v for k, v in overrides.items() if v is not None})
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
        model: type[BaseModel] = CampaignConfig
        if len(err["loc"]) > 1 and err["loc"][0] in _SECTIONS:
            model = _SECTIONS[str(err["loc"][0])]
        fields = ", ".join(sorted(model.model_fields))
        return f"unknown setting {where!r}: valid settings are {fields}"
    return f"invalid {where}: {msg}" if where != "config" else msg
