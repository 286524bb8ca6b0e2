"""`benchmarks/emulated_twins.py`: real APOGEE×XP stars against the emulator's XP at their own labels, through
the same model. Needs the shared dev file (skips, naming it, without)."""

from __future__ import annotations

import numpy as np
import pytest
from _paths import load_script

from xpengine.datasets.schema import read_training_set, write_training_set
from xpengine.inference.predictor import Predictor


@pytest.mark.slow
def test_twins_are_emulated_at_the_stars_labels_and_read_like_them(apogee_xp_dev_build, tmp_path):
    from importlib import resources

    from _datasets_real import DEV

    from xpengine.simulate.calibration import load_calibration, packaged_calibration

    twins = load_script("benchmarks/emulated_twins.py", "emulated_twins")
    data = tmp_path / "dev.parquet"
    write_training_set(apogee_xp_dev_build.table, str(data))
    arrays = read_training_set(str(data), split=None)
    groups = twins.groups(str(DEV))
    gc = groups["globular-cluster giants"]
    assert len(gc["source_id"]) >= 80 and np.all(gc["fe_h"] < -0.5)
    assert {"NGC 6791", "NGC 6819", "NGC 7789", "disk giants, test split"} <= set(groups)
    with resources.as_file(packaged_calibration("v1")) as path:
        cal = load_calibration(str(path))
    res = twins.compare(
        Predictor.load("gaia-xp", device="cpu"), arrays, groups["disk giants, test split"], cal
    )
    assert res["n"] >= 500
    real, twin = res["real"], res["twin"]
    assert real != twin  # the twins' XP are the emulator's, not the real coefficients
    # read at the labels they were emulated at: Teff within 100 K, logg within 0.1 of ASPCAP (medians)
    assert abs(twin["d_teff"]) < 100 and abs(twin["d_logg"]) < 0.1, twin
    assert 0.8 < twin["mass"] < 2.0 and 1.0 < twin["age"] < 10.0, twin
