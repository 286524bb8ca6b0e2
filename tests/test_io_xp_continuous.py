"""XP continuous reader on every real Gaia file, checked against GaiaXPy's parse of the same file."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from _io_data import (
    MISSING_BP,
    NORMAL_IDS,
    WITH_MISSING_ECSV,
    XP_DIR,
    XP_FILES,
    gaiaxpy_parse,
    is_missing,
)

from xpengine.io import (
    XP_COLUMNS,
    covariance_from_correlations,
    identify_format,
    iter_xp_continuous,
    list_column_to_numpy,
    read_xp_continuous,
    xp_column_names,
)

BANDS = ("bp", "rp")
INT16 = [c.name for c in XP_COLUMNS if c.type == pa.int16()]
# tests/data/gaia_xp also holds an archive XP_SAMPLED file (sampled spectrum, not continuous coefficients)
XP_FILES = [p for p in XP_FILES if not p.name.startswith("XP_SAMPLED")]


def test_all_real_files_present():
    # 4 + 5 + 7 + 1 archive files, 4 astroquery DataLink files, 18 Sco.
    assert len(XP_FILES) == 23


@pytest.mark.parametrize("path", XP_FILES, ids=lambda p: p.name)
def test_matches_gaiaxpy(path):
    ours = read_xp_continuous(path, with_correlations=True)
    ref = gaiaxpy_parse(path)
    assert ours.column("source_id").to_pylist() == [int(s) for s in ref["source_id"]]
    assert ours.column("read_problem").null_count == ours.num_rows
    for i in range(ours.num_rows):
        row = ref.iloc[i]
        for band in BANDS:
            coef = ours.column(f"{band}_coefficients")[i].as_py()
            if is_missing(row[f"{band}_coefficients"]):
                assert coef is None
                continue
            # Same decimal text or same FITS/VOTable binary -> identical float64.
            np.testing.assert_array_equal(np.array(coef), np.asarray(row[f"{band}_coefficients"], float))
            err = np.array(ours.column(f"{band}_coefficient_errors")[i].as_py())
            np.testing.assert_allclose(err, np.asarray(row[f"{band}_coefficient_errors"], float), rtol=1.2e-7)
            # GaiaXPy expands the correlations into a symmetric matrix with unit diagonal.
            corr = np.array(ours.column(f"{band}_coefficient_correlations")[i].as_py())
            n = len(coef)
            ref_corr = np.asarray(row[f"{band}_coefficient_correlations"], float)
            np.testing.assert_allclose(corr, ref_corr[np.tril_indices(n, -1)], rtol=1.2e-7, atol=1e-12)
            for name in (f"{band}_n_parameters", f"{band}_n_relevant_bases"):
                if name in ref.columns:
                    assert ours.column(name)[i].as_py() == int(row[name])


@pytest.mark.parametrize(
    "path", [p for p in XP_FILES if not p.name.startswith("18Sco")], ids=lambda p: p.name
)
def test_covariance_matches_gaiaxpy(path):
    """GaiaXPy stores diag(e/σ) R diag(e/σ) and multiplies sampled errors by σ later; ours is the
    covariance of the coefficients themselves, diag(e) R diag(e) = σ² × GaiaXPy's."""
    ours = read_xp_continuous(path, with_correlations=True)
    ref = gaiaxpy_parse(path)
    for band in BANDS:
        valid = ~np.asarray(ours.column(f"{band}_coefficients").is_null())
        if not valid.any():
            continue
        sub = ours.filter(pa.array(valid))
        errors = list_column_to_numpy(sub.column(f"{band}_coefficient_errors"))  # (M, n)
        corr = list_column_to_numpy(sub.column(f"{band}_coefficient_correlations"))  # (M, n(n-1)/2)
        cov = covariance_from_correlations(errors, corr)  # (M, n, n)
        refrows = ref[valid]
        for k in range(sub.num_rows):
            sigma = float(refrows[f"{band}_standard_deviation"].iloc[k])
            ref_cov = np.asarray(refrows[f"{band}_covariance_matrix"].iloc[k], float) * sigma**2
            np.testing.assert_allclose(cov[k], ref_cov, rtol=2e-6, atol=1e-6 * np.abs(ref_cov).max())


def test_covariance_hand_computed():
    e = np.array([[1.0, 2.0, 3.0]])
    r = np.array([[0.5, -0.25, 0.1]])  # (1,0), (2,0), (2,1)
    expected = np.array([[1.0, 0.5 * 2, -0.25 * 3], [0.5 * 2, 4.0, 0.1 * 6], [-0.25 * 3, 0.1 * 6, 9.0]])
    np.testing.assert_allclose(covariance_from_correlations(e, r)[0], expected)
    with pytest.raises(ValueError, match=r"shape \(1, 3\)"):
        covariance_from_correlations(e, r[:, :2])


@pytest.mark.parametrize(
    "name",
    [
        "XP_CONTINUOUS_RAW_with_missing_BP.csv",
        "XP_CONTINUOUS_RAW_with_missing_BP.ecsv",
        "XP_CONTINUOUS_RAW_with_missing_BP.fits",
        "XP_CONTINUOUS_RAW_with_missing_BP.xml",
        "XP_CONTINUOUS_RAW_with_missing_BP_plain.xml",
    ],
)
def test_missing_bp_source(name):
    t = read_xp_continuous(XP_DIR / name, with_correlations=True)
    i = t.column("source_id").to_pylist().index(MISSING_BP)
    row = t.slice(i, 1).to_pylist()[0]
    bp_cols = [c for c in row if c.startswith("bp_")]
    assert all(row[c] is None for c in bp_cols), {c: row[c] for c in bp_cols if row[c] is not None}
    assert len(row["rp_coefficients"]) == row["rp_n_parameters"] == 55
    assert len(row["rp_coefficient_correlations"]) == 55 * 54 // 2
    assert row["rp_n_relevant_bases"] is not None
    assert row["read_problem"] is None
    others = [r for r in t.to_pylist() if r["source_id"] != MISSING_BP]
    assert {r["source_id"] for r in others} == set(NORMAL_IDS)
    assert all(len(r["bp_coefficients"]) == 55 for r in others)


def test_schema_and_formats_agree():
    """All formats of the same rows give the same table (same dtypes, equal values)."""
    names = ["csv", "ecsv", "fits", "xml", "_plain.xml"]
    tables = [
        read_xp_continuous(XP_DIR / f"XP_CONTINUOUS_RAW_with_missing_BP{'' if n.startswith('_') else '.'}{n}")
        for n in names
    ]
    assert tables[0].column_names == [*xp_column_names(), "read_problem"]
    assert tables[0].schema.field("source_id").type == pa.int64()
    for c in INT16:
        if c in tables[0].column_names:
            assert tables[0].schema.field(c).type == pa.int16()
    assert tables[0].schema.field("bp_coefficients").type == pa.list_(pa.float64())
    assert tables[0].schema.field("bp_coefficient_errors").type == pa.list_(pa.float32())
    for t in tables[1:]:
        assert t.schema == tables[0].schema
        for c in t.column_names:
            assert t.column(c).equals(tables[0].column(c)), c


def test_identify_formats():
    expected = {".csv": "csv", ".ecsv": "ecsv", ".fits": "fits", ".xml": "votable"}
    for p in XP_FILES:
        assert identify_format(p) == expected[p.suffix], p.name


def test_columns_and_correlations_options():
    t = read_xp_continuous(WITH_MISSING_ECSV, columns=["bp_n_relevant_bases", "bp_coefficients"])
    assert t.column_names == ["source_id", "bp_coefficients", "bp_n_relevant_bases", "read_problem"]
    t = read_xp_continuous(WITH_MISSING_ECSV)
    assert "bp_coefficient_correlations" not in t.column_names
    assert len(t.column_names) == 25
    with pytest.raises(ValueError, match="unknown XP continuous columns"):
        read_xp_continuous(WITH_MISSING_ECSV, columns=["bp_flux"])


def test_faint_sources_relevant_bases():
    t = read_xp_continuous(XP_DIR / "XP_CONTINUOUS_RAW_colour_eq_dr3int6.csv")
    nrel = t.column("bp_n_relevant_bases").to_pylist() + t.column("rp_n_relevant_bases").to_pylist()
    assert min(nrel) == 3  # PROVENANCE: n_relevant_bases as low as 3


def test_18sco_subset_of_columns():
    t = read_xp_continuous(XP_DIR / "18Sco-XP-spectra.csv", with_correlations=True)
    assert t.column("source_id").to_pylist() == [4345775217221821312]
    assert t.column("bp_standard_deviation").null_count == 1  # absent from the file: null
    assert t.column("bp_coefficients")[0].as_py()[0] == pytest.approx(9226249.48757417, rel=0, abs=0)


def test_iter_batches_flat(tmp_path):
    t = read_xp_continuous(WITH_MISSING_ECSV, with_correlations=True)
    batches = list(iter_xp_continuous(WITH_MISSING_ECSV, batch_rows=2, with_correlations=True))
    assert [b.num_rows for b in batches] == [2, 1]
    assert pa.Table.from_batches(batches).equals(t)


def test_list_column_to_numpy_pads_and_nans():
    col = pa.array([[1.0, 2.0, 3.0], None, [4.0]], type=pa.list_(pa.float64()))
    out = list_column_to_numpy(col, width=3)
    np.testing.assert_array_equal(out[0], [1, 2, 3])
    assert np.isnan(out[1]).all()
    np.testing.assert_array_equal(out[2, :1], [4.0])
    assert np.isnan(out[2, 1:]).all()
    full = list_column_to_numpy(pa.array([[1.0, 2.0], [3.0, 4.0]]).slice(1, 1))
    np.testing.assert_array_equal(full, [[3.0, 4.0]])


@pytest.mark.parametrize("fixed", [False, True], ids=["list", "fixed_size_list"])
def test_parquet_list_and_fixed_size_list(tmp_path, fixed):
    import pyarrow.parquet as pq

    t = read_xp_continuous(WITH_MISSING_ECSV, with_correlations=True)
    out = t
    if fixed:
        for name in t.column_names:
            typ = t.schema.field(name).type
            if pa.types.is_list(typ):
                n = 1485 if name.endswith("correlations") else 55
                out = out.set_column(
                    out.schema.get_field_index(name), name, t.column(name).cast(pa.list_(typ.value_type, n))
                )
    path = tmp_path / "xp.parquet"
    pq.write_table(out.drop_columns(["read_problem"]), path)
    assert identify_format(path) == "parquet"
    back = read_xp_continuous(path, with_correlations=True)
    for c in t.column_names:
        assert back.column(c).equals(t.column(c)), c


@pytest.mark.parametrize(
    "name", ["XP_CONTINUOUS_RAW_with_missing_BP.ecsv", "XP_CONTINUOUS_RAW_with_missing_BP.fits"]
)
def test_gzipped_archive_files(tmp_path, name):
    import gzip

    path = tmp_path / (name + ".gz")
    path.write_bytes(gzip.compress((XP_DIR / name).read_bytes()))
    a = read_xp_continuous(path, with_correlations=True)
    b = read_xp_continuous(XP_DIR / name, with_correlations=True)
    assert a.equals(b)


def test_gaia_source_columns_beside_the_xp_are_named_in_a_warning(caplog, tmp_path):
    """The reader returns the XP columns only; a file that also holds G or a parallax (as an ADQL join of
    xp_continuous_mean_spectrum and gaia_source gives) says so in the log, naming them."""
    import logging

    from _paths import SCO18

    with caplog.at_level(logging.WARNING, logger="xpengine.io.xp_continuous"):
        t = read_xp_continuous(SCO18)
    assert "phot_g_mean_mag" not in t.column_names
    warned = [r.getMessage() for r in caplog.records if "beside its XP" in r.getMessage()]
    assert len(warned) == 1 and "['phot_g_mean_mag']" in warned[0] and str(SCO18) in warned[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="xpengine.io.xp_continuous"):
        read_xp_continuous(WITH_MISSING_ECSV)
    assert not [r for r in caplog.records if "beside its XP" in r.getMessage()]


def test_a_blanked_coefficients_cell_is_a_read_problem_not_a_missing_band(tmp_path):
    """A row whose bp_coefficients cell is empty while its errors and n_parameters say BP was fitted is
    corrupt (READ_PROBLEM naming the column), not a source without BP; the other rows read unchanged."""
    import csv

    src = XP_DIR / "XP_CONTINUOUS_RAW.csv"
    with open(src, newline="") as fh:
        rows = list(csv.reader(fh))
    k = rows[0].index("bp_coefficients")
    rows[1][k] = ""
    bad = tmp_path / "blank.csv"
    with open(bad, "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    got, ref = read_xp_continuous(bad), read_xp_continuous(src)
    problems = got.column("read_problem").to_pylist()
    assert problems[0].startswith("bp_coefficients: missing while bp_coefficient_errors has values")
    assert got.column("bp_coefficient_errors")[0].as_py() is None  # the band is dropped as corrupt
    assert problems[1:] == [None] * (got.num_rows - 1)
    assert got.slice(1).drop_columns(["read_problem"]).equals(ref.slice(1).drop_columns(["read_problem"]))
    # a real source without BP keeps no read problem
    missing = read_xp_continuous(WITH_MISSING_ECSV)
    ids = missing.column("source_id").to_pylist()
    assert missing.column("read_problem")[ids.index(MISSING_BP)].as_py() is None
