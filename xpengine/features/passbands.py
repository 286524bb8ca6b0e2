"""The Gaia DR3 passbands as linear maps from XP coefficients to passband fluxes (GaiaXPy's
Gaia_DR3_Vega filter file, read with ElementTree without importing GaiaXPy), with the DR3 zero points;
see :mod:`xpengine.features.synthetic_photometry`, which re-exports every name of this module."""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import logging
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xpengine.features.normalise import G_ZERO_POINT_MAG

__all__ = [
    "DR3_ZERO_POINT_MAG",
    "GAIA_DR3_BANDS",
    "PASSBAND_FILE",
    "PASSBAND_SHA256",
    "GaiaPassbands",
    "load_gaia_dr3_passbands",
]

logger = logging.getLogger("xpengine.features.synthetic_photometry")

GAIA_DR3_BANDS: tuple[str, str, str] = ("G", "BP", "RP")
DR3_ZERO_POINT_MAG: dict[str, float] = {"G": G_ZERO_POINT_MAG, "BP": 25.3385422158, "RP": 24.7478955012}
"""Gaia DR3 Vega zero points [mag]: m = ZP − 2.5 log10(flux [e⁻/s]) (Riello et al. 2021, Table 3)."""
PASSBAND_FILE = "XpFilter_GaiaDr3Vega_v375wiv142r.xml"
"""GaiaXPy's Gaia_DR3_Vega filter file (in `gaiaxpy/config/filters/`)."""
PASSBAND_SHA256 = "58b97c6dac03f83f54c77126f78cb21daec83cd8e5c14c6ec15d5257d1a23919"
"""sha256 of PASSBAND_FILE in GaiaXPy 2.1.5, the file the corrections below were fitted with."""


# ----------------------------------------------------------------------------------------------------------
# passbands


@dataclass(frozen=True, eq=False)
class GaiaPassbands:
    """Linear maps from XP coefficients to passband fluxes (read-only float64 arrays).

    bands: band names, e.g. ("G", "BP", "RP"). to_flux_bp: (n_bp, n_band), to_flux_rp: (n_rp, n_band):
    flux [e⁻/s on the Gaia DR3 scale] per unit coefficient [e⁻/s], merge weights and zero points
    folded in. xp_zero_point_mag: (n_band,) GaiaXPy zero points for flux in W m⁻² nm⁻¹.
    zero_point_mag: (n_band,) DR3 zero points for flux in e⁻/s. source, sha256: the file read.
    """

    bands: tuple[str, ...]
    to_flux_bp: np.ndarray
    to_flux_rp: np.ndarray
    xp_zero_point_mag: np.ndarray
    zero_point_mag: np.ndarray
    source: str = ""
    sha256: str = ""
    matrix: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        n_band = len(self.bands)
        for name in ("to_flux_bp", "to_flux_rp", "xp_zero_point_mag", "zero_point_mag"):
            a = np.array(getattr(self, name), dtype=np.float64, copy=True)
            want = (n_band,) if name.endswith("_mag") else (a.shape[0], n_band)
            if a.shape != want or (a.ndim == 2 and a.shape[0] == 0):
                raise ValueError(f"GaiaPassbands.{name} has shape {a.shape}, expected {want}")
            a.setflags(write=False)
            object.__setattr__(self, name, a)
        m = np.vstack([self.to_flux_bp, self.to_flux_rp])  # (n_bp + n_rp, n_band)
        m.setflags(write=False)
        object.__setattr__(self, "matrix", m)

    @property
    def n_bp(self) -> int:
        return int(self.to_flux_bp.shape[0])

    @property
    def n_rp(self) -> int:
        return int(self.to_flux_rp.shape[0])


def _gaiaxpy_filter_path() -> Path:
    """PASSBAND_FILE in the installed GaiaXPy, found without importing GaiaXPy (its import touches
    matplotlib's rcParams, see xpengine._gaiaxpy)."""
    spec = importlib.util.find_spec("gaiaxpy")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            f"gaiaxpy is not installed; it ships the Gaia DR3 passband file {PASSBAND_FILE} "
            "(pip install gaiaxpy), or pass load_gaia_dr3_passbands(path=...)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "config" / "filters" / PASSBAND_FILE


def _values(root: ET.Element, path: str) -> np.ndarray:
    node = root.find(path)
    if node is None:
        raise ValueError(f"passband file has no <{path}> element")
    return np.array([float(v.text or "nan") for v in node.findall("value")], dtype=np.float64)


def load_gaia_dr3_passbands(path: str | Path | None = None) -> GaiaPassbands:
    """Read a GaiaXPy filter XML (default: GaiaXPy's Gaia_DR3_Vega, cached) into :class:`GaiaPassbands`.

    The file's `XpSampling/{bp,rp}SampledBases` hold n_band × n_coefficients passband integrals of the
    basis functions [W m⁻² nm⁻¹ per e⁻/s], `XpMerge/{bp,rp}Weights` the per-band weights, `zeropoints`
    the magnitudes' zero points; DR3 e⁻/s zero points are taken for bands G, BP, RP.
    """
    if path is None:
        return _default_passbands()
    return _read_passbands(Path(path))


@functools.lru_cache(maxsize=1)
def _default_passbands() -> GaiaPassbands:
    return _read_passbands(_gaiaxpy_filter_path())


def _read_passbands(path: Path) -> GaiaPassbands:
    raw = path.read_bytes()
    sha = hashlib.sha256(raw).hexdigest()
    root = ET.fromstring(raw)
    bands_node = root.find("bands")
    if bands_node is None:
        raise ValueError(f"{path}: no <bands> element; expected a GaiaXPy filter file")
    bands = tuple((item.text or "").strip() for item in bands_node.findall("item"))
    unknown = [b for b in bands if b not in DR3_ZERO_POINT_MAG]
    if unknown:
        raise ValueError(f"{path}: bands {bands}; expected Gaia DR3 bands among {GAIA_DR3_BANDS}")
    n_band = len(bands)
    maps = {}
    for xp in ("bp", "rp"):
        node = root.find(f"XpSampling/{xp}SampledBases")
        if node is None:
            raise ValueError(f"{path}: no <XpSampling/{xp}SampledBases>")
        n_coef = int(node.attrib["dimension"])
        v = _values(root, f"XpSampling/{xp}SampledBases")
        if v.size != n_band * n_coef:
            raise ValueError(f"{path}: {xp}SampledBases has {v.size} values, expected {n_band} × {n_coef}")
        weights = _values(root, f"XpMerge/{xp}Weights")
        maps[xp] = v.reshape(n_band, n_coef).T * weights[None, :]  # (n_coef, n_band) W m-2 nm-1
    xp_zp = _values(root, "zeropoints")
    if xp_zp.shape != (n_band,):
        raise ValueError(f"{path}: {xp_zp.size} zero points for {n_band} bands")
    zp = np.array([DR3_ZERO_POINT_MAG[b] for b in bands])
    to_e_s = 10.0 ** (0.4 * (zp - xp_zp))  # (n_band,): F[e-/s] = F[W m-2 nm-1] * to_e_s
    if sha != PASSBAND_SHA256 and path.name == PASSBAND_FILE:
        logger.warning(
            "%s has sha256 %s, not the %s the G/BP−RP corrections were fitted with; rerun "
            "benchmarks/g_from_xp.py to refit them",
            path,
            sha,
            PASSBAND_SHA256,
        )
    return GaiaPassbands(
        bands=bands,
        to_flux_bp=maps["bp"] * to_e_s,
        to_flux_rp=maps["rp"] * to_e_s,
        xp_zero_point_mag=xp_zp,
        zero_point_mag=zp,
        source=str(path),
        sha256=sha,
    )
