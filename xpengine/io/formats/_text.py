"""Streaming engine shared by the CSV and ECSV readers (archive files and the gzipped bulk files).

The file is read with `pyarrow.csv.open_csv` (multi-threaded block parsing, overlapping with inflation
in the reading thread), keeping only the columns asked for: in a bulk XP file the two correlation
columns are ~90% of the bytes and are never converted unless asked. Array columns arrive as strings and
are parsed by `xpengine.io._arrays`.
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Iterator
from typing import IO, Any

import pyarrow as pa
import pyarrow.csv as pcsv

from xpengine.io._source import GZIP_ERRORS, Source
from xpengine.io.errors import GaiaFileError
from xpengine.io.formats._skip import FieldBlanker
from xpengine.io.schema import ECSV_TYPES

__all__ = ["TextReader", "locate_bad_row", "parse_ecsv_header"]

logger = logging.getLogger(__name__)

BLOCK_BYTES = 8 << 20
"""pyarrow block size: must exceed the longest row (~40 kB for a bulk XP row with correlations)."""
NULL_VALUES = ["", "null"]
"""Missing values: `null` in the bulk files, empty fields in archive CSV/ECSV (floats there say `nan`)."""


def parse_ecsv_header(lines: list[str], url: str) -> dict[str, Any]:
    """Parse ECSV 1.0 `# ` header lines (YAML) into a dict with `delimiter` and `datatype` entries.

    Returns {"delimiter": str, "datatype": {name: {"datatype": ..., "subtype": ..., "unit": ...}},
    "meta": {...}}. A header YAML cannot parse raises `GaiaFileError`.
    """
    import yaml

    body = [ln[2:] if ln.startswith("# ") else ln[1:] for ln in lines]
    body = [ln for ln in body if not ln.startswith("%ECSV")]
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        doc = yaml.load("".join(body), Loader=loader) or {}
    except yaml.YAMLError as exc:
        raise GaiaFileError(url, f"ECSV header is not valid YAML: {exc}") from exc
    if not isinstance(doc, dict):
        raise GaiaFileError(url, f"ECSV header should be a YAML mapping, got {type(doc).__name__}")
    types: dict[str, dict[str, Any]] = {}
    for item in doc.get("datatype") or []:
        if isinstance(item, dict) and "name" in item:
            types[str(item["name"])] = item
    # ECSV 1.0: the delimiter is a space unless the header says otherwise (Gaia files say ",")
    return {"delimiter": doc.get("delimiter", " "), "datatype": types, "meta": doc.get("meta") or {}}


class TextReader:
    """Streaming reader for delimited text with optional leading `#` (ECSV) header lines."""

    text_arrays = True

    def __init__(self, src: Source, format_name: str) -> None:
        self.src = src
        self.format_name = format_name
        self._stream: IO[bytes] | None = src.open()
        header: list[str] = []
        names_line = b""
        self._data_offset = 0  # bytes before the first data row
        try:
            while True:
                line = self._stream.readline()
                self._data_offset += len(line)
                if not line:
                    break
                if self._data_offset == len(line) and line.startswith(b"\xef\xbb\xbf"):
                    line = line[3:]  # a UTF-8 byte-order mark (Excel's "CSV UTF-8"): not part of a name
                if line.startswith(b"#"):
                    header.append(line.decode("utf-8", errors="replace"))
                    continue
                if not line.strip():
                    continue
                names_line = line
                break
        except GZIP_ERRORS as exc:
            raise GaiaFileError(src.url, f"truncated or corrupt gzip stream in the header: {exc}") from exc
        self.header_lines = len(header)
        self.ecsv = parse_ecsv_header(header, src.url) if header and "%ECSV" in header[0] else None
        self.table_meta: dict[str, Any] = dict(self.ecsv["meta"]) if self.ecsv else {}
        """ECSV header `meta` (e.g. the `source_id` of an archive XP_SAMPLED download); {} for CSV."""
        self.delimiter = str(self.ecsv["delimiter"]) if self.ecsv else ","
        if len(self.delimiter) != 1:
            raise GaiaFileError(src.url, f"unsupported delimiter {self.delimiter!r}; expected one character")
        if not names_line:
            raise GaiaFileError(src.url, "no column-name row after the header; the file holds no table")
        self.columns = [
            c.strip() for c in next(csv.reader([names_line.decode("utf-8")], delimiter=self.delimiter))
        ]
        dup = sorted({c for c in self.columns if self.columns.count(c) > 1})
        if dup:
            raise GaiaFileError(src.url, f"duplicate column names {dup}")

    def declared_type(self, name: str) -> pa.DataType | None:
        """Arrow type declared for `name` in the ECSV header (array columns: None), if any."""
        if not self.ecsv:
            return None
        item = self.ecsv["datatype"].get(name)
        if not item or item.get("subtype"):
            return None
        return ECSV_TYPES.get(str(item.get("datatype")))

    def field_metadata(self, name: str) -> dict[str, str]:
        """unit / description / ucd of a column, from the ECSV header."""
        item = self.ecsv["datatype"].get(name) if self.ecsv else None
        if not item:
            return {}
        meta = item.get("meta") if isinstance(item.get("meta"), dict) else {}
        m = {"unit": item.get("unit"), "description": item.get("description"), "ucd": meta.get("ucd")}
        return {k: str(v) for k, v in m.items() if v}

    def iter_batches(
        self,
        columns: list[str],
        types: dict[str, pa.DataType],
        batch_rows: int,
        *,
        skip_quoted: list[str] | None = None,
    ) -> Iterator[tuple[int, pa.RecordBatch]]:
        """Yield (index of the batch's first data row, 0-based; batch) with `columns` in that order.

        `types` gives the Arrow type per column (array columns: `pa.string()`); others are inferred.
        `batch_rows` is not used: block boundaries decide the batch sizes here.
        `skip_quoted`: columns (not among `columns`) whose quoted array text is dropped before
        tokenizing (see `_skip`); only valid when every quoted field of the file is a numeric array.
        """
        if self._stream is None:
            raise RuntimeError("TextReader.iter_batches can be called only once")
        stream, self._stream = self._stream, None
        local = self.src.local_path
        drop = frozenset(self.columns.index(c) for c in (skip_quoted or []) if c in self.columns)
        if drop and self.delimiter == ",":
            stream = FieldBlanker(stream, drop)
        elif local is not None and not self.src.gzip:
            # Uncompressed local file: let Arrow read a memory map, no Python file object in the loop.
            stream.close()
            stream = pa.memory_map(local)
            self.src.add_closer(stream.close)
            stream.seek(self._data_offset)
        read_opts = pcsv.ReadOptions(column_names=self.columns, block_size=BLOCK_BYTES, use_threads=True)
        parse_opts = pcsv.ParseOptions(delimiter=self.delimiter)
        conv_opts = pcsv.ConvertOptions(
            include_columns=columns,
            column_types={c: t for c, t in types.items() if c in columns},
            null_values=NULL_VALUES,
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
        )
        row = 0
        try:
            try:
                reader = pcsv.open_csv(
                    stream, read_options=read_opts, parse_options=parse_opts, convert_options=conv_opts
                )
            except pa.ArrowInvalid as exc:
                if "Empty CSV file" in str(exc):  # header and column names only: no rows
                    return
                raise
            for batch in reader:
                yield row, batch
                row += batch.num_rows
        except GZIP_ERRORS as exc:
            raise GaiaFileError(
                self.src.url,
                f"truncated or corrupt gzip stream, in the block of rows after data row {row} (read in blocks "
                f"of many rows, so the damage may lie further in): {exc}",
            ) from exc
        except (pa.ArrowInvalid, pa.ArrowKeyError, pa.ArrowTypeError) as exc:
            msg = str(exc)
            m = re.search(r"In CSV column #(\d+)", msg)
            column = self.columns[int(m.group(1))] if m and int(m.group(1)) < len(self.columns) else None
            found = None
            if re.search(r"Expected \d+ columns, got \d+", msg):  # a row of the wrong length: find it
                found = locate_bad_row(self.src, self._data_offset, len(self.columns), self.delimiter, row)
            value = re.search(r"invalid value '(.*)'", msg)  # greedy: a value may hold a quote
            if value is not None and m is not None:  # a value that does not convert: find its row
                bad = (int(m.group(1)), value.group(1))
                found = locate_bad_row(
                    self.src, self._data_offset, len(self.columns), self.delimiter, row, bad_value=bad
                )
            if found is None:  # another parse error: say how far the reading got
                raise GaiaFileError(
                    self.src.url,
                    f"cannot parse {self.format_name} after data row {row}: {msg}",
                    column=column,
                ) from exc
            data_row, line = found
            raise GaiaFileError(
                self.src.url,
                f"cannot parse {self.format_name} at line {line} of the file: {msg}",
                row=data_row,
                column=column,
            ) from exc
        finally:
            self.src.close()


def locate_bad_row(
    src: Source,
    data_offset: int,
    n_columns: int,
    delimiter: str,
    first_row: int,
    bad_value: tuple[int, str] | None = None,
) -> tuple[int, int] | None:
    """(data row, line of the file; both 1-based) of the first data row, from 0-based data row
    `first_row` on, whose field count is not `n_columns`, or (`bad_value`: (column index, text)) whose
    field there is that text; None if there is none or the file cannot be read again. pyarrow's parse
    errors give the row's text or value but not where it is, and its threaded reading says only how many
    rows it had delivered; this reads the file again, on the error path only. One record per line, as in
    every Gaia text file; empty lines are skipped, as pyarrow skips them."""
    try:
        stream = src.open()
        head = stream.read(data_offset)  # the header lines and the column names
        line = head.count(b"\n")
        row = 0
        for raw in stream:
            line += 1
            if not raw.rstrip(b"\r\n"):  # pyarrow skips empty lines, not those of blanks (1-field rows)
                continue
            if row >= first_row:
                text = raw.decode("utf-8", errors="replace")
                fields = next(csv.reader([text], delimiter=delimiter))
                if bad_value is None and len(fields) != n_columns:
                    return row + 1, line
                k = -1 if bad_value is None else bad_value[0]
                if bad_value is not None and k < len(fields) and fields[k].strip() == bad_value[1].strip():
                    return row + 1, line
            row += 1
    except (*GZIP_ERRORS, OSError, csv.Error):
        logger.debug("%s: could not locate the unparsable row", src.url, exc_info=True)
    return None
