"""Evaluation of a label predictor (and the XGBoost baseline) on a training-schema test set.

The predictor: see `xpengine.evaluate.predictions` (re-exported here). Ages: the model predicts
ln(age/Gyr); age = exp(μ), σ_age = age · σ_ln age (REFERENCE.md §3), for the prediction and for the
catalogue label alike. Metrics are reported for ``ln_age`` and ``age``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from xpengine.evaluate.baseline import BaselineConfig, XGBoostBaseline
from xpengine.evaluate.calibration import (
    Calibration,
    LabelCalibration,
    fit_label_calibration,
)
from xpengine.evaluate.eval_set import (  # re-exported: they lived here
    G_COLUMN,
    LABEL_TOKENS,
    EvalSet,
    align_to_vocabulary,
    bundled_split_overlap,
    load_eval_set,
)
from xpengine.evaluate.metrics import binned_calibration, label_metrics
from xpengine.evaluate.predictions import (  # re-exported: they lived here
    LabelPredictor,
    load_predictor,
    metric_labels,
    predict_labels,
    scenario_predictions,
)
from xpengine.evaluate.scenarios import SCENARIOS

__all__ = [
    "LABEL_TOKENS",
    "EvalSet",
    "EvaluationResult",
    "LabelPredictor",
    "align_to_vocabulary",
    "evaluate",
    "load_eval_set",
    "load_predictor",
    "metric_labels",
    "predict_labels",
    "train_baseline",
]

logger = logging.getLogger(__name__)


def train_baseline(
    train_path: str, config: BaselineConfig, *, split: str | None = "train"
) -> XGBoostBaseline:
    """Fit the XGBoost baseline on the `split` rows of a training-schema file."""
    es = load_eval_set(train_path, split=split)
    targets = {k: v for k, v in es.truth.items() if k in config.labels}
    missing = [n for n in config.inputs if n not in es.vocabulary]
    if missing:
        raise ValueError(f"{train_path}: the baseline inputs {missing[:8]} are not tokens of this file")
    logger.info("training the XGBoost baseline on %d stars of %s (%s)", len(es), train_path, split)
    return XGBoostBaseline.fit(es.matrix(config.inputs), targets, config)


@dataclass
class EvaluationResult:
    """metrics: the JSON-ready dict written to metrics.json. predictions: {"transformer" | "xgboost" |
    "scenario:<name>" | "transformer_calibrated"} → label → (pred (N,), σ (N,) or None); truth /
    truth_error: label → (N,); g_mag, snr: (N,) or None; calibration: fitted calibration or None."""

    metrics: dict[str, Any]
    predictions: dict[str, dict[str, tuple[np.ndarray, np.ndarray | None]]]
    truth: dict[str, np.ndarray]
    truth_error: dict[str, np.ndarray]
    g_mag: np.ndarray | None
    snr: np.ndarray
    calibration: Calibration | None


def _label_block(
    preds: Mapping[str, tuple[np.ndarray, np.ndarray | None]],
    truth: Mapping[str, np.ndarray],
    truth_error: Mapping[str, np.ndarray],
    labels: Sequence[str],
) -> dict[str, dict[str, Any]]:
    out = {}
    for lab in labels:
        if lab in preds and lab in truth:
            out[lab] = label_metrics(preds[lab][0], truth[lab], preds[lab][1], truth_error.get(lab))
            # stars with a label but no prediction (no XP tokens; XGBoost's `complete` policy): counted,
            # never silently out of the n
            has_truth = np.isfinite(truth[lab])
            out[lab]["n_without_prediction"] = int(np.sum(has_truth & ~np.isfinite(preds[lab][0])))
    return out


def same_star_metrics(
    predictions: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray | None]]],
    truth: Mapping[str, np.ndarray],
    truth_error: Mapping[str, np.ndarray],
    labels: Sequence[str],
    models: Sequence[str] = ("transformer", "xgboost"),
) -> dict[str, dict[str, Any]]:
    """{model: {label: label_metrics}} over the stars where every one of `models` predicts the label and
    the truth is finite: the side-by-side comparison on one set of stars."""
    out: dict[str, dict[str, Any]] = {m: {} for m in models}
    for lab in labels:
        if lab not in truth or any(lab not in predictions.get(m, {}) for m in models):
            continue
        ok = np.isfinite(truth[lab])
        for m in models:
            ok &= np.isfinite(predictions[m][lab][0])
        for m in models:
            p, s = predictions[m][lab]
            te = truth_error.get(lab)
            out[m][lab] = label_metrics(
                p[ok], truth[lab][ok], None if s is None else s[ok], None if te is None else te[ok]
            )
    return out


def _calibration_block(
    preds: Mapping[str, tuple[np.ndarray, np.ndarray | None]],
    es: EvalSet,
    labels: Sequence[str],
    snr: np.ndarray,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for lab in labels:
        if lab not in preds or preds[lab][1] is None or lab not in es.truth:
            continue
        p, s = preds[lab]
        t, te = es.truth[lab], es.truth_error[lab]
        out[lab] = {
            "overall": label_metrics(p, t, s, te),
            "by_g": None if es.g_mag is None else binned_calibration(p, t, s, te, es.g_mag),
            "by_snr": binned_calibration(p, t, s, te, snr),
            "by_sigma_pred": binned_calibration(p, t, s, te, s),
        }
    return out


def _transformer_metrics(
    predictor: LabelPredictor,
    test: EvalSet,
    tokens: list[str],
    labels: list[str],
    scenarios: Sequence[str],
    *,
    batch_size: int,
    seed: int,
    predictions: dict[str, dict[str, tuple[np.ndarray, np.ndarray | None]]],
    metrics: dict[str, Any],
    timing: dict[str, float],
) -> None:
    """The predictor on the test stars under every scenario, into `predictions` ("scenario:<name>",
    "transformer" = the standard scenario, run even when not asked for), `metrics` and `timing`."""
    truth, terr = test.truth, test.truth_error
    aligned = test.align(predictor.vocabulary)
    values, errors = aligned.values, aligned.errors
    for sc in scenarios:
        t0 = time.perf_counter()
        res, mask = scenario_predictions(
            predictor, sc, values, errors, tokens, batch_size=batch_size, seed=seed, g_mag=test.g_mag
        )
        timing[f"transformer_{sc}_s"] = time.perf_counter() - t0
        predictions[f"scenario:{sc}"] = dict(res)
        meta = next(s for s in SCENARIOS if s.name == sc)
        metrics["scenarios"][sc] = {
            "panel": meta.panel,
            "description": meta.description,
            "median_n_inputs": float(np.median(mask.sum(axis=1))) if len(mask) else math.nan,
            "labels": _label_block(res, truth, terr, labels),
        }
        if sc == "standard":
            predictions["transformer"] = dict(res)
            metrics["models"]["transformer"] = metrics["scenarios"][sc]["labels"]
    if "transformer" not in predictions:  # standard scenario not asked for: still needed
        res, _ = scenario_predictions(
            predictor, "standard", values, errors, tokens, batch_size=batch_size, seed=seed, g_mag=test.g_mag
        )
        predictions["transformer"] = dict(res)
        metrics["models"]["transformer"] = _label_block(res, truth, terr, labels)


def _baseline_metrics(
    baseline: XGBoostBaseline,
    test: EvalSet,
    *,
    predictions: dict[str, dict[str, tuple[np.ndarray, np.ndarray | None]]],
    metrics: dict[str, Any],
    timing: dict[str, float],
) -> list[str]:
    """The baseline on the test stars, into `predictions["xgboost"]`, `metrics` and `timing`. Returns the
    labels it predicted."""
    truth, terr = test.truth, test.truth_error
    b_tokens = [lab for lab in baseline.labels if lab in truth]
    t0 = time.perf_counter()
    bp = baseline.predict(test.matrix(baseline.inputs), b_tokens)
    timing["xgboost_predict_s"] = time.perf_counter() - t0
    bpred: dict[str, tuple[np.ndarray, np.ndarray | None]] = {k: (v, None) for k, v in bp.items()}
    if "ln_age" in bpred:
        bpred["age"] = (np.exp(bpred["ln_age"][0]), None)
    predictions["xgboost"] = bpred
    metrics["models"]["xgboost"] = _label_block(bpred, truth, terr, metric_labels(b_tokens))
    metrics["baseline"] = {
        "config": baseline.config.to_dict(),
        "n_train": baseline.info.get("n_train"),
        "train_seconds": baseline.info.get("train_seconds"),
    }
    return b_tokens


def _fit_calibration(
    predictor: LabelPredictor,
    val: EvalSet,
    tokens: list[str],
    *,
    batch_size: int,
    seed: int,
    method: str,
    policy: str,
) -> Calibration:
    """σ calibration of the predictor's `tokens` fitted on the validation stars (standard scenario);
    linear age gets its own fit on age · raw σ_ln_age (see xpengine.evaluate.calibration)."""
    pv = predictor.vocabulary
    va = val.align(pv)
    vres, _ = scenario_predictions(
        predictor, "standard", va.values, va.errors, tokens, batch_size=batch_size, seed=seed, g_mag=val.g_mag
    )
    fits: dict[str, LabelCalibration] = {}
    for tok in tokens:
        if tok not in val.truth:
            continue
        unit = pv.token(tok).unit
        fits[tok] = fit_label_calibration(
            vres[tok][0],
            val.truth[tok],
            vres[tok][1],
            val.truth_error[tok],
            method=method,
            policy=policy,
            unit=unit,
        )
    if "ln_age" in fits and "age" in val.truth and "age" in vres:
        fits["age"] = fit_label_calibration(
            vres["age"][0],
            val.truth["age"],
            vres["age"][1],
            val.truth_error["age"],
            method=method,
            policy=policy,
            unit="Gyr",
        )
    return Calibration(
        labels=fits,
        provenance={"data": val.path, "split": val.split, "n_stars": len(val)},
    )


def _calibration_metrics(
    predictor: LabelPredictor,
    test: EvalSet,
    val: EvalSet | None,
    tokens: list[str],
    labels: list[str],
    snr: np.ndarray,
    *,
    predictions: dict[str, dict[str, tuple[np.ndarray, np.ndarray | None]]],
    batch_size: int,
    seed: int,
    method: str,
    policy: str,
    shipped: LabelPredictor | None = None,
) -> tuple[dict[str, Any], Calibration | None]:
    """The calibration block of the metrics (raw σ; the σ the model ships, from `shipped`: the same model
    loaded with its own `calibration.json`, as the catalogue and `Predictor.from_xp` give it; fit on
    `val` and calibrated σ when it has labels, with `predictions["transformer_calibrated"]`) and the
    fitted calibration or None."""
    cal_block: dict[str, Any] = {
        "formula": "sigma_cal = sqrt((a*sigma)^2 + b^2); z = (pred - truth) / sqrt(sigma^2 + sigma_truth^2)",
        "policy": policy,
        "method": method,
        "raw": _calibration_block(predictions["transformer"], test, labels, snr),
        "shipped": None,
        "fit": None,
        "calibrated": None,
        "note": None,
    }
    if shipped is not None:
        aligned = test.align(shipped.vocabulary)
        res, _ = scenario_predictions(
            shipped,
            "standard",
            aligned.values,
            aligned.errors,
            tokens,
            batch_size=batch_size,
            seed=seed,
            g_mag=test.g_mag,
        )
        predictions["transformer_shipped"] = dict(res)
        cal_block["shipped"] = _calibration_block(res, test, labels, snr)
    if val is None or not any(t in val.truth for t in tokens):
        cal_block["note"] = "no validation stars with labels: calibration not fitted"
        logger.warning("no validation split with labels: σ calibration not fitted")
        return cal_block, None
    calibration = _fit_calibration(
        predictor, val, tokens, batch_size=batch_size, seed=seed, method=method, policy=policy
    )
    cal_block["fit"] = calibration.to_dict()
    cpred: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
    for tok in tokens:
        mu, sd = predictions["transformer"][tok]
        cpred[tok] = (mu, calibration.apply(tok, sd, test.g_mag))
    if "ln_age" in cpred:
        mu, sd_raw = predictions["transformer"]["ln_age"]
        age = np.exp(mu)
        cpred["age"] = (age, calibration.derived_sigma("age", "ln_age", age, sd_raw, test.g_mag))
    predictions["transformer_calibrated"] = cpred
    cal_block["calibrated"] = _calibration_block(cpred, test, labels, snr)
    return cal_block, calibration


def evaluate(
    predictor: LabelPredictor | None,
    test: EvalSet,
    *,
    baseline: XGBoostBaseline | None = None,
    val: EvalSet | None = None,
    scenarios: Sequence[str] = tuple(s.name for s in SCENARIOS),
    batch_size: int = 4096,
    seed: int = 0,
    calibration_method: str = "scale_floor",
    calibration_policy: str = "auto",
    shipped: LabelPredictor | None = None,
) -> EvaluationResult:
    """Predict the test labels with the predictor (all `scenarios`) and the baseline; compute metrics.

    val: validation stars for the σ calibration (skipped when None or without labels). shipped: the
    model with its own σ calibration, whose σ are scored as well (None: not scored).
    Returns an :class:`EvaluationResult` whose `metrics` has keys "models", "scenarios",
    "calibration", "data", "timing" (see report.md for their meaning).
    """
    t_start = time.perf_counter()
    truth, terr = test.truth, test.truth_error
    predictions: dict[str, dict[str, tuple[np.ndarray, np.ndarray | None]]] = {}
    metrics: dict[str, Any] = {"models": {}, "scenarios": {}, "calibration": None}
    timing: dict[str, float] = {}
    snr = test.snr_proxy()

    tokens: list[str] = []
    if predictor is not None:
        pv = predictor.vocabulary
        tokens = [lab for lab in LABEL_TOKENS if lab in truth and lab in pv]
        skipped = [lab for lab in LABEL_TOKENS if lab in truth and lab not in pv]
        if skipped:
            logger.info("labels %s are not tokens of the model's vocabulary; not predicted", skipped)
    labels = metric_labels(tokens)
    if predictor is not None and tokens:
        _transformer_metrics(
            predictor,
            test,
            tokens,
            labels,
            scenarios,
            batch_size=batch_size,
            seed=seed,
            predictions=predictions,
            metrics=metrics,
            timing=timing,
        )
    baseline_tokens: list[str] = []
    if baseline is not None:
        baseline_tokens = _baseline_metrics(
            baseline, test, predictions=predictions, metrics=metrics, timing=timing
        )
    if "transformer" in predictions and "xgboost" in predictions:
        metrics["same_stars"] = same_star_metrics(predictions, truth, terr, labels)
    for name, block in metrics["models"].items():
        missing = {
            lab: b["n_without_prediction"] for lab, b in block.items() if b.get("n_without_prediction")
        }
        if missing:
            logger.warning(
                "%s: stars with a true label but no prediction, left out of its metrics: %s", name, missing
            )
    calibration: Calibration | None = None
    if predictor is not None and "transformer" in predictions:
        metrics["calibration"], calibration = _calibration_metrics(
            predictor,
            test,
            val,
            tokens,
            labels,
            snr,
            predictions=predictions,
            batch_size=batch_size,
            seed=seed,
            method=calibration_method,
            policy=calibration_policy,
            shipped=shipped,
        )

    metrics["data"] = {
        "test": test.path,
        "split": test.split,
        "n_stars": len(test),
        "labels": metric_labels([t for t in LABEL_TOKENS if t in tokens or t in baseline_tokens]),
        "g_column": G_COLUMN if test.g_mag is not None else None,
        "validation": None if val is None else {"path": val.path, "split": val.split, "n_stars": len(val)},
        "in_bundled_dev_split": bundled_split_overlap(test.source_id),
        "seed": seed,
    }
    timing["total_s"] = time.perf_counter() - t_start
    metrics["timing"] = timing
    return EvaluationResult(
        metrics=metrics,
        predictions=predictions,
        truth=dict(truth),
        truth_error=dict(terr),
        g_mag=test.g_mag,
        snr=snr,
        calibration=calibration,
    )
