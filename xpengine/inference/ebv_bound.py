"""The most E(B−V) a star's observed colour allows, and E(B−V) estimates held to it.

Extinction only reddens: a star's observed BP−RP is its intrinsic colour plus E(BP−RP) = k · E(B−V) (k the
catalogue's extinction law at its labels, `xpengine.catalog.extinction`). No star is bluer than the bluest
intrinsic colour c_blue a star of its Teff, logg and [M/H] can have, so its E(B−V) is at most

    E_c = (BP−RP − c_blue(Teff)) / k,   σ_c = sqrt(σ_BP−RP² + σ_scale² + (c_blue(Teff) − c_blue(Teff + σ_Teff))²) / k,

with c_blue the bluest BP−RP on real stars' scale (`isochrone_grid.colour_scale`) of the MIST grid points no
hotter than Teff within 2σ of its logg and [M/H], and σ_scale that scale's scatter there (at least 0.03
mag). The bound holds at 2σ: E_max = E_c + 2σ_c (`colour_ebv_max`).

The model's E(B−V) of a star outside its training (hot stars, M dwarfs: the model learned E(B−V) on giants)
is an extrapolation, and the real test split shows it: 27 % of its hot stars and 28 % of its M stars had an
E(B−V) their own colour rules out, up to 7.9 mag for a B star of BP−RP −0.32 (review of session 29). Such
an E(B−V) also dereddens the star's G for its isochrone distance, which then came out at 0.02 pc. An input
E(B−V) (a dust map's: the whole column to infinity, or a placeholder) is held to the same bound before
the isochrone fit takes it.

`bound_ebv` treats the estimate (value ± σ) as a normal likelihood and the bound as the probability
Φ((E_c − E) / σ_c) that a true E(B−V) of E is allowed, on E ≥ 0: where more than 2.3 % of the normal lies
above E_max (E_max − value < 2σ), value and σ become that posterior's mean and standard deviation; elsewhere
nothing changes. An estimate above E_max is flagged EBV_COLOUR_BOUND: it is impossible, not just uncertain,
an extrapolation whose σ is not to be trusted either, so its σ is first widened to at least
(value − E_c) / 2 (the colour then decides: it comes out near E_c ± σ_c, the bound's own uncertainty; a
confident estimate far above would otherwise outweigh the bound's Gaussian tail).
"""

from __future__ import annotations

import numpy as np

__all__ = ["BOUND_SIGMA", "bluest_colour", "bound_ebv", "colour_ebv_bound", "colour_ebv_max"]

BOUND_SIGMA = 2.0
"""The bound's σ at which an estimate counts as above it (E_max = E_c + 2σ_c), the distance (in the estimate's
σ) below E_max within which an estimate is held to it, and the width (in σ) of the logg and [M/H] windows."""
_NODES = 257  # points of the posterior's numerical moments


_TABLES: dict[int, tuple] = {}  # id(grid) -> (grid, table): a grid's arrays make it unhashable
_T0, _DT = 2600.0, 25.0  # [K] the table's Teff cells
_G0, _DG = -0.5, 0.1  # [dex] its logg cells


def _blue_table(grid) -> np.ndarray:
    """(2, Teff cell, logg cell, [Fe/H] node): the bluest real-scale BP−RP, and the bluest of that colour less
    its scatter, of the grid's points in that logg cell and [Fe/H] node no hotter than the Teff cell; +inf
    where none."""
    hit = _TABLES.get(id(grid))
    if hit is None or hit[0] is not grid:
        colour, var = grid.real_colour
        colour = colour.astype(np.float64)
        ti = ((grid.teff - _T0) // _DT).astype(np.int64)
        gi = ((grid.logg - _G0) // _DG).astype(np.int64)
        nodes = np.asarray(grid.feh_nodes, dtype=np.float64)
        fi = np.abs(grid.feh.astype(np.float64)[:, None] - nodes[None, :]).argmin(axis=1)
        table = np.full((2, ti.max() + 1, gi.max() + 1, nodes.size), np.inf)
        np.minimum.at(table[0], (ti, gi, fi), colour)
        np.minimum.at(table[1], (ti, gi, fi), colour - np.sqrt(var.astype(np.float64)))
        hit = _TABLES[id(grid)] = (grid, np.minimum.accumulate(table, axis=1))
        while len(_TABLES) > 4:
            del _TABLES[next(iter(_TABLES))]
    return hit[1]


def _window(value, sigma, lo_cell, step, n, pad=0.0) -> tuple[np.ndarray, np.ndarray]:
    """First and last cell (N,) within value ± (BOUND_SIGMA σ + pad); every cell where either is NaN."""
    v, s = (np.asarray(a, dtype=np.float64) for a in (value, sigma))
    ok = np.isfinite(v) & np.isfinite(s)
    half = BOUND_SIGMA * np.abs(np.where(ok, s, 0.0)) + pad
    first = np.clip(np.floor((np.where(ok, v, 0.0) - half - lo_cell) / step), 0, n - 1).astype(np.int64)
    last = np.clip(np.floor((np.where(ok, v, 0.0) + half - lo_cell) / step), 0, n - 1).astype(np.int64)
    return np.where(ok, first, 0), np.where(ok, last, n - 1)


def bluest_colour(
    teff_max, logg=None, logg_error=None, m_h=None, m_h_error=None, grid=None, *, less_scatter: bool = False
) -> np.ndarray:
    """(N,) the bluest intrinsic BP−RP [mag] (module docstring; with `less_scatter`, of the colour less the
    real-star scale's scatter) of a star no hotter than `teff_max` [K], among the grid points within 2σ of
    its logg and [M/H] (± σ; None or NaN: any): NaN where `teff_max` is not finite; below the grid's coolest
    point, the coolest cell's; above its hottest, the hottest's."""
    if grid is None:
        from xpengine.inference.isochrone_grid import load_fit_grid

        grid = load_fit_grid()
    table = _blue_table(grid)[int(less_scatter)]
    nt, ng, nf = table.shape
    t = np.asarray(teff_max, dtype=np.float64)
    n = t.shape[0]
    nan = np.full(n, np.nan)
    coolest = int(np.argmax(np.isfinite(table).any(axis=(1, 2))))  # the first cell that holds a point
    ti = np.clip(np.floor((np.where(np.isfinite(t), t, _T0) - _T0) / _DT), coolest, nt - 1).astype(np.int64)
    g0, g1 = _window(
        nan if logg is None else logg, nan if logg_error is None else logg_error, _G0, _DG, ng, _DG
    )
    nodes = np.asarray(grid.feh_nodes, dtype=np.float64)
    # [M/H] ± 2σ to nodes: those within it and the nearest beyond each side (every node where unknown)
    mh = np.asarray(nan if m_h is None else m_h, dtype=np.float64)
    s = np.abs(np.asarray(nan if m_h_error is None else m_h_error, dtype=np.float64))
    ok = np.isfinite(mh) & np.isfinite(s)
    lo = np.where(ok, mh - BOUND_SIGMA * np.where(ok, s, 0.0), -np.inf)
    hi = np.where(ok, mh + BOUND_SIGMA * np.where(ok, s, 0.0), np.inf)
    f0 = np.clip(np.searchsorted(nodes, lo, side="right") - 1, 0, nf - 1)
    f1 = np.clip(np.searchsorted(nodes, hi, side="left"), 0, nf - 1)
    out = np.empty(n)
    for i in range(n):
        out[i] = table[ti[i], g0[i] : g1[i] + 1, f0[i] : f1[i] + 1].min()
        if not np.isfinite(out[i]):  # no point of that logg and [M/H] this cool: any logg and [M/H]
            out[i] = table[ti[i]].min()
    return np.where(np.isfinite(t), out, np.nan)


def colour_ebv_bound(
    teff, teff_error, bp_rp, bp_rp_error, k_c, logg=None, logg_error=None, m_h=None, m_h_error=None, grid=None
) -> tuple[np.ndarray, np.ndarray]:
    """(N,) E_c and σ_c [mag] (module docstring) of stars of Teff ± σ [K] (and logg, [M/H] ± σ where given),
    observed BP−RP ± σ [mag] and E(BP−RP)/E(B−V) k_c; NaN (no bound) where the Teff, the colour or k_c is
    not finite. A NaN σ of the Teff or the colour counts as 0."""
    t, st = (np.asarray(a, dtype=np.float64) for a in (teff, teff_error))
    c, sc = (np.asarray(a, dtype=np.float64) for a in (bp_rp, bp_rp_error))
    k = np.asarray(k_c, dtype=np.float64)
    labels = (logg, logg_error, m_h, m_h_error, grid)
    with np.errstate(invalid="ignore", divide="ignore"):
        blue = bluest_colour(t, *labels)
        scale = blue - bluest_colour(t, *labels, less_scatter=True)
        # (never negative: where no point of the star's logg and [M/H] is as cool, `bluest_colour` falls
        # back to any point's, which can make the hotter Teff's colour the redder one)
        hotter = np.maximum(
            blue - bluest_colour(t + np.where(np.isfinite(st), np.abs(st), 0.0), *labels), 0.0
        )
        sigma = np.sqrt(np.where(np.isfinite(sc), sc, 0.0) ** 2 + scale**2 + hotter**2) / k
        e_c = (c - blue) / k
        ok = np.isfinite(e_c) & np.isfinite(sigma) & (k > 0)
    return np.where(ok, e_c, np.nan), np.where(ok, sigma, np.nan)


def colour_ebv_max(*args, **kwargs) -> np.ndarray:
    """(N,) E_max = E_c + 2σ_c [mag], at least 0 (`colour_ebv_bound`'s arguments); NaN: no bound."""
    e_c, sigma = colour_ebv_bound(*args, **kwargs)
    return np.maximum(e_c + BOUND_SIGMA * sigma, 0.0)


def bound_ebv(ebv, ebv_error, e_c, sigma_c) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """E(B−V) estimates (value, σ; N,) held to their bounds (E_c, σ_c: `colour_ebv_bound`; NaN: none) as the
    module docstring says; returns the new value, σ and (N,) bool where the estimate was above E_max (flag
    EBV_COLOUR_BOUND). An estimate without a finite σ > 0 is clipped to [0, E_max]."""
    import torch

    e = np.asarray(ebv, dtype=np.float64).copy()
    s = np.asarray(ebv_error, dtype=np.float64).copy()
    bc, bs = (np.asarray(a, dtype=np.float64) for a in (e_c, sigma_c))
    bs = np.maximum(bs, 1e-3)  # a bound known to better than 1 mmag is not (and σ_c 0 would divide by 0)
    m = np.maximum(bc + BOUND_SIGMA * bs, 0.0)
    with np.errstate(invalid="ignore"):
        has_sigma = np.isfinite(s) & (s > 0)
        near = np.isfinite(e) & np.isfinite(m) & np.where(has_sigma, m - e < BOUND_SIGMA * s, e > m)
        above = np.isfinite(e) & (e > m)
    rows = np.flatnonzero(near & has_sigma)
    if rows.size:
        # an estimate above E_max: its σ widened (module docstring); then Φ leaves nothing beyond E_c + 8σ_c
        wide = np.where(above[rows], np.maximum(s[rows], (e[rows] - bc[rows]) / BOUND_SIGMA), s[rows])
        hi = np.maximum(bc[rows] + 8.0 * bs[rows], 4.0 * bs[rows])
        x = np.linspace(0.0, 1.0, _NODES)[None, :] * hi[:, None]
        z = torch.from_numpy((bc[rows, None] - x) / bs[rows, None])
        logw = -0.5 * ((x - e[rows, None]) / wide[:, None]) ** 2 + torch.special.log_ndtr(z).numpy()
        w = np.exp(logw - logw.max(axis=1, keepdims=True))
        w[:, [0, -1]] *= 0.5  # the trapezoid rule
        w /= w.sum(axis=1, keepdims=True)
        mean = (w * x).sum(axis=1)
        # the nodes' spacing sets the smallest σ the sums can resolve
        var = (w * (x - mean[:, None]) ** 2).sum(axis=1) + (hi / (_NODES - 1)) ** 2 / 12.0
        e[rows], s[rows] = mean, np.sqrt(var)
    clip = near & ~has_sigma
    e[clip] = np.clip(e[clip], 0.0, m[clip])
    return e, s, above
