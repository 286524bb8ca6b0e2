"""The isochrone fit's distance prior (`xpengine.inference.galactic_prior`): ρ(d) d³ along a star's line of
sight at its apparent magnitude, and its use in `fit_isochrones` (per star, chunk-independent, the same on
the coarse grid and in torch)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from test_inference_isochrone_fit import _assorted_stars

from xpengine.inference import isochrone_fit as fitmod
from xpengine.inference.galactic_prior import M_NODES, log_weight_table, node_index, parallax_chi2_table

DATA = Path(__file__).parent / "data" / "gaia_xp"


@pytest.fixture(scope="module")
def grid():
    return fitmod.load_fit_grid()


def _sky(seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    g0 = rng.uniform(9.0, 17.5, n)
    l_deg, b_deg = rng.uniform(0, 360, n), np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    return log_weight_table(g0, l_deg, b_deg)


def test_the_weight_is_the_volume_nearby_and_the_density_far_away():
    # a bright star towards the Galactic pole: within a few pc of the Sun the density is flat, so one
    # magnitude more luminous is 10^0.6 more volume (ln: 3 ln10 / 5 = 1.38); a kpc and more above the disk
    # the density falls, and the weight rises far more slowly
    tab = log_weight_table(
        np.array([4.0, 4.0, np.nan]), np.array([0.0, 0.0, 0.0]), np.array([90.0, 0.0, 0.0])
    )
    assert tab.shape == (3, M_NODES.size) and np.isfinite(tab).all() and (tab[2] == 0).all()
    faint = M_NODES > 14.0  # d < 4 pc
    slope = np.diff(tab[0][faint]) / np.diff(M_NODES[faint])
    np.testing.assert_allclose(slope, -3 * np.log(10) / 5, rtol=0.01)
    bright = M_NODES < -5.0  # d > 1 kpc
    assert np.all(np.diff(tab[0][bright]) / np.diff(M_NODES[bright]) > -0.6 * 3 * np.log(10) / 5)
    # the plane (l = 0) holds more stars at a few kpc than the pole does
    d2kpc = np.argmin(np.abs(M_NODES - (4.0 + 5 - 5 * np.log10(2000.0))))
    assert tab[1, d2kpc] - tab[1, -1] > tab[0, d2kpc] - tab[0, -1]
    # the nearest node, clamped at the ends
    np.testing.assert_array_equal(
        node_index(np.array([-9.0, M_NODES[40] + 0.009, 20.0])), [0, 40, M_NODES.size - 1]
    )
    # ρ is evaluated every 0.25 mag and interpolated: against ρ d³ evaluated at the fine nodes themselves
    from xpengine.simulate.galaxy import total_density

    d = 10.0 ** ((4.0 - M_NODES + 5.0) / 5.0) / 1000.0
    exact = np.log(total_density(d[None, :], np.array([0.0]), np.array([0.0])))[0] + 3 * np.log(d)
    np.testing.assert_allclose(tab[1] - tab[1][0], exact - exact[0], atol=0.01)


def test_a_faint_star_without_a_parallax_comes_out_more_luminous_with_the_prior(grid):
    # a G-type star with a spectroscopic logg of ±0.3 at G₀ 14 near the plane (a kpc or two away, where
    # the disk's density changes slowly): the prior weighs the more luminous (more distant, more massive)
    # part of its ball up, as a magnitude-limited sample does
    star = [np.array([v]) for v in (6000.0, 100.0, 4.0, 0.3, -0.2, 0.1)]
    prior = log_weight_table(np.array([14.0]), np.array([120.0]), np.array([5.0]))
    without = fitmod.fit_isochrones(grid, *star)
    with_prior = fitmod.fit_isochrones(grid, *star, distance_prior=prior)
    assert with_prior["mass"][0] > without["mass"][0] + 0.03
    # a row of 0 is no prior at all
    none = fitmod.fit_isochrones(grid, *star, distance_prior=np.zeros_like(prior))
    for k in ("mass", "mass_error", "age", "age_error"):
        assert none[k][0] == without[k][0]


def test_with_the_prior_a_stars_answer_does_not_depend_on_its_chunk_mates(grid):
    n = 200
    cols, prior = _assorted_stars(11, n, m_g=True), _sky(11, n)
    cols[6][::2] = np.nan  # half without M_G
    batch = fitmod.fit_isochrones(grid, *cols, distance_prior=prior)
    assert np.isfinite(batch["mass"]).mean() > 0.8
    for i in range(0, n, 23):
        one = fitmod.fit_isochrones(grid, *(c[i : i + 1] for c in cols), distance_prior=prior[i : i + 1])
        np.testing.assert_allclose(
            [one["mass"][0], one["age"][0]], [batch["mass"][i], batch["age"][i]], rtol=1e-4, equal_nan=True
        )


def test_with_the_prior_the_coarse_grid_and_torch_give_the_same_answers(grid):
    rng = np.random.default_rng(4)
    n = 300
    teff, logg = rng.uniform(4000, 7500, n), rng.uniform(3.8, 4.7, n)
    cols = [teff, rng.uniform(150, 400, n), logg, rng.uniform(0.15, 0.5, n), rng.uniform(-1.5, 0.4, n)]
    cols += [rng.uniform(0.05, 0.3, n)]
    prior = _sky(4, n)
    both = fitmod.fit_isochrones(grid, *cols, distance_prior=prior)
    fine = fitmod.fit_isochrones(dataclasses.replace(grid, coarse=None), *cols, distance_prior=prior)
    in_torch = fitmod.fit_isochrones(grid, *cols, distance_prior=prior, device="cpu")
    for k in ("mass", "ln_age"):
        ok = np.isfinite(fine[k])
        assert ok.mean() > 0.9
        d = np.abs(both[k][ok] - fine[k][ok]) / fine[f"{k}_error"][ok]
        assert np.percentile(d, 99) < 0.05 and d.max() < 0.1, (k, np.percentile(d, 99), d.max())
        d = np.abs(in_torch[k][ok] - both[k][ok]) / both[f"{k}_error"][ok]
        assert d.max() < 1e-3


def test_torch_matches_numpy_with_stars_without_the_prior_and_alone(grid):
    """The torch path gathers the prior table on its device: stars whose row is 0 (no line of sight) beside
    stars with a prior, and a star fitted alone, get the numpy answers; a 0 row is the same as no prior."""
    rng = np.random.default_rng(5)
    n = 130
    cols = [rng.uniform(4500, 7000, n), rng.uniform(100, 300, n), rng.uniform(3.8, 4.6, n)]
    cols += [rng.uniform(0.1, 0.4, n), rng.uniform(-1.0, 0.3, n), rng.uniform(0.05, 0.2, n)]
    prior = _sky(6, n)
    prior[::2] = 0.0  # every other star without a line of sight
    a = fitmod.fit_isochrones(grid, *cols, distance_prior=prior)
    b = fitmod.fit_isochrones(grid, *cols, distance_prior=prior, device="cpu")
    alone = fitmod.fit_isochrones(grid, *(c[1::2] for c in cols), distance_prior=prior[1::2], device="cpu")
    none = fitmod.fit_isochrones(grid, *(c[::2] for c in cols), device="cpu")
    for k in ("mass", "ln_age"):
        ok = np.isfinite(a[k])
        assert ok.mean() > 0.9
        np.testing.assert_array_equal(np.isfinite(b[k]), ok)
        assert np.max(np.abs(a[k][ok] - b[k][ok]) / a[f"{k}_error"][ok]) < 1e-3
        for part, sl in ((alone, slice(1, None, 2)), (none, slice(0, None, 2))):
            sub = ok[sl]
            assert np.max(np.abs(part[k][sub] - a[k][sl][sub]) / a[f"{k}_error"][sl][sub]) < 1e-3
    one = fitmod.fit_isochrones(grid, *(c[1:2] for c in cols), distance_prior=prior[1:2], device="cpu")
    assert abs(one["mass"][0] - a["mass"][1]) < 1e-3 * a["mass_error"][1]


def test_from_xp_takes_the_line_of_sight_from_ra_dec_where_l_b_are_missing():
    """18 Sco (G 5.35 by hand, no parallax): its XP alone has no line of sight, so no distance prior; given
    ra, dec the catalogue derives l, b and the prior applies, as it does with l, b given."""
    import pandas as pd

    from xpengine import io
    from xpengine.catalog.sky import icrs_to_galactic
    from xpengine.inference.predictor import Predictor

    p = Predictor.load("gaia-xp", device="cpu")
    xp = io.read_xp_continuous(str(DATA / "18Sco-XP-spectra.csv"))
    t = pd.DataFrame(xp.to_pandas() if hasattr(xp, "to_pandas") else xp)
    labels = ["teff", "logg", "m_h", "mass", "age"]
    alone = p.from_xp(t, labels=labels).iloc[0]
    with_radec = p.from_xp(t.assign(ra=243.9053, dec=-8.3694), labels=labels).iloc[0]
    l_deg, b_deg = icrs_to_galactic(np.array([243.9053]), np.array([-8.3694]))
    with_lb = p.from_xp(t.assign(ra=243.9053, dec=-8.3694, l=l_deg[0], b=b_deg[0]), labels=labels).iloc[0]
    assert np.isnan(alone["l"]) and with_radec["l"] == pytest.approx(l_deg[0])
    assert with_radec["b"] == pytest.approx(b_deg[0])
    assert with_radec["mass"] == pytest.approx(with_lb["mass"], rel=1e-6)
    assert with_radec["mass"] != alone["mass"]  # the prior applies once the line of sight is known


def test_a_weak_parallax_is_a_chi2_term_with_or_without_the_line_of_sight(grid):
    # G₀ 15 and ϖ 1.0 ± 0.3 mas (S/N 3.3, below the catalogue's M_G cut): the χ² is 0 where the node's
    # distance is 1 kpc, M_G 5; a NaN parallax gives a NaN row (no term)
    g0, plx, err = np.array([15.0, 15.0]), np.array([1.0, np.nan]), np.array([0.3, 0.3])
    tab = parallax_chi2_table(g0, plx, err)
    assert abs(M_NODES[np.argmin(tab[0])] - 5.0) < 0.03 and tab[0].min() == pytest.approx(0.0, abs=1e-3)
    d = 10.0 ** ((15.0 - M_NODES + 5.0) / 5.0)
    np.testing.assert_allclose(tab[0], ((1.0 - 1000.0 / d) / 0.3) ** 2, rtol=1e-5, atol=1e-3)
    assert np.isnan(tab[1]).all()
    # an absurd G₀ (an input E(B−V) of 99 dereddens G by ~250 mag) stays finite: no NaN weights in the fit
    absurd = parallax_chi2_table(np.array([-240.0]), np.array([0.3]), np.array([0.2]))
    assert np.isfinite(absurd).all() and absurd.max() <= 1e6
    # in the fit: a dwarf-or-subgiant ball (logg 4.0 ± 0.4) without the parallax, and with one that says
    # the star is a dwarf (M_G 5: 1 kpc at G₀ 15; the Sun's is 4.7) or a subgiant (M_G 3: 2.5 kpc)
    star = [np.array([v]) for v in (5800.0, 120.0, 4.0, 0.4, 0.0, 0.1)]
    sky = (np.array([15.0]), np.array([120.0]), np.array([5.0]))
    prior = log_weight_table(*sky)

    def fit(p, e):
        chi2 = None if p is None else parallax_chi2_table(sky[0], np.array([p]), np.array([e]))
        return fitmod.fit_isochrones(grid, *star, distance_prior=prior, parallax_chi2=chi2)

    near, far, plain = fit(1.0, 0.25), fit(0.4, 0.1), fit(None, None)
    assert near["abs_g"][0] > plain["abs_g"][0] > far["abs_g"][0]
    assert near["abs_g"][0] > 4.2 and far["abs_g"][0] < 3.5
    assert (
        near["abs_g_error"][0] < plain["abs_g_error"][0] and far["abs_g_error"][0] < plain["abs_g_error"][0]
    )
    assert not (near["parallax_dropped"][0] or far["parallax_dropped"][0] or plain["parallax_dropped"][0])


def test_a_parallax_no_isochrone_reconciles_with_the_labels_is_dropped(grid):
    """An M dwarf (3500 ± 80 K, logg 4.8 ± 0.2) at G₀ 13 with ϖ 0.2 ± 0.3 mas: no isochrone point is both
    such a dwarf and 3 kpc away. Until session 29 the parallax entered as a prior after the χ² taper, and the
    weight piled against the taper's edge: M_G 2.2 ± small, a confident wrong distance (review of session
    29). Now its χ² is the fit's: off every isochrone with it, fitted without it (`parallax_dropped`)."""
    star = [np.array([v]) for v in (3500.0, 80.0, 4.8, 0.2, -0.2, 0.2)]
    sky = (np.array([13.0]), np.array([10.0]), np.array([-60.0]))
    prior = log_weight_table(*sky)
    plain = fitmod.fit_isochrones(grid, *star, distance_prior=prior)
    chi2 = parallax_chi2_table(sky[0], np.array([0.2]), np.array([0.3]))
    conflict = fitmod.fit_isochrones(grid, *star, distance_prior=prior, parallax_chi2=chi2)
    assert conflict["parallax_dropped"][0]
    assert conflict["abs_g"][0] == pytest.approx(plain["abs_g"][0], abs=1e-6)
    assert conflict["abs_g"][0] > 7.5  # an M dwarf's, not a subgiant's
    # a parallax that agrees (ϖ 23 ± 3 mas: 43 pc) is kept and tightens M_G
    agree = parallax_chi2_table(sky[0], np.array([23.0]), np.array([3.0]))
    kept = fitmod.fit_isochrones(grid, *star, distance_prior=prior, parallax_chi2=agree)
    assert not kept["parallax_dropped"][0] and kept["abs_g_error"][0] < plain["abs_g_error"][0]


def test_a_refit_without_logg_is_not_taken_for_a_dropped_parallax(grid):
    """A star whose predicted logg (a dwarf's) no isochrone reconciles with its measured M_G (a giant's) is
    refitted without its logg; with no parallax term at all it is not `parallax_dropped` (a first version
    flagged such rows PARALLAX_CONFLICT)."""
    star = [np.array([v]) for v in (4800.0, 60.0, 4.6, 0.06, 0.0, 0.05)]
    out = fitmod.fit_isochrones(grid, *star, np.array([0.5]), np.array([0.05]))
    assert np.isfinite(out["mass"][0]) and out["abs_g"][0] < 1.5
    assert not out["parallax_dropped"][0]
