"""SourceFlag bit values are a file format: they must not move (xpengine.features.flags)."""

from __future__ import annotations

import re

import numpy as np
import pytest

import xpengine.features.flags as flags_module
from xpengine.features.flags import CATALOGUE_FLAGS, FEATURE_FLAGS, SourceFlag, describe_flags, has_flag

STABLE = {
    "NO_BP": 1,
    "NO_RP": 2,
    "FEW_RELEVANT_BASES": 4,
    "NO_GAIA_PHOTOMETRY": 8,
    "NO_PARALLAX": 16,
    "NO_ZERO_POINT": 32,
    "NO_2MASS": 64,
    "NO_GAIA_SOURCE": 128,
    "READ_PROBLEM": 256,
    "NO_BP_RP_COLOUR": 512,
    "NO_EXTINCTION": 1024,
    "G_FROM_XP": 2048,
    "NO_RELEVANCY": 4096,
    "BP_RP_FROM_XP": 8192,
    "G_MISMATCH": 16384,
    "OUTSIDE_TRAINING_DOMAIN": 65536,
    "HIGH_UNCERTAINTY": 131072,
    "NO_PREDICTION": 262144,
    "DUPLICATE_SOURCE": 524288,
    "OUTSIDE_PARTITION_RANGE": 1048576,
    "DISTANCE_FROM_PARALLAX": 2097152,
    "DISTANCE_FROM_MODEL": 4194304,
    "PARALLAX_LEFT_OUT": 8388608,
    "ALL_XP_ORDERS": 16777216,
    "MASS_AGE_FROM_ISOCHRONES": 33554432,
    "ISOCHRONE_INPUT_EBV": 67108864,
    "DISTANCE_FROM_ISOCHRONES": 134217728,
    "NO_DISTANCE": 268435456,
    "EBV_COLOUR_BOUND": 536870912,
    "PARALLAX_CONFLICT": 1073741824,
    "GIANT_LOGG_DWARF_MG": 2147483648,
}


def test_bit_values_are_stable() -> None:
    assert {f.name: int(f) for f in SourceFlag if f.name and f.name != "NONE"} == STABLE


def test_docstring_table_matches_the_enum() -> None:
    rows = re.findall(r"^\| (\d+)\s+\| (\d+)\s+\| (\w+)\s+\|", flags_module.__doc__, flags=re.M)
    assert {name: int(value) for _, value, name in rows} == STABLE
    assert all(int(value) == 1 << int(bit) for bit, value, _ in rows)


def test_feature_and_catalogue_bits_do_not_overlap() -> None:
    assert int(FEATURE_FLAGS) & int(CATALOGUE_FLAGS) == 0
    assert int(FEATURE_FLAGS) < 1 << 16 <= int(CATALOGUE_FLAGS)


def test_has_flag_and_describe_flags() -> None:
    f = np.array([0, 1, 3, 256 | 65536], dtype=np.int64)
    np.testing.assert_array_equal(has_flag(f, SourceFlag.NO_RP), [False, False, True, False])
    np.testing.assert_array_equal(
        has_flag(f, SourceFlag.NO_BP | SourceFlag.READ_PROBLEM), [False, True, True, True]
    )
    assert describe_flags(3) == ["NO_BP", "NO_RP"]
    assert describe_flags(256 | 65536 | (1 << 40)) == ["READ_PROBLEM", "OUTSIDE_TRAINING_DOMAIN", "BIT40"]
    assert describe_flags(0) == []
    with pytest.raises(ValueError, match="non-negative"):
        describe_flags(-1)
