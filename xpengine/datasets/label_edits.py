"""Token matrices of a mixed training set and the label edits of its synthetic rows
(`xpengine.datasets.mixed.build_mixed`).

- `token_matrices`: the (N, T) values and errors of a training table's token columns;
- `drop_tokens`: tokens made missing in the synthetic training rows, learned from the real stars alone;
- `set_truth_tokens`: tokens whose synthetic values are the simulated truth instead of the survey-like
  labels (TRUTH_LABELS gives each token's truth column);
- `warn_mixed_metallicity`: a warning when the m_h token would mix two metallicity scales.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

__all__ = [
    "TRUTH_ERRORS",
    "TRUTH_LABELS",
    "drop_tokens",
    "edit_synthetic_labels",
    "set_truth_tokens",
    "token_matrices",
    "warn_mixed_metallicity",
]

#: Truth columns of a simulated training-schema file behind each token `set_truth_tokens` may take, and
#: the map from column to token value.
TRUTH_LABELS: dict[str, tuple[str, Any]] = {
    "mass": ("truth_mass", lambda x: x),
    "ln_age": ("truth_age_gyr", np.log),
    "teff": ("truth_teff", lambda x: x),
    "logg": ("truth_logg", lambda x: x),
    "m_h": ("truth_m_h", lambda x: x),
    "alpha_m": ("truth_alpha_m", lambda x: x),
}

#: Known error of the truth values in the loss: "zero", or "keep" the survey-like label's error.
TRUTH_ERRORS = ("zero", "keep")


def token_matrices(mixed: Any, vocab: Any) -> tuple[np.ndarray, np.ndarray]:
    """(values, errors), (N, T) float32 each, of the vocabulary's token columns of a training table."""
    n = mixed.num_rows
    values = np.empty((n, len(vocab)), dtype=np.float32)  # (N, T)
    errors = np.empty((n, len(vocab)), dtype=np.float32)  # (N, T)
    for j, tok in enumerate(vocab.tokens):
        values[:, j] = mixed.column(tok.name).to_numpy(zero_copy_only=False)
        errors[:, j] = mixed.column(tok.error_name).to_numpy(zero_copy_only=False)
    return values, errors


def drop_tokens(
    values: np.ndarray, errors: np.ndarray, vocab: Any, rows: np.ndarray, names: Sequence[str]
) -> None:
    """Make tokens `names` missing (value NaN, error 0: the schema's "unknown") in `rows` (N,) bool, in place."""
    unknown = [t for t in names if t not in vocab.names]
    if unknown:
        raise ValueError(f"synthetic_drop: {unknown} are not tokens of vocabulary {vocab.name}")
    for name in names:
        j = vocab.names.index(name)
        values[rows, j] = np.nan
        errors[rows, j] = 0.0


def truth_values(table: Any, name: str) -> np.ndarray:
    """Token `name`'s value for every row (N,) float64 from the pyarrow `table`'s truth column (TRUTH_LABELS)."""
    if name not in TRUTH_LABELS:
        raise ValueError(f"{name!r} has no truth column (known: {sorted(TRUTH_LABELS)})")
    column, to_token = TRUTH_LABELS[name]
    if column not in table.column_names:
        raise ValueError(f"synthetic_truth: the synthetic file has no {column!r} column for {name!r}")
    truth = np.asarray(table.column(column).to_numpy(zero_copy_only=False), dtype=np.float64)  # (N,)
    with np.errstate(divide="ignore", invalid="ignore"):
        return to_token(truth)


def set_truth_tokens(
    values: np.ndarray,
    errors: np.ndarray,
    vocab: Any,
    table: Any,
    rows: np.ndarray,
    names: Sequence[str],
    keep_errors: bool = False,
) -> None:
    """Give tokens `names` in `rows` (N,) bool the simulated truth (TRUTH_LABELS, read from the pyarrow
    `table`'s columns), in place, with error 0 or (keep_errors) the survey-like label's error, which then
    weighs the stars in the loss as before."""
    unknown = [t for t in names if t not in TRUTH_LABELS or t not in vocab.names]
    if unknown:
        raise ValueError(
            f"synthetic_truth: {unknown} have no truth column (known: {sorted(TRUTH_LABELS)}) or are not "
            f"tokens of vocabulary {vocab.name}"
        )
    for name in names:
        j = vocab.names.index(name)
        values[rows, j] = truth_values(table, name)[rows]
        if not keep_errors:
            errors[rows, j] = 0.0


def edit_synthetic_labels(
    values: np.ndarray,
    errors: np.ndarray,
    vocab: Any,
    table: Any,
    synthetic: np.ndarray,
    train: np.ndarray,
    drop: Sequence[str],
    truth: Sequence[str],
    truth_errors: str,
) -> None:
    """`build_mixed`'s label edits, in place: the truth for `truth` in every synthetic row (`synthetic`
    (N,) bool), then `drop` made missing in the synthetic training rows (`train` (N,) bool)."""
    if truth_errors not in TRUTH_ERRORS:
        raise ValueError(f"synthetic_truth_errors must be 'zero' or 'keep', got {truth_errors!r}")
    set_truth_tokens(values, errors, vocab, table, synthetic, truth, truth_errors == "keep")
    drop_tokens(values, errors, vocab, synthetic & train, drop)


def warn_mixed_metallicity(
    real_prov: dict[str, Any], syn_prov: dict[str, Any], drop: Sequence[str], real_path: str, syn_path: str
) -> None:
    """Log a warning when the m_h token would mix two metallicities: the real stars' APOGEE [Fe/H]
    (`m_h_source: fe_h`) and a simulated survey's total metallicity, which differ by up to 0.23 dex for
    α-rich stars (`xpengine.model.metadata.METALLICITY_SCALES`)."""
    if "m_h" in drop or real_prov.get("m_h_source") != "fe_h" or syn_prov.get("origin") != "synthetic":
        return
    logger.warning(
        "the m_h token of %s is APOGEE [Fe/H] and that of %s the simulated total metallicity [M/H] "
        "(up to 0.23 dex higher for alpha-rich stars): the model would learn both as one; drop m_h from the "
        "synthetic rows (--synthetic-drop-tokens m_h) to learn [Fe/H] from the real stars alone",
        real_path,
        syn_path,
    )
