"""The isochrone fit's Galactic distance prior on real stars of known distance: the members of 15 star
clusters in the APOGEE×XP file, whose literature distance and E(B−V) give each star an absolute magnitude
that the catalogue would not have without a parallax.

    python benchmarks/distance_prior_real.py --apogee-xp ../shared/data/apogee_xp/apogee_xp_dev.fits.gz \\
        --dataset runs/apogee_xp_dev.parquet --json benchmarks/results/distance_prior_real.json \\
        --markdown benchmarks/results/distance_prior_real.md

The catalogue fits isochrones to a star without a parallax M_G with a distance prior, ρ(d) d³ of the
project's Galaxy along its line of sight (`xpengine.inference.galactic_prior`). On the simulated sky that
prior is the truth's own Galaxy, so its gain there is an upper bound. Here the stars are real, and their
distances come from the clusters' literature, not from any model:

- members (`real_star_checks.cluster_members`: position, [Fe/H] and ASPCAP logg < 3.8): globular-cluster
  giants at 4–18 kpc in the halo, open-cluster giants, turn-off and Hertzsprung-gap stars;
- Teff, logg and [M/H] with their σ from the bundled model on each star's XP (the catalogue's standard input);
- the reference fit: M_G = G − 5 log10(d / 10 pc) − A_G from the cluster's distance (5 %) and E(B−V) (10 %),
  the extinction coefficients the catalogue uses (`flag_policy.extinction_coefficients`);
- the same stars without M_G, as the catalogue treats a star with no usable parallax: with no distance
  prior, with the prior (extinction-corrected G from the cluster's E(B−V)), with the prior of another
  Galaxy (`isochrone_mass_age_check.OTHER_GALAXY_MODEL`), and with the prior from the model's own E(B−V)
  (a catalogue without an input E(B−V)), and with the halo's density alone (what a prior by Galactic
  component, weighing a metal-poor star's disk components down, would give the globular-cluster giants).

Since session 24 it also asks why the globular giants' reference ages are young (`on_track_fits`): each
giant's ASPCAP and model Teff and logg against MIST's own at the literature age and its M_G, and the
reference fit rerun on MIST's own labels, with the model's σ and with tight ones.

Scored against the reference fit: the posterior mean M_G (what the prior acts on: the fit run on a copy
of the grid whose `mass` column holds each point's M_G), mass and ln age; and the age against the
cluster's literature range. The mass and age of cluster giants in the catalogue come from the model, not
from this fit: the giants are here to test the prior over 4–18 kpc, where the turn-off stars cannot reach.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from check_report import check_parser, command_line, paper_giants, run_header, write_outputs  # noqa: E402

REFERENCE = "cluster distance (reference)"
NO_PRIOR = "no M_G, no prior"
PRIOR = "no M_G, distance prior"
OTHER = "no M_G, another Galaxy's prior"
MODEL_EBV = "no M_G, prior from the model's E(B−V)"
HALO = "no M_G, the halo's density alone"
VARIANTS = (NO_PRIOR, PRIOR, OTHER, MODEL_EBV, HALO)


def halo_prior(g0: np.ndarray, l_deg: np.ndarray, b_deg: np.ndarray) -> np.ndarray:
    """`galactic_prior.log_weight_table` with the halo's density alone: what a prior by Galactic component
    would give a metal-poor star, whose disk components it would weigh down."""
    from xpengine.inference.galactic_prior import log_weight_table
    from xpengine.simulate import galaxy

    def halo_density(d_kpc, l_deg, b_deg):
        x, y, z = galaxy._galactocentric(
            np.asarray(d_kpc), np.asarray(l_deg)[:, None], np.asarray(b_deg)[:, None]
        )
        return galaxy._density_rows("halo", x, y, z)

    saved = galaxy.total_density
    try:
        galaxy.total_density = halo_density
        return log_weight_table(g0, l_deg, b_deg)
    finally:
        galaxy.total_density = saved


def robust(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(1.4826 * np.median(np.abs(x - np.median(x)))) if x.size else float("nan")


def m_g_grid(grid: Any) -> Any:
    """A copy of the fit grid whose `mass` column is each point's M_G, so that the fit's `mass` output is
    the posterior mean and σ of M_G (its coarse companion alike)."""
    coarse = None if grid.coarse is None else dataclasses.replace(grid.coarse, mass=grid.coarse.abs_g)
    return dataclasses.replace(grid, mass=grid.abs_g, coarse=coarse)


def members(fits_path: str, dataset: str) -> dict[str, Any]:
    """The cluster members found in the training-schema dataset: their rows, cluster, split, G, (l, b),
    ASPCAP Teff and logg, and the literature distance, E(B−V) and age range per star."""
    import pyarrow.parquet as pq
    import real_star_checks as rsc
    from astropy.io import fits

    from xpengine.catalog.sky import icrs_to_galactic
    from xpengine.datasets.schema import read_training_set

    d = fits.getdata(fits_path, 1)
    ra, dec = rsc.radec_from_apogee_id(d["apogee_id"])
    sid = np.asarray(d["gaiaedr3_source_id"], dtype=np.int64)
    found = rsc.cluster_members(ra, dec, np.asarray(d["fe_h"], float), np.asarray(d["logg"], float))
    arrays = read_training_set(dataset)
    side = pq.read_table(dataset, columns=["split", "phot_g_mean_mag"])
    index = {int(s): i for i, s in enumerate(arrays.source_id)}
    pos = {int(s): (a, b) for s, a, b in zip(sid, ra, dec, strict=True)}
    rows, cluster = [], []
    for c in rsc.CLUSTERS:
        for s in dict.fromkeys(int(x) for x in sid[found[c.name]]):  # a star with two APOGEE ids: once
            if s in index:
                rows.append(index[s])
                cluster.append(c)
    rows_a = np.asarray(rows, dtype=np.int64)
    radec = np.array([pos[int(arrays.source_id[i])] for i in rows_a])
    l_deg, b_deg = icrs_to_galactic(radec[:, 0], radec[:, 1])
    vocab = arrays.vocabulary
    return {
        "arrays": arrays,
        "rows": rows_a,
        "cluster": [c.name for c in cluster],
        "kind": np.array([c.kind for c in cluster]),
        "split": np.asarray(side.column("split"))[rows_a],
        "g": side.column("phot_g_mean_mag").to_numpy().astype(np.float64)[rows_a],
        "l": l_deg,
        "b": b_deg,
        "aspcap_teff": arrays.values[rows_a, vocab.index("teff")],
        "aspcap_logg": arrays.values[rows_a, vocab.index("logg")],
        "distance_kpc": np.array([c.distance_kpc for c in cluster]),
        "fe_h": np.array([c.fe_h for c in cluster]),
        "ebv": np.array([c.ebv for c in cluster]),
        "age_lo": np.array([c.age_gyr[0] for c in cluster]),
        "age_hi": np.array([c.age_gyr[1] for c in cluster]),
    }


def fits_for(m: dict[str, Any]) -> dict[str, Any]:
    """The model's labels for the members and the six isochrone fits (module docstring), each of mass,
    ln age and M_G."""
    import real_star_checks as rsc
    from isochrone_mass_age_check import other_galaxy_prior

    from xpengine.catalog.flag_policy import DEFAULT_FLAG_POLICY, extinction_coefficients
    from xpengine.inference.galactic_prior import log_weight_table
    from xpengine.inference.isochrone_fit import fit_isochrones, load_fit_grid
    from xpengine.inference.predictor import Predictor

    p = Predictor.load("gaia-xp", device="cpu")
    n_all = len(m["arrays"].source_id)
    sel = np.zeros(n_all, bool)
    sel[m["rows"]] = True
    # the predictions come in the arrays' row order: put them back in the members' order
    ascending = np.argsort(m["rows"])
    by_row = rsc.standard_predictions(p, m["arrays"], sel, g_mag=m["g"][ascending])
    rank = np.argsort(ascending)
    pred = {k: np.asarray(v)[rank] for k, v in by_row.items()}
    labels = [pred[k] for k in ("teff", "teff_error", "logg", "logg_error", "m_h", "m_h_error")]
    policy = DEFAULT_FLAG_POLICY
    k_g, _ = extinction_coefficients(policy, m["ebv"], pred["teff"], pred["logg"], pred["m_h"])
    mu = 5 * np.log10(m["distance_kpc"] * 100.0)
    abs_g = m["g"] - mu - k_g * m["ebv"]
    abs_g_err = np.hypot(
        5 / np.log(10) * rsc.DISTANCE_ERROR_FRACTION, k_g * rsc.EBV_ERROR_FRACTION * m["ebv"]
    )
    g0 = m["g"] - k_g * m["ebv"]
    k_model, _ = extinction_coefficients(policy, pred["ebv"], pred["teff"], pred["logg"], pred["m_h"])
    priors = {
        NO_PRIOR: None,
        PRIOR: log_weight_table(g0, m["l"], m["b"]),
        OTHER: other_galaxy_prior(g0, m["l"], m["b"]),
        MODEL_EBV: log_weight_table(m["g"] - k_model * pred["ebv"], m["l"], m["b"]),
        HALO: halo_prior(g0, m["l"], m["b"]),
    }
    grid = load_fit_grid()
    grid_m_g = m_g_grid(grid)
    # the catalogue's colour bound: each star's observed BP−RP token (since session 22)
    j_c = m["arrays"].vocabulary.index("bprp")
    bound = {
        "bp_rp": m["arrays"].values[m["rows"], j_c].astype(np.float64),
        "bp_rp_error": m["arrays"].errors[m["rows"], j_c].astype(np.float64),
    }
    out: dict[str, Any] = {"pred": pred, "abs_g": abs_g, "abs_g_err": abs_g_err, "bound": bound, "fits": {}}
    for name, prior in ((REFERENCE, None), *priors.items()):
        known = name == REFERENCE
        args = (*labels, abs_g if known else None, abs_g_err if known else None)
        f = fit_isochrones(grid, *args, distance_prior=prior, **bound)
        f_m_g = fit_isochrones(grid_m_g, *args, distance_prior=prior, **bound)
        out["fits"][name] = {**f, "abs_g": f_m_g["mass"], "abs_g_error": f_m_g["mass_error"]}
    return out


ON_TRACK = "MIST's first-ascent Teff and logg at the literature age, the cluster's [Fe/H]; the model's σ"
ON_TRACK_TIGHT = "the same labels, σ 30 K / 0.03 / 0.03 dex (with the fit's floors 67 K / 0.067 / ≥ 0.058)"
ON_TRACK_FLAT = "the same, a flat prior per grid point (no IMF, no age prior)"
ON_TRACK_FLAT_MODEL_SIGMA = "MIST's labels, the model's σ, a flat prior per grid point"
TRACK_WINDOW = 0.3  # [mag]: grid points within this of a star's M_G make its on-track labels
BRANCH_WIDTH = 60.0  # [K]: points this close to the window's coolest are its first-ascent branch
AGE_MARGIN = 0.02  # [ln Gyr] beyond the literature range (the grid's isochrones are 0.115 apart in ln age)


def on_track_labels(grid: Any, m: dict[str, Any], m_g: np.ndarray) -> dict[str, np.ndarray]:
    """Each member's labels as MIST has them on the first-ascent giant branch at its M_G `m_g`: on the [Fe/H]
    node nearest its cluster's, for each isochrone whose age is within the literature range (± `AGE_MARGIN`
    in ln), the evolved points (logg < 3.8) within `TRACK_WINDOW` of its M_G and within `BRANCH_WIDTH` of the
    coolest of them (at a given luminosity the red giant branch is the coolest phase: the clump, horizontal
    branch and early AGB lie bluer), a straight line of Teff and of logg against M_G through them, read at
    its M_G; the median over those isochrones. NaN where none has two such points 0.05 mag apart. (The
    coolest point of the window instead sits at its bright edge, where the branch is cooler and of lower
    logg: that made the open-cluster giants' fits 0.3 in ln age old.)"""
    teff, logg = np.full(m_g.size, np.nan), np.full(m_g.size, np.nan)
    for i in range(m_g.size):
        node = grid.feh_nodes[np.argmin(np.abs(grid.feh_nodes - m["fe_h"][i]))]
        sel = np.flatnonzero(
            (np.abs(grid.feh - node) < 1e-3)
            & (grid.ln_age >= np.log(m["age_lo"][i]) - AGE_MARGIN)
            & (grid.ln_age <= np.log(m["age_hi"][i]) + AGE_MARGIN)
            & (grid.logg < 3.8)
            & (np.abs(grid.abs_g - m_g[i]) < TRACK_WINDOW)
        )
        at_m_g = []
        for age in np.unique(grid.ln_age[sel]):
            iso = sel[grid.ln_age[sel] == age]
            branch = iso[grid.teff[iso] < grid.teff[iso].min() + BRANCH_WIDTH]
            x = grid.abs_g[branch].astype(np.float64)
            if branch.size < 2 or np.ptp(x) < 0.05:
                continue
            at_m_g.append(
                [np.polyval(np.polyfit(x, getattr(grid, k)[branch], 1), m_g[i]) for k in ("teff", "logg")]
            )
        if at_m_g:
            teff[i], logg[i] = np.median(np.asarray(at_m_g), axis=0)
    return {"teff": teff, "logg": logg}


def on_track_fits(m: dict[str, Any], res: dict[str, Any]) -> dict[str, Any]:
    """Why the reference fit's ages of the globular giants are young: the labels against MIST's own at the
    literature age (ASPCAP's and the model's Teff and logg less `on_track_labels`), and the reference fit
    (the cluster's M_G, the star's colour bound) run again on MIST's own labels with the cluster's [Fe/H],
    once with the model's σ and once with tight ones (the fit adds its σ floors in quadrature), and with
    the model's and the tight ones on a grid whose points all have the same prior (no IMF, no age prior):
    what the likelihood alone says. If those fits still come out young, the labels are not why."""
    import dataclasses

    from xpengine.inference.isochrone_fit import fit_isochrones, load_fit_grid

    grid = load_fit_grid()
    flat = dataclasses.replace(grid, log_prior=np.zeros_like(grid.log_prior), coarse=None)
    track = on_track_labels(grid, m, res["abs_g"])
    pred, n = res["pred"], res["abs_g"].size
    tight = (np.full(n, 30.0), np.full(n, 0.03), np.full(n, 0.03))
    fits = {}
    for name, g, (st, sg, sm) in (
        (ON_TRACK, grid, (pred["teff_error"], pred["logg_error"], pred["m_h_error"])),
        (ON_TRACK_FLAT_MODEL_SIGMA, flat, (pred["teff_error"], pred["logg_error"], pred["m_h_error"])),
        (ON_TRACK_TIGHT, grid, tight),
        (ON_TRACK_FLAT, flat, tight),
    ):
        f = fit_isochrones(
            g,
            *(track["teff"], st, track["logg"], sg, m["fe_h"], sm, res["abs_g"], res["abs_g_err"]),
            **res.get("bound", {}),
        )
        fits[name] = f
    return {"track": track, "fits": fits}


def score_on_track(m: dict[str, Any], res: dict[str, Any], track: dict[str, Any], sel: np.ndarray):
    """Medians over the members `sel` that have on-track labels: the label offsets from MIST's own, and
    each fit's ln age less the literature's (its middle in ln), its σ(ln age) and mass."""
    t = track["track"]
    ok = sel & np.isfinite(t["teff"])
    lit = np.log(np.sqrt(m["age_lo"] * m["age_hi"]))

    def med(x: np.ndarray) -> float | None:
        use = ok & np.isfinite(x)
        return float(np.median(x[use])) if use.any() else None

    out: dict[str, Any] = {
        "n": int(ok.sum()),
        "aspcap_teff_minus_mist": med(m["aspcap_teff"] - t["teff"]),
        "aspcap_logg_minus_mist": med(m["aspcap_logg"] - t["logg"]),
        "model_teff_minus_mist": med(res["pred"]["teff"] - t["teff"]),
        "model_logg_minus_mist": med(res["pred"]["logg"] - t["logg"]),
        "model_m_h_minus_cluster": med(res["pred"]["m_h"] - m["fe_h"]),
    }
    for name, f in ((REFERENCE, res["fits"][REFERENCE]), *track["fits"].items()):
        out[name] = {
            "ln_age_minus_literature": med(np.log(f["age"]) - lit),
            "ln_age_sigma": med(f["age_error"] / f["age"]),
            "mass": med(f["mass"]),
        }
    return out


def groups(m: dict[str, Any]) -> dict[str, np.ndarray]:
    """Members by kind (the paper's giant domain by their ASPCAP Teff and logg) and by open cluster."""
    giant = paper_giants(m["aspcap_teff"], m["aspcap_logg"])
    globular = m["kind"] == "globular"
    out = {
        "all members": np.ones(globular.size, bool),
        "globular-cluster giants (4–18 kpc)": globular & giant,
        "open-cluster giants (1.9–4.1 kpc)": ~globular & giant,
        "outside the giant domain (by ASPCAP Teff and logg)": ~giant,
        "test split only": m["split"] == "test",
    }
    for name in ("NGC 6791", "NGC 6819", "NGC 7789"):
        out[name] = np.array([c == name for c in m["cluster"]])
    return out


def score(m: dict[str, Any], res: dict[str, Any], sel: np.ndarray) -> dict[str, Any]:
    """Each fit's M_G against the cluster's, and its mass and ln age against the reference fit's and the
    literature's age, over the members `sel`."""
    ref = res["fits"][REFERENCE]
    lit_mid = np.log(0.5 * (m["age_lo"] + m["age_hi"]))
    no_prior_off = np.abs(res["fits"][NO_PRIOR]["abs_g"] - res["abs_g"])
    out: dict[str, Any] = {"n": int(sel.sum())}
    for name, f in res["fits"].items():
        ok = sel & np.isfinite(f["abs_g"]) & np.isfinite(ref["mass"])
        d_m_g = f["abs_g"] - res["abs_g"]
        z = d_m_g / np.hypot(f["abs_g_error"], res["abs_g_err"])
        row = {
            "n_fitted": int(ok.sum()),
            "m_g_bias": float(np.median(d_m_g[ok])) if ok.any() else None,
            "m_g_sigma": robust(d_m_g[ok]),
            "m_g_z_median": float(np.median(z[ok])) if ok.any() else None,
            "m_g_z_rms": float(np.sqrt(np.mean(z[ok] ** 2))) if ok.any() else None,
            "mass_vs_reference": float(np.median((f["mass"] - ref["mass"])[ok])) if ok.any() else None,
            "mass_vs_reference_sigma": robust((f["mass"] - ref["mass"])[ok]),
            "ln_age_vs_reference": float(np.median((f["ln_age"] - ref["ln_age"])[ok])) if ok.any() else None,
            "ln_age_vs_literature": float(np.median((f["ln_age"] - lit_mid)[ok])) if ok.any() else None,
        }
        if name not in (REFERENCE, NO_PRIOR) and ok.any():
            row["closer_than_no_prior"] = float(np.mean(np.abs(d_m_g[ok]) < no_prior_off[ok]))
        out[name] = row
    return out


def _f(v: Any, fmt: str = "+.2f") -> str:
    return "–" if v is None or not np.isfinite(v) else format(v, fmt)


def markdown(result: dict[str, Any]) -> str:
    lines = ["# The distance prior on real stars of known distance (cluster members, APOGEE×XP)", ""]
    lines += [command_line(result), ""]
    lines += [
        f"{result['n_members']} members of {result['n_clusters']} clusters "
        f"({result['n_test']} in the test split; the others' XP labels are from stars the model was trained "
        "on, which only makes its Teff, logg and [M/H] closer to ASPCAP's). The reference fit has the "
        "cluster's M_G; the others have none, as a catalogue star without a usable parallax. "
        "ΔM_G: the fit's posterior mean M_G less the cluster's M_G (negative: the fit puts the star "
        "too bright, i.e. too far); z: ΔM_G over both σ in quadrature; 'closer': the fraction of stars "
        "whose M_G the prior brings closer to the cluster's than the fit without it.",
        "",
        "| stars | fit | n | ΔM_G median | ΔM_G σ | z median / rms | closer | Δmass vs reference | "
        "Δln age vs reference | ln age − ln literature |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for gname, g in result["groups"].items():
        for name in (REFERENCE, *VARIANTS):
            r = g[name]
            lines.append(
                f"| {gname} | {name} | {r['n_fitted']} | {_f(r['m_g_bias'])} | {_f(r['m_g_sigma'], '.2f')} | "
                f"{_f(r['m_g_z_median'])} / {_f(r['m_g_z_rms'], '.2f')} | "
                f"{_f(r.get('closer_than_no_prior'), '.2f')} | "
                f"{_f(r['mass_vs_reference'])} | {_f(r['ln_age_vs_reference'])} | "
                f"{_f(r['ln_age_vs_literature'])} |"
            )
    lines += [
        "",
        "## Why the globular giants' isochrone ages are young",
        "",
        "The reference fit (the cluster's M_G, the star's colour bound) against the same fit given MIST's own "
        "labels: for each isochrone within the literature ages on the [Fe/H] node nearest the cluster's, its "
        f"first-ascent branch (the evolved points within {BRANCH_WIDTH:.0f} K of the coolest within "
        f"{TRACK_WINDOW} mag of the star's M_G) read at the star's M_G along a straight line, the median over "
        "those isochrones, with the cluster's [Fe/H]. If the fit on MIST's own labels is "
        "young too, the labels are not the whole cause. The tight σ are the given ones; the fit adds its floors "
        "(60 K, 0.06 and 0.05 dex) in quadrature. The flat-prior fits give every grid point the same prior (no "
        "IMF, no age prior): what the likelihood alone says. The fit reports exp(posterior mean ln age).",
        "",
        "| stars | n | ASPCAP Teff / logg − MIST | model Teff / logg − MIST | model [M/H] − cluster | fit | "
        "ln age − ln literature | σ(ln age) | mass |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for gname, g in result.get("on_track", {}).items():
        for name in (REFERENCE, ON_TRACK, ON_TRACK_FLAT_MODEL_SIGMA, ON_TRACK_TIGHT, ON_TRACK_FLAT):
            r = g[name]
            lines.append(
                f"| {gname} | {g['n']} | {_f(g['aspcap_teff_minus_mist'], '+.0f')} K / "
                f"{_f(g['aspcap_logg_minus_mist'], '+.3f')} | {_f(g['model_teff_minus_mist'], '+.0f')} K / "
                f"{_f(g['model_logg_minus_mist'], '+.3f')} | {_f(g['model_m_h_minus_cluster'])} | {name} | "
                f"{_f(r['ln_age_minus_literature'])} | {_f(r['ln_age_sigma'], '.2f')} | {_f(r['mass'], '.2f')} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = check_parser(__doc__)
    ap.add_argument("--apogee-xp", required=True, help="../shared/data/apogee_xp/apogee_xp_dev.fits.gz")
    ap.add_argument("--dataset", required=True, help="its training-schema Parquet (xpengine build-dataset)")
    args = ap.parse_args(argv)
    for path in (args.apogee_xp, args.dataset):
        if not Path(path).exists():
            raise SystemExit(f"distance_prior_real: {path} not found")
    result: dict[str, Any] = run_header("benchmarks/distance_prior_real.py", argv)
    m = members(args.apogee_xp, args.dataset)
    res = fits_for(m)
    result["n_members"] = int(m["rows"].size)
    result["n_clusters"] = len(set(m["cluster"]))
    result["n_test"] = int((m["split"] == "test").sum())
    result["groups"] = {k: score(m, res, sel) for k, sel in groups(m).items() if sel.any()}
    track = on_track_fits(m, res)
    g = groups(m)
    on_track_groups = {k: sel for k, sel in g.items() if k.startswith(("globular", "open"))}
    open_giants = next(sel for k, sel in g.items() if k.startswith("open"))
    for name in ("NGC 6791", "NGC 6819", "NGC 7789"):  # each open cluster's giants apart
        on_track_groups[f"{name} giants"] = g[name] & open_giants
    result["on_track"] = {
        k: score_on_track(m, res, track, sel) for k, sel in on_track_groups.items() if sel.any()
    }
    result["stars"] = [
        {
            "source_id": int(m["arrays"].source_id[i]),
            "cluster": m["cluster"][j],
            "split": str(m["split"][j]),
            "abs_g_cluster": float(res["abs_g"][j]),
            "aspcap": {"teff": float(m["aspcap_teff"][j]), "logg": float(m["aspcap_logg"][j])},
            "model": {k: float(res["pred"][k][j]) for k in ("teff", "logg", "m_h")},
            **{
                name: {
                    k: float(f[k][j])
                    for k in ("abs_g", "abs_g_error", "mass", "mass_error", "age", "age_error")
                }
                for name, f in res["fits"].items()
            },
        }
        for j, i in enumerate(m["rows"])
    ]
    write_outputs(result, args.json, args.markdown, markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
