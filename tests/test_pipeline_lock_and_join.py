"""The output lock under races (two jobs never both hold it) and the catalogue job's joins: a misplaced
row keeps its 2MASS and E(B−V) values, a compact model-inputs file given a new gaia_source table keeps
no read problem of the old one."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from xpengine import io
from xpengine.features import SourceFlag, build_tokens
from xpengine.pipeline.stages import PartitionTask, joined_chunks
from xpengine.pipeline.writer import CatalogWriter, OutputLockedError

PART = "000000-003111"
NEXT = "245760-248871"


def _lock(out) -> dict:
    return json.loads((out / "_LOCK.json").read_text())


def _dead_pid() -> int:
    r = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    return int(r.stdout)


def _stop(*writers: CatalogWriter) -> None:
    for w in writers:
        stop = getattr(w, "_heartbeat_stop", None)
        if stop is not None:
            stop.set()


# -- the lock ----------------------------------------------------------------------------------------
def test_an_empty_lock_file_is_a_lock_being_written_until_it_is_old(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "_LOCK.json").write_bytes(b"")  # a job between its O_EXCL create and its payload
    with pytest.raises(OutputLockedError, match="being written"):
        CatalogWriter(str(out)).prepare(stale_after_s=60)
    assert (out / "_LOCK.json").read_bytes() == b""
    old = time.time() - 120  # the same file, unchanged for longer than the stale limit: a dead job's
    os.utime(out / "_LOCK.json", (old, old))
    w = CatalogWriter(str(out))
    w.prepare(stale_after_s=60)
    assert _lock(out)["token"] == w._lock_token
    w.release_lock()
    assert not (out / "_LOCK.json").exists()


def test_a_job_meeting_a_lock_before_its_payload_is_refused(tmp_path, monkeypatch):
    out = tmp_path / "out"
    a, b = CatalogWriter(str(out)), CatalogWriter(str(out))
    outcome = []
    real_fdopen = os.fdopen

    def fdopen_then_b_starts(fd, *args, **kw):  # A created the lock file; B starts before A writes it
        f = real_fdopen(fd, *args, **kw)
        if not outcome:
            outcome.append("started")
            try:
                b.prepare()
                outcome.append("B took the lock")
            except OutputLockedError:
                outcome.append("B refused")
        return f

    monkeypatch.setattr(os, "fdopen", fdopen_then_b_starts)
    a.prepare()
    monkeypatch.undo()
    try:
        assert outcome == ["started", "B refused"]
        assert _lock(out)["token"] == a._lock_token
    finally:
        _stop(a, b)


def test_two_jobs_taking_over_one_stale_lock_do_not_both_win(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    now = time.time()
    stale = {"token": "dead", "host": __import__("socket").gethostname(), "pid": _dead_pid()}
    (out / "_LOCK.json").write_text(json.dumps({**stale, "started_unix": now, "heartbeat_unix": now}))
    a, b = CatalogWriter(str(out)), CatalogWriter(str(out))
    globs = CatalogWriter.acquire_lock.__globals__  # the module that judges staleness
    real = globs["_stale_reason"]
    ran = []

    def a_takes_over_meanwhile(*args, **kw):  # B judged the dead holder; A takes over before B acts
        if not ran:
            ran.append(True)
            a.prepare()
        return real(*args, **kw)

    monkeypatch.setattr(b, "_start_heartbeat", lambda interval_s: None)
    monkeypatch.setitem(globs, "_stale_reason", a_takes_over_meanwhile)
    try:
        with pytest.raises(OutputLockedError, match="in use by another job"):
            b.prepare()
        assert ran and _lock(out)["token"] == a._lock_token
        assert sorted(p.name for p in out.iterdir() if p.name.startswith("_LOCK")) == ["_LOCK.json"]
    finally:
        _stop(a, b)
    a.release_lock()
    assert not (out / "_LOCK.json").exists()


def test_a_job_whose_lock_was_taken_over_stops_writing(tmp_path):
    out = tmp_path / "out"
    a = CatalogWriter(str(out))
    a.prepare()
    _stop(a)
    a.heartbeat()  # its own lock: refreshed
    assert _lock(out)["token"] == a._lock_token
    other = {**_lock(out), "token": "other", "pid": os.getpid() + 1}
    (out / "_tmp" / "x").write_text(json.dumps(other))
    os.replace(out / "_tmp" / "x", out / "_LOCK.json")  # another job took it over (A judged stale)
    with pytest.raises(OutputLockedError, match="lost its lock"):
        a.heartbeat()
    assert _lock(out)["token"] == "other"  # not overwritten
    with pytest.raises(OutputLockedError, match="lost its lock"):
        a.write_summary({"ok": True})
    assert not (out / "_SUMMARY.json").exists()
    a.release_lock()
    assert _lock(out)["token"] == "other"


def test_a_job_that_lost_its_lock_neither_moves_the_new_lock_nor_removes_files(tmp_path, monkeypatch):
    """Ending a job whose lock another job took over must not move the new holder's lock aside, even for an
    instant (the holder's heartbeat would find it gone and stop); nor may that job remove partition files."""
    from xpengine.pipeline import _lock as lock_module
    from xpengine.pipeline.finish import remove_partition_files

    out = tmp_path / "out"
    a = CatalogWriter(str(out))
    a.prepare()
    _stop(a)
    stale = {**_lock(out), "heartbeat_unix": time.time() - 10_000, "pid": _dead_pid(), "host": "elsewhere"}
    (out / "_LOCK.json").write_text(json.dumps(stale))
    b = CatalogWriter(str(out))
    b.prepare(stale_after_s=600)  # takes A's stale lock over
    _stop(b)
    assert _lock(out)["token"] == b._lock_token
    moved_aside = []
    real_rename = lock_module.os.rename

    def rename(src, dst):
        moved_aside.append(dst)
        return real_rename(src, dst)

    monkeypatch.setattr(lock_module.os, "rename", rename)
    a.release_lock()
    assert moved_aside == []  # A never touched B's lock
    b.heartbeat()
    assert not b.lock_lost
    (out / "B.parquet").write_bytes(b"the new holder's")
    a.lock_lost = "another job took the lock"
    with pytest.raises(OutputLockedError):
        remove_partition_files(a, "B")
    assert (out / "B.parquet").exists()
    monkeypatch.undo()
    b.release_lock()
    assert not (out / "_LOCK.json").exists()


# -- the joins ---------------------------------------------------------------------------------------
def _data_lines(path: str) -> tuple[list[str], list[str]]:
    """(comment + header lines, data lines) of a bulk .csv.gz file."""
    with gzip.open(path, "rt") as f:
        lines = f.read().splitlines(keepends=True)
    head = [ln for ln in lines if ln.startswith("#")]
    rest = [ln for ln in lines if not ln.startswith("#")]
    return head + rest[:1], rest[1:]


def _write_bulk(path, head: list[str], rows: list[str]) -> str:
    with gzip.open(path, "wt") as f:
        f.writelines(head + rows)
    return str(path)


def _set_field(line: str, index: int, value: str) -> str:
    """A data line with its `index`th field (one before any quoted array) set to `value`."""
    fields = line.split(",")
    fields[index] = value
    return ",".join(fields)


def _joined(task: PartitionTask, chunk_rows: int, **side) -> pa.Table:
    chunks = joined_chunks(task, chunk_rows=chunk_rows, tmass=side.get("tmass"), ebv=side.get("ebv"))
    return pa.concat_tables(c if isinstance(c, pa.Table) else pa.Table.from_batches([c]) for c in chunks)


def _assert_side_values(got: pa.Table, sid: np.ndarray, outside: np.ndarray, tmass: str, ebv: str) -> None:
    """The joined rows' 2MASS J and E(B−V) equal the side tables' for every source, the misplaced
    ones (`outside`, which the tables hold) included."""
    for url, col in ((tmass, "j_m"), (ebv, "ebv")):
        side = pq.read_table(url).to_pandas().set_index("source_id")[col]
        want = side.reindex(sid).to_numpy(dtype=float)
        have = np.asarray(pc.fill_null(got.column(col), np.nan), dtype=float)
        assert np.isfinite(want[outside]).all()  # the side table holds the misplaced sources
        np.testing.assert_array_equal(have, want)


def test_a_misplaced_row_keeps_its_2mass_and_ebv(tmp_path, sky_dir):
    files = {}
    for kind in ("XpContinuousMeanSpectrum", "GaiaSource"):
        head, own = _data_lines(f"{sky_dir}/{kind}_{PART}.csv.gz")
        stray = _data_lines(f"{sky_dir}/{kind}_{NEXT}.csv.gz")[1][0]  # a row of the next partition
        files[kind] = _write_bulk(tmp_path / f"{kind}_{PART}.csv.gz", head, [*own[:30], stray, *own[30:40]])
    tmass, ebv = f"{sky_dir}/tmass.parquet", f"{sky_dir}/ebv.parquet"
    task = PartitionTask(PART, files["XpContinuousMeanSpectrum"], files["GaiaSource"], (0, 3111))
    got = _joined(task, 16, tmass=tmass, ebv=ebv)
    sid = np.asarray(got.column("source_id"))
    outside = sid >> 43 > 3111
    assert outside.sum() == 1 and got.num_rows == 41
    _assert_side_values(got, sid, outside, tmass, ebv)


def test_a_new_gaia_table_replaces_the_read_problems_of_the_old_one(tmp_path, sky_dir):
    head, rows = _data_lines(f"{sky_dir}/XpContinuousMeanSpectrum_{PART}.csv.gz")
    xp_rows = rows[:6]
    xp_rows[2] = _set_field(xp_rows[2], 8, "x")  # bp_chi_squared: an XP read problem
    xp = _write_bulk(tmp_path / f"XpContinuousMeanSpectrum_{PART}.csv.gz", head, xp_rows)
    ghead, grows = _data_lines(f"{sky_dir}/GaiaSource_{PART}.csv.gz")
    gmag = ghead[-1].strip().split(",").index("phot_g_mean_mag")
    (tmp_path / "clean").mkdir()
    clean = _write_bulk(tmp_path / "clean" / f"GaiaSource_{PART}.csv.gz", ghead, grows)
    bad_rows = list(grows)
    for i in (1, 2):  # gaia read problems: alone (row 1) and after the XP one (row 2)
        bad_rows[i] = _set_field(bad_rows[i], gmag, "x")
    bad = _write_bulk(tmp_path / f"GaiaSource_{PART}.csv.gz", ghead, bad_rows)
    built = _joined(PartitionTask(PART, xp, bad, (0, 3111)), 4)
    compact = str(tmp_path / f"ModelInputs_{PART}.parquet")
    io.write_model_inputs(built, compact)
    old = pq.read_table(compact).column(io.READ_PROBLEM).to_pylist()
    assert old[0] is None and old[1].startswith("gaia_source phot_g_mean_mag")
    assert old[2].startswith("bp_chi_squared") and "; gaia_source phot_g_mean_mag" in old[2]

    def job(gaia: str | None) -> pa.Table:
        task = PartitionTask(PART, compact, gaia, (0, 3111))
        return _joined(task, 4)

    def read_problem_flags(t: pa.Table) -> list[bool]:
        return ((build_tokens(t).flags & int(SourceFlag.READ_PROBLEM)) != 0).tolist()

    assert job(None).column(io.READ_PROBLEM).to_pylist() == old  # no table given: the file's texts
    assert job(bad).column(io.READ_PROBLEM).to_pylist() == old  # the same table again: not doubled
    new = job(clean)
    texts = new.column(io.READ_PROBLEM).to_pylist()
    assert texts[:2] == [None, None] and texts[3:] == [None] * 3
    assert texts[2] == old[2].split("; gaia_source ")[0] and texts[2].endswith(")")
    assert read_problem_flags(new) == [False, False, True, False, False, False]
    assert not pc.any(pc.is_null(new.column("phot_g_mean_mag"))).as_py()


def test_misplaced_rows_in_several_chunks_read_the_side_table_once(tmp_path, sky_dir, monkeypatch):
    """Each side table is read for the partition's range and, at the first misplaced row, once more
    (kept for the partition): not again for every chunk that holds misplaced rows."""
    files = {}
    for kind in ("XpContinuousMeanSpectrum", "GaiaSource"):
        head, own = _data_lines(f"{sky_dir}/{kind}_{PART}.csv.gz")
        stray = _data_lines(f"{sky_dir}/{kind}_{NEXT}.csv.gz")[1][:4]  # rows of the next partition
        rows = [*own[:5], stray[0], *own[5:20], stray[1], *own[20:35], stray[2], stray[3], *own[35:45]]
        files[kind] = _write_bulk(tmp_path / f"{kind}_{PART}.csv.gz", head, rows)
    tmass, ebv = f"{sky_dir}/tmass.parquet", f"{sky_dir}/ebv.parquet"
    reads: list[str] = []
    read_table = io.read_table

    def counted(source, *args, **kwargs):
        reads.append(str(source))
        return read_table(source, *args, **kwargs)

    monkeypatch.setattr(io, "read_table", counted)
    task = PartitionTask(PART, files["XpContinuousMeanSpectrum"], files["GaiaSource"], (0, 3111))
    chunks = list(joined_chunks(task, chunk_rows=8, tmass=tmass, ebv=ebv))
    got = pa.concat_tables(c if isinstance(c, pa.Table) else pa.Table.from_batches([c]) for c in chunks)
    sid = np.asarray(got.column("source_id"))
    outside = sid >> 43 > 3111
    in_chunks = sum(bool((np.asarray(c.column("source_id")) >> 43 > 3111).any()) for c in chunks)
    assert outside.sum() == 4 and got.num_rows == 49 and in_chunks == 3
    assert reads.count(tmass) == 2 and reads.count(ebv) == 2  # the range, then the misplaced rows once
    monkeypatch.undo()
    _assert_side_values(got, sid, outside, tmass, ebv)
    # without misplaced rows the table is read once, for the range
    reads.clear()
    monkeypatch.setattr(io, "read_table", counted)
    list(
        joined_chunks(
            PartitionTask(PART, f"{sky_dir}/XpContinuousMeanSpectrum_{PART}.csv.gz", None, (0, 3111)),
            chunk_rows=8,
            tmass=tmass,
            ebv=None,
        )
    )
    assert reads == [tmass]
