"""The robust Gaussian NLL (Zhang et al. 2026 Eq. 2; Leung & Bovy 2024) against hand values and torch's
own gaussian_nll_loss."""

from __future__ import annotations

import math

import pytest
import torch

from xpengine.model.loss import gaussian_nll


def test_hand_computed_value():
    # Star 1: y = 1, ŷ = 0.5, ln σ²_pred = ln 0.25, σ_known = 0.5 → V = 0.5:
    #   ½[(0.5)²/0.5 + ln 0.5] = ½[0.5 − 0.693147] = −0.0965736
    # Star 2: y = −2, ŷ = 0, logvar = 0, σ_known = 0 → V = 1: ½[4 + 0] = 2
    # Star 2's second request is missing (NaN) and masked. Sum / batch size 2 = 0.9517132.
    y = torch.tensor([[1.0, 0.0], [-2.0, float("nan")]])
    mu = torch.tensor([[0.5, 0.0], [0.0, 3.0]])
    lv = torch.tensor([[math.log(0.25), 0.0], [0.0, 0.0]])
    err = torch.tensor([[0.5, 0.0], [0.0, 0.0]])
    mask = torch.tensor([[True, False], [True, False]])
    expected = (0.5 * (0.25 / 0.5 + math.log(0.5)) + 2.0) / 2
    assert gaussian_nll(y, mu, lv, err, mask).item() == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(0.9517132, abs=1e-7)


def test_equals_torch_gaussian_nll_loss_with_total_variance():
    g = torch.Generator().manual_seed(0)
    y, mu, lv = (torch.randn(8, 3, generator=g) for _ in range(3))
    err = torch.rand(8, 3, generator=g)
    ref = torch.nn.functional.gaussian_nll_loss(mu, y, lv.exp() + err**2, reduction="sum", eps=0.0) / 8
    torch.testing.assert_close(gaussian_nll(y, mu, lv, err), ref)


def test_masked_nan_gives_no_nan_gradient_and_divides_by_batch_size():
    y = torch.tensor([[0.0], [float("nan")], [float("nan")], [float("nan")]])
    mu = torch.zeros(4, 1, requires_grad=True)
    lv = torch.zeros(4, 1, requires_grad=True)
    loss = gaussian_nll(y, mu, lv, torch.full((4, 1), float("nan")).nan_to_num(0.0))
    loss.backward()
    assert loss.item() == 0.0  # one valid element with zero loss
    assert torch.isfinite(mu.grad).all() and torch.isfinite(lv.grad).all()
    assert torch.equal(lv.grad[1:], torch.zeros(3, 1))
    # Denominator is the batch size (4), not the number of valid elements (1).
    y2 = torch.tensor([[2.0], [float("nan")], [float("nan")], [float("nan")]])
    assert gaussian_nll(y2, torch.zeros(4, 1), torch.zeros(4, 1), torch.zeros(4, 1)).item() == pytest.approx(
        0.5
    )


def test_bfloat16_inputs_are_computed_in_float32():
    y = torch.tensor([[1.0]])
    out = gaussian_nll(
        y,
        torch.tensor([[0.0]], dtype=torch.bfloat16),
        torch.zeros(1, 1, dtype=torch.bfloat16),
        torch.zeros(1, 1),
    )
    assert out.dtype == torch.float32 and out.item() == pytest.approx(0.5)


def test_shape_mismatch_is_reported():
    with pytest.raises(ValueError, match=r"target \(2, 1\), mean \(2, 2\)"):
        gaussian_nll(torch.zeros(2, 1), torch.zeros(2, 2), torch.zeros(2, 1), torch.zeros(2, 1))
