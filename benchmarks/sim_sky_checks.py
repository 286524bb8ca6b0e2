"""Catalogues of a freshly simulated sky against its truth, several models side by side.

    xpengine simulate --physics mist --n-sources 150000 --partitions 40 --seed 23 --apogee-fraction 1.0 \\
        --output runs/sky_mist_test
    python jobs/infer_gaia.py --input runs/sky_mist_test --output runs/cat_test_gaia-xp --model gaia-xp
    python benchmarks/sim_sky_checks.py --truth runs/sky_mist_test/truth.parquet \\
        --catalogue gaia-xp=runs/cat_test_gaia-xp --catalogue synthetic-sky=runs/cat_test_synthetic-sky \\
        --json benchmarks/results/sim_sky_checks.json --markdown benchmarks/results/sim_sky_checks.md

The sky must come from a seed never used in training (the bundled models' training skies: seed 7 for
synthetic-sky; seeds 11 and 12 for gaia-xp, whose v5 trained on seed 12; seed 41 for session 13's trial).
Every catalogue row is joined with the truth on source_id. What is measured, per catalogue (model):

- Giants of the paper's domain by their TRUE labels (logg < 3.5, 3500 < Teff < 5500 K), in bins of G
  (`--g-bins`): robust σ (1.4826·MAD) and median bias of mass [M☉] and age [Gyr], and the z-spread of
  (pred − truth)/σ_catalogue (1 for honest σ). Zhang et al. (2026) quote σ 0.114 M☉ and 1.334 Gyr for
  their APOGEE giants.
- Regression to the mean: the median predicted mass in bins of true mass, and age in bins of true age.
- The age–metallicity relation of those giants: Spearman rank correlation of predicted age and [M/H],
  beside that of the true labels of the same stars.
- [M/H] is scored against the quantity the model learned (`--m-h-truth auto`: the catalogue's model's
  `xpengine.model.metadata.metallicity_scale`): the sky's true [Fe/H] for a model whose m_h token learned
  APOGEE FE_H (gaia-xp, apogee-xp), the sky's total metallicity [M/H] (Salaris et al. 1993: the isochrone's,
  up to 0.23 dex above [Fe/H] for α-rich stars) for one trained on a simulated survey's [M/H]
  (synthetic-sky). The Spearman of the truth is given on both.
- The `red-clump` query preset (`xpengine query --preset red-clump`, Bovy et al. 2014 cuts on the
  predicted labels): purity = the fraction of selected stars whose truth is the red clump or secondary
  clump; completeness = the fraction of true clump giants in the catalogue that it selects. With `--tmass`
  (the sky's 2MASS table, as given to the job) also with the preset's colour–metallicity cuts, as Bovy et
  al. used them: (J − Ks)0 from the 2MASS table and the catalogue's E(B−V)
  (`xpengine.catalog.colours.dereddened_jk`), joined as the view `colours` (`jk0_view=colours`).

Rows without a finite prediction (flagged) are left out of each statistic and counted.
"""

from __future__ import annotations

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

from check_report import check_parser, command_line, paper_giants, run_header, write_outputs  # noqa: E402

from xpengine.catalog.query import query_catalog  # noqa: E402
from xpengine.catalog.schema import check_simulated_sky_sigma  # noqa: E402
from xpengine.evaluate.metrics import robust_sigma  # noqa: E402
from xpengine.features.flags import SourceFlag  # noqa: E402

TRUTH_COLUMNS = ["source_id", "mass", "age_gyr", "m_h", "fe_h", "teff", "logg", "evolutionary_state", "g"]
#: truth column of each catalogue label (after read: mass, m_h, teff, logg get a `_true` suffix)
TRUE_COLUMN = {
    "mass": "mass_true",
    "age": "age_gyr",
    "teff": "teff_true",
    "logg": "logg_true",
    "m_h": "m_h_true",
}
#: the truth column of the catalogue's m_h for each metallicity scale a model can have learned
M_H_TRUTH = {"m_h": "m_h_true", "fe_h": "fe_h"}
SPEARMAN_TARGET = 0.1  # issue 12: the catalogue's age–[M/H] Spearman within 0.1 of the truth's
RED_CLUMP_PURITY_TARGET = 0.80  # issue 12: the `red-clump` preset at least 80 % pure
CLUMP = "red_clump"  # truth evolutionary_state of red and secondary clump stars


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    ok = np.isfinite(a) & np.isfinite(b)
    return float(spearmanr(a[ok], b[ok]).statistic) if ok.sum() > 2 else float("nan")


def age_metallicity_diagnostics(
    age: np.ndarray, m_h: np.ndarray, age_true: np.ndarray, m_h_true: np.ndarray
) -> dict[str, Any]:
    """Spearman ρ of age vs [M/H] (all (N,) arrays, age in Gyr): predicted vs predicted, true vs true, and the
    two mixed pairs, plus ρ between the errors ln(age/age_true) and [M/H] − [M/H]_true.

    The mixed pairs say where a too-steep predicted relation comes from: when ρ(predicted age, true [M/H])
    matches the truth, the ages themselves carry the relation and the excess comes from errors in age and
    [M/H] that are correlated with each other (the age–metallicity degeneracy of a giant's colour: a
    metal-richer star looks like a younger one), which a per-label point estimate cannot remove.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        d_ln_age = np.log(age / age_true)
    return {
        "n": int(np.sum(np.isfinite(age) & np.isfinite(m_h))),
        "predicted": _spearman(age, m_h),
        "truth": _spearman(age_true, m_h_true),
        "predicted_age_true_m_h": _spearman(age, m_h_true),
        "true_age_predicted_m_h": _spearman(age_true, m_h),
        "error_correlation": _spearman(d_ln_age, m_h - m_h_true),
    }


def domain_flag_checks(flags: np.ndarray, in_domain: np.ndarray, logg_true: np.ndarray) -> dict[str, Any]:
    """The catalogue's OUTSIDE_TRAINING_DOMAIN and PARALLAX_LEFT_OUT flags (N,) against the truth: in_domain
    (N,) bool, the paper's giant domain by the true labels; logg_true (N,). Purity: the fraction of the rows
    not flagged outside that are truly in the domain; the fraction of the truly-in-domain rows flagged
    outside; PARALLAX_LEFT_OUT among the true giants of the domain and among the true dwarfs (logg > 4)."""
    outside = (flags & int(SourceFlag.OUTSIDE_TRAINING_DOMAIN)) != 0
    left_out = (flags & int(SourceFlag.PARALLAX_LEFT_OUT)) != 0
    dwarfs = logg_true > 4.0
    kept = ~outside

    def frac(num: np.ndarray, den: np.ndarray) -> float | None:
        return float(num[den].mean()) if den.any() else None

    return {
        "n_not_flagged_outside": int(kept.sum()),
        "purity_not_flagged_outside": frac(in_domain, kept),
        "n_in_domain": int(in_domain.sum()),
        "in_domain_flagged_outside": frac(outside, in_domain),
        "parallax_left_out_giants": int((left_out & in_domain).sum()),
        "n_dwarfs": int(dwarfs.sum()),
        "parallax_left_out_dwarfs": frac(left_out, dwarfs),
    }


def read_catalogue(path: str) -> pd.DataFrame:
    """The catalogue's rows (every partition file; `_rejected`/`_tmp` are not catalogue rows)."""
    return query_catalog(path, sql="SELECT * FROM catalog").to_pandas()


def _label_stats(pred: np.ndarray, err: np.ndarray, true: np.ndarray) -> dict[str, Any]:
    ok = np.isfinite(pred) & np.isfinite(true)
    r = pred[ok] - true[ok]
    z = r / err[ok] if err is not None else None
    return {
        "n": int(ok.sum()),
        "sigma": robust_sigma(r),
        "bias": float(np.median(r)) if r.size else float("nan"),
        "z_spread": robust_sigma(z) if z is not None else None,
    }


def _red_clump(path: str, truth: pd.DataFrame, df: pd.DataFrame, **query: Any) -> dict[str, Any]:
    """Purity and completeness of the red-clump preset on one catalogue (query: extra query_catalog args)."""
    rc = query_catalog(path, preset="red-clump", **query).to_pandas()
    rc = rc.merge(truth[["source_id", "evolutionary_state"]], on="source_id", how="inner")
    true_rc = (df.evolutionary_state == CLUMP) & np.isfinite(df.logg)
    return {
        "n_selected": len(rc),
        "purity": float(np.mean(rc.evolutionary_state == CLUMP)) if len(rc) else None,
        "completeness": float(np.isin(df.source_id[true_rc], rc.source_id).mean()) if true_rc.any() else None,
        "n_true_clump": int(true_rc.sum()),
        "selected_by_truth_state": rc.evolutionary_state.value_counts().to_dict(),
    }


def catalogue_metallicity_scale(path: str) -> str:
    """The metallicity scale ("fe_h" or "m_h", :data:`xpengine.model.metadata.METALLICITY_SCALES`) of the
    model that wrote the catalogue at `path` (its `_JOB.json` names the model)."""
    import json

    from xpengine.model.metadata import metallicity_scale

    job = Path(path) / "_JOB.json"
    if not job.is_file():
        raise ValueError(f"{path}: no _JOB.json naming the model; give --m-h-truth fe_h or m_h")
    model = json.loads(job.read_text())["model"]
    found = None
    for cand in (Path(model), ROOT / model):
        try:
            found = metallicity_scale(cand)
            break
        except FileNotFoundError:
            continue
    if found is None:
        raise ValueError(
            f"{path}: the metallicity its model {model} learned is not recorded or is mixed; "
            "give --m-h-truth fe_h or m_h"
        )
    return found


def check_catalogue(
    cat: pd.DataFrame,
    truth: pd.DataFrame,
    path: str,
    g_bins: Sequence[float],
    tmass: str | None = None,
    m_h_scale: str = "m_h",
) -> dict[str, Any]:
    """One catalogue against the truth; m_h_scale: what its m_h is scored against ("fe_h": the true [Fe/H],
    "m_h": the true total metallicity)."""
    df = cat.merge(truth, on="source_id", how="inner", suffixes=("", "_true"))
    m_h_col = M_H_TRUTH[m_h_scale]
    giants = pd.Series(paper_giants(df.teff_true.to_numpy(), df.logg_true.to_numpy()), index=df.index)
    # the model's mass and age are scored: not the rows given the isochrones' (outside its domain)
    iso = pd.Series(np.zeros(len(df), bool), index=df.index)
    if "flags" in df:
        iso[:] = (df["flags"].to_numpy(np.int64) & int(SourceFlag.MASS_AGE_FROM_ISOCHRONES)) != 0
    n_iso = int((giants & iso).sum())
    domain = giants.to_numpy().copy()  # the paper's domain by the truth, before the isochrone rows go
    giants &= ~iso
    out: dict[str, Any] = {
        "n_rows": len(cat),
        "n_matched": len(df),
        "n_true_giants": int(giants.sum()),
        "n_true_giants_with_isochrone_mass_age": n_iso,
        "m_h_truth": m_h_scale,
    }
    has = [c for c in ("mass", "age") if c in df]
    g = df.g.to_numpy()
    bins: list[dict[str, Any]] = []
    edges = list(g_bins)
    for lo, hi in itertools.pairwise(edges):
        sel = (giants & (g >= lo) & (g < hi)).to_numpy()
        entry: dict[str, Any] = {"g_lo": lo, "g_hi": hi, "n": int(sel.sum())}
        for c in has:
            true = df[TRUE_COLUMN[c]].to_numpy()
            entry[c] = _label_stats(df[c].to_numpy()[sel], df[f"{c}_error"].to_numpy()[sel], true[sel])
        bins.append(entry)
    out["giants_by_g"] = bins
    if "flags" in df:
        out["domain_flags"] = domain_flag_checks(
            df["flags"].to_numpy(np.int64), domain, df.logg_true.to_numpy()
        )
        # what a user selects: the `giants` preset (flag and σ cuts) against the true domain
        sel = np.isin(df.source_id, query_catalog(path, preset="giants").column("source_id").to_numpy())
        out["domain_flags"]["giants_preset_selected"] = int(sel.sum())
        out["domain_flags"]["giants_preset_purity"] = float(domain[sel].mean()) if sel.any() else None
    sel = giants.to_numpy()
    out["giants_all"] = {
        c: _label_stats(
            df[c].to_numpy()[sel],
            df[f"{c}_error"].to_numpy()[sel],
            df[TRUE_COLUMN[c]].to_numpy()[sel],
        )
        for c in has
    }
    for c in ("teff", "logg", "m_h"):
        if c in df:
            true_col = m_h_col if c == "m_h" else f"{c}_true"
            out["giants_all"][c] = _label_stats(
                df[c].to_numpy()[sel], df[f"{c}_error"].to_numpy()[sel], df[true_col].to_numpy()[sel]
            )
    if "mass" in df:
        mb = [0.5, 1.0, 1.5, 2.5, 4.0]
        out["mass_regression"] = [
            {
                "true_lo": lo,
                "true_hi": hi,
                "n": int(s.sum()),
                "median_pred": float(np.nanmedian(df.mass[s])) if s.any() else None,
            }
            for lo, hi in itertools.pairwise(mb)
            for s in [(giants & (df.mass_true >= lo) & (df.mass_true < hi)).to_numpy()]
        ]
    if "age" in df:
        ab = [0.0, 1.0, 3.0, 6.0, 10.0, 14.0]
        out["age_regression"] = [
            {
                "true_lo": lo,
                "true_hi": hi,
                "n": int(s.sum()),
                "median_pred": float(np.nanmedian(df.age[s])) if s.any() else None,
            }
            for lo, hi in itertools.pairwise(ab)
            for s in [(giants & (df.age_gyr >= lo) & (df.age_gyr < hi)).to_numpy()]
        ]
        ok = sel & np.isfinite(df.age.to_numpy()) & np.isfinite(df.m_h.to_numpy())
        out["age_metallicity_spearman"] = age_metallicity_diagnostics(
            df.age.to_numpy()[ok],
            df.m_h.to_numpy()[ok],
            df.age_gyr.to_numpy()[ok],
            df[m_h_col].to_numpy()[ok],
        )
        other = M_H_TRUTH["fe_h" if m_h_scale == "m_h" else "m_h"]
        out["age_metallicity_spearman"]["truth_other_scale"] = _spearman(
            df.age_gyr.to_numpy()[ok], df[other].to_numpy()[ok]
        )
        # the same per G bin (a diagnostic: the [M/H] errors grow with G)
        out["age_metallicity_spearman_by_g"] = [
            {"g_lo": lo, "g_hi": hi}
            | age_metallicity_diagnostics(
                df.age.to_numpy()[s],
                df.m_h.to_numpy()[s],
                df.age_gyr.to_numpy()[s],
                df[m_h_col].to_numpy()[s],
            )
            for lo, hi in itertools.pairwise(edges)
            for s in [ok & (g >= lo) & (g < hi)]
        ]
    if {"teff", "logg", "m_h"} <= set(df):
        out["red_clump"] = _red_clump(path, truth, df)
        # the same with the rule until session 24: A_G = 2.74 E(B−V) for every star
        out["red_clump_constant_extinction"] = _red_clump(
            path, truth, df, params={"extinction": "constant", "r_g": 2.74}
        )
        if tmass is not None:
            import tempfile

            from xpengine.catalog.colours import write_dereddened_jk

            with tempfile.TemporaryDirectory() as tmp:
                jk0 = str(Path(tmp) / "jk0.parquet")
                write_dereddened_jk(path, tmass, jk0)
                out["red_clump_2mass"] = _red_clump(
                    path, truth, df, params={"jk0_view": "colours"}, joins={"colours": jk0}
                )
    return out


_SCALE_TEXT = {"fe_h": "[Fe/H]", "m_h": "total [M/H]"}


def render_markdown(result: Mapping[str, Any]) -> str:
    lines = [
        "# Freshly simulated sky against its truth",
        "",
        command_line(result),
        "",
    ]
    cats = result["catalogues"]
    lines += ["## Giants (true logg < 3.5, 3500–5500 K): σ / bias / z-spread", ""]
    lines += [
        "| model | G bin | n | mass σ [M☉] | mass bias | mass z | age σ [Gyr] | age bias | age z |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, c in cats.items():
        for b in [*c["giants_by_g"], {"g_lo": None, "g_hi": None, "n": None, **c["giants_all"]}]:
            gb = "all" if b["g_lo"] is None else f"{b['g_lo']:g}–{b['g_hi']:g}"
            cells = []
            for lab in ("mass", "age"):
                s = b.get(lab)
                if not s or not s["n"]:
                    cells += ["–", "–", "–"]
                else:
                    cells += [
                        f"{s['sigma']:.3f}",
                        f"{s['bias']:+.3f}",
                        "–" if s["z_spread"] is None else f"{s['z_spread']:.2f}",
                    ]
            n = (
                b["n"]
                if b["n"] is not None
                else (c["giants_all"].get("mass") or c["giants_all"].get("teff") or {}).get("n")
            )
            lines.append(f"| {name} | {gb} | {n} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Giants: atmospheric labels (σ / bias / z-spread)",
        "",
        "| model | Teff [K] | logg | [M/H] | [M/H] scored against |",
        "|---|---|---|---|---|",
    ]
    for name, c in cats.items():
        cells = []
        for lab, d in (("teff", 0), ("logg", 3), ("m_h", 3)):
            s = c["giants_all"].get(lab)
            cells.append("–" if not s else f"{s['sigma']:.{d}f} / {s['bias']:+.{d}f} / {s['z_spread']:.2f}")
        lines.append(
            f"| {name} | " + " | ".join(cells) + f" | true {_SCALE_TEXT[c.get('m_h_truth', 'm_h')]} |"
        )
    lines += ["", "## Regression to the mean (giants): median prediction per true bin", ""]
    for name, c in cats.items():
        if "mass_regression" in c:
            lines.append(
                f"- {name}, mass: "
                + "; ".join(
                    f"{r['true_lo']:g}–{r['true_hi']:g} M☉ → {r['median_pred']:.2f} (n={r['n']})"
                    for r in c["mass_regression"]
                    if r["n"]
                )
            )
        if "age_regression" in c:
            lines.append(
                f"- {name}, age: "
                + "; ".join(
                    f"{r['true_lo']:g}–{r['true_hi']:g} Gyr → {r['median_pred']:.1f} (n={r['n']})"
                    for r in c["age_regression"]
                    if r["n"]
                )
            )
    lines += [
        "",
        "## Age–[M/H] relation (giants) and the red-clump preset",
        "",
        'Spearman ρ(age, [M/H]) of the giants; "pred. age, true [M/H]" and "true age, pred. [M/H]" mix '
        'prediction and truth, and "error ρ" is ρ(ln age − ln age_true, [M/H] − [M/H]_true) '
        "(`age_metallicity_diagnostics`). The true [M/H] is the quantity the model's m_h learned (column "
        '"true [M/H] is"); "truth, other scale" gives the truth\'s ρ on the other one.',
        "",
        "| model | Spearman predicted | Spearman truth | pred. age, true [M/H] | true age, pred. [M/H] | error ρ "
        "| n | true [M/H] is | truth, other scale | red-clump purity | completeness | selected "
        "| with 2MASS (J−Ks)0 cuts: purity | completeness | selected |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, c in cats.items():
        s = c.get("age_metallicity_spearman") or {}
        cells = []
        for key in ("red_clump", "red_clump_2mass"):
            rc = c.get(key) or {}
            pur, com = rc.get("purity"), rc.get("completeness")
            cells.append(
                f"{'–' if pur is None else f'{pur:.3f}'} | {'–' if com is None else f'{com:.3f}'} | "
                f"{rc.get('n_selected', '–')}"
            )
        lines.append(
            f"| {name} | "
            + " | ".join(
                f"{s.get(k, float('nan')):.3f}"
                for k in (
                    "predicted",
                    "truth",
                    "predicted_age_true_m_h",
                    "true_age_predicted_m_h",
                    "error_correlation",
                )
            )
            + f" | {s.get('n', '–')} | {_SCALE_TEXT[c.get('m_h_truth', 'm_h')]} | "
            f"{s.get('truth_other_scale', float('nan')):.3f} | "
            f"{cells[0]} | {cells[1]} |"
        )
    gaps = [
        f"{name} {abs(s['predicted'] - s['truth']):.3f}"
        for name, c in cats.items()
        for s in [c.get("age_metallicity_spearman") or {}]
        if "predicted" in s
    ]
    const = [
        f"{name} {rc['purity']:.3f} / {rc['completeness']:.3f} / {rc['n_selected']}"
        for name, c in cats.items()
        for rc in [c.get("red_clump_constant_extinction") or {}]
        if rc.get("purity") is not None and rc.get("completeness") is not None
    ]
    if const:
        lines += [
            "",
            "Red-clump preset with A_G = 2.74 E(B−V) for every star (`extinction=constant`, the preset's rule "
            "until session 24) instead of each star's own coefficient, purity / completeness / selected: "
            + "; ".join(const)
            + ".",
        ]
    purity = [
        f"{name} {rc['purity']:.3f} ({rc['purity'] / RED_CLUMP_PURITY_TARGET:.2f}×)"
        for name, c in cats.items()
        for rc in [c.get("red_clump") or {}]
        if rc.get("purity") is not None
    ]
    if purity:
        lines += [
            "",
            f"Red-clump purity, catalogue alone, over issue 12's target {RED_CLUMP_PURITY_TARGET}: "
            + "; ".join(purity)
            + ".",
        ]
    dom = [
        f"{name}: {d['purity_not_flagged_outside']:.3f} of the {d['n_not_flagged_outside']} rows not flagged "
        f"OUTSIDE_TRAINING_DOMAIN are truly in the domain; {d['in_domain_flagged_outside']:.3f} of the "
        f"{d['n_in_domain']} truly in it are flagged; PARALLAX_LEFT_OUT on {d['parallax_left_out_giants']} of "
        f"those giants and on {d['parallax_left_out_dwarfs']:.3f} of the {d['n_dwarfs']} dwarfs (true logg > 4); "
        f"the `giants` preset (flag and σ cuts) selects {d.get('giants_preset_selected')} rows, "
        f"{d.get('giants_preset_purity') or float('nan'):.3f} of them truly in the domain"
        for name, c in cats.items()
        for d in [c.get("domain_flags") or {}]
        if d.get("purity_not_flagged_outside") is not None
        and d.get("in_domain_flagged_outside") is not None
        and d.get("parallax_left_out_dwarfs") is not None
    ]
    if dom:
        lines += [
            "",
            "The mass/age domain flags against the truth (every catalogue row): " + "; ".join(dom) + ".",
        ]
    by_g = [
        f"{name} G {b['g_lo']:g}–{b['g_hi']:g}: {b['predicted']:.3f} vs {b['truth']:.3f} (n={b['n']})"
        for name, c in cats.items()
        for b in c.get("age_metallicity_spearman_by_g") or []
    ]
    if by_g:
        lines += [
            "",
            "Age–[M/H] Spearman per G bin, predicted vs truth (a diagnostic; the target is on all giants): "
            + "; ".join(by_g)
            + ".",
        ]
    if gaps:
        lines += [
            "",
            f"|Spearman predicted − truth| (issue 12's target: within {SPEARMAN_TARGET}): "
            + "; ".join(gaps)
            + ".",
        ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = check_parser(__doc__)
    ap.add_argument("--truth", required=True, help="truth.parquet of the simulated sky")
    ap.add_argument(
        "--catalogue", action="append", required=True, help="NAME=DIR, a catalogue the job wrote; repeat"
    )
    ap.add_argument("--g-bins", nargs="+", type=float, default=[6.0, 13.0, 15.0, 17.65])
    ap.add_argument(
        "--tmass", help="the sky's 2MASS table: also score the red-clump preset with (J−Ks)0 cuts"
    )
    ap.add_argument(
        "--m-h-truth",
        choices=("auto", "fe_h", "m_h"),
        default="auto",
        help="score each catalogue's [M/H] against the true [Fe/H] or total [M/H]; auto (default): what its "
        "model learned (xpengine.model.metadata.metallicity_scale)",
    )
    args = ap.parse_args(argv)
    truth = pq.read_table(args.truth, columns=TRUTH_COLUMNS).to_pandas()
    truth = truth.rename(columns={c: f"{c}_true" for c in ("mass", "m_h", "teff", "logg")})
    cats = {}
    for item in args.catalogue:
        name, _, path = item.partition("=")
        if not path:
            ap.error(f"--catalogue {item!r}: expected NAME=DIR")
        try:
            check_simulated_sky_sigma(path)
        except ValueError as exc:
            ap.error(str(exc))
        try:
            scale = catalogue_metallicity_scale(path) if args.m_h_truth == "auto" else args.m_h_truth
        except ValueError as exc:
            ap.error(str(exc))
        cats[name] = check_catalogue(
            read_catalogue(path), truth, path, args.g_bins, args.tmass, m_h_scale=scale
        )
    result = {
        **run_header("benchmarks/sim_sky_checks.py", argv),
        "truth": args.truth,
        "catalogues": cats,
    }
    write_outputs(result, args.json, args.markdown, render_markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
