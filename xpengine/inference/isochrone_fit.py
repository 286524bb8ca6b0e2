"""Mass and age of stars outside the model's mass/age domain (dwarfs, subgiants, hot stars) from MIST
isochrones, given the model's own Teff, logg and [M/H] (learned from real stars of every kind) and, where
the parallax is significant, the absolute G magnitude.

`gaia-xp` learned mass and age from simulated giants alone (Zhang et al. 2026's domain), so for any other
star its mass and age are extrapolations (a solar twin came out 2.3 M☉). The catalogue flags such stars
OUTSIDE_TRAINING_DOMAIN; with this module it also replaces their mass and age by the posterior mean and
standard deviation of a grid-based isochrone fit (flag MASS_AGE_FROM_ISOCHRONES), the way isoclassify or
BASTA work on a grid:

- grid: MIST v2.5 isochrones (`xpengine.simulate.isochrones`, the simulated sky's own models), EEP 202
  (ZAMS) to 808 (start of the TP-AGB), ages 10^8 to 10^10.15 yr (0.1 to 14.1 Gyr), [Fe/H] −3 to +0.5
  (13 nodes), 0.25 to 0.5 dex apart; the star's [M/H] is set against the scaled-solar [Fe/H] of the
  isochrone of the same total metallicity, as in the simulator. Absolute G from the MIST/C3K bolometric
  corrections at A_V = 0.
- prior of a grid point: Kroupa IMF × the initial-mass interval it stands for along its isochrone ×
  uniform in age (10^log_age, the nodes being equally spaced in log age) × the [Fe/H] interval of its
  node (flat in [Fe/H]; the end nodes and the end ages stand for half an interval); and, per star, the
  distance prior (`distance_prior`, `xpengine.inference.galactic_prior`, since session 21): ρ(d) d³ along its
  line of sight at the distance its apparent magnitude puts a point of that M_G, so a faint star is weighed
  as a magnitude-limited sample holds such stars. No population-dependent age prior: a dwarf's age is
  left to its data.
- likelihood: independent Gaussians in Teff, logg and [M/H] with the catalogue's calibrated σ, each with
  a floor (`SIGMA_FLOOR`: the spacing of the grid and the difference between the model's spectroscopic
  scale and MIST's), [M/H] with the half-spacing of the [Fe/H] nodes added in quadrature; with a
  parallax, also in M_G = G − 5 log10(d / 10 pc) − A_G with its σ from σ_d and σ_E(B−V) (floor 0.03 mag);
  with an observed BP−RP (since session 22), the one-sided bound extinction sets: a point redder than the
  star's observed colour costs ((BP−RP)₀ − BP−RP)² / σ², a bluer one nothing whatever its E(B−V). It
  decides where the model's Teff is uncertain (a real BP−RP −0.29 star of Teff 9,100 ± 2,800 K: 0.75 M☉
  without it, a 3.5 M☉ B star with it). With an E(B−V) known without the XP (the job's `--ebv` table; since
  session 23), the dereddened (BP−RP)₀ instead, on both sides: 0.05 mag of colour pins a G star's Teff where
  XP leave it ± 200–400 K. Either is compared with the grid point's MIST colour set on real stars' scale
  (`COLOUR_SCALE`, session 23: real M giants are up to 1 mag redder than MIST at their spectroscopic Teff),
  σ² the star's plus that scale's scatter (0.04–0.05 mag at 4,600–6,200 K, 0.24 for M stars).
- output: posterior mean and standard deviation of the present mass (MIST `star_mass`, the simulated
  sky's `mass` truth) and of ln age; age = exp(mean ln age) in Gyr with σ_age = age·σ_ln_age, the
  catalogue's convention for the model's own ages; and of the absolute G (since session 28), from which
  the catalogue takes the distance of a star without a significant parallax (DISTANCE_FROM_ISOCHRONES):
  with the distance prior, this is a distance posterior as StarHorse's or isoclassify's. Each star's sum runs over the grid points within χ² 36
  of it (likelihood e^-18; the weights falling steeply but continuously beyond χ² 30, since session 23),
  so its answer does not depend on the stars it is fitted beside, beyond float32 rounding of its χ² (which
  is centred on its chunk: ~1e-5 of the answer); a star off every isochrone (`fit_isochrones`) gets none,
  and the catalogue then keeps the model's values.

The grid (~330k points, up to 21,700 K: hotter stars get none) and its disk cache are
`xpengine.inference.isochrone_grid`'s (its names are re-exported here).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from xpengine.inference.galactic_prior import M_NODES
from xpengine.inference.isochrone_grid import (
    _ABS_G_REF,
    _LN_AGE_REF,
    _MASS_REF,
    COLOUR_FLOOR,
    COLOUR_GIANT_LOGG,
    COLOUR_SCALE,
    GRID_RECIPE,
    GRID_VERSION,
    RECIPE_BEFORE,
    FitGrid,
    build_fit_grid,
    colour_scale,
    load_fit_grid,
)

__all__ = [
    "COLOUR_GIANT_LOGG",
    "COLOUR_SCALE",
    "GRID_RECIPE",
    "GRID_VERSION",
    "RECIPE_BEFORE",
    "SIGMA_FLOOR",
    "FitGrid",
    "build_fit_grid",
    "colour_scale",
    "fit_isochrones",
    "load_fit_grid",
]

SIGMA_FLOOR = {"teff": 60.0, "logg": 0.06, "m_h": 0.05, "abs_g": 0.03, "bp_rp": COLOUR_FLOOR}
"""σ floors [K, dex, dex, mag, mag] of the likelihood."""


_CHUNK = 64  # stars per likelihood block
COARSE_SIGMA = {"teff": 150.0, "logg": 0.15}
COARSE_TEFF_MIN = 4500.0
"""A star without M_G, at least `COARSE_TEFF_MIN` [K] hot, with σ at least `COARSE_SIGMA` in Teff [K] and
(where it has one) logg, is fitted on the coarse grid (every fourth EEP, a quarter of the points): its σ are
far wider than the coarse grid's steps. Its mass and ln age stay within 0.015σ of the fine grid's at the
99th percentile (0.024σ at most) on 5,084 simulated stars outside the domain (`tests/test_inference_
isochrone_fit.py` checks random stars). Cooler dwarfs keep the fine grid: along the lower main sequence
every fourth EEP is too coarse (0.05σ at the 99th percentile at 3,800–4,500 K, 0.16σ at 3,300–3,800 K and
0.37σ below, found by the session-21 review). With a colour bound the coarse grid's answers stay within
0.04σ at the 99th percentile (0.07σ at most; session-22 review). A star the coarse grid misses is fitted on
the fine one."""
_SIGMA_WINDOW = 6.0  # grid points beyond a χ² of this squared (likelihood e^-18) are left out
_BALL_TAPER = 30.0  # χ² beyond which a point's weight falls by e^(−_BALL_SLOPE Δχ² / 2) (`_chunk_moments`)
_BALL_SLOPE = 25.0
_LN_AGE_CELL_SIGMA = 0.05 * np.log(10.0) / np.sqrt(12.0)  # the grid's ages are 0.05 dex apart
_LOG_W_MIN = -87.0  # ln of float32's smallest normal number: the floor of a point's log weight
_FAR_CHI2 = (0.0, 15.1, 18.4, 21.1, 23.5, 25.7, 27.9)  # χ² 99.99th percentiles for 1-6 degrees of freedom


def _floor(name: str, sigma: np.ndarray) -> np.ndarray:
    s = np.asarray(sigma, dtype=np.float64)
    return np.sqrt(np.where(np.isfinite(s), s, np.inf) ** 2 + SIGMA_FLOOR[name] ** 2)


def _colour_sigma(error: np.ndarray | None, n: int) -> np.ndarray:
    """A star's own colour σ (N,): |its error|, 0 where NaN or not given (the grid point's scatter, at least
    the floor, is added by the colour term); inf (no term) where infinite."""
    e = np.zeros(n) if error is None else np.asarray(error, dtype=np.float64)
    return np.abs(np.where(np.isnan(e), 0.0, e))


def _colour_terms(n, bp_rp, bp_rp_error, c0, sigma0, two_sided) -> tuple[np.ndarray, ...] | None:
    """The stars' colour terms for `_posterior` (None if no star has one): (N,) colour (+inf: none), its σ²,
    and the lowest value a point's colour less it counts at (0: the one-sided bound of an observed colour;
    −inf: a dereddened colour, both sides)."""
    c, var, lo = np.full(n, np.inf), np.zeros(n), np.zeros(n)
    if bp_rp is not None:
        obs, so = np.asarray(bp_rp, dtype=np.float64), _colour_sigma(bp_rp_error, n)
        bound = np.isfinite(obs) & np.isfinite(so) & ~two_sided  # the two-sided term holds the bound
        c[bound], var[bound] = obs[bound], so[bound] ** 2
    c[two_sided], var[two_sided], lo[two_sided] = c0[two_sided], sigma0[two_sided] ** 2, -np.inf
    return (c, var, lo) if np.isfinite(c).any() else None


def fit_isochrones(
    grid: FitGrid,
    teff: np.ndarray,
    teff_error: np.ndarray,
    logg: np.ndarray,
    logg_error: np.ndarray,
    m_h: np.ndarray,
    m_h_error: np.ndarray,
    abs_g: np.ndarray | None = None,
    abs_g_error: np.ndarray | None = None,
    *,
    bp_rp: np.ndarray | None = None,
    bp_rp_error: np.ndarray | None = None,
    bp_rp0: np.ndarray | None = None,
    bp_rp0_error: np.ndarray | None = None,
    distance_prior: np.ndarray | None = None,
    parallax_chi2: np.ndarray | None = None,
    device: Any = None,
) -> dict[str, np.ndarray]:
    """Posterior mass and age (N,) of stars with Teff [K], logg, [M/H] (and optionally M_G [mag]) ± σ.
    bp_rp, bp_rp_error: the observed (reddened) BP−RP [mag] and σ (N,): extinction only reddens, so a grid
    point bluer than it is allowed whatever its E(B−V), and a redder one costs ((c₀ − c) / σ)², the one-sided
    χ² of a flat prior on E(BP−RP) ≥ 0 (c₀: the point's MIST colour on real stars' scale, `colour_scale`;
    σ² the star's, 0 where NaN, plus the point's; a NaN colour or an infinite σ: no bound). It matters where
    the model's Teff is uncertain: a blue star of Teff
    9,100 ± 2,800 K, without it, comes out a 0.75 M☉ dwarf.
    bp_rp0, bp_rp0_error: the dereddened colour (BP−RP)₀ [mag] and σ (N,) where an E(B−V) independent of the
    star's XP is known (an input table: a dust map, a cluster's): the same term on both sides (σ² likewise),
    in place of that star's one-sided bound; NaN: none. The model's own E(B−V) must not be used for it: it
    comes from the same spectrum as the Teff.
    distance_prior: (N, len(M_NODES)) the stars' log weights on `galactic_prior.M_NODES`
    (`galactic_prior.log_weight_table`: ρ(d) d³ along the line of sight at their apparent magnitude), added
    to each grid point's log prior at its M_G (nearest node); a row of 0, or None, goes without.
    parallax_chi2: (N, len(M_NODES)) the χ² of the stars' parallaxes on the same nodes
    (`galactic_prior.parallax_chi2_table`; NaN rows: no parallax), added to each point's χ² at its M_G: a
    measurement like the labels, one more degree of freedom, inside the χ² taper and the off-every-isochrone
    test (until session 29 it went in with the prior, after both: a parallax the labels contradicted piled
    the weight against the taper's edge and gave a confident wrong distance).
    device: None (numpy), or a torch device for the chunks' arithmetic (the catalogue passes its model's
    GPU; the same answers to float rounding).

    A NaN logg or M_G (or an infinite σ) leaves it out of the star's likelihood. A star whose χ² to every
    grid point is beyond the 99.99th percentile for its degrees of freedom is off every isochrone. It is
    fitted again without its colour (bound or (BP−RP)₀); then, with both logg and M_G, without its logg (the
    measured M_G is trusted over a predicted logg); then without both; then, with a parallax χ², without it
    and, if need be, without its colour too (`parallax_dropped`). Else it gets NaN, as does a star without a
    finite Teff and [M/H].
    Returns mass, mass_error [M☉], ln_age, ln_age_error [ln Gyr], age, age_error [Gyr], abs_g, abs_g_error
    [mag] (the posterior absolute G at A_V = 0: with the distance prior, the star's distance modulus less its
    extinction; the catalogue's DISTANCE_FROM_ISOCHRONES), bp_rp0_used (bool: the answer rests on the star's
    (BP−RP)₀, not refitted without it) and parallax_dropped (bool: no isochrone fits the star's parallax
    with its labels; the answer is without the parallax)."""
    teff = np.asarray(teff, dtype=np.float64)
    n = teff.shape[0]
    mh = np.asarray(m_h, dtype=np.float64)
    lg = np.asarray(logg, dtype=np.float64)
    ag = np.full(n, np.nan) if abs_g is None else np.asarray(abs_g, dtype=np.float64)
    sigma = {
        "teff": _floor("teff", teff_error),
        "m_h": np.sqrt(_floor("m_h", m_h_error) ** 2 + grid.feh_half_spacing(np.nan_to_num(mh)) ** 2 / 3.0),
        "logg": _floor("logg", logg_error),
        "abs_g": np.full(n, np.inf) if abs_g is None or abs_g_error is None else _floor("abs_g", abs_g_error),
    }
    # (BP−RP)₀ is kept with the other inputs for its bookkeeping (a degree of freedom, which stars have
    # it); its likelihood is the colour term of `_colour_terms`, whose σ depends on the grid point too
    value = {"teff": teff, "m_h": mh, "logg": lg, "abs_g": ag, "bp_rp0": np.full(n, np.nan)}
    sigma["bp_rp0"] = np.full(n, np.inf)
    if bp_rp0 is not None:
        value["bp_rp0"] = np.asarray(bp_rp0, dtype=np.float64)
        sigma["bp_rp0"] = _colour_sigma(bp_rp0_error, n)
    distance_prior = _node_table("distance_prior", distance_prior, n)
    used = {k: np.isfinite(value[k]) & np.isfinite(sigma[k]) for k in value}
    parallax_chi2 = _node_table("parallax_chi2", parallax_chi2, n)
    if parallax_chi2 is not None:
        used["parallax"] = np.isfinite(parallax_chi2).all(axis=1)
        parallax_chi2 = np.where(used["parallax"][:, None], parallax_chi2, np.float32(0.0))
    else:
        used["parallax"] = np.zeros(n, bool)
    tables = (distance_prior, parallax_chi2)
    colour = _colour_terms(n, bp_rp, bp_rp_error, value["bp_rp0"], sigma["bp_rp0"], used["bp_rp0"])
    names = ("mass", "mass_error", "ln_age", "ln_age_error", "abs_g", "abs_g_error")
    out = {k: np.full(n, np.nan) for k in names}
    fitted = used["teff"] & used["m_h"]
    # (a dereddened colour pins Teff to ~0.03 mag of colour: the fine grid)
    wide = fitted & (sigma["teff"] >= COARSE_SIGMA["teff"]) & ~used["abs_g"] & ~used["bp_rp0"]
    wide &= teff >= COARSE_TEFF_MIN
    wide &= ~used["logg"] | (sigma["logg"] >= COARSE_SIGMA["logg"])
    if grid.coarse is None:
        wide[:] = False
    if wide.any():
        _posterior(grid.coarse, np.flatnonzero(wide), value, sigma, used, out, tables, device, colour)
        wide &= np.isfinite(out["mass"])  # a star the coarse grid misses is tried on the fine one
    if (fitted & ~wide).any():
        _posterior(grid, np.flatnonzero(fitted & ~wide), value, sigma, used, out, tables, device, colour)
    without_colour, without_parallax = _refit_lost(
        grid, fitted, value, sigma, used, out, tables, device, colour
    )
    # the age nodes' spacing is the least σ the grid can resolve (a uniform cell's σ, in quadrature): at the
    # σ floors a hot star's ln age came out ± 0.0000 (session-29 review)
    out["ln_age_error"] = np.hypot(out["ln_age_error"], _LN_AGE_CELL_SIGMA)
    out["age"] = np.exp(out["ln_age"])
    out["age_error"] = out["age"] * out["ln_age_error"]
    out["bp_rp0_used"] = used["bp_rp0"] & np.isfinite(out["mass"]) & ~without_colour
    out["parallax_dropped"] = without_parallax
    return out


def _node_table(name: str, table: np.ndarray | None, n: int) -> np.ndarray | None:
    """A per-star table on `galactic_prior.M_NODES` as float32, or ValueError naming a wrong shape."""
    if table is None:
        return None
    table = np.asarray(table, dtype=np.float32)
    if table.shape != (n, M_NODES.size):
        raise ValueError(
            f"{name}: expected shape ({n}, {M_NODES.size}) (stars × galactic_prior.M_NODES), got {table.shape}"
        )
    return table


def _refit_lost(
    grid, fitted, value, sigma, used, out, tables, device, colour
) -> tuple[np.ndarray, np.ndarray]:
    """Fit again the stars no isochrone fits (`fitted` rows whose mass is NaN in `out`), dropping one input
    at a time, then two: first the colour (a blend, labels far off, or a wrong E(B−V)), then a predicted
    logg that no isochrone reconciles with the measured M_G (the measurement wins), then both; then a
    parallax χ², then it and the colour. Returns (N,) bool: answered without the colour, without the
    parallax (only refits that succeeded count)."""
    n = fitted.shape[0]
    coloured = np.zeros(n, bool) if colour is None else np.isfinite(colour[0])
    no = lambda *ks: {**used, **{k: np.zeros(n, bool) for k in ks}}  # noqa: E731
    without_colour, without_parallax = np.zeros(n, bool), np.zeros(n, bool)
    for drop_colour, drop_parallax, keys, who in (
        (True, False, no("bp_rp0"), coloured),
        (False, False, no("logg"), used["logg"] & used["abs_g"]),
        (True, False, no("logg", "bp_rp0"), coloured & used["logg"] & used["abs_g"]),
        (False, True, no("parallax"), used["parallax"]),
        (True, True, no("parallax", "bp_rp0"), used["parallax"] & coloured),
    ):
        lost = fitted & who & ~np.isfinite(out["mass"])
        if lost.any():
            c = None if drop_colour else colour
            _posterior(grid, np.flatnonzero(lost), value, sigma, keys, out, tables, device, c)
            if drop_colour:
                without_colour |= lost & np.isfinite(out["mass"])
            if drop_parallax:
                without_parallax |= lost & np.isfinite(out["mass"])
    return without_colour, without_parallax


def _posterior(
    grid: FitGrid,
    idx: np.ndarray,
    value: dict[str, np.ndarray],
    sigma: dict[str, np.ndarray],
    used: dict[str, np.ndarray],
    out: dict[str, np.ndarray],
    tables: tuple[np.ndarray | None, np.ndarray | None],
    device: Any = None,
    colour: tuple[np.ndarray, np.ndarray] | None = None,
) -> None:
    """The posterior moments of stars `idx` on `grid`, written into `out` (module docstring), with the
    stars' distance-prior and parallax-χ² tables (the latter for the stars `used["parallax"]`) and colour
    terms (`_colour_terms`) where given."""
    distance_prior, parallax_chi2 = tables
    teff, mh = value["teff"], value["m_h"]
    # χ²_min beyond the 99.99th percentile of χ² with as many degrees of freedom as quantities used
    n_used = sum(used[k].astype(int) for k in used)
    far_chi2 = np.asarray(_FAR_CHI2)[np.clip(n_used, 0, len(_FAR_CHI2) - 1)]
    # chunks of like σ, [M/H] and Teff, so that each chunk's window is close to its stars' own
    node = np.clip(np.searchsorted(grid.feh_nodes, mh[idx]), 0, grid.feh_nodes.size - 1)
    keys = ("teff", "m_h", "logg", "abs_g", "bp_rp0")
    with np.errstate(divide="ignore"):
        width = [np.floor(np.log2(sigma[k][idx] / SIGMA_FLOOR[k.removesuffix("0")])) for k in keys]
    for j, k in ((2, "logg"), (3, "abs_g"), (4, "bp_rp0")):
        width[j] = np.where(used[k][idx], width[j], -1)
    idx = idx[np.lexsort((teff[idx], node, *width[::-1]))]
    columns = {"teff": grid.teff, "m_h": grid.feh, "logg": grid.logg, "abs_g": grid.abs_g}
    moments = grid.moments
    for c0 in range(0, idx.size, _CHUNK):
        s = idx[c0 : c0 + _CHUNK]
        rows = _window(grid, {k: (value[k][s], sigma[k][s], used[k][s]) for k in value})
        if rows.size == 0:
            continue
        # Σ_k (x_k − μ_k)²/σ_k² for every star × row as one matrix product, the coordinates centred on the
        # chunk so that the expansion [x², x, 1] · [1/σ², −2μ/σ², μ²/σ²] keeps its precision
        coef, basis = [], []
        for k, col in columns.items():
            u = used[k][s]
            if not u.any():
                continue
            centre = float(np.mean(value[k][s][u]))
            x = col[rows].astype(np.float64) - centre
            mu = np.where(u, value[k][s] - centre, 0.0)
            inv = np.where(u, 1.0 / sigma[k][s] ** 2, 0.0)
            coef += [inv, -2.0 * mu * inv, mu * mu * inv]
            basis += [x * x, x, np.ones_like(x)]
        coef_m, basis_m = np.stack(coef, axis=1), np.stack(basis)
        prior = [grid.log_prior[rows][None, :]]
        table = None if distance_prior is None else distance_prior[s]
        if table is not None and not table.any():
            table = None
        plx = None
        if parallax_chi2 is not None and used["parallax"][s].any():
            plx = np.where(used["parallax"][s][:, None], parallax_chi2[s], np.float32(0.0))
        bound = None
        if colour is not None and np.isfinite(colour[0][s]).any():  # the stars' (S,) terms, the points' (P,)
            bound = (*(a[s].astype(np.float32) for a in colour), *(a[rows] for a in grid.real_colour))
        if device is None:
            if table is not None:  # (S, rows): each star's own weight at the points' M_G
                prior.append(np.take(table, grid.prior_nodes[rows], axis=1))  # C-ordered: fast to add
            extra = None if plx is None else np.take(plx, grid.prior_nodes[rows], axis=1)
            mom, chi_min = _chunk_moments(coef_m, basis_m, prior, moments[rows], bound, extra)
        else:  # the (S, nodes) tables go to the device and are gathered there: S × nodes, not S × rows
            nodes = grid.prior_nodes[rows]
            gather = None if table is None else (table, nodes)
            extra = None if plx is None else (plx, nodes)
            mom, chi_min = _chunk_moments_torch(
                coef_m, basis_m, prior, moments[rows], device, gather, bound, extra
            )
        far = chi_min > far_chi2[s]  # off every isochrone
        sw = mom[:, 0]
        mm, am = mom[:, 1] / sw, mom[:, 3] / sw
        out["mass"][s] = _MASS_REF + mm
        out["mass_error"][s] = np.sqrt(np.maximum(mom[:, 2] / sw - mm**2, 0.0))
        out["ln_age"][s] = _LN_AGE_REF + am
        out["ln_age_error"][s] = np.sqrt(np.maximum(mom[:, 4] / sw - am**2, 0.0))
        gm = mom[:, 5] / sw
        out["abs_g"][s] = _ABS_G_REF + gm
        out["abs_g_error"][s] = np.sqrt(np.maximum(mom[:, 6] / sw - gm**2, 0.0))
        for k in out:
            out[k][s[far]] = np.nan


def _chunk_moments(
    coef: np.ndarray,
    basis: np.ndarray,
    log_prior: list[np.ndarray],
    moments: np.ndarray,
    bound: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    chi_extra: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(S, 7) posterior sums [Σw, Σw·Δm, Σw·Δm², Σw·Δa, Σw·Δa², Σw·ΔM, Σw·ΔM²] (`FitGrid.moments`) and (S,)
    χ²_min of a chunk: χ² = coef @ basis
    (float32), each star's own χ² ball (χ² ≤ `_SIGMA_WINDOW`², tapered from `_BALL_TAPER`: its answer does
    not depend on its chunk mates beyond float32 rounding), w = prior · exp(−χ²/2) normalised by its maximum (log_prior: terms of (1, P) or each star's
    (S, P)), the sums in float64 (float32 sums moved a star's σ by 1e-4 with its chunk mates). bound: the
    colour terms, the stars' (S,) colour (+inf: none), σ² and lowest counted difference (`_colour_terms`)
    and the points' (P,) colour on the real stars' scale and its σ² (`colour_scale`): max(c_p − c_s, lo_s)² /
    (σ_s² + σ_p²) is added to χ². chi_extra: (S, P) a further χ² term (the stars' parallaxes at the points'
    M_G), added before the taper and χ²_min."""
    chi = coef.astype(np.float32) @ basis.astype(np.float32)
    np.maximum(chi, 0.0, out=chi)
    if bound is not None:  # the colour term (`_colour_terms`), σ² the star's plus the point's systematic
        red = bound[3][None, :] - bound[0][:, None]  # the point's colour less the star's: > 0 is redder
        np.maximum(red, bound[2][:, None], out=red)
        red *= red
        red /= bound[1][:, None] + bound[4][None, :]
        chi += red
    if chi_extra is not None:
        chi += chi_extra
    chi_min = chi.min(axis=1)
    # the star's ball, continuously: χ² beyond `_BALL_TAPER` costs 25 (χ² − 30) more (25 · max(χ², 30): a
    # constant below 30, which the normalisation takes out), so a point at χ² 36 weighs < e^-75 of the
    # star's best even at the `_FAR_CHI2` limit, and nothing jumps when float32 rounding moves a point
    # across the edge (the hard cut at 36 it replaces moved a poorly fitting star's age by 1e-4 between two
    # batchings; session 23); as many passes as that cut; beyond, the weights end at the floor below
    edge = np.maximum(chi, np.float32(_BALL_TAPER))
    edge *= np.float32(_BALL_SLOPE)
    chi += edge
    chi *= -0.5
    for term in log_prior:
        chi += term
    chi -= chi.max(axis=1, keepdims=True)
    # weights below e^-87 (float32's smallest normal) kept at it: subnormal floats slow the exp and the
    # sums many times over, and at most 1e-38 of the peak per point moves no answer
    np.maximum(chi, _LOG_W_MIN, out=chi)
    w = np.exp(chi, out=chi)
    return w.astype(np.float64) @ moments, chi_min


def _chunk_moments_torch(
    coef: np.ndarray,
    basis: np.ndarray,
    log_prior: list[np.ndarray],
    moments: np.ndarray,
    device: Any,
    gather: tuple[np.ndarray, np.ndarray] | None = None,
    bound: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    gather_chi: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """`_chunk_moments` in torch on `device` (a GPU beside the model: the fit is two matrix products and
    an exp); the same arithmetic and precisions. gather: a further log-prior term given as each star's
    (S, nodes) table and the (P,) node of each point, gathered into (S, P) on the device; bound: the colour
    terms, as `_chunk_moments`'; gather_chi: a χ² term given as gather is (`_chunk_moments`' chi_extra)."""
    import torch

    t = lambda a, dt: torch.from_numpy(np.ascontiguousarray(a)).to(device=device, dtype=dt)  # noqa: E731
    chi = t(coef, torch.float32) @ t(basis, torch.float32)
    chi.clamp_(min=0.0)
    if bound is not None:
        c_s, var_s, lo_s, c_p, var_p = (t(a, torch.float32) for a in bound)
        red = torch.maximum(c_p[None, :] - c_s[:, None], lo_s[:, None])
        chi.add_(red.square_().div_(var_s[:, None] + var_p[None, :]))
    if gather_chi is not None:
        chi.add_(t(gather_chi[0], torch.float32).index_select(1, t(gather_chi[1], torch.int64)))
    chi_min = chi.min(dim=1).values
    chi.add_(chi.clamp(min=_BALL_TAPER).mul_(_BALL_SLOPE))
    chi.mul_(-0.5)
    for term in log_prior:
        chi.add_(t(term, torch.float32))
    if gather is not None:
        table, nodes = t(gather[0], torch.float32), t(gather[1], torch.int64)
        chi.add_(table.index_select(1, nodes))
    chi.sub_(chi.max(dim=1, keepdim=True).values)
    w = chi.clamp_(min=_LOG_W_MIN).exp_()
    mom = w.to(torch.float64) @ t(moments, torch.float64)
    return mom.cpu().numpy(), chi_min.cpu().numpy()


def _window(grid: FitGrid, stars: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]) -> np.ndarray:
    """Grid rows within `_SIGMA_WINDOW` σ of some star of a chunk in Teff, [M/H], logg and M_G (logg and M_G
    only when every star of the chunk has one; the colour terms only add to χ², so they need no window)."""
    t, st, _ = stars["teff"]
    lo = np.searchsorted(grid.teff, (t - _SIGMA_WINDOW * st).min())
    hi = np.searchsorted(grid.teff, (t + _SIGMA_WINDOW * st).max(), side="right")
    keep = np.ones(hi - lo, dtype=bool)
    for k, col in (("m_h", grid.feh), ("logg", grid.logg), ("abs_g", grid.abs_g)):
        v, sv, u = stars[k]
        if u.all():  # a star of the chunk without it takes every row
            c = col[lo:hi]
            keep &= (c >= (v[u] - _SIGMA_WINDOW * sv[u]).min()) & (c <= (v[u] + _SIGMA_WINDOW * sv[u]).max())
    return np.flatnonzero(keep) + lo
