"""report.md rendering: anchors table and the interpretation sentences, from constructed metrics."""

from __future__ import annotations

import json
import math

import numpy as np

from xpengine.evaluate.report import render_report, to_jsonable


def _m(sigma: float, sp: float | None = None, z: float | None = None) -> dict:
    return {"n": 100, "sigma": sigma, "bias": 0.0, "median_sigma_pred": sp, "z_sigma": z}


def _metrics(high_order_sp: float, identity_sigma: float, z: float) -> dict:
    std = {"teff": _m(50.0, 40.0, z), "logg": _m(0.1, 0.08, z)}
    return {
        "data": {"test": "t.parquet", "split": "test", "n_stars": 100, "labels": ["teff", "logg"]},
        "models": {"transformer": std, "xgboost": {"teff": _m(60.0), "logg": _m(0.09)}},
        "scenarios": {
            "standard": {"panel": "4b", "description": "std", "labels": std},
            "high_order": {
                "panel": "4e",
                "description": "ho",
                "labels": {"teff": _m(200.0, high_order_sp), "logg": _m(0.4, 0.3)},
            },
            "identity": {
                "panel": "4f",
                "description": "id",
                "labels": {"teff": _m(identity_sigma, 1.0), "logg": _m(0.001, 0.001)},
            },
        },
        "calibration": {"raw": {"teff": {"overall": {"z_sigma": z}}, "logg": {"overall": {"z_sigma": z}}}},
    }


def test_report_good_model() -> None:
    text = render_report(_metrics(high_order_sp=200.0, identity_sigma=1.0, z=1.02), model="m")
    assert "| transformer, Zhang et al. 2026 | 42.0 | 0.130 |" in text
    assert "| **transformer, this run** | 50.0 | 0.100 |" in text
    assert "| **xgboost, this run** | 60.0 | 0.090 |" in text
    # σ_tr/σ_xgb − 1: teff 50/60 → −17%, logg 0.1/0.09 → +11%
    assert "teff -17%, logg +11%" in text and "more precise on 1 of 2 labels" in text
    assert "teff 5.0×, logg 3.8× the standard one: the model knows" in text
    assert "the model reads labels from its context" in text
    assert "calibrated within 10%" in text


def test_report_flags_problems() -> None:
    text = render_report(_metrics(high_order_sp=45.0, identity_sigma=45.0, z=1.5), model="m")
    assert "NOT clearly larger (> 1.5×)" in text
    assert "the labels are NOT recovered well" in text
    assert "teff: σ underestimated by 50%" in text


def test_to_jsonable_makes_standard_json() -> None:
    obj = {"a": np.float32(1.5), "b": math.nan, "c": [np.int64(3), np.inf], "d": np.array([1.0, np.nan])}
    out = to_jsonable(obj)
    assert out == {"a": 1.5, "b": None, "c": [3, None], "d": [1.0, None]}
    json.dumps(out, allow_nan=False)


def test_calibration_table_age_row_shows_the_age_fit() -> None:
    """Linear age has its own calibration fit: the report's age row shows its a and b, not ln_age's (until
    session 17 it showed ln_age's, and "–" when only age was applied)."""
    from xpengine.evaluate.report import _calibration_section

    raw = {"overall": {"z_sigma": 1.9, "coverage_68": 0.4, "coverage_95": 0.7}}
    cal = {
        "raw": {"age": raw, "ln_age": raw},
        "fit": {
            "labels": {
                "ln_age": {"a": 2.2112, "b": 0.0, "applied": False},
                "age": {"a": 2.1556, "b": 0.25, "applied": True},
            }
        },
        "calibrated": {},
    }
    rows = {
        ln.split("|")[1].strip(): ln
        for ln in _calibration_section(cal, ["age", "ln_age"])
        if ln.startswith("| ")
    }
    assert "2.156" in rows["age"] and "0.250" in rows["age"]
    assert "2.211" not in rows["age"]
    assert "| – | – |" in rows["ln_age"]  # ln_age not applied
    del cal["fit"]["labels"]["age"]  # a file with ln_age's fit only: the age row falls back to it
    cal["fit"]["labels"]["ln_age"]["applied"] = True
    rows = {ln.split("|")[1].strip(): ln for ln in _calibration_section(cal, ["age"]) if ln.startswith("| ")}
    assert "2.211" in rows["age"]


def test_scored_stars_from_the_bundled_training_split_are_counted_and_said():
    """A file scored with the bundled models must be independent of their training: stars of the shipped
    APOGEE×XP dev split's train / val are counted (metrics.json, report.md, compare_models), never silent."""
    import numpy as np

    from xpengine.datasets.splits import read_default_split
    from xpengine.evaluate.eval_set import bundled_split_overlap
    from xpengine.evaluate.report import render_report

    ids, split = read_default_split()
    pick = np.concatenate(
        [ids[split == "train"][:3], ids[split == "val"][:2], ids[split == "test"][:4], [7, 8]]
    )
    assert bundled_split_overlap(pick) == {"train": 3, "val": 2, "test": 4}
    assert bundled_split_overlap(np.array([7, 8], dtype=np.int64)) == {"train": 0, "val": 0, "test": 0}
    data = {
        "test": "held.parquet",
        "split": "all",
        "n_stars": 11,
        "labels": [],
        "in_bundled_dev_split": {"train": 3, "val": 2, "test": 4},
    }
    text = render_report({"data": data, "models": {}}, model="gaia-xp")
    assert "3 of these stars are in the bundled models' APOGEE×XP training split and 2" in text
