"""`simulate_sky(..., SkyConfig(physics="mist"))`: the MIST four-population sky in the real Gaia formats."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

pytest.importorskip("h5py")
pytest.importorskip("lachesis_grids")

from xpengine.simulate import isochrones as iso
from xpengine.simulate import populations as pp
from xpengine.simulate.generate import simulate_sky
from xpengine.simulate.sky import SkyConfig

N_SOURCES = 600
# b ≈ −44° (l ≈ 171°): halo and thick disk; l ≈ +3°, b ≈ −3° … −12°: bulge behind the disk
HIGH_LATITUDE, BULGE = (0, 3111), (459776, 460799)
FAST = pp.SkyPopulationConfig(batch_size=4096, pilot_batches=1)
MIST = SkyConfig(physics="mist", populations=FAST)


@pytest.fixture(scope="module")
def mist_sky(tmp_path_factory) -> tuple[Path, dict]:
    path = tmp_path_factory.mktemp("mist_sky")
    # chunk_size 200: several chunks per partition (the MIST pilot density splits the pixel range)
    summary = simulate_sky(
        path, N_SOURCES, seed=3, partitions=[HIGH_LATITUDE, BULGE], chunk_size=200, config=MIST
    )
    return path, summary


@pytest.fixture(scope="module")
def truth(mist_sky):
    return pq.read_table(mist_sky[0] / "truth.parquet").to_pandas()


def _distance_modulus(t) -> np.ndarray:
    return 5.0 * np.log10(t.distance_pc.to_numpy()) - 5.0


def test_files_read_back_with_the_project_readers(mist_sky, truth) -> None:
    from xpengine.io import discover_partitions, read_gaia_source, read_xp_continuous, verify_md5sums

    path, summary = mist_sky
    assert summary["physics"] == "mist"
    # chunks of at most 200 sources, the pilot density splitting each pixel range
    assert [p["n_chunks"] for p in summary["partitions"]] == [
        -(-p["n_sources"] // 200) for p in summary["partitions"]
    ]
    parts = discover_partitions(path)
    assert [p.name for p in parts] == ["000000-003111", "459776-460799"]
    assert all(verify_md5sums(path / "_MD5SUM.txt").values())
    ids = []
    for p in parts:
        xp = read_xp_continuous(p.xp_url, with_correlations=True)
        gs = read_gaia_source(p.gaia_url)
        assert xp.column("read_problem").null_count == xp.num_rows
        assert gs.column("read_problem").null_count == gs.num_rows
        sid = xp.column("source_id").to_numpy()
        np.testing.assert_array_equal(sid, gs.column("source_id").to_numpy())
        assert np.all(np.diff(sid) > 0) and np.all(((sid >> 43) >= p.hpx8_min) & ((sid >> 43) <= p.hpx8_max))
        assert gs.column("has_xp_continuous").to_numpy(zero_copy_only=False).all()
        ids.append(sid)
    ids = np.concatenate(ids)
    assert ids.size == N_SOURCES
    np.testing.assert_array_equal(np.sort(ids), np.sort(truth.source_id.to_numpy()))
    for name in ("tmass.parquet", "ebv.parquet"):
        assert pq.read_table(path / name).num_rows == N_SOURCES
    from astropy.io import fits

    with fits.open(path / "allStar-synthetic.fits") as h:
        assert len(h[1].data) == summary["n_apogee_rows"] > 0


def test_truth_has_the_four_populations_and_every_giant_phase(truth) -> None:
    assert set(truth.population) == {"thin", "thick", "halo", "bulge"}
    by_part = truth.groupby("partition").population.value_counts()
    assert by_part["459776-460799"]["bulge"] >= 30  # towards the bulge
    # the high-latitude patch gets its density share (about 1/7 of the sources): a tenth of them halo
    assert by_part["000000-003111"]["halo"] >= 5 and "bulge" not in by_part["000000-003111"]
    # dwarfs (MS, subgiants) dominate away from the bulge; towards it, its giants are most of the stars
    dwarf = truth.evolutionary_state == "dwarf"
    assert (dwarf[truth.partition == "000000-003111"]).mean() > 0.75
    assert (truth.phase_name == "rgb").sum() >= 30 and (truth.phase_name == "red_clump").sum() >= 30
    assert {"main_sequence", "subgiant", "rgb", "red_clump", "secondary_clump", "agb"} <= set(
        truth.phase_name
    )
    # the coarse states follow the MIST phases (AGB counted as rgb, the secondary clump as red_clump)
    expect = {
        "pre_main_sequence": "dwarf",
        "main_sequence": "dwarf",
        "subgiant": "dwarf",
        "rgb": "rgb",
        "agb": "rgb",
        "red_clump": "red_clump",
        "secondary_clump": "red_clump",
    }
    assert (truth.phase_name.map(expect) == truth.evolutionary_state).all()
    # metallicity: down to the populations' −2.5 floor, a real metal-poor tail among the giants
    assert -2.5 <= truth.fe_h.min() < -1.9 and truth.fe_h.max() <= 0.5
    giant = ~dwarf
    assert (truth.fe_h[giant] < -1.0).sum() >= 10 and (truth.fe_h[giant] < -1.0).mean() > 0.05
    # [M/H] is the isochrone's (Salaris 0.694/0.306), not physics.metallicity_mh's 0.638/0.362
    np.testing.assert_allclose(truth.m_h, iso.total_metallicity(truth.fe_h, truth.alpha_m), atol=1e-12)
    assert (truth.initial_mass >= truth.mass * (1 - 1e-9)).all()


def test_truth_stars_are_on_their_mist_isochrone(truth) -> None:
    """Recomputed from the grid at each star's (EEP, age, [M/H]): the same star, magnitudes and extinction."""
    m_iso = np.minimum(truth.m_h.to_numpy(), 0.5)
    st = iso.interpolate_eep(truth.eep.to_numpy(), truth.log_age.to_numpy(), m_iso)
    for col, key in (("mass", "mass"), ("initial_mass", "initial_mass"), ("teff", "teff"), ("logg", "logg")):
        np.testing.assert_allclose(truth[col], st[key], rtol=1e-9, err_msg=col)
    for band in ("g", "j", "h", "ks"):
        np.testing.assert_allclose(truth[f"abs_{band}"], st[f"abs_{band}"], atol=1e-9, err_msg=band)
    np.testing.assert_allclose(truth.mist_abs_bp, st["abs_bp"], atol=1e-9)
    ext = iso.extinction(truth.teff.to_numpy(), truth.logg.to_numpy(), m_iso, 3.1 * truth.ebv.to_numpy())
    for band in ("g", "j", "h", "ks"):
        np.testing.assert_allclose(truth[f"a_{band}"], ext[f"a_{band}"], atol=1e-9, err_msg=band)
    np.testing.assert_allclose(truth.mist_a_rp, ext["a_rp"], atol=1e-9)
    np.testing.assert_allclose(truth.age_gyr, 10.0 ** (truth.log_age - 9.0), rtol=1e-12)


def test_photometry_is_truth_abs_mag_plus_extinction_plus_distance(mist_sky, truth) -> None:
    from xpengine.io import read_gaia_source, read_xp_continuous
    from xpengine.simulate.xp import passbands

    path, _ = mist_sky
    t = truth.set_index("source_id")
    mu = _distance_modulus(t)
    for band in ("g", "bp", "rp", "j", "h", "ks"):
        np.testing.assert_allclose(t[band], t[f"abs_{band}"] + mu + t[f"a_{band}"], atol=1e-9, err_msg=band)
    assert ((t.g >= 5.0) & (t.g <= 17.65)).all()
    # the spectrum's colours agree with MIST's within the configured tolerance (median ≈ 0)
    colour = (t.abs_bp - t.abs_rp) - (t.mist_abs_bp - t.mist_abs_rp)
    assert np.abs(colour).max() <= MIST.xp_colour_tolerance and abs(np.median(colour)) < 0.05
    assert np.abs((t.a_bp - t.a_rp) / (t.mist_a_bp - t.mist_a_rp) - 1.0).median() < 0.1  # E(BP−RP): F99 ≈ CCM
    for gs_path in sorted(path.glob("GaiaSource_*.csv.gz")):
        gs = read_gaia_source(gs_path).to_pandas().set_index("source_id")
        tt = t.loc[gs.index]
        sig_g = 1.0857 * gs.phot_g_mean_flux_error / gs.phot_g_mean_flux
        assert (np.abs(gs.phot_g_mean_mag - tt.g) < 5 * sig_g).all()
        for band in ("bp", "rp"):
            sig = 1.0857 / gs[f"phot_{band}_mean_flux_over_error"]
            assert (np.abs(gs[f"phot_{band}_mean_mag"] - tt[band]) < 5 * sig).all(), band
        # the XP coefficients' synthetic G is the star's G (the spectrum is scaled to the MIST G)
        xp = read_xp_continuous(
            gs_path.with_name(gs_path.name.replace("GaiaSource", "XpContinuousMeanSpectrum"))
        )
        has_bp = ~np.isnan(xp.column("bp_standard_deviation").to_numpy(zero_copy_only=False))
        coef = np.concatenate(
            [
                np.stack(xp.column(f"{b}_coefficients").to_numpy(zero_copy_only=False)[has_bp])
                for b in ("bp", "rp")
            ],
            axis=1,
        )
        V, zp = passbands()
        g_xp = -2.5 * np.log10(coef @ V[:, 0]) + zp[0]
        dg = g_xp - t.loc[xp.column("source_id").to_numpy()[has_bp], "g"].to_numpy()
        assert np.median(np.abs(dg)) < 0.01 and np.abs(dg).max() < 0.1
    tm = pq.read_table(path / "tmass.parquet").to_pandas().set_index("source_id")
    tt = t.loc[tm.index]
    for band in ("j", "h", "ks"):
        seen = tm[f"{band}_m"].notna()
        assert seen.sum() > 200, band
        resid = (tm[f"{band}_m"] - tt[band])[seen] / tm[f"{band}_msigcom"][seen]
        assert (np.abs(resid) < 5).all() and abs(np.median(resid)) < 0.3, band


def test_no_star_outside_the_emulator_range_has_a_spectrum(mist_sky, truth) -> None:
    from xpengine.simulate.xp import emulator_domain

    _, summary = mist_sky
    dom = emulator_domain(truth.teff, truth.logg, truth.fe_h, truth.alpha_m)
    assert dom["inside"].all()  # every written source (all have an XP spectrum)
    np.testing.assert_array_equal(truth.xp_labels_clamped, dom["clamped"])
    em = summary["xp_emulator"]
    out = em["outside"]
    assert set(out) == {
        "dwarf_too_hot",
        "dwarf_too_cool",
        "giant_too_hot",
        "giant_too_cool",
        "logg_outside",
        "colour_mismatch",
        "non_finite",
    }
    # the v2 emulator covers hot stars (to ≈ 19,900 K) and M dwarfs (to ≈ 3130 K): few stars of a realistic
    # sky fall outside its Teff/logg range (v1 dropped ≈ 6% there: hot and cool dwarfs); emulated-vs-MIST
    # colour disagreements (mostly M dwarfs: MIST is bluer than real M dwarfs at the same ASPCAP labels)
    # still occur, and are counted
    out_of_range = sum(out[k] for k in ("dwarf_too_hot", "dwarf_too_cool", "giant_too_hot", "giant_too_cool"))
    assert out_of_range + out["logg_outside"] < 0.02 * em["examined"]
    assert out["colour_mismatch"] > 0
    assert em["examined"] == em["kept"] + sum(out.values()) and em["kept"] >= N_SOURCES
    assert 0.0 < em["fraction_outside"] < 0.4


def test_distmass_ages_come_from_the_isochrones(mist_sky, truth) -> None:
    from astropy.io import fits

    path, summary = mist_sky
    giant = truth[truth.evolutionary_state != "dwarf"]
    m_iso = np.minimum(giant.m_h.to_numpy(), 0.5)
    # noise-free inputs give back the true age (what DistMass applies to the noisy mass and M_H)
    back = iso.log_age_at_eep(giant.initial_mass.to_numpy(), giant.eep.to_numpy(), m_iso)
    np.testing.assert_allclose(back, giant.log_age, atol=2e-3)
    with fits.open(path / "allStar-synthetic.fits") as h:
        a = h[1].data
        main = (a["EXTRATARG"] & 16) == 0
        sid_of = dict(zip(a["APOGEE_ID"][main], a["GAIAEDR3_SOURCE_ID"][main], strict=True))
    with fits.open(path / "APOGEE_DistMass-synthetic.fits") as h:
        d = h[1].data
        ids = np.array([sid_of[i] for i in d["APOGEE_ID"]])
        age_gyr = d["AGE_COR_SS"] / 1e9
    assert summary["n_distmass_rows"] == len(d) >= 15
    found = ids != 0
    t = truth.set_index("source_id").loc[ids[found]]
    dex = np.log10(age_gyr[found]) - np.log10(t.age_gyr.to_numpy())
    ok = np.isfinite(dex)
    assert ok.mean() > 0.9
    # 8% mass noise → ≈ 0.1 dex in age; a median bias would mean a different age scale
    assert np.median(np.abs(dex[ok])) < 0.15 and abs(np.median(dex[ok])) < 0.08


def test_same_seed_same_bytes(tmp_path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for path in (a, b):
        simulate_sky(path, 80, seed=9, partitions=[HIGH_LATITUDE], config=MIST)
    for f in sorted(a.iterdir()):
        assert hashlib.md5(f.read_bytes()).digest() == hashlib.md5((b / f.name).read_bytes()).digest(), f.name


def test_config_and_cli_choose_the_physics(tmp_path, monkeypatch) -> None:
    import argparse

    from xpengine.simulate import cli, generate

    with pytest.raises(ValueError, match=r"physics='isochrones'; expected one of \('polynomial', 'mist'\)"):
        SkyConfig(physics="isochrones")
    with pytest.raises(ValueError, match=r"g_limit=17\.0, .* sky g_limit=17\.65"):
        SkyConfig(physics="mist", populations=pp.SkyPopulationConfig(g_limit=17.0))
    with pytest.raises(ValueError, match="xp_colour_tolerance=0"):
        SkyConfig(xp_colour_tolerance=0)
    seen = {}
    monkeypatch.setattr(generate, "simulate_sky", lambda *a, **k: seen.update(k) or {"ok": True})
    parser = argparse.ArgumentParser(prog="xpengine")
    cli.register(parser.add_subparsers(dest="command", required=True))
    base = ["simulate", "--n-sources", "10", "--output", str(tmp_path)]
    for extra, physics in (([], "polynomial"), (["--physics", "mist"], "mist")):
        args = parser.parse_args([*base, *extra])
        assert args.func(args) == 0
        assert seen["config"].physics == physics
    assert seen["config"] == SkyConfig(physics="mist")  # every other knob at its default
    with pytest.raises(SystemExit):
        parser.parse_args([*base, "--physics", "parsec"])


def test_sources_follow_the_visible_star_density_across_partitions(mist_sky) -> None:
    """An even split would give the high-latitude patch as many stars as the bulge patch; the MIST sky gives
    each partition its share of the visible stars, so the latitude mix does not depend on the partitioning."""
    _, summary = mist_sky
    counts = {p["suffix"]: p["n_sources"] for p in summary["partitions"]}
    assert sum(counts.values()) == N_SOURCES
    high, bulge = counts["000000-003111"], counts["459776-460799"]
    # the bulge patch is 1/3 the pixels of the high-latitude one, yet many times denser in visible stars
    assert bulge > 1.5 * high, counts
    from xpengine.simulate.generate import _density_split

    again = _density_split(3, [HIGH_LATITUDE, BULGE], N_SOURCES, MIST)
    assert again == [high, bulge]  # deterministic in the seed


def test_emulator_option_chooses_the_xp_calibration(tmp_path, monkeypatch, capsys) -> None:
    """--emulator v1 draws the same stars with the packaged v1 emulator (gaia-xp's training skies); v2 and the
    default are the same bytes; a missing file is refused by name."""
    import argparse

    from xpengine.simulate import cli

    parser = argparse.ArgumentParser(prog="xpengine")
    cli.register(parser.add_subparsers(dest="command", required=True))
    xp = {}
    for emulator in ("v1", "v2", None):
        out = tmp_path / str(emulator)
        argv = ["simulate", "--physics", "mist", "--n-sources", "60", "--output", str(out), "--seed", "9"]
        argv += ["--ranges", "000000-003111"] + ([] if emulator is None else ["--emulator", emulator])
        args = parser.parse_args(argv)
        assert args.func(args) == 0
        (f,) = out.glob("XpContinuousMeanSpectrum_*.csv.gz")
        xp[emulator] = f.read_bytes()
    assert xp["v2"] == xp[None]
    assert xp["v1"] != xp[None]
    args = parser.parse_args(
        ["simulate", "--n-sources", "5", "--output", str(tmp_path / "x"), "--emulator", "nope.npz"]
    )
    assert args.func(args) == 2  # one line, exit 2, as every bad argument (session 19)
    assert "xpengine simulate: error: --emulator 'nope.npz'" in capsys.readouterr().err
