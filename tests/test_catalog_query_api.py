"""The Python API: joins (truth, real gaia_source ECSV), clear errors, file output, S3 catalogues."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _paths import GAIA_SOURCE_DIR
from _query_catalog import LABELS, f64, simulate, to_table, write_catalog

from xpengine.catalog.query import (
    _MAX_SQL_RANGES,
    CatalogNotFoundError,
    QueryError,
    open_catalog,
    query_catalog,
    write_table_stream,
)
from xpengine.catalog.sky import coarsen_ranges

GAIA_ECSV = GAIA_SOURCE_DIR / "1712337806100O-result.ecsv"  # bundled real gaia_source rows (tests/data)


@pytest.fixture(scope="module")
def cat(simulated_catalog):
    return simulated_catalog("apicat", 5000, seed=21)


@pytest.fixture(scope="module")
def truth(cat, tmp_path_factory):
    """A simulated truth table for 80 % of the catalogue's sources."""
    _, cols = cat
    rng = np.random.default_rng(4)
    keep = rng.random(len(cols["source_id"])) < 0.8
    t = pa.table(
        {
            "source_id": cols["source_id"][keep],
            "mass": rng.uniform(0.7, 3.0, keep.sum()),
            "age_gyr": rng.uniform(0.5, 13.0, keep.sum()),
            "teff": rng.uniform(4000, 5200, keep.sum()),
            "logg": rng.uniform(1.0, 3.4, keep.sum()),
            "m_h": rng.uniform(-1.5, 0.4, keep.sum()),
        }
    )
    path = tmp_path_factory.mktemp("truth") / "truth.parquet"
    pq.write_table(t, path)
    return path, keep, t


def test_truth_join(cat, truth):
    d, cols = cat
    path, keep, t = truth
    sql = """SELECT count(*) AS n, median(c.age - t.age_gyr) AS med, sum(c.mass > t.mass) AS heavier
             FROM catalog c JOIN truth t USING (source_id) WHERE isfinite(c.age)"""
    got = query_catalog(d, sql, truth=path).to_pylist()[0]
    age, mass = f64(cols, "age")[keep], f64(cols, "mass")[keep]
    ok = np.isfinite(age)
    assert got["n"] == int(ok.sum())
    assert got["med"] == pytest.approx(np.median(age[ok] - t.column("age_gyr").to_numpy()[ok]), rel=1e-12)
    # NaN > x is true in DuckDB: the catalogue's NaN masses count as heavier, numpy's do not
    heavier_numpy = int((mass[ok] > t.column("mass").to_numpy()[ok]).sum())
    assert got["heavier"] == heavier_numpy + int(np.isnan(mass[ok]).sum())


def test_sql_parameters(cat):
    d, cols = cat
    t = query_catalog(
        d, "SELECT count(*) AS n FROM catalog WHERE logg < $g AND flags = $f", params={"g": 2.0, "f": 0}
    )
    assert t.column("n")[0].as_py() == int(((f64(cols, "logg") < 2.0) & (cols["flags"] == 0)).sum())


def _real_gaia_catalog(tmp_path):
    """A catalogue holding the 5 real sources of the archive ECSV, and that ECSV gzipped as a bulk file."""
    from astropy.table import Table

    ref = Table.read(GAIA_ECSV)
    sid = np.asarray(ref["source_id"], dtype=np.int64)
    cols = simulate(len(sid), seed=1)
    order = np.argsort(sid)
    cols["source_id"] = sid[order]
    cols["hpx8"] = (sid[order] >> 43).astype(np.int32)
    d = tmp_path / "cat"
    d.mkdir()
    pq.write_table(to_table(cols), d / "XpContinuousMeanSpectrum_754000-755000.parquet")
    gdir = tmp_path / "gaia_source"
    gdir.mkdir()
    with open(GAIA_ECSV, "rb") as src, gzip.open(gdir / "GaiaSource_754000-755000.csv.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    return d, gdir, ref


def test_gaia_source_join_reads_real_bulk_ecsv(tmp_path):
    d, gdir, ref = _real_gaia_catalog(tmp_path)
    t = query_catalog(
        d,
        """SELECT source_id, g.ra, g.l, g.b, g.parallax, g.phot_g_mean_mag, g.astrometric_params_solved
           FROM catalog c JOIN gaia g USING (source_id) ORDER BY source_id""",
        gaia_source=gdir,
    ).to_pydict()
    ref.sort("source_id")
    assert t["source_id"] == [int(s) for s in ref["source_id"]]
    for c in ("ra", "l", "b", "phot_g_mean_mag"):
        np.testing.assert_allclose(t[c], np.asarray(ref[c], dtype=np.float64), rtol=1e-7, err_msg=c)
    par = np.array(t["parallax"], dtype=np.float64)
    np.testing.assert_allclose(par, np.asarray(ref["parallax"], dtype=np.float64), rtol=1e-12)
    assert np.isnan(par).sum() == 2  # the archive writes `nan` for the two 2-parameter sources
    assert t["astrometric_params_solved"] == [None] * 5  # empty field → null


def test_gaia_source_files_are_pruned_with_the_catalogue(tmp_path):
    """Pruned by what the files hold (Parquet statistics), never by their names (review 19: names lie)."""
    d, gdir, ref = _real_gaia_catalog(tmp_path)
    shutil.copy(gdir / "GaiaSource_754000-755000.csv.gz", gdir / "GaiaSource_000000-000010.csv.gz")
    with open_catalog(d, gaia_source=gdir, hpx8_range=(754000, 755000)) as c:
        n = c.sql("SELECT count(*) FROM gaia").column(0)[0].as_py()
    assert n == 10  # text files have no statistics: the misnamed copy (rows in the range) is read too
    with open_catalog(d, gaia_source=gdir) as c:
        assert c.sql("SELECT count(*) FROM gaia").column(0)[0].as_py() == 10
    pdir = tmp_path / "gaia_parquet"
    pdir.mkdir()
    sid = np.sort(np.asarray(ref["source_id"], dtype=np.int64))
    rows = {"ra": np.zeros(5), "dec": np.zeros(5)}
    pq.write_table(pa.table({"source_id": sid, **rows}), pdir / "GaiaSource_000000-000010.parquet")
    pq.write_table(
        pa.table({"source_id": np.arange(5, dtype=np.int64), **rows}),
        pdir / "GaiaSource_754000-755000.parquet",
    )
    with open_catalog(d, gaia_source=pdir, hpx8_range=(754000, 755000)) as c:
        assert (
            c.sql("SELECT list(source_id ORDER BY source_id) FROM gaia").column(0)[0].as_py() == sid.tolist()
        )


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELEC count(*) FROM catalog", 'syntax error at or near "SELEC"'),
        ("SELECT nope FROM catalog", 'Referenced column "nope" not found'),
        ("SELECT * FROM catalogue", "catalogue does not exist"),
        ("SELECT 1; SELECT 2", "exactly one SQL statement, got 2"),
        ("DROP VIEW catalog", "got a DROP statement"),
        ("COPY catalog TO 'x.csv'", "got a COPY statement"),
        ("   ", "empty SQL query"),
        ("SELECT 'abc'::INTEGER FROM catalog", "Could not convert string 'abc'"),
    ],
)
def test_sql_errors_are_query_errors(cat, sql, message):
    d, _ = cat
    with pytest.raises(QueryError, match=r"SQL error|exactly one|read-only|empty") as info:
        query_catalog(d, sql)
    assert message in str(info.value)


def test_missing_and_unusable_catalogues(tmp_path, cat):
    with pytest.raises(CatalogNotFoundError, match=r"'/no/such/catalogue' does not exist") as info:
        query_catalog("/no/such/catalogue", "SELECT 1")
    assert isinstance(info.value, FileNotFoundError)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "_SUMMARY.json").write_text("{}")
    with pytest.raises(CatalogNotFoundError, match="holds no data files"):
        query_catalog(tmp_path / "empty", "SELECT 1")
    with pytest.raises(CatalogNotFoundError, match="no files match the pattern"):
        query_catalog(str(tmp_path / "nothing_*.parquet"), "SELECT 1")
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(QueryError, match=r"bad\.parquet' is not a readable Parquet file"):
        query_catalog(tmp_path / "bad.parquet", "SELECT 1")
    d, _ = cat
    with pytest.raises(QueryError, match="exactly one of them"):
        query_catalog(d)
    with pytest.raises(QueryError, match="exactly one of them"):
        query_catalog(d, "SELECT 1", preset="giants")
    with pytest.raises(CatalogNotFoundError, match=r"table 'truth': '/no/truth\.parquet' does not exist"):
        query_catalog(d, "SELECT 1", truth="/no/truth.parquet")


def test_catalogue_as_file_or_glob(cat):
    d, cols = cat
    files = sorted(Path(d).glob("*.parquet"))
    n0 = int((cols["hpx8"] <= 262143).sum())
    assert query_catalog(files[0], "SELECT count(*) FROM catalog").column(0)[0].as_py() == n0
    glob = str(Path(d) / "XpContinuousMeanSpectrum_[02]*.parquet")
    assert query_catalog(glob, "SELECT count(*) FROM catalog").column(0)[0].as_py() == int(
        ((cols["hpx8"] <= 262143) | (cols["hpx8"] >= 262144) & (cols["hpx8"] <= 524287)).sum()
    )


def test_join_names_and_tables_are_checked(cat, tmp_path):
    d, _ = cat
    pq.write_table(pa.table({"id": [1, 2]}), tmp_path / "noid.parquet")
    with pytest.raises(QueryError, match="has no source_id column to join on"):
        query_catalog(d, "SELECT 1", joins={"x": tmp_path / "noid.parquet"})
    with pytest.raises(QueryError, match="must be an SQL identifier other than"):
        query_catalog(d, "SELECT 1", joins={"truth": tmp_path / "noid.parquet"})
    with pytest.raises(QueryError, match="must be an SQL identifier"):
        query_catalog(d, "SELECT 1", joins={"a-b": tmp_path / "noid.parquet"})


def test_write_table_stream(cat, tmp_path):
    d, cols = cat
    with open_catalog(d) as c:
        n = write_table_stream(
            c.reader("SELECT source_id, age FROM catalog WHERE logg < 2"), tmp_path / "o.parquet"
        )
        write_table_stream(c.reader("SELECT source_id, age FROM catalog WHERE logg < 2"), tmp_path / "o.csv")
        with pytest.raises(QueryError, match="exists; pass overwrite"):
            write_table_stream(c.reader("SELECT 1"), tmp_path / "o.csv")
        with pytest.raises(QueryError, match=r"must end in \.parquet, \.csv or \.ecsv"):
            write_table_stream(c.reader("SELECT 1"), tmp_path / "o.txt")
    expected = np.sort(cols["source_id"][f64(cols, "logg") < 2])
    assert n == len(expected)
    np.testing.assert_array_equal(
        np.sort(pq.read_table(tmp_path / "o.parquet").column(0).to_numpy()), expected
    )
    import pyarrow.csv as pacsv

    np.testing.assert_array_equal(np.sort(pacsv.read_csv(tmp_path / "o.csv").column(0).to_numpy()), expected)
    assert not list(tmp_path.glob(".*tmp*"))


@pytest.fixture(scope="module")
def s3_catalogue(cat):
    """The catalogue copied into a local moto S3 server (no network)."""
    moto_server = pytest.importorskip("moto.server")
    import pyarrow.fs as pafs

    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
    }
    fs = pafs.S3FileSystem(
        endpoint_override=f"{host}:{port}",
        scheme="http",
        region="us-east-1",
        access_key="testing",
        secret_key="testing",
        allow_bucket_creation=True,
    )
    fs.create_dir("catalogues")
    d, _ = cat
    for f in Path(d).glob("*.parquet"):
        pafs.copy_files(
            str(f),
            f"catalogues/run1/{f.name}",
            source_filesystem=pafs.LocalFileSystem(),
            destination_filesystem=fs,
        )
    with fs.open_output_stream("catalogues/run1/_SUMMARY.json") as out:
        out.write(b"{}")
    yield "s3://catalogues/run1", env
    server.stop()


def test_s3_catalogue_through_pyarrow_dataset(cat, s3_catalogue, monkeypatch):
    d, cols = cat
    url, env = s3_catalogue
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    local = query_catalog(d, preset="age-metallicity", params={"m_h_step": 0.8, "min_count": 1})
    remote = query_catalog(url, preset="age-metallicity", params={"m_h_step": 0.8, "min_count": 1})
    assert remote.equals(local)
    with open_catalog(url, region=(30, 60, -10, 10)) as c:
        assert len(c.files) < c.files_total
        n = c.sql("SELECT count(*) FROM catalog").column(0)[0].as_py()
    glon, glat = f64(cols, "l"), f64(cols, "b")
    assert n == int(((glon >= 30) & (glon <= 60) & (glat >= -10) & (glat <= 10)).sum())
    with pytest.raises(CatalogNotFoundError, match="s3://catalogues/missing' does not exist"):
        query_catalog("s3://catalogues/missing", "SELECT 1")


def test_catalogue_with_optional_labels(tmp_path):
    labels = (*LABELS, "alpha_m", "ebv")
    cols = simulate(500, seed=8, labels=labels)
    write_catalog(tmp_path, cols, labels=labels)
    t = query_catalog(tmp_path, "SELECT avg(ebv) FILTER (WHERE isfinite(ebv)) AS e FROM catalog")
    assert t.column("e")[0].as_py() == pytest.approx(np.nanmean(f64(cols, "ebv")), rel=1e-6)
    assert query_catalog(tmp_path, preset="giants").num_rows > 0


def test_joined_tables_under_a_region_do_not_depend_on_their_files(cat, truth, tmp_path):
    """Under a sky restriction a joined table holds its rows in the region's HEALPix-8 cells, whether it is
    one file or several sorted ones (until session 25 the files outside the cells were dropped and the
    rest kept whole, so the view's rows depended on how the table was split)."""
    d, _ = cat
    path, _, t = truth
    t = t.sort_by("source_id")
    split = tmp_path / "truth_split"
    split.mkdir()
    n = t.num_rows
    for k in range(3):
        pq.write_table(t.slice(k * n // 3, (k + 1) * n // 3 - k * n // 3), split / f"part{k}.parquet")
    region = (80.0, 100.0, -10.0, 10.0)
    with open_catalog(d, region=region) as c:
        cells = coarsen_ranges(c.ranges, _MAX_SQL_RANGES)  # the cells the view's SQL filter names
    hpx8 = t.column("source_id").to_numpy() >> 43
    want = int(sum(((hpx8 >= a) & (hpx8 <= b)).sum() for a, b in cells))
    assert 0 < want < n
    for src in (path, split):
        got = query_catalog(d, "SELECT count(*) AS n FROM truth", truth=src, region=region).column("n")[0]
        assert got.as_py() == want
        full = query_catalog(d, "SELECT count(*) AS n FROM truth", truth=src).column("n")[0]
        assert full.as_py() == n


def test_float_ids_in_a_joined_table_are_refused_by_name_under_a_region(cat, tmp_path):
    """The sky filter of a joined view shifts integer ids: a floating-point source_id gets the project's
    own refusal under --region as without it, not DuckDB's binder error."""
    d, _ = cat
    path = tmp_path / "dbl.csv"
    path.write_text("source_id,x\n5.853498713190526e+18,1\n6.1e+12,2\n")
    for region in (None, (80.0, 100.0, -10.0, 10.0)):
        with pytest.raises(QueryError, match="column source_id has type DOUBLE"):
            query_catalog(d, "SELECT count(*) FROM j", joins={"j": path}, region=region)
