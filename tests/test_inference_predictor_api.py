"""The Ray-free Predictor: physical units, derived age/E(B−V), missing inputs, batching, dtypes, the
named-column and Ray-batch entry points, and agreement with the training loop's validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xpengine.datasets.schema import read_training_set
from xpengine.inference.predictor import Predictor, available_models, resolve_model_path
from xpengine.model.standardize import robust_sigma
from xpengine.model.transformer import PRESETS
from xpengine.train.config import TrainConfig
from xpengine.train.loop import train
from xpengine.train.toy import write_toy_training_set

REQUEST = ["teff", "logg", "m_h", "mass", "ln_age", "logebv"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny model trained 8 epochs on 600 toy stars (10 BP + 10 RP tokens), and its data."""
    d = tmp_path_factory.mktemp("pred")
    path = write_toy_training_set(d / "toy.parquet", 600, seed=4, n_bp=10, n_rp=10)
    tr = read_training_set(str(path), split="train")
    va = read_training_set(str(path), split="val")
    cfg = TrainConfig(
        data_path=str(path),
        model=PRESETS["tiny"],
        epochs=8,
        batch_size=100,
        lr=3e-3,
        scheduler_t0=8,
        requestable=("teff", "logg", "m_h", "mass", "ln_age", "logebv"),
        val_every=8,
        checkpoint_every=8,
        device="cpu",
        precision="fp32",
    )
    result = train(cfg, tr, va, output_dir=d / "run")
    return result, va


def test_predictions_match_a_manual_forward_pass(trained):
    result, va = trained
    p = Predictor.load(result.model_dir, device="cpu")
    assert p.default_inputs == [f"bp{i}" for i in range(10)] + [f"rp{i}" for i in range(10)] + [
        "bprp",
        "jh",
        "jk",
    ]
    out = p.predict(va.values[:20], va.errors[:20], REQUEST)
    # Independent path: standardise, feed all valid inputs in vocabulary order, un-standardise.
    v, std, model = p.vocabulary, p.standardization, p.model
    cols = v.indices(p.default_inputs)
    z = (va.values[:20, cols] - std.center[cols]) / std.scale[cols]
    req = torch.tensor([v.token_id(n) for n in REQUEST]).expand(20, len(REQUEST))
    ids = torch.tensor(np.array(cols) + 1).expand(20, len(cols))
    res = model(ids, torch.tensor(z, dtype=torch.float32), req)
    rc = v.indices(REQUEST)
    mu = res.mean.detach().numpy() * std.scale[rc] + std.center[rc]
    sig = np.exp(0.5 * res.logvar.detach().numpy()) * std.scale[rc]
    for j, name in enumerate(REQUEST):
        np.testing.assert_allclose(out[name], mu[:, j], rtol=1e-5, atol=1e-6 * std.scale[rc[j]])
        np.testing.assert_allclose(out[f"{name}_error"], sig[:, j], rtol=1e-4)
        assert out[name].dtype == np.float64 and out[name].shape == (20,)
    np.testing.assert_allclose(out["age"], np.exp(out["ln_age"]))
    np.testing.assert_allclose(out["age_error"], out["age"] * out["ln_age_error"])
    np.testing.assert_allclose(out["ebv"], np.exp(out["logebv"]))
    np.testing.assert_allclose(out["ebv_error"], out["ebv"] * out["logebv_error"])


def test_agrees_with_the_loop_validation(trained):
    result, va = trained
    p = Predictor.load(result.model_dir, device="cpu")
    out = p.predict(va.values, request=["teff", "logg"])
    v = p.vocabulary
    for name in ("teff", "logg"):
        sigma = robust_sigma(va.values[:, v.index(name)] - out[name])
        assert sigma == pytest.approx(result.history[-1][f"val_sigma_{name}"], rel=1e-5)


def test_missing_inputs_batching_and_independence(trained):
    result, va = trained
    p = Predictor.load(result.model_dir, device="cpu", batch_size=7)
    x = va.values[:30].copy()
    x[3] = np.nan  # nothing at all
    x[4, p.vocabulary.indices(p.default_inputs)] = np.nan  # labels only, no inputs
    x[5, : p.vocabulary.index("bp3")] = np.nan  # partially missing
    out = p.predict(x, request=["teff", "mass"])
    assert np.isnan(out["teff"][[3, 4]]).all() and np.isnan(out["mass_error"][[3, 4]]).all()
    assert np.isfinite(out["teff"][np.r_[0:3, 5:30]]).all()
    # Batch size and the other requests do not change an answer.
    big = p.predict(x, request=["teff", "mass"], batch_size=1000)
    alone = p.predict(x, request=["mass"], batch_size=1000)
    np.testing.assert_allclose(big["teff"], out["teff"], rtol=1e-5, equal_nan=True)
    np.testing.assert_allclose(alone["mass"], out["mass"], rtol=1e-5, equal_nan=True)
    # Labels given as extra inputs are used when asked for (identity test of the paper, Fig. 4f).
    with_teff = p.predict(x, request=["teff"], inputs=["bp0..9", "rp0..9", "teff"])
    assert not np.allclose(with_teff["teff"][:3], out["teff"][:3])
    empty = p.predict(x[:0], request=["teff"])
    assert empty["teff"].shape == (0,)


def test_bfloat16_close_to_float32(trained):
    result, va = trained
    p32 = Predictor.load(result.model_dir, device="cpu")
    p16 = Predictor.load(result.model_dir, device="cpu", dtype="bfloat16")
    a, b = p32.predict(va.values[:50]), p16.predict(va.values[:50])
    scale = p32.standardization.scale[p32.vocabulary.index("teff")]
    np.testing.assert_allclose(b["teff"], a["teff"], atol=0.05 * scale)
    assert set(a) == set(b) == {
        "teff", "teff_error", "logg", "logg_error", "m_h", "m_h_error", "mass", "mass_error",
        "ln_age", "ln_age_error", "age", "age_error",
    }  # fmt: skip


def test_named_columns_and_ray_batches(trained):
    result, va = trained
    p = Predictor.load(result.model_dir, device="cpu", request=["teff", "ln_age"])
    x = va.values[:12]
    ref = p.predict(x)
    columns = {n: x[:, j] for j, n in enumerate(p.names) if n.startswith(("bp", "rp"))}
    columns["bprp_error"] = np.zeros(12)
    got = p.perceive(columns)
    cols_all = {n: x[:, j] for j, n in enumerate(p.names)}
    np.testing.assert_allclose(p.perceive(cols_all)["teff"], ref["teff"], rtol=1e-6)
    assert got["teff"].shape == (12,)
    with pytest.raises(ValueError, match=r"\['tef'\] are not tokens .* and bprp, jh, jk, teff"):
        p.perceive({"tef": x[:, 0], **columns})
    batch = {"source_id": np.arange(12), "values": x}
    out = p(batch)
    assert list(out)[:1] == ["source_id"] and np.array_equal(out["source_id"], np.arange(12))
    np.testing.assert_allclose(out["age"], ref["age"], rtol=1e-6)
    # Per-token columns (other columns ignored) and a 1-D object column of rows work too.
    out2 = p({"source_id": np.arange(12), "ra": np.zeros(12), **cols_all})
    np.testing.assert_allclose(out2["teff"], ref["teff"], rtol=1e-6)
    rows = np.empty(12, dtype=object)
    rows[:] = list(x)
    np.testing.assert_allclose(p({"values": rows})["teff"], ref["teff"], rtol=1e-6)


def test_errors_name_what_was_wrong(trained, tmp_path):
    result, va = trained
    p = Predictor.load(result.model_dir, device="cpu")
    with pytest.raises(ValueError, match=r"values must be \(N, 30\)"):
        p.predict(va.values[:, :5])
    with pytest.raises(ValueError, match="'radius' is not a token"):
        p.predict(va.values, request=["radius"])
    with pytest.raises(ValueError, match="errors shape"):
        p.predict(va.values, va.errors[:3])
    with pytest.raises(FileNotFoundError, match="bundled models"):
        resolve_model_path("no-such-model")
    assert "no-such-model" not in available_models()
    with pytest.raises(ValueError, match="dtype must be one of"):
        Predictor.load(result.model_dir, dtype="float16")


def _model_copy_and_three_stars(model, tmp_path):
    """(a copy of `model` to write a calibration into, its Predictor, three stars with BP−RP and J−K only)."""
    import shutil

    d = tmp_path / "model"
    shutil.copytree(model, d)
    raw = Predictor.load(d, device="cpu")
    values = np.full((3, len(raw.vocabulary)), np.nan, dtype=np.float32)
    values[:, raw.vocabulary.index("bprp")] = [1.0, 1.2, 1.4]
    values[:, raw.vocabulary.index("jk")] = [0.6, 0.7, 0.8]
    return d, raw, values


def test_predictor_applies_stored_calibration(tiny_sky_model, tmp_path):
    """A checkpoint's calibration.json rescales σ (and the derived age σ) unless calibrate=False."""

    from xpengine.evaluate.calibration import Calibration, LabelCalibration
    from xpengine.inference.predictor import Predictor

    d, raw, values = _model_copy_and_three_stars(tiny_sky_model, tmp_path)
    r = raw.predict(values, request=["teff", "ln_age"], inputs=["bprp", "jk"])
    # (a, b) and `applied` are all that `apply` reads; the fit's bookkeeping fields keep their defaults
    cal = Calibration(
        labels={
            "teff": LabelCalibration(a=2.0, b=30.0, applied=True, unit="K"),
            "ln_age": LabelCalibration(a=0.5, applied=True),
        }
    )
    cal.save(d)
    c = Predictor.load(d, device="cpu").predict(values, request=["teff", "ln_age"], inputs=["bprp", "jk"])
    np.testing.assert_allclose(c["teff_error"], np.sqrt((2 * r["teff_error"]) ** 2 + 30.0**2), rtol=1e-5)
    np.testing.assert_allclose(c["age_error"], 0.5 * r["age_error"], rtol=1e-5)
    np.testing.assert_allclose(c["teff"], r["teff"], rtol=1e-5)
    u = Predictor.load(d, device="cpu", calibrate=False).predict(
        values, request=["teff"], inputs=["bprp", "jk"]
    )
    np.testing.assert_allclose(u["teff_error"], r["teff_error"], rtol=1e-5)
    # With its own linear-space entry, age σ = that calibration of age · raw σ_ln_age (the ln_age
    # scaling no longer reaches it); ln_age σ keeps its own calibration.
    cal.labels["age"] = LabelCalibration(a=1.5, b=0.2, applied=True, unit="Gyr")
    cal.save(d, overwrite=True)
    c2 = Predictor.load(d, device="cpu").predict(values, request=["ln_age"], inputs=["bprp", "jk"])
    np.testing.assert_allclose(c2["age_error"], np.sqrt((1.5 * r["age_error"]) ** 2 + 0.2**2), rtol=1e-5)
    np.testing.assert_allclose(c2["ln_age_error"], 0.5 * r["ln_age_error"], rtol=1e-5)


def test_refuses_tokens_the_model_did_not_learn_to_predict(trained):
    """The toy model was trained to predict six labels: XP coefficients and g_fakemag were never
    requested in training, so every entry point refuses them, naming the token, the model and what
    it learned."""
    result, va = trained
    p = Predictor.load(result.model_dir, device="cpu")
    assert p.learned.outputs == ("teff", "logg", "m_h", "logebv", "mass", "ln_age")
    learned = r"it learned to predict: teff, logg, m_h, logebv, mass, ln_age"
    with pytest.raises(ValueError, match=r"model 'model' was not trained to predict \['bp0'\].*" + learned):
        p.predict(va.values[:3], request=["teff", "bp0"])
    with pytest.raises(ValueError, match=r"not trained to predict \['g_fakemag'\]"):
        p.perceive({"bp0": va.values[:3, 0]}, request=["g_fakemag"])
    with pytest.raises(ValueError, match=r"not trained to predict \['rp0', 'rp1'\]"):
        Predictor.load(result.model_dir, device="cpu", request=["rp0..1", "teff"])
    # the defaults are what it learned: its validation labels
    assert p.default_request == ["teff", "logg", "m_h", "mass", "ln_age"]
    assert set(p({"values": va.values[:3]})) >= {"teff", "age"}


def test_inputs_the_model_never_read_are_left_out(trained, tmp_path, caplog):
    """A context token without training values is left out, with one log line, and the predictions
    are those made without it."""
    import json
    import logging
    import shutil

    result, va = trained
    d = tmp_path / "no-jk"
    shutil.copytree(result.model_dir, d)
    config = json.loads((d / "config.json").read_text())
    config["learned_inputs"] = [n for n in config["learned_inputs"] if n not in ("jk", "jh")]
    (d / "config.json").write_text(json.dumps(config))
    p = Predictor.load(d, device="cpu")
    assert "jk" not in p.default_inputs and "bprp" in p.default_inputs
    x = va.values[:20]
    with caplog.at_level(logging.INFO, logger="xpengine.inference.predictor"):
        got = p.predict(x, request=["teff"], inputs=["bp0..9", "jk", "jh"])
        again = p.predict(x, request=["teff"], inputs=["bp0..9", "jk", "jh"])
    ref = p.predict(x, request=["teff"], inputs=["bp0..9"])
    np.testing.assert_array_equal(got["teff"], ref["teff"])
    np.testing.assert_array_equal(again["teff"], ref["teff"])
    dropped = [r.getMessage() for r in caplog.records if "never read" in r.getMessage()]
    assert dropped == ["model 'no-jk' never read input tokens jh, jk in training: left out of its context"]
    # another set left out (evaluate's random contexts make dozens) goes to DEBUG, not another warning
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="xpengine.inference.predictor"):
        p.predict(x, request=["teff"], inputs=["bp0..9", "jk"])
    (rec,) = [r for r in caplog.records if "never read" in r.getMessage()]
    assert rec.levelno == logging.DEBUG and "tokens jk in" in rec.getMessage()
    with pytest.raises(ValueError, match=r"none of the input tokens jk were read by model 'no-jk'"):
        p.predict(x, request=["teff"], inputs=["jk"])


def test_bfloat16_only_where_the_hardware_has_it(monkeypatch, caplog):
    """bf16 autocast is used only on CUDA ≥ 8.0 or CPUs with AVX512-BF16/AMX-BF16; elsewhere a bf16
    request falls back to float32 with a warning, and "auto" picks bf16 exactly where it is native."""
    import torch

    from xpengine.inference import precision
    from xpengine.inference import predictor as pmod

    cpu = torch.device("cpu")
    with open("/proc/cpuinfo") as f:
        flags = f.read()
    has = " avx512_bf16" in flags or " amx_bf16" in flags
    assert precision.native_bf16(cpu) == has  # this machine's answer, from its own CPU flags
    assert precision.effective_dtype("float32", cpu) == "float32"
    assert precision.effective_dtype("auto", cpu) == ("bfloat16" if has else "float32")
    monkeypatch.setattr(precision, "native_bf16", lambda device: False)
    with caplog.at_level("WARNING"):
        assert precision.effective_dtype("bfloat16", cpu) == "float32"
    assert "no native bf16" in caplog.text
    p = pmod.Predictor.load("apogee-xp", device="cpu", dtype="bfloat16")
    assert p.autocast_dtype == torch.float32
    monkeypatch.setattr(precision, "native_bf16", lambda device: True)
    assert pmod.Predictor.load("apogee-xp", device="cpu", dtype="auto").autocast_dtype == torch.bfloat16


def test_from_xp_on_the_solar_twin_18_sco():
    """`Predictor.from_xp` on real archive XP of 18 Sco alone (no G, no parallax): the catalogue's
    features (G from XP) and flags; astropy, pandas and pyarrow inputs agree; apogee-xp puts the star
    within 2σ of the literature (5810 K, logg 4.44, [Fe/H] +0.05; 18 Sco is not in its training set)."""
    from pathlib import Path

    from astropy.table import Table

    from xpengine import io
    from xpengine.inference.predictor import Predictor

    xp = io.read_xp_continuous(str(Path(__file__).parent / "data" / "gaia_xp" / "18Sco-XP-spectra.csv"))
    p = Predictor.load("apogee-xp", device="cpu")
    df = p.from_xp(xp)
    assert df["source_id"].tolist() == [4345775217221821312]
    r = df.iloc[0]
    assert "G_FROM_XP" in r["flag_names"] and "NO_PREDICTION" not in r["flag_names"]
    for label, lit in (("teff", 5810.0), ("logg", 4.44), ("m_h", 0.05)):
        assert abs(r[label] - lit) < 2 * r[f"{label}_error"], (label, r[label], r[f"{label}_error"])
    for other in (xp.to_pandas(), Table.from_pandas(xp.to_pandas())):
        np.testing.assert_allclose(
            p.from_xp(other)[["teff", "logg", "m_h"]].to_numpy(), df[["teff", "logg", "m_h"]].to_numpy()
        )
    with pytest.raises(ValueError, match="not trained to predict"):
        p.from_xp(xp, labels=["teff", "mass"])


def test_default_model_on_real_stars_of_known_type():
    """The default `gaia-xp` on real archive XP alone (neither star in any training set): the solar twin
    18 Sco within 2σ of the literature in Teff, logg, [M/H] and mass (the isochrones') and flagged outside
    the giants' mass/age domain, from its XP alone and with the G its file holds; Gaia DR3 5762406957886626816 (BP−RP ≈ −0.29) comes out hot, also flagged, and as heavy as a hot
    star must be."""
    from pathlib import Path

    from xpengine import io

    p = Predictor.load("gaia-xp", device="cpu")
    sco_file = str(Path(__file__).parent / "data" / "gaia_xp" / "18Sco-XP-spectra.csv")
    # XP alone (G from its XP), then with the G its file holds (the job's default reads it so)
    for with_g in (False, True):
        r = p.from_xp(io.read_xp_continuous(sco_file, with_gaia_source=with_g)).iloc[0]
        assert ("G_FROM_XP" in r["flag_names"]) is not with_g
        for label, lit in (("teff", 5810.0), ("logg", 4.44), ("m_h", 0.05), ("mass", 1.02)):
            assert abs(r[label] - lit) < 2 * r[f"{label}_error"], (
                with_g,
                label,
                r[label],
                r[f"{label}_error"],
            )
        assert "OUTSIDE_TRAINING_DOMAIN" in r["flag_names"] and np.isfinite(r["age"])
    samples = Path(__file__).parents[1] / "xpengine" / "data" / "gaia_dr3_samples"
    blue = p.from_xp(io.read_xp_continuous(str(samples / "XP_CONTINUOUS_RAW_with_missing_BP.ecsv")))
    b = blue[blue.source_id == 5762406957886626816].iloc[0]
    assert b["teff"] > 7000 and "OUTSIDE_TRAINING_DOMAIN" in b["flag_names"]
    # its mass is the isochrones', and its own BP−RP (from its XP) bounds them: a hot star's mass, not the
    # 0.75 M☉ the IMF gave it before session 22 with its Teff σ of 2,800 K
    assert "MASS_AGE_FROM_ISOCHRONES" in b["flag_names"] and "BP_RP_FROM_XP" in b["flag_names"]
    assert b["mass"] > 1.5, (b["mass"], b["mass_error"])


def test_predictor_applies_a_g_bin_mean_shift(tiny_sky_model, tmp_path):
    """Calibration format 3: mass · exp(shift) and ln_age + shift for the star's G bin; the derived age follows
    the shifted ln_age; without G nothing moves."""

    from xpengine.model.calibration import Calibration, LabelCalibration

    d, raw, values = _model_copy_and_three_stars(tiny_sky_model, tmp_path)
    ask = {"request": ["mass", "ln_age"], "inputs": ["bprp", "jk"]}
    r = raw.predict(values, **ask)
    edges, ones = (3.0, 13.0, 21.0), (1.0, 1.0)
    Calibration(
        labels={
            "mass": LabelCalibration(
                applied=True, g_edges=edges, g_scales=ones, g_shifts=(0.1, -0.2), shift_kind="log"
            ),
            "ln_age": LabelCalibration(applied=True, g_edges=edges, g_scales=ones, g_shifts=(-0.3, 0.25)),
        }
    ).save(d)
    g = np.array([10.0, 16.0, np.nan])
    c = Predictor.load(d, device="cpu").predict(values, g_mag=g, **ask)
    np.testing.assert_allclose(c["mass"], r["mass"] * np.exp([0.1, -0.2, 0.0]), rtol=1e-5)
    np.testing.assert_allclose(c["ln_age"], r["ln_age"] + np.array([-0.3, 0.25, 0.0]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(c["age"], np.exp(c["ln_age"]), rtol=1e-6)
    np.testing.assert_allclose(c["mass_error"], r["mass_error"], rtol=1e-5)  # σ untouched (factors 1)
    n = Predictor.load(d, device="cpu").predict(values, **ask)  # no G: no shift
    np.testing.assert_allclose(n["mass"], r["mass"], rtol=1e-6)
