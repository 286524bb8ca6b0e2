"""Colour tokens and their errors (xpengine.features.colours), hand-computed references."""

from __future__ import annotations

import math

import numpy as np
import pytest

from xpengine.features.colours import (
    bp_rp_colour,
    clean_2mass_photometry,
    flux_over_error_to_mag_error,
    gaia_mag_error,
    tmass_colours,
)

S = 2.5 / math.log(10.0)  # 1.0857362047581294


def test_flux_over_error_to_mag_error() -> None:
    out = flux_over_error_to_mag_error(np.array([100.0, 200.0, 0.0, np.nan, -5.0]))
    np.testing.assert_allclose(out[:2], [0.010857362047581294, 0.005428681023790647], rtol=1e-14)
    assert np.isnan(out[2:]).all()


def test_gaia_mag_error_adds_zero_point_in_quadrature() -> None:
    np.testing.assert_allclose(
        gaia_mag_error(np.array([100.0]), 0.0027901700), [math.hypot(S / 100, 0.0027901700)], rtol=1e-14
    )


def test_bp_rp_colour_hand_values() -> None:
    value, error = bp_rp_colour(
        np.array([12.5, 12.5, np.nan, 11.0]),
        np.array([11.3, 11.3, np.nan, 10.0]),
        np.array([100.0, np.nan, 100.0, 100.0]),
        np.array([200.0, 200.0, 200.0, 200.0]),
        bp_rp=np.array([9.0, 9.0, 0.8, np.nan]),
    )
    # mags win over bp_rp; bp_rp fills in where a magnitude is missing
    np.testing.assert_allclose(value, [1.2, 1.2, 0.8, 1.0], rtol=1e-12)
    # sqrt((S/100)^2 + 0.00279017^2 + (S/200)^2 + 0.0037793818^2), computed by hand
    np.testing.assert_allclose(error[[0, 2, 3]], 0.01301620773149363, rtol=1e-12)
    assert np.isnan(error[1])  # BP flux-over-error unknown: error unknown


def test_bp_rp_colour_needs_an_input() -> None:
    with pytest.raises(ValueError, match="no input"):
        bp_rp_colour(None, None, None, None)


def test_clean_2mass_photometry() -> None:
    m, e = clean_2mass_photometry(
        np.array([10.0, 99.999, 99.0, np.nan, 11.0, 12.0]), np.array([0.02, 0.02, 0.02, 0.02, np.nan, 99.999])
    )
    np.testing.assert_allclose(m[0], 10.0)
    assert np.isnan(m[1:]).all()  # missing magnitudes and upper limits (no msigcom)
    m, e = clean_2mass_photometry(np.array([11.0]), np.array([np.nan]), require_error=False)
    assert m[0] == 11.0 and np.isnan(e[0])


def test_tmass_colours_hand_values() -> None:
    jh, jh_err, jk, jk_err = tmass_colours(
        np.array([10.0, 10.0, 99.999]),
        np.array([0.02, 0.02, 0.02]),
        np.array([9.5, np.nan, 9.5]),
        np.array([0.03, 0.03, 0.03]),
        np.array([9.3, 9.3, 9.3]),
        np.array([0.025, 0.025, 0.025]),
    )
    np.testing.assert_allclose([jh[0], jk[0], jk[1]], [0.5, 0.7, 0.7], rtol=1e-12)
    np.testing.assert_allclose(
        [jh_err[0], jk_err[0], jk_err[1]],
        [0.03605551275463989, 0.032015621187164243, 0.032015621187164243],
        rtol=1e-12,
    )
    assert np.isnan(jh[1]) and np.isnan(jh_err[1])  # no H
    assert np.isnan([jh[2], jk[2], jh_err[2], jk_err[2]]).all()  # J = 99.999
