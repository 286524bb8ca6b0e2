"""Stars given in a notebook (an astropy Table, pandas DataFrame, pyarrow Table or dict of arrays, with XP
coefficients or sampled spectra) as the Arrow table of XP columns that `Predictor.from_xp` featurises."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from xpengine.io.xp_sampled import read_xp_sampled, sampled_layout

__all__ = ["xp_input_table"]


def xp_input_table(
    xp: Any, overrides: Mapping[str, Any], *, sampling: Any = None, source_id: int | None = None
) -> pa.Table:
    """The XP table of `xp` (see `Predictor.from_xp`: XP coefficients, or sampled spectra read by
    `xpengine.io.read_xp_sampled`) with the columns of `overrides` ({name: (N,) array or scalar, None =
    not given}) in place of its own (a G magnitude also in place of its G flux)."""
    layout = sampled_layout(_column_names(xp))
    if layout is None:
        table = _as_arrow(xp)
    else:
        table = read_xp_sampled(xp, sampling=sampling, source_id=source_id)
        if layout == "array":  # one row per source: its other columns (G, parallax, ...) go along
            given = _as_arrow(xp)
            for name in given.column_names:
                if name not in table.column_names and name not in ("flux", "flux_error"):
                    table = table.append_column(name, given.column(name))
    n = table.num_rows
    for name, value in overrides.items():
        if value is None:
            continue
        arr = np.broadcast_to(np.asarray(value, dtype=np.float64), (n,))
        # a given G replaces the table's G flux too: the XP are normalised by the flux where there is
        # one, and one star must not have two G's (its flux for the spectrum, the override elsewhere)
        drop = [c for c in (name, *_SUPERSEDES.get(name, ())) if c in table.column_names]
        table = table.drop_columns(drop).append_column(name, pa.array(arr))
    return table


_SUPERSEDES = {"phot_g_mean_mag": ("phot_g_mean_flux", "phot_g_mean_flux_error")}
"""Columns an override also replaces (they carry the same quantity in another form)."""


def _column_names(obj: Any) -> list[str]:
    """Column names of an astropy/pandas/pyarrow table or a dict of arrays."""
    for attr in ("colnames", "column_names"):
        if hasattr(obj, attr):
            return [str(c) for c in getattr(obj, attr)]
    if hasattr(obj, "columns") and hasattr(obj, "iloc"):
        return [str(c) for c in obj.columns]
    if isinstance(obj, Mapping):
        return [str(k) for k in obj]
    return []


def _as_arrow(obj: Any):
    """A pyarrow Table from an astropy Table, pandas DataFrame, pyarrow Table or dict of arrays; 2-d
    columns (coefficient arrays) become list columns, masked values NaN."""
    if isinstance(obj, pa.Table):
        return obj
    if hasattr(obj, "to_pandas") and hasattr(obj, "colnames"):  # astropy Table
        names = list(obj.colnames)
        get = obj.__getitem__
    elif hasattr(obj, "columns") and hasattr(obj, "iloc"):  # pandas DataFrame
        names = list(obj.columns)
        get = obj.__getitem__
    elif isinstance(obj, Mapping):
        names = list(obj)
        get = obj.__getitem__
    else:
        raise TypeError(
            f"expected an astropy/pandas/pyarrow table or a dict of arrays, got {type(obj).__name__}"
        )
    cols = {}
    for name in names:
        col = get(name)
        mask = None
        if np.ma.isMaskedArray(col):  # astropy masked columns: NaN for floats, nulls for the rest
            if np.asarray(col).dtype.kind == "f":
                col = col.filled(np.nan)
            elif np.ma.getmaskarray(col).ndim == 1 and np.ma.getmaskarray(col).any():
                mask = np.ma.getmaskarray(col)
        values = col.to_numpy() if hasattr(col, "to_numpy") else np.asarray(col)
        if values.dtype.kind in "iufb" and not values.dtype.isnative:  # FITS is big-endian; Arrow is not
            values = values.astype(values.dtype.newbyteorder("="))
        first = next((v for v in values if v is not None), None) if values.dtype == object else None
        if values.ndim == 2 or (values.dtype == object and first is not None and not isinstance(first, str)):
            # array cells (flattened: correlation matrices are stored flat, as in the archive); a cell of
            # NaN only is a masked (null) array, as the readers take it: a missing band, not NaN values
            cells = [None if v is None else np.asarray(v, dtype=np.float64).ravel() for v in values]
            cols[name] = pa.array([None if c is None or np.isnan(c).all() else c for c in cells])
        else:
            cols[name] = pa.array(values, mask=mask)
    return pa.table(cols)
