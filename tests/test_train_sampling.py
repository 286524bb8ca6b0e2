"""Token sampling invariants (Leung & Bovy 2024 training generator; Zhang et al. 2026 §3.3)."""

from __future__ import annotations

import functools
import time

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

from xpengine.train.sampling import sample_tokens


def _data(n=2000, t=120, seed=0):
    g = torch.Generator().manual_seed(seed)
    values = torch.randn(n, t, generator=g)
    # Star-dependent missing fraction 0..95 %; a few stars with 0, 1, 3 valid tokens.
    frac = torch.rand(n, 1, generator=g) * 0.95
    values[torch.rand(n, t, generator=g) < frac] = float("nan")
    values[0] = float("nan")
    values[1, 0], values[1, 1:] = 0.5, float("nan")
    values[2, :3], values[2, 3:] = torch.tensor([0.1, 0.2, 0.3]), float("nan")
    errors = torch.rand(n, t, generator=g)
    return values, errors


def test_context_counts_ids_and_values():
    values, errors = _data()
    requestable = torch.ones(120, dtype=torch.bool)
    tb = sample_tokens(values, errors, requestable, generator=torch.Generator().manual_seed(1))
    assert tb.context_ids.shape == (2000, 64) and tb.context_ids.dtype == torch.int64
    n_valid = torch.isfinite(values).sum(1)
    n_ctx = (tb.context_ids > 0).sum(1)
    # 5..64 context tokens, or all of them when the star has fewer than the draw.
    assert (n_ctx <= torch.clamp(n_valid, max=64)).all()
    assert (n_ctx >= torch.clamp(n_valid, max=5)).all()
    assert n_ctx[:3].tolist() == [0, 1, 3]
    rich = n_valid >= 64
    assert n_ctx[rich].min() == 5 and n_ctx[rich].max() == 64
    # Valid slots come first, then padding; ids are distinct, valid, and carry their own values.
    ids = tb.context_ids
    pos = torch.arange(64)
    assert torch.equal(ids > 0, pos < n_ctx.unsqueeze(1))
    for i in range(0, 2000, 97):  # spot checks of individual stars
        row = ids[i, : n_ctx[i]] - 1
        assert len(set(row.tolist())) == len(row)
        assert torch.isfinite(values[i, row]).all()
        torch.testing.assert_close(tb.context_values[i, : n_ctx[i]], values[i, row])
    assert torch.equal(tb.context_values[ids == 0], torch.zeros(int((ids == 0).sum())))
    # Masked count is uniform over 0..59 for stars with >= 64 valid tokens.
    masked = 64 - n_ctx[rich]
    counts = torch.bincount(masked, minlength=60).numpy()
    assert counts.size == 60 and counts.min() > 0


def test_requests_are_valid_requestable_distinct_and_match_targets():
    values, errors = _data()
    requestable = torch.zeros(120, dtype=torch.bool)
    requestable[[3, 50, 110, 113, 114, 115]] = True
    tb = sample_tokens(values, errors, requestable, n_requests=3, generator=torch.Generator().manual_seed(2))
    assert tb.request_ids.shape == (2000, 3)
    can = torch.isfinite(values) & requestable
    n_can = can.sum(1)
    assert torch.equal(tb.request_mask.sum(1), torch.clamp(n_can, max=3))
    ids = tb.request_ids
    col = (ids - 1).clamp(min=0)
    assert torch.equal(ids > 0, tb.request_mask)
    assert torch.gather(can, 1, col)[tb.request_mask].all()
    torch.testing.assert_close(tb.targets[tb.request_mask], torch.gather(values, 1, col)[tb.request_mask])
    torch.testing.assert_close(
        tb.target_errors[tb.request_mask], torch.gather(errors, 1, col)[tb.request_mask]
    )
    full = tb.request_mask.all(1)
    assert (ids[full, 0] != ids[full, 1]).all() and (ids[full, 1] != ids[full, 2]).all()
    assert (ids[full, 0] != ids[full, 2]).all()
    assert torch.equal(tb.targets[~tb.request_mask], torch.zeros(int((~tb.request_mask).sum())))
    # Every requestable token gets drawn.
    assert set(ids[tb.request_mask].unique().tolist()) == {4, 51, 111, 114, 115, 116}


def test_request_choice_is_uniform_among_valid_tokens():
    values = torch.ones(60000, 5)
    values[:, 4] = float("nan")
    tb = sample_tokens(
        values,
        torch.zeros_like(values),
        torch.ones(5, dtype=torch.bool),
        generator=torch.Generator().manual_seed(3),
    )
    counts = torch.bincount(tb.request_ids[:, 0], minlength=6).numpy()
    assert counts[0] == 0 and counts[5] == 0
    np.testing.assert_allclose(counts[1:5] / 60000, 0.25, atol=0.01)
    assert tb.context_ids.shape == (60000, 5)  # width min(T, 64): no wasted slots


def test_reproducible_with_a_seeded_generator():
    values, errors = _data(200)
    req = torch.ones(120, dtype=torch.bool)
    a = sample_tokens(values, errors, req, generator=torch.Generator().manual_seed(7))
    b = sample_tokens(values, errors, req, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a.context_ids, b.context_ids) and torch.equal(a.request_ids, b.request_ids)


class _CountTorchCalls(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.n = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.n += 1
        return func(*args, **(kwargs or {}))


def test_vectorised_no_work_per_star():
    # The number of torch operations does not grow with the number of stars: no Python loop per star.
    req = torch.ones(120, dtype=torch.bool)
    calls = []
    for n in (10, 3000):
        values, errors = _data(n)
        with _CountTorchCalls() as counter:
            sample_tokens(values, errors, req, n_requests=2, generator=torch.Generator().manual_seed(0))
        calls.append(counter.n)
    assert calls[0] == calls[1] and calls[0] < 100


def test_speed_one_core():
    # Measured 1.05 s per 100k stars x 120 tokens on one core of this 2-core box.
    values, errors = _data(30_000)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        t0 = time.perf_counter()
        sample_tokens(
            values, errors, torch.ones(120, dtype=torch.bool), generator=torch.Generator().manual_seed(0)
        )
        dt = time.perf_counter() - t0
    finally:
        torch.set_num_threads(n)
    assert dt < 3.0, f"sampling 30k stars took {dt:.2f} s"


def test_bad_arguments_are_reported():
    v = torch.zeros(3, 4)
    with pytest.raises(ValueError, match=r"requestable must have shape \(4,\)"):
        sample_tokens(v, v, torch.ones(5, dtype=torch.bool))
    with pytest.raises(ValueError, match="max_masked must be in"):
        sample_tokens(v, v, torch.ones(4, dtype=torch.bool), max_masked=64)


def test_request_weights_favour_the_weighted_tokens():
    """With weight w on 2 of 20 equally valid tokens, they are drawn ≈ w·2/(w·2+18) of the time."""
    g = torch.Generator().manual_seed(1)
    values = torch.randn(20000, 20)  # (B, T) all valid
    requestable = torch.ones(20, dtype=torch.bool)
    weights = torch.ones(20)
    weights[[3, 7]] = 9.0
    tb = sample_tokens(
        values, torch.zeros_like(values), requestable, n_requests=1, request_weights=weights, generator=g
    )
    frac = ((tb.request_ids == 4) | (tb.request_ids == 8)).float().mean().item()
    assert abs(frac - 18 / 36) < 0.015
    # without weights the same two tokens get 2/20
    tb0 = sample_tokens(values, torch.zeros_like(values), requestable, n_requests=1, generator=g)
    frac0 = ((tb0.request_ids == 4) | (tb0.request_ids == 8)).float().mean().item()
    assert abs(frac0 - 0.1) < 0.01


def test_weighted_requests_are_distinct_and_requestable():
    g = torch.Generator().manual_seed(2)
    values = torch.randn(500, 12)
    values[:, 5] = float("nan")
    requestable = torch.ones(12, dtype=torch.bool)
    requestable[0] = False
    weights = torch.linspace(1, 5, 12)
    tb = sample_tokens(
        values, torch.zeros_like(values), requestable, n_requests=4, request_weights=weights, generator=g
    )
    ids = tb.request_ids
    assert tb.request_mask.all()
    assert not ((ids == 1) | (ids == 6)).any()  # not requestable / missing
    srt = ids.sort(dim=1).values
    assert (srt[:, 1:] != srt[:, :-1]).all()


def test_focus_contexts_hold_only_focus_tokens():
    values, errors = _data(n=4000)
    values[3:] = torch.randn(3997, 120)  # all tokens valid except the three special stars
    requestable = torch.zeros(120, dtype=torch.bool)
    requestable[[100, 101]] = True
    focus = torch.zeros(120, dtype=torch.bool)
    focus[:63] = True
    tb = sample_tokens(
        values,
        errors,
        requestable,
        focus=focus,
        focus_fraction=0.5,
        focus_max_masked=10,
        generator=torch.Generator().manual_seed(3),
    )
    ids = tb.context_ids[3:]
    n_ctx = (ids > 0).sum(1)
    only_focus = ((ids == 0) | (ids <= 63)).all(1)
    focused = only_focus & (n_ctx >= 53)
    # About half the stars are focused: their 53..63 context tokens all come from the focus set
    # (an unfocused star draws 53+ tokens from the first 63 of 120 with probability < 1e-14).
    assert 0.45 < focused.float().mean().item() < 0.55
    assert n_ctx[focused].max() == 63
    # The others follow the paper's rule (5..64 tokens of any kind; a few small contexts happen to
    # fall in the focus set); requests are unaffected.
    assert n_ctx[~focused].min() == 5 and n_ctx[~focused].max() == 64
    assert (only_focus & ~focused).float().mean() < 0.05
    assert set(tb.request_ids[3:].unique().tolist()) <= {101, 102}
    # No focus: never a 53+-token context made only of the first 63 tokens by chance in 4000 stars.
    plain = sample_tokens(values, errors, requestable, generator=torch.Generator().manual_seed(3))
    pids = plain.context_ids[3:]
    assert not (((pids == 0) | (pids <= 63)).all(1) & ((pids > 0).sum(1) >= 53)).any()
    # A star without any valid focus token is never left with an empty context.
    bare = values[3:40].clone()
    bare[:, :63] = float("nan")
    tb2 = sample_tokens(
        bare,
        errors[3:40],
        requestable,
        focus=focus,
        focus_fraction=1.0,
        generator=torch.Generator().manual_seed(4),
    )
    ids2 = tb2.context_ids
    assert ((ids2 > 0).sum(1) >= 5).all() and ((ids2 == 0) | (ids2 > 63)).all()
    with pytest.raises(ValueError, match="needs a focus mask"):
        sample_tokens(values, errors, requestable, focus_fraction=0.5)
    with pytest.raises(ValueError, match="focus_max_masked"):
        sample_tokens(values, errors, requestable, focus=focus, focus_fraction=0.5, focus_max_masked=64)


def test_epoch_rows_subsample_the_pool_afresh_each_epoch():
    from xpengine.train.sampling import epoch_rows

    cpu = torch.device("cpu")
    # no pool: exactly torch.randperm, so runs without a pool draw what they always drew
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(epoch_rows(50, None, 0.3, g1, cpu), torch.randperm(50, generator=g2))
    n = 20_000
    pool = torch.arange(n) >= 5_000  # rows 5000.. are the pool
    g = torch.Generator().manual_seed(4)
    a, b = epoch_rows(n, pool, 0.1, g, cpu), epoch_rows(n, pool, 0.1, g, cpu)
    for rows in (a, b):
        assert rows.unique().numel() == rows.numel()  # no repeats
        assert set(range(5_000)) <= set(rows.tolist())  # every row outside the pool, every epoch
        n_pool = int(pool[rows].sum())
        assert abs(n_pool - 1_500) < 5 * (15_000 * 0.1 * 0.9) ** 0.5  # binomial(15000, 0.1)
        assert not torch.equal(rows[:100].sort().values, torch.arange(100))  # shuffled
    drawn_a, drawn_b = set(a[pool[a]].tolist()), set(b[pool[b]].tolist())
    assert len(drawn_a & drawn_b) < 0.2 * len(drawn_a)  # a fresh draw: overlap ≈ 10 %, not the same rows


def _xp_layout(t=120, n_per_band=55):
    """Token layout of the paper's vocabulary: BP 0..54, RP 0..54, then 10 other tokens."""
    band = torch.full((t,), -1, dtype=torch.int64)
    order = torch.zeros(t, dtype=torch.int64)
    band[:n_per_band], band[n_per_band : 2 * n_per_band] = 0, 1
    order[:n_per_band] = torch.arange(n_per_band)
    order[n_per_band : 2 * n_per_band] = torch.arange(n_per_band)
    return band, order


def test_relevancy_truncation_leaves_the_cut_orders_out_of_the_context_only():
    from xpengine.train.sampling import _truncated

    values, errors = _data(n=3000)
    values[3:] = torch.randn(2997, 120)  # every token valid except the three special stars
    requestable = torch.zeros(120, dtype=torch.bool)
    requestable[:110] = True  # XP coefficients may be requested
    band, order = _xp_layout()
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    cut = _truncated(3000, band, order, 0.5, 3, g1)  # the draws sample_tokens makes first
    tb = sample_tokens(
        values, errors, requestable, xp_band=band, xp_order=order, truncate_fraction=0.5, generator=g2
    )
    in_ctx = torch.zeros(3000, 121, dtype=torch.bool)
    in_ctx.scatter_(1, tb.context_ids, True)
    in_ctx = in_ctx[:, 1:]  # (B, T) token j is in the context
    assert not (in_ctx & cut).any()  # no cut order ever enters a context
    # half the stars are cut, each band at its own count in 3..55: cut orders form the band's tail
    stars_cut = cut.any(1)
    assert 0.45 < stars_cut[3:].float().mean().item() < 0.55
    k_bp = 55 - cut[:, :55].sum(1)
    assert ((k_bp >= 3) & (k_bp <= 55)).all()
    tail = order[:55].unsqueeze(0) >= k_bp.unsqueeze(1)
    assert torch.equal(cut[:, :55], tail & stars_cut.unsqueeze(1))
    assert not cut[:, 110:].any()  # other tokens are never cut
    # requests are drawn as before: cut orders may still be asked for (they are the star's data)
    req = tb.request_ids[tb.request_mask] - 1
    assert cut[torch.nonzero(tb.request_mask)[:, 0], req].any()


def test_relevancy_truncation_off_draws_exactly_as_before():
    values, errors = _data(n=500)
    requestable = torch.ones(120, dtype=torch.bool)
    band, order = _xp_layout()
    a = sample_tokens(values, errors, requestable, n_requests=2, generator=torch.Generator().manual_seed(9))
    b = sample_tokens(
        values,
        errors,
        requestable,
        n_requests=2,
        xp_band=band,
        xp_order=order,
        truncate_fraction=0.0,
        generator=torch.Generator().manual_seed(9),
    )
    for f in ("context_ids", "context_values", "request_ids", "targets"):
        assert torch.equal(getattr(a, f), getattr(b, f)), f
    with pytest.raises(ValueError, match="needs xp_band and xp_order"):
        sample_tokens(values, errors, requestable, truncate_fraction=0.3)
    with pytest.raises(ValueError, match="truncate_fraction"):
        sample_tokens(values, errors, requestable, xp_band=band, xp_order=order, truncate_fraction=1.5)
    with pytest.raises(ValueError, match="truncate_min"):
        sample_tokens(
            values, errors, requestable, xp_band=band, xp_order=order, truncate_fraction=0.3, truncate_min=56
        )


def test_relevancy_truncation_from_a_count_table_follows_its_rows():
    """With a count table a cut star takes the (BP, RP) counts of one row, drawn ∝ its weight; a count past
    the band's last order cuts nothing there."""
    from xpengine.train.sampling import _truncated

    band, order = _xp_layout()
    counts = torch.tensor([[5, 60], [40, 12]], dtype=torch.int64)
    weights = torch.tensor([3.0, 1.0])
    cut = _truncated(8000, band, order, 1.0, 3, torch.Generator().manual_seed(2), (counts, weights))
    k_bp, k_rp = 55 - cut[:, :55].sum(1), 55 - cut[:, 55:110].sum(1)
    first = (k_bp == 5) & (k_rp == 55)  # row 0: RP 60 ≥ 55 orders, so RP is whole
    second = (k_bp == 40) & (k_rp == 12)
    assert bool((first | second).all())  # every star has one row's pair, BP and RP together
    assert 0.72 < first.float().mean().item() < 0.78  # drawn 3:1
    assert torch.equal(cut[:, :55], order[:55].unsqueeze(0) >= k_bp.unsqueeze(1))  # the band's tail
    assert not cut[:, 110:].any()
    # through sample_tokens: no cut order enters a context
    values, errors = _data(n=500)
    values[:] = torch.randn(500, 120)
    draw = functools.partial(
        sample_tokens, values, errors, torch.ones(120, dtype=torch.bool), xp_band=band, xp_order=order
    )
    tb = draw(
        truncate_fraction=1.0,
        truncate_table=(counts[:1], weights[:1]),
        generator=torch.Generator().manual_seed(3),
    )
    ids = tb.context_ids[tb.context_ids > 0] - 1
    assert not ((ids >= 5) & (ids < 55)).any() and ((ids >= 55) & (ids < 110)).any()
    with pytest.raises(ValueError, match="truncate_table needs"):
        draw(truncate_fraction=0.5, truncate_table=(counts[:, :1], weights))


def test_count_table_file_round_trip_and_errors(tmp_path):
    from xpengine.train.train_data import load_truncate_counts

    good = tmp_path / "counts.csv"
    good.write_text("# made by hand\nbp_n_relevant_bases,rp_n_relevant_bases,count\n3,4,10\n55,21,2\n")
    counts, weights = load_truncate_counts(str(good))
    assert counts.tolist() == [[3, 4], [55, 21]] and weights.tolist() == [10.0, 2.0]
    bad = tmp_path / "bad.csv"
    bad.write_text("bp_n_relevant_bases,rp_n_relevant_bases,count\n3,4,10\n7,x,1\n")
    with pytest.raises(ValueError, match=r"bad.csv: line 3, column rp_n_relevant_bases: not an integer: 'x'"):
        load_truncate_counts(str(bad))
    bad.write_text("bp_n_relevant_bases,rp_n_relevant_bases,count\n3,4,0\n")
    with pytest.raises(ValueError, match=r"line 2, column count: must be >= 1, got 0"):
        load_truncate_counts(str(bad))
    bad.write_text("bp,rp,count\n3,4,1\n")
    with pytest.raises(ValueError, match=r"bad.csv: line 1: header must be"):
        load_truncate_counts(str(bad))
    bad.write_text("# nothing\nbp_n_relevant_bases,rp_n_relevant_bases,count\n")
    with pytest.raises(ValueError, match="no count rows"):
        load_truncate_counts(str(bad))
