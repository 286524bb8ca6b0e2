"""The fitting grid of the isochrone fit (`xpengine.inference.isochrone_fit`): MIST v2.5 isochrones with
their prior weights and absolute magnitudes, built from the installed MIST files and cached on disk.

- points: EEP 202 (ZAMS) to 808 (start of the TP-AGB), ages 10^8 to 10^10.15 yr (0.1 to 14.1 Gyr), [Fe/H] −3
  to +0.5 (13 nodes, 0.25 to 0.5 dex apart), sorted by Teff; absolute G and BP−RP from the MIST/C3K bolometric
  corrections at A_V = 0;
- log prior of a point: Kroupa IMF × the initial-mass interval it stands for along its isochrone × uniform in
  age (10^log_age, the nodes being equally spaced in log age) × the [Fe/H] interval of its node (the end
  nodes and the end ages stand for half an interval);
- a coarse companion (every fourth EEP) for stars whose σ are far wider than the grid's steps.

The grid (~330k points, up to 21,700 K) is built on first use in a process (about 3 s) and cached
(`load_fit_grid`: default `$XPENGINE_CACHE` or `~/.cache/xpengine`) as a 13 MB .npz keyed on the recipe's
version and the source files, so later processes load it in about 0.05 s; a node without the MIST packages
(a GPU node with torch only) reads a copied cache file. Nothing of the MIST files is shipped with the
repository (`xpengine/simulate/ISOCHRONES.md`: provenance and terms).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xpengine.inference.galactic_prior import node_index

__all__ = [
    "COLOUR_FLOOR",
    "COLOUR_GIANT_LOGG",
    "COLOUR_SCALE",
    "GRID_RECIPE",
    "GRID_VERSION",
    "RECIPE_BEFORE",
    "FitGrid",
    "build_fit_grid",
    "colour_scale",
    "load_fit_grid",
]

log = logging.getLogger(__name__)

GRID_VERSION = 5
"""Version of the cached grid's recipe: part of the cache key."""
GRID_RECIPE = (
    f"MIST v2.5 fit grid v{GRID_VERSION}, Galactic distance prior v1, BP−RP bound v2, dereddened BP−RP v1, "
    "real-star colour scale v1, input E(B−V) ≤ 0 as 0, continuous χ² ball, flag ISOCHRONE_INPUT_EBV, "
    "input E(B−V) without σ at 16 % (≥ 0.01 mag), distance from the posterior M_G (DISTANCE_FROM_ISOCHRONES)"
)
"""The fit's recipe as a catalogue's job record names it (the MIST files are pinned by the packages'
versions; the distance prior is `galactic_prior`'s, since session 21; the one-sided colour bound and the
grid's BP−RP column since session 22: "MIST v2.5 fit grid v4, Galactic distance prior v1" before; the
two-sided (BP−RP)₀ term of a star with an input E(B−V), and MIST's colours set on real stars' scale
(`COLOUR_SCALE`), which changes the bound too, since session 23: "MIST v2.5 fit grid v5,
Galactic distance prior v1, BP−RP bound v1" before; the flag ISOCHRONE_INPUT_EBV and the default σ of
an input E(B−V) given without one since session 24; the distance of a fitted star without a parallax
from its posterior M_G since session 28, so that a resumed catalogue never mixes the two)."""
RECIPE_BEFORE = "MIST v2.5 fit grid v4, no distance prior"
"""The recipe of the catalogues that recorded none (session 20)."""

COLOUR_FLOOR = 0.03
"""σ floor [mag] of a colour in the fit (`isochrone_fit.SIGMA_FLOOR`), and of the colour scale's σ."""
COLOUR_SCALE = {
    "giants": (
        (3523.0, 1.034, 0.183),
        (3688.0, 0.592, 0.169),
        (3847.0, 0.317, 0.106),
        (3981.0, 0.198, 0.067),
        (4133.0, 0.117, 0.035),
        (4311.0, 0.082, 0.033),
        (4510.0, 0.059, 0.019),
        (4710.0, 0.041, 0.013),
        (4897.0, 0.033, 0.018),
        (5101.0, 0.018, 0.037),
        (5296.0, -0.025, 0.057),
        (5680.0, -0.066, 0.064),
        (6051.0, -0.143, 0.066),
        (6355.0, -0.133, 0.049),
        (8000.0, 0.000, 0.049),
    ),
    "dwarfs": (
        (3699.0, 0.330, 0.000),
        (3815.0, 0.259, 0.000),
        (3968.0, 0.199, 0.000),
        (4127.0, 0.148, 0.022),
        (4312.0, 0.097, 0.066),
        (4515.0, 0.096, 0.067),
        (4716.0, -0.022, 0.123),
        (4904.0, -0.012, 0.073),
        (5137.0, 0.006, 0.050),
        (5383.0, -0.006, 0.032),
        (5681.0, -0.008, 0.023),
        (6018.0, -0.027, 0.029),
        (6358.0, -0.056, 0.072),
        (6661.0, -0.085, 0.063),
        (8000.0, 0.000, 0.063),
    ),
}
"""MIST's intrinsic BP−RP against real stars' at their spectroscopic Teff, logg and [Fe/H], for grid points of
logg < `COLOUR_GIANT_LOGG` ("giants") and the others: (Teff [K], shift, scatter [mag]). Measured on the
ASPCAP labels of 8,868 low-extinction APOGEE×XP stars (AK_TARG < 0.03; train split; the check clusters left
out): each entry is a Teff bin's median Teff, the median of dereddened Gaia BP−RP less MIST's colour at the
labels, and √(robust σ² − MIST's σ at the labels) (`python benchmarks/colour_teff_scale.py`, session 23,
rerun in session 24 on the current fit, `benchmarks/results/colour_teff_scale.md`, bins of 20 train stars
or more below 7,000 K). Real M giants are
0.6–1.0 mag redder than MIST at their spectroscopic Teff, M dwarfs 0.3, K giants 0.03–0.2; G dwarfs agree to
0.01 and F dwarfs are 0.03–0.09 bluer. The fit compares a star's colour with the grid point's MIST colour
plus the shift at its Teff (linear between entries, the end values beyond) and adds the scatter (at least
the colour's floor) to the star's σ in quadrature: the model's Teff is ASPCAP's scale, and so is this.
The last entry (8,000 K, shift 0) is not measured: above 7,000 K the same residual measures the inputs, not
MIST (ASPCAP gives hot stars no [Fe/H] and less reliable Teff; AK_TARG, RJCE's H − [4.5] less a cool star's
intrinsic colour, underestimates a hot star's extinction), so the shift goes to 0 by 8,000 K (MIST's colours
of A and B stars taken as they are), with the F stars' scatter."""
COLOUR_GIANT_LOGG = 3.5


EEP_FIRST, EEP_LAST = 202, 808  # ZAMS, start of the TP-AGB (xpengine.simulate.mist_phases)
LOG_AGE_RANGE = (8.0, 10.15)
FEH_MIN = -3.0
# the moments are summed about these: [M☉], [ln Gyr], [mag]
_MASS_REF, _LN_AGE_REF, _ABS_G_REF = 1.0, 1.5, 4.0


def colour_scale(teff: np.ndarray, logg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Shift and σ [mag] (`COLOUR_SCALE`; σ at least the colour's floor) of MIST's intrinsic BP−RP at grid
    points of Teff `teff` [K] and `logg`: the colour a real star there has is MIST's plus the shift, ± the σ."""
    t = np.asarray(teff, dtype=np.float64)
    giant = np.asarray(logg) < COLOUR_GIANT_LOGG
    (tg, sg, eg), (td, sd, ed) = (np.asarray(COLOUR_SCALE[k]).T for k in ("giants", "dwarfs"))
    shift = np.where(giant, np.interp(t, tg, sg), np.interp(t, td, sd))
    sigma = np.where(giant, np.interp(t, tg, eg), np.interp(t, td, ed))
    return shift, np.maximum(sigma, COLOUR_FLOOR)


@dataclass(frozen=True)
class FitGrid:
    """Grid points sorted by Teff: (n,) float32 teff [K], logg, feh, abs_g [mag], bp_rp [mag] (intrinsic,
    A_V = 0), mass [M☉], ln_age [ln Gyr], log_prior; `feh_nodes` (k,) the [Fe/H] nodes; `source` a description of the files."""

    teff: np.ndarray
    logg: np.ndarray
    feh: np.ndarray
    abs_g: np.ndarray
    bp_rp: np.ndarray
    mass: np.ndarray
    ln_age: np.ndarray
    log_prior: np.ndarray
    feh_nodes: np.ndarray
    source: str
    coarse: FitGrid | None = None  # every fourth EEP: for stars of wide σ

    @functools.cached_property
    def moments(self) -> np.ndarray:
        """(n, 7) float64 [1, Δm, Δm², Δa, Δa², ΔM, ΔM²] of each point (mass, ln age, M_G), Δ about
        `_MASS_REF` / `_LN_AGE_REF` / `_ABS_G_REF` (so that the posterior sums keep the variances'
        precision); built once per grid."""
        dm, da = self.mass - _MASS_REF, self.ln_age - _LN_AGE_REF
        dg = self.abs_g.astype(np.float64) - _ABS_G_REF
        return np.stack([np.ones_like(dm), dm, dm * dm, da, da * da, dg, dg * dg], axis=1).astype(np.float64)

    @functools.cached_property
    def real_colour(self) -> tuple[np.ndarray, np.ndarray]:
        """(n,) float32 each point's BP−RP on real stars' scale and that scale's σ² [mag²]
        (`colour_scale`): the colour terms' side of the points; built once per grid."""
        shift, sigma = colour_scale(self.teff, self.logg)
        return (self.bp_rp + shift).astype(np.float32), (sigma**2).astype(np.float32)

    @functools.cached_property
    def prior_nodes(self) -> np.ndarray:
        """(n,) int32 each point's node of the distance prior's table (`galactic_prior.node_index`)."""
        return node_index(self.abs_g)

    def feh_half_spacing(self, m_h: np.ndarray) -> np.ndarray:
        """Half the spacing of the [Fe/H] nodes around each [M/H] (N,)."""
        nodes = self.feh_nodes
        i = np.clip(np.searchsorted(nodes, m_h) - 1, 0, nodes.size - 2)
        return 0.5 * (nodes[i + 1] - nodes[i])


def build_fit_grid(mist=None, bc=None, *, eep_step: int = 1, coarse: bool = True) -> FitGrid:
    """The fitting grid from the MIST isochrones and bolometric corrections (default: the installed
    files, `xpengine.simulate.isochrones.load_mist` / `load_bc`): every `eep_step`-th EEP (the mass
    intervals taken along the points kept), with a `coarse` companion (every fourth EEP) for stars whose
    σ are too wide for the grid's detail to matter."""
    from xpengine.simulate import isochrones as iso
    from xpengine.simulate.stars import kroupa_imf

    grid = iso.load_mist() if mist is None else mist
    nodes = grid.feh[grid.feh >= FEH_MIN - 1e-9]
    feh_width = _interval_weights(nodes)
    parts: dict[str, list[np.ndarray]] = {
        k: [] for k in ("teff", "logg", "feh", "log_l", "mass", "ln_age", "lp")
    }
    cols = grid.columns
    ages = np.flatnonzero(
        (grid.log_age >= LOG_AGE_RANGE[0] - 1e-9) & (grid.log_age <= LOG_AGE_RANGE[1] + 1e-9)
    )
    for i_feh, feh in enumerate(grid.feh):
        if feh < FEH_MIN - 1e-9:
            continue
        k_node = int(np.searchsorted(nodes, feh - 1e-9))
        for j in ages:
            log_age = grid.log_age[j]
            k = i_feh * grid.n_age + j
            first, count, start = int(grid.offset[k]), int(grid.count[k]), int(grid.start[k])
            lo, hi = max(EEP_FIRST, first), min(EEP_LAST, first + count - 1)
            if hi - lo < 2:
                continue
            rows = np.arange(start + lo - first, start + hi - first + 1)
            rows = np.unique(np.append(rows[::eep_step], rows[-1]))
            m0 = cols["initial_mass"][rows]
            dm = np.abs(np.gradient(m0))
            ok = dm > 0
            rows, m0, dm = rows[ok], m0[ok], dm[ok]
            end = 0.5 if j in (ages[0], ages[-1]) else 1.0  # an end age: half an interval
            lp = np.log(kroupa_imf(m0) * dm * end) + log_age * np.log(10.0) + np.log(feh_width[k_node])
            parts["teff"].append(10.0 ** cols["log_teff"][rows].astype(np.float64))
            parts["logg"].append(cols["log_g"][rows].astype(np.float64))
            parts["feh"].append(np.full(rows.size, feh))
            parts["log_l"].append(cols["log_l"][rows].astype(np.float64))
            parts["mass"].append(cols["star_mass"][rows].astype(np.float64))
            parts["ln_age"].append(np.full(rows.size, (log_age - 9.0) * np.log(10.0)))
            parts["lp"].append(lp)
    a = {k: np.concatenate(v) for k, v in parts.items()}
    mags = iso.absolute_magnitudes(a["log_l"], a["teff"], a["logg"], a["feh"], bc)
    order = np.argsort(a["teff"], kind="stable")
    lp = a["lp"][order]
    return FitGrid(
        teff=a["teff"][order].astype(np.float32),
        logg=a["logg"][order].astype(np.float32),
        feh=a["feh"][order].astype(np.float32),
        abs_g=mags["abs_g"][order].astype(np.float32),
        bp_rp=(mags["abs_bp"] - mags["abs_rp"])[order].astype(np.float32),
        mass=a["mass"][order].astype(np.float32),
        ln_age=a["ln_age"][order].astype(np.float32),
        log_prior=(lp - lp.max()).astype(np.float32),
        feh_nodes=nodes.astype(np.float64),
        source=f"{grid.path} ({'installed BC table' if bc is None else getattr(bc, 'path', 'BC table')})",
        coarse=build_fit_grid(grid, bc, eep_step=4, coarse=False) if coarse else None,
    )


def _interval_weights(nodes: np.ndarray) -> np.ndarray:
    """The interval each node stands for (trapezoid rule: half the gaps on either side)."""
    if nodes.size < 2:
        return np.ones(nodes.size)
    gaps = np.diff(nodes)
    return 0.5 * (np.append(gaps, 0.0) + np.insert(gaps, 0, 0.0))


def _cache_key() -> str:
    from xpengine.simulate.mist_grid import _bc_path, _mist_path

    h = hashlib.sha256(f"xpengine-isochrone-fit-v{GRID_VERSION}".encode())
    for p in (_mist_path(), _bc_path()):
        st = Path(p).stat()
        h.update(f"|{Path(p).name}|{st.st_size}|{int(st.st_mtime)}".encode())
    return h.hexdigest()[:16]


def _default_cache_dir() -> Path:
    env = os.environ.get("XPENGINE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "xpengine"


_FIELDS = ("teff", "logg", "feh", "abs_g", "bp_rp", "mass", "ln_age", "log_prior", "feh_nodes")


def _read_npz(path: Path) -> FitGrid:
    with np.load(path) as z:
        coarse = FitGrid(**{f: z[f"coarse_{f}"] for f in _FIELDS}, source=str(z["source"]))
        return FitGrid(**{f: z[f] for f in _FIELDS}, source=str(z["source"]), coarse=coarse)


def load_fit_grid(cache_dir: str | None = None) -> FitGrid:
    """The fitting grid of the installed MIST files: from the disk cache when it holds this recipe's
    grid, else built (`build_fit_grid`) and written there atomically (a cache that cannot be written is
    logged and skipped); cached per process and cache folder (default `$XPENGINE_CACHE`, else
    ~/.cache/xpengine). Without the MIST packages (h5py, lachesis-grids, astrolachesis), the newest
    readable grid of this recipe in the cache folder, else an ImportError saying what to do."""
    folder = Path(cache_dir) if cache_dir is not None else _default_cache_dir()
    return _load_fit_grid(str(folder.resolve()))


@functools.lru_cache(maxsize=2)
def _load_fit_grid(folder_name: str) -> FitGrid:
    folder = Path(folder_name)
    try:
        key = _cache_key()
    except (ImportError, FileNotFoundError) as err:  # no MIST files here (a GPU node with torch only)
        cached = sorted(folder.glob(f"isochrone_fit_v{GRID_VERSION}_*.npz"), key=lambda p: p.stat().st_mtime)
        for path in reversed(cached):
            try:
                grid = _read_npz(path)
            except Exception as bad:  # a damaged copy: the next one
                log.warning("isochrone grid cache %s unreadable (%s): skipped", path, bad)
                continue
            log.info("MIST files not installed: the isochrone grid cached in %s", path)
            return grid
        raise ImportError(
            f"{err}; the isochrone mass and age of stars outside the model's domain need the MIST files, "
            f"or a grid cached by a machine that has them (copy its ~/.cache/xpengine/isochrone_fit_v"
            f"{GRID_VERSION}_*.npz into $XPENGINE_CACHE), or the policy mass_age_from_isochrones: false"
        ) from err
    path = folder / f"isochrone_fit_v{GRID_VERSION}_{key}.npz"
    if path.exists():
        try:
            return _read_npz(path)
        except Exception as err:  # truncated, corrupt (BadZipFile), or of another layout: rebuilt
            log.warning("isochrone grid cache %s unreadable (%s): rebuilt", path, err)
    grid = build_fit_grid()
    tmp = None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".npz.tmp")
        with os.fdopen(fd, "wb") as fh:
            np.savez(
                fh,
                **{f: getattr(grid, f) for f in _FIELDS},
                **{f"coarse_{f}": getattr(grid.coarse, f) for f in _FIELDS},
                source=np.asarray(grid.source),
            )
        os.replace(tmp, path)
        tmp = None
    except OSError as err:
        log.warning("isochrone grid not cached in %s: %s", folder, err)
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
    return grid
