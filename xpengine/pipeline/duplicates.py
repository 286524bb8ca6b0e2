"""Sources that repeat across the catalogue's partitions, resolved on the driver once all are written.

A source held by several partitions stays in the catalogue file of one, its owner, and moves to
`_rejected/<partition>.parquet` in the others, with the reason. Each losing partition's manifest record
says what it gave up and to whom (`GIVEN_UP_KEY`), with each row's catalogue flags, because the owner
can change after the move: a partition redone (`--overwrite`, a changed input) or gone may no longer
hold the source. Every resolve therefore first checks the owners and brings back, from `_rejected/`
into the loser's catalogue file, the rows whose owner no longer holds them or holds a worse copy now;
those sources then take part in the owner choice again. So every input source is in the catalogue
exactly once, or in `_rejected/` with its reason while another partition holds it.

Files change in an order that a kill at any point leaves recoverable by the rerun: the record of a
move is written first (what goes and where), then the rows are added where they go and removed where
they were (`CatalogWriter.write_partition`), then the final record.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

import numpy as np
import pyarrow as pa

from xpengine.features.flags import SourceFlag
from xpengine.pipeline.writer import CatalogWriter, OutputLockedError, PartitionRecord

__all__ = [
    "COUNTED_FLAGS",
    "GIVEN_UP_KEY",
    "OTHER_PARTITION_REASON",
    "flag_counts",
    "recount_flags",
    "remove_partition_files",
    "resolve_cross_partition_duplicates",
    "row_rank",
]

log = logging.getLogger("xpengine.pipeline.ray_job")

OTHER_PARTITION_REASON = "duplicate: source_id also in partition "  # + the partition whose row is kept
GIVEN_UP_KEY = "kept_in_other_partitions"
"""In a done partition's record (`problems`): the sources it gave up, by the partition whose row is
kept, as {that partition: [[source_id, the row's flags in this partition's catalogue], ...]}."""
_MOVED_FLAGS = int(SourceFlag.DUPLICATE_SOURCE)  # what `_rejected_table` adds: the row keeps its prediction
_LEGACY_MOVED_FLAGS = _MOVED_FLAGS | int(SourceFlag.NO_PREDICTION)  # what it added until session 20


def _rejected_table(table: pa.Table, reasons: list[str]) -> pa.Table:
    import pyarrow.compute as pc

    flags = pc.bit_wise_or(table.column("flags"), pa.scalar(_MOVED_FLAGS, pa.int64()))
    t = table.set_column(table.schema.get_field_index("flags"), table.schema.field("flags"), flags)
    return t.append_column("reason", pa.array(reasons, type=pa.string()))


def remove_partition_files(writer: CatalogWriter, name: str, *, manifest: bool = False) -> list[str]:
    """Remove a partition's catalogue file and its `_rejected/` file (and, with `manifest`, its manifest
    record) where they exist; returns the paths removed."""
    import pyarrow.fs as pafs

    if getattr(writer, "lock_lost", None):  # a job that lost its lock removes nothing (another holds it)
        raise OutputLockedError(writer.lock_lost)
    if hasattr(writer, "confirm_lock"):  # nor one taken over while it was paused (review of session 30)
        writer.confirm_lock()
    paths = [writer.catalog_path(name), writer.rejected_path(name)]
    if manifest:
        paths.append(writer.manifest_path(name))
    removed = []
    for path in paths:
        if writer.fs.get_file_info(path).type == pafs.FileType.File:
            writer.fs.delete_file(path)
            removed.append(path)
    return removed


def resolve_cross_partition_duplicates(writer: CatalogWriter) -> dict[str, Any]:
    """Make every source appear once in the whole catalogue.

    First the sources partitions gave up in earlier resolves whose owner no longer holds them come
    back into the catalogue (`_restore_given_up`). Then: rows of a bulk partition that lie in its
    HEALPix range are unique across partitions (ranges do not overlap). Only "unanchored" rows can
    repeat a source: those of single files (no range) and those outside their partition's range; the
    manifest lists them. Each is checked against the partition whose range holds its pixel and
    against the other unanchored rows. The row kept is the best (`_row_ranks`: one with a prediction
    before one without, one read cleanly before one with READ_PROBLEM or G_MISMATCH; until session 29 a
    NaN row could win), then the one in its own partition's range, then the first by partition name; the
    others move from the catalogue to `_rejected/` with the reason.

    Returns what was done (for the summary): "sources" moved and "moved_to_rejected" by partition;
    only when it happened, "restored" (rows brought back, by partition) and "failed" ({partition:
    {"error", "rows"}}: a partition whose given-up rows are in neither of its files, failed so that
    the next run redoes it)."""
    done = writer.done_records()
    restored, failed = _restore_given_up(writer, done)
    extra: dict[str, Any] = {k: v for k, v in (("restored", restored), ("failed", failed)) if v}
    unanchored = {
        name: np.asarray(rec.get("problems", {}).get("unanchored_source_ids", []), dtype=np.int64)
        for name, rec in done.items()
    }
    unanchored = {k: v for k, v in unanchored.items() if v.size}
    if not unanchored:
        return {"sources": 0, **extra}
    owners = _anchored_owners(writer, done, unanchored)  # source_id -> partition whose row is kept
    holders: dict[int, list[str]] = defaultdict(list)  # the partitions that hold each source
    for name in sorted(unanchored):
        for s in unanchored[name]:
            holders[int(s)].append(name)
    anchored = dict(owners)
    for s, names in holders.items():
        if s in anchored:
            names.append(anchored[s])
    contested = {s: names for s, names in holders.items() if len(names) > 1}
    rank = _row_ranks(writer, contested)
    losers: dict[str, set[int]] = defaultdict(set)
    for s, names in holders.items():
        # the best row: one with a prediction, then one read without problems, then the one in its own
        # partition's range, then by partition name
        best = min(names, key=lambda n: (rank.get((n, s), 3), n != anchored.get(s), n))
        owners[s] = best
        for name in names:
            if name != best:
                losers[name].add(s)
    moved = {}
    for name, ids in sorted(losers.items()):
        n = _give_up(writer, name, done[name], ids, owners)
        if isinstance(n, str):  # rows an earlier version lost: the partition is redone
            rec = done.pop(name)
            _fail(writer, name, rec, n)
            failed[name] = {"error": n, "rows": int(rec.get("output_rows") or 0)}
            continue
        moved[name] = n
    extra = {k: v for k, v in (("restored", restored), ("failed", failed)) if v}
    return {"sources": int(sum(moved.values())), "moved_to_rejected": moved, **extra}


def _anchored_owners(writer: CatalogWriter, done: dict[str, dict], unanchored: dict[str, np.ndarray]):
    """{source_id: bulk partition} for the unanchored sources that a bulk partition holds in its own
    HEALPix range (its row is the one kept)."""
    ranges = {name: tuple(rec["hpx8_range"]) for name, rec in done.items() if rec.get("hpx8_range")}
    all_unanchored = np.unique(np.concatenate(list(unanchored.values())))
    hpx = all_unanchored >> 43
    owners: dict[int, str] = {}
    for name in sorted(ranges):
        lo, hi = ranges[name]
        wanted = all_unanchored[(hpx >= lo) & (hpx <= hi)]
        if not wanted.size:
            continue
        ids = writer.read_source_ids(name)
        anchored_here = np.setdiff1d(np.intersect1d(ids, wanted), unanchored.get(name, np.empty(0, np.int64)))
        for s in anchored_here:
            owners[int(s)] = name
    return owners


def _row_ranks(writer: CatalogWriter, contested: dict[int, list[str]]) -> dict[tuple[str, int], int]:
    """{(partition, source_id): `row_rank`} of the rows of the sources several partitions hold; lower is
    kept. A row its record lists but its catalogue
    file no longer holds (set aside by a run killed mid-move) is absent: the holder of a row is kept."""
    import pyarrow.compute as pc

    by_partition: dict[str, list[int]] = defaultdict(list)
    for s, names in contested.items():
        for name in names:
            by_partition[name].append(s)
    ranks: dict[tuple[str, int], int] = {}
    for name, ids in sorted(by_partition.items()):
        t = writer.read_partition(name, columns=["source_id", "flags"])
        t = t.filter(pc.is_in(t.column("source_id"), value_set=pa.array(sorted(ids), pa.int64())))
        rank = row_rank(t.column("flags").to_numpy())
        for s, r in zip(t.column("source_id").to_pylist(), rank.tolist(), strict=True):
            ranks[(name, int(s))] = r
    return ranks


def row_rank(flags: np.ndarray) -> np.ndarray:
    """(N,) int of rows' catalogue flags, lower the better copy of a source: 2 without a prediction
    (NO_PREDICTION), 1 read with a problem (READ_PROBLEM) or a G that disagrees with its XP (G_MISMATCH),
    else 0."""
    f = np.asarray(flags, dtype=np.int64)
    worse = (f & int(SourceFlag.READ_PROBLEM | SourceFlag.G_MISMATCH)) != 0
    return np.where((f & int(SourceFlag.NO_PREDICTION)) != 0, 2, worse.astype(np.int64))


COUNTED_FLAGS = (
    SourceFlag.READ_PROBLEM,
    SourceFlag.NO_PREDICTION,
    SourceFlag.NO_GAIA_SOURCE,
    SourceFlag.NO_ZERO_POINT,
)
"""The flags a partition's record counts among its catalogue rows (`<flag>_rows`), summed by the job's
summary (`rows_flagged`) and printed by the command: rows written without a full prediction, or with
less than the archive gives (a parallax without its own zero point: since session 32)."""


def flag_counts(flags: np.ndarray, with_gaia_source: bool) -> dict[str, int]:
    """{flag name: rows carrying it} of COUNTED_FLAGS among catalogue rows' `flags`; NO_GAIA_SOURCE only
    where a gaia_source file was given (without one, every row has it)."""
    flags = np.asarray(flags, dtype=np.int64)
    return {
        f.name: int((flags & int(f) != 0).sum())
        for f in COUNTED_FLAGS
        if with_gaia_source or f is not SourceFlag.NO_GAIA_SOURCE
    }


def recount_flags(record: PartitionRecord, flags: np.ndarray) -> None:
    """Set the record's `<flag>_rows` counts to those of its catalogue file's rows as they are now
    (`flags`): a move to `_rejected/`, or back, changes them (until session 32 the record and the
    summary kept counting rows moved out of the catalogue: review of session 32)."""
    with_gaia = bool((record.inputs or {}).get("gaia_source_file"))
    for name, k in flag_counts(flags, with_gaia).items():
        key = f"{name.lower()}_rows"
        if k:
            record.problems[key] = k
        else:
            record.problems.pop(key, None)


def _record_of(rec: dict[str, Any]) -> PartitionRecord:
    out = PartitionRecord(**{k: v for k, v in rec.items() if k in PartitionRecord.__dataclass_fields__})
    out.problems = dict(out.problems)
    return out


def _given_up(problems: dict[str, Any]) -> dict[int, tuple[str, int]]:
    """{source_id: (owner, flags)} from a record's `GIVEN_UP_KEY`."""
    return {
        int(s): (owner, int(f))
        for owner, pairs in (problems.get(GIVEN_UP_KEY) or {}).items()
        for s, f in pairs
    }


def _given_up_entry(given: dict[int, tuple[str, int]]) -> dict[str, list[list[int]]]:
    by_owner: dict[str, list[list[int]]] = defaultdict(list)
    for s in sorted(given):
        owner, flags = given[s]
        by_owner[owner].append([s, flags])
    return dict(sorted(by_owner.items()))


def _with_given_up(rec: PartitionRecord, given: dict[int, tuple[str, int]]) -> None:
    rec.problems[GIVEN_UP_KEY] = _given_up_entry(given)
    rec.problems["duplicated_in_other_partitions"] = len(given)
    if not given:
        del rec.problems[GIVEN_UP_KEY]


def _moved_rows(rejected: pa.Table | None, ids) -> Any:
    """The mask of `rejected`'s rows that a cross-partition move set aside for one of `ids`."""
    import pyarrow.compute as pc

    return pc.and_(
        pc.is_in(rejected.column("source_id"), value_set=pa.array(sorted(ids), pa.int64())),
        pc.starts_with(rejected.column("reason"), OTHER_PARTITION_REASON),
    )


def _give_up(writer: CatalogWriter, name: str, rec: dict, ids: set[int], owners: dict[int, str]) -> int | str:
    """Move the rows of `ids` from `name`'s catalogue file to its `_rejected/` file; returns how many
    moved, or why the partition fails (a source its record lists in neither file). The record of the
    move (owner and catalogue flags of each source) is written before any file changes, so a kill at
    any later point leaves a record that knows where each row went."""
    import pyarrow.compute as pc

    table = writer.read_partition(name)
    drop = pc.is_in(table.column("source_id"), value_set=pa.array(sorted(ids), pa.int64()))
    gone, keep = table.filter(drop), table.filter(pc.invert(drop))
    gone_ids = [int(s) for s in gone.column("source_id").to_numpy()]
    earlier = writer.read_rejected(name)
    given = _given_up(rec.get("problems") or {})
    new = {s: (owners[s], int(f)) for s, f in zip(gone_ids, gone.column("flags").to_numpy(), strict=True)}
    # moved by a run of an earlier version killed between this catalogue file and its record (it wrote
    # no record of the move first): the rows are in `_rejected/` only, their flags as the move left them
    legacy = ids - set(new) - set(given)
    if legacy and earlier is not None:
        rows = earlier.filter(_moved_rows(earlier, legacy))
        new.update(_flags_before_move(rows, (rec.get("job") or {}).get("labels") or [], owners))
    lost = sorted(legacy - set(new))
    if lost:  # the same run of an earlier version, rerun by one before the fix of review 19 (it lost them)
        return (
            f"{len(lost)} source(s) its record lists (e.g. source_id {lost[0]}) are in neither "
            f"{writer.display(writer.catalog_path(name))} nor {writer.display(writer.rejected_path(name))}; "
            "the next run redoes the partition"
        )
    record = _record_of(rec)
    if new:
        first = _record_of(rec)
        _with_given_up(first, {**given, **new})
        writer.write_record(first)
    reasons = [f"{OTHER_PARTITION_REASON}{owners[s]}" for s in gone_ids]
    rejected = _rejected_table(gone, reasons)
    if earlier is not None:
        # rows of this move a run killed between the rejected file and the catalogue file set aside
        # already (they are in both) are not set aside twice; rows moved earlier stay set aside
        again = _moved_rows(earlier, gone_ids) if gone_ids else pa.array([False] * earlier.num_rows)
        earlier = earlier.filter(pc.invert(again))
        rejected = pa.concat_tables([earlier, rejected.cast(earlier.schema)])
    record.output_rows = keep.num_rows
    record.rejected_rows = rejected.num_rows
    recount_flags(record, keep.column("flags").to_numpy())
    _with_given_up(record, {**given, **new})
    record.problems["unanchored_source_ids"] = [
        x for x in record.problems.get("unanchored_source_ids", []) if x not in ids
    ]
    writer.write_partition(name, keep, record, rejected=rejected)
    if gone.num_rows:
        log.warning(
            "partition %s: %d source(s) also in another partition moved to %s",
            name,
            gone.num_rows,
            writer.display(writer.rejected_path(name)),
        )
    return gone.num_rows


def _flags_before_move(
    rows: pa.Table, labels: list[str], owners: dict[int, str]
) -> dict[int, tuple[str, int]]:
    """{source_id: (owner, catalogue flags)} of rows moved to `_rejected/` without a record of their
    flags: those of the rejected row less DUPLICATE_SOURCE (never in the catalogue) and NO_PREDICTION
    (which those versions set on every row they moved), NO_PREDICTION set again where the predictor
    set it: exactly where it left every label NaN."""
    out: dict[int, tuple[str, int]] = {}
    for row in rows.to_pylist():
        s = int(row["source_id"])
        if s in out:
            continue
        flags = int(row["flags"]) & ~_LEGACY_MOVED_FLAGS
        values = [row.get(lab) for lab in labels if lab in row]
        if values and all(v is None or v != v for v in values):
            flags |= int(SourceFlag.NO_PREDICTION)
        out[s] = (owners[s], flags)
    return out


def _restore_given_up(writer: CatalogWriter, done: dict[str, dict]) -> tuple[dict[str, int], dict[str, dict]]:
    """Bring back into each partition's catalogue file the sources it gave up to a partition that no
    longer holds them (redone without them, failed, or gone), or whose copy now ranks worse than the one
    given up (`row_rank`; the owner choice then runs on both); `done` is updated. Returns the rows
    brought back by partition, and the partitions failed because such a row is in neither of their
    files (removed by hand): {name: {"error", "rows"}}; the owners are checked again after a failure."""
    restored: dict[str, int] = {}
    failed: dict[str, dict] = {}
    for _ in range(len(done) + 1):
        held: dict[str, dict[int, int]] = {}  # owner -> {source_id: rank} of its catalogue file's rows
        failed_now = False
        for name in sorted(done):
            given = _given_up(done[name].get("problems") or {})
            back: dict[int, tuple[str, int]] = {}
            for s, (owner, flags) in given.items():
                if owner not in held:
                    held[owner] = _ranks_held(writer, owner) if owner in done else {}
                # gone from the owner, or its copy now worse (redone without a prediction, say: until
                # session 30 that one was kept and the better copy stayed set aside)
                if held[owner].get(s, 3) > int(row_rank(np.array([flags]))[0]):
                    back[s] = given[s]
            if not back:
                continue
            n = _bring_back(writer, name, done, given, back)
            if isinstance(n, str):
                rec = done.pop(name)
                _fail(writer, name, rec, n)
                failed[name] = {"error": n, "rows": int(rec.get("output_rows") or 0)}
                failed_now = True
                continue
            restored[name] = restored.get(name, 0) + n
        if not failed_now:
            break
    return restored, failed


def _ranks_held(writer: CatalogWriter, name: str) -> dict[int, int]:
    """{source_id: `row_rank`} of the rows in a partition's catalogue file."""
    t = writer.read_partition(name, columns=["source_id", "flags"])
    ranks = row_rank(t.column("flags").to_numpy())
    return dict(zip(t.column("source_id").to_numpy().tolist(), ranks.tolist(), strict=True))


def _bring_back(
    writer: CatalogWriter,
    name: str,
    done: dict[str, dict],
    given: dict[int, tuple[str, int]],
    back: dict[int, tuple[str, int]],
) -> int | str:
    """Move the rows of `back` (given up to partitions that no longer hold them, or hold worse copies)
    from `name`'s `_rejected/` file into its catalogue file, with the flags they had there; rows already
    in it (put back by a run killed before `_rejected/` was rewritten) are not added twice. Those
    outside the partition's HEALPix range become unanchored again, for the owner choice; those inside
    it are anchored, as they were. Returns the rows added, or why they cannot be."""
    import pyarrow.compute as pc

    table = writer.read_partition(name)
    rejected = writer.read_rejected(name)
    ids = sorted(back)
    in_catalogue = set(np.intersect1d(table.column("source_id").to_numpy(), ids).tolist())
    rows, rest = None, rejected
    if rejected is not None:
        mask = _moved_rows(rejected, ids)
        rows, rest = rejected.filter(mask), rejected.filter(pc.invert(mask))
    found = set() if rows is None else {int(s) for s in rows.column("source_id").to_numpy()}
    owners = sorted({owner for owner, _ in back.values()})
    missing = sorted(set(ids) - in_catalogue - found)
    if missing:
        return (
            f"{len(missing)} source(s) it gave up to partition(s) {', '.join(owners)}, which no longer "
            f"hold them or hold a worse copy (e.g. source_id {missing[0]}), are in neither "
            f"{writer.display(writer.catalog_path(name))} nor {writer.display(writer.rejected_path(name))}; "
            "the next run redoes the partition"
        )
    added = 0
    if rows is not None and rows.num_rows:
        sids = rows.column("source_id").to_numpy()
        _, first = np.unique(sids, return_index=True)  # one row per source
        rows = rows.take([int(i) for i in sorted(first) if int(sids[i]) not in in_catalogue])
        rows = rows.drop_columns(["reason"])
        flags = pa.array([back[int(s)][1] for s in rows.column("source_id").to_numpy()], pa.int64())
        rows = rows.set_column(rows.schema.get_field_index("flags"), table.schema.field("flags"), flags)
        added = rows.num_rows
        table = pa.concat_tables([table, rows.cast(table.schema)]).sort_by("source_id")
    record = _record_of(done[name])
    _with_given_up(record, {s: v for s, v in given.items() if s not in back})
    # outside the partition's range (all of a single file's) they are unanchored again, for the owner
    # choice; inside it a row keeps its range's preference (until session 30 it lost it)
    rng = record.hpx8_range
    outside = {s for s in ids if not rng or not rng[0] <= (s >> 43) <= rng[1]}
    record.problems["unanchored_source_ids"] = sorted(
        {int(x) for x in record.problems.get("unanchored_source_ids", [])} | outside
    )
    record.output_rows = table.num_rows
    record.rejected_rows = 0 if rest is None else rest.num_rows
    recount_flags(record, table.column("flags").to_numpy())
    writer.write_partition(name, table, record, rejected=rest, catalogue_first=True)
    done[name] = dict(record.__dict__)
    log.warning(
        "partition %s: %d source(s) it had given up to partition(s) %s, which no longer hold them or "
        "hold a worse copy, brought back from %s into %s",
        name,
        len(ids),
        ", ".join(owners),
        writer.display(writer.rejected_path(name)),
        writer.display(writer.catalog_path(name)),
    )
    return added


def _fail(writer: CatalogWriter, name: str, rec: dict[str, Any], message: str) -> None:
    """Record a done partition as failed (its files go first, as for a partition failed in the job),
    so the next run redoes it."""
    for path in remove_partition_files(writer, name):
        log.warning("partition %s failed: removed %s", name, writer.display(path))
    inputs = rec.get("inputs") or {}
    writer.write_record(
        PartitionRecord(
            partition=name,
            status="failed",
            input_rows=int(rec.get("input_rows") or 0),
            output_rows=0,
            inputs={"xp": inputs.get("xp"), "gaia_source": inputs.get("gaia_source")},
            error=message,
            job=rec.get("job") or {},
        )
    )
    log.error("partition %s FAILED: %s", name, message)
