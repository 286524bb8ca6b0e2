"""Galactic-archaeology presets: named, parameterised SQL queries on the `catalog` view.

| preset            | returns                                   | picture (`--plot`)                          |
|-------------------|-------------------------------------------|---------------------------------------------|
| `giants`          | catalogue rows of good-quality giants     |                                             |
| `red-clump`       | catalogue rows of red-clump candidates    |                                             |
| `age-metallicity` | median age and scatter per [M/H] bin      | age vs [M/H] (Zhang et al. 2026, Fig. 15)   |
| `age-map`         | median age per (l, b) cell or HEALPix px  | sky map of median age                       |
| `mass-age`        | 2-D mass × age histogram, median [M/H]    | mass–age plane coloured by median [M/H]     |

The three statistical presets run on the `giants` selection and accept all of its parameters.

Missing values: the catalogue stores NaN (or null) for a missing prediction. DuckDB orders NaN above
every number (`NaN > 3` is true), so every cut first requires `isfinite(column)`; null flags fail the
flag cut. Statistics are computed in float64 (`median` = the mean of the two middle values for an
even count, as numpy; `quantile_cont` = numpy's default linear interpolation; robust σ = 1.4826 ×
the median absolute deviation, DuckDB `mad`).

Parameters are validated (type, range) and written into the SQL as numeric literals, so the SQL of
a preset (`xpengine query CATALOG --preset NAME --show-sql`) is a self-contained query that can be
copied and edited.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from xpengine.catalog.errors import QueryError
from xpengine.catalog.plots import plot_age_map, plot_age_metallicity, plot_mass_age
from xpengine.features.flags import SourceFlag

if TYPE_CHECKING:
    from xpengine.catalog.query import CatalogConnection

__all__ = [
    "DEFAULT_EXCLUDE_FLAGS",
    "PRESETS",
    "RC_EXCLUDE_FLAGS",
    "Preset",
    "PresetParam",
    "build_sql",
    "describe_presets",
    "get_preset",
    "plot_age_map",
    "plot_age_metallicity",
    "plot_mass_age",
    "resolve_params",
]

log = logging.getLogger(__name__)

DEFAULT_EXCLUDE_FLAGS: int = int(
    SourceFlag.NO_PREDICTION | SourceFlag.OUTSIDE_TRAINING_DOMAIN | SourceFlag.HIGH_UNCERTAINTY
)
"""Flag bits that disqualify a source in every preset: NO_PREDICTION, OUTSIDE_TRAINING_DOMAIN,
HIGH_UNCERTAINTY (bits 18, 16, 17 of `xpengine.features.flags.SourceFlag`; 458752)."""

ROBUST_SIGMA_FACTOR = 1.4826  # σ of a Gaussian / its median absolute deviation


@dataclasses.dataclass(frozen=True)
class PresetParam:
    """One preset parameter: default, unit, allowed values."""

    name: str
    default: float | int | str | None
    unit: str
    help: str
    kind: type = float  # float | int | str
    minimum: float | None = None
    maximum: float | None = None
    nullable: bool = False  # "none" switches the cut off
    choices: tuple[str, ...] | None = None

    def convert(self, value: Any) -> float | int | str | None:
        """Validate `value` (possibly a command-line string); returns the typed value."""
        where = f"parameter {self.name!r}"
        if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null", "off")):
            if self.nullable:
                return None
            raise QueryError(
                f"{where} cannot be switched off (got {value!r}); expected a {self.kind.__name__}"
            )
        if self.kind is str:
            v = str(value)
            if self.choices and v not in self.choices:
                raise QueryError(f"{where} must be one of {list(self.choices)}, got {v!r}")
            return v
        try:
            if self.kind is int:
                if isinstance(value, float) and not value.is_integer():
                    raise ValueError
                v = int(value) if not isinstance(value, str) else int(value.strip(), 0)
            else:
                v = float(value)
        except (TypeError, ValueError):
            raise QueryError(f"{where} must be a {self.kind.__name__}, got {value!r}") from None
        if isinstance(v, float) and not math.isfinite(v):
            raise QueryError(
                f"{where} must be finite, got {value!r}"
                + (" (use 'none' to switch it off)" if self.nullable else "")
            )
        if self.minimum is not None and v < self.minimum:
            raise QueryError(f"{where} must be ≥ {self.minimum} {self.unit}".rstrip() + f", got {v}")
        if self.maximum is not None and v > self.maximum:
            raise QueryError(f"{where} must be ≤ {self.maximum} {self.unit}".rstrip() + f", got {v}")
        return v


@dataclasses.dataclass(frozen=True)
class Preset:
    """A named query: parameters, the SQL builder, output units, optional picture."""

    name: str
    summary: str
    doc: str
    params: tuple[PresetParam, ...]
    build: Callable[[dict[str, Any], frozenset[str], CatalogConnection], str]
    requires: tuple[str, ...]
    units: Mapping[str, str]
    plot: Callable[..., None] | None = None
    post: Callable[[pa.Table, dict[str, Any]], pa.Table] | None = None

    def param(self, name: str) -> PresetParam:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def _num(v: float | int) -> str:
    """A numeric SQL literal (validated finite number); floats typed DOUBLE (DuckDB reads `0.1` as DECIMAL)."""
    if isinstance(v, int | np.integer):
        return str(int(v))
    return f"{float(v)!r}::DOUBLE"


def _n_bins(lo: float, hi: float, step: float, what: str) -> int:
    if not hi > lo:
        raise QueryError(f"{what}: the upper edge ({hi}) must be above the lower edge ({lo})")
    n = (hi - lo) / step
    if abs(n - round(n)) > 1e-6 * max(1.0, n):
        raise QueryError(f"{what}: the range {lo}..{hi} is not a whole number of steps of {step}")
    return round(n)


def _bin_expr(col: str, lo: float, step: float, n: int) -> str:
    """Bin index 0..n-1 of `col` (rows are already restricted to lo ≤ col < lo + n·step)."""
    return f"least(floor(({col} - {_num(lo)}) / {_num(step)})::BIGINT, {n - 1})"


_QUALITY = PresetParam(
    "exclude_flags",
    DEFAULT_EXCLUDE_FLAGS,
    "",
    "sources with any of these flag bits are dropped (default: NO_PREDICTION | OUTSIDE_TRAINING_DOMAIN "
    "| HIGH_UNCERTAINTY = 458752; 0 keeps everything)",
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


def _flag_cut(p: dict[str, Any]) -> list[str]:
    mask = int(p["exclude_flags"])
    return [f"(flags & {mask}) = 0"] if mask else []


def _giant_conditions(p: dict[str, Any], user_set: frozenset[str], cat: CatalogConnection) -> list[str]:
    """WHERE conditions of the `giants` selection (see its documentation)."""
    cols = set(cat.columns)
    conds = _flag_cut(p)
    if p["logg_max"] is not None:
        conds.append(f"isfinite(logg) AND logg < {_num(p['logg_max'])}")
    if p["logg_min"] is not None:
        conds.append(f"isfinite(logg) AND logg >= {_num(p['logg_min'])}")
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
                f"AND {label}_error <= {_num(v)} * {label}"
            )
        else:
            conds.append(f"isfinite({label}_error) AND {label}_error <= {_num(v)}")
    return conds


def _where(conds: list[str]) -> str:
    return ("WHERE " + "\n  AND ".join(f"({c})" for c in conds)) if conds else ""


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
    return "SELECT *\nFROM catalog\n" + _where(_giant_conditions(p, user_set, cat))


# --------------------------------------------------------------------------------------------
# red clump
# --------------------------------------------------------------------------------------------
_RC_DOC = """\
Red-clump candidates: the red clump as a standard candle in Gaia, and the cuts of Bovy et al. 2014
(ApJ 790, 127, §2; "The APOGEE red-clump catalog") on the predicted Teff, logg and [M/H].
By default a candidate needs a distance from its own parallax (flag DISTANCE_FROM_PARALLAX:
zero-point-corrected ϖ/σ_ϖ ≥ 5, RUWE ≤ 1.4) and a dereddened absolute magnitude
  * mg0_min ≤ M_G0 ≤ mg0_max, M_G0 = G − 5 log10(distance_pc / 10 pc) − r_g · E(B−V),
with the catalogue's predicted E(B−V). The default window is the red clump's M_G = 0.44 ± 0.20 mag
(Hawkins et al. 2017, MNRAS 471, 722) ± 2σ; r_g = A_G/E(B−V) = 2.74 (a red-clump-like spectrum,
Casagrande & VandenBerg 2018). First-ascent giants cross the clump's luminosity, so the
Teff–logg–[M/H] cuts below still apply. Set mg0_min=none to drop the magnitude cut (then stars without
a significant parallax are kept too, at a much lower purity: the predicted Teff and logg alone do not
separate the clump from the RGB at XP precision). On the simulated sky of benchmarks/sim_sky_checks.py
(seed 23, gaia-xp) the magnitude cut raised the purity from 0.37 to 0.74 at a completeness of 0.17.
The quality cut `exclude_flags` leaves HIGH_UNCERTAINTY out by default: that bit follows the mass and
age σ, which this selection does not use.
Bovy et al. 2014 cuts ([M/H] stands in for [Fe/H]):
  * 1.8 ≤ logg ≤ 0.0018 dex K^-1 · (Teff − Teff_ref) + 2.5 dex,
    Teff_ref = −382.5 K dex^-1 · [M/H] + 4607 K,
  * Z ≤ 0.06, with Z = 0.017 · 10^[M/H] (Z_sun = 0.017, as in the APOGEE-RC code),
  * no flag bit of `exclude_flags` (default as for `giants`).
The colour–metallicity cuts need dereddened 2MASS (J−Ks)0, which the catalogue does not hold. Give a
table with columns source_id and jk0 (mag) as a join (`--join colours=FILE`) and set jk0_view=colours
to add them:
  * 0.5 ≤ (J−Ks)0 < 0.8 (0.8: the upper limit of the published catalogue code),
  * 1.21 [(J−Ks)0 − 0.05]^9 + 0.0011 ≤ Z ≤ 2.58 [(J−Ks)0 − 0.40]^3 + 0.0034.
Without them the sample keeps more first-ascent RGB contaminants at the same Teff and logg; the
extra logg cut of later APOGEE-RC releases (logg ≤ (Teff − 4800 K)/1000 K + 2.75) is not applied.
Formulas checked against the catalogue's code (github jobovy/apogee, apogee/samples/rc.py,
`loggteffcut`, `jkzcut`: the rounded constants above follow from its definitions)."""

RC_EXCLUDE_FLAGS: int = int(SourceFlag.NO_PREDICTION | SourceFlag.OUTSIDE_TRAINING_DOMAIN)
"""The red-clump preset's default quality cut: NO_PREDICTION | OUTSIDE_TRAINING_DOMAIN (327680)."""

_RC_PARAMS: tuple[PresetParam, ...] = (
    PresetParam(
        "exclude_flags",
        RC_EXCLUDE_FLAGS,
        "",
        "sources with any of these flag bits are dropped (default: NO_PREDICTION | OUTSIDE_TRAINING_DOMAIN "
        "= 327680; HIGH_UNCERTAINTY follows the mass/age σ, which this selection does not use)",
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
    PresetParam("r_g", 2.74, "", "A_G / E(B−V) for the dereddening", minimum=0),
    PresetParam("logg_min", 1.8, "dex", "lower logg limit"),
    PresetParam("logg_slope", 0.0018, "dex/K", "slope of the upper logg limit in Teff − Teff_ref"),
    PresetParam("logg_zero", 2.5, "dex", "upper logg limit at Teff = Teff_ref"),
    PresetParam("teff_ref_slope", -382.5, "K/dex", "Teff_ref = teff_ref_slope·[M/H] + teff_ref_zero"),
    PresetParam("teff_ref_zero", 4607.0, "K", "Teff_ref at [M/H] = 0"),
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
    zexpr = f"({_num(p['z_solar'])} * pow({_num(10.0)}, c.m_h))"
    teff_ref = f"({_num(p['teff_ref_slope'])} * c.m_h + {_num(p['teff_ref_zero'])})"
    conds = [c.replace("flags", "c.flags") for c in _flag_cut(p)]
    conds += [
        "isfinite(c.teff) AND isfinite(c.logg) AND isfinite(c.m_h)",
        f"c.logg >= {_num(p['logg_min'])}",
        f"c.logg <= {_num(p['logg_slope'])} * (c.teff - {teff_ref}) + {_num(p['logg_zero'])}",
        f"{zexpr} <= {_num(p['z_max'])}",
    ]
    if p["mg0_min"] is None:
        for k in ("mg0_max", "r_g"):
            if k in user_set:
                raise QueryError(f"parameter {k!r} needs the magnitude cut (mg0_min is none)")
    else:
        need = [col for col in ("phot_g_mean_mag", "distance_pc", "ebv") if col not in cat.columns]
        if need:
            raise QueryError(
                f"the red-clump magnitude cut needs column(s) {need}, which the catalogue lacks; "
                "set mg0_min=none to select on Teff, logg and [M/H] alone"
            )
        mg0 = f"(c.phot_g_mean_mag - 5.0 * log10(c.distance_pc / 10.0) - {_num(p['r_g'])} * c.ebv)"
        conds += [
            f"(c.flags & {int(SourceFlag.DISTANCE_FROM_PARALLAX)}) != 0",
            "isfinite(c.phot_g_mean_mag) AND isfinite(c.distance_pc) AND c.distance_pc > 0 AND isfinite(c.ebv)",
            f"{mg0} >= {_num(p['mg0_min'])} AND {mg0} <= {_num(p['mg0_max'])}",
        ]
    view = p["jk0_view"]
    if view is None:
        for k in ("jk0_min", "jk0_max"):
            if k in user_set:
                raise QueryError(f"parameter {k!r} needs jk0_view (a joined table with source_id and jk0)")
        return "SELECT c.*\nFROM catalog c\n" + _where(conds)
    if view not in cat.views or view == "catalog":
        raise QueryError(
            f"jk0_view {view!r} is not a joined table; join one with --join {view}=FILE "
            f"(joined: {sorted(v for v in cat.views if v != 'catalog')})"
        )
    if "jk0" not in cat.views[view]:
        raise QueryError(f"joined table {view!r} has no jk0 column (columns: {cat.views[view]})")
    conds += [
        f"isfinite(j.jk0) AND j.jk0 >= {_num(p['jk0_min'])} AND j.jk0 < {_num(p['jk0_max'])}",
        f"{zexpr} >= {_num(1.21)} * pow(j.jk0 - {_num(0.05)}, 9) + {_num(0.0011)}",
        f"{zexpr} <= {_num(2.58)} * pow(j.jk0 - {_num(0.40)}, 3) + {_num(0.0034)}",
    ]
    return f"SELECT c.*, j.jk0\nFROM catalog c JOIN {view} j USING (source_id)\n" + _where(conds)


# --------------------------------------------------------------------------------------------
# age–metallicity
# --------------------------------------------------------------------------------------------
_AMR_DOC = """\
Age–metallicity relation from the catalogue (cf. Zhang et al. 2026, Fig. 15, which shows the model's
mean age vs [M/H] at fixed logg = 2.5: set logg_min=2.3 logg_max=2.7 for such a slice). Stars of the
`giants` selection with finite [M/H] and age in [m_h_min, m_h_max) are binned in [M/H]
(m_h_step dex); per bin with ≥ min_count stars: n, median [M/H], median age, 16th/84th age
percentiles, robust σ of age (1.4826·MAD) and the median predicted age uncertainty, all in Gyr."""

_AMR_PARAMS = (
    *GIANT_PARAMS,
    PresetParam("m_h_min", -2.5, "dex", "lower edge of the first [M/H] bin"),
    PresetParam("m_h_max", 0.7, "dex", "upper edge of the last [M/H] bin"),
    PresetParam("m_h_step", 0.1, "dex", "[M/H] bin width", minimum=1e-6),
    PresetParam("min_count", 5, "", "bins with fewer stars are left out", kind=int, minimum=1),
)


def _build_age_metallicity(p: dict[str, Any], user_set: frozenset[str], cat: CatalogConnection) -> str:
    lo, hi, step = p["m_h_min"], p["m_h_max"], p["m_h_step"]
    nb = _n_bins(lo, hi, step, "age-metallicity [M/H] bins")
    conds = [
        *_giant_conditions(p, user_set, cat),
        "isfinite(m_h) AND isfinite(age)",
        f"m_h >= {_num(lo)} AND m_h < {_num(hi)}",
    ]
    return f"""WITH sel AS (
  SELECT m_h::DOUBLE AS m_h, age::DOUBLE AS age, age_error::DOUBLE AS age_error
  FROM catalog
  {_where(conds)}
), binned AS (
  SELECT {_bin_expr("m_h", lo, step, nb)} AS bin, m_h, age, age_error FROM sel
)
SELECT bin,
  {_num(lo)} + bin * {_num(step)} AS m_h_lo,
  {_num(lo)} + (bin + 1) * {_num(step)} AS m_h_hi,
  count(*) AS n,
  median(m_h) AS median_m_h,
  median(age) AS median_age,
  quantile_cont(age, 0.16) AS age_p16,
  quantile_cont(age, 0.84) AS age_p84,
  {_num(ROBUST_SIGMA_FACTOR)} * mad(age) AS robust_sigma_age,
  median(age_error) AS median_age_error
FROM binned
GROUP BY bin
HAVING count(*) >= {int(p["min_count"])}
ORDER BY bin"""


# --------------------------------------------------------------------------------------------
# age map
# --------------------------------------------------------------------------------------------
_MAP_DOC = """\
Median age on the sky, for the `giants` selection with finite age. grid=galactic: cells of
l_step × b_step deg in Galactic (l, b) (rows without l, b are left out); grid=healpix: HEALPix
nested pixels of `level` (0–8, pixel = hpx8 >> 2·(8 − level), from source_id, so no gaia_source is
needed), with the pixel centres' l, b added. Per cell with ≥ min_count stars: n, median age and
robust σ (1.4826·MAD), Gyr."""

_MAP_PARAMS = (
    *GIANT_PARAMS,
    PresetParam(
        "grid", "galactic", "", "galactic (l, b cells) or healpix", kind=str, choices=("galactic", "healpix")
    ),
    PresetParam("l_step", 10.0, "deg", "cell width in l (divides 360)", minimum=1e-3, maximum=360),
    PresetParam("b_step", 10.0, "deg", "cell height in b (divides 180)", minimum=1e-3, maximum=180),
    PresetParam("level", 4, "", "HEALPix level of the healpix grid", kind=int, minimum=0, maximum=8),
    PresetParam("min_count", 5, "", "cells with fewer stars are left out", kind=int, minimum=1),
)


def _build_age_map(p: dict[str, Any], user_set: frozenset[str], cat: CatalogConnection) -> str:
    conds = [*_giant_conditions(p, user_set, cat), "isfinite(age)"]
    stats = f"""count(*) AS n,
  median(age) AS median_age,
  {_num(ROBUST_SIGMA_FACTOR)} * mad(age) AS robust_sigma_age"""
    having = f"HAVING count(*) >= {int(p['min_count'])}"
    if p["grid"] == "healpix":
        shift = 2 * (8 - int(p["level"]))
        return f"""WITH sel AS (
  SELECT (hpx8::BIGINT >> {shift}) AS pixel, age::DOUBLE AS age
  FROM catalog
  {_where(conds)}
)
SELECT pixel, {int(p["level"])} AS level,
  {stats}
FROM sel
GROUP BY pixel
{having}
ORDER BY pixel"""
    ls, bs = p["l_step"], p["b_step"]
    nl = _n_bins(0.0, 360.0, ls, "age-map l cells")
    nb = _n_bins(-90.0, 90.0, bs, "age-map b cells")
    conds += ["isfinite(l) AND isfinite(b)"]
    return f"""WITH sel AS (
  SELECT {_bin_expr("l", 0.0, ls, nl)} AS il, {_bin_expr("b", -90.0, bs, nb)} AS ib, age::DOUBLE AS age
  FROM catalog
  {_where(conds)}
)
SELECT il * {_num(ls)} AS l_lo, (il + 1) * {_num(ls)} AS l_hi,
  ib * {_num(bs)} - {_num(90.0)} AS b_lo, (ib + 1) * {_num(bs)} - {_num(90.0)} AS b_hi,
  {stats}
FROM sel
GROUP BY il, ib
{having}
ORDER BY il, ib"""


def _post_age_map(table: pa.Table, p: dict[str, Any]) -> pa.Table:
    if p["grid"] != "healpix":
        return table
    from xpengine.catalog import sky

    pix = table.column("pixel").to_numpy().astype(np.int64)
    ra, dec = sky.pix2ang_nested(int(p["level"]), pix)
    lon, lat = sky.icrs_to_galactic(ra, dec)
    table = table.append_column("l_centre", pa.array(lon, pa.float64()))
    return table.append_column("b_centre", pa.array(lat, pa.float64()))


# --------------------------------------------------------------------------------------------
# mass–age
# --------------------------------------------------------------------------------------------
_MASS_AGE_DOC = """\
The mass–age plane: 2-D histogram of the `giants` selection with finite mass, age and [M/H] in
[mass_min, mass_max) Msun × [age_min, age_max) Gyr (defaults: the paper's training ranges 0.5–4 Msun,
0–14 Gyr), cells mass_step × age_step; per cell with ≥ min_count stars: n and median [M/H] (dex)."""

_MASS_AGE_PARAMS = (
    *GIANT_PARAMS,
    PresetParam("mass_min", 0.5, "Msun", "lower mass edge"),
    PresetParam("mass_max", 4.0, "Msun", "upper mass edge"),
    PresetParam("mass_step", 0.1, "Msun", "mass cell width", minimum=1e-6),
    PresetParam("age_min", 0.0, "Gyr", "lower age edge"),
    PresetParam("age_max", 14.0, "Gyr", "upper age edge"),
    PresetParam("age_step", 0.5, "Gyr", "age cell width", minimum=1e-6),
    PresetParam("min_count", 1, "", "cells with fewer stars are left out", kind=int, minimum=1),
)


def _build_mass_age(p: dict[str, Any], user_set: frozenset[str], cat: CatalogConnection) -> str:
    m0, m1, ms = p["mass_min"], p["mass_max"], p["mass_step"]
    a0, a1, as_ = p["age_min"], p["age_max"], p["age_step"]
    nm = _n_bins(m0, m1, ms, "mass-age mass cells")
    na = _n_bins(a0, a1, as_, "mass-age age cells")
    conds = [
        *_giant_conditions(p, user_set, cat),
        "isfinite(mass) AND isfinite(age) AND isfinite(m_h)",
        f"mass >= {_num(m0)} AND mass < {_num(m1)}",
        f"age >= {_num(a0)} AND age < {_num(a1)}",
    ]
    return f"""WITH sel AS (
  SELECT {_bin_expr("mass", m0, ms, nm)} AS im, {_bin_expr("age", a0, as_, na)} AS ia, m_h::DOUBLE AS m_h
  FROM catalog
  {_where(conds)}
)
SELECT {_num(m0)} + im * {_num(ms)} AS mass_lo, {_num(m0)} + (im + 1) * {_num(ms)} AS mass_hi,
  {_num(a0)} + ia * {_num(as_)} AS age_lo, {_num(a0)} + (ia + 1) * {_num(as_)} AS age_hi,
  count(*) AS n,
  median(m_h) AS median_m_h
FROM sel
GROUP BY im, ia
HAVING count(*) >= {int(p["min_count"])}
ORDER BY im, ia"""


# --------------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------------
_LABEL_UNITS = {"teff": "K", "logg": "dex", "m_h": "dex", "mass": "Msun", "age": "Gyr"}

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "giants",
            "good-quality giants (flag and σ cuts, logg < 3.5): catalogue rows",
            _GIANTS_DOC,
            GIANT_PARAMS,
            _build_giants,
            requires=("logg", "flags"),
            units={},
        ),
        Preset(
            "red-clump",
            "red-clump candidates (parallax M_G0 window + Bovy et al. 2014 Teff–logg–[M/H] cuts): catalogue rows",
            _RC_DOC,
            _RC_PARAMS,
            _build_red_clump,
            requires=("teff", "logg", "m_h", "flags"),
            units={"jk0": "mag"},
        ),
        Preset(
            "age-metallicity",
            "median age and robust scatter per [M/H] bin (cf. Zhang et al. 2026 Fig. 15)",
            _AMR_DOC,
            _AMR_PARAMS,
            _build_age_metallicity,
            requires=("logg", "m_h", "age", "age_error", "flags"),
            units={
                "m_h_lo": "dex",
                "m_h_hi": "dex",
                "median_m_h": "dex",
                "median_age": "Gyr",
                "age_p16": "Gyr",
                "age_p84": "Gyr",
                "robust_sigma_age": "Gyr",
                "median_age_error": "Gyr",
                "n": "",
            },
            plot=plot_age_metallicity,
        ),
        Preset(
            "age-map",
            "median age per Galactic (l, b) cell or HEALPix pixel, with counts",
            _MAP_DOC,
            _MAP_PARAMS,
            _build_age_map,
            requires=("logg", "age", "hpx8", "flags"),
            units={
                "l_lo": "deg",
                "l_hi": "deg",
                "b_lo": "deg",
                "b_hi": "deg",
                "l_centre": "deg",
                "b_centre": "deg",
                "median_age": "Gyr",
                "robust_sigma_age": "Gyr",
                "n": "",
                "pixel": "",
                "level": "",
            },
            plot=plot_age_map,
            post=_post_age_map,
        ),
        Preset(
            "mass-age",
            "2-D mass × age histogram coloured by median [M/H]",
            _MASS_AGE_DOC,
            _MASS_AGE_PARAMS,
            _build_mass_age,
            requires=("logg", "mass", "age", "m_h", "flags"),
            units={
                "mass_lo": "Msun",
                "mass_hi": "Msun",
                "age_lo": "Gyr",
                "age_hi": "Gyr",
                "median_m_h": "dex",
                "n": "",
            },
            plot=plot_mass_age,
        ),
    )
}


def get_preset(name: str) -> Preset:
    """The preset called `name`; QueryError listing the valid names otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        raise QueryError(f"unknown preset {name!r}; presets: {sorted(PRESETS)}") from None


def resolve_params(preset: Preset, params: Mapping[str, Any] | None) -> tuple[dict[str, Any], frozenset[str]]:
    """Validated parameter values (defaults filled in) and the names the caller set."""
    given = dict(params or {})
    valid = {p.name for p in preset.params}
    unknown = sorted(set(given) - valid)
    if unknown:
        raise QueryError(
            f"preset {preset.name!r} has no parameter(s) {unknown}; its parameters: {sorted(valid)}"
        )
    values = {p.name: (p.convert(given[p.name]) if p.name in given else p.default) for p in preset.params}
    return values, frozenset(given)


def build_sql(name: str, params: Mapping[str, Any] | None, cat: CatalogConnection) -> str:
    """The SQL of preset `name` with `params`, for the catalogue open in `cat`."""
    preset = get_preset(name)
    missing = [c for c in preset.requires if c not in cat.columns]
    if missing:
        raise QueryError(
            f"preset {name!r} needs column(s) {missing}, which the catalogue {cat.source.location!r} lacks "
            f"(it has: {cat.columns})"
        )
    values, user_set = resolve_params(preset, params)
    return preset.build(values, user_set, cat)


def describe_presets() -> str:
    """Human-readable documentation of every preset and its parameters (for `--list-presets`)."""
    out = []
    for p in PRESETS.values():
        out.append(f"{p.name}: {p.summary}" + ("  [--plot]" if p.plot else ""))
        out.extend("    " + line for line in p.doc.splitlines())
        out.append("  parameters (-p NAME=VALUE):")
        for q in p.params:
            unit = f" {q.unit}" if q.unit and q.default is not None else ""
            default = "none" if q.default is None else q.default
            extra = f" {{{', '.join(q.choices)}}}" if q.choices else ""
            out.append(f"    {q.name} = {default}{unit}{extra}: {q.help}")
        out.append("")
    return "\n".join(out)
