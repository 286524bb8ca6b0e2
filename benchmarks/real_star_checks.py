"""Real stars of independently known mass, age or type, run through several models side by side.

    python benchmarks/real_star_checks.py --models gaia-xp apogee-xp synthetic-sky \\
        --apogee-xp ../shared/data/apogee_xp/apogee_xp_dev.fits.gz --dataset runs/apogee_xp_dev.parquet \\
        --json benchmarks/results/real_star_checks.json --markdown benchmarks/results/real_star_checks.md

These are checks, never training targets: no model was trained on a mass or an age of a real star (the
real APOGEE×XP stars teach Teff, logg, [M/H] and [α/M] only), and nothing here is used to choose a model.

1. Single stars, from real Gaia DR3 XP shipped in the repository (no ../shared needed), through
   `Predictor.from_xp` with XP alone (the catalogue's features and flags, G from XP):
   - the solar twin 18 Sco (5810 K, logg 4.44, [Fe/H] +0.05, ≈1.02 M☉, 3–4 Gyr; Porto de Mello & da
     Silva 1997, Bazot et al. 2011): a solar-type dwarf, outside the giants' mass/age domain;
   - Gaia DR3 5762406957886626816 (archive BP−RP ≈ −0.29): a hot star.
2. Star-cluster giants in the APOGEE×XP file (with --apogee-xp and --dataset). A cluster's stars share
   one age and, on the giant branch, nearly one mass, known from the cluster's own colour-magnitude
   diagram, eclipsing binaries or asteroseismology, independently of any spectrum. Members: within
   15′ of the cluster centre (the APOGEE_ID encodes the 2MASS position), |[Fe/H]_APOGEE − [Fe/H]_cluster|
   < 0.3 and logg < 3.8; masses and ages are scored on the members in the paper's giant domain
   (ASPCAP logg < 3.5, 3500–5500 K, as the field groups), and the others are counted (since session
   13; before, NGC 7789's row held 6 turn-off and Hertzsprung-gap stars at 5860–6180 K beside its 4
   giants). Literature: see CLUSTERS. Globular-cluster giants must come out old (the clusters are
   11–13 Gyr; VandenBerg et al. 2013) and of low mass (≈0.8 M☉ on the red giant branch); the three
   open clusters span 1.5–8 Gyr.
3. Reddening: for models that predict E(B−V), the prediction for the APOGEE×XP test split against
   E(B−V) = AK_TARG / 0.352 (REFERENCE §7; AK_TARG is APOGEE's targeting extinction from RJCE, itself
   uncertain by a few hundredths of a magnitude in A_K, i.e. ≈ 0.05–0.1 mag in E(B−V)).
4. Metal-poor field giants of the APOGEE×XP test split ([M/H] < −1, logg < 3.5, 3500–5500 K, not
   cluster members): they must come out metal-poor, old and of low mass, as physics requires of stars
   that formed before the disk was enriched (halo and thick disk, 10–13 Gyr, ≲ 1 M☉).

Every model runs on the catalogue's standard input (BP/RP 0–29, BP−RP, J−H, J−K) for the cluster and
field giants: the APOGEE×XP file has no parallaxes. Each star's G goes with it, as in the catalogue, for the
calibration's G-bin σ factors and mean shifts. A label a model did not learn is "–".

5. Cluster giants with the information the catalogue gives a model that reads it: the pseudo-luminosity
   g_fakemag and ln E(B−V) (`logebv`), built for each member from its cluster's literature distance and
   reddening (CLUSTERS) and the star's own G (`phot_g_mean_mag` of the training-schema file) with the
   catalogue's functions (`literature_tokens`). Contexts (`distance_contexts`): the standard input plus
   g_fakemag (the catalogue job's default context for gaia-xp, 64 tokens), and plus g_fakemag and logebv
   (BP/RP 0–28, to fit a 64-token context). A model that never read those tokens in training gets "–".
   Real APOGEE×XP stars never carried mass, age, g_fakemag or logebv in training (the file has no
   parallaxes, and its stars teach Teff, logg, [M/H], [α/M] only), so cluster members in the training
   split still test mass and age honestly; their atmospheric labels were seen in training.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from check_report import check_parser, command_line, paper_giants, run_header, write_outputs  # noqa: E402  (used by the other check scripts too)

from xpengine import io  # noqa: E402
from xpengine.evaluate.baseline import standard_input_names  # noqa: E402
from xpengine.features.astrometry import ebv_to_logebv, pseudo_luminosity  # noqa: E402
from xpengine.inference.predictor import Predictor  # noqa: E402

logger = logging.getLogger("real_star_checks")

GAIA_XP = ROOT / "tests" / "data" / "gaia_xp"
SAMPLES = ROOT / "xpengine" / "data" / "gaia_dr3_samples"
BLUE_STAR = 5762406957886626816
LABELS = ("teff", "logg", "m_h", "mass", "ln_age", "logebv")
AK_PER_EBV = 0.352  # A_K / E(B−V) (REFERENCE §7)


@dataclass(frozen=True)
class Cluster:
    name: str
    ra: float  # deg, J2000
    dec: float  # deg
    fe_h: float  # [Fe/H]
    age_gyr: tuple[float, float]  # literature range
    rgb_mass: float  # M☉, giants
    kind: str  # "globular" or "open"
    distance_kpc: float  # literature heliocentric distance
    ebv: float  # literature E(B−V) [mag]


#: Centres and [Fe/H] of the globular clusters: Harris (1996; 2010 edition). Ages: VandenBerg et al.
#: (2013) put all of these at 11–13 Gyr; RGB masses ≈ 0.8 M☉ (the turn-off mass at that age). Open
#: clusters: NGC 6791 8.3 Gyr, giants 1.15 M☉ (Brogaard et al. 2012); NGC 6819 2.4 Gyr, giants 1.6 M☉
#: (Brewer et al. 2016; Handberg et al. 2017); NGC 7789 ≈ 1.5 Gyr, giants ≈ 1.9 M☉ (Twarog et al. 2012).
#: Distances and E(B−V) of the globular clusters: Harris (1996; 2010 edition, R_Sun and E(B−V)), except
#: M10 and M107, where the Gaia EDR3 + HST distance of Baumgardt & Vasiliev (2021, MNRAS 505, 5957; their
#: online catalogue: M10 5.07 kpc, M107 5.63 kpc) differs from Harris's (4.4 and 6.4 kpc) by more than
#: twice the 5 % error given to the distance here, and replaces it. Open clusters: NGC 6791 4.1 kpc,
#: E(B−V) 0.16 (Brogaard et al. 2012: (m−M)_V 13.51); NGC 6819 2.4 kpc, E(B−V) 0.16 (Anthony-Twarog et
#: al. 2014: E(B−V) 0.160, (m−M)_V 12.40; Brewer et al. 2016); NGC 7789 1.85 kpc, E(B−V) 0.28 (Gim et al.
#: 1998: (m−M)_V ≤ 12.2, E(V−I) 0.35–0.38; Wu et al. 2007: (m−M)_0 11.27, E(B−V) 0.28).
CLUSTERS: tuple[Cluster, ...] = (
    Cluster("M92", 259.281, 43.136, -2.31, (11.0, 13.5), 0.8, "globular", 8.3, 0.02),
    Cluster("M15", 322.493, 12.167, -2.37, (11.0, 13.5), 0.8, "globular", 10.4, 0.10),
    Cluster("M53", 198.230, 18.168, -2.10, (11.0, 13.5), 0.8, "globular", 17.9, 0.02),
    Cluster("M2", 323.363, -0.823, -1.65, (11.0, 13.5), 0.8, "globular", 11.5, 0.06),
    Cluster("M13", 250.423, 36.461, -1.53, (11.0, 13.5), 0.8, "globular", 7.1, 0.02),
    Cluster("M3", 205.548, 28.377, -1.50, (11.0, 13.5), 0.8, "globular", 10.2, 0.01),
    Cluster("M10", 254.288, -4.100, -1.56, (11.0, 13.5), 0.8, "globular", 5.07, 0.28),
    Cluster("M12", 251.809, -1.949, -1.37, (11.0, 13.5), 0.8, "globular", 4.8, 0.19),
    Cluster("M5", 229.638, 2.081, -1.29, (11.0, 13.5), 0.8, "globular", 7.5, 0.03),
    Cluster("NGC 1851", 78.528, -40.047, -1.18, (11.0, 13.5), 0.8, "globular", 12.1, 0.02),
    Cluster("M107", 248.133, -13.054, -1.02, (11.0, 13.5), 0.8, "globular", 5.63, 0.33),
    Cluster("M71", 298.444, 18.779, -0.78, (11.0, 13.5), 0.8, "globular", 4.0, 0.25),
    Cluster("NGC 6791", 290.221, 37.772, 0.30, (7.5, 9.0), 1.15, "open", 4.1, 0.16),
    Cluster("NGC 6819", 295.327, 40.190, 0.05, (2.2, 2.6), 1.6, "open", 2.4, 0.16),
    Cluster("NGC 7789", 359.330, 56.720, 0.00, (1.3, 1.8), 1.9, "open", 1.85, 0.28),
)
MEMBER_RADIUS_DEG = 0.25
MEMBER_FEH = 0.3
MEMBER_LOGG = 3.8
DISTANCE_ERROR_FRACTION = 0.05  # σ_ϖ / ϖ given to a literature distance (≈ its uncertainty)
EBV_ERROR_FRACTION = 0.10  # σ_E / E given to a literature E(B−V)
STANDARD_CONTEXT = "BP/RP 0–29, colours"


def literature_tokens(
    g_mag: np.ndarray, distance_kpc: np.ndarray | float, ebv: np.ndarray | float
) -> dict[str, np.ndarray]:
    """g_fakemag and logebv tokens (values and errors, (N,) float64) from a literature distance and E(B−V).

    The catalogue's own functions: ϖ = 1000 / d[pc] mas with σ_ϖ = DISTANCE_ERROR_FRACTION·ϖ into
    `astrometry.pseudo_luminosity` (fakemag = ϖ·10^(0.2 G), σ = σ_ϖ·10^(0.2 G), and the catalogue's
    σ_ϖ ≤ 0.1 mas cut) without the Gaia zero point, which belongs to Gaia parallaxes, not to a
    literature distance; ln E(B−V) with σ_E = EBV_ERROR_FRACTION·E through `astrometry.ebv_to_logebv`.
    NaN where G, the distance or E(B−V) is missing. The errors are carried for the record: the model
    takes no input errors (`Predictor.predict`).
    """
    g = np.asarray(g_mag, dtype=np.float64)
    d_pc = 1000.0 * np.broadcast_to(np.asarray(distance_kpc, dtype=np.float64), g.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        plx = 1000.0 / d_pc  # mas
    lum = pseudo_luminosity(g, plx, DISTANCE_ERROR_FRACTION * plx, apply_zero_point=False)
    e = np.broadcast_to(np.asarray(ebv, dtype=np.float64), g.shape)
    logebv, logebv_err = ebv_to_logebv(e, EBV_ERROR_FRACTION * e)
    return {
        "g_fakemag": lum.fakemag,
        "g_fakemag_error": lum.fakemag_error,
        "logebv": logebv,
        "logebv_error": logebv_err,
    }


def distance_contexts(predictor: Predictor) -> dict[str, tuple[list[str], list[str]]]:
    """{context name: (input tokens, tokens of it the model never read)} for the distance table.

    The standard input plus g_fakemag (64 tokens: the catalogue job's default context for gaia-xp),
    and plus g_fakemag and logebv with as many BP/RP coefficients as the model's context takes
    (0–28 for 64 tokens). A context with tokens the model never read in training is not run ("–").
    """
    limit = predictor.context_length
    read = set(predictor.learned.inputs)
    out: dict[str, tuple[list[str], list[str]]] = {}
    for extra in (["g_fakemag"], ["g_fakemag", "logebv"]):
        k = min(30, (limit - 3 - len(extra)) // 2)
        name = f"BP/RP 0–{k - 1}, colours, {', '.join(extra)}"
        unread = [t for t in extra if t not in predictor.vocabulary or t not in read]
        out[name] = ([*standard_input_names(k), *extra], unread)
    return out


def radec_from_apogee_id(apogee_id: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(ra, dec) [deg] from 2MASS-style APOGEE_IDs `2Mhhmmssss±ddmmsss`; NaN for other ids."""
    ra = np.full(len(apogee_id), np.nan)
    dec = np.full(len(apogee_id), np.nan)
    for i, raw in enumerate(apogee_id):
        s = str(raw).strip()
        if not (s.startswith("2M") and len(s) >= 18 and s[10] in "+-"):
            continue
        h, m, sec = int(s[2:4]), int(s[4:6]), float(f"{s[6:8]}.{s[8:10]}")
        d, dm, ds = int(s[11:13]), int(s[13:15]), float(f"{s[15:17]}.{s[17:18]}")
        ra[i] = 15.0 * (h + m / 60.0 + sec / 3600.0)
        dec[i] = (-1.0 if s[10] == "-" else 1.0) * (d + dm / 60.0 + ds / 3600.0)
    return ra, dec


def cluster_members(
    ra: np.ndarray, dec: np.ndarray, fe_h: np.ndarray, logg: np.ndarray
) -> dict[str, np.ndarray]:
    """{cluster name: (N,) bool} by position, [Fe/H] and logg (module docstring); disjoint."""
    out = {}
    for c in CLUSTERS:
        dra = (ra - c.ra + 180.0) % 360.0 - 180.0
        sep = np.hypot(dra * np.cos(np.radians(c.dec)), dec - c.dec)
        with np.errstate(invalid="ignore"):
            out[c.name] = (
                (sep < MEMBER_RADIUS_DEG) & (np.abs(fe_h - c.fe_h) < MEMBER_FEH) & (logg < MEMBER_LOGG)
            )
    return out


def _predict(
    predictor: Predictor,
    arrays: Any,
    rows: np.ndarray,
    inputs: Sequence[str],
    tokens: Mapping[str, np.ndarray] | None = None,
    g_mag: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Labels the model learned (less those in `inputs`) for `rows` of a TrainingArrays, with `tokens`
    ({name: (n_rows,) values, name_error: errors}) written into those rows' token matrix first. g_mag:
    the rows' G (n_rows,), passed on as the catalogue does (its calibration's G-bin σ factors and mean
    shifts)."""
    from xpengine.evaluate.runner import align_to_vocabulary

    pv = predictor.vocabulary
    values, errors = align_to_vocabulary(arrays.values[rows], arrays.errors[rows], arrays.vocabulary, pv)
    for name, v in (tokens or {}).items():
        if not name.endswith("_error"):
            j = pv.index(name)
            values[:, j] = v
            errors[:, j] = tokens[f"{name}_error"]
    request = [t for t in LABELS if t in predictor.learned.outputs and t not in inputs]
    return predictor.predict(values, errors, request, inputs=list(inputs), g_mag=g_mag)


def standard_predictions(
    predictor: Predictor, arrays: Any, rows: np.ndarray, g_mag: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Labels the model learned, from the catalogue's standard input, for `rows` of a TrainingArrays
    (g_mag: their G, as in `_predict`)."""
    from xpengine.evaluate.scenarios import scenario_groups

    [(_, inputs)] = scenario_groups(
        "standard",
        predictor.vocabulary,
        int(rows.sum()),
        context_length=predictor.checkpoint.model_config.context_length,
    )
    return _predict(predictor, arrays, rows, inputs, g_mag=g_mag)


def _summary(pred: Mapping[str, np.ndarray], name: str) -> dict[str, float] | None:
    if name not in pred:
        return None
    v = pred[name]
    v = v[np.isfinite(v)]
    if v.size == 0:
        return None
    q16, q50, q84 = np.percentile(v, [16, 50, 84])
    return {"median": float(q50), "p16": float(q16), "p84": float(q84), "n": int(v.size)}


def single_stars(predictors: Mapping[str, Predictor]) -> dict[str, Any]:
    """18 Sco and the blue star from their real archive XP alone."""
    sco = io.read_xp_continuous(str(GAIA_XP / "18Sco-XP-spectra.csv"))
    blue_all = io.read_xp_continuous(str(SAMPLES / "XP_CONTINUOUS_RAW_with_missing_BP.ecsv"))
    blue = blue_all.filter(np.asarray(blue_all.column("source_id").to_numpy() == BLUE_STAR))
    stars = {
        "18 Sco": (sco, {"teff": 5810.0, "logg": 4.44, "m_h": 0.05, "mass": 1.02, "age": 3.5}),
        f"Gaia DR3 {BLUE_STAR}": (blue, {}),
    }
    out: dict[str, Any] = {}
    for star, (table, literature) in stars.items():
        rows = {}
        for name, p in predictors.items():
            labels = [t for t in ("teff", "logg", "m_h", "mass", "age") if t in _catalogue_labels(p)]
            df = p.from_xp(table, labels=labels)
            row = df.iloc[0]
            rows[name] = {
                k: (None if not np.isfinite(row[k]) else float(row[k]))
                for k in df.columns
                if k not in ("source_id", "flags", "flag_names") and np.issubdtype(type(row[k]), np.number)
            }
            rows[name]["flag_names"] = str(row["flag_names"])
        out[star] = {"literature": literature, "models": rows}
    return out


def _catalogue_labels(p: Predictor) -> set[str]:
    learned = set(p.learned.outputs)
    return learned | ({"age"} if "ln_age" in learned else set())


def _fraction(mask: np.ndarray, ok: np.ndarray) -> float | None:
    return float(np.mean(mask[ok])) if ok.any() else None


#: Relative uncertainty given to a cluster's literature giant mass in the z-scores (the turn-off mass at the
#: cluster's age; giants past the tip have lost some of it).
LIT_LN_MASS_SIGMA = 0.07
#: Uncertainty given to a cluster's literature E(B−V) in the z-scores [mag].
LIT_EBV_SIGMA = 0.02


def _z_summary(z: np.ndarray) -> dict[str, float] | None:
    z = z[np.isfinite(z)]
    if not z.size:
        return None
    return {"n": int(z.size), "median": float(np.median(z)), "rms": float(np.sqrt(np.mean(z**2)))}


def literature_z(pred: Mapping[str, np.ndarray], lit: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """z-scores of the predicted ln age, ln mass and E(B−V) against the literature (`lit`: per-star age
    range, giant mass and E(B−V), NaN = none), the predicted σ and the literature's in quadrature: ln age
    against the range's geometric middle with half its ln width, ln mass with `LIT_LN_MASS_SIGMA`, E(B−V)
    with `LIT_EBV_SIGMA`. Median and rms of z; an rms near 1 means honest σ (a literature uncertainty
    taken too wide pushes it below)."""
    out: dict[str, Any] = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        if "age" in pred and "age_error" in pred:
            mid = 0.5 * (np.log(lit["age_lo"]) + np.log(lit["age_hi"]))
            half = 0.5 * (np.log(lit["age_hi"]) - np.log(lit["age_lo"]))
            s = pred["age_error"] / pred["age"]
            out["age_z"] = _z_summary((np.log(pred["age"]) - mid) / np.hypot(s, half))
        if "mass" in pred and "mass_error" in pred:
            s = pred["mass_error"] / pred["mass"]
            out["mass_z"] = _z_summary(
                (np.log(pred["mass"]) - np.log(lit["mass"])) / np.hypot(s, LIT_LN_MASS_SIGMA)
            )
        if "ebv" in pred and "ebv_error" in pred and "ebv" in lit:
            out["ebv_z"] = _z_summary((pred["ebv"] - lit["ebv"]) / np.hypot(pred["ebv_error"], LIT_EBV_SIGMA))
    return out


def _group_result(
    pred: Mapping[str, np.ndarray], lit: Mapping[str, np.ndarray], apogee_logg: np.ndarray
) -> dict[str, Any]:
    """Percentiles of the predictions of one group, the fractions of old / light stars, and, where the
    stars have literature values (`lit`: per-star age range, giant mass), the fraction within the age
    range, the median |Δ mass|, the z-scores against the literature (`literature_z`) and the median
    predicted − APOGEE logg."""
    res: dict[str, Any] = {k: _summary(pred, k) for k in ("teff", "logg", "m_h", "mass", "age", "ebv")}
    res.update(literature_z(pred, lit))
    with np.errstate(invalid="ignore"):
        if "age" in pred:
            age = pred["age"]
            ok = np.isfinite(age)
            res["fraction_age_above_8gyr"] = _fraction(age > 8.0, ok)
            ok_lit = ok & np.isfinite(lit["age_lo"])
            res["fraction_age_in_literature_range"] = _fraction(
                (age >= lit["age_lo"]) & (age <= lit["age_hi"]), ok_lit
            )
        if "mass" in pred:
            mass = pred["mass"]
            ok = np.isfinite(mass)
            res["fraction_mass_below_1"] = _fraction(mass < 1.0, ok)
            ok_lit = ok & np.isfinite(lit["mass"])
            res["median_abs_dmass"] = (
                float(np.median(np.abs(mass - lit["mass"])[ok_lit])) if ok_lit.any() else None
            )
        if "logg" in pred:
            d = pred["logg"] - apogee_logg
            d = d[np.isfinite(d)]
            res["median_dlogg_apogee"] = float(np.median(d)) if d.size else None
    return res


def apogee_checks(predictors: Mapping[str, Predictor], fits_path: str, dataset: str) -> dict[str, Any]:
    """Cluster giants and metal-poor field giants of the APOGEE×XP file; cluster giants also with the
    g_fakemag and logebv tokens of their cluster's literature distance and reddening."""
    import pyarrow.parquet as pq
    from astropy.io import fits

    from xpengine.datasets.schema import read_training_set

    d = fits.getdata(fits_path, 1)
    ra, dec = radec_from_apogee_id(d["apogee_id"])
    sid = np.asarray(d["gaiaedr3_source_id"], dtype=np.int64)
    members = cluster_members(ra, dec, np.asarray(d["fe_h"], float), np.asarray(d["logg"], float))
    arrays = read_training_set(dataset)
    has_g = "phot_g_mean_mag" in pq.read_schema(dataset).names
    side = pq.read_table(dataset, columns=["split", *(["phot_g_mean_mag"] if has_g else [])])
    split = np.asarray(side.column("split"))
    n = len(arrays.source_id)
    g_mag = side.column("phot_g_mean_mag").to_numpy().astype(np.float64) if has_g else np.full(n, np.nan)
    if not has_g:
        logger.warning("%s has no phot_g_mean_mag column: no distance table", dataset)
    index = {int(s): i for i, s in enumerate(arrays.source_id)}
    vocab = arrays.vocabulary
    teff, logg, m_h = (arrays.values[:, vocab.index(t)] for t in ("teff", "logg", "m_h"))
    in_cluster = np.zeros(n, bool)
    groups: dict[str, np.ndarray] = {}
    # per-star literature values of the star's cluster (NaN outside clusters)
    lit = {k: np.full(n, np.nan) for k in ("age_lo", "age_hi", "mass", "distance_kpc", "ebv")}
    # the clusters' mass and age are scored on the giants of the paper's domain (ASPCAP logg < 3.5,
    # 3500–5500 K), as the field groups below: members hotter or of higher gravity (turn-off and
    # Hertzsprung-gap stars of the young open clusters, horizontal-branch stars of the globulars) are
    # outside the domain the model's mass and age are for, and the catalogue flags them so
    domain = paper_giants(teff, logg)
    outside: dict[str, int] = {}
    for c in CLUSTERS:
        rows = np.zeros(n, bool)
        for s in sid[members[c.name]]:
            if int(s) in index:
                rows[index[int(s)]] = True
        groups[c.name] = rows & domain
        outside[c.name] = int((rows & ~domain).sum())
        in_cluster |= rows
        for k, v in zip(lit, (*c.age_gyr, c.rgb_mass, c.distance_kpc, c.ebv), strict=True):
            lit[k][rows] = v
    with np.errstate(invalid="ignore"):
        field_mp = (split == "test") & ~in_cluster & paper_giants(teff, logg) & (m_h < -1.0)
    groups["metal-poor field giants (test split)"] = field_mp
    # the α sequences of the disk, a chemical clock independent of the model's training: high-α disk
    # giants are old (≈ 8–12 Gyr in asteroseismic ages, e.g. Miglio et al. 2021), low-α ones younger
    # and spread over 1–10 Gyr
    alpha = arrays.values[:, vocab.index("alpha_m")]
    with np.errstate(invalid="ignore"):
        disk = (split == "test") & ~in_cluster & paper_giants(teff, logg)
        groups["high-α disk giants (test split, [α/M] > 0.18, [M/H] > −0.8)"] = (
            disk & (alpha > 0.18) & (m_h > -0.8)
        )
        groups["low-α disk giants (test split, [α/M] < 0.08, [M/H] > −0.5)"] = (
            disk & (alpha < 0.08) & (m_h > -0.5)
        )
    ak = np.full(n, np.nan)
    for s_id, a in zip(sid, np.asarray(d["ak_targ"], float), strict=True):
        if int(s_id) in index:
            ak[index[int(s_id)]] = a
    test_rows = (split == "test") & np.isfinite(ak) & (ak > -1)
    globular = np.zeros_like(in_cluster)
    for c in CLUSTERS:
        if c.kind == "globular":
            globular |= groups[c.name]
    groups["all globular-cluster giants"] = globular
    cluster_groups = {c.name for c in CLUSTERS} | {"all globular-cluster giants"}
    tokens_all = literature_tokens(g_mag, lit["distance_kpc"], lit["ebv"])

    out: dict[str, Any] = {"reddening": _reddening(predictors, arrays, test_rows, ak / AK_PER_EBV, g_mag)}
    for gname, rows in groups.items():
        if not rows.any():
            continue
        entry: dict[str, Any] = {
            "n": int(rows.sum()),
            "splits": {s: int(((split == s) & rows).sum()) for s in ("train", "val", "test")},
            "apogee_m_h_median": float(np.nanmedian(m_h[rows])),
            "apogee_logg_median": float(np.nanmedian(logg[rows])),
            "models": {},
        }
        if gname in outside:
            entry["members_outside_domain"] = outside[gname]
        c = next((c for c in CLUSTERS if c.name == gname), None)
        if c is not None:
            entry["literature"] = {
                "fe_h": c.fe_h,
                "age_gyr": list(c.age_gyr),
                "rgb_mass": c.rgb_mass,
                "distance_kpc": c.distance_kpc,
                "ebv": c.ebv,
            }
        lit_rows = {k: v[rows] for k, v in lit.items()}
        for name, p in predictors.items():
            pred = standard_predictions(p, arrays, rows, g_mag[rows])
            entry["models"][name] = _group_result(pred, lit_rows, logg[rows])
        if gname in cluster_groups and has_g:
            tokens = {k: v[rows] for k, v in tokens_all.items()}
            entry["literature_tokens"] = {
                "g_fakemag_median": float(np.nanmedian(tokens["g_fakemag"])),
                "n_with_g_fakemag": int(np.isfinite(tokens["g_fakemag"]).sum()),
                "logebv_median": float(np.nanmedian(tokens["logebv"])),
            }
            entry["with_distance"] = {}
            for name, p in predictors.items():
                runs: dict[str, Any] = {STANDARD_CONTEXT: entry["models"][name]}
                for ctx, (inputs, unread) in distance_contexts(p).items():
                    runs[ctx] = (
                        {"not_read": unread}
                        if unread
                        else _group_result(
                            _predict(p, arrays, rows, inputs, tokens, g_mag[rows]), lit_rows, logg[rows]
                        )
                    )
                entry["with_distance"][name] = runs
        out[gname] = entry
    return out


def _reddening(
    predictors: Mapping[str, Predictor],
    arrays: Any,
    rows: np.ndarray,
    ebv_apogee: np.ndarray,
    g_mag: np.ndarray | None = None,
) -> dict[str, Any]:
    """Predicted E(B−V) against AK_TARG / 0.352 on `rows`: robust σ, median bias, Spearman ρ, and the
    robust spread of (pred − ref) / σ_pred (AK_TARG's own error, ≈ 0.1 mag in E(B−V), is not in σ_pred,
    so it stays above 1 even for honest σ)."""
    from scipy.stats import spearmanr

    out: dict[str, Any] = {"n": int(rows.sum())}
    for name, p in predictors.items():
        if "logebv" not in p.learned.outputs:
            out[name] = None
            continue
        res = standard_predictions(p, arrays, rows, None if g_mag is None else g_mag[rows])
        pred, err = res["ebv"], res["ebv_error"]
        ref = ebv_apogee[rows]
        ok = np.isfinite(pred) & np.isfinite(ref)
        r = pred[ok] - ref[ok]
        z = r / err[ok]
        out[name] = {
            "z_spread": float(1.4826 * np.median(np.abs(z - np.median(z)))),
            "median_sigma": float(np.median(err[ok])),
            "sigma": float(1.4826 * np.median(np.abs(r - np.median(r)))),
            "bias": float(np.median(r)),
            "spearman": float(spearmanr(pred[ok], ref[ok]).statistic),
            "median_apogee": float(np.median(ref[ok])),
        }
    return out


def _n_cell(e: Mapping[str, Any]) -> str:
    """The n column: stars (train/val/test), and the cluster members left out as outside the domain."""
    sp = e["splits"]
    cell = f"{e['n']} ({sp['train']}/{sp['val']}/{sp['test']})"
    return cell + (f" +{e['members_outside_domain']} out" if e.get("members_outside_domain") else "")


def _fmt(s: Mapping[str, float] | None, digits: int) -> str:
    if not s:
        return "–"
    return f"{s['median']:.{digits}f} [{s['p16']:.{digits}f}, {s['p84']:.{digits}f}]"


def _num(v: float | None, fmt: str) -> str:
    return "–" if v is None else f"{v:{fmt}}"


def render_distance_table(apogee: Mapping[str, Any]) -> list[str]:
    """Markdown lines of the cluster table with the literature distance and reddening (empty when no
    group has one)."""
    groups = {g: e for g, e in apogee.items() if g != "reddening" and "with_distance" in e}
    if not groups:
        return []
    lines = [
        "",
        "## Cluster giants with their cluster's literature distance and reddening (g_fakemag, logebv)",
        "",
        "Each member gets the tokens the catalogue gives a star with a parallax and an E(B−V): g_fakemag = "
        "ϖ·10^(0.2 G) with ϖ = 1000/d[pc] mas of its cluster's literature distance (σ_ϖ 5 %, no Gaia zero "
        "point) and its own G, and ln E(B−V) of the cluster's literature reddening (CLUSTERS in the script), "
        "through `xpengine.features.astrometry` (`pseudo_luminosity`, `ebv_to_logebv`). Contexts: the "
        "standard input alone (as in the table above), plus g_fakemag (the catalogue job's default context "
        'for gaia-xp), plus g_fakemag and logebv (BP/RP 0–28 to fit 64 tokens). "–" in every column: the '
        'model never read those tokens in training. E(B−V) is the model\'s prediction ("–" where logebv '
        "is in its context). Age in range, |Δmass|: against the star's own cluster (globulars 11–13.5 Gyr, "
        "0.8 M☉). Δlogg: median predicted − APOGEE logg. The n column gives the train/val/test split of "
        "the APOGEE×XP file: members of the training split taught the models their Teff, logg, [M/H] and "
        "[α/M], never a mass, an age, a g_fakemag or an E(B−V) (real stars had none in training).",
        "",
        "| group | n (train/val/test; +members outside the domain) | lit. d [kpc] / E(B−V) / age [Gyr] / mass [M☉] | model | context | "
        "Δlogg | [M/H] | E(B−V) | mass [M☉] | age [Gyr] | age > 8 Gyr | mass < 1 M☉ | age in lit. range | "
        "median \\|Δmass\\| [M☉] |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for gname, e in groups.items():
        lit = e.get("literature")
        lit_s = (
            f"{lit['distance_kpc']:g} / {lit['ebv']:.2f} / {lit['age_gyr'][0]:g}–{lit['age_gyr'][1]:g} / "
            f"{lit['rgb_mass']:.2f}"
            if lit
            else "each star's cluster"
        )
        head = f"| {gname} | {_n_cell(e)} | {lit_s} |"
        for model, runs in e["with_distance"].items():
            for ctx, r in runs.items():
                if "not_read" in r:
                    lines.append(f"{head} {model} | {ctx} |" + " – |" * 9)
                    continue
                lines.append(
                    f"{head} {model} | {ctx} | {_num(r.get('median_dlogg_apogee'), '+.2f')} | "
                    f"{_fmt(r['m_h'], 2)} | {_fmt(r.get('ebv'), 2)} | {_fmt(r['mass'], 2)} | "
                    f"{_fmt(r['age'], 1)} | {_num(r.get('fraction_age_above_8gyr'), '.2f')} | "
                    f"{_num(r.get('fraction_mass_below_1'), '.2f')} | "
                    f"{_num(r.get('fraction_age_in_literature_range'), '.2f')} | "
                    f"{_num(r.get('median_abs_dmass'), '.2f')} |"
                )
    return lines


def render_markdown(result: Mapping[str, Any]) -> str:
    lines = [
        "# Real-star checks",
        "",
        command_line(result),
        "",
    ]
    lines += ["## Single stars (real DR3 XP alone, `Predictor.from_xp`)", ""]
    lines += [
        "| star | model | Teff [K] | logg | [M/H] | mass [M☉] | age [Gyr] | flags |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for star, entry in result["single_stars"].items():
        lit = entry["literature"]
        if lit:
            lines.append(
                f"| {star} | literature | {lit['teff']:.0f} | {lit['logg']:.2f} | {lit['m_h']:+.2f} | "
                f"{lit['mass']:.2f} | {lit['age']:.1f} | |"
            )
        for model, r in entry["models"].items():

            def cell(k: str, fmt: str, r: Mapping[str, Any] = r) -> str:
                v, e = r.get(k), r.get(f"{k}_error")
                return (
                    "–"
                    if v is None
                    else (f"{v:{fmt}} ± {e:{fmt.lstrip('+')}}" if e is not None else f"{v:{fmt}}")
                )

            lines.append(
                f"| {star} | {model} | {cell('teff', '.0f')} | {cell('logg', '.2f')} | {cell('m_h', '+.2f')} | "
                f"{cell('mass', '.2f')} | {cell('age', '.1f')} | {r['flag_names']} |"
            )
    if result.get("apogee"):
        lines += [
            "",
            "## Cluster and metal-poor field giants (APOGEE×XP, standard input, no parallax)",
            "",
            "Median [16th, 84th percentile] of the predictions; literature [Fe/H], age and giant mass beside.",
            "z: median / rms of (ln predicted − ln literature) over the predicted σ and the literature's in",
            "quadrature (ln age: the range's middle, half its width; ln mass: 7 %; E(B−V): 0.02 mag); rms ≈ 1 for honest σ.",
            "",
            "| group | n (train/val/test; +members outside the domain) | lit. [Fe/H] / age / mass | model | [M/H] | mass [M☉] | age [Gyr] | age > 8 Gyr | mass < 1 M☉ | mass z | age z | E(B−V) z |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for gname, e in result["apogee"].items():
            if gname == "reddening":
                continue
            lit = e.get("literature")
            lit_s = (
                f"{lit['fe_h']:+.2f} / {lit['age_gyr'][0]:g}–{lit['age_gyr'][1]:g} / {lit['rgb_mass']:.2f}"
                if lit
                else f"APOGEE median {e['apogee_m_h_median']:+.2f}"
            )
            for model, r in e["models"].items():
                fa, fm = r.get("fraction_age_above_8gyr"), r.get("fraction_mass_below_1")

                def z(k: str, r: Mapping[str, Any] = r) -> str:
                    v = r.get(k)
                    return "–" if not v else f"{v['median']:+.2f} / {v['rms']:.2f}"

                lines.append(
                    f"| {gname} | {_n_cell(e)} | {lit_s} | {model} | "
                    f"{_fmt(r['m_h'], 2)} | {_fmt(r['mass'], 2)} | {_fmt(r['age'], 1)} | "
                    f"{'–' if fa is None else f'{fa:.2f}'} | {'–' if fm is None else f'{fm:.2f}'} | "
                    f"{z('mass_z')} | {z('age_z')} | {z('ebv_z')} |"
                )
        lines += render_distance_table(result["apogee"])
        red = result["apogee"]["reddening"]
        lines += [
            "",
            f"## E(B−V) from XP vs APOGEE AK_TARG / 0.352 (test split, {red['n']} stars)",
            "",
            "z spread: robust spread of (pred − ref)/σ_pred; AK_TARG's own error (≈ 0.1 mag) keeps it above 1.",
            "",
            "| model | robust σ [mag] | bias [mag] | Spearman ρ | median AK_TARG/0.352 | median σ_pred [mag] | z spread |",
            "|---|---|---|---|---|---|---|",
        ]
        for model, r in red.items():
            if model == "n":
                continue
            lines.append(
                f"| {model} | – | – | – | – | – | – |"
                if r is None
                else f"| {model} | {r['sigma']:.3f} | {r['bias']:+.3f} | {r['spearman']:.2f} | {r['median_apogee']:.3f} "
                f"| {r['median_sigma']:.3f} | {r['z_spread']:.2f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = check_parser(__doc__)
    ap.add_argument("--models", nargs="+", default=["gaia-xp", "apogee-xp"])
    ap.add_argument("--apogee-xp", help="APOGEE×XP FITS (../shared/data/apogee_xp/apogee_xp_dev.fits.gz)")
    ap.add_argument("--dataset", help="its training-schema Parquet (xpengine build-dataset apogee-xp)")
    ap.add_argument(
        "--without-sim-to-real",
        action="store_true",
        help="also run each model whose σ carry a sim-to-real term without it (named 'MODEL, σ as on "
        "simulated stars'), side by side",
    )
    args = ap.parse_args(argv)
    if bool(args.apogee_xp) != bool(args.dataset):
        ap.error("--apogee-xp and --dataset go together")
    logging.basicConfig(level=logging.WARNING)
    predictors = {}
    for m in args.models:
        predictors[m] = Predictor.load(m)
        if args.without_sim_to_real and predictors[m].sim_to_real:
            predictors[f"{m}, σ as on simulated stars"] = Predictor.load(m, sim_to_real=False)
    result: dict[str, Any] = {
        **run_header("benchmarks/real_star_checks.py", argv),
        "single_stars": single_stars(predictors),
        "apogee": apogee_checks(predictors, args.apogee_xp, args.dataset) if args.apogee_xp else None,
    }
    write_outputs(result, args.json, args.markdown, render_markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
