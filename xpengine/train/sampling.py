"""Per-epoch random context and request tokens (Leung & Bovy 2024 training generator; Zhang et al. 2026
§3.3), fully vectorised in torch on the device that holds the data.

For every star, every epoch:

1. shuffle its valid (finite) tokens and keep the first `n_context` (64);
2. mask a random number 0..`max_masked` (0..59) of those slots from the end, so the context holds
   n_context − masked = 5..64 tokens, or fewer when the star has fewer valid tokens
   (count = min(n_valid, n_context − masked), as in their generator);
3. draw `n_requests` distinct request tokens among the star's valid *requestable* tokens (the requested
   token may also be in the context, as in their training). A star with fewer requestable tokens than
   `n_requests` gets the rest of its request slots masked out.

Optional *focus* contexts (a departure from the paper, for short CPU schedules): a random fraction
`focus_fraction` of the stars draw their context from a fixed token set only (e.g. BP/RP 0–29 and the
colours, the catalogue's standard input) with 0..`focus_max_masked` slots masked, so that the input
the model is used with is common in training instead of a rare draw from all ~120 tokens. A star with
no valid focus token keeps the paper's rule. Requests are drawn as usual.

Optional *relevancy truncation* (`truncate_fraction`; a departure from the paper): a random fraction of the
stars, each batch, have each XP band cut at a random order count k ~ U{`truncate_min`..n} (every order ≥ k
left out of the context, requests unchanged). A simulated star keeps the orders its S/N makes relevant, so
how many are present tells a model how bright the star is; cutting bright stars' bands as faint ones are
cut weakens that cue, so that mass and age follow the spectrum rather than the archive's relevancy count
(session 15, `benchmarks/relevancy_sensitivity.py`). With a *count table* (`truncate_counts`: (BP, RP)
relevant-base counts and their frequencies, e.g. a whole sky's, `training/relevancy_counts.py`) a cut star
takes the pair of a random table row instead, so the cuts follow the archive's own mix of patterns while
staying independent of the star.

Optional *epoch pool* (`epoch_rows`): the stars of a pool (e.g. the simulated ones) are subsampled
afresh each epoch, so that a pool can be given a small share of the batches without always showing
the same few of its stars.

Random permutations are argsorts of uniform keys with invalid entries given key 2 (> any uniform), so
they sort to the end; no Python loop runs per star.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["SampledBatch", "epoch_rows", "sample_tokens"]


@dataclass
class SampledBatch:
    """One batch of sampled training inputs (all on the data's device); not to be confused with
    :class:`xpengine.features.tokens.TokenBatch`, the (N, T) token matrices built from catalogue rows.

    context_ids (B, W) int64, 0 = padding; context_values (B, W) float32 standardised (0 at padding),
    W = min(n_context, T) (64 for the paper's vocabulary: no slot wasted on a smaller toy vocabulary); request_ids (B, k) int64 (0 where masked); targets, target_errors (B, k) float32
    standardised (0 where masked); request_mask (B, k) bool, True where a request exists.
    """

    context_ids: torch.Tensor
    context_values: torch.Tensor
    request_ids: torch.Tensor
    targets: torch.Tensor
    target_errors: torch.Tensor
    request_mask: torch.Tensor


def epoch_rows(
    n: int, pool: torch.Tensor | None, fraction: float, generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    """Row indices (M,) int64 of one epoch, in random order: every row outside `pool` ((n,) bool; None:
    no pool, then exactly `torch.randperm(n)`) and each pool row with probability `fraction`, drawn
    afresh from `generator` (whose state a checkpoint keeps, so a resumed run draws the same rows)."""
    if pool is None:
        return torch.randperm(n, generator=generator, device=device)
    keep = ~pool | (torch.rand(n, generator=generator, device=device) < fraction)  # (n,)
    rows = torch.nonzero(keep).squeeze(1)  # (M,)
    return rows[torch.randperm(rows.numel(), generator=generator, device=device)]


def _random_order(valid: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """valid (B, T) bool → (B, T) column indices: valid columns in random order, then invalid ones."""
    keys = torch.rand(valid.shape, generator=generator, device=valid.device)  # (B, T) in [0, 1)
    keys = torch.where(valid, keys, 2.0)  # (B, T)
    return torch.argsort(keys, dim=1)  # (B, T)


def _truncated(
    b: int,
    xp_band: torch.Tensor,
    xp_order: torch.Tensor,
    fraction: float,
    k_min: int,
    generator: torch.Generator | None,
    table: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """(B, T) bool: the XP tokens a batch's relevancy truncation leaves out (see `sample_tokens`)."""
    device = xp_band.device
    n_max = int(xp_order.max()) + 1
    if not 1 <= k_min <= n_max:
        raise ValueError(f"truncate_min must be in [1, {n_max}], got {k_min}")
    cut = torch.rand(b, generator=generator, device=device) < fraction  # (B,)
    if table is None:
        k = torch.randint(k_min, n_max + 1, (b, 2), generator=generator, device=device)  # (B, 2) per band
    else:
        counts, weights = table  # (M, 2) int64, (M,) float
        rows = torch.multinomial(weights.to(device), b, replacement=True, generator=generator)  # (B,)
        k = counts.to(device)[rows]  # (B, 2): a count ≥ n_max cuts nothing in that band
    is_xp = xp_band >= 0  # (T,)
    k_tok = k[:, xp_band.clamp(min=0)]  # (B, T) the count of each token's band
    return cut.unsqueeze(1) & is_xp.unsqueeze(0) & (xp_order.unsqueeze(0) >= k_tok)


def _check_truncation(
    t: int,
    xp_band: torch.Tensor | None,
    xp_order: torch.Tensor | None,
    truncate_fraction: float,
    truncate_table: tuple[torch.Tensor, torch.Tensor] | None,
) -> None:
    """Raise ValueError for relevancy-truncation arguments `sample_tokens` cannot use."""
    if not 0.0 <= truncate_fraction <= 1.0:
        raise ValueError(f"truncate_fraction must be in [0, 1], got {truncate_fraction}")
    if truncate_fraction > 0 and (xp_band is None or xp_order is None or xp_band.shape != (t,)):
        raise ValueError(f"truncate_fraction > 0 needs xp_band and xp_order of shape ({t},)")
    if truncate_table is not None:
        counts, weights = truncate_table
        if (
            counts.ndim != 2
            or counts.shape[1] != 2
            or weights.shape != (counts.shape[0],)
            or counts.shape[0] == 0
        ):
            raise ValueError(
                f"truncate_table needs (M, 2) counts and (M,) weights, M > 0; got {tuple(counts.shape)} and "
                f"{tuple(weights.shape)}"
            )


def sample_tokens(
    values: torch.Tensor,
    errors: torch.Tensor,
    requestable: torch.Tensor,
    *,
    n_context: int = 64,
    max_masked: int = 59,
    n_requests: int = 1,
    request_weights: torch.Tensor | None = None,
    focus: torch.Tensor | None = None,
    focus_fraction: float = 0.0,
    focus_max_masked: int | None = None,
    xp_band: torch.Tensor | None = None,
    xp_order: torch.Tensor | None = None,
    truncate_fraction: float = 0.0,
    truncate_min: int = 3,
    truncate_table: tuple[torch.Tensor, torch.Tensor] | None = None,
    generator: torch.Generator | None = None,
) -> SampledBatch:
    """Sample context and request tokens for a batch of stars.

    values: (B, T) standardised, NaN = missing; errors: (B, T) standardised known errors (NaN → 0);
    requestable: (T,) bool, which tokens may be requested; request_weights: (T,) positive float or None
    (uniform): requests are drawn without replacement with probability ∝ weight (exponential-race
    keys −ln(u)/w, smallest first), so a few label tokens can be asked for more often than the 110 XP
    coefficients without changing the set of requestable tokens; generator: a torch.Generator on the same
    device as `values` (None: the global RNG); focus: (T,) bool or None, the focus token set;
    focus_fraction: probability that a star's context is drawn from `focus` only; focus_max_masked:
    masked slots for those stars are drawn in 0..focus_max_masked (None: `max_masked`); xp_band, xp_order:
    (T,) int64, each token's XP band (0 BP, 1 RP, −1 not an XP coefficient) and order; truncate_fraction:
    probability that a star's bands are cut at random order counts in truncate_min..n (module docstring;
    no random draw is made when it is 0, so runs without it draw exactly as before); truncate_table:
    None, or ((M, 2) int64 (BP, RP) counts, (M,) positive weights): a cut star's counts are a row drawn
    with probability ∝ weight instead.
    Returns a :class:`SampledBatch`.
    """
    if values.ndim != 2 or errors.shape != values.shape:
        raise ValueError(
            f"values {tuple(values.shape)} and errors {tuple(errors.shape)} must be equal (B, T)"
        )
    b, t = values.shape
    if requestable.shape != (t,):
        raise ValueError(f"requestable must have shape ({t},), got {tuple(requestable.shape)}")
    if not 0 <= max_masked < n_context:
        raise ValueError(f"max_masked must be in [0, n_context={n_context}), got {max_masked}")
    if not 1 <= n_requests <= t:
        raise ValueError(f"n_requests must be in [1, {t}], got {n_requests}")
    if not 0.0 <= focus_fraction <= 1.0:
        raise ValueError(f"focus_fraction must be in [0, 1], got {focus_fraction}")
    if focus_fraction > 0 and (focus is None or focus.shape != (t,)):
        raise ValueError(f"focus_fraction > 0 needs a focus mask of shape ({t},)")
    f_masked = max_masked if focus_max_masked is None else focus_max_masked
    if not 0 <= f_masked < n_context:
        raise ValueError(f"focus_max_masked must be in [0, n_context={n_context}), got {f_masked}")
    _check_truncation(t, xp_band, xp_order, truncate_fraction, truncate_table)
    device = values.device
    valid = torch.isfinite(values)  # (B, T)
    usable = (
        valid
        if truncate_fraction == 0
        else valid
        & ~_truncated(
            b,
            xp_band.to(device),
            xp_order.to(device),
            truncate_fraction,
            truncate_min,
            generator,
            truncate_table,
        )
    )  # (B, T) tokens that may enter the context
    in_context = usable  # (B, T) tokens a star's context may hold
    masked = torch.randint(0, max_masked + 1, (b,), generator=generator, device=device)  # (B,)
    if focus_fraction > 0:
        focus_d = focus.to(device).unsqueeze(0)  # (1, T)
        focused = torch.rand(b, generator=generator, device=device) < focus_fraction  # (B,)
        # A star without any valid focus token keeps the paper's rule rather than an empty context.
        focused &= (usable & focus_d).any(dim=1)
        in_context = usable & (~focused.unsqueeze(1) | focus_d)  # (B, T)
        f_mask = torch.randint(0, f_masked + 1, (b,), generator=generator, device=device)  # (B,)
        masked = torch.where(focused, f_mask, masked)  # (B,)

    # Context: a random permutation of the allowed valid tokens, cut to n_context slots.
    order = _random_order(in_context, generator)  # (B, T)
    width = min(t, n_context)
    order = order[:, :width]  # (B, W)
    n_valid = in_context.sum(dim=1)  # (B,)
    n_keep = torch.minimum(n_valid, n_context - masked)  # (B,)
    keep = torch.arange(width, device=device).unsqueeze(0) < n_keep.unsqueeze(1)  # (B, W)
    context_ids = torch.where(keep, order + 1, 0)  # (B, W)
    context_values = torch.where(keep, torch.gather(values, 1, order), 0.0).float()  # (B, W)

    # Requests: distinct random tokens among the valid requestable ones.
    can_request = valid & requestable.to(device).unsqueeze(0)  # (B, T)
    if request_weights is None:
        req_order = _random_order(can_request, generator)[:, :n_requests]  # (B, k)
    else:
        u = torch.rand(can_request.shape, generator=generator, device=device)  # (B, T)
        race = -torch.log1p(-u) / request_weights.to(device).unsqueeze(0)  # (B, T) Exp(w) arrival times
        race = torch.where(can_request, race, torch.inf)  # (B, T)
        req_order = torch.argsort(race, dim=1)[:, :n_requests]  # (B, k)
    request_mask = torch.gather(can_request, 1, req_order)  # (B, k)
    request_ids = torch.where(request_mask, req_order + 1, 0)  # (B, k)
    targets = torch.where(request_mask, torch.gather(values, 1, req_order), 0.0).float()  # (B, k)
    errs = torch.nan_to_num(torch.gather(errors, 1, req_order), nan=0.0)  # (B, k)
    target_errors = torch.where(request_mask, errs, 0.0).float()  # (B, k)
    return SampledBatch(
        context_ids=context_ids,
        context_values=context_values,
        request_ids=request_ids,
        targets=targets,
        target_errors=target_errors,
        request_mask=request_mask,
    )
