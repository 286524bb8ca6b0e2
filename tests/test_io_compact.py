"""`xpengine compact` (bulk partitions → `ModelInputs_AAAAAA-BBBBBB.parquet`) and the catalogue job on
its output: two partitions of the bundled simulated sky (real bulk format, with its 2MASS and E(B−V)
side tables) are converted once, and the job on the compact copy must give the catalogue of the job on
the bulk files (labels and errors to float32 rounding of the coefficients, flags exactly)."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from xpengine import io
from xpengine.cli import main as xpengine_main
from xpengine.io.model_inputs import ModelInputsWriter

PARTS = ("000000-003111", "245760-248871")
BAD = "688128-691239"
LABELS = ["teff", "logg", "m_h"]


def _bulk_copy(sky_dir: str, dest, parts=PARTS):
    """The partitions' XP and GaiaSource files, with their lines of the sky's `_MD5SUM.txt`."""
    dest.mkdir(parents=True, exist_ok=True)
    for p in parts:
        for kind in ("XpContinuousMeanSpectrum", "GaiaSource"):
            shutil.copy(os.path.join(sky_dir, f"{kind}_{p}.csv.gz"), dest / f"{kind}_{p}.csv.gz")
    lines = open(os.path.join(sky_dir, "_MD5SUM.txt")).read().splitlines()
    (dest / "_MD5SUM.txt").write_text("\n".join(ln for ln in lines if any(p in ln for p in parts)) + "\n")
    return dest


def _side(sky_dir: str) -> list[str]:
    return ["--tmass", os.path.join(sky_dir, "tmass.parquet"), "--ebv", os.path.join(sky_dir, "ebv.parquet")]


@pytest.fixture(scope="module")
def converted(tmp_path_factory, sky_dir):
    """(bulk dir, compact dir, command stdout): two partitions converted by the command, in chunks of
    300 rows with two worker processes."""
    root = tmp_path_factory.mktemp("compact")
    bulk = _bulk_copy(sky_dir, root / "bulk")
    out = root / "compact"
    from contextlib import redirect_stdout
    from io import StringIO

    buf = StringIO()
    with redirect_stdout(buf):
        rc = xpengine_main(
            [
                *("compact", "--input", str(bulk), "--output", str(out), *_side(sky_dir)),
                *("--workers", "2", "--chunk-rows", "300"),
            ]
        )
    assert rc == 0, buf.getvalue()
    return bulk, out, buf.getvalue()


def test_compact_writes_one_file_per_partition_with_provenance(converted, sky_dir):
    bulk, out, stdout = converted
    assert sorted(os.listdir(out)) == [f"ModelInputs_{p}.parquet" for p in PARTS]  # no temporary left
    assert "2 partition(s) written" in stdout and "0 failed" in stdout and "2,000 sources" in stdout
    assert "bytes/source" in stdout
    sums = io.read_md5sums(bulk / "_MD5SUM.txt")
    tmass = io.read_table(os.path.join(sky_dir, "tmass.parquet"))
    for p in PARTS:
        path = out / f"ModelInputs_{p}.parquet"
        xp = io.read_xp_continuous(bulk / f"XpContinuousMeanSpectrum_{p}.csv.gz")
        gaia = io.read_gaia_source(bulk / f"GaiaSource_{p}.csv.gz")
        meta = pq.ParquetFile(path).metadata
        assert meta.num_rows == xp.num_rows == 1000
        assert meta.num_row_groups == 4  # streamed: one row group per 300-row chunk
        prov = io.model_inputs_provenance(path)
        assert prov["partition"] == p and prov["hpx8_range"] == [int(x) for x in p.split("-")]
        assert prov["n_coefficients"] == {"bp": 55, "rp": 55} and prov["rows"] == 1000
        by_role = {r["role"]: r for r in prov["inputs"]}
        assert set(by_role) == {"xp", "gaia_source", "tmass", "ebv"}
        for role, kind in (("xp", "XpContinuousMeanSpectrum"), ("gaia_source", "GaiaSource")):
            name = f"{kind}_{p}.csv.gz"
            rec = by_role[role]
            assert rec["url"] == str(bulk / name) and rec["size"] == os.path.getsize(bulk / name)
            assert rec["md5"] == sums[name] and rec["md5_listed"] is True
        assert by_role["ebv"]["md5"] == io.md5_of(os.path.join(sky_dir, "ebv.parquet"))
        # the values: XP coefficients to float32, gaia_source and side columns as joined by the job
        arrays = io.read_model_inputs(path)
        np.testing.assert_array_equal(arrays["source_id"], xp.column("source_id").to_numpy())
        coef = io.list_column_to_numpy(xp.column("rp_coefficients"), dtype=np.float32)
        np.testing.assert_array_equal(arrays["rp_coefficients"], coef)
        joined = io.join_sources(xp, gaia)
        np.testing.assert_array_equal(arrays["phot_g_mean_mag"], joined.column("phot_g_mean_mag").to_numpy())
        np.testing.assert_array_equal(arrays["parallax"], joined.column("parallax").to_numpy())
        with_tmass = io.join_sources(xp, None, tmass=tmass)
        np.testing.assert_array_equal(arrays["j_m"], with_tmass.column("j_m").to_numpy(zero_copy_only=False))
        assert np.isfinite(arrays["j_m"]).sum() > 900
        assert "ebv" in arrays and "read_problem" in arrays


def test_compact_partition_plans_like_the_job(converted):
    """The names carry the HEALPix range: the job plans compact partitions with their range and no
    gaia_source partner (the file holds the gaia_source columns)."""
    from xpengine.pipeline.config import InferenceConfig
    from xpengine.pipeline.ray_job import plan_partitions

    _, out, _ = converted
    tasks = plan_partitions(InferenceConfig(input=[str(out)]))
    assert [(t.name, t.gaia, t.hpx8_range) for t in tasks] == [
        ("000000-003111", None, (0, 3111)),
        ("245760-248871", None, (245760, 248871)),
    ]
    assert all(io.is_model_inputs(t.xp) for t in tasks)


@pytest.mark.slow
@pytest.mark.ray
def test_job_on_compact_inputs_gives_the_bulk_catalogue(ray_local, converted, sky_dir, tmp_path):
    """`infer_gaia.py --input COMPACT` (no --gaia-source, no side tables) = the job on the bulk files
    with --gaia-source, --tmass, --ebv. A corrupt compact partition beside them fails alone."""
    from xpengine.pipeline.cli import job_main

    bulk, out, _ = converted
    compact = tmp_path / "compact"
    shutil.copytree(out, compact)
    good = (out / f"ModelInputs_{PARTS[0]}.parquet").read_bytes()
    (compact / f"ModelInputs_{BAD}.parquet").write_bytes(good[: len(good) // 2])  # truncated
    common = ["--model", "apogee-xp", "--labels", *LABELS]
    rc_bulk = job_main(
        [
            *("--input", str(bulk), "--gaia-source", str(bulk), *_side(sky_dir)),
            *("--output", str(tmp_path / "a"), *common),
        ]
    )
    rc_compact = job_main(["--input", str(compact), "--output", str(tmp_path / "b"), *common])
    assert rc_bulk == 0 and rc_compact == 1  # 1: the corrupt partition failed
    import json

    failed = json.loads((tmp_path / "b" / "_manifest" / f"{BAD}.json").read_text())
    assert failed["status"] == "failed"
    assert f"ModelInputs_{BAD}.parquet" in failed["error"] and "cannot read Parquet" in failed["error"]
    for p in PARTS:
        a = pq.read_table(tmp_path / "a" / f"{p}.parquet")
        b = pq.read_table(tmp_path / "b" / f"{p}.parquet")
        assert a.schema.names == b.schema.names and a.num_rows == b.num_rows == 1000
        rec = json.loads((tmp_path / "b" / "_manifest" / f"{p}.json").read_text())
        assert rec["hpx8_range"] == [int(x) for x in p.split("-")]
        flags = b.column("flags").to_numpy()
        assert not (flags & int(io_flag("NO_GAIA_SOURCE"))).any()  # gaia_source came from the file
        assert not (flags & int(io_flag("NO_2MASS"))).all()  # so did 2MASS
        for name in a.schema.names:
            x, y = a.column(name).to_numpy(), b.column(name).to_numpy()
            base = name.removesuffix("_error")
            if base in LABELS or name.startswith("distance_pc"):
                np.testing.assert_allclose(y, x, rtol=1e-5, atol=1e-5, err_msg=name)
            else:
                np.testing.assert_array_equal(y, x, err_msg=name)


def io_flag(name: str):
    from xpengine.features.flags import SourceFlag

    return SourceFlag[name]


def test_compact_refuses_to_overwrite(converted, tmp_path, capsys):
    bulk, out, _ = converted
    target = tmp_path / "again"
    shutil.copytree(out, target)
    before = {p: os.path.getmtime(target / f"ModelInputs_{p}.parquet") for p in PARTS}
    rc = xpengine_main(["compact", "--input", str(bulk), "--output", str(target)])
    err = capsys.readouterr().err
    assert rc == 2
    assert (
        "xpengine compact: error:" in err
        and f"ModelInputs_{PARTS[0]}.parquet" in err
        and "--overwrite" in err
    )
    assert len(err.strip().splitlines()) == 1
    assert {p: os.path.getmtime(target / f"ModelInputs_{p}.parquet") for p in PARTS} == before
    assert xpengine_main(["compact", "--input", str(bulk), "--output", str(target), "--overwrite"]) == 0
    assert all(os.path.getmtime(target / f"ModelInputs_{p}.parquet") >= before[p] for p in PARTS)
    # without side tables this time: the replaced files have no 2MASS columns
    assert "j_m" not in pq.read_schema(target / f"ModelInputs_{PARTS[0]}.parquet").names


def test_bad_bulk_partition_fails_alone(tmp_path, sky_dir, capsys):
    """A truncated XP download: caught by the _MD5SUM.txt that lists it, else by the reader; the other
    partition is written, no partial file is left, the failure is one line naming the file."""
    bulk = _bulk_copy(sky_dir, tmp_path / "bulk", parts=(PARTS[0], BAD))
    xp_bad = bulk / f"XpContinuousMeanSpectrum_{BAD}.csv.gz"
    xp_bad.write_bytes(xp_bad.read_bytes()[:200_000])
    out = tmp_path / "out"
    rc = xpengine_main(["compact", "--input", str(bulk), "--output", str(out)])
    captured = capsys.readouterr()
    assert rc == 1
    lines = [ln for ln in captured.err.splitlines() if ln.startswith("xpengine compact: error:")]
    assert len(lines) == 1 and f"partition {BAD}" in lines[0] and str(xp_bad) in lines[0]
    assert "MD5" in lines[0] and "_MD5SUM.txt" in lines[0]
    assert "1 partition(s) written" in captured.out and "1 failed" in captured.out
    assert sorted(os.listdir(out)) == [f"ModelInputs_{PARTS[0]}.parquet"]

    (bulk / "_MD5SUM.txt").unlink()  # no checksum to catch it: the gzip reader does
    rc = xpengine_main(["compact", "--input", str(bulk), "--output", str(out), "--overwrite"])
    err = capsys.readouterr().err
    assert rc == 1 and "truncated or corrupt gzip" in err and f"partition {BAD}" in err
    assert sorted(os.listdir(out)) == [f"ModelInputs_{PARTS[0]}.parquet"]


def test_no_partitions_is_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert (
        xpengine_main(["compact", "--input", str(tmp_path / "empty"), "--output", str(tmp_path / "o")]) == 2
    )
    err = capsys.readouterr().err.strip()
    assert err.startswith("xpengine compact: error:") and "no XpContinuousMeanSpectrum partitions" in err


def test_model_inputs_are_not_confused_with_other_parquet(converted, tmp_path):
    """Identified by the layout metadata (or the ModelInputs_ name): a catalogue, a training set or an
    exported XP table with the same array columns is not a model-inputs file."""
    from xpengine.datasets.schema import training_table, write_training_set
    from xpengine.features.vocabulary import PAPER_VOCABULARY

    bulk, out, _ = converted
    compact = out / f"ModelInputs_{PARTS[0]}.parquet"
    renamed = tmp_path / "anything.parquet"
    shutil.copy(compact, renamed)
    assert io.is_model_inputs(compact) and io.is_model_inputs(renamed)
    training = tmp_path / "train.parquet"
    n, t = 3, len(PAPER_VOCABULARY)
    write_training_set(
        training_table(
            np.arange(n), np.zeros((n, t)), np.ones((n, t)), PAPER_VOCABULARY, split=["train"] * n, origin="x"
        ),
        str(training),
    )
    exported = tmp_path / f"XpContinuousMeanSpectrum_{PARTS[0]}.parquet"
    pq.write_table(io.read_xp_continuous(bulk / f"XpContinuousMeanSpectrum_{PARTS[0]}.csv.gz"), exported)
    catalogue = tmp_path / f"{PARTS[0]}.parquet"
    pq.write_table(pa.table({"source_id": [1, 2], "teff": [5000.0, 6000.0]}), catalogue)
    for other in (training, exported, catalogue, bulk / f"XpContinuousMeanSpectrum_{PARTS[0]}.csv.gz"):
        assert not io.is_model_inputs(other), other
    for other in (training, exported):
        with pytest.raises(io.GaiaFileError, match="not an xpengine model-inputs file"):
            next(io.iter_model_inputs(other))
    # a ModelInputs_ name is a promise: reading it says what is wrong
    fake = tmp_path / f"ModelInputs_{PARTS[0]}.parquet"
    shutil.copy(training, fake)
    assert io.is_model_inputs(fake)
    with pytest.raises(io.GaiaFileError, match=f"{fake}: not an xpengine model-inputs file"):
        next(io.iter_model_inputs(fake))
    truncated = tmp_path / "ModelInputs_x.parquet"
    truncated.write_bytes(compact.read_bytes()[:5000])
    with pytest.raises(io.GaiaFileError, match=f"{truncated}: cannot read Parquet"):
        next(io.iter_model_inputs(truncated))


def test_iter_model_inputs_batches_like_the_xp_reader(converted):
    _, out, _ = converted
    path = out / f"ModelInputs_{PARTS[0]}.parquet"
    chunks = list(io.iter_model_inputs(path, batch_rows=400))
    assert [c.num_rows for c in chunks] == [400, 400, 200]  # whatever the row groups (300 rows)
    meta = chunks[0].schema.metadata
    assert meta[b"xpengine.source"] == str(path).encode() and b"xpengine.n_coefficients" in meta
    assert chunks[0].column("bp_coefficients").type.list_size == 55
    assert "phot_g_mean_mag" in chunks[0].column_names


def test_discovery_of_compact_files(tmp_path, converted):
    _, out, _ = converted
    d = tmp_path / "mixed"
    d.mkdir()
    shutil.copy(out / f"ModelInputs_{PARTS[0]}.parquet", d / f"ModelInputs_{PARTS[0]}.parquet")
    shutil.copy(out / f"ModelInputs_{PARTS[1]}.parquet", d / "ModelInputs_XP_CONTINUOUS-archive.parquet")
    (d / "ModelInputs_x.parquet.partial").write_bytes(b"")  # an unfinished write is ignored
    parts = io.discover_partitions(d)
    assert sorted((p.name, p.hpx8_min, p.hpx8_max, p.gaia_url) for p in parts) == [
        (PARTS[0], 0, 3111, None),
        ("XP_CONTINUOUS-archive", None, None, None),  # a converted single file: no range
    ]
    single = io.discover_partitions(d / "ModelInputs_XP_CONTINUOUS-archive.parquet")
    assert [p.name for p in single] == ["XP_CONTINUOUS-archive"]
    # a bulk file and its compact copy in one directory: two files for one partition
    (d / f"XpContinuousMeanSpectrum_{PARTS[0]}.csv.gz").write_bytes(b"")
    with pytest.raises(
        ValueError, match=f"two XpContinuousMeanSpectrum files for partition {PARTS[0]}.*separate"
    ):
        io.discover_partitions(d)


def test_writer_keeps_one_width_per_file(tmp_path, sky_dir):
    xp = io.read_xp_continuous(os.path.join(sky_dir, f"XpContinuousMeanSpectrum_{PARTS[0]}.csv.gz")).slice(
        0, 10
    )
    longer = xp.set_column(
        xp.schema.get_field_index("bp_coefficients"),
        "bp_coefficients",
        pa.array([[*r, 1.0] for r in xp.column("bp_coefficients").to_pylist()], pa.list_(pa.float64())),
    )
    path = tmp_path / "ModelInputs_w.parquet"
    with pytest.raises(ValueError, match=r"more than the \{'bp': 55"):
        with ModelInputsWriter(path) as w:
            w.write(xp.slice(0, 5))
            w.write(longer)
    assert not os.listdir(tmp_path)  # the partial file is gone


def test_a_sampled_spectrum_keeps_its_xp_through_the_compact_layout(tmp_path):
    """A present band without relevancy counts (a sampled spectrum) stays "unknown: every coefficient kept" in
    the compact layout, as the readers give it; it was once written as 0 relevant bases, which masked the whole
    band and left the star without XP tokens (session 16). A missing band is still 0."""
    from _paths import STAR_SAMPLED

    from xpengine.features.flags import SourceFlag, has_flag
    from xpengine.features.tokens import build_tokens
    from xpengine.io.model_inputs import model_inputs_table, read_model_inputs, write_model_inputs

    sampled = io.read_xp_sampled(STAR_SAMPLED)
    table = model_inputs_table(sampled)
    assert table.column("bp_n_relevant_bases").null_count == 1
    direct = build_tokens(sampled)
    compact = build_tokens(table)
    assert np.isfinite(compact.values[:, :110]).sum() == np.isfinite(direct.values[:, :110]).sum() == 110
    np.testing.assert_array_equal(compact.flags, direct.flags)
    assert has_flag(compact.flags, SourceFlag.NO_RELEVANCY).all()
    path = tmp_path / "ModelInputs_sampled.parquet"
    write_model_inputs(table, path)
    back = read_model_inputs(path)
    assert np.isnan(back["bp_n_relevant_bases"]).all() and np.isnan(back["rp_n_relevant_bases"]).all()
    # a missing band: 0 relevant bases, as before
    no_rp = sampled.set_column(
        sampled.schema.get_field_index("rp_coefficients"),
        "rp_coefficients",
        pa.array([None], type=sampled.schema.field("rp_coefficients").type),
    )
    assert model_inputs_table(no_rp).column("rp_n_relevant_bases").to_pylist() == [0]


def test_compact_checks_its_side_tables_before_any_work(converted, tmp_path, capsys, caplog):
    """As the job: an E(B−V) table with text in `ebv` is refused before anything is written, naming the
    option, the file and the column; one without `ebv_error` is taken, with the log line saying the σ the
    isochrone fit will give it."""
    import logging

    bulk, _, _ = converted
    bad = tmp_path / "ebv_text.csv"
    bad.write_text("source_id,ebv\n1,low\n2,high\n")
    out = tmp_path / "o"
    rc = xpengine_main(["compact", "--input", str(bulk), "--output", str(out), "--ebv", str(bad)])
    err = capsys.readouterr().err
    assert rc == 2 and "--ebv" in err and str(bad) in err and "ebv" in err, err
    assert not out.exists() or not os.listdir(out)
    bare = tmp_path / "ebv_bare.csv"
    bare.write_text("source_id,ebv\n1,0.1\n2,0.2\n")
    with caplog.at_level(logging.WARNING):
        assert xpengine_main(["compact", "--input", str(bulk), "--output", str(out), "--ebv", str(bare)]) == 0
    assert "no ebv_error column" in caplog.text and str(bare) in caplog.text


def test_compact_inputs_made_with_another_dust_map_are_refused_or_recorded(converted, sky_dir, tmp_path):
    """The job's identity holds the 2MASS / E(B−V) tables its compact inputs were made with, so a resume
    over files made with another table is refused as a changed --ebv is; files of one run made with two
    tables are refused before any work; the job's own --ebv replaces the files' columns and lifts the
    E(B−V) check (until session 25 such runs mixed dust maps and reported success)."""
    from xpengine.pipeline.compact import compact_inputs
    from xpengine.pipeline.config import InferenceConfig
    from xpengine.pipeline.identity import _identity_differences
    from xpengine.pipeline.plan import JobError, compact_side_tables, plan_partitions

    _, out, _ = converted
    cfg = InferenceConfig(input=[str(out)])
    tables = compact_side_tables(plan_partitions(cfg), cfg)
    assert set(tables) == {"tmass", "ebv"}
    assert tables["ebv"]["md5"] == io.md5_of(os.path.join(sky_dir, "ebv.parquet"))
    # a third partition compacted with another E(B−V) table into a copy of the folder
    ebv2 = pq.read_table(os.path.join(sky_dir, "ebv.parquet"))
    ebv2 = ebv2.set_column(ebv2.schema.get_field_index("ebv"), "ebv", pc.multiply(ebv2.column("ebv"), 2.0))
    pq.write_table(ebv2, tmp_path / "ebv2.parquet")
    mixed = tmp_path / "mixed"
    shutil.copytree(out, mixed)
    bulk = _bulk_copy(sky_dir, tmp_path / "bulk3", parts=(BAD,))
    summary = compact_inputs(
        [str(bulk)],
        str(mixed),
        tmass=os.path.join(sky_dir, "tmass.parquet"),
        ebv=str(tmp_path / "ebv2.parquet"),
    )
    assert summary.written and not summary.failed
    cfg = InferenceConfig(input=[str(mixed)])
    with pytest.raises(JobError, match=r"compact inputs made with different E\(B-V\) tables"):
        compact_side_tables(plan_partitions(cfg), cfg)
    cfg = InferenceConfig(input=[str(mixed)], ebv=str(tmp_path / "ebv2.parquet"))  # the job's own table
    assert compact_side_tables(plan_partitions(cfg), cfg) == {"tmass": tables["tmass"]}
    # the files of the new table alone: a resume of the first folder's catalogue over them is refused
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(next(mixed.glob(f"ModelInputs_{BAD}.parquet")), alone)
    cfg = InferenceConfig(input=[str(alone)])
    new = compact_side_tables(plan_partitions(cfg), cfg)
    diff = _identity_differences({"compact_side_tables": tables}, {"compact_side_tables": new})
    assert len(diff) == 1 and diff[0].startswith("2MASS / E(B−V) tables of the compact inputs")
    # a record from before session 25 holds no such key: it resumes as it did
    assert _identity_differences({}, {"compact_side_tables": new}) == []
    # a bulk-only job reads no compact footer, and one given both tables needs none
    bulk_cfg = InferenceConfig(input=[str(bulk)])
    assert compact_side_tables(plan_partitions(bulk_cfg), bulk_cfg) is None
