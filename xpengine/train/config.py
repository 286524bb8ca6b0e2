"""Training configuration: a dataclass, its YAML presets (`configs/train/*.yaml`) and dotted overrides.

A training YAML holds the keys of :class:`TrainConfig`; its `model` key is either a mapping of
:class:`~xpengine.model.transformer.ModelConfig` keys, a preset name (`paper`, `small`, `tiny`) or a
path to a model YAML relative to the training YAML (`../model/small.yaml`). Overrides `a.b=value`
(value parsed as YAML) are applied after the model file is merged in, so `model.dropout=0.0` works.
Problems are collected and reported together.

Token lists (`requestable`, `val_inputs`, `val_labels`) accept exact token names, inclusive ranges
`bp0..29` (the names of the vocabulary that match; a Gaia DR4 vocabulary with 51 BP coefficients just
has fewer), kinds `kind:xp` / `kind:label` / `kind:colour` ..., and `all`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from xpengine.features.vocabulary import Vocabulary
from xpengine.model.transformer import PRESETS, ModelConfig

__all__ = [
    "TrainConfig",
    "apply_overrides",
    "expand_tokens",
    "load_config_dict",
    "load_train_config",
]


def expand_tokens(spec: Sequence[str], vocabulary: Vocabulary) -> list[str]:
    """Token names selected by `spec`: :meth:`xpengine.features.vocabulary.Vocabulary.select`."""
    return vocabulary.select(spec)


@dataclass(frozen=True)
class TrainConfig:
    """How to train. Defaults follow Zhang et al. (2026) §3.4 and Leung & Bovy's training script.

    data_path: training-schema Parquet (`xpengine.datasets.schema`), rows with split train / val.
    epochs, batch_size, lr, weight_decay: AdamW settings (paper: 4096 epochs, batch 1024, lr 1e-4).
    scheduler_t0, eta_min: CosineAnnealingWarmRestarts, stepped once per epoch (paper: 512, 1e-10).
    max_masked: per star and epoch 0..max_masked of the 64 context slots are masked (paper: 59 → 5..64
    tokens). n_requests: request tokens per star per epoch (paper: 1).
    request_weight_tokens, request_weight: requestable tokens drawn `request_weight` times more often
    than the others (paper: none; a short CPU schedule learns the labels faster when they are asked
    for more often than the 110 XP coefficients).
    focus_inputs, focus_fraction, focus_max_masked: a fraction of the stars each epoch take their context
    from `focus_inputs` only, with 0..focus_max_masked slots masked (None: max_masked); see
    `xpengine.train.sampling` (paper: none, focus_fraction 0).
    truncate_fraction, truncate_min: a fraction of the stars in each batch have each XP band cut at a random
    order count in truncate_min..55 (`xpengine.train.sampling`; paper: none, 0). truncate_counts: None, or a
    (BP, RP) relevant-base count table (`training/relevancy_counts.py`) from which a cut star's counts are
    drawn instead (archive-like patterns, independent of the star).
    requestable: tokens that may be requested (Leung & Bovy: all XP, J−H, labels, ln E(B−V), fakemag;
    BP−RP and J−K are inputs only).
    val_inputs / val_labels: validation predicts `val_labels` from the fixed input `val_inputs`
    (default: BP/RP 0–29 + colours, the paper's main test) and reports the robust σ per label in
    physical units. val_every, checkpoint_every, log_every: in epochs (the last epoch always does all).
    device: "auto" (CUDA when available), "cpu", "cuda", "cuda:1"...
    precision: "auto" (CUDA: bf16 autocast where supported else fp16 + GradScaler; CPU: fp32),
    "fp32", "bf16" (autocast, also on CPU), "fp16" (CUDA only, with GradScaler).
    weights_dtype: dtype of model.safetensors (float32, float16, bfloat16); resuming always uses float32.
    drop_last: drop the last incomplete batch of an epoch (kept when the set is smaller than a batch).
    init_from: a checkpoint directory (a bundled model or a run's checkpoint) whose weights start the
    training instead of a random initialisation (transfer learning; the paper trains from scratch). The
    model configuration and vocabulary must match. Tokens that checkpoint learned keep its
    standardisation, so its embeddings keep their meaning; the others are fitted on this data. A fresh
    optimiser and schedule start at epoch 1. Ignored when resuming (the resumed checkpoint holds the
    weights), recorded in the provenance either way.
    epoch_pool_tokens, epoch_pool_fraction: the training stars with a value of any of `epoch_pool_tokens`
    form a pool of which each epoch draws a fresh random `epoch_pool_fraction` (the other stars are all
    used every epoch). With a mixed file built at synthetic weight 1, pool tokens [mass] and fraction W,
    the simulated stars keep the share of a weight-W file, but every one of them is seen over the epochs
    instead of the same fixed W share (`xpengine.train.sampling.epoch_rows`; paper: none). A fraction < 1
    without pool tokens is refused: there is no pool to draw from.
    compile: wrap the model in `torch.compile` for the training steps (fixed batch shapes with
    drop_last; on a GPU the small per-step kernels otherwise leave it launch-bound). Validation,
    checkpoints and inference use the plain module.
    """

    data_path: str | None = None
    output_dir: str | None = None
    model: ModelConfig = field(default_factory=ModelConfig)
    epochs: int = 4096
    batch_size: int = 1024
    lr: float = 1e-4
    weight_decay: float = 0.01
    scheduler_t0: int = 512
    eta_min: float = 1e-10
    max_masked: int = 59
    n_requests: int = 1
    requestable: tuple[str, ...] = (
        "kind:xp",
        "jh",
        "teff",
        "logg",
        "m_h",
        "logebv",
        "g_fakemag",
        "mass",
        "ln_age",
    )
    request_weight_tokens: tuple[str, ...] = ()
    request_weight: float = 1.0
    focus_inputs: tuple[str, ...] = ()
    focus_fraction: float = 0.0
    focus_max_masked: int | None = None
    truncate_fraction: float = 0.0
    truncate_min: int = 3
    truncate_counts: str | None = None
    val_inputs: tuple[str, ...] = ("bp0..29", "rp0..29", "bprp", "jh", "jk")
    val_labels: tuple[str, ...] = ("teff", "logg", "m_h", "mass", "ln_age")
    val_every: int = 16
    val_max_stars: int | None = None
    val_batch_size: int = 4096
    checkpoint_every: int = 128
    keep_checkpoints: int = 2
    log_every: int = 1
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    weights_dtype: str = "float32"
    grad_clip_norm: float | None = None
    drop_last: bool = True
    epoch_pool_tokens: tuple[str, ...] = ()
    epoch_pool_fraction: float = 1.0
    compile: bool = False
    init_from: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, ModelConfig):
                v = v.to_dict()
            elif isinstance(v, tuple):
                v = list(v)
            out[f.name] = v
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Validate and convert a plain mapping; every problem is reported in one error."""
        problems: list[str] = []
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(d) - set(known))
        if unknown:
            problems.append(f"unknown keys {unknown}")
        kw: dict[str, Any] = {}
        for name, value in d.items():
            if name not in known:
                continue
            if name == "model":
                try:
                    kw[name] = _model_config(value)
                except (ValueError, TypeError) as exc:
                    problems.append(f"model: {exc}")
                continue
            conv, err = _convert(name, value, _KINDS[name])
            if err:
                problems.append(err)
            else:
                kw[name] = conv
        if not problems:
            try:
                cfg = cls(**kw)
            except (ValueError, TypeError) as exc:
                problems.append(str(exc))
            else:
                problems.extend(cfg.problems())
                if not problems:
                    return cfg
        raise ValueError("invalid training configuration:\n  " + "\n  ".join(problems))

    def problems(self) -> list[str]:
        p: list[str] = []
        for name in ("epochs", "batch_size", "scheduler_t0", "val_every", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                p.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.max_masked < self.model.context_length:
            p.append(
                f"max_masked must be in [0, context_length={self.model.context_length}), got {self.max_masked}"
            )
        if self.request_weight <= 0:
            p.append(f"request_weight must be > 0, got {self.request_weight}")
        if not 0.0 <= self.focus_fraction <= 1.0:
            p.append(f"focus_fraction must be in [0, 1], got {self.focus_fraction}")
        if self.focus_fraction > 0 and not self.focus_inputs:
            p.append("focus_fraction > 0 needs focus_inputs")
        fm = self.focus_max_masked
        if fm is not None and not 0 <= fm < self.model.context_length:
            p.append(f"focus_max_masked must be in [0, context_length={self.model.context_length}), got {fm}")
        if not 0.0 <= self.truncate_fraction <= 1.0:
            p.append(f"truncate_fraction must be in [0, 1], got {self.truncate_fraction}")
        if not 1 <= self.truncate_min <= 55:
            p.append(f"truncate_min must be in [1, 55], got {self.truncate_min}")
        if self.truncate_counts is not None and self.truncate_fraction == 0:
            p.append("truncate_counts needs truncate_fraction > 0")
        if self.n_requests < 1:
            p.append(f"n_requests must be >= 1, got {self.n_requests}")
        if not 0.0 < self.epoch_pool_fraction <= 1.0:
            p.append(f"epoch_pool_fraction must be in (0, 1], got {self.epoch_pool_fraction}")
        elif self.epoch_pool_fraction < 1.0 and not self.epoch_pool_tokens:  # no pool: it would do nothing
            p.append(
                f"epoch_pool_fraction {self.epoch_pool_fraction} < 1 needs epoch_pool_tokens (the tokens whose "
                "stars form the pool an epoch draws that fraction of); without them every star is used every epoch"
            )
        if self.grad_clip_norm is not None and not self.grad_clip_norm > 0:  # ≤ 0 zeroes or flips gradients
            p.append(f"grad_clip_norm must be > 0 (or null: no clipping), got {self.grad_clip_norm}")
        if self.val_max_stars is not None and self.val_max_stars < 1:
            p.append(f"val_max_stars must be >= 1 (or null: every validation star), got {self.val_max_stars}")
        if self.val_batch_size < 1:
            p.append(f"val_batch_size must be >= 1, got {self.val_batch_size}")
        if self.keep_checkpoints < 1:
            p.append(f"keep_checkpoints must be >= 1, got {self.keep_checkpoints}")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            p.append(f"precision must be auto, fp32, bf16 or fp16, got {self.precision!r}")
        if self.weights_dtype not in ("float32", "float16", "bfloat16"):
            p.append(f"weights_dtype must be float32, float16 or bfloat16, got {self.weights_dtype!r}")
        if self.lr <= 0 or self.eta_min < 0 or self.weight_decay < 0:
            p.append(
                f"need lr > 0, eta_min >= 0, weight_decay >= 0; got {self.lr}, {self.eta_min}, {self.weight_decay}"
            )
        return p


# Expected kind of each scalar field: used to validate YAML input.
_KINDS: dict[str, str] = {
    "data_path": "str?",
    "output_dir": "str?",
    "epochs": "int",
    "batch_size": "int",
    "lr": "float",
    "weight_decay": "float",
    "scheduler_t0": "int",
    "eta_min": "float",
    "max_masked": "int",
    "n_requests": "int",
    "requestable": "strs",
    "request_weight_tokens": "strs",
    "request_weight": "float",
    "focus_inputs": "strs",
    "focus_fraction": "float",
    "focus_max_masked": "int?",
    "truncate_fraction": "float",
    "truncate_min": "int",
    "truncate_counts": "str?",
    "val_inputs": "strs",
    "val_labels": "strs",
    "val_every": "int",
    "val_max_stars": "int?",
    "val_batch_size": "int",
    "checkpoint_every": "int",
    "keep_checkpoints": "int",
    "log_every": "int",
    "seed": "int",
    "device": "str",
    "precision": "str",
    "weights_dtype": "str",
    "grad_clip_norm": "float?",
    "drop_last": "bool",
    "epoch_pool_tokens": "strs",
    "epoch_pool_fraction": "float",
    "compile": "bool",
    "init_from": "str?",
}


def _convert(name: str, value: Any, kind: str) -> tuple[Any, str | None]:
    optional = kind.endswith("?")
    kind = kind.rstrip("?")
    if value is None:
        return (None, None) if optional else (None, f"{name} may not be empty")
    bad = f"{name} must be {kind}{' or null' if optional else ''}, got {value!r}"
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            return None, bad
        return value, None
    if kind == "float":
        if isinstance(value, bool):
            return None, bad
        if isinstance(value, int | float):
            return float(value), None
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" as a string
            try:
                return float(value), None
            except ValueError:
                return None, bad
        return None, bad
    if kind == "bool":
        return (value, None) if isinstance(value, bool) else (None, bad)
    if kind == "str":
        return (str(value), None) if isinstance(value, str | Path) else (None, bad)
    if kind == "strs":
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list | tuple) and all(isinstance(x, str) for x in value):
            return tuple(value), None
        return None, bad
    raise AssertionError(kind)  # unreachable: _KINDS only uses the kinds above


def _model_config(value: Any) -> ModelConfig:
    if isinstance(value, ModelConfig):
        return value
    if isinstance(value, str):
        if value not in PRESETS:
            raise ValueError(f"unknown model preset {value!r}; presets: {sorted(PRESETS)}")
        return PRESETS[value]
    if isinstance(value, dict):
        return ModelConfig.from_dict(value)
    raise TypeError(f"expected a mapping or preset name, got {type(value).__name__}")


def _parse_value(text: str) -> Any:
    import yaml

    value = yaml.safe_load(text) if text.strip() else None
    if isinstance(value, str):
        for conv in (int, float):
            try:
                return conv(value)
            except ValueError:
                pass
    return value


def apply_overrides(config: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply `a.b=value` overrides (value parsed as YAML) to a nested dict, in place; returns it."""
    problems: list[str] = []
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            problems.append(f"override {item!r} is not of the form key=value")
            continue
        parts = key.strip().split(".")
        node = config
        for p in parts[:-1]:
            if isinstance(node.get(p), str) and p == "model":
                node[p] = PRESETS[node[p]].to_dict() if node[p] in PRESETS else node[p]
            child = node.setdefault(p, {})
            if not isinstance(child, dict):
                problems.append(f"override {item!r}: {p!r} is not a mapping")
                break
            node = child
        else:
            node[parts[-1]] = _parse_value(text)
    if problems:
        raise ValueError("bad overrides:\n  " + "\n  ".join(problems))
    return config


def load_config_dict(path: str | Path, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Read a training YAML, merge its model YAML (when `model` is a file path), apply overrides."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"training config {path} does not exist")
    config = yaml.safe_load(path.read_text()) or {}
    if not isinstance(config, dict):
        raise ValueError(f"{path}: expected a mapping at the top level, got {type(config).__name__}")
    model = config.get("model")
    if isinstance(model, str) and model.endswith((".yaml", ".yml")):
        model_path = (path.parent / model).resolve()
        if not model_path.is_file():
            raise FileNotFoundError(f"{path}: model config {model} (resolved to {model_path}) does not exist")
        config["model"] = yaml.safe_load(model_path.read_text()) or {}
    return apply_overrides(config, overrides)


def load_train_config(path: str | Path, overrides: Sequence[str] = ()) -> TrainConfig:
    """:class:`TrainConfig` from a YAML file plus dotted `key=value` overrides."""
    return TrainConfig.from_dict(load_config_dict(path, overrides))
