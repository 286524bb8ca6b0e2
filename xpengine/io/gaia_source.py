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
from xpengine.io._units import parse_unit
from xpengine.io.errors import GaiaFileError, case_hint
from xpengine.io.formats import open_table_reader
from xpengine.io.schema import (
    GAIA_SOURCE_BY_NAME,
    GAIA_SOURCE_COLUMNS,
    GAIA_SOURCE_REQUIRED,
    META_SOURCE,
    READ_PROBLEM,
)

__all__ = ["check_gaia_source_columns", "iter_gaia_source", "read_gaia_source"]

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


def check_gaia_source_columns(
    source: str | os.PathLike[str], storage_options: dict[str, Any] | None = None
) -> None:
    """Raise GaiaFileError where a gaia_source file's header lacks a column `iter_gaia_source` requires
    (naming them, with the lower-case hint), as its read would; OSError where the header cannot be read
    (a missing, empty or damaged file). Reads the header only."""
    from xpengine.io.formats import table_column_names

    try:
        have = set(table_column_names(source, storage_options))
    except GaiaFileError as exc:  # missing, empty, truncated: an OSError, the read's own business
        raise OSError(str(exc)) from exc
    missing = [c for c in GAIA_SOURCE_REQUIRED if c not in have]
    if missing:
        raise _missing_columns(str(source), missing, have, None)


def _missing_columns(url: str, missing: list[str], have: set[str], format_name: str | None) -> GaiaFileError:
    """The one error for required columns a gaia_source file lacks, from the plan's header check and from
    the read alike: the columns, the lower-case hint, and where the engine's required ones were asked for,
    how to get them."""
    where = f" ({format_name})" if format_name else ""
    advice = ""
    if set(missing) <= set(GAIA_SOURCE_REQUIRED):
        advice = (
            f": a gaia_source table gives {', '.join(GAIA_SOURCE_REQUIRED)} (select them in the archive "
            "query), or give the XP file alone, with the gaia_source columns it holds beside its XP"
        )
    return GaiaFileError(
        url,
        f"missing gaia_source column(s) {missing}{where}{case_hint(missing, have)}{advice}",
        column=missing[0],
    )


def iter_gaia_source(
    source: str | os.PathLike[str],
    *,
    columns: list[str] | None = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    storage_options: dict[str, Any] | None = None,
    types: dict[str, pa.DataType] | None = None,
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
    types : Arrow types of columns that are not gaia_source's (2MASS magnitudes beside them, say): read
        and cast as those in every format, an unreadable value a row problem.

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
        raise _missing_columns(url, missing, in_file, reader.format_name)
    read_cols = [n for n in names if n in in_file]
    given, types = types or {}, {}
    for n in read_cols:
        spec = GAIA_SOURCE_BY_NAME.get(n)
        t = given.get(n) or (spec.type if spec is not None else reader.declared_type(n))
        if t is not None:
            types[n] = t
    # Text files: numbers and booleans (source_id aside) arrive as text and are cast here, so that one
    # unreadable value costs its row a read problem instead of failing the whole file.
    targets = {
        n: t for n, t in types.items() if reader.text_arrays and n != "source_id" and _readable_type(t)
    }
    read_types = {n: (pa.string() if n in targets else t) for n, t in types.items()}
    factors = _unit_factors(reader, read_cols, url)  # columns declared in another unit: {name: factor}
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
                elif (want := given.get(n) or (spec.type if spec is not None else None)) and arr.type != want:
                    arr, bad = cast_scalar_column(arr, want, url, n)
                    for i, msg in bad:
                        problems.setdefault(i, []).append(f"{n}: {msg}")
                if n in factors:  # e.g. a parallax declared in arcsec: to the engine's mas
                    arr = pc.multiply(arr, pa.scalar(factors[n], arr.type))
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


def _unit_factors(reader: Any, names: list[str], url: str) -> dict[str, float]:
    """{column: factor} for the float columns of `names` whose declared unit (ECSV, VOTable, FITS) is not
    the Gaia unit of `GAIA_SOURCE_COLUMNS` but converts to it (arcsec → mas: 1000), logged; a unit that
    does not convert (a parallax in mag) is refused. A column without a declared unit, or with one that
    cannot be parsed, is taken as given (Gaia's own files declare Gaia's units)."""
    out: dict[str, float] = {}
    for n in names:
        spec = GAIA_SOURCE_BY_NAME.get(n)
        if spec is None or not spec.unit or not pa.types.is_floating(spec.type):
            continue
        declared = reader.field_metadata(n).get("unit")
        declared = str(declared).strip() if declared else ""
        if not declared or declared == spec.unit:
            continue
        have, want = parse_unit(declared), parse_unit(spec.unit)
        if have is None or want is None:
            logger.debug("%s: unit %r of %s not understood; taken as %s", url, declared, n, spec.unit)
            continue
        try:
            factor = float((1.0 * have).to_value(want))
        except Exception:  # astropy's UnitConversionError (and errors of logarithmic units)
            raise GaiaFileError(
                url,
                f"column {n} is declared in {declared!r}, which does not convert to {spec.unit}",
                column=n,
            ) from None
        if abs(factor - 1.0) > 1e-12:
            logger.warning(
                "%s: column %s is declared in %r: converted to %s (x %g)", url, n, declared, spec.unit, factor
            )
            out[n] = factor
    return out


def _readable_type(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)


def read_gaia_source(
    source: str | os.PathLike[str],
    *,
    columns: list[str] | None = None,
    storage_options: dict[str, Any] | None = None,
    types: dict[str, pa.DataType] | None = None,
) -> pa.Table:
    """Read gaia_source rows into one table (see `iter_gaia_source`)."""
    batches = list(iter_gaia_source(source, columns=columns, storage_options=storage_options, types=types))
    if not batches:
        names, _ = _plan(columns)
        empty = {
            n: pa.array([], type=GAIA_SOURCE_BY_NAME[n].type if n in GAIA_SOURCE_BY_NAME else pa.null())
            for n in names
        }
        return pa.table({**empty, READ_PROBLEM: pa.array([], type=pa.string())})
    return pa.Table.from_batches(batches)
