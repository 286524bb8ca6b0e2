"""Schema of the output catalogue (one Parquet file per input partition).

| column | type | unit | meaning |
|---|---|---|---|
| source_id | int64 | | Gaia DR3 source_id |
| hpx8 | int32 | | HEALPix level-8 index (nested), `source_id >> 43` |
| ra, dec, l, b | float64 | deg | from gaia_source (NaN without it: guard cuts with isfinite) |
| phot_g_mean_mag | float32 | mag | Gaia G |
| `<label>`, `<label>_error` | float32 | see LABELS | model mean and 1σ uncertainty |
| distance_pc, distance_pc_error | float32 | pc | 1000/ϖ (DISTANCE_FROM_PARALLAX), the isochrone fit's (DISTANCE_FROM_ISOCHRONES) or the model's (DISTANCE_FROM_MODEL) |
| n_input_tokens | int16 | | tokens the model was given for this source |
| flags | int64 | | `xpengine.features.flags.SourceFlag` bits |

Labels are requested from the model as vocabulary tokens and converted to physical units: `age` is
exp(ln_age) in Gyr with σ_age = age·σ_ln_age (Zhang et al. 2026 predict ln age), calibrated in linear
space when the model's calibration.json has an `age` entry; `ebv` is exp(logebv).

Units in the file (Parquet schema metadata), generated from one unit table (`catalog_units`):

- `xpengine.units`: JSON {column: unit} (astropy-parsable strings, '' = dimensionless), read by
  `xpengine.catalog.query`; `xpengine.<key>` for each entry of `catalog_schema(metadata=...)`
  (provenance), JSON.
- `table_meta_yaml`: the header that astropy's Parquet reader (`astropy.io.misc.parquet`) reads, in the
  form astropy itself writes (ECSV-style YAML, without the `# ` prefixes): `datatype`, one entry per
  column with `name`, `datatype`, `unit` and `description`, and `meta`, the `xpengine.*` entries, which
  astropy sets as `Table.meta`. So `astropy.table.Table.read(path)` gives `t["teff"].unit == u.K`.
  astropy fails (KeyError) on a column its header does not list, so the header also lists `reason`, the
  column the catalogue engine appends in its rejected-rows files; a table derived with other new columns
  that keeps this metadata must drop `table_meta_yaml` (or rebuild it) before astropy reads it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import yaml

if TYPE_CHECKING:
    from xpengine.model.checkpoint import LearnedTokens

__all__ = [
    "LABELS",
    "CatalogLabel",
    "catalog_schema",
    "catalog_units",
    "catalogue_provenance",
    "check_learned_labels",
    "check_simulated_sky_sigma",
    "label_tokens",
    "model_default_labels",
    "result_meta_yaml",
    "tokens_to_labels",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CatalogLabel:
    """A catalogue label: its column name, the model token behind it and its unit."""

    name: str
    token: str
    unit: str
    log_token: bool = False  # True when the token is the natural log of the label
    description: str = ""


LABELS: dict[str, CatalogLabel] = {
    lab.name: lab
    for lab in (
        CatalogLabel("teff", "teff", "K", description="effective temperature"),
        CatalogLabel("logg", "logg", "dex", description="log10 surface gravity [cm s^-2]"),
        CatalogLabel(
            "m_h",
            "m_h",
            "dex",
            description="metallicity [M/H] as the model learned it (provenance m_h_scale; fe_h: APOGEE DR17 [Fe/H])",
        ),
        CatalogLabel("alpha_m", "alpha_m", "dex", description="[alpha/M]"),
        CatalogLabel("mass", "mass", "Msun", description="stellar mass"),
        CatalogLabel("age", "ln_age", "Gyr", log_token=True, description="stellar age"),
        CatalogLabel("ebv", "logebv", "mag", log_token=True, description="reddening E(B-V)"),
    )
}
DEFAULT_LABELS: tuple[str, ...] = ("teff", "logg", "m_h", "mass", "age")
MASS_AGE_LABELS: frozenset[str] = frozenset({"mass", "age"})

_BASE_COLUMNS: tuple[tuple[str, pa.DataType, str], ...] = (
    ("source_id", pa.int64(), ""),
    ("hpx8", pa.int32(), ""),
    ("ra", pa.float64(), "deg"),
    ("dec", pa.float64(), "deg"),
    ("l", pa.float64(), "deg"),
    ("b", pa.float64(), "deg"),
    ("phot_g_mean_mag", pa.float32(), "mag"),
)
_TAIL_COLUMNS: tuple[tuple[str, pa.DataType, str], ...] = (
    ("distance_pc", pa.float32(), "pc"),
    ("distance_pc_error", pa.float32(), "pc"),
    ("n_input_tokens", pa.int16(), ""),
    ("flags", pa.int64(), ""),
)


_DESCRIPTIONS: dict[str, str] = {
    "source_id": "Gaia DR3 source_id",
    "hpx8": "HEALPix level-8 index (nested), source_id >> 43",
    "ra": "right ascension (ICRS, epoch J2016.0), from gaia_source (NaN without it)",
    "dec": "declination (ICRS, epoch J2016.0), from gaia_source (NaN without it)",
    "l": "Galactic longitude, from gaia_source (NaN without it)",
    "b": "Galactic latitude, from gaia_source (NaN without it)",
    "phot_g_mean_mag": "Gaia G-band mean magnitude, from gaia_source",
    "distance_pc": (
        "distance: 1000/parallax where the corrected parallax is significant (flag DISTANCE_FROM_PARALLAX), "
        "else, for a star outside the model's mass/age domain, from its isochrone fit's absolute G "
        "(DISTANCE_FROM_ISOCHRONES), else from the model's pseudo-luminosity and G (DISTANCE_FROM_MODEL)"
    ),
    "distance_pc_error": "1-sigma uncertainty of distance_pc",
    "n_input_tokens": "number of tokens the model was given for this source",
    "flags": "xpengine.features.flags.SourceFlag bits",
}
# the column the catalogue engine appends to the catalogue columns in its rejected-rows files
_REJECTED_REASON = {
    "name": "reason",
    "datatype": "string",
    "description": "rejected-rows files only: why the row is not in the catalogue",
}


def _check_labels(labels: tuple[str, ...] | list[str]) -> None:
    unknown = [lab for lab in labels if lab not in LABELS]
    if unknown:
        raise ValueError(f"unknown catalogue label(s) {unknown}; valid labels: {sorted(LABELS)}")


def result_meta_yaml(schema: pa.Schema, units: dict[str, str], metadata: dict[bytes, bytes]) -> str | None:
    """astropy's `table_meta_yaml` header (module docstring) for a query result of `schema`: each column's
    numpy datatype, its unit where `units` knows it, the catalogue's description where the column is one of
    its own, and the `xpengine.*` entries of `metadata` (JSON decoded) as Table.meta; None where a column has
    no plain numpy or string type (a list or a struct), which astropy could not be told about (the units
    then stay in `xpengine.units` only)."""
    meta: dict[str, Any] = {}
    for k, v in metadata.items():
        if k.startswith(b"xpengine."):
            try:
                meta[k.decode()] = json.loads(v)
            except ValueError:
                meta[k.decode()] = v.decode(errors="replace")
    columns = []
    for f in schema:
        if pa.types.is_string(f.type) or pa.types.is_large_string(f.type):
            datatype = "string"
        elif pa.types.is_integer(f.type) or pa.types.is_floating(f.type) or pa.types.is_boolean(f.type):
            datatype = np.dtype(f.type.to_pandas_dtype()).name
        else:
            return None
        entry = {"name": f.name, "datatype": datatype}
        if units.get(f.name):
            entry["unit"] = units[f.name]
        known = f.name in LABELS or f.name.removesuffix("_error") in LABELS or f.name in _DESCRIPTIONS
        if known:
            entry["description"] = _astropy_column(f, "", list(LABELS))["description"]
        columns.append(entry)
    header = {"datatype": columns, "meta": meta}
    return yaml.dump(header, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), sort_keys=False, width=130)


def label_tokens(labels: tuple[str, ...] | list[str]) -> list[str]:
    """Model tokens to request for the given catalogue labels."""
    _check_labels(labels)
    return [LABELS[lab].token for lab in labels]


def catalog_schema(labels: tuple[str, ...] | list[str], metadata: dict[str, Any] | None = None) -> pa.Schema:
    """The Arrow schema of a catalogue with `labels`; units and provenance go in the metadata: the
    `xpengine.*` keys and astropy's `table_meta_yaml` header (see the module docstring)."""
    _check_labels(labels)
    fields = [pa.field(n, t) for n, t, _ in _BASE_COLUMNS]
    for lab in labels:
        fields += [pa.field(lab, pa.float32()), pa.field(f"{lab}_error", pa.float32())]
    fields += [pa.field(n, t) for n, t, _ in _TAIL_COLUMNS]
    units = catalog_units(labels)
    entries: dict[str, Any] = {"xpengine.units": units}
    entries.update({f"xpengine.{k}": v for k, v in (metadata or {}).items()})
    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in entries.items()}
    header = {
        "datatype": [_astropy_column(f, units[f.name], labels) for f in fields] + [_REJECTED_REASON],
        # astropy's Table.meta: the same entries, as the JSON keys decode (tuples become lists)
        "meta": {k: v if isinstance(v, str) else json.loads(meta[k]) for k, v in entries.items()},
    }
    # libyaml's dumper when present: the same text as yaml.safe_dump, ≈ 4× faster (once per partition written)
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    meta["table_meta_yaml"] = yaml.dump(
        header, Dumper=dumper, sort_keys=False, default_flow_style=None, width=130
    )
    return pa.schema(fields, metadata={k.encode(): v.encode() for k, v in meta.items()})


def _label_description(name: str) -> str:
    """What a label column holds: the model's mean of its token, or exp of it for a log token (age, ebv: a
    median, not a mean), and for mass and age the isochrone posterior on the rows that say so."""
    spec = LABELS[name]
    what = f"exp of the model's mean {spec.token}" if spec.log_token else "the model's mean"
    if name in MASS_AGE_LABELS:
        what += "; on rows flagged MASS_AGE_FROM_ISOCHRONES the MIST isochrone posterior's instead"
    return f"{spec.description}: {what}"


def _astropy_column(field: pa.Field, unit: str, labels: tuple[str, ...] | list[str]) -> dict[str, str]:
    """The astropy header entry of one catalogue column (name, numpy datatype, unit, description)."""
    name = field.name
    if name in labels:
        description = _label_description(name)
    elif name.endswith("_error") and name[: -len("_error")] in labels:
        description = f"1-sigma uncertainty of {name[: -len('_error')]}"
    else:
        description = _DESCRIPTIONS[name]
    entry = {"name": name, "datatype": np.dtype(field.type.to_pandas_dtype()).name}
    if unit:
        entry["unit"] = unit
    entry["description"] = description
    return entry


def catalog_units(labels: tuple[str, ...] | list[str]) -> dict[str, str]:
    """Column name → unit string (astropy-parsable; '' = dimensionless)."""
    units = {n: u for n, _, u in _BASE_COLUMNS + _TAIL_COLUMNS}
    for lab in labels:
        units[lab] = units[f"{lab}_error"] = LABELS[lab].unit
    return units


def tokens_to_labels(
    means: dict[str, np.ndarray],
    sigmas: dict[str, np.ndarray],
    labels: tuple[str, ...] | list[str],
    *,
    derived: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> dict[str, np.ndarray]:
    """Convert predicted token means/σ (physical token units) to catalogue label columns.

    For log tokens (ln age, ln E(B−V)) the label is exp(μ) and its error exp(μ)·σ (first order), unless
    `derived` gives the label's (value, error) as the Predictor computed them (`Predictor.predict`'s
    ``age``/``age_error``: its linear-space σ calibration, when the model has one, is applied there).
    """
    out: dict[str, np.ndarray] = {}
    for lab in labels:
        spec = LABELS[lab]
        if derived is not None and lab in derived:
            val, err = derived[lab]
            out[lab] = np.asarray(val, dtype=np.float32)
            out[f"{lab}_error"] = np.asarray(err, dtype=np.float32)
            continue
        mu = np.asarray(means[spec.token], dtype=np.float64)
        sd = np.asarray(sigmas[spec.token], dtype=np.float64)
        if spec.log_token:
            val = np.exp(mu)
            out[lab] = val.astype(np.float32)
            out[f"{lab}_error"] = (val * sd).astype(np.float32)
        else:
            out[lab] = mu.astype(np.float32)
            out[f"{lab}_error"] = sd.astype(np.float32)
    return out


def check_learned_labels(labels: Sequence[str], learned: LearnedTokens, model: str) -> None:
    """ValueError (one line) naming the labels of `labels` whose token the model `model` was not
    trained to predict, the model and the catalogue labels it did learn; None when all are learned."""
    unlearned = [lab for lab in labels if lab in LABELS and LABELS[lab].token not in learned.outputs]
    if unlearned:
        tokens = [LABELS[lab].token for lab in unlearned]
        can = [lab for lab, spec in LABELS.items() if spec.token in learned.outputs]
        raise ValueError(
            f"model {model!r} was not trained to predict label(s) {unlearned} (token(s) {tokens}: its "
            f"training data had no values for them), so it cannot answer them; the labels it learned: "
            f"{', '.join(can) if can else 'none'}"
        )


def model_default_labels(train_config: dict[str, Any], learned: LearnedTokens, model: str) -> list[str]:
    """The catalogue labels a model gives by default: those it was validated on (training config
    `val_labels`, when present) that it learned to predict, else those of DEFAULT_LABELS it learned;
    in catalogue order. DEFAULT_LABELS left out are logged in one line."""
    val = set(train_config.get("val_labels") or ())
    wanted = {lab for lab, spec in LABELS.items() if spec.token in val} or set(DEFAULT_LABELS)
    labels = [lab for lab, spec in LABELS.items() if lab in wanted and spec.token in learned.outputs]
    if not labels:
        raise ValueError(
            f"model {model!r} learned to predict none of the catalogue labels {sorted(LABELS)}; "
            "choose another model"
        )
    left_out = [lab for lab in DEFAULT_LABELS if lab not in labels]
    if left_out:
        log.info(
            "model %r did not learn %s: default labels %s", model, ", ".join(left_out), ", ".join(labels)
        )
    return labels


def catalogue_provenance(path: str) -> dict[str, Any]:
    """The job's provenance recorded in a local catalogue (a directory the job wrote, or one partition
    file): `xpengine.provenance` of its first partition ({} when none is recorded)."""
    from pathlib import Path

    import pyarrow.parquet as pq

    p = Path(path)
    files = (
        [p] if p.is_file() else sorted(f for f in p.glob("*.parquet") if not f.name.startswith(("_", ".")))
    )
    if not files:
        raise FileNotFoundError(f"{path}: no catalogue partition (*.parquet)")
    meta = pq.read_schema(files[0]).metadata or {}
    raw = meta.get(b"xpengine.provenance")
    return json.loads(raw) if raw else {}


def check_simulated_sky_sigma(path: str) -> None:
    """Refuse (ValueError) a catalogue of a simulated sky whose mass and age σ carry the model's
    sim-to-real term: simulated stars have none, and their σ are scored (and calibrated) as calibrated on
    simulated stars. The job's `--no-sim-to-real-sigma` writes them so."""
    if catalogue_provenance(path).get("sim_to_real_applied"):
        raise ValueError(
            f"{path}: its mass and age σ include the model's sim-to-real term (a real-star catalogue); "
            "for a simulated sky run the job with --no-sim-to-real-sigma"
        )
