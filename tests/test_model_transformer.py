"""The transformer: size against the published architecture, shapes, set invariances, independence of
requests, attention against torch's reference implementation, analytic FLOPs against REFERENCE §4."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from xpengine.model.cost import count_parameters, forward_flops
from xpengine.model.transformer import PRESETS, Attention, ModelConfig, XPTransformer

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _tiny(n_tokens: int = 20, **kw) -> XPTransformer:
    torch.manual_seed(0)
    cfg = dataclasses.replace(PRESETS["tiny"], n_tokens=n_tokens, **kw)
    return XPTransformer(cfg).eval()


def test_paper_parameter_count_matches_the_architecture_by_hand():
    # Computed by hand from the published architecture (Leung & Bovy 2024; Zhang et al. 2026 §3.1),
    # d = 128, vocabulary 120 tokens + padding:
    #   embedding  w and b tables: 2 * 121 * 128                                   =    30,976
    #   attention block with FFN width f: MHA 3d² + 3d (q,k,v) + d² + d (out) + 2d (bias_k, bias_v)
    #     = 66,304; two LayerNorms 4d = 512; FFN 2·d·f + f + d = 257 f + 128
    #     → 66,944 + 257 f
    #   encoder f = 1024, 512: 330,112 + 198,528                                    =   528,640
    #   decoder f = 3096, 1548, 774: 862,616 + 464,780 + 265,862                    = 1,593,258
    #   dense 128→3096→1548→774→387: 399,384 + 4,794,156 + 1,198,926 + 299,925
    #     + two outputs 2·(387 + 1) = 776                                           = 6,693,167
    #   total                                                                       = 8,846,041
    expected = 30_976 + 528_640 + 1_593_258 + 6_693_167
    assert expected == 8_846_041
    model = XPTransformer(PRESETS["paper"])
    assert sum(p.numel() for p in model.parameters()) == expected
    parts = count_parameters(PRESETS["paper"])
    assert parts["total"] == expected
    # REFERENCE §4: "~8.8 M parameters", "the MLP is 76% of the parameters".
    assert parts["head"] / parts["total"] == pytest.approx(0.76, abs=0.005)


@pytest.mark.parametrize("preset, expected", [("small", 471_938), ("tiny", None)])
def test_other_presets_parameter_count(preset, expected):
    cfg = PRESETS[preset]
    model = XPTransformer(cfg)
    n = sum(p.numel() for p in model.parameters())
    assert n == count_parameters(cfg)["total"]
    if expected is not None:  # REFERENCE §4 quotes 0.47 M for the small preset
        assert n == expected


def test_forward_flops_match_reference_figures():
    f = forward_flops(PRESETS["paper"])
    # REFERENCE §4 (independent re-implementation): 71 M + 12.6 M + 16.4 M per label; 5 labels ≈ 166 M;
    # a training step with one request ≈ 301 M.
    assert f.encoder == pytest.approx(71e6, rel=0.01)
    assert f.decoder_kv == pytest.approx(12.6e6, rel=0.01)
    assert f.per_request == pytest.approx(16.4e6, rel=0.01)
    assert f.forward(5) == pytest.approx(166e6, rel=0.01)
    assert f.train_step(1) == pytest.approx(301e6, rel=0.01)


def test_output_shapes_and_optional_outputs():
    model = _tiny()
    b, n_ctx, q = 3, 7, 4
    ids = torch.randint(1, 21, (b, n_ctx))
    out = model(
        ids, torch.randn(b, n_ctx), torch.randint(1, 21, (b, q)), return_attention=True, return_context=True
    )
    assert out.mean.shape == (b, q) and out.logvar.shape == (b, q)
    assert out.context.shape == (b, n_ctx, 16)
    cfg = model.config
    assert [tuple(w.shape) for w in out.attention["encoder"]] == [
        (b, h, n_ctx, n_ctx + 1) for h in cfg.encoder_heads
    ]
    assert [tuple(w.shape) for w in out.attention["decoder"]] == [
        (b, h, q, n_ctx + 1) for h in cfg.decoder_heads
    ]
    for w in out.attention["encoder"] + out.attention["decoder"]:
        torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[:-1]))
    plain = model(ids, torch.randn(b, n_ctx), torch.randint(1, 21, (b, q)))
    assert plain.context is None and plain.attention is None


def test_padding_position_and_token_order_do_not_matter():
    model = _tiny()
    ids = torch.tensor([[3, 7, 1, 12, 5]])
    vals = torch.tensor([[0.3, -1.2, 2.0, 0.1, -0.4]])
    req = torch.tensor([[2, 9]])
    ref = model(ids, vals, req)
    perm = torch.tensor([4, 2, 0, 3, 1])
    shuffled = model(ids[:, perm], vals[:, perm], req)
    # Same tokens with padding slots interleaved (and garbage values at padding).
    pid = torch.tensor([[0, 3, 7, 0, 0, 1, 12, 5, 0]])
    pval = torch.tensor([[9.0, 0.3, -1.2, -5.0, 3.0, 2.0, 0.1, -0.4, 1.0]])
    padded = model(pid, pval, req)
    for other in (shuffled, padded):
        torch.testing.assert_close(other.mean, ref.mean, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(other.logvar, ref.logvar, atol=1e-5, rtol=1e-5)


def test_a_request_does_not_depend_on_the_other_requests():
    model = _tiny(n_tokens=30)
    ids = torch.randint(1, 31, (6, 10))
    vals = torch.randn(6, 10)
    all_req = model(ids, vals, torch.tensor([[4, 11, 29, 2]]).expand(6, 4))
    for j, tok in enumerate([4, 11, 29, 2]):
        alone = model(ids, vals, torch.full((6, 1), tok))
        torch.testing.assert_close(alone.mean[:, 0], all_req.mean[:, j], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(alone.logvar[:, 0], all_req.logvar[:, j], atol=1e-5, rtol=1e-5)
    # The same token asked twice gives the same answer twice.
    twice = model(ids, vals, torch.tensor([[11, 11]]).expand(6, 2))
    torch.testing.assert_close(twice.mean[:, 0], twice.mean[:, 1])


def test_star_without_tokens_gives_finite_output():
    model = _tiny()
    out = model(torch.zeros(2, 5, dtype=torch.long), torch.zeros(2, 5), torch.tensor([[1], [2]]))
    assert torch.isfinite(out.mean).all() and torch.isfinite(out.logvar).all()


def test_embedding_follows_leung_bovy():
    model = _tiny()
    emb = model.embedding
    ids = torch.tensor([[2, 0]])
    x = emb.context(ids, torch.tensor([[1.5, 3.0]]))
    torch.testing.assert_close(x[0, 0], torch.nn.functional.gelu(emb.weight[2] * 1.5 + emb.bias[2]))
    assert torch.equal(x[0, 1], torch.zeros(16))  # padding embeds to exactly zero
    torch.testing.assert_close(emb.request(torch.tensor([[5]]))[0, 0], emb.weight[5])  # w_t alone
    assert torch.equal(emb.weight[0], torch.zeros(16)) and torch.equal(emb.bias[0], torch.zeros(16))


@pytest.mark.parametrize("d_model, heads", [(16, 4), (64, 4)])  # 4- and 16-dim heads
def test_attention_equals_torch_multihead_attention_with_bias_kv(d_model, heads):
    torch.manual_seed(1)
    mine = Attention(d_model, heads, dropout=0.0).eval()
    ref = nn.MultiheadAttention(d_model, heads, add_bias_kv=True, batch_first=True).eval()
    with torch.no_grad():
        ref.in_proj_weight.copy_(mine.in_proj_weight)
        ref.in_proj_bias.copy_(torch.randn(3 * d_model))
        mine.in_proj_bias.copy_(ref.in_proj_bias)
        ref.out_proj.weight.copy_(mine.out_proj.weight)
        ref.out_proj.bias.copy_(mine.out_proj.bias)
        ref.bias_k.copy_(mine.bias_k)
        ref.bias_v.copy_(mine.bias_v)
    q = torch.randn(3, 2, d_model)
    mem = torch.randn(3, 6, d_model)
    pad = torch.tensor([[0, 0, 0, 1, 1, 1], [0] * 6, [1] * 6], dtype=torch.bool)  # last: all padding
    expected, expected_w = ref(q, mem, mem, key_padding_mask=pad, average_attn_weights=False)
    out_fast, _ = mine(q, mem, pad, need_weights=False)
    out_w, w = mine(q, mem, pad, need_weights=True)
    torch.testing.assert_close(out_fast, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out_w, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(w, expected_w, atol=1e-6, rtol=1e-5)
    # Self-attention (the encoder: query is memory) takes the packed-projection path.
    expected_self, _ = ref(mem, mem, mem, key_padding_mask=pad)
    torch.testing.assert_close(mine(mem, mem, pad)[0], expected_self, atol=1e-5, rtol=1e-5)


def test_dropout_only_in_training_mode():
    torch.manual_seed(0)
    model = XPTransformer(dataclasses.replace(PRESETS["tiny"], n_tokens=10, dropout=0.5))
    ids = torch.randint(1, 11, (4, 6))
    vals = torch.randn(4, 6)
    req = torch.randint(1, 11, (4, 2))
    model.train()
    assert not torch.equal(model(ids, vals, req).mean, model(ids, vals, req).mean)
    model.eval()
    assert torch.equal(model(ids, vals, req).mean, model(ids, vals, req).mean)


def test_config_errors_are_collected_and_explicit():
    with pytest.raises(ValueError, match="not divisible by 3 attention heads") as exc:
        ModelConfig(d_model=16, encoder_heads=(3, 2), encoder_ffn=(8,), dropout=1.5)
    msg = str(exc.value)
    assert "one entry per encoder block" in msg and "dropout must be in [0, 1)" in msg
    with pytest.raises(ValueError, match="unknown model config keys"):
        ModelConfig.from_dict({"d_model": 16, "heads": 2})
    assert ModelConfig.from_dict(PRESETS["small"].to_dict()) == PRESETS["small"]


def test_attention_dropout_is_separate_from_the_other_dropouts():
    base = dataclasses.replace(PRESETS["tiny"], n_tokens=10, dropout=0.3)
    published = XPTransformer(base)
    assert all(b.attn.dropout == 0.3 for b in [*published.encoder, *published.decoder])
    fast = XPTransformer(dataclasses.replace(base, attention_dropout=0.0))
    assert all(b.attn.dropout == 0.0 for b in [*fast.encoder, *fast.decoder])
    assert all(b.drop_ffn.p == 0.3 for b in [*fast.encoder, *fast.decoder])
    # Same parameters either way, so a checkpoint loads into both; old configs (no key) still load.
    assert published.state_dict().keys() == fast.state_dict().keys()
    old = {k: v for k, v in PRESETS["small"].to_dict().items() if k != "attention_dropout"}
    assert ModelConfig.from_dict(old).attention_dropout_rate == 0.1
    cfg = ModelConfig.from_dict({**old, "attention_dropout": 0})
    assert cfg.attention_dropout == 0.0 and cfg.attention_dropout_rate == 0.0
    with pytest.raises(ValueError, match="attention_dropout must be None or in"):
        dataclasses.replace(base, attention_dropout=1.0)
