"""Training set from a simulated sky: the survey builder (`xpengine.datasets.survey`) with the sky's
file names filled in, plus its E(B−V) table and its ground truth.

A sky directory (written by `xpengine.simulate`) holds:
- `XpContinuousMeanSpectrum_AAAAAA-BBBBBB.csv.gz` and `GaiaSource_AAAAAA-BBBBBB.csv.gz` (Gaia bulk layout),
- `allStar-synthetic.fits` and `APOGEE_DistMass-synthetic.fits` (APOGEE DR17 / DistMass layouts),
- a 2MASS Parquet table (`source_id`, `j_m`, `j_msigcom`, `h_m`, `h_msigcom`, `ks_m`, `ks_msigcom`) and an
  E(B−V) Parquet table (`source_id`, `ebv`, `ebv_error`): found by name (`*2mass*`/`*tmass*`,
  `*ebv*`/`*extinction*`, case-insensitive),
- `truth.parquet` (`source_id` + true quantities): every numeric truth column is copied into the
  output as an extra column `truth_<name>` (the schema allows such columns), so a model trained on the
  sky can be scored against the truth, not only against the noisy labels.

Everything else (flags, cuts, split, tokens) is exactly the real-survey recipe.
"""

from __future__ import annotations

import fnmatch
import glob
import logging
import os
from typing import Any

import numpy as np

from xpengine.datasets.survey import SurveyBuild, SurveyInputs, build_survey
from xpengine.io._arrays import source_id_numpy

__all__ = ["ORIGIN", "build_synthetic", "sky_inputs", "truth_columns"]

logger = logging.getLogger(__name__)

ORIGIN = "synthetic"


def _one(directory: str, patterns: tuple[str, ...], what: str, *, required: bool) -> str | None:
    names = sorted(
        {
            p
            for pat in patterns
            for p in glob.glob(os.path.join(directory, "*"))
            if fnmatch.fnmatch(os.path.basename(p).lower(), pat.lower())
        }
    )
    if len(names) > 1:
        raise ValueError(f"sky {directory}: several {what} files {names}; expected exactly one")
    if not names:
        if required:
            raise ValueError(
                f"sky {directory}: no {what} file (looked for {list(patterns)}); is it an xpengine simulated sky?"
            )
        return None
    return names[0]


def sky_inputs(directory: str) -> tuple[SurveyInputs, str | None]:
    """(SurveyInputs, truth path or None) for a simulated sky directory."""
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"sky directory {directory!r} does not exist")
    allstar = _one(directory, ("allStar*.fits", "allStar*.fits.gz"), "allStar", required=True)
    distmass = _one(directory, ("*DistMass*.fits", "*DistMass*.fits.gz"), "DistMass", required=True)
    tmass = _one(directory, ("*2mass*.parquet", "*tmass*.parquet"), "2MASS table", required=False)
    ebv = _one(directory, ("*ebv*.parquet", "*extinction*.parquet"), "E(B-V) table", required=False)
    truth = _one(directory, ("truth.parquet",), "truth table", required=False)
    if tmass is None:
        logger.warning("sky %s: no 2MASS Parquet table; using the allStar J, H, K columns", directory)
    if ebv is None:
        logger.warning("sky %s: no E(B-V) Parquet table; the logebv token will be missing", directory)
    inputs = SurveyInputs(
        allstar=str(allstar),
        distmass=str(distmass),
        xp=directory,
        gaia_source=directory,
        tmass=tmass,
        ebv=ebv,
    )
    return inputs, truth


def truth_columns(path: str) -> dict[str, Any]:
    """extra_columns for `build_survey`: `truth_<name>` → function(source_id) for each numeric truth column.

    Stars absent from the truth table get NaN. The truth table must have unique source_ids.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    t = pq.read_table(path)
    if "source_id" not in t.column_names:
        raise ValueError(f"truth table {path}: no source_id column; columns: {t.column_names}")
    sid = source_id_numpy(t.column("source_id"), f"truth table {path}", "source_id")
    if np.unique(sid).size != sid.size:
        raise ValueError(f"truth table {path}: duplicated source_id values")
    order = np.argsort(sid)
    sid_sorted = sid[order]
    out: dict[str, Any] = {}
    for name in t.column_names:
        col = t.column(name)
        if name == "source_id" or not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
            continue
        values = np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float64)[order]
        key = name if name.startswith("truth_") else f"truth_{name}"

        def lookup(ids: np.ndarray, values: np.ndarray = values) -> np.ndarray:
            pos = np.clip(np.searchsorted(sid_sorted, ids), 0, max(sid_sorted.size - 1, 0))
            found = sid_sorted[pos] == ids if sid_sorted.size else np.zeros(len(ids), dtype=bool)
            return np.where(found, values[pos] if values.size else np.nan, np.nan)

        out[key] = lookup
    return out


def build_synthetic(directory: str, **survey_options: Any) -> SurveyBuild:
    """Build the training-schema table of a simulated sky (see the module docstring).

    survey_options: passed to `build_survey` (split fractions, column names, keep_without_evolution…).
    """
    inputs, truth = sky_inputs(directory)
    extra = truth_columns(truth) if truth else None
    return build_survey(
        inputs,
        origin=ORIGIN,
        extra_columns=extra,
        provenance={"sky": os.path.abspath(directory), "truth": truth},
        **survey_options,
    )
