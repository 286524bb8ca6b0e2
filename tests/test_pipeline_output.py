"""The catalogue job's output handling without a cluster: partition names, sidecars, the lock, a
read-only output, resume checks, progress, one-line errors, the negative-parallax rule and the
parallax distance."""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from xpengine.catalog.schema import catalog_schema
from xpengine.features.astrometry import parallax_distance, parallax_quality_mask, pseudo_luminosity
from xpengine.pipeline.config import InferenceConfig
from xpengine.pipeline.ray_job import (
    JobError,
    Progress,
    _check_resume,
    plan_partitions,
    run_inference,
    visible_partition_name,
)
from xpengine.pipeline.stages import PartitionTask
from xpengine.pipeline.writer import CatalogWriter, OutputLockedError, OutputNotWritableError, PartitionRecord

REPO = Path(__file__).resolve().parents[1]
GAIA_XP = Path(__file__).parent / "data" / "gaia_xp"
STAR = "XP_CONTINUOUS-Gaia_DR3_5937083312263887616.csv"


def test_partition_names_are_visible_and_unique(tmp_path):
    assert visible_partition_name("_faulty") == "faulty"
    assert visible_partition_name(".hidden") == "hidden"
    assert visible_partition_name("a b/c") == "a_b_c"
    assert visible_partition_name("...") == "partition"
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        shutil.copy(GAIA_XP / STAR, tmp_path / d / STAR)
    shutil.copy(GAIA_XP / STAR, tmp_path / f"_{STAR}")
    cfg = InferenceConfig(
        input=[str(tmp_path / "a" / STAR), str(tmp_path / "b" / STAR), str(tmp_path / f"_{STAR}")]
    )
    names = [t.name for t in plan_partitions(cfg)]
    assert len(set(names)) == 3
    assert all(not n.startswith(("_", ".")) for n in names)
    # the same stem twice: both names carry a hash of their file, so neither depends on the other
    assert sum(n.startswith("XP_CONTINUOUS-Gaia_DR3_5937083312263887616-") for n in names) == 3


def test_sidecars_and_partial_downloads_are_not_partitions(tmp_path, sky_dir):
    name = "XpContinuousMeanSpectrum_000000-003111.csv.gz"
    shutil.copy(os.path.join(sky_dir, name), tmp_path / name)
    (tmp_path / f"{name}.md5").write_text("0" * 32)
    (tmp_path / "XpContinuousMeanSpectrum_003112-006223.csv.gz.part").write_bytes(b"partial")
    (tmp_path / ".XpContinuousMeanSpectrum_006224-009335.csv.gz.tmp-1234").write_bytes(b"x")
    tasks = plan_partitions(InferenceConfig(input=[str(tmp_path)]))
    assert [t.name for t in tasks] == ["000000-003111"]


def test_overlapping_partition_ranges_are_refused(tmp_path, sky_dir):
    src = os.path.join(sky_dir, "XpContinuousMeanSpectrum_000000-003111.csv.gz")
    shutil.copy(src, tmp_path / "XpContinuousMeanSpectrum_000000-003111.csv.gz")
    shutil.copy(src, tmp_path / "XpContinuousMeanSpectrum_003000-004000.csv.gz")
    with pytest.raises(JobError, match="overlapping HEALPix ranges"):
        plan_partitions(InferenceConfig(input=[str(tmp_path)]))


def test_a_gaia_source_partner_missing_from_the_given_folder_is_refused(tmp_path, sky_dir, caplog):
    """With --gaia-source given, an XP partition without its GaiaSource file is refused before any work
    (until session 25 it ran without one, every row NO_GAIA_SOURCE, in a job that reported success)."""
    xp, gs = tmp_path / "xp", tmp_path / "gs"
    xp.mkdir(), gs.mkdir()
    for r in ("000000-003111", "245760-248871"):
        shutil.copy(os.path.join(sky_dir, f"XpContinuousMeanSpectrum_{r}.csv.gz"), xp)
    shutil.copy(os.path.join(sky_dir, "GaiaSource_000000-003111.csv.gz"), gs)
    with pytest.raises(JobError, match=r"1 XP partition\(s\) have no GaiaSource partner.*245760-248871"):
        plan_partitions(InferenceConfig(input=[str(xp)], gaia_source=[str(gs)]))
    shutil.copy(os.path.join(sky_dir, "GaiaSource_245760-248871.csv.gz"), gs)
    tasks = plan_partitions(InferenceConfig(input=[str(xp)], gaia_source=[str(gs)]))
    assert all(t.gaia for t in tasks) and len(tasks) == 2
    # a single archive file pairs only with a single gaia_source file: with a folder it runs without one,
    # said in a log line, also beside bulk partitions sharing the --gaia-source (as before)
    with caplog.at_level(logging.WARNING, logger="xpengine.pipeline.ray_job"):
        tasks = plan_partitions(InferenceConfig(input=[str(xp), str(GAIA_XP / STAR)], gaia_source=[str(gs)]))
    assert len(tasks) == 3 and [t.name for t in tasks if t.gaia is None] == [STAR.removesuffix(".csv")]
    assert any(
        "runs without a gaia_source table" in r.getMessage() and STAR in r.getMessage()
        for r in caplog.records
    )
    # without --gaia-source the XP folder's own pairs are used and a lone XP partition runs as before
    assert len(plan_partitions(InferenceConfig(input=[str(xp)]))) == 2


def test_lock_refuses_a_second_job_and_a_dead_holder_goes_stale(tmp_path):
    first = CatalogWriter(str(tmp_path / "out"))
    first.prepare()
    holder = json.loads((tmp_path / "out" / "_LOCK.json").read_text())
    assert holder["pid"] == os.getpid() and holder["host"] and holder["started_utc"]
    with pytest.raises(OutputLockedError, match="in use by another job"):
        CatalogWriter(str(tmp_path / "out")).prepare()
    first.release_lock()
    assert not (tmp_path / "out" / "_LOCK.json").exists()
    # a lock left by a process that is gone is taken over
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    holder["pid"] = int(dead.stdout)
    (tmp_path / "out" / "_LOCK.json").write_text(json.dumps(holder))
    again = CatalogWriter(str(tmp_path / "out"))
    again.prepare()
    assert json.loads((tmp_path / "out" / "_LOCK.json").read_text())["token"] != holder["token"]
    again.release_lock()
    # a lock of another host is stale only when its heartbeat is old
    holder.update(host="elsewhere", heartbeat_unix=0.0)
    (tmp_path / "out" / "_LOCK.json").write_text(json.dumps(holder))
    CatalogWriter(str(tmp_path / "out")).prepare(stale_after_s=60)
    holder.update(host="elsewhere", heartbeat_unix=__import__("time").time())
    (tmp_path / "out" / "_LOCK.json").write_text(json.dumps(holder))
    with pytest.raises(OutputLockedError):
        CatalogWriter(str(tmp_path / "out")).prepare(stale_after_s=60)


def _make_read_only(path: Path) -> None:
    if os.geteuid() != 0:
        os.chmod(path, 0o555)
        return
    # root ignores permission bits: the immutable attribute, where the file system allows it
    r = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot make {path} read-only as root here: chattr says {r.stderr.strip()!r}")


def _undo_read_only(path: Path) -> None:
    if os.geteuid() != 0:
        os.chmod(path, 0o755)
    else:
        subprocess.run(["chattr", "-i", str(path)], check=False)


def test_read_only_output_is_refused_before_any_work(tmp_path):
    out = tmp_path / "out"
    w = CatalogWriter(str(out))
    w.prepare()
    w.release_lock()
    _make_read_only(out)
    try:
        with pytest.raises(OutputNotWritableError, match="not writable"):
            CatalogWriter(str(out)).prepare()
    finally:
        _undo_read_only(out)


def _done(writer: CatalogWriter, task: PartitionTask, identity: dict) -> None:
    from xpengine.pipeline.ray_job import _input_fingerprints

    schema = catalog_schema(["teff"])
    table = pa.Table.from_pydict({f.name: pa.array([1], type=f.type) for f in schema}, schema=schema)
    rec = PartitionRecord(task.name, "done", 1, 1, inputs=_input_fingerprints(task), job=identity)
    writer.write_partition(task.name, table, rec)
    writer.write_job(identity)


def test_resume_refuses_another_model_labels_or_changed_input(tmp_path):
    xp = tmp_path / STAR
    shutil.copy(GAIA_XP / STAR, xp)
    task = PartitionTask(name="star", xp=str(xp))
    ident = {"model_sha256": "a" * 64, "labels": ["teff"], "schema": "s1"}
    w = CatalogWriter(str(tmp_path / "out"))
    _done(w, task, ident)
    assert set(_check_resume(w, [task], ident, overwrite=False)) == {"star"}
    with pytest.raises(JobError, match="another model"):
        _check_resume(w, [task], {**ident, "model_sha256": "b" * 64}, overwrite=False)
    with pytest.raises(JobError, match="labels"):
        _check_resume(w, [task], {**ident, "labels": ["teff", "mass"]}, overwrite=False)
    with xp.open("a") as f:
        f.write("\n")  # the input changed since
    with pytest.raises(JobError, match="input xp_file changed"):
        _check_resume(w, [task], ident, overwrite=False)
    assert _check_resume(w, [task], ident, overwrite=True) == {}


def test_progress_line_and_bar():
    tasks = [PartitionTask(name=f"p{i}", xp=str(GAIA_XP / STAR)) for i in range(4)]
    log_stream = io.StringIO()
    p = Progress(tasks, stream=log_stream)
    assert not p.tty
    p.rows(1000)
    p.partition_finished("p0", 1000)
    line = p.line()
    assert line.startswith("1/4 partitions") and "1,000 sources" in line and "sources/s" in line
    assert "ETA 00:" in line

    class Tty(io.StringIO):
        def isatty(self):
            return True

    bar = Tty()
    p = Progress(tasks, stream=bar)
    p.partition_finished("p0", 10)
    p.close()
    assert bar.getvalue().startswith("\r[#######") and bar.getvalue().endswith("\n")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "no-such-model"], "no model at 'no-such-model'"),
        (["--input", "/no/such/dir"], "no such directory or file"),
        (["--labels", "teff", "agee"], "unknown ['agee']"),
        (["--config", "/no/such.yaml"], "No such file"),
    ],
)
@pytest.mark.parametrize("entry", ["job", "xpengine infer"])
def test_job_errors_are_one_line(tmp_path, args, message, entry):
    cmd = [sys.executable, str(REPO / "jobs" / "infer_gaia.py")]
    prefix = "infer_gaia: error:"
    if entry != "job":
        cmd, prefix = [sys.executable, "-m", "xpengine.cli", "infer"], "xpengine infer: error:"
    r = subprocess.run(
        [*cmd, *args, "--output", str(tmp_path / "o")], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.startswith(prefix) and message in r.stderr


def test_job_help_keeps_its_example_lines_and_documents_every_flag():
    r = subprocess.run(
        [sys.executable, str(REPO / "jobs" / "infer_gaia.py"), "--help"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert r.returncode == 0
    assert "\n        python jobs/infer_gaia.py --input" in r.stdout  # the continuation line survives
    import re

    options = r.stdout.split("options:")[1]
    for flag in re.findall(r"^  (--[a-z-]+)", options, flags=re.M):
        entry = options.split(flag, 1)[1].split("\n  --", 1)[0]
        assert len(entry.split()) > 2, f"{flag} has no help"


def test_spurious_negative_parallaxes_are_dropped_and_flagged():
    g = np.array([12.0, 12.0, 12.0])
    plx = np.array([-2.0, -0.3, 1.0])  # −20σ, −3σ, +10σ with σ = 0.1 mas
    err = np.full(3, 0.1)
    ok = parallax_quality_mask(plx, err, None)
    assert ok.tolist() == [False, True, True]
    lum = pseudo_luminosity(g, plx, err, apply_zero_point=False)
    assert lum.no_parallax.tolist() == [True, False, False]
    assert np.isnan(lum.fakemag[0]) and lum.fakemag[1] < 0


def test_parallax_distance_only_where_significant():
    plx = np.array([10.0, 0.4, 2.0, np.nan, 5.0])
    err = np.array([0.2, 0.1, 0.1, 0.1, 0.1])
    ruwe = np.array([1.0, 1.0, 1.0, 1.0, 2.0])
    d, de, ok = parallax_distance(plx, err, ruwe)
    assert ok.tolist() == [True, False, True, False, False]
    assert d[0] == pytest.approx(100.0) and de[0] == pytest.approx(2.0)
    assert np.isnan(d[~ok]).all()


def test_job_refuses_an_unwritable_output_before_computing(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    _make_read_only(out)
    try:
        with pytest.raises(OutputNotWritableError):
            run_inference(InferenceConfig(input=[str(GAIA_XP / STAR)], output=str(out)))
    finally:
        _undo_read_only(out)


@pytest.mark.slow
def test_xpengine_infer_runs_the_job_on_a_single_file(tmp_path):
    """`xpengine infer --input FILE --output DIR`: the same job as jobs/infer_gaia.py, on one archive file."""
    import pyarrow.parquet as pq

    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    r = subprocess.run(
        [sys.executable, "-m", "xpengine.cli", "infer", "--input", str(GAIA_XP / "XP_CONTINUOUS_RAW.csv"),
         "--output", str(tmp_path / "cat"), "--labels", "teff", "logg", "--num-cpus", "2"],
        capture_output=True, text=True, timeout=300, cwd=REPO, env=env,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    t = pq.read_table(tmp_path / "cat" / "XP_CONTINUOUS_RAW.parquet")
    assert sorted(t.column("source_id").to_pylist()) == [5762406957886626816, 5853498713190525696]
    assert json.loads((tmp_path / "cat" / "_JOB.json").read_text())["labels"] == ["teff", "logg"]


def _single_file_partition(writer: CatalogWriter, name: str, sids: list[int]) -> None:
    """A done single-file partition (no HEALPix range: all its sources unanchored) of `sids`."""
    from xpengine.pipeline.finish import _rows_table

    schema = catalog_schema(["teff"])
    sid = np.array(sids, dtype=np.int64)
    cols = {f.name: np.zeros(len(sid), dtype=f.type.to_pandas_dtype()) for f in schema}
    record = PartitionRecord(
        partition=name,
        status="done",
        input_rows=len(sid),
        output_rows=len(sid),
        inputs={},
        problems={"unanchored_source_ids": sids},
    )
    writer.write_partition(name, _rows_table(schema, cols, sid), record)


@pytest.mark.parametrize("killed_mid_move", [False, True])
def test_cross_partition_duplicate_moved_once_even_after_a_kill_mid_move(tmp_path, killed_mid_move):
    """A source in two single files is kept in the first by name and moved to the other's _rejected/
    once, also when an earlier run was killed after writing that rejected file but before the
    catalogue file (write_partition's order), which leaves the source in both."""
    import pyarrow.parquet as pq

    from xpengine.pipeline.finish import _rejected_table, resolve_cross_partition_duplicates

    star, other = 5937083312263887616, 5853498713190525696
    writer = CatalogWriter(str(tmp_path / "out"))
    writer.prepare()
    _single_file_partition(writer, "a", [star])
    _single_file_partition(writer, "b", [other, star])
    if killed_mid_move:
        gone = writer.read_partition("b").slice(1, 1)
        os.makedirs(tmp_path / "out" / "_rejected")
        pq.write_table(
            _rejected_table(gone, ["duplicate: source_id also in partition a"]), writer.rejected_path("b")
        )
    result = resolve_cross_partition_duplicates(writer)
    writer.release_lock()
    assert result == {"sources": 1, "moved_to_rejected": {"b": 1}}
    assert writer.read_partition("a").column("source_id").to_pylist() == [star]
    assert writer.read_partition("b").column("source_id").to_pylist() == [other]
    rejected = writer.read_rejected("b")
    assert rejected.column("source_id").to_pylist() == [star]
    assert rejected.column("reason").to_pylist() == ["duplicate: source_id also in partition a"]
    record = writer.done_records()["b"]
    assert record["rejected_rows"] == 1 and record["problems"]["unanchored_source_ids"] == [other]
    assert resolve_cross_partition_duplicates(writer) == {"sources": 0, "moved_to_rejected": {}}


@pytest.mark.slow
def test_sampled_input_takes_the_every_order_calibration_in_the_job(tmp_path):
    """Through the job: a real XP_SAMPLED file (every coefficient, no relevancy counts) gets NO_RELEVANCY and
    ALL_XP_ORDERS (gaia-xp's every-order mass and age entries, calibration format 5); real archive
    continuous rows with their relevancy counts keep the standard entries (no ALL_XP_ORDERS)."""
    import pyarrow.parquet as pq

    from xpengine.features.flags import SourceFlag, describe_flags

    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    sampled = GAIA_XP / "XP_SAMPLED-Gaia_DR3_5937083312263887616.csv"
    r = subprocess.run(
        [sys.executable, "-m", "xpengine.cli", "infer", "--input", str(sampled),
         str(GAIA_XP / "XP_CONTINUOUS_RAW.csv"), "--output", str(tmp_path / "cat"), "--num-cpus", "2"],
        capture_output=True, text=True, timeout=300, cwd=REPO, env=env,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    s = pq.read_table(tmp_path / "cat" / f"{sampled.stem}.parquet").to_pylist()
    c = pq.read_table(tmp_path / "cat" / "XP_CONTINUOUS_RAW.parquet").to_pylist()
    assert len(s) == 1 and len(c) == 2
    assert {"NO_RELEVANCY", "ALL_XP_ORDERS"} <= set(describe_flags(s[0]["flags"])), describe_flags(
        s[0]["flags"]
    )
    for row in c:
        assert not row["flags"] & int(SourceFlag.ALL_XP_ORDERS | SourceFlag.NO_RELEVANCY), describe_flags(
            row["flags"]
        )
    assert s[0]["mass"] > 0 and s[0]["mass_error"] > 0
