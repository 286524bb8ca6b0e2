"""Checks on the tables a catalogue query joins (`truth`, `gaia`, `--join` views) and on where a query
may write, shared by `xpengine.catalog.query` and the command line.

- `check_catalogue_files`: every file of a catalogue has the first file's columns and types and, where any
  carries it, the job's mark (a colour table or a query result left in the directory would read as
  catalogue rows: each star twice, or a schema error in the middle of a query).
- `check_read_only`: a query is one read-only statement; an EXPLAIN only of one (DuckDB runs what an
  EXPLAIN ANALYZE wraps, a COPY ... TO included).
- `check_table_files`: every file of a table has the columns the view needs (a gaia_source file needs
  positions: an `XpContinuousMeanSpectrum_*` file beside it has `source_id` too, and read as
  gaia_source its coefficient arrays made DuckDB grow past 24 GB) and, for Parquet, an integer
  `source_id` in each file (DuckDB takes the first file's types and casts the others silently), and
  all its files have one header (CSV files of two kinds read under one header made DuckDB grow past the
  machine's memory).
- `check_source_id_type` / `check_unique_ids`: the view's `source_id` is an integer (by
  `xpengine.io`'s `SOURCE_ID_RULE`: a float id has lost digits and matches the wrong star) and, for
  the tables joined one row per star, unique (a repeated id doubles the catalogue rows it joins).
- `holds_path`: whether an output path lies in a table's location (writing there adds the result to
  the table the next query reads), on `lies_inside`, which the catalogue job's output check uses too.
- `default_memory_limit`: DuckDB's memory limit, half the memory of the machine (or its cgroup).
"""

from __future__ import annotations

import fnmatch
import gzip
import os
import re
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow as pa

from xpengine.catalog.errors import QueryError, duckdb_message
from xpengine.catalog.locate import TableFiles
from xpengine.io._arrays import SOURCE_ID_RULE

__all__ = [
    "GAIA_COLUMNS",
    "check_catalogue_files",
    "check_join_names",
    "check_read_only",
    "check_source_id_type",
    "check_table_files",
    "check_unique_ids",
    "default_memory_limit",
    "holds_path",
    "lies_inside",
]

GAIA_COLUMNS: tuple[str, ...] = ("source_id", "ra", "dec")
"""What makes a file a gaia_source table for the `gaia` view: the XP files share source_id, not positions."""

_INTEGER_TYPES = frozenset(
    {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT"}
)
_HEADER_BYTES = 8 << 20  # a text header (ECSV comments + the column row) longer than this is refused
_THREADS = 8  # files inspected at once
_MEMORY_FRACTION = 0.5
_IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _csv_header(path: str) -> list[str]:
    """The column names of a CSV / bulk ECSV file: its first line that is not a '#' comment."""
    opener = gzip.open if path.lower().endswith(".gz") else open
    read = 0
    with opener(path, "rt", encoding="utf-8", errors="replace", newline="") as f:
        while read < _HEADER_BYTES:
            line = f.readline(1 << 20)
            if not line:
                return []
            read += len(line)
            if not line.startswith("#") and line.strip():
                delim = max(",\t|;", key=line.count)
                return [c.strip().strip('"').strip() for c in line.rstrip("\r\n").split(delim)]
    return []


def _file_columns(path: str, src: TableFiles) -> tuple[list[str], pa.DataType | None]:
    """(column names, Arrow type of source_id or None) of one file, from its header or Parquet footer."""
    import pyarrow.parquet as pq

    if src.fmt == "parquet":
        if src.fs is None:
            schema = pq.read_schema(path)
        else:
            with src.fs.open_input_file(path) as f:
                schema = pq.read_schema(f)
        i = schema.get_field_index("source_id")
        return schema.names, (schema.field(i).type if i >= 0 else None)
    return _csv_header(path), None


def _shown(names: Sequence[str]) -> str:
    return ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")


def check_table_files(src: TableFiles, what: str, required: Sequence[str], why: str) -> None:
    """Refuse (QueryError naming the file) a file of `src` that lacks a column of `required`, whose
    Parquet `source_id` is not an integer, or whose columns are not the first file's; `why` ends the
    missing-column message."""

    def inspect(path: str) -> tuple[str | None, list[str]]:
        try:
            names, sid_type = _file_columns(path, src)
        except Exception as exc:  # any unreadable header is this file's problem
            return f"{what}: cannot read the header of {path!r}: {exc}", []
        missing = [c for c in required if c not in names]
        if missing:
            plural = "s" * (len(missing) > 1)
            why_not = f"has no {', '.join(missing)} column{plural} {why}"
            return f"{what}: {path!r} {why_not}; its columns: {_shown(names)}", names
        if sid_type is not None and not pa.types.is_integer(sid_type):
            return f"{what}: {path!r} column source_id has type {sid_type}; {SOURCE_ID_RULE}", names
        return None, names

    with ThreadPoolExecutor(max_workers=max(1, min(_THREADS, len(src.files)))) as pool:
        first: list[str] | None = None
        for path, (problem, names) in zip(src.files, pool.map(inspect, src.files), strict=True):
            if problem is not None:
                raise QueryError(problem)
            if first is None:
                first = names
            elif (names != first) if src.fmt != "parquet" else (set(names) != set(first)):
                # one table, one header: another kind of file read under the first's (Parquet by name)
                raise QueryError(
                    f"{what}: {path!r} has other columns than {src.files[0]!r} ({_shown(names)} against "
                    f"{_shown(first)}); give a table's files only, one kind per table"
                )


def _has_record(src: TableFiles, path: str) -> bool:
    """Whether the catalogue job's manifest holds a record for the catalogue file `path`
    (`<dir>/_manifest/<name>.json`): a partition done before the job marked its files, resumed since."""
    record = f"{os.path.dirname(path)}/_manifest/{os.path.basename(path).removesuffix('.parquet')}.json"
    try:
        if src.fs is None:
            return os.path.isfile(record)
        import pyarrow.fs as pafs

        return src.fs.get_file_info(record).type == pafs.FileType.File
    except Exception:  # an unreadable manifest: the mark alone decides
        return False


def check_catalogue_files(src: TableFiles, mark: bytes) -> pa.Schema:
    """Refuse (QueryError naming the file) a catalogue file whose columns or their types are not the
    first file's, or without the job's `mark` (schema metadata key) where another file has it, unless the
    job's manifest has its record (`writer.own_partitions`' rule); returns the first file's schema."""
    import pyarrow.parquet as pq

    def schema(path: str) -> pa.Schema:
        try:
            if src.fs is None:
                return pq.read_schema(path)
            with src.fs.open_input_file(path) as f:
                return pq.read_schema(f)
        except Exception as exc:
            raise QueryError(f"catalogue file {path!r} is not a readable Parquet file: {exc}") from exc

    with ThreadPoolExecutor(max_workers=max(1, min(_THREADS, len(src.files)))) as pool:
        schemas = list(pool.map(schema, src.files))
    fields = [(f.name, f.type) for f in schemas[0]]
    marked = [mark in (s.metadata or {}) for s in schemas]
    for path, sch, has in zip(src.files, schemas, marked, strict=True):
        if [(f.name, f.type) for f in sch] != fields:
            raise QueryError(
                f"catalogue: {path!r} has other columns or types than {src.files[0]!r} ({_shown(sch.names)} "
                f"against {_shown(schemas[0].names)}): not a file of this catalogue; move it out of "
                f"{src.location!r}"
            )
        if any(marked) and not has and not _has_record(src, path):
            raise QueryError(
                f"catalogue: {path!r} was not written by the catalogue job (no {mark.decode()} mark, which "
                f"the other files of {src.location!r} carry): a query result or other table left in the "
                "catalogue would read as catalogue rows; move it out"
            )
    return schemas[0]


_EXPLAIN = re.compile(r"^\s*EXPLAIN\s*(\([^)]*\))?\s*(ANALY[SZ]E\b)?", re.IGNORECASE)


def _without_comments(sql: str, duckdb_module: Any) -> str:
    """`sql` with its comments cut out by DuckDB's own tokenizer (a regex misreads nested block comments,
    which DuckDB allows: `/* /* */ ... -- */` hid a COPY from the check, found by a review). A token's text
    runs to the next token's offset."""
    tokens = duckdb_module.tokenize(sql)
    ends = [off for off, _ in tokens[1:]] + [len(sql)]
    kept = [sql[off:end] for (off, kind), end in zip(tokens, ends, strict=True) if "comment" not in str(kind)]
    return " ".join(kept)


def check_read_only(con: Any, sql: str, error: type[Exception], allowed: Sequence[str]) -> None:
    """Refuse (QueryError) anything but one statement of a kind in `allowed`: DuckDB's statement type
    (`error` its exception class); an EXPLAIN must wrap a SELECT, for EXPLAIN ANALYZE runs what it wraps."""
    if not isinstance(sql, str) or not sql.strip():
        raise QueryError("empty SQL query")
    try:
        statements = con.extract_statements(sql)
    except error as exc:
        raise QueryError(f"SQL error: {duckdb_message(exc)}") from exc
    if len(statements) != 1:
        raise QueryError(f"give exactly one SQL statement, got {len(statements)}")
    kind = str(statements[0].type).rsplit(".", 1)[-1]
    if kind == "EXPLAIN":
        import duckdb

        inner = _EXPLAIN.sub("", _without_comments(sql, duckdb), count=1)
        try:
            wrapped = con.extract_statements(inner)
        except error as exc:
            raise QueryError(f"SQL error in what EXPLAIN wraps: {duckdb_message(exc)}") from exc
        inner_kind = str(wrapped[0].type).rsplit(".", 1)[-1] if len(wrapped) == 1 else "?"
        if inner_kind != "SELECT":
            raise QueryError(
                f"EXPLAIN must wrap a read-only query (SELECT ...), got a {inner_kind} statement"
            )
    elif kind not in allowed:
        raise QueryError(
            f"only read-only queries (SELECT, WITH ... SELECT, FROM, DESCRIBE, SUMMARIZE, EXPLAIN) are "
            f"accepted, got a {kind} statement; write results with --output / `output=` instead"
        )


def check_join_names(
    joins: Mapping[str, str | os.PathLike] | None, reserved: frozenset[str]
) -> list[tuple[str, str | os.PathLike]]:
    """The join tables, their names checked: SQL identifiers, not a `reserved` view, each given once
    (case-insensitively, as DuckDB compares names: `x` and `X` would be one view, the last winning)."""
    seen: set[str] = set()
    items = list((joins or {}).items())
    for name, _ in items:
        if not isinstance(name, str) or not _IDENT_RE.match(name) or name.lower() in reserved:
            raise QueryError(f"join name {name!r} must be an SQL identifier other than {sorted(reserved)}")
        if name.lower() in seen:
            raise QueryError(f"join name {name!r} is given twice; give each view one table")
        seen.add(name.lower())
    return items


def check_source_id_type(con: Any, name: str, src: TableFiles) -> None:
    """Refuse a view whose source_id DuckDB reads as anything but an integer (CSV ids such as
    `5.853498713190526e+18` are sniffed as DOUBLE)."""
    kind = str(con.execute(f"DESCRIBE SELECT source_id FROM {name}").fetchall()[0][1]).upper()
    if kind not in _INTEGER_TYPES:
        where = src.files[0] if len(src.files) == 1 else src.location
        raise QueryError(f"table {name!r}: {where!r} column source_id has type {kind}; {SOURCE_ID_RULE}")


def check_unique_ids(con: Any, name: str, src: TableFiles, duckdb: Any) -> None:
    """Refuse a table joined one row per star that holds a source_id twice, naming an id and its files."""
    try:  # fetchall: DuckDB refuses further work on a connection with a result left unfetched
        rows = con.execute(
            f"SELECT source_id, count(*) FROM {name} WHERE source_id IS NOT NULL "
            "GROUP BY source_id HAVING count(*) > 1 ORDER BY source_id LIMIT 1"
        ).fetchall()
    except duckdb.Error as exc:
        raise QueryError(f"cannot read table {name!r} from {src.location!r}: {duckdb_message(exc)}") from exc
    if not rows:
        return
    sid, n = rows[0]
    where = repr(src.files[0]) if len(src.files) == 1 else _files_holding(con, src, sid) or repr(src.location)
    raise QueryError(
        f"table {name!r}: {where} holds source_id {sid} {n} times; a joined table needs one row per "
        "source_id (each repeat would repeat the catalogue rows it joins)"
    )


def _files_holding(con: Any, src: TableFiles, sid: int) -> str:
    if src.fs is not None:
        return ""
    files = "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in src.files) + "]"
    reader = "read_parquet" if src.fmt == "parquet" else "read_csv"
    extra = "" if src.fmt == "parquet" else ", comment = '#', header = true, nullstr = ['null', '']"
    try:
        rows = con.execute(
            f"SELECT DISTINCT filename FROM {reader}({files}, filename = true{extra}) WHERE source_id = $sid",
            {"sid": sid},
        ).fetchall()
    except Exception:  # the location is named instead
        return ""
    return ", ".join(repr(r[0]) for r in sorted(rows))


def lies_inside(path: str, folder: str) -> bool:
    """Whether `path` lies inside `folder` (not `folder` itself): both as one spelling compares them,
    real local paths (`os.path.realpath`) or the paths of URLs of one scheme. Also the catalogue job's
    check that its output does not lie inside, or hold, an input (`xpengine.pipeline.plan`)."""
    return path.startswith(folder.rstrip("/" + os.sep) + os.sep)


def holds_path(src: TableFiles, path: str | os.PathLike) -> bool:
    """Whether writing `path` puts a file where `src` is read from: inside its directory, in the folder
    of a file its glob matched, or onto its one file (URLs: never, output is local)."""
    if src.fs is not None:
        return False
    target = os.path.realpath(path)
    loc = os.path.realpath(src.location)
    if os.path.isdir(src.location):
        return lies_inside(target, loc)
    if any(ch in src.location for ch in "*?["):
        folders = {os.path.dirname(os.path.realpath(f)) for f in src.files}
        pattern = os.path.abspath(src.location)
        return os.path.dirname(target) in folders or fnmatch.fnmatch(os.path.abspath(path), pattern)
    return target == loc


def default_memory_limit() -> str:
    """Half the memory of this machine, or of the cgroup the process runs in when that is smaller:
    DuckDB's own default (80 %) leaves too little when its reads allocate memory it does not track."""
    total = None
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        pass
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as f:
                text = f.read().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < (total or 1 << 62):
            total = int(text)
    if not total:
        return "4GiB"
    return f"{max(256, int(total * _MEMORY_FRACTION) >> 20)}MiB"
