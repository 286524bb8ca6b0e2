"""The context inputs in the job's identity: one set of tokens however it is spelled (`bp0..29` or
`bp0 bp1 ...`, in any order; the model's context has no order), in records written by this version or
by one that kept the option as given; a different set of tokens is still another job."""

from __future__ import annotations

import dataclasses
import random
import shutil
from pathlib import Path

import pyarrow as pa
import pytest

from xpengine.catalog.schema import catalog_schema
from xpengine.pipeline.config import InferenceConfig, resolve_inputs
from xpengine.pipeline.identity import _check_resume, _identity_differences, _job_identity
from xpengine.pipeline.plan import JobError, _input_fingerprints
from xpengine.pipeline.stages import PartitionTask
from xpengine.pipeline.writer import CatalogWriter, PartitionRecord

GAIA_XP = Path(__file__).parent / "data" / "gaia_xp"
STAR = "XP_CONTINUOUS-Gaia_DR3_5937083312263887616.csv"
PROVENANCE = {"model_sha256": "a" * 64, "calibration_sha256": None, "sim_to_real_applied": False}
RANGES = ["bp0..29", "rp0..29", "bprp", "jh", "jk"]
SPELLED = [f"bp{i}" for i in range(30)] + [f"rp{i}" for i in range(30)] + ["bprp", "jh", "jk"]


def _shuffled(tokens: list[str]) -> list[str]:
    out = list(tokens)
    random.Random(7).shuffle(out)
    return out


def _identity(inputs: list[str] | None, *, resolve: bool = True) -> dict:
    """The identity the job records for these `--inputs` (resolved first, as `run_inference` does)."""
    cfg = InferenceConfig(model="gaia-xp", inputs=inputs)
    if resolve:
        cfg = dataclasses.replace(cfg, inputs=resolve_inputs(cfg))
    return _job_identity(["teff"], PROVENANCE, cfg)


def _output_of(tmp_path: Path, job: dict) -> tuple[CatalogWriter, PartitionTask]:
    """An output with one finished partition and the `_JOB.json` of `job`."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    xp = tmp_path / "A.csv"
    shutil.copy(GAIA_XP / STAR, xp)
    task = PartitionTask(name="A", xp=str(xp))
    schema = catalog_schema(["teff"])
    table = pa.Table.from_pydict({f.name: pa.array([1], type=f.type) for f in schema}, schema=schema)
    w = CatalogWriter(str(tmp_path / "out"))
    w.write_partition(
        task.name, table, PartitionRecord(task.name, "done", 1, 1, inputs=_input_fingerprints(task), job=job)
    )
    w.write_job(job)
    return w, task


def test_every_spelling_of_one_input_set_is_one_context():
    want = resolve_inputs(InferenceConfig(model="gaia-xp", inputs=RANGES))
    assert sorted(want) == sorted(SPELLED)
    for spec in (SPELLED, _shuffled(SPELLED), ["jk", "rp0..29", "jh", "bp0..29", "bprp", "bp3"]):
        assert resolve_inputs(InferenceConfig(model="gaia-xp", inputs=spec)) == want


@pytest.mark.parametrize(
    "spec",
    [
        SPELLED,
        _shuffled(SPELLED),
        ["jk", "jh", "bprp", "rp0..29", "bp0..29"],
        ["bp0..14", "bp15..29", *SPELLED[30:]],
    ],
)
def test_resume_with_an_equivalent_spelling_is_accepted(tmp_path, spec):
    w, task = _output_of(tmp_path, _identity(RANGES))
    assert _identity_differences(_identity(RANGES), _identity(spec)) == []
    assert set(_check_resume(w, [task], _identity(spec), overwrite=False)) == {"A"}


def test_a_record_that_kept_the_option_as_given_is_compared_by_its_tokens(tmp_path):
    for i, old_spec in enumerate((RANGES, _shuffled(SPELLED), list(reversed(RANGES)))):
        old = _identity(old_spec, resolve=False)  # the literal list, as a record could hold it
        assert old["context_inputs"] == list(old_spec)
        w, task = _output_of(tmp_path / str(i), old)
        assert set(_check_resume(w, [task], _identity(SPELLED), overwrite=False)) == {"A"}


@pytest.mark.parametrize(
    ("spec", "change"),
    [
        (["bp0..28", "rp0..29", "bprp", "jh", "jk"], "removed ['bp29']"),
        ([*RANGES, "g_fakemag"], "added ['g_fakemag']"),
        (["bp0..29", "rp0..29", "bprp", "jh"], "removed ['jk']"),
    ],
)
def test_a_different_input_set_is_still_refused(tmp_path, spec, change):
    w, task = _output_of(tmp_path, _identity(RANGES))
    (diff,) = _identity_differences(_identity(RANGES), _identity(spec))
    assert diff.startswith("context inputs ") and change in diff
    with pytest.raises(
        JobError, match=r"cannot be resumed: the catalogue was made with another context inputs"
    ):
        _check_resume(w, [task], _identity(spec), overwrite=False)
    # an old literal record of the other set is refused too
    w2, task2 = _output_of(tmp_path / "literal", _identity(spec, resolve=False))
    with pytest.raises(JobError, match=r"another context inputs"):
        _check_resume(w2, [task2], _identity(RANGES), overwrite=False)


def test_the_canonical_form_expands_ranges_and_sorts_by_number():
    from xpengine.pipeline.identity import _canonical_inputs

    got = _canonical_inputs(["bp2", "bp10", "bp0..1", "bprp", "bp2"])
    assert got == ["bp0", "bp1", "bp2", "bp10", "bprp"]


@pytest.mark.ray
@pytest.mark.slow
def test_the_job_resumes_over_another_spelling_and_gives_the_same_rows(
    ray_local, tmp_path, sky_dir, tiny_sky_model
):
    import pyarrow.parquet as pq
    from _sky_inputs import copy_sky

    from xpengine.pipeline.ray_job import run_inference

    part = "000000-003111"
    copy_sky(sky_dir, tmp_path / "in", [part])

    def run(inputs: list[str], out: str):
        cfg = InferenceConfig(
            input=[str(tmp_path / "in")],
            model=tiny_sky_model,
            output=str(tmp_path / out),
            inputs=inputs,
            actors=1,
            batch_size=512,  # not calibrated per run: the same batches
            torch_threads=1,
            progress_interval_s=0.0,
        )
        return run_inference(cfg)

    first = run(RANGES, "a")
    assert first.ok and first.partitions_done == [part]
    again = run(_shuffled(SPELLED), "a")  # the same set, spelled out in another order: a resume
    assert again.ok and again.partitions_skipped == [part] and not again.partitions_done
    fresh = run(_shuffled(SPELLED), "b")  # and the same context, so the same rows, bit for bit
    cols = ["source_id", "teff", "teff_error", "logg", "m_h"]
    a = pq.read_table(tmp_path / "a" / f"{part}.parquet", columns=cols)
    b = pq.read_table(tmp_path / "b" / f"{part}.parquet", columns=cols)
    assert fresh.ok and a.equals(b)
    with pytest.raises(JobError, match=r"another context inputs .*removed \['jk'\]"):
        run(["bp0..29", "rp0..29", "bprp", "jh"], "a")
