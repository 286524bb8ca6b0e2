"""Figures of the reconstruction task, Figs. 8–12 of Zhang et al. (2026): galleries of observed and
generated spectra, residuals against wavelength, RMSE against astrometry and labels, inpainting.
Re-exported by `xpengine.tasks.plots`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from xpengine.tasks._plotting import colorbar, limits, log10, running_median, small
from xpengine.tasks.common import new_figure, save_figure
from xpengine.tasks.reconstruction import GALLERY_PERCENTILES, percentile_indices

__all__ = [
    "plot_inpainting_gallery",
    "plot_reconstruction_gallery",
    "plot_residuals_vs_wavelength",
    "plot_rmse_vs_astrometry",
    "plot_rmse_vs_labels",
]

PathLike = str | os.PathLike


def _norm(rec: Any, i: int) -> tuple[np.ndarray, np.ndarray]:
    px = rec.pixels & np.isfinite(rec.observed[i])
    scale = np.mean(rec.observed[i][px]) if px.any() else 1.0
    return rec.observed[i] / scale, rec.generated[i] / scale


def plot_reconstruction_gallery(
    rec: Any, path: PathLike, *, percentiles: Sequence[float] = GALLERY_PERCENTILES, overwrite: bool = False
) -> Path:
    """Paper Fig. 8: observed (blue) and generated (red) spectra at RMSE percentiles, normalised by the
    star's mean observed flux; model vs Gaia distance in the title when known."""
    idx = percentile_indices(rec.rmse, percentiles)
    ncols = 3
    nrows = int(np.ceil(len(percentiles) / ncols))
    fig, axes = new_figure(nrows, ncols, width=3.6, height=2.6)
    for k, ax in enumerate(axes.ravel()):
        if k >= len(percentiles) or idx[k] < 0:
            ax.set_axis_off()
            continue
        i = int(idx[k])
        obs, gen = _norm(rec, i)
        ax.plot(rec.wavelength_nm, obs, "b-", lw=1.0, label="observed")
        ax.plot(rec.wavelength_nm, gen, "r-", lw=1.0, label="generated")
        title = f"p{percentiles[k]:g}: {rec.source_id[i]}\nRMSE={rec.rmse[i]:.3g}"
        d_nn, d = rec.extras.get("nn_distance_pc"), rec.extras.get("distance_pc")
        if d_nn is not None and d is not None and np.isfinite(d_nn[i]) and np.isfinite(d[i]):
            title += f", d_NN={d_nn[i] / 1e3:.2f} kpc, d_Gaia={d[i] / 1e3:.2f} kpc"
        ax.set_xlabel("wavelength [nm]")
        ax.set_ylabel("flux / mean observed")
        if k == 0:
            ax.legend(fontsize=6)
        small(ax, title)
    return save_figure(fig, path, overwrite=overwrite)


def plot_residuals_vs_wavelength(rec: Any, path: PathLike, *, overwrite: bool = False) -> Path:
    """Paper Fig. 9: median fractional residual (gen − obs)/obs against wavelength, 16–84% band."""
    p16, p50, p84 = rec.residual_percentiles((16.0, 50.0, 84.0))
    fig, axes = new_figure(1, 1, width=6.0, height=3.0)
    ax = axes[0, 0]
    wl = rec.wavelength_nm
    ax.fill_between(wl, p16, p84, color="tab:blue", alpha=0.25, lw=0, label="16–84%")
    ax.plot(wl, p50, color="tab:blue", lw=1.2, label="median")
    ax.axhline(0.0, color="k", lw=0.6, ls="--")
    lim = limits(np.concatenate([p16, p84]), (2.0, 98.0))
    if lim is not None:
        pad = 0.1 * (lim[1] - lim[0])
        ax.set_ylim(min(lim[0] - pad, -0.01), max(lim[1] + pad, 0.01))
    ax.set_xlabel("wavelength [nm]")
    ax.set_ylabel("(generated − observed) / observed")
    ax.legend(fontsize=7)
    small(ax, f"fractional residuals, {int(np.isfinite(rec.rmse).sum())} stars")
    return save_figure(fig, path, overwrite=overwrite)


def plot_rmse_vs_astrometry(rec: Any, path: PathLike, *, overwrite: bool = False) -> Path:
    """Paper Fig. 10: log10 RMSE against Gaia distance and parallax S/N, with running medians."""
    fig, axes = new_figure(2, 1, width=5.0, height=2.8)
    lr = log10(rec.rmse)
    for ax, key, xlabel, log_x in (
        (axes[0, 0], "distance_pc", "Gaia distance 1/ϖ [kpc]", False),
        (axes[1, 0], "parallax_snr", "parallax S/N ϖ/σ_ϖ", True),
    ):
        x = rec.extras.get(key, np.full(len(rec), np.nan)).astype(np.float64)
        if key == "distance_pc":
            x = x / 1e3
        ok = np.isfinite(x) & np.isfinite(lr) & ((x > 0) if log_x else True)
        if not ok.any():
            ax.text(0.5, 0.5, f"no {key} in the test set", ha="center", va="center", transform=ax.transAxes)
        else:
            ax.scatter(x[ok], lr[ok], s=3, c="0.3", linewidths=0, rasterized=True)
            running_median(ax, x, lr, log_x=log_x)
            if log_x:
                ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("log10 RMSE")
        small(ax)
    return save_figure(fig, path, overwrite=overwrite)


def plot_rmse_vs_labels(rec: Any, path: PathLike, *, overwrite: bool = False) -> Path:
    """Paper Fig. 11: log10 RMSE coloured over Teff–logg, Teff–[M/H] and [M/H]–logg."""
    fig, axes = new_figure(1, 3, width=3.4, height=3.0)
    lr = log10(rec.rmse)
    clim = limits(lr, (2.0, 98.0))
    for ax, (xk, yk) in zip(axes[0], (("teff", "logg"), ("teff", "m_h"), ("m_h", "logg")), strict=True):
        x, y = rec.extras.get(xk), rec.extras.get(yk)
        if x is None or y is None or clim is None:
            ax.set_axis_off()
            continue
        ok = np.isfinite(x) & np.isfinite(y) & np.isfinite(lr)
        sc = ax.scatter(
            x[ok],
            y[ok],
            c=lr[ok],
            s=4,
            cmap="viridis",
            vmin=clim[0],
            vmax=clim[1],
            linewidths=0,
            rasterized=True,
        )
        colorbar(ax, sc, "log10 RMSE")
        if xk == "teff":
            ax.invert_xaxis()
        if yk == "logg":
            ax.invert_yaxis()
        ax.set_xlabel({"teff": "Teff [K]", "m_h": "[M/H]"}[xk])
        ax.set_ylabel({"logg": "logg", "m_h": "[M/H]"}[yk])
        small(ax)
    return save_figure(fig, path, overwrite=overwrite)


def plot_inpainting_gallery(
    recs: Sequence[Any],
    path: PathLike,
    *,
    percentiles: Sequence[float] = GALLERY_PERCENTILES,
    split_nm: float = 640.0,
    overwrite: bool = False,
) -> Path:
    """Paper Fig. 12: one row per inpainting direction, one column per RMSE percentile; the input side
    shaded red, the predicted side blue; observed blue line, prediction red."""
    fig, axes = new_figure(len(recs), len(percentiles), width=2.6, height=2.3)
    for row, rec in enumerate(recs):
        idx = percentile_indices(rec.rmse, percentiles)
        predicted_blue = rec.task == "rp_to_bp"
        for k, ax in enumerate(axes[row]):
            if idx[k] < 0:
                ax.set_axis_off()
                continue
            i = int(idx[k])
            wl = rec.wavelength_nm
            ax.axvspan(
                wl.min(), split_nm, color="tab:blue" if predicted_blue else "tab:red", alpha=0.08, lw=0
            )
            ax.axvspan(
                split_nm, wl.max(), color="tab:red" if predicted_blue else "tab:blue", alpha=0.08, lw=0
            )
            scale = np.nanmean(rec.observed[i]) or 1.0
            ax.plot(wl, rec.observed[i] / scale, "b-", lw=0.9)
            ax.plot(wl[rec.pixels], rec.generated[i][rec.pixels] / scale, "r-", lw=0.9)
            ax.axhline(0.0, color="k", lw=0.5, ls="--")
            ax.set_xlabel("wavelength [nm]")
            if k == 0:
                ax.set_ylabel(f"{rec.task.replace('_to_', ' → ').upper()}\nflux / mean")
            small(ax, f"p{percentiles[k]:g} RMSE={rec.rmse[i]:.3g}")
    return save_figure(fig, path, overwrite=overwrite)
