"""A reward function for RL trainers that scores completions with our sandboxed, trusted evaluators.

    from flows.rewards import SandboxReward
    from trl import GRPOConfig, GRPOTrainer

    reward = SandboxReward(db_url="sqlite:///discovery.db", sandbox="bwrap", eval_slots=4)
    trainer = GRPOTrainer(model=..., reward_funcs=reward, train_dataset=prompts, args=GRPOConfig(...))
    trainer.train()
    reward.close()                      # the reward campaigns end "completed"
    print(reward.campaign_ids)          # {"erdos_min_overlap": 12}: browse or export them

The call has the shape TRL's GRPOTrainer expects: `reward(prompts=..., completions=...,
problem=[...], parent_program=[...], keep_prefix=[...], **other_columns)` returns one float per
completion. `problem`, `parent_program` and (optionally) `keep_prefix` are columns of the prompt
dataset (`flows.train.grpo_dataset` builds them from stored campaigns), repeated by TRL for
every completion of a prompt.

For each completion, in order:
  1. its text (a string, or the assistant messages of a conversational completion; anything
     else reads as no text) is parsed into a program exactly as a campaign parses a response:
     `apply_continuation(parent_program, keep_prefix, text)`;
  2. every distinct parsed program is scored by `problems.evaluate.evaluate` in the sandbox,
     with the problem's limits and candidate environment, `eval_slots` at a time; a problem
     that caches evaluations reuses the stored evaluation of an identical program;
  3. the reward is discovery.training.reward_of: the fitness of an ok program, else the
     invalid reward (discovery.training.invalid_reward_for: from the seed's score unless given);
  4. everything is stored as a campaign of its own per problem (strategy "grpo", created on
     the first call, status running until close()): its seed evaluation; each reward call is one
     trajectory; each group of completions answering one prompt is one move of it, each
     completion one sample (step: prompt messages, completion text, status ok/parse_error;
     candidate: the program, with the prompt's parent program as its parent, stored once as a
     "parent" candidate; evaluation). The step's bookkeeping holds the reward, the trainer's
     global step and the source step of the prompt; the best ok sample of a group is
     committed. So rollouts are browsable in the dashboard and exportable like any trajectory.

Hostile and broken completions cost one evaluation each, never the training run: a program
that hangs, forks, floods or escapes is bounded by the sandbox, and garbage (None, numbers,
megabytes of text, NUL bytes, unclosed fences) gets the invalid reward. A sandbox that itself
fails (the backend is unavailable) is retried once and then raised, as in a campaign: a reward
function that silently scored nothing would train on noise.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import threading
from typing import Any, Callable, Sequence

from db import repository as repo
from db.engine import get_engine
from discovery.edits import ParseError, apply_continuation, unified_diff
from discovery.training import (
    MAX_COMPLETION_CHARS,
    completion_text,
    group_keys,
    invalid_reward_for,
    prompt_messages,
    reward_of,
)
from discovery.types import OK, Evaluation, program_hash
from flows.campaign import cache_key, evaluation_fields
from problems import get_problem
from problems.base import Problem
from problems.evaluate import evaluate

REWARD_STRATEGY = "grpo"  # the strategy name of a reward campaign
MODE = "grpo"  # the mode of its steps


@dataclasses.dataclass
class _RewardCampaign:
    campaign_id: int
    problem: Problem
    invalid_reward: float
    scored: int = 0


@dataclasses.dataclass(frozen=True)
class Scored:
    """One completion of a reward call: what was parsed and what it earned."""

    reward: float
    status: str  # the evaluation's status, or "parse_error"
    score: float | None
    error: str  # the parse error, or the evaluation's first feedback line
    step_id: int
    candidate_id: int | None


class SandboxReward:
    """TRL reward function: completions -> sandboxed trusted scores -> one float each, stored."""

    __name__ = "sandbox_reward"  # TRL names a reward function's metrics after it

    def __init__(
        self,
        *,
        db_url: str | None = None,
        sandbox: str = "auto",
        eval_slots: int = 2,
        invalid_reward: float | None = None,
        model: str = "trainee",
        training_run_id: int | None = None,
        on_campaign: Callable[[str, int], None] | None = None,
        problems: dict[str, Problem] | None = None,
    ) -> None:
        from sandbox import get_sandbox

        if eval_slots < 1:
            raise ValueError(f"eval_slots must be at least 1, not {eval_slots}")
        self.engine = get_engine(db_url)
        self.sandbox_name = sandbox
        self.box = get_sandbox(sandbox)
        self.eval_slots = eval_slots
        self.invalid_override = invalid_reward
        self.model = model
        self.training_run_id = training_run_id
        self.on_campaign = on_campaign
        self.problems = dict(problems or {})  # name -> Problem, before the registry (custom limits, say)
        self._campaigns: dict[str, _RewardCampaign] = {}
        self._lock = threading.Lock()
        self.last: list[Scored] = []  # the previous call's completions, for logging and tests

    # -- the reward campaigns ---------------------------------------------------

    @property
    def campaign_ids(self) -> dict[str, int]:
        return {name: rc.campaign_id for name, rc in self._campaigns.items()}

    def _campaign(self, problem_name: str) -> _RewardCampaign:
        rc = self._campaigns.get(problem_name)
        if rc is not None:
            return rc
        problem = self.problems.get(problem_name) or get_problem(problem_name)
        config = {"kind": "grpo_rewards", "problem": problem_name, "sandbox": self.sandbox_name,
                  "eval_slots": self.eval_slots, "invalid_reward": self.invalid_override,
                  "training_run": self.training_run_id, "model": self.model}
        run = f" (training run {self.training_run_id})" if self.training_run_id is not None else ""
        campaign_id = repo.create_campaign(
            self.engine, name=f"{problem.name}/grpo rewards{run}", problem=problem_name, strategy=REWARD_STRATEGY,
            model=self.model, seed=0, budget=0, direction=problem.direction,
            evaluator_version=problem.evaluator_version, config=config,
        )
        repo.set_campaign_status(self.engine, campaign_id, "running")
        seed = problem.seed_program
        seed_id = repo.ensure_seed_candidate(self.engine, campaign_id, seed, program_hash(seed))
        seed_ev = self._evaluate(problem, seed)
        repo.record_evaluation(self.engine, campaign_id=campaign_id, candidate_id=seed_id,
                               cache_key=cache_key(problem, seed_id, seed), fields=evaluation_fields(seed_ev))
        rc = _RewardCampaign(campaign_id, problem, invalid_reward_for(seed_ev.score, problem.direction,
                                                                      self.invalid_override))
        self._campaigns[problem_name] = rc
        if self.on_campaign is not None:
            self.on_campaign(problem_name, campaign_id)
        return rc

    def close(self, status: str = "completed", error: str = "") -> None:
        """Ends every reward campaign (status completed, or failed/interrupted with `error`),
        its budget set to the number of completions it scored."""
        for rc in self._campaigns.values():
            repo.set_campaign_budget(self.engine, rc.campaign_id, rc.scored)
            repo.set_campaign_status(self.engine, rc.campaign_id, status, error=error)

    # -- scoring ------------------------------------------------------------------

    def _evaluate(self, problem: Problem, code: str) -> Evaluation:
        try:
            return evaluate(problem, code, self.box)
        except Exception:  # noqa: BLE001 - the sandbox itself failed: once more, then raise
            return evaluate(problem, code, self.box)

    def __call__(
        self,
        prompts: Sequence[Any] | None = None,
        completions: Sequence[Any] | None = None,
        problem: Sequence[str] | str | None = None,
        parent_program: Sequence[str] | str | None = None,
        keep_prefix: Sequence[str] | str | None = None,
        source_step_id: Sequence[int] | None = None,
        trainer_state: Any = None,
        log_metric: Callable[[str, float], None] | None = None,
        **_: Any,
    ) -> list[float]:
        completions = list(completions or [])
        n = len(completions)
        prompts = list(prompts) if prompts is not None else [[] for _ in range(n)]
        problems = _column(problem, n, "problem")
        parents = _column(parent_program, n, "parent_program")
        keeps = _column(keep_prefix, n, "keep_prefix", default="")
        sources = list(source_step_id) if source_step_id is not None else [None] * n
        if len(prompts) != n or len(sources) != n:
            raise ValueError(f"the reward function got {n} completions but {len(prompts)} prompts: one prompt each")
        global_step = int(getattr(trainer_state, "global_step", 0) or 0)
        with self._lock:  # one call at a time: trajectory numbers are taken per call
            scored = self._score(prompts, completions, problems, parents, keeps, sources, global_step)
        self.last = scored
        if log_metric is not None and scored:
            ok = sum(s.status == OK for s in scored)
            log_metric("sandbox_ok_fraction", ok / len(scored))
            log_metric("sandbox_parse_error_fraction", sum(s.status == "parse_error" for s in scored) / len(scored))
        return [s.reward for s in scored]

    def _score(self, prompts, completions, problems, parents, keeps, sources, global_step) -> list[Scored]:
        n = len(completions)
        texts = [completion_text(c) for c in completions]
        groups = group_keys(prompts, problems, parents)
        trajectories: dict[str, int] = {}
        rows: list[dict[str, Any]] = []
        for i in range(n):
            rc = self._campaign(problems[i])
            if problems[i] not in trajectories:
                index = repo.next_trajectory_index(self.engine, rc.campaign_id)
                trajectories[problems[i]] = repo.ensure_trajectory(self.engine, rc.campaign_id, index, kind="grpo")
            code, error = _parse(parents[i], keeps[i], texts[i])
            parent_id = repo.ensure_parent_candidate(self.engine, rc.campaign_id, parents[i], program_hash(parents[i]))
            candidate = None
            if code is not None:
                candidate = {"code": code, "program_hash": program_hash(code), "parent_ids": [parent_id],
                             "diff": unified_diff(parents[i], code)}
            group, sample = groups[i]
            step_id, cand_id = repo.record_step(
                self.engine, campaign_id=rc.campaign_id, trajectory_id=trajectories[problems[i]], index=group,
                sample=sample, mode=MODE, messages=prompt_messages(prompts[i]), parent_candidate_id=parent_id,
                response=texts[i], model=self.model, prompt_tokens=0, completion_tokens=0, cost_usd=0.0,
                latency_s=0.0, attempts=1, status="ok" if code is not None else "parse_error", error=error,
                candidate=candidate,
            )
            rc.scored += 1
            rows.append({"rc": rc, "code": code, "error": error, "step_id": step_id, "candidate_id": cand_id,
                         "group": group, "sample": sample})
        evaluations = self._evaluate_all(rows)
        out = []
        for row in rows:
            rc = row["rc"]
            ev = evaluations.get(row["candidate_id"]) if row["candidate_id"] is not None else None
            if ev is None:
                out.append(Scored(rc.invalid_reward, "parse_error", None, row["error"], row["step_id"], None))
                continue
            status, score, feedback = ev
            error = "" if status == OK else (feedback.splitlines() or [status])[0][:300]
            out.append(Scored(reward_of(status, score, rc.problem.direction, rc.invalid_reward), status, score,
                              error, row["step_id"], row["candidate_id"]))
        self._finish_moves(rows, out, global_step, sources)
        return out

    def _evaluate_all(self, rows: list[dict[str, Any]]) -> dict[int, tuple[str, float | None, str]]:
        """Scores every parsed program (distinct programs once when the problem caches), stores
        each evaluation and links it to its candidates; candidate id -> (status, score, feedback)."""
        jobs: dict[tuple[int, str], list[int]] = {}  # (campaign, cache key) -> candidate ids
        codes: dict[tuple[int, str], tuple[_RewardCampaign, str]] = {}
        for row in rows:
            if row["candidate_id"] is None:
                continue
            rc = row["rc"]
            key = (rc.campaign_id, cache_key(rc.problem, row["candidate_id"], row["code"]))
            jobs.setdefault(key, []).append(row["candidate_id"])
            codes[key] = (rc, row["code"])
        results: dict[int, tuple[str, float | None, str]] = {}

        def one(key: tuple[int, str]) -> None:
            rc, code = codes[key]
            first, *rest = jobs[key]
            stored = repo.find_evaluation(self.engine, rc.campaign_id, key[1])
            if stored is not None:
                ev_id, outcome = stored.id, (stored.status, stored.score, stored.feedback)
                repo.link_evaluation(self.engine, first, ev_id)
            else:
                ev = self._evaluate(rc.problem, code)
                ev_id = repo.record_evaluation(self.engine, campaign_id=rc.campaign_id, candidate_id=first,
                                               cache_key=key[1], fields=evaluation_fields(ev))
                outcome = (ev.status, ev.score, ev.feedback)
            for cand_id in rest:
                repo.link_evaluation(self.engine, cand_id, ev_id)
            for cand_id in jobs[key]:
                results[cand_id] = outcome

        with concurrent.futures.ThreadPoolExecutor(self.eval_slots, thread_name_prefix="reward-eval") as pool:
            for fut in [pool.submit(one, key) for key in jobs]:
                fut.result()
        return results

    def _finish_moves(self, rows, scored: list[Scored], global_step: int, sources) -> None:
        moves: dict[tuple[int, int], list[int]] = {}
        for i, row in enumerate(rows):
            moves.setdefault((row["rc"].campaign_id, row["group"]), []).append(i)
        for members in moves.values():
            ok = [i for i in members if scored[i].status == OK]  # an ok program's reward is its fitness
            best = max(ok, key=lambda i: (scored[i].reward, -i), default=None)
            bookkeeping = {rows[i]["sample"]: {"reward": scored[i].reward, "trainer_step": global_step,
                                               "source_step_id": sources[i]} for i in members}
            repo.finish_move(self.engine, {rows[i]["sample"]: scored[i].step_id for i in members},
                             rows[best]["sample"] if best is not None else None, bookkeeping)


def _column(values: Sequence[Any] | Any, n: int, name: str, default: Any = None) -> list[Any]:
    """A per-completion column: a list of n values, or one value for every completion."""
    if values is None:
        if default is not None:
            return [default] * n
        raise ValueError(f"the reward function needs the dataset column {name!r} (one per prompt)")
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        return [values] * n
    values = list(values)
    if len(values) != n:
        raise ValueError(f"the reward function got {n} completions but {len(values)} values of {name!r}")
    return [default if v is None and default is not None else v for v in values]


def _parse(parent: str, keep: str, text: str) -> tuple[str | None, str]:
    """(program, "") or (None, why it did not parse), as a campaign's propose task parses."""
    if not text.strip():
        return None, "empty completion"
    if len(text) > MAX_COMPLETION_CHARS:
        return None, f"completion of {len(text)} characters is longer than {MAX_COMPLETION_CHARS}"
    try:
        return apply_continuation(parent, keep or "", text), ""
    except ParseError as exc:
        return None, str(exc)
    except (ValueError, SyntaxError, RecursionError, MemoryError) as exc:  # e.g. NUL bytes in compile()
        return None, f"{type(exc).__name__}: {exc}"[:500]
