"""Carry a training set to a lent GPU, whose call takes at most 64 MiB with the repository (its tracked
files: ~34 MB when this was written; 51.3 MB on 2026-12-06, so that with the packed s16 file, 29.1 MB before
errors were scaled and 30.7 MB after, the call is over the limit: carry fewer rows or a smaller repository).

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
mixed file, else an origin other than "synthetic"; all three splits); `--mixed` the train and val rows.
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
from xpengine.datasets.schema import _META_VOCAB
from xpengine.datasets.synthetic import ORIGIN as SIMULATED
from xpengine.features.vocabulary import Vocabulary

MIX_COLUMNS = ("data_source", "mix_copy")  # xpengine.datasets.mixed's bookkeeping, carried as it is
MAX_ROUNDING = 0.1  # of a value's own error, at the 99th percentile of the rows
MAX_ERROR_ROUNDING = 1e-3  # relative, of an error, at the 99th percentile of the rows


def _is_real(table: pa.Table) -> pa.ChunkedArray:
    """Rows of real stars: `data_source` "real" in a mixed file, else an origin other than synthetic."""
    if "data_source" in table.column_names:
        return pc.equal(table["data_source"], DATA_SOURCES[0])
    return pc.not_equal(table["origin"], SIMULATED)


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


def pack(src: str, dst: str, tokens: list[str], sim_val: int, seed: int = 0) -> dict:
    pf = pq.ParquetFile(src)
    meta = dict(pf.schema_arrow.metadata or {})
    vocab = Vocabulary.from_dict(json.loads(meta[_META_VOCAB]))
    names = vocab.select(tokens)
    mix = [c for c in MIX_COLUMNS if c in pf.schema_arrow.names]
    table = pq.read_table(
        src, columns=["source_id", "split", "origin", *mix, *names, *(f"{n}_error" for n in names)]
    )
    real = _is_real(table)
    sim = pc.invert(real)
    keep = pc.or_(real, pc.and_(sim, pc.equal(table["split"], "train")))
    sim_val_idx = np.flatnonzero(pc.and_(sim, pc.equal(table["split"], "val")).to_numpy(zero_copy_only=False))
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(sim_val_idx, size=min(sim_val, sim_val_idx.size), replace=False))
    mask = keep.to_numpy(zero_copy_only=False).copy()
    mask[chosen] = True
    table = table.filter(pa.array(mask))
    cols = {c: table[c] for c in ("source_id", "split", "origin", *mix)}
    exact: list[str] = []
    exact_errors: list[str] = []
    error_scale: dict[str, int] = {}
    for n in names:
        v = table[n].to_numpy(zero_copy_only=False).astype(np.float32)
        e = table[f"{n}_error"].to_numpy(zero_copy_only=False).astype(np.float32)
        v16 = v.astype(np.float16)
        # values stay float32 where float16 would move 1 % of the rows by more than MAX_ROUNDING of
        # their own error (the brightest stars' first coefficients, APOGEE's Teff)
        with np.errstate(invalid="ignore", divide="ignore"):
            moved = np.abs(v16.astype(np.float32) - v) / np.where(e > 0, e, np.nan)
        moved = moved[np.isfinite(moved)]
        if moved.size and np.percentile(moved, 99) > MAX_ROUNDING:
            cols[n] = pa.array(v)
            exact.append(n)
        else:
            cols[n] = pa.array(v16)
        stored, k = _pack_errors(e)
        cols[f"{n}_error"] = pa.array(stored)
        if k is None:
            exact_errors.append(n)
        elif k:
            error_scale[f"{n}_error"] = k
    meta[b"xpengine.lease_pack"] = json.dumps(
        {
            "source": src,
            "tokens": names,
            "sim_val": int(chosen.size),
            "float32_values": exact,
            "float32_errors": exact_errors,
            "error_scale_exponents": error_scale,  # stored error = error * 2**k
        }
    ).encode()
    out = pa.table(cols).replace_schema_metadata(meta)
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(out, dst, compression="zstd", compression_level=9)
    return {
        "rows": out.num_rows,
        "tokens": len(names),
        "float32_values": exact,
        "float32_errors": exact_errors,
        "bytes": Path(dst).stat().st_size,
    }


def unpack(src: str, real: str | None, mixed: str | None) -> dict:
    table = pq.read_table(src)
    meta = dict(table.schema.metadata or {})
    packed = json.loads(meta.pop(b"xpengine.lease_pack", b"{}"))
    scale = packed.get("error_scale_exponents", {})  # a file packed before errors were scaled: none
    vocab = Vocabulary.from_dict(json.loads(meta[_META_VOCAB]))
    n = table.num_rows
    cols = {c: table[c] for c in ("source_id", "split", "origin", *MIX_COLUMNS) if c in table.column_names}
    for tok in vocab.tokens:  # the tokens left out here are missing in every row: NaN, error 0
        for c, fill in ((tok.name, np.nan), (tok.error_name, 0.0)):
            cols[c] = pa.array(
                table[c].to_numpy(zero_copy_only=False).astype(np.float32)
                * np.float32(2.0 ** -scale.get(c, 0))
                if c in table.column_names
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
    u = sub.add_parser("unpack")
    u.add_argument("src")
    u.add_argument("--real")
    u.add_argument("--mixed")
    args = ap.parse_args(argv)
    if args.cmd == "pack":
        print(pack(args.src, args.dst, args.tokens, args.sim_val))
    else:
        print(unpack(args.src, args.real, args.mixed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
