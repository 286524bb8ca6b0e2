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
from xpengine.features._token_steps import (
    TokenOutput,
    g_photometry,
    gaia_bp_rp,
    put_bp_rp,
    put_extinction,
    put_labels,
    put_pseudo_luminosity,
    put_tmass_colours,
    sky_position,
    upstream_flags,
)
from xpengine.features._xp_bands import (
    apply_representation,
    fill_g_from_xp,
    flag_corrupt,
    flag_g_mismatch,
    put_xp_tokens,
    xp_band,
)
from xpengine.features.astrometry import MAX_PARALLAX_ERROR_MAS, MAX_RUWE
from xpengine.features.flags import SourceFlag
from xpengine.features.relevancy import PAPER_PROPAGATE_FROM
from xpengine.features.token_matrix import TokenMatrix
from xpengine.features.vocabulary import PAPER_VOCABULARY, Vocabulary
from xpengine.io.schema import DR3_N_COEFFICIENTS

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
    g_mag: np.ndarray | None = None  # (N,) G [mag] the XP were normalised by (NaN: none); None: not kept

    def column(self, name: str) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[override]
        """Value and error (N,) of one token (float32 views; KeyError when the vocabulary lacks it)."""
        j = self.vocabulary.index(name)
        return self.values[:, j], self.errors[:, j]

    def _subset_fields(self, idx: np.ndarray) -> dict[str, Any]:
        return {"flags": self.flags[idx], "g_mag": None if self.g_mag is None else self.g_mag[idx]}

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


def _check_relevant_counts(
    cols: InputColumns, band: str, n_relevant: np.ndarray | None, source_id: np.ndarray
) -> None:
    """ValueError naming the input, row and source of a negative `X_n_relevant_bases` (N,).

    The readers (`xpengine.io`) report such a count as a read problem of its row and null the band; a
    table built otherwise may still hold one, and no relevancy mask can be made from it. Checked here,
    where the source is known, rather than inside `relevancy.relevancy_mask`, which knows only counts.
    """
    if n_relevant is None:
        return
    bad = np.flatnonzero(np.asarray(n_relevant, dtype=np.float64) < 0)
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"{cols.source or 'input'}: column '{band}_n_relevant_bases' holds {bad.size} negative "
            f"count(s), e.g. {float(n_relevant[i]):g} in row {i} (source_id {int(source_id[i])}); "
            "expected 0..n_parameters (xpengine.io readers report such a count as a read problem)"
        )


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
    source_id = cols.source_id()
    if source_id.shape != (cols.n,):
        raise ValueError(f"column 'source_id' has {source_id.shape[0]} rows, other columns {cols.n}")
    out = TokenOutput(cols.n, vocabulary)
    upstream_flags(cols, out)
    gaia = {c: cols.scalar(c) for c in GAIA_SOURCE_COLUMNS}
    g, g_flux = g_photometry(gaia, out)

    # -- XP
    _check_coefficient_counts(cols, vocabulary)  # what the reader recorded, before reading the arrays
    bp_band = xp_band(cols, "bp", vocabulary.n_bp)
    rp_band = xp_band(cols, "rp", vocabulary.n_rp)
    # before any representation: coefficients of another release must not reach this vocabulary
    _check_coefficient_counts(cols, vocabulary, {"bp": bp_band[0].shape[1], "rp": rp_band[0].shape[1]})
    flag_corrupt(cols, "bp", bp_band[4], source_id, out)
    flag_corrupt(cols, "rp", rp_band[4], source_id, out)
    _check_relevant_counts(cols, "bp", bp_band[3], source_id)
    _check_relevant_counts(cols, "rp", rp_band[3], source_id)
    xp_bprp = None
    gaia_colour = gaia_bp_rp(gaia, cols.n)
    if g_from_xp:  # XP-only photometry: synthetic G and BP−RP where gaia_source gives none
        g, g_flux, xp_bprp, g_xp = fill_g_from_xp(
            bp_band, rp_band, g, g_flux, out, need_colour=~np.isfinite(gaia_colour[0])
        )
        flag_g_mismatch(cols, g, g_xp, source_id, out)
    bp, rp, bp_err, rp_err = apply_representation(
        representation, bp_band[0], rp_band[0], bp_band[1], rp_band[1], vocabulary
    )
    put_xp_tokens(
        out,
        (("bp", bp, bp_err, bp_band[2], bp_band[3]), ("rp", rp, rp_err, rp_band[2], rp_band[3])),
        g_flux,
        min_relevant=min_relevant,
        propagate_from=propagate_from,
    )

    # -- colours, pseudo-luminosity, extinction, labels
    put_bp_rp(gaia_colour, out, xp_bprp)
    put_tmass_colours({c: cols.scalar(c) for c in TMASS_COLUMNS}, out, require_error=tmass_require_error)
    put_pseudo_luminosity(
        gaia,
        g,
        out,
        position=sky_position(cols),
        apply_zero_point=apply_zero_point,
        leung2023=leung2023,
        zero_point_fallback=zero_point_fallback,
        max_parallax_error=max_parallax_error,
        max_ruwe=max_ruwe,
    )
    put_extinction(cols, out, ebv_floor=ebv_floor)
    put_labels(cols, out)

    values, errors, flags = out.finish()
    return TokenBatch(
        source_id=source_id,
        values=values,
        errors=errors,
        flags=flags,
        g_mag=np.where(np.isfinite(g_flux), g, np.nan).astype(np.float64),
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
