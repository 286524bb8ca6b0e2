"""Small simulated catalogues for the query tests, written by the tests themselves.

Positions are random on the sphere; hpx8 comes from `xpengine.catalog.sky.ang2pix_nested` (checked
against real Gaia source_ids in test_catalog_query_sky.py) and l, b from astropy (independent of the
package's own rotation). Labels, errors, flags and missing values are random, so that every cut of
every preset has stars on both sides.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from xpengine.catalog.presets import DEFAULT_EXCLUDE_FLAGS
from xpengine.catalog.schema import catalog_schema
from xpengine.catalog.sky import ang2pix_nested
from xpengine.features.flags import SourceFlag

LABELS = ("teff", "logg", "m_h", "mass", "age")
RANGES = ((0, 262143), (262144, 524287), (524288, 786431))  # hpx8 ranges of the three partition files


def simulate(n: int, seed: int = 1, labels: tuple[str, ...] = LABELS) -> dict[str, np.ndarray]:
    """Columns (n rows) of a catalogue in `catalog_schema(labels)`, sorted by source_id."""
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    rng = np.random.default_rng(seed)
    ra = rng.uniform(0.0, 360.0, n)
    dec = np.rad2deg(np.arcsin(rng.uniform(-1.0, 1.0, n)))
    hpx8 = ang2pix_nested(8, ra, dec)
    source_id = (hpx8 << 43) | rng.integers(0, 2**43, n)
    order = np.argsort(source_id)
    ra, dec, hpx8, source_id = ra[order], dec[order], hpx8[order], source_id[order]
    gal = SkyCoord(ra=ra * u.deg, dec=dec * u.deg, frame="icrs").galactic
    cols: dict[str, np.ndarray] = {
        "source_id": source_id.astype(np.int64),
        "hpx8": hpx8.astype(np.int32),
        "ra": ra,
        "dec": dec,
        "l": gal.l.deg,
        "b": gal.b.deg,
        "phot_g_mean_mag": rng.uniform(8.0, 17.6, n).astype(np.float32),
    }
    lims = {
        "teff": (3800.0, 5600.0),
        "logg": (0.5, 4.8),
        "m_h": (-2.6, 0.8),
        "mass": (0.5, 4.2),
        "age": (0.2, 14.5),
        "alpha_m": (-0.1, 0.4),
        "ebv": (0.0, 1.0),
    }
    err = {
        "teff": lambda v: rng.uniform(10.0, 250.0, n),
        "logg": lambda v: rng.uniform(0.02, 0.45, n),
        "m_h": lambda v: rng.uniform(0.01, 0.3, n),
        "mass": lambda v: v * rng.uniform(0.02, 0.45, n),
        "age": lambda v: v * rng.uniform(0.05, 0.8, n),
        "alpha_m": lambda v: rng.uniform(0.01, 0.1, n),
        "ebv": lambda v: rng.uniform(0.01, 0.1, n),
    }
    for lab in labels:
        v = rng.uniform(*lims[lab], n)
        e = err[lab](v)
        missing = rng.random(n) < 0.03
        v[missing] = np.nan
        e[missing] = np.nan
        cols[lab] = v.astype(np.float32)
        cols[f"{lab}_error"] = e.astype(np.float32)
    d = rng.uniform(100.0, 8000.0, n)
    cols["distance_pc"] = d.astype(np.float32)
    cols["distance_pc_error"] = (0.12 * d).astype(np.float32)
    cols["n_input_tokens"] = rng.integers(5, 65, n).astype(np.int16)
    bits = np.array(
        [
            0,
            0,
            0,
            0,
            int(SourceFlag.NO_2MASS),
            int(SourceFlag.NO_PARALLAX | SourceFlag.NO_EXTINCTION),
            int(SourceFlag.OUTSIDE_TRAINING_DOMAIN),
            int(SourceFlag.HIGH_UNCERTAINTY),
            int(SourceFlag.NO_PREDICTION),
            int(SourceFlag.HIGH_UNCERTAINTY | SourceFlag.NO_2MASS),
        ],
        dtype=np.int64,
    )
    cols["flags"] = bits[rng.integers(0, len(bits), n)]
    # sources without a gaia_source row: no position columns
    no_gs = rng.random(n) < 0.02
    cols["_no_gaia_source"] = no_gs
    return cols


def to_table(
    cols: dict[str, np.ndarray], labels: tuple[str, ...] = LABELS, rows: np.ndarray | None = None
) -> pa.Table:
    """A pyarrow Table in the catalogue schema (null positions where `_no_gaia_source`)."""
    schema = catalog_schema(list(labels), metadata={"model": "test"})
    sel = slice(None) if rows is None else rows
    no_gs = cols["_no_gaia_source"][sel]
    arrays = []
    for f in schema:
        v = cols[f.name][sel]
        mask = no_gs if f.name in ("ra", "dec", "l", "b") else None
        arrays.append(pa.array(v, type=f.type, mask=mask))
    return pa.Table.from_arrays(arrays, schema=schema)


def write_catalog(
    directory: Path, cols: dict[str, np.ndarray], labels: tuple[str, ...] = LABELS, row_group_size: int = 500
) -> list[Path]:
    """One Parquet file per hpx8 range of RANGES, named like the catalogue engine's output, plus the
    `_manifest/` and `_SUMMARY.json` files that queries must ignore."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for lo, hi in RANGES:
        rows = np.flatnonzero((cols["hpx8"] >= lo) & (cols["hpx8"] <= hi))
        path = directory / f"XpContinuousMeanSpectrum_{lo:06d}-{hi:06d}.parquet"
        pq.write_table(to_table(cols, labels, rows), path, row_group_size=row_group_size)
        paths.append(path)
    (directory / "_manifest").mkdir(exist_ok=True)
    (directory / "_manifest" / "XpContinuousMeanSpectrum_000000-262143.json").write_text('{"status": "done"}')
    (directory / "_SUMMARY.json").write_text('{"partitions_done": 3}')
    return paths


def f64(cols: dict[str, np.ndarray], name: str) -> np.ndarray:
    """A column as float64, NaN where the catalogue holds null."""
    v = cols[name].astype(np.float64)
    if name in ("ra", "dec", "l", "b"):
        v = np.where(cols["_no_gaia_source"], np.nan, v)
    return v


def giants_mask(
    cols,
    logg_max=3.5,
    logg_min=None,
    teff_e=150.0,
    logg_e=0.3,
    m_h_e=0.2,
    mass_rel=0.3,
    age_rel=0.5,
    exclude=DEFAULT_EXCLUDE_FLAGS,
):
    """The giants selection, written out in numpy (NaN fails every comparison in numpy)."""
    g = lambda n: f64(cols, n)  # noqa: E731
    m = (cols["flags"] & exclude) == 0
    if logg_max is not None:
        m &= g("logg") < logg_max
    if logg_min is not None:
        m &= g("logg") >= logg_min
    for lab, lim in (("teff", teff_e), ("logg", logg_e), ("m_h", m_h_e)):
        if lim is not None:
            m &= g(f"{lab}_error") <= lim
    for lab, lim in (("mass", mass_rel), ("age", age_rel)):
        if lim is not None:
            m &= (g(lab) > 0) & (g(f"{lab}_error") <= lim * g(lab))
    return m
