"""Are a simulated sky's giants on the real stars' label manifold, and what does a real-trained [M/H] make of them?

    python benchmarks/label_manifold.py --truth runs/sky_mist_test/truth.parquet \\
        --real runs/apogee_xp_dev.parquet --catalogue runs/cat9b_test \\
        --json benchmarks/results/label_manifold.json --markdown benchmarks/results/label_manifold.md

`gaia-xp` learns [M/H] from real spectra only (simulated stars carry no [M/H] in training), so its m_h is
APOGEE [Fe/H] (the real stars' FE_H). Its giants' [M/H] on a simulated sky had looked 0.14 dex low; most of
that (session 14) was the yardstick: the sky's `m_h` is the total metallicity of the isochrone, up to
0.23 dex above [Fe/H] for α-rich stars. Both diagnostics therefore use the sky's true [Fe/H], the quantity
the real stars' label and the model's m_h measure (nothing here is fitted or used to choose a model):

1. Teff at fixed logg and [Fe/H]: the median Teff of the sky's true giants (logg < 3.5, 3500–5500 K) against
   the real APOGEE×XP giants' ASPCAP Teff (every split of `--real`), per [Fe/H] and logg bin. The two
   populations differ in age, mass and [α/Fe], which also move a giant's Teff at fixed logg, so an offset
   here is an indication that the isochrones' temperature scale differs from the spectroscopic one, not a
   measurement.
2. With `--catalogue` (the catalogue job run on the sky, matched by source_id): the predicted − true [M/H]
   of the sky's true giants per true metallicity bin, evolutionary state and G bin, beside the Teff and
   logg biases. The truth is the quantity the catalogue's model learned (`sim_sky_checks.
   catalogue_metallicity_scale`: [Fe/H] for gaia-xp). A bias that depends on metallicity while Teff and
   logg are read right, and that is there for the brightest stars, is the signature of giants off the
   manifold the model learned [M/H] on.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from check_report import check_parser, command_line, run_header, write_outputs  # noqa: E402
from check_report import paper_giants as giants  # noqa: E402  (the paper's giant domain)

from xpengine.evaluate.metrics import robust_sigma  # noqa: E402

M_H_BINS = (-1.5, -0.7, -0.3, -0.15, 0.15, 0.4)
LOGG_BINS = (1.0, 1.5, 2.0, 2.3, 2.6, 3.0, 3.4)
BIAS_M_H_BINS = (-2.5, -1.5, -0.7, -0.3, 0.1, 0.5)
G_BINS = (6.0, 13.0, 15.0, 17.65)
MIN_STARS = 20


def teff_offsets(sim: pd.DataFrame, real: pd.DataFrame) -> list[dict[str, Any]]:
    """Median Teff of simulated and real giants (columns teff, logg, m_h) per ([M/H], logg) bin; a bin
    needs `MIN_STARS` of each."""
    out = []
    for (m_lo, m_hi), (g_lo, g_hi) in itertools.product(
        itertools.pairwise(M_H_BINS), itertools.pairwise(LOGG_BINS)
    ):
        cell: dict[str, Any] = {"m_h": [m_lo, m_hi], "logg": [g_lo, g_hi]}
        for name, d in (("sim", sim), ("real", real)):
            sel = (d.m_h >= m_lo) & (d.m_h < m_hi) & (d.logg >= g_lo) & (d.logg < g_hi)
            cell[f"n_{name}"] = int(sel.sum())
            cell[f"teff_{name}"] = float(d.teff[sel].median()) if sel.sum() >= MIN_STARS else None
        ok = cell["teff_sim"] is not None and cell["teff_real"] is not None
        cell["sim_minus_real"] = cell["teff_sim"] - cell["teff_real"] if ok else None
        out.append(cell)
    return out


def m_h_bias(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Predicted − true [M/H], Teff and logg of matched true giants (columns m_h, teff, logg, their `_true`,
    evolutionary_state, g) per G bin, evolutionary state and true [M/H] bin."""
    out = []
    for (g_lo, g_hi), state, (m_lo, m_hi) in itertools.product(
        itertools.pairwise(G_BINS), ("rgb", "red_clump"), itertools.pairwise(BIAS_M_H_BINS)
    ):
        sel = (
            (df.g >= g_lo)
            & (df.g < g_hi)
            & (df.evolutionary_state == state)
            & (df.m_h_true >= m_lo)
            & (df.m_h_true < m_hi)
            & np.isfinite(df.m_h)
        )
        n = int(sel.sum())
        if n < MIN_STARS:
            continue
        d = df[sel]
        r = (d.m_h - d.m_h_true).to_numpy()
        out.append(
            {
                "g": [g_lo, g_hi],
                "state": state,
                "m_h_true": [m_lo, m_hi],
                "n": n,
                "m_h_bias": float(np.median(r)),
                "m_h_sigma": robust_sigma(r),
                "teff_bias": float(np.median(d.teff - d.teff_true)),
                "logg_bias": float(np.median(d.logg - d.logg_true)),
            }
        )
    return out


def run(truth: str, real: str, catalogue: str | None) -> dict[str, Any]:
    t = pd.read_parquet(truth)
    # the real file's m_h is ASPCAP FE_H (xpengine.datasets.apogee_xp), so the sky's [Fe/H] is set beside it
    sim = t[giants(t.teff.to_numpy(), t.logg.to_numpy())][["teff", "logg", "fe_h"]].rename(
        columns={"fe_h": "m_h"}
    )
    r = pd.read_parquet(real, columns=["teff", "logg", "m_h"])
    r = r[giants(r.teff.to_numpy(), r.logg.to_numpy()) & np.isfinite(r.m_h)]
    out: dict[str, Any] = {
        "n_sim_giants": len(sim),
        "n_real_giants": len(r),
        "teff_offsets": teff_offsets(sim, r),
    }
    if catalogue is not None:
        from sim_sky_checks import catalogue_metallicity_scale, read_catalogue

        scale = catalogue_metallicity_scale(catalogue)
        cat = read_catalogue(catalogue)
        df = cat.merge(t, on="source_id", how="inner", suffixes=("", "_true"))
        if scale == "fe_h":
            df["m_h_true"] = df["fe_h"]
        out["m_h_truth"] = scale
        df = df[giants(df.teff_true.to_numpy(), df.logg_true.to_numpy())]
        out["n_matched_giants"] = len(df)
        out["m_h_bias"] = m_h_bias(df)
    return out


_TRUTH_TEXT = {"fe_h": "[Fe/H]", "m_h": "total metallicity [M/H]"}


def _v(x: float | None, fmt: str) -> str:
    return "–" if x is None else f"{x:{fmt}}"


def render_markdown(res: dict[str, Any]) -> str:
    lines = [
        "# Simulated giants against the real stars' label manifold",
        "",
        command_line(res),
        "",
        f"## Median Teff at fixed [Fe/H] and logg: {res['n_sim_giants']} simulated, {res['n_real_giants']} "
        "real giants",
        "",
        "Giants: logg < 3.5, 3500–5500 K (true labels of the sky; ASPCAP of the real file); [Fe/H]: the sky's "
        "true [Fe/H], the real stars' ASPCAP FE_H. The populations differ in age, mass and [α/Fe], so a "
        "difference is an indication, not a measurement. – : fewer than "
        f"{MIN_STARS} stars.",
        "",
        "| [Fe/H] | logg | n sim / real | Teff sim [K] | Teff real [K] | sim − real [K] |",
        "|---|---|---|---|---|---|",
    ]
    for c in res["teff_offsets"]:
        lines.append(
            f"| {c['m_h'][0]:+.2f}…{c['m_h'][1]:+.2f} | {c['logg'][0]:.1f}–{c['logg'][1]:.1f} | "
            f"{c['n_sim']} / {c['n_real']} | {_v(c['teff_sim'], '.0f')} | {_v(c['teff_real'], '.0f')} | "
            f"{_v(c['sim_minus_real'], '+.0f')} |"
        )
    if "m_h_bias" in res:
        lines += [
            "",
            f"## The catalogue's [M/H] on the sky's true giants ({res['n_matched_giants']} matched)",
            "",
            "Median predicted − true per G bin, true evolutionary state and true metallicity bin; σ: robust σ "
            f"of the [M/H] difference. The truth is the sky's {_TRUTH_TEXT[res.get('m_h_truth', 'm_h')]}, "
            "the quantity the model's m_h learned.",
            "",
            "| G | state | true [M/H] | n | Δ[M/H] | σ [M/H] | ΔTeff [K] | Δlogg |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for b in res["m_h_bias"]:
            lines.append(
                f"| {b['g'][0]:g}–{b['g'][1]:g} | {b['state']} | {b['m_h_true'][0]:+.1f}…{b['m_h_true'][1]:+.1f} "
                f"| {b['n']} | {b['m_h_bias']:+.3f} | {b['m_h_sigma']:.3f} | {b['teff_bias']:+.0f} | "
                f"{b['logg_bias']:+.3f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = check_parser(__doc__)
    ap.add_argument("--truth", required=True, help="a simulated sky's truth.parquet")
    ap.add_argument("--real", required=True, help="real training-schema Parquet (build-dataset apogee-xp)")
    ap.add_argument("--catalogue", help="the catalogue job's output on that sky (optional)")
    args = ap.parse_args(argv)
    res = {**run_header("benchmarks/label_manifold.py", argv), **run(args.truth, args.real, args.catalogue)}
    write_outputs(res, args.json, args.markdown, render_markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
