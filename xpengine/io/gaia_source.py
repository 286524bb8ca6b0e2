"""Reader for `gaiadr3.gaia_source` rows (bulk `GaiaSource_*.csv.gz`, archive ECSV/CSV, VOTable, FITS,
Parquet), returning the columns the engine needs (REFERENCE §2) with their Gaia dtypes."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from xpengine.io.errors import GaiaFileError
from xpengine.io.formats import open_table_reader
from xpengine.io.schema import GAIA_SOURCE_BY_NAME, GAIA_SOURCE_COLUMNS, GAIA_SOURCE_REQUIRED

__all__ = ["iter_gaia_source", "read_gaia_source"]

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
    """Stream gaia_source rows as record batches.

    Parameters
    ----------
    source : local path or fsspec URL; ECSV (bulk or archive), CSV, VOTable, FITS or Parquet, gzip or not.
    columns : gaia_source column names to return (`source_id` always first). Default: the engine's
        columns `GAIA_SOURCE_COLUMNS` (REFERENCE §2). Engine columns marked optional that are absent
        from the file come back as nulls; required ones (`source_id`, `ra`, `dec`, `parallax`,
        `parallax_error`, `phot_g_mean_mag`) and any other column named in `columns` must exist.
    batch_rows : rows per batch for FITS/VOTable/Parquet; text files are batched by blocks (~16 MB).

    Raises
    ------
    GaiaFileError : missing columns (all named), unreadable values, or any whole-file problem.
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
    absent = [n for n in names if n not in in_file]
    if absent:
        logger.debug("%s: optional gaia_source columns absent, returned as null: %s", url, absent)
    for row0, raw in reader.iter_batches(read_cols, types, batch_rows):
        arrays = []
        fields = []
        for n in names:
            spec = GAIA_SOURCE_BY_NAME.get(n)
            if n in in_file:
                arr = raw.column(n)
                if spec is not None and arr.type != spec.type:
                    try:
                        arr = pc.cast(arr, spec.type)
                    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                        raise GaiaFileError(
                            url, f"values of type {arr.type} cannot be read as {spec.type}: {exc}", column=n
                        ) from exc
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
        yield pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))


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
        return pa.table(
            {
                n: pa.array([], type=GAIA_SOURCE_BY_NAME[n].type if n in GAIA_SOURCE_BY_NAME else pa.null())
                for n in names
            }
        )
    return pa.Table.from_batches(batches)
