"""Tests of xpengine.spectra.sampling against GaiaXPy (its matrices, its golden `calibrate` outputs) and
the real archive XP_SAMPLED spectrum of Gaia DR3 5937083312263887616.

Relative flux differences are max|Δ| / max|flux| over the grid unless stated (rms/rms also checked).
"""

from __future__ import annotations

import numpy as np
import pytest
from spectra_files import (
    CALIB_DIR,
    RAW,
    RAW_WITH_MISSING_BP,
    STAR_CONTINUOUS,
    STAR_SAMPLED,
    read_archive_sampled_csv,
    read_calibrated_csv,
    read_continuous_csv,
)

from xpengine.spectra import (
    XPSampling,
    coefficients_to_flux,
    correlation_matrix,
    default_sampling,
    flux_errors_from_covariance,
    flux_to_coefficients,
    load_sampling_npz,
    save_sampling_npz,
)

MISSING_BP_SOURCE = 5405570973190252288


def max_rel(a: np.ndarray, b: np.ndarray) -> float:
    """max|a-b| / max|b| over finite entries of each row, maximised over rows."""
    ok = np.isfinite(b)
    return float(
        max(np.max(np.abs(x[m] - y[m])) / np.max(np.abs(y[m])) for x, y, m in zip(a, b, ok, strict=True))
    )


@pytest.fixture(scope="module")
def star():
    return read_continuous_csv(STAR_CONTINUOUS), read_archive_sampled_csv(STAR_SAMPLED)


def test_packaged_npz_is_gaiaxpy_bit_for_bit():
    pytest.importorskip("gaiaxpy")
    from gaiaxpy.core.config import load_xpmerge_from_xml, load_xpsampling_from_xml

    npz = default_sampling("npz")
    design = load_xpsampling_from_xml()
    grid, weights = load_xpmerge_from_xml()
    np.testing.assert_array_equal(npz.wavelength_nm, grid)
    np.testing.assert_array_equal(npz.design_bp, design["bp"])
    np.testing.assert_array_equal(npz.design_rp, design["rp"])
    np.testing.assert_array_equal(npz.weight_bp, weights["bp"])
    np.testing.assert_array_equal(npz.weight_rp, weights["rp"])
    assert default_sampling("gaiaxpy").grid_id == npz.grid_id


def test_sampling_shapes_and_combined_matrix():
    s = default_sampling()
    assert s.wavelength_nm.shape == (343,)
    assert s.wavelength_nm[0] == 336.0 and s.wavelength_nm[-1] == 1020.0
    assert np.all(np.diff(s.wavelength_nm) == 2.0)
    assert (s.n_bp, s.n_rp, s.n_wavelength) == (55, 55, 343)
    assert s.A.shape == (110, 343) and s.A.dtype == np.float64
    np.testing.assert_array_equal(s.A[:55], s.design_bp * s.weight_bp)
    np.testing.assert_array_equal(s.A[55:], s.design_rp * s.weight_rp)
    np.testing.assert_allclose(s.weight_bp + s.weight_rp, 1.0, atol=0)
    assert not s.A.flags.writeable  # shared by the lru_cache: must stay read-only
    assert default_sampling() is default_sampling()


def test_npz_round_trip_and_refuses_overwrite(tmp_path):
    s = default_sampling()
    path = save_sampling_npz(s, tmp_path / "grid.npz")
    t = load_sampling_npz(path)
    np.testing.assert_array_equal(t.A, s.A)
    assert t.grid_id == s.grid_id
    with pytest.raises(FileExistsError, match=r"grid\.npz exists"):
        save_sampling_npz(s, path)


def test_xpsampling_rejects_bad_shapes():
    s = default_sampling()
    with pytest.raises(ValueError, match=r"design_rp has shape \(55, 342\)"):
        XPSampling(s.wavelength_nm, s.design_bp, s.design_rp[:, :-1], s.weight_bp, s.weight_rp)


def test_coefficients_to_flux_matches_real_archive_sampled_spectrum(star):
    cont, sampled = star
    s = default_sampling()
    np.testing.assert_array_equal(sampled["wavelength"], s.wavelength_nm)
    flux = coefficients_to_flux(cont["bp_coefficients"], cont["rp_coefficients"])
    assert flux.shape == (1, 343) and flux.dtype == np.float64
    ref = sampled["flux"]
    # archive sampled spectra are made by DPAC with more precise matrices: ~2e-6 expected (REFERENCE §1)
    assert max_rel(flux, ref) < 1e-5
    rms_rel = np.sqrt(np.mean((flux - ref) ** 2)) / np.sqrt(np.mean(ref**2))
    assert rms_rel < 5e-6
    # truncating to n_relevant_bases makes a visible difference: the archive product is NOT truncated
    trunc = coefficients_to_flux(
        cont["bp_coefficients"],
        cont["rp_coefficients"],
        truncate_bp=cont["bp_n_relevant_bases"],
        truncate_rp=cont["rp_n_relevant_bases"],
    )
    assert max_rel(trunc, ref) > 1e-4


def test_flux_errors_match_real_archive_sampled_errors(star):
    cont, sampled = star
    err = flux_errors_from_covariance(
        cont["bp_coefficient_errors"],
        cont["rp_coefficient_errors"],
        cont["bp_coefficient_correlations"],
        cont["rp_coefficient_correlations"],
    )
    np.testing.assert_allclose(err, sampled["flux_error"], rtol=1e-5)
    # ignoring the correlations gives clearly different errors (the test can fail)
    err_diag = flux_errors_from_covariance(cont["bp_coefficient_errors"], cont["rp_coefficient_errors"])
    assert np.max(np.abs(err_diag / sampled["flux_error"] - 1)) > 0.1


@pytest.mark.parametrize(
    ("golden", "truncate"),
    [("calibrator_solution_default.csv", False), ("calibrator_solution_truncation_default.csv", True)],
)
def test_matches_gaiaxpy_golden_calibrate(golden, truncate):
    raw = read_continuous_csv(RAW)
    gold = read_calibrated_csv(CALIB_DIR / golden)
    np.testing.assert_array_equal(raw["source_id"], gold["source_id"])
    kw = {}
    if truncate:
        kw = {"truncate_bp": raw["bp_n_relevant_bases"], "truncate_rp": raw["rp_n_relevant_bases"]}
    flux = coefficients_to_flux(raw["bp_coefficients"], raw["rp_coefficients"], **kw)
    err = flux_errors_from_covariance(
        raw["bp_coefficient_errors"],
        raw["rp_coefficient_errors"],
        raw["bp_coefficient_correlations"],
        raw["rp_coefficient_correlations"],
        **kw,
    )
    # the truncation golden file is written with 9 significant digits
    tol = 1e-8 if truncate else 1e-12
    assert max_rel(flux, gold["flux"]) < tol
    np.testing.assert_allclose(err, gold["flux_error"], rtol=tol)


def test_calibrate_with_gaiaxpy_itself_on_the_real_star(star):
    pytest.importorskip("gaiaxpy")
    import pandas as pd
    from gaiaxpy import calibrate

    cont, _ = star
    frame = pd.DataFrame(
        {
            "source_id": cont["source_id"],
            "bp_coefficients": list(cont["bp_coefficients"]),
            "rp_coefficients": list(cont["rp_coefficients"]),
            "bp_coefficient_errors": list(cont["bp_coefficient_errors"]),
            "rp_coefficient_errors": list(cont["rp_coefficient_errors"]),
            "bp_coefficient_correlations": list(cont["bp_coefficient_correlations"]),
            "rp_coefficient_correlations": list(cont["rp_coefficient_correlations"]),
            "bp_n_parameters": [55],
            "rp_n_parameters": [55],
            "bp_standard_deviation": [1.0486225],
            "rp_standard_deviation": [1.0],
        }
    )
    # gaiaxpy may not accept this minimal frame in every version; the golden-file test covers the rest
    try:
        out, _ = calibrate(frame, save_file=False, truncation=False)
    except Exception as exc:  # pragma: no cover - depends on the gaiaxpy version
        pytest.skip(f"gaiaxpy.calibrate refused the minimal frame: {exc}")
    ref = np.stack(out["flux"].to_numpy())
    assert max_rel(coefficients_to_flux(cont["bp_coefficients"], cont["rp_coefficients"]), ref) < 1e-12


def test_missing_bp_matches_gaiaxpy_golden():
    raw = read_continuous_csv(RAW_WITH_MISSING_BP)
    gold = read_calibrated_csv(CALIB_DIR / "with_missing_calibrator_solution.csv")
    np.testing.assert_array_equal(raw["source_id"], gold["source_id"])
    i = int(np.flatnonzero(raw["source_id"] == MISSING_BP_SOURCE)[0])
    assert np.all(np.isnan(raw["bp_coefficients"][i]))
    flux = coefficients_to_flux(raw["bp_coefficients"], raw["rp_coefficients"])
    err = flux_errors_from_covariance(
        raw["bp_coefficient_errors"],
        raw["rp_coefficient_errors"],
        raw["bp_coefficient_correlations"],
        raw["rp_coefficient_correlations"],
    )
    np.testing.assert_array_equal(np.isnan(flux), np.isnan(gold["flux"]))
    np.testing.assert_array_equal(np.isnan(err), np.isnan(gold["flux_error"]))
    s = default_sampling()
    # NaN exactly where only BP contributes (336–634 nm); RP's own flux in the 636–642 nm overlap
    np.testing.assert_array_equal(np.isnan(flux[i]), (s.weight_bp > 0) & (s.weight_rp == 0))
    assert max_rel(flux, gold["flux"]) < 1e-12
    np.testing.assert_allclose(err, gold["flux_error"], rtol=1e-12)


def test_coefficients_to_flux_is_one_linear_map_and_validates():
    s = default_sampling()
    rng = np.random.default_rng(0)
    bp, rp = rng.normal(size=(7, 55)), rng.normal(size=(7, 55))
    flux = coefficients_to_flux(bp, rp, s)
    np.testing.assert_allclose(flux, bp @ (s.design_bp * s.weight_bp) + rp @ (s.design_rp * s.weight_rp))
    # per-source truncation, NaN allowed beyond the kept coefficients (the paper's relevancy masking)
    n_bp = np.array([3, 10, 55, 2, 20, 54, 1])  # (0 keeps every coefficient, as GaiaXPy: test_io_review19)
    bp_nan = np.where(np.arange(55) < n_bp[:, None], bp, np.nan)
    t = coefficients_to_flux(bp_nan, rp, s, truncate_bp=n_bp, truncate_rp=30)
    expect = (
        np.where(np.arange(55) < n_bp[:, None], bp, 0) @ s.A[:55]
        + np.where(np.arange(55) < 30, rp, 0) @ (s.A[55:])
    )
    np.testing.assert_allclose(t, expect)
    both_missing = coefficients_to_flux(np.full((1, 55), np.nan), np.full((1, 55), np.nan), s)
    assert np.all(np.isnan(both_missing))
    only_rp = coefficients_to_flux(None, rp[:1], s)
    assert only_rp.shape == (1, 343)
    with pytest.raises(ValueError, match=r"bp has shape \(3, 54\), expected \(N, 55\)"):
        coefficients_to_flux(np.zeros((3, 54)), np.zeros((3, 55)), s)
    with pytest.raises(ValueError, match="bp has 3 rows and rp 2"):
        coefficients_to_flux(np.zeros((3, 55)), np.zeros((2, 55)), s)


def test_correlation_matrix_layout():
    # strict lower triangle, row-major: (1,0), (2,0), (2,1)
    R = correlation_matrix(np.array([0.1, 0.2, 0.3]))
    np.testing.assert_array_equal(R[0], [[1, 0.1, 0.2], [0.1, 1, 0.3], [0.2, 0.3, 1]])
    with pytest.raises(ValueError, match="4 entries per row"):
        correlation_matrix(np.zeros(4))


def test_flux_to_coefficients_round_trip_noise_free(star):
    cont, sampled = star
    s = default_sampling()
    bp, rp = cont["bp_coefficients"], cont["rp_coefficients"]
    flux = coefficients_to_flux(bp, rp, s)
    bp2, rp2 = flux_to_coefficients(flux, sampling=s)
    assert bp2.dtype == np.float64 and bp2.shape == (1, 55) and rp2.shape == (1, 55)
    # flux -> coefficients -> flux for noise-free input (flux exactly in the range of A)
    assert max_rel(coefficients_to_flux(bp2, rp2, s), flux) < 1e-9
    # weighted by the real flux errors, and with a few NaN pixels: still exact for noise-free input
    fe = sampled["flux_error"].copy()
    f_nan = flux.copy()
    f_nan[0, [5, 200, 300]] = np.nan
    bp3, rp3 = flux_to_coefficients(f_nan, fe, s)
    assert max_rel(coefficients_to_flux(bp3, rp3, s), flux) < 1e-8
    # the real archive spectrum is not exactly in the range of A: residual ~1e-6 (REFERENCE §1)
    bp4, rp4 = flux_to_coefficients(sampled["flux"], sampling=s)
    assert max_rel(coefficients_to_flux(bp4, rp4, s), sampled["flux"]) < 1e-5


def test_flux_to_coefficients_regularisation_tames_noise(star):
    cont, sampled = star
    s = default_sampling()
    rng = np.random.default_rng(42)
    flux = coefficients_to_flux(cont["bp_coefficients"], cont["rp_coefficients"], s)
    fe = np.repeat(sampled["flux_error"], 20, axis=0)
    noisy = flux + rng.normal(size=(20, 343)) * fe
    plain = np.concatenate(flux_to_coefficients(noisy, fe, s), axis=1)
    reg = np.concatenate(flux_to_coefficients(noisy, fe, s, rcond=1e-5), axis=1)
    truth = np.concatenate([cont["bp_coefficients"], cont["rp_coefficients"]], axis=1)
    scale = np.concatenate([cont["bp_coefficient_errors"], cont["rp_coefficient_errors"]], axis=1)
    err_plain = np.median(np.abs(plain - truth) / scale)
    err_reg = np.median(np.abs(reg - truth) / scale)
    assert err_reg < err_plain / 3


def test_flux_to_coefficients_missing_bp():
    raw = read_continuous_csv(RAW_WITH_MISSING_BP)
    s = default_sampling()
    flux = coefficients_to_flux(raw["bp_coefficients"], raw["rp_coefficients"], s)
    bp, rp = flux_to_coefficients(flux, sampling=s)
    i = int(np.flatnonzero(raw["source_id"] == MISSING_BP_SOURCE)[0])
    assert np.all(np.isnan(bp[i])) and np.all(np.isfinite(rp[i]))
    assert np.all(np.isfinite(bp[np.arange(3) != i]))
    back = coefficients_to_flux(bp, rp, s)
    assert max_rel(back, flux) < 1e-8
