"""Relevancy masks of XP coefficients (Gaia DR3 `bp_n_relevant_bases` / `rp_n_relevant_bases`).

Gaia DR3 (De Angeli et al. 2023, Carrasco et al. 2021) marks only the first `X_n_relevant_bases`
coefficients of each band as significant. Zhang et al. (2026, §2.2) and Leung & Bovy (2024) set the
other coefficients to NaN so the model never reads them, and, because the pipeline's flags for the
highest orders are unreliable, copy the relevancy of BP coefficient 51 to BP 52–54 and of RP 51 to
RP 52–54 (indices 51 → 52–54 and 106 → 107–109 in the 110-long BP+RP vector).

General band length n (Gaia DR4 will have 51 BP coefficients): the relevancy of band index
p = min(propagate_from, n − 1) (default propagate_from = 51) is copied to every higher index p+1 … n−1
of the same band. Exactly:

- n = 55 (DR3): index 51 → 52, 53, 54 (the paper's rule);
- n = 54: 51 → 52, 53; n = 53: 51 → 52;
- n ≤ 52 (e.g. DR4 BP, n = 51): p = n − 1 is the last index, nothing lies above it, so the mask is
  simply "the first n_relevant coefficients" with no propagation.

In effect, for n > 52 a band with n_relevant ≥ 52 is fully relevant and a band with n_relevant ≤ 51
keeps its first n_relevant coefficients. `propagate_from=None` switches propagation off.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "PAPER_PROPAGATE_FROM",
    "apply_relevancy",
    "propagate_relevancy",
    "relevancy_mask",
    "xp_relevancy_mask",
]

PAPER_PROPAGATE_FROM: int = 51
"""Band index whose relevancy the paper copies to the higher orders (BP 51, RP 51 ≡ 106 in BP+RP)."""


def propagate_relevancy(mask: np.ndarray, propagate_from: int | None = PAPER_PROPAGATE_FROM) -> np.ndarray:
    """Copy the relevancy of band index p = min(propagate_from, n − 1) to indices p+1 … n−1.

    mask: (N, n) bool, one band. Returns a new (N, n) bool array (the input is not modified).
    See the module docstring for what this does for each n.
    """
    mask = np.array(mask, dtype=bool, copy=True)
    if mask.ndim != 2:
        raise ValueError(f"relevancy mask must be (N, n_coefficients), got shape {mask.shape}")
    if propagate_from is None:
        return mask
    if propagate_from < 0:
        raise ValueError(f"propagate_from must be a non-negative band index, got {propagate_from}")
    n = mask.shape[1]
    p = min(propagate_from, n - 1)
    if p + 1 < n:
        mask[:, p + 1 :] = mask[:, p : p + 1]
    return mask


def relevancy_mask(
    n_relevant: np.ndarray,
    n_coefficients: int,
    *,
    propagate_from: int | None = PAPER_PROPAGATE_FROM,
) -> np.ndarray:
    """Relevancy mask (N, n_coefficients) of one band from `X_n_relevant_bases` (N,).

    Coefficient k is relevant when k < n_relevant (Gaia DR3 definition), then the paper's
    propagation is applied (`propagate_relevancy`). n_relevant may be float with NaN: an unknown
    count (NaN) marks the whole band relevant; whether the band exists at all is the caller's
    business (a missing band is masked by its NaN coefficients). Counts above n_coefficients are
    clipped; negative counts are an error.
    """
    if n_coefficients < 1:
        raise ValueError(f"n_coefficients must be >= 1, got {n_coefficients}")
    counts = np.asarray(n_relevant, dtype=np.float64)
    if counts.ndim != 1:
        raise ValueError(f"n_relevant must be a 1-D array (N,), got shape {counts.shape}")
    if np.any(counts < 0):
        bad = counts[counts < 0][:5]
        raise ValueError(f"n_relevant_bases must be >= 0, got {bad.tolist()}")
    counts = np.where(np.isnan(counts), n_coefficients, np.minimum(counts, n_coefficients))
    mask = np.arange(n_coefficients)[None, :] < counts[:, None]  # (N, n)
    return propagate_relevancy(mask, propagate_from)


def xp_relevancy_mask(
    bp_n_relevant: np.ndarray,
    rp_n_relevant: np.ndarray,
    n_bp: int,
    n_rp: int,
    *,
    propagate_from: int | None = PAPER_PROPAGATE_FROM,
) -> np.ndarray:
    """Relevancy mask (N, n_bp + n_rp) of the concatenated BP+RP vector (BP first, as in the vocabulary).

    With DR3 lengths this is the paper's 110-long mask: 51 → 52–54 and 106 → 107–109.
    """
    bp = relevancy_mask(bp_n_relevant, n_bp, propagate_from=propagate_from)
    rp = relevancy_mask(rp_n_relevant, n_rp, propagate_from=propagate_from)
    if bp.shape[0] != rp.shape[0]:
        raise ValueError(f"BP and RP counts have different lengths: {bp.shape[0]} and {rp.shape[0]}")
    return np.concatenate([bp, rp], axis=1)


def apply_relevancy(
    values: np.ndarray, errors: np.ndarray, mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Irrelevant coefficients → NaN value and 0 error (the project's "missing token" convention).

    values, errors, mask: (N, K). Returns new float arrays (values, errors) of shape (N, K); NaN
    values in the input, and NaN errors, also get error 0.
    """
    values = np.asarray(values)
    errors = np.asarray(errors)
    mask = np.asarray(mask, dtype=bool)
    if not (values.shape == errors.shape == mask.shape):
        raise ValueError(
            f"values {values.shape}, errors {errors.shape} and mask {mask.shape} must have the same shape"
        )
    out_v = np.where(mask, values, np.nan)
    out_e = np.where(mask & np.isfinite(out_v), errors, 0.0)
    out_e = np.where(np.isfinite(out_e), out_e, 0.0)
    return out_v, out_e
