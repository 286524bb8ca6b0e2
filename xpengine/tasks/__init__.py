"""Generative and probing tasks of the foundation model (Zhang et al. 2026 §4.2–4.5, §5): spectra from
labels, reconstruction and inpainting of XP spectra, label-to-label grids, the implied extinction curve,
attention maps and embeddings, and `xpengine figures`. Names are imported lazily (torch and matplotlib
load only when a task runs)."""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "GeneratedSpectra": "xpengine.tasks.generative",
    "LabelSequence": "xpengine.tasks.generative",
    "label_sequences": "xpengine.tasks.generative",
    "spectra_from_labels": "xpengine.tasks.generative",
    "StarSet": "xpengine.tasks.data",
    "load_stars": "xpengine.tasks.data",
    "Reconstruction": "xpengine.tasks.reconstruction",
    "inpaint": "xpengine.tasks.reconstruction",
    "reconstruct_from_labels": "xpengine.tasks.reconstruction",
    "spectral_rmse": "xpengine.tasks.reconstruction",
    "LabelGrid": "xpengine.tasks.label_grid",
    "label_grid": "xpengine.tasks.label_grid",
    "ExtinctionResult": "xpengine.tasks.extinction",
    "extinction_curve": "xpengine.tasks.extinction",
    "fit_rv": "xpengine.tasks.extinction",
    "fitzpatrick99_curve": "xpengine.tasks.extinction",
    "model_extinction_curve": "xpengine.tasks.extinction",
    "summarise_curves": "xpengine.tasks.extinction",
    "AttentionMaps": "xpengine.tasks.probing",
    "attention_maps": "xpengine.tasks.probing",
    "colour_regression": "xpengine.tasks.probing",
    "encode_stars": "xpengine.tasks.probing",
    "run_figures": "xpengine.tasks.runner",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'xpengine.tasks' has no attribute {name!r}")
