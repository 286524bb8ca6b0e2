"""A sky restriction of catalogue queries: a Galactic (l, b) box (`SkyRegion`) or an hpx8 range, and
the hpx8 range in a partition file's name (`partition_hpx8_range`), so that files whose range misses
the region are dropped before DuckDB opens them. The HEALPix geometry is `xpengine.catalog.sky`.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Sequence

import numpy as np

from xpengine.catalog import sky
from xpengine.catalog.errors import QueryError

__all__ = ["SkyRegion", "check_hpx8_range", "intersect_ranges", "partition_hpx8_range", "prune_by_name"]

_PARTITION_RE = re.compile(r"(\d{6})-(\d{6})")


@dataclasses.dataclass(frozen=True)
class SkyRegion:
    """A box in Galactic coordinates (deg): l_min ≤ l ≤ l_max, b_min ≤ b ≤ b_max.

    l in [0, 360]; l_min > l_max means the box wraps through l = 0 (e.g. 350 → 10).
    Rows whose l or b is null (no gaia_source row) are outside every region.
    """

    l_min: float
    l_max: float
    b_min: float
    b_max: float

    def __post_init__(self) -> None:
        for name in ("l_min", "l_max", "b_min", "b_max"):
            v = getattr(self, name)
            if not isinstance(v, int | float | np.floating | np.integer) or not np.isfinite(v):
                raise QueryError(f"region {name} must be a finite number of degrees, got {v!r}")
        if not (0.0 <= self.l_min <= 360.0 and 0.0 <= self.l_max <= 360.0):
            raise QueryError(f"region l must be in [0, 360] deg, got l_min={self.l_min}, l_max={self.l_max}")
        if not (-90.0 <= self.b_min <= self.b_max <= 90.0):
            raise QueryError(
                f"region b must satisfy -90 ≤ b_min ≤ b_max ≤ 90 deg, got b_min={self.b_min}, b_max={self.b_max}"
            )

    def sql_predicate(self) -> str:
        """A DuckDB predicate on the catalogue's `l`, `b` columns (deg)."""
        lmin, lmax, bmin, bmax = (repr(float(v)) for v in (self.l_min, self.l_max, self.b_min, self.b_max))
        if self.l_min <= self.l_max:
            lcut = f"l BETWEEN {lmin} AND {lmax}"
        else:
            lcut = f"(l >= {lmin} OR l <= {lmax})"
        return f"(isfinite(l) AND isfinite(b) AND {lcut} AND b BETWEEN {bmin} AND {bmax})"

    def hpx8_ranges(self) -> np.ndarray:
        """Inclusive hpx8 ranges (K, 2) that cover the box (a superset)."""
        return sky.region_hpx8_ranges(self.l_min, self.l_max, self.b_min, self.b_max)


def check_hpx8_range(r: Sequence[int]) -> tuple[int, int]:
    try:
        lo, hi = (int(v) for v in r)
    except (TypeError, ValueError):
        raise QueryError(f"hpx8_range must be two integers (first, last), got {r!r}") from None
    if not 0 <= lo <= hi < sky.HPX8_NPIX:
        raise QueryError(f"hpx8_range must satisfy 0 ≤ first ≤ last ≤ {sky.HPX8_NPIX - 1}, got ({lo}, {hi})")
    return lo, hi


def intersect_ranges(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection of two sorted, disjoint inclusive range lists (K, 2)."""
    out = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i, 0], b[j, 0]), min(a[i, 1], b[j, 1])
        if lo <= hi:
            out.append((lo, hi))
        if a[i, 1] < b[j, 1]:
            i += 1
        else:
            j += 1
    return np.asarray(out, dtype=np.int64).reshape(-1, 2)


def partition_hpx8_range(path: str) -> tuple[int, int] | None:
    """The hpx8 range (first, last) in a partition file name such as
    `XpContinuousMeanSpectrum_000000-003111.parquet` or `GaiaSource_000000-003111.csv.gz`, or None."""
    m = _PARTITION_RE.search(os.path.basename(str(path)))
    if m is None:
        return None
    lo, hi = int(m.group(1)), int(m.group(2))
    return (lo, hi) if lo <= hi else None


def prune_by_name(files: list[str], ranges: np.ndarray | None) -> list[str]:
    """Files whose name range meets one of `ranges` (files without a range in the name are kept)."""
    if ranges is None:
        return files
    kept = []
    for f in files:
        r = partition_hpx8_range(f)
        if r is None or np.any((ranges[:, 0] <= r[1]) & (ranges[:, 1] >= r[0])):
            kept.append(f)
    return kept
