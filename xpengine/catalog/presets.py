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

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from xpengine.catalog.errors import QueryError
from xpengine.catalog.plots import plot_age_map, plot_age_metallicity, plot_mass_age
from xpengine.catalog.preset_selections import DEFAULT_EXCLUDE_FLAGS, GIANTS, RC_EXCLUDE_FLAGS, RED_CLUMP
from xpengine.catalog.preset_sql import Preset, PresetParam
from xpengine.catalog.preset_statistics import AGE_MAP, AGE_METALLICITY, MASS_AGE

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

PRESETS: dict[str, Preset] = {p.name: p for p in (GIANTS, RED_CLUMP, AGE_METALLICITY, AGE_MAP, MASS_AGE)}
"""Every preset by name: the row selections (`preset_selections`), then the statistics on the giants
(`preset_statistics`); `Preset`, its parameters and the SQL pieces are in `preset_sql`."""


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
