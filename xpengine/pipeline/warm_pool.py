"""A warm predictor pool: detached predictor actors that outlive a job on a running cluster.

Each job on Ray Data's actor pool starts its own predictor actors: a worker process, Ray Data's and the
stages' imports, torch, the model. On a 2-core box that is 6-10 s of every job (issue 16's fixed cost).
With `warm_pool: true` (`--warm-pool`) the job instead sends its partitions to named, detached actors
(`PoolWorker`, namespace `xpengine`) that keep the model loaded between jobs: the first job on a cluster
starts them, the next ones find them by name and pay none of that start.

An actor reads and predicts whole partitions (the read and model stages fused, as Ray Data's CPU pool
does), one at a time; the driver keeps two partitions queued on each actor, so one never waits for the
next. Beside an accelerator an actor reads its next partition while the model runs on the current one.
Rows, the read's row count and errors, and the stage timings reach the driver exactly as in the Ray Data
job (keyed rows, events on the job's `Ledger`), so bookkeeping, resume and the written catalogue are
the same.

A pool is named by everything that changes its output or its resources (`pool_key`): the model's
files (weights, config, vocabulary, standardization, provenance, calibration: a config.json rewritten
in place is another model) and path, the labels, inputs and flag policy, the pool's settings (device,
threads, batch, CPUs and GPUs per actor), and the xpengine code itself; a job with another key starts
its own pool, and stops idle pools of other keys first so that their CPUs come free. An actor ends
itself after `warm_pool_idle_s` seconds without work (15 min by default), giving its CPUs and GPUs back.
`xpengine pool list` / `xpengine pool stop` show and stop pools by hand.

On a local cluster the job starts for itself (no `--address`, no RAY_ADDRESS) the pool ends with the
cluster: a warm pool pays only on a running cluster (`ray start --head`, then jobs with `--address` or
`ray job submit`).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from xpengine.pipeline.bookkeeping import report
from xpengine.pipeline.code_identity import CodeMismatchError, expected_code, mismatch_message

__all__ = [
    "NAMESPACE",
    "PREFIX",
    "PoolWorker",
    "list_pools",
    "pool_key",
    "register",
    "stop_pools",
    "warm_batches",
]

log = logging.getLogger(__name__)

NAMESPACE = "xpengine"
PREFIX = "xpengine-pool-"
QUEUED_PER_ACTOR = 2  # partitions in flight per actor: the next one waits in the actor's queue
DIE_ENV = "XPENGINE_TEST_WARM_POOL_DIE"
"""Test hook, `<partition name>|<marker file>`: the actor given that partition dies at once (its process
exits) unless the marker exists, and makes it, so the partition's retry on a new actor succeeds. It
reaches the pool's actors through their runtime environment. Unset, always, outside that test."""


@functools.lru_cache(maxsize=1)
def code_digest() -> str:
    """SHA-256 of the xpengine package's Python sources: a pool started by other code is another pool
    (the catalogue's own code identity, `code_identity.source_digest`, since session 30)."""
    from xpengine.pipeline.code_identity import source_digest

    return source_digest()


def pool_key(cfg, pool, provenance: dict[str, Any]) -> str:
    """12 hex digits naming the pool that serves this configuration (see the module's docstring)."""
    from xpengine.model.metadata import resolve_model_path
    from xpengine.pipeline.model_files import MODEL_FILES_KEY, sigma_identity

    record = {
        "model_sha256": provenance["model_sha256"],
        # every file the actors' Predictor read (config.json, vocabulary, ...): one rewritten in place
        # is another model, whose actors are not these
        MODEL_FILES_KEY: provenance.get(MODEL_FILES_KEY),
        "model_path": os.path.abspath(resolve_model_path(cfg.model)),
        "sigma": sigma_identity(provenance),
        "labels": list(cfg.labels or []),
        "inputs": list(cfg.inputs) if cfg.inputs is not None else None,
        "flags": dataclasses.asdict(cfg.flags),
        "pool": {k: v for k, v in pool.to_dict().items() if k not in ("actors", "read_cpus")},
        "code": code_digest(),
    }
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()[:12]


class PoolWorker:
    """One warm predictor actor (run as a detached Ray actor by `warm_batches`; plain Python here).

    `run` reads and predicts one partition and returns its catalogue row batches; its events (the read's
    row count or error, each predictor call's timings) go to the calling job's ledger. The work of the
    calls runs one at a time on one model thread, so the actor's CPUs hold one model; `info` and the
    idle watch answer beside a running call (the actor is threaded)."""

    def __init__(
        self,
        key: str,
        model: str,
        labels: list[str],
        *,
        pool,
        flag_policy,
        inputs: list[str] | None,
        idle_s: float | None,
        sim_to_real: bool = True,
        exit_fn=os._exit,
        code: dict[str, Any] | None = None,
    ) -> None:
        from xpengine.pipeline.predictor_stage import CatalogPredictor

        self.key = key
        self.created_at = time.time()
        self.predictor = CatalogPredictor(
            model,
            labels,
            pool=pool,
            flag_policy=flag_policy,
            inputs=inputs,
            sim_to_real=sim_to_real,
            code=code,
        )
        self.ready_at = time.time()
        # beside an accelerator the next partition is read while the model runs (a CPU actor's CPUs
        # are its model's: reading beside it would only share them)
        self.overlap_reads = self.predictor.predictor.device.type != "cpu"
        # the work runs on dedicated threads, not on Ray's call threads: one for the model (and a CPU
        # actor's reads), one more for an accelerator actor's reads. Spread over Ray's threads, each
        # with its own malloc arena, the actor's memory grew by 240 MB over 36 partitions (measured)
        self._model_thread = ThreadPoolExecutor(1, thread_name_prefix="xpengine-model")
        self._read_thread = (
            ThreadPoolExecutor(1, thread_name_prefix="xpengine-read") if self.overlap_reads else None
        )
        self._state = threading.Lock()
        self._busy = 0
        self._last_done = time.monotonic()
        self.partitions = 0
        self.jobs: set[str] = set()
        self.idle_s = idle_s
        self._exit = exit_fn
        if idle_s:
            threading.Thread(target=self._idle_watch, daemon=True, name="xpengine-idle-watch").start()

    def info(self) -> dict[str, Any]:
        with self._state:
            idle = 0.0 if self._busy else time.monotonic() - self._last_done
            busy = self._busy
        return {
            "key": self.key,
            "pid": os.getpid(),
            "created_at": self.created_at,
            "ready_at": self.ready_at,
            "startup": dict(self.predictor.startup),
            "setting": self.predictor.setting.to_dict(),
            "partitions": self.partitions,
            "jobs": len(self.jobs),
            "busy": busy,
            "idle_for_s": round(idle, 3),
            "idle_s": self.idle_s,
        }

    def run(self, row: dict[str, Any], featurize: dict[str, Any], ledger: Any, job: str = "") -> list[dict]:
        """The catalogue row batches of one partition (`PartitionTask.to_row()` plus its `index`)."""
        from xpengine.pipeline.stages import featurize_partition

        _die_if_asked(str(row["name"]))
        with self._state:
            self._busy += 1
            self.jobs.add(job)
        try:
            batches = featurize_partition(
                {k: np.asarray([v]) for k, v in row.items()}, ledger=ledger, **featurize
            )
            if self._read_thread is not None:
                batches = self._read_thread.submit(list, batches).result()
            return self._model_thread.submit(self._predict, batches, ledger).result()
        finally:
            with self._state:
                self._busy -= 1
                self.partitions += 1
                self._last_done = time.monotonic()

    def _predict(self, batches, ledger) -> list[dict]:
        self.predictor.ledger = ledger  # this call's job (the model thread takes one call at a time)
        try:
            return [self.predictor(b) for b in batches]
        finally:
            self.predictor.ledger = None

    def _idle_watch(self) -> None:
        step = max(0.2, min(5.0, self.idle_s / 4))
        while True:
            time.sleep(step)
            with self._state:
                if not self._busy and time.monotonic() - self._last_done > self.idle_s:
                    log.info("warm pool actor %s: idle for %.0f s, ending", self.key, self.idle_s)
                    self._exit(0)
                    return


def _die_if_asked(partition: str) -> None:
    spec = os.environ.get(DIE_ENV)
    if not spec:
        return
    name, _, marker = spec.partition("|")
    if name == partition and not os.path.exists(marker):
        Path(marker).touch()
        os._exit(1)


def _actor(key: str, i: int, cfg, pool):
    """The pool's i-th actor: found by name, else started (detached: it outlives the job)."""
    import ray

    return (
        ray.remote(PoolWorker)
        .options(
            name=f"{PREFIX}{key}-{i}",
            namespace=NAMESPACE,
            lifetime="detached",
            get_if_exists=True,
            num_cpus=pool.cpus_per_actor,
            num_gpus=pool.gpus_per_actor,
            max_concurrency=2 * QUEUED_PER_ACTOR + 2,
            max_restarts=0,
            **(
                {"runtime_env": {"env_vars": {DIE_ENV: os.environ[DIE_ENV]}}}
                if os.environ.get(DIE_ENV)
                else {}
            ),
        )
        .remote(
            key,
            cfg.model,
            cfg.labels,
            pool=pool,
            flag_policy=cfg.flags,
            inputs=cfg.inputs,
            idle_s=cfg.resources.warm_pool_idle_s,
            sim_to_real=cfg.sim_to_real_sigma,
            code=expected_code(),
        )
    )


def list_pools() -> dict[str, list[str]]:
    """{pool key: [actor names]} of the warm pools on the connected cluster."""
    import ray

    out: dict[str, list[str]] = {}
    for entry in ray.util.list_named_actors(all_namespaces=True):
        name = entry["name"] if isinstance(entry, dict) else entry
        namespace = entry.get("namespace") if isinstance(entry, dict) else NAMESPACE
        if namespace == NAMESPACE and name.startswith(PREFIX):
            key = name[len(PREFIX) :].rsplit("-", 1)[0]
            out.setdefault(key, []).append(name)
    return {k: sorted(v) for k, v in sorted(out.items())}


def stop_pools(keep: str | None = None, *, only_idle: bool = False, timeout_s: float = 5.0) -> list[str]:
    """Kill the warm pools' actors (all, or all but pool `keep`); only_idle: spare those running a
    partition now (another job's). Returns the names killed."""
    import ray

    killed = []
    for key, names in list_pools().items():
        if key == keep:
            continue
        for name in names:
            try:
                handle = ray.get_actor(name, namespace=NAMESPACE)
                if only_idle and ray.get(handle.info.remote(), timeout=timeout_s)["busy"]:
                    log.info("warm pool actor %s is busy (another job): left running", name)
                    continue
                ray.kill(handle, no_restart=True)
                killed.append(name)
            except Exception as exc:  # gone meanwhile, or not answering: nothing to stop
                log.debug("warm pool actor %s: %s", name, exc)
    if killed:
        what = "of other configurations" if keep is not None else "(every pool)"
        log.info("stopped %d warm pool actor(s) %s: %s", len(killed), what, killed)
    return killed


def warm_batches(
    cfg, tasks, pool, ledger, vocab_json: str, key: str, job: str, infos: list[dict[str, Any]]
) -> Iterator[dict]:
    """The catalogue row batches of `tasks` from the warm pool `key` (started here where missing), in
    the order the partitions finish. A partition whose call fails (the model raised, or its actor died
    twice) becomes a "failed" event on the ledger; the others go on. At the end `infos` gets the pool's
    actors' `info()` (start-up, partitions served) for the job's summary."""
    import ray
    from ray.exceptions import GetTimeoutError, RayActorError

    stop_pools(keep=key, only_idle=True)
    warm = set(list_pools().get(key, []))
    actors = [_actor(key, i, cfg, pool) for i in range(pool.actors)]
    found = sum(f"{PREFIX}{key}-{i}" in warm for i in range(pool.actors))
    log.info(
        "warm pool %s: %d of %d actor(s) found warm, %d started", key, found, pool.actors, pool.actors - found
    )
    featurize = {
        "vocabulary_json": vocab_json,
        "chunk_rows": cfg.resources.chunk_rows,
        "tmass": cfg.tmass,
        "ebv": cfg.ebv,
        "zero_point_fallback": cfg.zero_point_fallback,
        "code": expected_code(),  # checked on the disk at each partition (lazy imports of a warm actor)
    }
    rows = [{**t.to_row(), "index": i} for i, t in enumerate(tasks)]
    todo: queue.SimpleQueue = queue.SimpleQueue()
    for i in range(len(rows)):
        todo.put((i, 0))
    pending: dict[Any, tuple[int, int, int]] = {}  # ref -> (partition, attempt, actor slot)
    load = [0] * len(actors)

    def submit(slot: int, up_to: int = QUEUED_PER_ACTOR) -> None:
        while load[slot] < up_to and not todo.empty():
            index, attempt = todo.get()
            ref = actors[slot].run.remote(rows[index], featurize, ledger, job)
            pending[ref] = (index, attempt, slot)
            load[slot] += 1

    for depth in range(1, QUEUED_PER_ACTOR + 1):  # one partition per actor first, then the queues
        for slot in range(len(actors)):
            submit(slot, depth)
    while pending:
        [ref], _ = ray.wait(list(pending), num_returns=1)
        index, attempt, slot = pending.pop(ref)
        load[slot] -= 1
        try:
            result = ray.get(ref)
        except RayActorError as exc:  # the actor died (killed, out of memory, idle exit racing a call)
            _stop_on_mismatch(exc, pending, actors)  # it runs other xpengine code: so would its successor
            if attempt == 0:
                log.warning(
                    "warm pool actor %d died during partition %s; retrying on a new one: %s",
                    slot,
                    tasks[index].name,
                    exc,
                )
                actors[slot] = _actor(key, slot, cfg, pool)
                todo.put((index, 1))
            else:
                _fail(ledger, index, f"warm pool actor died twice: {type(exc).__name__}: {exc}")
            submit(slot)
            continue
        except Exception as exc:  # the model or the predictor stage raised on this partition
            _stop_on_mismatch(exc, pending, actors)  # its source changed on the disk since the actor started
            _fail(ledger, index, f"{type(exc).__name__}: {exc}")
            submit(slot)
            continue
        submit(slot)  # the actor's queue is topped up before the driver writes this partition
        yield from result
    for handle in actors:
        try:
            infos.append(ray.get(handle.info.remote(), timeout=10))
        except (GetTimeoutError, RayActorError) as exc:
            log.debug("warm pool info: %s", exc)


def _stop_on_mismatch(exc: BaseException, pending: dict[Any, Any], actors: list[Any] = ()) -> None:
    """Raise CodeMismatchError where `exc` carries one (`code_identity.mismatch_message`), the job's other
    calls cancelled and the pool's `actors` killed first. The pool runs code that is no longer on the disk
    (its key names the code it started with, so any job sending it work expects that code and would stop
    too): a queued call never runs, and a call already running on the threaded actor is interrupted rather
    than left to finish unread; the next job starts a pool of the new code."""
    message = mismatch_message(exc)
    if message is None:
        return
    import ray

    for ref in pending:
        try:
            ray.cancel(ref)
        except Exception as err:  # finished meanwhile, or not cancellable: its result is not read
            log.debug("warm pool: cancelling %s: %s", ref, err)
    for handle in actors:
        try:
            ray.kill(handle, no_restart=True)
        except Exception as err:  # dead already
            log.debug("warm pool: stopping %s: %s", handle, err)
    if actors:
        log.warning("warm pool: stopped its %d actor(s), which run other xpengine code", len(actors))
    raise CodeMismatchError(message) from exc


def startups(infos: list[dict[str, Any]], t0_wall: float) -> list[dict[str, Any]]:
    """The pool's actors for the job's start-up breakdown: those this job started (seconds from the
    job's start, and their constructor's steps), and those it found warm (`reused`)."""
    out = []
    for info in sorted(infos, key=lambda i: i["created_at"]):
        reused = info["created_at"] < t0_wall
        entry: dict[str, Any] = {
            "reused": reused,
            "pid": info["pid"],
            "partitions_served": info["partitions"],
        }
        if not reused:
            entry.update(
                constructor_began_after_s=round(info["created_at"] - t0_wall, 3),
                ready_after_s=round(info["ready_at"] - t0_wall, 3),
                **info["startup"],
            )
        entry["setting"] = info["setting"]
        out.append(entry)
    return out


def _fail(ledger, index: int, message: str) -> None:
    log.error("partition %d failed in the warm pool: %s", index, message)
    report(ledger, {"event": "failed", "index": index, "error": message, "read_s": 0.0})


def _pool_command(args) -> int:
    import ray

    from xpengine.pipeline.cluster import address_problem, init_ray
    from xpengine.pipeline.config import Resources

    address = args.address or os.environ.get("RAY_ADDRESS")
    if not address:
        print(
            "xpengine pool: error: give --address or set RAY_ADDRESS (a warm pool lives on a running cluster)"
        )
        return 2
    problem = None if ray.is_initialized() else address_problem(address)
    if problem:
        print(f"xpengine pool: error: {problem}", file=sys.stderr)
        return 2
    started = not ray.is_initialized()
    try:
        init_ray(Resources(address=address))
    except ConnectionError as exc:  # something answers there, but not a Ray cluster's GCS
        print(f"xpengine pool: error: {exc}", file=sys.stderr)
        return 2
    try:
        if args.action == "stop":
            killed = stop_pools(keep=None)
            print(f"stopped {len(killed)} warm pool actor(s)" + (f": {', '.join(killed)}" if killed else ""))
            return 0
        pools = list_pools()
        if not pools:
            print("no warm pool on this cluster")
        for names in pools.values():
            for name in names:
                try:
                    info = ray.get(ray.get_actor(name, namespace=NAMESPACE).info.remote(), timeout=10)
                    state = "busy" if info["busy"] else "idle {:.0f} s".format(info["idle_for_s"])
                    print(
                        f"{name}: pid {info['pid']}, {info['partitions']} partition(s) for {info['jobs']} "
                        f"job(s), {state} (ends after {info['idle_s']:.0f} s idle)"
                    )
                except Exception as exc:
                    print(f"{name}: not answering ({type(exc).__name__})")
        return 0
    finally:
        if started:
            ray.shutdown()


def register(sub) -> None:
    """`xpengine pool list|stop`: the warm predictor pools on a running cluster."""
    p = sub.add_parser(
        "pool",
        help="list or stop the warm predictor pools (`--warm-pool` jobs) on a running Ray cluster",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("action", choices=["list", "stop"])
    p.add_argument("--address", help="Ray cluster address (default RAY_ADDRESS)")
    p.set_defaults(func=_pool_command)
