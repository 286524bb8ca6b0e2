"""Finishing a partition on the driver: its rows sorted by source_id, those outside the partition's
HEALPix range flagged, duplicated source_ids set aside in `_rejected/`, the file and its manifest
record written atomically; a failed partition's record; and, once all are written, the sources that
repeat across partitions (`resolve_cross_partition_duplicates`)."""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

import numpy as np
import pyarrow as pa

from xpengine.catalog.schema import catalog_schema
from xpengine.features.flags import SourceFlag
from xpengine.io.partitions import md5_of
from xpengine.pipeline.plan import _input_fingerprints
from xpengine.pipeline.writer import CatalogWriter, OutputLockedError, PartitionRecord

__all__ = ["remove_partition_files", "resolve_cross_partition_duplicates"]

log = logging.getLogger("xpengine.pipeline.ray_job")

OTHER_PARTITION_REASON = "duplicate: source_id also in partition "  # + the partition whose row is kept


def _rows_table(schema: pa.Schema, cols: dict[str, np.ndarray], sid: np.ndarray) -> pa.Table:
    arrays = {"source_id": sid, "hpx8": (sid >> 43).astype(np.int32)}
    for f in schema:
        if f.name not in arrays:
            arrays[f.name] = cols[f.name]
    return pa.Table.from_pydict(
        {f.name: pa.array(arrays[f.name], type=f.type) for f in schema}, schema=schema
    )


def _rejected_table(table: pa.Table, reasons: list[str]) -> pa.Table:
    import pyarrow.compute as pc

    flags = pc.bit_wise_or(
        table.column("flags"),
        pa.scalar(int(SourceFlag.DUPLICATE_SOURCE | SourceFlag.NO_PREDICTION), pa.int64()),
    )
    t = table.set_column(table.schema.get_field_index("flags"), table.schema.field("flags"), flags)
    return t.append_column("reason", pa.array(reasons, type=pa.string()))


def _finish_partition(writer, task, parts, cfg, provenance, identity, summary, wall_s) -> int:
    cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    # stable: among rows with the same source_id the first in the input comes first
    order = np.argsort(cols["source_id"], kind="stable")
    cols = {k: v[order] for k, v in cols.items()}
    sid = cols["source_id"].astype(np.int64)
    flags = cols["flags"].astype(np.int64)
    problems: dict[str, Any] = {}
    # sources whose HEALPix pixel lies outside the partition's range: kept, flagged, and checked
    # against the partition that should hold them once all are written
    unanchored = np.ones(len(sid), dtype=bool)
    if task.hpx8_range is not None:
        hpx = sid >> 43
        outside = (hpx < task.hpx8_range[0]) | (hpx > task.hpx8_range[1])
        if outside.any():
            flags[outside] |= int(SourceFlag.OUTSIDE_PARTITION_RANGE)
            problems["outside_partition_range"] = int(outside.sum())
            log.warning(
                "%s: %d source(s) lie outside the partition's HEALPix range %d-%d (e.g. source_id %d, "
                "pixel %d): kept, flagged OUTSIDE_PARTITION_RANGE",
                task.xp,
                int(outside.sum()),
                *task.hpx8_range,
                int(sid[outside][0]),
                int(hpx[outside][0]),
            )
        unanchored = outside
    cols["flags"] = flags
    dup = np.zeros(len(sid), dtype=bool)
    dup[1:] = sid[1:] == sid[:-1]
    inputs = _input_fingerprints(task)
    if cfg.checksum:
        inputs["xp_md5"] = md5_of(task.xp)
        if task.gaia:
            inputs["gaia_source_md5"] = md5_of(task.gaia)
    schema = catalog_schema(cfg.labels, metadata={"provenance": {**provenance, "inputs": inputs}})
    table = _rows_table(schema, {k: v[~dup] for k, v in cols.items()}, sid[~dup])
    rejected = None
    if dup.any():
        ids = np.unique(sid[dup])
        problems["duplicated_in_partition"] = int(dup.sum())
        log.warning(
            "%s: %d row(s) repeat a source_id already in the file (e.g. %d): the first row of each is "
            "kept, the others go to %s",
            task.xp,
            int(dup.sum()),
            int(ids[0]),
            writer.display(writer.rejected_path(task.name)),
        )
        rejected = _rejected_table(
            _rows_table(schema, {k: v[dup] for k, v in cols.items()}, sid[dup]),
            [f"duplicate: source_id repeated in {task.xp}"] * int(dup.sum()),
        )
    n_read_problems = int((flags & int(SourceFlag.READ_PROBLEM) != 0).sum())
    if n_read_problems:
        problems["read_problem_rows"] = n_read_problems
    record = PartitionRecord(
        partition=task.name,
        status="done",
        input_rows=len(sid),
        output_rows=table.num_rows,
        inputs=inputs,
        wall_time_s=round(wall_s, 3),
        rejected_rows=0 if rejected is None else rejected.num_rows,
        hpx8_range=None if task.hpx8_range is None else list(task.hpx8_range),
        problems={**problems, "unanchored_source_ids": [int(x) for x in np.unique(sid[unanchored & ~dup])]},
        job=identity,
    )
    path = writer.write_partition(task.name, table, record, rejected=rejected)
    summary.partitions_done.append(task.name)
    summary.sources_written += table.num_rows
    summary.rows_rejected += record.rejected_rows
    log.info("partition %s: %d sources → %s", task.name, table.num_rows, writer.display(path))
    return table.num_rows


def resolve_cross_partition_duplicates(writer: CatalogWriter) -> dict[str, Any]:
    """Make every source appear once in the whole catalogue.

    Rows of a bulk partition that lie in its HEALPix range are unique across partitions (ranges do not
    overlap). Only "unanchored" rows can repeat a source: those of single files (no range) and those
    outside their partition's range; the manifest lists them. Each is checked against the partition
    whose range holds its pixel and against the other unanchored rows. The row kept is the one in its
    own partition's range, else the first by partition name; the others move from the catalogue to
    `_rejected/` with the reason. Returns what was done (for the summary)."""
    import pyarrow.compute as pc

    done = writer.done_records()
    unanchored = {
        name: np.asarray(rec.get("problems", {}).get("unanchored_source_ids", []), dtype=np.int64)
        for name, rec in done.items()
    }
    unanchored = {k: v for k, v in unanchored.items() if v.size}
    if not unanchored:
        return {"sources": 0}
    ranges = {name: tuple(rec["hpx8_range"]) for name, rec in done.items() if rec.get("hpx8_range")}
    all_unanchored = np.unique(np.concatenate(list(unanchored.values())))
    owners: dict[int, str] = {}  # source_id -> partition whose row is kept
    for name in sorted(ranges):
        lo, hi = ranges[name]
        hpx = all_unanchored >> 43
        wanted = all_unanchored[(hpx >= lo) & (hpx <= hi)]
        if not wanted.size:
            continue
        ids = writer.read_partition(name).column("source_id").to_numpy()
        anchored_here = np.setdiff1d(np.intersect1d(ids, wanted), unanchored.get(name, np.empty(0, np.int64)))
        for s in anchored_here:
            owners[int(s)] = name
    losers: dict[str, set[int]] = defaultdict(set)
    for name in sorted(unanchored):
        for s in unanchored[name]:
            s = int(s)
            if s in owners and owners[s] != name:
                losers[name].add(s)
            else:
                owners.setdefault(s, name)
    moved = {}
    for name, ids in sorted(losers.items()):
        table = writer.read_partition(name)
        drop = pc.is_in(table.column("source_id"), pa.array(sorted(ids), pa.int64()))
        gone = table.filter(drop)
        keep = table.filter(pc.invert(drop))
        rec = done[name]
        reasons = [f"{OTHER_PARTITION_REASON}{owners[int(s)]}" for s in gone.column("source_id").to_numpy()]
        rejected = _rejected_table(gone, reasons)
        earlier = writer.read_rejected(name)
        if earlier is not None:
            # rows this move already set aside in a run killed between the rejected file and the
            # catalogue file (write_partition writes them in that order) are not set aside twice
            again = pc.and_(
                pc.is_in(earlier.column("source_id"), pa.array(sorted(ids), pa.int64())),
                pc.starts_with(earlier.column("reason"), OTHER_PARTITION_REASON),
            )
            earlier = earlier.filter(pc.invert(again))
            rejected = pa.concat_tables([earlier, rejected.cast(earlier.schema)])
        rec_obj = PartitionRecord(
            **{k: v for k, v in rec.items() if k in PartitionRecord.__dataclass_fields__}
        )
        rec_obj.output_rows = keep.num_rows
        rec_obj.rejected_rows = rejected.num_rows
        rec_obj.problems = {
            **rec_obj.problems,
            "duplicated_in_other_partitions": rec_obj.problems.get("duplicated_in_other_partitions", 0)
            + gone.num_rows,
            "unanchored_source_ids": [
                x for x in rec_obj.problems.get("unanchored_source_ids", []) if x not in ids
            ],
        }
        writer.write_partition(name, keep, rec_obj, rejected=rejected)
        moved[name] = gone.num_rows
        log.warning(
            "partition %s: %d source(s) also in another partition moved to %s",
            name,
            gone.num_rows,
            writer.display(writer.rejected_path(name)),
        )
    return {"sources": int(sum(moved.values())), "moved_to_rejected": moved}


def remove_partition_files(writer: CatalogWriter, name: str, *, manifest: bool = False) -> list[str]:
    """Remove a partition's catalogue file and its `_rejected/` file (and, with `manifest`, its manifest
    record) where they exist; returns the paths removed."""
    import pyarrow.fs as pafs

    if getattr(writer, "lock_lost", None):  # a job that lost its lock removes nothing (another holds it)
        raise OutputLockedError(writer.lock_lost)
    paths = [writer.catalog_path(name), writer.rejected_path(name)]
    if manifest:
        paths.append(writer.manifest_path(name))
    removed = []
    for path in paths:
        if writer.fs.get_file_info(path).type == pafs.FileType.File:
            writer.fs.delete_file(path)
            removed.append(path)
    return removed


def _record_failure(writer, task, message, summary, rows_seen, identity) -> None:
    # a file an earlier run left for this partition is not this job's: it goes before the record says
    # "failed", so a kill in between leaves no catalogue file beside a failed record
    for path in remove_partition_files(writer, task.name):
        log.warning(
            "partition %s failed: removed %s, written by an earlier run", task.name, writer.display(path)
        )
    writer.write_record(
        PartitionRecord(
            partition=task.name,
            status="failed",
            input_rows=rows_seen,
            output_rows=0,
            inputs={"xp": task.xp, "gaia_source": task.gaia},
            error=message,
            job=identity,
        )
    )
    summary.partitions_failed[task.name] = message
    log.error("partition %s FAILED: %s", task.name, message)
