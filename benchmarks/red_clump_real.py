"""Real-star check of the `red-clump` query preset: real APOGEE×XP giants, predicted labels against ASPCAP's.

    python benchmarks/red_clump_real.py --dataset runs/apogee_xp_dev.parquet --split test \\
        --models gaia-xp apogee-xp --json benchmarks/results/red_clump_real.json \\
        --markdown benchmarks/results/red_clump_real.md

The APOGEE red-clump catalogue (Bovy et al. 2014) is Bovy et al.'s Teff–logg–[M/H] and (J−Ks)0–Z cuts
applied to ASPCAP labels; asteroseismology puts its purity at ≈ 95 %. Here the same cuts, through the
preset's own SQL (`xpengine.catalog.query.query_catalog(..., preset="red-clump")`), run twice on the
same real stars:
- "reference": ASPCAP Teff, logg, [M/H] with Bovy et al.'s cuts as published (`teff_offset_min=none`);
- each model's predicted Teff, logg and [M/H] from the catalogue's standard input (no parallax: the
  file has none, so `mg0_min=none`), with the preset's default `teff_offset_min` and without it, with and
  without the (J−Ks)0 colour cuts.
(J−Ks)0 = J − Ks − E(J−Ks), E(J−Ks) = 0.530 E(B−V) (`colours.E_JK_PER_EBV`, the MIST law; 0.414 from Yuan, Liu & Xiang 2013
  until session 28), E(B−V) = AK_TARG / 0.352
(REFERENCE §7); the same measured colour on both sides. "agree" is the fraction of the model's selection
that the reference also selects (a purity against Bovy et al.'s own sample, not against evolutionary
states, which the file does not hold); "recovered" the fraction of the reference sample selected.
Without a parallax this is the preset's hardest case; the catalogue's default adds the M_G0 window.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from check_report import check_parser, command_line  # noqa: E402
from real_star_checks import AK_PER_EBV, run_header, standard_predictions, write_outputs  # noqa: E402

from xpengine.catalog.colours import E_JK_PER_EBV  # noqa: E402
from xpengine.inference.predictor import Predictor  # noqa: E402


def _select(
    teff: np.ndarray, logg: np.ndarray, m_h: np.ndarray, jk0: np.ndarray, **params: Any
) -> np.ndarray:
    """Row mask (N,) of the red-clump preset (mg0_min=none) on these labels; jk0 (N,) is used when
    params has jk0_view."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from xpengine.catalog.query import query_catalog

    sid = np.arange(len(teff), dtype=np.int64)
    with tempfile.TemporaryDirectory() as tmp:
        cat = Path(tmp) / "catalog"
        cat.mkdir()
        table = pa.table(
            {"source_id": sid, "teff": teff, "logg": logg, "m_h": m_h, "flags": np.zeros_like(sid)}
        )
        pq.write_table(table, cat / "part-000.parquet")
        ok = np.isfinite(jk0)
        pq.write_table(pa.table({"source_id": sid[ok], "jk0": jk0[ok]}), Path(tmp) / "jk0.parquet")
        joins = {"colours": Path(tmp) / "jk0.parquet"} if "jk0_view" in params else None
        got = query_catalog(cat, preset="red-clump", params={"mg0_min": None, **params}, joins=joins)
        chosen = np.asarray(got.column("source_id").to_numpy(), dtype=np.int64)
    return np.isin(sid, chosen)


VARIANTS: dict[str, dict[str, Any]] = {
    "preset default (Teff − Teff_ref ≥ 70 K)": {},
    "Bovy et al. as published (teff_offset_min=none)": {"teff_offset_min": None},
    "default + (J−Ks)0 cuts": {"jk0_view": "colours"},
    "published + (J−Ks)0 cuts": {"teff_offset_min": None, "jk0_view": "colours"},
}


def check(dataset: str, split: str, predictors: Mapping[str, Predictor]) -> dict[str, Any]:
    import pyarrow.parquet as pq

    from xpengine.datasets.schema import read_training_set

    arrays = read_training_set(dataset, split=split)
    side = pq.read_table(dataset, columns=["split", "jk", "ak_targ"], filters=[("split", "=", split)])
    jk, ak = (
        np.asarray(side.column(c).to_numpy(zero_copy_only=False), dtype=np.float64) for c in ("jk", "ak_targ")
    )
    jk0 = np.where(ak > -1, jk - E_JK_PER_EBV * ak / AK_PER_EBV, np.nan)
    truth = {
        k: arrays.values[:, arrays.vocabulary.index(k)].astype(np.float64) for k in ("teff", "logg", "m_h")
    }
    ref = _select(truth["teff"], truth["logg"], truth["m_h"], jk0, teff_offset_min=None, jk0_view="colours")
    out: dict[str, Any] = {"split": split, "n_stars": len(jk0), "n_reference": int(ref.sum()), "models": {}}
    rows = np.ones(len(jk0), dtype=bool)
    for name, p in predictors.items():
        pred = standard_predictions(p, arrays, rows)
        res = {}
        for label, params in VARIANTS.items():
            sel = _select(pred["teff"], pred["logg"], pred["m_h"], jk0, **params)
            res[label] = {
                "n_selected": int(sel.sum()),
                "agree": float(ref[sel].mean()) if sel.any() else None,
                "recovered": float(sel[ref].mean()) if ref.any() else None,
            }
        out["models"][name] = res
    return out


def render_markdown(result: Mapping[str, Any]) -> str:
    r = result["check"]
    lines = [
        "# The red-clump preset on real APOGEE×XP stars",
        "",
        command_line(result),
        "",
        f"{r['n_stars']} stars of the {r['split']} split; the reference (Bovy et al. 2014's cuts, colour cuts "
        f"included, on ASPCAP labels) selects {r['n_reference']}. No parallax: no M_G0 window.",
        "",
        "| model | selection on predicted labels | selected | agree with reference | reference recovered |",
        "|---|---|---|---|---|",
    ]
    for name, res in r["models"].items():
        for label, e in res.items():
            agree = "–" if e["agree"] is None else f"{e['agree']:.3f}"
            rec = "–" if e["recovered"] is None else f"{e['recovered']:.3f}"
            lines.append(f"| {name} | {label} | {e['n_selected']} | {agree} | {rec} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = check_parser(__doc__)
    ap.add_argument(
        "--dataset", required=True, help="APOGEE×XP training-schema Parquet (build-dataset apogee-xp)"
    )
    ap.add_argument("--split", default="test", choices=["train", "val", "test"])
    ap.add_argument("--models", nargs="+", default=["gaia-xp", "apogee-xp"])
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    result = {
        **run_header("benchmarks/red_clump_real.py", argv),
        "check": check(args.dataset, args.split, {m: Predictor.load(m) for m in args.models}),
    }
    write_outputs(result, args.json, args.markdown, render_markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
