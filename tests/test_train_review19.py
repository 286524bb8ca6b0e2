"""Review 19 of the training code: what a run resumed in chunks must refuse, carry on or warn about so
that it stays one run (F1 the trajectory-defining settings and a time budget's epochs, F2 the data file,
F3 the torch thread count, F4 the metrics line of the last checkpointed epoch), and the smaller findings
on the lease file (F5 its record after unpacking, F6 values beyond float16's range) and the epoch pool
configuration (F7)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from _train_toy import (
    LABELS,
    ROOT,
    arrays,
    epochs,
    toy_config,
    toy_set,  # noqa: F401 (the `toy` fixture)
)

from xpengine.train.config import TrainConfig
from xpengine.train.loop import train
from xpengine.train.toy import write_toy_training_set

pytestmark = pytest.mark.usefixtures("one_torch_thread")

_arrays, _epochs = arrays, epochs


def _config(path: Path, **kw) -> TrainConfig:
    """`toy_config` with a checkpoint every epoch."""
    return toy_config(path, **{"checkpoint_every": 1, **kw})


# --- F4: the metrics line is written before the checkpoint --------------------------------------------


def test_a_stop_right_after_a_checkpoint_keeps_its_epochs_metrics(toy, tmp_path, monkeypatch):
    """A stop after epoch 2's checkpoint is written (here: in the pruning that follows it) but before
    anything else: metrics.jsonl already holds epoch 2's line, so the resumed run (after epoch 2) keeps
    one record of every epoch. Written after the checkpoint, that line was lost for good."""
    from xpengine.train import loop

    tr, va = _arrays(toy)
    cfg = _config(toy, epochs=3)
    run = tmp_path / "run"
    real_prune = loop.prune_checkpoints

    class Stopped(Exception):
        pass

    def prune_then_stop(directory, keep):
        real_prune(directory, keep)
        if (directory / "epoch_000002").is_dir():
            raise Stopped

    monkeypatch.setattr(loop, "prune_checkpoints", prune_then_stop)
    with pytest.raises(Stopped):
        train(cfg, tr, va, output_dir=run)
    monkeypatch.setattr(loop, "prune_checkpoints", real_prune)
    assert _epochs(run) == [1, 2]
    train(cfg, tr, va, output_dir=run, resume_from=run)
    assert _epochs(run) == [1, 2, 3]


# --- F6, F5: the lease file ---------------------------------------------------------------------------


def _lease_data():
    from _paths import load_script

    return load_script("training/lease_data.py", "lease_data_review19")


def test_lease_values_beyond_float16s_range_travel_as_float32(tmp_path):
    """A column with a finite value beyond float16's range (|v| > 65504) would become ±inf as float16,
    which training reads as missing; it travels as float32 and comes back exactly."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    lease_data = _lease_data()
    src = write_toy_training_set(tmp_path / "toy.parquet", 300, seed=4)
    t = pq.read_table(src)
    teff = t["teff"].to_numpy(zero_copy_only=False).astype(np.float64).copy()
    rows = np.flatnonzero(np.isfinite(teff))[:3]
    teff[rows] = [70000.0, 120000.0, -80000.0]
    t = t.set_column(t.column_names.index("teff"), "teff", pa.array(teff.astype(np.float32)))
    pq.write_table(t, tmp_path / "src.parquet")
    info = lease_data.pack(
        str(tmp_path / "src.parquet"), str(tmp_path / "p.parquet"), ["bp0..2", "teff"], 10, source_ids=True
    )
    assert "teff" in info["float32_values"]
    lease_data.unpack(str(tmp_path / "p.parquet"), None, str(tmp_path / "m.parquet"))
    back = pq.read_table(tmp_path / "m.parquet")
    order = {s: i for i, s in enumerate(t["source_id"].to_pylist())}
    idx = np.array([order[s] for s in back["source_id"].to_pylist()])
    got, want = back["teff"].to_numpy(zero_copy_only=False), teff.astype(np.float32)[idx]
    np.testing.assert_array_equal(got, want)  # NaN where missing, the large values exact
    assert {70000.0, 120000.0, -80000.0} <= set(got[np.isfinite(got)].tolist())


def test_a_model_trained_on_an_unpacked_lease_file_records_the_lease(toy, tmp_path):
    """Unpacking keeps the lease record (tokens dropped, float16 values, simulated val rows sampled) in the
    file's dataset provenance, so a model trained on the unpacked file says its data were a
    lease's, not the source file the record names."""
    import pyarrow.parquet as pq

    lease_data = _lease_data()
    lease_data.pack(str(toy), str(tmp_path / "data.parquet"), ["bp0..2", "rp0..2", *LABELS], 10)
    lease_data.unpack(str(tmp_path / "data.parquet"), None, str(tmp_path / "mixed.parquet"))
    # the decoding key goes (the file is decoded; unpacking it again once decoded its errors twice)
    assert lease_data.PACK_META not in pq.ParquetFile(tmp_path / "mixed.parquet").schema_arrow.metadata
    with pytest.raises(ValueError, match="unpacked lease file"):
        lease_data.unpack(str(tmp_path / "mixed.parquet"), None, str(tmp_path / "again.parquet"))
    tr, va = _arrays(tmp_path / "mixed.parquet")
    train(_config(tmp_path / "mixed.parquet", epochs=1), tr, va, output_dir=tmp_path / "run")
    prov = json.loads((tmp_path / "run" / "model" / "provenance.json").read_text())
    record = prov["data"]["dataset_provenance"]["lease_pack"]
    assert record["source"] == str(toy) and record["packed_file"] == str(tmp_path / "data.parquet")
    assert record["tokens"] == ["bp0", "bp1", "bp2", "rp0", "rp1", "rp2", *LABELS]


# --- F7: an epoch pool fraction without pool tokens ---------------------------------------------------


def test_an_epoch_pool_fraction_without_pool_tokens_is_a_config_problem():
    """epoch_pool_fraction < 1 without epoch_pool_tokens forms no pool, so it did nothing, silently."""
    base = {"model": "tiny", "epoch_pool_fraction": 0.3}
    with pytest.raises(ValueError, match=r"epoch_pool_fraction 0.3 < 1 needs epoch_pool_tokens"):
        TrainConfig.from_dict({**base, "epoch_pool_tokens": []})
    assert TrainConfig.from_dict({**base, "epoch_pool_tokens": ["mass"]}).epoch_pool_fraction == 0.3
    assert TrainConfig.from_dict({"model": "tiny", "epoch_pool_tokens": []}).epoch_pool_fraction == 1.0


# --- F3: the torch thread count -------------------------------------------------------------------------


def test_a_cpu_resume_with_another_thread_count_warns(toy, tmp_path, caplog):
    """A CPU kernel splits its sums by thread, so a chunk resumed with another torch thread count is not
    bit for bit an uninterrupted run: the count is recorded in the training state and a resume with
    another one says so; with the same count, nothing is said."""
    import torch

    tr, va = _arrays(toy)
    run = tmp_path / "run"
    train(_config(toy, epochs=1), tr, va, output_dir=run)
    state = json.loads((run / "model" / "train_state.json").read_text())
    assert state["extra"]["threads"]["torch_num_threads"] == torch.get_num_threads() == 1
    with caplog.at_level("WARNING", logger="xpengine.train.loop"):
        train(_config(toy, epochs=2), tr, va, output_dir=run, resume_from=run)
    assert "thread" not in caplog.text
    torch.set_num_threads(2)
    try:
        with caplog.at_level("WARNING", logger="xpengine.train.loop"):
            train(_config(toy, epochs=3), tr, va, output_dir=run, resume_from=run)
    finally:
        torch.set_num_threads(1)
    assert "bit-exact resume needs the same thread count: 1 then, 2 now" in caplog.text


# --- F1: the settings that define the trajectory, and a time budget's epochs ---------------------------


def test_every_train_config_key_is_either_trajectory_or_free_on_resume():
    """A new TrainConfig key must be classified: kept by a resume (trajectory) or free to change."""
    from dataclasses import fields

    from xpengine.train.resume_checks import FREE_KEYS, TRAJECTORY_KEYS

    names = {f.name for f in fields(TrainConfig)}
    assert not set(TRAJECTORY_KEYS) & set(FREE_KEYS)
    assert set(TRAJECTORY_KEYS) | set(FREE_KEYS) == names


def test_a_resume_that_changes_trajectory_settings_is_refused_listing_each_key(toy, tmp_path):
    """A resume restores the checkpoint's optimizer and schedule (their lr, weight decay, T_0, eta_min) and
    sampling: a change to any of them, or to the batch, masking, seed..., would not take effect or would bend
    the run midway, while config.json recorded it. Refused in one error listing each key's two values, with
    nothing written; bookkeeping keys (epochs growing, frequencies, weights dtype) may change, and
    config.json records what was in effect."""
    from xpengine.train.resume_checks import ResumeMismatch

    tr, va = _arrays(toy)
    run = tmp_path / "run"
    counts = tmp_path / "counts.csv"
    counts.write_text("bp_n_relevant_bases,rp_n_relevant_bases,count\n1,3,5\n2,1,1\n")
    cfg = _config(toy, epochs=1, truncate_fraction=0.5, truncate_counts=str(counts))
    train(cfg, tr, va, output_dir=run)
    before = sorted(p.name for p in (run / "checkpoints").iterdir()), _epochs(run)
    changed = dataclasses.replace(
        cfg, epochs=2, lr=0.01, weight_decay=0.1, scheduler_t0=12, eta_min=1e-3, batch_size=32, seed=7
    )
    with pytest.raises(ResumeMismatch) as exc:
        train(changed, tr, va, output_dir=run, resume_from=run)
    msg = str(exc.value)
    assert str(run / "checkpoints" / "epoch_000001") in msg
    for line in (
        "lr: 0.003 (checkpoint) -> 0.01 (now)",
        "weight_decay: 0.01 (checkpoint) -> 0.1 (now)",
        "scheduler_t0: 4 (checkpoint) -> 12 (now)",
        "eta_min: 1e-10 (checkpoint) -> 0.001 (now)",
        "batch_size: 64 (checkpoint) -> 32 (now)",
        "seed: 0 (checkpoint) -> 7 (now)",
    ):
        assert line in msg
    assert "epochs" not in msg.replace("epoch_000001", "")
    assert (sorted(p.name for p in (run / "checkpoints").iterdir()), _epochs(run)) == before

    counts.write_text("bp_n_relevant_bases,rp_n_relevant_bases,count\n1,3,5\n2,1,2\n")  # the table changed
    with pytest.raises(
        ResumeMismatch,
        match=r"truncate_counts: '.*counts.csv \(sha256 [0-9a-f]{64}\)' \(checkpoint\) -> '.*counts.csv",
    ):
        train(dataclasses.replace(cfg, epochs=2), tr, va, output_dir=run, resume_from=run)
    counts.write_text("bp_n_relevant_bases,rp_n_relevant_bases,count\n1,3,5\n2,1,1\n")

    free = dataclasses.replace(
        cfg,
        epochs=3,
        val_every=1,
        checkpoint_every=2,
        keep_checkpoints=3,
        log_every=2,
        weights_dtype="float16",
        init_from=str(tmp_path / "ignored"),  # a resume ignores it: config.json keeps the run's (none)
    )
    train(free, tr, va, output_dir=run, resume_from=run)
    written = json.loads((run / "model" / "config.json").read_text())["train"]
    assert {k: written[k] for k in ("epochs", "lr", "scheduler_t0", "val_every", "weights_dtype")} == {
        "epochs": 3,
        "lr": 3e-3,
        "scheduler_t0": 4,
        "val_every": 1,
        "weights_dtype": "float16",
    }
    assert written["init_from"] is None


def _train_script():
    from _paths import load_script

    return load_script("training/train.py", "train_script_review19")


def test_a_budgeted_run_resumed_with_its_command_ends_at_its_budget(toy, tmp_path):
    """A --time-budget run trains N epochs as one cosine cycle (epochs = scheduler_t0 = N, not the YAML's
    4). Stopped after epoch 1 and resumed with its YAML's command (and --resume), it takes N from its
    checkpoint: it ends at epoch N with the weights of the uninterrupted run, and config.json records N.
    The budgeted run is made here as `fit_epochs_to_budget` makes it (its epochs replaced, time_budget.json
    written), with N = 3."""
    import shutil

    import torch

    from xpengine.model.checkpoint import load_checkpoint

    script = _train_script()
    yaml = ["--config", str(ROOT / "configs/train/tiny.yaml"), "--no-ray", f"data_path={toy}"]
    keep = ["checkpoint_every=1", "keep_checkpoints=5"]
    a, b = tmp_path / "A", tmp_path / "B"
    assert script.main([*yaml, f"output_dir={a}", "epochs=3", "scheduler_t0=3", *keep]) == 0
    (a / "time_budget.json").write_text(json.dumps({"budget_s": 10.0, "epochs": 3, "yaml_epochs": 4}))
    (b / "checkpoints").mkdir(parents=True)
    shutil.copytree(a / "checkpoints" / "epoch_000001", b / "checkpoints" / "epoch_000001")
    shutil.copy(a / "time_budget.json", b)
    (b / "metrics.jsonl").write_text((a / "metrics.jsonl").read_text().splitlines(keepends=True)[0])

    assert script.main([*yaml, f"output_dir={b}", *keep, "--resume", str(b)]) == 0
    assert _epochs(b) == [1, 2, 3]
    written = json.loads((b / "model" / "config.json").read_text())["train"]
    assert (written["epochs"], written["scheduler_t0"]) == (3, 3)
    wa, wb = (load_checkpoint(r / "model").model.state_dict() for r in (a, b))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_a_budgeted_resume_keeps_what_the_command_line_sets(toy, tmp_path):
    """epochs / scheduler_t0 given on the command line are the user's (epochs may grow past the budget;
    another scheduler_t0 is then refused by the trajectory check); a run without time_budget.json keeps
    its YAML's values."""
    from xpengine.train.resume_checks import budgeted_resume

    tr, va = _arrays(toy)
    run = tmp_path / "run"
    train(_config(toy, epochs=1, scheduler_t0=3), tr, va, output_dir=run)
    yaml_cfg = _config(toy, epochs=6, scheduler_t0=6, output_dir=str(run))
    assert budgeted_resume(yaml_cfg, run, ()) == yaml_cfg  # not budgeted
    (run / "time_budget.json").write_text(json.dumps({"epochs": 1}))
    got = budgeted_resume(yaml_cfg, run, ())
    assert (got.epochs, got.scheduler_t0) == (1, 3)
    got = budgeted_resume(yaml_cfg, run, {"epochs"})
    assert (got.epochs, got.scheduler_t0) == (6, 3)


# --- F2: the data file --------------------------------------------------------------------------------


def test_a_resume_on_another_data_file_is_refused_unless_allowed(toy, tmp_path, caplog):
    """A resume on a data file with another SHA-256 is refused, naming both files and hashes (the same
    bytes under another path are the same data). Allowed (--allow-data-change), the provenance keeps each
    chunk's data record with its epochs, carried on by later chunks, and says the learned tokens describe
    the current data only."""
    import shutil

    from xpengine.train.resume_checks import ResumeMismatch

    other = write_toy_training_set(tmp_path / "other.parquet", 200, seed=3)
    tr, va = _arrays(toy)
    tr2, va2 = _arrays(other)
    run = tmp_path / "run"
    train(_config(toy, epochs=1), tr, va, output_dir=run)
    with pytest.raises(ResumeMismatch) as exc:
        train(_config(other, epochs=2), tr2, va2, output_dir=run, resume_from=run)
    first = json.loads((run / "model" / "provenance.json").read_text())["data"]
    for part in (str(toy), first["sha256"], str(other), "allow-data-change"):
        assert part in str(exc.value)
    assert _epochs(run) == [1]

    moved = shutil.copy(toy, tmp_path / "moved.parquet")  # the same data elsewhere: a resume goes on
    train(_config(moved, epochs=2), tr, va, output_dir=run, resume_from=run)

    with caplog.at_level("WARNING", logger="xpengine.train.loop"):
        train(_config(other, epochs=3), tr2, va2, output_dir=run, resume_from=run, allow_data_change=True)
    assert (
        "the data file changed" in caplog.text and "learned-token records describe the current" in caplog.text
    )
    train(_config(other, epochs=4), tr2, va2, output_dir=run, resume_from=run)  # unchanged since: no flag
    prov = json.loads((run / "model" / "provenance.json").read_text())
    assert prov["data"]["path"] == str(other) and prov["data"]["from_epoch"] == 3
    [earlier] = prov["earlier_data"]
    assert earlier["path"] == str(moved) and earlier["sha256"] == first["sha256"]
    assert (earlier["from_epoch"], earlier["until_epoch"]) == (1, 2)
    assert "epochs 3 on" in prov["learned_tokens"]["data_note"]


def test_the_cli_refuses_other_data_on_resume_unless_allow_data_change(toy, tmp_path, capsys):
    other = write_toy_training_set(tmp_path / "other.parquet", 200, seed=3)
    script = _train_script()
    yaml = ["--config", str(ROOT / "configs/train/tiny.yaml"), "--no-ray", f"output_dir={tmp_path / 'run'}"]
    assert script.main([*yaml, f"data_path={toy}", "epochs=1"]) == 0
    resume = [*yaml, f"data_path={other}", "epochs=2", "--resume", str(tmp_path / "run")]
    with pytest.raises(SystemExit) as exc:
        script.main(resume)
    assert exc.value.code == 2
    assert "the data file changed" in capsys.readouterr().err
    assert script.main([*resume, "--allow-data-change"]) == 0
    assert _epochs(tmp_path / "run") == [1, 2]


def test_the_same_rows_written_by_another_writer_resume_without_the_flag(toy, tmp_path, caplog):
    """A GPU lease's data is unpacked there and here, perhaps by another pyarrow (its footer names the
    writer): other bytes, the same columns and values. The content digest lets such a resume go on without
    --allow-data-change and records no data change; a changed value is still refused."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from xpengine.train.resume_checks import ResumeMismatch

    tr, va = _arrays(toy)
    run = tmp_path / "run"
    train(_config(toy, epochs=1), tr, va, output_dir=run)
    table = pq.read_table(toy)
    rewritten = tmp_path / "rewritten.parquet"
    pq.write_table(table, rewritten, compression="gzip", row_group_size=37)  # other bytes, same rows
    assert rewritten.read_bytes() != Path(toy).read_bytes()
    with caplog.at_level("INFO", logger="xpengine.train.loop"):
        train(_config(rewritten, epochs=2), tr, va, output_dir=run, resume_from=run)
    assert "the same columns and values: resuming" in caplog.text
    prov = json.loads((run / "model" / "provenance.json").read_text())
    assert "earlier_data" not in prov and prov["data"]["content_sha256"]
    changed = tmp_path / "changed.parquet"
    col = table.column_names.index(next(c for c in table.column_names if table.column(c).type == "float"))
    values = table.column(col).to_numpy(zero_copy_only=False).copy()
    values[0] += 1.0
    pq.write_table(table.set_column(col, table.column_names[col], pa.array(values, pa.float32())), changed)
    with pytest.raises(ResumeMismatch):
        train(_config(changed, epochs=3), tr, va, output_dir=run, resume_from=run)


def test_a_resume_in_another_precision_warns_and_each_epoch_records_its_own(
    toy, tmp_path, caplog, monkeypatch
):
    """`precision: auto` resolves by the machine (fp32 on a CPU, bf16 on an Ampere GPU), so a run resumed
    on another machine goes on in another precision under the same setting (session 31): the checkpoint
    records the chunk's, the resume says so, and every epoch's metrics line names its own."""
    import torch

    from xpengine.train import loop

    tr, va = _arrays(toy)
    run = tmp_path / "run"
    train(_config(toy, epochs=1, precision="auto"), tr, va, output_dir=run)
    state = json.loads((run / "model" / "train_state.json").read_text())
    assert state["extra"]["precision"] == "cpu fp32"
    monkeypatch.setattr(loop, "resolve_precision", lambda spec, device: (torch.bfloat16, False))
    with caplog.at_level("WARNING", logger="xpengine.train.loop"):
        train(_config(toy, epochs=2, precision="auto"), tr, va, output_dir=run, resume_from=run)
    assert "its chunk ran in cpu fp32, this one runs in cpu bf16 (`precision: auto`" in caplog.text
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["precision"] for m in lines] == ["cpu fp32", "cpu bf16"]
    assert json.loads((run / "model" / "train_state.json").read_text())["extra"]["precision"] == "cpu bf16"
