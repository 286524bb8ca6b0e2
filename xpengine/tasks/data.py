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

import numpy as np

from xpengine.features.vocabulary import Vocabulary

__all__ = ["StarSet", "load_stars"]

logger = logging.getLogger(__name__)


@dataclass
class StarSet:
    """N stars: source_id (N,) int64, values / errors (N, T) float32 in `vocabulary` order (NaN / 0 =
    missing), g_mag (N,) [mag] (NaN when unknown)."""

    source_id: np.ndarray
    values: np.ndarray
    errors: np.ndarray
    vocabulary: Vocabulary
    g_mag: np.ndarray
    path: str = ""

    def __len__(self) -> int:
        return len(self.source_id)

    def column(self, name: str) -> np.ndarray:
        """(N,) float64 values of token `name` (all NaN when the vocabulary lacks it)."""
        if name in self.vocabulary:
            return self.values[:, self.vocabulary.index(name)].astype(np.float64)
        return np.full(len(self), np.nan)

    def error(self, name: str) -> np.ndarray:
        if name in self.vocabulary:
            return self.errors[:, self.vocabulary.index(name)].astype(np.float64)
        return np.full(len(self), np.nan)

    def xp(self) -> np.ndarray:
        """(N, n_bp + n_rp) XP tokens (G-normalised coefficients), NaN = not relevant / missing."""
        return self.values[:, self.vocabulary.indices(self.vocabulary.xp_names)].astype(np.float64)

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

    def subset(self, idx: np.ndarray) -> StarSet:
        return StarSet(
            self.source_id[idx],
            self.values[idx],
            self.errors[idx],
            self.vocabulary,
            self.g_mag[idx],
            self.path,
        )


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
    from xpengine.evaluate.runner import align_to_vocabulary

    path = str(path)
    arrays = read_training_set(path, split=split)
    n = len(arrays.source_id)
    if n == 0:
        splits = sorted(set(pq.read_table(path, columns=["split"]).column("split").to_pylist()))
        raise ValueError(f"{path}: no rows with split == {split!r}; the file has splits {splits}")
    values, errors = align_to_vocabulary(arrays.values, arrays.errors, arrays.vocabulary, vocabulary)
    g = np.full(n, np.nan)
    schema = pq.ParquetFile(path).schema_arrow
    if "phot_g_mean_mag" in schema.names:
        filters = [("split", "=", split)] if split else None
        t = pq.read_table(path, columns=["phot_g_mean_mag"], filters=filters)
        g = t.column("phot_g_mean_mag").to_numpy(zero_copy_only=False).astype(np.float64)
    stars = StarSet(arrays.source_id.astype(np.int64), values, errors, vocabulary, g, path)
    if max_stars is not None and n > max_stars:
        idx = np.sort(np.random.default_rng(seed).choice(n, size=max_stars, replace=False))
        stars = stars.subset(idx)
    logger.info("%s [%s]: %d stars", path, split, len(stars))
    return stars
