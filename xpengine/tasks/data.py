"""Test stars for the tasks: the rows of a training-schema Parquet file (`xpengine.datasets.schema`) in
the model's token order, with the astrometric quantities the figures need.

Gaia distance and parallax S/N come from the pseudo-luminosity token, which is linear in the
(zero-point corrected) parallax: ϖ = fakemag / 10^(0.2 G) [mas], d = 1000/ϖ [pc], and
ϖ/σ_ϖ = fakemag/σ_fakemag (REFERENCE §3). They are NaN where the file has no g_fakemag (parallax
failed the quality cuts) or no `phot_g_mean_mag` column.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from xpengine.features.token_matrix import TokenMatrix
from xpengine.features.vocabulary import Vocabulary

__all__ = ["StarSet", "load_stars"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StarSet(TokenMatrix):
    """N stars: a `TokenMatrix` (source_id (N,) int64, values / errors (N, T) float32 in `vocabulary`
    order, NaN / 0 = missing) with g_mag (N,) [mag] (NaN when unknown) and the file they come from."""

    g_mag: np.ndarray
    path: str = ""

    def distance_pc(self) -> np.ndarray:
        """Gaia distance 1/ϖ (N,) [pc] from g_fakemag and G (NaN where either is missing or ϖ ≤ 0)."""
        from xpengine.features.astrometry import fakemag_to_distance_pc

        d, _ = fakemag_to_distance_pc(self.column("g_fakemag"), self.g_mag)
        return d

    def parallax_snr(self) -> np.ndarray:
        """ϖ/σ_ϖ (N,) = fakemag/σ_fakemag (NaN where σ is 0 = unknown)."""
        f, e = self.column("g_fakemag"), self.error("g_fakemag")
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(e > 0, f / e, np.nan)

    def _subset_fields(self, idx: np.ndarray) -> dict[str, Any]:
        return {"g_mag": self.g_mag[idx]}


def load_stars(
    path: str | os.PathLike,
    vocabulary: Vocabulary,
    *,
    split: str | None = "test",
    max_stars: int | None = None,
    seed: int = 0,
) -> StarSet:
    """Read the `split` rows (all rows when None) of a training-schema Parquet file, re-ordered into the
    model's `vocabulary` (tokens the file lacks are missing). max_stars: a seeded random subset.

    Raises ValueError when the split has no rows, naming the splits the file has.
    """
    import pyarrow.parquet as pq

    from xpengine.datasets.schema import read_training_set

    path = str(path)
    arrays = read_training_set(path, split=split)
    n = len(arrays)
    if n == 0:
        splits = sorted(set(pq.read_table(path, columns=["split"]).column("split").to_pylist()))
        raise ValueError(f"{path}: no rows with split == {split!r}; the file has splits {splits}")
    aligned = arrays.align(vocabulary)
    g = np.full(n, np.nan)
    schema = pq.ParquetFile(path).schema_arrow
    if "phot_g_mean_mag" in schema.names:
        filters = [("split", "=", split)] if split else None
        t = pq.read_table(path, columns=["phot_g_mean_mag"], filters=filters)
        g = t.column("phot_g_mean_mag").to_numpy(zero_copy_only=False).astype(np.float64)
    stars = StarSet(aligned.source_id.astype(np.int64), aligned.values, aligned.errors, vocabulary, g, path)
    if max_stars is not None and n > max_stars:
        idx = np.sort(np.random.default_rng(seed).choice(n, size=max_stars, replace=False))
        stars = stars.subset(idx)
    logger.info("%s [%s]: %d stars", path, split, len(stars))
    return stars
