"""Builds the parts of a campaign from its configuration: strategy, proposer, sandbox, runtime."""

from __future__ import annotations

import os

from sqlalchemy import Engine

from discovery.config import CampaignConfig
from discovery.proposers.base import Proposer
from discovery.strategy import Strategy, Task
from problems.base import Problem


def task_of(problem: Problem) -> Task:
    return Task(
        name=problem.name,
        description=problem.description,
        direction=problem.direction,
        entrypoint=problem.entrypoint,
        seed_program=problem.seed_program,
        best_known=problem.best_known.value if problem.best_known else None,
    )


def make_strategy(config: CampaignConfig, problem: Problem) -> Strategy:
    """The strategy a configuration names, with its settings (every one spends config.budget)."""
    task = task_of(problem)
    if config.strategy == "simpletes":
        from discovery.strategies.simpletes import SimpleTES, SimpleTESParams

        params = SimpleTESParams(
            chains=config.chains,
            k=config.k,
            steps=config.steps_per_chain,
            restart_every=config.restart_every,
            inspirations=config.inspirations,
            selector=config.selector,
        )
        return SimpleTES(task, params, seed=config.seed)
    if config.strategy in ("best_of_n", "greedy_refine"):
        from discovery.strategies.baselines import best_of_n, greedy_refine

        build = best_of_n if config.strategy == "best_of_n" else greedy_refine
        return build(task, budget=config.budget, k=config.k, seed=config.seed)
    if config.strategy == "exit":
        from discovery.strategies.exit import ExIt, ExItParams

        # the settings' fields are the params' fields (tests/test_config.py checks it)
        return ExIt(task, ExItParams(budget=config.budget, **config.exit.model_dump()), seed=config.seed)
    if config.strategy == "r3l":
        from discovery.strategies.r3l import R3L, R3LParams

        return R3L(task, R3LParams(budget=config.budget, **config.r3l.model_dump()), seed=config.seed)
    raise ValueError(f"unknown strategy {config.strategy!r}")


def make_proposer(config: CampaignConfig) -> Proposer:
    """The offline proposer when no model is configured, else litellm (the key read from env)."""
    if config.model is None:
        from discovery.proposers.offline import OfflineProposer

        return OfflineProposer()
    from discovery.proposers.llm import LiteLLMProposer

    api_key = os.environ.get(config.api_key_env) if config.api_key_env else None
    provider = config.model.split("/", 1)[0].upper()
    if api_key is None and config.api_base and not os.environ.get(f"{provider}_API_KEY"):
        # A local OpenAI-compatible server usually needs no key, but the openai client refuses
        # to send a request without one: give it a placeholder that is not a secret.
        api_key = "no-key-needed"
    return LiteLLMProposer(
        config.model,
        api_base=config.api_base,
        api_key=api_key,
        temperature=config.temperature,
        max_tokens=config.max_tokens,
        timeout_s=config.llm_timeout_s,
        max_retries=config.llm_retries,
        concurrency=config.llm_concurrency,
        input_cost_per_mtok=config.input_cost_per_mtok,
        output_cost_per_mtok=config.output_cost_per_mtok,
    )


def make_runtime(campaign_id: int, engine: Engine, config: CampaignConfig, problem: Problem, proposer: Proposer):
    from flows.campaign import Runtime
    from sandbox import get_sandbox

    return Runtime(
        campaign_id=campaign_id,
        engine=engine,
        config=config,
        problem=problem,
        sandbox=get_sandbox(config.sandbox),
        proposer=proposer,
    )
