"""Never emit what a model did not learn (issue 12, item 5).

The bundled `apogee-xp` was trained to predict teff, logg, m_h and alpha_m from XP coefficients and
colours only: it must refuse mass and age, and leave the E(B−V) and pseudo-luminosity tokens it never
read out of its context (with them its median Teff on the embedded sky was ~12,400 K). The bundled
`synthetic-sky` learned every label and input the catalogue uses.
"""

from __future__ import annotations

import dataclasses
import logging
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest
from _sky_inputs import sky_token_batch

from xpengine.catalog.flag_policy import DEFAULT_FLAG_POLICY
from xpengine.features.flags import SourceFlag, has_flag
from xpengine.inference.predictor import Predictor
from xpengine.pipeline.config import InferenceConfig, resolve_inputs, resolve_labels
from xpengine.pipeline.predictor_stage import CatalogPredictor

REPO = Path(__file__).resolve().parents[1]
SKY = files("xpengine") / "data" / "sky"
PARTITION = "000000-003111"
# the catalogue job's default inputs before they followed the model
OLD_JOB_INPUTS = ["bp0..27", "rp0..27", "bprp", "jh", "jk", "logebv", "g_fakemag"]
APOGEE_OUTPUTS = ("teff", "logg", "m_h", "alpha_m")
# the model's own mass and age everywhere (no isochrone mass and age outside its domain): calibration tests
MODEL_ONLY = dataclasses.replace(DEFAULT_FLAG_POLICY, mass_age_from_isochrones=False)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _sky_batch(model: str) -> dict[str, np.ndarray]:
    """One bundled-sky partition (1000 stars, with 2MASS and E(B−V)) as the job's token batch."""
    return sky_token_batch(model, PARTITION)


@pytest.fixture(scope="module")
def apogee_batch() -> dict[str, np.ndarray]:
    return _sky_batch("apogee-xp")


def _never_read(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "never read" in r.getMessage()]


def test_bundled_models_record_what_they_learned():
    apogee = Predictor.load("apogee-xp", device="cpu")
    assert apogee.learned.recorded and apogee.learned.outputs == APOGEE_OUTPUTS
    assert set(apogee.vocabulary.names) - set(apogee.learned.inputs) == {
        "logebv",
        "g_fakemag",
        "mass",
        "ln_age",
    }
    sky = Predictor.load("synthetic-sky", device="cpu")
    assert sky.learned.recorded and sky.learned.inputs == tuple(sky.vocabulary.names)
    # BP−RP and J−K were inputs only (not requestable), as in Leung & Bovy's training
    assert set(sky.vocabulary.names) - set(sky.learned.outputs) == {"bprp", "jk"}


def test_apogee_xp_refuses_mass_and_age(apogee_batch):
    p = Predictor.load("apogee-xp", device="cpu")
    assert p.default_request == list(APOGEE_OUTPUTS)
    values = apogee_batch["values"][:5]
    msg = r"model 'apogee-xp' was not trained to predict \['mass', 'ln_age'\].*learned to predict: teff, logg, m_h, alpha_m"
    with pytest.raises(ValueError, match=msg):
        p.predict(values, request=["teff", "mass", "ln_age"])
    with pytest.raises(ValueError, match=r"\['ln_age'\]"):
        p.perceive({"bp0": values[:, 0]}, request=["ln_age"])
    with pytest.raises(ValueError, match=r"\['mass'\]"):
        Predictor.load("apogee-xp", device="cpu", request=["mass"])
    out = p({"values": values})  # the Ray batch entry point answers the learned labels only
    assert {"teff", "alpha_m"} <= set(out) and "mass" not in out and "age" not in out


@pytest.mark.parametrize("labels", [["teff", "mass"], ["age"], ["teff", "logg", "m_h", "mass", "age"]])
def test_catalog_predictor_refuses_labels_apogee_xp_did_not_learn(labels):
    bad = [lab for lab in labels if lab in ("mass", "age")]
    with pytest.raises(
        ValueError,
        match=rf"model 'apogee-xp' was not trained to predict label\(s\) {bad!r}.*the labels it learned: teff, logg, m_h, alpha_m".replace(
            "[", r"\["
        ).replace("]", r"\]"),
    ):
        CatalogPredictor("apogee-xp", labels, device="cpu")


def test_apogee_xp_leaves_out_inputs_it_never_read(apogee_batch, caplog):
    """The job's former default inputs hold ln E(B−V) and g_fakemag: apogee-xp never read them, so
    they are dropped with one log line, and the Teff of the embedded sky is what the model gives
    without them (median near the sky's true Teff, not 12,400 K)."""
    values = apogee_batch["values"]
    col = {n: i for i, n in enumerate(Predictor.load("apogee-xp", device="cpu").names)}
    assert (
        np.isfinite(values[:, col["logebv"]]).sum() > 900
        and np.isfinite(values[:, col["g_fakemag"]]).sum() > 800
    )
    with caplog.at_level(logging.INFO):
        p = Predictor.load("apogee-xp", device="cpu")
        got = p.predict(values, request=["teff", "logg"], inputs=OLD_JOB_INPUTS)
        pred = CatalogPredictor("apogee-xp", ["teff", "logg", "m_h"], device="cpu", inputs=OLD_JOB_INPUTS)
    assert (
        _never_read(caplog)
        == [
            "model 'apogee-xp' never read input tokens logebv, g_fakemag in training: left out of its context"
        ]
        * 2
    )  # once per predictor
    ref = p.predict(values, request=["teff", "logg"], inputs=OLD_JOB_INPUTS[:5])
    np.testing.assert_array_equal(got["teff"], ref["teff"])
    np.testing.assert_array_equal(got["logg"], ref["logg"])
    assert "logebv" not in pred.inputs and "g_fakemag" not in pred.inputs and len(pred.inputs) == 59
    cat = pred(apogee_batch)
    # batch sizes differ (the actor calibrates its own): float32 rounding, 2e-7 relative on an AMD EPYC
    np.testing.assert_allclose(cat["teff"], ref["teff"].astype(np.float32), rtol=1e-5)
    import pyarrow.parquet as pq

    truth = pq.read_table(str(SKY / "truth.parquet"), columns=["source_id", "teff"]).to_pydict()
    true_teff = dict(zip(truth["source_id"], truth["teff"], strict=True))
    t = np.array([true_teff[s] for s in apogee_batch["source_id"]])
    assert abs(np.nanmedian(cat["teff"]) - np.median(t)) < 300.0, (np.nanmedian(cat["teff"]), np.median(t))
    # it learned no pseudo-luminosity output, so distances come from parallaxes only
    assert not pred.model_distance


def test_apogee_xp_job_defaults_follow_the_model(caplog):
    with caplog.at_level(logging.INFO, logger="xpengine.catalog.schema"):
        labels = resolve_labels(InferenceConfig(model="apogee-xp"))
    assert labels == ["teff", "logg", "m_h", "alpha_m"]
    assert (
        "model 'apogee-xp' did not learn mass, age: default labels teff, logg, m_h, alpha_m"
        in caplog.messages
    )
    inputs = resolve_inputs(InferenceConfig(model="apogee-xp"))
    assert inputs == [f"bp{i}" for i in range(30)] + [f"rp{i}" for i in range(30)] + ["bprp", "jh", "jk"]
    assert "logebv" not in resolve_inputs(InferenceConfig(model="apogee-xp", inputs=OLD_JOB_INPUTS))
    with pytest.raises(ValueError, match=r"not trained to predict label\(s\) \['mass'\]") as exc:
        resolve_labels(InferenceConfig(model="apogee-xp", labels=["teff", "mass"]))
    assert "\n" not in str(exc.value)
    pred = CatalogPredictor("apogee-xp", None, device="cpu")
    assert pred.labels == labels and pred.predictor.default_inputs == inputs


def test_synthetic_sky_still_predicts_everything(caplog):
    batch = _sky_batch("synthetic-sky")
    p = Predictor.load("synthetic-sky", device="cpu")
    request = ["teff", "logg", "m_h", "mass", "ln_age", "logebv", "g_fakemag", "jh", "bp0..54", "rp0..54"]
    out = p.predict(batch["values"][:50], request=request)
    assert np.isfinite(out["mass"]).all() and np.isfinite(out["rp54"]).all()
    cfg = InferenceConfig(model="synthetic-sky")
    with caplog.at_level(logging.INFO):
        assert resolve_labels(cfg) == ["teff", "logg", "m_h", "mass", "age"]
        inputs = resolve_inputs(cfg)
        pred = CatalogPredictor("synthetic-sky", None, device="cpu")
    assert not _never_read(caplog) and not [m for m in caplog.messages if "did not learn" in m]
    assert inputs == pred.predictor.default_inputs and "g_fakemag" in inputs and "logebv" in inputs
    assert pred.labels == ["teff", "logg", "m_h", "mass", "age"] and pred.model_distance
    cat = pred(batch)
    assert np.isfinite(cat["mass"]).mean() > 0.9 and np.isfinite(cat["age"]).mean() > 0.9


def test_tiny_sky_model_records_its_data(tiny_sky_model, sky_dir, tmp_path):
    """The conftest's freshly trained model: its record equals what its training split holds."""
    from xpengine.datasets.schema import read_training_set, write_training_set
    from xpengine.datasets.synthetic import build_synthetic
    from xpengine.model.checkpoint import load_checkpoint
    from xpengine.train.config import TrainConfig, expand_tokens

    write_training_set(build_synthetic(sky_dir).table, str(tmp_path / "sky.parquet"))
    tr = read_training_set(str(tmp_path / "sky.parquet"), split="train")
    names = tr.vocabulary.names
    requestable = expand_tokens(TrainConfig().requestable, tr.vocabulary)  # the fixture's setting
    finite = np.isfinite(tr.values)  # (N, T)
    finite = finite[finite[:, tr.vocabulary.indices(requestable)].any(axis=1)]
    seen = [n for n, ok in zip(names, finite.any(axis=0), strict=True) if ok]
    ck = load_checkpoint(tiny_sky_model)
    assert ck.learned.recorded and ck.vocabulary.names == names
    assert list(ck.learned.inputs) == seen
    assert list(ck.learned.outputs) == [n for n in seen if n in requestable]
    assert "bprp" in ck.learned.inputs and "bprp" not in ck.learned.outputs


def test_cli_refuses_unlearned_label_in_one_line(tmp_path):
    out = tmp_path / "x"
    res = subprocess.run(
        [
            sys.executable,
            str(REPO / "jobs" / "infer_gaia.py"),
            "--model",
            "apogee-xp",
            "--labels",
            "mass",
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**__import__("os").environ, "RAY_AUTH_MODE": "disabled"},
    )
    assert res.returncode == 2, res.stderr[-3000:]
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("infer_gaia: error:") and "Traceback" not in res.stderr
    assert "'apogee-xp' was not trained to predict label(s) ['mass']" in last
    assert "the labels it learned: teff, logg, m_h, alpha_m" in last
    assert not (out / "_SUMMARY.json").exists()


def test_catalogue_age_error_is_the_predictors_calibrated_age_error(tmp_path):
    """One rule for the linear age σ: the catalogue's age_error is `Predictor.predict`'s, including a
    linear-space age calibration (here a = 1.7, b = 0.4 Gyr, far from the identity), not exp(μ)·σ_ln_age."""
    import json
    import shutil

    from xpengine.inference.predictor import resolve_model_path

    model = tmp_path / "sky-cal"
    shutil.copytree(resolve_model_path("synthetic-sky"), model)
    cal = json.loads((model / "calibration.json").read_text())
    cal["labels"]["age"] = {**cal["labels"]["ln_age"], "a": 1.7, "b": 0.4, "applied": True, "unit": "Gyr"}
    (model / "calibration.json").write_text(json.dumps(cal))
    batch = _sky_batch("synthetic-sky")
    batch = {k: v[:200] for k, v in batch.items()}
    cat = CatalogPredictor(str(model), ["teff", "age"], device="cpu", flag_policy=MODEL_ONLY)(batch)
    p = Predictor.load(str(model), device="cpu")
    ref = p.predict(batch["values"], request=["teff", "ln_age"], inputs=list(p.default_inputs))
    ok = np.isfinite(cat["age"])
    assert ok.mean() > 0.9
    np.testing.assert_allclose(cat["age"][ok], ref["age"][ok], rtol=1e-5)
    np.testing.assert_allclose(cat["age_error"][ok], ref["age_error"][ok], rtol=1e-5)
    naive = ref["age"] * ref["ln_age_error"]  # the old catalogue rule
    assert np.all(np.abs(cat["age_error"][ok] / naive[ok] - 1) > 0.3)


def test_catalogue_sigma_follows_a_calibration_with_g_factors(tmp_path):
    """A format-2 calibration (σ map through knots, a factor per G bin): the catalogue passes each star's G, so
    its mass_error and age_error equal `Predictor.predict(..., g_mag=G)`'s; without G the factors are not applied."""
    import json
    import shutil

    from xpengine.inference.predictor import resolve_model_path

    model = tmp_path / "sky-gcal"
    shutil.copytree(resolve_model_path("gaia-xp"), model)
    cal = json.loads((model / "calibration.json").read_text())
    knots = {"sigma_knots": [0.05, 0.2, 0.6], "applied": True, "method": "sigma_binned+g"}
    g_bins = {"g_edges": [3.0, 13.0, 15.0, 21.0], "g_scales": [2.0, 1.0, 0.5]}
    cal["format_version"] = "2"
    cal.pop("sim_to_real", None)  # σ factors only here: the bundled file's sim-to-real term (format 4),
    cal.pop("all_orders", None)  # its every-order entries (format 5)
    for entry in cal["labels"].values():  # and its mean shifts are left out
        entry.pop("g_shifts", None)
        entry.pop("shift_kind", None)
    cal["labels"]["mass"] = {**knots, **g_bins, "sigma_cal_knots": [0.08, 0.25, 0.7], "unit": "Msun"}
    cal["labels"]["age"] = {**g_bins, "applied": True, "a": 1.3, "b": 0.2, "unit": "Gyr"}
    (model / "calibration.json").write_text(json.dumps(cal))
    batch = {k: v[:300] for k, v in _sky_batch("gaia-xp").items()}
    g = np.asarray(batch["phot_g_mean_mag"], dtype=np.float64)
    assert (g < 13).any() and (g > 15).any()
    cat = CatalogPredictor(str(model), ["mass", "age"], device="cpu", flag_policy=MODEL_ONLY)(batch)
    p = Predictor.load(str(model), device="cpu")
    values = batch["values"].copy()  # the catalogue leaves dwarfs' pseudo-luminosity out (PARALLAX_LEFT_OUT)
    left_out = has_flag(cat["flags"], SourceFlag.PARALLAX_LEFT_OUT)
    values[left_out, p.vocabulary.index("g_fakemag")] = np.nan
    ref = p.predict(values, request=["mass", "ln_age"], inputs=list(p.default_inputs), g_mag=g)
    no_g = p.predict(values, request=["mass", "ln_age"], inputs=list(p.default_inputs))
    ok = np.isfinite(cat["mass"])
    assert ok.mean() > 0.9
    np.testing.assert_allclose(cat["mass_error"][ok], ref["mass_error"][ok], rtol=1e-5)
    np.testing.assert_allclose(cat["age_error"][ok], ref["age_error"][ok], rtol=1e-5)
    bright, faint = ok & (g < 13), ok & (g > 15)
    np.testing.assert_allclose(ref["mass_error"][bright] / no_g["mass_error"][bright], 2.0, rtol=1e-6)
    np.testing.assert_allclose(ref["age_error"][faint] / no_g["age_error"][faint], 0.5, rtol=1e-6)


def test_outputs_are_asked_for_without_the_inputs_never_beside_them_in_training(caplog):
    """gaia-xp learned [M/H] and [α/M] from real stars only, which have no pseudo-luminosity, and
    g_fakemag from simulated stars only: [M/H] is asked for without g_fakemag in the context (with it,
    real metal-poor giants came out near −0.9 instead of −2.2), Teff and mass with it."""
    p = Predictor.load("gaia-xp", device="cpu")
    unseen = dict(p.learned.unseen_inputs)
    assert "g_fakemag" in unseen["m_h"] and "g_fakemag" in unseen["alpha_m"]
    assert "teff" not in unseen and "g_fakemag" not in unseen["mass"]
    batch = _sky_batch("gaia-xp")
    values = batch["values"][:300]
    with_fm = ["bp0..29", "rp0..29", "bprp", "jh", "jk", "g_fakemag"]
    without = with_fm[:-1]
    assert np.isfinite(values[:, p.vocabulary.index("g_fakemag")]).sum() > 100
    with caplog.at_level(logging.INFO, logger="xpengine.inference.predictor"):
        a = p.predict(values, None, ["teff", "m_h", "alpha_m", "mass"], inputs=with_fm)
    b = p.predict(values, None, ["teff", "m_h", "alpha_m", "mass"], inputs=without)
    np.testing.assert_allclose(a["m_h"], b["m_h"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a["alpha_m"], b["alpha_m"], rtol=1e-5, atol=1e-6)
    assert np.nanmax(np.abs(a["mass"] - b["mass"])) > 0.01  # mass reads the pseudo-luminosity
    assert "m_h asked for without g_fakemag" in caplog.text
    # asked alone, the same answer as asked beside the others
    c = p.predict(values, None, ["m_h"], inputs=with_fm)
    np.testing.assert_allclose(a["m_h"], c["m_h"], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"no context left for \['m_h'\]"):
        p.predict(values, None, ["m_h"], inputs=["g_fakemag"])
    # one encoder pass per group: g_fakemag is left out of [M/H]'s and [α/M]'s context
    assert p.encoder_passes(["teff", "m_h", "alpha_m", "mass"], p.select_inputs(with_fm)) == [
        (64, 2),
        (63, 2),
    ]


@pytest.mark.parametrize("bad", [["m_h"], {"m_h": "g_fakemag"}, {"m_h": ["no_such_token"]}, {"nope": []}])
def test_a_malformed_unseen_inputs_record_is_refused(tmp_path, bad):
    import json
    import shutil

    from xpengine.model.checkpoint import load_checkpoint

    model = tmp_path / "gaia-xp"
    shutil.copytree(Path(str(files("xpengine") / "data" / "models" / "gaia-xp")), model)
    config = json.loads((model / "config.json").read_text())
    config["inputs_unseen_with"] = bad
    (model / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="inputs_unseen_with must map learned outputs"):
        load_checkpoint(model)
