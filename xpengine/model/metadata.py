"""The JSON side of a checkpoint directory, readable without torch: file names, the tokens a model learned,
its training configuration and vocabulary, and where a bundled model lives.

Planning a catalogue job (its labels and inputs) needs only this, so the job's driver does not pay for
importing torch (`xpengine.model.checkpoint` re-exports every name here and adds the weights).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from xpengine.features.vocabulary import Vocabulary

logger = logging.getLogger("xpengine.model.checkpoint")

FALLBACK_INPUTS = ("bp0..29", "rp0..29", "bprp", "jh", "jk")
"""Default context of a model whose training configuration names no `val_inputs`."""

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
VOCABULARY_FILE = "vocabulary.json"
STANDARDIZATION_FILE = "standardization.json"
PROVENANCE_FILE = "provenance.json"
STATE_TENSORS_FILE = "train_state.safetensors"
STATE_JSON_FILE = "train_state.json"
FORMAT_VERSION = "1"
LEARNED_OUTPUTS_KEY = "learned_outputs"  # config.json entries, see LearnedTokens
LEARNED_INPUTS_KEY = "learned_inputs"
UNSEEN_INPUTS_KEY = "inputs_unseen_with"  # output → learned inputs no training star had beside it
LUMINOSITY_DOMAIN_KEY = "pseudo_luminosity_domain"  # {"index_max": ..., "n_stars": ...}, see LearnedTokens


@dataclass(frozen=True)
class LearnedTokens:
    """The tokens a model was trained on, each tuple in vocabulary order.

    outputs: the tokens it was trained to predict, the requestable tokens of its training
    configuration that had finite values in its training data (a request is drawn only among a star's
    finite requestable tokens, `xpengine.train.sampling`); a request for any other token gets an
    untrained answer. inputs: the tokens it was trained to read, those with finite values in its
    training data (any of them could be drawn into a context); a context token it never saw enters
    through an untrained embedding. recorded: False when the checkpoint holds no record (older or
    hand-made checkpoints): both tuples are then the whole vocabulary.
    """

    outputs: tuple[str, ...]
    inputs: tuple[str, ...]
    recorded: bool = True
    unseen_inputs: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """Per output, the inputs it was never trained beside: (output, inputs) pairs of the learned tokens
    where no training star had both (e.g. [M/H] learned from real stars only and g_fakemag from
    simulated stars only). The Predictor leaves those inputs out of the context when it asks for that
    output: an answer from a context the model never saw for it is untrained (gaia-xp v5 gave real
    metal-poor giants [M/H] ≈ −0.9 with g_fakemag in the context, −2.2 without)."""

    luminosity_index_max: float | None = None
    """The top of the reddening-free index M_G,obs − 2.046 (BP−RP) over the training stars that carried
    g_fakemag (`xpengine.model.luminosity_domain`); a star above it keeps its parallax out of the
    context. None: not recorded (no star's parallax is left out)."""
    luminosity_n_stars: int = 0

    def unseen_for(self, output: str) -> tuple[str, ...]:
        return next((inputs for name, inputs in self.unseen_inputs if name == output), ())

    @classmethod
    def whole_vocabulary(cls, vocabulary: Vocabulary) -> LearnedTokens:
        """No record: every token of `vocabulary` counts as learned (`recorded` False)."""
        names = tuple(vocabulary.names)
        return cls(outputs=names, inputs=names, recorded=False)

    def to_config(self) -> dict[str, Any]:
        """The entries :func:`save_checkpoint` writes into config.json."""
        out: dict[str, Any] = {LEARNED_OUTPUTS_KEY: list(self.outputs), LEARNED_INPUTS_KEY: list(self.inputs)}
        if self.unseen_inputs:
            out[UNSEEN_INPUTS_KEY] = {k: list(v) for k, v in self.unseen_inputs}
        if self.luminosity_index_max is not None:
            out[LUMINOSITY_DOMAIN_KEY] = luminosity_domain_entry(
                self.luminosity_index_max, self.luminosity_n_stars
            )
        return out


def luminosity_domain_entry(index_max: float, n_stars: int) -> dict[str, Any]:
    """The config.json entry of a model's pseudo-luminosity domain (`LUMINOSITY_DOMAIN_KEY`)."""
    from xpengine.model.luminosity_domain import A_G_OVER_E_BP_RP, MIN_SNR, QUANTILE

    return {
        "index_max": round(float(index_max), 4),
        "index": f"M_G,obs - {A_G_OVER_E_BP_RP:.4f} (BP-RP)",
        "quantile": QUANTILE,
        "min_fakemag_snr": MIN_SNR,
        "n_stars": int(n_stars),
    }


_XP_NAME = re.compile(r"^(?P<prefix>[A-Za-z_]+?)(?P<i>\d+)$")


def describe_tokens(names: Sequence[str]) -> str:
    """Token names for messages, runs of numbered tokens as ranges: `bp0..54, rp0..54, jh, teff`."""
    parts: list[str] = []
    run: tuple[str, int, int] | None = None  # (prefix, first, last)
    for name in names:
        m = _XP_NAME.match(name)
        if m and run and m["prefix"] == run[0] and int(m["i"]) == run[2] + 1:
            run = (run[0], run[1], int(m["i"]))
            continue
        if run:
            parts.append(_run_text(run))
            run = None
        if m:
            run = (m["prefix"], int(m["i"]), int(m["i"]))
        else:
            parts.append(name)
    if run:
        parts.append(_run_text(run))
    return ", ".join(parts) if parts else "none"


def _run_text(run: tuple[str, int, int]) -> str:
    prefix, lo, hi = run
    return f"{prefix}{lo}" if lo == hi else f"{prefix}{lo}..{hi}"


def _learned_from_config(config: dict[str, Any], vocabulary: Vocabulary, path: Path) -> LearnedTokens:
    """The LearnedTokens recorded in a checkpoint's config.json; without a record, the whole
    vocabulary with a warning."""
    outputs, inputs = config.get(LEARNED_OUTPUTS_KEY), config.get(LEARNED_INPUTS_KEY)
    if outputs is None or inputs is None:
        logger.warning(
            "checkpoint %s does not record the tokens it was trained to predict and read (%s / %s in "
            "%s; written before xpengine recorded them): every token of its vocabulary %s is treated as "
            "learned, so requests for a token it never learned are not refused",
            path,
            LEARNED_OUTPUTS_KEY,
            LEARNED_INPUTS_KEY,
            CONFIG_FILE,
            vocabulary.name,
        )
        return LearnedTokens.whole_vocabulary(vocabulary)
    learned = _learned_in_vocabulary(outputs, inputs, vocabulary, str(path / CONFIG_FILE))
    unseen = config.get(UNSEEN_INPUTS_KEY) or {}
    if not isinstance(unseen, dict) or any(
        k not in learned.outputs or isinstance(v, str) or any(n not in learned.inputs for n in v)
        for k, v in unseen.items()
    ):
        raise ValueError(
            f"{path / CONFIG_FILE}: {UNSEEN_INPUTS_KEY} must map learned outputs to lists of learned "
            f"inputs; got {unseen!r}"
        )
    order = {n: i for i, n in enumerate(vocabulary.names)}
    pairs = tuple(
        (k, tuple(sorted(unseen[k], key=order.__getitem__)))
        for k in sorted(unseen, key=order.__getitem__)
        if unseen[k]
    )
    domain = config.get(LUMINOSITY_DOMAIN_KEY)
    index_max = None
    if domain is not None:
        index_max = domain.get("index_max") if isinstance(domain, dict) else None
        if not isinstance(index_max, (int, float)) or not math.isfinite(index_max):
            raise ValueError(
                f"{path / CONFIG_FILE}: {LUMINOSITY_DOMAIN_KEY} must be an object with a finite index_max; "
                f"got {domain!r}"
            )
    return dataclasses.replace(
        learned,
        unseen_inputs=pairs,
        luminosity_index_max=None if index_max is None else float(index_max),
        luminosity_n_stars=int(domain.get("n_stars", 0)) if index_max is not None else 0,
    )


def _learned_in_vocabulary(
    outputs: Sequence[str], inputs: Sequence[str], vocabulary: Vocabulary, where: str
) -> LearnedTokens:
    problems = []
    for key, names in ((LEARNED_OUTPUTS_KEY, outputs), (LEARNED_INPUTS_KEY, inputs)):
        if isinstance(names, str) or not all(isinstance(n, str) for n in names):
            problems.append(f"{key} must be a list of token names, got {names!r}")
            continue
        unknown = [n for n in names if n not in vocabulary]
        if unknown:
            problems.append(f"{key} names tokens {unknown} that vocabulary {vocabulary.name} lacks")
    if problems:
        raise ValueError(f"{where}: " + "; ".join(problems))
    out, inp = set(outputs), set(inputs)
    return LearnedTokens(
        outputs=tuple(n for n in vocabulary.names if n in out),
        inputs=tuple(n for n in vocabulary.names if n in inp),
    )


@dataclass(frozen=True)
class CheckpointMetadata:
    """What a checkpoint's JSON files say, without its weights: `train_config` (the training
    configuration dict), `vocabulary` and `learned` (:class:`LearnedTokens`)."""

    path: Path
    train_config: dict[str, Any]
    vocabulary: Vocabulary
    learned: LearnedTokens


def read_checkpoint_metadata(path: str | os.PathLike) -> CheckpointMetadata:
    """The JSON side of the checkpoint directory `path` (no weights, no torch work): for planning a
    job before any model is loaded. Warns, as :func:`load_checkpoint` does, when the learned tokens
    are not recorded."""
    path = Path(path)
    missing = [f for f in (CONFIG_FILE, VOCABULARY_FILE) if not (path / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{path} is not an xpengine checkpoint: missing {missing}")
    config = json.loads((path / CONFIG_FILE).read_text())
    vocabulary = Vocabulary.from_dict(json.loads((path / VOCABULARY_FILE).read_text()))
    return CheckpointMetadata(
        path=path,
        train_config=config.get("train", {}),
        vocabulary=vocabulary,
        learned=_learned_from_config(config, vocabulary, path),
    )


def _bundled_root() -> Path:
    return Path(str(resources.files("xpengine"))) / "data" / "models"


def available_models() -> list[str]:
    """Names of the models bundled with the package (directories under `xpengine/data/models/`)."""
    root = _bundled_root()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "config.json").is_file())


def resolve_model_path(source: str | os.PathLike) -> Path:
    """A checkpoint directory from a path, or from the name of a bundled model."""
    path = Path(source)
    if path.is_dir():
        return path
    name = str(source)
    if "/" not in name and os.sep not in name:
        bundled = _bundled_root() / name
        if bundled.is_dir():
            return bundled
    names = available_models()
    raise FileNotFoundError(
        f"no model at {str(source)!r}: not a checkpoint directory and not a bundled model; bundled models: "
        f"{', '.join(names) if names else 'none (xpengine/data/models/ is empty)'}"
    )


METALLICITY_SCALES = {
    "fe_h": "APOGEE DR17 [Fe/H] (ASPCAP FE_H, the real training stars' label of the m_h token)",
    "m_h": "simulated total metallicity [M/H] = [Fe/H] + log10(0.694·10^[α/Fe] + 0.306) (Salaris et al. 1993)",
}
"""What a model's `m_h` token measures, by :func:`metallicity_scale`'s answer. For an α-rich giant the two
differ by up to 0.23 dex ([α/Fe] = +0.3), so a model's [M/H] must be scored against the quantity it learned."""


def metallicity_scale(path: str | os.PathLike) -> str | None:
    """Which metallicity the checkpoint's `m_h` token learned, from its provenance.json: "fe_h" when every
    training star that carried an m_h label was a real APOGEE star labelled by FE_H (the dataset records
    `m_h_source: fe_h`; in a mixed set the simulated stars' m_h was dropped), "m_h" when the labels were
    a simulated survey's [M/H] only (:data:`METALLICITY_SCALES`), None when the provenance does not say or
    the model learned both at once."""
    prov_path = resolve_model_path(path) / PROVENANCE_FILE
    if not prov_path.is_file():
        return None
    data = json.loads(prov_path.read_text()).get("data", {}).get("dataset_provenance", {})

    def single(dp: dict[str, Any]) -> str | None:
        if dp.get("m_h_source") == "fe_h":
            return "fe_h"
        return "m_h" if dp.get("origin") == "synthetic" else None

    sources = data.get("sources")
    if not sources:
        return single(data)
    dropped = set(data.get("weighting", {}).get("synthetic_dropped_tokens", ()))
    scales = {
        single(src.get("provenance", {}))
        for name, src in sources.items()
        if not (name == "synthetic" and "m_h" in dropped)
    }
    return scales.pop() if len(scales) == 1 else None
