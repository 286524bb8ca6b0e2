"""The magnitude-limited MIST sky (xpengine.simulate.populations) on the real grids."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("h5py")
pytest.importorskip("lachesis_grids")

from xpengine.simulate import galaxy, physics
from xpengine.simulate import isochrones as iso
from xpengine.simulate import populations as pp
from xpengine.simulate import stars as star_labels
from xpengine.simulate.physics import dust_ebv

SMALL = pp.SkyPopulationConfig(batch_size=8192, pilot_batches=2)


@pytest.fixture(scope="module")
def sky() -> dict[str, np.ndarray]:
    return pp.draw_sky_arrays(1500, 11, SMALL)


def test_label_distributions_match_their_definition() -> None:
    """The fraction below [Fe/H] = −1 of each population equals what its distribution sets (4σ binomial)."""
    rng = np.random.default_rng(5)
    n = 40_000
    for name, code in pp.POPULATIONS.items():
        _, feh, _ = star_labels.sample_labels(np.full(n, code), rng)
        assert feh.min() >= -2.5 and feh.max() <= 0.5
        for cut in (-1.0, -0.5, 0.0):
            p = star_labels.expected_fraction_below(name, cut)
            assert abs((feh < cut).mean() - p) < 4 * np.sqrt(p * (1 - p) / n) + 1e-4, (name, cut)
    assert star_labels.expected_fraction_below("halo", -1.0) > 0.8
    assert 0.03 < star_labels.expected_fraction_below("thick", -1.0) < 0.08
    assert star_labels.expected_fraction_below("thin", -1.0) < 0.002


def test_alpha_sequences_and_ages() -> None:
    rng = np.random.default_rng(6)
    n = 20_000
    thin = star_labels.sample_labels(np.full(n, pp.POPULATIONS["thin"]), rng)
    thick = star_labels.sample_labels(np.full(n, pp.POPULATIONS["thick"]), rng)
    halo = star_labels.sample_labels(np.full(n, pp.POPULATIONS["halo"]), rng)
    both = (thin[1] > -0.7) & (thin[1] < -0.3), (thick[1] > -0.7) & (thick[1] < -0.3)
    assert thick[2][both[1]].mean() - thin[2][both[0]].mean() > 0.12  # two α sequences at the same [Fe/H]
    assert abs(halo[2].mean() - 0.30) < 0.01
    assert 0.0 < thin[0].min() and thin[0].max() <= 10.0 and abs(thin[0].mean() - 5.0) < 0.1
    assert thick[0].min() >= 8.0 and halo[0].min() >= 10.0 and halo[0].max() <= 13.5
    with pytest.raises(ValueError, match="population codes"):
        star_labels.sample_labels(np.array([0, 7]), rng)


def test_kroupa_imf() -> None:
    m = np.array([0.0799999, 0.08, 0.4999999, 0.5, 1.0, 2.0])
    f = star_labels.kroupa_imf(m)
    assert f[0] == pytest.approx(f[1], rel=1e-5) and f[2] == pytest.approx(f[3], rel=1e-5)
    assert f[4] / f[5] == pytest.approx(2.0**2.3)
    assert star_labels.kroupa_imf(0.1) / star_labels.kroupa_imf(0.2) == pytest.approx(2.0**1.3)


def test_density_normalisation() -> None:
    """At the Galactic-plane point below the Sun: thin 1, thick 0.12, halo 0.005 (local-thin units); the
    bulge holds 1.5e10 M☉ / 0.04 M☉ pc⁻³ = 375 kpc³ of local-thin-disk density."""
    d = np.array([physics.Z_SUN_KPC])  # straight down from the Sun to z = 0
    down = {name: galaxy.density(np.array([code]), d, np.array([0.0]), np.array([-90.0]))[0] for name, code in pp.POPULATIONS.items()}  # fmt: skip
    assert down["thin"] == pytest.approx(1.0)
    assert down["thick"] == pytest.approx(0.12)
    assert down["halo"] == pytest.approx(0.005)
    h = 0.04
    x = np.arange(-6.0, 6.0, h) + h / 2
    yz = np.arange(-3.0, 3.0, h) + h / 2
    X, Y = np.meshgrid(x, yz, indexing="ij")
    vol = sum(galaxy._bulge_shape(X, Y, np.full_like(X, z)).sum() for z in yz) * h**3
    assert vol == pytest.approx(galaxy.BULGE_SHAPE_VOLUME_KPC3, rel=0.01)
    assert galaxy.BULGE_NORM * galaxy.BULGE_SHAPE_VOLUME_KPC3 == pytest.approx(375.0)


def test_visible_region_contains_every_visible_star() -> None:
    """The dust-aware visible distance range is a superset: just beyond it, with the exact dust and the
    star's own extinction, every star is fainter than the limit (so the final exact cut is unbiased)."""
    rng = np.random.default_rng(9)
    n = 3000
    l_deg = rng.uniform(0.0, 360.0, n)
    b_deg = np.rad2deg(np.arcsin(rng.uniform(-0.3, 0.3, n)))  # low latitudes: the most dust
    teff = rng.uniform(3600.0, 9000.0, n)
    logg = rng.uniform(1.0, 4.8, n)
    m_h = rng.uniform(-2.0, 0.4, n)
    abs_g = rng.uniform(-2.0, 8.0, n)
    a6 = iso.extinction(teff, logg, m_h, 6.0)["a_g"] / 6.0 * 3.1
    pop = rng.integers(0, 4, n)
    vv = galaxy.visible_volume(pop, abs_g, l_deg, b_deg, g_limit=17.65, a_g_per_ebv=a6)
    k = vv.cdf.shape[1]
    n_visible, d_max = vv.n_visible, vv.d_max_kpc
    cut = n_visible < k  # stars whose visible range ends before d_max
    assert cut.sum() > 500
    s_edge = d_max[cut] * (n_visible[cut] / k) ** 2  # inner edge of the first excluded node
    ebv = dust_ebv(s_edge, l_deg[cut], b_deg[cut])
    a_g = iso.extinction(teff[cut], logg[cut], m_h[cut], 3.1 * ebv)["a_g"]
    g_edge = abs_g[cut] + 5.0 * np.log10(s_edge * 1000.0) - 5.0 + a_g
    assert (g_edge > 17.65).all()


def test_sky_is_magnitude_limited_and_dwarf_dominated(sky: dict[str, np.ndarray]) -> None:
    assert set(pp.COLUMNS) == set(sky) and all(v.shape == (1500,) for v in sky.values())
    assert ((sky["g"] >= 5.0) & (sky["g"] <= 17.65)).all()
    mu = 5.0 * np.log10(sky["distance_kpc"] * 1000.0) - 5.0
    np.testing.assert_allclose(sky["g"], sky["abs_g0"] + mu + sky["a_g"], atol=1e-9)
    np.testing.assert_allclose(sky["a_v"], 3.1 * sky["ebv"])
    dwarf = sky["evolutionary_state"] == pp.EVOLUTIONARY_STATES["dwarf"]
    assert 0.6 < dwarf.mean() < 0.9
    phases = set(sky["phase_name"])
    assert {"main_sequence", "subgiant", "rgb", "red_clump", "secondary_clump", "agb"} <= phases
    assert "remnant" not in phases
    assert set(sky["population_name"]) == set(pp.POPULATIONS)
    assert (sky["population_name"] == "thin").mean() > 0.5


def test_sky_stars_are_physically_consistent(sky: dict[str, np.ndarray]) -> None:
    ph = sky["phase"]
    m_iso = np.minimum(sky["m_h"], 0.5)
    giant = np.isin(ph, [iso.PHASES[p] for p in ("rgb", "red_clump", "secondary_clump", "agb")])
    ms = ph == iso.PHASES["main_sequence"]
    t_ms = iso.ms_lifetime_gyr(sky["initial_mass"], m_iso)
    # no giant younger than its main-sequence lifetime; no main-sequence star older than it
    assert (sky["age_gyr"][giant] >= t_ms[giant] * 0.999).all()
    ok = ms & np.isfinite(t_ms)  # (the lightest stars outlive the grid's 20 Gyr: t_ms NaN)
    assert (sky["age_gyr"][ok] <= t_ms[ok] * 1.001).all()
    # mass loss only, and only where expected
    assert (sky["mass"] <= sky["initial_mass"] * (1 + 1e-6)).all()
    assert np.median(sky["initial_mass"][ms] - sky["mass"][ms]) < 1e-3
    # L = M (Teff/Teff☉)^4 g☉/g (Stefan–Boltzmann with R² = GM/g) to MIST's rounding
    lum = sky["mass"] * (sky["teff"] / 5772.0) ** 4 * 10.0 ** (4.438 - sky["logg"])
    np.testing.assert_allclose(lum, sky["luminosity"], rtol=0.03)
    # the isochrone metallicity is the Salaris [M/H]
    np.testing.assert_allclose(sky["m_h"], iso.total_metallicity(sky["fe_h"], sky["alpha_m"]))
    # giants: red clump at logg ≈ 2.4–2.8, RGB/AGB below 3.5
    rc = ph == iso.PHASES["red_clump"]
    assert 2.3 < np.median(sky["logg"][rc & (sky["fe_h"] > -0.5)]) < 2.7
    assert (sky["logg"][ph == iso.PHASES["rgb"]] < 3.5).all()


def test_sky_has_metal_poor_old_giants(sky: dict[str, np.ndarray]) -> None:
    giant = sky["evolutionary_state"] > 0
    poor = giant & (sky["fe_h"] < -1.0)
    assert poor.sum() >= 20
    assert np.median(sky["age_gyr"][poor]) > 9.0
    assert sky["fe_h"].min() < -2.0
    # the halo's stars are metal-poor in the sky as in its definition
    halo = sky["population_name"] == "halo"
    assert abs((sky["fe_h"][halo] < -1.0).mean() - star_labels.expected_fraction_below("halo", -1.0)) < 0.12


def test_draws_are_reproducible() -> None:
    cfg = pp.SkyPopulationConfig(batch_size=4096, pilot_batches=1)
    a = pp.draw_sky_arrays(100, 42, cfg)
    b = pp.draw_sky_arrays(100, np.random.default_rng(42), cfg)
    c = pp.draw_sky_arrays(100, 43, cfg)
    for key in pp.COLUMNS:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["teff"], c["teff"])


def test_giant_boost_and_table() -> None:
    cfg = pp.SkyPopulationConfig(batch_size=4096, pilot_batches=1, giant_boost=4.0)
    table = pp.draw_sky(250, 3, cfg)
    assert table.column_names == list(pp.COLUMNS)
    assert table.schema.field("teff").metadata[b"unit"] == b"K"
    d = table.to_pydict()
    state = np.array(d["evolutionary_state"])
    w = np.array(d["selection_weight"])
    assert (state > 0).mean() > 0.45  # about a quarter without the boost
    assert np.all(w[state > 0] == 0.25) and np.all(w[state == 0] == 1.0)


def test_config_errors_are_listed() -> None:
    bad = pp.SkyPopulationConfig(g_bright=18.0, mass_min=0.01, segment_proposal=(1.0, 0.0, 1.0, 1.0))
    with pytest.raises(ValueError) as err:
        pp.draw_sky_arrays(10, 0, bad)
    msg = str(err.value)
    assert "g_bright=18.0" in msg and "mass_min=0.01" in msg and "segment_proposal" in msg


def test_isochrone_sampling_follows_the_imf() -> None:
    """The proposal mixes an initial-mass proposal (main sequence) and EEP proposals (later phases); with
    their weights, the share of each phase along one isochrone equals the Kroupa-IMF share of its
    initial-mass interval (computed here directly from the isochrone's masses at the phase EEPs)."""
    rng = np.random.default_rng(21)
    n = 40_000
    log_age, m_h = np.full(n, 9.7), np.full(n, 0.0)
    plan = pp._base_plan(pp.SkyPopulationConfig(), adaptive_directions=False)
    stars, w, _ = star_labels._stellar_proposals(
        rng, np.zeros(n, dtype=np.int64), log_age, m_h, plan.p_cell, 0.1
    )
    edges = iso.initial_mass_at_eep(np.array([iso.EEP_TAMS, iso.EEP_TIP, iso.EEP_TPAGB_END], float), 9.7, 0.0)
    m = np.concatenate([np.geomspace(0.1, edges[0], 200_001), np.linspace(edges[0], edges[-1], 200_001)[1:]])
    cum = np.concatenate(
        [
            [0.0],
            np.cumsum(0.5 * (star_labels.kroupa_imf(m[1:]) + star_labels.kroupa_imf(m[:-1])) * np.diff(m)),
        ]
    )
    imf_mass = np.interp([edges[0], edges[1], edges[2]], m, cum)
    expect_evolved = (imf_mass[2] - imf_mass[0]) / imf_mass[2]
    expect_after_tip = (imf_mass[2] - imf_mass[1]) / imf_mass[2]
    evolved = stars["eep"] >= iso.EEP_TAMS
    assert w[evolved].sum() / w.sum() == pytest.approx(expect_evolved, rel=0.05)
    assert w[stars["eep"] >= iso.EEP_TIP].sum() / w.sum() == pytest.approx(expect_after_tip, rel=0.08)


def test_caller_directions_and_observe_hooks() -> None:
    """With the caller's directions (as for one HEALPix partition) every star lies in their region and
    carries their extra columns; `observe` (as in sky.draw_stars) drops stars and adds columns."""

    def patch(rng: np.random.Generator, k: int) -> dict[str, np.ndarray]:
        ra = 30.0 * rng.random(k)
        dec = np.rad2deg(np.arcsin(0.5 * rng.random(k)))  # 0 ≤ dec ≤ 30°, uniform on the sphere
        return {"ra": ra, "dec": dec, "cell": np.floor(ra / 10.0).astype(np.int64)}

    def observe(stars: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {"keep": stars["g"] < 16.0, "g_twice": 2.0 * stars["g"]}

    cfg = pp.SkyPopulationConfig(batch_size=2048, pilot_batches=1)
    d = pp.draw_sky_arrays(100, 8, cfg, directions=patch, observe=observe)
    assert (d["ra"] >= 0.0).all() and (d["ra"] <= 30.0).all()
    assert (d["dec"] >= 0.0).all() and (d["dec"] <= 30.0 + 1e-9).all()
    np.testing.assert_array_equal(d["cell"], np.floor(d["ra"] / 10.0))
    assert d["g"].shape == (100,) and (d["g"] < 16.0).all()
    np.testing.assert_array_equal(d["g_twice"], 2.0 * d["g"])
