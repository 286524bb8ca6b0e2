"""Copies of compact model-input files (`xpengine compact`) with columns nulled, for calibrating a model on
inputs the archive's rows do not give.

    python training/every_order_inputs.py runs/s18/cal_compact runs/s18/cal_compact_every --every-order
    python training/every_order_inputs.py runs/s18/cal_compact runs/s18/cal_compact_every_noplx \\
        --every-order --no-parallax

`--every-order` nulls `bp_n_relevant_bases` and `rp_n_relevant_bases`: the job then keeps every XP
coefficient of the row (flag NO_RELEVANCY), as for a sampled spectrum. A simulated sky's files hold the
coefficients beyond each star's relevancy, with their noise, as DR3's do, so this is the sky's stars as
XP_SAMPLED files or the APOGEE×XP file would give them. `--no-parallax` nulls `parallax` and
`parallax_error` (flag NO_PARALLAX: no pseudo-luminosity), as `Predictor.from_xp` without a parallax or a
sampled spectrum without gaia_source. Every other column, the row order and the file metadata (its
provenance) are kept. The every-order entries of gaia-xp's calibration (`training/calibrate_on_sky.py
--all-orders`, session 18) were fitted on the seed-31 calibration sky's catalogues made from such copies.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys

EVERY_ORDER = ("bp_n_relevant_bases", "rp_n_relevant_bases")
NO_PARALLAX = ("parallax", "parallax_error")


def null_columns(src: str, dst: str, columns: tuple[str, ...]) -> int:
    """Write DST: the compact file SRC with COLUMNS set to null (schema and metadata kept); its rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(src)
    meta = table.schema.metadata
    for name in columns:
        i = table.schema.get_field_index(name)
        if i < 0:
            raise SystemExit(f"{src}: no column {name!r} (is it a compact model-inputs file?)")
        field = table.schema.field(i)
        table = table.set_column(i, field, pa.nulls(table.num_rows, type=field.type))
    pq.write_table(table.replace_schema_metadata(meta), dst, compression="zstd")
    return table.num_rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", help="directory of ModelInputs_*.parquet files (`xpengine compact` output)")
    p.add_argument("output", help="directory to write the copies to (must not hold model-input files)")
    p.add_argument("--every-order", action="store_true", help="null the relevancy counts")
    p.add_argument("--no-parallax", action="store_true", help="null the parallax and its error")
    args = p.parse_args(argv)
    columns = (EVERY_ORDER if args.every_order else ()) + (NO_PARALLAX if args.no_parallax else ())
    if not columns:
        p.error("nothing to null: give --every-order and/or --no-parallax")
    files = sorted(glob.glob(os.path.join(args.input, "ModelInputs_*.parquet")))
    if not files:
        p.error(f"no ModelInputs_*.parquet in {args.input}")
    os.makedirs(args.output, exist_ok=True)
    if glob.glob(os.path.join(args.output, "ModelInputs_*.parquet")):
        p.error(f"{args.output} already holds model-input files")
    rows = sum(null_columns(f, os.path.join(args.output, os.path.basename(f)), columns) for f in files)
    print(f"{len(files)} file(s), {rows:,} rows, nulled {', '.join(columns)} → {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
