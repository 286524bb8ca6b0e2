"""Running a label predictor on evaluation stars: the predictor protocol (`LabelPredictor`), its
predictions as label → (mean, σ) (`predict_labels`, also what `benchmarks/compare_models.py` needs) and
those under an input scenario, group by group (`scenario_predictions`). Re-exported by
`xpengine.evaluate.runner`.

The predictor is anything with the interface of :class:`xpengine.inference.predictor.Predictor`:
a ``vocabulary`` attribute (:class:`~xpengine.features.vocabulary.Vocabulary`), a ``context_length``
and ``predict(values (N, T), errors (N, T), request: list[str], inputs=..., batch_size=..., g_mag=...)``
returning a mapping (dict, DataFrame or Arrow table) with, per requested token ``<name>``, columns
``<name>`` and ``<name>_error`` (1σ) in physical units. NaN in `values` means "not in the context".
g_mag: (N,) the stars' G [mag] (the file's `phot_g_mean_mag`, or None), for σ calibrations with G-bin
factors (`calibration.json` format 2).

Ages: the model predicts ln(age/Gyr); age = exp(μ), σ_age = age · σ_ln age (REFERENCE.md §3); a
predictor that returns ``age`` / ``age_error`` itself (the Predictor, whose calibration may give linear
age its own entry) is taken at its word.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from xpengine.evaluate.scenarios import scenario_groups
from xpengine.features.vocabulary import Vocabulary

__all__ = ["LabelPredictor", "load_predictor", "metric_labels", "predict_labels", "scenario_predictions"]


class LabelPredictor(Protocol):
    """What evaluation needs of a model: :class:`xpengine.inference.predictor.Predictor` (tests also
    pass an exact-posterior stand-in with the same interface)."""

    vocabulary: Vocabulary

    @property
    def context_length(self) -> int: ...

    def predict(
        self,
        values: np.ndarray,
        errors: np.ndarray,
        request: list[str],
        *,
        inputs: list[str] | None = ...,
        batch_size: int | None = ...,
        g_mag: np.ndarray | None = ...,
    ) -> Mapping[str, Any]: ...


def metric_labels(tokens: Sequence[str]) -> list[str]:
    """Reported labels for predicted tokens: the tokens, plus ``age`` right before ``ln_age``."""
    out: list[str] = []
    for t in tokens:
        if t == "ln_age":
            out.append("age")
        out.append(t)
    return out


def load_predictor(
    model: str,
    *,
    device: str = "cpu",
    dtype: str | None = None,
    calibrate: bool = False,
    sim_to_real: bool = True,
) -> LabelPredictor:
    """`Predictor.load(model, ...)` with uncalibrated σ (``calibrate=False``, the default), so raw and
    calibrated uncertainties can both be measured; ``calibrate=True``: with the model's own calibration,
    and its sim-to-real term unless ``sim_to_real=False`` (simulated stars)."""
    from xpengine.inference.predictor import Predictor

    extra = {} if dtype is None else {"dtype": dtype}
    if calibrate:
        extra["sim_to_real"] = sim_to_real
    return Predictor.load(model, device=device, calibrate=calibrate, **extra)


def predict_labels(
    predictor: LabelPredictor,
    values: np.ndarray,
    errors: np.ndarray | None,
    tokens: Sequence[str],
    *,
    inputs: Sequence[str] | None = None,
    batch_size: int | None = None,
    g_mag: np.ndarray | None = None,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """token → (mean (N,), σ (N,)) float64 physical for `values` (N, T) in the predictor's vocabulary
    order; adds ``age`` with ``ln_age`` (the predictor's own ``age`` / ``age_error`` when it returns
    them, else exp(μ) and exp(μ) · σ_ln_age).

    inputs: the context token names (the predictor reads only those columns). g_mag: (N,) G [mag] or
    None, passed on for σ calibrations with G-bin factors."""
    out = predictor.predict(
        values,
        errors,
        list(tokens),
        inputs=None if inputs is None else list(inputs),
        batch_size=batch_size,
        g_mag=g_mag,
    )
    res: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for t in (*tokens, *(("age",) if "ln_age" in tokens and "age" in out else ())):
        try:
            mu = np.asarray(out[t], dtype=np.float64)
            sd = np.asarray(out[f"{t}_error"], dtype=np.float64)
        except KeyError as exc:
            raise KeyError(
                f"predictor output lacks column {exc.args[0]!r}; it must return `<name>` and "
                f"`<name>_error` for every requested token {list(tokens)}"
            ) from None
        if mu.shape != (values.shape[0],) or sd.shape != mu.shape:
            raise ValueError(
                f"predictor returned shapes {mu.shape}/{sd.shape} for {t!r}, expected ({values.shape[0]},)"
            )
        res[t] = (mu, sd)
    if "ln_age" in res and "age" not in res:
        mu, sd = res["ln_age"]
        with np.errstate(over="ignore"):
            age = np.exp(mu)
        res["age"] = (age, age * sd)
    return res


def scenario_predictions(
    predictor: LabelPredictor,
    scenario: str,
    values: np.ndarray,
    errors: np.ndarray,
    tokens: list[str],
    *,
    batch_size: int,
    seed: int,
    g_mag: np.ndarray | None = None,
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], np.ndarray]:
    """Predictions of `tokens` for all rows of `values` (N, T) (predictor vocabulary order, G (N,) or
    None) under one scenario, group by group (:func:`scenario_groups`). Returns (token → (mean, σ)),
    context mask (N, T)."""
    vocab = predictor.vocabulary
    n = values.shape[0]
    groups = scenario_groups(
        scenario, vocab, n, labels=tokens, context_length=predictor.context_length, seed=seed
    )
    mask = np.zeros(values.shape, dtype=bool)
    res: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for rows, names in groups:
        cols = vocab.indices(names)
        sub = np.zeros((len(rows), values.shape[1]), dtype=bool)
        sub[:, cols] = True
        sub &= np.isfinite(values[rows])
        mask[rows] = sub
        v = np.where(sub, values[rows], np.nan).astype(np.float32)
        e = np.where(sub, errors[rows], 0.0).astype(np.float32)
        part = predict_labels(
            predictor,
            v,
            e,
            tokens,
            inputs=names,
            batch_size=batch_size,
            g_mag=None if g_mag is None else g_mag[rows],
        )
        for k, (mu, sd) in part.items():
            if k not in res:
                res[k] = (np.full(n, np.nan), np.full(n, np.nan))
            res[k][0][rows] = mu
            res[k][1][rows] = sd
    return res, mask
