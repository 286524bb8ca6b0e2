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


@pytest.mark.slow
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


def test_cli_subcommand(tmp_path, capsys):
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
    assert bad.func(bad) == 2  # one line on stderr, exit 2, as every bad argument (session 19)
    assert "xpengine simulate: error: --ranges '12': expected AAAAAA-BBBBBB" in capsys.readouterr().err


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


FLOAT_RTOL = 1e-12


def _floats(field: str, dtype: type) -> np.ndarray:
    """A float field or float-array field ("[a,b,...]") as float64 (`null` -> NaN), each value first read
    as `dtype` (np.float32 for float32 columns, so that a value is the float32 the writer printed)."""
    return np.array([np.nan if v == "null" else dtype(v) for v in field.strip("[]").split(",")], np.float64)


def _last_place(token: str) -> float:
    """One unit in the last digit written: '0.01559078' -> 1e-8, '1.5e-05' -> 1e-6, '176' -> 1."""
    mantissa, _, exponent = token.lower().partition("e")
    return 10.0 ** (int(exponent or 0) - len(mantissa.partition(".")[2]))


def _assert_ecsv_close(expected: str, actual: str, name: str, rtol: float = FLOAT_RTOL) -> None:
    """Two bulk ECSV texts hold the same table.

    Exact: the YAML header, the column names, the number of lines and fields, and every field of a column
    that is not floating point (integers, strings, `null`s). Floating point (float columns and the elements
    of float-array columns): |a - b| <= rtol * (largest |value| in that column of `expected`) + one unit of
    the precision written (a float32 ulp in float32 columns, else one unit in the last digit of the finer
    of a and b). The first term absorbs the CPU's maths library (numpy's SIMD and BLAS kernels differ in the
    last bits), scaled to the column because values computed as small differences of large terms (an
    observed parallax near zero, high-order XP coefficients) carry the error of those terms; the second
    covers a value rounded to the written precision (float32 columns; XP coefficients at 7 significant
    digits) whose rounding flips when the value before rounding moved by an ulp.
    """
    import csv

    import yaml

    exp, act = expected.splitlines(), actual.splitlines()
    assert len(act) == len(exp), f"{name}: {len(act)} lines, expected {len(exp)}"
    n_head = next(i for i, line in enumerate(exp) if not line.startswith("#"))
    assert act[: n_head + 1] == exp[: n_head + 1], f"{name}: ECSV header or column names differ"
    columns = yaml.safe_load("\n".join(line[2:] for line in exp[1:n_head]))["datatype"]
    kinds = [f"{c['datatype']} {c.get('subtype', '')}" for c in columns]
    is_float = ["float" in kind for kind in kinds]
    e_rows, a_rows = list(csv.reader(exp[n_head + 1 :])), list(csv.reader(act[n_head + 1 :]))
    differ = []  # (line, column index, expected field, actual field)
    for line, (e_row, a_row) in enumerate(zip(e_rows, a_rows, strict=True), start=n_head + 2):
        assert len(a_row) == len(e_row) == len(columns), f"{name} line {line}: field count"
        for k, (e_field, a_field) in enumerate(zip(e_row, a_row, strict=True)):
            if e_field != a_field:
                where = f"{name} line {line} column {columns[k]['name']}"
                assert is_float[k], (
                    f"{where}: {a_field!r} != {e_field!r} (not floating point: must be identical)"
                )
                differ.append((line, k, e_field, a_field))
    scales: dict[int, float] = {}  # column index -> largest |value| in `expected`
    for line, k, e_field, a_field in differ:
        where = f"{name} line {line} column {columns[k]['name']}"
        float32 = "float32" in kinds[k]
        dtype = np.float32 if float32 else float
        if k not in scales:
            scales[k] = max(np.nanmax(np.abs(_floats(row[k], dtype)), initial=0.0) for row in e_rows)
        scale = scales[k]
        e_tokens, a_tokens = e_field.strip("[]").split(","), a_field.strip("[]").split(",")
        assert len(a_tokens) == len(e_tokens), (
            f"{where}: array length {len(a_tokens)}, expected {len(e_tokens)}"
        )
        for j, (e_v, a_v) in enumerate(zip(e_tokens, a_tokens, strict=True)):
            if e_v == a_v:
                continue
            assert "null" not in (e_v, a_v), f"{where}[{j}]: {a_v!r} != {e_v!r}"
            x, y = float(dtype(e_v)), float(dtype(a_v))
            unit = (
                float(np.spacing(np.float32(abs(x)))) if float32 else min(_last_place(e_v), _last_place(a_v))
            )
            tol = rtol * scale + unit
            assert abs(y - x) <= tol, f"{where}[{j}]: {a_v} != {e_v} (tolerance {tol:.3g})"


def test_ecsv_comparison_is_exact_except_floats():
    """The bundled-sky comparison tolerates CPU-level float differences and nothing else."""
    head = (
        "# %ECSV 1.0\n# ---\n# datatype:\n# - {name: source_id, datatype: int64}\n"
        "# - {name: ra, datatype: float64}\n# - {name: coef, datatype: string, subtype: 'float64[2]'}\n"
        "# - {name: err, datatype: float32}\nsource_id,ra,coef,err\n"
    )
    ref = head + '7,176.09973798011845,"[0.01559078,null]",0.2043491\n8,0.5,null,1.0\n'
    ok = (
        ("176.09973798011845", "176.09973798011842"),  # last float64 digit (1.7e-16 relative)
        ("8,0.5,", "8,0.50000000000001,"),  # 2e-14 relative to itself, 6e-17 of the column's scale
        ("0.01559078", "0.01559079"),  # 7-significant-digit rounding flipped
        ("0.2043491", "0.20434912"),  # the neighbouring float32
    )
    for old, new in ok:
        _assert_ecsv_close(ref, ref.replace(old, new), "t")
    bad = (
        ("7,", "9,", "not floating point"),
        ("176.09973798011845", "176.0997379798", "176.0997379798 != 176.09973798011845"),  # 2e-12 of 176
        ("0.01559078", "0.0155908", r"coef\[0\]: 0.0155908 != 0.01559078"),  # 2 units of the 7th digit
        ("0.2043491", "0.20434915", "0.20434915 != 0.2043491"),  # three float32 ulps
        ("null]", "0.1]", "'0.1' != 'null'"),
        (",null]", "]", "array length"),
        (",null,", ',"[1,2]",', "array length"),
        (",1.0\n", ",nan\n", "nan != 1.0"),
    )
    for old, new, why in bad:
        with pytest.raises(AssertionError, match=why):
            _assert_ecsv_close(ref, ref.replace(old, new), "t")
    with pytest.raises(AssertionError, match="header or column names"):
        _assert_ecsv_close(ref, ref.replace("float64[2]", "float32[2]"), "t")


@pytest.mark.slow
def test_bundled_sky_regenerates_from_its_documented_command(tmp_path):
    """Regenerating with the command in the sky's README gives the same tables, compared numerically
    (see `_assert_ecsv_close`): text identical except floating-point values, which agree within 1e-12 of
    their column's scale plus one unit in the last digit written. The bytes are not CPU-independent (e.g.
    `176.09973798011845` vs `...842`, or a 7-digit coefficient rounded the other way): see
    xpengine.simulate.sky. Compared after decompression, so the zlib build does not matter either."""
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
    bulk = sorted(sky.glob("*.csv.gz"))
    assert len(bulk) == 6
    for f in bulk:
        expected = gzip.decompress(f.read_bytes()).decode()
        _assert_ecsv_close(expected, gzip.decompress((tmp_path / f.name).read_bytes()).decode(), f.name)
