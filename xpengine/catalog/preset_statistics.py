"""The statistical presets on the `giants` selection: the age–metallicity relation, the age map, the
mass–age plane (each with a picture, `xpengine.catalog.plots`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from xpengine.catalog.errors import QueryError
from xpengine.catalog.plots import plot_age_map, plot_age_metallicity, plot_mass_age
from xpengine.catalog.preset_selections import GIANT_PARAMS, giant_conditions
from xpengine.catalog.preset_sql import (
    ROBUST_SIGMA_FACTOR,
    Preset,
    PresetParam,
    bin_expr,
    n_bins,
    sql_number,
    where_clause,
)

if TYPE_CHECKING:
    from xpengine.catalog.query import CatalogConnection

__all__ = ["AGE_MAP", "AGE_METALLICITY", "MASS_AGE"]


def _edge_units(**units: str) -> dict[str, str]:
    """The units of the bin-edge columns `<q>_lo`, `<q>_hi` of each binned quantity q: q's own unit."""
    return {f"{q}_{side}": unit for q, unit in units.items() for side in ("lo", "hi")}


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
    nb = n_bins(lo, hi, step, "age-metallicity [M/H] bins")
    conds = [
        *giant_conditions(p, user_set, cat),
        "isfinite(m_h) AND isfinite(age)",
        f"m_h >= {sql_number(lo)} AND m_h < {sql_number(hi)}",
    ]
    return f"""WITH sel AS (
  SELECT m_h::DOUBLE AS m_h, age::DOUBLE AS age, age_error::DOUBLE AS age_error
  FROM catalog
  {where_clause(conds)}
), binned AS (
  SELECT {bin_expr("m_h", lo, step, nb)} AS bin, m_h, age, age_error FROM sel
)
SELECT bin,
  {sql_number(lo)} + bin * {sql_number(step)} AS m_h_lo,
  {sql_number(lo)} + (bin + 1) * {sql_number(step)} AS m_h_hi,
  count(*) AS n,
  median(m_h) AS median_m_h,
  median(age) AS median_age,
  quantile_cont(age, 0.16) AS age_p16,
  quantile_cont(age, 0.84) AS age_p84,
  {sql_number(ROBUST_SIGMA_FACTOR)} * mad(age) AS robust_sigma_age,
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
    conds = [*giant_conditions(p, user_set, cat), "isfinite(age)"]
    stats = f"""count(*) AS n,
  median(age) AS median_age,
  {sql_number(ROBUST_SIGMA_FACTOR)} * mad(age) AS robust_sigma_age"""
    having = f"HAVING count(*) >= {int(p['min_count'])}"
    if p["grid"] == "healpix":
        shift = 2 * (8 - int(p["level"]))
        return f"""WITH sel AS (
  SELECT (hpx8::BIGINT >> {shift}) AS pixel, age::DOUBLE AS age
  FROM catalog
  {where_clause(conds)}
)
SELECT pixel, {int(p["level"])} AS level,
  {stats}
FROM sel
GROUP BY pixel
{having}
ORDER BY pixel"""
    missing = [c for c in ("l", "b") if c not in cat.columns]
    if missing:  # the HEALPix grid needs only hpx8, which `requires` checks
        raise QueryError(
            f"preset 'age-map' with grid=galactic needs column(s) {missing}, which the catalogue "
            f"{cat.source.location!r} lacks; grid=healpix maps it by hpx8"
        )
    ls, bs = p["l_step"], p["b_step"]
    nl = n_bins(0.0, 360.0, ls, "age-map l cells")
    nb = n_bins(-90.0, 90.0, bs, "age-map b cells")
    conds += ["isfinite(l) AND isfinite(b)"]
    return f"""WITH sel AS (
  SELECT {bin_expr("l", 0.0, ls, nl)} AS il, {bin_expr("b", -90.0, bs, nb)} AS ib, age::DOUBLE AS age
  FROM catalog
  {where_clause(conds)}
)
SELECT il * {sql_number(ls)} AS l_lo, (il + 1) * {sql_number(ls)} AS l_hi,
  ib * {sql_number(bs)} - {sql_number(90.0)} AS b_lo, (ib + 1) * {sql_number(bs)} - {sql_number(90.0)} AS b_hi,
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
    nm = n_bins(m0, m1, ms, "mass-age mass cells")
    na = n_bins(a0, a1, as_, "mass-age age cells")
    conds = [
        *giant_conditions(p, user_set, cat),
        "isfinite(mass) AND isfinite(age) AND isfinite(m_h)",
        f"mass >= {sql_number(m0)} AND mass < {sql_number(m1)}",
        f"age >= {sql_number(a0)} AND age < {sql_number(a1)}",
    ]
    return f"""WITH sel AS (
  SELECT {bin_expr("mass", m0, ms, nm)} AS im, {bin_expr("age", a0, as_, na)} AS ia, m_h::DOUBLE AS m_h
  FROM catalog
  {where_clause(conds)}
)
SELECT {sql_number(m0)} + im * {sql_number(ms)} AS mass_lo, {sql_number(m0)} + (im + 1) * {sql_number(ms)} AS mass_hi,
  {sql_number(a0)} + ia * {sql_number(as_)} AS age_lo, {sql_number(a0)} + (ia + 1) * {sql_number(as_)} AS age_hi,
  count(*) AS n,
  median(m_h) AS median_m_h
FROM sel
GROUP BY im, ia
HAVING count(*) >= {int(p["min_count"])}
ORDER BY im, ia"""


AGE_METALLICITY = Preset(
    "age-metallicity",
    "median age and robust scatter per [M/H] bin (cf. Zhang et al. 2026 Fig. 15)",
    _AMR_DOC,
    _AMR_PARAMS,
    _build_age_metallicity,
    requires=("logg", "m_h", "age", "age_error", "flags"),
    units={
        **_edge_units(m_h="dex"),
        "median_m_h": "dex",
        "median_age": "Gyr",
        "age_p16": "Gyr",
        "age_p84": "Gyr",
        "robust_sigma_age": "Gyr",
        "median_age_error": "Gyr",
        "n": "",
    },
    plot=plot_age_metallicity,
)

AGE_MAP = Preset(
    "age-map",
    "median age per Galactic (l, b) cell or HEALPix pixel, with counts",
    _MAP_DOC,
    _MAP_PARAMS,
    _build_age_map,
    requires=("logg", "age", "hpx8", "flags"),
    units={
        **_edge_units(l="deg", b="deg"),
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
)

MASS_AGE = Preset(
    "mass-age",
    "2-D mass × age histogram coloured by median [M/H]",
    _MASS_AGE_DOC,
    _MASS_AGE_PARAMS,
    _build_mass_age,
    requires=("logg", "mass", "age", "m_h", "flags"),
    units={
        **_edge_units(mass="Msun", age="Gyr"),
        "median_m_h": "dex",
        "n": "",
    },
    plot=plot_mass_age,
)
