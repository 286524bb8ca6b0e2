"""The test set of an evaluation: the stars of one split of a training-schema Parquet file with every
token of their file and the evaluated truths (`EvalSet`, `load_eval_set`), and token matrices re-ordered
into a model's vocabulary (`align_to_vocabulary`, whose home is `xpengine.features.token_matrix`).
Re-exported by `xpengine.evaluate.runner`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xpengine.datasets.schema import read_training_set
from xpengine.evaluate.baseline import BASELINE_LABELS
from xpengine.features.token_matrix import TokenMatrix, align_to_vocabulary

__all__ = ["G_COLUMN", "LABEL_TOKENS", "EvalSet", "align_to_vocabulary", "load_eval_set"]

logger = logging.getLogger(__name__)

LABEL_TOKENS: tuple[str, ...] = BASELINE_LABELS
"""Label tokens evaluated when present: teff, logg, m_h, alpha_m, mass, ln_age."""
G_COLUMN = "phot_g_mean_mag"


@dataclass(frozen=True)
class EvalSet(TokenMatrix):
    """Stars of one split with every token of their file and the evaluated truths: a `TokenMatrix`
    (values, errors (N, T) in the file's vocabulary order) with the file, the split, g_mag (N,) G
    magnitude or None, and truth / truth_error: label → (N,) physical (errors 0 = unknown), including
    ``age`` [Gyr] when ``ln_age`` is present.
    """

    path: str
    split: str | None
    g_mag: np.ndarray | None
    truth: dict[str, np.ndarray] = field(default_factory=dict)
    truth_error: dict[str, np.ndarray] = field(default_factory=dict)

    def snr_proxy(self) -> np.ndarray:
        """|rp0| / σ(rp0) (N,): S/N of the first RP coefficient, ≈ the integrated RP flux S/N."""
        if "rp0" not in self.vocabulary:
            return np.full(len(self), np.nan)
        j = self.vocabulary.index("rp0")
        with np.errstate(divide="ignore", invalid="ignore"):
            e = self.errors[:, j].astype(np.float64)
            return np.where(e > 0, np.abs(self.values[:, j]) / e, np.nan)

    def _subset_fields(self, idx: np.ndarray) -> dict[str, Any]:
        return {
            "g_mag": None if self.g_mag is None else self.g_mag[idx],
            "truth": {k: v[idx] for k, v in self.truth.items()},
            "truth_error": {k: v[idx] for k, v in self.truth_error.items()},
        }


def _read_extra_columns(path: str, split: str | None, names: Sequence[str]) -> dict[str, np.ndarray]:
    import pyarrow.parquet as pq

    available = set(pq.ParquetFile(path).schema_arrow.names)
    want = [n for n in names if n in available]
    if not want:
        return {}
    filters = [("split", "=", split)] if split else None
    table = pq.read_table(path, columns=want, filters=filters)
    return {n: table.column(n).to_numpy(zero_copy_only=False).astype(np.float64) for n in want}


def load_eval_set(
    path: str, *, split: str | None = "test", max_stars: int | None = None, seed: int = 0
) -> EvalSet:
    """Read the `split` rows of a training-schema Parquet file (all rows when split is None or "all":
    a held-back file scored whole).

    Label truths come from the label tokens of the file, or from plain columns of the same name
    (`alpha_m`, with `alpha_m_error` if present) when the vocabulary lacks them. max_stars: keep a
    seeded random subset of at most that many rows (quick runs).
    """
    rows = None if split == "all" else split  # the rows read; `split` names them in the report
    arrays = read_training_set(path, split=rows)
    vocab = arrays.vocabulary
    extra_names = [G_COLUMN]
    for lab in LABEL_TOKENS:
        if lab not in vocab:
            extra_names += [lab, f"{lab}_error"]
    extra = _read_extra_columns(path, rows, extra_names)
    es = EvalSet(
        path=str(path),
        split=split,
        source_id=arrays.source_id,
        values=arrays.values,
        errors=arrays.errors,
        vocabulary=vocab,
        g_mag=extra.get(G_COLUMN),
    )
    n = len(es)
    for lab in LABEL_TOKENS:
        if lab in vocab:
            j = vocab.index(lab)
            t, e = arrays.values[:, j].astype(np.float64), arrays.errors[:, j].astype(np.float64)
        elif lab in extra:
            t, e = extra[lab], extra.get(f"{lab}_error", np.zeros(n))
        else:
            continue
        if not np.isfinite(t).any():
            continue
        es.truth[lab] = t
        es.truth_error[lab] = np.nan_to_num(e, nan=0.0)
    if "ln_age" in es.truth:
        age = np.exp(es.truth["ln_age"])
        es.truth["age"] = age
        es.truth_error["age"] = age * es.truth_error["ln_age"]
    if n == 0:
        raise ValueError(f"{path}: no rows with split == {split!r}")
    if max_stars is not None and n > max_stars:
        idx = np.sort(np.random.default_rng(seed).choice(n, size=max_stars, replace=False))
        es = es.subset(idx)
    logger.info("%s [%s]: %d stars, labels %s", path, split, len(es), sorted(es.truth))
    return es


def bundled_split_overlap(source_id: np.ndarray) -> dict[str, int]:
    """{split: n} of `source_id` (N,) found in the shipped APOGEE×XP dev split
    (`xpengine.datasets.splits.read_default_split`): the bundled models learned from its `train` stars and
    were chosen on its `val` stars, so scores of those stars are not independent. Logged as a warning
    when any scored star is in `train` or `val` (a held-back file has none)."""
    from xpengine.datasets.splits import read_default_split

    ids, split = read_default_split()
    pos = np.clip(np.searchsorted(ids, source_id), 0, max(len(ids) - 1, 0))
    found = (ids[pos] == source_id) if len(ids) else np.zeros(len(source_id), dtype=bool)
    out = {name: int(np.sum(found & (split[pos] == name))) for name in ("train", "val", "test")}
    if out["train"] or out["val"]:
        logger.warning(
            "%d of the %d scored stars are in the bundled models' APOGEE×XP training split and %d in the split "
            "they were chosen on: their scores are not independent of the bundled models' training",
            out["train"],
            len(source_id),
            out["val"],
        )
    return out
