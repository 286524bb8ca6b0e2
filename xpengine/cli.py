"""The `xpengine` command. Each subcommand lives in the module that implements it.

Every module listed in `_COMMAND_MODULES` defines `register(subparsers) -> None`, which adds one or
more subparsers with `set_defaults(func=callable)`; the callable takes the parsed namespace and returns
an exit code. Modules must import heavy dependencies (ray, torch, xgboost, matplotlib) inside the
callable, not at import time, so `xpengine --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

_COMMAND_MODULES: tuple[str, ...] = (
    "xpengine.features.cli",
    "xpengine.catalog.cli",
    "xpengine.datasets.cli",
    "xpengine.evaluate.cli",
    "xpengine.simulate.cli",
    "xpengine.tasks.cli",
    "xpengine.pipeline.cli",
    "xpengine.pipeline.compact",
    "xpengine.pipeline.warm_pool",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xpengine",
        description="Stellar masses, ages and atmospheric parameters from Gaia XP spectra.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from xpengine.catalog.cli import parse_command_line  # `query` takes its SQL after its options too

    parser = build_parser()
    args = parse_command_line(parser, argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
