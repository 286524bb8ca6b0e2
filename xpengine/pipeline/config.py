"""Configuration of the catalogue inference job (`jobs/infer_gaia.py`, `configs/infer/*.yaml`).

`InferenceConfig` holds what the job reads and writes, and two nested objects: `Resources` (actors,
threads, batches, devices, the Ray cluster) and the catalogue's `FlagPolicy` (its one home is
`xpengine.catalog.flag_policy`; the job's defaults add error thresholds, `DEFAULT_FLAG_POLICY`). The YAML
files and the command line keep their flat keys (`actors: 2`, `giant_logg_max: 3.5`): the constructor
and `load_inference_config` route each flat key into its nested object, and a YAML file may also give
the nested mappings (`resources: {actors: 2}`, `flags: {giant_logg_max: 3.5}`).

`labels` and `inputs` default to None, meaning "what the model learned": :func:`resolve_labels` and
:func:`resolve_inputs` turn them into lists for the model of the configuration, and refuse labels the
model was never trained to predict.
"""

from __future__ import annotations

import dataclasses
import logging
import numbers
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xpengine.catalog.flag_policy import DEFAULT_FLAG_POLICY, FlagPolicy
from xpengine.catalog.schema import LABELS, check_learned_labels, model_default_labels
from xpengine.features.astrometry import FALLBACK_ZERO_POINT_MAS

__all__ = [
    "DEFAULT_FLAG_POLICY",
    "FLAG_KEYS",
    "RESOURCE_KEYS",
    "FlagPolicy",
    "InferenceConfig",
    "Resources",
    "check_learned_labels",
    "load_inference_config",
    "model_default_labels",
    "resolve_inputs",
    "resolve_labels",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Resources:
    """What the job runs on: the predictor pool, its batches and devices, and the Ray cluster.

    None for actors, gpus_per_actor, cpus_per_actor, torch_threads and batch_size: chosen per device
    (`xpengine.pipeline.tuning`): GPU actors one per GPU; CPU actors (read and predict fused) fill the
    node, each with the measured best threads."""

    actors: int | None = None
    gpus_per_actor: float | None = None  # None = 1 when the cluster has GPUs, else 0
    cpus_per_actor: float | None = None  # None: GPU actors 1, CPU actors their torch threads
    torch_threads: int | None = None  # per CPU actor; None: the measured table's, else 1
    read_cpus: float = 1.0  # per read task (a separate stage only beside GPU actors)
    batch_size: int | None = None  # stars per model batch; None: measured table or calibration
    chunk_rows: int = 16384
    dtype: str = "float32"  # or "bfloat16", "auto"
    num_cpus: int | None = None  # for a local cluster the job starts itself
    num_gpus: int | None = None  # GPUs a local cluster declares (None: Ray detects them)
    device: str | None = None  # the actors' torch device; None: cuda for GPU actors, else cpu
    address: str | None = None  # Ray cluster address; None = RAY_ADDRESS or a new local cluster
    # detached predictor actors kept warm between jobs on a running cluster (`xpengine.pipeline.warm_pool`)
    warm_pool: bool = False
    warm_pool_idle_s: float = 900.0  # a warm actor ends itself after this many seconds without work

    def problems(self) -> list[str]:
        """Every problem of these resources, one line each: first the type of each key (a YAML
        `actors: two` would otherwise end in a TypeError below, or deep inside Ray), then the ranges
        of those whose type is right."""
        typed = _field_problems(self)
        out = [p for lines in typed.values() for p in lines]

        def given(name: str) -> bool:
            return name not in typed and getattr(self, name) is not None

        if given("actors") and self.actors < 1:
            out.append(f"actors: must be ≥ 1, got {self.actors}")
        if given("batch_size") and self.batch_size < 1:
            out.append(f"batch_size: must be ≥ 1 (or unset: chosen per device), got {self.batch_size}")
        if given("torch_threads") and self.torch_threads < 1:
            out.append(f"torch_threads: must be ≥ 1 (or unset: chosen per device), got {self.torch_threads}")
        if given("chunk_rows") and self.chunk_rows < 1:
            out.append(f"chunk_rows: must be ≥ 1, got {self.chunk_rows}")
        if given("warm_pool_idle_s") and self.warm_pool_idle_s <= 0:
            out.append(f"warm_pool_idle_s: must be > 0 seconds, got {self.warm_pool_idle_s}")
        if given("dtype") and self.dtype not in ("float32", "bfloat16", "auto"):
            out.append(f"dtype: must be float32, bfloat16 or auto, got {self.dtype!r}")
        return out


_PATH_KEYS = frozenset({"input", "gaia_source", "tmass", "ebv", "model", "output"})
"""Keys whose text names a file, a directory or a URL: a Python caller may give an `os.PathLike`."""


def _as_text(value: Any) -> Any:
    """A path key's value with each `os.PathLike` (alone or in a list) as its text (`os.fspath`): the job
    compares, joins and JSON-writes (the catalogue's provenance) these values as text."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, list | tuple):
        return type(value)(os.fspath(x) if isinstance(x, os.PathLike) else x for x in value)
    return value


def _is_integer(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    """A finite real number (not a bool: YAML's `true` is no threshold)."""
    import math

    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _shown(v: Any) -> str:
    text = repr(v)
    return f"{text[:60]}{'...' if len(text) > 60 else ''} ({type(v).__name__})"


def _as_text_hint(v: Any) -> str:
    """Why a number may have arrived as text: YAML 1.1 reads `1e3` (no dot) or a quoted number as a string."""
    if not isinstance(v, str):
        return ""
    try:
        float(v)
    except ValueError:
        return ""
    return "; YAML reads a quoted number, or one such as 1e3 without a dot, as text: write 1000 or 1.0e3"


_SCALARS = {
    "int": (_is_integer, "an integer"),
    "float": (_is_number, "a number"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "str": (lambda v: isinstance(v, str), "text"),
}


def _type_problems(key: str, value: Any, annotation: str) -> list[str]:
    """Why `value` of configuration key `key` is not of the type its field declares (`annotation`, the
    dataclass field's type as text: `int | None`, `list[str] | None`, `Mapping[str, float]`, ...)."""
    kinds = [k.strip() for k in annotation.split("|")]
    kind = kinds[0]
    if value is None:
        return [] if "None" in kinds else [f"{key}: must be given, got null"]
    if key in _PATH_KEYS and isinstance(value, os.PathLike):
        return []
    if kind == "list[str]":
        if not isinstance(value, list | tuple):
            return [f"{key}: must be a list of text, got {_shown(value)}"]
        bad = [
            x
            for x in value
            if not isinstance(x, str) and not (key in _PATH_KEYS and isinstance(x, os.PathLike))
        ]
        return [f"{key}: must be a list of text, got item {_shown(bad[0])}"] if bad else []
    if kind == "tuple[float, float]":
        if not (isinstance(value, list | tuple) and len(value) == 2 and all(_is_number(x) for x in value)):
            return [f"{key}: must be a pair of numbers [low, high], got {_shown(value)}"]
        return [] if value[0] < value[1] else [f"{key}: low must be below high, got {list(value)}"]
    if kind == "Mapping[str, float]":
        if not isinstance(value, Mapping):
            return [f"{key}: must be a mapping of label to number ({{teff: 250.0}}), got {_shown(value)}"]
        out = []
        for label, limit in value.items():
            if label not in LABELS:
                out.append(f"{key}: unknown label {label!r}, valid: {sorted(LABELS)}")
            elif not _is_number(limit) or limit < 0:
                out.append(f"{key}: {label} must be a number ≥ 0, got {_shown(limit)}{_as_text_hint(limit)}")
        return out
    check, wanted = _SCALARS[kind]
    if check(value):
        return []
    hint = _as_text_hint(value) if kind in ("int", "float") else ""
    return [f"{key}: must be {wanted}, got {_shown(value)}{hint}"]


def _field_problems(obj: Any, skip: tuple[str, ...] = ()) -> dict[str, list[str]]:
    """The type problems of the dataclass `obj`'s fields (all but `skip`), by field name: a value the
    YAML file or a Python caller gave that the job would only trip on later (a TypeError in a
    comparison, or an error deep inside a Ray stage after the cluster started)."""
    out = {}
    for f in dataclasses.fields(obj):
        if f.name not in skip and (lines := _type_problems(f.name, getattr(obj, f.name), str(f.type))):
            out[f.name] = lines
    return out


def _default_flags() -> FlagPolicy:
    """A copy of `DEFAULT_FLAG_POLICY` (its threshold mappings not shared between configurations)."""
    return dataclasses.replace(
        DEFAULT_FLAG_POLICY,
        max_relative_error=dict(DEFAULT_FLAG_POLICY.max_relative_error),
        max_error=dict(DEFAULT_FLAG_POLICY.max_error),
    )


RESOURCE_KEYS = tuple(f.name for f in dataclasses.fields(Resources))
"""The flat configuration keys that belong to `Resources`."""
FLAG_KEYS = (
    "giant_logg_max",
    "giant_teff_range",
    "giant_abs_g_max",
    "max_relative_error",
    "max_error",
    "mass_age_from_isochrones",
    "extinction",
    "ebv_colour_bound",
)
"""The flat configuration keys that belong to the `FlagPolicy` (its `hot_bp_rp_max` is not configurable)."""


@dataclass(init=False)
class InferenceConfig:
    """Everything the inference job needs. Paths may be local or URLs (file://, s3://, gs://, ...; a
    memory:// file system belongs to one process, so it serves the output but not the inputs, which the
    Ray workers read).

    input: directory, glob or URL of `XpContinuousMeanSpectrum_*` partitions (or single files); several
        may be given. None = the embedded default (bundled simulated sky + real Gaia DR3 samples).
    gaia_source: directory/glob/URL of `GaiaSource_*` partitions, paired by partition suffix.
    model: checkpoint directory or bundled model name.
    resources: the predictor pool and the cluster (`Resources`); flags: the catalogue's `FlagPolicy`.

    The constructor also takes the flat keys of the YAML files and the command line
    (`InferenceConfig(actors=2, giant_logg_max=3.4)`) and puts each into its nested object.
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
    resources: Resources = field(default_factory=Resources)
    flags: FlagPolicy = field(default_factory=lambda: _default_flags())
    progress_interval_s: float = 10.0
    # the output's lock is stale (taken over) when its holder's heartbeat is older than this, or at
    # once when its holder ran on this host and is gone
    lock_stale_s: float = 600.0
    checksum: bool = True
    # on resume, read every finished partition's inputs again and compare their md5 with the record (off:
    # URL, size and mtime only, as make and rsync do; on, a resume over all of DR3 re-reads its inputs)
    verify_inputs: bool = False
    # on resume, keep finished partitions made with other xpengine code (the job's identity holds the
    # package's source digest, `code_identity`; each partition's record keeps the code that made it)
    allow_code_change: bool = False
    # the stars are real: mass and age σ carry the model's sim-to-real term (`calibration.json` format 4,
    # `xpengine.model.calibration.SimToReal`); false only for simulated skies, whose σ are scored as
    # calibrated on simulated stars
    sim_to_real_sigma: bool = True
    # the parallax zero point [mas] where Lindegren et al.'s cannot be computed (G < 6 or > 21, colours
    # outside their tables, or its inputs not in the gaia_source file: `nu_eff_used_in_astrometry` /
    # `pseudocolour`): by default the quasars' median, -0.017, with σ_ϖ widened by 0.02 mas (flag
    # NO_ZERO_POINT; `features.astrometry.FALLBACK_ZERO_POINT_ERROR_MAS`); None (`--zero-point-fallback
    # none`, YAML null) drops such a parallax (flags NO_ZERO_POINT, NO_PARALLAX), as Leung & Bovy did and as
    # the job did until session 32 (a query without ν_eff lost every parallax, Proxima's 768 mas included)
    zero_point_fallback: float | None = FALLBACK_ZERO_POINT_MAS

    def __init__(self, **kwargs: Any) -> None:
        own = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(kwargs) - own - set(RESOURCE_KEYS) - set(FLAG_KEYS))
        if unknown:
            raise TypeError(f"InferenceConfig: unknown keys {unknown}")
        for f in dataclasses.fields(self):
            if f.name in kwargs:
                value = kwargs[f.name]
            elif f.default_factory is not dataclasses.MISSING:
                value = f.default_factory()
            else:
                value = f.default
            setattr(self, f.name, _as_text(value) if f.name in _PATH_KEYS else value)
        if isinstance(self.zero_point_fallback, str) and self.zero_point_fallback.lower() == "none":
            self.zero_point_fallback = None  # `--zero-point-fallback none`: drop those parallaxes
        flat_resources = {k: kwargs[k] for k in RESOURCE_KEYS if k in kwargs}
        if flat_resources:
            self.resources = dataclasses.replace(self.resources, **flat_resources)
        flat_flags = {k: kwargs[k] for k in FLAG_KEYS if k in kwargs}
        if isinstance(flat_flags.get("giant_teff_range"), list | tuple):  # other types: validate() says so
            flat_flags["giant_teff_range"] = tuple(flat_flags["giant_teff_range"])
        if flat_flags:
            self.flags = dataclasses.replace(self.flags, **flat_flags)

    def problems(self) -> list[str]:
        """Every configuration problem, one line each ("key: what is wrong"): the type of each key
        first, then what a key of the right type may not be."""
        typed = _field_problems(self, skip=("resources", "flags"))
        problems = [p for lines in typed.values() for p in lines]
        if "labels" not in typed:
            unknown = [lab for lab in self.labels or () if lab not in LABELS]
            if unknown:
                problems.append(f"labels: unknown {unknown}, valid: {sorted(LABELS)}")
        for name, kind in (("resources", Resources), ("flags", FlagPolicy)):
            value = getattr(self, name)
            if not isinstance(value, kind):
                problems.append(f"{name}: must be a {kind.__name__}, got {_shown(value)}")
            elif name == "resources":
                problems += value.problems()
            else:
                typed_flags = _field_problems(value)
                problems += [p for lines in typed_flags.values() for p in lines]
                if "extinction" not in typed_flags:
                    problems += value.problems()
        if self.gaia_source and not self.input:
            problems.append("gaia_source given without input")
        zpf = self.zero_point_fallback
        if "zero_point_fallback" not in typed and zpf is not None and not -1.0 < zpf < 1.0:
            problems.append(f"zero_point_fallback: a parallax zero point in mas (|value| < 1), got {zpf}")
        return problems

    def validate(self) -> None:
        """Collect every configuration problem (`problems`) and raise them together."""
        problems = self.problems()
        if problems:
            raise ValueError("invalid inference configuration:\n  " + "\n  ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """The configuration by its flat keys (those of the YAML files and the command line), in the
        order the catalogue's provenance has always recorded them."""
        import copy

        d: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name == "resources":
                d.update(dataclasses.asdict(self.resources))
            elif f.name == "flags":
                d.update({k: copy.deepcopy(getattr(self.flags, k)) for k in FLAG_KEYS})
            else:
                d[f.name] = copy.deepcopy(getattr(self, f.name))
        return d


def load_inference_config(
    path: str | Path | None, overrides: dict[str, Any] | None = None
) -> InferenceConfig:
    """Read a YAML config (None = defaults) and apply overrides (keys = flat configuration keys).

    Keys are the flat ones (`actors`, `giant_logg_max`, ...); `resources` and `flags` mappings of the
    same keys are accepted too."""
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
    data = _flattened(data, path)
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    from_file = set(data) - set(given)
    data.update(given)
    names = {f.name for f in dataclasses.fields(InferenceConfig)} - {"resources", "flags"}
    names |= set(RESOURCE_KEYS) | set(FLAG_KEYS)
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{path}: unknown configuration keys {unknown}; valid keys: {sorted(names)}")
    for key in ("input", "gaia_source", "labels", "inputs"):
        if isinstance(data.get(key), str):  # one path, label or token list
            data[key] = [data[key]]
    cfg = InferenceConfig(**data)
    problems = cfg.problems()
    if problems:
        # a key the YAML file gave is named with its file; one of the command line stands alone
        where = [f"{path}: {p}" if p.split(":", 1)[0] in from_file else p for p in problems]
        raise ValueError("invalid inference configuration:\n  " + "\n  ".join(where))
    return cfg


def _flattened(data: dict[str, Any], path: str | Path | None) -> dict[str, Any]:
    """The YAML mapping with its nested `resources:` / `flags:` mappings spread into flat keys."""
    out = {k: v for k, v in data.items() if k not in ("resources", "flags")}
    for section, keys in (("resources", RESOURCE_KEYS), ("flags", FLAG_KEYS)):
        nested = data.get(section)
        if nested is None:
            continue
        if not isinstance(nested, dict):
            raise ValueError(f"{path}: `{section}` must be a mapping of {list(keys)}")
        wrong = sorted(set(nested) - set(keys))
        if wrong:
            raise ValueError(f"{path}: unknown `{section}` keys {wrong}; valid: {list(keys)}")
        twice = sorted(set(nested) & set(out))
        if twice:
            raise ValueError(f"{path}: {twice} given both flat and under `{section}`")
        out.update(nested)
    return out


def resolve_labels(cfg: InferenceConfig) -> list[str]:
    """The catalogue labels the job predicts with `cfg.model`; call it before planning any work.

    `cfg.labels` when given: a ValueError (one line: the labels, the model, the labels it learned)
    when the model was not trained to predict one of them. `cfg.labels` None: the model's default
    labels (:func:`model_default_labels`): apogee-xp gives teff, logg, m_h, alpha_m; synthetic-sky
    teff, logg, m_h, mass, age. Reads only the model's JSON files (no weights); a FileNotFoundError
    when `cfg.model` is neither a checkpoint directory nor a bundled model.
    """
    from xpengine.model.metadata import read_checkpoint_metadata, resolve_model_path

    meta = read_checkpoint_metadata(resolve_model_path(cfg.model))
    if cfg.labels is None:
        return model_default_labels(meta.train_config, meta.learned, cfg.model)
    check_learned_labels(cfg.labels, meta.learned, cfg.model)
    return list(cfg.labels)


def resolve_inputs(cfg: InferenceConfig) -> list[str]:
    """The context tokens the job gives `cfg.model`, as token names in the vocabulary's order.

    `cfg.inputs` when given, less the tokens the model's vocabulary lacks and those it never read
    in training (one log line); None: the model's default context (its validation inputs that it
    read, :attr:`xpengine.inference.predictor.Predictor.default_inputs`). The context is an unordered
    set (no positional encoding), so every spelling of one set (`bp0..29` or `bp0 bp1 ...`, in any
    order) gives the same list and the same rows, bit for bit; the bundled models' defaults are in
    that order already. (A job record written before session 18 kept the typed order; resuming it runs
    the new partitions in this order, whose float32 sums differ by a few 1e-6 in ln mass: a review's
    measurement.) Reads only the model's JSON files.
    """
    from xpengine.model.metadata import (
        FALLBACK_INPUTS,
        describe_tokens,
        read_checkpoint_metadata,
        resolve_model_path,
    )

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
    kept = set(names) & set(meta.learned.inputs)
    return [t for t in meta.vocabulary.names if t in kept]
