"""Train a proposer model on what campaigns found: SFT, DPO and GRPO through TRL.

Needs the optional extra: `pip install 'discovery-platform[train]'` (torch, transformers, trl).

    from flows.train import train, show_training_run

    sft = train("sft", model="Qwen/Qwen2.5-Coder-1.5B-Instruct", out_dir="models/erdos-sft",
                data="data/erdos-v1", max_steps=200, learning_rate=1e-5)
    dpo = train("dpo", model="models/erdos-sft", out_dir="models/erdos-dpo", campaigns=[3, 4, 5])
    rl = train("grpo", model="models/erdos-dpo", out_dir="models/erdos-grpo", campaigns=[3],
               num_generations=8, sandbox="bwrap", eval_slots=8)
    print(rl.metrics["train_loss"], rl.reward_campaigns)   # {"erdos_min_overlap": 12}
    print(show_training_run(rl.id).data)                    # what it trained on

What each method reads:
  - sft: the sft split "train" of an export (`data=` an export folder, or `campaigns=`: they are
    exported first, into `<out_dir>/data`, and that export is recorded) as TRL conversational
    prompt-completion records (the loss is on the answer only).
  - dpo: the preference split "train" the same way: {"prompt", "chosen", "rejected"}.
  - grpo: prompts with their parent programs, from stored steps: every program step of
    `campaigns`, or the steps an export's rl rows came from (`data=`; the database must be the
    one the export was made from). One row per distinct (problem, prompt, parent). Completions
    are scored by flows.rewards.SandboxReward in the sandbox, and stored as reward campaigns.

What happens, in order:
  1. Everything is checked before anything is written, each problem one line (ConfigError):
     the settings (discovery.training.TrainSettings, plus `trl=` fields against the installed
     TRL config class), the method, the data (the folder is an export with rows for the
     method; the campaigns exist and are finished), the output folder (absent or empty), and
     that the [train] extra is installed. The model and tokenizer are loaded (a local folder or
     a hub id; a conversational dataset needs the tokenizer's chat template).
  2. A `training_run` row is stored (status running): the method, base model, output folder,
     data (export id and the sha256 of every file read, or the campaigns and steps), the
     resolved settings with the library versions, who ran it and the command.
  3. TRL trains; the model and tokenizer are saved to `out_dir` (save_pretrained: servable by
     vLLM or Ollama after conversion).
  4. The row gets the trainer's log history and final metrics and status completed; a GRPO
     run's reward campaigns are completed too. On an error the row is failed with the error's
     first line (interrupted on Ctrl-C), and the reward campaigns likewise.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib.metadata
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from db import repository as repo
from db.engine import get_engine
from db.repository import EXPORTABLE_STATUSES, UnknownTrainingRun
from discovery.config import ConfigError
from discovery.edits import ParseError, split_program
from discovery.training import (
    TrainSettings,
    grpo_records,
    keep_prefix,
    preference_records,
    settings as make_settings,
    sft_records,
)
from flows.export import _one_line, _sha256, _username, export_dataset, preview_export

__all__ = ["TrainReport", "UnknownTrainingRun", "grpo_dataset", "list_training_runs", "show_training_run", "train"]

FORMAT_OF = {"sft": "sft", "dpo": "preference", "grpo": "rl"}  # the export format each method reads
TRAIN_EXTRA = "pip install 'discovery-platform[train]'"


@dataclasses.dataclass(frozen=True)
class TrainReport:
    """A stored training run (see db.models.TrainingRun)."""

    id: int
    method: str
    status: str
    base_model: str
    output_dir: str
    data: dict[str, Any]
    config: dict[str, Any]
    metrics: dict[str, Any]
    reward_campaigns: dict[str, int]
    username: str
    command: str
    error: str
    created_at: dt.datetime | None
    finished_at: dt.datetime | None


def _report(row) -> TrainReport:
    return TrainReport(row.id, row.method, row.status, row.base_model, row.output_dir, dict(row.data or {}),
                       dict(row.config or {}), dict(row.metrics or {}), dict(row.reward_campaigns or {}),
                       row.username, row.command, row.error, row.created_at, row.finished_at)


def show_training_run(run_id: int, *, db_url: str | None = None) -> TrainReport:
    """One stored training run; UnknownTrainingRun (one line) for an unknown id."""
    return _report(repo.get_training_run(get_engine(db_url), run_id))


def list_training_runs(*, db_url: str | None = None) -> list[TrainReport]:
    """Every stored training run, oldest first."""
    return [_report(r) for r in repo.list_training_runs(get_engine(db_url))]


# ---------------------------------------------------------------- data


@dataclasses.dataclass(frozen=True)
class _PromptSource:
    step_id: int
    problem: str
    messages: list[Any]
    parent_code: str
    keep_prefix: str


def _export_rows(folder: Path, fmt: str) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The train split of `fmt` in an export folder (Parquet, else JSONL) and the sha256 of the
    file read."""
    if not folder.is_dir():
        raise ConfigError(f"training data {folder} is not a folder: pass an export folder "
                          f"(`discovery export IDS --out DIR`) or --campaign IDS")
    parquet, jsonl = folder / fmt / "train.parquet", folder / fmt / "train.jsonl"
    if parquet.is_file():
        import pyarrow.parquet as pq

        rows = pq.read_table(parquet).to_pylist()
        used = parquet
    elif jsonl.is_file():
        rows = [json.loads(line) for line in jsonl.read_text(encoding="utf-8").splitlines() if line.strip()]
        used = jsonl
    else:
        raise ConfigError(f"{folder} has no {fmt}/train.parquet or {fmt}/train.jsonl: export the campaigns with "
                          f"the {fmt} format (`discovery export IDS --formats {fmt} --out DIR`), or pass --campaign IDS")
    return rows, {str(used.relative_to(folder)): _sha256(used)}


def _export_record(engine, folder: Path, files: dict[str, str]) -> dict[str, Any]:
    """The data record of an export folder read as it is: its files' sha256 and the stored export
    that wrote this folder with these exact files (export_id None if none did)."""
    export_id = None
    for row in reversed(repo.list_exports(engine)):
        if row.status != "completed" or Path(row.out_dir).resolve() != folder.resolve():
            continue
        stored = row.files or {}
        if all(stored.get(name, {}).get("sha256") == sha for name, sha in files.items()):
            export_id = row.id
            break
    return {"source": "export", "folder": str(folder.resolve()), "files": files, "export_id": export_id}


def _check_campaigns(engine, ids: Sequence[int]) -> list[int]:
    ids = sorted({int(i) for i in ids})
    if not ids:
        raise ConfigError("no campaigns given: pass --campaign IDS or --data EXPORT_DIR")
    found = {c.id: c for c in repo.find_campaigns(engine, ids=ids)}
    for i in ids:
        if i not in found:
            repo.get_campaign(engine, i)  # raises UnknownCampaign naming recent ids
        if found[i].status not in EXPORTABLE_STATUSES:
            raise ConfigError(f"campaign {i} is {found[i].status}: train on finished campaigns "
                              f"({', '.join(EXPORTABLE_STATUSES)}); wait for it or `discovery resume {i}`")
    return ids


def _prompt_sources(engine, *, campaign_ids: Sequence[int] = (), step_ids: Sequence[int] = ()) -> list[_PromptSource]:
    out = []
    for p in repo.step_prompts(engine, campaign_ids=campaign_ids, step_ids=step_ids):
        keep = ""
        if p.kept_lines:
            try:
                keep = keep_prefix(split_program(p.parent_code).block, p.kept_lines)
            except ParseError:
                continue  # a parent without an evolve block cannot be continued: not a prompt
        out.append(_PromptSource(p.step_id, p.problem, p.messages, p.parent_code, keep))
    return out


def grpo_dataset(
    *, data: str | os.PathLike | None = None, campaigns: Sequence[int] | None = None, db_url: str | None = None,
) -> list[dict[str, Any]]:
    """The GRPO prompt rows of stored campaigns, or of the steps behind an export's rl rows:
    {"prompt", "problem", "parent_program", "keep_prefix", "source_step_id"}, one per distinct
    (problem, prompt, parent). Filter or reorder the list freely before passing it to train()."""
    rows, _ = _grpo_rows(get_engine(db_url), data, campaigns)
    return rows


def _grpo_rows(engine, data, campaigns) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    if data is not None:
        folder = Path(data)
        rl, files = _export_rows(folder, "rl")
        step_ids = sorted({int(r["step_id"]) for r in rl})
        sources = _prompt_sources(engine, step_ids=step_ids)
        if step_ids and not sources:
            raise ConfigError(f"none of the {len(step_ids)} steps behind {folder}'s rl rows is in this database: "
                              f"train against the database the export was made from (--db URL)")
        record = _export_record(engine, folder, files)
    else:
        ids = _check_campaigns(engine, campaigns or [])
        sources = _prompt_sources(engine, campaign_ids=ids)
        record = {"source": "campaigns", "campaigns": ids}
    rows = grpo_records(sources)
    record.update(prompts=len(rows), source_steps=len(sources))
    return rows, record


def _records(method: str, engine, db_url, data, campaigns, out_dir: Path, command: str
             ) -> tuple[list[dict], dict[str, Any]]:
    """The method's training records and the data record stored on the training run."""
    if method == "grpo":
        return _grpo_rows(engine, data, campaigns)
    fmt = FORMAT_OF[method]
    if data is not None:
        folder = Path(data)
        rows, files = _export_rows(folder, fmt)
        record = _export_record(engine, folder, files)
    else:
        ids = _check_campaigns(engine, campaigns or [])
        report = export_dataset(ids, out_dir=out_dir / "data", formats=[fmt], db_url=db_url,
                                command=f"{command} (its export)")
        rows, files = _export_rows(out_dir / "data", fmt)
        record = {"source": "campaigns", "campaigns": ids, "folder": str((out_dir / "data").resolve()),
                  "files": files, "export_id": report.id}
    records = sft_records(rows) if method == "sft" else preference_records(rows)
    record["rows"] = len(records)
    return records, record


def _check_exportable(method: str, engine, db_url, campaigns) -> None:
    """Refuses campaigns whose export would hold no training row for `method` (a dry run)."""
    ids = _check_campaigns(engine, campaigns or [])
    fmt = FORMAT_OF[method]
    preview = preview_export(ids, formats=[fmt], db_url=db_url)
    if not preview.row_counts.get(fmt, {}).get("train"):
        dropped = ", ".join(f"{k} {v}" for k, v in preview.dropped.get(fmt, {}).items()) or "none stored"
        raise ConfigError(f"campaigns {', '.join(map(str, ids))} have no {fmt} rows in the train split (dropped: "
                          f"{dropped}): run longer campaigns or pick other ones")


# ---------------------------------------------------------------- trainer


def _versions() -> dict[str, str]:
    out = {}
    for name in ("discovery-platform", "torch", "transformers", "trl", "accelerate", "datasets"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "missing"
    return out


def _trl():
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
        import trl
    except ImportError as exc:
        raise ConfigError(f"training needs the [train] extra ({exc.name or exc} is missing): {TRAIN_EXTRA}") from None
    return trl


def _trl_config(trl, cfg: TrainSettings, out_dir: Path):
    """The TRL config of the method from the settings; `cfg.trl` fields go last, checked by name."""
    cls = {"sft": trl.SFTConfig, "dpo": trl.DPOConfig, "grpo": trl.GRPOConfig}[cfg.method]
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(cfg.trl) - fields)
    if unknown:
        raise ConfigError(f"{cls.__name__} has no field {unknown[0]!r} (from --set); see TRL's {cls.__name__} "
                          f"for the names")
    kwargs: dict[str, Any] = dict(
        output_dir=str(out_dir), max_steps=cfg.max_steps, num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.batch_size, gradient_accumulation_steps=cfg.grad_accum, seed=cfg.seed,
        data_seed=cfg.seed, logging_steps=cfg.logging_steps, report_to="none", disable_tqdm=True,
        save_strategy="steps" if cfg.save_steps else "no",
    )
    if cfg.save_steps:
        kwargs["save_steps"] = cfg.save_steps
    if cfg.learning_rate is not None:
        kwargs["learning_rate"] = cfg.learning_rate
    if cfg.method in ("sft", "dpo"):
        # TRL truncates to 1024 tokens by default, which cuts the answer off a campaign prompt
        # (2-3k tokens); none unless asked (then TRL keeps what its truncation mode keeps)
        kwargs["max_length"] = cfg.max_length
    if cfg.method in ("dpo", "grpo") and cfg.beta is not None:
        kwargs["beta"] = cfg.beta
    if cfg.method == "grpo":
        kwargs.update(num_generations=cfg.num_generations, max_completion_length=cfg.max_completion_length,
                      temperature=cfg.temperature)
    if not _cuda():
        kwargs.update(use_cpu=True, bf16=False, fp16=False)
    kwargs.update(cfg.trl)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"TRL refused the settings: {str(exc).strip().splitlines()[0]}") from None


def _cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def _load(model: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model)
        lm = AutoModelForCausalLM.from_pretrained(model)
    except Exception as exc:  # noqa: BLE001 - OSError, ValueError, ...: one line, naming the fix
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"cannot load model {model!r} ({first[:300]}): pass a folder written by save_pretrained "
                          f"or a model id the hub serves") from None
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError(f"the tokenizer of {model!r} has no chat template, and the training data are chat "
                          f"messages: use an instruct/chat model, or set tokenizer.chat_template and save it")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return lm, tokenizer


def _check_out_dir(out_dir: str | os.PathLike) -> Path:
    path = Path(out_dir)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise ConfigError(f"output folder {path} is not empty: pass a new folder for the trained model")
    parent = path.resolve().parent
    probe = parent
    while not probe.exists():
        probe = probe.parent
    if not os.access(probe, os.W_OK):
        raise ConfigError(f"cannot write the trained model under {parent}: pass an --out folder you can write")
    return path


def _jsonable(value: Any) -> Any:
    """`value` as JSON types (anything else as its str); the engine stores NaN as null."""
    return json.loads(json.dumps(value, default=str))


def train(
    method: str,
    *,
    model: str,
    out_dir: str | os.PathLike,
    data: str | os.PathLike | None = None,
    campaigns: Sequence[int] | None = None,
    dataset: list[dict[str, Any]] | None = None,
    db_url: str | None = None,
    command: str | None = None,
    on_created: Callable[[int], None] | None = None,
    **knobs: Any,
) -> TrainReport:
    """Trains `model` by `method` ("sft", "dpo" or "grpo") and saves it to `out_dir`; returns
    the stored training run.

    The data: `data` (an export folder), or `campaigns` (ids of finished campaigns), or for
    GRPO `dataset` (rows from grpo_dataset(), filtered as you like). `knobs` are the
    TrainSettings fields (max_steps, learning_rate, batch_size, num_generations, sandbox,
    trl={...} for any other TRL config field, ...). See the module docstring for the order of
    events; every bad input raises a one-line ConfigError before anything is written.
    """
    cfg = make_settings(method, **knobs)
    given = [x is not None for x in (data, campaigns, dataset)]
    if sum(given) != 1:
        raise ConfigError("pass exactly one of --data EXPORT_DIR and --campaign IDS (or, for GRPO from Python, "
                          "dataset=rows)")
    if dataset is not None and method != "grpo":
        raise ConfigError("dataset= takes GRPO prompt rows; for sft and dpo pass data= or campaigns=")
    engine = get_engine(db_url)
    out = _check_out_dir(out_dir)
    trl = _trl()
    trl_config = _trl_config(trl, cfg, out)
    command = command or f"flows.train.train({method!r}, model={str(model)!r}, out_dir={str(out_dir)!r}, ...)"
    records: list[dict[str, Any]] | None = None
    if dataset is not None:
        records = [dict(r) for r in dataset]
        missing = {"prompt", "problem", "parent_program"} - set(records[0] if records else {})
        if records and missing:
            raise ConfigError(f"GRPO rows need the columns prompt, problem and parent_program ({sorted(missing)[0]} "
                              f"is missing): build them with flows.train.grpo_dataset")
        source = {"source": "rows", "prompts": len(records),
                  "source_steps": sorted({r.get("source_step_id") for r in records if r.get("source_step_id")})}
    elif data is not None or method == "grpo":
        records, source = _records(method, engine, db_url, data, campaigns, out, command)  # reads only
    else:
        _check_exportable(method, engine, db_url, campaigns)
    if records is not None and not records:
        raise ConfigError(f"no {FORMAT_OF[method]} rows to train on in {data or campaigns or 'dataset'}: run longer "
                          f"campaigns, relax the export filters, or pick other campaigns")
    lm, tokenizer = _load(model)
    if records is None:  # --campaign for sft/dpo: export them now that everything is checked
        records, source = _records(method, engine, db_url, data, campaigns, out, command)
    config = {"settings": cfg.model_dump(mode="json"), "versions": _versions(),
              "trl_config": {k: v for k, v in trl_config.to_dict().items() if k in _SHOWN_TRL_FIELDS}}
    run_id = repo.create_training_run(engine, method=method, base_model=str(model), output_dir=str(out.resolve()),
                                      data=_jsonable(source), config=_jsonable(config), username=_username(),
                                      command=command)
    if on_created is not None:
        on_created(run_id)
    reward = None
    try:
        from datasets import Dataset

        train_set = Dataset.from_list(records)
        if method == "grpo":
            from flows.rewards import SandboxReward

            reward = SandboxReward(
                db_url=db_url, sandbox=cfg.sandbox, eval_slots=cfg.eval_slots,
                invalid_reward=cfg.invalid_reward, model=f"grpo:{model}", training_run_id=run_id,
                on_campaign=lambda problem, cid: repo.update_training_run(
                    engine, run_id, reward_campaigns={**reward.campaign_ids, problem: cid}),
            )
            trainer = trl.GRPOTrainer(model=lm, reward_funcs=reward, args=trl_config, train_dataset=train_set,
                                      processing_class=tokenizer)
        elif method == "dpo":
            trainer = trl.DPOTrainer(model=lm, args=trl_config, train_dataset=train_set, processing_class=tokenizer)
        else:
            trainer = trl.SFTTrainer(model=lm, args=trl_config, train_dataset=train_set, processing_class=tokenizer)
        _quiet_stdout(trainer)
        result = trainer.train()
        trainer.save_model(str(out))
        tokenizer.save_pretrained(str(out))
        metrics = {"train": dict(result.metrics), "log_history": list(trainer.state.log_history),
                   "global_step": trainer.state.global_step}
        if reward is not None:
            reward.close("completed")
        repo.finish_training_run(engine, run_id, status="completed", metrics=_jsonable(metrics),
                                 reward_campaigns=reward.campaign_ids if reward is not None else {})
    except KeyboardInterrupt:
        _fail(engine, run_id, reward, "interrupted", "interrupted by the user")
        raise
    except BaseException as exc:
        _fail(engine, run_id, reward, "failed", _one_line(exc))
        raise
    return show_training_run(run_id, db_url=db_url)


_LOGGED = ("loss", "reward", "reward_std", "rewards/margins", "rewards/accuracies", "sandbox_ok_fraction",
           "learning_rate", "grad_norm")


def _quiet_stdout(trainer) -> None:
    """Progress goes to stderr, one line per logging step (transformers prints each log dict to
    stdout, which `--json` output and notebooks piping stdout do not want)."""
    from transformers import PrinterCallback, TrainerCallback

    class _Progress(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **_):  # noqa: ANN001
            shown = ", ".join(f"{k}={logs[k]:.6g}" for k in _LOGGED if isinstance((logs or {}).get(k), (int, float)))
            if shown:
                print(f"step {state.global_step}/{state.max_steps}: {shown}", file=sys.stderr, flush=True)

    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(_Progress())


_SHOWN_TRL_FIELDS = {
    "learning_rate", "max_steps", "num_train_epochs", "per_device_train_batch_size", "gradient_accumulation_steps",
    "seed", "max_length", "beta", "num_generations", "max_completion_length", "temperature", "loss_type",
    "lr_scheduler_type", "warmup_steps", "weight_decay", "bf16", "fp16", "use_cpu", "scale_rewards",
    "gradient_checkpointing", "optim",
}


def _fail(engine, run_id: int, reward, status: str, error: str) -> None:
    if reward is not None:
        try:
            reward.close(status, error)
        finally:
            repo.finish_training_run(engine, run_id, status=status, error=error, reward_campaigns=reward.campaign_ids)
    else:
        repo.finish_training_run(engine, run_id, status=status, error=error)

