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
simulator's `parallax_error_mas`, true parallax; no extinction error). The noise is drawn independently per
star and label, in training and test alike. Nothing here is fitted to the catalogue or used to pick a model:
it says which part of the catalogue's σ is the information in the labels and which the model's.
"""

from __future__ import annotations

import argparse
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

from check_report import paper_giants, run_header, write_outputs  # noqa: E402

from xpengine.evaluate.metrics import robust_sigma  # noqa: E402

TRUTH = ["source_id", "evolutionary_state", "mass", "teff", "logg", "fe_h", "alpha_m", "luminosity_lsun"]
TRUTH_EXTRA = ["g", "parallax_true_mas"]
LABELS = ("teff", "logg", "fe_h", "alpha_m")
ASPCAP_SIGMA = {"teff": 30.0, "logg": 0.05, "fe_h": 0.03, "alpha_m": 0.02}
ALPHA_SIGMA = 0.05  # dex, the catalogue's [α/M] on the sky's giants is not scored per bin here
G_BINS = (6.0, 13.0, 15.0, 17.65)
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
    """(N, 4 or 5) labels (and log L) of `d`, each with Gaussian noise of σ `sigma[label]` (None: exact)."""
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


def render_markdown(res: Mapping[str, Any]) -> str:
    bins = [f"G {lo:g}–{hi:g}" for lo, hi in itertools.pairwise(G_BINS)]
    lines = [
        "# Mass σ that the labels and the parallax allow (simulated giants)",
        "",
        f"Command: `{res['command']}`; {res['machine']}; {res['date_utc']}",
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
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--train-truth", nargs="+", required=True, help="truth.parquet of the training skies")
    ap.add_argument("--test-truth", required=True, help="truth.parquet of a sky never used in training")
    ap.add_argument("--catalogue", help="the catalogue job's output on the test sky: its label σ and mass σ")
    ap.add_argument("--rounds", type=int, default=XGB_ROUNDS)
    ap.add_argument("--json", required=True)
    ap.add_argument("--markdown")
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
    write_outputs(res, args.json, args.markdown, render_markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
