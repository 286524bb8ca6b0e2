"""Axis helpers shared by the task figures (`xpengine.tasks.plots`, `xpengine.tasks.plots_reconstruction`):
small fonts, colour bars, robust limits, a running median with its 16–84 % band."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["colorbar", "limits", "log10", "running_median", "small"]


def small(ax: Any, title: str | None = None) -> None:
    ax.tick_params(labelsize=7)
    ax.xaxis.label.set_size(8)
    ax.yaxis.label.set_size(8)
    if title:
        ax.set_title(title, fontsize=8)


def colorbar(ax: Any, mappable: Any, label: str) -> None:
    cb = ax.figure.colorbar(mappable, ax=ax, shrink=0.85)
    cb.set_label(label, fontsize=7)
    cb.ax.tick_params(labelsize=6)


def limits(x: np.ndarray, q: tuple[float, float] = (1.0, 99.0)) -> tuple[float, float] | None:
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return None
    lo, hi = np.percentile(x, q)
    if lo == hi:
        lo, hi = lo - 0.5 * (abs(lo) + 1e-12), hi + 0.5 * (abs(hi) + 1e-12)
    return float(lo), float(hi)


def log10(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(x > 0, np.log10(np.where(x > 0, x, 1.0)), np.nan)


def running_median(ax: Any, x: np.ndarray, y: np.ndarray, *, log_x: bool, n_bins: int = 12) -> None:
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
