"""The two layouts of sampled XP files (one row per source with flux arrays; one row per wavelength)
read into blocks of (S, n_wl) spectra before the projection; part of :mod:`xpengine.io.xp_sampled`."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from xpengine.io._arrays import (
    SOURCE_ID_RULE,
    list_column_to_numpy,
    parse_array_strings,
    parse_scalar_strings,
    source_id_array,
    to_list_array,
)
from xpengine.io._sampled_units import GRID_TOLERANCE_NM, SAMPLED_COLUMNS, _wavelength_factor
from xpengine.io.errors import GaiaFileError

logger = logging.getLogger("xpengine.io.xp_sampled")

_SOURCE_ID_KEYS = ("source_id", "sourceid")
_SOLUTION_ID_KEYS = ("solution_id", "solution")


@dataclass
class _Block:
    """Sources read from one stretch of the input, before the projection."""

    source_id: np.ndarray  # (S,) int64
    solution_id: np.ndarray  # (S,) int64
    solution_known: np.ndarray  # (S,) bool
    flux: np.ndarray  # (S, n_wl) float64, NaN = no value
    error: np.ndarray  # (S, n_wl) float64
    where: list[str]  # (S,) e.g. "data row 3" or "source_id 59..., data rows 1-343"
    absent: np.ndarray | None = None  # (S, n_wl) bool: no row at that wavelength (long layout)
    problems: dict[int, list[str]] = field(default_factory=dict)
    dead: np.ndarray | None = None  # (S,) bool: XP unusable whatever the pixels say

    def __post_init__(self) -> None:
        if self.dead is None:
            self.dead = np.zeros(len(self.source_id), dtype=bool)

    def problem(self, i: int, text: str) -> None:
        self.problems.setdefault(int(i), []).append(text)
        self.dead[i] = True


# --------------------------------------------------------------------------------------------------
# the two layouts -> blocks of (S, n_wl) spectra


def _int64_column(
    arr: pa.Array, name: str, url: str, row0: int, *, required: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(values, known) of an integer id column (`source_id`, `solution_id`: integers or integer text).

    Both ids are large int64 values that float64 cannot hold exactly, so floating point or non-integer
    text (`3.7531665386648756e+17`) is a file error naming the file, row and column (`source_id_array`,
    `SOURCE_ID_RULE`); a null is a file error only for a `required` id (an unknown `solution_id` is
    allowed)."""
    arr = source_id_array(arr, url, name, row0)
    known = np.asarray(arr.is_valid(), dtype=bool)
    if required and not known.all():
        first = int(np.flatnonzero(~known)[0])
        raise GaiaFileError(url, f"{name} is null or unreadable", row=row0 + first + 1, column=name)
    return np.asarray(pc.fill_null(arr, 0), dtype=np.int64), known


_INTEGER_TEXT = re.compile(r"[+-]?\d+")


def _exact_id(value: Any) -> int | None:
    """`value` as an int when it is an integer or integer text; None for anything else (floats included:
    a float id has lost digits, `SOURCE_ID_RULE`)."""
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if isinstance(value, str) and _INTEGER_TEXT.fullmatch(value.strip()):
        return int(value.strip())
    return None


def _meta_id(meta: Mapping[str, Any], keys: tuple[str, ...], url: str) -> int | None:
    """The id under the first of `keys` in the file metadata (ECSV meta, FITS header, VOTable PARAM);
    None when absent, null or blank. A value that is not an integer (e.g. a float
    `3.7531665386648756e+17`) is a GaiaFileError naming the file and the key."""
    low = {str(k).lower(): v for k, v in meta.items()}
    for k in keys:
        value = low.get(k)
        if value is None or value is np.ma.masked or (isinstance(value, str) and not value.strip()):
            continue
        got = _exact_id(value)
        if got is None:
            raise GaiaFileError(
                url, f"file metadata {k} = {value!r} is not an integer; {SOURCE_ID_RULE}", column=k
            )
        return got
    return None


def _array_blocks(reader: Any, grid: np.ndarray, batch_rows: int, url: str) -> Iterator[_Block]:
    if "source_id" not in reader.columns:
        raise GaiaFileError(
            url,
            f"missing required column 'source_id' for a sampled XP table with flux arrays; columns "
            f"present: {sorted(reader.columns)[:30]}",
            column="source_id",
        )
    n_wl = grid.size
    read_cols = [c for c in ("source_id", "solution_id", "flux", "flux_error") if c in reader.columns]
    types = {c: pa.string() for c in ("flux", "flux_error")} if reader.text_arrays else {}
    if reader.text_arrays and "solution_id" in read_cols:
        types["solution_id"] = pa.string()
    if reader.text_arrays:
        types["source_id"] = pa.int64()
    for row0, raw in reader.iter_batches(read_cols, types, batch_rows):
        n = raw.num_rows
        sid, _ = _int64_column(raw.column("source_id"), "source_id", url, row0, required=True)
        if "solution_id" in raw.schema.names:
            sol, sol_known = _int64_column(
                raw.column("solution_id"), "solution_id", url, row0, required=False
            )
        else:
            sol, sol_known = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=bool)
        mats: dict[str, np.ndarray] = {}
        issues: list[tuple[int, str]] = []
        for name in SAMPLED_COLUMNS:
            arr = raw.column(name)
            if isinstance(arr, pa.ChunkedArray):
                arr = arr.combine_chunks()
            if (
                pa.types.is_string(arr.type)
                or pa.types.is_large_string(arr.type)
                or pa.types.is_null(arr.type)
            ):
                arr, bad = parse_array_strings(arr, pa.float64())
                issues += [(i, f"{name}: {msg}") for i, msg in bad]
            else:
                try:
                    arr = to_list_array(arr, pa.float64())
                except (TypeError, pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                    raise GaiaFileError(
                        url,
                        f"column has type {arr.type}, expected arrays of {n_wl} numbers: {exc}",
                        column=name,
                    ) from exc
            lengths = np.asarray(pc.fill_null(pc.list_value_length(arr), -1), dtype=np.int64)
            for i in np.flatnonzero((lengths >= 0) & (lengths != n_wl)):
                issues.append(
                    (
                        int(i),
                        f"{name}: expected {n_wl} values ({grid[0]:g}–{grid[-1]:g} nm every "
                        f"{grid[1] - grid[0]:g} nm), got {int(lengths[i])}: another wavelength grid?",
                    )
                )
            mats[name] = list_column_to_numpy(arr, width=n_wl)  # (n, n_wl), null rows NaN
        block = _Block(
            source_id=sid,
            solution_id=sol,
            solution_known=sol_known,
            flux=mats["flux"],
            error=mats["flux_error"],
            where=[f"data row {row0 + i + 1}" for i in range(n)],
        )
        for i, text in issues:
            block.problem(i, text)
        yield block


def _long_blocks(
    reader: Any, grid: np.ndarray, batch_rows: int, url: str, source_id: int | None
) -> Iterator[_Block]:
    """Blocks of whole sources from a one-row-per-wavelength table (a source's rows contiguous)."""
    meta = getattr(reader, "table_meta", {})
    has_sid = "source_id" in reader.columns
    fixed_sid = None
    if not has_sid:
        if source_id is not None and _exact_id(source_id) is None:
            raise ValueError(f"source_id={source_id!r} is not an integer; {SOURCE_ID_RULE}")
        fixed_sid = _exact_id(source_id) if source_id is not None else _meta_id(meta, _SOURCE_ID_KEYS, url)
        if fixed_sid is None:
            raise GaiaFileError(
                url,
                "a sampled spectrum with one row per wavelength needs its source: no source_id column and "
                "no source_id in the file metadata (ECSV meta, FITS SOURCEID, VOTable PARAM); pass "
                "source_id=",
                column="source_id",
            )
    fixed_sol = None if "solution_id" in reader.columns else _meta_id(meta, _SOLUTION_ID_KEYS, url)
    wl_factor = _wavelength_factor(reader, url)
    read_cols = [
        c for c in ("source_id", "solution_id", "wavelength", "flux", "flux_error") if c in reader.columns
    ]
    types: dict[str, pa.DataType] = {}
    if reader.text_arrays:
        types = {c: pa.string() for c in read_cols if c != "source_id"}
        types["source_id"] = pa.int64()
    carry: dict[str, np.ndarray] | None = None
    done: set[int] = set()  # sources whose rows have ended
    for row0, raw in reader.iter_batches(read_cols, types, batch_rows * grid.size):
        n = raw.num_rows
        if n == 0:
            continue
        if has_sid:
            sid, _ = _int64_column(raw.column("source_id"), "source_id", url, row0, required=True)
        else:
            sid = np.full(n, fixed_sid, dtype=np.int64)
        if "solution_id" in raw.schema.names:
            sol, sol_known = _int64_column(
                raw.column("solution_id"), "solution_id", url, row0, required=False
            )
        else:
            sol = np.full(n, 0 if fixed_sol is None else fixed_sol, dtype=np.int64)
            sol_known = np.full(n, fixed_sol is not None)
        part: dict[str, np.ndarray] = {
            "sid": sid,
            "sol": sol,
            "sol_known": sol_known,
            "row": np.arange(row0 + 1, row0 + n + 1, dtype=np.int64),
        }
        bad_text = np.full(n, None, dtype=object)
        for name in ("wavelength", "flux", "flux_error"):
            arr = raw.column(name)
            if isinstance(arr, pa.ChunkedArray):
                arr = arr.combine_chunks()
            if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
                arr, bad = parse_scalar_strings(arr, pa.float64())
                for i, msg in bad:
                    bad_text[i] = f"{name}: {msg}" if bad_text[i] is None else f"{bad_text[i]}; {name}: {msg}"
            values = np.asarray(pc.fill_null(pc.cast(arr, pa.float64()), np.nan), dtype=np.float64)
            part[name] = values * wl_factor if name == "wavelength" else values
        part["bad"] = bad_text
        if carry is not None:
            part = {k: np.concatenate([carry[k], part[k]]) for k in part}
        _check_contiguous(part["sid"], part["row"], done, url)
        # keep the last source back: its rows may go on in the next batch
        last = part["sid"][-1]
        other = np.flatnonzero(part["sid"] != last)
        cut = int(other[-1]) + 1 if other.size else 0
        carry = {k: v[cut:] for k, v in part.items()}
        if cut:
            done.update(np.unique(part["sid"][:cut]).tolist())
            yield _pivot({k: v[:cut] for k, v in part.items()}, grid)
    if carry is not None and carry["sid"].size:
        yield _pivot(carry, grid)


def _check_contiguous(sid: np.ndarray, rows: np.ndarray, done: set[int], url: str) -> None:
    """GaiaFileError where a source's rows do not form one run: it reappears after other sources (a
    table sorted by wavelength, or a source written twice), within these rows or after an earlier batch."""
    start = np.flatnonzero(np.r_[True, sid[1:] != sid[:-1]])  # first row of each run
    seen: set[int] = set()  # this block's sources (`done`: the earlier blocks', not copied)
    for k, s_id in zip(start.tolist(), sid[start].tolist(), strict=True):
        if s_id in seen or s_id in done:
            raise GaiaFileError(
                url,
                f"the rows of source_id {s_id} are not contiguous: they start again after another source's; "
                "a sampled spectrum with one row per wavelength needs each source's rows together (sort the "
                "table by source_id, then wavelength)",
                row=int(rows[k]),
                column="source_id",
            )
        seen.add(s_id)


def _pivot(part: dict[str, np.ndarray], grid: np.ndarray) -> _Block:
    """Rows of whole sources (one per wavelength) -> one (n_wl,) spectrum per source, in order of
    first appearance, with the grid checked."""
    sid = part["sid"]
    uniq, first, inverse = np.unique(sid, return_index=True, return_inverse=True)
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    gid = rank[inverse]  # (M,) source index of each row, by first appearance
    s = uniq.size
    n_wl = grid.size
    wl = part["wavelength"]
    j = np.clip(np.searchsorted(grid, wl), 1, n_wl - 1)
    j = np.where(np.abs(grid[j - 1] - wl) <= np.abs(grid[j] - wl), j - 1, j)  # nearest grid point
    with np.errstate(invalid="ignore"):
        on = np.abs(grid[j] - wl) <= GRID_TOLERANCE_NM  # NaN wavelength: off
    flux = np.full((s, n_wl), np.nan)
    error = np.full((s, n_wl), np.nan)
    count = np.zeros((s, n_wl), dtype=np.int64)
    np.add.at(count, (gid[on], j[on]), 1)
    flux[gid[on], j[on]] = part["flux"][on]
    error[gid[on], j[on]] = part["flux_error"][on]
    rows = part["row"]
    row_lo = np.full(s, np.iinfo(np.int64).max)
    row_hi = np.zeros(s, dtype=np.int64)
    np.minimum.at(row_lo, gid, rows)
    np.maximum.at(row_hi, gid, rows)
    src_first = first[order]  # (S,) first row index of each source
    block = _Block(
        source_id=uniq[order],
        solution_id=part["sol"][src_first],
        solution_known=part["sol_known"][src_first].astype(bool),
        flux=flux,
        error=error,
        where=[
            f"source_id {int(uniq[order][g])}, data rows {int(row_lo[g])}-{int(row_hi[g])}" for g in range(s)
        ],
        absent=count == 0,
    )
    for k in np.flatnonzero([b is not None for b in part["bad"]]):
        block.problem(int(gid[k]), f"{part['bad'][k]} (data row {int(rows[k])})")
    off = np.flatnonzero(~on)
    if off.size:
        g_off, first_off = np.unique(gid[off], return_index=True)
        for g, k in zip(g_off.tolist(), off[first_off].tolist(), strict=True):
            n_off = int(np.sum(gid[off] == g))
            block.problem(
                g,
                f"wavelength: {float(wl[k])!r} nm (data row {int(rows[k])}) is not on the grid of the engine's XP "
                f"representation, {grid[0]:g}–{grid[-1]:g} nm every {grid[1] - grid[0]:g} nm ({n_off} "
                "row(s) off it): sampled on another grid? recompute with GaiaXPy's default sampling",
            )
    dup_g, dup_j = np.nonzero(count > 1)
    if dup_g.size:
        g_dup, first_dup = np.unique(dup_g, return_index=True)
        for g, jj in zip(g_dup.tolist(), dup_j[first_dup].tolist(), strict=True):
            block.problem(g, f"wavelength: {grid[jj]:g} nm appears {int(count[g, jj])} times")
    return block
