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
the cluster. Partition bookkeeping stays on the driver (`xpengine.pipeline.bookkeeping`): the rows carry
only their partition's index in the plan; row totals, read errors and stage timings reach the driver
through a small ledger actor. Partitions already done are skipped (resume) unless `overwrite`.

With `warm_pool` (on a running cluster) the partitions go instead to detached predictor actors kept
between jobs (`xpengine.pipeline.warm_pool`), without Ray Data; the rows and ledger events they send back
are the same, so everything on the driver's side is shared.

The job's pieces: planning (`plan`), identity and resume (`identity`), the cluster and the predictor
pool (`cluster`), finishing partitions and cross-partition duplicates (`finish`), progress
(`progress`); this module runs them and re-exports the names callers use.
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any

from xpengine.pipeline.bookkeeping import PARTITION_KEY, Ledger, PartitionBook, take
from xpengine.pipeline.cluster import LOOPBACK_ENV, init_ray, model_architecture, plan_pool  # noqa: F401
from xpengine.pipeline.code_identity import expected_code, one_code
from xpengine.pipeline.config import InferenceConfig, resolve_inputs, resolve_labels
from xpengine.pipeline.finish import (
    _finish_partition,
    _record_failure,
    _rejected_table,  # noqa: F401
    _rows_table,  # noqa: F401
    counts_from_records,
    resolve_cross_partition_duplicates,
)
from xpengine.pipeline.identity import (
    _check_resume,  # noqa: F401
    _identity_differences,  # noqa: F401
    _job_identity,
    _model_provenance,
    _model_vocabulary_json,
    _schema_fingerprint,  # noqa: F401
    begin_job,
    end_job,
)
from xpengine.pipeline.plan import (
    JobError,
    _file_fingerprint,  # noqa: F401
    _input_fingerprints,  # noqa: F401
    _unique_names,  # noqa: F401
    _with_default_side_inputs,
    check_output,
    check_side_tables,
    compact_side_tables,
    default_inputs,
    plan_partitions,
    visible_partition_name,
)
from xpengine.pipeline.predictor_stage import CatalogPredictor
from xpengine.pipeline.progress import Progress, _log_summary, _running_summary, _stopped_summary
from xpengine.pipeline.stages import PartitionTask, featurize_partition
from xpengine.pipeline.writer import CatalogWriter

__all__ = [
    "JobError",
    "JobSummary",
    "Progress",
    "default_inputs",
    "plan_partitions",
    "resolve_cross_partition_duplicates",
    "run_inference",
    "visible_partition_name",
]

# the job's pieces moved to their own modules; other modules and tests import these names from here too
_model_architecture = model_architecture
_init_ray = init_ray

log = logging.getLogger(__name__)

HOLD_AFTER_ENV = "XPENGINE_TEST_HOLD_AFTER_PARTITIONS"  # test hook, see _hold_if_asked


@dataclass
class JobSummary:
    output: str
    partitions_total: int
    partitions_skipped: list[str] = field(default_factory=list)
    partitions_done: list[str] = field(default_factory=list)
    partitions_failed: dict[str, str] = field(default_factory=dict)
    # partitions whose input holds no sources (a header-only file): done, with an empty catalogue file
    partitions_empty: list[str] = field(default_factory=list)
    sources_written: int = 0  # catalogue rows of this run's partitions, after duplicates are resolved
    rows_rejected: int = 0  # rows of this run's partitions in _rejected/ (duplicates, in and across them)
    # their catalogue rows flagged so, by flag name, once duplicates are resolved: READ_PROBLEM,
    # NO_PREDICTION, NO_GAIA_SOURCE where a gaia_source file was given (`finish.counts_from_records`)
    rows_flagged: dict[str, int] = field(default_factory=dict)
    duplicates: dict[str, Any] = field(default_factory=dict)  # across partitions (see resolve_...)
    peak_buffered_rows: int = 0  # most catalogue rows the driver held at once (memory)
    ray_operators: list[str] = field(default_factory=list)  # Ray Data's physical operators
    predictor: dict[str, Any] = field(default_factory=dict)  # actors and their resources
    # where the start-up went: the driver's steps (seconds from the job's start) and each predictor
    # actor's (torch import, model load, settings); see `_startup_summary`
    startup: dict[str, Any] = field(default_factory=dict)
    wall_time_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.partitions_failed

    def to_dict(self) -> dict[str, Any]:
        d = {"status": "finished", **self.__dict__}
        d["sources_per_s"] = self.sources_written / self.wall_time_s if self.wall_time_s else None
        d["ok"] = self.ok
        return d


def run_inference(cfg: InferenceConfig) -> JobSummary:
    """Run the catalogue job; returns its summary (also written to OUTPUT/_SUMMARY.json).

    Raises JobError (one line, before any work) for a bad configuration, model, input or output."""
    import dataclasses

    # the start-up breakdown counts from here (the driver never imports torch: the model's metadata
    # reader and the pool plan do without it); wall_time_s, as before, from after the labels are resolved
    marks = _Marks(time.perf_counter())
    try:
        cfg.validate()
        # the labels and context the model learned (explicit unlearned labels are refused)
        cfg = dataclasses.replace(cfg, labels=resolve_labels(cfg), inputs=resolve_inputs(cfg))
    except (ValueError, FileNotFoundError) as exc:
        raise JobError(str(exc)) from exc
    if not cfg.input:
        cfg = _with_default_side_inputs(cfg)
    marks.mark("labels_resolved")
    t0 = time.perf_counter()
    try:
        provenance = {
            **_model_provenance(cfg.model, cfg.sim_to_real_sigma),
            "xpengine_version": __import__("xpengine").__version__,
            "config": {k: v for k, v in cfg.to_dict().items() if k not in ("address",)},
        }
        vocab_json = _model_vocabulary_json(cfg.model)
    except (FileNotFoundError, OSError) as exc:
        raise JobError(f"model {cfg.model}: {exc}") from exc
    identity = _job_identity(cfg.labels, provenance, cfg)
    output = cfg.output or os.path.abspath("xpengine-catalog")
    check_side_tables(cfg)
    _check_cluster_address(cfg)
    tasks = plan_partitions(cfg)
    writer = CatalogWriter(output)
    check_output(writer, cfg, tasks)  # before the folder is touched: nothing of the user's is written over
    compact_tables = compact_side_tables(tasks, cfg)
    if compact_tables is not None:  # the tables the compact inputs' columns came from
        identity["compact_side_tables"] = compact_tables
    writer.prepare(stale_after_s=cfg.lock_stale_s)
    summary = JobSummary(output=output, partitions_total=len(tasks))
    running: dict[str, Any] = {}  # _SUMMARY.json while the run is under way

    def began() -> None:  # called once nothing is refused, before anything is removed
        running.update(_running_summary(summary))
        writer.write_summary(running)

    try:
        about = {"model": cfg.model, "xpengine_version": provenance["xpengine_version"]}
        # the records carry the identity, and during an --overwrite run its id (see begin_job)
        done, record_job = begin_job(writer, tasks, identity, cfg, about, began)
        summary.partitions_skipped = sorted(t.name for t in tasks if t.name in done)
        tasks = [t for t in tasks if t.name not in done]
        if summary.partitions_skipped:
            log.info("resuming: %d partition(s) already done, skipped", len(summary.partitions_skipped))
        log.info("catalogue → %s (%d partition(s) to do)", output, len(tasks))
        marks.mark("planned")
        if tasks:
            _run_tasks(cfg, tasks, writer, summary, provenance, record_job, vocab_json, marks)
        _count_resolved(summary, resolve_cross_partition_duplicates(writer))
        counts_from_records(summary, writer)  # rows_flagged, rows_rejected as the catalogue stands
        end_job(writer, identity, about)
        marks.mark("duplicates_resolved")
        summary.startup = marks.summary(summary.startup)
        summary.wall_time_s = time.perf_counter() - t0
        writer.write_summary(summary.to_dict())
        _log_summary(summary)
        return summary
    except BaseException as exc:  # (a killed process's summary keeps saying running)
        if running:  # not a refused run: the summary before it stays
            _stopped_summary(writer, running, summary, exc)
        raise
    finally:
        writer.release_lock()


def _check_cluster_address(cfg: InferenceConfig) -> None:
    """Refuse (JobError) a cluster address where nothing listens (`cluster.address_problem`) before any
    work: `ray.init` there waits minutes for its GCS before it fails. Skipped when this process is
    connected to Ray already (the job then runs on that cluster)."""
    import sys

    address = cfg.resources.address or os.environ.get("RAY_ADDRESS")
    ray = sys.modules.get("ray")
    if not address or (ray is not None and ray.is_initialized()):
        return
    from xpengine.pipeline.cluster import address_problem

    problem = address_problem(address)
    if problem:
        raise JobError(f"{'--address' if cfg.resources.address else 'RAY_ADDRESS'}: {problem}")


def _count_resolved(summary: JobSummary, duplicates: dict[str, Any]) -> None:
    """The summary as the catalogue stands once the sources repeated across partitions are resolved:
    `sources_written` counted each partition's rows when it was written, before
    `resolve_cross_partition_duplicates` moved some to `_rejected/` or brought others back, so it is
    corrected by what that did to this run's partitions (it then equals their manifests'
    `output_rows`); a partition that step failed is a failed partition."""
    written = set(summary.partitions_done)
    for name, failed in duplicates.pop("failed", {}).items():
        summary.partitions_failed[name] = failed["error"]
        if name in written:
            summary.partitions_done.remove(name)
            summary.sources_written -= failed["rows"]
    summary.sources_written += sum(n for p, n in duplicates.get("restored", {}).items() if p in written)
    summary.sources_written -= sum(
        n for p, n in duplicates.get("moved_to_rejected", {}).items() if p in written
    )
    summary.duplicates = duplicates


class _Marks:
    """Seconds from the job's start at which the driver passed each step (the start-up breakdown)."""

    def __init__(self, t0: float) -> None:
        self.t0 = t0  # perf_counter at the job's start
        self.t0_wall = time.time() - (time.perf_counter() - t0)
        self.at: dict[str, float] = {}

    def mark(self, step: str) -> None:
        self.at.setdefault(step, round(time.perf_counter() - self.t0, 3))

    def summary(self, actors: dict[str, Any]) -> dict[str, Any]:
        return {"driver_s": dict(self.at), **actors}


def _run_tasks(cfg, tasks, writer, summary, provenance, identity, vocab_json, marks) -> None:
    import threading

    import ray

    marks.mark("ray_imported")
    warm = cfg.resources.warm_pool
    if warm and not (cfg.resources.address or os.environ.get("RAY_ADDRESS") or ray.is_initialized()):
        log.warning("warm_pool: no cluster address, so the pool ends with this job's own local cluster")
    # Ray Data's import (about a second of the driver's CPU) goes on while a local cluster starts,
    # mostly a wait for its processes; an error there comes back at the import below. A warm-pool
    # job does without Ray Data.
    importer = threading.Thread(target=_import_quietly, args=("ray.data",), daemon=True)
    if not warm:
        importer.start()
    try:
        init_ray(cfg.resources)
    except ConnectionError as exc:  # something answers at the address, but not a Ray cluster's GCS
        raise JobError(f"--address: {exc}") from exc
    marks.mark("ray_ready")
    # the ledger's worker starts while the dataset is planned and the predictor actors start, beside the
    # driver where Ray can place it; it checks its code as the other workers do
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)
    ledger = ray.remote(Ledger).options(num_cpus=0, scheduling_strategy=here).remote(expected_code())
    pool = plan_pool(
        cfg.resources,
        lambda: model_architecture(cfg.model),
        partitions=None if warm else len(tasks),  # a warm pool is planned for the node, not this job
    )
    ds = warm_infos = None
    if warm:
        from xpengine.pipeline import warm_pool

        key = warm_pool.pool_key(cfg, pool, provenance)
        warm_infos = []
        job = f"{os.getpid()}@{marks.t0_wall:.3f}"
        batches = warm_pool.warm_batches(cfg, tasks, pool, ledger, vocab_json, key, job, warm_infos)
    else:
        importer.join()
        import ray.data

        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # the job's own progress line says what is done (see Progress)
        marks.mark("ray_data_imported")
        ds = _dataset(cfg, tasks, pool, ledger, vocab_json)
        batches = ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=0)
    batches = one_code(batches, JobError)  # a node with other xpengine code: one line, the job stops
    marks.mark("dataset_planned")

    by_index = dict(enumerate(tasks))
    progress = Progress(tasks, already_done=len(summary.partitions_skipped))
    book = PartitionBook(len(tasks))

    def settle() -> None:
        for index, message, rows_seen in book.failed():
            _record_failure(writer, by_index[index], message, summary, rows_seen, identity)
            progress.partition_finished(by_index[index].name, 0, failed=True)
        for index, parts, wall_s in book.complete():
            task = by_index[index]
            read = book.read_inputs(index)
            n = _finish_partition(writer, task, parts, cfg, provenance, identity, summary, wall_s, read)
            if n is None:  # an input changed after it was read: recorded as failed
                progress.partition_finished(task.name, 0, failed=True)
                continue
            progress.partition_finished(task.name, n)
            _hold_if_asked(len(summary.partitions_done))

    for batch in batches:
        marks.mark("first_rows")
        keys = batch.pop(PARTITION_KEY)
        progress.rows(book.add_rows(keys, batch))
        book.apply(take(ledger, JobError))
        settle()
        progress.maybe_report()
    book.apply(take(ledger, JobError))
    settle()
    for index, message, rows_seen in book.unsettled():
        _record_failure(writer, by_index[index], message, summary, rows_seen, identity)
    marks.mark("partitions_finished")
    progress.close()
    summary.peak_buffered_rows = book.peak_buffered
    summary.ray_operators = _operator_names(ds) if ds is not None else [f"warm pool {key}"]
    marks.mark("ray_stats_read")
    stage_s = book.stage_s
    summary.predictor = {
        "actors": pool.actors,
        "gpus_per_actor": pool.gpus_per_actor,
        "cpus_per_actor": pool.cpus_per_actor,
        "torch_threads": pool.torch_threads,
        "batch_size": sorted(book.batch_sizes),
        # actor/task seconds per stage and the model stage's rate per actor (stars per actor-second)
        "stage_seconds": {k: round(v, 3) for k, v in stage_s.items()},
        "model_stars_per_s": round(book.rows_predicted / stage_s["model"], 1)
        if stage_s.get("model")
        else None,
        "first_rows_after_s": marks.at.get("first_rows"),
    }
    if warm:
        summary.predictor["warm_pool"] = key
    summary.startup = {
        "actors": warm_pool.startups(warm_infos, marks.t0_wall)
        if warm
        else _actor_startups(book.actor_starts, book.first_calls, marks.t0_wall),
        "first_read_after_s": round(book.first_read_at - marks.t0_wall, 3) if book.first_read_at else None,
    }


def _import_quietly(module: str) -> None:
    import importlib

    try:
        importlib.import_module(module)
    except BaseException:  # the caller imports it again and gets the error there
        pass


def _hold_if_asked(partitions_written: int) -> None:
    """Test hook: with XPENGINE_TEST_HOLD_AFTER_PARTITIONS=N the driver stops for good once it has
    written N partitions (each file and its manifest record), so the fault drill
    (tests/test_pipeline_faults.py) kills the job at a known point: nothing more is written and the
    cross-partition duplicates are not resolved. Unset (always, outside that test) it does nothing."""
    n = os.environ.get(HOLD_AFTER_ENV)
    if not n or partitions_written < int(n):
        return
    log.warning(
        "%s=%s: holding after %d partition(s) written, until killed", HOLD_AFTER_ENV, n, partitions_written
    )
    while True:
        time.sleep(3600)


def _dataset(cfg: InferenceConfig, tasks: list[PartitionTask], pool, ledger, vocab_json: str):
    """The job's Ray Dataset: one row per partition (its task and its index in the plan) → read and
    featurize → the predictor pool."""
    import ray

    rows = [{**t.to_row(), "index": i} for i, t in enumerate(tasks)]
    code = expected_code()  # the driver's, which both stages' workers check theirs against
    ds = ray.data.from_items(rows, override_num_blocks=len(tasks))
    gpus = pool.gpus_per_actor
    # GPU actors: reading is a separate stage of CPU tasks (`read_cpus` each) feeding the actors.
    # CPU actors: the same resources on both stages, so Ray fuses them: each actor reads a partition
    # and predicts it, and the pool's actors overlap one another's reads and predictions.
    ds = ds.map_batches(
        featurize_partition,
        batch_size=1,
        num_cpus=pool.read_cpus if gpus > 0 else pool.cpus_per_actor,
        fn_kwargs={
            "vocabulary_json": vocab_json,
            "chunk_rows": cfg.resources.chunk_rows,
            "tmass": cfg.tmass,
            "ebv": cfg.ebv,
            "zero_point_fallback": cfg.zero_point_fallback,
            "ledger": ledger,
            "code": code,
        },
    )
    # CPU: batch_size=None, each feature chunk is one model batch (the predictor splits it into its
    # own batch size); a row-count batch size on the fused read+predict operator would make Ray
    # bundle several one-row partition blocks into one task, so no partition would finish before
    # the others. GPU actors (a separate operator) take batches of rows, as Ray requires there: the
    # configured batch size, else `chunk_rows` (the predictor splits them into its own batch size);
    # such a batch may hold rows of two partitions, told apart by their partition key.
    return ds.map_batches(
        CatalogPredictor,
        batch_size=(cfg.resources.batch_size or cfg.resources.chunk_rows) if gpus > 0 else None,
        compute=ray.data.ActorPoolStrategy(
            size=pool.actors, max_tasks_in_flight_per_actor=_tasks_in_flight(pool, len(tasks))
        ),
        num_gpus=gpus,
        num_cpus=pool.cpus_per_actor,
        fn_constructor_kwargs={
            "model": cfg.model,
            "labels": cfg.labels,
            "pool": pool,
            "flag_policy": cfg.flags,
            "inputs": cfg.inputs,
            "ledger": ledger,
            "sim_to_real": cfg.sim_to_real_sigma,
            "code": code,
        },
    )


def _tasks_in_flight(pool, partitions: int) -> int | None:
    """Ray Data's partitions queued per CPU actor (None: its default, 2).

    No more partitions than actors: one each. With Ray's default the first actor ready takes two
    partitions while the other is still starting, and then has nothing to do (measured on 2
    partitions, 2 single-thread actors: in one run of two, one actor predicted both, +0.8 s). More
    partitions than actors: the default, whose second queued partition hides the dispatch round trip
    between two partitions (measured with one in flight: +2 to +4 s on 30 partitions, 2 actors).
    GPU actors take row batches, not partitions: Ray's default."""
    if pool.gpus_per_actor > 0 or partitions > pool.actors:
        return None
    return 1


def _actor_startups(
    events: list[dict[str, Any]], first_calls: dict[int, float], t0_wall: float
) -> list[dict[str, Any]]:
    """Each predictor actor's start, in seconds from the job's start by the wall clock (the nodes'
    clocks are taken to agree): when its worker process started, when that process had imported the
    job's stages (the Ray worker's start and Ray Data's imports, the actor's class), when its
    constructor began and when it ended (`ready`: torch imported, model loaded, settings chosen,
    warmed up on an accelerator; the seconds of each), and its first predictor call (a CPU actor
    reads its first partition between the two)."""

    def after(value: float | None) -> float | None:
        return round(value - t0_wall, 3) if value is not None else None

    out = []
    for ev in sorted(events, key=lambda e: e.get("at", 0.0)):
        out.append(
            {
                "process_started_after_s": after(ev.get("process_started_at")),
                "stages_imported_after_s": after(ev.get("stages_imported_at")),
                "constructor_began_after_s": after(ev.get("at")),
                "ready_after_s": after(ev.get("ready_at")),
                "first_call_after_s": after(first_calls.get(ev.get("pid", -1))),
                **{
                    k: ev[k] for k in ("torch_import_s", "model_load_s", "settings_s", "warm_up_s") if k in ev
                },
                "setting": ev.get("setting"),
            }
        )
    return out


def _operator_names(ds) -> list[str]:
    """The physical operators Ray ran (`A->B` when it fused two stages into one), from its stats."""
    try:
        text = ds.stats()
    except Exception:  # stats are diagnostics only
        return []
    log.debug("Ray Data stats:\n%s", text)
    return sorted(set(re.findall(r"^Operator \d+ (.+?):", text, flags=re.M)))
