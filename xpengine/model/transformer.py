"""The transformer "foundation model" of Leung & Bovy (2024), as adopted by Zhang et al. (2026, §3).

A star is an unordered set of (token id, value) pairs: XP coefficients, colours, labels, ... Each
context token is embedded non-linearly, ``GELU(w_t · x + b_t)`` (paper Eq. 1); a *request* token is the
learned vector ``w_t`` alone (no bias, no activation: read from Leung & Bovy's `stellarperceptron`
code). There is no positional encoding. An encoder of post-LayerNorm self-attention blocks turns the
context into one vector per token; each requested token is then decoded *independently* by
cross-attention blocks over that encoder output and a dense network into a mean and a log-variance,
both in standardised units of the requested token.

Queries are decoded together as a (B, Q) query sequence, but there is no self-attention between them:
cross-attention, LayerNorm, the feed-forward layers and the output network all act on each query row on
its own, so one request's answer does not depend on which other tokens are requested. The encoder runs
once per star whatever the number of requests, and the key/value projections of the encoder output are
computed once per decoder block for all queries.

Shapes: B stars, L context slots (padding id 0 beyond a star's valid tokens), Q requests, D = d_model.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PRESETS", "ModelConfig", "ModelOutput", "XPTransformer"]


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of an :class:`XPTransformer`.

    The defaults are the published model (Leung & Bovy 2024; Zhang et al. 2026 §3.1): d_model 128,
    encoder blocks with 16 and 8 heads and feed-forward widths 1024 and 512, decoder blocks with 16/8/4
    heads and widths 3096/1548/774, then a dense network 3096→1548→774→387 and two linear outputs.

    n_tokens: vocabulary size T (token ids 1..T; 0 is padding). The training loop sets it from the data.
    context_length: the number of context tokens the model is trained with (64); inference refuses more.
    attention_dropout: dropout on the attention weights; None (the published model) uses `dropout`.
    Setting it to 0 lets PyTorch's fused attention kernel run during training: on a 2-core CPU the
    small preset then trains 2.3-2.7x faster (batch 256-512; `benchmarks/bench_model.py`), because the
    (B, H, L, L + 1) dropout mask is most of the step's time there.
    """

    n_tokens: int = 120
    d_model: int = 128
    context_length: int = 64
    encoder_heads: tuple[int, ...] = (16, 8)
    encoder_ffn: tuple[int, ...] = (1024, 512)
    decoder_heads: tuple[int, ...] = (16, 8, 4)
    decoder_ffn: tuple[int, ...] = (3096, 1548, 774)
    head_mlp: tuple[int, ...] = (3096, 1548, 774, 387)
    dropout: float = 0.1
    attention_dropout: float | None = None

    def __post_init__(self) -> None:
        errors = self.problems()
        if errors:
            raise ValueError("invalid ModelConfig:\n  " + "\n  ".join(errors))

    def problems(self) -> list[str]:
        """Every inconsistency of this configuration (empty when valid)."""
        errs: list[str] = []
        for name in ("n_tokens", "d_model", "context_length"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                errs.append(f"{name} must be a positive integer, got {v!r}")
        for name in ("encoder_heads", "encoder_ffn", "decoder_heads", "decoder_ffn", "head_mlp"):
            v = getattr(self, name)
            if not isinstance(v, tuple) or not v or not all(isinstance(x, int) and x > 0 for x in v):
                errs.append(f"{name} must be a non-empty sequence of positive integers, got {v!r}")
        if not errs:
            if len(self.encoder_heads) != len(self.encoder_ffn):
                errs.append(
                    f"encoder_heads {self.encoder_heads} and encoder_ffn {self.encoder_ffn} "
                    "must have one entry per encoder block"
                )
            if len(self.decoder_heads) != len(self.decoder_ffn):
                errs.append(
                    f"decoder_heads {self.decoder_heads} and decoder_ffn {self.decoder_ffn} "
                    "must have one entry per decoder block"
                )
            for h in sorted(set(self.encoder_heads + self.decoder_heads)):
                if self.d_model % h:
                    errs.append(f"d_model {self.d_model} is not divisible by {h} attention heads")
        if not (isinstance(self.dropout, int | float) and 0.0 <= self.dropout < 1.0):
            errs.append(f"dropout must be in [0, 1), got {self.dropout!r}")
        ad = self.attention_dropout
        if ad is not None and not (isinstance(ad, int | float) and 0.0 <= ad < 1.0):
            errs.append(f"attention_dropout must be None or in [0, 1), got {ad!r}")
        return errs

    @property
    def attention_dropout_rate(self) -> float:
        """The dropout applied to attention weights (`attention_dropout`, else `dropout`)."""
        return float(self.dropout if self.attention_dropout is None else self.attention_dropout)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """Build from a plain mapping (YAML/JSON); lists become tuples; unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown model config keys {unknown}; expected some of {sorted(known)}")
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        for key in ("dropout", "attention_dropout"):
            if isinstance(kw.get(key), int):
                kw[key] = float(kw[key])
        return cls(**kw)


PRESETS: dict[str, ModelConfig] = {
    # Leung & Bovy (2024) / Zhang et al. (2026): 8,846,041 parameters with the 120-token vocabulary.
    "paper": ModelConfig(),
    # CPU-sized variant quoted in REFERENCE.md §4: 471,938 parameters with 120 tokens; no dropout on
    # the attention weights, so that the fused attention kernel trains it 2.6x faster on a CPU.
    "small": ModelConfig(
        d_model=64,
        encoder_ffn=(256, 128),
        decoder_ffn=(512, 256, 128),
        head_mlp=(512, 256, 128, 64),
        attention_dropout=0.0,
    ),
    # For unit tests: a few thousand parameters.
    "tiny": ModelConfig(
        d_model=16,
        encoder_heads=(4, 2),
        encoder_ffn=(32, 16),
        decoder_heads=(4, 2, 1),
        decoder_ffn=(32, 16, 8),
        head_mlp=(32, 16),
        dropout=0.0,
    ),
}


@dataclass
class ModelOutput:
    """What :meth:`XPTransformer.forward` returns.

    mean, logvar: (B, Q) in standardised units of each requested token (σ² = exp(logvar)).
    context: (B, L, D) encoder output, when asked for.
    attention: when asked for, ``{"encoder": [(B, H_i, L, L + 1), ...], "decoder": [(B, H_j, Q, L + 1),
    ...]}`` per block, averaged over nothing; the last key slot is the learned bias key/value.
    """

    mean: torch.Tensor
    logvar: torch.Tensor
    context: torch.Tensor | None = None
    attention: dict[str, list[torch.Tensor]] | None = field(default=None)


class TokenEmbedding(nn.Module):
    """Per-token non-linear embedding (Leung & Bovy 2024; Zhang et al. 2026 Eq. 1).

    Row 0 of both tables belongs to the padding id and is kept at zero; padded context slots are
    multiplied by zero so they embed to exactly zero whatever the tables hold.
    """

    def __init__(self, n_tokens: int, d_model: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_tokens + 1, d_model))  # (T + 1, D)
        self.bias = nn.Parameter(torch.empty(n_tokens + 1, d_model))  # (T + 1, D)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Leung & Bovy initialise both tables Glorot-uniform and zero the padding row.
        nn.init.xavier_uniform_(self.weight)
        nn.init.xavier_uniform_(self.bias)
        with torch.no_grad():
            self.weight[0].zero_()
            self.bias[0].zero_()

    def context(self, ids: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """ids (B, L) int, values (B, L) standardised → (B, L, D) = GELU(w_id · value + b_id)."""
        w = F.embedding(ids, self.weight)  # (B, L, D)
        b = F.embedding(ids, self.bias)  # (B, L, D)
        x = F.gelu(w * values.unsqueeze(-1).to(w.dtype) + b)  # (B, L, D)
        return x * (ids != 0).unsqueeze(-1).to(x.dtype)  # (B, L, D), padding exactly 0

    def request(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B, Q) int → (B, Q, D): the bare weight vector w_id of each requested token."""
        return F.embedding(ids, self.weight)  # (B, Q, D)


class Attention(nn.Module):
    """Multi-head attention with an extra learned key/value slot.

    Same parameters as ``nn.MultiheadAttention(d_model, n_heads, add_bias_kv=True)``: a packed q/k/v
    projection, an output projection and the vectors ``bias_k``, ``bias_v`` appended to every key and
    value sequence (never masked, so a query always has something to attend to, even for a star with
    no valid token). Written out (rather than calling nn.MultiheadAttention, which takes its slow
    path whenever add_bias_kv is set) so that PyTorch's fused scaled-dot-product attention runs
    unless the attention weights are asked for; on one CPU core it is 1.0–1.5× faster than explicit
    products for the small and paper presets (training step, batch 64–256), and on CUDA it avoids
    materialising the (B, H, L, L + 1) score tensor.
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.dropout = dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * d_model, d_model))  # (3D, D)
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * d_model))  # (3D,)
        self.out_proj = nn.Linear(d_model, d_model)
        self.bias_k = nn.Parameter(torch.empty(1, 1, d_model))  # (1, 1, D)
        self.bias_v = nn.Parameter(torch.empty(1, 1, d_model))  # (1, 1, D)
        # The initialisation of nn.MultiheadAttention.
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)
        nn.init.xavier_normal_(self.bias_k)
        nn.init.xavier_normal_(self.bias_v)

    def forward(
        self, query: torch.Tensor, memory: torch.Tensor, pad_mask: torch.Tensor, need_weights: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """query (B, Lq, D), memory (B, L, D), pad_mask (B, L) True at padding
        → (B, Lq, D) and, if asked, attention weights (B, H, Lq, L + 1)."""
        b, lq, d = query.shape
        h, dh = self.n_heads, d // self.n_heads
        if query is memory:  # self-attention: one packed projection
            q, k, v = F.linear(query, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)  # (B, L, D)
        else:  # cross-attention: queries and the encoder output projected separately
            w_q, w_kv = self.in_proj_weight.split([d, 2 * d])  # (D, D), (2D, D)
            b_q, b_kv = self.in_proj_bias.split([d, 2 * d])  # (D,), (2D,)
            q = F.linear(query, w_q, b_q)  # (B, Lq, D)
            k, v = F.linear(memory, w_kv, b_kv).chunk(2, dim=-1)  # (B, L, D) each
        k = torch.cat([k, self.bias_k.expand(b, 1, d).to(k.dtype)], dim=1)  # (B, L + 1, D)
        v = torch.cat([v, self.bias_v.expand(b, 1, d).to(v.dtype)], dim=1)  # (B, L + 1, D)
        keep = torch.cat([~pad_mask, pad_mask.new_ones(b, 1)], dim=1)  # (B, L + 1), True = attend
        q = q.view(b, lq, h, dh).transpose(1, 2)  # (B, H, Lq, dh)
        k = k.view(b, -1, h, dh).transpose(1, 2)  # (B, H, L + 1, dh)
        v = v.view(b, -1, h, dh).transpose(1, 2)  # (B, H, L + 1, dh)
        p_drop = self.dropout if self.training else 0.0
        weights = None
        if need_weights:  # explicit products: the weights are wanted
            scores = (q @ k.transpose(-2, -1)) * dh**-0.5  # (B, H, Lq, L + 1)
            scores = scores.masked_fill(~keep[:, None, None, :], float("-inf"))
            attn = scores.softmax(dim=-1)  # (B, H, Lq, L + 1)
            weights = attn if need_weights else None
            out = F.dropout(attn, p_drop, self.training) @ v  # (B, H, Lq, dh)
        else:
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=keep[:, None, None, :], dropout_p=p_drop
            )  # (B, H, Lq, dh)
        out = out.transpose(1, 2).reshape(b, lq, d)  # (B, Lq, D)
        return self.out_proj(out), weights


class AttentionBlock(nn.Module):
    """Post-LayerNorm transformer block: attention → dropout → residual → LayerNorm → FFN (D→d_ffn→D,
    GELU) → dropout → residual → LayerNorm. Attention dropout is the block's dropout rate.
    Used as self-attention (encoder: query = memory) and cross-attention (decoder).
    """

    def __init__(
        self, d_model: int, n_heads: int, d_ffn: int, dropout: float, attention_dropout: float | None = None
    ) -> None:
        super().__init__()
        self.attn = Attention(d_model, n_heads, dropout if attention_dropout is None else attention_dropout)
        self.drop_attn = nn.Dropout(dropout)
        self.norm_attn = nn.LayerNorm(d_model)
        self.ffn_in = nn.Linear(d_model, d_ffn)
        self.ffn_out = nn.Linear(d_ffn, d_model)
        self.drop_ffn = nn.Dropout(dropout)
        self.norm_ffn = nn.LayerNorm(d_model)
        _kaiming(self.ffn_in)
        _kaiming(self.ffn_out)

    def forward(
        self,
        query: torch.Tensor,
        memory: torch.Tensor,
        pad_mask: torch.Tensor,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """query (B, Lq, D), memory (B, L, D), pad_mask (B, L) True at padding
        → (B, Lq, D) and, if asked, per-head attention weights (B, H, Lq, L + 1)."""
        a, w = self.attn(query, memory, pad_mask, need_weights)  # a: (B, Lq, D)
        x = self.norm_attn(query + self.drop_attn(a))  # (B, Lq, D)
        h = self.ffn_out(F.gelu(self.ffn_in(x)))  # (B, Lq, D)
        return self.norm_ffn(x + self.drop_ffn(h)), w


def _kaiming(layer: nn.Linear) -> None:
    """He-uniform weights (gain √2) and U(±1/√fan_in) bias, the initialisation Leung & Bovy use for
    their dense layers (torch's default has gain 1/√3 instead)."""
    nn.init.kaiming_uniform_(layer.weight)
    bound = 1.0 / math.sqrt(layer.weight.shape[1])
    nn.init.uniform_(layer.bias, -bound, bound)


class XPTransformer(nn.Module):
    """Encoder-decoder transformer over sets of (token, value) pairs with Gaussian outputs."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.embedding = TokenEmbedding(c.n_tokens, c.d_model)
        self.encoder = nn.ModuleList(
            AttentionBlock(c.d_model, h, f, c.dropout, c.attention_dropout_rate)
            for h, f in zip(c.encoder_heads, c.encoder_ffn, strict=True)
        )
        self.decoder = nn.ModuleList(
            AttentionBlock(c.d_model, h, f, c.dropout, c.attention_dropout_rate)
            for h, f in zip(c.decoder_heads, c.decoder_ffn, strict=True)
        )
        layers: list[nn.Module] = []
        width = c.d_model
        for n in c.head_mlp:
            lin = nn.Linear(width, n)
            _kaiming(lin)
            layers += [lin, nn.GELU(), nn.Dropout(c.dropout)]
            width = n
        self.head = nn.Sequential(*layers)
        self.out_mean = nn.Linear(width, 1)
        self.out_logvar = nn.Linear(width, 1)
        _kaiming(self.out_mean)
        _kaiming(self.out_logvar)

    def encode(
        self, context_ids: torch.Tensor, context_values: torch.Tensor, need_weights: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """context_ids (B, L) int (0 = padding), context_values (B, L) standardised
        → context (B, L, D), pad_mask (B, L) bool, per-block attention weights (if asked)."""
        pad_mask = context_ids == 0  # (B, L)
        x = self.embedding.context(context_ids, context_values)  # (B, L, D)
        weights: list[torch.Tensor] = []
        for block in self.encoder:
            x, w = block(x, x, pad_mask, need_weights)  # (B, L, D)
            if need_weights:
                weights.append(w)  # (B, H, L, L + 1)
        return x, pad_mask, weights

    def decode(
        self,
        request_ids: torch.Tensor,
        context: torch.Tensor,
        pad_mask: torch.Tensor,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """request_ids (B, Q) int, context (B, L, D), pad_mask (B, L)
        → mean (B, Q), logvar (B, Q), per-block cross-attention weights (if asked)."""
        q = self.embedding.request(request_ids)  # (B, Q, D)
        weights: list[torch.Tensor] = []
        for block in self.decoder:
            q, w = block(q, context, pad_mask, need_weights)  # (B, Q, D)
            if need_weights:
                weights.append(w)  # (B, H, Q, L + 1)
        h = self.head(q)  # (B, Q, head_mlp[-1])
        mean = self.out_mean(h).squeeze(-1)  # (B, Q)
        logvar = self.out_logvar(h).squeeze(-1)  # (B, Q)
        return mean, logvar, weights

    def forward(
        self,
        context_ids: torch.Tensor,
        context_values: torch.Tensor,
        request_ids: torch.Tensor,
        *,
        return_attention: bool = False,
        return_context: bool = False,
    ) -> ModelOutput:
        """context_ids (B, L), context_values (B, L), request_ids (B, Q) → :class:`ModelOutput`."""
        context, pad_mask, enc_w = self.encode(context_ids, context_values, return_attention)
        mean, logvar, dec_w = self.decode(request_ids, context, pad_mask, return_attention)
        return ModelOutput(
            mean=mean,  # (B, Q)
            logvar=logvar,  # (B, Q)
            context=context if return_context else None,  # (B, L, D)
            attention={"encoder": enc_w, "decoder": dec_w} if return_attention else None,
        )

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
