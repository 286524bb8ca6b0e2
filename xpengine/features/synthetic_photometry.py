"""Gaia G, BP and RP fluxes synthesised from the XP spectrum itself (issue 15 item 1, XP-only input).

Why: users who hold only XP files have no `phot_g_mean_flux` to normalise the coefficients by
(`normalise.normalise_by_g_flux`) and no `bp_rp` token. Both can be made from the XP coefficients.

Method (synthetic photometry as GaiaXPy `generate` does it; Montegriffo et al. 2023, A&A 674, A3;
Gaia Collaboration, Montegriffo et al. 2023, A&A 674, A33):
a passband flux is a linear functional of the spectrum, so for a band b

    F_b = Σ_i c_BP,i s_BP,i,b + Σ_i c_RP,i s_RP,i,b          (one (N, 110) @ (110, 3) product)

where s_X,i,b is basis function i of band X (BP, RP) integrated over passband b (photon-counting
mean flux density, W m⁻² nm⁻¹ per e⁻ s⁻¹ of coefficient), and the BP and RP contributions enter with
weight 1. The synthetic magnitude is m_b = −2.5 log10 F_b + zp_b (GaiaXPy's zero points: G −26.4899,
BP −25.9655, RP −27.2164). We fold the zero points into the matrix so that it gives e⁻ s⁻¹ on the
scale of `phot_g_mean_flux`: F_b[e⁻ s⁻¹] = F_b[W m⁻² nm⁻¹] · 10^(0.4 (ZP_b − zp_b)) with the Gaia DR3
zero points ZP (G 25.6873668671, BP 25.3385422158, RP 24.7478955012; Riello et al. 2021, A&A 649, A3),
so m_b = ZP_b − 2.5 log10 F_b[e⁻ s⁻¹] is unchanged. No per-source loop: one matrix product per batch.

Passbands: the Gaia DR3 G, BP, RP passbands (Riello et al. 2021) as integrated over the XP basis
functions by DPAC and shipped in GaiaXPy's photometric system `Gaia_DR3_Vega`: the file
`gaiaxpy/config/filters/XpFilter_GaiaDr3Vega_v375wiv142r.xml` (GaiaXPy 2.1.5; BP model v375wi, RP
model v142r, filter solutionId 4545469030156206114, sha256 58b97c6d…a23919 = `PASSBAND_SHA256`). The
file holds the integrals s_X,i,b directly (its "XpSampling" block: one "sample" per band), so there is
nothing to integrate on a wavelength grid; it is read with ElementTree, without importing GaiaXPy.
`synthetic_photometry` reproduces GaiaXPy `generate(..., PhotometricSystem.Gaia_DR3_Vega)` to
< 1e-6 mag and its flux errors to < 1e-6 relative (tests/test_features_synthetic_photometry.py).

Sampled spectra (e.g. the APOGEE×XP file): the sampled flux is f = c A with the (110, 343) matrix A of
`xpengine.spectra.sampling`, of full row rank, so w = A⁺ s (343, 3) satisfies A w = s and f @ w = c @ s
exactly for any coefficients (no truncation of the pseudo-inverse: the functional, unlike single
coefficients, is not ill-conditioned, ‖w‖ ≈ 23–53 |Σ w|). On the real archive XP_SAMPLED spectrum of
5937083312263887616 it matches GaiaXPy's photometry of the archive coefficients to 0.001 mmag (G),
0.05 mmag (BP, RP). Noise in a sampled spectrum lies in the row space of A, so f @ w has the same
error as the coefficient route; the pixel errors are correlated, so no error is propagated here.

Errors: σ² = sᵀ C s per band, with C = diag(e) R diag(e) the coefficient covariance (e =
`X_coefficient_errors`, R from `X_coefficient_correlations`), BP and RP independent; the full 3×3
covariance of (G, BP, RP) is kept for the colour. Without correlations (the pipeline reads only the
errors) R = I: on the real test stars the diagonal-only error is 0.96–1.16× the full one for G and up
to 2× for BP (not a bound either way); for G < 15 both are below 1 mmag, under the systematic term.

Correction to the DR3 photometry (`G_CORRECTION`, `BP_RP_CORRECTION`): synthetic G differs from
`phot_g_mean_mag` (measured in the astrometric-field windows, while XP comes from the BP/RP windows and
its own calibration, Montegriffo et al. 2023) by a few mmag depending on colour and magnitude. Measured
with `benchmarks/g_from_xp.py` on the APOGEE×XP dev file (real XP sampled spectra and real DR3
photometry, G 8.7–15): raw G_DR3 − G_XP has median +3.4 mmag, from +16 mmag (BP−RP < 0) and +12 mmag
(G < 9) down to ≈ 0 (BP−RP > 2.5); BP−RP_DR3 − BP−RP_XP goes from +3 (blue) to +28 mmag (BP−RP > 4).
Both are fitted by least squares with 4σ clipping (`fit_photometric_correction`) on the stars of the
training split with a clean BP/RP excess factor (|C*| < 3σ_C*, `corrected_bp_rp_excess_factor`):

    Δ = a0 + a1 x + a2 x² + a3 x³ + b1 g + b2 g² + b3 g³,   x = clip(BP−RP_XP, −0.3, 4.5),
    g = clip(G_XP, 8.5, 15) − 12;   G = G_XP + ΔG,   BP−RP = BP−RP_XP + Δ(BP−RP).

Outside those ranges (where the dev file has no stars) the correction is held at its edge value:
unvalidated for G_XP > 15 (XP reaches G ≈ 17.65) and for G < 8.5; the one bright bundled star, 18 Sco
(G = 5.33), has G_DR3 − G_XP = −0.7 mmag raw but −12 mmag corrected. `PhotometricCorrection.in_range` tells.

Extra uncertainty of G from XP (to quote for rows flagged G_FROM_XP): after the correction, on the
held-out test split (3,247 stars, `benchmarks/results/g_from_xp.json`), G_DR3 − G_XP has bias +0.03
mmag and robust σ (1.4826 MAD) 2.65 mmag = `G_FROM_XP_SIGMA_MAG` for stars with a clean excess factor
(binned medians within ±1.5 mmag per BP−RP bin and ±0.7 mmag per G bin; fitted slopes 0.12 mmag per
mag of colour, 0.03 per mag of G), 3.1 mmag for all stars. The scatter depends on colour: 2.0–2.9 mmag
for 0 < BP−RP < 2.5, 4.3–7.6 mmag for redder stars, 3.8 mmag at G 14–15. BP−RP: robust σ 2.47 mmag =
`BP_RP_FROM_XP_SIGMA_MAG` (clean), 2.7 mmag (all), 5–20 mmag for BP−RP > 2.5. The exception is
blended or crowded sources: the BP/RP windows (3.5″ × 2.1″) collect a neighbour's light that the G
measurement leaves out, so their G from XP is too bright: on the dev file the G residual correlates at
0.92 with C*, 7.9 % of the stars are beyond 3σ in C* (median residual +45 mmag there), 4.1 % have
|ΔG| > 0.05 mag and 2.5 % > 0.1 mag. XP alone cannot detect this (C* needs the real G).
`calibrated_g_flux` adds `G_FROM_XP_SIGMA_MAG` in quadrature to the statistical error; the colour
error adds `BP_RP_FROM_XP_SIGMA_MAG` and the DR3 BP/RP zero-point errors, as `colours.bp_rp_colour`.
The statistical error ignores the (tiny) uncertainty the correction inherits from BP−RP_XP.

Missing bands: G, BP and RP each need both BP and RP coefficients (the BP passband also takes RP
coefficients where the XP bands overlap, and vice versa); a source missing either band gets NaN in
every band, as GaiaXPy does.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import numpy as np

from xpengine.features.colours import (
    BP_ZERO_POINT_ERROR_MAG,
    MAG_PER_LN_FLUX,
    RP_ZERO_POINT_ERROR_MAG,
)
from xpengine.features.passbands import (  # re-exported: they lived here
    DR3_ZERO_POINT_MAG,
    GAIA_DR3_BANDS,
    PASSBAND_FILE,
    PASSBAND_SHA256,
    GaiaPassbands,
    load_gaia_dr3_passbands,
)
from xpengine.features.photometric_correction import (  # re-exported: they lived here
    BP_RP_CORRECTION,
    BP_RP_FROM_XP_SIGMA_MAG,
    G_CORRECTION,
    G_FROM_XP_SIGMA_MAG,
    PhotometricCorrection,
    corrected_bp_rp_excess_factor,
    fit_photometric_correction,
)
from xpengine.spectra.sampling import XPSampling, correlation_matrix, default_sampling, truncation_mask

__all__ = [
    "BP_RP_CORRECTION",
    "BP_RP_FROM_XP_SIGMA_MAG",
    "DR3_ZERO_POINT_MAG",
    "GAIA_DR3_BANDS",
    "G_CORRECTION",
    "G_FROM_XP_SIGMA_MAG",
    "PASSBAND_FILE",
    "PASSBAND_SHA256",
    "GaiaPassbands",
    "PhotometricCorrection",
    "SyntheticPhotometry",
    "bp_rp_from_xp",
    "calibrated_bp_rp",
    "calibrated_g_flux",
    "corrected_bp_rp_excess_factor",
    "fit_photometric_correction",
    "g_flux_from_xp",
    "load_gaia_dr3_passbands",
    "sampled_passband_vectors",
    "synthetic_gaia_photometry",
    "synthetic_gaia_photometry_from_sampled",
]

logger = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------------------------
# synthetic fluxes


@dataclass(frozen=True, eq=False)
class SyntheticPhotometry:
    """Uncorrected synthetic passband fluxes of N sources.

    bands: e.g. ("G", "BP", "RP"). flux_e_s: (N, n_band) [e⁻/s], NaN where a band of XP is missing.
    covariance_e_s2: (N, n_band, n_band) [(e⁻/s)²], NaN where the coefficient errors are unknown.
    zero_point_mag: (n_band,) DR3 zero points of the bands.
    """

    bands: tuple[str, ...]
    flux_e_s: np.ndarray
    covariance_e_s2: np.ndarray
    zero_point_mag: np.ndarray

    @property
    def flux_error_e_s(self) -> np.ndarray:
        """(N, n_band) 1σ flux errors [e⁻/s]."""
        return np.sqrt(np.diagonal(self.covariance_e_s2, axis1=1, axis2=2))

    @property
    def mag(self) -> np.ndarray:
        """(N, n_band) Vega magnitudes ZP − 2.5 log10 F (NaN where F ≤ 0 or NaN), uncorrected."""
        f = self.flux_e_s
        ok = np.isfinite(f) & (f > 0)
        return np.where(ok, self.zero_point_mag - 2.5 * np.log10(np.where(ok, f, 1.0)), np.nan)

    def column(self, band: str) -> int:
        if band not in self.bands:
            raise ValueError(f"band {band!r} not in this photometry's bands {self.bands}")
        return self.bands.index(band)


def _n_rows(*arrays: np.ndarray | None) -> int:
    for a in arrays:
        if a is not None:
            return int(np.atleast_2d(np.asarray(a)).shape[0])
    raise ValueError("bp_coefficients and rp_coefficients are both None; expected at least one band")


def _band_array(x: np.ndarray | None, n: int, n_rows: int, name: str) -> np.ndarray:
    """(N, n) float64 copy; None -> NaN (band missing)."""
    if x is None:
        return np.full((n_rows, n), np.nan)
    a = np.array(x, dtype=np.float64, copy=True)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2 or a.shape != (n_rows, n):
        raise ValueError(f"{name} has shape {np.shape(x)}, expected ({n_rows}, {n})")
    return a


def synthetic_gaia_photometry(
    bp_coefficients: np.ndarray | None,
    rp_coefficients: np.ndarray | None,
    bp_coefficient_errors: np.ndarray | None = None,
    rp_coefficient_errors: np.ndarray | None = None,
    bp_coefficient_correlations: np.ndarray | None = None,
    rp_coefficient_correlations: np.ndarray | None = None,
    *,
    truncate_bp: int | np.ndarray | None = None,
    truncate_rp: int | np.ndarray | None = None,
    passbands: GaiaPassbands | None = None,
    chunk: int = 2048,
) -> SyntheticPhotometry:
    """Uncorrected G, BP, RP fluxes [e⁻/s] and their covariance from XP continuous coefficients.

    bp/rp_coefficients: (N, 55) archive `X_coefficients` [e⁻/s], full (untruncated; the DR3
    synthetic photometry uses all of them, GaiaXPy's default); None or a row with a non-finite used
    value = band missing -> that row's fluxes NaN. bp/rp_coefficient_errors: (N, 55) or None (then the
    covariance is NaN). bp/rp_coefficient_correlations: (N, 1485) strict lower triangle, row-major, or
    None (errors treated as uncorrelated: diagonal-only propagation). truncate_bp/rp: None, an int or
    (N,) `X_n_relevant_bases`: only the first n coefficients are used (GaiaXPy `truncation=True`).
    Cost: one (N, 110) @ (110, n_band) product for the fluxes; with correlations a (55, 55) matrix per
    source and band, built `chunk` sources at a time.
    """
    pb = load_gaia_dr3_passbands() if passbands is None else passbands
    n_rows = _n_rows(bp_coefficients, rp_coefficients)
    n_band = len(pb.bands)
    flux = np.zeros((n_rows, n_band))
    cov = np.zeros((n_rows, n_band, n_band))
    present = np.ones(n_rows, dtype=bool)
    errors_known = np.ones(n_rows, dtype=bool)
    bands = (
        (
            "bp",
            bp_coefficients,
            bp_coefficient_errors,
            bp_coefficient_correlations,
            truncate_bp,
            pb.to_flux_bp,
        ),
        (
            "rp",
            rp_coefficients,
            rp_coefficient_errors,
            rp_coefficient_correlations,
            truncate_rp,
            pb.to_flux_rp,
        ),
    )
    for name, coef, err, corr, trunc, to_flux in bands:
        n = to_flux.shape[0]
        c = _band_array(coef, n, n_rows, f"{name}_coefficients")
        keep = truncation_mask(trunc, n_rows, n, f"truncate_{name}")
        if keep is not None:
            c = np.where(keep, c, 0.0)
        ok = np.all(np.isfinite(c), axis=1)
        present &= ok
        flux += np.where(ok[:, None], c, 0.0) @ to_flux  # (N, n_band)
        if err is None:
            errors_known[:] = False
            continue
        e = _band_array(err, n, n_rows, f"{name}_coefficient_errors")
        if keep is not None:
            e = np.where(keep, e, 0.0)
        e_ok = np.all(np.isfinite(e), axis=1)
        errors_known &= e_ok
        e = np.where(e_ok[:, None], e, 0.0)
        if corr is None:
            a = e[:, :, None] * to_flux[None, :, :]  # (N, n, n_band)
            cov += np.einsum("nib,nic->nbc", a, a)
            continue
        r = np.asarray(corr, dtype=np.float64)
        r = r[None, :] if r.ndim == 1 else r
        if r.shape != (n_rows, n * (n - 1) // 2):
            raise ValueError(
                f"{name}_coefficient_correlations has shape {np.shape(corr)}, "
                f"expected ({n_rows}, {n * (n - 1) // 2})"
            )
        for start in range(0, n_rows, chunk):
            sl = slice(start, start + chunk)
            R = correlation_matrix(r[sl], n)  # (n_chunk, n, n)
            bad = ~np.all(np.isfinite(R), axis=(1, 2))
            errors_known[sl] &= ~bad
            R[bad] = 0.0
            a = e[sl, :, None] * to_flux[None, :, :]  # (n_chunk, n, n_band)
            cov[sl] += np.swapaxes(a, 1, 2) @ (R @ a)  # (n_chunk, n_band, n_band)
    flux[~present] = np.nan
    cov[~(present & errors_known)] = np.nan
    return SyntheticPhotometry(
        bands=pb.bands, flux_e_s=flux, covariance_e_s2=cov, zero_point_mag=pb.zero_point_mag
    )


@functools.lru_cache(maxsize=4)
def _sampled_vectors(sampling: XPSampling, passbands: GaiaPassbands) -> np.ndarray:
    if sampling.n_bp != passbands.n_bp or sampling.n_rp != passbands.n_rp:
        raise ValueError(
            f"sampling has {sampling.n_bp}+{sampling.n_rp} coefficients, passbands "
            f"{passbands.n_bp}+{passbands.n_rp}; expected the same"
        )
    # full-rank minimum-norm solution of A w = M (A: (110, n_wl), full row rank): f @ w = c @ M exactly
    w = np.linalg.pinv(sampling.A) @ passbands.matrix  # (n_wl, n_band)
    w.setflags(write=False)
    return w


def sampled_passband_vectors(
    sampling: XPSampling | None = None, passbands: GaiaPassbands | None = None
) -> np.ndarray:
    """(n_wl, n_band) w with (sampled flux [W m⁻² nm⁻¹]) @ w = passband flux [e⁻/s] (module docstring)."""
    s = default_sampling() if sampling is None else sampling
    pb = load_gaia_dr3_passbands() if passbands is None else passbands
    return _sampled_vectors(s, pb)


def synthetic_gaia_photometry_from_sampled(
    flux: np.ndarray, *, sampling: XPSampling | None = None, passbands: GaiaPassbands | None = None
) -> SyntheticPhotometry:
    """Uncorrected G, BP, RP fluxes [e⁻/s] of sampled XP spectra (N, n_wl) [W m⁻² nm⁻¹].

    The spectra must be on the sampling's grid (default GaiaXPy 336–1020 nm / 2 nm) and made with all
    coefficients (archive XP_SAMPLED spectra are). A row with any non-finite pixel gives NaN (a missing
    band leaves NaN pixels). The covariance is NaN (pixel errors are correlated; not propagated).
    """
    s = default_sampling() if sampling is None else sampling
    pb = load_gaia_dr3_passbands() if passbands is None else passbands
    f = np.asarray(flux, dtype=np.float64)
    f = f[None, :] if f.ndim == 1 else f
    if f.ndim != 2 or f.shape[1] != s.n_wavelength:
        raise ValueError(f"flux has shape {np.shape(flux)}, expected (N, {s.n_wavelength})")
    ok = np.all(np.isfinite(f), axis=1)
    out = np.where(ok[:, None], f, 0.0) @ _sampled_vectors(s, pb)  # (N, n_band)
    out[~ok] = np.nan
    cov = np.full((f.shape[0], len(pb.bands), len(pb.bands)), np.nan)
    return SyntheticPhotometry(
        bands=pb.bands, flux_e_s=out, covariance_e_s2=cov, zero_point_mag=pb.zero_point_mag
    )


def _g_and_colour(phot: SyntheticPhotometry) -> tuple[np.ndarray, np.ndarray]:
    m = phot.mag
    return m[:, phot.column("G")], m[:, phot.column("BP")] - m[:, phot.column("RP")]


def calibrated_g_flux(
    phot: SyntheticPhotometry,
    *,
    correction: PhotometricCorrection | None = G_CORRECTION,
    systematic_mag: float = G_FROM_XP_SIGMA_MAG,
) -> tuple[np.ndarray, np.ndarray]:
    """G flux (N,) [e⁻/s] on the `phot_g_mean_flux` scale and its 1σ error (N,) [e⁻/s].

    flux = F_G,XP · 10^(−0.4 ΔG) with ΔG = correction(BP−RP_XP, G_XP) (None: no correction).
    error = sqrt(σ_stat² + (flux · systematic_mag / 1.0857)²), σ_stat from the covariance scaled like
    the flux (NaN when the coefficient errors were not given). NaN flux where XP is missing or the
    synthetic G or BP−RP is undefined (non-positive flux).
    """
    g_xp, colour_xp = _g_and_colour(phot)
    f = phot.flux_e_s[:, phot.column("G")]
    f = np.where(np.isfinite(g_xp), f, np.nan)
    scale = np.ones_like(f) if correction is None else 10.0 ** (-0.4 * correction(colour_xp, g_xp))
    flux = f * scale
    stat = phot.flux_error_e_s[:, phot.column("G")] * scale
    error = np.hypot(stat, flux * systematic_mag / MAG_PER_LN_FLUX)
    return flux, error


def calibrated_bp_rp(
    phot: SyntheticPhotometry,
    *,
    correction: PhotometricCorrection | None = BP_RP_CORRECTION,
    systematic_mag: float = BP_RP_FROM_XP_SIGMA_MAG,
    zero_point_errors: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """BP−RP colour (N,) [mag] on the DR3 `bp_rp` scale and its 1σ error (N,) [mag].

    error² = σ_stat² + systematic_mag² (+ the DR3 BP and RP zero-point errors, as
    `colours.bp_rp_colour` includes them, when `zero_point_errors`), σ_stat from the (G, BP, RP)
    covariance: (1.0857)² (V_BB/F_B² + V_RR/F_R² − 2 V_BR/(F_B F_R)).
    """
    g_xp, colour_xp = _g_and_colour(phot)
    value = colour_xp if correction is None else colour_xp + correction(colour_xp, g_xp)
    ib, ir = phot.column("BP"), phot.column("RP")
    fb, fr = phot.flux_e_s[:, ib], phot.flux_e_s[:, ir]
    c = phot.covariance_e_s2
    rel_var = c[:, ib, ib] / fb**2 + c[:, ir, ir] / fr**2 - 2.0 * c[:, ib, ir] / (fb * fr)
    var = MAG_PER_LN_FLUX**2 * rel_var + systematic_mag**2
    if zero_point_errors:
        var = var + BP_ZERO_POINT_ERROR_MAG**2 + RP_ZERO_POINT_ERROR_MAG**2
    error = np.where(np.isfinite(value), np.sqrt(var), np.nan)
    return value, error


def g_flux_from_xp(
    bp_coefficients: np.ndarray | None,
    rp_coefficients: np.ndarray | None,
    bp_coefficient_errors: np.ndarray | None = None,
    rp_coefficient_errors: np.ndarray | None = None,
    bp_coefficient_correlations: np.ndarray | None = None,
    rp_coefficient_correlations: np.ndarray | None = None,
    *,
    truncate_bp: int | np.ndarray | None = None,
    truncate_rp: int | np.ndarray | None = None,
    correct: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """G flux (N,) [e⁻/s, the `phot_g_mean_flux` scale] and 1σ error (N,) [e⁻/s] from XP alone.

    Inputs as :func:`synthetic_photometry` (raw archive coefficients, before any relevancy masking or
    representation). correct: apply `G_CORRECTION` and add `G_FROM_XP_SIGMA_MAG` to the error; False
    gives GaiaXPy's uncorrected synthetic G flux with the statistical error only. The error is NaN when
    the coefficient errors are not given.
    """
    phot = synthetic_gaia_photometry(
        bp_coefficients,
        rp_coefficients,
        bp_coefficient_errors,
        rp_coefficient_errors,
        bp_coefficient_correlations,
        rp_coefficient_correlations,
        truncate_bp=truncate_bp,
        truncate_rp=truncate_rp,
    )
    if correct:
        return calibrated_g_flux(phot)
    return calibrated_g_flux(phot, correction=None, systematic_mag=0.0)


def bp_rp_from_xp(
    bp_coefficients: np.ndarray | None,
    rp_coefficients: np.ndarray | None,
    bp_coefficient_errors: np.ndarray | None = None,
    rp_coefficient_errors: np.ndarray | None = None,
    bp_coefficient_correlations: np.ndarray | None = None,
    rp_coefficient_correlations: np.ndarray | None = None,
    *,
    truncate_bp: int | np.ndarray | None = None,
    truncate_rp: int | np.ndarray | None = None,
    correct: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """BP−RP (N,) [mag, the DR3 `bp_rp` scale] and 1σ error (N,) [mag] from XP alone.

    correct: apply `BP_RP_CORRECTION`, add `BP_RP_FROM_XP_SIGMA_MAG` and the DR3 zero-point errors
    (as the gaia_source colour token carries them); False: GaiaXPy's synthetic BP − RP with the
    statistical error only.
    """
    phot = synthetic_gaia_photometry(
        bp_coefficients,
        rp_coefficients,
        bp_coefficient_errors,
        rp_coefficient_errors,
        bp_coefficient_correlations,
        rp_coefficient_correlations,
        truncate_bp=truncate_bp,
        truncate_rp=truncate_rp,
    )
    if correct:
        return calibrated_bp_rp(phot)
    return calibrated_bp_rp(phot, correction=None, systematic_mag=0.0, zero_point_errors=False)
