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
import hashlib
import importlib.util
import logging
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xpengine.features.colours import (
    BP_ZERO_POINT_ERROR_MAG,
    MAG_PER_LN_FLUX,
    RP_ZERO_POINT_ERROR_MAG,
)
from xpengine.features.normalise import G_ZERO_POINT_MAG
from xpengine.spectra.sampling import XPSampling, correlation_matrix, default_sampling

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

GAIA_DR3_BANDS: tuple[str, str, str] = ("G", "BP", "RP")
DR3_ZERO_POINT_MAG: dict[str, float] = {"G": G_ZERO_POINT_MAG, "BP": 25.3385422158, "RP": 24.7478955012}
"""Gaia DR3 Vega zero points [mag]: m = ZP − 2.5 log10(flux [e⁻/s]) (Riello et al. 2021, Table 3)."""
PASSBAND_FILE = "XpFilter_GaiaDr3Vega_v375wiv142r.xml"
"""GaiaXPy's Gaia_DR3_Vega filter file (in `gaiaxpy/config/filters/`)."""
PASSBAND_SHA256 = "58b97c6dac03f83f54c77126f78cb21daec83cd8e5c14c6ec15d5257d1a23919"
"""sha256 of PASSBAND_FILE in GaiaXPy 2.1.5, the file the corrections below were fitted with."""


# ----------------------------------------------------------------------------------------------------------
# passbands


@dataclass(frozen=True, eq=False)
class GaiaPassbands:
    """Linear maps from XP coefficients to passband fluxes (read-only float64 arrays).

    bands: band names, e.g. ("G", "BP", "RP"). to_flux_bp: (n_bp, n_band), to_flux_rp: (n_rp, n_band):
    flux [e⁻/s on the Gaia DR3 scale] per unit coefficient [e⁻/s], merge weights and zero points
    folded in. xp_zero_point_mag: (n_band,) GaiaXPy zero points for flux in W m⁻² nm⁻¹.
    zero_point_mag: (n_band,) DR3 zero points for flux in e⁻/s. source, sha256: the file read.
    """

    bands: tuple[str, ...]
    to_flux_bp: np.ndarray
    to_flux_rp: np.ndarray
    xp_zero_point_mag: np.ndarray
    zero_point_mag: np.ndarray
    source: str = ""
    sha256: str = ""
    matrix: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        n_band = len(self.bands)
        for name in ("to_flux_bp", "to_flux_rp", "xp_zero_point_mag", "zero_point_mag"):
            a = np.array(getattr(self, name), dtype=np.float64, copy=True)
            want = (n_band,) if name.endswith("_mag") else (a.shape[0], n_band)
            if a.shape != want or (a.ndim == 2 and a.shape[0] == 0):
                raise ValueError(f"GaiaPassbands.{name} has shape {a.shape}, expected {want}")
            a.setflags(write=False)
            object.__setattr__(self, name, a)
        m = np.vstack([self.to_flux_bp, self.to_flux_rp])  # (n_bp + n_rp, n_band)
        m.setflags(write=False)
        object.__setattr__(self, "matrix", m)

    @property
    def n_bp(self) -> int:
        return int(self.to_flux_bp.shape[0])

    @property
    def n_rp(self) -> int:
        return int(self.to_flux_rp.shape[0])


def _gaiaxpy_filter_path() -> Path:
    """PASSBAND_FILE in the installed GaiaXPy, found without importing GaiaXPy (its import touches
    matplotlib's rcParams, see xpengine._gaiaxpy)."""
    spec = importlib.util.find_spec("gaiaxpy")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            f"gaiaxpy is not installed; it ships the Gaia DR3 passband file {PASSBAND_FILE} "
            "(pip install gaiaxpy), or pass load_gaia_dr3_passbands(path=...)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "config" / "filters" / PASSBAND_FILE


def _values(root: ET.Element, path: str) -> np.ndarray:
    node = root.find(path)
    if node is None:
        raise ValueError(f"passband file has no <{path}> element")
    return np.array([float(v.text or "nan") for v in node.findall("value")], dtype=np.float64)


def load_gaia_dr3_passbands(path: str | Path | None = None) -> GaiaPassbands:
    """Read a GaiaXPy filter XML (default: GaiaXPy's Gaia_DR3_Vega, cached) into :class:`GaiaPassbands`.

    The file's `XpSampling/{bp,rp}SampledBases` hold n_band × n_coefficients passband integrals of the
    basis functions [W m⁻² nm⁻¹ per e⁻/s], `XpMerge/{bp,rp}Weights` the per-band weights, `zeropoints`
    the magnitudes' zero points; DR3 e⁻/s zero points are taken for bands G, BP, RP.
    """
    if path is None:
        return _default_passbands()
    return _read_passbands(Path(path))


@functools.lru_cache(maxsize=1)
def _default_passbands() -> GaiaPassbands:
    return _read_passbands(_gaiaxpy_filter_path())


def _read_passbands(path: Path) -> GaiaPassbands:
    raw = path.read_bytes()
    sha = hashlib.sha256(raw).hexdigest()
    root = ET.fromstring(raw)
    bands_node = root.find("bands")
    if bands_node is None:
        raise ValueError(f"{path}: no <bands> element; expected a GaiaXPy filter file")
    bands = tuple((item.text or "").strip() for item in bands_node.findall("item"))
    unknown = [b for b in bands if b not in DR3_ZERO_POINT_MAG]
    if unknown:
        raise ValueError(f"{path}: bands {bands}; expected Gaia DR3 bands among {GAIA_DR3_BANDS}")
    n_band = len(bands)
    maps = {}
    for xp in ("bp", "rp"):
        node = root.find(f"XpSampling/{xp}SampledBases")
        if node is None:
            raise ValueError(f"{path}: no <XpSampling/{xp}SampledBases>")
        n_coef = int(node.attrib["dimension"])
        v = _values(root, f"XpSampling/{xp}SampledBases")
        if v.size != n_band * n_coef:
            raise ValueError(f"{path}: {xp}SampledBases has {v.size} values, expected {n_band} × {n_coef}")
        weights = _values(root, f"XpMerge/{xp}Weights")
        maps[xp] = v.reshape(n_band, n_coef).T * weights[None, :]  # (n_coef, n_band) W m-2 nm-1
    xp_zp = _values(root, "zeropoints")
    if xp_zp.shape != (n_band,):
        raise ValueError(f"{path}: {xp_zp.size} zero points for {n_band} bands")
    zp = np.array([DR3_ZERO_POINT_MAG[b] for b in bands])
    to_e_s = 10.0 ** (0.4 * (zp - xp_zp))  # (n_band,): F[e-/s] = F[W m-2 nm-1] * to_e_s
    if sha != PASSBAND_SHA256 and path.name == PASSBAND_FILE:
        logger.warning(
            "%s has sha256 %s, not the %s the G/BP−RP corrections were fitted with; rerun "
            "benchmarks/g_from_xp.py to refit them",
            path,
            sha,
            PASSBAND_SHA256,
        )
    return GaiaPassbands(
        bands=bands,
        to_flux_bp=maps["bp"] * to_e_s,
        to_flux_rp=maps["rp"] * to_e_s,
        xp_zero_point_mag=xp_zp,
        zero_point_mag=zp,
        source=str(path),
        sha256=sha,
    )


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


def _keep_mask(truncate: int | np.ndarray | None, n_rows: int, n: int, name: str) -> np.ndarray | None:
    """(N, n) True for the coefficients used (index < truncate); None = all; NaN truncate = all."""
    if truncate is None:
        return None
    t = np.asarray(truncate, dtype=np.float64)
    if t.ndim == 0:
        t = np.full(n_rows, float(t))
    if t.shape != (n_rows,):
        raise ValueError(f"{name} has shape {t.shape}, expected a scalar or ({n_rows},)")
    t = np.where(np.isfinite(t), t, n)
    if np.any(t < 0):
        raise ValueError(f"{name} holds negative values (min {t.min()}); expected 0..{n}")
    return np.arange(n)[None, :] < t[:, None]


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
        keep = _keep_mask(trunc, n_rows, n, f"truncate_{name}")
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


# ----------------------------------------------------------------------------------------------------------
# correction to the DR3 photometric scale


@dataclass(frozen=True)
class PhotometricCorrection:
    """Δ = Σ_k colour_coefficients[k] x^k + Σ_k≥1 g_coefficients[k-1] g^k [mag].

    x = clip(synthetic BP−RP, *colour_range), g = clip(synthetic G, *g_range) − g_pivot.
    """

    colour_coefficients: tuple[float, ...]
    g_coefficients: tuple[float, ...]
    colour_range: tuple[float, float] = (-0.3, 4.5)
    g_range: tuple[float, float] = (8.5, 15.0)
    g_pivot: float = 12.0

    def design(self, bp_rp_xp: np.ndarray, g_xp: np.ndarray) -> np.ndarray:
        """(N, n_terms) design matrix of the polynomial."""
        x = np.clip(np.asarray(bp_rp_xp, dtype=np.float64), *self.colour_range)
        g = np.clip(np.asarray(g_xp, dtype=np.float64), *self.g_range) - self.g_pivot
        cols = [x**k for k in range(len(self.colour_coefficients))]
        cols += [g**k for k in range(1, len(self.g_coefficients) + 1)]
        return np.stack(cols, axis=-1)

    def in_range(self, bp_rp_xp: np.ndarray, g_xp: np.ndarray) -> np.ndarray:
        """(N,) bool: inputs inside the fitted ranges (outside, the correction is extrapolated flat)."""
        x = np.asarray(bp_rp_xp, dtype=np.float64)
        g = np.asarray(g_xp, dtype=np.float64)
        lo, hi = self.colour_range
        g_lo, g_hi = self.g_range
        return (x >= lo) & (x <= hi) & (g >= g_lo) & (g <= g_hi)

    def __call__(self, bp_rp_xp: np.ndarray, g_xp: np.ndarray) -> np.ndarray:
        """Δ (N,) [mag] to add to the synthetic quantity; NaN where an input is NaN."""
        coef = np.array(self.colour_coefficients + self.g_coefficients)
        return self.design(bp_rp_xp, g_xp) @ coef


def corrected_bp_rp_excess_factor(
    g_mag: np.ndarray, bp_mag: np.ndarray, rp_mag: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Corrected BP/RP flux excess C* (N,) and its 1σ spread σ_C* (N,) from REAL G, BP, RP mags.

    C = (f_BP + f_RP) / f_G (fluxes from the DR3 zero points), C* = C − f(BP−RP) with Riello et al.
    (2021, A&A 649, A3) Eq. 6 / Table 2, σ_C*(G) their Eq. 18. |C*| ≫ σ_C* marks sources whose BP/RP
    windows hold extra light (blends, crowding): their XP-based G is biased bright. Used here to
    choose calibration stars; it needs the real G, so it cannot flag an XP-only source.
    """
    g = np.asarray(g_mag, dtype=np.float64)
    bp = np.asarray(bp_mag, dtype=np.float64)
    rp = np.asarray(rp_mag, dtype=np.float64)
    zp = DR3_ZERO_POINT_MAG
    c = (10 ** (0.4 * (zp["BP"] - bp)) + 10 ** (0.4 * (zp["RP"] - rp))) / 10 ** (0.4 * (zp["G"] - g))
    x = bp - rp
    fx = np.where(
        x < 0.5,
        1.154360 + 0.033772 * x + 0.032277 * x**2,
        np.where(
            x < 4.0, 1.162004 + 0.011464 * x + 0.049255 * x**2 - 0.005879 * x**3, 1.057572 + 0.140537 * x
        ),
    )
    return c - fx, 0.0059898 + 8.817481e-12 * g**7.618399


def fit_photometric_correction(
    bp_rp_xp: np.ndarray,
    g_xp: np.ndarray,
    delta: np.ndarray,
    *,
    colour_degree: int = 3,
    g_degree: int = 3,
    clip_sigma: float = 4.0,
    max_iter: int = 20,
    template: PhotometricCorrection | None = None,
) -> PhotometricCorrection:
    """Least-squares fit of Δ = real − synthetic (N,) [mag] with iterative `clip_sigma` robust clipping.

    bp_rp_xp, g_xp: (N,) synthetic BP−RP and G [mag]; non-finite rows are ignored. Ranges and pivot
    from `template` (default :class:`PhotometricCorrection` defaults).
    """
    if colour_degree < 0 or g_degree < 0:
        raise ValueError(f"degrees must be >= 0, got colour {colour_degree}, g {g_degree}")
    t = (
        PhotometricCorrection((0.0,) * (colour_degree + 1), (0.0,) * g_degree)
        if template is None
        else (
            PhotometricCorrection(
                (0.0,) * (colour_degree + 1),
                (0.0,) * g_degree,
                template.colour_range,
                template.g_range,
                template.g_pivot,
            )
        )
    )
    X = t.design(bp_rp_xp, g_xp)  # (N, n_terms)
    y = np.asarray(delta, dtype=np.float64)
    keep = np.all(np.isfinite(X), axis=1) & np.isfinite(y)
    if keep.sum() <= X.shape[1]:
        raise ValueError(f"{int(keep.sum())} usable rows for {X.shape[1]} coefficients; need more")
    usable = keep.copy()
    coef = np.zeros(X.shape[1])
    for _ in range(max_iter):
        coef = np.linalg.lstsq(X[keep], y[keep], rcond=None)[0]
        r = y - X @ coef
        mad = 1.4826 * np.median(np.abs(r[keep] - np.median(r[keep])))
        new = usable & (np.abs(r - np.median(r[keep])) < clip_sigma * mad)
        if np.array_equal(new, keep):
            break
        keep = new
    nc = colour_degree + 1
    return PhotometricCorrection(
        tuple(float(v) for v in coef[:nc]),
        tuple(float(v) for v in coef[nc:]),
        t.colour_range,
        t.g_range,
        t.g_pivot,
    )


# Fitted by benchmarks/g_from_xp.py on the 23,399 clean training stars of the APOGEE×XP dev file (split
# "train" of split_by_source_id, |C*| < 3σ), passbands PASSBAND_SHA256; held-out numbers in its JSON.
G_CORRECTION = PhotometricCorrection(
    colour_coefficients=(
        0.007112242782967589,
        -0.005205570313393112,
        0.0019210868060838236,
        -0.000263527600973131,
    ),
    g_coefficients=(-0.000245647870278037, 0.00019802650076075452, -9.31330612168373e-05),
)
"""ΔG [mag]: G_DR3 ≈ G_XP + ΔG(BP−RP_XP, G_XP) (cubic in colour, cubic in G; module docstring)."""
BP_RP_CORRECTION = PhotometricCorrection(
    colour_coefficients=(
        0.006065578253832837,
        -0.0027261745138763564,
        0.0022853365066134767,
        -0.0001471784055943564,
    ),
    g_coefficients=(0.0010118217135474613, -0.00026355964945384873, -8.918985801515944e-05),
)
"""Δ(BP−RP) [mag]: (BP−RP)_DR3 ≈ (BP−RP)_XP + Δ(BP−RP_XP, G_XP)."""
G_FROM_XP_SIGMA_MAG: float = 0.0027
"""Extra 1σ uncertainty [mag] of G from XP after G_CORRECTION: robust σ of G_DR3 − G on the held-out
(test split) clean stars of the dev file, 2.65 mmag; add in quadrature to the statistical error."""
BP_RP_FROM_XP_SIGMA_MAG: float = 0.0025
"""Extra 1σ uncertainty [mag] of BP−RP from XP after BP_RP_CORRECTION (held-out robust σ 2.47 mmag)."""


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
