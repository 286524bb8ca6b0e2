"""Copy a simulated training-schema file with the named tokens set to the simulated truth (error 0).

    python training/truth_labels.py runs/sky_mist_test.parquet runs/sky_mist_test_truth.parquet --tokens mass ln_age

The simulator's survey files carry survey-like labels (DistMass-like mass and age: a noisy mass, and an
age from it on isochrones that stop at 14 Gyr). A model trained on the truth (`build-dataset mixed
--synthetic-truth-tokens`) is scored against the truth with such a copy, and the XGBoost baseline of
`benchmarks/compare_models.py` is trained on one, so that both learn the same targets. The token ↔ truth
column map is `xpengine.datasets.label_edits.TRUTH_LABELS`; every other column and the file metadata are kept.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from xpengine.datasets.label_edits import truth_values


def with_truth(table: pa.Table, tokens: Sequence[str]) -> pa.Table:
    """`table` with each token of `tokens` (keys of `label_edits.TRUTH_LABELS`) and its error column replaced by the
    truth and 0, in the columns' own types."""
    for name in tokens:
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
    args = ap.parse_args(argv)
    table = pq.read_table(args.source)
    pq.write_table(with_truth(table, args.tokens), args.output)
    print(f"wrote {args.output}: {table.num_rows} rows, {', '.join(args.tokens)} from the truth")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
