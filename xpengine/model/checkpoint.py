"""Model checkpoints: a directory of safetensors and JSON files, never pickle.

Layout::

    <dir>/model.safetensors        weights (float32, or float16/bfloat16 to save space)
    <dir>/config.json              {"model": ModelConfig, "train": training configuration,
                                    "learned_outputs": [...], "learned_inputs": [...]}
    <dir>/vocabulary.json          the token vocabulary (xpengine.features.vocabulary)
    <dir>/standardization.json     per-token centre and scale
    <dir>/provenance.json          data path + sha256 + row counts, git commit, versions, hardware, ...
    <dir>/train_state.safetensors  optional, for resuming: optimizer moments, RNG states (+ float32
    <dir>/train_state.json         weights when model.safetensors is reduced precision); scalars in JSON

`learned_outputs` are the tokens the model was trained to predict (the requestable tokens that had
finite values in its training data), `learned_inputs` the tokens it was trained to read (those with
finite values, any of which could be drawn into a training context); see :class:`LearnedTokens`.
Checkpoints written without them (before they were recorded) load with the whole vocabulary treated
as learned, and a warning saying so.

`safetensors` is needed only to save or load (a clear error says so when it is missing).
Directories are written to a temporary sibling and renamed into place, so a crash never leaves a
half-written checkpoint under the final name.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from xpengine.features.vocabulary import Vocabulary
from xpengine.io.atomic import directory_written_atomically
from xpengine.model.metadata import (  # the torch-free side of a checkpoint, re-exported here
    CONFIG_FILE,
    FORMAT_VERSION,
    PROVENANCE_FILE,
    STANDARDIZATION_FILE,
    STATE_JSON_FILE,
    STATE_TENSORS_FILE,
    VOCABULARY_FILE,
    WEIGHTS_FILE,
    CheckpointMetadata,
    LearnedTokens,
    _learned_from_config,
    _learned_in_vocabulary,
    available_models,
    describe_tokens,
    read_checkpoint_metadata,
    resolve_model_path,
)
from xpengine.model.standardize import Standardization
from xpengine.model.transformer import ModelConfig, XPTransformer

__all__ = [
    "Checkpoint",
    "CheckpointMetadata",
    "LearnedTokens",
    "TrainState",
    "available_models",
    "describe_tokens",
    "load_checkpoint",
    "load_train_state",
    "read_checkpoint_metadata",
    "resolve_model_path",
    "restore_weights",
    "save_checkpoint",
]

logger = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _safetensors_torch() -> Any:
    try:
        import safetensors.torch
    except ImportError as exc:  # pragma: no cover - exercised only where safetensors is absent
        raise ImportError(
            "saving or loading xpengine checkpoints needs the `safetensors` package "
            "(pip install safetensors); the model itself runs without it"
        ) from exc
    return safetensors.torch


@dataclass
class Checkpoint:
    """A loaded checkpoint. `model` is in eval mode, float32, on the requested device. `learned`: the
    tokens it was trained to predict and read (:class:`LearnedTokens`)."""

    path: Path
    model: XPTransformer
    model_config: ModelConfig
    train_config: dict[str, Any]
    vocabulary: Vocabulary
    standardization: Standardization
    provenance: dict[str, Any]
    learned: LearnedTokens | None = None

    def __post_init__(self) -> None:
        if self.learned is None:
            self.learned = LearnedTokens.whole_vocabulary(self.vocabulary)

    @property
    def has_train_state(self) -> bool:
        return (self.path / STATE_JSON_FILE).exists()


@dataclass
class TrainState:
    """Everything beyond the weights needed to continue training exactly where it stopped.

    epoch: number of completed epochs. optimizer / scheduler / scaler: their `state_dict()`s.
    rng: named uint8 RNG state tensors (torch CPU, CUDA devices, the sampling generator).
    model_state: float32 weights when model.safetensors holds reduced precision, else None.
    extra: free-form JSON (metrics history length, ...).
    """

    epoch: int
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    scaler: dict[str, Any]
    rng: dict[str, torch.Tensor]
    model_state: dict[str, torch.Tensor] | None = None
    extra: dict[str, Any] | None = None


def save_checkpoint(
    path: str | os.PathLike,
    model: XPTransformer,
    *,
    vocabulary: Vocabulary,
    standardization: Standardization,
    train_config: dict[str, Any] | None = None,
    provenance: dict[str, Any] | None = None,
    weights_dtype: str = "float32",
    train_state: TrainState | None = None,
    learned: LearnedTokens | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a checkpoint directory at `path` (refuses to replace an existing one unless `overwrite`).

    learned: the tokens the model was trained to predict and read, written into config.json (the
    training loop always passes them); None writes no record, and loading then treats the whole
    vocabulary as learned.
    """
    _safetensors_torch()  # a clear error before any work when safetensors is missing
    path = Path(path)
    if weights_dtype not in _DTYPES:
        raise ValueError(f"weights_dtype must be one of {sorted(_DTYPES)}, got {weights_dtype!r}")
    if path.exists() and not overwrite:
        raise FileExistsError(f"checkpoint directory {path} exists; pass overwrite=True to replace it")
    if list(standardization.names) != vocabulary.names:
        raise ValueError("standardization token names differ from the vocabulary's")
    if model.config.n_tokens != len(vocabulary):
        raise ValueError(
            f"model has {model.config.n_tokens} tokens but vocabulary {vocabulary.name} has {len(vocabulary)}"
        )
    if learned is not None:
        # keep the per-output record of inputs never seen beside it (dropping it made the Predictor read
        # untrained contexts, e.g. [M/H] with g_fakemag: session 16)
        checked = _learned_in_vocabulary(learned.outputs, learned.inputs, vocabulary, "save_checkpoint")
        bad = [
            (o, i)
            for o, i in learned.unseen_inputs
            if o not in checked.outputs or any(n not in checked.inputs for n in i)
        ]
        if bad:
            raise ValueError(
                f"save_checkpoint: unseen_inputs must pair learned outputs with learned inputs, got {bad}"
            )
        learned = dataclasses.replace(
            checked,
            unseen_inputs=learned.unseen_inputs,
            luminosity_index_max=learned.luminosity_index_max,
            luminosity_n_stars=learned.luminosity_n_stars,
        )
    with directory_written_atomically(path) as tmp:
        dtype = _DTYPES[weights_dtype]
        _write_weights(tmp / WEIGHTS_FILE, model.state_dict(), weights_dtype)
        _write_json(
            tmp / CONFIG_FILE,
            {
                "format_version": FORMAT_VERSION,
                "weights_dtype": weights_dtype,
                "model": model.config.to_dict(),
                "train": train_config or {},
                **(learned.to_config() if learned is not None else {}),
            },
        )
        (tmp / VOCABULARY_FILE).write_text(vocabulary.to_json())
        (tmp / STANDARDIZATION_FILE).write_text(standardization.to_json())
        _write_json(tmp / PROVENANCE_FILE, provenance or {})
        if train_state is not None:
            if train_state.model_state is None and dtype != torch.float32:
                train_state.model_state = {
                    k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()
                }
            _save_train_state(tmp, train_state)
    return path


def _write_weights(file: Path, state: dict[str, torch.Tensor], weights_dtype: str) -> None:
    """model.safetensors: floating tensors in `weights_dtype`, the rest as they are."""
    dtype = _DTYPES[weights_dtype]
    _safetensors_torch().save_file(
        {
            k: (v.detach().to("cpu", dtype) if v.is_floating_point() else v.detach().cpu()).contiguous()
            for k, v in state.items()
        },
        str(file),
        metadata={"format": "pt", "xpengine_checkpoint": FORMAT_VERSION, "dtype": weights_dtype},
    )


def restore_weights(path: str | os.PathLike) -> Path:
    """Write a checkpoint's model.safetensors again from the float32 model state its training state
    keeps (a checkpoint saved with float16/bfloat16 weights keeps one for exact resume), in the dtype
    its config.json names: the tensors and metadata `save_checkpoint` wrote (not always the same bytes:
    safetensors orders the metadata's keys arbitrarily). A checkpoint can then travel without
    its weights file (training/lease_return.py: a lent GPU returns at most 8 files of 16 MiB)."""
    path = Path(path)
    config = json.loads((path / CONFIG_FILE).read_text())
    weights_dtype = config.get("weights_dtype", "float32")
    state = _safetensors_torch().load_file(str(path / STATE_TENSORS_FILE))
    model_state = {k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")}
    if not model_state:
        raise ValueError(
            f"{path}: its training state keeps no model state (a float32 checkpoint keeps the weights "
            f"only in {WEIGHTS_FILE})"
        )
    # the order of the model's state_dict, as save_checkpoint writes it
    order = XPTransformer(ModelConfig.from_dict(config["model"])).state_dict().keys()
    missing = [k for k in order if k not in model_state]
    if missing:
        raise ValueError(f"{path}: the training state's model state lacks {missing[:5]}")
    _write_weights(path / WEIGHTS_FILE, {k: model_state[k] for k in order}, weights_dtype)
    return path / WEIGHTS_FILE


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> Checkpoint:
    """Read a checkpoint directory; the model comes back float32, in eval mode, on `device`."""
    st = _safetensors_torch()
    path = Path(path)
    missing = [
        f
        for f in (WEIGHTS_FILE, CONFIG_FILE, VOCABULARY_FILE, STANDARDIZATION_FILE)
        if not (path / f).is_file()
    ]
    if missing:
        raise FileNotFoundError(f"{path} is not an xpengine checkpoint: missing {missing}")
    config = json.loads((path / CONFIG_FILE).read_text())
    model_config = ModelConfig.from_dict(config["model"])
    vocabulary = Vocabulary.from_dict(json.loads((path / VOCABULARY_FILE).read_text()))
    standardization = Standardization.from_dict(json.loads((path / STANDARDIZATION_FILE).read_text()))
    prov_file = path / PROVENANCE_FILE
    provenance = json.loads(prov_file.read_text()) if prov_file.is_file() else {}
    if model_config.n_tokens != len(vocabulary):
        raise ValueError(
            f"{path}: model config has {model_config.n_tokens} tokens, vocabulary has {len(vocabulary)}"
        )
    learned = _learned_from_config(config, vocabulary, path)
    model = XPTransformer(model_config)
    state = st.load_file(str(path / WEIGHTS_FILE))
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    model.load_state_dict(state, strict=True)
    model.to(device).eval()
    return Checkpoint(
        path=path,
        model=model,
        model_config=model_config,
        train_config=config.get("train", {}),
        vocabulary=vocabulary,
        standardization=standardization,
        provenance=provenance,
        learned=learned,
    )


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=1, default=_json_default))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, tuple):
        return list(obj)
    if isinstance(obj, torch.Tensor) and obj.numel() == 1:
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    raise TypeError(f"cannot store {type(obj).__name__} in a checkpoint JSON file")


def _save_train_state(directory: Path, s: TrainState) -> None:
    st = _safetensors_torch()
    tensors: dict[str, torch.Tensor] = {}
    opt_state_json: dict[str, dict[str, Any]] = {}
    for pid, pstate in s.optimizer["state"].items():
        for k, v in pstate.items():
            if isinstance(v, torch.Tensor):
                tensors[f"optimizer.{pid}.{k}"] = v.detach().cpu().contiguous()
            else:
                opt_state_json.setdefault(str(pid), {})[k] = v
    for name, t in s.rng.items():
        tensors[f"rng.{name}"] = t.detach().cpu().contiguous()
    for k, v in (s.model_state or {}).items():
        tensors[f"model.{k}"] = v
    st.save_file(tensors, str(directory / STATE_TENSORS_FILE), metadata={"format": "pt"})
    _write_json(
        directory / STATE_JSON_FILE,
        {
            "epoch": s.epoch,
            "optimizer_param_groups": s.optimizer["param_groups"],
            "optimizer_state_scalars": opt_state_json,
            "optimizer_state_ids": [str(k) for k in s.optimizer["state"]],
            "scheduler": s.scheduler,
            "scaler": s.scaler,
            "has_model_state": s.model_state is not None,
            "extra": s.extra or {},
        },
    )


def load_train_state(path: str | os.PathLike) -> TrainState:
    """Read what :func:`save_checkpoint` stored for resuming (tensors on CPU)."""
    st = _safetensors_torch()
    path = Path(path)
    if not (path / STATE_JSON_FILE).is_file():
        raise FileNotFoundError(f"{path} holds no training state ({STATE_JSON_FILE}); cannot resume from it")
    meta = json.loads((path / STATE_JSON_FILE).read_text())
    tensors = st.load_file(str(path / STATE_TENSORS_FILE))
    opt_state: dict[int, dict[str, Any]] = {int(k): {} for k in meta["optimizer_state_ids"]}
    rng: dict[str, torch.Tensor] = {}
    model_state: dict[str, torch.Tensor] = {}
    for key, t in tensors.items():
        kind, rest = key.split(".", 1)
        if kind == "optimizer":
            pid, name = rest.split(".", 1)
            opt_state[int(pid)][name] = t
        elif kind == "rng":
            rng[rest] = t
        elif kind == "model":
            model_state[rest] = t
    for pid, scalars in meta["optimizer_state_scalars"].items():
        opt_state[int(pid)].update(scalars)
    groups = meta["optimizer_param_groups"]
    for g in groups:  # JSON turned tuples into lists
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    return TrainState(
        epoch=int(meta["epoch"]),
        optimizer={"state": opt_state, "param_groups": groups},
        scheduler=meta["scheduler"],
        scaler=meta["scaler"],
        rng=rng,
        model_state=model_state if meta.get("has_model_state") else None,
        extra=meta.get("extra") or {},
    )


# --- bundled models ---------------------------------------------------------------------------------
