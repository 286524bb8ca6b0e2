"""The sim-to-real term of a calibration (`calibration.json` format 4): the extra spread real stars show
over simulated ones in a token learned from simulated stars only (`xpengine.model.calibration`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SIM_TO_REAL_FORMULA", "SimToReal"]

SIM_TO_REAL_FORMULA = (
    "real stars: sigma_real = sqrt(sigma_cal^2 + extra^2), extra interpolated linearly in sigma_cal through "
    "(sigma_knots, extra_knots), the end values beyond them; relative tokens in ln units (sigma_cal/value); "
    "a linear label derived from a log token (age from ln_age) takes the log token's term relative to its value"
)


@dataclass(frozen=True)
class SimToReal:
    """The spread real stars add to one token's prediction beyond what simulated stars show (format 4).

    In log units: for a `relative` token (mass) the σ and the extra are relative (σ/value, i.e. in ln
    mass); otherwise in the token's own units (ln_age). `extra_knots` (≥ 0) is the extra at the calibrated
    σ `sigma_knots` (strictly increasing, ≥ 2): straight lines between knots, the end values beyond them.
    σ_real = √(σ_cal² + extra(σ_cal)²)."""

    sigma_knots: tuple[float, ...]
    extra_knots: tuple[float, ...]
    relative: bool = False

    def __post_init__(self) -> None:
        x = np.asarray(self.sigma_knots, dtype=np.float64)
        y = np.asarray(self.extra_knots, dtype=np.float64)
        finite = np.all(np.isfinite(x)) and np.all(np.isfinite(y))
        if (
            not finite
            or x.size < 2
            or x.size != y.size
            or np.any(np.diff(x) <= 0)
            or np.any(y < 0)
            or x[0] <= 0
        ):
            raise ValueError(
                f"sim_to_real sigma_knots {self.sigma_knots} / extra_knots {self.extra_knots}: expected "
                "finite, positive, strictly increasing σ and non-negative extras of one length >= 2"
            )
        object.__setattr__(self, "sigma_knots", tuple(float(v) for v in x))
        object.__setattr__(self, "extra_knots", tuple(float(v) for v in y))

    def extra(self, sigma_log: np.ndarray) -> np.ndarray:
        """The extra spread (N,) at calibrated σ (N,) in log units; NaN stays NaN."""
        s = np.asarray(sigma_log, dtype=np.float64)
        out = np.interp(s, self.sigma_knots, self.extra_knots)
        return np.where(np.isnan(s), np.nan, out)

    def total(self, value: np.ndarray, sigma: np.ndarray, *, relative: bool | None = None) -> np.ndarray:
        """σ (N,) with the extra added in quadrature, in the token's units: value (N,) is the prediction
        (used only when relative), sigma (N,) the calibrated σ. relative: overrides `self.relative` (a
        linear label derived from a log token takes that token's term relative to its value)."""
        s = np.asarray(sigma, dtype=np.float64)
        if not (self.relative if relative is None else relative):
            return np.hypot(s, self.extra(s))
        v = np.abs(np.asarray(value, dtype=np.float64))
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = s / v
        return v * np.hypot(rel, self.extra(rel))
