"""Train the xpengine model from a YAML preset.

    python training/train.py --config configs/train/small.yaml data_path=train.parquet output_dir=runs/small
    python training/train.py --config configs/train/tiny.yaml --no-ray data_path=toy.parquet output_dir=runs/t
    python training/train.py --config configs/train/paper.yaml data_path=... output_dir=... --resume runs/paper

Overrides are dotted `key=value` pairs (value parsed as YAML), e.g. `epochs=10 model.dropout=0.0`.
By default the loop runs inside Ray Train (one worker, GPU when the cluster has one); `--no-ray` runs
the same loop in this process.
"""

from __future__ import annotations

import argparse
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--config", required=True, help="training YAML (configs/train/*.yaml)")
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides")
    parser.add_argument("--no-ray", action="store_true", help="run the loop directly, without Ray Train")
    parser.add_argument("--resume", default=None, help="checkpoint or run directory to resume from")
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
    if args.no_ray:
        from xpengine.datasets.schema import read_training_set
        from xpengine.train.loop import train

        train_arrays = read_training_set(config.data_path, split="train")
        val_arrays = read_training_set(config.data_path, split="val", vocabulary=train_arrays.vocabulary)
        result = train(config, train_arrays, val_arrays, resume_from=args.resume)
        logging.getLogger("train").info("model written to %s", result.model_dir)
        return 0
    from xpengine.train.ray_train import run_ray_training

    result = run_ray_training(config, output_dir=config.output_dir, resume_from=args.resume)
    if result.error is not None:
        logging.getLogger("train").error("Ray Train failed: %s", result.error)
        return 1
    logging.getLogger("train").info("model written to %s/model", config.output_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
