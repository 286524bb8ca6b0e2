"""Mixed real + simulated training sets (xpengine.datasets.mixed, `xpengine build-dataset mixed`).

Inputs come from the project's own builders:
- synthetic: the bundled simulated sky (`xpengine/data/sky`) through `build_synthetic`, in the real
  set's vocabulary (`zhang2026+alpha_m`);
- real, always available: the hand-made survey of `_datasets_sky` (real Gaia DR3 XP rows from tests/data,
  APOGEE-layout labels) through `build_survey` with origin "apogee-dr17";
- real, from the shared APOGEE×XP dev file: its first 300 rows through `build_apogee_xp` (tests skip,
  naming the path, where the file is absent).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
from importlib.resources import files
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _datasets_real import DEV, needs_dev
from _datasets_sky import write_sky
from _paths import skip_unless_exists

from xpengine.datasets.mixed import build_mixed, keep_at_most, synthetic_copies
from xpengine.datasets.schema import read_training_set, write_training_set
from xpengine.datasets.splits import read_default_split, split_by_source_id
from xpengine.features import PAPER_VOCABULARY

VOCAB = PAPER_VOCABULARY.with_tokens(["alpha_m"])
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SKY_ONLY = ("mass", "ln_age", "logebv", "g_fakemag")  # tokens the APOGEE×XP file does not have

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def sky_set(tmp_path_factory) -> str:
    """The bundled sky's survey stars, 121-token vocabulary (69 stars: 57 train / 4 val / 8 test)."""
    from xpengine.datasets.synthetic import build_synthetic

    path = str(tmp_path_factory.mktemp("mixed") / "sky.parquet")
    write_training_set(build_synthetic(str(files("xpengine") / "data" / "sky"), vocabulary=VOCAB).table, path)
    return path


@pytest.fixture(scope="module")
def survey_real(tmp_path_factory) -> str:
    """Real XP rows with APOGEE-layout labels, origin apogee-dr17 (11 stars: 8 train / 2 val / 1 test)."""
    from xpengine.datasets.survey import SurveyInputs, build_survey

    d = tmp_path_factory.mktemp("survey_real")
    p = write_sky(str(d))
    inputs = SurveyInputs(allstar=p["allstar"], distmass=p["distmass"], xp=str(d), gaia_source=str(d))
    b = build_survey(inputs, origin="apogee-dr17", vocabulary=VOCAB, keep_without_evolution=True)
    path = str(d / "real.parquet")
    write_training_set(b.table, path)
    return path


@pytest.fixture(scope="module")
def dev_slice(tmp_path_factory) -> str:
    """The first 300 rows of the shared APOGEE×XP dev file through its builder."""
    skip_unless_exists(DEV)
    from xpengine.datasets.apogee_xp import build_apogee_xp

    path = str(tmp_path_factory.mktemp("dev_slice") / "real_dev.parquet")
    write_training_set(build_apogee_xp(DEV, max_rows=300).table, path)
    return path


def _col(table: pa.Table, name: str) -> np.ndarray:
    return np.asarray(table.column(name).to_numpy(zero_copy_only=False))


def _rewrite(src: str, dst: Path, *, table_edit=None, provenance_edit=None) -> str:
    """A copy of a training-schema file with its table and/or provenance metadata edited."""
    t = pq.read_table(src)
    meta = dict(t.schema.metadata)
    if table_edit is not None:
        t = table_edit(t)
    if provenance_edit is not None:
        prov = json.loads(meta[b"xpengine.provenance"])
        provenance_edit(prov)
        meta[b"xpengine.provenance"] = json.dumps(prov).encode()
    pq.write_table(t.replace_schema_metadata(meta), str(dst))
    return str(dst)


def _cli(argv: list[str]) -> int:
    from xpengine.datasets.cli import register

    parser = argparse.ArgumentParser(prog="xpengine")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


# --- weighting functions ------------------------------------------------------------------------------


def test_synthetic_copies_realise_the_weight_on_training_stars_only() -> None:
    rng = np.random.default_rng(5)
    ids = rng.integers(1, 2**62, 20000, dtype=np.int64)
    split = split_by_source_id(ids)
    train = split == "train"
    for w in (0.0, 0.3, 1.0, 2.5):
        c = synthetic_copies(ids, split, w)
        assert set(np.unique(c[train])) <= {int(np.floor(w)), int(np.floor(w)) + 1}
        assert abs(c[train].mean() - w) < 0.02, w  # expected rows per star = weight
        assert np.all(c[~train] == 1)  # validation and test stars: one row, whatever the weight
    # deterministic per source_id, whatever the order; the stars with an extra copy grow with the weight
    perm = rng.permutation(ids.size)
    np.testing.assert_array_equal(
        synthetic_copies(ids[perm], split[perm], 1.3), synthetic_copies(ids, split, 1.3)[perm]
    )
    extra_13 = synthetic_copies(ids, split, 1.3) == 2
    extra_16 = synthetic_copies(ids, split, 1.6) == 2
    assert np.all(extra_16[extra_13]) and extra_16.sum() > extra_13.sum()
    with pytest.raises(ValueError, match=r"synthetic weight must be a finite number >= 0, got -1"):
        synthetic_copies(ids, split, -1.0)
    with pytest.raises(ValueError, match="got nan"):
        synthetic_copies(ids, split, float("nan"))


def test_keep_at_most_is_a_nested_uniform_subsample() -> None:
    rng = np.random.default_rng(6)
    ids = rng.integers(1, 2**62, 5000, dtype=np.int64)
    k100, k1000 = keep_at_most(ids, 100), keep_at_most(ids, 1000)
    assert k100.sum() == 100 and k1000.sum() == 1000 and np.all(k1000[k100])
    perm = rng.permutation(ids.size)
    np.testing.assert_array_equal(keep_at_most(ids[perm], 100), k100[perm])
    # split shares follow the input's (train ≈ 81 %)
    assert abs(np.mean(split_by_source_id(ids[k1000]) == "train") - 0.81) < 0.05
    assert keep_at_most(ids, None).all() and keep_at_most(ids, 10**6).all()
    with pytest.raises(ValueError, match="max_synthetic must be >= 0"):
        keep_at_most(ids, -1)


# --- the builder --------------------------------------------------------------------------------------


def test_rows_splits_and_provenance_of_both_inputs(survey_real, sky_set, tmp_path) -> None:
    b = build_mixed(survey_real, sky_set)
    t, prov = b.table, b.summary
    real_in, sky_in = pq.read_table(survey_real), pq.read_table(sky_set)
    source = _col(t, "data_source")
    is_real = source == "real"
    assert is_real.sum() == real_in.num_rows and (~is_real).sum() == sky_in.num_rows  # weight 1: one row each
    assert np.all(_col(t, "mix_copy") == 0)
    # every row is its input row: ids, splits, origins, token values (NaN = absent) and errors
    for mask, src in ((is_real, real_in), (~is_real, sky_in)):
        for c in ("source_id", "split", "origin"):
            np.testing.assert_array_equal(_col(t, c)[mask], _col(src, c))
        for name in (*VOCAB.names, *VOCAB.error_names):
            np.testing.assert_array_equal(_col(t, name)[mask], _col(src, name))
    # extra columns: the union, null where a source has none
    assert np.isnan(_col(t, "truth_mass")[is_real].astype(float)).all()
    np.testing.assert_array_equal(_col(t, "truth_mass")[~is_real], _col(sky_in, "truth_mass"))
    # one training-schema file: same vocabulary, provenance of both inputs with paths, sha256 and counts
    out = str(tmp_path / "mixed.parquet")
    write_training_set(t, out)
    arrays = read_training_set(out)
    assert arrays.vocabulary.names == VOCAB.names and arrays.values.shape == (t.num_rows, len(VOCAB))
    assert arrays.provenance == json.loads(json.dumps(prov))
    assert prov["vocabulary"] == VOCAB.name and prov["xp_representation"] and prov["features_version"]
    for role, path, src in (("real", survey_real, real_in), ("synthetic", sky_set, sky_in)):
        rec = prov["sources"][role]
        assert rec["path"] == str(Path(path).resolve())
        assert rec["sha256"] == hashlib.sha256(Path(path).read_bytes()).hexdigest()
        counts = {s: int(np.sum(_col(src, "split") == s)) for s in ("train", "val", "test")}
        assert rec["split_counts"] == rec["rows"] == counts
        assert rec["split_check"]["verified"] is True
        assert rec["provenance"] == json.loads(src.schema.metadata[b"xpengine.provenance"])
    assert prov["sources"]["real"]["origins"] == ["apogee-dr17"]
    assert prov["sources"]["synthetic"]["origins"] == ["synthetic"]
    assert prov["split_counts"] == {
        s: prov["sources"]["real"]["rows"][s] + prov["sources"]["synthetic"]["rows"][s]
        for s in ("train", "val", "test")
    }
    assert prov["weighting"]["synthetic_weight"] == 1.0 and prov["weighting"]["max_synthetic"] is None


def test_weight_and_cap_change_only_synthetic_training_rows(survey_real, sky_set) -> None:
    sky_in = pq.read_table(sky_set)
    sky_split = dict(zip(_col(sky_in, "source_id").tolist(), _col(sky_in, "split").tolist(), strict=True))
    b = build_mixed(survey_real, sky_set, synthetic_weight=2.5, max_synthetic=40)
    t = b.table
    syn = _col(t, "data_source") == "synthetic"
    sid, split, copy = _col(t, "source_id")[syn], _col(t, "split")[syn], _col(t, "mix_copy")[syn]
    stars, n_rows = np.unique(sid, return_counts=True)
    assert stars.size <= 40 and b.summary["sources"]["synthetic"]["stars_after_cap"] == 40
    for s, k in zip(stars, n_rows, strict=True):
        assert split[sid == s][0] == sky_split[int(s)]  # each star keeps its split
        assert k in ((2, 3) if sky_split[int(s)] == "train" else (1,))
        np.testing.assert_array_equal(np.sort(copy[sid == s]), np.arange(k))  # copies numbered 0..k-1
    w = b.summary["weighting"]
    rows = b.summary["sources"]["synthetic"]["rows"]
    assert rows["train"] == int(np.sum(split == "train"))
    assert w["synthetic_share_of_train_rows"] == pytest.approx(
        rows["train"] / (rows["train"] + b.summary["sources"]["real"]["rows"]["train"])
    )
    # the same call gives the same rows (hash-based, no RNG); weight 0 keeps validation and test stars only
    np.testing.assert_array_equal(
        _col(build_mixed(survey_real, sky_set, synthetic_weight=2.5, max_synthetic=40).table, "source_id"),
        _col(t, "source_id"),
    )
    b0 = build_mixed(survey_real, sky_set, synthetic_weight=0.0)
    s0 = _col(b0.table, "split")[_col(b0.table, "data_source") == "synthetic"]
    assert "train" not in set(s0) and s0.size == int(np.sum(_col(sky_in, "split") != "train"))


def test_vocabulary_mismatch_is_refused(survey_real, tmp_path, capsys) -> None:
    from xpengine.datasets.synthetic import build_synthetic

    paper = str(tmp_path / "sky_120.parquet")  # the synthetic builder's default vocabulary: no alpha_m token
    write_training_set(build_synthetic(str(files("xpengine") / "data" / "sky")).table, paper)
    with pytest.raises(ValueError) as err:
        build_mixed(survey_real, paper)
    msg = str(err.value)
    assert "vocabulary: real zhang2026+alpha_m/1 (121 tokens), synthetic zhang2026/1 (120 tokens)" in msg
    assert "tokens only in real: ['alpha_m']" in msg and "--with-tokens alpha_m" in msg
    with pytest.raises(SystemExit) as exited:  # one line `xpengine build-dataset: error: ...`, exit 2
        _cli(
            [
                "build-dataset",
                "mixed",
                "--real",
                survey_real,
                "--synthetic",
                paper,
                "--output",
                str(tmp_path / "o.parquet"),
            ]
        )
    assert exited.value.code == 2 and "cannot mix" in capsys.readouterr().err
    assert not (tmp_path / "o.parquet").exists()


def test_representation_and_recipe_mismatch_are_refused_together(survey_real, sky_set, tmp_path) -> None:
    def edit(p: dict) -> None:
        p["xp_representation"] = "svd-proj-1e-3-v9"
        p["features_version"] = "0"

    other = _rewrite(sky_set, tmp_path / "other.parquet", provenance_edit=edit)
    with pytest.raises(ValueError) as err:
        build_mixed(survey_real, other)
    msg = str(err.value)
    assert "xp_representation: real 'svd-proj-1e-5-v1', synthetic 'svd-proj-1e-3-v9'" in msg
    assert "features_version: real '1', synthetic '0'" in msg

    missing = _rewrite(
        sky_set, tmp_path / "missing.parquet", provenance_edit=lambda p: p.pop("xp_representation")
    )
    with pytest.raises(ValueError, match=r"xp_representation: real 'svd-proj-1e-5-v1', synthetic None"):
        build_mixed(survey_real, missing)


def test_swapped_inputs_shared_ids_and_mixed_inputs_are_refused(survey_real, sky_set, tmp_path) -> None:
    with pytest.raises(ValueError, match=r"holds rows of origin 'synthetic'.*swapped"):
        build_mixed(sky_set, survey_real)
    # a real star carrying a simulated star's id
    sky_id = int(_col(pq.read_table(sky_set), "source_id")[0])

    def take_id(t: pa.Table) -> pa.Table:
        ids = _col(t, "source_id").copy()
        ids[0] = sky_id
        return t.set_column(t.column_names.index("source_id"), "source_id", pa.array(ids))

    clash = _rewrite(survey_real, tmp_path / "clash.parquet", table_edit=take_id)
    with pytest.raises(ValueError, match=rf"1 source_id\(s\) occur in both inputs \(e.g. \[{sky_id}\]\)"):
        build_mixed(clash, sky_set)
    # a mixed file is not an input
    mixed = str(tmp_path / "mixed.parquet")
    write_training_set(build_mixed(survey_real, sky_set).table, mixed)
    with pytest.raises(ValueError, match=r"already has the column\(s\) \['data_source', 'mix_copy'\]"):
        build_mixed(survey_real, mixed)
    with pytest.raises(FileNotFoundError, match=r"synthetic training set 'nope\.parquet' does not exist"):
        build_mixed(survey_real, "nope.parquet")


def test_a_real_split_that_breaks_its_rule_is_refused(survey_real, sky_set, tmp_path) -> None:
    """Moving the real test star into the training split is caught, and named as a test-split leak."""

    def leak(t: pa.Table) -> pa.Table:
        split = _col(t, "split").astype(object)
        assert list(split).count("test") == 1
        split[split == "test"] = "train"
        return t.set_column(t.column_names.index("split"), "split", pa.array(split.tolist()))

    leaked = _rewrite(survey_real, tmp_path / "leak.parquet", table_edit=leak)
    with pytest.raises(
        ValueError,
        match=r"disagrees with its recorded rule .* for 1 stars \(1 of them belong to the test split\)",
    ):
        build_mixed(leaked, sky_set)


@needs_dev
def test_real_apogee_split_is_kept_exactly(dev_slice, sky_set) -> None:
    """No real test star reaches training: the real rows keep the shipped APOGEE×XP dev split."""
    b = build_mixed(dev_slice, sky_set, synthetic_weight=3.0)
    t = b.table
    real = _col(t, "data_source") == "real"
    sid, split = _col(t, "source_id")[real], _col(t, "split")[real]
    ship_id, ship_split = read_default_split()
    pos = np.searchsorted(ship_id, sid)
    np.testing.assert_array_equal(ship_id[pos], sid)
    np.testing.assert_array_equal(split, ship_split[pos])
    test_ids = set(sid[split == "test"].tolist())
    assert len(test_ids) > 10
    assert b.summary["sources"]["real"]["rows"] == b.summary["sources"]["real"]["split_counts"]
    assert np.all(_col(t, "mix_copy")[real] == 0)  # real stars are never replicated
    out = str(Path(dev_slice).with_name("mixed_dev.parquet"))
    write_training_set(t, out, overwrite=True)
    assert not test_ids & set(read_training_set(out, split="train").source_id.tolist())
    assert not test_ids & set(read_training_set(out, split="val").source_id.tolist())
    # tokens the real file lacks stay absent (NaN); the simulated stars carry them
    values = read_training_set(out).values
    source = _col(pq.read_table(out, columns=["data_source"]), "data_source")
    for name in SKY_ONLY:
        j = VOCAB.index(name)
        assert np.isnan(values[source == "real", j]).all(), name
        assert np.isfinite(values[source == "synthetic", j]).mean() > 0.9, name


# --- the CLI ------------------------------------------------------------------------------------------


def test_cli_mixed(survey_real, sky_set, tmp_path, capsys) -> None:
    out = str(tmp_path / "mixed.parquet")
    argv = ["build-dataset", "mixed", "--real", survey_real, "--synthetic", sky_set, "--output", out]
    assert _cli([*argv, "--synthetic-weight", "1.5", "--max-synthetic", "30"]) == 0
    prov = read_training_set(out).provenance
    assert prov["weighting"]["synthetic_weight"] == 1.5 and prov["weighting"]["max_synthetic"] == 30
    assert prov["sources"]["synthetic"]["stars_after_cap"] == 30
    with pytest.raises(SystemExit) as exited:
        _cli(argv)
    assert exited.value.code == 2 and "--overwrite" in capsys.readouterr().err
    for bad in (["--synthetic-weight", "-1"], ["--synthetic-weight", "inf"], ["--max-synthetic", "-3"]):
        with pytest.raises(SystemExit) as err:
            _cli([*argv, "--overwrite", *bad])
        assert err.value.code == 2  # argparse usage error


def test_cli_synthetic_with_tokens(tmp_path) -> None:
    out = str(tmp_path / "sky.parquet")
    sky = str(files("xpengine") / "data" / "sky")
    assert (
        _cli(["build-dataset", "synthetic", "--sky", sky, "--with-tokens", "alpha_m", "--output", out]) == 0
    )
    arrays = read_training_set(out)
    assert arrays.vocabulary.names == VOCAB.names
    assert "alpha_m_err" not in pq.read_schema(out).names  # [α/M] is a token here, not an extra column
    assert np.isfinite(arrays.values[:, VOCAB.index("alpha_m")]).sum() > 0
    with pytest.raises(SystemExit):
        _cli(
            [
                "build-dataset",
                "synthetic",
                "--sky",
                sky,
                "--with-tokens",
                "mass",
                "--output",
                out,
                "--overwrite",
            ]
        )


# --- training on the mixed set ------------------------------------------------------------------------


@needs_dev
def test_training_on_the_mixed_set_learns_mass_and_age_from_the_simulated_stars(
    dev_slice, sky_set, tmp_path
) -> None:
    """gaia_xp_cpu.yaml's tokens with the tiny model, 2 epochs: the checkpoint lists the real labels and
    mass / ln age (which only the simulated stars have) as learned outputs."""
    from xpengine.model.checkpoint import load_checkpoint
    from xpengine.train.config import load_train_config
    from xpengine.train.loop import learned_tokens, train

    data = str(tmp_path / "mixed.parquet")
    write_training_set(build_mixed(dev_slice, sky_set, synthetic_weight=2.0).table, data)
    # the tiny model cannot start from apogee-xp's small-preset weights: init_from off
    overrides = [
        "model=tiny",
        "epochs=2",
        "batch_size=64",
        "val_every=2",
        "checkpoint_every=2",
        "init_from=null",
    ]
    overrides += ["device=cpu", "precision=fp32", "weights_dtype=float32", f"data_path={data}"]
    cfg = load_train_config(CONFIGS / "train" / "gaia_xp_cpu.yaml", overrides)
    tr = read_training_set(data, split="train")
    va = read_training_set(data, split="val", vocabulary=tr.vocabulary)
    result = train(cfg, tr, va, output_dir=tmp_path / "run")
    wanted = {"teff", "logg", "m_h", "alpha_m", "mass", "ln_age", "g_fakemag", "logebv"}
    ck = load_checkpoint(result.model_dir)
    assert ck.learned.recorded and wanted <= set(ck.learned.outputs)
    assert set(ck.learned.outputs) == wanted  # labels only: XP coefficients are not requested
    assert {"mass", "ln_age"} <= set(ck.learned.inputs)
    last = result.history[-1]
    for name in ("teff", "mass", "ln_age", "alpha_m"):
        assert np.isfinite(last[f"val_sigma_{name}"]), name
    # the real stars alone would not teach mass or age: the simulated ones do
    real_only = read_training_set(dev_slice, split="train")
    alone = learned_tokens(real_only.values, VOCAB, list(cfg.requestable))
    assert not {"mass", "ln_age", "g_fakemag", "logebv"} & set(alone.outputs)


def test_synthetic_drop_leaves_tokens_missing_in_synthetic_training_rows_only(survey_real, sky_set) -> None:
    b = build_mixed(survey_real, sky_set, synthetic_drop=["m_h", "alpha_m"])
    t = b.table
    syn = _col(t, "data_source") == "synthetic"
    train = _col(t, "split") == "train"
    assert (_col(t, "m_h_error")[syn & train] == 0).all()  # the schema's "unknown" error
    for name in ("m_h", "alpha_m"):
        v = _col(t, name).astype(float)
        assert np.isnan(v[syn & train]).all()
        assert np.isfinite(v[syn & ~train]).any() and np.isfinite(v[~syn & train]).any()
    np.testing.assert_array_equal(
        _col(t, "teff")[syn & train], _col(build_mixed(survey_real, sky_set).table, "teff")[syn & train]
    )
    assert b.summary["weighting"]["synthetic_dropped_tokens"] == ["m_h", "alpha_m"]
    assert b.summary["sources"]["synthetic"]["finite_train_rows"]["m_h"] == 0
    with pytest.raises(ValueError, match=r"\['nope'\] are not tokens"):
        build_mixed(survey_real, sky_set, synthetic_drop=["nope"])


def test_synthetic_truth_gives_every_synthetic_row_the_true_label_with_error_zero(
    survey_real, sky_set
) -> None:
    plain = build_mixed(survey_real, sky_set).table
    b = build_mixed(survey_real, sky_set, synthetic_truth=["mass", "ln_age"])
    t = b.table
    syn = _col(t, "data_source") == "synthetic"
    assert syn.any() and (~syn).any()
    for name, column, f in (("mass", "truth_mass", lambda x: x), ("ln_age", "truth_age_gyr", np.log)):
        v = _col(t, name).astype(float)
        np.testing.assert_allclose(v[syn], f(_col(t, column).astype(float)[syn]), rtol=1e-6)
        assert (_col(t, f"{name}_error")[syn] == 0).all()
        # the survey-like labels differ from the truth, and the real rows are untouched
        assert not np.allclose(v[syn], _col(plain, name).astype(float)[syn], equal_nan=True)
        np.testing.assert_array_equal(v[~syn], _col(plain, name).astype(float)[~syn])
    np.testing.assert_array_equal(_col(t, "teff"), _col(plain, "teff"))
    assert b.summary["weighting"]["synthetic_truth_tokens"] == ["mass", "ln_age"]
    with pytest.raises(ValueError, match=r"\['jk'\] have no truth column"):
        build_mixed(survey_real, sky_set, synthetic_truth=["jk"])


def test_synthetic_truth_can_keep_the_survey_label_errors(survey_real, sky_set) -> None:
    plain = build_mixed(survey_real, sky_set).table
    t = build_mixed(survey_real, sky_set, synthetic_truth=["ln_age"], synthetic_truth_errors="keep").table
    syn = _col(t, "data_source") == "synthetic"
    np.testing.assert_allclose(
        _col(t, "ln_age").astype(float)[syn], np.log(_col(t, "truth_age_gyr").astype(float)[syn]), rtol=1e-6
    )
    np.testing.assert_array_equal(_col(t, "ln_age_error"), _col(plain, "ln_age_error"))
    with pytest.raises(ValueError, match="must be 'zero' or 'keep'"):
        build_mixed(survey_real, sky_set, synthetic_truth=["ln_age"], synthetic_truth_errors="half")


def test_mixing_two_metallicities_in_m_h_is_warned(survey_real, sky_set, tmp_path, caplog) -> None:
    """Real stars labelled by APOGEE [Fe/H] and simulated stars by the total metallicity: a warning unless the
    synthetic rows' m_h is dropped."""
    fe_real = _rewrite(
        survey_real, tmp_path / "fe_real.parquet", provenance_edit=lambda p: p.update(m_h_source="fe_h")
    )
    with caplog.at_level(logging.WARNING, logger="xpengine.datasets.label_edits"):
        build_mixed(fe_real, sky_set)
    assert any("total metallicity" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="xpengine.datasets.label_edits"):
        build_mixed(fe_real, sky_set, synthetic_drop=["m_h"])
        build_mixed(survey_real, sky_set)  # a real file that does not say its m_h is [Fe/H]
    assert not any("total metallicity" in r.getMessage() for r in caplog.records)
