"""An XP file that holds gaia_source columns beside its XP: an ADQL join of `xp_continuous_mean_spectrum`
with `gaia_source`, or GaiaXPy's 18 Sco file with its `phot_g_mean_mag`. `io.read_embedded_columns`
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
    embedded_columns,
    read_embedded_columns,
    read_gaia_source,
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
    assert embedded_columns(SCO18) == ["phot_g_mean_mag"]
    gaia = read_embedded_columns(SCO18)
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
    assert embedded_columns(RAW) == []
    assert read_embedded_columns(RAW) is None
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
    assert problem.startswith("XP file parallax:") and "data row 1" in problem
    assert t.column("read_problem")[1].as_py() is None
    # the XP are unaffected
    assert t.column("bp_coefficients").null_count == 0


def test_a_repeated_source_gives_one_row_its_first_and_a_disagreement_is_logged(tmp_path, caplog):
    """One row per wavelength (long-layout XP_SAMPLED), or a join through a cross-match that repeats a
    source: one row per source. Values that disagree keep the first row's, with a warning naming the
    source, row and column (the job keeps a source's first row too; until review the file failed)."""
    rows = {
        "source_id": [7, 7, 7, 9, 9, 9],
        "wavelength": [336.0, 338.0, 340.0] * 2,
        "flux": [1e-17] * 6,
        "flux_error": [1e-19] * 6,
        "phot_g_mean_mag": [12.5, 12.5, 12.5, 13.0, 13.0, 13.0],
    }
    pacsv.write_csv(pa.table(rows), tmp_path / "long.csv")
    g = read_embedded_columns(tmp_path / "long.csv")
    assert g.column("source_id").to_pylist() == [7, 9]
    assert g.column("phot_g_mean_mag").to_pylist() == [12.5, 13.0]

    rows["phot_g_mean_mag"][4] = 13.1
    pacsv.write_csv(pa.table(rows), tmp_path / "bad.csv")
    with caplog.at_level(logging.WARNING, logger="xpengine.io.embedded"):
        g = read_embedded_columns(tmp_path / "bad.csv")
    assert g.column("phot_g_mean_mag").to_pylist() == [12.5, 13.0]
    msg = " ".join(r.getMessage() for r in caplog.records)
    assert "bad.csv" in msg and "source 9" in msg and "phot_g_mean_mag" in msg and "data row 5" in msg


def test_units_declared_in_the_file_are_converted_or_refused(tmp_path):
    """A VOTable join whose parallax is declared in arcsec is converted to mas (it was read as 0.0025 mas);
    a unit that does not convert is refused, naming the column; Gaia's own units pass untouched."""
    from astropy.table import Table

    t = Table({"source_id": [1, 2], "parallax": [0.0025, 0.001], "phot_g_mean_mag": [12.0, 13.0]})
    t["parallax"].unit = "arcsec"
    t["phot_g_mean_mag"].unit = "mag"
    t.write(tmp_path / "arcsec.xml", format="votable")
    g = read_gaia_source(tmp_path / "arcsec.xml", columns=["parallax", "phot_g_mean_mag"])
    assert g.column("parallax").to_pylist() == pytest.approx([2.5, 1.0])
    assert g.column("phot_g_mean_mag").to_pylist() == [12.0, 13.0]
    t["parallax"].unit = "mag"
    t.write(tmp_path / "mag.xml", format="votable", overwrite=True)
    with pytest.raises(GaiaFileError, match="column parallax is declared in 'mag'"):
        read_gaia_source(tmp_path / "mag.xml", columns=["parallax"])
    # the archive's own files (VOTable with 'electron'.s**-1, um**-1, ...) read as before
    for f in sorted(GAIA_SOURCE_DIR.iterdir()):
        assert read_gaia_source(f).num_rows > 0


def test_look_alike_and_other_tables_columns_are_named_in_a_warning(tmp_path, caplog):
    names = pacsv.read_csv(RAW).column_names
    t = pacsv.read_csv(
        RAW, convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(names, pa.string()))
    )
    t = t.append_column("PHOT_G_MEAN_MAG", pa.array(["15.1", "14.2"]))
    t = t.append_column("gaia_source.parallax", pa.array(["1.0", "2.0"]))
    t = t.append_column("j_m", pa.array(["12.0", "11.0"]))
    pacsv.write_csv(t, tmp_path / "odd.csv")
    with caplog.at_level(logging.WARNING, logger="xpengine.io.embedded"):
        assert embedded_columns(tmp_path / "odd.csv") == []
    msg = " ".join(r.getMessage() for r in caplog.records)
    assert "PHOT_G_MEAN_MAG" in msg and "gaia_source.parallax" in msg and "not used" in msg
    assert "2MASS" in msg and "j_m" in msg and "--tmass" in msg


def test_the_plan_uses_a_files_own_columns_unless_a_partner_is_given(caplog):
    """The plan decides, on the driver (logged there): 18 Sco's file alone uses its G; with a gaia_source
    file given, that file's rows are used and a warning says the XP file's own columns are not; a catalogue
    finished before session 26 (no record of the file's own columns) is not resumed as if nothing changed."""
    from dataclasses import replace

    from xpengine.pipeline.config import InferenceConfig
    from xpengine.pipeline.identity import _input_change
    from xpengine.pipeline.plan import _input_fingerprints, plan_partitions

    with caplog.at_level(logging.INFO, logger="xpengine.pipeline"):
        (alone,) = plan_partitions(InferenceConfig(input=[str(SCO18)]))
    assert alone.own == ("phot_g_mean_mag",) and alone.gaia is None
    assert any("using its own column" in r.getMessage() for r in caplog.records)
    vot = str(GAIA_SOURCE_DIR / "1710099405832VAL-result.vot")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="xpengine.pipeline"):
        (paired,) = plan_partitions(InferenceConfig(input=[str(SCO18)], gaia_source=[vot]))
    assert paired.own == () and paired.gaia == vot
    assert any(
        "used instead" in r.getMessage() and "phot_g_mean_mag" in r.getMessage() for r in caplog.records
    )
    (raw,) = plan_partitions(InferenceConfig(input=[str(RAW)]))
    assert raw.own == ()
    # resume: a record made without the file's own columns differs from this run's
    old_record = {"inputs": _input_fingerprints(replace(alone, own=()))}
    assert "xp_file_own_columns" in _input_change(alone, old_record, False)
    assert _input_change(alone, {"inputs": _input_fingerprints(alone)}, False) is None
    assert _input_change(raw, {"inputs": _input_fingerprints(raw)}, False) is None


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
def test_job_uses_the_files_own_columns(ray_local, tmp_path):
    """The catalogue job on 18 Sco's file and an ADQL join, no --gaia-source: the stars' G (and the join's
    parallax, 2MASS and E(B−V)) come from the files, so no G_FROM_XP, and the join's stars get parallax
    distances, J−H / J−K and their E(B−V)."""
    from xpengine.pipeline.config import InferenceConfig
    from xpengine.pipeline.ray_job import run_inference

    join = _with_2mass_and_ebv(tmp_path / "join.csv")
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
        assert not f & int(SourceFlag.NO_2MASS | SourceFlag.NO_EXTINCTION), sid  # the join's J/H/Ks, E(B−V)
        d = cat.column("distance_pc")[ids.index(sid)].as_py()
        assert d == pytest.approx(1000.0 / plx, rel=0.1), sid  # 1/ϖ after the zero point


def test_features_command_reads_a_compact_file_as_the_job_does(tmp_path):
    """`xpengine features --xp ModelInputs_*.parquet` (`xpengine compact` output, a missing band stored as
    NaN): read as the job reads it, so the star without BP is NO_BP, not READ_PROBLEM (review, session 26),
    and its gaia_source columns (here 18 Sco's own G) are the file's."""
    from xpengine.cli import main
    from xpengine.io import join_sources, write_model_inputs

    missing_bp = XP_DIR / "XP_CONTINUOUS_RAW_with_missing_BP.ecsv"
    for src, name in ((missing_bp, "a"), (SCO18, "b")):
        table = read_xp_continuous(src, with_gaia_source=True)
        if "phot_g_mean_mag" not in table.column_names:
            table = join_sources(table, None)
        write_model_inputs(table, tmp_path / f"ModelInputs_{name}.parquet")
        assert (
            main(
                [
                    "features",
                    "--xp",
                    str(tmp_path / f"ModelInputs_{name}.parquet"),
                    "--output",
                    str(tmp_path / f"{name}.parquet"),
                ]
            )
            == 0
        )
    a = pq.read_table(tmp_path / "a.parquet")
    f = _flags(a, 5405570973190252288)  # the DR3 source without BP
    assert f & int(SourceFlag.NO_BP) and not f & int(SourceFlag.READ_PROBLEM)
    f = _flags(pq.read_table(tmp_path / "b.parquet"), SCO18_ID)
    assert not f & int(SourceFlag.G_FROM_XP | SourceFlag.NO_GAIA_SOURCE)


def test_a_g_magnitude_that_disagrees_with_the_g_flux_is_named(tmp_path, caplog):
    """DR3 derives phot_g_mean_mag from phot_g_mean_flux; a table where they disagree (a join mixing two
    sources' values) normalises by the flux, and now says so instead of staying silent."""
    from xpengine.features import build_tokens
    from xpengine.io import join_sources

    xp = read_xp_continuous(RAW)
    flux = pa.array([10 ** ((25.6873668671 - 15.0) / 2.5), 10 ** ((25.6873668671 - 14.0) / 2.5)])
    gaia = pa.table(
        {
            "source_id": RAW_IDS,
            "phot_g_mean_flux": flux,
            "phot_g_mean_mag": pa.array([15.0, 14.5], pa.float32()),
        }
    )
    with caplog.at_level(logging.WARNING, logger="xpengine.features.tokens"):
        build_tokens(join_sources(xp, gaia))
    msg = " ".join(r.getMessage() for r in caplog.records)
    assert "1 row(s) whose phot_g_mean_mag and phot_g_mean_flux disagree" in msg and "row 1" in msg


def test_column_names_come_from_the_header_without_reading_a_votable_or_fits_whole(monkeypatch):
    """`formats.table_column_names` (what the check for an XP file's own gaia_source columns reads) gives
    every bundled file's columns as its reader does, and for VOTable and FITS from the first bytes: their
    readers parse the whole file, which made a plain read of a large VOTable twice as slow (review)."""
    from xpengine.io.formats import fits, open_table_reader, table_column_names, votable

    files = sorted(XP_DIR.iterdir()) + sorted(GAIA_SOURCE_DIR.iterdir())
    expected = {f: list(open_table_reader(f).columns) for f in files}

    def refuse(src):
        raise AssertionError(f"{src.url} read whole")

    monkeypatch.setattr(votable, "open_reader", refuse)
    monkeypatch.setattr(fits, "open_reader", refuse)
    for f in files:
        assert table_column_names(f) == expected[f], f.name


def _with_2mass_and_ebv(path):
    """An ADQL join with the 2MASS best-neighbour photometry and a dust map's E(B−V) beside G / parallax."""
    t = pacsv.read_csv(_adql_join(path), convert_options=pacsv.ConvertOptions(strings_can_be_null=False))
    names = t.column_names
    t = pacsv.read_csv(
        path, convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(names, pa.string()))
    )
    for name, values in (
        ("j_m", ["13.00", "12.00"]),
        ("j_msigcom", ["0.02", "0.02"]),
        ("h_m", ["12.40", "11.90"]),
        ("h_msigcom", ["0.02", "0.03"]),
        ("ks_m", ["12.20", "11.85"]),
        ("ks_msigcom", ["0.03", "0.02"]),
        ("ebv", ["0.10", "0.02"]),
    ):
        t = t.append_column(name, pa.array(values))
    pacsv.write_csv(t, path)
    return path


def test_an_adql_joins_2mass_and_ebv_columns_are_used_unless_tables_are_given(tmp_path, caplog):
    """J, H, Ks (all six 2MASS columns) and E(B−V) in the join give the J−H, J−K and ln E(B−V) tokens,
    as --tmass / --ebv tables would; a table given replaces them, with a warning; the plan records them."""
    from xpengine.cli import main
    from xpengine.pipeline.config import InferenceConfig
    from xpengine.pipeline.plan import plan_partitions

    join = _with_2mass_and_ebv(tmp_path / "join.csv")
    assert embedded_columns(join)[-7:] == [
        "j_m",
        "j_msigcom",
        "h_m",
        "h_msigcom",
        "ks_m",
        "ks_msigcom",
        "ebv",
    ]
    assert main(["features", "--xp", str(join), "--output", str(tmp_path / "own.parquet")]) == 0
    t = pq.read_table(tmp_path / "own.parquet")
    np.testing.assert_allclose(t.column("jh").to_numpy(), [0.60, 0.10], atol=1e-5)
    np.testing.assert_allclose(t.column("jk").to_numpy(), [0.80, 0.15], atol=1e-5)
    np.testing.assert_allclose(t.column("logebv").to_numpy(), np.log([0.10, 0.02]), atol=1e-5)
    for sid in RAW_IDS:
        assert not _flags(t, sid) & int(SourceFlag.NO_2MASS | SourceFlag.NO_EXTINCTION), sid

    tmass = tmp_path / "tmass.parquet"  # another star's photometry: the table given wins
    pq.write_table(
        pa.table(
            {"source_id": RAW_IDS, **{c: [10.0, 10.0] for c in ("j_m", "h_m", "ks_m")},
             **{c: [0.02, 0.02] for c in ("j_msigcom", "h_msigcom", "ks_msigcom")}}
        ),
        tmass,
    )  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="xpengine.features.cli"):
        assert (
            main(
                [
                    "features",
                    "--xp",
                    str(join),
                    "--tmass",
                    str(tmass),
                    "--output",
                    str(tmp_path / "t.parquet"),
                ]
            )
            == 0
        )
    assert pq.read_table(tmp_path / "t.parquet").column("jh").to_pylist() == [0.0, 0.0]
    assert any(
        "replaced by the tables given" in r.getMessage() and "j_m" in r.getMessage() for r in caplog.records
    )

    (task,) = plan_partitions(InferenceConfig(input=[str(join)]))
    assert "j_m" in task.own and "ebv" in task.own and "parallax" in task.own
    (task,) = plan_partitions(InferenceConfig(input=[str(join)], tmass=str(tmass)))
    assert "j_m" not in task.own and "ebv" in task.own


def _edit_csv(path, edits):
    """Rewrite a CSV with {(data row, column): text} applied (rows 0-based after the header)."""
    import csv

    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    for (r, col), text in edits.items():
        rows[r + 1][rows[0].index(col)] = text
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return path


def test_review_of_the_2mass_columns(tmp_path):
    """Found by review (helper-72): an unreadable 2MASS / ebv value in a CSV join is a row problem (it
    failed the file, naming nothing); `xpengine features --tmass` and `xpengine compact --tmass` take the
    table's rows without reading the file's own 2MASS (a bad own value flagged the row, and compact failed
    on a column clash); a catalogue recorded under the earlier key name resumes."""
    from xpengine.cli import main
    from xpengine.pipeline.config import InferenceConfig
    from xpengine.pipeline.identity import _input_change
    from xpengine.pipeline.plan import _input_fingerprints, plan_partitions

    join = _edit_csv(_with_2mass_and_ebv(tmp_path / "join.csv"), {(0, "ebv"): "--"})
    assert main(["features", "--xp", str(join), "--output", str(tmp_path / "a.parquet")]) == 0
    t = pq.read_table(tmp_path / "a.parquet")
    assert _flags(t, RAW_IDS[0]) & int(SourceFlag.READ_PROBLEM) and np.isnan(t.column("logebv")[0].as_py())
    assert np.isfinite(t.column("logebv")[1].as_py()) and not _flags(t, RAW_IDS[1]) & int(
        SourceFlag.READ_PROBLEM
    )

    tmass = tmp_path / "tmass.parquet"
    pq.write_table(
        pa.table(
            {"source_id": RAW_IDS, **{c: [10.0, 10.0] for c in ("j_m", "h_m", "ks_m")},
             **{c: [0.02, 0.02] for c in ("j_msigcom", "h_msigcom", "ks_msigcom")}}
        ),
        tmass,
    )  # fmt: skip
    bad_j = _edit_csv(_with_2mass_and_ebv(tmp_path / "j.csv"), {(1, "j_m"): "abc"})
    own_j = read_xp_continuous(bad_j, with_gaia_source=True).column("read_problem")[1].as_py()
    assert (
        own_j.startswith("XP file j_m:") and "data row 2" in own_j
    )  # the XP file's column, not gaia_source's
    assert (
        main(["features", "--xp", str(bad_j), "--tmass", str(tmass), "--output", str(tmp_path / "b.parquet")])
        == 0
    )
    b = pq.read_table(tmp_path / "b.parquet")
    assert b.column("jh").to_pylist() == [0.0, 0.0]
    assert not _flags(b, RAW_IDS[1]) & int(SourceFlag.READ_PROBLEM)

    out = tmp_path / "compact"
    assert main(["compact", "--input", str(bad_j), "--output", str(out), "--tmass", str(tmass)]) == 0
    (made,) = list(out.glob("ModelInputs_*.parquet"))
    assert pq.read_table(made, columns=["j_m"]).column("j_m").to_pylist() == [10.0, 10.0]

    (task,) = plan_partitions(InferenceConfig(input=[str(SCO18)]))
    rec = _input_fingerprints(task)
    rec["gaia_source_own_columns"] = rec.pop("xp_file_own_columns")  # as ecc0984 recorded it
    assert _input_change(task, {"inputs": rec}, False) is None


def test_a_compact_copys_own_column_problems_go_when_a_gaia_source_table_replaces_them():
    """A compact copy of an ADQL join keeps its own columns' read problems, labelled "XP file ..."; a
    gaia_source table given to the job replaces those columns, and their problems go with them (a review
    found them kept after they were relabelled from "gaia_source ...")."""
    from xpengine.pipeline.stages import _without_gaia_problems

    texts = [
        "XP file parallax: not a valid double value: 'abc' (data row 1)",
        "bp_chi_squared: x (data row 2); XP file ruwe: y (data row 2)",
        "bp_chi_squared: x (data row 3)",
        "gaia_source ruwe: y (data row 4)",
        None,
    ]
    chunk = pa.table({"source_id": [1, 2, 3, 4, 5], "read_problem": pa.array(texts, pa.string())})
    got = _without_gaia_problems(chunk).column("read_problem").to_pylist()
    assert got == [None, "bp_chi_squared: x (data row 2)", "bp_chi_squared: x (data row 3)", None, None]


def test_a_gaia_source_file_without_a_required_column_is_refused_at_planning(tmp_path):
    """A photometry-only gaia_source query (no ra, dec, parallax, parallax_error) failed each partition
    after Ray had started (review of session 33); the plan now refuses it, naming the file and columns,
    in any format, before any work. The same columns in upper case get the lower-case hint."""
    from xpengine.io.gaia_source import check_gaia_source_columns
    from xpengine.pipeline.config import InferenceConfig
    from xpengine.pipeline.plan import JobError, plan_partitions

    vot = str(GAIA_SOURCE_DIR / "1710099405832VAL-result.vot")
    check_gaia_source_columns(vot)  # a full gaia_source file passes
    full = read_gaia_source(vot)
    photometry = full.select(["source_id", "phot_g_mean_mag", "phot_bp_mean_mag", "phot_rp_mean_mag"])
    for name, write in (("phot.csv", pacsv.write_csv), ("phot.parquet", pq.write_table)):
        write(photometry, tmp_path / name)
        with pytest.raises(JobError) as err:
            plan_partitions(InferenceConfig(input=[str(SCO18)], gaia_source=[str(tmp_path / name)]))
        msg = str(err.value)
        assert name in msg and "['ra', 'dec', 'parallax', 'parallax_error']" in msg and "--gaia-source" in msg
    (tmp_path / "empty.ecsv").write_bytes(b"")  # unreadable: left to its partition's read, which names it
    with pytest.raises(OSError, match="empty"):
        check_gaia_source_columns(tmp_path / "empty.ecsv")
    (task,) = plan_partitions(InferenceConfig(input=[str(SCO18)], gaia_source=[str(tmp_path / "empty.ecsv")]))
    assert task.gaia.endswith("empty.ecsv")
    upper = full.rename_columns([c.upper() if c in ("ra", "dec") else c for c in full.column_names])
    pq.write_table(upper, tmp_path / "upper.parquet")
    with pytest.raises(JobError, match=r"\['ra', 'dec'\].*lower"):
        plan_partitions(InferenceConfig(input=[str(SCO18)], gaia_source=[str(tmp_path / "upper.parquet")]))
