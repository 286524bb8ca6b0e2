"""xpengine.evaluate.binned_calibration and the format-2 `LabelCalibration` (σ map through knots, G factors)."""

from __future__ import annotations

import numpy as np
import pytest

from xpengine.evaluate.binned_calibration import fit_binned_calibration, z_spread_by_bin
from xpengine.evaluate.metrics import robust_sigma
from xpengine.model.calibration import Calibration, LabelCalibration

G_EDGES = (3.0, 12.0, 14.0, 16.0, 21.0)


def _stars(n: int = 40000, seed: int = 2):
    """σ that is too small for small σ and for bright stars and too large for large σ (the errors grow as σ^0.4):
    what a σ scaled by one factor, or with a floor, cannot fix."""
    rng = np.random.default_rng(seed)
    sigma = np.exp(rng.uniform(np.log(0.01), np.log(1.0), n))
    g = rng.uniform(8.0, 17.6, n)
    true_sigma = 0.1 * (sigma / 0.1) ** 0.4 * np.where(g < 13.0, 1.3, 1.0)
    truth = rng.uniform(0.8, 2.5, n)
    return truth + rng.normal(0.0, true_sigma), truth, sigma, g


def test_sigma_map_and_g_factors_give_unit_z_in_sigma_and_g_bins() -> None:
    pred, truth, sigma, g = _stars()
    lc = fit_binned_calibration(pred[::2], truth[::2], sigma[::2], g[::2], g_edges=G_EDGES)
    assert lc.applied and lc.method == "sigma_binned+g"
    hold = slice(1, None, 2)  # fitted on half the stars, checked on the other half
    cal = lc.apply(sigma[hold], g[hold])
    r = (pred - truth)[hold]
    for lo, hi in [(0.01, 0.03), (0.03, 0.05), (0.08, 0.3), (0.3, 1.0)]:
        sel = (sigma[hold] >= lo) & (sigma[hold] < hi)
        assert robust_sigma(r[sel] / cal[sel]) == pytest.approx(1.0, abs=0.12), (lo, hi)
    for b in z_spread_by_bin(pred[hold], truth[hold], cal, g[hold], [6, 13, 15, 17.65]):
        assert b["z_spread"] == pytest.approx(1.0, abs=0.08), b
    # one scale factor cannot do this: the raw z-spread differs by a factor > 3 between σ bins
    raw_small = robust_sigma(r[sigma[hold] < 0.03] / sigma[hold][sigma[hold] < 0.03])
    raw_mid = robust_sigma(r[sigma[hold] > 0.3] / sigma[hold][sigma[hold] > 0.3])
    assert raw_small / raw_mid > 3.0


def test_apply_raw_roundtrip_monotone_and_json(tmp_path) -> None:
    lc = LabelCalibration(
        applied=True,
        method="sigma_binned+g",
        sigma_knots=(0.02, 0.1, 0.5),
        sigma_cal_knots=(0.05, 0.12, 0.6),
        g_edges=(3.0, 13.0, 21.0),
        g_scales=(1.2, 1.0),
    )
    s = np.array([0.005, 0.02, 0.05, 0.3, 0.5, 2.0, np.nan])
    g = np.array([10.0, 14.0, np.nan, 25.0, 1.0, 16.0, 12.0])
    out = lc.apply(s, g)
    np.testing.assert_allclose(lc.raw(out, g), s, rtol=1e-12)
    assert np.isnan(out[-1])
    # end knots: proportional; G factor: 1.2 below G 13 (and for G below the first edge), none for NaN G
    assert out[0] == pytest.approx(0.005 * 0.05 / 0.02 * 1.2)
    assert out[2] == pytest.approx(np.exp(np.interp(np.log(0.05), np.log([0.02, 0.1]), np.log([0.05, 0.12]))))
    assert out[5] == pytest.approx(2.0 * 0.6 / 0.5)
    assert out[4] == pytest.approx(0.6 * 1.2)
    grid = np.linspace(0.001, 3.0, 500)
    assert np.all(np.diff(lc.apply(grid)) > 0)  # a larger σ never gets a smaller calibrated σ
    Calibration(labels={"mass": lc}).save(tmp_path / "c.json")
    back = Calibration.load(tmp_path / "c.json")
    assert back.labels["mass"] == lc
    np.testing.assert_array_equal(back.apply("mass", s, g), out)


def test_format_1_files_still_load_and_bad_knots_are_refused(tmp_path) -> None:
    (tmp_path / "v1.json").write_text(
        '{"format_version": "1", "labels": {"teff": {"a": 2.0, "b": 0.0, "applied": true}}, "provenance": {}}'
    )
    c = Calibration.load(tmp_path / "v1.json")
    np.testing.assert_allclose(c.apply("teff", np.array([10.0]), g=np.array([12.0])), [20.0])
    with pytest.raises(ValueError, match="strictly increasing"):
        LabelCalibration(sigma_knots=(0.1, 0.1), sigma_cal_knots=(0.1, 0.2))
    with pytest.raises(ValueError, match="one more entry"):
        LabelCalibration(g_edges=(1.0, 2.0), g_scales=(1.0, 1.0))
    with pytest.raises(ValueError, match="usable stars"):
        fit_binned_calibration(np.zeros(10), np.zeros(10), np.ones(10))


def test_g_bin_shift_inverse_json_and_format(tmp_path) -> None:
    edges, ones = (3.0, 12.0, 15.0, 21.0), (1.0, 1.0, 1.0)
    lc = LabelCalibration(
        applied=True, g_edges=edges, g_scales=ones, g_shifts=(0.1, 0.0, -0.2), shift_kind="log"
    )
    mu, g = np.array([1.0, 2.0, 3.0, 4.0]), np.array([10.0, 13.0, 16.0, np.nan])
    out = lc.shift(mu, g)
    np.testing.assert_allclose(out, mu * np.exp([0.1, 0.0, -0.2, 0.0]))
    np.testing.assert_allclose(lc.shift(out, g, inverse=True), mu)
    np.testing.assert_allclose(lc.shift(mu, None), mu)  # G unknown: unchanged
    add = LabelCalibration(applied=True, g_edges=edges, g_scales=ones, g_shifts=(0.1, 0.0, -0.2))
    np.testing.assert_allclose(
        add.shift(mu, np.array([1.0, 13.0, 30.0, 14.0])), mu + np.array([0.1, 0.0, -0.2, 0.0])
    )
    cal = Calibration(labels={"mass": lc, "teff": LabelCalibration(a=2.0, applied=True)})
    cal.save(tmp_path / "c.json")
    again = Calibration.load(tmp_path / "c.json")
    assert again.labels == cal.labels and again.to_dict()["format_version"] == "3"
    assert (
        Calibration(labels={"teff": LabelCalibration(a=2.0, applied=True)}).to_dict()["format_version"] == "2"
    )
    with pytest.raises(ValueError, match="g_shifts needs g_edges"):
        LabelCalibration(applied=True, g_shifts=(0.1,))
    with pytest.raises(ValueError, match="shift_kind"):
        LabelCalibration(
            applied=True, g_edges=edges, g_scales=ones, g_shifts=(0.1, 0.0, 0.0), shift_kind="mul"
        )


def test_many_equal_sigma_leave_no_bin_empty() -> None:
    """A third of the stars sharing one σ (a model's σ floor) made quantile edges coincide: an empty bin
    gave NaN knots and a NaN σ map, while the fit's own z-spread looked fine. Bins are equal-count by rank
    now, and non-finite knots are refused."""
    rng = np.random.default_rng(5)
    sigma = np.exp(rng.uniform(np.log(0.05), np.log(0.2), 6000))
    sigma[:2000] = 0.1
    truth = rng.uniform(0.8, 2.5, sigma.size)
    pred = truth + rng.normal(0.0, 1.5 * sigma)
    lc = fit_binned_calibration(pred, truth, sigma)
    assert np.all(np.isfinite(lc.sigma_knots)) and np.all(np.isfinite(lc.sigma_cal_knots))
    np.testing.assert_allclose(
        lc.apply(np.array([0.06, 0.1, 0.18])), 1.5 * np.array([0.06, 0.1, 0.18]), rtol=0.15
    )
    with pytest.raises(ValueError, match="finite"):
        LabelCalibration(applied=True, sigma_knots=(0.1, float("nan")), sigma_cal_knots=(0.1, 0.2))
    with pytest.raises(ValueError, match="finite"):
        LabelCalibration(applied=True, a=1.0, g_edges=(10.0, 12.0), g_scales=(float("nan"),))


def test_a_floor_keeps_the_first_knots_sigma_below_it_and_old_files_stay_proportional():
    """Session 34: below the first knot a fitted map gives the first knot's σ_cal (`floor`), as new fits
    do; a file without `floor` keeps the proportional rule it was written with."""
    import json

    from xpengine.model.calibration import Calibration, LabelCalibration

    knots = {"sigma_knots": (0.01, 0.1), "sigma_cal_knots": (0.05, 0.2)}
    floored = LabelCalibration(applied=True, floor=True, **knots)
    old = LabelCalibration(applied=True, **knots)
    s = np.array([0.001, 0.01, 0.05, 0.2, np.nan])
    np.testing.assert_allclose(floored.apply(s), [0.05, 0.05, old.apply(s)[2], 0.4, np.nan])
    np.testing.assert_allclose(old.apply(s)[:2], [0.005, 0.05])
    np.testing.assert_allclose(floored.raw(floored.apply(s)), [0.01, 0.01, 0.05, 0.2, np.nan])
    d = Calibration(labels={"mass": floored, "teff": old}).to_dict()
    assert d["format_version"] == "7" and d["labels"]["mass"]["floor"] is True
    assert "floor" not in d["labels"]["teff"]
    assert Calibration.from_dict(json.loads(json.dumps(d))).labels["mass"] == floored
    rng = np.random.default_rng(3)
    sig = rng.uniform(0.01, 1.0, 2000)
    fitted = fit_binned_calibration(rng.normal(0, sig), np.zeros(2000), sig)
    assert fitted.floor
