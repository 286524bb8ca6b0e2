"""Generative/probing tasks without a trained model: the RMSE of paper Eq. 3, the extinction-curve
procedure of Eq. 5 on spectra reddened by a known law, the F99 R_V fit, unit conversions, the ridge
regression of Fig. 18, and the reconstruction/inpainting pipelines driven by an oracle predictor that
returns the stars' own tokens (RMSE must then be exactly 0)."""

from __future__ import annotations

import numpy as np
import pytest

from xpengine.features.vocabulary import PAPER_VOCABULARY
from xpengine.spectra import coefficients_to_flux, default_sampling
from xpengine.tasks.common import absolute_flux_10pc, labels_to_values, tokens_to_flux
from xpengine.tasks.data import StarSet
from xpengine.tasks.extinction import (
    extinction_curve,
    fit_rv,
    fitzpatrick99_curve,
    paper_rgb_teff,
    rgb_teff,
    summarise_curves,
)
from xpengine.tasks.probing import colour_regression
from xpengine.tasks.reconstruction import (
    inpaint,
    percentile_indices,
    reconstruct_from_labels,
    spectral_rmse,
)

WL = np.arange(336.0, 1020.1, 2.0)  # GaiaXPy default grid [nm]


# --- Eq. 3 ---------------------------------------------------------------------------------------------


def test_rmse_perfect_reconstruction_is_zero() -> None:
    obs = np.abs(np.random.default_rng(0).normal(1.0, 0.3, (4, WL.size))) + 0.1
    assert np.array_equal(spectral_rmse(obs, obs), np.zeros(4))
    assert np.array_equal(spectral_rmse(obs, obs, relative=False), np.zeros(4))


def test_rmse_hand_values() -> None:
    obs = np.full((2, 10), 2.0)
    gen = obs.copy()
    gen[0] += 0.1  # every pixel off by 0.1: RMSE 0.1, relative 0.1/2
    gen[1, :5] += np.array([0.3, -0.3, 0.3, -0.3, 0.3])  # half the pixels off by 0.3: sqrt(5·0.09/10)
    np.testing.assert_allclose(spectral_rmse(gen, obs, relative=False), [0.1, np.sqrt(0.045)], rtol=1e-12)
    np.testing.assert_allclose(spectral_rmse(gen, obs), [0.05, np.sqrt(0.045) / 2.0], rtol=1e-12)
    # only the first 5 pixels scored: star 0 unchanged, star 1 now 0.3 everywhere scored
    px = np.arange(10) < 5
    np.testing.assert_allclose(spectral_rmse(gen, obs, pixels=px, relative=False), [0.1, 0.3], rtol=1e-12)


def test_rmse_ignores_non_finite_pixels_and_flags_empty_rows() -> None:
    obs = np.array([[1.0, 2.0, np.nan, 4.0], [np.nan] * 4])
    gen = np.array([[1.5, 2.0, 100.0, np.nan], [1.0] * 4])
    r = spectral_rmse(gen, obs, relative=False)
    assert r[0] == pytest.approx(np.sqrt(0.25 / 2)) and np.isnan(r[1])
    with pytest.raises(ValueError, match=r"same \(N, W\) shape"):
        spectral_rmse(gen[:, :3], obs)
    with pytest.raises(ValueError, match=r"\(4,\) bool mask"):
        spectral_rmse(gen, obs, pixels=np.ones(3, bool))


def test_percentile_indices_pick_the_nearest_star() -> None:
    r = np.array([5.0, 1.0, np.nan, 3.0, 2.0, 4.0])
    idx = percentile_indices(r, (0, 50, 100))
    assert idx.tolist() == [1, 3, 0]
    assert percentile_indices(np.full(3, np.nan), (5, 50)).tolist() == [-1, -1]


# --- Eq. 5 and the F99 fit -------------------------------------------------------------------------------


def _stellar_spectra(n: int, seed: int = 1) -> np.ndarray:
    """Positive smooth spectra (N, W): Planck curves 3800–5500 K with a random slow modulation."""
    rng = np.random.default_rng(seed)
    teff = rng.uniform(3800, 5500, n)
    lam_m = WL * 1e-9
    planck = 1.0 / (lam_m**5 * np.expm1(1.4388e-2 / (lam_m[None, :] * teff[:, None])))
    wiggle = 1.0 + 0.1 * np.sin(WL[None, :] / rng.uniform(20, 60, (n, 1)))
    return planck / planck.max(axis=1, keepdims=True) * wiggle


@pytest.mark.parametrize("r_v", [3.1, 2.5])
def test_extinction_curve_recovers_fitzpatrick(r_v: float) -> None:
    f0 = _stellar_spectra(16)
    ebv_ref = 0.01
    curves = []
    for e in (0.4, 0.8, 1.2):
        # both spectra reddened by F99 (A_V = R_V·E), as a model's reference at E_ref and at E would be
        f_ref = f0 * 10 ** (-0.4 * fitzpatrick99_curve(WL, r_v) * ebv_ref)
        f_ext = f0 * 10 ** (-0.4 * fitzpatrick99_curve(WL, r_v) * e)
        curves.append(extinction_curve(f_ref, f_ext, e, ebv_ref))
    median, std = summarise_curves(np.concatenate(curves))
    np.testing.assert_allclose(median, fitzpatrick99_curve(WL, r_v), atol=1e-9)
    assert np.max(std) < 1e-9
    # A(V)/E(B−V) ≈ R_V at V (F99 is normalised to broad-band V: monochromatic 550 nm is ~0.07 lower)
    assert median[np.argmin(np.abs(WL - 550.0))] == pytest.approx(r_v, abs=0.1)
    fit = fit_rv(WL, median)
    assert fit.r_v == pytest.approx(r_v, abs=0.1)
    assert fit.r_v == pytest.approx(r_v, abs=1e-3)  # noiseless: essentially exact
    assert fit.offset == 0.0 and fit.n == WL.size and not fit.at_edge
    assert fit_rv(WL, np.zeros(WL.size)).at_edge  # no extinction at all: R_V runs to the lower edge


def test_extinction_curve_hand_law_and_sfd_scale() -> None:
    """A hand-made law A(λ)/E = 1 + 1000/λ[nm]: the curve is recovered exactly, the SFD factor divides it."""
    f0 = _stellar_spectra(3)
    law = 1.0 + 1000.0 / WL
    e = np.array([0.3, 0.6, 0.9])
    fe = f0 * 10 ** (-0.4 * law[None, :] * e[:, None])
    np.testing.assert_allclose(extinction_curve(f0, fe, e), np.broadcast_to(law, f0.shape), rtol=1e-12)
    np.testing.assert_allclose(extinction_curve(f0, fe, e, ebv_scale=0.884), law / 0.884 + 0 * f0, rtol=1e-12)


def test_extinction_curve_errors() -> None:
    f = _stellar_spectra(2)
    with pytest.raises(ValueError, match="must be > 0 for every pair"):
        extinction_curve(f, f, 0.01, 0.01)
    with pytest.raises(ValueError, match="same"):
        extinction_curve(f, f[:, :10], 0.5)
    bad = f.copy()
    bad[0, 0] = -1.0
    assert np.isnan(extinction_curve(f, bad, 0.5)[0, 0])


def test_extinction_grid_stays_inside_the_data() -> None:
    from xpengine.tasks.runner import extinction_grid_from_data

    rng = np.random.default_rng(2)
    wide = np.log(rng.uniform(0.005, 2.0, 500))  # covers the paper's grid: unchanged
    assert extinction_grid_from_data(wide) == {
        "ebv": [0.4, 0.8, 1.2],
        "ebv_ref": pytest.approx(0.1, abs=0.05),
    }
    narrow = np.log(np.linspace(0.02, 0.5, 101))  # like the simulated sky: E(B−V) ≤ 0.5
    g = extinction_grid_from_data(narrow)
    assert g["ebv_ref"] == pytest.approx(0.044) and g["ebv"] == pytest.approx(
        [0.26, 0.38, 0.495]
    )  # p50, p75, p99 (3 decimals)
    few = extinction_grid_from_data(np.log([0.1, 0.2]))
    assert few == {"ebv": [0.4, 0.8, 1.2], "ebv_ref": 0.01}


def test_fit_rv_with_offset_and_noise() -> None:
    rng = np.random.default_rng(3)
    curve = fitzpatrick99_curve(WL, 3.4) - 2.5 + rng.normal(0, 0.02, WL.size)  # relative to G: shifted
    fit = fit_rv(WL, curve, offset=True)
    assert fit.r_v == pytest.approx(3.4, abs=0.1)
    assert fit.offset == pytest.approx(-2.5, abs=0.05)
    assert fit.rms == pytest.approx(0.02, rel=0.2)
    with pytest.raises(ValueError, match="need at least 3"):
        fit_rv(WL, np.full(WL.size, np.nan))


def test_rgb_teff_relations() -> None:
    assert rgb_teff(2.5, 0.0, 1.0) == pytest.approx(4593.0)
    # REFERENCE §7 terms by hand at logg 1.5, [Fe/H] −0.5, 1.2 M☉
    y, z = -1.0, -0.5
    hand = 4593 + 465 * y - 411 * z + 455 * np.log10(1.2) - 48 * y**2 - 2.3 * z**2 + 29 * z * y
    assert rgb_teff(1.5, -0.5, 1.2) == pytest.approx(hand)
    assert paper_rgb_teff(2.5) == pytest.approx(5200 - 441.86 * 1.15)


# --- units -----------------------------------------------------------------------------------------------


def test_labels_to_values_converts_units() -> None:
    v, given = labels_to_values(
        {"teff": 4700.0, "age": [2.0, 8.0], "ebv": 0.5, "abs_g": 0.45}, PAPER_VOCABULARY
    )
    assert v.shape == (2, len(PAPER_VOCABULARY)) and v.dtype == np.float32
    assert given == ["teff", "ln_age", "logebv", "g_fakemag"]
    col = PAPER_VOCABULARY.index
    np.testing.assert_allclose(v[:, col("ln_age")], np.log([2.0, 8.0]), rtol=1e-6)
    np.testing.assert_allclose(v[:, col("logebv")], np.log(0.5), rtol=1e-6)
    np.testing.assert_allclose(v[:, col("g_fakemag")], 10 ** (0.2 * 0.45 + 2), rtol=1e-6)
    assert np.isnan(v[:, col("logg")]).all()
    with pytest.raises(ValueError, match=r"unknown labels \['tef'\]"):
        labels_to_values({"tef": 4000.0}, PAPER_VOCABULARY)
    with pytest.raises(ValueError, match="must be > 0"):
        labels_to_values({"age": [-1.0]}, PAPER_VOCABULARY)
    with pytest.raises(ValueError, match="given twice"):
        labels_to_values({"age": 1.0, "ln_age": 0.0}, PAPER_VOCABULARY)
    with pytest.raises(ValueError, match="expected 1 or 3"):
        labels_to_values({"teff": [1.0, 2.0, 3.0], "logg": [1.0, 2.0]}, PAPER_VOCABULARY)


def test_absolute_flux_at_10pc() -> None:
    """fakemag = 100 ⇔ M_G = 0: the flux is scaled by the G flux of a G = 0 star, 10^(25.687/2.5) e⁻/s."""
    flux = np.ones((3, 4))
    fakemag = np.array([100.0, 10 ** (0.2 * 5.0 + 2), -1.0])
    f10, mg = absolute_flux_10pc(flux, fakemag)
    np.testing.assert_allclose(mg[:2], [0.0, 5.0], atol=1e-12)
    np.testing.assert_allclose(f10[0], 10 ** (25.6873668671 / 2.5), rtol=1e-12)
    np.testing.assert_allclose(f10[1], 10 ** ((25.6873668671 - 5.0) / 2.5), rtol=1e-12)
    assert np.isnan(f10[2]).all() and np.isnan(mg[2])


def test_tokens_to_flux_truncates_nan_coefficients() -> None:
    rng = np.random.default_rng(4)
    c = rng.normal(0, 1, (2, 110))
    c[0, 20:55] = np.nan  # BP relevant up to 20
    c[1, 55:] = np.nan  # RP missing
    f = tokens_to_flux(c, PAPER_VOCABULARY)
    s = default_sampling()
    ref0 = coefficients_to_flux(c[:1, :55], c[:1, 55:], truncate_bp=20)
    np.testing.assert_allclose(f[0], ref0[0], rtol=1e-12)
    ref1 = coefficients_to_flux(c[1:, :55], None)
    np.testing.assert_array_equal(np.isnan(f[1]), np.isnan(ref1[0]))
    assert np.isnan(f[1][s.wavelength_nm > 700]).all()


# --- Fig. 18 regression ----------------------------------------------------------------------------------


def test_colour_regression_recovers_linear_target() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(0, 1, (600, 16))
    y = x @ rng.normal(0, 0.3, 16) + 1.2 + rng.normal(0, 0.02, 600)
    x[3] = np.nan  # a star without embedding is left out
    fit = colour_regression(x, y, name="bprp", seed=1)
    assert fit.n_train + fit.n_test == 599
    assert fit.r2 > 0.99
    assert fit.residual_sigma == pytest.approx(0.02, rel=0.25)
    assert abs(fit.bias) < 0.01
    with pytest.raises(ValueError, match="need at least 10"):
        colour_regression(x[:5], y[:5])


# --- pipelines with an oracle predictor -----------------------------------------------------------------


class _Oracle:
    """Answers every request with the stars' own token values (σ = 0): a perfect model."""

    vocabulary = PAPER_VOCABULARY

    def __init__(self, values: np.ndarray, scale: float = 1.0) -> None:
        self.values = values
        self.scale = scale

    def predict(self, values, errors=None, request=None, *, inputs=None, batch_size=None):
        out = {}
        for r in request:
            v = self.values[:, self.vocabulary.index(r)].astype(np.float64)
            out[r] = v * (self.scale if r[:2] in ("bp", "rp") else 1.0)
            out[f"{r}_error"] = np.zeros_like(v)
        return out


def _stars(n: int = 12) -> StarSet:
    rng = np.random.default_rng(6)
    v = np.full((n, len(PAPER_VOCABULARY)), np.nan, dtype=np.float32)
    # G-normalised XP tokens: positive leading coefficients, decaying higher orders; relevancy cuts
    scale = np.r_[np.exp(-np.arange(55) / 6.0), np.exp(-np.arange(55) / 6.0)]
    v[:, :110] = (rng.normal(0, 0.05, (n, 110)) * scale + np.r_[0.4, np.zeros(54), 0.6, np.zeros(54)]).astype(
        np.float32
    )
    v[0, 40:55] = np.nan
    idx = PAPER_VOCABULARY.index
    v[:, idx("teff")] = rng.uniform(4000, 5000, n)
    v[:, idx("logg")] = rng.uniform(1, 3, n)
    v[:, idx("g_fakemag")] = rng.uniform(50, 200, n)
    errors = np.zeros_like(v)
    errors[:, idx("g_fakemag")] = 5.0
    return StarSet(np.arange(n, dtype=np.int64), v, errors, PAPER_VOCABULARY, np.full(n, 12.0))


def test_reconstruction_with_a_perfect_model_has_zero_rmse() -> None:
    stars = _stars()
    rec = reconstruct_from_labels(_Oracle(stars.values), stars)
    assert rec.observed.shape == (12, 343)
    np.testing.assert_allclose(rec.rmse, 0.0, atol=1e-12)  # rounding differs by CPU
    assert rec.inputs == ["teff", "logg", "m_h", "logebv", "mass", "ln_age"]
    assert rec.n_inputs.tolist() == [2] * 12
    # the model distance from its own pseudo-luminosity is the Gaia distance
    np.testing.assert_allclose(rec.extras["nn_distance_pc"], rec.extras["distance_pc"], rtol=1e-6)
    np.testing.assert_allclose(rec.extras["parallax_snr"], stars.column("g_fakemag") / 5.0, rtol=1e-6)
    s = rec.summary()
    assert abs(s["rmse"]["median"]) < 1e-12 and s["n_scored"] == 12
    assert s["nn_distance"]["median_fractional_difference"] == pytest.approx(0.0, abs=1e-6)
    assert sum(s["rmse_by_distance_pc"]["n"]) == 12 and len(s["rmse_by_teff"]["median_rmse"]) == 4


def test_reconstruction_of_a_scaled_spectrum_gives_the_hand_rmse() -> None:
    """Coefficients 10% too large ⇒ F_gen = 1.1 F_obs ⇒ RMSE = 0.1·rms(F_obs)/mean(F_obs)."""
    stars = _stars()
    rec = reconstruct_from_labels(_Oracle(stars.values, scale=1.1), stars)
    c = stars.xp()
    obs = coefficients_to_flux(np.nan_to_num(c[:, :55]), np.nan_to_num(c[:, 55:]))
    hand = 0.1 * np.sqrt(np.mean(obs**2, axis=1)) / np.mean(obs, axis=1)
    np.testing.assert_allclose(rec.rmse, hand, rtol=1e-9)
    np.testing.assert_allclose(rec.fractional_residuals()[rec.observed > 0], 0.1, rtol=1e-9)


def test_inpainting_with_a_perfect_model() -> None:
    stars = _stars()
    for direction, side in (("rp_to_bp", WL < 640), ("bp_to_rp", WL >= 640)):
        rec = inpaint(_Oracle(stars.values), stars, direction)
        np.testing.assert_allclose(rec.rmse, 0.0, atol=1e-12)  # rounding differs by CPU
        np.testing.assert_array_equal(rec.pixels, side)
        assert len(rec.inputs) == 55
    rec = inpaint(_Oracle(stars.values, scale=1.1), stars, "bp_to_rp")
    # only the predicted RP side is scored, and there the RP part is 10% off
    assert np.all(rec.rmse > 0.05)
    with pytest.raises(ValueError, match="direction must be"):
        inpaint(_Oracle(stars.values), stars, "bp_to_bp")
