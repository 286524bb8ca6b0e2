"""Memory of warm predictor actors over repeated jobs (a leak or allocator growth shows as a rising RSS).

Run:  python benchmarks/bench_warm_pool_memory.py [--partitions 6] [--jobs 6] [--model gaia-xp]

Starts a local 2-CPU Ray cluster, copies the bundled sky's partition 000000-003111 (1000 simulated sources,
real bulk format) under N partition names, runs the catalogue job with `warm_pool=True` J times over them
(each job finds the pool warm after the first), and prints the RSS of each pool actor after each job.
Session 11 (2-core AMD EPYC box): 870/821 -> 1112/1027 MB over 6 jobs of 6 partitions when the actors'
work ran on Ray's call threads; 706/697 -> 712/701 MB once it ran on one dedicated thread.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from importlib.resources import files


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--jobs", type=int, default=6)
    ap.add_argument("--model", default="gaia-xp")
    args = ap.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import psutil
    import ray

    from xpengine.pipeline import warm_pool
    from xpengine.pipeline.config import InferenceConfig
    from xpengine.pipeline.ray_job import run_inference

    print(
        f"load average at start: {os.getloadavg()}; {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}"
    )
    sky = str(files("xpengine") / "data" / "sky")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            inp = os.path.join(tmp, "in")
            os.makedirs(inp)
            for k in range(args.partitions):
                name = f"{k * 3112:06d}-{k * 3112 + 3111:06d}"
                for kind in ("XpContinuousMeanSpectrum", "GaiaSource"):
                    shutil.copy(f"{sky}/{kind}_000000-003111.csv.gz", f"{inp}/{kind}_{name}.csv.gz")
            for j in range(args.jobs):
                cfg = InferenceConfig(
                    input=[inp], output=os.path.join(tmp, f"out{j}"), model=args.model, warm_pool=True,
                    progress_interval_s=1e9,
                )  # fmt: skip
                s = run_inference(cfg)
                rss = [psutil.Process(a["pid"]).memory_info().rss / 2**20 for a in s.startup["actors"]]
                print(
                    f"job {j}: {s.sources_written} sources in {s.wall_time_s:.1f} s; pool actors' RSS "
                    + " / ".join(f"{r:.0f}" for r in rss)
                    + " MB",
                    flush=True,
                )
        warm_pool.stop_pools()
    finally:
        ray.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
