"""From Gaia (+2MASS, E(B−V), labels) columns to model tokens: `build_tokens`.

Input: a pyarrow Table / RecordBatch, a pandas DataFrame, or a dict of numpy arrays (a Ray Data
`map_batches` batch), with Gaia archive column names:

| group        | columns (all optional except `source_id`)                                              |
|--------------|----------------------------------------------------------------------------------------|
| XP           | `bp_coefficients`, `bp_coefficient_errors`, `bp_n_relevant_bases`, same for `rp_`:     |
|              | list / large_list / fixed_size_list columns (null or empty = missing band), or 2-D     |
|              | (N, n) arrays (NaN row = missing band) or 1-D object arrays of arrays in a dict        |
| gaia_source  | `phot_g_mean_mag`, `phot_g_mean_flux`, `phot_bp_mean_mag`, `phot_rp_mean_mag`, `bp_rp`, |
|              | `phot_bp_mean_flux_over_error`, `phot_rp_mean_flux_over_error`, `parallax`,            |
|              | `parallax_error`, `ruwe`, `nu_eff_used_in_astrometry`, `pseudocolour`, `ecl_lat`,      |
|              | `astrometric_params_solved`                                                            |
| 2MASS        | `j_m`, `j_msigcom`, `h_m`, `h_msigcom`, `ks_m`, `ks_msigcom`                           |
| extinction   | `ebv`, `ebv_error` [mag], or `logebv`, `logebv_error` directly (taken first)           |
| labels       | any other vocabulary token by name with `<name>_error` (`teff`, `logg`, `m_h`, `mass`,  |
|              | `ln_age`, `alpha_m`, …); `ln_age` falls back to ln(`age` [Gyr]), σ = σ_age/age          |
| upstream     | `flags` int: bits set upstream, OR-ed into the output flags; `read_problem` (string,   |
|              | null when fine, as `xpengine.io` writes it): non-null sets READ_PROBLEM                 |

Absent columns give missing tokens (NaN value, 0 error), never an error; a column of the wrong
shape or type is an error naming it. Every step is vectorised over rows (no Python loop per row).

Corrupt XP values: a present band whose coefficients hold a NaN, ±inf or |value| >
`xpengine.io.schema.MAX_ABS_XP_COEFFICIENT` (1e12 e⁻/s), or whose errors hold ±inf, a negative value or
|value| > that bound (NaN errors mean "unknown" and are allowed), is treated as missing for that row
(NO_BP / NO_RP, its tokens NaN) and sets READ_PROBLEM; the other band and the other tokens are kept.
`xpengine.io` readers already null such bands and report them in `read_problem`; this guards every
other input path.

Coefficient counts: the number of coefficients per band must equal the vocabulary's (`n_bp`, `n_rp`:
55 and 55, Gaia DR3, for the paper's vocabulary). Other counts (Gaia DR4 has 51 BP coefficients) raise
`CoefficientCountError` naming the file (schema metadata `xpengine.source` of the readers' output) and
the counts, whatever the representation: coefficients of another release are never mapped onto the
tokens of this one. The counts come from the data and from the readers' `xpengine.n_coefficients`
metadata.

Token recipe (Leung & Bovy 2024; Zhang et al. 2026 §2; REFERENCE §3):
1. XP: optional `representation(bp, rp, bp_err, rp_err)` on the raw coefficients, then relevancy
   masking (`relevancy.relevancy_mask`, irrelevant → NaN/0), then division by the G flux
   (`normalise.normalise_by_g_flux`, computed in place into the float32 output).
2. bprp, jh, jk: `colours.bp_rp_colour`, `colours.tmass_colours`.
3. g_fakemag: `astrometry.pseudo_luminosity` (zero point, σ_ϖ ≤ 0.1 mas, RUWE ≤ 1.4).
4. logebv: `astrometry.ebv_to_logebv`.
Flags: `flags.SourceFlag`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from xpengine.features._columns import InputColumns
from xpengine.features._xp_bands import apply_representation, xp_band
from xpengine.features.astrometry import (
    MAX_PARALLAX_ERROR_MAS,
    MAX_RUWE,
    ebv_to_logebv,
    pseudo_luminosity,
)
from xpengine.features.colours import bp_rp_colour, tmass_colours
from xpengine.features.flags import SourceFlag
from xpengine.features.normalise import G_ZERO_POINT_MAG, g_flux_from_columns
from xpengine.features.relevancy import PAPER_PROPAGATE_FROM, relevancy_mask
from xpengine.features.token_matrix import TokenMatrix
from xpengine.features.vocabulary import PAPER_VOCABULARY, Vocabulary
from xpengine.io.schema import (
    DR3_N_COEFFICIENTS,
    MAX_ABS_XP_COEFFICIENT,
)

__all__ = [
    "FEATURES_VERSION",
    "GAIA_SOURCE_COLUMNS",
    "TMASS_COLUMNS",
    "XP_COLUMNS",
    "CoefficientCountError",
    "Representation",
    "TokenBatch",
    "build_tokens",
]

logger = logging.getLogger(__name__)

FEATURES_VERSION = "1"
"""Version of the token recipe, stored in output metadata; bump when a formula changes."""

XP_COLUMNS: tuple[str, ...] = (
    "bp_coefficients",
    "bp_coefficient_errors",
    "bp_n_relevant_bases",
    "rp_coefficients",
    "rp_coefficient_errors",
    "rp_n_relevant_bases",
)
GAIA_SOURCE_COLUMNS: tuple[str, ...] = (
    "phot_g_mean_mag",
    "phot_g_mean_flux",
    "phot_bp_mean_mag",
    "phot_rp_mean_mag",
    "bp_rp",
    "phot_bp_mean_flux_over_error",
    "phot_rp_mean_flux_over_error",
    "parallax",
    "parallax_error",
    "ruwe",
    "nu_eff_used_in_astrometry",
    "pseudocolour",
    "ecl_lat",
    "astrometric_params_solved",
)
TMASS_COLUMNS: tuple[str, ...] = ("j_m", "j_msigcom", "h_m", "h_msigcom", "ks_m", "ks_msigcom")

_COMPUTED_TOKENS = frozenset({"bprp", "jh", "jk", "logebv", "g_fakemag"})


class CoefficientCountError(ValueError):
    """The input's XP coefficients per band differ from the vocabulary's (the model's), e.g. a Gaia DR4
    partition (51 BP coefficients) for a model trained on Gaia DR3 (55). The message names the file
    and the counts; `source`, `band`, `counts` and `expected` repeat them for programs."""

    def __init__(self, source: str, band: str, counts: list[int], expected: int, vocabulary: str) -> None:
        self.source = source
        self.band = band
        self.counts = counts
        self.expected = expected
        trained = f"Gaia DR3's {expected}" if expected == DR3_N_COEFFICIENTS else f"{expected}"
        super().__init__(
            f"{source}: {band.upper()} has {' and '.join(map(str, counts))} coefficients per source, "
            f"the model was trained on {trained} (vocabulary {vocabulary!r}: {band}0..{band}{expected - 1}); "
            "refusing to map them onto its tokens: data of another Gaia release need a model trained on "
            "that release"
        )


Representation = Callable[
    [np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
]
"""(bp (N, n), rp (N, n), bp_err, rp_err) → (bp', rp', bp_err', rp_err'), on raw coefficients [e⁻/s].

Rows of a missing band arrive as NaN and are re-masked afterwards whatever the callable returns.
The inputs have the vocabulary's widths (other coefficient counts raise `CoefficientCountError` first);
the outputs must be (N, vocabulary.n_bp) and (N, vocabulary.n_rp).
"""


@dataclass(frozen=True)
class TokenBatch(TokenMatrix):
    """Token matrices of N sources in vocabulary order (the model's input, physical units): a
    `TokenMatrix` with the sources' flags and the `build_tokens` settings."""

    flags: np.ndarray  # (N,) int64, SourceFlag bits
    parameters: dict[str, Any] = field(default_factory=dict)  # the build_tokens settings

    def column(self, name: str) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[override]
        """Value and error (N,) of one token (float32 views; KeyError when the vocabulary lacks it)."""
        j = self.vocabulary.index(name)
        return self.values[:, j], self.errors[:, j]

    def _subset_fields(self, idx: np.ndarray) -> dict[str, Any]:
        return {"flags": self.flags[idx]}

    def to_dict(self) -> dict[str, np.ndarray]:
        """Flat columns: `source_id`, `flags`, then `<token>` and `<token>_error` for every token.

        The form a Ray Data `map_batches` function returns.
        """
        out: dict[str, np.ndarray] = {"source_id": self.source_id, "flags": self.flags}
        for j, tok in enumerate(self.vocabulary.tokens):
            out[tok.name] = self.values[:, j]
            out[tok.error_name] = self.errors[:, j]
        return out

    def to_table(self, provenance: Mapping[str, Any] | None = None) -> pa.Table:
        """A pyarrow Table of `to_dict()` with metadata: vocabulary JSON, recipe version and parameters,
        the flag bit table, and free-form provenance (keys `xpengine.vocabulary`, `xpengine.features`,
        `xpengine.flags`, `xpengine.provenance`)."""
        table = pa.table({k: pa.array(v) for k, v in self.to_dict().items()})
        meta = {
            b"xpengine.vocabulary": self.vocabulary.to_json().encode(),
            b"xpengine.features": json.dumps(
                {"version": FEATURES_VERSION, "parameters": self.parameters}, default=str
            ).encode(),
            b"xpengine.flags": json.dumps({f.name: int(f) for f in SourceFlag if f.name}).encode(),
            b"xpengine.provenance": json.dumps(dict(provenance or {}), default=str).encode(),
        }
        return table.replace_schema_metadata(meta)


def _check_coefficient_counts(
    cols: InputColumns, vocabulary: Vocabulary, widths: dict[str, int] | None = None
) -> None:
    """Raise CoefficientCountError when a band's coefficient count (the reader's metadata, and the
    data's width when `widths` is given) differs from the vocabulary's."""
    for band, want in (("bp", vocabulary.n_bp), ("rp", vocabulary.n_rp)):
        seen = set(cols.declared_counts.get(band, []))
        if widths is not None and cols.has(f"{band}_coefficients"):
            seen.add(widths[band])
        wrong = sorted(seen - {want})
        if wrong:
            source = cols.source or f"input column '{band}_coefficients'"
            raise CoefficientCountError(source, band, wrong, want, vocabulary.name)


def build_tokens(
    data: Any,
    vocabulary: Vocabulary = PAPER_VOCABULARY,
    *,
    representation: Representation | None = None,
    min_relevant: int = 10,
    propagate_from: int | None = PAPER_PROPAGATE_FROM,
    apply_zero_point: bool = True,
    leung2023: bool = True,
    zero_point_fallback: float | None = None,
    max_parallax_error: float = MAX_PARALLAX_ERROR_MAS,
    max_ruwe: float = MAX_RUWE,
    ebv_floor: float | None = None,
    tmass_require_error: bool = True,
    g_from_xp: bool = True,
) -> TokenBatch:
    """Build the token matrices of a batch of sources (see the module docstring for columns).

    data: pyarrow Table/RecordBatch, pandas DataFrame or dict of numpy arrays, N rows.
    vocabulary: token order and XP lengths (n_bp, n_rp) of the output.
    representation: optional callable on the raw coefficients before relevancy masking and G
        normalisation (`Representation`); None keeps the archive coefficients.
    min_relevant: a present band with fewer relevant coefficients sets FEW_RELEVANT_BASES.
    propagate_from: relevancy propagation index (`relevancy.propagate_relevancy`); None disables it.
    apply_zero_point, leung2023, zero_point_fallback, max_parallax_error [mas], max_ruwe: see
        `astrometry.pseudo_luminosity`.
    ebv_floor: E(B−V) floor [mag] before the log (`astrometry.ebv_to_logebv`); None drops E ≤ 0.
    tmass_require_error: treat 2MASS magnitudes without an error (upper limits) as missing.
    g_from_xp: where no G photometry is given (XP files alone), normalise by the synthetic G flux of
        the star's own DR3 coefficients and fill a missing BP−RP from them too (flag G_FROM_XP;
        `xpengine.features.synthetic_photometry`: σ 2.7 mmag against real G, calibrated for
        8.5 < G < 15 and held at its edge outside).

    Returns a TokenBatch: values (N, T) float32 with NaN = missing, errors (N, T) float32 with
    0 = missing/unknown, flags (N,) int64 (`SourceFlag`).
    """
    if min_relevant < 0:
        raise ValueError(f"min_relevant must be >= 0, got {min_relevant}")
    cols = InputColumns(data)
    n = cols.n
    source_id = cols.source_id()
    if source_id.shape != (n,):
        raise ValueError(f"column 'source_id' has {source_id.shape[0]} rows, other columns {n}")
    names = vocabulary.names
    t_index = {name: j for j, name in enumerate(names)}
    values = np.full((n, len(vocabulary)), np.nan, dtype=np.float32)  # (N, T)
    errors = np.zeros((n, len(vocabulary)), dtype=np.float32)  # (N, T)
    flags = np.zeros(n, dtype=np.int64)

    def put(name: str, value: np.ndarray, error: np.ndarray | None) -> None:
        if name in t_index:
            j = t_index[name]
            values[:, j] = value
            errors[:, j] = np.nan if error is None else error

    def flag(mask: np.ndarray, bit: SourceFlag) -> None:
        flags[mask] |= np.int64(int(bit))

    upstream = cols.scalar("flags")
    if upstream is not None:
        flags |= np.where(np.isfinite(upstream), upstream, 0).astype(np.int64)
    read_problem = cols.non_null("read_problem")  # xpengine.io: text of a row-level problem, else null
    if read_problem is not None:
        flag(read_problem, SourceFlag.READ_PROBLEM)

    # -- gaia_source presence
    gaia = {c: cols.scalar(c) for c in GAIA_SOURCE_COLUMNS}
    present_gaia = [v for v in gaia.values() if v is not None]
    if present_gaia:
        no_gaia = np.logical_and.reduce([~np.isfinite(v) for v in present_gaia])
    else:
        no_gaia = np.ones(n, dtype=bool)
        logger.debug("no gaia_source columns in the input: all %d rows flagged NO_GAIA_SOURCE", n)
    flag(no_gaia, SourceFlag.NO_GAIA_SOURCE)

    # -- G photometry
    g_mag = gaia["phot_g_mean_mag"]
    g_flux = g_flux_from_columns(
        g_mag if g_mag is not None else np.full(n, np.nan), gaia["phot_g_mean_flux"]
    )  # (N,) e-/s
    with np.errstate(divide="ignore", invalid="ignore"):
        g_from_flux = G_ZERO_POINT_MAG - 2.5 * np.log10(g_flux)
    g = g_from_flux if g_mag is None else np.where(np.isfinite(g_mag), g_mag, g_from_flux)
    flag(~np.isfinite(g_flux), SourceFlag.NO_GAIA_PHOTOMETRY)

    # -- XP
    _check_coefficient_counts(cols, vocabulary)  # what the reader recorded, before reading the arrays
    bp, bp_err, bp_present, bp_nrel, bp_corrupt = xp_band(cols, "bp", vocabulary.n_bp)
    rp, rp_err, rp_present, rp_nrel, rp_corrupt = xp_band(cols, "rp", vocabulary.n_rp)
    # before any representation: coefficients of another release must not reach this vocabulary
    _check_coefficient_counts(cols, vocabulary, {"bp": bp.shape[1], "rp": rp.shape[1]})
    for band, corrupt in (("bp", bp_corrupt), ("rp", rp_corrupt)):
        if corrupt.any():
            first = int(np.flatnonzero(corrupt)[0])
            logger.warning(
                "%s: %d row(s) with NaN, infinite or absurd (|value| > %.0e e-/s) %s coefficients or "
                "errors, e.g. row %d (source_id %d): band treated as missing, READ_PROBLEM set",
                cols.source or "input",
                int(corrupt.sum()),
                MAX_ABS_XP_COEFFICIENT,
                band.upper(),
                first,
                int(source_id[first]),
            )
            flag(corrupt, SourceFlag.READ_PROBLEM)
    # -- XP-only photometry: where gaia_source gives no G, synthetic G (and BP−RP) from the raw DR3
    # coefficients (xpengine.features.synthetic_photometry; σ 2.7 mmag against real G, G_FROM_XP)
    xp_bprp = None
    need_g = ~np.isfinite(g_flux) & bp_present & rp_present
    if g_from_xp and need_g.any() and bp.shape[1] == 55 and rp.shape[1] == 55:
        from xpengine.features.synthetic_photometry import (
            calibrated_bp_rp,
            calibrated_g_flux,
            synthetic_gaia_photometry,
        )

        rows = np.flatnonzero(need_g)
        phot = synthetic_gaia_photometry(  # G, BP, RP integrated once; G and BP−RP both come from it
            bp[rows],
            rp[rows],
            None if bp_err is None else bp_err[rows],
            None if rp_err is None else rp_err[rows],
        )
        gx, _ = calibrated_g_flux(phot)
        ok = np.isfinite(gx) & (gx > 0)
        rows_ok = rows[ok]
        g_flux = g_flux.copy()
        g_flux[rows_ok] = gx[ok]
        with np.errstate(divide="ignore", invalid="ignore"):
            g = np.where(np.isfinite(g), g, G_ZERO_POINT_MAG - 2.5 * np.log10(g_flux))
        filled = np.zeros(n, dtype=bool)
        filled[rows_ok] = True
        flag(filled, SourceFlag.G_FROM_XP)
        flags[filled] &= ~np.int64(int(SourceFlag.NO_GAIA_PHOTOMETRY))
        c, ce = calibrated_bp_rp(phot)
        c, ce = c[ok], ce[ok]
        xp_bprp = (rows_ok, c, ce)
    bp, rp, bp_err, rp_err = apply_representation(representation, bp, rp, bp_err, rp_err, vocabulary)
    flag(~bp_present, SourceFlag.NO_BP)
    flag(~rp_present, SourceFlag.NO_RP)
    few = np.zeros(n, dtype=bool)
    g_flux_col = g_flux[:, None]  # (N, 1) e-/s, NaN where unusable
    for band, coef, err, present, nrel, width in (
        ("bp", bp, bp_err, bp_present, bp_nrel, vocabulary.n_bp),
        ("rp", rp, rp_err, rp_present, rp_nrel, vocabulary.n_rp),
    ):
        if nrel is None:
            if present.any():
                logger.warning(
                    "no '%s_n_relevant_bases' column: all %s coefficients treated as relevant", band, band
                )
            nrel = np.full(n, np.nan)
        mask = relevancy_mask(nrel, width, propagate_from=propagate_from) & present[:, None]  # (N, n)
        few |= present & (mask.sum(axis=1) < min_relevant)
        idx = vocabulary.indices([f"{band}{i}" for i in range(width)])
        contiguous = idx == list(range(idx[0], idx[0] + width))
        for src, dst_all in ((coef, values), (err, errors)):
            # normalise_by_g_flux written straight into the float32 output (no (N, n) temporaries)
            dst = dst_all[:, idx[0] : idx[0] + width] if contiguous else np.empty((n, width), np.float32)
            np.divide(src, g_flux_col, out=dst, casting="unsafe")
            dst[~mask] = np.nan
            if not contiguous:
                dst_all[:, idx] = dst
    flag(few, SourceFlag.FEW_RELEVANT_BASES)

    # -- colours
    if gaia["bp_rp"] is not None or (
        gaia["phot_bp_mean_mag"] is not None and gaia["phot_rp_mean_mag"] is not None
    ):
        bprp, bprp_err = bp_rp_colour(
            gaia["phot_bp_mean_mag"],
            gaia["phot_rp_mean_mag"],
            gaia["phot_bp_mean_flux_over_error"],
            gaia["phot_rp_mean_flux_over_error"],
            bp_rp=gaia["bp_rp"],
        )
    else:
        bprp, bprp_err = np.full(n, np.nan), None
    if xp_bprp is not None:
        rows_ok, c, ce = xp_bprp
        fill = ~np.isfinite(bprp[rows_ok])
        bprp = np.asarray(bprp, dtype=np.float64).copy()
        bprp_err = np.full(n, np.nan) if bprp_err is None else np.asarray(bprp_err, dtype=np.float64).copy()
        bprp[rows_ok[fill]] = c[fill]
        bprp_err[rows_ok[fill]] = ce[fill]
    put("bprp", bprp, bprp_err)
    flag(~np.isfinite(bprp), SourceFlag.NO_BP_RP_COLOUR)

    tm = {c: cols.scalar(c) for c in TMASS_COLUMNS}
    if tm["j_m"] is not None:
        nan = np.full(n, np.nan)
        jh, jh_err, jk, jk_err = tmass_colours(
            tm["j_m"],
            tm["j_msigcom"],
            nan if tm["h_m"] is None else tm["h_m"],
            tm["h_msigcom"],
            nan if tm["ks_m"] is None else tm["ks_m"],
            tm["ks_msigcom"],
            require_error=tmass_require_error,
        )
    else:
        jh = jk = np.full(n, np.nan)
        jh_err = jk_err = None
    put("jh", jh, jh_err)
    put("jk", jk, jk_err)
    flag(~np.isfinite(jh) & ~np.isfinite(jk), SourceFlag.NO_2MASS)

    # -- pseudo-luminosity
    if gaia["parallax"] is not None:
        lum = pseudo_luminosity(
            g,
            gaia["parallax"],
            gaia["parallax_error"] if gaia["parallax_error"] is not None else np.full(n, np.nan),
            ruwe=gaia["ruwe"],
            nu_eff_used_in_astrometry=gaia["nu_eff_used_in_astrometry"],
            pseudocolour=gaia["pseudocolour"],
            ecl_lat=gaia["ecl_lat"],
            astrometric_params_solved=gaia["astrometric_params_solved"],
            apply_zero_point=apply_zero_point,
            leung2023=leung2023,
            zero_point_fallback=zero_point_fallback,
            max_parallax_error=max_parallax_error,
            max_ruwe=max_ruwe,
        )
        put("g_fakemag", lum.fakemag, lum.fakemag_error)
        flag(lum.no_parallax, SourceFlag.NO_PARALLAX)
        flag(lum.no_zero_point, SourceFlag.NO_ZERO_POINT)
    else:
        flag(np.ones(n, dtype=bool), SourceFlag.NO_PARALLAX)

    # -- extinction
    logebv = cols.scalar("logebv")
    if logebv is not None:
        logebv_err = cols.scalar("logebv_error")
    else:
        ebv = cols.scalar("ebv")
        if ebv is not None:
            logebv, logebv_err = ebv_to_logebv(ebv, cols.scalar("ebv_error"), floor=ebv_floor)
        else:
            logebv, logebv_err = np.full(n, np.nan), None
    put("logebv", logebv, logebv_err)
    flag(~np.isfinite(logebv), SourceFlag.NO_EXTINCTION)

    # -- labels and any other token given by name
    for tok in vocabulary.tokens:
        if tok.kind == "xp" or tok.name in _COMPUTED_TOKENS:
            continue
        value = cols.scalar(tok.name)
        if value is not None:
            put(tok.name, value, cols.scalar(tok.error_name))
        elif tok.name == "ln_age" and (age := cols.scalar("age")) is not None:
            age_err = cols.scalar("age_error")
            ok = np.isfinite(age) & (age > 0)
            safe = np.where(ok, age, 1.0)
            put(
                "ln_age",
                np.where(ok, np.log(safe), np.nan),
                None if age_err is None else np.where(ok, np.abs(age_err) / safe, np.nan),
            )

    # -- missing-token convention: NaN value ⇔ error 0; unknown errors are 0
    missing = ~np.isfinite(values)
    values[missing] = np.nan
    errors[missing | ~np.isfinite(errors)] = 0.0
    return TokenBatch(
        source_id=source_id,
        values=values,
        errors=errors,
        flags=flags,
        vocabulary=vocabulary,
        parameters={
            "representation": None
            if representation is None
            else getattr(representation, "__qualname__", repr(representation)),
            "min_relevant": min_relevant,
            "propagate_from": propagate_from,
            "apply_zero_point": apply_zero_point,
            "leung2023": leung2023,
            "zero_point_fallback": zero_point_fallback,
            "max_parallax_error": max_parallax_error,
            "g_from_xp": g_from_xp,
            "max_ruwe": max_ruwe,
            "ebv_floor": ebv_floor,
            "tmass_require_error": tmass_require_error,
        },
    )
