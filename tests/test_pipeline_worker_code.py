"""Every Ray worker that reads or predicts runs the driver's xpengine code (session 31): a node of a
cluster with another xpengine installed stops the job in one line instead of writing its rows into the
catalogue under the driver's code. The driver's code is made to differ from its workers' by giving the
driver another source digest (`_source_digest` patched in this process only: the session cluster's
workers compute their own)."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest

from xpengine.pipeline import code_identity as ci
from xpengine.pipeline.code_identity import (
    MISMATCH_MARK,
    CodeMismatchError,
    check_worker_code,
    describe_code,
    expected_code,
    mismatch_message,
    one_code,
)
from xpengine.pipeline.plan import JobError
from xpengine.pipeline.stages import PartitionTask, featurize_partition

GAIA_XP = Path(__file__).parent / "data" / "gaia_xp"
STAR = "XP_CONTINUOUS-Gaia_DR3_5937083312263887616.csv"
OTHER = {"version": "0.0.1", "source_sha256": "0123456789abcdef"}


def test_a_worker_under_the_drivers_code_goes_on_and_under_other_code_says_where():
    check_worker_code(None, "read stage")  # not asked: not checked
    check_worker_code(expected_code(), "read stage")
    check_worker_code(
        {**ci.code_identity(), "files": -1, "runtime": {}}, "read stage"
    )  # compared: version, digest
    with pytest.raises(CodeMismatchError) as err:
        check_worker_code(OTHER, "predictor actor")
    msg = str(err.value)
    assert msg.startswith(MISMATCH_MARK) and "\n" not in msg
    assert "the predictor actor on " + socket.gethostname() in msg
    assert describe_code(ci.code_identity()) in msg and describe_code(OTHER) in msg
    assert str(Path(ci.__file__).resolve().parents[1]) in msg  # the worker's package folder
    assert "install the same xpengine on every node" in msg


def test_a_worker_checks_the_source_on_the_disk_and_words_its_advice_by_where_it_runs(tmp_path, monkeypatch):
    """A long-lived actor imports modules lazily: the read stage hashes the package as it is on the disk
    at each partition (review of session 31), and a change on the driver's own machine and folder reads
    as an edit since the driver started, not as another install."""
    copy = tmp_path / "xpengine"
    shutil.copytree(
        Path(ci.__file__).resolve().parents[1], copy, ignore=shutil.ignore_patterns("__pycache__")
    )
    monkeypatch.setattr(ci, "_package_folder", lambda: str(copy))
    driver = {**expected_code(), "folder": str(copy)}  # the driver started on this code, in this folder
    check_worker_code(driver, "read stage", on_disk=True)
    with open(copy / "pipeline" / "stages.py", "a") as f:
        f.write("# replaced on the disk after the driver started\n")
    check_worker_code(driver, "read stage")  # what the process hashed at its start: unchanged
    with pytest.raises(CodeMismatchError, match="changed after the driver started: restart the driver"):
        check_worker_code(driver, "read stage", on_disk=True)
    with pytest.raises(CodeMismatchError, match="install the same xpengine on every node"):
        check_worker_code({**driver, "host": "another-node"}, "read stage", on_disk=True)


def test_the_on_disk_check_reads_the_files_again_only_where_their_stats_moved(tmp_path, monkeypatch):
    """helper-89 #4: each partition's check stats the package's files and reads them only where a stat
    moved. An edit that keeps the size and sets the mtime back still moves the ctime, and is seen."""
    import os

    copy = tmp_path / "xpengine"
    shutil.copytree(
        Path(ci.__file__).resolve().parents[1], copy, ignore=shutil.ignore_patterns("__pycache__")
    )
    monkeypatch.setattr(ci, "_package_folder", lambda: str(copy))
    monkeypatch.setattr(ci, "_RACY_S", 0.0)  # the files were written just now
    reads = []
    digest = ci._source_digest.__wrapped__
    monkeypatch.setattr(
        ci._source_digest, "__wrapped__", lambda folder: reads.append(folder) or digest(folder)
    )
    driver = {**expected_code(), "folder": str(copy)}
    for _ in range(3):
        check_worker_code(driver, "read stage", on_disk=True)
    assert len(reads) == 1  # read once, then known by the stats
    monkeypatch.setattr(ci, "_REREAD_S", 0.0)  # helper-91: a network filesystem's cached stats
    check_worker_code(driver, "read stage", on_disk=True)
    assert len(reads) == 2  # read again once the stats are old enough to be an NFS client's cache
    monkeypatch.setattr(ci, "_REREAD_S", 30.0)
    reads.clear()
    check_worker_code(driver, "read stage", on_disk=True)
    assert not reads
    target = copy / "pipeline" / "stages.py"
    st = target.stat()
    text = target.read_bytes()
    target.write_bytes(text.replace(b"def ", b"def_", 1))  # same size
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))  # the mtime set back
    assert target.stat().st_size == st.st_size and target.stat().st_mtime_ns == st.st_mtime_ns
    with pytest.raises(CodeMismatchError, match="changed after the driver started"):
        check_worker_code(driver, "read stage", on_disk=True)
    assert len(reads) == 2  # read again at the moved ctime, and once more before it stopped
    monkeypatch.setattr(ci, "_RACY_S", 3600.0)  # every file "just changed": never taken from the stats
    target.write_bytes(text)
    check_worker_code(driver, "read stage", on_disk=True)
    check_worker_code(driver, "read stage", on_disk=True)
    assert len(reads) == 4


def test_a_file_caught_mid_rewrite_is_looked_at_once_more(monkeypatch):
    """A file being rewritten with the same bytes (an editor's save, `cp` over it, a reinstall) reads as
    other code, or as unreadable, for milliseconds: the on-disk check looks once more, a second later,
    before it stops a job (review of session 31)."""
    driver = expected_code()
    seen = [{**driver, "source_sha256": "unreadable (FileNotFoundError: stages.py)"}, driver]
    monkeypatch.setattr(ci, "_code_on_disk", lambda folder, version, **kw: seen.pop(0))
    check_worker_code(driver, "read stage", on_disk=True)
    assert seen == []  # looked at twice, passed
    monkeypatch.setattr(
        ci, "_code_on_disk", lambda folder, version, **kw: {**driver, "source_sha256": "0" * 16}
    )
    with pytest.raises(CodeMismatchError):  # other code both times: stopped
        check_worker_code(driver, "read stage", on_disk=True)


def test_the_message_is_found_however_ray_wrapped_it():
    try:
        check_worker_code(OTHER, "read stage")
    except CodeMismatchError as exc:
        own = exc
    assert mismatch_message(own) == str(own)
    # the text of an actor that died in its constructor: a traceback with the error's line inside
    ray_text = (
        "The actor died because of an error raised in its creation task, \x1b[36mray::MapWorker\x1b[39m\n"
        '  File "stages.py", line 1, in __init__\n'
        f"xpengine.pipeline.code_identity.CodeMismatchError: {own}\n"
        "\nThe above exception was the direct cause of:\n"
    )
    assert mismatch_message(RuntimeError(ray_text)) == str(own)
    try:
        try:
            raise own
        except CodeMismatchError as inner:
            raise ValueError("wrapped") from inner
    except ValueError as outer:
        assert mismatch_message(outer) == str(own)
    assert mismatch_message(RuntimeError("a reader failed")) is None
    # the mark alone, without the error's class before it, is some other text (review of session 31)
    assert mismatch_message(RuntimeError(f"column note: {MISMATCH_MARK} none")) is None


def test_the_warm_pool_stops_on_a_mismatch_and_cancels_the_jobs_other_calls(monkeypatch):
    """Its other calls for the job are cancelled (Ray's cancel: a queued call never runs) and the pool's
    actors killed (a call already running on the threaded actor stops instead of finishing unread), then
    the mismatch is raised."""
    import ray

    from xpengine.pipeline.warm_pool import _stop_on_mismatch

    cancelled, killed = [], []
    monkeypatch.setattr(ray, "cancel", lambda ref, **kw: cancelled.append(ref))
    monkeypatch.setattr(ray, "kill", lambda handle, **kw: killed.append((handle, kw)))
    pending = {"ref-a": (1, 0, 0), "ref-b": (2, 0, 1)}
    _stop_on_mismatch(RuntimeError("an unrelated failure"), pending, ["actor-0"])  # not a mismatch
    assert cancelled == [] and killed == []
    wrapped = RuntimeError(
        f"ray::PoolWorker.run()\nxpengine.pipeline.code_identity.CodeMismatchError: {MISMATCH_MARK} x"
    )
    with pytest.raises(CodeMismatchError, match=r" x$"):
        _stop_on_mismatch(wrapped, pending, ["actor-0", "actor-1"])
    assert cancelled == ["ref-a", "ref-b"]
    assert killed == [("actor-0", {"no_restart": True}), ("actor-1", {"no_restart": True})]


@pytest.mark.ray
def test_a_mismatch_raised_in_an_actor_call_is_one_line(ray_local):
    """Ray raises an actor call's error as a RayTaskError that is also a CodeMismatchError, its text the
    whole traceback (review of session 31): the one line is still found."""
    import ray

    @ray.remote(num_cpus=0)
    class Worker:
        def run(self):
            check_worker_code(OTHER, "read stage", on_disk=True)

    with pytest.raises(CodeMismatchError) as err:
        ray.get(Worker.remote().run.remote(), timeout=60)
    assert "\n" in str(err.value)  # the traceback Ray wraps it in
    message = mismatch_message(err.value)
    assert message.startswith(MISMATCH_MARK) and "\n" not in message and "the read stage on" in message
    with pytest.raises(JobError) as job_err:

        def drawn():
            yield 1
            raise err.value

        list(one_code(drawn(), JobError))
    assert str(job_err.value) == message


def test_one_code_passes_the_batches_and_turns_a_mismatch_into_one_line():
    assert list(one_code(iter([1, 2]), JobError)) == [1, 2]

    def drawn(error):
        yield 1
        raise error

    with pytest.raises(JobError) as err:
        list(
            one_code(
                drawn(
                    RuntimeError(
                        f"worker died:\nCodeMismatchError: {MISMATCH_MARK} the read stage on x\nmore"
                    )
                ),
                JobError,
            )
        )
    assert str(err.value) == MISMATCH_MARK + " the read stage on x"
    with pytest.raises(OSError, match="disk full"):  # any other error is left as it is
        list(one_code(drawn(OSError("disk full")), JobError))


def test_a_read_task_under_other_code_reads_nothing(tmp_path):
    task = PartitionTask(name="gone", xp=str(tmp_path / "not_there.csv"))
    batch = {k: np.array([v]) for k, v in {**task.to_row(), "index": 0}.items()}
    with pytest.raises(CodeMismatchError, match="the read stage on"):  # not the missing file's error
        list(featurize_partition(batch, vocabulary_json="{}", chunk_rows=10, code=OTHER))


def test_a_predictor_actor_under_other_code_loads_nothing(tmp_path):
    from xpengine.pipeline.predictor_stage import CatalogPredictor

    with pytest.raises(CodeMismatchError, match="the predictor actor on"):  # not the missing model's
        CatalogPredictor(str(tmp_path / "no_model"), ["teff"], device="cpu", code=OTHER)


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.parametrize("warm", [False, True], ids=["ray_data_pool", "warm_pool"])
def test_a_job_whose_workers_run_other_code_stops_in_one_line(
    ray_local, tmp_path, monkeypatch, tiny_sky_model, warm
):
    from xpengine.pipeline import warm_pool
    from xpengine.pipeline.config import InferenceConfig
    from xpengine.pipeline.ray_job import run_inference

    inp = tmp_path / STAR
    shutil.copy(GAIA_XP / STAR, inp)
    # the driver's code is another than the workers' (they compute their own digest)
    monkeypatch.setattr(ci, "_source_digest", lambda root: ("f" * 64, 1))
    monkeypatch.setattr(warm_pool, "code_digest", lambda: "f" * 64)
    out = tmp_path / "out"
    cfg = InferenceConfig(
        input=[str(inp)], model=tiny_sky_model, output=str(out), checksum=False, labels=["teff"],
        torch_threads=1, cpus_per_actor=1, warm_pool=warm, actors=1,
    )  # fmt: skip
    try:
        with pytest.raises(JobError) as err:
            run_inference(cfg)
        if warm:  # the stale pool is stopped by the job itself, not left running other code
            assert warm_pool.list_pools() == {}
    finally:
        if warm:
            warm_pool.stop_pools()
    msg = str(err.value)
    assert msg.startswith(MISMATCH_MARK) and "\n" not in msg, msg
    assert "the predictor actor on" in msg and "source ffffffffffffffff" in msg
    # nothing written under the driver's code; the summary says the run stopped, and why
    assert not list(out.glob("*.parquet"))
    summary = json.loads((out / "_SUMMARY.json").read_text())
    assert summary["status"] == "stopped" and MISMATCH_MARK in summary["error"], summary


def test_a_ledger_under_other_code_refuses(tmp_path):
    from xpengine.pipeline.bookkeeping import Ledger

    with pytest.raises(CodeMismatchError, match="the ledger actor on"):
        Ledger(OTHER)
    Ledger(expected_code()).report({"event": "read"})  # the driver's own code: goes on


@pytest.mark.ray
def test_the_driver_takes_a_ledger_actors_mismatch_as_one_line(ray_local):
    """The job's ledger actor checks its code (review of session 33): the driver's `take` raises the
    job's error with the one-line message, not Ray's traceback."""
    import ray

    from xpengine.pipeline.bookkeeping import Ledger, take

    good = ray.remote(Ledger).options(num_cpus=0).remote(expected_code())
    ray.get(good.report.remote({"event": "read", "index": 0}))
    assert take(good, JobError) == [{"event": "read", "index": 0}] and take(good, JobError) == []
    stale = ray.remote(Ledger).options(num_cpus=0).remote(OTHER)
    with pytest.raises(JobError) as err:
        take(stale, JobError)
    msg = str(err.value)
    assert msg.startswith(MISMATCH_MARK) and "\n" not in msg and "the ledger actor on" in msg, msg
