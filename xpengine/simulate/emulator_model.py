"""The XP spectral emulator's form: label features, regions, blend weights, extinction curve.

What the simulator evaluates (`xpengine.simulate.xp.intrinsic_spectra`) and the fit
(`xpengine.simulate.emulator_fit`) solves for: per region, y(λ) = Σ_k B_k(λ) φ_k(labels) + E(B−V) κ(λ) + g,
φ the monomials of the scaled labels (`label_features`), κ from `extinction_curve`, the regions blended
by `region_weights`. The coefficients themselves are in the calibration file
(`xpengine.simulate.calibration`, whose docstring describes the whole model).
"""

from __future__ import annotations

import itertools

import numpy as np

__all__ = [
    "EMULATOR_BLEND",
    "EMULATOR_REGIONS",
    "LABEL_SCALES",
    "R_V",
    "extinction_curve",
    "label_features",
    "monomial_powers",
    "region_powers",
    "region_weights",
]

#: Centres/scales of the emulator inputs (5040/Teff − 1, logg, [Fe/H], [α/M]).
LABEL_SCALES = ((0.0, 1.0), (2.5, 1.5), (0.0, 0.5), (0.0, 0.2))
_DEGREE = 4
R_V = 3.1
"""R_V of the extinction curve (Fitzpatrick 1999)."""

#: v2 emulator regions, in the column order of :func:`region_weights`: the (Teff_lo, Teff_hi [K],
#: logg_lo, logg_hi) box of the real stars each is fitted on (wider than where its blend weight is
#: non-zero), whether it reads [Fe/H] and [α/M], the total polynomial degree and the relative ridge.
EMULATOR_REGIONS: dict[str, dict[str, object]] = {
    "giant": {"fit_box": (3000.0, 7200.0, -1.0, 3.9), "metals": True, "degree": 5, "ridge": 1e-7},
    "fgk_dwarf": {"fit_box": (3800.0, 7300.0, 3.1, 6.0), "metals": True, "degree": 4, "ridge": 1e-7},
    "m_dwarf": {
        "fit_box": (3000.0, 4400.0, 3.1, 6.0),
        # ASPCAP gives no [Fe/H] below ≈ 3600 K (2 of the 217 dev M dwarfs there), and the rest span only
        # [Fe/H] −0.7 to +0.2: the M-dwarf region does not read them, so that it reaches 3130 K
        "metals": False,
        "degree": 4,
        "ridge": 1e-6,
        # no logg either: the real M dwarfs' ASPCAP logg is concentrated in 4.5–4.75 (and tracks their Teff
        # errors), the isochrones put M dwarfs at 4.7–5.1. With logg terms the emulated BP − RP of MIST-sky
        # M dwarfs came out 0.3–0.5 mag (cubic) or 0.23–0.36 mag (linear) red of MIST's; without, +0.05 mag,
        # and the held-out real M dwarfs are fitted as well (median flux residual 0.031 either way)
        "max_powers": (4, 0, 0, 0),
    },
    # E(B−V) of the hot rows from 2MASS J − Ks (:func:`hot_star_ebv`), not AK_TARG
    "hot": {
        "fit_box": (6300.0, 30000.0, -1.0, 6.0),
        "metals": False,
        "degree": 5,
        "ridge": 1e-7,
        "ebv": "jk",
    },
}
#: Blend zones of :func:`region_weights`: hot above Teff 6600 → 7000 K, dwarf side above logg 3.3 → 3.7,
#: M dwarfs (on the dwarf side) below Teff 3900 → 4200 K.
EMULATOR_BLEND = (6600.0, 7000.0, 3.3, 3.7, 3900.0, 4200.0)


def monomial_powers(n_vars: int = 4, degree: int = _DEGREE) -> np.ndarray:
    """(n_terms, n_vars) integer powers of every monomial of total degree ≤ `degree` (constant first)."""
    rows = [np.zeros(n_vars, dtype=np.int64)]
    for d in range(1, degree + 1):
        for comb in itertools.combinations_with_replacement(range(n_vars), d):
            p = np.zeros(n_vars, dtype=np.int64)
            for i in comb:
                p[i] += 1
            rows.append(p)
    return np.stack(rows)


def label_features(
    teff: np.ndarray,
    logg: np.ndarray,
    m_h: np.ndarray,
    alpha_m: np.ndarray,
    powers: np.ndarray,
    centre: np.ndarray | None = None,
    scale: np.ndarray | None = None,
) -> np.ndarray:
    """Emulator design matrix (N, n_terms) from labels (N,) [K, dex, dex, dex] and monomial powers.

    The inputs are x = ((5040/Teff − 1, logg, [Fe/H], [α/M]) − centre) / scale, by default `LABEL_SCALES`
    (the v1 emulator); the v2 regions store their own `centre`, `scale` (4,).
    """
    if centre is None or scale is None:
        centre = np.array([c for c, _ in LABEL_SCALES])
        scale = np.array([s for _, s in LABEL_SCALES])
    raw = np.stack(
        [
            5040.0 / np.asarray(teff, dtype=np.float64) - 1.0,
            np.asarray(logg, dtype=np.float64),
            np.asarray(m_h, dtype=np.float64),
            np.asarray(alpha_m, dtype=np.float64),
        ],
        axis=1,
    )  # (N, 4)
    x = (raw - np.asarray(centre, dtype=np.float64)) / np.asarray(scale, dtype=np.float64)
    return np.prod(x[:, None, :] ** powers[None, :, :], axis=2)  # (N, n_terms)


def extinction_curve(wavelength_nm: np.ndarray) -> np.ndarray:
    """A_λ / A_V of Fitzpatrick (1999), R_V = 3.1 (PyPI `extinction`), shape like `wavelength_nm`."""
    import extinction

    return extinction.fitzpatrick99(np.asarray(wavelength_nm, dtype=np.float64) * 10.0, 1.0, R_V)


def region_weights(teff: np.ndarray, logg: np.ndarray, blend: np.ndarray) -> np.ndarray:
    """Blend weights (N, 4) of the v2 emulator regions (giant, fgk_dwarf, m_dwarf, hot), rows sum to 1.

    Smooth steps (3x² − 2x³) over the zones of `blend` = (hot Teff from, to [K], dwarf-side logg from, to,
    M-dwarf Teff from, to [K]) (`EMULATOR_BLEND`): the hot region takes over between the first two
    Teff, the dwarf side between the two logg, and on the dwarf side the M dwarfs below the last Teff.
    """

    def step(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
        u = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
        return u * u * (3.0 - 2.0 * u)

    teff = np.asarray(teff, dtype=np.float64)
    logg = np.asarray(logg, dtype=np.float64)
    w_hot = step(teff, blend[0], blend[1])
    w_dw = step(logg, blend[2], blend[3])
    w_m = 1.0 - step(teff, blend[4], blend[5])
    cool = 1.0 - w_hot
    return np.stack([cool * (1.0 - w_dw), cool * w_dw * (1.0 - w_m), cool * w_dw * w_m, w_hot], axis=1)


def region_powers(metals: bool, degree: int, max_powers: tuple[int, ...] | None = None) -> np.ndarray:
    """Monomial powers (n_terms, 4) of a region: all 4 labels, or only (Teff, logg) padded with zeros;
    optionally at most `max_powers` (4,) per label."""
    if metals:
        pw = monomial_powers(4, degree)
    else:
        pw = monomial_powers(2, degree)
        pw = np.concatenate([pw, np.zeros_like(pw)], axis=1)
    if max_powers is not None:
        pw = pw[np.all(pw <= np.asarray(max_powers)[None, :], axis=1)]
    return pw
