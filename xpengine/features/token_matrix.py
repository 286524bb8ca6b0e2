"""The one (N, T) token container: `TokenMatrix`, N sources' token values and errors in a vocabulary's
order, and `align_to_vocabulary`, the re-ordering of such matrices into another vocabulary.

Every holder of token matrices in the package is a `TokenMatrix` that adds only its own fields:
`features.tokens.TokenBatch` (flags, build parameters), `datasets.schema.TrainingArrays` (split,
provenance), `tasks.data.StarSet` (G, path) and `evaluate.eval_set.EvalSet` (path, split, G, truths).
A subclass whose extra fields are per-row overrides `_subset_fields` so that `subset` keeps them in step.

Conventions (REFERENCE §3): values (N, T) float32 in physical units, NaN = missing; errors (N, T)
float32, 0 = missing/unknown; source_id (N,) int64.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Self

import numpy as np

from xpengine.features.vocabulary import Vocabulary

__all__ = ["TokenMatrix", "align_to_vocabulary"]


def align_to_vocabulary(
    values: np.ndarray, errors: np.ndarray, source: Vocabulary, target: Vocabulary
) -> tuple[np.ndarray, np.ndarray]:
    """Re-order token matrices (N, T_source) into `target` order (N, T_target) float32.

    Target tokens the source lacks become NaN values with error 0 (missing).
    """
    n = values.shape[0]
    v = np.full((n, len(target)), np.nan, dtype=np.float32)
    e = np.zeros((n, len(target)), dtype=np.float32)
    common = [name for name in target.names if name in source]
    if common:
        ti, si = target.indices(common), source.indices(common)
        v[:, ti] = values[:, si]
        e[:, ti] = errors[:, si]
    return v, e


@dataclass(frozen=True)
class TokenMatrix:
    """Token values and errors of N sources in `vocabulary` order.

    source_id (N,) int64; values (N, T) float32, NaN = missing; errors (N, T) float32, 0 =
    missing/unknown. Frozen: the fields are fixed, the arrays are not copied (and not read-only).
    """

    source_id: np.ndarray  # (N,) int64
    values: np.ndarray  # (N, T) float32, NaN = missing
    errors: np.ndarray  # (N, T) float32, 0 = missing/unknown
    vocabulary: Vocabulary

    def __len__(self) -> int:
        return int(self.source_id.shape[0])

    def column(self, name: str) -> np.ndarray:
        """(N,) float64 values of token `name` (all NaN when the vocabulary lacks it)."""
        if name in self.vocabulary:
            return self.values[:, self.vocabulary.index(name)].astype(np.float64)
        return np.full(len(self), np.nan)

    def error(self, name: str) -> np.ndarray:
        """(N,) float64 errors of token `name` (all NaN when the vocabulary lacks it)."""
        if name in self.vocabulary:
            return self.errors[:, self.vocabulary.index(name)].astype(np.float64)
        return np.full(len(self), np.nan)

    def matrix(self, names: Sequence[str]) -> np.ndarray:
        """(N, len(names)) float64 token values; tokens the vocabulary lacks are NaN columns."""
        return np.stack([self.column(n) for n in names], axis=1) if names else np.empty((len(self), 0))

    def xp(self) -> np.ndarray:
        """(N, n_bp + n_rp) float64 XP tokens (G-normalised coefficients), NaN = not relevant / missing."""
        return self.values[:, self.vocabulary.indices(self.vocabulary.xp_names)].astype(np.float64)

    def _subset_fields(self, idx: np.ndarray) -> dict[str, Any]:
        """The fields of a subclass that hold one entry per row, taken at `idx` (none here)."""
        return {}

    def subset(self, idx: np.ndarray) -> Self:
        """The rows `idx` (an index array or boolean mask), of the same class with the same other fields."""
        return dataclasses.replace(
            self,
            source_id=self.source_id[idx],
            values=self.values[idx],
            errors=self.errors[idx],
            **self._subset_fields(idx),
        )

    def align(self, vocabulary: Vocabulary) -> Self:
        """The same rows re-ordered into `vocabulary` (`align_to_vocabulary`: tokens this one lacks are
        missing), of the same class with the same other fields."""
        values, errors = align_to_vocabulary(self.values, self.errors, self.vocabulary, vocabulary)
        return dataclasses.replace(self, values=values, errors=errors, vocabulary=vocabulary)
