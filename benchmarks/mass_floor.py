"""How small can a giant's mass σ be, given what its labels and parallax say? A floor for the catalogue's.

    python benchmarks/mass_floor.py --train-truth runs/sky_mist12/truth.parquet runs/sky_mist41/truth.parquet \\
        --test-truth runs/sky_mist_test/truth.parquet --catalogue runs/cat9b_test \\
        --json benchmarks/results/mass_floor.json --markdown benchmarks/results/mass_floor.md

gaia-xp learns mass from simulated XP, which the emulator makes from Teff, logg, [Fe/H] and [α/Fe] alone, so
a simulated spectrum carries no mass information beyond those labels; the parallax adds the luminosity. An
XGBoost regressor trained on the training skies' true giants (logg < 3.5, 3500–5500 K, not dwarfs) from
those labels, with and without log L, and with noise added to them, says how well mass follows from labels
of a given precision in the simulated population (its prior included). Scored on the true giants of the
test sky (robust σ of predicted − true mass per G bin), beside the catalogue's own mass σ there (with
`--catalogue`, only the test giants the catalogue has, so that both are scored on the same stars):

- `exact`: the true labels;
- `aspcap`: labels with APOGEE-like errors (30 K, 0.05, 0.03, 0.02 dex; the emulated twins' perturbation);
- `catalogue`: labels with the catalogue's own errors on these stars (per G bin, the robust σ of its Teff,
  logg and [M/H] against the truth, [M/H] against the true [Fe/H], and the sky's [α/M] σ of 0.05 dex);

each without the luminosity and with log L from the parallax (σ(log L) = 2/ln 10 · σ_ϖ/ϖ, σ_ϖ of the
simulator's `parallax_error_mas`, true parallax; no extinction error), that σ being a feature too (a star's
parallax error is known, so the estimator can trust L where it is precise). The noise is drawn independently per
star and label, in training and test alike. Nothing here is fitted to the catalogue or used to pick a model:
it says which part of the catalogue's σ is the information in the labels and which the model's.

With `--apogee-xp` (the real APOGEE×XP file), the same label-only estimator (`aspcap` noise, mass and ln age,
without and with log L) is applied to the real cluster giants of `real_star_checks.py` (members by position,
[Fe/H] and logg, the paper's giant domain; ASPCAP labels; log L from the star's G, the cluster's literature
distance and E(B−V), A_G = 0.80 · 3.1 E(B−V) and the REFERENCE giant BC_G, its σ `CLUSTER_LOG_L_SIGMA`),
beside the literature. Where
it misses the literature as the catalogue does, the labels and the simulated population's prior, not the
model, set the answer. Beside it, the members' ASPCAP Teff against MIST's RGB at the cluster's literature age
(`rgb_teff_offset`): whether a temperature-scale offset between the isochrones and APOGEE could be the cause.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from check_report import check_parser, command_line, paper_giants, run_header, write_outputs  # noqa: E402

from xpengine.evaluate.metrics import robust_sigma  # noqa: E402

TRUTH = [
    "source_id",
    "evolutionary_state",
    "mass",
    "age_gyr",
    "teff",
    "logg",
    "fe_h",
    "alpha_m",
    "luminosity_lsun",
]
TRUTH_EXTRA = ["g", "parallax_true_mas"]
LABELS = ("teff", "logg", "fe_h", "alpha_m")
ASPCAP_SIGMA = {"teff": 30.0, "logg": 0.05, "fe_h": 0.03, "alpha_m": 0.02}
ALPHA_SIGMA = 0.05  # dex, the catalogue's [α/M] on the sky's giants is not scored per bin here
G_BINS = (6.0, 13.0, 15.0, 17.65)
PAPER_MASS_SIGMA = 0.114  # M☉, the transformer's mass σ of Zhang et al. (2026): issue 12's G < 13 target
#: σ(log L) of a cluster giant from its literature distance (5 %, as real_star_checks.py gives it) and
#: E(B−V) (10 %: ≈ 0.01–0.03 dex), in quadrature
CLUSTER_LOG_L_SIGMA = 0.05
XGB_PARAMS = {"max_depth": 6, "eta": 0.05, "subsample": 0.8, "nthread": 2, "seed": 0}
XGB_ROUNDS = 600


def read_giants(path: str, extra: Sequence[str] = ()) -> pd.DataFrame:
    """True giants of a sky's truth.parquet (the paper's domain, not dwarfs), with columns TRUTH + extra."""
    t = pq.read_table(path, columns=[*TRUTH, *extra]).to_pandas()
    keep = paper_giants(t.teff.to_numpy(), t.logg.to_numpy()) & (t.evolutionary_state != "dwarf").to_numpy()
    return t[keep].reset_index(drop=True)


def log_l_sigma(g: np.ndarray, parallax_mas: np.ndarray) -> np.ndarray:
    """σ(log10 L) from the parallax alone: 2/ln 10 · σ_ϖ/ϖ (N,), σ_ϖ of the simulator's error model at G."""
    from xpengine.simulate.observe import parallax_error_mas

    with np.errstate(divide="ignore", invalid="ignore"):
        return 2.0 / np.log(10.0) * parallax_error_mas(g) / parallax_mas


def features(
    d: pd.DataFrame,
    sigma: Mapping[str, np.ndarray | float] | None,
    with_l: bool,
    rng: np.random.Generator,
    l_sigma: np.ndarray | None = None,
) -> np.ndarray:
    """(N, 4 or 6) labels (and log L and its σ) of `d`, each with Gaussian noise of σ `sigma[label]` (None:
    exact; l_sigma: log L's, None: exact, σ 0)."""
    cols = []
    for lab in LABELS:
        x = d[lab].to_numpy(dtype=np.float64)
        if sigma is not None:
            x = x + rng.normal(0.0, 1.0, x.size) * np.broadcast_to(sigma[lab], x.shape)
        cols.append(x)
    if with_l:
        x = np.log10(d.luminosity_lsun.to_numpy(dtype=np.float64))
        if l_sigma is not None:
            x = x + rng.normal(0.0, 1.0, x.size) * l_sigma
        cols.append(x)
        # the star's σ(log L) is known (from its parallax error), so the estimator can weigh L by it
        cols.append(
            np.zeros(x.size) if l_sigma is None else np.broadcast_to(l_sigma, x.shape).astype(np.float64)
        )
    return np.stack(cols, 1)


def catalogue_sigma(test: pd.DataFrame, cat: pd.DataFrame) -> list[dict[str, Any]]:
    """Per G bin: the catalogue's robust σ of Teff, logg and [M/H] (against the true [Fe/H]) and of mass on the
    test giants it has, with n."""
    df = test.merge(cat, on="source_id", how="inner", suffixes=("", "_cat"))
    out = []
    for lo, hi in itertools.pairwise(G_BINS):
        s = ((df.g >= lo) & (df.g < hi)).to_numpy()
        row: dict[str, Any] = {"g": [lo, hi], "n": int(s.sum())}
        for lab, col in (("teff", "teff"), ("logg", "logg"), ("fe_h", "m_h"), ("mass", "mass")):
            r = (df[f"{col}_cat" if col in test else col] - df[lab]).to_numpy()[s]
            row[lab] = robust_sigma(r[np.isfinite(r)])
        out.append(row)
    return out


def _sigma_per_star(test_like: pd.DataFrame, per_bin: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Each star's label σ from the catalogue's σ of its G bin (stars outside the bins get the nearest)."""
    g = test_like.g.to_numpy()
    k = np.clip(np.searchsorted(np.asarray(G_BINS), g, side="right") - 1, 0, len(per_bin) - 1)
    out = {lab: np.array([b[lab] for b in per_bin])[k] for lab in ("teff", "logg", "fe_h")}
    out["alpha_m"] = np.full(g.size, ALPHA_SIGMA)
    return out


def floors(
    train: pd.DataFrame,
    test: pd.DataFrame,
    cat_sigma: list[dict[str, Any]] | None,
    rounds: int = XGB_ROUNDS,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Mass σ per scenario × luminosity × G bin of an XGBoost regressor trained on `train` (truth giants
    with columns TRUTH + TRUTH_EXTRA), scored on `test`."""
    import xgboost as xgb

    rng = np.random.default_rng(seed)
    scenarios: dict[str, tuple[Any, Any]] = {"exact": (None, None), "aspcap": (ASPCAP_SIGMA, ASPCAP_SIGMA)}
    if cat_sigma is not None:
        scenarios["catalogue"] = (_sigma_per_star(train, cat_sigma), _sigma_per_star(test, cat_sigma))
    l_tr = log_l_sigma(train.g.to_numpy(), train.parallax_true_mas.to_numpy())
    l_te = log_l_sigma(test.g.to_numpy(), test.parallax_true_mas.to_numpy())
    g = test.g.to_numpy()
    out = []
    for (name, (s_tr, s_te)), with_l in itertools.product(scenarios.items(), (False, True)):
        noisy_l = s_tr is not None
        x_tr = features(train, s_tr, with_l, rng, l_tr if noisy_l else None)
        x_te = features(test, s_te, with_l, rng, l_te if noisy_l else None)
        bst = xgb.train(XGB_PARAMS | {"seed": seed}, xgb.DMatrix(x_tr, label=train.mass.to_numpy()), rounds)
        r = bst.predict(xgb.DMatrix(x_te)) - test.mass.to_numpy()
        row: dict[str, Any] = {"scenario": name, "luminosity": with_l, "all": robust_sigma(r), "bins": []}
        for lo, hi in itertools.pairwise(G_BINS):
            s = (g >= lo) & (g < hi)
            row["bins"].append({"g": [lo, hi], "n": int(s.sum()), "sigma": robust_sigma(r[s])})
        out.append(row)
    return out


def rgb_teff_offset(
    teff: np.ndarray, logg: np.ndarray, fe_h: float, alpha_m: float, age_gyr: float
) -> dict[str, Any]:
    """ASPCAP − MIST Teff of a cluster's giants (N,) on the MIST v2.5 isochrone of the cluster's age and
    total metallicity: the RGB's Teff at each star's logg; stars within 0.05 dex of the core-He-burning
    locus's logg and closer to its Teff than to the RGB's are counted as clump-like and left out."""
    from xpengine.simulate import isochrones as iso
    from xpengine.simulate.mist_phases import PHASES

    m_h = float(iso.total_metallicity(np.array([fe_h]), np.array([alpha_m]))[0])
    s = iso.interpolate_eep(np.arange(454.0, 707.0, 0.2), np.log10(age_gyr * 1e9), m_h)
    ok = np.isfinite(s["teff"])
    rgb = ok & (s["phase"] == PHASES["rgb"])
    heb = ok & np.isin(s["phase"], (PHASES["red_clump"], PHASES["secondary_clump"]))
    o = np.argsort(s["logg"][rgb])
    t_rgb = np.interp(logg, s["logg"][rgb][o], s["teff"][rgb][o], left=np.nan, right=np.nan)
    clump = np.zeros(teff.size, dtype=bool)
    if heb.any():
        j = np.abs(logg[:, None] - s["logg"][heb][None, :]).argmin(1)
        near = np.abs(logg - s["logg"][heb][j]) < 0.05
        clump = near & (np.abs(teff - s["teff"][heb][j]) < np.abs(teff - t_rgb))
    d = (teff - t_rgb)[~clump]
    d = d[np.isfinite(d)]
    return {
        "n_rgb": int(d.size),
        "n_clump_like": int(clump.sum()),
        "median": float(np.median(d)) if d.size else None,
    }


def cluster_estimates(
    train: pd.DataFrame, apogee_xp: str, rounds: int = XGB_ROUNDS, seed: int = 0
) -> list[dict[str, Any]]:
    """Median mass and age of each real cluster's domain giants from the label-only estimator (`aspcap` noise
    in training), without and with log L (module docstring)."""
    import xgboost as xgb
    from astropy.io import fits
    from real_star_checks import CLUSTERS, cluster_members, radec_from_apogee_id

    from xpengine.simulate.physics import giant_bc

    rng = np.random.default_rng(seed)
    l_tr = log_l_sigma(train.g.to_numpy(), train.parallax_true_mas.to_numpy())
    with fits.open(apogee_xp) as hdul:
        d = hdul[1].data
        ra, dec = radec_from_apogee_id(d["apogee_id"])
        real = pd.DataFrame(
            {k: np.asarray(d[k], dtype=np.float64) for k in (*LABELS, "gaiaedr3_phot_g_mean_mag")}
        )
    members = cluster_members(ra, dec, real.fe_h.to_numpy(), real.logg.to_numpy())
    domain = paper_giants(real.teff.to_numpy(), real.logg.to_numpy())
    models = {}
    for with_l in (False, True):
        x = features(train, ASPCAP_SIGMA, with_l, rng, l_tr)
        for target, y in (("mass", train.mass.to_numpy()), ("ln_age", np.log(train.age_gyr.to_numpy()))):
            models[(with_l, target)] = xgb.train(XGB_PARAMS | {"seed": seed}, xgb.DMatrix(x, label=y), rounds)
    out = []
    for c in CLUSTERS:
        m = members[c.name] & domain
        if not m.any():
            continue
        r = real[m]
        mbol = (
            r.gaiaedr3_phot_g_mean_mag.to_numpy()
            - (5.0 * np.log10(c.distance_kpc * 1000.0) - 5.0)
            - 0.80 * 3.1 * c.ebv
            + giant_bc("bc_g", r.teff.to_numpy(), r.fe_h.to_numpy(), r.logg.to_numpy())
        )
        row: dict[str, Any] = {
            "cluster": c.name,
            "kind": c.kind,
            "n": int(m.sum()),
            "literature_age_gyr": list(c.age_gyr),
            "literature_mass": c.rgb_mass,
            "teff_minus_mist_rgb": rgb_teff_offset(
                r.teff.to_numpy(),
                r.logg.to_numpy(),
                c.fe_h,
                float(np.nanmedian(r.alpha_m.to_numpy())),
                float(np.mean(c.age_gyr)),
            ),
        }
        for with_l in (False, True):
            x = np.stack([r[lab].to_numpy() for lab in LABELS], 1)
            if with_l:
                x = np.column_stack([x, (4.74 - mbol) / 2.5, np.full(len(r), CLUSTER_LOG_L_SIGMA)])
            key = "with_l" if with_l else "labels"
            row[f"{key}_mass"] = float(np.median(models[(with_l, "mass")].predict(xgb.DMatrix(x))))
            row[f"{key}_age_gyr"] = float(
                np.median(np.exp(models[(with_l, "ln_age")].predict(xgb.DMatrix(x))))
            )
        out.append(row)
    return out


def _offset_cell(o: Mapping[str, Any]) -> str:
    med = "–" if o["median"] is None else f"{o['median']:+.0f}"
    return f"{med} ({o['n_rgb']} / {o['n_clump_like']})"


def render_markdown(res: Mapping[str, Any]) -> str:
    bins = [f"G {lo:g}–{hi:g}" for lo, hi in itertools.pairwise(G_BINS)]
    lines = [
        "# Mass σ that the labels and the parallax allow (simulated giants)",
        "",
        command_line(res),
        "",
        f"XGBoost ({XGB_ROUNDS} rounds) trained on {res['n_train']} true giants of the training skies, scored on "
        f"{res['n_test']} true giants of the test sky: robust σ of predicted − true mass [M☉]. Noise: see the "
        "script's docstring; L: log L with the parallax's error (noisy scenarios) or exact.",
        "",
        "| labels | L | " + " | ".join(bins) + " | all |",
        "|---|---|" + "---|" * (len(bins) + 1),
    ]
    for r in res["floors"]:
        cells = " | ".join(f"{b['sigma']:.3f}" for b in r["bins"])
        lines.append(f"| {r['scenario']} | {'yes' if r['luminosity'] else 'no'} | {cells} | {r['all']:.3f} |")
    if res.get("catalogue"):
        cs = res["catalogue"]
        lines.append(
            "| **the catalogue** (its own mass σ, on its "
            + "/".join(str(b["n"]) for b in cs)
            + " test giants) | parallax | "
            + " | ".join(f"**{b['mass']:.3f}**" for b in cs)
            + " | |"
        )
        bright = [r for r in res["floors"] if r["luminosity"]]
        lines += [
            "",
            f"Against the paper's {PAPER_MASS_SIGMA} M☉ (Zhang et al. 2026; issue 12's G < 13 target), G 6–13: "
            f"the catalogue {cs[0]['mass'] / PAPER_MASS_SIGMA:.2f}×; with L, "
            + ", ".join(f"{r['scenario']} {r['bins'][0]['sigma'] / PAPER_MASS_SIGMA:.2f}×" for r in bright)
            + ".",
        ]
        lines += [
            "",
            "The catalogue's label σ on these giants, used by `catalogue` (Teff [K] / logg / [M/H] against the "
            "true [Fe/H]): "
            + "; ".join(
                f"G {b['g'][0]:g}–{b['g'][1]:g}: {b['teff']:.0f} / {b['logg']:.3f} / {b['fe_h']:.3f}"
                for b in cs
            )
            + f"; [α/M] {ALPHA_SIGMA} dex assumed.",
        ]
    if res.get("clusters"):
        lines += [
            "",
            "## Real cluster giants through the label-only estimator",
            "",
            "ASPCAP labels of the domain giants (`real_star_checks.py` membership), the estimator trained with "
            "APOGEE-like label errors; medians. With L: log L from G, the literature distance and E(B−V). "
            "ASPCAP − MIST: the members' Teff against MIST's RGB at their logg on the isochrone of the "
            "literature age (middle of the range) and [Fe/H] (`rgb_teff_offset`; n: RGB-like / clump-like "
            "members).",
            "",
            "| cluster | n | literature age [Gyr] / mass [M☉] | labels: age / mass | labels + L: age / mass "
            "| ASPCAP − MIST RGB Teff [K] (n) |",
            "|---|---|---|---|---|---|",
        ]
        for c in res["clusters"]:
            lo, hi = c["literature_age_gyr"]
            lines.append(
                f"| {c['cluster']} | {c['n']} | {lo:g}–{hi:g} / {c['literature_mass']:g} | "
                f"{c['labels_age_gyr']:.1f} / {c['labels_mass']:.2f} | {c['with_l_age_gyr']:.1f} / "
                f"{c['with_l_mass']:.2f} | {_offset_cell(c['teff_minus_mist_rgb'])} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = check_parser(__doc__)
    ap.add_argument("--train-truth", nargs="+", required=True, help="truth.parquet of the training skies")
    ap.add_argument("--test-truth", required=True, help="truth.parquet of a sky never used in training")
    ap.add_argument("--catalogue", help="the catalogue job's output on the test sky: its label σ and mass σ")
    ap.add_argument(
        "--apogee-xp", help="the APOGEE×XP FITS file: also the real cluster giants (module docstring)"
    )
    ap.add_argument("--rounds", type=int, default=XGB_ROUNDS)
    args = ap.parse_args(argv)
    train = pd.concat([read_giants(p, TRUTH_EXTRA) for p in args.train_truth], ignore_index=True)
    test = read_giants(args.test_truth, TRUTH_EXTRA)
    cat_sigma = None
    if args.catalogue:
        from sim_sky_checks import read_catalogue

        cat = read_catalogue(args.catalogue)[["source_id", "teff", "logg", "m_h", "mass"]]
        test = test[test.source_id.isin(cat.source_id)].reset_index(drop=True)  # the same stars side by side
        cat_sigma = catalogue_sigma(test, cat)
    res = {
        **run_header("benchmarks/mass_floor.py", argv),
        "n_train": len(train),
        "n_test": len(test),
        "catalogue": cat_sigma,
        "floors": floors(train, test, cat_sigma, rounds=args.rounds),
    }
    if args.apogee_xp:
        res["clusters"] = cluster_estimates(train, args.apogee_xp, rounds=args.rounds)
    write_outputs(res, args.json, args.markdown, render_markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
