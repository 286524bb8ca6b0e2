"""Finishing a partition on the driver: its rows sorted by source_id, those outside the partition's
HEALPix range flagged, duplicated source_ids set aside in `_rejected/`, the file and its manifest
record written atomically (or the partition failed, when an input changed after it was read); a failed
partition's record. The sources that repeat across partitions, resolved once all are written, are
`xpengine.pipeline.duplicates`'s (`resolve_cross_partition_duplicates`, re-exported here)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pyarrow as pa

from xpengine.catalog.schema import catalog_schema
from xpengine.features.flags import SourceFlag
from xpengine.io.partitions import md5_of
from xpengine.pipeline.duplicates import (  # noqa: F401  (callers import them from here too)
    COUNTED_FLAGS,
    OTHER_PARTITION_REASON,
    _rejected_table,
    flag_counts,
    remove_partition_files,
    resolve_cross_partition_duplicates,
    row_rank,
)
from xpengine.pipeline.plan import _input_fingerprints, side_table_fingerprint
from xpengine.pipeline.writer import PartitionRecord

__all__ = ["remove_partition_files", "resolve_cross_partition_duplicates"]

log = logging.getLogger("xpengine.pipeline.ray_job")


def _rows_table(schema: pa.Schema, cols: dict[str, np.ndarray], sid: np.ndarray) -> pa.Table:
    arrays = {"source_id": sid, "hpx8": (sid >> 43).astype(np.int32)}
    for f in schema:
        if f.name not in arrays:
            arrays[f.name] = cols[f.name]
    return pa.Table.from_pydict(
        {f.name: pa.array(arrays[f.name], type=f.type) for f in schema}, schema=schema
    )


def _row_problems(task, flags: np.ndarray, summary) -> dict[str, int]:
    """The partition record's counts of rows without a full prediction (the rows are written, flagged),
    added to the summary's `rows_flagged` and told on the driver, where the user sees them (the read
    stage logs its details inside the Ray workers): READ_PROBLEM rows; NO_PREDICTION rows (a warning
    that names every row when the whole file gave none: a file on another grid, say); NO_GAIA_SOURCE rows
    where a gaia_source file was given (every DR3 XP source has a gaia_source row, so a source missing
    from it means a truncated or wrong file; the row has no parallax and its G comes from the XP);
    NO_ZERO_POINT rows (a warning where most rows have a parallax without its own zero point: the inputs
    of Lindegren's correction left out of a gaia_source query, review of session 32)."""
    n = len(flags)
    by_flag = flag_counts(flags, bool(task.gaia))  # the record's keys are `<flag>_rows`
    rows_flagged = getattr(summary, "rows_flagged", None)
    for name, k in by_flag.items():
        if k and rows_flagged is not None:
            rows_flagged[name] = rows_flagged.get(name, 0) + k
    counts = {f"{name.lower()}_rows": k for name, k in by_flag.items()}
    if counts["no_zero_point_rows"] > n / 2:  # not a few bright stars: the query left the inputs out
        log.warning(
            "%s: %d of its %d row(s) have a parallax without Lindegren et al.'s zero point (NO_ZERO_POINT; they "
            "take --zero-point-fallback, by default -0.017 mas with σ widened by 0.02 mas, or are dropped "
            "with 'none'): if the gaia_source query left out nu_eff_used_in_astrometry, pseudocolour and "
            "astrometric_params_solved, give them for each star's own",
            task.xp,
            counts["no_zero_point_rows"],
            n,
        )
    if counts.get("no_gaia_source_rows"):
        log.warning(
            "%s: %d of %d source(s) are not in its gaia_source file %s: written without parallax or Gaia "
            "photometry (G from the XP), flagged NO_GAIA_SOURCE; every DR3 XP source has a gaia_source row, "
            "so the file may be truncated or not this partition's",
            task.xp,
            counts["no_gaia_source_rows"],
            n,
            task.gaia,
        )
    if n and counts["no_prediction_rows"] == n:
        log.warning(
            "%s: none of its %d row(s) got a prediction (NO_PREDICTION%s): see the `flags` of its rows, "
            "and the read stage's warnings",
            task.xp,
            n,
            f"; {counts['read_problem_rows']} with READ_PROBLEM" if counts["read_problem_rows"] else "",
        )
    elif counts["read_problem_rows"]:
        log.warning(
            "%s: %d of %d row(s) had unreadable values (flag READ_PROBLEM; the catalogue keeps them, the "
            "read stage's warning names each)",
            task.xp,
            counts["read_problem_rows"],
            n,
        )
    return {k: v for k, v in counts.items() if v}


def counts_from_records(summary, writer) -> None:
    """The summary's `rows_flagged` and `rows_rejected` as the records of this run's partitions stand once
    the sources repeated across partitions are resolved: each partition counted its rows when it was
    written, and a move to `_rejected/` (or back) recounts its record (`duplicates.recount_flags`). Until
    session 32 the summary kept the counts of the write, so the command printed READ_PROBLEM rows that
    had moved out of the catalogue, and `rows_rejected` left out the rows moved across partitions."""
    records = writer.done_records()
    flagged: dict[str, int] = {}
    rejected = 0
    for name in summary.partitions_done:
        rec = records.get(name) or {}
        for f in COUNTED_FLAGS:
            k = int((rec.get("problems") or {}).get(f"{f.name.lower()}_rows") or 0)
            if k:
                flagged[f.name] = flagged.get(f.name, 0) + k
        rejected += int(rec.get("rejected_rows") or 0)
    summary.rows_flagged = flagged
    summary.rows_rejected = rejected


def _finish_partition(
    writer, task, parts, cfg, provenance, identity, summary, wall_s, read_inputs=None
) -> int | None:
    """Write a partition whose rows are all in; returns its catalogue rows, or None when it failed.

    `read_inputs`: the inputs' size and mtime as the read stage found them when it opened them (its
    "read" event, `xpengine.pipeline.bookkeeping`). The record describes the files as they are now
    (size, mtime, md5), so a file replaced while the job ran would be recorded as processed in a
    version that was never read, and resume, even `--verify-inputs`, would keep rows that are not
    its rows: such a partition fails instead, and the next run redoes it.

    No `parts` at all (an input of no sources, e.g. a header-only file, whose read reported 0 rows):
    nothing is lost, so the partition is done, with an empty catalogue file (the catalogue's schema
    and provenance, no row: every reader takes it), `no_sources` in its record and its name in the
    summary's `partitions_empty`; resume skips it as any done partition."""
    inputs = _input_fingerprints_unless_changed(task, read_inputs, cfg.checksum)
    if not isinstance(inputs, str):
        inputs = _side_tables_changed(identity) or inputs
    if isinstance(inputs, str):
        rows_seen = sum(len(p["source_id"]) for p in parts)
        _record_failure(writer, task, inputs, summary, rows_seen, identity)
        return None
    schema = catalog_schema(cfg.labels, metadata={"provenance": {**provenance, "inputs": inputs}})
    if parts:
        cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    else:  # an input of no sources (a header-only file): done, with an empty catalogue file
        cols = {f.name: np.empty(0, dtype=f.type.to_pandas_dtype()) for f in schema}
    # among rows of the same source_id the best copy first (one with a prediction, read cleanly:
    # `row_rank`), then the first in the input; until session 29 the first, even a NaN row
    sid = cols["source_id"].astype(np.int64)
    order = np.lexsort((np.arange(sid.size), row_rank(cols["flags"]), sid))
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
    table = _rows_table(schema, {k: v[~dup] for k, v in cols.items()}, sid[~dup])
    rejected = None
    if dup.any():
        ids = np.unique(sid[dup])
        problems["duplicated_in_partition"] = int(dup.sum())
        log.warning(
            "%s: %d row(s) repeat a source_id already in the file (e.g. %d): the best row of each (with "
            "a prediction, read cleanly; else the first) is kept, the others go to %s",
            task.xp,
            int(dup.sum()),
            int(ids[0]),
            writer.display(writer.rejected_path(task.name)),
        )
        rejected = _rejected_table(
            _rows_table(schema, {k: v[dup] for k, v in cols.items()}, sid[dup]),
            [f"duplicate: source_id repeated in {task.xp}"] * int(dup.sum()),
        )
    problems.update(_row_problems(task, flags[~dup], summary))
    if not len(sid):  # the record says so: an empty partition is not a lost one
        problems["no_sources"] = True
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
    if not len(sid):
        getattr(summary, "partitions_empty", []).append(task.name)
        log.warning(
            "partition %s: %s holds no sources: done, its catalogue file has no rows", task.name, task.xp
        )
    log.info("partition %s: %d sources → %s", task.name, table.num_rows, writer.display(path))
    return table.num_rows


def _input_fingerprints_unless_changed(task, read_inputs, checksum: bool) -> dict[str, Any] | str:
    """The partition's inputs as its record holds them (URL, size, mtime and, with `checksum`, md5),
    or why the partition fails: an input whose size or mtime is not what the read stage found when it
    opened it (`read_inputs`; None: not reported, nothing to compare), or one gone since. The md5s
    are read first and the sizes and mtimes after them, so an md5 that passes describes the version
    that was read."""
    md5s: dict[str, str] = {}
    try:
        if checksum:
            md5s["xp_md5"] = md5_of(task.xp)
            if task.gaia:
                md5s["gaia_source_md5"] = md5_of(task.gaia)
        inputs = _input_fingerprints(task)
    except OSError as exc:
        return f"an input is gone since it was read ({type(exc).__name__}: {exc}); the next run redoes the partition"
    bad = _unlike_listed_md5(task, md5s)
    if bad:
        return bad
    for key, url in (("xp_file", task.xp), ("gaia_source_file", task.gaia)):
        if read_inputs is None or key not in read_inputs or read_inputs[key] == inputs[key]:
            continue
        return (
            f"input {url} changed after the job read it (read: {read_inputs[key]}, now: {inputs[key]}): "
            "the rows are not those of the file the manifest would record; the next run redoes the partition"
        )
    return {**inputs, **md5s}


def _unlike_listed_md5(task, md5s: dict[str, str]) -> str | None:
    """Why the partition fails where an input's md5 (`md5s`, read with `checksum`) differs from the one an
    `_MD5SUM.txt` beside it lists (a download cut short at a line boundary reads as a complete file;
    review of session 29); None otherwise, or without md5s."""
    from xpengine.io.partitions import listed_md5

    for key, url in (("xp_md5", task.xp), ("gaia_source_md5", task.gaia)):
        if key not in md5s or not url or url.startswith("zip://"):
            continue
        try:
            listed, sums = listed_md5(url)
        except (OSError, ValueError) as exc:  # an unreadable list: said, not trusted
            return f"the _MD5SUM.txt beside {url} cannot be read ({type(exc).__name__}: {exc})"
        if listed is not None and listed != md5s[key]:
            return (
                f"input {url} has MD5 {md5s[key]}, but {sums} lists {listed}: a corrupt or partial download "
                "(download it again; the next run redoes the partition)"
            )
    return None


def _side_tables_changed(identity: dict[str, Any]) -> str | None:
    """Why the partition fails where a 2MASS or E(B−V) table is not, or no longer, the one the job
    started with (its identity's URL, size and mtime): each partition reads the table again, so one
    replaced during the job would give a catalogue whose rows come from two versions, recorded as one.
    None where both are unchanged."""
    for key, option in (("tmass_table", "--tmass"), ("ebv_table", "--ebv")):
        then = identity.get(key)
        if not then:
            continue
        try:
            now = side_table_fingerprint(then["url"])
        except OSError as exc:
            now = f"gone ({type(exc).__name__})"
        if now != then:
            shown = now if isinstance(now, str) else f"size {now.get('size')}, modified {now.get('modified')}"
            return (
                f"{option} {then['url']} changed after the job started (then: size {then.get('size')}, "
                f"modified {then.get('modified')}; now: {shown}): this partition may hold rows of the new "
                "version, and the job's partitions no longer share one table; run it again with --overwrite"
            )
    return None


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
