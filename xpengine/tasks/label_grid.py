"""Label → label experiments (Zhang et al. 2026 §4.4, Figs. 13–15): the model is given a few labels on
an artificial grid, no spectrum, and asked for the others.

- Kiel grid (Fig. 13): logg ∈ [0, 4] × [M/H] ∈ [−2.5, 0.5] → Teff, σ_Teff and the pseudo-luminosity,
  shown as M_G = 5 (log10 fakemag − 2) and log10(L_G/L_G,☉) = −0.4 (M_G − 4.67).
- Mass and age (Fig. 14): from logg + [M/H] alone (the model also predicts Teff), then again with the
  predicted Teff fed back as an input ("with Teff").
- Age–metallicity slice (Fig. 15): logg fixed at 2.5, [M/H] varied → age with its 1σ band
  exp(μ ± σ) of the predicted ln(age/Gyr) (asymmetric in Gyr; the linear σ_age = age·σ_ln is also kept).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from xpengine.tasks.common import abs_g_to_log_lg, predict_matrix

__all__ = ["LabelGrid", "label_grid"]

logger = logging.getLogger(__name__)


def _grid_axis(start: float, stop: float, step: float) -> np.ndarray:
    n = round((stop - start) / step) + 1
    return np.round(start + step * np.arange(n), 10)


@dataclass
class LabelGrid:
    """Results on the (logg, [M/H]) grid (`kiel`, flattened, one entry per grid point) and on the
    age–metallicity slice (`slice`); each a dict of (n,) float64 arrays."""

    kiel: dict[str, np.ndarray]
    slice: dict[str, np.ndarray]
    slice_logg: float

    def summary(self) -> dict[str, Any]:
        k, s = self.kiel, self.slice
        out: dict[str, Any] = {
            "n_grid": len(k["logg"]),
            "n_slice": len(s["m_h"]),
            "slice_logg": self.slice_logg,
        }
        if "teff" in k:
            out["teff_range_k"] = [float(np.nanmin(k["teff"])), float(np.nanmax(k["teff"]))]
            out["median_teff_error_k"] = float(np.nanmedian(k["teff_error"]))
            near = np.isclose(k["logg"], 2.5) & np.isfinite(k["teff"])
            if near.sum() >= 2:
                # dTeff/d[M/H] along logg = 2.5 (real giants: about −355 K/dex, REFERENCE §7)
                out["dteff_dmh_at_logg_2p5_k_per_dex"] = float(
                    np.polyfit(k["m_h"][near], k["teff"][near], 1)[0]
                )
        if "abs_g" in k:
            ok = np.isfinite(k["abs_g"])
            if ok.sum() >= 2:
                out["dmg_dlogg_mag_per_dex"] = float(np.polyfit(k["logg"][ok], k["abs_g"][ok], 1)[0])
        for lab in ("mass", "age"):
            if f"{lab}_error" in k and f"{lab}_error_with_teff" in k:
                out[f"median_{lab}_error"] = float(np.nanmedian(k[f"{lab}_error"]))
                out[f"median_{lab}_error_with_teff"] = float(np.nanmedian(k[f"{lab}_error_with_teff"]))
                out[f"median_abs_{lab}_change_with_teff"] = float(
                    np.nanmedian(np.abs(k[f"{lab}_with_teff"] - k[lab]))
                )
        if "age" in s:
            for mh in (-2.0, -1.0, 0.0):
                j = int(np.argmin(np.abs(s["m_h"] - mh)))
                out[f"slice_age_gyr_at_m_h_{mh:+.1f}"] = float(s["age"][j])
                out[f"slice_sigma_ln_age_at_m_h_{mh:+.1f}"] = float(s["ln_age_error"][j])
        return out


def _add(
    out: dict[str, np.ndarray], names: list[str], mu: np.ndarray, sg: np.ndarray, suffix: str = ""
) -> None:
    for j, name in enumerate(names):
        if name == "ln_age":
            out[f"ln_age{suffix}"] = mu[:, j]
            out[f"ln_age_error{suffix}"] = sg[:, j]
            age = np.exp(mu[:, j])
            out[f"age{suffix}"] = age
            out[f"age_error{suffix}"] = age * sg[:, j]
            out[f"age_lo{suffix}"] = np.exp(mu[:, j] - sg[:, j])
            out[f"age_hi{suffix}"] = np.exp(mu[:, j] + sg[:, j])
        else:
            out[f"{name}{suffix}"] = mu[:, j]
            out[f"{name}_error{suffix}"] = sg[:, j]


def label_grid(
    predictor: Any,
    *,
    logg: np.ndarray | None = None,
    m_h: np.ndarray | None = None,
    slice_logg: float = 2.5,
    slice_m_h: np.ndarray | None = None,
    batch_size: int | None = None,
) -> LabelGrid:
    """Run the label-to-label experiments of paper §4.4.

    logg (default 0–4 in 0.1 dex steps) × m_h (default −2.5–0.5 in 0.1 dex): the Kiel grid; the
    predictor gets logg and m_h only and is asked for teff, g_fakemag, mass and ln_age (those its
    vocabulary has), then for mass and ln_age again with the predicted Teff added to the context.
    slice_m_h (default −2.5–0.5 in 0.05 dex) at logg = slice_logg: ln_age (Fig. 15).
    """
    vocab = predictor.vocabulary
    for need in ("logg", "m_h"):
        if need not in vocab:
            raise ValueError(f"the label grid needs token {need!r}, absent from vocabulary {vocab.name}")
    logg = _grid_axis(0.0, 4.0, 0.1) if logg is None else np.asarray(logg, dtype=np.float64)
    m_h = _grid_axis(-2.5, 0.5, 0.1) if m_h is None else np.asarray(m_h, dtype=np.float64)
    slice_m_h = _grid_axis(-2.5, 0.5, 0.05) if slice_m_h is None else np.asarray(slice_m_h, dtype=np.float64)
    gg, mm = np.meshgrid(logg, m_h, indexing="ij")
    kiel: dict[str, np.ndarray] = {"logg": gg.ravel(), "m_h": mm.ravel()}
    n = kiel["logg"].size
    values = np.full((n, len(vocab)), np.nan, dtype=np.float32)
    values[:, vocab.index("logg")] = kiel["logg"]
    values[:, vocab.index("m_h")] = kiel["m_h"]
    request = [t for t in ("teff", "g_fakemag", "mass", "ln_age") if t in vocab]
    if not request:
        raise ValueError(f"vocabulary {vocab.name} has none of teff, g_fakemag, mass, ln_age to predict")
    mu, sg = predict_matrix(predictor, values, request, ["logg", "m_h"], batch_size=batch_size)
    _add(kiel, request, mu, sg)
    if "g_fakemag" in kiel:
        from xpengine.features.astrometry import fakemag_to_absmag

        kiel["abs_g"], kiel["abs_g_error"] = fakemag_to_absmag(kiel["g_fakemag"], kiel["g_fakemag_error"])
        kiel["log_lg"] = abs_g_to_log_lg(kiel["abs_g"])
    evo = [t for t in ("mass", "ln_age") if t in vocab]
    if "teff" in kiel and evo:
        values[:, vocab.index("teff")] = kiel["teff"]
        mu2, sg2 = predict_matrix(predictor, values, evo, ["logg", "m_h", "teff"], batch_size=batch_size)
        _add(kiel, evo, mu2, sg2, suffix="_with_teff")
    sl: dict[str, np.ndarray] = {"m_h": slice_m_h, "logg": np.full(slice_m_h.shape, float(slice_logg))}
    if "ln_age" in vocab:
        v = np.full((slice_m_h.size, len(vocab)), np.nan, dtype=np.float32)
        v[:, vocab.index("logg")] = slice_logg
        v[:, vocab.index("m_h")] = slice_m_h
        req = [t for t in ("ln_age", "mass", "teff") if t in vocab]
        mu3, sg3 = predict_matrix(predictor, v, req, ["logg", "m_h"], batch_size=batch_size)
        _add(sl, req, mu3, sg3)
    return LabelGrid(kiel=kiel, slice=sl, slice_logg=float(slice_logg))
