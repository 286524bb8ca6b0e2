"""`xpengine evaluate`: accuracy, robustness scenarios and uncertainty calibration of a model.

Example (the paper's recipe; the baseline's 2000 trees take 15–30 s per label on 25k training stars
with one thread of this project's 2-core CPU)::

    xpengine evaluate --model checkpoints/paper --data data/apogee_xp.parquet --output eval/ \\
        --baseline-train data/apogee_xp.parquet --baseline-config configs/baseline/xgboost.yaml

Writes into the output directory: metrics.json, report.md, PNG figures, calibration.json (when a
validation split exists) and baseline_xgboost/ (when the baseline was trained).

Inputs are checked before the model is loaded: a missing file, a --data that is not a Parquet file with
a `split` column or has no --split rows, and an existing output without --overwrite end in one line
(`xpengine evaluate: error: ...`, exit 2); a failure during the evaluation keeps its traceback.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys

from xpengine.evaluate.evaluation import run_evaluation, same_file
from xpengine.io.errors import one_line

__all__ = ["register"]

logger = logging.getLogger(__name__)


def _baseline_conflict(args: argparse.Namespace) -> str | None:
    """Why the XGBoost baseline would be trained on stars it is then scored on, or None: --baseline-train
    names --data and --split takes its train rows (`train`, or `all`)."""
    if (
        not args.baseline_train
        or args.split not in ("train", "all")
        or not same_file(args.baseline_train, args.data)
    ):
        return None
    return (
        f"--baseline-train is --data and --split {args.split} scores its train rows: XGBoost would be scored on "
        "the stars it was trained on; train it on another file (e.g. the APOGEE×XP dev set) or score --split test"
    )


def _split_conflict(args: argparse.Namespace) -> str | None:
    """Why the σ calibration would be fitted on the stars it is then judged on, or None.

    That happens when --split names the --val-split rows of the calibration file and that file is --data
    (no --val-data, or --val-data naming the same file), or --split all with --val-data naming --data: the
    reported z-spreads would then be calibrated on the test data itself.
    """
    same = same_file(args.val_data, args.data) if args.val_data else None
    # --split all without --val-data: `run_evaluation` skips the scored file's rows (another file's, or none)
    if not ((args.split == args.val_split and same is not False) or (args.split == "all" and same)):
        return None
    return (
        f"--split {args.split} and --val-split {args.val_split} select the same rows of --data: the σ "
        "calibration would be fitted on the stars it scores; calibrate on another split (e.g. --split test "
        "--val-split val) or on another file (--val-data)"
    )


def _check_inputs(args: argparse.Namespace) -> None:
    """Refuse, before the model is loaded or a baseline trained, what `run_evaluation` would only find
    later: a missing input file (FileNotFoundError) and a --data without --split rows (ValueError, naming
    the file and the splits it has). Local paths only; the readers judge URLs."""
    if args.baseline_train and args.baseline_model:
        raise ValueError(
            "give either --baseline-train (train a baseline) or --baseline-model (load one), not both"
        )
    if getattr(args, "store_calibration", False) and not (args.model and os.path.isdir(args.model)):
        raise ValueError(
            f"--store-calibration needs --model to be a checkpoint directory, got {args.model!r} (a bundled "
            "model's calibration is part of the package: copy its directory and give the copy)"
        )
    for option in ("data", "val_data", "baseline_train", "baseline_model", "baseline_config"):
        path = getattr(args, option)
        if path and "://" not in path and not os.path.exists(path):
            raise FileNotFoundError(f"--{option.replace('_', '-')} {path}: no such file or directory")
    if "://" in args.data:
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        names = pq.read_schema(args.data).names
        splits = (
            pq.read_table(args.data, columns=["split"]).column("split").to_pylist()
            if "split" in names
            else None
        )
    except (OSError, pa.ArrowException) as exc:
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"--data {args.data}: not a Parquet file ({why})") from exc
    if splits is None:
        raise ValueError(f"--data {args.data}: no `split` column; not a training-schema file (build-dataset)")
    if args.split != "all" and args.split not in splits:
        have = sorted({str(v) for v in splits if v is not None})
        raise ValueError(
            f"--data {args.data}: no rows with split == {args.split!r} (--split); its splits: {have}"
        )


def _fail(exc: Exception | str) -> int:
    """Print `xpengine evaluate: error: <exc>` on one line to stderr; returns the exit status 2."""
    print(f"xpengine evaluate: error: {one_line(exc)}", file=sys.stderr)
    return 2


def _main(args: argparse.Namespace, parser: argparse.ArgumentParser | None = None) -> int:
    conflict = _split_conflict(args) or _baseline_conflict(args)
    if conflict:
        if parser is not None:
            parser.error(conflict)  # usage, then the one-line error; exit status 2
        raise SystemExit(_fail(conflict))
    try:
        _check_inputs(args)
    except (FileNotFoundError, ValueError) as exc:
        return _fail(exc)
    try:
        _evaluate(args)
    except FileExistsError as exc:  # metrics.json, the model's calibration.json, baseline_xgboost/
        return _fail(exc)
    return 0


def _evaluate(args: argparse.Namespace) -> None:
    run_evaluation(
        args.model,
        args.data,
        args.output,
        split=args.split,
        baseline_train=args.baseline_train,
        baseline_config=args.baseline_config,
        baseline_estimators=args.baseline_estimators,
        baseline_model=args.baseline_model,
        val_data=args.val_data,
        sim_to_real=args.sim_to_real,
        val_split=args.val_split,
        calibration_policy=args.calibration,
        calibration_method=args.calibration_method,
        store_calibration=args.store_calibration,
        scenarios=args.scenarios.split(",") if args.scenarios else None,
        device=args.device,
        dtype=args.dtype,
        batch_size=args.batch_size,
        max_stars=args.max_stars,
        seed=args.seed,
        figures=not args.no_figures,
        overwrite=args.overwrite,
    )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="accuracy, robustness scenarios and σ calibration of a model (+ XGBoost baseline)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, help="checkpoint directory or model name (Predictor.load)")
    p.add_argument("--data", required=True, help="test set, training-schema Parquet")
    p.add_argument("--output", required=True, help="output directory")
    p.add_argument(
        "--split",
        default="test",
        help="rows of --data to evaluate (default: test; all: every row, e.g. a held-back file scored whole, "
        "with --val-data and --baseline-train naming another file)",
    )
    p.add_argument("--baseline-train", help="train the XGBoost baseline on the train split of this file")
    p.add_argument("--baseline-config", help="YAML of baseline settings (configs/baseline/xgboost.yaml)")
    p.add_argument("--baseline-estimators", type=int, help="override n_estimators (quick runs)")
    p.add_argument("--baseline-model", help="load a saved baseline directory instead of training one")
    p.add_argument(
        "--val-data", help="validation file for the σ calibration (default: --data, then --baseline-train)"
    )
    p.add_argument(
        "--val-split",
        default="val",
        help="rows used for the calibration (default: val; never the --split rows of --data)",
    )
    p.add_argument(
        "--calibration",
        choices=("auto", "always", "never"),
        default="auto",
        help="auto: correct labels whose validation z-spread is outside 0.9–1.1",
    )
    p.add_argument("--calibration-method", choices=("scale_floor", "scale"), default="scale_floor")
    p.add_argument(
        "--store-calibration",
        action="store_true",
        help="also write the fitted entries into the --model checkpoint's calibration.json (an existing "
        "file needs --overwrite: the refitted tokens' entries are replaced, every other entry and section "
        "kept, and the every-order entries and sim-to-real terms the refit makes stale dropped, as "
        "metrics.json's calibration.stored_update records)",
    )
    p.add_argument(
        "--scenarios", help="comma-separated subset of standard,first5,random64,high_order,identity"
    )
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--no-sim-to-real",
        dest="sim_to_real",
        action="store_false",
        help="the stars are simulated: the shipped σ are scored without the model's sim-to-real term (the "
        "catalogue adds it for real stars; default: real stars, as the catalogue gives them)",
    )
    p.add_argument(
        "--dtype", default=None, help="inference precision passed to Predictor.load (e.g. bfloat16)"
    )
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument(
        "--max-stars", type=int, help="use a seeded random subset of at most N test (and validation) stars"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-figures", action="store_true")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=functools.partial(_main, parser=p))
