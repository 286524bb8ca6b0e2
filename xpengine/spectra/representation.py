"""THE XP representation of the engine: coefficients projected onto what a sampled spectrum determines.

Why (REFERENCE §1): the engine must read archive continuous coefficients (Gaia DR3
`xp_continuous_mean_spectrum`) and sampled spectra (archive `XP_SAMPLED`, the APOGEE×XP training file) as
the SAME thing. The map coefficients -> flux on GaiaXPy's 336–1020 nm grid, flux = c @ A with A
(n_c = n_bp + n_rp = 110, n_wl = 343) from :mod:`xpengine.spectra.sampling`, is ill-conditioned
(cond ≈ 2.9e7), and the tabulated A has only ~6 significant digits while DPAC made the archive sampled
spectra with a more precise matrix. A plain pseudo-inverse of a real sampled spectrum therefore gives
coefficients far from the archive's (tens to hundreds of per cent from bp2–bp6 on), and a model trained on
one would not transfer to the other.

What the sampled spectrum does determine is the component of c in the span of the leading singular
vectors of A. With the SVD A = U Σ Wᵀ (U: n_c × r coefficient-space, W: n_wl × r flux-space), keep the k
singular values above `threshold` × the largest (default 1e-5: k = 90 of 110 for DR3), and define

    representation of archive coefficients c:   c' = c P,          P = U_k U_kᵀ     (n_c × n_c, symmetric)
    representation of a sampled spectrum f:     c' = f X,          X = W_k Σ_k⁻¹ U_kᵀ (n_wl × n_c)

For f = c A exactly, f X = c P. c' stays in coefficient space (bp0..bp54, rp0..rp54 layout), so tokens
keep their meaning "coefficient i". P is NOT close to the identity (diag(P) is 0.93 for bp0 and ranges
0.22–0.99 over BP): c' differs from raw archive coefficients by up to hundreds of sigma, so raw and
projected coefficients must never be mixed (hence :data:`REPRESENTATION_ID`). Measured on Gaia DR3
5937083312263887616: projection from its archive XP_SAMPLED vs from its archive coefficients agree to
2.84e-5 in relative norm, max |Δ|/σ = 0.13 per coefficient; the projected coefficients reproduce the
sampled flux to 4.1e-5 rms (rms/rms).

Errors (1-sigma of c'): for coefficients, diag(P C P) with C block-diagonal (BP and RP independent),
C_X = diag(e) R diag(e) from `X_coefficient_errors` and `X_coefficient_correlations` (R = identity when
correlations are not given); for sampled spectra, diag(Xᵀ diag(σ_f²) X), treating the flux errors as
independent. CAVEAT: real sampled-flux errors are strongly correlated (343 pixels from 110 coefficients),
so this OVERESTIMATES the errors: for 5937083312263887616 the sampled-spectrum errors are a median 221
times the archive-coefficient errors of the same projection (white pixel noise leaks through the
weakest kept directions, amplified up to 1/threshold). Use them as conservative upper bounds.

Missing band (one DR3 source has no BP; a sampled spectrum can be NaN where a band contributes): the
same construction on that band alone: the SVD of the present band's design matrix restricted to the
pixels where only it contributes (w_other = 0; RP: 644–1020 nm, BP: 336–634 nm), with the same relative
threshold. The overlap pixels (636–642 nm) are left out because sampled inputs fill them differently
(GaiaXPy puts the present band's own flux there, other tools NaN). The missing band comes back NaN.

Every dataset or checkpoint built on this representation stores :data:`REPRESENTATION_ID`
("svd-proj-1e-5-v1"); :func:`check_representation_id` refuses inputs built differently.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xpengine.spectra.sampling import (
    _GRID_ID_DEFAULT,
    XPSampling,
    _as_batch,
    correlation_matrix,
    default_sampling,
)

__all__ = [
    "DEFAULT_THRESHOLD",
    "REPRESENTATION_ID",
    "XPRepresentation",
    "XPSubspace",
    "build_representation",
    "check_representation_id",
    "coefficients_from_sampled",
    "default_representation",
    "project_coefficient_errors",
    "project_coefficients",
    "representation_id",
    "sampled_coefficient_errors",
]

logger = logging.getLogger(__name__)

#: Relative singular-value threshold of the default representation.
DEFAULT_THRESHOLD = 1e-5
_VERSION = "v1"


def representation_id(threshold: float = DEFAULT_THRESHOLD, grid_id: str = _GRID_ID_DEFAULT) -> str:
    """Identifier stored with datasets/checkpoints, e.g. "svd-proj-1e-5-v1" (grid appended if not default)."""
    mantissa, exponent = f"{float(threshold):e}".split("e")
    thr = f"{float(mantissa):g}e{int(exponent)}"
    rid = f"svd-proj-{thr}-{_VERSION}"
    return rid if grid_id == _GRID_ID_DEFAULT else f"{rid}+{grid_id}"


#: Identifier of the default representation (threshold 1e-5, GaiaXPy default grid).
REPRESENTATION_ID = representation_id(DEFAULT_THRESHOLD)


def check_representation_id(
    found: str | None, expected: str = REPRESENTATION_ID, where: str = "input"
) -> None:
    """Raise ValueError unless `found` equals `expected` (`where` names the file/checkpoint in the message)."""
    if found != expected:
        raise ValueError(
            f"{where} was built with XP representation {found!r}, expected {expected!r}; rebuild it with "
            "xpengine.spectra (project_coefficients / coefficients_from_sampled)"
        )


@dataclass(frozen=True, eq=False)
class XPSubspace:
    """One truncated-SVD construction (both bands, or one band alone).

    projector: (n_c, n_c) P = U_k U_kᵀ, c' = c @ P. from_flux: (n_pix, n_c) X = W_k Σ_k⁻¹ U_kᵀ,
    c' = f[:, pixels] @ X. pixels: (n_wl,) bool, the flux pixels used. singular_values: (r,) all of them,
    descending; rank: k kept.
    """

    projector: np.ndarray
    from_flux: np.ndarray
    pixels: np.ndarray
    singular_values: np.ndarray
    rank: int


def _subspace(M: np.ndarray, pixels: np.ndarray, threshold: float) -> XPSubspace:
    """Construction for matrix M (n_c, n_wl) restricted to `pixels`."""
    U, sv, Wt = np.linalg.svd(M[:, pixels], full_matrices=False)  # M = U diag(sv) Wt
    k = int(np.sum(sv > threshold * sv[0]))
    Uk = U[:, :k]
    P = Uk @ Uk.T
    P = 0.5 * (P + P.T)  # exactly symmetric
    X = (Wt[:k].T / sv[:k]) @ Uk.T
    for a in (P, X, sv, pixels):
        a.setflags(write=False)
    return XPSubspace(projector=P, from_flux=X, pixels=pixels, singular_values=sv, rank=k)


@dataclass(frozen=True, eq=False)
class XPRepresentation:
    """The representation for one sampling and threshold: `both`, `bp_only`, `rp_only` constructions."""

    sampling: XPSampling
    threshold: float
    both: XPSubspace = field(repr=False)
    bp_only: XPSubspace = field(repr=False)
    rp_only: XPSubspace = field(repr=False)

    @property
    def id(self) -> str:
        return representation_id(self.threshold, self.sampling.grid_id)

    @property
    def rank(self) -> int:
        """Number of singular values kept in the two-band construction."""
        return self.both.rank


def build_representation(
    sampling: XPSampling | None = None, threshold: float = DEFAULT_THRESHOLD
) -> XPRepresentation:
    """Build the projection matrices (see module docstring) for `sampling` (default GaiaXPy grid)."""
    if not (0.0 < threshold < 1.0):
        raise ValueError(f"threshold={threshold}; expected a relative singular-value cut in (0, 1)")
    s = default_sampling() if sampling is None else sampling
    all_pix = np.ones(s.n_wavelength, dtype=bool)
    only_bp = (s.weight_bp > 0) & (s.weight_rp == 0)
    only_rp = (s.weight_rp > 0) & (s.weight_bp == 0)
    rep = XPRepresentation(
        sampling=s,
        threshold=float(threshold),
        both=_subspace(s.A, all_pix, threshold),
        bp_only=_subspace(s.design_bp, only_bp, threshold),
        rp_only=_subspace(s.design_rp, only_rp, threshold),
    )
    logger.debug(
        "XP representation %s: rank %d (both), %d (BP alone), %d (RP alone)",
        rep.id,
        rep.both.rank,
        rep.bp_only.rank,
        rep.rp_only.rank,
    )
    return rep


@functools.lru_cache(maxsize=4)
def default_representation(threshold: float = DEFAULT_THRESHOLD) -> XPRepresentation:
    """Cached :func:`build_representation` on the default sampling."""
    return build_representation(default_sampling(), threshold)


def _bands(
    bp: np.ndarray | None, rp: np.ndarray | None, s: XPSampling, names: tuple[str, str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    n_rows = None
    for c in (bp, rp):
        if c is not None:
            n_rows = np.atleast_2d(np.asarray(c)).shape[0]
            break
    if n_rows is None:
        raise ValueError(f"{names[0]} and {names[1]} are both None; expected at least one band")
    a_bp = _as_batch(bp, s.n_bp, names[0], n_rows)
    a_rp = _as_batch(rp, s.n_rp, names[1], n_rows)
    if a_bp.shape[0] != a_rp.shape[0]:
        raise ValueError(
            f"{names[0]} has {a_bp.shape[0]} rows and {names[1]} {a_rp.shape[0]}; expected same N"
        )
    return a_bp, a_rp, np.all(np.isfinite(a_bp), axis=1), np.all(np.isfinite(a_rp), axis=1)


def project_coefficients(
    bp: np.ndarray | None, rp: np.ndarray | None, representation: XPRepresentation | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Representation (bp' (N, n_bp), rp' (N, n_rp)) of archive continuous coefficients [e- s^-1].

    bp: (N, n_bp), rp: (N, n_rp), full (untruncated) archive coefficients; a row with any non-finite
    value (or None) is a missing band: the other band is projected with its single-band construction and
    the missing one returned NaN. Both missing: NaN. float64.
    """
    rep = default_representation() if representation is None else representation
    s = rep.sampling
    a_bp, a_rp, ok_bp, ok_rp = _bands(bp, rp, s, ("bp", "rp"))
    out_bp = np.full_like(a_bp, np.nan)
    out_rp = np.full_like(a_rp, np.nan)
    both = ok_bp & ok_rp
    if both.any():
        c = np.concatenate([a_bp[both], a_rp[both]], axis=1) @ rep.both.projector
        out_bp[both], out_rp[both] = c[:, : s.n_bp], c[:, s.n_bp :]
    bp_alone = ok_bp & ~ok_rp
    if bp_alone.any():
        out_bp[bp_alone] = a_bp[bp_alone] @ rep.bp_only.projector
    rp_alone = ok_rp & ~ok_bp
    if rp_alone.any():
        out_rp[rp_alone] = a_rp[rp_alone] @ rep.rp_only.projector
    return out_bp, out_rp


def _block_variance(
    P_rows: np.ndarray, e: np.ndarray, corr: np.ndarray | None, n: int, chunk: int
) -> np.ndarray:
    """diag(Pᵀ C P) contribution of one band block: P_rows (n, m) rows of P for that band, e (N, n)."""
    if corr is None:
        return e**2 @ P_rows**2  # (N, m)
    out = np.empty((e.shape[0], P_rows.shape[1]))
    for start in range(0, e.shape[0], chunk):
        sl = slice(start, start + chunk)
        R = correlation_matrix(corr[sl], n)  # (n_chunk, n, n)
        Q = e[sl, :, None] * P_rows[None, :, :]  # (n_chunk, n, m)
        out[sl] = np.einsum("nim,nim->nm", Q, R @ Q)
    return out


def _corr_batch(corr: np.ndarray | None, n_rows: int, name: str) -> np.ndarray | None:
    if corr is None:
        return None
    a = np.asarray(corr, dtype=np.float64)
    if a.ndim == 1:
        a = a[None, :]
    if a.shape[0] != n_rows:
        raise ValueError(f"{name} has {a.shape[0]} rows, expected {n_rows}")
    return a


def project_coefficient_errors(
    bp_errors: np.ndarray | None,
    rp_errors: np.ndarray | None,
    bp_correlations: np.ndarray | None = None,
    rp_correlations: np.ndarray | None = None,
    representation: XPRepresentation | None = None,
    *,
    chunk: int = 1024,
) -> tuple[np.ndarray, np.ndarray]:
    """1-sigma errors of :func:`project_coefficients` output: sqrt(diag(P C P)), (N, n_bp), (N, n_rp).

    bp_errors/rp_errors: (N, n) `X_coefficient_errors`; bp/rp_correlations: (N, n(n-1)/2)
    `X_coefficient_correlations` (strict lower triangle, row-major) or None for uncorrelated errors.
    Missing band (non-finite errors or None): single-band construction, NaN for the missing band.
    """
    rep = default_representation() if representation is None else representation
    s = rep.sampling
    e_bp, e_rp, ok_bp, ok_rp = _bands(bp_errors, rp_errors, s, ("bp_errors", "rp_errors"))
    n_rows = e_bp.shape[0]
    r_bp = _corr_batch(bp_correlations, n_rows, "bp_correlations")
    r_rp = _corr_batch(rp_correlations, n_rows, "rp_correlations")
    var = np.full((n_rows, s.n_bp + s.n_rp), np.nan)
    both = ok_bp & ok_rp
    if both.any():
        P = rep.both.projector
        var[both] = _block_variance(
            P[: s.n_bp], e_bp[both], None if r_bp is None else r_bp[both], s.n_bp, chunk
        ) + _block_variance(P[s.n_bp :], e_rp[both], None if r_rp is None else r_rp[both], s.n_rp, chunk)
    bp_alone = ok_bp & ~ok_rp
    if bp_alone.any():
        var[bp_alone, : s.n_bp] = _block_variance(
            rep.bp_only.projector, e_bp[bp_alone], None if r_bp is None else r_bp[bp_alone], s.n_bp, chunk
        )
    rp_alone = ok_rp & ~ok_bp
    if rp_alone.any():
        var[rp_alone, s.n_bp :] = _block_variance(
            rep.rp_only.projector, e_rp[rp_alone], None if r_rp is None else r_rp[rp_alone], s.n_rp, chunk
        )
    err = np.sqrt(var)
    return err[:, : s.n_bp], err[:, s.n_bp :]


def _sampled_cases(valid: np.ndarray, rep: XPRepresentation) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N,) masks: both bands usable, BP alone, RP alone, from the (N, n_wl) finite-pixel mask.

    A band is missing only when ALL pixels where it alone contributes are non-finite; the other band's
    pixels must then all be finite. Any other NaN pattern matches no case (the caller returns NaN).
    """
    full = np.all(valid, axis=1)
    bp_all = np.all(valid[:, rep.bp_only.pixels], axis=1)
    rp_all = np.all(valid[:, rep.rp_only.pixels], axis=1)
    bp_none = ~np.any(valid[:, rep.bp_only.pixels], axis=1)
    rp_none = ~np.any(valid[:, rep.rp_only.pixels], axis=1)
    return full, bp_all & rp_none, rp_all & bp_none


def coefficients_from_sampled(
    flux: np.ndarray, representation: XPRepresentation | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Representation (bp' (N, n_bp), rp' (N, n_rp)) of sampled spectra: f @ X (least squares in the subspace).

    flux: (N, n_wl) merged flux [W m^-2 nm^-1] on the representation's grid (GaiaXPy default,
    336–1020 nm / 2 nm). Unweighted least squares restricted to the kept subspace: the subspace's
    condition number is ≤ 1/threshold (1e5), so noise is not amplified the way a full inverse does.
    A row finite everywhere uses both bands; a row with every pixel where BP (RP) alone contributes NaN
    and every RP-only (BP-only) pixel finite is missing BP (RP): single-band construction, the missing
    band NaN (overlap pixels ignored). Any other NaN pattern, e.g. a few bad pixels: all NaN (no silent
    imputation; use :func:`xpengine.spectra.flux_to_coefficients` with weights for such spectra). float64.
    """
    rep = default_representation() if representation is None else representation
    s = rep.sampling
    f = _as_batch(flux, s.n_wavelength, "flux")
    valid = np.isfinite(f)
    full, bp_alone, rp_alone = _sampled_cases(valid, rep)
    out_bp = np.full((f.shape[0], s.n_bp), np.nan)
    out_rp = np.full((f.shape[0], s.n_rp), np.nan)
    if full.any():
        c = f[full] @ rep.both.from_flux
        out_bp[full], out_rp[full] = c[:, : s.n_bp], c[:, s.n_bp :]
    if bp_alone.any():
        out_bp[bp_alone] = f[np.ix_(bp_alone, rep.bp_only.pixels)] @ rep.bp_only.from_flux
    if rp_alone.any():
        out_rp[rp_alone] = f[np.ix_(rp_alone, rep.rp_only.pixels)] @ rep.rp_only.from_flux
    n_bad = int(np.sum(~(full | bp_alone | rp_alone)))
    if n_bad:
        logger.debug("coefficients_from_sampled: %d of %d spectra with unusable NaN pattern", n_bad, len(f))
    return out_bp, out_rp


GRID_RESIDUAL_MAX = 5e-4
"""The most of a sampled spectrum the XP basis may leave unexplained (`projection_residual`) before the
spectrum is taken to lie on another grid: 25× what Gaia's own sampled spectra leave, 2.7× below what a
grid shifted by 1 nm leaves (session 32)."""


def projection_residual(
    flux: np.ndarray,
    representation: XPRepresentation | None = None,
    coefficients: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """(N,) the rms of what the XP basis cannot reproduce of each sampled spectrum (f − (f X) A), over the
    rms of the spectrum; NaN where a pixel is not finite. A Gaia XP spectrum sampled on the
    representation's grid (the archive's XP_SAMPLED, GaiaXPy's `calibrate`) is the basis' own image: its
    residual is the rounding of its text, 1.7e-5 to 1.8e-5 on GaiaXPy's and the archive's files (measured
    in session 32). The same spectra sampled on a grid 1 nm off (GaiaXPy's `calibrator_solution_v211w`, or
    resampled by 1 nm) leave 1.4e-3 to 4.5e-3: read on the default grid they gave a 1 M☉ star at 1 kpc for
    Proxima Centauri (review of session 32). coefficients: (bp', rp') that :func:`coefficients_from_sampled`
    already gave for these spectra, so that they are not projected twice (its rows finite everywhere
    are exactly f X)."""
    rep = default_representation() if representation is None else representation
    f = _as_batch(flux, rep.sampling.n_wavelength, "flux")
    full = np.all(np.isfinite(f), axis=1)
    out = np.full(f.shape[0], np.nan)
    if full.any():
        ff = f[full]
        c = ff @ rep.both.from_flux if coefficients is None else np.hstack(coefficients)[full]
        res = ff - c @ rep.sampling.A
        with np.errstate(invalid="ignore", divide="ignore"):
            out[full] = np.sqrt(np.mean(res**2, axis=1) / np.mean(ff**2, axis=1))
    return out


def sampled_coefficient_errors(
    flux_error: np.ndarray, representation: XPRepresentation | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """1-sigma errors of :func:`coefficients_from_sampled` output, sqrt(diag(Xᵀ diag(σ²) X)).

    flux_error: (N, n_wl) 1-sigma flux errors, taken as independent; its NaN pattern selects the
    construction exactly as the flux's does in :func:`coefficients_from_sampled`.
    """
    rep = default_representation() if representation is None else representation
    s = rep.sampling
    sig = _as_batch(flux_error, s.n_wavelength, "flux_error")
    valid = np.isfinite(sig)
    full, bp_alone, rp_alone = _sampled_cases(valid, rep)
    out_bp = np.full((sig.shape[0], s.n_bp), np.nan)
    out_rp = np.full((sig.shape[0], s.n_rp), np.nan)
    if full.any():
        v = sig[full] ** 2 @ rep.both.from_flux**2
        out_bp[full], out_rp[full] = np.sqrt(v[:, : s.n_bp]), np.sqrt(v[:, s.n_bp :])
    if bp_alone.any():
        out_bp[bp_alone] = np.sqrt(sig[np.ix_(bp_alone, rep.bp_only.pixels)] ** 2 @ rep.bp_only.from_flux**2)
    if rp_alone.any():
        out_rp[rp_alone] = np.sqrt(sig[np.ix_(rp_alone, rep.rp_only.pixels)] ** 2 @ rep.rp_only.from_flux**2)
    return out_bp, out_rp


def token_representation() -> Any:
    """The engine's XP representation as the callable `xpengine.features.build_tokens` takes.

    `(bp, rp, bp_err, rp_err) -> (bp', rp', bp_err', rp_err')`: coefficients projected onto the
    well-determined subspace (see `project_coefficients`); errors propagated without the coefficient
    correlations, sqrt(diag(P diag(e²) Pᵀ)). Every path into the model (archive coefficients, sampled
    spectra, simulations) must use this representation, identified by `REPRESENTATION_ID`.
    """

    def project(bp: Any, rp: Any, bp_err: Any, rp_err: Any) -> tuple[Any, Any, Any, Any]:
        bp_p, rp_p = project_coefficients(bp, rp)
        bp_e, rp_e = project_coefficient_errors(bp_err, rp_err)
        return bp_p, rp_p, bp_e, rp_e

    project.__qualname__ = "xpengine.spectra.representation.token_representation"
    return project
