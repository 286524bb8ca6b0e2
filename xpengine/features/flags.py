"""Per-source quality flags: one int64 bit field per source, shared by features, training and catalogues.

Bit values are part of the output format (they are written to Parquet files and catalogues): never
renumber a bit, only add new ones. Bits 0-15 are set by the feature step (`xpengine.features`); bits
16-31 are reserved for the catalogue engine (set after prediction); the remaining bits are unassigned.

| bit | value  | name                    | set by    | meaning                                                                |
|-----|--------|-------------------------|-----------|------------------------------------------------------------------------|
| 0   | 1      | NO_BP                   | features  | no BP coefficients (null/empty band, all NaN, or no XP columns)        |
| 1   | 2      | NO_RP                   | features  | no RP coefficients (same rules as NO_BP)                               |
| 2   | 4      | FEW_RELEVANT_BASES      | features  | a present band has fewer than `min_relevant` relevant coefficients     |
| 3   | 8      | NO_GAIA_PHOTOMETRY      | features  | no usable G flux/magnitude: XP cannot be normalised, no XP tokens, no  |
|     |        |                         |           | pseudo-luminosity                                                      |
| 4   | 16     | NO_PARALLAX             | features  | no pseudo-luminosity token: parallax missing, σ_ϖ or RUWE cut failed,  |
|     |        |                         |           | or no zero point (see NO_ZERO_POINT)                                   |
| 5   | 32     | NO_ZERO_POINT           | features  | a parallax exists but the Lindegren et al. (2021) zero point is        |
|     |        |                         |           | undefined (solution not 31/95, G/ν_eff/pseudocolour outside validity,  |
|     |        |                         |           | or its inputs missing): the catalogue's fallback −0.017 mas is used,   |
|     |        |                         |           | σ_ϖ widened by 0.02 mas (dropped with --zero-point-fallback none)      |
| 6   | 64     | NO_2MASS                | features  | neither J−H nor J−Ks could be formed (no match, bad or upper-limit mag)|
| 7   | 128    | NO_GAIA_SOURCE          | features  | no gaia_source row for this XP source (all gaia_source columns null or |
|     |        |                         |           | absent)                                                                |
| 8   | 256    | READ_PROBLEM            | readers   | a row-level parse problem upstream (passed through the input `flags`)  |
| 9   | 512    | NO_BP_RP_COLOUR         | features  | no Gaia BP−RP colour token                                             |
| 10  | 1024   | NO_EXTINCTION           | features  | no ln E(B−V) token (no input, or E(B−V) ≤ 0 without a floor)           |
| 11  | 2048   | G_FROM_XP               | features  | no G photometry given: XP normalised by the synthetic G of the star's  |
|     |        |                         |           | own coefficients (σ 2.7 mmag vs real G)                                |
| 12  | 4096   | NO_RELEVANCY            | features  | a present band has no `X_n_relevant_bases` (e.g. a sampled spectrum):  |
|     |        |                         |           | every coefficient kept, which a model trained on archive-like rows     |
|     |        |                         |           | reads differently in mass and age (calibrated apart: ALL_XP_ORDERS)    |
| 13  | 8192   | BP_RP_FROM_XP           | features  | no gaia_source BP−RP: the `bprp` token is the calibrated synthetic     |
|     |        |                         |           | BP−RP of the star's own coefficients (σ 2.5 mmag vs real BP−RP)        |
| 14  | 16384  | G_MISMATCH              | features  | the given G is > 0.3 mag brighter or > 1.5 mag fainter than the        |
|     |        |                         |           | synthetic G of the star's own XP (blends reach 1.4 mag fainter): another|
|     |        |                         |           | star's G, a misaligned row, a placeholder; every label rests on it     |
| 16  | 65536  | OUTSIDE_TRAINING_DOMAIN | catalogue | mass/age asked of a star outside the model's giant domain, judged from |
|     |        |                         |           | its parallax M_G and colour where measured, else its predicted logg    |
|     |        |                         |           | and Teff (`catalog.flag_policy`); its model distance and E(B−V) are    |
|     |        |                         |           | extrapolations too                                                     |
| 17  | 131072 | HIGH_UNCERTAINTY        | catalogue | a predicted σ above the flag policy's `max_error` / relative limits    |
| 18  | 262144 | NO_PREDICTION           | catalogue | no usable input token, or an XP band missing (NO_BP / NO_RP: never in  |
|     |        |                         |           | training; since session 32): the row is written with NaN predictions   |
| 19  | 524288 | DUPLICATE_SOURCE        | catalogue | a second input row of a source already in the catalogue: set aside in  |
|     |        |                         |           | `_rejected/` with the reason, never in the catalogue itself            |
| 20  | 1048576 | OUTSIDE_PARTITION_RANGE | catalogue | the source's HEALPix pixel (source_id >> 43) is outside the range in   |
|     |        |                         |           | its bulk file's name: the input file is mis-assembled                  |
| 21  | 2097152 | DISTANCE_FROM_PARALLAX  | catalogue | distance_pc = 1000 / ϖ (zero-point corrected, ϖ/σ_ϖ ≥ 5, RUWE ≤ 1.4)   |
| 22  | 4194304 | DISTANCE_FROM_MODEL     | catalogue | distance_pc from the model's pseudo-luminosity (parallax missing or    |
|     |        |                         |           | not significant) and G; the parallax is not in the model's context     |
| 23  | 8388608 | PARALLAX_LEFT_OUT       | catalogue | the star's pseudo-luminosity (parallax) is above the range the model   |
|     |        |                         |           | learned it in (a dwarf's, for gaia-xp, whose parallaxes were giants'): |
|     |        |                         |           | left out of its context (`xpengine.model.luminosity_domain`)           |
| 24  | 16777216 | ALL_XP_ORDERS         | catalogue | read without relevancy counts (NO_RELEVANCY: a sampled spectrum), both |
|     |        |                         |           | bands, every XP order the model reads present: mass and age take the   |
|     |        |                         |           | calibration's every-order mean shift and σ (format 5); not the rows    |
|     |        |                         |           | MASS_AGE_FROM_ISOCHRONES, whose mass and age are the isochrones'       |
| 25  | 33554432 | MASS_AGE_FROM_ISOCHRONES | catalogue | outside the model's mass/age domain (OUTSIDE_TRAINING_DOMAIN): mass   |
|     |        |                         |           | and age are the MIST isochrone posterior at the catalogue's Teff, logg,|
|     |        |                         |           | [M/H] and (parallax) M_G, not the model's (`xpengine.inference.       |
|     |        |                         |           | isochrone_fit`; policy `mass_age_from_isochrones`)                     |
| 26  | 67108864 | ISOCHRONE_INPUT_EBV   | catalogue | a MASS_AGE_FROM_ISOCHRONES row whose fit the input E(B−V) entered (the |
|     |        |                         |           | job's `--ebv`, `from_xp(ebv=)`; −0.05 to 0 taken as 0, so also on rows |
|     |        |                         |           | NO_EXTINCTION): through its M_G, G₀ (distance prior, parallax term,    |
|     |        |                         |           | isochrone distance) or a (BP−RP)₀ the fit kept. Without it: the        |
|     |        |                         |           | model's own E(B−V), BP−RP as a bound only                              |
| 27  | 134217728 | DISTANCE_FROM_ISOCHRONES | catalogue | a MASS_AGE_FROM_ISOCHRONES row without a significant parallax:   |
|     |        |                         |           | distance_pc from its isochrone posterior M_G, G and E(B−V), not the    |
|     |        |                         |           | model's pseudo-luminosity (learned on giants; DISTANCE_FROM_MODEL off) |
| 28  | 268435456 | NO_DISTANCE          | catalogue | distance_pc is NaN: no significant parallax (or RUWE > 1.4), and no    |
|     |        |                         |           | model distance (a pseudo-luminosity predicted ≤ 0, or left out) nor an |
|     |        |                         |           | isochrone one                                                          |
| 29  | 536870912 | EBV_COLOUR_BOUND     | catalogue | the E(B−V) (the model's `ebv`, or an input the isochrone fit took) was |
|     |        |                         |           | above the most the observed BP−RP allows at the predicted Teff, logg   |
|     |        |                         |           | and [M/H] (E_c + 2σ_c): an extrapolation; the value written is the     |
|     |        |                         |           | posterior under that soft bound (`xpengine.inference.ebv_bound`)       |
| 30  | 1073741824 | PARALLAX_CONFLICT   | catalogue | a MASS_AGE_FROM_ISOCHRONES row whose parallax (S/N < 5, in the fit as a|
|     |        |                         |           | χ² term) no isochrone reconciles with its labels: fitted without it;   |
|     |        |                         |           | its isochrone distance disagrees with that parallax                    |
| 31  | 2147483648 | GIANT_LOGG_DWARF_MG | catalogue | the written logg is a giant's by more than its σ (logg + σ < 3.5) but  |
|     |        |                         |           | the significant parallax gives M_G > 3.5: the logg is wrong for this   |
|     |        |                         |           | star (a dwarf the model misread; since session 32)                     |

Usage: `flags & SourceFlag.NO_BP` on an int64 array; `describe_flags(value)` lists the names of one value.
"""

from __future__ import annotations

import enum

import numpy as np

__all__ = [
    "CATALOGUE_FLAGS",
    "FEATURE_FLAGS",
    "FLAG_RULES",
    "SourceFlag",
    "describe_flags",
    "has_flag",
    "read_without_relevancy",
]


class SourceFlag(enum.IntFlag):
    """Per-source quality bits (see the module docstring for the table; values are stable)."""

    NONE = 0
    NO_BP = 1 << 0
    NO_RP = 1 << 1
    FEW_RELEVANT_BASES = 1 << 2
    NO_GAIA_PHOTOMETRY = 1 << 3
    NO_PARALLAX = 1 << 4
    NO_ZERO_POINT = 1 << 5
    NO_2MASS = 1 << 6
    NO_GAIA_SOURCE = 1 << 7
    READ_PROBLEM = 1 << 8
    NO_BP_RP_COLOUR = 1 << 9
    NO_EXTINCTION = 1 << 10
    G_FROM_XP = 1 << 11
    NO_RELEVANCY = 1 << 12
    BP_RP_FROM_XP = 1 << 13
    G_MISMATCH = 1 << 14
    # reserved for the catalogue engine
    OUTSIDE_TRAINING_DOMAIN = 1 << 16
    HIGH_UNCERTAINTY = 1 << 17
    NO_PREDICTION = 1 << 18
    DUPLICATE_SOURCE = 1 << 19
    OUTSIDE_PARTITION_RANGE = 1 << 20
    DISTANCE_FROM_PARALLAX = 1 << 21
    DISTANCE_FROM_MODEL = 1 << 22
    PARALLAX_LEFT_OUT = 1 << 23
    ALL_XP_ORDERS = 1 << 24
    MASS_AGE_FROM_ISOCHRONES = 1 << 25
    ISOCHRONE_INPUT_EBV = 1 << 26
    DISTANCE_FROM_ISOCHRONES = 1 << 27
    NO_DISTANCE = 1 << 28
    EBV_COLOUR_BOUND = 1 << 29
    PARALLAX_CONFLICT = 1 << 30
    GIANT_LOGG_DWARF_MG = 1 << 31


FLAG_RULES = "session 32: NO_ZERO_POINT keeps the parallax, NO_PREDICTION for a missing XP band (either or both), GIANT_LOGG_DWARF_MG; session 29: EBV_COLOUR_BOUND, PARALLAX_CONFLICT, ISOCHRONE_INPUT_EBV by G0; session 28: G_MISMATCH, DISTANCE_FROM_ISOCHRONES, NO_DISTANCE"
"""The flag rules a catalogue's rows were written with, part of the catalogue job's identity: a catalogue
whose record names other rules (or none: made before session 28) is not resumed, so that no catalogue mixes
rows with and without a bit (found by a review: NaN distances with and without NO_DISTANCE). Change it
whenever a bit is added or the rule that sets one changes."""


FEATURE_FLAGS: SourceFlag = (
    SourceFlag.NO_BP
    | SourceFlag.NO_RP
    | SourceFlag.FEW_RELEVANT_BASES
    | SourceFlag.NO_GAIA_PHOTOMETRY
    | SourceFlag.NO_PARALLAX
    | SourceFlag.NO_ZERO_POINT
    | SourceFlag.NO_2MASS
    | SourceFlag.NO_GAIA_SOURCE
    | SourceFlag.READ_PROBLEM
    | SourceFlag.NO_BP_RP_COLOUR
    | SourceFlag.NO_EXTINCTION
    | SourceFlag.G_FROM_XP
    | SourceFlag.NO_RELEVANCY
    | SourceFlag.BP_RP_FROM_XP
    | SourceFlag.G_MISMATCH
)
"""Bits the feature step and the readers may set."""

CATALOGUE_FLAGS: SourceFlag = (
    SourceFlag.OUTSIDE_TRAINING_DOMAIN
    | SourceFlag.HIGH_UNCERTAINTY
    | SourceFlag.NO_PREDICTION
    | SourceFlag.DUPLICATE_SOURCE
    | SourceFlag.OUTSIDE_PARTITION_RANGE
    | SourceFlag.DISTANCE_FROM_PARALLAX
    | SourceFlag.DISTANCE_FROM_MODEL
    | SourceFlag.PARALLAX_LEFT_OUT
    | SourceFlag.ALL_XP_ORDERS
    | SourceFlag.MASS_AGE_FROM_ISOCHRONES
    | SourceFlag.ISOCHRONE_INPUT_EBV
    | SourceFlag.DISTANCE_FROM_ISOCHRONES
    | SourceFlag.NO_DISTANCE
    | SourceFlag.EBV_COLOUR_BOUND
    | SourceFlag.PARALLAX_CONFLICT
    | SourceFlag.GIANT_LOGG_DWARF_MG
)
"""Bits reserved for the catalogue engine."""


def has_flag(flags: np.ndarray, flag: SourceFlag) -> np.ndarray:
    """Boolean mask (N,) of the sources whose int64 `flags` (N,) have any bit of `flag` set."""
    return (np.asarray(flags, dtype=np.int64) & np.int64(int(flag))) != 0


def read_without_relevancy(flags: np.ndarray) -> np.ndarray:
    """(N,) bool: the rows read without relevancy counts (NO_RELEVANCY: a sampled spectrum) with both bands:
    those a calibration's every-order entries are for (ALL_XP_ORDERS; the catalogue also requires every
    context order present)."""
    return has_flag(flags, SourceFlag.NO_RELEVANCY) & ~has_flag(flags, SourceFlag.NO_BP | SourceFlag.NO_RP)


def describe_flags(value: int) -> list[str]:
    """Names of the bits set in one flag value, in bit order (unknown bits as `BIT<n>`)."""
    value = int(value)
    if value < 0:
        raise ValueError(f"flag value must be non-negative, got {value}")
    names = []
    for bit in range(63):
        if value & (1 << bit):
            try:
                names.append(SourceFlag(1 << bit).name or f"BIT{bit}")
            except ValueError:
                names.append(f"BIT{bit}")
    return names
