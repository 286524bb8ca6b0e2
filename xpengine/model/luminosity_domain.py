"""Where a model learned the pseudo-luminosity: the range of a reddening-free absolute-magnitude index over
its training stars, and the test that keeps a star's parallax out of its context outside that range.

A model learns the `g_fakemag` token (fakemag = ϖ[mas] · 10^(0.2 G) = 10^(0.2 M_G,obs + 2), Leung & Bovy
2024) only from the training stars that carry it. For gaia-xp those are the simulated giants alone (real
APOGEE stars have no parallax in its training set), so a dwarf's fakemag, with a dwarf's spectrum, is a
combination it never saw: on 478 simulated dwarfs of the embedded sky its Teff σ was 526 K with g_fakemag in
the context against 158 K without, logg +0.61 dex off (0.71 spread, against −0.15 / 0.14), and 18 Sco
with its DR3 parallax came out at logg 4.73 against 4.31 without (literature 4.44).

The index Q = M_G,obs − R·(BP−RP)_obs, R = A_G / E(BP−RP) = 2.740 / 1.339 (Casagrande & VandenBerg 2018),
does not change with extinction to first order, so a reddened giant keeps its place while a dwarf lies
above nearly every giant (on the seed-12 simulated sky: giants Q ≤ 1.02 at 99.9 %, dwarfs a median 2.67). A
model records `index_max`, the `QUANTILE` of Q over its training stars with fakemag S/N ≥ `MIN_SNR`
(`LearnedTokens.luminosity_index_max`, written by the training loop, by
`training/record_unseen_inputs.py` for older checkpoints). A star is outside when its fakemag exceeds, by
2σ, the fakemag of Q = index_max at its BP−RP raised by 2σ (both conservative). Tested in fakemag space, so
that non-positive fakemags (a noisy parallax) need no logarithm: they are never outside.
"""

from __future__ import annotations

import numpy as np

__all__ = ["A_G_OVER_E_BP_RP", "MIN_SNR", "QUANTILE", "index_max_from_training", "outside_domain"]

A_G_OVER_E_BP_RP = 2.740 / 1.339
"""R of the index: A_G / E(BP−RP) (Casagrande & VandenBerg 2018; `xpengine.catalog.flag_policy`)."""
QUANTILE = 0.999
MIN_SNR = 5.0


def index_max_from_training(
    fakemag: np.ndarray, fakemag_error: np.ndarray, bprp: np.ndarray
) -> tuple[float, int] | None:
    """(index_max, number of stars behind it) from training stars' physical g_fakemag, its error and
    BP−RP (N,) each, NaN = absent; None when fewer than 100 stars have both with fakemag S/N ≥ MIN_SNR."""
    f = np.asarray(fakemag, dtype=np.float64)
    sf = np.asarray(fakemag_error, dtype=np.float64)
    c = np.asarray(bprp, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        ok = np.isfinite(f) & np.isfinite(sf) & np.isfinite(c) & (f > 0) & (f >= MIN_SNR * sf)
        if ok.sum() < 100:
            return None
        q = 5.0 * np.log10(f[ok]) - 10.0 - A_G_OVER_E_BP_RP * c[ok]
    return float(np.quantile(q, QUANTILE)), int(ok.sum())


def outside_domain(
    index_max: float | None,
    fakemag: np.ndarray | None,
    fakemag_error: np.ndarray | None,
    bprp: np.ndarray | None,
    bprp_error: np.ndarray | None,
) -> np.ndarray | None:
    """(N,) bool: the star's fakemag is above the model's training range at 2σ (see the module). None when
    the model records no range or the vocabulary has no g_fakemag or BP−RP token; False where either
    token is absent."""
    if index_max is None or fakemag is None or bprp is None:
        return None
    f = np.asarray(fakemag, dtype=np.float64)
    sf = np.nan_to_num(np.asarray(fakemag_error, dtype=np.float64))
    c = np.asarray(bprp, dtype=np.float64) + 2.0 * np.nan_to_num(np.asarray(bprp_error, dtype=np.float64))
    with np.errstate(invalid="ignore", over="ignore"):
        limit = 10.0 ** (0.2 * (index_max + A_G_OVER_E_BP_RP * c) + 2.0)
        return np.isfinite(f) & np.isfinite(limit) & (f - 2.0 * sf > limit)
