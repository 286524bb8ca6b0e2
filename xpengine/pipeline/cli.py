r"""The catalogue job's command line, shared by `python jobs/infer_gaia.py` (the Ray job entry point,
for `ray job submit`) and `xpengine infer` (the same job for a user who does not think in Ray jobs).

Both take the same options and run `xpengine.pipeline.ray_job.run_inference`; configuration, model,
input and output problems end in one line (`<prog>: error: ...`, exit 2), a failed partition in exit 1.
"""

from __future__ import annotations

import argparse
import logging
import sys

__all__ = ["JOB_DESCRIPTION", "add_job_arguments", "job_main", "register", "run_job"]

JOB_DESCRIPTION = r"""Gaia XP → mass / age / Teff / logg / [M/H] catalogue, as a Ray job.

Local run on the embedded default data and model (starts its own Ray cluster):

    python jobs/infer_gaia.py

On a running cluster (local: `ray start --head --dashboard-host 127.0.0.1`):

    RAY_AUTH_MODE=token ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/infer_gaia.py --input /data/xp_continuous_mean_spectrum --gaia-source /data/gaia_source \
        --output /data/catalogue

Inputs and outputs may be fsspec/pyarrow URLs (s3://bucket/prefix with credentials from the standard AWS
environment variables, AWS_ENDPOINT_URL for S3-compatible stores). The job exits non-zero when a
partition failed; re-running resumes (finished partitions are skipped unless --overwrite). A local
cluster started by the job listens on 127.0.0.1 only; Ray's authentication setting (RAY_AUTH_MODE,
token by default) is left as the user has it. One job at a time per output (a lock in OUTPUT/_LOCK.json).
"""


def add_job_arguments(p: argparse.ArgumentParser) -> None:
    """The job's options (each overrides the same key of the --config YAML)."""
    p.add_argument("--config", help="YAML config (configs/infer/*.yaml)")
    p.add_argument(
        "--input",
        nargs="+",
        help="XP partitions or files: directories, globs or URLs of XpContinuousMeanSpectrum (or "
        "XpSampledMeanSpectrum) bulk files, or single archive files: XP_CONTINUOUS, XP_SAMPLED, GaiaXPy "
        "calibrate output, a Gaia archive download (.zip: its XP_CONTINUOUS files are read); a glob matching "
        "no bulk file gives one partition per file it matches; or ModelInputs_AAAAAA-BBBBBB.parquet files "
        "written once by `xpengine compact` "
        "(they hold the gaia_source columns, so no partner files are needed)",
    )
    p.add_argument("--gaia-source", nargs="+", help="GaiaSource partitions (paired by partition suffix)")
    p.add_argument(
        "--tmass", help="2MASS table (source_id, j_m, j_msigcom, h_m, h_msigcom, ks_m, ks_msigcom)"
    )
    p.add_argument("--ebv", help="E(B-V) table (source_id, ebv, ebv_error)")
    p.add_argument("--model", help="checkpoint directory or bundled model name (default gaia-xp)")
    p.add_argument("--output", help="output directory or URL (default ./xpengine-catalog)")
    p.add_argument(
        "--labels",
        nargs="+",
        help="labels to predict (default: those the model learned, e.g. teff logg m_h mass age)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        default=None,
        help="redo partitions already done (their earlier files are removed before any work), and replace an "
        "output made with another model, labels, side tables or flag policy, or whose partitions overlap "
        "this run's HEALPix ranges; the same command after a killed --overwrite job keeps what it finished",
    )
    p.add_argument(
        "--verify-inputs",
        dest="verify_inputs",
        action="store_true",
        default=None,
        help="on resume, re-read the finished partitions' inputs and compare their md5 with the manifest "
        "(default: URL, size and mtime only)",
    )
    p.add_argument(
        "--allow-code-change",
        dest="allow_code_change",
        action="store_true",
        default=None,
        help="resume an output whose finished partitions were made with other xpengine code (another "
        "version or any edit to its source, or code unknown: made before session 30; refused by default, "
        "so that no catalogue mixes code silently); each partition's manifest record names the code that "
        "made it. With --overwrite it also keeps what a killed --overwrite run of other code finished",
    )
    p.add_argument(
        "--actors", type=int, help="predictor actors (default: one per GPU, else the node's CPUs / threads)"
    )
    p.add_argument(
        "--gpus-per-actor", type=float, help="GPUs per predictor actor (default 1 when the cluster has GPUs)"
    )
    p.add_argument(
        "--cpus-per-actor",
        type=float,
        help="CPUs per predictor actor (default: its torch threads; 1 beside a GPU)",
    )
    p.add_argument(
        "--batch-size", type=int, help="stars per model batch (default: measured per device, or calibrated)"
    )
    p.add_argument(
        "--torch-threads", type=int, help="torch threads per CPU actor (default: measured per device, else 1)"
    )
    p.add_argument("--num-cpus", type=int, help="CPUs of a local cluster started by the job")
    p.add_argument("--address", help="Ray cluster address (default RAY_ADDRESS or a new local cluster)")
    p.add_argument(
        "--warm-pool",
        action="store_true",
        default=None,
        help="on a running cluster: use predictor actors kept warm between jobs (started by the first "
        "such job, found by name by the next; `xpengine pool list|stop`), instead of starting new ones",
    )
    p.add_argument(
        "--warm-pool-idle-s",
        type=float,
        help="seconds without work after which a warm predictor actor ends itself (default 900)",
    )
    p.add_argument(
        "--zero-point-fallback",
        type=_zero_point_option,
        metavar="MAS|none",
        help="parallax zero point [mas] where Lindegren et al. (2021) cannot be computed (G < 6, colours "
        "outside their tables, or gaia_source without nu_eff_used_in_astrometry / pseudocolour): such "
        "parallaxes are kept with this zero point, their σ widened by 0.02 mas, flagged NO_ZERO_POINT "
        "(default -0.017, the quasars' median); 'none' drops them (NO_PARALLAX too), as Leung & Bovy did",
    )
    p.add_argument(
        "--no-sim-to-real-sigma",
        dest="sim_to_real_sigma",
        action="store_false",
        default=None,
        help="the input stars are simulated (a simulated sky): write mass and age σ as calibrated on "
        "simulated stars, without the model's measured sim-to-real term that real stars carry",
    )
    p.add_argument(
        "--dtype",
        choices=["float32", "bfloat16", "auto"],
        help="model arithmetic; bfloat16 is used only where the hardware has it (GPUs of compute capability >= 8.0, CPUs with AVX512-BF16/AMX), auto picks it there",
    )


def _zero_point_option(text: str) -> float | str:
    """`--zero-point-fallback`: a zero point in mas, or 'none' (kept as text: an option left out is None)."""
    if text.strip().lower() == "none":
        return "none"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a zero point in mas or 'none', got {text!r}") from None


def run_job(args: argparse.Namespace, prog: str = "infer_gaia") -> int:
    """Run the job for parsed options; returns the exit code."""
    from xpengine.pipeline.config import load_inference_config
    from xpengine.pipeline.ray_job import JobError, run_inference
    from xpengine.pipeline.writer import OutputLockedError, OutputNotWritableError

    keys = {a.dest for a in _job_parser()._actions} - {"help", "config"}
    overrides = {k: v for k, v in vars(args).items() if k in keys}
    # configuration, model, input and output problems end in one line and exit 2; a failure inside
    # the running job keeps its traceback
    try:
        cfg = load_inference_config(args.config, overrides)
        summary = run_inference(cfg)
    except (JobError, OutputLockedError, OutputNotWritableError) as exc:
        return _fail(prog, exc)
    except (ValueError, FileNotFoundError) as exc:
        if "cfg" in locals():
            raise
        return _fail(prog, exc)
    print(f"catalogue: {summary.output}")
    written = f"{len(summary.partitions_done)} partition(s) written"
    if summary.partitions_empty:  # done, nothing lost: their inputs hold no sources
        empty = summary.partitions_empty
        written += (
            f" ({len(empty)} with no sources: {', '.join(empty[:3])}{' ...' if len(empty) > 3 else ''})"
        )
    print(
        f"{written}, {len(summary.partitions_skipped)} skipped, {len(summary.partitions_failed)} failed; "
        f"{summary.sources_written} sources in {summary.wall_time_s:.1f} s"
    )
    flagged = getattr(summary, "rows_flagged", None) or {}
    if flagged:  # written and flagged, never dropped: say how many, by flag (_SUMMARY.json: rows_flagged)
        print("rows flagged: " + ", ".join(f"{k} {v}" for k, v in sorted(flagged.items())))
    return 0 if summary.ok else 1


def _fail(prog: str, exc: Exception) -> int:
    """The error in one line (`xpengine.io.errors.one_line`)."""
    from xpengine.io.errors import one_line

    print(f"{prog}: error: {one_line(exc)}", file=sys.stderr)
    return 2


def _job_parser(prog: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog, description=JOB_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_job_arguments(p)
    return p


def job_main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """`python jobs/infer_gaia.py [options]`."""
    args = _job_parser(prog).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_job(args, prog="infer_gaia")


def register(sub) -> None:
    """`xpengine infer`: the catalogue job on this machine (a local Ray cluster) or a given cluster."""
    p = sub.add_parser(
        "infer",
        help="predict labels for XP partitions or files into a Parquet catalogue (the catalogue job)",
        description=JOB_DESCRIPTION.replace("python jobs/infer_gaia.py", "xpengine infer"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_job_arguments(p)
    p.set_defaults(func=lambda args: run_job(args, prog="xpengine infer"))
