"""ECSV 1.0: the Gaia bulk files (`*.csv.gz`, `null` for missing, JSON arrays) and archive ECSV output
(empty fields or `nan` for missing, JSON arrays)."""

from __future__ import annotations

from xpengine.io._source import Source
from xpengine.io.formats._text import TextReader

NAME = "ecsv"


def identify(src: Source) -> bool:
    """ECSV files start with the `# %ECSV <version>` line (APE 6)."""
    return src.head.removeprefix(b"\xef\xbb\xbf").lstrip().startswith(b"# %ECSV")  # a BOM is no content


def open_reader(src: Source) -> TextReader:
    return TextReader(src, NAME)
