"""How a model's labels move with the XP orders present: the same stars with every coefficient and with archive-like
relevancy.

    python benchmarks/relevancy_sensitivity.py --model gaia-xp --mixed runs/gaia_xp_mixed9.parquet \\
        --apogee-xp ../shared/data/apogee_xp/apogee_xp_dev.fits.gz --dataset runs/apogee_xp_dev.parquet \\
        --json benchmarks/results/relevancy_sensitivity.json --markdown benchmarks/results/relevancy_sensitivity.md

Archive rows (Gaia DR3) and the simulated skies' stars keep only the first `X_n_relevant_bases` coefficients of
each band (the catalogue sets the others' tokens to NaN); the APOGEE×XP dev file's sampled spectra keep every
coefficient. If a model's mass or age moved with that, its real-star figures would depend on a property of the
input file, not of the star. Two measurements, nothing fitted:

1. Simulated validation giants of a mixed training set (`--mixed`; giants of the paper's domain by their true
   labels): the model on (a) the sky's own spectra, (b) the emulator's spectra of the same stars at their true
   labels and E(B−V) (`realism_report.emulate_real_stars`, the simulator's path, with its residual-PC draw)
   with every coefficient, (c) those with the sky star's own missing tokens removed. Per G bin, the median of
   (b) − (a) and (c) − (a) in mass, ln age and logg: a model that read only the star would give 0 for both
   up to the draw's scatter; (c) ≈ 0 with (b) ≠ 0 says the orders present, not the emulator, move it.
   Also (since session 16) each input's accuracy against the true mass and ln age, per G bin: robust σ and
   median bias, so that a model that reads the orders present as a brightness cue shows what the cue is worth.
2. Real giants of the dev file's test split (paper's domain by their ASPCAP labels; `--apogee-xp`, `--dataset`):
   every coefficient against the relevancy the simulator gives each star's own spectrum at its G
   (`seismic_giants.simulator_relevancy`), the median shift of mass, ln age, Teff, logg and [M/H] per G bin,
   on the catalogue's standard input.
3. Real DR3 archive rows (`tests/data/gaia_xp`, since session 16; always run): each row's own
   `X_n_relevant_bases` against the simulator's for its own spectrum at its G (the median and range over
   `N_DRAWS` noise draws), so the question "are DR3's counts the simulator's?" gets what real evidence the
   project holds.
"""

from __future__ import annotations

import itertools
import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from check_report import check_parser, command_line, paper_giants, run_header, write_outputs  # noqa: E402

logger = logging.getLogger("relevancy_sensitivity")

G_BINS = (0.0, 12.5, 13.5, 15.0, 18.0)
OUTPUTS = ("mass", "ln_age", "teff", "logg", "m_h")
MAX_SIM_STARS = 4000  # validation giants taken (the first, in file order, of the domain)
N_DRAWS = 20  # noise draws of the simulator's relevancy per archive row
ARCHIVE_FILES = (
    "tests/data/gaia_xp/XP_CONTINUOUS_RAW_with_missing_BP.csv",
    "tests/data/gaia_xp/XP_CONTINUOUS-Gaia_DR3_5937083312263887616.csv",
    "tests/data/gaia_xp/XP_CONTINUOUS_RAW_colour_eq_dr3int6.csv",
)


def archive_rows(paths: Sequence[str] = ARCHIVE_FILES, n_draws: int = N_DRAWS) -> list[dict[str, Any]]:
    """Measurement 3: per real archive row with both bands, its G and BP−RP (synthetic, from its own
    coefficients), DR3's (BP, RP) relevant counts, and the simulator's (`seismic_giants.simulator_relevancy`
    on the row's own sampled flux at its G; ecliptic latitude 45°) median, min and max over `n_draws` draws."""
    import seismic_giants as sg

    from xpengine.features.synthetic_photometry import synthetic_gaia_photometry
    from xpengine.io.xp_continuous import read_xp_continuous
    from xpengine.spectra.sampling import coefficients_to_flux

    out = []
    for path in paths:
        table = read_xp_continuous(str(ROOT / path)).to_pylist()
        for r in table:
            if r["bp_coefficients"] is None or r["rp_coefficients"] is None:
                continue
            bp, rp = np.asarray([r["bp_coefficients"]], float), np.asarray([r["rp_coefficients"]], float)
            ph = synthetic_gaia_photometry(bp, rp)
            g, bp_mag, rp_mag = (float(ph.mag[0, ph.column(band)]) for band in ("G", "BP", "RP"))
            flux = coefficients_to_flux(bp, rp)
            sims = np.array(
                [
                    sg.simulator_relevancy(flux, np.array([g]), np.array([45.0]), "v1", seed=s)[0]
                    for s in range(n_draws)
                ]
            )  # (n_draws, 2)
            out.append(
                {
                    "source_id": int(r["source_id"]),
                    "file": path,
                    "g": g,
                    "bp_rp": bp_mag - rp_mag,
                    "dr3": [int(r["bp_n_relevant_bases"]), int(r["rp_n_relevant_bases"])],
                    "simulator_median": np.median(sims, axis=0).tolist(),
                    "simulator_min": sims.min(axis=0).tolist(),
                    "simulator_max": sims.max(axis=0).tolist(),
                }
            )
    return sorted(out, key=lambda x: x["g"])


def xp_columns(vocabulary: Sequence[str]) -> list[int]:
    """Column indices of the XP tokens bp0–54, rp0–54 in `vocabulary` order (the emulator's coefficient order)."""
    names = list(vocabulary)
    return [names.index(f"{b}{i}") for b in ("bp", "rp") for i in range(55)]


def _g_bins(g_mag: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """("all", every star) and each non-empty `G_BINS` bin: (name, (N,) bool selection)."""
    bins = [("all", np.ones(g_mag.size, bool))]
    bins += [(f"G {lo:g}–{hi:g}", (g_mag >= lo) & (g_mag < hi)) for lo, hi in itertools.pairwise(G_BINS)]
    return [(name, sel) for name, sel in bins if sel.any()]


def truth_scores(
    pred: Mapping[str, np.ndarray], truth: Mapping[str, np.ndarray], g_mag: np.ndarray
) -> dict[str, Any]:
    """Robust σ and median bias of pred − truth for mass [M☉] and ln age, over all stars and per `G_BINS` bin."""
    from xpengine.evaluate.metrics import robust_sigma

    out: dict[str, Any] = {}
    for name, sel in _g_bins(g_mag):
        row: dict[str, Any] = {"n": int(sel.sum())}
        for k in ("mass", "ln_age"):
            if k in pred:
                r = (pred[k] - truth[k])[sel]
                r = r[np.isfinite(r)]
                row[k] = {"sigma": robust_sigma(r), "bias": float(np.median(r))} if r.size else None
        out[name] = row
    return out


def median_shift(
    a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray], g_mag: np.ndarray
) -> dict[str, Any]:
    """Median of b − a for every output both have, over all stars and per `G_BINS` bin (with n)."""
    out: dict[str, Any] = {}
    for name, sel in _g_bins(g_mag):
        row: dict[str, Any] = {"n": int(sel.sum())}
        for k in OUTPUTS:
            if k in a and k in b:
                d = (b[k] - a[k])[sel]
                d = d[np.isfinite(d)]
                row[k] = float(np.median(d)) if d.size else None
        out[name] = row
    return out


def _predict(
    predictor: Any, values: np.ndarray, errors: np.ndarray, inputs: list[str], g_mag: np.ndarray
) -> dict:
    request = [t for t in OUTPUTS if t in predictor.learned.outputs and t not in inputs]
    return predictor.predict(values, errors, request, inputs=inputs, g_mag=g_mag)


def simulated(predictor: Any, mixed: str, emulator: str, seed: int = 0) -> dict[str, Any]:
    """Measurement 1 (module docstring) on the simulated validation giants of `mixed`."""
    import emulated_twins as et
    import pyarrow.parquet as pq
    import realism_report as rr

    from xpengine.datasets.schema import read_training_set
    from xpengine.evaluate.baseline import standard_input_names
    from xpengine.evaluate.runner import align_to_vocabulary

    cols = [
        "split",
        "origin",
        "phot_g_mean_mag",
        "truth_teff",
        "truth_logg",
        "truth_fe_h",
        "truth_alpha_m",
        "truth_ebv",
        "truth_mass",
        "truth_age_gyr",
    ]
    side = pq.read_table(mixed, columns=cols).to_pandas()
    sel = (side["origin"] == "synthetic") & (side["split"] == "val")
    sel &= paper_giants(side["truth_teff"], side["truth_logg"]) & np.isfinite(side["truth_ebv"])
    rows = np.flatnonzero(sel.to_numpy())[:MAX_SIM_STARS]
    arrays = read_training_set(mixed)
    pv = predictor.vocabulary
    values, errors = align_to_vocabulary(arrays.values[rows], arrays.errors[rows], arrays.vocabulary, pv)
    s = side.iloc[rows]
    g = s["phot_g_mean_mag"].to_numpy(float)
    group = {
        "teff": s["truth_teff"].to_numpy(float),
        "logg": s["truth_logg"].to_numpy(float),
        "fe_h": s["truth_fe_h"].to_numpy(float),
        "alpha_m": s["truth_alpha_m"].to_numpy(float),
        "ebv": s["truth_ebv"].to_numpy(float),
        "gaiaedr3_phot_g_mean_mag": g,
    }
    xp = xp_columns(pv.names)
    twin = values.copy()
    twin[:, xp] = rr.emulate_real_stars(group, et.load_emulator(emulator), np.random.default_rng(seed))[
        "coef"
    ]
    twin_masked = twin.copy()
    block = twin_masked[:, xp]
    block[np.isnan(values[:, xp])] = np.nan
    twin_masked[:, xp] = block
    inputs = standard_input_names()
    sky = _predict(predictor, values, errors, inputs, g)
    every = _predict(predictor, twin, errors, inputs, g)
    masked = _predict(predictor, twin_masked, errors, inputs, g)
    truth = {"mass": s["truth_mass"].to_numpy(float), "ln_age": np.log(s["truth_age_gyr"].to_numpy(float))}
    return {
        "n": int(rows.size),
        "missing_fraction_bp_rp_0_29": float(
            np.isnan(values[:, [c for j, c in enumerate(xp) if j % 55 < 30]]).mean()
        ),
        "twin_every_order_minus_sky": median_shift(sky, every, g),
        "twin_sky_relevancy_minus_sky": median_shift(sky, masked, g),
        "against_truth": {
            "sky": truth_scores(sky, truth, g),
            "twin_every_order": truth_scores(every, truth, g),
            "twin_sky_relevancy": truth_scores(masked, truth, g),
        },
    }


def real(predictor: Any, fits_path: str, dataset: str, emulator: str) -> dict[str, Any]:
    """Measurement 2 (module docstring) on the dev file's test-split giants."""
    import pyarrow.parquet as pq
    import seismic_giants as sg

    from xpengine.datasets.schema import read_training_set
    from xpengine.evaluate.baseline import standard_input_names
    from xpengine.evaluate.runner import align_to_vocabulary

    arrays = read_training_set(dataset)
    side = pq.read_table(dataset, columns=["split", "phot_g_mean_mag"]).to_pandas()
    vocab = arrays.vocabulary
    teff, logg = (arrays.values[:, vocab.index(t)] for t in ("teff", "logg"))
    rows = np.flatnonzero((side["split"] == "test").to_numpy() & paper_giants(teff, logg))
    flux, ecl = sg.flux_and_ecliptic(fits_path, arrays.source_id[rows])
    g = side["phot_g_mean_mag"].to_numpy(float)[rows]
    n_rel = sg.simulator_relevancy(flux, g, ecl, emulator)
    pv = predictor.vocabulary
    values, errors = align_to_vocabulary(arrays.values[rows], arrays.errors[rows], vocab, pv)
    hidden = sg.masked_arrays(arrays, rows, n_rel)  # the orders beyond each star's count set to NaN
    masked, _ = align_to_vocabulary(hidden.values[rows], arrays.errors[rows], vocab, pv)
    inputs = standard_input_names()
    every = _predict(predictor, values, errors, inputs, g)
    return {
        "n": int(rows.size),
        "simulator_n_relevant_median": {
            "bp": float(np.median(n_rel[:, 0])),
            "rp": float(np.median(n_rel[:, 1])),
        },
        "relevancy_minus_every_order": median_shift(every, _predict(predictor, masked, errors, inputs, g), g),
    }


def _table(title: str, shifts: Mapping[str, Any]) -> list[str]:
    lines = [
        f"### {title}",
        "",
        "| stars | n | " + " | ".join(OUTPUTS) + " |",
        "|---|---|" + "---|" * len(OUTPUTS),
    ]
    for name, row in shifts.items():
        cells = [("–" if row.get(k) is None else f"{row[k]:+.3f}") for k in OUTPUTS]
        lines.append(f"| {name} | {row['n']} | " + " | ".join(cells) + " |")
    return [*lines, ""]


TRUTH_INPUTS = {
    "sky": "sky spectrum",
    "twin_every_order": "emulator, every order",
    "twin_sky_relevancy": "emulator, sky relevancy",
}


def _truth_table(scores: Mapping[str, Any]) -> list[str]:
    lines = [
        "### Against the truth: robust σ / median bias (mass M☉, ln age)",
        "",
        "| stars | n | "
        + " | ".join(f"mass: {v}" for v in TRUTH_INPUTS.values())
        + " | "
        + " | ".join(f"ln age: {v}" for v in TRUTH_INPUTS.values())
        + " |",
        "|---|---|" + "---|" * (2 * len(TRUTH_INPUTS)),
    ]
    for name in scores["sky"]:
        cells = []
        for k in ("mass", "ln_age"):
            for inp in TRUTH_INPUTS:
                v = scores[inp][name].get(k)
                cells.append("–" if v is None else f"{v['sigma']:.3f} / {v['bias']:+.3f}")
        lines.append(f"| {name} | {scores['sky'][name]['n']} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def render_markdown(res: Mapping[str, Any]) -> str:
    lines = [f"# Labels against the XP orders present ({res['model']})", "", command_line(res), ""]
    lines += ["Median shifts, on the catalogue's standard input (no parallax); mass in M☉, Teff in K.", ""]
    sim = res.get("simulated")
    if sim:
        lines += [
            f"## Simulated validation giants ({sim['n']}; {100 * sim['missing_fraction_bp_rp_0_29']:.0f} % of their "
            "BP/RP 0–29 tokens beyond the sky's relevancy)",
            "",
        ]
        lines += _table(
            "Emulator spectrum, every order, minus the sky spectrum", sim["twin_every_order_minus_sky"]
        )
        lines += _table(
            "Emulator spectrum with the sky star's relevancy, minus the sky spectrum",
            sim["twin_sky_relevancy_minus_sky"],
        )
    if sim and sim.get("against_truth"):
        lines += _truth_table(sim["against_truth"])
    arch = res.get("archive_rows")
    if arch:
        lines += [
            f"## Real DR3 archive rows ({len(arch)}, `tests/data/gaia_xp`): DR3's relevant counts against the simulator's",
            "",
            "The simulator's count for the row's own spectrum at its G: median [min, max] over "
            f"{N_DRAWS} noise draws.",
            "",
            "| source_id | G | BP−RP | DR3 BP | simulator BP | DR3 RP | simulator RP |",
            "|---|---|---|---|---|---|---|",
        ]
        for a in arch:
            sim = [
                f"{a['simulator_median'][j]:.0f} [{a['simulator_min'][j]:.0f}, {a['simulator_max'][j]:.0f}]"
                for j in (0, 1)
            ]
            lines.append(
                f"| {a['source_id']} | {a['g']:.2f} | {a['bp_rp']:+.2f} | {a['dr3'][0]} | {sim[0]} | "
                f"{a['dr3'][1]} | {sim[1]} |"
            )
        lines.append("")
    rl = res.get("real")
    if rl:
        nr = rl["simulator_n_relevant_median"]
        lines += [
            f"## Real giants of the dev file's test split ({rl['n']}; simulator relevancy median BP {nr['bp']:.0f}, "
            f"RP {nr['rp']:.0f})",
            "",
        ]
        lines += _table(
            "The simulator's relevancy minus every coefficient", rl["relevancy_minus_every_order"]
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = check_parser(__doc__)
    ap.add_argument("--model", default="gaia-xp")
    ap.add_argument(
        "--mixed", help="a mixed training set with simulated validation stars and truth_* columns"
    )
    ap.add_argument("--apogee-xp", help="the APOGEE×XP FITS (with --dataset)")
    ap.add_argument("--dataset", help="its training-schema Parquet")
    ap.add_argument("--emulator", default="v1", help="the emulator calibration of the model's training skies")
    args = ap.parse_args(argv)
    if bool(args.apogee_xp) != bool(args.dataset):
        ap.error("--apogee-xp and --dataset go together")
    logging.basicConfig(level=logging.WARNING)
    from xpengine.inference.predictor import Predictor

    p = Predictor.load(args.model)
    result = {
        **run_header("benchmarks/relevancy_sensitivity.py", argv),
        "model": args.model,
        "simulated": simulated(p, args.mixed, args.emulator) if args.mixed else None,
        "real": real(p, args.apogee_xp, args.dataset, args.emulator) if args.apogee_xp else None,
        "archive_rows": archive_rows(),
    }
    write_outputs(result, args.json, args.markdown, render_markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
