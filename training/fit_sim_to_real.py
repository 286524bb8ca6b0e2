"""Fit a model's sim-to-real σ term on real giants and their emulated twins (calibration format 4).

    python training/fit_sim_to_real.py xpengine/data/models/gaia-xp \\
        --apogee-xp ../shared/data/apogee_xp/apogee_xp_dev.fits.gz --dataset runs/apogee_xp_dev.parquet \\
        --emulator v1 --output xpengine/data/models/gaia-xp/calibration.json --overwrite \\
        --json benchmarks/results/sim_to_real.json --markdown benchmarks/results/sim_to_real.md

Why: `gaia-xp` learns mass and age from simulated stars only, and their σ are calibrated on a simulated sky
(`training/calibrate_on_sky.py`). A real spectrum differs from the emulator's at the same labels in ways
no simulated star shows, and the model's mass and age respond to that. `benchmarks/emulated_twins.py`
measures the response per star: the model on each real giant's XP against the model on its emulated twin,
beside the variation the training skies already contain (residual-PC draw and noise) and the part owed to
the twin's labels. What is left, the extra spread, is missing from the calibrated σ of real stars.

Fit: the train and validation giants of the APOGEE×XP dev file (logg < 3.5, 3500–5500 K, [Fe/H] and [α/M]
measured), cluster members left out (they stay an independent check in `benchmarks/real_star_checks.py`),
in both contexts (standard input; with g_fakemag) pooled. Per output (ln mass, ln age), the stars are cut
into `--bins` bins of the model's calibrated σ (equal counts); in each bin extra = √(real² − null² −
labels²) of the robust spreads of the variants' differences from the twin; the knots are the bins'
median σ. No mass or age truth enters. The test split's giants check the map: per group and context, the
measured extra beside the median of the map's extra over the group's stars.

Writes the model's calibration with a `sim_to_real` section (every other entry unchanged); the Predictor
then adds the term for real stars (`Predictor(sim_to_real=True)`, the default; the catalogue job's
`sim_to_real_sigma`).
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
sys.path.insert(0, str(ROOT / "benchmarks"))

import emulated_twins as et  # noqa: E402  (the twins and their spreads; benchmarks/ is on the path above)
from emulated_twins import CONTEXTS, _robust_spread  # noqa: E402

#: output name in `emulated_twins.twin_predictions` → (calibration token, relative)
#: (ln E(B−V): the term is keyed by the linear `ebv`, whose calibrated relative σ its knots are in, since
#: the catalogue writes `ebv` and the `logebv` token has no calibration of its own; session 13)
OUTPUTS = {"ln_mass": ("mass", True), "ln_age": ("ln_age", False), "ln_ebv": ("ebv", True)}
MIN_BIN_STARS = 300


def giants(real: Mapping[str, np.ndarray], exclude: np.ndarray) -> dict[str, np.ndarray]:
    """The paper-domain giants of `realism_report._real_rows` rows with [Fe/H] and [α/M], less `exclude`
    source ids."""
    from check_report import paper_giants

    sel = (
        paper_giants(real["teff"], real["logg"])
        & np.isfinite(real["fe_h"])
        & np.isfinite(real["alpha_m"])
        & ~np.isin(real["source_id"], exclude)
    )
    return {k: v[sel] for k, v in real.items()}


def pooled(pred: Mapping[str, Any], name: str) -> dict[str, np.ndarray]:
    """σ and the variants' differences from the twin for output `name`, both contexts stacked."""
    keys = ("sigma", "real", "null", "labels")
    parts: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    for c in CONTEXTS:
        if c not in pred:
            continue
        p = pred[c]
        parts["sigma"].append(p[f"sigma_{name}"])
        for k in ("real", "null", "labels"):
            parts[k].append(p[k][name] - p["twin"][name])
    return {k: np.concatenate(v) for k, v in parts.items()}


def fit_map(d: Mapping[str, np.ndarray], bins: int) -> dict[str, Any]:
    """Equal-count σ bins → (knots, extras, the per-bin table)."""
    ok = np.isfinite(d["sigma"]) & (d["sigma"] > 0)
    sig = d["sigma"][ok]
    edges = np.quantile(sig, np.linspace(0, 1, bins + 1))
    idx = np.clip(np.searchsorted(edges, sig, side="right") - 1, 0, bins - 1)
    rows = []
    for b in range(bins):
        m = idx == b
        if m.sum() < MIN_BIN_STARS:
            raise SystemExit(f"σ bin {b} holds {int(m.sum())} stars (< {MIN_BIN_STARS}): use fewer --bins")
        s = {k: _robust_spread(d[k][ok][m]) for k in ("real", "null", "labels")}
        extra = float(np.sqrt(max(s["real"] ** 2 - s["null"] ** 2 - s["labels"] ** 2, 0.0)))
        rows.append(
            {
                "sigma_range": [float(edges[b]), float(edges[b + 1])],
                "sigma_median": float(np.median(sig[m])),
                "n": int(m.sum()),
                **s,
                "extra": extra,
            }
        )
    return {
        "sigma_knots": [r["sigma_median"] for r in rows],
        "extra_knots": [r["extra"] for r in rows],
        "bins": rows,
    }


def check_groups(real: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    fe, g = real["fe_h"], real["gaiaedr3_phot_g_mean_mag"]
    return {
        "all": np.ones(fe.size, bool),
        "[Fe/H] > −0.5": fe > -0.5,
        "[Fe/H] < −1": fe < -1.0,
        "G < 12": g < 12.0,
        "12 ≤ G < 13": (g >= 12.0) & (g < 13.0),
        "G ≥ 13": g >= 13.0,
    }


def render_markdown(result: Mapping[str, Any]) -> str:
    from check_report import command_line

    lines = [
        "# Sim-to-real σ term (real giants and their emulated twins)",
        "",
        command_line(result),
        "",
        f"Model `{result['model']}`; emulator {result['emulator']}; fit on {result['n_fit']} train + validation "
        f"giants (cluster members left out), check on {result['n_check']} test-split giants. Units: ln mass "
        "and ln age. real / null / labels: robust spreads of model(real XP), model(twin with the simulator's "
        "residual-PC draw and noise) and model(twin at labels perturbed by ASPCAP's accuracy) minus "
        "model(noise-free twin); extra = √(real² − null² − labels²).",
        "",
        "## Fitted map (both contexts pooled, equal-count bins of the calibrated σ)",
        "",
        "| output | σ range | σ median | n | real | null | labels | extra |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, f in result["fit"].items():
        for r in f["bins"]:
            lo, hi = r["sigma_range"]
            lines.append(
                f"| {name} | {lo:.3f}–{hi:.3f} | {r['sigma_median']:.3f} | {r['n']} | {r['real']:.3f} "
                f"| {r['null']:.3f} | {r['labels']:.3f} | {r['extra']:.3f} |"
            )
    lines += [
        "",
        "## Check on the test split's giants (never in the fit)",
        "",
        "measured: extra of the group; map: median of the map's extra over the group's stars;",
        "σ: median calibrated σ; ratio: √(σ² + map²)/σ, the factor the term puts on the group's σ.",
        "",
        "| context | group | n | output | measured extra | map | σ | ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["check"]:
        lines.append(
            f"| {r['context']} | {r['group']} | {r['n']} | {r['output']} | {r['extra']:.3f} | {r['map']:.3f} "
            f"| {r['sigma']:.3f} | {r['ratio']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    from check_report import check_parser

    ap = check_parser(__doc__)
    ap.add_argument("model", help="checkpoint directory (or bundled model name) with a calibration.json")
    ap.add_argument("--apogee-xp", required=True, help="APOGEE×XP FITS (../shared/data/apogee_xp/...)")
    ap.add_argument("--dataset", required=True, help="its training-schema Parquet (build-dataset apogee-xp)")
    ap.add_argument("--emulator", default="v1", help="the training skies' emulator: v1, v2 or a .npz path")
    ap.add_argument("--bins", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--output", required=True, help="calibration.json to write")
    ap.add_argument("--overwrite", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    import real_star_checks as rsc
    import realism_report as rr
    from astropy.io import fits
    from check_report import run_header, write_outputs

    from xpengine.datasets.schema import read_training_set
    from xpengine.inference.predictor import Predictor
    from xpengine.model.calibration import Calibration, SimToReal
    from xpengine.model.metadata import resolve_model_path

    out_path = Path(args.output)
    if out_path.exists() and not args.overwrite:  # checked before the minutes of predictions
        raise SystemExit(f"{out_path} exists; pass --overwrite to replace it")
    model_dir = Path(resolve_model_path(args.model))
    cal_file = model_dir / "calibration.json"
    if not cal_file.is_file():
        raise SystemExit(f"{cal_file}: no calibration to extend")
    emu = et.load_emulator(args.emulator)
    with fits.open(args.apogee_xp, memmap=False) as h:
        d = h[1].data
        sid = np.asarray(d["gaiaedr3_source_id"], dtype=np.int64)
        ra, dec = rsc.radec_from_apogee_id(np.asarray(d["apogee_id"]))
        members = rsc.cluster_members(ra, dec, np.asarray(d["fe_h"], float), np.asarray(d["logg"], float))
    exclude = np.unique(np.concatenate([sid[m] for m in members.values()]))
    arrays = read_training_set(args.dataset, split=None)
    predictor = Predictor.load(str(model_dir), sim_to_real=False)  # σ as calibrated on simulated stars
    fit_stars = giants(rr._real_rows(args.apogee_xp, None), exclude)
    check_stars = giants(rr._real_rows(args.apogee_xp, "test"), exclude)
    fit_pred = et.twin_predictions(predictor, arrays, fit_stars, emu, seed=args.seed)
    learned = fit_pred[CONTEXTS[0]]["outputs"] if CONTEXTS[0] in fit_pred else []
    if not learned:
        raise SystemExit(f"{args.model} predicts neither mass nor ln_age: no sim-to-real term to fit")
    fit = {name: fit_map(pooled(fit_pred, name), args.bins) for name in OUTPUTS if name in learned}
    terms = {
        OUTPUTS[name][0]: SimToReal(
            tuple(f["sigma_knots"]), tuple(f["extra_knots"]), relative=OUTPUTS[name][1]
        )
        for name, f in fit.items()
    }
    check_pred = et.twin_predictions(predictor, arrays, check_stars, emu, seed=args.seed + 1)
    # the stars twin_predictions kept (those in the dataset), for the groups
    keep = np.isin(check_stars["source_id"], arrays.source_id)
    kept = {k: v[keep] for k, v in check_stars.items()}
    check = []
    for c in CONTEXTS:
        if c not in check_pred:
            continue
        for gname, sel in check_groups(kept).items():
            for name in fit:
                s = et.spreads(check_pred[c], name, sel)
                sig = check_pred[c][f"sigma_{name}"][sel]
                term = terms[OUTPUTS[name][0]]
                mapped = float(np.nanmedian(term.extra(sig)))  # a median, as the measured spreads are robust
                check.append(
                    {
                        "context": c,
                        "group": gname,
                        "n": int(sel.sum()),
                        "output": name,
                        "extra": s["extra"],
                        "map": mapped,
                        "sigma": s["sigma"],
                        "ratio": float(np.hypot(s["sigma"], mapped) / s["sigma"]),
                    }
                )
    header = run_header("training/fit_sim_to_real.py", argv)
    result = {
        **header,
        "model": args.model,
        "emulator": args.emulator,
        "label_accuracy": et.LABEL_ACCURACY,
        "seed": args.seed,
        "n_fit": int(fit_pred["n"]),
        "n_check": int(check_pred["n"]),
        "fit": fit,
        "check": check,
    }
    cal = Calibration.load(cal_file)
    cal.sim_to_real = terms
    cal.sim_to_real_provenance = {
        **header,
        "emulator": args.emulator,
        "fit_stars": f"{fit_pred['n']} APOGEE DR17 x Gaia XP train + validation giants (logg < 3.5, "
        "3500-5500 K), cluster members left out; both contexts (standard input; with g_fakemag) pooled",
        "label_accuracy": et.LABEL_ACCURACY,
        "bins": {name: f["bins"] for name, f in fit.items()},
        "report": "benchmarks/results/sim_to_real.md",
    }
    cal.save(out_path, overwrite=args.overwrite)
    write_outputs(result, args.json, args.markdown, render_markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
