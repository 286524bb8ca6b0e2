"""What a lent GPU's call runs: training/lease_data.py (a training set packed to travel, unpacked there) and
training/train.py --time-budget (as many epochs as fit in the lease)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from _paths import load_script

from xpengine.datasets.schema import read_training_set
from xpengine.model.checkpoint import load_checkpoint
from xpengine.train.toy import write_toy_training_set

lease_data = load_script("training/lease_data.py", "lease_data")
train_script = load_script("training/train.py", "train_script")


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """A toy mixed file: 600 stars, the first half real, the rest simulated (`data_source`), splits
    train / val / test; bp0 given errors so small that float16 would move it by several sigma."""
    tmp = tmp_path_factory.mktemp("lease")
    src = write_toy_training_set(tmp / "toy.parquet", 600, seed=4)
    t = pq.read_table(src)
    n = t.num_rows
    split = np.array(["train", "val", "test"])[np.arange(n) % 3]
    source = np.where(np.arange(n) < n // 2, "real", "synthetic")
    t = t.set_column(t.column_names.index("split"), "split", pa.array(split))
    bp0_err = t.column_names.index("bp0_error")
    t = t.set_column(bp0_err, "bp0_error", pa.array(np.full(n, 1e-6, dtype=np.float32)))
    t = t.append_column("data_source", pa.array(source))
    t = t.append_column("mix_copy", pa.array(np.zeros(n, dtype=np.int32)))
    path = tmp / "mixed.parquet"
    pq.write_table(t, path)
    return path, t


def test_pack_and_unpack_keep_what_training_needs(mixed, tmp_path):
    path, t = mixed
    full = read_training_set(str(path))
    tokens = ["bp0..2", "rp0..2", "teff", "logg"]
    kept = full.vocabulary.select(tokens)
    packed = tmp_path / "data.parquet"
    info = lease_data.pack(str(path), str(packed), tokens, sim_val=20, source_ids=True)
    assert "bp0" in info["float32_values"]  # its errors are too small for float16
    real_p, mixed_p = tmp_path / "real.parquet", tmp_path / "mixed.parquet"
    counts = lease_data.unpack(str(packed), str(real_p), str(mixed_p))

    source = np.asarray(t.column("data_source").to_pylist())
    split = np.asarray(t.column("split").to_pylist())
    sid = np.asarray(t.column("source_id").to_pylist())
    real = read_training_set(str(real_p))
    # every real row, in all three splits; the simulated ones: train, and 20 of the val rows, no test
    assert sorted(real.source_id) == sorted(sid[source == "real"])
    assert set(real.split) == {"train", "val", "test"}
    mix = read_training_set(str(mixed_p))
    assert counts == {"real": len(real.source_id), "mixed": len(mix.source_id)}
    assert set(mix.split) == {"train", "val"}
    sim_rows = set(mix.source_id) - set(sid[source == "real"])
    assert set(sid[(source == "synthetic") & (split == "train")]) <= sim_rows
    assert len(sim_rows) == ((source == "synthetic") & (split == "train")).sum() + 20
    assert not sim_rows & set(sid[split == "test"])
    # the file's whole vocabulary again; the tokens left out are missing in every row
    assert mix.vocabulary.names == full.vocabulary.names
    order = {s: i for i, s in enumerate(full.source_id)}
    rows = np.array([order[s] for s in mix.source_id])
    for name in full.vocabulary.names:
        j = full.vocabulary.index(name)
        got, want, err = mix.values[:, j], full.values[rows, j], full.errors[rows, j]
        if name not in kept:
            assert np.isnan(got).all() and (mix.errors[:, j] == 0).all()
        elif name in info["float32_values"]:
            np.testing.assert_array_equal(got, want)
        else:  # float16: within a tenth of the value's error for 99 % of the rows
            ok = np.isfinite(want) & (err > 0)
            assert np.percentile(np.abs(got[ok] - want[ok]) / err[ok], 99) <= lease_data.MAX_ROUNDING
            np.testing.assert_allclose(mix.errors[:, j], err, rtol=1e-3)
    assert "data_source" in pq.read_schema(mixed_p).names


@pytest.fixture(scope="module")
def rank1(mixed, tmp_path_factory):
    """The toy mixed file with XP errors as the simulator makes them on its simulated rows (one scale per
    star and band times a fixed shape, float32) and independent ones on the real rows, a few NaN or 0."""
    _, t = mixed
    rng = np.random.default_rng(1)
    n = t.num_rows
    sim = np.asarray(t.column("data_source").to_pylist()) == "synthetic"
    for band in ("bp", "rp"):
        cols = [f"{band}{i}_error" for i in range(3)]
        shape = np.exp(rng.normal(0.0, 1.0, len(cols)))
        scale = 10 ** rng.uniform(-7, -3, (n, 1))
        e = np.where(sim[:, None], scale * shape, 10 ** rng.uniform(-7, -3, (n, len(cols)))).astype(
            np.float32
        )
        e[rng.random(e.shape) < 0.03] = np.nan
        e[rng.random(e.shape) < 0.03] = 0.0
        for j, c in enumerate(cols):
            t = t.set_column(t.column_names.index(c), c, pa.array(e[:, j]))
    path = tmp_path_factory.mktemp("rank1") / "mixed.parquet"
    pq.write_table(t, path)
    return path, t


def _columns(path) -> dict[str, np.ndarray]:
    t = pq.read_table(path)
    return {c: t[c].to_numpy(zero_copy_only=False) for c in t.column_names}


def _assert_same(a: dict, b: dict, skip=()) -> None:
    assert list(a) == list(b)
    for c in a:
        if c not in skip:
            np.testing.assert_array_equal(a[c], b[c], err_msg=c)  # NaN == NaN here


def test_simulated_xp_errors_travel_as_exact_residuals(rank1, tmp_path):
    path, t = rank1
    packed = tmp_path / "p.parquet"
    lease_data.pack(str(path), str(packed), ["bp0..2", "rp0..2", "teff"], sim_val=20, source_ids=True)
    p = pq.read_table(packed)
    meta = json.loads(p.schema.metadata[b"xpengine.lease_pack"])
    assert set(meta["xp_error_residuals"]) == {"bp0_error", "rp0_error"}
    assert (
        p.schema.field("bp0_error").type == pa.float16() and p.schema.field("teff_error").type == pa.float16()
    )
    sim = np.asarray(p.column("data_source").to_pylist()) == "synthetic"
    order = {s: i for i, s in enumerate(t["source_id"].to_pylist())}
    rows = np.array([order[s] for s in p["source_id"].to_pylist()])  # the packed rows in the source
    for band in ("bp", "rp"):
        e = np.stack([t[f"{band}{i}_error"].to_numpy(zero_copy_only=False)[rows] for i in range(3)], 1)
        fine = sim & (np.isfinite(e) & (e > 0)).all(axis=1)
        for c in (f"{band}1_error", f"{band}2_error"):
            assert p.schema.field(c).type == pa.int16()
            r = p[c].to_numpy().astype(int)
            assert np.abs(r[fine]).max() <= 1, c  # a simulated row's errors follow from its first one
    # unpacked: the errors the scaled float16 encoding gives, bit for bit (NaN and 0 included)
    lease_data.unpack(str(packed), str(tmp_path / "r.parquet"), str(tmp_path / "m.parquet"))
    at = {s: i for i, s in enumerate(p["source_id"].to_pylist())}
    for part in ("r", "m"):
        back = _columns(tmp_path / f"{part}.parquet")
        idx = np.array([at[s] for s in back["source_id"]])
        for c in (f"{b}{i}_error" for b in ("bp", "rp") for i in range(3)):
            stored, k = lease_data._pack_errors(t[c].to_numpy(zero_copy_only=False)[rows])
            want = stored.astype(np.float32) * np.float32(2.0**-k)
            np.testing.assert_array_equal(back[c], want[idx], err_msg=c)


def test_default_pack_numbers_the_rows_and_changes_nothing_else(rank1, tmp_path):
    path, _ = rank1
    tokens = ["bp0..2", "rp0..2", "bprp", "teff", "logg"]
    for name, ids in (("ids", True), ("rows", False)):
        lease_data.pack(str(path), str(tmp_path / f"{name}.parquet"), tokens, sim_val=20, source_ids=ids)
        lease_data.unpack(str(tmp_path / f"{name}.parquet"), None, str(tmp_path / f"{name}_m.parquet"))
    assert "source_id" not in pq.read_schema(tmp_path / "rows.parquet").names
    a, b = _columns(tmp_path / "ids_m.parquet"), _columns(tmp_path / "rows_m.parquet")
    _assert_same(a, b, skip=("source_id",))
    # the row numbers in the packed file: unique, as read_training_set's callers expect
    assert (np.diff(b["source_id"]) > 0).all() and b["source_id"].min() >= 0
    assert b["source_id"].max() < pq.ParquetFile(tmp_path / "rows.parquet").metadata.num_rows
    assert len(read_training_set(str(tmp_path / "rows_m.parquet")).source_id) == len(b["source_id"])


def test_files_packed_before_the_residual_coding_still_unpack(rank1, tmp_path):
    """A file with plain float16 errors, no residual metadata and no byte-stream-split (as packed before
    the residual coding) unpacks to the same training data."""
    path, _ = rank1
    new = tmp_path / "new.parquet"
    lease_data.pack(str(path), str(new), ["bp0..2", "rp0..2", "teff"], sim_val=20, source_ids=True)
    t = pq.read_table(new)
    meta = dict(t.schema.metadata)
    packed = json.loads(meta[b"xpengine.lease_pack"])
    stored = {c: t[c].to_numpy(zero_copy_only=False) for c in t.column_names}
    sim = np.asarray(t.column("data_source").to_pylist()) == "synthetic"
    scale = packed["error_scale_exponents"]
    decoded = lease_data._decode_residuals(stored, packed.pop("xp_error_residuals"), scale, sim)
    assert set(decoded) == {"bp1_error", "bp2_error", "rp1_error", "rp2_error"}
    for c, a in decoded.items():
        t = t.set_column(t.column_names.index(c), c, pa.array(a))
    meta[b"xpengine.lease_pack"] = json.dumps(packed).encode()
    old = tmp_path / "old.parquet"
    pq.write_table(t.replace_schema_metadata(meta), old, compression="zstd", compression_level=9)
    for f in (new, old):
        lease_data.unpack(
            str(f), str(tmp_path / f"{f.stem}_r.parquet"), str(tmp_path / f"{f.stem}_m.parquet")
        )
    for part in ("r", "m"):
        _assert_same(_columns(tmp_path / f"new_{part}.parquet"), _columns(tmp_path / f"old_{part}.parquet"))


def test_no_test_leaves_out_the_real_test_rows_only(rank1, tmp_path):
    path, _ = rank1
    for name, extra in (("all", []), ("no_test", ["--no-test"])):
        argv = ["pack", str(path), str(tmp_path / f"{name}.parquet"), "--tokens", "bp0..2", "teff"]
        assert lease_data.main([*argv, "--sim-val", "20", "--source-ids", *extra]) == 0
        f = str(tmp_path / f"{name}.parquet")
        lease_data.main(["unpack", f, "--real", f"{f}.r", "--mixed", f"{f}.m"])
    real_all, real_no = (_columns(tmp_path / f"{n}.parquet.r") for n in ("all", "no_test"))
    assert "test" in set(real_all["split"]) and "test" not in set(real_no["split"])
    assert len(real_no["split"]) == int((real_all["split"] != "test").sum())
    _assert_same(_columns(tmp_path / "all.parquet.m"), _columns(tmp_path / "no_test.parquet.m"))


def _yaml(tmp_path, data):
    cfg = {
        "model": {
            "d_model": 16,
            "context_length": 16,
            "encoder_heads": [2],
            "encoder_ffn": [32],
            "decoder_heads": [2],
            "decoder_ffn": [32],
            "head_mlp": [32, 16],
            "dropout": 0.0,
        },
        "data_path": str(data),
        "output_dir": str(tmp_path / "run"),
        "epochs": 1000,
        "max_masked": 10,
        "batch_size": 128,
        "lr": 3e-3,
        "scheduler_t0": 1000,
        "requestable": ["teff", "logg"],
        "val_every": 1000,
        "checkpoint_every": 1000,
        "device": "cpu",
        "precision": "fp32",
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_time_budget_trains_the_epochs_that_fit_as_one_cycle(mixed, tmp_path):
    path, _ = mixed
    cfg = _yaml(tmp_path, path)
    assert train_script.main(["--config", str(cfg), "--no-ray", "--time-budget", "10"]) == 0
    record = json.loads((tmp_path / "run" / "time_budget.json").read_text())
    assert record["yaml_epochs"] == 1000
    assert record["epoch_s"] == pytest.approx(record["probe_epoch_s"][1] * 1.05, abs=2e-3)
    assert record["epochs"] == max(1, int((record["left_s"] - record["overhead_s"]) / record["epoch_s"]))
    # the budget's number replaces the YAML's 1000 (train.py's docstring); with everything imported the
    # probe's overhead is small and ~10-ms epochs fit more than 1000 (1010 in session 12's fresh clone)
    assert record["epochs"] > 1
    ckpt = load_checkpoint(str(tmp_path / "run" / "model"))
    assert ckpt.train_config["epochs"] == ckpt.train_config["scheduler_t0"] == record["epochs"]
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert max(json.loads(x).get("epoch", 0) for x in lines) == record["epochs"]
    assert (tmp_path / "run" / "probe" / "model").is_dir()


def test_time_budget_spent_by_the_probe_keeps_the_probe_as_the_run(mixed, tmp_path):
    """A budget the probe alone overruns starts no further run (it would overrun a lease): the probe's
    two-epoch run is moved up as the result."""
    path, _ = mixed
    cfg = _yaml(tmp_path, path)
    # 1 ms: the tiny probe (two 10-ms epochs; alone in a fresh process 1.4 s, nearly all of it first-time
    # imports) can finish inside 0.1 s in a process that has imported everything already, late in the full
    # suite, and then one more epoch does fit (session 12's full suite failed so once)
    assert train_script.main(["--config", str(cfg), "--no-ray", "--time-budget", "0.001"]) == 0
    record = json.loads((tmp_path / "run" / "time_budget.json").read_text())
    assert record["probe_is_the_run"] and record["epochs"] == 2
    assert record["left_s"] - record["overhead_s"] < record["epoch_s"]  # not one more epoch fits
    ckpt = load_checkpoint(str(tmp_path / "run" / "model"))
    assert ckpt.train_config["epochs"] == 2
    assert [p.name for p in (tmp_path / "run" / "checkpoints").iterdir()] == ["epoch_000002"]
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert max(json.loads(x).get("epoch", 0) for x in lines) == 2


def test_time_budget_needs_a_new_run_in_this_process(mixed, tmp_path):
    path, _ = mixed
    cfg = _yaml(tmp_path, path)
    for extra in ([], ["--no-ray", "--resume", str(tmp_path)]):
        with pytest.raises(SystemExit):
            train_script.main(["--config", str(cfg), "--time-budget", "5", *extra])


lease_return = load_script("training/lease_return.py", "lease_return")


def test_a_run_returned_in_parts_resumes_exactly(mixed, tmp_path):
    """A float16-weights run packed as a lent GPU returns it (parts under a size limit, the weights
    file left out), unpacked here: the same checkpoint files byte for byte, and resuming from it gives
    the weights of resuming from the original run."""
    from safetensors.torch import load_file

    path, _ = mixed
    cfg = _yaml(tmp_path, path)
    common = [
        "--config",
        str(cfg),
        "--no-ray",
        "weights_dtype=float16",
        "scheduler_t0=3",
        "checkpoint_every=1",
    ]
    assert train_script.main([*common, "epochs=2", f"output_dir={tmp_path / 'run'}"]) == 0
    original = tmp_path / "run" / "model"
    manifest = lease_return.pack(tmp_path / "run", tmp_path / "out", max_files=8, part_bytes=40_000)
    assert manifest["weights_left_out"] and len(manifest["parts"]) > 1
    assert "checkpoint/model.safetensors" not in manifest["members"]
    assert all(p["bytes"] <= 40_000 for p in manifest["parts"])
    with pytest.raises(SystemExit, match="more than --max-files 1"):
        lease_return.pack(tmp_path / "run", tmp_path / "out1", max_files=1, part_bytes=40_000)
    assert not (tmp_path / "out1").exists()  # refused before writing

    back = tmp_path / "back"
    info = lease_return.unpack(tmp_path / "out", back)
    assert info["epoch"] == 2 and info["weights_rebuilt"]
    for f in original.iterdir():
        if f.name != "model.safetensors":
            assert (back / "model" / f.name).read_bytes() == f.read_bytes(), f.name
    # the rebuilt weights file: the same tensors and metadata (safetensors orders the metadata's keys
    # arbitrarily, so two saves of one model need not be the same bytes)
    want, got = (load_file(str(d / "model.safetensors")) for d in (original, back / "model"))
    assert list(want) == list(got) and all(
        w.dtype == torch.float16 and torch.equal(w, got[k]) for k, w in want.items()
    )
    assert _metadata(original) == _metadata(back / "model")
    assert (back / "metrics.jsonl").read_bytes() == (tmp_path / "run" / "metrics.jsonl").read_bytes()

    for src, run in ((tmp_path / "run", "res_a"), (back, "res_b")):
        assert (
            train_script.main([*common, "epochs=3", f"output_dir={tmp_path / run}", "--resume", str(src)])
            == 0
        )
    a = load_file(str(tmp_path / "res_a" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "res_b" / "model" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    # the manifest inside logs.tar, as training/gpu_lease.sh returns it
    import tarfile

    with tarfile.open(tmp_path / "out" / "logs.tar", "w") as tar:
        tar.add(tmp_path / "out" / "run.tar.json", arcname="run.tar.json")
    (tmp_path / "out" / "run.tar.json").unlink()
    assert lease_return.unpack(tmp_path / "out", tmp_path / "back3")["epoch"] == 2

    # a damaged part is refused, naming it
    part = tmp_path / "out" / manifest["parts"][0]["name"]
    part.write_bytes(b"x" + part.read_bytes()[1:])
    with pytest.raises(ValueError, match="part00: SHA-256 differs"):
        lease_return.unpack(tmp_path / "out", tmp_path / "back2")


def _metadata(ckpt):
    from safetensors import safe_open

    with safe_open(str(ckpt / "model.safetensors"), framework="pt") as f:
        return f.metadata()
