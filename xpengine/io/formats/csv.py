"""Plain CSV as written by the Gaia archive: header row of column names, arrays as `"(a, b, ...)"`
tuples, empty fields for missing values. Leading `#` comment lines are skipped."""

from __future__ import annotations

from xpengine.io._source import Source
from xpengine.io.formats._text import TextReader

NAME = "csv"


def identify(src: Source) -> bool:
    """A first non-comment line that is a comma-separated list of names including `source_id`, or a
    `.csv` name whose first line is comma-separated (column names are checked later)."""
    for raw in src.head.removeprefix(b"\xef\xbb\xbf").splitlines():  # a UTF-8 byte-order mark: no content
        line = raw.strip()
        if not line or line.startswith(b"#"):
            continue
        if line.startswith((b"<", b"{", b"[")) or b"," not in line:
            return False
        names = [n.strip(b' "') for n in line.split(b",")]
        return b"source_id" in names or src.stem_name.endswith(".csv")
    return False


def open_reader(src: Source) -> TextReader:
    return TextReader(src, NAME)
