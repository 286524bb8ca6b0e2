"""Relevancy masks and the paper's propagation (xpengine.features.relevancy)."""

from __future__ import annotations

import numpy as np
import pytest

from xpengine.features.relevancy import (
    apply_relevancy,
    propagate_relevancy,
    relevancy_mask,
    xp_relevancy_mask,
)


def _first(n_true: int, n: int) -> list[bool]:
    return [k < n_true for k in range(n)]


def test_dr3_band_mask_by_hand() -> None:
    # n_relevant 53 -> 0..52 relevant, then 51's relevancy (True) copied to 52..54: all 55
    # n_relevant 52 -> 51 relevant -> all 55; 51 -> 51 is irrelevant -> 52..54 stay irrelevant
    m = relevancy_mask(np.array([53, 52, 51, 40, 0, 55]), 55)
    assert m.shape == (6, 55) and m.dtype == bool
    assert m[0].all() and m[1].all() and m[5].all()
    assert m[2].tolist() == _first(51, 55)
    assert m[3].tolist() == _first(40, 55)
    assert not m[4].any()


def test_paper_indices_in_the_110_vector() -> None:
    """BP 51 -> 52..54 and 106 (RP 51) -> 107..109, as Zhang et al. (2026) §2.2 state."""
    m = xp_relevancy_mask(np.array([53, 30]), np.array([30, 54]), 55, 55)
    assert m.shape == (2, 110)
    assert m[0, 51:55].all() and m[0, 53] and m[0, 54]  # BP 53 and 54 were beyond n_relevant=53
    assert m[0, 55:85].all() and not m[0, 85:].any()
    assert m[1, :30].all() and not m[1, 30:55].any()
    assert m[1, 55:110].all()  # RP n_relevant 54: 109 propagated from 106
    # without propagation, the raw Gaia definition
    raw = xp_relevancy_mask(np.array([53]), np.array([54]), 55, 55, propagate_from=None)
    assert raw[0, :53].all() and not raw[0, 53:55].any() and raw[0, 55:109].all() and not raw[0, 109]


@pytest.mark.parametrize(
    ("n", "n_relevant", "expected_true"),
    [
        (51, 50, 50),  # DR4 BP: pivot min(51, 50) = 50 is the last index: no propagation
        (51, 51, 51),
        (52, 51, 51),  # pivot 51 is the last index: no propagation
        (53, 52, 53),  # 51 relevant -> copied to 52
        (53, 51, 51),
        (54, 52, 54),
        (54, 50, 50),
        (10, 3, 3),
    ],
)
def test_general_band_length(n: int, n_relevant: int, expected_true: int) -> None:
    m = relevancy_mask(np.array([n_relevant]), n)
    assert m.shape == (1, n)
    assert m[0].tolist() == _first(expected_true, n)


def test_unknown_and_clipped_counts() -> None:
    m = relevancy_mask(np.array([np.nan, 70.0]), 55)
    assert m.all()
    with pytest.raises(ValueError, match=r"must be >= 0, got \[-1.0\]"):
        relevancy_mask(np.array([-1]), 55)
    with pytest.raises(ValueError, match="1-D"):
        relevancy_mask(np.ones((2, 2)), 55)


def test_propagate_relevancy_does_not_modify_input_and_custom_pivot() -> None:
    mask = np.zeros((1, 8), dtype=bool)
    mask[0, :5] = True
    out = propagate_relevancy(mask, propagate_from=4)
    assert out[0].all() and not mask[0, 5:].any()
    out = propagate_relevancy(mask, propagate_from=5)
    assert out[0].tolist() == _first(5, 8)
    with pytest.raises(ValueError, match="non-negative"):
        propagate_relevancy(mask, propagate_from=-1)


def test_apply_relevancy_nan_value_zero_error() -> None:
    v = np.array([[1.0, 2.0, np.nan], [4.0, 5.0, 6.0]])
    e = np.array([[0.1, 0.2, 0.3], [0.4, np.nan, 0.6]])
    mask = np.array([[True, False, True], [True, True, True]])
    ov, oe = apply_relevancy(v, e, mask)
    np.testing.assert_array_equal(np.isnan(ov), [[False, True, True], [False, False, False]])
    np.testing.assert_array_equal(oe, [[0.1, 0.0, 0.0], [0.4, 0.0, 0.6]])
    with pytest.raises(ValueError, match="same shape"):
        apply_relevancy(v, e, mask[:, :2])
