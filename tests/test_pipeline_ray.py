"""The catalogue job end to end on a local Ray cluster (session fixture `ray_local`)."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
from _sky_inputs import add_truncated_partition, copy_sky

from xpengine.features.flags import SourceFlag
from xpengine.pipeline.config import InferenceConfig
from xpengine.pipeline.ray_job import run_inference

pytestmark = [pytest.mark.ray, pytest.mark.slow]

PARTS = ("000000-003111", "245760-248871")


def _copy_sky(sky_dir: str, dest, parts=PARTS) -> None:
    copy_sky(sky_dir, dest, parts)


def _input_ids(path) -> np.ndarray:
    from xpengine import io

    return io.read_xp_continuous(str(path), columns=["source_id"]).column("source_id").to_numpy()


def test_job_writes_every_source_once_then_resumes_and_recovers(ray_local, tmp_path, sky_dir, tiny_sky_model):
    inp = tmp_path / "in"
    _copy_sky(sky_dir, inp)
    # a third partition whose XP file is corrupt (truncated gzip)
    bad_name = "688128-691239"
    add_truncated_partition(sky_dir, inp, bad_name)
    out = tmp_path / "catalog"
    cfg = InferenceConfig(
        input=[str(inp)],
        model=tiny_sky_model,
        output=str(out),
        tmass=os.path.join(sky_dir, "tmass.parquet"),
        ebv=os.path.join(sky_dir, "ebv.parquet"),
        batch_size=512,
        chunk_rows=300,
        progress_interval_s=0.0,
    )
    s1 = run_inference(cfg)
    assert not s1.ok and list(s1.partitions_failed) == [bad_name]
    assert sorted(s1.partitions_done) == sorted(PARTS)
    manifest = {p: json.loads((out / "_manifest" / f"{p}.json").read_text()) for p in (*PARTS, bad_name)}
    assert manifest[bad_name]["status"] == "failed" and manifest[bad_name]["error"]
    for p in PARTS:
        t = pq.read_table(out / f"{p}.parquet")
        ids = _input_ids(inp / f"XpContinuousMeanSpectrum_{p}.csv.gz")
        assert t.num_rows == len(ids) == manifest[p]["input_rows"] == manifest[p]["output_rows"]
        got = t.column("source_id").to_numpy()
        assert np.array_equal(np.sort(got), np.sort(ids)) and len(np.unique(got)) == len(got)
        assert (t.column("hpx8").to_numpy() == (got >> 43)).all()
        meta = t.schema.metadata
        units = json.loads(meta[b"xpengine.units"])
        assert units["teff"] == "K" and units["age"] == "Gyr" and units["mass"] == "Msun"
        prov = json.loads(meta[b"xpengine.provenance"])
        assert prov["model_sha256"] and prov["inputs"]["xp_md5"] and prov["xpengine_version"]
    assert s1.sources_written == sum(pq.read_metadata(out / f"{p}.parquet").num_rows for p in PARTS)

    # re-run after fixing the corrupt file: done partitions are skipped, the failed one is redone
    shutil.copy(
        os.path.join(sky_dir, f"XpContinuousMeanSpectrum_{bad_name}.csv.gz"),
        inp / f"XpContinuousMeanSpectrum_{bad_name}.csv.gz",
    )
    s2 = run_inference(cfg)
    assert s2.ok and sorted(s2.partitions_skipped) == sorted(PARTS) and s2.partitions_done == [bad_name]
    # the pool fills the node's 2 CPUs, but never has more actors than partitions to do
    assert (s1.predictor["actors"], s2.predictor["actors"]) == (2, 1)
    all_ids = np.concatenate([_input_ids(p) for p in sorted(inp.glob("XpContinuousMeanSpectrum_*"))])
    cat = pq.read_table(out, columns=["source_id", "flags"])  # the directory as one dataset
    got = cat.column("source_id").to_numpy()
    assert len(got) == len(all_ids) == len(np.unique(got))
    assert set(got.tolist()) == set(all_ids.tolist())
    assert json.loads((out / "_manifest" / f"{bad_name}.json").read_text())["status"] == "done"


def test_catalogue_is_readable_by_common_tools(ray_local, tmp_path, sky_dir, tiny_sky_model):
    inp = tmp_path / "in"
    _copy_sky(sky_dir, inp, parts=PARTS[:1])
    out = tmp_path / "catalog"
    s = run_inference(InferenceConfig(input=[str(inp)], model=tiny_sky_model, output=str(out)))
    assert s.ok
    path = out / f"{PARTS[0]}.parquet"
    import duckdb
    import pandas as pd
    import pyarrow.dataset as pads
    from astropy.table import Table

    df = pd.read_parquet(path)
    assert df["source_id"].dtype == np.int64 and len(df) == s.sources_written
    assert pads.dataset(str(out), format="parquet", exclude_invalid_files=True).count_rows() == len(df)
    n = duckdb.sql(
        f"select count(*) from read_parquet('{path}') where flags & {int(SourceFlag.NO_PREDICTION)} = 0"
    ).fetchall()[0][0]
    assert 0 < n <= len(df)
    t = Table.read(path)
    assert len(t) == len(df) and "age_error" in t.colnames


def test_a_partition_with_another_partitions_sources_is_caught(ray_local, tmp_path, sky_dir, tiny_sky_model):
    """A bulk file whose rows belong to another partition's HEALPix range (a mis-assembled download):
    its sources are flagged OUTSIDE_PARTITION_RANGE, and where the right partition has them too, the
    misplaced copies leave the catalogue for _rejected/; every source is in the catalogue once."""
    inp = tmp_path / "in"
    _copy_sky(sky_dir, inp, parts=PARTS[:1])
    for kind in ("XpContinuousMeanSpectrum", "GaiaSource"):  # the same rows under another range
        shutil.copy(os.path.join(sky_dir, f"{kind}_{PARTS[0]}.csv.gz"), inp / f"{kind}_003112-006223.csv.gz")
    out = tmp_path / "catalog"
    s = run_inference(
        InferenceConfig(input=[str(inp)], model=tiny_sky_model, output=str(out), checksum=False)
    )
    assert s.ok and s.duplicates["sources"] == 1000
    assert s.duplicates["moved_to_rejected"] == {"003112-006223": 1000}
    ids = _input_ids(inp / f"XpContinuousMeanSpectrum_{PARTS[0]}.csv.gz")
    cat = pq.read_table(out, columns=["source_id"]).column("source_id").to_numpy()
    assert np.array_equal(np.sort(cat), np.sort(ids))
    rejected = pq.read_table(out / "_rejected" / "003112-006223.parquet")
    assert rejected.num_rows == 1000
    flags = rejected.column("flags").to_numpy()
    assert (flags & int(SourceFlag.OUTSIDE_PARTITION_RANGE)).all() and (
        flags & int(SourceFlag.DUPLICATE_SOURCE)
    ).all()
    assert set(rejected.column("reason").to_pylist()) == {
        f"duplicate: source_id also in partition {PARTS[0]}"
    }
    record = json.loads((out / "_manifest" / "003112-006223.json").read_text())
    assert record["output_rows"] == 0 and record["rejected_rows"] == 1000
    assert record["problems"]["outside_partition_range"] == 1000


def test_gpu_configuration_runs_on_a_declared_gpu(ray_local, tmp_path, sky_dir, tiny_sky_model):
    """The job's GPU configuration (configs/infer/gpu.yaml) on a local cluster that declares one GPU,
    the model on the CPU: read and predict run as separate Ray operators, the actor pool follows the
    GPU count, the catalogue equals the CPU path's, and the driver never holds more than a few
    partitions' rows (six partitions here, three of them copies under other HEALPix ranges)."""
    import subprocess
    import sys

    import yaml

    all_parts = ("000000-003111", "245760-248871", "688128-691239")
    inp = tmp_path / "in"
    _copy_sky(sky_dir, inp, parts=all_parts)
    for p, copy in zip(all_parts, ("003112-006223", "248872-251983", "691240-694351"), strict=True):
        for kind in ("XpContinuousMeanSpectrum", "GaiaSource"):
            shutil.copy(inp / f"{kind}_{p}.csv.gz", inp / f"{kind}_{copy}.csv.gz")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    gpu_cfg = yaml.safe_load(open(os.path.join(repo, "configs", "infer", "gpu.yaml")))
    gpu_cfg.update(
        model=tiny_sky_model, num_gpus=1, num_cpus=4, device="cpu", dtype="float32", chunk_rows=250,
        checksum=False, labels=["teff", "logg", "m_h", "mass", "age"],
    )  # fmt: skip
    cfg_path = tmp_path / "gpu.yaml"
    cfg_path.write_text(yaml.safe_dump(gpu_cfg))
    out_gpu = tmp_path / "gpu_catalog"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    r = subprocess.run(
        [sys.executable, os.path.join(repo, "jobs", "infer_gaia.py"), "--config", str(cfg_path),
         "--input", str(inp), "--output", str(out_gpu)],
        cwd=repo, env=env, capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    s = json.loads((out_gpu / "_SUMMARY.json").read_text())
    pool = s["predictor"]
    assert (pool["actors"], pool["gpus_per_actor"], pool["cpus_per_actor"]) == (1, 1.0, 2.0), pool
    # the GPU actors' batch size is chosen per device (here: calibrated, the model on the CPU)
    assert pool["batch_size"] and pool["stage_seconds"]["model"] > 0 and pool["model_stars_per_s"] > 0
    ops = s["ray_operators"]
    assert "MapBatches(featurize_partition)" in ops and "MapBatches(CatalogPredictor)" in ops, ops
    assert not [o for o in ops if "->" in o and "CatalogPredictor" in o], ops
    # the copies set aside; sources_written counts the catalogue after that (review 19: it said 6000)
    assert s["sources_written"] == 3000 and s["duplicates"]["sources"] == 3000
    assert 0 < s["peak_buffered_rows"] <= 3000, s["peak_buffered_rows"]

    # the CPU path on the same stars gives the same catalogue
    cpu_in = tmp_path / "cpu_in"
    _copy_sky(sky_dir, cpu_in, parts=all_parts)
    out_cpu = tmp_path / "cpu_catalog"
    c = run_inference(
        InferenceConfig(input=[str(cpu_in)], model=tiny_sky_model, output=str(out_cpu), checksum=False)
    )
    assert c.ok and c.ray_operators == [
        "FromItems",
        "MapBatches(featurize_partition)->MapBatches(CatalogPredictor)",
    ]
    cols = ["source_id", "teff", "logg", "m_h", "mass", "age", "teff_error", "distance_pc", "flags"]
    for p in all_parts:
        g = pq.read_table(out_gpu / f"{p}.parquet", columns=cols).to_pandas()
        k = pq.read_table(out_cpu / f"{p}.parquet", columns=cols).to_pandas()
        assert (g["source_id"].to_numpy() == k["source_id"].to_numpy()).all()
        assert (g["flags"].to_numpy() == k["flags"].to_numpy()).all()
        for col in cols[1:-1]:
            np.testing.assert_allclose(g[col], k[col], rtol=1e-5, equal_nan=True, err_msg=f"{p} {col}")
