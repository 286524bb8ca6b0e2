"""Broad-band colour tokens: Gaia BP−RP and 2MASS J−H, J−Ks, with errors (Leung & Bovy 2024 §2).

Formula functions return NaN where a value or error is undefined; `xpengine.features.tokens` turns
NaN errors into the project's "unknown" value 0.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "BP_ZERO_POINT_ERROR_MAG",
    "MAG_PER_LN_FLUX",
    "RP_ZERO_POINT_ERROR_MAG",
    "TMASS_MISSING_MAG",
    "bp_rp_colour",
    "clean_2mass_photometry",
    "flux_over_error_to_mag_error",
    "gaia_mag_error",
    "tmass_colours",
]

BP_ZERO_POINT_ERROR_MAG: float = 0.0027901700
"""Uncertainty of the Gaia DR3 BP passband zero point [mag] (Riello et al. 2021, Table 3)."""
RP_ZERO_POINT_ERROR_MAG: float = 0.0037793818
"""Uncertainty of the Gaia DR3 RP passband zero point [mag] (Riello et al. 2021, Table 3)."""
MAG_PER_LN_FLUX: float = 2.5 / np.log(10.0)
"""dm/d ln f = 2.5/ln 10 ≈ 1.0857: σ_mag = MAG_PER_LN_FLUX · σ_f / f."""
TMASS_MISSING_MAG: float = 99.0
"""2MASS and APOGEE write 99 or 99.999 for missing magnitudes/errors; values ≥ this are missing."""


def flux_over_error_to_mag_error(flux_over_error: np.ndarray) -> np.ndarray:
    """Photometric magnitude error (N,) [mag] from `phot_X_mean_flux_over_error` (N,).

    σ_mag = (2.5 / ln 10) / (f / σ_f), the linear propagation of m = −2.5 log10 f + ZP.
    NaN where the ratio is missing, not finite or not positive.
    """
    foe = np.asarray(flux_over_error, dtype=np.float64)
    ok = np.isfinite(foe) & (foe > 0)
    return np.where(ok, MAG_PER_LN_FLUX / np.where(ok, foe, 1.0), np.nan)


def gaia_mag_error(flux_over_error: np.ndarray, zero_point_error: float) -> np.ndarray:
    """Total magnitude error (N,) [mag]: photometric error ⊕ passband zero-point error (quadrature)."""
    sigma = flux_over_error_to_mag_error(flux_over_error)
    return np.hypot(sigma, zero_point_error)


def bp_rp_colour(
    bp_mag: np.ndarray | None,
    rp_mag: np.ndarray | None,
    bp_flux_over_error: np.ndarray | None,
    rp_flux_over_error: np.ndarray | None,
    *,
    bp_rp: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Gaia BP−RP colour and its error (N,) [mag], as Leung & Bovy (2024) built it.

    value = phot_bp_mean_mag − phot_rp_mean_mag (where both are finite; else the archive `bp_rp`
    column when given). error = sqrt(σ_BP² + 0.0027901700² + σ_RP² + 0.0037793818²) with
    σ_X = (2.5/ln 10) / phot_X_mean_flux_over_error; NaN where the value is NaN or either
    flux-over-error is unknown.
    """
    arrays = [a for a in (bp_mag, rp_mag, bp_flux_over_error, rp_flux_over_error, bp_rp) if a is not None]
    if not arrays:
        raise ValueError("bp_rp_colour needs magnitudes or bp_rp, got no input")
    n = np.asarray(arrays[0]).shape[0]
    nan = np.full(n, np.nan)
    bp = nan if bp_mag is None else np.asarray(bp_mag, dtype=np.float64)
    rp = nan if rp_mag is None else np.asarray(rp_mag, dtype=np.float64)
    value = bp - rp
    if bp_rp is not None:
        value = np.where(np.isfinite(value), value, np.asarray(bp_rp, dtype=np.float64))
    bp_err = gaia_mag_error(
        nan if bp_flux_over_error is None else bp_flux_over_error, BP_ZERO_POINT_ERROR_MAG
    )
    rp_err = gaia_mag_error(
        nan if rp_flux_over_error is None else rp_flux_over_error, RP_ZERO_POINT_ERROR_MAG
    )
    error = np.hypot(bp_err, rp_err)
    error = np.where(np.isfinite(value), error, np.nan)
    return value, error


def clean_2mass_photometry(
    mag: np.ndarray, mag_error: np.ndarray | None, *, require_error: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """2MASS magnitude and error (N,) [mag] with missing values as NaN.

    A band is missing where the magnitude is NaN/inf or ≥ 99 (2MASS/APOGEE write 99 or 99.999).
    With `require_error` (default) a band whose `X_msigcom` is NaN or ≥ 99 is also missing: in the
    2MASS PSC a null msigcom marks an upper limit (ph_qual "U"), not a measurement.
    """
    m = np.asarray(mag, dtype=np.float64)
    e = np.full(m.shape, np.nan) if mag_error is None else np.asarray(mag_error, dtype=np.float64)
    bad = ~np.isfinite(m) | (m >= TMASS_MISSING_MAG)
    bad_err = ~np.isfinite(e) | (e >= TMASS_MISSING_MAG) | (e < 0)
    if require_error:
        bad = bad | bad_err
    m = np.where(bad, np.nan, m)
    e = np.where(bad | bad_err, np.nan, e)
    return m, e


def tmass_colours(
    j: np.ndarray,
    j_error: np.ndarray | None,
    h: np.ndarray,
    h_error: np.ndarray | None,
    ks: np.ndarray,
    ks_error: np.ndarray | None,
    *,
    require_error: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """2MASS J−H and J−Ks colours with quadrature errors (N,) [mag]: (jh, jh_err, jk, jk_err).

    Inputs are the 2MASS PSC `j_m, j_msigcom, h_m, h_msigcom, ks_m, ks_msigcom` (or APOGEE J, J_ERR…);
    missing bands follow `clean_2mass_photometry`. σ(J−H) = sqrt(σ_J² + σ_H²), likewise J−Ks.
    """
    j, je = clean_2mass_photometry(j, j_error, require_error=require_error)
    h, he = clean_2mass_photometry(h, h_error, require_error=require_error)
    ks, ke = clean_2mass_photometry(ks, ks_error, require_error=require_error)
    jh = j - h
    jk = j - ks
    jh_err = np.where(np.isfinite(jh), np.hypot(je, he), np.nan)
    jk_err = np.where(np.isfinite(jk), np.hypot(je, ke), np.nan)
    return jh, jh_err, jk, jk_err
