"""Observables of synthetic stars: Gaia photometry and astrometry, 2MASS, E(B−V) estimates, APOGEE labels.

All functions are vectorised over stars and take an explicit `np.random.Generator`. Error models and
missing-data rates (documented, approximate):

- G: σ_G = sqrt(0.0003² + (0.0012 · 10^(0.2 (G − 17)))²) mag; BP/RP: σ = sqrt(0.0008² + (0.006 ·
  10^(0.4 (m − 17)))²) mag (Riello et al. 2021 Fig. 16 orders of magnitude). phot_*_flux_over_error =
  1.0857/σ.
- Astrometry: astrometric_params_solved 3 (no parallax) at `no_parallax_rate`, 95 (6-parameter) with
  probability six_param_base + 0.15/(1 + exp(−(G − 16.5)/0.5)), else 31. nu_eff (31) from the colour,
  ν_eff = 1.76 − (1.61/π) atan(0.531 (BP − RP)) clipped to [1.24, 1.72] µm⁻¹ (Lindegren et al. 2021,
  A&A 649, A2, Eq. 3); pseudocolour (95) = ν_eff + N(0, 0.01 + 0.03·10^(0.4 (G − 17))). σ_ϖ from the
  REFERENCE §7 table (12.9 µas at G ≤ 12 … 142 µas at G = 18, log-interpolated) × sqrt(35/transits) ×
  lognormal(0.05 dex), × 1.25 for 6-parameter solutions. Observed parallax = 1/d + Lindegren zero point
  (PyPI `gaiadr3-zeropoint`) + Leung et al. (2023)'s 0.005·clip(G − 13, 0, 4) mas + noise: the offset the
  engine's correction removes by default (`features.astrometry`, `leung2023=True`), so that it recovers the
  truth (until session 17 the sky injected the Lindegren part only, and the correction left G > 13 stars'
  parallaxes too small: −0.008 mas at G 14–15, −0.013 at 15–16, −0.35σ). RUWE:
  lognormal around 1.0 (0.025 dex), 5% binaries/blends with RUWE 1.2–4.
- 2MASS: M_Ks and colours from REFERENCE §7 (giants) or the data-driven dwarf fits, A_J/H/Ks = 0.289,
  0.183, 0.118 A_V (physics "polynomial"), or the MIST absolute magnitudes and extinctions (physics
  "mist"); σ = sqrt(0.02² + (0.1 · 10^(0.4 (m − m_lim)))²) with 10σ limits 15.8/15.1/14.3; a band is
  missing (NaN) with probability 1 − 1/(1 + exp((m_lim + 0.7 − m)/0.15)), the whole source 1% of the time.
- E(B−V) "3-D map" estimate: truth × lognormal(0.06 dex) + |N(0, 0.005)|, error 0.01 + 0.15 E(B−V);
  missing for `ebv_missing_rate` of the sources.
- APOGEE-like: 7 ≤ H ≤ 12.2 (`h_max`; deeper for training skies) and (J − Ks) − 1.45 AK_TARG ≥ 0.5 (APOGEE-2 main-survey colour cut;
  Zasowski et al. 2017), observed with probability `apogee_fraction`. AK_TARG = A_Ks + N(0, 0.03)
  (RJCE-like). Label noise: reported TEFF_ERR = 8 + 600/SNR K, LOGG_ERR = 0.02 + 3/SNR, M_H_ERR = 0.008
  + 1/SNR; the actual deviation from truth is drawn with sqrt(err² + sys²), sys = (40 K, 0.06, 0.03 dex,
  0.02 dex α), i.e. ASPCAP-like internal errors that underestimate the true scatter.
"""

from __future__ import annotations

import numpy as np

from xpengine.features.normalise import G_ZERO_POINT_MAG
from xpengine.simulate import physics as ph

__all__ = [
    "G_ZERO_POINT",
    "apogee_labels",
    "gaia_photometry_astrometry",
    "tmass_photometry",
]

G_ZERO_POINT = G_ZERO_POINT_MAG  # Riello et al. 2021 (DR3 G zero point, Vega): the features' one definition
_A_OVER_AV = {"J": 0.289, "H": 0.183, "Ks": 0.118}
_TMASS_LIMITS = {"J": 15.8, "H": 15.1, "Ks": 14.3}
_TMASS_BANDS = {"J": "j", "H": "h", "Ks": "ks"}  # 2MASS band -> column prefix
_PLX_TABLE_G = np.array([12.0, 14.0, 15.0, 16.0, 17.0, 18.0])
_PLX_TABLE_UAS = np.array([12.9, 19.1, 29.5, 47.3, 79.3, 142.0])


def parallax_error_mas(g_mag: np.ndarray) -> np.ndarray:
    """Typical 5-parameter parallax error [mas] vs G (REFERENCE §7 table, log-interpolated, flat ≤ 12)."""
    g = np.clip(g_mag, 12.0, 21.0)
    return 1e-3 * 10.0 ** np.interp(g, _PLX_TABLE_G, np.log10(_PLX_TABLE_UAS), right=None)


def _nu_eff_from_colour(bp_rp: np.ndarray) -> np.ndarray:
    return np.clip(1.76 - (1.61 / np.pi) * np.arctan(0.531 * bp_rp), 1.24, 1.72)


def gaia_photometry_astrometry(
    stars: dict[str, np.ndarray], rng: np.random.Generator, *, no_parallax_rate: float, six_param_base: float
) -> dict[str, np.ndarray]:
    """gaia_source columns (REFERENCE §2) for stars with true `g`, `bp`, `rp`, `distance_kpc`, `ecl_lat`,
    `n_transits` (N,). NaN marks a null."""
    n = stars["g"].shape[0]
    g_true, bp_true, rp_true = stars["g"], stars["bp"], stars["rp"]
    sig_g = np.sqrt(0.0003**2 + (0.0012 * 10.0 ** (0.2 * (g_true - 17.0))) ** 2)
    g = g_true + rng.normal(0.0, 1.0, n) * sig_g
    sig_bp = np.sqrt(0.0008**2 + (0.006 * 10.0 ** (0.4 * (bp_true - 17.0))) ** 2)
    sig_rp = np.sqrt(0.0008**2 + (0.006 * 10.0 ** (0.4 * (rp_true - 17.0))) ** 2)
    bp = bp_true + rng.normal(0.0, 1.0, n) * sig_bp
    rp = rp_true + rng.normal(0.0, 1.0, n) * sig_rp
    flux_g = 10.0 ** ((G_ZERO_POINT - g) / 2.5)
    # astrometric solution type
    u = rng.random(n)
    p6 = six_param_base + 0.15 / (1.0 + np.exp(-(g - 16.5) / 0.5))
    aps = np.where(u < no_parallax_rate, 3, np.where(u < no_parallax_rate + p6, 95, 31)).astype(np.int16)
    nu = _nu_eff_from_colour(bp - rp)
    pseudo = nu + rng.normal(0.0, 1.0, n) * (0.01 + 0.03 * 10.0 ** (0.4 * (g - 17.0)))
    nu_eff = np.where(aps == 31, nu, np.nan)
    pseudocolour = np.where(aps == 95, np.clip(pseudo, 1.0, 2.0), np.nan)
    sig_plx = (
        parallax_error_mas(g)
        * np.sqrt(35.0 / stars["n_transits"])
        * 10.0 ** rng.normal(0.0, 0.05, n)
        * np.where(aps == 95, 1.25, 1.0)
    )
    from zero_point import zpt

    from xpengine.features.astrometry import leung2023_zero_point_offset

    zpt.load_tables()
    has_plx = aps != 3
    zp = np.zeros(n)
    if has_plx.any():
        zp[has_plx] = zpt.get_zpt(
            np.clip(g[has_plx], 6.0, 21.0),
            np.where(aps[has_plx] == 31, np.clip(nu_eff[has_plx], 1.1, 1.9), np.nan),
            np.where(aps[has_plx] == 95, np.clip(pseudocolour[has_plx], 1.24, 1.72), np.nan),
            stars["ecl_lat"][has_plx],
            aps[has_plx],
            _warnings=False,
        )
    zp[has_plx] += leung2023_zero_point_offset(g[has_plx])  # the engine removes both parts by default
    plx = 1.0 / stars["distance_kpc"] + zp + rng.normal(0.0, 1.0, n) * sig_plx
    binary = rng.random(n) < 0.05
    ruwe = np.where(
        binary, 1.2 + 10.0 ** rng.uniform(-1.0, np.log10(2.8), n), 10.0 ** rng.normal(0.0, 0.025, n)
    )
    return {
        "phot_g_mean_mag": g,
        "phot_g_mean_flux": flux_g,
        "phot_g_mean_flux_error": flux_g * sig_g / 1.0857,
        "phot_bp_mean_mag": bp,
        "phot_rp_mean_mag": rp,
        "bp_rp": bp - rp,
        "phot_bp_mean_flux_over_error": 1.0857 / sig_bp,
        "phot_rp_mean_flux_over_error": 1.0857 / sig_rp,
        "astrometric_params_solved": aps,
        "nu_eff_used_in_astrometry": nu_eff,
        "pseudocolour": pseudocolour,
        "parallax": np.where(has_plx, plx, np.nan),
        "parallax_error": np.where(has_plx, sig_plx, np.nan),
        "parallax_zero_point": np.where(has_plx, zp, np.nan),
        "ruwe": np.where(has_plx, ruwe, np.nan),
    }


def _dwarf_colour(cal: dict[str, np.ndarray], name: str, teff, logg, fe_h) -> np.ndarray:
    x = np.stack([5040.0 / teff - 1.0, logg - 4.5, fe_h], 1)
    X = np.prod(x[:, None, :] ** cal["dwarf_colour_powers"][None], axis=2)
    return X @ cal[f"dwarf_{name}_coef"]


def tmass_photometry(
    stars: dict[str, np.ndarray],
    cal: dict[str, np.ndarray],
    rng: np.random.Generator,
    random_missing: float,
    physics: str = "polynomial",
) -> dict[str, np.ndarray]:
    """True and observed 2MASS J, H, Ks (+ errors; NaN = missing) and the true A_Ks `a_ks` [mag].

    physics "polynomial": from the stars' true labels, `mbol`, `abs_g0`, `distance_kpc`, `ebv`,
    `evolutionary_state` (N,) through the REFERENCE §7 giant polynomials and the data-driven dwarf colours,
    A_J/H/Ks = 0.289/0.183/0.118 A_V. physics "mist": true m = `abs_{j,h,ks}0` + μ + `a_{j,h,ks}` (the MIST
    absolute magnitudes and the MIST-table extinctions of each star's own SED, as drawn by
    :func:`xpengine.simulate.populations.draw_sky_arrays`). Detection and errors: module docstring.
    """
    n = stars["teff"].shape[0]
    mu = 5.0 * np.log10(stars["distance_kpc"] * 1000.0) - 5.0
    if physics == "mist":
        true = {band: stars[f"abs_{col}0"] + mu + stars[f"a_{col}"] for band, col in _TMASS_BANDS.items()}
        a_ks = stars["a_ks"]
    elif physics == "polynomial":
        giant = stars["evolutionary_state"] > 0
        teff, logg, feh = stars["teff"], stars["logg"], stars["fe_h"]
        mks_g = stars["mbol"] - ph.giant_bc("bc_ks", teff, feh, logg)
        mks_d = stars["abs_g0"] - _dwarf_colour(cal, "gk", teff, logg, feh)
        mks = np.where(giant, mks_g, mks_d)
        jk = np.where(giant, ph.giant_bc("j_ks", teff, feh, logg), _dwarf_colour(cal, "jk", teff, logg, feh))
        jh = np.where(giant, ph.giant_bc("j_h", teff, feh, logg), _dwarf_colour(cal, "jh", teff, logg, feh))
        av = 3.1 * stars["ebv"]
        true = {
            "Ks": mks + mu + _A_OVER_AV["Ks"] * av,
            "J": mks + jk + mu + _A_OVER_AV["J"] * av,
        }
        true["H"] = true["J"] - jh - (_A_OVER_AV["J"] - _A_OVER_AV["H"]) * av
        a_ks = _A_OVER_AV["Ks"] * av
    else:
        raise ValueError(f"physics={physics!r}; expected 'polynomial' or 'mist'")
    all_missing = rng.random(n) < random_missing
    out: dict[str, np.ndarray] = {}
    for band, col in _TMASS_BANDS.items():
        m = true[band]
        lim = _TMASS_LIMITS[band]
        sig = np.sqrt(0.02**2 + (0.1 * 10.0 ** (0.4 * (m - lim))) ** 2)
        detected = rng.random(n) < 1.0 / (1.0 + np.exp((m - lim - 0.7) / 0.15))
        ok = detected & ~all_missing
        out[f"{col}_m"] = np.where(ok, m + rng.normal(0.0, 1.0, n) * sig, np.nan)
        out[f"{col}_msigcom"] = np.where(ok, sig, np.nan)
        out[f"{col}_true"] = m
    out["a_ks"] = a_ks
    return out


def ebv_estimates(ebv: np.ndarray, rng: np.random.Generator, missing_rate: float) -> dict[str, np.ndarray]:
    """A 3-D-dust-map-like E(B−V) estimate and its error [mag] (NaN = no estimate)."""
    n = ebv.shape[0]
    est = ebv * 10.0 ** rng.normal(0.0, 0.06, n) + np.abs(rng.normal(0.0, 0.005, n))
    miss = rng.random(n) < missing_rate
    return {"ebv": np.where(miss, np.nan, est), "ebv_error": np.where(miss, np.nan, 0.01 + 0.15 * est)}


def apogee_labels(
    stars: dict[str, np.ndarray], rng: np.random.Generator, apogee_fraction: float, h_max: float = 12.2
) -> np.ndarray:
    """Boolean (N,) selection of stars an APOGEE-like survey observes (see module docstring); needs the
    observed 2MASS columns and `ak_targ`. h_max: faint limit in H (APOGEE-2 main survey 12.2)."""
    if not 7.0 < h_max:
        raise ValueError(f"h_max must exceed the bright limit H = 7, got {h_max}")
    h = stars["h_m"]
    jk0 = stars["j_m"] - stars["ks_m"] - 1.45 * stars["ak_targ"]
    with np.errstate(invalid="ignore"):
        cut = (h >= 7.0) & (h <= h_max) & (jk0 >= 0.5)
    return cut & (rng.random(h.shape[0]) < apogee_fraction)
