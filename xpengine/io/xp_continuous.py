"""Reader for Gaia DR3 XP continuous mean spectra (`gaiadr3.xp_continuous_mean_spectrum`).

One entry point for every format (bulk `XpContinuousMeanSpectrum_*.csv.gz`, archive CSV / ECSV /
FITS / VOTable, Parquet); see `xpengine.io.formats`. A file of SAMPLED spectra (columns `flux`, `flux_error`:
archive `XP_SAMPLED`, bulk `XpSampledMeanSpectrum`, GaiaXPy `calibrate` output) is recognised by its
columns and read by `xpengine.io.xp_sampled` into the same table (projected coefficients, schema
metadata `xpengine.xp_input`). The output always has the Gaia column names and
dtypes of REFERENCE §1, in Gaia order, followed by a `read_problem` string column.

Missing data: a band that is missing (e.g. source 5405570973190252288 has no BP) is null in every one
of its columns. A row whose array is malformed or has the wrong length, or whose coefficients or
coefficient errors hold a NaN, ±inf, negative error or a value beyond `MAX_ABS_XP_COEFFICIENT`, is kept:
that band becomes null and `read_problem` says what went wrong, in which column and data row (the file
is named in the warning logged once per file). A value of another column that cannot be read (e.g.
`bp_chi_squared` = `abc`) becomes null and is reported the same way, the band untouched, unless the
band depends on it (`X_n_parameters`, `X_n_relevant_bases`: the band becomes null).

Coefficient counts: every yielded batch (and `read_xp_continuous`'s table) carries schema metadata
`xpengine.source` (the file) and `xpengine.n_coefficients` (JSON, e.g. `{"bp": [55], "rp": [55]}`: the
distinct coefficient counts of each band, 55 in Gaia DR3, 51 for BP in DR4), so that a model trained
on another release can refuse the data (`xpengine.features.build_tokens`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from xpengine.io._arrays import parse_array_strings, parse_scalar_strings, to_list_array
from xpengine.io.errors import GaiaFileError
from xpengine.io.formats import open_table_reader
from xpengine.io.schema import (
    BANDS,
    DR3_N_COEFFICIENTS,
    MAX_ABS_XP_COEFFICIENT,
    META_N_COEFFICIENTS,
    META_SOURCE,
    META_XP_INPUT,
    READ_PROBLEM,
    XP_BY_NAME,
    XP_COLUMNS,
    xp_column_names,
    xp_schema,
)
from xpengine.io.xp_sampled import iter_sampled_reader, sampled_layout

__all__ = [
    "DEFAULT_BATCH_ROWS",
    "DEFAULT_BATCH_ROWS_CORRELATIONS",
    "coefficient_counts",
    "covariance_from_correlations",
    "iter_xp_continuous",
    "list_column_to_numpy",
    "read_xp_continuous",
]

logger = logging.getLogger(__name__)

DEFAULT_BATCH_ROWS = 16_384
"""Rows per yielded batch: ~20 MB of coefficients and errors."""
DEFAULT_BATCH_ROWS_CORRELATIONS = 2_048
"""Rows per yielded batch with correlations (12 kB per row more): ~27 MB."""


def _output_columns(columns: list[str] | None, with_correlations: bool) -> list[str]:
    if columns is None:
        return xp_column_names(with_correlations=with_correlations)
    unknown = [c for c in columns if c not in XP_BY_NAME]
    if unknown:
        raise ValueError(
            f"unknown XP continuous columns {unknown}; expected names among {[c.name for c in XP_COLUMNS]}"
        )
    wanted = set(columns) | {"source_id"}
    return [c.name for c in XP_COLUMNS if c.name in wanted]


def _band_cols(band: str) -> list[str]:
    return [c.name for c in XP_COLUMNS if c.name.startswith(f"{band}_")]


def iter_xp_continuous(
    source: str | os.PathLike[str],
    *,
    with_correlations: bool = False,
    columns: list[str] | None = None,
    batch_rows: int | None = None,
    storage_options: dict[str, Any] | None = None,
) -> Iterator[pa.RecordBatch]:
    """Stream an XP continuous file as Arrow record batches of at most `batch_rows` rows.

    Parameters
    ----------
    source : local path or fsspec URL (file://, memory://, s3://, gs://, http(s)://), any supported
        format, gzip-compressed or not (detected from the content).
    with_correlations : also read `bp/rp_coefficient_correlations` (list<float32>, n(n-1)/2 values,
        strict lower triangle row-major); skipped entirely otherwise (they are ~90% of a bulk file).
    columns : output columns (Gaia names); default all 26 (24 without correlations). `source_id`
        is always included; the order is Gaia's. `read_problem` is always appended.
    batch_rows : maximum rows per batch (default `DEFAULT_BATCH_ROWS`, or
        `DEFAULT_BATCH_ROWS_CORRELATIONS` with correlations); memory stays flat whatever the file size.
    storage_options : passed to fsspec.

    Yields
    ------
    RecordBatch with the schema `xp_schema(...)`: `source_id` int64, counts int16,
    `X_coefficients` list<float64>, `X_coefficient_errors` list<float32>, ..., `read_problem`; schema
    metadata `xpengine.source` and `xpengine.n_coefficients` (module docstring).

    Raises
    ------
    GaiaFileError : unknown format, empty file, truncated/corrupt gzip, missing required column
        (`source_id`, `X_coefficients`, `X_coefficient_errors`, and the correlations when asked),
        unreadable or null source_id, a binary column of an unusable type. Other unreadable values
        are row problems (`read_problem`), never errors.
    """
    out_cols = _output_columns(columns, with_correlations)
    want_corr = [c for c in out_cols if c.endswith("_coefficient_correlations")]
    if batch_rows is None:
        batch_rows = DEFAULT_BATCH_ROWS_CORRELATIONS if want_corr else DEFAULT_BATCH_ROWS
    if batch_rows < 1:
        raise ValueError(f"batch_rows must be >= 1, got {batch_rows}")
    schema = xp_schema(out_cols)
    reader = open_table_reader(source, storage_options)
    url = reader.src.url
    if sampled_layout(reader.columns) is not None:
        # a sampled spectrum (archive XP_SAMPLED, GaiaXPy calibrate): read into the same representation
        yield from iter_sampled_reader(
            reader,
            with_correlations=with_correlations,
            columns=columns,
            batch_rows=batch_rows,
            storage_options=storage_options,
        )
        return
    in_file = set(reader.columns)
    required = ["source_id"] + [f"{b}_{k}" for b in BANDS for k in ("coefficients", "coefficient_errors")]
    required += want_corr
    missing = [c for c in required if c not in in_file]
    if missing:
        reader.src.close()
        raise GaiaFileError(
            url,
            f"missing required column(s) {missing} for an XP continuous table "
            f"({reader.format_name}); columns present: {sorted(in_file)[:30]}",
            column=missing[0],
        )
    # Always read what validation needs: coefficients, errors and n_parameters of both bands.
    need = set(out_cols) | set(required) | {f"{b}_n_parameters" for b in BANDS}
    read_cols = [c.name for c in XP_COLUMNS if c.name in need and c.name in in_file]
    absent = [c for c in out_cols if c not in in_file]
    if absent:
        logger.debug("%s: columns absent from the file, returned as null: %s", url, absent)
    # Text files: every column but source_id arrives as text and is cast here, so that one unreadable
    # value costs its row a read problem instead of failing the whole file.
    types = {
        c: (
            pa.string()
            if XP_BY_NAME[c].is_array or (reader.text_arrays and c != "source_id")
            else XP_BY_NAME[c].type
        )
        for c in read_cols
    }

    counts: dict[str, set[int]] = {b: set() for b in BANDS}
    kwargs: dict[str, Any] = {}
    unread_corr = [
        c for c in reader.columns if c.endswith("_coefficient_correlations") and c not in read_cols
    ]
    if reader.text_arrays and unread_corr and in_file <= set(XP_BY_NAME):
        # Only numeric arrays are quoted in such a file: the correlation text can be cut out
        # before tokenizing (~90% of a bulk file's bytes).
        kwargs["skip_quoted"] = unread_corr
    tally = ReadProblemTally()
    batches = (
        _normalise(raw, row0, url, out_cols, schema)
        for row0, raw in reader.iter_batches(read_cols, types, batch_rows, **kwargs)
    )
    for out in rebatch(batches, batch_rows, schema, tally):
        yield _tag(out, url, counts)
    if tally.n_rows:
        logger.warning(
            "%s: %d row(s) with read problems, kept (unreadable values null, a corrupt band null); "
            "column %r says which, e.g. %s",
            url,
            tally.n_rows,
            READ_PROBLEM,
            " | ".join(tally.examples),
        )
    other = {b: sorted(c) for b, c in counts.items() if c and c != {DR3_N_COEFFICIENTS}}
    if other:
        logger.info("%s: coefficient counts %s differ from Gaia DR3's %d", url, other, DR3_N_COEFFICIENTS)


def coefficient_counts(table: pa.Table | pa.RecordBatch) -> dict[str, list[int]]:
    """Distinct numbers of coefficients per source of each band present (`{"bp": [55], "rp": [55]}`
    in Gaia DR3; 51 for BP in DR4); missing bands do not count. Bands without a column are left out."""
    out: dict[str, list[int]] = {}
    for band in BANDS:
        name = f"{band}_coefficients"
        if name in table.schema.names:
            lengths = pc.list_value_length(table.column(name))
            out[band] = sorted(int(v) for v in pc.unique(pc.drop_null(lengths)).to_pylist() if v)
    return out


def _tag(batch: pa.RecordBatch, url: str, seen: dict[str, set[int]]) -> pa.RecordBatch:
    """The batch with its file and coefficient counts in the schema metadata (module docstring)."""
    counts = coefficient_counts(batch)
    for band, values in counts.items():
        seen[band].update(values)
    meta = {META_SOURCE: url.encode(), META_N_COEFFICIENTS: json.dumps(counts).encode()}
    return batch.replace_schema_metadata(meta)


def read_xp_continuous(
    source: str | os.PathLike[str],
    *,
    with_correlations: bool = False,
    columns: list[str] | None = None,
    storage_options: dict[str, Any] | None = None,
) -> pa.Table:
    """Read a whole XP continuous file into one Arrow table (see `iter_xp_continuous`)."""
    out_cols = _output_columns(columns, with_correlations)
    batches = list(
        iter_xp_continuous(
            source,
            with_correlations=with_correlations,
            columns=columns,
            storage_options=storage_options,
        )
    )
    table = pa.Table.from_batches(batches, schema=xp_schema(out_cols))
    url = batches[0].schema.metadata[META_SOURCE] if batches else os.fspath(source).encode()
    meta = {META_SOURCE: url, META_N_COEFFICIENTS: json.dumps(coefficient_counts(table)).encode()}
    if batches and META_XP_INPUT in batches[0].schema.metadata:  # rows read from sampled spectra
        meta[META_XP_INPUT] = batches[0].schema.metadata[META_XP_INPUT]
    return table.replace_schema_metadata(meta)


def _check_lengths(
    name: str, lengths: np.ndarray, want: np.ndarray, active: np.ndarray, problems: dict[int, list[str]]
) -> np.ndarray:
    """(N,) bool: rows where an array's length (-1 = null) differs from the expected one (-1 = any)."""
    wrong = active & (lengths >= 0) & (want >= 0) & (lengths != want)
    for i in np.flatnonzero(wrong):
        problems.setdefault(int(i), []).append(
            f"{name}: expected {int(want[i])} values, got {int(lengths[i])}"
        )
    return wrong


def _null_where(arr: pa.Array, mask: np.ndarray) -> pa.Array:
    return pc.if_else(pa.array(mask), pa.scalar(None, arr.type), arr)


_BAND_NEEDS = (
    "coefficients",
    "coefficient_errors",
    "coefficient_correlations",
    "n_parameters",
    "n_relevant_bases",
)
"""Columns a band's tokens depend on: a value there that cannot be read makes the band null in that row.
A bad value in any other column (chi_squared, standard_deviation, ...) nulls that value only."""


def _corrupt_values(
    name: str, arr: pa.Array, active: np.ndarray, problems: dict[int, list[str]], *, errors: bool
) -> np.ndarray:
    """(N,) bool: active rows of a list column holding a NaN, ±inf, |value| > MAX_ABS_XP_COEFFICIENT
    or (errors=True) a negative value; each is reported with the first offending value and index."""
    n = len(arr)
    offsets = np.asarray(arr.offsets, dtype=np.int64)  # (N+1,) absolute positions in arr.values
    lo, hi = int(offsets[0]), int(offsets[-1])
    values = arr.values.slice(lo, hi - lo).to_numpy(zero_copy_only=False)  # (total,), null -> NaN
    row_of = np.repeat(np.arange(n), np.diff(offsets))  # (total,)
    with np.errstate(invalid="ignore"):
        bad_el = ~(np.abs(values) <= MAX_ABS_XP_COEFFICIENT)  # NaN and ±inf compare False
        if errors:
            bad_el |= values < 0
    bad_el &= active[row_of]
    bad = np.zeros(n, dtype=bool)
    if not bad_el.any():
        return bad
    bad[row_of[bad_el]] = True
    first_el = np.flatnonzero(bad_el)
    rows, first = np.unique(row_of[first_el], return_index=True)
    for i, k in zip(rows.tolist(), first_el[first].tolist(), strict=True):
        v = float(values[k])
        if not np.isfinite(v):
            why = "is not finite"
        elif v < 0 and errors:
            why = "is a negative error"
        else:
            why = f"is beyond ±{MAX_ABS_XP_COEFFICIENT:.0e} e-/s (no Gaia XP coefficient comes near)"
        problems.setdefault(i, []).append(f"{name}: value {v!r} at index {k - (offsets[i] - lo)} {why}")
    return bad


def _normalise(
    raw: pa.RecordBatch, row0: int, url: str, out_cols: list[str], schema: pa.Schema
) -> pa.RecordBatch:
    """Raw batch from a format reader -> Gaia dtypes, parsed arrays, band nulls, read_problem."""
    n = raw.num_rows
    names = raw.schema.names
    cols: dict[str, pa.Array] = {}
    problems: dict[int, list[str]] = {}
    unreadable: dict[str, np.ndarray] = {}  # column -> (N,) bool, rows whose value could not be read

    def report(name: str, bad: list[tuple[int, str]]) -> None:
        mask = np.zeros(n, dtype=bool)
        for i, msg in bad:
            problems.setdefault(i, []).append(f"{name}: {msg}")
            mask[i] = True
        unreadable[name] = mask

    for name in names:
        spec = XP_BY_NAME[name]
        arr = raw.column(name)
        text = pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)
        if spec.is_array:
            vtype = spec.type.value_type
            if text or pa.types.is_null(arr.type):
                arr, bad = parse_array_strings(arr, vtype)
                report(name, bad)
            else:
                try:
                    arr = to_list_array(arr, vtype)
                except (TypeError, pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                    raise GaiaFileError(
                        url,
                        f"array column has type {arr.type}, expected a list of numbers: {exc}",
                        column=name,
                    ) from exc
        elif text and name != "source_id":
            arr, bad = parse_scalar_strings(arr, spec.type)
            report(name, bad)
        elif arr.type != spec.type:
            try:
                arr = pc.cast(arr, spec.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise GaiaFileError(
                    url, f"values of type {arr.type} cannot be read as {spec.type}: {exc}", column=name
                ) from exc
        cols[name] = arr

    sid = cols["source_id"]
    if sid.null_count:
        first = int(np.flatnonzero(np.asarray(sid.is_null()))[0])
        raise GaiaFileError(url, "source_id is null", row=row0 + first + 1, column="source_id")

    for band in BANDS:
        coef = cols[f"{band}_coefficients"]
        errs = cols[f"{band}_coefficient_errors"]
        corr = cols.get(f"{band}_coefficient_correlations")
        npar = cols.get(f"{band}_n_parameters")
        n_coef = np.asarray(pc.fill_null(pc.list_value_length(coef), -1), dtype=np.int64)
        has_coef = n_coef >= 0
        # Rows where a value the band depends on could not be read (reported already).
        bad_band = np.zeros(n, dtype=bool)
        for key in _BAND_NEEDS:
            if f"{band}_{key}" in unreadable:
                bad_band |= unreadable[f"{band}_{key}"]
        if npar is not None:
            expected = np.asarray(pc.fill_null(pc.cast(npar, pa.int64()), -1), dtype=np.int64)
            expected = np.where(expected >= 0, expected, n_coef)  # no n_parameters: trust the data
        else:
            expected = n_coef
        bad_band |= _check_lengths(f"{band}_coefficients", n_coef, expected, has_coef, problems)
        n_err = np.asarray(pc.fill_null(pc.list_value_length(errs), -1), dtype=np.int64)
        no_err = has_coef & (n_err < 0) & ~bad_band
        for i in np.flatnonzero(no_err):
            problems.setdefault(int(i), []).append(
                f"{band}_coefficient_errors: missing while {band}_coefficients has values"
            )
        bad_band |= no_err
        bad_band |= _check_lengths(f"{band}_coefficient_errors", n_err, expected, has_coef, problems)
        if corr is not None:
            n_corr = np.asarray(pc.fill_null(pc.list_value_length(corr), -1), dtype=np.int64)
            want = expected * (expected - 1) // 2
            bad_band |= _check_lengths(f"{band}_coefficient_correlations", n_corr, want, has_coef, problems)
        # NaN, ±inf or absurd values: the band cannot be used for this row (see MAX_ABS_XP_COEFFICIENT).
        bad_band |= _corrupt_values(
            f"{band}_coefficients", coef, has_coef & ~bad_band, problems, errors=False
        )
        bad_band |= _corrupt_values(
            f"{band}_coefficient_errors", errs, has_coef & ~bad_band, problems, errors=True
        )
        missing = ~has_coef | bad_band
        if missing.any():
            for name in _band_cols(band):
                if name in cols:
                    cols[name] = _null_where(cols[name], missing)

    arrays: list[pa.Array] = []
    for name in out_cols:
        if name in cols:
            arrays.append(cols[name])
        else:
            arrays.append(pa.nulls(n, XP_BY_NAME[name].type))
    if problems:
        texts = np.full(n, None, dtype=object)
        for i, msgs in problems.items():
            texts[i] = "; ".join(msgs) + f" (data row {row0 + i + 1})"
        arrays.append(pa.array(texts, type=pa.string()))
    else:
        arrays.append(pa.nulls(n, pa.string()))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def list_column_to_numpy(
    column: pa.Array | pa.ChunkedArray, width: int | None = None, dtype: type = np.float64
) -> np.ndarray:
    """List column (N rows) -> (N, width) array; null rows and short rows are NaN-padded.

    `width` defaults to the longest list. Zero-copy is not possible for list columns with nulls;
    this does one vectorised copy.
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    if pa.types.is_fixed_size_list(column.type) or pa.types.is_large_list(column.type):
        column = pc.cast(column, pa.list_(column.type.value_type))
    n = len(column)
    lengths = np.asarray(pc.fill_null(pc.list_value_length(column), 0), dtype=np.int64)
    width = int(lengths.max(initial=0)) if width is None else int(width)
    offsets = np.asarray(column.offsets, dtype=np.int64)  # (N+1,) absolute positions in .values
    values = column.values.to_numpy(zero_copy_only=False)
    if n and column.null_count == 0 and np.all(lengths == width):
        flat = values[offsets[0] : offsets[-1]]
        return flat.reshape(n, width).astype(dtype, copy=False)
    out = np.full((n, width), np.nan, dtype=dtype)
    if n == 0 or width == 0:
        return out
    rows = np.repeat(np.arange(n), lengths)  # (total,)
    pos = np.arange(rows.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    keep = pos < width
    src = np.repeat(offsets[:-1], lengths) + pos
    out[rows[keep], pos[keep]] = values[src[keep]]
    return out


def covariance_from_correlations(errors: np.ndarray, correlations: np.ndarray) -> np.ndarray:
    """Covariance matrices of XP coefficients from their errors and correlations.

    C = diag(e) R diag(e), where R has ones on the diagonal and the correlations on the strict lower
    triangle, row-major: (1,0), (2,0), (2,1), (3,0), ... (Gaia DR3 documentation, section 5.3 of the
    XP chapter; `coefficient_errors` are already scaled by `standard_deviation`), mirrored to the
    upper triangle.

    Parameters
    ----------
    errors : (N, n) coefficient errors (e.g. e-/s).
    correlations : (N, n(n-1)/2) correlation coefficients.

    Returns
    -------
    (N, n, n) float64 covariance matrices (units of errors squared); NaN rows stay NaN.
    """
    e = np.asarray(errors, dtype=np.float64)
    c = np.asarray(correlations, dtype=np.float64)
    if e.ndim != 2:
        raise ValueError(f"errors must be 2-D (N, n), got shape {e.shape}")
    n_src, n = e.shape
    want = (n_src, n * (n - 1) // 2)
    if c.shape != want:
        raise ValueError(f"correlations must have shape {want} for errors {e.shape}, got {c.shape}")
    i, j = np.tril_indices(n, -1)
    r = np.empty((n_src, n, n), dtype=np.float64)  # (N, n, n)
    r[:, i, j] = c
    r[:, j, i] = c
    diag = np.arange(n)
    r[:, diag, diag] = 1.0
    r *= e[:, :, None]
    r *= e[:, None, :]
    return r


@dataclass
class ReadProblemTally:
    """Rows with a `read_problem` note seen by :func:`rebatch`, and up to three of the notes."""

    n_rows: int = 0
    examples: list[str] = field(default_factory=list)


def rebatch(
    batches: Iterable[pa.RecordBatch], batch_rows: int, schema: pa.Schema, tally: ReadProblemTally
) -> Iterator[pa.RecordBatch]:
    """Record batches of exactly `batch_rows` rows (the last one shorter) from `batches`, counting their
    `read_problem` notes in `tally` on the way."""
    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    for batch in batches:
        texts = batch.column(READ_PROBLEM)
        tally.n_rows += batch.num_rows - texts.null_count
        if len(tally.examples) < 3 and texts.null_count < batch.num_rows:
            tally.examples += pc.drop_null(texts).slice(0, 3 - len(tally.examples)).to_pylist()
        pending.append(batch)
        pending_rows += batch.num_rows
        while pending_rows >= batch_rows:
            merged = pa.Table.from_batches(pending, schema=schema).combine_chunks()
            head, rest = merged.slice(0, batch_rows), merged.slice(batch_rows)
            yield from head.to_batches()
            pending = rest.to_batches()
            pending_rows = rest.num_rows
    if pending_rows:
        yield from pa.Table.from_batches(pending, schema=schema).combine_chunks().to_batches()
