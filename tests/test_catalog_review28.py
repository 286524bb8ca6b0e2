"""Session 28's query review: a file that is not the catalogue's read as catalogue rows, a joined table
of two kinds of file, an EXPLAIN ANALYZE that wrote a file, a colour table written into the catalogue."""

from __future__ import annotations

import gzip
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _query_catalog import LABELS, simulate, write_catalog

from xpengine.catalog.query import QueryError, query_catalog

MARK = b"xpengine.catalogue_file"


@pytest.fixture()
def cat(simulated_catalog, tmp_path):
    src, cols = simulated_catalog("rev28", 600, seed=5)
    d = tmp_path / "cat"
    shutil.copytree(src, d)
    return d, cols


def _mark(path, partition: str) -> None:
    t = pq.read_table(path)
    meta = {**(t.schema.metadata or {}), MARK: f'{{"partition": "{partition}", "job": "j"}}'.encode()}
    pq.write_table(t.replace_schema_metadata(meta), path)


def test_a_file_of_other_columns_in_the_catalogue_is_refused_by_name(cat):
    d, cols = cat
    n = query_catalog(d, "SELECT count(*) AS n FROM catalog").column("n")[0].as_py()
    assert n == len(cols["source_id"])
    pq.write_table(
        pa.table({"source_id": pa.array([1, 2], pa.int64()), "jk0": [0.6, 0.7]}), d / "jk0.parquet"
    )
    with pytest.raises(QueryError, match=r"jk0\.parquet.*other columns or types.*move it out"):
        query_catalog(d, "SELECT count(*) FROM catalog")
    # the same columns with another type are refused too (DuckDB would cast or fail mid-query)
    (d / "jk0.parquet").unlink()
    first = sorted(d.glob("*.parquet"))[0]
    t = pq.read_table(first)
    t = t.set_column(t.schema.get_field_index("teff"), "teff", t.column("teff").cast(pa.float64()))
    pq.write_table(t, d / "zz_other_types.parquet")
    with pytest.raises(QueryError, match=r"zz_other_types\.parquet.*other columns or types"):
        query_catalog(d, "SELECT count(*) FROM catalog")


def test_a_copied_result_among_the_jobs_files_is_refused(cat):
    d, cols = cat
    files = sorted(d.glob("*.parquet"))
    for f in files:
        _mark(f, f.stem)
    n = query_catalog(d, "SELECT count(*) AS n FROM catalog").column("n")[0].as_py()
    assert n == len(cols["source_id"])
    # a catalogue-shaped file the job did not write (a query result copied back): each star twice
    t = pq.read_table(files[0])
    meta = {k: v for k, v in t.schema.metadata.items() if k != MARK}
    pq.write_table(t.replace_schema_metadata(meta), d / "zz_result.parquet")
    with pytest.raises(QueryError, match=r"zz_result\.parquet.*not written by the catalogue job"):
        query_catalog(d, "SELECT count(*) FROM catalog")
    # a catalogue none of whose files carries the mark (older, or written by hand) is read as before
    d2 = d.parent / "unmarked"
    write_catalog(d2, cols)
    assert query_catalog(d2, "SELECT count(*) AS n FROM catalog").column("n")[0].as_py() == n


@pytest.mark.parametrize(
    "sql",
    [
        "EXPLAIN ANALYZE COPY (SELECT source_id FROM catalog LIMIT 3) TO '{out}'",
        "explain analyse copy (select source_id from catalog) to '{out}'",
        "EXPLAIN COPY (SELECT source_id FROM catalog) TO '{out}'",
        "EXPLAIN ANALYZE CREATE TABLE t AS SELECT 1",
    ],
)
def test_explain_wraps_only_a_select(cat, tmp_path, sql):
    d, _ = cat
    out = tmp_path / "written.csv"
    with pytest.raises(QueryError, match="EXPLAIN must wrap a read-only query"):
        query_catalog(d, sql.format(out=out))
    assert not out.exists()


def test_explain_of_a_select_still_runs(cat):
    d, _ = cat
    for sql in ("EXPLAIN SELECT count(*) FROM catalog", "EXPLAIN ANALYZE SELECT count(*) FROM catalog"):
        assert query_catalog(d, sql).num_rows >= 1


def _csv_gz(path, header: str, rows: list[str]) -> None:
    with gzip.open(path, "wt") as f:
        f.write("\n".join([header, *rows]) + "\n")


def test_a_joined_table_of_two_kinds_of_file_is_refused_by_name(cat, tmp_path):
    d, cols = cat
    sid = cols["source_id"][:3]
    mix = tmp_path / "mix"
    mix.mkdir()
    _csv_gz(mix / "a_Truth.csv.gz", "source_id,mass", [f"{s},1.0" for s in sid])
    _csv_gz(mix / "b_Other.csv.gz", "source_id,coefficients", [f'{s},"(1,2,3)"' for s in sid])
    with pytest.raises(QueryError, match=r"b_Other\.csv\.gz.*has other columns than.*one kind per table"):
        query_catalog(d, "SELECT 1", truth=mix)
    with pytest.raises(QueryError, match=r"b_Other\.csv\.gz.*has other columns"):
        query_catalog(d, "SELECT 1", joins={"x": mix})
    (mix / "b_Other.csv.gz").unlink()
    _csv_gz(mix / "b_Truth.csv.gz", "source_id,mass", [f"{s + 1},2.0" for s in sid])
    got = query_catalog(d, "SELECT count(*) AS n FROM truth", truth=mix)
    assert got.column("n")[0].as_py() == 6


def test_a_colour_table_is_not_written_into_the_catalogue(tmp_path):
    from xpengine.catalog.colours import write_dereddened_jk

    labels = (*LABELS, "ebv")
    cols = simulate(300, seed=6, labels=labels)
    d = tmp_path / "with_ebv"
    write_catalog(d, cols, labels=labels)
    tmass = tmp_path / "tmass.parquet"
    n = len(cols["source_id"])
    pq.write_table(
        pa.table({"source_id": cols["source_id"], "j_m": np.full(n, 12.0), "ks_m": np.full(n, 11.3)}), tmass
    )
    with pytest.raises(QueryError, match=r"jk0\.parquet.*lies in.*write it elsewhere"):
        write_dereddened_jk(d, tmass, d / "jk0.parquet")
    assert not (d / "jk0.parquet").exists()
    assert write_dereddened_jk(d, tmass, tmp_path / "jk0.parquet") > 0


def test_a_query_result_file_gives_astropy_its_units(cat, tmp_path):
    from astropy import units as u
    from astropy.table import Table

    from xpengine.catalog.query import open_catalog

    d, _ = cat
    out = tmp_path / "giants.parquet"
    with open_catalog(d) as c:
        table = c.sql(
            "SELECT source_id, teff, teff_error, mass, age, flags, 'x' AS note, 2 * logg AS twice FROM catalog"
        )
        pq.write_table(table, out)
        lists = c.sql("SELECT source_id, [teff, logg] AS both FROM catalog LIMIT 3")
    t = Table.read(out)
    assert t["teff"].unit == u.K and t["teff_error"].unit == u.K and t["mass"].unit == u.solMass
    assert t["age"].unit == u.Gyr and t["source_id"].unit is None and t["twice"].unit is None
    assert t["teff"].description == "effective temperature: the model's mean"
    assert list(t["note"]) == ["x"] * len(t) and len(t) == table.num_rows
    assert t.meta["xpengine.units"]["teff"] == "K"
    # a list column has no numpy type astropy could be told of: no header, the units stay in xpengine.units
    assert b"table_meta_yaml" not in lists.schema.metadata and b"xpengine.units" in lists.schema.metadata


def test_age_map_on_a_catalogue_without_positions_names_what_it_lacks(cat, tmp_path):
    from xpengine.catalog.query import open_catalog

    d, _ = cat
    nopos = tmp_path / "nopos"
    nopos.mkdir()
    for f in sorted(d.glob("*.parquet")):
        t = pq.read_table(f)
        pq.write_table(t.drop_columns(["l", "b"]), nopos / f.name)
    with open_catalog(nopos) as c:
        with pytest.raises(QueryError, match=r"grid=galactic needs column\(s\) \['l', 'b'\].*grid=healpix"):
            c.preset("age-map")
        assert c.preset("age-map", {"grid": "healpix", "level": 2, "min_count": 1}).num_rows > 0


def test_a_partition_done_before_the_mark_is_still_the_catalogues(cat):
    """A resumed catalogue keeps partitions done before the job marked its files: a file with the job's
    manifest record is the catalogue's, marked or not (`writer.own_partitions`' rule)."""
    d, cols = cat
    files = sorted(d.glob("*.parquet"))
    for f in files[:-1]:
        _mark(f, f.stem)
    assert not (d / "_manifest" / f"{files[-1].stem}.json").exists()
    with pytest.raises(QueryError, match="not written by the catalogue job"):
        query_catalog(d, "SELECT count(*) FROM catalog")
    (d / "_manifest" / f"{files[-1].stem}.json").write_text('{"status": "done"}')
    n = query_catalog(d, "SELECT count(*) AS n FROM catalog").column("n")[0].as_py()
    assert n == len(cols["source_id"])


def test_parquet_files_of_one_table_may_order_their_columns_differently(cat, tmp_path):
    d, cols = cat
    sid = cols["source_id"]
    tt = tmp_path / "tt"
    tt.mkdir()
    pq.write_table(pa.table({"source_id": sid[:5], "x": np.arange(5.0)}), tt / "p1.parquet")
    pq.write_table(pa.table({"x": np.arange(5.0, 8.0), "source_id": sid[5:8]}), tt / "p2.parquet")
    got = query_catalog(d, "SELECT count(*) AS n, sum(x) AS s FROM truth", truth=tt)
    assert got.column("n")[0].as_py() == 8 and got.column("s")[0].as_py() == sum(range(8))


def test_an_explain_after_a_comment_still_runs_and_still_checks(cat, tmp_path):
    d, _ = cat
    for sql in ("-- plan\nEXPLAIN SELECT 1", "/* c */ EXPLAIN ANALYZE SELECT count(*) FROM catalog"):
        assert query_catalog(d, sql).num_rows >= 1
    out = tmp_path / "w.csv"
    for sql in (
        f"-- x\n/* y */ EXPLAIN ANALYZE COPY (SELECT 1) TO '{out}'",
        # DuckDB nests block comments: what a regex reads as a comment and a SELECT is one comment and a COPY
        f"/* /* */ EXPLAIN ANALYZE SELECT 1 -- */ EXPLAIN ANALYZE COPY (SELECT 42 AS x) TO '{out}'",
    ):
        with pytest.raises(QueryError, match="EXPLAIN must wrap"):
            query_catalog(d, sql)
        assert not out.exists()
