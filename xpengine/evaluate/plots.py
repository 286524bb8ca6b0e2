"""Evaluation figures (PNG), drawn with matplotlib's object API (no pyplot, no global backend change).

- one_to_one.png: prediction vs truth per label and model, transformer points coloured by predicted σ
  (paper Fig. 4a–b and 5a–b);
- scenarios.png: the transformer under each input scenario (Fig. 4b–f), coloured by predicted σ;
- mass_age.png: mass and age panels as in Fig. 5 (XGBoost, then each scenario);
- residuals_vs_g.png (or residuals_vs_snr.png when the test set has no G magnitude): residuals with
  running median and ±robust σ, and the median predicted σ, in bins;
- kiel.png: predicted Teff–logg coloured by predicted [M/H] (Fig. 6 left);
- calibration.png: z-score histograms against N(0, 1), raw and calibrated, per label.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from xpengine.evaluate.metrics import robust_sigma, z_scores
from xpengine.evaluate.report import LABEL_TITLES

__all__ = ["make_figures"]

logger = logging.getLogger(__name__)

Pred = Mapping[str, tuple[np.ndarray, np.ndarray | None]]


def _figure(nrows: int, ncols: int, size: float = 2.6) -> tuple[Any, np.ndarray]:
    from matplotlib.figure import Figure

    # No layout engine: constrained layout costs seconds per figure with many colour bars.
    fig = Figure(figsize=(size * ncols + 0.8, size * nrows + 0.4))
    axes = np.atleast_2d(fig.subplots(nrows, ncols, squeeze=False))
    fig.subplots_adjust(wspace=0.75, hspace=0.65)
    return fig, axes


def _one_to_one(
    ax: Any,
    pred: np.ndarray,
    sig: np.ndarray | None,
    truth: np.ndarray,
    label: str,
    title: str,
    clim: tuple[float, float] | None,
) -> None:
    ok = np.isfinite(pred) & np.isfinite(truth)
    if not ok.any():
        ax.set_axis_off()
        return
    p, t = pred[ok], truth[ok]
    if sig is not None and clim is not None and np.isfinite(sig[ok]).any():
        sc = ax.scatter(
            t, p, c=sig[ok], s=3, cmap="viridis", vmin=clim[0], vmax=clim[1], rasterized=True, linewidths=0
        )
        cb = ax.figure.colorbar(sc, ax=ax, shrink=0.8)
        cb.set_label("σ_pred", fontsize=7)
        cb.ax.tick_params(labelsize=6)
    else:
        ax.scatter(t, p, s=3, c="0.3", rasterized=True, linewidths=0)
    lo, hi = np.nanquantile(np.concatenate([p, t]), [0.002, 0.998])
    ax.plot([lo, hi], [lo, hi], "r-", lw=0.8)
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    r = p - t
    ax.set_title(f"{title}\nσ={robust_sigma(r):.3g} bias={np.median(r):.2g} n={len(r)}", fontsize=8)
    ax.set_xlabel(f"true {LABEL_TITLES.get(label, label)}", fontsize=8)
    ax.set_ylabel("predicted", fontsize=8)
    ax.tick_params(labelsize=7)


def _colour_limits(sigmas: Sequence[np.ndarray]) -> tuple[float, float] | None:
    """Common σ colour scale of one label over all panels (5–95th percentile of the pooled σ), so a
    scenario with larger uncertainties shows up as brighter points, as in the paper's Fig. 4."""
    pooled = (
        np.concatenate([np.asarray(s, dtype=np.float64).ravel() for s in sigmas]) if sigmas else np.empty(0)
    )
    pooled = pooled[np.isfinite(pooled)]
    if pooled.size == 0:
        return None
    lo, hi = (float(q) for q in np.quantile(pooled, [0.05, 0.95]))
    if not hi > lo:
        hi = lo + max(abs(lo), 1e-12) * 1e-3
    return lo, hi


def _grid(
    path: Path, columns: Sequence[tuple[str, Pred]], labels: Sequence[str], truth: Mapping[str, np.ndarray]
) -> Path | None:
    labels = [lab for lab in labels if lab in truth and any(lab in p for _, p in columns)]
    if not labels or not columns:
        return None
    fig, axes = _figure(len(labels), len(columns))
    for i, lab in enumerate(labels):
        clim = _colour_limits([p[lab][1] for _, p in columns if lab in p and p[lab][1] is not None])
        for j, (name, pred) in enumerate(columns):
            if lab in pred:
                _one_to_one(axes[i, j], pred[lab][0], pred[lab][1], truth[lab], lab, f"{name}: {lab}", clim)
            else:
                axes[i, j].set_axis_off()
    fig.savefig(path, dpi=90, bbox_inches="tight")
    return path


def _residuals(
    path: Path,
    pred: Pred,
    truth: Mapping[str, np.ndarray],
    labels: Sequence[str],
    x: np.ndarray,
    xlabel: str,
    log_x: bool,
) -> Path | None:
    labels = [lab for lab in labels if lab in pred and lab in truth]
    if not labels:
        return None
    fig, axes = _figure(1, len(labels), size=3.0)
    for j, lab in enumerate(labels):
        ax = axes[0, j]
        p, s = pred[lab]
        r = p - truth[lab]
        ok = np.isfinite(r) & np.isfinite(x) & ((x > 0) if log_x else True)
        ax.scatter(x[ok], r[ok], s=2, c="0.5", rasterized=True, linewidths=0)
        if ok.sum() >= 10:
            edges = np.unique(np.quantile(x[ok], np.linspace(0, 1, 9)))
            mid, med, rs, ms = [], [], [], []
            for a, b in itertools.pairwise(edges):
                sel = ok & (x >= a) & (x <= b)
                if sel.sum() < 3:
                    continue
                mid.append(np.median(x[sel]))
                med.append(np.median(r[sel]))
                rs.append(robust_sigma(r[sel]))
                ms.append(np.nanmedian(s[sel]) if s is not None else np.nan)
            mid, med, rs, ms = map(np.asarray, (mid, med, rs, ms))
            ax.plot(mid, med, "k-", lw=1, label="median")
            ax.plot(mid, med + rs, "r--", lw=1, label="±robust σ")
            ax.plot(mid, med - rs, "r--", lw=1)
            if np.isfinite(ms).any():
                ax.plot(mid, ms, "b:", lw=1, label="median σ_pred")
                ax.plot(mid, -ms, "b:", lw=1)
            lim = 4 * np.nanmax(rs) if np.isfinite(rs).any() and np.nanmax(rs) > 0 else None
            if lim:
                ax.set_ylim(-lim, lim)
        if log_x:
            ax.set_xscale("log")
        ax.axhline(0, color="0.7", lw=0.5)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel(f"Δ {LABEL_TITLES.get(lab, lab)}", fontsize=8)
        ax.tick_params(labelsize=7)
        if j == 0:
            ax.legend(fontsize=6)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    return path


def _kiel(path: Path, columns: Sequence[tuple[str, Pred]]) -> Path | None:
    cols = [(n, p) for n, p in columns if "teff" in p and "logg" in p]
    if not cols:
        return None
    fig, axes = _figure(1, len(cols), size=3.4)
    for j, (name, p) in enumerate(cols):
        ax = axes[0, j]
        te, lg = p["teff"][0], p["logg"][0]
        c = p["m_h"][0] if "m_h" in p else None
        ok = np.isfinite(te) & np.isfinite(lg)
        if c is not None:
            sc = ax.scatter(
                te[ok],
                lg[ok],
                c=c[ok],
                s=3,
                cmap="coolwarm",
                vmin=-1.0,
                vmax=0.5,
                rasterized=True,
                linewidths=0,
            )
            fig.colorbar(sc, ax=ax, label="predicted [M/H]", shrink=0.8)
        else:
            ax.scatter(te[ok], lg[ok], s=3, c="0.3", rasterized=True, linewidths=0)
        ax.invert_xaxis()
        ax.invert_yaxis()
        ax.set_xlabel("predicted Teff [K]", fontsize=8)
        ax.set_ylabel("predicted logg [dex]", fontsize=8)
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    return path


def _calibration(
    path: Path,
    raw: Pred,
    cal: Pred | None,
    truth: Mapping[str, np.ndarray],
    truth_error: Mapping[str, np.ndarray],
    labels: Sequence[str],
) -> Path | None:
    labels = [lab for lab in labels if lab in raw and raw[lab][1] is not None and lab in truth]
    if not labels:
        return None
    fig, axes = _figure(1, len(labels), size=2.6)
    grid = np.linspace(-5, 5, 201)
    gauss = np.exp(-0.5 * grid**2) / np.sqrt(2 * np.pi)
    bins = np.linspace(-5, 5, 41)
    for j, lab in enumerate(labels):
        ax = axes[0, j]
        z = z_scores(raw[lab][0], truth[lab], raw[lab][1], truth_error.get(lab))
        z = z[np.isfinite(z)]
        ax.hist(np.clip(z, -5, 5), bins=bins, density=True, histtype="step", color="k", label="raw")
        if cal is not None and lab in cal:
            zc = z_scores(cal[lab][0], truth[lab], cal[lab][1], truth_error.get(lab))
            zc = zc[np.isfinite(zc)]
            ax.hist(
                np.clip(zc, -5, 5), bins=bins, density=True, histtype="step", color="b", label="calibrated"
            )
        ax.plot(grid, gauss, "r-", lw=0.8, label="N(0,1)")
        title = f"{lab}: robust σ(z) raw {robust_sigma(z):.2f}"
        if cal is not None and lab in cal:
            title += f", cal {robust_sigma(zc):.2f}"
        ax.set_title(title, fontsize=8)
        ax.set_xlabel("z", fontsize=8)
        ax.tick_params(labelsize=7)
        if j == 0:
            ax.legend(fontsize=6)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    return path


def make_figures(result: Any, out_dir: str | Path) -> list[str]:
    """Write the PNG figures of an :class:`~xpengine.evaluate.runner.EvaluationResult` into out_dir.

    Returns the paths written (figures whose inputs are absent are skipped).
    """
    out = Path(out_dir)
    preds = result.predictions
    truth, terr = result.truth, result.truth_error
    labels = [lab for lab in result.metrics["data"]["labels"] if lab != "ln_age"]
    written: list[Path | None] = []
    models: list[tuple[str, Pred]] = [(n, preds[n]) for n in ("xgboost", "transformer") if n in preds]
    written.append(_grid(out / "one_to_one.png", models, labels, truth))
    scen = [(k.split(":", 1)[1], v) for k, v in preds.items() if k.startswith("scenario:")]
    if scen:
        written.append(
            _grid(out / "scenarios.png", scen, [lab for lab in labels if lab not in ("mass", "age")], truth)
        )
    ma = [lab for lab in ("mass", "age") if lab in truth]
    if ma:
        base = [("xgboost", preds["xgboost"])] if "xgboost" in preds else []
        written.append(_grid(out / "mass_age.png", base + (scen or models), ma, truth))
    main = preds.get("transformer") or preds.get("xgboost")
    if main is not None:
        if result.g_mag is not None and np.isfinite(result.g_mag).any():
            written.append(
                _residuals(out / "residuals_vs_g.png", main, truth, labels, result.g_mag, "G [mag]", False)
            )
        else:
            written.append(
                _residuals(out / "residuals_vs_snr.png", main, truth, labels, result.snr, "S/N of rp0", True)
            )
    written.append(_kiel(out / "kiel.png", models))
    if "transformer" in preds:
        written.append(
            _calibration(
                out / "calibration.png",
                preds["transformer"],
                preds.get("transformer_calibrated"),
                truth,
                terr,
                labels,
            )
        )
    paths = [str(p) for p in written if p is not None]
    logger.info("figures: %s", ", ".join(Path(p).name for p in paths))
    return paths
