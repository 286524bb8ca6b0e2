"""The model directory's files a catalogue depends on, as one digest for the job's identity.

The Predictor reads six files from a model directory (`xpengine.model.checkpoint.load_checkpoint`,
`xpengine.inference.predictor.Predictor`): the weights, `config.json` (architecture, the learned tokens,
`inputs_unseen_with` and `pseudo_luminosity_domain`, which change predictions and flags),
`vocabulary.json`, `standardization.json`, `provenance.json` (the XP representation, what m_h measures)
and `calibration.json` (σ). Any of them may be rewritten in place (`training/record_unseen_inputs.py`
rewrites config.json), so the job's identity, its provenance and the warm pool's key carry the sha256 of
every one (`MODEL_FILES_KEY`), not only the weights'.

Versions before this recorded only the weights (`model_sha256`) and calibration.json (in `sigma`). Such a
record is taken to mean this model only when that can be told: the same weights, and no other file of
the directory (nor the directory itself: a file added, removed or renamed) modified after the recorded
rows were made (`with_model_files`). Otherwise resume refuses it and says why.
"""

from __future__ import annotations

import calendar
import hashlib
import json
import os
import time
from typing import Any

__all__ = ["MODEL_FILES_KEY", "PREDICTOR_FILES", "model_files", "model_files_digest", "with_model_files"]

MODEL_FILES_KEY = "model_files_sha256"
"""In the job's identity and provenance: the digest of every file in `PREDICTOR_FILES`."""
MODEL_FILES_DETAIL = "model_files"  # beside it: {file: sha256, None where absent}, to say which changed


def _predictor_files() -> tuple[str, ...]:
    from xpengine.model.calibration import CALIBRATION_FILE
    from xpengine.model.metadata import (
        CONFIG_FILE,
        PROVENANCE_FILE,
        STANDARDIZATION_FILE,
        VOCABULARY_FILE,
        WEIGHTS_FILE,
    )

    return (
        WEIGHTS_FILE,
        CONFIG_FILE,
        VOCABULARY_FILE,
        STANDARDIZATION_FILE,
        PROVENANCE_FILE,
        CALIBRATION_FILE,
    )


PREDICTOR_FILES = _predictor_files()
"""Every file the Predictor reads from a model directory (provenance.json and calibration.json optional)."""
OPTIONAL_FILES = PREDICTOR_FILES[-2:]


def model_files(model_dir: str | os.PathLike) -> dict[str, str | None]:
    """{file: sha256} of `PREDICTOR_FILES` in `model_dir` (None: an optional file that is absent).
    A required file that is missing raises FileNotFoundError."""
    from xpengine.io import sha256_of

    out: dict[str, str | None] = {}
    for name in PREDICTOR_FILES:
        path = os.path.join(model_dir, name)
        out[name] = None if name in OPTIONAL_FILES and not os.path.isfile(path) else sha256_of(path)
    return out


def model_files_digest(files: dict[str, str | None]) -> str:
    """One sha256 over the files' names and digests (an absent one counts as absent)."""
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(f"{name}:{files[name] or '-'}\n".encode())
    return h.hexdigest()


def last_modified(model: str | None) -> float | None:
    """The latest mtime of the model directory and of its Predictor files other than the weights (whose
    sha256 every version recorded); None without a model or when it cannot be read."""
    if not model:
        return None
    from xpengine.model.metadata import resolve_model_path

    try:
        d = resolve_model_path(model)
        paths = [d, *(os.path.join(d, n) for n in PREDICTOR_FILES[1:])]
        return max(os.stat(p).st_mtime for p in paths if os.path.exists(p))
    except OSError:
        return None


def made_at(rec: dict[str, Any]) -> float | None:
    """When a done partition's rows were made, at the latest: its record's finish (whole seconds) less
    the seconds it took (None: not recorded)."""
    try:
        end = calendar.timegm(time.strptime(str(rec["finished_utc"]), "%Y-%m-%dT%H:%M:%SZ"))
    except (KeyError, ValueError):
        return None
    return end - float(rec.get("wall_time_s") or 0.0)


def with_model_files(
    old: dict[str, Any], identity: dict[str, Any], made: float | None, modified: float | None
) -> dict[str, Any]:
    """`old` (an identity recorded by a job) as this version compares it. One recorded before the model's
    every file was hashed (no `MODEL_FILES_KEY`) ran with this model's files when it had the same
    weights and no other model file (nor the directory) was modified since its rows were made (`made`;
    `modified`: `last_modified`): it then takes this run's digest, as an old flag policy takes the
    default of a threshold added since. Otherwise it is left without, and resume refuses it; a model
    changed since is never taken for the recorded one."""
    if not old or MODEL_FILES_KEY in old or MODEL_FILES_KEY not in identity:
        return old
    if old.get("model_sha256") != identity.get("model_sha256") or made is None or modified is None:
        return old
    if modified >= made:
        return old
    return {
        **old,
        MODEL_FILES_KEY: identity[MODEL_FILES_KEY],
        MODEL_FILES_DETAIL: identity.get(MODEL_FILES_DETAIL),
    }


def describe_change(old: dict[str, Any], new: dict[str, Any]) -> str:
    """What differs between two identities' model files, for the refusal."""
    if old.get(MODEL_FILES_KEY) is None:
        return (
            "model, as far as can be told: it was made by an earlier xpengine, which recorded only the "
            "model's weights and calibration.json, and this model's directory or its config.json, "
            "vocabulary.json, standardization.json, provenance.json or calibration.json was modified "
            "after those rows were made"
        )
    was, now = old.get(MODEL_FILES_DETAIL) or {}, new.get(MODEL_FILES_DETAIL) or {}

    def short(v: str | None) -> str:
        return (v or "absent")[:12]

    changed = [
        f"{n} {short(was.get(n))} → {short(now.get(n))}"
        for n in sorted(set(was) | set(now))
        if was.get(n) != now.get(n)
    ]
    if not changed:
        changed = [f"{short(old.get(MODEL_FILES_KEY))} → {short(new.get(MODEL_FILES_KEY))}"]
    return f"model file(s) {', '.join(changed)}"


def _model_vocabulary_json(model: str) -> str:
    from xpengine.model.metadata import VOCABULARY_FILE, resolve_model_path

    with open(os.path.join(resolve_model_path(model), VOCABULARY_FILE)) as f:
        return f.read()


def _model_provenance(model: str, sim_to_real: bool = True) -> dict[str, Any]:
    """The model's name, directory and weights sha256, the sha256 of every file the Predictor reads
    from its directory and their digest (`xpengine.pipeline.model_files`), and what its σ are: the
    sha256 of its `calibration.json` (None without one) and whether the catalogue's mass and age σ carry its
    sim-to-real term (the job's `sim_to_real_sigma` and a calibration that has one); and `m_h_scale`, what its
    m_h measures (`xpengine.model.metadata.metallicity_scale`)."""
    from xpengine.model.calibration import CALIBRATION_FILE
    from xpengine.model.metadata import WEIGHTS_FILE, metallicity_scale, resolve_model_path

    d = resolve_model_path(model)
    files = model_files(d)
    cal = os.path.join(d, CALIBRATION_FILE)
    with_term = False
    if files[CALIBRATION_FILE] and sim_to_real:
        with open(cal) as f:
            with_term = bool((json.load(f).get("sim_to_real") or {}).get("tokens"))
    return {
        "model": model,
        "model_dir": os.path.basename(os.path.normpath(d)),
        "model_sha256": files[WEIGHTS_FILE],
        MODEL_FILES_KEY: model_files_digest(files),
        MODEL_FILES_DETAIL: files,
        "calibration_sha256": files[CALIBRATION_FILE],
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
