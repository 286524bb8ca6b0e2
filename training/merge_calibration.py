"""Merge two σ calibrations of one model: some labels from another validation set.

    python training/merge_calibration.py BASE.json OTHER.json --labels teff logg m_h alpha_m --output OUT.json

Why: a model trained on real and simulated stars together has one validation split mixing both, and the
simulated stars (more numerous) dominate its σ calibration. The catalogue runs on real stars, so the
labels real stars have (Teff, logg, [M/H], [α/M]) are better calibrated on the real validation stars
alone (OTHER), while mass, age and the other labels only simulated stars have keep BASE's fit. The output
records both sources and which labels came from which in its provenance.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xpengine.model.calibration import Calibration


def merge(base: Calibration, other: Calibration, labels: list[str]) -> Calibration:
    """BASE with the `labels` entries replaced by OTHER's (each must be in OTHER), their every-order
    entries (format 5) too, OTHER's where it has them, never BASE's; BASE's sim-to-real terms are kept except
    those of the merged labels and their log/linear partners (`Calibration.updated`)."""
    missing = [k for k in labels if k not in other.labels]
    if missing:
        raise ValueError(
            f"labels {missing} are not calibrated in the other calibration ({sorted(other.labels)})"
        )
    taken = Calibration(
        labels={k: other.labels[k] for k in labels},
        provenance=dict(other.provenance),
        all_orders={k: other.all_orders[k] for k in labels if k in other.all_orders},
        all_orders_provenance=dict(other.all_orders_provenance),
    )
    out, _ = base.updated(taken)
    out.provenance["merged"] = {
        "labels_from_other": list(labels),
        "other": dict(other.provenance),
        "base_labels_kept": sorted(k for k in base.labels if k not in labels),
    }
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("base", help="calibration.json whose other labels are kept")
    p.add_argument("other", help="calibration.json the --labels come from")
    p.add_argument("--labels", nargs="+", required=True)
    p.add_argument("--output", required=True)
    args = p.parse_args(argv)
    out = merge(Calibration.load(args.base), Calibration.load(args.other), args.labels)
    out.save(args.output, overwrite=True)
    print(f"wrote {args.output}: {', '.join(args.labels)} from {args.other}, the rest from {args.base}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
