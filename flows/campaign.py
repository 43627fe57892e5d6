"""The campaign flow: wires a strategy to a proposer, a sandbox and the database.

One Prefect flow run per campaign execution (a run or a resume). Two kinds of small tasks,
each with one side effect:
  - `propose`: one proposer call -> one Step row (+ its Candidate when the response parses);
  - `evaluate`: one sandboxed evaluation -> one Evaluation row (or a link to the stored one).
The flow keeps up to `llm_concurrency` proposals and `eval_slots` evaluations in flight,
independently, so a slow model never idles the sandbox slots and vice versa.

Resuming is re-running: the strategy is deterministic given the campaign seed and what it has
observed, so it asks for the same moves again, and the flow answers every sample that the
database already holds (step, candidate, evaluation) from the database, proposing and
evaluating only what is missing. Progress is derived from completed rows, never from counters.

Where evaluations run is the campaign's `eval_on` setting. "local" (the default): evaluate tasks
run in this process's task runner. "workers": the flow defers each evaluate task
(`evaluate_task.delay`) to Prefect task workers (`discovery worker`, flows.workers), on this or
other machines; a worker loads the campaign from the shared database, evaluates, and stores the
Evaluation row there (marking it with `metrics["_worker"]` = host:pid), and the flow, once the
task run has finished, reads the row back from the database (no shared result storage needed
for results; the task's parameters travel through Prefect's task-scheduling storage).
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import dataclasses
import os
import socket
import threading
import time
from collections import deque
from typing import Any, Callable

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture
from prefect.task_runners import ThreadPoolTaskRunner
from sqlalchemy import Engine

from db import repository as repo
from db.engine import get_engine
from discovery.config import CampaignConfig
from discovery.edits import ParseError, apply_continuation, unified_diff
from discovery.proposers.base import Proposer
from discovery.strategy import Move, Node, Outcome, Strategy
from discovery.types import Evaluation, better, program_hash
from problems.base import Problem
from problems.evaluate import evaluate as run_evaluation
from sandbox.base import Sandbox

ProgressFn = Callable[["Progress"], None]


@dataclasses.dataclass(frozen=True)
class Progress:
    """A snapshot for progress displays."""

    done: int  # samples with an outcome
    total: int  # the campaign's budget in samples
    best_score: float | None
    seed_score: float | None


@dataclasses.dataclass
class Runtime:
    """What the tasks of one campaign execution share in this process (never a task parameter)."""

    campaign_id: int
    engine: Engine
    config: CampaignConfig
    problem: Problem
    sandbox: Sandbox
    proposer: Proposer
    cost_usd: float = 0.0
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)


_RUNTIMES: dict[int, Runtime] = {}
_PROGRESS: dict[int, ProgressFn] = {}
_WORKER_RUNTIMES: dict[tuple[str, int], Runtime] = {}  # a task worker's campaigns, by (db url, id)
_WORKER_LOCK = threading.Lock()
WORKER_KEY = "_worker"  # reserved metrics key: where a worker-run evaluation ran (host:pid)


def register_runtime(rt: Runtime, progress: ProgressFn | None = None) -> None:
    _RUNTIMES[rt.campaign_id] = rt
    if progress is not None:
        _PROGRESS[rt.campaign_id] = progress


def registered_runtime(campaign_id: int) -> Runtime:
    return _RUNTIMES[campaign_id]


def registered_progress(campaign_id: int) -> ProgressFn | None:
    return _PROGRESS.get(campaign_id)


def unregister_runtime(campaign_id: int) -> None:
    _RUNTIMES.pop(campaign_id, None)
    _PROGRESS.pop(campaign_id, None)


@dataclasses.dataclass(frozen=True)
class Proposed:
    step_id: int
    candidate_id: int | None
    code: str | None
    error: str
    cost_usd: float
    text: str = ""


@dataclasses.dataclass(frozen=True)
class Evaluated:
    evaluation_id: int
    status: str
    score: float | None
    feedback: str
    metrics: dict[str, Any]


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _worker_runtime(campaign_id: int) -> Runtime:
    """A task worker's view of a campaign: its config, problem and sandbox, loaded from the
    worker's database (DISCOVERY_DB_URL) once per process; no proposer."""
    from flows.factory import make_runtime
    from problems import get_problem

    engine = get_engine()
    key = (str(engine.url), campaign_id)
    with _WORKER_LOCK:
        rt = _WORKER_RUNTIMES.get(key)
        if rt is None:
            row = repo.get_campaign(engine, campaign_id)
            cfg = CampaignConfig.model_validate(row.config)
            rt = _WORKER_RUNTIMES[key] = make_runtime(campaign_id, engine, cfg, get_problem(cfg.problem), None)
        return rt


def public_metrics(metrics: Any) -> dict[str, Any]:
    """An evaluation's metrics as the strategy and prompts see them (without the worker mark)."""
    out = dict(metrics or {})
    out.pop(WORKER_KEY, None)
    return out


def cache_key(problem: Problem, candidate_id: int, code: str) -> str:
    return program_hash(code) if problem.cache_evaluations else f"candidate:{candidate_id}"


@task(name="propose", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[1, 5])
def propose_task(campaign_id: int, trajectory_id: int, move: Move, sample: int) -> Proposed:
    """Asks the proposer for one sample of a move and stores the step (and candidate).

    A "program" move's response is parsed into a candidate; a "text" move's response (a
    reflection) is stored as it is and handed back to the strategy.
    """
    rt = _RUNTIMES[campaign_id]
    proposal = rt.proposer.propose(move, sample)
    status, error, code, candidate = "ok", proposal.error, None, None
    if proposal.error:
        status = "llm_error"
    elif move.answer == "program":
        try:
            code = apply_continuation(move.parent.code, move.keep_prefix, proposal.text)
        except ParseError as exc:
            status, error = "parse_error", str(exc)
    if code is not None:
        candidate = {
            "code": code,
            "program_hash": program_hash(code),
            "parent_ids": [move.parent.ref],
            "diff": unified_diff(move.parent.code, code),
        }
    step_id, candidate_id = repo.record_step(
        rt.engine,
        campaign_id=campaign_id,
        trajectory_id=trajectory_id,
        index=move.index,
        sample=sample,
        mode=move.mode,
        messages=move.messages,
        parent_candidate_id=move.parent.ref,
        response=proposal.text,
        model=proposal.model,
        prompt_tokens=proposal.prompt_tokens,
        completion_tokens=proposal.completion_tokens,
        cost_usd=proposal.cost_usd,
        latency_s=proposal.latency_s,
        attempts=proposal.attempts,
        status=status,
        error=error,
        candidate=candidate,
    )
    return Proposed(step_id, candidate_id, code, error, proposal.cost_usd, proposal.text)


@task(name="evaluate", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=1)
def evaluate_task(campaign_id: int, candidate_id: int, code: str) -> Evaluated:
    """Scores one candidate in the sandbox (or reuses the stored evaluation of the same program).

    In the campaign's own process it uses the registered Runtime; in a task worker (eval_on
    "workers") it loads the campaign from the worker's database and marks the row with where
    it ran (metrics["_worker"]).
    """
    rt = _RUNTIMES.get(campaign_id)
    remote = rt is None
    if remote:
        rt = _worker_runtime(campaign_id)
    key = cache_key(rt.problem, candidate_id, code)
    stored = repo.find_evaluation(rt.engine, campaign_id, key)
    if stored is not None:
        repo.link_evaluation(rt.engine, candidate_id, stored.id)
        return _evaluated(stored.id, stored)
    ev = run_evaluation(rt.problem, code, rt.sandbox)
    fields = evaluation_fields(ev)
    if remote:
        fields["metrics"][WORKER_KEY] = worker_id()
    ev_id = repo.record_evaluation(
        rt.engine, campaign_id=campaign_id, candidate_id=candidate_id, cache_key=key, fields=fields
    )
    return _evaluated(ev_id, ev)


def evaluation_fields(ev: Evaluation) -> dict[str, Any]:
    return {
        "status": ev.status,
        "score": ev.score,
        "metrics": dict(ev.metrics),
        "feedback": ev.feedback,
        "stdout": ev.stdout,
        "stderr": ev.stderr,
        "duration_s": ev.duration_s,
        "cpu_s": ev.cpu_s,
        "backend": ev.backend,
        "evaluator_version": ev.evaluator_version,
    }


def _evaluated(ev_id: int, ev: Any) -> Evaluated:
    return Evaluated(ev_id, ev.status, ev.score, ev.feedback, public_metrics(ev.metrics))


def submit_to_worker(rt: Runtime, candidate_id: int, code: str, waiters: concurrent.futures.Executor
                     ) -> concurrent.futures.Future:
    """Defers one evaluation to the task workers (from the flow's thread, so the task run belongs
    to the flow run) and returns a future of its Evaluated, read from the database once the task
    run has finished."""
    deferred = evaluate_task.delay(rt.campaign_id, candidate_id, code)
    # the waiting thread sees this thread's Prefect context (its settings: the API it talks to)
    return waiters.submit(contextvars.copy_context().run, _await_worker, rt, deferred, candidate_id)


NO_STATE_YET = "has no state"  # Prefect: the deferred task run exists, its Scheduled state not yet
NO_STATE_PATIENCE_S = 10.0


def _await_worker(rt: Runtime, deferred: Any, candidate_id: int) -> Evaluated:
    # `wait()` right after `delay()` can read the task run before Prefect has given it its first
    # state and raise; that is a race in the client, not a failed evaluation: ask again shortly.
    deadline = time.monotonic() + NO_STATE_PATIENCE_S
    while True:
        try:
            deferred.wait()
            break
        except RuntimeError as exc:
            if NO_STATE_YET not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    state = deferred.state
    if not state.is_completed():
        raise RuntimeError(
            f"evaluation of candidate {candidate_id} on a worker ended {state.name}: {state.message or ''}".rstrip(": "))
    _, stored = repo.get_candidate(rt.engine, candidate_id)
    if stored is None:
        raise RuntimeError(f"the worker finished candidate {candidate_id} but stored no evaluation for it")
    return _evaluated(stored.id, stored)


@dataclasses.dataclass
class _MoveState:
    move: Move
    trajectory_id: int
    outcomes: dict[int, Outcome] = dataclasses.field(default_factory=dict)
    step_ids: dict[int, int] = dataclasses.field(default_factory=dict)
    texts: dict[int, str] = dataclasses.field(default_factory=dict)  # raw responses by sample

    @property
    def complete(self) -> bool:
        return len(self.outcomes) == self.move.samples


class _Loop:
    """The flow's event loop: issue moves, keep work in flight, feed outcomes back."""

    def __init__(self, rt: Runtime, strategy: Strategy, progress: ProgressFn | None) -> None:
        self.rt = rt
        self.strategy = strategy
        self.progress = progress
        self.moves: dict[tuple[int, int], _MoveState] = {}
        self.ordered = bool(getattr(strategy, "ordered", False))
        self.issue_order: deque[tuple[int, int]] = deque()  # ordered strategies only
        self.trajectory_ids: dict[int, int] = {}
        self.to_propose: deque[tuple[tuple[int, int], int]] = deque()
        self.to_evaluate: deque[tuple[tuple[int, int], int, int, str]] = deque()
        self.in_flight: dict[concurrent.futures.Future, tuple[str, Any, PrefectFuture | concurrent.futures.Future]] = {}
        self.n_proposing = 0
        self.n_evaluating = 0
        self.done_samples = 0
        self.best: float | None = None
        self.seed_score: float | None = None
        self.stopped_reason = ""
        self.waiters: concurrent.futures.ThreadPoolExecutor | None = None  # eval_on "workers" only
        if rt.config.eval_on == "workers":
            self.waiters = concurrent.futures.ThreadPoolExecutor(rt.config.eval_slots, thread_name_prefix="eval-wait")

    # -- bookkeeping ----------------------------------------------------------

    def _trajectory(self, index: int) -> int:
        if index not in self.trajectory_ids:
            self.trajectory_ids[index] = repo.ensure_trajectory(self.rt.engine, self.rt.campaign_id, index)
        return self.trajectory_ids[index]

    def _outcome(self, key: tuple[int, int], sample: int, outcome: Outcome) -> None:
        state = self.moves[key]
        state.outcomes[sample] = outcome
        self.done_samples += 1
        node = outcome.node
        if node is not None and node.score is not None:
            if self.best is None or better(node.score, self.best, self.rt.problem.direction):
                self.best = node.score
        if state.complete:
            if not self.ordered:
                self._observe(key)
            # an ordered strategy sees moves in issue order: hold back a finished move until
            # every move issued before it has finished, so completion timing changes nothing
            while self.issue_order and self.moves[self.issue_order[0]].complete:
                self._observe(self.issue_order.popleft())
        self._report()

    def _observe(self, key: tuple[int, int]) -> None:
        state = self.moves.pop(key)
        outcomes = [state.outcomes[s] for s in range(state.move.samples)]
        result = self.strategy.observe(state.move, outcomes)
        repo.finish_move(
            self.rt.engine,
            state.step_ids,
            result.committed,
            {s: dict(b) for s, b in result.bookkeeping.items()},
        )

    def _report(self) -> None:
        if self.progress is not None:
            self.progress(Progress(self.done_samples, self.strategy.total_samples(), self.best, self.seed_score))

    @staticmethod
    def _node(candidate_id: int, code: str, ev: Evaluated) -> Node:
        return Node(candidate_id, code, ev.score, ev.status, ev.feedback, ev.metrics)

    # -- issuing --------------------------------------------------------------

    def issue_moves(self) -> None:
        """Issues every move the strategy offers; moves answered wholly from the database
        (a resume) finish at once and may unlock further moves, so repeat until none is new."""
        while moves := self.strategy.next_moves():
            for move in moves:
                self._issue(move)

    def _issue(self, move: Move) -> None:
        key = (move.trajectory, move.index)
        traj_id = self._trajectory(move.trajectory)
        if key in self.moves:
            raise RuntimeError(f"strategy issued move {key} twice (a strategy bug)")
        self.moves[key] = _MoveState(move, traj_id)
        if self.ordered:
            self.issue_order.append(key)
        stored = repo.load_move(self.rt.engine, traj_id, move.index)
        for sample in range(move.samples):
            hit = stored.get(sample)
            if hit is None:
                self.to_propose.append((key, sample))
                continue
            self.moves[key].step_ids[sample] = hit.step.id
            self.moves[key].texts[sample] = text = hit.step.response or ""
            if hit.candidate is None:
                error = hit.step.error or ("" if hit.step.status == "ok" else hit.step.status)
                self._outcome(key, sample, Outcome(sample, None, error, text))
            elif hit.evaluation is not None:
                ev = hit.evaluation
                evd = Evaluated(ev.id, ev.status, ev.score, ev.feedback, public_metrics(ev.metrics))
                node = self._node(hit.candidate.id, hit.candidate.code, evd)
                self._outcome(key, sample, Outcome(sample, node, text=text))
            else:
                self.to_evaluate.append((key, sample, hit.candidate.id, hit.candidate.code))

    def _cost_capped(self) -> bool:
        cap = self.rt.config.max_cost_usd
        return cap is not None and self.rt.cost_usd >= cap

    def submit(self) -> None:
        cfg = self.rt.config
        while self.to_evaluate and self.n_evaluating < cfg.eval_slots:
            key, sample, cand_id, code = self.to_evaluate.popleft()
            if self.waiters is not None:
                remote = submit_to_worker(self.rt, cand_id, code, self.waiters)
                self.in_flight[remote] = ("evaluate", (key, sample, cand_id, code), remote)
            else:
                fut = evaluate_task.submit(self.rt.campaign_id, cand_id, code)
                self.in_flight[fut.wrapped_future] = ("evaluate", (key, sample, cand_id, code), fut)
            self.n_evaluating += 1
        while self.to_propose and self.n_proposing < cfg.llm_concurrency and not self._cost_capped():
            key, sample = self.to_propose.popleft()
            state = self.moves[key]
            fut = propose_task.submit(self.rt.campaign_id, state.trajectory_id, state.move, sample)
            self.in_flight[fut.wrapped_future] = ("propose", (key, sample), fut)
            self.n_proposing += 1

    # -- completion -----------------------------------------------------------

    def collect(self) -> None:
        done, _ = concurrent.futures.wait(list(self.in_flight), return_when=concurrent.futures.FIRST_COMPLETED)
        for raw in done:
            kind, info, fut = self.in_flight.pop(raw)
            result = fut.result()  # raises if the task failed after its retries
            if kind == "propose":
                self.n_proposing -= 1
                key, sample = info
                self.moves[key].step_ids[sample] = result.step_id
                self.moves[key].texts[sample] = result.text
                with self.rt.lock:
                    self.rt.cost_usd += result.cost_usd
                if result.candidate_id is None:
                    self._outcome(key, sample, Outcome(sample, None, result.error, result.text))
                else:
                    self.to_evaluate.append((key, sample, result.candidate_id, result.code))
            else:
                self.n_evaluating -= 1
                key, sample, cand_id, code = info
                text = self.moves[key].texts.get(sample, "")
                self._outcome(key, sample, Outcome(sample, self._node(cand_id, code, result), text=text))

    def run(self) -> None:
        try:
            self._run()
        finally:
            if self.waiters is not None:
                self.waiters.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> None:
        while True:
            self.issue_moves()
            self.submit()
            if not self.in_flight:
                if self.strategy.done():
                    return
                if self._cost_capped():
                    self.stopped_reason = f"cost cap of ${self.rt.config.max_cost_usd} reached"
                    return
                raise RuntimeError("strategy stalled: no move in flight and none issued (a strategy bug)")
            self.collect()


def evaluate_seed(rt: Runtime) -> Node:
    code = rt.problem.seed_program
    cand_id = repo.ensure_seed_candidate(rt.engine, rt.campaign_id, code, program_hash(code))
    cand, stored = repo.get_candidate(rt.engine, cand_id)
    if stored is not None:
        ev = Evaluated(stored.id, stored.status, stored.score, stored.feedback, public_metrics(stored.metrics))
    elif rt.config.eval_on == "workers":
        with concurrent.futures.ThreadPoolExecutor(1) as waiter:
            ev = submit_to_worker(rt, cand_id, code, waiter).result()
    else:
        ev = evaluate_task(rt.campaign_id, cand_id, code)
    return Node(cand_id, code, ev.score, ev.status, ev.feedback, ev.metrics)


@flow(name="campaign", log_prints=False, persist_result=False)
def campaign_flow(campaign_id: int) -> dict[str, Any]:
    """Runs (or resumes) campaign `campaign_id` to the end of its budget.

    The process must have registered the campaign's Runtime first (flows.api does that).
    """
    from flows.factory import make_strategy

    # Reaches the registries through functions, not the dicts: cloudpickle copies this function's
    # globals when a deferred task (eval_on "workers") serializes the flow-run context.
    rt = registered_runtime(campaign_id)
    rt.cost_usd = repo.campaign_cost(rt.engine, campaign_id)  # a resume continues the spend
    strategy = make_strategy(rt.config, rt.problem)
    seed_node = evaluate_seed(rt)
    strategy.start(seed_node)
    loop = _Loop(rt, strategy, registered_progress(campaign_id))
    loop.seed_score = seed_node.score
    loop.run()
    best = strategy.best()
    return {
        "campaign_id": campaign_id,
        "samples": loop.done_samples,
        "best_score": best.score if best else None,
        "stopped_reason": loop.stopped_reason,
    }


def run_flow(rt: Runtime, progress: ProgressFn | None = None) -> dict[str, Any]:
    """Runs campaign_flow for a registered runtime with the right task-runner width."""
    register_runtime(rt, progress)
    try:
        workers = rt.config.llm_concurrency + rt.config.eval_slots + 1
        return campaign_flow.with_options(task_runner=ThreadPoolTaskRunner(max_workers=workers))(rt.campaign_id)
    finally:
        unregister_runtime(rt.campaign_id)


__all__ = ["Progress", "Runtime", "campaign_flow", "run_flow", "get_engine"]
