"""How far MIST's intrinsic BP−RP, which the isochrone fit's colour terms compare with a star's, is from real
stars' colours at their spectroscopic labels: APOGEE×XP stars of low extinction, by Teff.

    python benchmarks/colour_teff_scale.py --apogee-xp ../shared/data/apogee_xp/apogee_xp_dev.fits.gz \\
        --json benchmarks/results/colour_teff_scale.json --markdown benchmarks/results/colour_teff_scale.md

The isochrone fit (`xpengine.inference.isochrone_fit`) takes each grid point's MIST/C3K BP−RP at A_V = 0 as
what the star's dereddened colour would be at that point's Teff, logg and [M/H]. Where the models' colours
miss real stars' (cool giants' molecular bands, say), a colour term of 0.03 mag pulls the fit to the wrong
Teff. This measures the miss on real stars, so that the fit's colour σ can carry it:

- stars: the dev file's rows with ASPCAP Teff, logg, [Fe/H] and [α/M], Gaia BP and RP, and AK_TARG below
  `--ak-max` (E(B−V) = AK_TARG / 0.352 (R_V 3.1) ≤ 0.085 at the default); members of the project's check
  clusters (`real_star_checks.cluster_members`) are left out, since they judge the fit;
- the star's dereddened colour: BP − RP − E(BP−RP), with E(BP−RP) / E(B−V) the catalogue's own coefficient at
  its ASPCAP labels (`flag_policy.extinction_coefficients`);
- MIST's colour at its labels: the posterior mean of the fit grid's BP−RP given the ASPCAP Teff, logg and
  [Fe/H] with their σ (the fit run on a copy of the grid whose `mass` column holds each point's BP−RP);
- by bins of ASPCAP Teff: the median of real − MIST, its robust σ, and their quadrature sum, the colour
  shift and scatter the fit gives a grid point of that Teff (`isochrone_fit.COLOUR_SCALE`). The split of
  each row is shown: the table's figures come from the train split; val and test are a check.

Hot stars (ASPCAP Teff ≥ 7000 K) have no [Fe/H] in the file: they are fitted at [Fe/H] 0 ± 0.5.
"""

from __future__ import annotations

import dataclasses
import itertools
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from check_report import check_parser, command_line, run_header, write_outputs  # noqa: E402

TEFF_EDGES = (3000.0, 3600.0, 3900.0, 4200.0, 4600.0, 5000.0, 5500.0, 6200.0, 7000.0, 9000.0, 21700.0)
AK_PER_EBV = 0.352  # A_K / E(B−V) at R_V 3.1 (the project's convention for AK_TARG)


def robust(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(1.4826 * np.median(np.abs(x - np.median(x)))) if x.size else float("nan")


def colour_grid(grid: Any) -> Any:
    """A copy of the fit grid whose `mass` column is each point's intrinsic BP−RP, so that the fit's `mass`
    output is the posterior mean and σ of the colour (its coarse companion alike)."""
    coarse = None if grid.coarse is None else dataclasses.replace(grid.coarse, mass=grid.coarse.bp_rp)
    return dataclasses.replace(grid, mass=grid.bp_rp, coarse=coarse)


def stars(fits_path: str, ak_max: float) -> dict[str, np.ndarray]:
    """The low-extinction stars outside the check clusters: labels, σ, E(B−V), observed colour, split."""
    import real_star_checks as rsc
    from astropy.io import fits

    from xpengine.datasets.splits import split_by_source_id

    d = fits.getdata(fits_path, 1)
    col = {k: np.asarray(d[k], dtype=np.float64) for k in ("teff", "logg", "fe_h", "teff_err", "logg_err")}
    col["fe_h_err"] = np.asarray(d["fe_h_err"], dtype=np.float64)
    bp = np.asarray(d["gaiaedr3_phot_bp_mean_mag"], dtype=np.float64)
    rp = np.asarray(d["gaiaedr3_phot_rp_mean_mag"], dtype=np.float64)
    ak = np.asarray(d["ak_targ"], dtype=np.float64)
    ra, dec = rsc.radec_from_apogee_id(d["apogee_id"])
    members = rsc.cluster_members(ra, dec, col["fe_h"], col["logg"])
    in_cluster = np.any([m for m in members.values()], axis=0)
    hot = col["teff"] >= 7000.0
    col["fe_h"] = np.where(hot & ~np.isfinite(col["fe_h"]), 0.0, col["fe_h"])
    col["fe_h_err"] = np.where(hot, 0.5, col["fe_h_err"])
    with np.errstate(invalid="ignore"):
        keep = (ak > -0.05) & (ak < ak_max) & ~in_cluster & np.isfinite(bp - rp)
    keep &= np.isfinite(col["teff"]) & np.isfinite(col["logg"]) & np.isfinite(col["fe_h"])
    # one row per star (a star with two APOGEE ids: its first)
    sid = np.asarray(d["gaiaedr3_source_id"], dtype=np.int64)
    first = np.zeros(sid.size, bool)
    first[np.unique(sid, return_index=True)[1]] = True
    keep &= first
    out = {k: v[keep] for k, v in col.items()}
    out["ebv"] = np.clip(ak[keep], 0.0, None) / AK_PER_EBV
    out["bp_rp"] = (bp - rp)[keep]
    out["source_id"] = sid[keep]
    out["split"] = np.asarray(split_by_source_id(sid[keep]))
    out["n_cluster_members_left_out"] = np.array(int((in_cluster & first).sum()))
    return out


def residuals(s: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Dereddened observed colour less MIST's at the stars' ASPCAP labels, and the MIST colour's σ."""
    from xpengine.catalog.flag_policy import DEFAULT_FLAG_POLICY, extinction_coefficients
    from xpengine.inference.isochrone_fit import fit_isochrones, load_fit_grid

    _, k_c = extinction_coefficients(DEFAULT_FLAG_POLICY, s["ebv"], s["teff"], s["logg"], s["fe_h"])
    c0 = s["bp_rp"] - k_c * s["ebv"]
    f = fit_isochrones(
        colour_grid(load_fit_grid()),
        s["teff"],
        s["teff_err"],
        s["logg"],
        s["logg_err"],
        s["fe_h"],
        s["fe_h_err"],
    )
    return {"c0": c0, "mist": f["mass"], "mist_error": f["mass_error"], "res": c0 - f["mass"]}


def table(s: dict[str, np.ndarray], r: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    rows = []
    for lo, hi in itertools.pairwise(TEFF_EDGES):
        in_bin = (s["teff"] >= lo) & (s["teff"] < hi) & np.isfinite(r["res"])
        row: dict[str, Any] = {"teff": [lo, hi]}
        for split in ("train", "val", "test"):
            x = r["res"][in_bin & (s["split"] == split)]
            med, sig = (float(np.median(x)), robust(x)) if x.size >= 5 else (float("nan"), float("nan"))
            row[split] = {"n": int(x.size), "median": med, "sigma": sig, "sys": float(np.hypot(med, sig))}
        row["mist_error"] = float(np.median(r["mist_error"][in_bin])) if in_bin.any() else float("nan")
        rows.append(row)
    return rows


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# MIST's BP−RP against real stars' at their ASPCAP labels (APOGEE×XP, low extinction)",
        "",
        command_line(result),
        "",
        f"{result['n_stars']} stars with AK_TARG < {result['ak_max']} (E(B−V) ≤ {result['ak_max'] / AK_PER_EBV:.3f}); "
        f"{result['n_cluster_members_left_out']} members of the check clusters left out. Residual: BP − RP − "
        "E(BP−RP) less MIST's colour at the star's labels [mag]; σ_sys = √(median² + robust σ²). "
        "MIST σ: the median posterior σ of MIST's colour at the labels (ASPCAP's σ, the fit's floors).",
        "",
        "| ASPCAP Teff [K] | train n | median | robust σ | σ_sys | val n: median / σ_sys | test n: median / σ_sys | MIST σ |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in result["bins"]:
        tr, va, te = row["train"], row["val"], row["test"]
        lines.append(
            f"| {row['teff'][0]:.0f}–{row['teff'][1]:.0f} | {tr['n']} | {tr['median']:+.3f} | {tr['sigma']:.3f} | "
            f"**{tr['sys']:.3f}** | {va['n']}: {va['median']:+.3f} / {va['sys']:.3f} | "
            f"{te['n']}: {te['median']:+.3f} / {te['sys']:.3f} | {row['mist_error']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = check_parser(__doc__)
    ap.add_argument("--apogee-xp", required=True, help="../shared/data/apogee_xp/apogee_xp_dev.fits.gz")
    ap.add_argument("--ak-max", type=float, default=0.03, help="largest AK_TARG kept [mag]")
    args = ap.parse_args(argv)
    if not Path(args.apogee_xp).exists():
        raise SystemExit(f"colour_teff_scale: {args.apogee_xp} not found")
    result: dict[str, Any] = run_header("benchmarks/colour_teff_scale.py", argv)
    s = stars(args.apogee_xp, args.ak_max)
    r = residuals(s)
    result.update(
        ak_max=args.ak_max,
        n_stars=int(s["teff"].size),
        n_cluster_members_left_out=int(s["n_cluster_members_left_out"]),
        bins=table(s, r),
    )
    write_outputs(result, args.json, args.markdown, markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
