"""MIST's colour scale against real stars (`benchmarks/colour_teff_scale.py`): the grid of colours gives a MIST
point's own colour back, and, on the shared APOGEE×XP dev file, the measurement reproduces the shift and
scatter the isochrone fit uses (`isochrone_grid.COLOUR_SCALE`), so the package's table is this measurement's."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _paths import APOGEE_XP_DEV, load_script, missing_reason

from xpengine.inference import isochrone_fit as fitmod


def _cts():
    return load_script("benchmarks/colour_teff_scale.py", "colour_teff_scale")


def test_the_colour_grid_gives_a_mist_points_colour():
    grid = fitmod.load_fit_grid()
    rng = np.random.default_rng(4)
    pick = rng.choice(np.flatnonzero((grid.logg > 3.8) & (grid.teff > 4800) & (grid.teff < 6500)), 50)
    f = fitmod.fit_isochrones(
        _cts().colour_grid(grid),
        *(np.asarray(c, dtype=np.float64) for c in (grid.teff[pick], np.full(50, 30.0), grid.logg[pick])),
        np.full(50, 0.05),
        np.asarray(grid.feh[pick], dtype=np.float64),
        np.full(50, 0.05),
    )
    # the posterior mean colour of a point given its own labels: within a few hundredths of its colour
    assert np.nanmax(np.abs(f["mass"] - grid.bp_rp[pick])) < 0.05
    assert np.nanmedian(np.abs(f["mass"] - grid.bp_rp[pick])) < 0.01


def test_the_scale_in_the_fit_is_this_measurement(tmp_path):
    if not APOGEE_XP_DEV.exists():
        pytest.skip(missing_reason(APOGEE_XP_DEV))
    out = tmp_path / "c.json"
    assert _cts().main(["--apogee-xp", str(APOGEE_XP_DEV), "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["n_stars"] > 5000 and res["n_cluster_members_left_out"] > 100
    for cls in ("giants", "dwarfs"):
        # the package's entries are the measured ones, and one unmeasured hot end (8,000 K, shift 0)
        used = fitmod.COLOUR_SCALE[cls]
        assert len(used) == len(res["scale"][cls]) + 1 >= 10
        np.testing.assert_allclose(np.asarray(used[:-1]), np.asarray(res["scale"][cls]), atol=1e-3)
        assert used[-1][:2] == (8000.0, 0.0)
        # the held-out splits (bins of 20 stars or more) agree with the train split's shift within 0.05 mag
        for row in res[cls]:
            for split in ("val", "test"):
                if row["in_table"] and row[split]["n"] >= 20:
                    assert abs(row[split]["median"] - row["train"]["median"]) < 0.05, (cls, row)
    # real M giants are far redder than MIST at their spectroscopic Teff, M dwarfs less so, G dwarfs on it
    shift = {cls: dict((round(t, -2), s) for t, s, _ in fitmod.COLOUR_SCALE[cls]) for cls in COLOUR_CLASSES}
    assert shift["giants"][3700.0] > shift["dwarfs"][3700.0] + 0.15 > 0.3
    assert abs(fitmod.colour_scale(np.array([5700.0]), np.array([4.4]))[0][0]) < 0.03


COLOUR_CLASSES = ("giants", "dwarfs")
