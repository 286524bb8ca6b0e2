"""Writing a query's result to a file: a `pyarrow.RecordBatchReader` streamed to Parquet or CSV
through `xpengine.io.atomic` (`write_table_stream`, behind `xpengine query --output`).
Re-exported by `xpengine.catalog.query`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa

from xpengine.catalog.errors import CatalogNotFoundError, QueryError, duckdb_message
from xpengine.io.atomic import file_written_atomically

__all__ = ["write_table_stream"]


def write_table_stream(
    reader: Any,
    path: str | os.PathLike,
    schema_metadata: Mapping[bytes, bytes] | None = None,
    overwrite: bool = False,
) -> int:
    """Write a `pyarrow.RecordBatchReader` to `path` (.parquet or .csv) atomically; returns the row count.

    Refuses to replace an existing file unless `overwrite`; `schema_metadata` goes into the Parquet
    schema (e.g. `xpengine.units`).
    """
    import duckdb
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise QueryError(f"output file must end in .parquet or .csv, got {str(path)!r}")
    if path.exists() and not overwrite:
        raise QueryError(f"output file {str(path)!r} exists; pass overwrite (--overwrite) to replace it")
    if not path.parent.exists():
        raise CatalogNotFoundError(f"output directory {str(path.parent)!r} does not exist")
    schema = reader.schema.with_metadata({**(reader.schema.metadata or {}), **(schema_metadata or {})})
    n = 0
    with file_written_atomically(path) as tmp:
        writer = (
            pq.ParquetWriter(tmp, schema, compression="zstd")
            if suffix == ".parquet"
            else pacsv.CSVWriter(tmp, reader.schema)
        )
        try:
            try:
                for batch in reader:
                    writer.write_batch(batch)
                    n += batch.num_rows
            except (duckdb.Error, pa.ArrowException) as exc:
                raise QueryError(f"SQL error while writing {str(path)!r}: {duckdb_message(exc)}") from exc
            writer.close()
            writer = None
        finally:
            if writer is not None:
                writer.close()
    return n
