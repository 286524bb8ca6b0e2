"""The simulated sky's Gaia bulk files: one chunk of XP continuous or gaia_source rows as an Arrow table
with the reader's schema, and `_BulkStream`, which appends chunks to one bulk `.csv.gz` file
(see :mod:`xpengine.simulate.generate`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from xpengine.simulate.xp import (
    XPNoiseModel,
)


def _list_array(values: np.ndarray, mask: np.ndarray | None, value_type: pa.DataType) -> pa.Array:
    """(N, n) array -> list<value_type> Arrow array; rows where `mask` is True are null."""
    n, m = values.shape
    flat = pa.array(np.ascontiguousarray(values, dtype=value_type.to_pandas_dtype()).ravel(), value_type)
    offsets = pa.array(np.arange(0, (n + 1) * m, m, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, flat, mask=None if mask is None else pa.array(mask))


def _xp_table(source_id: np.ndarray, xp: dict[str, np.ndarray], model: XPNoiseModel) -> pa.Table:
    from xpengine.io.schema import XP_COLUMNS

    miss = {"bp": xp["missing_bp"], "rp": np.zeros_like(xp["missing_bp"])}
    cols: dict[str, pa.Array] = {
        "source_id": pa.array(source_id, pa.int64()),
        "solution_id": pa.array(xp["solution_id"], pa.int64()),
    }
    for b in ("bp", "rp"):
        m = miss[b]
        nb = xp[f"{b}_coefficients"].shape[1]
        scalar = {
            f"{b}_basis_function_id": np.full(len(source_id), 56 if b == "bp" else 57, np.int16),
            f"{b}_degrees_of_freedom": xp[f"{b}_degrees_of_freedom"],
            f"{b}_n_parameters": np.full(len(source_id), nb, np.int16),
            f"{b}_n_measurements": xp[f"{b}_n_measurements"],
            f"{b}_n_rejected_measurements": xp[f"{b}_n_rejected_measurements"],
            f"{b}_standard_deviation": xp[f"{b}_standard_deviation"],
            f"{b}_chi_squared": xp[f"{b}_chi_squared"],
        }
        for k, v in scalar.items():
            cols[k] = pa.array(v, mask=m)
        cols[f"{b}_coefficients"] = _list_array(xp[f"{b}_coefficients"], m, pa.float64())
        cols[f"{b}_coefficient_errors"] = _list_array(xp[f"{b}_coefficient_errors"], m, pa.float32())
        corr = np.stack(model.corr_vec[b])[xp[f"{b}_corr_level"]]  # (N, n(n-1)/2) float32
        cols[f"{b}_coefficient_correlations"] = _list_array(corr, m, pa.float32())
        cols[f"{b}_n_relevant_bases"] = pa.array(xp[f"{b}_n_relevant_bases"], mask=m)
        cols[f"{b}_relative_shrinking"] = pa.array(xp[f"{b}_relative_shrinking"], mask=m)
    order = [c.name for c in XP_COLUMNS]
    fields = [pa.field(c.name, c.type) for c in XP_COLUMNS]
    return pa.Table.from_arrays(
        [cols[n].cast(f.type) for n, f in zip(order, fields, strict=True)], schema=pa.schema(fields)
    )


def _gaia_source_table(source_id: np.ndarray, s: dict[str, np.ndarray], g: dict[str, np.ndarray]) -> pa.Table:
    from xpengine.io.schema import GAIA_SOURCE_COLUMNS

    values: dict[str, Any] = {
        "source_id": source_id,
        "ra": s["ra"],
        "dec": s["dec"],
        "l": s["l"],
        "b": s["b"],
        "ecl_lat": s["ecl_lat"],
        "has_xp_continuous": np.ones(len(source_id), dtype=bool),
        **g,
    }
    arrays, fields = [], []
    for spec in GAIA_SOURCE_COLUMNS:
        v = np.asarray(values[spec.name])
        mask = ~np.isfinite(v) if v.dtype.kind == "f" else None
        if v.dtype.kind == "f" and spec.type in (pa.float32(), pa.float64()):
            v = np.where(np.isfinite(v), v, 0.0).astype(spec.type.to_pandas_dtype())
        arrays.append(pa.array(v, type=spec.type, mask=mask))
        fields.append(pa.field(spec.name, spec.type))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


class _BulkStream:
    """Append chunks to one bulk `.csv.gz` file: each chunk is formatted by the project's bulk writer
    (`xpengine.io.write_bulk_*`, to a temporary plain-text file), its ECSV header kept from the first
    chunk only, and the text streamed into a gzip member with MTIME 0 and no file name (so identical
    content gives identical bytes). Memory stays at one chunk whatever the partition size. The stream
    writes `tmp`, the temporary name `xpengine.io.file_written_atomically` gives for `path`; close it
    before that block ends (which renames it onto `path`, or removes it on an error).

    level ≤ 3: ISA-L (fast, as the bulk writer); level > 3: zlib (smaller: small skies).
    """

    def __init__(self, path: Path, tmp: Path, writer, level: int) -> None:
        self.path = path
        self.writer = writer
        self.raw = open(tmp, "wb")
        if level <= 3:
            from isal import igzip

            self.gz = igzip.IGzipFile(filename="", mode="wb", fileobj=self.raw, compresslevel=level, mtime=0)
        else:
            import gzip

            self.gz = gzip.GzipFile(filename="", mode="wb", fileobj=self.raw, compresslevel=level, mtime=0)
        self.first = True

    def write(self, table: pa.Table) -> None:
        text = self.path.with_name(self.path.name + ".chunk.csv")
        self.writer(table, text, overwrite=True)
        with open(text, "rb") as fh:
            if not self.first:
                # skip the `# ` header lines and the column-name row
                line = fh.readline()
                while line.startswith(b"#"):
                    line = fh.readline()
            for block in iter(lambda: fh.read(1 << 22), b""):
                self.gz.write(block)
        text.unlink()
        self.first = False

    def close(self) -> None:
        try:
            self.gz.close()
        finally:
            self.raw.close()
