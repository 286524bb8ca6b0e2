"""Sky geometry of the synthetic sky: HEALPix (nested) pixels, Gaia source ids, ICRS → Galactic/ecliptic.

Gaia DR3 source ids encode the HEALPix level-12 nested pixel of the source: hpx12 = source_id // 2^35,
so hpx8 = source_id >> 43 (Gaia DR3 documentation, `source_id` description). Bulk files are named by
the first and last hpx8 index they hold, 6-digit zero-padded (REFERENCE §1).

HEALPix pixel centres follow Górski et al. 2005 (ApJ 622, 759), nested scheme, implemented here in
vectorised numpy (no healpy dependency). Rotation matrices: ICRS → Galactic from the Hipparcos
definition as used by Gaia (Gaia DR3 documentation §4.1.7, matrix A_G'), ecliptic latitude with the
ICRS obliquity ε = 23°26′21.406″ (Gaia documentation).
"""

from __future__ import annotations

import numpy as np

# One implementation of the Galactic rotation (Gaia DR3 doc. Eq. 4.62) and of the nested-index tables
# and bit compaction serves the simulator and the catalogue queries.
from xpengine.catalog.sky import JPLL, JRLL, compress_bits, galactic_to_icrs, icrs_to_galactic

# the catalogue computes a missing `ecl_lat` for the parallax zero point with the same function
from xpengine.features.astrometry import ecliptic_latitude

__all__ = [
    "HPX8_NPIX",
    "bulk_suffix",
    "default_partitions",
    "ecliptic_latitude",
    "galactic_to_icrs",
    "healpix_nest_to_radec",
    "icrs_to_galactic",
]

HPX8_NPIX = 12 * 4**8  # 786,432 level-8 pixels


def healpix_nest_to_radec(pix: np.ndarray, order: int) -> tuple[np.ndarray, np.ndarray]:
    """Centres (ra, dec) [deg] of nested HEALPix pixels `pix` (N,) int64 at `order` (nside = 2^order).

    Górski et al. 2005 pix2ang for the nested scheme; exact for order ≤ 29. Same maths as
    `xpengine.catalog.sky.pix2ang_nested`, but z is evaluated as nr²·4/npix rather than nr²/(3·npface):
    declinations differ by ≤ 1.4e-14 deg, and keeping this form keeps the bundled simulated sky
    byte-reproducible (tests/test_simulate_sky.py regenerates it).
    """
    if not 0 <= order <= 29:
        raise ValueError(f"HEALPix order {order} out of range; expected 0..29")
    pix = np.asarray(pix, dtype=np.int64)
    nside = np.int64(1) << order
    npface = nside * nside
    npix = 12 * npface
    if pix.size and (pix.min() < 0 or pix.max() >= npix):
        raise ValueError(f"pixel index out of range [0, {npix}) at order {order}: {pix.min()}..{pix.max()}")
    face = pix // npface
    ipf = pix % npface
    ix = compress_bits(ipf)
    iy = compress_bits(ipf >> 1)
    jrt = ix + iy
    jpt = ix - iy
    jr = JRLL[face] * nside - jrt - 1
    nr = np.where(jr < nside, jr, np.where(jr > 3 * nside, 4 * nside - jr, nside))
    z = np.where(
        jr < nside,
        1.0 - nr.astype(np.float64) ** 2 * 4.0 / npix,
        np.where(
            jr > 3 * nside,
            nr.astype(np.float64) ** 2 * 4.0 / npix - 1.0,
            (2 * nside - jr) * (2.0 / (3.0 * nside)),
        ),
    )
    kshift = np.where((jr >= nside) & (jr <= 3 * nside), (jr - nside) & 1, 0)
    jp = (JPLL[face] * nr + jpt + 1 + kshift) // 2
    jp = np.where(jp > 4 * nside, jp - 4 * nside, jp)
    jp = np.where(jp < 1, jp + 4 * nside, jp)
    phi = (jp - (kshift + 1) * 0.5) * (np.pi / 2.0 / nr)
    ra = np.rad2deg(phi) % 360.0
    dec = np.rad2deg(np.arcsin(np.clip(z, -1.0, 1.0)))
    return ra, dec


def bulk_suffix(hpx8_first: int, hpx8_last: int) -> str:
    """`AAAAAA-BBBBBB` suffix of a bulk file holding level-8 pixels hpx8_first..hpx8_last (inclusive)."""
    if not 0 <= hpx8_first <= hpx8_last < HPX8_NPIX:
        raise ValueError(
            f"invalid HEALPix-8 range {hpx8_first}-{hpx8_last}; expected 0 <= a <= b < {HPX8_NPIX}"
        )
    return f"{hpx8_first:06d}-{hpx8_last:06d}"


def default_partitions(n_partitions: int, width: int = 3112) -> list[tuple[int, int]]:
    """K disjoint HEALPix-8 ranges of `width` pixels spread over the sky (inclusive bounds).

    Partition k starts at floor(k · 786432 / K) (so partition 0 is 000000-003111, the first real DR3
    bulk file's range for the default width): K patches of ~160 deg² at different Galactic latitudes.
    """
    if n_partitions < 1:
        raise ValueError(f"n_partitions={n_partitions}; expected >= 1")
    width = min(width, HPX8_NPIX // n_partitions)
    starts = [(k * HPX8_NPIX) // n_partitions for k in range(n_partitions)]
    return [(s, s + width - 1) for s in starts]
