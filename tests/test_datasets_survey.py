"""Survey builder (xpengine.datasets.survey): allStar + DistMass + Gaia XP/gaia_source, hand-made edge cases."""

from __future__ import annotations

import numpy as np
import pytest
from _datasets_sky import STARS, apogee_id, write_distmass, write_sky

from xpengine.datasets.labels import age_years_to_ln_age, bad_aspcap_mask, check_age_in_years
from xpengine.datasets.survey import SurveyInputs, build_survey


def _inputs(d: str, paths: dict[str, str], **kw) -> SurveyInputs:
    return SurveyInputs(allstar=paths["allstar"], distmass=paths["distmass"], xp=d, gaia_source=d, **kw)


@pytest.fixture(scope="module")
def sky(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("sky"))
    return d, write_sky(d)


@pytest.fixture(scope="module")
def built(sky):
    d, paths = sky
    return build_survey(_inputs(d, paths))


def _rows(build) -> dict[str, dict[str, float]]:
    t = build.table
    out = {}
    names = t.column_names
    ids = t.column("apogee_id").to_pylist()
    for i, a in enumerate(ids):
        out[a] = {n: t.column(n)[i].as_py() for n in names}
    return out


def test_kept_and_dropped_stars(built) -> None:
    rows = _rows(built)
    kept = {name for name in STARS if apogee_id(name) in rows}
    assert kept == {
        "good",
        "star_bad",
        "m_h_bad",
        "starflag",
        "other_bit",
        "m_h_cut_flagged",
        "no_gaia_source",
        "no_2mass",
        "twin_high_snr",
        "dm_duplicate",
    }
    s = built.summary
    assert s["extratarg_duplicates_dropped"] == 1
    assert s["no_gaia_match_dropped"] == 1
    assert s["same_gaia_source_rows_dropped"] == 1
    assert (s["mass_cut_dropped"], s["age_cut_dropped"], s["m_h_cut_dropped"]) == (1, 1, 1)
    assert s["without_mass_or_age_dropped"] == 1
    assert s["without_xp_dropped"] == 1
    assert s["stars"] == 10
    assert sum(s["split_counts"].values()) == 10


def test_flags_set_labels_to_nan_but_keep_mass_age(built) -> None:
    rows = _rows(built)
    for name in ("star_bad", "m_h_bad", "starflag", "m_h_cut_flagged"):
        r = rows[apogee_id(name)]
        assert r["teff"] is None or np.isnan(r["teff"]), name
        assert np.isnan(r["logg"]) and np.isnan(r["m_h"]) and r["teff_error"] == 0
        assert r["aspcap_flagged"] is True
        assert np.isfinite(r["mass"]) and np.isfinite(r["ln_age"])
    r = rows[apogee_id("other_bit")]  # ASPCAPFLAG bit 0 only: labels kept
    assert r["teff"] == pytest.approx(4500.0 + 10 * list(STARS).index("other_bit"))
    assert r["m_h"] == pytest.approx(-0.1) and r["m_h_error"] == pytest.approx(0.01)
    assert r["aspcap_flagged"] is False


def test_label_values_units_and_errors(built) -> None:
    rows = _rows(built)
    r = rows[apogee_id("good")]
    assert r["teff"] == pytest.approx(4500.0)  # not the EXTRATARG duplicate's 9999
    assert r["logg"] == pytest.approx(2.5) and r["logg_error"] == pytest.approx(0.03)
    assert r["mass"] == pytest.approx(1.2) and r["mass_error"] == pytest.approx(0.12, rel=1e-6)
    # 4e9 yr → ln(4 Gyr); error ln(10)·mean(0.05, 0.07) dex
    assert r["ln_age"] == pytest.approx(np.log(4.0), rel=1e-6)
    assert r["ln_age_error"] == pytest.approx(np.log(10) * 0.06, rel=1e-6)
    r = rows[apogee_id("other_bit")]  # one of the two age errors missing → the other is used
    assert r["ln_age_error"] == pytest.approx(np.log(10) * 0.05, rel=1e-6)
    assert r["alpha_m"] == pytest.approx(0.05)  # not a paper token: extra column
    assert rows[apogee_id("dm_duplicate")]["mass"] == pytest.approx(1.25)
    assert rows[apogee_id("twin_high_snr")]["teff"] == pytest.approx(4100.0)


def test_tokens_colours_and_xp(built, sky) -> None:
    rows = _rows(built)
    r = rows[apogee_id("good")]
    assert r["jh"] == pytest.approx(0.6, abs=1e-5) and r["jk"] == pytest.approx(0.8, abs=1e-5)
    assert r["jh_error"] == pytest.approx(np.hypot(0.02, 0.02), rel=1e-5)
    assert np.isfinite(r["bprp"]) and np.isfinite(r["g_fakemag"])
    r2 = rows[apogee_id("no_2mass")]
    assert np.isnan(r2["jh"]) and np.isnan(r2["jk"])
    # no gaia_source row: no G flux, hence no XP tokens, flagged NO_GAIA_SOURCE (128)
    r3 = rows[apogee_id("no_gaia_source")]
    assert np.isnan(r3["bp0"]) and r3["flags"] & 128
    assert built.summary["stars_without_xp_tokens"] == 1
    assert built.summary["token_settings"]["leung2023"] is True  # the parallax correction, recorded


def test_xp_tokens_equal_independent_projection(built, sky) -> None:
    """bp/rp tokens = projection of the real archive coefficients / f_G(G) (independent recomputation)."""
    from xpengine.io import list_column_to_numpy, read_gaia_source, read_xp_continuous
    from xpengine.spectra import project_coefficients

    d, _ = sky
    xp = read_xp_continuous(f"{d}/XpContinuousMeanSpectrum_000000-000015.csv.gz")
    gaia = read_gaia_source(f"{d}/GaiaSource_000000-000015.csv.gz")
    sid = STARS["good"]["sid"]
    i = xp.column("source_id").to_pylist().index(sid)
    j = gaia.column("source_id").to_pylist().index(sid)
    bp = list_column_to_numpy(xp.column("bp_coefficients"), 55)[i : i + 1]
    rp = list_column_to_numpy(xp.column("rp_coefficients"), 55)[i : i + 1]
    pbp, prp = project_coefficients(bp, rp)
    g = gaia.column("phot_g_mean_mag")[j].as_py()
    fg = 10 ** ((25.6873668671 - g) / 2.5)
    nrel_bp = xp.column("bp_n_relevant_bases")[i].as_py()
    r = _rows(built)[apogee_id("good")]
    for k in range(min(nrel_bp, 50)):
        assert r[f"bp{k}"] == pytest.approx(pbp[0, k] / fg, rel=2e-6, abs=1e-9)
    assert r["rp0"] == pytest.approx(prp[0, 0] / fg, rel=2e-6)
    if nrel_bp < 52:
        assert r[f"bp{nrel_bp}"] is None or np.isnan(r[f"bp{nrel_bp}"])


def test_keep_without_evolution(sky) -> None:
    d, paths = sky
    b = build_survey(_inputs(d, paths), keep_without_evolution=True)
    rows = _rows(b)
    r = rows[apogee_id("not_in_distmass")]
    assert np.isnan(r["mass"]) and np.isnan(r["ln_age"]) and r["mass_error"] == 0
    assert apogee_id("mass_cut") not in rows  # out-of-range values still drop the star


def test_split_deterministic_and_paper_fractions(built, sky) -> None:
    from xpengine.datasets.splits import split_by_source_id

    t = built.table
    sid = np.asarray(t.column("source_id").to_numpy())
    np.testing.assert_array_equal(
        t.column("split").to_numpy(zero_copy_only=False).astype(str),
        split_by_source_id(sid, val_fraction=0.09, test_fraction=0.1),
    )
    assert t.schema.metadata[b"xpengine.training_schema"] == b"1"


# ---------------------------------------------------------------------------------------------- errors


def test_missing_allstar_column(tmp_path) -> None:
    d = str(tmp_path)
    paths = write_sky(d, drop_allstar=("M_H",), only_ids=[])
    with pytest.raises(ValueError, match=r"allStar file .*missing column\(s\) \['M_H'\]"):
        build_survey(_inputs(d, paths))


def test_ages_in_gyr_rejected(tmp_path) -> None:
    d = str(tmp_path)
    paths = write_sky(d, age_unit=1e-9, only_ids=[])
    with pytest.raises(ValueError, match=r"'AGE_COR_SS' has median .* looks like ages in Gyr"):
        build_survey(_inputs(d, paths))


def test_wrong_mass_column_named(tmp_path) -> None:
    d = str(tmp_path)
    paths = write_sky(d, mass_name="M_ISO", only_ids=[])
    with pytest.raises(ValueError, match=r"DistMass file .*missing column\(s\) \['MASS', 'MASS_ERR'\]"):
        build_survey(_inputs(d, paths))
    # configured names work
    write_distmass(paths["distmass"], mass_name="M_ISO")
    with pytest.raises(ValueError, match="empty cross-match"):
        build_survey(_inputs(d, paths), mass_column="M_ISO", mass_error_column="M_ISO_ERR")


def test_empty_cross_match(tmp_path) -> None:
    d = str(tmp_path)
    paths = write_sky(d, only_ids=[])  # XP files hold no survey star
    with pytest.raises(ValueError, match=r"empty cross-match: none of the 11 survey stars"):
        build_survey(_inputs(d, paths))


def test_no_xp_files(tmp_path, sky) -> None:
    _, paths = sky
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no XpContinuousMeanSpectrum"):
        build_survey(SurveyInputs(paths["allstar"], paths["distmass"], str(empty), str(empty)))


# ---------------------------------------------------------------------------------------------- labels


def test_label_helpers() -> None:
    flags = np.array([0, 1 << 19, 1 << 23, 1, (1 << 19) | 1], dtype=np.int64)
    star = np.array([0, 0, 0, 0, 0])
    np.testing.assert_array_equal(bad_aspcap_mask(flags, star), [False, True, True, False, True])
    np.testing.assert_array_equal(bad_aspcap_mask(np.zeros(2, np.int64), np.array([0, 8])), [False, True])
    ln, err = age_years_to_ln_age(
        np.array([1e9, 1e10, -1.0, np.nan]), np.array([[0.1, 0.3], [np.nan, 0.2], [0.1, 0.1], [0.1, 0.1]])
    )
    np.testing.assert_allclose(ln[:2], [0.0, np.log(10.0)])
    assert np.isnan(ln[2]) and np.isnan(ln[3])
    np.testing.assert_allclose(err[:2], [np.log(10) * 0.2, np.log(10) * 0.2])
    check_age_in_years(np.array([1e9, 5e9]))
    with pytest.raises(ValueError, match="median 3"):
        check_age_in_years(np.array([2.0, 3.0, 4.0]), column="AGE")
