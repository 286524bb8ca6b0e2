r"""`xpengine compact`: convert bulk XP partitions once into compact model-inputs Parquet files.

    xpengine compact --input /data/xp_continuous_mean_spectrum --gaia-source /data/gaia_source \
        --output /data/model_inputs [--tmass tmass.parquet] [--ebv ebv.parquet] [--workers 4] [--overwrite]

Each `XpContinuousMeanSpectrum_AAAAAA-BBBBBB.csv.gz` (paired with `GaiaSource_AAAAAA-BBBBBB.csv.gz` by
its suffix, as the catalogue job pairs them: `xpengine.pipeline.ray_job.plan_partitions`) is read in
chunks, joined with its gaia_source rows and the optional 2MASS and E(B−V) rows of its HEALPix range
(`xpengine.pipeline.stages.joined_chunks`, the job's own reading), and written to
`OUTPUT/ModelInputs_AAAAAA-BBBBBB.parquet` (`xpengine.io.model_inputs`: ~1 kB per source, one row group
per chunk, written under a temporary name and renamed when complete). A single file that is not a bulk
partition becomes `ModelInputs_<name>.parquet`. The catalogue job reads such a directory directly
(`--input OUTPUT`, no `--gaia-source`) and gives the same catalogue as on the bulk files, for the
cost of reading ~1 kB per source instead of inflating and parsing ~35 kB of text.

Provenance (file metadata `xpengine.model_inputs.provenance`, `io.model_inputs_provenance`): every
input file with its URL, size and MD5 (an `_MD5SUM.txt` beside an input that lists it is checked: a
mismatch fails the partition), the partition's HEALPix range and the xpengine version.

A partition that cannot be read fails alone (one line naming it and its file, exit status 1); existing
outputs are refused before any work unless `--overwrite`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from xpengine.io.errors import one_line

__all__ = ["CompactResult", "CompactSummary", "compact_inputs", "compact_partition", "register"]

log = logging.getLogger(__name__)

DEFAULT_CHUNK_ROWS = 16_384
"""XP rows read, joined and written at a time (one row group each): ~50 MB of parsed XP at most."""


@dataclass
class CompactResult:
    """What became of one partition."""

    name: str
    xp: str
    output: str
    rows: int = 0
    bytes: int = 0
    seconds: float = 0.0
    error: str | None = None


@dataclass
class CompactSummary:
    output: str
    written: list[CompactResult] = field(default_factory=list)
    failed: list[CompactResult] = field(default_factory=list)
    wall_time_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def rows(self) -> int:
        return sum(r.rows for r in self.written)

    @property
    def bytes(self) -> int:
        return sum(r.bytes for r in self.written)

    @property
    def bytes_per_source(self) -> float:
        return self.bytes / self.rows if self.rows else float("nan")


def _output_url(output: str, name: str) -> str:
    from xpengine.io.model_inputs import MODEL_INPUTS_PREFIX

    return f"{output.rstrip('/')}/{MODEL_INPUTS_PREFIX}{name}.parquet"


def _file_record(role: str, url: str, *, check_listed: bool) -> dict[str, Any]:
    """{role, url, size, md5} of an input; with `check_listed`, the MD5 is compared with the
    `_MD5SUM.txt` beside the file when that lists it (ValueError on a mismatch)."""
    from xpengine.io import md5_of
    from xpengine.io.filesystems import url_to_fs
    from xpengine.io.partitions import listed_md5

    fs, path = url_to_fs(url)
    shown = url if "://" in url else os.path.abspath(url)
    rec: dict[str, Any] = {"role": role, "url": shown, "size": int(fs.info(path).get("size") or 0)}
    rec["md5"] = md5_of(url)
    if check_listed:
        listed, sums_path = listed_md5(url)
        if listed is not None:
            if listed != rec["md5"]:
                raise ValueError(
                    f"{url}: MD5 {rec['md5']} differs from {listed} listed in {sums_path} "
                    "(corrupt or partial download)"
                )
            rec["md5_listed"] = True
    return rec


def compact_partition(
    task: Any,
    output_url: str,
    *,
    tmass: str | None = None,
    ebv: str | None = None,
    side_records: list[dict[str, Any]] | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    overwrite: bool = False,
) -> CompactResult:
    """Convert one partition (`PartitionTask`) into `output_url`; never raises for a bad partition:
    the error is in the result (one line: the exception type and message)."""
    import xpengine
    from xpengine.io.filesystems import url_to_fs
    from xpengine.io.model_inputs import ModelInputsWriter
    from xpengine.pipeline.stages import joined_chunks

    t0 = time.perf_counter()
    result = CompactResult(task.name, task.xp, output_url)
    try:
        inputs = [_file_record("xp", task.xp, check_listed=True)]
        if task.gaia:
            inputs.append(_file_record("gaia_source", task.gaia, check_listed=True))
        provenance = {
            "partition": task.name,
            "hpx8_range": None if task.hpx8_range is None else list(task.hpx8_range),
            "inputs": inputs + list(side_records or []),
            "xpengine_version": xpengine.__version__,
            "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        with ModelInputsWriter(
            output_url, overwrite=overwrite, provenance=provenance, hint="--overwrite"
        ) as w:
            for joined in joined_chunks(task, chunk_rows=chunk_rows, tmass=tmass, ebv=ebv):
                w.write(joined)
            if w.rows == 0:
                raise ValueError(f"{task.xp}: no rows")
        fs, path = url_to_fs(output_url)
        result.rows = w.rows
        result.bytes = int(fs.info(path).get("size") or 0)
    except Exception as exc:  # a bad partition fails alone
        result.error = f"{type(exc).__name__}: {one_line(exc)}"
        log.debug("partition %s failed", task.name, exc_info=True)
    result.seconds = time.perf_counter() - t0
    return result


def compact_inputs(
    inputs: Sequence[str],
    output: str,
    *,
    gaia_source: Sequence[str] | None = None,
    tmass: str | None = None,
    ebv: str | None = None,
    workers: int = 1,
    overwrite: bool = False,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> CompactSummary:
    """Convert every XP partition of `inputs` (directories, globs, files or URLs, with their
    `gaia_source` partners paired as the catalogue job pairs them) into `output/ModelInputs_*.parquet`.

    `workers` partitions are converted at once (separate processes). Raises before any work:
    `JobError` when the inputs hold no partition or two overlap or a 2MASS / E(B−V) table lacks a column
    or holds text there (`check_side_tables`), `FileExistsError` (naming the files)
    when outputs exist and not `overwrite`, ValueError for bad arguments. A partition that cannot be
    read is reported in the summary's `failed`, the others are written.
    """
    from xpengine.io.filesystems import url_to_fs
    from xpengine.pipeline.config import InferenceConfig
    from xpengine.pipeline.plan import check_side_tables
    from xpengine.pipeline.ray_job import plan_partitions

    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    if not inputs:
        raise ValueError("no input given")
    t0 = time.perf_counter()
    tasks = plan_partitions(
        InferenceConfig(input=list(inputs), gaia_source=list(gaia_source or []) or None, tmass=tmass, ebv=ebv)
    )  # (the tables given replace an XP file's own columns of their kind, as in the job)
    check_side_tables(InferenceConfig(tmass=tmass, ebv=ebv))  # before any work, as the job does
    outputs = {t.name: _output_url(output, t.name) for t in tasks}
    fs, _ = url_to_fs(output)
    existing = [u for u in outputs.values() if fs.exists(url_to_fs(u)[1])]
    if existing and not overwrite:
        more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
        raise FileExistsError(f"{existing[0]}{more} exist(s); pass --overwrite to replace them")
    side = [
        _file_record(role, url, check_listed=False) for role, url in (("tmass", tmass), ("ebv", ebv)) if url
    ]
    log.info("compacting %d partition(s) into %s with %d worker(s)", len(tasks), output, workers)
    kwargs = {
        "tmass": tmass,
        "ebv": ebv,
        "side_records": side,
        "chunk_rows": chunk_rows,
        "overwrite": overwrite,
    }
    summary = CompactSummary(output=output)

    def _record(res: CompactResult) -> None:
        done = len(summary.written) + len(summary.failed) + 1
        if res.error:
            summary.failed.append(res)
            log.error("partition %s (%s) FAILED: %s", res.name, res.xp, res.error)
        else:
            summary.written.append(res)
            log.info(
                "partition %s: %d sources, %.0f bytes/source, %.1f s (%d/%d)",
                res.name,
                res.rows,
                res.bytes / max(res.rows, 1),
                res.seconds,
                done,
                len(tasks),
            )

    if workers == 1 or len(tasks) == 1:
        for t in tasks:
            _record(compact_partition(t, outputs[t.name], **kwargs))
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        # spawn: no fork of a parent holding Arrow/torch threads
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=ctx) as pool:
            futures = [pool.submit(compact_partition, t, outputs[t.name], **kwargs) for t in tasks]
            for fut in as_completed(futures):
                _record(fut.result())
    summary.written.sort(key=lambda r: r.name)
    summary.failed.sort(key=lambda r: r.name)
    summary.wall_time_s = time.perf_counter() - t0
    return summary


def _run(args: argparse.Namespace) -> int:
    from xpengine.pipeline.ray_job import JobError

    prog = "xpengine compact"
    try:
        summary = compact_inputs(
            args.input,
            args.output,
            gaia_source=args.gaia_source,
            tmass=args.tmass,
            ebv=args.ebv,
            workers=args.workers,
            overwrite=args.overwrite,
            chunk_rows=args.chunk_rows,
        )
    except (JobError, FileExistsError, FileNotFoundError, ValueError) as exc:
        print(f"{prog}: error: {one_line(exc)}", file=sys.stderr)
        return 2
    for r in summary.failed:
        print(f"{prog}: error: partition {r.name} ({r.xp}) failed: {r.error}", file=sys.stderr)
    print(
        f"{len(summary.written)} partition(s) written to {summary.output}, {len(summary.failed)} failed; "
        f"{summary.rows:,} sources, {summary.bytes:,} bytes ({summary.bytes_per_source:,.0f} bytes/source) "
        f"in {summary.wall_time_s:.1f} s"
    )
    return 0 if summary.ok else 1


def register(sub: argparse._SubParsersAction) -> None:
    """`xpengine compact`: bulk XP partitions → compact model-inputs Parquet, once."""
    p = sub.add_parser(
        "compact",
        help="convert bulk XP (+ gaia_source, 2MASS, E(B-V)) partitions once into compact model-inputs "
        "Parquet that the catalogue job reads directly",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--input",
        nargs="+",
        required=True,
        metavar="DIR_OR_FILES",
        help="XpContinuousMeanSpectrum partitions: directories, globs, files or URLs (as the job's --input)",
    )
    p.add_argument(
        "--gaia-source",
        nargs="+",
        metavar="DIR",
        help="GaiaSource partitions (paired by partition suffix; one for all inputs or one per input)",
    )
    p.add_argument("--output", required=True, metavar="DIR", help="output directory or URL")
    p.add_argument(
        "--tmass",
        metavar="FILE",
        help="2MASS table (source_id, j_m, j_msigcom, h_m, h_msigcom, ks_m, ks_msigcom)",
    )
    p.add_argument("--ebv", metavar="FILE", help="E(B-V) table (source_id, ebv, ebv_error) [mag]")
    p.add_argument(
        "--workers", type=int, default=1, help="partitions converted at once (processes; default 1)"
    )
    p.add_argument(
        "--chunk-rows",
        type=int,
        default=DEFAULT_CHUNK_ROWS,
        help=f"XP rows per chunk and Parquet row group (memory; default {DEFAULT_CHUNK_ROWS})",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing ModelInputs files")
    p.set_defaults(func=_run)
