"""Several models and the XGBoost baseline side by side, in one run, on the same stars.

    python benchmarks/compare_models.py --data runs/apogee_xp_dev.parquet --split test \\
        --models gaia-xp apogee-xp --baseline-train runs/apogee_xp_dev.parquet \\
        --json benchmarks/results/compare_models.json --markdown benchmarks/results/compare_models.md

Data: the `--split` rows of a training-schema Parquet file, read by the loader of `xpengine evaluate`
(`xpengine.evaluate.runner.load_eval_set`: label truths and errors, ``age`` = exp(ln_age) with
σ_age = age · σ_ln_age, G from the file's `phot_g_mean_mag` column).

Models: bundled names or checkpoint directories (`Predictor.load`), each run on the standard input
(BP/RP 0–29, BP−RP, J−H, J−K: the ``standard`` scenario of `xpengine evaluate`; `--context model`: each
model's own default input instead, as the catalogue job gives it, e.g. with the pseudo-luminosity) with the σ it
reports, i.e. calibrated by the model's own `calibration.json` when it has one. A label a model did not
learn (not among its `learned_outputs`) is not requested from it and shows as "–". ``age`` [Gyr] and its
σ are the Predictor's own `age` / `age_error`. The XGBoost baseline (`xpengine.evaluate.baseline`) is
trained on the "train" rows of `--baseline-train` or loaded from `--baseline-model`; it has no σ.

Populations, by the TRUE labels of the data:

- ``all``: every star of the split;
- ``giants``: logg < 3.5 and 3500 < Teff < 5500 K (the domain of Zhang et al. 2026);
- ``dwarfs``: logg ≥ 3.5 and Teff ≤ 7000 K;
- ``hot``: Teff > 7000 K;
- ``metal_poor_giants``: giants with [M/H] < −1.

They need not cover every star (e.g. logg < 3.5 at 5500–7000 K is in none but ``all``).

Per model × population × label (`xpengine.evaluate.metrics.label_metrics`, residual r = pred − truth):
n, σ = 1.4826 · MAD(r), bias = median(r), z-spread = robust σ of r / sqrt(σ_pred² + σ_truth²) (1 for
honest σ), and the other keys of `label_metrics`. The same for G bins (`--g-bins`, each bin [lo, hi), the
last one closed) for ``all`` and ``giants``. For every model that predicts mass, ln_age and [M/H]: the
Spearman rank correlation of predicted age and predicted [M/H] among the giants with all four finite,
beside the same correlation of the true labels of those stars.

Writes the JSON (`--json`: every number, the command line, machine, date and the data file's sha256)
and optionally Markdown (`--markdown`; also printed to stdout): one table per population, rows the
models and XGBoost, cells "σ (z-spread)", then σ by G bin for the giants and the age–[M/H] correlations.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import math
import os
import platform
import shlex
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from check_report import paper_giants  # noqa: E402

from xpengine.evaluate.baseline import BaselineConfig, XGBoostBaseline  # noqa: E402
from xpengine.evaluate.metrics import label_metrics  # noqa: E402
from xpengine.evaluate.report import markdown_table, to_jsonable  # noqa: E402
from xpengine.evaluate.runner import (  # noqa: E402
    G_COLUMN,
    LABEL_TOKENS,
    EvalSet,
    align_to_vocabulary,
    bundled_split_overlap,
    load_eval_set,
    metric_labels,
    predict_labels,
    train_baseline,
)
from xpengine.evaluate.scenarios import scenario_groups  # noqa: E402
from xpengine.inference.predictor import Predictor  # noqa: E402
from xpengine.io import sha256_of  # noqa: E402

logger = logging.getLogger("compare_models")

BASELINE = "xgboost"
"""Key of the XGBoost baseline among the models of the output."""
POPULATIONS: dict[str, str] = {
    "all": "every star of the split",
    "giants": "logg < 3.5 and 3500 < Teff < 5500 K (Zhang et al. 2026)",
    "dwarfs": "logg ≥ 3.5 and Teff ≤ 7000 K",
    "hot": "Teff > 7000 K",
    "metal_poor_giants": "giants with [M/H] < −1",
}
G_BIN_POPULATIONS = ("all", "giants")
DEFAULT_G_BINS = (8.0, 11.0, 12.0, 13.0, 14.0, 15.0, 17.7)
G_BIN_KEYS = ("n", "sigma", "bias", "z_sigma")
MISSING = "–"

Predictions = dict[str, tuple[np.ndarray, np.ndarray | None]]
"""label → (prediction (N,), predicted σ (N,) or None), physical units."""


def population_masks(teff: np.ndarray, logg: np.ndarray, m_h: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean masks (N,) of the populations (module docstring) from true Teff [K], logg and [M/H] [dex]
    (N,). A star whose needed label is NaN belongs to no population but ``all``."""
    giants = paper_giants(teff, logg)
    return {
        "all": np.ones(len(teff), dtype=bool),
        "giants": giants,
        "dwarfs": (logg >= 3.5) & (teff <= 7000.0),
        "hot": teff > 7000.0,
        "metal_poor_giants": giants & (m_h < -1.0),
    }


CONTEXTS = ("standard", "model")
"""`--context`: "standard" = BP/RP 0–29, BP−RP, J−H, J−K for every model; "model" = each model's own
default input (`Predictor.default_inputs`, what the catalogue job gives it; e.g. with the pseudo-luminosity
for a model validated on it)."""


def transformer_predictions(
    predictor: Predictor, es: EvalSet, tokens: Sequence[str], context: str = "standard"
) -> Predictions:
    """The predictor's labels and calibrated σ for every star of `es` from the `context` input (CONTEXTS).

    tokens: label tokens wanted; only those the model learned are requested (the others are absent from
    the result). ``age`` and its σ come with ``ln_age``, as the Predictor derives them.
    """
    if context not in CONTEXTS:
        raise ValueError(f"context must be one of {CONTEXTS}, got {context!r}")
    request = [t for t in tokens if t in predictor.learned.outputs]
    if not request:
        return {}
    pv = predictor.vocabulary
    values, errors = align_to_vocabulary(es.values, es.errors, es.vocabulary, pv)  # (N, T_model)
    if context == "model":
        inputs = [t for t in predictor.default_inputs if t not in request]
    else:
        [(_, inputs)] = scenario_groups(
            "standard", pv, len(es), context_length=predictor.checkpoint.model_config.context_length
        )
    # evaluate's own path (G for calibrations with G-bin factors; age with ln_age)
    return predict_labels(predictor, values, errors, request, inputs=inputs, g_mag=es.g_mag)


def baseline_predictions(baseline: XGBoostBaseline, es: EvalSet, tokens: Sequence[str]) -> Predictions:
    """The baseline's predictions (no σ) of the `tokens` it has a regressor for; ``age`` = exp(ln_age)."""
    request = [t for t in tokens if t in baseline.labels]
    if not request:
        return {}
    out: Predictions = {
        k: (v, None) for k, v in baseline.predict(es.matrix(baseline.inputs), request).items()
    }
    if "ln_age" in out:
        out["age"] = (np.exp(out["ln_age"][0]), None)
    return out


def common_stars(preds: Mapping[str, Predictions], labels: Sequence[str], n: int) -> dict[str, np.ndarray]:
    """label → (N,) bool: the stars every model that predicts the label predicted (finite), so that each
    row of a table is scored on the same stars (an XGBoost baseline with nan_policy "complete" predicts only
    the stars with every input finite: on a simulated sky's relevancy-masked XP a small, bright subset)."""
    out = {}
    for lab in labels:
        ok = np.ones(n, dtype=bool)
        for p in preds.values():
            if lab in p:
                ok &= np.isfinite(p[lab][0])
        out[lab] = ok
    return out


def _metrics(
    preds: Predictions,
    es: EvalSet,
    labels: Sequence[str],
    rows: np.ndarray,
    common: Mapping[str, np.ndarray] | None = None,
) -> dict[str, dict[str, Any] | None]:
    """label → label_metrics over the `rows` (N,) bool (and, per label, the `common` stars), or None where
    the model does not predict it."""
    out: dict[str, dict[str, Any] | None] = {}
    for lab in labels:
        if lab not in preds:
            out[lab] = None
            continue
        p, s = preds[lab]
        r = rows if common is None else rows & common[lab]
        out[lab] = label_metrics(p[r], es.truth[lab][r], None if s is None else s[r], es.truth_error[lab][r])
    return out


def g_bin_metrics(
    preds: Predictions,
    es: EvalSet,
    labels: Sequence[str],
    rows: np.ndarray,
    g_mag: np.ndarray,
    edges: Sequence[float],
    common: Mapping[str, np.ndarray] | None = None,
) -> list[dict[str, Any]]:
    """n, σ, bias and z-spread per label in G bins [lo, hi) (the last one closed) of the `rows` (N,)
    bool (per label, of the `common` stars); g_mag (N,). Each entry: {"lo", "hi", "n_stars", "labels":
    label → dict or None}; n_stars counts the bin's stars, each label's "n" those scored."""
    out = []
    for i in range(len(edges) - 1):
        lo, hi = edges[i], edges[i + 1]
        upper = g_mag <= hi if i == len(edges) - 2 else g_mag < hi
        in_bin = rows & (g_mag >= lo) & upper
        block = _metrics(preds, es, labels, in_bin, common)
        out.append(
            {
                "lo": lo,
                "hi": hi,
                "n_stars": int(in_bin.sum()),
                "labels": {
                    lab: None if m is None else {k: m[k] for k in G_BIN_KEYS} for lab, m in block.items()
                },
            }
        )
    return out


def _robust_sigma_rows(r: np.ndarray) -> np.ndarray:
    """1.4826·MAD along the last axis of r (B, n)."""
    med = np.median(r, axis=-1, keepdims=True)
    return 1.4826 * np.median(np.abs(r - med), axis=-1)


def paired_sigma_difference(
    residual: np.ndarray, reference: np.ndarray, n_boot: int, seed: int = 0
) -> dict[str, Any] | None:
    """Robust σ of `residual` minus that of `reference` (both (N,) pred − truth of the same stars), with a
    paired bootstrap over the stars where both are finite: the same resampled stars for both models, so
    that what the two share (the stars' own difficulty) cancels. Returns {"n", "delta", "lo", "hi"} (hi/lo:
    2.5th/97.5th percentiles of `n_boot` resamples), or None with fewer than 10 such stars."""
    ok = np.isfinite(residual) & np.isfinite(reference)
    a, b = residual[ok], reference[ok]
    if a.size < 10:
        return None
    idx = np.random.default_rng(seed).integers(0, a.size, size=(n_boot, a.size))  # (B, n)
    d = _robust_sigma_rows(a[idx]) - _robust_sigma_rows(b[idx])  # (B,)
    lo, hi = np.percentile(d, [2.5, 97.5])
    return {
        "n": int(a.size),
        "delta": float(_robust_sigma_rows(a) - _robust_sigma_rows(b)),
        "lo": float(lo),
        "hi": float(hi),
    }


def sigma_differences(
    preds: dict[str, Predictions],
    es: EvalSet,
    labels: Sequence[str],
    masks: Mapping[str, np.ndarray],
    n_boot: int,
    common: Mapping[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Every model's σ minus the first model's (the reference), per population of BOOTSTRAP_POPULATIONS and
    label, by :func:`paired_sigma_difference` over the population's `common` stars of that label (those the
    tables score): {"reference", "n_boot", "models": model → population → label → dict or None}."""
    names = list(preds)
    ref = names[0]
    out: dict[str, Any] = {"reference": ref, "n_boot": n_boot, "models": {}}
    for name in names[1:]:
        out["models"][name] = {
            pop: {
                lab: None
                if lab not in preds[name] or lab not in preds[ref]
                else paired_sigma_difference(
                    preds[name][lab][0][rows] - es.truth[lab][rows],
                    preds[ref][lab][0][rows] - es.truth[lab][rows],
                    n_boot,
                )
                for lab in labels
                for rows in [masks[pop] if common is None else masks[pop] & common[lab]]
            }
            for pop in BOOTSTRAP_POPULATIONS
        }
    return out


BOOTSTRAP_POPULATIONS = ("all", "giants")


def age_metallicity_correlation(preds: Predictions, es: EvalSet, rows: np.ndarray) -> dict[str, Any] | None:
    """Spearman ρ of predicted age vs predicted [M/H] and of the true ones, on the `rows` (N,) bool with
    all four finite (`compare` passes the giants every model predicted both for); None when the model does
    not predict mass, ln_age and [M/H] or the truth lacks ln_age or [M/H]."""
    from scipy.stats import spearmanr

    if not {"mass", "ln_age", "m_h"} <= set(preds) or not {"ln_age", "m_h"} <= set(es.truth):
        return None
    pa, pm = preds["ln_age"][0], preds["m_h"][0]  # ln age: same ranks as age
    ta, tm = es.truth["ln_age"], es.truth["m_h"]
    ok = rows & np.isfinite(pa) & np.isfinite(pm) & np.isfinite(ta) & np.isfinite(tm)
    n = int(ok.sum())
    if n < 3:
        return {"n": n, "spearman_pred": math.nan, "spearman_truth": math.nan}
    return {
        "n": n,
        "spearman_pred": float(spearmanr(pa[ok], pm[ok]).statistic),
        "spearman_truth": float(spearmanr(ta[ok], tm[ok]).statistic),
    }


def compare(
    es: EvalSet,
    models: Mapping[str, Predictor],
    baseline: XGBoostBaseline | None,
    tokens: Sequence[str],
    g_bins: Sequence[float],
    context: str = "standard",
    bootstrap: int = 0,
) -> dict[str, Any]:
    """Every metric of the module docstring for the `models` (name → Predictor) and the baseline on the
    stars of `es`; tokens: label tokens to evaluate (those without truth in `es` are left out).

    Returns a dict with keys "labels", "labels_without_truth", "populations", "models", "metrics" (model
    → population → label → label_metrics or None), "by_g" (None without G, else "edges" and model →
    population → bins), "age_metallicity" (model → giants' correlations or None) and "sigma_differences"
    (None unless `bootstrap` > 0 resamples: :func:`sigma_differences` against the first model).
    """
    missing = [t for t in ("teff", "logg", "m_h") if t not in es.truth]
    if missing:
        raise ValueError(f"{es.path}: the populations need true {missing}; the file has {sorted(es.truth)}")
    without_truth = [t for t in tokens if t not in es.truth]
    if without_truth:
        logger.warning("no true %s in %s: not compared", without_truth, es.path)
    tokens = [t for t in tokens if t in es.truth]
    labels = metric_labels(tokens)
    masks = population_masks(es.truth["teff"], es.truth["logg"], es.truth["m_h"])

    preds: dict[str, Predictions] = {}
    info: dict[str, dict[str, Any]] = {}
    for name, predictor in models.items():
        logger.info("predicting %s with %s", tokens, name)
        t0 = time.perf_counter()
        preds[name] = transformer_predictions(predictor, es, tokens, context)
        seconds = time.perf_counter() - t0
        info[name] = {
            "kind": "transformer",
            "path": str(predictor.checkpoint.path),
            "weights_sha256": sha256_of(predictor.checkpoint.path / "model.safetensors"),
            "learned_outputs": list(predictor.learned.outputs),
            "not_learned": [t for t in tokens if t not in predictor.learned.outputs],
            "sigma": "raw" if predictor.calibration is None else "calibrated (calibration.json)",
            "predict_seconds": seconds,
        }
    if baseline is not None:
        preds[BASELINE] = baseline_predictions(baseline, es, tokens)
        info[BASELINE] = {
            "kind": "xgboost",
            "config": baseline.config.to_dict(),
            "n_train": baseline.info.get("n_train"),
            "not_learned": [t for t in tokens if t not in baseline.labels],
            "sigma": None,
        }

    common = common_stars(preds, labels, len(es))
    common_age_mh = np.ones(len(es), dtype=bool)
    for lab in ("ln_age", "m_h"):
        common_age_mh &= common.get(lab, common_age_mh)
    by_g: dict[str, Any] | None = None
    if es.g_mag is not None:
        by_g = {
            "edges": list(g_bins),
            "models": {
                name: {
                    pop: g_bin_metrics(p, es, labels, masks[pop], es.g_mag, g_bins, common)
                    for pop in G_BIN_POPULATIONS
                }
                for name, p in preds.items()
            },
        }
    return {
        "labels": labels,
        "labels_without_truth": without_truth,
        "populations": {
            pop: {"definition": POPULATIONS[pop], "n_stars": int(m.sum())} for pop, m in masks.items()
        },
        "models": info,
        "metrics": {
            name: {pop: _metrics(p, es, labels, m, common) for pop, m in masks.items()}
            for name, p in preds.items()
        },
        "n_compared": {
            pop: {lab: int((m & common[lab] & np.isfinite(es.truth[lab])).sum()) for lab in labels}
            for pop, m in masks.items()
        },
        "by_g": by_g,
        "age_metallicity": {
            name: age_metallicity_correlation(p, es, masks["giants"] & common_age_mh)
            for name, p in preds.items()
        },
        "context": context,
        "sigma_differences": sigma_differences(preds, es, labels, masks, bootstrap, common)
        if bootstrap > 0
        else None,
    }


def _number(x: float | None, label: str) -> str:
    if x is None:
        return MISSING
    if label == "teff" or abs(x) >= 100:
        return f"{x:.0f}"
    return f"{x:.1f}" if abs(x) >= 10 else f"{x:.3g}"


def _cell(m: Mapping[str, Any] | None, label: str) -> str:
    """ "σ (z-spread)", "σ" without σ_pred, "–" when not predicted or no star."""
    if m is None or m.get("sigma") is None:
        return MISSING
    z = m.get("z_sigma")
    return _number(m["sigma"], label) + ("" if z is None else f" ({z:.2f})")


def render_markdown(result: Mapping[str, Any], units: Mapping[str, str]) -> str:
    """Compact tables of a JSON-ready :func:`compare` result (NaN as None) with its "data" block;
    units: label → unit for the column headers."""
    labels = result["labels"]
    header_labels = [f"{lab} [{units[lab]}]" if units.get(lab) else lab for lab in labels]
    data = result["data"]
    lines = [
        "# Models side by side",
        "",
        f"`{data['path']}` split `{data['split']}`: {data['n_stars']} stars (sha256 {data['sha256'][:12]}…). "
        "Cells: robust σ of pred − truth (1.4826·MAD), in brackets the z-spread, robust σ of "
        "(pred − truth)/sqrt(σ_pred² + σ_label²) (1 = honest σ); – = not predicted by that model. "
        "Every model is scored, label by label, on the same stars: those all the models that predict the "
        "label predicted (since session 17; `stars compared` rows). "
        f"Input: {_input_text(result)}.{_overlap_text(data)}",
        "",
    ]
    for name, m in result["models"].items():
        if m["kind"] == "transformer":
            lines.append(f"- `{name}`: σ {m['sigma']}; not learned: {', '.join(m['not_learned']) or 'none'}")
        else:
            cfg = m["config"]
            extra = ", ".join(cfg.get("extra_inputs") or []) or "none"
            lines.append(
                f"- `{name}`: {cfg['n_estimators']} trees, missing inputs {cfg['nan_policy']!r}, extra inputs "
                f"{extra}, trained on {max((m.get('n_train') or {}).values(), default=0)} stars at most; no σ "
                "(cells give σ only)"
            )
    if result["labels_without_truth"]:
        lines.append(f"- no true {', '.join(result['labels_without_truth'])} in the data: not compared")
    lines.append("")
    for pop, p in result["populations"].items():
        lines += [f"## {pop}: {p['definition']} ({p['n_stars']} stars)", ""]
        rows = [
            [name, *(_cell(result["metrics"][name][pop][lab], lab) for lab in labels)]
            for name in result["metrics"]
        ]
        n_cmp = (result.get("n_compared") or {}).get(pop)
        if n_cmp:
            rows.append(["stars compared", *(str(n_cmp[lab]) for lab in labels)])
        lines += [*markdown_table(["model", *header_labels], rows), ""]
    by_g = result["by_g"]
    if by_g is None:
        lines += ["No G column in the data: no G bins.", ""]
    else:
        lines += ["## giants by G", ""]
        rows = [
            [
                f"{b['lo']:g}–{b['hi']:g}",
                str(b["n_stars"]),
                name,
                *(_cell(b["labels"][lab], lab) for lab in labels),
            ]
            for i in range(len(by_g["edges"]) - 1)
            for name, pops in by_g["models"].items()
            for b in [pops["giants"][i]]
        ]
        lines += [*markdown_table(["G", "stars", "model", *header_labels], rows), ""]
    corr = {k: v for k, v in result["age_metallicity"].items() if v is not None}
    if corr:
        lines += ["## giants: Spearman ρ(age, [M/H])", ""]
        rows = [
            [name, str(c["n"]), _number(c["spearman_pred"], ""), _number(c["spearman_truth"], "")]
            for name, c in corr.items()
        ]
        lines += [*markdown_table(["model", "stars", "ρ predicted", "ρ true labels"], rows), ""]
    diff = result.get("sigma_differences")
    if diff:
        lines += [
            f"## σ minus the σ of `{diff['reference']}`",
            "",
            f"Paired bootstrap over the stars ({diff['n_boot']} resamples): Δσ [2.5th, 97.5th percentile]; "
            "negative = smaller scatter than the reference; an interval that holds 0 is no measured difference.",
            "",
        ]
        rows = [
            [name, pop, *(_delta_cell(d[lab], lab) for lab in labels)]
            for name, pops in diff["models"].items()
            for pop, d in pops.items()
        ]
        lines += [*markdown_table(["model", "stars", *header_labels], rows), ""]
    return "\n".join(lines)


def _input_text(result: Mapping[str, Any]) -> str:
    if result.get("context") == "model":
        return "each model its own default input (the catalogue's); XGBoost BP/RP 0–29, BP−RP, J−H, J−K and its extra inputs"
    return "BP/RP 0–29, BP−RP, J−H, J−K (XGBoost also its extra inputs)"


def _delta_cell(d: Mapping[str, Any] | None, label: str) -> str:
    if d is None:
        return MISSING
    f = "{:+.0f}" if label == "teff" else "{:+.4f}"
    return f"{f.format(d['delta'])} [{f.format(d['lo'])}, {f.format(d['hi'])}]"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="training-schema Parquet file")
    p.add_argument(
        "--split",
        default="test",
        help="rows of --data to evaluate (default: test; all: every row, e.g. a sky never used in training)",
    )
    p.add_argument("--models", nargs="+", required=True, help="bundled model names or checkpoint directories")
    base = p.add_mutually_exclusive_group()
    base.add_argument("--baseline-train", help="train the XGBoost baseline on the train rows of this file")
    base.add_argument("--baseline-model", help="load a saved XGBoost baseline directory")
    p.add_argument("--baseline-estimators", type=int, help="boosting rounds (default: the paper's 2000)")
    p.add_argument(
        "--baseline-nan-policy",
        choices=("native", "complete"),
        default="native",
        help="missing inputs of the trained baseline (default native: trained and scored on every star, "
        "XGBoost's own missing-value branches; complete: the paper's policy, only stars with every input "
        "finite, which on a simulated sky's relevancy-masked XP is a small bright subset)",
    )
    p.add_argument(
        "--baseline-extra-inputs",
        nargs="*",
        default=[],
        help="tokens the trained baseline reads beside the standard inputs, e.g. g_fakemag with "
        "--context model, so that it gets the parallax the transformer gets",
    )
    p.add_argument(
        "--labels",
        nargs="+",
        default=list(LABEL_TOKENS),
        choices=LABEL_TOKENS,
        help="label tokens to compare (age in Gyr comes with ln_age)",
    )
    p.add_argument(
        "--g-bins", nargs="+", type=float, default=list(DEFAULT_G_BINS), help="increasing G bin edges"
    )
    p.add_argument(
        "--context",
        choices=CONTEXTS,
        default="standard",
        help="model input: standard (BP/RP 0-29 and three colours, every model) or model (each model's own "
        "default input, as the catalogue job gives it; XGBoost keeps its fixed input)",
    )
    p.add_argument(
        "--bootstrap",
        type=int,
        default=0,
        help="paired bootstrap resamples for every model's σ minus the first model's (default 0: none)",
    )
    p.add_argument("--device", default="auto", help="torch device for the models (default: auto)")
    p.add_argument(
        "--no-sim-to-real",
        dest="sim_to_real",
        action="store_false",
        help="the stars are simulated (a simulated sky's truth): σ as calibrated on simulated stars, without "
        "the models' sim-to-real term (Predictor(sim_to_real=False))",
    )
    p.add_argument("--json", required=True, help="output JSON path")
    p.add_argument("--markdown", help="output Markdown path (the tables are printed either way)")
    return p


def _overlap_text(data: dict[str, Any]) -> str:
    """A warning sentence when scored stars are in the bundled models' training or choice split."""
    o = data.get("in_bundled_dev_split") or {}
    if not (o.get("train") or o.get("val")):
        return ""
    return (
        f" **{o['train']} of these stars are in the bundled models' APOGEE×XP training split and {o['val']} in "
        "the split they were chosen on: their scores are not independent.**"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the comparison of the command line `argv` (default: sys.argv[1:]); returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    g_bins = list(args.g_bins)
    if len(g_bins) < 2 or any(b <= a for a, b in itertools.pairwise(g_bins)):
        parser.error(f"--g-bins must be at least two increasing edges, got {g_bins}")
    if len(set(args.models)) != len(args.models) or BASELINE in args.models:
        parser.error(f"--models must be distinct and not {BASELINE!r}, got {args.models}")
    if args.baseline_estimators is not None and args.baseline_estimators < 1:
        parser.error(f"--baseline-estimators must be ≥ 1, got {args.baseline_estimators}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    es = load_eval_set(args.data, split=None if args.split == "all" else args.split)
    models = {
        name: Predictor.load(name, device=args.device, sim_to_real=args.sim_to_real) for name in args.models
    }
    baseline = None
    if args.baseline_model:
        baseline = XGBoostBaseline.load(args.baseline_model)
    elif args.baseline_train:
        settings: dict[str, Any] = {
            "labels": tuple(args.labels),
            "nan_policy": args.baseline_nan_policy,
            "extra_inputs": tuple(args.baseline_extra_inputs),
        }
        if args.baseline_estimators is not None:
            settings["n_estimators"] = args.baseline_estimators
        baseline = train_baseline(args.baseline_train, BaselineConfig(**settings), split="train")

    if args.bootstrap < 0:
        parser.error(f"--bootstrap must be ≥ 0, got {args.bootstrap}")
    result = compare(es, models, baseline, args.labels, g_bins, args.context, args.bootstrap)
    if baseline is not None:
        result["models"][BASELINE]["source"] = args.baseline_model or f"trained on {args.baseline_train}"
    command = sys.argv if argv is None else [sys.argv[0], *argv]
    result = {
        "command": shlex.join(command),
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "device": args.device,
        },
        "date_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "data": {
            "path": args.data,
            "sha256": sha256_of(args.data),
            "split": args.split,
            "context": args.context,
            "n_stars": len(es),
            "g_column": G_COLUMN if es.g_mag is not None else None,
            "in_bundled_dev_split": bundled_split_overlap(es.source_id),
        },
        **to_jsonable(result),
    }
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, ensure_ascii=False, allow_nan=False))
    units = {lab: es.vocabulary.token(lab).unit for lab in result["labels"] if lab in es.vocabulary}
    units["age"] = "Gyr"
    md = render_markdown(result, units)
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
