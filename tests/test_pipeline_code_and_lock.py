"""Session 30's trust fixes, without a cluster: the job's identity holds the code (a resume under other
code is refused unless --allow-code-change), a job whose lock was taken over while it was paused writes
nothing when it wakes, a `_rejected/` file its record does not count gets its partition redone, and
`_SUMMARY.json` says a run is under way until it finishes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pytest

from xpengine.catalog.schema import catalog_schema
from xpengine.pipeline.code_identity import CODE_KEY, _source_digest, code_identity, describe_code, same_code
from xpengine.pipeline.identity import (
    _check_resume,
    _identity_differences,
    _job_identity,
    begin_job,
    end_job,
)
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

    def digest():
        _source_digest.cache_clear()
        return _source_digest(str(root))

    first = digest()
    assert first[1] == 2
    (root / "sub" / "__pycache__").mkdir()
    (root / "sub" / "__pycache__" / "b.cpython-312.py").write_text("compiled")
    (root / ".ipynb_checkpoints").mkdir()
    (root / ".ipynb_checkpoints" / "a-checkpoint.py").write_text("x = 0\n")
    (root / "notes.txt").write_text("not code")
    assert digest() == first  # caches, hidden folders and other files are not the code
    (root / "a.py").write_bytes(b"x = 1\r\n")
    assert digest() == first  # a Windows checkout of the same code
    (root / "sub" / "b.py").write_text("y = 3\n")
    assert digest()[0] != first[0]
    (root / "sub" / "b.py").write_text("y = 2\n")
    (root / "sub" / "b.py").rename(root / "sub" / "c.py")  # same bytes under another name: other code
    assert digest()[0] != first[0]
    (root / "sub" / "c.py").rename(root / "sub" / "b.py")
    assert digest() == first
    # a folder linked into the package is read through the link (rglob did not enter it)
    outside = tmp_path / "outside"
    shutil.move(str(root / "sub"), outside)
    (root / "sub").symlink_to(outside, target_is_directory=True)
    assert digest() == first
    (outside / "b.py").write_text("y = 4\n")
    assert digest()[0] != first[0]
    _source_digest.cache_clear()
    code = code_identity()
    assert code["files"] > 100 and len(code["source_sha256"]) == 16
    assert set(code["runtime"]) == {"python", "numpy", "pyarrow", "torch", "ray"}
    assert describe_code(code) == f"xpengine {code['version']} source {code['source_sha256']}"
    assert describe_code(None) == "unknown (before session 30)"
    # the runtime is recorded, not compared
    assert same_code(code, {**code, "runtime": {"python": "0"}}) and not same_code(code, None)


def _zip_package(archive: Path, edit: str | None = None) -> None:
    import xpengine

    pkg = Path(xpengine.__file__).resolve().parent
    with zipfile.ZipFile(archive, "w") as z:
        for p in sorted(pkg.rglob("*")):
            if p.is_file() and "__pycache__" not in p.parts:
                rel = p.relative_to(pkg.parent).as_posix()
                data = p.read_bytes() + (edit.encode() if edit and rel == "xpengine/__init__.py" else b"")
                z.writestr(rel, data)
        z.writestr("xpengine/__pycache__/x.py", "compiled")  # not the code, as in a folder


def test_a_package_imported_from_a_zip_is_hashed_like_its_folder(tmp_path):
    """A zip on sys.path (a zipapp) had no .py file to hash: every zip install read `files: 0` and any two
    were the same code (helper-89 #5). Its members are hashed as the folder's files are."""
    code = code_identity()
    script = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); import xpengine; "
        "from xpengine.pipeline.code_identity import code_identity, _code_on_disk, _package_folder; "
        "c = code_identity(); d = _code_on_disk(_package_folder(), xpengine.__version__); "
        "print(json.dumps([xpengine.__file__, c['source_sha256'], c['files'], d['source_sha256'], d['files']]))"
    )
    found = {}
    for name, edit in (("same", None), ("edited", "# a comment\n")):
        archive = tmp_path / f"{name}.zip"
        _zip_package(archive, edit)
        run = subprocess.run(
            [sys.executable, "-c", script, str(archive)], capture_output=True, text=True, cwd=tmp_path
        )
        assert run.returncode == 0, run.stderr[-2000:]
        found[name] = json.loads(run.stdout.strip().splitlines()[-1])
        assert found[name][0].startswith(str(archive))  # imported from the zip, not the checkout
        assert found[name][1:3] == found[name][3:5]  # the workers' on-disk check reads the zip alike
    assert found["same"][1:3] == [code["source_sha256"], code["files"]]
    assert found["edited"][1] != code["source_sha256"] and found["edited"][2] == code["files"]
    # the archive damaged after the import (rewritten in place, half written): read as unreadable, never as
    # the digest of no file (review of session 33)
    damage = (
        "import sys; sys.path.insert(0, sys.argv[1]); import xpengine; "
        "from xpengine.pipeline.code_identity import _code_on_disk, _package_folder; "
        "data = open(sys.argv[1], 'rb').read(); open(sys.argv[1], 'wb').write(data[: len(data) // 2]); "
        "print(_code_on_disk(_package_folder(), xpengine.__version__, fresh=True)['source_sha256'])"
    )
    archive = tmp_path / "damaged.zip"
    _zip_package(archive)
    run = subprocess.run(
        [sys.executable, "-c", damage, str(archive)], capture_output=True, text=True, cwd=tmp_path
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().startswith("unreadable (OSError:") and "zip archive" in run.stdout


def test_a_resume_under_other_code_is_refused_unless_allowed(tmp_path):
    out = tmp_path / "out"
    task = _task(tmp_path, "A")
    identity = _job_identity(["teff"], PROVENANCE)
    assert identity[CODE_KEY] == code_identity()
    older = _other_code(identity)
    assert _identity_differences(older, identity) == [
        f"code xpengine {identity[CODE_KEY]['version']} source 0000000000000000 → "
        f"{describe_code(identity[CODE_KEY])}"
    ]
    # a record from before the code was recorded (session 29 and earlier): unknown code, refused too
    before = {k: v for k, v in identity.items() if k != CODE_KEY}
    assert _identity_differences(before, identity)[0].startswith("code unknown (before session 30) → ")
    w = CatalogWriter(str(out))
    w.prepare()
    try:
        w.write_job({**older, **ABOUT})
        _write_done(w, task, older)
        with pytest.raises(JobError, match="--allow-code-change") as err:
            _check_resume(w, [task], identity, False)
        assert "the catalogue was made with another code xpengine" in str(err.value)
        assert "source 0000000000000000" in str(err.value)
        # another model too: --allow-code-change would not be enough, so it is not offered
        other_model = {**identity, "model_sha256": "b" * 64}
        with pytest.raises(JobError) as err:
            _check_resume(w, [task], other_model, False)
        assert "--allow-code-change" not in str(err.value) and "model" in str(err.value)
        # allowed: the partition is kept, and its record keeps the code that made it; _JOB.json says
        # which codes its records name
        cfg = SimpleNamespace(overwrite=False, checksum=False, verify_inputs=False, allow_code_change=True)
        accepted = []
        done, record_job = begin_job(w, [task], identity, cfg, ABOUT, lambda: accepted.append(True))
        assert accepted == [True]
        assert set(done) == {"A"} and record_job[CODE_KEY] == identity[CODE_KEY]
        assert done["A"]["job"][CODE_KEY]["source_sha256"] == "0" * 16
        job = json.loads((out / "_JOB.json").read_text())
        assert job[CODE_KEY] == identity[CODE_KEY]
        assert job["codes_in_records"] == sorted(
            [describe_code(older[CODE_KEY]), describe_code(identity[CODE_KEY])]
        )
        end_job(w, identity, ABOUT)  # kept at the end of the run
        assert json.loads((out / "_JOB.json").read_text())["codes_in_records"] == job["codes_in_records"]
        # the job now names this code; its partition of the other code is still refused without the flag,
        # not silently redone as a left-over of an earlier job
        with pytest.raises(JobError, match="finished partitions differ from this run: A \\(code xpengine"):
            _check_resume(w, [task], identity, False)
        assert set(_check_resume(w, [task], identity, False, allow_code_change=True)) == {"A"}
        # a refused run calls no `accepted`: nothing is removed, and its summary is not touched
        with pytest.raises(JobError):
            begin_job(
                w,
                [task],
                identity,
                SimpleNamespace(**{**cfg.__dict__, "allow_code_change": False}),
                ABOUT,
                lambda: accepted.append(False),
            )
        assert accepted == [True]
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


def test_a_job_taken_over_while_it_slept_removes_nothing_when_it_wakes(tmp_path):
    """Nor does it delete the new holder's files (session 30's review: `write_partition` removing an old
    `_rejected/` file, and `remove_partition_files`, checked only a heartbeat's verdict)."""
    from xpengine.pipeline.duplicates import remove_partition_files

    out = tmp_path / "out"
    a = CatalogWriter(str(out))
    a.prepare()
    a._heartbeat_stop.set()
    task = _task(tmp_path, "P")
    rec = PartitionRecord("P", "done", 2, 1, inputs=_input_fingerprints(task), job={}, rejected_rows=1)
    a.write_partition("P", _table(), rec, rejected=_table().append_column("reason", pa.array(["dup"])))
    other = {**json.loads((out / "_LOCK.json").read_text()), "token": "other", "pid": os.getpid() + 1}
    (out / "_tmp" / "x").write_text(json.dumps(other))
    os.replace(out / "_tmp" / "x", out / "_LOCK.json")  # B took it over and holds P with its rejected row
    with pytest.raises(OutputLockedError, match="lost its lock"):
        _write_done(a, task, {})  # A redoes P without rejected rows: it would remove B's _rejected/P
    assert (out / "_rejected" / "P.parquet").exists() and (out / "P.parquet").exists()
    a.lock_lost = None  # (as though no write had told it yet)
    with pytest.raises(OutputLockedError, match="lost its lock"):
        remove_partition_files(a, "P", manifest=True)
    assert (out / "P.parquet").exists() and (out / "_manifest" / "P.json").exists()
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
def test_the_summary_says_running_until_the_run_finishes_or_stops(tmp_path):
    from xpengine.pipeline.progress import _running_summary, _stopped_summary
    from xpengine.pipeline.ray_job import JobSummary

    s = JobSummary(output=str(tmp_path), partitions_total=3, partitions_skipped=["A"])
    running = _running_summary(s)
    assert running["status"] == "running" and running["pid"] == os.getpid()
    assert running["partitions_total"] == 3
    assert s.to_dict()["status"] == "finished"
    w = CatalogWriter(str(tmp_path / "out"))
    w.prepare()
    try:
        s.partitions_done = ["B"]
        _stopped_summary(w, running, s, OSError("disk full"))
        got = json.loads((tmp_path / "out" / "_SUMMARY.json").read_text())
        assert got["status"] == "stopped" and got["error"] == "OSError: disk full"
        assert got["partitions_done"] == ["B"] and got["started_utc"] == running["started_utc"]
        assert got["partitions_skipped"] == ["A"]  # what was done before and kept
    finally:
        w.release_lock()


def test_a_run_that_stops_on_an_error_says_so_in_its_summary(tmp_path, monkeypatch):
    """No cluster: the step that would start Ray fails as a full disk would (session 30's review)."""
    import xpengine.pipeline.ray_job as rj
    from xpengine.pipeline.config import InferenceConfig
    from xpengine.pipeline.writer import OutputNotWritableError

    def full_disk(*args, **kw):
        raise OutputNotWritableError("writing x.parquet failed ([Errno 28] No space left on device)")

    monkeypatch.setattr(rj, "_run_tasks", full_disk)
    star = tmp_path / "star.csv"
    shutil.copy(GAIA_XP / STAR, star)
    out = tmp_path / "out"
    with pytest.raises(OutputNotWritableError):
        rj.run_inference(InferenceConfig(input=[str(star)], output=str(out), checksum=False))
    got = json.loads((out / "_SUMMARY.json").read_text())
    assert got["status"] == "stopped" and "No space left on device" in got["error"]
    assert got["partitions_total"] == 1 and got["pid"] == os.getpid() and "stopped_utc" in got
    assert not (out / "_LOCK.json").exists()


def test_the_code_hint_is_offered_only_where_it_is_enough_and_codes_are_listed(tmp_path):
    """Review of session 30 (helper-87): a partition of other code whose input changed too is refused
    without the hint (the flag would not be enough), and `_JOB.json` lists the codes of every done
    record, those of partitions this run does not plan included."""
    import time

    identity = _job_identity(["teff"], PROVENANCE)
    older = _other_code(identity)
    a, b = _task(tmp_path, "A"), _task(tmp_path, "B")
    w = CatalogWriter(str(tmp_path / "out"))
    w.prepare()
    try:
        w.write_job({**identity, **ABOUT})
        _write_done(w, a, older)
        with open(a.xp, "a") as f:  # the input changed since A was made
            f.write("\n")
        os.utime(a.xp, (time.time() + 5, time.time() + 5))
        with pytest.raises(JobError) as err:
            _check_resume(w, [a], identity, False)
        assert "input" in str(err.value) and "--allow-code-change" not in str(err.value)
        # --overwrite --allow-code-change with A alone planned: B, of the other code, stays and is listed
        _write_done(w, b, older)
        cfg = SimpleNamespace(overwrite=True, checksum=False, verify_inputs=False, allow_code_change=True)
        begin_job(w, [a], identity, cfg, ABOUT)
        assert not (tmp_path / "out" / "A.parquet").exists() and (tmp_path / "out" / "B.parquet").exists()
        codes = json.loads((tmp_path / "out" / "_JOB.json").read_text())["codes_in_records"]
        assert codes == sorted([describe_code(older[CODE_KEY]), describe_code(identity[CODE_KEY])])
    finally:
        w.release_lock()
