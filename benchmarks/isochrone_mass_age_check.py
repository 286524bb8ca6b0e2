"""Mass and age of the stars outside the model's mass/age domain: the model's extrapolation against the MIST
isochrone posterior (`xpengine.inference.isochrone_fit`, the catalogue's default since session 20), side by
side in one run, on a simulated sky scored against its truth and on real stars of known mass.

    python benchmarks/isochrone_mass_age_check.py --sky runs/sky_mist_test --partitions 0 3 6 9 \\
        --json benchmarks/results/isochrone_mass_age.json --markdown benchmarks/results/isochrone_mass_age.md

1. Simulated sky (a seed never used in training; `--sky` a folder written by `xpengine simulate`, its
   `truth.parquet` and `tmass.parquet`): the chosen partitions through the job's read stage and predictor
   (`stages.featurize_partition`, `stages.CatalogPredictor`, no Ray), once with the model's own mass and age
   everywhere (`mass_age_from_isochrones: false`) and once with the catalogue's default. For the stars
   flagged OUTSIDE_TRAINING_DOMAIN: bias, robust σ and z-spread of mass and ln age against the truth, by
   true phase, with and without a parallax. Since the simulated dwarfs' XP differ from real ones (their
   Teff, logg and [M/H] from a model trained on real stars are biased), the isochrone fit is also run on the
   stars' true Teff, logg and [M/H] with the catalogue's σ: what the method gives when its inputs are right.
2. Real stars: the Sun's and 18 Sco's literature Teff, logg, [Fe/H] and M_G, and 18 Sco's own DR3 XP through
   `Predictor.from_xp` with and without its parallax, both policies.
3. Speed: isochrone fits per second on this machine, beside the model's stars per second for the same stars.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def robust(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(1.4826 * np.median(np.abs(x - np.median(x)))) if x.size else float("nan")


def scores(pred, err, truth, log: bool) -> dict:
    ok = np.isfinite(pred) & np.isfinite(err) & np.isfinite(truth) & (err > 0)
    if log:
        res = np.log(pred[ok]) - np.log(truth[ok])
        z = res / (err[ok] / pred[ok])
    else:
        res = pred[ok] - truth[ok]
        z = res / err[ok]
    return {
        "n": int(ok.sum()),
        "bias": float(np.median(res)) if ok.any() else float("nan"),
        "sigma": robust(res),
        "z_spread": robust(z),
        "z_median": float(np.median(z)) if ok.any() else float("nan"),
    }


def sky_catalogues(sky: Path, parts: list[int], policies: dict) -> tuple[dict, dict, float]:
    """The chosen partitions through the job's read stage, then one predictor per policy."""
    from xpengine.model.metadata import VOCABULARY_FILE, resolve_model_path
    from xpengine.pipeline.config import InferenceConfig, resolve_inputs, resolve_labels
    from xpengine.pipeline.stages import CatalogPredictor, PartitionTask, featurize_partition

    cfg = InferenceConfig(tmass=str(sky / "tmass.parquet"), sim_to_real_sigma=False)
    labels, inputs = resolve_labels(cfg), resolve_inputs(cfg)
    vocab = (Path(resolve_model_path(cfg.model)) / VOCABULARY_FILE).read_text()
    names = sorted(
        p.name[len("XpContinuousMeanSpectrum_") : -len(".csv.gz")]
        for p in sky.glob("XpContinuousMeanSpectrum_*.csv.gz")
    )
    chunks = []
    for i in parts:
        name = names[i]
        lo, hi = (int(x) for x in name.split("-"))
        task = PartitionTask(
            name=name,
            xp=str(sky / f"XpContinuousMeanSpectrum_{name}.csv.gz"),
            gaia=str(sky / f"GaiaSource_{name}.csv.gz"),
            hpx8_range=(lo, hi),
        )
        row = {k: np.array([v]) for k, v in {**task.to_row(), "index": i}.items()}
        chunks += list(featurize_partition(row, vocabulary_json=vocab, chunk_rows=1 << 20, tmass=cfg.tmass))
    batch = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
    out, seconds = {}, {}
    for name, policy in policies.items():
        pred = CatalogPredictor(
            cfg.model, labels, device="cpu", flag_policy=policy, inputs=inputs, sim_to_real=False
        )
        t0 = time.perf_counter()
        out[name] = pred(dict(batch))
        seconds[name] = time.perf_counter() - t0
    return out, seconds, len(batch["source_id"])


def sky_section(sky: Path, parts: list[int]) -> dict:
    import pandas as pd

    from xpengine.catalog.flag_policy import DEFAULT_FLAG_POLICY
    from xpengine.features.flags import SourceFlag, has_flag
    from xpengine.inference.isochrone_fit import fit_isochrones, load_fit_grid

    policies = {
        "model": dataclasses.replace(DEFAULT_FLAG_POLICY, mass_age_from_isochrones=False),
        "isochrones": DEFAULT_FLAG_POLICY,
    }
    cats, seconds, n = sky_catalogues(sky, parts, policies)
    truth = pd.read_parquet(
        sky / "truth.parquet", columns=["source_id", "mass", "age_gyr", "teff", "logg", "m_h"]
    )
    truth = truth.set_index("source_id")
    res: dict = {"n_sources": n, "seconds": seconds, "groups": {}}
    new = cats["isochrones"]
    t = truth.reindex(new["source_id"])
    flags = new["flags"]
    outside = has_flag(flags, SourceFlag.OUTSIDE_TRAINING_DOMAIN)
    iso = has_flag(flags, SourceFlag.MASS_AGE_FROM_ISOCHRONES)
    plx = has_flag(flags, SourceFlag.DISTANCE_FROM_PARALLAX)
    res["n_outside"], res["n_isochrones"] = int(outside.sum()), int(iso.sum())
    # the method on right inputs: the true Teff, logg, [M/H] with the catalogue's σ and its M_G
    grid = load_fit_grid()
    rows = np.flatnonzero(iso)
    from xpengine.catalog.flag_policy import EXTINCTION_A_G

    with np.errstate(invalid="ignore", divide="ignore"):
        abs_g = new["phot_g_mean_mag"] - 5 * np.log10(new["distance_pc"] / 10) - EXTINCTION_A_G * new["ebv"]
        abs_g_err = np.hypot(
            5 / np.log(10) * new["distance_pc_error"] / new["distance_pc"], EXTINCTION_A_G * new["ebv_error"]
        )
    abs_g = np.where(plx, abs_g, np.nan)
    tv = {k: t[k].to_numpy(np.float64) for k in ("teff", "logg", "m_h")}
    true_in = fit_isochrones(
        grid,
        tv["teff"][rows],
        new["teff_error"][rows],
        tv["logg"][rows],
        new["logg_error"][rows],
        tv["m_h"][rows],
        new["m_h_error"][rows],
        abs_g[rows],
        abs_g_err[rows],
    )
    tm, ta = t["mass"].to_numpy(np.float64), t["age_gyr"].to_numpy(np.float64)
    logg_true = tv["logg"]
    groups = {
        "all outside the domain": np.ones(len(tm), bool),
        "with a parallax": plx,
        "without": ~plx,
        "true main sequence (logg > 4)": logg_true > 4.0,
        "true subgiants (3.5 < logg ≤ 4)": (logg_true > 3.5) & (logg_true <= 4.0),
        "true giants (logg < 3.5, 3500–5500 K)": (logg_true < 3.5)
        & (tv["teff"] > 3500)
        & (tv["teff"] < 5500),
        "hot (true Teff > 6500 K)": tv["teff"] > 6500,
    }
    for gname, sel in groups.items():
        sel = sel & iso
        g: dict = {"n": int(sel.sum())}
        for pname, cat in cats.items():
            g[pname] = {
                "mass": scores(cat["mass"][sel], cat["mass_error"][sel], tm[sel], False),
                "ln_age": scores(cat["age"][sel], cat["age_error"][sel], ta[sel], True),
            }
        sub = sel[rows]
        g["isochrones, true Teff/logg/[M/H]"] = {
            "mass": scores(true_in["mass"][sub], true_in["mass_error"][sub], tm[rows][sub], False),
            "ln_age": scores(true_in["age"][sub], true_in["age_error"][sub], ta[rows][sub], True),
        }
        res["groups"][gname] = g
    # label biases of the model on the simulated stars outside the domain (the emulator's dwarfs)
    res["label_bias"] = {
        k: {
            "median": float(np.nanmedian(new[k][iso] - tv[k][iso])),
            "sigma": robust(new[k][iso] - tv[k][iso]),
        }
        for k in ("teff", "logg", "m_h")
    }
    # speed: the fits alone on these stars
    t0 = time.perf_counter()
    fit_isochrones(
        grid,
        new["teff"][rows],
        new["teff_error"][rows],
        new["logg"][rows],
        new["logg_error"][rows],
        new["m_h"][rows],
        new["m_h_error"][rows],
        abs_g[rows],
        abs_g_err[rows],
    )
    res["fits_per_s"] = rows.size / (time.perf_counter() - t0)
    res["model_stars_per_s"] = n / seconds["model"]
    return res


def real_section() -> dict:
    from xpengine import io
    from xpengine.catalog.flag_policy import DEFAULT_FLAG_POLICY
    from xpengine.inference.isochrone_fit import fit_isochrones, load_fit_grid
    from xpengine.inference.predictor import Predictor

    grid = load_fit_grid()
    out: dict = {}
    lit = {  # Teff, σ, logg, σ, [Fe/H], σ, M_G, σ; mass, age
        "Sun": ((5772, 50, 4.438, 0.05, 0.0, 0.05, 4.67, 0.03), (1.0, 4.57)),
        "18 Sco (literature labels, DR3 parallax)": (
            (5810, 50, 4.44, 0.05, 0.05, 0.05, 4.60, 0.03),
            (1.02, 3.5),
        ),
    }
    for name, (x, (mass, age)) in lit.items():
        f = fit_isochrones(grid, *[np.array([v], dtype=np.float64) for v in x])
        out[name] = {
            "literature": {"mass": mass, "age": age},
            **{k: float(f[k][0]) for k in ("mass", "mass_error", "age", "age_error")},
        }
    p = Predictor.load("gaia-xp", device="cpu")
    xp = io.read_xp_continuous(str(ROOT / "tests" / "data" / "gaia_xp" / "18Sco-XP-spectra.csv"))
    labels = ["teff", "logg", "m_h", "mass", "age"]
    model_only = dataclasses.replace(DEFAULT_FLAG_POLICY, mass_age_from_isochrones=False)
    contexts = {
        "XP alone": {},
        "XP, G 5.35, DR3 parallax 70.64 ± 0.07 mas": dict(
            g_mag=5.35, parallax=70.64, parallax_error=0.07, zero_point_fallback=-0.017
        ),
    }
    for cname, kw in contexts.items():
        for pname, policy in (("model", model_only), ("isochrones", DEFAULT_FLAG_POLICY)):
            r = p.from_xp(xp, labels=labels, flag_policy=policy, **kw).iloc[0]
            out[f"18 Sco DR3 XP, {cname}, {pname}"] = {
                "literature": {"mass": 1.02, "age": 3.5},
                **{
                    k: float(r[k])
                    for k in (
                        "teff",
                        "teff_error",
                        "logg",
                        "logg_error",
                        "m_h",
                        "m_h_error",
                        "mass",
                        "mass_error",
                        "age",
                        "age_error",
                    )
                },
                "flags": list(r["flag_names"]),
            }
    return out


def cluster_section(fits_path: str, dataset: str) -> dict:
    """Real cluster members outside the mass/age domain (turn-off, Hertzsprung-gap and horizontal-branch
    stars of the APOGEE×XP file's clusters, `real_star_checks.cluster_members`): the model's Teff, logg and
    [M/H] from their XP (the catalogue's standard input), M_G from the cluster's literature distance (5 %)
    and E(B−V) (10 %) and the star's G; the isochrone mass and age against the cluster's literature age,
    beside the model's own mass and age."""
    import pyarrow.parquet as pq
    from astropy.io import fits

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import real_star_checks as rsc

    from xpengine.catalog.flag_policy import EXTINCTION_A_G
    from xpengine.datasets.schema import read_training_set
    from xpengine.inference.isochrone_fit import fit_isochrones, load_fit_grid
    from xpengine.inference.predictor import Predictor

    d = fits.getdata(fits_path, 1)
    ra, dec = rsc.radec_from_apogee_id(d["apogee_id"])
    sid = np.asarray(d["gaiaedr3_source_id"], dtype=np.int64)
    members = rsc.cluster_members(ra, dec, np.asarray(d["fe_h"], float), np.asarray(d["logg"], float))
    arrays = read_training_set(dataset)
    g_mag = pq.read_table(dataset, columns=["phot_g_mean_mag"]).column(0).to_numpy().astype(np.float64)
    index = {int(s): i for i, s in enumerate(arrays.source_id)}
    vocab = arrays.vocabulary
    teff, logg = (arrays.values[:, vocab.index(t)] for t in ("teff", "logg"))
    outside = ~rsc.paper_giants(teff, logg)
    p = Predictor.load("gaia-xp", device="cpu")
    grid = load_fit_grid()
    stars = []
    for c in rsc.CLUSTERS:
        rows = np.zeros(len(arrays.source_id), bool)
        for s_ in sid[members[c.name]]:
            if int(s_) in index:
                rows[index[int(s_)]] = True
        rows &= outside
        if not rows.any():
            continue
        pred = rsc.standard_predictions(p, arrays, rows, g_mag=g_mag[rows])
        g = g_mag[rows]
        abs_g = g - 5 * np.log10(c.distance_kpc * 100.0) - EXTINCTION_A_G * c.ebv
        abs_g_err = np.hypot(5 / np.log(10) * 0.05, EXTINCTION_A_G * 0.1 * c.ebv)
        f = fit_isochrones(
            grid,
            *(pred[k] for k in ("teff", "teff_error", "logg", "logg_error", "m_h", "m_h_error")),
            abs_g,
            np.full(abs_g.shape, abs_g_err),
        )
        for j, i in enumerate(np.flatnonzero(rows)):
            stars.append(
                {
                    "cluster": c.name,
                    "source_id": int(arrays.source_id[i]),
                    "aspcap": {"teff": float(teff[i]), "logg": float(logg[i])},
                    "pred": {
                        k: float(pred[k][j])
                        for k in ("teff", "logg", "m_h", "mass", "mass_error", "age", "age_error")
                    },
                    "abs_g": float(abs_g[j]),
                    "iso": {k: float(f[k][j]) for k in ("mass", "mass_error", "age", "age_error")},
                    "lit_age": list(c.age_gyr),
                }
            )
    return {"stars": stars}


def markdown(res: dict) -> str:
    lines = ["# Mass and age outside the model's domain: the model against the isochrones", ""]
    lines += [f"Command: `{res['command']}`; {res['machine']}; {res['date']}", ""]
    lines += [
        "## Real stars",
        "",
        "| star | input | mass [M☉] | age [Gyr] | literature |",
        "|---|---|---|---|---|",
    ]
    for name, r in res["real"].items():
        inp = (
            f"Teff {r['teff']:.0f} ± {r['teff_error']:.0f}, logg {r['logg']:.2f} ± {r['logg_error']:.2f}, [M/H] {r['m_h']:+.2f} ± {r['m_h_error']:.2f}"
            if "teff" in r
            else "literature labels and M_G"
        )
        lines.append(
            f"| {name} | {inp} | {r['mass']:.2f} ± {r['mass_error']:.2f} | {r['age']:.1f} ± {r['age_error']:.1f} | {r['literature']['mass']:.2f} M☉, {r['literature']['age']:.1f} Gyr |"
        )
    if "clusters" in res:
        lines += [
            "",
            "## Real cluster members outside the mass/age domain (APOGEE×XP; M_G from the cluster's distance and E(B−V))",
            "",
        ]
        lines += [
            "| cluster | Gaia DR3 | ASPCAP Teff / logg | XP Teff / logg / [M/H] | M_G | model mass | model age | isochrone mass | isochrone age | literature age | age z |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for st in res["clusters"]["stars"]:
            pr, iso, lo_hi = st["pred"], st["iso"], st["lit_age"]
            mid, half = 0.5 * (lo_hi[0] + lo_hi[1]), 0.5 * (lo_hi[1] - lo_hi[0])
            z = (
                (iso["age"] - mid) / np.hypot(iso["age_error"], half)
                if np.isfinite(iso["age"])
                else float("nan")
            )
            lines.append(
                f"| {st['cluster']} | {st['source_id']} | {st['aspcap']['teff']:.0f} / {st['aspcap']['logg']:.2f} | "
                f"{pr['teff']:.0f} / {pr['logg']:.2f} / {pr['m_h']:+.2f} | {st['abs_g']:.2f} | {pr['mass']:.2f} ± {pr['mass_error']:.2f} | "
                f"{pr['age']:.1f} ± {pr['age_error']:.1f} | {iso['mass']:.2f} ± {iso['mass_error']:.2f} | {iso['age']:.1f} ± {iso['age_error']:.1f} | "
                f"{lo_hi[0]:g}–{lo_hi[1]:g} | {z:+.1f} |"
            )
    if "sky" in res:
        s = res["sky"]
        lines += ["", f"## Simulated sky `{res['sky_path']}`, partitions {res['partitions']}", ""]
        lines += [
            f"{s['n_sources']} sources, {s['n_outside']} outside the mass/age domain, {s['n_isochrones']} given isochrone mass and age. Bias = median(pred − true) (ln age: of ln pred − ln true), σ = robust σ, z = robust σ of the residual over the quoted σ.",
            "",
        ]
        lines += [
            "| stars (all flagged outside) | n | source of mass and age | mass bias | mass σ | mass z | ln age bias | ln age σ | ln age z |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for gname, g in s["groups"].items():
            for pname in ("model", "isochrones", "isochrones, true Teff/logg/[M/H]"):
                m, a = g[pname]["mass"], g[pname]["ln_age"]
                lines.append(
                    f"| {gname} | {g['n']} | {pname} | {m['bias']:+.3f} | {m['sigma']:.3f} | {m['z_spread']:.2f} | {a['bias']:+.3f} | {a['sigma']:.3f} | {a['z_spread']:.2f} |"
                )
        lb = s["label_bias"]
        lines += [
            "",
            "The model's Teff, logg and [M/H] on these simulated stars (pred − true, median / robust σ): "
            + ", ".join(f"{k} {v['median']:+.3g} / {v['sigma']:.3g}" for k, v in lb.items())
            + " — the emulated dwarfs' XP differ from real ones, so the middle rows carry that bias and the last rows show the method on right inputs.",
        ]
        lines += [
            "",
            f"Speed: {s['fits_per_s']:.0f} isochrone fits/s against the model's {s['model_stars_per_s']:.0f} stars/s (the same predictor, every star) on this machine.",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sky", help="a simulated sky folder (xpengine simulate) with truth.parquet")
    ap.add_argument("--partitions", type=int, nargs="+", default=[0, 3, 6, 9])
    ap.add_argument(
        "--apogee-xp", help="the APOGEE×XP FITS file (../shared/data/apogee_xp/apogee_xp_dev.fits.gz)"
    )
    ap.add_argument("--dataset", help="its training-schema Parquet (xpengine build-dataset apogee-xp)")
    ap.add_argument("--json")
    ap.add_argument("--markdown")
    args = ap.parse_args(argv)
    res: dict = {
        "command": "python "
        + " ".join([Path(sys.argv[0]).as_posix(), *(argv if argv is not None else sys.argv[1:])]),
        "machine": f"{platform.platform()}, {__import__('os').cpu_count()} CPUs",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "real": real_section(),
    }
    if args.apogee_xp and args.dataset:
        res["clusters"] = cluster_section(args.apogee_xp, args.dataset)
    if args.sky:
        res["sky_path"], res["partitions"] = args.sky, args.partitions
        res["sky"] = sky_section(Path(args.sky), args.partitions)
    text = markdown(res)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1, default=float))
    if args.markdown:
        Path(args.markdown).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
