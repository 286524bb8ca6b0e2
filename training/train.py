"""Train the xpengine model from a YAML preset.

    python training/train.py --config configs/train/small.yaml data_path=train.parquet output_dir=runs/small
    python training/train.py --config configs/train/tiny.yaml --no-ray data_path=toy.parquet output_dir=runs/t
    python training/train.py --config configs/train/paper.yaml data_path=... output_dir=... --resume runs/paper
    python training/train.py --config configs/train/gaia_xp_paper_gpu.yaml --no-ray --time-budget 300 ...

Overrides are dotted `key=value` pairs (value parsed as YAML), e.g. `epochs=10 model.dropout=0.0`.
By default the loop runs inside Ray Train (one worker, GPU when the cluster has one); `--no-ray` runs
the same loop in this process.

`--time-budget S` (with `--no-ray`, a lent GPU's fixed lease): a two-epoch probe run in OUTPUT_DIR/probe
times an epoch here (its second epoch: the first pays the device's start), then the run trains as many
epochs as fit in the seconds left, as one cosine cycle (`epochs` = `scheduler_t0` = that number, replacing the YAML's); the log and
OUTPUT_DIR/time_budget.json say what was chosen. The run itself resumes exactly like any other, with
--resume and without --time-budget: its `epochs` and `scheduler_t0` then come from its checkpoint (the
budget's, not the YAML's) unless given on the command line.

A resume continues the checkpoint's optimizer, schedule and sampling: the settings that define the
training trajectory (lr, weight_decay, scheduler_t0, eta_min, batch_size, the masking, focus, truncation
and pool settings, ...: `xpengine.train.resume_checks.TRAJECTORY_KEYS`) must be the checkpoint's, and a
change is refused, listing each key; `epochs` may grow. So must the data file (its SHA-256), unless
--allow-data-change (the provenance then keeps each chunk's data record).

Without --resume, OUTPUT_DIR must not hold a run already (its model/ or checkpoints/): the two runs'
checkpoints and metrics would mix. Pass --resume OUTPUT_DIR to continue it, or choose another directory.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shutil
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None, *, hold_memory: bool = False) -> int:
    """The CLI; hold_memory (the script's own run, not a caller's process): on a CPU, keep freed memory in
    this process's heap (`xpengine.train.loop.hold_freed_memory`, ~1.3x faster steps at batch 1024)."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--config", required=True, help="training YAML (configs/train/*.yaml)")
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides")
    parser.add_argument("--no-ray", action="store_true", help="run the loop directly, without Ray Train")
    parser.add_argument("--resume", default=None, help="checkpoint or run directory to resume from")
    parser.add_argument(
        "--time-budget",
        type=float,
        default=None,
        help="seconds for the whole run (with --no-ray): a probe epoch, then as many epochs as fit",
    )
    parser.add_argument(
        "--allow-data-change",
        action="store_true",
        help="with --resume: continue on a data file other than the checkpoint's (its SHA-256 differs)",
    )
    parser.add_argument(
        "--cpus-per-worker",
        type=int,
        default=None,
        help="Ray Train: CPUs of the training worker, hence its torch threads (default: every CPU of the "
        "cluster; Ray's own actors take none)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = parser.parse_intermixed_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from xpengine.train.config import load_train_config

    config = load_train_config(args.config, args.overrides)
    if not config.data_path or not config.output_dir:
        parser.error("set data_path and output_dir (in the YAML or as key=value overrides)")
    if args.time_budget is not None and (not args.no_ray or args.resume):
        parser.error(
            "--time-budget needs --no-ray and a new run (no --resume); a budgeted run resumes with --resume "
            "alone, taking its epochs and scheduler_t0 from its checkpoint"
        )
    if args.cpus_per_worker is not None and (args.no_ray or args.cpus_per_worker < 1):
        parser.error("--cpus-per-worker takes an integer >= 1, and goes without --no-ray")
    if args.allow_data_change and args.resume is None:
        parser.error("--allow-data-change goes with --resume")
    if args.resume is not None:
        from xpengine.train.resume_checks import budgeted_resume

        explicit = {item.partition("=")[0].strip() for item in args.overrides}
        config = budgeted_resume(config, args.resume, explicit)
    else:
        from xpengine.train.run_files import check_fresh_output_dir

        try:
            check_fresh_output_dir(Path(config.output_dir))
        except FileExistsError as e:
            parser.exit(2, f"{parser.prog}: error: {e}\n")
    if args.no_ray:
        from xpengine.datasets.schema import read_training_set
        from xpengine.train.loop import hold_freed_memory, resolve_device, train
        from xpengine.train.resume_checks import ResumeMismatch

        if hold_memory and resolve_device(config.device).type == "cpu":
            hold_freed_memory()

        t_start = time.perf_counter()
        train_arrays = read_training_set(config.data_path, split="train")
        val_arrays = read_training_set(config.data_path, split="val", vocabulary=train_arrays.vocabulary)
        if args.time_budget is not None:
            config = fit_epochs_to_budget(config, train_arrays, val_arrays, args.time_budget, t_start)
            if config is None:  # not one epoch fits after the probe: the probe's run is the result
                return 0
        try:
            result = train(
                config,
                train_arrays,
                val_arrays,
                resume_from=args.resume,
                allow_data_change=args.allow_data_change,
            )
        except ResumeMismatch as e:  # a resume that would not continue its run: the message says why
            parser.exit(2, f"{parser.prog}: error: {e}\n")
        logging.getLogger("train").info("model written to %s", result.model_dir)
        return 0
    from xpengine.train.ray_train import run_ray_training
    from xpengine.train.resume_checks import ResumeMismatch, precheck_resume

    try:  # on the driver, before Ray starts: a refused resume fails in seconds, with its reasons
        if args.resume is not None:
            precheck_resume(config, args.resume, allow_data_change=args.allow_data_change)
    except (ResumeMismatch, FileNotFoundError) as e:
        parser.exit(2, f"{parser.prog}: error: {e}\n")
    try:
        result = run_ray_training(
            config,
            output_dir=config.output_dir,
            resume_from=args.resume,
            allow_data_change=args.allow_data_change,
            cpus_per_worker=args.cpus_per_worker,
        )
    except Exception as e:  # Ray 2.60's Train raises the worker's error (WorkerGroupError) from fit()
        logging.getLogger("train").error("Ray Train failed: %s: %s", type(e).__name__, e)
        return 1
    if getattr(result, "error", None) is not None:
        logging.getLogger("train").error("Ray Train failed: %s", result.error)
        return 1
    logging.getLogger("train").info("model written to %s/model", config.output_dir)
    return 0


def fit_epochs_to_budget(config, train_arrays, val_arrays, budget_s: float, t_start: float):
    """`config` with `epochs` = `scheduler_t0` = the epochs that fit in what is left of `budget_s`
    (counted from `t_start`) after a two-epoch probe run.

    The probe's second epoch gives the steady cost of an epoch (its first pays the device's start: on an
    H200, 8 s against 1 s for the next ones, session 9); what the probe spent outside its epochs (start,
    validation, checkpoint) is held back once more for the run's own start and end, and 5 % is added to
    each epoch for the run's validations and checkpoints.

    When not one epoch fits in what is left, no run is started (it would overrun the lease, whose
    files are then lost): the probe's two-epoch run (its model, checkpoints and metrics) moves up to
    `output_dir` as the result, and None is returned."""
    from xpengine.train.loop import train

    out = Path(config.output_dir)
    # OUTPUT_DIR holds no run (checked by main); a probe left there by an attempt stopped before its
    # run's first checkpoint is scratch
    shutil.rmtree(out / "probe", ignore_errors=True)
    probe = dataclasses.replace(
        config, epochs=2, scheduler_t0=2, val_every=2, checkpoint_every=2, output_dir=str(out / "probe")
    )
    t0 = time.perf_counter()
    result = train(probe, train_arrays, val_arrays)
    probe_s = time.perf_counter() - t0
    epoch_s = float(result.history[-1]["epoch_time_s"]) * 1.05
    overhead_s = max(0.0, probe_s - sum(float(h["epoch_time_s"]) for h in result.history))
    left = budget_s - (time.perf_counter() - t_start)
    fit = int((left - overhead_s) / epoch_s)
    epochs = max(1, fit)
    record = {
        "budget_s": budget_s,
        "probe_s": round(probe_s, 3),
        "probe_epoch_s": [round(float(h["epoch_time_s"]), 3) for h in result.history],
        "epoch_s": epoch_s,
        "overhead_s": overhead_s,
        "left_s": left,
        "epochs": epochs,
        "yaml_epochs": config.epochs,
    }
    out.mkdir(parents=True, exist_ok=True)
    if fit < 1:
        for name in ("model", "checkpoints", "metrics.jsonl"):
            if (out / "probe" / name).exists():
                (out / "probe" / name).rename(out / name)
        record.update(epochs=2, probe_is_the_run=True)
        (out / "time_budget.json").write_text(json.dumps(record, indent=1))
        logging.getLogger("train").warning(
            "time budget %.0f s: the probe took %.1f s and no further epoch of ~%.2f s fits in the %.0f s "
            "left; the probe's 2-epoch run is the result (%s)",
            budget_s,
            probe_s,
            epoch_s,
            left,
            out / "model",
        )
        return None
    (out / "time_budget.json").write_text(json.dumps(record, indent=1))
    logging.getLogger("train").info(
        "time budget %.0f s: probe %.1f s (epochs %s s), so %d epochs of ~%.2f s in the %.0f s left",
        budget_s,
        probe_s,
        record["probe_epoch_s"],
        epochs,
        epoch_s,
        left,
    )
    return dataclasses.replace(config, epochs=epochs, scheduler_t0=epochs)


if __name__ == "__main__":
    sys.exit(main(hold_memory=True))
