"""MIST v2.5 isochrones and MIST/C3K bolometric corrections, read offline from PyPI packages.

Data (provenance, licences and citations in `xpengine/simulate/ISOCHRONES.md`):

- Isochrones: `lachesis-grids` 0.0.9, file `lachesis_grids/grids/mist_v2.5_vvcrit0.4.h5` (MIST v2.5,
  v/v_crit = 0.4, scaled-solar [α/Fe] = 0; Choi et al. 2016, ApJ 823, 102; Dotter 2016, ApJS 222, 8).
  15 [Fe/H] nodes (−4 … +0.5), 107 log10(age/yr) nodes (5.0 … 10.3, step 0.05), EEP 0 … 1721. The file's
  "sparse_v1" layout: `values` (n_rows, 16) float32 holds, for each (feh, age) slice k = i_feh·107 + j_age in
  order, `lengths[k]` consecutive rows for EEPs `offsets[k]` … `offsets[k] + lengths[k] − 1`. A few rows
  inside slices are NaN (14,577 of 1,350,066, all on the low-mass main sequence); they are filled here by
  linear interpolation along EEP within their slice.
- Bolometric corrections: `astrolachesis` 1.0.9, file `lachesis/Datafiles/BC_tables/bc_tables.h5`, group
  `UBVRIplus`: `data` (18 [Fe/H], 23,660 rows, 29) float32, rows = the full grid of 70 Teff (2,500 K …
  1e6 K) × 26 logg (−4 … 9.5) × 13 A_V (0 … 6, R_V = 3.1); columns Teff, logg, [Fe/H], A_V, R_V, then 24
  bands, among them `Gaia_G_EDR3`, `Gaia_BP_EDR3`, `Gaia_RP_EDR3`, `2MASS_J`, `2MASS_H`, `2MASS_Ks` (Vega).
  Convention (MIST): M_band = Mbol − BC_band, Mbol = 4.74 − 2.5 log10(L/L☉).

Neither package is imported: `lachesis_grids` only for its file path (it imports nothing else), and
`astrolachesis`' data file is located with `importlib.util.find_spec` (importing `lachesis` would pull in
numba, dynesty, ...). Both files are read with h5py once per process (:func:`load_mist`, :func:`load_bc`,
cached, ≈ 1.5 s together).

Interpolation (vectorised over a leading star axis):

- :func:`interpolate_eep` — trilinear in (EEP, log age, [Fe/H]) between the 8 surrounding grid points,
  the standard way of interpolating EEP-based isochrones (Dotter 2016): at a fixed EEP the stellar
  properties vary smoothly with age and metallicity. NaN where a point with non-zero weight is missing
  (outside a slice's EEP range).
- :func:`interpolate_mass` — the same at a given initial mass: the fractional EEP at which the
  age/[Fe/H]-blended initial mass equals the requested mass (bisection over the EEP axis, exact for the
  piecewise-linear interpolant). Stars past the end of the TP-AGB (EEP 1408) are `alive = False`. At
  [Fe/H] > +0.25 the grid has no stars below ≈ 0.5 M☉ (the +0.5 isochrones start there): such stars are
  taken from the +0.25 isochrones (`feh_snapped = True`).
- :func:`bolometric_corrections` — quadrilinear in (Teff, logg, [M/H], A_V); extinction
  A_band = BC_band(A_V = 0) − BC_band(A_V), scaled linearly beyond the table's A_V = 6.

α-enhancement: the grid is scaled-solar only, so an α-enhanced star is represented by the scaled-solar
isochrone of the same total metallicity, [M/H] = [Fe/H] + log10(0.694·10^[α/Fe] + 0.306)
(:func:`total_metallicity`; the form of Salaris, Chieffi & Straniero 1993, ApJ 414, 580, with the
coefficients adopted for this project: the paper's own, for its older solar mixture, are 0.638 / 0.362, as in
:func:`xpengine.simulate.physics.metallicity_mh`; the two differ by ≤ 0.02 dex for [α/Fe] ≤ 0.4). The
bolometric corrections are taken at the same [M/H].

Phases: MIST primary EEPs (Dotter 2016): 202 ZAMS, 454 TAMS, 605 RGB tip, 631 ZACHeB, 707 TACHeB, 808
TP-AGB, 1409 post-AGB, 1710 WD (the file's phase column changes exactly there). The MIST `phase` column
(−1 PMS, 0 MS, 2 RGB incl. the subgiant branch, 3 CHeB, 4 E-AGB, 5 TP-AGB, 6 post-AGB/WD, 9 Wolf–Rayet) is
taken from the nearest grid point; :func:`phase_codes` turns EEP, phase, logg and the helium-flash mass
(:func:`he_flash_mass`) into the labels of :data:`PHASES`.
"""

from __future__ import annotations

import logging

import numpy as np

from xpengine.simulate.mist_grid import (
    BANDS,
    BC_RELPATH,  # noqa: F401 (re-exported: it lived here)
    MIST_FILE,  # noqa: F401 (re-exported: it lived here)
    BCTable,
    MistGrid,
    load_bc,
    load_mist,
)
from xpengine.simulate.mist_phases import (
    EEP_TACHEB,
    EEP_TAMS,
    EEP_TIP,
    EEP_TPAGB_END,
    EEP_ZAMS,  # noqa: F401 (re-exported: it lived here)
    PHASES,
    phase_codes,
)

__all__ = [
    "BANDS",
    "EEP_TACHEB",
    "EEP_TAMS",
    "EEP_TIP",
    "EEP_TPAGB_END",
    "PHASES",
    "BCTable",
    "MistGrid",
    "absolute_magnitudes",
    "bolometric_corrections",
    "eep_range",
    "extinction",
    "he_flash_mass",
    "initial_mass_at_eep",
    "interpolate_eep",
    "interpolate_mass",
    "load_bc",
    "load_mist",
    "log_age_at_eep",
    "ms_lifetime_gyr",
    "phase_codes",
    "total_metallicity",
]

logger = logging.getLogger(__name__)

MBOL_SUN = 4.74  # MIST / IAU 2015 B2


_SECONDARY_CLUMP_LOG_L_TIP = 3.0  # non-degenerate He ignition: RGB-tip log L below this (see phase_codes)


# ----------------------------------------------------------------------------------------------------------
# interpolation


def _bracket(axis: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lower node index i (N,) and fraction t ∈ [0, 1] of x (N,) inside axis[i] … axis[i + 1]."""
    i = np.clip(np.searchsorted(axis, x, side="right") - 1, 0, axis.shape[0] - 2)
    t = (x - axis[i]) / (axis[i + 1] - axis[i])
    return i, t


def _check_range(name: str, x: np.ndarray, lo: float, hi: float) -> None:
    bad = ~((x >= lo) & (x <= hi))
    if bad.any():
        raise ValueError(
            f"{name}: {int(bad.sum())} of {x.size} values outside the grid [{lo}, {hi}] "
            f"(e.g. {x[bad][0]!r}); expected finite values in range"
        )


def _corners(
    grid: MistGrid, log_age: np.ndarray, feh: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Slices (N, 4) and bilinear weights (N, 4) of the (feh, age) corners, order (f0a0, f0a1, f1a0, f1a1);
    also the [Fe/H] and age fractions (N,)."""
    _check_range("log_age", log_age, grid.log_age[0], grid.log_age[-1])
    _check_range("feh", feh, grid.feh[0], grid.feh[-1])
    i, tf = _bracket(grid.feh, feh)
    j, ta = _bracket(grid.log_age, log_age)
    k00 = i * grid.n_age + j
    slices = np.stack([k00, k00 + 1, k00 + grid.n_age, k00 + grid.n_age + 1], axis=1)
    return slices, _weights(tf, ta), tf, ta


def _weights(tf: np.ndarray, ta: np.ndarray) -> np.ndarray:
    return np.stack([(1 - tf) * (1 - ta), (1 - tf) * ta, tf * (1 - ta), tf * ta], axis=1)  # (N, 4)


def _gather(grid: MistGrid, name: str, slices: np.ndarray, eep: np.ndarray) -> np.ndarray:
    """Column `name` at integer EEP `eep` (N,) of slices (N, K): (N, K) float64, NaN outside a slice."""
    rel = eep[:, None] - grid.offset[slices]
    cnt = grid.count[slices]
    ok = (rel >= 0) & (rel < cnt)
    row = grid.start[slices] + np.clip(rel, 0, np.maximum(cnt - 1, 0))
    out = grid.columns[name][row].astype(np.float64)
    out[~ok] = np.nan
    return out


def _blend(values: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Σ w·values over the last axis; NaN where a value with non-zero weight is NaN."""
    used = w > 0
    missing = (used & np.isnan(values)).any(axis=-1)
    out = np.where(used, w * np.nan_to_num(values), 0.0).sum(axis=-1)
    out[missing] = np.nan
    return out


def _blend_at(grid: MistGrid, name: str, slices: np.ndarray, w: np.ndarray, eep: np.ndarray) -> np.ndarray:
    """Trilinear value of column `name` at fractional EEP (N,) with (feh, age) corner weights w (N, 4)."""
    e0 = np.floor(np.nan_to_num(eep)).astype(np.int64)
    te = (eep - e0)[:, None]
    v0 = _gather(grid, name, slices, e0)
    v1 = _gather(grid, name, slices, e0 + 1)
    out = _blend(np.concatenate([v0, v1], axis=1), np.concatenate([w * (1 - te), w * te], axis=1))
    out[np.isnan(eep)] = np.nan
    return out


def _valid_range(grid: MistGrid, slices: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """EEP range [lo, hi] (N,) int64 where every corner with non-zero weight has data."""
    used = w > 0
    lo = np.where(used, grid.offset[slices], -1).max(axis=1)
    hi = np.where(used, grid.offset[slices] + grid.count[slices] - 1, 10**9).min(axis=1)
    return lo, hi


def _snap_low_mass(
    grid: MistGrid, slices: np.ndarray, w: np.ndarray, tf: np.ndarray, ta: np.ndarray, mass: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Corner weights with the upper [Fe/H] node dropped for stars lighter than its lightest star (the +0.5
    isochrones start at ≈ 0.5 M☉); also the mask of such stars."""
    first = grid.columns["initial_mass"][grid.start[slices]]  # (N, 4)
    snap = (
        (tf > 0)
        & (mass < np.maximum(first[:, 2], first[:, 3]))
        & (mass >= np.maximum(first[:, 0], first[:, 1]))
    )
    return np.where(snap[:, None], _weights(np.zeros_like(tf), ta), w), snap


def total_metallicity(feh: np.ndarray, alpha_fe: np.ndarray) -> np.ndarray:
    """[M/H] of a star with [Fe/H] and [α/Fe]: [Fe/H] + log10(0.694·10^[α/Fe] + 0.306) (module docstring)."""
    feh = np.asarray(feh, dtype=np.float64)
    return feh + np.log10(0.694 * 10.0 ** np.asarray(alpha_fe, dtype=np.float64) + 0.306)


def bolometric_corrections(
    teff: np.ndarray,
    logg: np.ndarray,
    m_h: np.ndarray,
    av: np.ndarray | float = 0.0,
    bc: BCTable | None = None,
) -> dict[str, np.ndarray]:
    """BC_band [mag] for the bands of :data:`BANDS` at Teff [K], logg, [M/H], A_V [mag] (broadcast).

    Quadrilinear interpolation in the MIST/C3K table; inputs clamped to its edges (Teff 2,500 K – 1e6 K,
    logg −4 – 9.5, [Fe/H] −4 – +0.75, A_V 0 – 6). NaN in → NaN out.
    """
    bc = load_bc() if bc is None else bc
    x = [np.asarray(v, dtype=np.float64) for v in np.broadcast_arrays(teff, logg, m_h, av)]
    shape = x[0].shape
    flat = [v.ravel() for v in x]
    n = flat[0].shape[0]
    nan = np.zeros(n, dtype=bool)
    idx, frac = [], []
    for v, ax in zip(flat, (bc.teff, bc.logg, bc.feh, bc.av), strict=True):
        nan |= np.isnan(v)
        i, t = _bracket(ax, np.clip(np.nan_to_num(v, nan=ax[0]), ax[0], ax[-1]))
        idx.append(i)
        frac.append(t)
    out = np.zeros((n, len(bc.bands)))
    for corner in range(16):
        bits = [(corner >> d) & 1 for d in range(4)]
        w = np.ones(n)
        for d in range(4):
            w = w * (frac[d] if bits[d] else 1.0 - frac[d])
        out += w[:, None] * bc.table[idx[0] + bits[0], idx[1] + bits[1], idx[2] + bits[2], idx[3] + bits[3]]
    out[nan] = np.nan
    return {b: out[:, k].reshape(shape) for k, b in enumerate(bc.bands)}


def absolute_magnitudes(
    log_l: np.ndarray, teff: np.ndarray, logg: np.ndarray, m_h: np.ndarray, bc: BCTable | None = None
) -> dict[str, np.ndarray]:
    """Unreddened absolute magnitudes `abs_<band>` [mag] and `mbol` from log10(L/L☉), Teff [K], logg, [M/H]."""
    mbol = MBOL_SUN - 2.5 * np.asarray(log_l, dtype=np.float64)
    bcs = bolometric_corrections(teff, logg, m_h, 0.0, bc)
    return {"mbol": mbol, **{f"abs_{b}": mbol - v for b, v in bcs.items()}}


def extinction(
    teff: np.ndarray, logg: np.ndarray, m_h: np.ndarray, av: np.ndarray, bc: BCTable | None = None
) -> dict[str, np.ndarray]:
    """Extinction `a_<band>` [mag] of a star of Teff [K], logg, [M/H] behind A_V [mag] (R_V = 3.1, the law of
    the MIST tables): BC(A_V = 0) − BC(A_V), the star's own SED; linear in A_V beyond the table's 6 mag."""
    bc = load_bc() if bc is None else bc
    av = np.asarray(av, dtype=np.float64)
    a_max = bc.av[-1]
    b0 = bolometric_corrections(teff, logg, m_h, 0.0, bc)
    b1 = bolometric_corrections(teff, logg, m_h, np.minimum(av, a_max), bc)
    scale = np.where(av > a_max, av / a_max, 1.0)
    return {f"a_{b}": (b0[b] - b1[b]) * scale for b in bc.bands}


def _stars(
    grid: MistGrid,
    slices: np.ndarray,
    w: np.ndarray,
    eep: np.ndarray,
    m_h: np.ndarray,
    bc: BCTable | None,
) -> dict[str, np.ndarray]:
    """Every output column at fractional EEP (N,) (NaN → not a star) with corner weights w (N, 4)."""
    lin = {
        n: _blend_at(grid, n, slices, w, eep)
        for n in ("initial_mass", "star_mass", "log_teff", "log_g", "log_l")
    }
    e0 = np.floor(np.nan_to_num(eep)).astype(np.int64)
    slope = _blend(_gather(grid, "initial_mass", slices, e0 + 1), w) - _blend(
        _gather(grid, "initial_mass", slices, e0), w
    )
    # MIST phase of the nearest grid point (largest corner weight, nearest integer EEP)
    best = slices[np.arange(eep.shape[0]), np.argmax(w, axis=1)][:, None]
    ph = _gather(grid, "phase", best, np.rint(np.nan_to_num(eep)).astype(np.int64))[:, 0]
    alive = np.isfinite(lin["initial_mass"]) & np.isfinite(lin["log_l"])
    mist_phase = np.where(alive & np.isfinite(ph), ph, 6).astype(np.int8)
    teff = 10.0 ** lin["log_teff"]
    logg = lin["log_g"]
    out = {
        "eep": np.where(alive, eep, np.nan),
        "initial_mass": lin["initial_mass"],
        "mass": lin["star_mass"],
        "teff": teff,
        "logg": logg,
        "log_l": lin["log_l"],
        "dmass_deep": np.where(alive, slope, np.nan),
        "mist_phase": mist_phase,
        **absolute_magnitudes(lin["log_l"], teff, logg, m_h, bc),
    }
    heb = alive & (eep >= EEP_TIP) & (eep < EEP_TACHEB)
    m_hef = np.full(eep.shape, np.nan)
    if heb.any():
        m_hef[heb] = he_flash_mass(m_h[heb], grid=grid)
    out["phase"] = phase_codes(out["eep"], mist_phase, logg, lin["initial_mass"], m_hef)
    out["alive"] = out["phase"] != PHASES["remnant"]
    for v in out.values():
        if v.dtype.kind == "f":
            v[~out["alive"]] = np.nan
    return out


def _inputs(*arrays: np.ndarray | float) -> list[np.ndarray]:
    return [np.atleast_1d(np.asarray(v, dtype=np.float64)) for v in np.broadcast_arrays(*arrays)]


def interpolate_eep(
    eep: np.ndarray | float,
    log_age: np.ndarray | float,
    m_h: np.ndarray | float,
    *,
    grid: MistGrid | None = None,
    bc: BCTable | None = None,
) -> dict[str, np.ndarray]:
    """Stellar properties at fractional EEP, log10(age/yr) and [M/H] (the isochrone metallicity); broadcast.

    Returns (N,) arrays: `eep`; `initial_mass` and current `mass` [M☉]; `teff` [K]; `logg` [cgs]; `log_l`
    [log10 L☉]; `dmass_deep` (d initial mass / d EEP [M☉], the isochrone's mass spacing: an IMF-weighted
    star count along an isochrone is IMF(M)·dmass_deep); `mist_phase` (int8, MIST code of the nearest grid
    point); `phase` (int8, :data:`PHASES`); `alive` (bool: a star of the simulated phases); `mbol` and
    `abs_g`, `abs_bp`, `abs_rp`, `abs_j`, `abs_h`, `abs_ks` [mag; A_V = 0; BCs at [M/H]]. Float columns are
    NaN where not `alive` (outside the isochrones, or a remnant). Raises ValueError for ages or
    metallicities outside the grid.
    """
    grid = load_mist() if grid is None else grid
    eep, log_age, m_h = _inputs(eep, log_age, m_h)
    slices, w, _, _ = _corners(grid, log_age, m_h)
    return _stars(grid, slices, w, eep, m_h, bc)


def eep_range(
    log_age: np.ndarray | float, m_h: np.ndarray | float, *, grid: MistGrid | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Integer EEP range [lo, hi] (N,) int64 covered by the isochrone of log10(age/yr) and [M/H]."""
    grid = load_mist() if grid is None else grid
    log_age, m_h = _inputs(log_age, m_h)
    slices, w, _, _ = _corners(grid, log_age, m_h)
    return _valid_range(grid, slices, w)


def initial_mass_at_eep(
    eep: np.ndarray | float,
    log_age: np.ndarray | float,
    m_h: np.ndarray | float,
    *,
    grid: MistGrid | None = None,
) -> np.ndarray:
    """Initial mass [M☉] (N,) of the star at fractional EEP on the isochrone of log10(age/yr) and [M/H]
    (the cheap part of :func:`interpolate_eep`); NaN outside the isochrone."""
    grid = load_mist() if grid is None else grid
    eep, log_age, m_h = _inputs(eep, log_age, m_h)
    slices, w, _, _ = _corners(grid, log_age, m_h)
    return _blend_at(grid, "initial_mass", slices, w, eep)


def _invert_mass(
    grid: MistGrid, slices: np.ndarray, w: np.ndarray, mass: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> np.ndarray:
    """Fractional EEP (N,) in [lo, hi] where the blended initial mass equals `mass` (bisection on the
    integer EEP axis, then exact inversion of the linear segment); NaN outside [M(lo), M(hi)]."""
    m_lo = _blend(_gather(grid, "initial_mass", slices, lo), w)
    m_hi = _blend(_gather(grid, "initial_mass", slices, hi), w)
    a = lo.copy()  # invariant: M(a) <= mass
    b = hi + 1  # invariant: M(b) > mass (hi + 1 stands for "beyond")
    n_iter = int(np.ceil(np.log2(int((hi - lo).max(initial=0)) + 2)))
    for _ in range(n_iter):
        go = b - a > 1
        mid = np.where(go, (a + b) // 2, a)
        up = go & (_blend(_gather(grid, "initial_mass", slices, mid), w) <= mass)
        a = np.where(up, mid, a)
        b = np.where(go & ~up, mid, b)
    m_a = _blend(_gather(grid, "initial_mass", slices, a), w)
    m_b = _blend(_gather(grid, "initial_mass", slices, np.minimum(a + 1, hi)), w)
    dm = m_b - m_a
    frac = np.where((a < hi) & (dm > 0), (mass - m_a) / np.where(dm > 0, dm, 1.0), 0.0)
    eep = a + np.clip(frac, 0.0, 1.0)
    eep[~((mass >= m_lo) & (mass <= m_hi))] = np.nan
    return eep


def interpolate_mass(
    initial_mass: np.ndarray | float,
    log_age: np.ndarray | float,
    m_h: np.ndarray | float,
    *,
    grid: MistGrid | None = None,
    bc: BCTable | None = None,
) -> dict[str, np.ndarray]:
    """Stellar properties of stars of initial mass [M☉], log10(age/yr) and [M/H]; broadcast.

    Returns what :func:`interpolate_eep` returns (`alive` is False for stars past the TP-AGB, EEP 1408, or
    lighter than the grid's lightest star, 0.1 M☉), plus `feh_snapped` (bool: taken from the lower [Fe/H]
    node alone because the upper one, +0.5, has no star that light).
    """
    grid = load_mist() if grid is None else grid
    mass, log_age, m_h = _inputs(initial_mass, log_age, m_h)
    slices, w, tf, ta = _corners(grid, log_age, m_h)
    w, snap = _snap_low_mass(grid, slices, w, tf, ta, mass)
    lo, hi = _valid_range(grid, slices, w)
    eep = _invert_mass(grid, slices, w, mass, lo, np.minimum(hi, EEP_TPAGB_END))
    out = _stars(grid, slices, w, eep, m_h, bc)
    out["feh_snapped"] = snap
    return out


def log_age_at_eep(
    initial_mass: np.ndarray | float,
    eep: np.ndarray | float,
    m_h: np.ndarray | float,
    *,
    grid: MistGrid | None = None,
) -> np.ndarray:
    """log10(age/yr) (N,) at which a star of initial mass [M☉] and [M/H] reaches EEP `eep`.

    At a fixed EEP the isochrones' initial mass decreases with age: the first age node where it drops
    below the star's mass brackets the answer, which is then exact for the interpolant (linear in log age
    between nodes). NaN where the grid never has that mass at that EEP (within 10^5–10^10.3 yr).
    """
    grid = load_mist() if grid is None else grid
    mass, eep, m_h = _inputs(initial_mass, eep, m_h)
    n = mass.shape[0]
    masses = np.empty((n, grid.n_age))  # (N, n_age): M(eep, age_j), decreasing in j
    for j in range(grid.n_age):
        slices, w, _, _ = _corners(grid, np.full(n, grid.log_age[j]), m_h)
        masses[:, j] = _blend_at(grid, "initial_mass", slices, w, eep)
    with np.errstate(invalid="ignore"):
        older = masses <= mass[:, None]  # NaN → False
    j1 = np.argmax(older, axis=1)  # first age node with M <= mass
    rows = np.arange(n)
    j0 = np.maximum(j1 - 1, 0)
    m0, m1 = masses[rows, j0], masses[rows, j1]
    ok = older.any(axis=1) & (j1 > 0) & np.isfinite(m0) & (m0 > m1)
    t = np.where(ok, (m0 - mass) / np.where(ok, m0 - m1, 1.0), np.nan)
    return grid.log_age[j0] + t * (grid.log_age[j1] - grid.log_age[j0])


def ms_lifetime_gyr(
    initial_mass: np.ndarray | float, m_h: np.ndarray | float, *, grid: MistGrid | None = None
) -> np.ndarray:
    """Main-sequence lifetime [Gyr]: the age at the terminal-age main sequence (EEP 454) of a star of
    initial mass [M☉] and [M/H]."""
    return 10.0 ** (log_age_at_eep(initial_mass, EEP_TAMS, m_h, grid=grid) - 9.0)


_HE_FLASH: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # grid path -> ([Fe/H] nodes, M_HeF)


def _he_flash_table(grid: MistGrid) -> tuple[np.ndarray, np.ndarray]:
    """([Fe/H] nodes, M_HeF [M☉]) of `grid`, computed on first use (≈ 0.3 s; see :func:`he_flash_mass`)."""
    if grid.path in _HE_FLASH:
        return _HE_FLASH[grid.path]
    masses = np.arange(1.2, 4.0001, 0.01)
    n_m = masses.shape[0]
    m_all = np.tile(masses, grid.feh.shape[0])  # (n_feh * n_m,) every mass at every [Fe/H] node
    z_all = np.repeat(grid.feh, n_m)
    age = log_age_at_eep(m_all, EEP_TIP, z_all, grid=grid)
    ok = np.isfinite(age)
    log_l_tip = np.full(age.shape, np.nan)
    slices, w, _, _ = _corners(grid, age[ok], z_all[ok])
    log_l_tip[ok] = _blend_at(grid, "log_l", slices, w, np.full(int(ok.sum()), float(EEP_TIP)))
    with np.errstate(invalid="ignore"):
        faint = (log_l_tip < _SECONDARY_CLUMP_LOG_L_TIP).reshape(grid.feh.shape[0], n_m)
    m_hef = np.where(faint.any(axis=1), masses[np.argmax(faint, axis=1)], np.nan)
    good = np.isfinite(m_hef)
    if not good.any():
        raise ValueError(f"{grid.path}: no RGB tip fainter than log L = {_SECONDARY_CLUMP_LOG_L_TIP}")
    _HE_FLASH[grid.path] = (grid.feh[good], m_hef[good])
    return _HE_FLASH[grid.path]


def he_flash_mass(m_h: np.ndarray | float, *, grid: MistGrid | None = None) -> np.ndarray:
    """Lowest initial mass [M☉] that ignites helium non-degenerately at [M/H] (broadcast): the lightest star
    whose RGB tip (EEP 605) is fainter than log L/L☉ = 3.0 (degenerate cores flash at log L ≈ 3.3–3.4;
    Girardi 1999, MNRAS 308, 818); ≈ 2.0 M☉ at solar metallicity in MIST v2.5. Computed once per grid."""
    grid = load_mist() if grid is None else grid
    feh, m_hef = _he_flash_table(grid)
    return np.interp(np.asarray(m_h, dtype=np.float64), feh, m_hef)
