"""The catalogue's flag policy as a pure function of arrays: which stars are outside the mass/age
training domain (`OUTSIDE_TRAINING_DOMAIN`) and which have too large an uncertainty (`HIGH_UNCERTAINTY`).

`catalogue_flags(policy, labels, means, out, ...)` returns the bits to OR into a batch's flags; the
thresholds live in one `FlagPolicy`. `xpengine.inference.catalogue.CatalogPredictor` calls it after
predicting, with the measured columns it holds (G, distance, the pseudo-luminosity, E(B−V) and BP−RP
tokens); nothing here touches a model.

The rules:
- Only when the catalogue holds mass or age (`MASS_AGE_LABELS`), which are trained on giants alone:
  - measured (`outside_by_measurement`): a significant parallax gives M_G = G − 5 log10(d/10 pc) − A_G
    (A_G = k_G E(B−V), k_G of the star's predicted Teff, logg and [M/H] under the policy's `extinction`
    law, `xpengine.catalog.extinction`); fainter than `giant_abs_g_max` is a dwarf,
    brighter is a measured giant, outside only for a predicted Teff out of `giant_teff_range`. Without
    a parallax, the pseudo-luminosity token at 2σ (`confident_dwarf`, dereddened where E(B−V) is
    known). A star whose pseudo-luminosity is above the model's training range by the reddening-free
    index (`xpengine.model.luminosity_domain`) is outside too. A dereddened BP−RP (observed
    − k_BP−RP E(B−V), the same law) below `hot_bp_rp_max` at 2σ is hotter than the domain.
  - predicted: a star that is not a measured giant is outside when its predicted logg exceeds
    `giant_logg_max` or its predicted Teff leaves `giant_teff_range`.
- Always: `HIGH_UNCERTAINTY` when a label's σ exceeds `max_error[label]` or
  `max_relative_error[label]` × |value| (`high_uncertainty`).

`mass_age_from_isochrones` (default True) is the policy for the stars outside the domain: the catalogue
(`xpengine.inference.catalogue.CatalogPredictor`) writes the MIST isochrone posterior of their Teff, logg,
[M/H] and M_G as their mass and age (flag MASS_AGE_FROM_ISOCHRONES) instead of the model's extrapolation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xpengine.catalog.extinction import CONSTANT_A_G, EXTINCTION_LAWS, coefficients
from xpengine.catalog.schema import MASS_AGE_LABELS
from xpengine.features.flags import SourceFlag

__all__ = [
    "DEFAULT_FLAG_POLICY",
    "POLICY_BEFORE",
    "FlagPolicy",
    "absolute_g",
    "catalogue_flags",
    "confident_dwarf",
    "extinction_coefficients",
    "giant_logg_dwarf_mg",
    "high_uncertainty",
    "outside_by_measurement",
    "quality_flags",
]


@dataclass(frozen=True)
class FlagPolicy:
    """Thresholds of the catalogue's flags (defaults: the training domain, no error thresholds; the
    catalogue's own, with error thresholds, are `DEFAULT_FLAG_POLICY`)."""

    giant_logg_max: float = 3.5
    giant_teff_range: tuple[float, float] = (3500.0, 5500.0)
    giant_abs_g_max: float = 3.5
    hot_bp_rp_max: float = 0.80  # (BP−RP)₀ below this: hotter than ~5800 K, outside the domain
    max_error: Mapping[str, float] = field(default_factory=dict)
    max_relative_error: Mapping[str, float] = field(default_factory=dict)
    # stars outside the mass/age domain take the isochrone posterior's mass and age (module docstring)
    mass_age_from_isochrones: bool = True
    # A_G and E(BP−RP) per E(B−V) for M_G and the dereddened colour: "mist" (star by star, from its Teff,
    # logg and [M/H]) or "constant" (2.740 and 1.339, the catalogues made before session 21)
    extinction: str = "mist"
    # the model's E(B−V) (and an input the isochrone fit takes) held to the most the star's observed
    # BP−RP allows at its predicted labels (`xpengine.inference.ebv_bound`; flag EBV_COLOUR_BOUND)
    ebv_colour_bound: bool = True

    def problems(self) -> list[str]:
        """What is wrong with the policy's values beyond their types, one line each."""
        if self.extinction not in EXTINCTION_LAWS:
            return [f"extinction: must be one of {list(EXTINCTION_LAWS)}, got {self.extinction!r}"]
        return []


POLICY_BEFORE = {"mass_age_from_isochrones": False, "extinction": "constant"}
# (`ebv_colour_bound` is not here: a catalogue made before session 29 has other flag rules
# (`xpengine.features.flags.FLAG_RULES`) and is not resumed at all)
"""The values a catalogue recorded before the policy had these keys was made with. Both only act on
catalogues that hold mass or age."""


DEFAULT_FLAG_POLICY = FlagPolicy(
    max_relative_error={"mass": 0.3, "age": 0.6},
    max_error={"teff": 250.0, "logg": 0.4, "m_h": 0.3},
)
"""The catalogue's flags (the job, `xpengine infer`, `Predictor.from_xp`): `FlagPolicy`'s training domain,
with error thresholds (HIGH_UNCERTAINTY)."""


def absolute_g(
    g: np.ndarray, dist: np.ndarray, ebv: np.ndarray, a_g_per_ebv: np.ndarray | float
) -> np.ndarray:
    """M_G (N,) of stars of G [mag] at distance [pc] behind E(B−V) [mag]: G − 5 log10(d / 10 pc) − A_G,
    A_G = a_g_per_ebv · E(B−V) (`extinction_coefficients`); NaN where any is NaN or d ≤ 0."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return g - 5.0 * np.log10(dist / 10.0) - a_g_per_ebv * ebv


def extinction_coefficients(
    policy: FlagPolicy,
    ebv: np.ndarray,
    teff: np.ndarray | None = None,
    logg: np.ndarray | None = None,
    m_h: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A_G / E(B−V) and E(BP−RP) / E(B−V) (N,) of stars behind E(B−V) (N,) with predicted Teff, logg and
    [M/H] (None: not predicted) under the policy's `extinction` law (`xpengine.catalog.extinction`)."""
    return coefficients(teff, ebv, logg, m_h, law=policy.extinction)


def confident_dwarf(
    fakemag: np.ndarray | None,
    fakemag_error: np.ndarray | None,
    n: int,
    giant_abs_g_max: float,
    ebv: np.ndarray | None = None,
    a_g_per_ebv: np.ndarray | float = CONSTANT_A_G,
) -> np.ndarray:
    """(N,) bool: the measured pseudo-luminosity says the star is fainter than M_G = giant_abs_g_max
    at 2σ (a dwarf), whatever the model predicts: a model trained on giants alone cannot tell a
    dwarf from its spectrum, but the parallax can. fakemag = 10^(0.2 M_G + 2) (Leung & Bovy 2024),
    observed, so dereddened here by A_G = a_g_per_ebv · E(B−V) where `ebv` (N,) is known (0 elsewhere), as
    the parallax branch of `outside_by_measurement` does. fakemag None (the vocabulary has no such token):
    no star."""
    if fakemag is None:
        return np.zeros(n, dtype=bool)
    f = np.asarray(fakemag).astype(np.float64)
    sf = np.asarray(fakemag_error).astype(np.float64)
    if ebv is not None:
        dered = 10 ** (-0.2 * a_g_per_ebv * np.nan_to_num(np.asarray(ebv, dtype=np.float64)))
        f, sf = f * dered, sf * dered
    limit = 10 ** (0.2 * giant_abs_g_max + 2.0)
    with np.errstate(invalid="ignore"):
        return np.isfinite(f) & (f - 2.0 * sf > limit)  # fainter than the limit (larger fakemag)


def _dereddening(policy: FlagPolicy, n: int, logebv, teff, logg, m_h) -> tuple[np.ndarray, Any, Any]:
    """E(B−V) (N,) from the `logebv` token (0 where unknown, which only reddens the colour) and its A_G and
    E(BP−RP) coefficients (`extinction_coefficients`): how the measured M_G and colour are dereddened."""
    ebv = np.zeros(n)
    if logebv is not None:
        le = np.asarray(logebv).astype(np.float64)
        ebv = np.where(np.isfinite(le), np.exp(le), 0.0)
    k_g, k_colour = extinction_coefficients(policy, ebv, teff, logg, m_h)
    return ebv, k_g, k_colour


def outside_by_measurement(
    policy: FlagPolicy,
    g: np.ndarray,
    dist: np.ndarray,
    by_parallax: np.ndarray,
    teff: np.ndarray | None = None,
    *,
    fakemag: np.ndarray | None = None,
    fakemag_error: np.ndarray | None = None,
    logebv: np.ndarray | None = None,
    bprp: np.ndarray | None = None,
    bprp_error: np.ndarray | None = None,
    logg: np.ndarray | None = None,
    m_h: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(N,) bool each: outside the mass/age domain by measurement, and measured to be a giant
    (significant parallax, M_G ≤ `giant_abs_g_max`).

    g, dist [pc], by_parallax (N,): G, the catalogue's distance and whether it came from the parallax;
    teff (N,): predicted Teff (None: not predicted); fakemag/fakemag_error, logebv, bprp/bprp_error (N,):
    the star's input tokens (NaN where absent; None where the vocabulary has no such token); logg, m_h
    (N,): predicted, for the extinction coefficients with teff (`extinction_coefficients`). E(B−V) is 0
    where unknown, which only reddens the colour.
    """
    n = len(g)
    ebv, k_g, k_colour = _dereddening(policy, n, logebv, teff, logg, m_h)
    with np.errstate(invalid="ignore", divide="ignore"):
        abs_g = absolute_g(g, dist, ebv, k_g)
        outside = by_parallax & (abs_g > policy.giant_abs_g_max)
        measured_giant = by_parallax & (abs_g <= policy.giant_abs_g_max)
        outside |= ~by_parallax & confident_dwarf(fakemag, fakemag_error, n, policy.giant_abs_g_max, ebv, k_g)
        if bprp is not None:
            colour0 = np.asarray(bprp).astype(np.float64) - k_colour * ebv
            sigma = np.nan_to_num(np.asarray(bprp_error).astype(np.float64))
            outside |= np.isfinite(colour0) & (colour0 + 2.0 * sigma < policy.hot_bp_rp_max)
    # a measured giant is outside only for a predicted Teff out of range (not for a predicted logg)
    if teff is not None:
        lo, hi = policy.giant_teff_range
        with np.errstate(invalid="ignore"):
            outside |= measured_giant & ~((teff >= lo) & (teff <= hi))
    return outside, measured_giant


def quality_flags(
    policy: FlagPolicy,
    labels: Iterable[str],
    means: Mapping[str, np.ndarray],
    out: Mapping[str, np.ndarray],
    measured_giant: np.ndarray,
) -> np.ndarray:
    """(N,) int64 bits: OUTSIDE_TRAINING_DOMAIN by the predicted logg/Teff (mass or age in `labels`;
    stars not measured to be giants) and HIGH_UNCERTAINTY by the error thresholds.

    means: predicted token means ({"teff", "logg", ...}: (N,)); out: catalogue columns (`<label>`,
    `<label>_error`, physical units)."""
    n = len(next(iter(out.values())))
    flags = np.zeros(n, dtype=np.int64)
    with np.errstate(invalid="ignore"):
        if MASS_AGE_LABELS & set(labels):
            # mass and age are only trained on giants: dwarfs and hot stars are outside the domain.
            # Stars whose parallax measures them as giants are judged in outside_by_measurement.
            giant = np.ones(n, dtype=bool)
            if "logg" in means:
                giant &= means["logg"] <= policy.giant_logg_max
            if "teff" in means:
                lo, hi = policy.giant_teff_range
                giant &= (means["teff"] >= lo) & (means["teff"] <= hi)
            flags[~giant & ~measured_giant] |= int(SourceFlag.OUTSIDE_TRAINING_DOMAIN)
    flags[high_uncertainty(policy, out)] |= int(SourceFlag.HIGH_UNCERTAINTY)
    return flags


def high_uncertainty(policy: FlagPolicy, out: Mapping[str, np.ndarray]) -> np.ndarray:
    """(N,) bool: a label's σ in `out` (catalogue columns) above the policy's `max_error` or
    `max_relative_error` × |value|."""
    n = len(next(iter(out.values())))
    high = np.zeros(n, dtype=bool)
    with np.errstate(invalid="ignore"):
        for lab, lim in policy.max_error.items():
            if lab in out:
                high |= out[f"{lab}_error"] > lim
        for lab, lim in policy.max_relative_error.items():
            if lab in out:
                high |= out[f"{lab}_error"] > lim * np.abs(out[lab])
    return high


def catalogue_flags(
    policy: FlagPolicy,
    labels: Iterable[str],
    means: Mapping[str, np.ndarray],
    out: Mapping[str, np.ndarray],
    *,
    g: np.ndarray,
    dist: np.ndarray,
    by_parallax: np.ndarray,
    fakemag: np.ndarray | None = None,
    fakemag_error: np.ndarray | None = None,
    logebv: np.ndarray | None = None,
    bprp: np.ndarray | None = None,
    bprp_error: np.ndarray | None = None,
    luminosity_outside: np.ndarray | None = None,
) -> np.ndarray:
    """(N,) int64: the OUTSIDE_TRAINING_DOMAIN and HIGH_UNCERTAINTY bits of a batch, to OR into its
    flags. Arguments as in `outside_by_measurement` and `quality_flags`; luminosity_outside (N,) bool:
    the stars whose pseudo-luminosity is above the model's training range (reddening-free,
    `xpengine.model.luminosity_domain`), outside the mass/age domain by measurement too."""
    labels = list(labels)
    n = len(g)
    flags = np.zeros(n, dtype=np.int64)
    measured_giant = np.zeros(n, dtype=bool)
    if MASS_AGE_LABELS & set(labels):
        outside, measured_giant = outside_by_measurement(
            policy,
            g,
            dist,
            by_parallax,
            means.get("teff"),
            fakemag=fakemag,
            fakemag_error=fakemag_error,
            logebv=logebv,
            bprp=bprp,
            bprp_error=bprp_error,
            logg=means.get("logg"),
            m_h=means.get("m_h"),
        )
        if luminosity_outside is not None:
            outside |= luminosity_outside
            measured_giant &= ~luminosity_outside
        flags[outside] |= int(SourceFlag.OUTSIDE_TRAINING_DOMAIN)
    if "logg" in labels and "logg_error" in out:
        conflict = giant_logg_dwarf_mg(policy, g, dist, by_parallax, out, means, logebv)
        flags[conflict] |= int(SourceFlag.GIANT_LOGG_DWARF_MG)
    return flags | quality_flags(policy, labels, means, out, measured_giant)


def giant_logg_dwarf_mg(
    policy: FlagPolicy,
    g: np.ndarray,
    dist: np.ndarray,
    by_parallax: np.ndarray,
    out: Mapping[str, np.ndarray],
    means: Mapping[str, np.ndarray],
    logebv: np.ndarray | None = None,
) -> np.ndarray:
    """(N,) bool: the written logg is a giant's by more than its σ (logg + σ < `giant_logg_max`) while the
    star's significant parallax puts it below the giants (M_G > `giant_abs_g_max`, dereddened as
    `outside_by_measurement` does): no star that faint is that extended, so the logg column is wrong for
    it (review of session 32: Proxima Centauri, 1.30 pc from its parallax, read logg 1.26 ± 1.41 by a model
    that never saw an M dwarf, and a `logg < 2` query selected it)."""
    ebv, k_g, _ = _dereddening(policy, len(g), logebv, means.get("teff"), means.get("logg"), means.get("m_h"))
    logg = np.asarray(out["logg"], dtype=np.float64)
    sigma = np.asarray(out["logg_error"], dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        faint = by_parallax & (absolute_g(g, dist, ebv, k_g) > policy.giant_abs_g_max)
        return faint & (logg + sigma < policy.giant_logg_max)
