"""Stellar relations of the simulator against the published anchor values they come from."""

from __future__ import annotations

import numpy as np
import pytest

from xpengine.simulate import physics as ph


def test_giant_mass_age_relation_reference_anchors():
    # REFERENCE §7 (MIST v2.5 fit): solar metallicity 3.16 Msun -> 0.32 Gyr, 1.65 -> 2.0, 1.26 -> 5.0, 0.97 -> 12.6
    age = ph.giant_age_gyr(np.array([3.16, 1.65, 1.26, 0.97]), np.zeros(4))
    np.testing.assert_allclose(np.log10(age), np.log10([0.32, 2.0, 5.0, 12.6]), atol=0.03)
    m = np.array([0.9, 1.3, 2.2])
    z = np.array([-0.8, 0.0, 0.3])
    np.testing.assert_allclose(ph.giant_mass_from_age(ph.giant_age_gyr(m, z), z), m, rtol=1e-10)


def test_red_clump_luminosity_gives_reference_absolute_g():
    rng = np.random.default_rng(1)
    mass = np.full(2000, 1.2)
    feh = np.zeros(2000)
    teff, logg = ph.red_clump_parameters(mass, feh, rng)
    lum = ph.luminosity_lsun(mass, teff, logg)
    m_g = ph.MBOL_SUN - 2.5 * np.log10(lum) - ph.giant_bc("bc_g", teff, feh, logg)
    # REFERENCE §7: red clump M_G ≈ 0.45, logg 2.41–2.49, Teff 4750–4790 K at solar [Fe/H]
    assert abs(np.median(m_g) - 0.45) < 0.1
    assert 2.41 <= np.median(logg) <= 2.49
    assert 4740 <= np.median(teff) <= 4800
    # ~230 K hotter at [Fe/H] = -0.5
    t2, _ = ph.red_clump_parameters(mass, feh - 0.5, rng)
    assert 200 < np.median(t2) - np.median(teff) < 260


def test_bolometric_corrections_published_values():
    # Andrae et al. 2018 (A&A 616, A8): BC_G(Teff_sun) = +0.06 mag
    np.testing.assert_allclose(ph.andrae_bc_g(np.array([5772.0])), 0.06, atol=1e-12)
    # REFERENCE §7 polynomial at t = 0 (Teff = 5040 K), [Fe/H] = 0, logg = 2: the constant term
    np.testing.assert_allclose(ph.giant_bc("bc_g", np.array([5040.0]), np.zeros(1), np.array([2.0])), 0.0092)
    np.testing.assert_allclose(ph.giant_bc("j_ks", np.array([5040.0]), np.zeros(1), np.array([2.0])), 0.5315)


def test_dwarf_relations_give_the_sun():
    teff, logg, lum = ph.dwarf_parameters(np.array([1.0]), np.array([4.6]), np.zeros(1))
    assert abs(teff[0] - 5772) < 150
    assert abs(logg[0] - 4.44) < 0.06
    assert abs(lum[0] - 1.0) < 0.1


def test_dust_grows_with_distance_and_towards_the_plane():
    d = np.array([0.5, 1.0, 2.0, 4.0])
    e_plane = ph.dust_ebv(d, np.full(4, 90.0), np.zeros(4))
    assert np.all(np.diff(e_plane) > 0)
    e_high = ph.dust_ebv(d, np.full(4, 90.0), np.full(4, 60.0))
    assert np.all(e_high < e_plane)
    # the column to "infinity" at high latitude saturates
    e_far = ph.dust_ebv(np.array([5.0, 50.0]), np.full(2, 90.0), np.full(2, 60.0))
    np.testing.assert_allclose(e_far[0], e_far[1], rtol=1e-6)


def test_kroupa_slope():
    m = np.array([1.0, 2.0])
    # dN/dlogM ∝ M^-1.3 above 0.5 Msun
    r = ph.kroupa_dn_dlogm(m)
    np.testing.assert_allclose(r[1] / r[0], 2.0**-1.3)


def test_kroupa_is_continuous_at_its_breaks():
    for m in (0.08, 0.5):
        lo, hi = ph.kroupa_dn_dlogm(np.array([m * (1 - 1e-9), m]))
        assert lo == pytest.approx(hi, rel=1e-6)


def test_secondary_clump_logg():
    rng = np.random.default_rng(2)
    _, logg = ph.red_clump_parameters(np.full(500, 2.5), np.zeros(500), rng)
    # REFERENCE §7: young (~1 Gyr, ~2.5 Msun) secondary clump at logg 2.7–2.9
    assert 2.7 <= np.median(logg) <= 2.9


def test_survey_selection_goes_deeper_only_in_h():
    from xpengine.simulate.observe import apogee_labels

    h = np.array([6.5, 7.5, 12.0, 12.5, 13.4, 13.6, 12.0])
    jk = np.array([0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.3])  # the last star is too blue for the colour cut
    stars = {"h_m": h, "j_m": h + jk, "ks_m": h, "ak_targ": np.zeros(h.size)}
    rng = np.random.default_rng(0)
    assert apogee_labels(stars, rng, 1.0).tolist() == [False, True, True, False, False, False, False]
    deep = apogee_labels(stars, rng, 1.0, h_max=13.5)
    assert deep.tolist() == [False, True, True, True, True, False, False]
    with pytest.raises(ValueError, match="h_max"):
        apogee_labels(stars, rng, 1.0, h_max=6.0)
