"""Every preset on a simulated catalogue, checked against a numpy computation on the same data."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _query_catalog import LABELS, f64, giants_mask, simulate, to_table, write_catalog

from xpengine.catalog.extinction import coefficients
from xpengine.catalog.presets import PRESETS, describe_presets
from xpengine.catalog.query import QueryError, open_catalog, query_catalog
from xpengine.catalog.schema import catalog_schema
from xpengine.catalog.sky import hpx8_to_level
from xpengine.features.flags import SourceFlag

N = 24_000


@pytest.fixture(scope="module")
def cat(simulated_catalog):
    return simulated_catalog("catalog", N, seed=3)


def _robust_sigma(x: np.ndarray) -> float:
    return 1.4826 * float(np.median(np.abs(x - np.median(x))))


def test_giants_default_cuts(cat):
    d, cols = cat
    t = query_catalog(d, preset="giants")
    expected = cols["source_id"][giants_mask(cols)]
    assert 300 < len(expected) < N / 5  # the cuts bite, and leave enough stars
    assert np.array_equal(np.sort(t.column("source_id").to_numpy()), np.sort(expected))
    assert t.schema.names == catalog_schema(["teff", "logg", "m_h", "mass", "age"]).names
    # no flagged or non-finite star slipped through
    assert not np.any(t.column("flags").to_numpy() & int(SourceFlag.NO_PREDICTION))
    assert np.all(np.isfinite(t.column("logg").to_numpy()))


def test_giants_parameters_change_the_cuts(cat):
    d, cols = cat
    params = {
        "logg_max": "3.0",
        "logg_min": 1.0,
        "teff_error_max": "none",
        "age_rel_error_max": 0.25,
        "exclude_flags": int(SourceFlag.NO_PREDICTION),
    }
    t = query_catalog(d, preset="giants", params=params)
    m = giants_mask(
        cols, logg_max=3.0, logg_min=1.0, teff_e=None, age_rel=0.25, exclude=int(SourceFlag.NO_PREDICTION)
    )
    assert np.array_equal(np.sort(t.column("source_id").to_numpy()), np.sort(cols["source_id"][m]))
    # all cuts off: every row except those with NO_PREDICTION... and none when exclude_flags = 0
    off = {
        k: "none"
        for k in (
            "logg_max",
            "teff_error_max",
            "logg_error_max",
            "m_h_error_max",
            "mass_rel_error_max",
            "age_rel_error_max",
        )
    }
    assert query_catalog(d, preset="giants", params={**off, "exclude_flags": 0}).num_rows == N


def test_age_metallicity_matches_numpy(cat):
    d, cols = cat
    t = query_catalog(d, preset="age-metallicity").to_pydict()
    m_h, age, age_e = f64(cols, "m_h"), f64(cols, "age"), f64(cols, "age_error")
    sel = giants_mask(cols) & np.isfinite(m_h) & np.isfinite(age)
    rows = []
    for k in range(32):  # -2.5 .. 0.7 in 0.1 dex
        lo, hi = -2.5 + k * 0.1, -2.5 + (k + 1) * 0.1
        inb = sel & (m_h >= lo) & (m_h < hi)
        if inb.sum() >= 5:
            a = age[inb]
            rows.append(
                (
                    k,
                    lo,
                    hi,
                    inb.sum(),
                    np.median(m_h[inb]),
                    np.median(a),
                    np.percentile(a, 16),
                    np.percentile(a, 84),
                    _robust_sigma(a),
                    np.median(age_e[inb]),
                )
            )
    assert len(rows) >= 20
    assert t["bin"] == [r[0] for r in rows]
    assert t["n"] == [r[3] for r in rows]
    for j, name in enumerate(
        [
            "bin",
            "m_h_lo",
            "m_h_hi",
            "n",
            "median_m_h",
            "median_age",
            "age_p16",
            "age_p84",
            "robust_sigma_age",
            "median_age_error",
        ]
    ):
        np.testing.assert_allclose(t[name], [r[j] for r in rows], rtol=1e-9, atol=1e-12, err_msg=name)


def test_age_metallicity_slice_and_bins(cat):
    """A Fig. 15-like slice at logg 2.3–2.7 with coarse bins and min_count."""
    d, cols = cat
    p = {"logg_min": 2.3, "logg_max": 2.7, "m_h_min": -2.0, "m_h_max": 0.5, "m_h_step": 0.5, "min_count": 1}
    t = query_catalog(d, preset="age-metallicity", params=p).to_pydict()
    m_h, age = f64(cols, "m_h"), f64(cols, "age")
    sel = giants_mask(cols, logg_min=2.3, logg_max=2.7) & np.isfinite(age)
    counts = [int((sel & (m_h >= -2.0 + 0.5 * k) & (m_h < -1.5 + 0.5 * k)).sum()) for k in range(5)]
    assert t["n"] == counts
    assert sum(t["n"]) == int((sel & (m_h >= -2.0) & (m_h < 0.5)).sum())


def test_age_map_galactic_matches_numpy(cat):
    d, cols = cat
    p = {"l_step": 30.0, "b_step": 30.0, "min_count": 3}
    t = query_catalog(d, preset="age-map", params=p).to_pydict()
    glon, glat, age = f64(cols, "l"), f64(cols, "b"), f64(cols, "age")
    sel = giants_mask(cols) & np.isfinite(age) & np.isfinite(glon)
    expected = []
    for i in range(12):
        for j in range(6):
            inb = (
                sel
                & (glon >= 30 * i)
                & (glon < 30 * (i + 1))
                & (glat >= -90 + 30 * j)
                & (glat < -60 + 30 * j)
            )
            if inb.sum() >= 3:
                expected.append(
                    (30.0 * i, -90.0 + 30 * j, int(inb.sum()), np.median(age[inb]), _robust_sigma(age[inb]))
                )
    assert len(expected) > 30
    assert list(zip(t["l_lo"], t["b_lo"], t["n"], strict=True)) == [e[:3] for e in expected]
    np.testing.assert_allclose(t["median_age"], [e[3] for e in expected], rtol=1e-9)
    np.testing.assert_allclose(t["robust_sigma_age"], [e[4] for e in expected], rtol=1e-9)
    # stars without gaia_source positions are not on the map
    assert sum(t["n"]) <= int((giants_mask(cols) & np.isfinite(age)).sum()) - 1


def test_age_map_healpix_matches_numpy(cat):
    d, cols = cat
    t = query_catalog(d, preset="age-map", params={"grid": "healpix", "level": 2, "min_count": 1}).to_pydict()
    age = f64(cols, "age")
    sel = giants_mask(cols) & np.isfinite(age)
    pix = cols["hpx8"].astype(np.int64) >> 12  # level 2: 4 levels of 2 bits below level 8
    expected = [
        (p, int((sel & (pix == p)).sum()), np.median(age[sel & (pix == p)])) for p in np.unique(pix[sel])
    ]
    assert t["pixel"] == [e[0] for e in expected]
    assert t["n"] == [e[1] for e in expected]
    np.testing.assert_allclose(t["median_age"], [e[2] for e in expected], rtol=1e-9)
    assert set(t["level"]) == {2}
    # the pixel centres in the output are where the member stars are: within a level-2 pixel (~30°)
    glon, glat = f64(cols, "l"), f64(cols, "b")
    for k in range(0, len(t["pixel"]), 17):
        members = sel & (pix == t["pixel"][k]) & np.isfinite(glon)
        dl = np.deg2rad(glon[members] - t["l_centre"][k])
        cosd = np.sin(np.deg2rad(glat[members])) * np.sin(np.deg2rad(t["b_centre"][k])) + np.cos(
            np.deg2rad(glat[members])
        ) * np.cos(np.deg2rad(t["b_centre"][k])) * np.cos(dl)
        assert np.rad2deg(np.arccos(np.clip(cosd, -1, 1))).max() < 25.0
    assert np.array_equal(hpx8_to_level(cols["hpx8"], 2), pix)


def test_mass_age_matches_numpy(cat):
    d, cols = cat
    p = {"mass_step": 0.5, "age_step": 2.0, "min_count": 2}
    t = query_catalog(d, preset="mass-age", params=p).to_pydict()
    mass, age, m_h = f64(cols, "mass"), f64(cols, "age"), f64(cols, "m_h")
    sel = giants_mask(cols) & np.isfinite(m_h) & (mass >= 0.5) & (mass < 4.0) & (age >= 0) & (age < 14.0)
    expected = []
    for i in range(7):
        for j in range(7):
            inb = (
                sel
                & (mass >= 0.5 + 0.5 * i)
                & (mass < 1.0 + 0.5 * i)
                & (age >= 2.0 * j)
                & (age < 2.0 * (j + 1))
            )
            if inb.sum() >= 2:
                expected.append((0.5 + 0.5 * i, 2.0 * j, int(inb.sum()), np.median(m_h[inb])))
    assert len(expected) > 20
    assert list(zip(t["mass_lo"], t["age_lo"], t["n"], strict=True)) == [e[:3] for e in expected]
    np.testing.assert_allclose(t["median_m_h"], [e[3] for e in expected], rtol=1e-9)
    assert t["mass_hi"][0] - t["mass_lo"][0] == pytest.approx(0.5)


# -- red clump: hand-placed stars -------------------------------------------------------------
# Bovy et al. 2014: 1.8 ≤ logg ≤ 0.0018 (Teff − Teff_ref) + 2.5, Teff_ref = −382.5 [M/H] + 4607,
# Z = 0.017·10^[M/H] ≤ 0.06; this preset adds Teff − Teff_ref ≥ 70 K (teff_offset_min), applied in the
# tests below on top of the "RC by Teff–logg–Z" column; with (J−Ks)0: 0.5 ≤ jk0 < 0.8,
# 1.21 (jk0 − 0.05)^9 + 0.0011 ≤ Z ≤ 2.58 (jk0 − 0.40)^3 + 0.0034.
RC_STARS = [
    # (name, teff, logg, m_h, flags, jk0, RC by Teff–logg–Z, RC with colours)
    ("A", 4700.0, 2.40, 0.0, 0, 0.60, True, True),  # upper logg 2.667; Z .017 in [.0067, .0240]
    ("B", 4700.0, 2.70, 0.0, 0, 0.60, False, False),  # above 2.667
    ("C", 4700.0, 2.40, -0.5, 0, 0.60, False, False),  # Teff_ref 4798.25 → upper 2.323
    ("D", 4700.0, 2.30, -0.5, 0, 0.60, True, False),  # below 2.323; Z .00538 < lower .0067 at jk0 .6
    ("E", 4700.0, 1.70, 0.0, 0, 0.60, False, False),  # logg < 1.8
    ("F", 4700.0, 2.50, 0.6, 0, 0.70, False, False),  # Z = .0677 > .06
    ("G", 4700.0, 2.50, 0.5, 0, 0.60, True, False),  # Z = .0538 ≤ .06; upper Z(jk0 .6) = .0240 < Z
    ("H", 4700.0, 2.40, 0.0, int(SourceFlag.OUTSIDE_TRAINING_DOMAIN), 0.60, False, False),
    ("I", np.nan, 2.40, 0.0, 0, 0.60, False, False),  # no Teff prediction
    ("J", 4700.0, 2.40, 0.0, int(SourceFlag.NO_2MASS), 0.60, True, True),  # feature bit: not a quality cut
    ("K", 4700.0, 2.40, 0.0, 0, 0.45, True, False),  # jk0 < 0.5
    ("L", 4700.0, 2.40, 0.0, 0, 0.52, True, False),  # Z .017 > upper 2.58·.12³ + .0034 = .00786
    ("M", 4700.0, 2.40, 0.0, 0, 0.75, True, False),  # Z .017 < lower 1.21·.7⁹ + .0011 = .0499
    ("N", 4700.0, 2.40, 0.0, 0, 0.85, True, False),  # jk0 ≥ 0.8
    ("O", 5100.0, 3.30, 0.2, 0, 0.62, True, True),  # upper logg 3.525; Z .0269 in [.0088, .0309]
    ("Q", 5100.0, 3.30, 0.2, 0, 0.55, True, False),  # as O, but Z .0269 > upper 2.58·.15³ + .0034 = .0121
    ("P", 4607.0, 2.50, 0.0, 0, 0.60, True, True),  # exactly on the upper limit (2.5): inclusive
    # 0.0003 dex either side of the upper limit at [M/H] = -1: 0.0018·(4800 − 4989.5) + 2.5 = 2.1589;
    # Z = 0.0017 is below the colour cut's lower bound for every jk0 ≥ 0.5 (≥ 0.0020)
    ("R", 4800.0, 2.1586, -1.0, 0, 0.60, True, False),
    ("S", 4800.0, 2.1592, -1.0, 0, 0.60, False, False),
    # HIGH_UNCERTAINTY follows the mass and age σ: not a red-clump quality cut
    ("T", 4700.0, 2.40, 0.0, int(SourceFlag.HIGH_UNCERTAINTY), 0.60, True, True),
    # Teff − Teff_ref = 70 K exactly (inclusive) and 69 K at [M/H] = 0 (Teff_ref 4607 K)
    ("Z1", 4677.0, 2.30, 0.0, 0, 0.60, True, True),
    ("Z2", 4676.0, 2.30, 0.0, 0, 0.60, True, True),
]


def _hot_enough(teff: float, m_h: float) -> bool:
    """The preset's default Teff − Teff_ref ≥ 70 K (NaN Teff: False)."""
    return bool(teff - (-382.5 * m_h + 4607.0) >= 70.0)


def _rc_want(column: int, offset_cut: bool = True) -> list[str]:
    """Names of RC_STARS selected by the Teff–logg–Z cuts (column 6) or with colours (7)."""
    return [s[0] for s in RC_STARS if s[column] and (not offset_cut or _hot_enough(s[1], s[3]))]


# Every star above has a parallax distance and M_G0 = 0.44 (the clump's); these differ only there:
# (name, M_G0 or None for no parallax distance, selected by default)
RC_MAGNITUDES = [
    ("U", 1.50, False),  # a first-ascent giant below the clump
    ("V", -0.50, False),  # above it
    ("W", 0.05, True),  # inside the window [0.04, 0.84]
    ("X", 0.83, True),
    ("Y", None, False),  # distance from the model, not a parallax
]


def _a_g(teff: float, logg: float, m_h: float, ebv: float) -> float:
    """A_G / E(B−V) of one star under the catalogue's star-by-star law."""
    return float(coefficients(np.array([teff]), np.array([ebv]), np.array([logg]), np.array([m_h]))[0][0])


def _rc_catalog(tmp_path):
    stars = RC_STARS + [(name, 4700.0, 2.40, 0.0, 0, 0.60, True, True) for name, *_ in RC_MAGNITUDES]
    mg0 = [0.44] * len(RC_STARS) + [m for _, m, _ in RC_MAGNITUDES]
    n = len(stars)
    cols = simulate(n, seed=9, labels=(*LABELS, "ebv"))
    for k, (_, teff, logg, m_h, flags, *_rest) in enumerate(stars):
        cols["teff"][k], cols["logg"][k], cols["m_h"][k] = teff, logg, m_h
        # G = M_G0 + 5 log10(d / 10 pc) + A_G with d = 2 kpc, E(B−V) = 0.3 and the star's own A_G / E(B−V)
        cols["ebv"][k] = 0.3
        cols["distance_pc"][k] = 2000.0
        cols["phot_g_mean_mag"][k] = (
            (mg0[k] if mg0[k] is not None else 0.44) + 5 * np.log10(200.0) + _a_g(teff, logg, m_h, 0.3) * 0.3
        )
        by = SourceFlag.DISTANCE_FROM_PARALLAX if mg0[k] is not None else SourceFlag.DISTANCE_FROM_MODEL
        cols["flags"][k] = flags | int(by)
    d = tmp_path / "rc"
    d.mkdir()
    pq.write_table(to_table(cols, (*LABELS, "ebv")), d / "XpContinuousMeanSpectrum_000000-786431.parquet")
    colours = pa.table({"source_id": cols["source_id"], "jk0": [s[5] for s in stars]})
    pq.write_table(colours, tmp_path / "colours.parquet")
    return d, cols, {sid: st[0] for sid, st in zip(cols["source_id"], stars, strict=True)}


def test_red_clump_hand_placed_stars(tmp_path):
    d, cols, names = _rc_catalog(tmp_path)
    t = query_catalog(d, preset="red-clump")
    got = sorted(names[s] for s in t.column("source_id").to_pylist())
    want = _rc_want(6) + [name for name, _, sel in RC_MAGNITUDES if sel]
    assert got == sorted(want)
    assert "Z1" in got and not {"Z2", "P", "D", "R"} & set(got)  # 70 K, 69 K, 0 K, −98 K, −190 K
    # the same with a numpy transcription of the published formulas and the magnitude window
    teff, logg, m_h, g, dist, ebv = (
        cols[c].astype(np.float64) for c in ("teff", "logg", "m_h", "phot_g_mean_mag", "distance_pc", "ebv")
    )
    upper = 0.0018 * (teff - (-382.5 * m_h + 4607.0)) + 2.5
    z = 0.017 * 10**m_h
    flags = cols["flags"].astype(np.int64)
    quality = (flags & int(SourceFlag.NO_PREDICTION | SourceFlag.OUTSIDE_TRAINING_DOMAIN)) == 0
    mg0 = g - 5 * np.log10(dist / 10) - coefficients(teff, ebv, logg, m_h)[0] * ebv
    by_plx = (flags & int(SourceFlag.DISTANCE_FROM_PARALLAX)) != 0
    hot = teff - (-382.5 * m_h + 4607.0) >= 70.0
    m = quality & (logg >= 1.8) & (logg <= upper) & (z <= 0.06) & by_plx & (mg0 >= 0.04) & (mg0 <= 0.84)
    assert got == sorted(names[s] for s in cols["source_id"][m & hot])
    # teff_offset_min=none: Bovy et al.'s cuts as published
    t = query_catalog(d, preset="red-clump", params={"teff_offset_min": "none"})
    assert sorted(names[s] for s in t.column("source_id").to_pylist()) == sorted(
        names[s] for s in cols["source_id"][m]
    )
    # without the magnitude cut: the Teff–logg–[M/H] cuts alone (every hand-placed magnitude star passes)
    t = query_catalog(d, preset="red-clump", params={"mg0_min": "none"})
    got = sorted(names[s] for s in t.column("source_id").to_pylist())
    assert got == sorted(_rc_want(6) + [name for name, *_ in RC_MAGNITUDES])
    with pytest.raises(QueryError, match=r"mg0_max.*needs the magnitude cut"):
        query_catalog(d, preset="red-clump", params={"mg0_min": "none", "mg0_max": 1.0})
    with pytest.raises(QueryError, match=r"extinction.*needs the magnitude cut"):
        query_catalog(d, preset="red-clump", params={"mg0_min": "none", "extinction": "constant"})
    with pytest.raises(QueryError, match=r"r_g.*needs extinction=constant"):
        query_catalog(d, preset="red-clump", params={"r_g": 2.5})
    with pytest.raises(QueryError, match=r"extinction.*one of"):
        query_catalog(d, preset="red-clump", params={"extinction": "sfd"})


def test_red_clump_constant_extinction(tmp_path):
    """extinction=constant dereddens every star by r_g (the rule until session 24): stars placed at the
    clump's M_G0 with their own A_G come out brighter by (r_g − A_G/E(B−V))·E(B−V), and one near the
    window's bright edge leaves it; a constant equal to a star's own coefficient gives the default's selection."""
    d, cols, names = _rc_catalog(tmp_path)
    k_x = _a_g(4700.0, 2.40, 0.0, 0.3)
    assert 2.4 < k_x < 2.6  # a clump star's coefficient, well below the solar-type 2.74
    g, dist, ebv = (cols[c].astype(np.float64) for c in ("phot_g_mean_mag", "distance_pc", "ebv"))
    flags = cols["flags"].astype(np.int64)
    base = query_catalog(d, preset="red-clump", params={"mg0_min": "none"})
    base_ids = set(base.column("source_id").to_pylist())
    by_plx = (flags & int(SourceFlag.DISTANCE_FROM_PARALLAX)) != 0
    for r_g in (2.74, k_x):
        t = query_catalog(d, preset="red-clump", params={"extinction": "constant", "r_g": r_g})
        mg0 = g - 5 * np.log10(dist / 10) - r_g * ebv
        want = {
            s for s, ok in zip(cols["source_id"], by_plx & (mg0 >= 0.04) & (mg0 <= 0.84), strict=True) if ok
        }
        assert set(t.column("source_id").to_pylist()) == want & base_ids
    got_274 = {
        names[s]
        for s in query_catalog(d, preset="red-clump", params={"extinction": "constant"})
        .column("source_id")
        .to_pylist()
    }
    default = {names[s] for s in query_catalog(d, preset="red-clump").column("source_id").to_pylist()}
    assert "W" in default and "W" not in got_274  # M_G0 0.05 by its own A_G, −0.03 with 2.74
    assert default - got_274 == {"W"}


def test_red_clump_with_colours(tmp_path):
    d, _, names = _rc_catalog(tmp_path)
    t = query_catalog(
        d, preset="red-clump", params={"jk0_view": "colours"}, joins={"colours": tmp_path / "colours.parquet"}
    )
    assert sorted(names[s] for s in t.column("source_id").to_pylist()) == sorted(
        _rc_want(7) + [name for name, _, sel in RC_MAGNITUDES if sel]
    )
    assert "jk0" in t.column_names
    assert t.schema.metadata is not None


def test_red_clump_colour_view_must_exist(tmp_path):
    d, _, _ = _rc_catalog(tmp_path)
    with pytest.raises(QueryError, match="jk0_view 'colours' is not a joined table"):
        query_catalog(d, preset="red-clump", params={"jk0_view": "colours"})
    with pytest.raises(QueryError, match=r"jk0_min.*needs jk0_view"):
        query_catalog(d, preset="red-clump", params={"jk0_min": 0.4})


def test_result_units_metadata(cat):
    import json

    d, _ = cat
    t = query_catalog(d, preset="age-metallicity")
    units = json.loads(t.schema.metadata[b"xpengine.units"])
    assert units["median_age"] == "Gyr" and units["m_h_lo"] == "dex"
    rows = query_catalog(d, "SELECT source_id, teff, age, 2 AS two FROM catalog LIMIT 3")
    units = json.loads(rows.schema.metadata[b"xpengine.units"])
    assert units == {"source_id": "", "teff": "K", "age": "Gyr"}


def test_presets_missing_labels_and_bad_parameters(tmp_path):
    labels = ("teff", "logg", "m_h")  # a catalogue without mass and age
    cols = simulate(300, seed=5, labels=labels)
    d = tmp_path / "nomass"
    write_catalog(d, cols, labels=labels)
    # giants: default σ cuts on absent labels are skipped ...
    t = query_catalog(d, preset="giants")
    m = giants_mask(cols, mass_rel=None, age_rel=None)
    assert t.num_rows == int(m.sum())
    # ... but an explicit one is an error, as are presets that need the labels
    with pytest.raises(QueryError, match=r"age_rel_error_max.*age_error"):
        query_catalog(d, preset="giants", params={"age_rel_error_max": 0.2})
    with pytest.raises(QueryError, match=r"preset 'mass-age' needs column\(s\) \['mass', 'age'\]"):
        query_catalog(d, preset="mass-age")
    with pytest.raises(QueryError, match="unknown preset 'dwarfs'"):
        query_catalog(d, preset="dwarfs")
    with pytest.raises(QueryError, match=r"no parameter\(s\) \['logg_maximum'\]"):
        query_catalog(d, preset="giants", params={"logg_maximum": 3})
    with pytest.raises(QueryError, match="'logg_max' must be a float, got 'three'"):
        query_catalog(d, preset="giants", params={"logg_max": "three"})
    with pytest.raises(QueryError, match="'teff_error_max' must be ≥ 0"):
        query_catalog(d, preset="giants", params={"teff_error_max": -1})
    with pytest.raises(QueryError, match="'exclude_flags' cannot be switched off"):
        query_catalog(d, preset="giants", params={"exclude_flags": "none"})


def test_bins_must_tile_the_range(cat):
    d, _ = cat
    with pytest.raises(QueryError, match=r"not a whole number of steps of 0\.3"):
        query_catalog(d, preset="age-metallicity", params={"m_h_step": 0.3})
    with pytest.raises(QueryError, match="must be one of"):
        query_catalog(d, preset="age-map", params={"grid": "mollweide"})
    with pytest.raises(QueryError, match="'level' must be ≤ 8"):
        query_catalog(d, preset="age-map", params={"grid": "healpix", "level": 9})


def test_every_preset_is_documented():
    text = describe_presets()
    for name, spec in PRESETS.items():
        assert name in text and spec.doc.strip()
        for p in spec.params:
            assert p.name in text and p.help
    assert "Bovy et al. 2014" in PRESETS["red-clump"].doc
    assert "-382.5" in PRESETS["red-clump"].doc.replace("−", "-")


def test_preset_sql_is_standalone(cat):
    """The SQL shown by --show-sql runs as a plain query and gives the preset's result."""
    d, _ = cat
    with open_catalog(d) as c:
        sql = c.preset_sql("age-metallicity", {"m_h_step": 0.2})
        assert "0.2" in sql
        assert c.sql(sql).equals(c.preset("age-metallicity", {"m_h_step": 0.2}))


def test_extinction_sql_functions_match_the_catalogue_law(tmp_path):
    """`a_g_per_ebv` / `e_bp_rp_per_ebv` in SQL give `extinction.coefficients` row by row; NULL gives NULL."""
    d, cols, _ = _rc_catalog(tmp_path)
    cols["ebv"][:4] = [0.0, 0.05, 1.0, 4.0]  # E(B−V) moves the coefficient too
    pq.write_table(to_table(cols, (*LABELS, "ebv")), d / "XpContinuousMeanSpectrum_000000-786431.parquet")
    t = query_catalog(
        d,
        "SELECT source_id, a_g_per_ebv(teff, logg, m_h, ebv) AS k_g, e_bp_rp_per_ebv(teff, logg, m_h, ebv) AS k_c,"
        " a_g_per_ebv(NULL, logg, m_h, ebv) AS k_null FROM catalog ORDER BY source_id",
    )
    order = np.argsort(cols["source_id"])
    teff, logg, m_h, ebv = (cols[c].astype(np.float64)[order] for c in ("teff", "logg", "m_h", "ebv"))
    k_g, k_c = coefficients(teff, ebv, logg, m_h)
    np.testing.assert_allclose(t["k_g"].to_numpy(), k_g, rtol=1e-12)
    np.testing.assert_allclose(t["k_c"].to_numpy(), k_c, rtol=1e-12)
    assert t["k_null"].null_count == len(t)
    assert (
        np.isnan(teff).any() and np.ptp(k_g[np.isfinite(teff)]) > 0.05
    )  # NaN Teff: the constant; others vary


def test_a_join_the_preset_does_not_read_is_named_in_a_warning(tmp_path, capsys):
    """`--join colours=FILE` without `-p jk0_view=colours` changes nothing: the command says so."""
    from xpengine.cli import main

    d, _, _ = _rc_catalog(tmp_path)
    colours = str(tmp_path / "colours.parquet")
    assert main(["query", str(d), "--preset", "red-clump", "--join", f"colours={colours}", "--count"]) == 0
    err = capsys.readouterr().err
    assert "--join colours not used by the preset red-clump" in err and "-p jk0_view=NAME" in err
    args = [
        "query",
        str(d),
        "--preset",
        "red-clump",
        "--join",
        f"colours={colours}",
        "-p",
        "jk0_view=colours",
    ]
    assert main([*args, "--count"]) == 0
    assert "not used by the preset" not in capsys.readouterr().err


def test_a_g_that_disagrees_with_the_xp_disqualifies_a_star(tmp_path):
    """G_MISMATCH (the given G is not the star's own: every label was normalised by it) is in the presets'
    default `exclude_flags` since session 29, `giants` and `red-clump` alike; exclude_flags without it
    keeps such a star."""
    schema = catalog_schema(LABELS)
    row = {f.name: 0 for f in schema}
    row.update(teff=4800.0, teff_error=40.0, logg=2.45, logg_error=0.1, m_h=0.0, m_h_error=0.05)
    row.update(mass=1.2, mass_error=0.1, age=3.0, age_error=0.6, flags=0)
    rows = [dict(row, source_id=1), dict(row, source_id=2, flags=int(SourceFlag.G_MISMATCH))]
    table = pa.Table.from_pylist(rows, schema=schema)
    pq.write_table(table, tmp_path / "part.parquet")
    for preset, params in (("giants", {}), ("red-clump", {"mg0_min": "none", "teff_offset_min": "none"})):
        kept = query_catalog(tmp_path, preset=preset, params=params).column("source_id").to_pylist()
        assert kept == [1], preset
        loose = {**params, "exclude_flags": int(SourceFlag.NO_PREDICTION)}
        assert sorted(
            query_catalog(tmp_path, preset=preset, params=loose).column("source_id").to_pylist()
        ) == [1, 2]
