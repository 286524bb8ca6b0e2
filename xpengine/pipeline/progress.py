"""The job's progress line (partitions done/total, sources/s, ETA) and its closing summary line."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import TYPE_CHECKING, Any

from xpengine.pipeline.plan import _file_fingerprint
from xpengine.pipeline.stages import PartitionTask

if TYPE_CHECKING:
    from xpengine.pipeline.ray_job import JobSummary
    from xpengine.pipeline.writer import CatalogWriter

__all__ = ["Progress"]

log = logging.getLogger("xpengine.pipeline.ray_job")


class Progress:
    """Partitions done/total, sources/s and ETA while the job runs.

    On a terminal: one bar redrawn in place. Otherwise (a log file, `ray job logs`): one line every
    `interval_s` and at each finished partition. The ETA scales the elapsed time by the input bytes
    still to do (partition sizes differ)."""

    def __init__(
        self, tasks: list[PartitionTask], *, already_done: int = 0, interval_s: float = 10.0, stream=None
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.sizes = {}
        for t in tasks:
            try:
                self.sizes[t.name] = (_file_fingerprint(t.xp) or {}).get("size", 0) or 1
            except OSError:
                self.sizes[t.name] = 1
        self.total_bytes = sum(self.sizes.values())
        self.done_bytes = 0
        self.n_total = len(tasks)
        self.n_done = 0
        self.n_failed = 0
        self.already = already_done
        self.sources = 0
        self.t0 = time.perf_counter()
        self.interval_s = interval_s
        self.last = self.t0

    def rows(self, n: int) -> None:
        self.sources += n

    def partition_finished(self, name: str, n_sources: int, *, failed: bool = False) -> None:
        self.n_done += 1
        self.n_failed += int(failed)
        self.done_bytes += self.sizes.get(name, 0)
        self.report()

    def line(self) -> str:
        el = time.perf_counter() - self.t0
        rate = self.sources / el if el > 0 else 0.0
        if self.done_bytes and self.n_done < self.n_total:
            eta = el * (self.total_bytes - self.done_bytes) / self.done_bytes
            eta_s = time.strftime("%H:%M:%S", time.gmtime(eta))
        else:
            eta_s = "--:--:--" if self.n_done < self.n_total else "00:00:00"
        failed = f", {self.n_failed} failed" if self.n_failed else ""
        skipped = f" (+{self.already} done earlier)" if self.already else ""
        return (
            f"{self.n_done}/{self.n_total} partitions{skipped}{failed}, {self.sources:,} sources, "
            f"{rate:,.0f} sources/s, elapsed {time.strftime('%H:%M:%S', time.gmtime(el))}, ETA {eta_s}"
        )

    def report(self) -> None:
        self.last = time.perf_counter()
        if self.tty:
            width = 30
            filled = int(width * self.n_done / max(self.n_total, 1))
            self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {self.line()}\x1b[K")
            self.stream.flush()
        else:
            log.info("progress: %s", self.line())

    def maybe_report(self) -> None:
        if time.perf_counter() - self.last >= self.interval_s:
            self.report()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _log_summary(summary: JobSummary) -> None:
    d = summary.to_dict()
    log.info(
        "done in %.1f s: %d partition(s) written (%d sources, %.0f sources/s), %d skipped, %d failed, "
        "%d duplicate row(s) set aside; catalogue in %s",
        summary.wall_time_s,
        len(summary.partitions_done),
        summary.sources_written,
        d["sources_per_s"] or 0,
        len(summary.partitions_skipped),
        len(summary.partitions_failed),
        summary.rows_rejected + int(summary.duplicates.get("sources", 0)),
        summary.output,
    )
    for name, msg in summary.partitions_failed.items():
        log.error("  failed: %s: %s", name, msg)
    log.debug("summary: %s", json.dumps(d))


def _running_summary(summary: JobSummary) -> dict[str, Any]:
    """`_SUMMARY.json` while a run is under way (since session 30; a killed run used to leave the summary
    of the run before it, which read as this one's): when and where it began. The finished run's
    summary replaces it ("status": "finished"); one that stops on an error, "status": "stopped". One
    still "running" with no `_LOCK.json` beside it is a run that was killed."""
    import os
    import socket

    return {
        "status": "running",
        "output": summary.output,
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "partitions_total": summary.partitions_total,
    }


def _stopped_summary(
    writer: CatalogWriter, running: dict[str, Any], summary: JobSummary, exc: BaseException
) -> None:
    """Best effort: `_SUMMARY.json` (which said `running`) says the run stopped on `exc`, with the
    partitions it finished; nothing where the lock was lost or the summary cannot be written."""
    if writer.lock_lost:
        return
    try:
        writer.write_summary(
            {
                **running,
                "status": "stopped",
                "stopped_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "error": f"{type(exc).__name__}: {exc}"[:2000],
                "partitions_skipped": summary.partitions_skipped,  # done before, and kept
                "partitions_done": summary.partitions_done,
                "partitions_failed": summary.partitions_failed,
            }
        )
    except Exception as err:  # the error that stopped it is the one to report
        log.warning("could not record the stop in _SUMMARY.json: %s", err)
