"""Training and inference throughput of the xpengine transformer, and the fraction of the device's peak.

    python benchmarks/bench_model.py --quick                 # CPU: < 3 min
    python benchmarks/bench_model.py --device cuda           # a GPU box with only torch + numpy
    python benchmarks/bench_model.py --presets paper --batch-sizes 256 1024 4096 --dtypes bf16

Training step: the real one (token sampling on the device from a random 120-token set with NaNs, model
forward with 1 request, robust Gaussian NLL, backward, AdamW), contexts padded to 64 slots.
Inference: encoder once per star over 64 tokens (`--context`), 5 labels (`--labels`) decoded together,
no gradients (`--infer-only` skips training).
FLOPs per star come from the architecture (`xpengine.model.cost`, per layer, matrix products only;
backward = 2 × forward); achieved FLOP/s = stars/s × FLOPs per star, so padded slots count as work.
Attention-weight dropout: each preset runs with its own setting and, with `--attention-dropouts`,
others (default: the preset's dropout rate and 0); the last column is the training speed-up over
the first rate measured in the same run (dropout on the (B, H, L, L + 1) weights keeps PyTorch off its fused
attention kernel). Inference is the same either way (no dropout in eval mode).
Peak: `--peak-tflops`, else a table of known GPUs (dense, no sparsity), else on CPU the measured
FLOP/s of a large matrix product in the same dtype (so CPU fractions are relative to what torch's
GEMM reaches on this machine).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from xpengine.model.cost import forward_flops
from xpengine.model.loss import gaussian_nll
from xpengine.model.transformer import PRESETS, XPTransformer
from xpengine.train.sampling import sample_tokens

N_TOKENS = 120
N_LABELS = 5
# Dense peak TFLOP/s (vendor data sheets, SXM parts): bf16 tensor cores and plain fp32.
KNOWN_PEAKS = {
    "H100": {"bf16": 989.0, "fp32": 67.0},
    "H200": {"bf16": 989.0, "fp32": 67.0},
    "A100": {"bf16": 312.0, "fp32": 19.5},
    "L40S": {"bf16": 362.0, "fp32": 91.6},
    "RTX 4090": {"bf16": 165.0, "fp32": 82.6},
    "RTX 4060": {"bf16": 60.0, "fp32": 15.1},
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: torch.device, dtype: str):
    if dtype == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return torch.autocast(device_type=device.type, enabled=False)


def best_time(fn, repeats: int, device: torch.device) -> float:
    """Fastest of `repeats` timings of fn() (seconds): robust to other processes on a shared box."""
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def measure_matmul_peak(device: torch.device, dtype: str, n: int = 2048, reps: int = 8) -> float:
    """FLOP/s of an n×n×n matrix product in `dtype`, best of `reps` (the CPU 'peak')."""
    tdtype = torch.bfloat16 if dtype == "bf16" else torch.float32
    a = torch.randn(n, n, device=device, dtype=tdtype)
    b = torch.randn(n, n, device=device, dtype=tdtype)
    a @ b
    return 2 * n**3 / best_time(lambda: a @ b, reps, device)


def device_peak(device: torch.device, dtype: str, override: float | None) -> tuple[float, str]:
    if override is not None:
        return override * 1e12, "given"
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, peaks in KNOWN_PEAKS.items():
            if key in name:
                return peaks[dtype] * 1e12, f"{key} data sheet"
        return measure_matmul_peak(device, dtype, n=8192, reps=10), "measured matmul"
    return measure_matmul_peak(device, dtype), "measured matmul"


def fake_training_set(n: int, device: torch.device, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator(device="cpu").manual_seed(seed)
    values = torch.randn(n, N_TOKENS, generator=g)  # (N, T)
    values[torch.rand(n, N_TOKENS, generator=g) < 0.1] = float("nan")  # ~108 valid tokens per star
    errors = torch.rand(n, N_TOKENS, generator=g) * 0.1  # (N, T)
    return values.to(device), errors.to(device)


def bench_train(model, values, errors, batch, dtype, device, steps, warmup, repeats) -> float:
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    requestable = torch.ones(N_TOKENS, dtype=torch.bool, device=device)
    gen = torch.Generator(device=device).manual_seed(0)
    n = values.shape[0]

    def step(i: int) -> None:
        idx = torch.arange(i * batch, (i + 1) * batch, device=device) % n
        tb = sample_tokens(values[idx], errors[idx], requestable, generator=gen)
        with autocast(device, dtype):
            out = model(tb.context_ids, tb.context_values, tb.request_ids)
        loss = gaussian_nll(tb.targets, out.mean, out.logvar, tb.target_errors, tb.request_mask)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for i in range(warmup):
        step(i)

    def run() -> None:
        for i in range(steps):
            step(i)

    return batch * steps / best_time(run, repeats, device)


@torch.inference_mode()
def bench_infer(
    model,
    batch,
    dtype,
    device,
    steps,
    warmup,
    repeats,
    n_labels: int = N_LABELS,
    n_context: int = 64,
    groups: list[tuple[int, int]] | None = None,
) -> float:
    """Stars/s of inference: the encoder over `n_context` tokens, `n_labels` requests decoded together.

    groups: [(context tokens, labels), ...], one encoder pass each per star, instead of the one pass
    (n_context, n_labels): how a Predictor asks outputs that must leave some inputs out of their context
    (`Predictor.context_groups`; gaia-xp v5 runs two)."""
    model.eval()
    g = torch.Generator(device="cpu").manual_seed(1)
    n_tokens = model.config.n_tokens
    passes = []  # (ids (B, L), values (B, L), requests (B, Q)) per encoder pass
    for ctx, q in groups or [(n_context, n_labels)]:
        ids = torch.randperm(n_tokens, generator=g)[:ctx].add(1).expand(batch, ctx).contiguous().to(device)
        vals = torch.randn(batch, ctx, generator=g).to(device)
        req = torch.arange(1, q + 1, device=device).expand(batch, q)
        passes.append((ids, vals, req))

    base = model._orig_mod if hasattr(model, "_orig_mod") else model

    def forward(ids, vals, req):
        ctx, pad, _ = base.encode(ids, vals)
        return base.decode(req, ctx, pad)[:2]

    # --compile: torch.compile the inference forward (encode + decode; compiling the module only
    # would compile `forward`, which inference never calls); the first call's compile time is printed
    fwd = torch.compile(forward) if model is not base else forward

    def step() -> None:
        with autocast(device, dtype):
            for ids, vals, req in passes:
                fwd(ids, vals, req)

    t0 = time.perf_counter()
    step()
    if model is not base:
        print(f"# torch.compile: first inference call (batch {batch}) took {time.perf_counter() - t0:.1f} s")
    for _ in range(warmup):
        step()

    def run() -> None:
        for _ in range(steps):
            step()

    return batch * steps / best_time(run, repeats, device)


def parse_groups(text: str) -> list[tuple[int, int]]:
    """Parse "64:5,63:2" into [(64, 5), (63, 2)]: (context tokens, labels) per encoder pass."""
    groups = []
    for part in text.split(","):
        ctx, sep, q = part.strip().partition(":")
        if not sep or not ctx.isdigit() or not q.isdigit() or int(ctx) < 1 or int(q) < 1:
            raise argparse.ArgumentTypeError(
                f"group {part!r}: expected CONTEXT:LABELS, two positive integers"
            )
        groups.append((int(ctx), int(q)))
    return groups


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes: CPU in < 3 min")
    p.add_argument("--device", default="auto")
    p.add_argument("--presets", nargs="+", default=["paper", "small"], choices=sorted(PRESETS))
    p.add_argument("--batch-sizes", nargs="+", type=int, default=None)
    p.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    p.add_argument("--steps", type=int, default=None, help="timed steps per measurement")
    p.add_argument("--repeats", type=int, default=None, help="measurements per setting; the fastest is kept")
    p.add_argument("--peak-tflops", type=float, default=None, help="device peak for the chosen dtype(s)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--compile", action="store_true", help="torch.compile the model first")
    p.add_argument(
        "--attention-dropouts",
        nargs="+",
        type=float,
        default=None,
        help="attention-weight dropout rates to compare in training (default: the preset's and 0)",
    )
    p.add_argument("--labels", type=int, default=N_LABELS, help="requests decoded together in inference")
    p.add_argument("--context", type=int, default=64, help="context tokens per star in inference")
    p.add_argument(
        "--groups",
        type=parse_groups,
        default=None,
        help="inference as a Predictor with context groups runs it: CONTEXT:LABELS per encoder pass, "
        "comma-separated (e.g. 64:5,63:2); overrides --context and --labels",
    )
    p.add_argument("--infer-only", action="store_true", help="inference only (no training steps)")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = p.parse_args(argv)

    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    gpu = device.type == "cuda"
    if args.batch_sizes:
        batches = args.batch_sizes
    elif args.quick:
        batches = [1024, 4096] if gpu else [64, 256]
    else:
        batches = [256, 1024, 4096, 16384] if gpu else [64, 256, 1024]
    steps = args.steps or (20 if gpu else (2 if args.quick else 4))
    warmup = 5 if gpu else 1
    repeats = args.repeats or (3 if gpu or not args.quick else 2)
    if gpu:
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 (peak table)
    desc = (
        torch.cuda.get_device_name(device)
        if gpu
        else f"{platform.processor() or 'CPU'} ({torch.get_num_threads()} threads)"
    )
    print(
        f"device: {device} {desc}; torch {torch.__version__}; {steps} steps, best of {repeats}, warm-up {warmup}"
    )

    peaks = {d: device_peak(device, d, args.peak_tflops) for d in args.dtypes}
    for d, (pk, how) in peaks.items():
        print(f"peak {d}: {pk / 1e12:.2f} TFLOP/s ({how})")
    values, errors = fake_training_set(max(batches) * 2, device)

    rows = []
    print(
        f"{'preset':<6} {'attnD':>5} {'dtype':<5} {'batch':>6} {'task':<10} {'stars/s':>10} {'TFLOP/s':>8} "
        f"{'% peak':>7} {'speed-up':>9}"
    )
    for preset in args.presets:
        cfg = PRESETS[preset]
        flops = forward_flops(cfg, n_context=args.context)
        groups = args.groups or [(args.context, args.labels)]
        infer = f"infer{sum(q for _, q in groups)}" + (f"x{len(groups)}" if len(groups) > 1 else "")
        infer_flops = sum(forward_flops(cfg, n_context=c).forward(q) for c, q in groups)
        per_star = {"train": flops.train_step(1), infer: infer_flops}
        print(
            f"# {preset}: forward FLOPs/star encoder {flops.encoder / 1e6:.1f} M + decoder K/V "
            f"{flops.decoder_kv / 1e6:.1f} M + {flops.per_request / 1e6:.1f} M per label; "
            f"train step {per_star['train'] / 1e6:.0f} M, inference ("
            + " + ".join(f"{q} labels on {c} context tokens" for c, q in groups)
            + f") {per_star[infer] / 1e6:.0f} M"
        )
        rates_ad = args.attention_dropouts or sorted(
            {cfg.dropout, cfg.attention_dropout_rate, 0.0}, reverse=True
        )
        base_rate: dict[tuple[str, int], float] = {}  # (dtype, batch) → training rate at rates_ad[0]
        for ad in rates_ad:
            torch.manual_seed(0)
            model = XPTransformer(dataclasses.replace(cfg, attention_dropout=ad)).to(device)
            n_params = model.n_parameters()
            run_model = torch.compile(model) if args.compile else model
            tasks = ("train", infer) if ad == rates_ad[0] else ("train",)
            if args.infer_only:
                tasks = (infer,) if ad == rates_ad[0] else ()
            for dtype, batch, task in itertools.product(args.dtypes, batches, tasks):
                try:
                    if task == "train":
                        rate = bench_train(
                            run_model, values, errors, batch, dtype, device, steps, warmup, repeats
                        )
                    else:
                        rate = bench_infer(
                            run_model,
                            batch,
                            dtype,
                            device,
                            steps * 2,
                            warmup,
                            repeats,
                            n_labels=args.labels,
                            n_context=args.context,
                            groups=args.groups,
                        )
                except torch.OutOfMemoryError:
                    print(f"{preset:<6} {ad:>5.2f} {dtype:<5} {batch:>6} {task:<10} out of memory")
                    torch.cuda.empty_cache()
                    continue
                achieved = rate * per_star[task]
                frac = achieved / peaks[dtype][0]
                speedup = ""
                if task == "train":
                    base = base_rate.setdefault((dtype, batch), rate)
                    speedup = f"{rate / base:>8.2f}x"
                rows.append(
                    {
                        "preset": preset,
                        "params": n_params,
                        "attention_dropout": ad,
                        "dtype": dtype,
                        "batch": batch,
                        "task": task,
                        "stars_per_s": rate,
                        "tflops": achieved / 1e12,
                        "fraction_of_peak": frac,
                        "train_speedup_vs_first_attention_dropout": rate / base if task == "train" else None,
                    }
                )
                print(
                    f"{preset:<6} {ad:>5.2f} {dtype:<5} {batch:>6} {task:<10} {rate:>10.0f} "
                    f"{achieved / 1e12:>8.3f} {100 * frac:>6.1f}% {speedup}",
                    flush=True,
                )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"device": desc, "peaks": {k: v[0] for k, v in peaks.items()}, "rows": rows}, indent=1)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
