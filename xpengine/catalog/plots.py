"""Pictures of the catalogue presets (`xpengine query --preset ... --plot FILE`): matplotlib imported
lazily, the Agg canvas, no pyplot global state."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pyarrow as pa

from xpengine.catalog.errors import QueryError

__all__ = ["plot_age_map", "plot_age_metallicity", "plot_mass_age"]


def _figure(figsize: tuple[float, float]) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=120)
    FigureCanvasAgg(fig)
    return fig


def _col(table: pa.Table, name: str) -> np.ndarray:
    if name not in table.column_names:
        raise QueryError(f"cannot plot: the table has no {name!r} column (columns: {table.column_names})")
    return np.asarray(table.column(name).to_numpy(zero_copy_only=False), dtype=np.float64)


def plot_age_metallicity(table: pa.Table, path: str | os.PathLike, *, title: str | None = None) -> None:
    """Median age vs [M/H] (line), 16–84 % band of the ages, ± median predicted σ (dotted): a PNG."""
    lo, hi = _col(table, "m_h_lo"), _col(table, "m_h_hi")
    x = 0.5 * (lo + hi)
    med, p16, p84, sig = (_col(table, c) for c in ("median_age", "age_p16", "age_p84", "median_age_error"))
    fig = _figure((6.0, 4.2))
    ax = fig.add_subplot()
    ax.fill_between(x, p16, p84, color="C0", alpha=0.25, step="mid", label="16–84 % of stars")
    ax.plot(x, med, "o-", color="C0", ms=3, label="median age")
    ax.plot(x, med - sig, ":", color="C1", label="± median predicted σ")
    ax.plot(x, med + sig, ":", color="C1")
    ax.set_xlabel("[M/H] (dex)")
    ax.set_ylabel("age (Gyr)")
    ax.set_title(title or f"age–metallicity ({int(np.sum(_col(table, 'n'))):,} stars)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.fspath(path))


def plot_age_map(table: pa.Table, path: str | os.PathLike, *, title: str | None = None) -> None:
    """Median age on the sky (Galactic, l increasing to the left): (l, b) cells or HEALPix pixels."""
    fig = _figure((7.5, 4.2))
    n_stars = int(np.sum(_col(table, "n"))) if table.num_rows else 0
    if "pixel" in table.column_names:
        ax = fig.add_subplot(projection="mollweide")
        lon, lat = _col(table, "l_centre"), _col(table, "b_centre")
        x = -np.deg2rad(np.where(lon > 180.0, lon - 360.0, lon))
        level = int(table.column("level")[0].as_py()) if table.num_rows else 4
        sc = ax.scatter(
            x,
            np.deg2rad(lat),
            c=_col(table, "median_age"),
            s=max(0.5, 60.0 / 2**level),
            cmap="viridis",
            marker="s",
            linewidths=0,
        )
        ax.set_xticks(np.deg2rad([-150, -120, -90, -60, -30, 0, 30, 60, 90, 120, 150]))
        ax.set_xticklabels(
            ["150", "120", "90", "60", "30", "0", "330", "300", "270", "240", "210"], fontsize=7
        )
        ax.grid(True, alpha=0.3)
    else:
        ax = fig.add_subplot()
        l_lo, l_hi, b_lo, b_hi = (_col(table, c) for c in ("l_lo", "l_hi", "b_lo", "b_hi"))
        l_step = float(l_hi[0] - l_lo[0]) if table.num_rows else 10.0
        b_step = float(b_hi[0] - b_lo[0]) if table.num_rows else 10.0
        le = np.arange(0.0, 360.0 + l_step / 2, l_step)
        be = np.arange(-90.0, 90.0 + b_step / 2, b_step)
        grid = np.full((len(be) - 1, len(le) - 1), np.nan)
        il = np.clip(np.round(l_lo / l_step).astype(int), 0, len(le) - 2)
        ib = np.clip(np.round((b_lo + 90.0) / b_step).astype(int), 0, len(be) - 2)
        grid[ib, il] = _col(table, "median_age")
        sc = ax.pcolormesh(le, be, np.ma.masked_invalid(grid), cmap="viridis")
        ax.set_xlim(360.0, 0.0)
        ax.set_xlabel("l (deg)")
        ax.set_ylabel("b (deg)")
    fig.colorbar(sc, ax=ax, label="median age (Gyr)", shrink=0.8)
    ax.set_title(title or f"median age ({n_stars:,} stars)", fontsize=10)
    fig.savefig(os.fspath(path))


def plot_mass_age(table: pa.Table, path: str | os.PathLike, *, title: str | None = None) -> None:
    """The mass–age plane: cells coloured by median [M/H]."""
    m_lo, m_hi, a_lo, a_hi = (_col(table, c) for c in ("mass_lo", "mass_hi", "age_lo", "age_hi"))
    fig = _figure((6.0, 4.5))
    ax = fig.add_subplot()
    if table.num_rows:
        ms, as_ = float(m_hi[0] - m_lo[0]), float(a_hi[0] - a_lo[0])
        me = np.arange(m_lo.min(), m_hi.max() + ms / 2, ms)
        ae = np.arange(a_lo.min(), a_hi.max() + as_ / 2, as_)
        grid = np.full((len(ae) - 1, len(me) - 1), np.nan)
        im = np.clip(np.round((m_lo - me[0]) / ms).astype(int), 0, len(me) - 2)
        ia = np.clip(np.round((a_lo - ae[0]) / as_).astype(int), 0, len(ae) - 2)
        grid[ia, im] = _col(table, "median_m_h")
        pc = ax.pcolormesh(me, ae, np.ma.masked_invalid(grid), cmap="coolwarm")
        fig.colorbar(pc, ax=ax, label="median [M/H] (dex)")
    ax.set_xlabel("mass (Msun)")
    ax.set_ylabel("age (Gyr)")
    n_stars = int(np.sum(_col(table, "n"))) if table.num_rows else 0
    ax.set_title(title or f"mass–age ({n_stars:,} stars)", fontsize=10)
    fig.tight_layout()
    fig.savefig(os.fspath(path))
