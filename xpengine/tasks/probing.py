"""Looking inside the model (Zhang et al. 2026 §5, Figs. 17–18): decoder cross-attention maps, the
encoder's context vectors as star embeddings, and colours regressed from XP-only embeddings.

- Attention (Fig. 17): for one star given by its labels, run the model with ``return_attention=True``
  at a low and a high E(B−V); each decoder block's weights (B, H, Q, L + 1) are averaged over heads,
  then over blocks, giving a (Q requests × L context tokens + the learned bias slot) map per case and
  their difference (high − low). The encoder mixes the tokens before the decoder sees them, so a
  column is "the encoder output at that token's position", as in the paper.
- Embeddings: the encoder output (B, L, D) averaged over a star's valid context positions, one
  D-vector per star (:func:`encode_stars`), exported to Parquet with a fixed-size list column.
- Colours from embeddings (Fig. 18): ridge regression (closed form, standardised features, α by 5-fold
  cross-validation on the training part) from the mean-pooled XP-only embedding to BP−RP and J−K,
  scored on a held-out part: R² and the residual σ (robust 1.4826·MAD and plain std).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from xpengine.tasks.common import labels_to_values

__all__ = [
    "DEFAULT_ATTENTION_REQUESTS",
    "DEFAULT_STAR",
    "AttentionMaps",
    "ColourFit",
    "Embeddings",
    "attention_maps",
    "colour_regression",
    "default_embedding_inputs",
    "encode_stars",
    "star_labels_from_test",
]

logger = logging.getLogger(__name__)

DEFAULT_STAR: dict[str, float] = {"teff": 4700.0, "logg": 2.5, "m_h": 0.0, "mass": 1.2, "age": 4.5}
"""The giant of the paper's Fig. 16 (Teff 4700 K, logg 2.5, solar [M/H], 1.2 M☉, 4.5 Gyr)."""
DEFAULT_ATTENTION_REQUESTS: tuple[str, ...] = (
    "teff", "logg", "m_h", "mass", "ln_age", "logebv", "g_fakemag", "bp0", "rp0",
)  # fmt: skip


@dataclass
class AttentionMaps:
    """Cross-attention of the decoder for one star at two reddenings.

    requests: (Q,) requested tokens; context: (L + 1,) context tokens and "bias" (the learned key slot).
    low, high: (Q, L + 1) weights averaged over heads and decoder blocks (rows sum to 1); per_block:
    (n_blocks, 2, Q, L + 1) head-averaged weights (index 0 = low, 1 = high). ebv_low, ebv_high [mag];
    labels: the star; predictions: {"low"/"high": {request: value}} in physical units.
    """

    requests: list[str]
    context: list[str]
    low: np.ndarray
    high: np.ndarray
    per_block: np.ndarray
    ebv_low: float
    ebv_high: float
    labels: dict[str, float]
    predictions: dict[str, dict[str, float]]

    @property
    def difference(self) -> np.ndarray:
        """high − low (Q, L + 1)."""
        return self.high - self.low

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "context": self.context,
            "ebv_low": self.ebv_low,
            "ebv_high": self.ebv_high,
            "labels": self.labels,
            "attention_low": self.low,
            "attention_high": self.high,
            "attention_difference": self.difference,
            "attention_per_block": self.per_block,
            "predictions": self.predictions,
            "definition": "decoder cross-attention weights, mean over heads then over decoder blocks; "
            "rows = requests, columns = context positions (+ learned bias slot)",
        }


def star_labels_from_test(stars: Any) -> dict[str, float] | None:
    """Labels (user units) of the first test star with teff, logg, m_h, mass and ln_age all finite, or
    None when there is no such star."""
    names = ("teff", "logg", "m_h", "mass", "ln_age")
    cols = np.stack([stars.column(n) for n in names], axis=1)  # (N, 5)
    ok = np.flatnonzero(np.isfinite(cols).all(axis=1))
    if ok.size == 0:
        return None
    row = cols[ok[0]]
    out = {n: float(v) for n, v in zip(names, row, strict=True) if n != "ln_age"}
    out["age"] = float(np.exp(row[-1]))
    return out


def attention_maps(
    predictor: Any,
    labels: Mapping[str, float] | None = None,
    *,
    requests: Sequence[str] = DEFAULT_ATTENTION_REQUESTS,
    ebv_low: float = 0.01,
    ebv_high: float = 0.37,
) -> AttentionMaps:
    """Decoder cross-attention maps of one star (paper Fig. 17; default star :data:`DEFAULT_STAR`) given
    its labels plus E(B−V) = ebv_low, then ebv_high (paper: ≈0 and ≈0.37; ln E(B−V) needs E > 0).

    Uses `predictor.model` (an XPTransformer), `predictor.standardization` and `predictor.device`.
    """
    import torch

    vocab = predictor.vocabulary
    if "logebv" not in vocab:
        raise ValueError(f"attention maps vary E(B-V): vocabulary {vocab.name} has no logebv token")
    if not (0 < ebv_low < ebv_high):
        raise ValueError(f"need 0 < ebv_low < ebv_high, got {ebv_low}, {ebv_high}")
    star = dict(DEFAULT_STAR if labels is None else labels)
    star.pop("ebv", None)
    star.pop("logebv", None)
    star = {k: v for k, v in star.items() if np.isfinite(v)}
    star["ebv"] = np.array([ebv_low, ebv_high])
    values, inputs = labels_to_values(star, vocab)  # (2, T)
    requests = [r for r in requests if r in vocab]
    if not requests:
        raise ValueError(f"none of the requested tokens are in vocabulary {vocab.name}")
    z, _ = predictor.standardization.transform(values)  # (2, T) standardised
    cols = vocab.indices(inputs)
    device = predictor.device
    ids = torch.tensor([[c + 1 for c in cols]] * 2, dtype=torch.int64, device=device)  # (2, L)
    vals = torch.from_numpy(np.ascontiguousarray(z[:, cols])).to(device)  # (2, L)
    req = torch.tensor([vocab.indices(requests)] * 2, dtype=torch.int64, device=device) + 1  # (2, Q)
    model = predictor.model
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            out = model(ids, vals, req, return_attention=True)
    finally:
        model.train(was_training)
    blocks = [w.float().mean(dim=1).cpu().numpy() for w in out.attention["decoder"]]  # each (2, Q, L + 1)
    per_block = np.stack(blocks, axis=0).astype(np.float64)  # (n_blocks, 2, Q, L + 1)
    mean = per_block.mean(axis=0)  # (2, Q, L + 1)
    mu, _ = predictor.standardization.inverse(
        out.mean.float().cpu().numpy(), None, vocab.indices(requests)
    )  # (2, Q) physical
    preds = {
        case: {r: float(mu[i, j]) for j, r in enumerate(requests)} for i, case in enumerate(("low", "high"))
    }
    return AttentionMaps(
        requests=requests,
        context=[*inputs, "bias"],
        low=mean[0],
        high=mean[1],
        per_block=per_block,
        ebv_low=float(ebv_low),
        ebv_high=float(ebv_high),
        labels={k: float(v) for k, v in star.items() if k != "ebv"},
        predictions=preds,
    )


def default_embedding_inputs(vocabulary: Any, context_length: int, n_per_band: int = 32) -> list[str]:
    """BP 0..n−1 and RP 0..n−1 (paper Fig. 18: BP[0–31], RP[0–31]), n lowered so that 2n fits the
    model's context length."""
    n = min(n_per_band, vocabulary.n_bp, vocabulary.n_rp, context_length // 2)
    return [f"bp{i}" for i in range(n)] + [f"rp{i}" for i in range(n)]


@dataclass
class Embeddings:
    """Mean-pooled encoder outputs: embedding (N, D) float32 (NaN rows for stars with no valid input),
    n_context (N,) int64 valid context tokens used, inputs: the tokens offered."""

    embedding: np.ndarray
    n_context: np.ndarray
    inputs: list[str]


def encode_stars(
    predictor: Any,
    values: np.ndarray,
    inputs: Sequence[str] | None = None,
    *,
    batch_size: int = 1024,
) -> Embeddings:
    """Encode N stars (values (N, T) physical, vocabulary order, NaN = missing) given the `inputs` tokens
    (default :func:`default_embedding_inputs`) and mean-pool the encoder output over each star's valid
    context positions."""
    import torch

    from xpengine.model.context import pack_context

    vocab = predictor.vocabulary
    model = predictor.model
    limit = model.config.context_length
    if inputs is None:
        inputs = default_embedding_inputs(vocab, limit)
    else:
        inputs = vocab.select(list(inputs))  # names or ranges such as "bp0..31"

    if len(inputs) > limit:
        raise ValueError(f"{len(inputs)} input tokens but the model takes at most {limit} context tokens")
    values = np.asarray(values, dtype=np.float32)
    if values.ndim != 2 or values.shape[1] != len(vocab):
        raise ValueError(f"values must be (N, {len(vocab)}) in vocabulary order, got {values.shape}")
    device = predictor.device
    cols = torch.tensor(vocab.indices(inputs), dtype=torch.int64, device=device)
    n, d = values.shape[0], model.config.d_model
    emb = np.full((n, d), np.nan, dtype=np.float32)
    counts = np.zeros(n, dtype=np.int64)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, n, batch_size):
                z, _ = predictor.standardization.transform(values[start : start + batch_size])  # (b, T)
                zt = torch.from_numpy(z).to(device)
                ids, vals, n_valid = pack_context(zt, cols)  # (b, L), (b, L), (b,)
                ctx, pad, _ = model.encode(ids, vals)  # (b, L, D), (b, L)
                keep = (~pad).unsqueeze(-1).to(ctx.dtype)  # (b, L, 1)
                pooled = (ctx * keep).sum(dim=1) / n_valid.clamp(min=1).unsqueeze(-1).to(ctx.dtype)  # (b, D)
                pooled = torch.where((n_valid > 0).unsqueeze(-1), pooled, float("nan"))
                emb[start : start + len(z)] = pooled.float().cpu().numpy()
                counts[start : start + len(z)] = n_valid.cpu().numpy()
    finally:
        model.train(was_training)
    return Embeddings(embedding=emb, n_context=counts, inputs=inputs)


@dataclass
class ColourFit:
    """Ridge regression embedding → colour, scored on the held-out stars.

    target: the colour token; alpha: ridge strength (standardised features); r2, residual_sigma
    (1.4826·MAD), residual_std, bias (median residual) on the test part; n_train, n_test;
    truth, predicted: (n_test,) test-set values; test_index: (n_test,) rows of the input.
    """

    target: str
    alpha: float
    r2: float
    residual_sigma: float
    residual_std: float
    bias: float
    n_train: int
    n_test: int
    truth: np.ndarray
    predicted: np.ndarray
    test_index: np.ndarray

    def summary(self) -> dict[str, Any]:
        return {
            k: getattr(self, k)
            for k in ("target", "alpha", "r2", "residual_sigma", "residual_std", "bias", "n_train", "n_test")
        }


def _ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    mu, sd = x.mean(axis=0), x.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    xs = (x - mu) / sd
    y0 = float(y.mean())
    w = np.linalg.solve(xs.T @ xs + alpha * np.eye(x.shape[1]), xs.T @ (y - y0))
    return w, mu, sd, y0


def _ridge_predict(model: tuple[np.ndarray, np.ndarray, np.ndarray, float], x: np.ndarray) -> np.ndarray:
    w, mu, sd, y0 = model
    return ((x - mu) / sd) @ w + y0


def colour_regression(
    embedding: np.ndarray,
    target: np.ndarray,
    *,
    name: str = "colour",
    test_fraction: float = 0.3,
    seed: int = 0,
    alphas: Sequence[float] = tuple(10.0 ** np.arange(-3, 4)),
) -> ColourFit:
    """Fit a ridge regression from embeddings (N, D) to a colour (N,) on a seeded random train part and
    score it on the rest (rows with a non-finite embedding or target are left out). Needs at least 10
    usable rows."""
    x = np.asarray(embedding, dtype=np.float64)
    y = np.asarray(target, dtype=np.float64)
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ValueError(f"embedding must be (N, D) and target (N,), got {x.shape} and {y.shape}")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    rows = np.flatnonzero(np.isfinite(x).all(axis=1) & np.isfinite(y))
    if rows.size < 10:
        raise ValueError(f"only {rows.size} stars have both an embedding and {name}; need at least 10")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(rows)
    n_test = max(2, round(test_fraction * rows.size))
    test, train = np.sort(perm[:n_test]), perm[n_test:]
    xt, yt = x[train], y[train]
    folds = np.array_split(rng.permutation(len(train)), min(5, len(train)))
    best, best_cost = float(alphas[0]), np.inf
    for a in alphas:
        cost = 0.0
        for f in folds:
            fit_rows = np.setdiff1d(np.arange(len(train)), f)
            m = _ridge(xt[fit_rows], yt[fit_rows], float(a))
            cost += float(np.sum((_ridge_predict(m, xt[f]) - yt[f]) ** 2))
        if cost < best_cost:
            best, best_cost = float(a), cost
    model = _ridge(xt, yt, best)
    pred = _ridge_predict(model, x[test])
    r = pred - y[test]
    ss_tot = float(np.sum((y[test] - y[test].mean()) ** 2))
    med = float(np.median(r))
    return ColourFit(
        target=name,
        alpha=best,
        r2=1.0 - float(np.sum(r**2)) / ss_tot if ss_tot > 0 else float("nan"),
        residual_sigma=float(1.4826 * np.median(np.abs(r - med))),
        residual_std=float(np.std(r)),
        bias=med,
        n_train=len(train),
        n_test=len(test),
        truth=y[test],
        predicted=pred,
        test_index=test,
    )
