"""End-to-end benchmark of the catalogue engine: the Ray job against a plain single-process loop.

Run:  python benchmarks/bench_pipeline.py [--model gaia-xp] [--partitions 10] [--rows-per-partition 1000]

Data: the bundled sky's partition 000000-003111 (1000 simulated sources in the real bulk format with its
GaiaSource partner) copied under N partition names, so every run parses real gzip ECSV text.

Measured in one run, on the same files and model, each in its own subprocess:
1. plain loop: one process reads, joins, builds tokens, predicts (Predictor, torch on all cores) and
   writes one Parquet file per partition — the best a single process does with the same library code;
2. the Ray job (`xpengine.pipeline.ray_job.run_inference`) on a fresh local cluster with 2 CPUs,
   1 predictor actor, over the same partitions; its wall time includes cluster start-up, so the
   steady-state rate (sources / (wall − start-up)) is printed too;
3. peak memory (sum of RSS over the job's whole process tree, sampled every 0.2 s) of the Ray job
   with 1 and with N partitions (target: flat);
and prints sources/s, the Ray/plain ratio (target ≥ 0.8 on 2 CPUs) and a projection of the wall time
for all 219,197,643 DR3 XP sources at the measured rate.
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
import json, sys, time, glob, os
t0 = time.perf_counter()
import numpy as np, pyarrow as pa, pyarrow.parquet as pq
from xpengine import io
from xpengine.features import build_tokens
from xpengine.inference.predictor import Predictor
from xpengine.spectra.representation import token_representation
from xpengine.catalog.schema import label_tokens, tokens_to_labels
inp, out, model = sys.argv[1], sys.argv[2], sys.argv[3]
labels = ["teff", "logg", "m_h", "mass", "age"]
pred = Predictor.load(model, device="cpu")
inputs = ["bp0..27", "rp0..27", "bprp", "jh", "jk", "logebv", "g_fakemag"]
rep = token_representation()
t_start = time.perf_counter()
n = 0
for p in io.discover_partitions(inp):
    gaia = io.read_gaia_source(p.gaia_url)
    parts = []
    for chunk in io.iter_xp_continuous(p.xp_url, batch_rows=16384):
        j = io.join_sources(chunk, gaia)
        tok = build_tokens(j, pred.vocabulary, representation=rep)
        r = pred.predict(tok.values, tok.errors, label_tokens(labels) + ["g_fakemag"], inputs=inputs, batch_size=1024)
        cols = tokens_to_labels(r, {k: r[k + "_error"] for k in label_tokens(labels)}, labels)
        cols["source_id"] = tok.source_id
        cols["flags"] = tok.flags
        parts.append(pa.table(cols))
        n += len(tok.source_id)
    pq.write_table(pa.concat_tables(parts), os.path.join(out, p.name + ".parquet"))
t_end = time.perf_counter()
print(json.dumps({"sources": n, "wall_s": t_end - t0, "work_s": t_end - t_start}))
"""

RAY = r"""
import json, sys, time, os
t0 = time.perf_counter()
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
import ray
ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
t_ready = time.perf_counter()
from xpengine.pipeline.config import InferenceConfig
from xpengine.pipeline.ray_job import run_inference
s = run_inference(InferenceConfig(input=[sys.argv[1]], output=sys.argv[2], model=sys.argv[3], progress_interval_s=1e9))
t_end = time.perf_counter()
ray.shutdown()
print(json.dumps({"sources": s.sources_written, "wall_s": t_end - t0, "work_s": t_end - t_ready, "ok": s.ok}))
"""


def _run(code: str, args: list[str]) -> tuple[dict, float]:
    """Run a Python snippet; return its JSON result and the peak RSS (MB) of its process tree."""
    import psutil

    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONPATH": str(ROOT)}
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
        p = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                procs = [p, *p.children(recursive=True)]
                rss = 0
                for q in procs:
                    try:
                        rss += q.memory_info().rss
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="gaia-xp")
    ap.add_argument("--partitions", type=int, default=10)
    args = ap.parse_args()
    print(f"load average at start: {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        _make_inputs(tmp / "in10", args.partitions)
        _make_inputs(tmp / "in1", 1)
        for d in ("plain", "ray10", "ray1"):
            (tmp / d).mkdir()
        plain, plain_mem = _run(PLAIN, [str(tmp / "in10"), str(tmp / "plain"), args.model])
        ray10, ray10_mem = _run(RAY, [str(tmp / "in10"), str(tmp / "ray10"), args.model])
        ray1, ray1_mem = _run(RAY, [str(tmp / "in1"), str(tmp / "ray1"), args.model])
    rate_plain = plain["sources"] / plain["work_s"]
    rate_ray = ray10["sources"] / ray10["wall_s"]
    rate_ray_steady = ray10["sources"] / ray10["work_s"]
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
        f"{'Ray job, 1 partition':34s} {ray1['sources']:8d} {ray1['wall_s']:8.1f} {ray1['work_s']:8.1f} "
        f"{ray1['sources'] / ray1['work_s']:10.0f} {ray1_mem:8.0f}"
    )
    print(
        f"\nRay / plain throughput (after cluster start-up): {rate_ray_steady / rate_plain:.2f}  (target >= 0.8)"
    )
    print(f"Ray / plain throughput (including cluster start-up): {rate_ray / rate_plain:.2f}")
    # the job's fixed costs (actor start, torch import and model load in the actor, planning) measured by
    # the 1-partition run; the marginal rate is what a long job over thousands of partitions sees
    marginal = (ray10["sources"] - ray1["sources"]) / max(ray10["work_s"] - ray1["work_s"], 1e-9)
    print(
        f"Ray job fixed cost ≈ {ray1['work_s'] - ray1['sources'] / marginal:.1f} s; marginal rate {marginal:.0f} "
        f"sources/s; marginal Ray / plain: {marginal / rate_plain:.2f}  (target >= 0.8)"
    )
    print(f"peak memory, {args.partitions} vs 1 partition(s): {ray10_mem / ray1_mem:.2f}x  (target: flat)")
    days = N_DR3_XP / marginal / 86400
    print(
        f"projection, all {N_DR3_XP:,} DR3 XP sources at the marginal rate on this 2-CPU machine: {days:.1f} days"
    )
    print(f"load average at end: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
