"""The Ray cluster the job runs on (a given one, or a local one listening on 127.0.0.1 only) and the
predictor pool it gets there (`plan_pool`: actors, GPUs, CPUs and torch threads per actor)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable

from xpengine.pipeline.config import Resources
from xpengine.pipeline.tuning import PoolPlan

__all__ = [
    "LOOPBACK_ENV",
    "PoolPlan",
    "address_problem",
    "init_ray",
    "is_loopback",
    "model_architecture",
    "plan_pool",
]

log = logging.getLogger("xpengine.pipeline.ray_job")


LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
"""Ray reads this at start-up: "0" makes a node take the loopback address as its IP, so its GCS,
raylet, agents and workers listen on 127.0.0.1 only (Ray's own local-only mode for laptops)."""


def init_ray(resources: Resources) -> None:
    """Connect to the given cluster, or start a local one that listens on 127.0.0.1 only.

    Authentication is never switched off here: Ray's own setting (`RAY_AUTH_MODE`, token by default,
    the token kept in ~/.ray/auth_token) applies, whatever the user chose."""
    import ray

    if ray.is_initialized():
        return
    from ray._private import ray_constants

    address = resources.address or os.environ.get("RAY_ADDRESS")
    if address:
        if is_loopback(address):
            # a driver on the node of a head listening on 127.0.0.1 only (`ray start --head
            # --node-ip-address 127.0.0.1`) must take the loopback address as its own too: else it
            # looks for the GCS at the machine's IP and waits minutes before failing
            os.environ[LOOPBACK_ENV] = "0"
            ray_constants.ENABLE_RAY_CLUSTER = False
        ray.init(address=address, log_to_driver=True)
        return
    os.environ[LOOPBACK_ENV] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False  # read at node start: the node IP becomes loopback
    from xpengine.pipeline._reaper import start_reaper

    start_reaper(os.getpid())  # stops the cluster if this driver is killed before it can
    # address="local": a new cluster even when a stale `ray start` address file exists
    ray.init(
        address="local",
        num_cpus=resources.num_cpus,
        num_gpus=resources.num_gpus,
        include_dashboard=False,
        log_to_driver=True,
        _node_ip_address="127.0.0.1",
    )


def is_loopback(address: str) -> bool:
    """Whether a Ray address (`host:port`, `ray://host:port`) names this machine's loopback interface."""
    import ipaddress
    from urllib.parse import urlsplit

    host = urlsplit(address if "://" in address else f"//{address}").hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def address_problem(address: str | None, timeout_s: float = 3.0) -> str | None:
    """Why no Ray cluster can be at `address` (`host:port`, `ray://host:port`), or None: nothing
    accepts a connection there within `timeout_s`. `ray.init` on such an address waits out the GCS
    timeout (minutes) before it fails; a refused or silent port is told here at once. An address
    without a port (`auto`, `local`) is left to Ray."""
    import socket
    from urllib.parse import urlsplit

    if not address:
        return None
    try:
        parts = urlsplit(address if "://" in address else f"//{address}")
        host, port = parts.hostname, parts.port
    except ValueError:  # a port that is not a number: Ray says what it makes of it
        return None
    if not host or port is None:
        return None
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return None
    except OSError as exc:
        why = (
            f"no answer within {timeout_s:g} s" if isinstance(exc, TimeoutError) else exc.strerror or str(exc)
        )
        return (
            f"no Ray cluster at {address}: nothing accepts connections on {host}:{port} ({why}); start "
            "one (`ray start --head`) or give the address it printed"
        )


def model_architecture(model: str) -> str:
    """The model's architecture name (`tuning.architecture_name`) from its config.json."""
    from xpengine.model.metadata import CONFIG_FILE, resolve_model_path
    from xpengine.pipeline.tuning import architecture_name

    try:
        with open(os.path.join(resolve_model_path(model), CONFIG_FILE)) as f:
            return architecture_name(json.load(f).get("model") or {})
    except (OSError, ValueError):
        return "custom"


def _leave_a_reader(actors: int, cpus: float, read_cpus: float, total_cpus: float) -> float:
    """CPUs per GPU actor that leave room for one read task: GPU actors holding every CPU of the cluster
    would wait for ever for reads that cannot be scheduled (e.g. configs/infer/gpu.yaml's 2 CPUs per
    actor on a 2-CPU machine, or 4 GPUs beside 8 vCPUs). Lowered, with a warning, when they would;
    a cluster without room even for that is refused."""
    room = total_cpus - read_cpus
    if actors * cpus <= room + 1e-9:
        return cpus
    if room <= 0:
        raise ValueError(
            f"the cluster has {total_cpus:g} CPU(s), not more than one read task's {read_cpus:g}: no room for "
            f"{actors} GPU actor(s) beside the reads; lower read_cpus or give the cluster more CPUs"
        )
    lowered = room / actors
    log.warning(
        "%d GPU actor(s) x %g CPU(s) would take every one of the cluster's %g CPUs and leave none for the "
        "read tasks (%g each): %.2f CPU(s) per actor instead",
        actors,
        cpus,
        total_cpus,
        read_cpus,
        lowered,
    )
    return lowered


def plan_pool(
    resources: Resources, architecture: str | Callable[[], str] = "custom", partitions: int | None = None
) -> PoolPlan:
    """The predictor pool for this cluster (`tuning.PoolPlan`).

    GPU actors: one per GPU unless `actors` is given, each with `cpus_per_actor` (default 1) CPUs;
    the read tasks are a separate stage. CPU actors read and predict their partitions themselves
    (the stages fused): each runs the measured best torch threads for this CPU
    (`xpengine.pipeline.tuning.MEASURED`, else one) on as many CPUs, and the pool fills the node, so
    that one actor's parsing overlaps the others' prediction.

    architecture: the model's (`model_architecture`), or a function giving it, called only when the
    measured table's answer for this CPU depends on it (naming it imports torch).
    partitions: the partitions to do; never more actors than that (an actor without a partition
    would only compete with the others' start-up: a torch import and a model load). Each actor's
    threads and resources stay as planned, so the catalogue is the same; GPU actors' CPUs are lowered
    to leave a read task room (`_leave_a_reader`) only after that cut, for the actors that run."""
    import ray

    from xpengine.pipeline import tuning

    cluster = ray.cluster_resources()
    gpus = resources.gpus_per_actor
    if gpus is None:
        gpus = 1.0 if cluster.get("GPU", 0) >= 1 else 0.0
    total_cpus = cluster.get("CPU", 1)
    threads: int | None = None
    if gpus > 0:
        actors = resources.actors or max(1, int(cluster.get("GPU", 0) // gpus))
        cpus = resources.cpus_per_actor if resources.cpus_per_actor is not None else 1.0
    else:
        # the table's threads for this machine's CPU (the nodes of a cluster are taken to be alike)
        table_threads = None
        if not resources.torch_threads:
            arch = architecture if callable(architecture) else lambda: architecture
            table_threads = tuning.table_threads(tuning.MEASURED, tuning.device_signature("cpu"), arch)
        actors, cpus, threads = tuning.cpu_plan(
            total_cpus,
            actors=resources.actors,
            cpus_per_actor=resources.cpus_per_actor,
            torch_threads=resources.torch_threads,
            table_threads=table_threads,
        )
    if partitions is not None and actors > max(1, partitions):
        log.info(
            "%d partition(s) to do: %d predictor actor(s) instead of %d",
            partitions,
            max(1, partitions),
            actors,
        )
        actors = max(1, partitions)
    if gpus > 0:  # the actors that will run: fewer may leave a read task room at their planned CPUs
        cpus = _leave_a_reader(actors, cpus, resources.read_cpus, total_cpus)
    plan = tuning.PoolPlan(
        actors=actors,
        gpus_per_actor=gpus,
        cpus_per_actor=cpus,
        torch_threads=threads,
        device=resources.device or ("cuda" if gpus > 0 else "cpu"),
        dtype=resources.dtype,
        batch_size=resources.batch_size,
        read_cpus=resources.read_cpus,
    )
    log.info(
        "predictor pool: %d actor(s), %.2f GPU and %.2f CPU each%s%s",
        actors,
        gpus,
        cpus,
        f", {threads} torch thread(s) each, reading their own partitions" if threads else "",
        f"; {resources.read_cpus:.2f} CPU per read task" if gpus > 0 else "",
    )
    return plan
