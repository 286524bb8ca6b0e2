"""Compact per-partition Parquet copy of what the model reads per source.

Reading the bulk text once costs ~50 µs per source (inflate + parse); this file is read back at
>1 M sources/s, so a partition is parsed once and then served many times (training epochs,
inference runs).

Layout (one row per source):
- `source_id` int64
- `bp_coefficients`, `bp_coefficient_errors`, `rp_coefficients`, `rp_coefficient_errors`:
  fixed_size_list<float32>[n] with n the band's number of coefficients (55 in DR3, from the data);
  a missing band (or a row with a read problem) is all NaN, shorter rows are NaN-padded.
- `bp_n_relevant_bases`, `rp_n_relevant_bases` int16 (0 for a missing band: it has no relevant bases)
- every other non-XP column of the input (gaia_source, 2MASS, E(B−V) columns), unchanged.
File metadata: `xpengine.model_inputs` (layout version) and `xpengine.n_coefficients` (JSON).
Float32 is enough: coefficient relative errors are >1e-4, far above float32 resolution (6e-8).
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from xpengine.io._source import OutputTarget
from xpengine.io.filesystems import open_url, url_to_fs  # noqa: F401
from xpengine.io.schema import BANDS, READ_PROBLEM, XP_BY_NAME
from xpengine.io.xp_continuous import list_column_to_numpy

__all__ = ["MODEL_INPUTS_VERSION", "read_model_inputs", "write_model_inputs"]

MODEL_INPUTS_VERSION = "1"
_META_VERSION = b"xpengine.model_inputs"
_META_N = b"xpengine.n_coefficients"
_ARRAYS = ("coefficients", "coefficient_errors")


def _array_type(width: int) -> pa.DataType:
    # Non-nullable lists of non-nullable floats (NaN marks missing): Parquet then stores no definition
    # levels for them and decodes ~30% faster.
    return pa.list_(pa.field("element", pa.float32(), nullable=False), width)


def _band_width(table: pa.Table, band: str) -> int:
    col = table.column(f"{band}_coefficients")
    width = pc.max(pc.list_value_length(col)).as_py()
    if not width and f"{band}_n_parameters" in table.column_names:
        width = pc.max(table.column(f"{band}_n_parameters")).as_py()
    return int(width or 0)


def model_inputs_table(table: pa.Table) -> pa.Table:
    """Build the model-inputs table (see module docstring) from an XP table, joined or not."""
    need = ["source_id"] + [f"{b}_{k}" for b in BANDS for k in _ARRAYS]
    missing = [c for c in need if c not in table.column_names]
    if missing:
        raise ValueError(f"table lacks columns {missing} needed for model inputs")
    widths = {b: _band_width(table, b) for b in BANDS}
    for b in BANDS:  # a table where one band is missing everywhere: borrow the other's width
        if widths[b] == 0:
            widths[b] = max(widths.values())
    cols: dict[str, pa.Array] = {"source_id": pc.cast(table.column("source_id"), pa.int64()).combine_chunks()}
    n = table.num_rows
    for b in BANDS:
        w = widths[b]
        for k in _ARRAYS:
            mat = list_column_to_numpy(table.column(f"{b}_{k}"), width=w, dtype=np.float32)  # (N, w)
            cols[f"{b}_{k}"] = pa.FixedSizeListArray.from_arrays(
                pa.array(mat.reshape(-1)), type=_array_type(w)
            )
        name = f"{b}_n_relevant_bases"
        if name in table.column_names:
            nrel = pc.fill_null(pc.cast(table.column(name), pa.int16()), 0).combine_chunks()
        else:
            nrel = pa.array(np.zeros(n, dtype=np.int16))
        cols[name] = nrel
    for name in table.column_names:
        if name in XP_BY_NAME or name == READ_PROBLEM or name in cols:
            continue
        cols[name] = table.column(name).combine_chunks()
    meta = {
        _META_VERSION: MODEL_INPUTS_VERSION.encode(),
        _META_N: json.dumps(widths).encode(),
    }
    fields = [
        pa.field(name, arr.type, nullable=not pa.types.is_fixed_size_list(arr.type) and name != "source_id")
        for name, arr in cols.items()
    ]
    return pa.table(cols, schema=pa.schema(fields, metadata=meta))


def write_model_inputs(
    table: pa.Table,
    path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    storage_options: dict[str, Any] | None = None,
) -> None:
    """Write the compact model-inputs Parquet file for one partition (see module docstring).

    Written uncompressed, one row group, large pages, no dictionary, arrays non-nullable: reading is
    then a near-straight copy of float32 pages (>1 M sources/s). Refuses to overwrite unless asked.
    """
    out = model_inputs_table(table)
    target = OutputTarget(path, overwrite, storage_options)
    with target:  # renamed onto the output when the block succeeds, removed when it raises
        with target.fs.open(target.tmp, "wb") as f:
            pq.write_table(
                out,
                f,
                compression="none",
                use_dictionary=False,
                write_statistics=["source_id"],
                row_group_size=max(out.num_rows, 1),
                data_page_size=16 << 20,  # few large pages: less per-page work when decoding
            )


def read_model_inputs(
    path: str | os.PathLike[str],
    *,
    columns: list[str] | None = None,
    storage_options: dict[str, Any] | None = None,
) -> dict[str, np.ndarray]:
    """Read a model-inputs file into numpy arrays without per-row work.

    Returns {column: array}: `source_id` (N,) int64; array columns (N, n) float32 (NaN = missing);
    `*_n_relevant_bases` (N,) int16; other columns (N,) (nulls become NaN for numbers).
    """
    from fsspec.implementations.local import LocalFileSystem

    url = os.fspath(path)
    fs, fpath = url_to_fs(url, storage_options)
    # ParquetFile.read gives one chunk per column (pq.read_table splits them, which would force a
    # concatenating copy); a memory map spares the copy of the file into a read buffer.
    if isinstance(fs, LocalFileSystem):
        table = pq.ParquetFile(fpath, memory_map=True).read(columns=columns, use_threads=True)
    else:
        with fs.open(fpath, "rb") as f:
            table = pq.ParquetFile(f).read(columns=columns, use_threads=True)
    meta = table.schema.metadata or {}
    if _META_VERSION not in meta:
        raise ValueError(f"{url}: not an xpengine model-inputs file (no {_META_VERSION.decode()} metadata)")
    out: dict[str, np.ndarray] = {}
    for name in table.column_names:
        col = table.column(name)
        chunks = col.chunks
        if pa.types.is_fixed_size_list(col.type):
            w = col.type.list_size
            parts = [
                c.values.to_numpy(zero_copy_only=False)[c.offset * w : (c.offset + len(c)) * w].reshape(-1, w)
                for c in chunks
            ]
            out[name] = (
                parts[0]
                if len(parts) == 1
                else np.concatenate(parts)
                if parts
                else np.zeros((0, w), np.float32)
            )
        else:
            parts = [c.to_numpy(zero_copy_only=False) for c in chunks]
            out[name] = parts[0] if len(parts) == 1 else np.concatenate(parts) if parts else col.to_numpy()
    return out
