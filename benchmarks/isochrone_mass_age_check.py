"""Mass and age of the stars outside the model's mass/age domain: the model's extrapolation against the MIST
isochrone posterior (`xpengine.inference.isochrone_fit`, the catalogue's default since session 20), side by
side in one run, on a simulated sky scored against its truth and on real stars of known mass.

    python benchmarks/isochrone_mass_age_check.py --sky runs/sky_mist_test --partitions 0 3 6 9 \\
        --json benchmarks/results/isochrone_mass_age.json --markdown benchmarks/results/isochrone_mass_age.md

1. Simulated sky (a seed never used in training; `--sky` a folder written by `xpengine simulate`, its
   `truth.parquet` and `tmass.parquet`): the chosen partitions through the job's read stage and predictor
   (`stages.featurize_partition`, `predictor_stage.CatalogPredictor`, no Ray), once with the model's own mass and age
   everywhere (`mass_age_from_isochrones: false`) and once with the catalogue's default. For the stars
   flagged OUTSIDE_TRAINING_DOMAIN: bias, robust σ and z-spread of mass and ln age against the truth, by
   true phase, with and without a parallax. Since the simulated dwarfs' XP differ from real ones (their
   Teff, logg and [M/H] from a model trained on real stars are biased), the isochrone fit is also run on the
   stars' true Teff, logg and [M/H] with the catalogue's σ: what the method gives when its inputs are right.
   Each with and without the fit's distance prior (`xpengine.inference.galactic_prior`, the catalogue's
   default since session 21), with and without the colour bound of the star's observed BP−RP token (since
   session 22; every other row has it, as the catalogue's fit does), and the catalogue once more with the
   constant extinction coefficients (`extinction: constant`, before session 21). `--ebv-table` gives the
   read stage the sky's E(B−V) table.
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


CONSTANT_A_G = "isochrones, constant A_G"
NO_PRIOR = "isochrones, no distance prior"  # the catalogue's inputs, the fit without `galactic_prior`
TRUE_LABELS = "isochrones, true Teff/logg/[M/H]"
OTHER_GALAXY = "isochrones, another Galaxy in the distance prior"
NO_COLOUR = (
    "isochrones, no colour bound"  # the catalogue's inputs, the fit without the BP−RP bound (session 22)
)
#: with an input E(B−V) (`--ebv-table`), the catalogue's fit without the dereddened (BP−RP)₀ (session 23):
#: the observed colour's one-sided bound only, as before
NO_DERED = "isochrones, bound only, no (BP−RP)₀"
#: the simulated sky's Galaxy (`xpengine.simulate.galaxy`) is also the distance prior's; this one differs
#: from it (thin disk h_z 0.30 → 0.38 kpc, h_R 2.6 → 3.0; thick disk half as many, h_z 0.9 → 1.2, h_R 2.0
#: → 3.0), to show what a prior that is not the truth's own model gives
OTHER_GALAXY_MODEL = {
    "THIN_H_Z": 0.38,
    "THIN_H_R": 3.0,
    "THICK_NORM": 0.06,
    "THICK_H_Z": 1.2,
    "THICK_H_R": 3.0,
}


def other_galaxy_prior(g0: np.ndarray, l_deg: np.ndarray, b_deg: np.ndarray) -> np.ndarray:
    """`galactic_prior.log_weight_table` with `OTHER_GALAXY_MODEL`'s disks in place of the project's."""
    from xpengine.inference.galactic_prior import log_weight_table
    from xpengine.simulate import galaxy

    saved = {k: getattr(galaxy, k) for k in OTHER_GALAXY_MODEL}
    try:
        for k, v in OTHER_GALAXY_MODEL.items():
            setattr(galaxy, k, v)
        return log_weight_table(g0, l_deg, b_deg)
    finally:
        for k, v in saved.items():
            setattr(galaxy, k, v)


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


def sky_catalogues(
    sky: Path, parts: list[int], policies: dict, ebv: bool = False
) -> tuple[dict, dict, float]:
    """The chosen partitions through the job's read stage (with the sky's E(B−V) table as the input's
    E(B−V) where `ebv`, as a user with a dust map would run it), then one predictor per policy."""
    from xpengine.model.metadata import VOCABULARY_FILE, resolve_model_path
    from xpengine.pipeline.config import InferenceConfig, resolve_inputs, resolve_labels
    from xpengine.pipeline.predictor_stage import CatalogPredictor
    from xpengine.pipeline.stages import PartitionTask, featurize_partition

    cfg = InferenceConfig(
        tmass=str(sky / "tmass.parquet"),
        ebv=str(sky / "ebv.parquet") if ebv else None,
        sim_to_real_sigma=False,
    )
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
        chunks += list(
            featurize_partition(row, vocabulary_json=vocab, chunk_rows=1 << 20, tmass=cfg.tmass, ebv=cfg.ebv)
        )
    batch = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
    out, seconds = {}, {}
    # the bprp token (observed BP−RP and σ), which the catalogue's fit takes as its colour bound
    from xpengine.features.vocabulary import Vocabulary

    v = Vocabulary.from_dict(json.loads(vocab))
    j = v.index("bprp") if "bprp" in v else None
    colour = (
        (batch["values"][:, j].astype(np.float64), batch["errors"][:, j].astype(np.float64))
        if j is not None
        else (None, None)
    )
    for name, policy in policies.items():
        pred = CatalogPredictor(
            cfg.model, labels, device="cpu", flag_policy=policy, inputs=inputs, sim_to_real=False
        )
        t0 = time.perf_counter()
        out[name] = pred(dict(batch))
        seconds[name] = time.perf_counter() - t0
        out[name]["bprp"], out[name]["bprp_error"] = colour
    return out, seconds, len(batch["source_id"])


def sky_section(sky: Path, parts: list[int], ebv: bool = False) -> dict:
    import pandas as pd

    from xpengine.catalog.flag_policy import DEFAULT_FLAG_POLICY
    from xpengine.features.flags import SourceFlag, has_flag
    from xpengine.inference.galactic_prior import log_weight_table
    from xpengine.inference.isochrone_fit import fit_isochrones, load_fit_grid

    policies = {
        "model": dataclasses.replace(DEFAULT_FLAG_POLICY, mass_age_from_isochrones=False),
        "isochrones": DEFAULT_FLAG_POLICY,
        # the extinction behind M_G and the dereddened colour before session 21: A_G = 2.740 E(B−V) for all
        CONSTANT_A_G: dataclasses.replace(DEFAULT_FLAG_POLICY, extinction="constant"),
    }
    cats, seconds, n = sky_catalogues(sky, parts, policies, ebv)
    truth = pd.read_parquet(
        sky / "truth.parquet", columns=["source_id", "mass", "age_gyr", "teff", "logg", "m_h", "ebv"]
    )
    truth = truth.set_index("source_id")
    res: dict = {"n_sources": n, "seconds": seconds, "groups": {}, "input_ebv": ebv}
    new = cats["isochrones"]
    t = truth.reindex(new["source_id"])
    flags = new["flags"]
    outside = has_flag(flags, SourceFlag.OUTSIDE_TRAINING_DOMAIN)
    iso = has_flag(flags, SourceFlag.MASS_AGE_FROM_ISOCHRONES)
    plx = has_flag(flags, SourceFlag.DISTANCE_FROM_PARALLAX)
    res["n_outside"], res["n_isochrones"] = int(outside.sum()), int(iso.sum())
    before = has_flag(cats[CONSTANT_A_G]["flags"], SourceFlag.OUTSIDE_TRAINING_DOMAIN)
    tl, tt = t["logg"].to_numpy(np.float64), t["teff"].to_numpy(np.float64)
    kinds = {
        "true domain giants": (tl < 3.5) & (tt > 3500) & (tt < 5500),
        "subgiants (3.5 ≤ logg ≤ 4)": (tl >= 3.5) & (tl <= 4.0),
        "dwarfs (logg > 4)": tl > 4.0,
    }
    res["outside_changed"] = {
        "now_outside": int((outside & ~before).sum()),
        "now_inside": int((~outside & before).sum()),
        "by_kind": {
            k: [int((outside & ~before & m).sum()), int((~outside & before & m).sum())]
            for k, m in kinds.items()
        },
    }
    # the method on right inputs: the true Teff, logg, [M/H] with the catalogue's σ and its M_G
    grid = load_fit_grid()
    rows = np.flatnonzero(iso)
    from xpengine.catalog.flag_policy import extinction_coefficients

    # the catalogue's E(B−V) rule (the input's where the job had the sky's table, else the model's) and
    # its own coefficients (its policy's law at its predicted Teff, logg, [M/H])
    e, e_err = np.asarray(new["ebv"], np.float64), np.asarray(new["ebv_error"], np.float64)
    given = np.zeros(e.shape, bool)
    if ebv:
        table = pd.read_parquet(sky / "ebv.parquet").set_index("source_id").reindex(new["source_id"])
        from xpengine.inference.catalogue_isochrones import input_ebv

        # the catalogue's rule for an input E(B−V)
        raw = {"ebv_input": table["ebv"].to_numpy(), "ebv_input_error": table["ebv_error"].to_numpy()}
        e_tab, e_tab_err, given = input_ebv(raw, None, None, e.size)
        e, e_err = np.where(given, e_tab, e), np.where(given, e_tab_err, e_err)
    k_g, k_c = extinction_coefficients(DEFAULT_FLAG_POLICY, e, new["teff"], new["logg"], new["m_h"])
    with np.errstate(invalid="ignore", divide="ignore"):
        abs_g = new["phot_g_mean_mag"] - 5 * np.log10(new["distance_pc"] / 10) - k_g * e
        abs_g_err = np.hypot(5 / np.log(10) * new["distance_pc_error"] / new["distance_pc"], k_g * e_err)
    abs_g = np.where(plx, abs_g, np.nan)
    tv = {k: t[k].to_numpy(np.float64) for k in ("teff", "logg", "m_h")}
    # the distance prior as the catalogue builds it (`galactic_prior`), from its G, E(B−V) and (l, b), for
    # the stars without a parallax M_G
    g0 = np.where(np.isfinite(abs_g), np.nan, new["phot_g_mean_mag"] - k_g * e)
    sky_rows = (g0[rows], np.asarray(new["l"])[rows], np.asarray(new["b"])[rows])
    prior = log_weight_table(*sky_rows)
    other = other_galaxy_prior(*sky_rows)
    errs = [new[f"{k}_error"][rows] for k in ("teff", "logg", "m_h")]
    # the catalogue's colour bound (its bprp token), as in the catalogue's own fit
    bound, dered = {}, {}
    if new.get("bprp") is not None:
        bound = {"bp_rp": np.asarray(new["bprp"])[rows], "bp_rp_error": np.asarray(new["bprp_error"])[rows]}
        if ebv:  # and, with the input E(B−V), the catalogue's dereddened (BP−RP)₀ (`CatalogPredictor`)
            from xpengine.inference.catalogue_isochrones import dereddened_colour

            c0 = dereddened_colour(
                np.asarray(new["bprp"]), np.asarray(new["bprp_error"]), e, e_err, k_c, given
            )
            dered = {"bp_rp0": c0[0][rows], "bp_rp0_error": c0[1][rows]}
    both = {**bound, **dered}
    arms = [
        (NO_PRIOR, new, None, both),
        (OTHER_GALAXY, new, other, both),
        (NO_COLOUR, new, prior, {}),
        (TRUE_LABELS, tv, prior, both),
        (TRUE_LABELS + ", " + NO_PRIOR.split(", ")[1], tv, None, both),
        (TRUE_LABELS + ", " + OTHER_GALAXY.split(", ")[1], tv, other, both),
        (TRUE_LABELS + ", " + NO_COLOUR.split(", ")[1], tv, prior, {}),
    ]
    if dered:
        arms += [
            (NO_DERED, new, prior, bound),
            (TRUE_LABELS + ", " + NO_DERED.split(", ", 1)[1], tv, prior, bound),
        ]
    refits = {}
    for name, labels, table_, colour in arms:
        ins = [a for k, se in zip(("teff", "logg", "m_h"), errs, strict=True) for a in (labels[k][rows], se)]
        refits[name] = fit_isochrones(
            grid, *ins, abs_g[rows], abs_g_err[rows], distance_prior=table_, **colour
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
        "reddened (true E(B−V) > 0.3)": t["ebv"].to_numpy(np.float64) > 0.3,
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
        for name, f in refits.items():
            g[name] = {
                "mass": scores(f["mass"][sub], f["mass_error"][sub], tm[rows][sub], False),
                "ln_age": scores(f["age"][sub], f["age_error"][sub], ta[rows][sub], True),
            }
        res["groups"][gname] = g
    res["domain_rule"] = domain_rule(new, t, plx, ebv)
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
        distance_prior=prior,
        **both,
    )
    res["fits_per_s"] = rows.size / (time.perf_counter() - t0)
    res["model_stars_per_s"] = n / seconds["model"]
    return res


def _bracket(star: dict, key: str, fmt: str) -> str:
    """(value ± σ) of the cluster member's fit with the one-sided bound only, where the result has it."""
    b = star.get("iso_bound_only")
    return "" if b is None else f" ({b[key]:{fmt}} ± {b[key + '_error']:{fmt}})"


def domain_rule(cat: dict, t, plx: np.ndarray, input_ebv: bool) -> dict:
    """The domain rule on the true giants of the paper's domain: how many are flagged outside. In a run
    without an input E(B−V) (the rule then leaves the parallax M_G undereddened), also how many of them by
    that M_G, and what dereddening it by the model's own E(B−V) less its σ would do (the rule's measured
    branch recomputed: M_G ≤ giant_abs_g_max and a predicted Teff in range is inside), by true class."""
    from xpengine.catalog.flag_policy import DEFAULT_FLAG_POLICY as P
    from xpengine.catalog.flag_policy import extinction_coefficients
    from xpengine.features.flags import SourceFlag, has_flag

    tl, tt = t["logg"].to_numpy(np.float64), t["teff"].to_numpy(np.float64)
    predicted = ~has_flag(cat["flags"], SourceFlag.NO_PREDICTION)
    giants = predicted & (tl < 3.5) & (tt > 3500) & (tt < 5500)
    outside = has_flag(cat["flags"], SourceFlag.OUTSIDE_TRAINING_DOMAIN)
    with np.errstate(invalid="ignore", divide="ignore"):
        m_g = cat["phot_g_mean_mag"] - 5 * np.log10(cat["distance_pc"] / 10)
        ebv = np.clip(cat["ebv"] - cat["ebv_error"], 0, None)
        k_g, _ = extinction_coefficients(P, ebv, cat["teff"], cat["logg"], cat["m_h"])
        teff_in = (cat["teff"] >= P.giant_teff_range[0]) & (cat["teff"] <= P.giant_teff_range[1])
        now = plx & (m_g > P.giant_abs_g_max)
        alt = plx & (m_g - k_g * ebv > P.giant_abs_g_max)
    moved_in = predicted & now & ~alt & teff_in
    counts = {"true_giants": int(giants.sum()), "flagged_outside": int((giants & outside).sum())}
    if input_ebv:
        return counts
    return {
        **counts,
        "outside_by_parallax_m_g": int((giants & outside & now).sum()),
        "alternative_moves_in": {
            "true giants": int((moved_in & giants).sum()),
            "subgiants (3.5 ≤ logg ≤ 4)": int((moved_in & (tl >= 3.5) & (tl <= 4)).sum()),
            "dwarfs (logg > 4)": int((moved_in & (tl > 4)).sum()),
        },
    }


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

    from xpengine.catalog.flag_policy import DEFAULT_FLAG_POLICY, extinction_coefficients
    from xpengine.datasets.schema import read_training_set
    from xpengine.inference.catalogue_isochrones import dereddened_colour
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
        ebv = np.full(g.shape, c.ebv)
        k_g, _ = extinction_coefficients(DEFAULT_FLAG_POLICY, ebv, pred["teff"], pred["logg"], pred["m_h"])
        abs_g = g - 5 * np.log10(c.distance_kpc * 100.0) - k_g * ebv
        abs_g_err = np.hypot(5 / np.log(10) * 0.05, k_g * 0.1 * ebv)
        j_c = vocab.index("bprp")  # the star's observed BP−RP token: the catalogue's colour bound
        colour = {
            "bp_rp": arrays.values[rows, j_c].astype(np.float64),
            "bp_rp_error": arrays.errors[rows, j_c].astype(np.float64),
        }
        # the cluster's E(B−V) is an input E(B−V): the catalogue would also fit the dereddened (BP−RP)₀
        k_c = extinction_coefficients(DEFAULT_FLAG_POLICY, ebv, pred["teff"], pred["logg"], pred["m_h"])[1]
        c0 = dereddened_colour(colour["bp_rp"], colour["bp_rp_error"], ebv, 0.1 * ebv, k_c, True)
        dered = {"bp_rp0": c0[0], "bp_rp0_error": c0[1]}
        labels = [pred[k] for k in ("teff", "teff_error", "logg", "logg_error", "m_h", "m_h_error")]
        f = fit_isochrones(grid, *labels, abs_g, abs_g_err, **colour, **dered)
        f_bound = fit_isochrones(grid, *labels, abs_g, abs_g_err, **colour)
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
                    "iso_bound_only": {
                        k: float(f_bound[k][j]) for k in ("mass", "mass_error", "age", "age_error")
                    },
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
            "Isochrones: with the dereddened (BP−RP)₀ from the cluster's E(B−V) (± 10 %), as the catalogue fits a star with an input E(B−V) since session 23; in brackets, with the observed colour's one-sided bound only.",
            "",
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
                f"{pr['age']:.1f} ± {pr['age_error']:.1f} | {iso['mass']:.2f} ± {iso['mass_error']:.2f}{_bracket(st, 'mass', '.2f')} | "
                f"{iso['age']:.1f} ± {iso['age_error']:.1f}{_bracket(st, 'age', '.1f')} | "
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
            for pname in (
                "model",
                CONSTANT_A_G,
                NO_PRIOR,
                NO_COLOUR,
                NO_DERED,
                "isochrones",
                OTHER_GALAXY,
                TRUE_LABELS + ", " + NO_PRIOR.split(", ")[1],
                TRUE_LABELS + ", " + NO_COLOUR.split(", ")[1],
                TRUE_LABELS + ", " + NO_DERED.split(", ", 1)[1],
                TRUE_LABELS,
                TRUE_LABELS + ", " + OTHER_GALAXY.split(", ")[1],
            ):
                if pname not in g:  # a result file from before the constant-A_G row
                    continue
                m, a = g[pname]["mass"], g[pname]["ln_age"]
                lines.append(
                    f"| {gname} | {g['n']} | {pname} | {m['bias']:+.3f} | {m['sigma']:.3f} | {m['z_spread']:.2f} | {a['bias']:+.3f} | {a['sigma']:.3f} | {a['z_spread']:.2f} |"
                )
        if "outside_changed" in s:
            c = s["outside_changed"]
            lines += [
                "",
                f"The star-by-star extinction (`{CONSTANT_A_G}`: the same catalogue with A_G = 2.740 E(B−V) and E(BP−RP) = 1.339 E(B−V) for every star, as before session 21) moved {c['now_outside']} stars outside the domain and {c['now_inside']} inside"
                + (
                    " (out / in by true kind: "
                    + ", ".join(f"{k} {v[0]} / {v[1]}" for k, v in c["by_kind"].items())
                    + ")."
                    if "by_kind" in c
                    else "."
                ),
            ]
        if "domain_rule" in s:
            d = s["domain_rule"]
            text = f"{d['flagged_outside']} of {d['true_giants']} true domain giants are flagged outside"
            if "alternative_moves_in" in d:
                moved = ", ".join(f"{v} {k}" for k, v in d["alternative_moves_in"].items())
                text = (
                    f"Domain rule (this run has no input E(B−V), so the parallax M_G is not dereddened): {text}, "
                    f"{d['outside_by_parallax_m_g']} of them by a parallax M_G above the limit. Dereddening that M_G "
                    f"by the model's E(B−V) less its σ would move inside: {moved}."
                )
            else:
                text = f"Domain rule (the sky's E(B−V) table as the input E(B−V), dereddening the parallax M_G): {text}."
            lines += ["", text]
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
        "--ebv-table",
        action="store_true",
        help="give the job the sky's ebv.parquet as the input E(B−V) (a dust map), as --ebv does",
    )
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
        res["sky"] = sky_section(Path(args.sky), args.partitions, args.ebv_table)
    text = markdown(res)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1, default=float))
    if args.markdown:
        Path(args.markdown).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
