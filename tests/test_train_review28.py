"""Session 28's training review (helper-77): a resume from an older checkpoint sets the abandoned later ones
aside, a resume on changed data standardises the tokens its first data lacked, `epochs` below the
checkpoint's is refused, the config refuses a gradient clip ≤ 0 and empty validation settings, stars/s
counts the stars trained, the model configuration's change is named, and a Ray resume is checked on the
driver before Ray starts."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from _paths import load_script
from _train_toy import ROOT, arrays, epochs, toy_config
from _train_toy import toy_set as toy  # noqa: F401 (the `toy` fixture)

from xpengine.model.checkpoint import load_checkpoint
from xpengine.train.config import load_train_config
from xpengine.train.loop import train
from xpengine.train.resume_checks import ResumeMismatch, precheck_resume

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _names(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir()) if d.is_dir() else []


def test_a_resume_from_an_older_checkpoint_sets_the_later_ones_aside(toy, tmp_path):  # noqa: F811
    tr, va = arrays(toy)
    run = tmp_path / "run"
    train(toy_config(toy, epochs=4, checkpoint_every=1), tr, va, output_dir=run)
    assert _names(run / "checkpoints") == ["epoch_000003", "epoch_000004"]  # keep_checkpoints 2
    old = run / "checkpoints" / "epoch_000003"
    train(toy_config(toy, epochs=4, checkpoint_every=1, lr=3e-3), tr, va, output_dir=run, resume_from=old)
    # epoch 4 of the new trajectory is the run's; the abandoned epoch 4 is kept aside, not pruned in its place
    assert _names(run / "checkpoints") == ["epoch_000003", "epoch_000004"]
    assert _names(run / "checkpoints_abandoned") == ["epoch_000004"]
    assert epochs(run) == [1, 2, 3, 4]
    # the uninterrupted run's epoch 4 and the resumed one are the same trajectory: equal weights
    a = load_checkpoint(run / "checkpoints" / "epoch_000004", device="cpu").model.state_dict()
    b = load_checkpoint(run / "checkpoints_abandoned" / "epoch_000004", device="cpu").model.state_dict()
    for k in a:
        assert np.array_equal(a[k].numpy(), b[k].numpy()), k


def test_epochs_below_the_checkpoint_are_refused(toy, tmp_path):  # noqa: F811
    tr, va = arrays(toy)
    run = tmp_path / "run"
    train(toy_config(toy, epochs=2), tr, va, output_dir=run)
    with pytest.raises(ResumeMismatch, match=r"after epoch 2, beyond this run's epochs=1; give epochs >= 2"):
        train(toy_config(toy, epochs=1), tr, va, output_dir=run, resume_from=run)


def test_a_resume_on_changed_data_standardises_tokens_the_first_data_lacked(toy, tmp_path):  # noqa: F811
    tr, va = arrays(toy)
    token = "m_h"
    col = tr.vocabulary.names.index(token)
    tr0 = dataclasses.replace(tr, values=tr.values.copy(), errors=tr.errors.copy())
    tr0.values[:, col] = np.nan
    tr0.errors[:, col] = np.nan
    run = tmp_path / "run"
    cfg = toy_config(toy, epochs=1, checkpoint_every=1)
    train(cfg, tr0, va, output_dir=run)
    first = load_checkpoint(run / "checkpoints" / "epoch_000001", device="cpu")
    assert token not in first.learned.outputs
    assert first.standardization.center[col] == 0.0 and first.standardization.scale[col] == 1.0
    train(toy_config(toy, epochs=2, checkpoint_every=1), tr, va, output_dir=run, resume_from=run,
          allow_data_change=True)  # fmt: skip
    second = load_checkpoint(run / "checkpoints" / "epoch_000002", device="cpu")
    v = tr.values[:, col]
    assert second.standardization.center[col] == pytest.approx(np.nanmedian(v))
    assert second.standardization.scale[col] != 1.0
    # every token the first chunk had keeps its centre and scale
    other = np.arange(len(tr.vocabulary.names)) != col
    np.testing.assert_array_equal(second.standardization.center[other], first.standardization.center[other])
    np.testing.assert_array_equal(second.standardization.scale[other], first.standardization.scale[other])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("grad_clip_norm=-1.0", "grad_clip_norm must be > 0"),
        ("grad_clip_norm=0", "grad_clip_norm must be > 0"),
        ("val_max_stars=-5", "val_max_stars must be >= 1"),
        ("val_batch_size=0", "val_batch_size must be >= 1"),
    ],
)
def test_the_config_refuses_a_clip_that_flips_gradients_and_empty_validation(override, message):
    with pytest.raises(ValueError, match=message):
        load_train_config(ROOT / "configs/train/tiny.yaml", [override])


def test_stars_per_second_counts_the_stars_trained(toy, tmp_path):  # noqa: F811
    tr, va = arrays(toy)
    run = tmp_path / "run"
    train(toy_config(toy, epochs=1, batch_size=64, drop_last=False), tr, va, output_dir=run)
    m = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    n_train = tr.values.shape[0]
    assert n_train % 64 != 0  # a short last batch, which planned steps × batch overcounted
    assert m["train_stars_per_s"] * m["epoch_time_s"] == pytest.approx(n_train, rel=1e-6)


def test_a_changed_model_setting_is_named_and_a_ray_resume_is_checked_before_ray(toy, tmp_path, capsys):  # noqa: F811
    tr, va = arrays(toy)
    run = tmp_path / "run"
    cfg = toy_config(toy, epochs=1)
    train(cfg, tr, va, output_dir=run)
    changed = dataclasses.replace(cfg, epochs=2, model=dataclasses.replace(cfg.model, dropout=0.0))
    with pytest.raises(ResumeMismatch, match=r"model\.dropout: 0\.1 \(checkpoint\) -> 0\.0 \(now\)"):
        train(changed, tr, va, output_dir=run, resume_from=run)
    with pytest.raises(ResumeMismatch, match=r"model\.dropout"):
        precheck_resume(changed, run)
    with pytest.raises(ResumeMismatch, match=r"lr: 0\.003 \(checkpoint\) -> 0\.001 \(now\)"):
        precheck_resume(dataclasses.replace(cfg, epochs=2, lr=1e-3), run)
    precheck_resume(dataclasses.replace(cfg, epochs=2), run)  # the same run: passes
    # the script refuses it on the driver, in one line, without starting Ray (no --no-ray here)
    script = load_script("training/train.py", "train_script_review28")
    args = ["--config", str(ROOT / "configs/train/tiny.yaml"), f"data_path={toy}", f"output_dir={run}"]
    with pytest.raises(SystemExit) as exc:
        script.main([*args, "epochs=2", "lr=1e-3", "--resume", str(run)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "error: cannot resume from" in err and "Traceback" not in err
    with pytest.raises(SystemExit):
        script.main([*args, "--no-ray", "--cpus-per-worker", "2"])


def test_the_ray_worker_asks_for_one_machines_cpus():
    from xpengine.train.ray_train import worker_cpus

    nodes = [
        {"Alive": True, "Resources": {"CPU": 16.0}},
        {"Alive": True, "Resources": {"CPU": 8.0, "GPU": 1.0}},
        {"Alive": False, "Resources": {"CPU": 64.0}},
    ]
    assert worker_cpus(nodes, use_gpu=False) == 16  # not the cluster's 24, nor a dead node's 64
    assert worker_cpus(nodes, use_gpu=True) == 8  # the GPU machine's
    assert worker_cpus([], use_gpu=False) == 1


def test_bundling_a_model_never_leaves_it_half_written(toy, tmp_path, monkeypatch):  # noqa: F811
    """training/bundle_model.py writes the new bundle beside the old one and swaps it in: a copy that fails
    midway leaves the bundled model as it was (it used to delete it first)."""
    bundle = load_script("training/bundle_model.py", "bundle_model_review28")
    tr, va = arrays(toy)
    run = tmp_path / "run"
    train(toy_config(toy, epochs=1), tr, va, output_dir=run)
    monkeypatch.setattr(bundle, "ROOT", tmp_path / "repo")
    models = tmp_path / "repo" / "xpengine" / "data" / "models"
    models.mkdir(parents=True)
    assert bundle.main([str(run), "toy", "--command", "python training/train.py ..."]) == 0
    first = {p.name: p.read_bytes() for p in (models / "toy").iterdir()}
    assert "model.safetensors" in first and "MODEL_CARD.md" in first
    with pytest.raises(SystemExit, match="exists; pass --overwrite"):
        bundle.main([str(run), "toy", "--command", "x"])
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("model.safetensors", "config.json"):  # a checkpoint missing files: the copy fails midway
        (broken / name).write_bytes((run / "model" / name).read_bytes())
    with pytest.raises(FileNotFoundError):
        bundle.main([str(broken), "toy", "--command", "x", "--overwrite"])
    assert {p.name: p.read_bytes() for p in (models / "toy").iterdir()} == first
    assert sorted(p.name for p in models.iterdir()) == ["toy"]  # the half-written bundle is removed
    assert bundle.main([str(run), "toy", "--command", "again", "--overwrite"]) == 0
    assert "again" in (models / "toy" / "MODEL_CARD.md").read_text()
    assert sorted(p.name for p in models.iterdir()) == ["toy"]  # no .new / .old left behind
