"""The model: configuration, transformer, loss, standardisation, checkpoints (pure torch, no Ray).

Submodules are imported on first use so that ``import xpengine.model`` does not load torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "ModelConfig": "xpengine.model.transformer",
    "ModelOutput": "xpengine.model.transformer",
    "XPTransformer": "xpengine.model.transformer",
    "PRESETS": "xpengine.model.transformer",
    "gaussian_nll": "xpengine.model.loss",
    "Standardization": "xpengine.model.standardize",
    "Checkpoint": "xpengine.model.checkpoint",
    "load_checkpoint": "xpengine.model.checkpoint",
    "save_checkpoint": "xpengine.model.checkpoint",
    "count_parameters": "xpengine.model.cost",
    "forward_flops": "xpengine.model.cost",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'xpengine.model' has no attribute {name!r}")
