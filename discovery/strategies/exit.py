"""ExIt (Exploratory Iteration) as an inference-time search loop.

A *task instance* is a program to iterate on: a parent Node with its score and feedback, its
depth (self-iterations applied since the seed), its informativeness S, its id and its parent
instance's id. The *base instance* (id 0, depth 0) is the problem with the seed program; it is
never stored in the buffer.

One *pick* is one Move of G samples from a single prompt:
1. Select. With at least `min_buffer` instances in the buffer and probability `p_select`, pick a
   buffer instance with probability exp(kappa * S_i) / sum_j exp(kappa * S_j) (`softmax_pick`);
   otherwise the base instance.
2. Prompt mode. Base instance: "base" (improve the seed). Buffer instance: "diverge" with
   probability `p_diverge` (describe the current approach, name a substantially different one,
   write the whole new evolve block with it), else "debug" when the parent's status is not ok,
   else "improve".
3. The flow samples and evaluates the G children; `observe` scores them.

Normalised score. With f = fitness(score, direction) (higher is better, so maximisation and
minimisation are treated alike):

    r_norm(node) = clip((f - f_lo) / (f_hi - f_lo), 0, 1)

- f_hi is the best valid fitness observed so far, the seed and the group being scored included;
- f_lo is the seed's fitness when the seed is ok; when the seed failed, it is the worst valid
  fitness observed so far (the group being scored included), so everything scores 0 until two
  distinct valid values have been seen;
- failed or invalid children and samples with no program get r_norm = 0, and when
  f_hi <= f_lo every r_norm is 0.
The scale moves as better programs are found (it is non-stationary); f_lo and f_hi are stored
with every sample.

Rewards (`improvement_reward`): an improve or debug pick rewards a child with
max(0, (r_child - r_parent) / (1 - r_parent)), the fraction of the remaining headroom it closed
(when r_parent >= 1: 1 if the child is strictly better than the parent, else 0). A base or
diverge pick rewards a child with r_norm(child).

Informativeness S of the picked instance is the population variance of the G rewards (in
[0, 0.25]). The picked instance's S is replaced by it (if it is still in the buffer). Every
child that is a program (valid or not) and is neither the seed nor a program already in the
buffer enters as a new instance of depth parent depth + 1 whose S is inherited from its parent's
just-measured S (it is replaced once the child gets its own group); `InstanceBuffer.admit` keeps
the N instances of highest S, a newcomer replacing the oldest instance of minimum S when it
scores at least that minimum.

Advantages (`group_advantages`, stored for export, never used by the search): A_i =
(r_i - mean) / std over the group (0 when the rewards are all equal). With the diversity bonus
A_i is multiplied by d_i = ||e_i - c|| / max(max_j ||e_j - c|| - min_j ||e_j - c||, mean_j ||e_j - c||) (the
mean guards against a vanishing range; see centroid_diversity), where e_i is
the `discovery.embedding` vector of child i's program and c the centroid over the children that
have programs (`diversity_coefficients`; d_i = 1 without a program, or when every distance is 0).

Determinism with `parallel` picks in flight: picks 0..parallel-1 are built at start (from the
base instance, the buffer being empty); when `observe` finishes pick n, pick n + parallel is
built from the state right then. So pick i depends only on the observations of picks
0..i-parallel, in order (`ordered = True` makes the flow deliver them in order), never on the
timing; each pick's random draws come from move_rng(seed, 0, i, salt).

The answer is a separate best-so-far archive (the best ok node, the seed included, ties to the
earliest (pick, sample)): S chooses where to iterate, not what to return.
"""

from __future__ import annotations

import dataclasses
import math
import random
from typing import Any, Mapping, Sequence

import numpy as np

from discovery.embedding import embed_many
from discovery.prompts import PromptLimits, build_messages
from discovery.strategy import BestSoFar, Move, MoveResult, Node, Outcome, Task, move_rng, seed_for
from discovery.types import OK, fitness, program_hash

BASE_INSTANCE = 0  # id of the base instance (the seed program at depth 0)
MODES = ("base", "improve", "debug", "diverge")
_EPS = 1e-12


@dataclasses.dataclass(frozen=True)
class ExItParams:
    """ExIt's knobs (see `discovery.config.ExItSettings`) and prompt bounds.

    Attributes:
      budget: total samples; a positive multiple of `group` (picks = budget // group).
      group: G, children sampled from one prompt.
      capacity: N, instances the buffer holds.
      min_buffer: B_min, buffer size before instances are picked from it at all.
      p_select: probability of picking from the buffer (else the base instance).
      p_diverge: probability that a buffer pick uses the diverge prompt.
      kappa: inverse temperature of the softmax pick over S.
      diversity_bonus: scale each stored advantage by the child's centroid distance.
      parallel: picks in flight at once.
      max_code_chars: longest program text in a prompt.
      max_feedback_chars: longest evaluator feedback in a prompt.
      max_description_chars: longest task description in a prompt.
    """

    budget: int
    group: int = 8
    capacity: int = 64
    min_buffer: int = 8
    p_select: float = 0.5
    p_diverge: float = 0.2
    kappa: float = 10.0
    diversity_bonus: bool = True
    parallel: int = 2
    max_code_chars: int = 20_000
    max_feedback_chars: int = 2_000
    max_description_chars: int = 10_000

    def __post_init__(self) -> None:
        if self.group < 1:
            raise ValueError("ExItParams.group must be at least 1")
        if self.budget < 1 or self.budget % self.group:
            raise ValueError(
                f"ExItParams.budget must be a positive multiple of group ({self.group}), "
                f"got {self.budget}"
            )
        for field in ("capacity", "min_buffer", "parallel"):
            if getattr(self, field) < 1:
                raise ValueError(f"ExItParams.{field} must be at least 1")
        for field in ("p_select", "p_diverge"):
            if not 0.0 <= getattr(self, field) <= 1.0:
                raise ValueError(f"ExItParams.{field} must be in [0, 1]")
        if not (self.kappa >= 0.0 and math.isfinite(self.kappa)):
            raise ValueError("ExItParams.kappa must be finite and >= 0")

    @property
    def picks(self) -> int:
        """Moves in the campaign: budget // group."""
        return self.budget // self.group

    @property
    def limits(self) -> PromptLimits:
        return PromptLimits(
            code_chars=self.max_code_chars,
            feedback_chars=self.max_feedback_chars,
            description_chars=self.max_description_chars,
        )


# -- pure rules ------------------------------------------------------------------------------


def softmax_weights(scores: Sequence[float], kappa: float) -> list[float]:
    """exp(kappa * s_i) / sum_j exp(kappa * s_j), computed with the maximum subtracted."""
    if not scores:
        raise ValueError("softmax_weights needs at least one score")
    top = max(scores)
    raw = [math.exp(kappa * (s - top)) for s in scores]
    total = math.fsum(raw)
    return [w / total for w in raw]


def softmax_pick(scores: Sequence[float], kappa: float, rng: random.Random) -> int:
    """An index drawn with probability `softmax_weights(scores, kappa)`; one rng.random() draw."""
    weights = softmax_weights(scores, kappa)
    u = rng.random()
    acc = 0.0
    for i, w in enumerate(weights):
        acc += w
        if u < acc:
            return i
    return len(weights) - 1  # rounding left u just above the last cumulative sum


def normalised_score(f: float, f_lo: float, f_hi: float) -> float:
    """clip((f - f_lo) / (f_hi - f_lo), 0, 1); 0 when f is not finite or f_hi <= f_lo."""
    if not (math.isfinite(f) and math.isfinite(f_lo) and math.isfinite(f_hi)) or f_hi <= f_lo:
        return 0.0
    return min(1.0, max(0.0, (f - f_lo) / (f_hi - f_lo)))


def improvement_reward(r_child: float, r_parent: float, child_better: bool) -> float:
    """max(0, (r_child - r_parent) / (1 - r_parent)).

    When r_parent >= 1 (the parent is the best seen), 1 if child_better else 0.
    """
    if r_parent >= 1.0:
        return 1.0 if child_better else 0.0
    return max(0.0, (r_child - r_parent) / (1.0 - r_parent))


def population_variance(values: Sequence[float]) -> float:
    """Mean squared deviation from the mean (exactly 0 when all values are equal)."""
    if not values or max(values) - min(values) <= _EPS:
        return 0.0
    mean = math.fsum(values) / len(values)
    return math.fsum((v - mean) ** 2 for v in values) / len(values)


def group_advantages(
    rewards: Sequence[float], diversity: Sequence[float] | None = None
) -> list[float]:
    """(r_i - mean) / std over the group (population std; all 0 if std is 0), times d_i if given."""
    var = population_variance(rewards)
    if var <= 0.0:
        return [0.0 for _ in rewards]
    mean = math.fsum(rewards) / len(rewards)
    std = math.sqrt(var)
    scale = diversity if diversity is not None else [1.0] * len(rewards)
    return [d * (r - mean) / std for r, d in zip(rewards, scale)]


def centroid_diversity(vectors: np.ndarray) -> list[float]:
    """d_i = ||e_i - c|| / max(range, mean) for the rows e_i, c their mean, where range is
    max_j ||e_j - c|| - min_j ||e_j - c|| and mean the mean distance.

    This is ExIt's "distance from the centroid divided by the group's range", with one guard:
    when the children are all about equally far from the centroid the range tends to 0 and the
    plain ratio explodes (values in the hundreds were seen on real groups), turning a bonus
    into noise; dividing by at least the mean distance keeps d_i around 1 in that case and
    leaves the usual case (range above the mean) untouched. Every d_i is 1 when there are
    fewer than two rows or all distances are 0.
    """
    if len(vectors) < 2:
        return [1.0] * len(vectors)
    centroid = vectors.mean(axis=0)
    distances = np.linalg.norm(vectors - centroid, axis=1)
    scale = max(float(distances.max() - distances.min()), float(distances.mean()))
    if scale <= _EPS:
        return [1.0] * len(vectors)
    return [float(d) / scale for d in distances]


def diversity_coefficients(codes: Sequence[str | None]) -> list[float]:
    """`centroid_diversity` of the embedded programs (`discovery.embedding`); None entries get 1.

    The centroid is taken over the programs that are not None (the samples that produced one).
    """
    present = [i for i, code in enumerate(codes) if code is not None]
    out = [1.0] * len(codes)
    if len(present) < 2:
        return out
    vectors = embed_many([code for code in codes if code is not None])
    for i, d in zip(present, centroid_diversity(vectors)):
        out[i] = d
    return out


def choose_mode(parent: Node, rng: random.Random, p_diverge: float) -> str:
    """The prompt mode of a buffer pick: diverge with p_diverge, else debug or improve."""
    if rng.random() < p_diverge:
        return "diverge"
    return "improve" if parent.status == OK else "debug"


# -- the buffer ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Instance:
    """A task instance: a program to iterate on, with its place in the lineage.

    Attributes:
      id: instance id (0 is the base instance; buffer instances count from 1 in creation order,
        so a smaller id is an older instance).
      node: the program (the parent of the picks made from this instance).
      depth: self-iterations since the seed (the base instance is 0).
      s: informativeness: the reward variance of its last group, or its parent's when it has
        had none.
      parent: id of the instance it was generated from (None for the base instance).
      measured: True once S comes from this instance's own group (not inherited).
    """

    id: int
    node: Node
    depth: int
    s: float
    parent: int | None
    measured: bool = False


class InstanceBuffer:
    """At most `capacity` instances, kept by highest informativeness S; order = creation order."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("InstanceBuffer capacity must be at least 1")
        self.capacity = capacity
        self._items: dict[int, Instance] = {}  # id -> instance, in insertion order
        self._hashes: dict[str, int] = {}  # program hash -> instance id

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, instance_id: object) -> bool:
        return instance_id in self._items

    def instances(self) -> list[Instance]:
        """The instances, oldest first."""
        return list(self._items.values())

    def get(self, instance_id: int) -> Instance | None:
        return self._items.get(instance_id)

    def holds_program(self, code: str) -> bool:
        """True when an instance with the same program text (up to trailing space) is stored."""
        return program_hash(code) in self._hashes

    def min_instance(self) -> Instance | None:
        """The instance with the lowest S; ties go to the oldest (smallest id)."""
        if not self._items:
            return None
        return min(self._items.values(), key=lambda inst: (inst.s, inst.id))

    def admit(self, instance: Instance) -> tuple[bool, Instance | None]:
        """Inserts `instance`; returns (admitted, evicted instance or None).

        Below capacity it is always inserted. At capacity it is inserted only when its S is at
        least the current minimum S, replacing the oldest instance with that minimum.
        """
        if instance.id in self._items:
            raise ValueError(f"instance {instance.id} is already in the buffer")
        evicted = None
        if len(self._items) >= self.capacity:
            lowest = self.min_instance()
            assert lowest is not None
            if instance.s < lowest.s:
                return False, None
            evicted = self._remove(lowest.id)
        self._items[instance.id] = instance
        self._hashes[program_hash(instance.node.code)] = instance.id
        return True, evicted

    def _remove(self, instance_id: int) -> Instance:
        instance = self._items.pop(instance_id)
        key = program_hash(instance.node.code)
        if self._hashes.get(key) == instance_id:
            del self._hashes[key]
        return instance

    def rescore(self, instance_id: int, s: float) -> bool:
        """Sets a stored instance's S to its measured value; False when it is no longer stored."""
        current = self._items.get(instance_id)
        if current is None:
            return False
        self._items[instance_id] = dataclasses.replace(current, s=s, measured=True)
        return True

    def pick(self, kappa: float, rng: random.Random) -> Instance:
        """An instance drawn by `softmax_pick` over S (in creation order)."""
        items = self.instances()
        if not items:
            raise ValueError("cannot pick from an empty buffer")
        return items[softmax_pick([inst.s for inst in items], kappa, rng)]


# -- prompts ---------------------------------------------------------------------------------


def instruction_for(task: Task, mode: str, parent: Node) -> str:
    """The closing instruction of a prompt of the given mode."""
    better = "higher" if task.direction == "maximize" else "lower"
    forms = "Change only the evolve block, and answer in one of the two forms."
    if mode == "base":
        failed = "" if parent.status == OK else (
            "It does not run correctly yet (see its feedback); make it work first. "
        )
        return (
            f"This is the starting program of the search. {failed}Write a version that scores "
            f"{better}: pick the most promising idea you see and implement it. {forms}"
        )
    if mode == "improve":
        return (
            f"Improve the current program so that it scores {better}. Read its metrics and "
            "feedback, find what limits it, and make the change that lifts that limit; a "
            f"bolder change is welcome when small tweaks would not move the score. {forms}"
        )
    if mode == "debug":
        return (
            f"The current program failed (status: {parent.status}). Find the cause of the "
            "failure shown in its evaluator feedback and fix it, keeping the program's idea "
            f"unless that idea is what cannot work; the fixed program should score {better}. "
            f"{forms}"
        )
    if mode == "diverge":
        return (
            "Write a program that solves the task with a substantially different approach from "
            "the current one, not a tuned variant of it. Answer in three parts: "
            "(1) describe the current program's approach in one or two sentences; "
            "(2) name a substantially different approach and say in a sentence why it could "
            f"score {better}; (3) write the whole new evolve block using that approach, markers "
            "included, in one fenced Python code block (Form 2), changing nothing outside it."
        )
    raise ValueError(f"unknown ExIt prompt mode {mode!r}; expected one of {MODES}")


# -- the strategy ----------------------------------------------------------------------------


@dataclasses.dataclass
class _Pick:
    """A built pick: its move and the instance it came from."""

    move: Move
    instance: Instance
    issued: bool = False


class ExIt:
    """The ExIt strategy (see the module docstring); implements `Strategy`."""

    name = "exit"
    ordered = True  # the buffer is shared by every pick

    def __init__(self, task: Task, params: ExItParams, seed: int) -> None:
        self.task = task
        self.params = params
        self.seed = seed
        self.buffer = InstanceBuffer(params.capacity)
        self._seed_node: Node | None = None
        self._base: Instance | None = None
        self._picks: dict[int, _Pick] = {}  # built, not yet observed
        self._observed = 0
        self._next_instance = BASE_INSTANCE + 1
        self._f_lo = -math.inf  # seed's fitness, or the worst valid fitness when the seed failed
        self._f_hi = -math.inf  # best valid fitness observed
        self._archive = BestSoFar(task.direction)

    # -- helpers -------------------------------------------------------------------------------

    def _fitness(self, node: Node | None) -> float:
        if node is None or node.status != OK:
            return -math.inf
        return fitness(node.score, self.task.direction)

    def r_norm(self, node: Node | None) -> float:
        """The node's normalised score on the current scale (see the module docstring)."""
        return normalised_score(self._fitness(node), self._f_lo, self._f_hi)

    @property
    def scale(self) -> tuple[float, float]:
        """(f_lo, f_hi) of the normalisation, in fitness units (higher is better)."""
        return self._f_lo, self._f_hi

    def _update_scale(self, nodes: Sequence[Node]) -> None:
        """Widens f_hi (and f_lo when the seed failed) with the valid nodes given."""
        values = [self._fitness(n) for n in nodes if n.status == OK]
        values = [v for v in values if math.isfinite(v)]
        if not values:
            return
        self._f_hi = max(self._f_hi, *values)
        seed_ok = self._seed_node is not None and self._seed_node.status == OK
        if not seed_ok:
            lows = [v for v in (self._f_lo, *values) if math.isfinite(v)]
            self._f_lo = min(lows)

    # -- Strategy ------------------------------------------------------------------------------

    def start(self, seed_node: Node) -> None:
        """Takes the evaluated seed as the base instance and builds the first `parallel` picks."""
        if self._seed_node is not None:
            raise RuntimeError("ExIt.start called twice")
        self._seed_node = seed_node
        self._base = Instance(id=BASE_INSTANCE, node=seed_node, depth=0, s=0.0, parent=None)
        if seed_node.status == OK:
            self._f_lo = self._fitness(seed_node)
        self._update_scale([seed_node])
        self._archive.offer(seed_node, (-1, -1))
        for index in range(min(self.params.parallel, self.params.picks)):
            self._build(index)

    def _build(self, index: int) -> None:
        """Builds pick `index` from the current state; its draws use move_rng(seed, 0, index, .)."""
        assert self._base is not None
        p = self.params
        use_buffer = len(self.buffer) >= p.min_buffer and (
            move_rng(self.seed, 0, index, "select").random() < p.p_select
        )
        if use_buffer:
            instance = self.buffer.pick(p.kappa, move_rng(self.seed, 0, index, "pick"))
            mode = choose_mode(instance.node, move_rng(self.seed, 0, index, "mode"), p.p_diverge)
        else:
            instance, mode = self._base, "base"
        messages = build_messages(
            self.task,
            instance.node,
            (),
            (),
            p.limits,
            instruction=instruction_for(self.task, mode, instance.node),
        )
        context: dict[str, Any] = {
            "mode": mode,
            "instance": instance.id,
            "parent_instance": instance.parent,
            "depth": instance.depth,
            "S": instance.s,
            "buffer_size": len(self.buffer),
        }
        move = Move(
            trajectory=0,
            index=index,
            mode=mode,
            messages=messages,
            parent=instance.node,
            inspirations=(),
            samples=p.group,
            seed=seed_for(self.seed, 0, index),
            context=context,
        )
        self._picks[index] = _Pick(move=move, instance=instance)

    def next_moves(self) -> list[Move]:
        """The built picks not yet issued, in order (at most `parallel` are ever in flight)."""
        if self._seed_node is None:
            raise RuntimeError("ExIt.start must be called before next_moves")
        out = []
        for index in sorted(self._picks):
            pick = self._picks[index]
            if not pick.issued:
                pick.issued = True
                out.append(pick.move)
        return out

    def observe(self, move: Move, outcomes: Sequence[Outcome]) -> MoveResult:
        """Scores the group, updates S and the buffer, and builds pick index + parallel."""
        if move.trajectory != 0:
            raise ValueError(f"move for unknown trajectory {move.trajectory}")
        pick = self._picks.get(move.index)
        if pick is None or not pick.issued:
            raise ValueError(f"move {move.trajectory}/{move.index} is not in flight")
        if move.index != self._observed:
            raise ValueError(
                f"ExIt observes moves in order: expected move 0/{self._observed}, "
                f"got 0/{move.index}"
            )
        ordered = sorted(outcomes, key=lambda o: o.sample)
        if [o.sample for o in ordered] != list(range(move.samples)):
            raise ValueError(
                f"move {move.trajectory}/{move.index} needs outcomes for samples "
                f"0..{move.samples - 1}"
            )
        result = self._score(pick, ordered)
        del self._picks[move.index]
        self._observed += 1
        following = move.index + self.params.parallel
        if following < self.params.picks:
            self._build(following)
        return result

    def _score(self, pick: _Pick, outcomes: Sequence[Outcome]) -> MoveResult:
        instance, mode, index = pick.instance, pick.move.mode, pick.move.index
        nodes = [o.node for o in outcomes]
        self._update_scale([n for n in nodes if n is not None])
        for outcome in outcomes:
            if outcome.node is not None:
                self._archive.offer(outcome.node, (index, outcome.sample))

        r_norm = [self.r_norm(n) for n in nodes]
        r_parent = self.r_norm(instance.node)
        if mode in ("improve", "debug"):
            parent_f = self._fitness(instance.node)
            rewards = [
                improvement_reward(r, r_parent, self._fitness(n) > parent_f)
                for r, n in zip(r_norm, nodes)
            ]
        else:
            rewards = list(r_norm)
        s = population_variance(rewards)
        if self.params.diversity_bonus:
            diversity = diversity_coefficients([n.code if n is not None else None for n in nodes])
        else:
            diversity = [1.0] * len(nodes)
        advantages = group_advantages(rewards, diversity)

        if instance.id != BASE_INSTANCE:
            self.buffer.rescore(instance.id, s)
        children: dict[int, tuple[int | None, bool]] = {}
        seed_hash = program_hash(self._seed_node.code) if self._seed_node is not None else ""
        for outcome in outcomes:
            node = outcome.node
            known = node is not None and (
                program_hash(node.code) == seed_hash or self.buffer.holds_program(node.code)
            )
            if node is None or known:
                children[outcome.sample] = (None, False)
                continue
            child = Instance(
                id=self._next_instance, node=node, depth=instance.depth + 1, s=s, parent=instance.id
            )
            self._next_instance += 1
            admitted, _ = self.buffer.admit(child)
            children[outcome.sample] = (child.id, admitted)

        winner: int | None = None
        for outcome in outcomes:
            f = self._fitness(outcome.node)
            if math.isfinite(f) and (winner is None or f > self._fitness(outcomes[winner].node)):
                winner = outcome.sample
        f_lo, f_hi = (_finite(v) for v in self.scale)
        bookkeeping: dict[int, Mapping[str, Any]] = {}
        for i, outcome in enumerate(outcomes):
            child_id, admitted = children[outcome.sample]
            bookkeeping[outcome.sample] = {
                "mode": mode,
                "instance": instance.id,
                "parent_instance": instance.parent,
                "depth": instance.depth,
                "child_instance": child_id,
                "admitted": admitted,
                "reward": rewards[i],
                "r_norm": r_norm[i],
                "r_parent": r_parent,
                "advantage": advantages[i],
                "diversity": diversity[i],
                "S": s,
                "f_lo": f_lo,
                "f_hi": f_hi,
                "buffer_size": len(self.buffer),
            }
        return MoveResult(committed=winner, bookkeeping=bookkeeping)

    def done(self) -> bool:
        """True when every pick has been issued and observed."""
        return self._seed_node is not None and self._observed >= self.params.picks

    def best(self) -> Node | None:
        """The best ok node observed (the seed included); ties go to the earliest (pick, sample)."""
        return self._archive.node

    def total_samples(self) -> int:
        """The budget: picks * G."""
        return self.params.budget


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None
