"""The Ray Data catalogue job: discover → read+features (CPU tasks) → Predictor actors → write.

Data flow (streaming, nothing materialised):

    from_items(partitions) ─map_batches(featurize_partition, one task per partition, generator)─▶
    token batches ─map_batches(CatalogPredictor, actor pool, GPUs when present)─▶ catalogue rows ─▶
    driver: gather rows per partition; when a partition's rows are all in, sort by source_id and write
    it atomically with its manifest record.

The driver only handles the small catalogue rows (~100 bytes per source); parsing and the model run on
the cluster. Partitions already done are skipped (resume) unless `overwrite`.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from xpengine.catalog.schema import catalog_schema
from xpengine.pipeline.config import InferenceConfig
from xpengine.pipeline.stages import (
    ERROR_MARKER_ROWS,
    CatalogPredictor,
    PartitionTask,
    featurize_partition,
    file_md5,
)
from xpengine.pipeline.writer import CatalogWriter, PartitionRecord

__all__ = ["JobSummary", "plan_partitions", "run_inference"]

log = logging.getLogger(__name__)


@dataclass
class JobSummary:
    output: str
    partitions_total: int
    partitions_skipped: list[str] = field(default_factory=list)
    partitions_done: list[str] = field(default_factory=list)
    partitions_failed: dict[str, str] = field(default_factory=dict)
    sources_written: int = 0
    wall_time_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.partitions_failed

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["sources_per_s"] = self.sources_written / self.wall_time_s if self.wall_time_s else None
        d["ok"] = self.ok
        return d


def default_inputs() -> tuple[list[str], list[str | None]]:
    """The embedded default input: the bundled simulated sky (bulk partitions with their gaia_source
    partners) and the real Gaia DR3 archive samples (single files without gaia_source: they come out
    flagged NO_GAIA_SOURCE / NO_GAIA_PHOTOMETRY, most without a prediction)."""
    from importlib.resources import files

    data = files("xpengine") / "data"
    sky = str(data / "sky")
    samples_dir = str(data / "gaia_dr3_samples")
    inputs: list[str] = []
    gaia: list[str | None] = []
    if os.path.isdir(sky):
        inputs.append(sky)
        gaia.append(sky)
    if os.path.isdir(samples_dir):
        for name in sorted(os.listdir(samples_dir)):
            if name.startswith("XP_CONTINUOUS"):
                inputs.append(os.path.join(samples_dir, name))
                gaia.append(None)
    if not inputs:
        raise FileNotFoundError(f"no embedded default data under {data}; give --input")
    return inputs, gaia


def _with_default_side_inputs(cfg: InferenceConfig) -> InferenceConfig:
    """The embedded sky's 2MASS and E(B−V) tables, unless the user gave their own."""
    import dataclasses
    from importlib.resources import files

    sky = files("xpengine") / "data" / "sky"
    changes = {}
    for key, name in (("tmass", "tmass.parquet"), ("ebv", "ebv.parquet")):
        path = str(sky / name)
        if getattr(cfg, key) is None and os.path.isfile(path):
            changes[key] = path
    return dataclasses.replace(cfg, **changes)


def plan_partitions(cfg: InferenceConfig) -> list[PartitionTask]:
    """Pair every XP partition of the inputs with its gaia_source partner."""
    from xpengine import io

    if cfg.input:
        inputs = list(cfg.input)
        gaia: list[str | None] = list(cfg.gaia_source or [])
        if gaia and len(gaia) not in (1, len(inputs)):
            raise ValueError(
                f"give one --gaia-source for all inputs or one per input; got {len(gaia)} for {len(inputs)} inputs"
            )
    else:
        inputs, gaia = default_inputs()
    tasks: list[PartitionTask] = []
    seen: set[str] = set()
    for k, xp in enumerate(inputs):
        gs = None
        if gaia:
            gs = gaia[k] if len(gaia) == len(inputs) else gaia[0]
        for p in io.discover_partitions(xp, gs):
            if p.name in seen:
                raise ValueError(
                    f"two input partitions are both named {p.name!r} ({p.xp}); names must be unique"
                )
            seen.add(p.name)
            hpx = None if p.hpx8_min is None else (p.hpx8_min, p.hpx8_max)
            tasks.append(PartitionTask(name=p.name, xp=p.xp_url, gaia=p.gaia_url, hpx8_range=hpx))
    if not tasks:
        raise FileNotFoundError(f"no XpContinuousMeanSpectrum partitions found in {inputs}")
    return tasks


def _model_vocabulary_json(model: str) -> str:
    from xpengine.inference.predictor import resolve_model_path

    with open(os.path.join(resolve_model_path(model), "vocabulary.json")) as f:
        return f.read()


def _model_provenance(model: str) -> dict[str, Any]:
    import hashlib

    from xpengine.inference.predictor import resolve_model_path

    d = resolve_model_path(model)
    h = hashlib.sha256()
    with open(os.path.join(d, "model.safetensors"), "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return {"model": model, "model_dir": os.path.basename(os.path.normpath(d)), "model_sha256": h.hexdigest()}


def _init_ray(cfg: InferenceConfig) -> None:
    import ray

    if ray.is_initialized():
        return
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=True)
    else:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        # address="local": a new cluster even when a stale `ray start` address file exists
        ray.init(address="local", num_cpus=cfg.num_cpus, include_dashboard=False, log_to_driver=True)


def _resources(cfg: InferenceConfig) -> tuple[float, float]:
    import ray

    gpus = cfg.gpus_per_actor
    if gpus is None:
        gpus = 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
    cpus = cfg.cpus_per_actor
    total_cpus = ray.cluster_resources().get("CPU", 1)
    if gpus == 0 and cfg.actors * cpus + cfg.read_cpus > total_cpus:
        # a CPU actor pool that takes every CPU deadlocks the read tasks: leave room for one reader
        cpus = max(0.25, (total_cpus - cfg.read_cpus) / cfg.actors)
        log.info(
            "CPU actor pool: %d actor(s) with %.2f CPU each, leaving %.2f for reads",
            cfg.actors,
            cpus,
            cfg.read_cpus,
        )
    return gpus, cpus


def run_inference(cfg: InferenceConfig) -> JobSummary:
    """Run the catalogue job; returns its summary (also written to OUTPUT/_SUMMARY.json)."""
    import ray

    cfg.validate()
    if not cfg.input:
        cfg = _with_default_side_inputs(cfg)
    t0 = time.perf_counter()
    output = cfg.output or os.path.abspath("xpengine-catalog")
    writer = CatalogWriter(output)
    tasks = plan_partitions(cfg)
    summary = JobSummary(output=output, partitions_total=len(tasks))
    if not cfg.overwrite:
        done = writer.done_partitions()
        summary.partitions_skipped = sorted(t.name for t in tasks if t.name in done)
        tasks = [t for t in tasks if t.name not in done]
        if summary.partitions_skipped:
            log.info("resuming: %d partition(s) already done, skipped", len(summary.partitions_skipped))
    log.info("catalogue → %s (%d partition(s) to do)", output, len(tasks))
    if not tasks:
        summary.wall_time_s = time.perf_counter() - t0
        writer.write_summary(summary.to_dict())
        return summary

    _init_ray(cfg)
    gpus, cpus = _resources(cfg)
    torch_threads = cfg.torch_threads
    if torch_threads is None and gpus == 0:
        # Ray pins a 1-CPU actor's torch to one thread; on a CPU node the read stage is fused into the
        # actor (same resources), so the actor may use the reader's CPU too while it predicts
        import math

        torch_threads = max(1, math.ceil(cpus + cfg.read_cpus))
    vocab_json = _model_vocabulary_json(cfg.model)
    provenance = {
        **_model_provenance(cfg.model),
        "xpengine_version": __import__("xpengine").__version__,
        "config": {k: v for k, v in cfg.to_dict().items() if k not in ("address",)},
    }
    ds = ray.data.from_items([t.to_row() for t in tasks], override_num_blocks=len(tasks))
    ds = ds.map_batches(
        featurize_partition,
        batch_size=1,
        num_cpus=cfg.read_cpus,
        fn_kwargs={
            "vocabulary_json": vocab_json,
            "chunk_rows": cfg.chunk_rows,
            "tmass": cfg.tmass,
            "ebv": cfg.ebv,
        },
    )
    ds = ds.map_batches(
        CatalogPredictor,
        batch_size=cfg.batch_size,
        concurrency=cfg.actors,
        num_gpus=gpus,
        num_cpus=cpus,
        fn_constructor_kwargs={
            "model": cfg.model,
            "labels": cfg.labels,
            "device": "cuda" if gpus > 0 else "cpu",
            "dtype": cfg.dtype,
            "batch_size": cfg.batch_size,
            "inputs": cfg.inputs,
            "torch_threads": torch_threads,
            "giant_logg_max": cfg.giant_logg_max,
            "giant_teff_range": tuple(cfg.giant_teff_range),
            "giant_abs_g_max": cfg.giant_abs_g_max,
            "max_error": cfg.max_error,
            "max_relative_error": cfg.max_relative_error,
        },
    )

    by_name = {t.name: t for t in tasks}
    buffers: dict[str, list[dict[str, np.ndarray]]] = defaultdict(list)
    received: dict[str, int] = defaultdict(int)
    expected: dict[str, int] = {}
    started: dict[str, float] = {}
    last_report = time.perf_counter()
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        for name in np.unique(batch["partition"]):
            sel = batch["partition"] == name
            part = {k: v[sel] for k, v in batch.items()}
            started.setdefault(name, time.perf_counter())
            marker = part["partition_rows"] == ERROR_MARKER_ROWS
            if marker.any():
                msg = str(part["read_error"][marker][0])
                _record_failure(writer, by_name[name], msg, summary, received.get(name, 0))
                buffers.pop(name, None)
                expected[name] = -1
                continue
            if expected.get(name) == -1:
                continue  # rows of a partition that already failed
            buffers[name].append(part)
            received[name] += int(sel.sum())
            totals = part["partition_rows"][part["partition_rows"] >= 0]
            if totals.size:
                expected[name] = int(totals[0])
            if name in expected and received[name] == expected[name]:
                _finish_partition(
                    writer,
                    by_name[name],
                    buffers.pop(name),
                    cfg,
                    provenance,
                    summary,
                    time.perf_counter() - started[name],
                )
        now = time.perf_counter()
        if now - last_report >= cfg.progress_interval_s:
            last_report = now
            _log_progress(summary, len(tasks), received, now - t0)

    incomplete = [
        t.name
        for t in tasks
        if t.name not in summary.partitions_done and t.name not in summary.partitions_failed
    ]
    for name in incomplete:
        _record_failure(
            writer,
            by_name[name],
            f"incomplete: received {received.get(name, 0)} rows, expected {expected.get(name, 'unknown')}",
            summary,
            received.get(name, 0),
        )
    summary.wall_time_s = time.perf_counter() - t0
    writer.write_summary(summary.to_dict())
    _log_summary(summary)
    return summary


def _finish_partition(writer, task, parts, cfg, provenance, summary, wall_s) -> None:
    cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    order = np.argsort(cols["source_id"], kind="stable")
    cols = {k: v[order] for k, v in cols.items()}
    sid = cols["source_id"].astype(np.int64)
    dup = np.flatnonzero(sid[1:] == sid[:-1])
    if dup.size:
        _record_failure(writer, task, f"duplicated source_id {int(sid[dup[0]])} in input", summary, len(sid))
        return
    inputs = {"xp": task.xp, "gaia_source": task.gaia}
    if cfg.checksum:
        inputs["xp_md5"] = file_md5(task.xp)
        if task.gaia:
            inputs["gaia_source_md5"] = file_md5(task.gaia)
    schema = catalog_schema(cfg.labels, metadata={"provenance": {**provenance, "inputs": inputs}})
    arrays = {"source_id": sid, "hpx8": (sid >> 43).astype(np.int32)}
    for f in schema:
        if f.name not in arrays:
            arrays[f.name] = cols[f.name]
    table = pa.Table.from_pydict(
        {f.name: pa.array(arrays[f.name], type=f.type) for f in schema}, schema=schema
    )
    record = PartitionRecord(
        partition=task.name,
        status="done",
        input_rows=len(sid),
        output_rows=table.num_rows,
        inputs=inputs,
        wall_time_s=round(wall_s, 3),
    )
    path = writer.write_partition(task.name, table, record)
    summary.partitions_done.append(task.name)
    summary.sources_written += table.num_rows
    log.info("partition %s: %d sources → %s", task.name, table.num_rows, writer.display(path))


def _record_failure(writer, task, message, summary, rows_seen) -> None:
    writer.write_record(
        PartitionRecord(
            partition=task.name,
            status="failed",
            input_rows=rows_seen,
            output_rows=0,
            inputs={"xp": task.xp, "gaia_source": task.gaia},
            error=message,
        )
    )
    summary.partitions_failed[task.name] = message
    log.error("partition %s FAILED: %s", task.name, message)


def _log_progress(summary: JobSummary, n_tasks: int, received: dict[str, int], elapsed: float) -> None:
    n = sum(received.values())
    log.info(
        "progress: %d/%d partitions written, %d failed, %d sources processed (%.0f sources/s)",
        len(summary.partitions_done),
        n_tasks,
        len(summary.partitions_failed),
        n,
        n / max(elapsed, 1e-9),
    )


def _log_summary(summary: JobSummary) -> None:
    d = summary.to_dict()
    log.info(
        "done in %.1f s: %d partition(s) written (%d sources, %.0f sources/s), %d skipped, %d failed; "
        "catalogue in %s",
        summary.wall_time_s,
        len(summary.partitions_done),
        summary.sources_written,
        d["sources_per_s"] or 0,
        len(summary.partitions_skipped),
        len(summary.partitions_failed),
        summary.output,
    )
    for name, msg in summary.partitions_failed.items():
        log.error("  failed: %s: %s", name, msg)
    log.debug("summary: %s", json.dumps(d))
