"""`xpengine query`: SQL and Galactic-archaeology presets on an output catalogue (DuckDB).

Examples:

    xpengine query out/ "SELECT count(*) FROM catalog WHERE logg < 3.5"
    xpengine query out/ --preset age-metallicity --plot amr.png --output amr.csv
    xpengine query out/ --preset giants --region 30 40 -5 5 --count --stats
    xpengine query out/ --truth truth.parquet \\
        "SELECT median(abs(c.age - t.age_gyr)) FROM catalog c JOIN truth t USING (source_id)"
    xpengine query --list-presets

The SQL may come before or after the options. Every output path (--output, --plot) is checked before
the query runs; none may lie in a folder the query reads. --count prints the number of rows and writes
no file, so it refuses --output and --plot.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from typing import Any

log = logging.getLogger(__name__)

_PROG = "xpengine query"


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `query` subcommand to the `xpengine` command's subparsers."""
    p = sub.add_parser(
        "query",
        help="SQL / preset queries on an output catalogue (DuckDB)",
        description=(
            "Query a catalogue directory (or .parquet file, glob, s3:// URL) with SQL on the view `catalog` "
            "(plus `truth`, `gaia` and --join views, joined on source_id), or run a preset."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    p.add_argument("catalog", nargs="?", help="catalogue directory, .parquet file, glob or URL")
    p.add_argument(
        "sql", nargs="?", help="one read-only SQL statement on the view `catalog` (or use --preset)"
    )
    p.add_argument("--preset", help="run a preset (see --list-presets)")
    p.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a preset parameter, or a $NAME placeholder of the SQL (repeatable; 'none' switches a cut off)",
    )
    p.add_argument(
        "--list-presets", action="store_true", help="describe the presets and their parameters, then exit"
    )
    p.add_argument("--truth", metavar="FILE", help="simulated truth table (Parquet/CSV) → view `truth`")
    p.add_argument(
        "--gaia-source",
        metavar="PATH",
        help="gaia_source Parquet or bulk ECSV (.csv.gz): a file, a glob, or a directory's GaiaSource_* files "
        "→ view `gaia`",
    )
    p.add_argument(
        "--join",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="another table with a source_id column → view NAME (repeatable)",
    )
    p.add_argument(
        "--hpx8-range", nargs=2, type=int, metavar=("FIRST", "LAST"), help="restrict to a hpx8 range"
    )
    p.add_argument(
        "--region",
        nargs=4,
        type=float,
        metavar=("L_MIN", "L_MAX", "B_MIN", "B_MAX"),
        help="restrict to a Galactic box in deg (L_MIN > L_MAX wraps through l = 0)",
    )
    p.add_argument(
        "--output",
        "-o",
        metavar="FILE",
        help="write the whole result to FILE: .parquet or .ecsv (astropy reads their units and descriptions) or .csv (a header row only)",
    )
    p.add_argument("--plot", metavar="FILE.png", help="write the preset's picture (picture presets only)")
    p.add_argument("--overwrite", action="store_true", help="replace existing --output/--plot files")
    p.add_argument(
        "--head", type=int, default=20, metavar="N", help="rows to print without --output (default 20)"
    )
    p.add_argument(
        "--count", action="store_true", help="print only the number of result rows (no --output/--plot)"
    )
    p.add_argument("--show-sql", action="store_true", help="print the SQL that would run, then exit")
    p.add_argument(
        "--stats", action="store_true", help="print files/row groups/bytes read and time to stderr"
    )
    p.add_argument("--threads", type=int, help="DuckDB threads, ≥ 1 (default: all cores)")
    p.add_argument(
        "--memory-limit",
        metavar="SIZE",
        help="DuckDB memory limit, e.g. 4GB (default: half the machine's or its cgroup's memory)",
    )
    # argparse fills optional positionals at their first chance: `parse_command_line` below
    # puts an SQL given after the options into `sql`
    p.set_defaults(func=run, leftover_positionals=("catalog", "sql"))


def _parse_value(text: str) -> Any:
    """A command-line value for an SQL placeholder: int, float or string."""
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text


def _pairs(items: list[str], what: str, unique: bool = False) -> dict[str, str]:
    """NAME=VALUE items as a dict; with `unique`, a NAME given twice is refused, naming both values (the
    last would win)."""
    from xpengine.catalog.query import QueryError

    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name:
            raise QueryError(f"{what} must look like NAME=VALUE, got {item!r}")
        if unique and name in out:
            raise QueryError(
                f"{what} {name!r} is given twice ({out[name]!r} and {value!r}); give each name once"
            )
        out[name] = value
    return out


def _format_table(table: Any, total: int) -> str:
    """A plain-text table of `table` (pyarrow) with a row-count footer."""
    import math

    cols = table.column_names
    cells = [[_fmt(v, math) for v in table.column(c).to_pylist()] for c in cols]
    widths = [max([len(c)] + [len(s) for s in col]) for c, col in zip(cols, cells, strict=True)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(cols, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for i in range(table.num_rows):
        lines.append("  ".join(col[i].rjust(w) for col, w in zip(cells, widths, strict=True)))
    shown = table.num_rows
    lines.append(
        f"({total:,} row{'s' if total != 1 else ''}" + (f", first {shown} shown)" if shown < total else ")")
    )
    return "\n".join(lines)


def _fmt(v: Any, math: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.6g}"
    return str(v)


def run(args: argparse.Namespace) -> int:
    """Entry point of `xpengine query`; returns the exit code (2 on a query error, with the message)."""
    from xpengine.catalog.query import QueryError

    try:
        return _run(args)
    except QueryError as exc:
        print(f"{_PROG}: error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    import pyarrow as pa

    from xpengine.catalog import presets
    from xpengine.catalog.query import QueryError, open_catalog, write_table_stream

    if args.list_presets:
        print(presets.describe_presets())
        return 0
    if args.catalog is None:
        raise QueryError("give a CATALOG (directory, .parquet file, glob or URL), or --list-presets")
    if (args.sql is None) == (args.preset is None):
        raise QueryError("give either an SQL query or --preset NAME (exactly one of them)")
    spec = presets.get_preset(args.preset) if args.preset else None
    if args.plot and (spec is None or spec.plot is None):
        pictures = sorted(n for n, s in presets.PRESETS.items() if s.plot)
        raise QueryError(f"--plot needs a picture preset ({pictures})")
    if args.head < 0:
        raise QueryError(f"--head must be ≥ 0, got {args.head}")
    if args.threads is not None and args.threads < 1:
        raise QueryError(f"--threads must be ≥ 1, got {args.threads}")
    if not args.show_sql:  # it prints the SQL and writes nothing
        _check_output_paths(args)
    raw_params = _pairs(args.param, "--param", unique=True)
    joins = _pairs(args.join, "--join", unique=True)

    with open_catalog(
        args.catalog,
        truth=args.truth,
        gaia_source=args.gaia_source,
        joins=joins,
        hpx8_range=args.hpx8_range,
        region=args.region,
        threads=args.threads,
        profile=args.stats,
        memory_limit=args.memory_limit,
    ) as cat:
        for path, what in ((args.output, "output file"), (args.plot, "plot file")):
            if path and not args.show_sql:
                cat.check_output(path, what)
        if spec is not None:
            sql = cat.preset_sql(spec.name, raw_params)
            params = None
            units = spec.units
            unused = [n for n in joins if not re.search(rf"\b{re.escape(n)}\b", sql)]
            if unused:  # e.g. red-clump reads its colours only through -p jk0_view=NAME
                wanted = [p.name for p in spec.params if p.name.endswith("_view")]
                print(
                    f"xpengine query: warning: --join {', '.join(unused)} not used by the preset {spec.name}"
                    + (f" (it reads a joined table through -p {wanted[0]}=NAME)" if wanted else ""),
                    file=sys.stderr,
                )
        else:
            sql = args.sql
            params = {k: _parse_value(v) for k, v in raw_params.items()}
            units = {}
        if args.show_sql:
            print(sql)
            return 0

        if args.count:
            n = cat.count(sql, params)
            print(n)
        elif spec is not None and (spec.post is not None or args.plot):
            # picture presets return bins: small, materialise
            table = cat.preset(spec.name, raw_params)
            if args.output:
                write_table_stream(
                    pa.RecordBatchReader.from_batches(table.schema, table.to_batches()),
                    args.output,
                    overwrite=args.overwrite,
                )
                print(f"{table.num_rows:,} rows → {args.output}", file=sys.stderr)
            else:
                print(_format_table(table.slice(0, args.head), table.num_rows))
            if args.plot:
                spec.plot(table, args.plot)
                print(f"picture → {args.plot}", file=sys.stderr)
        elif args.output:
            reader = cat.reader(sql, params)
            meta = cat.with_units(reader.schema.empty_table(), units).schema.metadata
            n = write_table_stream(reader, args.output, schema_metadata=meta, overwrite=args.overwrite)
            print(f"{n:,} rows → {args.output}", file=sys.stderr)
        else:
            head, total = _head_and_count(cat.reader(sql, params), args.head)
            print(_format_table(head, total))
        if args.stats:
            print(f"{_PROG}: {cat.scan_stats().describe()}", file=sys.stderr)
    return 0


def _check_output_paths(args: argparse.Namespace) -> None:
    """Every file the command would write, checked before anything runs: a refused --plot must not
    come after a written --output, and --count (which prints) writes neither."""
    import os

    from xpengine.catalog.export import check_output_path
    from xpengine.catalog.query import QueryError

    if args.count and (args.output or args.plot):
        raise QueryError(
            "--count prints the number of rows and writes no file: drop --output/--plot, or --count"
        )
    if args.output:
        check_output_path(args.output, args.overwrite)
    if args.plot:
        _check_plot_path(args.plot, args.overwrite)
    if args.output and args.plot and os.path.realpath(args.output) == os.path.realpath(args.plot):
        raise QueryError(f"--output and --plot name the same file {args.output!r}")


def _check_plot_path(path: str, overwrite: bool) -> None:
    from pathlib import Path

    from xpengine.catalog.query import QueryError

    p = Path(path)
    if p.suffix.lower() != ".png":
        raise QueryError(f"--plot file must end in .png, got {path!r}")
    if p.exists() and not overwrite:
        raise QueryError(f"plot file {path!r} exists; pass --overwrite to replace it")
    if not p.parent.exists():
        raise QueryError(f"plot directory {str(p.parent)!r} does not exist")


def _head_and_count(reader: Any, n_head: int) -> tuple[Any, int]:
    """The first `n_head` rows (pyarrow Table) and the total row count of a streamed result."""
    import duckdb
    import pyarrow as pa

    from xpengine.catalog.query import QueryError

    kept, have, total = [], 0, 0
    try:
        for batch in reader:
            total += batch.num_rows
            if have < n_head:
                b = batch.slice(0, n_head - have)
                kept.append(b)
                have += b.num_rows
    except (duckdb.Error, pa.ArrowException, OSError) as exc:  # DuckDB's, through pyarrow's reader: OSError
        raise QueryError(f"SQL error: {str(exc).strip()}") from exc
    return pa.Table.from_batches(kept, schema=reader.schema), total


def parse_command_line(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """`parser.parse_args(argv)`, except that a subcommand's optional positionals may also come after
    its options. argparse fills optional positionals (nargs="?") at their first chance, empty if need
    be, so `xpengine query CAT --truth T "SELECT ..."` left the SQL unrecognised: a subcommand that
    sets the default `leftover_positionals` (names, in order) gets the leftover arguments that are not
    options put into those of them still unset. Anything else left over is an error, as in parse_args."""
    args, extra = parser.parse_known_args(argv)
    slots = [n for n in getattr(args, "leftover_positionals", ()) if getattr(args, n, None) is None]
    rest = []
    for arg in extra:
        if slots and not arg.startswith("-"):
            setattr(args, slots.pop(0), arg)
        else:
            rest.append(arg)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run `xpengine query` alone (for tests and `python -m xpengine.catalog.cli`)."""
    parser = argparse.ArgumentParser(prog="xpengine")
    register(parser.add_subparsers(dest="command", required=True))
    args = parse_command_line(parser, ["query", *(argv if argv is not None else sys.argv[1:])])
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
