"""Session 30's trust fixes, without a cluster: the job's identity holds the code (a resume under other
code is refused unless --allow-code-change), a job whose lock was taken over while it was paused writes
nothing when it wakes, a `_rejected/` file its record does not count gets its partition redone, and
`_SUMMARY.json` says a run is under way until it finishes."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pytest

from xpengine.catalog.schema import catalog_schema
from xpengine.pipeline.code_identity import CODE_KEY, _source_digest, code_identity, describe_code
from xpengine.pipeline.identity import _check_resume, _identity_differences, _job_identity, begin_job
from xpengine.pipeline.plan import JobError, _input_fingerprints
from xpengine.pipeline.stages import PartitionTask
from xpengine.pipeline.writer import CatalogWriter, OutputLockedError, PartitionRecord

GAIA_XP = Path(__file__).parent / "data" / "gaia_xp"
STAR = "XP_CONTINUOUS-Gaia_DR3_5937083312263887616.csv"
PROVENANCE = {"model_sha256": "a" * 64}
ABOUT = {"model": "m", "xpengine_version": "test"}


def _table(n: int = 1) -> pa.Table:
    schema = catalog_schema(["teff"], metadata={"provenance": {"model": "m"}})
    return pa.Table.from_pydict({f.name: pa.array([1] * n, type=f.type) for f in schema}, schema=schema)


def _task(tmp_path: Path, name: str) -> PartitionTask:
    xp = tmp_path / f"{name}.csv"
    shutil.copy(GAIA_XP / STAR, xp)
    return PartitionTask(name=name, xp=str(xp))


def _write_done(writer: CatalogWriter, task: PartitionTask, job: dict) -> None:
    rec = PartitionRecord(task.name, "done", 1, 1, inputs=_input_fingerprints(task), job=job)
    writer.write_partition(task.name, _table(), rec)


def _other_code(identity: dict) -> dict:
    return {**identity, CODE_KEY: {**identity[CODE_KEY], "source_sha256": "0" * 16}}


# -- the code in the job's identity ------------------------------------------------------------------
def test_the_source_digest_follows_every_file_and_nothing_else(tmp_path):
    root = tmp_path / "pkg"
    (root / "sub").mkdir(parents=True)
    (root / "a.py").write_text("x = 1\n")
    (root / "sub" / "b.py").write_text("y = 2\n")
    first = _source_digest(str(root))
    assert first[1] == 2
    (root / "sub" / "__pycache__").mkdir()
    (root / "sub" / "__pycache__" / "b.cpython-312.py").write_text("compiled")
    (root / "notes.txt").write_text("not code")
    _source_digest.cache_clear()
    assert _source_digest(str(root)) == first  # caches and other files are not the code
    (root / "sub" / "b.py").write_text("y = 3\n")
    _source_digest.cache_clear()
    assert _source_digest(str(root))[0] != first[0]
    (root / "sub" / "b.py").write_text("y = 2\n")
    (root / "sub" / "b.py").rename(root / "sub" / "c.py")  # same bytes under another name: other code
    _source_digest.cache_clear()
    assert _source_digest(str(root))[0] != first[0]
    _source_digest.cache_clear()
    code = code_identity()
    assert code["files"] > 100 and len(code["source_sha256"]) == 16
    assert describe_code(code).startswith(f"xpengine {code['version']} (source sha256 ")


def test_a_resume_under_other_code_is_refused_unless_allowed(tmp_path):
    out = tmp_path / "out"
    task = _task(tmp_path, "A")
    identity = _job_identity(["teff"], PROVENANCE)
    assert identity[CODE_KEY] == code_identity()
    older = _other_code(identity)
    assert _identity_differences(older, identity)[0].startswith("code xpengine ")
    # a record from before the code was recorded (session 29 and earlier) is not refused for it
    assert _identity_differences({k: v for k, v in identity.items() if k != CODE_KEY}, identity) == []
    w = CatalogWriter(str(out))
    w.prepare()
    try:
        w.write_job({**older, **ABOUT})
        _write_done(w, task, older)
        with pytest.raises(JobError, match="--allow-code-change") as err:
            _check_resume(w, [task], identity, False)
        assert "the catalogue was made with another code xpengine" in str(err.value)
        assert "source sha256 0000000000000000" in str(err.value)
        # allowed: the partition is kept, and its record keeps the code that made it
        cfg = SimpleNamespace(overwrite=False, checksum=False, verify_inputs=False, allow_code_change=True)
        done, record_job = begin_job(w, [task], identity, cfg, ABOUT)
        assert set(done) == {"A"} and record_job[CODE_KEY] == identity[CODE_KEY]
        assert done["A"]["job"][CODE_KEY]["source_sha256"] == "0" * 16
        assert json.loads((out / "_JOB.json").read_text())[CODE_KEY] == identity[CODE_KEY]
        # the job now names this code; its partition of the other code is still refused without the flag,
        # not silently redone as a left-over of an earlier job
        with pytest.raises(JobError, match="finished partitions differ from this run: A \\(code xpengine"):
            _check_resume(w, [task], identity, False)
        assert set(_check_resume(w, [task], identity, False, allow_code_change=True)) == {"A"}
    finally:
        w.release_lock()


# -- a job paused past its lock's staleness ------------------------------------------------------------
def test_a_job_whose_lock_was_taken_while_it_slept_writes_nothing_when_it_wakes(tmp_path):
    out = tmp_path / "out"
    a = CatalogWriter(str(out))
    a.prepare()
    a._heartbeat_stop.set()  # paused: its heartbeat thread has not run since
    task = _task(tmp_path, "A")
    _write_done(a, task, {})  # its own lock: written
    assert (out / "A.parquet").exists()
    other = {**json.loads((out / "_LOCK.json").read_text()), "token": "other", "pid": os.getpid() + 1}
    (out / "_tmp" / "x").write_text(json.dumps(other))
    os.replace(out / "_tmp" / "x", out / "_LOCK.json")  # another job judged it stale and took it over
    assert a.lock_lost is None  # no heartbeat has seen it
    b_task = _task(tmp_path, "B")
    with pytest.raises(OutputLockedError, match="lost its lock"):
        _write_done(a, b_task, {})
    assert not (out / "B.parquet").exists() and not (out / "_manifest" / "B.json").exists()
    assert not [p for p in (out / "_tmp").iterdir() if p.name != "x"]  # its temporary file is gone
    assert a.lock_lost  # and it writes nothing more
    with pytest.raises(OutputLockedError):
        a.write_summary({"status": "finished"})
    assert json.loads((out / "_LOCK.json").read_text())["token"] == "other"
    a.release_lock()
    assert json.loads((out / "_LOCK.json").read_text())["token"] == "other"


def test_a_job_beside_its_own_heartbeat_keeps_writing(tmp_path):
    out = tmp_path / "out"
    a = CatalogWriter(str(out))
    a.prepare(stale_after_s=4.0)  # a beat a second
    try:
        for i in range(6):
            _write_done(a, _task(tmp_path, f"P{i}"), {})
            a.heartbeat()
        assert a.lock_lost is None and len(list(out.glob("P*.parquet"))) == 6
    finally:
        a.release_lock()


# -- a `_rejected/` file its record does not count ---------------------------------------------------
def test_a_rejected_file_written_just_before_a_kill_gets_its_partition_redone(tmp_path, caplog):
    out = tmp_path / "out"
    w = CatalogWriter(str(out))
    w.prepare()
    try:
        a, b = _task(tmp_path, "A"), _task(tmp_path, "B")
        _write_done(w, a, {})
        _write_done(w, b, {})
        # a move of rows out of A (duplicates) killed after its `_rejected/` write: the catalogue file and
        # the record are A's earlier ones, so the moved row is in both files
        (out / "_rejected").mkdir(exist_ok=True)
        w._write_table(w.rejected_path("A"), _table().append_column("reason", pa.array(["duplicate"])))
        done = w.done_records()
        with caplog.at_level("WARNING", logger="xpengine.pipeline.writer"):
            kept = w.drop_damaged(done, {"A", "B"})
        assert set(kept) == {"B"}
        assert "partition A is redone" in caplog.text and "holds 1 rows, its record 0" in caplog.text
        assert not (out / "A.parquet").exists() and not (out / "_rejected" / "A.parquet").exists()
        assert (out / "B.parquet").exists()
    finally:
        w.release_lock()


# -- _SUMMARY.json while a run is under way -----------------------------------------------------------
def test_the_summary_says_running_until_the_run_finishes(tmp_path):
    from xpengine.pipeline.ray_job import JobSummary, _running_summary

    s = JobSummary(output=str(tmp_path), partitions_total=3, partitions_skipped=["A"])
    running = _running_summary(s)
    assert running["status"] == "running" and running["pid"] == os.getpid()
    assert running["partitions_total"] == 3 and running["partitions_skipped"] == ["A"]
    assert s.to_dict()["status"] == "finished"
