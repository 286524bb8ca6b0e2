"""`benchmarks/compare_models.py` end to end: a tiny model trained for 2 epochs, the bundled `apogee-xp`
model and a 5-tree XGBoost baseline on a small training-schema file whose true labels fill every
population (giants, metal-poor giants, dwarfs, hot stars, and stars in none of them).

The tiny model is not trained on alpha_m and `apogee-xp` never learned mass or ln_age: those cells must
come out missing. Numbers are checked against the Predictor's own output and `calibration.json`,
recomputed here without the script's helpers.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from _paths import load_script

from xpengine.datasets.schema import read_training_set, training_table, write_training_set
from xpengine.features.vocabulary import paper_vocabulary
from xpengine.inference.predictor import Predictor
from xpengine.model.checkpoint import load_checkpoint, resolve_model_path
from xpengine.model.transformer import PRESETS
from xpengine.train.config import TrainConfig
from xpengine.train.loop import train

VOCAB = paper_vocabulary().with_tokens(["alpha_m"])
LABELS = ("teff", "logg", "m_h", "alpha_m", "mass", "ln_age")
LABEL_ERRORS = {"teff": 50.0, "logg": 0.05, "m_h": 0.02, "alpha_m": 0.02, "mass": 0.1, "ln_age": 0.1}
TINY_LABELS = ("teff", "logg", "m_h", "mass", "ln_age")  # no alpha_m
STANDARD_INPUT = [f"bp{i}" for i in range(30)] + [f"rp{i}" for i in range(30)] + ["bprp", "jh", "jk"]
POPULATIONS = ("all", "giants", "dwarfs", "hot", "metal_poor_giants")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _load_script():
    return load_script("benchmarks/compare_models.py", "compare_models")


compare_models = _load_script()


def _true_labels(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Giants (45 %), dwarfs (30 %), hot stars (15 %) and hot subgiants (10 %, in no population);
    a quarter metal-poor; age anti-correlated with [M/H]; 5 % of each label missing."""
    kind = rng.choice(4, size=n, p=[0.45, 0.3, 0.15, 0.1])
    which = [kind == 0, kind == 1, kind == 2]
    out = {
        "teff": np.select(
            which,
            [rng.uniform(3800, 5400, n), rng.uniform(4000, 6900, n), rng.uniform(7200, 9000, n)],
            default=rng.uniform(5600, 6900, n),
        ),
        "logg": np.select(
            which,
            [rng.uniform(1.0, 3.3, n), rng.uniform(3.7, 4.8, n), rng.uniform(3.6, 4.5, n)],
            default=rng.uniform(2.5, 3.4, n),
        ),
        "m_h": np.where(rng.random(n) < 0.25, rng.uniform(-2.0, -1.1, n), rng.uniform(-0.8, 0.4, n)),
        "alpha_m": rng.uniform(-0.05, 0.3, n),
        "mass": rng.uniform(0.8, 2.5, n),
    }
    out["ln_age"] = 1.0 - 0.5 * out["m_h"] + rng.normal(0.0, 0.3, n)
    for v in out.values():
        v[rng.random(n) < 0.05] = np.nan
    return out


def _write_dataset(path: Path, n: int = 700, seed: int = 0) -> None:
    """XP coefficients and colours: a fixed random linear mix of the standardised labels plus noise."""
    rng = np.random.default_rng(seed)
    labels = _true_labels(rng, n)
    lab = np.stack([labels[k] for k in LABELS], axis=1)  # (N, 6)
    u = np.nan_to_num((lab - np.nanmean(lab, axis=0)) / np.nanstd(lab, axis=0))  # (N, 6) standardised
    values = np.full((n, len(VOCAB)), np.nan)  # (N, T)
    errors = np.zeros((n, len(VOCAB)))
    obs = [i for i, t in enumerate(VOCAB.tokens) if t.kind in ("xp", "colour")]
    values[:, obs] = u @ rng.normal(0.0, 0.5, (len(LABELS), len(obs))) + rng.normal(0.0, 0.05, (n, len(obs)))
    errors[:, obs] = 0.05
    no_2mass = rng.random(n) < 0.05
    values[no_2mass, VOCAB.index("jh")] = np.nan
    values[no_2mass, VOCAB.index("jk")] = np.nan
    for k in LABELS:
        j = VOCAB.index(k)
        values[:, j] = labels[k]
        errors[:, j] = np.where(np.isfinite(labels[k]), LABEL_ERRORS[k], 0.0)
    g_mag = rng.uniform(8.0, 17.7, n)
    g_mag[-2:] = [11.0, 17.7]  # test stars on bin edges
    split = np.array(["train"] * (n * 4 // 7) + ["val"] * (n // 7) + ["test"] * (n - n * 4 // 7 - n // 7))
    table = training_table(
        np.arange(n, dtype=np.int64) + 1,
        values.astype(np.float32),
        errors.astype(np.float32),
        VOCAB,
        split=split,
        origin="toy",
        extra={"phot_g_mean_mag": g_mag},
    )
    write_training_set(table, str(path))


def _apogee_xp_matches() -> bool:
    return load_checkpoint(resolve_model_path("apogee-xp")).vocabulary.names == VOCAB.names


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("compare") / "stars.parquet"
    _write_dataset(path)
    return path


@pytest.fixture(scope="module")
def tiny_model(data, tmp_path_factory) -> str:
    cfg = TrainConfig(
        data_path=str(data),
        model=PRESETS["tiny"],
        epochs=2,
        batch_size=128,
        lr=3e-3,
        scheduler_t0=2,
        requestable=TINY_LABELS,
        val_every=2,
        checkpoint_every=2,
        device="cpu",
        precision="fp32",
    )
    tr, va = read_training_set(str(data), split="train"), read_training_set(str(data), split="val")
    return str(train(cfg, tr, va, output_dir=tmp_path_factory.mktemp("tiny") / "run").model_dir)


@pytest.fixture(scope="module")
def models(tiny_model) -> list[str]:
    return [tiny_model, "apogee-xp"] if _apogee_xp_matches() else [tiny_model]


@pytest.fixture(scope="module")
def run(data, models, tmp_path_factory) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("compare_out")
    argv = ["--data", str(data), "--split", "test", "--models", *models, "--baseline-train", str(data)]
    argv += ["--baseline-estimators", "5", "--device", "cpu", "--json", str(out / "r.json")]
    argv += ["--markdown", str(out / "r.md")]
    assert compare_models.main(argv) == 0
    return json.loads((out / "r.json").read_text()), (out / "r.md").read_text()


@pytest.fixture(scope="module")
def test_rows(data) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """True labels (N,) of the test split and its G magnitudes (N,)."""
    arrays = read_training_set(str(data), split="test")
    g = pq.read_table(str(data), columns=["phot_g_mean_mag"], filters=[("split", "=", "test")])
    truth = {k: arrays.values[:, arrays.vocabulary.index(k)].astype(np.float64) for k in LABELS}
    return truth, g.column("phot_g_mean_mag").to_numpy()


def _masks(truth: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    t, g, m = truth["teff"], truth["logg"], truth["m_h"]
    giants = (g < 3.5) & (t > 3500) & (t < 5500)
    return {
        "all": np.ones(len(t), dtype=bool),
        "giants": giants,
        "dwarfs": (g >= 3.5) & (t <= 7000),
        "hot": t > 7000,
        "metal_poor_giants": giants & (m < -1),
    }


def _predict(model: str, data: Path, request: list[str], *, calibrate: bool = True) -> dict[str, np.ndarray]:
    p = Predictor.load(model, device="cpu", calibrate=calibrate)
    arrays = read_training_set(str(data), split="test")
    assert arrays.vocabulary.names == p.vocabulary.names
    return p.predict(arrays.values, arrays.errors, request, inputs=STANDARD_INPUT)


def _robust_sigma(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return 1.4826 * float(np.median(np.abs(x - np.median(x))))


def test_json_records_the_run_and_every_model_population_and_label(run, data, models):
    result, _ = run
    assert result["command"].split()[1:3] == ["--data", str(data)]
    assert result["machine"]["cpu_count"] >= 1 and result["machine"]["platform"]
    assert result["date_utc"].endswith("+00:00")
    assert result["data"]["sha256"] == hashlib.sha256(data.read_bytes()).hexdigest()
    assert result["data"]["n_stars"] == 200 and result["data"]["g_column"] == "phot_g_mean_mag"
    assert set(result["data"]["in_bundled_dev_split"]) == {"train", "val", "test"}
    assert result["labels"] == ["teff", "logg", "m_h", "alpha_m", "mass", "age", "ln_age"]
    assert result["labels_without_truth"] == []
    assert list(result["metrics"]) == [*models, "xgboost"]
    for name, pops in result["metrics"].items():
        assert list(pops) == list(POPULATIONS), name
        for pop, block in pops.items():
            assert list(block) == result["labels"], (name, pop)
    teff = result["metrics"][models[0]]["giants"]["teff"]
    assert {"n", "sigma", "bias", "z_sigma"} <= set(teff) and teff["sigma"] > 0 and teff["z_sigma"] > 0
    xgb = result["metrics"]["xgboost"]["all"]["teff"]
    assert xgb["sigma"] > 0 and xgb["z_sigma"] is None  # no σ for the baseline
    assert result["models"]["xgboost"]["config"]["n_estimators"] == 5
    assert result["by_g"]["edges"] == [8.0, 11.0, 12.0, 13.0, 14.0, 15.0, 17.7]
    for name in result["metrics"]:
        assert list(result["by_g"]["models"][name]) == ["all", "giants"]


def test_populations_are_the_defined_cuts_on_the_true_labels(run, models, test_rows):
    result, _ = run
    truth, g_mag = test_rows
    masks = _masks(truth)
    assert {k: v["n_stars"] for k, v in result["populations"].items()} == {
        k: int(m.sum()) for k, m in masks.items()
    }
    assert all(int(masks[p].sum()) >= 5 for p in POPULATIONS)  # the data exercise every population
    covered = masks["giants"] | masks["dwarfs"] | masks["hot"]
    assert (~covered).sum() > 0  # stars in no population but "all" exist and are left out of them
    # per label, n = stars of the population with a true value (the tiny model predicts every star)
    for pop, m in masks.items():
        assert result["metrics"][models[0]][pop]["logg"]["n"] == int((m & np.isfinite(truth["logg"])).sum())
    # G bins [lo, hi), the last one closed: as numpy's histogram
    for pop in ("all", "giants"):
        bins = result["by_g"]["models"][models[0]][pop]
        counts, _ = np.histogram(g_mag[masks[pop]], bins=result["by_g"]["edges"])
        assert [b["n_stars"] for b in bins] == counts.tolist()
    assert sum(b["n_stars"] for b in result["by_g"]["models"][models[0]]["all"]) == len(g_mag)


def test_population_edges():
    nan = np.nan
    #        giant edge cases        dwarf  dwarf  hot    none   no labels
    teff = np.array([5499.0, 5500.0, 3500.0, 4000.0, 7000.0, 7001.0, 6000.0, nan])
    logg = np.array([3.49, 3.0, 3.0, 3.5, 4.0, 4.0, 3.0, nan])
    m_h = np.array([-1.01, -2.0, -2.0, -1.5, 0.0, 0.0, -1.5, nan])
    masks = compare_models.population_masks(teff, logg, m_h)
    assert masks["all"].all()
    assert masks["giants"].tolist() == [True, False, False, False, False, False, False, False]
    assert masks["metal_poor_giants"].tolist() == [True, *[False] * 7]
    assert masks["dwarfs"].tolist() == [False, False, False, True, True, False, False, False]
    assert masks["hot"].tolist() == [False, False, False, False, False, True, False, False]


def test_a_label_the_model_did_not_learn_is_missing(run, models):
    result, md = run
    tiny = models[0]
    assert result["models"][tiny]["not_learned"] == ["alpha_m"]
    for pop in POPULATIONS:
        assert result["metrics"][tiny][pop]["alpha_m"] is None
        assert result["metrics"][tiny][pop]["mass"]["sigma"] > 0
        assert result["metrics"]["xgboost"][pop]["alpha_m"] is not None
    assert all(b["labels"]["alpha_m"] is None for b in result["by_g"]["models"][tiny]["giants"])
    row = next(line for line in md.splitlines() if line.startswith(f"| {tiny} |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1 + result["labels"].index("alpha_m")] == "–"
    assert cells[1 + result["labels"].index("teff")] != "–"
    if "apogee-xp" in models:
        assert result["models"]["apogee-xp"]["not_learned"] == ["mass", "ln_age"]
        for lab in ("mass", "age", "ln_age"):
            assert result["metrics"]["apogee-xp"]["giants"][lab] is None
        assert result["metrics"]["apogee-xp"]["giants"]["alpha_m"]["sigma"] > 0
        assert result["age_metallicity"]["apogee-xp"] is None


def test_sigma_and_age_equal_an_independent_computation(run, models, data, test_rows):
    result, _ = run
    truth, _ = test_rows
    giants = _masks(truth)["giants"]
    out = _predict(models[0], data, ["teff", "ln_age"])
    m = result["metrics"][models[0]]["giants"]
    # the run asks for every label at once, this for two: float32 sums in another order (3e-7 relative
    # on an AMD EPYC), so 1e-6
    assert m["teff"]["sigma"] == pytest.approx(_robust_sigma((out["teff"] - truth["teff"])[giants]), rel=1e-6)
    age_r = (out["age"] - np.exp(truth["ln_age"]))[giants]
    assert m["age"]["sigma"] == pytest.approx(_robust_sigma(age_r), rel=1e-6)
    # Spearman of the true labels by ranks (continuous values: no ties)
    ok = giants & np.isfinite(truth["ln_age"]) & np.isfinite(truth["m_h"])
    ra, rm = (np.argsort(np.argsort(truth[k][ok])) for k in ("ln_age", "m_h"))
    corr = result["age_metallicity"][models[0]]
    assert corr["n"] == int(ok.sum())
    assert corr["spearman_truth"] == pytest.approx(np.corrcoef(ra, rm)[0, 1], rel=1e-9)
    assert corr["spearman_truth"] < -0.5  # the data's age–metallicity relation


def test_z_spread_uses_the_models_calibration(run, models, data, test_rows):
    if "apogee-xp" not in models:
        pytest.skip("the bundled apogee-xp model's vocabulary differs from this test's data")
    result, _ = run
    truth, _ = test_rows
    dwarfs = _masks(truth)["dwarfs"]
    raw = _predict("apogee-xp", data, ["logg"], calibrate=False)
    cal = json.loads((resolve_model_path("apogee-xp") / "calibration.json").read_text())["labels"]["logg"]
    assert cal["applied"] and cal["a"] != pytest.approx(1.0, abs=0.05)  # else this test proves nothing
    sigma = np.hypot(cal["a"] * raw["logg_error"], cal["b"])
    z = (raw["logg"] - truth["logg"]) / np.hypot(sigma, LABEL_ERRORS["logg"])
    m = result["metrics"]["apogee-xp"]["dwarfs"]["logg"]
    assert m["z_sigma"] == pytest.approx(_robust_sigma(z[dwarfs]), rel=1e-6)
    assert result["models"]["apogee-xp"]["sigma"] == "calibrated (calibration.json)"


def test_markdown_is_printed_and_has_a_table_per_population(tiny_model, data, tmp_path, capsys):
    argv = ["--data", str(data), "--models", tiny_model, "--labels", "teff", "logg", "m_h"]
    argv += ["--device", "cpu", "--json", str(tmp_path / "r.json"), "--markdown", str(tmp_path / "r.md")]
    assert compare_models.main(argv) == 0
    md = (tmp_path / "r.md").read_text()
    assert md.strip() in capsys.readouterr().out
    for pop in POPULATIONS:
        assert f"\n## {pop}: " in md
    assert "\n## giants by G\n" in md and "| 8–11 |" in md
    result = json.loads((tmp_path / "r.json").read_text())
    assert list(result["metrics"]) == [tiny_model]  # no baseline asked for
    assert result["labels"] == ["teff", "logg", "m_h"] and result["age_metallicity"][tiny_model] is None


def test_command_line_errors(data, tmp_path, capsys):
    base = ["--data", str(data), "--models", "apogee-xp", "--json", str(tmp_path / "r.json")]
    with pytest.raises(SystemExit):
        compare_models.main([*base, "--baseline-train", str(data), "--baseline-model", str(tmp_path)])
    assert "not allowed with argument" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        compare_models.main([*base, "--g-bins", "12", "11"])
    assert "--g-bins must be at least two increasing edges, got [12.0, 11.0]" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        compare_models.main([*base, "--labels", "radius"])
    assert "invalid choice: 'radius'" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


def test_model_context_gives_each_model_its_own_default_input(tiny_model, data):
    """--context model: the model's default input (here without the three colours) instead of the
    standard one; the predictions equal a direct call with that input and differ from the standard's."""
    from xpengine.evaluate.eval_set import load_eval_set

    xp_only = [f"bp{i}" for i in range(30)] + [f"rp{i}" for i in range(30)]
    p = Predictor(tiny_model, device="cpu", inputs=xp_only)
    assert p.default_inputs == xp_only
    es = load_eval_set(str(data), split="test")
    own = compare_models.transformer_predictions(p, es, ["teff"], "model")
    standard = compare_models.transformer_predictions(p, es, ["teff"], "standard")
    direct = p.predict(es.values, es.errors, ["teff"], inputs=xp_only)
    np.testing.assert_array_equal(own["teff"][0], direct["teff"])
    assert not np.allclose(own["teff"][0], standard["teff"][0])
    with pytest.raises(ValueError, match="context must be one of"):
        compare_models.transformer_predictions(p, es, ["teff"], "everything")


def test_paired_bootstrap_of_the_sigma_difference():
    rng = np.random.default_rng(7)
    ref = rng.normal(0.0, 0.1, 3000)
    same = compare_models.paired_sigma_difference(ref, ref, n_boot=200)
    assert same == {"n": 3000, "delta": 0.0, "lo": 0.0, "hi": 0.0}
    # twice the scatter: Δσ ≈ σ_ref = 0.1, and the interval holds it and excludes 0
    wider = compare_models.paired_sigma_difference(2.0 * ref, ref, n_boot=200)
    assert wider["delta"] == pytest.approx(_robust_sigma(2.0 * ref) - _robust_sigma(ref))
    assert 0.0 < wider["lo"] < wider["delta"] < wider["hi"]
    assert wider["lo"] < 0.1 < wider["hi"] or abs(wider["delta"] - 0.1) < 0.01
    # stars where either residual is NaN are left out; too few stars: None
    a = ref.copy()
    a[:100] = np.nan
    assert compare_models.paired_sigma_difference(a, ref, n_boot=50)["n"] == 2900
    assert compare_models.paired_sigma_difference(ref[:5], ref[:5], n_boot=50) is None


def test_bootstrap_section_compares_every_model_with_the_first(tiny_model, data, tmp_path, test_rows):
    argv = ["--data", str(data), "--models", tiny_model, "apogee-xp", "--labels", "teff", "logg", "m_h"]
    argv += ["--device", "cpu", "--json", str(tmp_path / "r.json"), "--markdown", str(tmp_path / "r.md")]
    assert compare_models.main([*argv, "--bootstrap", "100"]) == 0
    diff = json.loads((tmp_path / "r.json").read_text())["sigma_differences"]
    assert diff["reference"] == tiny_model and list(diff["models"]) == ["apogee-xp"]
    truth, _ = test_rows
    got = diff["models"]["apogee-xp"]["giants"]["logg"]
    giants = _masks(truth)["giants"]
    pa = _predict("apogee-xp", data, ["logg"])["logg"][giants] - truth["logg"][giants]
    pt = _predict(tiny_model, data, ["logg"])["logg"][giants] - truth["logg"][giants]
    assert got["delta"] == pytest.approx(_robust_sigma(pa) - _robust_sigma(pt), rel=1e-4)  # float32 labels
    assert got["lo"] <= got["hi"]
    assert "## σ minus the σ of" in (tmp_path / "r.md").read_text()
    assert compare_models.main(argv) == 0  # without --bootstrap: no section
    assert json.loads((tmp_path / "r.json").read_text())["sigma_differences"] is None


def test_every_model_is_scored_on_the_same_stars(data, models, tmp_path):
    """A baseline with the paper's "complete" policy predicts only the stars with every input finite (here
    not the 5 % without 2MASS): every model's cell is then scored on those stars only, label by label, and
    the table says how many (session 17: the transformer had been scored on every star, XGBoost on its
    subset, in the same row). The default baseline ("native") predicts every star."""
    argv = ["--data", str(data), "--split", "test", "--models", models[0], "--baseline-train", str(data)]
    argv += ["--baseline-estimators", "5", "--device", "cpu", "--json", str(tmp_path / "c.json")]
    argv += ["--baseline-nan-policy", "complete", "--markdown", str(tmp_path / "c.md")]
    assert compare_models.main(argv) == 0
    r = json.loads((tmp_path / "c.json").read_text())
    assert r["models"]["xgboost"]["config"]["nan_policy"] == "complete"
    arrays = read_training_set(str(data), split="test")
    no_2mass = ~np.isfinite(arrays.values[:, arrays.vocabulary.index("jh")])
    assert no_2mass.any()
    for pop in ("all", "giants"):
        for lab in ("teff", "mass"):
            n = r["n_compared"][pop][lab]
            assert r["metrics"][models[0]][pop][lab]["n"] == n == r["metrics"]["xgboost"][pop][lab]["n"]
    truth = arrays.values[:, arrays.vocabulary.index("teff")]
    assert r["n_compared"]["all"]["teff"] == int((np.isfinite(truth) & ~no_2mass).sum())
    assert "stars compared" in (tmp_path / "c.md").read_text()


def test_baseline_extra_inputs_are_read(data):
    from xpengine.evaluate.baseline import BaselineConfig, standard_input_names
    from xpengine.evaluate.runner import train_baseline

    cfg = BaselineConfig(labels=("teff",), n_estimators=3, nan_policy="native", extra_inputs=("g_fakemag",))
    assert cfg.inputs == [*standard_input_names(30), "g_fakemag"]
    assert BaselineConfig.from_dict(cfg.to_dict()).extra_inputs == ("g_fakemag",)
    base = train_baseline(str(data), cfg, split="train")
    assert base.inputs[-1] == "g_fakemag"
    with pytest.raises(ValueError, match="extra_inputs"):
        BaselineConfig(extra_inputs=("bp0",))
