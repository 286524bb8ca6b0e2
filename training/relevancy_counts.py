"""Count how often each (BP, RP) pair of `X_n_relevant_bases` occurs in XP continuous files, for relevancy
truncation in training (`truncate_counts` in a training config, `xpengine.train.sampling`): a cut training
star then takes the pattern of a random row of the table, the archive's own mix of patterns, independent of
the star's brightness.

    python training/relevancy_counts.py 'runs/sky_mist41/XpContinuousMeanSpectrum_*.csv.gz' \
        --output configs/train/relevancy/sky41_counts.csv

Inputs: XP continuous files in any format the engine reads (a simulated sky's, or real DR3 bulk partitions):
local paths, local globs, or fsspec URLs (one file each; a URL is not globbed). Rows with a missing band are left out (they have no pair); the output's
comment lines give the command, the files, and the rows read and left out.
"""

from __future__ import annotations

import argparse
import glob
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runs from a checkout without installing

from xpengine.io.xp_continuous import iter_xp_continuous
from xpengine.train.train_data import COUNT_COLUMNS

COLUMNS = ["source_id", "bp_n_relevant_bases", "rp_n_relevant_bases"]


def count_pairs(paths: list[str]) -> tuple[Counter[tuple[int, int]], int, int]:
    """((BP, RP) → number of rows, rows read, rows left out for a missing band) over `paths`."""
    pairs: Counter[tuple[int, int]] = Counter()
    n_rows = n_missing = 0
    for path in paths:
        for batch in iter_xp_continuous(path, columns=COLUMNS):
            bp = batch.column("bp_n_relevant_bases").to_pylist()
            rp = batch.column("rp_n_relevant_bases").to_pylist()
            n_rows += len(bp)
            for b, r in zip(bp, rp, strict=True):
                if b is None or r is None or b < 1 or r < 1:
                    n_missing += 1
                else:
                    pairs[(int(b), int(r))] += 1
    return pairs, n_rows, n_missing


def write_counts(pairs: Counter[tuple[int, int]], output: str, comments: list[str]) -> None:
    lines = [f"# {c}" for c in comments] + [",".join(COUNT_COLUMNS)]
    lines += [f"{b},{r},{n}" for (b, r), n in sorted(pairs.items())]
    Path(output).write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("inputs", nargs="+", help="XP continuous files, globs or URLs")
    ap.add_argument("--output", required=True, help="the CSV count table to write")
    args = ap.parse_args(argv)
    paths: list[str] = []
    for spec in args.inputs:
        found = sorted(glob.glob(spec)) if any(ch in spec for ch in "*?[") else [spec]
        if not found:
            ap.error(f"no file matches {spec!r}")
        paths += found
    pairs, n_rows, n_missing = count_pairs(paths)
    if not pairs:
        ap.error("no row with both bands")
    comments = [
        "python training/relevancy_counts.py " + " ".join(args.inputs) + f" --output {args.output}",
        f"{len(paths)} files, {n_rows} rows, {n_missing} left out for a missing band, {len(pairs)} (BP, RP) pairs",
    ]
    write_counts(pairs, args.output, comments)
    print(comments[1])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
