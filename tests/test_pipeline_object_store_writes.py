"""Writes to object storage (session 31): a file is uploaded under `_tmp/`, the lock confirmed, then
copied into place, so a job taken over while it uploads (a partition's upload can take minutes) leaves
nothing in the other job's output. Run on fsspec's in-memory store and on an S3-compatible server
(moto, on loopback): the same code path as s3:// and gs:// outputs."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from xpengine.catalog.schema import catalog_schema
from xpengine.pipeline.writer import CatalogWriter, OutputLockedError, PartitionRecord


def _table() -> pa.Table:
    schema = catalog_schema(["teff"], metadata={"provenance": {"model": "m"}})
    return pa.Table.from_pydict({f.name: pa.array([1], type=f.type) for f in schema}, schema=schema)


def _files(w: CatalogWriter, sub: str = "") -> list[str]:
    import pyarrow.fs as pafs

    sel = pafs.FileSelector(f"{w.root}/{sub}".rstrip("/"), allow_not_found=True)
    return sorted(i.base_name for i in w.fs.get_file_info(sel) if i.type == pafs.FileType.File)


def _take_over(w: CatalogWriter) -> None:
    """Another job judged this one's lock stale and took it (its own token in the lock file)."""
    with w.fs.open_input_stream(w.lock_path, compression=None) as f:
        other = {**json.loads(f.read()), "token": "other"}
    with w.fs.open_output_stream(w.lock_path, compression=None) as f:
        f.write(json.dumps(other).encode())


def _check_store(output: str) -> None:
    w = CatalogWriter(output)
    w.prepare()
    w._heartbeat_stop.set()  # no heartbeat beside the test's own takeover
    rec = PartitionRecord("A", "done", 1, 1, inputs={}, job={})
    w.write_partition("A", _table(), rec)
    assert "A.parquet" in _files(w) and _files(w, "_tmp") == []  # copied into place, the upload removed
    with w.fs.open_input_file(w.catalog_path("A")) as f:
        assert pq.read_table(f).num_rows == 1

    def upload_then_taken_over(path: str) -> None:  # the takeover lands while the file uploads
        with w.fs.open_output_stream(path, compression=None) as f:
            f.write(b"PAR1 half of B")
        _take_over(w)

    with pytest.raises(OutputLockedError, match="lost its lock"):
        w._atomic_write(w.catalog_path("B"), upload_then_taken_over)
    assert "B.parquet" not in _files(w) and _files(w, "_tmp") == []  # nothing visible, nothing left
    with pytest.raises(OutputLockedError):  # and it writes nothing more
        w.write_summary({"status": "finished"})
    w.release_lock()  # leaves the other job's lock alone
    with w.fs.open_input_stream(w.lock_path, compression=None) as f:
        assert json.loads(f.read())["token"] == "other"


def test_an_object_store_job_taken_over_during_an_upload_leaves_nothing_visible():
    _check_store("memory://xpengine-s31/out")


def test_the_same_on_an_s3_compatible_server(s3_server):
    import boto3

    boto3.client("s3", endpoint_url=s3_server["AWS_ENDPOINT_URL"]).create_bucket(Bucket="xpengine-s31")
    _check_store("s3://xpengine-s31/out")
