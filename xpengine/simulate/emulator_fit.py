"""Fitting the XP spectral emulator on the real APOGEE×XP spectra (the dev split's train rows).

Part 1 of what `xpengine.simulate.calibration.fit_calibration` fits (its docstring describes the model
and the data): the targets y = log10(F / f_G) and their weights (`emulator_targets`), per region a
weighted ridge fit with per-star grey offsets, clipping and residual statistics on held-out rows
(`fit_emulator`), and the hot stars' E(B−V) from their 2MASS colour excess (`hot_star_ebv`).
"""

from __future__ import annotations

import logging

import numpy as np

from xpengine.features.normalise import G_ZERO_POINT_MAG
from xpengine.model.standardize import robust_sigma
from xpengine.simulate.emulator_model import (
    EMULATOR_REGIONS,
    R_V,
    extinction_curve,
    label_features,
    region_powers,
)

__all__ = ["AK_PER_EBV", "emulator_targets", "fit_emulator", "hot_star_ebv", "read_apogee_xp"]

logger = logging.getLogger("xpengine.simulate.calibration")  # the fit's records keep the calibration logger

AK_PER_EBV = 0.352  # REFERENCE §7: E(B−V) = AK_TARG / 0.352
#: the sampled spectra's grid: 336–1020 nm in steps of 2 nm (343 pixels)
WAVELENGTH_NM = np.arange(336.0, 1020.1, 2.0)

_APOGEE_XP_COLUMNS = (
    "teff",
    "logg",
    "fe_h",
    "alpha_m",
    "ak_targ",
    "gaiaedr3_phot_g_mean_mag",
    "j",
    "h",
    "k",
    "medflux",
)


def read_apogee_xp(path: str) -> dict[str, np.ndarray]:
    """The APOGEE×XP file's labels, photometry and sampled spectra (`xpengine.io.read_fits_columns`)."""
    from xpengine.io import read_fits_columns
    from xpengine.io._arrays import source_id_numpy

    d = read_fits_columns(
        path, [*_APOGEE_XP_COLUMNS, "gaiaedr3_source_id", "flux", "flux_error"], what="APOGEE×XP file"
    )
    out = {c: np.asarray(d[c], dtype=np.float64) for c in _APOGEE_XP_COLUMNS}
    out["source_id"] = source_id_numpy(d["gaiaedr3_source_id"], path, "gaiaedr3_source_id")
    out["flux"] = np.asarray(d["flux"], dtype=np.float64)
    out["flux_error"] = np.asarray(d["flux_error"], dtype=np.float64)
    return out


def emulator_targets(d: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The emulator's targets from the APOGEE×XP rows `d` (`read_apogee_xp`): f_G (N,) [e⁻/s] from the
    archive G, y = log10(F / f_G) (N, n_wl), its σ_y and the fit weights 1/(σ_y² + 0.003²) (0 where the
    flux is not positive or σ_y not finite)."""
    f_g = 10.0 ** ((G_ZERO_POINT_MAG - d["gaiaedr3_phot_g_mean_mag"]) / 2.5)
    F = d["flux"] * d["medflux"][:, None]
    s = F / f_g[:, None]
    positive = d["flux"] > 0
    Y = np.log10(np.where(positive, s, 1.0))
    sig_y = d["flux_error"] / np.where(positive, d["flux"], 1.0) / np.log(10.0)
    W = np.where(positive & np.isfinite(sig_y), 1.0 / (sig_y**2 + 0.003**2), 0.0)
    return f_g, Y, sig_y, W


def fit_emulator(
    d: dict[str, np.ndarray], is_train: np.ndarray, stat: np.ndarray
) -> tuple[dict[str, np.ndarray], dict[str, dict[str, object]], np.ndarray]:
    """Fit every region of `EMULATOR_REGIONS` on the rows `is_train` (N,) bool of `d`, the rows `stat`
    (N,) bool kept out of the coefficients for the residual statistics. Returns the `{region}_*` arrays
    of the calibration file, the provenance per region and (N,) bool: the rows any region used."""
    wl = WAVELENGTH_NM
    f_g, Y, sig_y, W = emulator_targets(d)
    ebv = np.clip(d["ak_targ"] / AK_PER_EBV, 0.0, None)
    kappa = -0.4 * R_V * extinction_curve(wl)
    band = (wl >= 400) & (wl <= 1000)
    base_ok = (
        is_train
        & np.isfinite(d["teff"])
        & np.isfinite(d["logg"])
        & np.isfinite(f_g)
        & np.all(np.isfinite(np.where(W > 0, Y, 0.0)), axis=1)
        & ((W[:, band] > 0).mean(1) > 0.9)
    )
    metals_ok = np.isfinite(d["fe_h"]) & np.isfinite(d["alpha_m"])
    out: dict[str, np.ndarray] = {}
    used = np.zeros(len(base_ok), dtype=bool)
    prov_regions = {}
    ebv_hot = np.clip(hot_star_ebv(d["teff"], d["logg"], d["j"], d["k"]), -0.1, None)
    for name, spec in EMULATOR_REGIONS.items():
        t_lo, t_hi, g_lo, g_hi = spec["fit_box"]
        metals = bool(spec["metals"])
        sel = base_ok & (d["teff"] >= t_lo) & (d["teff"] <= t_hi) & (d["logg"] >= g_lo) & (d["logg"] <= g_hi)
        ebv_r = ebv_hot if spec.get("ebv") == "jk" else ebv
        sel &= np.isfinite(ebv_r)
        if metals:
            sel &= metals_ok
        idx = np.nonzero(sel)[0]
        fe = d["fe_h"][idx] if metals else np.zeros(idx.size)
        al = d["alpha_m"][idx] if metals else np.zeros(idx.size)
        raw = np.stack([5040.0 / d["teff"][idx] - 1.0, d["logg"][idx], fe, al], 1)
        lo_r, hi_r = raw.min(0), raw.max(0)
        centre = 0.5 * (lo_r + hi_r)
        scale = np.where(hi_r > lo_r, 0.5 * (hi_r - lo_r), 1.0)
        powers = region_powers(metals, int(spec["degree"]), spec.get("max_powers"))
        X = label_features(d["teff"][idx], d["logg"][idx], fe, al, powers, centre, scale)
        res = _fit_emulator_class(
            X,
            Y[idx],
            W[idx],
            sig_y[idx],
            ebv_r[idx],
            kappa,
            band,
            ~stat[idx],
            stat[idx],
            ridge=float(spec["ridge"]),
        )
        used[idx] = True
        for k, v in res.items():
            out[f"{name}_{k}"] = v
        lab = np.stack([d["teff"][idx], d["logg"][idx], d["fe_h"][idx], d["alpha_m"][idx]], 1)
        lo = np.nanmin(lab, 0) if metals else np.r_[lab[:, :2].min(0), np.nan, np.nan]
        hi = np.nanmax(lab, 0) if metals else np.r_[lab[:, :2].max(0), np.nan, np.nan]
        out[f"{name}_label_min"], out[f"{name}_label_max"] = lo, hi
        out[f"{name}_powers"] = powers
        out[f"{name}_centre"], out[f"{name}_scale"] = centre, scale
        out[f"{name}_metals"] = np.array(metals)
        out[f"{name}_fit_box"] = np.array(spec["fit_box"], dtype=np.float64)
        out[f"{name}_n_stars"] = np.array(int(idx.size))
        prov_regions[name] = _region_provenance(spec, powers, idx.size, res)
        logger.info(
            "emulator %s: %d stars (%d fitted, %d clipped), residual %.4f dex (median 400-1000 nm), "
            "grey rms %.3f dex",
            name,
            idx.size,
            int(res["n_fit"]),
            int(res["n_clipped"]),
            float(np.median(res["resid_rms"][band])),
            float(res["grey_rms"]),
        )
    return out, prov_regions, used


def _region_provenance(
    spec: dict[str, object], powers: np.ndarray, n_rows: int, res: dict[str, np.ndarray]
) -> dict[str, object]:
    """What one region was fitted on and with (the calibration file's provenance)."""
    return {
        "fit_box_teff_logg": list(spec["fit_box"]),
        "reads_fe_h_alpha_m": bool(spec["metals"]),
        "degree": int(spec["degree"]),
        "n_terms": int(powers.shape[0]),
        "ridge": float(spec["ridge"]),
        "n_rows": int(n_rows),
        "n_coefficient_fit": int(res["n_fit"]),
        "n_clipped": int(res["n_clipped"]),
        "n_residual_statistics": int(res["n_stat"]),
    }


def _fit_emulator_class(
    X: np.ndarray,
    Y: np.ndarray,
    W: np.ndarray,
    sig_y: np.ndarray,
    ebv: np.ndarray,
    kappa: np.ndarray,
    band: np.ndarray,
    train: np.ndarray,
    held: np.ndarray,
    *,
    ridge: float = 1e-7,
    clip: float = 6.0,
) -> dict[str, np.ndarray]:
    """Weighted ridge LS per pixel with per-star grey offsets, fitted on the rows `train` (N,) bool.

    Three passes: fit, grey offsets, drop the training stars whose robust residual level (median |r| over
    `band`) exceeds `clip` times the median (bad labels, binaries, blends), refit. Residual statistics
    (rms, principal components) are computed on the rows `held` (N,) bool, never fitted.
    Returns coefficients `coef` (n_terms, n_wl) and the residual statistics.
    """
    n, p = X.shape
    g = np.zeros(n)
    B = np.zeros((p, Y.shape[1]))
    use = train.copy()
    wb = W * band[None, :]
    for it in range(3):
        target = Y - ebv[:, None] * kappa[None, :] - g[:, None]  # (N, n_wl)
        Xt, Tt, Wt = X[use], target[use], W[use]
        for j in range(Y.shape[1]):
            A = Xt * Wt[:, j : j + 1]
            G = A.T @ Xt
            lam = ridge * np.trace(G) / p + 1e-12
            B[:, j] = np.linalg.solve(G + lam * np.eye(p), A.T @ Tt[:, j])
        resid = Y - X @ B - ebv[:, None] * kappa[None, :]
        g = (wb * resid).sum(1) / np.maximum(wb.sum(1), 1e-30)
        if it == 0:
            level = np.nanmedian(np.where(wb > 0, np.abs(resid - g[:, None]), np.nan), axis=1)
            ok = np.isfinite(level) & (level <= clip * np.nanmedian(level[train]))
            use = train & ok
    # residual statistics after a per-star grey + extinction-correction fit (r = g + dE κ): the scatter
    # left is what the labels do not explain (AK_TARG is a noisy extinction estimate)
    r0 = Y - X @ B - ebv[:, None] * kappa[None, :]
    s1, sk, skk = wb.sum(1), (wb * kappa).sum(1), (wb * kappa**2).sum(1)
    sr, srk = (wb * r0).sum(1), (wb * r0 * kappa).sum(1)
    det = np.maximum(s1 * skk - sk**2, 1e-30)
    g2 = (skk * sr - sk * srk) / det
    de = (s1 * srk - sk * sr) / det
    resid = r0 - g2[:, None] - de[:, None] * kappa[None, :]
    held_r = np.where(W[held] > 0, resid[held], np.nan)
    rms = robust_sigma(held_r, axis=0)
    rms = np.where(np.isfinite(rms), rms, np.nanmax(rms))
    # principal components of the intrinsic residual scatter: covariance of the (clipped) residuals over
    # 470–1000 nm minus the measurement-noise variance (diagonal), tapered to 0 at the band edges; the
    # blue end is left out (its residuals are dominated by measurement noise: adding them would inject
    # noise-like structure into the high BP coefficients)
    wl_grid = np.arange(Y.shape[1]) * 2.0 + 336.0
    pc_band = (wl_grid >= 470.0) & (wl_grid <= 1000.0)
    res_b = np.clip(held_r[:, pc_band], -5 * rms[pc_band], 5 * rms[pc_band])
    res_b = np.where(np.isfinite(res_b), res_b, 0.0)
    res_b -= res_b.mean(0)
    cov = res_b.T @ res_b / len(res_b)
    noise_var = np.nanmedian(np.where(W[held][:, pc_band] > 0, sig_y[held][:, pc_band], np.nan) ** 2, axis=0)
    vals, vecs = np.linalg.eigh(cov - np.diag(noise_var))
    order = np.argsort(vals)[::-1][:6]
    vals, vecs = np.clip(vals[order], 0.0, None), vecs[:, order]
    pcs = np.zeros((len(order), Y.shape[1]))
    wl = np.nonzero(pc_band)[0]
    taper = np.clip(np.minimum(np.arange(wl.size), np.arange(wl.size)[::-1]) / 20.0, 0.0, 1.0)
    pcs[:, pc_band] = (vecs * np.sqrt(vals)).T * taper[None, :]  # (n_pc, n_wl) 1-sigma amplitudes
    # keep only the smooth part (Gaussian, σ = 12 nm, about the XP resolution): pixel-scale structure
    # left in the components is measurement noise (sampled spectra are correlated over ~10 pixels)
    k = np.exp(-0.5 * (np.arange(-18, 19) / 6.0) ** 2)
    k /= k.sum()
    pcs = np.stack([np.convolve(pc, k, mode="same") for pc in pcs])
    return {
        "coef": B,
        "resid_rms": rms,
        "resid_pcs": pcs,
        "grey_rms": np.array(robust_sigma(g[held])),
        "ebv_correction_rms": np.array(robust_sigma(de[held])),
        "n_fit": np.array(int(use.sum())),
        "n_clipped": np.array(int((train & ~use).sum())),
        "n_stat": np.array(int(held.sum())),
    }


def hot_star_ebv(teff: np.ndarray, logg: np.ndarray, j: np.ndarray, ks: np.ndarray) -> np.ndarray:
    """E(B−V) [mag] (N,) of hot stars from their 2MASS colour excess: (J − Ks − (J − Ks)_0) / (E(J − Ks)/E(B−V)),
    both from the MIST/C3K bolometric-correction tables at the star's Teff, logg and solar [M/H]
    (:mod:`xpengine.simulate.isochrones`; R_V = 3.1). NaN where J or Ks is missing (≥ 50 or NaN).

    Why not AK_TARG: it is the RJCE estimate 0.918 (H − [4.5] − 0.08), whose intrinsic colour is that of
    cool stars. On the real dev stars above 8000 K it leaves the Gaia BP − RP 0.2–0.7 mag redder and J − Ks
    0.1–0.3 mag redder than the tables' intrinsic colours (both excesses in the ratio of reddening), and
    10% of them get a negative AK_TARG.
    """
    from xpengine.simulate import isochrones as iso

    teff = np.asarray(teff, dtype=np.float64)
    logg = np.asarray(logg, dtype=np.float64)
    bc = iso.bolometric_corrections(teff, logg, 0.0)
    jk0 = bc["ks"] - bc["j"]
    ext = iso.extinction(teff, logg, 0.0, np.full(teff.shape, R_V))  # A_V = 3.1: E(B−V) = 1
    per_ebv = ext["a_j"] - ext["a_ks"]
    j, ks = np.asarray(j, dtype=np.float64), np.asarray(ks, dtype=np.float64)
    ok = np.isfinite(j) & np.isfinite(ks) & (j < 50) & (ks < 50)
    return np.where(ok, (np.where(ok, j - ks, 0.0) - jk0) / per_ebv, np.nan)
