"""Gaia G extinction and BP−RP reddening per unit E(B−V), star by star.

A broad band's extinction depends on the spectrum it integrates: behind the same dust (R_V = 3.1), A_G /
E(B−V) runs from about 2.3 for an M giant through 2.74 for a solar-type dwarf to 3.2 for a B star, and it
falls as A_V grows (the band's effective wavelength moves to the red). One constant (2.740, Casagrande &
VandenBerg 2018, right for a Sun-like star) puts a red-clump star behind E(B−V) = 0.5 about 0.15 mag too
bright.

`coefficients` gives A_G / E(B−V) and E(BP−RP) / E(B−V) of a star of Teff, logg and [M/H] behind E(B−V),
from a polynomial (`xpengine/data/extinction/mist_gaia.json`) fitted by `training/fit_extinction.py` to
the MIST/C3K bolometric-correction tables (the simulated sky's own extinction, `xpengine.simulate.
isochrones.extinction`), over MIST isochrone points from 2,700 to 21,700 K and A_V from 0 to 6 mag. Its
residuals are recorded in the file (rms about 0.01 in A_G / E(B−V) from 4,500 to 10,000 K, 0.03 below
3,600 K; E(BP−RP) / E(B−V) is rougher there, rms 0.07 and up to 0.25 off for a 3,000 K metal-poor AGB star,
but it only moves such a red star's colour, far from the hot-star threshold). Inputs outside the fitted
ranges are clamped to them (beyond A_V = 6 the tables' own rule: A_G
linear in A_V). A star without a Teff gets the constants (`CONSTANT_A_G`, `CONSTANT_E_BP_RP`); one without
a logg or [M/H] gets logg 3 and [M/H] 0.

The catalogue's flag policy chooses (`FlagPolicy.extinction`): "mist" (this module, the default since
session 21) or "constant" (the catalogues made before).
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

import numpy as np

__all__ = ["CONSTANT_A_G", "CONSTANT_E_BP_RP", "EXTINCTION_LAWS", "coefficients", "table", "table_digest"]

CONSTANT_A_G = 2.740
"""A_G / E(B−V) of a solar-type star (Casagrande & VandenBerg 2018)."""
CONSTANT_E_BP_RP = 1.339
"""E(BP−RP) / E(B−V) of a solar-type star (Casagrande & VandenBerg 2018)."""
EXTINCTION_LAWS = ("mist", "constant")
R_V = 3.1

_PATH = Path(__file__).resolve().parents[1] / "data" / "extinction" / "mist_gaia.json"


@functools.lru_cache(maxsize=1)
def table_digest() -> str:
    """16 hex digits of the sha256 of the polynomial's file: a catalogue's job record names the fit it used."""
    return hashlib.sha256(_PATH.read_bytes()).hexdigest()[:16]


@functools.lru_cache(maxsize=1)
def table() -> dict:
    """The fitted polynomial's file (`training/fit_extinction.py`): coefficients, ranges, provenance."""
    with open(_PATH, encoding="utf-8") as fh:
        return json.load(fh)


def design(log_teff: np.ndarray, av: np.ndarray, logg: np.ndarray, m_h: np.ndarray, t: dict) -> np.ndarray:
    """(N, n_terms) terms of the polynomial at log10 Teff, A_V [mag], logg, [M/H], clamped to the fit's
    ranges: x^p A_V^q (p ≤ `teff_degree`, q ≤ `av_degree`), x = log10 Teff − `x0`, then [M/H] · (1, x,
    [M/H], A_V) and L · (1, x, L, x²), L = logg − `logg0`."""
    r = t["ranges"]
    x = np.clip(log_teff, *r["log_teff"]) - t["x0"]
    a = np.clip(av, *r["av"])
    z = np.clip(m_h, *r["m_h"])
    g = np.clip(logg, *r["logg"]) - t["logg0"]
    cols = [x**p * a**q for p in range(t["teff_degree"] + 1) for q in range(t["av_degree"] + 1)]
    cols += [z, z * x, z * z, z * a, g, g * x, g * g, g * x * x]
    return np.stack(cols, axis=-1)


def coefficients(
    teff: np.ndarray | None,
    ebv: np.ndarray,
    logg: np.ndarray | None = None,
    m_h: np.ndarray | None = None,
    law: str = "mist",
) -> tuple[np.ndarray, np.ndarray]:
    """A_G / E(B−V) and E(BP−RP) / E(B−V) (N,) of stars of Teff [K], logg, [M/H] behind E(B−V) [mag]
    (module docstring). law "constant" (or Teff None), and any star whose Teff is not finite: the
    constants. A NaN or negative E(B−V) is taken as 0 for the coefficient (it multiplies E(B−V)), a larger
    one than the fit's A_V range as its end."""
    e = np.asarray(ebv, dtype=np.float64)
    n = e.shape[0]
    k_g, k_c = np.full(n, CONSTANT_A_G), np.full(n, CONSTANT_E_BP_RP)
    if law not in EXTINCTION_LAWS:
        raise ValueError(f"extinction law {law!r}: expected one of {EXTINCTION_LAWS}")
    if law == "constant" or teff is None:
        return k_g, k_c
    t = np.asarray(teff, dtype=np.float64)
    ok = np.isfinite(t) & (t > 0)
    if not ok.any():
        return k_g, k_c

    def filled(v: np.ndarray | None, default: float) -> np.ndarray:
        if v is None:
            return np.full(int(ok.sum()), default)
        v = np.asarray(v, dtype=np.float64)[ok]
        return np.where(np.isfinite(v), v, default)

    tab = table()
    av = R_V * np.clip(np.nan_to_num(e[ok], nan=0.0, posinf=10.0), 0.0, 10.0)  # the fit stops at A_V 6
    x = design(np.log10(t[ok]), av, filled(logg, tab["logg0"]), filled(m_h, 0.0), tab)
    k_g[ok] = x @ np.asarray(tab["a_g_per_ebv"])
    k_c[ok] = x @ np.asarray(tab["e_bp_rp_per_ebv"])
    return k_g, k_c
