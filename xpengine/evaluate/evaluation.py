"""`run_evaluation`: the library function behind `xpengine evaluate` and `xpengine figures`.

Loads a model and a split of a training-schema Parquet file, optionally trains or loads the XGBoost
baseline, runs :func:`xpengine.evaluate.runner.evaluate` (accuracy, input scenarios, σ calibration on the
validation split) and writes metrics.json, report.md, calibration.json and figures into the output
directory.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["run_evaluation"]

logger = logging.getLogger(__name__)


def _split_rows(path: str, split: str) -> int:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    col = pq.read_table(path, columns=["split"]).column("split")
    return int(pc.sum(pc.equal(col, split)).as_py() or 0)


def _scored_rows(cand: str, data: str, val_split: str, split: str) -> bool:
    """Whether the `val_split` rows of `cand` are among the `split` rows scored in `data` (the same file,
    and the same split or every split), so a σ calibration fitted on them would be judged on itself."""
    return same_file(cand, data) and split in (val_split, "all")


def same_file(a: str, b: str) -> bool:
    """Whether paths a and b name one file (either missing: the same absolute path)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def _calibration_set(data, val_data, baseline_train, val_split, split, max_stars, seed):
    """The rows the σ calibration is fitted on: the `val_split` rows of `val_data`, else of `data`, else of
    `baseline_train`; never rows that are scored (`_scored_rows`: skipped with a warning); None if none."""
    from xpengine.evaluate.runner import load_eval_set

    cands = [val_data] if val_data else [data, baseline_train]
    if len(cands) == 2 and cands[1] and same_file(cands[0], cands[1]):
        cands = cands[:1]  # one file given twice: judged (and warned about) once
    for cand in cands:
        if cand and _scored_rows(cand, data, val_split, split):
            logger.warning(
                "no σ calibration on the %r rows of %s: they are scored (%r)", val_split, cand, split
            )
            continue
        if cand and _split_rows(cand, val_split) > 0:
            return load_eval_set(cand, split=val_split, max_stars=max_stars, seed=seed)
    return None


def _stored_calibration(model: str | None, overwrite: bool) -> Any:
    """The calibration already in the `model` checkpoint directory that --store-calibration will update
    (None: no file yet), checked before any work: the directory must exist, and replacing entries of an
    existing file needs `overwrite`."""
    from xpengine.model.calibration import CALIBRATION_FILE, Calibration

    if model is None or not Path(model).is_dir():
        raise ValueError(f"--store-calibration needs --model to be a checkpoint directory, got {model!r}")
    path = Path(model) / CALIBRATION_FILE
    if not path.exists():
        return None
    if not overwrite:
        raise FileExistsError(
            f"{path} exists; pass --overwrite to update it (the entries this evaluation fits replace "
            "theirs; its other entries, every-order entries and sim-to-real terms are kept)"
        )
    return Calibration.load(path)


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
    sim_to_real: bool = True,
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

    stored = _stored_calibration(model, overwrite) if store_calibration else None
    shipped = None  # the model as it ships, with its own σ calibration (when it has one)
    if predictor is None and model is not None:
        predictor = load_predictor(model, device=device, dtype=dtype)
        shipped = load_predictor(model, device=device, dtype=dtype, calibrate=True, sim_to_real=sim_to_real)
        if getattr(shipped, "calibration", None) is None:
            shipped = None
    test = load_eval_set(data, split=split, max_stars=max_stars, seed=seed)

    val = (
        None
        if predictor is None
        else _calibration_set(data, val_data, baseline_train, val_split, split, max_stars, seed)
    )

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
        shipped=shipped,
    )
    result.metrics["data"]["model"] = model
    if result.metrics["calibration"] and result.metrics["calibration"].get("shipped") is not None:
        result.metrics["calibration"]["shipped_sim_to_real"] = bool(getattr(shipped, "sim_to_real", False))
    files: list[str] = []
    if result.calibration is not None:
        files.append(str(result.calibration.save(out / "calibration.json", overwrite=True)))
        if store_calibration:
            cal, record = (result.calibration, None) if stored is None else stored.updated(result.calibration)
            p = cal.save(Path(model), overwrite=True)  # `_stored_calibration` checked --overwrite
            logger.info("calibration stored with the model: %s (%s)", p, record or "new file")
            result.metrics["calibration"]["stored_at"] = str(p)
            result.metrics["calibration"]["stored_update"] = record
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
