"""Data-driven calibration of the synthetic sky: XP spectral emulator, XP noise templates, colours.

Everything the simulator learns from real data is fitted here ONCE and stored in the package file
`xpengine/simulate/data/sim_calibration_v1.npz` (a few hundred kB), so that simulating needs neither the
83 MB APOGEE×XP file nor GaiaXPy. Regenerate it with (≈1–2 min on 2 cores)::

    python -m xpengine.simulate.calibration \
        --apogee-xp /work/shared/data/apogee_xp/apogee_xp_dev.fits.gz \
        --gaia-samples /work/shared/data/gaia_dr3_samples \
        --output xpengine/simulate/data/sim_calibration_v1.npz

What is fitted
--------------
1. Spectral emulator (per evolutionary class: giants logg < 3.5, 3500 < Teff < 5800 K; dwarfs
   logg ≥ 3.5, 3500 < Teff < 7500 K) on the real APOGEE DR17 × Gaia XP sampled spectra
   (336–1020 nm / 2 nm, 343 pixels; labels Teff, logg, [Fe/H], [α/M]): log10 of the flux normalised by
   the Gaia G flux, y = log10(F / f_G), modelled as
       y(λ) = Σ_k B_k(λ) φ_k(labels) + E(B−V) κ(λ) + g,
   φ = all monomials up to degree 4 of x = (5040/Teff − 1, (logg − 2.5)/1.5, [Fe/H]/0.5, [α/M]/0.2)
   (70 terms), κ(λ) = −0.4 R_V A_λ/A_V (Fitzpatrick 1999, R_V = 3.1; PyPI `extinction`) with the star's
   E(B−V) = AK_TARG / 0.352 (REFERENCE §7), g a per-star grey offset (it absorbs the error of the G-band
   extinction and of the photometry). Weighted least squares per pixel (weights 1/(σ_y² + 0.003²)),
   alternated twice with the grey offsets. The intrinsic spectrum of a star is 10^(Σ B_k φ_k), up to
   a constant fixed later by the G passband. Stored with it: the residual scatter per pixel (1.4826 MAD,
   held-out 20%, after a per-star grey + E(B−V)-correction fit, since AK_TARG is a noisy extinction
   estimate), `*_resid_rms`, and the 6 leading principal components of the INTRINSIC part of that
   scatter, `*_resid_pcs` (residual covariance minus the median measurement-noise variance over
   470–1000 nm, tapered to zero over 40 nm at the edges, smoothed with a 12 nm Gaussian; bluer and
   pixel-scale residuals are dominated by measurement noise and would inject noise-like structure into
   the high BP coefficients).
2. Gaia DR3 G/BP/RP passbands in XP-coefficient space, from GaiaXPy's `GaiaDr3Vega` filter file
   (Montegriffo et al. 2023): flux_band = c @ V[:, band], mag = −2.5 log10(flux) + zp. On the real
   APOGEE×XP spectra, synthetic G from the engine's representation agrees with the archive
   `phot_g_mean_mag` to 0.003 mag (robust σ).
3. XP coefficient-error shape: per band the median over the real DR3 rows in `gaia_dr3_samples`
   (7 sources) of e_i / mean(e_0..e_4); the photon-noise split e_0² = a² c_0² + b² c_0 fitted on the
   same rows; correlation templates = mean correlation matrix of the bright (c_0 > 3000 e⁻/s) and of the
   faint rows, shrunk by 3% toward the identity and rounded to 4 decimals (both stay positive definite).
4. Dwarf 2MASS colours: (J−H)_0, (J−Ks)_0 and (G−Ks)_0 of the real APOGEE dwarfs (logg ≥ 3.8) as cubic
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

CALIBRATION_FILE = "sim_calibration_v1.npz"
#: Centres/scales of the emulator inputs (5040/Teff − 1, logg, [Fe/H], [α/M]).
LABEL_SCALES = ((0.0, 1.0), (2.5, 1.5), (0.0, 0.5), (0.0, 0.2))
_DEGREE = 4
_G_ZP_EPS = 25.6873668671  # Gaia DR3 G zero point [mag], f_G[e-/s] = 10^((ZP - G)/2.5) (Riello et al. 2021)
_AK_PER_EBV = 0.352  # REFERENCE §7
_RV = 3.1
#: A_band / A_V for giants (REFERENCE §7).
_A_OVER_AV = {"G": 0.80, "BP": 1.02, "RP": 0.63, "J": 0.289, "H": 0.183, "Ks": 0.118}


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
    teff: np.ndarray, logg: np.ndarray, m_h: np.ndarray, alpha_m: np.ndarray, powers: np.ndarray
) -> np.ndarray:
    """Emulator design matrix (N, n_terms) from labels (N,) [K, dex, dex, dex] and monomial powers."""
    x = np.stack(
        [
            (5040.0 / np.asarray(teff, dtype=np.float64) - 1.0 - LABEL_SCALES[0][0]) / LABEL_SCALES[0][1],
            (np.asarray(logg, dtype=np.float64) - LABEL_SCALES[1][0]) / LABEL_SCALES[1][1],
            (np.asarray(m_h, dtype=np.float64) - LABEL_SCALES[2][0]) / LABEL_SCALES[2][1],
            (np.asarray(alpha_m, dtype=np.float64) - LABEL_SCALES[3][0]) / LABEL_SCALES[3][1],
        ],
        axis=1,
    )  # (N, 4)
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
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Weighted LS per pixel with per-star grey offsets; returns coefficients and residual statistics."""
    n, p = X.shape
    train = rng.random(n) < 0.8
    g = np.zeros(n)
    B = np.zeros((p, Y.shape[1]))
    for _ in range(2):
        target = Y - ebv[:, None] * kappa[None, :] - g[:, None]  # (N, n_wl)
        Xt, Tt, Wt = X[train], target[train], W[train]
        for j in range(Y.shape[1]):
            A = Xt * Wt[:, j : j + 1]
            B[:, j] = np.linalg.solve(A.T @ Xt + 1e-8 * np.eye(p), A.T @ Tt[:, j])
        resid = Y - X @ B - ebv[:, None] * kappa[None, :]
        wb = W * band[None, :]
        g = (wb * resid).sum(1) / np.maximum(wb.sum(1), 1e-30)
    # residual statistics after a per-star grey + extinction-correction fit (r = g + dE κ): the scatter
    # left is what the labels do not explain (AK_TARG is a noisy extinction estimate)
    r0 = Y - X @ B - ebv[:, None] * kappa[None, :]
    wb = W * band[None, :]
    s1, sk, skk = wb.sum(1), (wb * kappa).sum(1), (wb * kappa**2).sum(1)
    sr, srk = (wb * r0).sum(1), (wb * r0 * kappa).sum(1)
    det = np.maximum(s1 * skk - sk**2, 1e-30)
    g2 = (skk * sr - sk * srk) / det
    de = (s1 * srk - sk * sr) / det
    resid = r0 - g2[:, None] - de[:, None] * kappa[None, :]
    held = resid[~train]
    rms = _robust_std(held, axis=0)
    # principal components of the intrinsic residual scatter: covariance of the (clipped) residuals over
    # 470–1000 nm minus the measurement-noise variance (diagonal), tapered to 0 at the band edges; the
    # blue end is left out (its residuals are dominated by measurement noise: adding them would inject
    # noise-like structure into the high BP coefficients)
    wl_grid = np.arange(Y.shape[1]) * 2.0 + 336.0
    band = (wl_grid >= 470.0) & (wl_grid <= 1000.0)
    res_b = np.clip(held[:, band], -5 * rms[band], 5 * rms[band])
    res_b = np.where(W[~train][:, band] > 0, res_b, 0.0)
    res_b -= res_b.mean(0)
    cov = res_b.T @ res_b / len(res_b)
    noise_var = np.nanmedian(sig_y[~train][:, band] ** 2, axis=0)
    vals, vecs = np.linalg.eigh(cov - np.diag(noise_var))
    order = np.argsort(vals)[::-1][:6]
    vals, vecs = np.clip(vals[order], 0.0, None), vecs[:, order]
    pcs = np.zeros((len(order), Y.shape[1]))
    wl = np.nonzero(band)[0]
    taper = np.clip(np.minimum(np.arange(wl.size), np.arange(wl.size)[::-1]) / 20.0, 0.0, 1.0)
    pcs[:, band] = (vecs * np.sqrt(vals)).T * taper[None, :]  # (n_pc, n_wl) 1-sigma amplitudes
    # keep only the smooth part (Gaussian, σ = 12 nm, about the XP resolution): pixel-scale structure
    # left in the components is measurement noise (sampled spectra are correlated over ~10 pixels)
    k = np.exp(-0.5 * (np.arange(-18, 19) / 6.0) ** 2)
    k /= k.sum()
    pcs = np.stack([np.convolve(pc, k, mode="same") for pc in pcs])
    return {
        "coef": B,
        "resid_rms": rms,
        "resid_pcs": pcs,
        "grey_rms": np.array(_robust_std(g)),
        "ebv_correction_rms": np.array(_robust_std(de)),
    }


def _read_apogee_xp(path: str) -> dict[str, np.ndarray]:
    from astropy.io import fits

    with fits.open(path, memmap=False) as hdul:
        d = hdul[1].data
        cols = [
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
        ]
        out = {c: np.asarray(d[c], dtype=np.float64) for c in cols}
        out["flux"] = np.asarray(d["flux"], dtype=np.float64)
        out["flux_error"] = np.asarray(d["flux_error"], dtype=np.float64)
    return out


def _parse_array_text(s: object) -> np.ndarray | None:
    if not isinstance(s, str) or not s.strip():
        return None
    body = s.strip().strip("()[]")
    return np.array([float(v) for v in body.split(",")]) if body else None


def _read_real_xp_rows(samples_dir: str) -> list[dict[str, object]]:
    """The genuine DR3 XP continuous rows of `gaia_dr3_samples` (archive CSV files, parsed by hand)."""
    import pandas as pd

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
        df = pd.read_csv(f, comment="#")
        for rec in df.to_dict("records"):
            sid = int(rec["source_id"])
            if sid in seen:
                continue
            seen.add(sid)
            for k in list(rec):
                if str(k).endswith(("coefficients", "coefficient_errors", "coefficient_correlations")):
                    rec[k] = _parse_array_text(rec[k])
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


def fit_calibration(apogee_xp_path: str, gaia_samples_dir: str, *, seed: int = 0) -> dict[str, np.ndarray]:
    """Fit every calibration product (see module docstring); returns the arrays of the npz file."""
    rng = np.random.default_rng(seed)
    d = _read_apogee_xp(apogee_xp_path)
    wl = np.arange(336.0, 1020.1, 2.0)
    if d["flux"].shape[1] != wl.size:
        raise ValueError(f"{apogee_xp_path}: flux has {d['flux'].shape[1]} pixels, expected {wl.size}")
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
    labels_ok = (
        np.isfinite(d["fe_h"])
        & np.isfinite(d["alpha_m"])
        & np.isfinite(ebv)
        & np.isfinite(f_g)
        & np.all(np.isfinite(Y), axis=1)
    )
    powers = _monomial_powers()
    out: dict[str, np.ndarray] = {"wavelength_nm": wl, "emulator_powers": powers}
    classes = {
        "giant": labels_ok & (d["logg"] < 3.5) & (d["teff"] > 3500) & (d["teff"] < 5800),
        "dwarf": labels_ok & (d["logg"] >= 3.5) & (d["teff"] > 3500) & (d["teff"] < 7500),
    }
    for name, sel in classes.items():
        X = label_features(d["teff"][sel], d["logg"][sel], d["fe_h"][sel], d["alpha_m"][sel], powers)
        res = _fit_emulator_class(X, Y[sel], W[sel], sig_y[sel], ebv[sel], kappa, band, rng)
        for k, v in res.items():
            out[f"{name}_{k}"] = v
        lo = np.array(
            [d["teff"][sel].min(), d["logg"][sel].min(), d["fe_h"][sel].min(), d["alpha_m"][sel].min()]
        )
        hi = np.array(
            [d["teff"][sel].max(), d["logg"][sel].max(), d["fe_h"][sel].max(), d["alpha_m"][sel].max()]
        )
        out[f"{name}_label_min"], out[f"{name}_label_max"] = lo, hi
        out[f"{name}_n_stars"] = np.array(int(sel.sum()))
        logger.info(
            "emulator %s: %d stars, residual %.4f dex (median 400-1000 nm), grey rms %.3f dex",
            name,
            sel.sum(),
            float(np.median(res["resid_rms"][band])),
            float(res["grey_rms"]),
        )
    out.update(_passbands())
    out.update(_noise_templates(_read_real_xp_rows(gaia_samples_dir)))
    out.update(_dwarf_colours(d))
    return out


@functools.lru_cache(maxsize=2)
def load_calibration(path: str | None = None) -> dict[str, np.ndarray]:
    """Read the calibration npz (default: the packaged `sim_calibration_v1.npz`); arrays are read-only."""
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
