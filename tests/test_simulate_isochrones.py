"""MIST v2.5 isochrones and MIST/C3K bolometric corrections (xpengine.simulate.isochrones) on the real grids.

Expected values: the Sun (Teff 5772 K, logg 4.438, IAU 2015 B3; M_G☉ ≈ 4.67, Casagrande & VandenBerg 2018,
MNRAS 479, L102); the red clump and the giant mass–age relation of REFERENCE §7 (fits to MIST v2.5 and
APOGEE); giant extinction ratios A_band/A_V of REFERENCE §7; BC_G of Andrae et al. 2018 (A&A 616, A8).
"""

from __future__ import annotations

import numpy as np
import pytest

h5py = pytest.importorskip("h5py")
pytest.importorskip("lachesis_grids")

from xpengine.simulate import isochrones as iso  # noqa: E402

LOG_AGE_SUN = np.log10(4.57e9)


@pytest.fixture(scope="module")
def grid() -> iso.MistGrid:
    return iso.load_mist()


def test_grid_layout(grid: iso.MistGrid) -> None:
    assert grid.feh.shape == (15,) and grid.feh[0] == -4.0 and grid.feh[-1] == 0.5
    assert grid.log_age.shape == (107,) and grid.log_age[0] == 5.0 and grid.log_age[-1] == pytest.approx(10.3)
    assert grid.count.sum() == grid.columns["initial_mass"].shape[0] == 1_350_066
    for name, col in grid.columns.items():
        assert not np.isnan(col.astype(np.float64)).any(), name  # interior gaps filled


def test_grid_nodes_reproduce_the_file(grid: iso.MistGrid) -> None:
    """At a grid node (age, [Fe/H], integer EEP) the interpolator returns the file's row; the file's own
    Teff and Mbol columns confirm log_Teff and Mbol☉ = 4.74."""
    with h5py.File(grid.path, "r") as f:
        names = [str(c) for c in f.attrs["columns"]]
        offsets, lengths = f["offsets"][:], f["lengths"][:]
        values = f["values"]
        checked = 0
        for i_feh, j_age, eep in [(12, 93, 300), (12, 93, 650), (8, 100, 560), (14, 60, 400), (5, 104, 700)]:
            k = i_feh * 107 + j_age
            row = int(lengths[:k].sum()) + eep - int(offsets[k])
            raw = dict(zip(names, values[row], strict=True))
            if np.isnan(raw["initial_mass"]):
                continue
            out = iso.interpolate_eep(eep, grid.log_age[j_age], grid.feh[i_feh])
            assert out["initial_mass"][0] == pytest.approx(raw["initial_mass"], rel=1e-6)
            assert out["mass"][0] == pytest.approx(raw["star_mass"], rel=1e-6)
            assert out["teff"][0] == pytest.approx(raw["Teff"], rel=1e-4)
            assert out["logg"][0] == pytest.approx(raw["log_g"], abs=1e-5)
            assert out["mbol"][0] == pytest.approx(raw["Mbol"], abs=1e-3)
            checked += 1
    assert checked == 5


def test_the_sun() -> None:
    """1 M☉, 4.57 Gyr, [Fe/H] = 0. MIST v2.5 (v/v_crit = 0.4) gives 5833 K, logg 4.427, L = 1.07 L☉,
    M_G = 4.57: 61 K hotter and 0.07 L☉ brighter than the Sun (the rotating grid is not the non-rotating
    solar calibration); the tolerances below state that offset, they do not hide it."""
    sun = iso.interpolate_mass(1.0, LOG_AGE_SUN, 0.0)
    assert sun["phase"][0] == iso.PHASES["main_sequence"] and sun["alive"][0]
    assert abs(sun["teff"][0] - 5772.0) < 75.0
    assert abs(sun["logg"][0] - 4.438) < 0.03
    assert 4.54 < sun["abs_g"][0] < 4.72
    assert abs(sun["log_l"][0]) < 0.04
    assert 0.98 < sun["mass"][0] <= 1.0
    assert (
        0.75 < sun["abs_bp"][0] - sun["abs_rp"][0] < 0.85
    )  # Sun's BP−RP ≈ 0.82 (Casagrande & VandenBerg 2018)


def _clump(mass: float, feh: float) -> dict[str, np.ndarray]:
    """Core-He-burning stars of initial mass ≈ `mass` uniformly over their CHeB lifetime (uniform in initial
    mass along one isochrone = uniform in time), at the age where `mass` is in the middle of it."""
    log_age = iso.log_age_at_eep(mass, 690.0, feh)
    m_start = iso.initial_mass_at_eep(632.0, log_age, feh)[0]
    m_end = iso.initial_mass_at_eep(706.9, log_age, feh)[0]
    return iso.interpolate_mass(np.linspace(m_start, m_end, 201), log_age, feh)


def test_red_clump_1p2_msun_solar() -> None:
    rc = _clump(1.2, 0.0)
    assert (rc["phase"] == iso.PHASES["red_clump"]).all()
    assert 2.4 < np.median(rc["logg"]) < 2.6  # REFERENCE §7: 2.41–2.49
    assert 0.4 < np.median(rc["abs_g"]) < 0.6  # REFERENCE §7: M_G ≈ 0.45
    assert 4700.0 < np.median(rc["teff"]) < 4820.0  # REFERENCE §7: 4750–4790 K
    assert -1.75 < np.median(rc["abs_ks"]) < -1.45  # REFERENCE §7: M_Ks ≈ −1.6
    assert (rc["mass"] < 1.2).all() and (rc["mass"] > 1.1).all()  # RGB mass loss


def test_metal_poor_clump_is_hotter_and_secondary_clump() -> None:
    assert np.median(_clump(1.0, -0.5)["teff"]) > np.median(_clump(1.2, 0.0)["teff"]) + 150.0
    m_hef = iso.he_flash_mass(0.0)
    assert 1.8 < m_hef < 2.3
    sc = _clump(2.4, 0.0)
    assert (sc["phase"] == iso.PHASES["secondary_clump"]).all()
    assert 2.55 < np.median(sc["logg"]) < 2.95  # REFERENCE §7: young secondary clump at logg 2.7–2.9


def test_giant_ages_match_reference_relation() -> None:
    """REFERENCE §7 (solar): 3.16 M☉ → 0.32 Gyr, 1.65 → 2.0, 1.26 → 5.0, 0.97 → 12.6, at mid-RGB (EEP 560,
    logg ≈ 2.5)."""
    masses = np.array([3.16, 1.65, 1.26, 0.97])
    ref = np.array([0.32, 2.0, 5.0, 12.6])
    age = 10.0 ** (iso.log_age_at_eep(masses, 560.0, 0.0) - 9.0)
    assert np.abs(np.log10(age / ref)).max() < 0.02
    logg = iso.interpolate_eep(560.0, np.log10(age) + 9.0, 0.0)["logg"]
    assert np.all((logg > 2.0) & (logg < 3.2))


def test_ms_lifetime_trends() -> None:
    t = iso.ms_lifetime_gyr([0.9, 1.0, 1.5, 2.0], 0.0)
    assert np.all(np.diff(t) < 0)
    assert 9.0 < t[1] < 11.0  # the Sun's main-sequence lifetime ≈ 10 Gyr
    assert iso.ms_lifetime_gyr(1.0, -1.0)[0] < t[1]  # metal-poor stars evolve faster


def test_mass_inversion_and_phase_order() -> None:
    rng = np.random.default_rng(3)
    n = 4000
    mass = 10.0 ** rng.uniform(-1.0, 0.6, n)
    log_age = rng.uniform(8.0, 10.13, n)
    feh = rng.uniform(-2.5, 0.5, n)
    out = iso.interpolate_mass(mass, log_age, feh)
    alive = out["alive"]
    assert 0.5 < alive.mean() < 1.0
    np.testing.assert_allclose(out["initial_mass"][alive], mass[alive], rtol=1e-9)
    assert (out["mass"][alive] <= out["initial_mass"][alive] * (1 + 1e-6)).all()
    # along one isochrone the phase code never goes backwards
    eep = np.arange(260.0, 1400.0, 1.0)
    iso_ph = iso.interpolate_eep(eep, 9.8, 0.0)["phase"]
    ok = iso_ph != iso.PHASES["remnant"]
    assert (np.diff(iso_ph[ok]) >= 0).all()
    assert {"main_sequence", "subgiant", "rgb", "red_clump", "agb"} <= {
        name for name, code in iso.PHASES.items() if (iso_ph == code).any()
    }


def test_low_mass_metal_rich_stars_use_the_lower_metallicity_node() -> None:
    out = iso.interpolate_mass([0.3, 0.8], 9.5, 0.4)
    assert out["alive"].all()
    assert out["feh_snapped"].tolist() == [True, False]


def test_dead_stars_are_not_alive() -> None:
    out = iso.interpolate_mass([3.0], 10.0, 0.0)  # a 3 M☉ star is a white dwarf at 10 Gyr
    assert not out["alive"][0] and out["phase"][0] == iso.PHASES["remnant"] and np.isnan(out["teff"][0])


def test_out_of_grid_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match=r"feh: 1 of 2 values outside the grid \[-4.0, 0.5\]"):
        iso.interpolate_mass([1.0, 1.0], 9.5, [0.0, 0.7])
    with pytest.raises(ValueError, match="log_age"):
        iso.interpolate_eep(400.0, 10.5, 0.0)


def test_bolometric_corrections_and_extinction() -> None:
    bc = iso.load_bc()
    assert bc.table.shape == (70, 26, 18, 13, 6)
    # at a grid node the interpolator returns the table value
    out = iso.bolometric_corrections(bc.teff[20], bc.logg[15], bc.feh[10], bc.av[0])
    assert out["g"] == pytest.approx(bc.table[20, 15, 10, 0, 0])
    # BC_G of dwarfs vs Andrae et al. 2018 (independent relation, its BC_G☉ = 0.06 vs MIST's 0.09)
    from xpengine.simulate.physics import andrae_bc_g

    teff = np.array([4500.0, 5000.0, 5772.0, 6500.0])
    diff = iso.bolometric_corrections(teff, 4.4, 0.0)["g"] - andrae_bc_g(teff)
    assert np.abs(diff).max() < 0.06
    # giant extinction ratios A_band/A_V (REFERENCE §7: 0.80, 1.02, 0.63, 0.289, 0.183, 0.118)
    ext = iso.extinction(np.array([4750.0]), np.array([2.45]), np.array([0.0]), np.array([1.0]))
    ref = {"g": 0.80, "bp": 1.02, "rp": 0.63, "j": 0.289, "h": 0.183, "ks": 0.118}
    for band, r in ref.items():
        assert ext[f"a_{band}"][0] == pytest.approx(r, abs=0.01), band
    # beyond the table's A_V = 6 the extinction is extrapolated linearly
    big = iso.extinction(np.array([4750.0]), np.array([2.45]), np.array([0.0]), np.array([12.0]))
    six = iso.extinction(np.array([4750.0]), np.array([2.45]), np.array([0.0]), np.array([6.0]))
    assert big["a_g"][0] == pytest.approx(2.0 * six["a_g"][0])


def test_total_metallicity() -> None:
    assert iso.total_metallicity(-1.0, 0.0) == pytest.approx(-1.0)
    assert iso.total_metallicity(-1.0, 0.4) == pytest.approx(-1.0 + np.log10(0.694 * 10**0.4 + 0.306))
