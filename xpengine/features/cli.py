"""`xpengine features`: Gaia XP (+ gaia_source, 2MASS, E(B−V)) files → a Parquet file of model tokens.

    xpengine features --xp XpContinuousMeanSpectrum_000000-003111.csv.gz \\
        --gaia-source GaiaSource_000000-003111.csv.gz [--tmass tmass.parquet] [--ebv ebv.parquet] \\
        --output tokens.parquet [--overwrite]

Output columns: `source_id` int64, `flags` int64 (`xpengine.features.flags.SourceFlag`), then per
vocabulary token `<name>` float32 (NaN = missing) and `<name>_error` float32 (0 = missing/unknown),
as in the training-set schema without `split`/`origin`. File metadata: `xpengine.vocabulary`,
`xpengine.features` (recipe version and parameters), `xpengine.flags` (bit table),
`xpengine.provenance` (inputs).

Reading and joining use `xpengine.io` (`read_xp_continuous`, `read_gaia_source`, `join_sources`),
imported when the command runs. Without `--gaia-source` the gaia_source columns the XP file holds
beside its XP are used (an ADQL join of the two tables: G, parallax, ...). Without either, every row is
flagged NO_GAIA_SOURCE and has no
pseudo-luminosity token (no parallax: NO_PARALLAX); its XP are normalised by the synthetic G of its own
coefficients (flag G_FROM_XP, σ 2.7 mmag against real G) and its `bprp` token is their synthetic BP−RP
(flag BP_RP_FROM_XP). Only a source without BP or RP has no synthetic G: NO_GAIA_PHOTOMETRY, no XP
tokens.

An input that cannot be read (missing file, missing columns, ...) or an existing output without
`--overwrite` ends in one line (`xpengine features: error: ...`, exit 2); a failure while the tokens are
built keeps its traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from xpengine.io.errors import one_line

logger = logging.getLogger(__name__)

_REPRESENTATIONS = ("raw", "projected")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "features",
        help="turn Gaia XP (+ gaia_source, 2MASS, E(B-V)) files into model tokens (Parquet)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--xp", required=True, metavar="FILE_OR_URL", help="XP continuous mean spectrum file")
    p.add_argument(
        "--gaia-source",
        metavar="FILE",
        help="gaia_source file holding the same sources (without it: the gaia_source columns the XP file holds "
        "beside its XP, an ADQL join's G and parallax; where there are none, G and BP-RP from each star's own "
        "XP, flags G_FROM_XP and BP_RP_FROM_XP, and no parallax token)",
    )
    p.add_argument(
        "--tmass",
        metavar="FILE",
        help="2MASS photometry with source_id, j_m, j_msigcom, h_m, h_msigcom, ks_m, ks_msigcom",
    )
    p.add_argument("--ebv", metavar="FILE", help="E(B-V) table with source_id, ebv, ebv_error [mag]")
    p.add_argument("--output", required=True, metavar="OUT.parquet", help="output Parquet file")
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    p.add_argument(
        "--representation",
        choices=_REPRESENTATIONS,
        default="projected",
        help="XP coefficients projected onto the well-determined subspace of the sampling matrix, the "
        "engine's representation (xpengine.spectra.representation; default), or as archived (raw)",
    )
    p.add_argument(
        "--min-relevant",
        type=int,
        default=10,
        help="flag FEW_RELEVANT_BASES below this many relevant coefficients in a band (default 10)",
    )
    p.add_argument(
        "--zero-point-fallback",
        type=float,
        default=None,
        metavar="MAS",
        help="parallax zero point [mas] used where Lindegren et al. (2021) is undefined "
        "(default: drop those parallaxes)",
    )
    p.add_argument(
        "--ebv-floor",
        type=float,
        default=None,
        metavar="MAG",
        help="raise E(B-V) below this to it before the log (default: E(B-V) <= 0 is missing)",
    )
    p.set_defaults(func=run_features)


def run_features(args: argparse.Namespace) -> int:
    import pyarrow.parquet as pq

    from xpengine.features.tokens import CoefficientCountError, build_tokens
    from xpengine.io import OutputTarget

    try:
        target = OutputTarget(args.output, args.overwrite, hint="--overwrite")
        table = _read_inputs(args)
    except (FileExistsError, FileNotFoundError, ValueError) as exc:  # GaiaFileError is a ValueError
        return _fail(exc)
    representation = None
    if args.representation == "projected":
        from xpengine.spectra.representation import token_representation

        representation = token_representation()
    try:
        batch = build_tokens(
            table,
            representation=representation,
            min_relevant=args.min_relevant,
            zero_point_fallback=args.zero_point_fallback,
            ebv_floor=args.ebv_floor,
        )
    except CoefficientCountError as exc:  # the input's XP lengths are not the vocabulary's: bad input
        return _fail(exc)
    provenance: dict[str, Any] = {
        "command": "xpengine features",
        "xp": args.xp,
        "gaia_source": args.gaia_source,
        "tmass": args.tmass,
        "ebv": args.ebv,
        "representation": args.representation,
    }
    if args.representation == "projected":
        from xpengine.spectra.representation import REPRESENTATION_ID

        provenance["representation_id"] = REPRESENTATION_ID
    result = batch.to_table(provenance=provenance)

    with target as tmp:
        pq.write_table(result, tmp, compression="zstd")
    from xpengine.features.flags import SourceFlag, has_flag

    logger.info(
        "wrote %d sources to %s (%d without BP, %d without RP, %d without G, %d with G from their XP, "
        "%d without parallax token)",
        len(batch),
        args.output,
        int(has_flag(batch.flags, SourceFlag.NO_BP).sum()),
        int(has_flag(batch.flags, SourceFlag.NO_RP).sum()),
        int(has_flag(batch.flags, SourceFlag.NO_GAIA_PHOTOMETRY).sum()),
        int(has_flag(batch.flags, SourceFlag.G_FROM_XP).sum()),
        int(has_flag(batch.flags, SourceFlag.NO_PARALLAX).sum()),
    )
    return 0


def _read_inputs(args: argparse.Namespace) -> Any:
    """The XP table of --xp joined with --gaia-source, --tmass and --ebv (for each one not given, the XP
    file's own columns of that kind, if any: an ADQL join; the XP table alone when there are none). Raises
    what the readers raise for an input that cannot be read (`GaiaFileError`, naming the file, row and
    column), so that the command can say it in one line."""
    from xpengine.io import (
        EBV_COLUMNS,
        TMASS_COLUMNS,
        embedded_columns,
        is_model_inputs,
        iter_model_inputs,
        join_sources,
        read_gaia_source,
        read_table,
        read_xp_continuous,
    )
    from xpengine.io.embedded import kept_and_replaced, split_embedded

    logger.info("reading XP spectra from %s", args.xp)
    gaia = read_gaia_source(args.gaia_source) if args.gaia_source else None
    tmass = read_table(args.tmass) if args.tmass else None
    ebv = read_table(args.ebv) if args.ebv else None
    if is_model_inputs(args.xp):  # `xpengine compact` output: its gaia_source, 2MASS and E(B−V) columns
        # (as the job reads it; a missing band is NaN there, which the XP reader would call corrupt)
        import pyarrow as pa

        xp = pa.concat_tables(list(iter_model_inputs(args.xp)), promote_options="none")
        replaced = list(gaia.column_names[1:-1]) if gaia is not None else []
        replaced += [*(TMASS_COLUMNS if tmass is not None else ()), *(EBV_COLUMNS if ebv is not None else ())]
        xp = xp.drop_columns([c for c in replaced if c in xp.column_names])  # the tables given replace them
        return (
            xp
            if gaia is None and tmass is None and ebv is None
            else join_sources(xp, gaia, tmass=tmass, ebv=ebv)
        )
    # the side columns the XP file holds (an ADQL join), for each kind of table not given here
    kept, by_kind = kept_and_replaced(
        embedded_columns(args.xp), {"gaia_source": gaia, "2MASS": tmass, "E(B-V)": ebv}
    )
    replaced = [c for cols in by_kind.values() for c in cols]
    if replaced:
        logger.warning("the XP file's own column(s) %s are replaced by the tables given", replaced)
    if kept:
        logger.info("using the XP file's own column(s) %s", kept)
    xp = read_xp_continuous(args.xp, with_gaia_source=kept)
    own_gaia = split_embedded(kept)["gaia_source"]
    if gaia is None and own_gaia and "phot_g_mean_mag" not in own_gaia:
        logger.warning(
            "no --gaia-source, and the XP file's own gaia_source column(s) %s hold no phot_g_mean_mag: the XP "
            "are normalised by the synthetic G of each star's own coefficients (flag G_FROM_XP)%s",
            own_gaia,
            "" if "parallax" in own_gaia else ", and no row has a parallax (NO_PARALLAX)",
        )
    if gaia is None and not own_gaia:
        logger.warning(
            "no --gaia-source: every row is flagged NO_GAIA_SOURCE and gets no parallax token; the XP are "
            "normalised by the synthetic G of each star's own coefficients (flag G_FROM_XP) and BP-RP is "
            "theirs too (BP_RP_FROM_XP); a source without BP or RP gets no XP tokens (NO_GAIA_PHOTOMETRY)"
        )
    if gaia is None and tmass is None and ebv is None:
        return xp
    return join_sources(xp, gaia, tmass=tmass, ebv=ebv)


def _fail(exc: Exception) -> int:
    """Print `xpengine features: error: <exc>` on one line to stderr; returns the exit status 2."""
    print(f"xpengine features: error: {one_line(exc)}", file=sys.stderr)
    return 2
