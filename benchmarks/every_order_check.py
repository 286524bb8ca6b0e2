"""Simulated-sky catalogues of one sky's true giants side by side: σ, bias and z-spread of mass and age per
G bin, for inputs with and without every XP order (the every-order calibration of session 18).

    python benchmarks/every_order_check.py --truth runs/sky_mist_test/truth.parquet \\
        --catalogue "every order, session-17 calibration=runs/s18/cat_test_every_bundled" \\
        --catalogue "every order, every-order entries=runs/s18/cat_test_every_final" \\
        --markdown benchmarks/results/every_order_calibration.md --json benchmarks/results/every_order_calibration.json

Each catalogue is scored on the true giants (logg < 3.5, 3500–5500 K) that every catalogue predicted, so
the rows compare the same stars. σ is the robust spread (1.4826 MAD) of predicted − true; bias the median
of it; z-spread the robust spread of (predicted − true) / σ_predicted. Also the share of rows flagged
NO_PARALLAX and ALL_XP_ORDERS.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from check_report import check_parser, command_line, paper_giants, run_header, write_outputs

from xpengine.evaluate.metrics import robust_sigma
from xpengine.features.flags import SourceFlag, has_flag

G_BINS = ((6.0, 13.0), (13.0, 15.0), (15.0, 17.65), (6.0, 17.65))


def score(truth: str, catalogues: dict[str, str]) -> dict:
    import pyarrow.parquet as pq

    from xpengine.catalog.query import query_catalog

    tru = pq.read_table(truth, columns=["source_id", "mass", "age_gyr", "teff", "logg"]).to_pandas()
    tru = tru.set_index("source_id")
    sql = "SELECT source_id, phot_g_mean_mag AS g, mass, mass_error, age, age_error, flags FROM catalog"
    cats = {k: query_catalog(v, sql=sql).to_pandas().set_index("source_id") for k, v in catalogues.items()}
    ids = tru.index[paper_giants(tru.teff, tru.logg)]
    for c in cats.values():  # the model's mass and age: not the rows given the isochrones'
        model_rows = (c["flags"].to_numpy(np.int64) & int(SourceFlag.MASS_AGE_FROM_ISOCHRONES)) == 0
        ids = ids.intersection(c.index[np.isfinite(c.mass) & np.isfinite(c.age) & model_rows])
    t = tru.loc[ids]
    out = {"n_giants": len(ids), "catalogues": {}}
    for name, c in cats.items():
        c = c.loc[ids]
        g, flags = c.g.to_numpy(), c["flags"].to_numpy(np.int64)
        rows = []
        for lo, hi in G_BINS:
            s = (g >= lo) & (g < hi)
            row = {"g_lo": lo, "g_hi": hi, "n": int(s.sum())}
            for lab, true in (("mass", t.mass.to_numpy()), ("age", t.age_gyr.to_numpy())):
                d = c[lab].to_numpy()[s] - true[s]
                row[f"{lab}_sigma"] = robust_sigma(d)
                row[f"{lab}_bias"] = float(np.median(d))
                row[f"{lab}_z"] = robust_sigma(d / c[f"{lab}_error"].to_numpy()[s])
            rows.append(row)
        out["catalogues"][name] = {
            "directory": catalogues[name],
            "no_parallax": float(np.mean(has_flag(flags, SourceFlag.NO_PARALLAX))),
            "all_xp_orders": float(np.mean(has_flag(flags, SourceFlag.ALL_XP_ORDERS))),
            "bins": rows,
        }
    return out


def markdown(res: dict) -> str:
    lines = [
        "# Every-order inputs: simulated-sky catalogues side by side",
        "",
        command_line(res),
        "",
        f"{res['n_giants']} true giants (logg < 3.5, 3500–5500 K) predicted in every catalogue. σ / bias of "
        "predicted − true (mass [M☉], age [Gyr]) and z-spread, per G bin.",
        "",
        "| catalogue | NO_PARALLAX | ALL_XP_ORDERS | G | n | mass σ | mass bias | mass z | age σ | age bias | age z |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, c in res["catalogues"].items():
        for r in c["bins"]:
            lines.append(
                f"| {name} | {c['no_parallax']:.2f} | {c['all_xp_orders']:.2f} | {r['g_lo']:g}–{r['g_hi']:g} | "
                f"{r['n']} | {r['mass_sigma']:.3f} | {r['mass_bias']:+.3f} | {r['mass_z']:.2f} | "
                f"{r['age_sigma']:.2f} | {r['age_bias']:+.2f} | {r['age_z']:.2f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = check_parser(__doc__)
    p.add_argument("--truth", required=True, help="the sky's truth.parquet")
    p.add_argument("--catalogue", action="append", required=True, help="LABEL=DIRECTORY (repeat)")
    args = p.parse_args(argv)
    cats = {}
    for item in args.catalogue:
        label, sep, path = item.rpartition("=")
        if not sep or not label:
            p.error(f"--catalogue {item!r}: expected LABEL=DIRECTORY")
        cats[label] = path
    res = {**run_header("benchmarks/every_order_check.py", argv), **score(args.truth, cats)}
    write_outputs(res, args.json, args.markdown, markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
