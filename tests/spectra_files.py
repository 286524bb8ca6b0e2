"""Minimal, independent parsers of the real Gaia DR3 sample files used by the spectra tests.

Deliberately not `xpengine.io` (written in parallel): the archive CSV stores arrays as "(a, b, ...)"
strings, empty fields for missing values (REFERENCE §1). Files: bundled in tests/data (see its
PROVENANCE.md: astroquery DataLink products of 5937083312263887616, GaiaXPy test files).
"""

from __future__ import annotations

import csv
from pathlib import Path

import _paths
import numpy as np

STAR = str(_paths.STAR)
STAR_CONTINUOUS = _paths.STAR_CONTINUOUS
STAR_SAMPLED = _paths.STAR_SAMPLED
RAW = _paths.XP_DIR / "XP_CONTINUOUS_RAW.csv"
RAW_WITH_MISSING_BP = _paths.XP_DIR / "XP_CONTINUOUS_RAW_with_missing_BP.csv"
CALIB_DIR = _paths.CALIBRATE_DIR

csv.field_size_limit(2**31 - 1)


def parse_array(text: str, n: int) -> np.ndarray:
    """'(a, b, ...)' -> float64 array; '' -> n NaNs (missing band)."""
    text = text.strip()
    if not text:
        return np.full(n, np.nan)
    return np.array([float(v) for v in text.strip("()[]").split(",")], dtype=np.float64)


def read_continuous_csv(path: Path) -> dict[str, np.ndarray]:
    """Archive XP_CONTINUOUS CSV -> arrays with a leading source axis (bp/rp coefficients, errors, ...)."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    out: dict[str, np.ndarray] = {"source_id": np.array([int(r["source_id"]) for r in rows], dtype=np.int64)}
    for band in ("bp", "rp"):
        out[f"{band}_coefficients"] = np.stack([parse_array(r[f"{band}_coefficients"], 55) for r in rows])
        out[f"{band}_coefficient_errors"] = np.stack(
            [parse_array(r[f"{band}_coefficient_errors"], 55) for r in rows]
        )
        out[f"{band}_coefficient_correlations"] = np.stack(
            [parse_array(r[f"{band}_coefficient_correlations"], 55 * 54 // 2) for r in rows]
        )
        out[f"{band}_n_relevant_bases"] = np.array(
            [float(r[f"{band}_n_relevant_bases"]) if r[f"{band}_n_relevant_bases"] else np.nan for r in rows]
        )
    return out


def read_archive_sampled_csv(path: Path) -> dict[str, np.ndarray]:
    """Archive XP_SAMPLED CSV (one row per wavelength) -> wavelength (343,), flux and flux_error (1, 343)."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return {
        "source_id": np.array([int(rows[0]["source_id"])], dtype=np.int64),
        "wavelength": np.array([float(r["wavelength"]) for r in rows]),
        "flux": np.array([[float(r["flux"]) for r in rows]]),
        "flux_error": np.array([[float(r["flux_error"]) for r in rows]]),
    }


def read_calibrated_csv(path: Path) -> dict[str, np.ndarray]:
    """GaiaXPy `calibrate` golden output (source_id, flux, flux_error as tuple strings)."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    n = len(parse_array(rows[0]["flux"], 0))
    return {
        "source_id": np.array([int(r["source_id"]) for r in rows], dtype=np.int64),
        "flux": np.stack([parse_array(r["flux"], n) for r in rows]),
        "flux_error": np.stack([parse_array(r["flux_error"], n) for r in rows]),
    }
