"""What a catalogue preset is, and the SQL pieces every preset builds with.

A preset (`xpengine.catalog.presets`) is a named query with typed parameters (`PresetParam`: default,
unit, range) and a builder that writes them into its SQL as numeric literals (`sql_number`), so that
the SQL of a preset is a self-contained query. Binned statistics use `n_bins` and `bin_expr`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from xpengine.catalog.errors import QueryError

if TYPE_CHECKING:
    from xpengine.catalog.query import CatalogConnection

__all__ = ["ROBUST_SIGMA_FACTOR", "Preset", "PresetParam", "bin_expr", "n_bins", "sql_number", "where_clause"]

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


def sql_number(v: float | int) -> str:
    """A numeric SQL literal (validated finite number); floats typed DOUBLE (DuckDB reads `0.1` as DECIMAL)."""
    if isinstance(v, int | np.integer):
        return str(int(v))
    return f"{float(v)!r}::DOUBLE"


def n_bins(lo: float, hi: float, step: float, what: str) -> int:
    if not hi > lo:
        raise QueryError(f"{what}: the upper edge ({hi}) must be above the lower edge ({lo})")
    n = (hi - lo) / step
    if abs(n - round(n)) > 1e-6 * max(1.0, n):
        raise QueryError(f"{what}: the range {lo}..{hi} is not a whole number of steps of {step}")
    return round(n)


def bin_expr(col: str, lo: float, step: float, n: int) -> str:
    """Bin index 0..n-1 of `col` (rows are already restricted to lo ≤ col < lo + n·step)."""
    return f"least(floor(({col} - {sql_number(lo)}) / {sql_number(step)})::BIGINT, {n - 1})"


def where_clause(conds: list[str]) -> str:
    return ("WHERE " + "\n  AND ".join(f"({c})" for c in conds)) if conds else ""
