"""benchmarks/sim_sky_checks.py: the age–[M/H] diagnostics that separate a relation carried by the ages from one
made steeper by correlated errors."""

import numpy as np
import pytest

from tests._paths import load_script

pytest.importorskip("scipy")


@pytest.fixture(scope="module")
def ssc():
    return load_script("benchmarks/sim_sky_checks.py", "sim_sky_checks")


def _population(n: int = 4000, seed: int = 3):
    rng = np.random.default_rng(seed)
    m_h = rng.normal(-0.2, 0.3, n)
    ln_age = np.log(6.0) - 1.0 * m_h + rng.normal(0.0, 0.5, n)  # older when metal-poorer
    return np.exp(ln_age), m_h, rng


def test_exact_predictions_give_the_truth_everywhere(ssc):
    age, m_h, _ = _population()
    d = ssc.age_metallicity_diagnostics(age, m_h, age, m_h)
    assert d["n"] == age.size
    for k in ("predicted", "predicted_age_true_m_h", "true_age_predicted_m_h"):
        assert d[k] == pytest.approx(d["truth"])
    assert d["truth"] < -0.3


def test_anticorrelated_errors_steepen_the_predicted_relation_only(ssc):
    age, m_h, rng = _population()
    e = rng.normal(0.0, 0.15, age.size)  # one error moves [M/H] up and ln age down: the degeneracy
    pred_m_h, pred_age = m_h + e, age * np.exp(-2.0 * e)
    d = ssc.age_metallicity_diagnostics(pred_age, pred_m_h, age, m_h)
    assert d["error_correlation"] == pytest.approx(-1.0)
    assert d["predicted"] < d["truth"] - 0.05  # steeper than the truth
    # mixing one predicted label with the other's truth does not show the excess
    assert d["predicted_age_true_m_h"] > d["predicted"] + 0.05
    assert d["true_age_predicted_m_h"] > d["predicted"] + 0.05


def test_nan_rows_are_left_out(ssc):
    age, m_h, _ = _population(100)
    age = age.copy()
    age[:10] = np.nan
    d = ssc.age_metallicity_diagnostics(age, m_h, age, m_h)
    assert d["n"] == 90 and np.isfinite(d["predicted"])
