"""Sampled XP spectra as input (issue 15 item 2): archive XP_SAMPLED (one row per wavelength) and the
one-row-per-source arrays of the archive and of GaiaXPy `calibrate`, read into the engine's XP
representation (`xpengine.io.xp_sampled`) and predicted on like continuous coefficients.

Real data (tests/data/PROVENANCE.md): the archive's XP_SAMPLED and XP_CONTINUOUS of Gaia DR3
5937083312263887616 in csv/ecsv/fits/xml, GaiaXPy's XP_SAMPLED_RAW format samples, GaiaXPy's golden
`calibrate` output with the one DR3 source without BP, and 18 Sco. GaiaXPy `calibrate` itself makes the
GaiaXPy-style inputs (default and custom wavelength grids) in a temporary folder.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from _paths import CALIBRATE_DIR, SCO18, STAR, STAR_CONTINUOUS, STAR_SAMPLED, XP_DIR

from xpengine._gaiaxpy import import_gaiaxpy
from xpengine.features import PAPER_VOCABULARY, SourceFlag, build_tokens
from xpengine.io import (
    GaiaFileError,
    iter_xp_continuous,
    iter_xp_sampled,
    read_xp_continuous,
    read_xp_sampled,
)
from xpengine.io.schema import META_XP_INPUT, READ_PROBLEM, xp_schema
from xpengine.io.xp_continuous import list_column_to_numpy
from xpengine.spectra.representation import (
    project_coefficients,
    token_representation,
)
from xpengine.spectra.sampled_errors import estimate_representation_errors

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LONG_FILES = [XP_DIR / f"XP_SAMPLED-Gaia_DR3_{STAR}.{ext}" for ext in ("csv", "ecsv", "fits", "xml")]
RAW_FILES = sorted(XP_DIR.glob("XP_SAMPLED_RAW_*"))
GRID = np.arange(336.0, 1020.1, 2.0)  # (343,) nm, GaiaXPy's default
LABELS = ("teff", "logg", "m_h")


def _coef(t: pa.Table) -> np.ndarray:
    """(N, 110) bp' then rp' (NaN for a missing band)."""
    return np.concatenate(
        [list_column_to_numpy(t.column(f"{b}_coefficients"), width=55) for b in ("bp", "rp")], axis=1
    )


def _with_relevancy(t: pa.Table, bp: list, rp: list) -> pa.Table:
    """The table with X_n_relevant_bases replaced (None = no truncation)."""
    for band, values in (("bp", bp), ("rp", rp)):
        name = f"{band}_n_relevant_bases"
        t = t.set_column(t.schema.get_field_index(name), name, pa.array(values, pa.int16()))
    return t


def _sigma_differences(a: pd.DataFrame, b: pd.DataFrame) -> dict[str, float]:
    """|a − b| in units of b's predicted σ, per label (one star)."""
    return {k: float(abs(a[k].iloc[0] - b[k].iloc[0]) / b[f"{k}_error"].iloc[0]) for k in LABELS}


def _calibrate(source, **kwargs):
    return import_gaiaxpy("gaiaxpy").calibrate(source, **kwargs)


@pytest.fixture(scope="module")
def predictor():
    from xpengine.inference.predictor import Predictor

    return Predictor.load("apogee-xp", device="cpu")


@pytest.fixture(scope="module")
def star_long() -> pa.Table:
    return read_xp_sampled(STAR_SAMPLED)


@pytest.fixture(scope="module")
def gaiaxpy_star(tmp_path_factory):
    """GaiaXPy `calibrate` of the star's XP_CONTINUOUS (default grid, no truncation) saved in each of
    its formats, plus two custom grids: {name: path} and the in-memory (DataFrame, sampling)."""
    out = tmp_path_factory.mktemp("gaiaxpy")
    paths = {}
    for fmt in ("csv", "ecsv", "fits", "xml"):
        _calibrate(str(STAR_CONTINUOUS), output_path=str(out), output_file=f"cal_{fmt}", output_format=fmt)
        paths[fmt] = out / f"cal_{fmt}.{fmt}"
    # another grid: 330 points 340-998 nm; and one with exactly 343 points but other wavelengths
    for name, grid in (
        ("coarse", np.arange(340.0, 1000.0, 2.0)),
        ("stretched", np.linspace(330.0, 1050.0, 343)),
    ):
        for fmt in ("csv", "ecsv"):
            _calibrate(
                str(STAR_CONTINUOUS), sampling=grid, output_path=str(out), output_file=f"{name}_{fmt}", output_format=fmt
            )  # fmt: skip
            paths[f"{name}_{fmt}"] = out / f"{name}_{fmt}.{fmt}"
    df, sampling = _calibrate(str(STAR_CONTINUOUS), save_file=False)
    return paths, df, sampling


# --------------------------------------------------------------------------------------------------
# layouts and formats


def test_long_layout_every_format_gives_one_table():
    """The archive's XP_SAMPLED in csv (source_id column), ecsv, fits and xml (source_id in the file
    metadata): identical tables, the continuous reader's schema, marked as sampled."""
    tables = [read_xp_sampled(p) for p in LONG_FILES]
    ref = tables[0]
    assert ref.schema.equals(xp_schema(), check_metadata=False)
    assert ref.num_rows == 1 and ref.column("source_id").to_pylist() == [STAR]
    assert ref.column("solution_id").to_pylist() == [4545469030156206081]
    assert ref.column(READ_PROBLEM).null_count == 1
    for t, p in zip(tables[1:], LONG_FILES[1:], strict=True):
        assert t.equals(ref), p.name
        assert json.loads(t.schema.metadata[META_XP_INPUT])["format"] in ("ecsv", "fits", "votable")
    meta = json.loads(ref.schema.metadata[META_XP_INPUT])
    assert (
        meta["kind"] == "sampled"
        and meta["layout"] == "long"
        and meta["representation"] == "svd-proj-1e-5-v1"
    )
    assert json.loads(ref.schema.metadata[b"xpengine.n_coefficients"]) == {"bp": [55], "rp": [55]}
    # what only a continuous file has is null: relevancy, correlations, fit statistics
    for band in ("bp", "rp"):
        assert ref.column(f"{band}_n_parameters").to_pylist() == [55]
        for name in ("n_relevant_bases", "chi_squared", "standard_deviation", "basis_function_id"):
            assert ref.column(f"{band}_{name}").null_count == 1
    with_corr = read_xp_sampled(LONG_FILES[2], with_correlations=True)
    assert with_corr.column("bp_coefficient_correlations").null_count == 1
    # the coefficients are the projection of the flux, the errors the estimated noise level
    raw = pd.read_csv(STAR_SAMPLED)
    be, re_ = estimate_representation_errors(raw["flux_error"].to_numpy(np.float32).astype(np.float64)[None])
    got = np.concatenate(
        [list_column_to_numpy(ref.column(f"{b}_coefficient_errors")) for b in ("bp", "rp")], 1
    )
    np.testing.assert_allclose(got, np.concatenate([be, re_], 1), rtol=1e-6)


def test_the_continuous_entry_points_route_a_sampled_file():
    """`read_xp_continuous` / `iter_xp_continuous` (the job's partition reader) recognise the columns."""
    via_continuous = read_xp_continuous(STAR_SAMPLED)
    assert via_continuous.equals(read_xp_sampled(STAR_SAMPLED))
    assert json.loads(via_continuous.schema.metadata[META_XP_INPUT])["kind"] == "sampled"
    batches = list(iter_xp_continuous(LONG_FILES[1], batch_rows=1))
    assert [b.num_rows for b in batches] == [1] and META_XP_INPUT in batches[0].schema.metadata
    assert META_XP_INPUT not in read_xp_continuous(STAR_CONTINUOUS).schema.metadata


def test_archive_array_layout_every_format_gives_one_table():
    """The archive's one-row-per-source files (GaiaXPy's XP_SAMPLED_RAW samples: csv tuples, ecsv JSON,
    fits PE(343), VOTable BINARY2 and TABLEDATA) give the same two sources."""
    assert len(RAW_FILES) == 5
    tables = [read_xp_sampled(p) for p in RAW_FILES]
    for t, p in zip(tables, RAW_FILES, strict=True):
        assert t.column("source_id").to_pylist() == [6, 4], p.name
        assert t.column(READ_PROBLEM).null_count == 2, p.name
        # solution_id differs in the files themselves (0 in the fits and xml)
        assert t.drop_columns(["solution_id"]).equals(tables[0].drop_columns(["solution_id"])), p.name


def test_array_layout_gives_the_same_as_the_long_one(tmp_path, star_long):
    """The star's XP_SAMPLED turned into one row with flux arrays, as files (ecsv, fits, VOTable written
    by astropy, with units) and in memory (pandas, astropy, pyarrow, dict): the same table."""
    from astropy.table import Table

    raw = pd.read_csv(STAR_SAMPLED)
    flux = raw["flux"].to_numpy()[None]
    err = raw["flux_error"].to_numpy()[None]
    t = Table({"source_id": [STAR], "solution_id": [4545469030156206081], "flux": flux, "flux_error": err})
    t["flux"].unit = t["flux_error"].unit = "W / (m2 nm)"
    inputs = {}
    for ext, fmt in (("ecsv", "ascii.ecsv"), ("fits", "fits"), ("xml", "votable")):
        t.write(tmp_path / f"array.{ext}", format=fmt)
        inputs[ext] = tmp_path / f"array.{ext}"
    inputs["astropy"] = t
    inputs["pandas"] = pd.DataFrame({"source_id": [STAR], "solution_id": [4545469030156206081],
                                     "flux": list(flux), "flux_error": list(err)})  # fmt: skip
    inputs["pyarrow"] = pa.table({"source_id": [STAR], "solution_id": [4545469030156206081],
                                  "flux": [flux[0]], "flux_error": [err[0]]})  # fmt: skip
    inputs["dict"] = {"source_id": np.array([STAR]), "solution_id": np.array([4545469030156206081]),
                      "flux": flux, "flux_error": err}  # fmt: skip
    for name, src in inputs.items():
        got = read_xp_sampled(src)
        assert got.equals(star_long), name
        assert json.loads(got.schema.metadata[META_XP_INPUT])["layout"] == "array", name


def test_gaiaxpy_calibrate_output_every_format(gaiaxpy_star, star_long):
    """GaiaXPy `calibrate` output (csv + `_sampling.csv`, ecsv/fits/xml with the grid in the metadata,
    and the DataFrame with the sampling it returns) gives one table, within 1e-4 of the archive's own
    sampled spectrum (DPAC sampled it with more precise matrices; both project to the same c')."""
    paths, df, sampling = gaiaxpy_star
    assert np.allclose(sampling, GRID)
    ref = read_xp_sampled(df, sampling=sampling)
    assert ref.column("source_id").to_pylist() == [STAR] and ref.column("solution_id").null_count == 1
    for fmt in ("csv", "ecsv", "fits", "xml"):
        got = read_xp_sampled(paths[fmt])
        assert got.equals(ref), fmt
    a, b = _coef(ref)[0], _coef(star_long)[0]
    assert np.linalg.norm(a - b) / np.linalg.norm(b) < 1e-4


def test_token_path_leaves_sampled_coefficients_unchanged(star_long):
    """P is idempotent: the token path's projection (token_representation) of c' is c' itself."""
    c = _coef(star_long)
    pb, pr = project_coefficients(c[:, :55], c[:, 55:])
    assert np.max(np.abs(np.concatenate([pb, pr], 1) - c)) <= 1e-12 * np.max(np.abs(c))
    tok = build_tokens(star_long, PAPER_VOCABULARY, representation=token_representation())
    untouched = build_tokens(star_long, PAPER_VOCABULARY, representation=None)
    idx = PAPER_VOCABULARY.indices([f"bp{i}" for i in range(55)] + [f"rp{i}" for i in range(55)])
    np.testing.assert_allclose(tok.values[:, idx], untouched.values[:, idx], rtol=1e-6)
    assert not tok.flags[0] & int(SourceFlag.READ_PROBLEM | SourceFlag.NO_BP | SourceFlag.NO_RP)


# --------------------------------------------------------------------------------------------------
# predictions: sampled against continuous


def test_star_sampled_and_continuous_predictions_agree(predictor, star_long):
    """Gaia DR3 5937083312263887616 with apogee-xp: its archive XP_SAMPLED against its XP_CONTINUOUS,
    both on XP alone (G and BP−RP from XP).

    Like for like: a sampled spectrum has no `n_relevant_bases` (its projection keeps every
    coefficient), while the continuous path masks the coefficients beyond them (BP 22, RP 12 here;
    the model reads bp/rp 0-29), which alone moves [M/H] by 0.40σ, logg by 0.22σ. So the two are
    compared under the same relevancy rule, both ways: (a) the continuous file with its truncation
    switched off (what the sampled path does), (b) the continuous file's n_relevant_bases applied to
    the sampled rows too (what the continuous path does). Measured: (a) |Δ| = 0.0035σ (Teff),
    0.0005σ (logg), 0.0058σ ([M/H]); (b) 0.0015σ, 0.0005σ, 0.0044σ.
    """
    cont = read_xp_continuous(STAR_CONTINUOUS)
    assert cont.column("bp_n_relevant_bases").to_pylist() == [22]
    assert cont.column("rp_n_relevant_bases").to_pylist() == [12]
    sampled = predictor.from_xp(star_long)
    untruncated = predictor.from_xp(_with_relevancy(cont, [None], [None]))
    a = _sigma_differences(sampled, untruncated)
    b = _sigma_differences(predictor.from_xp(_with_relevancy(star_long, [22], [12])), predictor.from_xp(cont))
    logging.getLogger(__name__).info("XP_SAMPLED vs XP_CONTINUOUS in σ: (a) %s (b) %s", a, b)
    assert max(a.values()) < 0.1 and max(b.values()) < 0.1, (a, b)
    assert sampled["flag_names"].iloc[0] == untruncated["flag_names"].iloc[0]
    assert "G_FROM_XP" in sampled["flag_names"].iloc[0] and np.isfinite(sampled["teff"].iloc[0])
    # a sampled spectrum has no relevancy counts: flagged, as every order is kept; the archive row is not
    assert "NO_RELEVANCY" in sampled["flag_names"].iloc[0]
    assert "NO_RELEVANCY" not in predictor.from_xp(cont)["flag_names"].iloc[0]
    # the archive's ECSV read by astropy (source_id in its meta): the same, through from_xp's long layout
    from astropy.table import Table

    via_astropy = predictor.from_xp(Table.read(LONG_FILES[1], format="ascii.ecsv"))
    assert via_astropy["source_id"].tolist() == [STAR]
    np.testing.assert_allclose(
        via_astropy[list(LABELS)].to_numpy(), sampled[list(LABELS)].to_numpy(), rtol=1e-6
    )


def test_18sco_gaiaxpy_calibrate_agrees_with_its_coefficients(predictor):
    """18 Sco: GaiaXPy `calibrate` of its continuous coefficients (DataFrame in, DataFrame and sampling
    out), fed to from_xp, against the coefficients themselves. The file has no n_relevant_bases, so
    neither path truncates. With the file's G on both sides: |Δ| < 1e-3σ. On XP alone: 0.04σ (Teff),
    the synthetic G and BP−RP coming from c' on the sampled side (1.1 mmag fainter in G than from the
    archive coefficients, see the report) and from the raw coefficients on the continuous side."""
    xp = read_xp_continuous(SCO18, with_correlations=True)
    assert xp.column("bp_n_relevant_bases").null_count == 1
    g = pd.read_csv(SCO18, usecols=["phot_g_mean_mag"])["phot_g_mean_mag"].to_numpy()
    data = {"source_id": xp.column("source_id").to_numpy()}
    for band in ("bp", "rp"):
        data[f"{band}_n_parameters"] = [55]
        data[f"{band}_standard_deviation"] = [1.0]  # GaiaXPy divides the errors by it and multiplies back
        for key in ("coefficients", "coefficient_errors", "coefficient_correlations"):
            data[f"{band}_{key}"] = list(list_column_to_numpy(xp.column(f"{band}_{key}")))
    spectra, sampling = _calibrate(pd.DataFrame(data), save_file=False)
    assert len(spectra["flux"].iloc[0]) == 343 and np.allclose(sampling, GRID)
    with_g = spectra.assign(phot_g_mean_mag=g)  # extra columns of the array layout go along
    d_g = _sigma_differences(
        predictor.from_xp(with_g, sampling=sampling), predictor.from_xp(xp.append_column("phot_g_mean_mag", pa.array(g)))
    )  # fmt: skip
    d_xp = _sigma_differences(predictor.from_xp(spectra, sampling=sampling), predictor.from_xp(xp))
    logging.getLogger(__name__).info("18 Sco sampled vs continuous in σ: with G %s, XP alone %s", d_g, d_xp)
    assert max(d_g.values()) < 1e-2, d_g
    assert max(d_xp.values()) < 0.1, d_xp


# --------------------------------------------------------------------------------------------------
# bad inputs: clear errors, or the row kept with read_problem


def test_another_wavelength_grid_is_refused_naming_file_and_column(gaiaxpy_star):
    """GaiaXPy `calibrate` with a custom sampling: the grid the file declares (ECSV meta, the CSV's
    `_sampling.csv` beside it) is not the representation's, so the whole file is refused, the message
    naming the file, the column and the grid found; 343 points on other wavelengths too."""
    paths, df, _ = gaiaxpy_star
    for key, found in (
        ("coarse", "330 wavelengths 340–998 nm every 2 nm"),
        ("stretched", "343 wavelengths 330–1050 nm"),
    ):
        for fmt in ("csv", "ecsv"):
            path = paths[f"{key}_{fmt}"]
            with pytest.raises(GaiaFileError, match="not on the grid") as err:
                read_xp_continuous(path)
            assert err.value.source == str(path) and err.value.column == "flux"
            assert found in str(err.value) and str(path) in str(err.value)
            assert "336–1020 nm every 2 nm" in str(err.value)
    with pytest.raises(GaiaFileError, match="the sampling argument"):
        read_xp_sampled(df, sampling=np.arange(340.0, 1000.0, 2.0))
    # arrays of another length without a declared grid: that row kept, read_problem says so
    short = pd.DataFrame({"source_id": [1, STAR], "flux": [df["flux"].iloc[0][:330], df["flux"].iloc[0]],
                          "flux_error": [df["flux_error"].iloc[0][:330], df["flux_error"].iloc[0]]})  # fmt: skip
    t = read_xp_sampled(short)
    texts = t.column(READ_PROBLEM).to_pylist()
    assert "flux: expected 343 values" in texts[0] and "got 330" in texts[0] and "(data row 1)" in texts[0]
    assert texts[1] is None and t.column("bp_coefficients").null_count == 1


def _long_csv(path, sources: list[tuple[int, pd.DataFrame]]) -> None:
    pd.concat([d.assign(source_id=sid) for sid, d in sources]).to_csv(path, index=False)


def test_long_layout_grid_and_nan_problems_keep_the_rows(tmp_path, star_long, caplog):
    """One row per wavelength, four sources: the star, a copy 1 nm off the grid, one with a NaN pixel,
    one without its BP pixels (NaN at 336-634 nm, as GaiaXPy writes a missing band). Every source comes
    out once, in order; the off-grid and NaN ones with XP null and read_problem naming column, wavelength
    and data rows; the missing band is null without a problem; the star is untouched."""
    raw = pd.read_csv(STAR_SAMPLED)
    off = raw.assign(wavelength=raw["wavelength"] + 1.0)
    nan = raw.copy()
    nan.loc[nan["wavelength"] == 500.0, "flux"] = np.nan
    no_bp = raw.copy()
    no_bp.loc[no_bp["wavelength"] <= 634.0, ["flux", "flux_error"]] = np.nan
    path = tmp_path / "XP_SAMPLED-four.csv"
    _long_csv(path, [(STAR, raw), (11, off), (12, nan), (13, no_bp)])
    with caplog.at_level(logging.WARNING, logger="xpengine.io.xp_sampled"):
        t = read_xp_continuous(path)
    assert t.column("source_id").to_pylist() == [STAR, 11, 12, 13]
    texts = t.column(READ_PROBLEM).to_pylist()
    assert texts[0] is None and texts[3] is None
    assert texts[1].startswith("wavelength: 337.0 nm (data row 344) is not on the grid")
    assert "(source_id 11, data rows 344-686)" in texts[1]
    assert (
        texts[2].startswith("flux: NaN at 500 nm (1 of 343 pixels not finite)")
        and "data rows 687-1029" in texts[2]
    )
    assert str(path) in caplog.text and "2 sampled spectrum/spectra with read problems" in caplog.text
    assert t.column("bp_coefficients").is_null().to_pylist() == [False, True, True, True]
    assert t.column("rp_coefficients").is_null().to_pylist() == [False, True, True, False]
    assert (
        t.slice(0, 1)
        .select(["bp_coefficients", "rp_coefficients"])
        .equals(star_long.select(["bp_coefficients", "rp_coefficients"]))
    )
    tok = build_tokens(t, PAPER_VOCABULARY, representation=token_representation())
    F = SourceFlag
    assert [bool(f & F.READ_PROBLEM) for f in tok.flags] == [False, True, True, False]
    assert bool(tok.flags[3] & F.NO_BP) and not tok.flags[3] & F.NO_RP
    # the same NaN pixel in the array layout: the same problem, with the data row
    arr = pd.DataFrame(
        {"source_id": [12], "flux": [nan["flux"].to_numpy()], "flux_error": [nan["flux_error"].to_numpy()]}
    )
    text = read_xp_sampled(arr).column(READ_PROBLEM)[0].as_py()
    assert text.startswith("flux: NaN at 500 nm") and text.endswith("(data row 1)")


def test_missing_band_from_gaiaxpy_golden_output():
    """GaiaXPy's own `calibrate` output for the DR3 source without BP (5405570973190252288; NaN flux at
    336-634 nm): BP null, RP the single-band projection of its archive RP coefficients, no problem."""
    t = read_xp_sampled(CALIBRATE_DIR / "with_missing_calibrator_solution.csv")
    assert t.column("source_id").to_pylist() == [
        5853498713190525696,
        5405570973190252288,
        5762406957886626816,
    ]
    assert t.column(READ_PROBLEM).null_count == 3
    assert t.column("bp_coefficients").is_null().to_pylist() == [False, True, False]
    assert t.column("bp_n_parameters").to_pylist() == [55, None, 55]
    cont = read_xp_continuous(XP_DIR / "XP_CONTINUOUS_RAW_with_missing_BP.csv")
    c = np.concatenate(
        [list_column_to_numpy(cont.column(f"{b}_coefficients"), width=55) for b in ("bp", "rp")], 1
    )
    pb, pr = project_coefficients(c[:, :55], c[:, 55:])
    ref = np.concatenate([pb, pr], 1)
    got = _coef(t)
    for i in range(3):
        ok = np.isfinite(ref[i])
        assert np.array_equal(ok, np.isfinite(got[i]))
        assert np.linalg.norm(got[i, ok] - ref[i, ok]) / np.linalg.norm(ref[i, ok]) < 1e-5


def test_units_are_read_and_bad_values_are_row_problems(tmp_path, star_long):
    """A declared unit is converted (erg s⁻¹ cm⁻² Å⁻¹ = 0.01 W m⁻² nm⁻¹); e⁻/s (GaiaXPy `convert`) is
    refused naming the column; undeclared values far too large, a missing or negative flux_error and an
    unreadable value are row problems; a long table without a source is refused."""
    from astropy.table import Table

    raw = pd.read_csv(STAR_SAMPLED)
    f, e = raw["flux"].to_numpy(), raw["flux_error"].to_numpy()
    cgs = Table({"source_id": [STAR], "flux": (f * 100.0)[None], "flux_error": (e * 100.0)[None]})
    cgs["flux"].unit = cgs["flux_error"].unit = "erg / (s cm2 Angstrom)"
    # equal up to the float32 rounding of the stored values (amplified by at most 1/threshold = 1e5)
    got, ref = _coef(read_xp_sampled(cgs))[0], _coef(star_long)[0]
    assert np.linalg.norm(got - ref) / np.linalg.norm(ref) < 1e-5
    cgs["flux"].unit = "electron / s"
    with pytest.raises(GaiaFileError, match="GaiaXPy `convert`") as err:
        read_xp_sampled(cgs)
    assert err.value.column == "flux" and "not a spectral flux density" in str(err.value)

    e_neg = e.copy()
    e_neg[10] = -1e-18
    e_nan = e.copy()
    e_nan[20] = np.nan
    bad = pd.DataFrame(
        {"source_id": [1, 2, 3, STAR], "flux": [f * 1e15, f, f, f], "flux_error": [e, e_neg, e_nan, e]}
    )
    texts = read_xp_sampled(bad).column(READ_PROBLEM).to_pylist()
    assert "is beyond ±1e-08 W m-2 nm-1" in texts[0] and "another unit?" in texts[0]
    assert texts[1].startswith("flux_error: negative value -1e-18 at 356 nm")
    assert texts[2].startswith("flux_error: no finite value at 376 nm where flux has one")
    assert texts[3] is None

    lines = STAR_SAMPLED.read_text().splitlines()
    lines[5] = lines[5].replace("3.1290085E-17", "3.12x9E-17")
    (tmp_path / "typo.csv").write_text("\n".join(lines) + "\n")
    t = read_xp_sampled(tmp_path / "typo.csv")
    assert (
        t.column(READ_PROBLEM)[0]
        .as_py()
        .startswith("flux: not a valid double value: '3.12x9E-17' (data row 5)")
    )
    assert t.column("source_id").to_pylist() == [STAR] and t.column("bp_coefficients").null_count == 1

    bare = pa.table({c: pa.array(raw[c].to_numpy()) for c in ("wavelength", "flux", "flux_error")})
    with pytest.raises(GaiaFileError, match="needs its source") as err:
        read_xp_sampled(bare)
    assert err.value.column == "source_id"
    assert (
        read_xp_sampled(bare, source_id=STAR)
        .select(["bp_coefficients", "rp_coefficients"])
        .equals(star_long.select(["bp_coefficients", "rp_coefficients"]))
    )


def test_long_layout_sources_across_reader_batches():
    """Rows of one source split over reader batches (343-row slices, a source of 342 rows shifting the
    boundaries): each source once, in order, the short one with a problem naming the missing row."""
    raw = pd.read_csv(STAR_SAMPLED)
    parts = [
        raw.assign(source_id=1),
        raw[raw["wavelength"] != 700.0].assign(source_id=2),
        raw.assign(source_id=3),
    ]
    table = pa.Table.from_pandas(pd.concat(parts), preserve_index=False)
    out = pa.Table.from_batches(list(iter_xp_sampled(table, batch_rows=1)))
    assert out.column("source_id").to_pylist() == [1, 2, 3]
    texts = out.column(READ_PROBLEM).to_pylist()
    assert texts[0] is None and texts[2] is None
    assert texts[1].startswith("wavelength: no row at 700 nm (1 of 343 grid wavelengths have none)")
    assert "(source_id 2, data rows 344-685)" in texts[1]
    np.testing.assert_array_equal(_coef(out.slice(0, 1)), _coef(out.slice(2, 1)))


# --------------------------------------------------------------------------------------------------
# the catalogue job


@pytest.mark.slow
@pytest.mark.ray
def test_job_on_sampled_files(ray_local, tmp_path):
    """The catalogue job (what `xpengine infer --input FILE` and jobs/infer_gaia.py run) on the archive's
    XP_SAMPLED file and on GaiaXPy's golden `calibrate` CSV output of XP_CONTINUOUS_RAW (two sources):
    every source out once with a finite Teff, logg and [M/H]."""
    import pyarrow.parquet as pq

    from xpengine.pipeline.config import InferenceConfig
    from xpengine.pipeline.ray_job import run_inference

    out = tmp_path / "catalog"
    cfg = InferenceConfig(
        input=[str(STAR_SAMPLED), str(CALIBRATE_DIR / "calibrator_solution_default.csv")],
        model="apogee-xp",
        output=str(out),
        labels=list(LABELS),
        batch_size=64,
        progress_interval_s=0.0,
    )
    summary = run_inference(cfg)
    assert summary.ok, summary.partitions_failed
    cat = pq.read_table(out, columns=["source_id", "teff", "logg", "m_h", "flags"])
    ids = sorted(cat.column("source_id").to_pylist())
    assert ids == sorted([STAR, 5853498713190525696, 5762406957886626816])
    for label in LABELS:
        assert np.all(np.isfinite(cat.column(label).to_numpy())), label
    flags = cat.column("flags").to_numpy()
    assert not np.any(flags & int(SourceFlag.NO_PREDICTION | SourceFlag.READ_PROBLEM))
    assert np.all(flags & int(SourceFlag.G_FROM_XP))
    assert pc.sum(pc.is_nan(cat.column("teff"))).as_py() == 0


def test_a_sampled_spectrum_gives_the_colour_sigma_of_its_coefficients():
    """The synthetic BP−RP of a real star's archive XP_SAMPLED spectrum carries about the σ of its archive
    coefficients (until session 25 the reader's independent-pixel errors made it 0.2–0.6 mag, which
    loosened the isochrone fit's colour bound and moved the fitted mass of a real blue star 2.5-fold)."""
    from xpengine.inference.catalogue import catalogue_batch
    from xpengine.inference.input_tables import xp_input_table
    from xpengine.spectra.representation import token_representation

    def colour(table: pa.Table) -> tuple[float, float]:
        b = catalogue_batch(
            xp_input_table(table, {}), PAPER_VOCABULARY, representation=token_representation()
        )
        k = PAPER_VOCABULARY.names.index("bprp")
        return float(b["values"][0, k]), float(b["errors"][0, k])

    cont = read_xp_continuous(STAR_CONTINUOUS)
    cont = cont.drop_columns(["bp_n_relevant_bases", "rp_n_relevant_bases"])  # every order, as sampled
    c_cont, e_cont = colour(cont)
    c_samp, e_samp = colour(read_xp_sampled(STAR_SAMPLED))
    assert abs(c_samp - c_cont) < 0.002
    assert 0.003 < e_cont < 0.02 and 0.5 * e_cont < e_samp < 2.0 * e_cont


@pytest.mark.parametrize("pattern", ["by_wavelength", "repeated"])
def test_long_layout_rows_of_a_source_must_be_contiguous(tmp_path, pattern):
    """One row per wavelength: a table sorted by wavelength (sources interleaved), or a source written
    again after another, is refused naming the source and the data row where it starts again (until
    session 25 the last source came out as two rows with false read problems, or a source twice)."""
    raw = pd.read_csv(LONG_FILES[0])
    stars = []
    for k in range(3):
        r = raw.copy()
        r["source_id"] = STAR + k
        stars.append(r)
    if pattern == "by_wavelength":
        table = pd.concat(stars).sort_values(["wavelength", "source_id"], kind="stable")
        again, row = STAR, 4  # rows 1–3: the three sources at 336 nm
    else:
        table = pd.concat([stars[0], stars[1], stars[0]])
        again, row = STAR, 2 * len(raw) + 1
    path = tmp_path / "long.csv"
    table.to_csv(path, index=False)
    for batch_rows in (1, 1000):  # the repeat within one batch of rows, and across batches
        with pytest.raises(GaiaFileError, match=rf"source_id {again} are not contiguous") as err:
            list(iter_xp_sampled(path, batch_rows=batch_rows))
        assert err.value.row == row and err.value.column == "source_id"
    ok = pd.concat(stars)
    ok.to_csv(path, index=False)
    got = [i for b in iter_xp_sampled(path, batch_rows=1) for i in b.column("source_id").to_pylist()]
    assert got == [STAR, STAR + 1, STAR + 2]


def test_an_astropy_table_read_from_fits_is_big_endian_and_reads_the_same():
    """`Predictor.from_xp(Table.read(XP_SAMPLED.fits))`: FITS columns are big-endian, which Arrow cannot
    take (it raised ArrowNotImplementedError); they are read as the file itself is."""
    from astropy.table import Table

    path = STAR_SAMPLED.with_suffix(".fits")
    table = Table.read(path)
    assert not table["flux"].dtype.isnative
    np.testing.assert_array_equal(_coef(read_xp_sampled(table, source_id=STAR)), _coef(read_xp_sampled(path)))


@pytest.mark.slow
@pytest.mark.ray
def test_from_xp_with_the_files_own_columns_gives_the_jobs_row(ray_local, tmp_path, caplog):
    """The archive's XP_SAMPLED holds ra/dec beside the spectra: the job uses them (the isochrone fit's
    distance prior needs the line of sight), and so does `from_xp` of `read_xp_sampled(with_gaia_source=True)`;
    without it the reader names the columns it leaves out (a review found from_xp 1.80 M☉ against the
    job's 1.96 for this star, the prior silently skipped)."""
    import pyarrow.parquet as pq

    from xpengine.inference.predictor import Predictor
    from xpengine.pipeline.config import InferenceConfig
    from xpengine.pipeline.ray_job import run_inference

    with caplog.at_level(logging.WARNING, logger="xpengine.io.xp_continuous"):
        plain = read_xp_sampled(STAR_SAMPLED)
    assert "ra" not in plain.column_names
    assert any("read_xp_sampled(..., with_gaia_source=True)" in r.getMessage() for r in caplog.records)
    own = read_xp_sampled(STAR_SAMPLED, with_gaia_source=True)
    assert {"ra", "dec"} <= set(own.column_names)
    labels = ["teff", "logg", "m_h", "mass", "age"]
    cfg = InferenceConfig(
        input=[str(STAR_SAMPLED)], model="gaia-xp", output=str(tmp_path / "cat"), labels=labels,
        progress_interval_s=0.0,
    )  # fmt: skip
    assert run_inference(cfg).ok
    job = pq.read_table(tmp_path / "cat").to_pylist()[0]
    got = Predictor.load("gaia-xp").from_xp(own, labels=labels).iloc[0]
    for k in labels:
        assert got[k] == pytest.approx(job[k], rel=1e-4), k
    assert int(got["flags"]) == job["flags"]


def test_a_spectrum_on_another_grid_of_the_same_length_is_a_row_problem(tmp_path):
    """Review of session 32: GaiaXPy's output on a 335–1019 nm grid, 343 pixels like the default, read
    without its sampling file, was taken as 336–1020 nm (Proxima came out a 1 M☉ star at 1 kpc). The XP
    basis reproduces a Gaia spectrum on its own grid to its text's rounding, not one 1 nm off: such a row
    is a row problem naming the fraction left unexplained, the others read as before."""
    raw = pd.read_csv(XP_DIR / "XP_SAMPLED_RAW_dr3int6.csv")
    flux = np.stack([np.array(json.loads(f.replace("(", "[").replace(")", "]"))) for f in raw.flux])
    err = np.stack([np.array(json.loads(f.replace("(", "[").replace(")", "]"))) for f in raw.flux_error])
    shifted = np.stack([np.interp(GRID - 1.0, GRID, f) for f in flux])  # the same star, 1 nm off
    table = pd.DataFrame(
        {
            "source_id": [1, 2, 3],
            "flux": [list(flux[0]), list(shifted[0]), list(shifted[1])],
            "flux_error": [list(err[0]), list(err[0]), list(err[1])],
        }
    )
    out = read_xp_sampled(table)
    problems = out.column(READ_PROBLEM).to_pylist()
    assert problems[0] is None and out.column("bp_coefficients")[0].is_valid
    for text in problems[1:]:
        assert text is not None and "is not an XP spectrum on the 336–1020 nm grid" in text
    assert out.column("bp_coefficients").null_count == 2
