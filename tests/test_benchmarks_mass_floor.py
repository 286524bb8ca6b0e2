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
    mass = 1.2 + (teff - 4600.0) / 1500.0 + 0.2 * fe_h  # follows from the labels exactly (0.8–1.6 M☉)
    return pd.DataFrame(
        {
            "source_id": np.arange(n) + 10_000 * seed,
            "evolutionary_state": ["rgb"] * n,
            "mass": mass,
            "age_gyr": 10.0 * mass**-3.0,
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
    assert rows[("exact", False)]["all"] < 0.012
    # 100 K of Teff noise is 0.067 M☉ of mass here (less what the regressor's shrinkage takes); 30 K (aspcap) 0.02
    assert (
        rows[("catalogue", False)]["all"]
        > 0.04
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


def test_cluster_giants_go_through_the_same_estimator(tmp_path):
    """Three giants at NGC 6819's position and [Fe/H] (2MASS-style ids) come back as that cluster's row."""
    from astropy.io import fits

    mf = load_script("benchmarks/mass_floor.py", "mass_floor")
    n = 3
    cols = [
        fits.Column("apogee_id", "18A", array=["2M19411848+4011240"] * n),
        fits.Column("teff", "E", array=[4500.0, 4700.0, 4800.0]),
        fits.Column("logg", "E", array=[2.0, 2.4, 2.8]),
        fits.Column("fe_h", "E", array=[0.05, 0.0, 0.1]),
        fits.Column("alpha_m", "E", array=[0.0, 0.0, 0.0]),
        fits.Column("gaiaedr3_phot_g_mean_mag", "E", array=[11.0, 12.0, 13.0]),
    ]
    path = str(tmp_path / "apogee_xp.fits")
    fits.BinTableHDU.from_columns(cols).writeto(path)
    rows = mf.cluster_estimates(_giants(4000, 1), path, rounds=50)
    assert [r["cluster"] for r in rows] == ["NGC 6819"] and rows[0]["n"] == n
    want = 1.2 + (np.median([4500.0, 4700.0, 4800.0]) - 4600.0) / 1500.0 + 0.2 * 0.05
    assert rows[0]["labels_mass"] == pytest.approx(want, abs=0.1)
    assert np.isfinite(rows[0]["with_l_age_gyr"])
    off = rows[0]["teff_minus_mist_rgb"]
    assert off["n_rgb"] + off["n_clump_like"] == n and (off["median"] is None or abs(off["median"]) < 1000)


def test_rgb_teff_offset_gives_back_a_shift_of_the_isochrone():
    """Giants placed on MIST's own RGB of 2.4 Gyr at solar [Fe/H] read 0 K; moved 50 K cooler, −50 K."""
    from xpengine.simulate import isochrones as iso
    from xpengine.simulate.mist_phases import PHASES

    mf = load_script("benchmarks/mass_floor.py", "mass_floor")
    s = iso.interpolate_eep(np.arange(454.0, 605.0, 1.0), np.log10(2.4e9), 0.0)
    rgb = (s["phase"] == PHASES["rgb"]) & (s["logg"] > 1.2) & (s["logg"] < 2.2)  # below the clump
    teff, logg = s["teff"][rgb], s["logg"][rgb]
    assert teff.size >= 5
    assert abs(mf.rgb_teff_offset(teff, logg, 0.0, 0.0, 2.4)["median"]) < 3.0
    shifted = mf.rgb_teff_offset(teff - 50.0, logg, 0.0, 0.0, 2.4)
    assert shifted["median"] == pytest.approx(-50.0, abs=3.0) and shifted["n_clump_like"] == 0
