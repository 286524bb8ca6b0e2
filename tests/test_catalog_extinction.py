"""Star-by-star Gaia extinction coefficients (`xpengine.catalog.extinction`) against the MIST/C3K tables
they were fitted to, and their use in the catalogue's flag rule."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest

from xpengine.catalog.extinction import CONSTANT_A_G, CONSTANT_E_BP_RP, coefficients, table
from xpengine.catalog.flag_policy import DEFAULT_FLAG_POLICY, outside_by_measurement

ROOT = Path(__file__).resolve().parents[1]


def test_the_shipped_polynomial_reproduces_the_mist_tables_on_points_it_was_not_fitted_on():
    sys.path.insert(0, str(ROOT / "training"))
    import fit_extinction

    s = fit_extinction.sample(6000, seed=7)  # another draw than the file's (seed 0)
    k_g, k_c = coefficients(s["teff"], s["av"] / 3.1, s["logg"], s["feh"])
    for got, want, name in ((k_g, s["k_g"], "a_g_per_ebv"), (k_c, s["k_c"], "e_bp_rp_per_ebv")):
        for lo, hi in fit_extinction.TEFF_BINS:
            m = (s["teff"] >= lo) & (s["teff"] < hi)
            rms = float(np.sqrt(np.mean((got[m] - want[m]) ** 2)))
            recorded = table()["residuals"][name][f"{lo}-{hi} K"]["rms"]
            assert rms < 1.3 * recorded + 0.002, (name, lo, hi, rms, recorded)
    # 4,500–10,000 K, the bulk of Gaia's stars: A_G and E(BP−RP) good to about 0.01 E(B−V) in rms
    m = (s["teff"] >= 4500) & (s["teff"] < 10000)
    assert np.sqrt(np.mean((k_g[m] - s["k_g"][m]) ** 2)) < 0.012
    assert np.sqrt(np.mean((k_c[m] - s["k_c"][m]) ** 2)) < 0.015


def test_the_coefficients_follow_the_physics_of_a_broad_band():
    teff = np.array([3800.0, 4750.0, 5800.0, 8000.0, 15000.0])
    logg = np.array([1.0, 2.4, 4.4, 4.0, 4.0])
    low, _ = coefficients(teff, np.full(5, 0.02), logg, np.zeros(5))
    high, _ = coefficients(teff, np.full(5, 1.0), logg, np.zeros(5))
    assert (np.diff(low) > 0).all()  # hotter SED: more of it in the blue, where dust absorbs more
    assert (high < low).all()  # the band's effective wavelength moves to the red behind more dust
    assert abs(low[2] - CONSTANT_A_G) < 0.05  # a solar-type star: Casagrande & VandenBerg's 2.740
    assert low[1] < CONSTANT_A_G - 0.15  # a red-clump star: the constant overstates its A_G


def test_stars_without_a_teff_and_the_constant_law_get_the_constants():
    ebv = np.array([0.3, 0.3, np.nan, -0.05])
    k_g, k_c = coefficients(np.array([np.nan, 4750.0, 4750.0, 4750.0]), ebv)
    assert k_g[0] == CONSTANT_A_G and k_c[0] == CONSTANT_E_BP_RP
    assert k_g[1] < CONSTANT_A_G and np.isfinite(k_g).all() and np.isfinite(k_c).all()
    assert k_g[2] == pytest.approx(k_g[3])  # an unknown or negative E(B−V): the coefficient at A_V 0
    for args in ((None, ebv), (np.full(4, 4750.0), ebv, None, None, "constant")):
        k_g, k_c = coefficients(*args)
        assert (k_g == CONSTANT_A_G).all() and (k_c == CONSTANT_E_BP_RP).all()
    with pytest.raises(ValueError, match="extinction law 'cardelli'"):
        coefficients(np.full(4, 4750.0), ebv, law="cardelli")


def test_the_flag_rule_dereddens_each_star_by_its_own_coefficient():
    # a red-clump star behind E(B−V) 0.5 at 1 kpc: G = M_G + 10 + A_G with M_G 3.6 (a dwarf by the rule's
    # 3.5); its own A_G is 2.44 E(B−V) (MIST), the constant's 2.74 would take 0.15 mag too much
    teff, ebv, abs_g = np.array([4750.0]), 0.5, 3.6
    k_g, _ = coefficients(teff, np.array([ebv]), np.array([2.4]), np.array([0.0]))
    g = np.array([abs_g + 10.0 + k_g[0] * ebv])
    args = (g, np.array([1000.0]), np.array([True]), teff)
    kwargs = {"logebv": np.array([np.log(ebv)]), "logg": np.array([2.4]), "m_h": np.array([0.0])}
    outside, giant = outside_by_measurement(DEFAULT_FLAG_POLICY, *args, **kwargs)
    assert outside[0] and not giant[0]
    constant = dataclasses.replace(DEFAULT_FLAG_POLICY, extinction="constant")
    outside, giant = outside_by_measurement(constant, *args, **kwargs)
    assert giant[0] and not outside[0]  # M_G 3.45 with the constant: called a giant


def test_the_hot_star_colour_is_dereddened_by_the_stars_own_coefficient():
    # a 5,000 K star behind E(B−V) 1 without a parallax: E(BP−RP) is 1.2 E(B−V) for its SED (MIST), so
    # an observed BP−RP of 2.07 is 0.87 intrinsic, red enough; the constant 1.339 would make it 0.73, "hot"
    teff, ebv = np.array([5000.0]), np.array([1.0])
    _, k_c = coefficients(teff, ebv, np.array([3.0]), np.array([0.0]))
    assert 2.07 - k_c[0] > 0.8 > 2.07 - CONSTANT_E_BP_RP
    args = (np.array([15.0]), np.array([np.nan]), np.array([False]), teff)
    kwargs = {"logebv": np.log(ebv), "bprp": np.array([2.07]), "bprp_error": np.array([0.0])}
    kwargs |= {"logg": np.array([3.0]), "m_h": np.array([0.0])}
    assert not outside_by_measurement(DEFAULT_FLAG_POLICY, *args, **kwargs)[0][0]
    constant = dataclasses.replace(DEFAULT_FLAG_POLICY, extinction="constant")
    assert outside_by_measurement(constant, *args, **kwargs)[0][0]


def test_the_isochrone_fit_takes_each_stars_own_coefficient(monkeypatch):
    """The catalogue's M_G for the isochrone fit dereddens each star by the coefficient of its own
    catalogue Teff, logg and [M/H]; the constant law by 2.740; only the isochrone rows move."""
    from _sky_inputs import sky_token_batch

    from xpengine.inference import catalogue_isochrones
    from xpengine.pipeline.predictor_stage import CatalogPredictor

    seen = []
    spy = catalogue_isochrones.absolute_g_inputs

    def record(*args):
        seen.append((np.array(args[4]), np.array(args[6])))  # E(B−V), A_G / E(B−V)
        return spy(*args)

    monkeypatch.setattr(catalogue_isochrones, "absolute_g_inputs", record)
    batch = {k: v[:300] for k, v in sky_token_batch("gaia-xp").items()}
    labels = ["teff", "logg", "m_h", "mass", "age"]
    out = {}
    for law in ("mist", "constant"):
        policy = dataclasses.replace(DEFAULT_FLAG_POLICY, extinction=law)
        out[law] = CatalogPredictor("gaia-xp", labels, device="cpu", flag_policy=policy)(dict(batch))
    (ebv, k_mist), (_, k_constant) = seen
    cat = out["mist"]
    want, _ = coefficients(cat["teff"], ebv, cat["logg"], cat["m_h"])
    ok = np.isfinite(cat["teff"])
    assert ok.sum() > 250 and np.ptp(want[ok]) > 0.2  # stars of many Teff
    np.testing.assert_allclose(k_mist[ok], want[ok], rtol=1e-6)
    assert (k_constant == CONSTANT_A_G).all()
    from xpengine.features.flags import SourceFlag, has_flag

    moved = out["mist"]["mass"] != out["constant"]["mass"]
    iso = has_flag(cat["flags"], SourceFlag.MASS_AGE_FROM_ISOCHRONES)
    plx = has_flag(cat["flags"], SourceFlag.DISTANCE_FROM_PARALLAX)
    # the isochrone rows: with a parallax their M_G moves, every one the distance prior's G₀
    assert moved.sum() > 20 and not (moved & ~iso).any() and (moved & plx).any() and (moved & ~plx).any()
    for col in ("teff", "logg", "m_h"):
        np.testing.assert_array_equal(out["mist"][col], out["constant"][col])
