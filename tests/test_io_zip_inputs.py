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
