"""`xpengine` subcommands of the generative and probing tasks (Zhang et al. 2026 §4.2–4.5, §5).

    xpengine spectra-from-labels --model M --output DIR --teff 4700 --logg 2.5 --m-h 0 --mass 1.2 --age 4.5
    xpengine spectra-from-labels --model M --output DIR --labels labels.csv      # one star per row
    xpengine spectra-from-labels --model M --output DIR --sequences              # Fig. 7
    xpengine reconstruct --model M --data test.parquet --output DIR               # Figs. 8–11
    xpengine inpaint --model M --data test.parquet --output DIR                   # Fig. 12
    xpengine label-grid --model M --output DIR [--data test.parquet]              # Figs. 13–15
    xpengine extinction-curve --model M --output DIR                              # Fig. 16
    xpengine attention --model M --output DIR [--data test.parquet]               # Fig. 17
    xpengine embed --model M --data test.parquet --output DIR                     # embeddings, Fig. 18
    xpengine figures --model M --data test.parquet --output DIR [--max-stars N]   # all of them + evaluation

`--data` is a training-schema Parquet file (`xpengine build-dataset`); its `--split` rows (default test)
are used. Registered by `register(subparsers)`.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from typing import Any

__all__ = ["register"]

logger = logging.getLogger(__name__)

_LABEL_OPTIONS: tuple[tuple[str, str, str], ...] = (
    ("teff", "--teff", "effective temperature [K]"),
    ("logg", "--logg", "surface gravity [dex]"),
    ("m_h", "--m-h", "metallicity [M/H] [dex]"),
    ("alpha_m", "--alpha-m", "[α/M] [dex] (models whose vocabulary has it)"),
    ("mass", "--mass", "mass [M☉]"),
    ("age", "--age", "age [Gyr]"),
    ("ebv", "--ebv", "E(B−V) [mag]"),
    ("g_fakemag", "--g-fakemag", "pseudo-luminosity ϖ[mas]·10^(0.2 G)"),
    ("abs_g", "--abs-g", "absolute G magnitude [mag] (instead of --g-fakemag)"),
)
_ATTENTION_LABELS = ("teff", "logg", "m_h", "mass", "age")
"""Label options of `attention` (the star whose cross-attention is shown)."""


def _add_task(
    sub: argparse._SubParsersAction,
    name: str,
    help_text: str,
    func: Callable[[argparse.Namespace], int],
    *,
    data: str | None,
    figures_option: bool = True,
) -> argparse.ArgumentParser:
    """Add the task subcommand `name` running `func`, with the options every task shares.

    data: None (no --data), "optional" or "required": --data, and with it --split, --max-stars and
    --seed. figures_option: add --no-figures. Returns the subparser for the task's own options.
    """
    p = sub.add_parser(
        name, help=help_text, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.set_defaults(func=func)
    p.add_argument("--model", required=True, help="checkpoint directory or bundled model name")
    p.add_argument("--output", required=True, help="output directory")
    if data == "required":
        p.add_argument("--data", required=True, help="test set, training-schema Parquet")
    elif data == "optional":
        p.add_argument("--data", help="test set, training-schema Parquet (adds the data panels / test star)")
    if data is not None:
        p.add_argument(
            "--split", default="test", help="rows of --data to use: test (default), train, val or all"
        )
        p.add_argument(
            "--max-stars",
            type=int,
            help="seeded random subset of at most N stars (figures: default 3000, 0 = all)",
        )
        p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--threads",
        type=int,
        help="torch intra-op CPU threads (default: torch's; 1 is fastest on a busy machine)",
    )
    p.add_argument("--batch-size", type=int, default=256, help="stars per forward pass")
    if figures_option:
        p.add_argument("--no-figures", action="store_true", help="write the data files only")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    return p


def _add_labels(p: argparse.ArgumentParser, keys: tuple[str, ...] | None = None) -> None:
    """Add the scalar label options (`_LABEL_OPTIONS`): all, or those whose destination is in `keys`."""
    for key, flag, text in _LABEL_OPTIONS:
        if keys is None or key in keys:
            p.add_argument(flag, dest=key, type=float, help=text)


def _threads(args: argparse.Namespace) -> None:
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)


def _predictor(args: argparse.Namespace) -> Any:
    from xpengine.tasks.common import load_predictor

    _threads(args)
    return load_predictor(args.model, device=args.device, batch_size=args.batch_size)


def _stars(args: argparse.Namespace, predictor: Any) -> Any:
    if not getattr(args, "data", None):
        return None
    from xpengine.tasks.data import load_stars

    return load_stars(
        args.data, predictor.vocabulary, split=_split(args), max_stars=args.max_stars, seed=args.seed
    )


def _split(args: argparse.Namespace) -> str | None:
    return None if args.split == "all" else args.split


def _report(summary: dict[str, Any], output: str) -> None:
    files = summary.get("files", [])
    logger.info("wrote %d files to %s: %s", len(files), output, ", ".join(files))


def _labels_from_args(args: argparse.Namespace) -> tuple[dict[str, Any], list[str] | None]:
    """Labels from --labels FILE (CSV or Parquet, one star per row; an optional `name` column) or from
    the scalar options; exactly one of the two."""
    scalars = {key: getattr(args, key) for key, _, _ in _LABEL_OPTIONS if getattr(args, key) is not None}
    if args.labels and scalars:
        raise ValueError("give labels either with --labels FILE or with the label options, not both")
    if args.labels:
        import pyarrow.csv as pcsv
        import pyarrow.parquet as pq

        from xpengine.tasks.common import LABEL_INPUTS

        table = pq.read_table(args.labels) if args.labels.endswith(".parquet") else pcsv.read_csv(args.labels)
        names = table.column("name").to_pylist() if "name" in table.column_names else None
        unknown = [c for c in table.column_names if c not in LABEL_INPUTS and c != "name"]
        if unknown:
            raise ValueError(
                f"{args.labels}: columns {unknown} are not labels; expected some of {sorted(LABEL_INPUTS)} "
                "and an optional 'name'"
            )
        labels = {
            c: table.column(c).to_numpy(zero_copy_only=False) for c in table.column_names if c != "name"
        }
        return labels, [str(n) for n in names] if names is not None else None
    return scalars, None


def _spectra_main(args: argparse.Namespace) -> int:
    from xpengine.tasks.runner import run_sequences, run_spectra_from_labels

    labels, names = _labels_from_args(args)
    if not labels and not args.sequences:
        raise SystemExit("give labels (--teff ... or --labels FILE) and/or --sequences")
    predictor = _predictor(args)
    if labels:
        s = run_spectra_from_labels(
            predictor, labels, args.output, names=names, figures=not args.no_figures, overwrite=args.overwrite
        )
        _report(s, args.output)
    if args.sequences:
        s = run_sequences(predictor, args.output, figures=not args.no_figures, overwrite=args.overwrite)
        _report(s, args.output)
    return 0


def _reconstruct_main(args: argparse.Namespace) -> int:
    from xpengine.tasks.runner import run_reconstruction

    predictor = _predictor(args)
    inputs = args.inputs.split(",") if args.inputs else None
    s = run_reconstruction(
        predictor,
        _stars(args, predictor),
        args.output,
        inputs=inputs,
        figures=not args.no_figures,
        overwrite=args.overwrite,
    )
    logger.info("median normalised RMSE %s over %d stars", s["rmse"]["median"], s["n_scored"])
    _report(s, args.output)
    return 0


def _inpaint_main(args: argparse.Namespace) -> int:
    from xpengine.tasks.runner import run_inpainting

    predictor = _predictor(args)
    s = run_inpainting(
        predictor, _stars(args, predictor), args.output, figures=not args.no_figures, overwrite=args.overwrite
    )
    _report(s, args.output)
    return 0


def _grid_main(args: argparse.Namespace) -> int:
    from xpengine.tasks.runner import run_label_grid

    predictor = _predictor(args)
    s = run_label_grid(
        predictor,
        args.output,
        stars=_stars(args, predictor),
        figures=not args.no_figures,
        overwrite=args.overwrite,
    )
    _report(s, args.output)
    return 0


def _extinction_main(args: argparse.Namespace) -> int:
    from xpengine.tasks.runner import run_extinction

    predictor = _predictor(args)
    s = run_extinction(
        predictor,
        args.output,
        figures=not args.no_figures,
        overwrite=args.overwrite,
        ebv=[float(x) for x in args.ebv.split(",")],
        ebv_ref=args.ebv_ref,
        ebv_scale=args.ebv_scale,
        teff_relation=args.teff_relation,
        absolute=not args.normalised,
    )
    logger.info("best-fitting Fitzpatrick (1999) R_V = %.2f", s["best_fit_rv"] or float("nan"))
    _report(s, args.output)
    return 0


def _attention_main(args: argparse.Namespace) -> int:
    from xpengine.tasks.runner import run_attention

    predictor = _predictor(args)
    labels = {key: getattr(args, key) for key in _ATTENTION_LABELS if getattr(args, key) is not None}
    s = run_attention(
        predictor,
        args.output,
        labels=labels or None,
        stars=_stars(args, predictor),
        ebv_low=args.ebv_low,
        ebv_high=args.ebv_high,
        figures=not args.no_figures,
        overwrite=args.overwrite,
    )
    _report(s, args.output)
    return 0


def _embed_main(args: argparse.Namespace) -> int:
    from xpengine.tasks.runner import run_embeddings

    predictor = _predictor(args)
    s = run_embeddings(
        predictor,
        _stars(args, predictor),
        args.output,
        inputs=args.inputs.split(",") if args.inputs else None,
        seed=args.seed,
        figures=not args.no_figures,
        overwrite=args.overwrite,
    )
    _report(s, args.output)
    return 0


def _figures_main(args: argparse.Namespace) -> int:
    from xpengine.tasks.runner import run_figures

    _threads(args)
    s = run_figures(
        args.model,
        args.data,
        args.output,
        split=_split(args),
        max_stars=None if args.max_stars == 0 else args.max_stars,
        seed=args.seed,
        device=args.device,
        batch_size=args.batch_size,
        evaluation=not args.no_evaluation,
        extinction_grid=args.extinction_grid,
        overwrite=args.overwrite,
    )
    logger.info("figures: %s; seconds per task: %s", ", ".join(s["figures"]), s["seconds"])
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the task subcommands to the `xpengine` parser."""
    p = _add_task(
        sub,
        "spectra-from-labels",
        "XP spectra generated from labels (paper §4.2, Fig. 7)",
        _spectra_main,
        data=None,
    )
    p.add_argument(
        "--labels",
        help="CSV or Parquet of labels, one star per row (columns: teff, logg, m_h, "
        "mass, age [Gyr], ebv [mag], g_fakemag or abs_g, optional name)",
    )
    _add_labels(p)
    p.add_argument("--sequences", action="store_true", help="also the label sequences of Fig. 7")

    p = _add_task(
        sub,
        "reconstruct",
        "spectra reconstructed from true labels, RMSE (Figs. 8–11)",
        _reconstruct_main,
        data="required",
    )
    p.add_argument(
        "--inputs", help="comma-separated context tokens (default: all label tokens but g_fakemag)"
    )

    _add_task(sub, "inpaint", "BP → RP and RP → BP inpainting (Fig. 12)", _inpaint_main, data="required")

    _add_task(
        sub,
        "label-grid",
        "Kiel grid, mass/age and age–[M/H] from labels (Figs. 13–15)",
        _grid_main,
        data="optional",
    )

    p = _add_task(
        sub,
        "extinction-curve",
        "the model's extinction curve vs Fitzpatrick 1999 (Fig. 16)",
        _extinction_main,
        data=None,
    )
    p.add_argument("--ebv", default="0.4,0.8,1.2", help="reddenings [mag] (default 0.4,0.8,1.2)")
    p.add_argument("--ebv-ref", type=float, default=0.01, help="reference reddening [mag] (default 0.01)")
    p.add_argument(
        "--ebv-scale",
        type=float,
        default=1.0,
        help="E(B−V)_true / E(B−V)_input (1 for true-scale inputs; 0.884 for SFD, as the paper)",
    )
    p.add_argument(
        "--teff-relation",
        choices=("reference", "paper"),
        default="reference",
        help="RGB Teff(logg): REFERENCE §7 fit to MIST, or the paper's linear relation",
    )
    p.add_argument(
        "--normalised",
        action="store_true",
        help="G-normalised spectra (curve relative to G) instead of absolute flux at 10 pc",
    )

    p = _add_task(
        sub,
        "attention",
        "decoder cross-attention at low and high E(B−V) (Fig. 17)",
        _attention_main,
        data="optional",
    )
    _add_labels(p, _ATTENTION_LABELS)
    p.add_argument("--ebv-low", type=float, default=0.01)
    p.add_argument("--ebv-high", type=float, default=0.37)

    p = _add_task(
        sub,
        "embed",
        "encoder embeddings to Parquet, colours from embeddings (Fig. 18)",
        _embed_main,
        data="required",
    )
    p.add_argument(
        "--inputs", help="context tokens, e.g. 'bp0..31,rp0..31' (default, within the context length)"
    )

    p = _add_task(
        sub,
        "figures",
        "regenerate every task figure (Figs. 7–18) and the evaluation figures",
        _figures_main,
        data="required",
        figures_option=False,
    )
    p.set_defaults(max_stars=3000)
    p.add_argument("--no-evaluation", action="store_true", help="skip `xpengine evaluate` (evaluation/)")
    p.add_argument(
        "--extinction-grid",
        choices=("data", "paper"),
        default="data",
        help="E(B−V) values of Fig. 16: the paper's 0.4/0.8/1.2 vs 0.01 kept within the test stars' "
        "E(B−V) range (data, default), or exactly the paper's",
    )
