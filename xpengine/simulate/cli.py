"""`xpengine simulate`: write a synthetic Gaia sky (bulk XP + GaiaSource files, APOGEE-like labels, truth).

Example (the bundled default sky, `xpengine/data/sky/`, was made with exactly this command)::

    xpengine simulate --n-sources 3000 --seed 20260127 \
        --ranges 000000-003111,245760-248871,688128-691239 \
        --correlation-levels 1 --coefficient-digits 7 --gzip-level 9 --output xpengine/data/sky

(three ~160 deg² patches: b ≈ −44° (l ≈ 171°), b ≈ +4° (l ≈ 92°), b ≈ +7° (l ≈ 302°); one
G-independent correlation template, coefficients rounded to 7 significant digits and zlib level 9 keep
it at ~5 MB). Large skies: `--partitions K --workers 2` (one process per partition at a time).

`--physics mist` draws the stars from the MIST v2.5 isochrones instead (thin and thick disk, halo and
bulge, Kroupa IMF, every evolutionary phase; xpengine.simulate.populations), in the same files::

    xpengine simulate --physics mist --n-sources 20000 --seed 1 --partitions 4 --output sky_mist

Stars outside the XP spectral emulator's fitted range (hot and very cool dwarfs, hot core-He burners) are
not simulated; the printed summary counts them (`xp_emulator`). Needs the PyPI packages lachesis-grids and
astrolachesis (xpengine/simulate/ISOCHRONES.md).

The same arguments give the same bytes on one machine; on another CPU some floating-point values differ
in their last bits (see xpengine.simulate.sky), which the test that
regenerates the bundled sky allows for by comparing numbers, not bytes.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from xpengine.io.errors import one_line
from xpengine.simulate.sky import PHYSICS

__all__ = ["register", "run"]

logger = logging.getLogger(__name__)

_PROG = "xpengine simulate"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "simulate",
        help="write a synthetic Gaia sky in the real bulk formats (with APOGEE-like labels and truth)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--n-sources", type=int, required=True, help="total number of XP sources")
    p.add_argument("--output", required=True, help="output directory")
    p.add_argument(
        "--seed", type=int, default=0, help="random seed (same seed -> same sky; identical bytes on one CPU)"
    )
    p.add_argument("--partitions", type=int, default=2, help="number of HEALPix-8 bulk partitions")
    p.add_argument(
        "--ranges",
        default=None,
        help="explicit HEALPix-8 ranges AAAAAA-BBBBBB,... (inclusive; overrides --partitions)",
    )
    p.add_argument("--chunk-size", type=int, default=10_000, help="sources generated at a time (memory)")
    p.add_argument(
        "--correlation-levels",
        type=int,
        default=8,
        help="number of G-dependent correlation templates (1 = single template, much smaller files)",
    )
    p.add_argument(
        "--coefficient-digits",
        type=int,
        default=None,
        help="round XP coefficients to this many significant digits (default: full float64)",
    )
    p.add_argument(
        "--gzip-level",
        type=int,
        default=None,
        help="gzip level of the bulk files: 1-3 ISA-L (fast; default 2), 4-9 zlib (smaller, for small skies)",
    )
    p.add_argument(
        "--physics",
        choices=PHYSICS,
        default="polynomial",
        help="stellar physics: polynomial (REFERENCE §7 relations, the bundled sky; default) or mist "
        "(MIST v2.5 isochrones, four Galactic populations)",
    )
    p.add_argument("--workers", type=int, default=1, help="processes simulating partitions in parallel")
    p.add_argument("--missing-bp-rate", type=float, default=None, help="fraction of sources without BP")
    p.add_argument(
        "--apogee-fraction",
        type=float,
        default=None,
        help="fraction of APOGEE-selectable giants given survey labels (default 0.35; 1.0 for training skies)",
    )
    p.add_argument(
        "--survey-h-max",
        type=float,
        default=None,
        help="faint H limit of the APOGEE-like survey labels (default 12.2, APOGEE-2; deeper skies teach "
        "faint giants)",
    )
    p.add_argument(
        "--emulator",
        default=None,
        help="XP emulator calibration: v1 or v2 (the packaged files; default v2) or a path to a calibration "
        ".npz (python -m xpengine.simulate.calibration); gaia-xp v1/v2 were trained on v1 skies",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier sky in --output: every file an earlier `xpengine simulate` wrote there is "
        "removed first (other bulk partitions there are refused, never removed)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from xpengine.simulate._output_dir import SkyFolderError
    from xpengine.simulate.generate import planned_partitions, simulate_sky
    from xpengine.simulate.sky import SkyConfig

    cfg = SkyConfig(
        correlation_levels=args.correlation_levels,
        coefficient_digits=args.coefficient_digits,
        gzip_level=args.gzip_level,
        physics=args.physics,
    )
    if args.missing_bp_rate is not None:
        cfg = replace(cfg, missing_bp_rate=args.missing_bp_rate)
    if args.apogee_fraction is not None:
        if not 0.0 <= args.apogee_fraction <= 1.0:
            return _fail(f"--apogee-fraction must be in [0, 1], got {args.apogee_fraction}")
        cfg = replace(cfg, apogee_fraction=args.apogee_fraction)
    if args.survey_h_max is not None:
        if not 7.0 < args.survey_h_max <= 17.0:
            return _fail(f"--survey-h-max must be in (7, 17], got {args.survey_h_max}")
        cfg = replace(cfg, survey_h_max=args.survey_h_max)
    if args.emulator is not None:
        try:
            cfg = replace(cfg, emulator=_emulator_path(args.emulator))
        except ValueError as exc:
            return _fail(exc)
    partitions = None
    if args.ranges:
        try:
            partitions = [tuple(int(v) for v in r.split("-")) for r in args.ranges.split(",")]
        except ValueError:
            return _fail(f"--ranges {args.ranges!r}: expected AAAAAA-BBBBBB[,AAAAAA-BBBBBB...]")
        if any(len(r) != 2 for r in partitions):
            return _fail(f"--ranges {args.ranges!r}: expected AAAAAA-BBBBBB[,AAAAAA-BBBBBB...]")
    # a bad argument or an output folder holding another sky ends in one line (exit 2), checked before
    # anything is written; a failure inside the simulation keeps its traceback
    try:
        planned_partitions(args.n_sources, args.workers, args.partitions, partitions)
    except ValueError as exc:
        return _fail(exc)
    try:
        summary = simulate_sky(
            args.output,
            args.n_sources,
            seed=args.seed,
            n_partitions=args.partitions,
            partitions=partitions,
            chunk_size=args.chunk_size,
            config=cfg,
            workers=args.workers,
            overwrite=args.overwrite,
        )
    except SkyFolderError as exc:
        return _fail(exc.message("--overwrite"))
    print(json.dumps(summary, indent=1))
    return 0


def _fail(problem: Exception | str) -> int:
    """Print `xpengine simulate: error: <problem>` on one line to stderr; returns the exit status 2."""
    print(f"{_PROG}: error: {one_line(problem)}", file=sys.stderr)
    return 2


def _emulator_path(value: str) -> str | None:
    """--emulator value → calibration path for SkyConfig.emulator (None = the packaged default)."""
    from pathlib import Path

    from xpengine.simulate.calibration import CALIBRATION_FILE, CALIBRATION_VERSIONS, packaged_calibration

    if value in CALIBRATION_VERSIONS:
        ref = packaged_calibration(value)
        return None if ref.name == CALIBRATION_FILE else str(ref)
    if not Path(value).is_file():
        raise ValueError(f"--emulator {value!r}: expected v1, v2 or an existing calibration .npz file")
    return value
