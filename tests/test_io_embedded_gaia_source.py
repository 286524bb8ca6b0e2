"""An XP file that holds gaia_source columns beside its XP: an ADQL join of `xp_continuous_mean_spectrum`
with `gaia_source`, or GaiaXPy's 18 Sco file with its `phot_g_mean_mag`. `io.read_embedded_gaia_source`
reads them, `read_xp_continuous(..., with_gaia_source=True)` joins them, and `xpengine features` and the
catalogue job use them when no gaia_source table is given. Until session 26 they were dropped, so 18 Sco
was normalised by its synthetic G (G_FROM_XP) though the file gives its G."""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from _paths import GAIA_SOURCE_DIR, SCO18, XP_DIR

from xpengine.features import SourceFlag
from xpengine.io import (
    GaiaFileError,
    embedded_gaia_source_columns,
    gaia_source_for,
    read_embedded_gaia_source,
    read_xp_continuous,
)

SCO18_ID = 4345775217221821312
SCO18_G = 5.327651  # the file's phot_g_mean_mag
RAW = XP_DIR / "XP_CONTINUOUS_RAW.csv"  # two real DR3 sources, archive CSV
RAW_IDS = [5853498713190525696, 5762406957886626816]


def _adql_join(path, parallax=("2.5", "0.8")):
    """XP_CONTINUOUS_RAW.csv with gaia_source columns appended as an ADQL join writes them (text)."""
    names = pacsv.read_csv(RAW, read_options=pacsv.ReadOptions(block_size=1 << 22)).column_names
    t = pacsv.read_csv(
        RAW, convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(names, pa.string()))
    )
    t = t.append_column("phot_g_mean_mag", pa.array(["15.1", "14.2"]))
    t = t.append_column("parallax", pa.array(list(parallax)))
    t = t.append_column("parallax_error", pa.array(["0.05", "0.04"]))
    t = t.append_column("ruwe", pa.array(["1.01", "0.98"]))
    # the Lindegren et al. (2021) zero point's inputs: without them a parallax is not used
    t = t.append_column("nu_eff_used_in_astrometry", pa.array(["1.55", "1.48"]))
    t = t.append_column("pseudocolour", pa.array(["", ""]))
    t = t.append_column("ecl_lat", pa.array(["-20.5", "-35.1"]))
    t = t.append_column("astrometric_params_solved", pa.array(["31", "31"]))
    pacsv.write_csv(t, path)
    return path


def _flags(table: pa.Table, source_id: int) -> int:
    ids = table.column("source_id").to_pylist()
    return int(table.column("flags")[ids.index(source_id)].as_py())


def test_18sco_file_gives_its_g_and_a_plain_read_says_it_was_left_out(caplog):
    assert embedded_gaia_source_columns(SCO18) == ["phot_g_mean_mag"]
    gaia = read_embedded_gaia_source(SCO18)
    assert gaia.column_names == ["source_id", "phot_g_mean_mag", "read_problem"]
    assert gaia.column("source_id").to_pylist() == [SCO18_ID]
    assert gaia.column("phot_g_mean_mag").type == pa.float32()
    assert gaia.column("phot_g_mean_mag")[0].as_py() == pytest.approx(SCO18_G, abs=1e-6)

    with caplog.at_level(logging.WARNING, logger="xpengine.io.xp_continuous"):
        plain = read_xp_continuous(SCO18)
    assert "phot_g_mean_mag" not in plain.column_names
    assert any(
        "phot_g_mean_mag" in r.getMessage() and "with_gaia_source=True" in r.getMessage()
        for r in caplog.records
    )

    joined = read_xp_continuous(SCO18, with_gaia_source=True)
    assert joined.column_names[: plain.num_columns] == plain.column_names  # the XP columns first, as before
    assert joined.column("phot_g_mean_mag")[0].as_py() == pytest.approx(SCO18_G, abs=1e-6)
    assert joined.schema.metadata == plain.schema.metadata  # source and coefficient counts kept


def test_a_file_without_gaia_source_columns_gives_none_and_no_warning(caplog):
    assert embedded_gaia_source_columns(RAW) == []
    assert read_embedded_gaia_source(RAW) is None
    with caplog.at_level(logging.WARNING, logger="xpengine.io.xp_continuous"):
        t = read_xp_continuous(RAW, with_gaia_source=True)
    assert t.column_names[-1] == "read_problem"
    assert not [r for r in caplog.records if "gaia_source" in r.getMessage()]


def test_an_adql_join_gets_gaia_dtypes_and_an_unreadable_value_is_a_row_problem(tmp_path):
    path = _adql_join(tmp_path / "join.csv", parallax=("abc", "0.8"))
    t = read_xp_continuous(path, with_gaia_source=True)
    assert t.column("source_id").to_pylist() == RAW_IDS
    assert t.column("parallax").type == pa.float64() and t.column("ruwe").type == pa.float32()
    assert t.column("parallax").to_pylist() == [None, 0.8]
    problem = t.column("read_problem")[0].as_py()
    assert problem.startswith("gaia_source parallax:") and "data row 1" in problem
    assert t.column("read_problem")[1].as_py() is None
    # the XP are unaffected
    assert t.column("bp_coefficients").null_count == 0


def test_one_row_per_wavelength_gives_one_row_per_source_and_must_agree(tmp_path):
    rows = {
        "source_id": [7, 7, 7, 9, 9, 9],
        "wavelength": [336.0, 338.0, 340.0] * 2,
        "flux": [1e-17] * 6,
        "flux_error": [1e-19] * 6,
        "phot_g_mean_mag": [12.5, 12.5, 12.5, 13.0, 13.0, 13.0],
    }
    pacsv.write_csv(pa.table(rows), tmp_path / "long.csv")
    g = read_embedded_gaia_source(tmp_path / "long.csv")
    assert g.column("source_id").to_pylist() == [7, 9]
    assert g.column("phot_g_mean_mag").to_pylist() == [12.5, 13.0]

    rows["phot_g_mean_mag"][4] = 13.1
    pacsv.write_csv(pa.table(rows), tmp_path / "bad.csv")
    with pytest.raises(GaiaFileError) as err:
        read_embedded_gaia_source(tmp_path / "bad.csv")
    msg = str(err.value)
    assert "bad.csv" in msg and "source 9" in msg and "phot_g_mean_mag" in msg and "row 5" in msg


def test_a_given_gaia_source_table_wins_over_the_files_own_columns():
    given = gaia_source_for(str(SCO18), str(GAIA_SOURCE_DIR / "1710099405832VAL-result.vot"))
    assert SCO18_ID not in given.column("source_id").to_pylist()
    own = gaia_source_for(str(SCO18), None)
    assert own.column("source_id").to_pylist() == [SCO18_ID]
    assert gaia_source_for(str(RAW), None) is None


def test_features_command_uses_the_files_own_g_and_parallax(tmp_path):
    from xpengine.cli import main

    assert main(["features", "--xp", str(SCO18), "--output", str(tmp_path / "sco.parquet")]) == 0
    f = _flags(pq.read_table(tmp_path / "sco.parquet"), SCO18_ID)
    assert not f & int(SourceFlag.G_FROM_XP | SourceFlag.NO_GAIA_SOURCE | SourceFlag.NO_GAIA_PHOTOMETRY)
    assert f & int(SourceFlag.NO_PARALLAX)  # the file has G only

    join = _adql_join(tmp_path / "join.csv")
    assert main(["features", "--xp", str(join), "--output", str(tmp_path / "join.parquet")]) == 0
    t = pq.read_table(tmp_path / "join.parquet")
    for sid in RAW_IDS:
        f = _flags(t, sid)
        assert not f & int(SourceFlag.G_FROM_XP | SourceFlag.NO_GAIA_SOURCE | SourceFlag.NO_PARALLAX), sid
    assert np.all(np.isfinite(t.column("g_fakemag").to_numpy()))  # the parallax's pseudo-luminosity


@pytest.mark.slow
@pytest.mark.ray
def test_job_uses_the_files_own_gaia_source_columns(ray_local, tmp_path):
    """The catalogue job on 18 Sco's file and an ADQL join, no --gaia-source: the stars' G (and the join's
    parallax) come from the files, so no G_FROM_XP, and the join's stars get parallax distances."""
    from xpengine.pipeline.config import InferenceConfig
    from xpengine.pipeline.ray_job import run_inference

    join = _adql_join(tmp_path / "join.csv")
    out = tmp_path / "catalog"
    cfg = InferenceConfig(
        input=[str(SCO18), str(join)],
        model="apogee-xp",
        output=str(out),
        labels=["teff", "logg", "m_h"],
        batch_size=64,
        progress_interval_s=0.0,
    )
    summary = run_inference(cfg)
    assert summary.ok, summary.partitions_failed
    cat = pq.read_table(out)
    assert sorted(cat.column("source_id").to_pylist()) == sorted([SCO18_ID, *RAW_IDS])
    ids = cat.column("source_id").to_pylist()
    g = cat.column("phot_g_mean_mag").to_pylist()
    assert g[ids.index(SCO18_ID)] == pytest.approx(SCO18_G, abs=1e-5)
    for sid in [SCO18_ID, *RAW_IDS]:
        assert not _flags(cat, sid) & int(SourceFlag.G_FROM_XP | SourceFlag.NO_GAIA_SOURCE), sid
    for sid, plx in zip(RAW_IDS, (2.5, 0.8), strict=True):
        f = _flags(cat, sid)
        assert f & int(SourceFlag.DISTANCE_FROM_PARALLAX) and not f & int(SourceFlag.NO_PARALLAX), sid
        d = cat.column("distance_pc")[ids.index(sid)].as_py()
        assert d == pytest.approx(1000.0 / plx, rel=0.1), sid  # 1/ϖ after the zero point
