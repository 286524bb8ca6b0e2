"""Gaia XP continuous coefficients <-> sampled spectra on GaiaXPy's default grid.

A Gaia DR3 XP spectrum is a set of Hermite-function coefficients per band (55 BP, 55 RP in DR3; 51 BP in
DR4). GaiaXPy's `calibrate` turns them into an absolute flux [W m^-2 nm^-1] on a wavelength grid
(default 336–1020 nm every 2 nm, 343 points) with two tabulated matrices (Montegriffo et al. 2023,
A&A 674, A3, §3; De Angeli et al. 2023, A&A 674, A2; GaiaXPy documentation):

    f_X = c_X @ D_X                       (D_X: design matrix, n_X × 343, X = BP, RP)
    f   = w_BP * f_BP + w_RP * f_RP       (w_X: merge weights, 343; w_BP + w_RP = 1)

so that flux = [c_BP, c_RP] @ A with the combined matrix A = [w_BP·D_BP ; w_RP·D_RP] (n_BP+n_RP × 343).
Truncation (GaiaXPy `truncation=True`) keeps only the first `X_n_relevant_bases` coefficients; like
GaiaXPy, a count of 0 truncates nothing.

The matrices come from GaiaXPy (`gaiaxpy.core.config.load_xpsampling_from_xml` and
`load_xpmerge_from_xml`; BP model v375wi, RP model v142r), or, on machines without GaiaXPy, from the
copy shipped as package data in `xpengine/spectra/data/xp_sampling_default.npz` (bit-identical; written by
:func:`write_default_sampling_npz`).

Going back (sampled flux -> coefficients) is ill-conditioned (condition number of A ≈ 2.9e7) and the
tabulated matrices hold only ~6 significant digits, so a plain least-squares inverse of a real archive
sampled spectrum does NOT reproduce the archive coefficients above order ~4 (REFERENCE §1). Use
:mod:`xpengine.spectra.representation` for anything a model consumes; :func:`flux_to_coefficients` here is
the plain (optionally truncated-SVD regularised, optionally error-weighted) least-squares solution.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

__all__ = [
    "DEFAULT_SAMPLING_NPZ",
    "XPSampling",
    "coefficients_to_flux",
    "correlation_matrix",
    "default_sampling",
    "flux_errors_from_covariance",
    "flux_to_coefficients",
    "load_sampling_from_gaiaxpy",
    "load_sampling_npz",
    "save_sampling_npz",
    "write_default_sampling_npz",
]

logger = logging.getLogger(__name__)

#: File name of the packaged copy of GaiaXPy's default sampling (in `xpengine/spectra/data/`).
DEFAULT_SAMPLING_NPZ = "xp_sampling_default.npz"

_GRID_ID_DEFAULT = "gaiaxpy-default-336-1020-2nm-bp_v375wi-rp_v142r"


@dataclass(frozen=True, eq=False)
class XPSampling:
    """Design matrices and merge weights of one wavelength grid (read-only float64 arrays).

    wavelength_nm: (n_wl,) grid [nm]. design_bp: (n_bp, n_wl), design_rp: (n_rp, n_wl): flux of unit
    coefficient i on the grid [W m^-2 nm^-1 per (e- s^-1)]. weight_bp, weight_rp: (n_wl,) merge weights
    (sum 1). A: (n_bp + n_rp, n_wl) combined matrix, flux = [c_bp, c_rp] @ A. grid_id names the grid and
    the instrument models the matrices belong to.
    """

    wavelength_nm: np.ndarray
    design_bp: np.ndarray
    design_rp: np.ndarray
    weight_bp: np.ndarray
    weight_rp: np.ndarray
    grid_id: str = _GRID_ID_DEFAULT
    A: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        arrays = {}
        for name in ("wavelength_nm", "design_bp", "design_rp", "weight_bp", "weight_rp"):
            a = np.array(getattr(self, name), dtype=np.float64, copy=True)
            a.setflags(write=False)
            arrays[name] = a
        n_wl = arrays["wavelength_nm"].shape[0]
        expected = {
            "wavelength_nm": (n_wl,),
            "weight_bp": (n_wl,),
            "weight_rp": (n_wl,),
        }
        for name, shape in expected.items():
            if arrays[name].shape != shape:
                raise ValueError(f"XPSampling.{name} has shape {arrays[name].shape}, expected {shape}")
        for name in ("design_bp", "design_rp"):
            if arrays[name].ndim != 2 or arrays[name].shape[1] != n_wl:
                raise ValueError(
                    f"XPSampling.{name} has shape {arrays[name].shape}, expected (n_coefficients, {n_wl})"
                )
        for name, a in arrays.items():
            object.__setattr__(self, name, a)
        A = np.vstack([arrays["design_bp"] * arrays["weight_bp"], arrays["design_rp"] * arrays["weight_rp"]])
        A.setflags(write=False)
        object.__setattr__(self, "A", A)

    @property
    def n_bp(self) -> int:
        return int(self.design_bp.shape[0])

    @property
    def n_rp(self) -> int:
        return int(self.design_rp.shape[0])

    @property
    def n_wavelength(self) -> int:
        return int(self.wavelength_nm.shape[0])


def load_sampling_from_gaiaxpy() -> XPSampling:
    """Read GaiaXPy's default sampling (336–1020 nm / 2 nm, BP v375wi, RP v142r) from its XML files.

    Needs the `gaiaxpy` package (imported here, lazily). Returns a new :class:`XPSampling`.
    """
    try:
        from xpengine._gaiaxpy import import_gaiaxpy

        _cfg = import_gaiaxpy("gaiaxpy.core.config")
        load_xpmerge_from_xml, load_xpsampling_from_xml = (
            _cfg.load_xpmerge_from_xml,
            _cfg.load_xpsampling_from_xml,
        )
    except ImportError as exc:  # pragma: no cover - depends on the machine
        raise ImportError(
            "gaiaxpy is needed to read the XP design matrices from XML; on machines without it use "
            f"load_sampling_npz() or default_sampling(source='npz') (packaged {DEFAULT_SAMPLING_NPZ})"
        ) from exc
    design = load_xpsampling_from_xml()
    grid, weights = load_xpmerge_from_xml()
    return XPSampling(
        wavelength_nm=np.asarray(grid, dtype=np.float64),
        design_bp=design["bp"],
        design_rp=design["rp"],
        weight_bp=weights["bp"],
        weight_rp=weights["rp"],
    )


def save_sampling_npz(sampling: XPSampling, path: str | Path) -> Path:
    """Write `sampling` to a compressed .npz file; refuses to overwrite an existing file."""
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} exists; remove it first to rewrite the XP sampling matrices")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        np.savez_compressed(
            fh,
            wavelength_nm=sampling.wavelength_nm,
            design_bp=sampling.design_bp,
            design_rp=sampling.design_rp,
            weight_bp=sampling.weight_bp,
            weight_rp=sampling.weight_rp,
            grid_id=np.array(sampling.grid_id),
        )
    return path


def load_sampling_npz(path: str | Path) -> XPSampling:
    """Read an :class:`XPSampling` written by :func:`save_sampling_npz`."""
    with np.load(path, allow_pickle=False) as z:
        missing = {"wavelength_nm", "design_bp", "design_rp", "weight_bp", "weight_rp"} - set(z.files)
        if missing:
            raise ValueError(f"{path}: not an XP sampling file, missing arrays {sorted(missing)}")
        return XPSampling(
            wavelength_nm=z["wavelength_nm"],
            design_bp=z["design_bp"],
            design_rp=z["design_rp"],
            weight_bp=z["weight_bp"],
            weight_rp=z["weight_rp"],
            grid_id=str(z["grid_id"]) if "grid_id" in z.files else _GRID_ID_DEFAULT,
        )


def _packaged_npz() -> Path:
    return Path(str(resources.files("xpengine.spectra").joinpath("data", DEFAULT_SAMPLING_NPZ)))


def write_default_sampling_npz(path: str | Path | None = None) -> Path:
    """Regenerate the packaged copy of GaiaXPy's default sampling (needs gaiaxpy).

    path: destination, default `xpengine/spectra/data/xp_sampling_default.npz`. Refuses to overwrite.
    """
    return save_sampling_npz(load_sampling_from_gaiaxpy(), _packaged_npz() if path is None else path)


@functools.lru_cache(maxsize=4)
def default_sampling(source: str = "auto") -> XPSampling:
    """The default GaiaXPy sampling, cached in memory.

    source: "npz" (packaged copy), "gaiaxpy" (read the XML), or "auto" (packaged copy when present,
    else GaiaXPy). The two are bit-identical (tested).
    """
    if source not in ("auto", "npz", "gaiaxpy"):
        raise ValueError(f"source={source!r}; expected 'auto', 'npz' or 'gaiaxpy'")
    npz = _packaged_npz()
    if source == "npz" or (source == "auto" and npz.is_file()):
        if not npz.is_file():
            raise FileNotFoundError(
                f"packaged XP sampling {npz} is missing; run write_default_sampling_npz()"
            )
        return load_sampling_npz(npz)
    return load_sampling_from_gaiaxpy()


# ----------------------------------------------------------------------------------------------------------
# helpers


def _as_batch(x: np.ndarray | None, n: int, name: str, n_rows: int | None = None) -> np.ndarray:
    """(N, n) float64 copy of x; None -> all-NaN rows (band missing) when n_rows is known."""
    if x is None:
        if n_rows is None:
            raise ValueError(f"{name} is None and the number of sources is unknown")
        return np.full((n_rows, n), np.nan)
    a = np.array(x, dtype=np.float64, copy=True)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2 or a.shape[1] != n:
        raise ValueError(f"{name} has shape {np.shape(x)}, expected (N, {n})")
    return a


def truncation_mask(truncate: int | np.ndarray | None, n_rows: int, n: int, name: str) -> np.ndarray | None:
    """(N, n) bool, True for the coefficients kept (index < truncate); None = keep all.

    As GaiaXPy (`AbsoluteSampledSpectrum`: a band is truncated only when its count is > 0), a count of
    0 truncates nothing: the band's flux is computed from all its coefficients, not set to zero. So is
    an unknown count (NaN). This is the flux utility's rule only: the model's tokens keep their own
    (`xpengine.features.relevancy`: a count of 0 masks the band, flagged FEW_RELEVANT_BASES). Shared with
    the synthetic photometry (`xpengine.features.synthetic_photometry`), which follows GaiaXPy too.
    """
    if truncate is None:
        return None
    t = np.asarray(truncate)
    if t.ndim == 0:
        t = np.full(n_rows, t)
    if t.shape != (n_rows,):
        raise ValueError(f"{name} has shape {t.shape}, expected a scalar or ({n_rows},)")
    t = t.astype(np.float64)
    # NaN (unknown relevancy, e.g. missing band) and 0 (GaiaXPy: no truncation) keep everything; the
    # band is then judged by its values
    t = np.where(np.isfinite(t) & (t != 0), t, n)
    if np.any(t < 0):
        raise ValueError(f"{name} holds negative values (min {t.min()}); expected 0..{n}")
    return np.arange(n)[None, :] < t[:, None]


def _prepare_band(
    c: np.ndarray | None, n: int, name: str, n_rows: int | None, truncate: int | np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Coefficients with truncated entries zeroed and missing bands zeroed, plus the (N,) present flag.

    A band is missing for a source when any coefficient it uses (after truncation) is not finite.
    """
    a = _as_batch(c, n, name, n_rows)
    keep = truncation_mask(truncate, a.shape[0], n, f"truncate for {name}")
    if keep is not None:
        a = np.where(keep, a, 0.0)
    present = np.all(np.isfinite(a), axis=1)
    a[~present] = 0.0
    return a, present


def correlation_matrix(correlations: np.ndarray, n: int | None = None) -> np.ndarray:
    """(N, n, n) correlation matrices from Gaia's strict-lower-triangle, row-major storage.

    correlations: (N, n(n-1)/2), order (1,0),(2,0),(2,1),(3,0),… (Gaia DR3 datamodel,
    `xp_continuous_mean_spectrum.bp_coefficient_correlations`; REFERENCE §1). NaN rows give NaN matrices.
    """
    r = np.asarray(correlations, dtype=np.float64)
    if r.ndim == 1:
        r = r[None, :]
    m = r.shape[1]
    n_from_m = int(np.rint((1 + np.sqrt(1 + 8 * m)) / 2))
    if n_from_m * (n_from_m - 1) // 2 != m or (n is not None and n != n_from_m):
        raise ValueError(
            f"correlations have {m} entries per row, expected n(n-1)/2"
            + (f" = {n * (n - 1) // 2} for n={n}" if n is not None else "")
        )
    n = n_from_m
    out = np.zeros((r.shape[0], n, n))
    i, j = np.tril_indices(n, -1)
    out[:, i, j] = r
    out[:, j, i] = r
    out[:, np.arange(n), np.arange(n)] = 1.0
    return out


# ----------------------------------------------------------------------------------------------------------
# coefficients -> flux


def coefficients_to_flux(
    bp: np.ndarray | None,
    rp: np.ndarray | None,
    sampling: XPSampling | None = None,
    *,
    truncate_bp: int | np.ndarray | None = None,
    truncate_rp: int | np.ndarray | None = None,
) -> np.ndarray:
    """Merged sampled flux [W m^-2 nm^-1] of continuous coefficients, as GaiaXPy `calibrate` computes it.

    bp: (N, n_bp), rp: (N, n_rp) coefficients [e- s^-1] (a 1-D vector is one source; None = band missing
    for all). truncate_bp / truncate_rp: None (all coefficients, as the archive sampled spectra), an int,
    or (N,) ints (`X_n_relevant_bases`): only the first n coefficients are used, the rest may be NaN;
    as in GaiaXPy `calibrate(truncation=True)`, a count of 0 (or NaN) means no truncation (all
    coefficients used), not a zero flux.
    Returns (N, n_wl) float64 from ONE matrix product [c_bp, c_rp] @ A.

    Missing band (any used coefficient non-finite, e.g. the DR3 source without BP): as GaiaXPy does
    (checked against its golden output), the flux is NaN where the missing band has weight > 0 and the
    other band's weight is 0, and in the overlap (both weights > 0, 636–642 nm) it is the present band's
    own flux (its weight renormalised to 1). Both bands missing: all NaN.
    """
    s = default_sampling() if sampling is None else sampling
    n_rows = None
    for c in (bp, rp):
        if c is not None:
            n_rows = np.atleast_2d(np.asarray(c)).shape[0]
            break
    if n_rows is None:
        raise ValueError("bp and rp are both None; expected at least one band of coefficients")
    a_bp, ok_bp = _prepare_band(bp, s.n_bp, "bp", n_rows, truncate_bp)
    a_rp, ok_rp = _prepare_band(rp, s.n_rp, "rp", n_rows, truncate_rp)
    if a_bp.shape[0] != a_rp.shape[0]:
        raise ValueError(f"bp has {a_bp.shape[0]} rows and rp {a_rp.shape[0]}; expected the same N")
    flux = np.concatenate([a_bp, a_rp], axis=1) @ s.A  # (N, n_wl)
    _apply_missing_band(flux, ok_bp, ok_rp, s, variance=False)
    return flux


def _apply_missing_band(
    values: np.ndarray, ok_bp: np.ndarray, ok_rp: np.ndarray, s: XPSampling, *, variance: bool
) -> None:
    """In place: renormalise the overlap and set NaN where a missing band contributes (GaiaXPy rule)."""
    for ok_missing, w_missing, w_present in (
        (ok_bp, s.weight_bp, s.weight_rp),
        (ok_rp, s.weight_rp, s.weight_bp),
    ):
        rows = ~ok_missing
        if not rows.any():
            continue
        overlap = (w_missing > 0) & (w_present > 0)
        only_missing = (w_missing > 0) & (w_present == 0)
        scale = w_present[overlap] ** (2 if variance else 1)
        values[np.ix_(rows, overlap)] /= scale
        values[np.ix_(rows, only_missing)] = np.nan
    both = ~ok_bp & ~ok_rp
    values[both] = np.nan


def flux_errors_from_covariance(
    bp_errors: np.ndarray | None,
    rp_errors: np.ndarray | None,
    bp_correlations: np.ndarray | None = None,
    rp_correlations: np.ndarray | None = None,
    sampling: XPSampling | None = None,
    *,
    truncate_bp: int | np.ndarray | None = None,
    truncate_rp: int | np.ndarray | None = None,
    chunk: int = 512,
) -> np.ndarray:
    """1-sigma errors [W m^-2 nm^-1] of the merged sampled flux, (N, n_wl).

    Per band, C_X = diag(e) R diag(e) (e = `X_coefficient_errors`, R from `X_coefficient_correlations`,
    identity when None) and var_X = diag(D_X^T C_X D_X); merged var = w_BP^2 var_BP + w_RP^2 var_RP
    (BP and RP are independent; matches GaiaXPy `calibrate` to ~1e-15). Truncation and missing bands as in
    :func:`coefficients_to_flux`. Work is done in chunks of `chunk` sources.
    """
    s = default_sampling() if sampling is None else sampling
    n_rows = None
    for c in (bp_errors, rp_errors):
        if c is not None:
            n_rows = np.atleast_2d(np.asarray(c)).shape[0]
            break
    if n_rows is None:
        raise ValueError("bp_errors and rp_errors are both None; expected at least one band")
    var = np.zeros((n_rows, s.n_wavelength))
    oks = []
    for e, corr, trunc, design, w, n, name in (
        (bp_errors, bp_correlations, truncate_bp, s.design_bp, s.weight_bp, s.n_bp, "bp_errors"),
        (rp_errors, rp_correlations, truncate_rp, s.design_rp, s.weight_rp, s.n_rp, "rp_errors"),
    ):
        e_b, ok = _prepare_band(e, n, name, n_rows, trunc)
        oks.append(ok)
        if corr is None:
            var += (e_b**2 @ design**2) * w**2
            continue
        corr_a = np.asarray(corr, dtype=np.float64)
        if corr_a.ndim == 1:
            corr_a = corr_a[None, :]
        if corr_a.shape[0] != n_rows:
            raise ValueError(f"correlations for {name} have {corr_a.shape[0]} rows, expected {n_rows}")
        for start in range(0, n_rows, chunk):
            sl = slice(start, start + chunk)
            R = correlation_matrix(corr_a[sl], n)  # (n_chunk, n, n)
            R[~ok[sl]] = 0.0
            E = e_b[sl, :, None] * design[None, :, :]  # (n_chunk, n, n_wl)
            var[sl] += np.einsum("nik,nik->nk", E, R @ E) * w**2
    _apply_missing_band(var, oks[0], oks[1], s, variance=True)
    return np.sqrt(var)


# ----------------------------------------------------------------------------------------------------------
# flux -> coefficients


def _truncated_pinv_rows(M: np.ndarray, rcond: float) -> np.ndarray:
    """(n_wl, n_c) matrix X with c = f @ X the truncated-SVD least-squares solution of f = c @ M."""
    U, sv, Vt = np.linalg.svd(M, full_matrices=False)  # M (n_c, n_wl) = U diag(sv) Vt
    keep = sv > rcond * sv[0]
    return (Vt[keep].T / sv[keep]) @ U[:, keep].T


def flux_to_coefficients(
    flux: np.ndarray,
    flux_error: np.ndarray | None = None,
    sampling: XPSampling | None = None,
    *,
    rcond: float | None = None,
    chunk: int = 256,
) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares continuous coefficients (bp (N, n_bp), rp (N, n_rp)) of sampled spectra, float64.

    flux: (N, n_wl) merged flux on the sampling grid [W m^-2 nm^-1]; flux_error: (N, n_wl) 1-sigma errors
    or None. Solves min ||(f - c A) / sigma||^2 by SVD of the (whitened) matrix, discarding singular
    values below `rcond` times the largest (truncated SVD = the regularisation: it drops the directions of
    coefficient space that the flux does not constrain, which noise would otherwise blow up by up to the
    condition number ~3e7). rcond=None means no regularisation (machine-precision cut, max(shape)·eps):
    right for noise-free input; for noisy input use e.g. 1e-5, or better
    :func:`xpengine.spectra.representation.coefficients_from_sampled` (the engine's representation).

    Pixels with non-finite flux or non-finite / non-positive errors get zero weight. A band with no
    usable pixel where its weight > 0 is returned as NaN. NOTE: even for perfect input this does not
    reproduce archive coefficients of real archive sampled spectra above order ~4 (REFERENCE §1).
    """
    s = default_sampling() if sampling is None else sampling
    f = _as_batch(flux, s.n_wavelength, "flux")
    n_rows = f.shape[0]
    cut = np.finfo(np.float64).eps * max(s.A.shape) if rcond is None else float(rcond)
    weight = np.isfinite(f).astype(np.float64)
    if flux_error is not None:
        sig = _as_batch(flux_error, s.n_wavelength, "flux_error")
        if sig.shape[0] != n_rows:
            raise ValueError(f"flux_error has {sig.shape[0]} rows, flux {n_rows}; expected the same N")
        good = np.isfinite(sig) & (sig > 0)
        weight = np.where(good, weight / np.where(good, sig, 1.0), 0.0)
    # a band is missing when no pixel where it alone contributes is usable; then the overlap pixels
    # (which GaiaXPy fills with the other band's own flux) are dropped too, and the band comes back NaN
    only_bp = (s.weight_bp > 0) & (s.weight_rp == 0)
    only_rp = (s.weight_rp > 0) & (s.weight_bp == 0)
    overlap = (s.weight_bp > 0) & (s.weight_rp > 0)
    miss_bp = ~np.any(weight[:, only_bp] > 0, axis=1)
    miss_rp = ~np.any(weight[:, only_rp] > 0, axis=1)
    weight[np.ix_(miss_bp | miss_rp, overlap)] = 0.0
    f = np.where(weight > 0, f, 0.0)
    out = np.empty((n_rows, s.n_bp + s.n_rp))
    # rows whose weights are all equal share one matrix: one SVD for all of them
    uniform = np.all(weight == weight[:, :1], axis=1) & (weight[:, 0] > 0)
    if uniform.any():
        X = _truncated_pinv_rows(s.A, cut)
        out[uniform] = f[uniform] @ X
    idx = np.flatnonzero(~uniform)
    for start in range(0, idx.size, chunk):
        rows = idx[start : start + chunk]
        Aw = s.A[None, :, :] * weight[rows, None, :]  # (n_chunk, n_c, n_wl)
        U, sv, Vt = np.linalg.svd(Aw, full_matrices=False)
        keep = sv > cut * sv[:, :1]
        inv = np.where(keep, 1.0 / np.where(keep, sv, 1.0), 0.0)  # (n_chunk, n_c)
        fw = f[rows] * weight[rows]  # (n_chunk, n_wl)
        proj = np.einsum("nkw,nw->nk", Vt, fw) * inv
        out[rows] = np.einsum("nck,nk->nc", U, proj)
    bp, rp = out[:, : s.n_bp], out[:, s.n_bp :]
    bp[miss_bp] = np.nan
    rp[miss_rp] = np.nan
    return bp, rp
