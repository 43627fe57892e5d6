"""SFT, DPO and GRPO on CPU, two optimisation steps each, on data from a real campaign.

No download: the model is a tiny Llama built from a config, its tokenizer a BPE trained on the
exported text itself (tests/train/tiny.py). The GRPO run starts from a copy of that model taught
one answer (a real, parseable edit from the campaign), so its samples are a mix of ok programs
and broken ones; their rewards come from the real sandboxed scorer and are checked against
`discovery eval` of the same programs, and against what the trainer logged.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("trl", reason="the train extra is not installed (pip install '.[train]')")

from db import repository as repo  # noqa: E402
from db.engine import dispose_engines, get_engine  # noqa: E402
from discovery.config import ConfigError  # noqa: E402
from discovery.edits import apply_continuation  # noqa: E402
from discovery.types import program_hash  # noqa: E402
from flows.api import run_campaign  # noqa: E402
from flows.export import export_dataset  # noqa: E402
from flows.train import grpo_dataset, show_training_run, train  # noqa: E402
from tests.train.tiny import build_model, build_tokenizer, memorise  # noqa: E402

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
PROBLEM = "erdos_min_overlap"


@pytest.fixture(scope="module")
def campaign(prefect_harness, tmp_path_factory):
    """A finished SimpleTES campaign on Erdős and its export (sft, preference, rl)."""
    folder = tmp_path_factory.mktemp("train-campaign")
    url = f"sqlite:///{folder / 'campaign.db'}"
    summary = run_campaign(PROBLEM, chains=2, k=4, budget=24, seed=1, db_url=url)
    export = export_dataset([summary.campaign.id], out_dir=folder / "export", db_url=url)
    assert export.row_counts["sft"]["train"] >= 1 and export.row_counts["preference"]["train"] >= 1
    yield url, summary.campaign.id, folder / "export", export
    dispose_engines()


@pytest.fixture(scope="module")
def base_model(campaign, tmp_path_factory):
    """The tiny model and a tokenizer trained on the exported text itself."""
    import pyarrow.parquet as pq

    _, _, export_dir, _ = campaign
    texts = []
    for fmt, columns in (("sft", ("messages",)), ("preference", ("prompt", "chosen", "rejected")),
                         ("rl", ("prompt", "completion"))):
        for row in pq.read_table(export_dir / fmt / "train.parquet").to_pylist():
            texts += [m["content"] for c in columns for m in row[c]]
    tokenizer = build_tokenizer(texts)
    return build_model(tokenizer, tmp_path_factory.mktemp("tiny") / "base")


def _weights(model_dir):
    from safetensors.torch import load_file

    return load_file(str(Path(model_dir) / "model.safetensors"))


def _changed(before: dict, after: dict) -> bool:
    return any(not (before[k] == after[k]).all() for k in before)


def _finite_losses(report) -> list[float]:
    losses = [h["loss"] for h in report.metrics["log_history"] if "loss" in h]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses), report.metrics["log_history"]
    return losses


def _env(url: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(DISCOVERY_DB_URL=url, PYTHONPATH=str(REPO))
    return env


def test_sft_two_steps_through_the_cli(campaign, base_model, tmp_path):
    url, _, export_dir, export = campaign
    out = tmp_path / "sft"
    proc = subprocess.run(
        [sys.executable, "-m", "flows.cli", "train", "sft", "--model", str(base_model), "--data", str(export_dir),
         "--out", str(out), "--max-steps", "2", "--batch-size", "2", "--lr", "1e-3", "--json"],
        cwd=REPO, env=_env(url), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    shown = json.loads(proc.stdout[proc.stdout.index("{"):])
    report = show_training_run(shown["id"], db_url=url)
    assert (report.method, report.status, report.base_model) == ("sft", "completed", str(base_model))
    assert report.metrics["global_step"] == 2
    _finite_losses(report)
    # the data record names the export and the exact file trained on
    assert report.data["export_id"] == export.id and report.data["rows"] == export.row_counts["sft"]["train"]
    assert report.data["files"] == {"sft/train.parquet": export.files["sft/train.parquet"]["sha256"]}
    assert report.config["settings"]["max_steps"] == 2 and report.config["versions"]["trl"] != "missing"
    assert report.command.startswith("discovery train sft")
    assert _changed(_weights(base_model), _weights(out))  # two optimiser steps moved the weights
    from transformers import AutoModelForCausalLM, AutoTokenizer

    AutoModelForCausalLM.from_pretrained(out), AutoTokenizer.from_pretrained(out)  # a servable folder


def test_dpo_two_steps_on_the_campaign(campaign, base_model, tmp_path):
    url, cid, _, _ = campaign
    out = tmp_path / "dpo"
    report = train("dpo", model=str(base_model), campaigns=[cid], out_dir=out, db_url=url, max_steps=2,
                   batch_size=2, learning_rate=1e-3, beta=0.1)
    assert report.status == "completed" and report.metrics["global_step"] == 2
    _finite_losses(report)
    # --campaign exports first, into OUT/data, and records that export
    assert report.data["source"] == "campaigns" and report.data["campaigns"] == [cid]
    stored = repo.get_export(get_engine(url), report.data["export_id"])
    assert Path(stored.out_dir) == (out / "data").resolve() and stored.status == "completed"
    assert report.data["rows"] == stored.row_counts["preference"]["train"] >= 1
    assert _changed(_weights(base_model), _weights(out))
    metrics = [h for h in report.metrics["log_history"] if "rewards/margins" in h]
    assert len(metrics) == 2


def test_grpo_rewards_come_from_the_sandbox_and_equal_discovery_eval(campaign, base_model, tmp_path):
    url, cid, _, _ = campaign
    engine = get_engine(url)
    rows = grpo_dataset(campaigns=[cid], db_url=url)
    # the model is taught one real answer of the campaign: an edit of the first prompt's parent
    # that evaluated ok, so sampling at temperature 1 gives that program, variants and garbage
    row = rows[0]
    steps = repo.steps_of(engine, cid)
    source = next(s for s in steps if s.id == row["source_step_id"])
    answers = [s.response for s in steps if (s.trajectory_id, s.index) == (source.trajectory_id, source.index)]
    target = min((a for a in answers if a and _ok(url, cid, row["parent_program"], a)), key=len)
    model = tmp_path / "taught"
    shutil.copytree(base_model, model)
    memorise(model, [row["prompt"]], target)
    from transformers import AutoTokenizer

    n_target = len(AutoTokenizer.from_pretrained(model)(target)["input_ids"])

    out = tmp_path / "grpo"
    report = train("grpo", model=str(model), dataset=[row], out_dir=out, db_url=url, max_steps=2, batch_size=4,
                   num_generations=4, max_completion_length=n_target + 16, learning_rate=1e-4, eval_slots=2, seed=0)
    assert report.status == "completed" and report.metrics["global_step"] == 2
    history = [h for h in report.metrics["log_history"] if "reward" in h]
    assert len(history) == 2

    # every completion the trainer sampled is stored in the reward campaign, with its reward
    rid = report.reward_campaigns[PROBLEM]
    camp = repo.get_campaign(engine, rid)
    assert (camp.strategy, camp.status, camp.budget) == ("grpo", "completed", 8)
    rsteps = sorted(repo.steps_of(engine, rid), key=lambda s: s.id)
    assert len(rsteps) == 8
    by_step = {c.step_id: (c, e) for c, e in repo.candidates_of(engine, rid) if c.step_id}
    invalid = _invalid_reward(engine, rid)

    # the mean reward the trainer logged per step is the mean of the stored rewards of that call
    trajectories = sorted({s.trajectory_id for s in rsteps})
    assert len(trajectories) == 2
    for logged, traj in zip(history, trajectories):
        stored = [s.bookkeeping["reward"] for s in rsteps if s.trajectory_id == traj]
        assert logged["reward"] == pytest.approx(sum(stored) / len(stored), rel=1e-5, abs=1e-6)

    # and every stored reward is what `discovery eval` says of the same program
    evaluated, ok = {}, 0
    for s in rsteps:
        reward = s.bookkeeping["reward"]
        if s.id not in by_step:
            assert s.status == "parse_error" and reward == invalid
            continue
        cand, _ = by_step[s.id]
        assert cand.code == apply_continuation(row["parent_program"], "", s.response)
        if cand.program_hash not in evaluated:
            evaluated[cand.program_hash] = _discovery_eval(cand.code, tmp_path / f"c{cand.id}.py")
        status, score = evaluated[cand.program_hash]
        assert reward == (-score if status == "ok" else invalid), (s.response[:200], status, score, reward)
        ok += status == "ok"
    assert ok >= 1, [s.response[:80] for s in rsteps]

    run = show_training_run(report.id, db_url=url)
    assert run.reward_campaigns == {PROBLEM: rid} and run.data["source"] == "rows"
    assert run.config["settings"]["num_generations"] == 4


def test_bad_training_input_is_one_line_and_stores_nothing(campaign, base_model, tmp_path):
    url, cid, export_dir, _ = campaign
    engine = get_engine(url)
    before = len(repo.list_training_runs(engine)), len(repo.list_exports(engine))
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    cases = [
        (dict(method="sft", data=export_dir, campaigns=[cid]), "pass exactly one of"),
        (dict(method="sft"), "pass exactly one of"),
        (dict(method="sft", data=tmp_path / "nowhere"), "is not a folder"),
        (dict(method="sft", campaigns=[999]), "no campaign with id 999"),
        (dict(method="sft", data=export_dir, out_dir=busy), "is not empty"),
        (dict(method="sft", data=export_dir, model=str(tmp_path / "no-model")), "cannot load model"),
        (dict(method="dpo", campaigns=[cid], model=str(tmp_path / "no-model")), "cannot load model"),
        (dict(method="dpo", data=export_dir, trl={"not_a_field": 1}), "DPOConfig has no field 'not_a_field'"),
        (dict(method="grpo", campaigns=[cid], batch_size=3, num_generations=2), "multiple of num_generations"),
        (dict(method="sft", dataset=[{"prompt": "x"}]), "dataset= takes GRPO prompt rows"),
        (dict(method="grpo", dataset=[{"prompt": "x"}], batch_size=4), "parent_program is missing"),
    ]
    for kwargs, fragment in cases:
        kwargs = {"model": str(base_model), "out_dir": tmp_path / "out", "db_url": url, **kwargs}
        method = kwargs.pop("method")
        with pytest.raises(Exception) as info:
            train(method, **kwargs)
        message = str(info.value)
        assert fragment in message and "\n" not in message, (kwargs, message)
        assert isinstance(info.value, (ConfigError, LookupError)), type(info.value)
    assert (len(repo.list_training_runs(engine)), len(repo.list_exports(engine))) == before  # --campaign exported nothing
    assert not (tmp_path / "out").exists() and (busy / "keep.txt").read_text() == "mine"


# ---------------------------------------------------------------- helpers


def _ok(url: str, cid: int, parent: str, response: str) -> bool:
    """Whether `response` applied to `parent` is a program the campaign evaluated ok."""
    try:
        code = apply_continuation(parent, "", response)
    except Exception:  # noqa: BLE001 - not a parseable answer
        return False
    for cand, ev in repo.candidates_of(get_engine(url), cid):
        if cand.program_hash == program_hash(code):
            return ev is not None and ev.status == "ok"
    return False


def _invalid_reward(engine, rid: int) -> float:
    from discovery.training import invalid_reward_for

    seed = [e for c, e in repo.candidates_of(engine, rid) if c.role == "seed"][0]
    return invalid_reward_for(seed.score, "minimize")


def _discovery_eval(code: str, path: Path) -> tuple[str, float | None]:
    """`discovery eval erdos_min_overlap FILE --json`, the real command."""
    path.write_text(code)
    proc = subprocess.run([sys.executable, "-m", "flows.cli", "eval", PROBLEM, str(path), "--json"], cwd=REPO,
                          env=_env("sqlite:///" + str(path.with_suffix(".db"))), capture_output=True, text=True,
                          timeout=300)
    ev = json.loads(proc.stdout)
    return ev["status"], ev["score"]
