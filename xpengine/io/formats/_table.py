"""Readers for formats read in one piece (FITS, VOTable): the file becomes an Arrow table, then is
served in batches. Archive FITS/VOTable files are small (the archive caps downloads); the bulk data
come as ECSV."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa

from xpengine.io._source import Source

__all__ = ["InMemoryReader", "fixed_lists"]


class InMemoryReader:
    """Serves an in-memory Arrow table (array columns already lists) in batches."""

    text_arrays = False

    def __init__(
        self,
        src: Source,
        format_name: str,
        table: pa.Table,
        field_meta: dict[str, dict[str, str]] | None = None,
        table_meta: dict[str, Any] | None = None,
    ) -> None:
        self.src = src
        self.format_name = format_name
        self.table = table
        self.columns = list(table.column_names)
        self._field_meta = field_meta or {}
        self.table_meta: dict[str, Any] = dict(table_meta or {})
        """Table-level metadata: FITS header keywords of the table HDU, VOTable PARAMs (name -> value)."""

    def field_metadata(self, name: str) -> dict[str, str]:
        """unit / description / ucd of a column, as declared in the file."""
        return self._field_meta.get(name, {})

    def declared_type(self, name: str) -> pa.DataType | None:
        return self.table.schema.field(name).type if name in self.columns else None

    def iter_batches(
        self, columns: list[str], types: dict[str, pa.DataType], batch_rows: int
    ) -> Iterator[tuple[int, pa.RecordBatch]]:
        t = self.table.select(columns)
        for start in range(0, max(t.num_rows, 1), batch_rows):
            piece = t.slice(start, batch_rows)
            yield (
                start,
                pa.RecordBatch.from_arrays(
                    [c.combine_chunks() for c in piece.columns], names=piece.column_names
                ),
            )


def fixed_lists(data: np.ndarray, mask: np.ndarray, value_type: pa.DataType) -> pa.ListArray:
    """(N, k...) values of a fixed-arraysize column and their (N, k...) null mask -> N lists.

    A row whose every element is null (TABLEDATA `<TD/>`, a BINARY2 null flag: e.g. a missing BP
    band, a null sampled spectrum) is a missing array (null), never its fill values (0): taking those
    for data would make a missing band look like a real, zero-valued one. A null element of a row
    that has values is NaN (float arrays) or a null element (integer arrays).
    """
    n = data.shape[0]
    values = np.asarray(data).reshape(n, -1)  # (N, k)
    null = np.asarray(mask, dtype=bool).reshape(n, -1)  # (N, k)
    width = values.shape[1]
    missing = null.all(axis=1) if width else np.ones(n, dtype=bool)  # (N,)
    keep = values[~missing]  # (M, k)
    keep_null = null[~missing]
    np_type = value_type.to_pandas_dtype()
    element_mask = None
    if keep_null.any():
        if pa.types.is_floating(value_type):
            keep = np.where(keep_null, np.nan, keep)
        else:
            element_mask = keep_null.ravel()
    flat = pa.array(np.asarray(keep, dtype=np_type).ravel(), type=value_type, mask=element_mask)
    lengths = np.where(missing, 0, width)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), flat, mask=pa.array(missing))
