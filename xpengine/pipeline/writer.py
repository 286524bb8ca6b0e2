"""Atomic, resumable per-partition catalogue writing with a manifest.

Layout of an output directory (local or object storage):

    OUTPUT/
      <partition>.parquet            one catalogue file per input partition
      _manifest/<partition>.json     status of that partition ("done" or "failed"), row counts, inputs, error
      _SUMMARY.json                  the last run's summary

A partition's catalogue is written under a temporary name and renamed into place (on object storage the
single upload is itself atomic); its manifest is written after it. A partition counts as done only when
its manifest says "done" AND the catalogue file exists, so a crash between the two redoes it.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["CatalogWriter", "filesystem_for"]

log = logging.getLogger(__name__)


def filesystem_for(url: str) -> tuple[Any, str]:
    """(pyarrow FileSystem, path) for a local path or URL (see `xpengine.io.filesystems`)."""
    from xpengine.io.filesystems import arrow_filesystem

    return arrow_filesystem(url)


@dataclass
class PartitionRecord:
    """What the manifest says about one partition."""

    partition: str
    status: str  # "done" | "failed"
    input_rows: int
    output_rows: int
    inputs: dict[str, Any]
    error: str | None = None
    wall_time_s: float | None = None
    finished_utc: str | None = None


class CatalogWriter:
    """Writes catalogue partitions and their manifest records into one output location."""

    def __init__(self, output: str) -> None:
        self.output = output.rstrip("/")
        self.fs, self.root = filesystem_for(self.output)
        self.fs.create_dir(self.root, recursive=True)
        self.fs.create_dir(f"{self.root}/_manifest", recursive=True)

    # -- paths -------------------------------------------------------------------------------
    def catalog_path(self, partition: str) -> str:
        return f"{self.root}/{partition}.parquet"

    def manifest_path(self, partition: str) -> str:
        return f"{self.root}/_manifest/{partition}.json"

    def display(self, path: str) -> str:
        """A path as the user gave it (URL scheme kept), for logs."""
        if "://" in self.output:
            return self.output + path[len(self.root) :]
        return path

    # -- state -------------------------------------------------------------------------------
    def read_manifest(self) -> dict[str, dict[str, Any]]:
        """All manifest records, by partition name."""
        import pyarrow.fs as pafs

        records = {}
        infos = self.fs.get_file_info(pafs.FileSelector(f"{self.root}/_manifest", allow_not_found=True))
        for info in infos:
            if info.type != pafs.FileType.File or not info.path.endswith(".json"):
                continue
            with self.fs.open_input_stream(info.path, compression=None) as f:
                rec = json.loads(f.read())
            records[rec["partition"]] = rec
        return records

    def done_partitions(self) -> set[str]:
        """Partitions whose manifest says done and whose catalogue file exists."""
        import pyarrow.fs as pafs

        done = set()
        for name, rec in self.read_manifest().items():
            if rec.get("status") == "done":
                if self.fs.get_file_info(self.catalog_path(name)).type == pafs.FileType.File:
                    done.add(name)
        return done

    # -- writing -----------------------------------------------------------------------------
    def _atomic_write(self, path: str, write_fn) -> None:
        import pyarrow.fs as pafs

        if isinstance(self.fs, pafs.LocalFileSystem):
            head, _, tail = path.rpartition("/")
            tmp = f"{head}/.{tail}.tmp-{uuid.uuid4().hex[:8]}"
            try:
                write_fn(tmp)
                self.fs.move(tmp, path)  # rename: atomic on a POSIX file system
            finally:
                if self.fs.get_file_info(tmp).type != pafs.FileType.NotFound:
                    self.fs.delete_file(tmp)
        else:
            # object stores: an object becomes visible only when its upload completes
            write_fn(path)

    def write_partition(self, partition: str, table: pa.Table, record: PartitionRecord) -> str:
        """Write one partition's catalogue, then its 'done' manifest record. Returns the file path."""
        path = self.catalog_path(partition)

        def _write(p: str) -> None:
            pq.write_table(table, p, filesystem=self.fs, compression="zstd", row_group_size=128 * 1024)

        self._atomic_write(path, _write)
        self.write_record(record)
        return path

    def write_record(self, record: PartitionRecord) -> None:
        record.finished_utc = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        payload = json.dumps(record.__dict__, indent=1).encode()

        def _write(p: str) -> None:
            with self.fs.open_output_stream(p, compression=None) as f:
                f.write(payload)

        self._atomic_write(self.manifest_path(record.partition), _write)

    def write_summary(self, summary: dict[str, Any]) -> None:
        payload = json.dumps(summary, indent=1).encode()
        with self.fs.open_output_stream(f"{self.root}/_SUMMARY.json", compression=None) as f:
            f.write(payload)
