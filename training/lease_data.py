"""Carry a training set to a lent GPU, whose call takes at most 64 MiB (67.1 MB) with the repository (its
tracked files: ~34 MB when this was written, 51.4 MB on 2026-12-06). The s16 file packs to 18.35 MB (29.10 MB
before the encoding below; 17.63 MB with --no-test), so that with this repository the call is still over the
limit by ~2.6 MB: carry fewer rows or a smaller repository.

    # here: the mixed file's real rows (every split) and simulated train rows (val rows: a sample),
    # only the tokens a model reads or predicts in the catalogue, errors as scaled float16, values where float16 is exact enough
    # (unpack restores the file's whole vocabulary: the tokens left out are missing, NaN, in every row)
    python training/lease_data.py pack runs/gaia_xp_mixed9.parquet runs/lease/data.parquet \\
        --tokens bp0..29 rp0..29 bprp jh jk g_fakemag teff logg m_h alpha_m mass ln_age logebv --sim-val 2000
    # on the device machine (pyarrow + numpy only): float32 training-schema files again
    python3 training/lease_data.py unpack runs/lease/data.parquet --real /tmp/real.parquet --mixed /tmp/mixed.parquet

Errors travel as float16 times a power of two chosen per column (2**k: the largest error lands in
[2**14, 2**15); unpack multiplies by 2**-k, exactly), so that they lie in float16's normal range with 11
significant bits (at most 4.9e-4 relative). Unscaled, most XP coefficient errors lie below float16's
smallest normal (6.1e-5), where its fixed spacing of 6e-8 rounds them by several per cent. A column whose
errors span too many decades even so (its 99th-percentile relative rounding over MAX_ERROR_ROUNDING)
travels as float32. Measured on runs/s16/gaia_xp_mixed41_every.parquet (the source of runs/lease/data.parquet,
105,462 rows, 71 tokens): the relative rounding of the BP/RP errors went from p99 0.2-3 % (max 8.5 %) to at
most 4.9e-4, no column needing float32, and the packed file from 29.10 to 30.65 MB (+5.3 %).

Values travel as float16 where that moves 99 % of the rows by less than 10 % of their own error (a rounding noise of at most ~6 % of the error,
rms: under 0.4 % of its variance), else as float32 (measured on the APOGEE x XP
file: float16 would move bp0 by up to 2 sigma, p99 0.86 sigma, for the brightest stars, and Teff by 0.3
sigma; the higher coefficients by a few per cent of sigma). `unpack --real` writes the real stars' rows (`data_source` "real" in a
mixed file, else an origin other than "synthetic"; all three splits, none of the test split with
`pack --no-test`); `--mixed` the train and val rows.

Encoding (lossless for what is stored; unpack also reads files packed before it, bit for bit as then):
- zstd level 19 with byte-stream-split for the float and residual columns (exponent and high bytes apart
  from the noisy low ones): 30.65 -> 24.51 MB on the s16 file;
- the simulated stars' XP errors as int16 residuals against a rank-1 prediction (the simulator's errors
  are one scale per star and band times a fixed shape: xpengine.simulate.xp), in float16 bit patterns,
  so exact; real rows keep their bits: XP errors 10.1 -> 4.3 MB, the file 24.51 -> 18.86 MB;
- no source ids unless `--source-ids` (18.86 -> 18.35 MB): training only counts the rows, and unpack numbers them
  (gpu_check.py only compares ids between its own outputs).
Measured on the s16 file (runs/s16/gaia_xp_mixed41_every.parquet, 105,462 rows): 18.35 MB; unpacked, the
same rows, splits and float32 values as the 29.10 MB file runs/s16/lease41e/data.parquet and bit for bit
those of the previous encoding (errors: within half of the older file's float16 spacing). Reading it
needs pyarrow >= 16 (byte-stream-split for float16 and integer columns).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runs from a checkout without installing

from xpengine.datasets.mixed import DATA_SOURCES
from xpengine.datasets.schema import _META_PROV, _META_VOCAB
from xpengine.datasets.synthetic import ORIGIN as SIMULATED
from xpengine.features.vocabulary import Vocabulary

MIX_COLUMNS = ("data_source", "mix_copy")  # xpengine.datasets.mixed's bookkeeping, carried as it is
MAX_ROUNDING = 0.1  # of a value's own error, at the 99th percentile of the rows
MAX_ERROR_ROUNDING = 1e-3  # relative, of an error, at the 99th percentile of the rows
ZSTD_LEVEL = 19
PACK_META = b"xpengine.lease_pack"


def _is_real(table: pa.Table) -> pa.ChunkedArray:
    """Rows of real stars: `data_source` "real" in a mixed file, else an origin other than synthetic."""
    if "data_source" in table.column_names:
        return pc.equal(table["data_source"], DATA_SOURCES[0])
    return pc.not_equal(table["origin"], SIMULATED)


def _simulated(table: pa.Table) -> np.ndarray:
    return ~np.asarray(_is_real(table).to_numpy(zero_copy_only=False), dtype=bool)


def _pack_errors(e: np.ndarray) -> tuple[np.ndarray, int | None]:
    """(the errors to store, k): float16 of e * 2**k, the largest finite error in [2**14, 2**15); or the
    float32 errors and None when float16 would still round 1 % of them by more than MAX_ERROR_ROUNDING."""
    pos = e[np.isfinite(e) & (e > 0)]
    k = int(np.floor(14 - np.log2(pos.max()))) if pos.size else 0
    e16 = (e.astype(np.float64) * 2.0**k).astype(np.float16)
    back = e16.astype(np.float32) * np.float32(2.0**-k)
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.abs(back - e) / e
    rel = rel[np.isfinite(rel)]
    if rel.size and np.percentile(rel, 99) > MAX_ERROR_ROUNDING:
        return e, None
    return e16, k


def _pack_values(v: np.ndarray, e: np.ndarray) -> np.ndarray:
    """float16 values, or float32 where float16 would move 1 % of the rows by more than MAX_ROUNDING of
    their own error (the brightest stars' first coefficients, APOGEE's Teff), or where any finite value
    lies beyond float16's range (|v| > 65504): it would become ±inf, which training reads as missing
    (and the rounding test above cannot see it: the infinite distances drop out of its percentile)."""
    if np.any(np.abs(v[np.isfinite(v)]) > np.finfo(np.float16).max):
        return v
    v16 = v.astype(np.float16)
    with np.errstate(invalid="ignore", divide="ignore"):
        moved = np.abs(v16.astype(np.float32) - v) / np.where(e > 0, e, np.nan)
    moved = moved[np.isfinite(moved)]
    return v if moved.size and np.percentile(moved, 99) > MAX_ROUNDING else v16


def _predicted_bits(ref16: np.ndarray, k_ref: int, shape: float, k: int, sim: np.ndarray) -> np.ndarray:
    """Bit patterns (uint16) of a simulated star's stored error predicted from its band's reference error:
    float16 of ref * shape * 2**k (float32 arithmetic, the same here and on the device); 0 on real rows."""
    with np.errstate(over="ignore", invalid="ignore"):
        p = ref16.astype(np.float32) * np.float32(2.0**-k_ref) * np.float32(shape)
        p = np.where(sim & np.isfinite(p), p, np.float32(0.0)) * np.float32(2.0**k)
        return p.astype(np.float16).view(np.uint16)


def _xp_error_residuals(
    stored: dict[str, np.ndarray], xp_names: list[str], scale: dict[str, int], sim: np.ndarray
) -> dict[str, dict[str, float]]:
    """Replace the float16 XP error columns of `stored` (in place) by int16 residuals against a prediction.

    The simulator's coefficient errors are one number per star and band times a fixed shape
    (xpengine.simulate.xp: e_i = k s_X tau_i), so on simulated rows each band's errors follow from its first
    one: the residual (stored bits - predicted bits, mod 2**16) is 0 or a few units of float16's last place.
    Real rows keep their bits (prediction 0). Returns {reference column: {column: shape}}; exact both ways.
    """
    bands: dict[str, list[str]] = {}
    for n in xp_names:
        c = f"{n}_error"
        if stored[c].dtype == np.float16:
            bands.setdefault(n.rstrip("0123456789"), []).append(c)
    out: dict[str, dict[str, float]] = {}
    for cols in bands.values():
        if len(cols) < 2 or not sim.any():
            continue
        ref, k_ref = cols[0], scale.get(cols[0], 0)
        e_ref = stored[ref][sim].astype(np.float64) * 2.0**-k_ref
        shapes: dict[str, float] = {}
        for c in cols[1:]:
            with np.errstate(invalid="ignore", divide="ignore"):
                ratio = stored[c][sim].astype(np.float64) * 2.0 ** -scale.get(c, 0) / e_ref
            ratio = ratio[np.isfinite(ratio) & (ratio > 0)]
            if not ratio.size:
                continue
            shapes[c] = float(np.float32(np.median(ratio)))  # exact as a JSON number
            pred = _predicted_bits(stored[ref], k_ref, shapes[c], scale.get(c, 0), sim)
            stored[c] = (stored[c].view(np.uint16) - pred).view(np.int16)
        if shapes:
            out[ref] = shapes
    return out


def _decode_residuals(
    stored: dict[str, np.ndarray], residuals: dict, scale: dict[str, int], sim: np.ndarray
) -> dict[str, np.ndarray]:
    """The float16 errors `_xp_error_residuals` replaced, from the residuals in `stored`."""
    out = {}
    for ref, shapes in residuals.items():
        for c, shape in shapes.items():
            pred = _predicted_bits(stored[ref], scale.get(ref, 0), shape, scale.get(c, 0), sim)
            out[c] = (stored[c].view(np.uint16) + pred).view(np.float16)
    return out


def _kept_rows(table: pa.Table, sim_val: int, seed: int, drop_test: bool) -> tuple[np.ndarray, int]:
    """(row mask, simulated val rows kept): the real rows (without the test split if `drop_test`), the
    simulated train rows and a random `sim_val` of the simulated val rows."""
    real = np.asarray(_is_real(table).to_numpy(zero_copy_only=False), dtype=bool)
    split = np.asarray(table["split"].to_numpy(zero_copy_only=False))
    mask = (real & ((split != "test") if drop_test else True)) | (~real & (split == "train"))
    sim_val_idx = np.flatnonzero(~real & (split == "val"))
    rng = np.random.default_rng(seed)
    chosen = rng.choice(sim_val_idx, size=min(sim_val, sim_val_idx.size), replace=False)
    mask[chosen] = True
    return mask, int(chosen.size)


def _write(table: pa.Table, dst: str) -> None:
    """zstd; byte-stream-split for the floats and residuals (their exponent and high bytes apart from the
    noisy low ones), dictionaries for the strings and the mixing copies."""
    split = [f.name for f in table.schema if pa.types.is_floating(f.type) or f.type == pa.int16()]
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        table,
        dst,
        compression="zstd",
        compression_level=ZSTD_LEVEL,
        use_dictionary=[c for c in table.column_names if c not in (*split, "source_id")],
        use_byte_stream_split=split,
    )


def pack(
    src: str,
    dst: str,
    tokens: list[str],
    sim_val: int,
    seed: int = 0,
    source_ids: bool = False,
    drop_test: bool = False,
) -> dict:
    pf = pq.ParquetFile(src)
    meta = dict(pf.schema_arrow.metadata or {})
    vocab = Vocabulary.from_dict(json.loads(meta[_META_VOCAB]))
    names = vocab.select(tokens)
    mix = [c for c in MIX_COLUMNS if c in pf.schema_arrow.names]
    bookkeeping = [*(["source_id"] if source_ids else []), "split", "origin", *mix]
    table = pq.read_table(src, columns=[*bookkeeping, *names, *(f"{n}_error" for n in names)])
    mask, n_sim_val = _kept_rows(table, sim_val, seed, drop_test)
    table = table.filter(pa.array(mask))
    stored: dict[str, np.ndarray] = {}
    exact_errors: list[str] = []
    error_scale: dict[str, int] = {}
    for n in names:
        v = table[n].to_numpy(zero_copy_only=False).astype(np.float32)
        e = table[f"{n}_error"].to_numpy(zero_copy_only=False).astype(np.float32)
        stored[n] = _pack_values(v, e)
        if not np.array_equal(np.isfinite(stored[n]), np.isfinite(v)):  # a value lost or made by packing
            raise RuntimeError(f"{src}: column {n}: packing would change which values are missing")
        stored[f"{n}_error"], k = _pack_errors(e)
        if k is None:
            exact_errors.append(n)
        elif k:
            error_scale[f"{n}_error"] = k
    sim = _simulated(table)
    errors16 = {c: a for c, a in stored.items() if c.endswith("_error") and a.dtype == np.float16}
    xp = [n for n in names if vocab.tokens[vocab.index(n)].kind == "xp"]
    residuals = _xp_error_residuals(stored, xp, error_scale, sim)
    for c, a in _decode_residuals(stored, residuals, error_scale, sim).items():  # exact, or refuse
        if not np.array_equal(a.view(np.uint16), errors16[c].view(np.uint16)):
            raise RuntimeError(f"{c}: the residual coding does not give the errors back")
    meta[PACK_META] = json.dumps(
        {
            "source": src,
            "tokens": names,
            "sim_val": n_sim_val,
            "test_rows": not drop_test,
            "source_ids": source_ids,  # False: unpack numbers the rows instead
            "float32_values": [n for n in names if stored[n].dtype == np.float32],
            "float32_errors": exact_errors,
            "error_scale_exponents": error_scale,  # stored error = error * 2**k
            "xp_error_residuals": residuals,  # {reference: {column: shape}}: _decode_residuals
        }
    ).encode()
    cols = {c: table[c] for c in bookkeeping} | {c: pa.array(a) for c, a in stored.items()}
    out = pa.table(cols).replace_schema_metadata(meta)
    _write(out, dst)
    return {
        "rows": out.num_rows,
        "tokens": len(names),
        "float32_values": [n for n in names if stored[n].dtype == np.float32],
        "float32_errors": exact_errors,
        "bytes": Path(dst).stat().st_size,
    }


def unpack(src: str, real: str | None, mixed: str | None) -> dict:
    """The training-schema files again (float32); also reads files packed before the residual coding,
    the byte-stream-split encoding or the dropped source ids (their metadata lacks those keys).

    The unpacked files carry the lease record in their dataset provenance (`lease_pack`, with the packed
    file's path), which every checkpoint trained on them copies: a model trained on a lease file then says
    that its data were a lease's (some tokens dropped, values rounded to float16, a sample of the simulated
    val rows), not the source file the record names. The packing key itself (`PACK_META`) is not kept:
    it says how to decode, and an unpacked file is decoded already (unpacking it again is then refused)."""
    table = pq.read_table(src)
    meta = dict(table.schema.metadata or {})
    if PACK_META not in meta and "lease_pack" in json.loads(meta.get(_META_PROV, b"{}")):
        raise ValueError(
            f"{src} is an unpacked lease file (its provenance has lease_pack): nothing to unpack"
        )
    packed = json.loads(meta.pop(PACK_META, b"{}"))
    if packed:
        provenance = json.loads(meta.get(_META_PROV, b"{}"))
        provenance["lease_pack"] = {**packed, "packed_file": str(src)}
        meta[_META_PROV] = json.dumps(provenance).encode()
    scale = packed.get("error_scale_exponents", {})  # a file packed before errors were scaled: none
    vocab = Vocabulary.from_dict(json.loads(meta[_META_VOCAB]))
    n = table.num_rows
    numeric = [f.name for f in table.schema if pa.types.is_floating(f.type) or f.type == pa.int16()]
    stored = {c: table[c].to_numpy(zero_copy_only=False) for c in numeric}
    stored |= _decode_residuals(stored, packed.get("xp_error_residuals", {}), scale, _simulated(table))
    cols = {c: table[c] for c in ("source_id", "split", "origin", *MIX_COLUMNS) if c in table.column_names}
    if "source_id" not in cols:  # packed without them: the row number stands in (unique in the file)
        cols = {"source_id": pa.array(np.arange(n, dtype=np.int64))} | cols
    for tok in vocab.tokens:  # the tokens left out here are missing in every row: NaN, error 0
        for c, fill in ((tok.name, np.nan), (tok.error_name, 0.0)):
            cols[c] = pa.array(
                stored[c].astype(np.float32) * np.float32(2.0 ** -scale.get(c, 0))
                if c in stored
                else np.full(n, fill, dtype=np.float32)
            )
    full = pa.table(cols).replace_schema_metadata(meta)
    counts = {}
    if real:
        t = full.filter(_is_real(full))
        pq.write_table(t, real, compression="zstd")
        counts["real"] = t.num_rows
    if mixed:
        t = full.filter(pc.is_in(full["split"], pa.array(["train", "val"])))
        pq.write_table(t, mixed, compression="zstd")
        counts["mixed"] = t.num_rows
    return counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack")
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--tokens", nargs="+", required=True)
    p.add_argument(
        "--sim-val", type=int, default=2000, help="simulated validation rows kept (a random sample)"
    )
    p.add_argument(
        "--source-ids", action="store_true", help="keep the source ids (default: unpack numbers the rows)"
    )
    p.add_argument(
        "--no-test",
        action="store_true",
        help="leave out the real test rows (no training use; gpu_check.py's predictor step reads them)",
    )
    u = sub.add_parser("unpack")
    u.add_argument("src")
    u.add_argument("--real")
    u.add_argument("--mixed")
    args = ap.parse_args(argv)
    if args.cmd == "pack":
        print(pack(args.src, args.dst, args.tokens, args.sim_val, 0, args.source_ids, args.no_test))
    else:
        print(unpack(args.src, args.real, args.mixed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
