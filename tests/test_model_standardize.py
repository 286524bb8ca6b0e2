"""Robust per-token standardisation (nanmedian, 1.4826·MAD), checked by hand and against astropy."""

from __future__ import annotations

import json

import numpy as np
import pytest

from xpengine.model.standardize import Standardization, robust_sigma


def test_hand_values_guards_and_errors():
    values = np.array(
        [
            [1.0, 5.0, np.nan, 10.0],
            [2.0, 5.0, np.nan, np.nan],
            [3.0, 5.0, np.nan, 30.0],
            [10.0, 5.0, np.nan, 20.0],
            [np.nan, 5.0, np.nan, 40.0],
        ]
    )
    s = Standardization.fit(values, ["a", "b", "c", "d"])
    # a: median of 1,2,3,10 = 2.5; |dev| = 1.5,0.5,0.5,7.5 → MAD 1.0 → scale 1.4826
    # b: constant → scale guarded to 1; c: empty → centre 0, scale 1
    # d: median of 10,20,30,40 = 25; |dev| 15,5,5,15 → MAD 10 → 14.826
    np.testing.assert_allclose(s.center, [2.5, 5.0, 0.0, 25.0])
    np.testing.assert_allclose(s.scale, [1.4826, 1.0, 1.0, 14.826])
    z, ze = s.transform(values, np.full(values.shape, 2.0))
    np.testing.assert_allclose(z[0], [(1 - 2.5) / 1.4826, 0.0, np.nan, (10 - 25) / 14.826], rtol=1e-6)
    np.testing.assert_allclose(ze[0], [2 / 1.4826, 2.0, 2.0, 2 / 14.826], rtol=1e-6)
    assert z.dtype == np.float32 and np.isnan(z[1, 3])
    back, sig = s.inverse(z[:, [0, 3]], ze[:, [0, 3]], columns=[0, 3])
    np.testing.assert_allclose(back, values[:, [0, 3]], rtol=1e-6)
    np.testing.assert_allclose(sig, 2.0, rtol=1e-6)


def test_matches_astropy_mad_std():
    astropy_stats = pytest.importorskip("astropy.stats")
    rng = np.random.default_rng(3)
    x = rng.standard_t(3, size=(500, 6)) * [1, 2, 3, 4, 5, 6]
    x[rng.random(x.shape) < 0.1] = np.nan
    s = Standardization.fit(x, list("abcdef"))
    ref = astropy_stats.mad_std(x, axis=0, ignore_nan=True)
    np.testing.assert_allclose(s.scale, ref, rtol=2e-5)  # 1.4826 vs astropy's exact 1/Φ⁻¹(3/4)
    np.testing.assert_allclose(robust_sigma(x[:, 0]), ref[0], rtol=2e-5)


def test_json_round_trip_is_exact():
    rng = np.random.default_rng(0)
    s = Standardization.fit(rng.normal(size=(50, 3)) * 1e-5, ["x", "y", "z"])
    s2 = Standardization.from_dict(json.loads(s.to_json()))
    assert s2.names == s.names
    assert np.array_equal(s2.center, s.center) and np.array_equal(s2.scale, s.scale)


def test_invalid_inputs_are_reported():
    with pytest.raises(ValueError, match=r"values must be \(N, 2\)"):
        Standardization.fit(np.zeros((3, 3)), ["a", "b"])
    with pytest.raises(ValueError, match="bad tokens: \\['b'\\]"):
        Standardization(names=("a", "b"), center=np.zeros(2), scale=np.array([1.0, 0.0]))
