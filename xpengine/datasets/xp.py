"""The two ways XP data enter a training set, both ending in the engine's XP representation.

1. Archive continuous coefficients (`xp_continuous_mean_spectrum`): projected with
   `xpengine.spectra.project_coefficients` (errors with the archive correlations when given), the same
   projection `xpengine.spectra.representation.token_representation()` applies inside `build_tokens`
   for the inference pipeline (which propagates errors without correlations).
2. Sampled spectra (336–1020 nm / 2 nm, W m^-2 nm^-1, e.g. the APOGEE×XP file or an archive
   `XP_SAMPLED`): `xpengine.spectra.coefficients_from_sampled`, errors estimated by
   `xpengine.spectra.sampled_errors.estimate_representation_errors` (or the conservative propagation).

Both return the columns `xpengine.features.build_tokens` reads (`bp_coefficients`,
`bp_coefficient_errors`, `bp_n_relevant_bases`, same for RP) as (N, n) float64 arrays, already in the
representation, so `build_tokens` is called with `representation=None` and then only masks by
relevancy and divides by the G flux. Same representation, same G normalisation: a star reaches the
model with the same tokens whichever way its XP spectrum arrived (tested on Gaia DR3
5937083312263887616, the one real star with both an archive continuous and an archive sampled spectrum).
"""

from __future__ import annotations

import logging

import numpy as np

__all__ = [
    "XP_ERROR_MODELS",
    "archive_xp_columns",
    "sampled_xp_columns",
]

logger = logging.getLogger(__name__)

XP_ERROR_MODELS: tuple[str, ...] = ("estimated", "propagated", "unknown")
"""How sampled-spectrum token errors are made: `estimated` (`xpengine.spectra.sampled_errors`, median-unbiased noise level),
`propagated` (independent-pixel propagation: a conservative upper bound, ~200× too large), `unknown`
(NaN → stored as 0, the loss then relies on the predicted variance alone)."""


def sampled_xp_columns(
    flux: np.ndarray,
    flux_error: np.ndarray,
    *,
    n_relevant: int | None = None,
    error_model: str = "estimated",
) -> dict[str, np.ndarray]:
    """build_tokens XP columns from sampled spectra.

    flux, flux_error: (N, n_wl) absolute merged flux and 1-sigma errors [W m^-2 nm^-1] on GaiaXPy's
    default grid (336–1020 nm, 2 nm). n_relevant: value written to `X_n_relevant_bases` for every star
    (None = all coefficients of the band relevant: a sampled spectrum carries no relevancy
    information). Returns (N, n) float64 coefficient/error arrays [e⁻/s] and (N,) float64 counts.
    """
    from xpengine.spectra import coefficients_from_sampled, default_representation, sampled_coefficient_errors
    from xpengine.spectra.sampled_errors import estimate_representation_errors

    if error_model not in XP_ERROR_MODELS:
        raise ValueError(f"error_model must be one of {XP_ERROR_MODELS}, got {error_model!r}")
    rep = default_representation()
    f = np.asarray(flux, dtype=np.float64)
    e = np.asarray(flux_error, dtype=np.float64)
    if f.ndim != 2 or f.shape[1] != rep.sampling.n_wavelength or e.shape != f.shape:
        raise ValueError(
            f"flux {f.shape} and flux_error {e.shape} must both be (N, {rep.sampling.n_wavelength}) "
            f"arrays on the {rep.sampling.grid_id} grid"
        )
    bp, rp = coefficients_from_sampled(f, rep)  # (N, n_bp), (N, n_rp) e-/s
    if error_model == "estimated":
        bp_e, rp_e = estimate_representation_errors(e, rep)
    elif error_model == "propagated":
        bp_e, rp_e = sampled_coefficient_errors(e, rep)
    else:
        bp_e, rp_e = np.full_like(bp, np.nan), np.full_like(rp, np.nan)
    n = f.shape[0]
    bp_nrel = np.full(n, rep.sampling.n_bp if n_relevant is None else n_relevant, dtype=np.float64)
    rp_nrel = np.full(n, rep.sampling.n_rp if n_relevant is None else n_relevant, dtype=np.float64)
    return {
        "bp_coefficients": bp,
        "bp_coefficient_errors": bp_e,
        "bp_n_relevant_bases": bp_nrel,
        "rp_coefficients": rp,
        "rp_coefficient_errors": rp_e,
        "rp_n_relevant_bases": rp_nrel,
    }


def archive_xp_columns(
    bp: np.ndarray,
    rp: np.ndarray,
    bp_errors: np.ndarray,
    rp_errors: np.ndarray,
    bp_n_relevant: np.ndarray,
    rp_n_relevant: np.ndarray,
    *,
    bp_correlations: np.ndarray | None = None,
    rp_correlations: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """build_tokens XP columns from archive continuous coefficients, in the representation.

    bp, rp, bp_errors, rp_errors: (N, n) [e⁻/s], a missing band as a NaN row. bp/rp_n_relevant: (N,)
    `X_n_relevant_bases` (NaN = unknown). bp/rp_correlations: (N, n(n−1)/2) archive correlations or None
    (errors then propagated as uncorrelated).
    """
    from xpengine.spectra import project_coefficient_errors, project_coefficients

    pbp, prp = project_coefficients(bp, rp)
    ebp, erp = project_coefficient_errors(bp_errors, rp_errors, bp_correlations, rp_correlations)
    return {
        "bp_coefficients": pbp,
        "bp_coefficient_errors": ebp,
        "bp_n_relevant_bases": np.asarray(bp_n_relevant, dtype=np.float64),
        "rp_coefficients": prp,
        "rp_coefficient_errors": erp,
        "rp_n_relevant_bases": np.asarray(rp_n_relevant, dtype=np.float64),
    }
