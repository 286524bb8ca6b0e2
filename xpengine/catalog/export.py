"""Writing a query's result to a file: a `pyarrow.RecordBatchReader` streamed to Parquet or CSV
through `xpengine.io.atomic` (`write_table_stream`, behind `xpengine query --output`).
Re-exported by `xpengine.catalog.query`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa

from xpengine.catalog.errors import CatalogNotFoundError, QueryError, duckdb_message
from xpengine.io.atomic import file_written_atomically

__all__ = ["check_output_path", "write_table_stream"]


def check_output_path(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Refuse (QueryError) an output file that `write_table_stream` would refuse, before a query runs:
    a suffix other than .parquet/.csv, an existing file without `overwrite`, a missing directory."""
    path = Path(path)
    if path.suffix.lower() not in (".parquet", ".csv"):
        raise QueryError(f"output file must end in .parquet or .csv, got {str(path)!r}")
    if path.exists() and not overwrite:
        raise QueryError(f"output file {str(path)!r} exists; pass overwrite (--overwrite) to replace it")
    if not path.parent.exists():
        raise CatalogNotFoundError(f"output directory {str(path.parent)!r} does not exist")
    return path


def _csv_unwritable(schema: pa.Schema) -> pa.Field | None:
    """The first column CSV cannot hold (lists, structs, maps, unions: one cell is not one value)."""
    return next((f for f in schema if pa.types.is_nested(f.type) or pa.types.is_union(f.type)), None)


def _batches(reader: Any, path: Path) -> Iterator[pa.RecordBatch]:
    """The reader's batches; a query failing while it streams (DuckDB raises through pyarrow's reader
    as duckdb.Error, ArrowException or plain OSError) becomes a QueryError."""
    import duckdb

    it = iter(reader)
    while True:
        try:
            batch = next(it)
        except StopIteration:
            return
        except (duckdb.Error, pa.ArrowException, OSError) as exc:
            raise QueryError(f"SQL error while writing {str(path)!r}: {duckdb_message(exc)}") from exc
        yield batch


def write_table_stream(
    reader: Any,
    path: str | os.PathLike,
    schema_metadata: Mapping[bytes, bytes] | None = None,
    overwrite: bool = False,
) -> int:
    """Write a `pyarrow.RecordBatchReader` to `path` (.parquet or .csv) atomically; returns the row count.

    Refuses to replace an existing file unless `overwrite`; `schema_metadata` goes into the Parquet
    schema (e.g. `xpengine.units`). A CSV file refuses a list or struct column (naming it); a query
    or write error is a one-line QueryError, and no file is left behind.
    """
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    path = check_output_path(path, overwrite)
    parquet = path.suffix.lower() == ".parquet"
    if not parquet and (bad := _csv_unwritable(reader.schema)) is not None:
        raise QueryError(
            f"output file {str(path)!r}: column {bad.name!r} has type {bad.type}, which CSV cannot hold; "
            "write .parquet, or select it as text (e.g. CAST(... AS VARCHAR))"
        )
    schema = reader.schema.with_metadata({**(reader.schema.metadata or {}), **(schema_metadata or {})})
    n = 0
    with file_written_atomically(path) as tmp:
        writer = None
        try:
            writer = (
                pq.ParquetWriter(tmp, schema, compression="zstd")
                if parquet
                else pacsv.CSVWriter(tmp, reader.schema)
            )
            for batch in _batches(reader, path):
                writer.write_batch(batch)
                n += batch.num_rows
            writer.close()
            writer = None
        except (pa.ArrowException, OSError) as exc:  # the writer's: unsupported type, disk full
            raise QueryError(f"cannot write {str(path)!r}: {str(exc).strip()}") from exc
        finally:
            if writer is not None:  # after an error: the temporary file is removed, the error stands
                try:
                    writer.close()
                except (pa.ArrowException, OSError):
                    pass
    return n
