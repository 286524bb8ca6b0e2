"""What a catalogue query read (`ScanStats`): the file pruning, and from DuckDB's profiler the row
groups, rows and bytes of its scans. Kept apart from `xpengine.catalog.query` (the connection)."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from typing import Any

__all__ = ["ScanStats", "profile_stats"]


@dataclasses.dataclass
class ScanStats:
    """What the last query read: from DuckDB's profiler (row groups, bytes) and the file pruning.

    `rows_scanned` counts the rows the scans passed on, after the filters DuckDB pushed into them;
    `wall_s` is the time from the query's start to the `scan_stats()` call."""

    files_scanned: int
    files_total: int
    row_groups_scanned: int | None
    row_groups_total: int | None
    rows_scanned: int | None
    bytes_read: int | None
    wall_s: float

    def describe(self) -> str:
        parts = [f"files {self.files_scanned}/{self.files_total}"]
        if self.row_groups_total:
            parts.append(f"row groups {self.row_groups_scanned}/{self.row_groups_total}")
        if self.rows_scanned is not None:
            parts.append(f"rows from scans {self.rows_scanned:,}")
        if self.bytes_read:
            parts.append(f"bytes read {self.bytes_read / 1e6:.1f} MB")
        parts.append(f"{self.wall_s:.3f} s")
        return ", ".join(parts)


def profile_stats(con: Any, files_scanned: int, files_total: int, t0: float) -> ScanStats:
    """ScanStats of the last query on `con` (a DuckDB connection with profiling on; None: files only)."""
    import duckdb

    rg = rgt = rows = nbytes = None
    if con is not None:
        try:
            info = json.loads(con.get_profiling_information(format="json"))
        except (duckdb.Error, ValueError):
            info = {}
        scans = list(_iter_scans(info.get("operator", [])))
        if scans:
            rg = sum(int(s.get("row_groups_scanned", 0) or 0) for s in scans)
            rgt = sum(int(s.get("total_row_groups_to_scan", 0) or 0) for s in scans)
            rows = sum(int(s.get("rows_scanned", 0) or 0) for s in scans)
        nbytes = (info.get("io") or {}).get("total_bytes_read")
    return ScanStats(
        files_scanned=files_scanned,
        files_total=files_total,
        row_groups_scanned=rg,
        row_groups_total=rgt,
        rows_scanned=rows,
        bytes_read=nbytes,
        wall_s=time.perf_counter() - t0,
    )


def _iter_scans(nodes: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for n in nodes:
        if n.get("type") == "TABLE_SCAN":
            yield n
        yield from _iter_scans(n.get("children", []))
