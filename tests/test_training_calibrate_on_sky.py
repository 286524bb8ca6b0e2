"""training/calibrate_on_sky.py: mass and age σ refitted on a simulated sky's catalogue against its truth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _paths import load_script

from xpengine.model.calibration import Calibration, LabelCalibration


def _script():
    return load_script("training/calibrate_on_sky.py", "calibrate_on_sky")


def test_raw_inverts_apply() -> None:
    lc = LabelCalibration(a=1.7, b=0.05, applied=True)
    s = np.array([0.01, 0.1, 0.3, np.nan])
    np.testing.assert_allclose(lc.raw(lc.apply(s)), s, rtol=1e-12)
    assert np.array_equal(LabelCalibration(a=3.0).raw(s), s, equal_nan=True)  # not applied: identity


def _sky(tmp_path: Path, base: Calibration, mass_scale: float, age_scale: float, n: int = 6000):
    """A catalogue made with BASE whose raw σ are too small by the given factors, and its truth."""
    rng = np.random.default_rng(4)
    sid = np.arange(n, dtype=np.int64) + 10**15
    g = rng.uniform(8.0, 17.6, n)
    giant = rng.random(n) < 0.8  # the rest are dwarfs, which must be left out of the fit
    mass_t = rng.uniform(0.8, 2.5, n)
    s_mass = rng.uniform(0.05, 0.2, n)
    mass = mass_t + rng.normal(0, mass_scale * s_mass)
    age_t = rng.uniform(1.0, 12.0, n)
    s_ln = rng.uniform(0.1, 0.4, n)
    age = np.exp(np.log(age_t) + rng.normal(0, age_scale * s_ln))
    mass[~giant] = 50.0  # wild values for dwarfs: the fit must not see them
    cat = pa.table(
        {
            "source_id": sid,
            "phot_g_mean_mag": g,
            "mass": mass,
            "mass_error": base.apply("mass", s_mass),
            "age": age,
            "age_error": base.derived_sigma("age", "ln_age", age, s_ln),
            "flags": np.zeros(n, dtype=np.int64),
        }
    )
    (tmp_path / "cat").mkdir()
    pq.write_table(cat, tmp_path / "cat" / "000000-003111.parquet")
    truth = pa.table(
        {
            "source_id": sid,
            "mass": mass_t,
            "age_gyr": age_t,
            "teff": np.where(giant, 4700.0, 5800.0),
            "logg": np.where(giant, 2.5, 4.4),
            "g": g,
        }
    )
    pq.write_table(truth, tmp_path / "truth.parquet")


@pytest.mark.parametrize(
    ("age_entry", "method"), [(True, "scale_floor"), (False, "scale_floor"), (True, "binned")]
)
def test_refit_on_true_giants_gives_unit_z_in_every_g_bin(tmp_path, age_entry, method) -> None:
    mod = _script()
    labels = {
        "teff": LabelCalibration(a=0.66, applied=True, method="scale_floor", unit="K"),
        "mass": LabelCalibration(a=2.0, b=0.01, applied=True, method="scale_floor", unit="Msun"),
        "ln_age": LabelCalibration(a=0.8, applied=True, method="scale"),
    }
    if age_entry:
        labels["age"] = LabelCalibration(a=0.5, applied=True, method="scale", unit="Gyr")
    base = Calibration(labels=labels, provenance={"data": "mixed", "split": "val"})
    base.save(tmp_path / "base.json")
    _sky(tmp_path, base, mass_scale=1.3, age_scale=1.25)
    out = tmp_path / "out.json"
    argv = ["--catalogue", str(tmp_path / "cat"), "--truth", str(tmp_path / "truth.parquet")]
    argv += ["--calibration", str(tmp_path / "base.json"), "--output", str(out), "--method", method]
    assert mod.main(argv) == 0
    cal = Calibration.load(out)
    assert cal.labels["teff"] == base.labels["teff"]  # other labels kept
    assert cal.provenance["sky_calibration"]["n_giants"] == pytest.approx(4800, rel=0.05)
    for name in ("mass", "ln_age", "age"):
        lc = cal.labels[name]
        assert lc.applied and lc.z_sigma_val_raw > 1.15
    for b in cal.provenance["sky_calibration"]["offset_by_g"]["ln_age"]:  # unbiased in ln age on this sky
        assert abs(b["mean"]) < 5 * b["stderr"], b
        for b in cal.provenance["sky_calibration"]["z_by_g"][name]["cal"]:
            assert 0.9 < b["z_spread"] < 1.1, (name, b)
    if method == "scale_floor":
        assert cal.labels["mass"].a == pytest.approx(1.3, rel=0.1)
        assert cal.labels["ln_age"].a == pytest.approx(1.25, rel=0.1)
    else:  # a σ map with G factors: here a uniform 1.3 / 1.25 underestimate, so every knot ratio is near it
        lc = cal.labels["mass"]
        assert lc.method == "sigma_binned+g" and len(lc.g_scales) == len(lc.g_edges) - 1
        ratio = np.asarray(lc.sigma_cal_knots) / np.asarray(lc.sigma_knots) * np.median(lc.g_scales)
        np.testing.assert_allclose(ratio, 1.3, rtol=0.15)


def test_offset_by_g_reports_a_known_shift_per_bin() -> None:
    mod = _script()
    rng = np.random.default_rng(3)
    n = 30_000
    g = rng.uniform(6.0, 17.6, n)
    true = rng.uniform(0.8, 2.0, n)
    shift = np.where(g >= 15.0, 0.10, np.where(g < 13.0, -0.05, 0.0))  # ln(true / pred) by G bin
    pred = true * np.exp(-shift + rng.normal(0, 0.1, n))
    out = mod.offset_by_g(pred, true, g, log=True)
    assert [(b["g_lo"], b["g_hi"]) for b in out] == list(zip(mod.G_BINS[:-1], mod.G_BINS[1:], strict=True))
    for b, want in zip(out, (-0.05, 0.0, 0.10), strict=True):
        assert abs(b["mean"] - want) < 4 * b["stderr"] + 1e-12, (b, want)
        assert 0 < b["stderr"] < 0.003
    lin = mod.offset_by_g(
        np.full(4, 2.0), np.array([3.0, 3.0, 1.0, 5.0]), np.array([7.0, 8.0, 14.0, 16.0]), log=False
    )
    assert [b["mean"] for b in lin] == [1.0, -1.0, 3.0]


def test_fit_shifts_recovers_a_g_dependent_bias(tmp_path) -> None:
    """A sky whose faint giants come out too young and too massive: --fit-shifts finds the median offset per
    G bin, stores it (format 3), and the σ are fitted on the shifted means (unit z per bin)."""
    mod = _script()
    base = Calibration(labels={}, provenance={})
    base.save(tmp_path / "base.json")
    _sky(tmp_path, base, mass_scale=1.0, age_scale=1.0)
    # bias the catalogue: ln age −0.2 and ln mass +0.1 at G ≥ 15
    t = pq.read_table(tmp_path / "cat" / "000000-003111.parquet").to_pandas()
    faint = t.phot_g_mean_mag.to_numpy() >= 15.0
    t.loc[faint, "age"] *= np.exp(-0.2)
    t.loc[faint, "age_error"] *= np.exp(-0.2)
    t.loc[faint, "mass"] *= np.exp(0.1)
    pq.write_table(pa.Table.from_pandas(t, preserve_index=False), tmp_path / "cat" / "000000-003111.parquet")
    out = tmp_path / "out.json"
    argv = ["--catalogue", str(tmp_path / "cat"), "--truth", str(tmp_path / "truth.parquet")]
    argv += ["--calibration", str(tmp_path / "base.json"), "--output", str(out), "--fit-shifts"]
    assert mod.main(argv) == 0
    cal = Calibration.load(out)
    assert json.loads(out.read_text())["format_version"] == "7"  # shifts (3), and floors since session 34
    assert cal.labels["ln_age"].floor and cal.labels["mass"].floor
    edges = np.asarray(cal.labels["ln_age"].g_edges)
    lo = edges[:-1]
    ln_age, mass = np.asarray(cal.labels["ln_age"].g_shifts), np.asarray(cal.labels["mass"].g_shifts)
    assert cal.labels["mass"].shift_kind == "log" and cal.labels["ln_age"].shift_kind == "add"
    np.testing.assert_allclose(ln_age[lo >= 15.0], 0.2, atol=0.03)
    np.testing.assert_allclose(ln_age[(lo >= 11.0) & (lo < 15.0)], 0.0, atol=0.03)
    np.testing.assert_allclose(mass[lo >= 15.0], -0.1, atol=0.03)
    for b in cal.provenance["sky_calibration"]["z_by_g"]["ln_age"]["cal"]:
        assert 0.9 < b["z_spread"] < 1.1, b
    for name in ("ln_age", "mass"):  # after the shift, no median offset is left in any G bin
        assert cal.provenance["sky_calibration"]["fit_shifts"] is True
        for b in cal.provenance["sky_calibration"]["offset_by_g"][name]:
            assert abs(b["mean"]) < 0.05, (name, b)
    assert "age" not in {k for k, v in cal.labels.items() if v.g_shifts is not None}


def test_ebv_sigma_is_fitted_on_every_star_alone_or_beside_mass_and_age(tmp_path) -> None:
    """--ebv fits the catalogue's linear E(B−V) σ on every matched star, dwarfs included; with --no-mass-age
    the base's mass and age entries stay as they were (session 12: v5's raw E(B−V) σ were 5–10× too small)."""
    mod = _script()
    base = Calibration(labels={"mass": LabelCalibration(a=2.0, applied=True, unit="Msun")})
    base.save(tmp_path / "base.json")
    rng = np.random.default_rng(7)
    n = 8000
    sid = np.arange(n, dtype=np.int64) + 10**15
    g = rng.uniform(8.0, 17.6, n)
    ebv_t = rng.uniform(0.01, 1.0, n)
    s_raw = ebv_t * rng.uniform(0.01, 0.05, n)  # the model's raw σ: relative and far too small
    ebv = ebv_t + rng.normal(0.0, 5.0 * s_raw + 0.02)  # true errors: 5× larger, and an absolute floor
    cat = pa.table({"source_id": sid, "phot_g_mean_mag": g, "ebv": ebv, "ebv_error": s_raw})
    (tmp_path / "cat").mkdir()
    pq.write_table(cat, tmp_path / "cat" / "000000-003111.parquet")
    pq.write_table(pa.table({"source_id": sid, "ebv": ebv_t}), tmp_path / "truth.parquet")
    out = tmp_path / "out.json"
    argv = ["--catalogue", str(tmp_path / "cat"), "--truth", str(tmp_path / "truth.parquet")]
    argv += ["--calibration", str(tmp_path / "base.json"), "--output", str(out), "--ebv", "--no-mass-age"]
    assert mod.main(argv) == 0
    cal = Calibration.load(out)
    assert cal.labels["mass"] == base.labels["mass"] and cal.labels["ebv"].applied
    z = (ebv - ebv_t) / cal.labels["ebv"].apply(s_raw, g)
    assert 0.9 < 1.4826 * np.median(np.abs(z - np.median(z))) < 1.1
    for b in cal.provenance["sky_calibration_ebv"]["z_by_g"]["cal"]:
        assert 0.85 < b["z_spread"] < 1.15, b
    for b in cal.provenance["sky_calibration_ebv"]["z_by_g"]["raw"]:
        assert b["z_spread"] > 3, b
    with pytest.raises(SystemExit):  # nothing to fit
        mod.main([*argv[:-2], "--no-mass-age"])


def test_all_orders_fit_goes_to_the_every_order_entries(tmp_path) -> None:
    """--all-orders: a catalogue whose inputs kept every XP order (here its faint giants read too massive and
    too young, as gaia-xp v5 reads them) is fitted into the every-order entries (format 5); the standard
    entries stay as they were. A catalogue made with such entries (rows flagged ALL_XP_ORDERS) is inverted
    row by row with the entry each row was given, so refitting it finds the same entries again."""
    mod = _script()
    std = {
        "mass": LabelCalibration(a=2.0, applied=True, method="scale", unit="Msun"),
        "ln_age": LabelCalibration(a=1.5, applied=True, method="scale"),
    }
    base = Calibration(labels=dict(std))
    base.save(tmp_path / "base.json")
    _sky(tmp_path, base, mass_scale=1.0, age_scale=1.0)
    f = tmp_path / "cat" / "000000-003111.parquet"
    from xpengine.features.flags import SourceFlag

    t = pq.read_table(f).to_pandas()
    # 60 % of the rows read without relevancy counts (every order), biased at G >= 15; the others are
    # archive rows, unbiased, which the every-order fit must leave out (else its shifts are diluted)
    every = np.random.default_rng(11).random(len(t)) < 0.6
    faint = (t.phot_g_mean_mag.to_numpy() >= 15.0) & every
    t.loc[faint, "age"] *= np.exp(-0.25)
    t.loc[faint, "age_error"] *= np.exp(-0.25)
    t.loc[faint, "mass"] *= np.exp(0.12)
    t["flags"] = np.where(every, int(SourceFlag.NO_RELEVANCY), 0).astype(np.int64)
    pq.write_table(pa.Table.from_pandas(t, preserve_index=False), f)
    out = tmp_path / "out.json"
    argv = ["--catalogue", str(tmp_path / "cat"), "--truth", str(tmp_path / "truth.parquet")]
    argv += [
        "--calibration",
        str(tmp_path / "base.json"),
        "--output",
        str(out),
        "--fit-shifts",
        "--all-orders",
    ]
    assert mod.main(argv) == 0
    cal = Calibration.load(out)
    assert json.loads(out.read_text())["format_version"] == "7"  # every-order entries (5) with floors
    assert cal.labels == std  # the standard entries untouched
    assert set(cal.all_orders) == {"mass", "ln_age", "age"}
    lo = np.asarray(cal.all_orders["ln_age"].g_edges)[:-1]
    np.testing.assert_allclose(np.asarray(cal.all_orders["ln_age"].g_shifts)[lo >= 15.0], 0.25, atol=0.03)
    np.testing.assert_allclose(np.asarray(cal.all_orders["mass"].g_shifts)[lo >= 15.0], -0.12, atol=0.03)
    rec = cal.all_orders_provenance["sky_calibration"]
    assert rec["n_rows_flagged_all_xp_orders_before"] == 0 and "every XP order" in rec["inputs"]
    giants = t.mass.to_numpy() < 40  # the dwarfs' wild values (not matched as giants)
    assert rec["n_rows"] == rec["n_giants"] == int((every & giants).sum())
    for b in rec["z_by_g"]["mass"]["cal"]:
        assert 0.9 < b["z_spread"] < 1.1, b
    assert "sky_calibration" not in cal.provenance

    # the same sky as a catalogue made WITH those entries, its every-order rows flagged ALL_XP_ORDERS: the
    # refit inverts each row with the entry it was given and finds the same shifts again
    g = t.phot_g_mean_mag.to_numpy()
    raw_mass = std["mass"].raw(t.mass_error.to_numpy(), g)
    raw_ln = std["ln_age"].raw(t.age_error.to_numpy() / t.age.to_numpy(), g)
    mass = cal.shift("mass", t.mass.to_numpy(), g, every)
    age = np.exp(cal.shift("ln_age", np.log(t.age.to_numpy()), g, every))
    t2 = t.assign(
        mass=mass,
        mass_error=cal.apply("mass", raw_mass, g, every),
        age=age,
        age_error=cal.derived_sigma("age", "ln_age", age, raw_ln, g, every),
        flags=t["flags"].to_numpy() | np.where(every, int(SourceFlag.ALL_XP_ORDERS), 0),
    )
    pq.write_table(pa.Table.from_pandas(t2, preserve_index=False), f)
    out2 = tmp_path / "out2.json"
    assert mod.main([*argv[:5], str(out), "--output", str(out2), "--fit-shifts", "--all-orders"]) == 0
    again = Calibration.load(out2)
    for name in ("mass", "ln_age"):
        np.testing.assert_allclose(again.all_orders[name].g_shifts, cal.all_orders[name].g_shifts, atol=1e-9)
    rec2 = again.all_orders_provenance["sky_calibration"]
    assert rec2["n_rows_flagged_all_xp_orders_before"] == rec2["n_rows"] > 2500
    # a standard refit of that catalogue fits the archive rows only, and finds them unbiased
    out3 = tmp_path / "out3.json"
    assert mod.main([*argv[:5], str(out), "--output", str(out3), "--fit-shifts"]) == 0
    std3 = Calibration.load(out3)
    assert std3.provenance["sky_calibration"]["n_rows"] == int((~every & giants).sum())
    np.testing.assert_allclose(std3.labels["ln_age"].g_shifts, 0.0, atol=0.04)
    assert std3.all_orders == cal.all_orders  # the every-order entries kept
    with pytest.raises(SystemExit):  # --all-orders fits mass and age only
        mod.main([*argv, "--ebv"])


def test_rows_with_isochrone_mass_and_age_are_left_out(tmp_path) -> None:
    """True giants the catalogue put outside the model's domain carry the isochrones' mass and age
    (MASS_AGE_FROM_ISOCHRONES): the model's σ is fitted without them (found by a review)."""
    from xpengine.features.flags import SourceFlag

    cs = _script()
    base = Calibration.load(
        str(Path(__file__).resolve().parents[1] / "xpengine/data/models/gaia-xp/calibration.json")
    )
    _sky(tmp_path, base, 1.0, 1.0, n=400)
    path = tmp_path / "cat" / "000000-003111.parquet"
    t = pq.read_table(path)
    flags = np.zeros(t.num_rows, dtype=np.int64)
    flags[::4] = int(SourceFlag.OUTSIDE_TRAINING_DOMAIN | SourceFlag.MASS_AGE_FROM_ISOCHRONES)
    pq.write_table(t.set_column(t.column_names.index("flags"), "flags", pa.array(flags)), path)
    d = cs.load_matched(str(tmp_path / "cat"), str(tmp_path / "truth.parquet"))
    iso = set(t.column("source_id").to_numpy()[::4].tolist())
    assert d["source_id"].size > 100 and not iso & set(d["source_id"].tolist())


def _two_populations(tmp_path: Path, base: Calibration, n: int = 8000) -> dict[str, np.ndarray]:
    """Old giants (10–13 Gyr) with raw σ_ln 0.01 but a true ln-age error of 0.12, and young ones (1–1.3
    Gyr) with raw σ_ln 0.1 and a true error of 0.3: the same raw σ_age ≈ 0.11 Gyr, far from the same error
    in Gyr (1.3 against 0.35)."""
    rng = np.random.default_rng(7)
    old = rng.random(n) < 0.5
    age_t = np.where(old, rng.uniform(10.0, 13.0, n), rng.uniform(1.0, 1.3, n))
    s_ln = np.where(old, 0.01, 0.1) * rng.uniform(0.9, 1.1, n)
    age = np.exp(np.log(age_t) + rng.normal(0, np.where(old, 0.12, 0.3)))
    sid = np.arange(n, dtype=np.int64) + 10**15
    g = rng.uniform(8.0, 17.6, n)
    cat = pa.table(
        {
            "source_id": sid,
            "phot_g_mean_mag": g,
            "mass": np.full(n, 1.2),
            "mass_error": np.full(n, 0.1),
            "age": age,
            "age_error": base.derived_sigma("age", "ln_age", age, s_ln, g),
            "flags": np.zeros(n, dtype=np.int64),
        }
    )
    (tmp_path / "cat").mkdir()
    pq.write_table(cat, tmp_path / "cat" / "000000-003111.parquet")
    truth = {"source_id": sid, "mass": rng.normal(1.2, 0.1, n), "age_gyr": age_t, "teff": np.full(n, 4700.0)}
    pq.write_table(pa.table({**truth, "logg": np.full(n, 2.5), "g": g}), tmp_path / "truth.parquet")
    return {"old": old, "age": age, "age_t": age_t, "s_ln": s_ln, "g": g}


def _linear_z_spreads(cal: Calibration, sky: dict[str, np.ndarray]) -> dict[str, float]:
    from xpengine.evaluate.metrics import robust_sigma

    sigma = cal.derived_sigma("age", "ln_age", sky["age"], sky["s_ln"], sky["g"])
    z = (sky["age"] - sky["age_t"]) / sigma
    return {k: robust_sigma(z[m]) for k, m in (("old", sky["old"]), ("young", ~sky["old"]))}


@pytest.mark.parametrize("relative", [False, True], ids=["absolute", "relative"])
def test_a_relative_age_entry_separates_old_giants_from_young_ones(tmp_path, relative) -> None:
    """Binned on age · raw σ_ln (absolute), old and young giants of one raw σ_age share a floor: the old
    ones come out over-confident, the young ones under-confident. Binned on the raw σ_ln (relative, format
    7), each gets its own: unit z-spread in linear age for both. The catalogue made with the relative
    entry is inverted back to the raw σ it was made from."""
    mod = _script()
    labels = {
        "mass": LabelCalibration(a=1.0, applied=True, method="scale", unit="Msun"),
        "ln_age": LabelCalibration(a=1.0, applied=True, method="scale"),
        "age": LabelCalibration(a=1.0, applied=True, method="scale", unit="Gyr"),
    }
    base = Calibration(labels=labels)
    base.save(tmp_path / "base.json")
    sky = _two_populations(tmp_path, base)
    out = tmp_path / "out.json"
    argv = ["--catalogue", str(tmp_path / "cat"), "--truth", str(tmp_path / "truth.parquet")]
    argv += ["--calibration", str(tmp_path / "base.json"), "--output", str(out), "--method", "binned"]
    assert mod.main(argv + (["--age-relative"] if relative else [])) == 0
    cal = Calibration.load(out)
    spreads = _linear_z_spreads(cal, sky)
    if not relative:  # the problem the relative entry solves, on the same sky
        assert spreads["old"] > 1.3 and spreads["young"] < 0.7, spreads
        return
    assert cal.labels["age"].relative and json.loads(out.read_text())["format_version"] == "7"
    assert 0.85 < spreads["old"] < 1.15 and 0.85 < spreads["young"] < 1.15, spreads
    assert cal.provenance["sky_calibration"]["age_relative"] is True
    for b in cal.provenance["sky_calibration"]["z_by_g"]["age"]["cal"]:
        assert 0.85 < b["z_spread"] < 1.15, b
    # a catalogue made with the relative entry gives back its raw σ_ln_age
    sigma = cal.derived_sigma("age", "ln_age", sky["age"], sky["s_ln"], sky["g"])
    d = {"g_cat": sky["g"], "mass": np.ones_like(sky["g"]), "mass_error": np.full(sky["g"].size, 0.1)}
    raw = mod.raw_sigmas({**d, "age": sky["age"], "age_error": sigma}, cal)
    x0 = cal.labels["age"].sigma_knots[0]  # below the first knot the floor keeps no raw σ: x0 comes back
    above = sky["s_ln"] >= x0
    assert 0.01 < 1 - above.mean() < 0.1  # the lowest bin's stars below its median σ
    np.testing.assert_allclose(raw["ln_age"][above], sky["s_ln"][above], rtol=1e-9)
    np.testing.assert_allclose(raw["ln_age"][~above], x0, rtol=1e-9)


def test_only_a_derived_label_can_be_relative() -> None:
    with pytest.raises(ValueError, match="only the derived linear label age"):
        Calibration(labels={"mass": LabelCalibration(applied=True, relative=True)})
    rel = LabelCalibration(applied=True, relative=True, sigma_knots=(0.01, 0.1), sigma_cal_knots=(0.12, 0.3))
    cal = Calibration(labels={"age": rel})
    back = Calibration.from_dict(json.loads(json.dumps(cal.to_dict())))
    assert back.labels["age"] == rel
    np.testing.assert_allclose(
        back.derived_sigma("age", "ln_age", np.array([12.0, 1.0]), np.array([0.01, 0.1])), [1.44, 0.3]
    )
    # an absolute entry is written as before format 7
    assert (
        "relative"
        not in Calibration(labels={"age": LabelCalibration(applied=True)}).to_dict()["labels"]["age"]
    )


def test_only_the_age_entry_is_refitted_beside_the_kept_ones(tmp_path) -> None:
    """--only age --age-relative: the mass and ln_age entries (shifts included) stay as they were, the age
    entry is fitted on the catalogue's own ages, and its record goes beside the kept one."""
    mod = _script()
    shifted = LabelCalibration(
        a=1.0,
        applied=True,
        method="scale",
        g_edges=(3.0, 13.0, 21.0),
        g_scales=(1.0, 1.0),
        g_shifts=(0.05, -0.02),
    )
    labels = {
        "mass": LabelCalibration(a=1.0, applied=True, method="scale", unit="Msun"),
        "ln_age": shifted,
        "age": LabelCalibration(a=1.0, applied=True, method="scale", unit="Gyr"),
    }
    base = Calibration(labels=labels, provenance={"sky_calibration": {"labels": ["age", "ln_age", "mass"]}})
    base.save(tmp_path / "base.json")
    sky = _two_populations(tmp_path, base)
    out = tmp_path / "out.json"
    argv = ["--catalogue", str(tmp_path / "cat"), "--truth", str(tmp_path / "truth.parquet"), "--only", "age"]
    argv += ["--calibration", str(tmp_path / "base.json"), "--output", str(out), "--age-relative"]
    assert mod.main(argv) == 0
    cal = Calibration.load(out)
    assert cal.labels["mass"] == labels["mass"] and cal.labels["ln_age"] == shifted
    assert cal.labels["age"].relative
    assert cal.provenance["sky_calibration"] == {"labels": ["age", "ln_age", "mass"]}
    assert cal.provenance["sky_calibration_age"]["labels"] == ["age"]
    spreads = _linear_z_spreads(cal, sky)
    assert 0.85 < spreads["old"] < 1.15 and 0.85 < spreads["young"] < 1.15, spreads
    with pytest.raises(ValueError, match="--fit-shifts refits mass and ln_age"):
        mod.main([*argv, "--fit-shifts"])
