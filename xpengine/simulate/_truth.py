"""The simulated sky's ground truth (`truth.parquet`) of one chunk: the polynomial sky's columns and the
MIST sky's additions (see :mod:`xpengine.simulate.generate`)."""

from __future__ import annotations

import numpy as np

from xpengine.simulate import physics as ph
from xpengine.simulate import populations as pp

_TMASS_COLUMNS = ("j_m", "j_msigcom", "h_m", "h_msigcom", "ks_m", "ks_msigcom")


def _truth_columns(
    source_id: np.ndarray,
    suffix: str,
    s: dict[str, np.ndarray],
    tm: dict[str, np.ndarray],
    gcols: dict[str, np.ndarray],
    xp: dict[str, np.ndarray],
    missing_bp: np.ndarray,
) -> dict[str, np.ndarray]:
    return {
        "source_id": source_id,
        "partition": np.full(source_id.shape[0], suffix),
        "population": np.array(list(pp.POPULATIONS))[s["population"]],  # the polynomial sky has no bulge
        "evolutionary_state": np.array(["dwarf", "rgb", "red_clump"])[s["evolutionary_state"]],
        "mass": s["mass"],
        "age_gyr": s["age_gyr"],
        "teff": s["teff"],
        "logg": s["logg"],
        "fe_h": s["fe_h"],
        "alpha_m": s["alpha_m"],
        "m_h": ph.metallicity_mh(s["fe_h"], s["alpha_m"]),
        "luminosity_lsun": s["luminosity"],
        "mbol": s["mbol"],
        "abs_g": s["abs_g0"],
        "distance_pc": s["distance_kpc"] * 1000.0,
        "parallax_true_mas": 1.0 / s["distance_kpc"],
        "ebv": s["ebv"],
        "a_g": s["a_g"],
        "a_bp": s["a_bp"],
        "a_rp": s["a_rp"],
        "ra": s["ra"],
        "dec": s["dec"],
        "l": s["l"],
        "b": s["b"],
        "g": s["g"],
        "bp": s["bp"],
        "rp": s["rp"],
        "bp_rp": s["bp"] - s["rp"],
        "j": tm["j_true"],
        "h": tm["h_true"],
        "ks": tm["ks_true"],
        "parallax_zero_point": gcols["parallax_zero_point"],
        "n_transits": xp["n_transits"],
        "missing_bp": missing_bp,
    }


def _truth_columns_mist(truth: dict[str, np.ndarray], s: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The truth of a MIST sky: the columns of :func:`_truth_columns` with the isochrone's [M/H], then the
    MIST-only columns (isochrone coordinates, absolute magnitudes and extinctions in every
    band, MIST's own BP/RP for comparison with the spectrum's, the emulator clamp flag)."""
    # population: thin, thick, halo, bulge; evolutionary_state: the coarse states of the polynomial sky
    # (dwarf = pre-MS, MS and subgiant; rgb = RGB and AGB; red_clump = red and secondary clump), phase_name
    # the MIST phase (xpengine.simulate.isochrones.PHASES)
    out = dict(truth)
    out["m_h"] = s["m_h"]  # [Fe/H] + log10(0.694·10^[α/Fe] + 0.306): the isochrone's metallicity
    extra = {
        "phase_name": s["phase_name"],
        "initial_mass": s["initial_mass"],
        "log_age": s["log_age"],
        "eep": s["eep"],
        "abs_bp": s["abs_bp0"],
        "abs_rp": s["abs_rp0"],
        "abs_j": s["abs_j0"],
        "abs_h": s["abs_h0"],
        "abs_ks": s["abs_ks0"],
        "a_j": s["a_j"],
        "a_h": s["a_h"],
        "a_ks": s["a_ks"],
        "mist_abs_bp": s["mist_abs_bp0"],
        "mist_abs_rp": s["mist_abs_rp0"],
        "mist_a_bp": s["mist_a_bp"],
        "mist_a_rp": s["mist_a_rp"],
        "xp_labels_clamped": s["xp_labels_clamped"],
        "selection_weight": s["selection_weight"],
    }
    return {**out, **extra}
