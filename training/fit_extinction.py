"""Fit the catalogue's star-by-star Gaia extinction coefficients to the MIST/C3K tables.

    python training/fit_extinction.py --output xpengine/data/extinction/mist_gaia.json

Targets: A_G / E(B−V) and E(BP−RP) / E(B−V) (R_V = 3.1, so E(B−V) = A_V / 3.1) from
`xpengine.simulate.isochrones.extinction`, BC(A_V = 0) − BC(A_V) of the star's own SED, the simulated
sky's extinction. Points: `--n-points` MIST v2.5 isochrone points drawn uniformly from the isochrone
fit's grid (`xpengine.inference.isochrone_fit`: EEP 202–808, 0.1–14.1 Gyr, [Fe/H] −3 to +0.5, Teff up to
21,700 K, so the Teff–logg pairs real stars have), each behind one A_V: half uniform on 0–1.5 mag (most
Gaia XP sources), half on 0–6 mag (the tables' range). Least squares on the polynomial of
`xpengine.catalog.extinction.design`. The file records the coefficients, the ranges inputs are clamped
to, the residuals by Teff range and the source tables.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TEFF_BINS = ((2600, 3600), (3600, 4500), (4500, 6000), (6000, 10000), (10000, 22000))
FORM = {"x0": 3.7, "logg0": 3.0, "teff_degree": 5, "av_degree": 3}


def sample(n: int, seed: int) -> dict[str, np.ndarray]:
    """n isochrone points (Teff, logg, [Fe/H]) with an A_V each, and their two coefficients."""
    from xpengine.inference.isochrone_fit import build_fit_grid
    from xpengine.simulate import isochrones as iso

    grid = build_fit_grid(coarse=False)
    rng = np.random.default_rng(seed)
    i = rng.choice(grid.teff.size, n, replace=False)
    av = np.where(rng.random(n) < 0.5, rng.uniform(0.0, 1.5, n), rng.uniform(0.0, 6.0, n))
    av = np.maximum(av, 1e-3)
    s = {k: getattr(grid, k)[i].astype(np.float64) for k in ("teff", "logg", "feh")}
    a = iso.extinction(s["teff"], s["logg"], s["feh"], av)
    ebv = av / 3.1
    return {**s, "av": av, "k_g": a["a_g"] / ebv, "k_c": (a["a_bp"] - a["a_rp"]) / ebv}


def fit(s: dict[str, np.ndarray]) -> dict:
    from xpengine.catalog.extinction import design
    from xpengine.simulate.mist_grid import _bc_path

    lt = np.log10(s["teff"])
    ranges = {
        "log_teff": [float(lt.min()), float(lt.max())],
        "av": [0.0, 6.0],
        "m_h": [float(s["feh"].min()), float(s["feh"].max())],
        "logg": [float(s["logg"].min()), float(s["logg"].max())],
    }
    tab = {**FORM, "ranges": ranges}
    x = design(lt, s["av"], s["logg"], s["feh"], tab)
    out = dict(tab)
    residuals = {}
    for key, name in (("k_g", "a_g_per_ebv"), ("k_c", "e_bp_rp_per_ebv")):
        coef, *_ = np.linalg.lstsq(x, s[key], rcond=None)
        r = s[key] - x @ coef
        out[name] = [float(c) for c in coef]
        residuals[name] = {
            f"{lo}-{hi} K": {
                "n": int(m.sum()),
                "rms": round(float(np.sqrt(np.mean(r[m] ** 2))), 4),
                "max": round(float(np.abs(r[m]).max()), 4),
            }
            for lo, hi in TEFF_BINS
            if (m := (s["teff"] >= lo) & (s["teff"] < hi)).any()
        }
    out["residuals"] = residuals
    out["provenance"] = {
        "script": "training/fit_extinction.py",
        "bc_table": Path(_bc_path()).name,
        "n_points": int(s["teff"].size),
        "r_v": 3.1,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
    }
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--output", required=True)
    p.add_argument("--n-points", type=int, default=60_000)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    out = fit(sample(a.n_points, a.seed))
    Path(a.output).parent.mkdir(parents=True, exist_ok=True)
    Path(a.output).write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    for name, rows in out["residuals"].items():
        print(name, "; ".join(f"{k}: n {v['n']}, rms {v['rms']}, max {v['max']}" for k, v in rows.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
