"""The training stars as the loop holds them (`TrainData`), and the tokens a model trained on them learns
(`learned_tokens`, recorded in every checkpoint so that inference refuses what the model never learned)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from xpengine.datasets.schema import TrainingArrays
from xpengine.features.vocabulary import Vocabulary
from xpengine.model.checkpoint import LearnedTokens
from xpengine.model.luminosity_domain import index_max_from_training
from xpengine.model.standardize import Standardization
from xpengine.train.config import TrainConfig, expand_tokens

__all__ = ["LEARNED_TOKENS_RULE", "TrainData", "learned_tokens", "load_truncate_counts", "xp_band_order"]

COUNT_COLUMNS = ("bp_n_relevant_bases", "rp_n_relevant_bases", "count")

logger = logging.getLogger(__name__)


LEARNED_TOKENS_RULE = (
    "learned_outputs: the requestable tokens (training config) with a finite value for at least one "
    "training star; learned_inputs: the tokens with a finite value for at least one training star, "
    "any of which can be drawn into a training context (with focus_fraction 1: the focus tokens, plus "
    "every token of the stars that have no focus token); training stars = the train split less the "
    "stars with no requestable token; inputs_unseen_with: per learned output, the learned inputs that no "
    "training star had beside it (the Predictor leaves them out of the context when asking for it)"
)


def learned_tokens(
    values: np.ndarray,
    vocabulary: Vocabulary,
    requestable: Sequence[str],
    *,
    focus: Sequence[str] = (),
    focus_fraction: float = 0.0,
) -> LearnedTokens:
    """The tokens a model trained on `values` learns to predict and to read (see LEARNED_TOKENS_RULE).

    values: (N, T) training stars in vocabulary order, physical or standardised units, NaN = missing.
    requestable, focus: token names (already expanded). The sampler (`xpengine.train.sampling`) draws
    requests only among a star's finite requestable tokens and contexts among its finite tokens, the
    focus tokens only for focused stars; with focus_fraction < 1 every star may draw the paper's
    context. Returns names in vocabulary order.
    """
    values = np.asarray(values)
    if values.ndim != 2 or values.shape[1] != len(vocabulary):
        raise ValueError(
            f"values must be (N, {len(vocabulary)}) in the order of vocabulary {vocabulary.name}, "
            f"got {values.shape}"
        )
    finite = np.isfinite(values)  # (N, T)
    seen = finite.any(axis=0)  # (T,)
    req = np.zeros(len(vocabulary), dtype=bool)  # (T,)
    req[vocabulary.indices(list(requestable))] = True
    readable = seen
    if focus_fraction >= 1.0 and focus:
        foc = np.zeros(len(vocabulary), dtype=bool)  # (T,)
        foc[vocabulary.indices(list(focus))] = True
        unfocused = ~(finite & foc).any(axis=1)  # (N,) stars without a focus token: the paper's rule
        readable = (seen & foc) | finite[unfocused].any(axis=0)
    names = vocabulary.names
    outputs = seen & req
    # per output, the readable inputs no training star had beside it (an int matrix product counts the
    # stars with both tokens: (T, T))
    f = finite.astype(np.int32)
    together = f.T @ f
    unseen = tuple(
        (names[o], tuple(names[i] for i in np.flatnonzero(readable & (together[o] == 0)) if i != o))
        for o in np.flatnonzero(outputs)
    )
    return LearnedTokens(
        outputs=tuple(n for n, ok in zip(names, outputs, strict=True) if ok),
        inputs=tuple(n for n, ok in zip(names, readable, strict=True) if ok),
        unseen_inputs=tuple((o, i) for o, i in unseen if i),
    )


def with_luminosity_domain(
    learned: LearnedTokens, values: np.ndarray, errors: np.ndarray, vocab: Vocabulary
) -> LearnedTokens:
    """`learned` with the pseudo-luminosity domain of the training stars (physical `values`, `errors`
    (N, T)) when it reads g_fakemag and BP−RP (`xpengine.model.luminosity_domain`)."""
    if not {"g_fakemag", "bprp"} <= set(learned.inputs):
        return learned
    f, c = vocab.index("g_fakemag"), vocab.index("bprp")
    found = index_max_from_training(values[:, f], errors[:, f], values[:, c])
    if found is None:
        return learned
    return dataclasses.replace(learned, luminosity_index_max=found[0], luminosity_n_stars=found[1])


@dataclass
class TrainData:
    """The training stars on the device, standardised, less those that cannot be asked anything, with
    the sampler's token masks and what a model trained on them learns."""

    xz: torch.Tensor  # (N, T) standardised, NaN = missing
    ez: torch.Tensor  # (N, T) standardised errors
    requestable: torch.Tensor  # (T,) bool
    request_weights: torch.Tensor | None  # (T,) float32 or None (uniform)
    focus: torch.Tensor | None  # (T,) bool or None
    learned: LearnedTokens
    pool: torch.Tensor | None = None  # (N,) bool: the epoch pool (config.epoch_pool_tokens) or None
    xp_band: torch.Tensor | None = None  # (T,) int64: 0 BP, 1 RP, -1 other (relevancy truncation) or None
    xp_order: torch.Tensor | None = None  # (T,) int64: the XP coefficient's order (0 for other tokens)
    truncate_table: tuple[torch.Tensor, torch.Tensor] | None = None  # ((M, 2) int64, (M,) float) or None

    @property
    def n_train(self) -> int:
        return int(self.xz.shape[0])

    @classmethod
    def build(
        cls,
        config: TrainConfig,
        arrays: TrainingArrays,
        standardization: Standardization,
        requestable_names: list[str],
        device: torch.device,
    ) -> TrainData:
        vocab = arrays.vocabulary
        xz_np, ez_np = standardization.transform(arrays.values, np.nan_to_num(arrays.errors))
        requestable = torch.zeros(len(vocab), dtype=torch.bool)
        requestable[vocab.indices(requestable_names)] = True
        can_request = (np.isfinite(xz_np) & requestable.numpy()).any(axis=1)
        if not can_request.all():
            logger.info("dropping %d training stars with no requestable token", int((~can_request).sum()))
        xz = torch.from_numpy(xz_np[can_request]).to(device)  # (N, T) standardised, NaN = missing
        ez = torch.from_numpy(ez_np[can_request]).to(device)  # (N, T) standardised errors
        requestable = requestable.to(device)  # (T,)
        request_weights = None
        if config.request_weight_tokens and config.request_weight != 1.0:
            request_weights = torch.ones(len(vocab), dtype=torch.float32)
            request_weights[vocab.indices(expand_tokens(config.request_weight_tokens, vocab))] = (
                config.request_weight
            )
            request_weights = request_weights.to(device)  # (T,)
        focus = None
        if config.focus_fraction > 0:
            focus = torch.zeros(len(vocab), dtype=torch.bool)
            focus[vocab.indices(expand_tokens(config.focus_inputs, vocab))] = True
            focus = focus.to(device)  # (T,)
        if xz.shape[0] == 0:
            raise ValueError("no training star has a requestable token")
        learned = learned_tokens(
            xz_np[can_request],
            vocab,
            requestable_names,
            focus=expand_tokens(config.focus_inputs, vocab) if config.focus_fraction > 0 else (),
            focus_fraction=config.focus_fraction,
        )
        learned = with_luminosity_domain(
            learned, arrays.values[can_request], arrays.errors[can_request], vocab
        )
        never = [n for n in requestable_names if n not in learned.outputs]
        if never:
            logger.warning(
                "requestable tokens %s have no finite training value: the model does not learn to predict "
                "them, and its checkpoints say so",
                never,
            )
        pool = None
        if config.epoch_pool_tokens and config.epoch_pool_fraction < 1.0:
            cols = vocab.indices(expand_tokens(config.epoch_pool_tokens, vocab))
            pool = torch.isfinite(xz[:, cols]).any(dim=1)  # (N,)
            logger.info(
                "epoch pool: %d of %d stars, %.3g of them drawn per epoch",
                int(pool.sum()),
                len(pool),
                config.epoch_pool_fraction,
            )
        xp_band = xp_order = None
        if config.truncate_fraction > 0:
            band, order = xp_band_order(vocab)
            xp_band, xp_order = torch.from_numpy(band).to(device), torch.from_numpy(order).to(device)
        table = None
        if config.truncate_fraction > 0 and config.truncate_counts is not None:
            counts, weights = load_truncate_counts(config.truncate_counts)
            table = (torch.from_numpy(counts).to(device), torch.from_numpy(weights).to(device))
            logger.info(
                "relevancy truncation: %.3g of the stars cut at (BP, RP) counts drawn from %s (%d patterns, %d stars)",
                config.truncate_fraction,
                config.truncate_counts,
                len(counts),
                int(weights.sum()),
            )
        return cls(xz, ez, requestable, request_weights, focus, learned, pool, xp_band, xp_order, table)


def load_truncate_counts(path: str) -> tuple[np.ndarray, np.ndarray]:
    """A relevancy count table (`training/relevancy_counts.py`): CSV, `#` comment lines, then the header
    `bp_n_relevant_bases,rp_n_relevant_bases,count` and one row per (BP, RP) pair. Returns (M, 2) int64 counts
    and (M,) float64 weights. A bad value raises ValueError naming the file, line and column."""
    counts: list[tuple[int, int]] = []
    weights: list[float] = []
    header: list[str] | None = None
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            fields = [f.strip() for f in text.split(",")]
            if header is None:
                if tuple(fields) != COUNT_COLUMNS:
                    raise ValueError(
                        f"{path}: line {line_no}: header must be {','.join(COUNT_COLUMNS)}, got {text!r}"
                    )
                header = fields
                continue
            if len(fields) != 3:
                raise ValueError(f"{path}: line {line_no}: expected 3 fields, got {len(fields)}")
            row = []
            for col, value, low in zip(COUNT_COLUMNS, fields, (1, 1, 1), strict=True):
                try:
                    v = int(value)
                except ValueError:
                    raise ValueError(
                        f"{path}: line {line_no}, column {col}: not an integer: {value!r}"
                    ) from None
                if v < low:
                    raise ValueError(f"{path}: line {line_no}, column {col}: must be >= {low}, got {v}")
                row.append(v)
            counts.append((row[0], row[1]))
            weights.append(float(row[2]))
    if not counts:
        raise ValueError(f"{path}: no count rows")
    return np.asarray(counts, dtype=np.int64), np.asarray(weights, dtype=np.float64)


def xp_band_order(vocabulary: Vocabulary) -> tuple[np.ndarray, np.ndarray]:
    """(T,) int64 each: a token's XP band (0 BP, 1 RP, −1 not an XP coefficient) and order (its index in
    the band; 0 for other tokens), from the vocabulary's `bp<i>` / `rp<i>` names."""
    band = np.full(len(vocabulary), -1, dtype=np.int64)
    order = np.zeros(len(vocabulary), dtype=np.int64)
    for j, name in enumerate(vocabulary.names):
        for code, prefix in enumerate(("bp", "rp")):
            if name.startswith(prefix) and name[2:].isdigit():
                band[j], order[j] = code, int(name[2:])
    return band, order
