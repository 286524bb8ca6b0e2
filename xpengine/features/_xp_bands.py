"""The XP coefficient bands of `build_tokens`' input: reading one band with its errors and relevancy
counts, dropping corrupt rows (`xp_band`, `flag_corrupt`), synthetic G and BP−RP where gaia_source gives
no G (`fill_g_from_xp`), applying an optional representation (`Representation`) with the vocabulary's
shape check, and the relevancy-masked, G-normalised XP tokens (`put_xp_tokens`). Used only by
`xpengine.features.tokens.build_tokens`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

from xpengine.features._columns import InputColumns
from xpengine.features._token_steps import TokenOutput
from xpengine.features.flags import SourceFlag
from xpengine.features.normalise import G_ZERO_POINT_MAG
from xpengine.features.relevancy import relevancy_mask
from xpengine.features.vocabulary import Vocabulary
from xpengine.io.schema import MAX_ABS_XP_COEFFICIENT

if TYPE_CHECKING:
    from xpengine.features.tokens import Representation

__all__ = [
    "XPBand",
    "apply_representation",
    "corrupt_rows",
    "fill_g_from_xp",
    "flag_corrupt",
    "flag_g_mismatch",
    "put_xp_tokens",
    "xp_band",
]

logger = logging.getLogger("xpengine.features.tokens")

XPBand = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]
"""What `xp_band` returns: coefficients (N, w), errors (N, w), present (N,), n_relevant (N,) or None,
corrupt (N,)."""


def corrupt_rows(values: np.ndarray, errors: np.ndarray, present: np.ndarray) -> np.ndarray:
    """(N,) bool: present rows with a coefficient NaN, ±inf or beyond ±MAX_ABS_XP_COEFFICIENT, an error
    ±inf, negative or beyond the bound (NaN errors are "unknown", allowed), or every coefficient exactly 0
    (a missing band filled with zeros: no spectrum is 0 in every order; read as one, its synthetic flux
    made a 9,100 K star a 3,400 K giant, found by a review). values/errors (N, w).

    Row reductions only (max/min propagate NaN, fmax/fmin skip it): no (N, w) temporaries."""
    if values.shape[1] == 0:
        return np.zeros(values.shape[0], dtype=bool)
    with np.errstate(invalid="ignore"):
        top, bottom = values.max(axis=1), values.min(axis=1)
        ok = (
            (top <= MAX_ABS_XP_COEFFICIENT)
            & (bottom >= -MAX_ABS_XP_COEFFICIENT)
            & ~((top == 0) & (bottom == 0))
        )
        bad_err = (np.fmax.reduce(errors, axis=1) > MAX_ABS_XP_COEFFICIENT) | (
            np.fmin.reduce(errors, axis=1) < 0
        )
    return present & (~ok | bad_err)


def xp_band(cols: InputColumns, band: str, n_expected: int) -> XPBand:
    """(coefficients (N, w), errors (N, w), present (N,), n_relevant (N,) or None, corrupt (N,)) of one
    band; corrupt rows (`corrupt_rows`) are returned as missing (NaN, not present)."""
    n = cols.n
    coef = cols.band(f"{band}_coefficients")
    err = cols.band(f"{band}_coefficient_errors")
    if coef is None:
        values = np.full((n, n_expected), np.nan)
        present = np.zeros(n, dtype=bool)
    else:
        values, present = coef
        if values.shape[1] == 0:
            values = np.full((n, n_expected), np.nan)
    w = values.shape[1]
    if err is None:
        errors = np.full((n, w), np.nan)
    else:
        errors, _ = err
        if errors.shape[1] == 0:
            errors = np.full((n, w), np.nan)
        elif errors.shape[1] != w:
            raise ValueError(
                f"column '{band}_coefficient_errors' has {errors.shape[1]} entries per row but "
                f"'{band}_coefficients' has {w}"
            )
    n_relevant = cols.scalar(f"{band}_n_relevant_bases")
    corrupt = corrupt_rows(values, errors, present)
    present = present & ~corrupt
    if not present.all():  # band arrays may be read-only views of Arrow buffers: never edit in place
        values = np.where(present[:, None], values, np.nan)
        errors = np.where(present[:, None], errors, np.nan)
    return values, errors, present, n_relevant, corrupt


def apply_representation(
    representation: Representation | None,
    bp: np.ndarray,
    rp: np.ndarray,
    bp_err: np.ndarray,
    rp_err: np.ndarray,
    vocabulary: Vocabulary,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    n = bp.shape[0]
    if representation is not None:
        f64 = [np.asarray(a, dtype=np.float64) for a in (bp, rp, bp_err, rp_err)]
        out = representation(*f64)
        if not (isinstance(out, tuple) and len(out) == 4):
            raise ValueError(
                f"representation {representation!r} must return a tuple (bp, rp, bp_err, rp_err), "
                f"got {type(out).__name__}"
            )
        bp, rp, bp_err, rp_err = (np.asarray(a, dtype=np.float64) for a in out)
        where = f"representation {getattr(representation, '__name__', representation)!r} output"
    else:
        where = "column"
    for label, arr, want in (
        ("bp", bp, vocabulary.n_bp),
        ("rp", rp, vocabulary.n_rp),
        ("bp errors", bp_err, vocabulary.n_bp),
        ("rp errors", rp_err, vocabulary.n_rp),
    ):
        if arr.shape != (n, want):
            col = {
                "bp": "bp_coefficients",
                "rp": "rp_coefficients",
                "bp errors": "bp_coefficient_errors",
                "rp errors": "rp_coefficient_errors",
            }[label]
            raise ValueError(
                f"{where} {col!r}: shape {arr.shape}, but vocabulary {vocabulary.name} expects "
                f"({n}, {want}) ({label}); pass a matching vocabulary or a representation that maps them"
            )
    return bp, rp, bp_err, rp_err


def flag_corrupt(
    cols: InputColumns, band: str, corrupt: np.ndarray, source_id: np.ndarray, out: TokenOutput
) -> None:
    """Log the rows `xp_band` found corrupt in `band` (count and the first) and flag them READ_PROBLEM."""
    if not corrupt.any():
        return
    first = int(np.flatnonzero(corrupt)[0])
    logger.warning(
        "%s: %d row(s) with NaN, infinite or absurd (|value| > %.0e e-/s) %s coefficients or "
        "errors, or all coefficients 0, e.g. row %d (source_id %d): band treated as missing, READ_PROBLEM set",
        cols.source or "input",
        int(corrupt.sum()),
        MAX_ABS_XP_COEFFICIENT,
        band.upper(),
        first,
        int(source_id[first]),
    )
    out.flag(corrupt, SourceFlag.READ_PROBLEM)


def fill_g_from_xp(
    bp_band: XPBand,
    rp_band: XPBand,
    g: np.ndarray,
    g_flux: np.ndarray,
    out: TokenOutput,
    need_colour: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray] | None]:
    """XP-only photometry: where gaia_source gives no G flux and both bands are present, the calibrated
    synthetic G of the raw DR3 coefficients (`xpengine.features.synthetic_photometry`; σ 2.7 mmag
    against real G), flagged G_FROM_XP instead of NO_GAIA_PHOTOMETRY; and the synthetic BP−RP (σ 2.5
    mmag) of those rows and of the rows `need_colour` (N,) bool (no gaia_source BP−RP).

    Returns (G [mag], G flux [e⁻/s], xp_bprp, g_xp): G and its flux with those rows filled (the inputs
    themselves when no row is), the synthetic BP−RP (rows, colour, error) of the rows computed (None when
    no row needed either or the bands are not DR3's 55 coefficients), and the synthetic G [mag] (N,) of
    every row with both bands (NaN elsewhere): `flag_g_mismatch` holds a given G against it.
    """
    bp, bp_err, bp_present = bp_band[:3]
    rp, rp_err, rp_present = rp_band[:3]
    g_xp = np.full(out.n, np.nan)
    need_g = ~np.isfinite(g_flux) & bp_present & rp_present
    need = need_g if need_colour is None else need_g | (need_colour & bp_present & rp_present)
    both = bp_present & rp_present
    if not (both.any() and bp.shape[1] == 55 and rp.shape[1] == 55):
        return g, g_flux, None, g_xp
    from xpengine.features.synthetic_photometry import (
        calibrated_bp_rp,
        calibrated_g_flux,
        synthetic_gaia_photometry,
    )

    rows = np.flatnonzero(both)  # every row with both bands: its own G checks a given one
    phot = synthetic_gaia_photometry(  # G, BP, RP integrated once; G and BP−RP both come from it
        bp[rows],
        rp[rows],
        None if bp_err is None else bp_err[rows],
        None if rp_err is None else rp_err[rows],
    )
    gx, _ = calibrated_g_flux(phot)
    ok = np.isfinite(gx) & (gx > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        g_xp[rows[ok]] = G_ZERO_POINT_MAG - 2.5 * np.log10(gx[ok])
    ok &= need[rows]  # G and BP−RP filled only where needed
    rows_ok = rows[ok]
    filled = np.zeros(out.n, dtype=bool)
    filled[rows_ok] = True
    filled &= need_g  # G only where gaia_source has none
    g_flux = g_flux.copy()
    g_flux[filled] = gx[ok][need_g[rows_ok]]
    with np.errstate(divide="ignore", invalid="ignore"):
        g = np.where(np.isfinite(g), g, G_ZERO_POINT_MAG - 2.5 * np.log10(g_flux))
    out.flag(filled, SourceFlag.G_FROM_XP)
    out.flags[filled] &= ~np.int64(int(SourceFlag.NO_GAIA_PHOTOMETRY))
    c, ce = calibrated_bp_rp(phot)
    return g, g_flux, (rows_ok, c[ok], ce[ok]), g_xp


G_MISMATCH_BRIGHTER, G_MISMATCH_FAINTER = 0.3, 1.5
"""How far [mag] a given G may be brighter / fainter than the synthetic G of the star's own XP before it is
flagged G_MISMATCH. The two agree to 2.7 mmag for most DR3 stars. A blend's XP window holds its neighbour's
light, so its XP may be brighter than its G: on the 32,082 real APOGEE×XP dev stars with their DR3 G, 1 %
are more than 0.3 mag so (99 % of those with a BP/RP excess above 3σ), the most 1.41 mag (a review). A G
brighter than its own XP has no such cause: 3 of those stars are beyond 0.3 mag. Beyond either limit the G
is another star's, a misaligned row's or a placeholder, which the XP are normalised by (every label moves: a
G 0.9 mag bright made a 6,100 K star 3,500 K, found by a review)."""


def flag_g_mismatch(
    cols: InputColumns, g: np.ndarray, g_xp: np.ndarray, source_id: np.ndarray, out: TokenOutput
) -> None:
    """Flag G_MISMATCH (and warn, naming the file, the first row and both values) where the given G
    (N,) differs from the synthetic G of the star's own XP (N,; NaN where not computed) by more than
    `G_MISMATCH_BRIGHTER` (G the brighter) or `G_MISMATCH_FAINTER` (its XP the brighter, beyond what a
    blend does). The given G stays the normalisation: the flag says the labels rest on it."""
    with np.errstate(invalid="ignore"):
        diff = g - g_xp
        bad = np.isfinite(diff) & ((diff < -G_MISMATCH_BRIGHTER) | (diff > G_MISMATCH_FAINTER))
    bad &= (out.flags & int(SourceFlag.G_FROM_XP)) == 0
    if not bad.any():
        return
    first = int(np.flatnonzero(bad)[0])
    logger.warning(
        "%s: %d row(s) whose G is more than %.1f mag brighter or %.1f mag fainter than the synthetic G of their "
        "own XP, e.g. row %d (source_id %d): G %.3f given, %.3f from its XP; the XP are normalised by the given "
        "G (a G of another star, a misaligned row or a placeholder?): G_MISMATCH set",
        cols.source or "input",
        int(bad.sum()),
        G_MISMATCH_BRIGHTER,
        G_MISMATCH_FAINTER,
        first,
        int(source_id[first]),
        float(g[first]),
        float(g_xp[first]),
    )
    out.flag(bad, SourceFlag.G_MISMATCH)


def put_xp_tokens(
    out: TokenOutput,
    bands: tuple[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None], ...],  # bp, rp
    g_flux: np.ndarray,
    *,
    min_relevant: int,
    propagate_from: int | None,
) -> None:
    """The XP tokens: each band's (name, coefficients (N, w), errors (N, w), present (N,), n_relevant
    (N,) or None) masked by relevancy (`relevancy.relevancy_mask`, irrelevant → NaN) and divided by the
    G flux (N,) [e⁻/s], written straight into the float32 output (no (N, w) temporaries); flags NO_BP,
    NO_RP, FEW_RELEVANT_BASES (a present band with fewer than `min_relevant` relevant coefficients) and
    NO_RELEVANCY (a present band without relevancy counts: all its coefficients kept).
    """
    n, vocabulary = out.n, out.vocabulary
    for band, _, _, present, _ in bands:
        out.flag(~present, SourceFlag.NO_BP if band == "bp" else SourceFlag.NO_RP)
    few = np.zeros(n, dtype=bool)
    unknown = np.zeros(n, dtype=bool)  # a present band without relevancy counts: every order kept
    g_flux_col = g_flux[:, None]  # (N, 1) e-/s, NaN where unusable
    for band, coef, err, present, nrel in bands:
        width = vocabulary.n_bp if band == "bp" else vocabulary.n_rp
        if nrel is None:
            if present.any():
                logger.warning(
                    "no '%s_n_relevant_bases' column: all %s coefficients treated as relevant", band, band
                )
            nrel = np.full(n, np.nan)
        unknown |= present & ~np.isfinite(np.asarray(nrel, dtype=np.float64))
        mask = relevancy_mask(nrel, width, propagate_from=propagate_from) & present[:, None]  # (N, w)
        few |= present & (mask.sum(axis=1) < min_relevant)
        idx = vocabulary.indices([f"{band}{i}" for i in range(width)])
        contiguous = idx == list(range(idx[0], idx[0] + width))
        for src, dst_all in ((coef, out.values), (err, out.errors)):
            # normalise_by_g_flux written straight into the float32 output (no (N, w) temporaries)
            dst = dst_all[:, idx[0] : idx[0] + width] if contiguous else np.empty((n, width), np.float32)
            np.divide(src, g_flux_col, out=dst, casting="unsafe")
            dst[~mask] = np.nan
            if not contiguous:
                dst_all[:, idx] = dst
    out.flag(few, SourceFlag.FEW_RELEVANT_BASES)
    out.flag(unknown, SourceFlag.NO_RELEVANCY)
