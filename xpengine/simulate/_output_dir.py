"""The output folder of `simulate_sky`: what an earlier sky left there, checked (and with overwrite cleared)
before a new sky is written; part of :mod:`xpengine.simulate.generate`.

Why: `xpengine infer`, `xpengine compact` and the dataset builders read every bulk partition of a folder.
A new sky written beside another's partitions (other ranges, another seed) would be read with them as one
sky, scored against a truth table that knows none of the other's stars. So, before any file is written:

- the files of an earlier `xpengine simulate` sky are recognised by the simulator's own record: the
  `_MD5SUM.txt` it writes beside its `truth.parquet` (a truth table with the simulator's columns) lists
  every bulk partition of that sky. Those partitions, the products (`truth.parquet`, the side tables, the
  FITS files, `_MD5SUM.txt`) and the hidden per-partition Parquet parts of an interrupted run are the
  earlier sky's.
- without overwrite, any of them, or any file the new sky would write, is refused (`SkyFolderError`,
  naming them). With overwrite they are all removed first, so an interrupted new run never leaves a
  mixture of two skies behind.
- any other file that a partition reader would take for a bulk partition (a Gaia download, another sky
  whose record is gone, compact `ModelInputs_*` files) is not ours to delete: it is refused in either case,
  named, for the user to move. Other files (notes, plots) are left alone.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

__all__ = ["MD5SUM", "PRODUCTS", "SkyFolderError", "bulk_names", "prepare_output"]

logger = logging.getLogger("xpengine.simulate.generate")

MD5SUM = "_MD5SUM.txt"
"""The checksum file of the bulk partitions: also the record of which partitions a sky has."""
PRODUCTS = (
    "allStar-synthetic.fits",
    "APOGEE_DistMass-synthetic.fits",
    "tmass.parquet",
    "ebv.parquet",
    "truth.parquet",
)
"""The per-sky files besides the bulk partitions and `_MD5SUM.txt`."""
_TRUTH_MARKS = ("source_id", "partition", "missing_bp")
"""Columns of `truth.parquet` that mark it (and the `_MD5SUM.txt` beside it) as the simulator's."""
_BULK_RE = re.compile(r"^(?:XpContinuousMeanSpectrum|GaiaSource)_\d{6}-\d{6}\.csv\.gz$")
"""The names of the bulk partitions the simulator writes."""
_PART_RE = re.compile(r"^\.(?:truth|tmass|ebv)\.\d{5}\.parquet$")
"""The per-partition Parquet parts merged at the end of a run (left behind by an interrupted one)."""
_SHOWN = 10
"""File names a message lists before it says how many there are in all."""


def bulk_names(suffix: str) -> list[str]:
    """The two bulk files of the partition AAAAAA-BBBBBB."""
    return [f"XpContinuousMeanSpectrum_{suffix}.csv.gz", f"GaiaSource_{suffix}.csv.gz"]


def _listed(names: list[str]) -> str:
    more = f" ... ({len(names)} in all)" if len(names) > _SHOWN else ""
    return f"{names[:_SHOWN]}{more}"


class SkyFolderError(FileExistsError):
    """The output folder holds files a new sky would replace (`replaceable`: allowed with overwrite) or
    bulk partitions that no earlier sky of the simulator wrote (`foreign`: never removed).

    `message(option)` words the error for the caller: the Python API names `overwrite=True`, the command
    line `--overwrite`.
    """

    def __init__(self, folder: Path, replaceable: list[str], foreign: list[str]) -> None:
        self.folder = folder
        self.replaceable = replaceable
        self.foreign = foreign
        super().__init__(self.message("overwrite=True"))

    def message(self, option: str) -> str:
        parts = []
        if self.replaceable:
            parts.append(f"{_listed(self.replaceable)} exist; pass {option} to replace them")
        if self.foreign:
            parts.append(
                f"{_listed(self.foreign)} are bulk partitions of no earlier `xpengine simulate` sky here "
                f"(a finished sky lists its partitions in the {MD5SUM} beside its truth.parquet), so they are "
                "not removed, and a reader of this folder would take them for partitions of the new sky: "
                "move or delete them, or write the sky to another folder"
            )
        return f"{self.folder}: " + "; ".join(parts)


def _read_as_partition(name: str) -> bool:
    """Whether a partition reader takes the file `name` for a bulk partition (checksums, signatures and
    partial downloads beside one are skipped, as `xpengine.io.discover_partitions` skips them)."""
    from xpengine.io.partitions import _GAIA_RE, _MODEL_INPUTS_RE, _XP_RE, SIDECAR_SUFFIXES

    read = any(r.match(name) for r in (_XP_RE, _GAIA_RE, _MODEL_INPUTS_RE))  # the reader's own patterns
    return read and not name.lower().endswith(SIDECAR_SUFFIXES)


def _earlier_partitions(out: Path) -> set[str]:
    """The bulk partitions of the sky the simulator wrote into `out` (its `_MD5SUM.txt` beside its
    `truth.parquet`); empty when there is no such record (a Gaia download's `_MD5SUM.txt` has no
    simulator truth beside it, and its files are then not ours)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from xpengine.io import GaiaFileError, read_md5sums

    record, truth = out / MD5SUM, out / "truth.parquet"
    if not (record.is_file() and truth.is_file()):
        return set()
    try:
        names = set(pq.read_schema(truth).names)
        listed = read_md5sums(record)
    except (OSError, pa.ArrowException, GaiaFileError):
        return set()
    if not names.issuperset(_TRUTH_MARKS):
        return set()
    return {name for name in listed if _BULK_RE.match(name)}


def prepare_output(out: Path, suffixes: list[str], overwrite: bool) -> list[str]:
    """Check the existing folder `out` before a sky of the partitions `suffixes` is written into it and,
    with `overwrite`, remove every file of an earlier sky there (module docstring); returns the names
    removed. Raises `SkyFolderError` naming what is refused."""
    present = sorted(p.name for p in out.iterdir() if p.is_file())
    planned = {MD5SUM, *PRODUCTS, *(n for s in suffixes for n in bulk_names(s))}
    earlier = _earlier_partitions(out)
    ours = [n for n in present if n in planned or n in earlier]
    foreign = [n for n in present if n not in planned and n not in earlier and _read_as_partition(n)]
    if foreign or (ours and not overwrite):
        raise SkyFolderError(out, [] if overwrite else ours, foreign)
    if not overwrite:
        return []
    removed = [*ours, *(n for n in present if _PART_RE.match(n))]
    for name in removed:
        (out / name).unlink()
    if removed:
        logger.info(
            "%s: removed the earlier sky's %d file(s) before writing the new one: %s",
            out,
            len(removed),
            _listed(removed),
        )
    return removed
