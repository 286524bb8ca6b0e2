"""`training/train.py` under Ray Train (one TorchTrainer worker on a local cluster) and without Ray, on
the same toy data; the Predictor as a Ray Data batch UDF."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _paths import load_script

from xpengine.train.toy import write_toy_training_set

ROOT = Path(__file__).resolve().parents[1]


def _train_script():
    return load_script("training/train.py", "xpengine_training_train")


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    return write_toy_training_set(tmp_path_factory.mktemp("ray") / "toy.parquet", 300, seed=3)


def _metrics(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def direct_run(toy, tmp_path_factory) -> Path:
    """`training/train.py --no-ray`, tiny preset, 2 epochs."""
    run = tmp_path_factory.mktemp("direct") / "run"
    rc = _train_script().main(
        [
            "--config",
            str(ROOT / "configs/train/tiny.yaml"),
            "--no-ray",
            f"data_path={toy}",
            f"output_dir={run}",
            "epochs=2",
        ]
    )
    assert rc == 0
    return run


def test_no_ray_entry_point(direct_run):
    assert [m["epoch"] for m in _metrics(direct_run)] == [1, 2]
    assert "val_sigma_teff" in _metrics(direct_run)[-1]
    assert (direct_run / "model" / "model.safetensors").is_file()
    assert (direct_run / "checkpoints" / "epoch_000002" / "train_state.json").is_file()


@pytest.mark.slow
@pytest.mark.ray
def test_ray_train_smoke_matches_direct_run(ray_local, toy, direct_run, tmp_path):
    args = ["--config", str(ROOT / "configs/train/tiny.yaml"), f"data_path={toy}", "epochs=2"]
    assert _train_script().main([*args, f"output_dir={tmp_path / 'ray'}"]) == 0
    ray_m, direct_m = _metrics(tmp_path / "ray"), _metrics(direct_run)
    assert [m["epoch"] for m in ray_m] == [1, 2]
    for a, b in zip(ray_m, direct_m, strict=True):  # same seeded loop; thread counts may differ
        assert a["lr"] == b["lr"]
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
    assert ray_m[-1]["val_sigma_teff"] == pytest.approx(direct_m[-1]["val_sigma_teff"], rel=1e-3)
    assert (tmp_path / "ray" / "model" / "model.safetensors").is_file()
    # Ray's run storage received the reported checkpoints (epoch 2 at least).
    stored = list((tmp_path / "ray" / "ray").rglob("model.safetensors"))
    assert stored, "no checkpoint reached Ray storage"
    # the worker took the cluster's CPUs (the session cluster's 2), hence as many torch threads: until
    # session 28 it had one CPU, so one thread on any machine
    import ray

    state = json.loads((tmp_path / "ray" / "checkpoints" / "epoch_000002" / "train_state.json").read_text())
    cpus = int(ray.cluster_resources()["CPU"])
    threads = state["extra"]["threads"]
    assert threads["torch_num_threads"] == cpus and threads["OMP_NUM_THREADS"] == str(cpus)


@pytest.mark.slow
@pytest.mark.ray
def test_predictor_as_ray_data_udf(ray_local, toy, direct_run):
    import ray.data

    from xpengine.datasets.schema import read_training_set
    from xpengine.inference.predictor import Predictor

    model = direct_run / "model"
    arrays = read_training_set(str(toy))
    ds = ray.data.from_items(
        [
            {"source_id": int(s), "values": v}
            for s, v in zip(arrays.source_id[:64], arrays.values[:64], strict=True)
        ]
    )
    out = ds.map_batches(
        Predictor,
        fn_constructor_kwargs={"source": str(model), "device": "cpu", "request": ["teff", "ln_age"]},
        batch_size=16,
        batch_format="numpy",
        concurrency=1,
    ).take_all()
    got = {r["source_id"]: r for r in out}
    ref = Predictor.load(model, device="cpu", request=["teff", "ln_age"]).predict(arrays.values[:64])
    assert len(got) == 64
    for i, sid in enumerate(arrays.source_id[:64]):
        assert got[int(sid)]["age"] == pytest.approx(ref["age"][i], rel=1e-5, nan_ok=True)
        assert np.isfinite(got[int(sid)]["teff_error"])
