"""The MIST v2.5 isochrone grid and the MIST/C3K bolometric-correction table: where the files are, and
reading them (`MistGrid`, `BCTable`, `load_mist`, `load_bc`); see :mod:`xpengine.simulate.isochrones`
(module docstring: the files and their layout), which re-exports every name here."""

from __future__ import annotations

import functools
import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

logger = logging.getLogger("xpengine.simulate.isochrones")

MIST_FILE = "mist_v2.5_vvcrit0.4.h5"
BC_RELPATH = ("Datafiles", "BC_tables", "bc_tables.h5")

#: output band name -> column name in the MIST BC table (UBVRIplus system, Vega magnitudes)
BANDS: dict[str, str] = {
    "g": "Gaia_G_EDR3",
    "bp": "Gaia_BP_EDR3",
    "rp": "Gaia_RP_EDR3",
    "j": "2MASS_J",
    "h": "2MASS_H",
    "ks": "2MASS_Ks",
}

_GRID_COLUMNS = {"initial_mass": 2, "star_mass": 3, "log_teff": 4, "log_g": 5, "log_l": 6, "phase": 8}


@dataclass(frozen=True)
class MistGrid:
    """MIST v2.5 isochrones in their sparse layout (see module docstring); columns flat over rows."""

    feh: np.ndarray  # (n_feh,) [Fe/H] nodes
    log_age: np.ndarray  # (n_age,) log10(age/yr) nodes
    offset: np.ndarray  # (n_feh * n_age,) int64 first EEP of each slice
    count: np.ndarray  # (n_feh * n_age,) int64 number of EEPs of each slice
    start: np.ndarray  # (n_feh * n_age,) int64 first row of each slice
    columns: dict[str, np.ndarray]  # name -> (n_rows,) initial_mass float64, others float32
    path: str

    @property
    def n_age(self) -> int:
        return self.log_age.shape[0]


@dataclass(frozen=True)
class BCTable:
    """MIST/C3K bolometric corrections on a regular (Teff, logg, [Fe/H], A_V) grid."""

    teff: np.ndarray  # (70,) K
    logg: np.ndarray  # (26,)
    feh: np.ndarray  # (18,)
    av: np.ndarray  # (13,) mag
    bands: tuple[str, ...]  # output names, keys of BANDS
    table: np.ndarray  # (70, 26, 18, 13, n_bands) float64 BC [mag]
    path: str


def _mist_path() -> Path:
    try:
        import lachesis_grids
    except ImportError as err:
        raise ImportError(
            "the MIST isochrones come from the PyPI package lachesis-grids; `pip install lachesis-grids==0.0.9`"
        ) from err
    return Path(lachesis_grids.grid_path(MIST_FILE))


def _bc_path() -> Path:
    spec = importlib.util.find_spec("lachesis")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "the MIST bolometric corrections come from the PyPI package astrolachesis; "
            "`pip install astrolachesis==1.0.9` (its data file is read directly; `--no-deps` is enough)"
        )
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*BC_RELPATH)
    if not path.exists():
        raise FileNotFoundError(f"{path}: the astrolachesis bolometric-correction table is missing")
    return path


def _fill_gaps(col: np.ndarray) -> np.ndarray:
    """Linear interpolation over the row index of NaN rows (= along EEP inside a slice, given that every
    slice starts and ends with a finite row, checked by the caller)."""
    bad = np.isnan(col)
    if bad.any():
        idx = np.arange(col.shape[0])
        col = col.copy()
        col[bad] = np.interp(idx[bad], idx[~bad], col[~bad])
    return col


@functools.lru_cache(maxsize=2)
def load_mist(path: str | None = None) -> MistGrid:
    """Read the MIST v2.5 grid (default: the `lachesis-grids` file), fill its interior NaN rows; cached."""
    import h5py

    p = Path(path) if path is not None else _mist_path()
    with h5py.File(p, "r") as f:
        if f.attrs.get("storage") != "sparse_v1":
            raise ValueError(f"{p}: storage {f.attrs.get('storage')!r}; expected 'sparse_v1'")
        names = [str(c) for c in f.attrs["columns"]]
        expected = ["eep", "age", "initial_mass", "star_mass", "log_Teff", "log_g", "log_L", "log_R", "phase"]
        if names[: len(expected)] != expected:
            raise ValueError(f"{p}: columns {names[:9]}; expected {expected}")
        feh = f["feh_values"][:].astype(np.float64)
        log_age = f["age_values"][:].astype(np.float64)
        offset = f["offsets"][:].astype(np.int64)
        count = f["lengths"][:].astype(np.int64)
        values = f["values"][:]  # (n_rows, 16) float32; reading whole is faster than by column
    if not (np.all(np.diff(feh) > 0) and np.all(np.diff(log_age) > 0)):
        raise ValueError(f"{p}: [Fe/H] or age axis not increasing")
    if offset.shape[0] != feh.shape[0] * log_age.shape[0] or count.sum() != values.shape[0]:
        raise ValueError(f"{p}: {offset.shape[0]} slices / {values.shape[0]} rows do not match the axes")
    start = np.concatenate([[0], np.cumsum(count)[:-1]])
    mass = values[:, _GRID_COLUMNS["initial_mass"]]
    nonempty = count > 0
    ends_ok = np.isfinite(mass[start[nonempty]]) & np.isfinite(mass[start[nonempty] + count[nonempty] - 1])
    if not ends_ok.all():
        raise ValueError(f"{p}: {int((~ends_ok).sum())} slices start or end with a NaN row")
    columns: dict[str, np.ndarray] = {}
    for name, j in _GRID_COLUMNS.items():
        col = values[:, j].astype(np.float64 if name == "initial_mass" else np.float32)
        if name == "phase":  # categorical: nearest valid row instead of a blend
            bad = np.isnan(col)
            if bad.any():
                good = np.nonzero(~bad)[0]
                pos = np.clip(np.searchsorted(good, np.nonzero(bad)[0]), 0, good.size - 1)
                col[bad] = col[good[pos]]
            columns[name] = col.astype(np.int8)
        else:
            columns[name] = _fill_gaps(col)
    logger.debug("loaded %s: %d slices, %d rows", p, offset.shape[0], values.shape[0])
    return MistGrid(feh, log_age, offset, count, start, columns, str(p))


@functools.lru_cache(maxsize=2)
def load_bc(path: str | None = None) -> BCTable:
    """Read the MIST/C3K BC table (default: the `astrolachesis` file) for the bands of :data:`BANDS`; cached."""
    import h5py

    p = Path(path) if path is not None else _bc_path()
    with h5py.File(p, "r") as f:
        grp = f["UBVRIplus"]
        names = [b.decode() for b in grp["band_names"][:]]
        feh = grp["feh_values"][:].astype(np.float64)
        raw = grp["data"][:]  # (n_feh, n_rows, 5 + n_bands) float32
    missing = [c for c in BANDS.values() if c not in names]
    if missing:
        raise ValueError(f"{p}: bands {missing} not in the UBVRIplus table ({names})")
    teff = np.unique(raw[0, :, 0]).astype(np.float64)
    logg = np.unique(raw[0, :, 1]).astype(np.float64)
    av = np.unique(raw[0, :, 3]).astype(np.float64)
    shape = (teff.size, logg.size, feh.size, av.size)
    if raw.shape[1] != teff.size * logg.size * av.size:
        raise ValueError(
            f"{p}: {raw.shape[1]} rows per [Fe/H]; expected the full {shape[0]}×{shape[1]}×{shape[3]}"
        )
    it = np.searchsorted(teff, raw[..., 0])
    ig = np.searchsorted(logg, raw[..., 1])
    ia = np.searchsorted(av, raw[..., 3])
    if (teff[it] != raw[..., 0]).any() or (logg[ig] != raw[..., 1]).any() or (av[ia] != raw[..., 3]).any():
        raise ValueError(f"{p}: row coordinates are not on a regular grid")
    ifeh = np.broadcast_to(np.arange(feh.size)[:, None], it.shape)
    cols = [5 + names.index(c) for c in BANDS.values()]
    table = np.full((*shape, len(cols)), np.nan)
    table[it, ig, ifeh, ia, :] = raw[..., cols]
    if np.isnan(table).any():
        raise ValueError(f"{p}: the BC grid has holes")
    return BCTable(teff, logg, feh, av, tuple(BANDS), table, str(p))
