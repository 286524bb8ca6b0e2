"""Reader for `gaiadr3.gaia_source` rows (bulk `GaiaSource_*.csv.gz`, archive ECSV/CSV, VOTable, FITS,
Parquet), returning the columns the engine needs (REFERENCE §2) with their Gaia dtypes, then a
`read_problem` string column (null when the row is fine).

A value that cannot be read (`abc` in a float column of a text file) becomes null and is reported in
`read_problem` with its column and data row (the file is named in the warning logged once per file);
the row is kept and the other rows are unaffected. `join_sources` carries these reports into the
joined table's `read_problem`, which sets the READ_PROBLEM flag (`xpengine.features.build_tokens`).
Only an unreadable `source_id` fails the whole file: such a row cannot be matched to anything.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from xpengine.io._arrays import cast_scalar_column, parse_scalar_strings, source_id_array
from xpengine.io.errors import GaiaFileError
from xpengine.io.formats import open_table_reader
from xpengine.io.schema import (
    GAIA_SOURCE_BY_NAME,
    GAIA_SOURCE_COLUMNS,
    GAIA_SOURCE_REQUIRED,
    META_SOURCE,
    READ_PROBLEM,
    XP_BY_NAME,
)

__all__ = [
    "embedded_gaia_source_columns",
    "iter_gaia_source",
    "read_embedded_gaia_source",
    "read_gaia_source",
]

logger = logging.getLogger(__name__)

DEFAULT_BATCH_ROWS = 65_536


def _plan(columns: list[str] | None) -> tuple[list[str], set[str]]:
    """Output column names and the subset that must be in the file."""
    if columns is None:
        return [c.name for c in GAIA_SOURCE_COLUMNS], set(GAIA_SOURCE_REQUIRED)
    names = list(dict.fromkeys(["source_id", *columns]))
    # Engine columns keep their optional flag; any other column asked for by name must exist.
    required = {n for n in names if n not in GAIA_SOURCE_BY_NAME or GAIA_SOURCE_BY_NAME[n].required}
    return names, required


def iter_gaia_source(
    source: str | os.PathLike[str],
    *,
    columns: list[str] | None = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    storage_options: dict[str, Any] | None = None,
) -> Iterator[pa.RecordBatch]:
    """Stream gaia_source rows as record batches: the columns asked for, then `read_problem` (string).

    Parameters
    ----------
    source : local path or fsspec URL; ECSV (bulk or archive), CSV, VOTable, FITS or Parquet, gzip or not.
    columns : gaia_source column names to return (`source_id` always first). Default: the engine's
        columns `GAIA_SOURCE_COLUMNS` (REFERENCE §2). Engine columns marked optional that are absent
        from the file come back as nulls; required ones (`source_id`, `ra`, `dec`, `parallax`,
        `parallax_error`, `phot_g_mean_mag`) and any other column named in `columns` must exist.
    batch_rows : rows per batch for FITS/VOTable/Parquet; text files are batched by blocks (~16 MB).

    Unreadable values (text files) become null, reported per row in `read_problem` (module docstring).

    Raises
    ------
    GaiaFileError : missing columns (all named), an unreadable or null `source_id`, or any whole-file
        problem.
    """
    names, required = _plan(columns)
    reader = open_table_reader(source, storage_options)
    url = reader.src.url
    in_file = set(reader.columns)
    missing = [n for n in names if n in required and n not in in_file]
    if missing:
        reader.src.close()
        raise GaiaFileError(
            url, f"missing gaia_source column(s) {missing} ({reader.format_name})", column=missing[0]
        )
    read_cols = [n for n in names if n in in_file]
    types: dict[str, pa.DataType] = {}
    for n in read_cols:
        spec = GAIA_SOURCE_BY_NAME.get(n)
        t = spec.type if spec is not None else reader.declared_type(n)
        if t is not None:
            types[n] = t
    # Text files: numbers and booleans (source_id aside) arrive as text and are cast here, so that one
    # unreadable value costs its row a read problem instead of failing the whole file.
    targets = {
        n: t for n, t in types.items() if reader.text_arrays and n != "source_id" and _readable_type(t)
    }
    read_types = {n: (pa.string() if n in targets else t) for n, t in types.items()}
    absent = [n for n in names if n not in in_file]
    if absent:
        logger.debug("%s: optional gaia_source columns absent, returned as null: %s", url, absent)
    n_problem_rows = 0
    examples: list[str] = []
    for row0, raw in reader.iter_batches(read_cols, read_types, batch_rows):
        arrays = []
        fields = []
        problems: dict[int, list[str]] = {}
        for n in names:
            spec = GAIA_SOURCE_BY_NAME.get(n)
            if n in in_file:
                arr = raw.column(n)
                if n in targets:
                    arr, bad = parse_scalar_strings(arr, targets[n])
                    for i, msg in bad:
                        problems.setdefault(i, []).append(f"{n}: {msg}")
                elif n == "source_id":  # integers only: a float64 id has lost its last digits
                    arr = source_id_array(arr, url, n, row0)
                elif spec is not None and arr.type != spec.type:
                    arr, bad = cast_scalar_column(arr, spec.type, url, n)
                    for i, msg in bad:
                        problems.setdefault(i, []).append(f"{n}: {msg}")
                if pa.types.is_floating(arr.type) and arr.null_count < len(arr):
                    # archive ECSV writes `nan`, VOTable/bulk files null: one missing-value marker.
                    nan = pc.fill_null(pc.is_nan(arr), False)
                    if pc.any(nan).as_py():
                        arr = pc.if_else(nan, pa.scalar(None, arr.type), arr)
            else:
                arr = pa.nulls(raw.num_rows, spec.type if spec is not None else pa.null())
            arrays.append(arr)
            fields.append(pa.field(n, arr.type))
        sid = arrays[0]
        if sid.null_count:
            first = int(np.flatnonzero(np.asarray(sid.is_null()))[0])
            raise GaiaFileError(url, "source_id is null", row=row0 + first + 1, column="source_id")
        texts = np.full(raw.num_rows, None, dtype=object)
        for i, msgs in problems.items():
            texts[i] = "; ".join(msgs) + f" (data row {row0 + i + 1})"
        arrays.append(pa.array(texts, type=pa.string()))
        fields.append(pa.field(READ_PROBLEM, pa.string()))
        if problems:
            n_problem_rows += len(problems)
            examples += [t for t in texts if t is not None][: 3 - len(examples)]
        yield pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields, metadata={META_SOURCE: url}))
    if n_problem_rows:
        logger.warning(
            "%s: %d row(s) with unreadable gaia_source values, kept with those values null; column %r "
            "says which, e.g. %s",
            url,
            n_problem_rows,
            READ_PROBLEM,
            " | ".join(examples),
        )


def _readable_type(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)


def read_gaia_source(
    source: str | os.PathLike[str],
    *,
    columns: list[str] | None = None,
    storage_options: dict[str, Any] | None = None,
) -> pa.Table:
    """Read gaia_source rows into one table (see `iter_gaia_source`)."""
    batches = list(iter_gaia_source(source, columns=columns, storage_options=storage_options))
    if not batches:
        names, _ = _plan(columns)
        empty = {
            n: pa.array([], type=GAIA_SOURCE_BY_NAME[n].type if n in GAIA_SOURCE_BY_NAME else pa.null())
            for n in names
        }
        return pa.table({**empty, READ_PROBLEM: pa.array([], type=pa.string())})
    return pa.Table.from_batches(batches)


def embedded_gaia_source_columns(
    source: str | os.PathLike[str], *, storage_options: dict[str, Any] | None = None
) -> list[str]:
    """The engine's gaia_source columns (G, parallax, RUWE, ...: `GAIA_SOURCE_COLUMNS`) that an XP file
    holds beside its XP, in Gaia order: an ADQL join of the two tables, or GaiaXPy's 18 Sco file with its
    `phot_g_mean_mag`. Reads the file's header only. [] for a bulk XP partition, and for a file without
    `source_id` (a one-source XP_SAMPLED download)."""
    reader = open_table_reader(source, storage_options)
    try:
        in_file = set(reader.columns)
    finally:
        reader.src.close()
    if "source_id" not in in_file:  # a single-source XP_SAMPLED download: nothing to match them by
        return []
    return [
        c.name
        for c in GAIA_SOURCE_COLUMNS
        if c.name in in_file and c.name != "source_id" and c.name not in XP_BY_NAME
    ]


def read_embedded_gaia_source(
    source: str | os.PathLike[str], *, storage_options: dict[str, Any] | None = None
) -> pa.Table | None:
    """The gaia_source columns an XP file holds beside its XP (`embedded_gaia_source_columns`) as a
    gaia_source table: `source_id`, those columns with their Gaia dtypes, `read_problem` (unreadable values
    null and reported, as `iter_gaia_source` does). None when the file holds none. Columns the file lacks
    are simply absent (the engine treats them as not measured: no parallax column, no parallax token).

    A file with one row per wavelength (the archive's long-layout XP_SAMPLED) repeats a source's values
    on each of its rows: they give one row per source, and must agree.

    Raises
    ------
    GaiaFileError : what `iter_gaia_source` raises; a source whose rows disagree on a value (names the
        source, its data row and the column).
    """
    columns = embedded_gaia_source_columns(source, storage_options=storage_options)
    if not columns:
        return None
    table = read_gaia_source(source, columns=columns, storage_options=storage_options)
    ids = np.asarray(table.column("source_id"), dtype=np.int64)
    first_of_row = _first_rows(ids)  # (N,)
    first = np.unique(first_of_row)  # each source's first row, in the file's order
    if len(first) == len(ids):
        return table
    meta = table.schema.metadata or {}
    url = meta.get(META_SOURCE, os.fspath(source).encode()).decode()
    rep = table.take(pa.array(first_of_row))
    for name in columns:
        same = pc.fill_null(pc.equal(table.column(name), rep.column(name)), False)
        both_null = pc.and_(table.column(name).is_null(), rep.column(name).is_null())
        bad = ~np.asarray(pc.or_(same, both_null))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise GaiaFileError(
                url,
                f"source {ids[row]} has rows with different {name} values (a gaia_source column of an XP file "
                "must be one value per source)",
                row=row + 1,
                column=name,
            )
    return table.take(pa.array(first))


def gaia_source_for(
    xp: str, gaia: str | None, *, storage_options: dict[str, Any] | None = None
) -> pa.Table | None:
    """The gaia_source table for XP file `xp`: the rows of its partner `gaia` (`read_gaia_source`), or
    without one, the gaia_source columns `xp` holds beside its XP (`read_embedded_gaia_source`, logged),
    or None. A model-inputs file (`xpengine compact`) carries its own columns: None."""
    if gaia:
        return read_gaia_source(gaia, storage_options=storage_options)
    from xpengine.io.model_inputs import is_model_inputs

    if is_model_inputs(xp, storage_options=storage_options):
        return None
    table = read_embedded_gaia_source(xp, storage_options=storage_options)
    if table is not None:
        logger.info(
            "%s: no gaia_source table given, using its own column(s) %s", xp, table.column_names[1:-1]
        )
    return table


def _first_rows(ids: np.ndarray) -> np.ndarray:
    """(N,) index of the first row with each row's source_id."""
    _, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    return first[inverse]
