"""Training labels from APOGEE DR17 and the DistMass VAC: flags, duplicates, units, quality cuts.

Pure, vectorised functions over a leading star axis (arrays in, arrays out, no I/O).

Sources:
- APOGEE DR17 allStar bitmasks (Abdurro'uf et al. 2022; SDSS DR17 `APOGEE_ASPCAPFLAG`,
  `APOGEE_STARFLAG`, `APOGEE_EXTRATARG` documentation): ASPCAPFLAG bit 19 = M_H_BAD, bit 23 =
  STAR_BAD; EXTRATARG bit 4 (value 16) = DUPLICATE (a lower-S/N observation of a star that has
  another, primary, row). Zhang et al. (2026, §2.1) set flagged labels to NaN and keep the star.
- DistMass VAC (Stone-Martinez et al. 2024): ages in years, linear; `AGE_ERR` in dex (two values).
- Zhang et al. (2026, §2.4) quality cuts: 0.5 < M/M☉ < 4, 0 < age < 14 Gyr, −2.5 < [M/H] < 0.7.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "AGE_RANGE_GYR",
    "ASPCAP_M_H_BAD_BIT",
    "ASPCAP_STAR_BAD_BIT",
    "EXTRATARG_DUPLICATE_BIT",
    "MASS_RANGE_MSUN",
    "M_H_RANGE_DEX",
    "age_years_to_ln_age",
    "apogee_missing_to_nan",
    "bad_aspcap_mask",
    "check_age_in_years",
    "extratarg_duplicate_mask",
    "in_open_range",
    "strip_apogee_id",
]

ASPCAP_M_H_BAD_BIT: int = 19
ASPCAP_STAR_BAD_BIT: int = 23
EXTRATARG_DUPLICATE_BIT: int = 4
MASS_RANGE_MSUN: tuple[float, float] = (0.5, 4.0)
AGE_RANGE_GYR: tuple[float, float] = (0.0, 14.0)
M_H_RANGE_DEX: tuple[float, float] = (-2.5, 0.7)

_LN10 = float(np.log(10.0))


def apogee_missing_to_nan(values: np.ndarray) -> np.ndarray:
    """APOGEE float column (N,) → float64 with the old sentinels (≤ −9999) and non-finite values as NaN.

    DR17 writes NaN for missing ASPCAP values, earlier releases −9999; both become NaN.
    """
    v = np.asarray(values, dtype=np.float64)
    return np.where(np.isfinite(v) & (v > -9998.0), v, np.nan)


def bad_aspcap_mask(aspcapflag: np.ndarray, starflag: np.ndarray) -> np.ndarray:
    """Stars (N,) bool whose ASPCAP labels must be treated as missing (Zhang et al. 2026, §2.1).

    True when ASPCAPFLAG has bit 19 (M_H_BAD) or bit 23 (STAR_BAD) set, or STARFLAG ≠ 0 (any
    spectrum-level warning, which includes the obvious binaries). Inputs are the integer allStar
    columns (ASPCAPFLAG int64, STARFLAG int32/int64).
    """
    asp = np.asarray(aspcapflag).astype(np.int64)
    star = np.asarray(starflag).astype(np.int64)
    bits = np.int64((1 << ASPCAP_M_H_BAD_BIT) | (1 << ASPCAP_STAR_BAD_BIT))
    return ((asp & bits) != 0) | (star != 0)


def extratarg_duplicate_mask(extratarg: np.ndarray) -> np.ndarray:
    """Rows (N,) bool flagged as duplicate observations (EXTRATARG bit 4, value 16): to be dropped."""
    return (np.asarray(extratarg).astype(np.int64) & np.int64(1 << EXTRATARG_DUPLICATE_BIT)) != 0


def strip_apogee_id(apogee_id: np.ndarray) -> np.ndarray:
    """APOGEE_ID strings (N,) with surrounding blanks removed (FITS pads fixed-width strings), as str.

    Bytes (FITS `A` columns read raw) are decoded as ASCII.
    """
    ids = np.asarray(apogee_id)
    if ids.dtype.kind == "S":
        ids = np.char.decode(ids, "ascii")
    return np.char.strip(ids.astype(str))


def check_age_in_years(age: np.ndarray, *, column: str = "age", source: str = "") -> None:
    """Raise ValueError when an age column (N,) does not look like years (DistMass ages are linear years).

    Test: the median of the finite positive values must be ≥ 100 (real ages are 1e8–1e10 yr; an age
    column in Gyr has a median of a few). An all-missing column is left to the caller.
    """
    a = np.asarray(age, dtype=np.float64)
    good = a[np.isfinite(a) & (a > 0)]
    if good.size == 0:
        return
    med = float(np.median(good))
    if med < 100.0:
        where = f"{source}: " if source else ""
        raise ValueError(
            f"{where}column {column!r} has median {med:.4g}: it looks like ages in Gyr (or log10 "
            f"years), but the DistMass VAC gives ages in years (linear; expected median ~1e9–1e10). "
            f"Pass an age column in years."
        )


def age_years_to_ln_age(
    age_yr: np.ndarray, age_err_dex: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Age [yr, linear] (N,) and its error [dex] → (ln(age/Gyr), σ_ln) both (N,) float64.

    ln_age = ln(age / 1e9 yr) (the paper's ln τ token); σ_ln = ln(10)·σ_dex, because
    d ln τ = ln(10) d log10 τ. `age_err_dex` may be (N,) or (N, 2) (the VAC's two values, e.g. the
    lower and upper errors): two values are averaged (one missing → the other is used). Non-positive
    or non-finite ages give NaN; a missing error gives NaN (the caller stores 0 = unknown).
    """
    age = np.asarray(age_yr, dtype=np.float64)
    ok = np.isfinite(age) & (age > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ln_age = np.where(ok, np.log(np.where(ok, age, 1.0) / 1e9), np.nan)
    if age_err_dex is None:
        return ln_age, np.full(age.shape, np.nan)
    err = np.asarray(age_err_dex, dtype=np.float64)
    if err.ndim == 2:
        if err.shape[0] != age.shape[0] or err.shape[1] < 1:
            raise ValueError(f"age errors must be (N,) or (N, k) with N={age.shape[0]}, got {err.shape}")
        finite = np.isfinite(err) & (err >= 0)
        n = finite.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            err = np.where(n > 0, np.where(finite, err, 0.0).sum(axis=1) / np.maximum(n, 1), np.nan)
    elif err.shape != age.shape:
        raise ValueError(f"age errors must be (N,) or (N, k) with N={age.shape[0]}, got {err.shape}")
    err = np.where(np.isfinite(err) & (err >= 0) & ok, err, np.nan)
    return ln_age, _LN10 * err


def in_open_range(values: np.ndarray, bounds: tuple[float, float]) -> np.ndarray:
    """(N,) bool: lo < value < hi. NaN gives False (the caller decides what missing means)."""
    v = np.asarray(values, dtype=np.float64)
    lo, hi = bounds
    with np.errstate(invalid="ignore"):
        return (v > lo) & (v < hi)
