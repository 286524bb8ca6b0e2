"""Throughput and peak memory of `xpengine simulate` for N and 4N sources (memory should stay flat).

    python benchmarks/bench_simulate.py --n 25000 --factor 4 --workers 1 \
        --json benchmarks/results/bench_simulate.json

Each size runs in a fresh subprocess (`simulate_sky` with the default config: 8 correlation levels, full
float64 coefficients, ISA-L gzip level 2); peak RSS is the maximum over polls (every 0.1 s) of the summed
resident memory of the process tree. Output files go to a temporary directory that is deleted after
each run; the bytes written per source are reported.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

_CHILD = """
import sys, time
from xpengine.simulate import simulate_sky
t = time.perf_counter()
simulate_sky(sys.argv[1], int(sys.argv[2]), seed=1, n_partitions=int(sys.argv[3]), workers=int(sys.argv[4]))
print(time.perf_counter() - t)
"""


def _run(n: int, partitions: int, workers: int) -> dict[str, float]:
    import psutil

    out = tempfile.mkdtemp(prefix="bench_simulate_")
    try:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD, out, str(n), str(partitions), str(workers)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        ps = psutil.Process(proc.pid)
        peak = 0
        while proc.poll() is None:
            try:
                rss = ps.memory_info().rss + sum(c.memory_info().rss for c in ps.children(recursive=True))
                peak = max(peak, rss)
            except psutil.Error:
                pass
            time.sleep(0.1)
        stdout, stderr = proc.communicate()
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"simulate_sky failed for N={n}:\n{stderr[-2000:]}")
        inner = float(stdout.strip().splitlines()[-1])
        size = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return {
        "n_sources": n,
        "partitions": partitions,
        "workers": workers,
        "seconds": round(inner, 2),
        "wall_seconds_incl_startup": round(wall, 2),
        "sources_per_s": round(n / inner, 1),
        "peak_rss_mb": round(peak / 2**20, 1),
        "bytes_per_source": round(size / n, 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=25_000, help="base number of sources N")
    p.add_argument("--factor", type=int, default=4, help="also run factor*N")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--sources-per-partition", type=int, default=62_500, help="as a real bulk file (~65k)")
    p.add_argument("--json", default=None, help="append results to this JSON file")
    a = p.parse_args(argv)
    rows = []
    for n in (a.n, a.factor * a.n):
        parts = max(a.workers, -(-n // a.sources_per_partition))
        r = _run(n, parts, a.workers)
        rows.append(r)
        print(json.dumps(r), flush=True)
    meta = {
        "machine": f"{platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"),
    }
    if a.json:
        old = []
        if os.path.exists(a.json):
            with open(a.json) as fh:
                old = json.load(fh)
        with open(a.json, "w") as fh:
            json.dump([*old, {"meta": meta, "runs": rows}], fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
