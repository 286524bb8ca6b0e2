"""G-band flux normalisation of XP coefficients (Leung & Bovy 2024, their Eq. 8; Zhang et al. 2026 §2).

Dividing the BP/RP coefficients (e⁻/s units of the basis expansion) by the source's G-band flux
removes the distance-modulus dependence, so the model sees the spectral *shape*; the apparent
brightness enters separately through the pseudo-luminosity token.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "G_ZERO_POINT_MAG",
    "g_flux_from_columns",
    "g_mag_to_flux",
    "normalise_by_g_flux",
]

G_ZERO_POINT_MAG: float = 25.6873668671
"""Gaia DR3 G-band photometric zero point (Vega), Riello et al. (2021) / DR3 documentation §5.4."""


def g_mag_to_flux(g_mag: np.ndarray | float) -> np.ndarray:
    """G magnitude (N,) [mag] → G flux (N,) [e⁻/s]: f_G = 10^((25.6873668671 − G)/2.5).

    The inverse of the Gaia DR3 definition `phot_g_mean_mag = −2.5 log10(phot_g_mean_flux) + ZP_G`.
    NaN magnitudes give NaN flux.
    """
    g = np.asarray(g_mag, dtype=np.float64)
    return np.power(10.0, (G_ZERO_POINT_MAG - g) / 2.5)


def g_flux_from_columns(g_mag: np.ndarray | None = None, g_flux: np.ndarray | None = None) -> np.ndarray:
    """G flux (N,) [e⁻/s] from `phot_g_mean_flux` where finite and positive, else from `phot_g_mean_mag`.

    The archive flux is float64 and avoids the float32 rounding of the magnitude (≈1e-6 relative, so
    the two routes agree far below XP noise). Returns NaN where neither is usable; at least one of
    the inputs must be given.
    """
    if g_mag is None and g_flux is None:
        raise ValueError("g_flux_from_columns needs phot_g_mean_mag or phot_g_mean_flux, got neither")
    from_mag = None if g_mag is None else g_mag_to_flux(g_mag)
    if g_flux is None:
        out = np.asarray(from_mag)
    else:
        flux = np.asarray(g_flux, dtype=np.float64)
        ok = np.isfinite(flux) & (flux > 0)
        fallback = np.full(flux.shape, np.nan) if from_mag is None else from_mag
        out = np.where(ok, flux, fallback)
    return np.where(np.isfinite(out) & (out > 0), out, np.nan)


def normalise_by_g_flux(
    values: np.ndarray, errors: np.ndarray, g_flux: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Divide coefficients and their errors (N, K) by the G flux (N,) [e⁻/s] of each source.

    Returns float64 arrays (N, K): value / f_G and error / f_G (dimensionless). Rows whose flux is
    NaN or not positive come back as NaN.
    """
    values = np.asarray(values, dtype=np.float64)
    errors = np.asarray(errors, dtype=np.float64)
    flux = np.asarray(g_flux, dtype=np.float64)
    if values.ndim != 2 or errors.shape != values.shape:
        raise ValueError(
            f"values and errors must both be (N, K) arrays, got {values.shape} and {errors.shape}"
        )
    if flux.shape != (values.shape[0],):
        raise ValueError(f"g_flux must have shape ({values.shape[0]},), got {flux.shape}")
    flux = np.where(np.isfinite(flux) & (flux > 0), flux, np.nan)[:, None]  # (N, 1)
    return values / flux, errors / flux
