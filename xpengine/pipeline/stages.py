"""The two stages the Ray job runs, as plain Python (no Ray import).

`featurize_partition` reads one XP partition (and its gaia_source partner) in chunks, joins the optional
2MASS and E(B−V) inputs (`joined_chunks`; a compact `ModelInputs_*.parquet` partition of `xpengine
compact` already holds them), builds model tokens, and yields one batch (dict of numpy arrays) per chunk. Every
row of the partition is yielded exactly once; the rows of the last chunk carry the partition's total row
count in `partition_rows` (−1 on the other rows) so the writer knows when a partition is complete. When
the partition cannot be read, a single marker row (`source_id` −1, `partition_rows` −2) carries the
error message in `read_error`.

`CatalogPredictor` is the map_batches callable: `xpengine.inference.catalogue.CatalogPredictor` (which
`Predictor.from_xp` uses too: it loads the model once and turns token batches into catalogue columns with
flags) with the job's per-device settings (`xpengine.pipeline.tuning`: batch size and torch threads from
the measured table or a short calibration at actor start, unless given).

Both stages add the seconds they spent on each batch, spread over its rows, as `stage_read_s` (read,
join, tokens) and `stage_predict_s` / `stage_model_s` (the predictor stage / the model's forward
passes inside it); the driver sums them into the job summary. They never reach the catalogue.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from xpengine.features.flags import SourceFlag
from xpengine.inference.catalogue import PARALLAX_COLUMNS, PASSTHROUGH_FLOAT64, catalogue_batch
from xpengine.inference.catalogue import CatalogPredictor as _CatalogPredictor

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
        "stage_read_s": np.zeros(1),
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
    t0 = time.perf_counter()
    for joined in joined_chunks(task, chunk_rows=chunk_rows, tmass=tmass, ebv=ebv):
        out = catalogue_batch(joined, vocab, task.name, representation=representation)
        n = len(out["source_id"])
        out["stage_read_s"] = np.full(n, (time.perf_counter() - t0) / max(n, 1))
        total += n
        if pending is not None:
            yield pending
        pending = out
        t0 = time.perf_counter()
    if pending is None:
        raise ValueError(f"{task.xp}: no rows")
    pending["partition_rows"][:] = total
    yield pending


class CatalogPredictor(_CatalogPredictor):
    """The job's predictor stage: `xpengine.inference.catalogue.CatalogPredictor` with per-device
    settings and stage timings.

    batch_size / torch_threads None: from the measured table (`xpengine.pipeline.tuning.MEASURED`)
    for this device and model architecture, else a short calibration here at actor start (batch size;
    thread counts up to `cpus` when the actor has several CPUs). `setting` records the choice."""

    def __init__(
        self,
        model: str,
        labels: list[str] | None,
        *,
        device: str = "auto",
        dtype: str = "float32",
        batch_size: int | None = None,
        torch_threads: int | None = None,
        cpus: float = 1.0,
        calibration_budget_s: float = 1.0,
        **kwargs: Any,
    ) -> None:
        t_start = time.perf_counter()
        import torch

        from xpengine.pipeline import tuning

        if torch_threads:
            torch.set_num_threads(int(torch_threads))
        super().__init__(model, labels, device=device, dtype=dtype, batch_size=batch_size or 1, **kwargs)
        t_loaded = time.perf_counter()
        dev = self.predictor.device
        signature = tuning.device_signature(
            dev.type, cuda_name=torch.cuda.get_device_name(dev) if dev.type == "cuda" else None
        )
        architecture = tuning.architecture_name(self.predictor.checkpoint.model_config)
        entry = tuning.lookup(tuning.MEASURED, signature, architecture)
        threads = torch.get_num_threads() if dev.type == "cpu" else None
        if batch_size:
            self.setting = tuning.Setting(batch_size, threads, "config")
        elif entry is not None:
            self.setting = tuning.Setting(
                int(entry["batch_size"]), threads, f"table: {signature}, {architecture}"
            )
        else:
            self.setting = self._calibrate(dev.type, int(max(1, cpus)), torch_threads, calibration_budget_s)
        self.batch_size = self.setting.batch_size
        if dev.type == "cpu" and self.setting.torch_threads:
            torch.set_num_threads(self.setting.torch_threads)
        log.info(
            "predictor on %s (%s, %s): batch %d, %s torch thread(s), %s%s; torch and model loaded in "
            "%.2f s, settings in %.2f s",
            signature,
            architecture,
            self.predictor.autocast_dtype,
            self.setting.batch_size,
            self.setting.torch_threads,
            self.setting.source,
            f" {self.setting.rates}" if self.setting.rates else "",
            t_loaded - t_start,
            time.perf_counter() - t_loaded,
        )
        self._model_s = 0.0
        predict = self.predictor.predict

        def timed_predict(*args: Any, **kw: Any) -> dict[str, np.ndarray]:
            t0 = time.perf_counter()
            try:
                return predict(*args, **kw)
            finally:
                self._model_s += time.perf_counter() - t0

        self.predictor.predict = timed_predict  # this actor's own Predictor

    def _calibrate(self, device_type: str, cpus: int, torch_threads: int | None, budget_s: float):
        import torch

        from xpengine.pipeline import tuning

        pred = self.predictor
        context = self.inputs if self.inputs is not None else pred.default_inputs
        cols = pred.vocabulary.indices(context)
        rng = np.random.default_rng(0)
        batches = tuning.CPU_BATCHES if device_type == "cpu" else tuning.GPU_BATCHES
        n = max(batches)
        values = np.full((n, len(pred.vocabulary)), np.nan, dtype=np.float32)
        centre = np.asarray(pred.standardization.center, dtype=np.float64)[cols]
        scale = np.asarray(pred.standardization.scale, dtype=np.float64)[cols]
        values[:, cols] = centre + scale * rng.standard_normal((n, len(cols)))
        request = list(self.request)

        def run(b: int) -> None:
            pred.predict(values[:b], None, request, inputs=self.inputs, batch_size=b)

        # thread counts are tried only for an actor with several CPUs and no thread count given;
        # otherwise torch keeps the threads it has (Ray sets one per CPU of the actor)
        threads: list[int | None] = [None]
        if device_type == "cpu" and not torch_threads and cpus > 1:
            threads = sorted({2**k for k in range(8) if 2**k <= cpus} | {cpus})
        rates = tuning.calibrate(
            run, batches, threads=threads, set_threads=torch.set_num_threads, budget_s=budget_s
        )
        batch, n_threads = tuning.choose(rates)
        if device_type == "cpu" and n_threads is None:
            n_threads = torch.get_num_threads()
        return tuning.Setting(
            batch,
            n_threads if device_type == "cpu" else None,
            "calibrated",
            rates={f"{b}x{t}" if t else str(b): r for (b, t), r in rates.items()},
        )

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        t0 = time.perf_counter()
        self._model_s = 0.0
        out = super().__call__(batch)
        n = max(len(out["source_id"]), 1)
        out["stage_predict_s"] = np.full(len(out["source_id"]), (time.perf_counter() - t0) / n)
        out["stage_model_s"] = np.full(len(out["source_id"]), self._model_s / n)
        out["stage_batch_size"] = np.full(len(out["source_id"]), self.batch_size, dtype=np.int32)
        if "stage_read_s" in batch:
            out["stage_read_s"] = np.asarray(batch["stage_read_s"], dtype=np.float64)
        return out
