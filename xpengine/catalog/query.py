"""SQL queries on the output catalogue, with DuckDB (embedded, no server).

The catalogue is the directory the catalogue engine writes (`xpengine.pipeline.writer`): one
`<partition>.parquet` per input partition in the schema of `xpengine.catalog.schema`, plus
`_manifest/*.json` and `_SUMMARY.json`, which queries ignore. A query sees:

| view      | what                                                                     | given by          |
|-----------|--------------------------------------------------------------------------|-------------------|
| `catalog` | every catalogue row (restricted to a sky region when one is given)       | `catalog`         |
| `truth`   | a simulated truth table (source_id, mass, age_gyr, teff, logg, m_h, ...) | `truth=`          |
| `gaia`    | the Gaia DR3 `gaia_source` table (Parquet, or the bulk ECSV `.csv.gz`)   | `gaia_source=`    |
| any name  | any other table, e.g. dereddened 2MASS colours for the red-clump preset  | `joins={name: p}` |

Under a sky restriction (`region`, `hpx8_range`) `catalog` holds the region's rows, and every other view
the rows of the region's HEALPix-8 cells (source_id >> 43; a superset of a Galactic box), whatever its
files. Join them on `source_id`, e.g. `SELECT c.age, t.age_gyr FROM catalog c JOIN truth t USING (source_id)`.
SQL functions beyond DuckDB's: `a_g_per_ebv(teff, logg, m_h, ebv)` and `e_bp_rp_per_ebv(...)`, the
catalogue's star-by-star extinction law (`xpengine.catalog.sql_functions`).

Catalogue locations: a directory, one `.parquet` file, or a glob (`out/*_0[0-4]*.parquet`) on the
local disk; or a URL (`s3://bucket/run1`, `gs://...`, anything fsspec knows). Local files are read by
DuckDB's own Parquet reader. A URL is opened with pyarrow (`xpengine.io.filesystems.arrow_filesystem`:
S3 credentials and endpoint from the standard AWS environment variables) and handed to DuckDB as a
`pyarrow.dataset`, whose scans DuckDB still narrows by column and filter: DuckDB's own `httpfs`
extension is not used because it must be downloaded at run time, which offline clusters cannot do.

The sky index: catalogue files are sorted by `source_id`, hence by `hpx8` (HEALPix level 8, nested,
= source_id >> 43), and named after their input partition `XpContinuousMeanSpectrum_AAAAAA-BBBBBB`,
where AAAAAA-BBBBBB is the partition's hpx8 range. A `region` (Galactic l, b box) or `hpx8_range`
therefore (1) drops the Parquet files whose `hpx8` (or `source_id`) min/max statistics show that none
of their rows lies in the region (`xpengine.catalog.region.prune_by_statistics`: never by the file
name, which rows flagged OUTSIDE_PARTITION_RANGE and hash-suffixed single-file names contradict; CSV
files, without statistics, are always read) and (2) adds an `hpx8 BETWEEN ...` filter to the
`catalog` view, which DuckDB pushes into the Parquet row-group min/max statistics, so only the row
groups that may hold the region are read; (3) the exact l, b cut is then applied to the remaining
rows. See `xpengine.catalog.sky`.

Joined tables are checked when opened (`xpengine.catalog.tables`): an integer source_id (a float id
has lost digits and matches the wrong star), one row per source_id in `truth` and `--join` tables, and
in `gaia` the gaia_source columns in every file (only `GaiaSource_*` files of a directory). DuckDB runs
under a memory limit (`memory_limit`, default half the machine's memory).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from xpengine.catalog import sky
from xpengine.catalog.errors import CatalogNotFoundError, QueryError, duckdb_message
from xpengine.catalog.export import write_table_stream  # re-exported: it lived here
from xpengine.catalog.locate import TableFiles, locate_table
from xpengine.catalog.region import (
    SkyRegion,
    check_hpx8_range,
    intersect_ranges,
    partition_hpx8_range,
    prune_by_statistics,
)
from xpengine.catalog.scanstats import ScanStats, profile_stats
from xpengine.catalog.schema import result_meta_yaml
from xpengine.catalog.sql_functions import register as register_sql_functions
from xpengine.catalog.sql_functions import statement_core
from xpengine.catalog.tables import (
    GAIA_COLUMNS,
    check_catalogue_files,
    check_join_names,
    check_read_only,
    check_source_id_type,
    check_table_files,
    check_unique_ids,
    default_memory_limit,
    holds_path,
)

__all__ = [
    "CatalogConnection",
    "CatalogNotFoundError",
    "QueryError",
    "ScanStats",
    "SkyRegion",
    "open_catalog",
    "partition_hpx8_range",
    "query_catalog",
    "write_table_stream",
]

log = logging.getLogger(__name__)
# the catalogue job's mark of a file it wrote (`xpengine.pipeline.writer.CATALOGUE_FILE_KEY`): a result
# carrying it would pass for a catalogue file, and that catalogue's `--overwrite` would remove it
_NOT_COPIED_MARK = b"xpengine.catalogue_file"
_NOT_COPIED = frozenset({_NOT_COPIED_MARK})

RESERVED_VIEWS: frozenset[str] = frozenset({"catalog", "truth", "gaia"})
_MAX_SQL_RANGES = 64  # hpx8 ranges OR-ed in the view filter (a superset is fine: l, b are cut exactly)
_READ_ONLY_STATEMENTS = ("SELECT", "EXPLAIN")


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _sql_list(items: Sequence[str]) -> str:
    return "[" + ", ".join(_sql_str(s) for s in items) + "]"


# --------------------------------------------------------------------------------------------
# the connection
# --------------------------------------------------------------------------------------------
class CatalogConnection:
    """An in-memory DuckDB connection with the catalogue (and optional tables) as views.

    Use as a context manager, or call `close()`. Parameters are as for `open_catalog`.
    """

    def __init__(
        self,
        catalog: str | os.PathLike,
        *,
        truth: str | os.PathLike | None = None,
        gaia_source: str | os.PathLike | None = None,
        joins: Mapping[str, str | os.PathLike] | None = None,
        hpx8_range: Sequence[int] | None = None,
        region: SkyRegion | Sequence[float] | None = None,
        threads: int | None = None,
        profile: bool = False,
        memory_limit: str | None = None,
    ) -> None:
        import duckdb

        self._duckdb = duckdb
        self._keep: list[Any] = []  # pyarrow datasets registered with DuckDB
        if region is not None and not isinstance(region, SkyRegion):
            try:
                region = SkyRegion(*region)
            except TypeError:
                raise QueryError(
                    f"region must be (l_min, l_max, b_min, b_max) in deg, got {region!r}"
                ) from None
        self.region: SkyRegion | None = region
        self.hpx8_range = check_hpx8_range(hpx8_range) if hpx8_range is not None else None
        self.ranges = self._sky_ranges()

        if threads is not None and (
            isinstance(threads, bool) or not isinstance(threads, int | np.integer) or threads < 1
        ):
            raise QueryError(f"threads must be an integer ≥ 1, got {threads!r}")
        self.con = duckdb.connect(":memory:")
        self.profile = profile
        self.sources: list[TableFiles] = []  # every table read, for `check_output`
        try:
            self._settings(threads, memory_limit)
            register_sql_functions(self.con, duckdb)
            self.source = locate_table(catalog, "catalogue", ("parquet",))
            self.sources.append(self.source)
            self.schema = check_catalogue_files(self.source, _NOT_COPIED_MARK)  # the first file's
            self.files_total = len(self.source.files)
            self.files = prune_by_statistics(self.source.files, self.ranges, fs=self.source.fs)
            self.columns: list[str] = list(self.schema.names)
            self.units: dict[str, str] = self._units(self.schema)
            # `xpengine.provenance` (model, run) and the other xpengine.* keys but units, which results
            # recompute, and the job's mark of its own catalogue files (`_NOT_COPIED`)
            self.provenance: dict[bytes, bytes] = {
                k: v
                for k, v in (self.schema.metadata or {}).items()
                if k.startswith(b"xpengine.") and k != b"xpengine.units" and k not in _NOT_COPIED
            }
            self.where = self._view_filter()
            self._create_view("catalog", self.source, self.files, self.where, empty_from=self.source.files[0])
            # a line for the user only where the sky filter left files out; else for -v
            log.log(
                logging.INFO if len(self.files) < self.files_total else logging.DEBUG,
                "catalogue %s: %d of %d file(s)%s",
                self.source.location,
                len(self.files),
                self.files_total,
                f" (view filter: {self.where})" if self.where else "",
            )
            self.views: dict[str, list[str]] = {"catalog": self.columns}
            if truth is not None:
                self._register_table("truth", truth)
            if gaia_source is not None:
                self._register_table("gaia", gaia_source)
            for name, path in check_join_names(joins, RESERVED_VIEWS):
                self._register_table(name, path)
        except Exception:
            self.close()
            raise

    # -- setup ---------------------------------------------------------------------------
    def _settings(self, threads: int | None, memory_limit: str | None) -> None:
        limit = default_memory_limit() if memory_limit is None else str(memory_limit)
        settings = [("memory_limit", _sql_str(limit))]
        if threads is not None:
            settings.append(("threads", str(int(threads))))
        for key, value in settings:
            try:
                self.con.execute(f"SET {key} = {value}")
            except self._duckdb.Error as exc:
                raise QueryError(f"DuckDB {key} = {value}: {duckdb_message(exc)}") from exc
        if self.profile:
            self.con.execute("PRAGMA enable_profiling = 'no_output'")

    def _sky_ranges(self) -> np.ndarray | None:
        ranges = None
        if self.region is not None:
            ranges = self.region.hpx8_ranges()
        if self.hpx8_range is not None:
            r = np.asarray([self.hpx8_range], dtype=np.int64)
            ranges = r if ranges is None else intersect_ranges(ranges, r)
        return ranges

    def _hpx8_filter(self, hpx8: str) -> str:
        """SQL: the HEALPix-8 index `hpx8` lies in the sky restriction's ranges (coarsened)."""
        r = sky.coarsen_ranges(self.ranges, _MAX_SQL_RANGES)
        return (
            "false" if len(r) == 0 else "(" + " OR ".join(f"{hpx8} BETWEEN {a} AND {b}" for a, b in r) + ")"
        )

    def _view_filter(self) -> str:
        conds = []
        if self.ranges is not None:
            if "hpx8" not in self.columns:
                raise QueryError("a sky restriction needs the catalogue's hpx8 column, which is missing")
            conds.append(self._hpx8_filter("hpx8"))
        if self.region is not None:
            for c in ("l", "b"):
                if c not in self.columns:
                    raise QueryError(
                        f"a Galactic region needs the catalogue's {c!r} column, which is missing"
                    )
            conds.append(self.region.sql_predicate())
        return " AND ".join(conds)

    @staticmethod
    def _units(schema: pa.Schema) -> dict[str, str]:
        raw = (schema.metadata or {}).get(b"xpengine.units")
        if raw is None:
            return {}
        try:
            return {str(k): str(v) for k, v in json.loads(raw).items()}
        except (ValueError, AttributeError):
            log.warning("catalogue metadata key xpengine.units is not a JSON object; units ignored")
            return {}

    def _scan_sql(self, name: str, src: TableFiles, files: list[str]) -> str:
        if src.fs is not None:
            import pyarrow.dataset as pads

            dataset = pads.dataset(files, format="parquet", filesystem=src.fs)
            self._keep.append(dataset)
            self.con.register(f"_{name}_dataset", dataset)
            return f"_{name}_dataset"
        if src.fmt == "parquet":
            return f"read_parquet({_sql_list(files)}, hive_partitioning = false)"
        # Gaia bulk ECSV: '#' header lines, then a CSV header row; the literal `null` for missing values
        return f"read_csv({_sql_list(files)}, comment = '#', header = true, nullstr = ['null', ''], hive_partitioning = false)"

    def _create_view(self, name: str, src: TableFiles, files: list[str], where: str, empty_from: str) -> None:
        if not files:
            # keep the schema so that queries still bind: no rows from the first file
            files, where = [empty_from], "false"
        scan = self._scan_sql(name, src, files)
        sql = f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM {scan}" + (f" WHERE {where}" if where else "")
        try:
            self.con.execute(sql)
        except self._duckdb.Error as exc:
            raise QueryError(f"cannot read {name!r} from {src.location!r}: {duckdb_message(exc)}") from exc

    def _register_table(self, name: str, path: str | os.PathLike) -> None:
        """A view `name` on a table joined on source_id: its files checked (`xpengine.catalog.tables`).
        Under a sky restriction it holds the rows in the restriction's HEALPix-8 cells (source_id >> 43),
        whatever the table's files: those whose statistics miss them are not read, and the rest are
        filtered row by row. `gaia` is not checked for repeated ids (a full scan of gaia_source on every
        query, where each id is unique by construction)."""
        what = f"table {name!r}"
        gaia = name == "gaia"
        src = locate_table(path, what, ("parquet", "csv"), dir_prefix="GaiaSource_" if gaia else None)
        self.sources.append(src)
        if gaia:
            check_table_files(src, what, GAIA_COLUMNS, "(not a gaia_source file)")
        else:
            check_table_files(src, what, ("source_id",), "to join on")
        files = prune_by_statistics(src.files, self.ranges, src.fmt, src.fs)
        self._create_view(name, src, files, "", empty_from=src.files[0])
        self.con.execute(f"SELECT * FROM {name} LIMIT 0")
        cols = [d[0] for d in self.con.description]
        if "source_id" not in cols:
            raise QueryError(
                f"table {name!r} ({src.location}) has no source_id column to join on; columns: {cols}"
            )
        check_source_id_type(self.con, name, src)  # before the sky filter shifts the (integer) ids
        if self.ranges is not None:
            self._create_view(name, src, files, self._hpx8_filter("(source_id >> 43)"), src.files[0])
        if not gaia:
            check_unique_ids(self.con, name, src, self._duckdb)
        self.views[name] = cols
        log.debug("view %s: %s (%d file(s))", name, src.location, len(files))

    # -- queries -------------------------------------------------------------------------
    def _check_statement(self, sql: str) -> None:
        check_read_only(self.con, sql, self._duckdb.Error, _READ_ONLY_STATEMENTS)

    def relation(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        """A DuckDB relation for one read-only statement (`$name` placeholders filled from `params`)."""
        self._check_statement(sql)
        self._t0 = time.perf_counter()
        try:
            return self.con.sql(sql, params=dict(params) if params else None)
        except self._duckdb.Error as exc:
            raise QueryError(f"SQL error: {duckdb_message(exc)}") from exc

    def sql(
        self, sql: str, params: Mapping[str, Any] | None = None, units: Mapping[str, str] | None = None
    ) -> pa.Table:
        """Run one read-only statement; the result as a pyarrow Table with units in its metadata."""
        rel = self.relation(sql, params)
        try:
            table = rel.to_arrow_table()
        except self._duckdb.Error as exc:
            raise QueryError(f"SQL error: {duckdb_message(exc)}") from exc
        return self.with_units(table, units)

    def count(self, sql: str, params: Mapping[str, Any] | None = None) -> int:
        """The number of rows of one read-only statement's result: the statement without its trailing
        `;` and comments (DuckDB's tokenizer finds them), counted as a subquery."""
        self._check_statement(sql)
        core = statement_core(sql, self._duckdb)
        rel = self.relation(f"SELECT count(*) AS n FROM (\n{core}\n)", params)
        try:
            return int(rel.fetchall()[0][0])
        except self._duckdb.Error as exc:
            raise QueryError(f"SQL error: {duckdb_message(exc)}") from exc

    def reader(self, sql: str, params: Mapping[str, Any] | None = None, batch_size: int = 131072) -> Any:
        """Stream the result of one read-only statement: a `pyarrow.RecordBatchReader` (large results)."""
        rel = self.relation(sql, params)
        try:
            return rel.to_arrow_reader(batch_size)
        except self._duckdb.Error as exc:
            raise QueryError(f"SQL error: {duckdb_message(exc)}") from exc

    def with_units(self, table: pa.Table, extra: Mapping[str, str] | None = None) -> pa.Table:
        """`table` with an `xpengine.units` metadata entry for the columns whose unit is known, and the
        catalogue's `xpengine.provenance` (model and run; from its first file, as the units), so that a
        result file says where it came from."""
        known = {**self.units, **(extra or {})}
        units = {n: known[n] for n in table.column_names if n in known}
        meta = {k: v for k, v in (table.schema.metadata or {}).items() if k not in _NOT_COPIED}
        meta.update(self.provenance)
        meta[b"xpengine.units"] = json.dumps(units).encode()
        # astropy's own header, so that Table.read gives the units too (`schema.result_meta_yaml`)
        header = result_meta_yaml(table.schema, units, meta)
        meta.pop(b"table_meta_yaml", None)
        if header is not None:
            meta[b"table_meta_yaml"] = header.encode()
        return table.replace_schema_metadata(meta)

    def check_output(self, path: str | os.PathLike, what: str = "output file") -> None:
        """Refuse to write `path` where a queried table is read from: a result written into the
        catalogue directory reads as catalogue rows next time (each star twice)."""
        for src in self.sources:
            if holds_path(src, path):
                raise QueryError(
                    f"{what} {os.fspath(path)!r} lies in {src.location!r}, which this query reads; "
                    "write it elsewhere"
                )

    def preset_sql(self, name: str, params: Mapping[str, Any] | None = None) -> str:
        """The SQL of preset `name` with `params` for this catalogue (see `xpengine.catalog.presets`)."""
        from xpengine.catalog import presets

        return presets.build_sql(name, params, self)

    def preset(self, name: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        """Run preset `name`; its result table (bins or rows), units in the metadata."""
        from xpengine.catalog import presets

        spec = presets.get_preset(name)
        sql = presets.build_sql(name, params, self)
        table = self.sql(sql, units=spec.units)
        if spec.post is not None:
            table = self.with_units(spec.post(table, presets.resolve_params(spec, params)[0]), spec.units)
        return table

    def scan_stats(self) -> ScanStats:
        """Pruning and I/O of the last query (row groups and bytes need `profile=True`)."""
        t0 = getattr(self, "_t0", time.perf_counter())
        return profile_stats(self.con if self.profile else None, len(self.files), self.files_total, t0)

    def close(self) -> None:
        con = getattr(self, "con", None)
        if con is not None:
            con.close()
            self.con = None

    def __enter__(self) -> CatalogConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_catalog(
    catalog: str | os.PathLike,
    *,
    truth: str | os.PathLike | None = None,
    gaia_source: str | os.PathLike | None = None,
    joins: Mapping[str, str | os.PathLike] | None = None,
    hpx8_range: Sequence[int] | None = None,
    region: SkyRegion | Sequence[float] | None = None,
    threads: int | None = None,
    profile: bool = False,
    memory_limit: str | None = None,
) -> CatalogConnection:
    """Open a catalogue for queries.

    Args:
        catalog: catalogue directory, `.parquet` file, glob, or URL (s3://, gs://, ...).
        truth: simulated truth table (Parquet/CSV file, directory or URL) → view `truth`.
        gaia_source: Gaia DR3 gaia_source (Parquet, or bulk ECSV `GaiaSource_*.csv.gz`) → view `gaia`.
        joins: more tables, view name → location; each needs a `source_id` column.
        hpx8_range: (first, last) inclusive HEALPix level-8 range the `catalog` view is restricted to.
        region: Galactic box (l_min, l_max, b_min, b_max) in deg the `catalog` view is restricted to.
        threads: DuckDB worker threads, ≥ 1 (default: all cores).
        profile: keep DuckDB's profile of each query, for `scan_stats()`.
        memory_limit: DuckDB's memory limit, e.g. "4GB" (default: half the machine's or cgroup's memory).

    Raises:
        CatalogNotFoundError: a location does not exist or holds no data files.
        QueryError: a table cannot be read or lacks `source_id`, a float or (truth, joins) repeated
            source_id, a gaia_source file without positions, or a bad region/range/threads.
    """
    return CatalogConnection(
        catalog,
        truth=truth,
        gaia_source=gaia_source,
        joins=joins,
        hpx8_range=hpx8_range,
        region=region,
        threads=threads,
        profile=profile,
        memory_limit=memory_limit,
    )


def query_catalog(
    catalog: str | os.PathLike,
    sql: str | None = None,
    *,
    preset: str | None = None,
    params: Mapping[str, Any] | None = None,
    truth: str | os.PathLike | None = None,
    gaia_source: str | os.PathLike | None = None,
    joins: Mapping[str, str | os.PathLike] | None = None,
    hpx8_range: Sequence[int] | None = None,
    region: SkyRegion | Sequence[float] | None = None,
) -> pa.Table:
    """Run one SQL query or one preset on a catalogue; the whole result as a pyarrow Table.

    `sql` sees the views `catalog` (and `truth`, `gaia`, `joins` when given); `params` fill its
    `$name` placeholders. With `preset`, `params` are the preset's parameters
    (`xpengine.catalog.presets.PRESETS`). For results too large for memory, use
    `open_catalog(...).reader(sql)` (record batches) or the command line's `--output`.

    Raises:
        QueryError: bad SQL (the message names the problem), unknown preset or parameter,
            or both/neither of `sql` and `preset`.
        CatalogNotFoundError: the catalogue or a joined table is missing.
    """
    if (sql is None) == (preset is None):
        raise QueryError("give either an SQL query or a preset name (exactly one of them)")
    with open_catalog(
        catalog, truth=truth, gaia_source=gaia_source, joins=joins, hpx8_range=hpx8_range, region=region
    ) as cat:
        if preset is not None:
            return cat.preset(preset, params)
        return cat.sql(sql, params)
