"""The simulated sky's APOGEE-like files: allStar rows of the selected giants (labels with errors, flags,
duplicates), DistMass VAC rows, and writing either as a FITS binary table
(see :mod:`xpengine.simulate.generate`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from xpengine.simulate import physics as ph
from xpengine.simulate.observe import apogee_labels
from xpengine.simulate.sky import SkyConfig

_ASPCAP_STAR_BAD = 1 << 23
_ASPCAP_M_H_BAD = 1 << 19
_EXTRATARG_DUPLICATE = 16


def _apogee_id(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """2MASS-style designations `2MHHMMSSss±DDMMSSs`."""
    h = ra / 15.0
    hh = np.floor(h).astype(int)
    mm = np.floor((h - hh) * 60).astype(int)
    ss = (h - hh - mm / 60.0) * 3600.0
    sign = np.where(dec < 0, "-", "+")
    ad = np.abs(dec)
    dd = np.floor(ad).astype(int)
    dm = np.floor((ad - dd) * 60).astype(int)
    ds = (ad - dd - dm / 60.0) * 3600.0
    return np.array(
        [
            f"2M{a:02d}{b:02d}{int(c * 100):04d}{sg}{d:02d}{e:02d}{int(f * 10):03d}"
            for a, b, c, sg, d, e, f in zip(hh, mm, ss, sign, dd, dm, ds, strict=True)
        ]
    )


def _apogee_rows(
    s: dict[str, np.ndarray],
    tm: dict[str, np.ndarray],
    source_id: np.ndarray,
    rng: np.random.Generator,
    cfg: SkyConfig,
) -> dict[str, np.ndarray]:
    """APOGEE-like allStar rows (and the truth needed for DistMass) for the selected stars of a chunk.

    True M_H: physics "polynomial" :func:`xpengine.simulate.physics.metallicity_mh` (Salaris et al. 1993,
    0.638/0.362); "mist" the stars' `m_h` (0.694/0.306, the metallicity of their isochrone)."""
    ak_targ = tm["a_ks"] + rng.normal(0.0, 0.03, len(source_id))
    sel = apogee_labels({**tm, "ak_targ": ak_targ}, rng, cfg.apogee_fraction, cfg.survey_h_max)
    idx = np.nonzero(sel)[0]
    n = idx.size
    h = tm["h_m"][idx]
    snr = np.clip(160.0 * 10.0 ** (-0.2 * (h - 11.0)) * 10.0 ** rng.normal(0.0, 0.15, n), 5.0, 1500.0)
    teff_err = 8.0 + 600.0 / snr
    logg_err = 0.02 + 3.0 / snr
    mh_err = 0.008 + 1.0 / snr
    teff = s["teff"][idx] + rng.normal(0.0, 1.0, n) * np.hypot(teff_err, 40.0)
    logg = s["logg"][idx] + rng.normal(0.0, 1.0, n) * np.hypot(logg_err, 0.06)
    if cfg.physics == "mist":
        m_h_true = s["m_h"][idx]
    else:
        m_h_true = ph.metallicity_mh(s["fe_h"][idx], s["alpha_m"][idx])
    m_h = m_h_true + rng.normal(0.0, 1.0, n) * np.hypot(mh_err, 0.03)
    fe_h = s["fe_h"][idx] + rng.normal(0.0, 1.0, n) * np.hypot(mh_err, 0.03)
    alpha = s["alpha_m"][idx] + rng.normal(0.0, 1.0, n) * np.hypot(0.5 * mh_err, 0.02)
    # flags: STAR_BAD more likely at low SNR and at the Teff extremes; M_H_BAD rare; harmless bits
    p_bad = 0.01 + 0.10 * (snr < 30) + 0.05 * ((teff < 3700) | (teff > 6500))
    flag = np.zeros(n, dtype=np.int64)
    flag |= np.where(rng.random(n) < p_bad, _ASPCAP_STAR_BAD, 0)
    flag |= np.where(rng.random(n) < 0.01, _ASPCAP_M_H_BAD, 0)
    flag |= np.where(rng.random(n) < 0.10, 1 << 0, 0)  # TEFF_WARN-like warning
    flag |= np.where(rng.random(n) < 0.05, 1 << 8, 0)  # a SN warning-like bit
    starflag = np.where(rng.random(n) < 0.04, 1 << rng.integers(0, 20, n), 0).astype(np.int64)
    failed = rng.random(n) < 0.02  # ASPCAP produced no labels
    for arr in (teff, logg, m_h, fe_h, alpha):
        arr[failed] = np.nan
    tel = np.where(s["dec"][idx] < -20.0, "lco25m", "apo25m")
    field = np.array([f"{lv:03.0f}{bv:+03.0f}" for lv, bv in zip(s["l"][idx], s["b"][idx], strict=True)])
    gaia_id = np.where(rng.random(n) < 0.01, 0, source_id[idx])
    out = {
        "APOGEE_ID": _apogee_id(s["ra"][idx], s["dec"][idx]),
        "TELESCOPE": tel,
        "FIELD": field,
        "GAIAEDR3_SOURCE_ID": gaia_id.astype(np.int64),
        "TEFF": teff,
        "TEFF_ERR": teff_err,
        "LOGG": logg,
        "LOGG_ERR": logg_err,
        "M_H": m_h,
        "M_H_ERR": mh_err,
        "FE_H": fe_h,
        "ALPHA_M": alpha,
        "J": np.nan_to_num(tm["j_m"][idx], nan=99.0),
        "J_ERR": np.nan_to_num(tm["j_msigcom"][idx], nan=99.0),
        "H": np.nan_to_num(tm["h_m"][idx], nan=99.0),
        "H_ERR": np.nan_to_num(tm["h_msigcom"][idx], nan=99.0),
        "K": np.nan_to_num(tm["ks_m"][idx], nan=99.0),
        "K_ERR": np.nan_to_num(tm["ks_msigcom"][idx], nan=99.0),
        "AK_TARG": ak_targ[idx],
        "SFD_EBV": ph.dust_ebv(np.full(n, 50.0), s["l"][idx], s["b"][idx]),
        "SNR": snr,
        "ASPCAPFLAG": flag,
        "STARFLAG": starflag,
        "EXTRATARG": np.where(rng.random(n) < 0.05, 1 << 1, 0).astype(np.int16),  # some non-main targets
        # truth carried along for DistMass
        "_mass": s["mass"][idx],
        "_fe_h_true": s["fe_h"][idx],
        "_distance_pc": s["distance_kpc"][idx] * 1000.0,
        "_state": s["evolutionary_state"][idx],
    }
    if cfg.physics == "mist":  # what an isochrone age of the (noisy) mass needs
        out["_initial_mass"] = s["initial_mass"][idx]
        out["_eep"] = s["eep"][idx]
    # duplicates: a second visit set observed at the other telescope / field, EXTRATARG bit 4
    dup = np.nonzero(rng.random(n) < cfg.apogee_duplicate_rate)[0]
    if dup.size:
        rows = {k: v[dup].copy() for k, v in out.items()}
        rows["TELESCOPE"] = np.where(rows["TELESCOPE"] == "apo25m", "apo1m", "lco25m")
        rows["EXTRATARG"] = (rows["EXTRATARG"] | _EXTRATARG_DUPLICATE).astype(np.int16)
        for c, e in (("TEFF", 20.0), ("LOGG", 0.03), ("M_H", 0.02), ("FE_H", 0.02)):
            rows[c] = rows[c] + rng.normal(0.0, e, dup.size)
        out = {k: np.concatenate([out[k], rows[k]]) for k in out}
    return out


def _distmass_rows(a: dict[str, np.ndarray], rng: np.random.Generator, physics: str) -> dict[str, np.ndarray]:
    """DistMass-VAC-like rows for APOGEE giants (non-duplicates with labels), 90% coverage.

    Ages follow from the noisy mass (× 1 + N(0, 0.08)) and the noisy [Fe/H] or [M/H], as in the VAC: physics
    "polynomial" by the REFERENCE §7 mass–age relation; "mist" on the MIST isochrones, the age at which a
    star of that initial mass (the true initial mass × noisy/true current mass) and the noisy M_H (clipped
    to the grid) reaches the star's EEP (:func:`xpengine.simulate.isochrones.log_age_at_eep`; noise-free
    inputs give back the true age). NaN where no isochrone age ≤ 10^10.3 yr matches (the survey builder
    drops such stars); then both × 10^N(0, 0.03).
    """
    ok = (
        ((a["EXTRATARG"] & _EXTRATARG_DUPLICATE) == 0)
        & np.isfinite(a["LOGG"])
        & (a["LOGG"] < 3.5)
        & (a["_state"] > 0)
        & (rng.random(a["LOGG"].shape[0]) < 0.9)
    )
    idx = np.nonzero(ok)[0]
    n = idx.size
    mass_true = a["_mass"][idx]
    mass = mass_true * (1.0 + rng.normal(0.0, 0.08, n))
    mass = np.clip(mass, 0.3, 6.0)
    mass_err = mass * rng.uniform(0.06, 0.12, n)
    # ages follow from the (noisy) mass through the isochrone relation, as in the VAC
    if physics == "mist":
        from xpengine.simulate import isochrones as iso

        grid = iso.load_mist()
        m_h = np.clip(a["M_H"][idx], grid.feh[0], grid.feh[-1])
        log_age = np.full(n, np.nan)
        ok = np.isfinite(m_h)
        if ok.any():
            initial = a["_initial_mass"][idx] * mass / mass_true
            log_age[ok] = iso.log_age_at_eep(initial[ok], a["_eep"][idx][ok], m_h[ok], grid=grid)
        age_model_gyr = 10.0 ** (log_age - 9.0)
    else:
        age_model_gyr = ph.giant_age_gyr(mass, a["FE_H"][idx])
    age_yr = age_model_gyr * 1e9 * 10.0 ** rng.normal(0.0, 0.03, n)
    age_uncor = age_yr * 10.0 ** rng.normal(0.02, 0.03, n)
    age_err = np.stack([rng.uniform(0.08, 0.15, n), rng.uniform(0.08, 0.15, n)], axis=1)
    dist = a["_distance_pc"][idx] * (1.0 + rng.normal(0.0, 0.08, n))
    bitmask = np.where(rng.random(n) < 0.05, 1 << rng.integers(0, 8, n), 0).astype(np.int64)
    return {
        "APOGEE_ID": a["APOGEE_ID"][idx],
        "TEFF": a["TEFF"][idx],
        "LOGG": a["LOGG"][idx],
        "WEIGHTED_DIST": dist,
        "WEIGHTED_DIST_ERR": dist * rng.uniform(0.05, 0.12, n),
        "AGE_COR_SS": age_yr,
        "AGE_UNCOR_SS": age_uncor,
        "AGE_ERR": age_err,
        "MASS": mass,
        "MASS_ERR": mass_err,
        "BITMASK": bitmask,
    }


_ALLSTAR_FORMATS = {
    "APOGEE_ID": "18A",
    "TELESCOPE": "8A",
    "FIELD": "20A",
    "GAIAEDR3_SOURCE_ID": "K",
    "TEFF": "E",
    "TEFF_ERR": "E",
    "LOGG": "E",
    "LOGG_ERR": "E",
    "M_H": "E",
    "M_H_ERR": "E",
    "FE_H": "E",
    "ALPHA_M": "E",
    "J": "E",
    "J_ERR": "E",
    "H": "E",
    "H_ERR": "E",
    "K": "E",
    "K_ERR": "E",
    "AK_TARG": "E",
    "SFD_EBV": "E",
    "SNR": "E",
    "ASPCAPFLAG": "K",
    "STARFLAG": "K",
    "EXTRATARG": "I",
}
_DISTMASS_FORMATS = {
    "APOGEE_ID": "18A",
    "TEFF": "E",
    "LOGG": "E",
    "WEIGHTED_DIST": "E",
    "WEIGHTED_DIST_ERR": "E",
    "AGE_COR_SS": "D",
    "AGE_UNCOR_SS": "D",
    "AGE_ERR": "2E",
    "MASS": "E",
    "MASS_ERR": "E",
    "BITMASK": "K",
}


def _write_fits(path: Path, data: dict[str, np.ndarray], formats: dict[str, str], extname: str) -> None:
    from astropy.io import fits

    cols = [fits.Column(name=k, format=f, array=data[k]) for k, f in formats.items()]
    hdu = fits.BinTableHDU.from_columns(cols, name=extname)
    hdu.header["COMMENT"] = "xpengine synthetic sky (simulated data, not a real survey)"
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path, overwrite=True, checksum=False)
