"""Large local FITS binary tables read memory-mapped, column by column (survey catalogues: APOGEE
allStar, the DistMass VAC, the APOGEE×XP file).

- `open_fits_table(path, what=...)`: (HDUList, first binary-table HDU), memory-mapped where the file
  allows it; the caller closes the HDUList. Errors name `what` and the path.
- `read_fits_columns(path, required, optional, what=...)`: chosen columns as native numpy arrays.

Gaia archive tables in FITS (variable-length arrays, TNULL) go through the format readers
(`xpengine.io.formats.fits`) instead, which read the whole file into Arrow.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

__all__ = ["open_fits_table", "read_fits_columns"]


def open_fits_table(path: str, *, what: str = "FITS file", hint: str = "") -> tuple[Any, Any]:
    """(HDUList, first binary-table HDU) of a local FITS file, memory-mapped where the file allows it.

    FileNotFoundError when `path` does not exist; ValueError when it is not a readable FITS file or
    holds no binary table (`hint`, if given, is appended to that message). The caller closes the
    HDUList (also on its own errors)."""
    from astropy.io import fits

    if not os.path.exists(path):
        raise FileNotFoundError(f"{what} {path!r} does not exist")
    try:
        hdul = fits.open(path, memmap=True)
    except OSError as exc:
        raise ValueError(f"{what} {path}: not a readable FITS file ({exc})") from None
    for hdu in hdul:
        if isinstance(hdu, fits.BinTableHDU):
            return hdul, hdu
    hdul.close()
    raise ValueError(f"{what} {path}: no binary table HDU{hint}")


def read_fits_columns(
    path: str,
    required: tuple[str, ...] | list[str],
    optional: tuple[str, ...] | list[str] = (),
    *,
    what: str = "FITS table",
    chunk_rows: int = 65_536,
) -> dict[str, np.ndarray]:
    """Columns of the first binary table of a FITS file as native numpy arrays (keys as requested).

    Reads row blocks of a memory-mapped table so that a wide file (the real allStar has hundreds of
    columns) is traversed once, whatever the number of columns asked. Names match case-insensitively.
    Missing required columns raise ValueError naming the file, the columns and what the file holds.
    """
    hdul, hdu = open_fits_table(path, what=what)
    try:
        names = list(hdu.columns.names)
        by_upper = {n.upper(): n for n in names}
        missing = [c for c in required if c.upper() not in by_upper]
        if missing:
            raise ValueError(
                f"{what} {path}: missing column(s) {missing}; required {list(required)}; the file has "
                f"{len(names)} columns, e.g. {names[:25]}"
            )
        wanted = [c for c in (*required, *optional) if c.upper() in by_upper]
        n = int(hdu.header["NAXIS2"])
        parts: dict[str, list[np.ndarray]] = {c: [] for c in wanted}
        for start in range(0, max(n, 1), chunk_rows):
            block = hdu.data[start : start + chunk_rows]
            if block is None:
                break
            for c in wanted:
                a = np.asarray(block[by_upper[c.upper()]])
                parts[c].append(a.astype(a.dtype.newbyteorder("=")) if a.dtype.byteorder == ">" else a.copy())
        return {c: (np.concatenate(v) if v else np.array([])) for c, v in parts.items()}
    finally:
        hdul.close()
