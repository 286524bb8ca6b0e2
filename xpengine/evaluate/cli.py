"""`xpengine evaluate`: accuracy, robustness scenarios and uncertainty calibration of a model.

Example (the paper's recipe; the baseline's 2000 trees take 15–30 s per label on 25k training stars
with one thread of this project's 2-core CPU)::

    xpengine evaluate --model checkpoints/paper --data data/apogee_xp.parquet --output eval/ \\
        --baseline-train data/apogee_xp.parquet --baseline-config configs/baseline/xgboost.yaml

Writes into the output directory: metrics.json, report.md, PNG figures, calibration.json (when a
validation split exists) and baseline_xgboost/ (when the baseline was trained).
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["register", "run_evaluation"]

logger = logging.getLogger(__name__)


def _split_rows(path: str, split: str) -> int:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    col = pq.read_table(path, columns=["split"]).column("split")
    return int(pc.sum(pc.equal(col, split)).as_py() or 0)


def run_evaluation(
    model: str | None,
    data: str,
    output: str | os.PathLike,
    *,
    split: str = "test",
    predictor: Any = None,
    baseline_train: str | None = None,
    baseline_config: str | None = None,
    baseline_estimators: int | None = None,
    baseline_model: str | None = None,
    val_data: str | None = None,
    val_split: str = "val",
    calibration_policy: str = "auto",
    calibration_method: str = "scale_floor",
    store_calibration: bool = False,
    scenarios: Sequence[str] | None = None,
    device: str = "cpu",
    dtype: str | None = None,
    batch_size: int = 4096,
    max_stars: int | None = None,
    seed: int = 0,
    figures: bool = True,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Evaluate `model` (a checkpoint directory or name for `Predictor.load`, or an already built
    `predictor` object) on the `split` rows of `data`, with the XGBoost baseline when
    `baseline_train` (trained on its "train" rows) or `baseline_model` (a saved baseline) is given.

    The σ calibration is fitted on `val_data` (default: the `val_split` rows of `data`, else of
    `baseline_train`). Returns the metrics dict also written to `output/metrics.json`.
    """
    from xpengine.evaluate.baseline import BaselineConfig, XGBoostBaseline
    from xpengine.evaluate.report import render_report, write_metrics
    from xpengine.evaluate.runner import evaluate, load_eval_set, load_predictor, train_baseline
    from xpengine.evaluate.scenarios import SCENARIOS
    from xpengine.io import OutputTarget

    if baseline_train and baseline_model:
        raise ValueError(
            "give either --baseline-train (train a baseline) or --baseline-model (load one), not both"
        )
    out = Path(output)
    # metrics.json marks a finished evaluation: refused up front if present, written last (atomically)
    metrics_target = OutputTarget(out / "metrics.json", overwrite, hint="--overwrite")  # creates `out`

    if predictor is None and model is not None:
        predictor = load_predictor(model, device=device, dtype=dtype)
    test = load_eval_set(data, split=split, max_stars=max_stars, seed=seed)

    val = None
    if predictor is not None:
        for cand in [val_data] if val_data else [data, baseline_train]:
            if cand and _split_rows(cand, val_split) > 0:
                val = load_eval_set(cand, split=val_split, max_stars=max_stars, seed=seed)
                break

    baseline = None
    baseline_note = None
    if baseline_model:
        baseline = XGBoostBaseline.load(baseline_model)
        baseline_note = f"loaded from `{baseline_model}`"
    elif baseline_train:
        cfg = BaselineConfig.from_yaml(baseline_config) if baseline_config else BaselineConfig()
        if baseline_estimators is not None:
            cfg = BaselineConfig.from_dict({**cfg.to_dict(), "n_estimators": baseline_estimators})
        baseline = train_baseline(baseline_train, cfg, split="train")
        saved = baseline.save(out / "baseline_xgboost", overwrite=overwrite)
        baseline_note = (
            f"trained on the train split of `{baseline_train}` ({cfg.n_estimators} trees, depth "
            f"{cfg.params.get('max_depth')}, lr {cfg.params.get('learning_rate')}, NaN policy "
            f"{cfg.nan_policy}); saved in `{saved.name}/`"
        )

    result = evaluate(
        predictor,
        test,
        baseline=baseline,
        val=val,
        scenarios=tuple(scenarios) if scenarios else tuple(s.name for s in SCENARIOS),
        batch_size=batch_size,
        seed=seed,
        calibration_method=calibration_method,
        calibration_policy=calibration_policy,
    )
    result.metrics["data"]["model"] = model
    files: list[str] = []
    if result.calibration is not None:
        files.append(str(result.calibration.save(out / "calibration.json", overwrite=True)))
        if store_calibration:
            if model is None or not Path(model).is_dir():
                raise ValueError(
                    f"--store-calibration needs --model to be a checkpoint directory, got {model!r}"
                )
            p = result.calibration.save(Path(model), overwrite=overwrite)
            logger.info("calibration stored with the model: %s", p)
            result.metrics["calibration"]["stored_at"] = str(p)
    if figures:
        from xpengine.evaluate.plots import make_figures

        files += make_figures(result, out)
    result.metrics["files"] = [Path(f).name for f in files]
    (out / "report.md").write_text(
        render_report(
            result.metrics,
            model=str(model),
            figures=[f for f in files if f.endswith(".png")],
            baseline_note=baseline_note,
        )
    )
    with metrics_target as tmp:
        write_metrics(result.metrics, tmp)
    logger.info("evaluation written to %s", out)
    return result.metrics


def _main(args: argparse.Namespace) -> int:
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
    return 0


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
    p.add_argument("--split", default="test", help="rows of --data to evaluate (default: test)")
    p.add_argument("--baseline-train", help="train the XGBoost baseline on the train split of this file")
    p.add_argument("--baseline-config", help="YAML of baseline settings (configs/baseline/xgboost.yaml)")
    p.add_argument("--baseline-estimators", type=int, help="override n_estimators (quick runs)")
    p.add_argument("--baseline-model", help="load a saved baseline directory instead of training one")
    p.add_argument(
        "--val-data", help="validation file for the σ calibration (default: --data, then --baseline-train)"
    )
    p.add_argument("--val-split", default="val", help="rows used for the calibration (default: val)")
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
        help="also write calibration.json into the --model checkpoint directory",
    )
    p.add_argument(
        "--scenarios", help="comma-separated subset of standard,first5,random64,high_order,identity"
    )
    p.add_argument("--device", default="cpu")
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
    p.set_defaults(func=_main)
