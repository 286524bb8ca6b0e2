"""The catalogue job under faults, run as users run it: `python jobs/infer_gaia.py` in its own process
with its own local Ray cluster.

The drill: a corrupt partition, a source in two files, a source twice in one file, a NaN coefficient,
a bad cell, a checksum sidecar and a partial download beside the data, a concurrent second job, a
SIGKILL after the first partition, a resume, and a rerun with other labels. Afterwards every input
source is in the catalogue exactly once, and every row without a value has a flag saying why.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from xpengine.features.flags import SourceFlag

pytestmark = [pytest.mark.ray, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
GAIA_XP = Path(__file__).parent / "data" / "gaia_xp"
BULK = ("000000-003111", "245760-248871")
CORRUPT = "688128-691239"
ARCHIVE_STAR = 5937083312263887616
LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _job(args: list[str], env: dict[str, str] | None = None, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(REPO / "jobs" / "infer_gaia.py"), *args],
        cwd=REPO,
        env={**_env(), **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kw,
    )


def _run_job(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    """The job to completion, output captured."""
    return subprocess.run(
        [sys.executable, str(REPO / "jobs" / "infer_gaia.py"), *args],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _edit_archive_csv(src: Path, dest: Path, *, nan_row: int, bad_cell_row: int, repeat_row: int) -> None:
    """Copy an archive XP_CONTINUOUS CSV with one BP coefficient set to NaN, one RP coefficient made
    non-numeric, and one row repeated at the end."""
    lines = src.read_text().splitlines()
    header, rows = lines[0], lines[1:]

    def replace_first_number(line: str, array_no: int, new: str) -> str:
        pos = -1
        for _ in range(array_no + 1):
            pos = line.index('"(', pos + 1)
        end = line.index(",", pos)
        return line[: pos + 2] + new + line[end:]

    rows[nan_row] = replace_first_number(rows[nan_row], 0, "NaN")  # bp_coefficients[0]
    rows[bad_cell_row] = replace_first_number(rows[bad_cell_row], 3, "abc")  # rp_coefficients[0]
    rows.append(rows[repeat_row])
    dest.write_text("\n".join([header, *rows]) + "\n")


def _listening_addresses(pid: int) -> set[str]:
    import psutil

    try:
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return set()
    pids = {p.pid for p in procs}
    return {
        c.laddr.ip
        for c in psutil.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN and c.pid in pids
    }


def _done_partitions(out: Path) -> list[str]:
    """Partitions whose manifest record says done (written after the partition's file)."""
    records = [json.loads(p.read_text()) for p in sorted((out / "_manifest").glob("*.json"))]
    return [r["partition"] for r in records if r.get("status") == "done"]


def _catalogue(out: Path):
    import pandas as pd

    files = sorted(out.glob("*.parquet"))
    return pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)


def test_fault_drill(tmp_path, sky_dir, tiny_sky_model):
    import psutil

    inp = tmp_path / "in"
    inp.mkdir()
    for p in BULK:
        for kind in ("XpContinuousMeanSpectrum", "GaiaSource"):
            shutil.copy(os.path.join(sky_dir, f"{kind}_{p}.csv.gz"), inp)
    good = Path(sky_dir, f"XpContinuousMeanSpectrum_{CORRUPT}.csv.gz").read_bytes()
    (inp / f"XpContinuousMeanSpectrum_{CORRUPT}.csv.gz").write_bytes(good[: len(good) // 3])
    shutil.copy(os.path.join(sky_dir, f"GaiaSource_{CORRUPT}.csv.gz"), inp)
    # what a bulk download leaves beside the data: never partitions
    (inp / f"XpContinuousMeanSpectrum_{BULK[0]}.csv.gz.md5").write_text("0" * 32 + "\n")
    (inp / "XpContinuousMeanSpectrum_999000-999100.csv.gz.part").write_bytes(b"\x1f\x8b partial")
    # the same real archive star in two files with the same name (and a hidden-looking one)
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        shutil.copy(GAIA_XP / f"XP_CONTINUOUS-Gaia_DR3_{ARCHIVE_STAR}.csv", tmp_path / d)
    # two real archive stars: a NaN coefficient, a non-numeric cell, a repeated row
    faulty = tmp_path / "_faulty.csv"
    _edit_archive_csv(GAIA_XP / "XP_CONTINUOUS_RAW.csv", faulty, nan_row=1, bad_cell_row=0, repeat_row=0)
    raw_ids = [
        int(line.split(",")[0])
        for line in (GAIA_XP / "XP_CONTINUOUS_RAW.csv").read_text().split("\n")[1:]
        if line
    ]
    config = tmp_path / "drill.yaml"
    config.write_text(
        "chunk_rows: 100\nbatch_size: 128\nprogress_interval_s: 1\nnum_cpus: 2\nchecksum: false\n"
    )
    out = tmp_path / "catalog"
    args = [
        "--config", str(config),
        "--input", str(inp), str(tmp_path / "a" / f"XP_CONTINUOUS-Gaia_DR3_{ARCHIVE_STAR}.csv"),
        str(tmp_path / "b" / f"XP_CONTINUOUS-Gaia_DR3_{ARCHIVE_STAR}.csv"), str(faulty),
        "--model", tiny_sky_model, "--output", str(out),
    ]  # fmt: skip

    # 1. run, check its sockets and a concurrent second job, SIGKILL it after its first partition.
    # The job holds (test hook) once it has written one partition, file and manifest record: the
    # drill's partitions are small and the driver writes them all within a fraction of a second, so
    # a kill timed from outside could land anywhere up to the cross-partition duplicate resolution.
    job = _job(args, env={"XPENGINE_TEST_HOLD_AFTER_PARTITIONS": "1"})
    addresses: set[str] = set()
    second = None
    deadline = time.time() + 240
    while time.time() < deadline and job.poll() is None:
        addresses |= _listening_addresses(job.pid)
        if second is None and (out / "_LOCK.json").exists():
            second = _run_job(args, timeout=120)
        if _done_partitions(out) and second is not None:
            break
        time.sleep(0.2)
    assert job.poll() is None, "the job finished before it could be killed:\n" + job.stdout.read()
    # held after exactly one partition: the job never reached its end (duplicates, summary); its
    # _SUMMARY.json says a run is under way (since session 30), and stays so after the kill below
    assert len(_done_partitions(out)) == 1
    running = json.loads((out / "_SUMMARY.json").read_text())
    assert running["status"] == "running" and running["pid"] == job.pid
    ray_procs = psutil.Process(job.pid).children(recursive=True)
    job.send_signal(signal.SIGKILL)
    job.wait(timeout=30)
    job.stdout.close()
    # the cluster it started listened on the loopback interface only
    assert addresses and addresses <= LOOPBACK, addresses
    # the second job on the same output refused at once, in one line
    assert second is not None and second.returncode == 2, second.stdout + second.stderr
    assert "in use by another job" in second.stderr and "Traceback" not in second.stderr
    # finished partitions stay, complete; the Ray processes of the killed driver go away
    kept = sorted(out.glob("*.parquet"))
    assert [f.stem for f in kept] == _done_partitions(out)
    for f in kept:
        pq.read_table(f)
    _, alive = psutil.wait_procs(ray_procs, timeout=60)
    assert not [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE], alive
    assert (out / "_LOCK.json").exists()  # left by the killed job: stale, taken over below
    (out / "_tmp" / "leftover.parquet.1234abcd").write_bytes(b"half a file")

    # 2. resume: the finished partitions are skipped, the rest done; the corrupt one fails alone
    rerun = _run_job(args, timeout=300)
    assert rerun.returncode == 1, rerun.stdout + rerun.stderr
    summary = json.loads((out / "_SUMMARY.json").read_text())
    assert summary["status"] == "finished"
    assert len(summary["partitions_skipped"]) == len(kept)
    assert list(summary["partitions_failed"]) == [CORRUPT]
    assert summary["duplicates"]["sources"] == 1
    assert not (out / "_LOCK.json").exists() and os.listdir(out / "_tmp") == []
    names = sorted(f.name for f in out.glob("*.parquet"))
    assert not [n for n in names if n.startswith(("_", "."))] and "faulty.parquet" in names

    # every input source exactly once; the rows left out are in _rejected with the reason
    cat = _catalogue(out)
    expected = {int(s) for p in BULK for s in _bulk_ids(inp / f"XpContinuousMeanSpectrum_{p}.csv.gz")}
    expected |= {ARCHIVE_STAR, *raw_ids}
    got = cat["source_id"].to_numpy()
    assert len(got) == len(np.unique(got)) and set(got.tolist()) == expected
    rejected = [pq.read_table(f).to_pandas() for f in sorted((out / "_rejected").glob("*.parquet"))]
    reasons = sorted(r for t in rejected for r in t["reason"])
    assert len(reasons) == 2, reasons  # one repeated row, one star in two files
    assert all(r.startswith("duplicate:") for r in reasons)
    assert f"duplicate: source_id repeated in {faulty}" in reasons  # names the file
    assert all(int(f) & int(SourceFlag.DUPLICATE_SOURCE) for t in rejected for f in t["flags"])
    # the NaN coefficient and the bad cell: rows kept, flagged, predicted from the valid tokens
    flags = dict(zip(cat["source_id"], cat["flags"].astype(np.int64), strict=True))
    for sid in raw_ids:
        assert flags[sid] & int(SourceFlag.READ_PROBLEM), (sid, SourceFlag(flags[sid]))
    # every row without a prediction says why
    no_value = ~np.isfinite(cat["teff"].to_numpy())
    assert (cat["flags"].to_numpy()[no_value] & int(SourceFlag.NO_PREDICTION)).all()

    # 3. the corrupt file replaced by a good copy: only it is redone, and the run is clean
    shutil.copy(os.path.join(sky_dir, f"XpContinuousMeanSpectrum_{CORRUPT}.csv.gz"), inp)
    fixed = _run_job(args, timeout=300)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    summary = json.loads((out / "_SUMMARY.json").read_text())
    assert summary["partitions_done"] == [CORRUPT]
    cat = _catalogue(out)
    got = cat["source_id"].to_numpy()
    expected |= {int(s) for s in _bulk_ids(inp / f"XpContinuousMeanSpectrum_{CORRUPT}.csv.gz")}
    assert len(got) == len(np.unique(got)) and set(got.tolist()) == expected

    # 4. a rerun with other labels would mix two catalogues: refused in one line, nothing touched
    before = {f.name: f.stat().st_mtime_ns for f in out.glob("*.parquet")}
    mixed = _run_job([*args, "--labels", "teff", "logg"], timeout=120)
    assert mixed.returncode == 2 and "cannot be resumed" in mixed.stderr and "--overwrite" in mixed.stderr
    errors = [line for line in mixed.stderr.splitlines() if "error" in line.lower()]
    assert "Traceback" not in mixed.stderr and len(errors) == 1 and errors[0].startswith("infer_gaia: error:")
    assert {f.name: f.stat().st_mtime_ns for f in out.glob("*.parquet")} == before


def _bulk_ids(path: Path) -> np.ndarray:
    from xpengine import io

    return io.read_xp_continuous(str(path), columns=["source_id"]).column("source_id").to_numpy()
