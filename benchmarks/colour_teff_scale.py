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
- giants (ASPCAP logg < 3.5) and dwarfs apart (at 3,600–3,750 K real giants are 0.6 mag redder than MIST,
  dwarfs 0.3), by bins of ASPCAP Teff: the bin's median Teff (where the fit puts the entry), the median of
  real − MIST (the shift), its robust σ, MIST's own σ at the labels (ASPCAP's label errors through MIST's
  colour–Teff slope), and the scatter the fit uses, √(robust σ² − MIST σ²): the fit marginalises the point's
  Teff itself, and the star's photometric σ it carries on its own (`isochrone_grid.COLOUR_SCALE`). A bin
  enters the table with 20 train stars or more. The table's figures come from the train split; val and
  test are a check. Stars MIST cannot fit at their labels (no isochrone within the fit's reach: the most
  luminous metal-poor M giants, mostly) have no MIST colour and are counted apart.

Hot stars (ASPCAP Teff ≥ 7000 K) have no [Fe/H] in the file: they are fitted at [Fe/H] 0 ± 0.5, and shown
only: above 7,000 K the residual measures ASPCAP's hot-star Teff and AK_TARG (RJCE, whose intrinsic colour is
a cool star's), not MIST.
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

TEFF_EDGES = (3000.0, 3400.0, 3600.0, 3750.0, 3900.0, 4050.0, 4200.0, 4400.0, 4600.0, 4800.0, 5000.0, 5250.0)
TEFF_EDGES += (5500.0, 5850.0, 6200.0, 6600.0, 7000.0, 9000.0, 21700.0)
GIANT_LOGG = 3.5  # ASPCAP logg below this: the giants' table
MIN_STARS = 20  # train stars a bin needs to enter the table
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


def table(s: dict[str, np.ndarray], r: dict[str, np.ndarray], giants: bool) -> list[dict[str, Any]]:
    """The bins of one class (giants or dwarfs): per split n, median Teff, shift, robust σ, the scatter
    √(robust² − MIST σ²), and the stars without a MIST colour."""
    rows = []
    cls = (s["logg"] < GIANT_LOGG) if giants else (s["logg"] >= GIANT_LOGG)
    for lo, hi in itertools.pairwise(TEFF_EDGES):
        in_bin = cls & (s["teff"] >= lo) & (s["teff"] < hi)
        fitted = in_bin & np.isfinite(r["res"])
        row: dict[str, Any] = {"teff": [lo, hi], "no_mist_colour": int((in_bin & ~fitted).sum())}
        for split in ("train", "val", "test"):
            sel = fitted & (s["split"] == split)
            x = r["res"][sel]
            out: dict[str, Any] = {"n": int(x.size)}
            if x.size >= 5:
                mist = float(np.median(r["mist_error"][sel]))
                sig = robust(x)
                out.update(
                    teff=float(np.median(s["teff"][sel])),
                    median=float(np.median(x)),
                    sigma=sig,
                    mist_sigma=mist,
                    scatter=float(np.sqrt(max(sig**2 - mist**2, 0.0))),
                )
            row[split] = out
        row["in_table"] = row["train"]["n"] >= MIN_STARS and hi <= 7000.0
        rows.append(row)
    return rows


def _cell(d: dict[str, Any]) -> str:
    return f"{d['n']}: {d['median']:+.3f}" if "median" in d else f"{d['n']}: –"


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# MIST's BP−RP against real stars' at their ASPCAP labels (APOGEE×XP, low extinction)",
        "",
        command_line(result),
        "",
        f"{result['n_stars']} stars with AK_TARG < {result['ak_max']} (E(B−V) ≤ {result['ak_max'] / AK_PER_EBV:.3f}); "
        f"{result['n_cluster_members_left_out']} members of the check clusters left out. Residual: BP − RP − "
        "E(BP−RP) less MIST's colour at the star's ASPCAP labels [mag]. Shift: its median; scatter: "
        "√(robust σ² − MIST σ²), MIST σ being MIST's colour σ at the labels (ASPCAP's label errors). "
        f"Bold: the rows in the fit's table (`isochrone_grid.COLOUR_SCALE`; {MIN_STARS}+ train stars, below 7,000 K), "
        "at the train stars' median Teff. 'No MIST': stars no isochrone fits at their labels, left out.",
    ]
    for cls in ("giants", "dwarfs"):
        lines += [
            "",
            f"## {cls} (ASPCAP logg {'<' if cls == 'giants' else '≥'} {GIANT_LOGG})",
            "",
            "| ASPCAP Teff [K] | train n | median Teff | shift | robust σ | MIST σ | scatter | val n: shift | test n: shift | no MIST |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for row in result[cls]:
            tr = row["train"]
            if "median" not in tr:
                cells = "– | – | – | – | –"
            else:
                b = "**" if row["in_table"] else ""
                cells = (
                    f"{b}{tr['teff']:.0f}{b} | {b}{tr['median']:+.3f}{b} | {tr['sigma']:.3f} | "
                    f"{tr['mist_sigma']:.3f} | {b}{tr['scatter']:.3f}{b}"
                )
            lines.append(
                f"| {row['teff'][0]:.0f}–{row['teff'][1]:.0f} | {tr['n']} | {cells} | {_cell(row['val'])} | "
                f"{_cell(row['test'])} | {row['no_mist_colour']} |"
            )
    return "\n".join(lines) + "\n"


def scale_entries(rows: list[dict[str, Any]]) -> list[list[float]]:
    """The table's entries of one class: [median Teff, shift, scatter] of the bins in it."""
    return [
        [round(r["train"]["teff"]), round(r["train"]["median"], 3), round(r["train"]["scatter"], 3)]
        for r in rows
        if r["in_table"]
    ]


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
        giants=table(s, r, giants=True),
        dwarfs=table(s, r, giants=False),
    )
    result["scale"] = {cls: scale_entries(result[cls]) for cls in ("giants", "dwarfs")}
    write_outputs(result, args.json, args.markdown, markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
