"""A hand-made APOGEE + DistMass + Gaia bulk "sky" for the survey/synthetic builder tests.

Real XP continuous rows (GaiaXPy / astroquery samples, with correlations) and real gaia_source rows
(astroquery sample) are given new source_ids and written in the Gaia bulk layout; allStar and
DistMass FITS files use the real column names and dtypes (DR17: APOGEE_ID 18A, GAIAEDR3_SOURCE_ID
int64, ASPCAPFLAG int64, STARFLAG int64, EXTRATARG int16, labels float32; DistMass AGE_ERR two
float32 values in dex, ages float64 years). Each star is one edge case (see STARS).
"""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
from _paths import GAIA_SOURCE_DIR, STAR_CONTINUOUS, XP_DIR

# bundled real Gaia DR3 samples (tests/data)
XP_FILES = (
    f"{XP_DIR}/XP_CONTINUOUS_RAW.csv",
    str(STAR_CONTINUOUS),
    f"{XP_DIR}/XP_CONTINUOUS_RAW_colour_eq_dr3int6.csv",
)
GAIA_FILE = f"{GAIA_SOURCE_DIR}/1710099405832VAL-result.vot"

HPX_A, HPX_B = 10, 20  # two partitions: 000000-000015 and 000016-000031


def sid(hpx: int, k: int) -> int:
    return (hpx << 43) + 1000 + k


# name: (source_id, allStar overrides, DistMass (mass, age_yr, age_err_dex pair) or None, has_xp, has_gaia)
STARS: dict[str, dict] = {
    "good": {"sid": sid(HPX_A, 1), "dm": (1.2, 4.0e9, (0.05, 0.07))},
    "star_bad": {"sid": sid(HPX_A, 2), "as": {"ASPCAPFLAG": 1 << 23}, "dm": (1.5, 2.0e9, (0.04, 0.04))},
    "m_h_bad": {"sid": sid(HPX_A, 3), "as": {"ASPCAPFLAG": 1 << 19}, "dm": (1.1, 6.0e9, (0.1, 0.1))},
    "starflag": {"sid": sid(HPX_A, 4), "as": {"STARFLAG": 4}, "dm": (1.0, 9.0e9, (0.08, 0.06))},
    "other_bit": {"sid": sid(HPX_A, 5), "as": {"ASPCAPFLAG": 1}, "dm": (0.9, 1.1e10, (0.05, np.nan))},
    "no_gaia_match": {"sid": 0, "dm": (1.2, 4.0e9, (0.05, 0.05)), "xp": False},
    "mass_cut": {"sid": sid(HPX_A, 7), "dm": (4.5, 2.0e8, (0.05, 0.05))},
    "age_cut": {"sid": sid(HPX_A, 8), "dm": (0.8, 1.5e10, (0.05, 0.05))},
    "m_h_cut": {"sid": sid(HPX_A, 9), "as": {"M_H": -2.7}, "dm": (0.8, 1.2e10, (0.05, 0.05))},
    "m_h_cut_flagged": {
        "sid": sid(HPX_A, 10),
        "as": {"M_H": -2.7, "ASPCAPFLAG": 1 << 19},
        "dm": (0.8, 1.2e10, (0.05, 0.05)),
    },
    "not_in_distmass": {"sid": sid(HPX_B, 11), "dm": None},
    "no_xp": {"sid": sid(HPX_B, 12), "dm": (1.3, 3.0e9, (0.05, 0.05)), "xp": False},
    "no_gaia_source": {"sid": sid(HPX_B, 13), "dm": (1.3, 3.0e9, (0.05, 0.05)), "gaia": False},
    "no_2mass": {"sid": sid(HPX_B, 14), "as": {"J": 99.0, "J_ERR": 99.0}, "dm": (1.4, 2.5e9, (0.05, 0.05))},
    "twin_low_snr": {
        "sid": sid(HPX_B, 15),
        "as": {"SNR": 40.0, "TEFF": 4000.0},
        "dm": (1.2, 4.0e9, (0.05, 0.05)),
    },
    "twin_high_snr": {
        "sid": sid(HPX_B, 15),
        "as": {"SNR": 200.0, "TEFF": 4100.0},
        "dm": (1.2, 4.0e9, (0.05, 0.05)),
    },
    "dm_duplicate": {"sid": sid(HPX_B, 16), "dm": "duplicate"},
}
# an EXTRATARG duplicate row of "good" (same APOGEE_ID, another field, other labels)
DUPLICATE_OF = "good"

BASE_LABELS = {"TEFF": 4800.0, "TEFF_ERR": 10.0, "LOGG": 2.5, "LOGG_ERR": 0.03, "M_H": -0.1, "M_H_ERR": 0.01}


def apogee_id(name: str) -> str:
    k = list(STARS).index(name)
    return f"2M{k:08d}+0000000"


def _allstar_rows() -> list[dict]:
    rows = []
    for k, (name, spec) in enumerate(STARS.items()):
        r = {
            "APOGEE_ID": apogee_id(name),
            "TELESCOPE": "apo25m",
            "FIELD": "TEST",
            "GAIAEDR3_SOURCE_ID": spec["sid"],
            **BASE_LABELS,
            "TEFF": 4500.0 + 10 * k,
            "FE_H": -0.1,
            "ALPHA_M": 0.05,
            "ALPHA_M_ERR": 0.01,
            "J": 10.0,
            "J_ERR": 0.02,
            "H": 9.4,
            "H_ERR": 0.02,
            "K": 9.2,
            "K_ERR": 0.02,
            "SNR": 100.0,
            "ASPCAPFLAG": 0,
            "STARFLAG": 0,
            "EXTRATARG": 0,
        }
        r.update(spec.get("as", {}))
        rows.append(r)
    dup = dict(rows[list(STARS).index(DUPLICATE_OF)])
    dup.update({"FIELD": "OTHER", "TEFF": 9999.0, "SNR": 20.0, "EXTRATARG": 16})
    rows.append(dup)
    return rows


def write_allstar(path: str, *, drop: tuple[str, ...] = ()) -> None:
    from astropy.io import fits

    rows = _allstar_rows()
    fmt = {
        "APOGEE_ID": "18A",
        "TELESCOPE": "8A",
        "FIELD": "20A",
        "GAIAEDR3_SOURCE_ID": "K",
        "ASPCAPFLAG": "K",
        "STARFLAG": "K",
        "EXTRATARG": "I",
    }
    cols = []
    for name in rows[0]:
        if name in drop:
            continue
        values = [r[name] for r in rows]
        f = fmt.get(name, "E")
        arr = (
            np.array(values)
            if f.endswith("A")
            else np.array(values, dtype={"K": np.int64, "I": np.int16, "E": np.float32}[f])
        )
        cols.append(fits.Column(name=name, format=f, array=arr))
    fits.BinTableHDU.from_columns(cols).writeto(path, overwrite=True)


def write_distmass(path: str, *, age_unit: float = 1.0, mass_name: str = "MASS") -> None:
    """DistMass file; age_unit=1e-9 writes ages in Gyr (a bad input)."""
    from astropy.io import fits

    ids, mass, mass_err, age, age_err = [], [], [], [], []
    for name, spec in STARS.items():
        dm = spec["dm"]
        if dm is None:
            continue
        if dm == "duplicate":  # first row unusable (NaN mass), second good
            for m in (np.nan, 1.25):
                ids.append(apogee_id(name))
                mass.append(m)
                mass_err.append(0.1)
                age.append(3.3e9 * age_unit)
                age_err.append((0.05, 0.05))
            continue
        ids.append(apogee_id(name))
        mass.append(dm[0])
        mass_err.append(0.1 * dm[0])
        age.append(dm[1] * age_unit)
        age_err.append(dm[2])
    cols = [
        fits.Column(name="APOGEE_ID", format="18A", array=np.array(ids)),
        fits.Column(name=mass_name, format="E", array=np.array(mass, np.float32)),
        fits.Column(name=f"{mass_name}_ERR", format="E", array=np.array(mass_err, np.float32)),
        fits.Column(name="AGE_COR_SS", format="D", array=np.array(age, np.float64)),
        fits.Column(name="AGE_ERR", format="2E", array=np.array(age_err, np.float32)),
        fits.Column(name="BITMASK", format="J", array=np.zeros(len(ids), np.int32)),
    ]
    fits.BinTableHDU.from_columns(cols).writeto(path, overwrite=True)


def _real_xp() -> pa.Table:
    from xpengine.io import read_xp_continuous

    tables = [read_xp_continuous(p, with_correlations=True) for p in XP_FILES]
    return pa.concat_tables([t.drop_columns(["read_problem"]) for t in tables], promote_options="permissive")


def write_gaia_partitions(directory: str, *, only_ids: list[int] | None = None) -> dict[int, int]:
    """XP + GaiaSource bulk files; returns {source_id: index of the real XP row used}."""
    from xpengine.io import read_gaia_source, write_bulk_gaia_source, write_bulk_xp_continuous

    xp = _real_xp()
    gaia = read_gaia_source(GAIA_FILE)
    used: dict[int, int] = {}
    xp_rows: dict[int, list[int]] = {HPX_A: [], HPX_B: []}
    gaia_rows: dict[int, list[tuple[int, int]]] = {HPX_A: [], HPX_B: []}
    k = 0
    for spec in STARS.values():
        s = spec["sid"]
        if s == 0 or not spec.get("xp", True) or s in used or (only_ids is not None and s not in only_ids):
            continue
        row = k % xp.num_rows
        used[s] = row
        hpx = s >> 43
        xp_rows[hpx].append(row)
        if spec.get("gaia", True):
            gaia_rows[hpx].append((s, k % gaia.num_rows))
        k += 1
    for hpx, name in ((HPX_A, "000000-000015"), (HPX_B, "000016-000031")):
        ids = [s for s in used if (s >> 43) == hpx]
        t = xp.take(pa.array(xp_rows[hpx], pa.int64()))
        t = t.set_column(0, "source_id", pa.array(ids, pa.int64()))
        write_bulk_xp_continuous(t, os.path.join(directory, f"XpContinuousMeanSpectrum_{name}.csv.gz"))
        g_ids = [s for s, _ in gaia_rows[hpx]]
        g = gaia.take(pa.array([r for _, r in gaia_rows[hpx]], pa.int64()))
        g = g.set_column(0, "source_id", pa.array(g_ids, pa.int64()))
        # a G magnitude per star so the XP tokens have a realistic scale; 6-parameter-free (5p) solution
        gmag = pa.array(np.linspace(11.0, 13.0, max(len(g_ids), 1))[: len(g_ids)], pa.float32())
        g = g.set_column(g.column_names.index("phot_g_mean_mag"), "phot_g_mean_mag", gmag)
        g = g.set_column(
            g.column_names.index("phot_g_mean_flux"), "phot_g_mean_flux", pa.nulls(len(g_ids), pa.float64())
        )
        write_bulk_gaia_source(g, os.path.join(directory, f"GaiaSource_{name}.csv.gz"))
    return used


def write_sky(directory: str, **kw) -> dict[str, str]:
    os.makedirs(directory, exist_ok=True)
    paths = {
        "allstar": os.path.join(directory, "allStar-test.fits"),
        "distmass": os.path.join(directory, "APOGEE_DistMass-test.fits"),
    }
    write_allstar(paths["allstar"], drop=kw.get("drop_allstar", ()))
    write_distmass(paths["distmass"], age_unit=kw.get("age_unit", 1.0), mass_name=kw.get("mass_name", "MASS"))
    write_gaia_partitions(directory, only_ids=kw.get("only_ids"))
    return paths
