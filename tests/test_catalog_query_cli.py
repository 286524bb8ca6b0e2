"""`xpengine query` end to end through `xpengine.catalog.cli.register` and argument parsing."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import numpy as np
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from _query_catalog import f64, giants_mask

from xpengine.catalog import cli
from xpengine.catalog.presets import PRESETS
from xpengine.catalog.query import query_catalog


def run(*argv: str) -> int:
    """Parse like the `xpengine` command does (a subparsers registry) and run."""
    parser = argparse.ArgumentParser(prog="xpengine")
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["query", *argv])
    return args.func(args)


@pytest.fixture(scope="module")
def cat(simulated_catalog):
    return simulated_catalog("clicat", 6000, seed=31)


def test_sql_prints_a_table(cat, capsys):
    d, cols = cat
    assert (
        run(
            str(d),
            "SELECT source_id, logg FROM catalog WHERE logg < $g ORDER BY source_id",
            "-p",
            "g=1.0",
            "--head",
            "4",
        )
        == 0
    )
    out = capsys.readouterr().out.splitlines()
    n = int((f64(cols, "logg") < 1.0).sum())
    assert out[0].split() == ["source_id", "logg"]
    first = np.sort(cols["source_id"][f64(cols, "logg") < 1.0])[:4]
    assert [int(line.split()[0]) for line in out[2:6]] == first.tolist()
    assert out[-1] == f"({n:,} rows, first 4 shown)"


def test_count_with_region(cat, capsys):
    d, cols = cat
    assert (
        run(
            str(d),
            "--preset",
            "giants",
            "-p",
            "teff_error_max=none",
            "--region",
            "350",
            "40",
            "-30",
            "30",
            "--count",
            "--stats",
        )
        == 0
    )
    captured = capsys.readouterr()
    glon, glat = f64(cols, "l"), f64(cols, "b")
    m = giants_mask(cols, teff_e=None) & ((glon >= 350) | (glon <= 40)) & (glat >= -30) & (glat <= 30)
    assert int(captured.out.strip()) == int(m.sum())
    assert "files 3/3" in captured.err or "files 2/3" in captured.err
    assert "row groups" in captured.err


def test_picture_preset_writes_png_and_csv(cat, tmp_path, capsys):
    d, _ = cat
    png, csv = tmp_path / "amr.png", tmp_path / "amr.csv"
    argv = [
        str(d),
        "--preset",
        "age-metallicity",
        "-p",
        "m_h_step=0.4",
        "-p",
        "m_h_max=0.7",
        "-p",
        "m_h_min=-2.5",
        "--plot",
        str(png),
        "--output",
        str(csv),
    ]
    assert run(*argv) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    got = pacsv.read_csv(csv)
    ref = query_catalog(d, preset="age-metallicity", params={"m_h_step": 0.4})
    assert got.column("n").to_pylist() == ref.column("n").to_pylist()
    np.testing.assert_allclose(
        got.column("median_age").to_numpy(), ref.column("median_age").to_numpy(), rtol=1e-12
    )
    # existing files are not replaced without --overwrite
    assert run(*argv) == 2
    assert "exists; pass overwrite (--overwrite)" in capsys.readouterr().err
    assert run(*argv, "--overwrite") == 0


@pytest.mark.parametrize("preset", ["age-map", "mass-age"])
def test_other_pictures(cat, tmp_path, preset):
    d, _ = cat
    png = tmp_path / f"{preset}.png"
    extra = ["-p", "grid=healpix", "-p", "level=3"] if preset == "age-map" else []
    assert run(str(d), "--preset", preset, *extra, "--plot", str(png), "--head", "2") == 0
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_rows_to_parquet_with_units(cat, tmp_path, capsys):
    d, _ = cat
    out = tmp_path / "rc.parquet"
    # this catalogue has no E(B−V) column: the red clump on Teff, logg and [M/H] alone
    assert run(str(d), "--preset", "red-clump", "-p", "mg0_min=none", "--output", str(out)) == 0
    t = pq.read_table(out)
    ref = query_catalog(d, preset="red-clump", params={"mg0_min": None})
    assert sorted(t.column("source_id").to_pylist()) == sorted(ref.column("source_id").to_pylist())
    units = json.loads(t.schema.metadata[b"xpengine.units"])
    assert units["teff"] == "K" and units["age"] == "Gyr"
    assert f"{t.num_rows:,} rows → {out}" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["SELECT nope FROM catalog"], 'Referenced column "nope" not found'),
        (["--preset", "giants", "-p", "logg_max=abc"], "'logg_max' must be a float, got 'abc'"),
        (["--preset", "giants", "-p", "logg_max"], "--param must look like NAME=VALUE"),
        (["--preset", "giants", "--plot", "x.png"], "--plot needs a picture preset"),
        (["--preset", "nope"], "unknown preset 'nope'"),
        (["SELECT 1", "--preset", "giants"], "exactly one of them"),
        (["SELECT 1", "--join", "x"], "--join must look like NAME=VALUE"),
        (["SELECT 1", "--hpx8-range", "5", "1"], "hpx8_range must satisfy"),
    ],
)
def test_errors_exit_2_with_message(cat, capsys, argv, message):
    d, _ = cat
    assert run(str(d), *argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("xpengine query: error: ")
    assert message in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "argv",
    [
        ["--preset", "giants", "-p", "logg_max=3", "--param", "logg_max=2"],
        ["SELECT count(*) AS n FROM catalog WHERE logg < $x", "-p", "x=3", "-p", "x = 2"],
    ],
)
def test_a_param_given_twice_is_refused_naming_both_values(cat, tmp_path, capsys, argv):
    """Not the last one silently: exit 2, the parameter and both values named, nothing written."""
    d, _ = cat
    out = tmp_path / "rows.csv"
    assert run(str(d), *argv, "--output", str(out)) == 2
    err = capsys.readouterr().err
    name = "logg_max" if "--preset" in argv else "x"
    assert f"xpengine query: error: --param '{name}' is given twice ('3' and '2')" in err
    assert "Traceback" not in err and not out.exists()


def test_missing_catalogue_exits_2(capsys, tmp_path):
    assert run(str(tmp_path / "nope"), "SELECT 1") == 2
    assert f"'{tmp_path / 'nope'}' does not exist" in capsys.readouterr().err


def test_list_presets_and_show_sql(cat, capsys):
    d, _ = cat
    assert run("--list-presets") == 0
    out = capsys.readouterr().out
    for name in PRESETS:
        assert f"\n{name}: " in "\n" + out
    assert "logg_max = 3.5 dex" in out
    assert run(str(d), "--preset", "giants", "--show-sql", "-p", "logg_max=3") == 0
    sql = capsys.readouterr().out
    assert "FROM catalog" in sql and "logg < 3.0::DOUBLE" in sql


def test_command_line_process_has_no_traceback(cat):
    d, _ = cat
    proc = subprocess.run(
        [sys.executable, "-m", "xpengine.catalog.cli", str(d), "SELECT FROM WHERE"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "xpengine query: error: SQL error: Parser Error" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_wired_into_the_xpengine_command(cat, monkeypatch, capsys):
    """Through `xpengine.cli.main` once the module is in its registry (the lead adds it there)."""
    import xpengine.cli as top

    if "xpengine.catalog.cli" not in top._COMMAND_MODULES:
        monkeypatch.setattr(top, "_COMMAND_MODULES", (*top._COMMAND_MODULES, "xpengine.catalog.cli"))
    d, cols = cat
    assert top.main(["query", str(d), "SELECT count(*) AS n FROM catalog WHERE flags = 0"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert int(out[2]) == int((cols["flags"] == 0).sum())
    assert top.main(["query", str(d), "SELECT * FROM nowhere"]) == 2


def test_count_takes_what_the_query_takes(cat, capsys):
    """`--count` counts the statement itself: a trailing `;` or `-- comment` works as without --count."""
    d, cols = cat
    n = int((f64(cols, "logg") < 2.0).sum())
    for sql in (
        "select * from catalog where logg < 2;",
        "select * from catalog where logg < 2 -- giants",
        "select * from catalog where logg < 2; -- giants",
        "select * from catalog where logg < 2 ;\n-- giants\n/* and more */ ;",
        "select * from catalog -- all\nwhere logg < 2",
    ):
        assert run(str(d), sql, "--count") == 0
        assert int(capsys.readouterr().out.strip()) == n


def test_a_plain_query_logs_nothing_and_a_pruned_one_says_how_many_files(cat, tmp_path):
    """stderr holds the answer's business only: the catalogue's file count is said where the sky filter
    left files out (a user's check that the filter did what was meant), and under -v otherwise."""
    d, cols = cat
    cmd = [sys.executable, "-m", "xpengine.cli", "query", str(d), "SELECT count(*) AS n FROM catalog"]
    plain = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert plain.returncode == 0 and plain.stderr == "", plain.stderr
    hpx = (np.asarray(cols["source_id"], dtype=np.int64) >> 43).min()
    pruned = subprocess.run(
        [*cmd, "--hpx8-range", str(hpx), str(hpx)], capture_output=True, text=True, timeout=120
    )
    files = len(list(d.glob("*.parquet")))
    assert pruned.returncode == 0 and f" of {files} file(s)" in pruned.stderr, pruned.stderr
    verbose = subprocess.run([*cmd[:3], "-v", *cmd[3:]], capture_output=True, text=True, timeout=120)
    assert f": {files} of {files} file(s)" in verbose.stderr, verbose.stderr


def test_an_ecsv_result_gives_astropy_units_and_a_csv_says_it_has_none(cat, tmp_path, capsys):
    """A review (session 33) found the README promising units in a CSV result: a .csv holds a header row
    only; an .ecsv carries astropy's header (units, descriptions, provenance), booleans as 0/1."""
    from astropy import units as u
    from astropy.table import Table

    d, _ = cat
    sql = "SELECT source_id, teff, mass, age, teff > 4500 AS warm, 'a,b' AS note FROM catalog ORDER BY source_id"
    assert run(str(d), sql, "--output", str(tmp_path / "rows.ecsv")) == 0
    assert run(str(d), sql, "--output", str(tmp_path / "rows.parquet")) == 0
    t = Table.read(tmp_path / "rows.ecsv")
    ref = Table.read(tmp_path / "rows.parquet")
    assert t["teff"].unit == u.K and t["mass"].unit == u.solMass and t["age"].unit == u.Gyr
    assert t["teff"].description == "effective temperature: the model's mean"
    assert t.meta["xpengine.units"]["teff"] == "K" and t.meta["xpengine.model"] == "test"
    assert t["warm"].dtype == bool and list(t["warm"]) == list(ref["warm"]) and set(t["note"]) == {"a,b"}
    assert len(t) == len(ref) and np.array_equal(t["source_id"], ref["source_id"])
    np.testing.assert_allclose(np.asarray(t["teff"]), np.asarray(ref["teff"]), rtol=1e-6)
    # a one-column result's nulls (pyarrow's empty field alone on its line, a blank line astropy skipped:
    # review of session 33), and types astropy's header cannot name (a date, a decimal: written as text)
    one = "SELECT CASE WHEN teff > 4500 THEN source_id END AS sid FROM catalog ORDER BY source_id"
    other = (
        "SELECT DATE '2024-01-01' AS day, 1.25::DECIMAL(10, 2) AS price, NULL AS nothing FROM catalog LIMIT 3"
    )
    for name, query in (("one", one), ("other", other)):
        assert run(str(d), query, "--output", str(tmp_path / f"{name}.ecsv")) == 0
        assert run(str(d), query, "--output", str(tmp_path / f"{name}.parquet")) == 0
    t, ref = Table.read(tmp_path / "one.ecsv"), pq.read_table(tmp_path / "one.parquet")
    assert len(t) == ref.num_rows and ref["sid"].null_count > 0
    assert list(t["sid"].filled(0)) == [v or 0 for v in ref["sid"].to_pylist()]
    t = Table.read(tmp_path / "other.ecsv")
    assert (
        list(t["day"]) == ["2024-01-01"] * 3 and list(t["price"]) == ["1.25"] * 3 and t["nothing"].mask.all()
    )
    assert run(str(d), sql, "--output", str(tmp_path / "rows.txt")) == 2
    assert "must end in .parquet, .csv or .ecsv" in capsys.readouterr().err


def test_red_clump_says_why_a_catalogue_without_parallax_distances_gives_none(tmp_path, caplog):
    """A catalogue without one parallax distance gave the red-clump preset's 0 rows without a word
    (review of session 33); a warning now names the missing flag and the way to go without the cut."""
    import logging

    import pyarrow as pa
    import pyarrow.compute as pc
    from _query_catalog import LABELS, simulate, write_catalog

    from xpengine.features import SourceFlag

    labels = (*LABELS, "ebv")
    d = tmp_path / "with_ebv"
    write_catalog(d, simulate(3000, seed=6, labels=labels), labels=labels)
    bit = int(SourceFlag.DISTANCE_FROM_PARALLAX)
    copies = {}
    for name, op in (("plx", pc.bit_wise_or), ("noplx", pc.bit_wise_and)):
        copies[name] = tmp_path / name
        copies[name].mkdir()
        for f in sorted(d.glob("*.parquet")):
            t = pq.read_table(f)
            flags = op(t["flags"], pa.scalar(bit if name == "plx" else ~bit, t["flags"].type))
            pq.write_table(
                t.set_column(t.schema.get_field_index("flags"), "flags", flags), copies[name] / f.name
            )
    with caplog.at_level(logging.WARNING, logger="xpengine.catalog.presets"):
        query_catalog(str(copies["plx"]), preset="red-clump")  # rows with a parallax distance: no warning
        assert not [r for r in caplog.records if "parallax distance" in r.getMessage()]
        assert query_catalog(str(copies["noplx"]), preset="red-clump").num_rows == 0
    (rec,) = [r for r in caplog.records if "parallax distance" in r.getMessage()]
    assert "DISTANCE_FROM_PARALLAX" in rec.getMessage() and "mg0_min=none" in rec.getMessage()
