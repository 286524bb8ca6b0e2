"""Labels against the XP orders present (`benchmarks/relevancy_sensitivity.py`, and the relevancy pieces of
`benchmarks/seismic_giants.py`): the simulator's relevancy rule applied to a spectrum keeps fewer orders for a
fainter star, the masks reach only the rows asked, and shifts are medians of b − a per G bin. The dev file's
test giants need the shared data (skip, naming it, without)."""

from __future__ import annotations

import numpy as np
import pytest
from _paths import load_script

from xpengine.inference.predictor import Predictor


def _rs():
    return load_script("benchmarks/relevancy_sensitivity.py", "relevancy_sensitivity")


def _sg():
    return load_script("benchmarks/seismic_giants.py", "seismic_giants")


def test_simulator_relevancy_keeps_fewer_orders_for_fainter_stars():
    sg = _sg()  # puts benchmarks/ on sys.path
    import emulated_twins as et
    import realism_report as rr

    n = 40
    g = np.repeat([10.0, 17.0], n // 2)
    star = {
        "teff": np.full(n, 4700.0),
        "logg": np.full(n, 2.5),
        "fe_h": np.zeros(n),
        "alpha_m": np.zeros(n),
        "ebv": np.full(n, 0.05),
        "gaiaedr3_phot_g_mean_mag": g,
    }
    flux = rr.emulate_real_stars(star, et.load_emulator("v1"))["flux"]
    n_rel = sg.simulator_relevancy(flux, g, np.full(n, 45.0), "v1")
    assert n_rel.shape == (n, 2) and np.all((n_rel >= 3) & (n_rel <= 55))
    bright, faint = np.median(n_rel[: n // 2], axis=0), np.median(n_rel[n // 2 :], axis=0)
    assert np.all(bright > faint + 5), (bright, faint)
    # the same seed gives the same counts
    np.testing.assert_array_equal(n_rel, sg.simulator_relevancy(flux, g, np.full(n, 45.0), "v1"))


def test_masked_arrays_hide_the_orders_beyond_the_count_of_the_rows_asked_only():
    from types import SimpleNamespace

    sg = _sg()
    p = Predictor.load("gaia-xp", device="cpu")
    t = len(p.vocabulary)
    arrays = SimpleNamespace(
        values=np.ones((4, t)), errors=np.ones((4, t)), vocabulary=p.vocabulary, source_id=np.arange(4)
    )
    out = sg.masked_arrays(arrays, np.array([2, 0]), np.array([[10.0, 55.0], [53.0, 3.0]]))
    v = p.vocabulary
    # row 2 (count BP 10, RP 55): bp9 kept, bp10 hidden, every RP order kept
    assert out.values[2, v.index("bp9")] == 1 and np.isnan(out.values[2, v.index("bp10")])
    assert not np.isnan(out.values[2, [v.index(f"rp{i}") for i in range(55)]]).any()
    # row 0 (BP 53: the paper's propagation from order 51 keeps all; RP 3)
    assert not np.isnan(out.values[0, [v.index(f"bp{i}") for i in range(55)]]).any()
    assert out.values[0, v.index("rp2")] == 1 and np.isnan(out.values[0, v.index("rp3")])
    assert (
        not np.isnan(out.values[[1, 3]]).any() and not np.isnan(arrays.values).any()
    )  # others, input untouched
    assert out.values[0, v.index("teff")] == 1  # labels and colours untouched


def test_median_shift_per_g_bin():
    rs = _rs()
    g = np.array([11.0, 12.0, 13.0, 16.0, 16.5])
    a = {"mass": np.ones(5), "logg": np.full(5, 2.0)}
    b = {"mass": np.array([1.1, 1.1, 1.2, 1.3, np.nan]), "logg": np.full(5, 2.0)}
    out = rs.median_shift(a, b, g)
    assert out["all"]["n"] == 5 and out["all"]["mass"] == pytest.approx(0.15)
    assert out["G 0–12.5"]["mass"] == pytest.approx(0.1) and out["G 15–18"]["mass"] == pytest.approx(0.3)
    assert "G 13.5–15" not in out and out["all"]["logg"] == 0.0 and "teff" not in out["all"]
    v = Predictor.load("gaia-xp", device="cpu").vocabulary
    cols = rs.xp_columns(v.names)
    assert len(cols) == 110 and v.names[cols[0]] == "bp0" and v.names[cols[55]] == "rp0"


def test_truth_scores_per_g_bin_and_their_table():
    rs = _rs()
    g = np.array([11.0, 12.0, 16.0, 16.5, 17.0])
    truth = {"mass": np.ones(5), "ln_age": np.zeros(5)}
    pred = {"mass": np.array([1.1, 1.1, 1.0, 1.2, 1.4]), "ln_age": np.array([0.0, 0.0, 0.5, 0.5, np.nan])}
    out = rs.truth_scores(pred, truth, g)
    assert out["G 0–12.5"]["mass"] == {"sigma": pytest.approx(0.0, abs=1e-12), "bias": pytest.approx(0.1)}
    assert out["G 15–18"]["mass"]["bias"] == pytest.approx(0.2) and out["G 15–18"]["mass"]["sigma"] > 0.1
    assert out["G 15–18"]["ln_age"]["bias"] == pytest.approx(0.5)  # the NaN is left out
    assert out["all"]["n"] == 5 and "G 13.5–15" not in out
    table = "\n".join(rs._truth_table({k: out for k in rs.TRUTH_INPUTS}))
    assert "| G 0–12.5 | 2 | 0.000 / +0.100 |" in table and table.count("ln age:") == 3


@pytest.mark.slow
def test_real_giants_atmospheric_labels_do_not_move_with_the_orders_present(apogee_xp_dev_build, tmp_path):
    """Teff, logg and [M/H] of real test giants barely move when the orders beyond the simulator's relevancy
    are hidden (session 15: ≤ 1.5 K, 0.000, 0.007 dex); mass and age may (−0.03 M☉, +0.06 in ln age)."""
    from _datasets_real import DEV

    from xpengine.datasets.schema import write_training_set

    rs = _rs()
    data = tmp_path / "dev.parquet"
    write_training_set(apogee_xp_dev_build.table, str(data))
    r = rs.real(Predictor.load("gaia-xp", device="cpu"), str(DEV), str(data), "v1")
    assert r["n"] > 1500
    a = r["relevancy_minus_every_order"]["all"]
    assert abs(a["teff"]) < 10 and abs(a["logg"]) < 0.02 and abs(a["m_h"]) < 0.02, a
    assert np.isfinite(a["mass"]) and np.isfinite(a["ln_age"])
    assert 10 < r["simulator_n_relevant_median"]["bp"] < 55


@pytest.mark.slow
def test_simulated_measurement_runs_on_a_real_simulated_sky(tmp_path):
    """Measurement 1 on a small sky written by the simulator: the twins take the sky star's own missing
    tokens in the second variant, so a model that read only the tokens present would show no shift there."""
    generate = pytest.importorskip("xpengine.simulate.generate")
    from xpengine.datasets.schema import write_training_set
    from xpengine.datasets.synthetic import build_synthetic
    from xpengine.simulate.sky import SkyConfig

    rs = _rs()
    sky = tmp_path / "sky"
    generate.simulate_sky(str(sky), 3000, seed=5, n_partitions=2, config=SkyConfig(correlation_levels=1))
    data = tmp_path / "syn.parquet"
    write_training_set(
        build_synthetic(str(sky), keep_without_evolution=True, val_fraction=0.5).table, str(data)
    )
    r = rs.simulated(Predictor.load("gaia-xp", device="cpu"), str(data), "v2")
    assert r["n"] > 5 and 0.0 < r["missing_fraction_bp_rp_0_29"] < 1.0
    for key in ("twin_every_order_minus_sky", "twin_sky_relevancy_minus_sky"):
        a = r[key]["all"]
        assert a["n"] == r["n"] and all(np.isfinite(a[k]) for k in ("mass", "ln_age", "teff", "logg")), a
    for inp in rs.TRUTH_INPUTS:
        a = r["against_truth"][inp]["all"]
        assert a["n"] == r["n"] and np.isfinite(a["mass"]["sigma"]) and np.isfinite(a["ln_age"]["bias"]), a


def test_archive_rows_set_dr3_counts_beside_the_simulators():
    """Measurement 3 on the bundled real DR3 rows: every row with both bands, DR3's counts as the files give
    them, the simulator's draws within the archive's range, and the table rendered."""
    rs = _rs()
    rows = rs.archive_rows(n_draws=3)
    by_id = {r["source_id"]: r for r in rows}
    assert len(rows) == 6 and 5405570973190252288 not in by_id  # the row without BP has no pair
    assert by_id[5937083312263887616]["dr3"] == [22, 12] and by_id[5853498713190525696]["dr3"] == [53, 40]
    assert [r["g"] for r in rows] == sorted(r["g"] for r in rows)
    star = by_id[5937083312263887616]
    assert 13.5 < star["g"] < 14.2 and 0.8 < star["bp_rp"] < 1.2
    for r in rows:
        for j in (0, 1):
            assert 3 <= r["simulator_min"][j] <= r["simulator_median"][j] <= r["simulator_max"][j] <= 55
    header = {"command": "c", "machine": "m", "date_utc": "d"}
    text = rs.render_markdown({"model": "x", "archive_rows": rows, **header})
    assert "| 5937083312263887616 | 13." in text and "DR3's relevant counts against the simulator's" in text
