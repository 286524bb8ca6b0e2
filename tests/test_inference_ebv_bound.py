"""The colour bound on E(B−V) (`xpengine.inference.ebv_bound`): the largest E(B−V) a star's observed BP−RP
allows at its Teff, logg and [M/H], and the catalogue's E(B−V) held to it (flag EBV_COLOUR_BOUND)."""

from __future__ import annotations

import numpy as np
import pytest

from xpengine.catalog.flag_policy import DEFAULT_FLAG_POLICY
from xpengine.features.flags import SourceFlag, has_flag
from xpengine.inference.catalogue_isochrones import bound_model_ebv
from xpengine.inference.ebv_bound import bluest_colour, bound_ebv, colour_ebv_bound, colour_ebv_max
from xpengine.inference.isochrone_fit import load_fit_grid


@pytest.fixture(scope="module")
def grid():
    return load_fit_grid()


def test_the_bluest_colour_follows_teff_logg_and_metallicity(grid):
    teff = np.array([3400.0, 4000.0, 5000.0, 5800.0, 7000.0, 10000.0, 20000.0])
    any_star = bluest_colour(teff, grid=grid)
    assert np.all(np.diff(any_star) < 0)  # hotter: bluer
    assert any_star[-1] < -0.3 and 0.3 < any_star[3] < 0.7  # a B star; the Sun's 0.82 less the margins
    # a cool giant is far redder than the bluest star of its Teff (real M giants are redder than MIST's)
    one = np.ones(1)
    dwarf = bluest_colour(3400 * one, 4.7 * one, 0.15 * one, 0.0 * one, 0.1 * one, grid=grid)
    giant = bluest_colour(3400 * one, 0.6 * one, 0.15 * one, 0.0 * one, 0.1 * one, grid=grid)
    assert giant[0] > dwarf[0] + 0.5 and dwarf[0] >= any_star[0]
    # metal-poor stars are bluer: a window on [M/H] can only raise the bound's colour
    poor = bluest_colour(5000 * one, 4.5 * one, 0.2 * one, -2.0 * one, 0.1 * one, grid=grid)
    rich = bluest_colour(5000 * one, 4.5 * one, 0.2 * one, 0.3 * one, 0.1 * one, grid=grid)
    assert rich[0] > poor[0] + 0.02
    # a star whose logg window holds no point as cool (Proxima as the model sees it: 3,321 K, logg 1.2 ±
    # 1.4) falls back to any point's colour, 1 mag bluer than the window's at 3,375 K: the Teff's σ term
    # of the bound's σ is never negative (it was |2.6 − 3.6|, σ_c 0.86 mag)
    e_c, s_c = colour_ebv_bound(
        [3321.0], [78.0], [3.8], [0.01], [1.21], [1.22], [1.4], [-0.79], [0.26], grid=grid
    )
    assert 0.5 < e_c[0] < 1.2 and s_c[0] < 0.2
    # below the grid's coolest point (2,683 K): the coolest cells' colour, not no bound (+inf)
    assert np.isfinite(bluest_colour(np.array([2400.0, 2650.0]), grid=grid)).all()
    # unknown logg or [M/H] (NaN, None): any; a NaN Teff: NaN
    assert bluest_colour(5000 * one, np.nan * one, 0.2 * one, None, None, grid=grid)[0] == pytest.approx(
        bluest_colour(5000 * one, grid=grid)[0]
    )
    assert np.isnan(bluest_colour(np.array([np.nan]), grid=grid)[0])


def test_the_colour_bound_of_a_blue_star_and_of_a_red_one(grid):
    # a B star of BP−RP −0.32 (the review's, which the model gave E(B−V) 7.37): at most ~0.1 mag
    e_max = colour_ebv_max([15000.0], [500.0], [-0.32], [0.01], [1.3], grid=grid)
    assert 0.0 <= e_max[0] < 0.15
    # the same star 1 mag redder allows 1 / 1.3 mag more, with the same σ
    redder = colour_ebv_max([15000.0], [500.0], [0.68], [0.01], [1.3], grid=grid)
    assert redder[0] - e_max[0] == pytest.approx(1 / 1.3, abs=1e-6)
    e_c, sigma_c = colour_ebv_bound([15000.0], [500.0], [-0.32], [0.01], [1.3], grid=grid)
    assert e_max[0] == pytest.approx(max(e_c[0] + 2 * sigma_c[0], 0.0)) and 0.02 < sigma_c[0] < 0.2
    # a larger Teff σ loosens it; no colour, Teff or coefficient: no bound
    assert colour_ebv_max([15000.0], [3000.0], [-0.32], [0.01], [1.3], grid=grid)[0] > e_max[0]
    none = colour_ebv_max(
        [np.nan, 5000.0, 5000.0], [100.0] * 3, [1.0, np.nan, 1.0], [0.01] * 3, [1.3, 1.3, 0.0]
    )
    assert np.isnan(none).all()
    # never negative: a star bluer than its Teff allows gets 0 (its labels, not its dust, are off)
    assert colour_ebv_max([5000.0], [50.0], [0.0], [0.01], [1.3], grid=grid)[0] == 0.0


def test_an_estimate_is_held_to_its_bound():
    """The posterior of a normal estimate times Φ((E_c − E)/σ_c) on E ≥ 0; E_max = E_c + 2σ_c."""
    e, s, above = bound_ebv(
        np.array([7.37, 0.10, 0.50, 0.55, 0.70, 0.30, np.nan]),
        np.array([0.50, 0.05, 0.20, np.nan, 0.0, 0.05, 0.1]),
        np.array([0.04, 0.50, 0.50, 0.30, 0.30, np.nan, 0.4]),  # E_c
        np.array([0.03, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05]),  # σ_c: E_max 0.10, 0.60, 0.60, 0.40, ...
    )
    assert above.tolist() == [True, False, False, True, True, False, False]
    # far above its bound: near E_c, with about the bound's own σ (not a wall's 0)
    assert 0.0 < e[0] < 0.1 and 0.015 < s[0] < 0.04
    # a confident estimate far above (an extrapolation's σ): the colour decides, and what is left is
    # "between 0 and the bound" (a review found 2.00 ± 0.01 against a bound of 0.30 ± 0.03 coming out
    # 0.48 ± 0.0005, at the end of the sums' range)
    for value, sigma, e_c, s_c in ((2.0, 0.01, 0.30, 0.03), (1.0, 0.05, 0.20, 0.05), (7.9, 0.3, 0.05, 0.04)):
        v, sd, up = bound_ebv(np.array([value]), np.array([sigma]), np.array([e_c]), np.array([s_c]))
        assert up[0] and 0.0 < v[0] < e_c + s_c, (value, v, sd)
        assert 0.5 * s_c < sd[0] < max(e_c, s_c), (value, v, sd)  # about a flat [0, E_c]'s, never 0
    # far below (beyond 2σ): untouched
    assert (e[1], s[1]) == (0.10, 0.05)
    # within 2σ of its bound: pulled down a little, σ smaller, not flagged
    assert 0.35 < e[2] < 0.5 and s[2] < 0.2
    # no σ: clipped to E_max; no bound or no value: untouched
    assert e[3] == pytest.approx(0.40) and e[4] == pytest.approx(0.40) and np.isnan(s[3])
    assert (e[5], s[5]) == (0.30, 0.05) and np.isnan(e[6])
    # the posterior's moments against a fine direct sum
    from math import erfc, sqrt

    x = np.linspace(0, 2.0, 400001)
    w = np.exp(-0.5 * ((x - 0.5) / 0.2) ** 2) * np.array([0.5 * erfc(-(0.5 - v) / 0.05 / sqrt(2)) for v in x])
    mean = (w * x).sum() / w.sum()
    sd = np.sqrt((w * (x - mean) ** 2).sum() / w.sum())
    assert e[2] == pytest.approx(mean, abs=5e-4) and s[2] == pytest.approx(sd, abs=5e-4)
    # a star bluer than its Teff allows (E_c < 0): 0 and a small σ, never ± 0
    zero = bound_ebv(np.array([1.6]), np.array([0.1]), np.array([-0.2]), np.array([0.03]))
    assert 0.0 <= zero[0][0] < 0.02 and 0.0 < zero[1][0] < 0.02


def test_the_catalogue_ebv_column_is_held_and_flagged(grid):
    """`bound_model_ebv` on three stars the model gave an E(B−V): a hot star with a blue colour (held,
    flagged), a giant whose colour allows its value (untouched), and an M dwarf (held, flagged)."""
    means = {
        "teff": np.array([15000.0, 4600.0, 3400.0]),
        "logg": np.array([4.0, 2.4, 4.7]),
        "m_h": np.array([0.0, -0.2, 0.0]),
    }
    sigmas = {"teff": np.array([600.0, 40.0, 60.0]), "logg": np.full(3, 0.15), "m_h": np.full(3, 0.1)}
    out = {"ebv": np.array([2.0, 0.30, 1.5], np.float32), "ebv_error": np.array([0.4, 0.03, 0.2], np.float32)}
    bprp, bprp_error = np.array([-0.30, 1.75, 2.80]), np.full(3, 0.01)
    flags = bound_model_ebv(DEFAULT_FLAG_POLICY, out, means, sigmas, bprp, bprp_error, np.zeros(3, np.int64))
    assert has_flag(flags, SourceFlag.EBV_COLOUR_BOUND).tolist() == [True, False, True]
    assert out["ebv"].dtype == np.float32 and out["ebv"][0] < 0.15 and out["ebv"][2] < 0.6
    assert out["ebv"][1] == np.float32(0.30) and out["ebv_error"][1] == np.float32(0.03)
    # no colour: nothing changes
    out2 = {"ebv": np.array([2.0], np.float32), "ebv_error": np.array([0.4], np.float32)}
    one = {k: v[:1] for k, v in means.items()}, {k: v[:1] for k, v in sigmas.items()}
    f2 = bound_model_ebv(DEFAULT_FLAG_POLICY, out2, *one, None, None, np.zeros(1, np.int64))
    assert f2[0] == 0 and out2["ebv"][0] == np.float32(2.0)


def test_the_ebv_column_is_held_whatever_the_labels(grid):
    """The bound needs the star's Teff, logg and [M/H]: they are predicted for it when they are not among
    the labels (a review found `ebv` unbounded for labels without `teff`, e.g. ebv, mass, age)."""
    from _sky_inputs import sky_token_batch

    from xpengine.inference.catalogue import CatalogPredictor

    batch = {k: v[:300] for k, v in sky_token_batch("gaia-xp").items()}
    full = CatalogPredictor("gaia-xp", ["teff", "logg", "m_h", "ebv"], device="cpu")(batch)
    for labels in (["ebv"], ["ebv", "mass", "age"]):
        out = CatalogPredictor("gaia-xp", labels, device="cpu")(batch)
        bounded = has_flag(out["flags"], SourceFlag.EBV_COLOUR_BOUND)
        same = has_flag(full["flags"], SourceFlag.EBV_COLOUR_BOUND)
        # the same rows but where float rounding of another pass's token set puts one at the bound
        assert bounded.sum() > 5 and (bounded != same).sum() <= 3
        agree = bounded == same
        np.testing.assert_allclose(out["ebv"][agree], full["ebv"][agree], rtol=1e-3)
