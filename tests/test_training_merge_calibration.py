"""training/merge_calibration.py: labels from one calibration, the rest from another."""

from __future__ import annotations

import pytest
from _paths import load_script

from xpengine.model.calibration import Calibration


def _script():
    return load_script("training/merge_calibration.py", "merge_calibration")


def _cal(a: dict[str, float], data: str) -> dict:
    labels = {
        k: {"a": v, "b": 0.0, "applied": True, "method": "scale_floor", "n_val": 10, "unit": ""}
        for k, v in a.items()
    }
    return {"format_version": "1", "labels": labels, "provenance": {"data": data, "split": "val"}}


def test_merge_takes_the_named_labels_from_the_other_calibration(tmp_path):
    mod = _script()
    base = Calibration.from_dict(_cal({"teff": 0.8, "logg": 0.9, "mass": 1.1}, "mixed.parquet"))
    other = Calibration.from_dict(_cal({"teff": 0.66, "logg": 0.79}, "real.parquet"))
    out = mod.merge(base, other, ["teff", "logg"])
    assert {k: v.a for k, v in out.labels.items()} == {"teff": 0.66, "logg": 0.79, "mass": 1.1}
    assert out.provenance["data"] == "mixed.parquet"
    assert out.provenance["merged"]["other"]["data"] == "real.parquet"
    assert out.provenance["merged"]["base_labels_kept"] == ["mass"]
    # round trip through the command line and the file format
    base.save(tmp_path / "base.json")
    other.save(tmp_path / "other.json")
    argv = [str(tmp_path / "base.json"), str(tmp_path / "other.json"), "--labels", "teff", "logg"]
    assert mod.main([*argv, "--output", str(tmp_path / "out.json")]) == 0
    assert Calibration.load(tmp_path / "out.json").to_dict() == out.to_dict()
    with pytest.raises(ValueError, match=r"labels \['mass'\] are not calibrated"):
        mod.merge(base, other, ["mass"])


def test_every_order_entries_follow_the_merged_labels() -> None:
    """Format 5: a merged label takes OTHER's every-order entry (or none), never BASE's stale one; BASE's
    every-order entries of the labels it keeps stay."""
    from _paths import load_script

    from xpengine.model.calibration import Calibration, LabelCalibration

    mod = load_script("training/merge_calibration.py", "merge_calibration")
    e = LabelCalibration(a=2.0, applied=True)
    base = Calibration(
        labels={"teff": e, "mass": e}, all_orders={"teff": LabelCalibration(a=9.0, applied=True), "mass": e}
    )
    other = Calibration(labels={"teff": LabelCalibration(a=0.8, applied=True)})
    out = mod.merge(base, other, ["teff"])
    assert out.labels["teff"].a == 0.8 and "teff" not in out.all_orders and out.all_orders["mass"] == e
    other.all_orders = {"teff": LabelCalibration(a=0.7, applied=True)}
    assert mod.merge(base, other, ["teff"]).all_orders["teff"].a == 0.7
