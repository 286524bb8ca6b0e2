"""The training loop (Ray-free): Zhang et al. (2026) §3.4 after Leung & Bovy (2024).

AdamW, CosineAnnealingWarmRestarts stepped once per epoch, robust Gaussian NLL with known label errors,
one freshly sampled context (5..64 tokens) and request per star per epoch. The whole training set
lives on the device as two (N, T) tensors, and token sampling runs there too, so a GPU is never
starved by a data loader. Mixed precision: bf16 autocast on CUDA where supported, else fp16 with a
GradScaler; fp32 on CPU unless bf16 is asked for.

Checkpoints (`xpengine.model.checkpoint`) carry the optimizer, scheduler, scaler and RNG states, so a
resumed run continues exactly: same learning rates, same samples, same losses. Every checkpoint also
records the tokens the model was trained to predict and to read (:func:`learned_tokens`), so that
inference refuses requests the model never learned and leaves out inputs it never read.

Output directory::

    <output_dir>/checkpoints/epoch_000128/   periodic checkpoints (the last `keep_checkpoints` kept)
    <output_dir>/model/                       the final model (with its training state)
    <output_dir>/metrics.jsonl                one JSON line per logged epoch
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from xpengine.datasets.schema import TrainingArrays
from xpengine.features.vocabulary import Vocabulary
from xpengine.model.checkpoint import Checkpoint, TrainState
from xpengine.model.context import autocast_context
from xpengine.model.loss import gaussian_nll
from xpengine.model.transformer import ModelConfig, XPTransformer
from xpengine.train.config import TrainConfig, expand_tokens
from xpengine.train.resume_checks import carry_data_records, continue_after, start_or_resume
from xpengine.train.run_files import (
    base_provenance,
    check_fresh_output_dir,
    find_resume_checkpoint,
    init_provenance,
    precision_label,
    prune_checkpoints,
    publish_model,
    restore_rng,
    save_epoch,
    trim_metrics,
)
from xpengine.train.sampling import epoch_rows, sample_tokens
from xpengine.train.train_data import LEARNED_TOKENS_RULE, TrainData, learned_tokens
from xpengine.train.validation import ValidationSet

__all__ = [
    "ReportFn",
    "TrainResult",
    "find_resume_checkpoint",  # re-exported: it lived here
    "learned_tokens",
    "resolve_device",
    "resolve_precision",
    "train",
]

logger = logging.getLogger(__name__)

ReportFn = Callable[[dict[str, Any], Path | None], None]
"""Called with the metrics of a logged epoch and the checkpoint directory written at that epoch (or
None). The Ray entry point forwards both to `ray.train.report`."""


@dataclass
class TrainResult:
    """output_dir: the run directory; model_dir: final checkpoint; history: metrics of the epochs run
    in this call (resumed runs: only the new ones); wall_time_s: this call's duration."""

    output_dir: Path
    model_dir: Path
    epochs_completed: int
    history: list[dict[str, Any]] = field(default_factory=list)
    wall_time_s: float = 0.0


def resolve_device(spec: str) -> torch.device:
    """ "auto" → CUDA when available else CPU; anything else is passed to torch.device."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {spec!r} requested but CUDA is not available")
    return device


def hold_freed_memory() -> bool:
    """Keep freed memory in this process's heap (glibc only): large blocks no longer come from fresh
    `mmap`s and the heap is never trimmed, so that a CPU training step reuses the pages of the last
    step's activations instead of having the kernel zero new ones. `mallopt(M_MMAP_MAX, 0)` and
    `mallopt(M_TRIM_THRESHOLD, -1)`, the in-process form of `MALLOC_MMAP_MAX_=0` with trimming off.

    Measured on the project's 2-core AMD EPYC box (session 13), the published size at batch 1024 with 4
    requests per star: `benchmarks/bench_cpu_allocator.py --pairs 3` 1.36–1.43× (144.7–157.4 → 203.5–218.8
    stars/s); epoch 1 of `configs/train/gaia_xp_v6_cpu.yaml` 146 → 197 stars/s with the environment form. The
    process's resident memory then stays at its peak, so this is for a dedicated training process (the
    `training/train.py` CLI and the Ray Train worker call it on a CPU), not a library default. Returns
    True when both settings took, False elsewhere (not Linux, no glibc)."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_max = -1, -4
    ok = mallopt(m_mmap_max, 0) == 1 and mallopt(m_trim_threshold, -1) == 1
    if ok:
        logger.info("CPU training: freed memory stays in the heap (glibc mallopt: no mmap, no trim)")
    return ok


def resolve_precision(spec: str, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype or None, use GradScaler) for a precision setting on a device. "auto" on CUDA is
    bf16 where `device` does it in hardware (compute capability ≥ 8.0, `inference.precision.native_bf16`),
    else fp16 with a GradScaler (`torch.cuda.is_bf16_supported()` also says True for emulated bf16 on
    V100/T4, which would train slower than fp16); fp32 on a CPU."""
    if spec == "auto":
        if device.type == "cuda":
            from xpengine.inference.precision import native_bf16

            return (torch.bfloat16, False) if native_bf16(device) else (torch.float16, True)
        return None, False
    if spec == "fp32":
        return None, False
    if spec == "bf16":
        return torch.bfloat16, False
    if spec == "fp16":
        if device.type != "cuda":
            raise ValueError(f"precision fp16 needs a CUDA device, got {device}")
        return torch.float16, True
    raise ValueError(f"unknown precision {spec!r}; expected auto, fp32, bf16 or fp16")


_PLAN = "training %s parameters on %d stars (%d steps of %d per epoch), device %s, autocast %s, epochs %d..%d"


def train(
    config: TrainConfig,
    train_arrays: TrainingArrays,
    val_arrays: TrainingArrays | None = None,
    *,
    output_dir: str | os.PathLike | None = None,
    report_fn: ReportFn | None = None,
    resume_from: str | os.PathLike | None = None,
    allow_data_change: bool = False,
) -> TrainResult:
    """Train a model on `train_arrays` (validated on `val_arrays`) and write it under `output_dir`.

    resume_from: a checkpoint directory holding a training state, or a previous run's output
    directory (its latest checkpoint is used). The model configuration and the settings that define the
    training trajectory must match the checkpoint's (`xpengine.train.resume_checks.TRAJECTORY_KEYS`;
    ResumeMismatch lists the changed ones); `epochs` may grow. So must the data file's SHA-256, unless
    `allow_data_change` (the provenance then keeps each chunk's data record). Without it, `output_dir`
    must not hold a run already (FileExistsError). metrics.jsonl keeps the records of the epochs up to
    the one resumed after, then gets this call's.
    """
    t_start = time.perf_counter()
    if not (output_dir or config.output_dir):
        raise ValueError("no output directory: pass output_dir= or set output_dir in the config")
    out = Path(output_dir or config.output_dir)  # type: ignore[arg-type]
    if resume_from is None:
        check_fresh_output_dir(out)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(config.device)
    amp_dtype, use_scaler = resolve_precision(config.precision, device)
    precision = precision_label(device, amp_dtype)
    vocab = train_arrays.vocabulary
    model_cfg, requestable_names, val_inputs, val_labels = _run_tokens(config, vocab, val_arrays)

    config, ckpt, ckpt_dir, state, init, standardization = start_or_resume(
        config, train_arrays, model_cfg, resume_from, allow_data_change, device, precision
    )

    data = TrainData.build(config, train_arrays, standardization, requestable_names, device)
    val = ValidationSet.build(val_arrays, standardization, val_inputs, val_labels, config, device)
    run = _Optimisation.build(config, model_cfg, device, use_scaler, ckpt, state, init)
    model, start_epoch = run.model, run.start_epoch
    continue_after(ckpt_dir, config, start_epoch, out)  # a resume: epochs checked, later checkpoints aside

    step_model = torch.compile(model) if config.compile else model  # shares the parameters
    n_params = model.n_parameters()
    n_train = data.n_train
    batch = min(config.batch_size, n_train)
    n_steps = _n_steps(_expected_rows(data, config), batch, config.drop_last)  # a pool varies it a little
    plan = (f"{n_params:,}", n_train, n_steps, batch, device, amp_dtype, start_epoch + 1, config.epochs)
    logger.info(_PLAN, *plan)
    provenance = _run_provenance(config, train_arrays, val_arrays, device, n_params, n_train, ckpt, ckpt_dir)
    metrics_file = out / "metrics.jsonl"
    trim_metrics(metrics_file, start_epoch)  # a run stopped between checkpoints logged epochs run again
    history: list[dict[str, Any]] = []
    last_ckpt: Path | None = ckpt_dir
    epoch = start_epoch
    for epoch in range(start_epoch + 1, config.epochs + 1):
        t0 = time.perf_counter()
        lr = run.optimizer.param_groups[0]["lr"]
        train_loss, n_stars = _train_epoch(run, step_model, data, config, model_cfg, batch, device, amp_dtype)
        run.scheduler.step()
        dt = time.perf_counter() - t0
        is_last = epoch == config.epochs
        metrics: dict[str, Any] = {
            "epoch": epoch,
            "lr": lr,
            "train_loss": train_loss,
            "epoch_time_s": dt,
            "train_stars_per_s": n_stars / dt,
            "precision": precision,  # `precision: auto` resolves by the machine each chunk runs on
        }
        if not math.isfinite(train_loss):
            raise FloatingPointError(f"training loss became {train_loss} at epoch {epoch}")
        if val is not None and (epoch % config.val_every == 0 or is_last):
            metrics.update(val.evaluate(model, standardization, amp_dtype, config.val_batch_size))
        saved: Path | None = None
        save_now = epoch % config.checkpoint_every == 0 or is_last
        logged = epoch % config.log_every == 0 or is_last or save_now
        if logged:  # before the checkpoint: a stop between the two then loses no epoch's record
            _append_metrics(metrics_file, metrics)
        if save_now:
            saved = save_epoch(
                out / "checkpoints" / f"epoch_{epoch:06d}",
                epoch,
                run,
                vocabulary=vocab,
                standardization=standardization,
                train_config={**config.to_dict(), "model": model_cfg.to_dict()},
                provenance=provenance,
                metrics=metrics,
                t_start=t_start,
                weights_dtype=config.weights_dtype,
                learned=data.learned,
                device=device,
                precision=precision,
            )
            last_ckpt = saved
            prune_checkpoints(out / "checkpoints", config.keep_checkpoints)
        if logged:
            history.append(metrics)
            logger.info("%s", _format_metrics(metrics, config.epochs))
            if report_fn is not None:
                report_fn(metrics, saved)

    if last_ckpt is None:
        raise RuntimeError(
            f"nothing to do: the run already completed {start_epoch} of {config.epochs} epochs and "
            "no checkpoint was found"
        )
    model_dir = out / "model"
    publish_model(last_ckpt, model_dir)
    return TrainResult(
        output_dir=out,
        model_dir=model_dir,
        epochs_completed=epoch,
        history=history,
        wall_time_s=time.perf_counter() - t_start,
    )


def _run_tokens(
    config: TrainConfig, vocab: Vocabulary, val_arrays: TrainingArrays | None
) -> tuple[ModelConfig, list[str], list[str], list[str]]:
    """(model configuration for `vocab`, requestable tokens, validation inputs, validation labels) of a
    run, checked: the validation set's vocabulary is the training set's, and the validation inputs fit
    in the context."""
    if val_arrays is not None and val_arrays.vocabulary.names != vocab.names:
        raise ValueError(
            f"validation vocabulary {val_arrays.vocabulary.name} differs from the training vocabulary {vocab.name}"
        )
    model_cfg = dataclasses.replace(config.model, n_tokens=len(vocab))
    requestable_names = expand_tokens(config.requestable, vocab)
    val_labels = expand_tokens(config.val_labels, vocab)
    val_inputs = [n for n in expand_tokens(config.val_inputs, vocab) if n not in val_labels]
    if len(val_inputs) > model_cfg.context_length:
        raise ValueError(
            f"val_inputs select {len(val_inputs)} tokens, more than the context length "
            f"{model_cfg.context_length}"
        )
    return model_cfg, requestable_names, val_inputs, val_labels


@dataclass
class _Optimisation:
    """The model and everything that steps it: optimizer, scheduler, gradient scaler, the sampling RNG,
    and the epoch it starts after."""

    model: XPTransformer
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.CosineAnnealingWarmRestarts
    scaler: torch.amp.GradScaler
    generator: torch.Generator
    start_epoch: int

    @classmethod
    def build(
        cls,
        config: TrainConfig,
        model_cfg: ModelConfig,
        device: torch.device,
        use_scaler: bool,
        ckpt: Checkpoint | None,
        state: TrainState | None,
        init: Checkpoint | None,
    ) -> _Optimisation:
        """Fresh (seeded: the global RNG initialises the weights, `config.seed + 1` the sampling
        generator), then the resumed state of `ckpt`/`state` or the weights of `init`."""
        torch.manual_seed(config.seed)
        model = XPTransformer(model_cfg).to(device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
            optimizer, T_0=config.scheduler_t0, eta_min=config.eta_min
        )
        scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)
        generator = torch.Generator(device=device)
        generator.manual_seed(config.seed + 1)
        start_epoch = 0
        if state is not None and ckpt is not None:
            weights = state.model_state or {k: v for k, v in ckpt.model.state_dict().items()}
            model.load_state_dict({k: v.float() for k, v in weights.items()})
            optimizer.load_state_dict(state.optimizer)
            scheduler.load_state_dict(state.scheduler)
            if state.scaler:
                scaler.load_state_dict(state.scaler)
            restore_rng(state.rng, generator, device)
            start_epoch = state.epoch
        elif init is not None:  # float32: `initial_checkpoint` took the training state's model state
            model.load_state_dict({k: v.float() for k, v in init.model.state_dict().items()})
            logger.info("starting from the weights of %s", init.path)
        return cls(model, optimizer, scheduler, scaler, generator, start_epoch)


def _train_epoch(
    run: _Optimisation,
    step_model: Callable[..., Any],
    data: TrainData,
    config: TrainConfig,
    model_cfg: ModelConfig,
    batch: int,
    device: torch.device,
    amp_dtype: torch.dtype | None,
) -> tuple[float, int]:
    """One epoch: the epoch's stars in a fresh random order (all, or with the pool subsampled: `epoch_rows`),
    then batches of `batch` stars with freshly sampled context and request tokens. Returns the mean loss
    and the number of stars trained on (the last short batch counted as it is, unless dropped)."""
    model, optimizer, scaler, generator = run.model, run.optimizer, run.scaler, run.generator
    model.train()
    loss_sum = torch.zeros((), device=device)
    perm = epoch_rows(data.n_train, data.pool, config.epoch_pool_fraction, generator, device)  # (M,)
    n_steps = _n_steps(perm.numel(), batch, config.drop_last)
    for step in range(n_steps):
        idx = perm[step * batch : (step + 1) * batch]  # (b,)
        tb = sample_tokens(
            data.xz[idx],
            data.ez[idx],
            data.requestable,
            n_context=model_cfg.context_length,
            max_masked=config.max_masked,
            n_requests=config.n_requests,
            request_weights=data.request_weights,
            focus=data.focus,
            focus_fraction=config.focus_fraction,
            focus_max_masked=config.focus_max_masked,
            xp_band=data.xp_band,
            xp_order=data.xp_order,
            truncate_fraction=config.truncate_fraction,
            truncate_min=config.truncate_min,
            truncate_table=data.truncate_table,
            generator=generator,
        )
        with autocast_context(device, amp_dtype):
            out_ = step_model(tb.context_ids, tb.context_values, tb.request_ids)  # (b, k)
        loss = gaussian_nll(tb.targets, out_.mean, out_.logvar, tb.target_errors, tb.request_mask)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if config.grad_clip_norm is not None:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip_norm)
        scaler.step(optimizer)
        scaler.update()
        loss_sum += loss.detach()
    return float(loss_sum.item()) / n_steps, min(perm.numel(), n_steps * batch)


def _append_metrics(metrics_file: Path, metrics: dict[str, Any]) -> None:
    """Append an epoch's line to metrics.jsonl. Written before the epoch's checkpoint: a run stopped
    between the two resumes from the previous checkpoint and `trim_metrics` drops the line, whereas a
    checkpoint written first would leave its epoch unrecorded for good (the resumed run starts after it)."""
    with metrics_file.open("a") as fh:
        fh.write(json.dumps(metrics) + "\n")


def _n_steps(m: int, batch: int, drop_last: bool) -> int:
    """Batches in an epoch of m stars (one, of all of them, when m < batch)."""
    return max(1, m // batch) if drop_last else math.ceil(m / batch)


def _expected_rows(data: TrainData, config: TrainConfig) -> int:
    """Stars in an epoch, on average."""
    n_pool = int(data.pool.sum()) if data.pool is not None else 0
    return data.n_train - n_pool + round(config.epoch_pool_fraction * n_pool)


def _format_metrics(m: dict[str, Any], epochs: int) -> str:
    s = (
        f"epoch {m['epoch']}/{epochs} loss {m['train_loss']:.4f} lr {m['lr']:.3g} "
        f"{m['train_stars_per_s']:.0f} stars/s"
    )
    if "val_nll" in m:
        s += f" | val nll {m['val_nll']:.4f}"
        s += "".join(f" σ_{k[10:]} {v:.4g}" for k, v in m.items() if k.startswith("val_sigma_"))
    return s


def _run_provenance(
    config: TrainConfig,
    train_arrays: TrainingArrays,
    val_arrays: TrainingArrays | None,
    device: torch.device,
    n_params: int,
    n_train: int,
    resumed: Checkpoint | None,
    resumed_dir: Path | None,
) -> dict[str, Any]:
    """The provenance every checkpoint of a run carries: `base_provenance`, the learned-tokens rule,
    the `init_from` checkpoint and the `truncate_counts` table, and the checkpoint `resumed` from (its
    wall time is carried on). A resumed run carries the `init_from` record of its first chunk on (the
    checkpoint it names may have moved on or gone since), and the `truncate_counts` one while the
    table's SHA-256 is unchanged."""
    provenance = base_provenance(config, train_arrays, val_arrays, device, n_params)
    provenance["learned_tokens"] = {"rule": LEARNED_TOKENS_RULE, "n_train_stars": n_train}
    before = resumed.provenance if resumed is not None else {}
    if resumed is not None:
        if "initialised_from" in before:
            provenance["initialised_from"] = before["initialised_from"]
    elif config.init_from is not None:
        provenance["initialised_from"] = init_provenance(Path(config.init_from))
    if config.truncate_counts is not None:
        digest = hashlib.sha256(Path(config.truncate_counts).read_bytes()).hexdigest()
        record = {"path": config.truncate_counts, "sha256": digest}
        earlier = before.get("truncate_counts")
        if earlier and earlier.get("sha256") == digest:
            record = earlier
        elif earlier:
            logger.warning("truncate_counts %s changed since the resumed checkpoint", config.truncate_counts)
            record["before_resume"] = earlier
        provenance["truncate_counts"] = record
    if resumed is not None:
        carry_data_records(provenance, before)
        provenance["previous_wall_time_s"] = float(resumed.provenance.get("wall_time_s", 0.0))
        provenance["resumed_from"] = str(resumed_dir)
    return provenance
