"""A Gaia archive download (a .zip of DataLink products) as an input: its XP_CONTINUOUS files are read in
place, its other products skipped, and the job gives the rows the files give unzipped."""

from __future__ import annotations

import logging
import zipfile

import pyarrow.parquet as pq
import pytest
from _paths import XP_DIR

from xpengine.io import GaiaFileError, read_xp_continuous
from xpengine.io.partitions import discover_partitions

RAW = XP_DIR / "XP_CONTINUOUS_RAW.csv"  # two real DR3 sources, archive CSV
ONE = XP_DIR / "XP_CONTINUOUS-Gaia_DR3_5937083312263887616.csv"  # a DataLink XP_CONTINUOUS file


def _zip(path, members: dict[str, bytes]):
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def test_the_xp_continuous_files_of_a_download_are_its_partitions(tmp_path, caplog):
    z = _zip(
        tmp_path / "gaia_dr3_dl_products_csv.zip",
        {
            "MCMC_MSC-Gaia DR3 1.csv": b"source_id\n1\n",
            "XP_SAMPLED-Gaia DR3 5937083312263887616.csv": b"not read\n",
            "XP_CONTINUOUS-Gaia DR3 5937083312263887616.csv": ONE.read_bytes(),
            "XP_CONTINUOUS-Gaia DR3 two.csv": RAW.read_bytes(),
        },
    )
    with caplog.at_level(logging.INFO, logger="xpengine.io.partitions"):
        parts = discover_partitions(str(z))
    assert [p.name for p in parts] == [
        "XP_CONTINUOUS-Gaia DR3 5937083312263887616",
        "XP_CONTINUOUS-Gaia DR3 two",
    ]
    assert all(
        p.xp_url.startswith("zip://XP_CONTINUOUS-") and p.xp_url.endswith("::" + str(z)) for p in parts
    )
    assert any("skipping 2 other file(s)" in r.getMessage() for r in caplog.records)
    for part, plain in zip(parts, (ONE, RAW), strict=True):
        got, want = read_xp_continuous(part.xp_url), read_xp_continuous(plain)
        assert got.column("source_id").equals(want.column("source_id"))
        assert got.column("bp_coefficients").equals(want.column("bp_coefficients"))


def test_a_download_without_xp_continuous_gives_its_sampled_files_and_one_without_xp_is_refused(tmp_path):
    z = _zip(tmp_path / "s.zip", {"XP_SAMPLED-Gaia DR3 9.csv": b"x\n", "MCMC_MSC-Gaia DR3 9.csv": b"x\n"})
    (part,) = discover_partitions(str(z))
    assert part.xp_url.startswith("zip://XP_SAMPLED-Gaia DR3 9.csv::")
    empty = _zip(tmp_path / "e.zip", {"MCMC_MSC-Gaia DR3 9.csv": b"x\n"})
    with pytest.raises(GaiaFileError, match=r"no XP_CONTINUOUS or XP_SAMPLED file inside.*MCMC_MSC"):
        discover_partitions(str(empty))
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip at all")
    with pytest.raises(GaiaFileError, match="not a readable zip file"):
        discover_partitions(str(bad))


def test_a_zip_among_bulk_files_is_named_not_silently_skipped(tmp_path, caplog):
    folder = tmp_path / "in"
    folder.mkdir()
    _zip(folder / "download.zip", {"XP_CONTINUOUS-Gaia DR3 1.csv": RAW.read_bytes()})
    (folder / "XpContinuousMeanSpectrum_000000-003111.csv").write_bytes(RAW.read_bytes())
    with caplog.at_level(logging.WARNING, logger="xpengine.io.partitions"):
        parts = discover_partitions(str(folder))
    assert [p.name for p in parts] == ["000000-003111"]
    assert any("download.zip" in r.getMessage() and "not read" in r.getMessage() for r in caplog.records)


@pytest.mark.ray
def test_the_job_reads_a_download_as_it_reads_the_file_unzipped(ray_local, tmp_path):
    from xpengine.pipeline.config import InferenceConfig
    from xpengine.pipeline.ray_job import run_inference

    z = _zip(
        tmp_path / "dl.zip", {"XP_CONTINUOUS-Gaia DR3 two.csv": RAW.read_bytes(), "MCMC_MSC-x.csv": b"x"}
    )
    tables = []
    for name, inp in (("zipped", z), ("plain", RAW)):
        cfg = InferenceConfig(
            input=[str(inp)],
            model="apogee-xp",
            output=str(tmp_path / name),
            labels=["teff", "logg"],
            batch_size=64,
            progress_interval_s=0.0,
        )
        summary = run_inference(cfg)
        assert summary.ok, summary.partitions_failed
        tables.append(pq.read_table(tmp_path / name).sort_by("source_id"))
    zipped, plain = tables
    assert zipped.num_rows == plain.num_rows == 2
    for col in ("source_id", "teff", "logg", "flags"):
        assert zipped.column(col).equals(plain.column(col)), col


def test_a_replaced_download_changes_its_members_fingerprint(tmp_path):
    """Resume compares an input's size and date; a zip member has no date of its own, so the zip's own
    size and date and the member's CRC stand for it (a review found a replaced download kept its old rows)."""
    import os

    from xpengine.pipeline.plan import _file_fingerprint

    z = _zip(tmp_path / "dl.zip", {"XP_CONTINUOUS-a.csv": RAW.read_bytes()})
    (part,) = discover_partitions(str(z))
    before = _file_fingerprint(part.xp_url)
    data = RAW.read_bytes().replace(b"5853498713190525696", b"5853498713190525697")  # same size, new bytes
    _zip(z, {"XP_CONTINUOUS-a.csv": data})
    os.utime(z, (1, 1))  # even with the old mtime back... a different date
    after = _file_fingerprint(part.xp_url)
    assert before["size"] == after["size"] and before != after
    assert "crc" in after["modified"]


def test_downloads_in_a_folder_skip_one_without_xp_and_a_lone_one_is_refused(tmp_path, caplog):
    folder = tmp_path / "dl"
    folder.mkdir()
    _zip(folder / "a.zip", {"XP_CONTINUOUS-a.csv": RAW.read_bytes()})
    _zip(folder / "rvs.zip", {"RVS-Gaia DR3 1.csv": b"x\n"})
    with caplog.at_level(logging.WARNING, logger="xpengine.io.partitions"):
        parts = discover_partitions(str(folder))
    assert [p.name for p in parts] == ["XP_CONTINUOUS-a"]
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "rvs.zip" in text and "skipped" in text
    assert "hold no G, parallax or sky position" in text and "--gaia-source" in text  # nothing beside the XP
    with pytest.raises(GaiaFileError, match="no XP_CONTINUOUS"):
        discover_partitions(str(folder / "rvs.zip"))


def test_a_download_on_a_file_system_fsspec_cannot_open_is_refused_clearly():
    try:
        import s3fs  # noqa: F401

        pytest.skip("s3fs is installed here: the zip would be read, not refused")
    except ImportError:
        pass
    from xpengine.io.partitions import zip_partitions

    with pytest.raises(GaiaFileError, match=r"s3:// cannot be read in place.*unzip it there"):
        zip_partitions("s3://bucket/downloads/dl.zip")  # refused before any request
