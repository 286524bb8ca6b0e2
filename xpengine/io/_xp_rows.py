"""One raw batch of an XP continuous file into the Gaia table: dtypes, parsed arrays, band nulls and
`read_problem` notes (the rules in `xpengine.io.xp_continuous`'s docstring), and the batching and
tallying that the continuous and the sampled readers share."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from xpengine.io._arrays import (
    cast_scalar_column,
    id_strings,
    parse_array_strings,
    parse_scalar_strings,
    source_id_array,
    to_list_array,
)
from xpengine.io.errors import GaiaFileError
from xpengine.io.schema import (
    BANDS,
    MAX_ABS_XP_COEFFICIENT,
    READ_PROBLEM,
    XP_BY_NAME,
    XP_COLUMNS,
    xp_column_names,
)

__all__ = [
    "ReadProblemTally",
    "band_columns",
    "coefficient_counts",
    "normalise_batch",
    "output_columns",
    "rebatch",
]


def output_columns(columns: list[str] | None, with_correlations: bool) -> list[str]:
    if columns is None:
        return xp_column_names(with_correlations=with_correlations)
    unknown = [c for c in columns if c not in XP_BY_NAME]
    if unknown:
        raise ValueError(
            f"unknown XP continuous columns {unknown}; expected names among {[c.name for c in XP_COLUMNS]}"
        )
    wanted = set(columns) | {"source_id"}
    return [c.name for c in XP_COLUMNS if c.name in wanted]


def band_columns(band: str) -> list[str]:
    return [c.name for c in XP_COLUMNS if c.name.startswith(f"{band}_")]


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


def _relevant_out_of_range(cols: dict[str, pa.Array], band: str) -> list[tuple[int, str]]:
    """(row index, problem text) of the rows whose `X_n_relevant_bases` lies outside 0..n, n the band's
    `X_n_parameters` (its coefficient count where that is null).

    Such a count cannot be a number of relevant bases; left in, it would break the relevancy mask of
    `build_tokens` for a whole batch (a negative count) or claim bases the band does not have. It is an
    unreadable value of a field the band depends on (`_BAND_NEEDS`), reported the same way.
    """
    nrel = cols.get(f"{band}_n_relevant_bases")
    if nrel is None or nrel.null_count == len(nrel):
        return []
    counts = np.asarray(pc.fill_null(pc.cast(nrel, pa.int64()), 0), dtype=np.int64)  # (N,)
    limit = np.full(len(nrel), -1, dtype=np.int64)  # (N,) -1 = no limit known
    coef = cols.get(f"{band}_coefficients")
    if coef is not None:
        limit = np.asarray(pc.fill_null(pc.list_value_length(coef), -1), dtype=np.int64)
    npar = cols.get(f"{band}_n_parameters")
    if npar is not None:
        declared = np.asarray(pc.fill_null(pc.cast(npar, pa.int64()), -1), dtype=np.int64)
        limit = np.where(declared >= 0, declared, limit)
    wrong = (counts < 0) | ((limit >= 0) & (counts > limit))
    out = []
    for i in np.flatnonzero(wrong):
        bound = f"0..{int(limit[i])}" if limit[i] >= 0 else "0 or more"
        out.append((int(i), f"{int(counts[i])} is out of range (expected {bound} relevant bases)"))
    return out


def _one_side_missing(
    band: str,
    has_coef: np.ndarray,
    n_err: np.ndarray,
    npar: pa.Array | None,
    bad_band: np.ndarray,
    problems: dict[int, list[str]],
) -> np.ndarray:
    """(N,) bool: rows whose coefficients have no errors, or whose coefficients are missing while the
    errors or `X_n_parameters` > 0 say the band was fitted (a blanked cell: corruption, not a source
    without the band, which has neither coefficients, errors nor n_parameters); each reported."""
    no_err = has_coef & (n_err < 0) & ~bad_band
    for i in np.flatnonzero(no_err):
        problems.setdefault(int(i), []).append(
            f"{band}_coefficient_errors: missing while {band}_coefficients has values"
        )
    said = n_err >= 0
    if npar is not None:
        said |= np.asarray(pc.fill_null(pc.cast(npar, pa.int64()), 0), dtype=np.int64) > 0
    no_coef = ~has_coef & said & ~bad_band
    for i in np.flatnonzero(no_coef):
        what = f"{band}_coefficient_errors has values" if n_err[i] >= 0 else f"{band}_n_parameters > 0"
        problems.setdefault(int(i), []).append(f"{band}_coefficients: missing while {what}")
    return no_err | no_coef


def normalise_batch(
    raw: pa.RecordBatch, row0: int, url: str, out_cols: list[str], schema: pa.Schema
) -> pa.RecordBatch:
    """Raw batch from a format reader -> Gaia dtypes, parsed arrays, band nulls, read_problem."""
    n = raw.num_rows
    names = raw.schema.names
    cols: dict[str, pa.Array] = {}
    problems: dict[int, list[str]] = {}
    unreadable: dict[str, np.ndarray] = {}  # column -> (N,) bool, rows whose value could not be read

    def report(name: str, bad: list[tuple[int, str]]) -> None:
        mask = unreadable.setdefault(name, np.zeros(n, dtype=bool))
        for i, msg in bad:
            problems.setdefault(i, []).append(f"{name}: {msg}")
            mask[i] = True

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
        elif name == "source_id" or (name == "solution_id" and not text):
            # integers only: a float64 id has lost its last digits (SOURCE_ID_RULE)
            arr = source_id_array(arr, url, name, row0)
        elif name == "solution_id":  # float text refused as above; `abc` costs the value only
            arr, bad = id_strings(arr, url, name, row0)
            report(name, bad)
        elif text:
            arr, bad = parse_scalar_strings(arr, spec.type)
            report(name, bad)
        elif arr.type != spec.type:
            arr, bad = cast_scalar_column(arr, spec.type, url, name)
            report(name, bad)
        cols[name] = arr
    for band in BANDS:
        report(f"{band}_n_relevant_bases", _relevant_out_of_range(cols, band))

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
        bad_band |= _one_side_missing(band, has_coef, n_err, npar, bad_band, problems)
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
            for name in band_columns(band):
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
