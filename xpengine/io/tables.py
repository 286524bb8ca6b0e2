"""Generic table reading and the source_id join of XP spectra with gaia_source, 2MASS and E(B−V)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from xpengine.io._arrays import parse_array_strings, source_id_array, to_list_array
from xpengine.io.errors import GaiaFileError
from xpengine.io.formats import open_table_reader
from xpengine.io.schema import META_SOURCE, READ_PROBLEM

__all__ = ["EBV_COLUMNS", "TMASS_COLUMNS", "check_side_table", "join_sources", "read_table"]

logger = logging.getLogger(__name__)

TMASS_COLUMNS: tuple[str, ...] = ("j_m", "j_msigcom", "h_m", "h_msigcom", "ks_m", "ks_msigcom")
"""2MASS PSC magnitudes and total errors (mag), with the Gaia archive's `tmass_psc_xsc` names.
2MASS writes 99/99.999 for missing photometry; that is left to the features code."""
EBV_COLUMNS: tuple[str, ...] = ("ebv", "ebv_error")
"""E(B−V) (mag) and its error, e.g. from a 3-D dust map; `ebv_error` may be absent."""
SIDE_TABLES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "2MASS": (TMASS_COLUMNS, ()),
    "E(B-V)": (("ebv",), ("ebv_error",)),
}
"""The columns `join_sources` takes from each side table besides source_id: (required, optional)."""


def read_table(
    source: str | os.PathLike[str],
    *,
    columns: list[str] | None = None,
    storage_options: dict[str, Any] | None = None,
    array_columns: Sequence[str] = (),
) -> pa.Table:
    """Read any supported table file (CSV, ECSV, Parquet, FITS, VOTable; gzip or not) as it is.

    Column types are inferred (ECSV: as declared); array columns of text files stay strings, except
    those named in `array_columns`: their text (`(1.5, 2e-3)` or `[1.5,2e-3]`, as the Gaia archive
    writes arrays) is parsed into `list<double>` (empty text or `()`: null), correctly rounded as
    Python's float() would; a value that is not such an array raises `GaiaFileError` naming its row.
    A `source_id` column must hold integers (or integer text): a floating-point one (e.g. ids written
    as `5.853498713190526e+18`) raises `GaiaFileError`, as float64 cannot hold Gaia ids exactly.
    Units, descriptions and UCDs declared by the file are kept as Arrow field metadata (`unit`,
    `description`, `ucd`); the schema metadata `xpengine.source` (`META_SOURCE`) names the file, so that
    `join_sources` errors about the table (duplicated or null source_id) name it too. Missing `columns`
    (or `array_columns`) raise `GaiaFileError` naming them.
    """
    reader = open_table_reader(source, storage_options)
    names = list(reader.columns) if columns is None else list(columns)
    names += [c for c in array_columns if c not in names]
    missing = [c for c in names if c not in reader.columns]
    if missing:
        reader.src.close()
        raise GaiaFileError(reader.src.url, f"missing column(s) {missing}", column=missing[0])
    types = {n: t for n in names if (t := reader.declared_type(n)) is not None}
    batches = [b for _, b in reader.iter_batches(names, types, 1 << 20)]
    if not batches:
        table = pa.table({n: pa.array([], type=types.get(n, pa.null())) for n in names})
    else:
        table = pa.Table.from_batches(batches)
    for name in array_columns:
        table = _parse_array_column(table, name, reader.src.url)
    if "source_id" in table.column_names:  # ids must be integers: float64 ones have lost digits
        i = table.schema.get_field_index("source_id")
        table = table.set_column(i, "source_id", source_id_array(table.column(i), reader.src.url))
    fields = []
    for field in table.schema:
        meta = reader.field_metadata(field.name)
        fields.append(field.with_metadata(meta) if meta else field)
    # the file, as the XP and gaia_source readers record theirs: join errors then name it
    schema_meta = {**(table.schema.metadata or {}), META_SOURCE: reader.src.url.encode()}
    return table.cast(pa.schema(fields, metadata=schema_meta))


def _parse_array_column(table: pa.Table, name: str, url: str) -> pa.Table:
    """`table` with its text column `name` parsed into list<double> (lists are cast)."""
    value_type = pa.float64()
    i = table.schema.get_field_index(name)
    col = table.column(i)
    if pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
        parsed = to_list_array(col, value_type)
    else:
        parsed, problems = parse_array_strings(col, value_type)
        if problems:
            row, text = problems[0]
            raise GaiaFileError(url, f"not an array: {text}", row=row + 1, column=name)
    return table.set_column(i, pa.field(name, parsed.type), parsed)


def _source_of(schema: pa.Schema) -> str | None:
    """The file a table was read from, when its schema metadata records it (`META_SOURCE`)."""
    meta = schema.metadata or {}
    return meta[META_SOURCE].decode(errors="replace") if META_SOURCE in meta else None


def _check_side_columns(schema: pa.Schema, what: str, url: str | None) -> None:
    """GaiaFileError naming the table's file (`url`; None: the table is named by `what` alone) and the
    column when a 2MASS or E(B−V) table (`what`, a key of `SIDE_TABLES`) lacks a column `join_sources`
    takes from it, or holds one that is not numbers (text: the features would fail on it later, far
    from the file)."""
    required, optional = SIDE_TABLES[what]
    source = url or f"{what} table"
    missing = [c for c in ("source_id", *required) if c not in schema.names]
    if missing:
        also = f" (and optionally {list(optional)})" if optional else ""
        raise GaiaFileError(
            source,
            f"{what} table lacks columns {missing}; expected source_id, {list(required)}{also}; "
            f"columns present: {schema.names}",
            column=missing[0],
        )
    for name in (*required, *optional):
        if name not in schema.names:
            continue
        typ = schema.field(name).type
        if not (pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_null(typ)):
            raise GaiaFileError(
                source, f"{name} has type {typ}; a {what} table holds numbers (mag)", column=name
            )


def check_side_table(
    source: str | os.PathLike[str], what: str, *, storage_options: dict[str, Any] | None = None
) -> list[str]:
    """Check a 2MASS or E(B−V) table file (`what`: "2MASS" or "E(B-V)") before a job joins it to
    every partition: the columns `join_sources` takes from it are there and hold numbers, and its
    source_id holds integers (`source_id_array`: float64 ids have lost digits), from the file's schema
    and its first rows; a problem raises GaiaFileError naming the file and column (and row). The job
    reads the table in each partition's task, where the same problems would fail every partition
    one by one after the cluster started, naming no file. Returns the columns the join will take from it
    (`source_id` first; an optional one such as `ebv_error` only where the file has it)."""
    reader = open_table_reader(source, storage_options)
    try:
        required, optional = SIDE_TABLES[what]
        names = ["source_id", *required, *(c for c in optional if c in reader.columns)]
        present = [c for c in names if c in reader.columns]
        types = {n: t for n in present if (t := reader.declared_type(n)) is not None}
        first = next(iter(reader.iter_batches(present, types, 4096)), None)
        if first is None:
            fields = [pa.field(n, types.get(n, pa.null())) for n in present]
            schema = pa.schema(fields)
        else:
            schema = first[1].schema
        _check_side_columns(schema, what, reader.src.url)
        if first is not None:
            source_id_array(first[1].column("source_id"), reader.src.url, row0=first[0])
    finally:
        reader.src.close()
    return present


def _table_name(table: pa.Table, what: str) -> str:
    """`what` ("2MASS"), with the table's file when its schema metadata records it (`META_SOURCE`)."""
    meta = table.schema.metadata or {}
    if META_SOURCE in meta:
        return f"{what} table {meta[META_SOURCE].decode(errors='replace')}"
    return what


def _source_ids(table: pa.Table, what: str) -> np.ndarray:
    """(N,) int64 source_id of a table to join; GaiaFileError (naming the table and, when its schema
    metadata says, its file) for nulls or ids that are not integers (float64 ids: `SOURCE_ID_RULE`)."""
    if "source_id" not in table.column_names:
        raise ValueError(f"{what} table has no source_id column; columns: {table.column_names}")
    what = _table_name(table, what)
    col = source_id_array(table.column("source_id"), what)
    if col.null_count:
        raise GaiaFileError(what, "source_id has null values", column="source_id")
    return np.asarray(col.to_numpy(), dtype=np.int64)


def _left_indices(left_ids: np.ndarray, right: pa.Table, what: str) -> pa.Array:
    """For each left id, the row of `right` with that source_id (null if none). Duplicates raise."""
    rid = _source_ids(right, what)
    order = np.argsort(rid, kind="stable")
    srt = rid[order]
    dup = np.flatnonzero(srt[1:] == srt[:-1])
    if dup.size:
        ids = np.unique(srt[dup])
        raise GaiaFileError(
            _table_name(right, what),
            f"{ids.size} duplicated source_id(s) in the table to join, e.g. source_id {int(ids[0])}; "
            "each source must appear at most once",
            column="source_id",
        )
    if srt.size == 0:
        return pa.nulls(left_ids.size, pa.int64())
    pos = np.clip(np.searchsorted(srt, left_ids), 0, srt.size - 1)
    found = srt[pos] == left_ids
    return pa.array(order[pos], type=pa.int64(), mask=~found)


def join_sources(
    xp: pa.Table,
    gaia: pa.Table | None,
    *,
    tmass: pa.Table | None = None,
    ebv: pa.Table | None = None,
    gaia_label: str = "gaia_source",
) -> pa.Table:
    """Left-join per-source tables onto the XP table by `source_id`, keeping XP rows and their order.

    Parameters
    ----------
    xp : (N rows) XP continuous table (e.g. from `read_xp_continuous`).
    gaia : gaia_source rows (any superset of the XP sources), or None.
    tmass : table with `source_id` and `TMASS_COLUMNS` (mag), or None.
    ebv : table with `source_id`, `ebv` and optionally `ebv_error` (mag), or None.
    gaia_label : what `gaia` is, prefixed to its read problems ("XP file" for an XP file's own columns,
        `io.read_embedded_columns`, which may be 2MASS or E(B−V) columns too).

    Returns
    -------
    N rows: the XP columns, then the gaia_source columns (less `source_id` and `read_problem`), then
    the 2MASS and E(B−V) columns; null where a source is absent from a right-hand table. The
    gaia_source row's `read_problem` (as `read_gaia_source` writes it) is appended to the XP row's,
    prefixed `gaia_label`, so that `read_problem` holds every row-level read problem of the source
    (added as the last column when the XP table has none). The XP table's schema metadata is kept.

    Raises
    ------
    GaiaFileError : a right-hand table holds a source_id more than once (message names one).
    ValueError : missing source_id / required columns, or a column name present on both sides; a
        2MASS or E(B−V) table lacking a column or with one that is not numbers is a GaiaFileError
        naming its file (`check_side_table` checks a file before a job reads it partition by partition).
    """
    left_ids = _source_ids(xp, "XP")
    out = xp
    right_tables: list[tuple[str, pa.Table, list[str]]] = []
    if gaia is not None:
        cols = [c for c in gaia.column_names if c not in ("source_id", READ_PROBLEM)]
        right_tables.append(("gaia_source", gaia, cols))
    if tmass is not None:
        _check_side_columns(tmass.schema, "2MASS", _source_of(tmass.schema))
        right_tables.append(("2MASS", tmass, list(TMASS_COLUMNS)))
    if ebv is not None:
        _check_side_columns(ebv.schema, "E(B-V)", _source_of(ebv.schema))
        if "ebv_error" not in ebv.column_names:
            ebv = ebv.append_column("ebv_error", pa.nulls(ebv.num_rows, pa.float32()))
        right_tables.append(("E(B-V)", ebv, list(EBV_COLUMNS)))
    for what, right, cols in right_tables:
        clash = [c for c in cols if c in out.column_names]
        if clash:
            raise ValueError(f"{what} columns {clash} are already in the joined table")
        idx = _left_indices(left_ids, right, what)
        taken = right.select(cols).take(idx)
        if what == "gaia_source" and READ_PROBLEM in right.column_names:
            out = _merge_read_problems(out, right.column(READ_PROBLEM).take(idx), f"{gaia_label} ")
        for name in cols:
            col = taken.column(name)
            if what != "gaia_source" and (pa.types.is_integer(col.type) or pa.types.is_null(col.type)):
                col = pc.cast(col, pa.float32())
            out = out.append_column(name, col)
        n_found = len(idx) - idx.null_count
        logger.debug("join %s: %d of %d XP sources matched", what, n_found, len(idx))
    return out


def _merge_read_problems(table: pa.Table, extra: pa.Array | pa.ChunkedArray, prefix: str) -> pa.Table:
    """`table` with the non-null texts of `extra` (N,) appended to its `read_problem` column ("; ")."""
    extra = _plain(pc.cast(extra, pa.string()))
    if extra.null_count == len(extra):
        if READ_PROBLEM in table.column_names:
            return table
        return table.append_column(READ_PROBLEM, pa.nulls(table.num_rows, pa.string()))
    extra = pc.binary_join_element_wise(prefix, extra, "")  # null stays null
    if READ_PROBLEM not in table.column_names:
        return table.append_column(READ_PROBLEM, extra)
    own = _plain(pc.cast(table.column(READ_PROBLEM), pa.string()))
    both = pc.binary_join_element_wise(own, extra, "; ")  # null where either is null
    merged = pc.if_else(pc.is_null(own), extra, pc.if_else(pc.is_null(extra), own, both))
    return table.set_column(table.schema.get_field_index(READ_PROBLEM), READ_PROBLEM, merged)


def _plain(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
