"""Atomic, resumable, locked per-partition catalogue writing with a manifest.

Layout of an output directory (local or object storage):

    OUTPUT/
      <partition>.parquet            one catalogue file per input partition (each source once)
      _manifest/<partition>.json     status of that partition ("done" or "failed"), row counts, inputs
                                     (URL, size, mtime, md5), model sha256, labels, schema, error
      _rejected/<partition>.parquet  input rows kept out of the catalogue (a second copy of a source:
                                     duplicated in the partition or already in another partition),
                                     same columns plus `reason`; the manifest record names the
                                     partition a source was given up to, and the row comes back if
                                     that partition no longer holds it (`xpengine.pipeline.duplicates`)
      _JOB.json                      what the catalogue is made of (model sha256, labels, schema): a
                                     rerun that would mix another model or labels in is refused
      _LOCK.json                     held by the running job (holder, start, heartbeat)
      _tmp/                          files being written; never read as data, cleaned at start
      _SUMMARY.json                  the last run's summary

Every name a reader could mistake for data starts with `_`: pandas, pyarrow.dataset, DuckDB's
`read_parquet('OUTPUT/*.parquet')` and `xpengine query` skip them. A catalogue file is written under
`_tmp/` and renamed into place (on object storage uploaded there and copied into place, each upload and
copy atomic: `CatalogWriter._upload_and_copy`); its manifest record is written after it. A partition
counts as done only when its manifest says "done" AND the catalogue file exists, so a crash between the
two redoes it.

The lock (`xpengine.pipeline._lock`): on a local file system it is created with O_EXCL and a stale one
is taken over by an atomic rename checked against the file judged stale, so two jobs never both hold
it; on object storage the check-then-write leaves a window of one round trip (documented, not closed).
A lock is stale when its holder ran on this host and its process is gone, when its heartbeat (refreshed
while the job runs) is older than `stale_after_s`, or when it is empty or unreadable and unchanged for
`stale_after_s`; a stale lock is taken over with a warning. A job whose lock another job took over
stops writing (OutputLockedError).
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from xpengine.io.atomic import _fsync, file_written_atomically
from xpengine.pipeline._lock import LOCK_FILE as LOCK_FILE
from xpengine.pipeline._lock import LockHolder, OutputLockedError, _utc

__all__ = [
    "CatalogWriter",
    "OutputLockedError",
    "OutputNotWritableError",
    "PartitionRecord",
]

log = logging.getLogger(__name__)

TMP_DIR = "_tmp"
REJECTED_DIR = "_rejected"
MANIFEST_DIR = "_manifest"
JOB_FILE = "_JOB.json"
CATALOGUE_FILE_KEY = b"xpengine.catalogue_file"
"""The Parquet schema metadata key only `CatalogWriter.write_partition` writes: JSON {"partition": its
name, "job": `job_id` of its record's job}. How a catalogue file without a manifest record (its job
killed between the two) is told from one the job did not write: `xpengine.provenance` is no such mark,
as `xpengine query` results (which leave this key out), training sets and `xpengine features` output
carry it too. A file of an earlier version without a record has no mark either: it is foreign
(`plan.check_output` refuses it, naming it)."""


def job_id(job: dict[str, Any]) -> str:
    """A short id of a manifest record's `job` (its identity, and the id of an --overwrite run)."""
    import hashlib

    return hashlib.sha256(json.dumps(job, sort_keys=True, default=str).encode()).hexdigest()[:16]


_COPY_LIMIT = 5 * 2**30  # [bytes] the largest object S3 copies in one request (CopyObject)


def _delete_quietly(fs, path: str) -> None:
    """Delete a temporary object; one that is gone, or cannot be deleted now, is left to `_clean_tmp`."""
    try:
        fs.delete_file(path)
    except OSError:
        pass


class OutputNotWritableError(RuntimeError):
    """The output location cannot be written."""


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
    rejected_rows: int = 0
    hpx8_range: list[int] | None = None  # the partition's HEALPix level-8 range, from its file name
    problems: dict[str, Any] = field(default_factory=dict)
    job: dict[str, Any] = field(default_factory=dict)  # model sha256, labels, schema fingerprint


class CatalogWriter(LockHolder):
    """Writes catalogue partitions and their manifest records into one output location."""

    def __init__(self, output: str) -> None:
        self.output = output.rstrip("/")
        from xpengine.io.filesystems import arrow_filesystem

        self.fs, self.root = arrow_filesystem(self.output)
        self._lock_token: str | None = None
        self._lock_info: dict[str, Any] = {}
        self.lock_lost: str | None = None  # why this job lost its lock (a heartbeat found it taken)
        self._copies: bool | None = None  # whether the (object) store copies files; None: not yet tried

    @property
    def _local(self) -> bool:
        import pyarrow.fs as pafs

        return isinstance(self.fs, pafs.LocalFileSystem)

    # -- paths -------------------------------------------------------------------------------
    def catalog_path(self, partition: str) -> str:
        return f"{self.root}/{partition}.parquet"

    def rejected_path(self, partition: str) -> str:
        return f"{self.root}/{REJECTED_DIR}/{partition}.parquet"

    def manifest_path(self, partition: str) -> str:
        return f"{self.root}/{MANIFEST_DIR}/{partition}.json"

    def display(self, path: str) -> str:
        """A path as the user gave it (URL scheme kept), for logs."""
        if "://" in self.output:
            return self.output + path[len(self.root) :]
        return path

    # -- setting up ----------------------------------------------------------------------------
    def prepare(self, *, stale_after_s: float = 600.0) -> None:
        """Create the layout, prove the location writable, take the lock and clean stale temporary
        files. Raises OutputNotWritableError / OutputLockedError before any work is done."""
        try:
            for d in (self.root, f"{self.root}/{MANIFEST_DIR}", f"{self.root}/{TMP_DIR}"):
                self.fs.create_dir(d, recursive=True)
            # the catalogue files and the lock live in the root, temporaries in _tmp: probe both
            for d in (self.root, f"{self.root}/{TMP_DIR}"):
                probe = f"{d}/_probe-{uuid.uuid4().hex[:8]}"
                with self.fs.open_output_stream(probe, compression=None) as f:
                    f.write(b"xpengine write probe\n")
                self.fs.delete_file(probe)
        except OSError as exc:
            raise OutputNotWritableError(
                f"output {self.output} is not writable ({type(exc).__name__}: {exc}); choose another --output"
            ) from exc
        self.acquire_lock(stale_after_s=stale_after_s)
        self._clean_tmp()

    def _clean_tmp(self) -> None:
        import pyarrow.fs as pafs

        infos = self.fs.get_file_info(pafs.FileSelector(f"{self.root}/{TMP_DIR}", allow_not_found=True))
        stale = [i.path for i in infos if i.type == pafs.FileType.File]
        for p in stale:
            self.fs.delete_file(p)
        if stale:
            log.info("removed %d stale temporary file(s) from %s/%s", len(stale), self.output, TMP_DIR)

    # -- state -------------------------------------------------------------------------------
    def read_manifest(self) -> dict[str, dict[str, Any]]:
        """All manifest records, by partition name."""
        import pyarrow.fs as pafs

        records = {}
        infos = self.fs.get_file_info(pafs.FileSelector(f"{self.root}/{MANIFEST_DIR}", allow_not_found=True))
        for info in infos:
            if info.type != pafs.FileType.File or not info.path.endswith(".json"):
                continue
            with self.fs.open_input_stream(info.path, compression=None) as f:
                rec = json.loads(f.read())
            records[rec["partition"]] = rec
        return records

    def done_records(self) -> dict[str, dict[str, Any]]:
        """Manifest records of the partitions that are done: status done and catalogue file present."""
        import pyarrow.fs as pafs

        done = {}
        for name, rec in self.read_manifest().items():
            if rec.get("status") == "done":
                if self.fs.get_file_info(self.catalog_path(name)).type == pafs.FileType.File:
                    done[name] = rec
        return done

    def drop_damaged(self, done: dict[str, dict[str, Any]], planned: set[str]) -> dict[str, dict[str, Any]]:
        """`done` without the planned partitions whose files do not hold what their records say: a
        catalogue (or `_rejected/`) file whose footer cannot be read or whose row count is not its
        record's (cut short or rewritten outside the job; until session 29 resume kept it). Their files
        and records are removed, with a warning naming the file, so that the job redoes them."""
        from xpengine.pipeline.duplicates import remove_partition_files  # (it imports this module)

        kept = dict(done)
        rejected = self._rejected_names() if set(done) & planned else set()
        for name in sorted(set(done) & planned):
            rec = done[name]
            checks = [(self.catalog_path(name), rec.get("output_rows"))]
            if rec.get("rejected_rows") or name in rejected:  # (one its record does not count: a move
                # of rows killed between its writes, session 29's review F6)
                checks.append((self.rejected_path(name), rec.get("rejected_rows") or 0))
            why = None
            for path, want in checks:
                try:
                    with self.fs.open_input_file(path) as f:
                        rows = pq.ParquetFile(f).metadata.num_rows
                except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
                    why = f"{self.display(path)} cannot be read ({type(exc).__name__}: {exc})"
                    break
                if want is not None and rows != int(want):
                    why = f"{self.display(path)} holds {rows} rows, its record {int(want)}"
                    break
            if why is None:
                continue
            log.warning("partition %s is redone: %s", name, why)
            remove_partition_files(self, name, manifest=True)
            del kept[name]
        return kept

    def _rejected_names(self) -> set[str]:
        """The partitions with a file in `_rejected/` (one listing)."""
        import pyarrow.fs as pafs

        sel = pafs.FileSelector(f"{self.root}/{REJECTED_DIR}", allow_not_found=True)
        return {
            i.base_name[: -len(".parquet")]
            for i in self.fs.get_file_info(sel)
            if i.type == pafs.FileType.File and i.base_name.endswith(".parquet")
        }

    def done_partitions(self) -> set[str]:
        """Partitions whose manifest says done and whose catalogue file exists."""
        return set(self.done_records())

    # -- what the output folder holds ------------------------------------------------------------
    def is_catalogue(self) -> bool:
        """Whether the output is an xpengine catalogue already: it has a `_JOB.json` or a `_manifest/`,
        or a catalogue file the job marked (`CATALOGUE_FILE_KEY`)."""
        import pyarrow.fs as pafs

        infos = self.fs.get_file_info([f"{self.root}/{JOB_FILE}", f"{self.root}/{MANIFEST_DIR}"])
        return any(i.type != pafs.FileType.NotFound for i in infos) or bool(self.own_partitions({}))

    def _visible_entries(self) -> list[Any]:
        """The output's top-level entries that readers see: not `_` or `.` bookkeeping (see the module
        docstring: readers skip those), a folder not yet made: none."""
        import pyarrow.fs as pafs

        try:
            infos = self.fs.get_file_info(pafs.FileSelector(self.root, allow_not_found=True))
        except NotADirectoryError:
            return []  # a file where the folder should be: `prepare` says so
        return [i for i in infos if not i.base_name.startswith(("_", "."))]

    def _marked_as(self, path: str) -> str | None:
        """The partition name a Parquet file's `CATALOGUE_FILE_KEY` gives (None: no mark, not Parquet)."""
        try:
            meta = pq.read_schema(path, filesystem=self.fs).metadata or {}
            mark = json.loads(meta[CATALOGUE_FILE_KEY])
        except (OSError, pa.ArrowException, KeyError, ValueError):  # no mark, or not Parquet at all
            return None
        return mark.get("partition") if isinstance(mark, dict) else None

    @staticmethod
    def marked(table: pa.Table, partition: str, job: dict[str, Any]) -> pa.Table:
        """`table` with the mark of the job's catalogue file `partition` (`CATALOGUE_FILE_KEY`)."""
        mark = json.dumps({"partition": partition, "job": job_id(job)}).encode()
        return table.replace_schema_metadata({**(table.schema.metadata or {}), CATALOGUE_FILE_KEY: mark})

    def own_partitions(self, records: dict[str, dict[str, Any]] | None = None) -> set[str]:
        """Names of the catalogue files in the output that this catalogue's jobs wrote: `<name>.parquet`
        with a manifest record of any status (`records`: `read_manifest()`, read here when None), or
        without one but with the job's mark naming that partition (`CATALOGUE_FILE_KEY`: written by a
        job killed before its record). Anything else (a query result, a training set, a file of an
        earlier version without its record) is another program's or the user's, never the job's to
        remove (`identity._remove_for_overwrite`)."""
        import pyarrow.fs as pafs

        records = self.read_manifest() if records is None else records
        own = set()
        for info in self._visible_entries():
            if info.type != pafs.FileType.File or not info.base_name.endswith(".parquet"):
                continue
            name = info.base_name[: -len(".parquet")]
            if name in records or self._marked_as(info.path) == name:
                own.add(name)
        return own

    def foreign_entries(self) -> list[str]:
        """The output's visible top-level files and folders (folders end in `/`) that no job of this
        catalogue wrote (`own_partitions`), sorted."""
        import pyarrow.fs as pafs

        own = {f"{n}.parquet" for n in self.own_partitions()}
        return sorted(
            i.base_name + ("/" if i.type == pafs.FileType.Directory else "")
            for i in self._visible_entries()
            if i.base_name not in own
        )

    def read_job(self) -> dict[str, Any] | None:
        try:
            with self.fs.open_input_stream(f"{self.root}/{JOB_FILE}", compression=None) as f:
                return json.loads(f.read())
        except FileNotFoundError:
            return None

    def write_job(self, job: dict[str, Any]) -> None:
        payload = json.dumps(job, indent=1).encode()
        self._atomic_write(f"{self.root}/{JOB_FILE}", lambda p: self._write_bytes(p, payload))

    # -- writing -----------------------------------------------------------------------------
    def _write_bytes(self, path: str, payload: bytes) -> None:
        with self.fs.open_output_stream(path, compression=None) as f:
            f.write(payload)

    def _atomic_write(self, path: str, write_fn, *, check: bool = True) -> None:
        if check and self.lock_lost:  # another job holds the output now: write nothing more
            raise OutputLockedError(self.lock_lost)
        try:
            if self._local:
                head = path.rpartition("/")[0]
                self.fs.create_dir(f"{self.root}/{TMP_DIR}", recursive=True)
                self.fs.create_dir(head, recursive=True)
                # written in _tmp (swept by prepare), renamed in: atomic on POSIX
                with file_written_atomically(path, tmp_dir=f"{self.root}/{TMP_DIR}") as tmp:
                    write_fn(str(tmp))
                    if check:  # on the disk, then still this job's output, just before the rename
                        _fsync(tmp)
                        self.confirm_lock()
            elif not check:  # the lock file itself: an object is visible only once its upload completes
                write_fn(path)
            elif self._copies is False:  # a store that cannot copy (ftp, sftp): checked, then uploaded
                self.confirm_lock()
                write_fn(path)
            else:
                self._upload_and_copy(path, write_fn)
        except OSError as exc:  # a full disk, a quota: one line naming the file, not a traceback
            raise OutputNotWritableError(
                f"writing {self.display(path)} failed ({exc}); the partitions written before it are kept: "
                "fix the cause (space, quota, permissions) or choose another --output, and rerun the same "
                "command to resume"
            ) from exc

    def _upload_and_copy(self, path: str, write_fn) -> None:
        """Object stores: uploaded under _tmp, the lock confirmed, then copied into place by the store, so
        a takeover can slip in during the copy, no longer during the whole upload (session 31: a
        partition's upload can take minutes). A copy that fails reads the lock again (a job that took it
        over swept _tmp: OutputLockedError, not a disk problem), then is tried once more; the file is
        uploaded in place instead, after a warning, only where the store cannot copy it: a store without
        copies (fsspec's ftp, sftp: NotImplementedError, remembered) or an object above S3's 5 GiB copy
        limit. Any other failure is reported (OutputNotWritableError naming the file), never turned into
        a second upload of every file. A killed copy's leftover is swept by the next prepare."""
        tmp = f"{self.root}/{TMP_DIR}/{path.rpartition('/')[2]}.{uuid.uuid4().hex[:8]}"
        try:
            write_fn(tmp)
            self.confirm_lock()
            why = self._copy_into_place(tmp, path)
            if why is None:
                return
            self.confirm_lock()
            log.warning("%s: not copied into place (%s); uploaded in place", self.display(path), why)
            write_fn(path)
        finally:
            _delete_quietly(self.fs, tmp)

    def _copy_into_place(self, tmp: str, path: str) -> str | None:
        """None once the store copied `tmp` to `path`; else why it cannot (`_upload_and_copy`). An OSError
        of a copy within the limit is tried once more, then raised."""
        for attempt in (1, 2):
            try:
                self.fs.copy_file(tmp, path)
                self._copies = True
                return None
            except NotImplementedError:
                self._copies = False
                return "the store has no copy"
            except OSError as exc:
                self.confirm_lock()  # a job that took the output over swept _tmp: the lost lock
                if (self.fs.get_file_info(tmp).size or 0) > _COPY_LIMIT:
                    return f"over the store's copy limit: {type(exc).__name__}: {exc}"
                if attempt == 2:
                    raise
        return None

    def _write_table(self, path: str, table: pa.Table) -> None:
        def _write(p: str) -> None:
            pq.write_table(table, p, filesystem=self.fs, compression="zstd", row_group_size=128 * 1024)

        self._atomic_write(path, _write)

    def write_partition(
        self,
        partition: str,
        table: pa.Table,
        record: PartitionRecord,
        rejected: pa.Table | None = None,
        *,
        catalogue_first: bool = False,
    ) -> str:
        """Write one partition's catalogue (and its rejected rows, if any), then its 'done' manifest
        record. Returns the catalogue file's path.

        A row moves between the two files by adding it first and removing it second, so a kill in
        between leaves it in both (found again by the rerun), never in neither: rows moved out of the
        catalogue (the default) go into `_rejected/` before the catalogue file is rewritten; rows
        brought back (`catalogue_first`) into the catalogue file before `_rejected/` is rewritten."""
        import pyarrow.fs as pafs

        path = self.catalog_path(partition)
        rej = self.rejected_path(partition)
        table = self.marked(table, partition, record.job)

        def write_rejected() -> None:
            if rejected is not None and rejected.num_rows:
                self.fs.create_dir(f"{self.root}/{REJECTED_DIR}", recursive=True)
                self._write_table(rej, rejected)
            elif self.fs.get_file_info(rej).type == pafs.FileType.File:
                self.confirm_lock()  # a job taken over removes nothing of the other's (review of session 30)
                self.fs.delete_file(rej)  # left by an earlier run of this partition

        if not catalogue_first:
            write_rejected()
        self._write_table(path, table)
        if catalogue_first:
            write_rejected()
        self.write_record(record)
        return path

    def read_partition(self, partition: str, columns: list[str] | None = None) -> pa.Table:
        return pq.read_table(self.catalog_path(partition), columns=columns, filesystem=self.fs)

    def read_source_ids(self, partition: str):
        """The source_ids in a partition's catalogue file (that column only), as an int64 numpy array."""
        import numpy as np

        t = pq.read_table(self.catalog_path(partition), columns=["source_id"], filesystem=self.fs)
        return t.column("source_id").to_numpy().astype(np.int64, copy=False)

    def read_rejected(self, partition: str) -> pa.Table | None:
        import pyarrow.fs as pafs

        if self.fs.get_file_info(self.rejected_path(partition)).type != pafs.FileType.File:
            return None
        return pq.read_table(self.rejected_path(partition), filesystem=self.fs)

    def write_record(self, record: PartitionRecord) -> None:
        record.finished_utc = _utc()
        payload = json.dumps(record.__dict__, indent=1).encode()
        self._atomic_write(self.manifest_path(record.partition), lambda p: self._write_bytes(p, payload))

    def write_summary(self, summary: dict[str, Any]) -> None:
        payload = json.dumps(summary, indent=1).encode()
        self._atomic_write(f"{self.root}/_SUMMARY.json", lambda p: self._write_bytes(p, payload))
