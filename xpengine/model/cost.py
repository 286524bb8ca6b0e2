"""Parameter count and forward FLOPs of an :class:`~xpengine.model.transformer.XPTransformer`, computed
from its configuration alone (layer by layer, no torch), to check the implementation against the
published size and to turn measured throughput into a fraction of a device's peak.

FLOPs count a multiply-add as 2 and include only matrix products (projections, attention scores and
weighted sums, feed-forward and output layers); element-wise work (GELU, softmax, LayerNorm, embedding)
is a few per cent and left out. The backward pass is taken as twice the forward.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from xpengine.model.transformer import ModelConfig

__all__ = ["ForwardFlops", "count_parameters", "forward_flops"]


def _linear_params(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


def _block_params(d: int, d_ffn: int) -> int:
    # MultiheadAttention: packed q/k/v projection + bias, output projection + bias, bias_k and bias_v.
    attn = 3 * d * d + 3 * d + _linear_params(d, d) + 2 * d
    ffn = _linear_params(d, d_ffn) + _linear_params(d_ffn, d)
    norms = 2 * 2 * d
    return attn + ffn + norms


def count_parameters(config: ModelConfig) -> dict[str, int]:
    """Trainable parameters per part: embedding, encoder, decoder (attention blocks), head (dense network
    and the two outputs) and total."""
    d = config.d_model
    embedding = 2 * (config.n_tokens + 1) * d
    encoder = sum(_block_params(d, f) for f in config.encoder_ffn)
    decoder = sum(_block_params(d, f) for f in config.decoder_ffn)
    widths = (d, *config.head_mlp)
    head = sum(_linear_params(a, b) for a, b in itertools.pairwise(widths))
    head += 2 * _linear_params(widths[-1], 1)
    return {
        "embedding": embedding,
        "encoder": encoder,
        "decoder": decoder,
        "head": head,
        "total": embedding + encoder + decoder + head,
    }


@dataclass(frozen=True)
class ForwardFlops:
    """Forward FLOPs per star: encoder over n_context tokens, decoder key/value projections of the
    encoder output (once per star), and the cost of each requested token."""

    encoder: float
    decoder_kv: float
    per_request: float

    def forward(self, n_requests: int) -> float:
        return self.encoder + self.decoder_kv + n_requests * self.per_request

    def train_step(self, n_requests: int = 1) -> float:
        """Forward + backward (≈ 2 × forward) per star."""
        return 3.0 * self.forward(n_requests)


def forward_flops(config: ModelConfig, n_context: int | None = None) -> ForwardFlops:
    """Analytic forward FLOPs per star for `n_context` context slots (default: the context length).

    For the published model at 64 tokens: encoder 71.4 M, decoder K/V 12.6 M, 16.4 M per request
    (REFERENCE.md §4 quotes 71 M + 12.6 M + 16.4 M/label from an independent re-implementation).
    """
    d = config.d_model
    n = config.context_length if n_context is None else n_context
    keys = n + 1  # the learned bias key/value slot
    encoder = 0.0
    for f in config.encoder_ffn:
        encoder += 2 * n * d * 3 * d  # q, k, v projections
        encoder += 2 * 2 * n * keys * d  # scores QKᵀ and the weighted sum of V
        encoder += 2 * n * d * d  # output projection
        encoder += 2 * 2 * n * d * f  # feed-forward in and out
    n_dec = len(config.decoder_ffn)
    decoder_kv = float(n_dec * 2 * n * d * 2 * d)  # k, v projections of the encoder output per block
    per_request = 0.0
    for f in config.decoder_ffn:
        per_request += 2 * d * d  # q projection
        per_request += 2 * 2 * keys * d  # scores and weighted sum
        per_request += 2 * d * d  # output projection
        per_request += 2 * 2 * d * f  # feed-forward
    widths = (d, *config.head_mlp)
    per_request += sum(2 * a * b for a, b in itertools.pairwise(widths))
    per_request += 2 * 2 * widths[-1]  # mean and log-variance outputs
    return ForwardFlops(encoder=float(encoder), decoder_kv=decoder_kv, per_request=float(per_request))
