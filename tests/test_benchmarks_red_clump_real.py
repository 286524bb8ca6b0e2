"""`benchmarks/red_clump_real.py`: the red-clump preset on real APOGEE×XP stars, predicted labels against
Bovy et al.'s cuts on ASPCAP labels. The selection goes through the preset's own SQL; the real-data run
needs the shared dev file (skips, naming it, without)."""

from __future__ import annotations

import numpy as np
import pytest
from _paths import load_script

from xpengine.datasets.schema import write_training_set
from xpengine.inference.predictor import Predictor


def _script():
    return load_script("benchmarks/red_clump_real.py", "red_clump_real")


def test_selection_is_the_presets():
    rc = _script()
    # (Teff, logg, [M/H], (J−Ks)0): a clump giant 93 K above Teff_ref; one 30 K above it; a dwarf; a giant
    # on the upper-RGB side of Bovy's logg line; a clump giant with a blue (J−Ks)0
    teff = np.array([4700.0, 4637.0, 5800.0, 4500.0, 4700.0])
    logg = np.array([2.40, 2.40, 4.40, 2.60, 2.40])
    m_h = np.zeros(5)
    jk0 = np.array([0.60, 0.60, 0.35, 0.65, 0.45])
    assert rc._select(teff, logg, m_h, jk0).tolist() == [True, False, True, False, True]
    assert rc._select(teff, logg, m_h, jk0, teff_offset_min=None).tolist() == [True, True, True, False, True]
    colours = rc._select(teff, logg, m_h, jk0, teff_offset_min=None, jk0_view="colours")
    assert colours.tolist() == [True, True, False, False, False]


@pytest.mark.slow
def test_real_giants_selected_from_predicted_labels_agree_with_aspcap(apogee_xp_dev_build, tmp_path):
    data = tmp_path / "dev.parquet"
    write_training_set(apogee_xp_dev_build.table, str(data))
    out = _script().check(str(data), "test", {"gaia-xp": Predictor.load("gaia-xp", device="cpu")})
    assert out["n_reference"] >= 50, out["n_reference"]
    res = out["models"]["gaia-xp"]
    with_colours = res["default + (J−Ks)0 cuts"]
    assert with_colours["agree"] > 0.6 and with_colours["recovered"] > 0.5, with_colours
    # the Teff offset cut selects a subset of the published cuts' selection
    assert with_colours["n_selected"] <= res["published + (J−Ks)0 cuts"]["n_selected"]
