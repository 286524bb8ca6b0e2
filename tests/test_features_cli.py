"""`xpengine features` (xpengine.features.cli) end to end on real files through the real `xpengine.io`.

Inputs: the archive ECSV of three real Gaia DR3 XP sources (tests/data, a verbatim copy of GaiaXPy's
test file, see tests/data/PROVENANCE.md), and gaia_source / XP files in the Gaia bulk layout written by
`xpengine.io.write_bulk_gaia_source` / `write_bulk_xp_continuous`. Token values are checked against
hand computations from the ECSV as read by astropy (not by xpengine).
"""

from __future__ import annotations

import json
import math
import re
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _io_data import MISSING_BP, NORMAL_IDS, WITH_MISSING_ECSV

from xpengine.cli import build_parser, main
from xpengine.features import SourceFlag
from xpengine.io import read_xp_continuous, write_bulk_gaia_source, write_bulk_xp_continuous

XP_FILE = WITH_MISSING_ECSV
IDS = [NORMAL_IDS[0], MISSING_BP, NORMAL_IDS[1]]  # row order of XP_FILE
G_MAG = [15.0, 16.0]  # gaia_source rows of IDS[0] and IDS[1]; IDS[2] has no gaia_source row
G_ZERO_POINT = 25.6873668671  # Gaia DR3 G zero point [mag] (DR3 documentation §5.4, Riello et al. 2021)


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    """gaia_source (bulk .csv.gz, real writer), 2MASS (CSV) and E(B−V) (Parquet) files for XP_FILE."""
    gaia = tmp_path / "GaiaSource_000000-003111.csv.gz"
    write_bulk_gaia_source(
        pa.table(
            {
                "source_id": pa.array(IDS[:2], pa.int64()),
                "ra": [10.0, 200.0],
                "dec": [-60.0, 5.0],
                "phot_g_mean_mag": pa.array(G_MAG, pa.float32()),
                "parallax": [1.0, 0.3],
                "parallax_error": [0.05, 0.05],
                "ruwe": pa.array([1.0, 1.0], pa.float32()),
                "nu_eff_used_in_astrometry": pa.array([1.5, 1.5], pa.float32()),
                "pseudocolour": pa.array([None, None], pa.float32()),
                "ecl_lat": [10.0, 10.0],
                "astrometric_params_solved": pa.array([31, 31], pa.int16()),
            }
        ),
        gaia,
    )
    tmass = tmp_path / "tmass.csv"
    tmass.write_text(
        f"source_id,j_m,j_msigcom,h_m,h_msigcom,ks_m,ks_msigcom\n{IDS[0]},12.0,0.02,11.5,0.03,11.3,0.025\n"
    )
    ebv = tmp_path / "ebv.parquet"
    pq.write_table(
        pa.table({"source_id": pa.array([IDS[2]], pa.int64()), "ebv": [0.1], "ebv_error": [0.01]}), ebv
    )
    return {"gaia": gaia, "tmass": tmass, "ebv": ebv}


def _astropy_xp() -> dict[str, np.ndarray]:
    """XP_FILE's coefficients read by astropy, independently of xpengine.io (rows as in the file)."""
    from astropy.table import Table

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = Table.read(XP_FILE)
    assert [int(s) for s in t["source_id"]] == IDS
    return {c: t[c] for c in ("bp_coefficients", "bp_coefficient_errors", "rp_coefficients")}


def _flags(path: Path) -> list[SourceFlag]:
    return [SourceFlag(x) for x in pq.read_table(path, columns=["flags"]).column("flags").to_pylist()]


def _column(t: pa.Table, name: str) -> np.ndarray:
    return t.column(name).to_numpy(zero_copy_only=False).astype(float)


def test_help_lists_the_options() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["features", "--help"])
    args = build_parser().parse_args(["features", "--xp", "a.csv", "--output", "o.parquet"])
    assert args.representation == "projected" and args.min_relevant == 10 and callable(args.func)


def test_features_command_writes_tokens(
    tmp_path: Path, inputs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "tokens.parquet"
    argv = ["features", "--xp", str(XP_FILE), "--gaia-source", str(inputs["gaia"])]
    argv += ["--tmass", str(inputs["tmass"]), "--ebv", str(inputs["ebv"]), "--output", str(out)]
    assert main(argv) == 0
    t = pq.read_table(out)
    assert t.column("source_id").to_pylist() == IDS
    assert t.column_names[:4] == ["source_id", "flags", "bp0", "bp0_error"] and t.num_columns == 242
    flags = _flags(out)
    assert [SourceFlag.NO_BP in f for f in flags] == [False, True, False]
    assert [SourceFlag.NO_2MASS in f for f in flags] == [False, True, True]
    assert [SourceFlag.NO_EXTINCTION in f for f in flags] == [True, True, False]
    # no gaia_source row for the third source: its XP are normalised by their own synthetic G
    assert SourceFlag.NO_GAIA_SOURCE in flags[2] and SourceFlag.G_FROM_XP in flags[2]
    assert SourceFlag.NO_GAIA_PHOTOMETRY not in flags[2]
    assert not (flags[0] | flags[1]) & (SourceFlag.NO_GAIA_SOURCE | SourceFlag.NO_GAIA_PHOTOMETRY)
    assert not (flags[0] | flags[1]) & SourceFlag.G_FROM_XP  # G given: used as it is
    # no BP for the second source
    assert np.isnan(_column(t, "bp0")[1]) and np.isfinite(_column(t, "bp0")[[0, 2]]).all()
    assert np.isfinite(_column(t, "rp0")).all()
    # 2MASS colours J−H, J−Ks with quadrature errors; ln E(B−V) with σ_E/E
    np.testing.assert_allclose(_column(t, "jh")[0], 0.5, rtol=1e-6)
    np.testing.assert_allclose(_column(t, "jk")[0], 0.7, rtol=1e-6)
    np.testing.assert_allclose(_column(t, "jh_error")[0], math.hypot(0.02, 0.03), rtol=1e-6)
    np.testing.assert_allclose(_column(t, "logebv")[2], math.log(0.1), rtol=1e-6)
    np.testing.assert_allclose(_column(t, "logebv_error")[2], 0.1, rtol=1e-6)
    meta = t.schema.metadata
    prov = json.loads(meta[b"xpengine.provenance"])
    assert prov["xp"] == str(XP_FILE) and prov["gaia_source"] == str(inputs["gaia"])
    assert prov["representation"] == "projected" and prov["representation_id"].startswith("svd-proj")
    assert json.loads(meta[b"xpengine.vocabulary"])["n_bp"] == 55

    # refuses to overwrite unless asked; the refusal names the file and --overwrite
    before = out.stat().st_mtime_ns
    assert main(argv) == 2  # one line, `xpengine features: error: ...`
    assert f"{out} exists; pass --overwrite" in capsys.readouterr().err and out.stat().st_mtime_ns == before
    assert main([*argv, "--overwrite", "--representation", "raw"]) == 0
    assert json.loads(pq.read_table(out).schema.metadata[b"xpengine.provenance"])["representation"] == "raw"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["tokens.parquet", *(p.name for p in inputs.values())]
    )  # no temporary file left


def test_raw_tokens_are_coefficients_over_g_flux(tmp_path: Path, inputs: dict[str, Path]) -> None:
    """Leung & Bovy (2024) Eq. 8: token = coefficient / f_G with f_G = 10^((ZP_G − G)/2.5) [e⁻/s]."""
    out = tmp_path / "raw.parquet"
    argv = ["features", "--xp", str(XP_FILE), "--gaia-source", str(inputs["gaia"]), "--output", str(out)]
    assert main([*argv, "--representation", "raw"]) == 0
    t = pq.read_table(out)
    ref = _astropy_xp()
    flux = [10 ** ((G_ZERO_POINT - g) / 2.5) for g in G_MAG]
    for i in range(5):
        np.testing.assert_allclose(_column(t, f"bp{i}")[0], ref["bp_coefficients"][0][i] / flux[0], rtol=1e-6)
        np.testing.assert_allclose(
            _column(t, f"bp{i}_error")[0], ref["bp_coefficient_errors"][0][i] / flux[0], rtol=1e-6
        )
        np.testing.assert_allclose(
            _column(t, f"rp{i}")[:2],
            [ref["rp_coefficients"][0][i] / flux[0], ref["rp_coefficients"][1][i] / flux[1]],
            rtol=1e-6,
        )


def test_bulk_xp_file_gives_the_same_tokens(tmp_path: Path, inputs: dict[str, Path]) -> None:
    """The same sources in the Gaia bulk layout (real writer, .csv.gz) give identical tokens."""
    bulk = tmp_path / "XpContinuousMeanSpectrum_000000-003111.csv.gz"
    write_bulk_xp_continuous(read_xp_continuous(XP_FILE), bulk)
    tables = []
    for xp, name in ((XP_FILE, "archive.parquet"), (bulk, "bulk.parquet")):
        out = tmp_path / name
        argv = ["features", "--xp", str(xp), "--gaia-source", str(inputs["gaia"]), "--output", str(out)]
        assert main(argv) == 0
        tables.append(pq.read_table(out))
    archive, from_bulk = tables
    assert archive.column_names == from_bulk.column_names and archive.num_rows == 3
    for name in archive.column_names:  # NaN positions equal too
        np.testing.assert_array_equal(_column(archive, name), _column(from_bulk, name), err_msg=name)


def test_features_command_without_gaia_source(tmp_path: Path) -> None:
    out = tmp_path / "t.parquet"
    assert main(["features", "--xp", str(XP_FILE), "--output", str(out)]) == 0
    t = pq.read_table(out)
    assert t.column("source_id").to_pylist() == IDS
    flags = _flags(out)
    assert all(SourceFlag.NO_GAIA_SOURCE in f for f in flags)
    # XP alone: stars with both bands are normalised by their synthetic G; the one without BP cannot be
    has_bp = [SourceFlag.NO_BP not in f for f in flags]
    assert [SourceFlag.G_FROM_XP in f for f in flags] == has_bp
    assert [SourceFlag.NO_GAIA_PHOTOMETRY in f for f in flags] == [not b for b in has_bp]
    xp_tokens = [f"{b}{i}" for b in ("bp", "rp") for i in range(55)]
    xp = np.stack([_column(t, n) for n in xp_tokens])  # (110, N)
    assert np.isnan(xp[:, ~np.array(has_bp)]).all() and np.isfinite(xp[0, np.array(has_bp)]).all()


def test_failed_input_writes_nothing(
    tmp_path: Path, inputs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "tokens.parquet"
    missing = tmp_path / "no_such_GaiaSource.csv.gz"
    argv = ["features", "--xp", str(XP_FILE), "--gaia-source", str(missing), "--output", str(out)]
    assert main(argv) == 2  # the reader's GaiaFileError in one line
    assert re.search(r"no_such_GaiaSource\.csv\.gz.*file not found", capsys.readouterr().err)
    assert not out.exists() and not out.with_name(out.name + ".partial").exists()
    # an existing output survives a failed --overwrite run
    assert main(["features", "--xp", str(XP_FILE), "--output", str(out)]) == 0
    before = out.read_bytes()
    assert main([*argv, "--overwrite"]) == 2
    assert out.read_bytes() == before and not out.with_name(out.name + ".partial").exists()


def test_a_file_whose_own_gaia_source_columns_have_no_g_is_warned_about(tmp_path: Path, caplog) -> None:
    """The archive's XP_SAMPLED holds ra/dec but no G: the rows get G_FROM_XP and no parallax, and the command
    says so (no warning before session 27: its own columns counted as a gaia_source)."""
    import logging

    from _paths import STAR_SAMPLED

    with caplog.at_level(logging.WARNING, logger="xpengine.features.cli"):
        assert main(["features", "--xp", str(STAR_SAMPLED), "--output", str(tmp_path / "t.parquet")]) == 0
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "hold no phot_g_mean_mag" in text and "G_FROM_XP" in text and "NO_PARALLAX" in text
    assert all(SourceFlag.G_FROM_XP in f for f in _flags(tmp_path / "t.parquet"))
