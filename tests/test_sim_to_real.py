"""The sim-to-real σ term (calibration format 4): its formula and file, the Predictor adding it for real stars
only, its fit (`training/fit_sim_to_real.py`), and the catalogue job's `sim_to_real_sigma` with what depends
on it (provenance, resume, the simulated-sky tools' refusal)."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _paths import load_script

from xpengine.catalog.schema import catalog_schema, catalogue_provenance, check_simulated_sky_sigma
from xpengine.model.calibration import Calibration, LabelCalibration, SimToReal


def test_sim_to_real_formula_knots_and_file_format(tmp_path) -> None:
    t = SimToReal((0.1, 0.5), (0.05, 0.3))
    np.testing.assert_allclose(t.extra([0.05, 0.1, 0.3, 0.5, 2.0]), [0.05, 0.05, 0.175, 0.3, 0.3])
    assert np.isnan(t.extra([np.nan]))[0]
    np.testing.assert_allclose(t.total(None, [0.3]), [np.hypot(0.3, 0.175)])
    rel = SimToReal((0.1, 0.5), (0.05, 0.3), relative=True)
    # value 2, σ 0.4: relative σ 0.2 → extra 0.05 + 0.25·0.25 = 0.1125, in the value's units ×2
    np.testing.assert_allclose(rel.total([2.0], [0.4]), [2.0 * np.hypot(0.2, 0.1125)])
    for knots, extras in (((0.5, 0.1), (0.1, 0.2)), ((0.1, 0.5), (0.1, -0.2)), ((0.1,), (0.1,))):
        with pytest.raises(ValueError, match="sim_to_real"):
            SimToReal(knots, extras)

    cal = Calibration(labels={"teff": LabelCalibration(a=2.0, applied=True)})
    assert cal.to_dict()["format_version"] == "2" and "sim_to_real" not in cal.to_dict()
    cal.sim_to_real = {"mass": rel, "ln_age": t}
    cal.sim_to_real_provenance = {"command": "python training/fit_sim_to_real.py ..."}
    cal.save(tmp_path)
    raw = json.loads((tmp_path / "calibration.json").read_text())
    assert raw["format_version"] == "4" and set(raw["sim_to_real"]["tokens"]) == {"mass", "ln_age"}
    again = Calibration.load(tmp_path)
    assert again.sim_to_real == cal.sim_to_real and again.labels == cal.labels
    assert again.sim_to_real_provenance == cal.sim_to_real_provenance
    # a token without a term is unchanged; the derived age takes ln_age's term relative to its value
    np.testing.assert_allclose(again.add_sim_to_real("teff", [5000.0], [50.0]), [50.0])
    np.testing.assert_allclose(
        again.add_sim_to_real_derived("ln_age", [5.0], [1.5]), [5.0 * np.hypot(0.3, 0.175)]
    )
    # a term keyed by the derived label itself wins over its log token's (E(B−V): `ebv`, not `logebv`)
    cal.sim_to_real["ebv"] = SimToReal((0.1, 0.5), (0.2, 0.2), relative=True)
    np.testing.assert_allclose(
        cal.add_sim_to_real_derived("logebv", [0.5], [0.15], derived="ebv"), [0.5 * np.hypot(0.3, 0.2)]
    )
    np.testing.assert_allclose(
        cal.add_sim_to_real_derived("ln_age", [5.0], [1.5], derived="age"), [5.0 * np.hypot(0.3, 0.175)]
    )


def test_merge_calibration_keeps_the_base_term() -> None:
    merge = load_script("training/merge_calibration.py", "merge_calibration").merge
    base = Calibration(
        labels={"teff": LabelCalibration(a=2.0, applied=True)},
        sim_to_real={"ln_age": SimToReal((0.1, 0.5), (0.05, 0.3))},
    )
    other = Calibration(labels={"teff": LabelCalibration(a=3.0, applied=True)})
    out = merge(base, other, ["teff"])
    assert out.labels["teff"].a == 3.0 and out.sim_to_real == base.sim_to_real


def _model_with_term(tiny_sky_model: str, dest) -> tuple[str, Calibration]:
    """A copy of the tiny model whose calibration.json has sim-to-real terms for mass and ln_age only."""
    import shutil

    shutil.copytree(tiny_sky_model, dest)
    cal = Calibration(
        labels={"teff": LabelCalibration(a=1.5, applied=True, unit="K")},
        sim_to_real={
            "mass": SimToReal((0.02, 0.5), (0.05, 0.2), relative=True),
            "ln_age": SimToReal((0.05, 1.0), (0.1, 0.4)),
            # keyed by the linear label: E(B−V)'s knots are in the calibrated relative σ of `ebv`
            "ebv": SimToReal((0.1, 2.0), (0.1, 0.5), relative=True),
        },
    )
    cal.save(dest, overwrite=True)
    return str(dest), cal


def test_predictor_adds_the_term_for_real_stars_only(tiny_sky_model, tmp_path) -> None:
    from xpengine.inference.predictor import Predictor

    model, cal = _model_with_term(tiny_sky_model, tmp_path / "m")
    p_real = Predictor.load(model, device="cpu")
    p_sim = Predictor.load(model, device="cpu", sim_to_real=False)
    assert p_real.sim_to_real and not p_sim.sim_to_real
    std = p_real.standardization
    rng = np.random.default_rng(3)
    values = (std.center + std.scale * rng.normal(0.0, 0.5, (40, len(p_real.vocabulary)))).astype(np.float32)
    req = ["teff", "mass", "ln_age", "logebv"]
    real = p_real.predict(values, None, req)
    sim = p_sim.predict(values, None, req)
    for k in ("teff", "mass", "ln_age", "age", "logebv", "ebv"):
        np.testing.assert_allclose(real[k], sim[k], rtol=1e-6)  # the means are untouched
    np.testing.assert_allclose(real["teff_error"], sim["teff_error"], rtol=1e-6)  # no term: as calibrated
    m, sm = sim["mass"], sim["mass_error"]
    np.testing.assert_allclose(
        real["mass_error"], m * np.hypot(sm / m, cal.sim_to_real["mass"].extra(sm / m))
    )
    sa = sim["ln_age_error"]
    np.testing.assert_allclose(real["ln_age_error"], np.hypot(sa, cal.sim_to_real["ln_age"].extra(sa)))
    a, s_age = sim["age"], sim["age_error"]
    np.testing.assert_allclose(
        real["age_error"], a * np.hypot(s_age / a, cal.sim_to_real["ln_age"].extra(s_age / a))
    )
    assert np.all(real["mass_error"] > sim["mass_error"]) and np.all(real["age_error"] > sim["age_error"])
    # E(B−V): the term keyed "ebv" reaches the linear ebv (relative); the uncalibrated logebv token has none
    e, se = sim["ebv"], sim["ebv_error"]
    np.testing.assert_allclose(real["ebv_error"], e * np.hypot(se / e, cal.sim_to_real["ebv"].extra(se / e)))
    np.testing.assert_allclose(real["logebv_error"], sim["logebv_error"], rtol=1e-6)
    assert np.all(real["ebv_error"] > sim["ebv_error"])
    # without its calibration (calibrate=False) there is no term either
    raw = Predictor.load(model, device="cpu", calibrate=False)
    assert not raw.sim_to_real


def test_fit_map_recovers_a_known_extra_per_sigma_bin() -> None:
    """Synthetic stars whose real − twin spread is √(null² + labels² + extra(σ)²) with a known extra that
    grows with σ: the equal-count σ bins give it back."""
    fit = load_script("training/fit_sim_to_real.py", "fit_sim_to_real")
    rng = np.random.default_rng(0)
    n = 40_000
    sigma = rng.uniform(0.05, 0.6, n)
    extra = 0.5 * sigma
    null, labels = 0.3 * sigma, 0.1 * sigma
    d = {
        "sigma": sigma,
        "real": rng.normal(0.0, np.sqrt(null**2 + labels**2 + extra**2)),
        "null": rng.normal(0.0, null),
        "labels": rng.normal(0.0, labels),
    }
    out = fit.fit_map(d, bins=8)
    knots, extras = np.asarray(out["sigma_knots"]), np.asarray(out["extra_knots"])
    assert np.all(np.diff(knots) > 0) and len(out["bins"]) == 8
    # within a bin σ (so the spread) varies: the robust spread of the mix is near the bin's median
    np.testing.assert_allclose(extras, 0.5 * knots, rtol=0.12)
    with pytest.raises(SystemExit, match="fewer --bins"):
        fit.fit_map({k: v[:1000] for k, v in d.items()}, bins=8)


def _catalogue_file(path, provenance: dict | None) -> None:
    schema = catalog_schema(["mass"], metadata=None if provenance is None else {"provenance": provenance})
    pq.write_table(
        pa.Table.from_pydict({f.name: pa.array([], type=f.type) for f in schema}, schema=schema), path
    )


def test_simulated_sky_tools_refuse_a_catalogue_with_the_term(tmp_path) -> None:
    for name, prov in (
        ("real", {"sim_to_real_applied": True}),
        ("sim", {"sim_to_real_applied": False}),
        ("old", None),
    ):
        (tmp_path / name).mkdir()
        _catalogue_file(tmp_path / name / "000000-003111.parquet", prov)
    assert catalogue_provenance(str(tmp_path / "real"))["sim_to_real_applied"] is True
    with pytest.raises(ValueError, match="--no-sim-to-real-sigma"):
        check_simulated_sky_sigma(str(tmp_path / "real"))
    check_simulated_sky_sigma(str(tmp_path / "sim"))
    check_simulated_sky_sigma(str(tmp_path / "old"))  # a catalogue from before the term: σ as calibrated
    with pytest.raises(FileNotFoundError, match="no catalogue partition"):
        catalogue_provenance(str(tmp_path))
    cos = load_script("training/calibrate_on_sky.py", "calibrate_on_sky")
    with pytest.raises(SystemExit, match="sim-to-real"):
        cos.main(["--catalogue", str(tmp_path / "real"), "--truth", "t.parquet", "--calibration", "c.json",
                  "--output", str(tmp_path / "o.json")])  # fmt: skip


def test_resume_refuses_a_catalogue_of_other_sigma(tmp_path) -> None:
    from xpengine.pipeline.identity import _identity_differences

    ident = {"model_sha256": "a" * 64, "labels": ["mass"], "schema": "s1"}
    sig = {"calibration_sha256": "c" * 64, "sim_to_real_applied": True}
    assert _identity_differences({**ident, "sigma": sig}, {**ident, "sigma": sig}) == []
    diff = _identity_differences(
        {**ident, "sigma": sig}, {**ident, "sigma": {**sig, "sim_to_real_applied": False}}
    )
    assert len(diff) == 1 and diff[0].startswith("σ")
    assert _identity_differences(ident, {**ident, "sigma": sig}) == []  # recorded before σ were: not refused


@pytest.mark.ray
@pytest.mark.slow
def test_job_writes_real_star_sigma_unless_told_the_sky_is_simulated(
    ray_local, tmp_path, sky_dir, tiny_sky_model
):
    from _sky_inputs import copy_sky

    from xpengine.pipeline.config import InferenceConfig
    from xpengine.pipeline.plan import JobError
    from xpengine.pipeline.ray_job import run_inference

    model, cal = _model_with_term(tiny_sky_model, tmp_path / "m")
    part = "000000-003111"
    copy_sky(sky_dir, tmp_path / "in", (part,))
    common = {"input": [str(tmp_path / "in")], "model": model, "labels": ["teff", "mass", "age"]}
    common |= {"tmass": os.path.join(sky_dir, "tmass.parquet"), "batch_size": 512, "progress_interval_s": 0.0}
    # the model's own mass and age for every star: the isochrones' (outside its domain) take no σ term
    common |= {"mass_age_from_isochrones": False}
    out_real, out_sim = tmp_path / "real", tmp_path / "sim"
    assert run_inference(InferenceConfig(output=str(out_real), **common)).ok
    assert run_inference(InferenceConfig(output=str(out_sim), sim_to_real_sigma=False, **common)).ok
    real, sim = (pq.read_table(o / f"{part}.parquet").to_pandas() for o in (out_real, out_sim))
    assert (real.source_id.to_numpy() == sim.source_id.to_numpy()).all()
    ok = np.isfinite(sim.mass.to_numpy())
    assert ok.sum() >= 900  # of the partition's 1000 sources
    for k in ("mass", "age", "teff", "teff_error"):
        np.testing.assert_allclose(real[k].to_numpy()[ok], sim[k].to_numpy()[ok], rtol=1e-5)
    m, sm = sim.mass.to_numpy()[ok], sim.mass_error.to_numpy()[ok]
    want = m * np.hypot(sm / m, cal.sim_to_real["mass"].extra(sm / m))
    np.testing.assert_allclose(real.mass_error.to_numpy()[ok], want, rtol=1e-4)
    assert np.all(real.age_error.to_numpy()[ok] > sim.age_error.to_numpy()[ok])
    prov_real, prov_sim = catalogue_provenance(str(out_real)), catalogue_provenance(str(out_sim))
    assert prov_real["sim_to_real_applied"] is True and prov_sim["sim_to_real_applied"] is False
    assert prov_sim["config"]["sim_to_real_sigma"] is False
    with pytest.raises(ValueError, match="sim-to-real"):
        check_simulated_sky_sigma(str(out_real))
    check_simulated_sky_sigma(str(out_sim))
    # resuming the real-star catalogue as a simulated sky would mix two kinds of σ: refused
    with pytest.raises(JobError, match="σ"):
        run_inference(InferenceConfig(output=str(out_real), sim_to_real_sigma=False, **common))
