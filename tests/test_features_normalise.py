"""G-flux normalisation (xpengine.features.normalise) against hand values and real gaia_source rows."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from _paths import GAIA_SOURCE_DIR

from xpengine.features.normalise import g_flux_from_columns, g_mag_to_flux, normalise_by_g_flux

GAIA_DIR = GAIA_SOURCE_DIR  # bundled real gaia_source rows (tests/data)


def test_g_mag_to_flux_hand_values() -> None:
    # 10**((25.6873668671 - 15) / 2.5) computed with 30-digit decimal arithmetic
    assert g_mag_to_flux(15.0) == pytest.approx(18834.1813072620, rel=1e-13)
    # G = ZP gives exactly 1 e-/s; 2.5 mag fainter is 10x less flux
    np.testing.assert_allclose(
        g_mag_to_flux(np.array([25.6873668671, 28.1873668671])), [1.0, 0.1], rtol=1e-13
    )
    assert np.isnan(g_mag_to_flux(np.array([np.nan])))[0]


@pytest.mark.parametrize("name", ["1712337806100O-result.ecsv", "1710099405832VAL-result.vot"])
def test_g_mag_to_flux_matches_archive_flux(name: str) -> None:
    """Real DR3 rows hold both phot_g_mean_mag (float32) and phot_g_mean_flux (float64)."""
    from astropy.table import Table

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = Table.read(GAIA_DIR / name)
    mag = np.asarray(t["phot_g_mean_mag"], dtype=np.float64)
    flux = np.asarray(t["phot_g_mean_flux"], dtype=np.float64)
    # float32 magnitudes carry ~1e-6 relative flux precision
    np.testing.assert_allclose(g_mag_to_flux(mag), flux, rtol=3e-6)


def test_g_flux_from_columns_prefers_flux_and_falls_back_to_mag() -> None:
    mag = np.array([15.0, 15.0, np.nan, np.nan])
    flux = np.array([20000.0, np.nan, 5.0, -1.0])
    out = g_flux_from_columns(mag, flux)
    np.testing.assert_allclose(out[:3], [20000.0, 18834.181307262, 5.0], rtol=1e-12)
    assert np.isnan(out[3])
    np.testing.assert_allclose(g_flux_from_columns(mag[:2]), [18834.181307262] * 2, rtol=1e-12)
    with pytest.raises(ValueError, match="phot_g_mean_mag or phot_g_mean_flux"):
        g_flux_from_columns()


def test_normalise_by_g_flux() -> None:
    values = np.array([[100.0, -50.0], [3.0, 6.0], [1.0, 1.0]])
    errors = np.array([[1.0, 2.0], [0.3, 0.6], [0.1, 0.1]])
    v, e = normalise_by_g_flux(values, errors, np.array([100.0, 3.0, 0.0]))
    np.testing.assert_allclose(v[:2], [[1.0, -0.5], [1.0, 2.0]])
    np.testing.assert_allclose(e[:2], [[0.01, 0.02], [0.1, 0.2]])
    assert np.isnan(v[2]).all() and np.isnan(e[2]).all()  # zero flux: undefined, not inf


def test_normalise_by_g_flux_shape_errors() -> None:
    with pytest.raises(ValueError, match=r"g_flux must have shape \(2,\)"):
        normalise_by_g_flux(np.ones((2, 3)), np.ones((2, 3)), np.ones(3))
    with pytest.raises(ValueError, match="must both be"):
        normalise_by_g_flux(np.ones((2, 3)), np.ones((2, 2)), np.ones(2))
