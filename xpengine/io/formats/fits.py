"""FITS binary tables as written by the Gaia archive: variable-length array columns (`PD(55)`,
`PE(1485)`), integer nulls flagged by `TNULLn` (−32768 for int16), float nulls as NaN, missing arrays
as zero-length arrays. Fixed-length array columns (`343D`, GaiaXPy's output) are read as lists too.
The table HDU's header keywords are the reader's `table_meta`."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from xpengine.io._arrays import lists_from_objects
from xpengine.io._source import Source
from xpengine.io.errors import GaiaFileError
from xpengine.io.formats._table import InMemoryReader, fixed_lists

NAME = "fits"


def identify(src: Source) -> bool:
    """FITS primary header starts with `SIMPLE  =` (FITS standard 4.0, §4.4.1.1)."""
    return src.head.startswith(b"SIMPLE  =")


def _native(a: np.ndarray) -> np.ndarray:
    return a.astype(a.dtype.newbyteorder("=")) if a.dtype.byteorder not in ("=", "|") else a


def open_reader(src: Source) -> InMemoryReader:
    from astropy.io import fits

    try:
        hdul = fits.open(io.BytesIO(src.read_all()), memmap=False)
    except (OSError, ValueError) as exc:
        raise GaiaFileError(src.url, f"cannot read FITS: {exc}") from exc
    with hdul:
        try:
            hdu = next((h for h in hdul if isinstance(h, fits.BinTableHDU | fits.TableHDU)), None)
        except (OSError, ValueError, TypeError, IndexError) as exc:
            raise GaiaFileError(
                src.url, f"cannot read FITS headers (truncated or corrupt file?): {exc}"
            ) from exc
        if hdu is None:
            raise GaiaFileError(src.url, "FITS file holds no table extension")
        # astropy reads the table data lazily: a file cut short (an interrupted download) fails only
        # here, with whatever astropy raises (TypeError "buffer is too small ..." for a short data
        # block); it must name the file like every other truncated input.
        try:
            data = hdu.data
        except (OSError, ValueError, TypeError, IndexError) as exc:
            raise GaiaFileError(
                src.url, f"cannot read the FITS table data (truncated or corrupt file?): {exc}"
            ) from exc
        arrays: list[pa.Array] = []
        names: list[str] = []
        meta: dict[str, dict[str, str]] = {}
        header = hdu.header
        for k, col in enumerate(hdu.columns, start=1):
            names.append(col.name)
            m = {"unit": col.unit, "description": header.get(f"TCOMM{k}"), "ucd": header.get(f"TUCD{k}")}
            meta[col.name] = {key: str(v).strip() for key, v in m.items() if v}
            try:
                arrays.append(_column(col, data))
            except (OSError, ValueError, TypeError, IndexError, pa.ArrowException) as exc:
                raise GaiaFileError(
                    src.url,
                    f"cannot read FITS column (format {col.format}; truncated or corrupt file?): {exc}",
                    column=col.name,
                ) from exc
        table_meta = {k: v for k, v in header.items() if k and k not in ("COMMENT", "HISTORY")}
    return InMemoryReader(src, NAME, pa.table(arrays, names=names), meta, table_meta)


def _column(col: Any, data: Any) -> pa.Array:
    """One FITS table column as an Arrow array: variable-length (`PD(55)`) and fixed-length (`343D`)
    arrays as lists, integer nulls (`TNULLn`) as nulls, text as strings."""
    values = data.field(col.name) if data is not None else np.zeros(0)
    fmt = str(col.format)
    if fmt.startswith(("P", "Q")):
        code = fmt.lstrip("PQ")[:1]
        vtype = {"D": pa.float64(), "E": pa.float32(), "K": pa.int64(), "J": pa.int32()}.get(
            code, pa.float64()
        )
        return lists_from_objects(list(values), vtype)
    values = np.asarray(values)
    if values.ndim == 2 and values.dtype.kind == "f":
        # fixed-length float arrays (`343D`, e.g. GaiaXPy's or astropy's FITS output): one list per row; a
        # row of NaN only is how FITS holds a null (masked) array, e.g. a missing band: a missing list, as
        # the VOTable reader has it, not a band of NaN values (a READ_PROBLEM)
        native = _native(values)
        return fixed_lists(native, np.isnan(native), pa.from_numpy_dtype(native.dtype))
    if values.ndim == 2 and values.dtype.kind in "iu":
        # fixed-length integer array column: one list per row
        flat = pa.array(_native(values).ravel())
        return pc.cast(pa.FixedSizeListArray.from_arrays(flat, values.shape[1]), pa.list_(flat.type))
    if values.dtype.kind in "SU":
        return pa.array(values.astype(str))
    values = _native(values)
    mask = None
    if values.dtype.kind in "iu" and col.null is not None:
        mask = values == int(col.null)
    return pa.array(values, mask=mask)
