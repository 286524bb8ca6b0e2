"""Paths of the real Gaia files copied into tests/data (see tests/data/PROVENANCE.md) and helpers."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pyarrow as pa

DATA = Path(__file__).parent / "data"
XP_DIR = DATA / "gaia_xp"
GAIA_DIR = DATA / "gaia_source"

XP_FILES = sorted(p for p in XP_DIR.iterdir() if p.suffix in {".csv", ".ecsv", ".fits", ".xml"})
"""Every real XP continuous file: archive csv/ecsv/fits/VOTable, astroquery DataLink, 18 Sco."""

MISSING_BP = 5405570973190252288
NORMAL_IDS = (5853498713190525696, 5762406957886626816)
WITH_MISSING_ECSV = XP_DIR / "XP_CONTINUOUS_RAW_with_missing_BP.ecsv"
GAIA_VOT = GAIA_DIR / "1710099405832VAL-result.vot"
GAIA_ECSV = GAIA_DIR / "1712337806100O-result.ecsv"


def gaiaxpy_parse(path: Path):
    """GaiaXPy's own parse of an XP continuous file (pandas DataFrame, arrays as numpy).

    Uses the parser GaiaXPy's `convert`/`calibrate` run on files. Files lacking `*_standard_deviation`
    (18 Sco) go through GaiaXPy's generic CSV parser, which parses arrays/correlations the same way
    but does not build covariances.
    """
    from gaiaxpy.file_parser.parse_generic import GenericParser
    from gaiaxpy.file_parser.parse_internal_continuous import (
        InternalContinuousParser,
        array_columns,
        matrix_columns,
    )

    if path.name.startswith("18Sco"):
        return GenericParser()._parse_csv(
            str(path), _array_columns=array_columns, _matrix_columns=matrix_columns
        )
    df, _ = InternalContinuousParser().parse_file(str(path), disable_info=True)
    return df


def is_missing(value) -> bool:
    """GaiaXPy's representation of a missing array: NaN scalar, None or empty array."""
    if value is None:
        return True
    if isinstance(value, float):
        return bool(np.isnan(value))
    return np.asarray(value).size == 0


def bulk_text(path: Path) -> str:
    with gzip.open(path, "rt") as f:
        return f.read()


def write_gz_text(path: Path, text: str) -> None:
    with gzip.open(path, "wt") as f:
        f.write(text)


def repeat_rows(table: pa.Table, n: int, *, seed: int = 0) -> pa.Table:
    """n rows made of the table's rows repeated, with new source_ids and perturbed coefficients."""
    import pyarrow.compute as pc

    rng = np.random.default_rng(seed)
    idx = np.arange(n) % table.num_rows
    big = table.take(pa.array(idx))
    cols = {}
    for name in big.column_names:
        col = big[name].combine_chunks()
        if name == "source_id":
            col = pa.array(np.int64(4_000_000_000_000_000_000) + np.arange(n, dtype=np.int64))
        elif name.endswith(("_coefficients", "_coefficient_errors")):
            lengths = np.asarray(pc.fill_null(pc.list_value_length(col), 0))
            vals = col.values.to_numpy(zero_copy_only=False)
            scale = np.repeat(rng.lognormal(0.0, 0.3, n), lengths)[: vals.size]
            col = pa.ListArray.from_arrays(
                col.offsets, pa.array((vals * scale).astype(vals.dtype)), mask=col.is_null()
            )
        cols[name] = col
    return pa.table(cols)
