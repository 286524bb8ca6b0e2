"""Real-star check of the catalogue's distances without a parallax: cluster giants and Magellanic Cloud giants.

    python benchmarks/luminous_giants_distance.py --apogee-xp ../shared/data/apogee_xp/apogee_xp_dev.fits.gz \\
        --json benchmarks/results/luminous_giants_distance.json \\
        --markdown benchmarks/results/luminous_giants_distance.md

The APOGEE×XP development file has no parallaxes, so its stars take the distance the catalogue gives a star
without one: the model's pseudo-luminosity (DISTANCE_FROM_MODEL) for giants of the mass/age domain, the
isochrone fit's (DISTANCE_FROM_ISOCHRONES) outside it. Stars of known distance, every split (no real star's
distance or parallax was ever trained on): members of the globular and open clusters of
`real_star_checks.CLUSTERS` (their literature distances), and giants (APOGEE logg < 2) within 8° of the
LMC's centre (49.6 kpc, Pietrzyński et al. 2019) and 4° of the SMC's (62.4 kpc, Graczyk et al. 2020), not
cluster members. They go through `Predictor.from_xp` (gaia-xp) with their real XP, DR3 G/BP/RP, 2MASS and
position. Reported: the catalogue distance over the literature distance (median, robust ln σ, median z of
ln ratio / (σ_d / d)), by group and by the M_G the literature distance implies (G − 5 log10(d / 10 pc) −
A_G with the catalogue's own E(B−V) and A_G/E(B−V) = 2.74). The model learned its pseudo-luminosity on a
simulated Milky Way sky, where giants brighter than M_G −3 are rare (27 of 12,000 catalogue giants of the
seed-2828 development sky) and asymptotic-giant-branch stars and red supergiants are absent.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_report import check_parser, command_line, run_header, write_outputs
from ebv_bound_real import _inputs
from real_star_checks import CLUSTERS, cluster_members

from xpengine.features.flags import SourceFlag

CLOUDS = (("LMC", 80.89, -69.76, 8.0, 49.6), ("SMC", 13.19, -72.83, 4.0, 62.4))
"""(name, ra, dec [deg], radius [deg], distance [kpc])."""
LOGG_BINS = ((-1.0, 0.5), (0.5, 1.0), (1.0, 1.5), (1.5, 2.0), (2.0, 3.5))  # the model's own logg
M_G_BINS = ((-8.0, -4.0), (-4.0, -3.0), (-3.0, -2.0), (-2.0, -1.0), (-1.0, 0.5), (0.5, 3.0))


def _groups(d: Any, ra: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(group name, literature distance [pc]) of each row ("" and NaN: neither)."""
    members = cluster_members(ra, dec, np.asarray(d["fe_h"], np.float64), np.asarray(d["logg"], np.float64))
    group = np.full(ra.size, "", dtype=object)
    dist = np.full(ra.size, np.nan)
    for c in CLUSTERS:
        group[members[c.name]], dist[members[c.name]] = c.kind + " clusters", c.distance_kpc * 1e3
    logg = np.asarray(d["logg"], np.float64)
    for name, r0, d0, radius, kpc in CLOUDS:
        cos = np.sin(np.radians(d0)) * np.sin(np.radians(dec)) + np.cos(np.radians(d0)) * np.cos(
            np.radians(dec)
        ) * np.cos(np.radians(ra - r0))
        inside = (np.degrees(np.arccos(np.clip(cos, -1, 1))) < radius) & (logg < 2.0) & (group == "")
        group[inside], dist[inside] = name, kpc * 1e3
    return group, dist


def _stats(ratio: np.ndarray, rel_err: np.ndarray) -> dict[str, Any]:
    ok = np.isfinite(ratio) & (ratio > 0) & np.isfinite(rel_err) & (rel_err > 0)
    if not ok.any():
        return {"n": 0}
    r = np.log(ratio[ok])
    return {
        "n": int(ok.sum()),
        "ratio": float(np.exp(np.median(r))),
        "ln_sigma": float(1.4826 * np.median(np.abs(r - np.median(r)))),
        "median_z": float(np.median(r / rel_err[ok])),
    }


def check(path: str) -> dict[str, Any]:
    from xpengine.inference.predictor import Predictor

    groups: dict[int, tuple[str, float]] = {}

    def select(d: Any, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
        g, dist = _groups(d, ra, dec)
        for s, gi, di in zip(np.asarray(d["gaiaedr3_source_id"], np.int64), g, dist, strict=True):
            groups[int(s)] = (gi, di)
        return g != ""

    table, tmass, _ = _inputs(path, None, select)
    p = Predictor.load("gaia-xp")
    parts = []
    for i in range(0, len(table), 500):
        t = {k: v[i : i + 500] for k, v in tmass.items()}
        parts.append(p.from_xp(table.iloc[i : i + 500].reset_index(drop=True), tmass=t))
    import pandas as pd

    out = pd.concat(parts, ignore_index=True)
    group = np.array([groups[int(s)][0] for s in out["source_id"]], dtype=object)
    lit = np.array([groups[int(s)][1] for s in out["source_id"]])
    d, de = out["distance_pc"].to_numpy(np.float64), out["distance_pc_error"].to_numpy(np.float64)
    flags = out["flags"].to_numpy().astype(np.int64)
    by_model = (flags & int(SourceFlag.DISTANCE_FROM_MODEL)) != 0
    by_iso = (flags & int(SourceFlag.DISTANCE_FROM_ISOCHRONES)) != 0
    g = table["phot_g_mean_mag"].to_numpy(np.float64)
    abs_g = g - 5 * np.log10(lit / 10.0) - 2.74 * out["ebv"].to_numpy(np.float64)
    res: dict[str, Any] = {"n_stars": len(out), "groups": {}, "abs_g_bins": {}}
    for name in dict.fromkeys(sorted(group)):
        m = group == name
        res["groups"][name] = {
            src: _stats(d[m & w] / lit[m & w], de[m & w] / d[m & w])
            for src, w in (("DISTANCE_FROM_MODEL", by_model), ("DISTANCE_FROM_ISOCHRONES", by_iso))
        }
        res["groups"][name]["no distance"] = int((m & ~np.isfinite(d)).sum())
    for lo, hi in M_G_BINS:
        m = by_model & (abs_g >= lo) & (abs_g < hi)
        res["abs_g_bins"][f"{lo:+.1f} to {hi:+.1f}"] = _stats(d[m] / lit[m], de[m] / d[m])
    # by what the catalogue itself knows of a star (its predicted logg), Magellanic and Milky Way apart
    logg = out["logg"].to_numpy(np.float64)
    magellanic = np.isin(group, ("LMC", "SMC"))
    res["logg_bins"] = {}
    for lo, hi in LOGG_BINS:
        m = (by_model | by_iso) & (logg >= lo) & (logg < hi)
        res["logg_bins"][f"{lo:.1f} to {hi:.1f}"] = {
            where: _stats(d[m & w] / lit[m & w], de[m & w] / d[m & w])
            for where, w in (("Magellanic Clouds", magellanic), ("Milky Way clusters", ~magellanic))
        }
    return res


def _fmt(s: Mapping[str, Any]) -> str:
    if s["n"] == 0:
        return "0 | – | – | –"
    return f"{s['n']} | ×{s['ratio']:.2f} | {s['ln_sigma']:.2f} | {s['median_z']:+.1f}"


def render_markdown(result: Mapping[str, Any]) -> str:
    r = result["check"]
    lines = [
        "# Distances without a parallax: real cluster and Magellanic Cloud giants",
        "",
        command_line(result),
        "",
        f"{r['n_stars']} real stars of known distance through `Predictor.from_xp` (gaia-xp), no parallax. "
        "Catalogue distance / literature distance: median, robust ln σ, median z.",
        "",
        "| group | distance from | n | ratio | ln σ | median z |",
        "|---|---|---|---|---|---|",
    ]
    for name, g in r["groups"].items():
        for src in ("DISTANCE_FROM_MODEL", "DISTANCE_FROM_ISOCHRONES"):
            lines.append(f"| {name} | {src} | {_fmt(g[src])} |")
    lines += ["", "DISTANCE_FROM_MODEL rows by the M_G their literature distance implies:", ""]
    lines += ["| M_G | n | ratio | ln σ | median z |", "|---|---|---|---|---|"]
    for b, s in r["abs_g_bins"].items():
        lines.append(f"| {b} | {_fmt(s)} |")
    if "logg_bins" in r:
        lines += ["", "Rows with the model's or the isochrones' distance by their predicted logg:", ""]
        lines += ["| predicted logg | where | n | ratio | ln σ | median z |", "|---|---|---|---|---|---|"]
        for b, by in r["logg_bins"].items():
            for where, s in by.items():
                lines.append(f"| {b} | {where} | {_fmt(s)} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = check_parser(__doc__)
    ap.add_argument("--apogee-xp", required=True, help="the APOGEE×XP development FITS file")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    result = {**run_header("benchmarks/luminous_giants_distance.py", argv), "check": check(args.apogee_xp)}
    write_outputs(result, args.json, args.markdown, render_markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
