"""Export shaping: campaigns with known outcomes, checked row by row in every format.

Two kinds of input: hand-built tiny streams whose expected rows are written out by hand, and
real strategies (SimpleTES, best_of_n, ExIt, R^3L) run with scripted responses and the fake
evaluator, their moves turned into StepViews exactly as the campaign flow stores them
(`flow_steps`).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from typing import Any, Callable, Iterator

import pytest

from discovery.edits import ParseError, apply_continuation, split_program
from discovery.export.privacy import Privacy
from discovery.export.schema import (
    COLUMNS,
    FORMATS,
    CampaignView,
    ExportFilters,
    ProblemScale,
    StepView,
    TrajectoryStats,
)
from discovery.export.shape import (
    MemoryDedup,
    ShapeStats,
    dedup_key,
    improved,
    normalised_reward,
    shape,
    top_trajectories,
)
from discovery.strategies.baselines import best_of_n
from discovery.strategies.exit import ExIt, ExItParams, group_advantages
from discovery.strategies.r3l import R3L, R3LParams
from discovery.strategies.simpletes import SimpleTES, SimpleTESParams
from discovery.strategy import Move, Outcome
from discovery.types import fitness, program_hash

from tests.discovery.fakes import TOY_TASK, evaluate, ref_of, seed_node, set_block

NO_PRIVACY = Privacy.disabled()

# -- building input ------------------------------------------------------------------------------


def step(
    trajectory: int,
    index: int,
    sample: int,
    *,
    score: float | None = None,
    status: str = "ok",  # evaluation status; "parse" = no program; "llm" = failed call
    parent: float | None = 0.0,
    parent_status: str | None = "ok",
    response: str | None = None,
    prompt: str | None = None,
    messages: list[dict] | None = None,
    code: str | None = None,
    mode: str = "refine",
    bookkeeping: dict | None = None,
    campaign_id: int = 1,
    step_id: int | None = None,
) -> StepView:
    """A hand-built step: `score` with status "ok", or a failed evaluation / no program / no call."""
    response = f"resp {trajectory}.{index}.{sample}" if response is None else response
    if messages is None:
        messages = [
            {"role": "system", "content": "You write programs."},
            {"role": "user", "content": prompt if prompt is not None else f"prompt {trajectory}.{index}"},
        ]
    step_status, eval_status = "ok", status
    if status == "parse":
        step_status, eval_status, code = "parse_error", None, None
    elif status == "llm":
        step_status, eval_status, code, response = "llm_error", None, None, ""
    else:
        code = code if code is not None else f"X = {response!r}\n"
    return StepView(
        step_id=step_id if step_id is not None else campaign_id * 100_000 + trajectory * 1000 + index * 10 + sample,
        campaign_id=campaign_id,
        trajectory=trajectory,
        index=index,
        sample=sample,
        mode=mode,
        messages=messages,
        response=response,
        status=step_status,
        committed=False,
        bookkeeping=bookkeeping or {},
        program_hash=program_hash(code) if code is not None else None,
        code=code,
        eval_status=eval_status,
        score=score if eval_status == "ok" else None,
        parent_status=parent_status,
        parent_score=parent if parent_status == "ok" else None,
    )


def campaign(campaign_id: int = 1, problem: str = "p", strategy: str = "simpletes", direction: str = "maximize") -> CampaignView:
    return CampaignView(campaign_id, problem, strategy, "m", direction, seed_score=0.0, best_score=None)


def trajectory_stats(steps: list[StepView], direction: str = "maximize") -> dict[tuple[int, int], TrajectoryStats]:
    """Best ok score per trajectory and the first move index reaching it (what the reader computes)."""
    out: dict[tuple[int, int], TrajectoryStats] = {}
    for (c, t), group in itertools.groupby(steps, key=lambda s: (s.campaign_id, s.trajectory)):
        best, best_index = None, None
        for s in group:
            if s.eval_status == "ok" and (best is None or fitness(s.score, direction) > fitness(best, direction)):
                best, best_index = s.score, s.index
        out[(c, t)] = TrajectoryStats(c, t, best, best_index)
    return out


def run_shape(steps, *, campaigns=None, scales=None, filters=ExportFilters(), trajectories=None, **kw):
    steps = list(steps)
    campaigns = campaigns or {1: campaign()}
    scales = scales or {"p": ProblemScale("p", 0.0, 10.0)}
    if trajectories is None:
        trajectories = trajectory_stats(steps)
    stats = kw.pop("stats", ShapeStats())
    kw.setdefault("privacy", NO_PRIVACY)
    out = list(shape(steps, campaigns=campaigns, trajectories=trajectories, scales=scales, filters=filters, stats=stats, **kw))
    for fmt, row in out:
        check_row(fmt, row)
    return out, stats


def check_row(fmt: str, row: dict) -> None:
    """Exactly the format's columns, JSON-serialisable, None only where the column allows it."""
    assert list(row) == list(COLUMNS[fmt]), (fmt, row.keys())
    json.dumps(row, allow_nan=False)
    for column, kind in COLUMNS[fmt].items():
        value = row[column]
        if value is None:
            assert kind.endswith("?"), (column, row["id"])
            continue
        base = kind.rstrip("?")
        if base == "messages":
            assert isinstance(value, list) and all(set(m) == {"role", "content"} for m in value)
            assert all(isinstance(m["content"], str) and isinstance(m["role"], str) for m in value)
        elif base == "string":
            assert isinstance(value, str)
        elif base == "int64":
            assert isinstance(value, int) and not isinstance(value, bool)
        elif base == "float64":
            assert isinstance(value, float) and math.isfinite(value)
        elif base == "bool":
            assert isinstance(value, bool)


def rows(out, fmt: str) -> list[dict]:
    return [r for f, r in out if f == fmt]


def ids(out, fmt: str) -> list[str]:
    return [r["id"] for r in rows(out, fmt)]


# -- pure rules ----------------------------------------------------------------------------------


def test_normalised_reward():
    scale = ProblemScale("p", 2.0, 6.0)
    assert normalised_reward(4.0, "ok", scale, "maximize") == 0.5
    assert normalised_reward(9.0, "ok", scale, "maximize") == 1.0
    assert normalised_reward(1.0, "ok", scale, "maximize") == 0.0
    assert normalised_reward(None, "invalid", scale, "maximize") == 0.0
    assert normalised_reward(None, None, scale, "maximize") == 0.0
    # minimise: fitness = -score
    assert normalised_reward(-4.0, "ok", ProblemScale("p", 2.0, 6.0), "minimize") == 0.5
    # degenerate scales
    assert normalised_reward(3.0, "ok", ProblemScale("p", 3.0, 3.0), "maximize") == 1.0
    assert normalised_reward(2.0, "ok", ProblemScale("p", None, 3.0), "maximize") == 0.0
    assert normalised_reward(3.0, "ok", ProblemScale("p", None, 3.0), "maximize") == 1.0
    assert normalised_reward(3.0, "ok", ProblemScale("p", None, None), "maximize") == 1.0


def test_improved_rule():
    assert improved(step(0, 0, 0, score=2.0, parent=1.0), "maximize")
    assert not improved(step(0, 0, 0, score=1.0, parent=1.0), "maximize")  # strictly
    assert improved(step(0, 0, 0, score=1.0, parent=2.0), "minimize")
    assert not improved(step(0, 0, 0, status="invalid", parent=1.0), "maximize")
    # a failed parent: any ok child is a fix; an unknown parent is never beaten
    assert improved(step(0, 0, 0, score=-5.0, parent_status="error"), "maximize")
    assert not improved(step(0, 0, 0, score=5.0, parent_status=None), "maximize")


def test_top_trajectories_ceil_at_least_one_ties_by_index():
    stats = [TrajectoryStats(1, t, s, 0) for t, s in enumerate([3.0, None, 5.0, 3.0, 1.0])]
    assert top_trajectories(stats, 20, "maximize") == {2}
    assert top_trajectories(stats, 21, "maximize") == {2, 0}  # ceil(1.05) = 2, tie 0 before 3
    assert top_trajectories(stats, 1, "maximize") == {2}  # at least one
    assert top_trajectories(stats, 40, "minimize") == {4, 0}
    assert top_trajectories(stats, 100, "maximize") == {0, 1, 2, 3, 4}


def test_dedup_keys_are_fixed_size_and_namespaced():
    a = dedup_key("sft", "program", "abc")
    assert len(a) == 16 and a != dedup_key("preference", "program", "abc") != dedup_key("sft", "prompt_response", "abc")
    assert dedup_key("sft", "x", "ab", "c") != dedup_key("sft", "x", "a", "bc")  # parts are delimited
    d = MemoryDedup()
    assert d.seen(a) is False and d.seen(a) is True and len(d) == 1


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown export formats"):
        shape([], campaigns={}, trajectories={}, scales={}, filters=ExportFilters(), formats=("sft", "dpo"))
    with pytest.raises(ValueError, match="top_pct"):
        shape([], campaigns={}, trajectories={}, scales={}, filters=ExportFilters(top_pct=0))
    with pytest.raises(ValueError, match="ordered"):
        run_shape([step(0, 1, 0, score=1.0), step(0, 0, 0, score=1.0)])
    with pytest.raises(ValueError, match="no CampaignView"):
        run_shape([step(0, 0, 0, score=1.0, campaign_id=9)])


# -- a hand-built SimpleTES-like campaign ----------------------------------------------------------

# Scale [0, 10], maximise. Move (0, 0): parent 2; samples: ok 5, invalid, ok 1.
# Move (0, 1): parent 5; samples: a response that did not parse, a failed call, ok 8.
HAND = [
    step(0, 0, 0, score=5.0, parent=2.0, mode="propose"),
    step(0, 0, 1, status="invalid", parent=2.0, mode="propose"),
    step(0, 0, 2, score=1.0, parent=2.0, mode="propose"),
    step(0, 1, 0, status="parse", parent=5.0),
    step(0, 1, 1, status="llm", parent=5.0),
    step(0, 1, 2, score=8.0, parent=5.0),
]


def test_hand_campaign_every_format_row_by_row():
    out, stats = run_shape(HAND)
    assert [f for f, _ in out] == ["sft", "preference", "rl", "rl", "rl", "sft", "preference", "rl", "rl"]
    system = {"role": "system", "content": "You write programs."}
    prompt0 = [system, {"role": "user", "content": "prompt 0.0"}]
    prompt1 = [system, {"role": "user", "content": "prompt 0.1"}]
    common = {"split": "train", "problem": "p", "strategy": "simpletes", "model": "m", "campaign_id": 1}
    sft = rows(out, "sft")
    assert sft == [
        {"id": "sft:1:0:0:0", **common, "messages": prompt0 + [{"role": "assistant", "content": "resp 0.0.0"}],
         "score": 5.0, "parent_score": 2.0, "reward": 0.5, "mode": "propose", "step_id": 100_000},
        {"id": "sft:1:0:1:2", **common, "messages": prompt1 + [{"role": "assistant", "content": "resp 0.1.2"}],
         "score": 8.0, "parent_score": 5.0, "reward": 0.8, "mode": "refine", "step_id": 100_012},
    ]
    assert rows(out, "preference") == [
        {"id": "preference:1:0:0:0:1", **common, "prompt": prompt0,
         "chosen": [{"role": "assistant", "content": "resp 0.0.0"}],
         "rejected": [{"role": "assistant", "content": "resp 0.0.1"}], "kind": "group",
         "chosen_score": 5.0, "rejected_score": None, "chosen_reward": 0.5, "rejected_reward": 0.0,
         "chosen_step_id": 100_000, "rejected_step_id": 100_001},
        {"id": "preference:1:0:1:2:0", **common, "prompt": prompt1,
         "chosen": [{"role": "assistant", "content": "resp 0.1.2"}],
         "rejected": [{"role": "assistant", "content": "resp 0.1.0"}], "kind": "group",
         "chosen_score": 8.0, "rejected_score": None, "chosen_reward": 0.8, "rejected_reward": 0.0,
         "chosen_step_id": 100_012, "rejected_step_id": 100_010},
    ]
    rl = rows(out, "rl")
    assert [r["id"] for r in rl] == ["rl:1:0:0:0", "rl:1:0:0:1", "rl:1:0:0:2", "rl:1:0:1:0", "rl:1:0:1:2"]
    # group (0, 0): rewards 0.5, 0, 0.1: mean 0.2, population std sqrt(0.14 / 3)
    std = math.sqrt((0.3**2 + 0.2**2 + 0.1**2) / 3)
    assert [r["reward"] for r in rl] == [0.5, 0.0, 0.1, 0.0, 0.8]
    assert [r["advantage"] for r in rl] == pytest.approx([0.3 / std, -0.2 / std, -0.1 / std, -1.0, 1.0])
    assert [r["group_id"] for r in rl] == ["1:0:0"] * 3 + ["1:0:1"] * 2
    assert [r["status"] for r in rl] == ["ok", "invalid", "ok", "parse_error", "ok"]
    assert [r["score"] for r in rl] == [5.0, None, 1.0, None, 8.0]
    assert rl[0]["completion"] == [{"role": "assistant", "content": "resp 0.0.0"}] and rl[0]["prompt"] == prompt0
    assert all(r["loss_mask"] == 1 and r["weight"] == 1.0 and r["off_policy"] is False for r in rl)
    assert all(r["informativeness"] is None and r["diversity"] is None and r["pivot"] is None for r in rl)
    d = stats.as_dict()
    json.dumps(d)
    assert d["steps"] == 6
    assert d["kept"] == {f: {"train": n, "validation": 0} for f, n in (("preference", 2), ("rl", 5), ("sft", 2))}
    assert d["dropped"]["sft"] == {"train": {"invalid": 3, "not_improved": 1}}
    assert d["dropped"]["rl"] == {"train": {"no_response": 1}}
    assert "preference" not in d["dropped"]
    assert d["problems"] == {"p": {"rows": {"preference": 2, "rl": 5, "sft": 2}, "min_score": 1.0, "max_score": 8.0}}


def test_sft_all_valid_keeps_every_ok_step():
    out, stats = run_shape(HAND, filters=ExportFilters(improved_only=False), formats=("sft",))
    assert ids(out, "sft") == ["sft:1:0:0:0", "sft:1:0:0:2", "sft:1:0:1:2"]
    assert [f for f, _ in out] == ["sft"] * 3
    assert stats.dropped_total("sft", "invalid") == 3 and stats.dropped_total("sft", "not_improved") == 0
    assert set(stats.kept) == {"sft"}


def test_invalid_never_positive_and_failed_parent_fix_counts():
    # A failed parent (a broken seed): any ok child improves; an invalid child never becomes sft
    # or a chosen side, whatever its reward would be.
    steps = [
        step(0, 0, 0, status="error", parent_status="error"),
        step(0, 0, 1, score=-3.0, parent_status="error"),
        step(0, 0, 2, status="timeout", parent_status="error"),
    ]
    out, _ = run_shape(steps, scales={"p": ProblemScale("p", -3.0, -3.0)})
    assert ids(out, "sft") == ["sft:1:0:0:1"]
    (pair,) = rows(out, "preference")
    assert pair["chosen_step_id"] == steps[1].step_id and pair["rejected_step_id"] == steps[0].step_id
    assert pair["chosen_reward"] == 1.0 and pair["rejected_reward"] == 0.0
    rl = rows(out, "rl")
    assert [r["advantage"] > 0 for r in rl] == [False, True, False]
    # all invalid: no sft row, no pair, rl rows with reward 0 and advantage 0
    out, stats = run_shape([step(0, 0, s, status="invalid") for s in range(3)])
    assert rows(out, "sft") == [] and rows(out, "preference") == []
    assert [(r["reward"], r["advantage"]) for r in rows(out, "rl")] == [(0.0, 0.0)] * 3
    assert stats.dropped_total("preference", "no_pair") == 1


def test_preference_min_gap_and_ties():
    steps = [step(0, 0, 0, score=5.0), step(0, 0, 1, score=4.0), step(0, 0, 2, score=5.0), step(0, 0, 3, score=4.0)]
    out, _ = run_shape(steps, formats=("preference",))
    # best: samples 0 and 2 tie -> 0; worst other: samples 1 and 3 tie -> 1
    assert ids(out, "preference") == ["preference:1:0:0:0:1"]
    out, stats = run_shape(steps, formats=("preference",), filters=ExportFilters(min_gap=0.1))
    assert out == [] and stats.dropped_total("preference", "min_gap") == 1
    out, _ = run_shape(steps, formats=("preference",), filters=ExportFilters(min_gap=0.099))
    assert len(out) == 1
    # equal rewards never make a pair; a single usable sample neither (a failed call has no text)
    out, stats = run_shape([step(0, 0, 0, score=5.0), step(0, 0, 1, score=5.0)], formats=("preference",))
    assert out == [] and stats.dropped_total("preference", "min_gap") == 1
    out, stats = run_shape([step(0, 0, 0, score=5.0), step(0, 0, 1, status="llm")], formats=("preference",))
    assert out == [] and stats.dropped_total("preference", "no_pair") == 1
    # one-sample moves are not pair candidates at all
    out, stats = run_shape([step(0, 0, 0, score=5.0)], formats=("preference",))
    assert out == [] and stats.as_dict()["dropped"] == {}


def test_dedup_by_program_and_by_prompt_response():
    same_code = "X = 1\n"
    steps = [
        step(0, 0, 0, score=3.0, response="A", prompt="P"),
        step(0, 0, 1, score=3.0, response="B", prompt="P", code=same_code),  # new pair, new program
        step(0, 1, 0, score=4.0, response="A", prompt="P", parent=3.0),  # same (prompt, response) as 0.0.0
        step(0, 1, 1, score=4.0, response="C", prompt="P", parent=3.0, code=same_code),  # same program as 0.0.1
        step(0, 2, 0, score=4.0, response="C", prompt="Q", parent=3.0),  # new
    ]
    out, stats = run_shape(steps, formats=("sft",))
    assert ids(out, "sft") == ["sft:1:0:0:0", "sft:1:0:0:1", "sft:1:0:2:0"]
    assert stats.dropped_total("sft", "duplicate_prompt_response") == 1
    assert stats.dropped_total("sft", "duplicate_program") == 1
    # a shared Dedup carries over between exports (the exporter's on-disk store does the same)
    dedup = MemoryDedup()
    first, _ = run_shape(steps, formats=("sft",), dedup=dedup)
    again, stats = run_shape(steps, formats=("sft",), dedup=dedup)
    assert len(first) == 3 and again == [] and stats.dropped_total("sft", "duplicate_prompt_response") == 5
    # preference pairs: the same (prompt, chosen, rejected) twice -> one row
    pairs = [step(0, i, s, score=float(s + 1), prompt="P", response=f"R{s}") for i in range(2) for s in range(2)]
    out, stats = run_shape(pairs, formats=("preference",))
    assert ids(out, "preference") == ["preference:1:0:0:1:0"]
    assert stats.dropped_total("preference", "duplicate_prompt_response") == 1


def test_top_pct_and_prefix_to_best():
    # Four trajectories (chains) with best scores 2, 9, 5, -; chain 1 peaks at move 1 of 3.
    steps = [
        step(0, 0, 0, score=2.0),
        step(1, 0, 0, score=4.0), step(1, 1, 0, score=9.0, parent=4.0), step(1, 2, 0, score=8.0, parent=9.0),
        step(2, 0, 0, score=5.0),
        step(3, 0, 0, status="invalid"),
    ]
    f = ExportFilters(improved_only=False, top_pct=50)
    out, stats = run_shape(steps, filters=f, formats=("sft", "rl"))
    assert ids(out, "sft") == ["sft:1:1:0:0", "sft:1:1:1:0", "sft:1:1:2:0", "sft:1:2:0:0"]
    assert stats.dropped_total("sft", "top_pct") == 2 and stats.dropped_total("rl", "top_pct") == 2
    out, stats = run_shape(steps, filters=ExportFilters(improved_only=False, top_pct=1), formats=("sft",))
    assert ids(out, "sft") == ["sft:1:1:0:0", "sft:1:1:1:0", "sft:1:1:2:0"]
    f = ExportFilters(improved_only=False, prefix_to_best=True)
    out, stats = run_shape(steps, filters=f, formats=("sft", "rl"))
    assert ids(out, "sft") == ["sft:1:0:0:0", "sft:1:1:0:0", "sft:1:1:1:0", "sft:1:2:0:0"]
    # chain 1's move 2 is after its best; chain 3 never reached an ok program
    assert ids(out, "rl") == ["rl:1:0:0:0", "rl:1:1:0:0", "rl:1:1:1:0", "rl:1:2:0:0"]
    assert stats.dropped_total("rl", "prefix_to_best") == 2
    f = ExportFilters(improved_only=False, prefix_to_best=True, top_pct=25)
    out, _ = run_shape(steps, filters=f, formats=("sft",))
    assert ids(out, "sft") == ["sft:1:1:0:0", "sft:1:1:1:0"]
    # minimisation ranks the other way
    out, _ = run_shape(steps, filters=ExportFilters(improved_only=False, top_pct=25), formats=("sft",),
                       campaigns={1: campaign(direction="minimize")}, trajectories=trajectory_stats(steps, "minimize"))
    assert ids(out, "sft") == ["sft:1:0:0:0"]


def test_validation_split_by_problem():
    steps = [step(0, 0, 0, score=5.0, campaign_id=1), step(0, 0, 0, score=6.0, campaign_id=2, response="other")]
    campaigns = {1: campaign(1, "p"), 2: campaign(2, "q")}
    scales = {"p": ProblemScale("p", 0.0, 10.0), "q": ProblemScale("q", 0.0, 10.0)}
    out, stats = run_shape(steps, campaigns=campaigns, scales=scales, formats=("sft", "rl"),
                           filters=ExportFilters(validation_problems=("q",)))
    assert [(r["id"], r["split"], r["problem"]) for _, r in out] == [
        ("sft:1:0:0:0", "train", "p"), ("rl:1:0:0:0", "train", "p"),
        ("sft:2:0:0:0", "validation", "q"), ("rl:2:0:0:0", "validation", "q"),
    ]
    assert stats.kept == {"sft": {"train": 1, "validation": 1}, "rl": {"train": 1, "validation": 1}}
    assert stats.as_dict()["problems"]["q"] == {"rows": {"rl": 1, "sft": 1}, "min_score": 6.0, "max_score": 6.0}


def test_privacy_drops_rows_and_counts_them(monkeypatch, tmp_path):
    fake_key = "xq7-Zr2pLm9wQvTt44"  # nothing in its shape says "secret": only the env var does
    env = {"MY_SERVICE_API_KEY": fake_key, "HOME": "/home/alice"}
    privacy = Privacy.for_this_machine(extra_paths=[tmp_path], env=env)
    home = "/home/alice" if "/home/alice" in privacy.paths else None
    assert home is not None
    steps = [
        step(0, 0, 0, score=5.0, response=f"key = '{fake_key}'"),  # the response leaks a secret
        step(0, 0, 1, score=6.0),
        step(0, 0, 2, status="invalid"),
        step(0, 1, 0, score=7.0, parent=6.0,
             prompt='Traceback:\n  File "/home/alice/proj/run.py", line 3'),  # the prompt leaks a path
        step(0, 1, 1, score=8.0, parent=6.0, prompt='Traceback:\n  File "/home/alice/proj/run.py", line 3'),
        step(0, 2, 0, score=9.0, parent=6.0, prompt='File "/sandbox/candidate.py" and /usr/lib/python3.11/x.py'),
        step(0, 2, 1, score=1.0, parent=6.0, prompt='File "/sandbox/candidate.py" and /usr/lib/python3.11/x.py',
             response=f"see {tmp_path}/db.sqlite"),
    ]
    out, stats = run_shape(steps, privacy=privacy)
    assert ids(out, "sft") == ["sft:1:0:0:1", "sft:1:0:2:0"]
    # move 0's pair would be (6 vs invalid): kept; move 1: the whole prompt leaks; move 2: the
    # rejected side holds the database folder
    assert ids(out, "preference") == ["preference:1:0:0:1:2"]
    assert ids(out, "rl") == ["rl:1:0:0:1", "rl:1:0:0:2", "rl:1:0:2:0"]
    assert stats.dropped_total("sft", "secret") == 1 and stats.dropped_total("sft", "absolute_path") == 2
    assert stats.dropped_total("preference", "absolute_path") == 2
    assert stats.dropped_total("rl", "secret") == 1 and stats.dropped_total("rl", "absolute_path") == 3
    text = json.dumps(stats.as_dict())
    assert fake_key not in text and "alice" not in text and not any(fake_key in json.dumps(r) for _, r in out)


def test_default_privacy_is_this_machines(monkeypatch):
    monkeypatch.setenv("SOME_TOKEN", "tok-123456789")
    steps = [step(0, 0, 0, score=5.0, response="x = 'tok-123456789'"), step(0, 0, 1, score=6.0)]
    out, stats = run_shape(steps, privacy=None, formats=("sft",))
    assert ids(out, "sft") == ["sft:1:0:0:1"] and stats.dropped_total("sft", "secret") == 1


def test_determinism_and_streaming_over_many_steps():
    def synthetic(n_moves: int, k: int = 5) -> Iterator[StepView]:
        for m in range(n_moves):
            t, i = divmod(m, 50)
            for s in range(k):
                v = (m * 7 + s * 3) % 11
                yield step(t, i, s, score=float(v) if v else None, status="ok" if v else "invalid",
                           parent=5.0, prompt=f"prompt {m}", response=f"r{m}.{s}")

    n_moves, k = 10_000, 5  # 50,000 steps
    consumed = 0

    def counted() -> Iterator[StepView]:
        nonlocal consumed
        for s in synthetic(n_moves, k):
            consumed += 1
            yield s

    gen = shape(counted(), campaigns={1: campaign()}, trajectories={}, scales={"p": ProblemScale("p", 0.0, 10.0)},
                filters=ExportFilters(), privacy=NO_PRIVACY)
    rows_seen = 0
    for fmt, row in gen:
        rows_seen += 1
        # a row of move (t, i) is yielded once its move and at most the next move's first step were read
        _, c, t, i, s = row["id"].split(":")[:5]
        position = (int(t) * 50 + int(i) + 1) * k
        assert consumed <= position + 1
    assert consumed == n_moves * k and rows_seen > n_moves
    # the same input gives the same rows in the same order
    a = list(shape(synthetic(200), campaigns={1: campaign()}, trajectories={}, scales={"p": ProblemScale("p", 0.0, 10.0)},
                   filters=ExportFilters(), privacy=NO_PRIVACY))
    b = list(shape(synthetic(200), campaigns={1: campaign()}, trajectories={}, scales={"p": ProblemScale("p", 0.0, 10.0)},
                   filters=ExportFilters(), privacy=NO_PRIVACY))
    assert a == b and len({r["id"] for _, r in a}) == len(a)


# -- real strategies, stored like the flow stores them ----------------------------------------------

Respond = Callable[[Move, int], "str | None"]


def flow_steps(strategy, respond: Respond, campaign_id: int = 1) -> list[StepView]:
    """Runs `strategy` to the end like flows/campaign.py and returns its steps as the database holds
    them: one per (move, sample), JSON round-tripped, ordered by (trajectory, index, sample)."""
    seed = seed_node()
    strategy.start(seed)
    out: list[StepView] = []
    next_id = itertools.count(1)
    while not strategy.done():
        moves = strategy.next_moves()
        assert moves
        for move in moves:
            outcomes, stored = [], []
            for s in range(move.samples):
                text = respond(move, s)
                status, code, node, error = "ok", None, None, ""
                if text is None:
                    status, text, error = "llm_error", "", "provider timeout"
                elif move.answer == "program":
                    try:
                        code = apply_continuation(move.parent.code, move.keep_prefix, text)
                    except ParseError as exc:
                        status, error = "parse_error", str(exc)
                if code is not None:
                    node = evaluate(ref_of(move, s), code)
                outcomes.append(Outcome(s, node, error, text))
                stored.append((next(next_id), s, text, status, code, node))
            result = strategy.observe(move, outcomes)
            for step_id, s, text, status, code, node in stored:
                out.append(StepView(
                    step_id=step_id, campaign_id=campaign_id, trajectory=move.trajectory, index=move.index,
                    sample=s, mode=move.mode, messages=json.loads(json.dumps(list(move.messages))),
                    response=text, status=status, committed=(s == result.committed),
                    bookkeeping=json.loads(json.dumps(dict(result.bookkeeping.get(s, {})))),
                    program_hash=program_hash(code) if code is not None else None, code=code,
                    eval_status=node.status if node is not None else None,
                    score=node.score if node is not None else None,
                    parent_status=move.parent.status, parent_score=move.parent.score,
                ))
    return sorted(out, key=lambda v: (v.trajectory, v.index, v.sample))


def scale_of(steps: list[StepView], problem: str = "toy") -> ProblemScale:
    """f_lo = the seed's fitness, f_hi = the best ok fitness (the seed included)."""
    seed = seed_node().score
    best = max([seed, *(s.score for s in steps if s.eval_status == "ok")])
    return ProblemScale(problem, seed, best)


def literals(code: str) -> dict:
    ns: dict = {}
    exec(split_program(code).block, ns)
    return ns


def toy_run(steps: list[StepView], strategy: str, **kw):
    scale = scale_of(steps)
    return run_shape(steps, campaigns={1: campaign(problem="toy", strategy=strategy)}, scales={"toy": scale},
                     trajectories=trajectory_stats(steps), **kw), scale


def test_simpletes_campaign_rows_match_the_outcomes():
    def respond(move: Move, s: int) -> str | None:
        a = literals(move.parent.code)["A"]
        if s == 2:
            return "no code here" if move.index % 2 else None  # a parse failure / a failed call
        return set_block(round(a + (0.4 if s == 0 else -0.3) + 0.01 * move.trajectory, 6), 2.0)

    steps = flow_steps(SimpleTES(TOY_TASK, SimpleTESParams(chains=2, k=3, steps=3, inspirations=1), seed=3), respond)
    assert len(steps) == 18
    ((out, stats), scale) = toy_run(steps, "simpletes")
    ok = [s for s in steps if s.eval_status == "ok"]
    # sft: exactly the ok steps that beat their parent; sample 0 always does (A moves towards 3.7)
    expected_sft = [s for s in ok if s.score > s.parent_score]
    assert [r["step_id"] for r in rows(out, "sft")] == [s.step_id for s in expected_sft]
    assert {(s.trajectory, s.sample) for s in expected_sft} == {(0, 0), (1, 0)} and len(expected_sft) == 6
    for r, s in zip(rows(out, "sft"), expected_sft):
        assert r["messages"][:-1] == s.messages and r["messages"][-1] == {"role": "assistant", "content": s.response}
        assert r["reward"] == pytest.approx((s.score - scale.f_lo) / (scale.f_hi - scale.f_lo))
    # preference: every move (K = 3): sample 0 (better) over sample 2 when it is an unparsable
    # response (odd moves), else over sample 1 (worse); a failed call (even moves) is never rejected
    pairs = rows(out, "preference")
    assert [(p["chosen_step_id"], p["rejected_step_id"]) for p in pairs] == [
        (steps[i].step_id, steps[i + (2 if steps[i].index % 2 else 1)].step_id) for i in range(0, 18, 3)
    ]
    assert [p["rejected"][0]["content"] == "no code here" for p in pairs] == [False, True, False] * 2
    # rl: no row for the failed calls (index 0 and 2), a reward-0 row for parse failures (index 1)
    rl = rows(out, "rl")
    assert [r["id"] for r in rl] == [f"rl:1:{s.trajectory}:{s.index}:{s.sample}" for s in steps
                                     if not (s.sample == 2 and s.index % 2 == 0)]
    for _, group in itertools.groupby(rl, key=lambda r: r["group_id"]):
        group = list(group)
        assert group_advantages([r["reward"] for r in group]) == pytest.approx([r["advantage"] for r in group])
    assert stats.dropped_total("rl", "no_response") == 4


def test_best_of_n_duplicates_across_moves():
    # best_of_n: N / K moves of the same prompt. Both moves get the same four responses (A = 1.0,
    # the seed itself; 1.5; 2.0; an unparsable answer), so the second move's sft rows and pair are
    # duplicates, while rl keeps every rollout (a group is what was sampled).
    def respond(move: Move, s: int) -> str:
        return set_block(1.0 + 0.5 * s, 2.0) if s < 3 else "A = (\n"

    steps = flow_steps(best_of_n(TOY_TASK, budget=8, k=4, seed=1), respond)
    assert steps[0].messages == steps[4].messages and steps[3].status == "parse_error"
    ((out, stats), _) = toy_run(steps, "best_of_n")
    assert ids(out, "sft") == ["sft:1:0:0:1", "sft:1:0:0:2"]
    assert ids(out, "preference") == ["preference:1:0:0:2:3"]
    assert ids(out, "rl") == [f"rl:1:{t}:0:{s}" for t in (0, 1) for s in range(4)]
    assert stats.dropped_total("sft", "duplicate_prompt_response") == 2
    assert stats.dropped_total("sft", "not_improved") == 2 and stats.dropped_total("sft", "invalid") == 2
    assert stats.dropped_total("preference", "duplicate_prompt_response") == 1


def test_exit_campaign_rl_fields_and_groups():
    def respond(move: Move, s: int) -> str | None:
        a = literals(move.parent.code)["A"]
        if s == 3:
            return "oops"
        return set_block(round(a + 0.3 * (s - 0.5) + 0.01 * move.index, 6), round(0.5 + 0.2 * s, 6))

    params = ExItParams(budget=24, group=4, capacity=8, min_buffer=1, p_select=1.0, parallel=1)
    steps = flow_steps(ExIt(TOY_TASK, params, seed=5), respond)
    ((out, stats), scale) = toy_run(steps, "exit")
    rl = rows(out, "rl")
    assert len(rl) == 24  # every sample has text and a known outcome
    by_id = {s.step_id: s for s in steps}
    for (group_id, group) in itertools.groupby(rl, key=lambda r: r["group_id"]):
        group = list(group)
        views = [by_id[r["step_id"]] for r in group]
        assert len(group) == 4 and {v.index for v in views} == {int(group_id.split(":")[2])}
        div = [v.bookkeeping["diversity"] for v in views]
        expected = group_advantages([normalised_reward(v.score, v.eval_status, scale, "maximize") for v in views], div)
        assert [r["advantage"] for r in group] == pytest.approx([min(a, 0.0) if v.eval_status != "ok" else a
                                                                  for a, v in zip(expected, views)])
        assert [r["informativeness"] for r in group] == [v.bookkeeping["S"] for v in views]
        assert [r["diversity"] for r in group] == div
        assert [r["mode"] for r in group] == [v.bookkeeping["mode"] for v in views]
    assert {r["mode"] for r in rl} >= {"base", "improve"}
    # preference: one pair per group, chosen = the best sample, rejected = sample 3 (no program)
    pairs = rows(out, "preference")
    for p in pairs:
        group = [s for s in steps if s.index == by_id[p["chosen_step_id"]].index]
        best = max((s for s in group if s.eval_status == "ok"), key=lambda s: (s.score, -s.sample))
        assert p["chosen_step_id"] == best.step_id and p["rejected_step_id"] == group[3].step_id
        assert p["prompt"] == group[0].messages
    assert len(pairs) + stats.dropped_total("preference", "min_gap") + stats.dropped_total("preference", "duplicate_prompt_response") == 6


# -- R^3L -----------------------------------------------------------------------------------------


def guided(move: Move) -> bool:
    return any("# Guidance for this answer" in m["content"] for m in move.messages)


def reflection(retry_from: int) -> str:
    return json.dumps({"summary": "A went down.", "root_cause": "Wrong direction.", "outcome": "failure",
                       "suggestion": "Increase A.", "retry_from": retry_from})


def r3l_respond(move: Move, s: int) -> str | None:
    """Base turns move A away from 3.7 (the episode fails); guided retry turns move it towards."""
    if move.answer == "text":
        return reflection(1)
    a = literals(move.parent.code)["A"]
    return set_block(round(a + (0.5 if guided(move) else -0.2), 6), 2.0)


@pytest.fixture(scope="module")
def r3l_steps() -> list[StepView]:
    # budget 7, one episode of 3 turns: base (0, 0..2), reflection (0, 3), retry from turn 1
    # (1, 1..2), then round 1: a one-turn episode (2, 0) with no reflection (budget).
    return flow_steps(R3L(TOY_TASK, R3LParams(budget=7, episodes=1, turns=3), seed=2), r3l_respond)


def test_r3l_stream_is_what_the_flow_stores(r3l_steps):
    assert [(s.trajectory, s.index, s.mode) for s in r3l_steps] == [
        (0, 0, "propose"), (0, 1, "refine"), (0, 2, "refine"), (0, 3, "reflect"),
        (1, 1, "retry"), (1, 2, "retry"), (2, 0, "propose"),
    ]
    last = r3l_steps[5].bookkeeping
    assert last["beat_base"] is True and last["weight"] == 3.0 and last["pivot"] == 1


def texts(row: dict) -> list[str]:
    """Every message content of a row."""
    return [m["content"] for k in ("messages", "prompt", "chosen", "rejected", "completion") for m in row.get(k, ())]


def test_r3l_rows(r3l_steps):
    base0, base1, base2, refl, retry1, retry2, solo = r3l_steps
    guidance = retry1.bookkeeping["guidance"]
    assert retry1.messages[retry1.bookkeeping["guidance_index"]]["content"] == guidance
    ((out, stats), scale) = toy_run(r3l_steps, "r3l")
    assert [f for f, _ in out] == ["sft"] * 3 + ["preference"] + ["rl"] * 6

    def reward(score):
        return normalised_reward(score, "ok", scale, "maximize")

    # sft: the reflection (its retry beat the base) and the two retry turns (each improved on its
    # parent), distilled; no base turn improved (A moved away from 3.7)
    sft = rows(out, "sft")
    assert [(r["id"], r["mode"], r["step_id"]) for r in sft] == [
        ("sft:1:0:3:0", "reflect", refl.step_id), ("sft:1:1:1:0", "retry", retry1.step_id),
        ("sft:1:1:2:0", "retry", retry2.step_id),
    ]
    assert sft[0]["messages"] == [*refl.messages, {"role": "assistant", "content": refl.response}]
    assert (sft[0]["score"], sft[0]["parent_score"], sft[0]["reward"]) == (retry2.score, base0.score, 1.0)
    assert sft[1]["messages"] == [*retry1.bookkeeping["distilled_messages"],
                                  {"role": "assistant", "content": retry1.response}]
    assert sft[1]["messages"][:-1] == base1.messages  # the distilled retry prompt is the base's turn-1 prompt
    assert (sft[1]["score"], sft[1]["parent_score"], sft[1]["reward"]) == (retry1.score, base0.score, reward(retry1.score))
    assert sft[2]["messages"] == [*retry2.bookkeeping["distilled_messages"],
                                  {"role": "assistant", "content": retry2.response}]
    assert (sft[2]["score"], sft[2]["parent_score"], sft[2]["reward"]) == (retry2.score, retry1.score, 1.0)
    # preference: shared prefix (base turn 1's prompt), base suffix rejected, retry suffix chosen
    (pair,) = rows(out, "preference")
    assert pair["id"] == "preference:1:1:1:0:r3l" and pair["kind"] == "r3l_retry"
    assert pair["prompt"] == base1.messages == retry1.bookkeeping["distilled_messages"]
    assert pair["rejected"] == [
        {"role": "assistant", "content": base1.response},
        base2.messages[-1],  # the evaluation of base turn 1
        {"role": "assistant", "content": base2.response},
    ]
    assert pair["chosen"] == [
        {"role": "assistant", "content": retry1.response},
        retry2.bookkeeping["distilled_messages"][-1],  # the evaluation of retry turn 1
        {"role": "assistant", "content": retry2.response},
    ]
    assert pair["chosen"][1]["role"] == "user" and "Evaluation of your answer" in pair["chosen"][1]["content"]
    assert pair["chosen_score"] == retry2.score and pair["rejected_score"] == base0.score
    assert (pair["chosen_reward"], pair["rejected_reward"]) == (1.0, 0.0)
    assert (pair["chosen_step_id"], pair["rejected_step_id"]) == (retry1.step_id, base1.step_id)
    # rl: the base episode and its retry form one group, the solo episode another
    rl = rows(out, "rl")
    assert [r["step_id"] for r in rl] == [base0.step_id, base1.step_id, base2.step_id, retry1.step_id,
                                          retry2.step_id, solo.step_id]
    assert [r["group_id"] for r in rl] == ["1:0:episode"] * 5 + ["1:2:episode"]
    assert [r["loss_mask"] for r in rl] == [0, 1, 1, 1, 1, 1]
    assert [r["weight"] for r in rl] == [1.0, 1.0, 1.0, 3.0, 3.0, 1.0]
    assert [r["off_policy"] for r in rl] == [False, False, False, True, True, False]
    assert [r["pivot"] for r in rl] == [1, 1, 1, 1, 1, None]
    assert [r["reward"] for r in rl] == [0.0, 0.0, 0.0, 1.0, 1.0, reward(solo.score)]
    assert [r["advantage"] for r in rl] == [-1.0, -1.0, -1.0, 1.0, 1.0, 0.0]
    assert [r["score"] for r in rl] == [s.score for s in (base0, base1, base2, retry1, retry2, solo)]
    assert [r["mode"] for r in rl] == ["propose", "refine", "refine", "retry", "retry", "propose"]
    assert rl[3]["prompt"] == retry1.bookkeeping["distilled_messages"]
    assert rl[0]["prompt"] == base0.messages and rl[0]["completion"] == [{"role": "assistant", "content": base0.response}]
    assert all(r["informativeness"] is None and r["diversity"] is None for r in rl)
    # no guidance anywhere by default
    assert not any(guidance in text for _, r in out for text in texts(r))
    assert stats.dropped_total("sft", "not_improved") == 4  # three base turns and the solo turn


def test_r3l_sft_all_valid(r3l_steps):
    base0, base1, base2, refl, retry1, retry2, solo = r3l_steps
    ((out, _), _) = toy_run(r3l_steps, "r3l", formats=("sft",), filters=ExportFilters(improved_only=False))
    assert [r["step_id"] for r in rows(out, "sft")] == [s.step_id for s in (base0, base1, base2, refl, retry1, retry2, solo)]


def test_r3l_keep_guidance(r3l_steps):
    retry1 = r3l_steps[4]
    guidance = retry1.bookkeeping["guidance"]
    ((out, _), _) = toy_run(r3l_steps, "r3l", filters=ExportFilters(keep_guidance=True))
    retry_rows = [r for f, r in out if f in ("sft", "rl") and r["mode"] == "retry"]
    assert len(retry_rows) == 4 and all(guidance in texts(r) for r in retry_rows)
    assert retry_rows[0]["messages"][:-1] == retry1.messages
    (pair,) = rows(out, "preference")
    assert guidance not in texts(pair)  # a pair's prompt is shared: never the guidance


def test_r3l_filters_and_unfinished_retry(r3l_steps):
    base0, base1, base2, refl, retry1, retry2, solo = r3l_steps
    # prefix_to_best: base trajectory 0 peaks at turn 0 (it only got worse): the reflection and
    # later turns go; the retry peaks at its last turn, so the pair is whole.
    ((out, stats), _) = toy_run(r3l_steps, "r3l", filters=ExportFilters(prefix_to_best=True))
    assert [r["step_id"] for r in rows(out, "rl")] == [base0.step_id, retry1.step_id, retry2.step_id, solo.step_id]
    assert len(rows(out, "preference")) == 1
    assert stats.dropped_total("sft", "prefix_to_best") == 3
    # top_pct 33% of 3 trajectories: only the best one (the retry) and its pair
    ((out, _), _) = toy_run(r3l_steps, "r3l", filters=ExportFilters(top_pct=33))
    assert {r["step_id"] for r in rows(out, "rl")} == {retry1.step_id, retry2.step_id}
    assert len(rows(out, "preference")) == 1
    # a retry whose last turn never finished: no pair, no amplification, rows still grouped
    cut = [*r3l_steps[:5], dataclasses.replace(retry2, bookkeeping={}, committed=None), solo]
    ((out, stats), _) = toy_run(cut, "r3l")
    assert rows(out, "preference") == [] and stats.dropped_total("preference", "unfinished") == 1
    rl = rows(out, "rl")
    assert [r["step_id"] for r in rl] == [base0.step_id, base1.step_id, base2.step_id, retry1.step_id, solo.step_id]
    assert [r["weight"] for r in rl] == [1.0] * 5 and stats.dropped_total("rl", "unfinished") == 1
    assert not any(r["mode"] == "reflect" for r in rows(out, "sft"))  # the retry did not verifiably win
    # min_gap larger than the episodes' reward gap: no pair
    ((out, stats), _) = toy_run(r3l_steps, "r3l", filters=ExportFilters(min_gap=1.0), formats=("preference",))
    assert out == [] and stats.dropped_total("preference", "min_gap") == 1


def test_r3l_streams_one_episode_at_a_time(r3l_steps):
    consumed = 0

    def counted() -> Iterator[StepView]:
        nonlocal consumed
        for s in r3l_steps:
            consumed += 1
            yield s

    ((_, _), scale) = toy_run(r3l_steps, "r3l")
    gen = shape(counted(), campaigns={1: campaign(problem="toy", strategy="r3l")}, trajectories=trajectory_stats(r3l_steps),
                scales={"toy": scale}, filters=ExportFilters(), privacy=NO_PRIVACY)
    first = next(gen)
    assert first[0] == "sft" and consumed == 7  # the episode is whole once trajectory 2 begins
    rest = list(gen)
    assert rest[-1][1]["group_id"] == "1:2:episode"


def test_every_format_and_stats_are_json(r3l_steps):
    steps = [*HAND, *(dataclasses.replace(s, campaign_id=2, step_id=s.step_id + 10**6) for s in r3l_steps)]
    campaigns = {1: campaign(), 2: campaign(2, problem="toy", strategy="r3l")}
    scales = {"p": ProblemScale("p", 0.0, 10.0), "toy": scale_of(r3l_steps)}
    out, stats = run_shape(steps, campaigns=campaigns, scales=scales, filters=ExportFilters(validation_problems=("toy",)))
    assert {f for f, _ in out} == set(FORMATS)
    assert {r["split"] for _, r in out if r["campaign_id"] == 2} == {"validation"}
    json.loads(json.dumps(stats.as_dict()))
    assert stats.as_dict()["kept"]["preference"] == {"train": 2, "validation": 1}
    again, _ = run_shape(steps, campaigns=campaigns, scales=scales, filters=ExportFilters(validation_problems=("toy",)))
    assert again == out
