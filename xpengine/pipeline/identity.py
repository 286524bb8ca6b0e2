"""What makes two runs' rows belong in one catalogue (the model weights, labels and schema: the job's
identity), the model files the job records, and resume: which finished partitions of an output may be
kept."""

from __future__ import annotations

import logging
import os
from typing import Any

from xpengine.catalog.schema import catalog_schema
from xpengine.pipeline.plan import JobError, _input_fingerprints
from xpengine.pipeline.stages import PartitionTask
from xpengine.pipeline.writer import CatalogWriter

__all__: list[str] = []  # the job's own helpers; `xpengine.pipeline.ray_job` re-exports what tests use

log = logging.getLogger("xpengine.pipeline.ray_job")


def _model_vocabulary_json(model: str) -> str:
    from xpengine.model.metadata import VOCABULARY_FILE, resolve_model_path

    with open(os.path.join(resolve_model_path(model), VOCABULARY_FILE)) as f:
        return f.read()


def _model_provenance(model: str, sim_to_real: bool = True) -> dict[str, Any]:
    """The model's name, directory and weights sha256, and what its σ are: the sha256 of its
    `calibration.json` (None without one) and whether the catalogue's mass and age σ carry its
    sim-to-real term (the job's `sim_to_real_sigma` and a calibration that has one); and `m_h_scale`, what its
    m_h measures (`xpengine.model.metadata.metallicity_scale`)."""
    import json

    from xpengine.io import sha256_of
    from xpengine.model.calibration import CALIBRATION_FILE
    from xpengine.model.metadata import WEIGHTS_FILE, metallicity_scale, resolve_model_path

    d = resolve_model_path(model)
    digest = sha256_of(os.path.join(d, WEIGHTS_FILE))
    cal = os.path.join(d, CALIBRATION_FILE)
    has_cal = os.path.isfile(cal)
    with_term = False
    if has_cal and sim_to_real:
        with open(cal) as f:
            with_term = bool((json.load(f).get("sim_to_real") or {}).get("tokens"))
    return {
        "model": model,
        "model_dir": os.path.basename(os.path.normpath(d)),
        "model_sha256": digest,
        "calibration_sha256": sha256_of(cal) if has_cal else None,
        "sim_to_real_applied": with_term,
        # what the m_h column measures (METALLICITY_SCALES): "fe_h" for the bundled real-trained models
        "m_h_scale": metallicity_scale(d),
    }


def sigma_identity(provenance: dict[str, Any]) -> dict[str, Any]:
    """What the catalogue's σ are, from `_model_provenance`: the calibration file and the sim-to-real term."""
    return {
        "calibration_sha256": provenance.get("calibration_sha256"),
        "sim_to_real_applied": bool(provenance.get("sim_to_real_applied")),
    }


def _schema_fingerprint(labels: list[str]) -> str:
    import hashlib

    schema = catalog_schema(labels)
    text = ",".join(f"{f.name}:{f.type}" for f in schema)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _job_identity(labels: list[str], provenance: dict[str, Any]) -> dict[str, Any]:
    """What makes two runs' rows belong in one catalogue: the same model weights, labels and schema, and
    the same σ (calibration file and sim-to-real term)."""
    return {
        "model_sha256": provenance["model_sha256"],
        "labels": list(labels),
        "schema": _schema_fingerprint(labels),
        "sigma": sigma_identity(provenance),
    }


def _identity_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    names = {"model_sha256": "model", "labels": "labels", "schema": "catalogue schema", "sigma": "σ"}
    out = []
    for key, what in names.items():
        if key == "sigma" and key not in old:
            continue  # a catalogue from before the σ were recorded (session 12): not known, not refused
        if old.get(key) != new.get(key):
            o, n = old.get(key), new.get(key)
            if key == "model_sha256":
                o = (o or "unknown")[:12]
                n = (n or "unknown")[:12]
            out.append(f"{what} {o} → {n}")
    return out


def _check_resume(
    writer: CatalogWriter, tasks: list[PartitionTask], identity: dict[str, Any], overwrite: bool
) -> dict[str, dict[str, Any]]:
    """Done partitions that may be kept. Refuses (JobError) an output made with another model, labels
    or schema, or whose inputs changed, unless `overwrite` (then they are redone, and done partitions
    of another job that this run does not redo are removed so the catalogue is never mixed)."""
    done = writer.done_records()
    job = writer.read_job()
    problems: list[str] = []
    if job is not None:
        diff = _identity_differences(job, identity)
        if diff:
            problems.append(f"the catalogue was made with another {'; '.join(diff)}")
    elif done:
        problems.append("the output holds partitions without a job record (another program or version)")
    planned = {t.name: t for t in tasks}
    changed = []
    for name, rec in done.items():
        if name not in planned:
            continue
        diff = _identity_differences(rec.get("job") or {}, identity)
        if diff:
            changed.append(f"{name} ({'; '.join(diff)})")
            continue
        now = _input_fingerprints(planned[name])
        was = rec.get("inputs") or {}
        for key in ("xp", "gaia_source", "xp_file", "gaia_source_file"):
            if was.get(key) != now.get(key):
                changed.append(f"{name} (input {key} changed: {was.get(key)} → {now.get(key)})")
                break
    if changed:
        more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
        problems.append(f"finished partitions differ from this run: {', '.join(changed[:3])}{more}")
    if problems and not overwrite:
        raise JobError(
            f"output {writer.output} cannot be resumed: {'; '.join(problems)}. Rerun with --overwrite to "
            "redo it with this configuration, or choose another --output"
        )
    if problems:
        stale = (
            sorted(set(done) - set(planned)) if job is None or _identity_differences(job, identity) else []
        )
        for name in stale:
            log.warning("--overwrite: removing %s, made by the earlier job", name)
            for path in (writer.catalog_path(name), writer.rejected_path(name), writer.manifest_path(name)):
                if writer.fs.get_file_info(path).type.name == "File":
                    writer.fs.delete_file(path)
        return {}
    return {} if overwrite else done
