"""Generative and probing tasks on the tiny model trained on the bundled sky (`tiny_sky_model`, a plumbing
fixture: its predictions mean nothing, so these tests check shapes, units, finiteness and the files
written; the numbers themselves are tested with a perfect oracle model in test_tasks_pure.py)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from xpengine.features.normalise import g_mag_to_flux
from xpengine.tasks.cli import register
from xpengine.tasks.common import load_predictor
from xpengine.tasks.data import load_stars
from xpengine.tasks.extinction import model_extinction_curve
from xpengine.tasks.generative import label_sequences, spectra_from_labels
from xpengine.tasks.label_grid import label_grid
from xpengine.tasks.probing import attention_maps, encode_stars
from xpengine.tasks.reconstruction import inpaint, reconstruct_from_labels
from xpengine.tasks.runner import OUTPUTS

PNG = b"\x89PNG\r\n\x1a\n"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def predictor(tiny_sky_model):
    return load_predictor(tiny_sky_model, device="cpu", batch_size=64)


@pytest.fixture(scope="module")
def sky_parquet(tmp_path_factory, sky_dir) -> str:
    """The bundled sky's survey stars as a training-schema file (69 stars; all splits used as 'test')."""
    from xpengine.datasets.schema import write_training_set
    from xpengine.datasets.synthetic import build_synthetic

    path = tmp_path_factory.mktemp("tasks_data") / "sky.parquet"
    write_training_set(build_synthetic(sky_dir).table, str(path))
    return str(path)


@pytest.fixture(scope="module")
def stars(predictor, sky_parquet):
    return load_stars(sky_parquet, predictor.vocabulary, split=None)


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    args = parser.parse_args(argv)
    return args.func(args)


def test_spectra_from_labels_shapes_and_units(predictor) -> None:
    gen = spectra_from_labels(
        predictor,
        {"teff": [4500.0, 4800.0], "logg": 2.4, "m_h": [0.0, -0.5], "mass": 1.2, "age": 4.5, "ebv": 0.1},
    )
    assert gen.inputs == ["teff", "logg", "m_h", "mass", "ln_age", "logebv"]
    assert gen.coefficients.shape == gen.coefficient_errors.shape == (2, 110)
    assert gen.flux.shape == gen.flux_error.shape == gen.flux_10pc.shape == (2, 343)
    assert gen.wavelength_nm[0] == 336.0 and gen.wavelength_nm[-1] == 1020.0
    assert np.isfinite(gen.coefficients).all() and np.isfinite(gen.flux).all() and (gen.flux_error > 0).all()
    # coefficients the model learned carry a σ; those it never learned (this tiny model's training stars
    # had no rp41..54) are truncated to 0 with σ 0 instead of being answered from untrained weights
    learned = np.isin(gen.coefficient_names, predictor.learned.outputs)
    assert (gen.coefficient_errors[:, learned] > 0).all()
    assert (gen.coefficients[:, ~learned] == 0).all() and (gen.coefficient_errors[:, ~learned] == 0).all()
    # absolute flux at 10 pc = G-normalised flux × the G flux of a star of apparent magnitude M_G
    ok = np.isfinite(gen.abs_g)
    np.testing.assert_allclose(gen.abs_g[ok], 5 * (np.log10(gen.g_fakemag[ok]) - 2), rtol=1e-12)
    np.testing.assert_allclose(
        gen.flux_10pc[ok], gen.flux[ok] * g_mag_to_flux(gen.abs_g[ok])[:, None], rtol=1e-12
    )
    # a given pseudo-luminosity is used as it is (not requested)
    given = spectra_from_labels(predictor, {"teff": 4700.0, "abs_g": 0.5})
    assert given.inputs == ["teff", "g_fakemag"]
    assert given.abs_g[0] == pytest.approx(0.5) and given.g_fakemag_error[0] == 0.0
    assert given.flux_10pc[0, 100] == pytest.approx(given.flux[0, 100] * 10 ** ((25.6873668671 - 0.5) / 2.5))


def test_label_sequences(predictor) -> None:
    res = label_sequences(predictor)
    assert [s.vary for s, _ in res] == ["mass", "age", "m_h"]
    for seq, gen in res:
        assert gen.flux.shape == (len(seq.values), 343) and np.isfinite(gen.flux).all()


def test_reconstruction_and_inpainting_on_the_tiny_model(predictor, stars) -> None:
    rec = reconstruct_from_labels(predictor, stars)
    assert rec.observed.shape == rec.generated.shape == (len(stars), 343)
    has_labels = np.isfinite(stars.column("teff"))
    assert np.isfinite(rec.rmse[has_labels]).all() and (rec.rmse[has_labels] > 0).all()
    assert np.isfinite(rec.extras["nn_distance_pc"]).any()
    assert rec.residual_percentiles().shape == (3, 343)
    for direction in ("rp_to_bp", "bp_to_rp"):
        r = inpaint(predictor, stars, direction)
        assert np.isfinite(r.rmse).sum() == len(stars)
        assert r.pixels.sum() == (152 if direction == "rp_to_bp" else 191)


def test_label_grid_on_the_tiny_model(predictor) -> None:
    g = label_grid(predictor, logg=np.array([1.0, 2.5]), m_h=np.array([-1.0, 0.0, 0.5]))
    k = g.kiel
    assert k["logg"].tolist() == [1.0, 1.0, 1.0, 2.5, 2.5, 2.5]
    for key in (
        "teff",
        "teff_error",
        "abs_g",
        "log_lg",
        "mass",
        "age",
        "mass_with_teff",
        "age_error_with_teff",
    ):
        assert k[key].shape == (6,), key
    assert np.isfinite(k["teff"]).all() and (k["teff_error"] > 0).all()
    np.testing.assert_allclose(k["age"], np.exp(k["ln_age"]))
    assert (g.slice["age_lo"] < g.slice["age"]).all() and (g.slice["age"] < g.slice["age_hi"]).all()
    assert set(g.summary()) >= {"teff_range_k", "slice_age_gyr_at_m_h_-2.0", "median_mass_error_with_teff"}


def test_extinction_curve_on_the_tiny_model(predictor) -> None:
    res = model_extinction_curve(predictor)
    assert res.curves.shape == (16, 3, 343)
    assert res.reference.shape == (16, 343) and res.reddened.shape == (16, 3, 343)
    assert res.absolute
    assert res.logg[0] == 1.0 and res.logg[-1] == 2.5
    assert sorted(res.f99) == [2.1, 3.1, 4.1, 5.1]
    with pytest.raises(ValueError, match="above ebv_ref"):
        model_extinction_curve(predictor, ebv=(0.005,))


def test_attention_maps(predictor) -> None:
    maps = attention_maps(predictor)
    q, k = len(maps.requests), len(maps.context)
    assert maps.context == ["teff", "logg", "m_h", "mass", "ln_age", "logebv", "bias"]
    assert maps.low.shape == maps.high.shape == (q, k)
    assert maps.per_block.shape == (3, 2, q, k)  # tiny preset: 3 decoder blocks
    np.testing.assert_allclose(maps.low.sum(axis=1), 1.0, rtol=1e-5)  # softmax over keys
    np.testing.assert_allclose(
        maps.per_block.mean(axis=0)[1] - maps.per_block.mean(axis=0)[0], maps.difference
    )
    assert np.abs(maps.difference).max() > 0  # E(B−V) changed the logebv token's embedding
    assert set(maps.predictions) == {"low", "high"}


def test_embeddings_match_the_encoder_output(predictor, stars) -> None:
    import torch

    emb = encode_stars(predictor, stars.values)
    assert emb.embedding.shape == (len(stars), predictor.model.config.d_model)
    assert emb.inputs[:2] == ["bp0", "bp1"] and len(emb.inputs) == 64
    assert np.isfinite(emb.embedding).all() and (emb.n_context > 0).all()
    # star 0 through the full forward pass with return_context: mean over its valid tokens
    cols = [c for c in predictor.vocabulary.indices(emb.inputs) if np.isfinite(stars.values[0, c])]
    z, _ = predictor.standardization.transform(stars.values[:1])
    with torch.inference_mode():
        out = predictor.model(
            torch.tensor([[c + 1 for c in cols]]),
            torch.from_numpy(z[:, cols]),
            torch.tensor([[1]]),
            return_context=True,
        )
    np.testing.assert_allclose(emb.embedding[0], out.context[0].mean(dim=0).numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_figures_command_writes_every_file(tiny_sky_model, sky_parquet, tmp_path, monkeypatch) -> None:
    """Every task file and figure; the evaluation report is delegated to `run_evaluation` (its figures take
    ~10 s and are tested by the evaluate area), so here a stand-in checks the call against its signature."""
    import inspect

    import xpengine.evaluate.evaluation as evaluate_cli

    real = evaluate_cli.run_evaluation
    calls = []

    def fake_run_evaluation(*args, **kwargs):
        calls.append(inspect.signature(real).bind(*args, **kwargs).arguments)
        (Path(args[2]) / "one_to_one.png").parent.mkdir(parents=True, exist_ok=True)
        (Path(args[2]) / "one_to_one.png").write_bytes(PNG)
        return {"files": ["one_to_one.png"]}

    monkeypatch.setattr(evaluate_cli, "run_evaluation", fake_run_evaluation)
    out = tmp_path / "figs"
    argv = ["figures", "--model", tiny_sky_model, "--data", sky_parquet, "--output", str(out), "--split", "train",
            "--max-stars", "40"]  # fmt: skip
    assert _run(argv) == 0
    assert len(calls) == 1
    assert calls[0]["model"] == tiny_sky_model and calls[0]["data"] == sky_parquet
    assert calls[0]["figures"] is True and calls[0]["split"] == "train" and calls[0]["max_stars"] == 40
    summary = json.loads((out / "figures.json").read_text())
    for task, files in OUTPUTS.items():
        for name in files if task != "spectra" else ():  # spectra from labels need labels: not a figure
            assert (out / name).is_file(), name
            if name.endswith(".png"):
                assert (out / name).read_bytes()[:8] == PNG
    assert summary["n_stars"] == 40
    assert summary["figures"] == [
        f"fig{i:02d}_" + n
        for i, n in enumerate(
            [
                "label_sequences.png",
                "reconstruction_gallery.png",
                "fractional_residuals.png",
                "rmse_vs_astrometry.png",
                "rmse_vs_labels.png",
                "inpainting_gallery.png",
                "kiel_grid.png",
                "mass_age_grid.png",
                "age_metallicity.png",
                "extinction_curve.png",
                "attention.png",
                "embedding_colours.png",
            ],
            start=7,
        )
    ]
    assert all("skipped" not in t for t in summary["tasks"].values()), summary["tasks"]
    assert summary["evaluation"] == {"directory": "evaluation", "files": ["one_to_one.png"]}
    rec = pq.read_table(out / "reconstruction.parquet")
    assert rec.num_rows == 40 and rec.schema.field("observed_flux").type.list_size == 343
    meta = json.loads(rec.schema.metadata[b"xpengine.task"])
    assert len(meta["wavelength_nm"]) == 343
    emb = pq.read_table(out / "embeddings.parquet")
    assert emb.schema.field("embedding").type.list_size == 16 and emb.column("source_id").type == "int64"
    colours = json.loads((out / "embedding_colours.json").read_text())["colours"]
    assert set(colours) == {"bprp", "jk"} and colours["bprp"]["n_test"] == 12
    recj = json.loads((out / "reconstruction.json").read_text())
    assert [g["percentile"] for g in recj["gallery"]] == [5, 25, 50, 75, 90, 99]
    # nothing is replaced without --overwrite
    with pytest.raises(FileExistsError, match="already exist"):
        _run(argv)


def test_subcommands(tiny_sky_model, sky_parquet, tmp_path) -> None:
    out = tmp_path / "one"
    assert _run(["spectra-from-labels", "--model", tiny_sky_model, "--output", str(out), "--teff", "4700",
                 "--logg", "2.5", "--age", "4.5", "--ebv", "0.2"]) == 0  # fmt: skip
    t = pq.read_table(out / "spectra_from_labels.parquet")
    assert t.num_rows == 1 and t.schema.field("flux_10pc").type.list_size == 343
    assert t.column("input_age").to_pylist() == [4.5]
    labels = tmp_path / "labels.csv"
    labels.write_text("name,teff,logg,m_h\nA,4500,2.0,0.0\nB,4900,2.8,-0.6\n")
    out2 = tmp_path / "two"
    assert _run(["spectra-from-labels", "--model", tiny_sky_model, "--output", str(out2), "--labels", str(labels),
                 "--sequences", "--no-figures"]) == 0  # fmt: skip
    assert pq.read_table(out2 / "spectra_from_labels.parquet").column("name").to_pylist() == ["A", "B"]
    assert (out2 / "label_sequences.parquet").is_file() and not (out2 / "fig07_label_sequences.png").exists()
    bad = tmp_path / "bad.csv"
    bad.write_text("temperature\n4500\n")
    with pytest.raises(ValueError, match=r"columns \['temperature'\] are not labels"):
        _run(["spectra-from-labels", "--model", tiny_sky_model, "--output", str(out2), "--labels", str(bad)])
    out3 = tmp_path / "three"
    assert _run(["extinction-curve", "--model", tiny_sky_model, "--output", str(out3), "--ebv", "0.5",
                 "--ebv-scale", "0.884", "--teff-relation", "paper", "--no-figures"]) == 0  # fmt: skip
    ext = json.loads((out3 / "extinction_curve.json").read_text())
    assert ext["ebv"] == [0.5] and ext["ebv_scale"] == 0.884
    assert ext["grid"]["teff"][-1] == pytest.approx(5200 - 441.86 * 1.15)
    out4 = tmp_path / "four"
    assert _run(["embed", "--model", tiny_sky_model, "--data", sky_parquet, "--split", "train", "--output",
                 str(out4), "--inputs", "bp0..9,rp0..9", "--no-figures"]) == 0  # fmt: skip
    meta = json.loads(pq.read_table(out4 / "embeddings.parquet").schema.metadata[b"xpengine.task"])
    assert len(meta["inputs"]) == 20
