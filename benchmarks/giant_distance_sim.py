"""The model's distances (DISTANCE_FROM_MODEL) of a simulated sky's giants against its truth, by evolutionary
state and G.

    python benchmarks/giant_distance_sim.py --catalogue CATALOGUE --truth SKY/truth.parquet \\
        --json benchmarks/results/giant_distance_sim.json --markdown benchmarks/results/giant_distance_sim.md

Rows of the catalogue whose distance is the model's pseudo-luminosity's (giants of the mass/age domain
without a significant parallax), joined to the sky's truth on source_id: catalogue distance / true
distance, its median, robust ln σ and robust z-spread (ln ratio over σ_d / d), by the truth's
evolutionary state and G.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_report import check_parser, command_line, run_header, write_outputs

from xpengine.features.flags import SourceFlag

G_BINS = ((6.0, 13.0), (13.0, 15.0), (15.0, 16.5), (16.5, 17.65))


def _mad(x: np.ndarray) -> float:
    return float(1.4826 * np.median(np.abs(x - np.median(x))))


def check(catalogue: str, truth: str) -> dict[str, Any]:
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    cat = ds.dataset(catalogue).to_table(columns=["source_id", "distance_pc", "distance_pc_error", "flags"])
    cat = cat.to_pandas().set_index("source_id")
    tr = pq.read_table(truth, columns=["source_id", "distance_pc", "g", "evolutionary_state"]).to_pandas()
    d = cat.join(tr.set_index("source_id").add_prefix("t_"), how="inner")
    model = (d["flags"].to_numpy().astype(np.int64) & int(SourceFlag.DISTANCE_FROM_MODEL)) != 0
    out: dict[str, Any] = {"rows": len(d), "model_distance_rows": int(model.sum()), "bins": {}}
    for state in sorted(d.loc[model, "t_evolutionary_state"].dropna().unique()):
        for lo, hi in G_BINS:
            m = model & (d.t_evolutionary_state == state).to_numpy() & (d.t_g >= lo).to_numpy()
            m &= (d.t_g < hi).to_numpy()
            r = np.log(d.distance_pc.to_numpy()[m] / d.t_distance_pc.to_numpy()[m])
            rel = d.distance_pc_error.to_numpy()[m] / d.distance_pc.to_numpy()[m]
            ok = np.isfinite(r) & np.isfinite(rel) & (rel > 0)
            if ok.sum() < 5:
                continue
            out["bins"][f"{state}, G {lo:g}–{hi:g}"] = {
                "n": int(ok.sum()),
                "ratio": float(np.exp(np.median(r[ok]))),
                "ln_sigma": _mad(r[ok]),
                "z_spread": _mad(r[ok] / rel[ok]),
            }
    return out


def render_markdown(result: Mapping[str, Any]) -> str:
    r = result["check"]
    lines = [
        "# The model's distances of a simulated sky's giants",
        "",
        command_line(result),
        "",
        f"{r['model_distance_rows']} of {r['rows']} rows take the model's distance (DISTANCE_FROM_MODEL).",
        "",
        "| true state, G | n | distance / true | robust ln σ | z-spread |",
        "|---|---|---|---|---|",
    ]
    for name, b in r["bins"].items():
        lines.append(f"| {name} | {b['n']} | ×{b['ratio']:.2f} | {b['ln_sigma']:.2f} | {b['z_spread']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = check_parser(__doc__)
    ap.add_argument("--catalogue", required=True)
    ap.add_argument("--truth", required=True)
    args = ap.parse_args(argv)
    result = {
        **run_header("benchmarks/giant_distance_sim.py", argv),
        "check": check(args.catalogue, args.truth),
    }
    write_outputs(result, args.json, args.markdown, render_markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
