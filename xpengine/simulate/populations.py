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

import numpy as np
import pyarrow as pa

from xpengine.simulate import isochrones as iso
from xpengine.simulate.galaxy import POPULATIONS, _draw_distance, visible_volume
from xpengine.simulate.physics import dust_ebv
from xpengine.simulate.stars import _N_U, _stellar_proposals, sample_labels

__all__ = [
    "COLUMNS",
    "EVOLUTIONARY_STATES",
    "POPULATIONS",  # re-exported from galaxy: the simulator's truth columns read it here
    "Directions",
    "Observe",
    "SkyPopulationConfig",
    "draw_sky",
    "draw_sky_arrays",
    "visible_density",
]

logger = logging.getLogger(__name__)

#: (rng, k) -> (ra, dec) [deg] (k,) each, or a dict with "ra", "dec" and any extra (k,) columns to carry along
#: (e.g. the HEALPix pixel the direction was drawn in)
Directions = Callable[[np.random.Generator, int], "tuple[np.ndarray, np.ndarray] | dict[str, np.ndarray]"]
#: (stars, rng) -> dict with a boolean "keep" (N,) and any extra (N,) columns (e.g. spectra, photometry)
Observe = Callable[[dict[str, np.ndarray], np.random.Generator], dict[str, np.ndarray]]

#: evolutionary_state codes of the simulator (:data:`xpengine.simulate.sky.STATE_CODES`)
EVOLUTIONARY_STATES: dict[str, int] = {"dwarf": 0, "rgb": 1, "red_clump": 2}


_GIANT_PHASES = ("rgb", "red_clump", "secondary_clump", "agb")

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
