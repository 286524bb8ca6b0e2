"""Post-hoc calibration of predicted uncertainties, fitted on the validation split.

Model, per label token t (physical units of t):

    σ_cal = sqrt((a_t · σ_pred)² + b_t²)          (a_t > 0 dimensionless, b_t ≥ 0 in units of t)

so a single scale factor is the case b = 0. The target is z-scores of unit robust spread on the
validation stars, with z = (pred − truth) / sqrt(σ_cal² + σ_truth²) (see `metrics`): the label's own
catalogue error is not part of the model's σ and is not calibrated away.

Two fits:

- "scale": b = 0 and a such that robust σ(z) = 1 exactly (bisection in log a; robust σ(z) decreases
  monotonically with a).
- "scale_floor" (default): stars binned in quantiles of σ_pred; in bin k the robust residual spread
  s_k, the median σ_pred m_k and median σ_truth² t_k² give s_k² − t_k² ≈ a² m_k² + b², solved by
  non-negative least squares in (a², b²), each equation divided by s_k² (relative misfit); a
  common factor on (a, b) then makes robust σ(z) = 1 exactly over all validation stars. Falls back
  to "scale" with fewer than `min_per_bin` stars per bin or when the fit degenerates (a² ≤ 0).

A label is "applied" (its a, b differ from 1, 0) only when the raw validation z-spread is outside
[0.9, 1.1] (issue "Evaluation") and differs from 1 by more than twice its sampling error
(1.166/√n for the 1.4826·MAD spread of n Gaussian values, relative efficiency 0.368), so that a
small validation set does not "correct" noise; `policy="always"` applies the fit regardless.

Stored next to the model as `calibration.json`::

    {"format_version": "1", "formula": "sigma_cal = sqrt((a*sigma)^2 + b^2)",
     "labels": {"teff": {"a": 1.31, "b": 12.0, "applied": true, "method": "scale_floor",
                         "n_val": 2900, "z_sigma_val_raw": 1.42, "z_sigma_val_cal": 1.0, "unit": "K"}, ...},
     "provenance": {...}}

A predictor applies, for each requested token t with an entry, σ_t ← sqrt((a_t σ_t)² + b_t²) to the
physical-unit σ (the mean is untouched). A derived linear label (``age`` = exp(ln_age)) has its own
entry, fitted in linear units on σ_age = age · σ_ln_age with the *raw* σ_ln_age: a log-normal error
that is calibrated in ln space is not calibrated in linear space (the bundled synthetic-sky model
had a linear age z-spread of 0.96 raw but 1.15 after scaling σ_ln_age). Files without an ``age``
entry derive age_error = age · calibrated σ_ln_age.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from xpengine.evaluate.metrics import robust_sigma
from xpengine.model.calibration import (
    CALIBRATION_FILE,
    Calibration,
    LabelCalibration,
)

__all__ = [
    "CALIBRATION_FILE",
    "Calibration",
    "LabelCalibration",
    "fit_class_factor",
    "fit_label_calibration",
]

logger = logging.getLogger(__name__)

TOLERANCE = 0.1
"""Raw z-spread within 1 ± TOLERANCE counts as calibrated (no correction applied)."""
MAD_SIGMA_REL_ERROR = 1.166
"""Relative standard error × √n of the 1.4826·MAD spread estimate for Gaussian data
(1/sqrt(2 · 0.368), 0.368 being the MAD's asymptotic efficiency relative to the standard deviation)."""


def _z_spread(r: np.ndarray, sp: np.ndarray, st2: np.ndarray, a: float, b: float) -> float:
    return robust_sigma(r / np.sqrt((a * sp) ** 2 + b**2 + st2))


def _solve_factor(r: np.ndarray, sp: np.ndarray, st2: np.ndarray, a: float, b: float) -> float:
    """Factor c with robust σ of r / sqrt(c²((aσ)² + b²) + σ_t²) = 1 (bisection in log c)."""
    lo, hi = -12.0, 12.0  # ln c
    f_lo = _z_spread(r, sp, st2, a * math.exp(lo), b * math.exp(lo)) - 1.0
    f_hi = _z_spread(r, sp, st2, a * math.exp(hi), b * math.exp(hi)) - 1.0
    if not (f_lo > 0 > f_hi):  # label errors alone exceed the residual spread, or no data
        return math.exp(lo) if f_lo <= 0 else math.exp(hi)
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if _z_spread(r, sp, st2, a * math.exp(mid), b * math.exp(mid)) > 1.0:
            lo = mid
        else:
            hi = mid
    return math.exp(0.5 * (lo + hi))


def _fit_scale_floor(
    r: np.ndarray, sp: np.ndarray, st2: np.ndarray, n_bins: int
) -> tuple[float, float] | None:
    edges = np.unique(np.quantile(sp, np.linspace(0, 1, n_bins + 1)))
    if len(edges) < 3:
        return None
    rows, rhs = [], []
    for i in range(len(edges) - 1):
        sel = (sp >= edges[i]) & ((sp <= edges[i + 1]) if i == len(edges) - 2 else (sp < edges[i + 1]))
        if sel.sum() < 3:
            continue
        s2 = robust_sigma(r[sel]) ** 2
        if not s2 > 0:
            continue
        m2 = float(np.median(sp[sel])) ** 2
        y = s2 - float(np.median(st2[sel]))
        rows.append([m2 / s2, 1.0 / s2])
        rhs.append(y / s2)
    if len(rows) < 2:
        return None
    A, y = np.asarray(rows), np.asarray(rhs)
    # Non-negative least squares in (a², b²) with two unknowns: the unconstrained solution, else the
    # best of the two one-parameter fits on the boundary.
    candidates = []
    sol, *_ = np.linalg.lstsq(A, y, rcond=None)
    if np.all(sol >= 0):
        candidates.append(sol)
    for j in (0, 1):
        col = A[:, j]
        v = max(float(col @ y) / float(col @ col), 0.0)
        candidates.append(np.array([v, 0.0]) if j == 0 else np.array([0.0, v]))
    best = min(candidates, key=lambda c: float(np.sum((A @ c - y) ** 2)))
    if not best[0] > 0:
        return None
    return math.sqrt(best[0]), math.sqrt(best[1])


def _residuals(
    pred: Any, truth: Any, sigma: Any, sigma_truth: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pred − truth, σ, σ_truth² (NaN: 0)) (n,) float64 of the stars with all three finite and σ > 0."""
    p, t, sp = (np.asarray(a, dtype=np.float64) for a in (pred, truth, sigma))
    st = np.zeros_like(sp) if sigma_truth is None else np.asarray(sigma_truth, dtype=np.float64)
    ok = np.isfinite(p) & np.isfinite(t) & np.isfinite(sp) & (sp > 0)
    return (p - t)[ok], sp[ok], np.nan_to_num(st[ok], nan=0.0) ** 2


def _needed(raw: float, n: int) -> bool:
    """Whether a raw z-spread of n stars is off 1 beyond TOLERANCE and twice its sampling error."""
    return abs(raw - 1.0) > max(TOLERANCE, 2.0 * MAD_SIGMA_REL_ERROR / math.sqrt(n))


def fit_label_calibration(
    pred: np.ndarray,
    truth: np.ndarray,
    sigma_pred: np.ndarray,
    sigma_truth: np.ndarray | None = None,
    *,
    method: str = "scale_floor",
    policy: str = "auto",
    n_bins: int = 10,
    min_per_bin: int = 20,
    unit: str = "",
) -> LabelCalibration:
    """Fit σ_cal = sqrt((aσ)² + b²) on validation stars (see module docstring).

    pred, truth, sigma_pred, sigma_truth: (N,) physical units of the token. method: "scale" or
    "scale_floor"; policy: "auto" (apply only when the raw z-spread is outside 1 ± 0.1), "always",
    or "never" (record the raw spread, apply nothing).
    """
    if method not in ("scale", "scale_floor"):
        raise ValueError(f"calibration method must be 'scale' or 'scale_floor', got {method!r}")
    if policy not in ("auto", "always", "never"):
        raise ValueError(f"calibration policy must be 'auto', 'always' or 'never', got {policy!r}")
    r, sp, st2 = _residuals(pred, truth, sigma_pred, sigma_truth)
    n = r.size
    if n < 2:
        logger.warning("calibration: %d usable validation stars; leaving σ unchanged", n)
        return LabelCalibration(n_val=n, unit=unit)
    raw = _z_spread(r, sp, st2, 1.0, 0.0)
    needed = _needed(raw, n)
    if policy == "never" or (policy == "auto" and not needed):
        return LabelCalibration(n_val=n, z_sigma_val_raw=raw, z_sigma_val_cal=raw, unit=unit)
    a, b, used = 1.0, 0.0, "scale"
    if method == "scale_floor" and n >= n_bins * min_per_bin:
        fit = _fit_scale_floor(r, sp, st2, n_bins)
        if fit is not None:
            a, b = fit
            used = "scale_floor"
    c = _solve_factor(r, sp, st2, a, b)
    a, b = a * c, b * c
    cal = _z_spread(r, sp, st2, a, b)
    return LabelCalibration(
        a=float(a),
        b=float(b),
        applied=True,
        method=used,
        n_val=n,
        z_sigma_val_raw=raw,
        z_sigma_val_cal=cal,
        unit=unit,
    )


def fit_class_factor(
    pred: np.ndarray,
    truth: np.ndarray,
    sigma_cal: np.ndarray,
    sigma_truth: np.ndarray | None = None,
    *,
    policy: str = "auto",
) -> tuple[float, dict[str, Any]]:
    """The factor on one class's calibrated σ (`Calibration.by_class`, format 6) that makes its robust
    z-spread 1, z = (pred − truth) / sqrt((f σ_cal)² + σ_truth²) over the class's validation stars (N,),
    and its record (n, z-spread before and after). policy "auto": 1 unless the spread is outside 1 ±
    TOLERANCE and off 1 by more than twice its sampling error, as `fit_label_calibration` decides."""
    r, sp, st2 = _residuals(pred, truth, sigma_cal, sigma_truth)
    n = r.size
    if n < 2:
        return 1.0, {"n": n, "z_spread": None, "z_spread_cal": None, "applied": False}
    raw = _z_spread(r, sp, st2, 1.0, 0.0)
    fit = policy == "always" or (policy == "auto" and _needed(raw, n))
    f = _solve_factor(r, sp, st2, 1.0, 0.0) if fit else 1.0
    cal = _z_spread(r, sp, st2, f, 0.0)
    return float(f), {"n": n, "z_spread": raw, "z_spread_cal": cal, "applied": f != 1.0}
