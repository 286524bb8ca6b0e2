"""End-to-end synthetic sky: real formats (project readers + astropy), determinism, label physics."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from xpengine.simulate import physics as ph
from xpengine.simulate.generate import simulate_sky
from xpengine.simulate.sky import STATE_CODES, SkyConfig, draw_stars

N_SOURCES = 500


def _write(path: Path, seed: int) -> dict:
    return simulate_sky(path, N_SOURCES, seed=seed, n_partitions=2, chunk_size=200)


@pytest.fixture(scope="module")
def sky(tmp_path_factory) -> tuple[Path, dict]:
    path = tmp_path_factory.mktemp("sky")
    return path, _write(path, seed=11)


def test_bulk_files_read_with_project_readers_and_astropy(sky):
    from astropy.table import Table

    from xpengine.io import discover_partitions, read_gaia_source, read_xp_continuous, verify_md5sums

    path, summary = sky
    parts = discover_partitions(path)
    assert [p.name for p in parts] == [p["suffix"] for p in summary["partitions"]]
    assert all(verify_md5sums(path / "_MD5SUM.txt").values())
    n_total = 0
    for p in parts:
        xp = read_xp_continuous(p.xp_url, with_correlations=True)
        gs = read_gaia_source(p.gaia_url)
        assert xp.column("read_problem").null_count == xp.num_rows  # no row-level problem
        sid = xp.column("source_id").to_numpy()
        np.testing.assert_array_equal(sid, gs.column("source_id").to_numpy())
        assert np.all(np.diff(sid) > 0)  # sorted, unique
        assert np.all(((sid >> 43) >= p.hpx8_min) & ((sid >> 43) <= p.hpx8_max))
        corr = xp.column("rp_coefficient_correlations").combine_chunks()
        assert corr.value_lengths().to_numpy().max() == 1485
        n_total += xp.num_rows
        # astropy reads the same text (bulk files write `null` for missing values)
        for url in (p.xp_url, p.gaia_url):
            with gzip.open(url, "rt") as fh:
                t = Table.read(fh.read(), format="ascii.ecsv", fill_values=[("null", "0")])
            assert len(t) == xp.num_rows
        assert t["source_id"].dtype == np.int64 and t["astrometric_params_solved"].dtype == np.int16
    assert n_total == N_SOURCES


def test_position_consistent_with_source_id(sky):
    from xpengine.io import read_gaia_source
    from xpengine.simulate.coords import healpix_nest_to_radec, icrs_to_galactic

    path, _summary = sky
    gs = read_gaia_source(next(path.glob("GaiaSource_*.csv.gz"))).to_pandas()
    ra_c, dec_c = healpix_nest_to_radec(gs.source_id.to_numpy() >> 35, 12)
    sep = np.hypot((ra_c - gs.ra) * np.cos(np.deg2rad(gs.dec)), dec_c - gs.dec)
    assert np.all(sep < 0.86 / 60)  # inside its level-12 pixel
    _l_deg, b_deg = icrs_to_galactic(gs.ra.to_numpy(), gs.dec.to_numpy())
    np.testing.assert_allclose(gs.b, b_deg, atol=1e-9)
    assert set(gs.astrometric_params_solved.unique()) <= {3, 31, 95}
    # 5-parameter solutions carry nu_eff and no pseudocolour, 6-parameter the reverse
    five = gs.astrometric_params_solved == 31
    assert gs.nu_eff_used_in_astrometry[five].notna().all() and gs.pseudocolour[five].isna().all()


def test_fits_and_parquet_products(sky):
    from astropy.io import fits

    path, _ = sky
    with fits.open(path / "allStar-synthetic.fits") as h:
        a = h[1].data
        assert a["ASPCAPFLAG"].dtype == np.dtype(">i8") and a["GAIAEDR3_SOURCE_ID"].dtype == np.dtype(">i8")
        for col in (
            "APOGEE_ID",
            "TELESCOPE",
            "FIELD",
            "TEFF_ERR",
            "LOGG_ERR",
            "M_H_ERR",
            "FE_H",
            "ALPHA_M",
            "J_ERR",
            "H_ERR",
            "K_ERR",
            "AK_TARG",
            "SFD_EBV",
            "SNR",
            "STARFLAG",
            "EXTRATARG",
        ):
            assert col in a.columns.names
        assert "DATE" not in h[1].header
    with fits.open(path / "APOGEE_DistMass-synthetic.fits") as h:
        d = h[1].data
        assert d["AGE_ERR"].shape[1] == 2
        # DistMass ages are linear years
        assert 1e8 < np.median(d["AGE_COR_SS"]) < 2e10
    tm = pq.read_table(path / "tmass.parquet")
    assert tm.column_names == ["source_id", "j_m", "j_msigcom", "h_m", "h_msigcom", "ks_m", "ks_msigcom"]
    assert pq.read_table(path / "ebv.parquet").column_names == ["source_id", "ebv", "ebv_error"]
    truth = pq.read_table(path / "truth.parquet").to_pandas()
    assert len(truth) == N_SOURCES and truth.source_id.is_unique
    assert {"mass", "age_gyr", "teff", "logg", "m_h", "alpha_m", "distance_pc", "ebv", "l", "b", "g"} <= set(
        truth
    )


def test_same_seed_identical_bytes_other_seed_differs(sky, tmp_path):
    path, _ = sky
    again = tmp_path / "again"
    _write(again, seed=11)
    for f in sorted(path.iterdir()):
        assert hashlib.md5(f.read_bytes()).digest() == hashlib.md5((again / f.name).read_bytes()).digest(), (
            f.name
        )
    with open(next(path.glob("Xp*.gz")), "rb") as fh:
        assert fh.read(8)[4:8] == b"\0\0\0\0"  # gzip MTIME zeroed
    other = tmp_path / "other"
    _write(other, seed=12)
    differ = [f.name for f in path.iterdir() if f.read_bytes() != (other / f.name).read_bytes()]
    assert len(differ) == len(list(path.iterdir()))


def test_refuses_to_overwrite(sky):
    path, _ = sky
    with pytest.raises(FileExistsError, match="overwrite=True"):
        simulate_sky(path, 10, seed=11)


@pytest.fixture(scope="module")
def disk_giants() -> dict[str, np.ndarray]:
    """~3000 visible stars in a low-latitude patch (688128-691239, b ≈ 0), without writing files."""
    from xpengine.simulate.calibration import load_calibration
    from xpengine.simulate.generate import _observe_factory

    cfg = SkyConfig()
    return draw_stars(
        np.random.default_rng(7), 3000, 688128, 691239, cfg, _observe_factory(cfg, load_calibration())
    )


def test_label_physics(disk_giants):
    s = disk_giants
    giant = s["evolutionary_state"] > 0
    assert giant.sum() > 200
    # REFERENCE §7: red clump 20–30% of APOGEE-like giants (allow sampling noise)
    rc = np.mean(s["evolutionary_state"][giant] == STATE_CODES["red_clump"])
    assert 0.18 < rc < 0.42
    # giants follow the §7 mass–age relation within their giant lifetime (≤ 0.07 dex rms)
    resid = np.log10(s["age_gyr"][giant]) - np.log10(ph.giant_age_gyr(s["mass"][giant], s["fe_h"][giant]))
    assert np.all(resid >= -1e-9)
    assert np.sqrt(np.mean(resid**2)) < 0.07
    # the mass–age anti-correlation itself: slope d log age / d log M ≈ −3 (§7: age ∝ M^−3.17)
    slope = np.polyfit(np.log10(s["mass"][giant]), np.log10(s["age_gyr"][giant]), 1)[0]
    assert -3.8 < slope < -2.5
    mh = ph.metallicity_mh(s["fe_h"][giant], s["alpha_m"][giant])
    assert -0.35 < np.median(mh) < 0.1
    assert np.percentile(mh, 1) < -0.5  # thick disk / halo tail (weak this close to the plane)
    # dwarfs look like main-sequence stars
    dw = ~giant
    assert np.all(s["logg"][dw] > 3.9) and np.all((s["teff"][dw] > 3600) & (s["teff"][dw] < 7500))
    # RGB stars on the §7 Teff–logg relation (30 K scatter added)
    rgb = s["evolutionary_state"] == STATE_CODES["rgb"]
    dt = s["teff"][rgb] - ph.rgb_teff(s["logg"][rgb], s["fe_h"][rgb], s["mass"][rgb])
    assert np.std(dt) < 45
    # visible sample: all within the XP magnitude limit
    assert np.all(s["g"] <= 17.65)


def test_cli_subcommand(tmp_path):
    import argparse

    from xpengine.simulate import cli

    parser = argparse.ArgumentParser(prog="xpengine")
    sub = parser.add_subparsers(dest="command", required=True)
    cli.register(sub)
    args = parser.parse_args(
        [
            "simulate",
            "--n-sources",
            "40",
            "--output",
            str(tmp_path),
            "--seed",
            "1",
            "--ranges",
            "000000-003111",
        ]
    )
    assert args.func(args) == 0
    assert (tmp_path / "XpContinuousMeanSpectrum_000000-003111.csv.gz").exists()
    bad = parser.parse_args(
        ["simulate", "--n-sources", "5", "--output", str(tmp_path / "x"), "--ranges", "12"]
    )
    with pytest.raises(SystemExit, match="expected AAAAAA-BBBBBB"):
        bad.func(bad)


def test_bundled_sky_is_the_documented_command_output():
    """The packaged sky exists, pairs up, and its checksums match (regenerate it when the simulator changes)."""
    from importlib.resources import files

    from xpengine.io import discover_partitions, verify_md5sums

    sky = Path(str(files("xpengine") / "data" / "sky"))
    parts = discover_partitions(sky)
    assert [p.name for p in parts] == ["000000-003111", "245760-248871", "688128-691239"]
    assert all(p.gaia_url for p in parts)
    assert all(verify_md5sums(sky / "_MD5SUM.txt").values())
    assert sum(f.stat().st_size for f in sky.iterdir()) < 8e6


def test_bundled_sky_regenerates_from_its_documented_command(tmp_path):
    import argparse
    from importlib.resources import files

    from xpengine.simulate.cli import register

    sky = Path(str(files("xpengine") / "data" / "sky"))
    readme = (sky / "README.md").read_text()
    cmd = readme.split("    xpengine simulate ", 1)[1].split("\n\n", 1)[0].replace("\\\n", " ").split()
    cmd[cmd.index("--output") + 1] = str(tmp_path)
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["simulate", *cmd])
    assert args.func(args) == 0
    for f in sorted(sky.glob("*.csv.gz")):
        # compare the text (independent of the zlib build)
        assert gzip.decompress(f.read_bytes()) == gzip.decompress((tmp_path / f.name).read_bytes()), f.name
