"""Where a queried table's files are: a local directory, file or glob, or a URL (pyarrow file system,
`xpengine.io.filesystems.arrow_filesystem`), resolved to one list of data files of one format
(`locate_table`). Names starting with "_" or "." (`_manifest`, `_tmp`, `_SUMMARY.json`, hidden
temporaries) are not data. A directory of the `gaia` view gives only its `GaiaSource_*` files, as the
job's pairing (`xpengine.io.partitions`) takes them: the bulk layout keeps `XpContinuousMeanSpectrum_*`
files beside them, which are not gaia_source; a single file or a glob is used as given.
"""

from __future__ import annotations

import dataclasses
import glob
import os
from typing import Any

from xpengine.catalog.errors import CatalogNotFoundError, QueryError

__all__ = ["TableFiles", "format_of", "is_url", "is_visible", "locate_table", "locate_url", "single_format"]


@dataclasses.dataclass
class TableFiles:
    """The files of one table: local paths (fs None) or paths on a pyarrow filesystem."""

    location: str
    files: list[str]
    fmt: str  # "parquet" | "csv"
    fs: Any = None


def is_url(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def format_of(name: str) -> str | None:
    n = name.lower()
    if n.endswith(".parquet") or n.endswith(".pq"):
        return "parquet"
    if n.endswith((".csv", ".csv.gz", ".ecsv", ".ecsv.gz")):
        return "csv"
    return None


def is_visible(name: str) -> bool:
    # `_manifest`, `_tmp`, `_rejected`, `_SUMMARY.json`, `_JOB.json`, `_LOCK.json`: not data
    return not (name.startswith("_") or name.startswith("."))


def _in_dir(name: str, formats: tuple[str, ...], prefix: str | None) -> bool:
    return is_visible(name) and format_of(name) in formats and (prefix is None or name.startswith(prefix))


def _expected(formats: tuple[str, ...], prefix: str | None) -> str:
    kinds = " or ".join(formats)
    return (
        f"{kinds} files"
        if prefix is None
        else f"{prefix}* {kinds} files; give a file or a glob for other names"
    )


def locate_table(
    location: str | os.PathLike, what: str, formats: tuple[str, ...], dir_prefix: str | None = None
) -> TableFiles:
    """Resolve a directory / file / glob / URL to the data files of one table; in a directory, only
    the files whose name starts with `dir_prefix` when one is given."""
    loc = os.fspath(location)
    if loc.startswith("file://"):
        loc = loc[len("file://") :]
    if is_url(loc):
        return locate_url(loc, what, formats, dir_prefix)
    if any(ch in loc for ch in "*?["):
        files = sorted(f for f in glob.glob(loc) if os.path.isfile(f) and is_visible(os.path.basename(f)))
        if not files:
            raise CatalogNotFoundError(f"{what}: no files match the pattern {loc!r}")
    elif os.path.isdir(loc):
        files = sorted(
            os.path.join(loc, e.name)
            for e in os.scandir(loc)
            if e.is_file() and _in_dir(e.name, formats, dir_prefix)
        )
        if not files:
            raise CatalogNotFoundError(
                f"{what}: directory {loc!r} holds no data files (expected {_expected(formats, dir_prefix)})"
            )
    elif os.path.isfile(loc):
        files = [loc]
    else:
        raise CatalogNotFoundError(
            f"{what}: {loc!r} does not exist (expected a directory of {' or '.join(formats)} files, "
            "one such file, a glob pattern or a URL)"
        )
    return TableFiles(loc, files, single_format(files, what, formats))


def single_format(files: list[str], what: str, formats: tuple[str, ...]) -> str:
    fmts = {format_of(f) for f in files}
    if None in fmts:
        bad = next(f for f in files if format_of(f) is None)
        raise QueryError(f"{what}: cannot tell the format of {bad!r} (expected {' or '.join(formats)})")
    if len(fmts) > 1:
        raise QueryError(f"{what}: mixes file formats {sorted(fmts)}; give one format per table")
    fmt = fmts.pop()
    if fmt not in formats:
        raise QueryError(f"{what}: {fmt} files are not supported here (expected {' or '.join(formats)})")
    return fmt


def locate_url(url: str, what: str, formats: tuple[str, ...], dir_prefix: str | None = None) -> TableFiles:
    import pyarrow.fs as pafs

    from xpengine.io.filesystems import arrow_filesystem

    try:
        fs, root = arrow_filesystem(url.rstrip("/"))
        info = fs.get_file_info(root)
    except Exception as exc:  # network, credentials, unknown scheme
        raise QueryError(f"{what}: cannot open {url!r}: {exc}") from exc
    if info.type == pafs.FileType.File:
        files = [root]
    elif info.type == pafs.FileType.Directory:
        infos = fs.get_file_info(pafs.FileSelector(root, recursive=False))
        files = sorted(
            i.path
            for i in infos
            if i.type == pafs.FileType.File and _in_dir(i.base_name, formats, dir_prefix)
        )
        if not files:
            raise CatalogNotFoundError(
                f"{what}: {url!r} holds no data files (expected {_expected(formats, dir_prefix)})"
            )
    else:
        raise CatalogNotFoundError(f"{what}: {url!r} does not exist")
    fmt = single_format(files, what, formats)
    if fmt != "parquet":
        raise QueryError(f"{what}: only Parquet can be read from a URL ({url!r})")
    return TableFiles(url, files, fmt, fs)
