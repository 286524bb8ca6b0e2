"""The stars of the MIST sky's populations: their labels (age, [Fe/H], [α/Fe] laws), the Kroupa IMF, and
their places on the isochrones (the binned segment mixture of the proposal); see
:mod:`xpengine.simulate.populations` (module docstring: sources and the proposal), which draws the sky
from them."""

from __future__ import annotations

import numpy as np

from xpengine.simulate import isochrones as iso
from xpengine.simulate.galaxy import POPULATIONS

FEH_RANGE = (-2.5, 0.5)
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

_SEGMENTS = (iso.EEP_TAMS, iso.EEP_TIP, iso.EEP_TACHEB, iso.EEP_TPAGB_END)  # EEP segment edges
_N_U = 16  # bins per segment in its unit coordinate (ln M fraction on the MS, EEP fraction after)


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
