"""Real red giants of asteroseismic mass (APOKASC-3) with real XP, run through several models side by side.

    python benchmarks/seismic_giants.py --models gaia-xp runs/gaia-xp-v4 apogee-xp \\
        --apogee-xp ../shared/data/apogee_xp/apogee_xp_dev.fits.gz --dataset runs/apogee_xp_dev.parquet \\
        --json benchmarks/results/seismic_giants.json --markdown benchmarks/results/seismic_giants.md

A check, never a training target or a yardstick for choosing a model: no model here was trained on a real
star's mass, and these masses were first looked at in session 15, after every bundled model was chosen.

The stars: APOKASC-3 (Pinsonneault et al. 2025, ApJS 276, 69), Table 4, Kepler red giants whose masses come
from their oscillations (ν_max, Δν with the paper's corrections; 3–5 % each), as selected and
redistributed in github.com/kailicao/mesa_apokasc (MIT licence; `apokasc3/Table4_Apoor_RGB+RC_Gold.csv`,
commit 97b3910): the Gold sample, α-poor, evolutionary state RGB or RC from the oscillations, 0.9–1.8 M☉,
−0.45 < [Fe/H] < +0.45, masses as published (that commit removed the repository's own F_numax rescaling).
The table carries KIC numbers only, no positions. A dev-file star is the APOKASC-3 star whose ASPCAP DR17 Teff
and [α/M] it carries to the table's four decimals (|ΔTeff| < 0.002 K, |Δ[α/M]| ≤ 1e-4: both catalogues copy the
same ASPCAP values), inside the Kepler field (from the 2MASS position in the APOGEE_ID), one to one
(`match_apokasc`; the matched stars, with the APOKASC-3 values the match used, are in
`benchmarks/data/apokasc3_dev_giants.csv`, rebuilt with `--apokasc-table`). 46 stars match. The sample is
cut at 0.9 and 1.8 M☉, so a prediction that regresses to the mean shows as a positive bias at the low end
and a negative one at the high end.

What is scored (every model on the catalogue's standard input, BP/RP 0–29 and the colours, with the star's G,
as in `real_star_checks.py`: the dev file has no parallaxes, so this is the catalogue's mass for a star
without one):
- mass against the seismic mass: median bias, robust σ (1.4826 × MAD), rms, Spearman, and the z-spread with
  the predicted and seismic σ in quadrature; by evolutionary state and in three bins of seismic mass;
- logg against the seismic logg (ASPCAP's giant logg is calibrated to it; the training-split stars' ASPCAP logg
  was a training target, so logg is also given for the other splits alone);
- mass again with a parallax's information, for models that read the pseudo-luminosity (the catalogue's
  context for a star with a parallax): no parallaxes here, so the luminosity is the seismic one, L = R²
  (Teff/5772 K)⁴, turned into the distance at which the star has its G (`seismic_distance_kpc`; MIST/C3K
  BC_G at A_V = 3.1 AK_TARG/0.352) and into g_fakemag as `real_star_checks.literature_tokens` does for a
  cluster distance (σ_ϖ = 5 % of ϖ, so the catalogue's σ_ϖ ≤ 0.1 mas cut leaves out stars nearer than
  500 pc). R comes from the oscillations, but mass does not follow from it without g, which the model reads
  from XP; it stands for a Gaia parallax of a few per cent, which these stars (G 9.5–14, 0.4–3.8 kpc) have.
  Stars without AK_TARG are left out of it;
- age against the MIST v2.5 age at the seismic mass (`seismic_age_gyr`: the age at which a star of that
  mass and metallicity is on the upper RGB, or for the clump, with MIST's RGB mass loss, in core-He
  burning), the isochrones the simulated skies use; its σ from the seismic mass's; in both contexts;
- everything again with archive-like relevancy (`with_relevancy`): the dev file's sampled spectra keep every
  coefficient, archive rows and the training skies' stars only the first `X_n_relevant_bases`; here each
  star's orders beyond the count the simulator gives its own spectrum at its G (`simulator_relevancy`) are
  hidden, as the catalogue hides a DR3 row's. gaia-xp's mass and age move with it, its logg does not
  (`benchmarks/relevancy_sensitivity.py` measures why);
- for models that learned mass (`--emulator`): the same star's emulated twin (`emulated_twins.twin_predictions`:
  the emulator's XP at the star's ASPCAP labels, every order kept, as the real spectrum). Real and twin
  compare like with like; a twin does not read as a sky star of its labels would (the sky's stars lack their
  irrelevant orders), so a shared offset is not the simulated population's prior.
"""

from __future__ import annotations

import itertools
import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from check_report import check_parser, command_line, run_header, write_outputs  # noqa: E402
from real_star_checks import AK_PER_EBV  # noqa: E402

logger = logging.getLogger("seismic_giants")

MATCHED = Path(__file__).resolve().parent / "data" / "apokasc3_dev_giants.csv"
#: the Kepler field's box on the sky [deg] (the CCD array spans RA 280–301°, Dec 36.5–52.5°)
KEPLER_RA = (279.0, 302.0)
KEPLER_DEC = (36.0, 53.0)
TEFF_MATCH_K = 0.002  # float32 rounding of the same ASPCAP Teff near 5000 K is 0.0005 K
ALPHA_MATCH = 1.01e-4  # APOKASC-3 gives [α/Fe] to four decimals
MASS_BINS = (0.9, 1.15, 1.4, 1.8)
N_BOOTSTRAP = 2000
#: the columns of the matched file: the dev star, then APOKASC-3's values (the last two were used to match)
MATCH_COLUMNS = [
    "source_id",
    "apogee_id",
    "kic",
    "evol_state",
    "mass",
    "mass_error",
    "radius",
    "radius_error",
    "logg_seis",
    "logg_seis_error",
    "fe_h_apokasc",
    "teff_apokasc",
    "alpha_fe_apokasc",
]


def match_apokasc(table: pd.DataFrame, dev: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """Dev-file stars that are APOKASC-3 stars (module docstring): `table` as in the redistributed CSV
    (KIC, Evol_State, Mass, S_Mass, Radius, S_Radius, Logg_Seis, S_Logg_Seis, Teff, [Fe/H], [Alp/Fe]); `dev`
    with apogee_id, source_id, teff, alpha_m, ra, dec (N,). One row per one-to-one match, `MATCH_COLUMNS`,
    sorted by KIC."""
    t_teff = table["Teff"].to_numpy(float)
    t_alpha = table["[Alp/Fe]"].to_numpy(float)
    with np.errstate(invalid="ignore"):
        field = (
            (dev["ra"] > KEPLER_RA[0])
            & (dev["ra"] < KEPLER_RA[1])
            & (dev["dec"] > KEPLER_DEC[0])
            & (dev["dec"] < KEPLER_DEC[1])
        )
    pairs: list[tuple[int, int]] = []
    for j in np.flatnonzero(field):
        hit = np.flatnonzero(
            (np.abs(t_teff - dev["teff"][j]) < TEFF_MATCH_K)
            & (np.abs(t_alpha - dev["alpha_m"][j]) < ALPHA_MATCH)
        )
        if hit.size == 1:
            pairs.append((int(j), int(hit[0])))
    # a source listed twice in the dev file (two APOGEE ids, identical rows) is one star: keep its first row
    sid = np.asarray(dev["source_id"], dtype=np.int64)
    first: dict[tuple[int, int], tuple[int, int]] = {}
    for j, i in pairs:
        first.setdefault((int(sid[j]), i), (j, i))
    pairs = list(first.values())
    dev_rows = np.array([p[0] for p in pairs], dtype=np.int64)
    tab_rows = np.array([p[1] for p in pairs], dtype=np.int64)
    # one to one: a table star claimed by two different sources is ambiguous and dropped
    once = np.isin(tab_rows, np.flatnonzero(np.bincount(tab_rows, minlength=len(table)) == 1))
    dev_rows, tab_rows = dev_rows[once], tab_rows[once]
    t = table.iloc[tab_rows]
    out = pd.DataFrame(
        {
            "source_id": np.asarray(dev["source_id"])[dev_rows].astype(np.int64),
            "apogee_id": np.asarray(dev["apogee_id"])[dev_rows].astype(str),
            "kic": t["KIC"].to_numpy(np.int64),
            "evol_state": t["Evol_State"].to_numpy(str),
            "mass": t["Mass"].to_numpy(float),
            "mass_error": t["S_Mass"].to_numpy(float),
            "radius": t["Radius"].to_numpy(float),
            "radius_error": t["S_Radius"].to_numpy(float),
            "logg_seis": t["Logg_Seis"].to_numpy(float),
            "logg_seis_error": t["S_Logg_Seis"].to_numpy(float),
            "fe_h_apokasc": t["[Fe/H]"].to_numpy(float),
            "teff_apokasc": t_teff[tab_rows],
            "alpha_fe_apokasc": t_alpha[tab_rows],
        }
    )
    return out.sort_values("kic", kind="stable").reset_index(drop=True)


def dev_stars(fits_path: str) -> dict[str, np.ndarray]:
    """The dev file's columns `match_apokasc` reads, with (ra, dec) from the APOGEE_IDs."""
    from astropy.io import fits
    from real_star_checks import radec_from_apogee_id

    d = fits.getdata(fits_path, 1)
    ids = np.char.strip(np.asarray(d["apogee_id"]).astype(str))
    ra, dec = radec_from_apogee_id(ids)
    return {
        "apogee_id": ids,
        "source_id": np.asarray(d["gaiaedr3_source_id"], dtype=np.int64),
        "teff": np.asarray(d["teff"], dtype=np.float64),
        "alpha_m": np.asarray(d["alpha_m"], dtype=np.float64),
        "ra": ra,
        "dec": dec,
    }


def read_matched(path: str | Path = MATCHED) -> pd.DataFrame:
    """The matched stars (`MATCH_COLUMNS`); a clear error naming the file and column if one is missing."""
    df = pd.read_csv(path, comment="#")
    missing = [c for c in MATCH_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}")
    return df


def _robust_sigma(x: np.ndarray) -> float:
    return float(1.4826 * np.median(np.abs(x - np.median(x))))


def score(
    pred: np.ndarray, sigma: np.ndarray | None, truth: np.ndarray, truth_sigma: np.ndarray
) -> dict[str, Any]:
    """Predicted against true values of one label over the stars where both are finite: n, median bias,
    robust σ, rms, Spearman rank correlation and, where σ are given, the robust spread of z = Δ / √(σ² +
    σ_truth²) (1 = honest σ)."""
    ok = np.isfinite(pred) & np.isfinite(truth)
    if sigma is not None:
        ok &= np.isfinite(sigma)
    if ok.sum() < 2:
        return {"n": int(ok.sum())}
    d = pred[ok] - truth[ok]
    out: dict[str, Any] = {
        "n": int(ok.sum()),
        "bias": float(np.median(d)),
        "robust_sigma": _robust_sigma(d),
        "rms": float(np.sqrt(np.mean(d**2))),
        "spearman": float(pd.Series(pred[ok]).corr(pd.Series(truth[ok]), method="spearman")),
        "median_pred": float(np.median(pred[ok])),
        "median_truth": float(np.median(truth[ok])),
    }
    if sigma is not None:
        out["z_spread"] = _robust_sigma(d / np.hypot(sigma[ok], truth_sigma[ok]))
        out["median_sigma"] = float(np.median(sigma[ok]))
    # 95 % bootstrap intervals over the stars (fixed seed): how much a sample this small pins down
    rng = np.random.default_rng(0)
    draws = rng.integers(0, d.size, size=(N_BOOTSTRAP, d.size))
    boot = d[draws]
    out["bias_ci95"] = [float(v) for v in np.percentile(np.median(boot, axis=1), [2.5, 97.5])]
    med = np.median(boot, axis=1, keepdims=True)
    spread = 1.4826 * np.median(np.abs(boot - med), axis=1)
    out["robust_sigma_ci95"] = [float(v) for v in np.percentile(spread, [2.5, 97.5])]
    return out


def mass_scores(pred: np.ndarray, sigma: np.ndarray | None, stars: pd.DataFrame) -> dict[str, Any]:
    """`score` of the mass over all stars, per evolutionary state and per bin of seismic mass."""
    truth, ts = stars["mass"].to_numpy(float), stars["mass_error"].to_numpy(float)
    groups: dict[str, np.ndarray] = {"all": np.ones(len(stars), bool)}
    for state in ("RGB", "RC"):
        groups[state] = stars["evol_state"].to_numpy(str) == state
    for lo, hi in itertools.pairwise(MASS_BINS):
        groups[f"{lo:.2f}–{hi:.2f} M☉"] = (truth >= lo) & (truth < hi)
    return {
        name: score(pred[rows], None if sigma is None else sigma[rows], truth[rows], ts[rows])
        for name, rows in groups.items()
        if rows.any()
    }


def seismic_distance_kpc(stars: pd.DataFrame, g_mag: np.ndarray, ebv: np.ndarray) -> np.ndarray:
    """(N,) the distance [kpc] at which each star, at its seismic luminosity L = R² (Teff/5772 K)⁴ (APOKASC-3
    radius and Teff), has its observed G: μ = G − M_bol + BC_G(Teff, logg_seis, [Fe/H], A_V = 3.1 E(B−V)) with
    the MIST/C3K table the simulated skies use (M_bol☉ = 4.74). It stands for a parallax: its luminosity is
    as good as a Gaia parallax of a few per cent, so mass then comes from it and the logg read from XP."""
    from xpengine.simulate.isochrones import bolometric_corrections

    teff = stars["teff_apokasc"].to_numpy(float)
    lum = stars["radius"].to_numpy(float) ** 2 * (teff / 5772.0) ** 4
    bc = bolometric_corrections(
        teff,
        stars["logg_seis"].to_numpy(float),
        stars["fe_h_apokasc"].to_numpy(float),
        3.1 * np.clip(ebv, 0, None),
    )["g"]
    mu = g_mag - (4.74 - 2.5 * np.log10(lum)) + bc
    return 10.0 ** (mu / 5.0 + 1.0) / 1000.0


#: EEPs at which a star's age is read: upper RGB (MIST: TAMS 454, RGB tip 605) and core-He burning (631–707)
AGE_EEP = {"RGB": 580.0, "RC": 656.0}


def seismic_age_gyr(mass: np.ndarray, m_h: np.ndarray, state: np.ndarray) -> np.ndarray:
    """(N,) the MIST v2.5 age [Gyr] of a giant of current mass [M☉], isochrone metallicity [M/H] and
    evolutionary state (RGB or RC): the age at which a star of that initial mass reaches `AGE_EEP`; for RC
    stars the initial mass whose current mass there is `mass` (MIST's RGB mass loss, found by fixed-point
    iteration). The same isochrones as the simulated skies, so the model and this age share their physics;
    NaN outside the grid (older than 20 Gyr)."""
    from xpengine.simulate.isochrones import interpolate_eep, log_age_at_eep

    mass, m_h = np.asarray(mass, float), np.asarray(m_h, float)
    eep = np.where(np.asarray(state) == "RC", AGE_EEP["RC"], AGE_EEP["RGB"])
    initial = mass.copy()
    for _ in range(4):  # RGB stars: the current mass is the initial one (MIST loses < 0.01 M☉ below the tip)
        log_age = log_age_at_eep(initial, eep, m_h)
        current = interpolate_eep(eep, np.nan_to_num(log_age, nan=9.0), m_h)["mass"]
        initial = np.where(eep == AGE_EEP["RC"], initial + (mass - current), mass)
    return 10.0 ** (log_age_at_eep(initial, eep, m_h) - 9.0)


def age_truth(stars: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(seismic age [Gyr], σ of its ln) of every star: `seismic_age_gyr` at the APOKASC-3 mass, [Fe/H] and
    [α/Fe] (Salaris total metallicity), σ from the mass ± its error."""
    from xpengine.simulate.isochrones import total_metallicity

    m_h = total_metallicity(stars["fe_h_apokasc"].to_numpy(float), stars["alpha_fe_apokasc"].to_numpy(float))
    state = stars["evol_state"].to_numpy(str)
    mass, err = stars["mass"].to_numpy(float), stars["mass_error"].to_numpy(float)
    age = seismic_age_gyr(mass, m_h, state)
    lo, hi = seismic_age_gyr(mass + err, m_h, state), seismic_age_gyr(mass - err, m_h, state)
    return age, 0.5 * (np.log(hi) - np.log(lo))


def _age_scores(
    age: np.ndarray, age_error: np.ndarray | None, truth: tuple[np.ndarray, np.ndarray]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """`score` of the predicted age (N,) [Gyr] against `truth` (`age_truth`): in ln age (σ relative) and in Gyr."""
    t, ln_sigma = truth
    sigma = None if age_error is None else age_error / age
    return score(np.log(age), sigma, np.log(t), ln_sigma), score(age, None, t, t * ln_sigma)


def model_results(
    predictor: Any,
    arrays: Any,
    rows: np.ndarray,
    stars: pd.DataFrame,
    g_mag: np.ndarray,
    split: np.ndarray,
    ebv: np.ndarray,
    ages: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Mass and logg of one model for the matched stars (`rows` of the TrainingArrays, in `stars`' order; g_mag
    and ebv (N,) in the same order), and mass with the pseudo-luminosity of `seismic_distance_kpc` for a model
    that reads it (the catalogue's context with a parallax, `real_star_checks.distance_contexts`). ages: the
    stars' `age_truth`, computed here when not given."""
    from real_star_checks import _predict, distance_contexts, literature_tokens

    from xpengine.evaluate.scenarios import scenario_groups

    [(_, inputs)] = scenario_groups(
        "standard",
        predictor.vocabulary,
        len(rows),
        context_length=predictor.checkpoint.model_config.context_length,
    )
    mask = np.zeros(len(arrays.source_id), bool)
    mask[rows] = True
    order = np.argsort(np.argsort(rows))  # _predict returns rows in file order; back to `stars`' order
    back = np.argsort(order)  # stars' order → file order
    pred = {k: v[order] for k, v in _predict(predictor, arrays, mask, inputs, g_mag=g_mag[back]).items()}
    out: dict[str, Any] = {}
    if "age" in pred:
        ages = age_truth(stars) if ages is None else ages
        out["ln_age"], out["age_gyr"] = _age_scores(pred["age"], pred.get("age_error"), ages)
    if "mass" in pred:
        out["mass"] = mass_scores(pred["mass"], pred.get("mass_error"), stars)
        ctx, (dist_inputs, unread) = next(iter(distance_contexts(predictor).items()))
        if not unread:
            # no token without AK_TARG, or past the catalogue's σ_ϖ ≤ 0.1 mas cut: those stars are left out
            tok = literature_tokens(g_mag, seismic_distance_kpc(stars, g_mag, ebv), ebv)
            has = np.isfinite(tok["g_fakemag"])
            tok = {k: tok[k][back] for k in ("g_fakemag", "g_fakemag_error")}
            p = {
                k: v[order]
                for k, v in _predict(predictor, arrays, mask, dist_inputs, tok, g_mag[back]).items()
            }
            p["mass"] = np.where(has, p["mass"], np.nan)
            out["mass_with_seismic_luminosity"] = {
                "context": ctx,
                **mass_scores(p["mass"], p.get("mass_error"), stars),
            }
            if "age" in p:
                out["ln_age_with_seismic_luminosity"], out["age_gyr_with_seismic_luminosity"] = _age_scores(
                    np.where(has, p["age"], np.nan), p.get("age_error"), ages
                )
    if "logg" in pred:
        ls, le = stars["logg_seis"].to_numpy(float), stars["logg_seis_error"].to_numpy(float)
        nt = split != "train"
        sigma = pred.get("logg_error")
        out["logg"] = {
            "all": score(pred["logg"], sigma, ls, le),
            "not training split": score(
                pred["logg"][nt], None if sigma is None else sigma[nt], ls[nt], le[nt]
            ),
        }
    return out


def twin_results(
    predictor: Any, arrays: Any, fits_path: str, stars: pd.DataFrame, emulator: str
) -> dict[str, Any]:
    """Mass of the real XP and of the emulated twin (`emulated_twins.twin_predictions`), both against the
    seismic mass, on the standard input."""
    import emulated_twins as et
    import realism_report as rr

    real = [rr._real_rows(fits_path, None), rr._real_rows(fits_path, "test")]
    real_all = {k: np.concatenate([r[k] for r in real]) for k in real[0]}
    pos = {int(s): i for i, s in enumerate(real_all["source_id"])}
    take = np.array([pos[int(s)] for s in stars["source_id"] if int(s) in pos], dtype=np.int64)
    keep = stars["source_id"].map(lambda s: int(s) in pos).to_numpy()
    group = {k: v[take] for k, v in real_all.items()}
    tp = et.twin_predictions(predictor, arrays, group, et.load_emulator(emulator))
    sub = stars[keep].reset_index(drop=True)
    ctx = tp[et.CONTEXTS[0]]
    return {
        kind: mass_scores(np.exp(ctx[kind]["ln_mass"]), None, sub)["all"]
        for kind in ("real", "twin", "labels")
    }


def simulator_relevancy(
    flux: np.ndarray, g_mag: np.ndarray, ecl_lat: np.ndarray, emulator: str, seed: int = 0
) -> np.ndarray:
    """(N, 2) the `X_n_relevant_bases` (BP, RP) the simulator gives a star of this spectrum and G: its
    absolute sampled flux (N, 343) [W m^-2 nm^-1] through the simulator's archive-like inverse and its DR3
    noise model at G (`xpengine.simulate.xp.add_xp_noise`: relevant up to the last coefficient with
    |c_i|/σ_i > 4; seeded draw of its scan-law factor)."""
    import emulated_twins as et

    from xpengine.simulate.xp import XPNoiseModel, add_xp_noise, archive_like_coefficients

    cal = et.load_emulator(emulator)
    bp, rp = archive_like_coefficients(flux)
    n = len(g_mag)
    obs = add_xp_noise(
        bp, rp, flux, g_mag, ecl_lat, np.zeros(n, bool), np.random.default_rng(seed), XPNoiseModel(cal)
    )
    return np.stack([obs["bp_n_relevant_bases"], obs["rp_n_relevant_bases"]], axis=1).astype(np.float64)


def masked_arrays(arrays: Any, rows: np.ndarray, n_relevant: np.ndarray) -> Any:
    """A copy of the TrainingArrays' fields `_predict` reads, with the XP tokens of `rows` beyond each star's
    (BP, RP) relevant count `n_relevant` (N, 2) set to NaN, as the catalogue masks archive rows
    (`xpengine.features.relevancy.relevancy_mask`, the paper's propagation from order 51)."""
    from types import SimpleNamespace

    from xpengine.features.relevancy import relevancy_mask

    values = np.array(arrays.values, copy=True)
    for j, band in enumerate(("bp", "rp")):
        names = list(arrays.vocabulary.names)
        cols = [i for i, t in enumerate(names) if t.startswith(band) and t[2:].isdigit()]
        order = np.array([int(names[c][2:]) for c in cols])
        keep = relevancy_mask(n_relevant[:, j], 55)[:, order]  # (N, n_cols)
        block = values[np.ix_(rows, cols)]
        values[np.ix_(rows, cols)] = np.where(keep, block, np.nan)
    return SimpleNamespace(
        values=values, errors=arrays.errors, vocabulary=arrays.vocabulary, source_id=arrays.source_id
    )


def flux_and_ecliptic(fits_path: str, source_id: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stars' absolute sampled flux (N, 343) and ecliptic latitude [deg] from the dev file, by source id (45° where
    the APOGEE_ID holds no 2MASS position: it only sets the simulator's transit count)."""
    from astropy.io import fits
    from real_star_checks import radec_from_apogee_id

    from xpengine.simulate.coords import ecliptic_latitude

    d = fits.getdata(fits_path, 1)
    pos = {int(s): i for i, s in enumerate(np.asarray(d["gaiaedr3_source_id"], dtype=np.int64))}
    i = np.array([pos[int(s)] for s in source_id], dtype=np.int64)
    flux = np.asarray(d["flux"][i], np.float64) * np.asarray(d["medflux"][i], np.float64)[:, None]
    ra, dec = radec_from_apogee_id(np.char.strip(np.asarray(d["apogee_id"][i]).astype(str)))
    return flux, np.nan_to_num(ecliptic_latitude(ra, dec), nan=45.0)


def run(
    models: Sequence[str], fits_path: str, dataset: str, emulator: str, matched: pd.DataFrame
) -> dict[str, Any]:
    """Every model's `model_results` and, for models that learned mass, `twin_results`."""
    import pyarrow.parquet as pq

    from xpengine.datasets.schema import read_training_set
    from xpengine.inference.predictor import Predictor

    arrays = read_training_set(dataset)
    side = pq.read_table(dataset, columns=["split", "phot_g_mean_mag", "ak_targ"])
    index = {int(s): i for i, s in enumerate(arrays.source_id)}
    found = matched["source_id"].map(lambda s: int(s) in index).to_numpy()
    if not found.all():
        logger.warning("%d matched stars are not in %s", int((~found).sum()), dataset)
    stars = matched[found].reset_index(drop=True)
    rows = np.array([index[int(s)] for s in stars["source_id"]], dtype=np.int64)
    g_all = side.column("phot_g_mean_mag").to_numpy().astype(np.float64)
    split = np.asarray(side.column("split"))[rows]
    ebv = side.column("ak_targ").to_numpy().astype(np.float64)[rows] / AK_PER_EBV
    out: dict[str, Any] = {
        "n": len(stars),
        "splits": {s: int((split == s).sum()) for s in ("train", "val", "test")},
        "evol_states": {s: int((stars["evol_state"] == s).sum()) for s in ("RGB", "RC")},
        "seismic_mass_median": float(stars["mass"].median()),
        "seismic_mass_error_median": float(stars["mass_error"].median()),
        "models": {},
    }
    # the dev file's spectra are sampled ones: every coefficient is kept, whereas archive rows (and the
    # training skies' stars) lose their orders beyond X_n_relevant_bases; the same stars again with the
    # relevancy the simulator gives a star of their spectrum and G
    flux, ecl_lat = flux_and_ecliptic(fits_path, stars["source_id"].to_numpy())
    n_rel = simulator_relevancy(flux, g_all[rows], ecl_lat, emulator)
    out["simulator_n_relevant_median"] = {
        "bp": float(np.median(n_rel[:, 0])),
        "rp": float(np.median(n_rel[:, 1])),
    }
    masked = masked_arrays(arrays, rows, n_rel)
    ages = age_truth(stars)  # MIST ages at the seismic masses, once for every model and input
    for m in models:
        p = Predictor.load(m)
        res = model_results(p, arrays, rows, stars, g_all[rows], split, ebv, ages)
        res["with_relevancy"] = model_results(p, masked, rows, stars, g_all[rows], split, ebv, ages)
        if "mass" in p.learned.outputs:
            res["twin"] = twin_results(p, arrays, fits_path, stars, emulator)
        out["models"][m] = res
    return out


def _cell(s: Mapping[str, Any] | None, digits: int = 3, *, ci95: bool = False) -> str:
    """One table cell: bias / robust σ / Spearman ρ, z-spread, (n); with `ci95` the bootstrap intervals of
    the bias and σ in brackets."""
    if not s or "bias" not in s:
        return "–"
    z = f", z {s['z_spread']:.2f}" if "z_spread" in s else ""
    ci = ""
    if ci95 and "bias_ci95" in s:
        (b0, b1), (s0, s1) = s["bias_ci95"], s["robust_sigma_ci95"]
        ci = f" [{b0:+.{digits - 1}f}, {b1:+.{digits - 1}f}]"
        return (
            f"{s['bias']:+.{digits}f}{ci} / {s['robust_sigma']:.{digits}f} [{s0:.{digits - 1}f}, "
            f"{s1:.{digits - 1}f}] / ρ {s['spearman']:.2f}{z} ({s['n']})"
        )
    return f"{s['bias']:+.{digits}f} / {s['robust_sigma']:.{digits}f} / ρ {s['spearman']:.2f}{z} ({s['n']})"


def _group_table(
    title: str, results: Mapping[str, Any], models: list[str], groups: list[str], key: str
) -> list[str]:
    """A markdown table of `mass_scores` groups (rows) by model (columns) from each model's `results[m][key]`;
    the "all" row with its bootstrap intervals."""
    lines = [title, "", "| stars | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
    for g in groups:
        cells = [_cell(results[m].get(key, {}).get(g), ci95=g == "all") for m in models]
        lines.append(f"| {g} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def render_markdown(res: Mapping[str, Any]) -> str:
    r = res["result"]
    lines = [
        "# Real red giants of asteroseismic mass (APOKASC-3) with real XP",
        "",
        command_line(res),
        "",
        f"{r['n']} Kepler giants of the APOGEE×XP dev file matched to APOKASC-3 Table 4 (Gold, α-poor, 0.9–1.8 M☉; "
        f"{r['evol_states']['RGB']} RGB, {r['evol_states']['RC']} RC by their oscillations; splits {r['splits']}); "
        f"median seismic mass {r['seismic_mass_median']:.2f} M☉ ± {r['seismic_mass_error_median']:.3f}. "
        "Standard input (no parallax), each star's G. Cells: median bias / robust σ / Spearman ρ, z-spread, (n); "
        "brackets: 95 % bootstrap intervals over the stars.",
        "",
    ]
    models = list(r["models"])
    groups = next((list(v["mass"]) for v in r["models"].values() if "mass" in v), [])
    if groups:
        lines += _group_table("## Mass [M☉] against the seismic mass", r["models"], models, groups, "mass")
    lum = [m for m in models if "mass_with_seismic_luminosity" in r["models"][m]]
    if lum:
        ctx = r["models"][lum[0]]["mass_with_seismic_luminosity"]["context"]
        title = (
            f"## Mass with a parallax's information: the pseudo-luminosity of the seismic luminosity ({ctx})"
        )
        lines += _group_table(title, r["models"], lum, groups, "mass_with_seismic_luminosity")
    rel = [m for m in models if "with_relevancy" in r["models"][m]]
    if rel:
        nr = r["simulator_n_relevant_median"]
        rows = (
            ("mass, standard input", lambda x: x.get("mass", {}).get("all")),
            (
                "mass, with the seismic luminosity",
                lambda x: x.get("mass_with_seismic_luminosity", {}).get("all"),
            ),
            ("ln age, standard input", lambda x: x.get("ln_age")),
            ("ln age, with the seismic luminosity", lambda x: x.get("ln_age_with_seismic_luminosity")),
            ("logg, standard input", lambda x: x.get("logg", {}).get("all")),
        )
        lines += [
            "## Every coefficient (the dev file's sampled spectra) against archive-like relevancy",
            "",
            "Archive rows, and the training skies' stars, lose the orders beyond `X_n_relevant_bases`; the dev "
            "file's sampled spectra keep all. Right cell of each pair: the same stars with the relevancy the "
            "simulator gives their own spectrum at their G (`simulator_relevancy`; median BP "
            f"{nr['bp']:.0f}, RP {nr['rp']:.0f}), as the catalogue would read DR3 rows if DR3's counts are the "
            "simulator's.",
            "",
            "| | " + " | ".join(f"{m}: every coefficient | {m}: archive-like relevancy" for m in rel) + " |",
            "|---|" + "---|---|" * len(rel),
        ]
        for name, get in rows:
            cells = []
            for m in rel:
                cells += [_cell(get(r["models"][m])), _cell(get(r["models"][m]["with_relevancy"]))]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    twins = [m for m in models if "twin" in r["models"][m]]
    if twins:
        lines += [
            "## The same stars' emulated twins (XP of the emulator at the star's ASPCAP labels; every coefficient)",
            "",
            "| model | real XP | twin | twin at labels perturbed by ASPCAP's accuracy |",
            "|---|---|---|---|",
        ]
        for m in twins:
            t = r["models"][m]["twin"]
            lines.append(f"| {m} | {_cell(t['real'])} | {_cell(t['twin'])} | {_cell(t['labels'])} |")
        lines.append("")
    aged = [m for m in models if "ln_age" in r["models"][m]]
    if aged:
        lines += [
            "## Age against the MIST age at the seismic mass (`seismic_age_gyr`)",
            "",
            "| | " + " | ".join(aged) + " |",
            "|---|" + "---|" * len(aged),
            "| ln age | " + " | ".join(_cell(r["models"][m]["ln_age"], ci95=True) for m in aged) + " |",
            "| age [Gyr] | " + " | ".join(_cell(r["models"][m]["age_gyr"], 2) for m in aged) + " |",
            "| ln age, with the seismic luminosity | "
            + " | ".join(_cell(r["models"][m].get("ln_age_with_seismic_luminosity"), ci95=True) for m in aged)
            + " |",
            "| age [Gyr], with the seismic luminosity | "
            + " | ".join(_cell(r["models"][m].get("age_gyr_with_seismic_luminosity"), 2) for m in aged)
            + " |",
            "",
        ]
    lines += [
        "## logg against the seismic logg",
        "",
        "| stars | " + " | ".join(models) + " |",
        "|---|" + "---|" * len(models),
    ]
    for g in ("all", "not training split"):
        lines.append(
            f"| {g} | " + " | ".join(_cell(r["models"][m].get("logg", {}).get(g)) for m in models) + " |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = check_parser(__doc__)
    ap.add_argument("--models", nargs="+", default=["gaia-xp", "apogee-xp"])
    ap.add_argument(
        "--apogee-xp", required=True, help="APOGEE×XP FITS (../shared/data/apogee_xp/apogee_xp_dev.fits.gz)"
    )
    ap.add_argument(
        "--dataset", required=True, help="its training-schema Parquet (xpengine build-dataset apogee-xp)"
    )
    ap.add_argument(
        "--matched", default=str(MATCHED), help="the matched stars (default: the repository's file)"
    )
    ap.add_argument(
        "--apokasc-table",
        help="rebuild --matched from this APOKASC-3 Table 4 CSV (kailicao/mesa_apokasc, commit 97b3910, "
        "apokasc3/Table4_Apoor_RGB+RC_Gold.csv) and the dev file first",
    )
    ap.add_argument(
        "--emulator", default="v1", help="emulator calibration of the model's training skies (twins)"
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.apokasc_table:
        m = match_apokasc(pd.read_csv(args.apokasc_table), dev_stars(args.apogee_xp))
        Path(args.matched).parent.mkdir(parents=True, exist_ok=True)
        m.to_csv(args.matched, index=False)
        logger.warning("wrote %d matched stars to %s", len(m), args.matched)
    result = {
        **run_header("benchmarks/seismic_giants.py", argv),
        "result": run(args.models, args.apogee_xp, args.dataset, args.emulator, read_matched(args.matched)),
    }
    write_outputs(result, args.json, args.markdown, render_markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
