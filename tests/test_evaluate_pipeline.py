"""XGBoost baseline, scenarios and `xpengine evaluate` end to end on a small training-schema file.

The file is a linear-Gaussian toy sky: six latent standard-normal variables per star set the labels
(teff, logg, m_h, alpha_m, mass, ln_age) and, through a fixed random matrix, every XP coefficient and
colour, with noise growing with the coefficient index (high orders are noise-dominated). The stand-in
predictor is the exact Bayesian posterior of that model given whichever tokens it is shown, so its σ
are calibrated by construction, grow when the inputs are uninformative and vanish when the labels are
given: the evaluation must report exactly that. A second stand-in halves its σ, and the calibration
fitted on the validation split must undo it.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from xpengine.datasets.schema import training_table, write_training_set
from xpengine.evaluate.baseline import BaselineConfig, XGBoostBaseline, _Scaler, standard_input_names
from xpengine.evaluate.calibration import Calibration
from xpengine.evaluate.cli import register
from xpengine.evaluate.evaluation import run_evaluation
from xpengine.evaluate.report import to_jsonable
from xpengine.evaluate.runner import load_eval_set
from xpengine.evaluate.scenarios import scenario_groups, scenario_mask
from xpengine.features.vocabulary import paper_vocabulary

VOCAB = paper_vocabulary().with_tokens(["alpha_m"])
LABELS = ("teff", "logg", "m_h", "alpha_m", "mass", "ln_age")
CENTER = np.array([4700.0, 2.5, -0.2, 0.1, 1.3, 1.4])
SCALE = np.array([300.0, 0.5, 0.3, 0.08, 0.3, 0.6])
TRUTH_ERR = 0.1  # catalogue label error, in units of SCALE
K = len(LABELS)


class ToySky:
    """Token means x_j = A_j · u (u ~ N(0, I_6)) with noise s_j for the non-label tokens."""

    def __init__(self, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.label_cols = np.asarray(VOCAB.indices(list(LABELS)))
        self.obs_cols = np.asarray([i for i, t in enumerate(VOCAB.tokens) if t.kind in ("xp", "colour")])
        n_obs = len(self.obs_cols)
        self.A = rng.normal(0.0, 0.4, (n_obs, K))  # (J, K)
        order = np.zeros(n_obs)
        for j, c in enumerate(self.obs_cols):
            tok = VOCAB.tokens[c]
            order[j] = int(tok.name[2:]) if tok.kind == "xp" else 0
        # per-token noise: 0.3 at order 0, ×65 at order 25 (noise-dominated beyond)
        self.s = 0.3 * np.exp(order / 6.0)  # (J,)

    def draw(self, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        u = rng.normal(size=(n, K))  # (N, K)
        values = np.full((n, len(VOCAB)), np.nan, dtype=np.float32)
        errors = np.zeros((n, len(VOCAB)), dtype=np.float32)
        values[:, self.obs_cols] = u @ self.A.T + rng.normal(size=(n, len(self.obs_cols))) * self.s
        errors[:, self.obs_cols] = self.s
        # catalogue labels: latent + label noise, with their error
        values[:, self.label_cols] = CENTER + SCALE * (u + TRUTH_ERR * rng.normal(size=(n, K)))
        errors[:, self.label_cols] = SCALE * TRUTH_ERR
        return u, values, errors


class PosteriorPredictor:
    """Stand-in with the Predictor interface: exact Gaussian posterior of the toy sky's labels."""

    context_length = 64

    def __init__(self, sky: ToySky, sigma_factor: float = 1.0) -> None:
        self.vocabulary = VOCAB
        self.sky = sky
        self.sigma_factor = sigma_factor
        self.calls: list[int] = []

    def predict(self, values, errors, request, *, inputs=None, batch_size=4096, g_mag=None):
        # Like the real Predictor: only the `inputs` columns form the context, at most 64 of them.
        # g_mag: accepted like the Predictor's (this stand-in has no G-dependent σ calibration).
        values = np.asarray(values, dtype=np.float64)
        if inputs is not None:
            if len(inputs) > self.context_length:
                raise ValueError(f"{len(inputs)} input tokens > {self.context_length}")
            keep = np.zeros(values.shape[1], dtype=bool)
            keep[VOCAB.indices(list(inputs))] = True
            values = np.where(keep, values, np.nan)
        n_ctx = np.isfinite(values).sum(axis=1)
        self.calls.append(int(n_ctx.max()))
        if n_ctx.max() > self.context_length:
            raise ValueError(f"{n_ctx.max()} context tokens > {self.context_length}")
        sky = self.sky
        xo = values[:, sky.obs_cols]  # (N, J)
        m = np.isfinite(xo)
        w = np.where(m, 1.0 / sky.s**2, 0.0)  # (N, J)
        prec = np.eye(K) + np.einsum("nj,jk,jl->nkl", w, sky.A, sky.A)  # (N, K, K)
        rhs = np.einsum("nj,jk->nk", w * np.nan_to_num(xo), sky.A)  # (N, K)
        # labels in the context: direct observations of u_k with their catalogue error
        yl = values[:, sky.label_cols]  # (N, K)
        ml = np.isfinite(yl)
        wl = np.where(ml, 1.0 / TRUTH_ERR**2, 0.0)
        prec[:, np.arange(K), np.arange(K)] += wl
        rhs += wl * np.nan_to_num((yl - CENTER) / SCALE)
        cov = np.linalg.inv(prec)  # (N, K, K)
        mu = np.einsum("nkl,nl->nk", cov, rhs)
        sd = np.sqrt(np.diagonal(cov, axis1=1, axis2=2))
        out = {}
        for name in request:
            k = LABELS.index(name)
            out[name] = CENTER[k] + SCALE[k] * mu[:, k]
            out[f"{name}_error"] = self.sigma_factor * SCALE[k] * sd[:, k]
        return out


def _write_dataset(path, sky: ToySky, n: int = 1800, seed: int = 1, with_g: bool = True) -> None:
    _, values, errors = sky.draw(n, seed)
    rng = np.random.default_rng(seed + 100)
    split = np.array(["train"] * (n // 2) + ["val"] * (n // 6) + ["test"] * (n - n // 2 - n // 6))
    # a few stars without 2MASS colours (NaN jh, jk) in every split
    no2mass = rng.random(n) < 0.05
    values[no2mass, VOCAB.index("jh")] = np.nan
    values[no2mass, VOCAB.index("jk")] = np.nan
    extra = {"phot_g_mean_mag": rng.uniform(9.0, 16.0, n)} if with_g else None
    table = training_table(
        np.arange(n, dtype=np.int64) + 10**15,
        values,
        errors,
        VOCAB,
        split=split,
        origin="toy",
        extra=extra,
    )
    write_training_set(table, str(path))


@pytest.fixture(scope="module")
def sky() -> ToySky:
    return ToySky(0)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, sky):
    path = tmp_path_factory.mktemp("evaluate") / "toy.parquet"
    _write_dataset(path, sky)
    return str(path)


# ---------------------------------------------------------------------------------------------------
# Baseline


def test_scaler_matches_hand_computation() -> None:
    x = np.array([[1.0, 5.0], [3.0, 5.0], [5.0, np.nan], [7.0, 5.0]])
    s = _Scaler.fit(x)
    np.testing.assert_allclose(s.mean, [4.0, 5.0])
    # population std of 1,3,5,7 = sqrt(5); the constant column gets scale 1
    np.testing.assert_allclose(s.scale, [math.sqrt(5.0), 1.0])


def test_baseline_config_yaml_and_errors(tmp_path) -> None:
    cfg = BaselineConfig.from_yaml("configs/baseline/xgboost.yaml")
    assert cfg == BaselineConfig()  # the YAML states the paper's defaults
    assert cfg.n_estimators == 2000 and cfg.params["max_depth"] == 6 and cfg.params["learning_rate"] == 0.3
    assert cfg.params["tree_method"] == "hist" and cfg.nan_policy == "complete"
    assert cfg.inputs == standard_input_names(30) and len(cfg.inputs) == 63
    bad = tmp_path / "bad.yaml"
    bad.write_text("nan_policy: drop\nn_estimators: 0\ncolour: blue\n")
    with pytest.raises(ValueError, match="unknown baseline configuration keys"):
        BaselineConfig.from_yaml(bad)
    with pytest.raises(
        ValueError,
        match=r"n_estimators must be a positive integer, got 0\n  nan_policy must be one of .*got 'drop'",
    ):
        BaselineConfig(nan_policy="drop", n_estimators=0)


@pytest.mark.slow
def test_baseline_trains_saves_and_reloads(tmp_path, dataset) -> None:
    train = load_eval_set(dataset, split="train")
    test = load_eval_set(dataset, split="test")
    cfg = BaselineConfig(n_estimators=30, n_jobs=1)
    xtr = train.matrix(cfg.inputs)
    model = XGBoostBaseline.fit(xtr, train.truth, cfg)
    assert model.labels == list(LABELS)
    complete = np.all(np.isfinite(xtr), axis=1)
    assert model.info["n_train"]["teff"] == int(complete.sum()) < len(train)  # complete-row policy

    xte = test.matrix(cfg.inputs)
    pred = model.predict(xte)
    incomplete = ~np.all(np.isfinite(xte), axis=1)
    assert incomplete.any() and np.all(np.isnan(pred["teff"][incomplete]))
    assert np.all(np.isfinite(pred["teff"][~incomplete]))
    # it learned something: scatter well below the label's spread (300 K)
    r = pred["teff"] - test.truth["teff"]
    assert np.nanstd(r) < 0.6 * np.nanstd(test.truth["teff"])

    path = model.save(tmp_path / "xgb")
    assert sorted(p.name for p in path.iterdir()) == sorted([*(f"{x}.ubj" for x in LABELS), "baseline.json"])
    side = json.loads((path / "baseline.json").read_text())
    assert side["inputs"] == cfg.inputs and side["config"]["n_estimators"] == 30
    assert set(side["target_scalers"]) == set(LABELS)
    back = XGBoostBaseline.load(path)
    pred2 = back.predict(xte)
    for lab in LABELS:
        np.testing.assert_array_equal(pred2[lab], pred[lab])
    with pytest.raises(FileExistsError):
        model.save(tmp_path / "xgb")
    with pytest.raises(ValueError, match=r"expected a \(N, 63\) input matrix, got shape \(3, 5\)"):
        model.predict(np.zeros((3, 5)))

    native = XGBoostBaseline.fit(
        xtr, train.truth, BaselineConfig(n_estimators=5, nan_policy="native", labels=("teff",))
    )
    assert native.info["n_train"]["teff"] == len(train)
    assert np.all(np.isfinite(native.predict(xte)["teff"]))


# ---------------------------------------------------------------------------------------------------
# Scenarios


def test_scenario_masks(sky) -> None:
    _, values, _ = sky.draw(50, 7)
    values[0, VOCAB.index("bp3")] = np.nan  # a missing coefficient stays missing
    count = {
        name: scenario_mask(name, VOCAB, values, labels=["teff", "logg", "m_h"], seed=3).sum(axis=1)
        for name in ("standard", "first5", "random64", "high_order", "identity")
    }
    assert count["standard"][1] == 63 and count["standard"][0] == 62
    assert count["first5"][1] == 13
    assert count["high_order"][1] == 60
    assert np.all(count["random64"] == 64)
    assert count["identity"][1] == 64  # 3 labels + 3 colours + bp0..28 + rp0..28
    rnd = scenario_mask("random64", VOCAB, values, seed=3)
    kinds = np.array([t.kind for t in VOCAB.tokens])
    assert set(kinds[rnd.any(axis=0)]) <= {"xp", "colour"}  # no label leaks in
    np.testing.assert_array_equal(rnd, scenario_mask("random64", VOCAB, values, seed=3))  # seeded
    assert not np.array_equal(rnd, scenario_mask("random64", VOCAB, values, seed=4))
    ident = scenario_mask("identity", VOCAB, values, labels=["teff", "logg", "m_h"])
    assert ident[:, VOCAB.indices(["teff", "logg", "m_h"])].all()
    assert not ident[:, VOCAB.index("mass")].any()
    ho = scenario_mask("high_order", VOCAB, values)
    assert not ho[:, VOCAB.indices(["bp24", "rp24", "bprp"])].any() and ho[:, VOCAB.index("rp54")].all()
    with pytest.raises(ValueError, match="unknown scenario 'all'"):
        scenario_mask("all", VOCAB, values)
    groups = scenario_groups("random64", VOCAB, 50, seed=3)
    rows = np.concatenate([r for r, _ in groups])
    np.testing.assert_array_equal(np.sort(rows), np.arange(50))  # every star once
    assert all(len(names) == 64 == len(set(names)) for _, names in groups)
    assert len({tuple(names) for _, names in groups}) == len(groups) > 10


# ---------------------------------------------------------------------------------------------------
# End to end


@pytest.mark.slow
def test_evaluate_end_to_end(tmp_path, dataset, sky) -> None:
    out = tmp_path / "eval"
    predictor = PosteriorPredictor(sky)
    config = tmp_path / "xgb.yaml"  # one thread: the test machine's cores are shared
    config.write_text("n_jobs: 1\nn_estimators: 500\n")
    metrics = run_evaluation(
        "toy-posterior",
        dataset,
        out,
        predictor=predictor,
        baseline_train=dataset,
        baseline_config=str(config),
        baseline_estimators=30,
    )
    assert max(predictor.calls) <= 64
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk == to_jsonable(metrics)
    labels = ["teff", "logg", "m_h", "alpha_m", "mass", "age", "ln_age"]
    assert on_disk["data"]["labels"] == labels
    assert set(on_disk["models"]) == {"transformer", "xgboost"}
    for model in ("transformer", "xgboost"):
        assert list(on_disk["models"][model]) == labels
        for lab in labels:
            m = on_disk["models"][model][lab]
            assert isinstance(m["n"], int) and m["n"] > 0
            assert isinstance(m["sigma"], float) and isinstance(m["bias"], float)
    tr = on_disk["models"]["transformer"]
    xg = on_disk["models"]["xgboost"]
    # YAML read, then --baseline-estimators override
    assert (
        on_disk["baseline"]["config"]["n_estimators"] == 30 and on_disk["baseline"]["config"]["n_jobs"] == 1
    )
    n_test = on_disk["data"]["n_stars"]
    assert tr["teff"]["n"] == n_test and xg["teff"]["n"] < n_test  # XGBoost: complete rows only
    # the stars left out are counted, and both models are also scored on the stars both predict
    assert tr["teff"]["n_without_prediction"] == 0
    assert xg["teff"]["n_without_prediction"] == n_test - xg["teff"]["n"] > 0
    same = on_disk["same_stars"]
    assert same["transformer"]["teff"]["n"] == same["xgboost"]["teff"]["n"] == xg["teff"]["n"]
    for lab in labels:
        assert xg[lab]["z_sigma"] is None
        # calibrated by construction: z-spread ≈ 1, coverage ≈ nominal (600 test stars)
        assert 0.8 < tr[lab]["z_sigma"] < 1.2, lab
        assert 0.55 < tr[lab]["coverage_68"] < 0.8, lab
        assert 0.88 < tr[lab]["coverage_95"] <= 1.0, lab
    # the posterior mean beats 30 shallow trees
    assert tr["teff"]["sigma"] < xg["teff"]["sigma"]
    assert tr["age"]["n"] == tr["ln_age"]["n"] and tr["age"]["sigma"] != tr["ln_age"]["sigma"]
    sc = on_disk["scenarios"]
    assert list(sc) == ["standard", "first5", "random64", "high_order", "identity"]
    assert sc["standard"]["labels"] == tr
    for lab in labels:
        std, ho, idt = (sc[k]["labels"][lab] for k in ("standard", "high_order", "identity"))
        assert ho["median_sigma_pred"] > 2 * std["median_sigma_pred"], lab  # σ grows on noise
        assert ho["sigma"] > std["sigma"], lab
        # identity: the label itself is given (with its catalogue error): residual ≈ that error
        assert idt["median_sigma_pred"] < 0.5 * std["median_sigma_pred"], lab
    assert sc["first5"]["median_n_inputs"] <= 13 and sc["high_order"]["median_n_inputs"] == 60
    cal = on_disk["calibration"]
    assert cal["fit"] is not None and not any(v["applied"] for v in cal["fit"]["labels"].values())
    assert set(cal["raw"]["teff"]) == {"overall", "by_g", "by_snr", "by_sigma_pred"}
    assert len(cal["raw"]["teff"]["by_g"]) == 5 and cal["raw"]["teff"]["by_g"][0]["lo"] >= 9.0
    assert (out / "calibration.json").is_file()
    assert (out / "baseline_xgboost" / "baseline.json").is_file()

    for name in ("one_to_one", "scenarios", "mass_age", "residuals_vs_g", "kiel", "calibration"):
        data = (out / f"{name}.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, name
    report = (out / "report.md").read_text()
    assert "| model | Teff [K] | logg [dex] | [M/H] [dex] | [α/M] [dex] | mass [M☉] | age [Gyr] |" in report
    assert "| transformer, Zhang et al. 2026 | 42.0 | 0.130 | 0.080 | – | 0.114 | 1.334 | – |" in report
    assert f"| **transformer, this run** | {tr['teff']['sigma']:.1f} |" in report
    assert "**xgboost, this run**" in report and "## Uncertainty calibration" in report
    assert "High-order coefficients only" in report and "the model reads labels from its context" in report
    assert "![one_to_one](one_to_one.png)" in report
    assert "## Transformer and XGBoost on the same stars" in report
    assert "with the label but no prediction" in report
    with pytest.raises(FileExistsError, match="--overwrite"):
        run_evaluation("toy", dataset, out, predictor=predictor)


def test_split_all_scores_every_row_of_a_held_back_file(tmp_path, dataset, sky) -> None:
    """`--split all`: every row of the file is scored (a held-back file whose build-dataset split put only
    a tenth in `test`), and its own `val` rows are not used for a calibration they are scored in."""
    import pyarrow.parquet as pq

    n_rows = pq.read_metadata(dataset).num_rows
    metrics = run_evaluation(
        "toy",
        dataset,
        tmp_path / "all",
        predictor=PosteriorPredictor(sky),
        split="all",
        scenarios=["standard"],
        figures=False,
    )
    assert metrics["data"]["n_stars"] == n_rows
    assert metrics["models"]["transformer"]["teff"]["n"] == n_rows
    assert metrics["calibration"]["fit"] is None  # the file's val rows are scored


def test_evaluate_calibrates_underestimated_sigma(tmp_path, dataset, sky) -> None:
    model_dir = tmp_path / "ckpt"
    model_dir.mkdir()
    metrics = run_evaluation(
        str(model_dir),
        dataset,
        tmp_path / "eval",
        predictor=PosteriorPredictor(sky, sigma_factor=0.5),
        scenarios=["standard"],
        calibration_method="scale",
        store_calibration=True,
        figures=False,
    )
    assert list(metrics["scenarios"]) == ["standard"]
    cal = Calibration.load(model_dir)  # stored with the "checkpoint"
    for lab in LABELS:
        lc = cal.labels[lab]
        assert lc.applied and lc.method == "scale"
        # the σ were halved, but the label error is not: a is a bit above 2
        assert 1.7 < lc.a < 2.6, (lab, lc.a)
        raw = metrics["calibration"]["raw"][lab]["overall"]
        fixed = metrics["calibration"]["calibrated"][lab]["overall"]
        assert raw["z_sigma"] > 1.3 and raw["coverage_68"] < 0.55
        assert 0.8 < fixed["z_sigma"] < 1.2 and 0.55 < fixed["coverage_68"] < 0.8
        assert fixed["sigma"] == raw["sigma"]  # means untouched
    # linear age has its own fit (on age · raw σ_ln_age) and ends up calibrated too
    assert cal.labels["age"].applied and cal.labels["age"].unit == "Gyr"
    assert 0.8 < metrics["calibration"]["calibrated"]["age"]["overall"]["z_sigma"] < 1.2
    assert json.loads((tmp_path / "eval" / "calibration.json").read_text())["labels"]["teff"]["applied"]


def test_store_calibration_updates_an_existing_file_without_losing_its_sections(
    tmp_path, dataset, sky
) -> None:
    """--store-calibration on a checkpoint that already has a calibration (the bundled gaia-xp's has
    sky-fitted mass/age entries, every-order entries and sim-to-real terms): the refitted tokens' entries
    are replaced, everything else is kept, the stale dependants are dropped, and metrics.json says which.
    Without --overwrite it refuses before evaluating."""
    from xpengine.model.calibration import LabelCalibration, SimToReal

    model_dir = tmp_path / "ckpt"
    model_dir.mkdir()
    old = LabelCalibration(a=3.0, applied=True)
    term = SimToReal(sigma_knots=(0.1, 0.2), extra_knots=(0.05, 0.05), relative=True)
    existing = Calibration(
        labels={"teff": old, "ebv": old},
        all_orders={"teff": old, "ebv": old},
        sim_to_real={"ebv": term, "teff": term},
        provenance={"data": "sky.parquet"},
    )
    existing.save(model_dir)
    kw = dict(predictor=PosteriorPredictor(sky, 0.5), scenarios=["standard"], store_calibration=True)
    with pytest.raises(FileExistsError, match="--overwrite to update it"):
        run_evaluation(str(model_dir), dataset, tmp_path / "eval0", **kw, figures=False)
    assert not (tmp_path / "eval0" / "metrics.json").exists()
    metrics = run_evaluation(str(model_dir), dataset, tmp_path / "eval", **kw, figures=False, overwrite=True)
    cal = Calibration.load(model_dir)
    assert set(cal.labels) == {*LABELS, "age", "ebv"} and cal.labels["ebv"] == old
    assert cal.labels["teff"] != old and 1.7 < cal.labels["teff"].a < 2.6
    assert set(cal.all_orders) == {"ebv"} and set(cal.sim_to_real) == {"ebv"}
    record = metrics["calibration"]["stored_update"]
    assert record["replaced"] == ["teff"] and record["kept"] == ["ebv"]
    assert record["dropped_all_orders"] == ["teff"] and record["dropped_sim_to_real"] == ["teff"]
    assert cal.provenance["data"] == "sky.parquet" and cal.provenance["updates"][-1]["replaced"] == ["teff"]


def test_calibration_update_drops_the_terms_of_log_linear_partners() -> None:
    """A sim-to-real term was fitted on the calibrated σ, and age's σ is ln_age's: refitting either of a
    log/linear pair (ln_age/age, logebv/ebv) drops the pair's terms; other tokens' terms stay."""
    from xpengine.model.calibration import LabelCalibration, SimToReal

    e = LabelCalibration(a=2.0, applied=True)
    term = SimToReal(sigma_knots=(0.1, 0.2), extra_knots=(0.05, 0.05))
    base = Calibration(
        labels={"mass": e, "ln_age": e}, sim_to_real={"mass": term, "ln_age": term, "ebv": term}
    )
    for refit, dropped in (("age", ["ln_age"]), ("logebv", ["ebv"]), ("ln_age", ["ln_age"]), ("teff", [])):
        out, record = base.updated(Calibration(labels={refit: e}))
        assert record["dropped_sim_to_real"] == dropped, refit
        assert set(out.sim_to_real) == {"mass", "ln_age", "ebv"} - set(dropped), refit
        assert base.sim_to_real.keys() == {"mass", "ln_age", "ebv"}  # the original is untouched
    out, record = base.updated(Calibration())
    assert out.to_dict()["labels"] == base.to_dict()["labels"] and record["kept"] == ["ln_age", "mass"]


def test_evaluate_reports_the_sigma_of_a_g_calibrated_predictor(tmp_path) -> None:
    """The bundled gaia-xp model's calibration.json (format 2) scales the σ of mass, ln_age and age by
    a factor per G bin: evaluation must pass each star's G (the file's phot_g_mean_mag) to the
    Predictor, so that the σ it reports are `Predictor.predict(..., g_mag=G)`'s, in every scenario
    group (random64 splits the stars into groups)."""
    pytest.importorskip("torch")
    from xpengine.evaluate.runner import evaluate
    from xpengine.inference.predictor import Predictor

    p = Predictor.load("gaia-xp", device="cpu")  # calibrate=True: the stored calibration applies
    g_scaled = [n for n, lc in p.calibration.labels.items() if lc.applied and lc.g_scales is not None]
    assert {"mass", "ln_age", "age"} <= set(g_scaled)
    assert all(len(set(p.calibration.labels[n].g_scales)) > 1 for n in g_scaled)
    rng = np.random.default_rng(5)
    n = 48
    std = p.standardization
    values = (std.center + std.scale * rng.normal(0.0, 0.5, (n, len(p.vocabulary)))).astype(np.float32)
    g = rng.uniform(9.0, 18.5, n)
    g[0] = np.nan  # unknown G: the calibration's σ map alone
    path = tmp_path / "g.parquet"
    table = training_table(
        np.arange(n, dtype=np.int64) + 1,
        values,
        (0.01 * std.scale * np.ones_like(values)).astype(np.float32),
        p.vocabulary,
        split=np.full(n, "test"),
        origin="toy",
        extra={"phot_g_mean_mag": g},
    )
    write_training_set(table, str(path))
    test = load_eval_set(str(path), split="test")
    np.testing.assert_array_equal(test.g_mag, g)
    result = evaluate(p, test, scenarios=("standard", "random64"), batch_size=16)
    tokens = list(LABELS)  # all six are tokens of gaia-xp and have truths in the file
    for sc in ("standard", "random64"):
        for rows, names in scenario_groups(
            sc, p.vocabulary, n, labels=tokens, context_length=p.context_length
        ):
            direct = p.predict(test.values[rows], None, tokens, inputs=names, g_mag=g[rows])
            no_g = p.predict(test.values[rows], None, tokens, inputs=names)
            for lab in (*tokens, "age"):
                got = result.predictions[f"scenario:{sc}"][lab][1][rows]
                np.testing.assert_allclose(got, direct[f"{lab}_error"], rtol=1e-6, err_msg=f"{sc} {lab}")
                if lab in g_scaled and sc == "standard":  # star 0 (no G) excepted: G changes them
                    assert not np.allclose(got[1:], no_g[f"{lab}_error"][1:], rtol=1e-3), lab
    sd = result.predictions["transformer"]["mass"][1]
    assert result.metrics["models"]["transformer"]["mass"]["median_sigma_pred"] == pytest.approx(
        np.median(sd)
    )


@pytest.mark.slow
def test_cli_registration(monkeypatch, tmp_path, sky) -> None:
    import argparse

    import xpengine.evaluate.runner as runner

    data = tmp_path / "no_g.parquet"  # no phot_g_mean_mag column: residuals against S/N instead
    _write_dataset(data, sky, n=300, seed=9, with_g=False)
    parser = argparse.ArgumentParser(prog="xpengine")
    register(parser.add_subparsers(dest="command"))
    out = tmp_path / "cli"
    args = parser.parse_args(
        ["evaluate", "--model", "toy", "--data", str(data), "--output", str(out), "--scenarios", "standard,first5",
         "--max-stars", "40", "--dtype", "bfloat16"]
    )  # fmt: skip
    seen = {}

    def fake_load(model, *, device="cpu", dtype=None, calibrate=False, sim_to_real=True):
        if not calibrate:  # (the shipped-σ load: a predictor without a calibration, so none is scored)
            seen.update(model=model, device=device, dtype=dtype)
        return PosteriorPredictor(sky)

    monkeypatch.setattr(runner, "load_predictor", fake_load)
    assert args.func(args) == 0
    assert seen == {"model": "toy", "device": "cpu", "dtype": "bfloat16"}
    m = json.loads((out / "metrics.json").read_text())
    assert m["data"]["n_stars"] == 40 and list(m["scenarios"]) == ["standard", "first5"]
    assert m["data"]["g_column"] is None and m["calibration"]["raw"]["teff"]["by_g"] is None
    assert len(m["calibration"]["raw"]["teff"]["by_snr"]) == 5
    assert "xgboost" not in m["models"] and (out / "report.md").is_file()
    assert (out / "residuals_vs_snr.png").is_file() and not (out / "residuals_vs_g.png").exists()
    assert set(m["files"]) >= {"calibration.json", "residuals_vs_snr.png", "one_to_one.png"}


@pytest.mark.slow
def test_evaluate_real_tiny_checkpoint(tmp_path, dataset) -> None:
    """A tiny transformer trained for a few epochs with xpengine.train, loaded through the real
    Predictor: the plumbing end to end (no accuracy claim for a model this small and short-trained)."""
    pytest.importorskip("torch")
    pytest.importorskip("xpengine.inference.predictor")
    from xpengine.datasets.schema import read_training_set
    from xpengine.train.config import TrainConfig
    from xpengine.train.loop import train

    cfg = TrainConfig.from_dict(
        {
            "model": "tiny",
            "epochs": 2,
            "batch_size": 256,
            "val_every": 2,
            "checkpoint_every": 2,
            "device": "cpu",
            "precision": "fp32",
            "requestable": ["kind:xp", "jh", "teff", "logg", "m_h", "alpha_m", "mass", "ln_age"],
        }
    )
    result = train(
        cfg,
        read_training_set(dataset, split="train"),
        read_training_set(dataset, split="val"),
        output_dir=tmp_path / "run",
    )
    out = tmp_path / "eval"
    # the model ships a σ calibration (Teff σ doubled): the report scores those σ beside the raw ones
    from xpengine.model.calibration import LabelCalibration

    Calibration(labels={"teff": LabelCalibration(a=2.0, applied=True)}).save(result.model_dir)
    metrics = run_evaluation(str(result.model_dir), dataset, out, max_stars=100, batch_size=64, figures=False)
    shipped, raw = (metrics["calibration"][k]["teff"]["overall"] for k in ("shipped", "raw"))
    assert shipped["median_sigma_pred"] == pytest.approx(2 * raw["median_sigma_pred"], rel=1e-5)
    assert "z-spread shipped" in (out / "report.md").read_text()
    tr = metrics["models"]["transformer"]
    assert set(tr) >= {"teff", "logg", "m_h", "mass", "age", "ln_age"}
    for lab, m in tr.items():
        assert m["n"] == 100, lab
        assert math.isfinite(m["sigma"]) and math.isfinite(m["median_sigma_pred"]), lab
    assert list(metrics["scenarios"]) == ["standard", "first5", "random64", "high_order", "identity"]
    # the real Predictor reads only the `inputs` columns: every scenario must have reached the model
    for name, sc in metrics["scenarios"].items():
        assert sc["labels"]["teff"]["n"] == 100, name
    assert metrics["scenarios"]["high_order"]["median_n_inputs"] == 60
    assert metrics["scenarios"]["identity"]["median_n_inputs"] == 63
    assert "| **transformer, this run** |" in (out / "report.md").read_text()
