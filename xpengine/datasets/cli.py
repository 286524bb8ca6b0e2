"""`xpengine build-dataset`: build training-schema Parquet files.

    xpengine build-dataset apogee-xp --input apogee_xp_dev.fits.gz --output apogee_xp.parquet
    xpengine build-dataset apogee --allstar allStar-dr17-synspec_rev1.fits \
        --distmass APOGEE_DistMass-DR17_v1.6.1.fits --xp DIR --gaia-source DIR --output apogee.parquet
    xpengine build-dataset synthetic --sky SKY_DIR --output synthetic.parquet
    xpengine build-dataset synthetic --sky SKY_DIR --with-tokens alpha_m --output synthetic.parquet
    xpengine build-dataset mixed --real apogee_xp.parquet --synthetic synthetic.parquet \
        [--synthetic-weight W] [--max-synthetic N] --output mixed.parquet

Heavy work (astropy, the builders) is imported inside the command functions.

An input the builder cannot use (a missing file or sky directory, a file without the columns it needs, a
vocabulary mismatch, no star left after the cuts: FileNotFoundError, ValueError, `GaiaFileError`) or an
existing output without --overwrite ends in one line, `xpengine build-dataset: error: ...`, with exit
status 2 (`xpengine -v` also logs its traceback).
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING, Any, NoReturn

from xpengine.io.errors import one_line

if TYPE_CHECKING:
    from xpengine.io import OutputTarget

logger = logging.getLogger(__name__)

_PROG = "xpengine build-dataset"
_INPUT_ERRORS = (FileNotFoundError, ValueError)
"""What the builders raise for an input they cannot use (`GaiaFileError` is a ValueError)."""


def _fail(exc: Exception | str) -> NoReturn:
    """End the command with `xpengine build-dataset: error: <exc>` on one line (stderr), exit status 2;
    the traceback goes to the debug log (`xpengine -v`)."""
    if isinstance(exc, Exception):
        logger.debug("%s failed", _PROG, exc_info=exc)
    print(f"{_PROG}: error: {one_line(exc)}", file=sys.stderr)
    raise SystemExit(2)


def _output(args: argparse.Namespace) -> OutputTarget:
    """`xpengine.io.OutputTarget` of --output (checked before the build; write with `with target as tmp`).

    An existing output without --overwrite ends the command with a message naming it (`_fail`).
    """
    from xpengine.io import OutputTarget

    try:
        return OutputTarget(args.output, args.overwrite, hint="--overwrite")
    except FileExistsError as exc:
        _fail(exc)


def _report(table: object, path: str, what: str = "stars") -> None:
    import numpy as np

    from xpengine.datasets.splits import split_counts

    split = np.asarray(table.column("split").to_numpy(zero_copy_only=False))  # type: ignore[attr-defined]
    counts = split_counts(split)
    logger.info(
        "wrote %s: %d %s (train %d, val %d, test %d)",
        path,
        split.size,
        what,
        counts["train"],
        counts["val"],
        counts["test"],
    )


def _build_and_write(args: argparse.Namespace, build_fn: Any, what: str = "stars") -> Any:
    """The build of every builder: --output checked first, `build_fn()` (a bad input ends the command in
    one line, `_fail`), its table written to --output and counted per split; returns the build."""
    from xpengine.datasets.schema import write_training_set

    target = _output(args)
    try:
        build = build_fn()
    except _INPUT_ERRORS as exc:
        _fail(exc)
    with target as tmp:
        write_training_set(build.table, tmp, overwrite=True)
    _report(build.table, args.output, what)
    return build


def _run_apogee_xp(args: argparse.Namespace) -> int:
    from xpengine.datasets.apogee_xp import build_apogee_xp

    _build_and_write(
        args,
        lambda: build_apogee_xp(
            args.input,
            val_fraction=args.val_fraction,
            test_fraction=args.test_fraction,
            xp_error_model=args.xp_errors,
            chunk_rows=args.chunk_rows,
        ),
    )
    return 0


def _survey_options(args: argparse.Namespace) -> dict[str, object]:
    return {
        "mass_column": args.mass_column,
        "mass_error_column": args.mass_error_column,
        "age_column": args.age_column,
        "age_error_column": args.age_error_column,
        "val_fraction": args.val_fraction,
        "test_fraction": args.test_fraction,
        "keep_without_evolution": args.keep_without_evolution,
        "with_correlations": args.xp_correlations,
    }


def _vocabulary(args: argparse.Namespace) -> object:
    """The builder's vocabulary: the paper's 120 tokens plus --with-tokens (None = builder default)."""
    if not args.with_tokens:
        return None
    from xpengine.features import PAPER_VOCABULARY

    return PAPER_VOCABULARY.with_tokens(args.with_tokens)


def _run_apogee(args: argparse.Namespace) -> int:
    from xpengine.datasets.survey import SurveyInputs, build_survey

    inputs = SurveyInputs(
        allstar=args.allstar,
        distmass=args.distmass,
        xp=args.xp,
        gaia_source=args.gaia_source,
        tmass=args.tmass,
        ebv=args.ebv,
    )
    _build_and_write(
        args,
        lambda: build_survey(
            inputs,
            origin="apogee-dr17",
            vocabulary=_vocabulary(args),
            **_survey_options(args),  # type: ignore[arg-type]
        ),
    )
    return 0


def _run_synthetic(args: argparse.Namespace) -> int:
    from xpengine.datasets.synthetic import build_synthetic

    _build_and_write(
        args,
        lambda: build_synthetic(
            args.sky,
            vocabulary=_vocabulary(args),
            val_fraction=args.val_fraction,
            test_fraction=args.test_fraction,
            keep_without_evolution=args.keep_without_evolution,
            with_correlations=args.xp_correlations,
            every_order=args.every_order,
        ),
    )
    return 0


def _run_mixed(args: argparse.Namespace) -> int:
    from xpengine.datasets.mixed import build_mixed

    build = _build_and_write(
        args,
        lambda: build_mixed(
            args.real,
            args.synthetic,
            synthetic_weight=args.synthetic_weight,
            max_synthetic=args.max_synthetic,
            synthetic_drop=args.synthetic_drop_tokens,
            synthetic_truth=args.synthetic_truth_tokens,
            synthetic_truth_errors=args.synthetic_truth_errors,
        ),
        "rows",
    )
    w = build.summary["weighting"]
    rows = {k: build.summary["sources"][k]["rows"] for k in ("real", "synthetic")}
    logger.info(
        "rows per source: real %s, synthetic %s; synthetic share of training rows %.3f",
        rows["real"],
        rows["synthetic"],
        w["synthetic_share_of_train_rows"],
    )
    return 0


def _common(p: argparse.ArgumentParser, *, val: float, test: float) -> None:
    p.add_argument("--output", required=True, help="output Parquet file (training schema)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument(
        "--val-fraction", type=float, default=val, help=f"validation fraction of all stars (default {val})"
    )
    p.add_argument(
        "--test-fraction", type=float, default=test, help=f"test fraction of all stars (default {test})"
    )


def _with_tokens(p: argparse.ArgumentParser) -> None:
    from xpengine.features.vocabulary import EXTRA_TOKENS

    p.add_argument(
        "--with-tokens",
        nargs="+",
        choices=sorted(EXTRA_TOKENS),
        default=None,
        metavar="TOKEN",
        help="extra tokens appended to the paper's 120-token vocabulary (e.g. alpha_m, so that the set "
        "shares the apogee-xp builder's vocabulary and can be mixed with it); default: none, and [α/M] "
        f"goes to an extra column. Choices: {', '.join(sorted(EXTRA_TOKENS))}",
    )


def _weight(text: str) -> float:
    try:
        w = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not (w >= 0 and w != float("inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return w


def _count(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return n


def _evolution_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--keep-without-evolution",
        action="store_true",
        help="keep stars with no usable mass/age (NaN tokens); default: drop them, as the paper does",
    )
    p.add_argument(
        "--xp-correlations",
        action="store_true",
        help="read the XP coefficient correlations for exact token errors (about 10x slower reading)",
    )


def register(sub: argparse._SubParsersAction) -> None:
    """Add `build-dataset` with the `apogee-xp`, `apogee`, `synthetic` and `mixed` builders."""
    p = sub.add_parser(
        "build-dataset",
        help="build a training set (training-schema Parquet)",
        description="Build a training/validation/test set in the xpengine training schema.",
    )
    kinds = p.add_subparsers(dest="kind", required=True, metavar="KIND")

    a = kinds.add_parser(
        "apogee-xp",
        help="APOGEE DR17 labels + real Gaia XP sampled spectra (apogee_xp_dev.fits.gz layout)",
    )
    a.add_argument("--input", required=True, help="APOGEE×XP FITS file (.fits or .fits.gz)")
    a.add_argument(
        "--xp-errors",
        choices=("estimated", "propagated", "unknown"),
        default="estimated",
        help="XP token errors from the sampled flux errors (see xpengine.spectra.sampled_errors)",
    )
    a.add_argument("--chunk-rows", type=int, default=4096, help="rows per processing chunk")
    _common(a, val=0.1, test=0.1)
    a.set_defaults(func=_run_apogee_xp)

    s = kinds.add_parser(
        "apogee",
        help="APOGEE DR17 allStar + DistMass VAC cross-matched with Gaia XP and gaia_source",
    )
    s.add_argument("--allstar", required=True, help="allStar-dr17-synspec_rev1.fits")
    s.add_argument("--distmass", required=True, help="APOGEE_DistMass-DR17_v1.6.1.fits")
    s.add_argument("--xp", required=True, help="directory or URL of XpContinuousMeanSpectrum files")
    s.add_argument("--gaia-source", required=True, help="directory or URL of GaiaSource files")
    s.add_argument("--tmass", help="2MASS table (source_id, j_m, j_msigcom, …); default: allStar J/H/K")
    s.add_argument("--ebv", help="E(B−V) table (source_id, ebv, ebv_error)")
    s.add_argument("--mass-column", default="MASS", help="DistMass mass column [Msun] (default MASS)")
    s.add_argument("--mass-error-column", default="MASS_ERR", help="DistMass mass error column")
    s.add_argument(
        "--age-column", default="AGE_COR_SS", help="DistMass age column [yr, linear] (default AGE_COR_SS)"
    )
    s.add_argument("--age-error-column", default="AGE_ERR", help="DistMass age error column [dex]")
    _evolution_options(s)
    _with_tokens(s)
    _common(s, val=0.09, test=0.1)
    s.set_defaults(func=_run_apogee)

    y = kinds.add_parser("synthetic", help="a simulated sky directory (xpengine simulate output)")
    y.add_argument("--sky", required=True, help="simulated sky directory")
    y.add_argument(
        "--every-order",
        action="store_true",
        help="keep every XP coefficient, ignoring X_n_relevant_bases (as sampled spectra keep them)",
    )
    _evolution_options(y)
    _with_tokens(y)
    _common(y, val=0.09, test=0.1)
    y.set_defaults(func=_run_synthetic)

    m = kinds.add_parser(
        "mixed",
        help="one training set of real and simulated stars (two training-schema files)",
        description="Mix a real training set (apogee-xp / apogee builder) and a synthetic one (synthetic "
        "builder) into one training-schema file. Both must share the vocabulary, the XP representation "
        "and the token recipe. Every star keeps its input's split (the real split is checked against the "
        "rule its file records). Tokens a source lacks stay missing. The training loop has no per-star "
        "weights: --synthetic-weight W gives each synthetic training star W rows on average (copies, or a "
        "deterministic subsample when W < 1); validation and test stars keep one row. See "
        "xpengine.datasets.mixed.",
    )
    m.add_argument("--real", required=True, help="real training-schema Parquet (build-dataset apogee-xp)")
    m.add_argument(
        "--synthetic", required=True, help="synthetic training-schema Parquet (build-dataset synthetic)"
    )
    m.add_argument(
        "--synthetic-weight",
        type=_weight,
        default=1.0,
        metavar="W",
        help="expected rows per synthetic training star, relative to one per real star (default 1)",
    )
    m.add_argument(
        "--max-synthetic",
        type=_count,
        default=None,
        metavar="N",
        help="keep at most N synthetic stars over all splits (a deterministic uniform subsample by "
        "source_id, applied before the weight); default: all",
    )
    m.add_argument(
        "--synthetic-drop-tokens",
        nargs="+",
        default=[],
        metavar="TOKEN",
        help="tokens left missing in the synthetic training rows (learned from the real stars alone, e.g. "
        "m_h alpha_m); validation and test rows keep them",
    )
    m.add_argument(
        "--synthetic-truth-tokens",
        nargs="+",
        default=[],
        metavar="TOKEN",
        help="tokens whose synthetic values (every split) are the simulated truth with error 0 instead of "
        "the survey-like labels, e.g. mass ln_age",
    )
    m.add_argument(
        "--synthetic-truth-errors",
        choices=("zero", "keep"),
        default="zero",
        help="known error of those truth values in the loss: zero (default) or keep the survey-like label's "
        "error, so that the stars keep their weights",
    )
    m.add_argument("--output", required=True, help="output Parquet file (training schema)")
    m.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    m.set_defaults(func=_run_mixed)
