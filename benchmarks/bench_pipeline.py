"""End-to-end benchmark of the catalogue engine: the Ray job against a plain single-process loop.

Run:  python benchmarks/bench_pipeline.py [--model gaia-xp] [--partitions 10] [--plain-batch 256]
      python benchmarks/bench_pipeline.py --calibrate     # this CPU's row of xpengine.pipeline.tuning.MEASURED

Data: the bundled sky's partition 000000-003111 (1000 simulated sources in the real bulk format with its
GaiaSource partner) copied under N partition names, so every run parses real gzip ECSV text.

Measured in one run, on the same files and model, each in its own subprocess:
1. plain loop: one process reads, joins, builds tokens (`catalogue_batch`), runs the catalogue's
   predictor stage (`xpengine.inference.catalogue.CatalogPredictor`: labels, σ, distances, flags; torch
   on all cores, `--plain-batch` stars per model batch) with the job's labels and context tokens, and
   writes one Parquet file per partition: the same work as the job, in the best single process;
2. the Ray job (`xpengine.pipeline.ray_job.run_inference`, its default per-device settings) on a fresh
   local cluster with 2 CPUs over the same partitions; its wall time includes cluster start-up, so the
   rate after start-up (sources / (wall − start-up)) is printed too;
3. the same job on as few partitions as its pool has actors (2 on a 2-CPU node: the job never starts
   more actors than partitions, so a 1-partition job would start one actor, not the N-partition job's
   pool), for the fixed cost (its work time less its sources at the marginal rate) and the peak memory
   (sum of RSS over the job's whole process tree, sampled every 0.2 s) against N partitions (target:
   flat);
4. the model stage: the job's own rate (seconds in the model summed over its actors) against
   `bench_model.py`'s inference loop on the same architecture, labels and context length, at the job's
   thread count and at all cores;
and prints sources/s, the Ray/plain ratio (target ≥ 0.9 after start-up), the job's fixed cost (target
≤ 5 s) and a projection of the wall time for all 219,197,643 DR3 XP sources at the measured rate.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
N_DR3_XP = 219_197_643
PART = "000000-003111"


def _make_inputs(dest: Path, n_partitions: int) -> list[str]:
    from importlib.resources import files

    import pyarrow as pa
    import pyarrow.compute as pc

    from xpengine import io

    sky = Path(str(files("xpengine") / "data" / "sky"))
    dest.mkdir(parents=True, exist_ok=True)
    xp = io.read_xp_continuous(str(sky / f"XpContinuousMeanSpectrum_{PART}.csv.gz"))
    gs = io.read_gaia_source(str(sky / f"GaiaSource_{PART}.csv.gz"))
    names = []
    for k in range(n_partitions):
        # each copy's source_ids moved into its own HEALPix range (source_id >> 43 = level-8 pixel), so
        # the job sees distinct, correctly placed sources (same spectra) and has no duplicates to resolve
        lo = 10000 + 4000 * k
        name = f"{lo:06d}-{lo + 3111:06d}"
        shift = pa.scalar(lo << 43, pa.int64())
        for table, writer, kind in (
            (xp, io.write_bulk_xp_continuous, "XpContinuousMeanSpectrum"),
            (gs, io.write_bulk_gaia_source, "GaiaSource"),
        ):
            i = table.schema.get_field_index("source_id")
            moved = table.set_column(i, "source_id", pc.add(table.column("source_id"), shift))
            writer(moved, dest / f"{kind}_{name}.csv.gz")
        names.append(name)
    return names


PLAIN = r"""
import json, sys, time, os
t0 = time.perf_counter()
import numpy as np, pyarrow as pa, pyarrow.parquet as pq
from xpengine import io
from xpengine.inference.catalogue import CatalogPredictor, catalogue_batch
from xpengine.inference.predictor import Predictor
from xpengine.pipeline.config import InferenceConfig, resolve_inputs, resolve_labels
from xpengine.spectra.representation import token_representation
inp, out, model, batch = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
cfg = InferenceConfig(model=model)
labels, inputs = resolve_labels(cfg), resolve_inputs(cfg)  # the job's: same work on both sides
stage = CatalogPredictor(Predictor.load(model, device="cpu"), labels, inputs=inputs, batch_size=batch)
rep = token_representation()
t_start = time.perf_counter()
n = 0
t_model = 0.0
for p in io.discover_partitions(inp):
    gaia = io.read_gaia_source(p.gaia_url)
    parts = []
    for chunk in io.iter_xp_continuous(p.xp_url, batch_rows=16384):
        b = catalogue_batch(io.join_sources(chunk, gaia), stage.predictor.vocabulary, representation=rep)
        tm = time.perf_counter()
        cols = stage(b)
        t_model += time.perf_counter() - tm
        parts.append(pa.table(cols))
        n += len(b["source_id"])
    pq.write_table(pa.concat_tables(parts), os.path.join(out, p.name + ".parquet"))
t_end = time.perf_counter()
print(json.dumps({"sources": n, "wall_s": t_end - t0, "work_s": t_end - t_start, "predict_s": t_model,
                  "labels": labels, "n_inputs": len(inputs), "request": len(stage.request)}))
"""

RAY = r"""
import json, sys, time, os
t0 = time.perf_counter()
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
import ray
if os.environ.get("BENCH_RAY_ADDRESS"):  # a kept cluster (`ray start --head`)
    ray.init(address=os.environ["BENCH_RAY_ADDRESS"], log_to_driver=False)
else:
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
t_ready = time.perf_counter()
from xpengine.pipeline.config import InferenceConfig
from xpengine.pipeline.ray_job import run_inference
s = run_inference(InferenceConfig(input=[sys.argv[1]], output=sys.argv[2], model=sys.argv[3], progress_interval_s=1e9,
                                  warm_pool=bool(os.environ.get("BENCH_WARM_POOL"))))
t_end = time.perf_counter()
ray.shutdown()
print(json.dumps({"sources": s.sources_written, "wall_s": t_end - t0, "work_s": t_end - t_ready, "ok": s.ok,
                  "predictor": s.predictor, "startup": s.startup, "ray_init_s": t_ready - t0}))
"""

MODEL = r"""
# bench_model.py's inference loop on the model's architecture: its encoder passes (context length and
# requests each), as the job's Predictor runs them
import json, sys, time
sys.path.insert(0, sys.argv[1])
import torch
from bench_model import bench_infer, parse_groups
from xpengine.model.transformer import PRESETS
arch, groups, threads = sys.argv[2], parse_groups(sys.argv[3]), int(sys.argv[4])
batches = [int(b) for b in sys.argv[5].split(",")]
torch.set_num_threads(threads)
torch.manual_seed(0)
from xpengine.model.transformer import XPTransformer
model = XPTransformer(PRESETS[arch])
rates = {}
for b in batches:
    rates[b] = bench_infer(model, b, "fp32", torch.device("cpu"), 4, 1, 3, groups=groups)
print(json.dumps({"threads": threads, "rates": rates}))
"""


def _process_label(q) -> str:
    """A short name for one process of a job's tree: `ray::<actor class>`, a Ray daemon, or `driver`."""
    try:
        cmd = q.cmdline()
    except Exception:  # gone, or not ours to read
        return "?"
    first = cmd[0] if cmd else q.name()
    if first.startswith("ray::"):
        return first.split("(")[0].split(".")[0].strip()  # ray::Class, without its method
    if "-c" in cmd[:3]:
        return "driver (incl. ray.init)"
    script = [a for a in cmd[1:3] if a.endswith(".py")]  # a Python daemon (a worker before its title)
    return os.path.basename(script[0] if script else first)


def _cpu_by_label(cpu: dict[int, tuple[str, float]]) -> dict[str, tuple[int, float]]:
    """Processes and CPU seconds per label, most CPU first."""
    out: dict[str, tuple[int, float]] = {}
    for label, seconds in cpu.values():
        n, total = out.get(label, (0, 0.0))
        out[label] = (n + 1, total + seconds)
    return dict(sorted(out.items(), key=lambda kv: -kv[1][1]))


def _run(
    code: str,
    args: list[str],
    cpu: dict | None = None,
    env: dict[str, str] | None = None,
    also: int | None = None,
) -> tuple[dict, float]:
    """Run a Python snippet; return its JSON result and the peak RSS (MB) of its process tree.

    env: added to the environment it runs in.
    also: a process whose tree is summed in too (a kept cluster's head: its workers and actors).
    cpu: filled with {pid: (label, CPU seconds)} of every process of the tree, as last sampled (every
    0.2 s: a process's last moments are missed)."""
    import psutil

    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONPATH": str(ROOT), **(env or {})}
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    peak = [0.0]
    done = threading.Event()

    def sample() -> None:
        roots = [psutil.Process(proc.pid), *([psutil.Process(also)] if also else [])]
        while not done.is_set():
            try:
                procs = [q for p in roots for q in (p, *p.children(recursive=True))]
                rss = 0
                for q in procs:
                    try:
                        rss += q.memory_info().rss
                        if cpu is not None:
                            t = q.cpu_times()
                            # a Ray worker keeps its actor's title (ray::Class) once it has had one
                            label = _process_label(q)
                            known = cpu.get(q.pid, ("",))[0]
                            if (known.startswith("ray::") and known != "ray::IDLE") or label == "?":
                                label = known or label
                            cpu[q.pid] = (label, t.user + t.system)
                    except psutil.Error:
                        pass
                peak[0] = max(peak[0], rss / 2**20)
            except psutil.Error:
                pass
            time.sleep(0.2)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    out, err = proc.communicate()
    done.set()
    th.join()
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark step failed:\n{err[-3000:]}")
    return json.loads(out.strip().splitlines()[-1]), peak[0]


KEPT_PLAN = [("in1", False), ("in1", False), ("in1", True), ("in1", True), ("in10", True), ("in1", True)]
"""The kept cluster's jobs, in turn: (input, warm pool). The small job twice on Ray Data's per-job actor
pool; then on the warm pool: the small job that starts it, the small job again, the N-partition job
(the warm pool's marginal rate) and the small job once more."""


def _kept_cluster_runs(tmp: Path, model: str, plan=KEPT_PLAN) -> list[dict]:
    """The jobs of `plan`, each from a fresh driver process, in turn on one kept local cluster (a head
    node started with `ray start --head --block`, stopped at the end, its warm pool with it): what each
    job submitted to a running cluster pays. Driver start-up and connection (ray.init) are not counted."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    ray_cli = str(Path(sys.executable).with_name("ray"))
    head = subprocess.Popen(
        [ray_cli, "start", "--head", "--block", "--num-cpus=2", "--include-dashboard=false",
         f"--port={port}", "--node-ip-address=127.0.0.1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        address = f"127.0.0.1:{port}"
        for _ in range(120):  # wait for the head's GCS
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if head.poll() is not None:
                    raise RuntimeError(f"ray start failed: {head.stderr.read()[-2000:]}") from None
                time.sleep(0.5)
        runs = []
        for k, (inp, warm) in enumerate(plan):
            (tmp / f"kept{k}").mkdir()
            env = {"BENCH_RAY_ADDRESS": address, **({"BENCH_WARM_POOL": "1"} if warm else {})}
            res, peak = _run(RAY, [str(tmp / inp), str(tmp / f"kept{k}"), model], env=env, also=head.pid)
            runs.append({**res, "peak_mb": peak})
        return runs
    finally:
        head.terminate()  # `ray start --block` stops the processes it started
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()


def _print_kept(kept: list[dict], marginal: float, rate_plain: float, small: int, partitions: int) -> None:
    """The kept cluster's jobs (`KEPT_PLAN`): fixed costs per job on Ray Data's per-job pool and on the
    warm pool, the latter against the warm pool's own marginal rate."""
    ray_data = [r for r, (_, warm) in zip(kept, KEPT_PLAN, strict=True) if not warm]
    print(
        f"  on a kept cluster (`ray start --head`, 2 CPUs), the same {small}-partition job from "
        f"{len(ray_data)} fresh drivers in turn: fixed cost ≈ "
        + " / ".join(f"{r['work_s'] - r['sources'] / marginal:.1f}" for r in ray_data)
        + " s (the first also starts Ray Data's detached stats, autoscaling and actor-location actors; "
        "each job starts its own predictor actors)"
    )
    warm = [(r, inp) for r, (inp, w) in zip(kept, KEPT_PLAN, strict=True) if w]
    big = next(r for r, inp in warm if inp == "in10")
    smalls = [r for r, inp in warm if inp == "in1"]
    # the warm pool's marginal rate: its N-partition job against its small jobs on the warm pool
    warm_small = smalls[1:]
    base = sum(r["work_s"] for r in warm_small) / len(warm_small)
    m_warm = (big["sources"] - warm_small[0]["sources"]) / max(big["work_s"] - base, 1e-9)
    fixed = [r["work_s"] - r["sources"] / m_warm for r in smalls]
    print(
        f"  warm pool (`--warm-pool`) on that cluster: the {small}-partition job that starts the pool, fixed "
        f"cost ≈ {fixed[0]:.1f} s; the next ones, finding it warm: "
        + " / ".join(f"{f:.1f}" for f in fixed[1:])
        + f" s (target <= 5); its {partitions}-partition job {big['sources'] / big['work_s']:.0f} sources/s "
        f"= {big['sources'] / big['work_s'] / rate_plain:.2f} of the plain loop; marginal rate {m_warm:.0f} "
        f"sources/s ({m_warm / rate_plain:.2f} of the plain loop; Ray Data's pool: {marginal:.0f})"
    )
    print(
        f"    peak memory of the cluster and driver, the warm pool's {partitions}- vs {small}-partition job "
        f"(before / after it): {big['peak_mb']:.0f} / {smalls[1]['peak_mb']:.0f} / {smalls[-1]['peak_mb']:.0f} MB "
        f"= {big['peak_mb'] / smalls[1]['peak_mb']:.2f}x / {big['peak_mb'] / smalls[-1]['peak_mb']:.2f}x (target <= 1.15)"
    )
    for a in (smalls[0].get("startup") or {}).get("actors", []):
        print(f"    the pool's start (first warm-pool job): actor constructor {a.get('constructor_began_after_s')} -> "
              f"{a.get('ready_after_s')} s from the job's start (torch import {a.get('torch_import_s')} s, model load "
              f"{a.get('model_load_s')} s)")  # fmt: skip
    for r in smalls[1:]:
        print(f"    a warm job's driver steps: {(r.get('startup') or {}).get('driver_s')}")


def _model_architecture(model: str) -> str:
    from xpengine.pipeline.ray_job import _model_architecture

    return _model_architecture(model)


def _bench_model(
    arch: str, groups: list[tuple[int, int]], threads: int, batches: list[int]
) -> dict[int, float]:
    """bench_model.py's inference rate per batch size (one process, `threads` torch threads)."""
    res, _ = _run(MODEL, [str(ROOT / "benchmarks"), arch, _groups_arg(groups), str(threads),
                          ",".join(map(str, batches))])  # fmt: skip
    return {int(k): v for k, v in res["rates"].items()}


def _groups_arg(groups: list[tuple[int, int]]) -> str:
    return ",".join(f"{c}:{q}" for c, q in groups)


def _model_groups(model: str) -> list[tuple[int, int]]:
    """The job's encoder passes per star for this model: (context tokens, requests) per context group
    of its Predictor (`Predictor.context_groups`), for the job's default labels and inputs. Stars
    without a significant parallax may cost one more pass (their pseudo-luminosity); not counted."""
    from xpengine.inference.catalogue import CatalogPredictor
    from xpengine.inference.predictor import Predictor
    from xpengine.pipeline.config import InferenceConfig, resolve_inputs, resolve_labels

    cfg = InferenceConfig(model=model)
    stage = CatalogPredictor(
        Predictor.load(model, device="cpu"), resolve_labels(cfg), inputs=resolve_inputs(cfg)
    )
    context = stage.inputs if stage.inputs is not None else stage.predictor.default_inputs
    return stage.predictor.encoder_passes(list(stage.request), list(context))


def _describe_groups(groups: list[tuple[int, int]]) -> str:
    return " + ".join(f"{q} labels on {c} context tokens" for c, q in groups) + (
        f" ({len(groups)} encoder passes)" if len(groups) > 1 else ""
    )


def _calibrate(arch: str, groups: list[tuple[int, int]], batches: list[int]) -> None:
    """A MEASURED row for this CPU: the model stage's aggregate rate with the node's CPUs split into
    actors of 1, 2, ... threads (that many bench_model processes at once)."""
    import concurrent.futures as cf

    from xpengine.pipeline.tuning import device_signature

    cpus = os.cpu_count() or 1
    best = None
    for threads in sorted({t for t in (1, 2, 4, 8, 16) if t <= cpus} | {cpus}):
        procs = cpus // threads
        with cf.ThreadPoolExecutor(procs) as ex:
            futures = [ex.submit(_bench_model, arch, groups, threads, batches) for _ in range(procs)]
            runs = [f.result() for f in futures]
        total = {b: sum(r[b] for r in runs) for b in batches}
        print(
            f"{procs} actor(s) x {threads} thread(s): "
            + ", ".join(f"batch {b}: {v:,.0f}/s" for b, v in total.items())
        )
        for b, v in total.items():
            if best is None or v > best[0] * 1.03:
                best = (v, threads, b)
    v, threads, b = best
    print(
        f"\nMEASURED row for {device_signature('cpu')!r}, {arch!r}: threads_per_actor {threads}, batch_size {b} "
        f"({v:,.0f} stars/s on the node, {_describe_groups(groups)})"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="gaia-xp")
    ap.add_argument("--partitions", type=int, default=10)
    ap.add_argument("--plain-batch", type=int, default=256, help="the plain loop's stars per model batch")
    ap.add_argument(
        "--calibrate",
        action="store_true",
        help="only measure this CPU's row of xpengine.pipeline.tuning.MEASURED",
    )
    args = ap.parse_args()
    print(
        f"load average at start: {os.getloadavg()}; {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}"
    )
    arch = _model_architecture(args.model)
    groups = _model_groups(args.model)
    batches = [128, 256, 512, 1024]
    if args.calibrate:
        _calibrate(arch, groups, batches)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        _make_inputs(tmp / "in10", args.partitions)
        for d in ("plain", "ray10", "ray1"):
            (tmp / d).mkdir()
        plain, plain_mem = _run(
            PLAIN, [str(tmp / "in10"), str(tmp / "plain"), args.model, str(args.plain_batch)]
        )
        ray10, ray10_mem = _run(RAY, [str(tmp / "in10"), str(tmp / "ray10"), args.model])
        # the small run: the N-partition job's pool (one partition per actor)
        small = max(1, min(args.partitions - 1, ray10["predictor"]["actors"]))
        _make_inputs(tmp / "in1", small)
        ray1_cpu: dict[int, tuple[str, float]] = {}
        ray1, ray1_mem = _run(RAY, [str(tmp / "in1"), str(tmp / "ray1"), args.model], cpu=ray1_cpu)
        kept = _kept_cluster_runs(tmp, args.model)
    rate_plain = plain["sources"] / plain["work_s"]
    rate_ray = ray10["sources"] / ray10["wall_s"]
    rate_ray_steady = ray10["sources"] / ray10["work_s"]
    print(f"labels {plain['labels']} ({plain['request']} model requests), {plain['n_inputs']} context tokens, "
          f"both sides; plain loop batch {args.plain_batch}, torch threads {os.cpu_count()}")  # fmt: skip
    print(f"\n{'':34s} {'sources':>8s} {'wall s':>8s} {'work s':>8s} {'sources/s':>10s} {'peak MB':>8s}")
    print(
        f"{'plain single-process loop':34s} {plain['sources']:8d} {plain['wall_s']:8.1f} {plain['work_s']:8.1f} "
        f"{rate_plain:10.0f} {plain_mem:8.0f}"
    )
    print(
        f"{'Ray job, ' + str(args.partitions) + ' partitions':34s} {ray10['sources']:8d} {ray10['wall_s']:8.1f} "
        f"{ray10['work_s']:8.1f} {rate_ray_steady:10.0f} {ray10_mem:8.0f}"
    )
    print(
        f"{'Ray job, ' + str(small) + ' partition(s)':34s} {ray1['sources']:8d} {ray1['wall_s']:8.1f} {ray1['work_s']:8.1f} "
        f"{ray1['sources'] / ray1['work_s']:10.0f} {ray1_mem:8.0f}"
    )
    print(
        f"\nRay / plain throughput (after cluster start-up): {rate_ray_steady / rate_plain:.2f}  (target >= 0.9)"
    )
    print(f"Ray / plain throughput (including cluster start-up): {rate_ray / rate_plain:.2f}")
    # the job's fixed costs (actor start, torch import and model load in the actor, planning) measured by
    # the small run; the marginal rate is what a long job over thousands of partitions sees
    marginal = (ray10["sources"] - ray1["sources"]) / max(ray10["work_s"] - ray1["work_s"], 1e-9)
    print(
        f"Ray job fixed cost ≈ {ray1['work_s'] - ray1['sources'] / marginal:.1f} s (target <= 5); marginal rate "
        f"{marginal:.0f} sources/s; marginal Ray / plain: {marginal / rate_plain:.2f}"
    )
    _print_kept(kept, marginal, rate_plain, small, args.partitions)
    print(
        f"peak memory, {args.partitions} vs {small} partition(s): {ray10_mem / ray1_mem:.2f}x  (target <= 1.15)"
    )
    # where the small job's start-up went (seconds from run_inference's start; ray.init before it)
    st = ray1.get("startup") or {}
    print(f"start-up of the {small}-partition job: ray.init (imports and cluster, not in the fixed cost) {ray1['ray_init_s']:.1f} s; "
          f"driver steps {st.get('driver_s')}")  # fmt: skip
    for a in st.get("actors", []):
        print(f"  predictor actor: process started at {a.get('process_started_after_s')} s, Ray worker and stages imported at "
              f"{a.get('stages_imported_after_s')} s, constructor {a.get('constructor_began_after_s')} -> {a.get('ready_after_s')} s "
              f"(torch import {a.get('torch_import_s')} s, model load {a.get('model_load_s')} s, settings {a.get('settings_s')} s, "
              f"warm-up {a.get('warm_up_s')} s; {(a.get('setting') or {}).get('source')}), first predictor call at "
              f"{a.get('first_call_after_s')} s")  # fmt: skip
    print(f"  first partition read began at {st.get('first_read_after_s')} s; first rows at the driver "
          f"{(st.get('driver_s') or {}).get('first_rows')} s")  # fmt: skip
    # the start-up is CPU-bound on a small node: where the CPU seconds of the whole small run went
    by_label = _cpu_by_label(ray1_cpu)
    total_cpu = sum(v for _, v in by_label.values())
    print(f"  CPU seconds of the {small}-partition run's processes (ray.init included; {os.cpu_count()} CPUs x "
          f"{ray1['wall_s']:.1f} s wall = {(os.cpu_count() or 1) * ray1['wall_s']:.1f}): {total_cpu:.1f} in all; "
          + ", ".join(f"{k} x{n} {v:.1f}" for k, (n, v) in by_label.items() if v >= 0.05))  # fmt: skip

    pool = ray10["predictor"]
    stage = pool["stage_seconds"]
    print(
        f"\nthe job's pool: {pool['actors']} actor(s) x {pool['torch_threads']} torch thread(s), batch "
        f"{pool['batch_size']}; seconds summed over actors: read {stage.get('read', 0):.1f}, predictor stage "
        f"{stage.get('predict', 0):.1f} (model {stage.get('model', 0):.1f}); first rows after "
        f"{pool['first_rows_after_s']:.1f} s"
    )
    per_actor = pool["model_stars_per_s"]
    threads = pool["torch_threads"] or 1
    plain_model = plain["sources"] / plain["predict_s"]
    bm = {t: _bench_model(arch, groups, t, batches) for t in sorted({threads, os.cpu_count() or 1})}
    like = max(bm[threads].values())
    best_t, best_b = max(((t, b) for t in bm for b in bm[t]), key=lambda k: bm[k[0]][k[1]])
    best = bm[best_t][best_b]
    print(
        f"model stage ({arch} preset, {_describe_groups(groups)}), stars/s: "
        f"bench_model.py best {best:,.0f} ({best_t} thread(s), batch {best_b}); at {threads} thread(s) "
        f"{like:,.0f} (batch {max(bm[threads], key=bm[threads].get)})"
    )
    print(
        f"  in the job: {per_actor:,.0f} per actor = {per_actor / like:.2f} of bench_model at its threads; "
        f"{pool['actors']} actors: {per_actor * pool['actors']:,.0f} = {per_actor * pool['actors'] / best:.2f} "
        f"of bench_model's best (target >= 0.9)"
    )
    print(
        f"  in the plain loop (predictor stage incl. flags): {plain_model:,.0f} = {plain_model / best:.2f} of it"
    )
    days = N_DR3_XP / marginal / 86400
    print(
        f"projection, all {N_DR3_XP:,} DR3 XP sources at the marginal rate on this {os.cpu_count()}-CPU machine: {days:.1f} days"
    )
    print(f"load average at end: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
