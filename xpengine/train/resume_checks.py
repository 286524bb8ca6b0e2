"""What a resumed chunk of a training run must share with the chunks before it, so that the chunks make
one run: a run stopped and resumed gives the weights of an uninterrupted one, bit for bit, and its
config.json and provenance describe what was in effect.

A resume restores the checkpoint's optimizer and scheduler (their learning rate, weight decay, T_0 and
eta_min) and sampling RNG, so a setting that defines the trajectory cannot change at a resume: either it
would not take effect while config.json recorded it, or it would bend the run midway. Such a change is
refused (:func:`check_resume`), listing each key. The data file may change only when asked for
(`allow_data_change`), and then the provenance keeps every chunk's data record. Another torch thread
count on a CPU is warned about (the sums then run in another order). A run whose epochs were fitted to a
time budget (`training/train.py --time-budget`) resumes with the epochs and schedule of its checkpoint
(:func:`budgeted_resume`), not those of its YAML.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Collection
from pathlib import Path
from typing import Any

import torch

from xpengine.datasets.schema import TrainingArrays
from xpengine.model.checkpoint import Checkpoint, TrainState
from xpengine.model.standardize import Standardization
from xpengine.model.transformer import ModelConfig
from xpengine.train.config import TrainConfig
from xpengine.train.run_files import (
    THREAD_ENV,
    data_content_sha256,
    data_sha256,
    find_resume_checkpoint,
    inherit_standardization,
    initial_checkpoint,
    refit_unseen_tokens,
    resume_checkpoint,
    set_aside_later_checkpoints,
    thread_record,
)

__all__ = [
    "FREE_KEYS",
    "TRAJECTORY_KEYS",
    "ResumeMismatch",
    "budgeted_resume",
    "carry_data_records",
    "check_model_config",
    "check_resume",
    "continue_after",
    "precheck_resume",
    "start_or_resume",
]

logger = logging.getLogger("xpengine.train.loop")  # the loop's log: these are its resume messages

TRAJECTORY_KEYS = (
    "batch_size",
    "lr",
    "weight_decay",
    "scheduler_t0",
    "eta_min",
    "max_masked",
    "n_requests",
    "requestable",
    "request_weight_tokens",
    "request_weight",
    "focus_inputs",
    "focus_fraction",
    "focus_max_masked",
    "truncate_fraction",
    "truncate_min",
    "truncate_counts",  # the table's content (its SHA-256 in the provenance), not its path
    "seed",
    "precision",
    "grad_clip_norm",
    "drop_last",
    "epoch_pool_tokens",
    "epoch_pool_fraction",
    "model",  # checked first, with the vocabulary, by run_files.resume_checkpoint
)
"""The TrainConfig keys that define the training trajectory: a resume must keep them."""

FREE_KEYS = (
    "epochs",  # may grow: the schedule (scheduler_t0) goes on as it was
    "data_path",  # the data's identity is its SHA-256: check_resume
    "output_dir",
    "val_inputs",
    "val_labels",
    "val_every",
    "val_max_stars",
    "val_batch_size",
    "checkpoint_every",
    "keep_checkpoints",
    "log_every",
    "device",
    "weights_dtype",  # of model.safetensors only: a resume takes the float32 state
    "compile",
    "init_from",  # ignored on resume: the run keeps its first chunk's (check_resume)
)
"""The TrainConfig keys a resume may change (bookkeeping, validation, where and how it runs)."""

TIME_BUDGET_FILE = "time_budget.json"


class ResumeMismatch(ValueError):
    """A resume that would not continue the run it names (changed settings or data)."""


def check_resume(
    config: TrainConfig,
    ckpt: Checkpoint,
    ckpt_dir: Path,
    state: TrainState,
    device: torch.device,
    precision: str | None = None,
    *,
    allow_data_change: bool = False,
) -> TrainConfig:
    """The configuration a resume from `ckpt` runs with: `config`, checked against the training
    configuration the checkpoint was written with (ResumeMismatch listing each changed trajectory key,
    and a changed data file unless `allow_data_change`), with the checkpoint's `init_from` (a resume
    ignores it: config.json records the run's). Warns about another CPU thread count, and about another
    `precision` (`run_files.precision_label`) than the checkpoint's chunk ran in."""
    saved = ckpt.train_config or {}
    if not saved:
        logger.warning("%s records no training configuration: the resumed settings are not checked", ckpt_dir)
    _refuse_changed_keys(config, saved, ckpt, ckpt_dir)
    _check_data(config, ckpt, ckpt_dir, allow_data_change)
    _check_thread_count(state, ckpt_dir, device)
    then = (state.extra or {}).get("precision")
    if precision and then and then != precision:
        logger.warning(
            "resuming from %s: its chunk ran in %s, this one runs in %s (`precision: %s` on this machine): "
            "the run goes on, no longer in one precision; each epoch's metrics line says which it ran in",
            ckpt_dir,
            then,
            precision,
            config.precision,
        )
    if "init_from" in saved and saved["init_from"] != config.init_from:
        logger.info(
            "resuming: init_from stays the run's %r (a resume ignores %r)",
            saved["init_from"],
            config.init_from,
        )
        config = dataclasses.replace(config, init_from=saved["init_from"])
    return config


def continue_after(ckpt_dir: Path | None, config: TrainConfig, start_epoch: int, out: Path) -> None:
    """A resume from `ckpt_dir` (None: a fresh run, nothing to do) after `start_epoch`: refused
    (ResumeMismatch) when `config.epochs` is below it (a resume continues a run, it does not shorten it);
    the checkpoints of `out` after it, a trajectory now abandoned, set aside (`set_aside_later_checkpoints`)."""
    if ckpt_dir is None:
        return
    if config.epochs < start_epoch:
        raise ResumeMismatch(
            f"cannot resume from {ckpt_dir}: it is after epoch {start_epoch}, beyond this run's epochs="
            f"{config.epochs}; give epochs >= {start_epoch} (a resume continues a run, it does not shorten it)"
        )
    set_aside_later_checkpoints(out / "checkpoints", start_epoch)


def precheck_resume(config: TrainConfig, resume_from: str | Path, *, allow_data_change: bool = False) -> None:
    """The resume checks that need no training data in memory, run on the driver before a Ray Train job
    starts (whose worker would otherwise fail minutes later, in a traceback): the model configuration
    (each changed key named), the trajectory keys and the data file (`check_resume`), as ResumeMismatch."""
    from xpengine.model.checkpoint import load_checkpoint

    ckpt_dir = find_resume_checkpoint(Path(resume_from))
    ckpt = load_checkpoint(ckpt_dir, device="cpu")
    model_cfg = dataclasses.replace(config.model, n_tokens=ckpt.model_config.n_tokens)
    check_model_config(ckpt.model_config, model_cfg, ckpt_dir)
    _refuse_changed_keys(config, ckpt.train_config or {}, ckpt, ckpt_dir)
    _check_data(config, ckpt, ckpt_dir, allow_data_change)


def check_model_config(saved: Any, now: Any, ckpt_dir: Path) -> None:
    """ResumeMismatch naming each field of the model configuration `now` that differs from the
    checkpoint's `saved`."""
    if saved == now:
        return
    diff = [
        f"model.{f.name}: {getattr(saved, f.name)!r} (checkpoint) -> {getattr(now, f.name)!r} (now)"
        for f in dataclasses.fields(saved)
        if getattr(saved, f.name) != getattr(now, f.name)
    ]
    raise ResumeMismatch(
        f"cannot resume from {ckpt_dir}: this run's model configuration differs from the checkpoint's:\n  "
        + "\n  ".join(diff or [f"{saved} (checkpoint) -> {now} (now)"])
    )


def _refuse_changed_keys(
    config: TrainConfig, saved: dict[str, Any], ckpt: Checkpoint, ckpt_dir: Path
) -> None:
    """ResumeMismatch listing each trajectory key this run changes (`_changed_keys`); nothing if none."""
    changed = _changed_keys(config, saved, ckpt)
    if changed:
        raise ResumeMismatch(
            f"cannot resume from {ckpt_dir}: this run changes settings that define the training trajectory "
            f"(the checkpoint's are in {ckpt_dir / 'config.json'}; a resume continues its optimizer, "
            "schedule and sampling, so a new value would not take effect or would change the run midway):\n  "
            + "\n  ".join(f"{k}: {old!r} (checkpoint) -> {new!r} (now)" for k, old, new in changed)
            + "\nresume with the checkpoint's values, or start a new run (init_from= starts one from its weights)"
        )


def _changed_keys(config: TrainConfig, saved: dict[str, Any], ckpt: Checkpoint) -> list[tuple[str, Any, Any]]:
    """(key, checkpoint's value, this run's) of each trajectory key that differs; keys the checkpoint does
    not record (written before they existed) are not compared."""
    now = config.to_dict()
    changed = [
        (k, saved[k], now[k])
        for k in TRAJECTORY_KEYS
        if k not in ("model", "truncate_counts") and k in saved and saved[k] != now[k]
    ]
    if "truncate_counts" in saved:
        table = _table_change(saved["truncate_counts"], ckpt.provenance.get("truncate_counts"), config)
        if table is not None:
            changed.append(("truncate_counts", *table))
    return changed


def _table_change(
    saved_path: str | None, saved_record: dict[str, Any] | None, config: TrainConfig
) -> tuple[str | None, str | None] | None:
    """(then, now) when the truncate_counts table changed: set or unset, or other content (its SHA-256
    against the provenance record); None when it is the same table, wherever it lies now."""
    old = (saved_record or {}).get("sha256") if saved_path else None
    new = (
        hashlib.sha256(Path(config.truncate_counts).read_bytes()).hexdigest()
        if config.truncate_counts
        else None
    )
    if (saved_path is None) == (config.truncate_counts is None) and not (old and new and old != new):
        return None
    return (
        f"{saved_path} (sha256 {old})" if saved_path else None,
        f"{config.truncate_counts} (sha256 {new})" if new else None,
    )


def _check_data(config: TrainConfig, ckpt: Checkpoint, ckpt_dir: Path, allow_change: bool) -> None:
    """Refuse a data file whose SHA-256 differs from the checkpoint's (the run's provenance and learned
    tokens would describe the new file only), unless `allow_change`: then warn (`carry_data_records`
    keeps each chunk's data record). Not compared where either side has no hash (no data file)."""
    old = (ckpt.provenance or {}).get("data") or {}
    if not (old.get("sha256") and config.data_path and Path(config.data_path).is_file()):
        return
    new = data_sha256(config.data_path)
    if new == old["sha256"]:
        return
    if old.get("content_sha256") and data_content_sha256(config.data_path) == old["content_sha256"]:
        logger.info(  # e.g. a GPU lease's data unpacked here by another pyarrow: the same rows
            "%s: other bytes than the checkpoint's data file (%s), the same columns and values: resuming",
            config.data_path,
            old.get("path"),
        )
        return
    what = (
        f"the data file changed since {ckpt_dir}: {old.get('path')} (sha256 {old['sha256']}) then, "
        f"{config.data_path} (sha256 {new}) now"
    )
    if not allow_change:
        raise ResumeMismatch(
            f"cannot resume: {what}. A run resumed on other data is no longer the run its provenance and "
            "learned tokens describe; pass --allow-data-change (train(allow_data_change=True)) to continue "
            "on the new data anyway"
        )
    logger.warning(
        "%s; continuing (allow_data_change): the provenance keeps each chunk's data record (earlier_data), "
        "but the learned-token records describe the current data only",
        what,
    )


def carry_data_records(provenance: dict[str, Any], before: dict[str, Any]) -> None:
    """Carry the data records of a resumed run's earlier chunks on in `provenance` (in place), `before`
    being the resumed checkpoint's provenance: when the data changed at this resume (allowed by
    `allow_data_change`), the previous record joins `earlier_data` with the epochs it was used for, and
    the current one says from which epoch it is used; the learned-token record then says it describes the
    current data only. An unchanged file carries the list and the epoch on."""
    data, old = provenance["data"], before.get("data") or {}
    earlier = list(before.get("earlier_data", []))
    same_rows = bool(old.get("content_sha256")) and old.get("content_sha256") == data.get("content_sha256")
    if old.get("sha256") and data.get("sha256") and old["sha256"] != data["sha256"] and not same_rows:
        done = int(before.get("epochs_completed", 0))
        earlier.append({**old, "from_epoch": old.get("from_epoch", 1), "until_epoch": done})
        data["from_epoch"] = done + 1
    elif "from_epoch" in old:
        data["from_epoch"] = old["from_epoch"]
    if earlier:
        provenance["earlier_data"] = earlier
        provenance["learned_tokens"]["data_note"] = (
            f"describes the data of epochs {data.get('from_epoch')} on ({data.get('path')}) only; the run "
            "trained on earlier_data before"
        )


def _check_thread_count(state: TrainState, ckpt_dir: Path, device: torch.device) -> None:
    """Warn when a CPU run resumes with another torch thread count than the checkpoint's chunk ran with
    (its training state's `extra["threads"]`, :func:`thread_record`): the run goes on, but no longer bit
    for bit as an uninterrupted one. Checkpoints written before the count was recorded say nothing."""
    then = (state.extra or {}).get("threads")
    if device.type != "cpu" or not then:
        return
    now = thread_record()
    if then.get("torch_num_threads") != now["torch_num_threads"]:
        env = {k: (then.get(k), now.get(k)) for k in THREAD_ENV if then.get(k) != now.get(k)}
        logger.warning(
            "resuming from %s: bit-exact resume needs the same thread count: %s then, %d now "
            "(torch.set_num_threads or OMP_NUM_THREADS; environment then/now: %s)",
            ckpt_dir,
            then.get("torch_num_threads"),
            now["torch_num_threads"],
            env or "unchanged",
        )


def budgeted_resume(config: TrainConfig, resume_from: str | Path, explicit: Collection[str]) -> TrainConfig:
    """`config` for resuming a run: when the run was fitted to a time budget (its run directory, or the
    output directory, holds time_budget.json), with the `epochs` and `scheduler_t0` of the checkpoint's
    training configuration (the budget's N, not the YAML's) unless `explicit` (the keys set on the command
    line) names them. Otherwise `config` as it is."""
    ckpt_dir = find_resume_checkpoint(Path(resume_from))
    budget = _time_budget_file(ckpt_dir, config)
    if budget is None:
        return config
    saved = json.loads((ckpt_dir / "config.json").read_text()).get("train", {})
    take = {k: saved[k] for k in ("epochs", "scheduler_t0") if k in saved and k not in explicit}
    logger.info(
        "resuming a run fitted to a time budget (%s): %s from its checkpoint %s",
        budget,
        ", ".join(f"{k} {v}" for k, v in take.items()) or "nothing",
        ckpt_dir,
    )
    for k in ("epochs", "scheduler_t0"):
        if k in explicit and k in saved and getattr(config, k) != saved[k]:
            logger.warning(
                "%s %s given on the command line, where the budgeted run has %s (leave %s= out to keep it)%s",
                k,
                getattr(config, k),
                saved[k],
                k,
                ": it trains past its budget" if k == "epochs" and config.epochs > saved[k] else "",
            )
    return dataclasses.replace(config, **take)


def _time_budget_file(ckpt_dir: Path, config: TrainConfig) -> Path | None:
    """The time_budget.json of the run `ckpt_dir` belongs to (its run directory: above checkpoints/ or
    model/), or of the output directory the resumed run writes to."""
    runs = [ckpt_dir.parent.parent if ckpt_dir.parent.name == "checkpoints" else ckpt_dir.parent]
    if config.output_dir:
        runs.append(Path(config.output_dir))
    return next((r / TIME_BUDGET_FILE for r in runs if (r / TIME_BUDGET_FILE).is_file()), None)


def start_or_resume(
    config: TrainConfig,
    train_arrays: TrainingArrays,
    model_cfg: ModelConfig,
    resume_from: str | os.PathLike | None,
    allow_data_change: bool,
    device: torch.device,
    precision: str,
) -> tuple[
    TrainConfig, Checkpoint | None, Path | None, TrainState | None, Checkpoint | None, Standardization
]:
    """Where a run starts: (its configuration; the checkpoint resumed, its directory, its training state;
    the `init_from` checkpoint of a fresh run; the standardisation). Resumed: the checkpoint's weights,
    standardisation and training state (init_from ignored), the configuration checked against the
    checkpoint's (`check_resume`: refused, or warned about). Fresh: the standardisation fitted on the
    data, with that of the `init_from` checkpoint for the tokens it learned."""
    vocab = train_arrays.vocabulary
    if resume_from is not None:
        ckpt, ckpt_dir, state = resume_checkpoint(Path(resume_from), model_cfg, vocab)
        config = check_resume(
            config, ckpt, ckpt_dir, state, device, precision, allow_data_change=allow_data_change
        )
        std = refit_unseen_tokens(ckpt, train_arrays.values, ckpt_dir) if allow_data_change else None
        return config, ckpt, ckpt_dir, state, None, ckpt.standardization if std is None else std
    standardization = Standardization.fit(train_arrays.values, vocab.names)
    init = None
    if config.init_from is not None:
        init = initial_checkpoint(config.init_from, model_cfg, vocab)
        standardization = inherit_standardization(standardization, init)
    return config, None, None, None, init, standardization
