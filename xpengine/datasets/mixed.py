"""One training set of real and simulated stars (issue 12 item 3).

Inputs: two training-schema Parquet files (`xpengine.datasets.schema`) made by the project's builders,
a *real* one (`xpengine build-dataset apogee-xp` or `apogee`: real XP, colours, G; labels Teff, logg,
[M/H], [α/M]) and a *synthetic* one (`xpengine build-dataset synthetic`: every token, including mass,
ln age, ln E(B−V) and the pseudo-luminosity). Output: one training-schema table holding both.

Recipe (the decisions, each recorded in the output's provenance):

- Compatibility: both files must have the same training-schema version, the same vocabulary (names,
  kinds, units, order, BP/RP counts, version), the same XP representation id and the same token-recipe
  version (`features_version`), because the model standardises and reads every column of one file as
  one quantity. Anything else is refused with every problem listed. The default builders give the real
  file `zhang2026+alpha_m` (121 tokens) and the synthetic file `zhang2026` (120 tokens); build the
  synthetic file with `--with-tokens alpha_m` to match (its [α/M] then becomes a token, not an extra
  column).
- Tokens a source lacks stay NaN (absent): the model is trained on random subsets of whatever a star
  has (REFERENCE §4), so a real star teaches the atmospheric labels and a simulated star also mass, age,
  extinction and the pseudo-luminosity. Nothing is filled in.
- Splits: every star keeps the split of its input. The real split is checked against the rule recorded
  in the real file's provenance (`split_by_source_id` with its fractions and salt), so a real test star
  can never reach the training split; a real and a simulated star may not share a source_id (refused).
- Extra columns: the union of both inputs' extra columns (null where a source has none), plus
  `data_source` ("real" / "synthetic") and `mix_copy` (int32; 0 for a star's first row, 1, 2, … for the
  extra copies of a replicated synthetic training star, see below). The training loop reads only the
  token columns and the split (`read_training_set`), so the mix is also recorded in the provenance.
  The loop's validation σ of a label both sources share mixes them: score each source on its own file.
- Weighting: the training loop has no per-star weights, so the relative weight of the synthetic stars is
  realised by the number of rows (`synthetic_copies`): with weight W each synthetic *training* star gets
  ⌊W⌋ rows, plus one more when a keyed hash u of its source_id is below W − ⌊W⌋ (so W < 1 keeps a
  deterministic fraction W of them, and W = 1.5 gives every star one row and half of them a second).
  Each row draws its own context and requests every epoch, so a star with k rows contributes k times
  as much to the loss, on average, as a real star, and the robust standardisation is fitted on the rows
  (a weighted median). Validation and test stars are never replicated nor dropped by the weight.
  `max_synthetic` first keeps at most N synthetic stars over all splits (the N smallest values of
  another keyed hash: a uniform subsample whose split shares follow the input's). Both hashes are
  BLAKE2b keyed like `xpengine.datasets.splits.split_uniform` but with their own keys, so they are
  independent of the split and of each other, and the same source_id always gets the same decision.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from xpengine.datasets.label_edits import edit_synthetic_labels, token_matrices, warn_mixed_metallicity
from xpengine.datasets.splits import split_by_source_id, split_counts, split_uniform
from xpengine.io import sha256_of

__all__ = [
    "CAP_SALT",
    "DATA_SOURCES",
    "WEIGHT_SALT",
    "MixedBuild",
    "build_mixed",
    "keep_at_most",
    "synthetic_copies",
]

logger = logging.getLogger(__name__)

DATA_SOURCES: tuple[str, str] = ("real", "synthetic")
CAP_SALT: bytes = b"xpengine-mix-cap-v1"
"""Key of the hash that picks the synthetic stars kept under `max_synthetic`."""
WEIGHT_SALT: bytes = b"xpengine-mix-weight-v1"
"""Key of the hash that picks which synthetic training stars get the fractional extra copy."""

_REAL_ORIGINS = ("apogee-xp", "apogee-dr17")  # xpengine.datasets.apogee_xp / survey origins of real stars
_SYNTHETIC_ORIGIN = "synthetic"  # xpengine.datasets.synthetic.ORIGIN
_MIX_COLUMNS = ("data_source", "mix_copy")


@dataclass
class MixedBuild:
    """Result of `build_mixed`: the training-schema table and its summary (also its provenance)."""

    table: Any  # pyarrow.Table in the training schema
    summary: dict[str, Any]


# --- weighting: pure functions of the source ids ------------------------------------------------------


def keep_at_most(source_id: np.ndarray, n_max: int | None, *, salt: bytes = CAP_SALT) -> np.ndarray:
    """(N,) bool: the `n_max` sources with the smallest keyed hash u (all of them when N ≤ n_max or
    n_max is None). A deterministic uniform subsample: a source's fate depends on its id, the salt and
    the rank of its u among the given ids only."""
    if n_max is not None and n_max < 0:
        raise ValueError(f"max_synthetic must be >= 0 or None, got {n_max}")
    ids = np.asarray(source_id, dtype=np.int64)
    if n_max is None or ids.size <= n_max:
        return np.ones(ids.size, dtype=bool)
    u = split_uniform(ids, salt=salt)  # (N,) in [0, 1)
    keep = np.zeros(ids.size, dtype=bool)
    keep[np.lexsort((ids, u))[:n_max]] = True  # ties in u (never seen in practice) broken by source_id
    return keep


def synthetic_copies(
    source_id: np.ndarray, split: np.ndarray, weight: float, *, salt: bytes = WEIGHT_SALT
) -> np.ndarray:
    """Rows per synthetic star (N,) int64 for a relative weight `weight` ≥ 0 of its training stars.

    Training stars: ⌊weight⌋ rows, plus one when the keyed hash u of the source_id is below
    weight − ⌊weight⌋; the expected number of rows per star is `weight`. Validation and test stars: one
    row each, whatever the weight.
    """
    if not np.isfinite(weight) or weight < 0:
        raise ValueError(f"synthetic weight must be a finite number >= 0, got {weight}")
    ids = np.asarray(source_id, dtype=np.int64)
    split = np.asarray(split).astype(str)
    if split.shape != ids.shape:
        raise ValueError(f"source_id {ids.shape} and split {split.shape} must have the same shape")
    whole = int(np.floor(weight))
    frac = weight - whole
    copies = np.ones(ids.size, dtype=np.int64)
    train = split == "train"
    extra = split_uniform(ids[train], salt=salt) < frac if frac > 0 else np.zeros(int(train.sum()), bool)
    copies[train] = whole + extra.astype(np.int64)
    return copies


# --- reading and checking the inputs ------------------------------------------------------------------


@dataclass
class _Input:
    role: str  # "real" or "synthetic"
    path: str
    table: Any  # pyarrow.Table
    vocabulary: Any  # Vocabulary
    provenance: dict[str, Any]
    schema_version: str


def _read_input(path: str, role: str) -> _Input:
    import pyarrow.parquet as pq

    from xpengine.datasets.schema import _META_PROV, _META_SCHEMA, _META_VOCAB
    from xpengine.features.vocabulary import Vocabulary

    if not os.path.isfile(path):
        raise FileNotFoundError(f"{role} training set {path!r} does not exist")
    table = pq.read_table(path)
    meta = table.schema.metadata or {}
    if _META_SCHEMA not in meta or _META_VOCAB not in meta:
        raise ValueError(
            f"{role} input {path}: not an xpengine training set (no {_META_SCHEMA.decode()} metadata); "
            "build it with `xpengine build-dataset`"
        )
    clash = [c for c in _MIX_COLUMNS if c in table.column_names]
    if clash:
        raise ValueError(
            f"{role} input {path} already has the column(s) {clash}: it is a mixed set; "
            "mix the real and synthetic builder outputs themselves"
        )
    return _Input(
        role=role,
        path=path,
        table=table,
        vocabulary=Vocabulary.from_dict(json.loads(meta[_META_VOCAB])),
        provenance=json.loads(meta.get(_META_PROV, b"{}")),
        schema_version=meta[_META_SCHEMA].decode(),
    )


def _compatibility_problems(real: _Input, syn: _Input) -> list[str]:
    """Every reason the two inputs cannot share one model's standardisation and embedding."""
    p: list[str] = []
    if real.schema_version != syn.schema_version:
        p.append(f"training-schema version: real {real.schema_version!r}, synthetic {syn.schema_version!r}")
    rv, sv = real.vocabulary, syn.vocabulary
    if rv.to_dict() != sv.to_dict():
        only_real = [n for n in rv.names if n not in sv]
        only_syn = [n for n in sv.names if n not in rv]
        msg = (
            f"vocabulary: real {rv.name}/{rv.version} ({len(rv)} tokens), "
            f"synthetic {sv.name}/{sv.version} ({len(sv)} tokens)"
        )
        if only_real or only_syn:
            msg += f"; tokens only in real: {only_real[:10]}, only in synthetic: {only_syn[:10]}"
        elif rv.names != sv.names:
            msg += "; same tokens in another order"
        else:
            diff = [a.name for a, b in zip(rv.tokens, sv.tokens, strict=True) if a != b]
            msg += (
                f"; tokens with other kinds/units: {diff[:10]}" if diff else "; other version or BP/RP counts"
            )
        if only_real == ["alpha_m"] and not only_syn:
            msg += (
                " (rebuild the synthetic set with `xpengine build-dataset synthetic --with-tokens alpha_m`)"
            )
        p.append(msg)
    for key in ("xp_representation", "features_version"):
        a, b = real.provenance.get(key), syn.provenance.get(key)
        if a is None or b is None:
            p.append(
                f"{key}: real {a!r}, synthetic {b!r}; both files must record it (the project's builders do)"
            )
        elif a != b:
            p.append(f"{key}: real {a!r}, synthetic {b!r}")
    for inp in (real, syn):
        bad = [c for c in ("source_id", "split", "origin") if c not in inp.table.column_names]
        if bad:
            p.append(f"{inp.role} input {inp.path}: missing schema column(s) {bad}")
    return p


def _column_type_problems(real: _Input, syn: _Input) -> list[str]:
    rs, ss = real.table.schema, syn.table.schema
    return [
        f"column {name!r}: {rs.field(name).type} in real, {ss.field(name).type} in synthetic"
        for name in rs.names
        if name in ss.names and rs.field(name).type != ss.field(name).type
    ]


def _check_split(inp: _Input) -> dict[str, Any]:
    """Verify that the split column follows the rule recorded in the provenance; returns a record."""
    from xpengine.datasets.schema import SPLITS

    sid = np.asarray(inp.table.column("source_id").to_numpy(), dtype=np.int64)
    split = np.asarray(inp.table.column("split").to_numpy(zero_copy_only=False)).astype(str)
    bad = sorted(set(np.unique(split)) - set(SPLITS))
    if bad:
        raise ValueError(f"{inp.role} input {inp.path}: split values {bad}; expected among {SPLITS}")
    if np.unique(sid).size != sid.size:
        raise ValueError(
            f"{inp.role} input {inp.path}: {sid.size - np.unique(sid).size} duplicated source_id rows; "
            "the builders keep one row per star"
        )
    rule = inp.provenance.get("split")
    if not isinstance(rule, dict) or rule.get("function") != "xpengine.datasets.splits.split_by_source_id":
        logger.warning(
            "%s input %s records no split rule: its split column is kept unchecked", inp.role, inp.path
        )
        return {"verified": False, "reason": "no split rule recorded in the input's provenance"}
    expected = split_by_source_id(
        sid,
        val_fraction=float(rule["val_fraction"]),
        test_fraction=float(rule["test_fraction"]),
        salt=str(rule["salt"]).encode("latin-1"),
    )
    wrong = expected != split
    if wrong.any():
        leak = int(np.sum(wrong & (expected == "test")))
        raise ValueError(
            f"{inp.role} input {inp.path}: the split column disagrees with its recorded rule {rule} for "
            f"{int(wrong.sum())} stars ({leak} of them belong to the test split); refusing to mix a "
            "training set whose split cannot be trusted"
        )
    return {"verified": True, "rule": rule}


def _origins(inp: _Input) -> list[str]:
    return sorted(
        set(np.asarray(inp.table.column("origin").to_numpy(zero_copy_only=False)).astype(str).tolist())
    )


def _file_record(path: str) -> dict[str, Any]:
    return {"path": os.path.abspath(path), "sha256": sha256_of(path), "bytes": os.path.getsize(path)}


# --- the builder --------------------------------------------------------------------------------------


def _checked_inputs(
    real: _Input, syn: _Input, real_path: str, synthetic_path: str
) -> tuple[list[str], list[str], np.ndarray, dict[str, Any]]:
    """Refuse inputs that cannot be mixed (ValueError naming why); returns the origins of each input,
    the synthetic source_ids and the split checks."""
    problems = _compatibility_problems(real, syn)
    if problems:
        raise ValueError(
            f"cannot mix {real_path} (real) and {synthetic_path} (synthetic):\n  " + "\n  ".join(problems)
        )
    real_origins, syn_origins = _origins(real), _origins(syn)
    if _SYNTHETIC_ORIGIN in real_origins:
        raise ValueError(
            f"real input {real_path} holds rows of origin {_SYNTHETIC_ORIGIN!r} (origins {real_origins}); "
            "are --real and --synthetic swapped?"
        )
    wrong = [o for o in syn_origins if o in _REAL_ORIGINS]
    if wrong:
        raise ValueError(
            f"synthetic input {synthetic_path} holds rows of the real origin(s) {wrong} (origins "
            f"{syn_origins}); are --real and --synthetic swapped?"
        )
    real_sid = np.asarray(real.table.column("source_id").to_numpy(), dtype=np.int64)
    syn_sid = np.asarray(syn.table.column("source_id").to_numpy(), dtype=np.int64)
    shared = np.intersect1d(real_sid, syn_sid)
    if shared.size:
        raise ValueError(
            f"{shared.size} source_id(s) occur in both inputs (e.g. {shared[:5].tolist()}); a simulated "
            "star may not carry a real star's id"
        )
    split_check = {"real": _check_split(real), "synthetic": _check_split(syn)}
    type_problems = _column_type_problems(real, syn)
    if type_problems:
        raise ValueError(
            "the inputs give one column two types, so it cannot be one column of the mixed file:\n  "
            + "\n  ".join(type_problems)
        )
    return real_origins, syn_origins, syn_sid, split_check


def _mixed_rows(
    real: _Input,
    syn: _Input,
    syn_sid: np.ndarray,
    syn_split: np.ndarray,
    synthetic_weight: float,
    max_synthetic: int | None,
) -> tuple[Any, np.ndarray, np.ndarray]:
    """(mixed table, kept (Ns,), copies (Ns,)): the real rows, then the synthetic rows after the cap and
    the weighting, with their `data_source` and `mix_copy` columns."""
    import pyarrow as pa

    # Weighting by rows: cap, then copies per synthetic star (training stars only).
    kept = keep_at_most(syn_sid, max_synthetic)
    copies = np.where(kept, synthetic_copies(syn_sid, syn_split, synthetic_weight), 0)  # (Ns,)
    rows = np.repeat(np.arange(syn_sid.size), copies)  # (R,) input row of each output row
    first = np.cumsum(copies) - copies  # (Ns,) output position of each star's first row
    mix_copy = (np.arange(rows.size) - np.repeat(first, copies)).astype(np.int32)  # (R,)
    syn_out = syn.table.take(pa.array(rows, type=pa.int64()))
    n_real = real.table.num_rows
    real_out = real.table.append_column("data_source", pa.array(np.full(n_real, DATA_SOURCES[0])))
    real_out = real_out.append_column("mix_copy", pa.array(np.zeros(n_real, np.int32)))
    syn_out = syn_out.append_column("data_source", pa.array(np.full(rows.size, DATA_SOURCES[1])))
    syn_out = syn_out.append_column("mix_copy", pa.array(mix_copy))
    mixed = pa.concat_tables([real_out, syn_out], promote_options="default")
    return mixed, kept, copies


def _check_weight(synthetic_weight: float, max_synthetic: int | None) -> None:
    if max_synthetic is not None and max_synthetic < 0:
        raise ValueError(f"max_synthetic must be >= 0 or None, got {max_synthetic}")
    if not np.isfinite(synthetic_weight) or synthetic_weight < 0:
        raise ValueError(f"synthetic_weight must be a finite number >= 0, got {synthetic_weight}")


def _weighting(
    weight: float,
    max_synthetic: int | None,
    drop: Sequence[str],
    truth: Sequence[str],
    truth_errors: str,
    syn_rows: dict[str, int],
    n_train: int,
) -> dict[str, Any]:
    """The summary's "weighting" record."""
    return {
        "method": "rows: the training loop has no per-star weights, so synthetic training stars are "
        "replicated (weight > 1) or subsampled (weight < 1) by a keyed hash of their source_id; "
        "validation and test stars are never replicated or dropped by the weight",
        "synthetic_weight": float(weight),
        "max_synthetic": max_synthetic,
        "synthetic_dropped_tokens": list(drop),
        "synthetic_truth_tokens": list(truth),
        "synthetic_truth_errors": truth_errors,
        "cap_salt": CAP_SALT.decode("latin-1"),
        "weight_salt": WEIGHT_SALT.decode("latin-1"),
        "synthetic_share_of_train_rows": syn_rows["train"] / n_train if n_train else 0.0,
    }


def build_mixed(
    real_path: str,
    synthetic_path: str,
    *,
    synthetic_weight: float = 1.0,
    max_synthetic: int | None = None,
    synthetic_drop: Sequence[str] = (),
    synthetic_truth: Sequence[str] = (),
    synthetic_truth_errors: str = "zero",
) -> MixedBuild:
    """Mix a real and a synthetic training-schema file into one table (recipe in the module docstring).

    synthetic_weight: expected rows per synthetic training star (≥ 0; 1 = each star once, as a real star);
    max_synthetic: at most this many synthetic stars over all splits (None = all). synthetic_drop,
    synthetic_truth, synthetic_truth_errors: the synthetic rows' label edits (`edit_synthetic_labels`):
    tokens missing there, learned from the real stars alone (e.g. [M/H], [α/M]: `warn_mixed_metallicity`);
    tokens set to the simulated truth in every split (e.g. mass and ln age: DistMass-like ages run young for
    old stars), with error "zero" or the survey-like label's error ("keep").
    Rows: the real stars in input order, then the synthetic rows (input order, copies adjacent).
    """
    from xpengine.datasets.schema import training_table

    _check_weight(synthetic_weight, max_synthetic)
    real = _read_input(real_path, "real")
    syn = _read_input(synthetic_path, "synthetic")
    real_origins, syn_origins, syn_sid, split_check = _checked_inputs(real, syn, real_path, synthetic_path)
    syn_split = np.asarray(syn.table.column("split").to_numpy(zero_copy_only=False)).astype(str)
    mixed, kept, copies = _mixed_rows(real, syn, syn_sid, syn_split, synthetic_weight, max_synthetic)
    n_real = real.table.num_rows

    vocab = real.vocabulary
    values, errors = token_matrices(mixed, vocab)  # (N, T) each
    schema_cols = {"source_id", "split", "origin", *vocab.names, *vocab.error_names}
    extra = {c: mixed.column(c) for c in mixed.column_names if c not in schema_cols}
    split = np.asarray(mixed.column("split").to_numpy(zero_copy_only=False)).astype(str)
    source = np.asarray(mixed.column("data_source").to_numpy(zero_copy_only=False)).astype(str)

    is_syn = source == DATA_SOURCES[1]  # (N,)
    train = split == "train"  # (N,)
    warn_mixed_metallicity(real.provenance, syn.provenance, synthetic_drop, real_path, synthetic_path)
    edit_synthetic_labels(
        values, errors, vocab, mixed, is_syn, train, synthetic_drop, synthetic_truth, synthetic_truth_errors
    )
    real_rows = split_counts(split[~is_syn])
    syn_rows = split_counts(split[is_syn])
    in_output = copies > 0  # (Ns,) synthetic stars with at least one row
    n_train = real_rows["train"] + syn_rows["train"]
    non_xp = [j for j, t in enumerate(vocab.tokens) if t.kind != "xp"]

    def finite_train_rows(mask: np.ndarray) -> dict[str, int]:
        """Training rows with a finite value per non-XP token (labels, colours, extinction, …)."""
        fin = np.isfinite(values[np.ix_(mask & train, non_xp)]).sum(axis=0)  # (T',)
        return {vocab.tokens[j].name: int(c) for j, c in zip(non_xp, fin, strict=True)}

    summary: dict[str, Any] = {
        "builder": "xpengine.datasets.mixed.build_mixed",
        "origin": "mixed",
        "vocabulary": vocab.name,
        "xp_representation": real.provenance["xp_representation"],
        "features_version": real.provenance["features_version"],
        "stars": int(n_real + in_output.sum()),
        "rows": int(mixed.num_rows),
        "split_counts": split_counts(split),
        "columns": "data_source: 'real' or 'synthetic'; mix_copy: 0 for a star's first row, k for its "
        "k-th extra copy",
        "sources": {
            "real": {
                **_file_record(real_path),
                "origins": real_origins,
                "stars": int(n_real),
                "split_counts": real_rows,
                "rows": real_rows,
                "split_check": split_check["real"],
                "finite_train_rows": finite_train_rows(~is_syn),
                "provenance": real.provenance,
            },
            "synthetic": {
                **_file_record(synthetic_path),
                "origins": syn_origins,
                "stars_in_input": int(syn_sid.size),
                "split_counts_in_input": split_counts(syn_split),
                "stars_after_cap": int(kept.sum()),
                "stars": int(in_output.sum()),
                "split_counts": split_counts(syn_split[in_output]),
                "rows": syn_rows,
                "split_check": split_check["synthetic"],
                "finite_train_rows": finite_train_rows(is_syn),
                "provenance": syn.provenance,
            },
        },
        "weighting": _weighting(
            synthetic_weight,
            max_synthetic,
            synthetic_drop,
            synthetic_truth,
            synthetic_truth_errors,
            syn_rows,
            n_train,
        ),
    }
    logger.info(
        "mixed set: real rows %s + synthetic rows %s (weight %g, cap %s); synthetic share of "
        "training rows %.3f",
        real_rows,
        syn_rows,
        synthetic_weight,
        max_synthetic,
        summary["weighting"]["synthetic_share_of_train_rows"],
    )
    table = training_table(
        mixed.column("source_id").to_numpy(),
        values,
        errors,
        vocab,
        split=split,
        origin=np.asarray(mixed.column("origin").to_numpy(zero_copy_only=False)).astype(str),
        extra=extra,
        provenance=summary,
    )
    return MixedBuild(table=table, summary=summary)
