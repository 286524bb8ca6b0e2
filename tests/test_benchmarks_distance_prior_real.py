"""The distance prior on real stars of known distance (`benchmarks/distance_prior_real.py`): cluster members
of the APOGEE×XP dev file fitted with their cluster's M_G, and without it (no prior, the prior, another
Galaxy's prior, the prior from the model's E(B−V)). The M_G posterior and the scores run without the shared
data; the whole check on the real members needs it (skips, naming it, without)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _paths import load_script

from xpengine.datasets.schema import write_training_set
from xpengine.inference import isochrone_fit as fitmod


def _dpr():
    return load_script("benchmarks/distance_prior_real.py", "distance_prior_real")


@pytest.fixture(scope="module")
def grid():
    return fitmod.load_fit_grid()


def test_the_m_g_grid_gives_the_posterior_m_g(grid):
    """The fit on the grid whose `mass` column is M_G returns M_G's posterior: near a tight measured M_G, and
    wider without it (a K giant: logg 2.5 ± 0.1 alone allows about a magnitude)."""
    dpr = _dpr()
    g = dpr.m_g_grid(grid)
    assert g.coarse is not None and np.array_equal(g.coarse.mass, grid.coarse.abs_g)
    star = [np.array([v]) for v in (4700.0, 80.0, 2.5, 0.1, 0.0, 0.08)]
    known = fitmod.fit_isochrones(g, *star, np.array([0.8]), np.array([0.05]))
    free = fitmod.fit_isochrones(g, *star)
    assert abs(known["mass"][0] - 0.8) < 0.1 and known["mass_error"][0] < 0.1, known
    assert free["mass_error"][0] > 2 * known["mass_error"][0], (free, known)
    # the ordinary grid is untouched: a giant's mass, not its M_G
    mass = fitmod.fit_isochrones(grid, *star, np.array([0.8]), np.array([0.05]))["mass"][0]
    assert 0.8 < mass < 3.0 and abs(mass - known["mass"][0]) > 1e-3


def test_score_measures_each_fit_against_the_cluster_m_g():
    dpr = _dpr()
    n = 6
    m = {"age_lo": np.full(n, 1.0), "age_hi": np.full(n, 3.0)}
    cluster_m_g = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])

    def fit(dm, mass=1.0, age=2.0):
        return {
            "abs_g": cluster_m_g + dm,
            "abs_g_error": np.full(n, 0.3),
            "mass": np.full(n, mass),
            "ln_age": np.full(n, np.log(age)),
        }

    res = {
        "abs_g": cluster_m_g,
        "abs_g_err": np.full(n, 0.4),
        "fits": {
            dpr.REFERENCE: fit(0.0),
            dpr.NO_PRIOR: fit(np.array([1.0, 1.0, 1.0, 1.0, -0.2, 0.2]), mass=0.9, age=4.0),
            dpr.PRIOR: fit(np.array([0.5, 0.5, -0.5, 0.5, 0.5, np.nan]), mass=1.1),
        },
    }
    sel = np.ones(n, bool)
    out = dpr.score(m, res, sel)
    p, q = out[dpr.PRIOR], out[dpr.NO_PRIOR]
    assert p["n_fitted"] == 5 and q["n_fitted"] == 6
    assert p["m_g_bias"] == pytest.approx(0.5) and q["m_g_bias"] == pytest.approx(1.0)
    assert p["m_g_z_median"] == pytest.approx(0.5 / 0.5)
    assert p["closer_than_no_prior"] == pytest.approx(4 / 5)  # the 5th star: 0.5 against 0.2
    assert "closer_than_no_prior" not in q
    assert p["mass_vs_reference"] == pytest.approx(0.1) and q["mass_vs_reference"] == pytest.approx(-0.1)
    assert q["ln_age_vs_reference"] == pytest.approx(np.log(2.0))
    assert q["ln_age_vs_literature"] == pytest.approx(np.log(4.0 / 2.0))
    assert out[dpr.REFERENCE]["m_g_bias"] == 0.0


def test_on_the_real_cluster_members(apogee_xp_dev_build, tmp_path):
    """The whole check on the dev file's members. The reference fit, given the cluster's M_G, must return
    it (a check of the M_G posterior and of the members' M_G, not of the prior); every fit without M_G is
    scored; nothing is asserted about whether the prior helps: that is what the check measures."""
    from _datasets_real import DEV

    data = tmp_path / "dev.parquet"
    write_training_set(apogee_xp_dev_build.table, str(data))
    out_json = tmp_path / "r.json"
    assert _dpr().main(["--apogee-xp", str(DEV), "--dataset", str(data), "--json", str(out_json)]) == 0
    r = json.loads(out_json.read_text())
    assert r["n_members"] >= 150 and r["n_clusters"] == 15, (r["n_members"], r["n_clusters"])
    dpr = _dpr()
    every = r["groups"]["all members"]
    ref = every[dpr.REFERENCE]
    assert ref["n_fitted"] >= 0.9 * r["n_members"]
    assert abs(ref["m_g_bias"]) < 0.1 and ref["m_g_sigma"] < 0.2, ref
    for name in dpr.VARIANTS:
        assert every[name]["n_fitted"] >= 0.9 * r["n_members"], (name, every[name])
        assert np.isfinite(every[name]["m_g_bias"])
    assert len(r["stars"]) == r["n_members"]
    # each star's labels are its own (the predictions come back in the dataset's row order and are put back
    # in the members' order; mismatched, the median |ΔTeff| against ASPCAP was 346 K, matched 47 K)
    d_teff = [abs(s["model"]["teff"] - s["aspcap"]["teff"]) for s in r["stars"]]
    assert np.median(d_teff) < 150.0, np.median(d_teff)
    assert {"NGC 7789", "globular-cluster giants (4–18 kpc)"} <= set(r["groups"])
    # the on-track check: every globular giant finds MIST points at its age, [Fe/H] and M_G, and each fit is
    # scored (what they show is the check's to say)
    gc = "globular-cluster giants (4–18 kpc)"
    on = r["on_track"][gc]
    assert on["n"] >= 0.9 * r["groups"][gc][dpr.REFERENCE]["n_fitted"] > 100, on["n"]
    for name in (
        dpr.REFERENCE,
        dpr.ON_TRACK,
        dpr.ON_TRACK_FLAT_MODEL_SIGMA,
        dpr.ON_TRACK_TIGHT,
        dpr.ON_TRACK_FLAT,
    ):
        assert np.isfinite(on[name]["ln_age_minus_literature"]) and on[name]["ln_age_sigma"] > 0


def test_on_track_labels_are_mists_own(grid):
    """A star at the M_G of a MIST giant on the first-ascent branch (the coolest point of its isochrone at
    that M_G), given that isochrone's age and [Fe/H] node, gets that point's Teff and logg back (not the
    window's bright edge, which is cooler); a star whose M_G no evolved point of its age has gets none."""
    dpr = _dpr()
    node = grid.feh_nodes[np.argmin(np.abs(grid.feh_nodes + 1.5))]
    iso = (np.abs(grid.feh - node) < 1e-3) & (np.abs(grid.ln_age - np.log(12.0)) < 0.05)
    near = np.flatnonzero(iso & (grid.logg < 3.8) & (np.abs(grid.abs_g + 1.0) < 0.1))
    k = near[np.argmin(grid.teff[near])]
    age = float(np.exp(grid.ln_age[k]))
    m = {"fe_h": np.array([node, node]), "age_lo": np.full(2, age), "age_hi": np.full(2, age)}
    t = dpr.on_track_labels(grid, m, np.array([grid.abs_g[k], 12.0]))
    # read on a straight line through the branch's points: within its curvature of the point itself
    assert abs(t["teff"][0] - grid.teff[k]) < 15.0 and abs(t["logg"][0] - grid.logg[k]) < 0.03, (t, k)
    assert t["teff"][0] < np.median(grid.teff[iso & (np.abs(grid.abs_g - grid.abs_g[k]) < 0.15)]) + 1
    assert np.isnan(t["teff"][1]) and np.isnan(t["logg"][1])
