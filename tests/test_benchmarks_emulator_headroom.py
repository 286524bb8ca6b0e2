"""benchmarks/emulator_headroom.py: the score removes a grey offset and an E(B−V) shift and nothing else, and the
perceptron learns a smooth function of the labels."""

import numpy as np
import pytest
from _paths import load_script

pytest.importorskip("torch")


def test_fixed_rms_ignores_grey_and_reddening_only():
    eh = load_script("benchmarks/emulator_headroom.py", "emulator_headroom")
    rng = np.random.default_rng(0)
    kappa = np.linspace(-1.0, -0.2, 200)
    y = rng.normal(0.0, 1.0, (5, 200))
    use = np.ones_like(y, dtype=bool)
    shifted = y + 0.3 + np.outer(rng.uniform(0.0, 0.5, 5), kappa)
    assert np.allclose(eh.fixed_rms(y, shifted, use, kappa), 0.0, atol=1e-12)
    noisy = shifted + rng.normal(0.0, 0.01, y.shape)
    assert np.allclose(eh.fixed_rms(y, noisy, use, kappa), 0.01, rtol=0.15)
    few = use.copy()
    few[0, 2:] = False  # two pixels cannot carry two fitted terms and a residual
    assert np.isnan(eh.fixed_rms(y, noisy, few, kappa)[0])


def test_mlp_learns_a_smooth_function_of_the_labels():
    eh = load_script("benchmarks/emulator_headroom.py", "emulator_headroom")
    rng = np.random.default_rng(1)
    x = rng.uniform(-1.0, 1.0, (800, 4))
    y = np.stack([np.sin(x[:, 0] * (k + 1)) + 0.5 * x[:, 1] * x[:, 2] for k in range(6)], 1)
    predict = eh.fit_mlp(x[:600], y[:600], np.ones_like(y[:600]), steps=400)
    err = predict(x[600:]) - y[600:]
    assert np.sqrt(np.mean(err**2)) < 0.3 * np.std(y[600:])
