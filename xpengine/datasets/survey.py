"""Training set from a spectroscopic survey with evolution labels: APOGEE DR17 allStar + DistMass VAC,
cross-matched with Gaia DR3 XP continuous spectra and gaia_source (Zhang et al. 2026, §2).

Inputs (`SurveyInputs`):
- allStar FITS (HDU 1; REFERENCE §6): `APOGEE_ID`, `GAIAEDR3_SOURCE_ID` (0 = no Gaia match), `TEFF`,
  `TEFF_ERR`, `LOGG`, `LOGG_ERR`, `M_H`, `M_H_ERR`, `ASPCAPFLAG`, `STARFLAG`, `EXTRATARG`; optional
  `ALPHA_M`(`_ERR`), `FE_H`, `J`, `H`, `K` and `*_ERR`, `SNR`.
- DistMass FITS (Stone-Martinez et al. 2024): `APOGEE_ID`, a mass column [M☉] and its error, an age
  column [yr, linear] and its error [dex, one or two values]; names configurable (defaults `MASS`,
  `MASS_ERR`, `AGE_COR_SS`, `AGE_ERR`: the mass names are not confirmed for v1.6.1).
- Gaia DR3 bulk partitions: `XpContinuousMeanSpectrum_*` and `GaiaSource_*` (directory or URL),
  read with `xpengine.io`; optional 2MASS table (`source_id`, `j_m`, `j_msigcom`, …) and E(B−V) table
  (`source_id`, `ebv`, `ebv_error`).

Recipe and decisions:
1. allStar rows with EXTRATARG bit 4 (duplicate observation) are dropped; rows with
   GAIAEDR3_SOURCE_ID = 0 cannot be matched and are dropped. If a Gaia source is still matched by
   several rows (two APOGEE ids), the highest-SNR row is kept.
2. ASPCAP labels (Teff, logg, [M/H], [α/M]) become NaN, the star kept, when ASPCAPFLAG bit 19 (M_H_BAD)
   or bit 23 (STAR_BAD) is set or STARFLAG ≠ 0 (paper §2.1). DistMass mass and age are not touched
   by those flags. Old-style sentinels (≤ −9999) are NaN too.
3. DistMass is joined on the stripped APOGEE_ID. The VAC can hold one APOGEE_ID more than once (one
   row per allStar row): the first row with finite mass and age is used.
4. Age [yr] → ln(age/Gyr) with σ = ln(10)·AGE_ERR[dex] (two values averaged). An age column whose
   median is < 100 is rejected (ages in Gyr or log10 years, not linear years).
5. Quality cuts of the paper (§2.4): 0.5 < M/M☉ < 4, 0 < age < 14 Gyr, −2.5 < [M/H] < 0.7.
   A star with a FINITE value outside a cut is DROPPED, as the paper does (an isochrone mass/age
   outside the grid flags a failed fit; the paper's counts are after dropping). The [M/H] cut applies
   to the [M/H] left after step 2 (a flagged, NaN [M/H] does not drop the star: the paper keeps
   flagged stars with missing labels). Stars with NO usable mass or age (not in DistMass, NaN) are
   dropped by default too (the paper's 319,585 stars all carry mass and age);
   `keep_without_evolution=True` keeps them with NaN mass/ln_age tokens.
6. Stars without an XP continuous row are dropped (a training star needs its XP tokens); stars with
   XP but without a gaia_source row are kept (no G flux: no XP tokens, flagged NO_GAIA_SOURCE) — they
   are reported in the summary.
7. XP tokens: archive coefficients → the engine's representation (`xpengine.spectra.
   project_coefficients`, errors with the archive correlations when `with_correlations`), relevancy
   masking as in the paper, G normalisation; colours, pseudo-luminosity, ln E(B−V):
   `xpengine.features.build_tokens`. 2MASS from the `tmass` table when given, else allStar J/H/K.
8. Split: `split_by_source_id` with test 10% and validation 9% of all stars (the paper's 90/10 with a
   validation slice of 10% of the training part), deterministic by source_id.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xpengine.datasets.labels import (
    AGE_RANGE_GYR,
    M_H_RANGE_DEX,
    MASS_RANGE_MSUN,
    age_years_to_ln_age,
    apogee_missing_to_nan,
    bad_aspcap_mask,
    check_age_in_years,
    extratarg_duplicate_mask,
    in_open_range,
    strip_apogee_id,
)
from xpengine.datasets.splits import DEFAULT_SALT, split_by_source_id, split_counts
from xpengine.datasets.survey_gaia import match_xp, token_inputs
from xpengine.io._arrays import source_id_numpy
from xpengine.io.fits_tables import read_fits_columns  # re-exported: it lived here

__all__ = [
    "ALLSTAR_OPTIONAL",
    "ALLSTAR_REQUIRED",
    "SurveyBuild",
    "SurveyInputs",
    "apply_cuts",
    "build_survey",
    "join_distmass",
    "prepare_allstar",
    "read_fits_columns",
]

logger = logging.getLogger(__name__)

ALLSTAR_REQUIRED: tuple[str, ...] = (
    "APOGEE_ID",
    "GAIAEDR3_SOURCE_ID",
    "TEFF",
    "TEFF_ERR",
    "LOGG",
    "LOGG_ERR",
    "M_H",
    "M_H_ERR",
    "ASPCAPFLAG",
    "STARFLAG",
    "EXTRATARG",
)
ALLSTAR_OPTIONAL: tuple[str, ...] = (
    "ALPHA_M",
    "ALPHA_M_ERR",
    "J",
    "J_ERR",
    "H",
    "H_ERR",
    "K",
    "K_ERR",
    "SNR",
)
_ASPCAP_LABELS: tuple[tuple[str, str], ...] = (
    ("teff", "TEFF"),
    ("logg", "LOGG"),
    ("m_h", "M_H"),
    ("alpha_m", "ALPHA_M"),
)


@dataclass
class SurveyInputs:
    """Where the survey builder reads from (paths or fsspec URLs for the Gaia parts)."""

    allstar: str
    distmass: str
    xp: str
    gaia_source: str | None = None
    tmass: str | None = None
    ebv: str | None = None


@dataclass
class SurveyBuild:
    """Result of `build_survey`: training-schema table and a summary (also its provenance)."""

    table: Any  # pyarrow.Table
    summary: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------
# pure table steps (dicts of (N,) arrays in, dicts out)


def prepare_allstar(
    cols: dict[str, np.ndarray], *, source: str = "allStar columns"
) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """allStar columns → one row per matched Gaia source with cleaned labels (steps 1–2 of the recipe).

    Returns (stars, counts): `stars` holds `source_id` int64, `apogee_id` str, `teff`, `logg`, `m_h`,
    `alpha_m` and `<name>_error` float64 (NaN where flagged/missing), `aspcap_flagged` bool, `snr`,
    `j`, `j_error`, `h`, `h_error`, `k`, `k_error` (NaN when absent); counts of what was dropped.
    GAIAEDR3_SOURCE_ID must be integers: a float column (ids rounded) is a GaiaFileError naming `source`.
    """
    n0 = cols["APOGEE_ID"].shape[0]
    dup = extratarg_duplicate_mask(cols["EXTRATARG"])
    sid = source_id_numpy(cols["GAIAEDR3_SOURCE_ID"], source, "GAIAEDR3_SOURCE_ID")
    no_gaia = sid <= 0
    keep = ~dup & ~no_gaia
    idx = np.flatnonzero(keep)
    snr = apogee_missing_to_nan(cols["SNR"]) if "SNR" in cols else np.full(n0, np.nan)
    from xpengine.datasets.apogee_xp import select_unique_rows

    uniq = idx[select_unique_rows(sid[idx], snr[idx])]
    counts = {
        "allstar_rows": int(n0),
        "extratarg_duplicates_dropped": int(dup.sum()),
        "no_gaia_match_dropped": int((no_gaia & ~dup).sum()),
        "same_gaia_source_rows_dropped": int(idx.size - uniq.size),
    }
    bad = bad_aspcap_mask(cols["ASPCAPFLAG"], cols["STARFLAG"])[uniq]
    stars: dict[str, np.ndarray] = {
        "source_id": sid[uniq],
        "apogee_id": strip_apogee_id(cols["APOGEE_ID"][uniq]),
        "aspcap_flagged": bad,
        "snr": snr[uniq],
    }
    for tok, col in _ASPCAP_LABELS:
        if col in cols:
            v = apogee_missing_to_nan(cols[col][uniq])
            e = (
                apogee_missing_to_nan(cols[f"{col}_ERR"][uniq])
                if f"{col}_ERR" in cols
                else np.full(v.shape, np.nan)
            )
        else:
            v = e = np.full(uniq.size, np.nan)
        stars[tok] = np.where(bad, np.nan, v)
        stars[f"{tok}_error"] = np.where(bad | np.isnan(v), np.nan, e)
    for band in ("J", "H", "K"):
        m = cols.get(band)
        e = cols.get(f"{band}_ERR")
        stars[band.lower()] = np.full(uniq.size, np.nan) if m is None else np.asarray(m[uniq], np.float64)
        stars[f"{band.lower()}_error"] = (
            np.full(uniq.size, np.nan) if e is None else np.asarray(e[uniq], np.float64)
        )
    counts["aspcap_flagged_labels_nan"] = int(bad.sum())
    return stars, counts


def join_distmass(
    apogee_id: np.ndarray,
    dm: dict[str, np.ndarray],
    *,
    mass_column: str,
    mass_error_column: str | None,
    age_column: str,
    age_error_column: str | None,
    source: str = "DistMass",
) -> dict[str, np.ndarray]:
    """Mass [M☉], its error, ln(age/Gyr) and σ_ln (N,) for each stripped APOGEE_ID (NaN: no match).

    dm: DistMass columns keyed by the given names plus `APOGEE_ID`. Ages must be linear years
    (`check_age_in_years`). Duplicated APOGEE_IDs: the first row with finite mass and age wins, else
    the first row.
    """
    dm_id = strip_apogee_id(dm["APOGEE_ID"])
    mass = apogee_missing_to_nan(dm[mass_column])
    mass_err = (
        apogee_missing_to_nan(dm[mass_error_column]) if mass_error_column else np.full(mass.shape, np.nan)
    )
    age = apogee_missing_to_nan(dm[age_column])
    check_age_in_years(age, column=age_column, source=source)
    age_err = None if not age_error_column else np.asarray(dm[age_error_column], dtype=np.float64)
    if age_err is not None:
        age_err = np.where(age_err <= -9998.0, np.nan, age_err)
    ln_age, ln_age_err = age_years_to_ln_age(age, age_err)
    good = np.isfinite(mass) & np.isfinite(ln_age)
    # order: by id, good rows first, then file order → first row per id is the one to use
    order = np.lexsort((np.arange(dm_id.size), ~good, dm_id))
    first = np.ones(order.size, dtype=bool)
    first[1:] = dm_id[order][1:] != dm_id[order][:-1]
    pick = order[first]  # one row per id, sorted by id
    ids_sorted = dm_id[pick]
    q = np.asarray(apogee_id).astype(str)
    out: dict[str, np.ndarray] = {}
    if ids_sorted.size == 0:
        for name in ("mass", "mass_error", "ln_age", "ln_age_error"):
            out[name] = np.full(q.size, np.nan)
        out["in_distmass"] = np.zeros(q.size, dtype=bool)
        return out
    pos = np.clip(np.searchsorted(ids_sorted, q), 0, ids_sorted.size - 1)
    found = ids_sorted[pos] == q
    row = pick[pos]
    for name, arr in (
        ("mass", mass),
        ("mass_error", mass_err),
        ("ln_age", ln_age),
        ("ln_age_error", ln_age_err),
    ):
        out[name] = np.where(found, arr[row], np.nan)
    out["in_distmass"] = found
    return out


def apply_cuts(
    stars: dict[str, np.ndarray], *, keep_without_evolution: bool = False
) -> tuple[np.ndarray, dict[str, int]]:
    """Rows (N,) bool to keep after the paper's cuts (step 5 of the recipe) and the counts dropped."""
    mass, ln_age, m_h = stars["mass"], stars["ln_age"], stars["m_h"]
    age_gyr = np.exp(ln_age)
    bad_mass = np.isfinite(mass) & ~in_open_range(mass, MASS_RANGE_MSUN)
    bad_age = np.isfinite(age_gyr) & ~in_open_range(age_gyr, AGE_RANGE_GYR)
    bad_mh = np.isfinite(m_h) & ~in_open_range(m_h, M_H_RANGE_DEX)
    no_evo = ~(np.isfinite(mass) & np.isfinite(ln_age))
    drop = bad_mass | bad_age | bad_mh
    if not keep_without_evolution:
        drop |= no_evo
    counts = {
        "mass_cut_dropped": int(bad_mass.sum()),
        "age_cut_dropped": int(bad_age.sum()),
        "m_h_cut_dropped": int(bad_mh.sum()),
        "without_mass_or_age": int(no_evo.sum()),
        "without_mass_or_age_dropped": 0
        if keep_without_evolution
        else int((no_evo & ~(bad_mass | bad_age | bad_mh)).sum()),
    }
    return ~drop, counts


def _survey_stars(
    inputs: SurveyInputs,
    summary: dict[str, Any],
    *,
    mass_column: str,
    mass_error_column: str | None,
    age_column: str,
    age_error_column: str | None,
    keep_without_evolution: bool,
) -> dict[str, np.ndarray]:
    """Steps 1–5 of the recipe: allStar rows with a Gaia match and clean labels, joined to DistMass,
    through the cuts (counts into `summary`)."""
    # 1-2: allStar
    cols = read_fits_columns(inputs.allstar, ALLSTAR_REQUIRED, ALLSTAR_OPTIONAL, what="allStar file")
    stars, counts = prepare_allstar(cols, source=inputs.allstar)
    del cols
    summary.update(counts)
    if stars["source_id"].size == 0:
        raise ValueError(
            f"allStar file {inputs.allstar}: no row with a Gaia match (GAIAEDR3_SOURCE_ID > 0) left after "
            f"dropping EXTRATARG duplicates ({counts})"
        )

    # 3-4: DistMass
    dm_cols = [mass_column, age_column] + [c for c in (mass_error_column, age_error_column) if c]
    dm = read_fits_columns(inputs.distmass, ["APOGEE_ID", *dm_cols], what="DistMass file")
    stars.update(
        join_distmass(
            stars["apogee_id"],
            dm,
            mass_column=mass_column,
            mass_error_column=mass_error_column,
            age_column=age_column,
            age_error_column=age_error_column,
            source=f"DistMass file {inputs.distmass}",
        )
    )
    del dm
    summary["in_distmass"] = int(stars["in_distmass"].sum())

    # 5: cuts
    keep, cut_counts = apply_cuts(stars, keep_without_evolution=keep_without_evolution)
    summary.update(cut_counts)
    stars = {k: v[keep] for k, v in stars.items()}
    if stars["source_id"].size == 0:
        raise ValueError(f"no star survives the quality cuts ({cut_counts}); check the mass/age columns")
    logger.info("%d survey stars after flags, DistMass join and cuts", stars["source_id"].size)
    return stars


def build_survey(
    inputs: SurveyInputs,
    *,
    origin: str = "apogee-dr17",
    vocabulary: Any = None,
    mass_column: str = "MASS",
    mass_error_column: str | None = "MASS_ERR",
    age_column: str = "AGE_COR_SS",
    age_error_column: str | None = "AGE_ERR",
    val_fraction: float = 0.09,
    test_fraction: float = 0.1,
    salt: bytes = DEFAULT_SALT,
    keep_without_evolution: bool = False,
    with_correlations: bool = False,
    every_order: bool = False,
    extra_columns: dict[str, Callable[[np.ndarray], np.ndarray]] | None = None,
    provenance: dict[str, Any] | None = None,
) -> SurveyBuild:
    """Build the training-schema table of a survey (recipe in the module docstring).

    vocabulary: default `PAPER_VOCABULARY` (120 tokens; [α/M] then goes to an extra column `alpha_m`).
    with_correlations: read the XP correlations to propagate exact token errors (≈10× slower reading).
    every_order: keep every XP coefficient, ignoring `X_n_relevant_bases` (as the real APOGEE×XP stars' sampled
    spectra keep them): the orders beyond the relevancy carry their noise and errors instead of being left
    out, so that in training the orders present stop telling a model how bright a star is (session 15,
    `benchmarks/relevancy_sensitivity.py`). Default: the archive's rule, as the catalogue applies it.
    extra_columns: name → function(source_id (M,)) → (M,) array, added to the output (e.g. truth).
    provenance: more entries for the summary / provenance metadata.
    """
    from xpengine.datasets.schema import training_table
    from xpengine.features import PAPER_VOCABULARY, build_tokens
    from xpengine.features.tokens import FEATURES_VERSION
    from xpengine.spectra import REPRESENTATION_ID

    vocab = PAPER_VOCABULARY if vocabulary is None else vocabulary
    summary: dict[str, Any] = {"builder": "xpengine.datasets.survey.build_survey", "origin": origin}
    summary.update(provenance or {})
    stars = _survey_stars(
        inputs,
        summary,
        mass_column=mass_column,
        mass_error_column=mass_error_column,
        age_column=age_column,
        age_error_column=age_error_column,
        keep_without_evolution=keep_without_evolution,
    )
    joined, xp_sid, star = match_xp(inputs, stars, summary, with_correlations=with_correlations)

    # 7: tokens. Training stars keep the archive's own G: a star without gaia_source photometry gets no
    # XP tokens here (the catalogue may normalise such stars by their synthetic G, flag G_FROM_XP)
    data = token_inputs(inputs, joined, xp_sid, star, vocab, summary)
    if every_order:
        for band in ("bp", "rp"):  # NaN = unknown: every coefficient counts as relevant
            data[f"{band}_n_relevant_bases"] = np.full(len(data["source_id"]), np.nan)
    tb = build_tokens(data, vocab, g_from_xp=False)

    # 8: split and table
    split = split_by_source_id(xp_sid, val_fraction=val_fraction, test_fraction=test_fraction, salt=salt)
    extra: dict[str, np.ndarray] = {
        "flags": tb.flags,
        "apogee_id": star["apogee_id"].astype(str),
        "aspcap_flagged": star["aspcap_flagged"].astype(bool),
        "snr": star["snr"].astype(np.float32),
    }
    g = data.get("phot_g_mean_mag")
    extra["phot_g_mean_mag"] = (np.full(xp_sid.size, np.nan) if g is None else g).astype(np.float32)
    if "alpha_m" not in vocab:
        extra["alpha_m"] = star["alpha_m"].astype(np.float32)
        extra["alpha_m_err"] = star["alpha_m_error"].astype(np.float32)
    for name, fn in (extra_columns or {}).items():
        extra[name] = np.asarray(fn(xp_sid))
    xp_cols = vocab.indices(vocab.xp_names)
    n_no_xp = int(np.sum((~np.isfinite(tb.values[:, xp_cols])).all(axis=1)))
    summary.update(
        {
            "stars": int(xp_sid.size),
            "stars_without_xp_tokens": n_no_xp,  # until session 17: stars without bp0 (NO_BP included)
            "stars_without_bp_tokens": int(np.sum(~np.isfinite(tb.values[:, vocab.index("bp0")]))),
            "token_settings": {k: v for k, v in tb.parameters.items() if k != "representation"},
            "split_counts": split_counts(split),
            "split": {
                "function": "xpengine.datasets.splits.split_by_source_id",
                "val_fraction": val_fraction,
                "test_fraction": test_fraction,
                "salt": salt.decode("latin-1"),
            },
            "inputs": {k: v for k, v in vars(inputs).items()},
            "mass_column": mass_column,
            "mass_error_column": mass_error_column,
            "age_column": age_column,
            "age_error_column": age_error_column,
            "cuts": {"mass_msun": MASS_RANGE_MSUN, "age_gyr": AGE_RANGE_GYR, "m_h_dex": M_H_RANGE_DEX},
            "cut_policy": "finite out-of-range value drops the star; "
            + ("stars without mass/age kept" if keep_without_evolution else "stars without mass/age dropped"),
            "xp_representation": REPRESENTATION_ID,
            "xp_correlations_used": bool(with_correlations),
            "xp_relevancy": "every coefficient kept (X_n_relevant_bases ignored)"
            if every_order
            else "the archive's X_n_relevant_bases",
            "features_version": FEATURES_VERSION,
            "vocabulary": vocab.name,
        }
    )
    logger.info("survey data set: %d stars %s", xp_sid.size, summary["split_counts"])
    table = training_table(
        xp_sid, tb.values, tb.errors, vocab, split=split, origin=origin, extra=extra, provenance=summary
    )
    return SurveyBuild(table=table, summary=summary)
