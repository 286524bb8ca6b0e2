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

Join them on `source_id`, e.g. `SELECT c.age, t.age_gyr FROM catalog c JOIN truth t USING (source_id)`.

Catalogue locations: a directory, one `.parquet` file, or a glob (`out/*_0[0-4]*.parquet`) on the
local disk; or a URL (`s3://bucket/run1`, `gs://...`, anything fsspec knows). Local files are read by
DuckDB's own Parquet reader. A URL is opened with pyarrow (`xpengine.io.filesystems.arrow_filesystem`:
S3 credentials and endpoint from the standard AWS environment variables) and handed to DuckDB as a
`pyarrow.dataset`, whose scans DuckDB still narrows by column and filter: DuckDB's own `httpfs`
extension is not used because it must be downloaded at run time, which offline clusters cannot do.

The sky index: catalogue files are sorted by `source_id`, hence by `hpx8` (HEALPix level 8, nested,
= source_id >> 43), and named after their input partition `XpContinuousMeanSpectrum_AAAAAA-BBBBBB`,
where AAAAAA-BBBBBB is the partition's hpx8 range. A `region` (Galactic l, b box) or `hpx8_range`
therefore (1) drops files whose name range misses the region before DuckDB opens them and (2) adds an
`hpx8 BETWEEN ...` filter to the `catalog` view, which DuckDB pushes into the Parquet row-group min/max
statistics, so only the row groups that may hold the region are read; (3) the exact l, b cut is then
applied to the remaining rows. See `xpengine.catalog.sky`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import time
from collections.abc import Iterator, Mapping, Sequence
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
    prune_by_name,
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

RESERVED_VIEWS: frozenset[str] = frozenset({"catalog", "truth", "gaia"})
_MAX_SQL_RANGES = 64  # hpx8 ranges OR-ed in the view filter (a superset is fine: l, b are cut exactly)
_IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_READ_ONLY_STATEMENTS = ("SELECT", "EXPLAIN")


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _sql_list(items: Sequence[str]) -> str:
    return "[" + ", ".join(_sql_str(s) for s in items) + "]"


# --------------------------------------------------------------------------------------------
# the connection
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass
class ScanStats:
    """What the last query read: from DuckDB's profiler (row groups, bytes) and the file pruning.

    `rows_scanned` counts the rows the scans passed on, after the filters DuckDB pushed into them;
    `wall_s` is the time from the query's start to the `scan_stats()` call."""

    files_scanned: int
    files_total: int
    row_groups_scanned: int | None
    row_groups_total: int | None
    rows_scanned: int | None
    bytes_read: int | None
    wall_s: float

    def describe(self) -> str:
        parts = [f"files {self.files_scanned}/{self.files_total}"]
        if self.row_groups_total:
            parts.append(f"row groups {self.row_groups_scanned}/{self.row_groups_total}")
        if self.rows_scanned is not None:
            parts.append(f"rows from scans {self.rows_scanned:,}")
        if self.bytes_read:
            parts.append(f"bytes read {self.bytes_read / 1e6:.1f} MB")
        parts.append(f"{self.wall_s:.3f} s")
        return ", ".join(parts)


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

        self.con = duckdb.connect(":memory:")
        if threads is not None:
            self.con.execute(f"SET threads = {int(threads)}")
        self.profile = profile
        if profile:
            self.con.execute("PRAGMA enable_profiling = 'no_output'")

        try:
            self.source = locate_table(catalog, "catalogue", ("parquet",))
            self.files_total = len(self.source.files)
            self.files = prune_by_name(self.source.files, self.ranges)
            self.schema = self._read_schema(self.source)
            self.columns: list[str] = list(self.schema.names)
            self.units: dict[str, str] = self._units(self.schema)
            self.where = self._view_filter()
            self._create_view("catalog", self.source, self.files, self.where, empty_from=self.source.files[0])
            log.info(
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
            for name, path in (joins or {}).items():
                if not _IDENT_RE.match(name) or name.lower() in RESERVED_VIEWS:
                    raise QueryError(
                        f"join name {name!r} must be an SQL identifier other than {sorted(RESERVED_VIEWS)}"
                    )
                self._register_table(name, path)
        except Exception:
            self.close()
            raise

    # -- setup ---------------------------------------------------------------------------
    def _sky_ranges(self) -> np.ndarray | None:
        ranges = None
        if self.region is not None:
            ranges = self.region.hpx8_ranges()
        if self.hpx8_range is not None:
            r = np.asarray([self.hpx8_range], dtype=np.int64)
            ranges = r if ranges is None else intersect_ranges(ranges, r)
        return ranges

    def _view_filter(self) -> str:
        conds = []
        if self.ranges is not None:
            if "hpx8" not in self.columns:
                raise QueryError("a sky restriction needs the catalogue's hpx8 column, which is missing")
            r = sky.coarsen_ranges(self.ranges, _MAX_SQL_RANGES)
            if len(r) == 0:
                conds.append("false")
            else:
                conds.append("(" + " OR ".join(f"hpx8 BETWEEN {a} AND {b}" for a, b in r) + ")")
        if self.region is not None:
            for c in ("l", "b"):
                if c not in self.columns:
                    raise QueryError(
                        f"a Galactic region needs the catalogue's {c!r} column, which is missing"
                    )
            conds.append(self.region.sql_predicate())
        return " AND ".join(conds)

    @staticmethod
    def _read_schema(src: TableFiles) -> pa.Schema:
        import pyarrow.parquet as pq

        first = src.files[0]
        try:
            if src.fs is None:
                return pq.read_schema(first)
            with src.fs.open_input_file(first) as f:
                return pq.read_schema(f)
        except Exception as exc:
            raise QueryError(f"catalogue file {first!r} is not a readable Parquet file: {exc}") from exc

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
        src = locate_table(path, f"table {name!r}", ("parquet", "csv"))
        files = prune_by_name(src.files, self.ranges)
        self._create_view(name, src, files, "", empty_from=src.files[0])
        self.con.execute(f"SELECT * FROM {name} LIMIT 0")
        cols = [d[0] for d in self.con.description]
        if "source_id" not in cols:
            raise QueryError(
                f"table {name!r} ({src.location}) has no source_id column to join on; columns: {cols}"
            )
        self.views[name] = cols
        log.info("view %s: %s (%d file(s))", name, src.location, len(files))

    # -- queries -------------------------------------------------------------------------
    def _check_statement(self, sql: str) -> None:
        if not isinstance(sql, str) or not sql.strip():
            raise QueryError("empty SQL query")
        try:
            statements = self.con.extract_statements(sql)
        except self._duckdb.Error as exc:
            raise QueryError(f"SQL error: {duckdb_message(exc)}") from exc
        if len(statements) != 1:
            raise QueryError(f"give exactly one SQL statement, got {len(statements)}")
        kind = str(statements[0].type).rsplit(".", 1)[-1]
        if kind not in _READ_ONLY_STATEMENTS:
            raise QueryError(
                f"only read-only queries (SELECT, WITH ... SELECT, FROM, DESCRIBE, SUMMARIZE, EXPLAIN) are "
                f"accepted, got a {kind} statement; write results with --output / `output=` instead"
            )

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

    def reader(self, sql: str, params: Mapping[str, Any] | None = None, batch_size: int = 131072) -> Any:
        """Stream the result of one read-only statement: a `pyarrow.RecordBatchReader` (large results)."""
        rel = self.relation(sql, params)
        try:
            return rel.to_arrow_reader(batch_size)
        except self._duckdb.Error as exc:
            raise QueryError(f"SQL error: {duckdb_message(exc)}") from exc

    def with_units(self, table: pa.Table, extra: Mapping[str, str] | None = None) -> pa.Table:
        """`table` with an `xpengine.units` metadata entry for the columns whose unit is known."""
        known = {**self.units, **(extra or {})}
        units = {n: known[n] for n in table.column_names if n in known}
        meta = dict(table.schema.metadata or {})
        meta[b"xpengine.units"] = json.dumps(units).encode()
        return table.replace_schema_metadata(meta)

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
        rg = rgt = rows = nbytes = None
        if self.profile:
            try:
                info = json.loads(self.con.get_profiling_information(format="json"))
            except (self._duckdb.Error, ValueError):
                info = {}
            scans = list(_iter_scans(info.get("operator", [])))
            if scans:
                rg = sum(int(s.get("row_groups_scanned", 0) or 0) for s in scans)
                rgt = sum(int(s.get("total_row_groups_to_scan", 0) or 0) for s in scans)
                rows = sum(int(s.get("rows_scanned", 0) or 0) for s in scans)
            nbytes = (info.get("io") or {}).get("total_bytes_read")
        return ScanStats(
            files_scanned=len(self.files),
            files_total=self.files_total,
            row_groups_scanned=rg,
            row_groups_total=rgt,
            rows_scanned=rows,
            bytes_read=nbytes,
            wall_s=time.perf_counter() - getattr(self, "_t0", time.perf_counter()),
        )

    def close(self) -> None:
        con = getattr(self, "con", None)
        if con is not None:
            con.close()
            self.con = None

    def __enter__(self) -> CatalogConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _iter_scans(nodes: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for n in nodes:
        if n.get("type") == "TABLE_SCAN":
            yield n
        yield from _iter_scans(n.get("children", []))


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
) -> CatalogConnection:
    """Open a catalogue for queries.

    Args:
        catalog: catalogue directory, `.parquet` file, glob, or URL (s3://, gs://, ...).
        truth: simulated truth table (Parquet/CSV file, directory or URL) → view `truth`.
        gaia_source: Gaia DR3 gaia_source (Parquet, or bulk ECSV `GaiaSource_*.csv.gz`) → view `gaia`.
        joins: more tables, view name → location; each needs a `source_id` column.
        hpx8_range: (first, last) inclusive HEALPix level-8 range the `catalog` view is restricted to.
        region: Galactic box (l_min, l_max, b_min, b_max) in deg the `catalog` view is restricted to.
        threads: DuckDB worker threads (default: all cores).
        profile: keep DuckDB's profile of each query, for `scan_stats()`.

    Raises:
        CatalogNotFoundError: a location does not exist or holds no data files.
        QueryError: a table cannot be read or lacks `source_id`, or a bad region/range.
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
    `open_catalog(...).batches(sql)` or the command line's `--output`.

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
