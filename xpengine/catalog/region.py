"""A sky restriction of catalogue queries: a Galactic (l, b) box (`SkyRegion`) or an hpx8 range, and
the file pruning it allows (`prune_by_statistics`): a Parquet file is dropped before DuckDB opens it
only when the min/max statistics of its rows' `hpx8` (or `source_id`, hpx8 = source_id >> 43) show that
none of them can lie in the region. File names are never trusted for this: the engine keeps rows that
lie outside their partition's range in that partition (flagged OUTSIDE_PARTITION_RANGE), and names such
as `...887616-94709712.parquet` (a single file with a hash suffix) look like ranges but are not
(`partition_hpx8_range` only reads the label). The HEALPix geometry is `xpengine.catalog.sky`.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from xpengine.catalog import sky
from xpengine.catalog.errors import QueryError

__all__ = [
    "SkyRegion",
    "check_hpx8_range",
    "file_hpx8_ranges",
    "intersect_ranges",
    "partition_hpx8_range",
    "prune_by_statistics",
]

_PARTITION_RE = re.compile(r"(\d{6})-(\d{6})")
_SOURCE_ID_SHIFT = 43  # hpx8 = source_id >> 43 (Gaia DR3 source_id: HEALPix level 12 · 2^35 + ...)
_FOOTER_THREADS = 8  # footers read at once (a URL catalogue: one request each)


@dataclasses.dataclass(frozen=True)
class SkyRegion:
    """A box in Galactic coordinates (deg): l_min ≤ l ≤ l_max, b_min ≤ b ≤ b_max.

    l in [0, 360]; l_min > l_max means the box wraps through l = 0 (e.g. 350 → 10).
    Rows whose l or b is NaN or null (no gaia_source row) are outside every region.
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
    `XpContinuousMeanSpectrum_000000-003111.parquet` or `GaiaSource_000000-003111.csv.gz`, or None.

    A label only: what a file holds is in its statistics (`file_hpx8_ranges`), which pruning uses."""
    m = _PARTITION_RE.search(os.path.basename(str(path)))
    if m is None:
        return None
    lo, hi = int(m.group(1)), int(m.group(2))
    return (lo, hi) if lo <= hi else None


def _int_min_max(stats: Any) -> tuple[int, int] | None:
    if stats is None or not stats.has_min_max:
        return None
    lo, hi = stats.min, stats.max
    if type(lo) is not int or type(hi) is not int:  # bool, str, float, bytes: not an index
        return None
    return lo, hi


def file_hpx8_ranges(path: str, fs: Any = None) -> list[tuple[int, int]] | None:
    """The hpx8 (min, max) of each non-empty row group of a Parquet file, from the statistics of its
    `hpx8` column, or else of its `source_id` column shifted by 43 bits; None when the file cannot
    vouch for its rows (unreadable footer, neither column, a non-empty row group without integer
    min/max, or no rows at all), so that the caller keeps it."""
    import pyarrow.parquet as pq

    try:
        if fs is None:
            meta = pq.read_metadata(path)
        else:
            with fs.open_input_file(path) as f:
                meta = pq.read_metadata(f)
        paths = [meta.schema.column(j).path for j in range(meta.num_columns)]
    except Exception:  # an unreadable footer only means "cannot prune"; DuckDB reports it on reading
        return None
    if "hpx8" in paths:
        j, shift = paths.index("hpx8"), 0
    elif "source_id" in paths:
        j, shift = paths.index("source_id"), _SOURCE_ID_SHIFT
    else:
        return None
    out = []
    for g in range(meta.num_row_groups):
        rg = meta.row_group(g)
        if rg.num_rows == 0:
            continue
        mm = _int_min_max(rg.column(j).statistics)
        if mm is None:
            return None
        out.append((mm[0] >> shift, mm[1] >> shift))
    return out or None


def prune_by_statistics(
    files: list[str], ranges: np.ndarray | None, fmt: str = "parquet", fs: Any = None
) -> list[str]:
    """The files that may hold a row in one of the inclusive hpx8 `ranges` (K, 2): every file, except
    a Parquet file whose row-group statistics (`file_hpx8_ranges`) show that none of its rows can.
    Text files carry no statistics and are always kept, whatever their name says."""
    if ranges is None or fmt != "parquet" or not files:
        return files

    def meets(f: str) -> bool:
        got = file_hpx8_ranges(f, fs)
        if got is None:
            return True
        return any(np.any((ranges[:, 0] <= hi) & (ranges[:, 1] >= lo)) for lo, hi in got)

    if len(files) == 1:
        keep = [meets(files[0])]
    else:
        with ThreadPoolExecutor(max_workers=min(_FOOTER_THREADS, len(files))) as pool:
            keep = list(pool.map(meets, files))
    return [f for f, k in zip(files, keep, strict=True) if k]
