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


def test_a_store_that_cannot_copy_gets_its_files_uploaded_in_place(monkeypatch, caplog):
    """fsspec's ftp, sftp, smb and dbfs stores have no copy (review of session 31): the first write
    falls back to an upload in place, with a warning, and the writer remembers it."""
    from fsspec.implementations.memory import MemoryFileSystem

    def no_copy(self, path1, path2, **kwargs):
        raise NotImplementedError

    monkeypatch.setattr(MemoryFileSystem, "cp_file", no_copy)
    w = CatalogWriter("memory://xpengine-s31-nocopy/out")
    w.prepare()
    w._heartbeat_stop.set()
    with caplog.at_level("WARNING", logger="xpengine.pipeline.writer"):
        for name in ("A", "B"):
            w.write_partition(name, _table(), PartitionRecord(name, "done", 1, 1, inputs={}, job={}))
    assert {"A.parquet", "B.parquet"} <= set(_files(w)) and _files(w, "_tmp") == []
    assert w._copies is False
    copied = [r for r in caplog.records if "not copied into place" in r.getMessage()]
    assert len(copied) == 1 and "the store has no copy" in copied[0].getMessage()  # once, then remembered
    _take_over(w)  # an upload in place is still checked first
    with pytest.raises(OutputLockedError):
        w.write_partition("C", _table(), PartitionRecord("C", "done", 1, 1, inputs={}, job={}))
    assert "C.parquet" not in _files(w)
    w.release_lock()


def test_a_copy_that_fails_because_the_output_was_taken_over_says_so(monkeypatch):
    """A job paused between its lock check and its copy, taken over meanwhile: the new holder's
    `prepare` swept `_tmp`, so the copy fails; that is the lost lock, not a disk to fix."""
    w = CatalogWriter("memory://xpengine-s31-swept/out")
    w.prepare()
    w._heartbeat_stop.set()
    confirm = w.confirm_lock
    calls = []

    def confirm_then_taken_over():
        confirm()
        calls.append(1)
        if len(calls) == 1:  # right after the check: taken over, _tmp swept by the new holder
            _take_over(w)
            for name in _files(w, "_tmp"):
                w.fs.delete_file(f"{w.root}/_tmp/{name}")

    monkeypatch.setattr(w, "confirm_lock", confirm_then_taken_over)
    with pytest.raises(OutputLockedError, match="lost its lock"):
        w.write_partition("A", _table(), PartitionRecord("A", "done", 1, 1, inputs={}, job={}))
    assert "A.parquet" not in _files(w)
    w.release_lock()


def test_a_copy_the_store_refuses_is_reported_not_uploaded_again(monkeypatch):
    """A copy that fails for another reason than the store's lack of copies (a bucket policy, a transient
    error twice) is an error naming the file: falling back to an upload in place would double every
    upload and reopen the takeover window (review of session 31)."""
    from fsspec.implementations.memory import MemoryFileSystem

    from xpengine.pipeline.writer import OutputNotWritableError

    tries = []

    def refused(self, path1, path2, **kwargs):
        tries.append(path2)
        raise PermissionError("copy denied by the bucket's policy")

    monkeypatch.setattr(MemoryFileSystem, "cp_file", refused)
    w = CatalogWriter("memory://xpengine-s31-refused/out")
    w.prepare()
    w._heartbeat_stop.set()
    with pytest.raises(
        OutputNotWritableError, match=r"writing memory://xpengine-s31-refused/out/A\.parquet failed"
    ):
        w.write_partition("A", _table(), PartitionRecord("A", "done", 1, 1, inputs={}, job={}))
    assert len(tries) == 2  # tried once more, then reported
    assert "A.parquet" not in _files(w) and _files(w, "_tmp") == [] and w._copies is None
    w.release_lock()
