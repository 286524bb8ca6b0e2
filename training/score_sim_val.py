"""Score models on the simulated validation stars of a mixed training-schema file against the truth:
mass and ln age σ and median bias, ln-age bias per true-age bin, ln-age and ln-mass bias per true [Fe/H]
bin (since stage 8), mass and ln-age σ per G bin and the [M/H] σ and bias against the true [Fe/H] (since
session 14), and the metal-poor giants' median age and mass (the model-choice numbers of gaia-xp stages 7 and 7b; each model on its own default input).

    python training/score_sim_val.py --data runs/gaia_xp_mixed7.parquet runs/gaia-xp-stage7b/model runs/gaia-xp-stage5/model
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np
import pandas as pd

from xpengine.datasets.schema import read_training_set
from xpengine.evaluate.metrics import robust_sigma
from xpengine.evaluate.runner import align_to_vocabulary, predict_labels
from xpengine.inference.predictor import Predictor

AGE_BINS = ((0, 2), (2, 5), (5, 9), (9, 11), (11, 14))  # true age [Gyr]
FEH_BINS = ((-3.0, -1.5), (-1.5, -1.0), (-1.0, -0.5), (-0.5, 0.0), (0.0, 1.0))  # true [Fe/H]
G_BINS = ((6.0, 12.0), (12.0, 13.0), (13.0, 14.0), (14.0, 18.0))  # Gaia G [mag]


def score(model: str, data: str, split: str = "val") -> str:
    """One line of figures for `model` on the synthetic rows of `data`'s `split`."""
    meta = pd.read_parquet(
        data, columns=["split", "data_source", "truth_fe_h", "truth_age_gyr", "truth_mass", "phot_g_mean_mag"]
    )
    meta = meta[meta.split == split].reset_index(drop=True)
    arrays = read_training_set(data, split=split)
    syn = (meta.data_source == "synthetic").to_numpy()
    p = Predictor.load(model, device="cpu", calibrate=False)
    values, errors = align_to_vocabulary(arrays.values, arrays.errors, arrays.vocabulary, p.vocabulary)
    request = ["mass", "ln_age"] + (["m_h"] if "m_h" in p.learned.outputs else [])
    inputs = [t for t in p.default_inputs if t not in request]
    out = {
        k: mu for k, (mu, _) in predict_labels(p, values[syn], errors[syn], request, inputs=inputs).items()
    }
    age = meta.truth_age_gyr.to_numpy()[syn]
    mass = meta.truth_mass.to_numpy()[syn]
    fe_h = meta.truth_fe_h.to_numpy()[syn]
    poor = fe_h < -1.5
    d_ln, d_m = out["ln_age"] - np.log(age), out["mass"] - mass
    d_ln_m = np.log(out["mass"] / mass)
    by_age = " ".join(f"{lo}-{hi}:{np.median(d_ln[(age >= lo) & (age < hi)]):+.3f}" for lo, hi in AGE_BINS)
    g = meta.phot_g_mean_mag.to_numpy()[syn]
    by_g = " ".join(
        f"{lo:g}-{hi:g}:{robust_sigma(d_m[s]):.3f}/{robust_sigma(d_ln[s]):.3f}(n={s.sum()})"
        for lo, hi in G_BINS
        for s in [(g >= lo) & (g < hi)]
        if s.any()
    )
    d_z = out["m_h"] - fe_h if "m_h" in out else None
    m_h_text = (
        "" if d_z is None else f" | [M/H] vs true [Fe/H] σ {robust_sigma(d_z):.3f} bias {np.median(d_z):+.3f}"
    )
    by_feh = " ".join(
        f"{lo:g}..{hi:g}:{np.median(d_ln[s]):+.3f}/{np.median(d_ln_m[s]):+.3f}"
        for lo, hi in FEH_BINS
        for s in [(fe_h >= lo) & (fe_h < hi)]
        if s.any()
    )
    return (
        f"{model}: n {syn.sum()} mass σ {robust_sigma(d_m):.3f} bias {np.median(d_m):+.3f} | ln_age σ "
        f"{robust_sigma(d_ln):.3f} bias {np.median(d_ln):+.3f} | mass/ln_age σ by G {by_g}{m_h_text} | "
        f"ln-age bias by true age {by_age} | "
        f"ln-age/ln-mass bias by true [Fe/H] {by_feh} | "
        f"[Fe/H]<-1.5 age {np.median(np.exp(out['ln_age'][poor])):.1f} (true {np.median(age[poor]):.1f}) "
        f"mass {np.median(out['mass'][poor]):.2f} (true {np.median(mass[poor]):.2f})"
    )


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="bundled model names or checkpoint directories")
    ap.add_argument("--data", required=True, help="mixed training-schema file with truth_* columns")
    ap.add_argument("--split", default="val")
    args = ap.parse_args(argv)
    for m in args.models:
        print(score(m, args.data, args.split), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
