"""Synthetic XP spectra: coefficient inverse vs a real archive source, noise level, correlations."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from _paths import XP_DIR

from xpengine.simulate import xp as X

STAR_DIR = XP_DIR  # bundled real archive products of 5937083312263887616 (tests/data)


def _read_star() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Real archive coefficients (110,), their errors (110,) and the archive XP_SAMPLED flux (343,)."""
    csv.field_size_limit(2**31 - 1)
    with open(STAR_DIR / "XP_CONTINUOUS-Gaia_DR3_5937083312263887616.csv", newline="") as fh:
        row = next(r for r in csv.DictReader(line for line in fh if not line.startswith("#")))

    def arr(key: str) -> np.ndarray:
        return np.array([float(v) for v in row[key].strip("()[]").split(",")])

    coef = np.concatenate([arr("bp_coefficients"), arr("rp_coefficients")])
    err = np.concatenate([arr("bp_coefficient_errors"), arr("rp_coefficient_errors")])
    with open(STAR_DIR / "XP_SAMPLED-Gaia_DR3_5937083312263887616.csv", newline="") as fh:
        flux = np.array(
            [float(r["flux"]) for r in csv.DictReader(line for line in fh if not line.startswith("#"))]
        )
    return coef, err, flux


def test_tikhonov_inverse_recovers_real_archive_coefficients():
    coef, err, flux = _read_star()
    low = np.r_[0:10, 55:65]
    from xpengine.spectra import coefficients_from_sampled, project_coefficients

    X._tikhonov_matrix.cache_clear()
    try:
        c = flux[None, :] @ X._tikhonov_matrix(1e-14)
    finally:
        X._tikhonov_matrix.cache_clear()
    z = (c[0] - coef) / err
    assert np.median(np.abs(z[low])) < 0.3  # measured 0.13 sigma
    # the engine's representation of these coefficients is the representation of the spectrum itself
    pb, pr = project_coefficients(c[:, :55], c[:, 55:])
    sb, sr = coefficients_from_sampled(flux[None, :])
    rel = np.linalg.norm(np.concatenate([pb - sb, pr - sr], 1)) / np.linalg.norm(np.concatenate([sb, sr], 1))
    assert rel < 1e-4
    # the simulator's default (stronger) regularisation: still within ~1 sigma, archive-like high orders
    bp, rp = X.archive_like_coefficients(flux[None, :])
    z = (np.concatenate([bp, rp], 1)[0] - coef) / err
    assert np.median(np.abs(z[low])) < 1.5
    high = np.r_[30:55, 85:110]
    assert np.median(np.abs(np.concatenate([bp, rp], 1)[0][high] / err[high])) < 1.0


def _emulated(n: int, g: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    teff = rng.uniform(4200, 5200, n)
    logg = rng.uniform(1.5, 3.2, n)
    feh = rng.normal(-0.2, 0.3, n)
    alpha = np.clip(rng.normal(0.05, 0.05, n), -0.1, 0.3)
    spec = X.intrinsic_spectra(np.ones(n, np.int8), teff, logg, feh, alpha, rng)
    ebv = rng.uniform(0.02, 0.5, n)
    return X.scale_and_redden(spec, ebv, np.zeros(n), g)  # M_G = 0: distance modulus = G


def test_flux_scale_matches_requested_g_and_extinction_is_positive():
    g = np.linspace(9, 17, 50)
    out = _emulated(50, g)
    # A_G > 0 so the apparent G = M_G + mu + A_G exceeds mu
    assert np.all(out["a_g"] > 0)
    np.testing.assert_allclose(out["g"], g + out["a_g"], atol=1e-9)
    # reddening law: A_BP > A_G > A_RP (Fitzpatrick 1999 through the real passbands)
    assert np.all(out["a_bp"] > out["a_g"]) and np.all(out["a_g"] > out["a_rp"])
    # the written spectrum is exactly what GaiaXPy samples from the coefficients
    from xpengine.spectra import coefficients_to_flux

    f = coefficients_to_flux(out["coefficients"][:, :55], out["coefficients"][:, 55:])
    np.testing.assert_allclose(f, out["flux"], rtol=1e-9, atol=1e-30)


def test_noise_follows_sigma_rel_of_g():
    from xpengine.spectra import flux_errors_from_covariance

    n = 400
    g = np.repeat([10.0, 13.0, 15.0, 17.0], n // 4)
    out = _emulated(n, g - 0.0, seed=3)
    c = out["coefficients"]
    model = X.XPNoiseModel()
    xp = X.add_xp_noise(
        c[:, :55],
        c[:, 55:],
        out["flux"],
        out["g"],
        np.zeros(n),
        np.zeros(n, bool),
        np.random.default_rng(4),
        model,
    )
    corr_bp = np.stack(model.corr_vec["bp"])[xp["bp_corr_level"]]
    corr_rp = np.stack(model.corr_vec["rp"])[xp["rp_corr_level"]]
    fe = flux_errors_from_covariance(
        xp["bp_coefficient_errors"], xp["rp_coefficient_errors"], corr_bp, corr_rp
    )
    wl = np.arange(336, 1021, 2)
    band = (wl >= 400) & (wl <= 1000)
    rel = np.median(fe[:, band] / np.abs(out["flux"][:, band]), axis=1)
    for g0 in (10.0, 13.0, 15.0, 17.0):
        sel = g == g0
        expected = np.median(X.sigma_rel_g(out["g"][sel]))
        assert abs(np.median(rel[sel]) / expected - 1) < 0.1
    # the noise actually drawn has the stated errors: standardised residuals ~ N(0, 1) per coefficient
    z = (xp["rp_coefficients"] - c[:, 55:]) / xp["rp_coefficient_errors"]
    assert 0.9 < np.std(z) < 1.1
    # fainter stars have fewer relevant bases (REFERENCE §1: 3–53 seen)
    nrel = xp["bp_n_relevant_bases"]
    assert np.median(nrel[g == 10.0]) > np.median(nrel[g == 17.0])
    assert nrel.min() >= 3 and nrel.max() <= 55


def test_correlation_templates_are_valid():
    model = X.XPNoiseModel(n_levels=8)
    for b in ("bp", "rp"):
        for R, vec in zip(model.corr[b], model.corr_vec[b], strict=True):
            assert vec.shape == (1485,) and vec.dtype == np.float32
            assert np.all(np.abs(vec) <= 1)
            # strict lower triangle, row-major: (1,0), (2,0), (2,1), ...
            assert vec[0] == np.float32(R[1, 0]) and vec[2] == np.float32(R[2, 1])
            assert np.linalg.eigvalsh(R).min() > 0
    with pytest.raises(ValueError, match="n_levels=0"):
        X.XPNoiseModel(n_levels=0)
