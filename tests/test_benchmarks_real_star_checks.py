"""The default model on real stars of independently known age and mass (`benchmarks/real_star_checks.py`):
globular-cluster giants of the APOGEE×XP dev file (11–13.5 Gyr, ≈ 0.8 M☉ on the giant branch) and the
metal-poor field giants of its test split must come out old and light, as physics requires. No real
star's mass or age was used to train or choose `gaia-xp`; these are checks, not targets. Needs the
shared dev file (skips, naming it, without)."""

from __future__ import annotations

import pytest
from _paths import load_script

from xpengine.datasets.schema import write_training_set
from xpengine.inference.predictor import Predictor


def _real_star_checks():
    return load_script("benchmarks/real_star_checks.py", "real_star_checks")


@pytest.mark.slow
def test_globular_cluster_and_metal_poor_giants_come_out_old_and_light(apogee_xp_dev_build, tmp_path):
    from _datasets_real import DEV

    data = tmp_path / "dev.parquet"
    write_training_set(apogee_xp_dev_build.table, str(data))
    out = _real_star_checks().apogee_checks(
        {"gaia-xp": Predictor.load("gaia-xp", device="cpu")}, str(DEV), str(data)
    )
    gc = out["all globular-cluster giants"]
    assert gc["n"] >= 100, gc["n"]
    m = gc["models"]["gaia-xp"]
    assert m["age"]["median"] > 8.0 and m["mass"]["median"] < 1.0, m
    assert abs(m["m_h"]["median"] - gc["apogee_m_h_median"]) < 0.2, (m["m_h"], gc["apogee_m_h_median"])
    field = out["metal-poor field giants (test split)"]
    f = field["models"]["gaia-xp"]
    assert field["n"] >= 200 and field["splits"]["test"] == field["n"]
    assert f["m_h"]["median"] < -1.0 and f["age"]["median"] > 8.0 and f["mass"]["median"] < 1.0, f
