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
    a suffix other than .parquet/.csv/.ecsv, an existing file without `overwrite`, a missing directory."""
    path = Path(path)
    if path.suffix.lower() not in (".parquet", ".csv", ".ecsv"):
        raise QueryError(f"output file must end in .parquet, .csv or .ecsv, got {str(path)!r}")
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
    """Write a `pyarrow.RecordBatchReader` to `path` (.parquet, .csv or .ecsv) atomically; returns the row
    count.

    Refuses to replace an existing file unless `overwrite`; `schema_metadata` goes into the Parquet
    schema (e.g. `xpengine.units`) and, as astropy's ECSV header, into an .ecsv file, so that `Table.read`
    gives units and descriptions (a plain .csv has a header row only: a review of session 33 found the
    README promising units there). A CSV or ECSV file refuses a list or struct column (naming it); a query
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
    ecsv = path.suffix.lower() == ".ecsv"
    n = 0
    with file_written_atomically(path) as tmp:
        writer = sink = None
        try:
            if parquet:
                writer = pq.ParquetWriter(tmp, schema, compression="zstd")
            else:
                sink = pa.OSFile(str(tmp), "wb")
                if ecsv:
                    sink.write(_ecsv_header(schema).encode())
                writer = pacsv.CSVWriter(sink, _ecsv_types(reader.schema) if ecsv else reader.schema)
            for batch in _batches(reader, path):
                writer.write_batch(_ecsv_types(batch) if ecsv else batch)
                n += batch.num_rows
            writer.close()
            writer = None
            if sink is not None:
                sink.close()
        except (pa.ArrowException, OSError) as exc:  # the writer's: unsupported type, disk full
            raise QueryError(f"cannot write {str(path)!r}: {str(exc).strip()}") from exc
        finally:
            for each in (writer, sink):  # after an error: the temporary file is removed, the error stands
                try:
                    if each is not None and not getattr(each, "closed", False):
                        each.close()
                except (pa.ArrowException, OSError):
                    pass
    return n


def _plain(t: pa.DataType) -> bool:
    return (
        pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_string(t)
        or pa.types.is_large_string(t)
    )


def _ecsv_header(schema: pa.Schema) -> str:
    """astropy's ECSV header (comma-delimited) for `schema` as `_ecsv_types` writes it: each column's
    datatype, its unit (`xpengine.units`) and description, the catalogue's `xpengine.*` entries."""
    import json

    from xpengine.catalog.schema import result_meta_yaml

    meta = schema.metadata or {}
    units = json.loads(meta.get(b"xpengine.units", b"{}"))
    shown = pa.schema(
        [f if _plain(f.type) or pa.types.is_boolean(f.type) else f.with_type(pa.string()) for f in schema]
    )
    yaml_text = result_meta_yaml(shown, units, meta)
    lines = ["%ECSV 1.0", "---", "delimiter: ','", *yaml_text.splitlines(), "schema: astropy-2.0"]
    return "".join(f"# {line}\n" for line in lines)


def _ecsv_types(obj: Any) -> Any:
    """A batch (or schema) as the ECSV rows hold it: booleans as 0/1 (ECSV reads True/False/0/1, pyarrow
    writes true/false); a date, decimal, binary or null column as text; a one-column result's values as
    text with nulls as "" (pyarrow writes a null as an empty field, which alone on its line is a blank line
    that astropy skips: a review found such rows lost). Text written "" reads back masked, as astropy's own."""
    schema = obj if isinstance(obj, pa.Schema) else obj.schema
    one = len(schema) == 1

    def target(t: pa.DataType) -> pa.DataType:
        if one:
            return pa.string()
        return pa.int8() if pa.types.is_boolean(t) else (t if _plain(t) else pa.string())

    if isinstance(obj, pa.Schema):
        return pa.schema([f.with_type(target(f.type)) for f in schema])
    cols = []
    for c in obj.columns:
        if pa.types.is_boolean(c.type):
            c = c.cast(pa.int8())
        try:
            c = c if c.type == target(c.type) else c.cast(target(c.type))
        except pa.ArrowInvalid as exc:  # bytes that are not UTF-8
            raise QueryError(
                f"a column of type {c.type} cannot be written as ECSV text ({exc}); write .parquet"
            ) from exc
        cols.append(c.fill_null("") if one else c)
    return pa.RecordBatch.from_arrays(cols, schema=_ecsv_types(obj.schema))
