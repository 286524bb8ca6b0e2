"""Atomic, resumable, locked per-partition catalogue writing with a manifest.

Layout of an output directory (local or object storage):

    OUTPUT/
      <partition>.parquet            one catalogue file per input partition (each source once)
      _manifest/<partition>.json     status of that partition ("done" or "failed"), row counts, inputs
                                     (URL, size, mtime, md5), model sha256, labels, schema, error
      _rejected/<partition>.parquet  input rows kept out of the catalogue (a second copy of a source:
                                     duplicated in the partition or already in another partition),
                                     same columns plus `reason`
      _JOB.json                      what the catalogue is made of (model sha256, labels, schema): a
                                     rerun that would mix another model or labels in is refused
      _LOCK.json                     held by the running job (holder, start, heartbeat)
      _tmp/                          files being written; never read as data, cleaned at start
      _SUMMARY.json                  the last run's summary

Every name a reader could mistake for data starts with `_`: pandas, pyarrow.dataset, DuckDB's
`read_parquet('OUTPUT/*.parquet')` and `xpengine query` skip them. A catalogue file is written under
`_tmp/` and renamed into place (on object storage the single upload is itself atomic); its manifest
record is written after it. A partition counts as done only when its manifest says "done" AND the
catalogue file exists, so a crash between the two redoes it.

The lock: on a local file system it is created with O_EXCL (two jobs cannot both take it); on object
storage the check-then-write leaves a window of one round trip (documented, not closed). A lock is
stale when its holder ran on this host and its process is gone, or when its heartbeat (refreshed while
the job runs) is older than `stale_after_s`; a stale lock is taken over with a warning.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from xpengine.io.atomic import file_written_atomically

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
LOCK_FILE = "_LOCK.json"
JOB_FILE = "_JOB.json"


class OutputLockedError(RuntimeError):
    """Another job holds the output's lock."""


class OutputNotWritableError(RuntimeError):
    """The output location cannot be written."""


def _utc(t: float | None = None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


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


class CatalogWriter:
    """Writes catalogue partitions and their manifest records into one output location."""

    def __init__(self, output: str) -> None:
        self.output = output.rstrip("/")
        from xpengine.io.filesystems import arrow_filesystem

        self.fs, self.root = arrow_filesystem(self.output)
        self._lock_token: str | None = None
        self._lock_info: dict[str, Any] = {}

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

    # -- the lock ------------------------------------------------------------------------------
    @property
    def lock_path(self) -> str:
        return f"{self.root}/{LOCK_FILE}"

    def read_lock(self) -> dict[str, Any] | None:
        try:
            with self.fs.open_input_stream(self.lock_path, compression=None) as f:
                return json.loads(f.read() or b"{}")
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}  # unreadable or half written: treated by its age

    def _lock_payload(self) -> bytes:
        now = time.time()
        self._lock_info.update(heartbeat_unix=now, heartbeat_utc=_utc(now))
        return json.dumps(self._lock_info, indent=1).encode()

    def acquire_lock(self, *, stale_after_s: float = 600.0) -> None:
        now = time.time()
        self._lock_token = uuid.uuid4().hex
        self._lock_info = {
            "token": self._lock_token,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "user": _user(),
            "started_unix": now,
            "started_utc": _utc(now),
        }
        for _attempt in range(2):
            if self._try_create_lock():
                self._start_heartbeat(max(1.0, min(60.0, stale_after_s / 4)))
                return
            holder = self.read_lock()
            if holder is None:
                continue  # released in between
            why = _stale_reason(holder, stale_after_s)
            if why is None:
                self._lock_token = None
                raise OutputLockedError(
                    f"output {self.output} is in use by another job (pid {holder.get('pid')} on "
                    f"{holder.get('host')}, user {holder.get('user')}, started {holder.get('started_utc')}, "
                    f"last heartbeat {holder.get('heartbeat_utc')}); wait for it to finish or choose another "
                    f"--output (a lock whose holder died goes stale after {stale_after_s:.0f} s: "
                    f"{self.display(self.lock_path)})"
                )
            log.warning("taking over a stale lock on %s: %s", self.output, why)
            self.fs.delete_file(self.lock_path)
        raise OutputLockedError(f"output {self.output}: could not take the lock {self.lock_path}")

    def _try_create_lock(self) -> bool:
        payload = self._lock_payload()
        if self._local:
            try:
                fd = os.open(self.lock_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as f:
                f.write(payload)
            return True
        import pyarrow.fs as pafs

        if self.fs.get_file_info(self.lock_path).type != pafs.FileType.NotFound:
            return False
        with self.fs.open_output_stream(self.lock_path, compression=None) as f:
            f.write(payload)
        return True

    def heartbeat(self) -> None:
        """Refresh the lock's heartbeat (a background thread calls this while the lock is held)."""
        if self._lock_token is None:
            return
        self._atomic_write(self.lock_path, lambda p: self._write_bytes(p, self._lock_payload()))

    def _start_heartbeat(self, interval_s: float) -> None:
        import threading

        stop = threading.Event()
        self._heartbeat_stop = stop

        def _beat() -> None:
            while not stop.wait(interval_s):
                try:
                    self.heartbeat()
                except Exception as exc:  # a missed beat is not fatal; the next one retries
                    log.warning("lock heartbeat on %s failed: %s", self.output, exc)

        threading.Thread(target=_beat, name="xpengine-lock-heartbeat", daemon=True).start()

    def release_lock(self) -> None:
        if self._lock_token is None:
            return
        stop = getattr(self, "_heartbeat_stop", None)
        if stop is not None:
            stop.set()
        holder = self.read_lock()
        if holder and holder.get("token") == self._lock_token:
            self.fs.delete_file(self.lock_path)
        self._lock_token = None

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

    def done_partitions(self) -> set[str]:
        """Partitions whose manifest says done and whose catalogue file exists."""
        return set(self.done_records())

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

    def _atomic_write(self, path: str, write_fn) -> None:
        if self._local:
            head = path.rpartition("/")[0]
            self.fs.create_dir(f"{self.root}/{TMP_DIR}", recursive=True)
            self.fs.create_dir(head, recursive=True)
            # written in _tmp (swept by prepare), renamed in: atomic on POSIX
            with file_written_atomically(path, tmp_dir=f"{self.root}/{TMP_DIR}") as tmp:
                write_fn(str(tmp))
        else:
            # object stores: an object becomes visible only when its upload completes
            write_fn(path)

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
    ) -> str:
        """Write one partition's catalogue (and its rejected rows, if any), then its 'done' manifest
        record. Returns the catalogue file's path."""
        import pyarrow.fs as pafs

        path = self.catalog_path(partition)
        rej = self.rejected_path(partition)
        if rejected is not None and rejected.num_rows:
            self.fs.create_dir(f"{self.root}/{REJECTED_DIR}", recursive=True)
            self._write_table(rej, rejected)
        elif self.fs.get_file_info(rej).type == pafs.FileType.File:
            self.fs.delete_file(rej)  # left by an earlier run of this partition
        self._write_table(path, table)
        self.write_record(record)
        return path

    def read_partition(self, partition: str) -> pa.Table:
        return pq.read_table(self.catalog_path(partition), filesystem=self.fs)

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


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (containers)
        return str(os.getuid())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stale_reason(holder: dict[str, Any], stale_after_s: float) -> str | None:
    """Why a lock is stale, or None when its holder may still be running."""
    if not holder:
        return "the lock file is empty or unreadable"
    if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
        if not _pid_alive(holder["pid"]):
            return f"its holder (pid {holder['pid']} on this host) is gone"
    beat = holder.get("heartbeat_unix")
    if isinstance(beat, (int, float)) and time.time() - beat > stale_after_s:
        return f"no heartbeat for {time.time() - beat:.0f} s (holder {holder.get('pid')} on {holder.get('host')})"
    return None
