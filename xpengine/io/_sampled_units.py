"""Units and wavelength grids of sampled XP files (the flux unit a file declares, its wavelength unit,
the grid it declares or holds, checked against the representation's); part of :mod:`xpengine.io.xp_sampled`."""

from __future__ import annotations

import csv
import io
import logging
from typing import Any

import numpy as np

from xpengine.io._units import parse_unit
from xpengine.io.errors import GaiaFileError

logger = logging.getLogger("xpengine.io.xp_sampled")

FLUX_UNIT = "W m-2 nm-1"
"""Unit of the sampled flux and its error, as the representation expects it."""
SAMPLED_COLUMNS: tuple[str, str] = ("flux", "flux_error")
"""Columns that make a table a sampled XP table (with `wavelength`: the long layout)."""
GRID_TOLERANCE_NM: float = 1e-6
"""Largest difference [nm] between a wavelength and its grid point (the files write 336.0, 338.0, ...)."""


# --------------------------------------------------------------------------------------------------
# what the file is


def _refuse_per_band(columns: Any, url: str) -> None:
    """GaiaFileError for GaiaXPy `convert` output: one row per source and band, its `xp` column saying
    BP or RP, each band's spectrum on its own pseudo-wavelength grid in e⁻/s (internally calibrated). Read
    as sampled spectra, its RP row would be the same source again and its BP row a spectrum of another
    length, so the file is refused as a whole, saying what it is and what to give instead."""
    xp = next((c for c in columns if str(c).lower() == "xp"), None)
    if xp is None or "flux" not in columns:
        return
    raise GaiaFileError(
        url,
        "one row per band (BP/RP in this column): GaiaXPy `convert` output, per-band spectra on a "
        "pseudo-wavelength grid (internally calibrated, e-/s), which the engine cannot read; give the "
        "XP_CONTINUOUS coefficients, or GaiaXPy `calibrate` output (absolute fluxes on its default "
        "336-1020 nm grid)",
        column=str(xp),
    )


# --------------------------------------------------------------------------------------------------
# units and grids


def _unit_of(reader: Any, name: str) -> str | None:
    unit = reader.field_metadata(name).get("unit") if name in reader.columns else None
    return (str(unit).strip() or None) if unit else None


def _parse_unit(unit: str, column: str, url: str) -> Any:
    parsed = parse_unit(unit)
    if parsed is None:
        raise GaiaFileError(url, f"unit {unit!r} cannot be read; expected {FLUX_UNIT}", column=column)
    return parsed


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
