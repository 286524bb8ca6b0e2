"""Gaia ids (source_id, solution_id) are int64 values above 2^53 that float64 cannot hold exactly: the
sampled XP readers and the dataset builders refuse floating-point ids (GaiaFileError naming the file and
the column, and the row for text) instead of silently rounding them, and read integer ids exactly."""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _paths import STAR, STAR_SAMPLED

from xpengine.io import GaiaFileError, read_xp_sampled
from xpengine.io._arrays import source_id_numpy

SOL = 375316653866487564  # a Gaia-sized solution_id: float64(SOL) == 375316653866487552
SOL_FLOAT_TEXT = repr(float(SOL))  # '3.7531665386648755e+17'
BIG = 5853498713190525697  # float64 rounds it to 5853498713190525696
N_WL = 343


def _long_csv(tmp_path, solution_text: str):
    """The real XP_SAMPLED csv (one row per wavelength) with every solution_id replaced."""
    lines = STAR_SAMPLED.read_text().splitlines(keepends=True)
    out = [lines[0]]
    for line in lines[1:]:
        sid, _, rest = line.split(",", 2)
        out.append(f"{sid},{solution_text},{rest}")
    path = tmp_path / "sampled_long.csv"
    path.write_text("".join(out))
    return path


def _array_table(solution_id: pa.Array) -> pa.Table:
    flux = np.linspace(1e-17, 2e-17, N_WL)
    return pa.table(
        {
            "source_id": pa.array([STAR], pa.int64()),
            "solution_id": solution_id,
            "flux": pa.array([flux.tolist()], pa.list_(pa.float64())),
            "flux_error": pa.array([(flux * 0.05).tolist()], pa.list_(pa.float64())),
        }
    )


def _array_csv(tmp_path, solution_text: str):
    """One source, one row with flux arrays as quoted JSON (bulk-file style)."""
    flux = np.linspace(1e-17, 2e-17, N_WL)
    arr = lambda a: '"[' + ",".join(f"{v:.8g}" for v in a) + ']"'  # noqa: E731
    path = tmp_path / "sampled_array.csv"
    path.write_text(
        f"source_id,solution_id,flux,flux_error\n{STAR},{solution_text},{arr(flux)},{arr(flux * 0.05)}\n"
    )
    return path


# --------------------------------------------------------------------------------------------------
# sampled XP readers: solution_id


def test_float_text_solution_id_in_long_csv_is_refused(tmp_path):
    path = _long_csv(tmp_path, SOL_FLOAT_TEXT)
    with pytest.raises(GaiaFileError, match=re.escape(f"{path} (row 1, column 'solution_id')")) as info:
        read_xp_sampled(path)
    assert SOL_FLOAT_TEXT in str(info.value) and "2^53" in str(info.value)


def test_float_text_solution_id_in_array_csv_is_refused(tmp_path):
    path = _array_csv(tmp_path, SOL_FLOAT_TEXT)
    with pytest.raises(GaiaFileError, match=re.escape(f"{path} (row 1, column 'solution_id')")):
        read_xp_sampled(path)


@pytest.mark.parametrize("writer", ["csv_long", "csv_array"])
def test_integer_text_solution_id_is_read_exactly(tmp_path, writer):
    path = (_long_csv if writer == "csv_long" else _array_csv)(tmp_path, str(SOL))
    t = read_xp_sampled(path)
    assert t.column("solution_id").to_pylist() == [SOL]
    assert t.column("source_id").to_pylist() == [STAR]


def test_missing_solution_id_stays_unknown(tmp_path):
    t = read_xp_sampled(_array_csv(tmp_path, ""))
    assert t.column("solution_id").to_pylist() == [None] and t.column("source_id").to_pylist() == [STAR]


def test_float_solution_id_column_is_refused_in_memory_and_fits(tmp_path):
    from astropy.table import Table

    table = _array_table(pa.array([float(SOL)], pa.float64()))
    with pytest.raises(GaiaFileError, match=r"column 'solution_id'.*has type double"):
        read_xp_sampled(table)
    path = tmp_path / "sampled.fits"
    Table(
        {
            "source_id": np.array([STAR]),
            "solution_id": np.array([float(SOL)]),
            "flux": np.linspace(1e-17, 2e-17, N_WL)[None, :],
            "flux_error": np.full((1, N_WL), 1e-18),
        }
    ).write(path)
    with pytest.raises(GaiaFileError, match=re.escape(f"{path} (column 'solution_id')")):
        read_xp_sampled(path)
    # the same with int64 ids is read exactly
    assert read_xp_sampled(_array_table(pa.array([SOL], pa.int64()))).column("solution_id").to_pylist() == [
        SOL
    ]


def test_float_solution_id_in_file_metadata_is_refused(tmp_path):
    """Long layout without id columns: the ids come from the metadata (here ECSV `meta`)."""
    from astropy.table import Table

    ref = Table.read(STAR_SAMPLED, format="ascii.csv")
    t = Table({c: ref[c] for c in ("wavelength", "flux", "flux_error")})
    t.meta = {"source_id": STAR, "solution_id": float(SOL)}
    path = tmp_path / "meta.ecsv"
    t.write(path, format="ascii.ecsv")
    with pytest.raises(GaiaFileError, match=re.escape(str(path)) + r".*solution_id.*not an integer"):
        read_xp_sampled(path)
    t.meta = {"source_id": STAR, "solution_id": SOL}
    t.write(path, format="ascii.ecsv", overwrite=True)
    got = read_xp_sampled(path)
    assert got.column("solution_id").to_pylist() == [SOL] and got.column("source_id").to_pylist() == [STAR]


def test_float_source_id_argument_is_refused(tmp_path):
    from astropy.table import Table

    ref = Table.read(STAR_SAMPLED, format="ascii.csv")
    path = tmp_path / "no_ids.ecsv"
    Table({c: ref[c] for c in ("wavelength", "flux", "flux_error")}).write(path, format="ascii.ecsv")
    with pytest.raises(ValueError, match="not an integer"):
        read_xp_sampled(path, source_id=float(STAR))
    assert read_xp_sampled(path, source_id=STAR).column("source_id").to_pylist() == [STAR]


# --------------------------------------------------------------------------------------------------
# numpy-side helper and dataset builders


def test_source_id_numpy():
    ids = np.array([BIG, 1], dtype=">i8")
    got = source_id_numpy(ids, "f.fits", "sid")
    assert got.dtype == np.int64 and got.tolist() == [BIG, 1]
    assert source_id_numpy(pa.chunked_array([[BIG], [2]]), "t").tolist() == [BIG, 2]
    assert source_id_numpy(np.array([str(BIG)]), "t").tolist() == [BIG]
    with pytest.raises(GaiaFileError, match=re.escape("f.fits (column 'sid')") + ".*float64"):
        source_id_numpy(ids.astype(np.float64), "f.fits", "sid")
    with pytest.raises(GaiaFileError, match=re.escape("t (row 2, column 'source_id')")):
        source_id_numpy(pa.array([1, None]), "t")


def test_split_table_refuses_float_ids():
    from xpengine.datasets.splits import split_by_source_id, split_table

    with pytest.raises(ValueError, match=r"source_id must be integers.*float64"):
        split_table(np.array([float(BIG), 1.0]))
    with pytest.raises(ValueError, match="source_id must be integers"):
        split_by_source_id(np.array([float(BIG)]))
    t = split_table(np.array([BIG, 1, BIG], dtype=np.int64))
    assert t.column("source_id").to_pylist() == [1, BIG]


def test_read_default_split_unchanged():
    from importlib import resources

    from xpengine.datasets.splits import DEFAULT_SPLIT_FILE, read_default_split

    sid, split = read_default_split()
    ref = pq.read_table(resources.files("xpengine") / "data" / "splits" / DEFAULT_SPLIT_FILE)
    assert sid.dtype == np.int64 and sid.tolist() == ref.column("source_id").to_pylist()
    assert split.tolist() == ref.column("split").to_pylist()


def _apogee_xp_fits(path, sid: np.ndarray) -> None:
    from astropy.io import fits

    from xpengine.datasets.apogee_xp import REQUIRED_COLUMNS

    n = sid.size
    cols = []
    for name in (*REQUIRED_COLUMNS, "ak_targ"):
        if name == "apogee_id":
            cols.append(fits.Column(name, "18A", array=np.array([f"2M{k:08d}" for k in range(n)])))
        elif name == "gaiaedr3_source_id":
            cols.append(fits.Column(name, "K" if sid.dtype.kind == "i" else "D", array=sid))
        elif name in ("flux", "flux_error"):
            cols.append(fits.Column(name, f"{N_WL}E", array=np.ones((n, N_WL), np.float32)))
        else:
            cols.append(fits.Column(name, "E", array=np.ones(n, np.float32)))
    fits.BinTableHDU.from_columns(cols).writeto(path)


@pytest.mark.parametrize("reader", ["ids", "chunks", "emulator"])
def test_apogee_xp_float_source_id_is_refused(tmp_path, reader):
    from xpengine.datasets.apogee_xp import iter_apogee_xp_chunks, read_apogee_xp_ids
    from xpengine.simulate.emulator_fit import read_apogee_xp

    read = {
        "ids": lambda p: read_apogee_xp_ids(p)[0],
        "chunks": lambda p: next(iter_apogee_xp_chunks(p))["gaiaedr3_source_id"],
        "emulator": lambda p: read_apogee_xp(p)["source_id"],
    }[reader]
    good = tmp_path / "int.fits"
    _apogee_xp_fits(good, np.array([BIG, 2], dtype=np.int64))
    got = read(str(good))
    assert got.dtype == np.int64 and got.tolist() == [BIG, 2]
    bad = tmp_path / "float.fits"
    _apogee_xp_fits(bad, np.array([float(BIG), 2.0]))
    with pytest.raises(GaiaFileError, match=re.escape(str(bad)) + r".*'gaiaedr3_source_id'.*float64"):
        read(str(bad))


def _allstar_cols(sid: np.ndarray) -> dict[str, np.ndarray]:
    n = sid.size
    cols = {"APOGEE_ID": np.array([f"2M{k:08d}" for k in range(n)]), "GAIAEDR3_SOURCE_ID": sid}
    for name in ("TEFF", "TEFF_ERR", "LOGG", "LOGG_ERR", "M_H", "M_H_ERR", "SNR"):
        cols[name] = np.full(n, 100.0)
    for name in ("ASPCAPFLAG", "STARFLAG", "EXTRATARG"):
        cols[name] = np.zeros(n, np.int64)
    return cols


def test_survey_allstar_float_source_id_is_refused():
    from xpengine.datasets.survey import prepare_allstar

    stars, _ = prepare_allstar(_allstar_cols(np.array([BIG, 0], dtype=np.int64)))
    assert stars["source_id"].tolist() == [BIG]
    with pytest.raises(GaiaFileError, match=re.escape("allStar.fits (column 'GAIAEDR3_SOURCE_ID')")):
        prepare_allstar(_allstar_cols(np.array([float(BIG), 0.0])), source="allStar.fits")


def test_synthetic_truth_float_source_id_is_refused(tmp_path):
    from xpengine.datasets.synthetic import truth_columns

    good = tmp_path / "truth.parquet"
    pq.write_table(pa.table({"source_id": pa.array([BIG, 1], pa.int64()), "teff": [5000.0, 6000.0]}), good)
    fn = truth_columns(str(good))["truth_teff"]
    assert fn(np.array([BIG, BIG - 1, 1])).tolist()[::2] == [5000.0, 6000.0]
    assert np.isnan(fn(np.array([BIG - 1]))).all()
    bad = tmp_path / "truth_float.parquet"
    pq.write_table(pa.table({"source_id": pa.array([float(BIG), 1.0]), "teff": [5000.0, 6000.0]}), bad)
    with pytest.raises(GaiaFileError, match=re.escape(str(bad)) + r".*'source_id'.*double"):
        truth_columns(str(bad))
