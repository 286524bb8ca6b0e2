"""The isochrone mass and age of stars outside the model's mass/age domain (`xpengine.inference.isochrone_fit`)
and the catalogue's use of it (`CatalogPredictor`, `Predictor.from_xp`): MIST stars come back at their own
mass, the Sun and the solar twin 18 Sco at theirs, and the model's own values are untouched where the star
is inside the domain."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from xpengine.catalog.flag_policy import DEFAULT_FLAG_POLICY, high_uncertainty
from xpengine.features.flags import SourceFlag, has_flag
from xpengine.inference import isochrone_fit as fitmod
from xpengine.inference import isochrone_grid as gridmod

DATA = Path(__file__).parent / "data" / "gaia_xp"
MODEL_ONLY = dataclasses.replace(DEFAULT_FLAG_POLICY, mass_age_from_isochrones=False)


@pytest.fixture(scope="module")
def grid():
    return fitmod.load_fit_grid()


def _fit(grid, teff, st, logg, sg, mh, sm, mg=None, smg=None):
    a = [np.atleast_1d(np.asarray(v, dtype=np.float64)) for v in (teff, st, logg, sg, mh, sm)]
    extra = () if mg is None else (np.atleast_1d(np.float64(mg)), np.atleast_1d(np.float64(smg)))
    return {k: v[0] for k, v in fitmod.fit_isochrones(grid, *a, *extra).items()}


def test_the_grid_covers_the_catalogues_stars(grid) -> None:
    assert grid.teff.size > 200_000
    assert np.all(np.diff(grid.teff) >= 0)  # sorted: the Teff windows are slices
    assert grid.feh_nodes[0] == pytest.approx(-3.0) and grid.feh_nodes[-1] == pytest.approx(0.5)
    age = np.exp(grid.ln_age)
    assert age.min() == pytest.approx(0.1, rel=1e-3) and age.max() == pytest.approx(14.13, rel=1e-3)
    assert np.all(np.isfinite(grid.log_prior)) and grid.log_prior.max() == 0.0
    # the main sequence of a 4.5 Gyr solar isochrone: the Sun's M_G ≈ 4.67 near 5772 K, logg 4.44
    near = (np.abs(grid.teff - 5772) < 40) & (np.abs(grid.logg - 4.44) < 0.04) & (grid.feh == 0.0)
    assert near.any()
    assert np.median(grid.abs_g[near]) == pytest.approx(4.67, abs=0.25)


def test_the_sun_and_18_sco_come_back_at_their_mass(grid) -> None:
    sun = _fit(grid, 5772, 50, 4.438, 0.05, 0.0, 0.05, 4.67, 0.03)
    assert sun["mass"] == pytest.approx(1.0, abs=0.05)
    assert 0.02 < sun["mass_error"] < 0.08
    assert 2.0 < sun["age"] < 8.0  # a dwarf's age is weakly constrained, but not by an order of magnitude
    # 18 Sco (Gaia DR3 XP through gaia-xp: 5839 ± 230 K, 4.29 ± 0.22, +0.08 ± 0.09; literature 1.02 M☉)
    sco = _fit(grid, 5839, 230, 4.29, 0.22, 0.08, 0.09)
    assert sco["mass"] == pytest.approx(1.02, abs=0.1)
    assert sco["mass_error"] > 0.05  # Teff ± 230 K leaves the mass uncertain
    assert sco["age_error"] > 0.5 * sco["age"]


def test_mist_stars_are_recovered(grid) -> None:
    """Stars placed on MIST isochrones (the grid's own models, interpolated between its nodes) come back
    at their mass to a few per cent, and an old subgiant is told from a young one by its age."""
    from xpengine.simulate import isochrones as iso

    mass = np.array([0.7, 0.85, 1.0, 1.2, 1.4, 1.0, 1.0])
    log_age = np.array([9.6, 9.6, 9.5, 9.3, 9.0, 9.92, 9.2])
    feh = np.array([-0.6, -0.1, 0.1, 0.0, 0.2, -0.3, -0.3])
    s = iso.interpolate_mass(mass, log_age, feh)
    teff, logg = s["teff"], s["logg"]
    n = mass.size
    fit = fitmod.fit_isochrones(
        grid,
        teff,
        np.full(n, 60.0),
        logg,
        np.full(n, 0.06),
        feh,
        np.full(n, 0.05),
        s["abs_g"],
        np.full(n, 0.03),
    )
    np.testing.assert_allclose(fit["mass"], s["mass"], rtol=0.08)
    z = (fit["mass"] - s["mass"]) / fit["mass_error"]
    assert np.all(np.isfinite(s["mass"])) and np.all(np.abs(z) < 3)
    # the two 1.0 M☉ stars at [Fe/H] −0.3: 8.3 Gyr (a subgiant) and 1.6 Gyr (on the main sequence)
    assert fit["age"][5] > 2 * fit["age"][6]
    assert abs(np.log(fit["age"][5] / 10 ** (log_age[5] - 9))) < 0.35


def test_missing_inputs_and_stars_off_every_isochrone(grid) -> None:
    nan = np.nan
    out = fitmod.fit_isochrones(
        grid,
        np.array([nan, 5800.0, 5800.0, 30000.0]),
        np.array([100.0, 100.0, 100.0, 100.0]),
        np.array([4.4, nan, 4.4, 1.0]),
        np.array([0.1, 0.1, 0.1, 0.1]),
        np.array([0.0, 0.0, nan, 0.0]),
        np.array([0.1, 0.1, 0.1, 0.1]),
    )
    assert np.isnan(out["mass"][0])  # no Teff
    assert np.isfinite(out["mass"][1])  # no logg: Teff and [M/H] alone
    assert np.isnan(out["mass"][2])  # no [M/H]
    assert np.isnan(out["mass"][3]) and np.isnan(out["age"][3])  # 30,000 K at logg 1: no such star
    # logg alone moves the answer: without it a 5800 K star may be a subgiant
    with_logg = _fit(grid, 5800, 100, 4.4, 0.05, 0.0, 0.1)
    assert with_logg["mass_error"] < out["mass_error"][1]


def _assorted_stars(seed: int, n: int, m_g: bool = False) -> list[np.ndarray]:
    """Teff, σ, logg, σ, [M/H], σ (and M_G, σ) of n assorted stars, drawn in that order."""
    rng = np.random.default_rng(seed)
    bounds = [(4000, 7000), (60, 300), (2.0, 4.8), (0.05, 0.4), (-1.5, 0.4), (0.05, 0.2)]
    bounds += [(2, 7), (0.02, 0.3)] if m_g else []
    return [rng.uniform(lo, hi, n) for lo, hi in bounds]


def _no_mist():
    raise ImportError("the MIST isochrones come from the PyPI package lachesis-grids")


def test_the_grid_is_cached_on_disk(tmp_path, monkeypatch) -> None:
    gridmod._load_fit_grid.cache_clear()
    try:
        first = fitmod.load_fit_grid(str(tmp_path))
        files = list(tmp_path.glob("isochrone_fit_*.npz"))
        assert len(files) == 1
        gridmod._load_fit_grid.cache_clear()
        again = fitmod.load_fit_grid(str(tmp_path))
        for f in ("teff", "abs_g", "bp_rp", "mass", "log_prior", "feh_nodes"):
            np.testing.assert_array_equal(getattr(again, f), getattr(first, f))
        good = files[0].read_bytes()
        for damaged in (b"not an npz", good[: len(good) // 2]):  # a damaged cache is rebuilt, not trusted
            files[0].write_bytes(damaged)
            gridmod._load_fit_grid.cache_clear()
            rebuilt = fitmod.load_fit_grid(str(tmp_path))
            np.testing.assert_array_equal(rebuilt.mass, first.mass)
        assert not list(tmp_path.glob("*.tmp"))
        # a machine without the MIST packages (a GPU node) uses the cached grid, or says what to do
        gridmod._load_fit_grid.cache_clear()
        monkeypatch.setattr(gridmod, "_cache_key", _no_mist)
        np.testing.assert_array_equal(fitmod.load_fit_grid(str(tmp_path)).mass, first.mass)
        # a damaged newest copy (an interrupted copy onto the node) gives way to an older readable one
        newer = tmp_path / f"isochrone_fit_v{fitmod.GRID_VERSION}_zzzz.npz"
        newer.write_bytes(good[:1000])
        gridmod._load_fit_grid.cache_clear()
        np.testing.assert_array_equal(fitmod.load_fit_grid(str(tmp_path)).mass, first.mass)
        gridmod._load_fit_grid.cache_clear()
        with pytest.raises(ImportError, match="mass_age_from_isochrones: false"):
            fitmod.load_fit_grid(str(tmp_path / "empty"))
    finally:
        gridmod._load_fit_grid.cache_clear()


def test_18_sco_through_from_xp_gets_the_isochrone_mass() -> None:
    from xpengine import io
    from xpengine.inference.predictor import Predictor

    p = Predictor.load("gaia-xp", device="cpu")
    xp = io.read_xp_continuous(str(DATA / "18Sco-XP-spectra.csv"))
    labels = ["teff", "logg", "m_h", "mass", "age"]
    plx = dict(g_mag=5.35, parallax=70.64, parallax_error=0.07, zero_point_fallback=-0.017)
    errors = []
    for kw in ({}, plx):
        row = p.from_xp(xp, labels=labels, **kw).iloc[0]
        errors.append(row["mass_error"])
        assert has_flag(
            row["flags"], SourceFlag.OUTSIDE_TRAINING_DOMAIN | SourceFlag.MASS_AGE_FROM_ISOCHRONES
        )
        assert abs(row["mass"] - 1.02) < 2 * row["mass_error"]  # literature ≈ 1.02 M☉
        assert row["mass_error"] < 0.15
        old = p.from_xp(xp, labels=labels, flag_policy=MODEL_ONLY, **kw).iloc[0]
        assert not has_flag(old["flags"], SourceFlag.MASS_AGE_FROM_ISOCHRONES)
        assert old["mass"] > 1.8  # the model's extrapolation for a dwarf, which the isochrones replace
        for col in ("teff", "logg", "m_h"):
            assert row[col] == old[col]
    # the parallax's M_G narrows the mass (the model's E(B−V) dereddens it)
    assert errors[1] < 0.8 * errors[0]
    # an input E(B−V) (18 Sco is 14 pc away: 0.005 ± 0.005) dereddens its BP−RP, whose two-sided term
    # narrows the mass further; the model's own labels do not move
    plain = p.from_xp(xp, labels=labels).iloc[0]
    known = p.from_xp(xp, labels=labels, ebv=0.005, ebv_error=0.005).iloc[0]
    assert not has_flag(known["flags"], SourceFlag.NO_EXTINCTION)
    assert has_flag(known["flags"], SourceFlag.MASS_AGE_FROM_ISOCHRONES)
    assert abs(known["mass"] - 1.02) < 2 * known["mass_error"]
    assert known["mass_error"] < plain["mass_error"]
    for col in ("teff", "logg", "m_h"):
        assert known[col] == plain[col]
    # a map's 0 (or a negative value) near the Sun is an input E(B−V) of 0: its colour term counts, though
    # the ln E(B−V) token cannot hold it (NO_EXTINCTION); without any, the star keeps the one-sided bound
    zero = p.from_xp(xp, labels=labels, ebv=0.0, ebv_error=0.005).iloc[0]
    tiny = p.from_xp(xp, labels=labels, ebv=1e-6, ebv_error=0.005).iloc[0]
    below = p.from_xp(xp, labels=labels, ebv=-0.01, ebv_error=0.005).iloc[0]
    assert has_flag(zero["flags"], SourceFlag.NO_EXTINCTION) and not has_flag(
        tiny["flags"], SourceFlag.NO_EXTINCTION
    )
    assert zero["mass"] == below["mass"] and abs(zero["mass"] - tiny["mass"]) < 1e-3 * zero["mass_error"]
    assert zero["mass_error"] < plain["mass_error"]
    # an E(B−V) given without σ is not exact: it takes the default σ, 0.01 mag here
    bare = p.from_xp(xp, labels=labels, ebv=0.005).iloc[0]
    stated = p.from_xp(xp, labels=labels, ebv=0.005, ebv_error=0.01).iloc[0]
    assert bare["mass"] == stated["mass"] and bare["mass_error"] == stated["mass_error"]
    assert bare["mass_error"] > known["mass_error"]
    # ISOCHRONE_INPUT_EBV tells a fit with the input's E(B−V) (0 included) from one without any
    for row in (known, zero, below, tiny):
        assert has_flag(row["flags"], SourceFlag.ISOCHRONE_INPUT_EBV)
    assert not has_flag(plain["flags"], SourceFlag.ISOCHRONE_INPUT_EBV)
    # a placeholder (−99) is no E(B−V)
    none = p.from_xp(xp, labels=labels, ebv=-99.0).iloc[0]
    assert none["mass"] == plain["mass"] and none["mass_error"] == plain["mass_error"]
    assert not has_flag(none["flags"], SourceFlag.ISOCHRONE_INPUT_EBV)
    # an E(B−V) of 3 or 4 mag is more than 18 Sco's colour allows (BP−RP 0.81 at 5,800 K: ~0.1 at most):
    # both are held to that bound (EBV_COLOUR_BOUND), so both give about one answer; the held value dereddens
    # its G for the isochrone distance, so it is flagged as entering (since session 29; before, 3 and 4 mag
    # made a (BP−RP)₀ no isochrone meets and the star was refitted without it, its distance 5 mag off)
    wrong = [p.from_xp(xp, labels=labels, ebv=e, ebv_error=0.01).iloc[0] for e in (3.0, 4.0)]
    for row in wrong:
        assert has_flag(row["flags"], SourceFlag.MASS_AGE_FROM_ISOCHRONES | SourceFlag.EBV_COLOUR_BOUND)
        assert has_flag(row["flags"], SourceFlag.ISOCHRONE_INPUT_EBV)
        assert 8 < row["distance_pc"] < 25  # 14.1 pc; with 3 mag unbounded it came out 0.4 pc
    # (their σ is widened to (E − E_c)/2 before the bound, so the two differ a little)
    assert abs(wrong[0]["mass"] - wrong[1]["mass"]) < 0.05 * wrong[0]["mass_error"]
    assert wrong[0]["distance_pc"] == pytest.approx(wrong[1]["distance_pc"], rel=0.01)
    # the model's own fit (no isochrones) never carries it, whatever the input
    own = p.from_xp(xp, labels=labels, ebv=0.005, ebv_error=0.005, flag_policy=MODEL_ONLY).iloc[0]
    assert not has_flag(own["flags"], SourceFlag.ISOCHRONE_INPUT_EBV)
    # with its parallax, M_G is dereddened by that 0, not by the model's own E(B−V) (0.045 for 18 Sco)
    with_plx = [
        p.from_xp(xp, labels=labels, **plx, **e).iloc[0] for e in ({}, {"ebv": 0.0, "ebv_error": 0.005})
    ]
    assert with_plx[1]["mass"] != with_plx[0]["mass"]


DISTANCES_OTHER = SourceFlag.DISTANCE_FROM_PARALLAX | SourceFlag.DISTANCE_FROM_MODEL


def _sky_truth():
    from importlib.resources import files

    import pandas as pd

    path = files("xpengine") / "data" / "sky" / "truth.parquet"
    return pd.read_parquet(str(path), columns=["source_id", "distance_pc"]).set_index("source_id")


def _robust_sigma(x: np.ndarray) -> float:
    return float(1.4826 * np.median(np.abs(x - np.median(x))))


def test_only_stars_outside_the_domain_change() -> None:
    from _sky_inputs import sky_token_batch

    from xpengine.pipeline.predictor_stage import CatalogPredictor

    batch = sky_token_batch("gaia-xp")  # the partition's 1000 stars
    labels = ["teff", "logg", "m_h", "mass", "age"]
    new = CatalogPredictor("gaia-xp", labels, device="cpu")(batch)
    old = CatalogPredictor("gaia-xp", labels, device="cpu", flag_policy=MODEL_ONLY)(batch)
    iso = has_flag(new["flags"], SourceFlag.MASS_AGE_FROM_ISOCHRONES)
    outside = has_flag(new["flags"], SourceFlag.OUTSIDE_TRAINING_DOMAIN)
    assert iso.sum() > 100 and (~outside).sum() > 20
    assert not (iso & ~outside).any()
    for col in ("mass", "mass_error", "age", "age_error"):
        np.testing.assert_allclose(new[col][~iso], old[col][~iso], rtol=1e-5)  # more tokens per pass
        assert np.all(np.isfinite(new[col][iso]))
    for col in ("teff", "logg", "m_h"):
        np.testing.assert_allclose(new[col], old[col], rtol=1e-5)
    # the fitted rows without a significant parallax take the isochrone distance (DISTANCE_FROM_ISOCHRONES)
    # in place of the model's; every other row keeps its distance
    by_iso = has_flag(new["flags"], SourceFlag.DISTANCE_FROM_ISOCHRONES)
    assert by_iso.sum() > 50
    assert not (by_iso & ~iso).any() and not (by_iso & has_flag(new["flags"], DISTANCES_OTHER)).any()
    np.testing.assert_array_equal(by_iso, iso & ~has_flag(old["flags"], SourceFlag.DISTANCE_FROM_PARALLAX))
    np.testing.assert_allclose(new["distance_pc"][~by_iso], old["distance_pc"][~by_iso], rtol=1e-5)
    assert np.all(np.isfinite(new["distance_pc"][by_iso]) & (new["distance_pc_error"][by_iso] > 0))
    # against the sky's true distances, these stars' (dwarfs, most of them) isochrone distances are right
    # where the model's, learned on giants, were several times too far
    truth = _sky_truth().reindex(batch["source_id"])["distance_pc"].to_numpy()
    ratio_new = np.log(new["distance_pc"][by_iso] / truth[by_iso])
    had_model = by_iso & has_flag(old["flags"], SourceFlag.DISTANCE_FROM_MODEL)
    ratio_old = np.log(old["distance_pc"][had_model] / truth[had_model])
    assert had_model.sum() > 40 and np.median(ratio_old) > np.log(2.0)
    assert abs(np.median(ratio_new)) < 0.15 and _robust_sigma(ratio_new) < 0.3
    z = ratio_new / (new["distance_pc_error"][by_iso] / new["distance_pc"][by_iso])
    assert 0.6 < _robust_sigma(z) < 1.5
    # the other bits are the same; HIGH_UNCERTAINTY is judged on the columns written
    hu = int(SourceFlag.HIGH_UNCERTAINTY)
    iso_bits = int(
        SourceFlag.MASS_AGE_FROM_ISOCHRONES
        | SourceFlag.ISOCHRONE_INPUT_EBV
        | SourceFlag.DISTANCE_FROM_ISOCHRONES
        | SourceFlag.DISTANCE_FROM_MODEL
        | SourceFlag.NO_DISTANCE
        | SourceFlag.EBV_COLOUR_BOUND
        | SourceFlag.PARALLAX_CONFLICT
    )
    keep = ~np.int64(hu | iso_bits)
    # the isochrone step's own bits (an E(B−V) held to its colour, a parallax it dropped) on its rows only
    assert not (
        has_flag(new["flags"], SourceFlag.EBV_COLOUR_BOUND | SourceFlag.PARALLAX_CONFLICT) & ~iso
    ).any()
    # a star without any distance before may have the isochrones' now, never the other way round
    no_dist = [has_flag(r["flags"], SourceFlag.NO_DISTANCE) for r in (new, old)]
    assert not (no_dist[0] & ~no_dist[1]).any()
    np.testing.assert_array_equal(no_dist[0], ~np.isfinite(new["distance_pc"]))
    np.testing.assert_array_equal(new["flags"] & keep, old["flags"] & keep)
    # the sky's input E(B−V) (its logebv token) is what the fitted rows were dereddened with
    given = ~has_flag(new["flags"], SourceFlag.NO_EXTINCTION)
    assert (iso & given).sum() > 100
    np.testing.assert_array_equal(has_flag(new["flags"], SourceFlag.ISOCHRONE_INPUT_EBV), iso & given)
    out = {k: new[k] for k in new if k.split("_error")[0] in labels}
    np.testing.assert_array_equal(
        has_flag(new["flags"], SourceFlag.HIGH_UNCERTAINTY), high_uncertainty(DEFAULT_FLAG_POLICY, out)
    )
    # dwarfs of the sky: masses of main-sequence stars, not the giants' 1–3 M☉ the model extrapolates
    assert 0.6 < np.median(new["mass"][iso]) < 1.3


def test_the_coarse_grid_answers_as_the_fine_one_for_wide_sigma(grid) -> None:
    """Stars without M_G and with wide σ (Teff ≥ 150 K, logg ≥ 0.15) are fitted on the coarse grid (every
    fourth EEP); their answers stay within a few hundredths of their σ of the fine grid's."""
    assert grid.coarse is not None and grid.coarse.teff.size < grid.teff.size / 3
    rng = np.random.default_rng(3)
    n = 400
    teff = rng.uniform(3800, 7500, n)
    logg = np.where(rng.random(n) < 0.8, rng.uniform(3.8, 4.7, n), rng.uniform(1.5, 3.5, n))
    mh = rng.uniform(-1.5, 0.4, n)
    st, sg, sm = rng.uniform(150, 400, n), rng.uniform(0.15, 0.5, n), rng.uniform(0.05, 0.3, n)
    both = fitmod.fit_isochrones(grid, teff, st, logg, sg, mh, sm)
    fine = fitmod.fit_isochrones(dataclasses.replace(grid, coarse=None), teff, st, logg, sg, mh, sm)
    for k in ("mass", "ln_age"):
        ok = np.isfinite(fine[k])
        assert ok.mean() > 0.9
        np.testing.assert_array_equal(np.isfinite(both[k]), ok)
        d = np.abs(both[k][ok] - fine[k][ok]) / fine[f"{k}_error"][ok]
        assert np.percentile(d, 99) < 0.05 and d.max() < 0.1, (k, np.percentile(d, 99), d.max())
        r = np.abs(both[f"{k}_error"][ok] / fine[f"{k}_error"][ok] - 1)
        assert np.percentile(r, 99) < 0.03 and r.max() < 0.1, (k, np.percentile(r, 99), r.max())
    # with a colour bound (BP−RP within 0.1 mag of a dwarf's of that Teff; found by the session-22 review:
    # 0.04σ at the 99th percentile, the σ within 3.4 %)
    ms = np.flatnonzero(grid.logg > 4.0)
    near = ms[np.clip(np.searchsorted(grid.teff[ms], teff), 0, ms.size - 1)]
    colour = {"bp_rp": grid.bp_rp[near] + rng.uniform(-0.1, 0.1, n), "bp_rp_error": np.full(n, 0.02)}
    both = fitmod.fit_isochrones(grid, teff, st, logg, sg, mh, sm, **colour)
    fine = fitmod.fit_isochrones(dataclasses.replace(grid, coarse=None), teff, st, logg, sg, mh, sm, **colour)
    for k in ("mass", "ln_age"):
        ok = np.isfinite(fine[k])
        assert ok.mean() > 0.9
        d = np.abs(both[k][ok] - fine[k][ok]) / fine[f"{k}_error"][ok]
        assert np.percentile(d, 99) < 0.06 and d.max() < 0.12, (k, np.percentile(d, 99), d.max())
        r = np.abs(both[f"{k}_error"][ok] / fine[f"{k}_error"][ok] - 1)
        assert np.percentile(r, 99) < 0.05 and r.max() < 0.12, (k, np.percentile(r, 99), r.max())
    # with a sharp logg (or an M_G) a star keeps the fine grid
    sharp = fitmod.fit_isochrones(grid, teff[:5], st[:5], logg[:5], np.full(5, 0.05), mh[:5], sm[:5])
    ref = fitmod.fit_isochrones(
        dataclasses.replace(grid, coarse=None), teff[:5], st[:5], logg[:5], np.full(5, 0.05), mh[:5], sm[:5]
    )
    np.testing.assert_array_equal(sharp["mass"], ref["mass"])


def test_a_stars_answer_does_not_depend_on_the_stars_beside_it(grid) -> None:
    """Between the subgiant branch and the dwarfs (found by a review): the same star alone, beside a dwarf,
    and beside a star without logg gets one answer."""
    star = (4900.0, 150.0, 4.0, 0.15, -1.0, 0.05)
    mates = [None, (4950.0, 150.0, 4.7, 0.15, -1.0, 0.05), (4950.0, 150.0, np.nan, 0.15, -1.0, 0.05)]
    answers = []
    for mate in mates:
        cols = [np.array([a] if mate is None else [a, b]) for a, b in zip(star, mate or star, strict=True)]
        answers.append(fitmod.fit_isochrones(grid, *cols)["mass"][0])
    np.testing.assert_allclose(answers, answers[0], rtol=1e-5)
    # and in a batch of 300 assorted stars, as alone
    n = 300
    cols = _assorted_stars(5, n)
    batch = fitmod.fit_isochrones(grid, *cols)
    for i in range(0, n, 37):
        one = fitmod.fit_isochrones(grid, *(c[i : i + 1] for c in cols))
        np.testing.assert_allclose(
            [one["mass"][0], one["age"][0]], [batch["mass"][i], batch["age"][i]], rtol=1e-4
        )


def test_a_measured_m_g_wins_over_a_predicted_logg_no_isochrone_reconciles(grid) -> None:
    """A star predicted at logg 1.5 (a giant) whose parallax puts it at M_G 7.5 (a K dwarf): no isochrone has
    both, so the fit drops the predicted logg rather than the star."""
    out = fitmod.fit_isochrones(
        grid, *(np.array([v]) for v in (4400.0, 120.0, 1.5, 0.2, 0.0, 0.1, 7.0, 0.05))
    )
    assert 0.55 < out["mass"][0] < 0.85  # a K dwarf's mass, not a giant's


def test_the_torch_path_gives_the_numpy_answers(grid) -> None:
    """On a GPU node the catalogue runs the fit's arithmetic in torch beside the model: the same answers
    (checked here on the CPU device), NaN where numpy gives NaN."""
    cols = _assorted_stars(9, 300, m_g=True)
    cols[6][::3] = np.nan
    a = fitmod.fit_isochrones(grid, *cols)
    b = fitmod.fit_isochrones(grid, *cols, device="cpu")
    for k, err in (("mass", "mass_error"), ("ln_age", "ln_age_error")):
        ok = np.isfinite(a[k])
        assert ok.mean() > 0.8
        np.testing.assert_array_equal(np.isfinite(b[k]), ok)
        assert np.max(np.abs(a[k][ok] - b[k][ok]) / a[err][ok]) < 1e-3
        np.testing.assert_allclose(b[err][ok], a[err][ok], rtol=1e-3)


def test_cool_dwarfs_keep_the_fine_grid(grid) -> None:
    """Below COARSE_TEFF_MIN every fourth EEP is too coarse along the lower main sequence (0.16σ at the
    99th percentile at 3,300–3,800 K, found by a review): such stars are fitted on the fine grid even with
    wide σ and no M_G."""
    rng = np.random.default_rng(8)
    n = 60
    cols = [rng.uniform(3300, 4400, n), rng.uniform(150, 400, n), rng.uniform(4.3, 5.0, n)]
    cols += [rng.uniform(0.15, 0.5, n), rng.uniform(-1.0, 0.3, n), rng.uniform(0.05, 0.3, n)]
    both = fitmod.fit_isochrones(grid, *cols)
    fine = fitmod.fit_isochrones(dataclasses.replace(grid, coarse=None), *cols)
    assert np.isfinite(fine["mass"]).mean() > 0.9
    np.testing.assert_array_equal(both["mass"], fine["mass"])


def _one(grid, labels, **kw):
    return fitmod.fit_isochrones(grid, *[np.array([v], dtype=np.float64) for v in labels], **kw)


def test_the_colour_bound_makes_a_blue_star_hot(grid) -> None:
    """Gaia DR3 5762406957886626816's labels from XP alone (9,109 ± 2,798 K, logg 4.25 ± 0.37, [M/H] −0.51 ±
    0.58, no M_G): the IMF makes it a 0.8 M☉ dwarf, but its BP−RP of −0.29 allows no isochrone point cooler
    than ~10,000 K whatever its reddening; with the bound it is a young B/A star. Numpy and torch agree."""
    blue = (9109.0, 2798.0, 4.25, 0.37, -0.51, 0.58)
    free = _one(grid, blue)
    bound = _one(grid, blue, bp_rp=np.array([-0.29]), bp_rp_error=np.array([0.01]))
    in_torch = _one(grid, blue, bp_rp=np.array([-0.29]), bp_rp_error=np.array([0.01]), device="cpu")
    assert free["mass"][0] < 1.2, free
    assert bound["mass"][0] > 2.0 and bound["age"][0] < 1.0, bound
    assert abs(in_torch["mass"][0] - bound["mass"][0]) < 1e-3 * bound["mass_error"][0]
    # no colour (NaN) or an infinite σ is no bound; a colour with a NaN σ takes the floor's (0.03 mag)
    for c, e in ((np.nan, 0.01), (-0.29, np.inf)):
        assert _one(grid, blue, bp_rp=np.array([c]), bp_rp_error=np.array([e]))["mass"][0] == free["mass"][0]
    floor = _one(grid, blue, bp_rp=np.array([-0.29]), bp_rp_error=np.array([np.nan]))
    assert floor["mass"][0] == _one(grid, blue, bp_rp=np.array([-0.29]))["mass"][0] > 2.0


def test_a_reddened_colour_changes_nothing(grid) -> None:
    """MIST stars with a real star's colour at their Teff (`colour_scale`) seen through E(BP−RP) 0.3
    (observed colour redder than their own): every point the bound would cost is already 6–10σ away in Teff,
    so the answers are those without it (to 5e-3σ: real K dwarfs' colour climbs faster towards M than MIST's)."""
    rng = np.random.default_rng(12)
    pick = rng.choice(np.flatnonzero((grid.logg > 3.8) & (grid.teff > 4500) & (grid.teff < 7000)), 200)
    n = pick.size
    cols = [
        grid.teff[pick],
        np.full(n, 100.0),
        grid.logg[pick],
        np.full(n, 0.1),
        grid.feh[pick],
        np.full(n, 0.1),
    ]
    cols = [np.asarray(c, dtype=np.float64) for c in cols]
    free = fitmod.fit_isochrones(grid, *cols)
    real = grid.bp_rp[pick] + fitmod.colour_scale(grid.teff[pick], grid.logg[pick])[0]
    bound = fitmod.fit_isochrones(grid, *cols, bp_rp=real + 0.3, bp_rp_error=np.full(n, 0.02))
    ok = np.isfinite(free["mass"])
    assert ok.mean() > 0.95
    np.testing.assert_array_equal(np.isfinite(bound["mass"]), ok)
    for k in ("mass", "ln_age"):
        assert np.max(np.abs(bound[k][ok] - free[k][ok]) / free[f"{k}_error"][ok]) < 5e-3


def test_a_colour_no_isochrone_meets_is_dropped(grid) -> None:
    """A K giant's labels with a colour bluer than any K star (a blend, or a wrong match): no isochrone meets
    both, and the star is fitted without the colour rather than lost."""
    giant = (4500.0, 80.0, 2.5, 0.1, 0.0, 0.1)
    free = _one(grid, giant)
    bound = _one(grid, giant, bp_rp=np.array([-0.2]), bp_rp_error=np.array([0.01]))
    assert np.isfinite(free["mass"][0]) and bound["mass"][0] == free["mass"][0]


def test_a_bad_colour_is_dropped_before_a_good_logg(grid) -> None:
    """A MIST K giant (4,581 K, logg 2.49, M_G 0.99) given a blend's blue colour: no isochrone meets the colour,
    so the fit drops the colour and keeps the logg (the session-22 review found the logg dropped first, so
    the star was fitted without its logg and, with a milder colour, pulled by it)."""
    giant = (4581.0, 80.0, 2.49, 0.1, 0.0, 0.1, 0.99, 0.1)
    free = _one(grid, giant)
    for c in (-0.2, 0.6):
        bound = _one(grid, giant, bp_rp=np.array([c]), bp_rp_error=np.array([0.01]))
        assert bound["mass"][0] == free["mass"][0], (c, bound["mass"][0], free["mass"][0])
    # a logg no isochrone reconciles with M_G, and a bad colour: both dropped, the M_G kept
    dwarf_m_g = (4400.0, 120.0, 1.5, 0.2, 0.0, 0.1, 7.0, 0.05)
    both = _one(grid, dwarf_m_g, bp_rp=np.array([-0.2]), bp_rp_error=np.array([0.01]))
    assert 0.55 < both["mass"][0] < 0.85, both


def test_bp_rp0_used_says_whether_the_answer_rests_on_the_colour(grid) -> None:
    """`bp_rp0_used`: a solar star given a giant's logg beside its M_G and a good (BP−RP)₀ fails with both,
    fails again without the colour (the logg still disagrees with M_G), and is answered without its logg but
    with its colour: that answer rests on (BP−RP)₀ (found by the session-24 review, which had it False). A
    star whose only fit is without the colour, and one without (BP−RP)₀, are False."""
    n = 3
    star = dict(
        teff=np.full(n, 5770.0), teff_error=np.full(n, 50.0), logg=np.array([2.0, 4.4, 2.0]),
        logg_error=np.full(n, 0.05), m_h=np.zeros(n), m_h_error=np.full(n, 0.05),
        abs_g=np.full(n, 4.7), abs_g_error=np.full(n, 0.05),
    )  # fmt: skip
    colour = dict(bp_rp0=np.array([0.82, 0.82, np.nan]), bp_rp0_error=np.full(n, 0.02))
    fit = fitmod.fit_isochrones(grid, **star, **colour)
    np.testing.assert_array_equal(fit["bp_rp0_used"], [True, True, False])
    no_logg = fitmod.fit_isochrones(grid, **{**star, "logg": np.full(n, np.nan)}, **colour)
    assert fit["mass"][0] == no_logg["mass"][0]  # the answer is the one without logg, with the colour
    wrong = fitmod.fit_isochrones(grid, **{**star, "logg": np.full(n, 4.4)}, bp_rp0=np.full(n, -0.5))
    assert not wrong["bp_rp0_used"].any() and np.isfinite(wrong["mass"]).all()


def _mist_dwarfs(grid, n: int, seed: int):
    """n MIST points of the main sequence and subgiant branch, with an XP-like wide Teff and logg σ: the
    labels (teff, σ, logg, σ, [M/H], σ) as float64 columns, and the points."""
    rng = np.random.default_rng(seed)
    sel = (grid.logg > 3.6) & (grid.teff > 4500) & (grid.teff < 7500) & (grid.feh > -1.5)
    pick = rng.choice(np.flatnonzero(sel), n, replace=False)
    cols = [grid.teff[pick], np.full(n, 400.0), grid.logg[pick], np.full(n, 0.3), grid.feh[pick]]
    return [np.asarray(c, dtype=np.float64) for c in (*cols, np.full(n, 0.1))], pick


def test_a_dereddened_colour_pins_the_mass(grid) -> None:
    """MIST dwarfs and subgiants with XP-like Teff ± 400 K, logg ± 0.3, given the colour a real star of their
    Teff has (MIST's on the real stars' scale, `colour_scale`): their (BP−RP)₀ ± 0.03 mag (an input E(B−V)
    taken off the observed colour) narrows the mass and brings it closer to the truth, where the one-sided
    bound of the observed colour behind E(BP−RP) 0.2 cannot."""
    cols, pick = _mist_dwarfs(grid, 300, 23)
    n, true = pick.size, grid.mass[pick]
    real = grid.bp_rp[pick] + fitmod.colour_scale(grid.teff[pick], grid.logg[pick])[0]
    free = fitmod.fit_isochrones(grid, *cols)
    observed = {"bp_rp": real + 0.2, "bp_rp_error": np.full(n, 0.02)}
    bound = fitmod.fit_isochrones(grid, *cols, **observed)
    c0 = {"bp_rp0": real, "bp_rp0_error": np.full(n, 0.03)}
    two = fitmod.fit_isochrones(grid, *cols, **observed, **c0)
    ok = np.isfinite(free["mass"]) & np.isfinite(two["mass"])
    assert ok.mean() > 0.95
    err = {
        k: np.median(np.abs(f["mass"][ok] - true[ok]))
        for k, f in (("free", free), ("bound", bound), ("two", two))
    }
    assert err["two"] < 0.7 * err["free"] and err["two"] < 0.7 * err["bound"], err
    assert np.median(two["mass_error"][ok]) < 0.7 * np.median(free["mass_error"][ok])
    # honest: the truth within the quoted σ about as often as a Gaussian would have it
    z = (two["mass"][ok] - true[ok]) / two["mass_error"][ok]
    assert 0.5 < np.mean(np.abs(z) < 1) < 0.95
    # torch gives the numpy answers; a NaN (BP−RP)₀ is no term, and the star keeps its one-sided bound
    in_torch = fitmod.fit_isochrones(grid, *cols, **observed, **c0, device="cpu")
    np.testing.assert_allclose(
        in_torch["mass"][ok], two["mass"][ok], atol=1e-3 * np.min(two["mass_error"][ok])
    )
    none = fitmod.fit_isochrones(grid, *cols, **observed, bp_rp0=np.full(n, np.nan))
    np.testing.assert_array_equal(none["mass"], bound["mass"])


def test_the_dereddened_colour_keeps_the_fine_grid_and_drops_a_wrong_one(grid) -> None:
    """A star with a (BP−RP)₀ is fitted on the fine grid even with wide σ (the colour pins its Teff), and one
    whose (BP−RP)₀ no isochrone meets (a wrong E(B−V), a blend) is fitted without it rather than lost."""
    cols, pick = _mist_dwarfs(grid, 40, 5)
    c0 = {"bp_rp0": grid.bp_rp[pick].astype(np.float64), "bp_rp0_error": np.full(pick.size, 0.03)}
    both = fitmod.fit_isochrones(grid, *cols, **c0)
    fine = fitmod.fit_isochrones(dataclasses.replace(grid, coarse=None), *cols, **c0)
    np.testing.assert_array_equal(both["mass"], fine["mass"])
    giant = (4500.0, 80.0, 2.5, 0.1, 0.0, 0.1)
    free = _one(grid, giant)
    wrong = _one(grid, giant, bp_rp0=np.array([-0.3]), bp_rp0_error=np.array([0.02]))
    assert np.isfinite(free["mass"][0]) and wrong["mass"][0] == free["mass"][0]


def test_the_input_ebv_rule():
    """The isochrone step's input E(B−V) (`catalogue_isochrones.input_ebv`): the ln E(B−V) token first (as the
    token builder takes a `logebv` column first), else the raw value from −0.05 up, ≤ 0 as 0; a placeholder
    or NaN is none; a σ not given is the default (16 %, at least 0.01 mag)."""
    from xpengine.inference.catalogue_isochrones import input_ebv

    raw = np.array([0.1, 0.0, -0.01, -99.0, np.nan, 0.2])
    batch = {"ebv_input": raw, "ebv_input_error": np.array([0.01, 0.005, np.nan, 0.01, 0.01, 0.02])}
    logebv = np.array([np.nan, np.nan, np.nan, np.nan, np.log(0.3), np.log(0.4)])
    ebv, err, given = input_ebv(batch, logebv, np.full(6, 0.1), 6)
    np.testing.assert_array_equal(given, [True, True, True, False, True, True])
    np.testing.assert_allclose(ebv[given], [0.1, 0.0, 0.0, 0.3, 0.4])
    np.testing.assert_allclose(err[given], [0.01, 0.005, 0.01, 0.03, 0.04])
    # no raw column: the token alone; neither: none; a token without σ takes the default too
    e2, s2, g2 = input_ebv({}, logebv, None, 6)
    np.testing.assert_allclose(e2[g2], [0.3, 0.4])
    np.testing.assert_allclose(s2[g2], [0.048, 0.064])
    _, s3, _ = input_ebv({"ebv_input": np.array([0.02, 0.5])}, None, None, 2)
    np.testing.assert_allclose(s3, [0.01, 0.08])
    np.testing.assert_array_equal(g2, np.isfinite(logebv))
    assert not input_ebv({}, None, None, 6)[2].any()


def test_the_weak_parallax_term_takes_trusted_astrometry_only() -> None:
    from xpengine.inference.catalogue_isochrones import weak_parallax

    batch = {
        "parallax_corrected": np.array([1.0, 1.0, 1.0, 1.0, np.nan, -0.5]),
        "parallax_corrected_error": np.array([0.3, 0.3, 0.3, 0.0, 0.3, 0.4]),
        "ruwe": np.array([1.0, np.nan, 2.0, 1.0, 1.0, 1.2]),
    }
    plx, err = weak_parallax(batch)
    # an unknown RUWE passes (as the catalogue's own distance rule), RUWE > 1.4, σ ≤ 0 or no parallax do
    # not; a negative parallax is a measurement like any other
    np.testing.assert_array_equal(np.isfinite(plx), [True, True, False, False, False, True])
    np.testing.assert_array_equal(np.isfinite(err), np.isfinite(plx))
    assert plx[5] == -0.5 and err[5] == 0.4
    no_ruwe = weak_parallax({k: v for k, v in batch.items() if k != "ruwe"})[0]
    np.testing.assert_array_equal(np.isfinite(no_ruwe), [True, True, True, False, False, True])


def test_a_spurious_negative_parallax_is_no_weak_parallax() -> None:
    """Below −5σ a parallax is a spurious solution (the features' NO_PARALLAX rule): the isochrone fit does
    not read it as a likelihood (it pushed a dwarf to 6 kpc and 1.6 M☉, found by a review)."""
    from xpengine.inference.catalogue_isochrones import weak_parallax

    batch = {
        "parallax_corrected": np.array([-1.4, -1.6, -6.0, 0.1]),
        "parallax_corrected_error": np.array([0.3, 0.3, 0.3, 0.3]),
    }
    np.testing.assert_array_equal(np.isfinite(weak_parallax(batch)[0]), [True, False, False, True])
