"""Partition bookkeeping, kept on the driver's side.

The rows that travel from the read stage through the predictor actors and back carry the catalogue's
columns and one small integer, `PARTITION_KEY`: the partition's index in the driver's plan. It is a
block key (constant over each read chunk, 4 bytes a row) that survives Ray Data's re-batching in front
of GPU actors, where one model batch may hold the end of one partition and the start of the next. The
predictor stage sets it aside before the model sees a batch and puts it back on the results
(`xpengine.pipeline.predictor_stage.CatalogPredictor`). No row carries a partition name, a row total, an error
or a timing, and there are no marker rows.

What the driver needs besides the rows arrives as small events on a separate stream, the `Ledger` (a
Ray actor in the job; any object with a `report` method, or None, outside Ray):

    {"event": "read", "index": i, "rows": n, "read_s": s, "started_at": t, "inputs": {"xp_file": {"size": ...,
     "modified": ...}, "gaia_source_file": {...} or None}}    partition i read: n rows in all; `inputs`: its
        files' size and mtime as the read found them when it opened them (`plan._file_fingerprint`), which
        the driver compares with the files when it writes the partition (a file replaced meanwhile fails it)
    {"event": "failed", "index": i, "error": msg, "read_s": s, "started_at": t}   partition i could not be read
    {"event": "predicted", "rows": n, "predict_s": s, "model_s": s, "batch_size": b}   one predictor call
        (an actor's first call adds "first_call_at": t, "pid": its process)
    {"event": "actor_started", "at": wall-clock time, "process_started_at": ..., "stages_imported_at": ...,
     "ready_at": ..., "pid": ..., "torch_import_s": ..., "model_load_s": ..., "settings_s": ...,
     "warm_up_s": ..., "setting": {...}}   one predictor actor ready

`PartitionBook` joins the two on the driver: it buffers each partition's rows by index, knows a
partition is complete when it holds as many rows as its read reported, and sums the stage timings.
"""

from __future__ import annotations

import logging
import os
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "PARTITION_KEY",
    "Ledger",
    "PartitionBook",
    "input_fingerprints",
    "process_started_at",
    "report",
    "take",
]

PARTITION_KEY = "partition_index"
"""The rows' block key: the partition's index in the driver's plan (int32)."""


log = logging.getLogger(__name__)


class Ledger:
    """The events of the read tasks and predictor actors, in arrival order, until the driver takes them.
    The job runs it as a Ray actor (`ray.remote(Ledger)`), with no CPU of its own. `code`: the driver's
    `expected_code()`, checked as the other workers check theirs (a ledger under other code would read
    other events than the driver's book expects)."""

    def __init__(self, code: dict[str, Any] | None = None) -> None:
        from xpengine.pipeline.code_identity import check_worker_code

        check_worker_code(code, "ledger actor")
        self._events: list[dict[str, Any]] = []

    def report(self, event: dict[str, Any]) -> None:
        self._events.append(event)

    def take(self) -> list[dict[str, Any]]:
        events, self._events = self._events, []
        return events


def take(ledger: Any, error: type[Exception]) -> list[dict[str, Any]]:
    """The events the ledger actor holds, taken from it; where the actor runs other xpengine code (its
    constructor's check), `error` with the one-line mismatch message."""
    import ray

    from xpengine.pipeline.code_identity import mismatch_message

    try:
        return ray.get(ledger.take.remote())
    except Exception as exc:
        message = mismatch_message(exc)
        if message is None:
            raise
        raise error(message) from exc


def report(ledger: Any, event: dict[str, Any], *, required: bool = True) -> None:
    """Send one event to `ledger`: a Ray actor handle (waits until it is recorded, so that no event
    is lost when the task or actor ends), a local object with `report`, or None (dropped).

    required False (diagnostics such as an actor's start-up times): a failure to deliver is logged and
    the caller goes on. On a loaded 2-core box a predictor actor's constructor once died of the ledger's
    RPC being refused, and Ray Data's retries with it, failing the job for a timing record."""
    if ledger is None:
        return
    method = ledger.report
    try:
        if hasattr(method, "remote"):
            import ray

            ray.get(method.remote(event))
        else:
            method(event)
    except Exception as exc:
        if required:
            raise
        log.warning("event %r not recorded (%s: %s)", event.get("event"), type(exc).__name__, exc)


def input_fingerprints(xp: str, gaia: str | None) -> dict[str, Any]:
    """A "read" event's `inputs`: the size and mtime of a partition's XP and gaia_source files as the
    manifest records them (`plan._file_fingerprint`), taken by the read stage as it opens them."""
    from xpengine.pipeline.plan import _file_fingerprint  # plan imports the stages, which import this

    return {"xp_file": _file_fingerprint(xp), "gaia_source_file": _file_fingerprint(gaia)}


def process_started_at() -> float | None:
    """When this process started (wall clock), for the start-up breakdown; None if unknown.

    On Linux: its start in clock ticks after boot (/proc/self/stat) on the boot time that /proc/uptime
    gives to 10 ms. psutil's `create_time` takes the boot time from /proc/stat's `btime`, in whole
    seconds, so it put a process up to a second early (0.6 s on the bench's machine: "process started
    at 0.2 s" was about 0.8 s). Where the two disagree by more than that (a container's /proc/uptime),
    psutil's."""
    coarse = None
    try:
        import psutil

        coarse = psutil.Process().create_time()
    except Exception:  # diagnostics only
        pass
    try:
        with open("/proc/self/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22, starttime
        with open("/proc/uptime") as f:
            booted = time.time() - float(f.read().split()[0])
        fine = booted + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return coarse
    return fine if coarse is None or abs(fine - coarse) <= 1.05 else coarse


@dataclass
class _Partition:
    parts: list[dict[str, np.ndarray]] = field(default_factory=list)
    received: int = 0
    expected: int | None = None
    started: float | None = None
    failed: str | None = None
    inputs: dict[str, Any] | None = None  # the read's input fingerprints (its "read" event)


class PartitionBook:
    """The driver's account of every partition of the plan: rows by `PARTITION_KEY`, events from the
    `Ledger`. `complete()` and `failed()` hand over what is ready to be written or recorded, once."""

    def __init__(self, n_partitions: int, clock=time.perf_counter) -> None:
        self.clock = clock
        self.partitions = [_Partition() for _ in range(n_partitions)]
        self.settled: set[int] = set()
        self._new_failures: list[int] = []
        self.buffered = 0  # catalogue rows held for partitions not complete yet
        self.peak_buffered = 0
        self.stage_s: dict[str, float] = defaultdict(float)  # seconds per stage, over actors and tasks
        self.rows_predicted = 0
        self.batch_sizes: set[int] = set()
        self.actor_starts: list[dict[str, Any]] = []
        # wall-clock times for the start-up breakdown: the first partition read began, and each
        # actor's (by pid) first predictor call
        self.first_read_at: float | None = None
        self.first_calls: dict[int, float] = {}

    def add_rows(self, keys: np.ndarray, batch: dict[str, np.ndarray]) -> int:
        """Buffer a batch of catalogue rows by their partition key; returns the rows kept (rows of a
        partition that already failed, or was settled, are dropped)."""
        kept = 0
        keys = np.asarray(keys)
        for index in np.unique(keys):
            index = int(index)
            p = self.partitions[index]
            sel = keys == index
            n = int(sel.sum())
            if p.started is None:
                p.started = self.clock()
            if p.failed is not None or index in self.settled:
                continue
            p.parts.append({k: v[sel] for k, v in batch.items()} if n != len(keys) else dict(batch))
            p.received += n
            self.buffered += n
            kept += n
        self.peak_buffered = max(self.peak_buffered, self.buffered)
        return kept

    def apply(self, events: list[dict[str, Any]]) -> None:
        for ev in events:
            kind = ev.get("event")
            if kind in ("read", "failed") and ev.get("started_at") is not None:
                at = float(ev["started_at"])
                self.first_read_at = at if self.first_read_at is None else min(self.first_read_at, at)
            if kind == "read":
                p = self.partitions[ev["index"]]
                p.expected = int(ev["rows"])
                p.inputs = ev.get("inputs")
                self.stage_s["read"] += float(ev.get("read_s", 0.0))
            elif kind == "failed":
                index = ev["index"]
                p = self.partitions[index]
                self.stage_s["read"] += float(ev.get("read_s", 0.0))
                if p.failed is None and index not in self.settled:
                    p.failed = str(ev["error"])
                    if p.started is None:
                        p.started = self.clock()
                    self.buffered -= p.received
                    p.parts = []
                    self._new_failures.append(index)
            elif kind == "predicted":
                self.stage_s["predict"] += float(ev.get("predict_s", 0.0))
                self.stage_s["model"] += float(ev.get("model_s", 0.0))
                self.rows_predicted += int(ev.get("rows", 0))
                if ev.get("batch_size"):
                    self.batch_sizes.add(int(ev["batch_size"]))
                if ev.get("first_call_at") is not None:
                    self.first_calls[int(ev.get("pid", -1))] = float(ev["first_call_at"])
            elif kind == "actor_started":
                self.actor_starts.append(ev)

    def complete(self) -> Iterator[tuple[int, list[dict[str, np.ndarray]], float]]:
        """(index, row batches, seconds since its first rows) of each partition now complete."""
        for index, p in enumerate(self.partitions):
            if index in self.settled or p.failed is not None or p.expected is None:
                continue
            if p.received == p.expected:
                self.settled.add(index)
                self.buffered -= p.received
                parts, p.parts = p.parts, []
                yield index, parts, self.clock() - (p.started or self.clock())

    def read_inputs(self, index: int) -> dict[str, Any] | None:
        """The size and mtime of partition `index`'s files when its read opened them (None: not reported)."""
        return self.partitions[index].inputs

    def failed(self) -> Iterator[tuple[int, str, int]]:
        """(index, error, rows received) of each partition newly failed."""
        while self._new_failures:
            index = self._new_failures.pop(0)
            self.settled.add(index)
            p = self.partitions[index]
            yield index, p.failed or "failed", p.received

    def unsettled(self) -> Iterator[tuple[int, str, int]]:
        """(index, reason, rows received) of the partitions neither written nor failed: at the end of
        the stream, incomplete."""
        for index, p in enumerate(self.partitions):
            if index not in self.settled:
                expected = "unknown" if p.expected is None else p.expected
                yield index, f"incomplete: received {p.received} rows, expected {expected}", p.received
