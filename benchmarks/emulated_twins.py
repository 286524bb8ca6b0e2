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
"""

from __future__ import annotations

import argparse
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

    gc = np.concatenate([sid[members[c.name]] for c in rsc.CLUSTERS if c.kind == "globular"])
    take("globular-cluster giants", np.isin(real["source_id"], gc))
    for c in rsc.CLUSTERS:
        if c.kind == "open":
            take(c.name, np.isin(real["source_id"], sid[members[c.name]]))
    giant = (real["split"] == "test") & (real["logg"] < 3.5) & (real["teff"] > 3500) & (real["teff"] < 5500)
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


def render_markdown(result: Mapping[str, Any]) -> str:
    lines = [
        "# Real stars and their emulated twins",
        "",
        f"Command: `{result['command']}`; {result['machine']}; {result['date_utc']}",
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
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--apogee-xp", required=True, help="APOGEE×XP FITS (../shared/data/apogee_xp/...)")
    ap.add_argument("--dataset", required=True, help="its training-schema Parquet (build-dataset apogee-xp)")
    ap.add_argument("--models", nargs="+", default=["gaia-xp"])
    ap.add_argument(
        "--emulator", default="v1", help="calibration of the training skies: v1, v2 or a .npz path"
    )
    ap.add_argument("--json", required=True)
    ap.add_argument("--markdown")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from xpengine.datasets.schema import read_training_set
    from xpengine.simulate.calibration import load_calibration, packaged_calibration

    if Path(args.emulator).is_file():
        cal = load_calibration(args.emulator)
    else:
        from importlib import resources

        with resources.as_file(packaged_calibration(args.emulator)) as path:
            cal = load_calibration(str(path))
    arrays = read_training_set(args.dataset, split=None)
    by_group = groups(args.apogee_xp)
    models = {}
    for m in args.models:
        p = Predictor.load(m)
        models[m] = {name: compare(p, arrays, g, cal) for name, g in by_group.items()}
    result = {
        **rsc.run_header("benchmarks/emulated_twins.py", argv),
        "emulator": args.emulator,
        "models": models,
    }
    rsc.write_outputs(result, args.json, args.markdown, render_markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
