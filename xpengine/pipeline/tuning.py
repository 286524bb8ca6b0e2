"""The predictor stage's settings per device: stars per model batch, torch threads and actors.

Chosen, in this order:
1. what the configuration gives (`batch_size`, `torch_threads`, `cpus_per_actor`, `actors`);
2. the measured table `MEASURED`, keyed by the device (`device_signature`) and the model's architecture
   (`architecture_name`): figures from `benchmarks/bench_pipeline.py` / `benchmarks/bench_model.py` on
   that device, with the command and date they came from; a table entry makes the choice
   deterministic, so the same inputs give the same catalogue bytes;
3. otherwise a short calibration at actor start (`calibrate`): the real model on synthetic contexts
   of the job's length, each candidate batch size timed (and thread count, when the actor has more
   than one CPU); the fastest wins (`choose`). Batch size changes the float32 results only in the last
   bit, rarely (measured: identical at batch 256-1000, 5e-8 relative at 100).

On a CPU node each actor reads and predicts its own partitions (the two stages fused, one thread per
actor by default): several single-thread actors beat one actor with several threads for the small
matrices of these models, and one actor's parsing overlaps the others' prediction. bf16 is used only
where the hardware has it (`xpengine.inference.predictor.bf16_native_for`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MEASURED",
    "PoolPlan",
    "Setting",
    "architecture_name",
    "calibrate",
    "choose",
    "cpu_plan",
    "device_signature",
    "lookup",
    "table_threads",
]

log = logging.getLogger(__name__)

CPU_BATCHES = (128, 256, 512, 1024)
GPU_BATCHES = (2048, 8192, 32768)
TIE = 0.03  # rates within 3 % of the best count as equal: the smaller batch / fewer threads wins

MEASURED: dict[str, dict[str, dict[str, Any]]] = {
    # device signature → architecture → {"batch_size", "threads_per_actor", "measured"}
    "cuda:NVIDIA H200": {
        "small": {
            "batch_size": 32768,
            "threads_per_actor": None,
            "measured": (
                "2026-12-04 16:21 UTC, `python benchmarks/gpu_check.py --steps job_stage` (the job's predictor "
                "actor, gaia-xp, 7 labels, fp32, 1,048,576 rows in batches of chunk_rows 32768): calibrated "
                "145,952 / 162,758 / 177,252 stars/s at batch 2048 / 8192 / 32768; bench_model bf16 inference "
                "(7 labels) 237,966 / 241,563 at 8192 / 32768"
            ),
        },
        "paper": {
            "batch_size": 16384,
            "threads_per_actor": None,
            "measured": (
                "2026-12-04 16:10 UTC, `python benchmarks/bench_model.py --device cuda` (inference, 5 labels, "
                "64 context tokens): bf16 184,337 / 203,237 / 209,561 stars/s at batch 1024 / 4096 / 16384; "
                "fp32 113,770 / 123,092 / 126,044 (benchmarks/results/gpu/bench_model_h200.txt)"
            ),
        },
    },
    "cpu:AMD EPYC:2": {
        "paper": {
            "batch_size": 128,
            "threads_per_actor": 1,
            "measured": (
                "2026-12-04 18:32 UTC, load 1.4, `python benchmarks/bench_pipeline.py --calibrate` (gaia-xp v5, "
                "fp32, its 2 encoder passes: 5 requests on 64 context tokens + 2 on 63), stars/s on the node: "
                "2 actors x 1 thread 321 / 266 / 237 / 252 at batch 128 / 256 / 512 / 1024; 1 actor x 2 "
                "threads 214 / 200 / 210 / 207"
            ),
        },
    },
    "cpu:Intel(R) Xeon(R) Processor:2": {
        "small": {
            "batch_size": 128,
            "threads_per_actor": 1,
            "measured": (
                "2026-12-03 09:10 UTC, load 2.1, `python benchmarks/bench_pipeline.py --calibrate` (gaia-xp, "
                "7 requests, 63 context tokens, fp32), stars/s on the node: 2 actors x 1 thread 1,985 / "
                "2,023 / 1,741 / 1,714 at batch 128 / 256 / 512 / 1024; 1 actor x 2 threads 1,960 / 1,831 / "
                "1,549 / 1,464"
            ),
        },
    },
}
"""Measured best settings. `threads_per_actor` is for CPUs (None on GPUs); `measured` says where the
figures come from. Add a row with `python benchmarks/bench_pipeline.py --calibrate` on the device."""

DEFAULT_CPU_THREADS_PER_ACTOR = 1


@dataclass(frozen=True)
class Setting:
    """What the predictor stage runs with, and where it came from ("config", "table", "calibrated")."""

    batch_size: int
    torch_threads: int | None
    source: str
    rates: Mapping[str, float] | None = None  # calibration: stars/s per "batch x threads"

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "batch_size": self.batch_size,
            "torch_threads": self.torch_threads,
            "source": self.source,
        }
        if self.rates:
            d["calibration_stars_per_s"] = {k: round(v, 1) for k, v in self.rates.items()}
        return d


@dataclass(frozen=True)
class PoolPlan:
    """The predictor pool the job runs (`xpengine.pipeline.cluster.plan_pool` fills it from the
    configuration's `Resources` and the cluster): what each actor is given.

    torch_threads: per CPU actor (None beside a GPU); batch_size: the configuration's (None: the
    measured table's or calibrated at actor start); device: the actors' torch device."""

    actors: int = 1
    gpus_per_actor: float = 0.0
    cpus_per_actor: float = 1.0
    torch_threads: int | None = None
    device: str = "auto"
    dtype: str = "float32"
    batch_size: int | None = None
    read_cpus: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _cpu_model_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine() or "cpu"


def device_signature(device_type: str, *, cuda_name: str | None = None, cpus: int | None = None) -> str:
    """A device's key in `MEASURED`: `cuda:<device name>` or `cpu:<model name>:<logical CPUs>`."""
    if device_type == "cuda":
        return f"cuda:{cuda_name or 'unknown'}"
    return f"cpu:{_cpu_model_name()}:{cpus or os.cpu_count() or 1}"


def architecture_name(model_config: Any) -> str:
    """The `xpengine.model.transformer.PRESETS` name whose layer sizes the model has (vocabulary size
    and dropout aside), else "custom". model_config: a ModelConfig or the `model` mapping of a
    checkpoint's config.json."""
    from xpengine.model.transformer import PRESETS

    keys = ("d_model", "encoder_heads", "encoder_ffn", "decoder_heads", "decoder_ffn", "head_mlp")

    def get(k: str) -> Any:
        v = model_config.get(k) if isinstance(model_config, Mapping) else getattr(model_config, k, None)
        return tuple(v) if isinstance(v, list) else v

    mine = tuple(get(k) for k in keys)
    for name, preset in PRESETS.items():
        if tuple(getattr(preset, k) for k in keys) == mine:
            return name
    return "custom"


def lookup(
    table: Mapping[str, Mapping[str, Mapping[str, Any]]], signature: str, architecture: str
) -> Mapping[str, Any] | None:
    """The table's entry for this device and architecture, or None."""
    return (table.get(signature) or {}).get(architecture)


def table_threads(
    table: Mapping[str, Mapping[str, Mapping[str, Any]]], signature: str, architecture: Callable[[], str]
) -> int | None:
    """The table's torch threads per CPU actor for this device and the model's architecture, or None
    (not measured: one thread). `architecture()` names the model's architecture, which imports the
    model code and so torch (2-3 s that the job's driver otherwise never spends); it is called only
    when the answer depends on it, i.e. when a row for this device gives other than one thread."""
    rows = table.get(signature) or {}
    if all(
        (row.get("threads_per_actor") or DEFAULT_CPU_THREADS_PER_ACTOR) == DEFAULT_CPU_THREADS_PER_ACTOR
        for row in rows.values()
    ):
        return None
    entry = rows.get(architecture())
    return None if entry is None else entry.get("threads_per_actor")


def choose(rates: Mapping[tuple[int, int | None], float], tie: float = TIE) -> tuple[int, int | None]:
    """The (batch size, threads) to use from measured stars/s per (batch size, threads): the fastest;
    among settings within `tie` of it, the one with the fewest threads, then the smallest batch
    (less memory, the same speed). A ValueError when nothing was measured."""
    finite = {k: v for k, v in rates.items() if v > 0 and math.isfinite(v)}
    if not finite:
        raise ValueError("no calibration measurement to choose from")
    best = max(finite.values())
    near = [k for k, v in finite.items() if v >= best * (1 - tie)]
    return min(near, key=lambda k: (k[1] or 0, k[0]))


def calibrate(
    run: Callable[[int], None],
    batches: Iterable[int],
    *,
    threads: Iterable[int | None] = (None,),
    set_threads: Callable[[int], None] | None = None,
    budget_s: float = 1.0,
    repeats: int = 2,
    timer: Callable[[], float] = time.perf_counter,
) -> dict[tuple[int, int | None], float]:
    """Stars/s of `run(batch)` (one model batch of that many stars) per (batch, threads): one warm-up
    call and the best of up to `repeats` timed calls per setting, within about `budget_s` seconds in
    all (settings not reached are left out; the first is always measured). The budget starts after the
    first warm-up call: a cold GPU's first call (CUDA context, cuBLAS handles, kernel choice) took 3 s on an
    H200 and, counted in, left only the smallest batch measured (`benchmarks/gpu_check.py`, session 9)."""
    rates: dict[tuple[int, int | None], float] = {}
    start: float | None = None
    for n_threads in threads:
        if n_threads is not None and set_threads is not None:
            set_threads(n_threads)
        for batch in batches:
            if rates and timer() - start > budget_s:
                return rates
            run(batch)  # warm-up: allocator, oneDNN/cuBLAS kernel choice
            if start is None:
                start = timer()
            best = math.inf
            for _ in range(repeats):
                t0 = timer()
                run(batch)
                best = min(best, timer() - t0)
                if timer() - start > budget_s:
                    break
            rates[(batch, n_threads)] = batch / best if best > 0 else math.inf
    return rates


def cpu_plan(
    total_cpus: float,
    *,
    actors: int | None,
    cpus_per_actor: float | None,
    torch_threads: int | None,
    table_threads: int | None,
) -> tuple[int, float, int]:
    """(actors, CPUs per actor, torch threads per actor) for CPU actors that read and predict (fused).

    Threads: the configuration's, else the measured table's, else one per actor. An actor reserves
    as many CPUs as it runs threads (unless `cpus_per_actor` is given), and the pool fills the node
    (unless `actors` is given): the actors' reads and predictions then overlap across actors."""
    threads = torch_threads or table_threads or DEFAULT_CPU_THREADS_PER_ACTOR
    cpus = cpus_per_actor if cpus_per_actor else float(threads)
    cpus = min(cpus, max(total_cpus, 0.25))
    if actors is None:
        actors = max(1, int(total_cpus // cpus)) if cpus > 0 else 1
    if torch_threads is None:
        threads = max(1, min(threads, math.ceil(cpus)))
    return actors, cpus, threads
