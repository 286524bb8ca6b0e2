"""Distances of a simulated sky's catalogue against its truth: the rows one catalogue gives an isochrone
distance (DISTANCE_FROM_ISOCHRONES), scored as the other catalogue of the same sky gave them, side by side.

    python benchmarks/distance_check.py --before runs/cat25_test --after runs/s28/cat28_test \\
        --truth runs/sky_mist_test/truth.parquet \\
        --json benchmarks/results/distance_check.json --markdown benchmarks/results/distance_check.md

A check, nothing fitted. Cells: the median ratio of distance to true distance, the robust σ (1.4826 MAD) of
its natural log, the robust σ of ln ratio / (σ_d / d) (the z-spread: 1 = honest σ), the fraction off by more
than a factor 2, and n. Rows: all such rows, true dwarfs (logg ≥ 3.5) and giants, and bins of true G. The
same rows' mass and ln age against the truth follow (the isochrone fit gives both; a weak parallax's
likelihood moves them), and the rows' E(B−V) behind the distance.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from check_report import check_parser, command_line, run_header, write_outputs

from xpengine.features.flags import SourceFlag

G_BINS = ((6.0, 13.0), (13.0, 15.0), (15.0, 16.5), (16.5, 17.65))
MAX_FACTOR = 2.0


def robust_sigma(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    return float(1.4826 * np.median(np.abs(x - np.median(x)))) if x.size else float("nan")


def distance_scores(d: np.ndarray, d_err: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Median ratio, ln σ, z-spread, fraction beyond `MAX_FACTOR` and n of the finite distances."""
    ok = np.isfinite(d) & np.isfinite(truth) & (d > 0) & (truth > 0)
    r = np.log(d[ok] / truth[ok])
    if r.size == 0:
        return {"n": 0}
    with np.errstate(divide="ignore", invalid="ignore"):
        z = r / (d_err[ok] / d[ok])
    return {
        "n": int(r.size),
        "median_ratio": float(np.exp(np.median(r))),
        "ln_sigma": robust_sigma(r),
        "z_spread": robust_sigma(z),
        "frac_beyond": float(np.mean(np.abs(r) > np.log(MAX_FACTOR))),
    }


def label_scores(value: np.ndarray, error: np.ndarray, truth: np.ndarray, log: bool) -> dict[str, float]:
    """Median bias, robust σ and z-spread of a label (of its natural log where `log`)."""
    ok = np.isfinite(value) & np.isfinite(truth) & np.isfinite(error) & (error > 0)
    if log:
        ok &= (value > 0) & (truth > 0)
        dv, sig = np.log(value[ok] / truth[ok]), error[ok] / value[ok]
    else:
        dv, sig = value[ok] - truth[ok], error[ok]
    if dv.size == 0:
        return {"n": 0}
    return {
        "n": int(dv.size),
        "bias": float(np.median(dv)),
        "sigma": robust_sigma(dv),
        "z": robust_sigma(dv / sig),
    }


def _read(path: str):
    import pyarrow.dataset as ds

    cols = [
        "source_id",
        "distance_pc",
        "distance_pc_error",
        "flags",
        "mass",
        "mass_error",
        "age",
        "age_error",
        "ebv",
    ]
    return ds.dataset(path, format="parquet").to_table(columns=cols).to_pandas().set_index("source_id")


def compare(before: str, after: str, truth_path: str) -> dict[str, Any]:
    import pandas as pd

    b, a = _read(before), _read(after)
    t = pd.read_parquet(
        truth_path, columns=["source_id", "distance_pc", "logg", "g", "mass", "age_gyr", "ebv"]
    )
    t = t.set_index("source_id")
    ids = a.index.intersection(b.index).intersection(t.index)
    a, b, t = a.loc[ids], b.loc[ids], t.loc[ids]
    by_iso = (a["flags"].to_numpy() & int(SourceFlag.DISTANCE_FROM_ISOCHRONES)) != 0
    dwarf, g = t["logg"].to_numpy() >= 3.5, t["g"].to_numpy()
    groups = {"all": by_iso, "true dwarfs": by_iso & dwarf, "true giants": by_iso & ~dwarf}
    groups.update({f"G {lo:g}–{hi:g}": by_iso & (g >= lo) & (g < hi) for lo, hi in G_BINS})
    rows = {}
    for name, m in groups.items():
        rows[name] = {
            side: distance_scores(*(c[f][m].to_numpy(np.float64) for f in ("distance_pc", "distance_pc_error")),
                                  t["distance_pc"][m].to_numpy(np.float64))
            for side, c in (("before", b), ("after", a))
        }  # fmt: skip
    labels = {}
    for side, c in (("before", b), ("after", a)):
        labels[side] = {
            "mass": label_scores(*(c[k][by_iso].to_numpy(np.float64) for k in ("mass", "mass_error")),
                                 t["mass"][by_iso].to_numpy(np.float64), log=False),
            "ln_age": label_scores(*(c[k][by_iso].to_numpy(np.float64) for k in ("age", "age_error")),
                                   t["age_gyr"][by_iso].to_numpy(np.float64), log=True),
        }  # fmt: skip
    ebv = a["ebv"][by_iso].to_numpy(np.float64) - t["ebv"][by_iso].to_numpy(np.float64)
    return {
        "n_rows": len(ids),
        "n_isochrone_distance": int(by_iso.sum()),
        "n_had_model_distance": int(
            (by_iso & ((b["flags"].to_numpy() & int(SourceFlag.DISTANCE_FROM_MODEL)) != 0)).sum()
        ),
        "n_had_none": int((by_iso & ~np.isfinite(b["distance_pc"].to_numpy(np.float64))).sum()),
        "distance": rows,
        "labels": labels,
        "ebv_bias": float(np.nanmedian(ebv)) if by_iso.any() else float("nan"),
        "ebv_sigma": robust_sigma(ebv),
    }


def _cell(s: dict[str, float]) -> str:
    if not s.get("n"):
        return "–"
    return (f"×{s['median_ratio']:.2f}, ln σ {s['ln_sigma']:.2f}, z {s['z_spread']:.2f}, "
            f"{100 * s['frac_beyond']:.0f} % beyond ×{MAX_FACTOR:g} ({s['n']})")  # fmt: skip


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Isochrone distances against the truth",
        "",
        command_line(result),
        "",
        f"{result['n_rows']} rows in both catalogues and the truth; {result['n_isochrone_distance']} have an "
        f"isochrone distance after ({result['n_had_model_distance']} had a model distance before, "
        f"{result['n_had_none']} none).",
        "",
        "| rows (DISTANCE_FROM_ISOCHRONES after) | before | after |",
        "|---|---|---|",
    ]
    lines += [f"| {k} | {_cell(v['before'])} | {_cell(v['after'])} |" for k, v in result["distance"].items()]
    lines += [
        "",
        "The same rows' mass [M☉] and ln age against the truth: bias / robust σ / z-spread (n).",
        "",
    ]
    lines += ["| | before | after |", "|---|---|---|"]
    for lab in ("mass", "ln_age"):
        cells = [result["labels"][s][lab] for s in ("before", "after")]
        fmt = [
            f"{c['bias']:+.3f} / {c['sigma']:.3f} / {c['z']:.2f} ({c['n']})" if c.get("n") else "–"
            for c in cells
        ]
        lines.append(f"| {lab} | {fmt[0]} | {fmt[1]} |")
    lines += ["", f"E(B−V) of these rows after, against the truth: bias {result['ebv_bias']:+.3f}, "
              f"robust σ {result['ebv_sigma']:.3f}."]  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = check_parser(__doc__)
    ap.add_argument("--before", required=True, help="catalogue directory of the sky before the change")
    ap.add_argument("--after", required=True, help="catalogue directory of the same sky after it")
    ap.add_argument("--truth", required=True, help="the sky's truth.parquet")
    args = ap.parse_args(argv)
    result = {
        **run_header("benchmarks/distance_check.py", argv),
        **compare(args.before, args.after, args.truth),
    }
    write_outputs(result, args.json, args.markdown, markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
