"""Partition discovery/pairing and _MD5SUM.txt checks."""

from __future__ import annotations

import logging
import shutil
import subprocess

import fsspec
import numpy as np
import pytest
from _io_data import NORMAL_IDS, WITH_MISSING_ECSV

from xpengine.io import (
    GaiaFileError,
    Partition,
    discover_partitions,
    read_md5sums,
    read_xp_continuous,
    verify_md5sums,
)

XP1 = "XpContinuousMeanSpectrum_000000-003111.csv.gz"
XP2 = "XpContinuousMeanSpectrum_003112-005263.csv.gz"
GS1 = "GaiaSource_000000-003111.csv.gz"


@pytest.fixture()
def bulk_dir(tmp_path):
    for name in (XP1, XP2, GS1):
        (tmp_path / name).write_bytes(name.encode())
    (tmp_path / "_MD5SUM.txt").write_text("")
    return tmp_path


def test_pairs_by_suffix(bulk_dir, caplog):
    with caplog.at_level(logging.WARNING, logger="xpengine.io.partitions"):
        parts = discover_partitions(bulk_dir)
    assert [p.name for p in parts] == ["000000-003111", "003112-005263"]
    assert parts[0] == Partition("000000-003111", str(bulk_dir / XP1), str(bulk_dir / GS1), 0, 3111)
    assert parts[1].gaia_url is None
    assert "003112-005263" in caplog.text  # the unpaired XP file is reported


def test_separate_gaia_dir_and_glob(tmp_path, caplog):
    xp_dir, gs_dir = tmp_path / "xp", tmp_path / "gs"
    xp_dir.mkdir()
    gs_dir.mkdir()
    for n in (XP1, XP2):
        (xp_dir / n).write_bytes(b"x")
    (gs_dir / GS1).write_bytes(b"g")
    (gs_dir / "GaiaSource_003112-005263.csv.gz").write_bytes(b"g")
    parts = discover_partitions(str(xp_dir / "XpContinuous*.csv.gz"), gs_dir)
    assert [p.gaia_url for p in parts] == [str(gs_dir / GS1), str(gs_dir / "GaiaSource_003112-005263.csv.gz")]
    # No GaiaSource asked for and none alongside: no pairing, no warning.
    with caplog.at_level(logging.WARNING, logger="xpengine.io.partitions"):
        parts = discover_partitions(xp_dir)
    assert all(p.gaia_url is None for p in parts) and caplog.text == ""


def test_memory_url_listing():
    fs = fsspec.filesystem("memory")
    try:
        for n in (XP1, GS1):
            fs.pipe(f"/xpengine-parts/{n}", b"x")
        parts = discover_partitions("memory://xpengine-parts")
        assert parts[0].xp_url.startswith("memory://") and parts[0].xp_url.endswith(f"xpengine-parts/{XP1}")
        assert parts[0].gaia_url.endswith(f"xpengine-parts/{GS1}")
        with fsspec.open(parts[0].gaia_url, "rb") as f:
            assert f.read() == b"x"
    finally:
        fs.rm("/xpengine-parts", recursive=True)


def test_hpx8_range_of_real_sources():
    ids = read_xp_continuous(WITH_MISSING_ECSV).column("source_id").to_numpy()
    hpx8 = ids >> 43  # Gaia DR3 source_id encodes the level-12 nested HEALPix in bits 35+
    assert hpx8.min() >= 0 and hpx8.max() < 12 * 4**8
    p = Partition("x", "u", None, int(hpx8.min()), int(hpx8.max()))
    assert p.contains(ids).all()
    assert p.source_id_min <= ids.min() and ids.max() <= p.source_id_max
    assert not Partition("y", "u", None, 0, 10).contains(np.array(NORMAL_IDS)).any()


def test_md5sums(bulk_dir):
    if shutil.which("md5sum") is None:
        pytest.skip("md5sum tool not available for an independent checksum")
    out = subprocess.run(["md5sum", XP1, GS1], cwd=bulk_dir, capture_output=True, text=True, check=True)
    (bulk_dir / "_MD5SUM.txt").write_text(out.stdout)
    sums = read_md5sums(bulk_dir / "_MD5SUM.txt")
    assert set(sums) == {XP1, GS1}
    assert verify_md5sums(bulk_dir / "_MD5SUM.txt") == {XP1: True, GS1: True}
    (bulk_dir / GS1).write_bytes(b"changed")
    assert verify_md5sums(bulk_dir / "_MD5SUM.txt", names=[GS1]) == {GS1: False}
    (bulk_dir / XP1).unlink()
    with pytest.raises(GaiaFileError, match="not found"):
        verify_md5sums(bulk_dir / "_MD5SUM.txt", names=[XP1])
    (bulk_dir / "_MD5SUM.txt").write_text("not-a-checksum  file\n")
    with pytest.raises(GaiaFileError, match=r"row 1"):
        read_md5sums(bulk_dir / "_MD5SUM.txt")


def test_duplicate_partition_rejected(bulk_dir):
    (bulk_dir / "XpContinuousMeanSpectrum_000000-003111.parquet").write_bytes(b"p")
    with pytest.raises(ValueError, match="two XpContinuousMeanSpectrum files for partition 000000-003111"):
        discover_partitions(bulk_dir)


def test_single_files_differing_after_the_first_dot_are_separate_partitions(tmp_path):
    """`stars.2023.csv` and `stars.2024.csv` were both the partition `stars`, so a rerun of one with
    --overwrite replaced the other's rows: a single file's name loses only `.gz` and its last suffix."""
    from xpengine.io.partitions import single_file_name

    names = {
        "stars.2023.csv": "stars.2023",
        "stars.2024.csv.gz": "stars.2024",
        "XP_CONTINUOUS-Gaia_DR3_5937083312263887616.fits": "XP_CONTINUOUS-Gaia_DR3_5937083312263887616",
        "18Sco-XP-spectra.csv": "18Sco-XP-spectra",
        "plain": "plain",
    }
    for base, name in names.items():
        assert single_file_name(base) == name, base
        (tmp_path / base).write_bytes(b"x")
        assert [p.name for p in discover_partitions(tmp_path / base)] == [name]


def test_files_that_look_like_xp_but_are_not_bulk_partitions_are_reported(bulk_dir, caplog):
    """An archive download or a misnamed bulk file in a directory of partitions is not read: the log says
    so, naming them, instead of leaving them out in silence."""
    for stray in (
        "XP_CONTINUOUS-Gaia_DR3_5937083312263887616.csv",
        "XpContinuousMeanSpectrum_700000-70311.csv.gz",
    ):
        (bulk_dir / stray).write_bytes(b"x")
    (bulk_dir / "README.txt").write_bytes(b"x")
    with caplog.at_level(logging.WARNING, logger="xpengine.io.partitions"):
        parts = discover_partitions(bulk_dir)
    assert [p.name for p in parts] == ["000000-003111", "003112-005263"]
    assert "2 file(s)" in caplog.text and "XpContinuousMeanSpectrum_700000-70311.csv.gz" in caplog.text
    assert "XP_CONTINUOUS-Gaia_DR3_5937083312263887616.csv" in caplog.text and "README" not in caplog.text


def test_a_glob_of_single_archive_files_gives_one_partition_each(tmp_path):
    """`--input 'downloads/XP_CONTINUOUS-*.csv'` (the shell does not expand a quoted glob): each archive file
    is a partition of its own, as when the shell expands it (until session 27 they were refused as strays)."""
    from _paths import XP_DIR

    for name in ("XP_CONTINUOUS_RAW.csv", "XP_CONTINUOUS-Gaia_DR3_5937083312263887616.csv"):
        (tmp_path / name).write_bytes((XP_DIR / name).read_bytes())
    (tmp_path / "gs.csv").write_text("source_id\n1\n")
    parts = discover_partitions(str(tmp_path / "XP_CONTINUOUS*.csv"), str(tmp_path / "gs.csv"))
    assert sorted(p.name for p in parts) == [
        "XP_CONTINUOUS-Gaia_DR3_5937083312263887616",
        "XP_CONTINUOUS_RAW",
    ]
    assert all(p.hpx8_min is None and p.gaia_url.endswith("gs.csv") for p in parts)


def test_a_glob_leaves_out_folders_the_gaia_source_file_and_files_without_xp(tmp_path, caplog):
    from _paths import XP_DIR

    (tmp_path / "older").mkdir()
    (tmp_path / "older" / "XP_CONTINUOUS_RAW.csv").write_bytes(
        (XP_DIR / "XP_CONTINUOUS_RAW.csv").read_bytes()
    )
    for name in ("XP_CONTINUOUS_RAW.csv", "XP_CONTINUOUS-Gaia_DR3_5937083312263887616.csv"):
        (tmp_path / name).write_bytes((XP_DIR / name).read_bytes())
    (tmp_path / "gs.csv").write_text(
        "source_id,ra,dec,parallax,parallax_error,phot_g_mean_mag\n1,0,0,1,0.1,12\n"
    )
    (tmp_path / "notes.csv").write_text("a,b\n1,2\n")
    with caplog.at_level(logging.WARNING, logger="xpengine.io.partitions"):
        parts = discover_partitions(str(tmp_path / "*"), str(tmp_path / "gs.csv"))
    assert sorted(p.name for p in parts) == [
        "XP_CONTINUOUS-Gaia_DR3_5937083312263887616",
        "XP_CONTINUOUS_RAW",
    ]
    assert any(
        "notes.csv" in r.getMessage() and "hold no XP spectra" in r.getMessage() for r in caplog.records
    )
