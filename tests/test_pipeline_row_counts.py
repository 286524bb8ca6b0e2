"""The job tells the driver's user about rows it wrote without a full prediction: a source missing from the
gaia_source file given (NO_GAIA_SOURCE), rows with READ_PROBLEM or NO_PREDICTION; counted per partition in
the manifest record and for the run in the summary's `rows_flagged`."""

from __future__ import annotations

import logging

import pyarrow.parquet as pq
import pytest
from _paths import XP_DIR

from xpengine.features import SourceFlag
from xpengine.io import GaiaFileError, read_gaia_source

RAW = XP_DIR / "XP_CONTINUOUS_RAW.csv"  # two real DR3 sources, archive CSV
RAW_IDS = [5853498713190525696, 5762406957886626816]
COLUMNS = "source_id,ra,dec,parallax,parallax_error,phot_g_mean_mag"


def test_upper_case_gaia_source_columns_are_named_in_the_error(tmp_path):
    f = tmp_path / "gs.csv"
    f.write_text(COLUMNS.upper() + f"\n{RAW_IDS[0]},217.4,-62.7,768.0,0.05,8.98\n")
    with pytest.raises(GaiaFileError, match=r"the file has .*SOURCE_ID.*lower-case names, rename them"):
        read_gaia_source(f)


@pytest.mark.ray
def test_a_source_missing_from_the_gaia_source_file_is_counted_and_warned(ray_local, tmp_path, caplog):
    from xpengine.pipeline.config import InferenceConfig
    from xpengine.pipeline.ray_job import run_inference

    gs = tmp_path / "gs.csv"  # holds the first source only
    gs.write_text(COLUMNS + f"\n{RAW_IDS[0]},217.4,-62.7,768.0,0.05,8.98\n")
    out = tmp_path / "cat"
    cfg = InferenceConfig(
        input=[str(RAW)],
        gaia_source=[str(gs)],
        model="apogee-xp",
        output=str(out),
        labels=["teff", "logg"],
        batch_size=64,
        progress_interval_s=0.0,
    )
    with caplog.at_level(logging.WARNING, logger="xpengine.pipeline.ray_job"):
        summary = run_inference(cfg)
    assert summary.ok, summary.partitions_failed
    cat = pq.read_table(out)
    assert sorted(cat.column("source_id").to_pylist()) == sorted(RAW_IDS)  # both written
    assert summary.rows_flagged.get("NO_GAIA_SOURCE") == 1
    assert any(
        "1 of 2 source(s) are not in its gaia_source file" in r.getMessage() and "gs.csv" in r.getMessage()
        for r in caplog.records
    )
    flags = dict(zip(cat.column("source_id").to_pylist(), cat.column("flags").to_pylist(), strict=True))
    assert flags[RAW_IDS[1]] & int(SourceFlag.NO_GAIA_SOURCE)
    assert not flags[RAW_IDS[0]] & int(SourceFlag.NO_GAIA_SOURCE)
    summary_file = (out / "_SUMMARY.json").read_text()
    assert '"NO_GAIA_SOURCE": 1' in summary_file
