"""Benchmark of the Gaia XP readers against GaiaXPy and against bare gzip inflation.

Run:  python benchmarks/bench_readers.py [--rows 20000] [--gaiaxpy-rows 4000] [--repeats 3]

Data: a bulk-layout `XpContinuousMeanSpectrum_*.csv.gz` file (with correlations, ~35 kB per row raw)
written by `xpengine.io.write_bulk_xp_continuous` from the real archive rows in tests/data (sources
5853498713190525696, 5762406957886626816, and one row of the missing-BP source 5405570973190252288),
repeated with perturbed values. Measures, in one run:

1. GaiaXPy's file parser vs `read_xp_continuous` on the same uncompressed file (target >= 30x);
2. `iter_xp_continuous` on the .csv.gz vs bare inflation of the same file with zlib and ISA-L
   (target <= 1.3x the fastest inflation);
3. `read_model_inputs` on a Parquet copy (target >= 1e6 sources/s);
4. peak RSS while streaming a file of N and of 4N rows (target: flat).
Timings are the best of `--repeats` runs (wall clock; CPU time of the process shown alongside).
On a shared machine the load average printed at start and end tells how much to trust them.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from xpengine.io import (  # noqa: E402
    iter_xp_continuous,
    read_model_inputs,
    read_xp_continuous,
    write_bulk_xp_continuous,
    write_model_inputs,
)

DATA = ROOT / "tests" / "data" / "gaia_xp"


def make_table(n: int, seed: int = 0) -> pa.Table:
    """n XP rows from the real archive rows: values scaled per row (lognormal, σ=0.3), correlations
    jittered (σ=0.01), new source_ids; row 0 is the real missing-BP source."""
    real = read_xp_continuous(DATA / "XP_CONTINUOUS_RAW.ecsv", with_correlations=True)
    miss = read_xp_continuous(DATA / "XP_CONTINUOUS_RAW_missing_BP_dr3int6.ecsv", with_correlations=True)
    rng = np.random.default_rng(seed)
    idx = np.arange(n - 1) % real.num_rows
    big = pa.concat_tables([miss, real.take(pa.array(idx))]).combine_chunks()
    cols = {}
    for name in big.column_names:
        col = big.column(name).chunk(0)
        if name == "source_id":
            col = pa.array(miss.column("source_id")[0].as_py() + np.arange(n, dtype=np.int64))
        elif name.endswith(("_coefficients", "_coefficient_errors", "_coefficient_correlations")):
            lengths = np.asarray(pc.fill_null(pc.list_value_length(col), 0))
            vals = col.values.to_numpy(zero_copy_only=False)
            if name.endswith("correlations"):
                new = np.clip(vals + rng.normal(0, 0.01, vals.size), -1, 1)
            else:
                new = vals * np.repeat(rng.lognormal(0.0, 0.3, n), lengths)
            col = pa.ListArray.from_arrays(col.offsets, pa.array(new.astype(vals.dtype)), mask=col.is_null())
        cols[name] = col
    return pa.table(cols)


def best_of(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """(best wall seconds, CPU seconds of that run)."""
    best = (float("inf"), 0.0)
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        if wall < best[0]:
            best = (wall, cpu)
    return best


def inflate(path: Path, decompressobj: Callable[..., object]) -> int:
    d = decompressobj(wbits=31)
    n = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            n += len(d.decompress(chunk))
    return n


def count_rows(path: Path, **kw) -> int:
    return sum(b.num_rows for b in iter_xp_continuous(path, **kw))


_RSS_SCRIPT = """
import sys
sys.path.insert(0, {root!r})
from xpengine.io import iter_xp_continuous

def hwm_mb():
    with open("/proc/self/status") as f:
        return next(int(ln.split()[1]) for ln in f if ln.startswith("VmHWM")) / 1024

base = hwm_mb()
with open("/proc/self/clear_refs", "w") as f:  # reset the high-water mark (Linux >= 4.0)
    f.write("5")
n = sum(b.num_rows for b in iter_xp_continuous({path!r}))
print(n, base, hwm_mb())
"""


def peak_rss_mb(path: Path) -> tuple[int, float, float]:
    """(rows, RSS MB after imports, peak RSS MB while streaming) of a fresh process reading `path`."""
    out = subprocess.run(
        [sys.executable, "-c", _RSS_SCRIPT.format(root=str(ROOT), path=str(path))],
        capture_output=True,
        text=True,
        check=True,
    )
    n, base, peak = out.stdout.split()
    return int(n), float(base), float(peak)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=20_000, help="rows of the main bulk file (default 20000)")
    ap.add_argument("--gaiaxpy-rows", type=int, default=4_000, help="rows GaiaXPy parses (memory-bound)")
    ap.add_argument("--model-rows", type=int, default=500_000, help="rows of the model-inputs Parquet file")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=None, help="where to write the files (default: temp)")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="xpbench_", dir=args.workdir))
    print(f"machine: {os.cpu_count()} CPUs, load average at start {os.getloadavg()[0]:.2f}; files in {work}")
    try:
        return _run(args, work, t_start)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run(args: argparse.Namespace, work: Path, t_start: float) -> int:
    n, ng = args.rows, min(args.gaiaxpy_rows, args.rows)
    table = make_table(n)
    gz = work / "XpContinuousMeanSpectrum_000000-003111.csv.gz"
    t0 = time.perf_counter()
    write_bulk_xp_continuous(table, gz)
    t_write = time.perf_counter() - t0
    raw_bytes = inflate(gz, zlib.decompressobj)
    plain = work / "XpContinuousMeanSpectrum_gaiaxpy.csv"
    write_bulk_xp_continuous(table.slice(0, ng), plain)
    small = work / "XpContinuousMeanSpectrum_quarter.csv.gz"
    write_bulk_xp_continuous(table.slice(0, max(n // 4, 1)), small)
    print(
        f"bulk file: {n} rows, {gz.stat().st_size / 1e6:.0f} MB gzip, {raw_bytes / 1e6:.0f} MB raw "
        f"({raw_bytes / n / 1e3:.1f} kB/row); written in {t_write:.1f} s ({n / t_write:.0f} rows/s)"
    )
    rows: list[str] = []

    def line(what: str, seconds: float, cpu: float, nrows: int, note: str = "") -> float:
        rate = nrows / seconds
        rows.append(f"{what:58s} {seconds:8.3f} {cpu:8.3f} {rate:12,.0f}  {note}")
        return rate

    # 1. GaiaXPy vs ours, same uncompressed file.
    from gaiaxpy.file_parser.parse_internal_continuous import InternalContinuousParser

    w, c = best_of(lambda: InternalContinuousParser().parse_file(str(plain), disable_info=True), 1)
    r_gx = line(f"GaiaXPy parse_file, uncompressed ({ng} rows)", w, c, ng)
    w, c = best_of(lambda: read_xp_continuous(plain), args.repeats)
    line(f"ours, uncompressed ({ng} rows)", w, c, ng, f"= {ng / w / r_gx:.0f}x GaiaXPy (target >= 30x)")
    w, c = best_of(lambda: read_xp_continuous(plain, with_correlations=True), args.repeats)
    line(f"ours + correlations, uncompressed ({ng} rows)", w, c, ng, f"= {ng / w / r_gx:.0f}x GaiaXPy")

    # 2. ours on .csv.gz vs bare inflation.
    from isal import isal_zlib

    w_z, c_z = best_of(lambda: inflate(gz, zlib.decompressobj), 1)
    line(f"bare inflate, zlib ({n} rows)", w_z, c_z, n)
    w_i, c_i = best_of(lambda: inflate(gz, isal_zlib.decompressobj), args.repeats)
    line(f"bare inflate, ISA-L ({n} rows)", w_i, c_i, n)
    fastest = min(w_z, w_i)
    w, c = best_of(lambda: count_rows(gz), args.repeats)
    line(f"ours, .csv.gz ({n} rows)", w, c, n, f"= {w / fastest:.2f}x fastest inflate (target <= 1.3x)")
    w, c = best_of(lambda: count_rows(gz, with_correlations=True), 1)
    line(f"ours + correlations, .csv.gz ({n} rows)", w, c, n, f"= {w / fastest:.2f}x fastest inflate")

    # 3. model inputs.
    read = read_xp_continuous(gz)
    m = args.model_rows
    tiled = read.take(pa.array(np.arange(m) % read.num_rows))
    mi = work / "XpContinuousMeanSpectrum_000000-003111.model.parquet"
    write_model_inputs(tiled, mi)
    w, c = best_of(lambda: read_model_inputs(mi), args.repeats)
    line(f"read_model_inputs ({m} rows, {mi.stat().st_size / 1e6:.0f} MB)", w, c, m, "(target >= 1,000,000)")

    # 4. peak RSS, N vs 4N rows.
    n1, b1, p1 = peak_rss_mb(small)
    n4, b4, p4 = peak_rss_mb(gz)

    print()
    print(f"{'measurement':58s} {'wall s':>8s} {'CPU s':>8s} {'sources/s':>12s}")
    for row in rows:
        print(row)
    print()
    for rows_, base, peak, path in ((n1, b1, p1, small), (n4, b4, p4, gz)):
        print(
            f"peak RSS streaming {rows_:>7} rows ({path.stat().st_size / 1e6:4.0f} MB gzip): "
            f"{peak:5.0f} MB ({peak - base:4.0f} MB above the {base:.0f} MB after imports)"
        )
    print(f"4N/N: data x{n4 / n1:.0f}, peak RSS x{p4 / p1:.2f} (target: flat)")
    print(f"\nload average at end {os.getloadavg()[0]:.2f}; total {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
