"""`xpengine features`: placeholder registration, replaced by the feature pipeline command."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("features", help="turn Gaia XP (+ gaia_source) files into model tokens")
    p.set_defaults(func=lambda args: 0)
