"""Real-data paths and a tiny independent parser for the datasets tests (not a test module)."""

from __future__ import annotations

import _paths
import numpy as np
import pandas as pd

DEV = str(_paths.APOGEE_XP_DEV)  # large: shared data, tests skip without it
# bundled real Gaia DR3 samples (tests/data)
STAR = _paths.STAR
STAR_CONTINUOUS = str(_paths.STAR_CONTINUOUS)
STAR_SAMPLED = str(_paths.STAR_SAMPLED)
# G of 5937083312263887616 is not in the sample files: this is GaiaXPy 2.1.5's synthetic
# Gaia_DR3_Vega G of its archive continuous spectrum (generate(...)). Any value serves the
# continuous-vs-sampled comparison, since both paths divide by the same G flux.
STAR_G = 13.871
ARCHIVE_CSVS = (
    STAR_CONTINUOUS,
    f"{_paths.XP_DIR}/XP_CONTINUOUS_RAW.csv",
    str(_paths.SCO18),
    f"{_paths.XP_DIR}/XP_CONTINUOUS_RAW_colour_eq_dr3int6.csv",
)

needs_dev = _paths.needs_file(DEV)


def _vec(text: object) -> np.ndarray:
    return np.array(str(text).strip("()[]").split(","), dtype=np.float64)


def read_archive_csv(path: str) -> list[dict[str, object]]:
    """Rows of an archive XP_CONTINUOUS csv ("(a, b, ...)" arrays) as dicts of numpy arrays."""
    df = pd.read_csv(path)
    rows = []
    for _, r in df.iterrows():
        row: dict[str, object] = {"source_id": int(r["source_id"])}
        for band in ("bp", "rp"):
            row[f"{band}_coefficients"] = _vec(r[f"{band}_coefficients"])
            row[f"{band}_coefficient_errors"] = _vec(r[f"{band}_coefficient_errors"])
            row[f"{band}_coefficient_correlations"] = _vec(r[f"{band}_coefficient_correlations"])
            if f"{band}_n_relevant_bases" in df:
                row[f"{band}_n_relevant_bases"] = float(r[f"{band}_n_relevant_bases"])
        if "phot_g_mean_mag" in df:
            row["phot_g_mean_mag"] = float(r["phot_g_mean_mag"])
        rows.append(row)
    return rows
