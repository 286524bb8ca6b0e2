"""The isochrone fit's distance prior: how many stars of each absolute magnitude the sky holds at a star's
apparent magnitude, along its line of sight.

A star seen at extinction-corrected apparent magnitude G₀ towards Galactic (l, b) lies, if it has the
absolute magnitude M_G of a grid point, at d = 10^((G₀ − M_G + 5) / 5) pc. The number of stars of that kind
seen at G₀ is ∝ ρ(d) d³: the stellar density along the line of sight times the volume element (d² dd, with
dd ∝ d dM_G). Without this weight the fit treats the IMF as if every star were seen from the same distance,
so a faint star without a useful parallax comes out less luminous, less massive and older than the stars of
a magnitude-limited sample are (the Malmquist bias). On the seed-23 test sky, fitted with their true Teff,
logg and [M/H], the stars outside the domain without a parallax came out 0.07–0.14 M☉ too light without
the weight and 0.03 with it (`benchmarks/results/isochrone_mass_age*.md`). With a parallax M_G, whose
likelihood is far narrower than the weight's changes, the catalogue goes without it.

The density is the project's Galaxy model (`xpengine.simulate.galaxy.total_density`: thin and thick disk, halo
and bar, with Jurić et al. 2008's disk and halo shapes), summed over its populations. The fit's other priors
stay as they are (Kroupa IMF, uniform age, flat [Fe/H]): there is no population-dependent age or
metallicity prior. The simulated sky was drawn from this same model, so its gain there is at the top of
what real stars will see; the benchmark also fits with another Galaxy in the prior (other disk scales, half
the thick disk: `benchmarks/isochrone_mass_age_check.py`, OTHER_GALAXY_MODEL).

A star whose parallax is too uncertain for the catalogue's M_G (ϖ/σ_ϖ < 5) still says where it is: with
one, `parallax_chi2_table` gives its χ², (ϖ − ϖ(M_G))² / σ_ϖ², ϖ(M_G) = 1000 / d [mas], at each node (since
session 28; the way StarHorse and isoclassify fit a parallax of any S/N), with or without the line of sight.
The fit adds it to each grid point's χ² as a measurement (since session 29; in session 28 it was part of
this prior's log weight, outside the fit's χ² tests).

`log_weight_table` gives each star's log weight on `M_NODES` (0.02 mag apart: the fit takes the nearest
node, `node_index`, at most 0.014 off in the log weight); ρ is evaluated every `DENSITY_STEP` mag and
interpolated in between, the d³ term exactly.
"""

from __future__ import annotations

import numpy as np

__all__ = ["M_NODES", "log_weight_table", "node_index", "parallax_chi2_table"]

M_NODES = np.arange(-7.0, 16.0 + 1e-9, 0.02)
"""Absolute G [mag] of the table's nodes, beyond the isochrone grid's −5.9 to 14.6."""
DENSITY_STEP = 0.1  # [mag] between the nodes where the density itself is evaluated
_BLOCK = 2048  # stars per block of the table's arithmetic (its float64 temporaries)
_VOLUME = 3.0 * np.log(10.0) / 5.0  # d ln(d³) / d(−M_G)
_CHI2_MAX = (
    1.0e6  # a parallax's χ² is held below this: a weight of e^-500000 is nil, and float32 stays finite
)


def parallax_chi2_table(g0: np.ndarray, parallax: np.ndarray, parallax_error: np.ndarray) -> np.ndarray:
    """(N, len(M_NODES)) float32 χ² of stars' (zero-point corrected) parallax and σ [mas] (N,) at each
    node's distance for their extinction-corrected apparent G₀ [mag] (N,), held below `_CHI2_MAX`; a row of
    NaN (no parallax term) where any is not finite or σ ≤ 0."""
    g0, plx, err = (np.asarray(a, dtype=np.float64) for a in (g0, parallax, parallax_error))
    out = np.full((g0.size, M_NODES.size), np.nan, dtype=np.float32)
    with np.errstate(invalid="ignore"):
        rows = np.flatnonzero(np.isfinite(g0) & np.isfinite(plx) & np.isfinite(err) & (err > 0))
    for b0 in range(0, rows.size, _BLOCK):
        r = rows[b0 : b0 + _BLOCK]
        with np.errstate(over="ignore"):
            model = 1000.0 * 10.0 ** (-(g0[r, None] - M_NODES[None, :] + 5.0) / 5.0)  # ϖ [mas] at each node
            chi2 = ((plx[r, None] - model) / err[r, None]) ** 2
        out[r] = np.minimum(np.nan_to_num(chi2, nan=_CHI2_MAX, posinf=_CHI2_MAX), _CHI2_MAX).astype(
            np.float32
        )
    return out


def log_weight_table(g0: np.ndarray, l_deg: np.ndarray, b_deg: np.ndarray) -> np.ndarray:
    """(N, len(M_NODES)) float32 ln[ρ(d) d³] (up to a constant per star) of stars at extinction-corrected
    apparent G₀ [mag] towards (l, b) [deg], all (N,); a row of 0 (no prior: the fit goes without) where
    any of the three is not finite."""
    from xpengine.simulate.galaxy import total_density

    g0, l_deg, b_deg = (np.asarray(a, dtype=np.float64) for a in (g0, l_deg, b_deg))
    ok = np.isfinite(g0) & np.isfinite(l_deg) & np.isfinite(b_deg)
    out = np.zeros((g0.size, M_NODES.size), dtype=np.float32)
    coarse = np.arange(M_NODES[0], M_NODES[-1] + DENSITY_STEP, DENSITY_STEP)
    # ρ linearly in between (in ln); the volume term exactly, relative to the brightest node
    u = (M_NODES - coarse[0]) / DENSITY_STEP
    i = np.clip(np.floor(u).astype(np.int64), 0, coarse.size - 2)
    f = (u - i).astype(np.float32)
    volume = (_VOLUME * (M_NODES - M_NODES[0])).astype(np.float32)
    rows = np.flatnonzero(ok)
    for b0 in range(0, rows.size, _BLOCK):
        r = rows[b0 : b0 + _BLOCK]
        d_kpc = 10.0 ** ((g0[r, None] - coarse[None, :] + 5.0) / 5.0) / 1000.0
        with np.errstate(divide="ignore"):
            ln_rho = np.maximum(np.log(total_density(d_kpc, l_deg[r], b_deg[r])), -700.0).astype(np.float32)
        out[r] = ln_rho[:, i] * (1.0 - f) + ln_rho[:, i + 1] * f - volume
    return out


def node_index(abs_g: np.ndarray) -> np.ndarray:
    """(P,) int32 the nearest node of `M_NODES` to each M_G [mag] (clamped to the ends)."""
    step = M_NODES[1] - M_NODES[0]
    i = np.rint((np.asarray(abs_g, dtype=np.float64) - M_NODES[0]) / step)
    return np.clip(i, 0, M_NODES.size - 1).astype(np.int32)
