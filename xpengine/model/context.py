"""Turning standardised token matrices into model inputs, and running the model on them in batches.

Shared by validation during training and by the :class:`~xpengine.inference.predictor.Predictor`.
A star's context is the set of its valid (finite) values among chosen input columns, packed to the
left of a (N, L) id/value pair with padding id 0 after them; L is the largest count in the batch,
so a batch of stars with few tokens costs little.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from xpengine.model.transformer import XPTransformer

__all__ = ["autocast_context", "pack_context", "predict_standardized"]


def pack_context(
    values: torch.Tensor, columns: torch.Tensor, min_length: int = 1
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pack each row's finite values among `columns` to the left.

    values: (N, T) float standardised, NaN = missing; columns: (C,) int64 column indices (0-based).
    Returns ids (N, L) int64 (column + 1, 0 = padding), vals (N, L) float32 (0 at padding) and the
    number of valid tokens per row (N,) int64, with L = max(min_length, largest count). Tokens keep the
    order of `columns` (the model does not care).
    """
    sub = values.index_select(1, columns)  # (N, C)
    valid = torch.isfinite(sub)  # (N, C)
    # Stable sort of "is missing" puts valid entries first in their original order.
    order = torch.argsort((~valid).to(torch.int8), dim=1, stable=True)  # (N, C)
    n_valid = valid.sum(dim=1)  # (N,)
    length = max(min_length, int(n_valid.max().item()) if sub.shape[0] else 0)
    order = order[:, :length]  # (N, L)  (L ≤ C unless min_length > C)
    keep = torch.gather(valid, 1, order)  # (N, L)
    ids = torch.where(keep, columns[order] + 1, 0)  # (N, L)
    vals = torch.where(keep, torch.gather(sub, 1, order), 0.0).float()  # (N, L)
    if ids.shape[1] < min_length:  # fewer columns than slots asked for: pad
        extra = min_length - ids.shape[1]
        ids = torch.nn.functional.pad(ids, (0, extra))  # (N, L)
        vals = torch.nn.functional.pad(vals, (0, extra))  # (N, L)
    return ids, vals, n_valid


def autocast_context(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """torch.autocast for reduced-precision `dtype` (bfloat16/float16) on `device`; a no-op for None or
    float32."""
    if dtype is None or dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _chunks(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


@torch.inference_mode()
def predict_standardized(
    model: XPTransformer,
    values: torch.Tensor,
    input_columns: torch.Tensor,
    request_columns: torch.Tensor,
    *,
    batch_size: int = 4096,
    autocast_dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Means and log-variances of the requested tokens for every row, in standardised units.

    values: (N, T) standardised on the model's device, NaN = missing; input_columns: (C,) and
    request_columns: (Q,) int64 0-based columns. The encoder runs once per star and all Q requests are
    decoded together. Rows with no valid input get NaN. Returns mean (N, Q), logvar (N, Q) float32 and
    the number of context tokens used per row (N,). The model is used as it is (call `.eval()` first).
    """
    device = values.device
    n, q = values.shape[0], request_columns.shape[0]
    mean = torch.full((n, q), float("nan"), device=device)  # (N, Q)
    logvar = torch.full((n, q), float("nan"), device=device)  # (N, Q)
    counts = torch.zeros(n, dtype=torch.int64, device=device)  # (N,)
    req_ids = (request_columns + 1).unsqueeze(0)  # (1, Q)
    for sl in _chunks(n, batch_size):
        ids, vals, n_valid = pack_context(values[sl], input_columns)  # (b, L), (b, L), (b,)
        counts[sl] = n_valid
        with autocast_context(device, autocast_dtype):
            ctx, pad, _ = model.encode(ids, vals)  # (b, L, D)
            m, lv, _ = model.decode(req_ids.expand(ids.shape[0], q), ctx, pad)  # (b, Q)
        has = (n_valid > 0).unsqueeze(1)  # (b, 1)
        mean[sl] = torch.where(has, m.float(), float("nan"))
        logvar[sl] = torch.where(has, lv.float(), float("nan"))
    return mean, logvar, counts
