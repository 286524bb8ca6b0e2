"""Are the small age σ of old giants honest? A catalogue of a freshly simulated sky against its true age.

    bash training/eval_skies.sh      # the seed-23 test sky, its 14 patches and v5's catalogue runs/cat5v_test
    python benchmarks/old_giant_age_sigma.py --catalogue runs/cat5v_test --truth runs/sky_mist_test/truth.parquet \\
        --markdown benchmarks/results/old_giant_age_sigma.md
    # session 34: the bundled calibration's relative age entry with its floor (runs/gaia-xp-v5f, the job on the
    # same 14 patches with the calibration.json bundled since then): old_giant_age_sigma_session34.md

Why (session 33's review, helper-92 #3): on real APOGEE×XP giants, the bundled gaia-xp gives giants it
calls older than 10 Gyr (most of them metal-poor) an age σ near 1 Gyr, 8–9 % of the age, against ~59 % for
younger giants; the values repeat as if a floor. Real field giants have no true age, so the question is put
to a sky whose truth is known: the true giants of the paper's domain (logg < 3.5, 3500–5500 K) whose mass and
age are the model's (rows without MASS_AGE_FROM_ISOCHRONES), z = (ln age − ln true age) / σ_ln with σ_ln =
age_error / age, by predicted age, by true age, for the smallest σ and for [Fe/H] < −1. The catalogue must
be run with `--no-sim-to-real-sigma` (σ as calibrated on simulated stars: a simulated star has no sim-to-real
spread). Real globular-cluster giants are `benchmarks/real_star_checks.py`'s check (age z rms 0.60 there).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def _spread(x: np.ndarray) -> float:
    return float(1.4826 * np.median(np.abs(x - np.median(x))))


def rows(g, label: str, sel) -> str:
    s = g[sel]
    z = s["z"].to_numpy()
    return (f"| {label} | {len(s)} | {s['rel'].median():.3f} | {np.median(z):+.2f} | {_spread(z):.2f} | "
            f"{np.mean(np.abs(z) < 1):.2f} | {np.mean(np.abs(z) < 2):.2f} |")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--catalogue", required=True)
    ap.add_argument("--truth", required=True)
    ap.add_argument("--markdown")
    args = ap.parse_args(argv)

    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    from xpengine.features import SourceFlag

    cols = ["source_id", "age", "age_error", "flags"]
    cat = ds.dataset(args.catalogue, format="parquet").to_table(columns=cols).to_pandas()
    truth = pq.read_table(args.truth, columns=["source_id", "age_gyr", "logg", "teff", "fe_h"]).to_pandas()
    m = cat.merge(truth, on="source_id")
    iso = (m["flags"].to_numpy() & int(SourceFlag.MASS_AGE_FROM_ISOCHRONES)) != 0
    domain = (m["logg"] < 3.5) & (m["teff"] > 3500) & (m["teff"] < 5500)
    g = m[domain & np.isfinite(m["age"]) & (m["age_error"] > 0) & ~iso].copy()
    g["rel"] = g["age_error"] / g["age"]
    g["z"] = (np.log(g["age"]) - np.log(g["age_gyr"])) / g["rel"]
    head = [
        "| rows | n | median σ_ln | median z | z-spread | \\|z\\| < 1 | \\|z\\| < 2 |",
        "|---|---|---|---|---|---|---|",
    ]
    out = [f"# Old giants' age σ against the truth: `{args.catalogue}`", "",
           f"{len(g)} true giants of the paper's domain with the model's age (`{args.truth}`). Gaussian: |z| < 1 "
           "for 0.68, < 2 for 0.95.", "", "## By predicted age [Gyr]", "", *head]  # fmt: skip
    for lo, hi in ((0, 2), (2, 5), (5, 8), (8, 10), (10, 11), (11, 12), (12, 14), (14, 20)):
        out.append(rows(g, f"{lo}–{hi}", (g["age"] >= lo) & (g["age"] < hi)))
    out += ["", "## By true age [Gyr]", "", *head]
    for lo, hi in ((0, 2), (2, 5), (5, 8), (8, 10), (10, 12), (12, 14.5)):
        out.append(rows(g, f"{lo}–{hi}", (g["age_gyr"] >= lo) & (g["age_gyr"] < hi)))
    out += ["", "## Selections", "", *head]
    out.append(rows(g, "σ_ln < 0.10", g["rel"] < 0.10))
    out.append(rows(g, "smallest tenth of σ_ln", g["rel"] <= g["rel"].quantile(0.1)))
    out.append(rows(g, "predicted ≥ 10 Gyr", g["age"] >= 10))
    out.append(rows(g, "[Fe/H] < −1", g["fe_h"] < -1))
    out.append(rows(g, "all", np.ones(len(g), dtype=bool)))
    text = "\n".join(out) + "\n"
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
