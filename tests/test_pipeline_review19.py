"""Review 19 of the catalogue job (`xpengine.pipeline`), each test failing without its fix:

1. a source a partition gave up to another (a cross-partition duplicate, or a misplaced bulk row) comes
   back when that partition no longer holds it (redone without it, or gone), and a resolve killed at
   any write leaves every source once;
2. every file the Predictor reads from the model directory is in the job's identity, provenance and
   warm-pool key, and a record of an earlier version resumes only when the model is unchanged;
3. an input replaced after the read stage opened it fails its partition instead of being recorded;
4. a resolve rerun after a kill between a partition's catalogue file and its record keeps the rows the
   killed run set aside;
5. the job's summary counts the catalogue's rows once duplicates are resolved.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from xpengine.catalog.schema import catalog_schema
from xpengine.features.flags import SourceFlag
from xpengine.pipeline.duplicates import GIVEN_UP_KEY, OTHER_PARTITION_REASON
from xpengine.pipeline.finish import _rows_table, resolve_cross_partition_duplicates
from xpengine.pipeline.writer import CatalogWriter, PartitionRecord

BULK = "XpContinuousMeanSpectrum_000000-003111.csv.gz"
LABELS = ["teff"]
OUTSIDE = int(SourceFlag.OUTSIDE_PARTITION_RANGE)
NO_GAIA = int(SourceFlag.NO_GAIA_SOURCE)


def _sid(pixel: int, k: int) -> int:
    return (pixel << 43) | k


# -- a catalogue built by hand, as _finish_partition leaves it ---------------------------------------
def _partition(writer: CatalogWriter, name: str, rows: dict[int, int], hpx8_range=None) -> None:
    """A done partition of `rows` ({source_id: flags}; teff from the source_id): a single file (all its
    sources unanchored) or, with `hpx8_range`, a bulk one (those outside the range unanchored)."""
    schema = catalog_schema(LABELS)
    sid = np.array(sorted(rows), dtype=np.int64)
    cols = {f.name: np.zeros(len(sid), dtype=f.type.to_pandas_dtype()) for f in schema}
    cols["flags"] = np.array([rows[int(s)] for s in sid], dtype=np.int64)
    cols["teff"] = (4000 + sid % 1000).astype(np.float32)
    unanchored = sid
    if hpx8_range is not None:
        unanchored = sid[((sid >> 43) < hpx8_range[0]) | ((sid >> 43) > hpx8_range[1])]
    record = PartitionRecord(
        partition=name,
        status="done",
        input_rows=len(sid),
        output_rows=len(sid),
        inputs={"xp": f"/in/{name}.csv"},
        hpx8_range=None if hpx8_range is None else list(hpx8_range),
        problems={"unanchored_source_ids": [int(x) for x in unanchored]},
        job={"labels": LABELS},
    )
    writer.write_partition(name, _rows_table(schema, cols, sid), record)


def _catalogue(out: Path) -> dict[str, pa.Table]:
    return {p.stem: pq.read_table(p) for p in sorted(out.glob("*.parquet"))}


def _assert_every_source_once(writer: CatalogWriter, out: Path, sources: set[int]) -> None:
    """Every source in exactly one catalogue file; every source a partition gave up in its `_rejected/`
    file once, with the reason naming a partition that holds it; records that count their files."""
    cat = _catalogue(out)
    ids = np.concatenate([t.column("source_id").to_numpy() for t in cat.values()])
    assert sorted(ids.tolist()) == sorted(sources), "a source is missing or repeated in the catalogue"
    held = {name: set(t.column("source_id").to_pylist()) for name, t in cat.items()}
    for name, rec in writer.done_records().items():
        rejected = writer.read_rejected(name)
        assert rec["output_rows"] == cat[name].num_rows
        assert rec["rejected_rows"] == (0 if rejected is None else rejected.num_rows)
        moved = {}
        if rejected is not None:
            for r in rejected.select(["source_id", "reason"]).to_pylist():
                if r["reason"].startswith(OTHER_PARTITION_REASON):
                    assert r["source_id"] not in moved, f"{name}: source {r['source_id']} set aside twice"
                    moved[r["source_id"]] = r["reason"][len(OTHER_PARTITION_REASON) :]
        given = {s: owner for owner, pairs in rec["problems"].get(GIVEN_UP_KEY, {}).items() for s, _ in pairs}
        assert moved == given, f"{name}: rows set aside {moved}, record {given}"
        for s, owner in given.items():
            assert s in held[owner] and s not in held[name]


# -- 1. a source given up comes back when its owner no longer holds it --------------------------------
A_RANGE, B_RANGE = (0, 3111), (245760, 248871)
MISPLACED = _sid(245762, 7)  # in B's range, misplaced in A's file


def _misplaced_catalogue(writer: CatalogWriter) -> None:
    """Bulk A holds B's source MISPLACED (flagged as _finish_partition flags it), bulk B holds it too."""
    _partition(writer, "A", {_sid(5, 1): 0, _sid(6, 2): NO_GAIA, MISPLACED: OUTSIDE | NO_GAIA}, A_RANGE)
    _partition(writer, "B", {MISPLACED: 0, _sid(245800, 3): 0}, B_RANGE)


def _singles_catalogue(writer: CatalogWriter) -> None:
    """Single files a_stars and b_stars share two sources (a_stars, first by name, keeps them)."""
    _partition(writer, "a_stars", {_sid(5, k): NO_GAIA for k in range(4)})
    _partition(writer, "b_stars", {_sid(5, k): NO_GAIA | (k == 3) * OUTSIDE for k in range(2, 6)})


@pytest.mark.parametrize("case", ["misplaced bulk row", "single files"])
@pytest.mark.parametrize("owner_then", ["redone without it", "failed", "gone"])
def test_a_source_given_up_comes_back_when_its_owner_no_longer_holds_it(tmp_path, case, owner_then):
    out = tmp_path / "out"
    w = CatalogWriter(str(out))
    if case == "misplaced bulk row":
        _misplaced_catalogue(w)
        loser, owner, given = "A", "B", {MISPLACED: OUTSIDE | NO_GAIA}
        owner_rows, owner_range = {_sid(245800, 3): 0}, B_RANGE
    else:
        _singles_catalogue(w)
        loser, owner, given = "b_stars", "a_stars", {_sid(5, 2): NO_GAIA, _sid(5, 3): NO_GAIA | OUTSIDE}
        owner_rows, owner_range = {_sid(5, 0): NO_GAIA}, None
    before = {int(s) for t in _catalogue(out).values() for s in t.column("source_id").to_numpy()}
    flags_before = dict(
        zip(*w.read_partition(loser).select(["source_id", "flags"]).to_pydict().values(), strict=True)
    )
    result = resolve_cross_partition_duplicates(w)
    assert result == {"sources": len(given), "moved_to_rejected": {loser: len(given)}}
    rec = w.done_records()[loser]
    assert rec["problems"][GIVEN_UP_KEY] == {owner: [[s, flags_before[s]] for s in sorted(given)]}
    _assert_every_source_once(w, out, before)

    if owner_then == "redone without it":  # e.g. --overwrite over a re-queried input
        _partition(w, owner, owner_rows, owner_range)
    elif owner_then == "failed":
        w.write_record(PartitionRecord(owner, "failed", 0, 0, inputs={}, error="x"))
        (out / f"{owner}.parquet").unlink()
    else:
        for p in (out / f"{owner}.parquet", out / "_manifest" / f"{owner}.json"):
            p.unlink()
    now = {int(s) for t in _catalogue(out).values() for s in t.column("source_id").to_numpy()} | set(given)
    result = resolve_cross_partition_duplicates(w)
    assert result["restored"] == {loser: len(given)}
    t = w.read_partition(loser)
    back = dict(zip(*t.select(["source_id", "flags"]).to_pydict().values(), strict=True))
    assert {s: back[s] for s in given} == given  # with the flags they had, not DUPLICATE_SOURCE
    assert t.column("source_id").to_pylist() == sorted(t.column("source_id").to_pylist())
    assert w.read_rejected(loser) is None
    rec = w.done_records()[loser]
    assert GIVEN_UP_KEY not in rec["problems"] and set(given) <= set(rec["problems"]["unanchored_source_ids"])
    _assert_every_source_once(w, out, now)
    assert resolve_cross_partition_duplicates(w) == {"sources": 0, "moved_to_rejected": {}}


def test_a_source_brought_back_takes_part_in_the_owner_choice_again(tmp_path):
    """b_stars gave s up to a_stars; a_stars is redone without s, but c_stars holds s too: s comes back
    to b_stars and the owner choice (first by name) keeps it there and moves c_stars's row."""
    out = tmp_path / "out"
    w = CatalogWriter(str(out))
    s = _sid(5, 9)
    _partition(w, "a_stars", {s: 0, _sid(5, 1): 0})
    _partition(w, "b_stars", {s: NO_GAIA})
    resolve_cross_partition_duplicates(w)
    _partition(w, "c_stars", {s: 0})
    _partition(w, "a_stars", {_sid(5, 1): 0})
    result = resolve_cross_partition_duplicates(w)
    assert result["restored"] == {"b_stars": 1} and result["moved_to_rejected"] == {"c_stars": 1}
    assert w.read_partition("b_stars").column("source_id").to_pylist() == [s]
    assert w.read_rejected("c_stars").column("reason").to_pylist() == [f"{OTHER_PARTITION_REASON}b_stars"]
    _assert_every_source_once(w, out, {s, _sid(5, 1)})


def test_a_row_brought_back_into_its_own_range_keeps_the_own_range_preference(tmp_path):
    """Bulk B's row of s (in B's range) had G_MISMATCH and lost to single file a_stars' clean copy; a_stars
    is redone without s, so s comes back to B. A single file A_stars then holds s with G_MISMATCH too: of
    two copies of one rank the one in its own partition's range is kept, B's. Until session 30 the row
    brought back was listed as unanchored and lost its range, so A_stars won by name (session 29 doubt)."""
    out = tmp_path / "out"
    w = CatalogWriter(str(out))
    s = _sid(245770, 4)
    mismatch = int(SourceFlag.G_MISMATCH)
    _partition(w, "B", {s: mismatch, _sid(245800, 3): 0}, B_RANGE)
    _partition(w, "a_stars", {s: 0})
    assert resolve_cross_partition_duplicates(w)["moved_to_rejected"] == {"B": 1}
    _partition(w, "a_stars", {_sid(5, 1): 0})
    _partition(w, "A_stars", {s: mismatch})
    result = resolve_cross_partition_duplicates(w)
    assert result["restored"] == {"B": 1} and result["moved_to_rejected"] == {"A_stars": 1}
    assert s in w.read_partition("B").column("source_id").to_pylist()
    assert s not in w.done_records()["B"]["problems"]["unanchored_source_ids"]
    _assert_every_source_once(w, out, {s, _sid(245800, 3), _sid(5, 1)})


def test_a_given_up_row_in_neither_file_fails_its_partition(tmp_path):
    """A given-up row that is in neither of its partition's files (removed by hand) cannot be brought
    back: the partition is recorded failed, naming its files, so the next run redoes it."""
    out = tmp_path / "out"
    w = CatalogWriter(str(out))
    _singles_catalogue(w)
    resolve_cross_partition_duplicates(w)
    (out / "_rejected" / "b_stars.parquet").unlink()
    _partition(w, "a_stars", {_sid(5, 0): 0})
    result = resolve_cross_partition_duplicates(w)
    (err,) = [f["error"] for f in result["failed"].values()]
    assert set(result["failed"]) == {"b_stars"} and result["failed"]["b_stars"]["rows"] == 2
    assert "no longer hold them" in err and str(out / "_rejected" / "b_stars.parquet") in err
    assert "b_stars" not in w.done_records() and not (out / "b_stars.parquet").exists()
    assert w.read_manifest()["b_stars"]["status"] == "failed"


class _Killed(BaseException):
    pass


def _kill_at(monkeypatch, k: int) -> list[int]:
    """Every file the writer writes (tables and records) counted; the k-th (from 0) is not written and
    the 'process' dies there."""
    calls = [0]
    original = CatalogWriter._atomic_write

    def dying(self, path, write_fn, **kw):
        calls[0] += 1
        if calls[0] - 1 == k:
            raise _Killed(path)
        return original(self, path, write_fn, **kw)

    monkeypatch.setattr(CatalogWriter, "_atomic_write", dying)
    return calls


@pytest.mark.parametrize("step", ["move", "bring back"])
def test_a_resolve_killed_at_any_write_leaves_every_source_once(tmp_path, monkeypatch, step):
    for k in range(20):
        out = tmp_path / f"{step}-{k}"
        w = CatalogWriter(str(out))
        _misplaced_catalogue(w)
        _singles_catalogue(w)
        if step == "bring back":
            resolve_cross_partition_duplicates(w)
            _partition(w, "B", {_sid(245800, 3): 0}, B_RANGE)
            _partition(w, "a_stars", {_sid(5, 0): 0})
        sources = {int(s) for t in _catalogue(out).values() for s in t.column("source_id").to_numpy()}
        if step == "bring back":
            sources |= {MISPLACED, _sid(5, 2), _sid(5, 3)}
        with monkeypatch.context() as m:
            calls = _kill_at(m, k)
            try:
                resolve_cross_partition_duplicates(w)
            except _Killed:
                killed = True
            else:
                killed = False
        resolve_cross_partition_duplicates(w)  # the rerun
        _assert_every_source_once(w, out, sources)
        if not killed:
            assert k == calls[0] and k > 3  # every write of the step was a kill point once
            return
    raise AssertionError("the resolve never ran to its end")


@pytest.mark.ray
@pytest.mark.slow
def test_job_brings_back_sources_whose_owner_was_redone_without_them(ray_local, tmp_path, sky_dir):
    """The reviewer's case through the job: a_stars (rows 0-9) and b_stars (rows 5-14) share five
    sources, kept in a_stars; a_stars is re-queried (rows 0-4) and redone with --overwrite alone. Each
    of b_stars's sources is in the catalogue again, once."""
    from xpengine.pipeline.config import InferenceConfig
    from xpengine.pipeline.ray_job import run_inference

    inp = tmp_path / "in"
    hdr, rows = _sky_rows(sky_dir)
    _write_csv(inp / "a_stars.csv", hdr, rows[0:10])
    _write_csv(inp / "b_stars.csv", hdr, rows[5:15])
    out = tmp_path / "out"
    both = [str(inp / "a_stars.csv"), str(inp / "b_stars.csv")]
    s = run_inference(InferenceConfig(input=both, output=str(out), checksum=False))
    assert s.ok and s.duplicates["moved_to_rejected"] == {"b_stars": 5}
    _write_csv(inp / "a_stars.csv", hdr, rows[0:5])
    s = run_inference(
        InferenceConfig(input=[str(inp / "a_stars.csv")], output=str(out), checksum=False, overwrite=True)
    )
    assert s.ok and s.duplicates["restored"] == {"b_stars": 5}
    cat = np.concatenate([t.column("source_id").to_numpy() for t in _catalogue(out).values()])
    expected = [int(r.split(",", 1)[0]) for r in rows[0:15]]
    assert sorted(cat.tolist()) == sorted(expected)
    assert not (out / "_rejected" / "b_stars.parquet").exists()
    restored = pq.read_table(out / "b_stars.parquet")
    assert not (pc.bit_wise_and(restored.column("flags"), int(SourceFlag.DUPLICATE_SOURCE)).to_numpy()).any()


def _sky_rows(sky_dir: str) -> tuple[str, list[str]]:
    """The bundled sky's first bulk XP file: its CSV header line and data lines (real columns)."""
    body = [
        x
        for x in gzip.open(os.path.join(sky_dir, BULK), "rt").read().splitlines(True)
        if not x.startswith("#")
    ]
    return body[0], body[1:]


def _write_csv(path: Path, header: str, rows: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "".join(rows))


# -- 2. every model file in the identity, the provenance and the pool key -----------------------------
@pytest.fixture
def model_copy(tmp_path) -> Path:
    from xpengine.model.metadata import resolve_model_path

    dest = tmp_path / "gx"
    shutil.copytree(resolve_model_path("gaia-xp"), dest)
    return dest


def _edit_json(path: Path, change) -> None:
    d = json.loads(path.read_text())
    change(d)
    path.write_text(json.dumps(d, indent=1))


@pytest.mark.parametrize(
    "edit",
    ["config.json", "vocabulary.json", "standardization.json", "provenance.json", "calibration.json removed"],
)
def test_every_model_file_is_in_the_identity_provenance_and_pool_key(model_copy, edit):
    from xpengine.pipeline import warm_pool
    from xpengine.pipeline.config import InferenceConfig
    from xpengine.pipeline.identity import _identity_differences, _job_identity, _model_provenance
    from xpengine.pipeline.tuning import PoolPlan

    cfg = InferenceConfig(model=str(model_copy), labels=["teff", "logg"])
    pool = PoolPlan(actors=1, cpus_per_actor=1.0, torch_threads=1, device="cpu")
    before = _model_provenance(str(model_copy))
    if edit == "config.json":  # as training/record_unseen_inputs.py rewrites it in place
        _edit_json(model_copy / edit, lambda d: d.pop("pseudo_luminosity_domain"))
    elif edit == "calibration.json removed":
        (model_copy / "calibration.json").unlink()
    else:
        _edit_json(model_copy / edit, lambda d: d.update(edited=True) if isinstance(d, dict) else None)
    after = _model_provenance(str(model_copy))
    assert after["model_sha256"] == before["model_sha256"]  # the weights are the same
    assert after["model_files_sha256"] != before["model_files_sha256"]
    old, new = _job_identity(cfg.labels, before, cfg), _job_identity(cfg.labels, after, cfg)
    name = edit.split()[0]
    assert any(d.startswith("model file(s)") and name in d for d in _identity_differences(old, new)), (
        _identity_differences(old, new)
    )
    assert warm_pool.pool_key(cfg, pool, before) != warm_pool.pool_key(cfg, pool, after)


def test_resume_refuses_partitions_made_with_another_model_config(tmp_path, model_copy):
    from xpengine.pipeline.config import InferenceConfig
    from xpengine.pipeline.identity import _job_identity, _model_provenance, begin_job
    from xpengine.pipeline.plan import JobError

    cfg = InferenceConfig(model=str(model_copy), labels=["teff"])
    identity = _job_identity(cfg.labels, _model_provenance(str(model_copy)), cfg)
    w = CatalogWriter(str(tmp_path / "out"))
    tasks = _done_with_job(w, tmp_path, identity)
    w.write_job({**identity, "model": str(model_copy)})
    _edit_json(model_copy / "config.json", lambda d: d.pop("pseudo_luminosity_domain"))
    edited = _job_identity(cfg.labels, _model_provenance(str(model_copy)), cfg)
    args = SimpleNamespace(overwrite=False, checksum=False, model=str(model_copy))
    with pytest.raises(
        JobError, match=r"cannot be resumed: the catalogue was made with another model file\(s\) config\.json"
    ):
        begin_job(w, tasks, edited, args, {"model": str(model_copy)})


@pytest.mark.ray
@pytest.mark.slow
def test_job_refuses_to_resume_after_the_model_config_was_rewritten(ray_local, tmp_path, sky_dir, model_copy):
    """The reviewer's case through the job: partition a_stars made, then the model's config.json
    rewritten in place (its pseudo-luminosity domain recorded, weights unchanged): a resume that would
    add b_stars under the new config is refused, naming config.json, before any work."""
    from xpengine.pipeline.config import InferenceConfig
    from xpengine.pipeline.plan import JobError
    from xpengine.pipeline.ray_job import run_inference

    hdr, rows = _sky_rows(sky_dir)
    _write_csv(tmp_path / "in" / "a_stars.csv", hdr, rows[0:10])
    _write_csv(tmp_path / "in" / "b_stars.csv", hdr, rows[10:20])
    out = tmp_path / "out"

    def cfg(*names):
        inputs = [str(tmp_path / "in" / f"{n}.csv") for n in names]
        return InferenceConfig(input=inputs, output=str(out), model=str(model_copy), checksum=False)

    assert run_inference(cfg("a_stars")).ok
    _edit_json(model_copy / "config.json", lambda d: d.pop("pseudo_luminosity_domain"))
    with pytest.raises(
        JobError, match=r"cannot be resumed: .*model file\(s\) config\.json [0-9a-f]{12} → [0-9a-f]{12}"
    ):
        run_inference(cfg("a_stars", "b_stars"))
    assert not (out / "b_stars.parquet").exists()


def _done_with_job(w: CatalogWriter, tmp_path: Path, job: dict, **extra) -> list:
    """Partition a done by a job of identity `job` (its input a real file), and b still to do."""
    from xpengine.pipeline.plan import _input_fingerprints
    from xpengine.pipeline.stages import PartitionTask

    tasks = []
    for name in "ab":
        xp = tmp_path / "in" / f"{name}.csv"
        _write_csv(xp, "source_id\n", ["1\n"])
        tasks.append(PartitionTask(name, xp=str(xp)))
    _partition(w, "a", {_sid(5, 1): 0})
    rec = w.done_records()["a"]
    w.write_record(PartitionRecord(**{**rec, "job": job, "inputs": _input_fingerprints(tasks[0]), **extra}))
    return tasks


def _legacy(identity: dict) -> dict:
    """An identity as versions before the model files' digest recorded it."""
    return {k: v for k, v in identity.items() if k not in ("model_files_sha256", "model_files")}


def _age(model_dir: Path, seconds: float) -> None:
    """Set the mtimes of the model directory and its files `seconds` into the past."""
    t = time.time() - seconds
    for p in [*model_dir.iterdir(), model_dir]:
        os.utime(p, (t, t))


def test_a_record_of_an_earlier_version_resumes_only_while_the_model_is_unchanged(tmp_path, model_copy):
    from xpengine.pipeline.config import InferenceConfig
    from xpengine.pipeline.identity import _job_identity, _model_provenance, begin_job
    from xpengine.pipeline.plan import JobError

    cfg = InferenceConfig(model=str(model_copy), labels=["teff"])
    identity = _job_identity(cfg.labels, _model_provenance(str(model_copy)), cfg)
    _age(model_copy, 3600)  # the model as it was before the earlier job ran
    w = CatalogWriter(str(tmp_path / "out"))
    tasks = _done_with_job(w, tmp_path, _legacy(identity), wall_time_s=2.0)
    w.write_job({**_legacy(identity), "model": str(model_copy)})
    args = SimpleNamespace(overwrite=False, checksum=False, model=str(model_copy))
    about = {"model": str(model_copy)}
    done, _ = begin_job(w, tasks, identity, args, about)  # the model is the one the records were made with
    assert set(done) == {"a"}
    assert w.read_job()["model_files_sha256"] == identity["model_files_sha256"]
    # config.json rewritten in place since (weights the same): the legacy record cannot be told apart
    _edit_json(model_copy / "config.json", lambda d: d.update(edited=True))
    edited = _job_identity(cfg.labels, _model_provenance(str(model_copy)), cfg)
    _edit_json(model_copy / "config.json", lambda d: d.pop("edited"))  # even back to the same bytes
    again = _job_identity(cfg.labels, _model_provenance(str(model_copy)), cfg)
    assert again["model_files_sha256"] == identity["model_files_sha256"] != edited["model_files_sha256"]
    # with this version's _JOB.json (the run above) the partition is redone, not kept
    done, _ = begin_job(w, tasks, again, args, about)
    assert done == {}
    # as the earlier version left the output: refused, saying why
    w.write_job({**_legacy(identity), "model": str(model_copy)})
    with pytest.raises(
        JobError, match=r"made with another model, as far as can be told: it was made by an earlier"
    ):
        begin_job(w, tasks, again, args, about)


# -- 3. an input replaced after it was read ----------------------------------------------------------
def test_an_input_replaced_after_its_read_fails_the_partition(tmp_path, sky_dir):
    """The read stage reports the input's size and mtime as it opens it; the driver finds another file
    when it writes the partition: the partition fails with a message naming the file, no catalogue
    file is left, and the next run redoes it. Unchanged, the record holds what was read."""
    from xpengine.pipeline.bookkeeping import PARTITION_KEY, Ledger, PartitionBook
    from xpengine.pipeline.config import DEFAULT_FLAG_POLICY, InferenceConfig
    from xpengine.pipeline.finish import _finish_partition
    from xpengine.pipeline.identity import _check_resume, _model_vocabulary_json
    from xpengine.pipeline.stages import PartitionTask
    from xpengine.pipeline.tuning import PoolPlan
    from xpengine.pipeline.warm_pool import PoolWorker

    hdr, rows = _sky_rows(sky_dir)
    worker = PoolWorker(
        "k", "gaia-xp", LABELS, pool=PoolPlan(actors=1, cpus_per_actor=1, torch_threads=1, device="cpu",
        batch_size=64), flag_policy=DEFAULT_FLAG_POLICY, inputs=None, idle_s=None,
    )  # fmt: skip
    featurize = {
        "vocabulary_json": _model_vocabulary_json("gaia-xp"),
        "chunk_rows": 40,
        "tmass": None,
        "ebv": None,
    }
    cfg = InferenceConfig(labels=LABELS, checksum=True)
    w = CatalogWriter(str(tmp_path / "out"))
    for replaced in (False, True):
        xp = tmp_path / "in" / "stars.csv"
        _write_csv(xp, hdr, rows[:100])
        task = PartitionTask(name="stars", xp=str(xp))
        ledger, book = Ledger(), PartitionBook(1)
        for batch in worker.run({**task.to_row(), "index": 0}, featurize, ledger):
            keys = batch.pop(PARTITION_KEY)
            book.add_rows(keys, batch)
        book.apply(ledger.take())
        ((index, parts, wall_s),) = list(book.complete())
        read = book.read_inputs(index)
        assert read["xp_file"]["size"] == xp.stat().st_size and read["gaia_source_file"] is None
        if replaced:  # a re-query written over it: 50 more rows, a new mtime
            time.sleep(0.01)
            _write_csv(xp, hdr, rows[:150])
        summary = SimpleNamespace(
            partitions_done=[], partitions_failed={}, sources_written=0, rows_rejected=0
        )
        n = _finish_partition(w, task, parts, cfg, {}, {"labels": LABELS}, summary, wall_s, read)
        rec = w.read_manifest()["stars"]
        if not replaced:
            assert n == 100 and rec["status"] == "done" and rec["inputs"]["xp_file"] == read["xp_file"]
            continue
        assert n is None and rec["status"] == "failed" and not (tmp_path / "out" / "stars.parquet").exists()
        assert rec["error"].startswith(f"input {xp} changed after the job read it (read: {read['xp_file']}")
        assert summary.partitions_failed == {"stars": rec["error"]}
        assert _check_resume(w, [task], {"labels": LABELS}, overwrite=False) == {}  # redone


# -- 4. a resolve rerun after a kill between a catalogue file and its record ---------------------------
def test_a_resolve_rerun_keeps_rows_a_killed_run_set_aside(tmp_path):
    """The state an earlier version left when killed between b_stars's new catalogue file and its
    record (no record of the move): the source is only in `_rejected/`, the record still lists it
    unanchored. The rerun keeps that row set aside (it lost it) and records the move, with the flags
    the row had in the catalogue."""
    from xpengine.pipeline.duplicates import _rejected_table

    out = tmp_path / "out"
    w = CatalogWriter(str(out))
    s, other = _sid(5, 2), _sid(5, 7)
    _partition(w, "a_stars", {s: NO_GAIA})
    _partition(w, "b_stars", {s: NO_GAIA | OUTSIDE, other: NO_GAIA})
    table = w.read_partition("b_stars")
    gone = table.filter(pc.equal(table.column("source_id"), s))
    (out / "_rejected").mkdir()
    pq.write_table(_rejected_table(gone, [f"{OTHER_PARTITION_REASON}a_stars"]), w.rejected_path("b_stars"))
    pq.write_table(table.filter(pc.not_equal(table.column("source_id"), s)), w.catalog_path("b_stars"))
    assert resolve_cross_partition_duplicates(w) == {"sources": 0, "moved_to_rejected": {"b_stars": 0}}
    rejected = w.read_rejected("b_stars")
    assert rejected is not None and rejected.column("source_id").to_pylist() == [s]
    rec = w.done_records()["b_stars"]
    assert rec["problems"][GIVEN_UP_KEY] == {"a_stars": [[s, NO_GAIA | OUTSIDE]]}
    assert rec["problems"]["unanchored_source_ids"] == [other] and rec["rejected_rows"] == 1
    _assert_every_source_once(w, out, {s, other})


def test_a_source_an_earlier_version_lost_fails_its_partition(tmp_path):
    """What the reviewer's rerun left (before the fix): the record lists the source unanchored, and it
    is in neither file. Nothing can bring it back but a new read: the partition fails, naming both
    files, so the next run redoes it."""
    out = tmp_path / "out"
    w = CatalogWriter(str(out))
    s, other = _sid(5, 2), _sid(5, 7)
    _partition(w, "a_stars", {s: NO_GAIA})
    _partition(w, "b_stars", {s: NO_GAIA, other: NO_GAIA})
    table = w.read_partition("b_stars")
    pq.write_table(table.filter(pc.not_equal(table.column("source_id"), s)), w.catalog_path("b_stars"))
    result = resolve_cross_partition_duplicates(w)
    assert result["moved_to_rejected"] == {} and result["failed"]["b_stars"]["rows"] == 2
    err = result["failed"]["b_stars"]["error"]
    assert err.startswith(
        f"1 source(s) its record lists (e.g. source_id {s}) are in neither {out}/b_stars.parquet"
    )
    assert w.read_manifest()["b_stars"]["status"] == "failed" and not (out / "b_stars.parquet").exists()


# -- 5. the summary counts the catalogue ---------------------------------------------------------------
@pytest.mark.ray
@pytest.mark.slow
def test_job_summary_counts_the_catalogue_after_duplicates_are_resolved(ray_local, tmp_path, sky_dir):
    from xpengine.pipeline.config import InferenceConfig
    from xpengine.pipeline.ray_job import run_inference

    inp = tmp_path / "in"
    hdr, rows = _sky_rows(sky_dir)
    _write_csv(inp / "a_stars.csv", hdr, rows[0:10])
    _write_csv(inp / "b_stars.csv", hdr, rows[5:15])
    out = tmp_path / "out"
    both = [str(inp / "a_stars.csv"), str(inp / "b_stars.csv")]
    s = run_inference(InferenceConfig(input=both, output=str(out), checksum=False))
    assert s.ok and s.duplicates["sources"] == 5
    in_catalogue = sum(t.num_rows for t in _catalogue(out).values())
    records = CatalogWriter(str(out)).done_records()
    assert in_catalogue == 15 == sum(r["output_rows"] for r in records.values())
    assert s.sources_written == 15 == json.loads((out / "_SUMMARY.json").read_text())["sources_written"]


def test_a_source_comes_back_when_its_owner_is_redone_with_a_worse_copy(tmp_path):
    """B's row of s (in its range, G_MISMATCH) lost to c_stars' clean copy; c_stars is redone and now holds
    s without a prediction. B's copy comes back and wins the owner choice; c_stars' goes to `_rejected/`
    (until session 30 the catalogue kept the copy without a prediction: helper-87)."""
    out = tmp_path / "out"
    w = CatalogWriter(str(out))
    s = _sid(245770, 4)
    _partition(w, "B", {s: int(SourceFlag.G_MISMATCH), _sid(245800, 3): 0}, B_RANGE)
    _partition(w, "c_stars", {s: 0})
    assert resolve_cross_partition_duplicates(w)["moved_to_rejected"] == {"B": 1}
    _partition(w, "c_stars", {s: int(SourceFlag.NO_PREDICTION)})
    result = resolve_cross_partition_duplicates(w)
    assert result["restored"] == {"B": 1} and result["moved_to_rejected"] == {"c_stars": 1}
    t = w.read_partition("B").to_pydict()
    assert dict(zip(t["source_id"], t["flags"], strict=True))[s] == int(SourceFlag.G_MISMATCH)
    _assert_every_source_once(w, out, {s, _sid(245800, 3)})
    # stable: a copy of one rank, or better, held by the owner brings nothing back
    again = resolve_cross_partition_duplicates(w)
    assert again["sources"] == 0 and not again.get("restored") and not again.get("moved_to_rejected")
