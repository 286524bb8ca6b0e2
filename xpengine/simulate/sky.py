"""Draw synthetic Gaia sources: positions, populations, stellar parameters, distances, dust, photometry.

Sampling scheme (vectorised, chunked; memory independent of the number of sources):
each chunk covers a contiguous sub-range of a partition's HEALPix-8 pixels and draws proposals in
batches: a uniform position inside the sub-range (level-8 pixel, then level-12 sub-pixel, then a
level-24 sub-pixel for the position), a population (thin/thick/halo with proposal probabilities
0.55/0.30/0.15), its age/[Fe/H]/[α/M], and a mass from a mixture proposal (half log-uniform over
[M_G(age), M_G(age/2)], which covers every mass that is a giant at that age, half log-uniform over
0.45–1.75 M☉; M_G = inverse of the §7 mass–age relation). The proposal is weighted by
Kroupa IMF / proposal density × local density ratio of the population / proposal probability ×
the number of such stars visible to G = 17.65 along the line of sight, V = ∫₀^d_max ρ(s) s² ds
(d_max from the unreddened absolute G), and accepted with probability min(1, w / w_cap) (w_cap = the
99.9th percentile of the first batch's weights: the brightest 0.1% of proposals are slightly
under-represented). The distance is then drawn from ρ s² on [0, d_max], dust from
:func:`~xpengine.simulate.physics.dust_ebv`, and stars that end fainter than G = 17.65 after extinction
(or brighter than G = 5) are dropped.

Evolutionary states: a star of mass M is on the main sequence while age < t_G(M) (t_G: REFERENCE §7
giant mass–age relation), on the RGB while age < t_G (1 + 0.10), then core-He burning (red clump; the
secondary clump for M ≳ 1.8 M☉) for :func:`core_he_burning_gyr`, then dead (dropped). Giants therefore
follow the §7 mass–age relation to within their (short) giant lifetime, and the red-clump fraction
emerges from the lifetimes and the magnitude limit (≈ 25–35% of the visible giants). RGB logg is drawn
from p(logg) ∝ 10^(0.5 (logg − 3.5)) on [1.0, 3.5] (more time spent low on the RGB), Teff from the §7
RGB relation plus 30 K scatter; red-clump stars from :func:`~xpengine.simulate.physics.red_clump_parameters`.

Reproducibility: the same seed and arguments give the same bytes on one machine (whatever the number of
workers), but not on every CPU. numpy's SIMD and BLAS kernels differ between CPUs in the last bits of a
float64 (a draw or cut decided by such a bit would differ too; none has been seen), and the bulk writer
prints float64 values in full (shortest round-trip repr), so a coordinate may be written
`176.09973798011845` on one CPU and `176.09973798011842` on another; values written at a stated precision
(XP coefficients rounded to 7 significant digits, float32 columns) occasionally round the other way.
Writing at a fixed precision would not make the bytes CPU-independent (a value next to a rounding boundary
still flips) and would change the bundled sky, so the bundled sky (`xpengine/data/sky`) is checked by
regenerating it and comparing the tables numerically: every field that is not floating point identical,
floating-point values within 1e-12 of their column's largest value plus one unit of the precision written
(`tests/test_simulate_sky.py::test_bundled_sky_regenerates_from_its_documented_command`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from xpengine.simulate import physics as ph
from xpengine.simulate.coords import ecliptic_latitude, healpix_nest_to_radec, icrs_to_galactic

__all__ = ["PHYSICS", "STATE_CODES", "SkyConfig", "core_he_burning_gyr", "draw_stars"]

if TYPE_CHECKING:
    from xpengine.simulate.populations import SkyPopulationConfig

logger = logging.getLogger(__name__)

#: stellar physics of :class:`SkyConfig`: "polynomial" (this module, the default) or "mist"
PHYSICS = ("polynomial", "mist")
#: evolutionary_state codes in truth tables
STATE_CODES: dict[str, int] = {"dwarf": 0, "rgb": 1, "red_clump": 2}
_POP_PROPOSAL = np.array([0.55, 0.30, 0.15])
_DWARF_MASS = (0.45, 1.75)
_GIANT_MAX_MASS = 3.5


@dataclass(frozen=True)
class SkyConfig:
    """Knobs of the synthetic sky (defaults = the documented realistic rates)."""

    g_limit: float = 17.65  # XP spectra exist to G ≈ 17.65 (REFERENCE §7)
    g_bright: float = 5.0
    rgb_duration: float = 0.10  # RGB lifetime (logg < 3.5) as a fraction of t_G (MIST orders of magnitude)
    missing_bp_rate: float = 2e-4  # DR3: 1 in 2.2e8; raised so that small skies exercise it
    no_parallax_rate: float = 0.003  # astrometric_params_solved = 3
    six_param_base: float = 0.05  # fraction of 6-parameter solutions at bright G (rises to 0.20 faint)
    apogee_fraction: float = 0.35  # fraction of colour/magnitude-selected stars APOGEE observed
    # faint limit in H of the APOGEE-like selection (APOGEE-2 main survey: 12.2); training skies for faint
    # catalogue giants (G > 15) go deeper
    survey_h_max: float = 12.2
    apogee_duplicate_rate: float = 0.03  # EXTRATARG bit 4 duplicates
    tmass_random_missing: float = 0.01
    ebv_missing_rate: float = 0.02
    batch_size: int = 32768
    residual_variation: bool = True
    correlation_levels: int = 8  # G-dependent correlation templates; 1 = one template (compresses well)
    coefficient_digits: int | None = None  # round coefficients to this many significant digits
    gzip_level: int | None = None  # bulk gzip level: None/1–3 ISA-L (fast, default 2), 4–9 zlib (smaller)
    # "polynomial": the stars of this module (REFERENCE §7 relations; the bundled sky); "mist": the MIST v2.5
    # four-population sky of xpengine.simulate.populations (see xpengine.simulate.generate)
    physics: str = "polynomial"
    # knobs of the MIST draw (physics "mist"); None: its defaults, with g_limit and g_bright from here
    populations: SkyPopulationConfig | None = None
    # physics "mist": largest |emulated − MIST| intrinsic BP − RP [mag] of a star given an XP spectrum
    xp_colour_tolerance: float = 0.15
    # the XP emulator's calibration npz (xpengine.simulate.calibration.load_calibration): None = the packaged
    # default (v2); the training skies of gaia-xp v1/v2 were drawn with the packaged v1 file
    emulator: str | None = None

    def __post_init__(self) -> None:
        if self.physics not in PHYSICS:
            raise ValueError(f"physics={self.physics!r}; expected one of {PHYSICS}")
        if not self.xp_colour_tolerance > 0:
            raise ValueError(f"xp_colour_tolerance={self.xp_colour_tolerance}; expected > 0 mag")
        p = self.populations
        if p is not None and (p.g_limit, p.g_bright) != (self.g_limit, self.g_bright):
            raise ValueError(
                f"populations has g_limit={p.g_limit}, g_bright={p.g_bright} but the sky g_limit={self.g_limit}, "
                f"g_bright={self.g_bright}; expected the same magnitude limits"
            )


def core_he_burning_gyr(mass: np.ndarray, t_g: np.ndarray) -> np.ndarray:
    """Core-He-burning (red clump) lifetime [Gyr]: ≈ 0.1 Gyr for degenerate-core stars, rising to ~10% of
    the main-sequence lifetime above ~1.9 M☉ (secondary clump; orders of magnitude of MIST tracks)."""
    return 0.1 + 0.10 * t_g / (1.0 + np.exp(-(mass - 1.9) / 0.2))


def _rgb_logg(u: np.ndarray, lo: float = 1.0, hi: float = 3.5, a: float = 0.5) -> np.ndarray:
    """Inverse CDF of p(logg) ∝ 10^(a (logg − hi)) on [lo, hi]."""
    k = a * np.log(10.0)
    e_lo, e_hi = np.exp(k * (lo - hi)), 1.0
    return hi + np.log(e_lo + u * (e_hi - e_lo)) / k


def _visible_volume(
    pop: np.ndarray, d_max_kpc: np.ndarray, l_deg: np.ndarray, b_deg: np.ndarray, n_grid: int = 40
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """∫₀^d_max ρ_pop(s) s² ds [kpc³, local-thin-disk units] with s = d_max u³; also (u grid, cdf)."""
    u = (np.arange(n_grid) + 0.5) / n_grid  # (K,)
    s = d_max_kpc[:, None] * u[None, :] ** 3  # (N, K)
    rho = ph.stellar_density(pop[:, None], s, l_deg[:, None], b_deg[:, None])
    integrand = rho * s**2 * 3.0 * d_max_kpc[:, None] * u[None, :] ** 2 / n_grid  # ds = 3 d u² du
    cdf = np.cumsum(integrand, axis=1)
    return cdf[:, -1], u, cdf


def _draw_distance(
    d_max_kpc: np.ndarray, u_grid: np.ndarray, cdf: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Distance [kpc] from ρ s² on [0, d_max] by inverse CDF on the u³ grid (linear in u per cell)."""
    n, k = cdf.shape
    r = rng.random(n) * cdf[:, -1]
    idx = np.minimum((cdf < r[:, None]).sum(axis=1), k - 1)
    lo = np.where(idx > 0, cdf[np.arange(n), idx - 1], 0.0)
    hi = cdf[np.arange(n), idx]
    frac = np.clip((r - lo) / np.maximum(hi - lo, 1e-300), 0.0, 1.0)
    du = 1.0 / k
    u = idx * du + frac * du
    return d_max_kpc * u**3


def _propose(
    rng: np.random.Generator, n: int, hpx8_lo: int, hpx8_hi: int, cfg: SkyConfig
) -> dict[str, np.ndarray]:
    """One batch of weighted proposals (see module docstring)."""
    hpx8 = rng.integers(hpx8_lo, hpx8_hi + 1, n, dtype=np.int64)
    sub12 = rng.integers(0, 256, n, dtype=np.int64)
    deep = rng.integers(0, 4**12, n, dtype=np.int64)
    hpx12 = (hpx8 << 8) | sub12
    ra, dec = healpix_nest_to_radec((hpx12 << 24) | deep, 24)
    l_deg, b_deg = icrs_to_galactic(ra, dec)
    pop = rng.choice(3, size=n, p=_POP_PROPOSAL)
    age, feh, alpha = ph.sample_population_labels(pop, rng)
    # mass: mixture proposal in log10 M
    lm_g_lo = np.log10(ph.giant_mass_from_age(age, feh))
    lm_g_hi = np.log10(ph.giant_mass_from_age(age / 2.0, feh))  # covers the whole giant phase
    lm_d_lo, lm_d_hi = np.log10(_DWARF_MASS[0]), np.log10(_DWARF_MASS[1])
    use_giant = rng.random(n) < 0.5
    u = rng.random(n)
    logm = np.where(use_giant, lm_g_lo + u * (lm_g_hi - lm_g_lo), lm_d_lo + u * (lm_d_hi - lm_d_lo))
    mass = 10.0**logm
    in_g = (logm >= lm_g_lo) & (logm < lm_g_hi)
    in_d = (logm >= lm_d_lo) & (logm < lm_d_hi)
    q = 0.5 * in_g / np.maximum(lm_g_hi - lm_g_lo, 1e-12) + 0.5 * in_d / (lm_d_hi - lm_d_lo)
    t_g = ph.giant_age_gyr(mass, feh)
    t_rgb_end = t_g * (1.0 + cfg.rgb_duration)
    t_heb = core_he_burning_gyr(mass, t_g)
    is_giant = (age >= t_g) & (age < t_rgb_end + t_heb) & (mass <= _GIANT_MAX_MASS)
    is_dwarf = (age < t_g) & in_d
    # stellar parameters
    rc = is_giant & (age >= t_rgb_end)
    logg_rgb = _rgb_logg(rng.random(n))
    teff_rgb = ph.rgb_teff(logg_rgb, feh, mass) + rng.normal(0.0, 30.0, n)
    teff_rc, logg_rc = ph.red_clump_parameters(mass, feh, rng)
    teff_d, logg_d, lum_d = ph.dwarf_parameters(mass, age, feh)
    teff = np.where(is_giant, np.where(rc, teff_rc, teff_rgb), teff_d)
    logg = np.where(is_giant, np.where(rc, logg_rc, logg_rgb), logg_d)
    lum = np.where(is_giant, ph.luminosity_lsun(mass, teff, logg), lum_d)
    is_dwarf &= (teff > 3600.0) & (teff < 7500.0)
    is_giant &= (teff > 3500.0) & (teff < 5800.0)
    state = np.where(is_giant, np.where(rc, STATE_CODES["red_clump"], STATE_CODES["rgb"]), 0)
    mbol = ph.MBOL_SUN - 2.5 * np.log10(lum)
    bc_g = np.where(is_giant, ph.giant_bc("bc_g", teff, feh, logg), ph.andrae_bc_g(teff))
    abs_g = mbol - bc_g
    d_max = np.minimum(10.0 ** ((cfg.g_limit - abs_g) / 5.0 + 1.0) / 1000.0, 40.0)
    volume, u_grid, cdf = _visible_volume(pop, d_max, l_deg, b_deg)
    local = np.array([v[1] for v in ph.POPULATIONS.values()])[pop]
    weight = (ph.kroupa_dn_dlogm(mass) / np.maximum(q, 1e-300) * local / _POP_PROPOSAL[pop] * volume) * (
        is_giant | is_dwarf
    )
    return {
        "hpx12": hpx12,
        "deep": deep,
        "ra": ra,
        "dec": dec,
        "l": l_deg,
        "b": b_deg,
        "population": pop.astype(np.int8),
        "age_gyr": age,
        "fe_h": feh,
        "alpha_m": alpha,
        "mass": mass,
        "evolutionary_state": state.astype(np.int8),
        "teff": teff,
        "logg": logg,
        "luminosity": lum,
        "mbol": mbol,
        "abs_g0": abs_g,
        "d_max_kpc": d_max,
        "weight": weight,
        "_u_grid": u_grid,
        "_cdf": cdf,
    }


def _take(d: dict[str, np.ndarray], sel: np.ndarray) -> dict[str, np.ndarray]:
    return {k: (v[sel] if k != "_u_grid" else v) for k, v in d.items()}


def draw_stars(
    rng: np.random.Generator,
    n: int,
    hpx8_lo: int,
    hpx8_hi: int,
    cfg: SkyConfig,
    observe,
) -> dict[str, np.ndarray]:
    """Exactly `n` stars in HEALPix-8 pixels [hpx8_lo, hpx8_hi] with G ≤ cfg.g_limit.

    `observe(stars, rng) -> dict` computes the spectra/photometry of accepted stars (it must return a
    boolean `keep` (N,) and may add columns); it is called per batch so only survivors are kept.
    Returns a dict of (n,) arrays (and whatever `observe` adds).
    """
    parts: list[dict[str, np.ndarray]] = []
    have = 0
    w_cap = None
    n_batches = 0
    while have < n:
        n_batches += 1
        if n_batches > 2000:
            raise RuntimeError(
                f"could not draw {n} stars in HEALPix-8 range {hpx8_lo}-{hpx8_hi} after 2000 batches "
                f"({have} accepted); the region may hold too few visible stars"
            )
        prop = _propose(rng, cfg.batch_size, hpx8_lo, hpx8_hi, cfg)
        w = prop["weight"]
        if w_cap is None:
            pos = w[w > 0]
            w_cap = float(np.quantile(pos, 0.999)) if pos.size else 1.0
        acc = rng.random(w.size) < w / w_cap
        stars = _take(prop, acc)
        stars["distance_kpc"] = _draw_distance(stars["d_max_kpc"], stars["_u_grid"], stars["_cdf"], rng)
        del stars["_u_grid"], stars["_cdf"], stars["weight"]
        stars["ebv"] = ph.dust_ebv(stars["distance_kpc"], stars["l"], stars["b"])
        stars["ecl_lat"] = ecliptic_latitude(stars["ra"], stars["dec"])
        extra = observe(stars, rng)
        keep = extra.pop("keep")
        stars.update(extra)
        stars = {k: v[keep] for k, v in stars.items()}
        parts.append(stars)
        have += int(keep.sum())
    out = {k: np.concatenate([p[k] for p in parts])[:n] for k in parts[0]}
    logger.debug("drew %d stars in %d batches (w_cap %.3g)", n, n_batches, w_cap)
    return out
