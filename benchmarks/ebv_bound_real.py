"""Real-star check of the colour bound on E(B−V) (`xpengine/inference/ebv_bound.py`, flag EBV_COLOUR_BOUND).

    python benchmarks/ebv_bound_real.py --apogee-xp ../shared/data/apogee_xp/apogee_xp_dev.fits.gz \\
        --split val --json benchmarks/results/ebv_bound_real.json --markdown benchmarks/results/ebv_bound_real.md

The stars of one split of the APOGEE×XP development file (their real DR3 XP sampled spectra, DR3 G, BP, RP,
2MASS and position; no parallax: the file has none) go through the catalogue's own path
(`Predictor.from_xp`, gaia-xp) twice in one run: with the flag policy's `ebv_colour_bound` (the default)
and without it. Each `ebv` is set against AK_TARG / 0.352 (APOGEE's RJCE extinction, REFERENCE §7; it
underestimates a hot star's), by APOGEE class: giants of the paper's domain, dwarfs, M stars (< 3,500 K)
and hot stars (> 7,000 K). Also: how far the rows the bound moved without flagging moved (in σ), and
the isochrone distance of the flagged rows without a parallax, with and without the bound.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_report import check_parser, command_line, run_header, write_outputs
from real_star_checks import AK_PER_EBV, radec_from_apogee_id

from xpengine.catalog.flag_policy import DEFAULT_FLAG_POLICY
from xpengine.features.flags import SourceFlag

LABELS = ["teff", "logg", "m_h", "mass", "age", "ebv"]
_CLASSES = ("all", "giants (3500–5500 K, logg < 3.5)", "dwarfs (logg ≥ 3.5, < 7000 K)", "M stars (< 3500 K)")
_CLASSES += ("hot stars (> 7000 K)",)


def _inputs(
    path: str, split: str | None, select: Any = None
) -> tuple[Any, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(from_xp table, its 2MASS, the APOGEE columns) of the unique stars of a split (None: every split);
    select(FITS rows' data, their ra, dec) → (n,) bool keeps some of them."""
    import pandas as pd
    from astropy.io import fits

    from xpengine.datasets.apogee_xp import select_unique_rows

    d = fits.getdata(path, 1)
    sid = np.asarray(d["gaiaedr3_source_id"], dtype=np.int64)
    rows = select_unique_rows(sid, np.asarray(d["snr"], dtype=np.float64))
    if split is not None:
        splits = Path(__file__).resolve().parents[1] / "xpengine" / "data" / "splits"
        table = pd.read_parquet(splits / "apogee_xp_dev_split.parquet").set_index("source_id")["split"]
        rows = rows[table.reindex(sid[rows]).to_numpy() == split]
    if select is not None:
        rows = rows[select(d[rows], *radec_from_apogee_id(d["apogee_id"][rows]))]
    med = np.asarray(d["medflux"][rows], dtype=np.float64)[:, None]
    ra, dec = radec_from_apogee_id(d["apogee_id"][rows])
    table = pd.DataFrame(
        {
            "source_id": sid[rows],
            "flux": list(np.asarray(d["flux"][rows], dtype=np.float64) * med),
            "flux_error": list(np.asarray(d["flux_error"][rows], dtype=np.float64) * med),
            "phot_g_mean_mag": np.asarray(d["gaiaedr3_phot_g_mean_mag"][rows], dtype=np.float64),
            "phot_bp_mean_mag": np.asarray(d["gaiaedr3_phot_bp_mean_mag"][rows], dtype=np.float64),
            "phot_rp_mean_mag": np.asarray(d["gaiaedr3_phot_rp_mean_mag"][rows], dtype=np.float64),
            "ra": ra,
            "dec": dec,
        }
    )

    def mag(col: str) -> np.ndarray:
        v = np.asarray(d[col][rows], dtype=np.float64)
        return np.where(np.isfinite(v) & (v < 50), v, np.nan)

    e = np.full(len(rows), 0.025)  # the file has no 2MASS σ: a typical one
    tmass = {
        "j_m": mag("j"),
        "j_msigcom": e,
        "h_m": mag("h"),
        "h_msigcom": e,
        "ks_m": mag("k"),
        "ks_msigcom": e,
    }
    apogee = {k: np.asarray(d[k][rows], dtype=np.float64) for k in ("teff", "logg", "fe_h")}
    apogee["ak_targ"] = np.asarray(d["ak_targ"][rows], dtype=np.float64)
    return table, tmass, apogee


def _predict(predictor, table, tmass, policy, batch: int = 500) -> Any:
    import pandas as pd

    parts = []
    for i in range(0, len(table), batch):
        part = table.iloc[i : i + batch].reset_index(drop=True)
        t = {k: v[i : i + batch] for k, v in tmass.items()}
        parts.append(predictor.from_xp(part, tmass=t, labels=LABELS, flag_policy=policy))
    return pd.concat(parts, ignore_index=True)


def _stats(resid: np.ndarray) -> dict[str, Any]:
    r = resid[np.isfinite(resid)]
    if r.size == 0:
        return {"n": 0}
    return {
        "n": int(r.size),
        "median": float(np.median(r)),
        "median_abs": float(np.median(np.abs(r))),
        "p90_abs": float(np.percentile(np.abs(r), 90)),
        "max_abs": float(np.max(np.abs(r))),
    }


def check(path: str, split: str) -> dict[str, Any]:
    from xpengine.inference.predictor import Predictor

    table, tmass, apogee = _inputs(path, split)
    p = Predictor.load("gaia-xp")
    without = dataclasses.replace(DEFAULT_FLAG_POLICY, ebv_colour_bound=False)
    runs = {
        "bound": _predict(p, table, tmass, DEFAULT_FLAG_POLICY),
        "no bound": _predict(p, table, tmass, without),
    }
    ref = np.where(apogee["ak_targ"] > -1, apogee["ak_targ"] / AK_PER_EBV, np.nan)
    t, g = apogee["teff"], apogee["logg"]
    classes = dict(
        zip(
            _CLASSES,
            (
                np.ones(t.size, bool),
                (t >= 3500) & (t <= 5500) & (g < 3.5),
                (g >= 3.5) & (t < 7000),
                t < 3500,
                t > 7000,
            ),
            strict=True,
        )
    )
    flags = runs["bound"]["flags"].to_numpy().astype(np.int64)
    hit = (flags & int(SourceFlag.EBV_COLOUR_BOUND)) != 0
    classes["flagged EBV_COLOUR_BOUND"] = hit
    out: dict[str, Any] = {"split": split, "n_stars": int(t.size), "classes": {}}
    for name, m in classes.items():
        out["classes"][name] = {
            run: _stats((r["ebv"].to_numpy(np.float64) - ref)[m]) for run, r in runs.items()
        }
    e_new, e_old = (runs[k]["ebv"].to_numpy(np.float64) for k in ("bound", "no bound"))
    s_old = runs["no bound"]["ebv_error"].to_numpy(np.float64)
    moved = np.abs(e_new - e_old) / s_old
    quiet = ~hit & np.isfinite(moved)
    out["unflagged"] = {
        "n": int(quiet.sum()),
        "moved": int((moved[quiet] > 1e-6).sum()),
        "max_shift_sigma": float(moved[quiet].max()) if quiet.any() else None,
    }
    iso = (flags & int(SourceFlag.DISTANCE_FROM_ISOCHRONES)) != 0
    d_new, d_old = (runs[k]["distance_pc"].to_numpy(np.float64) for k in ("bound", "no bound"))
    both = hit & iso & np.isfinite(d_new) & np.isfinite(d_old)
    out["isochrone_distance_ratio"] = {
        "n": int(both.sum()),
        "median_bound_over_no_bound": float(np.median(d_new[both] / d_old[both])) if both.any() else None,
    }
    return out


def render_markdown(result: Mapping[str, Any]) -> str:
    r = result["check"]
    lines = [
        "# The colour bound on E(B−V), on real APOGEE×XP stars",
        "",
        command_line(result),
        "",
        f"{r['n_stars']} stars of the {r['split']} split through `Predictor.from_xp` (gaia-xp) with the bound "
        "(the default) and without it; `ebv` less AK_TARG / 0.352 [mag] (which underestimates hot stars').",
        "",
        "| stars | run | n | median | median abs | p90 abs | max abs |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, runs in r["classes"].items():
        for run, s in runs.items():
            if s["n"] == 0:
                lines.append(f"| {name} | {run} | 0 | – | – | – | – |")
                continue
            lines.append(
                f"| {name} | {run} | {s['n']} | {s['median']:+.3f} | {s['median_abs']:.3f} | {s['p90_abs']:.3f} | "
                f"{s['max_abs']:.2f} |"
            )
    u, d = r["unflagged"], r["isochrone_distance_ratio"]
    shift = "–" if u["max_shift_sigma"] is None else f"{u['max_shift_sigma']:.2f}"
    ratio = "–" if d["median_bound_over_no_bound"] is None else f"{d['median_bound_over_no_bound']:.3f}"
    lines += [
        "",
        f"Rows not flagged: {u['n']}; the bound moved {u['moved']} of them (within 2σ of it), by at most "
        f"{shift} of their σ.",
        f"Flagged rows with an isochrone distance: {d['n']}; median distance with / without the bound {ratio}.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = check_parser(__doc__)
    ap.add_argument("--apogee-xp", required=True, help="the APOGEE×XP development FITS file")
    ap.add_argument("--split", default="val", choices=["train", "val", "test"])
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    result = {**run_header("benchmarks/ebv_bound_real.py", argv), "check": check(args.apogee_xp, args.split)}
    write_outputs(result, args.json, args.markdown, render_markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
