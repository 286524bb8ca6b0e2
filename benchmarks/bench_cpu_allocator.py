"""CPU training steps with and without `hold_freed_memory` (glibc mallopt), side by side in one run.

    python benchmarks/bench_cpu_allocator.py [--batch 1024] [--pairs 2] [--steps 4]

Each variant runs in a fresh process (the setting is process-wide), alternating, `--pairs` times: the
published architecture (`configs/model/paper.yaml` without attention-weight dropout, as gaia-xp v5), random
tokens, 4 requests per star, a forward-backward-AdamW step timed `--steps` times on the torch threads the
machine gives; the best step after the first counts. Prints stars/s per process and the ratio per pair.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import textwrap

STEP = textwrap.dedent(
    """
    import dataclasses, sys, time, torch
    from xpengine.model.transformer import PRESETS, XPTransformer
    from xpengine.train.loop import hold_freed_memory

    hold, batch, steps = sys.argv[1] == "1", int(sys.argv[2]), int(sys.argv[3])
    if hold:
        assert hold_freed_memory()
    # the published architecture without attention-weight dropout, gaia-xp's vocabulary (121 tokens)
    cfg = dataclasses.replace(PRESETS["paper"], n_tokens=121, attention_dropout=0.0)
    torch.manual_seed(0)
    model = XPTransformer(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    ids = torch.randint(0, 121, (batch, 64))
    vals = torch.randn(batch, 64)
    req = torch.randint(0, 121, (batch, 4))
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        out = model(ids, vals, req)
        loss = (out.mean ** 2).mean() + out.logvar.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    print(batch / min(times[1:]))
    """
)


def run(hold: bool, batch: int, steps: int) -> float:
    out = subprocess.run(
        [sys.executable, "-c", STEP, "1" if hold else "0", str(batch), str(steps)],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--pairs", type=int, default=2)
    ap.add_argument("--steps", type=int, default=4)
    args = ap.parse_args(argv)
    if args.steps < 2:
        ap.error("--steps must be at least 2 (the first step is not counted)")
    print(f"batch {args.batch}, {args.steps} steps per process (best after the first), {args.pairs} pairs")
    for i in range(args.pairs):
        plain = run(False, args.batch, args.steps)
        held = run(True, args.batch, args.steps)
        print(
            f"pair {i + 1}: default allocator {plain:.1f} stars/s, hold_freed_memory {held:.1f} stars/s, "
            f"ratio {held / plain:.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
