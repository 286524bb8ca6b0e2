"""Metric and calibration functions of xpengine.evaluate against hand-computed values."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from xpengine.evaluate.calibration import Calibration, LabelCalibration, fit_label_calibration
from xpengine.evaluate.metrics import (
    COVERAGE_95_K,
    binned_calibration,
    coverage,
    label_metrics,
    median_bias,
    robust_sigma,
    total_sigma,
    z_scores,
)


def test_robust_sigma_by_hand() -> None:
    # median 3; |x − 3| = 2, 1, 0, 1, 97 → MAD 1 → 1.4826 (the outlier does not matter).
    assert robust_sigma(np.array([1.0, 2.0, 3.0, 4.0, 100.0])) == pytest.approx(1.4826, abs=1e-12)
    # NaN ignored; even count: median 2.5, deviations 1.5, 0.5, 0.5, 1.5 → MAD 1.0
    assert robust_sigma(np.array([1.0, np.nan, 2.0, 3.0, 4.0])) == pytest.approx(1.4826, abs=1e-12)
    x = np.array([10.0, 10.0, 13.0, 7.0, 10.0, 16.0])  # median 10, |dev| 0,0,3,3,0,6 → MAD 1.5
    assert robust_sigma(x) == pytest.approx(1.4826 * 1.5, abs=1e-12)
    assert math.isnan(robust_sigma(np.array([np.nan, np.nan])))
    assert math.isnan(robust_sigma(np.array([])))


def test_robust_sigma_of_gaussian() -> None:
    z = np.random.default_rng(1).normal(0.0, 2.5, 200_000)
    assert robust_sigma(z) == pytest.approx(2.5, rel=0.01)


def test_median_bias_and_total_sigma() -> None:
    assert median_bias(np.array([-1.0, 5.0, 2.0, np.nan])) == 2.0
    assert math.isnan(median_bias(np.array([np.nan])))
    np.testing.assert_allclose(total_sigma(np.array([3.0, 0.6]), np.array([4.0, 0.8])), [5.0, 1.0])
    # unknown label error (NaN) counts as zero
    np.testing.assert_allclose(total_sigma(np.array([2.0]), np.array([np.nan])), [2.0])


def test_z_scores_quadrature() -> None:
    z = z_scores(
        pred=np.array([3.0, 1.0, 1.0, 2.0]),
        truth=np.array([0.0, 2.0, np.nan, 2.0]),
        sigma_pred=np.array([0.6, 0.5, 1.0, 0.0]),
        sigma_truth=np.array([0.8, 0.0, 0.0, 0.0]),
    )
    # 3 / sqrt(0.36 + 0.64) = 3; (1 − 2) / 0.5 = −2; NaN truth → NaN; σ_tot 0 → NaN
    np.testing.assert_allclose(z[:2], [3.0, -2.0])
    assert np.isnan(z[2]) and np.isnan(z[3])


def test_coverage_constructed_residuals() -> None:
    r = np.array([0.5, -1.0, 1.5, -2.5, np.nan, 0.1])
    s = np.array([1.0, 1.0, 1.0, 1.0, 1.0, np.nan])
    assert coverage(r, s, 1.0) == 0.5  # 0.5 and −1.0 of the 4 usable
    assert coverage(r, s, COVERAGE_95_K) == 0.75  # + 1.5
    assert coverage(r, 2 * s, 1.0) == 0.75
    assert math.isnan(coverage(np.array([np.nan]), np.array([1.0])))


def test_gaussian_coverage_nominal() -> None:
    rng = np.random.default_rng(2)
    sig = rng.uniform(0.5, 3.0, 100_000)
    r = rng.normal(0.0, sig)
    assert coverage(r, sig, 1.0) == pytest.approx(0.6827, abs=0.005)
    assert coverage(r, sig, COVERAGE_95_K) == pytest.approx(0.95, abs=0.003)


def test_label_metrics_by_hand() -> None:
    truth = np.array([10.0, 20.0, 30.0, 40.0, 50.0, np.nan])
    pred = np.array([11.0, 18.5, 30.0, 43.0, 50.5, 60.0])  # residuals 1, −1.5, 0, 3, 0.5
    sp = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    m = label_metrics(pred, truth, sp)
    assert m["n"] == 5 and isinstance(m["n"], int)
    # residual median 0.5; |r − 0.5| = 0.5, 2, 0.5, 2.5, 0 → MAD 0.5
    assert m["bias"] == 0.5
    assert m["sigma"] == pytest.approx(1.4826 * 0.5)
    assert m["z_sigma"] == pytest.approx(1.4826 * 0.5)  # σ = 1 everywhere: z = r
    assert m["coverage_68"] == pytest.approx(3 / 5)  # |r| ≤ 1: 1, 0, 0.5
    assert m["coverage_95"] == pytest.approx(4 / 5)  # + (−1.5)
    assert m["median_sigma_pred"] == 1.0
    # No per-star σ (XGBoost): z-based entries are None, the rest are numbers.
    mx = label_metrics(pred, truth)
    assert mx["z_sigma"] is None and mx["coverage_68"] is None and mx["sigma"] == m["sigma"]
    with pytest.raises(ValueError, match="same shape"):
        label_metrics(pred[:3], truth)


def test_binned_calibration_separates_bins() -> None:
    rng = np.random.default_rng(3)
    n = 4000
    by = np.r_[np.full(n // 2, 12.0), np.full(n // 2, 16.0)]
    sig = np.ones(n)
    # faint half has residuals twice as wide as predicted
    r = rng.normal(0.0, np.where(by > 14, 2.0, 1.0))
    rows = binned_calibration(r, np.zeros(n), sig, None, by, n_bins=2)
    assert [row["n"] for row in rows] == [n // 2, n // 2]
    assert rows[0]["z_sigma"] == pytest.approx(1.0, rel=0.06)
    assert rows[1]["z_sigma"] == pytest.approx(2.0, rel=0.06)
    assert rows[0]["coverage_68"] > rows[1]["coverage_68"]


def test_fit_scale_recovers_factor() -> None:
    rng = np.random.default_rng(4)
    n = 5000
    sig = rng.uniform(0.5, 2.0, n)
    st = np.full(n, 0.3)
    r = rng.normal(0.0, np.sqrt((1.7 * sig) ** 2 + st**2))
    lc = fit_label_calibration(r, np.zeros(n), sig, st, method="scale")
    assert lc.applied and lc.method == "scale" and lc.b == 0.0
    assert lc.a == pytest.approx(1.7, rel=0.05)
    assert lc.z_sigma_val_cal == pytest.approx(1.0, abs=1e-3)
    assert lc.z_sigma_val_raw == pytest.approx(1.7, rel=0.08)


def test_fit_scale_floor_recovers_a_and_b() -> None:
    rng = np.random.default_rng(5)
    n = 20000
    sig = rng.uniform(0.05, 2.0, n)
    r = rng.normal(0.0, np.sqrt((1.5 * sig) ** 2 + 0.4**2))
    lc = fit_label_calibration(r, np.zeros(n), sig, None, method="scale_floor")
    assert lc.method == "scale_floor"
    assert lc.a == pytest.approx(1.5, rel=0.1)
    assert lc.b == pytest.approx(0.4, rel=0.25)
    assert lc.z_sigma_val_cal == pytest.approx(1.0, abs=1e-3)
    # apply(): by hand
    np.testing.assert_allclose(lc.apply(np.array([1.0])), [math.hypot(lc.a, lc.b)])


def test_fit_policy_auto_leaves_calibrated_labels() -> None:
    rng = np.random.default_rng(6)
    sig = rng.uniform(0.5, 2.0, 3000)
    r = rng.normal(0.0, sig)
    lc = fit_label_calibration(r, np.zeros_like(r), sig)
    assert not lc.applied and lc.a == 1.0 and lc.b == 0.0
    assert 0.9 <= lc.z_sigma_val_raw <= 1.1
    np.testing.assert_array_equal(lc.apply(sig), sig)
    forced = fit_label_calibration(r, np.zeros_like(r), sig, policy="always")
    assert forced.applied and forced.a == pytest.approx(1.0, abs=0.06)
    with pytest.raises(ValueError, match="policy"):
        fit_label_calibration(r, np.zeros_like(r), sig, policy="sometimes")
    with pytest.raises(ValueError, match="method"):
        fit_label_calibration(r, np.zeros_like(r), sig, method="isotonic")


def test_fit_policy_auto_ignores_insignificant_departure() -> None:
    rng = np.random.default_rng(7)
    z = rng.normal(size=60)
    z /= robust_sigma(z)  # exactly unit robust spread
    sig = rng.uniform(0.5, 2.0, 60)
    r = 1.2 * sig * z  # z-spread 1.2: outside 0.9–1.1, but 2 × 1.166/√60 = 0.30 > 0.2
    lc = fit_label_calibration(r, np.zeros_like(r), sig, method="scale")
    assert lc.z_sigma_val_raw == pytest.approx(1.2) and not lc.applied
    big = np.tile(r, 10), np.tile(sig, 10)  # n = 600: 2 × 1.166/√600 = 0.095 < 0.2 → applied
    lc = fit_label_calibration(big[0], np.zeros(600), big[1], method="scale")
    assert lc.applied and lc.a == pytest.approx(1.2, rel=1e-3)


def test_calibration_json_round_trip(tmp_path) -> None:
    cal = Calibration(
        labels={
            "teff": LabelCalibration(a=1.3, b=12.0, applied=True, method="scale_floor", n_val=10, unit="K")
        },
        provenance={"data": "x.parquet"},
    )
    p = cal.save(tmp_path)
    assert p.name == "calibration.json"
    d = json.loads(p.read_text())
    assert d["labels"]["teff"]["a"] == 1.3 and d["formula"].startswith("sigma_cal")
    back = Calibration.load(tmp_path)
    np.testing.assert_allclose(back.apply("teff", np.array([40.0])), [math.hypot(1.3 * 40.0, 12.0)])
    np.testing.assert_array_equal(back.apply("logg", np.array([0.1])), [0.1])  # no entry: identity
    with pytest.raises(FileExistsError):
        cal.save(tmp_path)
