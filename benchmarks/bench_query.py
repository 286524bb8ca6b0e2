"""Benchmark of `xpengine query` (DuckDB on the Parquet catalogue) against pandas reading every column.

Run:  python benchmarks/bench_query.py [--rows 10000000] [--files 40] [--threads N] [--keep DIR]

Data: a simulated catalogue in the schema of `xpengine.catalog.schema` (labels teff, logg, m_h, mass,
age), generated with vectorised numpy (no model) and written like the catalogue engine writes it:
one zstd Parquet file per partition, named `XpContinuousMeanSpectrum_AAAAAA-BBBBBB.parquet` after its
hpx8 range, sorted by source_id, row groups of 128 Ki rows, plus `_manifest/` and `_SUMMARY.json`.
Sources are uniform on the sky (hpx8 uniform; ra, dec the pixel centre plus < 0.1° jitter).

Measured, each in a fresh subprocess so that its peak RSS (getrusage ru_maxrss) is its own; times
start after the engine's import and include opening the catalogue:
1. DuckDB: the `age-metallicity` preset (median, percentiles, MAD per [M/H] bin of the giants);
2. DuckDB: the number of stars of the `giants` preset;
3. pandas: `pd.read_parquet(dir)` (all columns), then the same two aggregations in pandas/numpy;
   the results must agree with DuckDB's (checked);
4. the sky index: giants in a 30° × 20° Galactic box through `region=` (file and row-group pruning)
   vs the same l, b cut written in SQL over the whole catalogue (DuckDB's own l, b statistics only).
The box has 2 cores shared with other users: the load average is printed at start and end.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

REGION = (30.0, 60.0, -10.0, 10.0)  # l_min, l_max, b_min, b_max (deg)


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------
def _file_columns(rng: np.random.Generator, lo: int, hi: int, n: int) -> dict[str, np.ndarray]:
    from xpengine.catalog.sky import icrs_to_galactic, pix2ang_nested

    hpx8 = np.sort(rng.integers(lo, hi + 1, n))
    source_id = np.sort((hpx8 << 43) | rng.integers(0, 2**43, n))
    hpx8 = source_id >> 43
    ra, dec = pix2ang_nested(8, hpx8)
    dec = np.clip(dec + rng.uniform(-0.08, 0.08, n), -90, 90)
    ra = np.mod(ra + rng.uniform(-0.08, 0.08, n) / np.maximum(np.cos(np.deg2rad(dec)), 0.05), 360.0)
    glon, glat = icrs_to_galactic(ra, dec)
    f32 = np.float32
    logg = rng.normal(2.6, 0.8, n)
    m_h = rng.normal(-0.25, 0.35, n)
    mass = np.exp(rng.normal(np.log(1.25), 0.35, n))
    age = np.clip(10.27 * mass**-3.17 * 10 ** (0.186 * m_h) * np.exp(rng.normal(0, 0.2, n)), 0.1, 14.0)
    teff = 4593 + 465 * (logg - 2.5) - 411 * m_h + rng.normal(0, 60, n)
    cols = {
        "source_id": source_id,
        "hpx8": hpx8.astype(np.int32),
        "ra": ra,
        "dec": dec,
        "l": glon,
        "b": glat,
        "phot_g_mean_mag": rng.uniform(9, 17.6, n).astype(f32),
        "teff": teff.astype(f32),
        "teff_error": rng.gamma(4, 15, n).astype(f32),
        "logg": logg.astype(f32),
        "logg_error": rng.gamma(4, 0.035, n).astype(f32),
        "m_h": m_h.astype(f32),
        "m_h_error": rng.gamma(4, 0.025, n).astype(f32),
        "mass": mass.astype(f32),
        "mass_error": (mass * rng.gamma(4, 0.03, n)).astype(f32),
        "age": age.astype(f32),
        "age_error": (age * rng.gamma(4, 0.07, n)).astype(f32),
    }
    d = rng.uniform(200, 8000, n)
    cols["distance_pc"] = d.astype(f32)
    cols["distance_pc_error"] = (0.14 * d).astype(f32)
    cols["n_input_tokens"] = rng.integers(5, 65, n).astype(np.int16)
    flags = np.zeros(n, np.int64)
    r = rng.random(n)
    flags[r < 0.05] |= 1 << 16
    flags[(r >= 0.05) & (r < 0.08)] |= 1 << 17
    flags[(r >= 0.08) & (r < 0.09)] |= 1 << 18
    flags[rng.random(n) < 0.3] |= 1 << 6
    cols["flags"] = flags
    for lab in ("teff", "logg", "m_h", "mass", "age"):
        miss = flags & (1 << 18) != 0
        cols[lab][miss] = np.nan
        cols[f"{lab}_error"][miss] = np.nan
    return cols


def generate(directory: Path, rows: int, files: int, seed: int) -> tuple[float, int]:
    """Write the catalogue; returns (seconds, bytes on disk)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from xpengine.catalog.schema import catalog_schema

    t0 = time.perf_counter()
    schema = catalog_schema(["teff", "logg", "m_h", "mass", "age"], metadata={"model": "simulated benchmark"})
    edges = np.linspace(0, 12 * 4**8, files + 1).astype(np.int64)
    per = np.full(files, rows // files)
    per[: rows % files] += 1
    rng = np.random.default_rng(seed)
    (directory / "_manifest").mkdir(parents=True)
    nbytes = 0
    for i in range(files):
        lo, hi = int(edges[i]), int(edges[i + 1] - 1)
        cols = _file_columns(rng, lo, hi, int(per[i]))
        table = pa.Table.from_pydict(cols, schema=schema)
        name = f"XpContinuousMeanSpectrum_{lo:06d}-{hi:06d}"
        path = directory / f"{name}.parquet"
        pq.write_table(table, path, compression="zstd", row_group_size=128 * 1024)
        (directory / "_manifest" / f"{name}.json").write_text(
            json.dumps({"partition": name, "status": "done"})
        )
        nbytes += path.stat().st_size
    (directory / "_SUMMARY.json").write_text(json.dumps({"partitions_done": files}))
    return time.perf_counter() - t0, nbytes


# ---------------------------------------------------------------------------------------------
# workers (run in a subprocess each)
# ---------------------------------------------------------------------------------------------
def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def worker_duckdb(directory: str, task: str, threads: int | None) -> dict:
    import duckdb  # noqa: F401  (imported before the clock starts, as pandas is in worker_pandas)

    from xpengine.catalog.query import SkyRegion, open_catalog

    base = _rss_mb()
    t0 = time.perf_counter()
    out: dict = {}
    region = REGION if task == "region" else None
    with open_catalog(
        directory, region=region, threads=threads, profile=task in ("region", "region-noindex")
    ) as c:
        if task == "age-metallicity":
            t = c.preset("age-metallicity")
            out["bins"] = {k: t.column(k).to_pylist() for k in ("bin", "n", "median_age", "robust_sigma_age")}
        elif task == "giants":
            out["n"] = c.sql(f"SELECT count(*) FROM ({c.preset_sql('giants')})").column(0)[0].as_py()
        elif task in ("region", "region-noindex"):
            sql = f"SELECT count(*) FROM ({c.preset_sql('giants')})"
            if task == "region-noindex":
                sql = f"SELECT count(*) FROM ({c.preset_sql('giants')}) WHERE {SkyRegion(*REGION).sql_predicate()}"
            out["n"] = c.sql(sql).column(0)[0].as_py()
            s = c.scan_stats()
            out.update(
                files=s.files_scanned,
                files_total=s.files_total,
                row_groups=s.row_groups_scanned,
                row_groups_total=s.row_groups_total,
                bytes_read=s.bytes_read,
            )
    out.update(seconds=time.perf_counter() - t0, base_rss_mb=base, peak_rss_mb=_peak_rss_mb())
    return out


def worker_pandas(directory: str) -> dict:
    import pandas as pd

    base = _rss_mb()
    t0 = time.perf_counter()
    df = pd.read_parquet(directory)  # every column, as a user of pandas would
    t_read = time.perf_counter() - t0

    def f(c: str) -> np.ndarray:
        return df[c].to_numpy(dtype=np.float64)

    # the giants preset, default parameters (see xpengine.catalog.presets)
    m = (df["flags"].to_numpy() & (7 << 16)) == 0
    m &= f("logg") < 3.5
    m &= (f("teff_error") <= 150.0) & (f("logg_error") <= 0.3) & (f("m_h_error") <= 0.2)
    m &= (f("mass") > 0) & (f("mass_error") <= 0.3 * f("mass"))
    m &= (f("age") > 0) & (f("age_error") <= 0.5 * f("age"))
    n_giants = int(m.sum())
    # age-metallicity: [M/H] bins of 0.1 dex in [-2.5, 0.7), at least 5 stars
    m_h, age = f("m_h"), f("age")
    s = m & np.isfinite(m_h) & np.isfinite(age) & (m_h >= -2.5) & (m_h < 0.7)
    sub = pd.DataFrame(
        {"bin": np.minimum(np.floor((m_h[s] + 2.5) / 0.1), 31).astype(np.int64), "age": age[s]}
    )
    g = sub.groupby("bin")["age"]
    res = pd.DataFrame(
        {"n": g.size(), "median_age": g.median(), "p16": g.quantile(0.16), "p84": g.quantile(0.84)}
    )
    res["robust_sigma_age"] = 1.4826 * g.apply(lambda x: np.median(np.abs(x - np.median(x))))
    res = res[res["n"] >= 5]
    out = {
        "n": n_giants,
        "bins": {
            "bin": res.index.tolist(),
            "n": res["n"].tolist(),
            "median_age": res["median_age"].tolist(),
            "robust_sigma_age": res["robust_sigma_age"].tolist(),
        },
        "read_seconds": t_read,
        "seconds": time.perf_counter() - t0,
        "base_rss_mb": base,
        "peak_rss_mb": _peak_rss_mb(),
    }
    return out


def run_worker(*args: str) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", *args], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"worker {args} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--files", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="DuckDB threads (default: all cores)")
    ap.add_argument(
        "--keep", type=Path, help="write the catalogue here and keep it (default: a temp dir, removed)"
    )
    ap.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:
        engine, directory, *rest = args.worker
        if engine == "pandas":
            res = worker_pandas(directory)
        else:
            threads = int(rest[1]) if len(rest) > 1 and rest[1] != "None" else None
            res = worker_duckdb(directory, rest[0], threads)
        print(json.dumps(res))
        return 0

    print(f"load average at start: {os.getloadavg()}  cpus: {os.cpu_count()}")
    tmp = None
    if args.keep:
        directory = args.keep
        if directory.exists():
            sys.exit(f"--keep {directory} exists; give a new directory")
    else:
        tmp = tempfile.mkdtemp(prefix="bench_query_")
        directory = Path(tmp) / "catalog"
    try:
        gen_s, nbytes = generate(directory, args.rows, args.files, args.seed)
        print(
            f"generated {args.rows:,} rows in {args.files} files, {nbytes / 1e6:.0f} MB on disk, {gen_s:.1f} s"
        )
        th = str(args.threads)
        ddb_amr = run_worker("duckdb", str(directory), "age-metallicity", th)
        ddb_giants = run_worker("duckdb", str(directory), "giants", th)
        pdf = run_worker("pandas", str(directory))
        reg = run_worker("duckdb", str(directory), "region", th)
        noidx = run_worker("duckdb", str(directory), "region-noindex", th)

        # the two engines must agree
        a, p = ddb_amr["bins"], pdf["bins"]
        assert a["bin"] == p["bin"] and a["n"] == p["n"], (
            "age-metallicity bins differ between DuckDB and pandas"
        )
        np.testing.assert_allclose(a["median_age"], p["median_age"], rtol=1e-9)
        np.testing.assert_allclose(a["robust_sigma_age"], p["robust_sigma_age"], rtol=1e-9)
        assert ddb_giants["n"] == pdf["n"], (ddb_giants["n"], pdf["n"])
        assert reg["n"] == noidx["n"], (reg["n"], noidx["n"])

        print(
            f"\nresults agree: {ddb_giants['n']:,} giants; {len(a['bin'])} [M/H] bins; "
            f"{reg['n']:,} giants in l {REGION[0]:g}–{REGION[1]:g}°, b {REGION[2]:g}–{REGION[3]:g}°\n"
        )
        print(f"{'what':46s} {'time s':>8s} {'peak RSS MB':>12s}")
        rows = [
            ("DuckDB age-metallicity preset", ddb_amr),
            ("DuckDB giants count", ddb_giants),
            ("pandas read_parquet (all columns) + both", pdf),
        ]
        for name, r in rows:
            print(f"{name:46s} {r['seconds']:8.2f} {r['peak_rss_mb']:12.0f}")
        print(f"{'  of which pandas read_parquet':46s} {pdf['read_seconds']:8.2f}")
        print(
            f"{'(interpreter + imports, before the query)':46s} {'':8s} "
            f"{ddb_amr['base_rss_mb']:6.0f} / {pdf['base_rss_mb']:.0f} (DuckDB / pandas)"
        )
        ddb_total = ddb_amr["seconds"] + ddb_giants["seconds"]
        print(
            f"\nratios pandas / DuckDB: time {pdf['seconds'] / ddb_total:.1f}x (both aggregations), "
            f"peak RSS {pdf['peak_rss_mb'] / max(ddb_amr['peak_rss_mb'], ddb_giants['peak_rss_mb']):.1f}x"
        )
        print("\nsky index, giants count in the box:")
        for name, r in (
            ("region= (hpx8 file + row-group pruning)", reg),
            ("l, b cut in SQL, no index", noidx),
        ):
            print(
                f"  {name:42s} files {r['files']}/{r['files_total']}, row groups "
                f"{r['row_groups']}/{r['row_groups_total']}, {r['bytes_read'] / 1e6:.1f} MB read, "
                f"{r['seconds']:.2f} s, peak RSS {r['peak_rss_mb']:.0f} MB"
            )
        print(
            f"  ratio no-index / index: bytes {noidx['bytes_read'] / max(reg['bytes_read'], 1):.1f}x, "
            f"time {noidx['seconds'] / reg['seconds']:.1f}x"
        )
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nload average at end: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
