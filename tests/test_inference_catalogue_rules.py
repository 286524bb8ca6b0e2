"""The catalogue predictor's rules that a review of session 17 found broken, each on the bundled gaia-xp
and real or bundled data:

- a pseudo-luminosity above the model's training range (a dwarf's parallax, for a model whose parallaxes
  were simulated giants') is left out of the star's context (PARALLAX_LEFT_OUT,
  `xpengine.model.luminosity_domain`);
- OUTSIDE_TRAINING_DOMAIN does not depend on which labels were asked for;
- `n_input_tokens` counts the tokens the model is given, not every finite token of the row;
- every model pass, the second g_fakemag pass included, gets the stars' G (the calibration's G bins), and
  G_FROM_XP rows use their synthetic G there;
- a missing gaia_source BP−RP is filled from the XP (BP_RP_FROM_XP).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _sky_inputs import sky_token_batch

from xpengine import io
from xpengine.catalog.flag_policy import FlagPolicy, confident_dwarf, outside_by_measurement
from xpengine.features.flags import SourceFlag, has_flag
from xpengine.inference.catalogue import CatalogPredictor, catalogue_batch
from xpengine.inference.input_tables import xp_input_table
from xpengine.inference.predictor import Predictor
from xpengine.model.luminosity_domain import A_G_OVER_E_BP_RP, index_max_from_training, outside_domain
from xpengine.model.metadata import LUMINOSITY_DOMAIN_KEY, LearnedTokens, _learned_from_config
from xpengine.spectra.representation import token_representation

DATA = Path(__file__).parent / "data" / "gaia_xp"
SKY = Path(__file__).parents[1] / "xpengine" / "data" / "sky"
SCO = DATA / "18Sco-XP-spectra.csv"  # the solar twin 18 Sco, real DR3 XP
SCO_PARALLAX = {"g_mag": 5.33, "parallax": 70.74, "parallax_error": 0.06, "ruwe": 1.0}


@pytest.fixture(scope="module")
def gaia_xp() -> Predictor:
    return Predictor.load("gaia-xp", device="cpu")


@pytest.fixture(scope="module")
def sky() -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    """The first bundled-sky partition as the job's token batch (gaia-xp's vocabulary), with its truth."""
    chunk = sky_token_batch("gaia-xp")
    truth = pd.read_parquet(SKY / "truth.parquet").set_index("source_id").loc[chunk["source_id"]]
    return chunk, truth


def test_luminosity_domain_index_and_test():
    rng = np.random.default_rng(1)
    abs_g = rng.uniform(-2.0, 1.0, 5000)  # giants
    bprp = rng.uniform(1.0, 1.6, 5000)
    fakemag = 10 ** (0.2 * abs_g + 2)
    q_max, n = index_max_from_training(fakemag, 0.01 * fakemag, bprp)
    assert n == 5000
    assert q_max == pytest.approx(np.quantile(abs_g - A_G_OVER_E_BP_RP * bprp, 0.999), abs=1e-9)
    assert index_max_from_training(fakemag[:50], 0.01 * fakemag[:50], bprp[:50]) is None
    # extinction moves a giant along the index's reddening vector: it stays inside; a dwarf is outside;
    # a noisy or non-positive fakemag, or a missing colour, is never outside
    ebv = 1.5
    f_red = 10 ** (0.2 * (0.5 + 2.740 * ebv) + 2)
    f_dwarf = 10 ** (0.2 * 4.7 + 2)
    out = outside_domain(
        q_max,
        np.array([f_red, f_dwarf, f_dwarf, -50.0, f_dwarf]),
        np.array([1.0, 1.0, 0.6 * f_dwarf, 10.0, 1.0]),
        np.array([1.2 + 1.339 * ebv, 0.82, 0.82, 0.82, np.nan]),
        np.array([0.001, 0.001, 0.001, 0.001, 0.0]),
    )
    np.testing.assert_array_equal(out, [False, True, False, False, False])
    assert outside_domain(None, np.ones(1), np.ones(1), np.ones(1), np.ones(1)) is None


def test_luminosity_domain_round_trips_through_config(gaia_xp):
    learned = dataclasses.replace(gaia_xp.learned, luminosity_index_max=0.75, luminosity_n_stars=123)
    config = learned.to_config()
    assert config[LUMINOSITY_DOMAIN_KEY]["index_max"] == 0.75
    back = _learned_from_config(config, gaia_xp.vocabulary, Path("x"))
    assert back.luminosity_index_max == 0.75 and back.luminosity_n_stars == 123
    with pytest.raises(ValueError, match=LUMINOSITY_DOMAIN_KEY):
        _learned_from_config(
            {**config, LUMINOSITY_DOMAIN_KEY: {"index_max": "x"}}, gaia_xp.vocabulary, Path("x")
        )
    assert LearnedTokens(outputs=(), inputs=()).to_config().get(LUMINOSITY_DOMAIN_KEY) is None
    # the bundled model records its own (training/record_unseen_inputs.py on its training set)
    assert 0.0 < gaia_xp.learned.luminosity_index_max < 2.0


@pytest.mark.slow
def test_dwarfs_parallax_left_out_giants_keep_it(gaia_xp, sky):
    batch, truth = sky
    batch, truth = {k: v[:600] for k, v in batch.items()}, truth.iloc[:600]
    fm = gaia_xp.vocabulary.index("g_fakemag")
    has_fm = np.isfinite(batch["values"][:, fm])
    cat = CatalogPredictor(gaia_xp, None, device="cpu")(batch)
    left = has_flag(cat["flags"], SourceFlag.PARALLAX_LEFT_OUT)
    dwarf = has_fm & (truth.logg.to_numpy() > 4.0)
    giant = has_fm & (truth.logg.to_numpy() < 3.5)
    assert dwarf.sum() > 100 and giant.sum() > 5
    assert left[dwarf].mean() > 0.9
    assert not left[giant].any()
    assert not left[~has_fm].any()
    assert has_flag(cat["flags"][left], SourceFlag.OUTSIDE_TRAINING_DOMAIN).all()
    # the left-out stars get what they get without a parallax: the same as with g_fakemag removed
    values = batch["values"].copy()
    values[:, fm] = np.nan
    bare = CatalogPredictor(gaia_xp, None, device="cpu")({**batch, "values": values})
    for lab in ("teff", "logg", "m_h"):
        np.testing.assert_allclose(cat[lab][left], bare[lab][left], rtol=1e-5)
    # and their Teff is that good, not the untrained answer of a dwarf's pseudo-luminosity in the context
    d = cat["teff"][dwarf] - truth.teff.to_numpy()[dwarf]
    assert 1.4826 * np.median(np.abs(d - np.median(d))) < 250.0


def test_18sco_parallax_left_out(gaia_xp):
    xp = io.read_xp_continuous(SCO)
    plain = gaia_xp.from_xp(xp, g_mag=5.33)
    with_plx = gaia_xp.from_xp(xp, zero_point_fallback=-0.017, **SCO_PARALLAX)
    assert "PARALLAX_LEFT_OUT" in with_plx.flag_names[0]
    assert "DISTANCE_FROM_PARALLAX" in with_plx.flag_names[0]
    for lab in ("teff", "logg", "m_h"):
        assert with_plx[lab][0] == pytest.approx(plain[lab][0], rel=1e-5)
    assert abs(with_plx.logg[0] - 4.44) < 2 * with_plx.logg_error[0]  # literature logg 4.44
    # a context without the pseudo-luminosity has nothing to leave out: no flag
    no_fm = CatalogPredictor(gaia_xp, None, device="cpu", inputs=["bp0..29", "rp0..29", "bprp", "jh", "jk"])
    table = xp_input_table(
        xp,
        {"phot_g_mean_mag": 5.33, "parallax": 70.74, "parallax_error": 0.06, "ruwe": 1.0},
        sampling=None,
        source_id=None,
    )
    out = no_fm(
        catalogue_batch(
            table, gaia_xp.vocabulary, representation=token_representation(), zero_point_fallback=-0.017
        )
    )
    assert not has_flag(out["flags"], SourceFlag.PARALLAX_LEFT_OUT).any()
    assert has_flag(out["flags"], SourceFlag.OUTSIDE_TRAINING_DOMAIN).all()


def test_bp_rp_filled_from_xp(gaia_xp):
    xp = io.read_xp_continuous(SCO)
    table = xp_input_table(xp, {"phot_g_mean_mag": 5.33}, sampling=None, source_id=None)
    batch = catalogue_batch(table, gaia_xp.vocabulary, representation=token_representation())
    assert has_flag(batch["flags"], SourceFlag.BP_RP_FROM_XP).all()
    assert not has_flag(batch["flags"], SourceFlag.NO_BP_RP_COLOUR | SourceFlag.G_FROM_XP).any()
    c = batch["values"][0, gaia_xp.vocabulary.index("bprp")]
    assert 0.75 < c < 0.87  # 18 Sco: DR3 BP−RP ≈ 0.81
    given = xp_input_table(xp, {"phot_g_mean_mag": 5.33, "bp_rp": 0.9}, sampling=None, source_id=None)
    b2 = catalogue_batch(given, gaia_xp.vocabulary, representation=token_representation())
    assert not has_flag(b2["flags"], SourceFlag.BP_RP_FROM_XP).any()
    assert b2["values"][0, gaia_xp.vocabulary.index("bprp")] == pytest.approx(0.9)


@pytest.mark.slow
def test_domain_flag_does_not_depend_on_the_labels(gaia_xp, sky):
    batch, _ = sky
    batch = {k: v[:150] for k, v in batch.items()}
    flags = {}
    for labels in (None, ["mass", "age"], ["teff", "mass", "age"], ["logg", "age"]):
        out = CatalogPredictor(gaia_xp, labels, device="cpu")(batch)
        flags[str(labels)] = has_flag(out["flags"], SourceFlag.OUTSIDE_TRAINING_DOMAIN)
        assert not {"teff", "logg"} - set(labels or ["teff", "logg"]) & set(out)  # no extra columns
    ref = flags["None"]
    assert ref.any() and not ref.all()
    for got in flags.values():
        np.testing.assert_array_equal(got, ref)
    sco = gaia_xp.from_xp(io.read_xp_continuous(SCO), g_mag=5.33, labels=["mass", "age"])
    assert "OUTSIDE_TRAINING_DOMAIN" in sco.flag_names[0]


def test_n_input_tokens_counts_the_context(gaia_xp, sky):
    batch, _ = sky
    batch = {k: v[:50].copy() for k, v in batch.items()}
    vocab = gaia_xp.vocabulary
    context = vocab.indices(list(gaia_xp.default_inputs))
    values = batch["values"]
    values[0, :] = np.nan
    values[0, vocab.index("bp40")] = 0.01  # a finite token the model is never given
    cat = CatalogPredictor(gaia_xp, None, device="cpu")(batch)
    assert cat["n_input_tokens"][0] == 0
    assert has_flag(cat["flags"][:1], SourceFlag.NO_PREDICTION).all()
    assert np.isnan(cat["teff"][0])
    left = has_flag(cat["flags"], SourceFlag.PARALLAX_LEFT_OUT)
    expect = np.isfinite(values[:, context]).sum(axis=1) - left
    np.testing.assert_array_equal(cat["n_input_tokens"][1:], expect[1:])
    assert cat["n_input_tokens"].max() <= len(context)


@pytest.mark.slow
def test_every_pass_gets_g_and_g_from_xp_rows_use_their_synthetic_g(gaia_xp, sky, monkeypatch):
    batch, _ = sky
    batch = {k: v[:200] for k, v in batch.items()}
    calls = []
    real = gaia_xp.predict

    def spy(values, errors=None, request=None, **kw):
        calls.append((list(request), kw.get("g_mag")))
        return real(values, errors, request, **kw)

    monkeypatch.setattr(gaia_xp, "predict", spy)
    CatalogPredictor(gaia_xp, None, device="cpu")(batch)
    assert any(req == ["g_fakemag"] for req, _ in calls)  # the second pass ran
    assert all(g is not None and np.isfinite(g).all() for _, g in calls)
    monkeypatch.undo()
    # a star without gaia_source G: the catalogue's σ is the one its synthetic G gives
    xp = io.read_xp_continuous(SCO)
    table = xp_input_table(xp, {}, sampling=None, source_id=None)
    b = catalogue_batch(table, gaia_xp.vocabulary, representation=token_representation())
    assert has_flag(b["flags"], SourceFlag.G_FROM_XP).all() and np.isnan(b["phot_g_mean_mag"]).all()
    assert abs(b["g_used"][0] - 5.33) < 0.05
    cat = CatalogPredictor(gaia_xp, None, device="cpu")(b)
    as_if_given = CatalogPredictor(gaia_xp, None, device="cpu")({**b, "phot_g_mean_mag": b["g_used"]})
    for lab in ("mass_error", "age_error", "teff_error"):
        assert cat[lab][0] == pytest.approx(as_if_given[lab][0], rel=1e-6)
    assert np.isnan(cat["phot_g_mean_mag"][0])  # the output column stays gaia_source's


def test_confident_dwarf_is_dereddened():
    limit_abs_g = 3.5
    f = np.array([10 ** (0.2 * (3.5 + 1.0) + 2)])  # M_G,obs 4.5: a dwarf, or a giant behind A_G ≥ 1
    sf = np.array([1.0])
    assert confident_dwarf(f, sf, 1, limit_abs_g)[0]
    assert not confident_dwarf(f, sf, 1, limit_abs_g, ebv=np.array([0.5]))[0]  # A_G 1.37: M_G,0 3.13
    assert confident_dwarf(f, sf, 1, limit_abs_g, ebv=np.array([np.nan]))[0]  # unknown: no dereddening
    # the branch without a parallax now agrees with the one with it for the same reddened star
    out, _ = outside_by_measurement(
        FlagPolicy(),
        g=np.array([15.0]),
        dist=np.array([np.nan]),
        by_parallax=np.array([False]),
        fakemag=f,
        fakemag_error=sf,
        logebv=np.log(np.array([0.5])),
    )
    assert not out[0]


def test_training_records_the_luminosity_domain(gaia_xp):
    """`TrainData.build` records the domain of the stars it trains on (`with_luminosity_domain`), so
    `save_checkpoint` writes it; without g_fakemag among the learned inputs there is none."""
    from xpengine.train.train_data import with_luminosity_domain

    vocab = gaia_xp.vocabulary
    rng = np.random.default_rng(2)
    n = 400
    values = np.full((n, len(vocab)), np.nan, dtype=np.float32)
    errors = np.zeros_like(values)
    abs_g, bprp = rng.uniform(-1, 1, n), rng.uniform(1.0, 1.5, n)
    values[:, vocab.index("g_fakemag")] = 10 ** (0.2 * abs_g + 2)
    errors[:, vocab.index("g_fakemag")] = 0.02 * values[:, vocab.index("g_fakemag")]
    values[:, vocab.index("bprp")] = bprp
    learned = LearnedTokens(outputs=("teff",), inputs=("bprp", "g_fakemag"))
    got = with_luminosity_domain(learned, values, errors, vocab)
    assert got.luminosity_n_stars == n
    assert got.luminosity_index_max == pytest.approx(
        np.quantile(abs_g - A_G_OVER_E_BP_RP * bprp, 0.999), abs=1e-4
    )
    no_fm = LearnedTokens(outputs=("teff",), inputs=("bprp",))
    assert with_luminosity_domain(no_fm, values, errors, vocab).luminosity_index_max is None


def test_a_star_without_an_xp_band_gets_no_prediction_but_keeps_its_measurements(gaia_xp, sky):
    """Review of session 32: with one band removed, stars outside the giant domain came out thousands of
    K off with σ that did not say so; training never showed the model a star without a band. Such a row
    is written with NO_PREDICTION beside NO_BP / NO_RP; its parallax distance, a measurement, is kept, and
    the other stars of the batch are untouched."""
    batch, _ = sky
    batch = {k: v[:200] for k, v in batch.items()}
    full = CatalogPredictor(gaia_xp, None, device="cpu")(batch)
    vocab = gaia_xp.vocabulary
    rp_cols = [i for i, name in enumerate(vocab.names) if name.startswith("rp")]
    values, flags = batch["values"].copy(), batch["flags"].copy()
    cut = np.arange(200) < 40
    values[np.ix_(cut, rp_cols)] = np.nan
    flags[cut] |= int(SourceFlag.NO_RP)
    cat = CatalogPredictor(gaia_xp, None, device="cpu")({**batch, "values": values, "flags": flags})
    assert has_flag(cat["flags"][cut], SourceFlag.NO_PREDICTION).all()
    for lab in ("teff", "logg", "m_h", "mass", "age"):
        assert np.isnan(cat[lab][cut]).all() and np.isnan(cat[f"{lab}_error"][cut]).all()
    assert (cat["n_input_tokens"][cut] == 0).all()  # the tokens the model was given
    assert not has_flag(cat["flags"][cut], SourceFlag.PARALLAX_LEFT_OUT).any()
    by_plx = has_flag(full["flags"][cut], SourceFlag.DISTANCE_FROM_PARALLAX)
    assert by_plx.sum() > 5
    np.testing.assert_array_equal(cat["distance_pc"][cut][by_plx], full["distance_pc"][cut][by_plx])
    assert not has_flag(cat["flags"][cut][~by_plx], SourceFlag.DISTANCE_FROM_MODEL).any()
    for lab in ("teff", "mass"):
        np.testing.assert_allclose(cat[lab][~cut], full[lab][~cut], rtol=1e-5)  # batch-size rounding
    # both bands gone (helper-91): the colours alone are no more a star the model learned
    bp_cols = [i for i, name in enumerate(vocab.names) if name.startswith("bp") and name != "bprp"]
    values[np.ix_(cut, bp_cols)] = np.nan
    flags[cut] |= int(SourceFlag.NO_BP)
    cat = CatalogPredictor(gaia_xp, None, device="cpu")({**batch, "values": values, "flags": flags})
    assert has_flag(cat["flags"][cut], SourceFlag.NO_PREDICTION).all() and np.isnan(cat["teff"][cut]).all()


def test_a_giants_logg_with_a_dwarfs_parallax_is_flagged(gaia_xp):
    """Review of session 32: Proxima Centauri (real DR3 XP), 1.30 pc by its parallax, reads logg
    1.3 ± 1.4 from a model that never saw an M dwarf; the row says that logg is wrong for it
    (GIANT_LOGG_DWARF_MG). 18 Sco, a dwarf read as one, is not flagged."""
    xp = io.read_xp_continuous(DATA / "XP_CONTINUOUS_RAW.csv")
    ids = xp.column("source_id").to_pylist()
    proxima = xp.slice(ids.index(5853498713190525696), 1)
    row = gaia_xp.from_xp(proxima, g_mag=8.984, parallax=768.0665, parallax_error=0.0499, ruwe=1.2)
    assert row.logg.iloc[0] + row.logg_error.iloc[0] < 3.5 and row.distance_pc.iloc[0] < 1.4
    assert "GIANT_LOGG_DWARF_MG" in row.flag_names.iloc[0]
    sco = gaia_xp.from_xp(io.read_xp_continuous(SCO), **SCO_PARALLAX)
    assert "DISTANCE_FROM_PARALLAX" in sco.flag_names.iloc[0]
    assert "GIANT_LOGG_DWARF_MG" not in sco.flag_names.iloc[0]
