"""The catalogue engine's stages without Ray: featurisation, prediction with flags, atomic writing."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from xpengine.catalog.schema import catalog_schema, catalog_units, tokens_to_labels
from xpengine.features.flags import FEATURE_FLAGS, SourceFlag
from xpengine.features.vocabulary import PAPER_VOCABULARY
from xpengine.pipeline.config import InferenceConfig, load_inference_config
from xpengine.pipeline.stages import (
    ERROR_MARKER_ROWS,
    CatalogPredictor,
    PartitionTask,
    featurize_partition,
)
from xpengine.pipeline.writer import CatalogWriter, PartitionRecord

PART = "000000-003111"


def _task_batch(task: PartitionTask) -> dict[str, np.ndarray]:
    return {k: np.array([v]) for k, v in task.to_row().items()}


def _featurize(task: PartitionTask, chunk_rows: int = 400, **kw):
    return list(
        featurize_partition(
            _task_batch(task), vocabulary_json=PAPER_VOCABULARY.to_json(), chunk_rows=chunk_rows, **kw
        )
    )


def _sky_task(sky_dir: str) -> PartitionTask:
    return PartitionTask(
        name=PART,
        xp=os.path.join(sky_dir, f"XpContinuousMeanSpectrum_{PART}.csv.gz"),
        gaia=os.path.join(sky_dir, f"GaiaSource_{PART}.csv.gz"),
        hpx8_range=(0, 3111),
    )


def test_featurize_yields_every_row_once_and_marks_the_total(sky_dir):
    from xpengine import io

    task = _sky_task(sky_dir)
    expected = io.read_xp_continuous(task.xp, columns=["source_id"]).column("source_id").to_numpy()
    chunks = _featurize(
        task, tmass=os.path.join(sky_dir, "tmass.parquet"), ebv=os.path.join(sky_dir, "ebv.parquet")
    )
    assert len(chunks) > 1  # chunked: memory does not grow with the partition
    sid = np.concatenate([c["source_id"] for c in chunks])
    assert sorted(sid.tolist()) == sorted(expected.tolist())
    totals = np.concatenate([c["partition_rows"] for c in chunks])
    assert (totals[: -len(chunks[-1]["source_id"])] == -1).all()
    assert (chunks[-1]["partition_rows"] == len(expected)).all()
    v = np.concatenate([c["values"] for c in chunks])
    assert v.shape == (len(expected), len(PAPER_VOCABULARY))
    # gaia_source joined: positions and G present; 2MASS and E(B-V) joined for most sources
    c0 = chunks[0]
    assert np.isfinite(c0["l"]).all() and np.isfinite(c0["phot_g_mean_mag"]).all()
    assert np.isfinite(v[:, PAPER_VOCABULARY.index("jh")]).mean() > 0.8
    assert np.isfinite(v[:, PAPER_VOCABULARY.index("logebv")]).mean() > 0.8


def test_corrupt_partition_becomes_one_marker_row(tmp_path, sky_dir):
    src = _sky_task(sky_dir).xp
    bad = tmp_path / f"XpContinuousMeanSpectrum_{PART}.csv.gz"
    data = open(src, "rb").read()
    bad.write_bytes(data[: len(data) // 2])  # truncated gzip
    chunks = _featurize(PartitionTask(name=PART, xp=str(bad)))
    last = chunks[-1]
    assert last["partition_rows"].tolist() == [ERROR_MARKER_ROWS]
    assert last["source_id"].tolist() == [-1]
    assert str(bad) in str(last["read_error"][0]) or "gzip" in str(last["read_error"][0]).lower()


def test_catalog_predictor_units_flags_and_no_loss(tiny_sky_model, sky_dir):
    chunks = _featurize(_sky_task(sky_dir), chunk_rows=5000)
    batch = chunks[0]
    n = len(batch["source_id"])
    # a source with no usable input at all must still come out, flagged
    batch["values"][0, :] = np.nan
    pred = CatalogPredictor(tiny_sky_model, ["teff", "logg", "m_h", "mass", "age"], device="cpu")
    out = pred(batch)
    assert len(out["source_id"]) == n
    assert out["n_input_tokens"][0] == 0
    assert out["flags"][0] & SourceFlag.NO_PREDICTION
    assert np.isnan(out["teff"][0]) and np.isnan(out["age_error"][0])
    ok = ~(out["flags"] & SourceFlag.NO_PREDICTION).astype(bool)
    assert ok.sum() > 0.9 * n
    assert (out["age"][ok] > 0).all() and (out["age_error"][ok] > 0).all()
    assert (out["teff_error"][ok] > 0).all()
    assert np.isfinite(out["distance_pc"][ok]).mean() > 0.9
    # flags of the feature step are kept
    feature_bits = int(FEATURE_FLAGS)
    assert ((out["flags"] & feature_bits) == (batch["flags"] & feature_bits)).all()


def test_log_labels_convert_to_linear_units():
    out = tokens_to_labels(
        {"ln_age": np.log(np.array([2.0, 10.0])), "teff": np.array([4500.0, 5000.0])},
        {"ln_age": np.array([0.1, 0.2]), "teff": np.array([50.0, 60.0])},
        ["age", "teff"],
    )
    np.testing.assert_allclose(out["age"], [2.0, 10.0], rtol=1e-6)
    np.testing.assert_allclose(out["age_error"], [0.2, 2.0], rtol=1e-6)
    np.testing.assert_allclose(out["teff_error"], [50.0, 60.0])


def test_catalog_schema_units_and_unknown_label():
    s = catalog_schema(["teff", "age"], metadata={"provenance": {"model": "x"}})
    units = json.loads(s.metadata[b"xpengine.units"])
    assert units["teff"] == "K" and units["age_error"] == "Gyr" and units["ra"] == "deg"
    assert s.field("source_id").type == "int64" and s.field("flags").type == "int64"
    assert catalog_units(["mass"])["mass"] == "Msun"
    with pytest.raises(ValueError, match="unknown catalogue label"):
        catalog_schema(["teff", "agee"])


def test_writer_is_atomic_and_resumable(tmp_path):
    import pyarrow as pa

    w = CatalogWriter(str(tmp_path / "cat"))
    schema = catalog_schema(["teff"])
    table = pa.Table.from_pydict({f.name: pa.array([1], type=f.type) for f in schema}, schema=schema)
    rec = PartitionRecord(partition="p1", status="done", input_rows=1, output_rows=1, inputs={})
    w.write_partition("p1", table, rec)
    w.write_record(
        PartitionRecord(partition="p2", status="failed", input_rows=0, output_rows=0, inputs={}, error="boom")
    )
    assert w.done_partitions() == {"p1"}
    assert w.read_manifest()["p2"]["error"] == "boom"
    assert sorted(os.listdir(tmp_path / "cat")) == ["_manifest", "_tmp", "p1.parquet"]
    assert os.listdir(tmp_path / "cat" / "_tmp") == []  # no temporary left
    # a 'done' record whose file vanished is not done (crash between file and manifest)
    os.remove(tmp_path / "cat" / "p1.parquet")
    assert w.done_partitions() == set()


def test_config_errors_are_collected(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("labels: [teff, nope]\nactors: 0\nbatch_size: 0\n")
    with pytest.raises(ValueError) as e:
        load_inference_config(p)
    msg = str(e.value)
    assert "labels" in msg and "actors" in msg and "batch_size" in msg
    p.write_text("colour: red\n")
    with pytest.raises(ValueError, match="unknown configuration keys"):
        load_inference_config(p)
    # no labels given: the model's own (the default model, gaia-xp, learned all seven catalogue labels)
    from xpengine.pipeline.config import resolve_labels

    assert InferenceConfig().labels is None
    assert resolve_labels(InferenceConfig()) == ["teff", "logg", "m_h", "alpha_m", "mass", "age", "ebv"]


def test_every_config_yaml_loads():
    import glob

    import yaml

    root = os.path.join(os.path.dirname(__file__), "..", "configs")
    files = glob.glob(os.path.join(root, "**", "*.yaml"), recursive=True)
    assert len(files) >= 8
    for f in files:
        with open(f) as fh:
            first = fh.readline()
            assert first.startswith("#"), f"{f} must start with the command that uses it"
            yaml.safe_load(fh.read())
    for f in glob.glob(os.path.join(root, "infer", "*.yaml")):
        load_inference_config(f)
