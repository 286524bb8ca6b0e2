"""One identify/read pair per file format, behind `open_table_reader`.

Each format module defines `NAME`, `identify(src) -> bool` (content sniffing on the first decompressed
bytes, with the file name as a hint) and `open_reader(src)`, which returns a reader with `columns`
(names in the file), `text_arrays` (True when array columns arrive as strings), `table_meta` (table-level
metadata: ECSV `meta`, FITS header keywords, VOTable PARAMs, Parquet schema metadata), `declared_type(name)`,
`field_metadata(name)` (unit / description / ucd when the file declares them) and `iter_batches(columns, types, batch_rows)` yielding (first data row index, RecordBatch).
gzip compression is handled below the formats, for all of them.
"""

from __future__ import annotations

import os
from typing import Any, Protocol

from xpengine.io._source import Source, open_source
from xpengine.io.errors import GaiaFileError
from xpengine.io.formats import csv, ecsv, fits, parquet, votable

__all__ = ["FORMATS", "identify_format", "open_table_reader", "table_column_names"]

FORMATS = (parquet, fits, votable, ecsv, csv)
"""Tried in this order; magic-byte formats first."""


class TableReader(Protocol):  # pragma: no cover - typing only
    src: Source
    format_name: str
    columns: list[str]
    text_arrays: bool
    table_meta: dict[str, Any]

    def declared_type(self, name: str) -> Any: ...

    def field_metadata(self, name: str) -> dict[str, str]: ...

    def iter_batches(self, columns: list[str], types: dict[str, Any], batch_rows: int) -> Any: ...


def identify_format(
    source: str | os.PathLike[str] | Source, storage_options: dict[str, Any] | None = None
) -> str:
    """Name of the format of a file: 'parquet', 'fits', 'votable', 'ecsv' or 'csv' (gzip or not).

    Raises `GaiaFileError` for an empty file or an unknown format.
    """
    src = source if isinstance(source, Source) else open_source(source, storage_options)
    for mod in FORMATS:
        if mod.identify(src):
            return mod.NAME
    start = src.head[:40]
    if start.startswith(b"PK\x03\x04"):  # a zip: the archive's DataLink download, say
        raise GaiaFileError(
            src.url,
            "a zip archive (a Gaia DataLink download?), not a table: read one of its members with "
            "'zip://MEMBER::" + str(src.url) + "' (e.g. its XP_CONTINUOUS-*.csv), or give the zip to "
            "`xpengine infer` / the catalogue job, which read its XP members in place",
        )
    raise GaiaFileError(
        src.url,
        f"unknown format (file starts with {start!r}); expected ECSV, CSV, FITS, VOTable or Parquet, "
        "optionally gzip-compressed",
    )


def open_table_reader(
    source: str | os.PathLike[str], storage_options: dict[str, Any] | None = None
) -> TableReader:
    """Open `source`, identify its format and return the format's reader."""
    src = open_source(source, storage_options)
    name = identify_format(src)
    mod = {m.NAME: m for m in FORMATS}[name]
    return mod.open_reader(src)


def table_column_names(
    source: str | os.PathLike[str], storage_options: dict[str, Any] | None = None
) -> list[str]:
    """The column names of a table file, from its header where that is cheap: VOTable FIELDs and the FITS
    table header from the first decompressed bytes (their readers parse the whole file), the header of text
    and Parquet files from their readers (which read only that). Falls back to the format's reader."""
    src = open_source(source, storage_options)
    try:
        name = identify_format(src)
        names = _names_from_head(name, src.head)
        if names is not None:
            return names
        mod = {m.NAME: m for m in FORMATS}[name]
        return list(mod.open_reader(src).columns)
    finally:
        src.close()


def _names_from_head(fmt: str, head: bytes) -> list[str] | None:
    """Column names read from the first bytes of a VOTable or FITS file; None when the header does not
    end within them (or for another format)."""
    import re

    if fmt == "votable":
        text = head.decode("utf-8", errors="replace")
        end = re.search(r"<(DATA|TABLEDATA|BINARY2?|FITS)\b", text)
        if end is None:
            return None
        return re.findall(r"<FIELD\b[^>]*?\bname\s*=\s*[\"']([^\"']+)[\"']", text[: end.start()])
    if fmt == "fits":
        cards = [head[i : i + 80].decode("ascii", errors="replace") for i in range(0, len(head) - 79, 80)]
        table = next((k for k, c in enumerate(cards) if c.startswith("XTENSION") and "TABLE" in c), None)
        if table is None:
            return None
        names: dict[int, str] = {}
        for c in cards[table:]:
            if c.startswith("END") and not c[3:].strip():
                return [names[k] for k in sorted(names)]
            m = re.match(r"TTYPE(\d+)\s*=\s*'((?:[^']|'')*)'", c)
            if m:
                names[int(m.group(1))] = m.group(2).replace("''", "'").rstrip()
        return None
    return None
