"""One way to reach a file anywhere: local paths and URLs (file, memory, http(s), s3, gs, ...).

fsspec handles every scheme it has an implementation for. `s3://` works without `s3fs`: pyarrow's own
S3 client is wrapped as an fsspec filesystem, with credentials and region from the standard AWS
environment variables and an S3-compatible endpoint from `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL`
(never logged). The same resolution gives a pyarrow filesystem for Parquet writers.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["arrow_filesystem", "open_url", "url_to_fs"]


def _s3_arrow_fs(storage_options: dict[str, Any] | None) -> Any:
    import pyarrow.fs as pafs

    opts = dict(storage_options or {})
    kwargs: dict[str, Any] = {}
    endpoint = (
        opts.pop("endpoint_url", None)
        or os.environ.get("AWS_ENDPOINT_URL_S3")
        or os.environ.get("AWS_ENDPOINT_URL")
    )
    if endpoint:
        scheme, host = endpoint.split("://", 1) if "://" in endpoint else ("https", endpoint)
        kwargs.update(endpoint_override=host, scheme=scheme)
    region = opts.pop("region", None) or os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION")
    if region:
        kwargs["region"] = region
    for key in ("access_key", "secret_key", "session_token", "anonymous"):
        if key in opts:
            kwargs[key] = opts.pop(key)
    return pafs.S3FileSystem(**kwargs)


def _is_s3(url: str) -> bool:
    return url.startswith(("s3://", "s3a://"))


def _have_s3fs() -> bool:
    try:
        import s3fs  # noqa: F401
    except ImportError:
        return False
    return True


def url_to_fs(
    source: str | os.PathLike[str], storage_options: dict[str, Any] | None = None
) -> tuple[Any, str]:
    """(fsspec filesystem, path) for a local path or URL."""
    url = os.fspath(source)
    if _is_s3(url) and not _have_s3fs():
        from fsspec.implementations.arrow import ArrowFSWrapper

        return ArrowFSWrapper(_s3_arrow_fs(storage_options)), url.split("://", 1)[1]
    import fsspec.core

    return fsspec.core.url_to_fs(url, **(storage_options or {}))


def open_url(source: str | os.PathLike[str], mode: str = "rb", storage_options: dict[str, Any] | None = None):
    """Open a local path or URL (a context manager, like `open`)."""
    fs, path = url_to_fs(source, storage_options)
    f = fs.open(path, mode)
    if "::" in os.fspath(source):  # a chained URL (zip://MEMBER::ARCHIVE): the file system holds the
        f._xpengine_fs = fs  # archive open, and would close it when collected, before the member is read
    return f


def arrow_filesystem(url: str, storage_options: dict[str, Any] | None = None) -> tuple[Any, str]:
    """(pyarrow FileSystem, path) for a local path or URL, for pyarrow readers and writers."""
    import pyarrow.fs as pafs

    if "://" not in url:
        return pafs.LocalFileSystem(), os.path.abspath(url)
    if url.startswith("file://"):
        return pafs.LocalFileSystem(), url[len("file://") :]
    if _is_s3(url):
        return _s3_arrow_fs(storage_options), url.split("://", 1)[1]
    fs, path = url_to_fs(url, storage_options)
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path
