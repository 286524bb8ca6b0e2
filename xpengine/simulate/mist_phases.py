"""The phases of the MIST sky's stars: the primary EEPs of MIST (Dotter 2016) and the simulator's phase
codes from them (`PHASES`, `phase_codes`); see :mod:`xpengine.simulate.isochrones`, which re-exports every
name here."""

from __future__ import annotations

import numpy as np

EEP_ZAMS = 202
EEP_TAMS = 454
EEP_TIP = 605
EEP_TACHEB = 707
EEP_TPAGB_END = 1408  # last EEP before post-AGB (1409): later stars are remnants here

#: phase label -> code (the `phase` column of the simulator)
PHASES: dict[str, int] = {
    "pre_main_sequence": 0,
    "main_sequence": 1,
    "subgiant": 2,
    "rgb": 3,
    "red_clump": 4,
    "secondary_clump": 5,
    "agb": 6,
    "remnant": 7,  # post-AGB, white dwarf, Wolf–Rayet, or past the grid: not a simulated star
}

_SUBGIANT_LOGG = 3.5  # phase-2 stars with logg ≥ 3.5 are subgiants, below it RGB (our convention)


def phase_codes(
    eep: np.ndarray, mist_phase: np.ndarray, logg: np.ndarray, initial_mass: np.ndarray, m_hef: np.ndarray
) -> np.ndarray:
    """Codes of :data:`PHASES` (N,) int8 from the fractional EEP, MIST phase (of the nearest grid point),
    logg, initial mass [M☉] and the helium-flash mass M_HeF [M☉] at the star's metallicity (only used for
    core-He burners). By the primary EEPs:

    - EEP < 454: pre_main_sequence where the MIST phase is −1, else main_sequence.
    - 454 ≤ EEP < 605 (MIST phase 2, which starts at the TAMS): subgiant if logg ≥ 3.5, else rgb (our
      convention).
    - 605 ≤ EEP < 707, core-He burning: red_clump, or secondary_clump (Girardi 1999) when the star ignited
      helium non-degenerately, initial mass ≥ M_HeF. Metal-poor horizontal-branch stars are red_clump.
    - 707 ≤ EEP ≤ 1408: agb (early AGB and TP-AGB).
    - remnant: everything else, and MIST phases 6 (post-AGB, white dwarf) and 9 (Wolf–Rayet): not simulated.
    """
    eep = np.asarray(eep, dtype=np.float64)
    ph = np.asarray(mist_phase)
    out = np.full(eep.shape, PHASES["remnant"], dtype=np.int8)
    with np.errstate(invalid="ignore"):
        ms = eep < EEP_TAMS
        rgb = (eep >= EEP_TAMS) & (eep < EEP_TIP)
        heb = (eep >= EEP_TIP) & (eep < EEP_TACHEB)
        agb = (eep >= EEP_TACHEB) & (eep <= EEP_TPAGB_END)
        high = np.asarray(logg) >= _SUBGIANT_LOGG
        secondary = np.asarray(initial_mass) >= m_hef
    out[ms & (ph == -1)] = PHASES["pre_main_sequence"]
    out[ms & (ph != -1)] = PHASES["main_sequence"]
    out[rgb & high] = PHASES["subgiant"]
    out[rgb & ~high] = PHASES["rgb"]
    out[heb & ~secondary] = PHASES["red_clump"]
    out[heb & secondary] = PHASES["secondary_clump"]
    out[agb] = PHASES["agb"]
    out[(ph == 6) | (ph == 9) | (ph == -9) | np.isnan(eep)] = PHASES["remnant"]
    return out
