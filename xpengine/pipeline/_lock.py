"""The output's lock, `OUTPUT/_LOCK.json` (`LockHolder`, mixed into `xpengine.pipeline.writer.CatalogWriter`).

The lock file names its holder (token, host, pid, user, start) and a heartbeat its holder refreshes while
the job runs. A lock is stale when its holder ran on this host and its process is gone, when its heartbeat
is older than `stale_after_s`, or when the file is empty or unreadable (a job between creating it and
writing it, or one that died there) and has not changed for `stale_after_s`; a stale lock is taken over
with a warning.

On a local file system the lock is created with O_EXCL, so two jobs cannot both create it; a stale one
is taken over by renaming it aside (atomic) and checking that the file moved is still the one judged
stale (same bytes, inode and modification time), else it is put back (a hard link, which never replaces
a lock created meanwhile) and judged again: of two jobs taking over one stale lock, one wins. The
heartbeat rewrites the lock in place through the file it has checked to hold its own token; a job that
finds its lock taken (or gone) marks it lost and its writer refuses to write anything more.

On object storage (no atomic create or rename) creation is check, write, read back, and a takeover
re-reads the stale lock just before removing it: the window is one round trip (documented, not closed).
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

__all__ = ["LOCK_FILE", "LockHolder", "OutputLockedError"]

LOCK_FILE = "_LOCK.json"

log = logging.getLogger("xpengine.pipeline.writer")


class OutputLockedError(RuntimeError):
    """Another job holds the output's lock (or took it over from this job)."""


def _utc(t: float | None = None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


class LockHolder:
    """The lock methods of `CatalogWriter`: it provides `fs`, `root`, `output`, `_local`, `display`,
    `_atomic_write` and `_write_bytes`, and sets `_lock_token`, `_lock_info` and `lock_lost`."""

    @property
    def lock_path(self) -> str:
        return f"{self.root}/{LOCK_FILE}"

    def read_lock(self) -> dict[str, Any] | None:
        """The lock's holder ({} for an empty or unreadable lock file), or None when there is no lock."""
        seen = self._read_lock_file()
        return None if seen is None else seen.holder

    def _read_lock_file(self, path: str | None = None) -> _LockSeen | None:
        """One reading of the lock file (bytes and file identity), or None when there is none."""
        path = path or self.lock_path
        if self._local:
            try:
                with open(path, "rb") as f:
                    st = os.fstat(f.fileno())
                    return _LockSeen(f.read(), st.st_ino, st.st_mtime_ns)
            except FileNotFoundError:
                return None
            except OSError:  # unreadable: known by its age
                try:
                    st = os.stat(path)
                except FileNotFoundError:
                    return None
                except OSError:
                    return _LockSeen(b"", None, None)
                return _LockSeen(b"", st.st_ino, st.st_mtime_ns)
        import pyarrow.fs as pafs

        try:
            info = self.fs.get_file_info(path)
            if info.type == pafs.FileType.NotFound:
                return None
            mtime_ns = info.mtime_ns if info.mtime is not None else None
        except OSError:
            return _LockSeen(b"", None, None)
        try:
            with self.fs.open_input_stream(path, compression=None) as f:
                return _LockSeen(f.read(), None, mtime_ns)
        except FileNotFoundError:
            return None
        except OSError:
            return _LockSeen(b"", None, mtime_ns)

    def _lock_payload(self) -> bytes:
        now = time.time()
        self._lock_info.update(heartbeat_unix=now, heartbeat_utc=_utc(now))
        return json.dumps(self._lock_info, indent=1).encode()

    def acquire_lock(self, *, stale_after_s: float = 600.0) -> None:
        """Take the lock (OutputLockedError when another job holds it). A stale lock is taken over only
        if it is still the very file judged stale (`_take_over`), so two jobs taking over one stale lock
        together, or a job meeting another's lock between its creation and its payload, never both win."""
        now = time.time()
        self._lock_token = uuid.uuid4().hex
        self.lock_lost = None
        self._beat_mutex = threading.Lock()
        self._lock_info = {
            "token": self._lock_token,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "user": _user(),
            "started_unix": now,
            "started_utc": _utc(now),
        }
        for _attempt in range(4):
            created = self._try_create_lock()
            seen = None if created else self._read_lock_file()
            if created or (seen is not None and seen.holder.get("token") == self._lock_token):
                self._start_heartbeat(max(1.0, min(60.0, stale_after_s / 4)))
                return
            if seen is None:
                continue  # released in between
            why = _stale_reason(seen.holder, stale_after_s, seen.mtime_unix)
            if why is None:
                self._lock_token = None
                raise OutputLockedError(self._locked_message(seen, stale_after_s))
            self._take_over(seen, why)
        self._lock_token = None
        raise OutputLockedError(
            f"output {self.output}: could not take the lock {self.display(self.lock_path)}"
        )

    def _locked_message(self, seen: _LockSeen, stale_after_s: float) -> str:
        holder = seen.holder
        if holder:
            who = (
                f"pid {holder.get('pid')} on {holder.get('host')}, user {holder.get('user')}, started "
                f"{holder.get('started_utc')}, last heartbeat {holder.get('heartbeat_utc')}"
            )
        else:
            age = "" if seen.mtime_unix is None else f", written {time.time() - seen.mtime_unix:.0f} s ago"
            who = f"its lock file is being written or unreadable{age}"
        return (
            f"output {self.output} is in use by another job ({who}); wait for it to finish or choose another "
            f"--output (a lock whose holder died goes stale after {stale_after_s:.0f} s: "
            f"{self.display(self.lock_path)})"
        )

    def _take_over(self, seen: _LockSeen, why: str) -> None:
        """Remove the stale lock `seen`, unless the lock file is no longer that one (another job took it
        over, or its holder wrote a heartbeat, since it was read): then the next attempt judges it anew."""
        if not self._local:
            # object storage: no atomic rename; the lock is re-read just before its removal
            again = self._read_lock_file()
            if again is not None and again.data == seen.data:
                log.warning("taking over a stale lock on %s: %s", self.output, why)
                self.fs.delete_file(self.lock_path)
            return
        if self._remove_lock_if(lambda moved: moved == seen):
            log.warning("taking over a stale lock on %s: %s", self.output, why)

    def _remove_lock_if(self, check) -> bool:
        """Local file system: rename the lock file aside (atomic), remove it if `check(what was moved)`,
        else put it back (a hard link: never over a lock created meanwhile). True when removed."""
        aside = f"{self.lock_path}.{uuid.uuid4().hex[:12]}.aside"
        try:
            os.rename(self.lock_path, aside)
        except FileNotFoundError:
            return False  # someone else moved it first
        try:
            moved = self._read_lock_file(aside)
            if moved is not None and check(moved):
                return True
            try:
                os.link(aside, self.lock_path)
            except FileExistsError:
                # a third job created a lock in the instant the file was aside: the moved lock's holder
                # finds its lock gone at its next heartbeat and stops
                log.error("the lock %s changed while being checked; its holder will stop", self.lock_path)
            except OSError:  # no hard links on this file system
                if not os.path.exists(self.lock_path):
                    os.replace(aside, self.lock_path)
            return False
        finally:
            if os.path.exists(aside):
                os.remove(aside)

    def _try_create_lock(self) -> bool:
        payload = self._lock_payload()
        if self._local:
            try:
                fd = os.open(self.lock_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                return False
            # until the payload is in, another job reads an empty file written just now: not stale
            with os.fdopen(fd, "wb") as f:
                f.write(payload)
            return True
        import pyarrow.fs as pafs

        if self.fs.get_file_info(self.lock_path).type != pafs.FileType.NotFound:
            return False
        with self.fs.open_output_stream(self.lock_path, compression=None) as f:
            f.write(payload)
        # read back: of two jobs writing in the same round trip, the one overwritten steps back
        seen = self._read_lock_file()
        return seen is not None and seen.holder.get("token") == self._lock_token

    def heartbeat(self) -> None:
        """Refresh the lock's heartbeat (a background thread calls this while the lock is held). Raises
        OutputLockedError, and marks this writer's lock lost (`lock_lost`: later writes raise too), when
        the lock file is no longer this job's."""
        if self._lock_token is None:
            return
        with self._beat_mutex:  # never while release_lock moves the file aside
            if self._lock_token is None:
                return
            if self.lock_lost:
                raise OutputLockedError(self.lock_lost)
            if not self._local:
                seen = self._read_lock_file()
                token = None if seen is None else seen.holder.get("token")
                if token != self._lock_token:
                    raise self._lost(
                        "its lock file is gone" if seen is None else f"it now holds token {token}"
                    )
                payload = self._lock_payload()
                self._atomic_write(self.lock_path, lambda p: self._write_bytes(p, payload), check=False)
                return
            # rewritten in place through the file checked: a lock taken over meanwhile (renamed aside)
            # is never overwritten
            f = None
            for attempt in range(2):
                try:
                    f = open(self.lock_path, "r+b")
                    break
                except FileNotFoundError:
                    if attempt:  # gone twice: not a takeover's check putting it back
                        raise self._lost("its lock file is gone") from None
                    time.sleep(0.2)  # another job may be checking it aside (`_remove_lock_if`)
            with f:
                token = _LockSeen(f.read(), None, None).holder.get("token")
                if token != self._lock_token:
                    raise self._lost(f"it now holds token {token}")
                f.seek(0)
                f.truncate()
                f.write(self._lock_payload())

    def confirm_lock(self) -> None:
        """Raise OutputLockedError (and mark the lock lost) unless the lock file still holds this job's
        token; nothing to check for a writer without a lock. `_atomic_write` calls it just before a write
        becomes visible, and the writer and `duplicates.remove_partition_files` before a removal: a job
        paused (SIGSTOP, a frozen machine) past `stale_after_s` and taken over meanwhile wakes with its
        heartbeat thread not yet run, and wrote one more file into the other job's output, or removed
        one of its files (helper-84's D4, session 29; helper-86, session 30)."""
        if self._lock_token is None:
            return
        with self._beat_mutex:  # never while this job's own heartbeat rewrites the file in place
            if self.lock_lost:
                raise OutputLockedError(self.lock_lost)
            seen = self._read_lock_file()
            if seen is None:  # another job may be checking it aside for a moment (`_remove_lock_if`)
                time.sleep(0.2)
                seen = self._read_lock_file()
            token = None if seen is None else seen.holder.get("token")
            if token != self._lock_token:
                raise self._lost("its lock file is gone" if seen is None else f"it now holds token {token}")

    def _lost(self, why: str) -> OutputLockedError:
        """Mark this job's lock lost (its writer writes nothing more) and return the error saying so."""
        self.lock_lost = (
            f"output {self.output}: this job lost its lock {self.display(self.lock_path)} ({why}): "
            "another job took it over (its heartbeat had been silent too long); stopped writing"
        )
        return OutputLockedError(self.lock_lost)

    def _start_heartbeat(self, interval_s: float) -> None:
        stop = threading.Event()
        self._heartbeat_stop = stop

        def _beat() -> None:
            while not stop.wait(interval_s):
                try:
                    self.heartbeat()
                except OutputLockedError as exc:  # lost: the job's next write raises
                    log.error("%s", exc)
                    return
                except Exception as exc:  # a missed beat is not fatal; the next one retries
                    log.warning("lock heartbeat on %s failed: %s", self.output, exc)

        threading.Thread(target=_beat, name="xpengine-lock-heartbeat", daemon=True).start()

    def release_lock(self) -> None:
        if self._lock_token is None:
            return
        stop = getattr(self, "_heartbeat_stop", None)
        if stop is not None:
            stop.set()
        with self._beat_mutex:
            mine = self._lock_token
            seen = None if self.lock_lost else self._read_lock_file()
            if seen is None or seen.holder.get("token") != mine:
                # lost, or another job's now: never moved aside, even for an instant (that job's
                # heartbeat would find its lock gone)
                self._lock_token = None
                return
            if self._local:
                self._remove_lock_if(lambda moved: moved.holder.get("token") == mine)
            else:
                holder = self.read_lock()
                if holder and holder.get("token") == mine:
                    self.fs.delete_file(self.lock_path)
            self._lock_token = None


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


@dataclass(frozen=True)
class _LockSeen:
    """One reading of the lock file: its bytes, and its inode and modification time where known (a
    lock rewritten or replaced since compares unequal)."""

    data: bytes
    ino: int | None
    mtime_ns: int | None

    @property
    def holder(self) -> dict[str, Any]:
        """The holder it names; {} for an empty or unreadable (half-written) file."""
        try:
            holder = json.loads(self.data or b"{}")
        except ValueError:
            return {}
        return holder if isinstance(holder, dict) else {}

    @property
    def mtime_unix(self) -> float | None:
        return None if self.mtime_ns is None else self.mtime_ns / 1e9


def _stale_reason(
    holder: dict[str, Any], stale_after_s: float, mtime_unix: float | None = None
) -> str | None:
    """Why a lock is stale, or None when its holder may still be running. An empty or unreadable lock
    file (one being written) is stale once unchanged for `stale_after_s` (`mtime_unix`: when it was
    last written; unknown: at once, as on object storage, where a file appears whole or not at all)."""
    if not holder:
        if mtime_unix is None:
            return "the lock file is empty or unreadable"
        age = time.time() - mtime_unix
        if age > stale_after_s:
            return f"the lock file is empty or unreadable, unchanged for {age:.0f} s"
        return None
    if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
        if not _pid_alive(holder["pid"]):
            return f"its holder (pid {holder['pid']} on this host) is gone"
    beat = holder.get("heartbeat_unix")
    if isinstance(beat, (int, float)) and time.time() - beat > stale_after_s:
        return f"no heartbeat for {time.time() - beat:.0f} s (holder {holder.get('pid')} on {holder.get('host')})"
    return None
