"""The files of a training run (the checkpoint helpers of `xpengine.train.loop.train`): finding and
checking the checkpoint to resume or initialise from, saving an epoch's checkpoint with the RNG states,
pruning old checkpoints, publishing the final model atomically, and the run's provenance.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import platform
import shutil
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

import xpengine
from xpengine.datasets.schema import TrainingArrays
from xpengine.features.vocabulary import Vocabulary
from xpengine.io import sha256_of
from xpengine.io.atomic import directory_written_atomically, write_text_atomically
from xpengine.model.checkpoint import (
    WEIGHTS_FILE,
    Checkpoint,
    LearnedTokens,
    TrainState,
    load_checkpoint,
    load_train_state,
    resolve_model_path,
    save_checkpoint,
)
from xpengine.model.standardize import Standardization
from xpengine.model.transformer import ModelConfig
from xpengine.train.config import TrainConfig

if TYPE_CHECKING:
    from xpengine.train.loop import _Optimisation

__all__ = [
    "base_provenance",
    "check_fresh_output_dir",
    "data_content_sha256",
    "data_sha256",
    "find_resume_checkpoint",
    "git_commit",
    "inherit_standardization",
    "init_provenance",
    "initial_checkpoint",
    "precision_label",
    "prune_checkpoints",
    "publish_model",
    "restore_rng",
    "resume_checkpoint",
    "rng_state",
    "save_epoch",
    "thread_record",
    "trim_metrics",
]

logger = logging.getLogger("xpengine.train.loop")  # the loop's log, as before these helpers moved here

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def thread_record() -> dict[str, Any]:
    """The thread settings a CPU run's numbers depend on: torch's intra-op thread count (a CPU kernel
    splits its reductions by thread, so another count sums in another order and the weights part after
    the first step), and the environment variables that set it where they are set. Kept in every
    checkpoint's training state, so that a resume with another count can say it is not bit-exact."""
    record: dict[str, Any] = {"torch_num_threads": torch.get_num_threads()}
    record.update({k: os.environ[k] for k in THREAD_ENV if k in os.environ})
    return record


def precision_label(device: torch.device, amp_dtype: torch.dtype | None) -> str:
    """How a chunk's arithmetic runs: the device type and the autocast dtype ("cpu fp32", "cuda bf16",
    "cuda fp16"), in every checkpoint's training state and every epoch's metrics line: `precision: auto`
    resolves by the machine, so a run resumed on another one changes it (`resume_checks`)."""
    names = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}
    return f"{device.type} {names.get(amp_dtype, str(amp_dtype))}"


@functools.lru_cache(maxsize=8)
def _sha256_of_version(path: str, inode: int, size: int, mtime_ns: int) -> str:
    return sha256_of(path)


@functools.lru_cache(maxsize=8)
def _content_of_version(path: str, inode: int, size: int, mtime_ns: int) -> str | None:
    import hashlib

    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception:  # not a Parquet table: the file's bytes are all there is to compare
        return None
    h = hashlib.sha256()
    for name, col in zip(table.column_names, table.columns, strict=True):
        arr = col.combine_chunks()
        h.update(f"{name}\0{arr.type}\0".encode())
        h.update(np.asarray(arr.is_null(), dtype=np.uint8).tobytes())
        if pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type) or pa.types.is_boolean(arr.type):
            h.update(np.ascontiguousarray(arr.to_numpy(zero_copy_only=False)).tobytes())
        else:  # strings and nested types: their values as text
            h.update("\0".join(map(str, arr.to_pylist())).encode())
    return h.hexdigest()


def data_content_sha256(path: str | os.PathLike) -> str | None:
    """A digest of a Parquet data file's columns (names, types, nulls, values), not of its bytes: the same
    rows written by another pyarrow (a GPU lease's unpacked data, its footer naming the writer) digest the
    same. None for a file that is not a Parquet table."""
    st = os.stat(path)
    return _content_of_version(str(Path(path).resolve()), st.st_ino, st.st_size, st.st_mtime_ns)


def data_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a data file, hashed once per version of it (path, inode, size, modification time):
    a resume compares it with the checkpoint's, then the provenance records it."""
    st = os.stat(path)
    return _sha256_of_version(str(Path(path).resolve()), st.st_ino, st.st_size, st.st_mtime_ns)


def resume_checkpoint(
    path: Path, model_cfg: ModelConfig, vocab: Vocabulary
) -> tuple[Checkpoint, Path, TrainState]:
    """(checkpoint, its directory, its training state) to resume from `path`, checked against this
    run's model configuration and vocabulary."""
    ckpt_dir = find_resume_checkpoint(path)
    ckpt = load_checkpoint(ckpt_dir, device="cpu")
    from xpengine.train.resume_checks import check_model_config  # it imports this module

    check_model_config(ckpt.model_config, model_cfg, ckpt_dir)  # ResumeMismatch naming each changed key
    if ckpt.vocabulary.names != vocab.names:
        raise ValueError(f"cannot resume from {ckpt_dir}: its vocabulary differs from the data's")
    state = load_train_state(ckpt_dir)
    logger.info("resuming from %s after epoch %d", ckpt_dir, state.epoch)
    return ckpt, ckpt_dir, state


def initial_checkpoint(path: str | os.PathLike, model_cfg: ModelConfig, vocab: Vocabulary) -> Checkpoint:
    """The checkpoint `init_from` names, checked against this run's model and vocabulary. Its model holds
    the exact float32 weights: those of the training state when the checkpoint keeps them there (saved
    with float16/bfloat16 weights, model.safetensors holds only a rounded copy), as a resume takes them."""
    ckpt_dir = find_resume_checkpoint(resolve_model_path(path), need_state=False)
    ckpt = load_checkpoint(ckpt_dir, device="cpu")
    if ckpt.model_config != model_cfg:
        raise ValueError(
            f"init_from {path}: its model config {ckpt.model_config} differs from this run's {model_cfg}"
        )
    if ckpt.vocabulary.names != vocab.names:
        raise ValueError(
            f"init_from {path}: its vocabulary {ckpt.vocabulary.name} differs from the data's {vocab.name}"
        )
    if _has_model_state(ckpt_dir):
        exact = load_train_state(ckpt_dir).model_state or {}
        ckpt.model.load_state_dict({k: v.float() for k, v in exact.items()})
    return ckpt


def _has_model_state(ckpt_dir: Path) -> bool:
    """Whether the checkpoint's training state keeps the float32 model state (reduced-precision weights)."""
    state_json = ckpt_dir / "train_state.json"
    return state_json.is_file() and bool(json.loads(state_json.read_text()).get("has_model_state"))


def inherit_standardization(fitted: Standardization, init: Checkpoint) -> Standardization:
    """`fitted`, with the centre and scale of `init` for every token `init` learned to read or predict."""
    known = set(init.learned.inputs) | set(init.learned.outputs)
    keep = np.array([n in known for n in fitted.names])
    logger.info(
        "init_from: %d tokens keep the standardisation of %s, %d are fitted on this data: %s",
        int(keep.sum()),
        init.path,
        int((~keep).sum()),
        [n for n, k in zip(fitted.names, keep, strict=True) if not k],
    )
    return Standardization(
        fitted.names,
        np.where(keep, init.standardization.center, fitted.center),
        np.where(keep, init.standardization.scale, fitted.scale),
    )


def refit_unseen_tokens(ckpt: Checkpoint, values: np.ndarray, ckpt_dir: Path) -> Standardization:
    """The standardisation a run resumed on changed data (`allow_data_change`) goes on with: the
    checkpoint's, except for the tokens its data had no value of (centre 0, scale 1, learned neither as
    input nor as output) that this data has: those are fitted on this data (`values`, (N, T)), with a
    warning naming them. Kept as they were, such a token would be read and trained unscaled."""
    std = ckpt.standardization
    known = set(ckpt.learned.inputs) | set(ckpt.learned.outputs)
    fitted = Standardization.fit(values, std.names)
    with np.errstate(invalid="ignore"):
        present = np.isfinite(np.asarray(values, dtype=np.float64)).any(axis=0)
    placeholder = (std.center == 0.0) & (std.scale == 1.0)
    refit = present & placeholder & np.array([n not in known for n in std.names])
    if not refit.any():
        return std
    logger.warning(
        "resuming on changed data: %d token(s) without values in %s's data have values now and are "
        "standardised on this data: %s",
        int(refit.sum()),
        ckpt_dir,
        [n for n, r in zip(std.names, refit, strict=True) if r],
    )
    return Standardization(
        std.names, np.where(refit, fitted.center, std.center), np.where(refit, fitted.scale, std.scale)
    )


def init_provenance(path: Path) -> dict[str, Any]:
    """The `init_from` record of a fresh run: the checkpoint `path` names now, the SHA-256 of its weights
    file, and where the starting weights came from (:func:`initial_checkpoint`). A resumed run carries
    its first chunk's record on instead (the checkpoint may have moved on or gone since)."""
    ckpt_dir = find_resume_checkpoint(resolve_model_path(path), need_state=False)
    weights = ckpt_dir / WEIGHTS_FILE
    return {
        "path": str(path),
        "checkpoint": str(ckpt_dir),
        "weights_sha256": sha256_of(weights),
        "weights_from": "train_state.safetensors (float32 model state)"
        if _has_model_state(ckpt_dir)
        else WEIGHTS_FILE,
    }


def check_fresh_output_dir(out: Path) -> None:
    """Refuse a fresh run (no resume) into a directory that holds a run already: its checkpoints, model
    and metrics would mix with the new run's (pruning sorts by epoch across both, a later --resume picks
    whichever checkpoint is latest)."""
    held = [
        name
        for name, there in (
            ("model/", (out / "model").exists()),
            ("checkpoints/epoch_*", any((out / "checkpoints").glob("epoch_*"))),
        )
        if there
    ]
    if held:
        raise FileExistsError(
            f"{out} already holds a training run ({' and '.join(held)}): pass --resume {out} to "
            "continue it, or choose another output directory"
        )


def trim_metrics(metrics_file: Path, epoch: int) -> None:
    """Keep only the records of epochs up to `epoch` (the one a run resumes after; 0: a fresh run) in
    metrics.jsonl, rewritten atomically: a run stopped between checkpoints logged epochs that the
    resumed run logs again. A line cut short by the stop is dropped too."""
    if not metrics_file.is_file():
        return
    kept = []
    for line in metrics_file.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(record, dict) or record.get("epoch", 0) <= epoch:
            kept.append(line + "\n")
    write_text_atomically(metrics_file, "".join(kept))


def find_resume_checkpoint(path: Path, *, need_state: bool = True) -> Path:
    """A checkpoint directory with a training state: `path` itself, or the latest under
    `path/checkpoints`. need_state=False: any checkpoint (weights only, e.g. a bundled model)."""
    marker = "train_state.json" if need_state else WEIGHTS_FILE
    if (path / marker).is_file():
        return path
    ckpts = sorted((path / "checkpoints").glob("epoch_*")) if (path / "checkpoints").is_dir() else []
    ckpts = [c for c in ckpts if (c / marker).is_file()]
    if not ckpts:
        what = "a checkpoint with a training state" if need_state else "a checkpoint"
        raise FileNotFoundError(f"{path} is neither {what} nor a run directory with checkpoints/")
    return ckpts[-1]


def rng_state(generator: torch.Generator, device: torch.device) -> dict[str, torch.Tensor]:
    rng = {"torch_cpu": torch.get_rng_state(), "sampling": generator.get_state()}
    if device.type == "cuda":
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            rng[f"cuda_{i}"] = s
    return rng


def restore_rng(rng: dict[str, torch.Tensor], generator: torch.Generator, device: torch.device) -> None:
    torch.set_rng_state(rng["torch_cpu"])
    try:
        generator.set_state(rng["sampling"])
    except RuntimeError:  # saved on another device type (CPU ↔ CUDA generators differ)
        seed = int(torch.randint(0, 2**62, (1,)).item())
        generator.manual_seed(seed)
        logger.warning(
            "the sampling RNG state was saved on another device type; reseeded, so the token samples "
            "of the resumed epochs differ from an uninterrupted run"
        )
    if device.type == "cuda":
        states = [rng[k] for k in sorted(k for k in rng if k.startswith("cuda_"))]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)
        elif states:
            torch.cuda.set_rng_state(states[0], device)


def set_aside_later_checkpoints(directory: Path, epoch: int) -> list[Path]:
    """Move the checkpoints of `directory` written after `epoch` (the one a run resumes after) into
    `<directory>_abandoned/`, with a warning: they belong to the trajectory the resume leaves, and kept in
    place they would outrank its new checkpoints (pruning keeps the last by name, a later `--resume RUN`
    takes the latest). Returns their new paths."""
    moved: list[Path] = []
    for ckpt in sorted(directory.glob("epoch_*")) if directory.is_dir() else []:
        try:
            n = int(ckpt.name.removeprefix("epoch_"))
        except ValueError:
            continue
        if n <= epoch:
            continue
        aside = directory.parent / f"{directory.name}_abandoned"
        aside.mkdir(exist_ok=True)
        target = aside / ckpt.name
        if target.exists():  # set aside by an earlier resume: keep both
            target = aside / f"{ckpt.name}.{time.strftime('%Y%m%dT%H%M%S')}"
        ckpt.rename(target)
        moved.append(target)
    if moved:
        logger.warning(
            "resuming after epoch %d: %d later checkpoint(s) of the abandoned trajectory moved to %s (%s)",
            epoch,
            len(moved),
            moved[0].parent,
            ", ".join(p.name for p in moved),
        )
    return moved


def prune_checkpoints(directory: Path, keep: int) -> None:
    """Delete all but the last `keep` checkpoints; a checkpoint that is a symbolic link (an unpacked lease
    run's, before training/lease_return.py wrote copies) is unlinked, its target left alone."""
    ckpts = sorted(directory.glob("epoch_*"))
    for old in ckpts[:-keep]:
        if old.is_symlink():
            old.unlink()
        else:
            shutil.rmtree(old, ignore_errors=True)


def save_epoch(
    path: Path,
    epoch: int,
    run: _Optimisation,
    *,
    vocabulary: Vocabulary,
    standardization: Standardization,
    train_config: dict[str, Any],
    provenance: dict[str, Any],
    metrics: dict[str, Any],
    t_start: float,
    weights_dtype: str,
    learned: LearnedTokens,
    device: torch.device,
    precision: str | None = None,
) -> Path:
    """The checkpoint after `epoch`: the model with its optimizer, scheduler, scaler and RNG states, and
    the run's provenance with the epochs completed, the wall time since `t_start` (plus the resumed
    run's), the date and the epoch's metrics."""
    prov = {
        **provenance,
        "epochs_completed": epoch,
        "wall_time_s": time.perf_counter() - t_start + provenance.get("previous_wall_time_s", 0.0),
        "date_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "last_metrics": metrics,
    }
    return save_checkpoint(
        path,
        run.model,
        vocabulary=vocabulary,
        standardization=standardization,
        train_config=train_config,
        provenance=prov,
        weights_dtype=weights_dtype,
        train_state=TrainState(
            epoch=epoch,
            optimizer=run.optimizer.state_dict(),
            scheduler=run.scheduler.state_dict(),
            scaler=run.scaler.state_dict(),
            rng=rng_state(run.generator, device),
            # a resume with another thread count (CPU) or another precision is not bit-exact
            extra={"threads": thread_record(), **({"precision": precision} if precision else {})},
        ),
        learned=learned,
        overwrite=True,
    )


def publish_model(last_ckpt: Path, model_dir: Path) -> None:
    """Copy the last checkpoint to `model_dir` (nothing when it is that directory): into a fresh
    directory, rename the old model aside, rename the copy in, then delete the old one, so the model
    is never missing or half-written while a checkpoint exists."""
    if last_ckpt.resolve() != model_dir.resolve():
        with directory_written_atomically(model_dir) as tmp:
            shutil.copytree(last_ckpt, tmp, dirs_exist_ok=True)


def git_commit() -> str | None:
    try:
        res = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(xpengine.__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if res.returncode != 0:
        return None
    return res.stdout.strip() or None


def base_provenance(
    config: TrainConfig,
    train_arrays: TrainingArrays,
    val_arrays: TrainingArrays | None,
    device: torch.device,
    n_params: int,
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "path": config.data_path,
        "n_train": len(train_arrays.source_id),
        "n_val": 0 if val_arrays is None else len(val_arrays.source_id),
        "vocabulary": train_arrays.vocabulary.name,
        "dataset_provenance": train_arrays.provenance,
    }
    if config.data_path and os.path.isfile(config.data_path):
        data["sha256"] = data_sha256(config.data_path)
        data["content_sha256"] = data_content_sha256(config.data_path)
        data["bytes"] = os.path.getsize(config.data_path)
    hardware: dict[str, Any] = {
        "device": str(device),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "processor": platform.processor(),
        "threads": thread_record(),
    }
    if device.type == "cuda":
        hardware["gpu"] = torch.cuda.get_device_name(device)
    ds_prov = train_arrays.provenance or {}
    return {
        "data": data,
        # The XP representation the tokens were built with (xpengine.spectra.REPRESENTATION_ID), so
        # inference can refuse inputs built differently; None when the training set does not say.
        "xp_representation": ds_prov.get("xp_representation", ds_prov.get("representation_id")),
        "n_parameters": n_params,
        "git_commit": git_commit(),
        "xpengine_version": xpengine.__version__,
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "hardware": hardware,
    }
