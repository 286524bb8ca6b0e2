"""The v2 XP emulator covers the label space of the real APOGEE×XP stars: hot stars, M dwarfs, metal-poor
dwarfs and giants are inside its domain, and its spectra of held-out real stars (the dev split's "val"
rows, never fitted) are close to the real ones, region by region."""

from __future__ import annotations

import numpy as np
import pytest
from _paths import APOGEE_XP_DEV, missing_reason

from xpengine.simulate.calibration import hot_star_ebv, load_calibration
from xpengine.simulate.xp import emulator_domain, intrinsic_spectra, scale_and_redden

# (Teff [K], logg, [Fe/H], [α/M]) of each region: where the v1 emulator dropped or clamped stars
REGION_STARS = {
    "hot A dwarf": (8500.0, 4.1, 0.0, 0.0),
    "hot B dwarf": (15000.0, 4.1, 0.0, 0.0),
    "M dwarf": (3300.0, 4.8, -0.1, 0.0),
    "metal-poor dwarf": (5600.0, 4.4, -2.0, 0.3),
    "metal-poor giant": (4600.0, 1.5, -2.4, 0.3),
    "warm giant": (6200.0, 3.0, -0.3, 0.0),
    "M giant": (3400.0, 0.5, -0.2, 0.05),
}


def _labels(rows: list[tuple[float, float, float, float]]) -> list[np.ndarray]:
    return [np.array(c) for c in zip(*rows, strict=True)]


def test_default_calibration_is_v2_with_provenance() -> None:
    import json

    cal = load_calibration()
    assert int(cal["format_version"]) == 2
    prov = json.loads(str(cal["provenance"]))
    assert prov["rows_per_split"]["test"] > 0  # the test rows were seen, and left out:
    assert "only 'train' rows fitted" in prov["split"]
    assert set(prov["emulator_regions"]) == {"giant", "fgk_dwarf", "m_dwarf", "hot"}


def test_every_region_is_inside_the_emulator_domain() -> None:
    teff, logg, feh, alpha = _labels(list(REGION_STARS.values()))
    dom = emulator_domain(teff, logg, feh, alpha)
    assert dom["inside"].all(), dict(zip(REGION_STARS, dom["inside"], strict=True))
    assert not dom["clamped"].any()  # [Fe/H] −2.4 is inside the fitted range now
    spec = intrinsic_spectra(dom["cls"], teff, logg, feh, alpha, None)
    assert np.all(np.isfinite(spec)) and np.all(spec > 0)
    # the v1 emulator dropped hot stars and clamped the most metal-poor giant (kept loadable by path)
    from importlib import resources

    ref = resources.files("xpengine.simulate") / "data" / "sim_calibration_v1.npz"
    with resources.as_file(ref) as p:
        if p.exists():
            old = emulator_domain(teff, logg, feh, alpha, load_calibration(str(p)))
            assert not old["inside"][:2].any()


def test_emulated_spectra_are_continuous_across_region_blends() -> None:
    """No jump where the regions hand over (hot 6600–7000 K, dwarf side logg 3.3–3.7, M dwarfs 3900–4200 K):
    the spectra just below and just above each zone edge agree."""
    from xpengine.simulate.calibration import EMULATOR_BLEND

    cases = []  # (Teff, logg) pairs straddling an edge: (below, above)
    for t_edge in (EMULATOR_BLEND[0], EMULATOR_BLEND[1]):
        for logg in (2.5, 4.0):
            cases.append(((t_edge - 0.01, logg), (t_edge + 0.01, logg)))
    for g_edge in (EMULATOR_BLEND[2], EMULATOR_BLEND[3]):
        for teff in (3700.0, 4500.0, 5500.0):
            cases.append(((teff, g_edge - 1e-5), (teff, g_edge + 1e-5)))
    for t_edge in (EMULATOR_BLEND[4], EMULATOR_BLEND[5]):
        cases.append(((t_edge - 0.01, 4.6), (t_edge + 0.01, 4.6)))
    lo = np.array([c[0] for c in cases])
    hi = np.array([c[1] for c in cases])
    n = len(cases)
    args = (np.full(n, -0.3), np.full(n, 0.1), None)
    s_lo = intrinsic_spectra(np.zeros(n, np.int8), lo[:, 0], lo[:, 1], *args)
    s_hi = intrinsic_spectra(np.zeros(n, np.int8), hi[:, 0], hi[:, 1], *args)
    jump = np.abs(np.log10(s_hi / s_lo))[:, 32:].max(axis=1)  # 400–1020 nm
    # a 0.02 K (2e-5 dex in logg) step moves a continuous spectrum by ~1e-5 dex (steepest: the giant model at
    # 3700 K, logg 3.3, 2.6 dex per dex of logg); switching regions without a blend would jump by the
    # difference of two region models, 0.01–0.1 dex
    assert jump.max() < 2e-4, dict(zip(map(tuple, lo), jump.round(4), strict=True))


@pytest.fixture(scope="module")
def val_stars():
    if not APOGEE_XP_DEV.exists():
        pytest.skip(missing_reason(APOGEE_XP_DEV))
    from astropy.io import fits

    from xpengine.datasets.splits import read_default_split

    with fits.open(APOGEE_XP_DEV, memmap=False) as h:
        d = h[1].data
        sid = np.asarray(d["gaiaedr3_source_id"], dtype=np.int64)
        ids, names = read_default_split()
        pos = np.clip(np.searchsorted(ids, sid), 0, len(ids) - 1)
        val = (ids[pos] == sid) & (names[pos] == "val")
        cols = ("teff", "logg", "fe_h", "alpha_m", "ak_targ", "gaiaedr3_phot_g_mean_mag", "j", "k")
        out = {c: np.asarray(d[c][val], dtype=np.float64) for c in cols}
        out["flux"] = np.asarray(d["flux"][val], dtype=np.float64) * np.asarray(d["medflux"][val])[:, None]
    cal = load_calibration()
    fitted = np.isin(sid[val], cal["fit_source_ids"])
    assert not fitted.any()  # held out: no val star is among the fitted rows
    hot = out["teff"] >= 7000
    out["ebv"] = np.where(
        hot,
        np.clip(hot_star_ebv(out["teff"], out["logg"], out["j"], out["k"]), -0.1, None),
        np.clip(out["ak_targ"] / 0.352, 0.0, None),
    )
    return out


def _relative_residual(real: dict[str, np.ndarray], sel: np.ndarray) -> np.ndarray:
    """Per star ‖em − real‖/‖real‖ over 400–1000 nm after a per-star grey + E(B−V) correction of the
    emulated spectrum (removes the error of the extinction estimate; the emulator is what is tested)."""
    from xpengine.simulate.calibration import extinction_curve

    r = {k: v[sel] for k, v in real.items()}
    spec = intrinsic_spectra(
        (r["logg"] < 3.5).astype(np.int8), r["teff"], r["logg"], r["fe_h"], r["alpha_m"], None
    )
    g = r["gaiaedr3_phot_g_mean_mag"]
    em = scale_and_redden(spec, r["ebv"], g, np.zeros_like(g), a_g=np.zeros_like(g))["flux"]
    wl = np.arange(336.0, 1020.1, 2.0)
    band = (wl >= 400) & (wl <= 1000)
    k = extinction_curve(wl)[band][None, :]
    e, f = em[:, band], r["flux"][:, band]
    with np.errstate(divide="ignore", invalid="ignore"):
        lr = np.log(f / e)
    ok = np.isfinite(lr) & (f > 0)
    e, f = np.where(ok, e, 0.0), np.where(ok, f, 0.0)
    w = np.where(ok, f**2, 0.0)
    lr = np.where(ok, lr, 0.0)
    s1, sk, skk, sr, srk = w.sum(1), (w * k).sum(1), (w * k * k).sum(1), (w * lr).sum(1), (w * lr * k).sum(1)
    det = np.where(s1 * skk - sk**2 > 0, s1 * skk - sk**2, 1.0)
    a, b = (skk * sr - sk * srk) / det, (s1 * srk - sk * sr) / det
    with np.errstate(invalid="ignore", divide="ignore"):  # rows without usable pixels: NaN, dropped below
        res = np.sqrt(((e * np.exp(a[:, None] + b[:, None] * k) - f) ** 2).sum(1)) / np.sqrt((f**2).sum(1))
    # a real spectrum with < 90% usable pixels over 400–1000 nm is not a test of the emulator (as in the fit)
    return np.where(ok.mean(1) >= 0.9, res, np.nan)


# Region of real val stars → largest allowed median relative flux residual (400–1000 nm, extinction fixed).
# Measured with v2 (benchmarks/results/realism_report.md, section 1, same metric): giants 0.014, metal-poor
# giants 0.014, FGK dwarfs 0.014, metal-poor dwarfs 0.025 (18 stars), M dwarfs 0.031 (63), hot stars 0.018
# (7000–10,000 K) and 0.021 (hotter). v1 on the stars it covers: FGK dwarfs 0.020, metal-poor dwarfs 0.051,
# M dwarfs 0.028 (the 45 with [Fe/H]), hot stars none. Each bound is the v2 value plus a margin of ~30%
# (giants, FGK dwarfs, hot stars: hundreds of stars) to ~60% (metal-poor and M dwarfs: a few dozen), and
# below v1's where v1 was worse, so a regression to v1-like quality or to no coverage fails.
TOLERANCE = {
    "giants": (lambda r: (r["logg"] < 3.5) & (r["teff"] < 5800) & (r["fe_h"] > -1), 0.02),
    "metal-poor giants": (lambda r: (r["logg"] < 3.5) & (r["teff"] < 7000) & (r["fe_h"] <= -1), 0.02),
    "FGK dwarfs": (
        lambda r: (r["logg"] >= 3.5) & (r["teff"] >= 4000) & (r["teff"] < 7000) & (r["fe_h"] > -1),
        0.018,
    ),
    "metal-poor dwarfs": (lambda r: (r["logg"] >= 3.5) & (r["teff"] < 7000) & (r["fe_h"] <= -1), 0.04),
    "M dwarfs": (lambda r: (r["logg"] >= 3.5) & (r["teff"] < 4000), 0.04),
    "hot stars": (lambda r: r["teff"] >= 7000, 0.025),
}


@pytest.mark.parametrize("region", list(TOLERANCE))
def test_held_out_real_stars_are_emulated_within_tolerance(val_stars, region) -> None:
    select, tol = TOLERANCE[region]
    sel = select(val_stars) & np.isfinite(val_stars["ebv"])
    dom = emulator_domain(val_stars["teff"], val_stars["logg"], val_stars["fe_h"], val_stars["alpha_m"])
    assert dom["inside"][sel].mean() > 0.9  # the region's real stars are covered
    sel &= dom["inside"]
    assert sel.sum() >= 10, region
    res = _relative_residual(val_stars, sel)
    assert np.isfinite(res).mean() > 0.8  # 2 of the 18 metal-poor val dwarfs lack usable blue pixels
    res = res[np.isfinite(res)]
    assert np.median(res) < tol, (region, float(np.median(res)), int(sel.sum()))
