"""Calibration format 6: σ factors per class of star (`Calibration.by_class`, giants by the predicted logg),
the fit of one factor, and the Predictor applying them with a logg it predicts for the purpose."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from xpengine.evaluate.calibration import fit_class_factor
from xpengine.model.calibration import CLASS_SPLIT_LOGG, Calibration, LabelCalibration

FACTORS = {"alpha_m": {"giant": 1.25, "dwarf": 0.8}}


def test_factors_follow_the_predicted_logg_and_survive_the_file(tmp_path):
    cal = Calibration(
        labels={"alpha_m": LabelCalibration(a=0.9, applied=True, method="scale")},
        by_class=FACTORS,
        by_class_provenance={"data": "val"},
    )
    logg = np.array([1.0, CLASS_SPLIT_LOGG - 1e-6, CLASS_SPLIT_LOGG, 4.4, np.nan])
    np.testing.assert_array_equal(cal.class_factor("alpha_m", logg), [1.25, 1.25, 0.8, 0.8, 1.0])
    np.testing.assert_array_equal(cal.class_factor("teff", logg), np.ones(5))  # no entry: 1
    path = cal.save(tmp_path / "calibration.json")
    d = json.loads(path.read_text())
    assert d["format_version"] == "6" and d["by_class"]["factors"] == FACTORS
    back = Calibration.load(path)
    assert back.by_class == FACTORS and back.by_class_provenance == {"data": "val"}
    assert back.labels == cal.labels
    # a file without factors is written as before (format 5 or lower) and reads with none
    plain = dataclasses.replace(cal, by_class={}, by_class_provenance={})
    assert "by_class" not in plain.to_dict() and plain.to_dict()["format_version"] == "2"
    for bad in ({"giant": 1.2}, {"giant": 1.2, "dwarf": 0.0}, {"giant": float("nan"), "dwarf": 1.0}):
        with pytest.raises(ValueError, match="by_class alpha_m"):
            Calibration(by_class={"alpha_m": bad})


def test_a_recalibrated_label_loses_its_class_factors():
    """Factors were fitted on the σ of the entry they sit on: a new entry for the label drops them."""
    old = Calibration(labels={"alpha_m": LabelCalibration(a=0.9, applied=True)}, by_class=FACTORS)
    new = Calibration(labels={"alpha_m": LabelCalibration(a=1.1, applied=True)})
    merged, record = old.updated(new)
    assert merged.by_class == {} and record["dropped_by_class"] == ["alpha_m"]
    other = Calibration(labels={"teff": LabelCalibration(a=1.1, applied=True)})
    merged, record = old.updated(other)
    assert merged.by_class == FACTORS and record["dropped_by_class"] == []


def test_one_class_factor_is_fitted_with_the_label_errors_and_left_at_one_inside_the_band():
    rng = np.random.default_rng(3)
    n = 4000
    sigma = rng.uniform(0.02, 0.04, n)
    label_err = np.full(n, 0.01)
    truth = rng.normal(0.1, 0.1, n)
    pred = truth + rng.normal(0, 1.3 * sigma) + rng.normal(0, label_err)  # σ 1.3× too small
    f, rec = fit_class_factor(pred, truth, sigma, label_err)
    assert rec["applied"] and f == pytest.approx(1.3, rel=0.05) and rec["z_spread_cal"] == pytest.approx(1.0)
    assert rec["z_spread"] == pytest.approx(1.3, rel=0.05) and rec["n"] == n
    near = truth + rng.normal(0, 1.05 * sigma) + rng.normal(0, label_err)  # inside 1 ± 0.1: left alone
    f, rec = fit_class_factor(near, truth, sigma, label_err)
    assert f == 1.0 and not rec["applied"]
    assert fit_class_factor(near, truth, sigma, label_err, policy="always")[0] == pytest.approx(
        1.05, rel=0.05
    )


def test_the_predictor_applies_the_factors_by_the_logg_it_predicts():
    from xpengine.inference.predictor import Predictor

    p = Predictor("apogee-xp")
    rng = np.random.default_rng(0)
    values = np.full((64, len(p.vocabulary)), np.nan, dtype=np.float32)
    for name in p.default_inputs:  # stars near the standardisation's centre, some giants, some dwarfs
        j = p.vocabulary.index(name)
        mu, sd = p.standardization.center[j], p.standardization.scale[j]
        values[:, j] = mu + sd * rng.normal(0, 1.5, 64)
    base = p.predict(values, request=["alpha_m", "logg"])
    p.calibration = dataclasses.replace(p.calibration or Calibration(), by_class=FACTORS)
    alone = p.predict(values, request=["alpha_m"])
    assert set(alone) == {"alpha_m", "alpha_m_error"}  # the logg it needed is not returned
    giant = base["logg"] < CLASS_SPLIT_LOGG
    assert giant.any() and (~giant).any()
    np.testing.assert_allclose(alone["alpha_m"], base["alpha_m"])
    np.testing.assert_allclose(alone["alpha_m_error"], base["alpha_m_error"] * np.where(giant, 1.25, 0.8))
    both = p.predict(values, request=["logg", "alpha_m"])
    np.testing.assert_allclose(both["logg_error"], base["logg_error"])  # no factor of its own
    np.testing.assert_allclose(both["alpha_m_error"], alone["alpha_m_error"])


def test_a_derived_label_follows_its_log_token_and_a_model_without_logg_is_refused(tmp_path):
    """Review of session 33: a factor on ln_age left age_error as it was, and a model that never learned
    logg would have picked the class from an untrained logg."""
    import shutil

    from xpengine.inference.predictor import Predictor
    from xpengine.model.checkpoint import resolve_model_path

    p = Predictor("gaia-xp")
    rng = np.random.default_rng(1)
    values = np.full((32, len(p.vocabulary)), np.nan, dtype=np.float32)
    for name in p.default_inputs:
        j = p.vocabulary.index(name)
        values[:, j] = p.standardization.center[j] + p.standardization.scale[j] * rng.normal(0, 1.0, 32)
    base = p.predict(values, request=["ln_age", "logg"])
    p.calibration = dataclasses.replace(p.calibration, by_class={"ln_age": {"giant": 2.0, "dwarf": 3.0}})
    got = p.predict(values, request=["ln_age"])
    f = np.where(base["logg"] < CLASS_SPLIT_LOGG, 2.0, 3.0)
    np.testing.assert_allclose(got["ln_age_error"], base["ln_age_error"] * f)
    np.testing.assert_allclose(got["age_error"], base["age_error"] * f)
    with pytest.raises(ValueError, match="by_class age: give the factor of its log token"):
        Calibration(by_class={"age": {"giant": 2.0, "dwarf": 3.0}})
    # a bundle whose model never learned logg cannot carry class factors
    src = resolve_model_path("apogee-xp")
    model = tmp_path / "no-logg"
    shutil.copytree(src, model)
    cfg = json.loads((model / "config.json").read_text())
    cfg["learned_outputs"] = [t for t in cfg["learned_outputs"] if t != "logg"]
    (model / "config.json").write_text(json.dumps(cfg))
    cal = Calibration.load(model)
    dataclasses.replace(cal, by_class=FACTORS).save(model, overwrite=True)
    with pytest.raises(ValueError, match="need the model's predicted logg, which it did not learn"):
        Predictor(model)
