"""Review 19 of the user-facing commands: `xpengine simulate --overwrite` leaves no earlier sky behind;
`features`, `simulate`, `build-dataset` and `evaluate` end a bad input in one line (exit 2); `features`
says what happens without `--gaia-source`; GaiaXPy `convert` output is refused as a whole."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _paths import SHARED, XP_DIR

from xpengine.cli import build_parser, main
from xpengine.features import SourceFlag
from xpengine.io import GaiaFileError, discover_partitions, read_md5sums, read_xp_continuous, read_xp_sampled

XP_RAW = XP_DIR / "XP_CONTINUOUS_RAW.csv"  # bundled archive rows (no gaia_source columns)
GAIAXPY_FILES = SHARED / "data" / "gaia_dr3_samples" / "gaiaxpy" / "tests" / "files"


def _one_line_error(capsys: pytest.CaptureFixture[str], command: str) -> str:
    """The command's stderr, checked to be one `xpengine <command>: error: ...` line, no traceback."""
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"xpengine {command}: error: ") and "\n" not in err, err
    assert "Traceback" not in err
    return err


def _simulate(out: Path, partitions: int, seed: int, *extra: str) -> int:
    argv = ["simulate", "--n-sources", "40", "--partitions", str(partitions), "--seed", str(seed)]
    return main([*argv, "--output", str(out), *extra])


# --- 1. simulate --overwrite into a folder holding an earlier sky ---------------------------------------


def test_simulate_overwrite_removes_every_file_of_the_earlier_sky(tmp_path, capsys) -> None:
    sky = tmp_path / "sky"
    assert _simulate(sky, 4, 1) == 0
    assert len(discover_partitions(sky)) == 4
    (sky / "notes.txt").write_text("mine")  # not the simulator's: left alone
    (sky / ".truth.00003.parquet").write_bytes(b"")  # a part an interrupted run left behind
    assert _simulate(sky, 2, 2, "--overwrite") == 0
    parts = discover_partitions(sky)
    assert len(parts) == 2  # not seed 1's other two partitions beside seed 2's truth
    xp_names = {Path(p.xp_url).name for p in parts} | {Path(p.gaia_url).name for p in parts}
    assert set(read_md5sums(sky / "_MD5SUM.txt")) == xp_names
    products = {"allStar-synthetic.fits", "APOGEE_DistMass-synthetic.fits", "tmass.parquet", "ebv.parquet"}
    expected = xp_names | products | {"truth.parquet", "_MD5SUM.txt", "notes.txt"}
    assert {p.name for p in sky.iterdir()} == expected
    truth = pq.read_table(sky / "truth.parquet", columns=["partition"]).column("partition").to_pylist()
    assert set(truth) == {p.name for p in parts}
    assert (sky / "notes.txt").read_text() == "mine"


def test_simulate_refuses_partitions_it_did_not_write_even_with_overwrite(tmp_path, capsys) -> None:
    sky = tmp_path / "sky"
    assert _simulate(sky, 2, 1) == 0
    capsys.readouterr()
    stranger = sky / "XpContinuousMeanSpectrum_100000-103111.csv.gz"  # not in the sky's _MD5SUM.txt
    shutil.copy(next(sky.glob("XpContinuousMeanSpectrum_*.csv.gz")), stranger)
    before = sorted(p.name for p in sky.iterdir())
    assert _simulate(sky, 2, 2, "--overwrite") == 2
    err = _one_line_error(capsys, "simulate")
    assert stranger.name in err and "move or delete them" in err
    assert sorted(p.name for p in sky.iterdir()) == before  # nothing removed, nothing written

    # a Gaia download: its _MD5SUM.txt lists its partitions, but no simulator truth lies beside it
    download = tmp_path / "download"
    download.mkdir()
    for f in sky.glob("*.csv.gz"):
        shutil.copy(f, download / f.name)
    shutil.copy(sky / "_MD5SUM.txt", download / "_MD5SUM.txt")
    assert _simulate(download, 1, 3, "--overwrite") == 2  # writes 000000-003111 only
    err = _one_line_error(capsys, "simulate")
    assert "XpContinuousMeanSpectrum_393216-396327.csv.gz" in err and stranger.name in err
    assert sorted(p.name for p in download.iterdir()) == sorted(
        n for n in before if n.endswith(".csv.gz") or n == "_MD5SUM.txt"
    )

    # a compact copy of a single file (ModelInputs_<name>.parquet, no range): the reader takes it for a
    # partition of the folder, so the simulator refuses it too (its own pattern missed it)
    other = tmp_path / "other"
    assert _simulate(other, 2, 1) == 0
    capsys.readouterr()
    (other / "ModelInputs_stars.parquet").write_bytes(b"PAR1")
    assert _simulate(other, 2, 2, "--overwrite") == 2
    assert "ModelInputs_stars.parquet" in _one_line_error(capsys, "simulate")


# --- 2. one-line errors ---------------------------------------------------------------------------------


def test_simulate_into_an_existing_sky_names_the_command_line_option(tmp_path, capsys) -> None:
    sky = tmp_path / "sky"
    assert _simulate(sky, 2, 1) == 0
    capsys.readouterr()
    assert _simulate(sky, 2, 1) == 2
    err = _one_line_error(capsys, "simulate")
    assert "pass --overwrite to replace them" in err and "overwrite=True" not in err
    assert main(["simulate", "--n-sources", "0", "--output", str(tmp_path / "other")]) == 2
    assert "n_sources=0" in _one_line_error(capsys, "simulate")
    assert not (tmp_path / "other").exists()


def test_features_unreadable_inputs_end_in_one_line(tmp_path, capsys) -> None:
    out = str(tmp_path / "t.parquet")
    bad = tmp_path / "phot.csv"
    bad.write_text("source_id,GaiaDr3Vega_mag_G\n1,12.0\n")
    assert main(["features", "--xp", str(bad), "--output", out]) == 2
    err = _one_line_error(capsys, "features")
    assert str(bad) in err and "column 'bp_coefficients'" in err
    assert main(["features", "--xp", str(tmp_path / "none.csv"), "--output", out]) == 2
    assert "none.csv: file not found" in _one_line_error(capsys, "features")
    assert main(["features", "--xp", str(XP_RAW), "--gaia-source", str(XP_RAW), "--output", out]) == 2
    err = _one_line_error(capsys, "features")
    assert str(XP_RAW) in err and "missing gaia_source column(s)" in err
    assert not Path(out).exists()


def test_build_dataset_missing_sky_ends_in_one_line(tmp_path, capsys) -> None:
    argv = [
        "build-dataset",
        "synthetic",
        "--sky",
        str(tmp_path / "nonexist"),
        "--output",
        str(tmp_path / "o"),
    ]
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert "nonexist" in _one_line_error(capsys, "build-dataset")


def test_evaluate_bad_inputs_end_in_one_line(tmp_path, capsys) -> None:
    data = tmp_path / "data.parquet"
    pq.write_table(pa.table({"source_id": [1, 2], "split": ["test", "val"]}), data)
    out = tmp_path / "eval"
    argv = ["evaluate", "--model", str(tmp_path / "no_model"), "--output", str(out)]
    assert main([*argv, "--data", str(data), "--split", "nosuch"]) == 2
    err = _one_line_error(capsys, "evaluate")
    assert str(data) in err and "'nosuch'" in err and "['test', 'val']" in err
    assert main([*argv, "--data", str(tmp_path / "missing.parquet")]) == 2
    assert "--data" in _one_line_error(capsys, "evaluate")
    out.mkdir()
    (out / "metrics.json").write_text("{}")  # a finished evaluation: refused before the model is loaded
    assert main([*argv, "--data", str(data)]) == 2
    err = _one_line_error(capsys, "evaluate")
    assert "metrics.json exists; pass --overwrite" in err
    # --store-calibration on a bundled model's name: one line, before any work (was a traceback, exit 1)
    argv = ["evaluate", "--model", "gaia-xp", "--output", str(tmp_path / "e2"), "--store-calibration"]
    assert main([*argv, "--data", str(data)]) == 2
    assert "checkpoint directory" in _one_line_error(capsys, "evaluate")
    assert not (tmp_path / "e2").exists()


# --- 3. features without --gaia-source --------------------------------------------------------------------


def test_features_without_gaia_source_says_what_happens(tmp_path, capsys, caplog) -> None:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    text = sub.choices["features"].format_help()
    assert "G_FROM_XP" in text and "every row is flagged NO_GAIA_SOURCE and NO_GAIA_PHOTOMETRY" not in text
    out = tmp_path / "t.parquet"
    with caplog.at_level("WARNING"):
        assert main(["features", "--xp", str(XP_RAW), "--output", str(out)]) == 0
    warning = " ".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert "G_FROM_XP" in warning and "no XP token can be normalised" not in warning
    flags = pq.read_table(out, columns=["flags"]).column("flags").to_numpy()
    both = ~(flags & (SourceFlag.NO_BP | SourceFlag.NO_RP)).astype(bool)
    assert both.any() and (flags[both] & SourceFlag.G_FROM_XP).all()  # what the text now says
    assert not (flags[both] & SourceFlag.NO_GAIA_PHOTOMETRY).any()


# --- 4. GaiaXPy convert output -----------------------------------------------------------------------------


def _converted(path: Path) -> Path:
    """A GaiaXPy `convert`-like CSV: one row per source and band, 4 pseudo-wavelength samples."""
    rows = ["source_id,xp,flux,flux_error"]
    for sid in (11, 12):
        for band in ("BP", "RP"):
            rows.append(f'{sid},{band},"(1.0, 2.0, 3.0, 4.0)","(0.1, 0.1, 0.1, 0.1)"')
    path.write_text("\n".join(rows) + "\n")
    return path


def test_gaiaxpy_convert_output_is_refused_as_a_whole(tmp_path, capsys) -> None:
    path = _converted(tmp_path / "converted.csv")
    with pytest.raises(GaiaFileError, match="convert") as err:
        read_xp_continuous(path)
    assert err.value.source == str(path) and err.value.column == "xp"
    assert "XP_CONTINUOUS" in str(err.value) and "calibrate" in str(err.value)
    frame = {
        "source_id": np.array([11, 11]),
        "xp": np.array(["BP", "RP"]),
        "flux": [np.ones(4), np.ones(4)],
        "flux_error": [np.ones(4), np.ones(4)],
    }
    with pytest.raises(GaiaFileError, match="convert") as err:  # in memory (GaiaXPy's DataFrame)
        read_xp_sampled(pa.table(frame))
    assert err.value.column == "xp"
    assert main(["features", "--xp", str(path), "--output", str(tmp_path / "t.parquet")]) == 2
    assert "GaiaXPy `convert` output" in _one_line_error(capsys, "features")


@pytest.mark.parametrize(
    "name",
    [
        "converter_solution/converter_avro_solution_0_60_481.csv",
        "xp_continuous_c04/regular_single_source_converter_c04.csv",
    ],
)
def test_gaiaxpy_convert_test_files_are_refused(name) -> None:
    path = GAIAXPY_FILES / name
    if not path.exists():
        pytest.skip(f"GaiaXPy test file not found: {path}")
    with pytest.raises(GaiaFileError, match="GaiaXPy `convert` output") as err:
        read_xp_continuous(path)
    assert err.value.column == "xp" and err.value.source == str(path)
