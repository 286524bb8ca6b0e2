"""benchmarks/age_sigma_relative.py on a sky of two populations (old giants of small raw σ_ln, young ones of
large): the relative entry wins by the script's own rule, and the calibration it writes is format 7."""

from __future__ import annotations

import json

import numpy as np
from _paths import load_script
from test_training_calibrate_on_sky import _two_populations

from xpengine.model.calibration import Calibration, LabelCalibration


def test_the_relative_entry_wins_where_the_absolute_one_mixes_ages(tmp_path):
    mod = load_script("benchmarks/age_sigma_relative.py", "age_sigma_relative")
    labels = {
        "mass": LabelCalibration(a=1.0, applied=True, method="scale", unit="Msun"),
        "ln_age": LabelCalibration(a=1.0, applied=True, method="scale"),
        "age": LabelCalibration(a=1.0, applied=True, method="scale", unit="Gyr"),
    }
    model = tmp_path / "model"
    model.mkdir()
    Calibration(labels=labels).save(model / "calibration.json")
    skies = []
    for name in ("fit", "test"):
        (tmp_path / name).mkdir()
        _two_populations(tmp_path / name, Calibration.load(model / "calibration.json"))
        skies.append([str(tmp_path / name / "cat"), str(tmp_path / name / "truth.parquet")])
    out, js = tmp_path / "cal.json", tmp_path / "r.json"
    argv = ["--model", str(model), "--fit", *skies[0], "--test", *skies[1]]
    assert mod.main([*argv, "--write-calibration", str(out), "--json", str(js)]) == 0
    r = json.loads(js.read_text())
    assert r["verdict"]["adopt_relative"] is True, r["verdict"]
    worst = r["verdict"]["worst_abs_ln_spread_by_predicted_age"]
    assert worst["relative"] < worst["absolute"], worst
    test_all = r["tables"]["test sky"]["selection"][-1]
    assert test_all["n"] == 8000 and 0.85 < test_all["relative"]["lin"] < 1.15
    cal = Calibration.load(out)
    assert cal.labels["age"].relative and cal.labels["ln_age"] == labels["ln_age"]
    assert json.loads(out.read_text())["format_version"] == "7"
    assert cal.provenance["sky_calibration_age"]["catalogue"] == skies[0][0]
    assert np.isfinite(test_all["via ln_age"]["lin"])
