"""IVOA VOTable (TABLEDATA, BINARY or BINARY2 serialisation), arrays declared `arraysize="*"`; null
integers and empty arrays mark missing values. The table's (and its resource's) PARAMs are the reader's
`table_meta`."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pyarrow as pa

from xpengine.io._arrays import lists_from_objects
from xpengine.io._source import Source
from xpengine.io.errors import GaiaFileError
from xpengine.io.formats._table import InMemoryReader

NAME = "votable"

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
        col = arr[name]
        is_array = f.arraysize is not None and f.datatype != "char"
        if is_array:
            vtype = _VALUE_TYPES.get(f.datatype, pa.float64())
            items = list(np.ma.getdata(col))
            arrays.append(lists_from_objects(items, vtype))
            continue
        data = np.ma.getdata(col)
        mask = np.ma.getmaskarray(col)
        if data.dtype == object or data.dtype.kind in "SU":
            vals = [
                None if m else (v.decode() if isinstance(v, bytes) else str(v))
                for v, m in zip(data, mask, strict=True)
            ]
            arrays.append(pa.array(vals, type=pa.string()))
            continue
        arrays.append(pa.array(np.asarray(data), mask=mask if mask.any() else None))
    table_meta = {p.name: p.value for res in vot.resources for p in res.params}
    table_meta.update({p.name: p.value for p in table.params})
    return InMemoryReader(src, NAME, pa.table(arrays, names=names), meta, table_meta)
