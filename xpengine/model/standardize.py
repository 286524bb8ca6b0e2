"""Per-token robust standardisation (Leung & Bovy 2024; REFERENCE.md §3).

For each token t over the training split: centre_t = nanmedian(x_t), scale_t = 1.4826 · MAD(x_t)
(the normal-consistent median absolute deviation, astropy's `mad_std`). Values become
(x − centre) / scale, errors error / scale. A token whose scale is zero or undefined (constant or
empty column) gets scale 1; an empty column gets centre 0, so it passes through unchanged.
Missing values stay NaN here; the model's context builders turn them into padding.

Stored with every model as `standardization.json`, so a checkpoint maps physical values in and out.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["MAD_TO_SIGMA", "Standardization", "robust_sigma"]

logger = logging.getLogger(__name__)

MAD_TO_SIGMA = 1.4826
"""1 / Φ⁻¹(3/4): turns a median absolute deviation into a Gaussian σ."""


def robust_sigma(x: np.ndarray, axis: int | None = 0) -> np.ndarray:
    """1.4826 · median(|x − median(x)|) ignoring NaN; NaN where a slice is empty. x: any shape."""
    x = np.asarray(x, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices → NaN, by design
        med = np.nanmedian(x, axis=axis, keepdims=True)
        return MAD_TO_SIGMA * np.nanmedian(np.abs(x - med), axis=axis)


@dataclass(frozen=True)
class Standardization:
    """Token-wise affine map between physical and standardised units.

    names: (T,) token names in vocabulary order; center, scale: (T,) float64, physical units.
    """

    names: tuple[str, ...]
    center: np.ndarray
    scale: np.ndarray

    def __post_init__(self) -> None:
        c = np.asarray(self.center, dtype=np.float64)
        s = np.asarray(self.scale, dtype=np.float64)
        n = len(self.names)
        if c.shape != (n,) or s.shape != (n,):
            raise ValueError(
                f"center {c.shape} and scale {s.shape} must both have shape ({n},) for {n} token names"
            )
        if not (np.all(np.isfinite(c)) and np.all(np.isfinite(s)) and np.all(s > 0)):
            bad = [self.names[i] for i in np.flatnonzero(~np.isfinite(c) | ~np.isfinite(s) | ~(s > 0))]
            raise ValueError(f"center/scale must be finite with scale > 0; bad tokens: {bad[:10]}")
        object.__setattr__(self, "names", tuple(self.names))
        object.__setattr__(self, "center", c)
        object.__setattr__(self, "scale", s)

    @classmethod
    def fit(cls, values: np.ndarray, names: Sequence[str]) -> Standardization:
        """Robust centre and scale of each column of `values` (N, T), NaN = missing."""
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 2 or values.shape[1] != len(names):
            raise ValueError(f"values must be (N, {len(names)}) for {len(names)} names, got {values.shape}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            center = np.nanmedian(values, axis=0)  # (T,)
        scale = robust_sigma(values, axis=0)  # (T,)
        empty = ~np.isfinite(center)
        degenerate = ~np.isfinite(scale) | (scale <= 0)
        if empty.any():
            logger.info("standardisation: no values for tokens %s; centre 0, scale 1", _few(names, empty))
        if (degenerate & ~empty).any():
            logger.info(
                "standardisation: zero robust scale for tokens %s; scale 1", _few(names, degenerate & ~empty)
            )
        return cls(
            names=tuple(names),
            center=np.where(empty, 0.0, center),
            scale=np.where(degenerate, 1.0, scale),
        )

    def _columns(self, columns: Sequence[int] | None) -> tuple[np.ndarray, np.ndarray]:
        if columns is None:
            return self.center, self.scale
        idx = np.asarray(columns, dtype=np.int64)
        return self.center[idx], self.scale[idx]

    def transform(
        self, values: np.ndarray, errors: np.ndarray | None = None, columns: Sequence[int] | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Physical → standardised. values, errors: (N, C) float, columns: (C,) indices into the names
        (default: all, in order). Returns float32 arrays; NaN stays NaN."""
        c, s = self._columns(columns)
        z = ((np.asarray(values, dtype=np.float64) - c) / s).astype(np.float32)
        ze = None if errors is None else (np.asarray(errors, dtype=np.float64) / s).astype(np.float32)
        return z, ze

    def inverse(
        self, mean: np.ndarray, sigma: np.ndarray | None = None, columns: Sequence[int] | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Standardised → physical for mean (N, C) and σ (N, C) of the tokens `columns` (C,)."""
        c, s = self._columns(columns)
        m = np.asarray(mean, dtype=np.float64) * s + c
        sg = None if sigma is None else np.asarray(sigma, dtype=np.float64) * s
        return m, sg

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": "nanmedian / 1.4826*MAD",
            "names": list(self.names),
            "center": [float(x) for x in self.center],
            "scale": [float(x) for x in self.scale],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Standardization:
        return cls(names=tuple(d["names"]), center=np.asarray(d["center"]), scale=np.asarray(d["scale"]))


def _few(names: Sequence[str], mask: np.ndarray, n: int = 10) -> str:
    sel = [names[i] for i in np.flatnonzero(mask)]
    return ", ".join(sel[:n]) + (f" and {len(sel) - n} more" if len(sel) > n else "")
