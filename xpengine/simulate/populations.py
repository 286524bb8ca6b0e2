"""A magnitude-limited Gaia-like sky drawn from MIST v2.5 isochrones: four Galactic populations, Kroupa IMF.

What is drawn, per star: a population (thin disk, thick disk, halo, bulge), its age, [Fe/H] and [α/Fe],
an initial mass from the Kroupa (2001, MNRAS 322, 231) IMF (dN/dM ∝ M^−1.3 for 0.08–0.5 M☉, M^−2.3
above), the star's state on the MIST isochrone of its age and total metallicity
(:mod:`xpengine.simulate.isochrones`: current mass, Teff, logg, L, phase, absolute G/BP/RP/J/H/Ks), a
direction and a distance from the population's density, dust (:func:`xpengine.simulate.physics.dust_ebv`,
A_V = 3.1 E(B−V)) and each band's extinction for the star's own SED (MIST BC tables at that A_V). Stars
with g_bright ≤ G ≤ g_limit (default 5 ≤ G ≤ 17.65, the XP limit; REFERENCE §7) are kept, so dwarfs
dominate as in Gaia XP (≈ 75% main-sequence and subgiant stars, ≈ 25% giants, ≈ 5% below [Fe/H] = −1).

Population parameters (ages in Gyr; N(μ, σ)[a, b] = normal truncated to [a, b] by redrawing; all [Fe/H]
also truncated to [−2.5, +0.5]):

| population | local density (× thin disk at the Sun) | shape | age | [Fe/H] | [α/Fe] |
|---|---|---|---|---|---|
| thin | 1 | exp(−(R−R0)/2.6 kpc − abs(z)/0.30 kpc) | U(0.01, 10) (constant SFR) | N(0.10 − 0.035·age, 0.18) | α_low([Fe/H]) ± 0.03 |
| thick | 0.12 | exp(−(R−R0)/2.0 kpc − abs(z)/0.90 kpc) | N(10.5, 1.2)[8, 13.5] | N(−0.5, 0.3) | α_high([Fe/H]) ± 0.03 |
| halo | 0.005 | (R² + (z/0.64)² + 1 kpc²)^(−2.77/2) | N(12, 0.8)[10, 13.5] | N(−1.5, 0.5)[−2.5, 0] | 0.30 ± 0.05 |
| bulge | 1.5e10 M☉ in all | boxy Gaussian bar, below | N(10, 1.5)[6, 13.5] | ½ N(+0.26, 0.20) + ½ N(−0.31, 0.31) | α_high([Fe/H]) ± 0.03 |

α_low = clip(−0.12·[Fe/H], −0.05, 0.12) (the low-α sequence), α_high = clip(0.30 − 0.25 ([Fe/H] + 0.8),
0.02, 0.30) (the high-α sequence with its knee at [Fe/H] ≈ −0.8): approximations of the APOGEE sequences
(Hayden et al. 2015, ApJ 808, 132; Bensby et al. 2014, A&A 562, A71), not fits. [α/Fe] is reported as
`alpha_m` ([α/M] ≈ [α/Fe], as for APOGEE's ALPHA_M) and enters the isochrone through [M/H]
(:func:`~xpengine.simulate.isochrones.total_metallicity`), clipped to the grid's +0.5.

Sources: thin/thick age and [Fe/H] laws of REFERENCE §7 (tuned to APOGEE-like giants; the thin-disk
constant SFR over 0–10 Gyr as in the Besançon model, Robin et al. 2003, A&A 409, 523) with the thick-disk
[Fe/H] widened from N(−0.45, 0.25) to N(−0.5, 0.3) for its metal-weak tail (our choice); disk scale
lengths/heights and the thick-disk ratio 0.12 from Bland-Hawthorn & Gerhard (2016, ARA&A 54, 529, the
values of :mod:`~xpengine.simulate.physics`); halo normalisation 0.005, flattening q = 0.64 and power
n = 2.77 from Jurić et al. (2008, ApJ 673, 864; a 1 kpc core added to avoid the centre's singularity);
halo MDF peak −1.5 (Ivezić et al. 2008, ApJ 684, 287: ≈ −1.46) and age 12 Gyr (an old in-situ/accreted
mixture, e.g. Kalirai 2012, Nature 486, 90); [α/Fe] ≈ +0.3 of the metal-poor halo (Nissen & Schuster
2010, A&A 511, L10: its low-α accreted branch is not modelled). Bulge: the Besançon boxy-Gaussian shape
ρ ∝ exp(−r_s²/2), r_s⁴ = ((x/x0)² + (y/y0)²)² + (z/z0)⁴, (x0, y0, z0) = (1.59, 0.424, 0.424) kpc, cut
off beyond R_c = 2.54 kpc (× exp(−((R − R_c)/0.5 kpc)²/2)) as in Robin et al. (2003, Sect. 2.4; values
recalled, not re-checked against the paper), with its long axis at 27° from the Sun–centre line (near end
at l > 0; Wegg & Gerhard 2013, MNRAS 435, 1874) and a stellar mass of 1.5e10 M☉ (Bland-Hawthorn & Gerhard
2016) against a local thin-disk density of 0.04 M☉ pc⁻³, i.e. a volume integral of 375 kpc³ in local-thin
units (the shape integrates to 5.499 kpc³). Bulge metallicity components ≈ Zoccali et al. (2017, A&A 599,
A12); age ≈ 10 Gyr (Clarkson et al. 2008; Robin et al. 2003). R0 = 8.2 kpc and z☉ = 20.8 pc
(:mod:`~xpengine.simulate.physics`). The thin disk has a single scale height (Besançon's age-dependent one
is not modelled).

Sampling (importance sampling + rejection, vectorised in batches). A proposal: a population (probabilities
`population_proposal`), its labels, a place on its isochrone from a mixture of four segments — main sequence
(incl. pre-MS) in initial mass, log-uniform from `mass_min` to the TAMS mass; RGB + subgiant branch (EEP
454–605), core-He burning (605–707) and AGB (707–1408) in EEP — each split into 16 equal bins, and a
direction: by default from (l, sin b) cells of 10° × 1/12 (equal areas), or uniform from the caller's
`directions` (e.g. one HEALPix range). Its weight is IMF × (dM/dEEP on the EEP segments) / proposal density ×
the number of such stars visible along that line of sight, V = ∫ ρ(s) s² ds over the distances where the
star could be brighter than `g_limit` (a midpoint rule on s = d_max u², `n_distance` nodes, d_max from the
dust-free absolute G, at most `d_max_cap_kpc`, nodes beyond a lower bound of the dust's reach dropped; see
:func:`visible_volume`). `pilot_batches` batches (not kept) tally where the weight lies, and the bin, cell
and population probabilities follow that tally (80%, with 20% of the base plan kept), batch after batch.
A proposal is accepted with probability min(1, w / w_cap), w_cap = the `weight_cap_quantile` quantile of the
first kept batch's positive weights (the most heavily weighted stars are slightly under-represented: ≈ 2% of
the weight lies above the cap with the defaults; it is logged); its distance is drawn from ρ s² over the
visible nodes, its dust from :func:`~xpengine.simulate.physics.dust_ebv`, and it is kept if its reddened G
is within the limits (exact: the dropped distances were all too faint). `giant_boost` multiplies the weight
of RGB, clump and AGB stars (oversampling them); the column `selection_weight` = 1/boost restores the true mix.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pyarrow as pa

from xpengine.simulate import isochrones as iso
from xpengine.simulate.physics import R0_KPC, Z_SUN_KPC, dust_ebv

__all__ = [
    "COLUMNS",
    "EVOLUTIONARY_STATES",
    "POPULATIONS",
    "Directions",
    "Observe",
    "SkyPopulationConfig",
    "VisibleVolume",
    "density",
    "draw_sky",
    "draw_sky_arrays",
    "expected_fraction_below",
    "kroupa_imf",
    "sample_labels",
    "visible_density",
    "visible_volume",
]

logger = logging.getLogger(__name__)

#: (rng, k) -> (ra, dec) [deg] (k,) each, or a dict with "ra", "dec" and any extra (k,) columns to carry along
#: (e.g. the HEALPix pixel the direction was drawn in)
Directions = Callable[[np.random.Generator, int], "tuple[np.ndarray, np.ndarray] | dict[str, np.ndarray]"]
#: (stars, rng) -> dict with a boolean "keep" (N,) and any extra (N,) columns (e.g. spectra, photometry)
Observe = Callable[[dict[str, np.ndarray], np.random.Generator], dict[str, np.ndarray]]

#: population name -> code (thin, thick, halo as in :data:`xpengine.simulate.physics.POPULATIONS`)
POPULATIONS: dict[str, int] = {"thin": 0, "thick": 1, "halo": 2, "bulge": 3}
#: evolutionary_state codes of the simulator (:data:`xpengine.simulate.sky.STATE_CODES`)
EVOLUTIONARY_STATES: dict[str, int] = {"dwarf": 0, "rgb": 1, "red_clump": 2}

FEH_RANGE = (-2.5, 0.5)
THIN_H_R, THIN_H_Z = 2.6, 0.30
THICK_H_R, THICK_H_Z, THICK_NORM = 2.0, 0.90, 0.12
HALO_NORM, HALO_Q, HALO_N, HALO_CORE = 0.005, 0.64, 2.77, 1.0
BULGE_SCALE = (1.59, 0.424, 0.424)
BULGE_R_CUT, BULGE_CUT_WIDTH = 2.54, 0.5
BULGE_ANGLE_DEG = 27.0
BULGE_MASS_MSUN, THIN_LOCAL_MSUN_PC3 = 1.5e10, 0.04
BULGE_SHAPE_VOLUME_KPC3 = 5.499  # ∫ exp(−r_s²/2) × cutoff dV for BULGE_SCALE (tests recompute it)
BULGE_NORM = BULGE_MASS_MSUN / (THIN_LOCAL_MSUN_PC3 * 1e9) / BULGE_SHAPE_VOLUME_KPC3

# (mean, sd, lo, hi) of truncated normals; thin-disk age is uniform, its [Fe/H] mean depends on age
THIN_AGE = (0.01, 10.0)
THIN_FEH = (0.10, -0.035, 0.18)  # mean = a + b·age, sd
THICK_AGE = (10.5, 1.2, 8.0, 13.5)
THICK_FEH = (-0.5, 0.3)
HALO_AGE = (12.0, 0.8, 10.0, 13.5)
HALO_FEH = (-1.5, 0.5, -2.5, 0.0)
HALO_ALPHA = (0.30, 0.05)
BULGE_AGE = (10.0, 1.5, 6.0, 13.5)
BULGE_FEH = ((0.5, 0.26, 0.20), (0.5, -0.31, 0.31))  # (weight, mean, sd)
ALPHA_SCATTER = 0.03

_GIANT_PHASES = ("rgb", "red_clump", "secondary_clump", "agb")
_SEGMENTS = (iso.EEP_TAMS, iso.EEP_TIP, iso.EEP_TACHEB, iso.EEP_TPAGB_END)  # EEP segment edges

#: the per-star columns of :func:`draw_sky` (names as in `xpengine.simulate.sky.draw_stars` where shared)
COLUMNS: tuple[str, ...] = (
    "ra", "dec", "l", "b", "ecl_lat",
    "population", "population_name", "phase", "phase_name", "evolutionary_state",
    "age_gyr", "log_age", "fe_h", "alpha_m", "m_h",
    "mass", "initial_mass", "eep", "teff", "logg", "luminosity", "mbol",
    "abs_g0", "abs_bp0", "abs_rp0", "abs_j0", "abs_h0", "abs_ks0",
    "distance_kpc", "d_max_kpc", "ebv", "a_v", "a_g", "a_bp", "a_rp", "a_j", "a_h", "a_ks",
    "g", "bp", "rp", "j", "h", "ks", "selection_weight",
)  # fmt: skip


@dataclass(frozen=True)
class SkyPopulationConfig:
    """Selection and sampling knobs of :func:`draw_sky` (the Galaxy itself: module constants)."""

    g_limit: float = 17.65  # XP spectra exist to G ≈ 17.65 (REFERENCE §7)
    g_bright: float = 5.0
    mass_min: float = 0.1  # lightest initial mass [M☉] (the grid's); 0.45 keeps Teff ≳ 3600 K
    giant_boost: float = 1.0  # weight factor of RGB, clump and AGB stars (≥ 1 oversamples giants)
    teff_range: tuple[float, float] | None = None  # keep only stars with Teff [K] in range (None: all)
    population_proposal: tuple[float, float, float, float] = (0.45, 0.25, 0.15, 0.15)
    segment_proposal: tuple[float, float, float, float] = (0.55, 0.20, 0.15, 0.10)  # MS, RGB, CHeB, AGB
    batch_size: int = 16384
    weight_cap_quantile: float = 0.999
    d_max_cap_kpc: float = 100.0
    n_distance: int = 64
    pilot_batches: int = 4  # batches used only to adapt the proposal (not kept)
    max_batches: int = 2000

    def validate(self) -> None:
        """Raise ValueError listing every inconsistent knob."""
        errors = []
        if not self.g_bright < self.g_limit:
            errors.append(f"g_bright={self.g_bright} must be < g_limit={self.g_limit}")
        if not 0.1 <= self.mass_min < 2.0:
            errors.append(f"mass_min={self.mass_min}; expected 0.1 (the grid's lightest star) to 2 M☉")
        if not self.giant_boost > 0:
            errors.append(f"giant_boost={self.giant_boost}; expected > 0")
        for name in ("population_proposal", "segment_proposal"):
            p = np.asarray(getattr(self, name), dtype=np.float64)
            if p.shape != (4,) or (p <= 0).any():
                errors.append(f"{name}={getattr(self, name)}; expected 4 positive probabilities")
        if self.teff_range is not None and not self.teff_range[0] < self.teff_range[1]:
            errors.append(f"teff_range={self.teff_range}; expected (low, high) with low < high")
        if not 0 < self.weight_cap_quantile <= 1:
            errors.append(f"weight_cap_quantile={self.weight_cap_quantile}; expected in (0, 1]")
        if self.batch_size < 16 or self.n_distance < 8:
            errors.append(f"batch_size={self.batch_size}, n_distance={self.n_distance}; expected ≥ 16, ≥ 8")
        if errors:
            raise ValueError("invalid SkyPopulationConfig: " + "; ".join(errors))


# ----------------------------------------------------------------------------------------------------------
# stellar labels and the IMF


def kroupa_imf(mass: np.ndarray) -> np.ndarray:
    """Kroupa (2001) IMF dN/dM (unnormalised; continuous at 0.08 and 0.5 M☉) at mass [M☉] (N,)."""
    m = np.asarray(mass, dtype=np.float64)
    return np.where(
        m < 0.08,
        (m / 0.08) ** -0.3 * (0.08 / 0.5) ** -1.3,
        np.where(m < 0.5, (m / 0.5) ** -1.3, (m / 0.5) ** -2.3),
    )


def _truncnorm(rng: np.random.Generator, mean: np.ndarray, sd: float, lo: float, hi: float) -> np.ndarray:
    """Normal(mean, sd) (N,) truncated to [lo, hi] by redrawing the values outside."""
    mean = np.asarray(mean, dtype=np.float64)
    x = mean + sd * rng.standard_normal(mean.shape)
    bad = (x < lo) | (x > hi)
    for _ in range(1000):
        if not bad.any():
            return x
        x[bad] = mean[bad] + sd * rng.standard_normal(int(bad.sum()))
        bad = (x < lo) | (x > hi)
    raise ValueError(f"truncated normal: mean {mean[bad][:3]}, sd {sd} leave no mass in [{lo}, {hi}]")


def alpha_low(fe_h: np.ndarray) -> np.ndarray:
    """Mean [α/Fe] of the low-α (thin-disk) sequence at [Fe/H] (module docstring)."""
    return np.clip(-0.12 * np.asarray(fe_h), -0.05, 0.12)


def alpha_high(fe_h: np.ndarray) -> np.ndarray:
    """Mean [α/Fe] of the high-α (thick-disk, bulge) sequence at [Fe/H] (module docstring)."""
    return np.clip(0.30 - 0.25 * (np.asarray(fe_h) + 0.8), 0.02, 0.30)


def sample_labels(pop: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(age [Gyr], [Fe/H], [α/Fe]) (N,) for population codes `pop` (N,) of :data:`POPULATIONS`."""
    pop = np.asarray(pop)
    if pop.size and not np.isin(pop, list(POPULATIONS.values())).all():
        raise ValueError(f"population codes {np.unique(pop)}; expected some of {POPULATIONS}")
    n = pop.shape[0]
    age = np.empty(n)
    feh = np.empty(n)
    alpha = np.empty(n)
    lo, hi = FEH_RANGE
    sel = pop == POPULATIONS["thin"]
    k = int(sel.sum())
    age[sel] = THIN_AGE[0] + (THIN_AGE[1] - THIN_AGE[0]) * rng.random(k)
    feh[sel] = _truncnorm(rng, THIN_FEH[0] + THIN_FEH[1] * age[sel], THIN_FEH[2], lo, hi)
    alpha[sel] = alpha_low(feh[sel]) + ALPHA_SCATTER * rng.standard_normal(k)
    sel = pop == POPULATIONS["thick"]
    k = int(sel.sum())
    age[sel] = _truncnorm(rng, np.full(k, THICK_AGE[0]), *THICK_AGE[1:])
    feh[sel] = _truncnorm(rng, np.full(k, THICK_FEH[0]), THICK_FEH[1], lo, hi)
    alpha[sel] = alpha_high(feh[sel]) + ALPHA_SCATTER * rng.standard_normal(k)
    sel = pop == POPULATIONS["halo"]
    k = int(sel.sum())
    age[sel] = _truncnorm(rng, np.full(k, HALO_AGE[0]), *HALO_AGE[1:])
    feh[sel] = _truncnorm(rng, np.full(k, HALO_FEH[0]), *HALO_FEH[1:])
    alpha[sel] = HALO_ALPHA[0] + HALO_ALPHA[1] * rng.standard_normal(k)
    sel = pop == POPULATIONS["bulge"]
    k = int(sel.sum())
    age[sel] = _truncnorm(rng, np.full(k, BULGE_AGE[0]), *BULGE_AGE[1:])
    rich = rng.random(k) < BULGE_FEH[0][0]
    mean = np.where(rich, BULGE_FEH[0][1], BULGE_FEH[1][1])
    f = np.empty(k)
    f[rich] = _truncnorm(rng, mean[rich], BULGE_FEH[0][2], lo, hi)
    f[~rich] = _truncnorm(rng, mean[~rich], BULGE_FEH[1][2], lo, hi)
    feh[sel] = f
    alpha[sel] = alpha_high(f) + ALPHA_SCATTER * rng.standard_normal(k)
    return age, feh, alpha


def _norm_cdf(x: np.ndarray | float) -> np.ndarray:
    from math import erf, sqrt

    return np.vectorize(lambda v: 0.5 * (1.0 + erf(v / sqrt(2.0))))(np.asarray(x, dtype=np.float64))


def _truncnorm_cdf(x: float, mean: np.ndarray, sd: float, lo: float, hi: float) -> np.ndarray:
    a, b = _norm_cdf((lo - mean) / sd), _norm_cdf((hi - mean) / sd)
    return np.clip((_norm_cdf((x - mean) / sd) - a) / (b - a), 0.0, 1.0)


def expected_fraction_below(population: str, fe_h: float) -> float:
    """Fraction of a population's stars (all ages, before any selection) with [Fe/H] < `fe_h`, from the
    distributions of the module docstring (the thin disk averaged over its uniform age)."""
    lo, hi = FEH_RANGE
    if population == "thin":
        ages = np.linspace(*THIN_AGE, 2001)
        return float(_truncnorm_cdf(fe_h, THIN_FEH[0] + THIN_FEH[1] * ages, THIN_FEH[2], lo, hi).mean())
    if population == "thick":
        return float(_truncnorm_cdf(fe_h, np.array(THICK_FEH[0]), THICK_FEH[1], lo, hi))
    if population == "halo":
        return float(_truncnorm_cdf(fe_h, np.array(HALO_FEH[0]), *HALO_FEH[1:]))
    if population == "bulge":
        return float(sum(w * _truncnorm_cdf(fe_h, np.array(m), s, lo, hi) for w, m, s in BULGE_FEH))
    raise ValueError(f"population {population!r}; expected one of {list(POPULATIONS)}")


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


# ----------------------------------------------------------------------------------------------------------
# proposals and the magnitude-limited draw


def _state_from_phase(phase: np.ndarray) -> np.ndarray:
    """evolutionary_state codes (dwarf 0: pre-MS, MS, subgiant; rgb 1: RGB, AGB; red_clump 2: both clumps)."""
    p = iso.PHASES
    state = np.zeros(phase.shape, dtype=np.int8)
    state[(phase == p["rgb"]) | (phase == p["agb"])] = EVOLUTIONARY_STATES["rgb"]
    state[(phase == p["red_clump"]) | (phase == p["secondary_clump"])] = EVOLUTIONARY_STATES["red_clump"]
    return state


@dataclass(frozen=True)
class _Plan:
    """Proposal probabilities: populations (4,), (segment, u-bin) cells per population (4, 4·n_u), and
    directions per population over (l, sin b) cells (4, n_l·n_b) (None: the caller's directions)."""

    p_pop: np.ndarray
    p_cell: np.ndarray
    p_dir: np.ndarray | None


_N_U = 16  # bins per segment in its unit coordinate (ln M fraction on the MS, EEP fraction after)
_N_L, _N_SINB = 36, 24  # direction cells: 10° in l × 1/12 in sin b


def _base_plan(cfg: SkyPopulationConfig, adaptive_directions: bool) -> _Plan:
    p_pop = np.asarray(cfg.population_proposal, dtype=np.float64)
    p_seg = np.asarray(cfg.segment_proposal, dtype=np.float64)
    p_cell = np.repeat(p_seg / p_seg.sum() / _N_U, _N_U)[None, :].repeat(len(POPULATIONS), axis=0)
    p_dir = (
        np.full((len(POPULATIONS), _N_L * _N_SINB), 1.0 / (_N_L * _N_SINB)) if adaptive_directions else None
    )
    return _Plan(p_pop / p_pop.sum(), p_cell, p_dir)


class _Tally:
    """Proposal weight summed per population, per (population, segment cell) and per (population, direction
    cell) over every batch so far: estimates of where the target mass lies, for adapting the plan."""

    def __init__(self, base: _Plan) -> None:
        self.base = base
        self.w_pop = np.zeros(base.p_pop.shape)
        self.w_cell = np.zeros(base.p_cell.shape)
        self.w_dir = None if base.p_dir is None else np.zeros(base.p_dir.shape)

    def add(self, batch: dict[str, np.ndarray]) -> None:
        pop, w = batch["population"], batch["weight"]
        self.w_pop += np.bincount(pop, weights=w, minlength=self.w_pop.shape[0])
        np.add.at(self.w_cell, (pop, batch["_cell"]), w)
        if self.w_dir is not None:
            np.add.at(self.w_dir, (pop, batch["_dcell"]), w)

    def plan(self) -> _Plan:
        """Probabilities ∝ the tallied weight (each cell's mean weight evens out), mixed 80/20 with the base
        plan so that every cell keeps a non-zero probability."""

        def mix(tally: np.ndarray, base: np.ndarray) -> np.ndarray:
            tot = tally.sum(axis=-1, keepdims=True)
            share = np.where(tot > 0, tally / np.where(tot > 0, tot, 1.0), base)
            return 0.8 * share + 0.2 * base

        p_dir = None if self.w_dir is None else mix(self.w_dir, self.base.p_dir)
        return _Plan(mix(self.w_pop, self.base.p_pop), mix(self.w_cell, self.base.p_cell), p_dir)


def _draw_directions(
    rng: np.random.Generator, pop: np.ndarray, p_dir: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(l, b) [deg] (N,) from the direction cells of each star's population, the cell index and the
    weight factor (uniform-sky density / proposal density)."""
    n = pop.shape[0]
    cum = np.cumsum(p_dir, axis=1)[pop]  # (N, C)
    cell = np.minimum((rng.random(n)[:, None] > cum).sum(axis=1), p_dir.shape[1] - 1)
    il, ib = cell // _N_SINB, cell % _N_SINB
    l_deg = (il + rng.random(n)) * (360.0 / _N_L)
    sin_b = -1.0 + (ib + rng.random(n)) * (2.0 / _N_SINB)
    cell_area = (2.0 * np.pi / _N_L) * (2.0 / _N_SINB)  # sr
    factor = (1.0 / (4.0 * np.pi)) / (p_dir[pop, cell] / cell_area)
    return l_deg, np.rad2deg(np.arcsin(np.clip(sin_b, -1.0, 1.0))), cell, factor


def _stellar_proposals(
    rng: np.random.Generator,
    pop: np.ndarray,
    log_age: np.ndarray,
    m_h: np.ndarray,
    p_cell: np.ndarray,
    mass_min: float,
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Places on the isochrones (segment mixture of the module docstring, binned): the stars, their
    IMF / proposal weights (N,) and the (segment, u-bin) cell (N,) of each."""
    n = log_age.shape[0]
    lo, hi = iso.eep_range(log_age, m_h)
    hi = np.minimum(hi, iso.EEP_TPAGB_END)
    m_split = iso.initial_mass_at_eep(np.minimum(iso.EEP_TAMS, hi).astype(np.float64), log_age, m_h)
    ln_ms = np.log(np.maximum(np.nan_to_num(m_split, nan=mass_min), mass_min) / mass_min)  # MS length, ln M
    edges = np.array(_SEGMENTS, dtype=np.float64)
    seg_lo = np.stack([np.maximum(edges[k], lo) for k in range(3)], axis=1)  # (N, 3) EEP segments
    seg_hi = np.stack([np.minimum(edges[k + 1], hi) for k in range(3)], axis=1)
    seg_len = np.clip(seg_hi - seg_lo, 0.0, None)
    lengths = np.concatenate([ln_ms[:, None], seg_len], axis=1)  # (N, 4)
    p = p_cell[pop] * np.repeat(lengths > 0, _N_U, axis=1)  # (N, 4·n_u)
    p_sum = p.sum(axis=1)
    p = p / np.where(p_sum > 0, p_sum, 1.0)[:, None]
    cell = np.minimum((rng.random(n)[:, None] > np.cumsum(p, axis=1)).sum(axis=1), p.shape[1] - 1)
    seg = cell // _N_U
    u = (cell % _N_U + rng.random(n)) / _N_U
    rows = np.arange(n)
    seg_length = lengths[rows, seg]
    q = p[rows, cell] * _N_U / np.where(seg_length > 0, seg_length, 1.0)  # per ln M (MS) or per EEP
    ms = seg == 0
    stars: dict[str, np.ndarray] = {}
    weight = np.zeros(n)
    if ms.any():
        mass = mass_min * np.exp(u[ms] * ln_ms[ms])
        st = iso.interpolate_mass(mass, log_age[ms], m_h[ms])
        st.pop("feh_snapped")
        _put(stars, st, ms, n)
        weight[ms] = kroupa_imf(mass) * mass / q[ms]  # IMF per ln M / proposal per ln M
    ev = ~ms
    if ev.any():
        k = seg[ev] - 1
        eep = seg_lo[ev, k] + u[ev] * seg_len[ev, k]
        st = iso.interpolate_eep(eep, log_age[ev], m_h[ev])
        _put(stars, st, ev, n)
        with np.errstate(invalid="ignore"):
            weight[ev] = np.nan_to_num(kroupa_imf(st["initial_mass"]) * st["dmass_deep"] / q[ev])
    ok = stars["alive"] & (p_sum > 0) & (stars["initial_mass"] >= mass_min)
    return stars, np.where(ok, weight, 0.0), cell


def _put(dest: dict[str, np.ndarray], src: dict[str, np.ndarray], sel: np.ndarray, n: int) -> None:
    for key, v in src.items():
        if key not in dest:
            dest[key] = np.zeros(n, dtype=v.dtype) if v.dtype.kind in "biu" else np.full(n, np.nan)
        dest[key][sel] = v


def _propose(
    rng: np.random.Generator,
    n: int,
    cfg: SkyPopulationConfig,
    plan: _Plan,
    directions: Directions | None,
) -> dict[str, np.ndarray]:
    """One batch of `n` weighted proposals: every column of :data:`COLUMNS` known before the distance, plus
    `weight` (N,) ∝ target density / proposal density (0 = impossible), `_cdf` (N, n_distance) and the
    cells used (for adapting the plan)."""
    from xpengine.simulate.coords import ecliptic_latitude, galactic_to_icrs, icrs_to_galactic

    pop = rng.choice(len(POPULATIONS), size=n, p=plan.p_pop).astype(np.int8)
    if plan.p_dir is not None:
        l_deg, b_deg, dcell, dir_factor = _draw_directions(rng, pop, plan.p_dir)
        ra, dec = galactic_to_icrs(l_deg, b_deg)
    else:
        drawn = directions(rng, n)
        extra = dict(drawn) if isinstance(drawn, dict) else {"ra": drawn[0], "dec": drawn[1]}
        ra = np.asarray(extra.pop("ra"), dtype=np.float64)
        dec = np.asarray(extra.pop("dec"), dtype=np.float64)
        l_deg, b_deg = icrs_to_galactic(ra, dec)
        dcell, dir_factor = np.zeros(n, dtype=np.int64), np.ones(n)
    age, feh, alpha = sample_labels(pop, rng)
    m_h = iso.total_metallicity(feh, alpha)
    m_iso = np.minimum(m_h, 0.5)  # the grid's top; only a few α-rich stars at [Fe/H] ≈ +0.5 are clipped
    log_age = np.log10(age) + 9.0
    stars, weight, cell = _stellar_proposals(rng, pop, log_age, m_iso, plan.p_cell, cfg.mass_min)
    phase = stars["phase"]
    giant = np.isin(phase, [iso.PHASES[p] for p in _GIANT_PHASES])
    boost = np.where(giant, cfg.giant_boost, 1.0)
    if cfg.teff_range is not None:
        in_range = (stars["teff"] >= cfg.teff_range[0]) & (stars["teff"] <= cfg.teff_range[1])
        weight = np.where(in_range, weight, 0.0)
    good = weight > 0
    abs_g = np.where(good, stars["abs_g"], 99.0)
    # A_G / E(B−V) lower bound: the secant at the table's largest A_V (A_G is concave in A_V)
    a6 = iso.extinction(np.where(good, stars["teff"], 5000.0), np.where(good, stars["logg"], 4.0), m_iso, 6.0)
    volume, cdf, d_max, _ = visible_volume(
        pop,
        abs_g,
        l_deg,
        b_deg,
        g_limit=cfg.g_limit,
        a_g_per_ebv=3.1 * a6["a_g"] / 6.0,
        d_max_cap_kpc=cfg.d_max_cap_kpc,
        n_nodes=cfg.n_distance,
    )
    weight = np.where(good, weight / plan.p_pop[pop] * dir_factor * volume * boost, 0.0)
    carried = {} if plan.p_dir is not None else extra
    return {
        **carried,
        "ra": ra,
        "dec": dec,
        "l": l_deg,
        "b": b_deg,
        "ecl_lat": ecliptic_latitude(ra, dec),
        "population": pop,
        "phase": phase,
        "evolutionary_state": _state_from_phase(phase),
        "age_gyr": age,
        "log_age": log_age,
        "fe_h": feh,
        "alpha_m": alpha,
        "m_h": m_h,
        "mass": stars["mass"],
        "initial_mass": stars["initial_mass"],
        "eep": stars["eep"],
        "teff": stars["teff"],
        "logg": stars["logg"],
        "luminosity": 10.0 ** stars["log_l"],
        "mbol": stars["mbol"],
        **{f"abs_{b}0": stars[f"abs_{b}"] for b in iso.BANDS},
        "d_max_kpc": d_max,
        "selection_weight": 1.0 / boost,
        "weight": weight,
        "_m_iso": m_iso,
        "_cdf": cdf,
        "_cell": cell,
        "_dcell": dcell,
    }


def visible_density(
    n: int,
    rng: np.random.Generator | int,
    directions: Directions,
    config: SkyPopulationConfig | None = None,
) -> float:
    """Mean importance weight of `n` proposals towards the caller's `directions` (uniform over a region) with
    the fixed base plan of `config`: proportional to the number of stars visible per steradian of that
    region (the same units for every region), e.g. to split a region into chunks of equal star counts."""
    cfg = SkyPopulationConfig() if config is None else config
    cfg.validate()
    rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    plan = _base_plan(cfg, adaptive_directions=False)
    return float(_propose(rng, n, cfg, plan, directions)["weight"].mean())


def draw_sky_arrays(
    n: int,
    rng: np.random.Generator | int,
    config: SkyPopulationConfig | None = None,
    directions: Directions | None = None,
    observe: Observe | None = None,
) -> dict[str, np.ndarray]:
    """Exactly `n` stars of the magnitude-limited sky (module docstring): a dict of (n,) arrays, the
    columns of :data:`COLUMNS` (names as strings in `population_name`, `phase_name`), plus any extra
    columns of `directions` and `observe`.

    rng : a Generator or an int seed (the same seed and config give the same stars).
    directions : proposal directions (:data:`Directions`), uniform over the region wanted (e.g. a HEALPix
        range); default: the whole sky, proposed adaptively in (l, sin b) cells.
    observe : called on each batch of stars that passed the magnitude cut (:data:`Observe`, as the
        `observe` of `xpengine.simulate.sky.draw_stars`): its "keep" drops more stars (e.g. a G recomputed
        from a spectrum), its other columns are added.
    """
    cfg = SkyPopulationConfig() if config is None else config
    cfg.validate()
    if n < 1:
        raise ValueError(f"n={n}; expected >= 1")
    rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    # pilot batches (not kept) learn where the weight lies; the tally goes on over the kept batches
    tally = _Tally(_base_plan(cfg, adaptive_directions=directions is None))
    plan = tally.base
    for _ in range(cfg.pilot_batches):
        tally.add(_propose(rng, cfg.batch_size, cfg, plan, directions))
        plan = tally.plan()
    parts: list[dict[str, np.ndarray]] = []
    have = 0
    w_cap = None
    capped = total = 0.0
    n_batch = 0
    for n_batch in range(1, cfg.max_batches + 1):  # noqa: B007 (reported after the loop)
        prop = _propose(rng, cfg.batch_size, cfg, plan, directions)
        tally.add(prop)
        plan = tally.plan()
        w = prop.pop("weight")
        if w_cap is None:
            pos = w[w > 0]
            if not pos.size:
                raise RuntimeError("the first batch of proposals holds no visible star; check the config")
            w_cap = float(np.quantile(pos, cfg.weight_cap_quantile))
        capped += float(np.clip(w - w_cap, 0.0, None).sum())
        total += float(w.sum())
        acc = rng.random(w.shape[0]) < w / w_cap
        st = {k: v[acc] for k, v in prop.items() if k not in ("_cell", "_dcell")}
        st["distance_kpc"] = _draw_distance(st["d_max_kpc"], st.pop("_cdf"), rng)
        st["ebv"] = dust_ebv(st["distance_kpc"], st["l"], st["b"])
        st["a_v"] = 3.1 * st["ebv"]
        ext = iso.extinction(st["teff"], st["logg"], st.pop("_m_iso"), st["a_v"])
        mu = 5.0 * np.log10(st["distance_kpc"] * 1000.0) - 5.0
        for b in iso.BANDS:
            st[f"a_{b}"] = ext[f"a_{b}"]
            st[b] = st[f"abs_{b}0"] + mu + ext[f"a_{b}"]
        keep = (st["g"] >= cfg.g_bright) & (st["g"] <= cfg.g_limit)
        st = {k: v[keep] for k, v in st.items()}
        if observe is not None:
            seen = dict(observe(st, rng))
            keep = np.asarray(seen.pop("keep"), dtype=bool)
            st.update(seen)
            st = {k: v[keep] for k, v in st.items()}
        parts.append(st)
        have += int(keep.sum())
        if have >= n:
            break
    else:
        raise RuntimeError(f"drew only {have} of {n} stars in {cfg.max_batches} batches of {cfg.batch_size}")
    out = {k: np.concatenate([p[k] for p in parts])[:n] for k in parts[0]}
    logger.info(
        "drew %d stars in %d batches of %d (w_cap %.3g; %.2f%% of the proposal weight above the cap)",
        n, n_batch, cfg.batch_size, w_cap, 100.0 * capped / max(total, 1e-300),
    )  # fmt: skip
    out["population_name"] = np.array(list(POPULATIONS))[out["population"]]
    out["phase_name"] = np.array(list(iso.PHASES))[out["phase"]]
    return {**{k: out[k] for k in COLUMNS}, **{k: v for k, v in out.items() if k not in COLUMNS}}


def draw_sky(
    n: int,
    rng: np.random.Generator | int,
    config: SkyPopulationConfig | None = None,
    directions: Directions | None = None,
    observe: Observe | None = None,
) -> pa.Table:
    """:func:`draw_sky_arrays` as a `pyarrow.Table` (columns :data:`COLUMNS`, units in the field metadata)."""
    data = draw_sky_arrays(n, rng, config, directions, observe)
    fields = [
        pa.field(k, pa.string() if v.dtype.kind == "U" else pa.from_numpy_dtype(v.dtype),
                 metadata={"unit": _UNITS.get(k, "")})
        for k, v in data.items()
    ]  # fmt: skip
    return pa.Table.from_arrays([pa.array(v) for v in data.values()], schema=pa.schema(fields))


_UNITS = {
    "ra": "deg", "dec": "deg", "l": "deg", "b": "deg", "ecl_lat": "deg", "age_gyr": "Gyr",
    "log_age": "log10(yr)", "fe_h": "dex", "alpha_m": "dex", "m_h": "dex", "mass": "Msun",
    "initial_mass": "Msun", "teff": "K", "logg": "log10(cm s-2)", "luminosity": "Lsun", "mbol": "mag",
    "distance_kpc": "kpc", "d_max_kpc": "kpc", "ebv": "mag", "a_v": "mag",
    **{f"abs_{b}0": "mag" for b in iso.BANDS}, **{f"a_{b}": "mag" for b in iso.BANDS},
    **{b: "mag" for b in iso.BANDS},
}  # fmt: skip
