"""Bulk-download partitions: pairing `XpContinuousMeanSpectrum_AAAAAA-BBBBBB.*` (or the sampled
`XpSampledMeanSpectrum_AAAAAA-BBBBBB.*`) with `GaiaSource_AAAAAA-BBBBBB.*`, and the `_MD5SUM.txt`
checksums. Compact model-inputs partitions (`ModelInputs_AAAAAA-BBBBBB.parquet`, written by
`xpengine compact`, `xpengine.io.model_inputs`) are XP partitions too: they already hold their
gaia_source columns, so they need no partner.

AAAAAA-BBBBBB is an inclusive range of HEALPix level-8 pixels (nested), zero-padded to 6 digits;
hpx8 = source_id >> 43 (Gaia DR3 documentation, §13.2 "Data consolidation"; REFERENCE §1).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from xpengine.io.errors import GaiaFileError
from xpengine.io.filesystems import open_url, url_to_fs

__all__ = [
    "HPX8_SHIFT",
    "Partition",
    "discover_partitions",
    "listed_md5",
    "md5_of",
    "read_md5sums",
    "verify_md5sums",
    "zip_partitions",
]

logger = logging.getLogger(__name__)

HPX8_SHIFT = 43
"""source_id >> 43 is the HEALPix level-8 nested index (2^35 * 4^(12-8))."""
# continuous coefficients, or the archive's sampled spectra (read by xpengine.io.xp_sampled)
_XP_RE = re.compile(r"^(?:Xp(?:Continuous|Sampled)MeanSpectrum|ModelInputs)_(\d{6})-(\d{6})(\..+)?$")
# a model-inputs file of a single (non-bulk) input: a partition without HEALPix range
_MODEL_INPUTS_RE = re.compile(r"^ModelInputs_(.+?)\.parquet$")
_GAIA_RE = re.compile(r"^GaiaSource_(\d{6})-(\d{6})(\..+)?$")
_GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class Partition:
    """One bulk partition: the XP file and (if found) the GaiaSource file for the same pixels."""

    name: str
    """The range suffix, e.g. "000000-003111"."""
    xp_url: str
    gaia_url: str | None
    hpx8_min: int | None
    hpx8_max: int | None
    """Inclusive HEALPix level-8 range (None for a single file that is not a bulk partition)."""

    @property
    def suffix(self) -> str:
        """Same as `name`: the AAAAAA-BBBBBB part of the file names."""
        return self.name

    @property
    def source_id_min(self) -> int:
        if self.hpx8_min is None:
            raise ValueError(f"partition {self.name} ({self.xp_url}) has no HEALPix range")
        return self.hpx8_min << HPX8_SHIFT

    @property
    def source_id_max(self) -> int:
        """Largest source_id of the range (inclusive)."""
        if self.hpx8_max is None:
            raise ValueError(f"partition {self.name} ({self.xp_url}) has no HEALPix range")
        return ((self.hpx8_max + 1) << HPX8_SHIFT) - 1

    def contains(self, source_id: np.ndarray) -> np.ndarray:
        """(N,) bool: which source_ids (int64) fall in this partition's HEALPix range."""
        hpx = np.asarray(source_id, dtype=np.int64) >> HPX8_SHIFT
        if self.hpx8_min is None or self.hpx8_max is None:
            return np.ones(hpx.shape, dtype=bool)
        return (hpx >= self.hpx8_min) & (hpx <= self.hpx8_max)


def _list_files(source: str | os.PathLike[str], storage_options: dict[str, Any] | None) -> list[str]:
    """URLs/paths of the files named by a directory, glob pattern, or single file."""

    url = os.fspath(source)
    fs, path = url_to_fs(url, storage_options)
    if _GLOB_CHARS & set(path):  # files only (a folder the pattern matches is not an input)
        paths = [p for p, info in fs.glob(path, detail=True).items() if info.get("type") != "directory"]
    elif fs.isdir(path):
        paths = [p for p in fs.ls(path, detail=False) if not fs.isdir(p)]
    elif fs.exists(path):
        paths = [path]
    else:
        raise FileNotFoundError(f"{url}: no such directory or file")
    if len(paths) > 1 or _GLOB_CHARS & set(path) or fs.isdir(path):
        skipped = [p for p in paths if _is_sidecar(os.path.basename(p.rstrip("/")))]
        if skipped:
            logger.info(
                "%s: ignoring %d checksum, hidden or partially downloaded file(s): %s",
                url,
                len(skipped),
                ", ".join(os.path.basename(p) for p in skipped[:5]) + (" ..." if len(skipped) > 5 else ""),
            )
            paths = [p for p in paths if p not in set(skipped)]
    has_protocol = "://" in url
    return sorted(fs.unstrip_protocol(p) if has_protocol else p for p in paths)


SIDECAR_SUFFIXES = (
    ".md5",
    ".md5sum",
    ".sha1",
    ".sha256",
    ".sha512",
    ".sig",
    ".asc",
    ".part",
    ".partial",
    ".crdownload",
    ".download",
    ".tmp",
    ".aria2",
)
"""Files in a listed directory or glob that are never partitions: checksums, signatures and partial
downloads (curl/wget/browsers/aria2)."""


def _xp_tables(urls: list[str], storage_options: dict[str, Any] | None) -> list[str]:
    """The files of a glob that hold XP spectra (coefficients, sampled fluxes or a compact copy), by their
    header's columns; the others (a gaia_source extract beside the downloads, a README) named in a warning."""
    from xpengine.io.formats import table_column_names

    xp_columns = {"bp_coefficients", "rp_coefficients", "flux", "bp_coefficient_0"}
    keep, other = [], []
    for u in urls:
        try:
            names = {n.lower() for n in table_column_names(u, storage_options)}
        except Exception:  # not a table this engine reads
            names = set()
        (keep if names & xp_columns or _MODEL_INPUTS_RE.match(os.path.basename(u)) else other).append(u)
    if other:
        logger.warning(
            "%d file(s) the pattern matches hold no XP spectra and are not read: %s",
            len(other),
            ", ".join(os.path.basename(u) for u in other[:5]) + (" ..." if len(other) > 5 else ""),
        )
    return keep


def _single_name(url: str) -> str:
    """The partition name of a single input file (`single_file_name`; a compact copy's own name)."""
    base = os.path.basename(url.rstrip("/"))
    m = _MODEL_INPUTS_RE.match(base)
    return m.group(1) if m else single_file_name(base)


def single_file_name(base: str) -> str:
    """The partition name of a single file: its name without `.gz` and its last suffix (`.csv`, `.fits`,
    ...), and only those: `stars.2023.csv` and `stars.2024.csv` are two partitions, `stars.2023` and
    `stars.2024`, not one `stars` whose rerun with --overwrite would replace the other's rows."""
    name = base[:-3] if base.lower().endswith(".gz") else base
    stem, dot, _ = name.rpartition(".")
    return stem if dot and stem else name


def _is_sidecar(name: str) -> bool:
    """A checksum, signature, partial-download, hidden or `_MD5SUM.txt`-like file, not data."""
    low = name.lower()
    return name.startswith((".", "_")) or low.endswith(SIDECAR_SUFFIXES) or ".tmp-" in low


def _is_dir(source: str | os.PathLike[str], storage_options: dict[str, Any] | None) -> bool:

    fs, path = url_to_fs(os.fspath(source), storage_options)
    return bool(fs.isdir(path))


def _index(urls: list[str], pattern: re.Pattern[str], what: str) -> dict[str, tuple[str, int, int]]:
    out: dict[str, tuple[str, int, int]] = {}
    for u in urls:
        m = pattern.match(os.path.basename(u.rstrip("/")))
        if not m:
            continue
        suffix = f"{m.group(1)}-{m.group(2)}"
        if suffix in out:
            both = f"{out[suffix][0]} and {u}"
            hint = (
                " (a bulk file and its ModelInputs copy: give them as separate inputs)"
                if "ModelInputs_" in both
                else ""
            )
            raise ValueError(f"two {what} files for partition {suffix}: {both}{hint}")
        lo, hi = int(m.group(1)), int(m.group(2))
        if hi < lo:
            raise ValueError(f"{u}: HEALPix range {lo}-{hi} is reversed")
        out[suffix] = (u, lo, hi)
    return out


def discover_partitions(
    xp_source: str | os.PathLike[str],
    gaia_source: str | os.PathLike[str] | None = None,
    *,
    storage_options: dict[str, Any] | None = None,
) -> list[Partition]:
    """Find XP continuous partitions and pair each with the GaiaSource file of the same range.

    Parameters
    ----------
    xp_source : directory, glob pattern or file (local or fsspec URL) holding
        `XpContinuousMeanSpectrum_AAAAAA-BBBBBB.*` files (any extension: .csv.gz, .parquet, ...), the
        archive's sampled spectra `XpSampledMeanSpectrum_AAAAAA-BBBBBB.*`, or compact
        `ModelInputs_AAAAAA-BBBBBB.parquet` files (`ModelInputs_<name>.parquet`: a converted single
        file, a partition named <name> without HEALPix range).
    gaia_source : where the `GaiaSource_AAAAAA-BBBBBB.*` files are; None: look among the files of
        `xp_source` (no warning when there are none).

    A single file that is not named like a bulk partition (an archive download, say) is one
    partition of its own, named by the file name without extensions, with no HEALPix range and no
    GaiaSource partner unless `gaia_source` is a single file too.

    Returns
    -------
    Partitions sorted by HEALPix range. XP files without a GaiaSource partner are kept with
    `gaia_url=None` (a warning is logged when GaiaSource files were expected).
    """
    xp_files = _list_files(xp_source, storage_options)
    gaia_files = _list_files(gaia_source, storage_options) if gaia_source is not None else []
    zips = [u for u in xp_files if u.lower().endswith(".zip")]
    if zips and len(zips) == len(xp_files):  # Gaia archive downloads: the XP files inside them
        return _zip_inputs(zips, gaia_files[0] if len(gaia_files) == 1 else None, xp_source, storage_options)
    if zips:
        logger.warning(
            "%d zip file(s) among the other files of %s are not read; give them as inputs of their own: %s",
            len(zips),
            os.fspath(xp_source),
            ", ".join(os.path.basename(u) for u in zips[:5]) + (" ..." if len(zips) > 5 else ""),
        )
        xp_files = [u for u in xp_files if not u.lower().endswith(".zip")]
    xp_idx = _index(xp_files, _XP_RE, "XpContinuousMeanSpectrum")
    given = set(gaia_files)
    singles = [u for u in xp_files if not _GAIA_RE.match(os.path.basename(u.rstrip("/"))) and u not in given]
    if not xp_idx and len(singles) > 1 and _GLOB_CHARS & set(os.fspath(xp_source)):
        # a glob of single archive files (`--input 'downloads/XP_CONTINUOUS-*.csv'`): each its own partition
        # (not the gaia_source file given, should the pattern match it too)
        gaia_url = gaia_files[0] if len(gaia_files) == 1 else None
        return [
            Partition(_single_name(u), u, gaia_url, None, None) for u in _xp_tables(singles, storage_options)
        ]
    if not xp_idx and len(xp_files) == 1 and not _is_dir(xp_source, storage_options):
        url = xp_files[0]
        gaia_url = gaia_files[0] if len(gaia_files) == 1 else None
        return [Partition(_single_name(url), url, gaia_url, None, None)]
    if gaia_source is not None:
        gaia_idx = _index(gaia_files, _GAIA_RE, "GaiaSource")
        expect_gaia = True
    else:
        gaia_idx = _index(xp_files, _GAIA_RE, "GaiaSource")
        expect_gaia = bool(gaia_idx)
    parts = []
    unpaired = []
    for suffix, (url, lo, hi) in xp_idx.items():
        g = gaia_idx.get(suffix)
        if g is None and expect_gaia:
            unpaired.append(suffix)
        parts.append(Partition(suffix, url, g[0] if g else None, lo, hi))
    for url in xp_files:  # compact copies of single files: no range, no partner
        base = os.path.basename(url.rstrip("/"))
        m = _MODEL_INPUTS_RE.match(base)
        if m and not _XP_RE.match(base):
            parts.append(Partition(m.group(1), url, None, None, None))
    strays = [
        u
        for u in xp_files
        if os.path.basename(u.rstrip("/")).lower().startswith("xp")
        and not _XP_RE.match(os.path.basename(u.rstrip("/")))
    ]
    if strays:  # an archive download or a misnamed bulk file among the partitions: say it is not read
        logger.warning(
            "%d file(s) in %s look like XP data but are not named XpContinuousMeanSpectrum_AAAAAA-BBBBBB.* "
            "(six-digit HEALPix range), so they are not read; give each as an input of its own: %s",
            len(strays),
            os.fspath(xp_source),
            ", ".join(os.path.basename(u) for u in strays[:10]) + (" ..." if len(strays) > 10 else ""),
        )
    if unpaired:
        logger.warning(
            "%d XP partition(s) have no GaiaSource file (kept with gaia_url=None): %s",
            len(unpaired),
            ", ".join(sorted(unpaired)[:10]) + (" ..." if len(unpaired) > 10 else ""),
        )
    if not parts:
        logger.warning(
            "no XpContinuousMeanSpectrum_AAAAAA-BBBBBB.* (or ModelInputs_*.parquet) files found in %s",
            os.fspath(xp_source),
        )
    return sorted(parts, key=lambda p: (p.hpx8_min or 0, p.hpx8_max or 0))


def _zip_inputs(
    zips: list[str], gaia_url: str | None, xp_source: Any, storage_options: dict[str, Any] | None
) -> list[Partition]:
    """The partitions of the downloads `zips` (`zip_partitions`); among several, one without XP (an RVS
    download) is skipped with a warning, a lone one refused."""
    found: list[Partition] = []
    for z in zips:
        try:
            found += zip_partitions(z, gaia_url, storage_options=storage_options)
        except GaiaFileError as exc:  # one download of another product among several: skipped, named
            if len(zips) == 1 or "no XP_CONTINUOUS or XP_SAMPLED" not in str(exc):
                raise
            logger.warning("%s: skipped", exc)
    if not found:
        raise GaiaFileError(
            os.fspath(xp_source), "none of its zip files holds an XP_CONTINUOUS or XP_SAMPLED file"
        )
    return found


#: the XP products of a Gaia archive (DataLink) download, by the start of their file names in its zip
ZIP_XP_PRODUCTS = ("XP_CONTINUOUS", "XP_SAMPLED")


def zip_partitions(
    url: str, gaia_url: str | None = None, *, storage_options: dict[str, Any] | None = None
) -> list[Partition]:
    """The XP files inside a Gaia archive download (a .zip of DataLink products, e.g. `astroquery`'s
    `Gaia.load_data(..., dump_to_file=True)` or the archive's download button), each a single-file partition
    read in place (`zip://MEMBER::URL`): the XP_CONTINUOUS files, or the XP_SAMPLED ones where the zip has no
    XP_CONTINUOUS (the sampled spectra are made from the same coefficients: both would give each source
    twice). Other products (MCMC_MSC, EPOCH_PHOTOMETRY, RVS, ...) are logged and skipped. `gaia_url`: a
    gaia_source file given for every member.

    Raises
    ------
    GaiaFileError : not a readable zip, or no XP file inside (the message lists its members).
    """
    import posixpath
    import zipfile

    if "://" not in url:
        url = os.path.abspath(url)  # the members' URLs are read by other processes
    else:  # a member is read through fsspec's zip file system over the archive's own fsspec one
        import fsspec

        protocol = url.split("://", 1)[0]
        try:
            fsspec.get_filesystem_class(protocol)
        except (ImportError, ValueError) as exc:
            raise GaiaFileError(
                url,
                f"a download on {protocol}:// cannot be read in place ({exc}): unzip it there, or install the "
                "fsspec file system it names",
            ) from None
    with open_url(url, "rb", storage_options) as f:
        try:
            members = [n for n in zipfile.ZipFile(f).namelist() if not n.endswith("/")]
        except zipfile.BadZipFile as exc:
            raise GaiaFileError(url, f"not a readable zip file ({exc})") from None

    def product(name: str) -> str | None:
        base = posixpath.basename(name).upper()
        return next((p for p in ZIP_XP_PRODUCTS if base.startswith(p)), None)

    chosen = [n for n in members if product(n) == "XP_CONTINUOUS"] or [
        n for n in members if product(n) == "XP_SAMPLED"
    ]
    if not chosen:
        raise GaiaFileError(
            url,
            "no XP_CONTINUOUS or XP_SAMPLED file inside (members: "
            + ", ".join(members[:8])
            + (" ..." if len(members) > 8 else "")
            + ")",
        )
    skipped = [n for n in members if n not in set(chosen)]
    if gaia_url is None:
        logger.warning(
            "%s: its XP files hold no G, parallax or sky position (the CSV XP_SAMPLED's ra/dec aside): the XP "
            "are normalised by their own synthetic G (G_FROM_XP), and stars outside the mass/age domain are "
            "fitted without the distance prior; give the stars' gaia_source rows with --gaia-source",
            url,
        )
    if skipped:
        logger.info(
            "%s: reading %d XP file(s) inside; skipping %d other file(s): %s",
            url,
            len(chosen),
            len(skipped),
            ", ".join(skipped[:5]) + (" ..." if len(skipped) > 5 else ""),
        )
    return [
        Partition(single_file_name(posixpath.basename(n)), f"zip://{n}::{url}", gaia_url, None, None)
        for n in sorted(chosen)
    ]


def read_md5sums(
    source: str | os.PathLike[str], *, storage_options: dict[str, Any] | None = None
) -> dict[str, str]:
    """Parse an `_MD5SUM.txt` file (`<md5>  <file name>` per line) into {file name: md5 hex}."""

    url = os.fspath(source)
    with open_url(url, "rt", storage_options) as f:
        text = f.read()
    out: dict[str, str] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 1)
        if len(parts) != 2 or not re.fullmatch(r"[0-9a-fA-F]{32}", parts[0]):
            raise GaiaFileError(url, f"expected '<md5>  <file name>', got {line[:80]!r}", row=lineno)
        out[os.path.basename(parts[1].lstrip("*").strip())] = parts[0].lower()
    return out


def listed_md5(url: str) -> tuple[str | None, str | None]:
    """(the md5 an `_MD5SUM.txt` beside the file `url` lists for it, that list's path), or (None, path)
    when the list does not name it, or (None, None) when there is no list (a local path or an fsspec URL)."""
    from xpengine.io.filesystems import url_to_fs

    fs, path = url_to_fs(url)
    parent = path.rsplit("/", 1)[0] if "/" in path else "."
    sums = f"{parent}/_MD5SUM.txt"
    if not fs.exists(sums):
        return None, None
    listed = read_md5sums(fs.unstrip_protocol(sums) if "://" in url else sums)
    return listed.get(os.path.basename(path)), sums


def md5_of(source: str | os.PathLike[str], *, storage_options: dict[str, Any] | None = None) -> str:
    """MD5 hex digest of a file's bytes (streamed in 8 MiB chunks)."""

    with open_url(source, "rb", storage_options) as f:
        return hashlib.file_digest(f, lambda: hashlib.md5(usedforsecurity=False)).hexdigest()


def sha256_of(source: str | os.PathLike[str], *, storage_options: dict[str, Any] | None = None) -> str:
    """SHA-256 hex digest of a file's bytes (streamed)."""

    with open_url(source, "rb", storage_options) as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def verify_md5sums(
    md5sum_file: str | os.PathLike[str],
    *,
    names: list[str] | None = None,
    storage_options: dict[str, Any] | None = None,
) -> dict[str, bool]:
    """Check files listed in `_MD5SUM.txt` (looked up next to it) against their checksums.

    `names` restricts the check (each must be listed; a listed file that is missing raises
    `GaiaFileError`); default: every listed file that exists. Returns {file name: matches}.
    """

    url = os.fspath(md5sum_file)
    sums = read_md5sums(url, storage_options=storage_options)
    fs, path = url_to_fs(url, storage_options)
    base = url.rsplit("/", 1)[0] if "/" in url else "."
    if names is not None:
        unknown = [n for n in names if n not in sums]
        if unknown:
            raise GaiaFileError(url, f"file(s) {unknown} are not listed")
    todo = names if names is not None else list(sums)
    result: dict[str, bool] = {}
    parent = path.rsplit("/", 1)[0] if "/" in path else ""
    for name in todo:
        fpath = f"{parent}/{name}" if parent else name
        if not fs.exists(fpath):
            if names is not None:
                raise GaiaFileError(f"{base}/{name}", "file listed in _MD5SUM.txt not found")
            continue
        got = md5_of(f"{base}/{name}", storage_options=storage_options)
        result[name] = got == sums[name]
        if not result[name]:
            logger.warning("%s/%s: MD5 %s differs from the listed %s", base, name, got, sums[name])
    return result
