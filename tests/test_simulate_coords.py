"""Sky geometry of the simulator against real Gaia DR3 rows and astropy."""

from __future__ import annotations

import numpy as np
import pytest
from _paths import GAIA_SOURCE_DIR

from xpengine.simulate.coords import (
    bulk_suffix,
    default_partitions,
    ecliptic_latitude,
    galactic_to_icrs,
    healpix_nest_to_radec,
    icrs_to_galactic,
)

GAIA_ECSV = GAIA_SOURCE_DIR / "1712337806100O-result.ecsv"  # bundled real gaia_source rows (tests/data)


def test_base_pixel_centres_match_healpix_definition():
    # Górski et al. 2005: the 12 base pixels have centres at z = ±2/3 (north/south rows) and 0 (equator)
    ra, dec = healpix_nest_to_radec(np.arange(12), 0)
    np.testing.assert_allclose(dec[:4], np.rad2deg(np.arcsin(2 / 3)), atol=1e-12)
    np.testing.assert_allclose(dec[4:8], 0.0, atol=1e-12)
    np.testing.assert_allclose(dec[8:], -np.rad2deg(np.arcsin(2 / 3)), atol=1e-12)
    np.testing.assert_allclose(ra[:4], [45, 135, 225, 315])
    np.testing.assert_allclose(ra[4:8], [0, 90, 180, 270])


def test_real_source_ids_sit_in_their_level12_pixel_and_lb_match_gaia():
    from astropy.table import Table

    t = Table.read(GAIA_ECSV, format="ascii.ecsv")
    sid = np.asarray(t["source_id"], dtype=np.int64)
    ra_c, dec_c = healpix_nest_to_radec(sid >> 35, 12)
    # level-12 pixels are ~0.86 arcmin across: the real position is within one pixel of the centre
    sep = np.hypot((ra_c - t["ra"]) * np.cos(np.deg2rad(t["dec"])), dec_c - t["dec"])
    assert np.all(sep < 0.86 / 60)
    l_deg, b_deg = icrs_to_galactic(np.asarray(t["ra"]), np.asarray(t["dec"]))
    np.testing.assert_allclose(l_deg, t["l"], atol=1e-8)
    np.testing.assert_allclose(b_deg, t["b"], atol=1e-8)
    np.testing.assert_allclose(
        ecliptic_latitude(np.asarray(t["ra"]), np.asarray(t["dec"])), t["ecl_lat"], atol=1e-5
    )


def test_galactic_round_trip_and_astropy():
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    rng = np.random.default_rng(0)
    ra = rng.uniform(0, 360, 200)
    dec = np.rad2deg(np.arcsin(rng.uniform(-1, 1, 200)))
    l_deg, b_deg = icrs_to_galactic(ra, dec)
    c = SkyCoord(ra * u.deg, dec * u.deg).galactic
    dl = (l_deg - c.l.deg + 180) % 360 - 180
    # astropy's Galactic frame is tied to FK4/FK5 (Blaauw 1960); Gaia's matrix (Hipparcos vol. 1 §1.5.3)
    # is defined on ICRS: they differ by ~0.1 arcsec, while the Gaia rows above agree to 1e-8 deg
    assert np.max(np.abs(dl * np.cos(np.deg2rad(b_deg)))) < 0.5 / 3600
    assert np.max(np.abs(b_deg - c.b.deg)) < 0.5 / 3600
    ra2, dec2 = galactic_to_icrs(l_deg, b_deg)
    np.testing.assert_allclose(((ra2 - ra + 180) % 360) - 180, 0, atol=1e-9)
    np.testing.assert_allclose(dec2, dec, atol=1e-9)


def test_partitions_and_suffix():
    parts = default_partitions(3)
    assert parts[0] == (0, 3111)
    assert bulk_suffix(*parts[0]) == "000000-003111"
    assert all(lo <= hi for lo, hi in parts) and len({p[0] for p in parts}) == 3
    with pytest.raises(ValueError, match="invalid HEALPix-8 range"):
        bulk_suffix(5, 3)
