"""Calibration format 5: every-order entries (`Calibration.all_orders`) for stars whose XP keep every order
the model reads, chosen per row; the standard entries elsewhere, and older files unchanged."""

from __future__ import annotations

import json

import numpy as np
import pytest

from xpengine.model.calibration import Calibration, LabelCalibration, all_xp_orders

EDGES = (3.0, 13.0, 15.0, 21.0)


def _cal() -> Calibration:
    ones = (1.0, 1.0, 1.0)
    return Calibration(
        labels={
            "mass": LabelCalibration(
                a=1.0, applied=True, g_edges=EDGES, g_scales=(1.5, 1.5, 1.5), g_shifts=(0.0, 0.0, 0.0),
                shift_kind="log",
            ),
            "ln_age": LabelCalibration(a=2.0, applied=True, method="scale"),
            "teff": LabelCalibration(a=0.8, applied=True, method="scale_floor", unit="K"),
        },
        all_orders={
            "mass": LabelCalibration(
                a=1.0, applied=True, g_edges=EDGES, g_scales=(2.0, 3.0, 4.0), g_shifts=(-0.1, -0.2, -0.3),
                shift_kind="log",
            ),
            "ln_age": LabelCalibration(
                a=1.0, applied=True, g_edges=EDGES, g_scales=ones, g_shifts=(0.1, 0.2, 0.3), shift_kind="add"
            ),
            "age": LabelCalibration(a=5.0, applied=True, method="scale", unit="Gyr"),
        },
        all_orders_provenance={"sky_calibration": {"n_giants": 10}},
    )  # fmt: skip


def test_each_row_takes_its_entry() -> None:
    cal = _cal()
    g = np.array([12.0, 14.0, 16.0, 16.0])
    full = np.array([True, True, True, False])
    sigma = np.full(4, 0.1)
    np.testing.assert_allclose(cal.apply("mass", sigma, g, full), [0.2, 0.3, 0.4, 0.15])
    np.testing.assert_allclose(cal.shift("mass", np.ones(4), g, full), np.exp([-0.1, -0.2, -0.3, 0.0]))
    np.testing.assert_allclose(cal.shift("ln_age", np.ones(4), g, full), [1.1, 1.2, 1.3, 1.0])
    np.testing.assert_allclose(cal.apply("ln_age", sigma, g, full), [0.1, 0.1, 0.1, 0.2])
    # a token without an every-order entry uses its standard one on every row
    np.testing.assert_allclose(cal.apply("teff", np.full(4, 100.0), g, full), 80.0)
    # the linear age: its own every-order entry on those rows, age · the ln_age entry's σ elsewhere
    lin = np.full(4, 2.0)
    np.testing.assert_allclose(cal.derived_sigma("age", "ln_age", lin, sigma, g, full), [1.0, 1.0, 1.0, 0.4])
    # no mask (or None): the standard entries, as before format 5
    np.testing.assert_allclose(cal.apply("mass", sigma, g), 0.15)
    np.testing.assert_allclose(cal.shift("ln_age", np.ones(4), g), 1.0)


def test_raw_inverts_each_rows_entry() -> None:
    cal = _cal()
    g = np.array([12.0, 16.0])
    s = np.array([0.05, 0.07])
    for full in (np.array([True, False]), np.array([False, True])):
        cal_s = cal.apply("mass", s, g, full)
        back = np.where(
            full, cal.entry("mass", all_orders=True).raw(cal_s, g), cal.entry("mass").raw(cal_s, g)
        )
        np.testing.assert_allclose(back, s)


def test_format_5_round_trip_and_older_files_read_unchanged(tmp_path) -> None:
    cal = _cal()
    cal.save(tmp_path / "c.json")
    d = json.loads((tmp_path / "c.json").read_text())
    assert d["format_version"] == "5" and set(d["all_orders"]["labels"]) == {"mass", "ln_age", "age"}
    back = Calibration.load(tmp_path / "c.json")
    assert back.all_orders == cal.all_orders and back.labels == cal.labels
    assert back.all_orders_provenance == cal.all_orders_provenance
    old = Calibration(labels=dict(cal.labels))  # no every-order entries: format 3 as before
    old.save(tmp_path / "o.json")
    assert json.loads((tmp_path / "o.json").read_text())["format_version"] == "3"
    loaded = Calibration.load(tmp_path / "o.json")
    assert loaded.all_orders == {}
    np.testing.assert_allclose(
        loaded.apply("mass", np.full(2, 0.1), np.array([12.0, 16.0]), np.ones(2, bool)), 0.15
    )


def test_bundled_calibration_still_reads() -> None:
    from xpengine.model.checkpoint import resolve_model_path

    cal = Calibration.load(resolve_model_path("gaia-xp") / "calibration.json")
    assert "mass" in cal.labels


def test_all_xp_orders_mask() -> None:
    v = np.ones((4, 6), dtype=np.float32)
    v[1, 2] = np.nan  # an XP order missing: cut at its relevancy
    v[2, 5] = np.nan  # a non-XP column missing: still every order
    v[3, :] = np.nan
    np.testing.assert_array_equal(all_xp_orders(v, [0, 1, 2, 3]), [True, False, True, False])
    assert not all_xp_orders(v, []).any()


@pytest.mark.parametrize("name", ["mass", "ln_age"])
def test_no_row_flagged_is_the_standard_result(name) -> None:
    cal = _cal()
    g = np.array([12.0, 16.0])
    s = np.array([0.1, 0.2])
    np.testing.assert_allclose(cal.apply(name, s, g, np.zeros(2, bool)), cal.apply(name, s, g))
