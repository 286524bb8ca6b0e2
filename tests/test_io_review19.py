"""Review 19 of the input layer: files that real writers (astropy, GaiaXPy, pandas) make and the readers
misread or could not open, and the errors that did not name their file, row or column.

1. VOTable fixed-arraysize columns (`55`, `343`: astropy and GaiaXPy) with a null array: a missing band
   or spectrum, never its fill values (0) read as real data; partly null arrays hold NaN.
2. A floating-point `solution_id` (Parquet double, float text) fails the file by `SOURCE_ID_RULE`.
3. Integer columns written as floats (`55.0`, pandas' int column holding a NaN; GaiaXPy's own fixture)
   are read when whole, exactly; ids still refuse floats.
4. JSON `null` elements of ECSV arrays (GaiaXPy and astropy write NaN so) are NaN, not a bad array.
5. An out-of-range `X_n_relevant_bases` is a row problem of the reader, never a crash of build_tokens.
6. A truncated uncompressed FITS file is a GaiaFileError naming the file.
7. VOTable `unicodeChar` columns are strings; a column that cannot be converted names file and column.
8. `read_table` records its file, so join errors name it.
9. `coefficients_to_flux` with a relevant-bases count of 0 truncates nothing, as GaiaXPy.

Real data: the bundled DR3 rows (tests/data/gaia_xp, gaia_source, gaiaxpy_calibrate) and GaiaXPy's own
parsed fixture in the shared folder (skipped, naming the file, where absent).
"""

from __future__ import annotations

import csv
import io
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _io_data import GAIA_VOT, MISSING_BP
from _paths import CALIBRATE_DIR, SHARED, XP_DIR, skip_unless_exists

from xpengine._gaiaxpy import import_gaiaxpy
from xpengine.features import SourceFlag, build_tokens, has_flag, relevancy_mask
from xpengine.io import (
    GaiaFileError,
    join_sources,
    list_column_to_numpy,
    read_gaia_source,
    read_table,
    read_xp_continuous,
    read_xp_sampled,
)
from xpengine.io._arrays import SOURCE_ID_RULE, parse_array_strings, parse_scalar_strings
from xpengine.io.schema import META_SOURCE, READ_PROBLEM
from xpengine.spectra import coefficients_to_flux
from xpengine.spectra.sampling import flux_errors_from_covariance

WITH_MISSING_CSV = XP_DIR / "XP_CONTINUOUS_RAW_with_missing_BP.csv"  # row 2: no BP
RAW_CSV = XP_DIR / "XP_CONTINUOUS_RAW.csv"  # 2 sources, both bands
GOLDEN_MISSING = CALIBRATE_DIR / "with_missing_calibrator_solution.csv"  # GaiaXPy calibrate, row 2 no BP
GAIAXPY_PARSED = (
    SHARED / "data" / "gaia_dr3_samples" / "gaiaxpy" / "tests" / "files" / "input_reader_solution.csv"
)
SOL_FLOAT = 4545469030156206081  # float64 rounds it to ...080


@pytest.fixture(scope="module")
def with_missing() -> pa.Table:
    return read_xp_continuous(WITH_MISSING_CSV)


def _edit_csv(src, dst, edits: dict[tuple[int, str], str]) -> None:
    """Copy the archive CSV `src` to `dst` with fields {(data row index, column): text} replaced."""
    lines = src.read_text().splitlines()
    names = lines[0].split(",")
    rows = list(csv.reader(lines[1:]))
    for (i, column), text in edits.items():
        rows[i][names.index(column)] = text
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(names)
    writer.writerows(rows)
    dst.write_text(out.getvalue())


def _same_band(got: pa.Table, ref: pa.Table, band: str, rows: list[int]) -> None:
    for k in ("coefficients", "coefficient_errors"):
        a = list_column_to_numpy(got.column(f"{band}_{k}"), 55)[rows]
        b = list_column_to_numpy(ref.column(f"{band}_{k}"), 55)[rows]
        np.testing.assert_array_equal(a, b)


# -------------------------------------------------------------------------------------------------
# 1. VOTable fixed-arraysize null arrays


def _fixed_votable(ref: pa.Table, path, fmt: str) -> None:
    """`ref`'s coefficients as astropy writes them: fixed arraysize 55, the missing BP a masked row."""
    from astropy.io.votable import from_table, writeto
    from astropy.table import MaskedColumn, Table

    t = Table()
    t["source_id"] = ref.column("source_id").to_numpy()
    for k, dtype in (("coefficients", np.float64), ("coefficient_errors", np.float32)):
        for band in ("bp", "rp"):
            a = list_column_to_numpy(ref.column(f"{band}_{k}"), 55).astype(dtype)
            null = np.isnan(a)
            t[f"{band}_{k}"] = MaskedColumn(np.where(null, 0, a), mask=null)
    vot = from_table(t)
    vot.get_first_table().format = fmt
    writeto(vot, str(path))


@pytest.mark.parametrize("fmt", ["tabledata", "binary", "binary2"])
def test_votable_fixed_arraysize_null_band_is_missing_not_zeros(tmp_path, with_missing, fmt):
    path = tmp_path / f"fixed_{fmt}.xml"
    _fixed_votable(with_missing, path, fmt)
    assert 'arraysize="55"' in path.read_text()
    t = read_xp_continuous(path)
    assert t.column("bp_coefficients").is_null().to_pylist() == [False, True, False]
    assert t.column("bp_coefficient_errors").is_null().to_pylist() == [False, True, False]
    assert t.column(READ_PROBLEM).null_count == 3  # a missing band is no read problem
    _same_band(t, with_missing, "bp", [0, 2])
    _same_band(t, with_missing, "rp", [0, 1, 2])
    tokens = build_tokens(
        join_sources(t, pa.table({"source_id": t["source_id"], "phot_g_mean_mag": pa.array([15.0] * 3)}))
    )
    assert has_flag(tokens.flags, SourceFlag.NO_BP).tolist() == [False, True, False]


def test_votable_fixed_arraysize_partly_null_elements_are_nan(tmp_path):
    from astropy.table import MaskedColumn, Table

    t = Table()
    t["source_id"] = np.array([1, 2, 3], dtype=np.int64)
    values = np.arange(9, dtype=np.float64).reshape(3, 3)
    t["x"] = MaskedColumn(values, mask=[[False, True, False], [True, True, True], [False] * 3])
    t["k"] = MaskedColumn(values.astype(np.int64), mask=[[False, True, False], [True] * 3, [False] * 3])
    path = tmp_path / "partly.xml"
    t.write(path, format="votable")
    got = read_table(path)
    x = got.column("x").to_pylist()
    assert x[0][0] == 0.0 and np.isnan(x[0][1]) and x[0][2] == 2.0
    assert x[1] is None and x[2] == [6.0, 7.0, 8.0]
    assert got.column("k").to_pylist() == [[0, None, 2], None, [6, 7, 8]]


def test_votable_fixed_arraysize_null_sampled_spectrum_is_missing(tmp_path):
    """GaiaXPy `calibrate` output as a VOTable (arraysize 343) with the 3rd source's spectrum null."""
    from astropy.table import MaskedColumn, Table

    ref = read_xp_sampled(GOLDEN_MISSING)
    raw = read_table(GOLDEN_MISSING, array_columns=["flux", "flux_error"])
    t = Table()
    t["source_id"] = raw.column("source_id").to_numpy()
    for name in ("flux", "flux_error"):
        a = list_column_to_numpy(raw.column(name), 343)
        null = np.zeros(a.shape, dtype=bool)
        null[2] = True
        t[name] = MaskedColumn(np.where(null | np.isnan(a), 0, a), mask=null | np.isnan(a), unit="W m-2 nm-1")
    path = tmp_path / "sampled_fixed.xml"
    t.write(path, format="votable")
    got = read_xp_sampled(path)
    assert got.column("bp_coefficients").is_null().to_pylist() == [False, True, True]
    assert got.column("rp_coefficients").is_null().to_pylist() == [False, False, True]
    for band in ("bp", "rp"):
        a = list_column_to_numpy(got.column(f"{band}_coefficients"), 55)[:2]
        b = list_column_to_numpy(ref.column(f"{band}_coefficients"), 55)[:2]
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=0)


# -------------------------------------------------------------------------------------------------
# 2. floating-point solution_id


def test_float_solution_id_column_fails_the_file(tmp_path, with_missing):
    t = with_missing.drop_columns([READ_PROBLEM])
    sol = [float(SOL_FLOAT)] * t.num_rows
    t = t.set_column(t.schema.get_field_index("solution_id"), "solution_id", pa.array(sol, pa.float64()))
    path = tmp_path / "float_solution.parquet"
    pq.write_table(t, path)
    with pytest.raises(GaiaFileError, match=re.escape(f"{path} (column 'solution_id')")) as info:
        read_xp_continuous(path)
    assert SOURCE_ID_RULE in str(info.value)


@pytest.mark.parametrize("text", [repr(float(SOL_FLOAT)), f"{SOL_FLOAT}.0"])
def test_float_text_solution_id_fails_the_file_naming_row(tmp_path, text):
    path = tmp_path / "float_solution.csv"
    _edit_csv(RAW_CSV, path, {(1, "solution_id"): text})
    with pytest.raises(GaiaFileError, match=re.escape(f"{path} (row 2, column 'solution_id')")) as info:
        read_xp_continuous(path)
    assert SOURCE_ID_RULE in str(info.value)


def test_integer_solution_id_is_still_read_exactly(tmp_path):
    path = tmp_path / "int_solution.csv"
    _edit_csv(RAW_CSV, path, {(1, "solution_id"): str(SOL_FLOAT)})
    assert read_xp_continuous(path).column("solution_id")[1].as_py() == SOL_FLOAT


# -------------------------------------------------------------------------------------------------
# 3. integer columns written as floats


def test_gaiaxpy_parsed_fixture_with_float_counts_keeps_its_bp_bands(with_missing):
    """GaiaXPy's own parsed fixture (pandas wrote the BP counts as `55.0`): same bands as the archive."""
    skip_unless_exists(GAIAXPY_PARSED)
    t = read_xp_continuous(GAIAXPY_PARSED)
    assert t.column("source_id").equals(with_missing.column("source_id"))
    assert t.column("bp_coefficients").is_null().to_pylist() == [False, True, False]
    assert t.column(READ_PROBLEM).null_count == 3
    for name in ("bp_n_parameters", "bp_n_relevant_bases", "bp_n_measurements", "bp_basis_function_id"):
        assert t.column(name).to_pylist() == with_missing.column(name).to_pylist(), name
    _same_band(t, with_missing, "bp", [0, 2])


def test_float_text_in_integer_columns_is_read_when_whole(tmp_path):
    path = tmp_path / "float_counts.csv"
    edits = {
        (0, "bp_n_parameters"): "55.0",
        (0, "bp_n_relevant_bases"): "5.3E1",
        (1, "rp_n_measurements"): "+4.0e2",
    }
    edits[(1, "bp_n_relevant_bases")] = "53.5"  # not whole: a row problem of a field BP depends on
    _edit_csv(RAW_CSV, path, edits)
    t = read_xp_continuous(path)
    assert t.column("bp_n_parameters")[0].as_py() == 55 and t.column("bp_n_relevant_bases")[0].as_py() == 53
    assert t.column("rp_n_measurements")[1].as_py() == 400
    assert t.column(READ_PROBLEM).to_pylist() == [
        None,
        "bp_n_relevant_bases: not a valid int16 value: '53.5' (data row 2)",
    ]
    assert t.column("bp_coefficients").is_null().to_pylist() == [False, True]
    assert not t.column("rp_coefficients").is_null()[1].as_py()


def test_float_text_integers_are_exact_and_ids_refuse_them():
    got, problems = parse_scalar_strings(
        pa.array(["9007199254740993.0", "4503599627370497.5", "1e-3", "nan", "100e-2", "70000.0"]),
        pa.int64(),
    )
    assert got.to_pylist() == [9007199254740993, None, None, None, 1, 70000]
    assert [i for i, _ in problems] == [1, 2, 3]
    assert parse_scalar_strings(pa.array(["70000.0"]), pa.int16())[1] == [
        (0, "not a valid int16 value: '70000.0'")
    ]
    assert parse_scalar_strings(pa.array(["55.0"]), pa.int64(), integral_floats=False)[0].null_count == 1


def test_float_text_source_id_is_still_refused(tmp_path):
    path = tmp_path / "float_source.csv"
    _edit_csv(RAW_CSV, path, {(1, "source_id"): "5762406957886626816.0"})
    with pytest.raises(GaiaFileError, match=re.escape(f"{path} (row 2, column 'source_id')")):
        read_xp_continuous(path)


def test_double_columns_feeding_integer_fields_in_parquet(tmp_path, with_missing):
    """pandas' int column with a NaN becomes a double column: whole values read, null/NaN null, 53.5 a row
    problem (BP nulled: the band depends on it), the rest of the file unaffected."""
    t = with_missing.drop_columns([READ_PROBLEM])
    for name, values in (
        ("bp_n_parameters", [55.0, None, 55.0]),
        ("bp_n_relevant_bases", [53.5, float("nan"), 55.0]),
        ("rp_n_measurements", [998.0, 979.0, 1025.0]),
    ):
        t = t.set_column(t.schema.get_field_index(name), name, pa.array(values, pa.float64()))
    path = tmp_path / "double_counts.parquet"
    pq.write_table(t, path)
    got = read_xp_continuous(path)
    assert got.column(READ_PROBLEM).to_pylist() == [
        "bp_n_relevant_bases: not a valid int16 value: 53.5 (data row 1)",
        None,
        None,
    ]
    assert got.column("bp_coefficients").is_null().to_pylist() == [True, True, False]
    assert got.column("bp_n_parameters").to_pylist() == [None, None, 55]
    assert got.column("bp_n_relevant_bases").to_pylist() == [None, None, 55]
    assert got.column("rp_n_measurements").to_pylist() == [998, 979, 1025]
    assert got.column("rp_n_measurements").type == pa.int16()


def test_double_integer_field_of_gaia_source(tmp_path):
    t = read_gaia_source(GAIA_VOT).drop_columns([READ_PROBLEM])
    aps = t.column("astrometric_params_solved").to_pylist()
    doubles = pa.array([float(v) for v in aps[:-1]] + [31.5], pa.float64())
    t = t.set_column(
        t.schema.get_field_index("astrometric_params_solved"), "astrometric_params_solved", doubles
    )
    path = tmp_path / "gs.parquet"
    pq.write_table(t, path)
    got = read_gaia_source(path)
    assert got.column("astrometric_params_solved").to_pylist() == [*aps[:-1], None]
    assert got.column(READ_PROBLEM)[-1].as_py().startswith("astrometric_params_solved: not a valid int16")


# -------------------------------------------------------------------------------------------------
# 4. JSON null elements in ECSV arrays


def test_null_elements_of_text_arrays_are_nan():
    got, problems = parse_array_strings(
        pa.array(["[null, 1.5, null]", "[null,null]", "[1,abc]", "[2, 3]", None]), pa.float64()
    )
    values = got.to_pylist()
    assert np.isnan(values[0][0]) and values[0][1] == 1.5 and np.isnan(values[0][2])
    assert values[1] is None and values[2] is None and values[3] == [2.0, 3.0] and values[4] is None
    assert problems == [(2, "not a list of numbers (element 1 is 'abc')")]


def test_gaiaxpy_ecsv_with_null_pixels_keeps_the_rp_band(tmp_path):
    """GaiaXPy `calibrate` in ECSV writes the BP-only pixels of the source without BP as `null`: the
    same spectra as GaiaXPy's golden CSV of that output, RP kept, no read problem."""
    gaiaxpy = import_gaiaxpy("gaiaxpy")
    gaiaxpy.calibrate(
        str(WITH_MISSING_CSV), output_path=str(tmp_path), output_file="cal", output_format="ecsv"
    )
    path = tmp_path / "cal.ecsv"
    assert f'{MISSING_BP},"[null, null' in path.read_text()
    got = read_xp_sampled(path)
    ref = read_xp_sampled(GOLDEN_MISSING)
    assert got.column(READ_PROBLEM).null_count == 3
    assert got.column("bp_coefficients").is_null().to_pylist() == [False, True, False]
    for band in ("bp", "rp"):
        a = list_column_to_numpy(got.column(f"{band}_coefficients"), 55)
        b = list_column_to_numpy(ref.column(f"{band}_coefficients"), 55)
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=0)


# -------------------------------------------------------------------------------------------------
# 5. out-of-range n_relevant_bases


@pytest.mark.parametrize(("text", "why"), [("-1", "-1 is out of range"), ("56", "56 is out of range")])
def test_out_of_range_relevant_bases_is_a_row_problem(tmp_path, text, why):
    path = tmp_path / "nrel.csv"
    _edit_csv(RAW_CSV, path, {(1, "bp_n_relevant_bases"): text})
    t = read_xp_continuous(path)
    problem = t.column(READ_PROBLEM)[1].as_py()
    assert problem.startswith(f"bp_n_relevant_bases: {why}") and problem.endswith("(data row 2)")
    assert "0..55" in problem
    assert t.column(READ_PROBLEM)[0].as_py() is None
    assert t.column("bp_coefficients").is_null().to_pylist() == [False, True]
    assert t.column("bp_n_relevant_bases").to_pylist() == [53, None]
    assert not t.column("rp_coefficients").is_null()[1].as_py()
    gaia = pa.table({"source_id": t["source_id"], "phot_g_mean_mag": pa.array([15.0, 16.0])})
    tokens = build_tokens(join_sources(t, gaia))  # the whole batch goes through
    assert has_flag(tokens.flags, SourceFlag.NO_BP).tolist() == [False, True]
    assert has_flag(tokens.flags, SourceFlag.READ_PROBLEM).tolist() == [False, True]


def test_zero_relevant_bases_is_read_and_keeps_its_token_rule(tmp_path):
    """0 is a count, not a problem; the tokens mask the band and flag FEW_RELEVANT_BASES as before."""
    path = tmp_path / "nrel0.csv"
    _edit_csv(RAW_CSV, path, {(1, "bp_n_relevant_bases"): "0"})
    t = read_xp_continuous(path)
    assert t.column(READ_PROBLEM).null_count == 2 and t.column("bp_n_relevant_bases")[1].as_py() == 0
    assert not relevancy_mask(np.array([0.0]), 55).any()
    gaia = pa.table({"source_id": t["source_id"], "phot_g_mean_mag": pa.array([15.0, 16.0])})
    tokens = build_tokens(join_sources(t, gaia))
    assert has_flag(tokens.flags, SourceFlag.FEW_RELEVANT_BASES).tolist() == [False, True]


def test_negative_count_in_a_hand_built_table_names_the_source():
    t = read_xp_continuous(RAW_CSV)
    t = t.set_column(
        t.schema.get_field_index("bp_n_relevant_bases"), "bp_n_relevant_bases", pa.array([53, -1], pa.int16())
    )
    sid = t.column("source_id")[1].as_py()
    with pytest.raises(
        ValueError,
        match=rf"{re.escape(str(RAW_CSV))}: column 'bp_n_relevant_bases'.*row 1 \(source_id {sid}\)",
    ):
        build_tokens(t)


# -------------------------------------------------------------------------------------------------
# 6. truncated FITS


@pytest.mark.parametrize("fraction", [0.5, 0.9])
def test_truncated_fits_names_the_file(tmp_path, fraction):
    raw = (XP_DIR / "XP_CONTINUOUS_RAW.fits").read_bytes()
    path = tmp_path / "cut.fits"
    path.write_bytes(raw[: int(len(raw) * fraction)])
    with pytest.raises(GaiaFileError, match=re.escape(str(path)) + r".*truncated or corrupt"):
        read_xp_continuous(path)


# -------------------------------------------------------------------------------------------------
# 7. VOTable unicodeChar columns


@pytest.mark.parametrize("fmt", ["tabledata", "binary2"])
def test_votable_unicodechar_column_is_text(tmp_path, fmt):
    from astropy.table import Table

    t = Table.read(GAIA_VOT, format="votable", use_names_over_ids=True)
    t = t[["source_id", "ra", "dec", "parallax", "parallax_error", "phot_g_mean_mag", "designation"]]
    t["designation"] = np.array([str(s) for s in t["designation"]])
    path = tmp_path / f"unicode_{fmt}.xml"
    t.write(path, format="votable", tabledata_format=fmt)
    assert 'datatype="unicodeChar"' in path.read_text()
    got = read_gaia_source(path)
    assert got.column("source_id").equals(read_gaia_source(GAIA_VOT).column("source_id"))
    assert read_table(path).column("designation").to_pylist() == [str(s) for s in t["designation"]]


def test_votable_column_that_cannot_be_read_names_file_and_column(tmp_path):
    path = tmp_path / "complex.xml"
    path.write_text(
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3"><RESOURCE><TABLE>'
        '<FIELD name="source_id" datatype="long"/><FIELD name="z" datatype="doubleComplex"/>'
        "<DATA><TABLEDATA><TR><TD>1</TD><TD>1 2</TD></TR></TABLEDATA></DATA></TABLE></RESOURCE></VOTABLE>\n"
    )
    with pytest.raises(GaiaFileError, match=re.escape(f"{path} (column 'z')")):
        read_table(path)


# -------------------------------------------------------------------------------------------------
# 8. read_table records its file


def test_read_table_records_its_file_for_join_errors(tmp_path):
    path = tmp_path / "tmass_dup.csv"
    path.write_text(
        "source_id,j_m,j_msigcom,h_m,h_msigcom,ks_m,ks_msigcom\n"
        "5853498713190525696,10,0.02,9.5,0.02,9.4,0.02\n5853498713190525696,10,0.02,9.5,0.02,9.4,0.02\n"
    )
    tmass = read_table(path)
    assert tmass.schema.metadata[META_SOURCE] == str(path).encode()
    with pytest.raises(GaiaFileError, match=re.escape(f"2MASS table {path} (column 'source_id')")):
        join_sources(read_xp_continuous(RAW_CSV), None, tmass=tmass)


# -------------------------------------------------------------------------------------------------
# 9. truncation by a count of 0 in the flux utility


def test_zero_truncation_uses_every_coefficient_as_gaiaxpy(tmp_path):
    """GaiaXPy truncates a band only when its count is > 0: with bp_n_relevant_bases = 0 its
    `calibrate(truncation=True)` flux is the untruncated BP one; so is ours (it was exactly 0)."""
    path = tmp_path / "nrel0.csv"
    _edit_csv(RAW_CSV, path, {(1, "bp_n_relevant_bases"): "0"})
    t = read_xp_continuous(path)
    bp = list_column_to_numpy(t.column("bp_coefficients"), 55)
    rp = list_column_to_numpy(t.column("rp_coefficients"), 55)
    nrel = {b: t.column(f"{b}_n_relevant_bases").to_numpy().astype(np.float64) for b in ("bp", "rp")}
    assert nrel["bp"][1] == 0
    flux = coefficients_to_flux(bp, rp, truncate_bp=nrel["bp"], truncate_rp=nrel["rp"])
    df, _ = import_gaiaxpy("gaiaxpy").calibrate(str(path), truncation=True, save_file=False)
    gaiaxpy_flux = np.vstack(df["flux"].to_numpy())  # (2, 343)
    np.testing.assert_allclose(flux, gaiaxpy_flux, rtol=1e-9, atol=0)
    untruncated_bp = coefficients_to_flux(bp[1:], rp[1:], truncate_rp=nrel["rp"][1:])[0]
    np.testing.assert_allclose(flux[1], untruncated_bp, rtol=1e-12, atol=0)
    assert np.array_equal(
        coefficients_to_flux(bp, rp, truncate_bp=0, truncate_rp=0), coefficients_to_flux(bp, rp)
    )
    err = list_column_to_numpy(t.column("bp_coefficient_errors"), 55)
    rerr = list_column_to_numpy(t.column("rp_coefficient_errors"), 55)
    np.testing.assert_array_equal(
        flux_errors_from_covariance(err, rerr, truncate_bp=0), flux_errors_from_covariance(err, rerr)
    )
    with pytest.raises(ValueError, match="negative"):
        coefficients_to_flux(bp, rp, truncate_bp=-1)
    # the synthetic photometry follows the same rule (one shared mask; it kept its own copy, where 0
    # still meant "no coefficient")
    from xpengine.features.synthetic_photometry import synthetic_gaia_photometry

    untruncated = synthetic_gaia_photometry(bp, rp).flux_e_s
    np.testing.assert_array_equal(
        synthetic_gaia_photometry(bp, rp, truncate_bp=0, truncate_rp=0).flux_e_s, untruncated
    )
    assert not np.array_equal(synthetic_gaia_photometry(bp, rp, truncate_bp=3).flux_e_s, untruncated)


def test_a_masked_band_reads_as_missing_from_fits_votable_and_an_astropy_table(tmp_path):
    """One astropy table whose missing BP band is a masked row, written to FITS (which holds it as NaN)
    and VOTable: both readers, and `from_xp` on the table itself, take it for a missing band, with no read
    problem (FITS gave a band of NaN values, a READ_PROBLEM)."""
    from astropy.io.votable import from_table, writeto
    from astropy.table import MaskedColumn, Table

    from xpengine.inference.input_tables import xp_input_table

    ref = read_xp_continuous(XP_DIR / "XP_CONTINUOUS_RAW_with_missing_BP.csv")
    t = Table()
    t["source_id"] = ref.column("source_id").to_numpy()
    for k, dtype in (("coefficients", np.float64), ("coefficient_errors", np.float32)):
        for band in ("bp", "rp"):
            a = list_column_to_numpy(ref.column(f"{band}_{k}"), 55).astype(dtype)
            null = np.isnan(a)
            t[f"{band}_{k}"] = MaskedColumn(np.where(null, 0, a), mask=null)
    want = ref.column("bp_coefficients").is_null().to_pylist()
    assert want.count(True) == 1
    writeto(from_table(t), str(tmp_path / "x.xml"))
    t.write(tmp_path / "x.fits")
    for path in (tmp_path / "x.xml", tmp_path / "x.fits"):
        r = read_xp_continuous(path)
        assert r.column("bp_coefficients").is_null().to_pylist() == want, path.suffix
        assert r.column(READ_PROBLEM).null_count == r.num_rows, path.suffix
    assert xp_input_table(t, {}).column("bp_coefficients").is_null().to_pylist() == want
