"""Data-driven calibration of the synthetic sky: XP spectral emulator, XP noise templates, colours.

Everything the simulator learns from real data is fitted here ONCE and stored in the package file
`xpengine/simulate/data/sim_calibration_v2.npz` (≈ 0.9 MB; `CALIBRATION_FILE`), so that simulating needs
neither the 83 MB APOGEE×XP file nor GaiaXPy. Regenerate it with (≈ 1–2 min on 2 cores)::

    python -m xpengine.simulate.calibration \
        --apogee-xp /work/shared/data/apogee_xp/apogee_xp_dev.fits.gz \
        --gaia-samples /work/shared/data/gaia_dr3_samples \
        --output xpengine/simulate/data/sim_calibration_v2.npz

The file records what was fitted on which rows: `provenance` (JSON: input sha256, split counts, per
region the rows fitted / clipped / used for residual statistics) and `fit_source_ids` (every source_id
the emulator used: its coefficients or its residual statistics; all from the train split). The v1
file (`sim_calibration_v1.npz`: two classes, giants 3500–5800 K and dwarfs 3585–6809 K, fitted on a
random 80% of ALL dev rows, test split included) stays loadable by path;
:func:`xpengine.simulate.xp.intrinsic_spectra` reads both formats.

What is fitted
--------------
1. Spectral emulator (v2) on the real APOGEE DR17 × Gaia XP sampled spectra (336–1020 nm / 2 nm, 343
   pixels; labels Teff, logg, [Fe/H], [α/M]) of the dev split's "train" rows ONLY (split by source_id,
   `xpengine.datasets.splits`: no "test" row enters any fit, the "val" rows are kept for measuring it,
   benchmarks/realism_report.py --physics mist, section 1). Model: log10 of the flux normalised by the
   Gaia G flux, y = log10(F / f_G),
       y(λ) = Σ_k B_k(λ) φ_k(labels) + E(B−V) κ(λ) + g,
   in four overlapping regions (`EMULATOR_REGIONS`), each fitted on the real stars of its (Teff, logg) box:
   giants (3000–7200 K, logg < 3.9; degree 5, 126 terms), FGK dwarfs (3800–7300 K, logg > 3.1; degree 4,
   70 terms), M dwarfs (3000–4400 K, logg > 3.1; quartic in Teff ONLY: ASPCAP gives no [Fe/H] below
   ≈ 3600 K, and a logg term extrapolates badly to the isochrones' M-dwarf logg), hot stars (> 6300 K, any logg; degree 5 in Teff and logg ONLY). φ = the monomials of x = ((5040/Teff − 1, logg, [Fe/H], [α/M]) − centre)/scale, the centre and
   half-range of the region's training labels (so |x| ≤ 1 inside). The regions are blended with smooth
   weights (:func:`region_weights`: hot above 6600 → 7000 K, dwarf side above logg 3.3 → 3.7, M dwarfs
   below 3900 → 4200 K), so spectra are continuous in the labels. Hot stars: ASPCAP gives no [Fe/H] or
   [α/M] above 7000 K, so the hot region ignores them (a hot star's metallicity does not change its
   emulated spectrum; at XP resolution the continuum and Balmer lines of A/B stars depend mostly on Teff
   and logg), and its training E(B−V) is the 2MASS J − Ks excess (:func:`hot_star_ebv`) instead of
   AK_TARG, which is biased low for hot stars. Elsewhere E(B−V) = AK_TARG / 0.352 (REFERENCE §7).
   κ(λ) = −0.4 R_V A_λ/A_V (Fitzpatrick 1999, R_V = 3.1; PyPI `extinction`), g a per-star grey offset (it
   absorbs the G-band extinction and photometric errors). Weighted ridge least squares per pixel (weights
   1/(σ_y² + 0.003²), ridge 1e-7–1e-6 of the mean diagonal), alternated with the grey offsets; after the
   first pass, training stars whose residual level is > 6× the median are dropped (bad labels, binaries,
   blends: 2–8% per region). Residual statistics on a random 15% of the train rows kept out of the
   coefficients: the scatter per pixel (1.4826 MAD, after a per-star grey + E(B−V)-correction fit),
   `{region}_resid_rms`, and the 6 leading principal components of the INTRINSIC part of that scatter,
   `{region}_resid_pcs` (residual covariance minus the median measurement-noise variance over
   470–1000 nm, tapered to zero over 40 nm at the edges, smoothed with a 12 nm Gaussian; bluer and
   pixel-scale residuals are dominated by measurement noise and would inject noise-like structure into
   the high BP coefficients). Fitted label ranges: `{region}_label_min/max` (the emulator clamps to them).
2. Gaia DR3 G/BP/RP passbands in XP-coefficient space, from GaiaXPy's `GaiaDr3Vega` filter file
   (Montegriffo et al. 2023): flux_band = c @ V[:, band], mag = −2.5 log10(flux) + zp. On the real
   APOGEE×XP spectra, synthetic G from the engine's representation agrees with the archive
   `phot_g_mean_mag` to 0.003 mag (robust σ).
3. XP coefficient-error shape: per band the median over the real DR3 rows in `gaia_dr3_samples`
   (7 sources) of e_i / mean(e_0..e_4); the photon-noise split e_0² = a² c_0² + b² c_0 fitted on the
   same rows; correlation templates = mean correlation matrix of the bright (c_0 > 3000 e⁻/s) and of the
   faint rows, shrunk by 3% toward the identity and rounded to 4 decimals (both stay positive definite).
4. Dwarf 2MASS colours: (J−H)_0, (J−Ks)_0 and (G−Ks)_0 of the real APOGEE dwarfs (logg ≥ 3.8; train rows) as cubic
   polynomials in (5040/Teff − 1, logg − 4.5, [Fe/H]), dereddened with AK_TARG and the §7 A/A_V ratios,
   3-σ clipped.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import logging
from importlib import resources
from pathlib import Path

import numpy as np

__all__ = [
    "CALIBRATION_FILE",
    "LABEL_SCALES",
    "fit_calibration",
    "label_features",
    "load_calibration",
]

logger = logging.getLogger(__name__)

CALIBRATION_FILE = "sim_calibration_v2.npz"
#: Centres/scales of the emulator inputs (5040/Teff − 1, logg, [Fe/H], [α/M]).
LABEL_SCALES = ((0.0, 1.0), (2.5, 1.5), (0.0, 0.5), (0.0, 0.2))
_DEGREE = 4
_G_ZP_EPS = 25.6873668671  # Gaia DR3 G zero point [mag], f_G[e-/s] = 10^((ZP - G)/2.5) (Riello et al. 2021)
_AK_PER_EBV = 0.352  # REFERENCE §7
_RV = 3.1
#: A_band / A_V for giants (REFERENCE §7).
_A_OVER_AV = {"G": 0.80, "BP": 1.02, "RP": 0.63, "J": 0.289, "H": 0.183, "Ks": 0.118}

#: Format of the calibration files this module writes (v1 files have no `format_version`).
FORMAT_VERSION = 2
#: v2 emulator regions, in the column order of :func:`region_weights`: the (Teff_lo, Teff_hi [K],
#: logg_lo, logg_hi) box of the real stars each is fitted on (wider than where its blend weight is
#: non-zero), whether it reads [Fe/H] and [α/M], the total polynomial degree and the relative ridge.
EMULATOR_REGIONS: dict[str, dict[str, object]] = {
    "giant": {"fit_box": (3000.0, 7200.0, -1.0, 3.9), "metals": True, "degree": 5, "ridge": 1e-7},
    "fgk_dwarf": {"fit_box": (3800.0, 7300.0, 3.1, 6.0), "metals": True, "degree": 4, "ridge": 1e-7},
    "m_dwarf": {
        "fit_box": (3000.0, 4400.0, 3.1, 6.0),
        # ASPCAP gives no [Fe/H] below ≈ 3600 K (2 of the 217 dev M dwarfs there), and the rest span only
        # [Fe/H] −0.7 to +0.2: the M-dwarf region does not read them, so that it reaches 3130 K
        "metals": False,
        "degree": 4,
        "ridge": 1e-6,
        # no logg either: the real M dwarfs' ASPCAP logg is concentrated in 4.5–4.75 (and tracks their Teff
        # errors), the isochrones put M dwarfs at 4.7–5.1. With logg terms the emulated BP − RP of MIST-sky
        # M dwarfs came out 0.3–0.5 mag (cubic) or 0.23–0.36 mag (linear) red of MIST's; without, +0.05 mag,
        # and the held-out real M dwarfs are fitted as well (median flux residual 0.031 either way)
        "max_powers": (4, 0, 0, 0),
    },
    # E(B−V) of the hot rows from 2MASS J − Ks (:func:`hot_star_ebv`), not AK_TARG
    "hot": {
        "fit_box": (6300.0, 30000.0, -1.0, 6.0),
        "metals": False,
        "degree": 5,
        "ridge": 1e-7,
        "ebv": "jk",
    },
}
#: Blend zones of :func:`region_weights`: hot above Teff 6600 → 7000 K, dwarf side above logg 3.3 → 3.7,
#: M dwarfs (on the dwarf side) below Teff 3900 → 4200 K.
EMULATOR_BLEND = (6600.0, 7000.0, 3.3, 3.7, 3900.0, 4200.0)


def _monomial_powers(n_vars: int = 4, degree: int = _DEGREE) -> np.ndarray:
    """(n_terms, n_vars) integer powers of every monomial of total degree ≤ `degree` (constant first)."""
    rows = [np.zeros(n_vars, dtype=np.int64)]
    for d in range(1, degree + 1):
        for comb in itertools.combinations_with_replacement(range(n_vars), d):
            p = np.zeros(n_vars, dtype=np.int64)
            for i in comb:
                p[i] += 1
            rows.append(p)
    return np.stack(rows)


def label_features(
    teff: np.ndarray,
    logg: np.ndarray,
    m_h: np.ndarray,
    alpha_m: np.ndarray,
    powers: np.ndarray,
    centre: np.ndarray | None = None,
    scale: np.ndarray | None = None,
) -> np.ndarray:
    """Emulator design matrix (N, n_terms) from labels (N,) [K, dex, dex, dex] and monomial powers.

    The inputs are x = ((5040/Teff − 1, logg, [Fe/H], [α/M]) − centre) / scale, by default `LABEL_SCALES`
    (the v1 emulator); the v2 regions store their own `centre`, `scale` (4,).
    """
    if centre is None or scale is None:
        centre = np.array([c for c, _ in LABEL_SCALES])
        scale = np.array([s for _, s in LABEL_SCALES])
    raw = np.stack(
        [
            5040.0 / np.asarray(teff, dtype=np.float64) - 1.0,
            np.asarray(logg, dtype=np.float64),
            np.asarray(m_h, dtype=np.float64),
            np.asarray(alpha_m, dtype=np.float64),
        ],
        axis=1,
    )  # (N, 4)
    x = (raw - np.asarray(centre, dtype=np.float64)) / np.asarray(scale, dtype=np.float64)
    return np.prod(x[:, None, :] ** powers[None, :, :], axis=2)  # (N, n_terms)


def extinction_curve(wavelength_nm: np.ndarray) -> np.ndarray:
    """A_λ / A_V of Fitzpatrick (1999), R_V = 3.1 (PyPI `extinction`), shape like `wavelength_nm`."""
    import extinction

    return extinction.fitzpatrick99(np.asarray(wavelength_nm, dtype=np.float64) * 10.0, 1.0, _RV)


def _robust_std(x: np.ndarray, axis: int = 0) -> np.ndarray:
    med = np.nanmedian(x, axis=axis, keepdims=True)
    return 1.4826 * np.nanmedian(np.abs(x - med), axis=axis)


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
    rms = _robust_std(held_r, axis=0)
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
        "grey_rms": np.array(_robust_std(g[held])),
        "ebv_correction_rms": np.array(_robust_std(de[held])),
        "n_fit": np.array(int(use.sum())),
        "n_clipped": np.array(int((train & ~use).sum())),
        "n_stat": np.array(int(held.sum())),
    }


def region_weights(teff: np.ndarray, logg: np.ndarray, blend: np.ndarray) -> np.ndarray:
    """Blend weights (N, 4) of the v2 emulator regions (giant, fgk_dwarf, m_dwarf, hot), rows sum to 1.

    Smooth steps (3x² − 2x³) over the zones of `blend` = (hot Teff from, to [K], dwarf-side logg from, to,
    M-dwarf Teff from, to [K]) (`EMULATOR_BLEND`): the hot region takes over between the first two
    Teff, the dwarf side between the two logg, and on the dwarf side the M dwarfs below the last Teff.
    """

    def step(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
        u = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
        return u * u * (3.0 - 2.0 * u)

    teff = np.asarray(teff, dtype=np.float64)
    logg = np.asarray(logg, dtype=np.float64)
    w_hot = step(teff, blend[0], blend[1])
    w_dw = step(logg, blend[2], blend[3])
    w_m = 1.0 - step(teff, blend[4], blend[5])
    cool = 1.0 - w_hot
    return np.stack([cool * (1.0 - w_dw), cool * w_dw * (1.0 - w_m), cool * w_dw * w_m, w_hot], axis=1)


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


def _read_apogee_xp(path: str) -> dict[str, np.ndarray]:
    """The APOGEE×XP file's labels, photometry and sampled spectra (`xpengine.io.read_fits_columns`)."""
    from xpengine.io import read_fits_columns

    d = read_fits_columns(
        path, [*_APOGEE_XP_COLUMNS, "gaiaedr3_source_id", "flux", "flux_error"], what="APOGEE×XP file"
    )
    out = {c: np.asarray(d[c], dtype=np.float64) for c in _APOGEE_XP_COLUMNS}
    out["source_id"] = np.asarray(d["gaiaedr3_source_id"], dtype=np.int64)
    out["flux"] = np.asarray(d["flux"], dtype=np.float64)
    out["flux_error"] = np.asarray(d["flux_error"], dtype=np.float64)
    return out


_XP_ARRAY_COLUMNS = tuple(
    f"{band}_{kind}"
    for band in ("bp", "rp")
    for kind in ("coefficients", "coefficient_errors", "coefficient_correlations")
)


def _read_real_xp_rows(samples_dir: str) -> list[dict[str, object]]:
    """The genuine DR3 XP continuous rows of `gaia_dr3_samples` (archive CSV files; first of each
    source_id): `source_id` and the six array columns as float64 arrays (None where the band is
    missing), read by `xpengine.io.read_table` (not `read_xp_continuous`, whose float32 errors and
    correlations would round the values the noise templates were fitted on)."""
    from xpengine.io import read_table

    base = Path(samples_dir)
    files = [
        base / "gaiaxpy/tests/files/xp_continuous/XP_CONTINUOUS_RAW_with_missing_BP.csv",
        base / "gaiaxpy/tests/files/xp_continuous/XP_CONTINUOUS_RAW_colour_eq_dr3int6.csv",
        base
        / "astroquery/extracted/gaia_dr3_source_id_5937083312263887616_dl_products_csv"
        / "XP_CONTINUOUS-Gaia_DR3_5937083312263887616.csv",
        base / "gaiaxpy/tests/files/cholesky_solution/18Sco-XP-spectra.csv",
    ]
    rows: list[dict[str, object]] = []
    seen: set[int] = set()
    for f in files:
        table = read_table(f, columns=["source_id"], array_columns=_XP_ARRAY_COLUMNS)
        for rec in table.to_pylist():
            sid = int(rec["source_id"])
            if sid in seen:
                continue
            seen.add(sid)
            for k in _XP_ARRAY_COLUMNS:
                rec[k] = None if rec[k] is None else np.array(rec[k], dtype=np.float64)
            rows.append(rec)
    return rows


def _corr_matrix(vec: np.ndarray, n: int) -> np.ndarray:
    R = np.eye(n)
    R[np.tril_indices(n, -1)] = vec
    return R + R.T - np.eye(n)


def _noise_templates(rows: list[dict[str, object]]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for band in ("bp", "rp"):
        shapes, c0s, e0s, bright, faint = [], [], [], [], []
        for r in rows:
            c = r.get(f"{band}_coefficients")
            e = r.get(f"{band}_coefficient_errors")
            k = r.get(f"{band}_coefficient_correlations")
            if c is None or e is None:
                continue
            e = np.asarray(e)
            e0 = e[:5].mean()
            shapes.append(e / e0)
            c0s.append(float(np.asarray(c)[0]))
            e0s.append(e0)
            if k is not None:
                (bright if c0s[-1] > 3000 else faint).append(_corr_matrix(np.asarray(k), len(e)))
        shape = np.median(np.stack(shapes), axis=0)
        out[f"{band}_error_shape"] = shape / shape[:5].mean()
        c0 = np.array(c0s)
        e0 = np.array(e0s)
        # e0^2 = a^2 c0^2 + b^2 c0 (non-negative LS on the relative variance)
        A = np.stack([np.ones_like(c0), 1.0 / c0], 1)
        coef, *_ = np.linalg.lstsq(A, (e0 / c0) ** 2, rcond=None)
        coef = np.maximum(coef, [1e-8, 1e-6])
        out[f"{band}_photon_ab"] = np.sqrt(coef)
        n = len(out[f"{band}_error_shape"])
        for name, mats in (("bright", bright), ("faint", faint)):
            R = np.mean(np.stack(mats), axis=0)
            R = 0.97 * R + 0.03 * np.eye(n)
            R = np.round(R, 4)
            np.fill_diagonal(R, 1.0)
            if np.linalg.eigvalsh(R).min() <= 0:  # pragma: no cover - guarded by the shrinkage
                raise RuntimeError(f"{band} {name} correlation template is not positive definite")
            out[f"{band}_corr_{name}"] = R
    return out


def _passbands() -> dict[str, np.ndarray]:
    from xpengine._gaiaxpy import import_gaiaxpy

    PhotometricSystem = import_gaiaxpy("gaiaxpy.generator.photometric_system").PhotometricSystem

    system = PhotometricSystem.Gaia_DR3_Vega.value
    sampling = system.load_xpsampling_from_xml()
    _, merge = system.load_xpmerge_from_xml()
    V = np.concatenate([sampling["bp"] * merge["bp"], sampling["rp"] * merge["rp"]], axis=0)  # (110, 3)
    return {
        "passband_vectors": V,
        "passband_zero_points": np.asarray(system.get_zero_points(), dtype=np.float64),
        "passband_names": np.array(system.get_bands()),
    }


def _dwarf_colours(d: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    ebv = np.clip(d["ak_targ"] / _AK_PER_EBV, 0, None)
    av = _RV * ebv
    ok = (
        (d["logg"] >= 3.8)
        & (d["teff"] > 3500)
        & (d["teff"] < 7500)
        & np.isfinite(d["fe_h"])
        & np.isfinite(ebv)
        & (d["j"] < 90)
        & (d["h"] < 90)
        & (d["k"] < 90)
    )
    x = np.stack([5040.0 / d["teff"] - 1.0, d["logg"] - 4.5, d["fe_h"]], 1)[ok]
    powers = _monomial_powers(3, 3)
    X = np.prod(x[:, None, :] ** powers[None], axis=2)
    targets = {
        "jh": (d["j"] - d["h"] - (_A_OVER_AV["J"] - _A_OVER_AV["H"]) * av)[ok],
        "jk": (d["j"] - d["k"] - (_A_OVER_AV["J"] - _A_OVER_AV["Ks"]) * av)[ok],
        "gk": (d["gaiaedr3_phot_g_mean_mag"] - d["k"] - (_A_OVER_AV["G"] - _A_OVER_AV["Ks"]) * av)[ok],
    }
    out: dict[str, np.ndarray] = {"dwarf_colour_powers": powers}
    for name, y in targets.items():
        keep = np.isfinite(y)
        for _ in range(3):
            coef, *_ = np.linalg.lstsq(X[keep], y[keep], rcond=None)
            r = y - X @ coef
            s = _robust_std(r[keep])
            keep = np.isfinite(y) & (np.abs(r) < 3 * s)
        out[f"dwarf_{name}_coef"] = coef
        out[f"dwarf_{name}_rms"] = np.array(s)
    return out


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
    ext = iso.extinction(teff, logg, 0.0, np.full(teff.shape, _RV))  # A_V = 3.1: E(B−V) = 1
    per_ebv = ext["a_j"] - ext["a_ks"]
    j, ks = np.asarray(j, dtype=np.float64), np.asarray(ks, dtype=np.float64)
    ok = np.isfinite(j) & np.isfinite(ks) & (j < 50) & (ks < 50)
    return np.where(ok, (np.where(ok, j - ks, 0.0) - jk0) / per_ebv, np.nan)


def _region_powers(metals: bool, degree: int, max_powers: tuple[int, ...] | None = None) -> np.ndarray:
    """Monomial powers (n_terms, 4) of a region: all 4 labels, or only (Teff, logg) padded with zeros;
    optionally at most `max_powers` (4,) per label."""
    if metals:
        pw = _monomial_powers(4, degree)
    else:
        pw = _monomial_powers(2, degree)
        pw = np.concatenate([pw, np.zeros_like(pw)], axis=1)
    if max_powers is not None:
        pw = pw[np.all(pw <= np.asarray(max_powers)[None, :], axis=1)]
    return pw


def fit_calibration(
    apogee_xp_path: str, gaia_samples_dir: str, *, seed: int = 0, stat_fraction: float = 0.15
) -> dict[str, np.ndarray]:
    """Fit every calibration product (see module docstring); returns the arrays of the npz file.

    Only rows of the shipped dev split's "train" part are used (`xpengine.datasets.splits`): "test" rows
    are never read into a fit, "val" rows are left for measuring it (realism_report.py --physics mist).
    Within train, a random `stat_fraction` (seed `seed`) is kept out of the coefficients and gives the
    stored residual statistics.
    """
    import datetime
    import json

    from xpengine.datasets.splits import read_default_split
    from xpengine.io import sha256_of

    rng = np.random.default_rng(seed)
    d = _read_apogee_xp(apogee_xp_path)
    wl = np.arange(336.0, 1020.1, 2.0)
    if d["flux"].shape[1] != wl.size:
        raise ValueError(f"{apogee_xp_path}: flux has {d['flux'].shape[1]} pixels, expected {wl.size}")
    split_ids, split_names = read_default_split()
    pos = np.searchsorted(split_ids, d["source_id"])
    pos = np.clip(pos, 0, len(split_ids) - 1)
    split = np.where(split_ids[pos] == d["source_id"], split_names[pos], "none")
    is_train = split == "train"
    f_g = 10.0 ** ((_G_ZP_EPS - d["gaiaedr3_phot_g_mean_mag"]) / 2.5)
    F = d["flux"] * d["medflux"][:, None]
    s = F / f_g[:, None]
    positive = d["flux"] > 0
    Y = np.log10(np.where(positive, s, 1.0))
    sig_y = d["flux_error"] / np.where(positive, d["flux"], 1.0) / np.log(10.0)
    W = np.where(positive & np.isfinite(sig_y), 1.0 / (sig_y**2 + 0.003**2), 0.0)
    ebv = np.clip(d["ak_targ"] / _AK_PER_EBV, 0.0, None)
    kappa = -0.4 * _RV * extinction_curve(wl)
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
    stat = rng.random(len(base_ok)) < stat_fraction
    out: dict[str, np.ndarray] = {
        "format_version": np.array(FORMAT_VERSION),
        "wavelength_nm": wl,
        "emulator_regions": np.array(list(EMULATOR_REGIONS)),
        "emulator_blend": np.array(EMULATOR_BLEND, dtype=np.float64),
    }
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
        powers = _region_powers(metals, int(spec["degree"]), spec.get("max_powers"))
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
        prov_regions[name] = {
            "fit_box_teff_logg": list(spec["fit_box"]),
            "reads_fe_h_alpha_m": metals,
            "degree": int(spec["degree"]),
            "n_terms": int(powers.shape[0]),
            "ridge": float(spec["ridge"]),
            "n_rows": int(idx.size),
            "n_coefficient_fit": int(res["n_fit"]),
            "n_clipped": int(res["n_clipped"]),
            "n_residual_statistics": int(res["n_stat"]),
        }
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
    out["fit_source_ids"] = np.unique(d["source_id"][used])
    train_rows = {k: v[is_train] for k, v in d.items()}
    out.update(_passbands())
    out.update(_noise_templates(_read_real_xp_rows(gaia_samples_dir)))
    out.update(_dwarf_colours(train_rows))
    prov = {
        "created_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "input": str(Path(apogee_xp_path).name),
        "input_sha256": sha256_of(apogee_xp_path),
        "rows_in_file": len(split),
        "split": "xpengine/data/splits/apogee_xp_dev_split.parquet (by source_id); only 'train' rows fitted",
        "rows_per_split": {k: int((split == k).sum()) for k in ("train", "val", "test", "none")},
        "rows_excluded": "test and val rows; rows without AK_TARG (without J, Ks in the hot region), with "
        "< 90% positive flux over 400-1000 nm; per region, rows with a residual level > 6x the median (clipped)",
        "residual_statistics": f"random {stat_fraction:.0%} of the train rows (seed {seed}), not fitted",
        "emulator_regions": prov_regions,
        "blend": list(EMULATOR_BLEND),
        "hot_stars": "Teff >= 7000 K stars have no ASPCAP [Fe/H], [alpha/M]: the hot region reads Teff, logg only; "
        "its rows' E(B-V) is hot_star_ebv (2MASS J-Ks excess over the MIST/C3K intrinsic colour), not AK_TARG",
        "m_dwarfs": "ASPCAP gives no [Fe/H] below ~3600 K and M-dwarf logg is poorly constrained: the M-dwarf "
        "region reads Teff only",
        "dwarf_colours": "train rows only",
        "noise_templates": "real DR3 XP continuous rows of gaia_dr3_samples (7 sources)",
        "passbands": "GaiaXPy GaiaDr3Vega filter (Montegriffo et al. 2023)",
    }
    out["provenance"] = np.array(json.dumps(prov, sort_keys=True))
    return out


@functools.lru_cache(maxsize=2)
def load_calibration(path: str | None = None) -> dict[str, np.ndarray]:
    """Read the calibration npz (default: the packaged `CALIBRATION_FILE`, v2); arrays are read-only.

    Any path may be given, e.g. the packaged v1 file `xpengine/simulate/data/sim_calibration_v1.npz`
    (:func:`xpengine.simulate.xp.intrinsic_spectra` and `emulator_domain` read both formats)."""
    if path is None:
        ref = resources.files("xpengine.simulate") / "data" / CALIBRATION_FILE
        with resources.as_file(ref) as p:
            if not Path(p).exists():
                raise FileNotFoundError(
                    f"packaged simulator calibration {p} is missing; regenerate it with "
                    "`python -m xpengine.simulate.calibration` (see its docstring)"
                )
            return load_calibration(str(p))
    with np.load(path, allow_pickle=False) as z:
        out = {k: z[k] for k in z.files}
    for v in out.values():
        v.setflags(write=False)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Fit the synthetic-sky calibration (see module docstring).")
    p.add_argument("--apogee-xp", required=True, help="apogee_xp_dev.fits.gz")
    p.add_argument("--gaia-samples", required=True, help="directory gaia_dr3_samples")
    p.add_argument("--output", required=True, help="output .npz")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    arrays = fit_calibration(a.apogee_xp, a.gaia_samples, seed=a.seed)
    Path(a.output).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(a.output, **arrays)
    logger.info("wrote %s (%d arrays)", a.output, len(arrays))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
