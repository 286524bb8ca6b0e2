"""Generative and probing tasks of the foundation model (Zhang et al. 2026 §4.2–4.5, §5): spectra from
labels, reconstruction and inpainting of XP spectra, label-to-label grids, the implied extinction curve,
attention maps and embeddings, and `xpengine figures`. Names are imported lazily (torch and matplotlib
load only when a task runs)."""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "GeneratedSpectra": "xpengine.inference.tasks.generative",
    "LabelSequence": "xpengine.inference.tasks.generative",
    "label_sequences": "xpengine.inference.tasks.generative",
    "spectra_from_labels": "xpengine.inference.tasks.generative",
    "StarSet": "xpengine.inference.tasks.data",
    "load_stars": "xpengine.inference.tasks.data",
    "Reconstruction": "xpengine.inference.tasks.reconstruction",
    "inpaint": "xpengine.inference.tasks.reconstruction",
    "reconstruct_from_labels": "xpengine.inference.tasks.reconstruction",
    "spectral_rmse": "xpengine.inference.tasks.reconstruction",
    "LabelGrid": "xpengine.inference.tasks.label_grid",
    "label_grid": "xpengine.inference.tasks.label_grid",
    "ExtinctionResult": "xpengine.inference.tasks.extinction",
    "extinction_curve": "xpengine.inference.tasks.extinction",
    "fit_rv": "xpengine.inference.tasks.extinction",
    "fitzpatrick99_curve": "xpengine.inference.tasks.extinction",
    "model_extinction_curve": "xpengine.inference.tasks.extinction",
    "summarise_curves": "xpengine.inference.tasks.extinction",
    "AttentionMaps": "xpengine.inference.tasks.probing",
    "attention_maps": "xpengine.inference.tasks.probing",
    "colour_regression": "xpengine.inference.tasks.probing",
    "encode_stars": "xpengine.inference.tasks.probing",
    "run_figures": "xpengine.inference.tasks.runner",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'xpengine.inference.tasks' has no attribute {name!r}")
