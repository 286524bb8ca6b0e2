"""Readers for formats read in one piece (FITS, VOTable): the file becomes an Arrow table, then is
served in batches. Archive FITS/VOTable files are small (the archive caps downloads); the bulk data
come as ECSV."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from xpengine.io._source import Source

__all__ = ["InMemoryReader"]


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
