"""Copy a simulated training-schema file with the named tokens set to the simulated truth (error 0).

    python training/truth_labels.py runs/sky_mist_test.parquet runs/sky_mist_test_truth.parquet --tokens mass ln_age

The simulator's survey files carry survey-like labels (DistMass-like mass and age: a noisy mass, and an
age from it on isochrones that stop at 14 Gyr). A model trained on the truth (`build-dataset mixed
--synthetic-truth-tokens`) is scored against the truth with such a copy, and the XGBoost baseline of
`benchmarks/compare_models.py` is trained on one, so that both learn the same targets. The token ↔ truth
column map is `xpengine.datasets.label_edits.TRUTH_LABELS`; every other column and the file metadata are kept.

`--m-h-truth fe_h` takes the m_h token's truth from the sky's true [Fe/H] instead of its total metallicity:
the quantity a model whose [M/H] learned APOGEE FE_H measures (`xpengine.model.metadata.metallicity_scale`;
gaia-xp, apogee-xp), so that `compare_models.py` scores such a model's [M/H] against what it learned.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from xpengine.datasets.label_edits import truth_values


def with_truth(table: pa.Table, tokens: Sequence[str], m_h_truth: str = "m_h") -> pa.Table:
    """`table` with each token of `tokens` (keys of `label_edits.TRUTH_LABELS`) and its error column replaced by the
    truth and 0, in the columns' own types; m_h_truth "fe_h": the m_h token's truth is the `truth_fe_h` column."""
    for name in tokens:
        if name == "m_h" and m_h_truth == "fe_h":
            if "truth_fe_h" not in table.column_names:
                raise ValueError("--m-h-truth fe_h: the file has no truth_fe_h column")
            values = np.asarray(table.column("truth_fe_h").to_numpy(zero_copy_only=False), dtype=np.float64)
        else:
            values = truth_values(table, name)
        for col, new in ((name, values), (f"{name}_error", np.zeros_like(values))):
            i = table.column_names.index(col)
            field = table.schema.field(col)
            table = table.set_column(i, field, pa.array(new, type=field.type))
    return table


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", help="simulated training-schema Parquet file")
    ap.add_argument("output", help="output Parquet file")
    ap.add_argument("--tokens", nargs="+", default=["mass", "ln_age"], help="tokens to set to the truth")
    ap.add_argument(
        "--m-h-truth",
        choices=("m_h", "fe_h"),
        default="m_h",
        help="the m_h token's truth: the total metallicity (default) or the true [Fe/H]",
    )
    args = ap.parse_args(argv)
    table = pq.read_table(args.source)
    pq.write_table(with_truth(table, args.tokens, args.m_h_truth), args.output)
    scale = " (m_h: true [Fe/H])" if args.m_h_truth == "fe_h" and "m_h" in args.tokens else ""
    print(f"wrote {args.output}: {table.num_rows} rows, {', '.join(args.tokens)} from the truth{scale}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
