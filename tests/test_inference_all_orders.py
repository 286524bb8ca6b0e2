"""The catalogue's every-order calibration (calibration format 5, flag ALL_XP_ORDERS), on the bundled gaia-xp
and the bundled sky: rows whose XP keep every order the model reads take the `all_orders` entries and the
flag; rows cut at their relevancy keep the standard entries, unchanged."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
from _sky_inputs import sky_token_batch

from xpengine.catalog.flag_policy import DEFAULT_FLAG_POLICY
from xpengine.features.flags import SourceFlag, has_flag
from xpengine.inference.predictor import Predictor
from xpengine.model.calibration import Calibration
from xpengine.model.checkpoint import resolve_model_path

SKY = Path(__file__).parents[1] / "xpengine" / "data" / "sky"

SHIFT = 0.5  # ln mass added on every-order rows by the test's own entry: unmistakable


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> tuple[Predictor, Predictor]:
    """gaia-xp without every-order entries, and the same with a mass entry that shifts ln mass by SHIFT."""
    root = tmp_path_factory.mktemp("models")
    out = []
    for name, every in (("standard", False), ("every", True)):
        d = root / name
        shutil.copytree(resolve_model_path("gaia-xp"), d)
        cal = Calibration.load(d / "calibration.json")
        cal.all_orders = {}
        if every:
            mass = cal.labels["mass"]
            shifts = tuple(s + SHIFT for s in mass.g_shifts)  # the standard shifts, plus SHIFT
            cal.all_orders = {"mass": dataclasses.replace(mass, g_shifts=shifts)}
        cal.save(d / "calibration.json", overwrite=True)
        out.append(Predictor.load(str(d), device="cpu"))
    return out[0], out[1]


def _sky_with_every_order(n: int = 240, every: int = 120):
    """The first bundled-sky partition's first N stars with their gaia_source columns; the first EVERY of
    them with their relevancy counts removed (every coefficient kept, as for a sampled spectrum)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from xpengine import io

    xp = io.read_xp_continuous(str(SKY / "XpContinuousMeanSpectrum_000000-003111.csv.gz")).slice(0, n)
    gs = io.read_gaia_source(str(SKY / "GaiaSource_000000-003111.csv.gz"))
    rows = pc.index_in(xp.column("source_id"), value_set=gs.column("source_id"))
    joined = xp
    for c in gs.column_names:
        if c not in xp.column_names:
            joined = joined.append_column(c, gs.column(c).take(rows))
    cut = np.arange(joined.num_rows) >= every  # the rows that keep their relevancy
    for c in ("bp_n_relevant_bases", "rp_n_relevant_bases"):
        col = joined.column(c)
        nulls = pa.nulls(joined.num_rows, type=col.type)
        i = joined.schema.get_field_index(c)
        joined = joined.set_column(i, c, pc.if_else(pa.array(cut), col, nulls))
    return joined, ~cut


def test_every_order_rows_take_their_entries_and_the_flag(models) -> None:
    standard, every = models
    table, nulled = _sky_with_every_order()
    # the model's own mass and age everywhere: the isochrones' (for stars outside the domain) take no entry
    policy = dataclasses.replace(DEFAULT_FLAG_POLICY, mass_age_from_isochrones=False)
    a = standard.from_xp(table, flag_policy=policy)
    b = every.from_xp(table, flag_policy=policy)
    assert (a.source_id.to_numpy() == b.source_id.to_numpy()).all()
    fa, fb = a["flags"].to_numpy(), b["flags"].to_numpy()
    predicted = np.isfinite(a["mass"].to_numpy())
    flagged = has_flag(fb, SourceFlag.ALL_XP_ORDERS)
    assert not has_flag(fa, SourceFlag.ALL_XP_ORDERS).any()  # no every-order entries: no flag
    # the rows read without relevancy counts (both bands, every order present), and no archive row: a
    # bright one whose relevancy reaches past the model's orders keeps the archive-like entries
    both = ~has_flag(fb, SourceFlag.NO_BP | SourceFlag.NO_RP)
    np.testing.assert_array_equal(flagged, nulled & predicted & both)
    assert flagged.sum() >= 50 and (~flagged & predicted).sum() >= 50
    np.testing.assert_allclose(b["mass"][flagged], a["mass"][flagged] * np.exp(SHIFT), rtol=1e-6)
    np.testing.assert_array_equal(b["mass"][~flagged], a["mass"][~flagged])
    for col in ("age", "age_error", "teff", "logg"):  # no every-order entry for them: unchanged
        np.testing.assert_array_equal(b[col].to_numpy(), a[col].to_numpy())
    np.testing.assert_array_equal(fb & ~np.int64(int(SourceFlag.ALL_XP_ORDERS)), fa)
    assert has_flag(fb[nulled], SourceFlag.NO_RELEVANCY).all()


def test_predict_takes_the_callers_mask_else_the_pattern_of_orders(models) -> None:
    """Predictor.predict: an explicit all_orders mask picks the entries row by row; without one, the rows
    whose context XP tokens are all finite take the every-order entries."""
    from xpengine.model.calibration import all_xp_orders

    _, every = models
    vocab = every.vocabulary
    xp = [t for t in every.default_inputs if t in set(vocab.xp_names)]
    assert len(xp) == 60  # gaia-xp v5 reads BP/RP 0–29
    batch = sky_token_batch("gaia-xp")
    v = batch["values"][:200].copy()
    g = np.asarray(batch["phot_g_mean_mag"][:200], dtype=np.float64)  # the shifts are per G bin
    cols = vocab.indices(xp)
    full = all_xp_orders(v, cols)
    i = int(np.flatnonzero(full)[0])
    v[i, vocab.index("bp40")] = np.nan  # an order the model never reads does not count
    assert all_xp_orders(v, cols)[i]
    req = ["mass"]
    none = every.predict(v, request=req, g_mag=g)["mass"]
    off = every.predict(v, request=req, g_mag=g, all_orders=False)["mass"]
    on = every.predict(v, request=req, g_mag=g, all_orders=True)["mass"]
    ok = np.isfinite(off) & np.isfinite(g)
    np.testing.assert_allclose(on[ok], off[ok] * np.exp(SHIFT), rtol=1e-6)
    np.testing.assert_array_equal(none, np.where(full, on, off))
    v[i, vocab.index("rp29")] = np.nan  # cut one order the model reads: no longer every order
    assert not all_xp_orders(v, cols)[i]
