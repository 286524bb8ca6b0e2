"""Reader for Gaia DR3 XP SAMPLED mean spectra, straight into the engine's XP representation.

Why: the engine's XP representation is defined on the sampled flux (`xpengine.spectra.representation`):
for f on GaiaXPy's default grid, c' = f X gives the projected coefficients that archive coefficients give
through c' = c P, so sampled spectra are read into the same table as continuous coefficients.

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
  Any format of `xpengine.io.formats`; `read_xp_continuous` (so the job) routes such files here.

Output: the table of `read_xp_continuous` (`xp_schema`: Gaia names and dtypes, `read_problem` last), with
`X_coefficients` = c' (`coefficients_from_sampled`), `X_coefficient_errors` from
`xpengine.spectra.sampled_errors.estimate_representation_errors`, `X_n_parameters` = 55 where the band is present, `source_id` and
`solution_id` from the file, and null everywhere else: correlations, `X_n_relevant_bases` (a sampled
spectrum does not say which coefficients are relevant, so no relevancy truncation applies downstream),
chi², .... Schema metadata: `xpengine.source`, `xpengine.n_coefficients` and `xpengine.xp_input`
(`META_XP_INPUT`, JSON `{"kind": "sampled", ...}`), which marks the rows as coming from sampled spectra.
The errors: pixel errors come from the coefficients' full covariance, so they are strongly correlated;
taken as independent they overstate the coefficients' errors 190–440 times (until session 25 the blue star
5762406957886626816 came out 1.1 M☉ from its sampled spectrum, 2.8 from its coefficients). The estimator
fits a diagonal coefficient covariance to the pixel variances (0.95–1.26 of the archive's errors); a row
with one band keeps the independent-pixel bound. The synthetic G and BP−RP σ and the isochrone fit read them.

P is idempotent: c' passes unchanged through the token path, which projects every input with P.

Units: flux and flux_error in W m⁻² nm⁻¹, which the archive writes `W.m**-2.nm**-1` and GaiaXPy
`calibrate` `W.nm**-1.m**-2` (the same unit). A declared unit is converted to it (any spectral flux
density, e.g. erg s⁻¹ cm⁻² Å⁻¹ or Jy); a unit that is none (GaiaXPy `convert` output, in e⁻/s on
pseudo-wavelengths) is a `GaiaFileError` naming the column. GaiaXPy `convert` output is refused as a
whole in any case, by its `xp` column (one row per source and band, BP and RP each on its own
pseudo-wavelength grid): a `GaiaFileError` naming the file and that column. An undeclared unit is taken as W m⁻² nm⁻¹,
and a row with |flux| above `MAX_ABS_SAMPLED_FLUX` is a row problem (probably another unit).
Values are rounded to float32, the archive's storage type, so that the text and binary copies of one
archive file give identical tables.

Grid: GaiaXPy's default 336–1020 nm every 2 nm (343 pixels). A file (or `sampling`) that declares another
grid is a `GaiaFileError` naming the file and column. Without a declared grid, an array of another length is
a row problem, and so is one of 343 pixels the XP basis cannot reproduce (`projection_residual` above
`GRID_RESIDUAL_MAX`: another grid of the same length, since session 32). In the long layout a source
with a wavelength off the grid or repeated is a row problem; missing wavelengths count as NaN pixels.

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

import json
import logging
import os
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from xpengine.io._arrays import lists_from_objects
from xpengine.io._sampled_blocks import _array_blocks, _Block, _long_blocks
from xpengine.io._sampled_units import (  # the constants are re-exported: they lived here
    FLUX_UNIT,
    SAMPLED_COLUMNS,
    _check_grid,
    _declared_sampling,
    _parse_grid,
    _refuse_per_band,
    _unit_factor,
    _unit_of,
)
from xpengine.io._sampled_units import (
    GRID_TOLERANCE_NM as GRID_TOLERANCE_NM,
)
from xpengine.io._xp_rows import ReadProblemTally, coefficient_counts, output_columns, rebatch
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

MAX_ABS_SAMPLED_FLUX: float = 1e-8
"""Largest |flux| [W m⁻² nm⁻¹] believed in a sampled spectrum whose unit the file does not declare.

Vega (G ≈ 0) peaks near 7e-11 W m⁻² nm⁻¹ and the brightest DR3 XP stars (G ≈ 3) near 1e-11 (18 Sco,
G = 5.33: 1.6e-13 at 336 nm), so 1e-8 lies 100 times above anything physical; a file in e⁻/s (GaiaXPy
`convert`, values 1e1–1e7) or in W m⁻² Å⁻¹ of a G < 2 star goes beyond it."""
DEFAULT_BATCH_ROWS = 16_384
"""Sources per yielded batch (two 343-pixel float64 spectra each: ~90 MB)."""


def sampled_layout(columns: list[str] | tuple[str, ...] | set[str]) -> str | None:
    """The layout of a sampled XP table from its column names: "long" (one row per wavelength:
    `wavelength`, `flux`, `flux_error`), "array" (one row per source with `flux` and `flux_error`
    arrays) or None (not a sampled XP table, e.g. continuous coefficients)."""
    names = set(columns)
    if "flux" not in names or any(f"{b}_coefficients" in names for b in BANDS):
        return None
    return "long" if "wavelength" in names else "array"


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
    GaiaFileError : not a sampled table, GaiaXPy `convert` output (an `xp` column: one row per band), a
        missing `flux_error` or `source_id`, a null source_id, a grid other than the default declared by
        the file or `sampling`, a flux unit that is not a spectral flux density, plus the format errors of
        `iter_xp_continuous`. Bad values are row problems.
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
    with_gaia_source: bool | list[str] = False,
) -> pa.Table:
    """Read sampled XP spectra (a file or an in-memory table) into one Arrow table (`iter_xp_sampled`).

    with_gaia_source : as `read_xp_continuous`'s: also the gaia_source (G, ra/dec, parallax, ...), 2MASS and
        E(B−V) columns the file holds beside its spectra (the archive's XP_SAMPLED in CSV holds ra/dec, which
        the isochrone fit's distance prior needs; its other formats keep them in metadata, not read);
        without it they are left out with a warning naming them.
    """
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
    schema = xp_schema(output_columns(columns, with_correlations))
    table = pa.Table.from_batches(batches, schema=schema)
    if batches:
        table = table.replace_schema_metadata(_merged_metadata(batches))
    else:
        label = os.fspath(source) if isinstance(source, str | os.PathLike) else type(source).__name__
        table = table.replace_schema_metadata({META_SOURCE: label.encode()})
    from xpengine.io.embedded import with_own_columns

    return with_own_columns(table, source, with_gaia_source, "read_xp_sampled", storage_options)


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
        _refuse_per_band(reader.columns, url)
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
        out_cols = output_columns(columns, with_correlations)
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
            "errors": "estimate_representation_errors: noise level from the pixel errors",
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
    meta = {**meta_base, META_N_COEFFICIENTS: json.dumps(coefficient_counts(batch)).encode()}
    return batch.replace_schema_metadata(meta)


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
    from xpengine.spectra.representation import (
        GRID_RESIDUAL_MAX,
        coefficients_from_sampled,
        default_representation,
        projection_residual,
    )
    from xpengine.spectra.sampled_errors import estimate_representation_errors

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
    bp, rp = coefficients_from_sampled(flux, rep)  # (S, 55) each, NaN = band missing
    residual = projection_residual(flux, rep, (bp, rp))  # another grid: the basis cannot fit it
    for i in np.flatnonzero(live & (residual > GRID_RESIDUAL_MAX)):
        block.problem(i, f"flux: {residual[i]:.1e} of it is not an XP spectrum on the {grid[0]:g}–{grid[-1]:g} nm "
                      "grid (Gaia's own leave 2e-5): on another grid? give its wavelengths (`sampling`)")  # fmt: skip
    live[:] = ~block.dead
    error[block.dead] = np.nan
    bp[block.dead], rp[block.dead] = np.nan, np.nan
    # the errors' noise level (`xpengine.spectra.sampled_errors`); the default representation's operator
    # is cached, another one is built per block
    bp_e, rp_e = estimate_representation_errors(error, None if rep is default_representation() else rep)
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
    if values.dtype.kind in "iufb" and not values.dtype.isnative:  # FITS is big-endian; Arrow is not
        values = values.astype(values.dtype.newbyteorder("="))
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
