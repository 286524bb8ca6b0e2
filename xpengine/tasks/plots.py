"""Figures of the generative and probing tasks (PNG; matplotlib object API on the Agg canvas, imported
lazily). Numbering follows Zhang et al. (2026): Fig. 7 (spectra along label sequences) to Fig. 18
(colours from embeddings). Each function takes a task result and a path, and returns the path."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from xpengine.tasks._plotting import colorbar, limits, small
from xpengine.tasks.common import FLUX_UNIT, abs_g_to_log_lg, new_figure, save_figure
from xpengine.tasks.plots_reconstruction import (  # re-exported: they lived here
    plot_inpainting_gallery,
    plot_reconstruction_gallery,
    plot_residuals_vs_wavelength,
    plot_rmse_vs_astrometry,
    plot_rmse_vs_labels,
)

__all__ = [
    "plot_age_metallicity",
    "plot_attention",
    "plot_embedding_colours",
    "plot_extinction",
    "plot_inpainting_gallery",
    "plot_kiel_grid",
    "plot_mass_age_grid",
    "plot_reconstruction_gallery",
    "plot_residuals_vs_wavelength",
    "plot_rmse_vs_astrometry",
    "plot_rmse_vs_labels",
    "plot_sequences",
    "plot_spectra",
]

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike


# ----------------------------------------------------------------------------------------------------------
# Fig. 7 and plain spectra


def plot_spectra(
    gen: Any,
    path: PathLike,
    *,
    absolute: bool = False,
    labels: Sequence[str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Generated spectra of a :class:`~xpengine.tasks.generative.GeneratedSpectra` (one line per
    star, ±1σ band when G-normalised)."""
    fig, axes = new_figure(1, 1, width=6.0, height=3.6)
    ax = axes[0, 0]
    wl = gen.wavelength_nm
    y = gen.flux_10pc if absolute else gen.flux
    for i in range(min(len(gen), 20)):
        lab = labels[i] if labels is not None else f"star {i}"
        (line,) = ax.plot(wl, y[i], lw=1.0, label=lab)
        if not absolute:
            ax.fill_between(
                wl,
                y[i] - gen.flux_error[i],
                y[i] + gen.flux_error[i],
                color=line.get_color(),
                alpha=0.2,
                lw=0,
            )
    ax.set_xlabel("wavelength [nm]")
    ax.set_ylabel(f"flux at 10 pc [{FLUX_UNIT}]" if absolute else "G-normalised flux")
    ax.legend(fontsize=6)
    small(ax, "spectra generated from labels" + (" (absolute, 10 pc)" if absolute else ""))
    return save_figure(fig, path, overwrite=overwrite)


def plot_sequences(results: Sequence[tuple[Any, Any]], path: PathLike, *, overwrite: bool = False) -> Path:
    """Paper Fig. 7: one column per label sequence; top, the spectra (lines coloured by the varied label);
    bottom, each spectrum divided by the sequence's middle one, where subtle changes show."""
    from matplotlib import colormaps

    n = max(len(results), 1)
    fig, axes = new_figure(2, n, width=4.0, height=2.8)
    cmap = colormaps["viridis"]
    for col, (seq, gen) in enumerate(results):
        ax, rax = axes[0, col], axes[1, col]
        wl = gen.wavelength_nm
        absolute = seq.absolute and np.isfinite(gen.flux_10pc).any()
        y = gen.flux_10pc if absolute else gen.flux
        vals = np.asarray(seq.values, dtype=np.float64)
        span = (vals.max() - vals.min()) or 1.0
        mid = y[len(vals) // 2]
        for i, v in enumerate(vals):
            colour = cmap((v - vals.min()) / span)
            ax.plot(wl, y[i], lw=1.0, color=colour, label=f"{seq.vary} = {v:.3g}")
            with np.errstate(divide="ignore", invalid="ignore"):
                rax.plot(wl, np.where(np.abs(mid) > 0, y[i] / mid, np.nan), lw=1.0, color=colour)
        ax.set_xlabel("wavelength [nm]")
        ax.set_ylabel(f"flux at 10 pc [{FLUX_UNIT}]" if absolute else "G-normalised flux")
        fixed = ", ".join(f"{k}={v:g}" for k, v in seq.fixed.items())
        ax.legend(fontsize=5)
        small(ax, f"{seq.name}\n({fixed})")
        lim = limits(y / np.where(np.abs(mid) > 0, mid, np.nan), (1.0, 99.0))
        if lim is not None:
            pad = 0.1 * (lim[1] - lim[0]) + 1e-4
            rax.set_ylim(lim[0] - pad, lim[1] + pad)
        rax.set_xlabel("wavelength [nm]")
        rax.set_ylabel(f"ratio to {seq.vary} = {vals[len(vals) // 2]:.3g}")
        small(rax)
    return save_figure(fig, path, overwrite=overwrite)


# ----------------------------------------------------------------------------------------------------------
# Figs. 13–15: label grid


def _kiel_axes(ax: Any) -> None:
    ax.invert_xaxis()
    ax.invert_yaxis()
    ax.set_xlabel("Teff [K]")
    ax.set_ylabel("logg")


def _scatter(
    ax: Any,
    x: np.ndarray,
    y: np.ndarray,
    c: np.ndarray,
    label: str,
    clim: Any = None,
    cmap: str = "viridis",
    s: float = 5,
) -> None:
    ok = np.isfinite(x) & np.isfinite(y) & np.isfinite(c)
    if not ok.any():
        ax.text(0.5, 0.5, "no values", ha="center", va="center", transform=ax.transAxes)
        return
    lim = clim or limits(c[ok], (2.0, 98.0))
    sc = ax.scatter(
        x[ok], y[ok], c=c[ok], s=s, cmap=cmap, vmin=lim[0], vmax=lim[1], linewidths=0, rasterized=True
    )
    colorbar(ax, sc, label)


def plot_kiel_grid(grid: Any, path: PathLike, *, data: Any = None, overwrite: bool = False) -> Path:
    """Paper Fig. 13: (data coloured by log L_G from parallax), the model's Teff on the (logg, [M/H])
    grid coloured by its predicted log L_G, by the input [M/H], and its σ_Teff."""
    k = grid.kiel
    fig, axes = new_figure(2, 2, width=3.6, height=3.0)
    ax = axes[0, 0]
    if data is not None and np.isfinite(data.column("teff")).any():
        from xpengine.features.astrometry import fakemag_to_absmag

        mg, _ = fakemag_to_absmag(data.column("g_fakemag"))
        _scatter(
            ax, data.column("teff"), data.column("logg"), abs_g_to_log_lg(mg), "log10 L_G/L_G☉ (parallax)"
        )
        _kiel_axes(ax)
        small(ax, "test stars")
    else:
        ax.set_axis_off()
    teff = k.get("teff", np.full(len(k["logg"]), np.nan))
    lum = k.get("log_lg", np.full(len(k["logg"]), np.nan))
    for ax, c, label, title, cmap in (
        (axes[0, 1], lum, "log10 L_G/L_G☉ (model)", "model on the (logg, [M/H]) grid", "viridis"),
        (axes[1, 0], k["m_h"], "input [M/H]", "coloured by input [M/H]", "coolwarm"),
        (
            axes[1, 1],
            k.get("teff_error", np.full(len(teff), np.nan)),
            "σ_Teff [K]",
            "σ of predicted Teff",
            "magma",
        ),
    ):
        _scatter(ax, teff, k["logg"], c, label, cmap=cmap)
        _kiel_axes(ax)
        small(ax, title)
    return save_figure(fig, path, overwrite=overwrite)


def plot_mass_age_grid(grid: Any, path: PathLike, *, data: Any = None, overwrite: bool = False) -> Path:
    """Paper Fig. 14: rows mass and age; columns data, model mean and σ from logg + [M/H], model mean and
    σ with the predicted Teff fed back."""
    k = grid.kiel
    rows = [lab for lab in ("mass", "age") if lab in k]
    fig, axes = new_figure(max(len(rows), 1), 5, width=2.9, height=2.6)
    teff = k.get("teff", np.full(len(k["logg"]), np.nan))
    for r, lab in enumerate(rows):
        unit = "M☉" if lab == "mass" else "Gyr"
        lim = limits(k[lab], (2.0, 98.0))
        elim = limits(
            np.concatenate([k[f"{lab}_error"], k.get(f"{lab}_error_with_teff", np.array([]))]), (2.0, 98.0)
        )
        ax = axes[r, 0]
        if data is not None:
            truth = data.column("mass") if lab == "mass" else np.exp(data.column("ln_age"))
            _scatter(ax, data.column("teff"), data.column("logg"), truth, f"{lab} [{unit}]", clim=lim, s=4)
            _kiel_axes(ax)
            small(ax, f"test stars: {lab}")
        else:
            ax.set_axis_off()
        for c, (key, title, cl, cmap) in enumerate(
            (
                (lab, f"{lab} from logg+[M/H]", lim, "viridis"),
                (f"{lab}_error", f"σ {lab} from logg+[M/H]", elim, "magma"),
                (f"{lab}_with_teff", f"{lab} with Teff fed back", lim, "viridis"),
                (f"{lab}_error_with_teff", f"σ {lab} with Teff", elim, "magma"),
            ),
            start=1,
        ):
            ax = axes[r, c]
            if key not in k:
                ax.set_axis_off()
                continue
            _scatter(ax, teff, k["logg"], k[key], f"[{unit}]", clim=cl, cmap=cmap)
            _kiel_axes(ax)
            ax.set_xlabel("predicted Teff [K]")
            small(ax, title)
    return save_figure(fig, path, overwrite=overwrite)


def plot_age_metallicity(grid: Any, path: PathLike, *, overwrite: bool = False) -> Path:
    """Paper Fig. 15: predicted age against [M/H] at fixed logg, with the exp(μ ± σ) band."""
    s = grid.slice
    fig, axes = new_figure(1, 1, width=4.5, height=3.2)
    ax = axes[0, 0]
    if "age" in s:
        ax.fill_between(s["m_h"], s["age_lo"], s["age_hi"], color="tab:blue", alpha=0.25, lw=0, label="±1σ")
        ax.plot(s["m_h"], s["age"], color="tab:blue", lw=1.4, label="model mean")
        ax.legend(fontsize=7)
    ax.set_xlabel("[M/H] [dex]")
    ax.set_ylabel("age [Gyr]")
    small(ax, f"age–[M/H] at logg = {grid.slice_logg:g}")
    return save_figure(fig, path, overwrite=overwrite)


# ----------------------------------------------------------------------------------------------------------
# Fig. 16: extinction


def plot_extinction(res: Any, path: PathLike, *, overwrite: bool = False) -> Path:
    """Paper Fig. 16: left, one giant's spectra at each E(B−V); right, the median curve with its scatter
    and Fitzpatrick (1999) at several R_V."""
    from matplotlib import colormaps

    fig, axes = new_figure(1, 2, width=4.6, height=3.4)
    ax = axes[0, 0]
    j = int(np.argmin(np.abs(res.logg - 2.5)))
    wl = res.wavelength_nm
    cmap = colormaps["plasma"]
    ax.plot(wl, res.reference[j], color="k", lw=1.1, label=f"E(B−V)={res.ebv_ref:g}")
    for e_i, e in enumerate(res.ebv):
        ax.plot(
            wl,
            res.reddened[j, e_i],
            color=cmap(0.15 + 0.7 * e_i / max(len(res.ebv) - 1, 1)),
            lw=1.0,
            label=f"E(B−V)={e:g}",
        )
    ax.set_xlabel("wavelength [nm]")
    ax.set_ylabel(f"flux at 10 pc [{FLUX_UNIT}]" if res.absolute else "G-normalised flux")
    ax.legend(fontsize=6)
    small(
        ax,
        f"Teff={res.teff[j]:.0f} K, logg={res.logg[j]:.2f}, [M/H]={res.labels['m_h']:g}, "
        f"M={res.labels['mass']:g}, age={res.labels['age_gyr']:g} Gyr",
    )
    ax = axes[0, 1]
    ax.fill_between(
        wl, res.median - res.std, res.median + res.std, color="0.6", alpha=0.4, lw=0, label="±1 std"
    )
    ax.plot(wl, res.median, "k--", lw=1.3, label="model (median)")
    cm2 = colormaps["viridis"]
    rvs = sorted(res.f99)
    for i, rv in enumerate(rvs):
        ax.plot(
            wl,
            res.f99[rv] + (res.fit.offset if not res.absolute and np.isfinite(res.fit.offset) else 0.0),
            color=cm2(i / max(len(rvs) - 1, 1)),
            lw=1.0,
            label=f"F99 R_V={rv:g}",
        )
    ax.set_xlabel("wavelength [nm]")
    ax.set_ylabel("A(λ)/E(B−V)" + ("" if res.absolute else " (relative to G)"))
    lim = limits(np.concatenate([res.median, *res.f99.values()]), (1.0, 99.0))
    if lim is not None:
        ax.set_ylim(lim[0] - 0.5, lim[1] + 0.5)
    ax.legend(fontsize=6)
    small(ax, f"extinction curve; best F99 R_V = {res.fit.r_v:.2f}")
    return save_figure(fig, path, overwrite=overwrite)


# ----------------------------------------------------------------------------------------------------------
# Figs. 17–18: probing


def plot_attention(maps: Any, path: PathLike, *, overwrite: bool = False) -> Path:
    """Paper Fig. 17: attention (context token × request) at low and high E(B−V), and high − low."""
    fig, axes = new_figure(1, 3, width=3.6, height=3.4)
    vmax = float(max(np.nanmax(maps.low), np.nanmax(maps.high)))
    dmax = float(np.nanmax(np.abs(maps.difference))) or 1e-6
    for ax, m, title, cmap, vmin, vm in (
        (axes[0, 0], maps.low, f"E(B−V) = {maps.ebv_low:g}", "viridis", 0.0, vmax),
        (axes[0, 1], maps.high, f"E(B−V) = {maps.ebv_high:g}", "viridis", 0.0, vmax),
        (axes[0, 2], maps.difference, "high − low", "RdBu_r", -dmax, dmax),
    ):
        im = ax.imshow(m.T, cmap=cmap, vmin=vmin, vmax=vm, aspect="auto")  # (L + 1, Q)
        ax.set_xticks(range(len(maps.requests)))
        ax.set_xticklabels(maps.requests, rotation=60, fontsize=6)
        ax.set_yticks(range(len(maps.context)))
        ax.set_yticklabels(maps.context, fontsize=6)
        ax.set_xlabel("requested")
        ax.set_ylabel("context")
        colorbar(ax, im, "attention")
        small(ax, title)
    return save_figure(fig, path, overwrite=overwrite)


def plot_embedding_colours(fits: Sequence[Any], path: PathLike, *, overwrite: bool = False) -> Path:
    """Paper Fig. 18: colours predicted from XP-only embeddings against the truth (held-out stars)."""
    fig, axes = new_figure(1, max(len(fits), 1), width=3.4, height=3.2)
    titles = {"bprp": "G_BP − G_RP [mag]", "jk": "J − K [mag]", "jh": "J − H [mag]"}
    for ax, f in zip(axes[0], fits, strict=False):
        ax.scatter(f.truth, f.predicted, s=4, c="0.25", linewidths=0, rasterized=True)
        lim = limits(np.concatenate([f.truth, f.predicted]), (0.5, 99.5))
        if lim is not None:
            ax.plot(lim, lim, "r--", lw=0.9)
            ax.set_xlim(lim)
            ax.set_ylim(lim)
        ax.set_xlabel(f"true {titles.get(f.target, f.target)}")
        ax.set_ylabel("ridge prediction from embedding")
        small(ax, f"{f.target}: R²={f.r2:.3f}, σ={f.residual_sigma:.3g} (n_test={f.n_test})")
    return save_figure(fig, path, overwrite=overwrite)
