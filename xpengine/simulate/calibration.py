"""Data-driven calibration of the synthetic sky: XP spectral emulator, XP noise templates, colours.

Everything the simulator learns from real data is fitted here ONCE and stored in the package file
`xpengine/simulate/data/sim_calibration_v2.npz` (≈ 0.9 MB; `CALIBRATION_FILE`), so that simulating needs
neither the 83 MB APOGEE×XP file nor GaiaXPy. Regenerate it with (≈ 1–2 min on 2 cores)::

    python -m xpengine.simulate.calibration \
        --apogee-xp /work/shared/data/apogee_xp/apogee_xp_dev.fits.gz \
        --gaia-samples /work/shared/data/gaia_dr3_samples \
        --output xpengine/simulate/data/sim_calibration_v2.npz

The file records what was fitted on which rows: `provenance` (JSON: input sha256, split counts, per
region the rows fitted / clipped / used for residual statistics) and `fit_source_ids` (every source_id
the emulator used: its coefficients or its residual statistics; all from the train split). The v1
file (`sim_calibration_v1.npz`: two classes, giants 3500–5800 K and dwarfs 3585–6809 K, fitted on a
random 80% of ALL dev rows, test split included) stays loadable by path;
:func:`xpengine.simulate.xp.intrinsic_spectra` reads both formats.

What is fitted
--------------
1. Spectral emulator (v2) on the real APOGEE DR17 × Gaia XP sampled spectra (336–1020 nm / 2 nm, 343
   pixels; labels Teff, logg, [Fe/H], [α/M]) of the dev split's "train" rows ONLY (split by source_id,
   `xpengine.datasets.splits`: no "test" row enters any fit, the "val" rows are kept for measuring it,
   benchmarks/realism_report.py --physics mist, section 1). Model: log10 of the flux normalised by the
   Gaia G flux, y = log10(F / f_G),
       y(λ) = Σ_k B_k(λ) φ_k(labels) + E(B−V) κ(λ) + g,
   in four overlapping regions (`EMULATOR_REGIONS`), each fitted on the real stars of its (Teff, logg) box:
   giants (3000–7200 K, logg < 3.9; degree 5, 126 terms), FGK dwarfs (3800–7300 K, logg > 3.1; degree 4,
   70 terms), M dwarfs (3000–4400 K, logg > 3.1; quartic in Teff ONLY: ASPCAP gives no [Fe/H] below
   ≈ 3600 K, and a logg term extrapolates badly to the isochrones' M-dwarf logg), hot stars (> 6300 K, any logg; degree 5 in Teff and logg ONLY). φ = the monomials of x = ((5040/Teff − 1, logg, [Fe/H], [α/M]) − centre)/scale, the centre and
   half-range of the region's training labels (so |x| ≤ 1 inside). The regions are blended with smooth
   weights (:func:`region_weights`: hot above 6600 → 7000 K, dwarf side above logg 3.3 → 3.7, M dwarfs
   below 3900 → 4200 K), so spectra are continuous in the labels. Hot stars: ASPCAP gives no [Fe/H] or
   [α/M] above 7000 K, so the hot region ignores them (a hot star's metallicity does not change its
   emulated spectrum; at XP resolution the continuum and Balmer lines of A/B stars depend mostly on Teff
   and logg), and its training E(B−V) is the 2MASS J − Ks excess (:func:`hot_star_ebv`) instead of
   AK_TARG, which is biased low for hot stars. Elsewhere E(B−V) = AK_TARG / 0.352 (REFERENCE §7).
   κ(λ) = −0.4 R_V A_λ/A_V (Fitzpatrick 1999, R_V = 3.1; PyPI `extinction`), g a per-star grey offset (it
   absorbs the G-band extinction and photometric errors). Weighted ridge least squares per pixel (weights
   1/(σ_y² + 0.003²), ridge 1e-7–1e-6 of the mean diagonal), alternated with the grey offsets; after the
   first pass, training stars whose residual level is > 6× the median are dropped (bad labels, binaries,
   blends: 2–8% per region). Residual statistics on a random 15% of the train rows kept out of the
   coefficients: the scatter per pixel (1.4826 MAD, after a per-star grey + E(B−V)-correction fit),
   `{region}_resid_rms`, and the 6 leading principal components of the INTRINSIC part of that scatter,
   `{region}_resid_pcs` (residual covariance minus the median measurement-noise variance over
   470–1000 nm, tapered to zero over 40 nm at the edges, smoothed with a 12 nm Gaussian; bluer and
   pixel-scale residuals are dominated by measurement noise and would inject noise-like structure into
   the high BP coefficients). Fitted label ranges: `{region}_label_min/max` (the emulator clamps to them).
2. Gaia DR3 G/BP/RP passbands in XP-coefficient space, from GaiaXPy's `GaiaDr3Vega` filter file
   (Montegriffo et al. 2023): flux_band = c @ V[:, band], mag = −2.5 log10(flux) + zp. On the real
   APOGEE×XP spectra, synthetic G from the engine's representation agrees with the archive
   `phot_g_mean_mag` to 0.003 mag (robust σ).
3. XP coefficient-error shape: per band the median over the real DR3 rows in `gaia_dr3_samples`
   (7 sources) of e_i / mean(e_0..e_4); the photon-noise split e_0² = a² c_0² + b² c_0 fitted on the
   same rows; correlation templates = mean correlation matrix of the bright (c_0 > 3000 e⁻/s) and of the
   faint rows, shrunk by 3% toward the identity and rounded to 4 decimals (both stay positive definite).
4. Dwarf 2MASS colours: (J−H)_0, (J−Ks)_0 and (G−Ks)_0 of the real APOGEE dwarfs (logg ≥ 3.8; train rows) as cubic
   polynomials in (5040/Teff − 1, logg − 4.5, [Fe/H]), dereddened with AK_TARG and the §7 A/A_V ratios,
   3-σ clipped.
"""

from __future__ import annotations

import argparse
import functools
import logging
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from xpengine.model.standardize import robust_sigma
from xpengine.simulate.emulator_fit import (
    AK_PER_EBV,
    WAVELENGTH_NM,
    fit_emulator,
    hot_star_ebv,
    read_apogee_xp,
)
from xpengine.simulate.emulator_model import (
    EMULATOR_BLEND,
    EMULATOR_REGIONS,
    LABEL_SCALES,
    R_V,
    extinction_curve,
    label_features,
    monomial_powers,
    region_weights,
)

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

__all__ = [
    "CALIBRATION_FILE",
    "CALIBRATION_VERSIONS",
    "EMULATOR_BLEND",
    "EMULATOR_REGIONS",
    "FORMAT_VERSION",
    "LABEL_SCALES",
    "extinction_curve",
    "fit_calibration",
    "hot_star_ebv",
    "label_features",
    "load_calibration",
    "packaged_calibration",
    "region_weights",
]
"""The emulator's form lives in `emulator_model`, its fit in `emulator_fit`; this module holds the file
(format, loading, regenerating) and the small products (passbands, noise templates, dwarf colours), and
re-exports the names the simulator and the benchmarks read here."""

logger = logging.getLogger(__name__)

CALIBRATION_FILE = "sim_calibration_v2.npz"
CALIBRATION_VERSIONS = ("v1", "v2")
"""The packaged calibration files: `sim_calibration_<version>.npz` in xpengine/simulate/data."""


#: A_band / A_V for giants (REFERENCE §7).
_A_OVER_AV = {"G": 0.80, "BP": 1.02, "RP": 0.63, "J": 0.289, "H": 0.183, "Ks": 0.118}

#: Format of the calibration files this module writes (v1 files have no `format_version`).
FORMAT_VERSION = 2


_XP_ARRAY_COLUMNS = tuple(
    f"{band}_{kind}"
    for band in ("bp", "rp")
    for kind in ("coefficients", "coefficient_errors", "coefficient_correlations")
)


def _read_real_xp_rows(samples_dir: str) -> list[dict[str, object]]:
    """The genuine DR3 XP continuous rows of `gaia_dr3_samples` (archive CSV files; first of each
    source_id): `source_id` and the six array columns as float64 arrays (None where the band is
    missing), read by `xpengine.io.read_table` (not `read_xp_continuous`, whose float32 errors and
    correlations would round the values the noise templates were fitted on)."""
    from xpengine.io import read_table

    base = Path(samples_dir)
    files = [
        base / "gaiaxpy/tests/files/xp_continuous/XP_CONTINUOUS_RAW_with_missing_BP.csv",
        base / "gaiaxpy/tests/files/xp_continuous/XP_CONTINUOUS_RAW_colour_eq_dr3int6.csv",
        base
        / "astroquery/extracted/gaia_dr3_source_id_5937083312263887616_dl_products_csv"
        / "XP_CONTINUOUS-Gaia_DR3_5937083312263887616.csv",
        base / "gaiaxpy/tests/files/cholesky_solution/18Sco-XP-spectra.csv",
    ]
    rows: list[dict[str, object]] = []
    seen: set[int] = set()
    for f in files:
        table = read_table(f, columns=["source_id"], array_columns=_XP_ARRAY_COLUMNS)
        for rec in table.to_pylist():
            sid = int(rec["source_id"])
            if sid in seen:
                continue
            seen.add(sid)
            for k in _XP_ARRAY_COLUMNS:
                rec[k] = None if rec[k] is None else np.array(rec[k], dtype=np.float64)
            rows.append(rec)
    return rows


def _corr_matrix(vec: np.ndarray, n: int) -> np.ndarray:
    R = np.eye(n)
    R[np.tril_indices(n, -1)] = vec
    return R + R.T - np.eye(n)


def _noise_templates(rows: list[dict[str, object]]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for band in ("bp", "rp"):
        shapes, c0s, e0s, bright, faint = [], [], [], [], []
        for r in rows:
            c = r.get(f"{band}_coefficients")
            e = r.get(f"{band}_coefficient_errors")
            k = r.get(f"{band}_coefficient_correlations")
            if c is None or e is None:
                continue
            e = np.asarray(e)
            e0 = e[:5].mean()
            shapes.append(e / e0)
            c0s.append(float(np.asarray(c)[0]))
            e0s.append(e0)
            if k is not None:
                (bright if c0s[-1] > 3000 else faint).append(_corr_matrix(np.asarray(k), len(e)))
        shape = np.median(np.stack(shapes), axis=0)
        out[f"{band}_error_shape"] = shape / shape[:5].mean()
        c0 = np.array(c0s)
        e0 = np.array(e0s)
        # e0^2 = a^2 c0^2 + b^2 c0 (non-negative LS on the relative variance)
        A = np.stack([np.ones_like(c0), 1.0 / c0], 1)
        coef, *_ = np.linalg.lstsq(A, (e0 / c0) ** 2, rcond=None)
        coef = np.maximum(coef, [1e-8, 1e-6])
        out[f"{band}_photon_ab"] = np.sqrt(coef)
        n = len(out[f"{band}_error_shape"])
        for name, mats in (("bright", bright), ("faint", faint)):
            R = np.mean(np.stack(mats), axis=0)
            R = 0.97 * R + 0.03 * np.eye(n)
            R = np.round(R, 4)
            np.fill_diagonal(R, 1.0)
            if np.linalg.eigvalsh(R).min() <= 0:  # pragma: no cover - guarded by the shrinkage
                raise RuntimeError(f"{band} {name} correlation template is not positive definite")
            out[f"{band}_corr_{name}"] = R
    return out


def _passbands() -> dict[str, np.ndarray]:
    from xpengine._gaiaxpy import import_gaiaxpy

    PhotometricSystem = import_gaiaxpy("gaiaxpy.generator.photometric_system").PhotometricSystem

    system = PhotometricSystem.Gaia_DR3_Vega.value
    sampling = system.load_xpsampling_from_xml()
    _, merge = system.load_xpmerge_from_xml()
    V = np.concatenate([sampling["bp"] * merge["bp"], sampling["rp"] * merge["rp"]], axis=0)  # (110, 3)
    return {
        "passband_vectors": V,
        "passband_zero_points": np.asarray(system.get_zero_points(), dtype=np.float64),
        "passband_names": np.array(system.get_bands()),
    }


def _dwarf_colours(d: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    ebv = np.clip(d["ak_targ"] / AK_PER_EBV, 0, None)
    av = R_V * ebv
    ok = (
        (d["logg"] >= 3.8)
        & (d["teff"] > 3500)
        & (d["teff"] < 7500)
        & np.isfinite(d["fe_h"])
        & np.isfinite(ebv)
        & (d["j"] < 90)
        & (d["h"] < 90)
        & (d["k"] < 90)
    )
    x = np.stack([5040.0 / d["teff"] - 1.0, d["logg"] - 4.5, d["fe_h"]], 1)[ok]
    powers = monomial_powers(3, 3)
    X = np.prod(x[:, None, :] ** powers[None], axis=2)
    targets = {
        "jh": (d["j"] - d["h"] - (_A_OVER_AV["J"] - _A_OVER_AV["H"]) * av)[ok],
        "jk": (d["j"] - d["k"] - (_A_OVER_AV["J"] - _A_OVER_AV["Ks"]) * av)[ok],
        "gk": (d["gaiaedr3_phot_g_mean_mag"] - d["k"] - (_A_OVER_AV["G"] - _A_OVER_AV["Ks"]) * av)[ok],
    }
    out: dict[str, np.ndarray] = {"dwarf_colour_powers": powers}
    for name, y in targets.items():
        keep = np.isfinite(y)
        for _ in range(3):
            coef, *_ = np.linalg.lstsq(X[keep], y[keep], rcond=None)
            r = y - X @ coef
            s = robust_sigma(r[keep])
            keep = np.isfinite(y) & (np.abs(r) < 3 * s)
        out[f"dwarf_{name}_coef"] = coef
        out[f"dwarf_{name}_rms"] = np.array(s)
    return out


def fit_calibration(
    apogee_xp_path: str, gaia_samples_dir: str, *, seed: int = 0, stat_fraction: float = 0.15
) -> dict[str, np.ndarray]:
    """Fit every calibration product (see module docstring); returns the arrays of the npz file.

    Only rows of the shipped dev split's "train" part are used (`xpengine.datasets.splits`): "test" rows
    are never read into a fit, "val" rows are left for measuring it (realism_report.py --physics mist).
    Within train, a random `stat_fraction` (seed `seed`) is kept out of the coefficients and gives the
    stored residual statistics.
    """
    import json

    from xpengine.datasets.splits import read_default_split

    rng = np.random.default_rng(seed)
    d = read_apogee_xp(apogee_xp_path)
    wl = WAVELENGTH_NM
    if d["flux"].shape[1] != wl.size:
        raise ValueError(f"{apogee_xp_path}: flux has {d['flux'].shape[1]} pixels, expected {wl.size}")
    split_ids, split_names = read_default_split()
    pos = np.searchsorted(split_ids, d["source_id"])
    pos = np.clip(pos, 0, len(split_ids) - 1)
    split = np.where(split_ids[pos] == d["source_id"], split_names[pos], "none")
    is_train = split == "train"
    stat = rng.random(len(split)) < stat_fraction
    out: dict[str, np.ndarray] = {
        "format_version": np.array(FORMAT_VERSION),
        "wavelength_nm": wl,
        "emulator_regions": np.array(list(EMULATOR_REGIONS)),
        "emulator_blend": np.array(EMULATOR_BLEND, dtype=np.float64),
    }
    regions, prov_regions, used = fit_emulator(d, is_train, stat)
    out.update(regions)
    out["fit_source_ids"] = np.unique(d["source_id"][used])
    train_rows = {k: v[is_train] for k, v in d.items()}
    out.update(_passbands())
    out.update(_noise_templates(_read_real_xp_rows(gaia_samples_dir)))
    out.update(_dwarf_colours(train_rows))
    prov = _provenance(apogee_xp_path, split, prov_regions, seed=seed, stat_fraction=stat_fraction)
    out["provenance"] = np.array(json.dumps(prov, sort_keys=True))
    return out


def _provenance(
    apogee_xp_path: str,
    split: np.ndarray,
    prov_regions: dict[str, dict[str, object]],
    *,
    seed: int,
    stat_fraction: float,
) -> dict[str, object]:
    """The file's `provenance`: input digest, split counts, what each region was fitted on."""
    import datetime

    from xpengine.io import sha256_of

    return {
        "created_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "input": str(Path(apogee_xp_path).name),
        "input_sha256": sha256_of(apogee_xp_path),
        "rows_in_file": len(split),
        "split": "xpengine/data/splits/apogee_xp_dev_split.parquet (by source_id); only 'train' rows fitted",
        "rows_per_split": {k: int((split == k).sum()) for k in ("train", "val", "test", "none")},
        "rows_excluded": "test and val rows; rows without AK_TARG (without J, Ks in the hot region), with "
        "< 90% positive flux over 400-1000 nm; per region, rows with a residual level > 6x the median (clipped)",
        "residual_statistics": f"random {stat_fraction:.0%} of the train rows (seed {seed}), not fitted",
        "emulator_regions": prov_regions,
        "blend": list(EMULATOR_BLEND),
        "hot_stars": "Teff >= 7000 K stars have no ASPCAP [Fe/H], [alpha/M]: the hot region reads Teff, logg only; "
        "its rows' E(B-V) is hot_star_ebv (2MASS J-Ks excess over the MIST/C3K intrinsic colour), not AK_TARG",
        "m_dwarfs": "ASPCAP gives no [Fe/H] below ~3600 K and M-dwarf logg is poorly constrained: the M-dwarf "
        "region reads Teff only",
        "dwarf_colours": "train rows only",
        "noise_templates": "real DR3 XP continuous rows of gaia_dr3_samples (7 sources)",
        "passbands": "GaiaXPy GaiaDr3Vega filter (Montegriffo et al. 2023)",
    }


def packaged_calibration(version: str | None = None) -> Traversable:
    """The packaged calibration file of `version` (one of `CALIBRATION_VERSIONS`; None: the default,
    `CALIBRATION_FILE`)."""
    if version is None:
        name = CALIBRATION_FILE
    elif version in CALIBRATION_VERSIONS:
        name = f"sim_calibration_{version}.npz"
    else:
        raise ValueError(f"calibration version {version!r}: expected one of {CALIBRATION_VERSIONS}")
    return resources.files("xpengine.simulate") / "data" / name


@functools.lru_cache(maxsize=2)
def load_calibration(path: str | None = None) -> dict[str, np.ndarray]:
    """Read the calibration npz (default: the packaged `CALIBRATION_FILE`, v2); arrays are read-only.

    Any path may be given, e.g. the packaged v1 file `xpengine/simulate/data/sim_calibration_v1.npz`
    (:func:`xpengine.simulate.xp.intrinsic_spectra` and `emulator_domain` read both formats)."""
    if path is None:
        with resources.as_file(packaged_calibration()) as p:
            if not Path(p).exists():
                raise FileNotFoundError(
                    f"packaged simulator calibration {p} is missing; regenerate it with "
                    "`python -m xpengine.simulate.calibration` (see its docstring)"
                )
            return load_calibration(str(p))
    with np.load(path, allow_pickle=False) as z:
        out = {k: z[k] for k in z.files}
    for v in out.values():
        v.setflags(write=False)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Fit the synthetic-sky calibration (see module docstring).")
    p.add_argument("--apogee-xp", required=True, help="apogee_xp_dev.fits.gz")
    p.add_argument("--gaia-samples", required=True, help="directory gaia_dr3_samples")
    p.add_argument("--output", required=True, help="output .npz")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    arrays = fit_calibration(a.apogee_xp, a.gaia_samples, seed=a.seed)
    Path(a.output).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(a.output, **arrays)
    logger.info("wrote %s (%d arrays)", a.output, len(arrays))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
