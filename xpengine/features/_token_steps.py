"""The steps of `build_tokens` other than the XP bands: the output being filled (`TokenOutput`), the
upstream flags, G photometry, colours, the pseudo-luminosity, extinction and the label tokens. Each step
reads input columns and writes its tokens and flags into a `TokenOutput`. Used only by
`xpengine.features.tokens.build_tokens` (and the XP steps in `_xp_bands`).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from xpengine.features._columns import InputColumns
from xpengine.features.astrometry import ebv_to_logebv, pseudo_luminosity
from xpengine.features.colours import bp_rp_colour, tmass_colours
from xpengine.features.flags import SourceFlag
from xpengine.features.normalise import G_ZERO_POINT_MAG, g_flux_from_columns
from xpengine.features.vocabulary import Vocabulary

__all__ = [
    "TokenOutput",
    "g_photometry",
    "gaia_bp_rp",
    "put_bp_rp",
    "put_extinction",
    "put_labels",
    "put_pseudo_luminosity",
    "put_tmass_colours",
    "upstream_flags",
]

logger = logging.getLogger("xpengine.features.tokens")

COMPUTED_TOKENS = frozenset({"bprp", "jh", "jk", "logebv", "g_fakemag"})
"""Tokens `build_tokens` computes from other columns; never read by name."""

Column = np.ndarray | None
"""An input column (N,) as `InputColumns.scalar` gives it, None when absent."""


class TokenOutput:
    """The token matrices being filled: values (N, T) float32 (NaN = not set), errors (N, T) float32
    and flags (N,) int64, in `vocabulary` order."""

    def __init__(self, n: int, vocabulary: Vocabulary) -> None:
        self.n = n
        self.vocabulary = vocabulary
        self.t_index = {name: j for j, name in enumerate(vocabulary.names)}
        self.values = np.full((n, len(vocabulary)), np.nan, dtype=np.float32)  # (N, T)
        self.errors = np.zeros((n, len(vocabulary)), dtype=np.float32)  # (N, T)
        self.flags = np.zeros(n, dtype=np.int64)

    def put(self, name: str, value: np.ndarray, error: np.ndarray | None) -> None:
        """Set token `name` (ignored when the vocabulary lacks it); error None = unknown."""
        if name in self.t_index:
            j = self.t_index[name]
            self.values[:, j] = value
            self.errors[:, j] = np.nan if error is None else error

    def flag(self, mask: np.ndarray, bit: SourceFlag) -> None:
        self.flags[mask] |= np.int64(int(bit))

    def finish(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(values, errors, flags) with the missing-token convention: NaN value ⇔ error 0; unknown
        errors are 0."""
        missing = ~np.isfinite(self.values)
        self.values[missing] = np.nan
        self.errors[missing | ~np.isfinite(self.errors)] = 0.0
        return self.values, self.errors, self.flags


def upstream_flags(cols: InputColumns, out: TokenOutput) -> None:
    """OR the input's `flags` into the output; a non-null `read_problem` sets READ_PROBLEM."""
    upstream = cols.scalar("flags")
    if upstream is not None:
        out.flags |= np.where(np.isfinite(upstream), upstream, 0).astype(np.int64)
    read_problem = cols.non_null("read_problem")  # xpengine.io: text of a row-level problem, else null
    if read_problem is not None:
        out.flag(read_problem, SourceFlag.READ_PROBLEM)


def g_photometry(gaia: dict[str, Column], out: TokenOutput) -> tuple[np.ndarray, np.ndarray]:
    """(G [mag], G flux [e⁻/s]) (N,) from the gaia_source columns `gaia`, NaN where unusable; flags
    NO_GAIA_SOURCE (no gaia_source column finite) and NO_GAIA_PHOTOMETRY (no usable G flux)."""
    n = out.n
    present_gaia = [v for v in gaia.values() if v is not None]
    if present_gaia:
        no_gaia = np.logical_and.reduce([~np.isfinite(v) for v in present_gaia])
    else:
        no_gaia = np.ones(n, dtype=bool)
        logger.debug("no gaia_source columns in the input: all %d rows flagged NO_GAIA_SOURCE", n)
    out.flag(no_gaia, SourceFlag.NO_GAIA_SOURCE)
    g_mag = gaia["phot_g_mean_mag"]
    g_flux = g_flux_from_columns(
        g_mag if g_mag is not None else np.full(n, np.nan), gaia["phot_g_mean_flux"]
    )  # (N,) e-/s
    with np.errstate(divide="ignore", invalid="ignore"):
        g_from_flux = G_ZERO_POINT_MAG - 2.5 * np.log10(g_flux)
    g = g_from_flux if g_mag is None else np.where(np.isfinite(g_mag), g_mag, g_from_flux)
    if g_mag is not None and gaia["phot_g_mean_flux"] is not None:
        with np.errstate(invalid="ignore"):
            off = np.abs(g_mag - g_from_flux) > 0.01  # DR3 derives one from the other: they agree to ~1e-6
        if off.any():
            k = int(np.flatnonzero(off)[0])
            logger.warning(
                "%d row(s) whose phot_g_mean_mag and phot_g_mean_flux disagree by more than 0.01 mag (e.g. row "
                "%d: %.4f against %.4f from the flux): the XP are normalised by the flux",
                int(off.sum()),
                k,
                float(g_mag[k]),
                float(g_from_flux[k]),
            )
    with np.errstate(invalid="ignore"):
        absurd = np.isfinite(g) & ((g < G_MAG_RANGE[0]) | (g > G_MAG_RANGE[1]))
    if absurd.any():  # a flux given as a magnitude, a placeholder: no star's G (found by a review)
        k = int(np.flatnonzero(absurd)[0])
        logger.warning(
            "%d row(s) with a G outside %g to %g mag (e.g. row %d: %g): not a G (a flux given as a magnitude, "
            "a placeholder?); taken as missing, READ_PROBLEM set",
            int(absurd.sum()),
            *G_MAG_RANGE,
            k,
            float(g[k]),
        )
        g, g_flux = np.where(absurd, np.nan, g), np.where(absurd, np.nan, g_flux)
        out.flag(absurd, SourceFlag.READ_PROBLEM)
    out.flag(~np.isfinite(g_flux), SourceFlag.NO_GAIA_PHOTOMETRY)
    return g, g_flux


G_MAG_RANGE = (-2.0, 25.0)
"""The G [mag] a star can have (DR3's brightest sources are near G 2, XP ends at 17.65): outside, the
value is taken as missing."""


def gaia_bp_rp(gaia: dict[str, Column], n: int) -> tuple[np.ndarray, np.ndarray | None]:
    """BP−RP and its error (N,) from the gaia_source columns `gaia` (`colours.bp_rp_colour`); NaN (error
    None) where gaia_source gives none."""
    if gaia["bp_rp"] is not None or (
        gaia["phot_bp_mean_mag"] is not None and gaia["phot_rp_mean_mag"] is not None
    ):
        return bp_rp_colour(
            gaia["phot_bp_mean_mag"],
            gaia["phot_rp_mean_mag"],
            gaia["phot_bp_mean_flux_over_error"],
            gaia["phot_rp_mean_flux_over_error"],
            bp_rp=gaia["bp_rp"],
        )
    return np.full(n, np.nan), None


def put_bp_rp(
    gaia_colour: tuple[np.ndarray, np.ndarray | None],
    out: TokenOutput,
    xp_bprp: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
) -> None:
    """The `bprp` token from gaia_source's colour (`gaia_bp_rp`), filled where missing from the XP
    synthetic photometry `xp_bprp` = (rows, colour, error) when given (flag BP_RP_FROM_XP); flags
    NO_BP_RP_COLOUR."""
    n = out.n
    bprp, bprp_err = gaia_colour
    if xp_bprp is not None:
        rows_ok, c, ce = xp_bprp
        fill = ~np.isfinite(bprp[rows_ok]) & np.isfinite(c)
        bprp = np.asarray(bprp, dtype=np.float64).copy()
        bprp_err = np.full(n, np.nan) if bprp_err is None else np.asarray(bprp_err, dtype=np.float64).copy()
        bprp[rows_ok[fill]] = c[fill]
        bprp_err[rows_ok[fill]] = ce[fill]
        from_xp = np.zeros(n, dtype=bool)
        from_xp[rows_ok[fill]] = True
        out.flag(from_xp, SourceFlag.BP_RP_FROM_XP)
    out.put("bprp", bprp, bprp_err)
    out.flag(~np.isfinite(bprp), SourceFlag.NO_BP_RP_COLOUR)


def put_tmass_colours(tm: dict[str, Column], out: TokenOutput, *, require_error: bool) -> None:
    """The `jh` and `jk` tokens from the 2MASS columns `tm` (`colours.tmass_colours`); flags NO_2MASS."""
    n = out.n
    if tm["j_m"] is not None:
        nan = np.full(n, np.nan)
        jh, jh_err, jk, jk_err = tmass_colours(
            tm["j_m"],
            tm["j_msigcom"],
            nan if tm["h_m"] is None else tm["h_m"],
            tm["h_msigcom"],
            nan if tm["ks_m"] is None else tm["ks_m"],
            tm["ks_msigcom"],
            require_error=require_error,
        )
    else:
        jh = jk = np.full(n, np.nan)
        jh_err = jk_err = None
    out.put("jh", jh, jh_err)
    out.put("jk", jk, jk_err)
    out.flag(~np.isfinite(jh) & ~np.isfinite(jk), SourceFlag.NO_2MASS)


def sky_position(cols: InputColumns) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(ra, dec) [deg] (N,) where the input holds them as numbers, else (None, None): the parallax zero
    point's ecliptic latitude where `ecl_lat` is not given."""
    try:
        return cols.scalar("ra"), cols.scalar("dec")
    except ValueError:  # a text column: the catalogue passes it through, the zero point goes without it
        return None, None


def put_pseudo_luminosity(
    gaia: dict[str, Column],
    g: np.ndarray,
    out: TokenOutput,
    position: tuple[np.ndarray | None, np.ndarray | None] = (None, None),
    **options: Any,
) -> None:
    """The `g_fakemag` token (`astrometry.pseudo_luminosity` with `options`; `position`: (ra, dec) for
    a missing `ecl_lat`); flags NO_PARALLAX and NO_ZERO_POINT."""
    n = out.n
    if gaia["parallax"] is None:
        out.flag(np.ones(n, dtype=bool), SourceFlag.NO_PARALLAX)
        return
    lum = pseudo_luminosity(
        g,
        gaia["parallax"],
        gaia["parallax_error"] if gaia["parallax_error"] is not None else np.full(n, np.nan),
        ruwe=gaia["ruwe"],
        nu_eff_used_in_astrometry=gaia["nu_eff_used_in_astrometry"],
        pseudocolour=gaia["pseudocolour"],
        ecl_lat=gaia["ecl_lat"],
        astrometric_params_solved=gaia["astrometric_params_solved"],
        ra=position[0],
        dec=position[1],
        **options,
    )
    out.put("g_fakemag", lum.fakemag, lum.fakemag_error)
    out.flag(lum.no_parallax, SourceFlag.NO_PARALLAX)
    out.flag(lum.no_zero_point, SourceFlag.NO_ZERO_POINT)


def put_extinction(cols: InputColumns, out: TokenOutput, *, ebv_floor: float | None) -> None:
    """The `logebv` token: `logebv` directly, else from `ebv` (`astrometry.ebv_to_logebv`); flags
    NO_EXTINCTION."""
    logebv = cols.scalar("logebv")
    if logebv is not None:
        logebv_err = cols.scalar("logebv_error")
    else:
        ebv = cols.scalar("ebv")
        if ebv is not None:
            logebv, logebv_err = ebv_to_logebv(ebv, cols.scalar("ebv_error"), floor=ebv_floor)
        else:
            logebv, logebv_err = np.full(out.n, np.nan), None
    out.put("logebv", logebv, logebv_err)
    out.flag(~np.isfinite(logebv), SourceFlag.NO_EXTINCTION)


def put_labels(cols: InputColumns, out: TokenOutput) -> None:
    """Labels and any other non-XP, non-computed token given by name with `<name>_error`; `ln_age`
    falls back to ln(`age` [Gyr]) with σ = σ_age/age."""
    for tok in out.vocabulary.tokens:
        if tok.kind == "xp" or tok.name in COMPUTED_TOKENS:
            continue
        value = cols.scalar(tok.name)
        if value is not None:
            out.put(tok.name, value, cols.scalar(tok.error_name))
        elif tok.name == "ln_age" and (age := cols.scalar("age")) is not None:
            age_err = cols.scalar("age_error")
            ok = np.isfinite(age) & (age > 0)
            safe = np.where(ok, age, 1.0)
            out.put(
                "ln_age",
                np.where(ok, np.log(safe), np.nan),
                None if age_err is None else np.where(ok, np.abs(age_err) / safe, np.nan),
            )
