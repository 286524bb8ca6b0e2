"""benchmarks/mass_floor.py: a regressor from labels gives back a mass that follows from them, loses it with
label noise, and scores the catalogue's label σ on the same stars."""

import itertools

import numpy as np
import pandas as pd
import pytest
from _paths import load_script

pytest.importorskip("xgboost")


def _giants(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    teff = rng.uniform(4000.0, 5200.0, n)
    logg = rng.uniform(1.0, 3.4, n)
    fe_h = rng.uniform(-1.0, 0.4, n)
    mass = 1.0 + (teff - 4600.0) / 600.0 + 0.3 * fe_h  # follows from the labels exactly
    return pd.DataFrame(
        {
            "source_id": np.arange(n) + 10_000 * seed,
            "evolutionary_state": ["rgb"] * n,
            "mass": mass,
            "teff": teff,
            "logg": logg,
            "fe_h": fe_h,
            "alpha_m": np.zeros(n),
            "luminosity_lsun": 10.0 ** rng.uniform(1.0, 2.5, n),
            "g": rng.uniform(8.0, 17.0, n),
            "parallax_true_mas": rng.uniform(0.2, 2.0, n),
        }
    )


def test_floors_follow_the_label_noise():
    mf = load_script("benchmarks/mass_floor.py", "mass_floor")
    train, test = _giants(6000, 1), _giants(1500, 2)
    cat = test[["source_id"]].assign(
        teff=test.teff + np.random.default_rng(3).normal(0.0, 100.0, len(test)),
        logg=test.logg,
        m_h=test.fe_h + 0.05,  # a constant offset: σ 0 against the true [Fe/H]
        mass=test.mass,
    )
    cs = mf.catalogue_sigma(test, cat)
    assert [b["n"] for b in cs] == [
        int(((test.g >= lo) & (test.g < hi)).sum()) for lo, hi in itertools.pairwise(mf.G_BINS)
    ]
    for b in cs:
        assert b["teff"] == pytest.approx(100.0, rel=0.2) and b["fe_h"] < 1e-9 and b["mass"] < 1e-9
    rows = {(r["scenario"], r["luminosity"]): r for r in mf.floors(train, test, cs, rounds=200)}
    assert rows[("exact", False)]["all"] < 0.03
    # 100 K of Teff noise is 0.17 M☉ of mass here; 30 K (aspcap) 0.05
    assert (
        rows[("catalogue", False)]["all"]
        > 0.1
        > rows[("aspcap", False)]["all"]
        > rows[("exact", False)]["all"]
    )
    md = mf.render_markdown(
        {
            "command": "c",
            "machine": "m",
            "date_utc": "d",
            "n_train": 6000,
            "n_test": 1500,
            "catalogue": cs,
            "floors": list(rows.values()),
        }
    )
    assert "| exact | no |" in md and "**the catalogue**" in md
