"""Reader for Gaia DR3 XP SAMPLED mean spectra, straight into the engine's XP representation.

Why: the engine's XP representation is defined on the sampled flux (`xpengine.spectra.representation`):
for a spectrum f on GaiaXPy's default grid, c' = f X gives the projected coefficients (bp0..54, rp0..54)
that archive coefficients give through c' = c P. Users often hold sampled spectra only, so they are read
into the same table as continuous coefficients and predicted on the same way.

Inputs (Gaia DR3 data model `xp_sampled_mean_spectrum`; GaiaXPy `calibrate`):

- long layout, one row per wavelength: the archive's DataLink `XP_SAMPLED` product. Its CSV has the columns
  source_id, solution_id, ra, dec, wavelength, flux, flux_error; its ECSV, FITS and VOTable variants hold
  only wavelength, flux, flux_error and give source_id and solution_id in the file metadata (ECSV `meta`,
  FITS header `SOURCEID` / `SOLUTION`, VOTable PARAMs). Several sources may follow one another; the rows of
  one source must be contiguous (as the archive writes them).
- array layout, one row per source with array columns `flux` and `flux_error` (343 values): the archive's
  bulk `XpSampledMeanSpectrum_*.csv.gz` and DataLink RAW files, and GaiaXPy `calibrate` output (CSV with
  its grid in a `<name>_sampling.csv` file beside it; ECSV, FITS, VOTable with the grid in the file
  metadata `sampling`), as a file or in memory (pandas DataFrame, astropy Table, pyarrow Table, dict).

Every format of `xpengine.io.formats` (CSV, ECSV, FITS, VOTable, Parquet, gzip or not) is read.
`iter_xp_continuous` / `read_xp_continuous` (so the catalogue job and `xpengine infer`) route a file
with these columns here.

Output: the table of `read_xp_continuous` (`xp_schema`: Gaia names and dtypes, `read_problem` last), with
`X_coefficients` = c' (`coefficients_from_sampled`), `X_coefficient_errors` from
`sampled_coefficient_errors`, `X_n_parameters` = 55 where the band is present, `source_id` and
`solution_id` from the file, and null everywhere else: correlations, `X_n_relevant_bases` (a sampled
spectrum does not say which coefficients are relevant, so no relevancy truncation applies downstream),
chi², .... Schema metadata: `xpengine.source`, `xpengine.n_coefficients` and `xpengine.xp_input`
(`META_XP_INPUT`, JSON `{"kind": "sampled", ...}`), which marks the rows as coming from sampled spectra.
CAVEAT: the errors are conservative upper bounds (pixel errors taken as independent; for
5937083312263887616 a median 221 times the errors of the same projection of the archive coefficients).
The model does not read input errors, so predictions do not depend on them.

The projection P is idempotent, so c' passes unchanged through the token path, which projects every
input with P (`token_representation`): sampled and continuous inputs meet in the same representation.

Units: flux and flux_error in W m⁻² nm⁻¹, which the archive writes `W.m**-2.nm**-1` and GaiaXPy
`calibrate` `W.nm**-1.m**-2` (the same unit). A declared unit is converted to it (any spectral flux
density, e.g. erg s⁻¹ cm⁻² Å⁻¹ or Jy); a unit that is none (GaiaXPy `convert` output, in e⁻/s on
pseudo-wavelengths) is a `GaiaFileError` naming the column. An undeclared unit is taken as W m⁻² nm⁻¹,
and a row with |flux| above `MAX_ABS_SAMPLED_FLUX` is a row problem (probably another unit).
Values are rounded to float32, the archive's storage type, so that the text and binary copies of one
archive file give identical tables.

Grid: the representation's, GaiaXPy's default 336–1020 nm every 2 nm (343 pixels). A file (or the
`sampling` argument) that declares another grid, e.g. GaiaXPy `calibrate(sampling=...)` output, is a
`GaiaFileError` naming the file and column: none of its rows can be read. Without a declared grid, an
array of another length is a row problem. In the long layout the wavelengths of each source are checked:
a source with a wavelength off the grid or a repeated one is a row problem; missing wavelengths count
as NaN pixels.

Missing data (the rule of `coefficients_from_sampled`): a band whose pixels (those where it alone
contributes: BP 336–634 nm, RP 644–1020 nm) are all NaN is missing: its columns are null, the other band
is read with its single-band construction (GaiaXPy writes NaN at 336–634 nm for a source without BP), no
read problem. A null or all-NaN spectrum is a source without XP. Any other NaN pattern (a few bad pixels),
a value that cannot be read, a flux_error missing where the flux has a value or negative, keeps the row
with its XP null and `read_problem` saying what, in which column, at which wavelength and data row(s),
exactly as the continuous reader reports its bad cells. Nothing is dropped: every source of the input
comes out once.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from xpengine.io._arrays import lists_from_objects, parse_array_strings, parse_scalar_strings, to_list_array
from xpengine.io.errors import GaiaFileError
from xpengine.io.schema import (
    BANDS,
    META_N_COEFFICIENTS,
    META_SOURCE,
    META_XP_INPUT,
    READ_PROBLEM,
    XP_BY_NAME,
    xp_schema,
)

__all__ = [
    "FLUX_UNIT",
    "MAX_ABS_SAMPLED_FLUX",
    "SAMPLED_COLUMNS",
    "iter_sampled_reader",
    "iter_xp_sampled",
    "read_xp_sampled",
    "sampled_layout",
]

logger = logging.getLogger(__name__)

FLUX_UNIT = "W m-2 nm-1"
"""Unit of the sampled flux and its error, as the representation expects it."""
SAMPLED_COLUMNS: tuple[str, str] = ("flux", "flux_error")
"""Columns that make a table a sampled XP table (with `wavelength`: the long layout)."""
MAX_ABS_SAMPLED_FLUX: float = 1e-8
"""Largest |flux| [W m⁻² nm⁻¹] believed in a sampled spectrum whose unit the file does not declare.

Vega (G ≈ 0) peaks near 7e-11 W m⁻² nm⁻¹ and the brightest DR3 XP stars (G ≈ 3) near 1e-11 (18 Sco,
G = 5.33: 1.6e-13 at 336 nm), so 1e-8 lies 100 times above anything physical; a file in e⁻/s (GaiaXPy
`convert`, values 1e1–1e7) or in W m⁻² Å⁻¹ of a G < 2 star goes beyond it."""
GRID_TOLERANCE_NM: float = 1e-6
"""Largest difference [nm] between a wavelength and its grid point (the files write 336.0, 338.0, ...)."""
DEFAULT_BATCH_ROWS = 16_384
"""Sources per yielded batch (two 343-pixel float64 spectra each: ~90 MB)."""

_SOURCE_ID_KEYS = ("source_id", "sourceid")
_SOLUTION_ID_KEYS = ("solution_id", "solution")


def sampled_layout(columns: list[str] | tuple[str, ...] | set[str]) -> str | None:
    """The layout of a sampled XP table from its column names: "long" (one row per wavelength:
    `wavelength`, `flux`, `flux_error`), "array" (one row per source with `flux` and `flux_error`
    arrays) or None (not a sampled XP table, e.g. continuous coefficients)."""
    names = set(columns)
    if "flux" not in names or any(f"{b}_coefficients" in names for b in BANDS):
        return None
    return "long" if "wavelength" in names else "array"


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


class _MemorySource:
    """Stands in for `xpengine.io._source.Source` for an in-memory table."""

    def __init__(self, label: str) -> None:
        self.url = label
        self.name = label

    def close(self) -> None:
        pass


def iter_xp_sampled(
    source: Any,
    *,
    with_correlations: bool = False,
    columns: list[str] | None = None,
    batch_rows: int | None = None,
    sampling: Any = None,
    source_id: int | None = None,
    storage_options: dict[str, Any] | None = None,
) -> Iterator[pa.RecordBatch]:
    """Stream sampled XP spectra as record batches of the continuous reader's schema (module docstring).

    Parameters
    ----------
    source : local path or fsspec URL (any format of `xpengine.io.formats`), or an in-memory table:
        pandas DataFrame (e.g. the first value GaiaXPy `calibrate` returns), astropy Table, pyarrow
        Table/RecordBatch or dict of arrays.
    with_correlations, columns : as for `iter_xp_continuous` (correlation columns come out null).
    batch_rows : maximum sources per batch (default `DEFAULT_BATCH_ROWS`).
    sampling : (343,) wavelengths [nm] of array-layout spectra whose file does not say (GaiaXPy
        `calibrate` returns it as its second value); anything but the default grid is refused.
    source_id : the source of a long-layout table that has no `source_id` column nor metadata.
    storage_options : passed to fsspec.

    Raises
    ------
    GaiaFileError : not a sampled table, a missing `flux_error` or `source_id`, a null source_id, a grid
        other than the default declared by the file or `sampling`, a flux unit that is not a spectral
        flux density, plus the format errors of `iter_xp_continuous`. Bad values are row problems.
    """
    if isinstance(source, str | os.PathLike):
        from xpengine.io.formats import open_table_reader

        reader = open_table_reader(source, storage_options)
    else:
        reader = _memory_reader(source)
    yield from iter_sampled_reader(
        reader,
        with_correlations=with_correlations,
        columns=columns,
        batch_rows=batch_rows,
        sampling=sampling,
        source_id=source_id,
        storage_options=storage_options,
    )


def read_xp_sampled(
    source: Any,
    *,
    with_correlations: bool = False,
    columns: list[str] | None = None,
    sampling: Any = None,
    source_id: int | None = None,
    storage_options: dict[str, Any] | None = None,
) -> pa.Table:
    """Read sampled XP spectra (a file or an in-memory table) into one Arrow table (`iter_xp_sampled`)."""
    from xpengine.io.xp_continuous import _output_columns

    batches = list(
        iter_xp_sampled(
            source,
            with_correlations=with_correlations,
            columns=columns,
            sampling=sampling,
            source_id=source_id,
            storage_options=storage_options,
        )
    )
    schema = xp_schema(_output_columns(columns, with_correlations))
    table = pa.Table.from_batches(batches, schema=schema)
    if batches:
        return table.replace_schema_metadata(_merged_metadata(batches))
    label = os.fspath(source) if isinstance(source, str | os.PathLike) else type(source).__name__
    return table.replace_schema_metadata({META_SOURCE: label.encode()})


def _merged_metadata(batches: list[pa.RecordBatch]) -> dict[bytes, bytes]:
    meta = dict(batches[0].schema.metadata or {})
    counts: dict[str, set[int]] = {b: set() for b in BANDS}
    for b in batches:
        for band, values in json.loads((b.schema.metadata or {}).get(META_N_COEFFICIENTS, b"{}")).items():
            counts[band].update(values)
    meta[META_N_COEFFICIENTS] = json.dumps({b: sorted(v) for b, v in counts.items()}).encode()
    return meta


def iter_sampled_reader(
    reader: Any,
    *,
    with_correlations: bool = False,
    columns: list[str] | None = None,
    batch_rows: int | None = None,
    sampling: Any = None,
    source_id: int | None = None,
    storage_options: dict[str, Any] | None = None,
) -> Iterator[pa.RecordBatch]:
    """`iter_xp_sampled` on an opened format reader (`xpengine.io.formats`): the continuous reader
    hands over the files it recognises as sampled here without opening them twice."""
    from xpengine.io.xp_continuous import ReadProblemTally, _output_columns, rebatch
    from xpengine.spectra.representation import default_representation

    url = reader.src.url
    tally = ReadProblemTally()
    try:
        layout = sampled_layout(reader.columns)
        if layout is None:
            raise GaiaFileError(
                url,
                "not a sampled XP table: expected columns flux and flux_error (with wavelength for one row "
                f"per wavelength) and no X_coefficients; columns present: {sorted(reader.columns)[:30]}",
            )
        if "flux_error" not in reader.columns:
            raise GaiaFileError(
                url,
                f"missing required column 'flux_error' for a sampled XP table ({reader.format_name}); "
                f"columns present: {sorted(reader.columns)[:30]}",
                column="flux_error",
            )
        batch_rows = DEFAULT_BATCH_ROWS if batch_rows is None else int(batch_rows)
        if batch_rows < 1:
            raise ValueError(f"batch_rows must be >= 1, got {batch_rows}")
        out_cols = _output_columns(columns, with_correlations)
        schema = xp_schema(out_cols)
        rep = default_representation()
        grid = rep.sampling.wavelength_nm  # (n_wl,) nm
        scale = {name: _unit_factor(_unit_of(reader, name), name, url, grid) for name in SAMPLED_COLUMNS}
        if layout == "array":
            declared = None
            where = ""
            if sampling is not None:
                declared, where = _parse_grid(sampling, url, "the sampling argument"), "the sampling argument"
            else:
                declared, where = _declared_sampling(reader, storage_options)
            if declared is not None:
                _check_grid(declared, grid, url, where)
            blocks = _array_blocks(reader, grid, batch_rows, url)
        else:
            if sampling is not None:
                raise ValueError(
                    "sampling= is for one-row-per-source arrays; a table with a wavelength column "
                    "carries its own wavelengths"
                )
            blocks = _long_blocks(reader, grid, batch_rows, url, source_id)
        xp_input = {
            "kind": "sampled",
            "layout": layout,
            "format": reader.format_name,
            "representation": rep.id,
            "flux_unit": _unit_of(reader, "flux") or f"{FLUX_UNIT} (assumed: not declared)",
            "grid_nm": [float(grid[0]), float(grid[-1]), float(grid[1] - grid[0]), int(grid.size)],
            "errors": "sampled_coefficient_errors: conservative upper bounds",
        }
        meta_base = {META_SOURCE: url.encode(), META_XP_INPUT: json.dumps(xp_input).encode()}
        batches = (_project(block, rep, scale, grid, out_cols, schema) for block in blocks)
        for out in rebatch(batches, batch_rows, schema, tally):
            yield _tag(out, meta_base)
    finally:
        reader.src.close()
    if tally.n_rows:
        logger.warning(
            "%s: %d sampled spectrum/spectra with read problems, kept with XP null; column %r says "
            "which, e.g. %s",
            url,
            tally.n_rows,
            READ_PROBLEM,
            " | ".join(tally.examples),
        )


def _tag(batch: pa.RecordBatch, meta_base: dict[bytes, bytes]) -> pa.RecordBatch:
    from xpengine.io.xp_continuous import coefficient_counts

    meta = {**meta_base, META_N_COEFFICIENTS: json.dumps(coefficient_counts(batch)).encode()}
    return batch.replace_schema_metadata(meta)


# --------------------------------------------------------------------------------------------------
# units and grids


def _unit_of(reader: Any, name: str) -> str | None:
    unit = reader.field_metadata(name).get("unit") if name in reader.columns else None
    return (str(unit).strip() or None) if unit else None


def _parse_unit(unit: str, column: str, url: str) -> Any:
    import astropy.units as u

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. "multiple slashes" from the generic parser
        for fmt in (None, "vounit", "fits", "cds"):
            try:
                return u.Unit(unit, format=fmt)
            except ValueError:
                continue
    raise GaiaFileError(url, f"unit {unit!r} cannot be read; expected {FLUX_UNIT}", column=column)


def _unit_factor(unit: str | None, column: str, url: str, wavelength_nm: np.ndarray) -> np.ndarray:
    """(n_wl,) factors from the column's unit to W m⁻² nm⁻¹ (ones when no unit is declared)."""
    if not unit:
        return np.ones(wavelength_nm.size)
    import astropy.units as u

    parsed = _parse_unit(unit, column, url)
    target = u.W / u.m**2 / u.nm
    try:
        factor = (1.0 * parsed).to_value(target, equivalencies=u.spectral_density(wavelength_nm * u.nm))
    except u.UnitConversionError:
        hint = ""
        if parsed.is_equivalent(u.electron / u.s) or parsed.is_equivalent(1 / u.s):
            hint = (
                "; e-/s on pseudo-wavelengths is GaiaXPy `convert` output (internally calibrated): use "
                "GaiaXPy `calibrate` or the archive's XP_SAMPLED"
            )
        raise GaiaFileError(
            url,
            f"unit {unit!r} is not a spectral flux density; expected {FLUX_UNIT} (the archive's "
            f"W.m**-2.nm**-1, GaiaXPy calibrate's W.nm**-1.m**-2) or one convertible to it{hint}",
            column=column,
        ) from None
    return np.broadcast_to(np.asarray(factor, dtype=np.float64), wavelength_nm.shape).copy()


def _wavelength_factor(reader: Any, url: str) -> float:
    unit = _unit_of(reader, "wavelength")
    if not unit:
        return 1.0
    import astropy.units as u

    parsed = _parse_unit(unit, "wavelength", url)
    try:
        return float((1.0 * parsed).to_value(u.nm))
    except u.UnitConversionError:
        raise GaiaFileError(
            url, f"unit {unit!r} is not a wavelength; expected nm", column="wavelength"
        ) from None


def _parse_grid(value: Any, url: str, where: str) -> np.ndarray:
    """Wavelengths [nm] from a list/array or a text like "(336.0, 338.0, ...)" or "336 338 ..."."""
    try:
        if isinstance(value, bytes):
            value = value.decode()
        if isinstance(value, str):
            text = value.strip().strip("()[]")
            parts = text.replace(",", " ").split()
            arr = np.asarray([float(p) for p in parts], dtype=np.float64)
        else:
            arr = np.asarray(np.ma.getdata(value), dtype=np.float64).ravel()
    except (TypeError, ValueError) as exc:
        raise GaiaFileError(url, f"{where} cannot be read as wavelengths [nm]: {exc}", column="flux") from exc
    return arr


def _declared_sampling(reader: Any, storage_options: dict[str, Any] | None) -> tuple[np.ndarray | None, str]:
    """The grid an array-layout file declares: GaiaXPy's `sampling` metadata (ECSV meta, FITS header,
    VOTable PARAM) or the `<name>_sampling.csv` file GaiaXPy writes beside a CSV; (None, "") if none."""
    url = reader.src.url
    meta = {str(k).lower(): v for k, v in getattr(reader, "table_meta", {}).items()}
    if "sampling" in meta:
        where = "the file's `sampling` metadata"
        return _parse_grid(meta["sampling"], url, where), where
    if reader.format_name != "csv":
        return None, ""
    from xpengine.io.filesystems import open_url, url_to_fs

    low = url.lower()
    for ext in (".csv.gz", ".csv"):
        if low.endswith(ext):
            side = url[: -len(ext)] + "_sampling.csv"
            break
    else:
        return None, ""
    fs, path = url_to_fs(side, storage_options)
    if not fs.exists(path):
        return None, ""
    with open_url(side, "rt", storage_options) as f:
        rows = list(csv.reader(io.StringIO(f.read())))
    where = f"the GaiaXPy sampling file {side}"
    if len(rows) < 2 or not rows[1]:
        raise GaiaFileError(side, "GaiaXPy sampling file without a `pos` row", column="pos")
    return _parse_grid(rows[1][0], url, where), where


def _check_grid(declared: np.ndarray, grid: np.ndarray, url: str, where: str) -> None:
    if declared.shape == grid.shape and np.all(np.abs(declared - grid) <= GRID_TOLERANCE_NM):
        return
    if declared.size:
        steps = np.unique(np.round(np.diff(declared), 6)) if declared.size > 1 else np.array([])
        step = f" every {steps[0]:g} nm" if steps.size == 1 else ""
        got = f"{declared.size} wavelengths {declared.min():g}–{declared.max():g} nm{step}"
    else:
        got = "no wavelengths"
    raise GaiaFileError(
        url,
        f"flux is sampled on {got} ({where}), not on the grid of the engine's XP representation, "
        f"GaiaXPy's default {grid[0]:g}–{grid[-1]:g} nm every {grid[1] - grid[0]:g} nm ({grid.size} "
        "values), so none of its rows can be read; recompute the spectra with gaiaxpy.calibrate and its "
        "default sampling, or give the XP_CONTINUOUS coefficients",
        column="flux",
    )


# --------------------------------------------------------------------------------------------------
# the two layouts -> blocks of (S, n_wl) spectra


def _int64_column(
    arr: pa.Array, name: str, url: str, row0: int, *, required: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(values, known) of an integer id column (text or numbers); a null required id is a file error."""
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        arr, _ = parse_scalar_strings(arr, pa.int64())
    elif arr.type != pa.int64():
        try:
            arr = pc.cast(arr, pa.int64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise GaiaFileError(
                url, f"values of type {arr.type} cannot be read as int64: {exc}", column=name
            ) from exc
    known = np.asarray(arr.is_valid(), dtype=bool)
    if required and not known.all():
        first = int(np.flatnonzero(~known)[0])
        raise GaiaFileError(url, f"{name} is null or unreadable", row=row0 + first + 1, column=name)
    return np.asarray(pc.fill_null(arr, 0), dtype=np.int64), known


def _meta_id(meta: Mapping[str, Any], keys: tuple[str, ...]) -> int | None:
    low = {str(k).lower(): v for k, v in meta.items()}
    for k in keys:
        if k in low and low[k] is not None:
            try:
                return int(str(low[k]).strip())
            except ValueError:
                return None
    return None


def _array_blocks(reader: Any, grid: np.ndarray, batch_rows: int, url: str) -> Iterator[_Block]:
    from xpengine.io.xp_continuous import list_column_to_numpy

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
        fixed_sid = source_id if source_id is not None else _meta_id(meta, _SOURCE_ID_KEYS)
        if fixed_sid is None:
            raise GaiaFileError(
                url,
                "a sampled spectrum with one row per wavelength needs its source: no source_id column and "
                "no source_id in the file metadata (ECSV meta, FITS SOURCEID, VOTable PARAM); pass "
                "source_id=",
                column="source_id",
            )
    fixed_sol = None if "solution_id" in reader.columns else _meta_id(meta, _SOLUTION_ID_KEYS)
    wl_factor = _wavelength_factor(reader, url)
    read_cols = [
        c for c in ("source_id", "solution_id", "wavelength", "flux", "flux_error") if c in reader.columns
    ]
    types: dict[str, pa.DataType] = {}
    if reader.text_arrays:
        types = {c: pa.string() for c in read_cols if c != "source_id"}
        types["source_id"] = pa.int64()
    carry: dict[str, np.ndarray] | None = None
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
        # keep the last source back: its rows may go on in the next batch
        last = part["sid"][-1]
        other = np.flatnonzero(part["sid"] != last)
        cut = int(other[-1]) + 1 if other.size else 0
        carry = {k: v[cut:] for k, v in part.items()}
        if cut:
            yield _pivot({k: v[:cut] for k, v in part.items()}, grid)
    if carry is not None and carry["sid"].size:
        yield _pivot(carry, grid)


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


# --------------------------------------------------------------------------------------------------
# checks, projection, output


def _project(
    block: _Block,
    rep: Any,
    scale: dict[str, np.ndarray],
    grid: np.ndarray,
    out_cols: list[str],
    schema: pa.Schema,
) -> pa.RecordBatch:
    """Check the spectra of a block, project them (c' = f X) and build the output batch."""
    from xpengine.spectra.representation import coefficients_from_sampled, sampled_coefficient_errors

    s = len(block.source_id)
    # float32 first, the archive's storage type: the text ("4.3137092E-17") and binary copies of one
    # file then give identical coefficients (a relative change below 6e-8 for float64 input)
    flux = block.flux.astype(np.float32).astype(np.float64) * scale["flux"]  # (S, n_wl) W m^-2 nm^-1
    error = block.error.astype(np.float32).astype(np.float64) * scale["flux_error"]
    fin_f = np.isfinite(flux)
    error[~fin_f] = np.nan  # the flux decides which pixels (and bands) are there
    fin_e = np.isfinite(error)
    live = ~block.dead

    def first_pixel(mask: np.ndarray, what: str) -> None:
        for i in np.flatnonzero(live & mask.any(axis=1)):
            jj = int(np.flatnonzero(mask[i])[0])
            block.problem(i, what.format(wl=f"{grid[jj]:g}", v=f"{flux[i, jj]:.8g}", e=f"{error[i, jj]:.8g}"))
        live[:] = ~block.dead

    first_pixel(
        fin_f & ~fin_e, "flux_error: no finite value at {wl} nm where flux has one ({v}); errors are required"
    )
    with np.errstate(invalid="ignore"):
        first_pixel(fin_e & (error < 0), "flux_error: negative value {e} at {wl} nm")
        first_pixel(
            fin_f & (np.abs(flux) > MAX_ABS_SAMPLED_FLUX),
            f"flux: value {{v}} at {{wl}} nm is beyond ±{MAX_ABS_SAMPLED_FLUX:.0e} {FLUX_UNIT} (no star "
            "comes near): another unit? (GaiaXPy `convert` gives e-/s; use `calibrate`)",
        )
    flux[block.dead] = np.nan
    error[block.dead] = np.nan
    bp, rp = coefficients_from_sampled(flux, rep)  # (S, 55) each, NaN = band missing
    bp_e, rp_e = sampled_coefficient_errors(error, rep)
    has = {"bp": np.all(np.isfinite(bp), axis=1), "rp": np.all(np.isfinite(rp), axis=1)}
    usable_pattern = ~(live & fin_f.any(axis=1) & ~has["bp"] & ~has["rp"])
    if not usable_pattern.all():
        bp_pix = grid[rep.bp_only.pixels]
        rp_pix = grid[rep.rp_only.pixels]
        rule = (
            f"a spectrum may lack a whole band only (no value at any of {bp_pix[0]:g}–{bp_pix[-1]:g} nm for BP, "
            f"{rp_pix[0]:g}–{rp_pix[-1]:g} nm for RP), so this one cannot be used"
        )
        for i in np.flatnonzero(~usable_pattern):
            nan_pix = ~fin_f[i]
            jj = int(np.flatnonzero(nan_pix)[0])
            if block.absent is not None and block.absent[i, jj]:
                n_abs = int(block.absent[i].sum())
                text = f"wavelength: no row at {grid[jj]:g} nm ({n_abs} of {grid.size} grid wavelengths have none)"
            else:
                what = "NaN" if np.isnan(block.flux[i, jj]) else f"{block.flux[i, jj]}"
                text = (
                    f"flux: {what} at {grid[jj]:g} nm ({int(nan_pix.sum())} of {grid.size} pixels not finite)"
                )
            block.problem(i, f"{text}; {rule}")
    for band in BANDS:
        has[band] &= ~block.dead
    cols: dict[str, pa.Array] = {
        "source_id": pa.array(block.source_id, type=pa.int64()),
        "solution_id": pa.array(block.solution_id, type=pa.int64(), mask=~block.solution_known),
    }
    for band, coef, err in (("bp", bp, bp_e), ("rp", rp, rp_e)):
        present = has[band]
        n_par = np.full(s, coef.shape[1], dtype=np.int16)
        cols[f"{band}_n_parameters"] = pa.array(n_par, type=pa.int16(), mask=~present)
        cols[f"{band}_coefficients"] = _lists(coef, present, pa.float64())
        cols[f"{band}_coefficient_errors"] = _lists(err, present, pa.float32())
    arrays = [cols[name] if name in cols else pa.nulls(s, XP_BY_NAME[name].type) for name in out_cols]
    texts = np.full(s, None, dtype=object)
    for i, msgs in block.problems.items():
        texts[i] = "; ".join(msgs) + f" ({block.where[i]})"
    arrays.append(pa.array(texts, type=pa.string()))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _lists(values: np.ndarray, present: np.ndarray, vtype: pa.DataType) -> pa.ListArray:
    """(S, n) matrix -> list<vtype> column, null where not `present`."""
    s, n = values.shape
    flat = pa.array(np.ascontiguousarray(values, dtype=vtype.to_pandas_dtype()).ravel(), type=vtype)
    offsets = pa.array(np.arange(s + 1, dtype=np.int32) * n)
    return pa.ListArray.from_arrays(offsets, flat, mask=pa.array(~present))


# --------------------------------------------------------------------------------------------------
# in-memory tables


def _memory_reader(obj: Any) -> Any:
    """An `InMemoryReader` over a pandas DataFrame, astropy Table, pyarrow Table/RecordBatch or dict,
    keeping column units (astropy `unit`, Arrow field metadata `unit`) and table metadata."""
    from xpengine.io.formats._table import InMemoryReader

    units: dict[str, dict[str, str]] = {}
    if isinstance(obj, pa.RecordBatch):
        obj = pa.Table.from_batches([obj])
    if isinstance(obj, pa.Table):
        for f in obj.schema:
            fm = {
                k.decode(errors="replace"): v.decode(errors="replace") for k, v in (f.metadata or {}).items()
            }
            if fm:
                units[f.name] = fm
        raw = obj.schema.metadata or {}
        meta = {k.decode(errors="replace"): v.decode(errors="replace") for k, v in raw.items()}
        return InMemoryReader(_MemorySource("<pyarrow Table>"), "memory", obj, units, meta)
    if hasattr(obj, "colnames") and hasattr(obj, "meta"):  # astropy Table
        names = list(obj.colnames)
        meta = dict(obj.meta)
        label = "<astropy Table>"
        for name in names:
            unit = getattr(obj[name], "unit", None)
            if unit is not None:
                units[name] = {"unit": str(unit)}
    elif hasattr(obj, "columns") and hasattr(obj, "iloc"):  # pandas DataFrame
        names = list(obj.columns)
        meta = dict(getattr(obj, "attrs", {}) or {})
        label = "<pandas DataFrame>"
    elif isinstance(obj, Mapping):
        names = list(obj)
        meta = {}
        label = "<dict>"
    else:
        raise TypeError(
            f"expected a file path/URL or an astropy/pandas/pyarrow table or a dict of arrays, got "
            f"{type(obj).__name__}"
        )
    arrays = [_arrow_column(obj[name]) for name in names]
    table = pa.table(arrays, names=[str(n) for n in names])
    return InMemoryReader(_MemorySource(label), "memory", table, units, meta)


def _arrow_column(col: Any) -> pa.Array:
    """One column of an in-memory table: 2-D and object-of-arrays columns become list<float64>."""
    if np.ma.isMaskedArray(col) and np.asarray(col).dtype.kind == "f":
        col = col.filled(np.nan)
    values = col.to_numpy() if hasattr(col, "to_numpy") else np.asarray(col)
    if values.ndim == 2:
        flat = pa.array(np.ascontiguousarray(values, dtype=np.float64).ravel())
        return pc.cast(pa.FixedSizeListArray.from_arrays(flat, values.shape[1]), pa.list_(pa.float64()))
    if values.dtype == object:
        first = next(
            (v for v in values if v is not None and not (isinstance(v, float) and np.isnan(v))), None
        )
        if first is not None and not isinstance(first, str | bytes) and np.ndim(first) >= 1:
            items = [None if (v is None or np.ndim(v) == 0) else v for v in values]
            return lists_from_objects(items, pa.float64())
    return pa.array(values)
