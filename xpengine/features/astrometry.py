"""Parallax zero point, pseudo-luminosity ("fakemag") and extinction tokens.

References
- Lindegren et al. (2021, A&A 649, A4): parallax zero point of Gaia (E)DR3 as a function of G,
  ν_eff / pseudocolour and ecliptic latitude, implemented by the `gaiadr3-zeropoint` package
  (`zero_point.zpt`), valid for 5- and 6-parameter solutions (`astrometric_params_solved` 31 / 95)
  with 6 < G < 21, 1.1 < ν_eff < 1.9 µm⁻¹ (5p), 1.24 < pseudocolour < 1.72 µm⁻¹ (6p).
- Leung et al. (2023, MNRAS 522, 4577): the Lindegren correction over-corrects faint stars; they
  add 0.005·clip(G − 13, 0, 4) mas to it (as in Leung & Bovy 2024's data reduction).
- Leung & Bovy (2019, 2024): pseudo-luminosity fakemag = ϖ[mas]·10^(0.2 G) = 10^(0.2 M_G + 2), linear
  in parallax so negative or noisy parallaxes keep Gaussian errors. Leung & Bovy (2024) drop the
  parallax when σ_ϖ > 0.1 mas or RUWE > 1.4.

Negative parallaxes: fakemag is linear in ϖ so that noisy, slightly negative parallaxes of distant
stars keep their Gaussian error (Leung & Bovy 2019). A true parallax is never negative, so a corrected
parallax below −`MAX_NEGATIVE_SIGMA`·σ_ϖ (5σ: a chance of 3·10⁻⁷ for a Gaussian error) is a spurious
astrometric solution, not noise: it is dropped like a failed σ_ϖ or RUWE cut (no g_fakemag token,
flag NO_PARALLAX). Before this rule a −15σ parallax entered the pseudo-luminosity and moved a star's
logg by 1.6 dex.

Catalogue distances (`parallax_distance`): 1000/ϖ where the corrected parallax is significant
(ϖ/σ_ϖ ≥ `MIN_DISTANCE_PARALLAX_SNR` = 5, where the inverse is a fair estimator: Bailer-Jones 2015
shows its bias grows quickly below a fractional error of 0.2) and RUWE ≤ 1.4; elsewhere the catalogue
uses the model's pseudo-luminosity.

Decision on the zero point outside its validity, or without its inputs: the tables are not
extrapolated (clipping the inputs), because Lindegren et al. warn the correction "can be seriously
wrong" there. `pseudo_luminosity`'s default drops such a parallax, as Leung & Bovy did for their
training set (NaN, the package's own `_warnings=False` behaviour; flags NO_ZERO_POINT and
NO_PARALLAX), and the training sets are built so. A catalogue keeps it (`zero_point_fallback`, the
job's and `Predictor.from_xp`'s default since session 32: FALLBACK_ZERO_POINT_MAS, the quasars' median
−0.017 mas), with σ_ϖ widened in quadrature by FALLBACK_ZERO_POINT_ERROR_MAS, the spread of the star-by-
star correction that is unknown; the row keeps NO_ZERO_POINT only. Before session 32 a catalogue dropped
them too, so a query of gaia_source without `nu_eff_used_in_astrometry` lost every parallax, Proxima
Centauri's 768 ± 0.05 mas included, for a correction of a few 0.01 mas (review of session 32).
`ecl_lat` is not needed as a column: where it is missing, it is computed from ra and dec
(`ecliptic_latitude`).
"""

from __future__ import annotations

import logging
from types import ModuleType
from typing import NamedTuple

import numpy as np

__all__ = [
    "FALLBACK_ZERO_POINT_ERROR_MAS",
    "FALLBACK_ZERO_POINT_MAS",
    "MAX_NEGATIVE_SIGMA",
    "MAX_PARALLAX_ERROR_MAS",
    "MAX_RUWE",
    "MIN_DISTANCE_PARALLAX_SNR",
    "PseudoLuminosity",
    "absmag_to_fakemag",
    "correct_parallax",
    "ebv_to_logebv",
    "ecliptic_latitude",
    "fakemag_to_absmag",
    "fakemag_to_distance_pc",
    "fakemag_to_parallax",
    "infer_astrometric_params_solved",
    "leung2023_zero_point_offset",
    "lindegren2021_zero_point",
    "parallax_distance",
    "parallax_quality_mask",
    "parallax_to_fakemag",
    "parallax_zero_point",
    "pseudo_luminosity",
]

logger = logging.getLogger(__name__)

MAX_PARALLAX_ERROR_MAS: float = 0.1
"""Leung & Bovy (2024): parallaxes with σ_ϖ above this [mas] are dropped."""
MAX_RUWE: float = 1.4
"""Leung & Bovy (2024): parallaxes of sources with RUWE above this are dropped."""
MAX_NEGATIVE_SIGMA: float = 5.0
"""Corrected parallaxes below −this·σ_ϖ are spurious (a true parallax is ≥ 0) and are dropped."""
MIN_DISTANCE_PARALLAX_SNR: float = 5.0
"""The catalogue takes distance = 1000/ϖ only where ϖ/σ_ϖ is at least this."""

FALLBACK_ZERO_POINT_MAS: float = -0.017
"""The catalogue's parallax zero point where Lindegren et al.'s cannot be computed: their quasars' median
(Lindegren et al. 2021, A&A 649, A4)."""
FALLBACK_ZERO_POINT_ERROR_MAS: float = 0.02
"""What the star-by-star zero point spreads about FALLBACK_ZERO_POINT_MAS [mas], added in quadrature to σ_ϖ
where the fallback is used. Measured in session 32 over the astrometric inputs (G, ν_eff, pseudocolour,
ecl_lat, solution type) of 118,994 stars of the seed-41 simulated sky, with the Leung (2023) term: rms
about −0.017 of 0.011 mas over all, 0.008-0.020 mas per G bin (the largest, 0.020, at G 13-15)."""
_OBLIQUITY_RAD = np.deg2rad(23.0 + 26.0 / 60.0 + 21.406 / 3600.0)  # ICRS obliquity (Gaia documentation)

_ZPT_TABLES_LOADED = False


def _zpt_module() -> ModuleType:
    """Import `zero_point.zpt` and load its coefficient tables once (package data, no network)."""
    global _ZPT_TABLES_LOADED
    try:
        from zero_point import zpt
    except ImportError as exc:  # pragma: no cover - dependency of the project
        raise ImportError(
            "the parallax zero point needs the `gaiadr3-zeropoint` package (import name `zero_point`)"
        ) from exc
    if not _ZPT_TABLES_LOADED:
        zpt.load_tables()
        _ZPT_TABLES_LOADED = True
    return zpt


def _f64(x: np.ndarray | float, n: int | None = None) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if n is not None and a.ndim == 0:
        a = np.full(n, float(a))
    return a


def infer_astrometric_params_solved(
    parallax: np.ndarray, nu_eff_used_in_astrometry: np.ndarray, pseudocolour: np.ndarray
) -> np.ndarray:
    """`astrometric_params_solved` (N,) float reconstructed from which Gaia DR3 columns are null.

    Gaia DR3 data model: 6-parameter solutions (95) have a pseudocolour and no
    `nu_eff_used_in_astrometry`; 5-parameter solutions (31) have ν_eff and no pseudocolour;
    2-parameter solutions (3) have neither and no parallax. Returns NaN where the pattern fits none
    of these. Use only where the archive left the int16 column empty (e.g. some archive ECSV files).
    """
    plx = _f64(parallax)
    nu = _f64(nu_eff_used_in_astrometry)
    pc = _f64(pseudocolour)
    out = np.full(plx.shape, np.nan)
    out = np.where(np.isfinite(pc) & ~np.isfinite(nu) & np.isfinite(plx), 95.0, out)
    out = np.where(np.isfinite(nu) & ~np.isfinite(pc) & np.isfinite(plx), 31.0, out)
    out = np.where(~np.isfinite(nu) & ~np.isfinite(pc) & ~np.isfinite(plx), 3.0, out)
    return out


def leung2023_zero_point_offset(g_mag: np.ndarray) -> np.ndarray:
    """Leung et al. (2023) addition to the Lindegren zero point (N,) [mas]: 0.005·clip(G − 13, 0, 4)."""
    return 0.005 * np.clip(_f64(g_mag) - 13.0, 0.0, 4.0)


def lindegren2021_zero_point(
    g_mag: np.ndarray,
    nu_eff_used_in_astrometry: np.ndarray,
    pseudocolour: np.ndarray,
    ecl_lat: np.ndarray,
    astrometric_params_solved: np.ndarray,
) -> np.ndarray:
    """Lindegren et al. (2021) parallax zero point (N,) [mas] from the `zero_point` package.

    NaN for solutions other than 31/95 (or missing), for missing inputs, and outside the validity
    ranges (6 < G < 21; 1.1 < ν_eff < 1.9 µm⁻¹ for 5p; 1.24 < pseudocolour < 1.72 µm⁻¹ for 6p).
    The package is only called on the valid solutions (it raises on any other value).
    """
    g = _f64(g_mag)
    n = g.shape[0]
    nu = _f64(nu_eff_used_in_astrometry, n)
    pc = _f64(pseudocolour, n)
    lat = _f64(ecl_lat, n)
    aps = _f64(astrometric_params_solved, n)
    out = np.full(n, np.nan)
    five = (aps == 31) & np.isfinite(nu)
    six = (aps == 95) & np.isfinite(pc)
    sel = np.flatnonzero((five | six) & np.isfinite(g) & np.isfinite(lat))
    if sel.size:
        zpt = _zpt_module()
        # the package rejects Python scalars under numpy 2: always pass 1-D arrays
        out[sel] = zpt.get_zpt(g[sel], nu[sel], pc[sel], lat[sel], aps[sel].astype(np.int64), _warnings=False)
    return out


def parallax_zero_point(
    g_mag: np.ndarray,
    nu_eff_used_in_astrometry: np.ndarray,
    pseudocolour: np.ndarray,
    ecl_lat: np.ndarray,
    astrometric_params_solved: np.ndarray,
    *,
    leung2023: bool = True,
) -> np.ndarray:
    """Parallax zero point (N,) [mas] to subtract from `parallax`: Lindegren (2021) + Leung (2023).

    corrected parallax = parallax − zero point. NaN where the Lindegren correction is undefined
    (see `lindegren2021_zero_point`).
    """
    zp = lindegren2021_zero_point(
        g_mag, nu_eff_used_in_astrometry, pseudocolour, ecl_lat, astrometric_params_solved
    )
    if leung2023:
        zp = zp + leung2023_zero_point_offset(g_mag)
    return zp


def correct_parallax(parallax_mas: np.ndarray, zero_point_mas: np.ndarray) -> np.ndarray:
    """Zero-point corrected parallax (N,) [mas] = parallax − zero point."""
    return _f64(parallax_mas) - _f64(zero_point_mas)


def parallax_quality_mask(
    parallax_mas: np.ndarray,
    parallax_error_mas: np.ndarray,
    ruwe: np.ndarray | None,
    *,
    max_parallax_error: float = MAX_PARALLAX_ERROR_MAS,
    max_ruwe: float = MAX_RUWE,
    max_negative_sigma: float = MAX_NEGATIVE_SIGMA,
) -> np.ndarray:
    """Usable parallaxes (N,) bool, Leung & Bovy (2024) cuts plus the negative-parallax rule.

    True where the parallax is finite, its error finite, positive and ≤ `max_parallax_error` [mas],
    RUWE ≤ `max_ruwe`, and the parallax is not below −`max_negative_sigma`·σ_ϖ (a spurious solution,
    see the module docstring). An unknown RUWE (NaN, or `ruwe=None`) does not fail the cut: in Gaia
    DR3 RUWE is null only for 2-parameter solutions, which have no parallax anyway.
    """
    plx = _f64(parallax_mas)
    err = _f64(parallax_error_mas, plx.shape[0])
    ok = np.isfinite(plx) & np.isfinite(err) & (err > 0) & (err <= max_parallax_error)
    with np.errstate(invalid="ignore"):
        ok &= ~(plx < -max_negative_sigma * err)
    if ruwe is not None:
        r = _f64(ruwe, plx.shape[0])
        ok &= ~(r > max_ruwe)  # NaN RUWE passes
    return ok


def parallax_to_fakemag(
    parallax_mas: np.ndarray, g_mag: np.ndarray, parallax_error_mas: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Pseudo-luminosity and its error (N,): fakemag = ϖ·10^(0.2 G), σ = σ_ϖ·10^(0.2 G).

    ϖ and σ_ϖ in mas, G in mag; fakemag = 10^(0.2 M_G + 2) (Leung & Bovy 2019, their Eq. 2).
    The error is the exact linear propagation of a Gaussian parallax error. Leung & Bovy's code
    writes it |σ_ϖ/ϖ|·fakemag, which equals σ_ϖ·10^(0.2 G) for ϖ ≠ 0 and is 0/0 at ϖ = 0; the form
    used here has no such singularity. The G error is neglected, as in their work.
    """
    scale = np.power(10.0, 0.2 * _f64(g_mag))
    return _f64(parallax_mas) * scale, np.abs(_f64(parallax_error_mas)) * scale


def fakemag_to_parallax(
    fakemag: np.ndarray, g_mag: np.ndarray, fakemag_error: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Parallax and its error (N,) [mas] from a pseudo-luminosity: ϖ = fakemag / 10^(0.2 G).

    The error is NaN where `fakemag_error` is not given.
    """
    scale = np.power(10.0, 0.2 * _f64(g_mag))
    f = _f64(fakemag)
    err = np.full(f.shape, np.nan) if fakemag_error is None else np.abs(_f64(fakemag_error)) / scale
    return f / scale, err


def absmag_to_fakemag(absmag: np.ndarray) -> np.ndarray:
    """Pseudo-luminosity (N,) from absolute magnitude: 10^(0.2 M + 2)."""
    return np.power(10.0, 0.2 * _f64(absmag) + 2.0)


def fakemag_to_absmag(
    fakemag: np.ndarray, fakemag_error: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Absolute magnitude and its error (N,) [mag] from a pseudo-luminosity.

    M = 5 (log10 fakemag − 2); σ_M = (5 / ln 10)·σ_fakemag / fakemag (first order). NaN where
    fakemag ≤ 0 (a negative parallax has no magnitude) and, for the error, where `fakemag_error`
    is not given.
    """
    f = _f64(fakemag)
    pos = np.isfinite(f) & (f > 0)
    safe = np.where(pos, f, 1.0)
    absmag = np.where(pos, 5.0 * (np.log10(safe) - 2.0), np.nan)
    if fakemag_error is None:
        return absmag, np.full(f.shape, np.nan)
    err = np.where(pos, 5.0 / np.log(10.0) * np.abs(_f64(fakemag_error)) / safe, np.nan)
    return absmag, err


def fakemag_to_distance_pc(
    fakemag: np.ndarray, g_mag: np.ndarray, fakemag_error: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Distance and its error (N,) [pc] from a pseudo-luminosity and the apparent G magnitude.

    d = 1000·10^(0.2 G) / fakemag (= 1000 / ϖ[mas]); σ_d = d·σ_fakemag / fakemag (first order).
    NaN where fakemag ≤ 0 and, for the error, where `fakemag_error` is not given.
    """
    f = _f64(fakemag)
    pos = np.isfinite(f) & (f > 0)
    safe = np.where(pos, f, 1.0)
    dist = np.where(pos, 1000.0 * np.power(10.0, 0.2 * _f64(g_mag)) / safe, np.nan)
    if fakemag_error is None:
        return dist, np.full(f.shape, np.nan)
    err = np.where(pos, dist * np.abs(_f64(fakemag_error)) / safe, np.nan)
    return dist, err


def ebv_to_logebv(
    ebv: np.ndarray, ebv_error: np.ndarray | None = None, *, floor: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """ln E(B−V) and its error (N,) from E(B−V) [mag]: σ_ln = σ_E / E (first order).

    Non-positive or non-finite E(B−V) gives NaN unless `floor` [mag] is set, in which case values
    below the floor are raised to it (Leung & Bovy raised non-positive Combined19 samples to e⁻⁷).
    The error is NaN where `ebv_error` is not given or not finite.
    """
    if floor is not None and not floor > 0:
        raise ValueError(f"ebv floor must be a positive E(B-V) in mag, got {floor}")
    e = _f64(ebv)
    if floor is not None:
        e = np.where(np.isfinite(e), np.maximum(e, floor), np.nan)
    pos = np.isfinite(e) & (e > 0)
    safe = np.where(pos, e, 1.0)
    value = np.where(pos, np.log(safe), np.nan)
    if ebv_error is None:
        return value, np.full(e.shape, np.nan)
    err = np.where(pos, np.abs(_f64(ebv_error, e.shape[0])) / safe, np.nan)
    return value, err


def ecliptic_latitude(ra_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
    """Ecliptic latitude β [deg] of ICRS (ra, dec) [deg], as gaia_source's `ecl_lat` (obliquity
    23°26′21.406″; tests/test_simulate_coords.py checks it against real DR3 rows to 1e-5 deg)."""
    ra, dec = np.deg2rad(_f64(ra_deg)), np.deg2rad(_f64(dec_deg))
    sin_b = np.sin(dec) * np.cos(_OBLIQUITY_RAD) - np.cos(dec) * np.sin(ra) * np.sin(_OBLIQUITY_RAD)
    return np.rad2deg(np.arcsin(np.clip(sin_b, -1.0, 1.0)))


class PseudoLuminosity(NamedTuple):
    """Result of `pseudo_luminosity`, all (N,)."""

    fakemag: np.ndarray  # float64, NaN where the parallax is unusable
    fakemag_error: np.ndarray  # float64, NaN where fakemag is NaN
    parallax_corrected_mas: np.ndarray  # float64, parallax − zero point (NaN where the cuts fail; needs no G)
    zero_point_mas: np.ndarray  # float64, the zero point applied (NaN where undefined)
    no_parallax: np.ndarray  # bool: no fakemag (missing parallax, failed cut, or no zero point)
    no_zero_point: np.ndarray  # bool: a parallax exists but its zero point is undefined
    parallax_error_mas: np.ndarray  # float64, σ_ϖ as used: widened where the fallback zero point is (NaN
    # where the parallax is unusable)


def pseudo_luminosity(
    g_mag: np.ndarray,
    parallax_mas: np.ndarray,
    parallax_error_mas: np.ndarray,
    *,
    ruwe: np.ndarray | None = None,
    nu_eff_used_in_astrometry: np.ndarray | None = None,
    pseudocolour: np.ndarray | None = None,
    ecl_lat: np.ndarray | None = None,
    astrometric_params_solved: np.ndarray | None = None,
    apply_zero_point: bool = True,
    leung2023: bool = True,
    zero_point_fallback: float | None = None,
    max_parallax_error: float = MAX_PARALLAX_ERROR_MAS,
    max_ruwe: float = MAX_RUWE,
    ra: np.ndarray | None = None,
    dec: np.ndarray | None = None,
) -> PseudoLuminosity:
    """The g_fakemag token as Leung & Bovy (2024) built it, from gaia_source columns (N,).

    1. zero point (if `apply_zero_point`): `parallax_zero_point` with the Leung (2023) term;
       where it is undefined, `zero_point_fallback` [mas] if given (σ_ϖ then widened in quadrature by
       FALLBACK_ZERO_POINT_ERROR_MAS), else the parallax is dropped. Missing `astrometric_params_solved`
       values are reconstructed with `infer_astrometric_params_solved`, missing `ecl_lat` values from
       `ra`, `dec` (`ecliptic_latitude`).
    2. quality cuts: `parallax_quality_mask` (σ_ϖ ≤ 0.1 mas, RUWE ≤ 1.4 by default).
    3. fakemag = ϖ_corrected·10^(0.2 G), σ = σ_ϖ·10^(0.2 G) (`parallax_to_fakemag`).
    """
    g = _f64(g_mag)
    n = g.shape[0]
    plx = _f64(parallax_mas, n)
    err = measured = _f64(parallax_error_mas, n)
    nan = np.full(n, np.nan)
    has_plx = np.isfinite(plx)
    if apply_zero_point:
        nu = nan if nu_eff_used_in_astrometry is None else _f64(nu_eff_used_in_astrometry, n)
        pc = nan if pseudocolour is None else _f64(pseudocolour, n)
        lat = nan if ecl_lat is None else _f64(ecl_lat, n)
        if ra is not None and dec is not None and not np.isfinite(lat).all():
            lat = np.where(np.isfinite(lat), lat, ecliptic_latitude(_f64(ra, n), _f64(dec, n)))
        aps = nan if astrometric_params_solved is None else _f64(astrometric_params_solved, n)
        missing_aps = ~np.isfinite(aps)
        if missing_aps.any():
            aps = np.where(missing_aps, infer_astrometric_params_solved(plx, nu, pc), aps)
        zp = parallax_zero_point(g, nu, pc, lat, aps, leung2023=leung2023)
        no_zp = has_plx & ~np.isfinite(zp)
        if zero_point_fallback is not None:
            zp = np.where(no_zp, float(zero_point_fallback), zp)
            err = np.where(no_zp, np.hypot(err, FALLBACK_ZERO_POINT_ERROR_MAS), err)
    else:
        zp = np.zeros(n)
        no_zp = np.zeros(n, dtype=bool)
    corrected = plx - zp
    # the quality cuts judge the measurement (σ_ϖ as measured); the errors carry the fallback's spread;
    # the corrected parallax needs no G (a fallback zero point does not), the pseudo-luminosity does
    good = parallax_quality_mask(
        corrected, measured, ruwe, max_parallax_error=max_parallax_error, max_ruwe=max_ruwe
    )
    usable = good & np.isfinite(g)
    fakemag, fakemag_err = parallax_to_fakemag(corrected, g, err)
    fakemag = np.where(usable, fakemag, np.nan)
    fakemag_err = np.where(usable, fakemag_err, np.nan)
    return PseudoLuminosity(
        fakemag=fakemag,
        fakemag_error=fakemag_err,
        parallax_corrected_mas=np.where(good, corrected, np.nan),
        zero_point_mas=zp,
        no_parallax=~usable,
        no_zero_point=no_zp,
        parallax_error_mas=np.where(good, err, np.nan),
    )


def parallax_distance(
    parallax_corrected_mas: np.ndarray,
    parallax_error_mas: np.ndarray,
    ruwe: np.ndarray | None = None,
    *,
    min_snr: float = MIN_DISTANCE_PARALLAX_SNR,
    max_ruwe: float = MAX_RUWE,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distance [pc], its error [pc] and the mask (N,) of the sources whose parallax gives it.

    d = 1000/ϖ and σ_d = 1000·σ_ϖ/ϖ² where ϖ (zero-point corrected) / σ_ϖ ≥ `min_snr` and RUWE ≤
    `max_ruwe` (unknown RUWE passes); NaN elsewhere. No σ_ϖ ceiling: a nearby dwarf with σ_ϖ = 0.2 mas
    and ϖ = 20 mas has an excellent distance although Leung & Bovy keep it out of the model's context.
    """
    plx = _f64(parallax_corrected_mas)
    err = _f64(parallax_error_mas, plx.shape[0])
    with np.errstate(invalid="ignore", divide="ignore"):
        ok = np.isfinite(plx) & np.isfinite(err) & (err > 0) & (plx >= min_snr * err)
        if ruwe is not None:
            ok &= ~(_f64(ruwe, plx.shape[0]) > max_ruwe)
        dist = np.where(ok, 1000.0 / plx, np.nan)
        dist_err = np.where(ok, 1000.0 * err / plx**2, np.nan)
    return dist, dist_err, ok
