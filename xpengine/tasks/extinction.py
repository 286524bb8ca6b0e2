"""The extinction curve implied by the model (Zhang et al. 2026 §4.5, Eq. 5, Fig. 16).

Procedure (paper §4.5): on a grid of giants — [M/H] = 0, logg 1.0–2.5 in 0.1 dex steps, Teff from an
RGB relation, mass 1.2 M☉, age 4.5 Gyr — generate the spectrum with a reference (low) reddening,
F_0(λ), and with E(B−V) = 0.4, 0.8, 1.2 mag, F_E(λ); the extinction curve of each pair is

    R(λ) = A(λ) / E(B−V)_true,   A(λ) = 2.5 log10(F_0(λ)/F_E(λ))  [mag],
    E(B−V)_true = s · (E(B−V) − E(B−V)_ref)

and the figure shows its median and standard deviation over the grid against Fitzpatrick (1999).

Two departures from Eq. 5 as printed, both deliberate:
- Eq. 5 writes ln(F_0/F_E); an extinction in magnitudes — what F99 tabulates as A(λ)/E(B−V) — is
  2.5 log10(F_0/F_E) = 1.0857 ln(F_0/F_E). The natural log would bias R_V low by 8 per cent.
- Eq. 5 uses E(B−V)_true = 0.884 E(B−V)_SFD because the paper's model was fed SFD-scale reddening. The
  factor s is a parameter here (:data:`SFD_TO_TRUE_EBV` for SFD-scale inputs); its default 1 suits
  inputs on the true scale, such as the simulated sky (reddened with F99 R_V = 3.1 and E(B−V) true).
- The model's logebv token cannot take E(B−V) = 0 (ln 0), so the reference is a low E(B−V)_ref
  (default 0.01 mag) and the difference enters the denominator.

Spectra are absolute fluxes at 10 pc (G-normalised flux × the G flux from the predicted
pseudo-luminosity; :func:`~xpengine.tasks.common.absolute_flux_10pc`): the G normalisation alone
would divide out the grey part A_G of the extinction. With ``absolute=False`` (or a vocabulary without
g_fakemag) the curve is A(λ)/E − A_G/E and the R_V fit takes a free additive offset.

The curve functions (:func:`extinction_curve`, :func:`summarise_curves`, :func:`fit_rv`) take any
spectra and do not need a model.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xpengine.tasks.common import absolute_flux_10pc, predict_matrix, tokens_to_flux

__all__ = [
    "SFD_TO_TRUE_EBV",
    "ExtinctionResult",
    "RVFit",
    "extinction_curve",
    "fit_rv",
    "fitzpatrick99_curve",
    "model_extinction_curve",
    "paper_rgb_teff",
    "rgb_teff",
    "summarise_curves",
]

logger = logging.getLogger(__name__)

SFD_TO_TRUE_EBV = 0.884
"""E(B−V)_true / E(B−V)_SFD used by the paper's Eq. 5 (Schlafly & Finkbeiner 2011 recalibration of SFD)."""


def rgb_teff(logg: np.ndarray, fe_h: np.ndarray | float = 0.0, mass: np.ndarray | float = 1.0) -> np.ndarray:
    """RGB effective temperature [K] (REFERENCE §7, a fit to MIST v2.5 giants, rms 17 K):
    4593 + 465 y − 411 Z + 455 log10 M − 48 y² − 2.3 Z² + 29 Z y with y = logg − 2.5, Z = [Fe/H],
    M in M☉. Broadcasts its inputs."""
    y = np.asarray(logg, dtype=np.float64) - 2.5
    z = np.asarray(fe_h, dtype=np.float64)
    lm = np.log10(np.asarray(mass, dtype=np.float64))
    return 4593.0 + 465.0 * y - 411.0 * z + 455.0 * lm - 48.0 * y**2 - 2.3 * z**2 + 29.0 * z * y


def paper_rgb_teff(logg: np.ndarray) -> np.ndarray:
    """The paper's RGB relation (§4.5): Teff = 5200 − 441.86 (3.65 − logg) [K]."""
    return 5200.0 - 441.86 * (3.65 - np.asarray(logg, dtype=np.float64))


def extinction_curve(
    flux_ref: np.ndarray,
    flux_ext: np.ndarray,
    ebv: np.ndarray | float,
    ebv_ref: np.ndarray | float = 0.0,
    *,
    ebv_scale: float = 1.0,
) -> np.ndarray:
    """A(λ)/E(B−V)_true (N, W) from pairs of spectra (N, W) of the same star with two reddenings.

    A(λ) = 2.5 log10(flux_ref/flux_ext) [mag]; E(B−V)_true = ebv_scale·(ebv − ebv_ref) with ebv, ebv_ref
    scalars or (N,) [mag]. Pixels where either flux is not positive give NaN. Raises when any
    E(B−V)_true is not positive (no reddening difference to measure).
    """
    f0 = np.asarray(flux_ref, dtype=np.float64)
    fe = np.asarray(flux_ext, dtype=np.float64)
    if f0.shape != fe.shape or f0.ndim != 2:
        raise ValueError(f"flux_ref {f0.shape} and flux_ext {fe.shape} must be the same (N, W) shape")
    if not ebv_scale > 0:
        raise ValueError(f"ebv_scale must be > 0, got {ebv_scale}")
    de = ebv_scale * (
        np.broadcast_to(np.asarray(ebv, dtype=np.float64), (f0.shape[0],))
        - np.broadcast_to(np.asarray(ebv_ref, dtype=np.float64), (f0.shape[0],))
    )
    if not np.all(de > 0):
        raise ValueError(
            f"E(B-V) - E(B-V)_ref must be > 0 for every pair, got {np.unique(de[~(de > 0)])[:5].tolist()}"
        )
    ok = (f0 > 0) & (fe > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = 2.5 * np.log10(np.where(ok, f0, 1.0) / np.where(ok, fe, 1.0))
    return np.where(ok, a / de[:, None], np.nan)


def summarise_curves(curves: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median and standard deviation (W,) over the rows of extinction curves (N, W), ignoring NaN."""
    c = np.asarray(curves, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(c, axis=0), np.nanstd(c, axis=0)


def fitzpatrick99_curve(wavelength_nm: np.ndarray, r_v: float) -> np.ndarray:
    """A(λ)/E(B−V) of Fitzpatrick (1999, PASP 111, 63) at ratio R_V (W,), from the PyPI `extinction`
    package: `fitzpatrick99(λ [Å], A_V = R_V, R_V)` is A(λ) for E(B−V) = 1 mag."""
    import extinction

    wl_aa = np.ascontiguousarray(np.asarray(wavelength_nm, dtype=np.float64) * 10.0)
    return np.asarray(extinction.fitzpatrick99(wl_aa, float(r_v), float(r_v)), dtype=np.float64)


@dataclass(frozen=True)
class RVFit:
    """Best-fitting F99 R_V: r_v, the additive offset (0 unless fitted), rms residual [mag/mag], the
    number of wavelengths used, and whether R_V ended on an edge of the searched range (no minimum
    inside it: the curve is not F99-like, e.g. a model that ignores E(B−V))."""

    r_v: float
    offset: float
    rms: float
    n: int
    at_edge: bool = False


def fit_rv(
    wavelength_nm: np.ndarray,
    curve: np.ndarray,
    *,
    weights: np.ndarray | None = None,
    rv_range: tuple[float, float] = (1.5, 6.5),
    wavelength_range_nm: tuple[float, float] | None = None,
    offset: bool = False,
) -> RVFit:
    """Least-squares R_V of Fitzpatrick (1999) to an extinction curve A(λ)/E(B−V) (W,).

    Minimises Σ w (curve − F99_RV(λ) − b)² over the finite points in `wavelength_range_nm`, with b = 0, or
    the weighted mean residual when `offset` (curves relative to G). R_V: a 0.01 grid over `rv_range`
    refined by golden-section search. Raises when fewer than 3 points are usable.
    """
    wl = np.asarray(wavelength_nm, dtype=np.float64)
    c = np.asarray(curve, dtype=np.float64)
    if c.shape != wl.shape:
        raise ValueError(f"curve has shape {c.shape}, wavelength_nm {wl.shape}; expected the same (W,)")
    w = np.ones_like(c) if weights is None else np.asarray(weights, dtype=np.float64)
    ok = np.isfinite(c) & np.isfinite(w) & (w > 0)
    if wavelength_range_nm is not None:
        ok &= (wl >= wavelength_range_nm[0]) & (wl <= wavelength_range_nm[1])
    if ok.sum() < 3:
        raise ValueError(f"only {int(ok.sum())} usable points in the extinction curve; need at least 3")
    wl, c, w = wl[ok], c[ok], w[ok]

    def cost(rv: float) -> tuple[float, float]:
        r = c - fitzpatrick99_curve(wl, rv)
        b = float(np.sum(w * r) / np.sum(w)) if offset else 0.0
        return float(np.sum(w * (r - b) ** 2)), b

    grid = np.arange(rv_range[0], rv_range[1] + 1e-9, 0.01)
    costs = np.array([cost(rv)[0] for rv in grid])
    k = int(np.argmin(costs))
    lo, hi = grid[max(k - 1, 0)], grid[min(k + 1, len(grid) - 1)]
    g = (np.sqrt(5.0) - 1.0) / 2.0
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = cost(a)[0], cost(b)[0]
    for _ in range(40):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = cost(a)[0]
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = cost(b)[0]
    rv = 0.5 * (lo + hi)
    s, off = cost(rv)
    at_edge = bool(min(rv - rv_range[0], rv_range[1] - rv) < 0.011)
    if at_edge:
        logger.warning("best F99 R_V %.2f is at the edge of the searched range %s", rv, rv_range)
    return RVFit(
        r_v=float(rv), offset=off, rms=float(np.sqrt(s / np.sum(w))), n=int(ok.sum()), at_edge=at_edge
    )


@dataclass
class ExtinctionResult:
    """The model's extinction curves on the paper's grid.

    logg, teff: (G,) grid; ebv: (E,) reddenings [mag]; ebv_ref [mag]; wavelength_nm (W,);
    reference: (G, W) and reddened: (G, E, W) spectra (absolute flux at 10 pc [W m⁻² nm⁻¹], or
    G-normalised when `absolute` is False); curves: (G, E, W) A(λ)/E(B−V)_true; median, std: (W,);
    fit: best F99 R_V; f99: {R_V: (W,) curve} for comparison.
    """

    logg: np.ndarray
    teff: np.ndarray
    ebv: np.ndarray
    ebv_ref: float
    ebv_scale: float
    labels: dict[str, Any]
    wavelength_nm: np.ndarray
    reference: np.ndarray
    reddened: np.ndarray
    curves: np.ndarray
    median: np.ndarray
    std: np.ndarray
    absolute: bool
    fit: RVFit
    f99: dict[float, np.ndarray] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        wl = self.wavelength_nm
        at = {}
        for lam in (440.0, 550.0, 800.0):
            j = int(np.argmin(np.abs(wl - lam)))
            at[f"{lam:g}nm"] = {
                "median": float(self.median[j]),
                "std": float(self.std[j]),
                **{f"f99_rv{rv:g}": float(c[j]) for rv, c in self.f99.items()},
            }
        return {
            "grid": {"logg": self.logg, "teff": self.teff, **self.labels},
            "ebv": self.ebv,
            "ebv_ref": self.ebv_ref,
            "ebv_scale": self.ebv_scale,
            "absolute_flux": self.absolute,
            "best_fit_rv": self.fit.r_v,
            "best_fit_rv_at_range_edge": self.fit.at_edge,
            "fit_offset": self.fit.offset,
            "fit_rms": self.fit.rms,
            "fit_points": self.fit.n,
            "curve_at": at,
            "definition": "R(lambda) = 2.5 log10(F_ref/F_E) / (ebv_scale (E - E_ref)); median and std over "
            "grid points and reddenings",
        }

    def columns(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {
            "wavelength_nm": self.wavelength_nm,
            "median": self.median,
            "std": self.std,
        }
        for rv, c in self.f99.items():
            out[f"f99_rv{rv:g}"] = c
        return out


def model_extinction_curve(
    predictor: Any,
    *,
    logg: np.ndarray | None = None,
    m_h: float = 0.0,
    mass: float = 1.2,
    age_gyr: float = 4.5,
    ebv: Sequence[float] = (0.4, 0.8, 1.2),
    ebv_ref: float = 0.01,
    ebv_scale: float = 1.0,
    teff_relation: str = "reference",
    absolute: bool = True,
    rv_values: Sequence[float] = (2.1, 3.1, 4.1, 5.1),
    fit_range_nm: tuple[float, float] | None = None,
    batch_size: int | None = None,
) -> ExtinctionResult:
    """Run the paper's §4.5 procedure with `predictor` (see the module docstring).

    logg: default 1.0–2.5 in 0.1 dex steps; Teff from `teff_relation` "reference" (:func:`rgb_teff` at
    [Fe/H] = m_h, the given mass) or "paper" (:func:`paper_rgb_teff`). The context is teff, logg, m_h,
    mass, ln_age and logebv (those in the vocabulary); every XP coefficient and g_fakemag are requested.
    """
    vocab = predictor.vocabulary
    if "logebv" not in vocab:
        raise ValueError(f"the extinction curve needs the logebv token, absent from vocabulary {vocab.name}")
    if not ebv_ref > 0:
        raise ValueError(f"ebv_ref must be > 0 (the model takes ln E(B-V)), got {ebv_ref}")
    ebv_arr = np.asarray(ebv, dtype=np.float64)
    if ebv_arr.ndim != 1 or not np.all(ebv_arr > ebv_ref):
        raise ValueError(f"ebv must be a list of reddenings above ebv_ref={ebv_ref}, got {ebv_arr.tolist()}")
    logg = np.round(np.arange(1.0, 2.5001, 0.1), 10) if logg is None else np.asarray(logg, dtype=np.float64)
    if teff_relation == "reference":
        teff = rgb_teff(logg, m_h, mass)
    elif teff_relation == "paper":
        teff = paper_rgb_teff(logg)
    else:
        raise ValueError(f"teff_relation must be 'reference' or 'paper', got {teff_relation!r}")
    use_lum = absolute and "g_fakemag" in vocab
    if absolute and not use_lum:
        logger.warning(
            "vocabulary %s has no g_fakemag: using G-normalised spectra (curve relative to G)", vocab.name
        )
    all_ebv = np.concatenate([[ebv_ref], ebv_arr])  # (E + 1,)
    n_g, n_e = logg.size, all_ebv.size
    labels = {
        "teff": teff,
        "logg": logg,
        "m_h": np.full(n_g, m_h),
        "mass": np.full(n_g, mass),
        "ln_age": np.full(n_g, np.log(age_gyr)),
    }
    inputs = [k for k in labels if k in vocab] + ["logebv"]
    values = np.full((n_g * n_e, len(vocab)), np.nan, dtype=np.float32)
    for k in inputs[:-1]:
        values[:, vocab.index(k)] = np.repeat(labels[k], n_e)
    values[:, vocab.index("logebv")] = np.tile(np.log(all_ebv), n_g)
    xp = vocab.xp_names
    request = list(xp) + (["g_fakemag"] if use_lum else [])
    mu, _ = predict_matrix(predictor, values, request, inputs, batch_size=batch_size)  # (G·(E+1), Q)
    from xpengine.spectra import default_sampling

    sampling = default_sampling()
    flux = tokens_to_flux(mu[:, : len(xp)], vocab, sampling)  # (G·(E+1), W)
    if use_lum:
        flux, _ = absolute_flux_10pc(flux, mu[:, -1])
    flux = flux.reshape(n_g, n_e, -1)  # (G, E+1, W)
    ref, red = flux[:, 0], flux[:, 1:]  # (G, W), (G, E, W)
    curves = np.stack(
        [extinction_curve(ref, red[:, j], e, ebv_ref, ebv_scale=ebv_scale) for j, e in enumerate(ebv_arr)],
        axis=1,
    )  # (G, E, W)
    wl = np.asarray(sampling.wavelength_nm)
    median, std = summarise_curves(curves.reshape(-1, wl.size))
    try:
        fit = fit_rv(wl, median, wavelength_range_nm=fit_range_nm, offset=not use_lum)
    except ValueError as exc:  # e.g. non-positive generated fluxes everywhere (an untrained model)
        logger.warning("no R_V fit: %s", exc)
        fit = RVFit(r_v=float("nan"), offset=float("nan"), rms=float("nan"), n=0)
    return ExtinctionResult(
        logg=logg,
        teff=teff,
        ebv=ebv_arr,
        ebv_ref=float(ebv_ref),
        ebv_scale=float(ebv_scale),
        labels={
            "m_h": float(m_h),
            "mass": float(mass),
            "age_gyr": float(age_gyr),
            "teff_relation": teff_relation,
        },
        wavelength_nm=wl,
        reference=ref,
        reddened=red,
        curves=curves,
        median=median,
        std=std,
        absolute=use_lum,
        fit=fit,
        f99={float(rv): fitzpatrick99_curve(wl, rv) for rv in rv_values},
    )
