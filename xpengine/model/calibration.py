"""Calibrated uncertainties: the per-token σ calibration a model carries in `calibration.json`.

σ_cal = sqrt((a_t · σ_pred)² + b_t²) per token t (physical units of t), applied by the Predictor to every
requested token with an entry; a derived linear label (``age`` = exp(ln_age)) may have its own entry in
linear units, applied to age · raw σ_ln_age. How a, b are fitted on the validation split, and when a
label's correction counts as applied, is `xpengine.evaluate.calibration`'s business.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CALIBRATION_FILE", "FORMAT_VERSION", "FORMULA", "Calibration", "LabelCalibration"]

CALIBRATION_FILE = "calibration.json"
FORMAT_VERSION = "1"
FORMULA = "sigma_cal = sqrt((a*sigma)^2 + b^2)"


@dataclass(frozen=True)
class LabelCalibration:
    """σ_cal = sqrt((a·σ)² + b²) for one token; b in the token's physical units."""

    a: float = 1.0
    b: float = 0.0
    applied: bool = False
    method: str = "identity"
    n_val: int = 0
    z_sigma_val_raw: float | None = None
    z_sigma_val_cal: float | None = None
    unit: str = ""

    def apply(self, sigma: np.ndarray) -> np.ndarray:
        """Calibrated σ (N,) float64 from predicted σ (N,) (same physical units); NaN stays NaN."""
        s = np.asarray(sigma, dtype=np.float64)
        if not self.applied:
            return s.copy()
        return np.sqrt((self.a * s) ** 2 + self.b**2)

    def raw(self, sigma_cal: np.ndarray) -> np.ndarray:
        """The predicted σ (N,) that `apply` turned into sigma_cal (N,): the inverse of `apply`. A σ_cal
        below the floor b (not produced by `apply`) gives 0; NaN stays NaN."""
        s = np.asarray(sigma_cal, dtype=np.float64)
        if not self.applied:
            return s.copy()
        return np.sqrt(np.clip(s**2 - self.b**2, 0.0, None)) / self.a


@dataclass
class Calibration:
    """Per-token calibrations (a missing token means identity)."""

    labels: dict[str, LabelCalibration] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    def apply(self, name: str, sigma: np.ndarray) -> np.ndarray:
        lc = self.labels.get(name)
        return np.asarray(sigma, dtype=np.float64).copy() if lc is None else lc.apply(sigma)

    def derived_sigma(
        self, derived: str, log_token: str, linear: np.ndarray, sigma_log_raw: np.ndarray
    ) -> np.ndarray:
        """σ (N,) of a linear label derived as exp(log_token) (``age`` from ``ln_age``): its own
        linear-space calibration applied to linear · σ_raw when it has one, else linear · the
        calibrated σ of the log token."""
        lin = np.asarray(linear, dtype=np.float64)
        if derived in self.labels:
            return self.labels[derived].apply(lin * np.asarray(sigma_log_raw, dtype=np.float64))
        return lin * self.apply(log_token, sigma_log_raw)

    @property
    def any_applied(self) -> bool:
        return any(lc.applied for lc in self.labels.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "formula": FORMULA,
            "labels": {k: _clean(asdict(v)) for k, v in self.labels.items()},
            "provenance": self.provenance,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        if str(d.get("format_version")) != FORMAT_VERSION:
            raise ValueError(
                f"calibration format_version {d.get('format_version')!r} is not supported; expected "
                f"{FORMAT_VERSION!r}"
            )
        labels = {k: LabelCalibration(**v) for k, v in d.get("labels", {}).items()}
        return cls(labels=labels, provenance=dict(d.get("provenance", {})))

    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write JSON to `path` (a file, or a directory that gets `calibration.json`)."""
        p = Path(path)
        if p.is_dir():
            p = p / CALIBRATION_FILE
        if p.exists() and not overwrite:
            raise FileExistsError(f"{p} exists; pass overwrite=True (--overwrite) to replace it")
        from xpengine.io.atomic import write_text_atomically

        return write_text_atomically(p, json.dumps(self.to_dict(), indent=1, allow_nan=False))

    @classmethod
    def load(cls, path: str | os.PathLike) -> Calibration:
        p = Path(path)
        if p.is_dir():
            p = p / CALIBRATION_FILE
        return cls.from_dict(json.loads(p.read_text()))


def _clean(d: dict[str, Any]) -> dict[str, Any]:
    """NaN → None so the JSON stays standard."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}
