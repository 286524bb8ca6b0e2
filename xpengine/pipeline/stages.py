"""The two stages the Ray job runs, as plain Python (no Ray import).

`featurize_partition` reads one XP partition (and its gaia_source partner) in chunks, joins the optional 2MASS
and E(B−V) inputs (`joined_chunks`; a `ModelInputs_*.parquet` of `xpengine compact` already holds them), builds
model tokens, and yields one batch (dict of numpy arrays) per chunk. Every row is yielded exactly once, keyed by
the partition's index in the driver's plan (`bookkeeping.PARTITION_KEY`); its row count, or the error that
stopped its read, goes to the job's `Ledger` with the read's seconds and its files' size and mtime.
The predictor stage that takes these batches is `xpengine.pipeline.predictor_stage.CatalogPredictor`.
"""

from __future__ import annotations

import functools
import logging
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from xpengine.features.astrometry import FALLBACK_ZERO_POINT_MAS
from xpengine.inference.catalogue import catalogue_batch
from xpengine.pipeline.bookkeeping import PARTITION_KEY, input_fingerprints, report
from xpengine.pipeline.code_identity import check_worker_code

__all__ = ["PartitionTask", "catalogue_batch", "featurize_partition", "joined_chunks"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PartitionTask:
    """An XP file, its optional gaia_source partner, and the side columns it holds that the job uses (`own`)."""

    name: str
    xp: str
    gaia: str | None = None
    hpx8_range: tuple[int, int] | None = None
    own: tuple[str, ...] = ()

    def to_row(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "xp": self.xp,
            "gaia": self.gaia or "",
            "hpx_lo": -1 if self.hpx8_range is None else self.hpx8_range[0],
            "hpx_hi": -1 if self.hpx8_range is None else self.hpx8_range[1],
            "own": ",".join(self.own),
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> PartitionTask:
        lo, hi = int(row["hpx_lo"]), int(row["hpx_hi"])
        return cls(
            name=str(row["name"]),
            xp=str(row["xp"]),
            gaia=str(row["gaia"]) or None,
            hpx8_range=None if lo < 0 else (lo, hi),
            own=tuple(c for c in str(row.get("own") or "").split(",") if c),
        )


class _SideTable:
    """An optional side input (2MASS, E(B−V)) for one partition's chunks: its rows in the partition's
    source_id range, kept for the partition. A chunk's rows outside that range (misplaced rows, flagged
    OUTSIDE_PARTITION_RANGE; rare: a mis-assembled input) are looked up in the whole table, read once
    at the partition's first such chunk and kept to its end, so further such chunks do not read it
    again. Memory: the whole table while the range is read; with misplaced rows, the whole table from
    the first of them to the partition's end (no higher a peak than reading it again for each chunk)."""

    def __init__(self, url: str, hpx8_range: tuple[int, int] | None) -> None:
        from xpengine import io

        self.url = url
        self._whole = None  # the whole table, once a misplaced row needed it
        table = io.read_table(url)
        self.bounds = None if hpx8_range is None else (hpx8_range[0] << 43, (hpx8_range[1] + 1) << 43)
        if self.bounds is not None:
            table = table.filter(self._outside(table.column("source_id"), invert=True))
        self.table = table

    def _outside(self, sid, *, invert: bool = False):
        import pyarrow.compute as pc

        lo, hi = self.bounds
        inside = pc.and_(pc.greater_equal(sid, lo), pc.less(sid, hi))
        return inside if invert else pc.invert(inside)

    def for_chunk(self, chunk):
        """The side rows the chunk's sources can need (a superset: `join_sources` left-joins them)."""
        if self.bounds is None:
            return self.table
        import pyarrow as pa
        import pyarrow.compute as pc

        from xpengine import io

        sid = chunk.column("source_id")
        outside = pc.unique(sid.filter(self._outside(sid)))
        if len(outside) == 0:
            return self.table
        if self._whole is None:  # read once for the partition, at its first misplaced row
            self._whole = io.read_table(self.url)
        whole = self._whole
        sid_type = whole.schema.field("source_id").type
        extra = whole.filter(pc.is_in(whole.column("source_id"), value_set=pc.cast(outside, sid_type)))
        return pa.concat_tables([self.table, extra])


def _read_side_table(url: str | None, hpx8_range: tuple[int, int] | None) -> _SideTable | None:
    return _SideTable(url, hpx8_range) if url else None


def _for_chunk(side: _SideTable | None, chunk):
    return None if side is None else side.for_chunk(chunk)


def _without_gaia_problems(chunk):
    """`chunk` (a model-inputs file's rows) with the `gaia_source ...` or `XP file ...` (its own columns)
    texts its `read_problem` got from the gaia_source it was made with (`io.join_sources` appends them
    last) taken out, and null where nothing else is left: a new gaia_source table replaces them."""
    from xpengine import io

    if io.READ_PROBLEM not in chunk.column_names:
        return chunk
    import pyarrow as pa
    import pyarrow.compute as pc

    i = chunk.schema.get_field_index(io.READ_PROBLEM)
    # each reader's text ends with where it was, "(data row N)", "(source_id ..., data rows A-B)": the
    # gaia part starts the text or follows the first such end
    pattern = r"(?s)(^|(\)); )(gaia_source|XP file) .*$"
    kept = pc.replace_substring_regex(
        pc.cast(chunk.column(i), pa.string()), pattern, r"\2", max_replacements=1
    )
    kept = pc.if_else(pc.equal(kept, ""), pa.scalar(None, pa.string()), kept)
    return chunk.set_column(i, io.READ_PROBLEM, kept)


@functools.lru_cache(maxsize=4)
def _vocabulary(vocabulary_json: str):
    """The model's vocabulary, built once per process (not once per partition)."""
    import json

    from xpengine.features.vocabulary import Vocabulary

    return Vocabulary.from_dict(json.loads(vocabulary_json))


def featurize_partition(
    batch: dict[str, np.ndarray],
    *,
    vocabulary_json: str,
    chunk_rows: int,
    tmass: str | None = None,
    ebv: str | None = None,
    ledger: Any = None,
    zero_point_fallback: float | None = FALLBACK_ZERO_POINT_MAS,
    code: dict[str, Any] | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """map_batches generator: for each partition row in `batch` (`PartitionTask.to_row()` and its
    `index` in the plan), yield its token batches keyed by `PARTITION_KEY`. code: the driver's
    (`code_identity.expected_code`): CodeMismatchError, before any read, under other xpengine code.

    With a `ledger`, never raises for a bad partition: the error goes to the ledger (a "failed" event)
    and the partition fails alone; a partition read to the end sends a "read" event with its row count
    before its last batch. Without one (a direct call) a bad partition raises.
    """
    # outside the partition's try: it stops the job. On the disk, at each partition: a long-lived actor
    # imports modules lazily, from files that may have been replaced since its start
    check_worker_code(code, "read stage", on_disk=True)
    vocab = _vocabulary(vocabulary_json)
    for i in range(len(batch["name"])):
        row = {k: v[i] for k, v in batch.items()}
        task = PartitionTask.from_row(row)
        index = int(row.get("index", 0))
        read_s = [0.0, time.perf_counter()]  # seconds of the chunks read, and when the current one began
        started_at = time.time()  # wall clock: the job's start-up breakdown (first read began)
        try:
            yield from _featurize_one(
                task,
                index,
                vocab,
                chunk_rows=chunk_rows,
                tmass=tmass,
                ebv=ebv,
                ledger=ledger,
                read_s=read_s,
                started_at=started_at,
                zero_point_fallback=zero_point_fallback,
            )
        except Exception as exc:  # a corrupt partition fails alone
            if ledger is None:
                raise
            msg = f"{type(exc).__name__}: {exc}"
            log.error("partition %s failed: %s\n%s", task.name, msg, traceback.format_exc())
            elapsed = read_s[0] + time.perf_counter() - read_s[1]
            report(
                ledger,
                {
                    "event": "failed",
                    "index": index,
                    "error": msg,
                    "read_s": elapsed,
                    "started_at": started_at,
                },
            )


def joined_chunks(
    task: PartitionTask, *, chunk_rows: int, tmass: str | None, ebv: str | None
) -> Iterator[Any]:
    """The partition's rows, XP left-joined with gaia_source, 2MASS and E(B−V) (`io.join_sources`),
    as pyarrow Tables of at most `chunk_rows` rows, in the file's order.

    A model-inputs file (`io.is_model_inputs`: `xpengine compact` output) is read as it is: its
    non-XP columns are the gaia_source, 2MASS and E(B−V) columns it was made with. A table given here
    as well replaces the file's columns of the same names (a new dust map, say); a gaia_source table
    also replaces the `gaia_source ...` read problems of the one the file was made with.
    An XP file's own side columns join where the plan chose them (`task.own`: an ADQL join's G, parallax,
    J/H/Ks, ... for each side table not given otherwise; `io.read_embedded_columns`).
    The 2MASS and E(B−V) rows come from the partition's source_id range, and for a row outside it
    (OUTSIDE_PARTITION_RANGE) from the whole table, read once for the partition (`_SideTable`)."""
    from xpengine import io

    own = io.read_embedded_columns(task.xp, columns=task.own) if task.own else None  # as planned
    gaia = io.read_gaia_source(task.gaia) if task.gaia else None
    tmass_t = _read_side_table(tmass, task.hpx8_range)
    ebv_t = _read_side_table(ebv, task.hpx8_range)

    def joined(chunk):
        chunk = chunk if own is None else io.join_sources(chunk, own, gaia_label="XP file")
        return io.join_sources(chunk, gaia, tmass=_for_chunk(tmass_t, chunk), ebv=_for_chunk(ebv_t, chunk))

    if not io.is_model_inputs(task.xp):
        for chunk in io.iter_xp_continuous(task.xp, batch_rows=chunk_rows):
            yield joined(chunk)
        return
    replaced: list[str] = []
    if gaia is not None:
        replaced += [c for c in gaia.column_names if c not in ("source_id", io.READ_PROBLEM)]
    if tmass_t is not None:
        replaced += list(io.TMASS_COLUMNS)
    if ebv_t is not None:
        replaced += list(io.EBV_COLUMNS)
    logged = False
    for chunk in io.iter_model_inputs(task.xp, batch_rows=chunk_rows):
        drop = [c for c in replaced if c in chunk.column_names]
        if drop:
            if not logged:
                log.info("%s: columns %s replaced by the tables given to the job", task.xp, drop)
                logged = True
            chunk = chunk.drop_columns(drop)
        if gaia is not None:  # its read problems replace those of the gaia_source the file was made with
            chunk = _without_gaia_problems(chunk)
        yield joined(chunk)


def _featurize_one(
    task: PartitionTask,
    index: int,
    vocab,
    *,
    chunk_rows: int,
    tmass: str | None,
    ebv: str | None,
    ledger: Any,
    read_s: list[float],
    started_at: float | None = None,
    zero_point_fallback: float | None = FALLBACK_ZERO_POINT_MAS,
) -> Iterator[dict[str, np.ndarray]]:
    from xpengine.spectra.representation import token_representation

    representation = token_representation()
    # the files' size and mtime as opened: the driver checks them again when it writes the partition
    opened = input_fingerprints(task.xp, task.gaia) if ledger is not None else None
    pending: dict[str, np.ndarray] | None = None
    total, zpf = 0, zero_point_fallback
    for joined in joined_chunks(task, chunk_rows=chunk_rows, tmass=tmass, ebv=ebv):
        out = catalogue_batch(joined, vocab, representation=representation, zero_point_fallback=zpf)
        n = len(out["source_id"])
        out[PARTITION_KEY] = np.full(n, index, dtype=np.int32)
        total += n
        read_s[0] += time.perf_counter() - read_s[1]
        if pending is not None:
            yield pending
            read_s[1] = time.perf_counter()
        pending = out
    if pending is None:
        read_s[0] += time.perf_counter() - read_s[1]
        # a file of no sources (a header-only file) loses nothing: its partition is done with no rows
        # (the driver writes an empty catalogue file for it, `finish._finish_partition`), not failed
        log.warning("%s holds no sources: its partition is done with no rows", task.xp)
    # the row count goes ahead of the last batch, so the driver knows it when those rows arrive
    read = {"event": "read", "index": index, "rows": total, "read_s": read_s[0], "started_at": started_at}
    report(ledger, {**read, "inputs": opened})
    if pending is not None:
        yield pending
