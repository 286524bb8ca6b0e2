"""APOGEE×XP builder (xpengine.datasets.apogee_xp) on the real dev file and on hand-made FITS files."""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import pytest
from _datasets_real import (
    DEV,
    STAR,
    STAR_CONTINUOUS,
    STAR_G,
    STAR_SAMPLED,
    needs_dev,
    read_archive_csv,
)
from _paths import skip_unless_exists

from xpengine.datasets.apogee_xp import (
    NOMINAL_TMASS_MAG_ERROR,
    build_apogee_xp,
    select_unique_rows,
    tokens_from_sampled,
)
from xpengine.datasets.schema import read_training_set
from xpengine.datasets.xp import archive_xp_columns
from xpengine.features import PAPER_VOCABULARY, build_tokens
from xpengine.spectra import coefficients_to_flux

G_ZP = 25.6873668671


def _col(table, name: str) -> np.ndarray:
    return np.asarray(table.column(name).to_numpy(zero_copy_only=False))


def _xp_matrix(table, band: str) -> np.ndarray:
    return np.stack([_col(table, f"{band}{i}") for i in range(55)], axis=1).astype(np.float64)


@pytest.fixture
def dev_build(apogee_xp_dev_build):
    """The whole dev file, built once per session (conftest)."""
    return apogee_xp_dev_build


_HEAD: dict[str, object] = {}


def _dev_head():
    """The first 300 rows of the dev file as an astropy Table (read once per session)."""
    if "table" not in _HEAD:
        from astropy.io import fits
        from astropy.table import Table

        with fits.open(DEV) as h:
            _HEAD["table"] = Table(h[1].data[:300])
    return _HEAD["table"].copy()


@pytest.fixture(scope="module")
def head_fits(tmp_path_factory) -> str:
    """The first 300 real rows of the dev file as an uncompressed FITS file."""
    skip_unless_exists(DEV)
    path = str(tmp_path_factory.mktemp("apogee_xp") / "head.fits")
    _dev_head().write(path)
    return path


def _small_fits(tmp_path, n: int = 6, edit=None, drop: tuple[str, ...] = ()) -> str:
    """A FITS file in the dev layout made of the first n real rows (optionally edited)."""
    t = _dev_head()[:n]
    if edit is not None:
        t = edit(t)
    for c in drop:
        t.remove_column(c)
    path = str(tmp_path / "small.fits")
    t.write(path, overwrite=True)
    return path


# ---------------------------------------------------------------------------------------------
# the representation: continuous and sampled inputs give the same tokens


def test_continuous_and_sampled_tokens_agree_for_real_star() -> None:
    """Gaia DR3 5937083312263887616: archive continuous through the feature pipeline (build_tokens with
    the engine's representation, as inference does) vs its archive sampled spectrum through the builder."""
    from xpengine.spectra import project_coefficient_errors
    from xpengine.spectra.representation import token_representation

    row = read_archive_csv(STAR_CONTINUOUS)[0]
    sid = np.array([STAR])
    g = np.array([STAR_G])
    raw = {
        k: row[k][None]
        for k in ("bp_coefficients", "rp_coefficients", "bp_coefficient_errors", "rp_coefficient_errors")
    }
    cont = build_tokens(
        {"source_id": sid, "phot_g_mean_mag": g, **raw}, representation=token_representation()
    )
    sp = pd.read_csv(STAR_SAMPLED)
    samp = tokens_from_sampled(sid, sp["flux"].to_numpy()[None], sp["flux_error"].to_numpy()[None], g)
    xi = PAPER_VOCABULARY.indices(PAPER_VOCABULARY.xp_names)
    a = cont.values[0, xi].astype(np.float64)
    s = samp.values[0, xi].astype(np.float64)
    # the XP noise of these tokens: archive errors with the full archive covariance, projected, / f_G
    fg = 10 ** ((G_ZP - STAR_G) / 2.5)
    ebp, erp = project_coefficient_errors(
        raw["bp_coefficient_errors"],
        raw["rp_coefficient_errors"],
        row["bp_coefficient_correlations"][None],
        row["rp_coefficient_correlations"][None],
    )
    sigma = np.r_[ebp[0], erp[0]] / fg
    dz = np.abs(a - s) / sigma
    # measured: relative norm 2.84e-5, max |Δ|/σ 0.130, median 0.0076
    assert np.linalg.norm(a - s) / np.linalg.norm(a) < 5e-5
    assert dz.max() < 0.2
    assert np.median(dz) < 0.02
    # the same star through archive_xp_columns (the survey builder's path) gives the pipeline's values
    cols = archive_xp_columns(
        raw["bp_coefficients"],
        raw["rp_coefficients"],
        raw["bp_coefficient_errors"],
        raw["rp_coefficient_errors"],
        np.array([np.nan]),
        np.array([np.nan]),
    )
    surv = build_tokens({"source_id": sid, "phot_g_mean_mag": g, **cols})
    np.testing.assert_array_equal(surv.values[:, xi], cont.values[:, xi])
    # without a gaia_source colour both fill BP−RP from the XP (BP_RP_FROM_XP), each from the coefficients
    # it was given: the raw archive ones, or the builder's represented ones (0.3 mmag apart here)
    c = PAPER_VOCABULARY.index("bprp")
    assert abs(float(surv.values[0, c]) - float(cont.values[0, c])) < 1e-3
    # and both differ from the raw archive coefficients / f_G by many sigma at high order: the reason
    # for the representation
    raw_norm = np.r_[row["bp_coefficients"], row["rp_coefficients"]] / fg
    assert np.max(np.abs(raw_norm - a) / sigma) > 10


def test_archive_relevancy_masks_only_the_continuous_path() -> None:
    """With the archive's n_relevant_bases (22 BP, 12 RP) the continuous tokens beyond are NaN."""
    row = read_archive_csv(STAR_CONTINUOUS)[0]
    cols = archive_xp_columns(
        row["bp_coefficients"][None],
        row["rp_coefficients"][None],
        row["bp_coefficient_errors"][None],
        row["rp_coefficient_errors"][None],
        np.array([row["bp_n_relevant_bases"]]),
        np.array([row["rp_n_relevant_bases"]]),
    )
    tb = build_tokens({"source_id": np.array([STAR]), "phot_g_mean_mag": np.array([STAR_G]), **cols})
    bp = tb.values[0, PAPER_VOCABULARY.index("bp0") : PAPER_VOCABULARY.index("bp54") + 1]
    assert row["bp_n_relevant_bases"] == 22
    assert np.all(np.isfinite(bp[:22])) and np.all(np.isnan(bp[22:]))


def test_builder_reproduces_real_spectra(head_fits) -> None:
    """Tokens × f_G → GaiaXPy design matrices → flux equals the input flux to ≤ 1e-4 (rms, relative)."""
    from astropy.io import fits

    n = 300
    table = build_apogee_xp(head_fits).table
    with fits.open(head_fits) as h:
        d = h[1].data[:n]
        flux = d["flux"].astype(np.float64) * d["medflux"].astype(np.float64)[:, None]
        flux_err = d["flux_error"].astype(np.float64) * d["medflux"].astype(np.float64)[:, None]
        g = d["gaiaedr3_phot_g_mean_mag"].astype(np.float64)
    assert table.num_rows == n  # no duplicates among the first 300 rows
    fg = 10 ** ((G_ZP - g) / 2.5)
    rec = coefficients_to_flux(_xp_matrix(table, "bp") * fg[:, None], _xp_matrix(table, "rp") * fg[:, None])
    rel = np.sqrt(np.mean((rec - flux) ** 2, axis=1)) / np.sqrt(np.mean(flux**2, axis=1))
    assert rel.max() <= 1e-4  # measured: median 4.1e-5, max 4.4e-5
    assert np.max(np.abs(rec - flux) / flux_err) < 0.5  # far below the XP noise (measured 0.12)


# ---------------------------------------------------------------------------------------------
# the whole dev file


def test_dev_counts_duplicates_and_split(dev_build) -> None:
    s = dev_build.summary
    assert s["rows_read"] == 32082
    assert s["duplicate_rows_dropped"] == 289  # 251 ids: 214 twice, 36 three times, 1 four times
    assert s["stars"] == 31793
    assert s["split_counts"] == {"train": 25395, "val": 3151, "test": 3247}
    sid = _col(dev_build.table, "source_id")
    assert np.unique(sid).size == sid.size
    assert s["xp_representation"] == "svd-proj-1e-5-v1"


def test_dev_split_matches_shipped_file(dev_build) -> None:
    from xpengine.datasets.splits import read_default_split

    sid, split = read_default_split()
    t = dev_build.table
    order = np.argsort(_col(t, "source_id"))
    np.testing.assert_array_equal(_col(t, "source_id")[order], sid)
    np.testing.assert_array_equal(_col(t, "split")[order].astype(str), split)


def test_hot_stars_kept_without_metallicity(dev_build) -> None:
    t = dev_build.table
    teff, m_h, m_h_err = _col(t, "teff"), _col(t, "m_h"), _col(t, "m_h_error")
    hot = teff >= 7000
    assert hot.sum() > 2500
    assert np.all(np.isnan(m_h[hot])) and np.all(m_h_err[hot] == 0)
    assert np.all(np.isfinite(_col(t, "bp0")[hot]))


def test_normalised_coefficients_have_archive_scale(dev_build) -> None:
    """APOGEE-derived tokens vs the archive: 18 Sco (real phot_g_mean_mag 5.327651, solar twin)
    against APOGEE solar-twin-like dwarfs, both in the same representation."""
    from _datasets_real import ARCHIVE_CSVS

    sco = read_archive_csv(ARCHIVE_CSVS[2])[0]
    assert sco["source_id"] == 4345775217221821312
    cols = archive_xp_columns(
        sco["bp_coefficients"][None],
        sco["rp_coefficients"][None],
        sco["bp_coefficient_errors"][None],
        sco["rp_coefficient_errors"][None],
        np.array([np.nan]),
        np.array([np.nan]),
    )
    tb = build_tokens(
        {"source_id": np.array([sco["source_id"]]), "phot_g_mean_mag": np.array([5.327651]), **cols}
    )
    t = dev_build.table
    twin = (
        (np.abs(_col(t, "teff") - 5800) < 150)
        & (_col(t, "logg") > 4.1)
        & (np.abs(_col(t, "m_h") - 0.05) < 0.15)
        & (_col(t, "ak_targ") < 0.05)
    )
    assert twin.sum() > 100
    for name in ("bp0", "rp0", "bp1", "rp1"):
        archive = tb.column(name)[0][0]
        apogee = np.median(_col(t, name)[twin])
        # measured: bp0 0.0621 vs 0.0628, rp0 0.0628 vs 0.0642, bp1 -0.0157 vs -0.0156
        assert abs(apogee - archive) < 0.05 * abs(archive) + 0.0005, (name, archive, apogee)


# ---------------------------------------------------------------------------------------------
# hand-made files


@needs_dev
def test_duplicates_keep_highest_snr(tmp_path) -> None:
    def edit(t):
        from astropy.table import vstack

        dup_hi = t[0:1].copy()
        dup_hi["snr"] = t["snr"][0] + 50.0
        dup_hi["teff"] = 4321.0
        dup_lo = t[1:2].copy()
        dup_lo["snr"] = t["snr"][1] - 10.0
        dup_lo["teff"] = 9999.0
        return vstack([t, dup_hi, dup_lo])

    path = _small_fits(tmp_path, n=6, edit=edit)
    b = build_apogee_xp(path)
    assert b.summary["duplicate_rows_dropped"] == 2
    t = b.table
    assert t.num_rows == 6
    teff = dict(zip(_col(t, "source_id").tolist(), _col(t, "teff").tolist(), strict=True))
    from astropy.io import fits

    with fits.open(path) as h:
        d = h[1].data
        sid = d["gaiaedr3_source_id"]
        assert teff[int(sid[0])] == pytest.approx(4321.0)  # the higher-S/N copy wins
        assert teff[int(sid[1])] == pytest.approx(float(d["teff"][1]))  # the original wins


def test_select_unique_rows_ties_and_nan() -> None:
    sid = np.array([5, 3, 5, 3, 7, 5])
    snr = np.array([10.0, np.nan, 10.0, 1.0, np.nan, 20.0])
    np.testing.assert_array_equal(select_unique_rows(sid, snr), [3, 4, 5])
    np.testing.assert_array_equal(select_unique_rows(sid[:3], np.array([1.0, 1.0, 1.0])), [0, 1])


@needs_dev
def test_colours_and_labels_from_file_columns(tmp_path) -> None:
    def edit(t):
        t["j"][2] = np.nan  # 2MASS J missing → no J−H, J−K
        t["h"][3] = 99.0  # 2MASS H "99" missing → no J−H, J−K kept
        return t

    path = _small_fits(tmp_path, n=5, edit=edit)
    t = build_apogee_xp(path).table
    from astropy.io import fits

    with fits.open(path) as h:
        d = h[1].data
        bprp = d["gaiaedr3_phot_bp_mean_mag"].astype(float) - d["gaiaedr3_phot_rp_mean_mag"].astype(float)
        np.testing.assert_allclose(_col(t, "bprp"), bprp, rtol=1e-6)
        # nominal error: 0.002 mag per band ⊕ Riello et al. (2021) zero-point errors
        expected = np.sqrt(2 * 0.002**2 + 0.0027901700**2 + 0.0037793818**2)
        np.testing.assert_allclose(_col(t, "bprp_error"), expected, rtol=1e-6)
        jh, jk = _col(t, "jh"), _col(t, "jk")
        assert np.isnan(jh[2]) and np.isnan(jk[2]) and np.isnan(jh[3]) and np.isfinite(jk[3])
        np.testing.assert_allclose(jh[[0, 1, 4]], (d["j"] - d["h"])[[0, 1, 4]], rtol=1e-6)
        np.testing.assert_allclose(_col(t, "jh_error")[0], np.sqrt(2) * NOMINAL_TMASS_MAG_ERROR, rtol=1e-6)
        assert _col(t, "jh_error")[2] == 0
        for tok, src in (("teff", "teff"), ("logg", "logg"), ("m_h", "fe_h"), ("alpha_m", "alpha_m")):
            np.testing.assert_allclose(_col(t, tok), d[src], rtol=1e-6, equal_nan=True)
            np.testing.assert_allclose(_col(t, f"{tok}_error"), np.nan_to_num(d[f"{src}_err"]), rtol=1e-6)
    assert np.all(np.isnan(_col(t, "g_fakemag"))) and np.all(np.isnan(_col(t, "logebv")))
    assert np.all(np.isnan(_col(t, "mass"))) and np.all(np.isnan(_col(t, "ln_age")))


@needs_dev
def test_missing_column_is_a_clear_error(tmp_path) -> None:
    path = _small_fits(tmp_path, n=3, drop=("medflux",))
    with pytest.raises(ValueError, match=r"missing column\(s\) \['medflux'\]"):
        build_apogee_xp(path)


def test_missing_file_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_apogee_xp(str(tmp_path / "nope.fits"))


# ---------------------------------------------------------------------------------------------
# schema round trip and the command line


def test_schema_round_trip_identical(tmp_path, head_fits) -> None:
    from xpengine.datasets.schema import write_training_set

    b = build_apogee_xp(head_fits, max_rows=200)
    path = str(tmp_path / "rt.parquet")
    write_training_set(b.table, path)
    arrays = read_training_set(path)
    vocab = PAPER_VOCABULARY.with_tokens(["alpha_m"])
    assert arrays.vocabulary == vocab
    assert arrays.vocabulary.to_json() == vocab.to_json()
    values = np.stack([_col(b.table, n) for n in vocab.names], axis=1)
    errors = np.stack([_col(b.table, n) for n in vocab.error_names], axis=1)
    np.testing.assert_array_equal(arrays.values, values)  # NaN positions equal too
    np.testing.assert_array_equal(arrays.errors, errors)
    np.testing.assert_array_equal(arrays.source_id, _col(b.table, "source_id"))
    np.testing.assert_array_equal(arrays.split, _col(b.table, "split").astype(str))
    assert arrays.provenance["xp_representation"] == "svd-proj-1e-5-v1"
    test_only = read_training_set(path, split="test")
    assert test_only.values.shape[0] == int(np.sum(arrays.split == "test"))
    with pytest.raises(FileExistsError):
        write_training_set(b.table, path)


def _cli(argv: list[str]) -> int:
    from xpengine.datasets.cli import register

    parser = argparse.ArgumentParser(prog="xpengine")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


@needs_dev
def test_cli_apogee_xp(tmp_path, capsys) -> None:
    src = _small_fits(tmp_path, n=8)
    out = str(tmp_path / "out.parquet")
    assert _cli(["build-dataset", "apogee-xp", "--input", src, "--output", out]) == 0
    arrays = read_training_set(out)
    assert arrays.values.shape == (8, 121)
    with pytest.raises(SystemExit) as exited:  # one line `xpengine build-dataset: error: ...`, exit 2
        _cli(["build-dataset", "apogee-xp", "--input", src, "--output", out])
    assert exited.value.code == 2 and "--overwrite" in capsys.readouterr().err
    assert _cli(["build-dataset", "apogee-xp", "--input", src, "--output", out, "--overwrite"]) == 0


@needs_dev
def test_apogee_sentinels_and_flag_columns_leave_a_star_without_labels(tmp_path) -> None:
    """APOGEE's old −9999 sentinel is no label (it was scored as a Teff of −9999), and where a file carries
    ASPCAPFLAG / STARFLAG, a star with STAR_BAD, M_H_BAD or a STARFLAG bit keeps no labels; stars are kept
    and counted."""

    def edit(t):
        t["teff"][0] = -9999.0
        t["logg_err"][1] = -9999.0
        t["aspcapflag"] = np.zeros(len(t), dtype=np.int64)
        t["starflag"] = np.zeros(len(t), dtype=np.int64)
        t["aspcapflag"][2] = 1 << 23  # STAR_BAD
        t["starflag"][3] = 4
        return t

    t_build = build_apogee_xp(_small_fits(tmp_path, n=6, edit=edit))
    t = t_build.table
    assert t.num_rows == 6 and t_build.summary["stars_with_flagged_labels"] == 2
    teff, logg, logg_err = _col(t, "teff"), _col(t, "logg"), _col(t, "logg_error")
    assert np.isnan(teff[0]) and np.isfinite(logg[0])
    assert np.isfinite(logg[1]) and logg_err[1] == 0  # an unknown error (0 = missing in the schema)
    for k in (2, 3):
        for tok in ("teff", "logg", "m_h", "alpha_m"):
            assert np.isnan(_col(t, tok)[k]), (k, tok)
    assert np.all(np.isfinite(teff[[1, 4, 5]]))
