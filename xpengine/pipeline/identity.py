"""What makes two runs' rows belong in one catalogue (the model weights, labels, schema and σ, the side
tables, context inputs and flag policy: the job's identity), the model files the job records, and
resume: which finished partitions of an output may be kept, and what `--overwrite` removes first."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from typing import Any

from xpengine.catalog.flag_policy import POLICY_BEFORE
from xpengine.catalog.schema import MASS_AGE_LABELS, catalog_schema
from xpengine.features.flags import FLAG_RULES
from xpengine.features.vocabulary import canonical_token_set as _canonical_inputs
from xpengine.pipeline.code_identity import (
    CODE_KEY,
    CODES_KEY,
    code_identity,
    codes_in_records,
    describe_code,
    same_code,
)
from xpengine.pipeline.finish import remove_partition_files
from xpengine.pipeline.model_files import (  # the model's provenance lives there; re-exported for the job
    MODEL_FILES_DETAIL,
    MODEL_FILES_KEY,
    _model_provenance,  # noqa: F401
    _model_vocabulary_json,  # noqa: F401
    describe_change,
    last_modified,
    made_at,
    sigma_identity,
    with_model_files,
)
from xpengine.pipeline.plan import (  # noqa: F401  (tests import _input_change from here)
    JobError,
    _input_change,
    _input_fingerprints,
    _location,
    _overlaps,
    side_table_fingerprint,
)
from xpengine.pipeline.stages import PartitionTask
from xpengine.pipeline.writer import CatalogWriter

__all__: list[str] = []  # the job's own helpers; `xpengine.pipeline.ray_job` re-exports what tests use

log = logging.getLogger("xpengine.pipeline.ray_job")


def _schema_fingerprint(labels: list[str]) -> str:
    import hashlib

    schema = catalog_schema(labels)
    text = ",".join(f"{f.name}:{f.type}" for f in schema)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _side_table(key: str, url: str | None) -> dict[str, Any] | None:
    """A side table's URL, size and modification time (None without one): part of the job's identity."""
    if not url:
        return None
    try:
        return side_table_fingerprint(url)
    except OSError as exc:
        raise JobError(f"--{key} {url}: {exc}") from exc


def _job_identity(labels: list[str], provenance: dict[str, Any], cfg: Any = None) -> dict[str, Any]:
    """What makes two runs' rows belong in one catalogue: the same model weights and model files (every
    file the Predictor reads: config, vocabulary, standardization, provenance, calibration), labels and
    schema, the same σ (calibration file and sim-to-real term) and, given the job's configuration
    `cfg`, the same 2MASS and E(B−V) tables (URL, size, mtime), context inputs, flag policy and, where it
    writes isochrone masses and ages, the isochrone fit's grid recipe."""
    identity = {
        "model_sha256": provenance["model_sha256"],
        "labels": list(labels),
        "schema": _schema_fingerprint(labels),
        "sigma": sigma_identity(provenance),
        "flag_rules": FLAG_RULES,
        CODE_KEY: code_identity(),  # any change to the package's source (session 30)
    }
    if provenance.get(MODEL_FILES_KEY):
        identity[MODEL_FILES_KEY] = provenance[MODEL_FILES_KEY]
        identity[MODEL_FILES_DETAIL] = dict(provenance.get(MODEL_FILES_DETAIL) or {})
    if cfg is not None:
        identity["tmass_table"] = _side_table("tmass", cfg.tmass)
        identity["ebv_table"] = _side_table("ebv", cfg.ebv)
        # as the job resolved them (`resolve_inputs`: names, in the vocabulary's order); compared as a set
        identity["context_inputs"] = None if cfg.inputs is None else list(cfg.inputs)
        # as _JOB.json will hold it (tuples become lists), so a reread compares equal
        identity["flag_policy"] = json.loads(json.dumps(dataclasses.asdict(cfg.flags), default=str))
        identity["zero_point_fallback"] = cfg.zero_point_fallback
        if MASS_AGE_LABELS & set(labels):
            identity.update(_fitted_tables(cfg.flags))
    return identity


def _fitted_tables(flags: Any) -> dict[str, str]:
    """The fitted tables a catalogue with mass or age rests on, each where its flag policy uses it: the
    isochrone grid's recipe (the mass and age of the stars outside the domain) and the star-by-star
    extinction's polynomial (M_G and the dereddened colour of the domain rule and the isochrone fit)."""
    from xpengine.catalog.extinction import table_digest
    from xpengine.inference.isochrone_fit import GRID_RECIPE

    out = {"isochrone_grid": GRID_RECIPE} if flags.mass_age_from_isochrones else {}
    if flags.extinction == "mist":
        out["extinction_table"] = f"mist_gaia.json sha256 {table_digest()}"
    return out


def _default_flag_policy() -> dict[str, Any]:
    """The job's default flag policy (`InferenceConfig`'s) as `_job_identity` records one."""
    from xpengine.pipeline.config import InferenceConfig

    return json.loads(json.dumps(dataclasses.asdict(InferenceConfig().flags), default=str))


_IDENTITY_NAMES = {
    "model_sha256": "model",
    MODEL_FILES_KEY: "model files",  # described by `model_files.describe_change`
    "labels": "labels",
    "schema": "catalogue schema",
    "sigma": "σ",
    "tmass_table": "2MASS table (--tmass)",
    "ebv_table": "E(B−V) table (--ebv)",
    "compact_side_tables": "2MASS / E(B−V) tables of the compact inputs (xpengine compact --tmass / --ebv)",
    "context_inputs": "context inputs",
    "flag_policy": "flag policy",
    "zero_point_fallback": "parallax zero point where Lindegren's tables do not reach (--zero-point-fallback)",
    "isochrone_grid": "isochrone grid",
    "extinction_table": "extinction coefficients",
    "flag_rules": "flag rules (the bits the catalogue sets; a record without them is older)",
    CODE_KEY: "code",
}


def _code_only(old: dict[str, Any], new: dict[str, Any], ignore: tuple[str, ...] = ()) -> bool:
    """Whether two identities that differ differ in their code alone (by key, not by the message)."""
    return not _identity_differences(old, new, (*ignore, CODE_KEY))


_WHERE_USED = ("isochrone_grid", "extinction_table")  # absent from a job whose policy does not use it
# recorded since: a catalogue from before (σ: session 12) does not know them, so they are not refused.
# Not so the model files (MODEL_FILES_KEY): a record without them is refused unless `with_model_files`
# can tell it was made with this model's files (`_check_resume` normalises the records first)
# (compact_side_tables: session 25; an older record of a compact-input run cannot say which tables its
# files carried, and is resumed as before)
_RECORDED_LATER = (
    "sigma",
    "tmass_table",
    "ebv_table",
    "context_inputs",
    "flag_policy",
    "compact_side_tables",
    *_WHERE_USED,
)


def _describe(key: str, o: Any, n: Any) -> tuple[Any, Any]:
    """The old and new values of an identity key as the refusal shows them."""
    if key == "model_sha256":
        return (o or "unknown")[:12], (n or "unknown")[:12]
    if key == CODE_KEY:
        return describe_code(o), describe_code(n)
    if key in ("tmass_table", "ebv_table"):

        def one(v: Any) -> str:
            return (
                "none" if not v else f"{v.get('url')} ({v.get('size')} bytes, modified {v.get('modified')})"
            )

        return one(o), one(n)
    if key == "context_inputs" and isinstance(o, list) and isinstance(n, list):
        return (
            f"{len(o)} tokens",
            f"{len(n)} tokens (added {sorted(set(n) - set(o))}, removed {sorted(set(o) - set(n))})",
        )
    return o, n


def _isochrones(record: dict[str, Any]) -> bool:
    """Whether a job record's catalogue wrote isochrone masses and ages (its policy, and mass or age)."""
    policy = record.get("flag_policy")
    with_mass_age = bool(MASS_AGE_LABELS & set(record.get("labels") or ()))
    return isinstance(policy, dict) and bool(policy.get("mass_age_from_isochrones")) and with_mass_age


def _identity_differences(
    old: dict[str, Any], new: dict[str, Any], ignore: tuple[str, ...] = ()
) -> list[str]:
    out = []
    for key, what in _IDENTITY_NAMES.items():
        if key in ignore:
            continue
        if key == "flag_policy" and key not in old and isinstance(new.get(key), dict):
            # a record from before the policy was kept: it wrote the model's mass and age everywhere,
            # with the constant extinction coefficients (`POLICY_BEFORE`)
            was = dict(POLICY_BEFORE)
            now = {k: new[key].get(k) for k in POLICY_BEFORE}
            if now != was and MASS_AGE_LABELS & set(new.get("labels") or ()):
                changed = sorted(k for k in was if was[k] != now[k])
                out.append(f"{what} { {k: was[k] for k in changed} } → { {k: now[k] for k in changed} }")
            continue
        if key == "isochrone_grid" and key in new and key not in old and _isochrones(old):
            from xpengine.inference.isochrone_fit import RECIPE_BEFORE  # session 20 recorded none

            old = {**old, key: RECIPE_BEFORE}
        if (key in _RECORDED_LATER and key not in old) or (key in _WHERE_USED and key not in new):
            continue  # (a job that does not use the table: the flag policy says whether the old one did)
        o, n = old.get(key), new.get(key)
        if key == CODE_KEY and same_code(o, n):  # (a record without one: unknown code, refused)
            continue
        if key == "context_inputs" and isinstance(o, list) and isinstance(n, list):
            o, n = _canonical_inputs(o), _canonical_inputs(n)  # one set of tokens however spelled
        if key == "flag_policy" and isinstance(o, dict) and isinstance(n, dict):
            # a threshold added since is not in the old record: it ran with the default; the isochrone
            # policy and the star-by-star extinction did not exist then (`POLICY_BEFORE`)
            defaults = {**_default_flag_policy(), **POLICY_BEFORE}
            o = {**{k: defaults[k] for k in n if k not in o and k in defaults}, **o}
            n = {k: n.get(k) for k in o}
            if not any(MASS_AGE_LABELS & set(r.get("labels") or ()) for r in (old, new)):
                for k in POLICY_BEFORE:  # a catalogue without mass or age: they act on no row
                    o.pop(k, None)
                    n.pop(k, None)
            if o != n:
                changed = sorted(k for k in o if o[k] != n[k])
                o, n = {k: o[k] for k in changed}, {k: n[k] for k in changed}
        if o != n and key == MODEL_FILES_KEY:
            out.append(describe_change(old, new))
        elif o != n:
            o, n = _describe(key, o, n)
            out.append(f"{what} {o} → {n}")
    return out


def _check_resume(
    writer: CatalogWriter,
    tasks: list[PartitionTask],
    identity: dict[str, Any],
    overwrite: bool,
    *,
    checksum: bool = False,
    model_modified: float | None = None,
    allow_code_change: bool = False,
    accepted=None,
) -> dict[str, dict[str, Any]]:
    """Done partitions that may be kept. Refuses (JobError) an output made with another model (weights
    or any other model file), labels, schema, σ, side tables, context inputs or flag policy, a finished
    partition of another job or whose inputs changed, and one whose partitions overlap this run's
    HEALPix ranges, unless `overwrite`. Records of an earlier version, which hashed only the weights and
    calibration, are compared as `model_files.with_model_files` reads them (`model_modified`: the
    model directory's last change, `model_files.last_modified`; None: unknown, so they are refused).

    `overwrite` removes, before any work, every planned partition's earlier files, the done partitions
    of another job or overlapping this run, and catalogue files without a done record; it keeps only
    what a killed `--overwrite` run of this same job finished (`_interrupted_overwrite`), so its rerun
    does the rest. Planned partitions of another job beside a `_JOB.json` of this one (left by a killed
    `--overwrite` of an earlier version) are redone, not kept. A done partition that is a planned one
    under an earlier version's name (`_renamed`) is removed, with or without `overwrite`, once nothing
    is refused: the planned partition is done under its name now. `allow_code_change` keeps partitions
    made with other xpengine code (`code_identity`; their records keep theirs). `accepted()`, if given,
    is called once nothing is refused, before anything is removed."""
    ignore = (CODE_KEY,) if allow_code_change else ()
    done = writer.done_records()
    job = _job_as_known(writer.read_job(), identity, done, model_modified)
    planned = {t.name: t for t in tasks}
    renamed = _renamed(done, tasks)
    job_diff = _identity_differences(job, identity, ignore) if job is not None else []
    problems: list[str] = []
    code_only: list[bool] = []  # per refusal: whether it is of other code alone
    if job_diff:
        problems.append(f"the catalogue was made with another {'; '.join(job_diff)}")
        code_only.append(_code_only(job, identity, ignore))
    elif job is None and done:
        problems.append("the output holds partitions without a job record (another program or version)")
        code_only.append(False)
    run = _interrupted_overwrite(job, identity, ignore)
    # md5s are read again only where a partition could be kept: not by an --overwrite that redoes all
    checksum = checksum and (run is not None or not overwrite)
    changed: dict[str, str] = {}  # finished partitions that may not be kept, and why
    left_over: set[str] = set()
    for name, rec in sorted(done.items()):
        rec_job = with_model_files(rec.get("job") or {}, identity, made_at(rec), model_modified)
        diff = _identity_differences(rec_job, identity, ignore)
        only_code = bool(diff) and _code_only(rec_job, identity, ignore)
        if diff and job is not None and not job_diff and name in planned and not only_code:
            left_over.add(name)  # (one of other code alone is refused: the job may have kept it, above)
        elif diff:
            why = name in planned and only_code and _input_change(planned[name], rec, checksum)
            changed[name] = "; ".join(diff + ([why] if why else []))
            code_only.append(only_code and not why)
        elif name in planned and (why := _input_change(planned[name], rec, checksum)):
            changed[name] = why
            code_only.append(False)
    if changed:
        listed = [f"{n} ({why})" for n, why in changed.items()]
        more = f" and {len(listed) - 3} more" if len(listed) > 3 else ""
        problems.append(f"finished partitions differ from this run: {', '.join(listed[:3])}{more}")
    overlaps = _overlaps(tasks, {n: r for n, r in done.items() if n not in planned and n not in renamed})
    if overlaps:
        listed = list(overlaps.values())
        more = f" and {len(listed) - 3} more" if len(listed) > 3 else ""
        problems.append(
            f"partitions already in it overlap this run's HEALPix ranges, so their sources would be in "
            f"the catalogue twice: {', '.join(listed[:3])}{more}"
        )
        code_only.append(False)
    if problems and not overwrite:
        keep_code = (
            "or with --allow-code-change to keep what other code made (records since session 30 name it), "
        )
        raise JobError(
            f"output {writer.output} cannot be resumed: {'; '.join(problems)}. Rerun with --overwrite to "
            "redo it with this configuration (it removes the earlier job's and overlapping partitions), "
            f"{keep_code if all(code_only) else ''}or choose another --output"  # where it is enough
        )
    if accepted is not None:
        accepted()
    for old_name, new_name in sorted(renamed.items()):  # after every refusal: nothing removed before
        remove_partition_files(writer, old_name, manifest=True)
        log.warning(
            "partition %s (input %s) is named %s now (single files' partition names changed): removed "
            "its catalogue file and record under the old name %s; it is done as %s",
            old_name,
            (done[old_name].get("inputs") or {}).get("xp"),
            new_name,
            old_name,
            new_name,
        )
    done = {n: r for n, r in done.items() if n not in renamed}
    if not overwrite:
        return {n: r for n, r in done.items() if n not in left_over}
    keep = {
        n: r
        for n, r in done.items()
        if run
        and n in planned
        and n not in changed
        and n not in left_over
        and (r.get("job") or {}).get(RUN_KEY) == run
    }
    if keep:
        log.info(
            "--overwrite: %d partition(s) finished by the killed --overwrite run of this job kept", len(keep)
        )
    remove = (set(planned) - set(keep)) | set(overlaps)
    remove |= {n for n in done if n not in planned and (job_diff or job is None or n in changed)}
    _remove_for_overwrite(writer, remove, set(done) - remove)
    return keep


def _renamed(done: dict[str, dict[str, Any]], tasks: list[PartitionTask]) -> dict[str, str]:
    """Done partitions that are a planned partition under an earlier version's name (single files:
    `stars.dr3.csv` was `stars`, `xpengine.io.partitions.single_file_name`): old name → planned name,
    where the record's XP input (`inputs["xp"]`) is the planned single file's (no HEALPix range). Kept, its rows
    would be in the catalogue twice, and the older copy would win the duplicate resolution."""
    by_input = {_location(t.xp): t.name for t in tasks if t.xp and t.hpx8_range is None}
    out = {}
    for name, rec in done.items():
        if rec.get("hpx8_range"):  # a bulk partition: named by its HEALPix range, as before
            continue
        xp = (rec.get("inputs") or {}).get("xp")
        new = by_input.get(_location(xp)) if isinstance(xp, str) and xp else None
        if new is not None and new != name and name not in {t.name for t in tasks}:
            out[name] = new
    return out


def _job_as_known(
    job: dict[str, Any] | None,
    identity: dict[str, Any],
    done: dict[str, dict[str, Any]],
    modified: float | None,
) -> dict[str, Any] | None:
    """`_JOB.json` as this version compares it (`model_files.with_model_files`): its rows were made no
    earlier than the first done partition's (with none, nothing was made with it)."""
    if job is None:
        return None
    times = [made_at(r) for r in done.values()]
    made = float("inf") if not times else (None if None in times else min(times))
    return with_model_files(job, identity, made, modified)


def _remove_for_overwrite(writer: CatalogWriter, names: set[str], kept: set[str]) -> None:
    """Remove the files (catalogue, rejected rows, manifest record) of `names`, and every catalogue file
    of this catalogue's jobs (with its rejected rows) that is not one of `kept`: no row of the earlier
    job stays in the catalogue. Only what the jobs wrote goes (`CatalogWriter.own_partitions`: a
    manifest record, or the job's provenance in the file): a Parquet file of the user's or another
    program's in the folder is not a catalogue file of an earlier job (`plan.check_output` refuses
    such a folder before this runs)."""
    for name in sorted(names | (writer.own_partitions() - kept)):
        removed = remove_partition_files(writer, name, manifest=name in names)
        if any(p.endswith(".parquet") for p in removed):
            log.warning(
                "--overwrite: removed %s, written by an earlier job",
                writer.display(writer.catalog_path(name)),
            )


# in _JOB.json while an --overwrite run has not been through its plan: {"id", "started_utc"}
OVERWRITE_KEY = "overwrite_in_progress"
RUN_KEY = "overwrite_id"  # in the `job` of each manifest record that run (or its rerun) writes


def _interrupted_overwrite(job: dict[str, Any] | None, identity: dict[str, Any], ignore=()) -> str | None:
    """The id of an `--overwrite` run of this same job (identity) that was killed before its end."""
    if not job or _identity_differences(job, identity, ignore):
        return None
    mark = job.get(OVERWRITE_KEY)
    return str(mark["id"]) if isinstance(mark, dict) and mark.get("id") else None


def begin_job(
    writer: CatalogWriter,
    tasks: list[PartitionTask],
    identity: dict[str, Any],
    cfg: Any,
    about: dict[str, Any],
    accepted=None,
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Check the output for resume (`_check_resume`, which with `cfg.overwrite` removes what is redone;
    `accepted()` is called before that), then write `_JOB.json` (`identity` and `about`). Returns the
    done partitions that are kept and the `job` the run's manifest records carry: during an
    `--overwrite` run (or the rerun of a killed one) `_JOB.json` says so and the records carry its id,
    so a rerun of that killed run keeps what it finished; `end_job` clears the mark."""
    import uuid

    modified = last_modified(getattr(cfg, "model", None))
    job = writer.read_job()
    if job is not None and MODEL_FILES_KEY not in job and MODEL_FILES_KEY in identity:  # an earlier version's
        job = _job_as_known(job, identity, writer.done_records(), modified)
    allow_code = bool(getattr(cfg, "allow_code_change", False))
    run = _interrupted_overwrite(job, identity, (CODE_KEY,) if allow_code else ())
    done = _check_resume(
        writer,
        tasks,
        identity,
        cfg.overwrite,
        checksum=cfg.checksum and cfg.verify_inputs,
        model_modified=modified,
        allow_code_change=allow_code,
        accepted=accepted,
    )
    done = writer.drop_damaged(done, {t.name for t in tasks})  # cut short or rewritten: redone
    if others := sorted(set(done) - {t.name for t in tasks}):  # said, not removed: another run's inputs
        log.warning(
            "%d partition(s) whose inputs this run does not name stay in the catalogue: %s",
            len(others),
            ", ".join(others[:5]) + (" ..." if len(others) > 5 else ""),
        )
    record = {**identity, **about, **codes_in_records(writer.done_records(), identity)}
    record_job = dict(identity)
    if run or cfg.overwrite:
        mark = (
            dict(job[OVERWRITE_KEY])
            if run
            else {
                "id": uuid.uuid4().hex[:16],
                "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
        )
        record[OVERWRITE_KEY] = mark
        record_job[RUN_KEY] = mark["id"]
    writer.write_job(record)
    return done, record_job


def end_job(writer: CatalogWriter, identity: dict[str, Any], about: dict[str, Any]) -> None:
    """The job has been through its whole plan: `_JOB.json` without the mark of an `--overwrite` in
    progress; the codes its records name are read again only where the start listed several (this run's
    partitions are all of its own code, so the list can only shrink)."""
    again = CODES_KEY in (writer.read_job() or {})
    codes = codes_in_records(writer.done_records(), identity) if again else {}
    writer.write_job({**identity, **about, **codes})
