"""Bulk-layout writers, reading bulk .csv.gz files (local, memory://, http://) and model-input files."""

from __future__ import annotations

import functools
import http.server
import threading

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from _io_data import GAIA_VOT, MISSING_BP, WITH_MISSING_ECSV, XP_DIR, bulk_text, repeat_rows

from xpengine.io import (
    read_gaia_source,
    read_model_inputs,
    read_table,
    read_xp_continuous,
    write_bulk_gaia_source,
    write_bulk_xp_continuous,
    write_model_inputs,
)
from xpengine.io.xp_continuous import iter_xp_continuous


@pytest.fixture(scope="module")
def real_xp() -> pa.Table:
    """The 3 real archive rows (2 normal, the missing-BP source), with correlations."""
    return read_xp_continuous(WITH_MISSING_ECSV, with_correlations=True)


@pytest.fixture(scope="module")
def bulk_file(tmp_path_factory, real_xp):
    path = tmp_path_factory.mktemp("bulk") / "XpContinuousMeanSpectrum_000000-003111.csv.gz"
    write_bulk_xp_continuous(real_xp, path)
    return path


def test_bulk_roundtrip(bulk_file, real_xp):
    back = read_xp_continuous(bulk_file, with_correlations=True)
    assert back.schema == real_xp.schema
    for c in real_xp.column_names:
        assert back.column(c).equals(real_xp.column(c)), c


def test_bulk_layout(bulk_file, real_xp):
    text = bulk_text(bulk_file)
    lines = text.splitlines()
    assert lines[0] == "# %ECSV 1.0" and lines[1] == "# ---"
    header = [ln for ln in lines if ln.startswith("#")]
    assert "#   subtype: float64[55]" in header
    assert "#   subtype: float32[1485]" in header
    body = lines[len(header) :]
    assert body[0].split(",") == real_xp.column_names[:-1]  # no read_problem in Gaia files
    missing_row = next(ln for ln in body if ln.startswith(str(MISSING_BP)))
    assert missing_row.split(",")[2:14] == ["null"] * 12  # every BP field is the literal null
    assert ',"[' in body[1] and ']",' in body[1]


def test_bulk_readable_by_astropy(tmp_path, real_xp):
    """Independent check of the layout: astropy's ECSV reader decodes our arrays (rows without nulls)."""
    from astropy.table import Table

    ok = real_xp.filter(pc.invert(real_xp.column("bp_coefficients").is_null()))
    path = tmp_path / "x.csv.gz"
    write_bulk_xp_continuous(ok, path)
    t = Table.read(path, format="ascii.ecsv")
    assert t["bp_coefficients"].shape == (2, 55)
    assert t["rp_coefficient_correlations"].shape == (2, 1485)
    np.testing.assert_array_equal(t["bp_coefficients"][1], ok.column("bp_coefficients")[1].as_py())
    assert t["bp_n_parameters"].dtype == np.int16


def test_bulk_refuses_overwrite(bulk_file, real_xp):
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_bulk_xp_continuous(real_xp, bulk_file)


def test_bulk_through_memory_url(real_xp):
    url = "memory://xpengine-test/XpContinuousMeanSpectrum_000000-003111.csv.gz"
    big = repeat_rows(real_xp, 300)
    write_bulk_xp_continuous(big, url, overwrite=True)
    try:
        with fsspec.open(url, "rb") as f:
            assert f.read(2) == b"\x1f\x8b"  # gzip
        batches = list(iter_xp_continuous(url, batch_rows=64))
        assert [b.num_rows for b in batches] == [64, 64, 64, 64, 44]
        t = pa.Table.from_batches(batches)
        assert t.column("source_id").equals(big.column("source_id"))
        assert t.column("bp_coefficients").equals(big.column("bp_coefficients"))
        # the missing-BP row is every third row
        assert t.column("bp_coefficients").null_count == 100
    finally:
        fsspec.filesystem("memory").rm("/xpengine-test", recursive=True)


def test_bulk_over_http(tmp_path, bulk_file, real_xp):
    (tmp_path / bulk_file.name).write_bytes(bulk_file.read_bytes())
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{bulk_file.name}"
        t = read_xp_continuous(url)
        assert t.column("rp_coefficients").equals(real_xp.column("rp_coefficients"))
    finally:
        server.shutdown()
        server.server_close()


def test_not_hard_coded_55(tmp_path, real_xp):
    """DR4 will have 51 BP coefficients: a file with 51 reads without problems."""
    ok = real_xp.filter(pc.invert(real_xp.column("bp_coefficients").is_null()))
    n = 51

    def cut(col: pa.ChunkedArray, k: int) -> pa.Array:
        return pa.array([v[:k] for v in col.to_pylist()], type=col.type)

    t = ok.set_column(
        ok.schema.get_field_index("bp_coefficients"), "bp_coefficients", cut(ok["bp_coefficients"], n)
    )
    t = t.set_column(
        t.schema.get_field_index("bp_coefficient_errors"),
        "bp_coefficient_errors",
        cut(t["bp_coefficient_errors"], n),
    )
    t = t.set_column(
        t.schema.get_field_index("bp_coefficient_correlations"),
        "bp_coefficient_correlations",
        cut(t["bp_coefficient_correlations"], n * (n - 1) // 2),
    )
    t = t.set_column(
        t.schema.get_field_index("bp_n_parameters"), "bp_n_parameters", pa.array([n, n], pa.int16())
    )
    t = t.set_column(  # a count of relevant bases cannot exceed the band's parameters
        t.schema.get_field_index("bp_n_relevant_bases"),
        "bp_n_relevant_bases",
        pc.min_element_wise(t.column("bp_n_relevant_bases"), pa.scalar(n, pa.int16())),
    )
    path = tmp_path / "dr4.csv.gz"
    write_bulk_xp_continuous(t, path)
    assert "#   subtype: float64[51]" in bulk_text(path)
    back = read_xp_continuous(path, with_correlations=True)
    assert back.column("read_problem").null_count == 2
    assert set(pc.list_value_length(back.column("bp_coefficients")).to_pylist()) == {51}
    mi = tmp_path / "mi.parquet"
    write_model_inputs(back, mi)
    arrays = read_model_inputs(mi)
    assert arrays["bp_coefficients"].shape == (2, 51)
    assert arrays["rp_coefficients"].shape == (2, 55)


def test_gaia_source_bulk_roundtrip(tmp_path):
    """All 152 real gaia_source columns of the VOTable rows, written in the bulk layout and read back."""
    full = read_table(GAIA_VOT)
    assert full.num_columns == 152
    path = tmp_path / "GaiaSource_000000-003111.csv.gz"
    write_bulk_gaia_source(full, path)
    text = bulk_text(path)
    n_header = sum(1 for ln in text.splitlines() if ln.startswith("#"))
    assert n_header > 900  # like the real bulk files (~1000 header lines)
    assert "#   unit: mas" in text
    ours = read_gaia_source(path)
    ref = read_gaia_source(GAIA_VOT)
    assert ours.schema == ref.schema
    for c in ref.column_names:
        assert ours.column(c).equals(ref.column(c)), c
    extra = read_gaia_source(path, columns=["pmra", "designation", "phot_variable_flag"])
    assert extra.column("designation").to_pylist() == full.column("designation").to_pylist()
    np.testing.assert_array_equal(extra.column("pmra").to_numpy(), full.column("pmra").to_numpy())


def test_model_inputs_roundtrip(tmp_path, real_xp):
    gaia = read_gaia_source(GAIA_VOT)
    # Give the two real gaia_source rows the XP source_ids so the join has something to carry.
    ids = real_xp.column("source_id").to_numpy()
    gaia = gaia.set_column(0, "source_id", pa.array(ids[[0, 2]]))
    from xpengine.io import join_sources

    joined = join_sources(real_xp, gaia)
    path = tmp_path / "XpContinuousMeanSpectrum_000000-003111.model.parquet"
    write_model_inputs(joined, path)
    arrays = read_model_inputs(path)
    assert arrays["bp_coefficients"].dtype == np.float32 and arrays["bp_coefficients"].shape == (3, 55)
    np.testing.assert_array_equal(arrays["source_id"], ids)
    expect = np.array(real_xp.column("rp_coefficient_errors").to_pylist(), dtype=np.float32)
    np.testing.assert_array_equal(arrays["rp_coefficient_errors"], expect)
    assert np.isnan(arrays["bp_coefficients"][1]).all()  # missing BP
    assert arrays["bp_n_relevant_bases"][1] == 0
    assert arrays["bp_n_relevant_bases"].dtype == np.int16
    np.testing.assert_array_equal(
        arrays["phot_g_mean_mag"][[0, 2]], gaia.column("phot_g_mean_mag").to_numpy()
    )
    assert np.isnan(arrays["phot_g_mean_mag"][1])
    assert "bp_coefficient_correlations" not in arrays
    # row-level read problems are kept (the READ_PROBLEM flag must survive the conversion)
    assert arrays["read_problem"].tolist() == real_xp.column("read_problem").to_pylist()
    # zero-copy: the (N, 55) array is a view on Arrow's buffer, not an owner of its data
    assert not arrays["bp_coefficients"].flags.owndata
    with pytest.raises(FileExistsError):
        write_model_inputs(joined, path)


def test_archive_csv_to_bulk_keeps_values(tmp_path):
    """Archive CSV tuples -> bulk JSON arrays -> same numbers."""
    src = read_xp_continuous(XP_DIR / "XP_CONTINUOUS_RAW_colour_eq_dr3int6.csv", with_correlations=True)
    path = tmp_path / "b.csv.gz"
    write_bulk_xp_continuous(src, path)
    back = read_xp_continuous(path, with_correlations=True)
    for c in src.column_names:
        assert back.column(c).equals(src.column(c)), c


def test_failed_write_leaves_no_file(tmp_path):
    t = pa.table({"source_id": pa.array([1, 2], pa.int64()), "parallax": ["1.5", "not a number"]})
    path = tmp_path / "GaiaSource_000000-000001.csv.gz"
    with pytest.raises(pa.ArrowInvalid):
        write_bulk_gaia_source(t, path)
    assert list(tmp_path.iterdir()) == []
