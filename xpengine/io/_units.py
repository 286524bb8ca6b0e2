"""Unit strings as files declare them (Gaia's VOUnit with quoted units, FITS, CDS, astropy's generic), parsed
once for the readers: the gaia_source columns' declared units and the sampled spectra's flux and wavelength."""

from __future__ import annotations

import warnings
from typing import Any

__all__ = ["parse_unit"]


def parse_unit(text: str) -> Any:
    """An astropy unit from a Gaia / VO / FITS / CDS unit string (`'electron'.s**-1`, `W.m**-2.nm**-1`,
    `mas`, `1/um`), or None where no format reads it."""
    import astropy.units as u

    text = text.replace("'", "")  # VOUnit quotes ('electron'.s**-1); the unit is the same
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. "multiple slashes" from the generic parser
        for fmt in ("vounit", None, "fits", "cds"):
            try:
                unit = u.Unit(text, format=fmt)
            except ValueError:
                continue
            if not isinstance(unit, u.UnrecognizedUnit):
                return unit
    return None
