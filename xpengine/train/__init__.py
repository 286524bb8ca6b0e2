"""Training: configuration, token sampling and the Ray-free loop; `ray_train` runs it under Ray Train.

Submodules are imported on first use so that ``import xpengine.train`` does not load torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "TrainConfig": "xpengine.train.config",
    "load_train_config": "xpengine.train.config",
    "TrainResult": "xpengine.train.loop",
    "train": "xpengine.train.loop",
    "sample_tokens": "xpengine.train.sampling",
    "SampledBatch": "xpengine.train.sampling",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'xpengine.train' has no attribute {name!r}")
