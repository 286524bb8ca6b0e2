"""Parallax zero point, pseudo-luminosity and extinction (xpengine.features.astrometry)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from _paths import GAIA_SOURCE_DIR

from xpengine.features.astrometry import (
    absmag_to_fakemag,
    ebv_to_logebv,
    fakemag_to_absmag,
    fakemag_to_distance_pc,
    fakemag_to_parallax,
    infer_astrometric_params_solved,
    leung2023_zero_point_offset,
    lindegren2021_zero_point,
    parallax_quality_mask,
    parallax_to_fakemag,
    parallax_zero_point,
    pseudo_luminosity,
)

GAIA_DIR = GAIA_SOURCE_DIR  # bundled real gaia_source rows (tests/data)
NAN = np.nan


def _package_zpt(g, nu, pc, lat, aps) -> np.ndarray:
    from zero_point import zpt

    zpt.load_tables()
    return zpt.get_zpt(
        np.asarray(g, float),
        np.asarray(nu, float),
        np.asarray(pc, float),
        np.asarray(lat, float),
        np.asarray(aps, int),
        _warnings=False,
    )


def test_zero_point_matches_package_and_leung_term() -> None:
    g = [15.0, 17.5, 11.0, 20.5]
    nu = [1.5, NAN, 1.3, 1.6]
    pc = [NAN, 1.45, NAN, NAN]
    lat = [30.0, -60.0, 0.0, 75.0]
    aps = [31, 95, 31, 31]
    ref = _package_zpt(g, nu, pc, lat, aps)
    assert np.isfinite(ref).all()
    np.testing.assert_allclose(lindegren2021_zero_point(g, nu, pc, lat, aps), ref, rtol=0, atol=1e-12)
    # Leung et al. (2023): + 0.005 * clip(G - 13, 0, 4) mas = 0.01, 0.02 (clipped at 4), 0, 0.02
    np.testing.assert_allclose(leung2023_zero_point_offset(np.array(g)), [0.01, 0.02, 0.0, 0.02], atol=1e-15)
    np.testing.assert_allclose(
        parallax_zero_point(g, nu, pc, lat, aps), ref + np.array([0.01, 0.02, 0.0, 0.02]), rtol=0, atol=1e-12
    )
    np.testing.assert_allclose(parallax_zero_point(g, nu, pc, lat, aps, leung2023=False), ref, atol=1e-12)


def test_zero_point_nan_outside_validity_without_disturbing_valid_rows() -> None:
    rows = [
        (15.0, 1.5, NAN, 30.0, 31),  # valid
        (5.5, 1.5, NAN, 30.0, 31),  # G <= 6
        (21.5, 1.5, NAN, 30.0, 31),  # G >= 21
        (15.0, 1.0, NAN, 30.0, 31),  # nu_eff <= 1.1
        (15.0, 1.95, NAN, 30.0, 31),  # nu_eff >= 1.9
        (15.0, NAN, 1.8, 30.0, 95),  # pseudocolour >= 1.72
        (15.0, NAN, NAN, 30.0, 3),  # 2-parameter solution (the package would raise)
        (15.0, 1.5, NAN, 30.0, NAN),  # unknown solution
        (NAN, 1.5, NAN, 30.0, 31),  # no G
        (15.0, 1.5, NAN, NAN, 31),  # no ecliptic latitude
        (15.0, NAN, NAN, 30.0, 31),  # 5p without nu_eff
    ]
    g, nu, pc, lat, aps = (np.array(c, dtype=float) for c in zip(*rows, strict=True))
    zp = parallax_zero_point(g, nu, pc, lat, aps)
    assert np.isfinite(zp[0]) and np.isnan(zp[1:]).all()
    np.testing.assert_allclose(zp[0], _package_zpt([15.0], [1.5], [NAN], [30.0], [31])[0] + 0.01, atol=1e-12)


def test_infer_astrometric_params_solved() -> None:
    out = infer_astrometric_params_solved(
        np.array([1.0, 1.0, NAN, 1.0]), np.array([1.5, NAN, NAN, NAN]), np.array([NAN, 1.4, NAN, NAN])
    )
    np.testing.assert_array_equal(out[:3], [31.0, 95.0, 3.0])
    assert np.isnan(out[3])


def test_fakemag_and_inverses_by_hand() -> None:
    # parallax 1 mas at G = 10: fakemag = 1 * 10**2 = 100 = 10**(0.2*M + 2) -> M = 0, d = 1000 pc
    f, fe = parallax_to_fakemag(
        np.array([1.0, -0.2, 0.0]), np.array([10.0, 15.0, 15.0]), np.array([0.05, 0.04, 0.04])
    )
    np.testing.assert_allclose(f, [100.0, -200.0, 0.0], rtol=1e-14)
    # linear propagation sigma * 10**(0.2 G): finite at parallax 0 (where |s/p|*fakemag is 0/0)
    np.testing.assert_allclose(fe, [5.0, 40.0, 40.0], rtol=1e-14)
    m, me = fakemag_to_absmag(f, fe)
    np.testing.assert_allclose(m[0], 0.0, atol=1e-14)
    np.testing.assert_allclose(me[0], 5 / math.log(10) * 0.05, rtol=1e-14)  # 0.10857 mag
    assert np.isnan(m[1:]).all() and np.isnan(me[1:]).all()  # no magnitude for fakemag <= 0
    d, de = fakemag_to_distance_pc(f, np.array([10.0, 15.0, 15.0]), fe)
    np.testing.assert_allclose([d[0], de[0]], [1000.0, 50.0], rtol=1e-14)
    assert np.isnan(d[1:]).all()
    plx, plx_err = fakemag_to_parallax(f, np.array([10.0, 15.0, 15.0]), fe)
    np.testing.assert_allclose(plx, [1.0, -0.2, 0.0], atol=1e-15)
    np.testing.assert_allclose(plx_err, [0.05, 0.04, 0.04], rtol=1e-14)
    np.testing.assert_allclose(absmag_to_fakemag(np.array([0.0, 5.0])), [100.0, 1000.0], rtol=1e-14)
    # errors not requested -> NaN, one return type
    assert np.isnan(fakemag_to_absmag(f)[1]).all()
    # distance = 1000 / parallax for any G (an identity of the definitions)
    g = np.array([8.0, 12.3, 16.9])
    p = np.array([2.5, 0.7, 0.11])
    np.testing.assert_allclose(
        fakemag_to_distance_pc(parallax_to_fakemag(p, g, p)[0], g)[0], 1000 / p, rtol=1e-13
    )


def test_parallax_quality_mask() -> None:
    ok = parallax_quality_mask(
        np.array([1.0, 1.0, 1.0, NAN, 1.0, 1.0, 1.0]),
        np.array([0.05, 0.11, 0.05, 0.05, NAN, 0.1, 0.05]),
        np.array([1.0, 1.0, 1.5, 1.0, 1.0, 1.4, NAN]),
    )
    np.testing.assert_array_equal(ok, [True, False, False, False, False, True, True])
    assert parallax_quality_mask(np.array([1.0]), np.array([0.05]), None).all()


def test_ebv_to_logebv() -> None:
    v, e = ebv_to_logebv(np.array([0.1, 0.0, -0.01, NAN]), np.array([0.02, 0.01, 0.01, 0.01]))
    np.testing.assert_allclose([v[0], e[0]], [math.log(0.1), 0.2], rtol=1e-14)
    assert np.isnan(v[1:]).all() and np.isnan(e[1:]).all()
    v, _ = ebv_to_logebv(np.array([0.0, -0.01, 0.5]), floor=math.exp(-7.0))
    np.testing.assert_allclose(v, [-7.0, -7.0, math.log(0.5)], rtol=1e-14)
    with pytest.raises(ValueError, match="positive"):
        ebv_to_logebv(np.array([0.1]), floor=0.0)


def _read(name: str):
    from astropy.table import Table

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Table.read(GAIA_DIR / name)


def test_pseudo_luminosity_on_real_gaia_source_rows() -> None:
    """Real DR3 rows: the ECSV leaves astrometric_params_solved empty; it is reconstructed (31)."""
    t = _read("1712337806100O-result.ecsv")
    col = {
        c: np.ma.filled(np.asarray(t[c], dtype=float), NAN)
        for c in (
            "phot_g_mean_mag",
            "parallax",
            "parallax_error",
            "ruwe",
            "nu_eff_used_in_astrometry",
            "pseudocolour",
            "ecl_lat",
        )
    }
    aps = np.ma.filled(t["astrometric_params_solved"].astype(float), NAN)
    assert np.isnan(aps).all()
    lum = pseudo_luminosity(
        col["phot_g_mean_mag"],
        col["parallax"],
        col["parallax_error"],
        ruwe=col["ruwe"],
        nu_eff_used_in_astrometry=col["nu_eff_used_in_astrometry"],
        pseudocolour=col["pseudocolour"],
        ecl_lat=col["ecl_lat"],
        astrometric_params_solved=aps,
    )
    # rows: 0 sigma 0.35 mas (cut), 1 no parallax, 2 good (G 16.6, sigma 0.054), 3 no parallax, 4 sigma 0.18 (cut)
    sid = np.asarray(t["source_id"])
    good = sid == 6636090339113063296
    np.testing.assert_array_equal(lum.no_parallax, ~good)
    assert not lum.no_zero_point.any()
    g = col["phot_g_mean_mag"][good]
    zp = _package_zpt(
        g, col["nu_eff_used_in_astrometry"][good], [NAN], col["ecl_lat"][good], [31]
    ) + 0.005 * (g - 13)
    expected = (col["parallax"][good] - zp) * 10 ** (0.2 * g)
    np.testing.assert_allclose(lum.fakemag[good], expected, rtol=1e-12)
    np.testing.assert_allclose(
        lum.fakemag_error[good], col["parallax_error"][good] * 10 ** (0.2 * g), rtol=1e-12
    )
    assert np.isnan(lum.fakemag[~good]).all()


def test_pseudo_luminosity_zero_point_outside_validity_and_fallback() -> None:
    g = np.array([5.5, 12.0])  # first: too bright for the zero-point tables
    kw = dict(
        ruwe=np.array([1.0, 1.0]),
        nu_eff_used_in_astrometry=np.array([1.5, 1.5]),
        pseudocolour=np.array([NAN, NAN]),
        ecl_lat=np.array([10.0, 10.0]),
        astrometric_params_solved=np.array([31, 31]),
    )
    lum = pseudo_luminosity(g, np.array([3.0, 2.0]), np.array([0.02, 0.02]), **kw)
    np.testing.assert_array_equal(lum.no_zero_point, [True, False])
    np.testing.assert_array_equal(lum.no_parallax, [True, False])
    lum = pseudo_luminosity(g, np.array([3.0, 2.0]), np.array([0.02, 0.02]), zero_point_fallback=-0.017, **kw)
    np.testing.assert_array_equal(lum.no_zero_point, [True, False])
    np.testing.assert_array_equal(lum.no_parallax, [False, False])
    np.testing.assert_allclose(lum.fakemag[0], (3.0 + 0.017) * 10 ** (0.2 * 5.5), rtol=1e-14)
    raw = pseudo_luminosity(g, np.array([3.0, 2.0]), np.array([0.02, 0.02]), apply_zero_point=False, **kw)
    np.testing.assert_allclose(raw.fakemag, [3.0 * 10**1.1, 2.0 * 10**2.4], rtol=1e-14)


def test_a_fallback_zero_point_widens_the_parallax_error_and_ecl_lat_comes_from_the_position() -> None:
    """Review of session 32: a gaia_source query without `ecl_lat` still gets each star's own zero point
    (computed from ra, dec); one without ν_eff gets the fallback, with σ_ϖ widened by the spread of the
    correction it stands for, instead of losing the parallax."""
    from xpengine.features.astrometry import FALLBACK_ZERO_POINT_ERROR_MAS, ecliptic_latitude

    ra, dec = np.array([217.3923, 10.0]), np.array([-62.6761, 40.0])
    g, plx, err = np.array([12.0, 14.0]), np.array([2.0, 0.5]), np.array([0.02, 0.03])
    common = dict(
        nu_eff_used_in_astrometry=np.array([1.5, 1.6]), astrometric_params_solved=np.array([31, 31])
    )
    given = pseudo_luminosity(g, plx, err, ecl_lat=ecliptic_latitude(ra, dec), **common)
    from_position = pseudo_luminosity(g, plx, err, ra=ra, dec=dec, **common)
    assert not given.no_zero_point.any()
    np.testing.assert_array_equal(from_position.zero_point_mas, given.zero_point_mas)
    without = pseudo_luminosity(g, plx, err, **common)  # neither ecl_lat nor a position: no zero point
    assert without.no_zero_point.all() and without.no_parallax.all()
    kept = pseudo_luminosity(g, plx, err, ecl_lat=np.array([5.0, 5.0]), zero_point_fallback=-0.017)
    assert kept.no_zero_point.all() and not kept.no_parallax.any()
    np.testing.assert_allclose(kept.parallax_corrected_mas, plx + 0.017)
    np.testing.assert_allclose(kept.parallax_error_mas, np.hypot(err, FALLBACK_ZERO_POINT_ERROR_MAS))
    np.testing.assert_allclose(kept.fakemag_error, kept.parallax_error_mas * 10 ** (0.2 * g))
    np.testing.assert_array_equal(given.parallax_error_mas, err)  # its own zero point: σ as given


def test_galactic_coordinates_from_icrs_match_astropy():
    """`catalog.sky.icrs_to_galactic`, which the catalogue uses for a gaia_source extract without l, b."""
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    from xpengine.catalog.sky import icrs_to_galactic

    rng = np.random.default_rng(0)
    ra, dec = rng.uniform(0, 360, 500), np.degrees(np.arcsin(rng.uniform(-1, 1, 500)))
    l_deg, b_deg = icrs_to_galactic(np.append(ra, np.nan), np.append(dec, 0.0))
    ref = SkyCoord(ra * u.deg, dec * u.deg, frame="icrs").galactic
    dl = (l_deg[:-1] - ref.l.deg + 180.0) % 360.0 - 180.0
    assert np.max(np.abs(dl) * np.cos(np.radians(b_deg[:-1]))) * 3600 < 0.1  # arcsec
    assert np.max(np.abs(b_deg[:-1] - ref.b.deg)) * 3600 < 0.1
    assert np.isnan(l_deg[-1]) and np.isnan(b_deg[-1])
    assert ((l_deg[:-1] >= 0) & (l_deg[:-1] < 360)).all()


def test_the_fallback_widens_errors_but_not_the_cut_and_a_distance_needs_no_g() -> None:
    """helper-91: σ_ϖ ≤ 0.1 mas judges the measurement, so a fallback zero point does not cost a star its
    pseudo-luminosity; a star without G (one XP band, no gaia_source) keeps its corrected parallax for the
    distance, the pseudo-luminosity (which needs G) not."""
    kw = dict(ecl_lat=np.array([5.0, 5.0]), zero_point_fallback=-0.017)
    lum = pseudo_luminosity(np.array([12.0, np.nan]), np.array([1.0, 10.0]), np.array([0.099, 0.05]), **kw)
    assert np.isfinite(lum.fakemag[0]) and not lum.no_parallax[0]
    assert lum.parallax_error_mas[0] > 0.1  # widened, after the cut
    assert np.isnan(lum.fakemag[1]) and lum.no_parallax[1]
    assert lum.parallax_corrected_mas[1] == pytest.approx(10.017)
