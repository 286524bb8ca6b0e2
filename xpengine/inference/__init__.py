"""Inference: the Ray-free :class:`~xpengine.inference.predictor.Predictor` and, built on it, the
distributed pipeline. Nothing heavy (torch, ray) is imported until a name is used."""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "Predictor": "xpengine.inference.predictor",
    "available_models": "xpengine.inference.predictor",
    "resolve_model_path": "xpengine.inference.predictor",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'xpengine.inference' has no attribute {name!r}")
