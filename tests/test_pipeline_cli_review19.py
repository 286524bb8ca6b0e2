"""Review 19 of the catalogue job's command line (`xpengine infer`, `jobs/infer_gaia.py`), each test
failing without its fix:

1. `--overwrite` removes only what this catalogue's jobs wrote (a manifest record, or the job's
   provenance in the file), never the user's files; a folder of other files, or one that is, holds or
   lies inside an input, is refused before anything is written or removed;
2. a YAML value of the wrong type is a one-line configuration error (exit 2), every problem at once;
3. a 2MASS or E(B−V) table lacking a column, holding text, or with floating-point ids is refused before
   planning, naming its file and column;
4. a cluster address where nothing listens fails at once, in one line, instead of waiting out Ray's
   GCS timeout;
5. an input of no sources (a header-only file) is a done partition with an empty catalogue file.

Review 20 (at the end): the job's own mark of its catalogue files (query results and training sets
carry `xpengine.provenance` too), a relative glob's folder, single files' earlier partition names,
path-like configuration values and the warm pool's model-files key.

The checks of 1-4 come before the cluster: `_run_tasks` is replaced by one that fails the test, so a
job that would have gone on to run is caught without starting Ray.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from xpengine.catalog.schema import catalog_schema
from xpengine.io.errors import GaiaFileError
from xpengine.pipeline.cli import job_main
from xpengine.pipeline.config import InferenceConfig, load_inference_config
from xpengine.pipeline.identity import _check_resume
from xpengine.pipeline.plan import JobError, _input_fingerprints
from xpengine.pipeline.stages import PartitionTask
from xpengine.pipeline.writer import CatalogWriter, PartitionRecord

REPO = Path(__file__).resolve().parents[1]
GAIA_XP = Path(__file__).parent / "data" / "gaia_xp"
STAR = "XP_CONTINUOUS-Gaia_DR3_5937083312263887616.csv"
MODEL = "synthetic-sky"  # the smallest bundled model: the checks here never load it
JOB = {"model_sha256": "a" * 64, "labels": ["teff"], "schema": "s1"}


@pytest.fixture
def no_cluster(monkeypatch):
    """The job's run stage fails the test: every refusal here must come before any cluster work."""

    def went_on(*args, **kwargs):
        raise AssertionError("the job went on to run its partitions")

    monkeypatch.setattr("xpengine.pipeline.ray_job._run_tasks", went_on)


def _job(capsys, *argv: str) -> tuple[int, str]:
    """The job's exit code and what it wrote to stderr (its stdout stays for `capsys`)."""
    rc = job_main(["--model", MODEL, "--no-sim-to-real-sigma", *argv])
    captured = capsys.readouterr()
    sys.stdout.write(captured.out)
    return rc, captured.err


def _star(folder: Path, name: str = STAR) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(GAIA_XP / STAR, folder / name)
    return folder / name


def _catalogue_table(provenance: bool = True) -> pa.Table:
    meta = {"provenance": {"model": MODEL}} if provenance else None
    schema = catalog_schema(["teff"], metadata=meta)
    return pa.Table.from_pydict({f.name: pa.array([1], type=f.type) for f in schema}, schema=schema)


def _user_table(path: Path) -> None:
    pq.write_table(pa.table({"star": ["18 Sco"], "teff": [5800.0]}), path)


# -- 1. --overwrite and the output folder ---------------------------------------------------------
def test_overwrite_removes_only_what_the_catalogues_jobs_wrote(tmp_path):
    star = _star(tmp_path / "in")
    task = PartitionTask(name="A", xp=str(star))
    out = tmp_path / "out"
    w = CatalogWriter(str(out))
    rec = PartitionRecord("A", "done", 1, 1, inputs=_input_fingerprints(task), job=JOB)
    w.write_partition("A", _catalogue_table(), rec)
    w.write_job(JOB)
    # a catalogue file of a job killed before its record (the job's mark), and the user's table
    pq.write_table(CatalogWriter.marked(_catalogue_table(), "killed", JOB), out / "killed.parquet")
    _user_table(out / "thesis_table.parquet")
    assert _check_resume(w, [task], {**JOB, "labels": ["teff", "logg"]}, overwrite=True) == {}
    assert sorted(p.name for p in out.glob("*.parquet")) == ["thesis_table.parquet"]


def test_a_folder_of_other_files_is_refused_before_anything_is_written(tmp_path, capsys, no_cluster):
    star = _star(tmp_path / "in")
    out = tmp_path / "mine"
    out.mkdir()
    _user_table(out / "thesis_table.parquet")
    (out / "notes.csv").write_text("a,b\n1,2\n")
    (out / ".hidden").write_text("x")
    for extra in ([], ["--overwrite"]):
        rc, err = _job(capsys, "--input", str(star), "--output", str(out), *extra)
        assert rc == 2 and err.count("\n") == 1, err
        assert "is not an xpengine catalogue" in err and "notes.csv, thesis_table.parquet" in err
        assert sorted(p.name for p in out.iterdir()) == [".hidden", "notes.csv", "thesis_table.parquet"]


def test_a_catalogue_holding_a_users_data_file_is_refused(tmp_path, capsys, no_cluster):
    star = _star(tmp_path / "in")
    out = tmp_path / "out"
    w = CatalogWriter(str(out))
    task = PartitionTask(name=star.stem, xp=str(star))
    rec = PartitionRecord(task.name, "done", 1, 1, inputs=_input_fingerprints(task), job=JOB)
    w.write_partition(task.name, _catalogue_table(), rec)
    w.write_job(JOB)
    _user_table(out / "thesis_table.parquet")
    (out / "README.md").write_text("my catalogue")  # not a data file: no reader takes it for rows
    rc, err = _job(capsys, "--input", str(star), "--output", str(out), "--overwrite")
    assert rc == 2 and "holds data files no job of this catalogue wrote" in err, err
    assert "thesis_table.parquet" in err and "README.md" not in err
    assert (out / "thesis_table.parquet").exists() and (out / f"{task.name}.parquet").exists()


def test_the_catalogues_own_files_are_not_foreign(tmp_path):
    """A catalogue of done partitions, one killed before its record and bookkeeping files passes."""
    from xpengine.pipeline.plan import check_output

    star = _star(tmp_path / "in")
    out = tmp_path / "out"
    w = CatalogWriter(str(out))
    task = PartitionTask(name="A", xp=str(star))
    w.write_partition("A", _catalogue_table(False), PartitionRecord("A", "done", 1, 1, inputs={}, job=JOB))
    pq.write_table(CatalogWriter.marked(_catalogue_table(), "killed", JOB), out / "killed.parquet")
    w.write_job(JOB)
    w.write_summary({})
    check_output(w, InferenceConfig(input=[str(star)]), [task])
    assert w.foreign_entries() == []


def test_an_output_that_is_holds_or_lies_in_an_input_is_refused(tmp_path, capsys, no_cluster):
    """`xpengine compact`'s folder given as --input and --output: --overwrite must not remove the
    inputs before reading them (they have the compact writer's provenance, not the job's)."""
    inputs = tmp_path / "compact"
    _star(inputs, "ModelInputs_000000-003111.csv")
    _star(inputs, "ModelInputs_245760-248871.csv")
    before = sorted(p.name for p in inputs.iterdir())
    for output, how in (
        (inputs, "is the input"),
        (inputs / "catalogue", "lies inside the input"),
        (tmp_path, "holds the input"),
    ):
        rc, err = _job(capsys, "--input", str(inputs), "--output", str(output), "--overwrite")
        assert rc == 2 and how in err and err.count("\n") == 1, err
        assert sorted(p.name for p in inputs.iterdir()) == before
    rc, err = _job(capsys, "--input", str(inputs / "*.csv"), "--output", str(inputs / "sub"))
    assert rc == 2 and "lies inside the input" in err, err


# -- 2. configuration value types -----------------------------------------------------------------
@pytest.mark.parametrize(
    "text, says",
    [
        ("actors: two", "actors: must be an integer, got 'two' (str)"),
        ("giant_teff_range: 5", "giant_teff_range: must be a pair of numbers [low, high], got 5 (int)"),
        ("max_error: {teff: abc}", "max_error: teff must be a number ≥ 0, got 'abc' (str)"),
        ("resources: {warm_pool_idle_s: 1e3}", "warm_pool_idle_s: must be a number, got '1e3' (str)"),
        ("overwrite: 'yes'", "overwrite: must be true or false"),
        ("labels: [teff, 5]", "labels: must be a list of text, got item 5 (int)"),
    ],
)
def test_a_value_of_the_wrong_type_is_a_one_line_error(tmp_path, capsys, no_cluster, text, says):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text + "\n")
    rc, err = _job(
        capsys, "--config", str(cfg), "--input", str(GAIA_XP / STAR), "--output", str(tmp_path / "o")
    )
    assert rc == 2 and err.count("\n") == 1, err
    assert f"{cfg}: {says}" in err
    assert not (tmp_path / "o").exists()


def test_every_type_problem_is_reported_at_once(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("actors: two\ngiant_teff_range: [5500, 3500]\nflags: {max_relative_error: {mass: -1}}\n")
    with pytest.raises(ValueError) as err:
        load_inference_config(cfg, {"batch_size": 0})
    lines = str(err.value).splitlines()[1:]
    assert lines == [
        f"  {cfg}: actors: must be an integer, got 'two' (str)",
        "  batch_size: must be ≥ 1 (or unset: chosen per device), got 0",  # given on the command line
        f"  {cfg}: giant_teff_range: low must be below high, got [5500, 3500]",
        f"  {cfg}: max_relative_error: mass must be a number ≥ 0, got -1 (int)",
    ]
    # a Python caller's configuration is checked as the YAML's, before the job plans anything
    with pytest.raises(ValueError, match="actors: must be an integer"):
        InferenceConfig(actors="two").validate()
    with pytest.raises(JobError, match=r"max_error: teff must be a number"):
        from xpengine.pipeline.ray_job import run_inference

        run_inference(InferenceConfig(max_error={"teff": "abc"}, output=str(tmp_path / "o")))


# -- 3. side tables -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "option, table, says",
    [
        ("--tmass", {"source_id": [1], "j_m": [10.0]}, "(column 'j_msigcom'): 2MASS table lacks columns"),
        (
            "--tmass",
            {
                "source_id": [1.0],
                **{c: [1.0] for c in ("j_m", "j_msigcom", "h_m", "h_msigcom", "ks_m", "ks_msigcom")},
            },
            "(column 'source_id'): source_id has type double",
        ),
        ("--ebv", {"source_id": [1], "ebv": ["high"]}, "(column 'ebv'): ebv has type string"),
        (
            "--ebv",
            {"id": [1], "ebv": [0.1]},
            "(column 'source_id'): E(B-V) table lacks columns ['source_id']",
        ),
    ],
)
def test_a_bad_side_table_is_refused_before_planning(tmp_path, capsys, no_cluster, option, table, says):
    path = tmp_path / "side.parquet"
    pq.write_table(pa.table(table), path)
    rc, err = _job(capsys, "--input", str(GAIA_XP / STAR), "--output", str(tmp_path / "o"), option, str(path))
    assert rc == 2 and err.count("\n") == 1, err
    assert f"{option}: {path} {says}" in err
    assert not (tmp_path / "o").exists()


def test_the_join_names_the_side_tables_file(tmp_path):
    """Inside a partition (a table that changed after the job's check) the message names the file too."""
    from xpengine.io import join_sources, read_table, read_xp_continuous

    path = tmp_path / "tmass.csv"
    path.write_text("source_id,j_m\n1,10.0\n")
    with pytest.raises(GaiaFileError, match=rf"{path} \(column 'j_msigcom'\): 2MASS table lacks columns"):
        join_sources(read_xp_continuous(str(GAIA_XP / STAR)), None, tmass=read_table(str(path)))


# -- 4. a cluster address where nothing listens -----------------------------------------------------
def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("command", ["pool", "infer"])
def test_an_address_where_nothing_listens_fails_at_once(tmp_path, command):
    address = f"127.0.0.1:{_closed_port()}"
    if command == "pool":
        argv = ["-m", "xpengine.cli", "pool", "list", "--address", address]
    else:
        argv = [str(REPO / "jobs" / "infer_gaia.py"), "--model", MODEL, "--input", str(GAIA_XP / STAR)]
        argv += ["--output", str(tmp_path / "o"), "--address", address]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONPATH": str(REPO)}
    env.pop("RAY_ADDRESS", None)
    done = subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=90, env=env)
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 2 and f"no Ray cluster at {address}" in last, done.stderr[-2000:]
    assert not (tmp_path / "o").exists()


# -- 5. an input of no sources ----------------------------------------------------------------------
def _header_only(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "XP_CONTINUOUS_empty.csv"
    path.write_text((GAIA_XP / STAR).read_text().splitlines()[0] + "\n")
    return path


def test_an_input_of_no_sources_is_a_done_partition_without_rows(tmp_path):
    """The read stage reports 0 rows (not a failure), the driver writes an empty catalogue file and a
    done record, resume keeps it, and the duplicate resolution reads it."""
    from xpengine.features import PAPER_VOCABULARY
    from xpengine.pipeline.bookkeeping import Ledger, PartitionBook
    from xpengine.pipeline.finish import _finish_partition, resolve_cross_partition_duplicates
    from xpengine.pipeline.stages import featurize_partition

    empty = _header_only(tmp_path / "in")
    task = PartitionTask(name="empty", xp=str(empty))
    ledger = Ledger()
    row = {k: np.array([v]) for k, v in {**task.to_row(), "index": 0}.items()}
    assert (
        list(
            featurize_partition(row, vocabulary_json=PAPER_VOCABULARY.to_json(), chunk_rows=64, ledger=ledger)
        )
        == []
    )
    (event,) = ledger.take()
    assert event["event"] == "read" and event["rows"] == 0
    book = PartitionBook(1)
    book.apply([event])
    ((index, parts, wall_s),) = list(book.complete())
    assert index == 0 and parts == []
    w = CatalogWriter(str(tmp_path / "out"))
    summary = SimpleNamespace(partitions_done=[], partitions_empty=[], sources_written=0, rows_rejected=0)
    cfg = SimpleNamespace(labels=["teff"], checksum=True)
    assert _finish_partition(w, task, parts, cfg, {"model": MODEL}, JOB, summary, wall_s) == 0
    assert summary.partitions_done == summary.partitions_empty == ["empty"]
    assert pq.read_table(tmp_path / "out" / "empty.parquet").num_rows == 0
    rec = w.done_records()["empty"]
    assert rec["output_rows"] == 0 and rec["problems"]["no_sources"] is True
    # a single file beside it: the resolution reads the empty file, and resume keeps both
    star = PartitionTask(name="star", xp=str(_star(tmp_path / "in")))
    w.write_partition(
        "star",
        _catalogue_table(),
        PartitionRecord(
            "star",
            "done",
            1,
            1,
            inputs=_input_fingerprints(star),
            job=JOB,
            problems={"unanchored_source_ids": [1]},
        ),
    )
    w.write_job(JOB)
    assert resolve_cross_partition_duplicates(w).get("sources", 0) == 0
    assert set(_check_resume(w, [task, star], JOB, overwrite=False)) == {"empty", "star"}


def test_the_job_says_a_partition_had_no_sources(tmp_path, capsys, ray_local):
    inputs = [str(_header_only(tmp_path / "in")), str(_star(tmp_path / "in"))]
    out = tmp_path / "out"
    rc, err = _job(capsys, "--input", *inputs, "--output", str(out), "--actors", "1")
    printed = capsys.readouterr().out
    assert rc == 0, err[-3000:]
    assert "2 partition(s) written (1 with no sources: XP_CONTINUOUS_empty), 0 skipped, 0 failed" in printed
    assert pq.read_table(out / "XP_CONTINUOUS_empty.parquet").num_rows == 0
    rc, _ = _job(capsys, "--input", *inputs, "--output", str(out), "--actors", "1")
    assert rc == 0 and "0 partition(s) written, 2 skipped" in capsys.readouterr().out


# -- review 20 --------------------------------------------------------------------------------------
# 1. only the job's own mark (`CATALOGUE_FILE_KEY`, naming the file's partition) makes a file without a
#    manifest record the job's: `xpengine.provenance` is carried by query results, training sets and
#    `xpengine features` output too, and --overwrite removed them from the catalogue folder
def _catalogue_with_a_partition(out: Path, star: Path) -> tuple[CatalogWriter, PartitionTask]:
    w = CatalogWriter(str(out))
    task = PartitionTask(name="A", xp=str(star))
    w.write_partition("A", _catalogue_table(), PartitionRecord("A", "done", 1, 1, inputs={}, job=JOB))
    w.write_job(JOB)
    return w, task


def test_a_query_result_or_training_set_in_the_catalogue_is_not_the_jobs(tmp_path):
    from xpengine.catalog.query import open_catalog, write_table_stream
    from xpengine.pipeline.identity import _remove_for_overwrite
    from xpengine.pipeline.plan import check_output
    from xpengine.pipeline.writer import CATALOGUE_FILE_KEY
    from xpengine.train.toy import write_toy_training_set

    star = _star(tmp_path / "in")
    other, _ = _catalogue_with_a_partition(tmp_path / "other", star)
    assert CATALOGUE_FILE_KEY in pq.read_schema(other.catalog_path("A")).metadata
    out = tmp_path / "out"
    w, task = _catalogue_with_a_partition(out, star)
    with open_catalog(str(tmp_path / "other")) as cat:
        reader = cat.reader("SELECT source_id, teff FROM catalog", None)
        meta = cat.with_units(reader.schema.empty_table(), {}).schema.metadata
        write_table_stream(reader, out / "my_selection.parquet", schema_metadata=meta)
    assert b"xpengine.provenance" in meta and CATALOGUE_FILE_KEY not in meta  # the rest is copied
    write_toy_training_set(out / "training_set.parquet", 5, seed=1)
    pq.write_table(_catalogue_table(), out / "old_version.parquet")  # an earlier version's, no record
    shutil.copy(out / "A.parquet", out / "copy_of_A.parquet")  # the mark names another partition
    users = ["copy_of_A.parquet", "my_selection.parquet", "old_version.parquet", "training_set.parquet"]
    assert w.own_partitions() == {"A"} and w.foreign_entries() == users
    with pytest.raises(JobError, match="holds data files no job of this catalogue wrote") as err:
        check_output(w, InferenceConfig(input=[str(star)]), [task])
    assert "copy_of_A.parquet" in str(err.value) and "move them out of the folder (or delete" in str(
        err.value
    )
    _remove_for_overwrite(w, set(), kept=set())
    assert sorted(p.name for p in out.glob("*.parquet")) == users


def test_a_folder_of_only_the_jobs_marked_files_is_a_catalogue(tmp_path):
    """A job killed before its first record left marked files only: the folder is its catalogue."""
    out = tmp_path / "out"
    out.mkdir()
    pq.write_table(CatalogWriter.marked(_catalogue_table(), "killed", JOB), out / "killed.parquet")
    w = CatalogWriter(str(out))
    assert w.is_catalogue() and w.own_partitions() == {"killed"} and w.foreign_entries() == []
    (out / "killed.parquet").rename(out / "renamed.parquet")
    assert not w.is_catalogue() and w.foreign_entries() == ["renamed.parquet"]


# 2. a relative glob without a folder (`stars*.csv`) is read from the current folder, not from `/`
def test_a_relative_glob_is_read_from_the_current_folder(tmp_path, monkeypatch):
    from xpengine.pipeline import plan
    from xpengine.pipeline.plan import _input_places, check_output

    _star(tmp_path / "data", "stars.csv")
    monkeypatch.chdir(tmp_path / "data")
    cfg = InferenceConfig(input=["stars*.csv"])
    assert [os.path.realpath(p) for p in _input_places(cfg, [])] == [os.path.realpath(tmp_path / "data")]
    check_output(CatalogWriter(str(tmp_path / "catalogue")), cfg, [])  # beside the input: accepted
    with pytest.raises(JobError, match="lies inside the input"):
        check_output(CatalogWriter(str(tmp_path / "data" / "catalogue")), cfg, [])
    # one "lies inside" check, shared with `xpengine query`'s (`catalog.tables.lies_inside`)
    assert not hasattr(plan, "_inside")


# 3. a single file's partition under the name an earlier version gave it is that partition
def _old_named(tmp_path: Path) -> tuple[CatalogWriter, list[PartitionTask], Path]:
    from xpengine.pipeline.plan import plan_partitions

    xp = _star(tmp_path / "in", "stars.dr3.csv")
    out = tmp_path / "out"
    w = CatalogWriter(str(out))
    old = PartitionTask(name="stars", xp=str(xp))  # as the earlier version named it
    w.write_partition(
        "stars", _catalogue_table(), PartitionRecord("stars", "done", 1, 1, _input_fingerprints(old), job=JOB)
    )
    w.write_job(JOB)
    tasks = plan_partitions(InferenceConfig(input=[str(xp)], output=str(out)))
    assert [t.name for t in tasks] == ["stars.dr3"]
    return w, tasks, out


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_partition_under_its_earlier_name_is_removed(tmp_path, caplog, overwrite):
    w, tasks, out = _old_named(tmp_path)
    with caplog.at_level("WARNING", logger="xpengine.pipeline.ray_job"):
        assert _check_resume(w, tasks, JOB, overwrite=overwrite) == {}
    assert list(out.glob("*.parquet")) == [] and w.read_manifest() == {}
    assert "partition stars (input" in caplog.text and "it is done as stars.dr3" in caplog.text


def test_a_refused_resume_removes_no_partition_under_its_earlier_name(tmp_path):
    w, tasks, out = _old_named(tmp_path)
    with pytest.raises(JobError, match="cannot be resumed"):
        _check_resume(w, tasks, {**JOB, "labels": ["teff", "logg"]}, overwrite=False)
    assert (out / "stars.parquet").exists() and set(w.read_manifest()) == {"stars"}


# 4. path-like configuration values are the job's text
def test_path_like_values_are_text(tmp_path):
    import json

    from xpengine.pipeline.identity import _job_identity

    table = tmp_path / "tmass.parquet"
    cols = ("j_m", "j_msigcom", "h_m", "h_msigcom", "ks_m", "ks_msigcom")
    pq.write_table(pa.table({"source_id": pa.array([1], pa.int64()), **{c: [1.0] for c in cols}}), table)
    cfg = InferenceConfig(input=[tmp_path, str(tmp_path)], tmass=table, output=tmp_path / "o")
    assert cfg.input == [str(tmp_path)] * 2 and cfg.tmass == str(table) and cfg.output == str(tmp_path / "o")
    assert cfg.problems() == []
    json.dumps(cfg.to_dict())
    assert _job_identity(["teff"], {"model_sha256": "x"}, cfg)["tmass_table"]["url"] == str(table)


# 6. the warm pool's key names the model files by `model_files.MODEL_FILES_KEY`
def test_the_pool_key_reads_the_model_files_key(monkeypatch):
    from xpengine.pipeline import model_files, warm_pool
    from xpengine.pipeline.tuning import PoolPlan

    monkeypatch.setattr(model_files, "MODEL_FILES_KEY", "model_files_digest_test")
    cfg = InferenceConfig(model=MODEL, labels=["teff"])
    pool = PoolPlan(actors=1, gpus_per_actor=0.0, cpus_per_actor=1.0, torch_threads=1, device="cpu")
    prov = {"model_sha256": "a" * 64, "calibration_sha256": None}
    one = warm_pool.pool_key(cfg, pool, {**prov, "model_files_digest_test": "1"})
    assert one != warm_pool.pool_key(cfg, pool, {**prov, "model_files_digest_test": "2"})
