"""Checkpoint directories: safetensors + JSON only, exact round trip, reduced-precision weights,
training state for resuming."""

from __future__ import annotations

import dataclasses
import json
import logging

import numpy as np
import pytest
import torch

from xpengine.features.vocabulary import paper_vocabulary
from xpengine.model.checkpoint import (
    LearnedTokens,
    TrainState,
    describe_tokens,
    load_checkpoint,
    load_train_state,
    read_checkpoint_metadata,
    save_checkpoint,
)
from xpengine.model.standardize import Standardization
from xpengine.model.transformer import PRESETS, XPTransformer

VOCAB = paper_vocabulary(n_bp=3, n_rp=3)


@pytest.fixture(autouse=True)
def _no_pickle(monkeypatch):
    # Loading must never go through pickle (torch.load, even with weights_only=True).
    def refuse(*args, **kwargs):
        raise AssertionError("torch.load called")

    monkeypatch.setattr(torch, "load", refuse)


def _model():
    torch.manual_seed(0)
    return XPTransformer(dataclasses.replace(PRESETS["tiny"], n_tokens=len(VOCAB), dropout=0.1)).eval()


def _std():
    rng = np.random.default_rng(0)
    return Standardization.fit(rng.normal(size=(40, len(VOCAB))) * 3 + 1, VOCAB.names)


def _inputs():
    g = torch.Generator().manual_seed(5)
    ids = torch.randint(0, len(VOCAB) + 1, (8, 9), generator=g)
    return ids, torch.randn(8, 9, generator=g), torch.randint(1, len(VOCAB) + 1, (8, 3), generator=g)


def test_round_trip_gives_identical_predictions(tmp_path):
    model, std = _model(), _std()
    path = save_checkpoint(
        tmp_path / "ck",
        model,
        vocabulary=VOCAB,
        standardization=std,
        train_config={"lr": 1e-4, "val_inputs": ["bp0..2"]},
        provenance={"data": {"sha256": "abc"}},
    )
    assert sorted(p.name for p in path.iterdir()) == [
        "config.json",
        "model.safetensors",
        "provenance.json",
        "standardization.json",
        "vocabulary.json",
    ]
    ck = load_checkpoint(path)
    assert not ck.model.training
    assert ck.model_config == model.config and ck.vocabulary == VOCAB
    assert ck.train_config == {"lr": 1e-4, "val_inputs": ["bp0..2"]}
    assert ck.provenance == {"data": {"sha256": "abc"}}
    np.testing.assert_array_equal(ck.standardization.scale, std.scale)
    ids, vals, req = _inputs()
    a, b = model(ids, vals, req), ck.model(ids, vals, req)
    assert torch.equal(a.mean, b.mean) and torch.equal(a.logvar, b.logvar)
    with pytest.raises(FileExistsError, match="pass overwrite=True"):
        save_checkpoint(path, model, vocabulary=VOCAB, standardization=std)
    save_checkpoint(path, model, vocabulary=VOCAB, standardization=std, overwrite=True)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_reduced_precision_weights(tmp_path, dtype):
    model, std = _model(), _std()
    full = save_checkpoint(tmp_path / "f32", model, vocabulary=VOCAB, standardization=std)
    half = save_checkpoint(
        tmp_path / dtype, model, vocabulary=VOCAB, standardization=std, weights_dtype=dtype
    )
    size32 = (full / "model.safetensors").stat().st_size
    size16 = (half / "model.safetensors").stat().st_size
    assert size16 < 0.6 * size32
    assert json.loads((half / "config.json").read_text())["weights_dtype"] == dtype
    ck = load_checkpoint(half)
    assert all(p.dtype == torch.float32 for p in ck.model.parameters())
    ids, vals, req = _inputs()
    tol = 5e-2 if dtype == "bfloat16" else 1e-2  # 8- vs 11-bit mantissas
    torch.testing.assert_close(ck.model(ids, vals, req).mean, model(ids, vals, req).mean, atol=tol, rtol=tol)


def test_train_state_round_trip(tmp_path):
    model, std = _model(), _std()
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=3, eta_min=1e-10)
    ids, vals, req = _inputs()
    for _ in range(2):
        model(ids, vals, req).mean.square().sum().backward()
        opt.step()
        sched.step()
    gen = torch.Generator().manual_seed(3)
    state = TrainState(
        epoch=2,
        optimizer=opt.state_dict(),
        scheduler=sched.state_dict(),
        scaler={},
        rng={"torch_cpu": torch.get_rng_state(), "sampling": gen.get_state()},
    )
    path = save_checkpoint(
        tmp_path / "ck",
        model,
        vocabulary=VOCAB,
        standardization=std,
        train_state=state,
        weights_dtype="float16",
    )
    back = load_train_state(path)
    assert back.epoch == 2 and back.scheduler == sched.state_dict() and back.scaler == {}
    # float16 weights file → full-precision weights kept with the training state
    assert back.model_state is not None
    for k, v in model.state_dict().items():
        assert torch.equal(back.model_state[k], v)
    opt2 = torch.optim.AdamW(model.parameters(), lr=1e-3)
    opt2.load_state_dict(back.optimizer)
    for (k1, s1), (k2, s2) in zip(
        opt.state_dict()["state"].items(), opt2.state_dict()["state"].items(), strict=True
    ):
        assert k1 == k2
        for name in s1:
            assert torch.equal(s1[name], s2[name])
    assert opt2.state_dict()["param_groups"] == opt.state_dict()["param_groups"]
    assert torch.equal(back.rng["sampling"], gen.get_state())


def test_missing_files_and_mismatches_are_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="not an xpengine checkpoint"):
        load_checkpoint(tmp_path)
    with pytest.raises(FileNotFoundError, match="no training state"):
        load_train_state(tmp_path)
    with pytest.raises(ValueError, match="model has 16 tokens but vocabulary"):
        save_checkpoint(
            tmp_path / "x",
            _model(),
            vocabulary=paper_vocabulary(),
            standardization=Standardization.fit(np.ones((2, 120)), paper_vocabulary().names),
        )
    assert not (tmp_path / "x").exists()


def test_missing_safetensors_is_a_clear_error_only_when_saving_or_loading(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "safetensors", None)
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)
    model = _model()  # the model itself needs no safetensors
    assert torch.isfinite(model(*_inputs()).mean).all()
    with pytest.raises(ImportError, match="needs the `safetensors` package"):
        save_checkpoint(tmp_path / "ck", model, vocabulary=VOCAB, standardization=_std())
    with pytest.raises(ImportError, match="needs the `safetensors` package"):
        load_checkpoint(tmp_path)


def test_learned_tokens_round_trip_in_vocabulary_order(tmp_path, caplog):
    learned = LearnedTokens(outputs=("m_h", "teff"), inputs=("teff", "bp0", "bp1", "rp2", "bprp"))
    path = save_checkpoint(
        tmp_path / "ck", _model(), vocabulary=VOCAB, standardization=_std(), learned=learned
    )
    config = json.loads((path / "config.json").read_text())
    assert config["learned_outputs"] == ["teff", "m_h"]
    assert config["learned_inputs"] == ["bp0", "bp1", "rp2", "bprp", "teff"]
    with caplog.at_level(logging.WARNING, logger="xpengine.model.checkpoint"):
        ck = load_checkpoint(path)
        meta = read_checkpoint_metadata(path)
    assert not caplog.records
    assert (
        ck.learned
        == meta.learned
        == LearnedTokens(outputs=("teff", "m_h"), inputs=("bp0", "bp1", "rp2", "bprp", "teff"))
    )
    assert ck.learned.recorded


def test_checkpoint_without_learned_record_treats_whole_vocabulary_as_learned(tmp_path, caplog):
    path = save_checkpoint(tmp_path / "old", _model(), vocabulary=VOCAB, standardization=_std())
    assert "learned_outputs" not in json.loads((path / "config.json").read_text())
    with caplog.at_level(logging.WARNING, logger="xpengine.model.checkpoint"):
        ck = load_checkpoint(path)
    assert ck.learned == LearnedTokens(tuple(VOCAB.names), tuple(VOCAB.names), recorded=False)
    (msg,) = [r.getMessage() for r in caplog.records]
    assert "does not record" in msg and "every token of its vocabulary" in msg and "treated as learned" in msg


def test_learned_tokens_outside_the_vocabulary_are_refused(tmp_path):
    bad = LearnedTokens(outputs=("teff", "radius"), inputs=("bp0",))
    with pytest.raises(ValueError, match=r"learned_outputs names tokens \['radius'\]"):
        save_checkpoint(tmp_path / "ck", _model(), vocabulary=VOCAB, standardization=_std(), learned=bad)
    assert not (tmp_path / "ck").exists()
    path = save_checkpoint(tmp_path / "ok", _model(), vocabulary=VOCAB, standardization=_std())
    config = json.loads((path / "config.json").read_text())
    config.update(learned_outputs=["teff"], learned_inputs=["bp0", "g_fakemag2"])
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"config.json: learned_inputs names tokens \['g_fakemag2'\]"):
        load_checkpoint(path)


def test_describe_tokens_writes_runs_as_ranges():
    names = [f"bp{i}" for i in range(55)] + [f"rp{i}" for i in range(30)] + ["bprp", "teff", "rp40"]
    assert describe_tokens(names) == "bp0..54, rp0..29, bprp, teff, rp40"
    assert describe_tokens([]) == "none"


def test_planning_a_job_reads_the_model_without_torch():
    """The job's driver resolves labels and inputs, and fingerprints the model, from the JSON side of the
    checkpoint (`xpengine.model.metadata`) without importing torch."""
    import subprocess
    import sys

    code = (
        "import sys, dataclasses\n"
        "from xpengine.pipeline.config import InferenceConfig, resolve_inputs, resolve_labels\n"
        "from xpengine.pipeline.identity import _model_provenance, _model_vocabulary_json\n"
        "c = InferenceConfig(model='gaia-xp')\n"
        "c = dataclasses.replace(c, labels=resolve_labels(c), inputs=resolve_inputs(c))\n"
        "_model_provenance(c.model); _model_vocabulary_json(c.model)\n"
        "assert 'mass' in c.labels and c.inputs, c\n"
        "print('torch' in sys.modules)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "False", res.stdout + res.stderr
