"""The Ray Data catalogue job: discover → read+features → Predictor actors → write.

Data flow (streaming, nothing materialised):

    from_items(partitions) ─map_batches(featurize_partition, one task per partition, generator)─▶
    token batches ─map_batches(CatalogPredictor, actor pool, GPUs when present)─▶ catalogue rows ─▶
    driver: gather rows per partition; when a partition's rows are all in, sort by source_id and write
    it atomically with its manifest record.

Beside GPU actors the read tasks are a separate CPU stage. On a CPU node the two stages have the same
resources and Ray fuses them: the pool's actors (as many as the node's CPUs allow at the measured best
torch threads per actor, `xpengine.pipeline.tuning`) each read and predict whole partitions, so one
actor's parsing overlaps the others' prediction.

The driver only handles the small catalogue rows (~100 bytes per source); parsing and the model run on
the cluster. Partitions already done are skipped (resume) unless `overwrite`.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from xpengine.catalog.schema import catalog_schema
from xpengine.features.flags import SourceFlag
from xpengine.io.partitions import md5_of
from xpengine.pipeline.config import InferenceConfig, resolve_inputs, resolve_labels
from xpengine.pipeline.stages import (
    ERROR_MARKER_ROWS,
    CatalogPredictor,
    PartitionTask,
    featurize_partition,
)
from xpengine.pipeline.writer import CatalogWriter, PartitionRecord

__all__ = ["JobError", "JobSummary", "plan_partitions", "run_inference", "visible_partition_name"]

log = logging.getLogger(__name__)


@dataclass
class JobSummary:
    output: str
    partitions_total: int
    partitions_skipped: list[str] = field(default_factory=list)
    partitions_done: list[str] = field(default_factory=list)
    partitions_failed: dict[str, str] = field(default_factory=dict)
    sources_written: int = 0
    rows_rejected: int = 0  # duplicated rows inside partitions, set aside in _rejected/
    duplicates: dict[str, Any] = field(default_factory=dict)  # across partitions (see resolve_...)
    peak_buffered_rows: int = 0  # most catalogue rows the driver held at once (memory)
    ray_operators: list[str] = field(default_factory=list)  # Ray Data's physical operators
    predictor: dict[str, Any] = field(default_factory=dict)  # actors and their resources
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


class JobError(RuntimeError):
    """A problem with the job's configuration, model, inputs or output: reported as one line."""


_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9._+=-]+")


def visible_partition_name(name: str) -> str:
    """A partition name every catalogue reader sees: no leading `.`/`_` (pandas, pyarrow, DuckDB
    and `xpengine query` skip such files), no path or shell characters."""
    safe = _NAME_UNSAFE.sub("_", name).lstrip("._")
    return safe or "partition"


def _unique_names(parts: list[Any]) -> list[str]:
    """Visible, unique names: names that collide all get a short hash of their input URL, so a name
    does not depend on which other files were given."""
    import hashlib
    from collections import Counter

    base = [visible_partition_name(p.name) for p in parts]
    counts = Counter(base)
    names = []
    for b, p in zip(base, parts, strict=True):
        if counts[b] > 1:
            b = f"{b}-{hashlib.sha1(p.xp_url.encode()).hexdigest()[:8]}"
        names.append(b)
    return names


def plan_partitions(cfg: InferenceConfig) -> list[PartitionTask]:
    """Pair every XP partition of the inputs with its gaia_source partner; names are unique and
    visible; overlapping HEALPix ranges of two bulk partitions are refused."""
    from xpengine import io

    if cfg.input:
        inputs = list(cfg.input)
        gaia: list[str | None] = list(cfg.gaia_source or [])
        if gaia and len(gaia) not in (1, len(inputs)):
            raise JobError(
                f"give one --gaia-source for all inputs or one per input; got {len(gaia)} for {len(inputs)} inputs"
            )
    else:
        inputs, gaia = default_inputs()
    found = []
    for k, xp in enumerate(inputs):
        gs = None
        if gaia:
            gs = gaia[k] if len(gaia) == len(inputs) else gaia[0]
        try:
            found += io.discover_partitions(xp, gs)
        except FileNotFoundError as exc:
            raise JobError(f"input {xp}: {exc}") from exc
    seen_urls: set[str] = set()
    unique = []
    for p in found:
        if p.xp_url in seen_urls:
            log.warning("input %s given twice: processed once", p.xp_url)
            continue
        seen_urls.add(p.xp_url)
        unique.append(p)
    tasks = [
        PartitionTask(
            name=name,
            xp=p.xp_url,
            gaia=p.gaia_url,
            hpx8_range=None if p.hpx8_min is None else (p.hpx8_min, p.hpx8_max),
        )
        for name, p in zip(_unique_names(unique), unique, strict=True)
    ]
    ranged = sorted((t.hpx8_range, t.xp) for t in tasks if t.hpx8_range is not None)
    for (r1, u1), (r2, u2) in itertools.pairwise(ranged):
        if r2[0] <= r1[1]:
            raise JobError(f"input partitions {u1} and {u2} cover overlapping HEALPix ranges {r1} and {r2}")
    if not tasks:
        raise JobError(f"no XpContinuousMeanSpectrum partitions found in {inputs}")
    return tasks


def _file_fingerprint(url: str | None) -> dict[str, Any] | None:
    """Size and modification time of an input (cheap: one stat), to tell a changed input on resume."""
    if not url:
        return None
    from xpengine.io.filesystems import url_to_fs

    fs, path = url_to_fs(url)
    info = fs.info(path)
    modified = info.get("mtime", info.get("LastModified", info.get("last_modified", info.get("ETag"))))
    return {"size": int(info.get("size") or 0), "modified": str(modified)}


def _model_vocabulary_json(model: str) -> str:
    from xpengine.inference.predictor import resolve_model_path
    from xpengine.model.checkpoint import VOCABULARY_FILE

    with open(os.path.join(resolve_model_path(model), VOCABULARY_FILE)) as f:
        return f.read()


def _model_provenance(model: str) -> dict[str, Any]:
    from xpengine.inference.predictor import resolve_model_path
    from xpengine.io import sha256_of
    from xpengine.model.checkpoint import WEIGHTS_FILE

    d = resolve_model_path(model)
    digest = sha256_of(os.path.join(d, WEIGHTS_FILE))
    return {"model": model, "model_dir": os.path.basename(os.path.normpath(d)), "model_sha256": digest}


LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
"""Ray reads this at start-up: "0" makes a node take the loopback address as its IP, so its GCS,
raylet, agents and workers listen on 127.0.0.1 only (Ray's own local-only mode for laptops)."""


def _init_ray(cfg: InferenceConfig) -> None:
    """Connect to the given cluster, or start a local one that listens on 127.0.0.1 only.

    Authentication is never switched off here: Ray's own setting (`RAY_AUTH_MODE`, token by default,
    the token kept in ~/.ray/auth_token) applies, whatever the user chose."""
    import ray

    if ray.is_initialized():
        return
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=True)
        return
    os.environ[LOOPBACK_ENV] = "0"
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False  # read at node start: the node IP becomes loopback
    from xpengine.pipeline._reaper import start_reaper

    start_reaper(os.getpid())  # stops the cluster if this driver is killed before it can
    # address="local": a new cluster even when a stale `ray start` address file exists
    ray.init(
        address="local",
        num_cpus=cfg.num_cpus,
        num_gpus=cfg.num_gpus,
        include_dashboard=False,
        log_to_driver=True,
        _node_ip_address="127.0.0.1",
    )


def _model_architecture(model: str) -> str:
    """The model's architecture name (`tuning.architecture_name`) from its config.json."""
    from xpengine.inference.predictor import resolve_model_path
    from xpengine.model.checkpoint import CONFIG_FILE
    from xpengine.pipeline.tuning import architecture_name

    try:
        with open(os.path.join(resolve_model_path(model), CONFIG_FILE)) as f:
            return architecture_name(json.load(f).get("model") or {})
    except (OSError, ValueError):
        return "custom"


def _resources(cfg: InferenceConfig, architecture: str = "custom") -> tuple[int, float, float, int | None]:
    """(actors, GPUs per actor, CPUs per actor, torch threads per CPU actor) for this cluster.

    GPU actors: one per GPU unless `actors` is given, each with `cpus_per_actor` (default 1) CPUs;
    the read tasks are a separate stage. CPU actors read and predict their partitions themselves
    (the stages fused): each runs the measured best torch threads for this CPU
    (`xpengine.pipeline.tuning.MEASURED`, else one) on as many CPUs, and the pool fills the node, so
    that one actor's parsing overlaps the others' prediction."""
    import ray

    from xpengine.pipeline import tuning

    resources = ray.cluster_resources()
    gpus = cfg.gpus_per_actor
    if gpus is None:
        gpus = 1.0 if resources.get("GPU", 0) >= 1 else 0.0
    total_cpus = resources.get("CPU", 1)
    threads: int | None = None
    if gpus > 0:
        actors = cfg.actors or max(1, int(resources.get("GPU", 0) // gpus))
        cpus = cfg.cpus_per_actor if cfg.cpus_per_actor is not None else 1.0
    else:
        # the table's entry for this machine's CPU (the nodes of a cluster are taken to be alike)
        entry = tuning.lookup(tuning.MEASURED, tuning.device_signature("cpu"), architecture)
        actors, cpus, threads = tuning.cpu_plan(
            total_cpus,
            actors=cfg.actors,
            cpus_per_actor=cfg.cpus_per_actor,
            torch_threads=cfg.torch_threads,
            table_threads=None if entry is None else entry.get("threads_per_actor"),
        )
    log.info(
        "predictor pool: %d actor(s), %.2f GPU and %.2f CPU each%s%s",
        actors,
        gpus,
        cpus,
        f", {threads} torch thread(s) each, reading their own partitions" if threads else "",
        f"; {cfg.read_cpus:.2f} CPU per read task" if gpus > 0 else "",
    )
    return actors, gpus, cpus, threads


def _schema_fingerprint(labels: list[str]) -> str:
    import hashlib

    schema = catalog_schema(labels)
    text = ",".join(f"{f.name}:{f.type}" for f in schema)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _job_identity(cfg: InferenceConfig, provenance: dict[str, Any]) -> dict[str, Any]:
    """What makes two runs' rows belong in one catalogue: the same model weights, labels and schema."""
    return {
        "model_sha256": provenance["model_sha256"],
        "labels": list(cfg.labels),
        "schema": _schema_fingerprint(cfg.labels),
    }


def _identity_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    names = {"model_sha256": "model", "labels": "labels", "schema": "catalogue schema"}
    out = []
    for key, what in names.items():
        if old.get(key) != new.get(key):
            o, n = old.get(key), new.get(key)
            if key == "model_sha256":
                o = (o or "unknown")[:12]
                n = (n or "unknown")[:12]
            out.append(f"{what} {o} → {n}")
    return out


def _input_fingerprints(task: PartitionTask) -> dict[str, Any]:
    return {
        "xp": task.xp,
        "gaia_source": task.gaia,
        "xp_file": _file_fingerprint(task.xp),
        "gaia_source_file": _file_fingerprint(task.gaia),
    }


def _check_resume(
    writer: CatalogWriter, tasks: list[PartitionTask], identity: dict[str, Any], overwrite: bool
) -> dict[str, dict[str, Any]]:
    """Done partitions that may be kept. Refuses (JobError) an output made with another model, labels
    or schema, or whose inputs changed, unless `overwrite` (then they are redone, and done partitions
    of another job that this run does not redo are removed so the catalogue is never mixed)."""
    done = writer.done_records()
    job = writer.read_job()
    problems: list[str] = []
    if job is not None:
        diff = _identity_differences(job, identity)
        if diff:
            problems.append(f"the catalogue was made with another {'; '.join(diff)}")
    elif done:
        problems.append("the output holds partitions without a job record (another program or version)")
    planned = {t.name: t for t in tasks}
    changed = []
    for name, rec in done.items():
        if name not in planned:
            continue
        diff = _identity_differences(rec.get("job") or {}, identity)
        if diff:
            changed.append(f"{name} ({'; '.join(diff)})")
            continue
        now = _input_fingerprints(planned[name])
        was = rec.get("inputs") or {}
        for key in ("xp", "gaia_source", "xp_file", "gaia_source_file"):
            if was.get(key) != now.get(key):
                changed.append(f"{name} (input {key} changed: {was.get(key)} → {now.get(key)})")
                break
    if changed:
        more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
        problems.append(f"finished partitions differ from this run: {', '.join(changed[:3])}{more}")
    if problems and not overwrite:
        raise JobError(
            f"output {writer.output} cannot be resumed: {'; '.join(problems)}. Rerun with --overwrite to "
            "redo it with this configuration, or choose another --output"
        )
    if problems:
        stale = (
            sorted(set(done) - set(planned)) if job is None or _identity_differences(job, identity) else []
        )
        for name in stale:
            log.warning("--overwrite: removing %s, made by the earlier job", name)
            for path in (writer.catalog_path(name), writer.rejected_path(name), writer.manifest_path(name)):
                if writer.fs.get_file_info(path).type.name == "File":
                    writer.fs.delete_file(path)
        return {}
    return {} if overwrite else done


def run_inference(cfg: InferenceConfig) -> JobSummary:
    """Run the catalogue job; returns its summary (also written to OUTPUT/_SUMMARY.json).

    Raises JobError (one line, before any work) for a bad configuration, model, input or output."""
    import dataclasses

    try:
        cfg.validate()
        # the labels and context the model learned (explicit unlearned labels are refused)
        cfg = dataclasses.replace(cfg, labels=resolve_labels(cfg), inputs=resolve_inputs(cfg))
    except (ValueError, FileNotFoundError) as exc:
        raise JobError(str(exc)) from exc
    if not cfg.input:
        cfg = _with_default_side_inputs(cfg)
    t0 = time.perf_counter()
    try:
        provenance = {
            **_model_provenance(cfg.model),
            "xpengine_version": __import__("xpengine").__version__,
            "config": {k: v for k, v in cfg.to_dict().items() if k not in ("address",)},
        }
        vocab_json = _model_vocabulary_json(cfg.model)
    except (FileNotFoundError, OSError) as exc:
        raise JobError(f"model {cfg.model}: {exc}") from exc
    identity = _job_identity(cfg, provenance)
    output = cfg.output or os.path.abspath("xpengine-catalog")
    tasks = plan_partitions(cfg)
    writer = CatalogWriter(output)
    writer.prepare(stale_after_s=cfg.lock_stale_s)
    try:
        done = _check_resume(writer, tasks, identity, cfg.overwrite)
        writer.write_job({**identity, "model": cfg.model, "xpengine_version": provenance["xpengine_version"]})
        summary = JobSummary(output=output, partitions_total=len(tasks))
        summary.partitions_skipped = sorted(t.name for t in tasks if t.name in done)
        tasks = [t for t in tasks if t.name not in done]
        if summary.partitions_skipped:
            log.info("resuming: %d partition(s) already done, skipped", len(summary.partitions_skipped))
        log.info("catalogue → %s (%d partition(s) to do)", output, len(tasks))
        if tasks:
            _run_tasks(cfg, tasks, writer, summary, provenance, identity, vocab_json, t0)
        summary.duplicates = resolve_cross_partition_duplicates(writer)
        summary.wall_time_s = time.perf_counter() - t0
        writer.write_summary(summary.to_dict())
        _log_summary(summary)
        return summary
    finally:
        writer.release_lock()


def _run_tasks(cfg, tasks, writer, summary, provenance, identity, vocab_json, t0) -> None:
    import ray

    _init_ray(cfg)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # the job's own progress line says what is done (see Progress)
    actors, gpus, cpus, threads = _resources(cfg, _model_architecture(cfg.model))
    ds = ray.data.from_items([t.to_row() for t in tasks], override_num_blocks=len(tasks))
    # GPU actors: reading is a separate stage of CPU tasks (`read_cpus` each) feeding the actors.
    # CPU actors: the same resources on both stages, so Ray fuses them: each actor reads a partition
    # and predicts it, and the pool's actors overlap one another's reads and predictions.
    ds = ds.map_batches(
        featurize_partition,
        batch_size=1,
        num_cpus=cfg.read_cpus if gpus > 0 else cpus,
        fn_kwargs={
            "vocabulary_json": vocab_json,
            "chunk_rows": cfg.chunk_rows,
            "tmass": cfg.tmass,
            "ebv": cfg.ebv,
        },
    )
    # CPU: batch_size=None, each feature chunk is one model batch (the predictor splits it into its
    # own batch size); a row-count batch size on the fused read+predict operator would make Ray
    # bundle several one-row partition blocks into one task, so no partition would finish before
    # the others. GPU actors (a separate operator) take batches of rows, as Ray requires there: the
    # configured batch size, else `chunk_rows` (the predictor splits them into its own batch size).
    ds = ds.map_batches(
        CatalogPredictor,
        batch_size=(cfg.batch_size or cfg.chunk_rows) if gpus > 0 else None,
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_gpus=gpus,
        num_cpus=cpus,
        fn_constructor_kwargs={
            "model": cfg.model,
            "labels": cfg.labels,
            "device": cfg.device or ("cuda" if gpus > 0 else "cpu"),
            "dtype": cfg.dtype,
            "batch_size": cfg.batch_size,
            "inputs": cfg.inputs,
            "torch_threads": threads,
            "cpus": cpus,
            "giant_logg_max": cfg.giant_logg_max,
            "giant_teff_range": tuple(cfg.giant_teff_range),
            "giant_abs_g_max": cfg.giant_abs_g_max,
            "max_error": cfg.max_error,
            "max_relative_error": cfg.max_relative_error,
        },
    )

    by_name = {t.name: t for t in tasks}
    progress = Progress(tasks, already_done=len(summary.partitions_skipped))
    buffers: dict[str, list[dict[str, np.ndarray]]] = defaultdict(list)
    received: dict[str, int] = defaultdict(int)
    expected: dict[str, int] = {}
    started: dict[str, float] = {}
    buffered = 0  # catalogue rows held by the driver for partitions not complete yet
    stage_s: dict[str, float] = defaultdict(float)  # seconds per stage, summed over actors and tasks
    batch_sizes: set[int] = set()
    t_first = None
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=0):
        t_first = t_first or time.perf_counter()
        for key in ("stage_read_s", "stage_predict_s", "stage_model_s"):
            if key in batch:
                stage_s[key[6:-2]] += float(np.sum(batch[key]))
        if "stage_batch_size" in batch and len(batch["stage_batch_size"]):
            batch_sizes.update(int(b) for b in np.unique(batch["stage_batch_size"]))
        stage_s["rows"] += len(batch["source_id"])
        for name in np.unique(batch["partition"]):
            sel = batch["partition"] == name
            part = {k: v[sel] for k, v in batch.items()}
            started.setdefault(name, time.perf_counter())
            marker = part["partition_rows"] == ERROR_MARKER_ROWS
            if marker.any():
                msg = str(part["read_error"][marker][0])
                _record_failure(writer, by_name[name], msg, summary, received.get(name, 0), identity)
                if buffers.pop(name, None) is not None:
                    buffered -= received[name]
                expected[name] = -1
                progress.partition_finished(name, 0, failed=True)
                continue
            if expected.get(name) == -1:
                continue  # rows of a partition that already failed
            buffers[name].append(part)
            received[name] += int(sel.sum())
            buffered += int(sel.sum())
            summary.peak_buffered_rows = max(summary.peak_buffered_rows, buffered)
            progress.rows(int(sel.sum()))
            totals = part["partition_rows"][part["partition_rows"] >= 0]
            if totals.size:
                expected[name] = int(totals[0])
            if name in expected and received[name] == expected[name]:
                buffered -= received[name]
                n = _finish_partition(
                    writer,
                    by_name[name],
                    buffers.pop(name),
                    cfg,
                    provenance,
                    identity,
                    summary,
                    time.perf_counter() - started[name],
                )
                progress.partition_finished(name, n)
        progress.maybe_report()

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
            identity,
        )
    progress.close()
    summary.ray_operators = _operator_names(ds)
    rows = stage_s.pop("rows", 0)
    summary.predictor = {
        "actors": actors,
        "gpus_per_actor": gpus,
        "cpus_per_actor": cpus,
        "torch_threads": threads,
        "batch_size": sorted(batch_sizes),
        # actor/task seconds per stage and the model stage's rate per actor (stars per actor-second)
        "stage_seconds": {k: round(v, 3) for k, v in stage_s.items()},
        "model_stars_per_s": round(rows / stage_s["model"], 1) if stage_s.get("model") else None,
        "first_rows_after_s": None if t_first is None else round(t_first - t0, 3),
    }


def _operator_names(ds) -> list[str]:
    """The physical operators Ray ran (`A->B` when it fused two stages into one), from its stats."""
    try:
        text = ds.stats()
    except Exception:  # stats are diagnostics only
        return []
    log.debug("Ray Data stats:\n%s", text)
    return sorted(set(re.findall(r"^Operator \d+ (.+?):", text, flags=re.M)))


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
        reasons = [
            f"duplicate: source_id also in partition {owners[int(s)]}"
            for s in gone.column("source_id").to_numpy()
        ]
        rejected = _rejected_table(gone, reasons)
        earlier = writer.read_rejected(name)
        if earlier is not None:
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


def _record_failure(writer, task, message, summary, rows_seen, identity) -> None:
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
