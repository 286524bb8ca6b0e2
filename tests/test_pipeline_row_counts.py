"""The job tells the driver's user about rows it wrote without a full prediction: a source missing from the
gaia_source file given (NO_GAIA_SOURCE), rows with READ_PROBLEM or NO_PREDICTION; counted per partition in
the manifest record and for the run in the summary's `rows_flagged`."""

from __future__ import annotations

import logging

import numpy as np
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
def test_a_bright_stars_parallax_is_kept_with_a_zero_point_fallback(ray_local, tmp_path, caplog):
    """18 Sco (G 5.3) is outside Lindegren et al.'s tables: its parallax, measured to 0.06 mas, is kept
    by default (since session 32) with the quasars' -0.017 mas and σ_ϖ widened by 0.02 mas, flagged
    NO_ZERO_POINT, counted and warned on the driver; `none` drops it; a resume with another fallback is
    refused."""
    from _paths import SCO18

    from xpengine.pipeline.config import InferenceConfig
    from xpengine.pipeline.ray_job import JobError, run_inference

    gs = tmp_path / "gs.csv"
    gs.write_text(COLUMNS + "\n4345775217221821312,243.9053,-8.3694,70.737,0.0605,5.3277\n")
    rows, summaries = {}, {}
    for name, zpf in (("dropped", {"zero_point_fallback": "none"}), ("kept", {})):
        cfg = InferenceConfig(
            input=[str(SCO18)],
            gaia_source=[str(gs)],
            model="apogee-xp",
            output=str(tmp_path / name),
            labels=["teff", "logg"],
            progress_interval_s=0.0,
            **zpf,
        )
        with caplog.at_level(logging.WARNING, logger="xpengine.pipeline.ray_job"):
            caplog.clear()
            summaries[name] = run_inference(cfg)
        assert summaries[name].ok
        assert any(
            "1 of its 1 row(s) have a parallax without Lindegren" in r.getMessage() for r in caplog.records
        )
        rows[name] = pq.read_table(tmp_path / name).to_pylist()[0]
    no_plx, by_plx = int(SourceFlag.NO_PARALLAX), int(SourceFlag.DISTANCE_FROM_PARALLAX)
    assert rows["dropped"]["flags"] & no_plx and not rows["dropped"]["flags"] & by_plx
    assert rows["kept"]["flags"] & by_plx and not rows["kept"]["flags"] & no_plx
    assert rows["kept"]["flags"] & int(SourceFlag.NO_ZERO_POINT)  # still says the tables did not reach it
    assert summaries["kept"].rows_flagged.get("NO_ZERO_POINT") == 1
    plx = 70.737 + 0.017
    assert rows["kept"]["distance_pc"] == pytest.approx(1000.0 / plx, rel=1e-4)
    widened = np.hypot(0.0605, 0.02)  # FALLBACK_ZERO_POINT_ERROR_MAS
    assert rows["kept"]["distance_pc_error"] == pytest.approx(1000.0 * widened / plx**2, rel=1e-4)
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


@pytest.mark.ray
def test_rows_moved_to_rejected_are_not_counted_as_catalogue_rows(ray_local, tmp_path, capsys):
    """Review of session 32: a source given twice, once with an unreadable coefficient, keeps its clean
    row; the READ_PROBLEM copy moves to `_rejected/`. The summary, the printed counts and the records count
    the catalogue as it stands after that move (the write's counts, until then), and `rows_rejected`
    counts every row set aside, across partitions too."""
    import argparse
    import json

    from xpengine.pipeline.cli import add_job_arguments, run_job

    lines = RAW.read_text().split("\n")
    assert " 5981.983701811674," in lines[1]
    bad = tmp_path / "b_copy_with_nan.csv"
    bad.write_text("\n".join([lines[0], lines[1].replace(" 5981.983701811674,", "NaN,", 1), *lines[2:]]))
    first = tmp_path / "a_clean.csv"
    first.write_text(RAW.read_text())
    out = tmp_path / "cat"
    parser = argparse.ArgumentParser()
    add_job_arguments(parser)
    args = parser.parse_args(
        ["--input", str(first), str(bad), "--model", "apogee-xp", "--labels", "teff", "logg",
         "--output", str(out), "--batch-size", "64"]
    )  # fmt: skip
    assert run_job(args, prog="infer_gaia") == 0
    printed = capsys.readouterr().out
    cat = pq.read_table(out)
    assert sorted(cat.column("source_id").to_pylist()) == sorted(RAW_IDS)
    assert not any(f & int(SourceFlag.READ_PROBLEM) for f in cat.column("flags").to_pylist())
    summary = json.loads((out / "_SUMMARY.json").read_text())
    assert "READ_PROBLEM" not in summary["rows_flagged"] and "READ_PROBLEM" not in printed
    rejected = pq.read_table(out / "_rejected")
    assert rejected.num_rows == 2 and summary["rows_rejected"] == 2
    manifest = [json.loads(p.read_text()) for p in (out / "_manifest").glob("*.json")]
    assert all(not (r.get("problems") or {}).get("read_problem_rows") for r in manifest)
