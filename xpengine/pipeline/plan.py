"""Planning the catalogue job's work on the driver: the inputs (or the embedded default), one
`PartitionTask` per XP partition paired with its gaia_source partner, visible unique names, and the
inputs' fingerprints that tell a changed input on resume."""

from __future__ import annotations

import itertools
import logging
import os
import re
from typing import Any

from xpengine.pipeline.config import InferenceConfig
from xpengine.pipeline.stages import PartitionTask

__all__ = [
    "JobError",
    "check_output",
    "check_side_tables",
    "default_inputs",
    "plan_partitions",
    "visible_partition_name",
]

log = logging.getLogger("xpengine.pipeline.ray_job")  # the job's log records keep the job's logger


def default_inputs() -> tuple[list[str], list[str | None]]:
    """The embedded default input: the bundled simulated sky (bulk partitions with their gaia_source
    partners) and the real Gaia DR3 archive samples (single files without gaia_source: they come out
    flagged NO_GAIA_SOURCE / NO_GAIA_PHOTOMETRY, most without a prediction)."""
    from importlib.resources import files

    data = files("xpengine") / "data"
    sky = str(data / "sky")
    samples_dir = str(data / "gaia_dr3_samples")
    inputs: list[str] = []
    gaia: list[str | None] = []
    if os.path.isdir(sky):
        inputs.append(sky)
        gaia.append(sky)
    if os.path.isdir(samples_dir):
        for name in sorted(os.listdir(samples_dir)):
            if name.startswith("XP_CONTINUOUS"):
                inputs.append(os.path.join(samples_dir, name))
                gaia.append(None)
    if not inputs:
        raise FileNotFoundError(f"no embedded default data under {data}; give --input")
    return inputs, gaia


def _with_default_side_inputs(cfg: InferenceConfig) -> InferenceConfig:
    """The embedded sky's 2MASS and E(B−V) tables, unless the user gave their own."""
    import dataclasses
    from importlib.resources import files

    sky = files("xpengine") / "data" / "sky"
    changes = {}
    for key, name in (("tmass", "tmass.parquet"), ("ebv", "ebv.parquet")):
        path = str(sky / name)
        if getattr(cfg, key) is None and os.path.isfile(path):
            changes[key] = path
    return dataclasses.replace(cfg, **changes)


class JobError(RuntimeError):
    """A problem with the job's configuration, model, inputs or output: reported as one line."""


_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9._+=-]+")


def visible_partition_name(name: str) -> str:
    """A partition name every catalogue reader sees: no leading `.`/`_` (pandas, pyarrow, DuckDB
    and `xpengine query` skip such files), no path or shell characters."""
    safe = _NAME_UNSAFE.sub("_", name).lstrip("._")
    return safe or "partition"


def _unique_names(parts: list[Any]) -> list[str]:
    """Visible, unique names: names that collide all get a short hash of their input URL, so a name
    does not depend on which other files were given."""
    import hashlib
    from collections import Counter

    base = [visible_partition_name(p.name) for p in parts]
    counts = Counter(base)
    names = []
    for b, p in zip(base, parts, strict=True):
        if counts[b] > 1:
            b = f"{b}-{hashlib.sha1(p.xp_url.encode()).hexdigest()[:8]}"
        names.append(b)
    return names


def _own_columns(part: Any, cfg: InferenceConfig) -> tuple[str, ...]:
    """The side columns a single XP file (an archive file, an ADQL join: no HEALPix range) holds beside
    its XP that the job will use (`io.embedded_columns`), logged: its gaia_source columns unless it has a
    gaia_source partner, its 2MASS unless --tmass is given, its E(B−V) unless --ebv is (a warning names
    the own columns a given table replaces). () for a bulk partition (Gaia's bulk XP files hold none: no
    header read per partition) and for a model-inputs file (it carries its own)."""
    from xpengine import io
    from xpengine.io.embedded import kept_and_replaced

    if part.hpx8_min is not None or io.is_model_inputs(part.xp_url):
        return ()
    try:
        own = io.embedded_columns(part.xp_url)
    except (OSError, ValueError) as exc:  # unreadable: the partition's own read says so, naming the file
        log.debug("input %s: header not read at planning (%s)", part.xp_url, exc)
        return ()
    given = {"gaia_source": part.gaia_url, "2MASS": cfg.tmass, "E(B-V)": cfg.ebv}
    used, replaced = kept_and_replaced(own, given)
    for kind, cols in replaced.items():
        log.warning(
            "input %s holds %s column(s) %s beside its XP; the rows of %s are used instead (a source "
            "missing there gets none from either)",
            part.xp_url,
            kind,
            cols,
            given[kind],
        )
    if used:
        log.info("input %s: using its own column(s) %s", part.xp_url, used)
    if "ebv" in used and "ebv_error" not in used:
        log.info(
            "input %s: its own E(B-V) has no ebv_error: the isochrone fit gives it max(16 %%, 0.01 mag)",
            part.xp_url,
        )
    return tuple(used)


def plan_partitions(cfg: InferenceConfig) -> list[PartitionTask]:
    """Pair every XP partition of the inputs with its gaia_source partner; names are unique and
    visible; overlapping HEALPix ranges of two bulk partitions are refused."""
    from xpengine import io

    if cfg.input:
        inputs = list(cfg.input)
        gaia: list[str | None] = list(cfg.gaia_source or [])
        if gaia and len(gaia) not in (1, len(inputs)):
            raise JobError(
                f"give one --gaia-source for all inputs or one per input; got {len(gaia)} for {len(inputs)} inputs"
            )
    else:
        inputs, gaia = default_inputs()
    found = []
    unpaired: list[str] = []
    for k, xp in enumerate(inputs):
        gs = None
        if gaia:
            gs = gaia[k] if len(gaia) == len(inputs) else gaia[0]
        try:
            parts = io.discover_partitions(xp, gs)
        except (FileNotFoundError, ValueError) as exc:
            # no such input; two files for one partition (e.g. wget's `.1` copy), a reversed HEALPix range
            raise JobError(f"input {xp}: {exc}") from exc
        if gs is not None and cfg.input:  # the user's --gaia-source: every bulk partition needs its partner
            lone = [p for p in parts if p.gaia_url is None and not io.is_model_inputs(p.xp_url)]
            unpaired += [f"{p.xp_url} (in {gs})" for p in lone if p.hpx8_min is not None]
            for p in lone:
                if p.hpx8_min is None:  # a single archive file: pairs only with a single gaia_source file
                    log.warning(
                        "input %s runs without a gaia_source table (NO_GAIA_SOURCE unless the file holds "
                        "gaia_source columns beside its XP): --gaia-source %s is not one file",
                        p.xp_url,
                        gs,
                    )
        found += parts
    if unpaired:
        # an incomplete gaia_source download would otherwise give whole partitions without G, parallax
        # or position (NO_GAIA_SOURCE on every row) in a job that reports success
        more = f" and {len(unpaired) - 3} more" if len(unpaired) > 3 else ""
        raise JobError(
            f"{len(unpaired)} XP partition(s) have no GaiaSource partner in --gaia-source: "
            f"{', '.join(unpaired[:3])}{more}. Add the missing GaiaSource_AAAAAA-BBBBBB files (an incomplete "
            "download?; XP and GaiaSource partitions pair by their AAAAAA-BBBBBB suffix), or run those "
            "partitions without --gaia-source"
        )
    seen_urls: set[str] = set()
    unique = []
    for p in found:
        if p.xp_url in seen_urls:
            log.warning("input %s given twice: processed once", p.xp_url)
            continue
        seen_urls.add(p.xp_url)
        unique.append(p)
    tasks = [
        PartitionTask(
            name=name,
            xp=p.xp_url,
            gaia=p.gaia_url,
            hpx8_range=None if p.hpx8_min is None else (p.hpx8_min, p.hpx8_max),
            own=_own_columns(p, cfg),
        )
        for name, p in zip(_unique_names(unique), unique, strict=True)
    ]
    ranged = sorted((t.hpx8_range, t.xp) for t in tasks if t.hpx8_range is not None)
    for (r1, u1), (r2, u2) in itertools.pairwise(ranged):
        if r2[0] <= r1[1]:
            raise JobError(f"input partitions {u1} and {u2} cover overlapping HEALPix ranges {r1} and {r2}")
    if not tasks:
        raise JobError(f"no XpContinuousMeanSpectrum partitions found in {inputs}")
    _check_gaia_source_headers(tasks)
    return tasks


def _check_gaia_source_headers(tasks: list[PartitionTask], first: int = 8) -> None:
    """Refuse (JobError) a gaia_source file without a column the reader requires before the cluster
    starts (`io.gaia_source.check_gaia_source_columns`; the `first` files in name order: bulk partitions
    share one schema). A photometry-only query failed each partition after Ray had started (session 33)."""
    from xpengine.io.gaia_source import check_gaia_source_columns

    for url in sorted({t.gaia for t in tasks if t.gaia})[:first]:
        try:
            check_gaia_source_columns(url)
        except OSError as exc:  # unreadable: the partition's own read says so, naming the file
            log.debug("gaia_source %s: header not read at planning (%s)", url, exc)
        except ValueError as exc:  # GaiaFileError, naming the file and the columns
            raise JobError(f"--gaia-source: {exc}") from exc


def _file_fingerprint(url: str | None) -> dict[str, Any] | None:
    """Size and modification time of an input (cheap: one stat), to tell a changed input on resume."""
    if not url:
        return None
    from xpengine.io.filesystems import url_to_fs

    fs, path = url_to_fs(url)
    info = fs.info(path)
    modified = info.get("mtime", info.get("LastModified", info.get("last_modified", info.get("ETag"))))
    if url.startswith("zip://") and "::" in url:  # a member of a download: its zip's own stat, and its CRC
        archive = _file_fingerprint(url.split("::", 1)[1]) or {}
        modified = (
            f"zip {archive.get('size')} bytes modified {archive.get('modified')}, crc {info.get('CRC')}"
        )
    return {"size": int(info.get("size") or 0), "modified": str(modified)}


def side_table_fingerprint(url: str) -> dict[str, Any]:
    """A side table's URL (local paths absolute: the same table given by another relative path is the same
    table), size and modification time: what the job identity records and what `finish` compares it with
    at each partition. OSError where it cannot be read."""
    if "://" not in url:
        url = os.path.abspath(url)
    return {"url": url, **(_file_fingerprint(url) or {})}


def _input_fingerprints(task: PartitionTask) -> dict[str, Any]:
    out = {
        "xp": task.xp,
        "gaia_source": task.gaia,
        "xp_file": _file_fingerprint(task.xp),
        "gaia_source_file": _file_fingerprint(task.gaia),
        # the file each name led to when it was read (a link re-pointed since is another input)
        "xp_location": list(_location(task.xp)) if task.xp else None,
        "gaia_source_location": list(_location(task.gaia)) if task.gaia else None,
    }
    if task.own:  # the XP file's own side columns, used (since session 26)
        out["xp_file_own_columns"] = list(task.own)
    return out


def _input_change(task: PartitionTask, rec: dict[str, Any], checksum: bool) -> str | None:
    """Why a finished partition's inputs are not those of this run (None: the same). Its URL, size and
    mtime are compared; with `checksum` also the md5 its record holds (read again: a file rewritten
    with the same size and mtime)."""
    now = _input_fingerprints(task)
    was = dict(rec.get("inputs") or {})
    if "gaia_source_own_columns" in was:  # its name at ecc0984 and before (gaia_source columns only)
        was.setdefault("xp_file_own_columns", was.pop("gaia_source_own_columns"))
    for key, url in (
        ("xp", task.xp),
        ("gaia_source", task.gaia),
        ("xp_file", task.xp),
        ("gaia_source_file", task.gaia),
        ("xp_file_own_columns", task.xp),  # a file's own G, parallax, J/H/Ks, used since session 26
    ):
        o, n = was.get(key), now.get(key)
        where = f" ({url})" if key.endswith(("_file", "_columns")) else ""
        if key in ("xp", "gaia_source") and isinstance(n, str):
            # one file however spelled (relative, `..`, a link, file://): compared by the file the record's
            # name led to when it was read (since session 29; before, by where it leads now)
            read_as = was.get(f"{key}_location") or (list(_location(o)) if isinstance(o, str) else o)
            o, n = read_as, now[f"{key}_location"]
            where = f" (read as {o[1] if isinstance(o, list) else o}, now {n[1]})"
        if o != n:
            return f"input {key} changed: {was.get(key)} → {now.get(key)}{where}"
    if checksum:
        from xpengine.io.partitions import md5_of

        for key, url in (("xp_md5", task.xp), ("gaia_source_md5", task.gaia)):
            if was.get(key) and url:
                md5 = md5_of(url)
                if md5 != was[key]:
                    return f"input {key} changed: {was[key]} → {md5} ({url}, same size and mtime)"
    return None


def check_side_tables(cfg: InferenceConfig) -> None:
    """Refuse (JobError naming the option, the file and the column) a 2MASS or E(B−V) table that lacks
    a column the join takes from it, holds text there, or floating-point source_ids
    (`xpengine.io.tables.check_side_table`), before any work: each partition's task reads the table
    again, where the same problem would fail every partition one by one after the cluster started. An
    E(B−V) table without `ebv_error` is taken, with a log line saying the σ the isochrone fit gives it
    (where the flag policy fits isochrones)."""
    from xpengine.io.tables import check_side_table

    for key, what in (("tmass", "2MASS"), ("ebv", "E(B-V)")):
        url = getattr(cfg, key)
        if not url:
            continue
        try:
            columns = check_side_table(url, what)
        except (ValueError, OSError) as exc:  # GaiaFileError is a ValueError
            raise JobError(f"--{key}: {exc}") from exc
        if key == "ebv" and "ebv_error" not in columns and cfg.flags.mass_age_from_isochrones:
            from xpengine.inference.catalogue_isochrones import (
                EBV_DEFAULT_ERROR_FLOOR,
                EBV_DEFAULT_RELATIVE_ERROR,
            )

            log.warning(
                "--ebv %s has no ebv_error column: the isochrone fit takes σ = max(%g × E(B−V), %g mag)",
                url,
                EBV_DEFAULT_RELATIVE_ERROR,
                EBV_DEFAULT_ERROR_FLOOR,
            )


def _shown(names: list[str], n: int = 3) -> str:
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


def check_output(writer: Any, cfg: InferenceConfig, tasks: list[PartitionTask]) -> None:
    """Refuse (JobError, before anything is written or removed) an output the job may not make its
    catalogue in: one that is an input folder, lies inside one or holds an input (the job would read
    what it writes, and `--overwrite` would remove its own inputs before reading them, e.g. `xpengine
    compact`'s ModelInputs_*.parquet); a folder that is not an xpengine catalogue (no `_JOB.json` or
    `_manifest/`) but holds other files (the catalogue's files would land among them, and every
    reader of the folder would take them for catalogue rows); and a catalogue holding data files its
    jobs did not write (`CatalogWriter.foreign_entries`), which `xpengine query` and other readers
    would read as rows of the catalogue and `--overwrite` does not remove. `_`/`.` names are the
    catalogue's bookkeeping or hidden, never in the way."""
    from xpengine.catalog.locate import format_of
    from xpengine.catalog.tables import lies_inside

    out = _location(writer.output)
    for place in _input_places(cfg, tasks):
        where = _location(place)
        if out[0] != where[0]:
            continue
        if out == where or lies_inside(out[1], where[1]):
            how = "is" if out == where else "lies inside"
            raise JobError(
                f"output {writer.output} {how} the input {place}: the job would write among the files "
                "it reads (and --overwrite could remove them); choose an --output outside the inputs"
            )
        if lies_inside(where[1], out[1]):
            raise JobError(
                f"output {writer.output} holds the input {place}: the job would write among the files it "
                "reads (and --overwrite could remove them); choose an --output outside the inputs"
            )
    foreign = writer.foreign_entries()
    if foreign and not writer.is_catalogue():
        raise JobError(
            f"output {writer.output} is not an xpengine catalogue (no _JOB.json or _manifest/) and holds "
            f"other files: {_shown(foreign)}; the catalogue's files would land among them and readers of "
            "the folder would take them for catalogue rows: choose an empty or new --output"
        )
    data = [f for f in foreign if not f.endswith("/") and format_of(f)]
    if data:
        raise JobError(
            f"output {writer.output} holds data files no job of this catalogue wrote (no _manifest record, "
            f"no mark of the job in the file): {_shown(data)}; readers of the catalogue would take their "
            "rows for its own and --overwrite does not remove them: move them out of the folder (or delete "
            "them: a catalogue file an earlier xpengine version left without its record is redone), or "
            "choose another --output"
        )


def _input_places(cfg: InferenceConfig, tasks: list[PartitionTask]) -> list[str]:
    """Every input the job reads, as given (folders, a glob's folder, files) and as planned (each
    partition's files), and the side tables."""
    places = []
    for given in [*(cfg.input or []), *(cfg.gaia_source or [])]:
        given = os.fspath(given)
        wild = min((given.index(c) for c in "*?[" if c in given), default=None)
        if wild is not None:  # a glob: its folder (`stars*.csv`: the current folder, as the shell's)
            given = given[:wild].rpartition("/")[0] if "://" in given else os.path.dirname(given[:wild])
            given = given or os.path.abspath(".")
        places.append(given)
    places += [p for t in tasks for p in (t.xp, t.gaia) if p]
    return places + [os.fspath(p) for p in (cfg.tmass, cfg.ebv) if p]


def _location(url: str) -> tuple[str, str]:
    """(scheme, path) of a local path or URL: the real path of a local one ("" scheme), so that two
    spellings of one folder (relative, a symlink) compare equal."""
    if url.startswith("file://"):
        url = url[len("file://") :]
    if "://" in url:
        scheme, _, rest = url.partition("://")
        return scheme, rest.rstrip("/")
    return "", os.path.realpath(url)


def compact_side_tables(tasks: list[PartitionTask], cfg: InferenceConfig) -> dict[str, Any] | None:
    """The 2MASS and E(B−V) tables (MD5 and size, as `xpengine compact` recorded them in each file's
    provenance) the job's compact `ModelInputs_*` inputs carry columns of, for the roles the job does not
    replace with its own --tmass / --ebv: one entry per role, None for a role no file was made with, or
    None when there are no compact inputs or none carries a table. Part of the job's identity, so that a
    resume over compact files made with another dust map is refused as a changed --ebv is.

    JobError (before any work) where two compact inputs were made with different tables: their rows
    would mix two dust maps in one catalogue. A file whose footer cannot be read is left to its partition,
    which fails alone."""
    from xpengine import io

    roles = [role for role, given in (("tmass", cfg.tmass), ("ebv", cfg.ebv)) if not given]
    if not roles:
        return None
    from concurrent.futures import ThreadPoolExecutor

    from xpengine.io.model_inputs import MODEL_INPUTS_PREFIX

    def provenance(url: str) -> list[dict[str, Any]] | None:
        """The file's provenance records; None for a file that is not a compact one (named like a bulk
        XP partition or not Parquet: no I/O) or whose footer cannot be read (it fails its own partition)."""
        base = os.path.basename(url.rstrip("/"))
        if not base.startswith(MODEL_INPUTS_PREFIX) and (
            base.startswith(("XpContinuousMeanSpectrum_", "XpSampledMeanSpectrum_")) or ".parquet" not in base
        ):
            return None
        try:
            if not io.is_model_inputs(url):
                return None
            return io.model_inputs_provenance(url).get("inputs") or []
        except (OSError, ValueError):
            return None

    with ThreadPoolExecutor(8) as pool:  # footers of remote files: one request each
        found = list(pool.map(provenance, [t.xp for t in tasks]))
    first: tuple[str, dict[str, Any], dict[str, Any]] | None = None
    for t, records in zip(tasks, found, strict=True):
        if records is None:
            continue
        by_role = {r.get("role"): r for r in records if isinstance(r, dict)}
        tables = {
            role: None
            if role not in by_role
            else {"md5": by_role[role].get("md5"), "size": by_role[role].get("size")}
            for role in roles
        }
        urls = {role: by_role[role].get("url") for role in roles if role in by_role}
        if first is None:
            first = (t.xp, tables, urls)
        elif tables != first[1]:
            role = next(r for r in roles if tables[r] != first[1][r])
            raise JobError(
                f"compact inputs made with different {'2MASS' if role == 'tmass' else 'E(B-V)'} tables: "
                f"{first[0]} with {first[2].get(role, 'none')} (md5 {(first[1][role] or {}).get('md5')}), "
                f"{t.xp} with {urls.get(role, 'none')} (md5 {(tables[role] or {}).get('md5')}); make them "
                f"with one table, or give the job --{role} to replace the files' columns"
            )
    if first is None:
        return None
    return first[1] if any(v is not None for v in first[1].values()) else None


def _overlaps(tasks: list[PartitionTask], older: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Partitions already in the output (`older`, not in this plan) whose HEALPix range overlaps a
    planned partition's: name → what it overlaps (both files and ranges)."""
    import bisect

    ranges = sorted(
        (int(r["hpx8_range"][0]), int(r["hpx8_range"][1]), name)
        for name, r in older.items()
        if r.get("hpx8_range")
    )
    los = [lo for lo, _, _ in ranges]
    reach = list(itertools.accumulate((hi for _, hi, _ in ranges), max))  # highest pixel up to each
    out: dict[str, str] = {}
    for t in tasks:
        if t.hpx8_range is None:
            continue
        a, b = t.hpx8_range
        i = bisect.bisect_right(los, b) - 1  # the ranges before i+1 start at or below b
        while i >= 0 and reach[i] >= a:
            lo, hi, name = ranges[i]
            if hi >= a and name not in out:
                was = (older[name].get("inputs") or {}).get("xp")
                out[name] = f"{name} (HEALPix {lo}-{hi}, from {was}) and input {t.xp} ({a}-{b})"
            i -= 1
    return out
