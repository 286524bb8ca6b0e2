"""IVOA VOTable (TABLEDATA, BINARY or BINARY2 serialisation). Arrays are declared `arraysize="*"` (the
Gaia archive) or with a fixed size (`55`, `343`: astropy and GaiaXPy); null integers, empty arrays and
null arrays (`<TD/>`, BINARY2 null flags) mark missing values. `char` and `unicodeChar` fields (astropy
writes str columns as the latter) are strings. The table's (and its resource's) PARAMs are the reader's
`table_meta`. A column that cannot be converted is a GaiaFileError naming the file and the column."""

from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np
import pyarrow as pa

from xpengine.io._arrays import lists_from_objects
from xpengine.io._source import Source
from xpengine.io.errors import GaiaFileError
from xpengine.io.formats._table import InMemoryReader, fixed_lists

NAME = "votable"

_TEXT_TYPES = ("char", "unicodeChar")
"""VOTable string datatypes: one string per cell (the arraysize is the string's length)."""

_VALUE_TYPES = {
    "double": pa.float64(),
    "float": pa.float32(),
    "long": pa.int64(),
    "int": pa.int32(),
    "short": pa.int16(),
    "unsignedByte": pa.uint8(),
}


def identify(src: Source) -> bool:
    head = src.head[:4096].lstrip()
    return head.startswith((b"<?xml", b"<VOTABLE")) and b"<VOTABLE" in head


def open_reader(src: Source) -> InMemoryReader:
    from astropy.io.votable import parse

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            vot = parse(io.BytesIO(src.read_all()), verify="ignore")
            table = vot.get_first_table()
    except Exception as exc:  # astropy raises many types for bad XML
        raise GaiaFileError(src.url, f"cannot read VOTable: {exc}") from exc
    arr = table.array
    arrays: list[pa.Array] = []
    names: list[str] = []
    meta: dict[str, dict[str, str]] = {}
    for f in table.fields:
        name = f.name
        names.append(name)
        m = {"unit": str(f.unit) if f.unit is not None else None, "description": f.description, "ucd": f.ucd}
        meta[name] = {k: str(v) for k, v in m.items() if v}
        try:
            arrays.append(_column(f, arr[name]))
        except (ValueError, TypeError, OverflowError, pa.ArrowException) as exc:
            raise GaiaFileError(
                src.url,
                f"cannot read VOTable column (datatype {f.datatype!r}, arraysize {f.arraysize!r}): {exc}",
                column=name,
            ) from exc
    table_meta = {p.name: p.value for res in vot.resources for p in res.params}
    table_meta.update({p.name: p.value for p in table.params})
    return InMemoryReader(src, NAME, pa.table(arrays, names=names), meta, table_meta)


def _column(f: Any, col: np.ndarray) -> pa.Array:
    """One VOTable FIELD's values (as astropy parsed them) as an Arrow array: strings (`char` and
    `unicodeChar`, whatever their arraysize), numeric arrays as lists, scalars as themselves."""
    if f.datatype in _TEXT_TYPES:
        data = np.ma.getdata(col)
        mask = np.ma.getmaskarray(col)
        if data.ndim > 1:  # an array of strings: keep its text, never take it for numbers
            data = np.array([str(list(v)) for v in data], dtype=object)
            mask = mask.reshape(len(mask), -1).all(axis=1)
        vals = [
            None if m else (v.decode() if isinstance(v, bytes) else str(v))
            for v, m in zip(data, mask, strict=True)
        ]
        return pa.array(vals, type=pa.string())
    if f.arraysize is not None:
        vtype = _VALUE_TYPES.get(f.datatype, pa.float64())
        data = np.ma.getdata(col)
        if data.dtype != object:  # fixed arraysize (`55`, `343`): (N, k) with a per-element mask
            return fixed_lists(data, np.ma.getmaskarray(col), vtype)
        # variable arraysize (`*`): one (possibly masked) array per row; a masked row is null
        row_null = np.ma.getmaskarray(col)
        return lists_from_objects([None if m else v for v, m in zip(data, row_null, strict=True)], vtype)
    data = np.ma.getdata(col)
    mask = np.ma.getmaskarray(col)
    if data.dtype == object or data.dtype.kind in "SU":
        vals = [
            None if m else (v.decode() if isinstance(v, bytes) else str(v))
            for v, m in zip(data, mask, strict=True)
        ]
        return pa.array(vals, type=pa.string())
    return pa.array(np.asarray(data), mask=mask if mask.any() else None)
