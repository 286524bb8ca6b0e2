"""Session 28's inputs review (helper-79): a band filled with zeros is a missing band, not a spectrum, and
a given G the star's own XP disagree with is flagged G_MISMATCH, with a warning naming the row."""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa
import pytest
from _paths import XP_DIR

from xpengine import io
from xpengine.features import SourceFlag as F
from xpengine.features import build_tokens
from xpengine.features.flags import has_flag
from xpengine.features.normalise import G_ZERO_POINT_MAG
from xpengine.features.synthetic_photometry import g_flux_from_xp


def _xp() -> pa.Table:
    return io.read_xp_continuous(str(XP_DIR / "XP_CONTINUOUS_RAW_with_missing_BP.csv"))  # 3 real stars


def _set_band(t: pa.Table, band: str, row: int, value: float) -> pa.Table:
    for col in (f"{band}_coefficients", f"{band}_coefficient_errors"):
        arrays = t.column(col).to_pylist()
        arrays[row] = [value] * len(arrays[row]) if arrays[row] is not None else None
        t = t.set_column(t.schema.get_field_index(col), col, pa.array(arrays, t.schema.field(col).type))
    return t


def test_a_band_of_zeros_is_a_missing_band(caplog):
    t = _xp()
    plain = build_tokens(t)
    assert not has_flag(plain.flags[2], F.NO_BP | F.READ_PROBLEM)  # the hot star, both bands present
    zero = _set_band(t, "bp", 2, 0.0)
    with caplog.at_level(logging.WARNING, logger="xpengine.features.tokens"):
        tb = build_tokens(zero)
    assert has_flag(tb.flags[2], F.NO_BP) and has_flag(tb.flags[2], F.READ_PROBLEM)
    assert not has_flag(tb.flags[2], F.BP_RP_FROM_XP | F.G_FROM_XP)  # no synthetic G from a zero BP flux
    assert "all coefficients 0" in caplog.text and "source_id 5762406957886626816" in caplog.text
    # the other rows are untouched
    np.testing.assert_array_equal(tb.values[:2], plain.values[:2])
    np.testing.assert_array_equal(tb.flags[:2], plain.flags[:2])


def test_a_given_g_that_the_stars_own_xp_disagree_with_is_flagged(caplog):
    t = _xp()
    both = [0, 2]  # the rows with both bands
    own = []
    for i in both:
        bp = np.asarray(t.column("bp_coefficients")[i].as_py())[None, :]
        rp = np.asarray(t.column("rp_coefficients")[i].as_py())[None, :]
        own.append(G_ZERO_POINT_MAG - 2.5 * np.log10(g_flux_from_xp(bp, rp)[0][0]))
    # a blend's XP hold its neighbour's light: up to 1.4 mag brighter than its G, not flagged; a G 0.9 mag
    # brighter than its XP, 1.6 mag fainter, or the rows swapped (Proxima's G on the hot star): flagged
    for g, expect in (([own[0] + 0.05, 16.0, own[1] - 0.05], False), ([own[0] + 1.4, 16.0, own[1]], False),
                      ([own[0] - 0.9, 16.0, own[1]], True), ([own[0] + 1.6, 16.0, own[1]], True),
                      ([own[1], 16.0, own[0]], True)):  # fmt: skip
        caplog.clear()
        given = t.append_column("phot_g_mean_mag", pa.array(g))
        with caplog.at_level(logging.WARNING, logger="xpengine.features.tokens"):
            tb = build_tokens(given)
        assert has_flag(tb.flags[0], F.G_MISMATCH) == expect
        assert not has_flag(tb.flags[1], F.G_MISMATCH)  # no BP: nothing to hold its G against
        if expect:
            assert "G_MISMATCH" in caplog.text and "source_id 5853498713190525696" in caplog.text
    # without a given G the row is normalised by its own (G_FROM_XP), which is never a mismatch
    assert not has_flag(build_tokens(t).flags, F.G_MISMATCH).any()


def test_g_mismatch_reaches_the_catalogue_row():
    from xpengine.inference.predictor import Predictor

    p = Predictor.load("gaia-xp", device="cpu")
    xp = io.read_xp_continuous(str(XP_DIR / "XP_CONTINUOUS_RAW.csv"))
    ok = p.from_xp(xp, labels=["teff", "logg"], g_mag=[8.98, 13.2])
    swapped = p.from_xp(xp, labels=["teff", "logg"], g_mag=[13.2, 8.98])
    assert not has_flag(ok["flags"].to_numpy(), F.G_MISMATCH).any()
    assert has_flag(swapped["flags"].to_numpy(), F.G_MISMATCH).all()


@pytest.mark.parametrize("band", ["bp", "rp"])
def test_zero_errors_with_real_coefficients_are_still_a_spectrum(band):
    t = _xp()
    arrays = t.column(f"{band}_coefficient_errors").to_pylist()
    arrays[2] = [0.0] * len(arrays[2])
    col = f"{band}_coefficient_errors"
    t2 = t.set_column(t.schema.get_field_index(col), col, pa.array(arrays, t.schema.field(col).type))
    assert not has_flag(build_tokens(t2).flags[2], F.READ_PROBLEM | F.NO_BP | F.NO_RP)


def test_a_g_no_star_can_have_is_taken_as_missing(caplog):
    t = _xp()
    given = t.append_column("phot_g_mean_mag", pa.array([1.2e7, 16.0, 89.8]))  # fluxes as magnitudes
    with caplog.at_level(logging.WARNING, logger="xpengine.features"):
        tb = build_tokens(given)
    assert has_flag(tb.flags, F.READ_PROBLEM).tolist() == [True, False, True]
    # rows with both bands fall back on their own XP's G; the row without BP has a real G and keeps it
    assert has_flag(tb.flags, F.G_FROM_XP).tolist() == [True, False, True]
    assert "outside -2 to 25 mag" in caplog.text and "row 0" in caplog.text


def test_the_catalogue_writes_nan_not_inf_and_one_distance_flag():
    from xpengine.inference.predictor import Predictor

    p = Predictor.load("gaia-xp", device="cpu")
    xp = io.read_xp_continuous(str(XP_DIR / "XP_CONTINUOUS_RAW.csv"))
    rows = p.from_xp(xp, labels=["teff", "logg", "mass"], g_mag=[1.2e7, 1.5e5])
    d = rows["distance_pc"].to_numpy(np.float64)
    assert not np.isinf(d).any()
    f = rows["flags"].to_numpy()
    n_flags = sum(has_flag(f, b).astype(int) for b in (F.DISTANCE_FROM_PARALLAX, F.DISTANCE_FROM_MODEL,
                  F.DISTANCE_FROM_ISOCHRONES, F.NO_DISTANCE))  # fmt: skip
    assert (n_flags == 1).all()
    np.testing.assert_array_equal(has_flag(f, F.NO_DISTANCE), ~np.isfinite(d))


def test_upper_case_gaia_source_names_feed_the_distance_as_they_feed_the_model():
    from xpengine.inference.predictor import Predictor

    p = Predictor.load("gaia-xp", device="cpu")
    xp = io.read_xp_continuous(str(XP_DIR / "XP_CONTINUOUS_RAW.csv"))
    extra = {"phot_g_mean_mag": [8.98, 13.2], "parallax": [768.07, 0.12], "parallax_error": [0.05, 0.02]}
    lower, upper = xp, xp
    for k, v in extra.items():
        lower = lower.append_column(k, pa.array(v))
        upper = upper.append_column(k.upper(), pa.array(v))
    a = p.from_xp(lower, labels=["teff", "logg", "mass"], zero_point_fallback=-0.017)
    b = p.from_xp(upper, labels=["teff", "logg", "mass"], zero_point_fallback=-0.017)
    for col in ("teff", "logg", "mass", "distance_pc", "flags"):
        np.testing.assert_array_equal(a[col].to_numpy(), b[col].to_numpy(), err_msg=col)
    assert has_flag(a["flags"].to_numpy()[0], F.DISTANCE_FROM_PARALLAX)  # Proxima: 1.30 pc


def test_a_zip_given_to_the_reader_says_how_to_read_it(tmp_path):
    import zipfile

    from xpengine.io import GaiaFileError

    z = tmp_path / "dl_products.zip"
    with zipfile.ZipFile(z, "w") as f:
        f.write(XP_DIR / "XP_CONTINUOUS_RAW.csv", "XP_CONTINUOUS-Gaia DR3 1.csv")
    with pytest.raises(
        GaiaFileError, match=r"a zip archive.*zip://MEMBER::.*dl_products\.zip.*xpengine infer"
    ):
        io.read_xp_continuous(str(z))


def test_text_and_decimal_sky_columns_pass_through_as_numbers():
    """The catalogue's own pass-through columns (ra, dec, ...) are read as numpy converts them, a text or
    decimal column too, as before session 31's one-home lookup (its first form refused them: review)."""
    import decimal

    from xpengine.inference.predictor import Predictor

    p = Predictor.load("gaia-xp", device="cpu")
    xp = io.read_xp_continuous(str(XP_DIR / "XP_CONTINUOUS_RAW.csv"))
    xp = xp.append_column("RA", pa.array(["217.4", "10.25"]))
    xp = xp.append_column(
        "dec", pa.array([decimal.Decimal("-62.5"), decimal.Decimal("3.75")], pa.decimal128(20, 15))
    )
    rows = p.from_xp(xp, labels=["teff"])
    np.testing.assert_allclose(rows["ra"].to_numpy(np.float64), [217.4, 10.25])
    np.testing.assert_allclose(rows["dec"].to_numpy(np.float64), [-62.5, 3.75])
