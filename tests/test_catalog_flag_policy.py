"""`xpengine.catalog.flag_policy`: the catalogue's domain and uncertainty flags as a pure function of arrays."""

from __future__ import annotations

import numpy as np

from xpengine.catalog.flag_policy import (
    FlagPolicy,
    catalogue_flags,
    confident_dwarf,
    outside_by_measurement,
    quality_flags,
)
from xpengine.features.flags import SourceFlag

OUT = int(SourceFlag.OUTSIDE_TRAINING_DOMAIN)
HIGH = int(SourceFlag.HIGH_UNCERTAINTY)
LABELS = ["teff", "logg", "mass", "age"]


def _fakemag(abs_g):
    return 10 ** (0.2 * np.asarray(abs_g, dtype=np.float64) + 2.0)


def test_predicted_domain_only_with_mass_or_age():
    means = {"teff": np.array([4800.0, 4800.0, 6500.0, 3000.0]), "logg": np.array([2.5, 4.4, 2.5, 1.0])}
    out = {"teff": means["teff"], "teff_error": np.full(4, 10.0)}
    none = np.zeros(4, dtype=bool)
    flags = quality_flags(FlagPolicy(), LABELS, means, out, none)
    assert (flags == [0, OUT, OUT, OUT]).all()  # giant; logg of a dwarf; too hot; too cool
    # the same stars measured to be giants: the predicted logg/Teff no longer flag them here
    assert (quality_flags(FlagPolicy(), LABELS, means, out, ~none) == 0).all()
    # a catalogue without mass and age has no domain
    assert (quality_flags(FlagPolicy(), ["teff", "logg"], means, out, none) == 0).all()


def test_error_thresholds_absolute_and_relative():
    policy = FlagPolicy(max_error={"teff": 250.0, "m_h": 0.3}, max_relative_error={"mass": 0.3})
    out = {
        "teff": np.array([5000.0, 5000.0, 5000.0]),
        "teff_error": np.array([100.0, 300.0, np.nan]),
        "mass": np.array([1.0, 1.0, -2.0]),
        "mass_error": np.array([0.2, 0.2, 0.7]),
    }
    flags = quality_flags(policy, ["teff", "mass"], {}, out, np.zeros(3, dtype=bool))
    # NaN σ is not "high"; the relative limit uses |value|; m_h is not in the catalogue: ignored
    assert (flags == [0, HIGH, HIGH]).all()


def test_confident_dwarf_at_two_sigma():
    f = _fakemag([6.0, 6.0, 2.0, np.nan])
    sf = np.array([0.01, 0.6, 0.01, 0.0]) * f
    assert (confident_dwarf(f, sf, 4, 3.5) == [True, False, False, False]).all()
    assert not confident_dwarf(None, None, 4, 3.5).any()  # no pseudo-luminosity token in the vocabulary


def test_outside_by_measurement_parallax_colour_and_teff():
    policy = FlagPolicy()
    g = np.array([12.0, 12.0, 12.0, 12.0, 12.0])
    # absolute G 7 (dwarf), 2 (giant), 2 (giant, Teff out of range), no parallax, no parallax
    dist = 10.0 * 10 ** (0.2 * (g - np.array([7.0, 2.0, 2.0, 2.0, 2.0])))
    by_parallax = np.array([True, True, True, False, False])
    teff = np.array([4800.0, 4800.0, 6500.0, 4800.0, 4800.0])
    fakemag = _fakemag([np.nan, np.nan, np.nan, 6.0, 1.0])
    fakemag_error = 0.01 * np.nan_to_num(fakemag)
    outside, giant = outside_by_measurement(
        policy, g, dist, by_parallax, teff, fakemag=fakemag, fakemag_error=fakemag_error
    )
    assert (giant == [False, True, True, False, False]).all()
    assert (outside == [True, False, True, True, False]).all()
    # extinction: A_G = 2.74 E(B-V) makes the first star's absolute G brighter: a giant after all
    logebv = np.log(np.array([1.5, np.nan, np.nan, np.nan, np.nan]))  # NaN: E(B-V) unknown, taken as 0
    outside, giant = outside_by_measurement(policy, g, dist, by_parallax, None, logebv=logebv)
    assert giant[0] and not outside[0]
    # colour: (BP-RP)0 + 2 sigma below 0.8 is hotter than the domain; E(B-V) dereddens it
    bprp = np.array([0.5, 1.2, 1.2, 1.2, 1.2])
    bprp_error = np.array([0.01, 0.01, 0.01, np.nan, 0.01])
    ebv = np.array([np.nan, np.nan, np.nan, np.nan, 0.4])
    outside, _ = outside_by_measurement(
        policy, g, dist, np.zeros(5, dtype=bool), None, logebv=np.log(ebv), bprp=bprp, bprp_error=bprp_error
    )
    assert (outside == [True, False, False, False, True]).all()  # the last: 1.2 - 1.339*0.4 = 0.66


def test_catalogue_flags_combines_both_and_skips_the_domain_without_mass_age():
    g = np.array([12.0, 12.0])
    dist = 10.0 * 10 ** (0.2 * (g - np.array([7.0, 2.0])))  # a measured dwarf, a measured giant
    by_parallax = np.array([True, True])
    means = {"teff": np.array([4800.0, 4800.0]), "logg": np.array([2.5, 4.5])}
    out = {"teff": means["teff"], "teff_error": np.array([300.0, 10.0])}
    policy = FlagPolicy(max_error={"teff": 250.0})
    flags = catalogue_flags(policy, LABELS, means, out, g=g, dist=dist, by_parallax=by_parallax)
    # the dwarf is outside and uncertain; the measured giant's dwarf-like predicted logg does not flag it
    assert (flags == [OUT | HIGH, 0]).all() and flags.dtype == np.int64
    flags = catalogue_flags(policy, ["teff", "logg"], means, out, g=g, dist=dist, by_parallax=by_parallax)
    assert (flags == [HIGH, 0]).all()
