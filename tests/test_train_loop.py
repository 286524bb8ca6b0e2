"""The Ray-free training loop on toy training-schema Parquet files: learning, overfitting, exact resume,
outputs and provenance; the YAML presets."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import platform
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from xpengine.datasets.schema import read_training_set
from xpengine.model.checkpoint import load_checkpoint
from xpengine.model.transformer import PRESETS, ModelConfig
from xpengine.train.config import TrainConfig, expand_tokens, load_config_dict, load_train_config
from xpengine.train.loop import train
from xpengine.train.toy import TOY_LABELS, write_toy_training_set

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
LABELS = ("teff", "logg", "m_h", "mass", "ln_age")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def toy10(tmp_path_factory) -> Path:
    """1000 toy stars, 10 BP + 10 RP coefficients (30 tokens)."""
    return write_toy_training_set(
        tmp_path_factory.mktemp("toy") / "toy10.parquet", 1000, seed=1, n_bp=10, n_rp=10
    )


@pytest.fixture(scope="module")
def toy3(tmp_path_factory) -> Path:
    """300 toy stars, 3 BP + 3 RP coefficients (16 tokens)."""
    return write_toy_training_set(tmp_path_factory.mktemp("toy") / "toy3.parquet", 300, seed=2)


def _arrays(path: Path):
    return read_training_set(str(path), split="train"), read_training_set(str(path), split="val")


def _config(path: Path, **kw) -> TrainConfig:
    base = {
        "data_path": str(path),
        "model": PRESETS["tiny"],
        "epochs": 4,
        "batch_size": 128,
        "lr": 3e-3,
        "scheduler_t0": 4,
        "requestable": LABELS,
        "val_every": 2,
        "checkpoint_every": 2,
        "device": "cpu",
        "precision": "fp32",
    }
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.slow
def test_learns_labels_from_xp_tokens(toy10, tmp_path):
    tr, va = _arrays(toy10)
    cfg = _config(toy10, epochs=30, scheduler_t0=30, val_every=10, checkpoint_every=30)
    result = train(cfg, tr, va, output_dir=tmp_path / "run")
    last = result.history[-1]
    # Label spread (1σ) of the toy recipe vs the robust σ of validation residuals from BP/RP + colours.
    for name in LABELS:
        spread = float(np.hypot.reduce(TOY_LABELS[name][1]))
        noise = TOY_LABELS[name][2]
        assert last[f"val_sigma_{name}"] < max(0.3 * spread, 2.5 * noise), (name, last)
    assert last["val_sigma_age"] > 0
    first = result.history[0]
    assert last["train_loss"] < first["train_loss"] - 1.0
    # Outputs on disk.
    assert result.epochs_completed == 30
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == list(range(1, 31))
    ck = load_checkpoint(result.model_dir)
    prov = ck.provenance
    assert prov["data"]["sha256"] == hashlib.sha256(toy10.read_bytes()).hexdigest()
    assert prov["data"]["n_train"] == len(tr.source_id) and prov["data"]["n_val"] == len(va.source_id)
    assert prov["torch_version"] == torch.__version__ and prov["epochs_completed"] == 30
    assert prov["n_parameters"] == sum(p.numel() for p in ck.model.parameters())
    assert {"git_commit", "xpengine_version", "hardware", "wall_time_s", "date_utc"} <= set(prov)
    assert ck.train_config["val_inputs"] == ["bp0..29", "rp0..29", "bprp", "jh", "jk"]
    assert ck.model_config.n_tokens == 30


def test_tiny_model_overfits_tiny_set(toy3):
    # 16 stars, fixed context (all XP + colours) and fixed requests (the 5 labels): the tiny model with
    # the training loss must memorise them, far below the unit-Gaussian NLL of ~0.5 per element.
    from xpengine.model.context import pack_context
    from xpengine.model.loss import gaussian_nll
    from xpengine.model.standardize import Standardization
    from xpengine.model.transformer import XPTransformer

    tr, _ = _arrays(toy3)
    v = tr.vocabulary
    values = tr.values[:16]
    z, _ = Standardization.fit(tr.values, v.names).transform(values)
    z = torch.from_numpy(z)
    ids, vals, _ = pack_context(z, torch.tensor(v.indices(expand_tokens(["kind:xp", "kind:colour"], v))))
    label_cols = torch.tensor(v.indices(list(LABELS)))
    req = (label_cols + 1).expand(16, 5)
    target = z[:, label_cols]
    torch.manual_seed(0)
    model = XPTransformer(dataclasses.replace(PRESETS["tiny"], n_tokens=len(v)))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 400)  # settle at the end: NLL is jumpy
    losses = []
    for _ in range(400):
        out = model(ids, vals, req)
        loss = gaussian_nll(target, out.mean, out.logvar, torch.zeros_like(target)) / 5
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    assert losses[0] > 0.3 and max(losses[-10:]) < -2.0, losses[::40]
    model.eval()
    resid = (model(ids, vals, req).mean - target)[torch.isfinite(target)]
    assert resid.abs().max() < 0.15  # standardised units (label spread 1): memorised


def test_resume_continues_exactly(toy3, tmp_path):
    tr, va = _arrays(toy3)
    cfg = _config(
        toy3,
        epochs=4,
        batch_size=64,
        model=dataclasses.replace(PRESETS["tiny"], dropout=0.1),
        requestable=("kind:xp", *LABELS),
    )
    full = train(cfg, tr, va, output_dir=tmp_path / "full")
    # Stop after 2 epochs, then resume from that run directory up to 4.
    train(dataclasses.replace(cfg, epochs=2), tr, va, output_dir=tmp_path / "part")
    resumed = train(cfg, tr, va, output_dir=tmp_path / "part", resume_from=tmp_path / "part")
    assert [m["epoch"] for m in resumed.history] == [3, 4]
    for a, b in zip(full.history[2:], resumed.history, strict=True):
        assert a["lr"] == b["lr"]
        assert a["train_loss"] == b["train_loss"]
        for k in a:
            if k.startswith("val_"):
                assert a[k] == b[k], k
    w_full = load_checkpoint(full.model_dir).model.state_dict()
    w_res = load_checkpoint(resumed.model_dir).model.state_dict()
    assert all(torch.equal(w_full[k], w_res[k]) for k in w_full)
    # The learning-rate sequence is the cosine with warm restarts: lr(e) = η_min + ½(η0−η_min)(1+cos(π e/T0)).
    lrs = [m["lr"] for m in full.history]
    expected = [1e-10 + 0.5 * (3e-3 - 1e-10) * (1 + np.cos(np.pi * e / 4)) for e in range(4)]
    np.testing.assert_allclose(lrs, expected, rtol=1e-9)
    # A different model cannot be resumed.
    other = dataclasses.replace(cfg, model=dataclasses.replace(PRESETS["tiny"], d_model=8))
    with pytest.raises(ValueError, match="model config"):
        train(other, tr, va, output_dir=tmp_path / "part", resume_from=tmp_path / "part" / "model")


def test_bf16_autocast_on_cpu_and_reduced_weights(toy3, tmp_path):
    tr, va = _arrays(toy3)
    cfg = _config(toy3, epochs=1, precision="bf16", weights_dtype="bfloat16")
    result = train(cfg, tr, va, output_dir=tmp_path / "run")
    assert np.isfinite(result.history[-1]["train_loss"]) and np.isfinite(result.history[-1]["val_nll"])
    assert json.loads((result.model_dir / "config.json").read_text())["weights_dtype"] == "bfloat16"


def test_errors_are_explicit(toy3, tmp_path):
    tr, va = _arrays(toy3)
    with pytest.raises(ValueError, match="'mass_x' is not a token"):
        train(_config(toy3, requestable=("mass_x",)), tr, va, output_dir=tmp_path)
    with pytest.raises(ValueError, match="no output directory"):
        train(_config(toy3), tr, va)
    with pytest.raises(FileNotFoundError, match="neither a checkpoint"):
        train(_config(toy3), tr, va, output_dir=tmp_path / "r", resume_from=tmp_path)


# --- configuration --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted((CONFIGS / "train").glob("*.yaml")), ids=lambda p: p.name)
def test_every_training_yaml_loads_and_is_headed_by_its_command(path):
    cfg = load_train_config(path)
    assert isinstance(cfg.model, ModelConfig)
    first = path.read_text().splitlines()[0]
    assert first.startswith("# python training/train.py --config configs/train/" + path.name)


@pytest.mark.parametrize("name", ["paper", "small", "tiny"])
def test_model_yaml_equals_code_preset(name):
    import yaml

    text = (CONFIGS / "model" / f"{name}.yaml").read_text()
    assert text.startswith("# ")
    assert ModelConfig.from_dict(yaml.safe_load(text)) == PRESETS[name]


def test_paper_yaml_is_the_published_schedule():
    cfg = load_train_config(CONFIGS / "train" / "paper.yaml")
    assert (cfg.batch_size, cfg.epochs, cfg.scheduler_t0, cfg.lr, cfg.eta_min) == (
        1024,
        4096,
        512,
        1e-4,
        1e-10,
    )
    assert cfg.max_masked == 59 and cfg.n_requests == 1 and cfg.model == PRESETS["paper"]


def test_overrides_and_collected_errors():
    cfg = load_train_config(
        CONFIGS / "train" / "tiny.yaml", ["epochs=7", "lr=1e-2", "model.dropout=0.2", "val_labels=[teff]"]
    )
    assert (cfg.epochs, cfg.lr, cfg.model.dropout, cfg.val_labels) == (7, 0.01, 0.2, ("teff",))
    d = load_config_dict(CONFIGS / "train" / "small.yaml", ["data_path=x.parquet"])
    assert d["data_path"] == "x.parquet" and d["model"]["d_model"] == 64
    with pytest.raises(ValueError) as exc:
        load_train_config(CONFIGS / "train" / "tiny.yaml", ["epochs=many", "bogus=1", "precision=fp8"])
    msg = str(exc.value)
    assert "epochs must be int, got 'many'" in msg and "unknown keys ['bogus']" in msg
    with pytest.raises(ValueError, match="not of the form key=value"):
        load_train_config(CONFIGS / "train" / "tiny.yaml", ["epochs"])
    with pytest.raises(ValueError, match="precision must be auto"):
        load_train_config(CONFIGS / "train" / "tiny.yaml", ["precision=fp8"])


def test_token_selection_syntax():
    from xpengine.features.vocabulary import paper_vocabulary

    v = paper_vocabulary()
    assert expand_tokens(["bp0..2", "kind:colour", "teff", "bp1"], v) == [
        "bp0",
        "bp1",
        "bp2",
        "bprp",
        "jh",
        "jk",
        "teff",
    ]
    assert len(expand_tokens(["bp0..29", "rp0..29", "bprp", "jh", "jk"], v)) == 63
    assert len(expand_tokens(["kind:xp"], paper_vocabulary(n_bp=51))) == 106
    with pytest.raises(ValueError, match="'teff2' is not a token"):
        expand_tokens(["teff2", "kind:nope"], v)


def test_focus_contexts_through_the_loop_and_their_config_checks(toy10, tmp_path):
    tr, va = _arrays(toy10)
    cfg = _config(
        toy10, focus_inputs=("bp0..9", "rp0..9", "bprp", "jh", "jk"), focus_fraction=0.8, focus_max_masked=10
    )
    result = train(cfg, tr, va, output_dir=tmp_path / "run")
    assert result.epochs_completed == 4 and np.isfinite(result.history[-1]["train_loss"])
    saved = load_checkpoint(result.model_dir).train_config
    assert saved["focus_fraction"] == 0.8 and saved["focus_inputs"][0] == "bp0..9"
    problems = _config(toy10, focus_fraction=0.5, focus_max_masked=64).problems()
    assert "focus_fraction > 0 needs focus_inputs" in problems
    assert any("focus_max_masked must be in [0, context_length=64)" in p for p in problems)
    with pytest.raises(ValueError, match="focus_fraction must be in"):
        load_train_config(CONFIGS / "train" / "tiny.yaml", ["focus_fraction=1.5", "focus_inputs=[bp0..9]"])
    with pytest.raises(ValueError, match="bad token selection"):
        train(
            _config(toy10, focus_inputs=("bp0..9", "nope"), focus_fraction=0.5),
            tr,
            va,
            output_dir=tmp_path / "x",
        )


def test_epoch_pool_through_the_loop_resumes_exactly(toy3, tmp_path):
    tr, va = _arrays(toy3)
    half = tr.values.copy()
    mass = tr.vocabulary.index("mass")
    half[::2, mass] = np.nan  # every other star lacks mass: the pool is the other half
    tr = dataclasses.replace(tr, values=half)
    cfg = _config(toy3, epochs=3, batch_size=32, epoch_pool_tokens=("mass",), epoch_pool_fraction=0.25)
    full = train(cfg, tr, va, output_dir=tmp_path / "full")
    train(dataclasses.replace(cfg, epochs=1), tr, va, output_dir=tmp_path / "part")
    resumed = train(cfg, tr, va, output_dir=tmp_path / "part", resume_from=tmp_path / "part")
    assert [a["train_loss"] for a in full.history[1:]] == [b["train_loss"] for b in resumed.history]
    saved = load_checkpoint(full.model_dir).train_config
    assert saved["epoch_pool_tokens"] == ["mass"] and saved["epoch_pool_fraction"] == 0.25
    assert any(
        "epoch_pool_fraction must be in (0, 1]" in p
        for p in _config(toy3, epoch_pool_fraction=0.0).problems()
    )


def test_checkpoints_record_the_tokens_the_model_learned(toy3, tmp_path):
    """Every checkpoint says which tokens had training values: requestable ones to predict, all of
    them to read. Here the training split has no mass and no J−K at all."""
    tr, va = _arrays(toy3)
    vocab = tr.vocabulary
    tr.values[:, vocab.index("mass")] = np.nan
    tr.values[:, vocab.index("jk")] = np.nan
    cfg = _config(toy3, epochs=2, checkpoint_every=1, keep_checkpoints=2, requestable=(*LABELS, "bp0"))
    result = train(cfg, tr, va, output_dir=tmp_path / "run")
    outputs = ["bp0", "teff", "logg", "m_h", "ln_age"]
    inputs = [n for n in vocab.names if n not in ("mass", "jk")]
    for d in [result.model_dir, *sorted((tmp_path / "run" / "checkpoints").glob("epoch_*"))]:
        config = json.loads((d / "config.json").read_text())
        assert config["learned_outputs"] == outputs, d
        assert config["learned_inputs"] == inputs, d
        assert "learned_outputs" in json.loads((d / "provenance.json").read_text())["learned_tokens"]["rule"]
    ck = load_checkpoint(result.model_dir)
    assert ck.learned.recorded and list(ck.learned.outputs) == outputs and list(ck.learned.inputs) == inputs


def test_learned_tokens_follow_the_sampler():
    """Requests come only from finite requestable tokens; contexts from any finite token, or with
    focus_fraction 1 from the focus tokens (plus all tokens of stars that have none)."""
    from xpengine.features.vocabulary import paper_vocabulary
    from xpengine.train.loop import learned_tokens

    # bp0 bp1 rp0 rp1 bprp jh jk teff logg m_h logebv g_fakemag mass ln_age
    vocab = paper_vocabulary(n_bp=2, n_rp=2)
    x = np.full((3, len(vocab)), np.nan)
    x[0, vocab.indices(["bp0", "bp1", "rp0", "teff", "logebv"])] = 1.0
    x[1, vocab.indices(["bp0", "rp1", "mass"])] = 1.0
    x[2, vocab.indices(["jh", "logg"])] = 1.0  # no focus token
    lt = learned_tokens(x, vocab, ["teff", "logg", "m_h", "mass", "ln_age"])
    assert lt.outputs == ("teff", "logg", "mass")
    assert lt.inputs == ("bp0", "bp1", "rp0", "rp1", "jh", "teff", "logg", "logebv", "mass")
    focus = ["bp0", "bp1", "rp0", "rp1"]
    lt1 = learned_tokens(x, vocab, ["teff", "logg"], focus=focus, focus_fraction=1.0)
    assert lt1.outputs == ("teff", "logg")
    assert lt1.inputs == ("bp0", "bp1", "rp0", "rp1", "jh", "logg")
    assert learned_tokens(x, vocab, ["teff"], focus=focus, focus_fraction=0.8).inputs == lt.inputs
    with pytest.raises(ValueError, match=r"values must be \(N, 14\)"):
        learned_tokens(x[:, :3], vocab, ["teff"])
    # per output, the learned inputs no star had beside it: teff never met rp1, jh, logg or mass
    unseen = dict(lt.unseen_inputs)
    assert unseen["teff"] == ("rp1", "jh", "logg", "mass")
    assert unseen["mass"] == ("bp1", "rp0", "jh", "teff", "logg", "logebv")
    assert unseen["logg"] == ("bp0", "bp1", "rp0", "rp1", "teff", "logebv", "mass")
    from xpengine.model.metadata import UNSEEN_INPUTS_KEY

    assert lt.to_config()[UNSEEN_INPUTS_KEY]["teff"] == ["rp1", "jh", "logg", "mass"]


def test_init_from_starts_from_another_models_weights_and_standardisation(toy3, tmp_path):
    """Transfer learning: a first model learns without mass; a second run starts from its weights. Tokens
    the first learned keep its centre and scale, mass is fitted on the new data; with a vanishing learning
    rate the weights stay the first model's. Mismatched models are refused; resuming ignores init_from."""
    from xpengine.io import sha256_of

    tr, va = _arrays(toy3)
    vocab = tr.vocabulary
    first_tr = dataclasses.replace(tr, values=tr.values.copy())
    first_tr.values[:, vocab.index("mass")] = np.nan
    first = train(_config(toy3, epochs=2), first_tr, va, output_dir=tmp_path / "first")
    base = load_checkpoint(first.model_dir)
    assert "mass" not in base.learned.outputs

    cfg = _config(toy3, epochs=1, lr=1e-30, eta_min=0.0, weight_decay=0.0, init_from=str(tmp_path / "first"))
    second = train(cfg, tr, va, output_dir=tmp_path / "second")
    ck = load_checkpoint(second.model_dir)
    w0, w1 = base.model.state_dict(), ck.model.state_dict()
    assert all(torch.allclose(w0[k], w1[k], atol=1e-6) for k in w0)
    known = [i for i, n in enumerate(vocab.names) if n != "mass"]
    np.testing.assert_array_equal(ck.standardization.center[known], base.standardization.center[known])
    np.testing.assert_array_equal(ck.standardization.scale[known], base.standardization.scale[known])
    m = vocab.index("mass")
    assert ck.standardization.center[m] == pytest.approx(np.nanmedian(tr.values[:, m]))
    assert "mass" in ck.learned.outputs
    init = ck.provenance["initialised_from"]
    assert init["weights_sha256"] == sha256_of(first.model_dir / "model.safetensors")

    other = dataclasses.replace(cfg, model=dataclasses.replace(PRESETS["tiny"], d_model=8))
    with pytest.raises(ValueError, match=r"init_from .* model config"):
        train(other, tr, va, output_dir=tmp_path / "third")
    # resuming takes the resumed checkpoint's weights and standardisation, not init_from's
    resumed = train(
        dataclasses.replace(cfg, epochs=2),
        tr,
        va,
        output_dir=tmp_path / "second",
        resume_from=tmp_path / "second",
    )
    assert [m["epoch"] for m in resumed.history] == [2]


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt: Linux with glibc only")
def test_hold_freed_memory_keeps_a_freed_block_in_the_heap() -> None:
    """In a fresh process (the setting is process-wide): a freed 256 MB array goes back to the kernel by
    default (a large block is its own mmap) and stays resident with `hold_freed_memory`, which is what
    lets a CPU training step reuse the last step's pages."""
    code = textwrap.dedent(
        """
        import sys
        import numpy as np
        from xpengine.train.loop import hold_freed_memory

        def rss_mb():
            for line in open("/proc/self/status"):
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024

        if sys.argv[1] == "1":
            assert hold_freed_memory()
        before = rss_mb()
        a = np.ones(256 * 2**20 // 8)
        del a
        print(rss_mb() - before)
        """
    )
    kept = {
        hold: float(
            subprocess.run(
                [sys.executable, "-c", code, hold], capture_output=True, text=True, check=True
            ).stdout.strip()
        )
        for hold in ("0", "1")
    }
    assert kept["0"] < 64.0 and kept["1"] > 192.0, kept


def test_relevancy_truncation_through_the_loop_resumes_exactly(toy3, tmp_path):
    """truncate_fraction reaches the sampler through TrainData's XP layout, is recorded in the checkpoint,
    and a resumed run draws the same truncations."""
    from xpengine.train.train_data import xp_band_order

    tr, va = _arrays(toy3)
    band, order = xp_band_order(tr.vocabulary)
    names = tr.vocabulary.names
    assert [names[j] for j in np.flatnonzero(band == 0)] == ["bp0", "bp1", "bp2"]
    assert order[names.index("rp2")] == 2 and band[names.index("teff")] == -1
    cfg = _config(toy3, epochs=3, batch_size=64, truncate_fraction=0.5, truncate_min=1)
    full = train(cfg, tr, va, output_dir=tmp_path / "full")
    train(dataclasses.replace(cfg, epochs=1), tr, va, output_dir=tmp_path / "part")
    resumed = train(cfg, tr, va, output_dir=tmp_path / "part", resume_from=tmp_path / "part")
    assert [a["train_loss"] for a in full.history[1:]] == [b["train_loss"] for b in resumed.history]
    plain = train(
        dataclasses.replace(cfg, epochs=1, truncate_fraction=0.0), tr, va, output_dir=tmp_path / "p"
    )
    assert plain.history[0]["train_loss"] != full.history[0]["train_loss"]  # the cut contexts differ
    saved = load_checkpoint(full.model_dir).train_config
    assert saved["truncate_fraction"] == 0.5 and saved["truncate_min"] == 1
    bad = _config(toy3, truncate_fraction=1.5, truncate_min=0).problems()
    assert any("truncate_fraction" in p for p in bad) and any("truncate_min" in p for p in bad)


def test_relevancy_truncation_from_a_count_table_resumes_exactly(toy3, tmp_path):
    """truncate_counts: the table is read at start, its hash is in the provenance, a resumed run draws the same
    cuts, and the table changes what is drawn."""
    table = tmp_path / "counts.csv"
    table.write_text("# test\nbp_n_relevant_bases,rp_n_relevant_bases,count\n1,3,5\n2,1,1\n")
    tr, va = _arrays(toy3)
    cfg = _config(toy3, epochs=3, batch_size=64, truncate_fraction=0.5, truncate_counts=str(table))
    full = train(cfg, tr, va, output_dir=tmp_path / "full")
    train(dataclasses.replace(cfg, epochs=1), tr, va, output_dir=tmp_path / "part")
    resumed = train(cfg, tr, va, output_dir=tmp_path / "part", resume_from=tmp_path / "part")
    assert [a["train_loss"] for a in full.history[1:]] == [b["train_loss"] for b in resumed.history]
    uniform = train(
        dataclasses.replace(cfg, epochs=1, truncate_counts=None), tr, va, output_dir=tmp_path / "u"
    )
    assert uniform.history[0]["train_loss"] != full.history[0]["train_loss"]
    ckpt = load_checkpoint(full.model_dir)
    assert ckpt.train_config["truncate_counts"] == str(table)
    assert len(ckpt.provenance["truncate_counts"]["sha256"]) == 64
    bad = _config(toy3, truncate_counts=str(table)).problems()
    assert any("truncate_counts needs truncate_fraction > 0" in p for p in bad)


def test_the_checkpoint_keeps_the_inputs_each_output_never_saw_in_training(toy3, tmp_path):
    """A token pair no training star had together is recorded in the saved config (`inputs_unseen_with`), and
    the Predictor reads it back: the loop once dropped the record on saving (session 16), so a trained model
    read [M/H] from contexts it never saw for [M/H]."""
    from xpengine.inference.predictor import Predictor
    from xpengine.train.train_data import learned_tokens

    tr, va = _arrays(toy3)
    names = tr.vocabulary.names
    values = np.array(tr.values, copy=True)
    half = values.shape[0] // 2
    values[:half, names.index("teff")] = np.nan  # teff and logg never on the same star
    values[half:, names.index("logg")] = np.nan
    tr = dataclasses.replace(tr, values=values)
    expected = learned_tokens(values, tr.vocabulary, LABELS).unseen_inputs
    assert dict(expected)["teff"] and "logg" in dict(expected)["teff"]
    res = train(_config(toy3, epochs=1), tr, va, output_dir=tmp_path / "run")
    assert load_checkpoint(res.model_dir).learned.unseen_inputs == expected
    assert dict(Predictor.load(str(res.model_dir), device="cpu").learned.unseen_inputs) == dict(expected)


@pytest.mark.parametrize(
    ("capability", "expected"), [((9, 0), (torch.bfloat16, False)), ((7, 0), (torch.float16, True))]
)
def test_auto_precision_on_cuda_takes_bf16_only_where_the_device_does_it_natively(
    monkeypatch, capability, expected
):
    # torch.cuda.is_bf16_supported() is True on a V100/T4 too (emulated bf16, slower than fp16 + GradScaler)
    from xpengine.train.loop import resolve_precision

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert resolve_precision("auto", torch.device("cuda", 0)) == expected
    assert resolve_precision("auto", torch.device("cpu")) == (None, False)
    assert resolve_precision("bf16", torch.device("cuda", 0)) == (torch.bfloat16, False)  # asked for: given
