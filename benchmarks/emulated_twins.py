"""Real stars and their emulated twins: does a model read a real XP spectrum as it reads the simulator's XP
at the same labels?

    python benchmarks/emulated_twins.py --apogee-xp ../shared/data/apogee_xp/apogee_xp_dev.fits.gz \\
        --dataset runs/apogee_xp_dev.parquet --models gaia-xp --emulator v1 \\
        --json benchmarks/results/emulated_twins.json --markdown benchmarks/results/emulated_twins.md

`gaia-xp` learns mass and age from simulated stars only, whose XP come from the emulator
(`xpengine.simulate`). On real stars it reads real XP. If real and emulated XP differed in what carries
mass and age, the real-star ages would be off for that reason alone. Here each real APOGEE×XP star of a
group is also given its emulated twin: the emulator's noise-free XP at the star's ASPCAP Teff, logg,
[Fe/H], [α/M], its E(B−V) = AK_TARG/0.352 and its G (`benchmarks/realism_report.emulate_real_stars`, the
simulator's own path), with the real star's colours (BP−RP, J−H, J−K) and coefficient errors. Both run
through the model on the catalogue's standard input (no parallax: the file has none). Groups: the
globular- and open-cluster members of `benchmarks/real_star_checks.py` (any split) and the test split's
metal-poor ([Fe/H] < −1) and disk ([Fe/H] > −0.5) giants (logg < 3.5, 3500–5500 K).

Equal medians for real and twin mean that a real-star mass or age error does not come from the emulator's
realism but from what the model makes of the labels (the simulated population, the information XP carry).
`--emulator` names the calibration the model's training skies used (gaia-xp: v1).

Per star (`scatter`, groups of ≥ 50 stars): the spread of model(real) − model(twin) in ln mass and ln age,
beside the spread that the training skies' own variation (residual-PC draw and noise) and the twin's label
accuracy give; what is left is the sim-to-real spread that σ calibrated on simulated stars miss
(`training/fit_sim_to_real.py` turns it into the calibration's sim-to-real term).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import real_star_checks as rsc  # noqa: E402
import realism_report as rr  # noqa: E402
from check_report import check_parser, command_line, paper_giants  # noqa: E402

from xpengine.evaluate.baseline import standard_input_names  # noqa: E402
from xpengine.inference.predictor import Predictor  # noqa: E402

STANDARD_INPUTS = standard_input_names()  # BP/RP 0–29, BP−RP, J−H, J−K
XP_TOKENS = [*(f"bp{i}" for i in range(55)), *(f"rp{i}" for i in range(55))]


def groups(fits_path: str) -> dict[str, dict[str, np.ndarray]]:
    """Group name → the real rows of `realism_report._real_rows` (every split) in that group."""
    from astropy.io import fits

    rows = [rr._real_rows(fits_path, None), rr._real_rows(fits_path, "test")]
    real = {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}
    with fits.open(fits_path, memmap=False) as h:
        d = h[1].data
        sid = np.asarray(d["gaiaedr3_source_id"], dtype=np.int64)
        ra, dec = rsc.radec_from_apogee_id(np.asarray(d["apogee_id"]))
        members = rsc.cluster_members(ra, dec, np.asarray(d["fe_h"], float), np.asarray(d["logg"], float))
    out: dict[str, dict[str, np.ndarray]] = {}

    def take(name: str, mask: np.ndarray) -> None:
        if mask.any():
            out[name] = {k: v[mask] for k, v in real.items()}

    # every group keeps the giants of the paper's domain (ASPCAP labels), cluster members too, as in
    # `real_star_checks` (since session 13; NGC 7789's members had included 6 turn-off and Hertzsprung-gap
    # stars at 5860–6180 K beside its giants)
    domain = paper_giants(real["teff"], real["logg"])
    gc = np.concatenate([sid[members[c.name]] for c in rsc.CLUSTERS if c.kind == "globular"])
    take("globular-cluster giants", domain & np.isin(real["source_id"], gc))
    for c in rsc.CLUSTERS:
        if c.kind == "open":
            take(c.name, domain & np.isin(real["source_id"], sid[members[c.name]]))
    giant = (real["split"] == "test") & domain
    take("metal-poor giants, test split", giant & (real["fe_h"] < -1.0))
    take("disk giants, test split", giant & (real["fe_h"] > -0.5))
    return out


def compare(predictor: Predictor, arrays: Any, group: Mapping[str, np.ndarray], cal: Any) -> dict[str, Any]:
    """Median predictions for the group's real XP and for its emulated twins."""
    from xpengine.evaluate.runner import align_to_vocabulary

    index = {s: i for i, s in enumerate(arrays.source_id)}
    keep = np.array([s in index for s in group["source_id"]])
    rows = np.array([index[s] for s in group["source_id"][keep]], dtype=np.int64)
    pv = predictor.vocabulary
    values, errors = align_to_vocabulary(arrays.values[rows], arrays.errors[rows], arrays.vocabulary, pv)
    twin = values.copy()
    twin[:, [pv.index(t) for t in XP_TOKENS]] = rr.emulate_real_stars(group, cal)["coef"][keep]
    request = [t for t in ("teff", "logg", "m_h", "mass", "ln_age") if t in predictor.learned.outputs]
    aspcap = {"teff": group["teff"][keep], "logg": group["logg"][keep], "m_h": group["fe_h"][keep]}
    res: dict[str, Any] = {"n": int(keep.sum())}
    for kind, v in (("real", values), ("twin", twin)):
        pred = predictor.predict(v, errors, request, inputs=STANDARD_INPUTS)
        r = {f"d_{k}": float(np.median(pred[k] - aspcap[k])) for k in aspcap if k in pred}
        if "mass" in pred:
            r["mass"] = float(np.median(pred["mass"]))
        if "ln_age" in pred:
            r["age"] = float(np.median(np.exp(pred["ln_age"])))
        res[kind] = r
    return res


#: Perturbation of the twins' labels standing for the accuracy of ASPCAP DR17 giant labels (the file's own
#: `*_err` are internal and far smaller: medians 7 K, 0.026, 0.009, 0.007 dex for the dev file's giants).
LABEL_ACCURACY = {"teff": 30.0, "logg": 0.05, "fe_h": 0.03, "alpha_m": 0.02}
SCATTER_OUTPUTS = ("mass", "ln_age", "logebv")
#: each scatter output's name in the results (ln values) and how it is read from a prediction: (ln value,
#: calibrated σ of the ln value); E(B−V) takes the σ of the catalogue's linear `ebv`, relative, because
#: only `ebv` has a calibration (the twin's E(B−V) is fitted to the real flux, so the spread is the model's
#: reading of the spectrum's shape, not an AK_TARG error)
SCATTER_NAMES = {"mass": "ln_mass", "ln_age": "ln_age", "logebv": "ln_ebv"}


def _scatter_value(p: Mapping[str, np.ndarray], t: str) -> tuple[np.ndarray, np.ndarray]:
    if t == "mass":
        return np.log(p["mass"]), p["mass_error"] / p["mass"]
    if t == "logebv":
        return p["logebv"], p["ebv_error"] / p["ebv"]
    return p[t], p[f"{t}_error"]


#: the two contexts of `twin_predictions`: the catalogue's standard input, and with the pseudo-luminosity
CONTEXTS = ("standard input", "with g_fakemag")
MIN_SCATTER_STARS = 50  # robust spreads of smaller groups (the open clusters) say little


def _robust_spread(x: np.ndarray) -> float:
    """Interquartile range / 1.349 (the σ of a Gaussian) over the finite entries of x.

    Not `xpengine.evaluate.metrics.robust_sigma` (1.4826 MAD): both are σ for a Gaussian, but the
    bundled `calibration.json`'s sim-to-real terms (`training/fit_sim_to_real.py`) were fitted with
    this one, so it stays until they are refitted."""
    q25, q75 = np.nanpercentile(x, [25, 75])
    return float((q75 - q25) / 1.349)


def twin_predictions(
    predictor: Predictor, arrays: Any, group: Mapping[str, np.ndarray], cal: Any, *, seed: int = 0
) -> dict[str, Any]:
    """Per star, the model's ln mass and ln age for the real XP and for three variants of its twin.

    The twin takes the E(B−V) that brings its noise-free emulated flux closest to the real flux
    (`realism_report.grey_ebv_fit`), so that an AK_TARG error is not counted. Variants (physical-unit
    arrays of the model's outputs): `real`, the real XP; `twin`, the noise-free twin; `null`, the twin with
    the simulator's residual-PC draw and Gaussian noise of the real coefficient errors (the variation the
    training skies contain, which the σ calibration covers); `labels`, the twin at labels perturbed by
    `LABEL_ACCURACY` (the part owed to the twin's labels). Two contexts: the catalogue's standard input
    without a parallax, and with the pseudo-luminosity g_fakemag (the model's own g_fakemag for the twin,
    given to every variant, standing for a parallax that pins the luminosity).

    Returns {"n", "ebv_fit_shift_median", "g_mag", context: {"outputs": [...], variant: {name: (N,)},
    ...}} with `name` in `SCATTER_NAMES` as ln values ("ln_mass", "ln_age", "ln_ebv") and "sigma_<name>" the
    calibrated σ of the real prediction in the same ln units. Pass a Predictor with `sim_to_real=False`
    for the σ calibrated on simulated stars.
    """
    from xpengine.evaluate.runner import align_to_vocabulary
    from xpengine.simulate.calibration import R_V, extinction_curve

    rng = np.random.default_rng(seed)
    index = {s: i for i, s in enumerate(arrays.source_id)}
    keep = np.array([s in index for s in group["source_id"]])
    g = {k: v[keep] for k, v in group.items()}
    rows = np.array([index[s] for s in g["source_id"]], dtype=np.int64)
    pv = predictor.vocabulary
    values, errors = align_to_vocabulary(arrays.values[rows], arrays.errors[rows], arrays.vocabulary, pv)
    xp = [pv.index(t) for t in XP_TOKENS]
    kappa = extinction_curve(np.arange(336.0, 1020.1, 2.0))
    (_, b), usable = rr.grey_ebv_fit(rr.emulate_real_stars(g, cal)["flux"], g["flux"], kappa)
    d_ebv = np.where(usable & np.isfinite(b), -b / (0.4 * np.log(10.0) * R_V), 0.0)
    g = {**g, "ebv": np.clip(g["ebv"] + d_ebv, -0.05, None)}
    n = len(rows)
    perturbed = {**g, **{k: g[k] + rng.standard_normal(n) * s for k, s in LABEL_ACCURACY.items()}}
    noise = rng.standard_normal((n, len(xp))) * np.nan_to_num(errors[:, xp])

    def with_xp(coef: np.ndarray) -> np.ndarray:
        v = values.copy()
        v[:, xp] = coef
        return v

    variants = {
        "real": values,
        "twin": with_xp(rr.emulate_real_stars(g, cal)["coef"]),
        "null": with_xp(rr.emulate_real_stars(g, cal, rng)["coef"] + noise),
        "labels": with_xp(rr.emulate_real_stars(perturbed, cal)["coef"]),
    }
    g_mag = g["gaiaedr3_phot_g_mean_mag"]
    out: dict[str, Any] = {"n": n, "ebv_fit_shift_median": float(np.median(d_ebv)), "g_mag": g_mag}
    req = [t for t in SCATTER_OUTPUTS if t in predictor.learned.outputs]
    if not req:
        return out
    contexts = {CONTEXTS[0]: STANDARD_INPUTS}
    if "g_fakemag" in predictor.learned.inputs and "g_fakemag" in predictor.learned.outputs:
        contexts[CONTEXTS[1]] = [*STANDARD_INPUTS, "g_fakemag"]
        g_fake = predictor.predict(
            variants["twin"], errors, ["g_fakemag"], inputs=STANDARD_INPUTS, g_mag=g_mag
        )
    for cname, inputs in contexts.items():
        res: dict[str, Any] = {"outputs": [SCATTER_NAMES[t] for t in req]}
        for kind, v in variants.items():
            v = v.copy()
            if "g_fakemag" in inputs:
                v[:, pv.index("g_fakemag")] = g_fake["g_fakemag"]
            p = predictor.predict(v, errors, req, inputs=inputs, g_mag=g_mag)
            res[kind] = {}
            for t in req:
                name = SCATTER_NAMES[t]
                res[kind][name], sigma = _scatter_value(p, t)
                if kind == "real":
                    res[f"sigma_{name}"] = sigma
        out[cname] = res
    return out


def spreads(pred: Mapping[str, Any], name: str, sel: np.ndarray | None = None) -> dict[str, float]:
    """Robust spreads over the stars `sel` (default all) of one context of `twin_predictions`, for output
    `name`: `real`, `null` and `labels` = spread of variant − twin; `extra` = √(real² − null² −
    labels²), the sim-to-real spread no simulated star shows (so that a σ calibrated on simulated skies
    leaves it out); `sigma` the median calibrated σ on the real stars; `ratio` = √(σ² + extra²)/σ;
    `median_real_minus_twin`."""
    sel = slice(None) if sel is None else sel
    base = pred["twin"][name][sel]
    d = {k: _robust_spread(pred[k][name][sel] - base) for k in ("real", "null", "labels")}
    extra = float(np.sqrt(max(d["real"] ** 2 - d["null"] ** 2 - d["labels"] ** 2, 0.0)))
    sigma = float(np.median(pred[f"sigma_{name}"][sel]))
    return {
        **d,
        "median_real_minus_twin": float(np.median(pred["real"][name][sel] - base)),
        "extra": extra,
        "sigma": sigma,
        "ratio": float(np.hypot(sigma, extra) / sigma),
    }


def scatter(
    predictor: Predictor, arrays: Any, group: Mapping[str, np.ndarray], cal: Any, *, seed: int = 0
) -> dict[str, Any]:
    """`spreads` of every output and context of `twin_predictions` over the whole group."""
    pred = twin_predictions(predictor, arrays, group, cal, seed=seed)
    out: dict[str, Any] = {"n": pred["n"], "ebv_fit_shift_median": pred["ebv_fit_shift_median"]}
    for cname in CONTEXTS:
        if cname in pred:
            out[cname] = {name: spreads(pred[cname], name) for name in pred[cname]["outputs"]}
    return out


def load_emulator(name: str) -> Any:
    """The emulator calibration `name`: v1, v2 (packaged) or a .npz path."""
    from xpengine.simulate.calibration import load_calibration, packaged_calibration

    if Path(name).is_file():
        return load_calibration(name)
    from importlib import resources

    with resources.as_file(packaged_calibration(name)) as path:
        return load_calibration(str(path))


def render_markdown(result: Mapping[str, Any]) -> str:
    lines = [
        "# Real stars and their emulated twins",
        "",
        command_line(result),
        "",
        "Medians over each group; Δ = predicted − ASPCAP; the twin is the emulator's XP at the star's labels.",
        "",
        "| model | group | n | XP | ΔTeff [K] | Δlogg | Δ[M/H] | mass [M☉] | age [Gyr] |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def f(r: Mapping[str, float], k: str, fmt: str) -> str:
        return format(r[k], fmt) if k in r else "–"

    for model, gs in result["models"].items():
        for name, g in gs.items():
            for kind in ("real", "twin"):
                r = g[kind]
                lines.append(
                    f"| {model} | {name} | {g['n']} | {kind} | {f(r, 'd_teff', '+.0f')} | {f(r, 'd_logg', '+.3f')} "
                    f"| {f(r, 'd_m_h', '+.3f')} | {f(r, 'mass', '.2f')} | {f(r, 'age', '.1f')} |"
                )
    lines += [
        "",
        "## Sim-to-real spread per star (groups of ≥ 50 stars)",
        "",
        "Robust spreads (1.4826·MAD-like, from the quartiles) over the group of model(variant) − model(twin), in",
        "ln mass and ln age; the twin takes the E(B−V) fitted to the real flux. real: the real XP; null: the",
        "twin with the simulator's residual-PC draw and noise (what the training skies already contain);",
        "labels: the twin at labels perturbed by 30 K / 0.05 / 0.03 / 0.02 dex (ASPCAP accuracy); extra =",
        "√(real² − null² − labels²), the part no simulated star shows; σ: the model's median calibrated σ on",
        "the real stars; ratio = √(σ² + extra²)/σ. `with g_fakemag` gives every variant the model's",
        "pseudo-luminosity for the twin, as a parallax would.",
        "",
        "| model | group | n | context | output | real | null | labels | extra | σ | ratio | median real − twin |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for model, gs in result["models"].items():
        for name, g in gs.items():
            sc = g.get("scatter")
            if not sc:
                continue
            for cname in CONTEXTS:
                for out, r in sc.get(cname, {}).items():
                    lines.append(
                        f"| {model} | {name} | {sc['n']} | {cname} | {out} | {r['real']:.3f} | {r['null']:.3f} "
                        f"| {r['labels']:.3f} | {r['extra']:.3f} | {r['sigma']:.3f} | {r['ratio']:.2f} "
                        f"| {r['median_real_minus_twin']:+.3f} |"
                    )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = check_parser(__doc__)
    ap.add_argument("--apogee-xp", required=True, help="APOGEE×XP FITS (../shared/data/apogee_xp/...)")
    ap.add_argument("--dataset", required=True, help="its training-schema Parquet (build-dataset apogee-xp)")
    ap.add_argument("--models", nargs="+", default=["gaia-xp"])
    ap.add_argument(
        "--emulator", default="v1", help="calibration of the training skies: v1, v2 or a .npz path"
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from xpengine.datasets.schema import read_training_set

    cal = load_emulator(args.emulator)
    arrays = read_training_set(args.dataset, split=None)
    by_group = groups(args.apogee_xp)
    models = {}
    for m in args.models:
        p = Predictor.load(m, sim_to_real=False)  # σ as calibrated on simulated stars (`scatter`)
        models[m] = {name: compare(p, arrays, g, cal) for name, g in by_group.items()}
        for name, g in by_group.items():
            if len(g["source_id"]) >= MIN_SCATTER_STARS:
                models[m][name]["scatter"] = scatter(p, arrays, g, cal)
    result = {
        **rsc.run_header("benchmarks/emulated_twins.py", argv),
        "emulator": args.emulator,
        "models": models,
    }
    rsc.write_outputs(result, args.json, args.markdown, render_markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
