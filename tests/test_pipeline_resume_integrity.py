"""What a rerun may keep of an output, without a cluster: a failed partition's earlier files, what
`--overwrite` removes and what the rerun of a killed `--overwrite` keeps, HEALPix ranges that overlap
across runs, the side tables / context inputs / flag policy in the job's identity, planning errors as
one line, and an input rewritten with the same size and mtime."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from xpengine.catalog.schema import catalog_schema
from xpengine.pipeline.config import InferenceConfig
from xpengine.pipeline.identity import (
    OVERWRITE_KEY,
    RUN_KEY,
    _check_resume,
    _identity_differences,
    _job_identity,
    begin_job,
    end_job,
)
from xpengine.pipeline.plan import JobError, _input_fingerprints, plan_partitions
from xpengine.pipeline.stages import PartitionTask
from xpengine.pipeline.writer import CatalogWriter, PartitionRecord

REPO = Path(__file__).resolve().parents[1]
GAIA_XP = Path(__file__).parent / "data" / "gaia_xp"
STAR = "XP_CONTINUOUS-Gaia_DR3_5937083312263887616.csv"
BULK = "XpContinuousMeanSpectrum_000000-003111.csv.gz"
OLD = {"model_sha256": "a" * 64, "labels": ["teff"], "schema": "s1"}
NEW = {"model_sha256": "a" * 64, "labels": ["teff", "logg"], "schema": "s2"}
ABOUT = {"model": "m", "xpengine_version": "test"}


def _table() -> pa.Table:
    # with the job's provenance, as `_finish_partition` writes every catalogue file (the mark that tells
    # a file of a job killed before its record from a user's is `write_partition`'s, review 20)
    schema = catalog_schema(["teff"], metadata={"provenance": {"model": "m"}})
    return pa.Table.from_pydict({f.name: pa.array([1], type=f.type) for f in schema}, schema=schema)


def _write_done(writer: CatalogWriter, task: PartitionTask, job: dict, *, rejected: bool = False, **extra):
    rec = PartitionRecord(task.name, "done", 1, 1, inputs=_input_fingerprints(task), job=job, **extra)
    rej = _table().append_column("reason", pa.array(["r"])) if rejected else None
    writer.write_partition(task.name, _table(), rec, rejected=rej)


def _tasks(tmp_path: Path, names: str) -> list[PartitionTask]:
    tasks = []
    for n in names:
        xp = tmp_path / f"{n}.csv"
        if not xp.exists():
            shutil.copy(GAIA_XP / STAR, xp)
        tasks.append(PartitionTask(name=n, xp=str(xp)))
    return tasks


def _files(out: Path) -> set[str]:
    return {str(p.relative_to(out)) for p in out.rglob("*.parquet") if "_tmp" not in p.parts}


def _cfg(overwrite: bool, checksum: bool = False) -> SimpleNamespace:
    return SimpleNamespace(overwrite=overwrite, checksum=checksum)


# -- 1. a failed partition and what --overwrite removes ---------------------------------------------
def test_a_failed_partition_keeps_no_earlier_file(tmp_path):
    from xpengine.pipeline.finish import _record_failure

    (task,) = _tasks(tmp_path, "B")
    out = tmp_path / "out"
    w = CatalogWriter(str(out))
    _write_done(w, task, OLD, rejected=True)
    assert _files(out) == {"B.parquet", "_rejected/B.parquet"}
    summary = SimpleNamespace(partitions_failed={})
    _record_failure(w, task, "GaiaFileError: bad", summary, 0, NEW)
    assert _files(out) == set()  # neither the earlier catalogue file nor its rejected rows
    assert json.loads((out / "_manifest" / "B.json").read_text())["status"] == "failed"
    assert summary.partitions_failed == {"B": "GaiaFileError: bad"}


def test_overwrite_removes_every_planned_partition_and_files_without_a_done_record(tmp_path):
    a, b, c = _tasks(tmp_path, "ABC")
    out = tmp_path / "out"
    w = CatalogWriter(str(out))
    for t in (a, b, c):
        _write_done(w, t, OLD, rejected=t is a)
    w.write_job(OLD)
    # a catalogue file whose record says failed, and one without a record (killed before it)
    w.write_record(PartitionRecord("F", "failed", 0, 0, inputs={}, error="x", job=OLD))
    shutil.copy(out / "A.parquet", out / "F.parquet")
    # the job's mark names the file's own partition (`CatalogWriter.marked`, review 20): a copy of A is not it
    pq.write_table(CatalogWriter.marked(_table(), "orphan", OLD), out / "orphan.parquet")
    # with the same identity: the planned partitions are redone, so their earlier files go at once
    assert _check_resume(w, [a, b], OLD, overwrite=True) == {}
    assert _files(out) == {"C.parquet"}  # C: not planned, the same job: kept
    assert not (out / "_manifest" / "A.json").exists()


# -- 2. a killed --overwrite ---------------------------------------------------------------------------
def _killed_overwrite(tmp_path: Path):
    """Output of a job (OLD) over A, B, C, then an --overwrite job (NEW) killed after finishing A."""
    tasks = _tasks(tmp_path, "ABC")
    out = tmp_path / "out"
    w = CatalogWriter(str(out))
    for t in tasks:
        _write_done(w, t, OLD)
    w.write_job({**OLD, **ABOUT})
    done, record_job = begin_job(w, tasks, NEW, _cfg(overwrite=True), ABOUT)
    assert done == {} and _files(out) == set()  # the earlier job's partitions go before any work
    assert record_job[RUN_KEY] == w.read_job()[OVERWRITE_KEY]["id"]
    _write_done(w, tasks[0], record_job)  # A finished, then the job is killed
    return w, tasks, out


@pytest.mark.parametrize("overwrite", [False, True])
def test_rerun_of_a_killed_overwrite_does_the_rest(tmp_path, overwrite):
    w, tasks, out = _killed_overwrite(tmp_path)
    done, record_job = begin_job(w, tasks, NEW, _cfg(overwrite=overwrite), ABOUT)
    assert set(done) == {"A"}  # what the killed job finished is kept, with or without --overwrite
    assert record_job[RUN_KEY] == w.read_job()[OVERWRITE_KEY]["id"]
    for t in tasks[1:]:
        _write_done(w, t, record_job)
    end_job(w, NEW, ABOUT)
    assert OVERWRITE_KEY not in w.read_job()
    # the overwrite is over: a new --overwrite redoes everything
    done, _ = begin_job(w, tasks, NEW, _cfg(overwrite=True), ABOUT)
    assert done == {} and _files(out) == set()


def test_killed_overwrite_rerun_over_fewer_inputs_is_not_mixed(tmp_path):
    w, tasks, out = _killed_overwrite(tmp_path)
    done, _ = begin_job(w, tasks[:1], NEW, _cfg(overwrite=False), ABOUT)
    assert set(done) == {"A"} and _files(out) == {"A.parquet"}  # no partition of the earlier job left


def _mixed_by_an_earlier_version(tmp_path: Path):
    """What a killed --overwrite left before this fix: _JOB.json of NEW, A done by NEW, B and C by OLD."""
    tasks = _tasks(tmp_path, "ABC")
    w = CatalogWriter(str(tmp_path / "out"))
    for t, job in zip(tasks, (NEW, OLD, OLD), strict=True):
        _write_done(w, t, job)
    w.write_job({**NEW, **ABOUT})
    return w, tasks


def test_partitions_of_another_job_beside_this_job_record_are_redone_or_refused(tmp_path):
    w, tasks = _mixed_by_an_earlier_version(tmp_path)
    # the whole plan: B and C (another job) are redone, A kept
    assert set(_check_resume(w, tasks, NEW, overwrite=False)) == {"A"}
    # fewer inputs: B and C would stay in the catalogue beside A: refused, naming them and the change
    with pytest.raises(
        JobError, match=r"finished partitions differ.*B \(labels \['teff'\] → \['teff', 'logg'\];.*C \(labels"
    ):
        _check_resume(w, tasks[:1], NEW, overwrite=False)
    # ... unless --overwrite, which removes them
    assert _check_resume(w, tasks[:1], NEW, overwrite=True) == {}
    assert _files(Path(w.output)) == set()


# -- 3. HEALPix ranges overlapping across runs -----------------------------------------------------------
def test_partitions_overlapping_an_earlier_run_are_refused(tmp_path, sky_dir):
    first = tmp_path / "a"
    second = tmp_path / "b"
    first.mkdir()
    second.mkdir()
    shutil.copy(os.path.join(sky_dir, BULK), first / BULK)
    # the same pixels cut differently
    shutil.copy(os.path.join(sky_dir, BULK), second / "XpContinuousMeanSpectrum_000000-004000.csv.gz")
    w = CatalogWriter(str(tmp_path / "out"))
    (done,) = plan_partitions(InferenceConfig(input=[str(first)]))
    _write_done(w, done, OLD, hpx8_range=list(done.hpx8_range))
    w.write_job(OLD)
    planned = plan_partitions(InferenceConfig(input=[str(second)]))
    with pytest.raises(JobError, match=r"overlap this run's HEALPix ranges.*000000-003111 \(HEALPix 0-3111"):
        _check_resume(w, planned, OLD, overwrite=False)
    # --overwrite removes the older partition
    assert _check_resume(w, planned, OLD, overwrite=True) == {}
    assert not (tmp_path / "out" / f"{done.name}.parquet").exists()
    # a neighbouring range is no overlap
    _write_done(w, done, OLD, hpx8_range=list(done.hpx8_range))
    apart = PartitionTask(name="004000-005000", xp=done.xp, hpx8_range=(3112, 5000))
    assert set(_check_resume(w, [apart], OLD, overwrite=False)) == {done.name}


# -- 4. side tables, context inputs and flag policy ---------------------------------------------------
PROVENANCE = {"model_sha256": "a" * 64, "calibration_sha256": None, "sim_to_real_applied": False}


def test_side_tables_context_inputs_and_flag_policy_are_part_of_the_identity(tmp_path):
    ebv = tmp_path / "ebv.parquet"
    ebv.write_bytes(b"x" * 10)
    base = _job_identity(["teff"], PROVENANCE, InferenceConfig(inputs=["bp0", "rp0"]))
    with_ebv = _job_identity(["teff"], PROVENANCE, InferenceConfig(inputs=["bp0", "rp0"], ebv=str(ebv)))
    assert _identity_differences(base, base) == []
    (diff,) = _identity_differences(base, with_ebv)
    assert diff.startswith(f"E(B−V) table (--ebv) none → {ebv} (10 bytes")
    ebv.write_bytes(b"y" * 11)  # the table rewritten
    again = _job_identity(["teff"], PROVENANCE, InferenceConfig(inputs=["bp0", "rp0"], ebv=str(ebv)))
    assert "11 bytes" in _identity_differences(with_ebv, again)[0]
    other_inputs = _job_identity(["teff"], PROVENANCE, InferenceConfig(inputs=["bp0"]))
    assert "removed ['rp0']" in _identity_differences(base, other_inputs)[0]
    flags = _job_identity(["teff"], PROVENANCE, InferenceConfig(inputs=["bp0", "rp0"], giant_logg_max=3.0))
    assert _identity_differences(base, flags) == [
        "flag policy {'giant_logg_max': 3.5} → {'giant_logg_max': 3.0}"
    ]
    # a threshold the old record did not have yet: it ran with the default, so a non-default one is refused
    older = {**base, "flag_policy": {k: v for k, v in base["flag_policy"].items() if k != "giant_logg_max"}}
    assert _identity_differences(older, base) == []
    assert _identity_differences(older, flags) == [
        "flag policy {'giant_logg_max': 3.5} → {'giant_logg_max': 3.0}"
    ]

    # a catalogue whose policy predates the isochrone mass and age wrote the model's everywhere: a job
    # that writes the isochrones' outside the domain may not resume it, one that does not may
    def before_isochrones(identity):
        policy = {k: v for k, v in identity["flag_policy"].items() if k != "mass_age_from_isochrones"}
        return {**identity, "flag_policy": policy}

    with_mass = _job_identity(["teff", "mass"], PROVENANCE, InferenceConfig(inputs=["bp0", "rp0"]))
    assert _identity_differences(before_isochrones(with_mass), with_mass) == [
        "flag policy {'mass_age_from_isochrones': False} → {'mass_age_from_isochrones': True}"
    ]
    model_only = _job_identity(
        ["teff", "mass"], PROVENANCE, InferenceConfig(inputs=["bp0", "rp0"], mass_age_from_isochrones=False)
    )
    assert _identity_differences(before_isochrones(with_mass), model_only) == []
    # without mass or age the policy writes nothing: an older catalogue of Teff alone resumes
    assert _identity_differences(before_isochrones(base), base) == []
    # a catalogue from before these were recorded: not known, not refused (its flag rules aside: below;
    # its code is kept here: a record without one is refused, tests/test_pipeline_code_and_lock.py)
    legacy = {k: base[k] for k in ("model_sha256", "labels", "schema", "sigma", "flag_rules", "code")}
    # ... except the zero point: such a record's job dropped the parallaxes without one, which the job's
    # default keeps since session 32 (`--zero-point-fallback none` still resumes it)
    assert [d.split(") ")[1] for d in _identity_differences(legacy, with_ebv)] == ["None → -0.017"]
    dropping = _job_identity(
        ["teff"], PROVENANCE, InferenceConfig(inputs=["bp0", "rp0"], ebv=str(ebv), zero_point_fallback=None)
    )
    assert _identity_differences(legacy, dropping) == []
    # a record without flag rules (written before session 28) is refused: its rows lack bits the new
    # ones carry (NO_DISTANCE, DISTANCE_FROM_ISOCHRONES, G_MISMATCH), and one catalogue never mixes them
    older_rules = {k: v for k, v in base.items() if k != "flag_rules"}
    assert [d.split(" None → ")[0] for d in _identity_differences(older_rules, base)] == [
        "flag rules (the bits the catalogue sets; a record without them is older)"
    ]
    # ... unless it holds mass or age, which it wrote from the model everywhere (found by a review)
    legacy_mass = {
        k: with_mass[k] for k in ("model_sha256", "labels", "schema", "sigma", "flag_rules", "code")
    }

    def policy(diffs):  # (such a record also differs in the zero point: above)
        return [d for d in diffs if d.startswith("flag policy")]

    assert policy(_identity_differences(legacy_mass, with_mass)) == [
        "flag policy {'extinction': 'constant', 'mass_age_from_isochrones': False} → "
        "{'extinction': 'mist', 'mass_age_from_isochrones': True}"
    ]
    assert policy(_identity_differences(legacy_mass, model_only)) == [
        "flag policy {'extinction': 'constant'} → {'extinction': 'mist'}"
    ]
    as_before = InferenceConfig(
        inputs=["bp0", "rp0"], mass_age_from_isochrones=False, extinction="constant", zero_point_fallback=None
    )
    assert _identity_differences(legacy_mass, _job_identity(["teff", "mass"], PROVENANCE, as_before)) == []

    # a catalogue from before the star-by-star extinction (session 21) used the constant coefficients: a
    # job with them resumes it, one with the default law may not; without mass or age neither acts
    def before_extinction(identity):
        return {
            **identity,
            "flag_policy": {k: v for k, v in identity["flag_policy"].items() if k != "extinction"},
        }

    assert _identity_differences(before_extinction(with_mass), with_mass) == [
        "flag policy {'extinction': 'constant'} → {'extinction': 'mist'}"
    ]
    constant = _job_identity(
        ["teff", "mass"], PROVENANCE, InferenceConfig(inputs=["bp0", "rp0"], extinction="constant")
    )
    assert _identity_differences(before_extinction(with_mass), constant) == []
    assert _identity_differences(before_extinction(base), base) == []
    # the isochrone grid's recipe: recorded where the job writes isochrone rows, a change refused
    assert (
        with_mass["isochrone_grid"].startswith("MIST v2.5 fit grid v") and "isochrone_grid" not in model_only
    )
    other_grid = {**with_mass, "isochrone_grid": "MIST v2.5 fit grid v3"}
    assert _identity_differences(other_grid, with_mass) == [
        f"isochrone grid MIST v2.5 fit grid v3 → {with_mass['isochrone_grid']}"
    ]
    # session 20 recorded none: its fit had no distance prior, so its rows may not be mixed with these
    older_grid = {k: v for k, v in with_mass.items() if k != "isochrone_grid"}
    assert _identity_differences(older_grid, with_mass) == [
        f"isochrone grid MIST v2.5 fit grid v4, no distance prior → {with_mass['isochrone_grid']}"
    ]
    assert "distance prior" in with_mass["isochrone_grid"]
    # session 21's recipe (grid v4, no colour bound): refused too
    s21 = {**with_mass, "isochrone_grid": "MIST v2.5 fit grid v4, Galactic distance prior v1"}
    assert _identity_differences(s21, with_mass) == [
        f"isochrone grid MIST v2.5 fit grid v4, Galactic distance prior v1 → {with_mass['isochrone_grid']}"
    ]
    assert "BP−RP bound" in with_mass["isochrone_grid"]
    # and the extinction polynomial's file, where the law is "mist": a refitted file is refused
    assert with_mass["extinction_table"].startswith("mist_gaia.json sha256 ")
    assert "extinction_table" not in constant and "extinction_table" not in base  # not used there
    refitted = {**with_mass, "extinction_table": "mist_gaia.json sha256 0123456789abcdef"}
    assert _identity_differences(refitted, with_mass) == [
        f"extinction coefficients mist_gaia.json sha256 0123456789abcdef → {with_mass['extinction_table']}"
    ]
    # resume refuses a catalogue made without the E(B−V) table, naming it
    (task,) = _tasks(tmp_path, "A")
    w = CatalogWriter(str(tmp_path / "out"))
    _write_done(w, task, base)
    w.write_job(base)
    with pytest.raises(
        JobError, match=r"cannot be resumed: the catalogue was made with another E\(B−V\) table"
    ):
        _check_resume(w, [task], with_ebv, overwrite=False)


def test_a_missing_side_table_is_a_job_error_naming_it(tmp_path):
    with pytest.raises(JobError, match=r"--tmass .*nope.parquet"):
        _job_identity(["teff"], PROVENANCE, InferenceConfig(tmass=str(tmp_path / "nope.parquet")))


# -- 7. planning problems are one-line job errors ----------------------------------------------------------
def test_two_files_for_a_partition_or_a_reversed_range_is_a_job_error(tmp_path, sky_dir):
    twice = tmp_path / "twice"
    twice.mkdir()
    shutil.copy(os.path.join(sky_dir, BULK), twice / BULK)
    shutil.copy(os.path.join(sky_dir, BULK), twice / f"{BULK}.1")  # wget's second copy
    with pytest.raises(JobError, match=f"two XpContinuousMeanSpectrum files .*{BULK} and .*{BULK}.1"):
        plan_partitions(InferenceConfig(input=[str(twice)]))
    reversed_ = tmp_path / "reversed"
    reversed_.mkdir()
    shutil.copy(os.path.join(sky_dir, BULK), reversed_ / "XpContinuousMeanSpectrum_003111-000000.csv.gz")
    with pytest.raises(JobError, match=r"003111-000000\.csv\.gz: HEALPix range 3111-0 is reversed"):
        plan_partitions(InferenceConfig(input=[str(reversed_)]))


def test_a_planning_error_ends_the_job_in_one_line(tmp_path, sky_dir):
    shutil.copy(os.path.join(sky_dir, BULK), tmp_path / "XpContinuousMeanSpectrum_003111-000000.csv.gz")
    r = subprocess.run(
        [sys.executable, str(REPO / "jobs" / "infer_gaia.py"), "--input", str(tmp_path), "--output",
         str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.startswith("infer_gaia: error: input") and "is reversed" in r.stderr


# -- 8. an input rewritten with the same size and mtime ----------------------------------------------------
def test_an_input_changed_with_the_same_size_and_mtime_is_told_by_its_md5(tmp_path):
    from xpengine.io.partitions import md5_of

    (task,) = _tasks(tmp_path, "A")
    w = CatalogWriter(str(tmp_path / "out"))
    rec = PartitionRecord(
        "A", "done", 1, 1, inputs={**_input_fingerprints(task), "xp_md5": md5_of(task.xp)}, job=OLD
    )
    w.write_partition("A", _table(), rec)
    w.write_job(OLD)
    assert set(_check_resume(w, [task], OLD, overwrite=False, checksum=True)) == {"A"}
    xp = Path(task.xp)
    st = xp.stat()
    text = xp.read_text()
    i = text.index("(", text.index("\n")) + 1  # the first coefficient of the first row
    xp.write_text(text[:i] + ("9" if text[i] != "9" else "1") + text[i + 1 :])
    os.utime(xp, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert xp.stat().st_size == st.st_size
    with pytest.raises(JobError, match=f"input xp_md5 changed: .* \\({xp}, same size and mtime\\)"):
        _check_resume(w, [task], OLD, overwrite=False, checksum=True)
    # without checksums only the size and mtime are compared
    assert set(_check_resume(w, [task], OLD, overwrite=False, checksum=False)) == {"A"}


def test_a_side_table_replaced_during_the_job_fails_the_partitions_after(tmp_path):
    """Each partition reads --ebv / --tmass again, so a table replaced during the job would mix two
    versions in one catalogue that records one: a partition finishing after the change fails, naming the
    table (until session 25 the job reported success)."""
    from xpengine.pipeline.finish import _side_tables_changed
    from xpengine.pipeline.identity import _side_table

    ebv = tmp_path / "ebv.parquet"
    pq.write_table(pa.table({"source_id": [1, 2], "ebv": [0.1, 0.2]}), ebv)
    identity = {"ebv_table": _side_table("ebv", str(ebv)), "tmass_table": None}
    assert _side_tables_changed(identity) is None
    pq.write_table(pa.table({"source_id": [1, 2, 3], "ebv": [0.5, 0.6, 0.7]}), tmp_path / "new.parquet")
    os.replace(tmp_path / "new.parquet", ebv)  # replaced, as a download or a copy would
    why = _side_tables_changed(identity)
    assert why is not None and why.startswith(f"--ebv {ebv} changed after the job started")
    assert "--overwrite" in why
    ebv.unlink()
    assert "now: gone" in _side_tables_changed(identity)


# -- review of session 29: files damaged outside the job, a full disk, a download cut short ------------
@pytest.mark.parametrize("damage", ["truncated", "shorter", "rejected"])
def test_a_damaged_catalogue_file_is_redone_not_kept(tmp_path, damage, caplog):
    """A done partition whose catalogue (or `_rejected/`) file no longer holds what its record says (cut
    short by a crash before the disk had it, rewritten outside the job) is removed and redone by the
    rerun; until session 29 resume kept it (an unreadable file, or 1,500 rows of 2,000, exit 0)."""
    tasks = _tasks(tmp_path, "AB")
    out = tmp_path / "out"
    w = CatalogWriter(str(out))
    for t in tasks:
        _write_done(w, t, OLD, rejected=True, rejected_rows=1)
    w.write_job({**OLD, **ABOUT})
    if damage == "truncated":
        path = Path(w.catalog_path("A"))
        path.write_bytes(path.read_bytes()[:100])
    elif damage == "shorter":
        pq.write_table(_table().slice(0, 0), w.catalog_path("A"))
    else:
        pq.write_table(pq.read_table(w.rejected_path("A")).slice(0, 0), w.rejected_path("A"))
    with caplog.at_level("WARNING"):
        done, _ = begin_job(w, tasks, OLD, _cfg(False), ABOUT)
    assert set(done) == {"B"}
    assert "partition A is redone" in caplog.text
    assert not Path(w.catalog_path("A")).exists() and not Path(w.manifest_path("A")).exists()
    assert not Path(w.rejected_path("A")).exists() and Path(w.catalog_path("B")).exists()


def test_done_partitions_this_run_does_not_name_are_kept_and_said(tmp_path, caplog):
    tasks = _tasks(tmp_path, "AB")
    w = CatalogWriter(str(tmp_path / "out"))
    for t in tasks:
        _write_done(w, t, OLD)
    w.write_job({**OLD, **ABOUT})
    with caplog.at_level("WARNING"):
        done, _ = begin_job(w, tasks[:1], OLD, _cfg(False), ABOUT)
    assert set(done) == {"A", "B"}
    assert "1 partition(s) whose inputs this run does not name stay in the catalogue: B" in caplog.text


def test_an_input_spelled_another_way_is_the_same_input(tmp_path):
    """The same file given relative, with `..`, through a link or as file:// resumes (until session 29
    each spelling was 'input xp changed' and only --overwrite, redoing everything, got past it)."""
    (task,) = _tasks(tmp_path, "A")
    w = CatalogWriter(str(tmp_path / "out"))
    _write_done(w, task, OLD)
    w.write_job(OLD)
    xp = Path(task.xp)
    (tmp_path / "link").symlink_to(tmp_path, target_is_directory=True)
    for spelled in (
        f"file://{xp}",
        str(tmp_path / ".." / tmp_path.name / xp.name),
        str(tmp_path / "link" / xp.name),
        os.path.relpath(xp),
    ):
        again = PartitionTask(name="A", xp=spelled)
        assert set(_check_resume(w, [again], OLD, overwrite=False)) == {"A"}, spelled


def test_a_full_disk_is_one_error_naming_the_file(tmp_path, monkeypatch):
    """A write that fails (ENOSPC, a quota) is an OutputNotWritableError naming the file, which the job's
    command line prints as one line; until session 29 a traceback named neither file nor output."""
    import errno

    from xpengine.pipeline.writer import OutputNotWritableError

    (task,) = _tasks(tmp_path, "A")
    w = CatalogWriter(str(tmp_path / "out"))

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pq, "write_table", full)
    with pytest.raises(
        OutputNotWritableError, match=r"writing .*A\.parquet failed .*No space left on device"
    ):
        _write_done(w, task, OLD)


def test_an_input_unlike_its_listed_md5_fails_its_partition(tmp_path):
    """A plain CSV cut short at a line boundary reads as a complete file: the `_MD5SUM.txt` a Gaia download
    has beside it tells it (the job did not read it until session 29; `xpengine compact` did)."""
    from xpengine.io.partitions import md5_of
    from xpengine.pipeline.finish import _input_fingerprints_unless_changed

    (task,) = _tasks(tmp_path, "A")
    xp = Path(task.xp)
    (tmp_path / "_MD5SUM.txt").write_text(f"{md5_of(xp)}  {xp.name}\n")
    assert isinstance(_input_fingerprints_unless_changed(task, None, True), dict)
    lines = xp.read_text().splitlines(keepends=True)
    xp.write_text("".join(lines[:-1]))  # the last row gone, at a line boundary
    why = _input_fingerprints_unless_changed(task, None, True)
    assert isinstance(why, str) and "_MD5SUM.txt lists" in why and str(xp) in why
    # without checksums (the job's `checksum: false`) nothing is read, nothing compared
    assert isinstance(_input_fingerprints_unless_changed(task, None, False), dict)


def test_a_link_re_pointed_since_the_read_is_another_input(tmp_path):
    """Inputs are compared by the file the record's name led to when it was read: a link re-pointed since,
    to a file of the same size and mtime, is refused whatever name the rerun gives (helper-85's F7:
    comparing where the names lead now accepted it); the file actually read is still the same input."""
    v1, v2 = tmp_path / "v1", tmp_path / "v2"
    v1.mkdir()
    shutil.copy(GAIA_XP / STAR, v1 / "x.csv")
    shutil.copytree(v1, v2)
    text = (v2 / "x.csv").read_text()
    i = text.index("(", text.index("\n")) + 1
    (v2 / "x.csv").write_text(text[:i] + ("9" if text[i] != "9" else "1") + text[i + 1 :])
    st = (v1 / "x.csv").stat()
    os.utime(v2 / "x.csv", ns=(st.st_atime_ns, st.st_mtime_ns))
    current = tmp_path / "current"
    current.symlink_to(v1, target_is_directory=True)
    w = CatalogWriter(str(tmp_path / "out"))
    _write_done(w, PartitionTask(name="A", xp=str(current / "x.csv")), OLD)
    w.write_job(OLD)
    current.unlink()
    current.symlink_to(v2, target_is_directory=True)
    for name in (current / "x.csv", v2 / "x.csv"):
        with pytest.raises(JobError, match=r"input xp changed: .* \(read as .*v1/x\.csv, now .*v2/x\.csv\)"):
            _check_resume(w, [PartitionTask(name="A", xp=str(name))], OLD, overwrite=False)
    assert set(_check_resume(w, [PartitionTask(name="A", xp=str(v1 / "x.csv"))], OLD, overwrite=False)) == {
        "A"
    }
