"""G, BP, RP fluxes from XP alone (xpengine.features.synthetic_photometry).

Core tests use the real Gaia DR3 XP rows bundled in tests/data and GaiaXPy's own `generate` on the same
files as the reference; the calibration tests read the shared APOGEE×XP dev file (real XP sampled
spectra with real DR3 G, BP, RP) and skip, naming it, where it is absent.
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import os
import sys
from collections.abc import Iterator

import _paths
import numpy as np
import pytest
import spectra_files as sf

from xpengine.features import synthetic_photometry as sp
from xpengine.io import covariance_from_correlations, read_xp_continuous
from xpengine.io.xp_continuous import list_column_to_numpy

XP_COLUMNS = (
    "bp_coefficients",
    "rp_coefficients",
    "bp_coefficient_errors",
    "rp_coefficient_errors",
    "bp_coefficient_correlations",
    "rp_coefficient_correlations",
)
FILES = (
    "XP_CONTINUOUS_RAW.csv",  # 2 sources, one very red (BP-RP 3.8)
    "XP_CONTINUOUS_RAW_with_missing_BP.csv",  # + the one DR3 source without BP
    "XP_CONTINUOUS_RAW_colour_eq_dr3int6.csv",  # 3 faint sources, n_relevant_bases down to 3
    "XP_CONTINUOUS-Gaia_DR3_5937083312263887616.csv",  # archive DataLink product
)
BANDS = sp.GAIA_DR3_BANDS


def _read(name: str) -> dict[str, np.ndarray]:
    t = read_xp_continuous(_paths.XP_DIR / name, with_correlations=True)
    out = {c: list_column_to_numpy(t[c]) for c in XP_COLUMNS}
    for band in ("bp", "rp"):
        col = t[f"{band}_n_relevant_bases"].to_numpy(zero_copy_only=False)
        out[f"{band}_n_relevant_bases"] = np.asarray(col, dtype=np.float64)
    out["source_id"] = np.asarray(t["source_id"].to_numpy(zero_copy_only=False), dtype=np.int64)
    return out


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """GaiaXPy writes progress bars to the stdout it bound at import: silence file descriptors 1, 2."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, null):
            os.close(fd)


@pytest.fixture(scope="module")
def gaiaxpy_reference() -> dict[tuple[str, bool], dict[str, np.ndarray]]:
    """GaiaXPy `generate` (Gaia_DR3_Vega) on each bundled file, without and with truncation."""
    from xpengine._gaiaxpy import import_gaiaxpy

    gaiaxpy = import_gaiaxpy("gaiaxpy")
    out = {}
    for name in FILES:
        for truncation in (False, True):
            with _quiet():
                df = gaiaxpy.generate(
                    str(_paths.XP_DIR / name),
                    photometric_system=gaiaxpy.PhotometricSystem.Gaia_DR3_Vega,
                    truncation=truncation,
                    save_file=False,
                )
            out[(name, truncation)] = {
                "source_id": df["source_id"].to_numpy(np.int64),
                "mag": df[[f"GaiaDr3Vega_mag_{b}" for b in BANDS]].to_numpy(float),
                "flux": df[[f"GaiaDr3Vega_flux_{b}" for b in BANDS]].to_numpy(float),
                "flux_error": df[[f"GaiaDr3Vega_flux_error_{b}" for b in BANDS]].to_numpy(float),
            }
    return out


# --- passbands ----------------------------------------------------------------------------------------


def test_passbands_are_gaiaxpy_gaia_dr3_vega() -> None:
    """Our XML reader gives GaiaXPy's own matrices (read through its API), zero points folded in."""
    from xpengine._gaiaxpy import import_gaiaxpy

    pb = sp.load_gaia_dr3_passbands()
    assert pb.bands == BANDS
    assert pb.sha256 == sp.PASSBAND_SHA256
    assert pb.to_flux_bp.shape == (55, 3) and pb.to_flux_rp.shape == (55, 3)
    system = import_gaiaxpy("gaiaxpy").PhotometricSystem.Gaia_DR3_Vega.value
    sampled = system.load_xpsampling_from_xml()  # {"bp": (55, 3), "rp": (55, 3)} W m-2 nm-1 per e-/s
    _, merge = system.load_xpmerge_from_xml()
    zp_xp = np.asarray(system.get_zero_points())
    np.testing.assert_array_equal(pb.xp_zero_point_mag, zp_xp)
    to_e_s = 10 ** (0.4 * (np.array([25.6873668671, 25.3385422158, 24.7478955012]) - zp_xp))
    np.testing.assert_allclose(pb.to_flux_bp, sampled["bp"] * merge["bp"] * to_e_s, rtol=1e-14)
    np.testing.assert_allclose(pb.to_flux_rp, sampled["rp"] * merge["rp"] * to_e_s, rtol=1e-14)
    assert not pb.matrix.flags.writeable


def test_passband_file_errors(tmp_path) -> None:
    bad = tmp_path / "filter.xml"
    bad.write_text("<config><bands n='1'><item>V</item></bands></config>")
    with pytest.raises(ValueError, match=r"bands \('V',\); expected Gaia DR3 bands"):
        sp.load_gaia_dr3_passbands(bad)
    bad.write_text("<config><solutionId>1</solutionId></config>")
    with pytest.raises(ValueError, match="no <bands> element"):
        sp.load_gaia_dr3_passbands(bad)


# --- agreement with GaiaXPy on real archive rows ------------------------------------------------------


@pytest.mark.parametrize("truncation", [False, True])
@pytest.mark.parametrize("name", FILES)
def test_matches_gaiaxpy_generate(name: str, truncation: bool, gaiaxpy_reference) -> None:
    """Same magnitudes (< 1e-6 mag; the issue asks < 1 mmag) and flux errors (< 1e-6 relative, full
    covariance) as GaiaXPy on the same coefficients; a missing band gives NaN in every band, as there."""
    a = _read(name)
    ref = gaiaxpy_reference[(name, truncation)]
    np.testing.assert_array_equal(a["source_id"], ref["source_id"])
    phot = sp.synthetic_gaia_photometry(
        *(a[c] for c in XP_COLUMNS),
        truncate_bp=a["bp_n_relevant_bases"] if truncation else None,
        truncate_rp=a["rp_n_relevant_bases"] if truncation else None,
    )
    assert phot.bands == BANDS
    np.testing.assert_array_equal(np.isnan(phot.mag), np.isnan(ref["mag"]))
    ok = np.isfinite(ref["mag"])
    assert ok.any()
    np.testing.assert_allclose(phot.mag[ok], ref["mag"][ok], rtol=0, atol=1e-6)
    rel = phot.flux_error_e_s / phot.flux_e_s
    np.testing.assert_allclose(rel[ok], (ref["flux_error"] / ref["flux"])[ok], rtol=1e-6)
    # the e-/s scale: m = ZP_DR3 - 2.5 log10(F [e-/s]) is GaiaXPy's m = zp - 2.5 log10(F [W m-2 nm-1])
    rows = np.all(ok, axis=1)
    ratio = phot.flux_e_s[rows] / ref["flux"][rows]  # (n, 3): one constant per band
    np.testing.assert_allclose(ratio, np.broadcast_to(ratio[:1], ratio.shape), rtol=1e-12)


def test_missing_bp_source_is_nan_and_others_unchanged() -> None:
    a = _read("XP_CONTINUOUS_RAW_with_missing_BP.csv")
    missing = a["source_id"] == 5405570973190252288
    assert missing.sum() == 1
    phot = sp.synthetic_gaia_photometry(*(a[c] for c in XP_COLUMNS))
    assert np.all(np.isnan(phot.flux_e_s[missing])) and np.all(np.isnan(phot.covariance_e_s2[missing]))
    alone = sp.synthetic_gaia_photometry(*(a[c][~missing] for c in XP_COLUMNS))
    np.testing.assert_array_equal(phot.flux_e_s[~missing], alone.flux_e_s)
    g, g_err = sp.g_flux_from_xp(*(a[c] for c in XP_COLUMNS))
    assert np.isnan(g[missing]).all() and np.isnan(g_err[missing]).all() and np.isfinite(g[~missing]).all()
    # a whole band absent (None) gives NaN for every source
    assert np.isnan(sp.synthetic_gaia_photometry(a["bp_coefficients"], None).flux_e_s).all()


def test_truncation_allows_nan_beyond_relevant_bases() -> None:
    """With truncation, coefficients past n_relevant_bases are not used (NaN there is fine)."""
    a = _read("XP_CONTINUOUS_RAW_colour_eq_dr3int6.csv")
    nb, nr = a["bp_n_relevant_bases"], a["rp_n_relevant_bases"]
    idx = np.arange(55)
    bp = np.where(idx[None, :] < nb[:, None], a["bp_coefficients"], np.nan)
    rp = np.where(idx[None, :] < nr[:, None], a["rp_coefficients"], np.nan)
    ref = sp.synthetic_gaia_photometry(
        a["bp_coefficients"], a["rp_coefficients"], truncate_bp=nb, truncate_rp=nr
    )
    got = sp.synthetic_gaia_photometry(bp, rp, truncate_bp=nb, truncate_rp=nr)
    np.testing.assert_array_equal(got.flux_e_s, ref.flux_e_s)
    assert np.isnan(sp.synthetic_gaia_photometry(bp, rp).flux_e_s).all()  # untruncated: NaN used -> missing


def test_diagonal_errors_and_colour_covariance() -> None:
    """Without correlations the errors use R = I (same as explicit zero correlations); the colour error
    uses the BP-RP cross-covariance, checked against an explicit 55x55 covariance per source."""
    a = _read("XP_CONTINUOUS_RAW.csv")
    full = sp.synthetic_gaia_photometry(*(a[c] for c in XP_COLUMNS))
    diag = sp.synthetic_gaia_photometry(*(a[c] for c in XP_COLUMNS[:4]))
    zeros = sp.synthetic_gaia_photometry(
        *(a[c] for c in XP_COLUMNS[:4]),
        np.zeros_like(a["bp_coefficient_correlations"]),
        np.zeros_like(a["rp_coefficient_correlations"]),
    )
    np.testing.assert_allclose(diag.covariance_e_s2, zeros.covariance_e_s2, rtol=1e-12)
    np.testing.assert_array_equal(diag.flux_e_s, full.flux_e_s)
    assert not np.allclose(diag.flux_error_e_s, full.flux_error_e_s, rtol=0.01)  # correlations matter
    # independent: colour variance = vᵀ C v with v = d(BP−RP)/dc from full (55, 55) covariance matrices
    pb = sp.load_gaia_dr3_passbands()
    fb, fr = full.flux_e_s[:, 1], full.flux_e_s[:, 2]
    colour, colour_err = sp.calibrated_bp_rp(
        full, correction=None, systematic_mag=0.0, zero_point_errors=False
    )
    np.testing.assert_allclose(colour, -2.5 * np.log10(fb / fr) + (25.3385422158 - 24.7478955012), rtol=1e-12)
    k = 2.5 / np.log(10)
    for band, to_flux in (("bp", pb.to_flux_bp), ("rp", pb.to_flux_rp)):
        cov = covariance_from_correlations(
            a[f"{band}_coefficient_errors"], a[f"{band}_coefficient_correlations"]
        )
        v = k * (to_flux[None, :, 1] / fb[:, None] - to_flux[None, :, 2] / fr[:, None])  # (N, 55)
        a[f"var_{band}"] = np.einsum("ni,nij,nj->n", v, cov, v)
    np.testing.assert_allclose(colour_err, np.sqrt(a["var_bp"] + a["var_rp"]), rtol=1e-9)
    # no errors given: the flux is still there, the covariance is NaN
    none = sp.synthetic_gaia_photometry(a["bp_coefficients"], a["rp_coefficients"])
    np.testing.assert_array_equal(none.flux_e_s, full.flux_e_s)
    assert np.isnan(none.covariance_e_s2).all()
    assert np.isnan(sp.g_flux_from_xp(a["bp_coefficients"], a["rp_coefficients"])[1]).all()


def test_g_flux_from_xp_units_and_correction(gaiaxpy_reference) -> None:
    """Uncorrected: ZP_G − 2.5 log10(g_flux) is GaiaXPy's synthetic G. Corrected: scaled by
    10^(−0.4 ΔG) with ΔG = G_CORRECTION(BP−RP_XP, G_XP), a few mmag; error includes the systematic."""
    a = _read("XP_CONTINUOUS_RAW_colour_eq_dr3int6.csv")
    ref = gaiaxpy_reference[("XP_CONTINUOUS_RAW_colour_eq_dr3int6.csv", False)]
    raw, raw_err = sp.g_flux_from_xp(*(a[c] for c in XP_COLUMNS), correct=False)
    np.testing.assert_allclose(25.6873668671 - 2.5 * np.log10(raw), ref["mag"][:, 0], atol=1e-6)
    np.testing.assert_allclose(raw_err / raw, ref["flux_error"][:, 0] / ref["flux"][:, 0], rtol=1e-6)
    g, g_err = sp.g_flux_from_xp(*(a[c] for c in XP_COLUMNS))
    delta = sp.G_CORRECTION(ref["mag"][:, 1] - ref["mag"][:, 2], ref["mag"][:, 0])
    assert np.all(np.abs(delta) < 0.02)
    np.testing.assert_allclose(g, raw * 10 ** (-0.4 * delta), rtol=1e-9)
    sys_flux = g * sp.G_FROM_XP_SIGMA_MAG / (2.5 / np.log(10))
    np.testing.assert_allclose(g_err, np.hypot(raw_err * g / raw, sys_flux), rtol=1e-9)
    colour, colour_err = sp.bp_rp_from_xp(*(a[c] for c in XP_COLUMNS))
    raw_colour, raw_colour_err = sp.bp_rp_from_xp(*(a[c] for c in XP_COLUMNS), correct=False)
    np.testing.assert_allclose(raw_colour, ref["mag"][:, 1] - ref["mag"][:, 2], atol=1e-6)
    assert np.all(np.abs(colour - raw_colour) < 0.03)
    extra = sp.BP_RP_FROM_XP_SIGMA_MAG**2 + 0.0027901700**2 + 0.0037793818**2
    np.testing.assert_allclose(colour_err, np.sqrt(raw_colour_err**2 + extra), rtol=1e-9)


def test_18sco_real_g() -> None:
    """18 Sco (bundled, with its real phot_g_mean_mag 5.327651): raw synthetic G within 2 mmag. The
    star is outside the calibrated G range (8.5–15), where the correction is extrapolated flat."""
    with open(_paths.SCO18, newline="") as fh:
        csv.field_size_limit(2**31 - 1)
        row = next(csv.DictReader(fh))
    bp = sf.parse_array(row["bp_coefficients"], 55)
    rp = sf.parse_array(row["rp_coefficients"], 55)
    g, _ = sp.g_flux_from_xp(bp, rp, correct=False)
    g_mag = 25.6873668671 - 2.5 * np.log10(g[0])
    assert abs(g_mag - float(row["phot_g_mean_mag"])) < 0.002
    phot = sp.synthetic_gaia_photometry(bp, rp)
    assert not sp.G_CORRECTION.in_range(phot.mag[:, 1] - phot.mag[:, 2], phot.mag[:, 0])[0]


# --- sampled spectra ----------------------------------------------------------------------------------


def test_sampled_route_matches_coefficients_on_real_archive_spectrum() -> None:
    """The archive XP_SAMPLED spectrum of 5937083312263887616 (made by DPAC with its own, more precise
    matrices) through w = A⁺ s gives the photometry of its archive coefficients: G to 1e-5 mag, BP and
    RP to 2e-4 mag (measured 0.001 and 0.05 mmag)."""
    sampled = sf.read_archive_sampled_csv(sf.STAR_SAMPLED)
    a = _read(sf.STAR_CONTINUOUS.name)
    from_coef = sp.synthetic_gaia_photometry(a["bp_coefficients"], a["rp_coefficients"]).mag
    from_flux = sp.synthetic_gaia_photometry_from_sampled(sampled["flux"])
    assert np.isnan(from_flux.covariance_e_s2).all()
    np.testing.assert_allclose(from_flux.mag[:, 0], from_coef[:, 0], atol=1e-5)
    np.testing.assert_allclose(from_flux.mag[:, 1:], from_coef[:, 1:], atol=2e-4)


def test_sampled_route_on_gaiaxpy_calibrate_output() -> None:
    """GaiaXPy's golden `calibrate` spectra of XP_CONTINUOUS_RAW.csv (its own matrices): the flux-space
    vectors reproduce the coefficient photometry to 1e-6 relative; NaN pixels give NaN."""
    cal = sf.read_calibrated_csv(sf.CALIB_DIR / "calibrator_solution_default.csv")
    a = _read("XP_CONTINUOUS_RAW.csv")
    np.testing.assert_array_equal(cal["source_id"], a["source_id"])
    ref = sp.synthetic_gaia_photometry(a["bp_coefficients"], a["rp_coefficients"]).flux_e_s
    got = sp.synthetic_gaia_photometry_from_sampled(cal["flux"]).flux_e_s
    np.testing.assert_allclose(got, ref, rtol=1e-6)
    w = sp.sampled_passband_vectors()
    assert w.shape == (343, 3) and not w.flags.writeable
    flux = cal["flux"].copy()
    flux[0, 10] = np.nan
    got = sp.synthetic_gaia_photometry_from_sampled(flux).flux_e_s
    assert np.isnan(got[0]).all() and np.isfinite(got[1]).all()
    with pytest.raises(ValueError, match=r"flux has shape \(2, 342\), expected \(N, 343\)"):
        sp.synthetic_gaia_photometry_from_sampled(cal["flux"][:, :-1])


# --- correction and input checks ----------------------------------------------------------------------


def test_correction_clips_and_fit_recovers_a_known_polynomial() -> None:
    rng = np.random.default_rng(15)
    true = sp.PhotometricCorrection((0.01, -0.004, 0.002, -0.0003), (-0.0005, 0.0002, -0.0001))
    x = rng.uniform(-0.5, 5.0, 20_000)
    g = rng.uniform(8.0, 16.0, 20_000)
    y = true(x, g) + rng.normal(0.0, 0.002, x.size)
    y[:500] += 0.3  # blends: far off, one-sided
    fit = sp.fit_photometric_correction(x, g, y)
    grid_x, grid_g = np.meshgrid(np.linspace(-0.3, 4.5, 25), np.linspace(8.5, 15.0, 25))
    np.testing.assert_allclose(
        fit(grid_x.ravel(), grid_g.ravel()), true(grid_x.ravel(), grid_g.ravel()), atol=3e-4
    )
    # outside the ranges the correction is the edge value
    assert true(np.array([7.0]), np.array([17.0]))[0] == true(np.array([4.5]), np.array([15.0]))[0]
    assert true(np.array([-2.0]), np.array([5.0]))[0] == true(np.array([-0.3]), np.array([8.5]))[0]
    np.testing.assert_array_equal(
        true.in_range(np.array([1.0, 1.0, 5.0]), np.array([12.0, 16.0, 12.0])), [1, 0, 0]
    )
    with pytest.raises(ValueError, match="3 usable rows for 7 coefficients"):
        sp.fit_photometric_correction(x[:3], g[:3], y[:3])


def test_input_errors_name_what_was_received() -> None:
    a = _read("XP_CONTINUOUS_RAW.csv")
    with pytest.raises(ValueError, match="both None"):
        sp.synthetic_gaia_photometry(None, None)
    with pytest.raises(ValueError, match=r"rp_coefficients has shape \(2, 54\), expected \(2, 55\)"):
        sp.synthetic_gaia_photometry(a["bp_coefficients"], a["rp_coefficients"][:, :54])
    with pytest.raises(ValueError, match=r"truncate_bp holds negative values"):
        sp.synthetic_gaia_photometry(a["bp_coefficients"], a["rp_coefficients"], truncate_bp=-1)
    with pytest.raises(
        ValueError, match=r"bp_coefficient_correlations has shape \(2, 10\), expected \(2, 1485\)"
    ):
        sp.synthetic_gaia_photometry(*(a[c] for c in XP_COLUMNS[:4]), np.zeros((2, 10)), None)
    with pytest.raises(ValueError, match="band 'V' not in"):
        sp.synthetic_gaia_photometry(a["bp_coefficients"], a["rp_coefficients"]).column("V")


# --- calibration against the real G of real stars (shared data) ---------------------------------------


@pytest.fixture(scope="module")
def dev_stars() -> dict[str, np.ndarray]:
    """The dev file's stars (one row per source_id): synthetic photometry from the real sampled XP,
    real DR3 G, BP, RP, split and clean-excess mask."""
    _paths.skip_unless_exists(_paths.APOGEE_XP_DEV)
    from astropy.io import fits

    from xpengine.datasets.apogee_xp import select_unique_rows
    from xpengine.datasets.splits import split_by_source_id

    with fits.open(_paths.APOGEE_XP_DEV, memmap=False) as hdul:
        d = hdul[1].data
        sid = np.asarray(d["gaiaedr3_source_id"], dtype=np.int64)
        rows = select_unique_rows(sid, np.asarray(d["snr"], dtype=np.float64))
        flux = np.asarray(d["flux"][rows], np.float64) * np.asarray(d["medflux"][rows], np.float64)[:, None]
        real = {b: np.asarray(d[f"gaiaedr3_phot_{b}_mean_mag"][rows], np.float64) for b in ("g", "bp", "rp")}
    phot = sp.synthetic_gaia_photometry_from_sampled(flux)
    c_star, c_sigma = sp.corrected_bp_rp_excess_factor(real["g"], real["bp"], real["rp"])
    m = phot.mag
    return {
        "phot": phot,
        "g_xp": m[:, 0],
        "bp_rp_xp": m[:, 1] - m[:, 2],
        **real,
        "split": split_by_source_id(sid[rows]),
        "clean": np.abs(c_star) < 3 * c_sigma,
    }


def _robust_sigma(r: np.ndarray) -> float:
    return float(1.4826 * np.median(np.abs(r - np.median(r))))


@_paths.needs_file(_paths.APOGEE_XP_DEV)
def test_held_out_g_and_colour_match_real_photometry(dev_stars) -> None:
    """Test split (never used in the fit), clean excess factor: |bias| < 1 mmag, robust σ < 4 mmag
    (issue target 10 mmag; measured 2.65 G, 2.47 BP−RP), no trend: every bin with ≥ 100 stars has
    |median| < 2 mmag, in BP−RP_XP and in G_XP."""
    d = dev_stars
    sel = (d["split"] == "test") & d["clean"] & np.isfinite(d["g_xp"]) & np.isfinite(d["g"])
    assert sel.sum() > 2500
    g_flux, g_err = sp.calibrated_g_flux(d["phot"])
    r_g = d["g"] - (25.6873668671 - 2.5 * np.log10(g_flux))
    colour, _ = sp.calibrated_bp_rp(d["phot"])
    r_c = (d["bp"] - d["rp"]) - colour
    for r in (r_g[sel], r_c[sel]):
        assert abs(np.median(r)) < 0.001
        assert _robust_sigma(r) < 0.004
    for r in (r_g, r_c):
        for x, edges in (
            (d["bp_rp_xp"], [-0.3, 0.5, 1.0, 1.5, 2.0, 3.0, 4.5]),
            (d["g_xp"], np.arange(8.5, 15.6, 1.0)),
        ):
            for lo, hi in itertools.pairwise(edges):
                b = sel & (x >= lo) & (x < hi)
                if b.sum() >= 100:
                    assert abs(np.median(r[b])) < 0.002, (lo, hi, np.median(r[b]))
    # the correction is needed: the raw synthetic G is biased by a few mmag on the same stars
    raw = d["g"][sel] - d["g_xp"][sel]
    assert 0.002 < np.median(raw) < 0.005
    assert np.all(np.isnan(g_err))  # sampled input: no statistical error propagated


@_paths.needs_file(_paths.APOGEE_XP_DEV)
def test_shipped_corrections_are_the_training_fit(dev_stars) -> None:
    """G_CORRECTION and BP_RP_CORRECTION are what `fit_photometric_correction` gives on the training
    split's clean stars (as benchmarks/g_from_xp.py fits them): within 0.01 mmag over the fitted range."""
    d = dev_stars
    train = (d["split"] == "train") & d["clean"] & np.isfinite(d["g_xp"]) & np.isfinite(d["bp_rp_xp"])
    gx, gg = np.meshgrid(np.linspace(-0.3, 4.5, 30), np.linspace(8.5, 15.0, 30))
    for shipped, real in (
        (sp.G_CORRECTION, d["g"] - d["g_xp"]),
        (sp.BP_RP_CORRECTION, d["bp"] - d["rp"] - d["bp_rp_xp"]),
    ):
        refit = sp.fit_photometric_correction(d["bp_rp_xp"][train], d["g_xp"][train], real[train])
        np.testing.assert_allclose(refit(gx.ravel(), gg.ravel()), shipped(gx.ravel(), gg.ravel()), atol=1e-5)
