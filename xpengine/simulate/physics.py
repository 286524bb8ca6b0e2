"""Stellar and Galactic physics of the synthetic sky: populations, IMF, evolution, photometry, dust.

Pure vectorised functions over a leading source axis. Sources of every formula:

- Giants (REFERENCE §7, fits to MIST v2.5 isochrones and real APOGEE stars): mass–age relation,
  RGB Teff(logg, [Fe/H], M), bolometric corrections BC_G, BC_Ks and colours BP−RP, J−H, J−Ks as
  polynomials in t = 5040/Teff − 1, Z = [Fe/H], logg − 2; red clump Teff ≈ 4770 K at solar [Fe/H],
  230 K hotter at −0.5, constant luminosity (so logg ≈ 2.45 at 1.2 M☉, 2.7–2.9 for the secondary clump).
  Luminosity L/L☉ = M (Teff/5772)^4 10^(4.438 − logg) (L ∝ R² T⁴, R² ∝ M/g; NOTE REFERENCE §7 prints the
  exponent as logg − 4.438, a sign slip: with it a red-clump star would have L ≈ 0.006 L☉ instead of the
  ≈ 55 L☉ that gives the quoted M_G ≈ 0.45).
- Dwarfs: SIMPLE relations (documented approximations, not isochrones; their mass/age are not targets):
  L_ZAMS = 0.7 M^4 10^(−0.15[Fe/H]), R_ZAMS = 0.9 M^0.8, brightening on the main sequence
  L = L_ZAMS (1 + 0.93 φ), R = R_ZAMS (1 + 0.27 φ) with φ = age / t_MS (the Sun: φ = 0.46 → 1 L☉, 1 R☉),
  t_MS = the giant mass–age relation (the star leaves the main sequence when §7 says it is a giant);
  Teff = 5772 (L/R²)^(1/4), logg = 4.438 + log M − 2 log R. BC_G(Teff) of Andrae et al. 2018
  (A&A 616, A8, Table 8); 2MASS colours from the data-driven dwarf fits in the calibration file.
  No subgiant branch, no M dwarfs below 0.45 M☉ (outside the spectral emulator's domain).
- Galaxy: thin disk 80% / thick disk 20% of APOGEE-like giants (REFERENCE §7: thin age U(0, 10) Gyr,
  [Fe/H] ~ N(0.10 − 0.035 age, 0.18); thick age N(10.5, 1.2), [Fe/H] ~ N(−0.45, 0.25)) plus a small
  halo (age N(12, 0.8), [Fe/H] ~ N(−1.5, 0.4)) for the metal-poor tail; [α/M] by population
  (thin: half of 0.02 − 0.25 ([Fe/H] − 0.1) clipped to ≥ −0.05, plus 0.03 scatter; thick 0.22 ± 0.04; halo
  0.30 ± 0.05). Kroupa (2001) IMF, dN/dM ∝ M^−2.3 above 0.5 M☉. Densities: exponential disks
  (thin h_R 2.6 kpc, h_z 0.30 kpc; thick h_R 2.0 kpc, h_z 0.90 kpc, local ratio 0.12; halo r^−3.5, local
  ratio 0.005; Bland-Hawthorn & Gerhard 2016 ARA&A 54, 529), R0 = 8.2 kpc, z_sun = 20.8 pc.
- Dust: E(B−V) = ∫ k0 exp(−|z|/0.11 kpc − (R − R0)/3.0 kpc) ds along the line of sight with
  k0 = 0.25 mag/kpc (A_V ≈ 0.8 mag/kpc in the plane), times a smooth lognormal-like factor of (l, b)
  (fixed random harmonics, σ ≈ 0.3 dex) for patchiness. Extinction curve Fitzpatrick (1999), R_V = 3.1.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "POPULATIONS",
    "andrae_bc_g",
    "dust_ebv",
    "dwarf_parameters",
    "giant_age_gyr",
    "giant_bc",
    "giant_mass_from_age",
    "kroupa_dn_dlogm",
    "luminosity_lsun",
    "metallicity_mh",
    "red_clump_parameters",
    "rgb_teff",
    "sample_population_labels",
    "stellar_density",
]

R0_KPC = 8.2
Z_SUN_KPC = 0.0208
MBOL_SUN = 4.74
TEFF_SUN = 5772.0
LOGG_SUN = 4.438

#: population name -> (index, local density relative to the thin disk)
POPULATIONS: dict[str, tuple[int, float]] = {"thin": (0, 1.0), "thick": (1, 0.12), "halo": (2, 0.005)}

_GIANT_BC = {
    # c0, c1 t, c2 t², c3 t³, c4 Z, c5 Z t, c6 Z², c7 (logg − 2)   (REFERENCE §7)
    "bc_g": (0.0092, -1.1271, -2.3746, -0.7107, 0.0298, -0.2242, -0.0061, -0.0030),
    "bc_ks": (1.8611, 3.0690, -1.7128, 0.1720, 0.0180, -0.0019, -0.0010, -0.0014),
    "bp_rp": (1.0544, 2.1103, -1.1173, 5.7668, 0.0737, 0.1426, 0.0337, -0.0142),
    "j_h": (0.4606, 1.2502, 0.8954, -2.1615, -0.0692, -0.0335, -0.0318, 0.0127),
    "j_ks": (0.5315, 1.4989, 1.2724, -2.6554, -0.0383, 0.0033, -0.0165, 0.0079),
}


def giant_age_gyr(mass: np.ndarray, fe_h: np.ndarray) -> np.ndarray:
    """Age [Gyr] of a giant of mass [M☉] and [Fe/H] (REFERENCE §7 MIST fit, rms 0.016 dex)."""
    x = np.log10(mass)
    z = np.asarray(fe_h, dtype=np.float64)
    log_age = 10.0296 - 3.6868 * x + 0.2820 * z + 1.1877 * x**2 - 0.2109 * z * x + 0.0561 * z**2
    return 10.0 ** (log_age - 9.0)


def giant_mass_from_age(age_gyr: np.ndarray, fe_h: np.ndarray) -> np.ndarray:
    """Inverse of :func:`giant_age_gyr` on its decreasing branch (M < 35 M☉): mass [M☉]."""
    z = np.asarray(fe_h, dtype=np.float64)
    a = 1.1877
    b = -3.6868 - 0.2109 * z
    c = 10.0296 + 0.2820 * z + 0.0561 * z**2 - (np.log10(age_gyr) + 9.0)
    disc = np.maximum(b * b - 4 * a * c, 0.0)
    return 10.0 ** ((-b - np.sqrt(disc)) / (2 * a))


def kroupa_dn_dlogm(mass: np.ndarray) -> np.ndarray:
    """Kroupa (2001) IMF per unit log10 mass (unnormalised, continuous at 0.08 and 0.5 M☉)."""
    m = np.asarray(mass, dtype=np.float64)
    dn_dm = np.where(
        m < 0.08, (m / 0.08) ** -0.3 * (0.08 / 0.5) ** -1.3, 0.0
    )  # equals the next branch at 0.08
    dn_dm = np.where((m >= 0.08) & (m < 0.5), (m / 0.5) ** -1.3, dn_dm)
    dn_dm = np.where(m >= 0.5, (m / 0.5) ** -2.3, dn_dm)
    return dn_dm * m * np.log(10.0)


def rgb_teff(logg: np.ndarray, fe_h: np.ndarray, mass: np.ndarray) -> np.ndarray:
    """RGB effective temperature [K] (REFERENCE §7, rms 17 K vs MIST)."""
    g = np.asarray(logg) - 2.5
    z = np.asarray(fe_h)
    return 4593.0 + 465.0 * g - 411.0 * z + 455.0 * np.log10(mass) - 48.0 * g**2 - 2.3 * z**2 + 29.0 * z * g


def red_clump_parameters(
    mass: np.ndarray, fe_h: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(Teff [K], logg) of core-He-burning stars (REFERENCE §7).

    The clump is a standard candle: L ≈ 54 L☉ (× 10^N(0, 0.04)), set by the helium-core mass rather than
    the total mass, which with Teff = 4770 K − 460 K/dex [Fe/H] + 250 K log10(M/1.2) ± 40 K gives
    logg = 4.438 + log M + 4 log(Teff/5772) − log L: 2.45 at 1.2 M☉ (§7: 2.41–2.49), 2.8 at 2.5 M☉ (§7:
    secondary clump 2.7–2.9), and M_G ≈ 0.45.
    """
    n = np.shape(mass)[0]
    teff = 4770.0 - 460.0 * fe_h + 250.0 * np.log10(mass / 1.2) + rng.normal(0.0, 40.0, n)
    log_l = np.log10(54.0) + rng.normal(0.0, 0.04, n)
    logg = LOGG_SUN + np.log10(mass) + 4.0 * np.log10(teff / TEFF_SUN) - log_l
    return teff, logg


def luminosity_lsun(mass: np.ndarray, teff: np.ndarray, logg: np.ndarray) -> np.ndarray:
    """L/L☉ = M (Teff/5772)^4 10^(4.438 − logg) (Stefan–Boltzmann with R² = GM/g)."""
    return mass * (teff / TEFF_SUN) ** 4 * 10.0 ** (LOGG_SUN - logg)


def giant_bc(which: str, teff: np.ndarray, fe_h: np.ndarray, logg: np.ndarray) -> np.ndarray:
    """Giant bolometric correction or colour `which` in {bc_g, bc_ks, bp_rp, j_h, j_ks} [mag].

    REFERENCE §7 polynomials, valid for 3800–5500 K, logg 1–3: inputs are clamped to that box (so
    cooler/hotter giants get the edge value's colour trend frozen; documented approximation).
    """
    try:
        c = _GIANT_BC[which]
    except KeyError:
        raise KeyError(f"unknown giant relation {which!r}; expected one of {sorted(_GIANT_BC)}") from None
    t = 5040.0 / np.clip(teff, 3800.0, 5500.0) - 1.0
    z = np.clip(fe_h, -2.5, 0.6)
    lg = np.clip(logg, 1.0, 3.0) - 2.0
    return c[0] + c[1] * t + c[2] * t**2 + c[3] * t**3 + c[4] * z + c[5] * z * t + c[6] * z**2 + c[7] * lg


def andrae_bc_g(teff: np.ndarray) -> np.ndarray:
    """BC_G [mag] of Andrae et al. 2018 (A&A 616, A8, Eq. 7 and Table 8), 3300–8000 K (Mbol☉ = 4.74)."""
    dt = np.clip(teff, 3300.0, 8000.0) - TEFF_SUN
    hot = (6.000e-02, 6.731e-05, -6.647e-08, 2.859e-11, -7.197e-15)
    cool = (1.749e00, 1.977e-03, 3.737e-07, -8.966e-11, -4.183e-14)
    poly_hot = sum(a * dt**i for i, a in enumerate(hot))
    poly_cool = sum(a * dt**i for i, a in enumerate(cool))
    return np.where(teff >= 4000.0, poly_hot, poly_cool)


def dwarf_parameters(
    mass: np.ndarray, age_gyr: np.ndarray, fe_h: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(Teff [K], logg, L/L☉) of main-sequence stars from the simple relations of the module docstring."""
    t_ms = giant_age_gyr(mass, fe_h)
    phi = np.clip(age_gyr / t_ms, 0.0, 1.0)
    lum = 0.7 * mass**4.0 * 10.0 ** (-0.15 * fe_h) * (1.0 + 0.93 * phi)
    rad = 0.9 * mass**0.8 * (1.0 + 0.27 * phi)
    teff = TEFF_SUN * (lum / rad**2) ** 0.25
    logg = LOGG_SUN + np.log10(mass) - 2.0 * np.log10(rad)
    return teff, logg, lum


def metallicity_mh(fe_h: np.ndarray, alpha_m: np.ndarray) -> np.ndarray:
    """Overall [M/H] from [Fe/H] and [α/M] (Salaris et al. 1993: [M/H] = [Fe/H] + log(0.638·10^[α]+0.362))."""
    return fe_h + np.log10(0.638 * 10.0**alpha_m + 0.362)


def sample_population_labels(
    pop: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(age [Gyr], [Fe/H], [α/M]) for population indices `pop` (N,) (0 thin, 1 thick, 2 halo)."""
    n = pop.shape[0]
    u = rng.random(n)
    g1 = rng.standard_normal(n)
    g2 = rng.standard_normal(n)
    thin_age = 0.05 + 9.95 * u
    thick_age = np.clip(10.5 + 1.2 * g1, 7.0, 13.5)
    halo_age = np.clip(12.0 + 0.8 * g1, 9.0, 13.5)
    age = np.select([pop == 0, pop == 1], [thin_age, thick_age], halo_age)
    feh = np.select(
        [pop == 0, pop == 1],
        [0.10 - 0.035 * thin_age + 0.18 * g2, -0.45 + 0.25 * g2],
        -1.5 + 0.4 * g2,
    )
    feh = np.clip(feh, -2.4, 0.55)
    g3 = rng.standard_normal(n)
    alpha = np.select(
        [pop == 0, pop == 1],
        [np.maximum(0.02 - 0.25 * (feh - 0.1), -0.05) * 0.5 + 0.03 * g3, 0.22 + 0.04 * g3],
        0.30 + 0.05 * g3,
    )
    return age, feh, np.clip(alpha, -0.15, 0.45)


def _galactocentric(d_kpc: np.ndarray, l_deg: np.ndarray, b_deg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(R, z) [kpc] of points at heliocentric distance d [kpc] towards (l, b) [deg] (broadcasting)."""
    lr, br = np.deg2rad(l_deg), np.deg2rad(b_deg)
    x = d_kpc * np.cos(br) * np.cos(lr)
    y = d_kpc * np.cos(br) * np.sin(lr)
    z = d_kpc * np.sin(br) + Z_SUN_KPC
    R = np.sqrt((R0_KPC - x) ** 2 + y**2)
    return R, z


def stellar_density(pop: np.ndarray, d_kpc: np.ndarray, l_deg: np.ndarray, b_deg: np.ndarray) -> np.ndarray:
    """Number density (relative to the local thin disk) of population `pop` at (d, l, b); broadcasting.

    pop, l, b: (N, 1) or (N,); d: (N, K) or (N,).
    """
    R, z = _galactocentric(d_kpc, l_deg, b_deg)
    thin = np.exp(-(R - R0_KPC) / 2.6 - np.abs(z) / 0.30 + Z_SUN_KPC / 0.30)
    thick = 0.12 * np.exp(-(R - R0_KPC) / 2.0 - np.abs(z) / 0.90 + Z_SUN_KPC / 0.90)
    r = np.sqrt(R**2 + z**2 + 1.0)
    halo = 0.005 * (r / np.sqrt(R0_KPC**2 + 1.0)) ** -3.5
    return np.where(pop == 0, thin, np.where(pop == 1, thick, halo))


_PATCH_L = np.array([1.0, 2.0, 3.0, 5.0, 7.0, 11.0])
_PATCH_B = np.array([2.0, 3.0, 5.0, 7.0, 9.0, 13.0])
_PATCH_PH = np.random.default_rng(20260101).uniform(0.0, 2 * np.pi, (2, 6))


def _patchiness(l_deg: np.ndarray, b_deg: np.ndarray) -> np.ndarray:
    """Smooth multiplicative dust factor of (l, b), median ≈ 1, σ(log10) ≈ 0.3 (fixed random harmonics)."""
    lr, br = np.deg2rad(np.asarray(l_deg))[..., None], np.deg2rad(np.asarray(b_deg))[..., None]
    s = np.sin(_PATCH_L * lr + _PATCH_PH[0]) * np.cos(_PATCH_B * br + _PATCH_PH[1])
    return 10.0 ** (0.3 * np.sqrt(2.0 / 6.0) * 2.0 * s.sum(-1) / np.sqrt(2.0))


def dust_ebv(
    d_kpc: np.ndarray, l_deg: np.ndarray, b_deg: np.ndarray, *, n_steps: int = 48, k0: float = 0.25
) -> np.ndarray:
    """E(B−V) [mag] to distance d [kpc] towards (l, b) [deg], (N,) each (module docstring's dust model).

    Pass d = inf-like (e.g. 50 kpc) for the total column (an SFD-like value).
    """
    d = np.asarray(d_kpc, dtype=np.float64)
    # beyond |z| = 10 dust scale heights nothing is left: integrate only up to there (midpoint rule)
    sin_b = np.abs(np.sin(np.deg2rad(np.asarray(b_deg, dtype=np.float64))))
    s_max = (10 * 0.11 + Z_SUN_KPC) / np.maximum(sin_b, 1e-6)
    d = np.minimum(d, s_max)
    frac = (np.arange(n_steps) + 0.5) / n_steps
    s = d[:, None] * frac[None, :]  # (N, K)
    R, z = _galactocentric(s, np.asarray(l_deg)[:, None], np.asarray(b_deg)[:, None])
    rho = np.exp(-np.abs(z) / 0.11 - (R - R0_KPC) / 3.0)
    return k0 * d * rho.mean(axis=1) * _patchiness(l_deg, b_deg)
