"""Robust Gaussian negative log-likelihood with known label errors.

Zhang et al. (2026) Eq. 2, after Leung & Bovy (2024) and astroNN: for a target y with known measurement
error σ_known and a prediction (ŷ, ln σ²_pred), per element

    J = ½ [ (y − ŷ)² / V + ln V ],   V = σ²_pred + σ²_known,

all in standardised units. Elements without a target are masked out; the sum is divided by the number
of stars in the batch (not the number of valid elements), as in Leung & Bovy's code.
"""

from __future__ import annotations

import torch

__all__ = ["gaussian_nll"]


def gaussian_nll(
    target: torch.Tensor,
    mean: torch.Tensor,
    logvar: torch.Tensor,
    known_error: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Masked robust Gaussian NLL, summed and divided by the batch size.

    target, mean, logvar, known_error: (B, Q) standardised; mask: (B, Q) bool, True where the target
    exists (default: where the target is finite). Masked elements may hold NaN; they contribute
    nothing, not even NaN gradients. Computed in float32 whatever the input dtype (autocast outputs).
    Returns a scalar tensor.
    """
    if not (target.shape == mean.shape == logvar.shape == known_error.shape):
        raise ValueError(
            f"shapes differ: target {tuple(target.shape)}, mean {tuple(mean.shape)}, "
            f"logvar {tuple(logvar.shape)}, known_error {tuple(known_error.shape)}"
        )
    if mask is None:
        mask = torch.isfinite(target)
    elif mask.shape != target.shape:
        raise ValueError(f"mask shape {tuple(mask.shape)} differs from target {tuple(target.shape)}")
    zero = torch.zeros((), dtype=torch.float32, device=target.device)
    y = torch.where(mask, target.float(), zero)  # (B, Q)
    mu = torch.where(mask, mean.float(), zero)  # (B, Q)
    lv = torch.where(mask, logvar.float(), zero)  # (B, Q)
    err = torch.where(mask, known_error.float(), zero)  # (B, Q)
    var = torch.exp(lv) + err.square()  # (B, Q)
    per_element = 0.5 * ((y - mu).square() / var + torch.log(var))  # (B, Q)
    return torch.where(mask, per_element, zero).sum() / target.shape[0]
