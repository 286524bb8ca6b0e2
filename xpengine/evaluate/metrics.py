"""Accuracy and uncertainty-calibration metrics (pure numpy, NaN-aware).

Conventions (Zhang et al. 2026 §4; Leung & Bovy 2024 §4):

- residual r = prediction − truth (physical units of the label);
- scatter σ = 1.4826 · MAD(r) ("robust σ": equal to the standard deviation for a Gaussian);
- bias = median(r);
- z-score z = r / σ_tot with σ_tot = sqrt(σ_pred² + σ_truth²). The model's training loss uses the
  variance exp(logvar) + σ_known² (REFERENCE.md §4), so its predicted σ describes the star alone and
  excludes the error of the catalogue label it is compared to; the residual against a noisy label
  contains both, hence the quadrature sum. A label error of 0 means unknown and adds nothing.
  `z_sigma` = robust σ of z is 1 for calibrated uncertainties;
- coverage_68 = fraction of |r| ≤ 1·σ_tot (nominal 0.6827), coverage_95 = fraction of
  |r| ≤ 1.96·σ_tot (nominal 0.95).

Every function ignores entries where any input is NaN (or where σ_tot is not positive) and returns
NaN for an empty selection, never raising on missing data.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

__all__ = [
    "COVERAGE_68_K",
    "COVERAGE_95_K",
    "MAD_TO_SIGMA",
    "binned_calibration",
    "coverage",
    "label_metrics",
    "median_bias",
    "robust_sigma",
    "total_sigma",
    "z_scores",
]

MAD_TO_SIGMA = 1.4826
"""1 / Φ⁻¹(3/4): a Gaussian's standard deviation over its median absolute deviation."""
COVERAGE_68_K = 1.0
"""Half-width of the 68% interval in σ (nominal coverage erf(1/√2) = 0.6827)."""
COVERAGE_95_K = 1.959963984540054
"""Half-width of the 95% interval in σ (Φ⁻¹(0.975); nominal coverage 0.95)."""


def _finite(*arrays: np.ndarray) -> np.ndarray:
    ok = np.ones(np.broadcast_shapes(*(np.shape(a) for a in arrays)), dtype=bool)
    for a in arrays:
        ok &= np.isfinite(a)
    return ok


def robust_sigma(x: np.ndarray) -> float:
    """1.4826 · median(|x − median(x)|) over the finite entries of x (any shape, flattened).

    NaN when x has no finite entry. Units: those of x.
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    x = x[np.isfinite(x)]
    if x.size == 0:
        return math.nan
    return float(MAD_TO_SIGMA * np.median(np.abs(x - np.median(x))))


def median_bias(residual: np.ndarray) -> float:
    """Median of the finite residuals (N,); NaN when none."""
    r = np.asarray(residual, dtype=np.float64).ravel()
    r = r[np.isfinite(r)]
    return float(np.median(r)) if r.size else math.nan


def total_sigma(sigma_pred: np.ndarray, sigma_truth: np.ndarray | None = None) -> np.ndarray:
    """sqrt(σ_pred² + σ_truth²) (N,) float64; σ_truth NaN or None counts as 0 (unknown)."""
    sp = np.asarray(sigma_pred, dtype=np.float64)
    if sigma_truth is None:
        return np.abs(sp)
    st = np.nan_to_num(np.asarray(sigma_truth, dtype=np.float64), nan=0.0)
    return np.sqrt(sp**2 + st**2)


def z_scores(
    pred: np.ndarray, truth: np.ndarray, sigma_pred: np.ndarray, sigma_truth: np.ndarray | None = None
) -> np.ndarray:
    """(pred − truth) / sqrt(σ_pred² + σ_truth²), all (N,); NaN where an input is NaN or σ_tot ≤ 0."""
    r = np.asarray(pred, dtype=np.float64) - np.asarray(truth, dtype=np.float64)
    s = total_sigma(sigma_pred, sigma_truth)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(s > 0, r / s, np.nan)


def coverage(residual: np.ndarray, sigma: np.ndarray, k: float = 1.0) -> float:
    """Fraction of entries with |residual| ≤ k·σ among those where both are finite and σ > 0.

    residual, sigma: (N,) in the same units. NaN when no entry qualifies.
    """
    r = np.asarray(residual, dtype=np.float64)
    s = np.asarray(sigma, dtype=np.float64)
    ok = _finite(r, s) & (s > 0)
    if not ok.any():
        return math.nan
    return float(np.mean(np.abs(r[ok]) <= k * s[ok]))


def _median(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    return float(np.median(x)) if x.size else math.nan


def label_metrics(
    pred: np.ndarray,
    truth: np.ndarray,
    sigma_pred: np.ndarray | None = None,
    sigma_truth: np.ndarray | None = None,
) -> dict[str, Any]:
    """Summary metrics of one label over the stars where pred and truth are both finite.

    pred, truth: (N,) physical units; sigma_pred: (N,) predicted 1σ or None (a model without
    per-star uncertainties, e.g. XGBoost); sigma_truth: (N,) catalogue errors (0 or NaN = unknown).

    Returns a dict with keys: n (int), sigma, bias (float, label units), and, when sigma_pred is
    given (else None): z_sigma, z_bias (robust σ and median of z, see module docstring),
    z_sigma_pred_only (robust σ of r/σ_pred, ignoring the label error), coverage_68, coverage_95,
    median_sigma_pred, median_sigma_truth (label units). Floats are NaN when nothing qualifies.
    """
    p = np.asarray(pred, dtype=np.float64)
    t = np.asarray(truth, dtype=np.float64)
    if p.shape != t.shape:
        raise ValueError(f"pred {p.shape} and truth {t.shape} must have the same shape")
    ok = _finite(p, t)
    r = (p - t)[ok]
    out: dict[str, Any] = {"n": int(ok.sum()), "sigma": robust_sigma(r), "bias": median_bias(r)}
    keys = (
        "z_sigma",
        "z_bias",
        "z_sigma_pred_only",
        "coverage_68",
        "coverage_95",
        "median_sigma_pred",
        "median_sigma_truth",
    )
    if sigma_pred is None:
        out.update(dict.fromkeys(keys))
        return out
    sp = np.asarray(sigma_pred, dtype=np.float64)[ok]
    st = (
        np.zeros_like(sp)
        if sigma_truth is None
        else np.nan_to_num(np.asarray(sigma_truth, dtype=np.float64)[ok], nan=0.0)
    )
    stot = total_sigma(sp, st)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(stot > 0, r / stot, np.nan)
        z_pred = np.where(sp > 0, r / sp, np.nan)
    out.update(
        z_sigma=robust_sigma(z),
        z_bias=median_bias(z),
        z_sigma_pred_only=robust_sigma(z_pred),
        coverage_68=coverage(r, stot, COVERAGE_68_K),
        coverage_95=coverage(r, stot, COVERAGE_95_K),
        median_sigma_pred=_median(sp),
        median_sigma_truth=_median(st),
    )
    return out


def _quantile_edges(x: np.ndarray, n_bins: int) -> np.ndarray:
    x = x[np.isfinite(x)]
    if x.size == 0:
        return np.empty(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        edges = np.unique(np.quantile(x, np.linspace(0.0, 1.0, n_bins + 1)))
    return edges


def binned_calibration(
    pred: np.ndarray,
    truth: np.ndarray,
    sigma_pred: np.ndarray,
    sigma_truth: np.ndarray | None,
    by: np.ndarray,
    *,
    n_bins: int = 5,
    min_count: int = 5,
) -> list[dict[str, Any]]:
    """Calibration metrics in quantile bins of `by` (N,) (e.g. G magnitude, or predicted σ).

    Bins hold about equal numbers of stars (edges = quantiles of the finite `by` among stars with
    finite pred and truth); the last bin includes its upper edge. Bins with fewer than `min_count`
    stars are left out. Each entry: {"lo", "hi" (edges, units of `by`), "n", "sigma", "bias",
    "z_sigma", "coverage_68", "coverage_95", "median_sigma_pred"}.
    """
    p = np.asarray(pred, dtype=np.float64)
    t = np.asarray(truth, dtype=np.float64)
    b = np.asarray(by, dtype=np.float64)
    sp = np.asarray(sigma_pred, dtype=np.float64)
    st = None if sigma_truth is None else np.asarray(sigma_truth, dtype=np.float64)
    ok = _finite(p, t, b)
    edges = _quantile_edges(b[ok], n_bins)
    rows: list[dict[str, Any]] = []
    for i in range(len(edges) - 1):
        lo, hi = edges[i], edges[i + 1]
        sel = ok & (b >= lo) & ((b <= hi) if i == len(edges) - 2 else (b < hi))
        if sel.sum() < min_count:
            continue
        m = label_metrics(p[sel], t[sel], sp[sel], None if st is None else st[sel])
        rows.append(
            {
                "lo": float(lo),
                "hi": float(hi),
                "n": m["n"],
                "sigma": m["sigma"],
                "bias": m["bias"],
                "z_sigma": m["z_sigma"],
                "coverage_68": m["coverage_68"],
                "coverage_95": m["coverage_95"],
                "median_sigma_pred": m["median_sigma_pred"],
            }
        )
    return rows
