"""Spectral reconstruction from true labels (Zhang et al. 2026 §4.2.2–4.2.3, Figs. 8–11) and BP ↔ RP
inpainting (§4.3, Fig. 12).

The reconstruction error of one star is the paper's Eq. 3 on the sampled grid (336–1020 nm, 2 nm),

    RMSE = sqrt( (1/M) Σ_j (F_gen,j − F_obs,j)² ),

with both spectra *normalised*: F = (G-normalised sampled flux) / ⟨F_obs⟩, where ⟨F_obs⟩ is the mean of
the observed G-normalised flux over the same M pixels. The RMSE is then dimensionless — the rms
residual as a fraction of the star's mean flux — and comparable between stars of any brightness or
colour (:func:`spectral_rmse` with ``relative=True``; ``relative=False`` gives Eq. 3 on the
G-normalised flux itself, [W m⁻² nm⁻¹ per e⁻ s⁻¹], also reported as `rmse_gnorm`).
The M pixels are those where both spectra are finite (and, for inpainting, on the predicted band's
side of 640 nm).

"Observed" is the spectrum of the star's XP tokens; coefficients that are NaN there (not relevant,
REFERENCE §1) are truncated. With ``match_truncation=True`` (default) the generated coefficients are
truncated the same way, so both spectra are expansions over the same basis functions and the RMSE
measures the model, not the truncation.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xpengine.tasks.common import label_tokens, predict_matrix, tokens_to_flux
from xpengine.tasks.data import StarSet

__all__ = [
    "GALLERY_PERCENTILES",
    "INPAINT_SPLIT_NM",
    "Reconstruction",
    "inpaint",
    "percentile_indices",
    "reconstruct_from_labels",
    "spectral_rmse",
]

logger = logging.getLogger(__name__)

GALLERY_PERCENTILES: tuple[float, ...] = (5.0, 25.0, 50.0, 75.0, 90.0, 99.0)
"""RMSE percentiles of the example galleries (paper Figs. 8 and 12)."""
INPAINT_SPLIT_NM = 640.0
"""BP/RP cut of the inpainting test (paper §4.3): BP side λ < 640 nm, RP side λ ≥ 640 nm."""


def spectral_rmse(
    generated: np.ndarray,
    observed: np.ndarray,
    *,
    pixels: np.ndarray | None = None,
    relative: bool = True,
) -> np.ndarray:
    """Per-star RMSE (N,) of paper Eq. 3 between spectra (N, W) on a common grid.

    pixels: (W,) bool, the grid points to use (default all); per star only points finite in both
    spectra count (M of them). relative: divide by the mean observed flux over the same M points (the
    normalised RMSE defined in the module docstring); else the RMSE in the spectra's own unit.
    NaN where M = 0 (or, relative, where the mean observed flux is not positive).
    """
    g = np.asarray(generated, dtype=np.float64)
    o = np.asarray(observed, dtype=np.float64)
    if g.shape != o.shape or g.ndim != 2:
        raise ValueError(f"generated {g.shape} and observed {o.shape} must be the same (N, W) shape")
    ok = np.isfinite(g) & np.isfinite(o)  # (N, W)
    if pixels is not None:
        px = np.asarray(pixels, dtype=bool)
        if px.shape != (g.shape[1],):
            raise ValueError(f"pixels must be a ({g.shape[1]},) bool mask, got shape {px.shape}")
        ok &= px[None, :]
    m = ok.sum(axis=1)  # (N,)
    sq = np.where(ok, (g - o) ** 2, 0.0).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        rmse = np.where(m > 0, np.sqrt(sq / m), np.nan)
        if relative:
            mean_obs = np.where(ok, o, 0.0).sum(axis=1) / m
            rmse = np.where(mean_obs > 0, rmse / mean_obs, np.nan)
    return rmse


def percentile_indices(rmse: np.ndarray, percentiles: Sequence[float] = GALLERY_PERCENTILES) -> np.ndarray:
    """Index (P,) of the star whose RMSE is closest to each percentile of the finite RMSE values
    (-1 for all when none is finite)."""
    r = np.asarray(rmse, dtype=np.float64)
    ok = np.flatnonzero(np.isfinite(r))
    if ok.size == 0:
        return np.full(len(percentiles), -1, dtype=np.int64)
    targets = np.percentile(r[ok], percentiles)
    return ok[np.argmin(np.abs(r[ok][None, :] - targets[:, None]), axis=1)].astype(np.int64)


@dataclass
class Reconstruction:
    """Observed and generated G-normalised spectra of N test stars and their errors.

    task: "labels", "rp_to_bp" or "bp_to_rp"; inputs: the tokens offered as context; n_inputs (N,):
    how many of them a star had. wavelength_nm (W,), pixels (W,) bool: the grid points scored.
    observed, generated: (N, W) G-normalised flux. rmse (N,): normalised Eq. 3 (module docstring);
    rmse_gnorm (N,): Eq. 3 on the G-normalised flux. extras: per-star (N,) columns (true labels,
    Gaia distance, parallax S/N, model distance from the requested pseudo-luminosity, ...).
    """

    task: str
    source_id: np.ndarray
    inputs: list[str]
    n_inputs: np.ndarray
    wavelength_nm: np.ndarray
    pixels: np.ndarray
    observed: np.ndarray
    generated: np.ndarray
    rmse: np.ndarray
    rmse_gnorm: np.ndarray
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.source_id)

    def fractional_residuals(self) -> np.ndarray:
        """(gen − obs)/obs (N, W) on the scored pixels (paper Fig. 9), NaN elsewhere or where obs ≤ 0."""
        with np.errstate(divide="ignore", invalid="ignore"):
            r = (self.generated - self.observed) / self.observed
        return np.where(self.pixels[None, :] & (self.observed > 0), r, np.nan)

    def residual_percentiles(self, q: Sequence[float] = (16.0, 50.0, 84.0)) -> np.ndarray:
        """Percentiles (len(q), W) over stars of the fractional residual at each wavelength."""
        import warnings

        r = self.fractional_residuals()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels → NaN
            return np.nanpercentile(r, q, axis=0)

    def summary(self, percentiles: Sequence[float] = GALLERY_PERCENTILES) -> dict[str, Any]:
        """Counts and RMSE percentiles (normalised and G-normalised), and the gallery stars."""
        ok = np.isfinite(self.rmse)
        out: dict[str, Any] = {
            "task": self.task,
            "n_stars": len(self),
            "n_scored": int(ok.sum()),
            "inputs": self.inputs,
            "pixels_nm": [
                float(self.wavelength_nm[self.pixels].min()),
                float(self.wavelength_nm[self.pixels].max()),
            ]
            if self.pixels.any()
            else None,
            "rmse_definition": "sqrt(mean_j (F_gen - F_obs)^2) / mean_j F_obs over finite scored pixels "
            "(G-normalised sampled flux; paper Eq. 3 on spectra normalised by their mean observed flux)",
        }
        for name, r in (("rmse", self.rmse), ("rmse_gnorm", self.rmse_gnorm)):
            rr = r[np.isfinite(r)]
            out[name] = {
                "median": float(np.median(rr)) if rr.size else None,
                "percentiles": {f"p{p:g}": float(np.percentile(rr, p)) for p in percentiles}
                if rr.size
                else {},
            }
        idx = percentile_indices(self.rmse, percentiles)
        out["gallery"] = [
            {"percentile": p, "source_id": int(self.source_id[i]), "rmse": float(self.rmse[i])}
            for p, i in zip(percentiles, idx, strict=True)
            if i >= 0
        ]
        for key in ("distance_pc", "parallax_snr", "teff", "logg", "m_h"):
            if key in self.extras:
                binned = _binned_median(self.extras[key], self.rmse)
                if binned is not None:
                    out[f"rmse_by_{key}"] = binned
        for name in ("nn_distance_pc", "distance_pc"):
            if name not in self.extras:
                break
        else:
            d_nn, d = self.extras["nn_distance_pc"], self.extras["distance_pc"]
            ok_d = np.isfinite(d_nn) & np.isfinite(d) & (d > 0)
            if ok_d.any():
                frac = d_nn[ok_d] / d[ok_d] - 1.0
                out["nn_distance"] = {
                    "n": int(ok_d.sum()),
                    "median_fractional_difference": float(np.median(frac)),
                    "robust_sigma_fractional": float(1.4826 * np.median(np.abs(frac - np.median(frac)))),
                }
        return out

    def columns(self, *, spectra: bool = True) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {
            "source_id": self.source_id,
            "n_inputs": self.n_inputs,
            "rmse": self.rmse,
            "rmse_gnorm": self.rmse_gnorm,
            **self.extras,
        }
        if spectra:
            out["observed_flux"] = self.observed.astype(np.float32)
            out["generated_flux"] = self.generated.astype(np.float32)
        return out


def _binned_median(x: np.ndarray, rmse: np.ndarray, n_bins: int = 4) -> dict[str, list[float]] | None:
    """Median RMSE in `n_bins` quantile bins of x (Figs. 10–11 in numbers); None with < 2·n_bins stars."""
    ok = np.isfinite(x) & np.isfinite(rmse)
    if ok.sum() < 2 * n_bins:
        return None
    edges = np.unique(np.quantile(x[ok], np.linspace(0.0, 1.0, n_bins + 1)))
    k = np.clip(np.searchsorted(edges, x[ok], side="right") - 1, 0, len(edges) - 2)
    r = rmse[ok]
    return {
        "edges": [float(e) for e in edges],
        "median_rmse": [
            float(np.median(r[k == b])) if (k == b).any() else float("nan") for b in range(len(edges) - 1)
        ],
        "n": [int((k == b).sum()) for b in range(len(edges) - 1)],
    }


def _extras(stars: StarSet) -> dict[str, np.ndarray]:
    out = {name: stars.column(name) for name in ("teff", "logg", "m_h", "mass", "ln_age", "logebv")}
    out = {k: v for k, v in out.items() if np.isfinite(v).any()}
    out["g_mag"] = stars.g_mag
    out["distance_pc"] = stars.distance_pc()
    out["parallax_snr"] = stars.parallax_snr()
    return out


def _finalise(
    task: str,
    stars: StarSet,
    inputs: list[str],
    observed_coef: np.ndarray,
    generated_coef: np.ndarray,
    pixels_fn: Any,
    extras: dict[str, np.ndarray],
    match_truncation: bool,
) -> Reconstruction:
    from xpengine.spectra import default_sampling

    vocab = stars.vocabulary
    sampling = default_sampling()
    if match_truncation:
        generated_coef = np.where(np.isfinite(observed_coef), generated_coef, np.nan)
    observed = tokens_to_flux(observed_coef, vocab, sampling)  # (N, W)
    generated = tokens_to_flux(generated_coef, vocab, sampling)  # (N, W)
    wl = np.asarray(sampling.wavelength_nm)
    pixels = pixels_fn(wl)
    in_cols = vocab.indices(inputs)
    return Reconstruction(
        task=task,
        source_id=stars.source_id,
        inputs=inputs,
        n_inputs=np.isfinite(stars.values[:, in_cols]).sum(axis=1).astype(np.int64),
        wavelength_nm=wl,
        pixels=pixels,
        observed=observed,
        generated=generated,
        rmse=spectral_rmse(generated, observed, pixels=pixels, relative=True),
        rmse_gnorm=spectral_rmse(generated, observed, pixels=pixels, relative=False),
        extras=extras,
    )


def reconstruct_from_labels(
    predictor: Any,
    stars: StarSet,
    *,
    inputs: Sequence[str] | None = None,
    match_truncation: bool = True,
    batch_size: int | None = None,
) -> Reconstruction:
    """Generate every XP coefficient of each test star from its true labels and score the spectrum
    (paper §4.2.2: "reconstructed the Gaia XP spectra for all stars in the test set using their
    ground-truth parameters").

    inputs: context tokens (default: every label, extinction token of the vocabulary — teff, logg,
    m_h, mass, ln_age, logebv, ... — each star using those it has). g_fakemag, when not an input, is
    requested too and turned into a model distance d_NN = 1000·10^(0.2 G)/fakemag_pred (paper Fig. 8).
    `stars` must be in the predictor's vocabulary order.
    """
    vocab = predictor.vocabulary
    _check_vocab(stars, vocab)
    if inputs is None:
        inputs = [t for t in label_tokens(vocab) if t != "g_fakemag"]
    inputs = [t for t in inputs if t in vocab]
    if not inputs:
        raise ValueError(f"none of the input tokens are in vocabulary {vocab.name}")
    xp = vocab.xp_names
    request = list(xp)
    want_lum = "g_fakemag" in vocab and "g_fakemag" not in inputs
    if want_lum:
        request.append("g_fakemag")
    mu, _ = predict_matrix(predictor, stars.values, request, inputs, batch_size=batch_size)  # (N, Q)
    extras = _extras(stars)
    if want_lum:
        from xpengine.features.astrometry import fakemag_to_distance_pc

        extras["nn_g_fakemag"] = mu[:, -1]
        extras["nn_distance_pc"], _ = fakemag_to_distance_pc(mu[:, -1], stars.g_mag)
    return _finalise(
        "labels",
        stars,
        list(inputs),
        stars.xp(),
        mu[:, : len(xp)],
        lambda wl: np.ones(wl.shape, dtype=bool),
        extras,
        match_truncation,
    )


def inpaint(
    predictor: Any,
    stars: StarSet,
    direction: str,
    *,
    split_nm: float = INPAINT_SPLIT_NM,
    match_truncation: bool = True,
    batch_size: int | None = None,
) -> Reconstruction:
    """Spectral inpainting (paper §4.3): the context is one band's XP coefficients and nothing else, the
    other band's coefficients are requested.

    direction: "rp_to_bp" (RP in, BP predicted, scored at λ < split_nm) or "bp_to_rp" (BP in, RP
    predicted, scored at λ ≥ split_nm). The generated spectrum combines the star's observed input band
    with the predicted band, so in the 636–642 nm overlap both spectra share the observed part.
    """
    if direction not in ("rp_to_bp", "bp_to_rp"):
        raise ValueError(f"direction must be 'rp_to_bp' or 'bp_to_rp', got {direction!r}")
    vocab = predictor.vocabulary
    _check_vocab(stars, vocab)
    bp = [f"bp{i}" for i in range(vocab.n_bp)]
    rp = [f"rp{i}" for i in range(vocab.n_rp)]
    src, dst = (rp, bp) if direction == "rp_to_bp" else (bp, rp)
    mu, _ = predict_matrix(predictor, stars.values, dst, src, batch_size=batch_size)  # (N, n_dst)
    observed_coef = stars.xp()  # (N, K)
    generated_coef = observed_coef.copy()
    position = {name: i for i, name in enumerate(vocab.xp_names)}  # column in the (N, K) XP matrix
    generated_coef[:, [position[name] for name in dst]] = mu
    if direction == "rp_to_bp":

        def pixels(wl: np.ndarray) -> np.ndarray:
            return wl < split_nm
    else:

        def pixels(wl: np.ndarray) -> np.ndarray:
            return wl >= split_nm

    return _finalise(
        direction, stars, src, observed_coef, generated_coef, pixels, _extras(stars), match_truncation
    )


def _check_vocab(stars: StarSet, vocab: Any) -> None:
    if stars.vocabulary.names != vocab.names:
        raise ValueError(
            f"test stars are in vocabulary {stars.vocabulary.name} ({len(stars.vocabulary)} tokens) but the "
            f"model uses {vocab.name} ({len(vocab)} tokens); load them with load_stars(path, "
            "predictor.vocabulary)"
        )
