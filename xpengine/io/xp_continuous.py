"""Reader for Gaia DR3 XP continuous mean spectra (`gaiadr3.xp_continuous_mean_spectrum`).

One entry point for every format (bulk `XpContinuousMeanSpectrum_*.csv.gz`, archive CSV / ECSV /
FITS / VOTable, Parquet); see `xpengine.io.formats`. A file of SAMPLED spectra (columns `flux`, `flux_error`:
archive `XP_SAMPLED`, bulk `XpSampledMeanSpectrum`, GaiaXPy `calibrate` output) is recognised by its
columns and read by `xpengine.io.xp_sampled` into the same table (projected coefficients, schema
metadata `xpengine.xp_input`). The output always has the Gaia column names and
dtypes of REFERENCE §1, in Gaia order, followed by a `read_problem` string column.

Missing data: a band that is missing (e.g. source 5405570973190252288 has no BP) is null in every one
of its columns. A band whose coefficients are missing while its errors or `X_n_parameters` > 0 say it was
fitted (a blanked cell) is corrupt, not missing, and read as below. A row whose array is malformed or has the wrong length, or whose coefficients or
coefficient errors hold a NaN, ±inf, negative error or a value beyond `MAX_ABS_XP_COEFFICIENT`, is kept:
that band becomes null and `read_problem` says what went wrong, in which column and data row (the file
is named in the warning logged once per file). A value of another column that cannot be read (e.g.
`bp_chi_squared` = `abc`) becomes null and is reported the same way, the band untouched, unless the
band depends on it (`X_n_parameters`, `X_n_relevant_bases`: the band becomes null); so does an
`X_n_relevant_bases` outside 0..`X_n_parameters`. Integer columns written as floats (`55.0`, as pandas
writes an int column holding a NaN) are read when the value is a whole number. The ids are not:
`source_id` and `solution_id` written as floats have lost digits and fail the file (`SOURCE_ID_RULE`).

Coefficient counts: every yielded batch (and `read_xp_continuous`'s table) carries schema metadata
`xpengine.source` (the file) and `xpengine.n_coefficients` (JSON, e.g. `{"bp": [55], "rp": [55]}`: the
distinct coefficient counts of each band, 55 in Gaia DR3, 51 for BP in DR4), so that a model trained
on another release can refuse the data (`xpengine.features.build_tokens`).

Other columns: a file may hold gaia_source columns beside the XP (G, parallax, ...: an ADQL join of the
two tables). The batches hold the XP columns only; `read_xp_continuous(..., with_gaia_source=True)` joins
those columns and the file's 2MASS / E(B−V) columns (`io.read_embedded_columns`), and without it warns
that it left them out. The job and `xpengine features` use them for each side table not given otherwise.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from xpengine.io._arrays import list_column_to_numpy  # re-exported: it lived here
from xpengine.io._xp_rows import (  # coefficient_counts is re-exported: it lived here
    ReadProblemTally,
    coefficient_counts,
    normalise_batch,
    output_columns,
    rebatch,
)
from xpengine.io.errors import GaiaFileError, case_hint
from xpengine.io.formats import open_table_reader
from xpengine.io.schema import (
    BANDS,
    DR3_N_COEFFICIENTS,
    META_N_COEFFICIENTS,
    META_SOURCE,
    META_XP_INPUT,
    READ_PROBLEM,
    XP_BY_NAME,
    XP_COLUMNS,
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
    out_cols = output_columns(columns, with_correlations)
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
            f"({reader.format_name}){case_hint(missing, in_file) or f'; columns present: {sorted(in_file)[:30]}'}",
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
        normalise_batch(raw, row0, url, out_cols, schema)
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
    with_gaia_source: bool | Sequence[str] = False,
) -> pa.Table:
    """Read a whole XP continuous file into one Arrow table (see `iter_xp_continuous`).

    with_gaia_source : also return the gaia_source, 2MASS and E(B−V) columns the file holds beside its
        XP (G, parallax, J/H/Ks, ...: an ADQL join; `io.read_embedded_columns`), after the XP columns,
        with their read problems in `read_problem`; `Predictor.from_xp` uses them. Without it such
        columns are left out, with a warning naming them. A list of names: those of them only (no warning).
    """
    out_cols = output_columns(columns, with_correlations)
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
    table = table.replace_schema_metadata(meta)
    from xpengine.io.embedded import with_own_columns

    return with_own_columns(table, source, with_gaia_source, "read_xp_continuous", storage_options)


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
