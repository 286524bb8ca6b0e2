"""The Galaxy of the MIST sky: its four populations (thin and thick disk, halo, bulge), their densities,
and the volume along a line of sight in which a star of a given absolute magnitude is visible; see
:mod:`xpengine.simulate.populations` (module docstring: sources), which draws the sky from them."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from xpengine.simulate.physics import R0_KPC, Z_SUN_KPC, dust_ebv

#: population name -> code (thin, thick, halo as in :data:`xpengine.simulate.physics.POPULATIONS`)
POPULATIONS: dict[str, int] = {"thin": 0, "thick": 1, "halo": 2, "bulge": 3}
THIN_H_R, THIN_H_Z = 2.6, 0.30
THICK_H_R, THICK_H_Z, THICK_NORM = 2.0, 0.90, 0.12
HALO_NORM, HALO_Q, HALO_N, HALO_CORE = 0.005, 0.64, 2.77, 1.0
BULGE_SCALE = (1.59, 0.424, 0.424)
BULGE_R_CUT, BULGE_CUT_WIDTH = 2.54, 0.5
BULGE_ANGLE_DEG = 27.0
BULGE_MASS_MSUN, THIN_LOCAL_MSUN_PC3 = 1.5e10, 0.04
BULGE_SHAPE_VOLUME_KPC3 = 5.499  # ∫ exp(−r_s²/2) × cutoff dV for BULGE_SCALE (tests recompute it)
BULGE_NORM = BULGE_MASS_MSUN / (THIN_LOCAL_MSUN_PC3 * 1e9) / BULGE_SHAPE_VOLUME_KPC3


# ----------------------------------------------------------------------------------------------------------
# Galactic structure


def _galactocentric(
    d_kpc: np.ndarray, l_deg: np.ndarray, b_deg: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Galactocentric (x, y, z) [kpc] (Sun at x = −R0, y = 0, z = z☉; y towards l = 90°), broadcasting."""
    lr, br = np.deg2rad(l_deg), np.deg2rad(b_deg)
    x = d_kpc * np.cos(br) * np.cos(lr) - R0_KPC
    y = d_kpc * np.cos(br) * np.sin(lr)
    z = d_kpc * np.sin(br) + Z_SUN_KPC
    return x, y, z


def _bulge_shape(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Unnormalised boxy-Gaussian bar (module docstring) at Galactocentric (x, y, z) [kpc]."""
    phi = np.deg2rad(BULGE_ANGLE_DEG)
    xb = -x * np.cos(phi) + y * np.sin(phi)  # along the bar, positive towards its near end
    yb = x * np.sin(phi) + y * np.cos(phi)
    x0, y0, z0 = BULGE_SCALE
    rs2 = np.sqrt(((xb / x0) ** 2 + (yb / y0) ** 2) ** 2 + (z / z0) ** 4)
    r = np.hypot(xb, yb)
    cut = np.where(r > BULGE_R_CUT, np.exp(-0.5 * ((r - BULGE_R_CUT) / BULGE_CUT_WIDTH) ** 2), 1.0)
    return np.exp(-0.5 * rs2) * cut


def _density_rows(name: str, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Density of population `name` (module docstring; local thin-disk units) at Galactocentric x, y, z."""
    if name == "thin":
        return np.exp(-(np.hypot(x, y) - R0_KPC) / THIN_H_R - np.abs(z) / THIN_H_Z)
    if name == "thick":
        return THICK_NORM * np.exp(-(np.hypot(x, y) - R0_KPC) / THICK_H_R - np.abs(z) / THICK_H_Z)
    if name == "halo":
        r2 = x**2 + y**2 + (z / HALO_Q) ** 2 + HALO_CORE**2
        return HALO_NORM * ((R0_KPC**2 + HALO_CORE**2) / r2) ** (HALO_N / 2)
    return BULGE_NORM * _bulge_shape(x, y, z)


def density(pop: np.ndarray, d_kpc: np.ndarray, l_deg: np.ndarray, b_deg: np.ndarray) -> np.ndarray:
    """Number density of stars born in population `pop` (codes of :data:`POPULATIONS`), in units of the thin
    disk's at (R0, z = 0), at heliocentric distance d [kpc] towards (l, b) [deg]: pop, l, b (N,) and d (N,)
    or (N, K) -> (N,) or (N, K)."""
    pop = np.asarray(pop)
    d = np.asarray(d_kpc, dtype=np.float64)
    d2 = d if d.ndim == 2 else d[:, None]
    out = np.zeros(d2.shape)
    for name, code in POPULATIONS.items():
        rows = np.nonzero(pop == code)[0]
        if rows.size:
            x, y, z = _galactocentric(d2[rows], np.asarray(l_deg)[rows, None], np.asarray(b_deg)[rows, None])
            out[rows] = _density_rows(name, x, y, z)
    return out if d.ndim == 2 else out[:, 0]


def total_density(d_kpc: np.ndarray, l_deg: np.ndarray, b_deg: np.ndarray) -> np.ndarray:
    """Number density of stars of every population together (local thin-disk units) at heliocentric
    distances d (N, K) [kpc] towards (l, b) (N,) [deg]: the sum of `density` over :data:`POPULATIONS`."""
    d = np.asarray(d_kpc, dtype=np.float64)
    x, y, z = _galactocentric(d, np.asarray(l_deg)[:, None], np.asarray(b_deg)[:, None])
    return sum(_density_rows(name, x, y, z) for name in POPULATIONS)


class VisibleVolume(NamedTuple):
    """Result of :func:`visible_volume`, per star (N,) unless stated."""

    volume: np.ndarray  # V [kpc³, local thin-disk units]
    cdf: np.ndarray  # (N, n_nodes) cumulative sum of V over the distance nodes
    d_max_kpc: np.ndarray  # dust-free limiting distance (at most the cap)
    n_visible: np.ndarray  # int64: the first n_visible nodes may hold a visible star, the others not


def visible_volume(
    pop: np.ndarray,
    abs_g: np.ndarray,
    l_deg: np.ndarray,
    b_deg: np.ndarray,
    *,
    g_limit: float,
    a_g_per_ebv: np.ndarray | None = None,
    d_max_cap_kpc: float = 100.0,
    n_nodes: int = 64,
    n_dust: int = 8,
) -> VisibleVolume:
    """Expected number of stars of population `pop` with absolute G `abs_g` visible to G = `g_limit` towards
    (l, b) [deg], all (N,): V = ∫ ρ(s) s² ds over the distances where the star could be brighter than the
    limit [kpc³, local thin-disk units], with d_max the dust-free limiting distance (at most
    `d_max_cap_kpc`).

    Nodes: midpoints of s = d_max u², u uniform. With `a_g_per_ebv` (N,) (A_G / E(B−V) of each star, a lower
    bound), a node counts only if the star would be brighter than the limit at its inner edge behind a
    lower bound of the dust of :func:`~xpengine.simulate.physics.dust_ebv` (0.95 × its value at the last of
    `n_dust` distances d_max (j/n_dust)² before the node; E(B−V) only grows with distance): a superset of
    the truly visible distances, so that the exact cut applied afterwards leaves the sample unbiased.
    """
    abs_g = np.asarray(abs_g, dtype=np.float64)
    d_max = np.minimum(10.0 ** ((g_limit - abs_g) / 5.0 - 2.0), d_max_cap_kpc)
    u = (np.arange(n_nodes) + 0.5) / n_nodes  # (K,)
    s = d_max[:, None] * u**2  # (N, K)
    rho = density(pop, s, l_deg, b_deg)
    contrib = rho * s**2 * (2.0 * d_max[:, None] * u / n_nodes)  # ds = 2 d u du
    if a_g_per_ebv is not None:
        n = abs_g.shape[0]
        uj = np.arange(1, n_dust + 1) / n_dust  # (J,)
        dj = (d_max[:, None] * uj**2).ravel()
        ebv = np.zeros((n, n_dust + 1))  # E(B−V) at u = 0, 1/J, …, 1
        ebv_j = dust_ebv(dj, np.repeat(l_deg, n_dust), np.repeat(b_deg, n_dust), n_steps=24)
        ebv[:, 1:] = ebv_j.reshape(n, n_dust)
        u_in = np.arange(n_nodes) / n_nodes  # inner edges of the nodes
        # E(B−V) grows with distance: its value at the last dust point before a node is a lower bound
        ebv_in = ebv[:, np.floor(u_in * n_dust + 1e-9).astype(np.int64)]  # (N, K)
        with np.errstate(divide="ignore"):
            mu_in = 5.0 * np.log10(d_max[:, None] * u_in**2 * 1000.0) - 5.0
        g_in = abs_g[:, None] + mu_in + 0.95 * a_g_per_ebv[:, None] * ebv_in
        visible = g_in <= g_limit  # (N, K), a prefix of the nodes (G grows with distance)
        contrib = np.where(visible, contrib, 0.0)
        n_visible = visible.sum(axis=1)
    else:
        n_visible = np.full(abs_g.shape[0], n_nodes)
    cdf = np.cumsum(contrib, axis=1)
    return VisibleVolume(cdf[:, -1], cdf, d_max, n_visible)


def _draw_distance(d_max_kpc: np.ndarray, cdf: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Distance [kpc] (N,) from ρ s² on [0, d_max] by inverse CDF over the u nodes (linear in u per node)."""
    n, k = cdf.shape
    r = rng.random(n) * cdf[:, -1]
    idx = np.minimum((cdf < r[:, None]).sum(axis=1), k - 1)
    rows = np.arange(n)
    below = np.where(idx > 0, cdf[rows, np.maximum(idx - 1, 0)], 0.0)
    frac = np.clip((r - below) / np.maximum(cdf[rows, idx] - below, 1e-300), 0.0, 1.0)
    u = (idx + frac) / k
    return d_max_kpc * u**2
