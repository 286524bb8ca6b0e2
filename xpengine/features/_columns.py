"""Read-only access to `build_tokens`' input columns, uniform over pyarrow Tables/RecordBatches, pandas
DataFrames and dicts of numpy arrays (a Ray Data `map_batches` batch): `InputColumns`.

Scalars come out as float64 numpy arrays (nulls → NaN), list columns (XP coefficient bands) as (N, w)
matrices with a per-row "present" mask; a column of the wrong shape or type is a ValueError naming it.
Names match exactly first, then case-insensitively (VOTable writes SOURCE_ID).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from xpengine.io.schema import META_N_COEFFICIENTS, META_SOURCE

__all__ = ["InputColumns"]


class InputColumns:
    """Read-only access to the input columns as float64 numpy arrays (nulls → NaN)."""

    def __init__(self, data: Any) -> None:
        if type(data).__module__.split(".")[0] == "pandas":
            data = pa.Table.from_pandas(data, preserve_index=False)
        if isinstance(data, pa.RecordBatch):
            data = pa.Table.from_batches([data])
        if isinstance(data, pa.Table):
            self._table: pa.Table | None = data
            self._dict: Mapping[str, Any] | None = None
            names = data.column_names
        elif isinstance(data, Mapping):
            self._table = None
            self._dict = data
            names = list(data.keys())
        else:
            raise TypeError(
                f"build_tokens expects a pyarrow Table/RecordBatch, a pandas DataFrame or a dict of "
                f"numpy arrays, got {type(data).__name__}"
            )
        meta = (self._table.schema.metadata if self._table is not None else None) or {}
        self.source: str | None = meta[META_SOURCE].decode() if META_SOURCE in meta else None
        """The file the rows come from (readers' schema metadata), if known."""
        self.declared_counts: dict[str, list[int]] = _declared_counts(meta.get(META_N_COEFFICIENTS))
        """Coefficient counts per band recorded by the reader (`xpengine.n_coefficients`), if any."""
        self._names = {str(n): n for n in names}
        # case-insensitive fallback (VOTable writes SOURCE_ID); exact names win
        self._lower: dict[str, Any] = {}
        for n in names:
            self._lower.setdefault(str(n).lower(), n)
        self.n = self._num_rows()

    def _key(self, name: str) -> Any | None:
        if name in self._names:
            return self._names[name]
        return self._lower.get(name.lower())

    def has(self, name: str) -> bool:
        return self._key(name) is not None

    def column_name(self, name: str) -> Any | None:
        """The input's own name of the column called `name` (exactly, else in another case), or None."""
        return self._key(name)

    def _raw(self, name: str) -> Any:
        key = self._key(name)
        if self._table is not None:
            return self._table.column(key)
        return self._dict[key]  # type: ignore[index]

    def _num_rows(self) -> int:
        if self._table is not None:
            return self._table.num_rows
        key = self._key("source_id")
        if key is None:
            raise ValueError(f"input has no 'source_id' column; got columns {sorted(self._names)[:20]}")
        return len(np.asarray(self._dict[key]))  # type: ignore[index]

    def source_id(self) -> np.ndarray:
        if not self.has("source_id"):
            raise ValueError(f"input has no 'source_id' column; got columns {sorted(self._names)[:20]}")
        raw = self._raw("source_id")
        if self._table is not None:
            if not (pa.types.is_integer(_storage_type(raw.type))):
                raise ValueError(f"column 'source_id' must be integer (int64), got type {raw.type}")
            if raw.null_count:
                raise ValueError(f"column 'source_id' has {raw.null_count} null values")
            return np.asarray(pc.cast(_storage(raw), pa.int64()).to_numpy(), dtype=np.int64)
        arr = np.asarray(raw)
        if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(
                f"column 'source_id' must be a 1-D integer array, got shape {arr.shape} dtype {arr.dtype}"
            )
        return arr.astype(np.int64, copy=False)

    def scalar(self, name: str) -> np.ndarray | None:
        """(N,) float64 with NaN for nulls/masked values, or None when the column is absent."""
        if not self.has(name):
            return None
        raw = self._raw(name)
        if self._table is not None:
            typ = _storage_type(raw.type)
            if pa.types.is_null(typ):
                return np.full(self.n, np.nan)
            if not (pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_boolean(typ)):
                raise ValueError(
                    f"column {name!r} must be numeric with one value per row, got type {raw.type}"
                )
            arr = _storage(raw)
            if not pa.types.is_float64(typ):
                arr = pc.cast(arr, pa.float64())
            if arr.null_count:
                arr = pc.fill_null(arr, np.nan)
            return np.asarray(arr.to_numpy(), dtype=np.float64)
        return _dict_scalar(raw, name, self.n)

    def non_null(self, name: str) -> np.ndarray | None:
        """(N,) bool: the row holds a value (not null/None/NaN/empty string), or None when absent."""
        if not self.has(name):
            return None
        raw = self._raw(name)
        if self._table is not None:
            valid = pc.is_valid(raw)
            if pa.types.is_string(raw.type) or pa.types.is_large_string(raw.type):
                valid = pc.and_(valid, pc.fill_null(pc.not_equal(raw, ""), False))
            elif pa.types.is_floating(raw.type):
                valid = pc.and_(valid, pc.invert(pc.fill_null(pc.is_nan(raw), True)))
            return np.asarray(valid.to_numpy(zero_copy_only=False), dtype=bool)
        arr = np.asarray(raw)
        if arr.shape != (self.n,):
            raise ValueError(f"column {name!r} must have shape ({self.n},), got {arr.shape}")
        if arr.dtype.kind in "fc":
            return ~np.isnan(arr)
        if arr.dtype.kind in "US":
            return arr != arr.dtype.type("")
        if arr.dtype == object:
            return np.asarray(_notna_objects(arr), dtype=bool)
        return np.ones(self.n, dtype=bool)

    def band(self, name: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(values (N, w) float, present (N,) bool) of a list column, or None when absent.

        Values keep the stored float width (float32 archive errors stay float32) and may be a
        read-only view of the Arrow buffer. Null or empty lists and rows with no finite value are
        "not present" (their values are NaN).
        """
        if not self.has(name):
            return None
        raw = self._raw(name)
        if self._table is not None:
            return _arrow_band(raw, name, self.n)
        return _dict_band(raw, name, self.n)


def _declared_counts(raw: bytes | None) -> dict[str, list[int]]:
    """`xpengine.n_coefficients` metadata → {band: [counts]} (readers write lists, model inputs ints)."""
    if not raw:
        return {}
    try:
        doc = json.loads(raw)
    except ValueError:
        return {}
    out: dict[str, list[int]] = {}
    if isinstance(doc, dict):
        for band, v in doc.items():
            values = v if isinstance(v, list) else [v]
            out[str(band)] = [int(x) for x in values if isinstance(x, (int, float)) and x]
    return out


def _notna_objects(arr: np.ndarray) -> np.ndarray:
    """Object array (N,) → bool: not None, not NaN, not an empty string (via Arrow, no row loop)."""
    a = pa.array(arr, from_pandas=True)
    valid = pc.is_valid(a)
    if pa.types.is_string(a.type):
        valid = pc.and_(valid, pc.fill_null(pc.not_equal(a, ""), False))
    return valid.to_numpy(zero_copy_only=False)


def _storage_type(typ: pa.DataType) -> pa.DataType:
    return typ.storage_type if isinstance(typ, pa.ExtensionType) else typ


def _storage(arr: pa.ChunkedArray) -> pa.ChunkedArray:
    if isinstance(arr.type, pa.ExtensionType):
        return pa.chunked_array([c.storage for c in arr.chunks], type=arr.type.storage_type)
    return arr


def _dict_scalar(raw: Any, name: str, n: int) -> np.ndarray:
    if isinstance(raw, np.ma.MaskedArray):
        raw = raw.astype(np.float64).filled(np.nan)
    arr = np.asarray(raw)
    if arr.dtype == object:
        try:
            arr = pc.fill_null(pc.cast(pa.array(arr, from_pandas=True), pa.float64()), np.nan).to_numpy()
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            raise ValueError(f"column {name!r} must hold one number per row: {exc}") from None
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"column {name!r} must have shape ({n},), got {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ValueError(f"column {name!r} must be numeric, got dtype {arr.dtype}")
    return arr.astype(np.float64, copy=False)


def _list_chunk_to_2d(chunk: pa.Array, name: str, row0: int) -> tuple[np.ndarray, np.ndarray, int | None]:
    """One list-typed chunk → (values (m, w) of the present rows, present (m_chunk,) bool, w)."""
    if isinstance(chunk, pa.ExtensionArray):
        chunk = chunk.storage
    typ = chunk.type
    if pa.types.is_null(typ):
        return np.empty((0, 0)), np.zeros(len(chunk), dtype=bool), None
    if not (pa.types.is_list(typ) or pa.types.is_large_list(typ) or pa.types.is_fixed_size_list(typ)):
        raise ValueError(
            f"column {name!r} must be a list of numbers per row (list/fixed_size_list), got type "
            f"{typ}; text-encoded arrays must be parsed first (xpengine.io)"
        )
    vtype = typ.value_type
    if not (pa.types.is_floating(vtype) or pa.types.is_integer(vtype)):
        raise ValueError(f"column {name!r} must hold numbers, got list element type {vtype}")
    lengths = pc.fill_null(pc.list_value_length(chunk), 0).to_numpy(zero_copy_only=False)
    valid = chunk.is_valid().to_numpy(zero_copy_only=False) & (lengths > 0)  # (m_chunk,)
    widths = np.unique(lengths[valid])
    if widths.size > 1:
        expected = int(lengths[np.flatnonzero(valid)[0]])  # the first present row sets the length
        first_bad = int(np.flatnonzero(valid & (lengths != expected))[0])
        raise ValueError(
            f"column {name!r} has rows of different lengths {widths.tolist()} (row {row0 + first_bad} "
            f"has {int(lengths[first_bad])}, expected {expected} as in the first row); one band has "
            "one length"
        )
    if widths.size == 0:
        return np.empty((0, 0)), valid, None
    w = int(widths[0])
    # flatten() drops null slots even when they are backed by non-empty sub-lists
    flat = chunk.flatten()
    if not pa.types.is_floating(flat.type) or flat.null_count:
        flat = pc.fill_null(pc.cast(flat, pa.float64()), np.nan)
    # float32 archive errors stay float32 here (converted where needed, e.g. for a representation)
    return flat.to_numpy(zero_copy_only=False).reshape(-1, w), valid, w


def _arrow_band(col: pa.ChunkedArray, name: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    parts = []
    width: int | None = None
    row0 = 0
    for chunk in col.chunks:
        vals, valid, w = _list_chunk_to_2d(chunk, name, row0)
        if w is not None:
            if width is not None and w != width:
                raise ValueError(
                    f"column {name!r} has rows of different lengths ({width} and {w} near row {row0})"
                )
            width = w
        parts.append((vals, valid, row0))
        row0 += len(chunk)
    if width is None:
        return np.full((n, 0), np.nan), np.zeros(n, dtype=bool)
    if len(parts) == 1 and parts[0][1].all():
        out = parts[0][0]  # every row present: the flattened buffer is the matrix (may be read-only)
    else:
        out = np.full((n, width), np.nan)
        for vals, valid, start in parts:
            if vals.size:
                out[start + np.flatnonzero(valid)] = vals
    present = np.isfinite(out).any(axis=1)
    return out, present


def _dict_band(raw: Any, name: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(raw, (pa.Array, pa.ChunkedArray)):
        return _arrow_band(pa.chunked_array([raw]) if isinstance(raw, pa.Array) else raw, name, n)
    if isinstance(raw, np.ma.MaskedArray):
        if raw.dtype == object:  # e.g. astropy MaskedColumn of per-row arrays: masked rows → None
            raw = np.where(np.ma.getmaskarray(raw), None, np.asarray(raw.data, dtype=object))
        else:
            raw = raw.astype(np.float64).filled(np.nan)
    arr = np.asarray(raw)
    if arr.dtype == object:
        if arr.ndim != 1 or arr.shape[0] != n:
            raise ValueError(f"column {name!r} must have {n} rows of arrays, got shape {arr.shape}")
        try:
            converted = pa.array(arr, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise ValueError(f"column {name!r} must hold one array of numbers per row: {exc}") from None
        return _arrow_band(pa.chunked_array([converted]), name, n)
    if arr.ndim != 2 or arr.shape[0] != n:
        raise ValueError(
            f"column {name!r} must be a 2-D array (N={n}, n_coefficients) or a list column, got shape "
            f"{arr.shape}"
        )
    if not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"column {name!r} must be numeric, got dtype {arr.dtype}")
    out = arr.astype(np.float64, copy=False)
    return out, np.isfinite(out).any(axis=1)
