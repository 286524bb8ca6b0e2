"""The correction of synthetic G and BP−RP from XP to the Gaia DR3 photometric scale
(`PhotometricCorrection`, its fit and the fitted `G_CORRECTION`, `BP_RP_CORRECTION` with their residual
scatter) and the corrected BP/RP flux excess factor; see :mod:`xpengine.features.synthetic_photometry`,
which re-exports every name of this module."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xpengine.features.passbands import DR3_ZERO_POINT_MAG

__all__ = [
    "BP_RP_CORRECTION",
    "BP_RP_FROM_XP_SIGMA_MAG",
    "G_CORRECTION",
    "G_FROM_XP_SIGMA_MAG",
    "PhotometricCorrection",
    "corrected_bp_rp_excess_factor",
    "fit_photometric_correction",
]

# ----------------------------------------------------------------------------------------------------------
# correction to the DR3 photometric scale


@dataclass(frozen=True)
class PhotometricCorrection:
    """Δ = Σ_k colour_coefficients[k] x^k + Σ_k≥1 g_coefficients[k-1] g^k [mag].

    x = clip(synthetic BP−RP, *colour_range), g = clip(synthetic G, *g_range) − g_pivot.
    """

    colour_coefficients: tuple[float, ...]
    g_coefficients: tuple[float, ...]
    colour_range: tuple[float, float] = (-0.3, 4.5)
    g_range: tuple[float, float] = (8.5, 15.0)
    g_pivot: float = 12.0

    def design(self, bp_rp_xp: np.ndarray, g_xp: np.ndarray) -> np.ndarray:
        """(N, n_terms) design matrix of the polynomial."""
        x = np.clip(np.asarray(bp_rp_xp, dtype=np.float64), *self.colour_range)
        g = np.clip(np.asarray(g_xp, dtype=np.float64), *self.g_range) - self.g_pivot
        cols = [x**k for k in range(len(self.colour_coefficients))]
        cols += [g**k for k in range(1, len(self.g_coefficients) + 1)]
        return np.stack(cols, axis=-1)

    def in_range(self, bp_rp_xp: np.ndarray, g_xp: np.ndarray) -> np.ndarray:
        """(N,) bool: inputs inside the fitted ranges (outside, the correction is extrapolated flat)."""
        x = np.asarray(bp_rp_xp, dtype=np.float64)
        g = np.asarray(g_xp, dtype=np.float64)
        lo, hi = self.colour_range
        g_lo, g_hi = self.g_range
        return (x >= lo) & (x <= hi) & (g >= g_lo) & (g <= g_hi)

    def __call__(self, bp_rp_xp: np.ndarray, g_xp: np.ndarray) -> np.ndarray:
        """Δ (N,) [mag] to add to the synthetic quantity; NaN where an input is NaN."""
        coef = np.array(self.colour_coefficients + self.g_coefficients)
        return self.design(bp_rp_xp, g_xp) @ coef


def corrected_bp_rp_excess_factor(
    g_mag: np.ndarray, bp_mag: np.ndarray, rp_mag: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Corrected BP/RP flux excess C* (N,) and its 1σ spread σ_C* (N,) from REAL G, BP, RP mags.

    C = (f_BP + f_RP) / f_G (fluxes from the DR3 zero points), C* = C − f(BP−RP) with Riello et al.
    (2021, A&A 649, A3) Eq. 6 / Table 2, σ_C*(G) their Eq. 18. |C*| ≫ σ_C* marks sources whose BP/RP
    windows hold extra light (blends, crowding): their XP-based G is biased bright. Used here to
    choose calibration stars; it needs the real G, so it cannot flag an XP-only source.
    """
    g = np.asarray(g_mag, dtype=np.float64)
    bp = np.asarray(bp_mag, dtype=np.float64)
    rp = np.asarray(rp_mag, dtype=np.float64)
    zp = DR3_ZERO_POINT_MAG
    c = (10 ** (0.4 * (zp["BP"] - bp)) + 10 ** (0.4 * (zp["RP"] - rp))) / 10 ** (0.4 * (zp["G"] - g))
    x = bp - rp
    fx = np.where(
        x < 0.5,
        1.154360 + 0.033772 * x + 0.032277 * x**2,
        np.where(
            x < 4.0, 1.162004 + 0.011464 * x + 0.049255 * x**2 - 0.005879 * x**3, 1.057572 + 0.140537 * x
        ),
    )
    return c - fx, 0.0059898 + 8.817481e-12 * g**7.618399


def fit_photometric_correction(
    bp_rp_xp: np.ndarray,
    g_xp: np.ndarray,
    delta: np.ndarray,
    *,
    colour_degree: int = 3,
    g_degree: int = 3,
    clip_sigma: float = 4.0,
    max_iter: int = 20,
    template: PhotometricCorrection | None = None,
) -> PhotometricCorrection:
    """Least-squares fit of Δ = real − synthetic (N,) [mag] with iterative `clip_sigma` robust clipping.

    bp_rp_xp, g_xp: (N,) synthetic BP−RP and G [mag]; non-finite rows are ignored. Ranges and pivot
    from `template` (default :class:`PhotometricCorrection` defaults).
    """
    if colour_degree < 0 or g_degree < 0:
        raise ValueError(f"degrees must be >= 0, got colour {colour_degree}, g {g_degree}")
    t = (
        PhotometricCorrection((0.0,) * (colour_degree + 1), (0.0,) * g_degree)
        if template is None
        else (
            PhotometricCorrection(
                (0.0,) * (colour_degree + 1),
                (0.0,) * g_degree,
                template.colour_range,
                template.g_range,
                template.g_pivot,
            )
        )
    )
    X = t.design(bp_rp_xp, g_xp)  # (N, n_terms)
    y = np.asarray(delta, dtype=np.float64)
    keep = np.all(np.isfinite(X), axis=1) & np.isfinite(y)
    if keep.sum() <= X.shape[1]:
        raise ValueError(f"{int(keep.sum())} usable rows for {X.shape[1]} coefficients; need more")
    usable = keep.copy()
    coef = np.zeros(X.shape[1])
    for _ in range(max_iter):
        coef = np.linalg.lstsq(X[keep], y[keep], rcond=None)[0]
        r = y - X @ coef
        mad = 1.4826 * np.median(np.abs(r[keep] - np.median(r[keep])))
        new = usable & (np.abs(r - np.median(r[keep])) < clip_sigma * mad)
        if np.array_equal(new, keep):
            break
        keep = new
    nc = colour_degree + 1
    return PhotometricCorrection(
        tuple(float(v) for v in coef[:nc]),
        tuple(float(v) for v in coef[nc:]),
        t.colour_range,
        t.g_range,
        t.g_pivot,
    )


# Fitted by benchmarks/g_from_xp.py on the 23,399 clean training stars of the APOGEE×XP dev file (split
# "train" of split_by_source_id, |C*| < 3σ), passbands PASSBAND_SHA256; held-out numbers in its JSON.
G_CORRECTION = PhotometricCorrection(
    colour_coefficients=(
        0.007112242782967589,
        -0.005205570313393112,
        0.0019210868060838236,
        -0.000263527600973131,
    ),
    g_coefficients=(-0.000245647870278037, 0.00019802650076075452, -9.31330612168373e-05),
)
"""ΔG [mag]: G_DR3 ≈ G_XP + ΔG(BP−RP_XP, G_XP) (cubic in colour, cubic in G; module docstring)."""
BP_RP_CORRECTION = PhotometricCorrection(
    colour_coefficients=(
        0.006065578253832837,
        -0.0027261745138763564,
        0.0022853365066134767,
        -0.0001471784055943564,
    ),
    g_coefficients=(0.0010118217135474613, -0.00026355964945384873, -8.918985801515944e-05),
)
"""Δ(BP−RP) [mag]: (BP−RP)_DR3 ≈ (BP−RP)_XP + Δ(BP−RP_XP, G_XP)."""
G_FROM_XP_SIGMA_MAG: float = 0.0027
"""Extra 1σ uncertainty [mag] of G from XP after G_CORRECTION: robust σ of G_DR3 − G on the held-out
(test split) clean stars of the dev file, 2.65 mmag; add in quadrature to the statistical error."""
BP_RP_FROM_XP_SIGMA_MAG: float = 0.0025
"""Extra 1σ uncertainty [mag] of BP−RP from XP after BP_RP_CORRECTION (held-out robust σ 2.47 mmag)."""
