"""The XGBoost "expert model" baseline of Leung & Bovy (2024, §4.1) and Zhang et al. (2026, §4.1).

One gradient-boosted regressor per label, trained on the model's standard inputs: the G-flux
normalised BP and RP coefficients 0–29 (tokens bp0..bp29, rp0..rp29) and the colours BP−RP, J−H,
J−K (63 features). As Leung & Bovy ran it (REFERENCE.md §5): `XGBRegressor(n_estimators=2000)` with
the library defaults otherwise (tree_method "hist", max_depth 6, learning_rate 0.3, squared error),
inputs and targets standardised like scikit-learn's StandardScaler (mean, population standard
deviation ddof=0, fitted on the training rows), no per-star uncertainty.

Missing values ("nan_policy"):
- "complete" (default, the paper's policy): a label's regressor is trained on the training rows whose
  63 inputs and that label are all finite; at prediction time a row with any missing input gets NaN.
- "native": rows need only a finite label; XGBoost learns a default branch for missing inputs and
  predicts every row.
Standardising the inputs changes nothing for trees with histogram (quantile) splits; it is kept so
the recipe matches the published one, and because the sidecar documents the transformation.

Saved as a directory: `<label>.ubj` (XGBoost's own Universal Binary JSON model format) per label and
`baseline.json` (inputs, labels, scalers, hyper-parameters, NaN policy, versions). No pickle.
Labels are tokens: `ln_age` is predicted in ln(age/Gyr); age in Gyr is exp of it.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xpengine.io.atomic import directory_written_atomically

__all__ = [
    "BASELINE_LABELS",
    "BaselineConfig",
    "XGBoostBaseline",
    "standard_input_names",
]

logger = logging.getLogger(__name__)

BASELINE_LABELS: tuple[str, ...] = ("teff", "logg", "m_h", "alpha_m", "mass", "ln_age")
SIDECAR_FILE = "baseline.json"
FORMAT_VERSION = "1"
NAN_POLICIES = ("complete", "native")
_DEFAULT_PARAMS: dict[str, Any] = {
    "objective": "reg:squarederror",
    "tree_method": "hist",
    "max_depth": 6,
    "learning_rate": 0.3,
}


def standard_input_names(n_coefficients: int = 30) -> list[str]:
    """The standard inputs: bp0..bp{n-1}, rp0..rp{n-1}, bprp, jh, jk (Leung & Bovy 2024 §4.1)."""
    return (
        [f"bp{i}" for i in range(n_coefficients)]
        + [f"rp{i}" for i in range(n_coefficients)]
        + ["bprp", "jh", "jk"]
    )


@dataclass
class BaselineConfig:
    """Hyper-parameters of the baseline (defaults: the paper's setting).

    labels: tokens to fit (those absent from the training data are skipped with a log message).
    n_coefficients: BP and RP coefficients per band used as inputs (30 → indices 0–29).
    n_estimators: boosting rounds (2000 in the paper; lower it for quick runs).
    params: XGBoost booster parameters (merged over the paper's defaults).
    nan_policy: "complete" or "native" (module docstring). standardize: StandardScaler-like scaling.
    seed: XGBoost seed. n_jobs: threads (0 = XGBoost's default, all cores).
    extra_inputs: tokens read beside the standard inputs (e.g. ``g_fakemag``, to give the baseline the
    parallax a transformer reads in the catalogue's context); none in the paper's recipe.
    """

    labels: tuple[str, ...] = BASELINE_LABELS
    n_coefficients: int = 30
    n_estimators: int = 2000
    params: dict[str, Any] = field(default_factory=lambda: dict(_DEFAULT_PARAMS))
    nan_policy: str = "complete"
    standardize: bool = True
    seed: int = 0
    n_jobs: int = 0
    extra_inputs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.labels = tuple(self.labels)
        self.extra_inputs = tuple(self.extra_inputs)
        self.params = {**_DEFAULT_PARAMS, **dict(self.params)}
        problems = self.problems()
        if problems:
            raise ValueError("invalid baseline configuration:\n  " + "\n  ".join(problems))

    def problems(self) -> list[str]:
        errs = []
        if not self.labels or not all(isinstance(x, str) for x in self.labels):
            errs.append(f"labels must be a non-empty list of token names, got {self.labels!r}")
        if not (isinstance(self.n_coefficients, int) and self.n_coefficients >= 1):
            errs.append(f"n_coefficients must be a positive integer, got {self.n_coefficients!r}")
        if not (isinstance(self.n_estimators, int) and self.n_estimators >= 1):
            errs.append(f"n_estimators must be a positive integer, got {self.n_estimators!r}")
        if self.nan_policy not in NAN_POLICIES:
            errs.append(f"nan_policy must be one of {NAN_POLICIES}, got {self.nan_policy!r}")
        if not isinstance(self.standardize, bool):
            errs.append(f"standardize must be true or false, got {self.standardize!r}")
        if not isinstance(self.seed, int):
            errs.append(f"seed must be an integer, got {self.seed!r}")
        if not (isinstance(self.n_jobs, int) and self.n_jobs >= 0):
            errs.append(f"n_jobs must be an integer ≥ 0, got {self.n_jobs!r}")
        standard = set(standard_input_names(self.n_coefficients))
        if not all(isinstance(x, str) for x in self.extra_inputs) or standard & set(self.extra_inputs):
            errs.append(
                f"extra_inputs must be token names beside the standard inputs, got {self.extra_inputs!r}"
            )
        return errs

    @property
    def inputs(self) -> list[str]:
        return standard_input_names(self.n_coefficients) + list(self.extra_inputs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "labels": list(self.labels),
            "n_coefficients": self.n_coefficients,
            "n_estimators": self.n_estimators,
            "params": dict(self.params),
            "nan_policy": self.nan_policy,
            "standardize": self.standardize,
            "seed": self.seed,
            "n_jobs": self.n_jobs,
            "extra_inputs": list(self.extra_inputs),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BaselineConfig:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(
                f"unknown baseline configuration keys {unknown}; expected some of {sorted(known)}"
            )
        return cls(**d)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> BaselineConfig:
        import yaml

        with open(path) as fh:
            d = yaml.safe_load(fh) or {}
        if not isinstance(d, dict):
            raise ValueError(f"{path}: expected a mapping of baseline settings, got {type(d).__name__}")
        try:
            return cls.from_dict(d)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: {exc}") from None


@dataclass(frozen=True)
class _Scaler:
    """x_std = (x − mean) / scale; scale 1 where the standard deviation is 0 or undefined."""

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray) -> _Scaler:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim == 1:
            x = x[:, None]
        with np.errstate(invalid="ignore"):
            n = np.isfinite(x).sum(axis=0)
            mean = np.where(n > 0, np.nansum(x, axis=0) / np.maximum(n, 1), 0.0)
            var = np.where(n > 0, np.nansum((x - mean) ** 2, axis=0) / np.maximum(n, 1), 0.0)
        scale = np.sqrt(var)
        scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
        return cls(mean=mean, scale=scale)

    @classmethod
    def identity(cls, n: int) -> _Scaler:
        return cls(mean=np.zeros(n), scale=np.ones(n))

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": [float(v) for v in self.mean], "scale": [float(v) for v in self.scale]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> _Scaler:
        return cls(
            mean=np.asarray(d["mean"], dtype=np.float64), scale=np.asarray(d["scale"], dtype=np.float64)
        )


def _xgboost() -> Any:
    try:
        import xgboost
    except ImportError as exc:  # pragma: no cover - xgboost is a dependency
        raise ImportError("the XGBoost baseline needs the `xgboost` package (pip install xgboost)") from exc
    return xgboost


class XGBoostBaseline:
    """Per-label XGBoost regressors on the standard inputs. Build with :meth:`fit` or :meth:`load`."""

    def __init__(
        self,
        config: BaselineConfig,
        boosters: dict[str, Any],
        input_scaler: _Scaler,
        target_scalers: dict[str, _Scaler],
        info: dict[str, Any] | None = None,
    ) -> None:
        self.config = config
        self.boosters = boosters
        self.input_scaler = input_scaler
        self.target_scalers = target_scalers
        self.info = info or {}

    @property
    def inputs(self) -> list[str]:
        return self.config.inputs

    @property
    def labels(self) -> list[str]:
        """Labels with a trained regressor, in configuration order."""
        return [lab for lab in self.config.labels if lab in self.boosters]

    @staticmethod
    def _check_inputs(x: np.ndarray, n_inputs: int, what: str) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != n_inputs:
            raise ValueError(f"{what}: expected a (N, {n_inputs}) input matrix, got shape {x.shape}")
        return x

    @classmethod
    def fit(
        cls,
        inputs: np.ndarray,
        targets: dict[str, np.ndarray],
        config: BaselineConfig | None = None,
    ) -> XGBoostBaseline:
        """Train one regressor per label.

        inputs: (N, F) physical token values in the order of `config.inputs` (NaN = missing);
        targets: label token → (N,) values (NaN = missing), for the labels of `config.labels`
        (absent or empty labels are skipped).
        """
        xgb = _xgboost()
        config = config or BaselineConfig()
        x = cls._check_inputs(inputs, len(config.inputs), "XGBoostBaseline.fit")
        complete_inputs = np.all(np.isfinite(x), axis=1)  # (N,)
        row_ok = complete_inputs if config.nan_policy == "complete" else np.ones(len(x), dtype=bool)
        if config.standardize:
            in_scaler = _Scaler.fit(x[row_ok])
        else:
            in_scaler = _Scaler.identity(x.shape[1])
        xs = (x - in_scaler.mean) / in_scaler.scale  # (N, F), NaN stays NaN
        params = {**config.params, "seed": config.seed}
        if config.n_jobs:
            params["nthread"] = config.n_jobs
        boosters: dict[str, Any] = {}
        t_scalers: dict[str, _Scaler] = {}
        n_train: dict[str, int] = {}
        seconds: dict[str, float] = {}
        for label in config.labels:
            if label not in targets:
                logger.info("baseline: no column for label %s; skipped", label)
                continue
            y = np.asarray(targets[label], dtype=np.float64)
            if y.shape != (len(x),):
                raise ValueError(f"target {label!r} has shape {y.shape}, expected ({len(x)},)")
            rows = row_ok & np.isfinite(y)
            n = int(rows.sum())
            if n < 2:
                logger.info("baseline: %d training rows for %s; skipped", n, label)
                continue
            ts = _Scaler.fit(y[rows]) if config.standardize else _Scaler.identity(1)
            ys = (y[rows] - ts.mean[0]) / ts.scale[0]
            t0 = time.perf_counter()
            dtrain = xgb.DMatrix(xs[rows], label=ys, missing=np.nan)
            boosters[label] = xgb.train(params, dtrain, num_boost_round=config.n_estimators)
            seconds[label] = time.perf_counter() - t0
            t_scalers[label] = ts
            n_train[label] = n
            logger.info("baseline: %s trained on %d rows in %.1f s", label, n, seconds[label])
        if not boosters:
            raise ValueError(
                f"no baseline label could be trained: labels {list(config.labels)} are absent or have "
                f"fewer than 2 usable rows (nan_policy {config.nan_policy!r}, {int(row_ok.sum())} rows "
                "with usable inputs)"
            )
        info = {
            "n_train": n_train,
            "train_seconds": seconds,
            "xgboost_version": xgb.__version__,
        }
        return cls(config, boosters, in_scaler, t_scalers, info)

    def predict(self, inputs: np.ndarray, labels: list[str] | None = None) -> dict[str, np.ndarray]:
        """Predictions (label → (N,) float64, physical token units) for inputs (N, F) in the order of
        `self.inputs`. With nan_policy "complete", rows with a missing input get NaN."""
        xgb = _xgboost()
        x = self._check_inputs(inputs, len(self.inputs), "XGBoostBaseline.predict")
        labels = self.labels if labels is None else labels
        unknown = [lab for lab in labels if lab not in self.boosters]
        if unknown:
            raise KeyError(f"baseline has no regressor for {unknown}; trained labels: {self.labels}")
        xs = (x - self.input_scaler.mean) / self.input_scaler.scale
        dm = xgb.DMatrix(xs, missing=np.nan)
        complete = np.all(np.isfinite(x), axis=1)
        out: dict[str, np.ndarray] = {}
        for label in labels:
            ts = self.target_scalers[label]
            y = self.boosters[label].predict(dm).astype(np.float64) * ts.scale[0] + ts.mean[0]
            if self.config.nan_policy == "complete":
                y = np.where(complete, y, np.nan)
            out[label] = y
        return out

    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write `<label>.ubj` per label and `baseline.json` into directory `path` (atomically)."""
        path = Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(f"baseline directory {path} exists; pass overwrite=True to replace it")
        with directory_written_atomically(path) as tmp:
            files = {}
            for label, booster in self.boosters.items():
                files[label] = f"{label}.ubj"
                booster.save_model(str(tmp / files[label]))
            sidecar = {
                "format_version": FORMAT_VERSION,
                "kind": "xgboost-baseline",
                "inputs": self.inputs,
                "labels": self.labels,
                "model_files": files,
                "config": self.config.to_dict(),
                "input_scaler": self.input_scaler.to_dict(),
                "target_scalers": {k: v.to_dict() for k, v in self.target_scalers.items()},
                "info": self.info,
            }
            (tmp / SIDECAR_FILE).write_text(json.dumps(sidecar, indent=1, allow_nan=False))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> XGBoostBaseline:
        """Read a directory written by :meth:`save`."""
        xgb = _xgboost()
        path = Path(path)
        side = path / SIDECAR_FILE
        if not side.is_file():
            raise FileNotFoundError(f"{path} is not an xpengine XGBoost baseline: no {SIDECAR_FILE}")
        meta = json.loads(side.read_text())
        if str(meta.get("format_version")) != FORMAT_VERSION:
            raise ValueError(
                f"{side}: format_version {meta.get('format_version')!r}, expected {FORMAT_VERSION!r}"
            )
        config = BaselineConfig.from_dict(meta["config"])
        if meta["inputs"] != config.inputs:
            raise ValueError(f"{side}: stored inputs do not match n_coefficients {config.n_coefficients}")
        boosters = {}
        for label, fname in meta["model_files"].items():
            b = xgb.Booster()
            b.load_model(str(path / fname))
            boosters[label] = b
        return cls(
            config,
            boosters,
            _Scaler.from_dict(meta["input_scaler"]),
            {k: _Scaler.from_dict(v) for k, v in meta["target_scalers"].items()},
            meta.get("info", {}),
        )
