"""How realistic is the synthetic sky? Real APOGEE×XP giants vs simulated giants, and label distributions.

    python benchmarks/realism_report.py --apogee-xp /work/shared/data/apogee_xp/apogee_xp_dev.fits.gz \
        --n-sources 40000 --output benchmarks/results/realism_report.md

1. Spectra. Real giants (APOGEE DR17 × Gaia XP dev file: sampled spectra) and simulated giants (the
   written XpContinuousMeanSpectrum files, i.e. archive-like coefficients WITH noise) go through the
   SAME representation, `xpengine.spectra` (coefficients_from_sampled for the real sampled spectra,
   project_coefficients for the simulated continuous coefficients), then are divided by the G flux
   (real: gaiaedr3_phot_g_mean_mag; simulated: phot_g_mean_flux). Each simulated giant is matched to its
   nearest real giant in (Teff/50 K, logg/0.1, [M/H]/0.05, E(B−V)/0.05, G/0.5) (E(B−V) real =
   AK_TARG/0.352; G so that both carry the same noise). Per coefficient: median of (sim − real) in units
   of the real robust spread (1.4826 MAD over the matched real stars), and the ratio of robust spreads.
2. Labels. Simulated giants (all, and the APOGEE-like selection with DistMass-like rows) against the
   REFERENCE §7 numbers; the §7 colour relation against the emulated spectra's own BP − RP; the XP noise
   against σ_rel(G).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def _robust_std(x: np.ndarray, axis: int = 0) -> np.ndarray:
    med = np.nanmedian(x, axis=axis, keepdims=True)
    return 1.4826 * np.nanmedian(np.abs(x - med), axis=axis)


def _real_giants(path: str) -> dict[str, np.ndarray]:
    from astropy.io import fits

    from xpengine.spectra import coefficients_from_sampled

    with fits.open(path, memmap=False) as h:
        d = h[1].data
        sel = (
            (d["logg"] < 3.5)
            & (d["teff"] > 3800)
            & (d["teff"] < 5500)
            & np.isfinite(d["fe_h"])
            & np.isfinite(d["ak_targ"])
        )
        flux = (
            np.asarray(d["flux"][sel], dtype=np.float64)
            * np.asarray(d["medflux"][sel], dtype=np.float64)[:, None]
        )
        out = {
            k: np.asarray(d[k][sel], dtype=np.float64)
            for k in ("teff", "logg", "fe_h", "alpha_m", "ak_targ", "gaiaedr3_phot_g_mean_mag")
        }
        out["bp_rp_obs"] = np.asarray(
            d["gaiaedr3_phot_bp_mean_mag"][sel] - d["gaiaedr3_phot_rp_mean_mag"][sel], dtype=np.float64
        )
    bp, rp = coefficients_from_sampled(flux)
    f_g = 10.0 ** ((25.6873668671 - out["gaiaedr3_phot_g_mean_mag"]) / 2.5)
    out["coef"] = np.concatenate([bp, rp], axis=1) / f_g[:, None]
    out["ebv"] = np.clip(out["ak_targ"] / 0.352, 0, None)
    return out


def _sim_giants(sky: Path) -> dict[str, np.ndarray]:
    import pyarrow.parquet as pq

    from xpengine.io import discover_partitions, list_column_to_numpy, read_gaia_source, read_xp_continuous
    from xpengine.spectra import project_coefficients

    truth = pq.read_table(sky / "truth.parquet").to_pandas().set_index("source_id")
    coefs, sids, fg = [], [], []
    for p in discover_partitions(sky):
        xp = read_xp_continuous(p.xp_url)
        gs = read_gaia_source(p.gaia_url, columns=["source_id", "phot_g_mean_flux"]).to_pandas()
        sid = xp.column("source_id").to_numpy()
        giant = (truth.loc[sid, "evolutionary_state"] != "dwarf").to_numpy()
        bp = list_column_to_numpy(xp.column("bp_coefficients"))[giant]
        rp = list_column_to_numpy(xp.column("rp_coefficients"))[giant]
        pb, pr = project_coefficients(bp, rp)
        coefs.append(np.concatenate([pb, pr], axis=1))
        sids.append(sid[giant])
        fg.append(gs.set_index("source_id").loc[sid[giant], "phot_g_mean_flux"].to_numpy())
    sid = np.concatenate(sids)
    t = truth.loc[sid]
    out = {
        k: t[k].to_numpy() for k in ("teff", "logg", "m_h", "fe_h", "alpha_m", "ebv", "g", "mass", "age_gyr")
    }
    out["state"] = t["evolutionary_state"].to_numpy()
    out["bp_rp0"] = (t["bp_rp"] - (t["a_bp"] - t["a_rp"])).to_numpy()
    out["coef"] = np.concatenate(coefs) / np.concatenate(fg)[:, None]
    out["source_id"] = sid
    return out


def _match(real: dict, sim: dict) -> np.ndarray:
    from scipy.spatial import cKDTree

    def feats(d: dict, mh: str, g: str) -> np.ndarray:
        return np.stack([d["teff"] / 50.0, d["logg"] / 0.1, d[mh] / 0.05, d["ebv"] / 0.05, d[g] / 0.5], 1)

    tree = cKDTree(feats(real, "fe_h", "gaiaedr3_phot_g_mean_mag"))
    dist, idx = tree.query(feats(sim, "m_h", "g"))
    return idx, dist


def _fmt(x: float, nd: int = 2) -> str:
    return f"{x:.{nd}f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--apogee-xp",
        default=str(
            Path(__file__).resolve().parents[2] / "shared" / "data" / "apogee_xp" / "apogee_xp_dev.fits.gz"
        ),
    )
    p.add_argument("--n-sources", type=int, default=40_000)
    p.add_argument("--partitions", type=int, default=16)
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--output", default="benchmarks/results/realism_report.md")
    a = p.parse_args(argv)

    from astropy.io import fits

    from xpengine.simulate import physics as ph
    from xpengine.simulate import simulate_sky
    from xpengine.simulate.calibration import load_calibration
    from xpengine.simulate.xp import sigma_rel_g

    t0 = time.time()
    tmp = Path(tempfile.mkdtemp(prefix="realism_"))
    lines: list[str] = []
    try:
        summary = simulate_sky(tmp, a.n_sources, seed=a.seed, n_partitions=a.partitions)
        sim = _sim_giants(tmp)
        real = _real_giants(a.apogee_xp)
        allstar = fits.getdata(tmp / "allStar-synthetic.fits", 1)
        distmass = fits.getdata(tmp / "APOGEE_DistMass-synthetic.fits", 1)
        import pyarrow.parquet as pq

        truth = pq.read_table(tmp / "truth.parquet").to_pandas()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    idx, dist = _match(real, sim)
    good = dist < 3.0  # within ~3 "units" in the scaled label space
    rc, sc = real["coef"][idx[good]], sim["coef"][good]
    spread_real = _robust_std(rc)
    med_diff = np.nanmedian(sc - rc, axis=0) / spread_real
    ratio = _robust_std(sc) / spread_real
    names = [f"bp{i}" for i in range(55)] + [f"rp{i}" for i in range(55)]
    cal = load_calibration()

    L = lines.append
    L("# Realism of the synthetic sky")
    L("")
    L(
        f"Generated by `python benchmarks/realism_report.py --n-sources {a.n_sources} --partitions {a.partitions} "
        f"--seed {a.seed}` on {time.strftime('%Y-%m-%d')} ({os.cpu_count()}-CPU box, {time.time() - t0:.0f} s)."
    )
    L(
        f"Simulated: {a.n_sources} sources in {a.partitions} partitions, {summary['n_giants']} giants, "
        f"{summary['n_apogee_rows']} APOGEE-like rows, {summary['n_distmass_rows']} DistMass-like rows. "
        f"Real: {len(real['teff'])} APOGEE×XP dev giants (3800 < Teff < 5500 K, logg < 3.5)."
    )
    L("")
    L("## 1. XP coefficients of matched giants (engine representation, G-flux normalised)")
    L("")
    L(
        f"{int(good.sum())} of {len(good)} simulated giants matched to a real giant within 3 scaled units "
        "(Teff/50 K, logg/0.1, [M/H]/0.05, E(B−V)/0.05, G/0.5); median match distance "
        f"{np.median(dist[good]):.2f}. Δ = median(sim − real) / real robust spread; ratio = robust spread "
        "sim / real over the matched sets (1 = same star-to-star scatter)."
    )
    L("")
    blocks = {
        "bp0–4": range(0, 5),
        "bp5–14": range(5, 15),
        "bp15–29": range(15, 30),
        "bp30–54": range(30, 55),
        "rp0–4": range(55, 60),
        "rp5–14": range(60, 70),
        "rp15–29": range(70, 85),
        "rp30–54": range(85, 110),
    }
    L("| coefficients | median |Δ| | max |Δ| | median spread ratio | range of ratio |")
    L("|---|---|---|---|---|")
    for name, r in blocks.items():
        r = list(r)
        L(
            f"| {name} | {np.median(np.abs(med_diff[r])):.2f} | {np.max(np.abs(med_diff[r])):.2f} | "
            f"{np.median(ratio[r]):.2f} | {np.min(ratio[r]):.2f}–{np.max(ratio[r]):.2f} |"
        )
    L("")
    L("<details><summary>every coefficient</summary>")
    L("")
    L("| coef | Δ | ratio | coef | Δ | ratio |")
    L("|---|---|---|---|---|---|")
    for i in range(55):
        j = 55 + i
        L(
            f"| {names[i]} | {med_diff[i]:+.2f} | {ratio[i]:.2f} | {names[j]} | {med_diff[j]:+.2f} | {ratio[j]:.2f} |"
        )
    L("")
    L("</details>")
    L("")
    # emulator fit quality and colours
    wl = cal["wavelength_nm"]
    band = (wl >= 400) & (wl <= 1000)
    giants = sim["state"] != "dwarf"
    bprp_rel = ph.giant_bc("bp_rp", sim["teff"], sim["fe_h"], sim["logg"])
    in_box = (sim["teff"] > 3800) & (sim["teff"] < 5500) & (sim["logg"] > 1) & (sim["logg"] < 3)
    dcol = (sim["bp_rp0"] - bprp_rel)[giants & in_box]
    L("## 2. Spectral emulator and colours")
    L("")
    L(
        f"- Emulator residual (held-out real stars, after a per-star grey + E(B−V) correction): median "
        f"{np.median(cal['giant_resid_rms'][band]):.4f} dex (giants) and {np.median(cal['dwarf_resid_rms'][band]):.4f} "
        f"dex (dwarfs) over 400–1000 nm; at 336 nm {cal['giant_resid_rms'][0]:.3f} / {cal['dwarf_resid_rms'][0]:.3f} dex "
        "(the blue end is noisy in the real spectra too). Its 6 leading residual components are added at random."
    )
    L(
        f"- Intrinsic BP − RP of the simulated giants (their spectrum's synthetic photometry) minus the REFERENCE §7 "
        f"BP − RP(Teff, [Fe/H], logg) relation: median {np.median(dcol):+.3f} mag, robust σ {_robust_std(dcol):.3f} mag "
        f"({int(in_box[giants].sum())} giants in the relation's box). The file's bp_rp is the spectrum's (as in real "
        "Gaia, where XP and photometry agree), so this is the emulator-vs-MIST colour offset."
    )
    g_bins = [(9, 11), (12, 12.5), (13, 13.5), (14, 14.5), (14.5, 15), (16, 16.5), (17, 17.65)]
    L("")
    L("## 3. Label distributions (simulated truth) against REFERENCE §7")
    L("")
    gt = truth[truth.evolutionary_state != "dwarf"]
    ids = set(allstar["GAIAEDR3_SOURCE_ID"][(allstar["EXTRATARG"] & 16) == 0])
    ap = truth[truth.source_id.isin(ids)]
    apg = ap[ap.evolutionary_state != "dwarf"]
    mass_hist, edges = np.histogram(apg.mass, bins=np.arange(0.6, 3.01, 0.1))
    mode = edges[np.argmax(mass_hist)] + 0.05
    resid = np.log10(gt.age_gyr) - np.log10(ph.giant_age_gyr(gt.mass.to_numpy(), gt.fe_h.to_numpy()))
    rc = gt[gt.evolutionary_state == "red_clump"]
    rc_sol = rc[np.abs(rc.fe_h) < 0.1]
    L("| quantity | §7 / APOGEE number | all simulated giants | APOGEE-like giants |")
    L("|---|---|---|---|")
    L(
        f"| giant fraction of all sources | — | {len(gt) / len(truth):.2f} | {len(apg) / max(len(ap), 1):.2f} of the selection |"
    )
    L(f"| mass mode [M☉] | 1.0–1.2 | — | {mode:.2f} |")
    L(f"| mass median [M☉] | 1.2–1.35 | {gt.mass.median():.2f} | {apg.mass.median():.2f} |")
    L(
        f"| mass 95th percentile [M☉] | tail to ~2.5 | {gt.mass.quantile(0.95):.2f} | {apg.mass.quantile(0.95):.2f} |"
    )
    L(f"| age median [Gyr] | 4–5 | {gt.age_gyr.median():.2f} | {apg.age_gyr.median():.2f} |")
    L(
        f"| age 10–90% [Gyr] | broad 1–11 | {gt.age_gyr.quantile(0.1):.1f}–{gt.age_gyr.quantile(0.9):.1f} | "
        f"{apg.age_gyr.quantile(0.1):.1f}–{apg.age_gyr.quantile(0.9):.1f} |"
    )
    L(
        f"| fraction with age 9–11 Gyr (thick-disk bump) | bump | {np.mean((gt.age_gyr > 9) & (gt.age_gyr < 11)):.2f} | "
        f"{np.mean((apg.age_gyr > 9) & (apg.age_gyr < 11)):.2f} |"
    )
    L(f"| [M/H] median | −0.2 to −0.3 | {gt.m_h.median():+.2f} | {apg.m_h.median():+.2f} |")
    L(f"| fraction [M/H] < −1 | tail below −1 | {np.mean(gt.m_h < -1):.3f} | {np.mean(apg.m_h < -1):.3f} |")
    L(
        f"| thick disk + halo fraction | 20% thick | {np.mean(gt.population != 'thin'):.2f} | {np.mean(apg.population != 'thin'):.2f} |"
    )
    L(
        f"| red-clump fraction | 20–30% | {len(rc) / len(gt):.2f} | {np.mean(apg.evolutionary_state == 'red_clump'):.2f} |"
    )
    L(f"| RC logg (solar [Fe/H]) | 2.41–2.49 | {rc_sol.logg.median():.2f} | — |")
    L(f"| RC Teff (solar [Fe/H]) [K] | 4750–4790 | {rc_sol.teff.median():.0f} | — |")
    L(f"| RC M_G | ≈ 0.45 | {rc_sol.abs_g.median():.2f} | — |")
    L(
        f"| log age − §7 relation(M, [Fe/H]) | rms 0.016 (isochrones) | median {np.median(resid):+.3f}, rms {np.sqrt(np.mean(resid**2)):.3f} dex | — |"
    )
    corr = np.corrcoef(np.log10(apg.mass), apg.fe_h)[0, 1] if len(apg) > 2 else np.nan
    L(f"| corr(log M, [Fe/H]) | massive stars metal-rich (> 0) | — | {corr:+.2f} |")
    L("")
    dm_age = np.asarray(distmass["AGE_COR_SS"], dtype=np.float64) / 1e9
    L(
        f"DistMass-like rows: mass median {np.median(distmass['MASS']):.2f} M☉, age median {np.median(dm_age):.2f} Gyr, "
        f"age years-linear (median {np.median(distmass['AGE_COR_SS']):.3g} yr). allStar-like: "
        f"{np.mean((allstar['ASPCAPFLAG'] & (1 << 23)) > 0):.3f} STAR_BAD, {np.mean(allstar['STARFLAG'] != 0):.3f} "
        f"STARFLAG≠0, {np.mean((allstar['EXTRATARG'] & 16) > 0):.3f} duplicates (EXTRATARG 16)."
    )
    L("")
    L("Teff–logg of the simulated giants (counts per 0.25 dex logg × 200 K):")
    L("")
    h, le, te = np.histogram2d(
        gt.logg, gt.teff, bins=[np.arange(1.0, 3.76, 0.25), np.arange(3800, 5601, 200)]
    )
    L("| logg \\ Teff | " + " | ".join(f"{int(t)}" for t in te[:-1]) + " |")
    L("|---|" + "---|" * (len(te) - 1))
    for i in range(len(le) - 1):
        L(f"| {le[i]:.2f} | " + " | ".join(str(int(v)) for v in h[i]) + " |")
    L("")
    L("## 4. XP noise against σ_rel(G) (median relative flux error, 400–1000 nm)")
    L("")
    L(
        "See `tests/test_simulate_xp.py::test_noise_follows_sigma_rel_of_g` (within 10% per G bin, by construction of"
    )
    L(
        "the error scale). σ_rel(G) of REFERENCE §7: "
        + ", ".join(f"G {lo}–{hi}: {sigma_rel_g((lo + hi) / 2):.4f}" for lo, hi in g_bins)
        + "."
    )
    L("")
    L("## 5. Where the synthetic sky differs from the real one")
    L("")
    worst = np.argsort(-np.abs(med_diff))[:5]
    L(
        "- Largest coefficient offsets (Δ, in real robust spreads): "
        + ", ".join(f"{names[i]} {med_diff[i]:+.2f}" for i in worst)
        + ". Spread ratios below 1 mean the simulated giants are more alike than real ones at matched labels "
        "(real spectra also vary with unmodelled parameters, label errors, binaries, blends, extinction-law "
        "variations); ratios above 1 at high orders reflect the simulated noise."
    )
    L(
        "- Ages and masses follow from the simple Galaxy of §7 (thin disk with uniform star formation over 10 Gyr, "
        "thick disk at 10.5 Gyr, a 0.5%-local halo): the giant age distribution depends on the sky patches drawn "
        "(old at high latitude), and the metal-poor tail is thinner than APOGEE's because APOGEE targets the bulge, "
        "halo fields and clusters, which are not modelled."
    )
    L(
        "- Dwarfs use simple scaling relations (no subgiant branch, no M dwarfs below 0.45 M☉); their spectra come "
        "from the dwarf emulator, valid 3600–7500 K."
    )
    L(
        "- No binaries in the spectra (only a RUWE tail), no variability, no crowding; dust is a smooth double "
        "exponential with a large-scale patchiness factor, not a real 3-D map; one extinction law (F99, R_V = 3.1)."
    )
    Path(a.output).parent.mkdir(parents=True, exist_ok=True)
    Path(a.output).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
