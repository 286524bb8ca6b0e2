"""One Parquet layout for every training / validation / test set.

Columns:
- `source_id` int64 (Gaia DR3 source id)
- `split` string: "train", "val" or "test"
- `origin` string: where the row comes from ("apogee-xp", "apogee-dr17", "synthetic", ...)
- per vocabulary token `<name>` float32 (NaN = missing) and `<name>_error` float32 (0 = unknown/missing)
- optional provenance/extra columns (any name not clashing with the above), e.g. `apogee_id`,
  `phot_g_mean_mag`, `alpha_m` when it is not a token, truth columns of a simulation.

The file metadata holds `xpengine.training_schema` (version), the vocabulary JSON under
`xpengine.vocabulary`, and free-form provenance JSON under `xpengine.provenance`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from xpengine.features.token_matrix import TokenMatrix
from xpengine.features.vocabulary import Vocabulary

__all__ = [
    "SCHEMA_VERSION",
    "SPLITS",
    "TrainingArrays",
    "read_training_set",
    "training_table",
    "write_training_set",
]

SCHEMA_VERSION = "1"
SPLITS = ("train", "val", "test")
_META_SCHEMA = b"xpengine.training_schema"
_META_VOCAB = b"xpengine.vocabulary"
_META_PROV = b"xpengine.provenance"


@dataclass(frozen=True)
class TrainingArrays(TokenMatrix):
    """Token matrices of a training set (rows = stars, columns = vocabulary order): a `TokenMatrix`
    with each row's split and the file's provenance."""

    split: np.ndarray  # (N,) str
    provenance: dict[str, Any]

    def _subset_fields(self, idx: np.ndarray) -> dict[str, Any]:
        return {"split": self.split[idx]}


def training_table(
    source_id: np.ndarray,
    values: np.ndarray,
    errors: np.ndarray,
    vocabulary: Vocabulary,
    *,
    split: np.ndarray,
    origin: str | np.ndarray,
    extra: dict[str, np.ndarray] | None = None,
    provenance: dict[str, Any] | None = None,
) -> pa.Table:
    """Assemble a training-schema table from token matrices (N, T) in vocabulary order."""
    n, t = values.shape
    if t != len(vocabulary) or errors.shape != values.shape:
        raise ValueError(
            f"values {values.shape} / errors {errors.shape} do not match vocabulary "
            f"{vocabulary.name} with {len(vocabulary)} tokens"
        )
    split = np.asarray(split).astype(str)
    bad = sorted(set(np.unique(split)) - set(SPLITS))
    if bad:
        raise ValueError(f"split values must be among {SPLITS}, got {bad}")
    if isinstance(origin, str):
        origin = np.full(n, origin)
    cols: dict[str, pa.Array] = {
        "source_id": pa.array(np.asarray(source_id, dtype=np.int64)),
        "split": pa.array(split),
        "origin": pa.array(np.asarray(origin).astype(str)),
    }
    values = np.asarray(values, dtype=np.float32)
    errors = np.nan_to_num(np.asarray(errors, dtype=np.float32), nan=0.0)
    for j, tok in enumerate(vocabulary.tokens):
        cols[tok.name] = pa.array(values[:, j])
        cols[tok.error_name] = pa.array(errors[:, j])
    for k, v in (extra or {}).items():
        if k in cols:
            raise ValueError(f"extra column {k!r} clashes with a schema column")
        cols[k] = pa.array(v)
    table = pa.table(cols)
    meta = {
        _META_SCHEMA: SCHEMA_VERSION.encode(),
        _META_VOCAB: vocabulary.to_json().encode(),
        _META_PROV: json.dumps(provenance or {}).encode(),
    }
    return table.replace_schema_metadata(meta)


def write_training_set(table: pa.Table, path: str, *, overwrite: bool = False) -> None:
    """Write a training-schema table to Parquet (refuses to overwrite unless asked)."""
    import os

    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    if table.schema.metadata is None or _META_SCHEMA not in table.schema.metadata:
        raise ValueError("table lacks xpengine training-schema metadata; build it with training_table()")
    pq.write_table(table, path, compression="zstd")


def read_training_set(
    path: str, *, split: str | None = None, vocabulary: Vocabulary | None = None
) -> TrainingArrays:
    """Read a training-schema Parquet file into token matrices.

    `vocabulary` defaults to the one stored in the file; when given, its tokens must all be present
    in the file's columns (tokens the file lacks raise an error naming them).
    """
    pf = pq.ParquetFile(path)
    meta = pf.schema_arrow.metadata or {}
    if _META_SCHEMA not in meta:
        raise ValueError(f"{path}: not an xpengine training set (no {_META_SCHEMA.decode()} metadata)")
    file_vocab = Vocabulary.from_dict(json.loads(meta[_META_VOCAB]))
    vocab = vocabulary or file_vocab
    missing = [n for n in vocab.names if n not in pf.schema_arrow.names]
    if missing:
        raise ValueError(f"{path}: columns missing for tokens {missing[:10]} (of {len(missing)})")
    columns = ["source_id", "split", *vocab.names, *vocab.error_names]
    filters = [("split", "=", split)] if split else None
    table = pq.read_table(path, columns=columns, filters=filters)
    n = table.num_rows
    values = np.empty((n, len(vocab)), dtype=np.float32)
    errors = np.empty((n, len(vocab)), dtype=np.float32)
    for j, tok in enumerate(vocab.tokens):
        values[:, j] = table.column(tok.name).to_numpy(zero_copy_only=False)
        errors[:, j] = table.column(tok.error_name).to_numpy(zero_copy_only=False)
    return TrainingArrays(
        source_id=table.column("source_id").to_numpy(),
        values=values,
        errors=errors,
        vocabulary=vocab,
        split=table.column("split").to_numpy(zero_copy_only=False).astype(str),
        provenance=json.loads(meta.get(_META_PROV, b"{}")),
    )
