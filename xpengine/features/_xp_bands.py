"""The XP coefficient bands of `build_tokens`' input: reading one band with its errors and relevancy
counts, dropping corrupt rows, and applying an optional representation (`Representation`) with the
vocabulary's shape check. Used only by `xpengine.features.tokens.build_tokens`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from xpengine.features._columns import InputColumns
from xpengine.features.vocabulary import Vocabulary
from xpengine.io.schema import MAX_ABS_XP_COEFFICIENT

if TYPE_CHECKING:
    from xpengine.features.tokens import Representation

__all__ = ["apply_representation", "corrupt_rows", "xp_band"]


def corrupt_rows(values: np.ndarray, errors: np.ndarray, present: np.ndarray) -> np.ndarray:
    """(N,) bool: present rows with a coefficient NaN, ±inf or beyond ±MAX_ABS_XP_COEFFICIENT, or an
    error ±inf, negative or beyond the bound (NaN errors are "unknown", allowed). values/errors (N, w).

    Row reductions only (max/min propagate NaN, fmax/fmin skip it): no (N, w) temporaries."""
    if values.shape[1] == 0:
        return np.zeros(values.shape[0], dtype=bool)
    with np.errstate(invalid="ignore"):
        ok = (values.max(axis=1) <= MAX_ABS_XP_COEFFICIENT) & (values.min(axis=1) >= -MAX_ABS_XP_COEFFICIENT)
        bad_err = (np.fmax.reduce(errors, axis=1) > MAX_ABS_XP_COEFFICIENT) | (
            np.fmin.reduce(errors, axis=1) < 0
        )
    return present & (~ok | bad_err)


def xp_band(
    cols: InputColumns, band: str, n_expected: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
    """(coefficients (N, w), errors (N, w), present (N,), n_relevant (N,) or None, corrupt (N,)) of one
    band; corrupt rows (`corrupt_rows`) are returned as missing (NaN, not present)."""
    n = cols.n
    coef = cols.band(f"{band}_coefficients")
    err = cols.band(f"{band}_coefficient_errors")
    if coef is None:
        values = np.full((n, n_expected), np.nan)
        present = np.zeros(n, dtype=bool)
    else:
        values, present = coef
        if values.shape[1] == 0:
            values = np.full((n, n_expected), np.nan)
    w = values.shape[1]
    if err is None:
        errors = np.full((n, w), np.nan)
    else:
        errors, _ = err
        if errors.shape[1] == 0:
            errors = np.full((n, w), np.nan)
        elif errors.shape[1] != w:
            raise ValueError(
                f"column '{band}_coefficient_errors' has {errors.shape[1]} entries per row but "
                f"'{band}_coefficients' has {w}"
            )
    n_relevant = cols.scalar(f"{band}_n_relevant_bases")
    corrupt = corrupt_rows(values, errors, present)
    present = present & ~corrupt
    if not present.all():  # band arrays may be read-only views of Arrow buffers: never edit in place
        values = np.where(present[:, None], values, np.nan)
        errors = np.where(present[:, None], errors, np.nan)
    return values, errors, present, n_relevant, corrupt


def apply_representation(
    representation: Representation | None,
    bp: np.ndarray,
    rp: np.ndarray,
    bp_err: np.ndarray,
    rp_err: np.ndarray,
    vocabulary: Vocabulary,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    n = bp.shape[0]
    if representation is not None:
        f64 = [np.asarray(a, dtype=np.float64) for a in (bp, rp, bp_err, rp_err)]
        out = representation(*f64)
        if not (isinstance(out, tuple) and len(out) == 4):
            raise ValueError(
                f"representation {representation!r} must return a tuple (bp, rp, bp_err, rp_err), "
                f"got {type(out).__name__}"
            )
        bp, rp, bp_err, rp_err = (np.asarray(a, dtype=np.float64) for a in out)
        where = f"representation {getattr(representation, '__name__', representation)!r} output"
    else:
        where = "column"
    for label, arr, want in (
        ("bp", bp, vocabulary.n_bp),
        ("rp", rp, vocabulary.n_rp),
        ("bp errors", bp_err, vocabulary.n_bp),
        ("rp errors", rp_err, vocabulary.n_rp),
    ):
        if arr.shape != (n, want):
            col = {
                "bp": "bp_coefficients",
                "rp": "rp_coefficients",
                "bp errors": "bp_coefficient_errors",
                "rp errors": "rp_coefficient_errors",
            }[label]
            raise ValueError(
                f"{where} {col!r}: shape {arr.shape}, but vocabulary {vocabulary.name} expects "
                f"({n}, {want}) ({label}); pass a matching vocabulary or a representation that maps them"
            )
    return bp, rp, bp_err, rp_err
