"""The two stages the Ray job runs, as plain Python (no Ray import).

`featurize_partition` reads one XP partition (and its gaia_source partner) in chunks, joins the optional
2MASS and E(B−V) inputs (`joined_chunks`; a compact `ModelInputs_*.parquet` partition of `xpengine
compact` already holds them), builds model tokens, and yields one batch (dict of numpy arrays) per chunk. Every
row of the partition is yielded exactly once; the rows of the last chunk carry the partition's total row
count in `partition_rows` (−1 on the other rows) so the writer knows when a partition is complete. When
the partition cannot be read, a single marker row (`source_id` −1, `partition_rows` −2) carries the
error message in `read_error`.

`CatalogPredictor` (from `xpengine.inference.catalogue`, where `Predictor.from_xp` uses it too) is the
map_batches callable: it loads the model once and turns token batches into catalogue columns with flags.
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from xpengine.features.flags import SourceFlag
from xpengine.inference.catalogue import (
    PARALLAX_COLUMNS,
    PASSTHROUGH_FLOAT64,
    CatalogPredictor,
    catalogue_batch,
)

__all__ = ["CatalogPredictor", "PartitionTask", "catalogue_batch", "featurize_partition", "joined_chunks"]

log = logging.getLogger(__name__)

ERROR_MARKER_ROWS = -2


@dataclass(frozen=True)
class PartitionTask:
    """One unit of work: an XP file and its optional gaia_source partner."""

    name: str
    xp: str
    gaia: str | None = None
    hpx8_range: tuple[int, int] | None = None

    def to_row(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "xp": self.xp,
            "gaia": self.gaia or "",
            "hpx_lo": -1 if self.hpx8_range is None else self.hpx8_range[0],
            "hpx_hi": -1 if self.hpx8_range is None else self.hpx8_range[1],
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> PartitionTask:
        lo, hi = int(row["hpx_lo"]), int(row["hpx_hi"])
        return cls(
            name=str(row["name"]),
            xp=str(row["xp"]),
            gaia=str(row["gaia"]) or None,
            hpx8_range=None if lo < 0 else (lo, hi),
        )


def _read_side_table(url: str | None, hpx8_range: tuple[int, int] | None):
    """An optional side input (2MASS, E(B−V)) restricted to a partition's source_id range."""
    if not url:
        return None
    from xpengine import io

    table = io.read_table(url)
    if hpx8_range is not None:
        import pyarrow.compute as pc

        lo = hpx8_range[0] << 43
        hi = (hpx8_range[1] + 1) << 43
        sid = table.column("source_id")
        table = table.filter(pc.and_(pc.greater_equal(sid, lo), pc.less(sid, hi)))
    return table


def _empty_marker(name: str, n_tokens: int, message: str) -> dict[str, np.ndarray]:
    return {
        "partition": np.array([name]),
        "source_id": np.array([-1], dtype=np.int64),
        "values": np.full((1, n_tokens), np.nan, dtype=np.float32),
        "errors": np.zeros((1, n_tokens), dtype=np.float32),
        "flags": np.array([int(SourceFlag.NO_PREDICTION)], dtype=np.int64),
        **{c: np.array([np.nan]) for c in PASSTHROUGH_FLOAT64 + PARALLAX_COLUMNS},
        "phot_g_mean_mag": np.array([np.nan], dtype=np.float32),
        "partition_rows": np.array([ERROR_MARKER_ROWS], dtype=np.int64),
        "read_error": np.array([message]),
    }


def featurize_partition(
    batch: dict[str, np.ndarray],
    *,
    vocabulary_json: str,
    chunk_rows: int,
    tmass: str | None = None,
    ebv: str | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """map_batches generator: for each partition row in `batch`, yield its token batches.

    Never raises for a bad partition: the error becomes a marker row (see the module docstring).
    """
    from xpengine.features.vocabulary import Vocabulary

    vocab = Vocabulary.from_dict(json.loads(vocabulary_json))
    for i in range(len(batch["name"])):
        task = PartitionTask.from_row({k: v[i] for k, v in batch.items()})
        try:
            yield from _featurize_one(task, vocab, chunk_rows=chunk_rows, tmass=tmass, ebv=ebv)
        except Exception as exc:  # a corrupt partition fails alone
            msg = f"{type(exc).__name__}: {exc}"
            log.error("partition %s failed: %s\n%s", task.name, msg, traceback.format_exc())
            yield _empty_marker(task.name, len(vocab), msg)


def joined_chunks(
    task: PartitionTask, *, chunk_rows: int, tmass: str | None, ebv: str | None
) -> Iterator[Any]:
    """The partition's rows, XP left-joined with gaia_source, 2MASS and E(B−V) (`io.join_sources`),
    as pyarrow Tables of at most `chunk_rows` rows, in the file's order.

    A model-inputs file (`io.is_model_inputs`: `xpengine compact` output) is read as it is: its
    non-XP columns are the gaia_source, 2MASS and E(B−V) columns it was made with. A table given here
    as well replaces the file's columns of the same names (a new dust map, say)."""
    from xpengine import io

    gaia = io.read_gaia_source(task.gaia) if task.gaia else None
    tmass_t = _read_side_table(tmass, task.hpx8_range)
    ebv_t = _read_side_table(ebv, task.hpx8_range)
    if not io.is_model_inputs(task.xp):
        for chunk in io.iter_xp_continuous(task.xp, batch_rows=chunk_rows):
            yield io.join_sources(chunk, gaia, tmass=tmass_t, ebv=ebv_t)
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
        yield io.join_sources(chunk, gaia, tmass=tmass_t, ebv=ebv_t)


def _featurize_one(
    task: PartitionTask, vocab, *, chunk_rows: int, tmass: str | None, ebv: str | None
) -> Iterator[dict[str, np.ndarray]]:
    from xpengine.spectra.representation import token_representation

    representation = token_representation()
    pending: dict[str, np.ndarray] | None = None
    total = 0
    for joined in joined_chunks(task, chunk_rows=chunk_rows, tmass=tmass, ebv=ebv):
        out = catalogue_batch(joined, vocab, task.name, representation=representation)
        total += len(out["source_id"])
        if pending is not None:
            yield pending
        pending = out
    if pending is None:
        raise ValueError(f"{task.xp}: no rows")
    pending["partition_rows"][:] = total
    yield pending
