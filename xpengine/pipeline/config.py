"""Configuration of the catalogue inference job (`jobs/infer_gaia.py`, `configs/infer/*.yaml`).

`labels` and `inputs` default to None, meaning "what the model learned": :func:`resolve_labels` and
:func:`resolve_inputs` turn them into lists for the model of the configuration, and refuse labels the
model was never trained to predict.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xpengine.catalog.schema import LABELS, check_learned_labels, model_default_labels

if TYPE_CHECKING:
    pass

__all__ = [
    "InferenceConfig",
    "check_learned_labels",
    "load_inference_config",
    "model_default_labels",
    "resolve_inputs",
    "resolve_labels",
]

log = logging.getLogger(__name__)


@dataclass
class InferenceConfig:
    """Everything the inference job needs. Paths may be local or URLs (file://, memory://, s3://...).

    input: directory, glob or URL of `XpContinuousMeanSpectrum_*` partitions (or single files); several
        may be given. None = the embedded default (bundled simulated sky + real Gaia DR3 samples).
    gaia_source: directory/glob/URL of `GaiaSource_*` partitions, paired by partition suffix.
    model: checkpoint directory or bundled model name.
    """

    input: list[str] | None = None
    gaia_source: list[str] | None = None
    tmass: str | None = None
    ebv: str | None = None
    model: str = "gaia-xp"
    output: str | None = None
    # catalogue labels; None = the model's default labels, those it learned (resolve_labels)
    labels: list[str] | None = None
    # context tokens given to the model (token-list syntax of the training config; those a star lacks
    # are skipped, those the model's vocabulary lacks or it never read in training are dropped).
    # None = the model's own validation inputs (resolve_inputs): for gaia-xp and apogee-xp BP/RP 0-29
    # and the colours; for synthetic-sky BP/RP 0-27, the colours, ln E(B-V) and the pseudo-luminosity.
    # The models were trained on at most 64 context tokens.
    inputs: list[str] | None = None
    overwrite: bool = False
    # resources
    # None for the next four: chosen per device (xpengine.pipeline.tuning): GPU actors one per GPU;
    # CPU actors (read and predict fused) fill the node, each with the measured best threads
    actors: int | None = None
    gpus_per_actor: float | None = None  # None = 1 when the cluster has GPUs, else 0
    cpus_per_actor: float | None = None  # None: GPU actors 1, CPU actors their torch threads
    torch_threads: int | None = None  # per CPU actor; None: the measured table's, else 1
    read_cpus: float = 1.0  # per read task (a separate stage only beside GPU actors)
    batch_size: int | None = None  # stars per model batch; None: measured table or calibration
    chunk_rows: int = 16384
    dtype: str = "float32"  # or "bfloat16"
    num_cpus: int | None = None  # for a local cluster the job starts itself
    num_gpus: int | None = None  # GPUs a local cluster declares (None: Ray detects them)
    device: str | None = None  # the actors' torch device; None: cuda for GPU actors, else cpu
    address: str | None = None  # Ray cluster address; None = RAY_ADDRESS or a new local cluster
    # catalogue quality flags
    giant_logg_max: float = 3.5
    giant_teff_range: tuple[float, float] = (3500.0, 5500.0)
    # mass and age are flagged OUTSIDE_TRAINING_DOMAIN when the parallax says M_G > this at 2σ (a dwarf)
    giant_abs_g_max: float = 3.5
    max_relative_error: dict[str, float] = field(default_factory=lambda: {"mass": 0.3, "age": 0.6})
    max_error: dict[str, float] = field(default_factory=lambda: {"teff": 250.0, "logg": 0.4, "m_h": 0.3})
    progress_interval_s: float = 10.0
    # the output's lock is stale (taken over) when its holder's heartbeat is older than this, or at
    # once when its holder ran on this host and is gone
    lock_stale_s: float = 600.0
    checksum: bool = True

    def validate(self) -> None:
        """Collect every configuration problem and raise them together."""
        problems = []
        unknown = [lab for lab in self.labels or () if lab not in LABELS]
        if unknown:
            problems.append(f"labels: unknown {unknown}, valid: {sorted(LABELS)}")
        if self.actors is not None and self.actors < 1:
            problems.append(f"actors: must be ≥ 1, got {self.actors}")
        if self.batch_size is not None and self.batch_size < 1:
            problems.append(f"batch_size: must be ≥ 1 (or unset: chosen per device), got {self.batch_size}")
        if self.torch_threads is not None and self.torch_threads < 1:
            problems.append(
                f"torch_threads: must be ≥ 1 (or unset: chosen per device), got {self.torch_threads}"
            )
        if self.chunk_rows < 1:
            problems.append(f"chunk_rows: must be ≥ 1, got {self.chunk_rows}")
        if self.dtype not in ("float32", "bfloat16", "auto"):
            problems.append(f"dtype: must be float32, bfloat16 or auto, got {self.dtype!r}")
        if self.gaia_source and not self.input:
            problems.append("gaia_source given without input")
        if problems:
            raise ValueError("invalid inference configuration:\n  " + "\n  ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_inference_config(
    path: str | Path | None, overrides: dict[str, Any] | None = None
) -> InferenceConfig:
    """Read a YAML config (None = defaults) and apply overrides (keys = field names)."""
    data: dict[str, Any] = {}
    if path is not None:
        import yaml

        try:
            with open(path) as f:
                data = yaml.safe_load(f) or {}
        except yaml.YAMLError as exc:
            raise ValueError(f"{path}: not valid YAML: {exc}".replace("\n", " ")) from exc
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping of configuration keys, got {type(data).__name__}")
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    names = {f.name for f in dataclasses.fields(InferenceConfig)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{path}: unknown configuration keys {unknown}; valid keys: {sorted(names)}")
    for key in ("input", "gaia_source"):
        if isinstance(data.get(key), str):
            data[key] = [data[key]]
    if "giant_teff_range" in data:
        data["giant_teff_range"] = tuple(data["giant_teff_range"])
    cfg = InferenceConfig(**data)
    cfg.validate()
    return cfg


def resolve_labels(cfg: InferenceConfig) -> list[str]:
    """The catalogue labels the job predicts with `cfg.model`; call it before planning any work.

    `cfg.labels` when given: a ValueError (one line: the labels, the model, the labels it learned)
    when the model was not trained to predict one of them. `cfg.labels` None: the model's default
    labels (:func:`model_default_labels`): apogee-xp gives teff, logg, m_h, alpha_m; synthetic-sky
    teff, logg, m_h, mass, age. Reads only the model's JSON files (no weights); a FileNotFoundError
    when `cfg.model` is neither a checkpoint directory nor a bundled model.
    """
    from xpengine.inference.predictor import resolve_model_path
    from xpengine.model.checkpoint import read_checkpoint_metadata

    meta = read_checkpoint_metadata(resolve_model_path(cfg.model))
    if cfg.labels is None:
        return model_default_labels(meta.train_config, meta.learned, cfg.model)
    check_learned_labels(cfg.labels, meta.learned, cfg.model)
    return list(cfg.labels)


def resolve_inputs(cfg: InferenceConfig) -> list[str]:
    """The context tokens the job gives `cfg.model`, as token names.

    `cfg.inputs` when given, less the tokens the model's vocabulary lacks and those it never read
    in training (one log line); None: the model's default context (its validation inputs that it
    read, :attr:`xpengine.inference.predictor.Predictor.default_inputs`). Reads only the model's
    JSON files.
    """
    from xpengine.inference.predictor import FALLBACK_INPUTS, resolve_model_path
    from xpengine.model.checkpoint import describe_tokens, read_checkpoint_metadata

    meta = read_checkpoint_metadata(resolve_model_path(cfg.model))
    spec = cfg.inputs if cfg.inputs is not None else meta.train_config.get("val_inputs") or FALLBACK_INPUTS
    names: list[str] = []
    for item in spec:
        try:
            names += [t for t in meta.vocabulary.select([item]) if t not in names]
        except ValueError:
            log.info("input token %r is not in the model's vocabulary: skipped", item)
    dropped = [t for t in names if t not in meta.learned.inputs]
    if dropped:
        log.info(
            "model %r never read input tokens %s in training: left out of its context",
            cfg.model,
            describe_tokens(dropped),
        )
    return [t for t in names if t in meta.learned.inputs]
