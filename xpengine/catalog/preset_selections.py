"""The row-selection presets: good-quality giants and red-clump candidates (catalogue rows).

The `giants` cuts (`GIANT_PARAMS`, `giant_conditions`) are also the selection of every statistical
preset (`xpengine.catalog.preset_statistics`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from xpengine.catalog.errors import QueryError
from xpengine.catalog.preset_sql import Preset, PresetParam, sql_number, where_clause
from xpengine.features.flags import SourceFlag

if TYPE_CHECKING:
    from xpengine.catalog.query import CatalogConnection

__all__ = [
    "DEFAULT_EXCLUDE_FLAGS",
    "GIANTS",
    "GIANT_PARAMS",
    "RC_EXCLUDE_FLAGS",
    "RED_CLUMP",
    "flag_cut",
    "giant_conditions",
]

log = logging.getLogger("xpengine.catalog.presets")  # the records keep the presets' logger

DEFAULT_EXCLUDE_FLAGS: int = int(
    SourceFlag.NO_PREDICTION
    | SourceFlag.OUTSIDE_TRAINING_DOMAIN
    | SourceFlag.HIGH_UNCERTAINTY
    | SourceFlag.G_MISMATCH
)
"""Flag bits that disqualify a source in every preset: NO_PREDICTION, OUTSIDE_TRAINING_DOMAIN,
HIGH_UNCERTAINTY and (since session 29) G_MISMATCH, a G that disagrees with the star's own XP, by which every
label was normalised (bits 18, 16, 17, 14 of `xpengine.features.flags.SourceFlag`; 475136)."""


_QUALITY = PresetParam(
    "exclude_flags",
    DEFAULT_EXCLUDE_FLAGS,
    "",
    "sources with any of these flag bits are dropped (default: NO_PREDICTION | OUTSIDE_TRAINING_DOMAIN "
    "| HIGH_UNCERTAINTY | G_MISMATCH = 475136; 0 keeps everything)",
    kind=int,
    minimum=0,
)

GIANT_PARAMS: tuple[PresetParam, ...] = (
    _QUALITY,
    PresetParam("logg_max", 3.5, "dex", "giants: logg < logg_max", nullable=True),
    PresetParam(
        "logg_min", None, "dex", "optional lower bound: logg ≥ logg_min (e.g. a slice 2.3–2.7)", nullable=True
    ),
    PresetParam("teff_error_max", 150.0, "K", "σ(Teff) ≤ this", minimum=0, nullable=True),
    PresetParam("logg_error_max", 0.3, "dex", "σ(logg) ≤ this", minimum=0, nullable=True),
    PresetParam("m_h_error_max", 0.2, "dex", "σ([M/H]) ≤ this", minimum=0, nullable=True),
    PresetParam("mass_rel_error_max", 0.3, "", "σ(mass)/mass ≤ this", minimum=0, nullable=True),
    PresetParam("age_rel_error_max", 0.5, "", "σ(age)/age ≤ this", minimum=0, nullable=True),
)


def flag_cut(p: dict[str, Any]) -> list[str]:
    mask = int(p["exclude_flags"])
    return [f"(flags & {mask}) = 0"] if mask else []


def giant_conditions(p: dict[str, Any], user_set: frozenset[str], cat: CatalogConnection) -> list[str]:
    """WHERE conditions of the `giants` selection (see its documentation)."""
    cols = set(cat.columns)
    conds = flag_cut(p)
    if p["logg_max"] is not None:
        conds.append(f"isfinite(logg) AND logg < {sql_number(p['logg_max'])}")
    if p["logg_min"] is not None:
        conds.append(f"isfinite(logg) AND logg >= {sql_number(p['logg_min'])}")
    for label, key, relative in (
        ("teff", "teff_error_max", False),
        ("logg", "logg_error_max", False),
        ("m_h", "m_h_error_max", False),
        ("mass", "mass_rel_error_max", True),
        ("age", "age_rel_error_max", True),
    ):
        v = p[key]
        if v is None:
            continue
        if label not in cols or f"{label}_error" not in cols:
            if key in user_set:
                raise QueryError(
                    f"parameter {key!r} cuts on {label}_error, which this catalogue does not have"
                )
            log.info("catalogue has no %s column: default cut %s skipped", label, key)
            continue
        if relative:
            conds.append(
                f"isfinite({label}) AND isfinite({label}_error) AND {label} > 0 "
                f"AND {label}_error <= {sql_number(v)} * {label}"
            )
        else:
            conds.append(f"isfinite({label}_error) AND {label}_error <= {sql_number(v)}")
    return conds


# --------------------------------------------------------------------------------------------
# giants
# --------------------------------------------------------------------------------------------
_GIANTS_DOC = """\
Good-quality giants: every catalogue column of the rows that pass
  * no flag bit of `exclude_flags` (default NO_PREDICTION | OUTSIDE_TRAINING_DOMAIN | HIGH_UNCERTAINTY),
  * logg < logg_max (3.5 dex; the paper's training set is evolved stars) [and logg ≥ logg_min if set],
  * predicted 1σ uncertainties: σ(Teff) ≤ 150 K, σ(logg) ≤ 0.3 dex, σ([M/H]) ≤ 0.2 dex,
    σ(mass)/mass ≤ 0.3, σ(age)/age ≤ 0.5 (each adjustable, 'none' switches one off; a default cut on
    a label the catalogue lacks is skipped).
Non-finite values fail every cut. For comparison, the robust σ of truth − prediction on the paper's test set
(Zhang et al. 2026): Teff 42 K, logg 0.13 dex, [M/H] 0.08 dex, mass 0.11 Msun, age 1.3 Gyr."""


def _build_giants(p: dict[str, Any], user_set: frozenset[str], cat: CatalogConnection) -> str:
    return "SELECT *\nFROM catalog\n" + where_clause(giant_conditions(p, user_set, cat))


# --------------------------------------------------------------------------------------------
# red clump
# --------------------------------------------------------------------------------------------
_RC_DOC = """\
Red-clump candidates: the red clump as a standard candle in Gaia, and the cuts of Bovy et al. 2014
(ApJ 790, 127, §2; "The APOGEE red-clump catalog") on the predicted Teff, logg and [M/H].
By default a candidate needs a distance from its own parallax (flag DISTANCE_FROM_PARALLAX:
zero-point-corrected ϖ/σ_ϖ ≥ 5, RUWE ≤ 1.4) and a dereddened absolute magnitude
  * mg0_min ≤ M_G0 ≤ mg0_max, M_G0 = G − 5 log10(distance_pc / 10 pc) − A_G,
with the catalogue's predicted E(B−V). The default window is the red clump's M_G = 0.44 ± 0.20 mag
(Hawkins et al. 2017, MNRAS 471, 722) ± 2σ. A_G = (A_G/E(B−V)) · E(B−V) with the star's own coefficient
at its predicted Teff, logg, [M/H] and E(B−V) (extinction=mist, the default since session 25: the SQL
function a_g_per_ebv, the law the catalogue's M_G uses; about 2.55 for a clump star at E(B−V) 0.1,
2.43 at 0.6). extinction=constant takes r_g for every star instead (2.74, Casagrande & VandenBerg 2018's
value for a solar-type star, the preset's rule until session 24, which made a clump star behind
E(B−V) = 0.5 about 0.15 mag too bright). First-ascent giants cross the clump's luminosity, so the
Teff–logg–[M/H] cuts below still apply. Set mg0_min=none to drop the magnitude cut (then stars without
a significant parallax are kept too, at a much lower purity: the predicted Teff and logg alone do not
separate the clump from the RGB at XP precision). On the simulated sky of benchmarks/sim_sky_checks.py
(seed 23, gaia-xp) the magnitude cut raised the purity from 0.37 to 0.74 at a completeness of 0.17.
Within the window the clump and the first-ascent giants of the same luminosity differ mainly in Teff:
at its [M/H] the clump lies ≈ 200 K hotter than the RGB. A candidate must therefore also be hotter than
Bovy's Teff_ref by teff_offset_min (default 70 K, none: no cut), half that separation, measured
the same on two independent sets: the true Teff − Teff_ref of the MIST calibration sky (seed 31) in the
window, clump +174 K and RGB −30 K (midpoint 72 K), and the ASPCAP labels of the real APOGEE×XP
validation giants, Bovy-RC +165 K and other giants of logg 2.2–2.8 −19 K (midpoint 73 K).
The quality cut `exclude_flags` leaves HIGH_UNCERTAINTY out by default: that bit is set mostly by the
mass and age σ, which this selection does not use, but also by σ(Teff) > 250 K, σ(logg) > 0.4 dex or
σ([M/H]) > 0.3 dex (the catalogue's flag policy), which bear on the cuts below; exclude_flags=475136
(NO_PREDICTION | OUTSIDE_TRAINING_DOMAIN | HIGH_UNCERTAINTY | G_MISMATCH) drops those rows too.
Bovy et al. 2014 cuts ([M/H] stands in for [Fe/H]):
  * 1.8 ≤ logg ≤ 0.0018 dex K^-1 · (Teff − Teff_ref) + 2.5 dex,
    Teff_ref = −382.5 K dex^-1 · [M/H] + 4607 K,
  * Z ≤ 0.06, with Z = 0.017 · 10^[M/H] (Z_sun = 0.017, as in the APOGEE-RC code),
  * Teff − Teff_ref ≥ teff_offset_min (this preset's addition, above),
  * no flag bit of `exclude_flags` (default NO_PREDICTION | OUTSIDE_TRAINING_DOMAIN | G_MISMATCH, above).
The colour–metallicity cuts need dereddened 2MASS (J−Ks)0, which the catalogue does not hold. Give a
table with columns source_id and jk0 (mag) as a join (`--join colours=FILE`) and set jk0_view=colours
to add them:
  * 0.5 ≤ (J−Ks)0 < 0.8 (0.8: the upper limit of the published catalogue code),
  * 1.21 [(J−Ks)0 − 0.05]^9 + 0.0011 ≤ Z ≤ 2.58 [(J−Ks)0 − 0.40]^3 + 0.0034.
Without them the sample keeps more first-ascent RGB contaminants at the same Teff and logg; the
extra logg cut of later APOGEE-RC releases (logg ≤ (Teff − 4800 K)/1000 K + 2.75) is not applied.
Formulas checked against the catalogue's code (github jobovy/apogee, apogee/samples/rc.py,
`loggteffcut`, `jkzcut`: the rounded constants above follow from its definitions)."""

RC_EXCLUDE_FLAGS: int = int(
    SourceFlag.NO_PREDICTION | SourceFlag.OUTSIDE_TRAINING_DOMAIN | SourceFlag.G_MISMATCH
)
"""The red-clump preset's default quality cut: NO_PREDICTION | OUTSIDE_TRAINING_DOMAIN | G_MISMATCH (344064;
G_MISMATCH since session 29)."""

_RC_PARAMS: tuple[PresetParam, ...] = (
    PresetParam(
        "exclude_flags",
        RC_EXCLUDE_FLAGS,
        "",
        "sources with any of these flag bits are dropped (default: NO_PREDICTION | OUTSIDE_TRAINING_DOMAIN "
        "| G_MISMATCH = 344064; HIGH_UNCERTAINTY, set mostly by the mass/age σ this selection does not use "
        "but also by large Teff/logg/[M/H] σ, is kept: 475136 drops it too)",
        kind=int,
        minimum=0,
    ),
    PresetParam(
        "mg0_min",
        0.04,
        "mag",
        "bright limit of the dereddened absolute G (needs a parallax distance; none: no magnitude cut)",
        nullable=True,
    ),
    PresetParam("mg0_max", 0.84, "mag", "faint limit of the dereddened absolute G"),
    PresetParam(
        "extinction",
        "mist",
        "",
        "A_G / E(B−V) of the dereddening: mist (star by star, at the predicted Teff, logg, [M/H], E(B−V)) "
        "or constant (r_g for every star)",
        kind=str,
        choices=("mist", "constant"),
    ),
    PresetParam("r_g", 2.74, "", "A_G / E(B−V) for every star (with extinction=constant)", minimum=0),
    PresetParam("logg_min", 1.8, "dex", "lower logg limit"),
    PresetParam("logg_slope", 0.0018, "dex/K", "slope of the upper logg limit in Teff − Teff_ref"),
    PresetParam("logg_zero", 2.5, "dex", "upper logg limit at Teff = Teff_ref"),
    PresetParam("teff_ref_slope", -382.5, "K/dex", "Teff_ref = teff_ref_slope·[M/H] + teff_ref_zero"),
    PresetParam("teff_ref_zero", 4607.0, "K", "Teff_ref at [M/H] = 0"),
    PresetParam(
        "teff_offset_min",
        70.0,
        "K",
        "minimum Teff − Teff_ref: the clump lies hotter than the RGB at its [M/H] (none: no cut)",
        nullable=True,
    ),
    PresetParam("z_solar", 0.017, "", "solar metal mass fraction for Z = z_solar·10^[M/H]", minimum=0),
    PresetParam("z_max", 0.06, "", "upper limit on Z", minimum=0),
    PresetParam(
        "jk0_view",
        None,
        "",
        "name of a joined view with source_id, jk0 ((J−Ks)0, mag)",
        kind=str,
        nullable=True,
    ),
    PresetParam("jk0_min", 0.5, "mag", "lower (J−Ks)0 limit (with jk0_view)"),
    PresetParam("jk0_max", 0.8, "mag", "upper (J−Ks)0 limit, exclusive (with jk0_view)"),
)


def _build_red_clump(p: dict[str, Any], user_set: frozenset[str], cat: CatalogConnection) -> str:
    zexpr = f"({sql_number(p['z_solar'])} * pow({sql_number(10.0)}, c.m_h))"
    teff_ref = f"({sql_number(p['teff_ref_slope'])} * c.m_h + {sql_number(p['teff_ref_zero'])})"
    conds = [c.replace("flags", "c.flags") for c in flag_cut(p)]
    conds += [
        "isfinite(c.teff) AND isfinite(c.logg) AND isfinite(c.m_h)",
        f"c.logg >= {sql_number(p['logg_min'])}",
        f"c.logg <= {sql_number(p['logg_slope'])} * (c.teff - {teff_ref}) + {sql_number(p['logg_zero'])}",
        f"{zexpr} <= {sql_number(p['z_max'])}",
    ]
    if p["teff_offset_min"] is not None:
        conds.append(f"c.teff - {teff_ref} >= {sql_number(p['teff_offset_min'])}")
    if p["mg0_min"] is None:
        for k in ("mg0_max", "r_g", "extinction"):
            if k in user_set:
                raise QueryError(f"parameter {k!r} needs the magnitude cut (mg0_min is none)")
    elif p["extinction"] == "mist" and "r_g" in user_set:
        raise QueryError("parameter 'r_g' needs extinction=constant (the default takes each star's own A_G)")
    else:
        need = [col for col in ("phot_g_mean_mag", "distance_pc", "ebv") if col not in cat.columns]
        if need:
            raise QueryError(
                f"the red-clump magnitude cut needs column(s) {need}, which the catalogue lacks; "
                "set mg0_min=none to select on Teff, logg and [M/H] alone"
            )
        if p["extinction"] == "mist":
            r_g = "a_g_per_ebv(c.teff, c.logg, c.m_h, c.ebv)"
        else:
            r_g = sql_number(p["r_g"])
        mg0 = f"(c.phot_g_mean_mag - 5.0 * log10(c.distance_pc / 10.0) - {r_g} * c.ebv)"
        plx = int(SourceFlag.DISTANCE_FROM_PARALLAX)
        if not cat.count(f"SELECT 1 FROM catalog WHERE (flags & {plx}) != 0 LIMIT 1"):  # said, not silent
            log.warning(
                "red-clump: no row of the catalogue has a parallax distance (DISTANCE_FROM_PARALLAX: ϖ/σ_ϖ ≥ 5, "
                "RUWE ≤ 1.4), so the M_G0 window keeps none; -p mg0_min=none selects on Teff, logg and [M/H] alone"
            )
        conds += [
            f"(c.flags & {int(SourceFlag.DISTANCE_FROM_PARALLAX)}) != 0",
            "isfinite(c.phot_g_mean_mag) AND isfinite(c.distance_pc) AND c.distance_pc > 0 AND isfinite(c.ebv)",
            f"{mg0} >= {sql_number(p['mg0_min'])} AND {mg0} <= {sql_number(p['mg0_max'])}",
        ]
    view = p["jk0_view"]
    if view is None:
        for k in ("jk0_min", "jk0_max"):
            if k in user_set:
                raise QueryError(f"parameter {k!r} needs jk0_view (a joined table with source_id and jk0)")
        return "SELECT c.*\nFROM catalog c\n" + where_clause(conds)
    if view not in cat.views or view == "catalog":
        raise QueryError(
            f"jk0_view {view!r} is not a joined table; join one with --join {view}=FILE "
            f"(joined: {sorted(v for v in cat.views if v != 'catalog')})"
        )
    if "jk0" not in cat.views[view]:
        raise QueryError(f"joined table {view!r} has no jk0 column (columns: {cat.views[view]})")
    conds += [
        f"isfinite(j.jk0) AND j.jk0 >= {sql_number(p['jk0_min'])} AND j.jk0 < {sql_number(p['jk0_max'])}",
        f"{zexpr} >= {sql_number(1.21)} * pow(j.jk0 - {sql_number(0.05)}, 9) + {sql_number(0.0011)}",
        f"{zexpr} <= {sql_number(2.58)} * pow(j.jk0 - {sql_number(0.40)}, 3) + {sql_number(0.0034)}",
    ]
    return f"SELECT c.*, j.jk0\nFROM catalog c JOIN {view} j USING (source_id)\n" + where_clause(conds)


GIANTS = Preset(
    "giants",
    "good-quality giants (flag and σ cuts, logg < 3.5): catalogue rows",
    _GIANTS_DOC,
    GIANT_PARAMS,
    _build_giants,
    requires=("logg", "flags"),
    units={},
)

RED_CLUMP = Preset(
    "red-clump",
    "red-clump candidates (parallax M_G0 window + Bovy et al. 2014 Teff–logg–[M/H] cuts): catalogue rows",
    _RC_DOC,
    _RC_PARAMS,
    _build_red_clump,
    requires=("teff", "logg", "m_h", "flags"),
    units={"jk0": "mag"},
)
