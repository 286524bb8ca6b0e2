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


def _write_model(root, provenance):
    import json

    d = root / "model"
    d.mkdir()
    (d / "provenance.json").write_text(json.dumps({"data": {"dataset_provenance": provenance}}))
    return d


@pytest.mark.parametrize(
    ("provenance", "scale"),
    [
        ({"m_h_source": "fe_h", "origin": "apogee_xp"}, "fe_h"),
        ({"origin": "synthetic"}, "m_h"),
        ({}, None),
        (  # mixed, the simulated stars' m_h dropped: [M/H] learned from APOGEE FE_H only
            {
                "sources": {
                    "real": {"provenance": {"m_h_source": "fe_h"}},
                    "synthetic": {"provenance": {"origin": "synthetic"}},
                },
                "weighting": {"synthetic_dropped_tokens": ["m_h", "alpha_m"]},
            },
            "fe_h",
        ),
        (  # mixed with both kinds of [M/H] label: no single scale
            {
                "sources": {
                    "real": {"provenance": {"m_h_source": "fe_h"}},
                    "synthetic": {"provenance": {"origin": "synthetic"}},
                },
                "weighting": {"synthetic_dropped_tokens": ["alpha_m"]},
            },
            None,
        ),
    ],
)
def test_metallicity_scale_follows_the_training_labels(tmp_path, provenance, scale):
    from xpengine.model.metadata import metallicity_scale

    assert metallicity_scale(_write_model(tmp_path, provenance)) == scale


def test_bundled_models_metallicity_scales():
    from xpengine.model.metadata import metallicity_scale

    assert metallicity_scale("gaia-xp") == "fe_h"
    assert metallicity_scale("apogee-xp") == "fe_h"
    assert metallicity_scale("synthetic-sky") == "m_h"


def test_m_h_is_scored_against_the_learned_quantity(ssc, tmp_path, monkeypatch):
    """An α-rich population whose predictions are its true [Fe/H] exactly: no [M/H] error against [Fe/H], and
    the Salaris offset (≈ −0.2 dex at [α/Fe] = +0.3) against the total metallicity."""
    import json

    import pandas as pd

    rng = np.random.default_rng(5)
    n = 400
    fe_h = rng.normal(-0.5, 0.3, n)
    m_h = fe_h + np.log10(0.694 * 10.0**0.3 + 0.306)
    truth = pd.DataFrame(
        {
            "source_id": np.arange(n),
            "mass_true": np.full(n, 1.0),
            "age_gyr": rng.uniform(1, 12, n),
            "m_h_true": m_h,
            "fe_h": fe_h,
            "teff_true": np.full(n, 4600.0),
            "logg_true": np.full(n, 2.5),
            "evolutionary_state": ["rgb"] * n,
            "g": np.full(n, 12.0),
        }
    )
    cat = pd.DataFrame(
        {
            "source_id": np.arange(n),
            "teff": np.full(n, 4600.0),
            "teff_error": np.full(n, 50.0),
            "logg": np.full(n, 2.5),
            "logg_error": np.full(n, 0.1),
            "m_h": fe_h,
            "m_h_error": np.full(n, 0.1),
        }
    )
    monkeypatch.setattr(ssc, "_red_clump", lambda *a, **k: {})  # the preset is tested on real catalogues
    on_fe = ssc.check_catalogue(cat, truth, str(tmp_path), [6.0, 17.65], m_h_scale="fe_h")
    on_mh = ssc.check_catalogue(cat, truth, str(tmp_path), [6.0, 17.65], m_h_scale="m_h")
    assert on_fe["m_h_truth"] == "fe_h" and on_fe["giants_all"]["m_h"]["bias"] == pytest.approx(0.0)
    assert on_mh["giants_all"]["m_h"]["bias"] == pytest.approx(-np.log10(0.694 * 10.0**0.3 + 0.306))
    # the catalogue's _JOB.json names the model whose scale is used
    (tmp_path / "_JOB.json").write_text(json.dumps({"model": "xpengine/data/models/gaia-xp"}))
    assert ssc.catalogue_metallicity_scale(str(tmp_path)) == "fe_h"
    (tmp_path / "_JOB.json").write_text(json.dumps({"model": "synthetic-sky"}))
    assert ssc.catalogue_metallicity_scale(str(tmp_path)) == "m_h"


def test_the_catalogue_provenance_says_what_m_h_measures():
    """The job records its model's metallicity scale beside the σ record (`_model_provenance`)."""
    from xpengine.pipeline.identity import _model_provenance

    assert _model_provenance("gaia-xp")["m_h_scale"] == "fe_h"
    assert _model_provenance("synthetic-sky")["m_h_scale"] == "m_h"


def test_domain_flag_checks_count_against_the_truth(ssc):
    from xpengine.features.flags import SourceFlag

    out, left = int(SourceFlag.OUTSIDE_TRAINING_DOMAIN), int(SourceFlag.PARALLAX_LEFT_OUT)
    # rows: a giant kept, a giant flagged, a dwarf flagged with its parallax left out, a dwarf kept (a leak)
    flags = np.array([0, out, out | left, 0], dtype=np.int64)
    in_domain = np.array([True, True, False, False])
    d = ssc.domain_flag_checks(flags, in_domain, np.array([2.5, 3.0, 4.5, 4.4]))
    assert d["n_not_flagged_outside"] == 2 and d["purity_not_flagged_outside"] == pytest.approx(0.5)
    assert d["n_in_domain"] == 2 and d["in_domain_flagged_outside"] == pytest.approx(0.5)
    assert d["parallax_left_out_giants"] == 0
    assert d["n_dwarfs"] == 2 and d["parallax_left_out_dwarfs"] == pytest.approx(0.5)
