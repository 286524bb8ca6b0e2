"""The toy training set, its arrays, a tiny-model config and the metrics log reader shared by the
training tests that resume runs in chunks (`test_train_resume_integrity.py`, `test_train_review19.py`)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from xpengine.datasets.schema import read_training_set
from xpengine.model.transformer import PRESETS
from xpengine.train.config import TrainConfig
from xpengine.train.toy import write_toy_training_set

ROOT = Path(__file__).resolve().parents[1]
LABELS = ("teff", "logg", "m_h", "mass", "ln_age")


@pytest.fixture(scope="module", name="toy")
def toy_set(tmp_path_factory) -> Path:
    """200 toy stars, 3 BP + 3 RP coefficients."""
    return write_toy_training_set(tmp_path_factory.mktemp("toy") / "toy.parquet", 200, seed=2)


def arrays(path: Path):
    return read_training_set(str(path), split="train"), read_training_set(str(path), split="val")


def toy_config(path: Path, **kw) -> TrainConfig:
    """The tiny preset (dropout 0.1) on `path`, 2 epochs of batch 64, a checkpoint every 2; `kw` override."""
    base = {
        "data_path": str(path),
        "model": dataclasses.replace(PRESETS["tiny"], dropout=0.1),
        "epochs": 2,
        "batch_size": 64,
        "lr": 3e-3,
        "scheduler_t0": 4,
        "requestable": ("kind:xp", *LABELS),
        "val_every": 2,
        "checkpoint_every": 2,
        "device": "cpu",
        "precision": "fp32",
    }
    base.update(kw)
    return TrainConfig(**base)


def epochs(run: Path) -> list[int]:
    return [json.loads(x)["epoch"] for x in (run / "metrics.jsonl").read_text().splitlines()]
