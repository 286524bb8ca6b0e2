"""Calibrate a model's mass and age σ on a held-out simulated sky, in the catalogue's own conditions.

    python training/calibrate_on_sky.py --catalogue runs/cat_cal --truth runs/sky_mist_cal/truth.parquet \\
        --calibration xpengine/data/models/gaia-xp/calibration.json --output OUT.json

Why: a model's validation split holds the survey-like stars it was trained on (an APOGEE-like selection,
H ≤ 13.5 for gaia-xp), while the catalogue holds every giant to G = 17.65, with the job's own inputs
(parallax, 2MASS where matched). Mass and age σ that are honest on the former need not be on the latter
(gaia-xp v2's validation z-spreads were 0.91–0.95, its catalogue giants' age z-spreads 1.23–1.41). Mass and
age have no real-star truth in this project, so this script fits them on a simulated sky drawn like the
training skies but with its own seed, never used in training or testing, run through the catalogue job.

The catalogue's `mass_error` and `age_error` carry the calibration in CALIBRATION; they are turned back into
the model's raw σ (`LabelCalibration.raw`), and mass, ln_age and the linear `age` are refitted on the sky's
true giants (logg < 3.5, 3500–5500 K, the paper's domain, as `benchmarks/sim_sky_checks.py` scores them):

- `--method binned` (default): a σ map through σ-quantile knots times a factor per bin of the catalogue's
  G (`xpengine.evaluate.binned_calibration`; `--g-edges`), because the model's σ tracks its errors
  differently at different σ and G. A Predictor called without G applies the σ map alone.
- `--method scale_floor` / `scale`: `xpengine.evaluate.calibration.fit_label_calibration` with `--policy`.

Every other label keeps its entry. `--ebv` also fits the catalogue's linear E(B−V) σ (the `ebv` entry) on
every matched star, dwarfs and hot stars included (the catalogue writes E(B−V) for all of them); with
`--no-mass-age` it alone is fitted. Before session 12 no model's E(B−V) σ was calibrated: on the seed-31 sky
gaia-xp v5's raw σ were 5× too small for all stars and 10× for giants. The output's provenance names the catalogue, the truth, the selection and
the z-spreads per G bin (the G bins of `benchmarks/sim_sky_checks.py`) before and after, which the script also
prints, with the mean offset per G bin (true − predicted in ln mass, ln age and age [Gyr]), which the σ
calibration leaves as it is (a diagnostic: the catalogue's population differs from the training prior).

`--all-orders` (session 18, calibration format 5) fits the every-order entries instead: give catalogues made
from the same sky with its relevancy counts nulled (`training/every_order_inputs.py`; with and without
parallaxes, several `--catalogue` are pooled). Each set of entries is fitted on the rows that take it at
inference (the every-order ones on rows read without relevancy counts with both bands, the standard ones on
the others), and each row's calibrated σ and mean are inverted with the entries the catalogue gave it
(its ALL_XP_ORDERS flag).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xpengine.catalog.schema import check_simulated_sky_sigma
from xpengine.features.flags import SourceFlag, read_without_relevancy
from xpengine.model.calibration import Calibration, LabelCalibration

G_BINS = (6.0, 13.0, 15.0, 17.65)  # the bins the report prints (those of benchmarks/sim_sky_checks.py)
# G bins of the fitted factors (--g-edges): one magnitude wide where the catalogue's giants are; the outer
# edges are wide, since a star outside them takes the nearest bin's factor anyway
G_EDGES = (3.0, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0, 17.0, 21.0)
UNITS = {"mass": "Msun", "ln_age": "", "age": "Gyr"}


def load_matched(catalogue: str, truth: str) -> dict[str, np.ndarray]:
    """Catalogue rows joined with the truth on source_id, true giants only: (N,) arrays."""
    import pyarrow.parquet as pq

    from xpengine.catalog.query import query_catalog

    cat = query_catalog(
        catalogue,
        sql="SELECT source_id, phot_g_mean_mag AS g_cat, mass, mass_error, age, age_error, flags FROM catalog",
    )
    cat = cat.to_pandas()
    tru = pq.read_table(truth, columns=["source_id", "mass", "age_gyr", "teff", "logg", "g"]).to_pandas()
    df = cat.merge(tru, on="source_id", how="inner", suffixes=("", "_true"))
    giants = (df.logg < 3.5) & (df.teff > 3500) & (df.teff < 5500)
    # the model's σ is what is fitted: not the rows whose mass and age are the isochrones' (stars the
    # catalogue put outside the model's domain, `mass_age_from_isochrones`)
    model_rows = (df["flags"].to_numpy(np.int64) & int(SourceFlag.MASS_AGE_FROM_ISOCHRONES)) == 0
    df = df[giants & model_rows]
    if len(df) == 0:
        raise SystemExit(f"no true giant of {truth} is in the catalogue {catalogue}")
    out = {c: df[c].to_numpy(np.float64) for c in df.columns if c not in ("source_id", "flags")}
    out["source_id"] = df["source_id"].to_numpy(np.int64)
    flags = df["flags"].to_numpy(np.int64)
    # the entries the catalogue applied to each row, and those it would apply with every-order entries:
    # the rows read without relevancy counts that have both bands (`xpengine.inference.catalogue`)
    out["all_orders"] = (flags & int(SourceFlag.ALL_XP_ORDERS)) != 0
    out["every_order_input"] = read_without_relevancy(flags)
    return out


def fitted_rows(d: dict[str, np.ndarray], all_orders: bool) -> np.ndarray:
    """(N,) bool: the matched rows that take the entries being fitted at inference: those read without
    relevancy counts for the every-order entries, the others for the standard ones."""
    return d["every_order_input"] if all_orders else ~d["every_order_input"]


def _entries(cal: Calibration, rows: np.ndarray, fn: Any) -> np.ndarray:
    """fn(entry, every) (N,) with each catalogue row's entries: the every-order ones (every=True) where
    the catalogue flagged the row ALL_XP_ORDERS (it used them), else the standard ones."""
    base = np.asarray(fn(lambda name: cal.entry(name), False), dtype=np.float64)
    if not rows.any():
        return base
    return np.where(rows, fn(lambda name: cal.entry(name, all_orders=True), True), base)


def pooled(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The matched rows of several catalogues, one after the other (the same keys in each)."""
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def raw_sigmas(d: dict[str, np.ndarray], cal: Calibration) -> dict[str, np.ndarray]:
    """The model's raw σ of mass, ln_age and age·σ_ln_age, from the catalogue's calibrated errors (each
    row inverted with the entry the catalogue used: `d["all_orders"]`)."""
    g = d["g_cat"]
    rows = d.get("all_orders", np.zeros(d["mass"].shape, dtype=bool))
    mass = _entries(cal, rows, lambda e, every: e("mass").raw(d["mass_error"], g))

    def ln_age(e: Any, every: bool) -> np.ndarray:  # as Calibration.derived_sigma chose the entry
        if "age" in cal.labels or (every and "age" in cal.all_orders):
            if e("age").relative:  # age_error = age · age-entry(raw σ_ln_age)
                return e("age").raw(d["age_error"] / d["age"], g)
            return e("age").raw(d["age_error"], g) / d["age"]  # age-entry(age · raw σ_ln_age)
        return e("ln_age").raw(d["age_error"] / d["age"], g)  # age_error = age · ln_age-entry(raw σ)

    ln = _entries(cal, rows, ln_age)
    return {"mass": mass, "ln_age": ln, "age": d["age"] * ln}


def load_matched_ebv(catalogue: str, truth: str) -> dict[str, np.ndarray]:
    """Catalogue E(B−V) joined with the truth on source_id, every star with both (E(B−V) is written for
    dwarfs and hot stars too, unlike mass and age): (N,) arrays g_cat, ebv, ebv_error, ebv_true."""
    import pyarrow.parquet as pq

    from xpengine.catalog.query import query_catalog

    cat = query_catalog(
        catalogue, sql="SELECT source_id, phot_g_mean_mag AS g_cat, ebv, ebv_error FROM catalog"
    ).to_pandas()
    tru = pq.read_table(truth, columns=["source_id", "ebv"]).to_pandas()
    df = cat.merge(tru, on="source_id", how="inner", suffixes=("", "_true"))
    df = df[np.isfinite(df.ebv) & np.isfinite(df.ebv_error) & np.isfinite(df.ebv_true)]
    if len(df) == 0:
        raise SystemExit(f"no star of {truth} has an E(B−V) in the catalogue {catalogue}")
    return {c: df[c].to_numpy(np.float64) for c in df.columns if c != "source_id"}


def calibrate_ebv(
    d: dict[str, np.ndarray], base: Calibration, *, g_edges: tuple[float, ...] = G_EDGES
) -> tuple[LabelCalibration, dict[str, Any]]:
    """The linear `ebv` entry (σ map through σ-quantile knots times a factor per G bin, in mag), fitted on
    every matched star D: the catalogue's E(B−V) σ is ebv-entry(E(B−V) · raw σ_ln E(B−V)), and without an
    entry it was the raw one. Its report: z-spreads per G bin before and after."""
    from xpengine.evaluate.binned_calibration import fit_binned_calibration

    g = d["g_cat"]
    old = base.labels.get("ebv")
    raw = d["ebv_error"] if old is None else old.raw(d["ebv_error"], g)
    lc = fit_binned_calibration(d["ebv"], d["ebv_true"], raw, g, g_edges=g_edges, unit="mag")
    return lc, {
        "fit": dict(lc.__dict__),
        "n_stars": int(d["ebv"].size),
        "z_by_g_raw": z_by_g(d["ebv"], d["ebv_true"], raw, g),
        "z_by_g_cal": z_by_g(d["ebv"], d["ebv_true"], lc.apply(raw, g), g),
        "z_by_g_cal_without_g": z_by_g(d["ebv"], d["ebv_true"], lc.apply(raw), g),
        "offset_by_g": offset_by_g(d["ebv"], d["ebv_true"], g, log=False),
    }


def z_by_g(pred: np.ndarray, true: np.ndarray, sigma: np.ndarray, g: np.ndarray) -> list[dict[str, Any]]:
    """Robust z-spread per bin of G_BINS (the report's bins)."""
    from xpengine.evaluate.binned_calibration import z_spread_by_bin

    return z_spread_by_bin(pred, true, sigma, g, G_BINS)


def offset_by_g(pred: np.ndarray, true: np.ndarray, g: np.ndarray, *, log: bool) -> list[dict[str, Any]]:
    """Mean of true − pred (of their logarithms with log) and its standard error per bin of G_BINS."""
    d = np.log(true / pred) if log else true - pred
    out = []
    for lo, hi in itertools.pairwise(G_BINS):
        s = (g >= lo) & (g < hi) & np.isfinite(d)
        n = int(s.sum())
        mean = float(np.mean(d[s])) if n else float("nan")
        err = float(np.std(d[s]) / np.sqrt(n)) if n > 1 else float("nan")
        out.append({"g_lo": lo, "g_hi": hi, "n": n, "mean": mean, "stderr": err})
    return out


MIN_SHIFT_STARS = 50  # a G bin with fewer giants gets no shift


def g_bin_medians(d: np.ndarray, g: np.ndarray, g_edges: tuple[float, ...]) -> tuple[float, ...]:
    """Median of d (N,) per bin of g_edges (G outside takes the nearest bin), 0 where a bin has fewer than
    MIN_SHIFT_STARS finite values."""
    from xpengine.model.calibration import g_bin_index

    k = g_bin_index(g, g_edges)  # as the Predictor bins G when it applies the shifts
    out = []
    for b in range(len(g_edges) - 1):
        v = d[(k == b) & np.isfinite(d) & np.isfinite(g)]
        out.append(float(np.median(v)) if v.size >= MIN_SHIFT_STARS else 0.0)
    return tuple(out)


def calibrate(
    d: dict[str, np.ndarray],
    base: Calibration,
    *,
    method: str = "binned",
    policy: str = "auto",
    g_edges: tuple[float, ...] = G_EDGES,
    fit_shifts: bool = False,
    all_orders: bool = False,
    age_relative: bool = False,
    only: tuple[str, ...] = ("mass", "ln_age", "age"),
) -> tuple[Calibration, dict[str, Any]]:
    """BASE with mass, ln_age and age refitted on the matched giants D; plus a report per label.
    fit_shifts: also a median shift of mass (in ln) and ln_age per G bin, fitted first; the σ are then
    fitted on the shifted means (the linear age follows the shifted ln_age). all_orders: D's inputs kept
    every XP order; the fit goes to BASE's every-order entries (`Calibration.all_orders`, format 5).
    age_relative: the linear age's entry maps the raw σ_ln_age to σ_age / age (format 7; binned only):
    fitted on (age − true age) / age, so its bins separate old giants of small σ_ln from young ones.
    only: the labels refitted; the others keep BASE's entries, their shifts included, and a refitted label
    is fitted on their means as the catalogue gave them (`age` alone: on the catalogue's own ages)."""
    from xpengine.evaluate.binned_calibration import fit_binned_calibration
    from xpengine.evaluate.calibration import fit_label_calibration

    raw = raw_sigmas(d, base)
    g = d["g_cat"]
    rows = d.get("all_orders", np.zeros(g.shape, dtype=bool))
    # the model's own means: any shift of BASE undone, each row's as the catalogue applied it
    mass = _entries(base, rows, lambda e, every: e("mass").shift(d["mass"], g, inverse=True))
    ln_age = _entries(base, rows, lambda e, every: e("ln_age").shift(np.log(d["age"]), g, inverse=True))
    # fitted on the rows that take the entries being fitted: read without relevancy counts (every order)
    # for all_orders, the others for the standard entries
    use = fitted_rows(d, all_orders)
    if not use.any():
        kind = "without relevancy counts (NO_RELEVANCY)" if all_orders else "with relevancy counts"
        raise SystemExit(f"no matched giant was read {kind}: nothing to fit these entries on")
    d = {k: v[use] for k, v in d.items()}
    raw = {k: v[use] for k, v in raw.items()}
    g, mass, ln_age = g[use], mass[use], ln_age[use]
    shifts: dict[str, tuple[float, ...]] = {}
    if fit_shifts:
        if not {"mass", "ln_age"} <= set(only):
            raise ValueError("--fit-shifts refits mass and ln_age: not with --only leaving them out")
        if method != "binned":
            raise ValueError("--fit-shifts needs --method binned (the shifts share its G bins)")
        shifts["mass"] = g_bin_medians(np.log(d["mass_true"] / mass), g, g_edges)
        shifts["ln_age"] = g_bin_medians(np.log(d["age_gyr"]) - ln_age, g, g_edges)
        ones = (1.0,) * (len(g_edges) - 1)
        for name, kind in (("mass", "log"), ("ln_age", "add")):
            lc = LabelCalibration(
                applied=True, g_edges=g_edges, g_scales=ones, g_shifts=shifts[name], shift_kind=kind
            )
            if name == "mass":
                mass = lc.shift(mass, g)
            else:
                ln_age = lc.shift(ln_age, g)
    if "mass" not in only:  # kept: its means as the catalogue applied BASE's shifts
        mass = d["mass"]
    if "ln_age" not in only:
        ln_age = np.log(d["age"])
    series = {
        "mass": (mass, d["mass_true"]),
        "ln_age": (ln_age, np.log(d["age_gyr"])),
        "age": (np.exp(ln_age), d["age_gyr"]),
    }
    if age_relative and method != "binned":
        raise ValueError("--age-relative needs --method binned")
    labels = dict(base.all_orders if all_orders else base.labels)
    report: dict[str, Any] = {}
    for name, (pred, true) in series.items():
        if name not in only:
            continue
        if method == "binned" and name == "age" and age_relative:  # z = ((age − true) / age) / (σ / age)
            ones, rel = np.ones_like(pred), true / pred
            lc = fit_binned_calibration(ones, rel, raw["ln_age"], d["g_cat"], g_edges=g_edges, unit="")
            lc = replace(lc, relative=True)
        elif method == "binned":
            lc = fit_binned_calibration(pred, true, raw[name], d["g_cat"], g_edges=g_edges, unit=UNITS[name])
        else:
            lc = fit_label_calibration(pred, true, raw[name], method=method, policy=policy, unit=UNITS[name])
        if name in shifts:
            lc = replace(lc, g_shifts=shifts[name], shift_kind="log" if name == "mass" else "add")
        labels[name] = lc

        def cal(gg, lc=lc, name=name, pred=pred) -> np.ndarray:  # the calibrated σ, in the label's units
            return pred * lc.apply(raw["ln_age"], gg) if lc.relative else lc.apply(raw[name], gg)

        report[name] = {
            "fit": dict(lc.__dict__),
            "z_by_g_raw": z_by_g(pred, true, raw[name], d["g_cat"]),
            "z_by_g_cal": z_by_g(pred, true, cal(d["g_cat"]), d["g_cat"]),
            "z_by_g_cal_without_g": z_by_g(pred, true, cal(None), d["g_cat"]),
            "offset_by_g": offset_by_g(pred, true, d["g_cat"], log=name == "mass"),
        }
    # every other part of BASE (a sim-to-real term: a map of the calibrated σ, to be refitted on the new σ
    # with training/fit_sim_to_real.py, as the printed note says) is carried over
    if all_orders:
        return replace(
            base, all_orders=labels, all_orders_provenance=dict(base.all_orders_provenance)
        ), report
    return replace(base, labels=labels, provenance=dict(base.provenance)), report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--catalogue",
        required=True,
        nargs="+",
        help="catalogue directory the job wrote on the calibration sky; several (e.g. the same sky with and "
        "without parallaxes) are fitted together, their matched giants pooled",
    )
    p.add_argument("--truth", required=True, help="the calibration sky's truth.parquet")
    p.add_argument("--calibration", required=True, help="the calibration.json the catalogue was made with")
    p.add_argument("--output", required=True, help="calibration.json to write (may be the input)")
    p.add_argument("--method", choices=("binned", "scale", "scale_floor"), default="binned")
    p.add_argument(
        "--policy", choices=("auto", "always", "never"), default="auto", help="scale/scale_floor only"
    )
    p.add_argument(
        "--g-edges", type=float, nargs="+", default=list(G_EDGES), help="G bins of the factors (binned)"
    )
    p.add_argument(
        "--fit-shifts",
        action="store_true",
        help="also fit a median mean shift of mass and ln_age per G bin (calibration format 3)",
    )
    p.add_argument(
        "--ebv",
        action="store_true",
        help="also fit the linear E(B−V) σ (the `ebv` entry: σ map times G factors) on every matched star",
    )
    p.add_argument(
        "--no-mass-age",
        action="store_true",
        help="keep the base's mass, ln_age and age entries (with --ebv: fit E(B−V) alone)",
    )
    p.add_argument(
        "--all-orders",
        action="store_true",
        help="the catalogue's inputs kept every XP order (relevancy counts nulled): fit the every-order "
        "entries of mass, ln_age and age (calibration format 5; rows flagged ALL_XP_ORDERS use them)",
    )
    p.add_argument(
        "--age-relative",
        action="store_true",
        help="fit the linear age's entry as relative: its knots map the raw σ_ln_age to σ_age / age "
        "(calibration format 7), instead of age · raw σ_ln_age to σ_age in Gyr",
    )
    p.add_argument(
        "--only",
        nargs="+",
        choices=("mass", "ln_age", "age"),
        default=["mass", "ln_age", "age"],
        help="refit these labels only; the others keep their entries and shifts, and a refitted one is fitted "
        "on their means as the catalogue gave them (e.g. --only age --age-relative)",
    )
    args = p.parse_args(argv)
    if args.age_relative and "age" not in args.only:
        p.error("--age-relative fits the age entry: give it in --only")
    if args.no_mass_age and not args.ebv:
        p.error("--no-mass-age leaves nothing to fit without --ebv")
    if args.all_orders and (args.ebv or args.no_mass_age):
        p.error(
            "--all-orders fits the every-order mass and age entries only (not with --ebv / --no-mass-age)"
        )
    try:  # the σ to invert are those calibrated on simulated stars
        for catalogue in args.catalogue:
            check_simulated_sky_sigma(catalogue)
    except ValueError as exc:
        raise SystemExit(str(exc)) from exc
    base = Calibration.load(args.calibration)
    if args.no_mass_age:
        out, report = replace(base, labels=dict(base.labels), provenance=dict(base.provenance)), {}
    else:
        d = pooled([load_matched(c, args.truth) for c in args.catalogue])
        out, report = calibrate(
            d,
            base,
            method=args.method,
            policy=args.policy,
            g_edges=tuple(args.g_edges),
            fit_shifts=args.fit_shifts,
            all_orders=args.all_orders,
            age_relative=args.age_relative,
            only=tuple(args.only),
        )
    if args.ebv:
        out.labels["ebv"], ebv_report = calibrate_ebv(
            pooled([load_matched_ebv(c, args.truth) for c in args.catalogue]),
            base,
            g_edges=tuple(args.g_edges),
        )
        out.provenance["sky_calibration_ebv"] = {
            "catalogue": args.catalogue if len(args.catalogue) > 1 else args.catalogue[0],
            "truth": args.truth,
            "selection": "every star with a catalogue and a true E(B−V)",
            "n_stars": ebv_report["n_stars"],
            "g_edges": list(args.g_edges),
            "z_by_g": {
                "raw": ebv_report["z_by_g_raw"],
                "cal": ebv_report["z_by_g_cal"],
                "cal_without_g": ebv_report["z_by_g_cal_without_g"],
            },
            "offset_by_g": ebv_report["offset_by_g"],
        }
        report["ebv"] = ebv_report
    if args.no_mass_age:
        out.save(args.output, overwrite=True)
        _print_report(report)
        return 0
    fitted = fitted_rows(d, args.all_orders)
    record = {
        "labels": sorted(report),
        "catalogue": args.catalogue if len(args.catalogue) > 1 else args.catalogue[0],
        "truth": args.truth,
        "selection": "true giants: logg < 3.5, 3500 K < Teff < 5500 K",
        "n_giants": int(np.unique(d["source_id"][fitted]).size),
        "n_rows": int(fitted.sum()),  # a star in several pooled catalogues is a row in each
        "method": args.method,
        "fit_shifts": args.fit_shifts,
        "age_relative": args.age_relative,
        "only": list(args.only),
        **({"g_edges": list(args.g_edges)} if args.method == "binned" else {"policy": args.policy}),
        "z_by_g": {
            k: {"raw": v["z_by_g_raw"], "cal": v["z_by_g_cal"], "cal_without_g": v["z_by_g_cal_without_g"]}
            for k, v in report.items()
        },
        "offset_by_g": {k: v["offset_by_g"] for k, v in report.items()},
    }
    if args.all_orders:
        n_flagged = int(d["all_orders"].sum())
        record["inputs"] = "every XP order kept (relevancy counts nulled)"
        record["n_rows_flagged_all_xp_orders_before"] = n_flagged
        out.all_orders_provenance["sky_calibration"] = record
    elif set(args.only) == {"mass", "ln_age", "age"}:
        out.provenance["sky_calibration"] = record
    else:  # the other labels' record stays
        out.provenance["sky_calibration_" + "_".join(args.only)] = record
    out.save(args.output, overwrite=True)
    if out.sim_to_real:
        print(
            f"note: the sim-to-real term of {args.calibration} is carried over unchanged; it is a map of the "
            "calibrated σ, so refit it on the new calibration: python training/fit_sim_to_real.py ..."
        )
    _print_report(report)
    print(json.dumps({"output": args.output, "n_rows": int(fitted.sum())}))
    return 0


def _print_report(report: dict[str, Any]) -> None:
    """One line per fitted label: z raw → calibrated overall and per G bin, and the mean offset per G bin."""
    kinds = {
        "mass": "ln(true/pred)",
        "ln_age": "true − pred",
        "age": "true − pred [Gyr]",
        "ebv": "true − pred [mag]",
    }
    for name, r in report.items():
        f = r["fit"]
        zs = " / ".join(
            f"{a['z_spread']:.2f}→{b['z_spread']:.2f} ({c['z_spread']:.2f} without G)"
            for a, b, c in zip(r["z_by_g_raw"], r["z_by_g_cal"], r["z_by_g_cal_without_g"], strict=True)
        )
        off = " / ".join(f"{b['mean']:+.3f}±{b['stderr']:.3f}" for b in r["offset_by_g"])
        print(
            f"{name}: {f['method']} applied={f['applied']} z raw {f['z_sigma_val_raw']:.3f} → "
            f"{f['z_sigma_val_cal']:.3f}; per G bin {zs}; mean {kinds[name]} per G bin {off}"
        )


if __name__ == "__main__":
    raise SystemExit(main())
