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


@pytest.mark.ray
def test_a_bright_stars_parallax_is_kept_with_a_zero_point_fallback(ray_local, tmp_path):
    """18 Sco (G 5.3) is outside Lindegren et al.'s tables: its parallax, measured to 0.06 mas, is dropped
    by default and kept with --zero-point-fallback; a resume with another fallback is refused."""
    from _paths import SCO18

    from xpengine.pipeline.config import InferenceConfig
    from xpengine.pipeline.ray_job import JobError, run_inference

    gs = tmp_path / "gs.csv"
    gs.write_text(COLUMNS + "\n4345775217221821312,243.9053,-8.3694,70.737,0.0605,5.3277\n")
    rows = {}
    for name, zpf in (("dropped", None), ("kept", -0.017)):
        cfg = InferenceConfig(
            input=[str(SCO18)],
            gaia_source=[str(gs)],
            model="apogee-xp",
            output=str(tmp_path / name),
            labels=["teff", "logg"],
            zero_point_fallback=zpf,
            progress_interval_s=0.0,
        )
        assert run_inference(cfg).ok
        rows[name] = pq.read_table(tmp_path / name).to_pylist()[0]
    no_plx, by_plx = int(SourceFlag.NO_PARALLAX), int(SourceFlag.DISTANCE_FROM_PARALLAX)
    assert rows["dropped"]["flags"] & no_plx and not rows["dropped"]["flags"] & by_plx
    assert rows["kept"]["flags"] & by_plx and not rows["kept"]["flags"] & no_plx
    assert rows["kept"]["flags"] & int(SourceFlag.NO_ZERO_POINT)  # still says the tables did not reach it
    assert rows["kept"]["distance_pc"] == pytest.approx(1000.0 / (70.737 + 0.017), rel=1e-4)
    again = InferenceConfig(
        input=[str(SCO18)],
        gaia_source=[str(gs)],
        model="apogee-xp",
        output=str(tmp_path / "kept"),
        labels=["teff", "logg"],
        zero_point_fallback=-0.03,
        progress_interval_s=0.0,
    )
    with pytest.raises(JobError, match="zero-point-fallback"):
        run_inference(again)
