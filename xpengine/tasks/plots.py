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

from xpengine.tasks.common import FLUX_UNIT, abs_g_to_log_lg, new_figure, save_figure
from xpengine.tasks.reconstruction import GALLERY_PERCENTILES, percentile_indices

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


def _small(ax: Any, title: str | None = None) -> None:
    ax.tick_params(labelsize=7)
    ax.xaxis.label.set_size(8)
    ax.yaxis.label.set_size(8)
    if title:
        ax.set_title(title, fontsize=8)


def _colorbar(ax: Any, mappable: Any, label: str) -> None:
    cb = ax.figure.colorbar(mappable, ax=ax, shrink=0.85)
    cb.set_label(label, fontsize=7)
    cb.ax.tick_params(labelsize=6)


def _limits(x: np.ndarray, q: tuple[float, float] = (1.0, 99.0)) -> tuple[float, float] | None:
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return None
    lo, hi = np.percentile(x, q)
    if lo == hi:
        lo, hi = lo - 0.5 * (abs(lo) + 1e-12), hi + 0.5 * (abs(hi) + 1e-12)
    return float(lo), float(hi)


def _log10(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(x > 0, np.log10(np.where(x > 0, x, 1.0)), np.nan)


def _running_median(ax: Any, x: np.ndarray, y: np.ndarray, *, log_x: bool, n_bins: int = 12) -> None:
    ok = np.isfinite(x) & np.isfinite(y) & ((x > 0) if log_x else True)
    if ok.sum() < 2 * n_bins:
        return
    xs = np.log10(x[ok]) if log_x else x[ok]
    edges = np.unique(np.quantile(xs, np.linspace(0, 1, n_bins + 1)))
    if len(edges) < 3:
        return
    k = np.clip(np.digitize(xs, edges[1:-1]), 0, len(edges) - 2)
    cx, med, lo, hi = [], [], [], []
    for b in range(len(edges) - 1):
        sel = y[ok][k == b]
        if sel.size < 3:
            continue
        cx.append(np.median(xs[k == b]))
        p16, p50, p84 = np.percentile(sel, [16, 50, 84])
        med.append(p50)
        lo.append(p16)
        hi.append(p84)
    cx = np.power(10.0, cx) if log_x else np.asarray(cx)
    ax.plot(cx, med, "r-", lw=1.2, label="median")
    ax.fill_between(cx, lo, hi, color="r", alpha=0.15, lw=0, label="16–84%")
    ax.legend(fontsize=6, loc="best")


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
    _small(ax, "spectra generated from labels" + (" (absolute, 10 pc)" if absolute else ""))
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
        _small(ax, f"{seq.name}\n({fixed})")
        lim = _limits(y / np.where(np.abs(mid) > 0, mid, np.nan), (1.0, 99.0))
        if lim is not None:
            pad = 0.1 * (lim[1] - lim[0]) + 1e-4
            rax.set_ylim(lim[0] - pad, lim[1] + pad)
        rax.set_xlabel("wavelength [nm]")
        rax.set_ylabel(f"ratio to {seq.vary} = {vals[len(vals) // 2]:.3g}")
        _small(rax)
    return save_figure(fig, path, overwrite=overwrite)


# ----------------------------------------------------------------------------------------------------------
# Figs. 8–12: reconstruction


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
        _small(ax, title)
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
    lim = _limits(np.concatenate([p16, p84]), (2.0, 98.0))
    if lim is not None:
        pad = 0.1 * (lim[1] - lim[0])
        ax.set_ylim(min(lim[0] - pad, -0.01), max(lim[1] + pad, 0.01))
    ax.set_xlabel("wavelength [nm]")
    ax.set_ylabel("(generated − observed) / observed")
    ax.legend(fontsize=7)
    _small(ax, f"fractional residuals, {int(np.isfinite(rec.rmse).sum())} stars")
    return save_figure(fig, path, overwrite=overwrite)


def plot_rmse_vs_astrometry(rec: Any, path: PathLike, *, overwrite: bool = False) -> Path:
    """Paper Fig. 10: log10 RMSE against Gaia distance and parallax S/N, with running medians."""
    fig, axes = new_figure(2, 1, width=5.0, height=2.8)
    lr = _log10(rec.rmse)
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
            _running_median(ax, x, lr, log_x=log_x)
            if log_x:
                ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("log10 RMSE")
        _small(ax)
    return save_figure(fig, path, overwrite=overwrite)


def plot_rmse_vs_labels(rec: Any, path: PathLike, *, overwrite: bool = False) -> Path:
    """Paper Fig. 11: log10 RMSE coloured over Teff–logg, Teff–[M/H] and [M/H]–logg."""
    fig, axes = new_figure(1, 3, width=3.4, height=3.0)
    lr = _log10(rec.rmse)
    clim = _limits(lr, (2.0, 98.0))
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
        _colorbar(ax, sc, "log10 RMSE")
        if xk == "teff":
            ax.invert_xaxis()
        if yk == "logg":
            ax.invert_yaxis()
        ax.set_xlabel({"teff": "Teff [K]", "m_h": "[M/H]"}[xk])
        ax.set_ylabel({"logg": "logg", "m_h": "[M/H]"}[yk])
        _small(ax)
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
            _small(ax, f"p{percentiles[k]:g} RMSE={rec.rmse[i]:.3g}")
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
    lim = clim or _limits(c[ok], (2.0, 98.0))
    sc = ax.scatter(
        x[ok], y[ok], c=c[ok], s=s, cmap=cmap, vmin=lim[0], vmax=lim[1], linewidths=0, rasterized=True
    )
    _colorbar(ax, sc, label)


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
        _small(ax, "test stars")
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
        _small(ax, title)
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
        lim = _limits(k[lab], (2.0, 98.0))
        elim = _limits(
            np.concatenate([k[f"{lab}_error"], k.get(f"{lab}_error_with_teff", np.array([]))]), (2.0, 98.0)
        )
        ax = axes[r, 0]
        if data is not None:
            truth = data.column("mass") if lab == "mass" else np.exp(data.column("ln_age"))
            _scatter(ax, data.column("teff"), data.column("logg"), truth, f"{lab} [{unit}]", clim=lim, s=4)
            _kiel_axes(ax)
            _small(ax, f"test stars: {lab}")
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
            _small(ax, title)
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
    _small(ax, f"age–[M/H] at logg = {grid.slice_logg:g}")
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
    _small(
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
    lim = _limits(np.concatenate([res.median, *res.f99.values()]), (1.0, 99.0))
    if lim is not None:
        ax.set_ylim(lim[0] - 0.5, lim[1] + 0.5)
    ax.legend(fontsize=6)
    _small(ax, f"extinction curve; best F99 R_V = {res.fit.r_v:.2f}")
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
        _colorbar(ax, im, "attention")
        _small(ax, title)
    return save_figure(fig, path, overwrite=overwrite)


def plot_embedding_colours(fits: Sequence[Any], path: PathLike, *, overwrite: bool = False) -> Path:
    """Paper Fig. 18: colours predicted from XP-only embeddings against the truth (held-out stars)."""
    fig, axes = new_figure(1, max(len(fits), 1), width=3.4, height=3.2)
    titles = {"bprp": "G_BP − G_RP [mag]", "jk": "J − K [mag]", "jh": "J − H [mag]"}
    for ax, f in zip(axes[0], fits, strict=False):
        ax.scatter(f.truth, f.predicted, s=4, c="0.25", linewidths=0, rasterized=True)
        lim = _limits(np.concatenate([f.truth, f.predicted]), (0.5, 99.5))
        if lim is not None:
            ax.plot(lim, lim, "r--", lw=0.9)
            ax.set_xlim(lim)
            ax.set_ylim(lim)
        ax.set_xlabel(f"true {titles.get(f.target, f.target)}")
        ax.set_ylabel("ridge prediction from embedding")
        _small(ax, f"{f.target}: R²={f.r2:.3f}, σ={f.residual_sigma:.3g} (n_test={f.n_test})")
    return save_figure(fig, path, overwrite=overwrite)
