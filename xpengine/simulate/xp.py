"""Synthetic Gaia XP spectra: emulated intrinsic spectra, reddening, flux scale, coefficients and noise.

Chain for N stars (all vectorised):

1. Intrinsic spectrum: the data-driven emulator of :mod:`xpengine.simulate.calibration` (log10 flux on
   the 343-pixel 336–1020 nm grid) fitted on the real APOGEE × XP spectra of the dev split's train rows
   (v2, the default `sim_calibration_v2.npz`): four overlapping label regions blended smoothly in Teff
   and logg — giants (polynomial of degree 5 in Teff, logg, [Fe/H], [α/M]), FGK dwarfs (degree 4), M
   dwarfs (Teff only, to 3130 K), hot stars (Teff and logg only, to 19,900 K: ASPCAP gives hot stars no
   [Fe/H]) — covering [Fe/H] down to −2.45 (giants) and −2.40 (dwarfs; few real dwarfs below −1.5). By
   default a random draw of the 6 leading principal components of the emulator residuals is added (the
   spectral diversity the labels do not explain, ≈ 0.007 dex rms). Held-out real stars are reproduced to
   a median 1.4–3% in flux over 400–1000 nm per region once the extinction estimate's error is removed
   (benchmarks/realism_report.py --physics mist, section 1). The v1 file (two classes, giants 3500–5800
   K, dwarfs 3585–6809 K) stays readable by path; for it `cls` chooses the class.
2. Reddening: × 10^(−0.4 · 3.1 E(B−V) A_λ/A_V), Fitzpatrick (1999), R_V = 3.1 (PyPI `extinction`).
3. Coefficients: archive-like continuous coefficients [e⁻ s⁻¹] of the reddened spectrum by an
   order-weighted Tikhonov inverse, c = argmin ‖f − c A‖² + λ ‖Γ c‖², Γ = diag(1 + (i/10)⁴) (i = order
   within the band), λ = 3e-9 · tr(A Aᵀ)/110, A the GaiaXPy sampling matrix (`xpengine.spectra`). The
   emulated spectrum is not exactly in the span of the 110 basis functions (0.5% rms outside it, mostly
   emulator roughness at the blue end); the star's true spectrum is DEFINED as c A, so every product
   (sampled flux, photometry, noise) is consistent with the written coefficients. Why not the engine's
   representation (`coefficients_from_sampled`, a projection): its raw coefficients differ from archive
   ones by a median 30 σ on the real source Gaia DR3 5937083312263887616, whereas this inverse applied to
   that source's real archive XP_SAMPLED reproduces the ARCHIVE coefficients to 0.5 σ (orders 0–9;
   0.13 σ with λ = 1e-14) with archive-like high orders; λ = 3e-9 (instead of 1e-14) keeps the high
   orders of the slightly rough emulated spectra small. `X_n_relevant_bases` then comes out below DR3's
   for bright stars: on the seed-12 MIST sky the BP / RP medians are 35 / 27 at G 10–12, 31 / 21 at
   G 13–14 and 14 / 13 at G 17–18, against ≈ 53 / 40–50 for the real bright DR3 rows in tests/data
   (and 8 % of the G 17–18 stars keep ≥ 50 BP orders where real faint rows keep 3–12;
   `benchmarks/results/relevancy_sensitivity.md` measures what this is worth to gaia-xp).
4. Flux scale and photometry: the G, BP, RP passbands of Gaia DR3 in coefficient space (GaiaXPy
   `GaiaDr3Vega`, Montegriffo et al. 2023), flux = c V, mag = −2.5 log10(flux) + zp; on real APOGEE×XP
   spectra this synthetic G matches `phot_g_mean_mag` to 0.003 mag. A_G, A_BP, A_RP follow from the
   intrinsic and reddened coefficients; the coefficients are scaled so that their synthetic G equals the
   star's G (bolometric-correction M_G + distance modulus + A_G): G from the spectrum and G from the BC
   relation agree by construction, BP − RP is the spectrum's own.
5. Noise (per band X): coefficient errors e_i = k · s_X · τ_i, τ = the median error shape of real DR3
   rows; s_X² = a_X² c0_X² + b_X² c0_X (photon + calibration floor, fitted on real rows), k per star so
   that the median relative flux error over 400–1000 nm equals σ_rel(G) = sqrt(0.0045² +
   (0.0182 · 10^(0.2 (G − 15)))²) (REFERENCE §7) times a lognormal scan-law factor (σ = 0.12 dex).
   Correlations: R(G) = R_faint + β(G) (R_bright − R_faint), β = 1/(1 + exp((G − 14.5)/1.0)) quantised
   to 8 levels by default (valid correlation matrices: convex combinations of positive-definite templates);
   noise = e ⊙ (L z), L = chol(R). `X_n_relevant_bases` = 1 + last index with |c_i|/e_i > 4, in
   [3, 55] (reproduces the real rows of `gaia_dr3_samples` within a few bases for 9 of 12 bands);
   `X_relative_shrinking` = ‖c[:n_rel]‖/‖c‖; `X_n_measurements` ∝ transits (more at |β_ecl| ≈ 45°)
   with 60 (bright) to 30 (faint) BP and 75 to 62 RP samples per transit; chi² from a χ²_dof draw
   scaled by (1 + excess(G))², standard_deviation = sqrt(chi²/dof).
"""

from __future__ import annotations

import functools
import logging

import numpy as np

from xpengine.simulate.calibration import load_calibration
from xpengine.simulate.emulator_model import extinction_curve, label_features, region_weights

__all__ = [
    "N_QUANT_CORR",
    "XPNoiseModel",
    "add_xp_noise",
    "archive_like_coefficients",
    "emulator_domain",
    "intrinsic_spectra",
    "passbands",
    "scale_and_redden",
    "sigma_rel_g",
]

logger = logging.getLogger(__name__)

N_QUANT_CORR = 8
_DR3_SOLUTION_ID = 4545469030156206080  # solution_id of the real DR3 rows in gaia_dr3_samples
_RV = 3.1


def sigma_rel_g(g_mag: np.ndarray) -> np.ndarray:
    """Median relative XP flux error over 400–1000 nm vs G (REFERENCE §7 fit to real APOGEE×XP stars)."""
    return np.sqrt(0.0045**2 + (0.0182 * 10.0 ** (0.2 * (np.asarray(g_mag) - 15.0))) ** 2)


def _is_v2(cal: dict[str, np.ndarray]) -> bool:
    return "format_version" in cal and int(cal["format_version"]) >= 2


def _v2_region_labels(
    cal: dict[str, np.ndarray],
    name: str,
    teff: np.ndarray,
    logg: np.ndarray,
    fe_h: np.ndarray,
    alpha_m: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Labels clamped to region `name`'s fitted range; [Fe/H], [α/M] set to 0 where the region ignores them."""
    lo, hi = cal[f"{name}_label_min"], cal[f"{name}_label_max"]
    t = np.clip(teff, lo[0], hi[0])
    g = np.clip(logg, lo[1], hi[1])
    if bool(cal[f"{name}_metals"]):
        return t, g, np.clip(fe_h, lo[2], hi[2]), np.clip(alpha_m, lo[3], hi[3])
    z = np.zeros_like(t)
    return t, g, z, z


def intrinsic_spectra(
    cls: np.ndarray,
    teff: np.ndarray,
    logg: np.ndarray,
    fe_h: np.ndarray,
    alpha_m: np.ndarray,
    rng: np.random.Generator | None,
    cal: dict[str, np.ndarray] | None = None,
) -> np.ndarray:
    """Unreddened relative spectra (N, 343) on 336–1020 nm at labels (N,) [K, dex, dex, dex].

    v2 calibration (the default): the labels alone choose the emulator regions and their blend
    (:func:`xpengine.simulate.calibration.region_weights`); `cls` is not used. v1 files: `cls` (N,)
    (0 dwarf, 1 giant) chooses the class. Labels are clamped to each region's (class's) fitted range.
    With `rng`, a random draw of the residual principal components is added (v2: one standard-normal
    vector per star, applied to the blended regions' components). Arbitrary overall scale (fixed later by
    the G passband).
    """
    cal = load_calibration() if cal is None else cal
    n = len(teff)
    teff = np.asarray(teff, dtype=np.float64)
    logg = np.asarray(logg, dtype=np.float64)
    fe_h = np.asarray(fe_h, dtype=np.float64)
    alpha_m = np.asarray(alpha_m, dtype=np.float64)
    out = np.empty((n, cal["wavelength_nm"].size))
    if _is_v2(cal):
        names = [str(r) for r in cal["emulator_regions"]]
        w = region_weights(teff, logg, cal["emulator_blend"])  # (N, n_regions)
        n_pc = cal[f"{names[0]}_resid_pcs"].shape[0]
        z = rng.standard_normal((n, n_pc)) if rng is not None else None
        y = np.zeros_like(out)
        for k, name in enumerate(names):
            sel = w[:, k] > 0
            if not sel.any():
                continue
            labels = _v2_region_labels(cal, name, teff[sel], logg[sel], fe_h[sel], alpha_m[sel])
            X = label_features(*labels, cal[f"{name}_powers"], cal[f"{name}_centre"], cal[f"{name}_scale"])
            yk = X @ cal[f"{name}_coef"]
            if z is not None:
                yk = yk + z[sel] @ cal[f"{name}_resid_pcs"]
            y[sel] += w[sel, k : k + 1] * yk
        return 10.0 ** (y - y[:, 150:151])  # normalise near 636 nm to keep numbers O(1)
    for code, name in ((0, "dwarf"), (1, "giant")):
        sel = cls == code
        if not sel.any():
            continue
        lo, hi = cal[f"{name}_label_min"], cal[f"{name}_label_max"]
        X = label_features(
            np.clip(teff[sel], lo[0], hi[0]),
            np.clip(logg[sel], lo[1], hi[1]),
            np.clip(fe_h[sel], lo[2], hi[2]),
            np.clip(alpha_m[sel], lo[3], hi[3]),
            cal["emulator_powers"],
        )
        y = X @ cal[f"{name}_coef"]  # (n_sel, 343) log10 flux
        if rng is not None:
            pcs = cal[f"{name}_resid_pcs"]
            y = y + rng.standard_normal((int(sel.sum()), pcs.shape[0])) @ pcs
        out[sel] = 10.0 ** (y - y[:, 150:151])  # normalise near 636 nm to keep numbers O(1)
    return out


def emulator_domain(
    teff: np.ndarray,
    logg: np.ndarray,
    fe_h: np.ndarray,
    alpha_m: np.ndarray,
    cal: dict[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Where the spectral emulator of :func:`intrinsic_spectra` is fitted, per star (all inputs (N,)).

    Returns (N,) arrays: `cls` int8 (0 dwarf, logg ≥ 3.5; 1 giant, logg < 3.5: the coarse class, as in the
    v1 emulator and the sky's drop tally); `inside` bool; `too_hot`, `too_cool` bool (Teff above / below
    the fitted range); `clamped` bool ([Fe/H] or [α/M] outside the fitted range: :func:`intrinsic_spectra`
    uses the nearest fitted value).

    v2 calibration (default): the regions that shape the star's spectrum are the one of largest blend weight
    and any other of weight ≥ 0.25 (:func:`xpengine.simulate.calibration.region_weights`: giant, FGK dwarf,
    M dwarf, hot); the star is `inside` when its Teff and logg lie within the range of the real training
    stars of one of them (`{region}_label_min/max`: giants 3114–6850 K, logg −0.47–3.90; FGK dwarfs
    3800–6789 K, logg 3.10–5.28; M dwarfs 3129–4400 K, logg 3.11–5.30; hot stars 6300–19,857 K, logg
    1.75–4.73), `too_hot` / `too_cool` when it is not and its Teff is above / below all of them; `clamped`
    uses the largest-weight region's [Fe/H], [α/M] range (the M-dwarf and hot regions do not read them: never
    clamped). v1 files: the class follows logg and `inside` is the class's Teff, logg range (dwarfs ≈
    3585–6809 K, logg 3.50–5.28; giants ≈ 3500–5798 K).
    """
    cal = load_calibration() if cal is None else cal
    teff, logg = np.asarray(teff, dtype=np.float64), np.asarray(logg, dtype=np.float64)
    fe_h, alpha_m = np.asarray(fe_h, dtype=np.float64), np.asarray(alpha_m, dtype=np.float64)
    cls = (logg < 3.5).astype(np.int8)
    if _is_v2(cal):
        names = [str(r) for r in cal["emulator_regions"]]
        w = region_weights(teff, logg, cal["emulator_blend"])  # (N, R)
        dom = np.argmax(w, axis=1)
        lo_r = np.stack([cal[f"{r}_label_min"] for r in names])  # (R, 4)
        hi_r = np.stack([cal[f"{r}_label_max"] for r in names])
        cand = (w >= 0.25) | (np.arange(len(names))[None, :] == dom[:, None])  # (N, R)
        in_box = (
            (teff[:, None] >= lo_r[None, :, 0])
            & (teff[:, None] <= hi_r[None, :, 0])
            & (logg[:, None] >= lo_r[None, :, 1])
            & (logg[:, None] <= hi_r[None, :, 1])
        )
        inside = np.any(cand & in_box, axis=1)
        t_lo = np.where(cand, lo_r[None, :, 0], np.inf).min(axis=1)
        t_hi = np.where(cand, hi_r[None, :, 0], -np.inf).max(axis=1)
        lo, hi = lo_r[dom], hi_r[dom]  # (N, 4)
        metals = np.array([bool(cal[f"{r}_metals"]) for r in names])[dom]
        within = [(v >= lo[:, k]) & (v <= hi[:, k]) for k, v in enumerate((fe_h, alpha_m), start=2)]
        return {
            "cls": cls,
            "inside": inside,
            "too_hot": ~inside & (teff > t_hi),
            "too_cool": ~inside & (teff < t_lo),
            "clamped": metals & ~(within[0] & within[1]),
        }
    else:
        lo = np.stack([cal["dwarf_label_min"], cal["giant_label_min"]])[cls]  # (N, 4)
        hi = np.stack([cal["dwarf_label_max"], cal["giant_label_max"]])[cls]
        metals = np.ones(len(teff), dtype=bool)
    labels = (teff, logg, fe_h, alpha_m)
    within = [(v >= lo[:, k]) & (v <= hi[:, k]) for k, v in enumerate(labels)]  # NaN -> False
    return {
        "cls": cls,
        "inside": within[0] & within[1],
        "too_hot": teff > hi[:, 0],
        "too_cool": teff < lo[:, 0],
        "clamped": metals & ~(within[2] & within[3]),
    }


@functools.lru_cache(maxsize=1)
def _tikhonov_matrix(lam_rel: float = 3e-9, power: float = 4.0) -> np.ndarray:
    """(n_wl, n_bp + n_rp) matrix M with c = f @ M (see module docstring, step 4)."""
    from xpengine.spectra import default_sampling

    s = default_sampling()
    A = s.A  # (n_c, n_wl)
    order = np.concatenate([np.arange(s.n_bp), np.arange(s.n_rp)]).astype(np.float64)
    gamma = 1.0 + (order / 10.0) ** power
    aat = A @ A.T
    lam = lam_rel * np.trace(aat) / A.shape[0]
    M = np.linalg.solve(aat + lam * np.diag(gamma**2), A).T
    M.setflags(write=False)
    return M


def archive_like_coefficients(flux: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Noise-free archive-like coefficients (bp (N, 55), rp (N, 55)) [e⁻/s] of sampled spectra
    flux (N, 343) [W m^-2 nm^-1] (order-weighted Tikhonov inverse, module docstring step 4)."""
    from xpengine.spectra import default_sampling

    n_bp = default_sampling().n_bp
    c = np.asarray(flux, dtype=np.float64) @ _tikhonov_matrix()
    return c[:, :n_bp], c[:, n_bp:]


@functools.lru_cache(maxsize=1)
def _extinction_grid() -> np.ndarray:
    cal = load_calibration()
    return extinction_curve(cal["wavelength_nm"])


@functools.lru_cache(maxsize=1)
def passbands() -> tuple[np.ndarray, np.ndarray]:
    """(V (110, 3), zero points (3,)): synthetic flux of coefficients c (N, 110) in band (G, BP, RP) is
    c @ V and mag = −2.5 log10(c @ V) + zp (GaiaXPy `GaiaDr3Vega` filter, stored in the calibration)."""
    cal = load_calibration()
    return (
        np.asarray(cal["passband_vectors"], dtype=np.float64),
        np.asarray(cal["passband_zero_points"], dtype=np.float64),
    )


def scale_and_redden(
    intrinsic: np.ndarray,
    ebv: np.ndarray,
    g_intrinsic_abs: np.ndarray,
    distance_modulus: np.ndarray,
    a_g: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Redden relative spectra, turn them into archive-like coefficients and scale them to the star's G.

    intrinsic: (N, 343) relative spectra; ebv: (N,) E(B−V) [mag]; g_intrinsic_abs: (N,) unreddened
    absolute M_G [mag]; distance_modulus: (N,) [mag]; a_g: (N,) A_G [mag] that sets the apparent G
    (e.g. the MIST tables' A_G of the star's own SED); default: the spectrum's own, below. Returns
    `coefficients` (N, 110) [e⁻/s, BP then RP], their sampled spectrum `flux` (N, 343) [W m^-2 nm^-1]
    (= coefficients @ A, so exactly what GaiaXPy would sample from them), extinctions a_g/a_bp/a_rp [mag]
    from the intrinsic vs reddened synthetic photometry of the spectrum, and the apparent noise-free
    synthetic magnitudes g/bp/rp (g = g_intrinsic_abs + distance_modulus + A_G).
    """
    from xpengine.spectra import default_sampling

    V, zp = passbands()
    M = _tikhonov_matrix()
    ext = _extinction_grid()
    red = intrinsic * 10.0 ** (-0.4 * _RV * ebv[:, None] * ext[None, :])
    c0 = intrinsic @ M  # (N, 110)
    c1 = red @ M
    f0 = c0 @ V  # (N, 3)
    f1 = c1 @ V
    with np.errstate(divide="ignore", invalid="ignore"):
        a = -2.5 * np.log10(f1 / f0)
    g_app = g_intrinsic_abs + distance_modulus + (a[:, 0] if a_g is None else a_g)
    scale = 10.0 ** (-0.4 * (g_app - zp[0])) / f1[:, 0]
    coef = c1 * scale[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        mags = -2.5 * np.log10(f1 * scale[:, None]) + zp[None, :]
    return {
        "coefficients": coef,
        "flux": coef @ default_sampling().A,
        "a_g": a[:, 0],
        "a_bp": a[:, 1],
        "a_rp": a[:, 2],
        "g": mags[:, 0],
        "bp": mags[:, 1],
        "rp": mags[:, 2],
    }


class XPNoiseModel:
    """Precomputed noise templates (error shapes, correlation levels and their Cholesky factors).

    n_levels: number of G-quantised correlation templates (β levels at the bin centres); 1 uses the
    single template β = 0.5 for every star (the bulk text then compresses ~10× better).
    """

    def __init__(self, cal: dict[str, np.ndarray] | None = None, n_levels: int = N_QUANT_CORR) -> None:
        if n_levels < 1:
            raise ValueError(f"n_levels={n_levels}; expected >= 1")
        from xpengine.spectra import default_representation

        cal = load_calibration() if cal is None else cal
        rep = default_representation()
        s = rep.sampling
        self.n = {"bp": s.n_bp, "rp": s.n_rp}
        self.shape = {b: np.asarray(cal[f"{b}_error_shape"], dtype=np.float64) for b in ("bp", "rp")}
        self.photon_ab = {b: np.asarray(cal[f"{b}_photon_ab"], dtype=np.float64) for b in ("bp", "rp")}
        levels = (np.arange(n_levels) + 0.5) / n_levels
        self.levels = levels
        self.corr: dict[str, list[np.ndarray]] = {}
        self.chol: dict[str, list[np.ndarray]] = {}
        self.corr_vec: dict[str, list[np.ndarray]] = {}
        self.flux_var_template: dict[str, np.ndarray] = {}
        design = {"bp": s.design_bp * s.weight_bp, "rp": s.design_rp * s.weight_rp}
        for b in ("bp", "rp"):
            Rb, Rf = cal[f"{b}_corr_bright"], cal[f"{b}_corr_faint"]
            mats, chols, vecs, tvar = [], [], [], []
            tri = np.tril_indices(self.n[b], -1)
            for beta in levels:
                R = np.round(Rf + beta * (Rb - Rf), 4).astype(np.float32).astype(np.float64)
                np.fill_diagonal(R, 1.0)
                mats.append(R)
                chols.append(np.linalg.cholesky(R))
                vecs.append(R[tri].astype(np.float32))
                # flux variance per unit error scale: diag(Dᵀ diag(τ) R diag(τ) D), (343,)
                Q = self.shape[b][:, None] * design[b]  # (n, 343)
                tvar.append(np.einsum("il,il->l", Q, R @ Q))
            self.corr[b], self.chol[b], self.corr_vec[b] = mats, chols, vecs
            self.flux_var_template[b] = np.stack(tvar)  # (n_levels, 343)
        wl = s.wavelength_nm
        self.band_pixels = (wl >= 400.0) & (wl <= 1000.0)


def _transits(ecl_lat_deg: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Number of field-of-view transits (Gaia DR3 scanning law caricature: more at |β| ≈ 45°), ≥ 15."""
    lam = 32.0 + 22.0 * np.exp(-(((np.abs(ecl_lat_deg) - 45.0) / 12.0) ** 2))
    return np.maximum(rng.poisson(lam), 15)


def add_xp_noise(
    bp_true: np.ndarray,
    rp_true: np.ndarray,
    flux: np.ndarray,
    g_mag: np.ndarray,
    ecl_lat_deg: np.ndarray,
    missing_bp: np.ndarray,
    rng: np.random.Generator,
    model: XPNoiseModel,
) -> dict[str, np.ndarray]:
    """Observed XP continuous columns for N stars (NumPy arrays, Gaia names; see module docstring).

    bp_true/rp_true: (N, 55) noiseless coefficients [e⁻/s]; flux: (N, 343) their sampled spectrum
    [W m^-2 nm^-1]; g_mag: (N,); ecl_lat_deg: (N,); missing_bp: (N,) bool (BP columns become NaN/-1).
    Correlations are returned as an index into `model.corr_vec[band]` (`{band}_corr_level`), so that
    the (N, 1485) float32 arrays are only built when a table is assembled.
    """
    n = len(g_mag)
    n_tr = _transits(ecl_lat_deg, rng)
    beta = 1.0 / (1.0 + np.exp((g_mag - 14.5) / 1.0))
    n_levels = len(model.levels)
    level = np.clip((beta * n_levels).astype(np.int64), 0, n_levels - 1)
    c0 = {"bp": np.maximum(np.abs(bp_true[:, 0]), 1e-3), "rp": np.maximum(np.abs(rp_true[:, 0]), 1e-3)}
    s_band = {}
    for b in ("bp", "rp"):
        a_, b_ = model.photon_ab[b]
        s_band[b] = c0[b] * np.sqrt(a_**2 + b_**2 / c0[b])
    var_unit = (
        s_band["bp"][:, None] ** 2 * model.flux_var_template["bp"][level]
        + s_band["rp"][:, None] ** 2 * model.flux_var_template["rp"][level]
    )  # (N, 343)
    rel = np.sqrt(var_unit[:, model.band_pixels]) / np.abs(flux[:, model.band_pixels])
    k = sigma_rel_g(g_mag) * 10.0 ** rng.normal(0.0, 0.12, n) / np.median(rel, axis=1)
    out: dict[str, np.ndarray] = {}
    bright = 1.0 / (1.0 + np.exp((g_mag - 11.5) / 0.4))
    per_transit = {"bp": 30.0 + 30.0 * bright, "rp": 62.0 + 13.0 * bright}
    excess = 0.02 + 0.18 * bright * 10.0 ** rng.normal(0.0, 0.2, n)
    for b, true in (("bp", bp_true), ("rp", rp_true)):
        nb = true.shape[1]
        err = (k * s_band[b])[:, None] * model.shape[b][None, :]  # (N, nb)
        z = rng.standard_normal((n, nb))
        noise = np.empty_like(z)
        for q in range(n_levels):
            sel = level == q
            if sel.any():
                noise[sel] = z[sel] @ model.chol[b][q].T
        coef = true + err * noise
        signif = np.abs(coef) / err > 4.0
        last = np.where(signif.any(axis=1), nb - 1 - np.argmax(signif[:, ::-1], axis=1), 0)
        n_rel = np.clip(last + 1, 3, nb)
        idx = np.arange(nb)[None, :]
        norm_all = np.sqrt(np.sum(coef**2, axis=1))
        norm_kept = np.sqrt(np.sum(np.where(idx < n_rel[:, None], coef**2, 0.0), axis=1))
        n_meas = np.round(n_tr * per_transit[b] * rng.uniform(0.9, 1.05, n)).astype(np.int64)
        n_rej = rng.poisson(0.004 * n_meas)
        dof = n_meas - nb
        chi2 = rng.chisquare(np.maximum(dof, 1)) * (1.0 + excess) ** 2
        out[f"{b}_coefficients"] = coef
        out[f"{b}_coefficient_errors"] = err.astype(np.float32)
        out[f"{b}_corr_level"] = level
        out[f"{b}_n_relevant_bases"] = n_rel.astype(np.int16)
        out[f"{b}_relative_shrinking"] = (norm_kept / norm_all).astype(np.float32)
        out[f"{b}_n_measurements"] = n_meas.astype(np.int16)
        out[f"{b}_n_rejected_measurements"] = n_rej.astype(np.int16)
        out[f"{b}_degrees_of_freedom"] = dof.astype(np.int16)
        out[f"{b}_chi_squared"] = chi2.astype(np.float32)
        out[f"{b}_standard_deviation"] = np.sqrt(chi2 / np.maximum(dof, 1)).astype(np.float32)
    out["n_transits"] = n_tr
    out["missing_bp"] = np.asarray(missing_bp, dtype=bool)
    out["solution_id"] = np.full(n, _DR3_SOLUTION_ID, dtype=np.int64)
    return out
