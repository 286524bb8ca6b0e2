"""Review 19 of `xpengine query`: each finding's reproduction, on small catalogues written here.

1 region pruning by statistics, not names; 2 the gaia view (GaiaSource_* files, gaia_source columns,
a memory limit); 3 the SQL after the options; 4 runtime errors; 5 no output into the catalogue;
6 integer, unique join ids; 7 every output checked first; 8 write_dereddened_jk's overwrite; 9 the
provenance of results and a --join name given twice.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _query_catalog import f64, simulate, to_table, write_catalog

import xpengine.cli as top
from xpengine.catalog import cli
from xpengine.catalog.colours import write_dereddened_jk
from xpengine.catalog.query import QueryError, open_catalog, query_catalog
from xpengine.catalog.region import file_hpx8_ranges
from xpengine.io._arrays import SOURCE_ID_RULE

COUNT = "SELECT count(*) AS n FROM catalog"


def _count(d, **kw) -> int:
    return query_catalog(d, COUNT, **kw).column(0)[0].as_py()


def _query(*argv: str) -> int:
    """Through the `xpengine` command's own parsing (`xpengine.cli.main`)."""
    return top.main(["query", *argv])


@pytest.fixture(scope="module")
def cat(simulated_catalog):
    return simulated_catalog("rev19", 3000, seed=19)


@pytest.fixture(scope="module")
def misplaced(tmp_path_factory):
    """Rows all over the sky in files whose names say otherwise: a partition whose rows lie outside its
    name's range (kept by the engine, flagged OUTSIDE_PARTITION_RANGE) and a hash-suffixed single file."""
    cols = simulate(2000, seed=5)
    d = tmp_path_factory.mktemp("misplaced")
    low = np.flatnonzero(cols["hpx8"] <= 262143)
    rest = np.flatnonzero(cols["hpx8"] > 262143)
    pq.write_table(to_table(cols, rows=low), d / "XpContinuousMeanSpectrum_700000-703111.parquet")
    pq.write_table(
        to_table(cols, rows=rest), d / "XP_CONTINUOUS-Gaia_DR3_5937083312263887616-94709712.parquet"
    )
    return d, cols


# -- 1: pruning by what the files hold -------------------------------------------------------------
def test_region_keeps_rows_of_files_whose_names_lie(misplaced):
    d, cols = misplaced
    h = cols["hpx8"]
    assert _count(d, hpx8_range=(0, 262143)) == int((h <= 262143).sum()) > 0
    assert _count(d, hpx8_range=(262144, 786431)) == int((h > 262143).sum()) > 0
    glon, glat = f64(cols, "l"), f64(cols, "b")
    in_box = (glon >= 160) & (glon <= 250) & (glat >= -45) & (glat <= 40)
    assert _count(d, region=(160, 250, -45, 40)) == int(in_box.sum()) > 0


def test_files_are_pruned_by_statistics_and_kept_without_them(misplaced, tmp_path):
    d, _ = misplaced
    with open_catalog(d, hpx8_range=(0, 262143)) as c:
        assert [Path(f).name for f in c.files] == ["XpContinuousMeanSpectrum_700000-703111.parquet"]
    # the same rows without statistics: nothing says what the file holds, so it is read
    t = pq.read_table(d / "XP_CONTINUOUS-Gaia_DR3_5937083312263887616-94709712.parquet")
    pq.write_table(t, tmp_path / "nostats.parquet", write_statistics=False)
    assert file_hpx8_ranges(str(tmp_path / "nostats.parquet")) is None
    with open_catalog(tmp_path, hpx8_range=(0, 262143)) as c:
        assert len(c.files) == 1
        assert c.sql(COUNT).column(0)[0].as_py() == 0  # the view's hpx8 filter still applies


def test_join_tables_are_pruned_by_source_id_statistics_not_names(misplaced, tmp_path):
    d, cols = misplaced
    sid = cols["source_id"][cols["hpx8"] <= 262143]
    pq.write_table(
        pa.table({"source_id": sid, "x": np.ones(len(sid))}), tmp_path / "GaiaSrc_700000-703111.parquet"
    )
    sql = "SELECT count(*) FROM catalog JOIN truth USING (source_id)"
    got = query_catalog(d, sql, truth=tmp_path, hpx8_range=(0, 262143)).column(0)[0].as_py()
    assert got == len(sid)


# -- 2: the gaia view ------------------------------------------------------------------------------
def _gaia_dir(tmp_path: Path, sid: np.ndarray) -> Path:
    """The bulk layout: GaiaSource_* beside XpContinuousMeanSpectrum_* (source_id too, no positions)."""
    g = tmp_path / "bulk"
    g.mkdir()
    rows = "".join(f"{s},{i * 0.1},{-i * 0.1},12.5\n" for i, s in enumerate(sid))
    with gzip.open(g / "GaiaSource_000000-262143.csv.gz", "wt") as f:
        f.write("# %ECSV 1.0\n# ---\n# delimiter: ','\nsource_id,ra,dec,phot_g_mean_mag\n" + rows)
    xp = "".join(f'{s},1,"[{i}.0, 2.0]"\n' for i, s in enumerate(sid))
    with gzip.open(g / "XpContinuousMeanSpectrum_000000-262143.csv.gz", "wt") as f:
        f.write("source_id,solution_id,bp_coefficients\n" + xp)
    return g


def test_gaia_directory_reads_only_gaiasource_files(cat, tmp_path):
    d, cols = cat
    sid = cols["source_id"][:40]
    g = _gaia_dir(tmp_path, sid)
    t = query_catalog(
        d,
        "SELECT count(*) AS n, count(c.ra) AS r FROM catalog c JOIN gaia g USING (source_id)",
        gaia_source=g,
    )
    assert t.to_pylist() == [{"n": 40, "r": int((~cols["_no_gaia_source"][:40]).sum())}]
    assert query_catalog(d, "SELECT count(*) FROM gaia", gaia_source=g).column(0)[0].as_py() == 40


@pytest.mark.parametrize("given", ["file", "glob"])
def test_gaia_file_without_positions_is_refused_by_name(cat, tmp_path, given):
    d, cols = cat
    g = _gaia_dir(tmp_path, cols["source_id"][:5])
    xp = g / "XpContinuousMeanSpectrum_000000-262143.csv.gz"
    loc = xp if given == "file" else g / "*.csv.gz"
    with pytest.raises(
        QueryError, match=r"XpContinuousMeanSpectrum_000000-262143\.csv\.gz' has no ra, dec columns"
    ):
        open_catalog(d, gaia_source=loc)


def test_duckdb_runs_under_a_memory_limit(cat, capsys):
    d, _ = cat

    def limit_bytes(c) -> float:
        text = c.con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
        value, unit = text.split()
        return float(value) * {"MiB": 2**20, "GiB": 2**30, "TiB": 2**40}[unit]

    with open_catalog(d) as c:
        assert limit_bytes(c) <= 0.51 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    with open_catalog(d, memory_limit="1GB") as c:
        assert limit_bytes(c) == pytest.approx(1e9, rel=0.01)
    assert _query(str(d), COUNT, "--memory-limit", "lots") == 2
    assert "memory_limit" in capsys.readouterr().err


# -- 3: the SQL anywhere -----------------------------------------------------------------------------
def test_sql_may_follow_the_options(cat, tmp_path, capsys):
    d, cols = cat
    pq.write_table(
        pa.table({"source_id": cols["source_id"][:10], "age_gyr": np.ones(10)}), tmp_path / "t.parquet"
    )
    sql = "SELECT count(*) AS n FROM catalog c JOIN truth t USING (source_id)"
    assert _query(str(d), "--truth", str(tmp_path / "t.parquet"), sql) == 0
    assert capsys.readouterr().out.splitlines()[2].strip() == "10"
    assert _query("--head", "1", str(d), "--stats", COUNT) == 0
    assert capsys.readouterr().out.splitlines()[2].strip() == str(len(cols["source_id"]))
    assert cli.main([str(d), "--head", "3", COUNT]) == 0
    capsys.readouterr()
    for argv in ([str(d), COUNT, "extra"], [str(d), "--bogus", COUNT]):
        with pytest.raises(SystemExit) as info:
            _query(*argv)
        assert info.value.code == 2
        assert "unrecognized arguments" in capsys.readouterr().err


# -- 4: runtime errors -----------------------------------------------------------------------------
@pytest.mark.parametrize("output", [None, "x.parquet", "x.csv"])
def test_runtime_conversion_error_is_one_message(cat, tmp_path, capsys, output):
    d, _ = cat
    extra = [] if output is None else ["--output", str(tmp_path / output)]
    # fails in the last file only: DuckDB has started streaming, and its error reaches pyarrow's reader
    sql = "SELECT (CASE WHEN hpx8 >= 524288 THEN 'x' ELSE '1' END)::INTEGER AS x FROM catalog"
    assert _query(str(d), sql, "--threads", "1", *extra) == 2
    err = capsys.readouterr().err
    assert err.startswith("xpengine query: error: SQL error") and "Could not convert string 'x'" in err
    assert "Traceback" not in err
    assert not list(tmp_path.iterdir())


def test_list_column_to_csv_names_the_column(cat, tmp_path, capsys):
    d, _ = cat
    assert (
        _query(str(d), "SELECT source_id, [1, 2] AS pair FROM catalog", "--output", str(tmp_path / "l.csv"))
        == 2
    )
    err = capsys.readouterr().err
    assert "column 'pair' has type list" in err and "CSV cannot hold" in err
    assert not list(tmp_path.iterdir())


def test_threads_must_be_positive(cat, capsys):
    d, _ = cat
    assert _query(str(d), COUNT, "--threads", "0") == 2
    assert "--threads must be ≥ 1, got 0" in capsys.readouterr().err
    with pytest.raises(QueryError, match="threads must be an integer ≥ 1"):
        open_catalog(d, threads=0)


# -- 5: no output into a folder the query reads --------------------------------------------------------
def test_output_inside_the_catalogue_is_refused(tmp_path, capsys):
    cols = simulate(500, seed=3)
    d = tmp_path / "cat"
    write_catalog(d, cols)
    before = sorted(p.name for p in d.iterdir())
    one = d / "XpContinuousMeanSpectrum_000000-262143.parquet"
    for loc, out, extra in (
        (d, d / "giants.parquet", []),
        (str(d / "*.parquet"), d / "g.csv", []),
        (one, one, ["--overwrite"]),
    ):
        assert _query(str(loc), "--preset", "giants", "--output", str(out), *extra) == 2
        assert "which this query reads" in capsys.readouterr().err
    assert sorted(p.name for p in d.iterdir()) == before
    assert _count(d) == len(cols["source_id"])


# -- 6: integer, unique source_id in joined tables --------------------------------------------------------
def test_float_source_ids_are_refused_naming_the_file(cat, tmp_path):
    d, cols = cat
    sid = cols["source_id"][:3]
    csv = tmp_path / "j.csv"
    csv.write_text("source_id,x\n" + "".join(f"{float(s)!r},1\n" for s in sid))
    with pytest.raises(QueryError, match=r"j\.csv' column source_id has type DOUBLE") as info:
        open_catalog(d, joins={"j": csv})
    assert SOURCE_ID_RULE in str(info.value)
    # Parquet: each file is checked (DuckDB would cast a later file's doubles to the first file's BIGINT)
    tdir = tmp_path / "truth"
    tdir.mkdir()
    pq.write_table(pa.table({"source_id": sid}), tdir / "a.parquet")
    pq.write_table(pa.table({"source_id": sid.astype(np.float64)}), tdir / "b.parquet")
    with pytest.raises(QueryError, match=r"b\.parquet' column source_id has type double"):
        open_catalog(d, truth=tdir)


def test_repeated_source_ids_are_refused_in_join_tables(cat, tmp_path):
    d, cols = cat
    sid = cols["source_id"][:4]
    path = tmp_path / "jk0.parquet"
    pq.write_table(pa.table({"source_id": np.r_[sid, sid[2]], "jk0": np.ones(5)}), path)
    with pytest.raises(QueryError, match=rf"jk0\.parquet' holds source_id {sid[2]} 2 times"):
        open_catalog(d, joins={"colours": path})
    with pytest.raises(QueryError, match=rf"holds source_id {sid[2]} 2 times"):
        open_catalog(d, truth=path)
    # spread over two files of a directory: both named
    jd = tmp_path / "jdir"
    jd.mkdir()
    pq.write_table(pa.table({"source_id": sid}), jd / "a.parquet")
    pq.write_table(pa.table({"source_id": sid[:1]}), jd / "b.parquet")
    with pytest.raises(QueryError, match=r"a\.parquet', '.*b\.parquet' holds source_id"):
        open_catalog(d, joins={"k": jd})


# -- 7: every output checked before anything runs ---------------------------------------------------------
def test_count_with_an_output_is_refused(cat, tmp_path, capsys):
    d, _ = cat
    out = tmp_path / "f.csv"
    assert _query(str(d), "--preset", "giants", "--count", "--output", str(out)) == 2
    assert "--count prints the number of rows and writes no file" in capsys.readouterr().err
    assert not out.exists()


def test_existing_plot_is_refused_before_the_output_is_written(cat, tmp_path, capsys):
    d, _ = cat
    png, csv = tmp_path / "amr.png", tmp_path / "amr.csv"
    png.write_bytes(b"old")
    argv = [str(d), "--preset", "age-metallicity", "--output", str(csv), "--plot", str(png)]
    assert _query(*argv) == 2
    err = capsys.readouterr().err
    assert "plot file" in err and "exists; pass --overwrite" in err
    assert not csv.exists() and png.read_bytes() == b"old"
    assert _query(*argv, "--overwrite") == 0
    assert csv.exists() and png.read_bytes()[:4] == b"\x89PNG"


# -- 8: write_dereddened_jk asks before replacing ----------------------------------------------------------
def test_write_dereddened_jk_refuses_an_existing_output(tmp_path):
    cat = tmp_path / "cat"
    cat.mkdir()
    pq.write_table(
        pa.table({"source_id": np.array([1, 5], dtype=np.int64), "ebv": [0.0, 0.1]}), cat / "a.parquet"
    )
    tmass = tmp_path / "tmass.csv"
    tmass.write_text("source_id,j_m,ks_m\n1,10.0,9.3\n5,9.0,8.5\n")
    out = tmp_path / "jk0.parquet"
    assert write_dereddened_jk(cat, tmass, out) == 2
    out.write_bytes(b"keep")
    with pytest.raises(QueryError, match=r"jk0\.parquet' exists; pass overwrite=True"):
        write_dereddened_jk(cat, tmass, out)
    assert out.read_bytes() == b"keep"
    assert write_dereddened_jk(cat, tmass, out, overwrite=True) == 2
    assert pq.read_table(out).num_rows == 2


# -- 9: provenance in results; a --join name once ---------------------------------------------------------
def test_output_keeps_the_catalogues_provenance(tmp_path):
    cols = simulate(300, seed=4)
    d = tmp_path / "cat"
    write_catalog(d, cols)
    prov = json.dumps({"model": "gaia-xp", "version": 5})
    for f in d.glob("*.parquet"):
        t = pq.read_table(f)
        pq.write_table(
            t.replace_schema_metadata({**t.schema.metadata, b"xpengine.provenance": prov.encode()}), f
        )
    for out, argv in (
        (tmp_path / "rows.parquet", ["SELECT source_id, age FROM catalog"]),
        (tmp_path / "amr.parquet", ["--preset", "age-metallicity"]),
    ):
        assert _query(str(d), *argv, "--output", str(out)) == 0
        meta = pq.read_schema(out).metadata
        assert meta[b"xpengine.provenance"].decode() == prov
        assert meta[b"xpengine.model"] == b"test"
        assert json.loads(meta[b"xpengine.units"])  # the units, as before


def test_a_join_name_given_twice_is_refused(cat, tmp_path, capsys):
    d, cols = cat
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    pq.write_table(pa.table({"source_id": cols["source_id"][:2]}), a)
    pq.write_table(pa.table({"source_id": cols["source_id"][:3]}), b)
    assert _query(str(d), COUNT, "--join", f"j={a}", "--join", f"j={b}") == 2
    assert "--join 'j' is given twice" in capsys.readouterr().err
    with pytest.raises(QueryError, match="join name 'J' is given twice"):
        open_catalog(d, joins={"j": a, "J": b})
