"""What a run resumed in chunks keeps whole: the `init_from` record of its first chunk and the exact
float32 weights it started from, metrics.jsonl without repeated epochs, refusal of a fresh run into a used
directory, absolute paths for a Ray Train worker, real checkpoint directories in an unpacked lease run,
and the lease data's errors at float16's relative precision."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from _paths import load_script
from _train_toy import (
    ROOT,
    arrays,
    epochs,
    toy_config,
    toy_set,  # noqa: F401 (the `toy` fixture)
)
from safetensors.torch import load_file

from xpengine.model.checkpoint import load_checkpoint
from xpengine.train.config import TrainConfig
from xpengine.train.loop import train
from xpengine.train.run_files import prune_checkpoints
from xpengine.train.toy import write_toy_training_set

pytestmark = pytest.mark.usefixtures("one_torch_thread")

_arrays, _epochs = arrays, epochs


def _config(path: Path, **kw) -> TrainConfig:
    return toy_config(path, **kw)


def _provenance(run: Path) -> dict:
    return json.loads((run / "model" / "provenance.json").read_text())


def test_a_resumed_run_keeps_the_init_from_record_of_its_first_chunk(toy, tmp_path, monkeypatch):
    """The init_from checkpoint moves on (or is deleted) between two chunks of a run started from it: the
    resumed chunks record the checkpoint the run started from, and need it no more. The truncate_counts
    record is carried on too while the table is unchanged (here named by another path)."""
    tr, va = _arrays(toy)
    monkeypatch.chdir(tmp_path)
    Path("counts.csv").write_text("bp_n_relevant_bases,rp_n_relevant_bases,count\n1,3,5\n2,1,1\n")
    a, b = tmp_path / "A", tmp_path / "B"
    train(_config(toy, epochs=1, checkpoint_every=1), tr, va, output_dir=a)
    cfg = _config(toy, epochs=1, init_from=str(a), truncate_fraction=0.5, truncate_counts="counts.csv")
    train(cfg, tr, va, output_dir=b)
    first = _provenance(b)
    assert first["initialised_from"]["checkpoint"] == str(a / "checkpoints" / "epoch_000001")
    assert first["truncate_counts"]["path"] == "counts.csv"

    train(_config(toy, epochs=2, checkpoint_every=1), tr, va, output_dir=a, resume_from=a)  # A moves on
    later = dataclasses.replace(cfg, epochs=2, truncate_counts=str(tmp_path / "counts.csv"))
    train(later, tr, va, output_dir=b, resume_from=b)
    assert _provenance(b)["initialised_from"] == first["initialised_from"]
    assert _provenance(b)["truncate_counts"] == first["truncate_counts"]

    import shutil

    shutil.rmtree(a)  # the init checkpoint gone: a resume does not need it
    train(dataclasses.replace(later, epochs=3), tr, va, output_dir=b, resume_from=b)
    assert _provenance(b)["initialised_from"] == first["initialised_from"]


def test_a_changed_truncation_table_is_recorded_where_the_checkpoint_records_no_settings(
    toy, tmp_path, caplog
):
    """check_resume refuses another truncate_counts table where the checkpoint records its training
    configuration (every checkpoint the loop writes). One whose config.json records none (hand-made or
    edited) resumes unchecked, with a warning: the provenance then keeps the table's earlier record
    (`before_resume`) beside the new one, and says so in the log."""
    tr, va = _arrays(toy)
    counts = tmp_path / "counts.csv"
    counts.write_text("bp_n_relevant_bases,rp_n_relevant_bases,count\n1,3,5\n2,1,1\n")
    cfg = _config(toy, epochs=1, checkpoint_every=1, truncate_fraction=0.5, truncate_counts=str(counts))
    run = tmp_path / "run"
    train(cfg, tr, va, output_dir=run)
    first = _provenance(run)["truncate_counts"]
    config_json = run / "checkpoints" / "epoch_000001" / "config.json"
    config_json.write_text(
        json.dumps({k: v for k, v in json.loads(config_json.read_text()).items() if k != "train"})
    )
    counts.write_text("bp_n_relevant_bases,rp_n_relevant_bases,count\n1,3,5\n2,1,2\n")  # the table changed
    with caplog.at_level("WARNING", logger="xpengine.train.loop"):
        train(dataclasses.replace(cfg, epochs=2), tr, va, output_dir=run, resume_from=run)
    assert "records no training configuration: the resumed settings are not checked" in caplog.text
    assert f"truncate_counts {counts} changed since the resumed checkpoint" in caplog.text
    record = _provenance(run)["truncate_counts"]
    assert record["before_resume"] == first and record["sha256"] != first["sha256"]


def test_init_from_starts_from_the_float32_weights_of_a_float16_checkpoint(toy, tmp_path):
    """A checkpoint saved with float16 weights keeps the exact float32 model state in its training
    state: a run initialised from it starts from those (with a vanishing learning rate, its float32
    weights stay them), not from the rounded float16 copy."""
    tr, va = _arrays(toy)
    a = train(_config(toy, epochs=1, weights_dtype="float16"), tr, va, output_dir=tmp_path / "A")
    exact = {
        k[len("model.") :]: v
        for k, v in load_file(str(a.model_dir / "train_state.safetensors")).items()
        if k.startswith("model.")
    }
    cfg = _config(toy, epochs=1, lr=1e-30, eta_min=0.0, weight_decay=0.0, init_from=str(a.model_dir))
    b = train(cfg, tr, va, output_dir=tmp_path / "B")
    w = load_checkpoint(b.model_dir).model.state_dict()
    assert exact and all(torch.equal(w[k], exact[k]) for k in exact)
    assert _provenance(tmp_path / "B")["initialised_from"]["weights_from"].startswith("train_state")


def test_a_run_stopped_between_checkpoints_logs_each_epoch_once(toy, tmp_path):
    """Stopped after logging epoch 3 (its last checkpoint: epoch 2), the resumed run runs epoch 3
    again: metrics.jsonl keeps one record per epoch. A line cut short by the stop is dropped."""
    tr, va = _arrays(toy)
    cfg = _config(toy, epochs=4, checkpoint_every=2, log_every=1)
    run = tmp_path / "run"

    class Stopped(Exception):
        pass

    def report(metrics, saved):
        if metrics["epoch"] == 3:
            with (run / "metrics.jsonl").open("a") as fh:
                fh.write('{"epoch": 3, "lr"')  # killed while writing a further line
            raise Stopped

    with pytest.raises(Stopped):
        train(cfg, tr, va, output_dir=run, report_fn=report)
    assert (run / "metrics.jsonl").read_text().startswith('{"epoch": 1,')
    assert (run / "metrics.jsonl").read_text().count("\n") == 3  # epochs 1-3, then the cut line
    train(cfg, tr, va, output_dir=run, resume_from=run)
    assert _epochs(run) == [1, 2, 3, 4]


def test_a_fresh_run_into_a_directory_holding_a_run_is_refused(toy, tmp_path, capsys):
    tr, va = _arrays(toy)
    run = tmp_path / "run"
    train(_config(toy, epochs=2), tr, va, output_dir=run)
    before = sorted(p.name for p in (run / "checkpoints").iterdir()), _epochs(run)
    with pytest.raises(FileExistsError, match=r"already holds a training run.*--resume"):
        train(_config(toy, epochs=1, checkpoint_every=1, seed=5), tr, va, output_dir=run)
    assert (sorted(p.name for p in (run / "checkpoints").iterdir()), _epochs(run)) == before

    train_script = load_script("training/train.py", "train_script_resume_integrity")
    args = ["--config", str(ROOT / "configs/train/tiny.yaml"), "--no-ray", f"data_path={toy}"]
    with pytest.raises(SystemExit) as exc:
        train_script.main([*args, f"output_dir={run}", "epochs=1"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert str(run) in err and "--resume" in err
    assert _epochs(run) == before[1]


def test_the_ray_worker_gets_absolute_init_from_and_truncate_counts(toy, tmp_path, monkeypatch):
    """Ray Train (2.60) runs the worker in its own session directory: the paths a configuration gives
    relative to the launching directory reach it absolute. Here `run_ray_training` hands its loop
    configuration to a stand-in trainer that runs the real worker function elsewhere."""
    import os

    import ray
    import ray.train
    import ray.train.torch

    from xpengine.train import loop, ray_train

    tr, va = _arrays(toy)
    monkeypatch.chdir(tmp_path)
    Path("counts.csv").write_text("bp_n_relevant_bases,rp_n_relevant_bases,count\n1,3,5\n2,1,1\n")
    train(_config(toy, epochs=1, checkpoint_every=1), tr, va, output_dir=tmp_path / "A")
    elsewhere = tmp_path / "session"
    elsewhere.mkdir()

    class Trainer:
        def __init__(self, fn, *, train_loop_config, **kw):
            self.fn, self.loop_config = fn, train_loop_config

        def fit(self):
            os.chdir(elsewhere)  # what Ray's WorkingDirectorySetupCallback does to the worker
            self.fn(self.loop_config)
            return self.loop_config

    monkeypatch.setattr(ray.train.torch, "TorchTrainer", Trainer)
    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    monkeypatch.setattr(ray, "cluster_resources", lambda: {})
    monkeypatch.setattr(ray, "nodes", lambda: [])  # (the worker's CPUs: `worker_cpus`; alone, no cluster)
    monkeypatch.setattr(ray.train, "report", lambda *a, **k: None)
    monkeypatch.setattr(loop, "hold_freed_memory", lambda: False)  # not in the test process
    cfg = _config(toy, epochs=1, init_from="A", truncate_fraction=0.5, truncate_counts="counts.csv")
    got = ray_train.run_ray_training(cfg, output_dir="out")
    assert got["train"]["init_from"] == str(tmp_path / "A")
    assert got["train"]["truncate_counts"] == str(tmp_path / "counts.csv")
    assert (tmp_path / "out" / "model" / "model.safetensors").is_file()
    # a bundled model's name stays a name
    bundled = dataclasses.replace(cfg, init_from="gaia-xp")
    assert ray_train._absolute_paths(bundled.to_dict())["init_from"] == "gaia-xp"


def test_prune_unlinks_a_checkpoint_that_is_a_symlink(tmp_path):
    ckpts = tmp_path / "checkpoints"
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "f").write_text("x")
    ckpts.mkdir()
    (ckpts / "epoch_000001").symlink_to(Path("..") / "model")
    (ckpts / "epoch_000002").mkdir()
    prune_checkpoints(ckpts, 1)
    assert [p.name for p in ckpts.iterdir()] == ["epoch_000002"]
    assert (tmp_path / "model" / "f").read_text() == "x"


def test_an_unpacked_lease_run_resumed_in_place_keeps_real_checkpoints(toy, tmp_path):
    """A run returned from a lent GPU, unpacked and resumed in its own directory twice (keeping one
    checkpoint): the same weights as an uninterrupted run, and checkpoints/ holds the last epoch only, as
    a real directory (a link to model/ would neither be pruned nor keep its epoch)."""
    lease_return = load_script("training/lease_return.py", "lease_return_resume_integrity")
    tr, va = _arrays(toy)
    cfg = _config(toy, epochs=4, weights_dtype="float16", checkpoint_every=1, keep_checkpoints=1)
    full = train(cfg, tr, va, output_dir=tmp_path / "full")
    train(dataclasses.replace(cfg, epochs=2), tr, va, output_dir=tmp_path / "gpu")
    lease_return.pack(tmp_path / "gpu", tmp_path / "parts", max_files=8, part_bytes=40_000)
    back = tmp_path / "back"
    lease_return.unpack(tmp_path / "parts", back)
    assert not (back / "checkpoints" / "epoch_000002").is_symlink()
    assert (back / "checkpoints" / "epoch_000002" / "model.safetensors").is_file()
    train(dataclasses.replace(cfg, epochs=3), tr, va, output_dir=back, resume_from=back)
    res = train(cfg, tr, va, output_dir=back, resume_from=back)
    wa, wb = (load_checkpoint(r.model_dir).model.state_dict() for r in (full, res))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert [p.name for p in (back / "checkpoints").iterdir()] == ["epoch_000004"]
    assert not (back / "checkpoints" / "epoch_000004").is_symlink()
    assert _epochs(back) == [1, 2, 3, 4]


def test_lease_data_keeps_small_errors_at_float16_relative_precision(tmp_path):
    """XP coefficient errors mostly lie below float16's smallest normal (6.1e-5): packed for a lease they
    keep float16's relative precision (scaled by a power of two per column), and a column spanning more
    decades than float16 holds travels as float32."""
    lease_data = load_script("training/lease_data.py", "lease_data_resume_integrity")
    src = write_toy_training_set(tmp_path / "toy.parquet", 300, seed=4)
    t = pq.read_table(src)
    rng = np.random.default_rng(0)
    n = t.num_rows
    small = (10 ** rng.uniform(-8, -4, n)).astype(np.float32)  # 1e-8 .. 1e-4
    wide = (10 ** rng.uniform(-30, 0, n)).astype(np.float32)  # 30 decades
    for col, e in (("bp1_error", small), ("rp1_error", wide)):
        t = t.set_column(t.column_names.index(col), col, pa.array(e))
    pq.write_table(t, tmp_path / "src.parquet")
    info = lease_data.pack(
        str(tmp_path / "src.parquet"), str(tmp_path / "p.parquet"), ["bp0..2", "rp0..2"], 10, source_ids=True
    )
    assert info["float32_errors"] == ["rp1"]
    schema = pq.read_schema(tmp_path / "p.parquet")
    assert schema.field("bp1_error").type == pa.float16() and schema.field("rp1_error").type == pa.float32()
    lease_data.unpack(str(tmp_path / "p.parquet"), None, str(tmp_path / "m.parquet"))
    back = pq.read_table(tmp_path / "m.parquet")
    order = {s: i for i, s in enumerate(t["source_id"].to_pylist())}
    rows = np.array([order[s] for s in back["source_id"].to_pylist()])
    for col in (f"{b}{i}_error" for b in ("bp", "rp") for i in range(3)):
        got = back[col].to_numpy(zero_copy_only=False)
        want = t[col].to_numpy(zero_copy_only=False)[rows]
        np.testing.assert_allclose(got, want, rtol=2.0**-11, err_msg=col)
