"""Labels → spectrum (Zhang et al. 2026 §4.2, Fig. 7): ask the model for every XP coefficient token given
stellar labels, and turn the answer into a sampled spectrum.

Each of the 110 coefficient tokens is decoded independently (the model has no joint output, see
:mod:`xpengine.model.transformer`), so "the generated spectrum" is the vector of the 110 marginal means,
and its σ the marginal σ propagated as if independent. The pseudo-luminosity g_fakemag is requested
alongside (unless given), so the spectrum is also returned as absolute flux at 10 pc
(:func:`~xpengine.tasks.common.absolute_flux_10pc`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xpengine.tasks.common import (
    absolute_flux_10pc,
    labels_to_values,
    predict_matrix,
    tokens_to_flux,
    xp_flux_errors,
)

__all__ = [
    "DEFAULT_SEQUENCES",
    "GeneratedSpectra",
    "LabelSequence",
    "label_sequences",
    "spectra_from_labels",
]

logger = logging.getLogger(__name__)


@dataclass
class GeneratedSpectra:
    """Spectra generated from labels for N stars.

    labels: the inputs as given ({name: (N,)}, user units); inputs: the tokens they became.
    coefficient_names: (K,) XP token names (K = n_bp + n_rp); coefficients, coefficient_errors: (N, K)
    G-normalised marginal means and σ. wavelength_nm: (W,). flux, flux_error: (N, W) G-normalised flux
    and its σ [W m⁻² nm⁻¹ per e⁻ s⁻¹]. g_fakemag, g_fakemag_error, abs_g: (N,) pseudo-luminosity
    (predicted, or the input when given; error 0 then) and M_G [mag]. flux_10pc: (N, W) absolute flux at
    10 pc [W m⁻² nm⁻¹] (NaN when the pseudo-luminosity is unknown or ≤ 0).
    """

    labels: dict[str, np.ndarray]
    inputs: list[str]
    coefficient_names: list[str]
    coefficients: np.ndarray
    coefficient_errors: np.ndarray
    wavelength_nm: np.ndarray
    flux: np.ndarray
    flux_error: np.ndarray
    g_fakemag: np.ndarray
    g_fakemag_error: np.ndarray
    abs_g: np.ndarray
    flux_10pc: np.ndarray

    def __len__(self) -> int:
        return self.coefficients.shape[0]

    def columns(self) -> dict[str, np.ndarray]:
        """One row per star: the labels, scalar outputs and (N, K)/(N, W) list columns."""
        out: dict[str, np.ndarray] = {f"input_{k}": v for k, v in self.labels.items()}
        out.update(
            g_fakemag=self.g_fakemag,
            g_fakemag_error=self.g_fakemag_error,
            abs_g=self.abs_g,
            coefficients=self.coefficients.astype(np.float32),
            coefficient_errors=self.coefficient_errors.astype(np.float32),
            flux=self.flux.astype(np.float32),
            flux_error=self.flux_error.astype(np.float32),
            flux_10pc=self.flux_10pc.astype(np.float32),
        )
        return out

    def metadata(self) -> dict[str, Any]:
        from xpengine.tasks.common import FLUX_UNIT, NORMALISED_FLUX_UNIT

        return {
            "task": "spectra_from_labels",
            "inputs": self.inputs,
            "coefficient_names": self.coefficient_names,
            "wavelength_nm": self.wavelength_nm,
            "units": {
                "coefficients": "XP representation / G flux (dimensionless)",
                "flux": NORMALISED_FLUX_UNIT,
                "flux_10pc": FLUX_UNIT,
                "abs_g": "mag",
            },
            "note": "each coefficient decoded independently: the spectrum is the vector of marginal means; "
            "flux_error propagates the marginal sigma as independent",
        }


def spectra_from_labels(
    predictor: Any,
    labels: Mapping[str, Any],
    *,
    request_luminosity: bool = True,
    batch_size: int | None = None,
) -> GeneratedSpectra:
    """Generate XP spectra from labels (paper §4.2).

    predictor: a :class:`~xpengine.inference.predictor.Predictor` (anything with `vocabulary` and
    `predict(values, request=, inputs=, batch_size=)`). labels: {name: scalar or (N,)} in the units of
    :data:`~xpengine.tasks.common.LABEL_INPUTS` (age in Gyr, ebv in mag, ...); NaN entries are
    left out of that star's context. request_luminosity: also request g_fakemag (when not given and in
    the vocabulary) for the absolute flux at 10 pc.
    """
    vocab = predictor.vocabulary
    values, inputs = labels_to_values(labels, vocab)
    xp = vocab.xp_names
    request = list(xp)
    want_lum = request_luminosity and "g_fakemag" in vocab and "g_fakemag" not in inputs
    if want_lum:
        request.append("g_fakemag")
    mu, sg = predict_matrix(predictor, values, request, inputs, batch_size=batch_size)  # (N, Q)
    coef, coef_err = mu[:, : len(xp)], sg[:, : len(xp)]
    n = values.shape[0]
    if "g_fakemag" in inputs:
        fakemag = values[:, vocab.index("g_fakemag")].astype(np.float64)
        fakemag_err = np.where(np.isfinite(fakemag), 0.0, np.nan)
    elif want_lum:
        fakemag, fakemag_err = mu[:, -1], sg[:, -1]
    else:
        fakemag = fakemag_err = np.full(n, np.nan)
    from xpengine.spectra import default_sampling

    sampling = default_sampling()
    flux = tokens_to_flux(coef, vocab, sampling)  # (N, W)
    flux_err = xp_flux_errors(coef_err, vocab, sampling)  # (N, W)
    flux_10pc, abs_g = absolute_flux_10pc(flux, fakemag)
    given = {
        k: np.broadcast_to(np.atleast_1d(np.asarray(v, dtype=np.float64)), (n,)).copy()
        for k, v in labels.items()
    }
    return GeneratedSpectra(
        labels=given,
        inputs=inputs,
        coefficient_names=list(xp),
        coefficients=coef,
        coefficient_errors=coef_err,
        wavelength_nm=np.asarray(sampling.wavelength_nm),
        flux=flux,
        flux_error=flux_err,
        g_fakemag=fakemag,
        g_fakemag_error=fakemag_err,
        abs_g=abs_g,
        flux_10pc=flux_10pc,
    )


@dataclass
class LabelSequence:
    """A one-parameter family of label sets: `vary` takes `values`, the `fixed` labels stay put.
    `absolute`: show the absolute flux at 10 pc (else the G-normalised flux) in the figure."""

    name: str
    vary: str
    values: np.ndarray
    fixed: dict[str, float] = field(default_factory=dict)
    absolute: bool = True

    def labels(self) -> dict[str, np.ndarray]:
        n = len(self.values)
        out = {k: np.full(n, float(v)) for k, v in self.fixed.items()}
        out[self.vary] = np.asarray(self.values, dtype=np.float64)
        return out


DEFAULT_SEQUENCES: tuple[LabelSequence, ...] = (
    LabelSequence("mass at fixed age", "mass", np.linspace(1.05, 1.15, 5), {"age": 7.5, "m_h": 0.0}),
    LabelSequence("age at fixed mass", "age", np.linspace(7.0, 8.0, 5), {"mass": 1.1, "m_h": 0.0}),
    LabelSequence(
        "[M/H] at fixed Teff, logg",
        "m_h",
        np.linspace(-1.0, 0.4, 5),
        {"teff": 4700.0, "logg": 2.5},
        absolute=False,
    ),
)
"""The three panels of the paper's Fig. 7: mass 1.05–1.15 M☉ at age 7.5 Gyr and solar [M/H] (absolute
flux), age 7–8 Gyr at 1.1 M☉ (absolute flux), [M/H] −1.0…+0.4 (G-normalised). The paper draws its tuples
from MIST isochrones; without isochrones the engine gives only the labels named here and lets the model
fill in the rest (its marginal expectation)."""


def label_sequences(
    predictor: Any,
    sequences: Sequence[LabelSequence] = DEFAULT_SEQUENCES,
    *,
    batch_size: int | None = None,
) -> list[tuple[LabelSequence, GeneratedSpectra]]:
    """Spectra along each label sequence (paper Fig. 7). Labels the vocabulary lacks are dropped from a
    sequence with a log message (a sequence whose varied label is missing is skipped)."""
    vocab = predictor.vocabulary
    from xpengine.tasks.common import LABEL_INPUTS

    out = []
    for seq in sequences:
        labels = {k: v for k, v in seq.labels().items() if LABEL_INPUTS.get(k, (k,))[0] in vocab}
        dropped = sorted(set(seq.labels()) - set(labels))
        if seq.vary not in labels:
            logger.info("sequence %r skipped: the vocabulary lacks %s", seq.name, seq.vary)
            continue
        if dropped:
            logger.info("sequence %r: labels %s not in the vocabulary, left out", seq.name, dropped)
        out.append((seq, spectra_from_labels(predictor, labels, batch_size=batch_size)))
    return out
