"""Two silent corruptions of the io layer, on real Gaia rows written to real file formats:

- a `source_id` stored as floating point (pandas after a merge that introduced NaN; a CSV whose ids
  were written like `5.853498713190526e+18`): float64 cannot hold Gaia ids above 2^53, the ids came back
  off by up to ±512 and every join silently missed. Every reader and `join_sources` now refuse it
  (GaiaFileError naming the file and the column), as `build_tokens` already did.
- the model-inputs writer gave a band missing from the whole first chunk the other band's width, so a
  later chunk with another count (DR4-like BP 51) was NaN-padded to 55 and read as corrupt rows,
  where the direct read raises CoefficientCountError.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _io_data import GAIA_ECSV, MISSING_BP, XP_DIR

from xpengine.features import build_tokens
from xpengine.features.tokens import CoefficientCountError
from xpengine.io import (
    GaiaFileError,
    ModelInputsWriter,
    iter_xp_continuous,
    join_sources,
    read_gaia_source,
    read_model_inputs,
    read_table,
    read_xp_continuous,
    read_xp_sampled,
)
from xpengine.io.model_inputs import iter_model_inputs, model_inputs_table

XP_CSV = XP_DIR / "XP_CONTINUOUS_RAW_with_missing_BP.csv"  # 3 sources, the middle one without BP
SAMPLED_CSV = XP_DIR / "XP_SAMPLED_RAW_dr3int6.csv"


@pytest.fixture(scope="module")
def xp():
    return read_xp_continuous(XP_CSV)


def _with_float_ids(table: pa.Table) -> pa.Table:
    i = table.schema.get_field_index("source_id")
    sid = table.column("source_id").to_numpy().astype(np.float64)
    return table.replace_schema_metadata(None).set_column(i, "source_id", pa.array(sid))


def _refused(exc_info, path) -> None:
    err = exc_info.value
    assert err.column == "source_id"
    assert str(path) in str(err)
    assert "must be integers" in str(err) and "2^53" in str(err)


def test_gaia_source_parquet_with_float_source_id_is_refused(tmp_path, xp):
    gaia = read_gaia_source(GAIA_ECSV).drop_columns(["read_problem"])
    good, bad = tmp_path / "gs_int.parquet", tmp_path / "gs_float.parquet"
    pq.write_table(gaia, good)
    pq.write_table(_with_float_ids(gaia), bad)
    assert read_gaia_source(good).column("source_id").equals(gaia.column("source_id"))
    with pytest.raises(GaiaFileError) as exc_info:
        read_gaia_source(bad)
    _refused(exc_info, bad)


def test_xp_continuous_parquet_with_float_source_id_is_refused(tmp_path, xp):
    table = xp.drop_columns(["read_problem"])
    good, bad = tmp_path / "xp_int.parquet", tmp_path / "xp_float.parquet"
    pq.write_table(table, good)
    pq.write_table(_with_float_ids(table), bad)
    assert read_xp_continuous(good).column("source_id").equals(xp.column("source_id"))
    with pytest.raises(GaiaFileError) as exc_info:
        read_xp_continuous(bad)
    _refused(exc_info, bad)


def test_xp_sampled_parquet_with_float_source_id_is_refused(tmp_path):
    table = read_table(SAMPLED_CSV, array_columns=["flux", "flux_error"])
    bad = tmp_path / "sampled_float.parquet"
    pq.write_table(_with_float_ids(table), bad)
    with pytest.raises(GaiaFileError) as exc_info:
        read_xp_sampled(bad)
    _refused(exc_info, bad)


def test_ebv_csv_with_float_written_ids_is_refused(tmp_path, xp):
    sid = xp.column("source_id").to_pylist()
    floats = tmp_path / "ebv_float.csv"
    floats.write_text("source_id,ebv\n" + "".join(f"{float(s)!r},0.1\n" for s in sid))
    with pytest.raises(GaiaFileError) as exc_info:
        read_table(floats)
    _refused(exc_info, floats)
    ints = tmp_path / "ebv_int.csv"
    ints.write_text("source_id,ebv\n" + "".join(f"{s},0.1\n" for s in sid))
    assert join_sources(xp, None, ebv=read_table(ints)).column("ebv").to_pylist() == [0.1] * 3


def test_join_refuses_float_ids_and_reads_integer_text(xp):
    sid = xp.column("source_id").to_numpy()
    assert (sid.astype(np.float64).astype(np.int64) != sid).sum() == 2  # float64 changes two real ids
    ebv = pa.table({"source_id": pa.array(sid.astype(np.float64)), "ebv": [0.1, 0.2, 0.3]})
    with pytest.raises(GaiaFileError, match=r"E\(B-V\).*must be integers.*2\^53") as exc_info:
        join_sources(xp, None, ebv=ebv)
    assert exc_info.value.column == "source_id"
    text = ebv.set_column(0, "source_id", pa.array([str(s) for s in sid]))
    assert join_sources(xp, None, ebv=text).column("ebv").to_pylist() == pytest.approx([0.1, 0.2, 0.3])
    floats_as_text = ebv.set_column(0, "source_id", pa.array([repr(float(s)) for s in sid]))
    with pytest.raises(GaiaFileError, match="is not an integer"):
        join_sources(xp, None, ebv=floats_as_text)
    with pytest.raises(GaiaFileError, match="must be integers"):
        model_inputs_table(_with_float_ids(xp))


def test_read_table_gives_integer_text_ids_as_int64(tmp_path, xp):
    """A side table whose ids are integer text (a CSV with quoted ids, say) reads as int64, so that the
    job's partition-range filter and the join compare integers."""
    import pyarrow.csv as pacsv

    from xpengine.io import read_table

    sid = xp.column("source_id").to_numpy()
    path = tmp_path / "ebv.csv"
    pacsv.write_csv(pa.table({"source_id": pa.array([str(s) for s in sid]), "ebv": [0.1, 0.2, 0.3]}), path)
    t = read_table(str(path))
    assert t.schema.field("source_id").type == pa.int64()
    assert t.column("source_id").to_pylist() == sid.tolist()


def _dr4_like(table: pa.Table, n_bp: int) -> pa.Table:
    """`table` with its BP coefficients and errors cut to `n_bp` (Gaia DR4 has 51)."""
    for name in ("bp_coefficients", "bp_coefficient_errors"):
        i = table.schema.get_field_index(name)
        rows = [None if r is None else r[:n_bp] for r in table.column(name).to_pylist()]
        table = table.set_column(i, table.schema.field(i), pa.array(rows, table.schema.field(i).type))
    i = table.schema.get_field_index("bp_n_parameters")
    n_par = [None if v is None else n_bp for v in table.column(i).to_pylist()]
    return table.set_column(i, table.schema.field(i), pa.array(n_par, pa.int16()))


def test_width_of_a_band_missing_from_the_first_chunk_waits_for_the_band(tmp_path, xp):
    # the reader's own batches of one row, with their metadata (the middle one says {"bp": []})
    batches = [pa.Table.from_batches([b]) for b in iter_xp_continuous(XP_CSV, batch_rows=1)]
    no_bp = next(b for b in batches if b.column("source_id")[0].as_py() == MISSING_BP)
    with_bp = pa.concat_tables([b for b in batches if b is not no_bp])
    dr4 = _dr4_like(with_bp, 51).replace_schema_metadata({b"xpengine.n_coefficients": b'{"bp": [51]}'})
    with pytest.raises(CoefficientCountError):  # the direct read refuses DR4 counts for a DR3 model
        build_tokens(dr4)
    path = tmp_path / "ModelInputs_dr4.parquet"
    with ModelInputsWriter(path) as w:
        w.write(no_bp)  # no BP anywhere in the first chunk
        w.write(dr4)
    compact = pa.concat_tables(list(iter_model_inputs(path)))
    assert compact.schema.field("bp_coefficients").type.list_size == 51
    with pytest.raises(CoefficientCountError):  # so does the compact read (it was NaN-padded to 55)
        build_tokens(compact)
    # DR3 rows after a chunk without BP: the same tokens as the direct read
    path = tmp_path / "ModelInputs_dr3.parquet"
    with ModelInputsWriter(path) as w:
        w.write(no_bp)
        w.write(with_bp)
    assert w.rows == 3
    compact = pa.concat_tables(list(iter_model_inputs(path)))
    order = np.argsort(compact.column("source_id").to_numpy())
    direct, ours = build_tokens(xp), build_tokens(compact)
    want = np.argsort(xp.column("source_id").to_numpy())
    np.testing.assert_array_equal(ours.flags[order], direct.flags[want])
    np.testing.assert_allclose(ours.values[order], direct.values[want], rtol=1e-6, equal_nan=True)
    # a band missing from the whole file is still written (it borrows the other's width)
    path = tmp_path / "ModelInputs_nobp.parquet"
    with ModelInputsWriter(path) as w:
        w.write(no_bp)
    assert np.isnan(read_model_inputs(path)["bp_coefficients"]).all()


def test_a_later_chunk_with_fewer_coefficients_is_refused_not_padded(tmp_path, xp):
    path = tmp_path / "ModelInputs_mixed.parquet"
    with pytest.raises(ValueError, match=r"rows with \{'bp': 51\} coefficients, fewer than"):
        with ModelInputsWriter(path) as w:
            w.write(xp)
            w.write(_dr4_like(xp, 51))
    assert not path.exists()
    # a chunk mixing both counts is refused too, as build_tokens refuses it in an XP table
    mixed = pa.concat_tables([xp.slice(0, 1), _dr4_like(xp.slice(2, 1), 51)])
    with pytest.raises(ValueError, match="rows of different lengths"):
        build_tokens(mixed)
    with pytest.raises(ValueError, match=r"rows of \[51, 55\] coefficients"):
        model_inputs_table(mixed)


def test_an_ebv_table_without_errors_is_taken_with_a_log_line(tmp_path, xp, caplog):
    """The job checks its `--ebv` table before any work (`check_side_tables`); one without `ebv_error`
    is taken, and the log says the σ the isochrone fit gives its values (never an exact E(B−V))."""
    import logging

    from xpengine.pipeline.config import InferenceConfig
    from xpengine.pipeline.plan import check_side_tables

    sid = xp.column("source_id").to_pylist()
    bare, full = tmp_path / "ebv_bare.csv", tmp_path / "ebv_full.csv"
    bare.write_text("source_id,ebv\n" + "".join(f"{s},0.1\n" for s in sid))
    full.write_text("source_id,ebv,ebv_error\n" + "".join(f"{s},0.1,0.02\n" for s in sid))
    with caplog.at_level(logging.WARNING):
        check_side_tables(InferenceConfig(ebv=str(full)))
        assert "ebv_error" not in caplog.text
        check_side_tables(InferenceConfig(ebv=str(bare)))
    assert "no ebv_error column" in caplog.text and str(bare) in caplog.text and "0.16" in caplog.text
