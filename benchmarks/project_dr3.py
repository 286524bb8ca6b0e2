"""Stage-by-stage projection of the catalogue job to all of Gaia DR3 (219,197,643 XP sources), from rates
measured on this machine.

    python benchmarks/project_dr3.py --json benchmarks/results/project_dr3.json \\
        --markdown benchmarks/results/project_dr3.md [--gpu-fraction 0.05] [--gpu-measured MODEL=STARS_PER_S ...]

Measured here, one thread (per-core rates), on the bundled simulated sky's real-format bulk files
(`xpengine/data/sky`: gzip ECSV exactly as the Gaia archive serves them), best of `--repeats`:

1. inflate + parse: `io.iter_xp_continuous` over a bulk `XpContinuousMeanSpectrum_*.csv.gz` and
   `io.read_gaia_source` over its `GaiaSource_*.csv.gz` partner (per source);
2. join: `io.join_sources` of the two;
3. tokens: `build_tokens` (XP projection, G-flux normalisation, relevancy, colours, parallax);
4. model: the bundled model (`--model`) and the paper preset (random weights: speed does not depend on
   them), forward pass on the standard input (63 tokens), the catalogue's labels, batch 1024, fp32;
5. compact input: `io.read_model_inputs` of the same partition converted once with
   `io.write_model_inputs` (replaces 1 and 2 for repeated runs);
6. isochrones (since session 20): `isochrone_fit.fit_isochrones` on the partition's stars outside the
   model's mass/age domain by the model's own Teff and logg (the catalogue's predicted rule: logg > 3.5 or
   Teff outside 3500–5500 K), with their predicted σ and, where ϖ/σ_ϖ ≥ 5, M_G from the parallax (no
   extinction, σ 0.1 mag added for it), and for the others the Galactic distance prior (since session 21;
   its table built from G and (l, b) inside the timed step), and the colour bound of the star's BP−RP
   token (since session 22); its per-source cost is the time per fit ×
   the fraction of stars fitted (on this partition). It runs on the CPU cores on every machine, beside the read and tokens.

Projection, per machine: CPU stages share the cores, so a CPU machine's wall time is N × (sum of the
per-source CPU costs) / cores (the job overlaps stages, but they compete for the same cores). On a GPU node
the CPU stages run on its cores while the GPU runs the model: wall = max(CPU part, GPU part), and the
larger names the bottleneck. GPU model rate = peak bf16 FLOP/s × `--gpu-fraction` / FLOPs per star
(`xpengine.model.cost`), unless `--gpu-measured` gives that model's rate measured by
`benchmarks/gpu_check.py` (an H200 computes at an H100's rates: the same chip, more memory).
Perfect scaling with cores is assumed (the job runs one task per partition; DR3 has 3,386 bulk
partitions), and I/O bandwidth is assumed not to limit (≈ 1.2 kB of compressed text per source, so
1 GB/s of storage serves ≈ 800,000 sources/s).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from check_report import check_parser, command_line, run_header, write_outputs  # noqa: E402

N_DR3 = 219_197_643
SKY = ROOT / "xpengine" / "data" / "sky"
H100_BF16_TFLOPS = 989.0  # dense, SXM data sheet (benchmarks/bench_model.py KNOWN_PEAKS)
MACHINES = (
    {"name": "this box", "cores": None, "gpu": False},
    {"name": "64-core CPU node", "cores": 64, "gpu": False},
    {"name": "GPU node (16 cores + 1 H100)", "cores": 16, "gpu": True},
)


def _best(fn: Callable[[], Any], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def measure(model_name: str, repeats: int, partition: str) -> dict[str, Any]:
    """Seconds per source of each stage, one thread."""
    import numpy as np
    import torch

    from xpengine import io
    from xpengine.features import build_tokens
    from xpengine.inference.predictor import Predictor
    from xpengine.model.cost import forward_flops
    from xpengine.model.transformer import PRESETS, XPTransformer
    from xpengine.spectra.representation import token_representation

    torch.set_num_threads(1)
    xp_file = SKY / f"XpContinuousMeanSpectrum_{partition}.csv.gz"
    gs_file = SKY / f"GaiaSource_{partition}.csv.gz"
    xp = io.read_xp_continuous(str(xp_file))
    n = xp.num_rows
    gaia = io.read_gaia_source(str(gs_file))
    joined = io.join_sources(xp, gaia)
    predictor = Predictor.load(model_name, device="cpu")
    vocab = predictor.vocabulary
    rep = token_representation()
    out: dict[str, Any] = {"n_sources": n, "partition": partition}
    out["parse_xp"] = _best(lambda: io.read_xp_continuous(str(xp_file)), repeats) / n
    out["parse_gaia_source"] = _best(lambda: io.read_gaia_source(str(gs_file)), repeats) / n
    out["join"] = _best(lambda: io.join_sources(xp, gaia), repeats) / n
    out["tokens"] = _best(lambda: build_tokens(joined, vocab, representation=rep), repeats) / n
    tok = build_tokens(joined, vocab, representation=rep)
    labels = [
        t for t in ("teff", "logg", "m_h", "alpha_m", "mass", "ln_age") if t in predictor.learned.outputs
    ]
    inputs = list(predictor.default_inputs)
    values = np.asarray(tok.values, dtype=np.float32)
    out["model_labels"] = labels
    out["model"] = {}
    out["model"][model_name] = {
        "s_per_source": _best(
            lambda: predictor.predict(values, request=labels, inputs=inputs, batch_size=1024), repeats
        )
        / n,
        # one encoder pass per context group (`Predictor.context_groups`: gaia-xp v5 asks [M/H] and
        # [α/M] without the pseudo-luminosity, the rest with it)
        "flops_per_source": sum(
            forward_flops(predictor.checkpoint.model_config, ctx).forward(q)
            for ctx, q in predictor.encoder_passes(labels, inputs)
        ),
        "encoder_passes": len(predictor.encoder_passes(labels, inputs)),
    }
    paper_cfg = PRESETS["paper"]
    paper = XPTransformer(paper_cfg).eval()
    n_paper = min(n, 512)
    ids = torch.arange(1, len(inputs) + 1).expand(n_paper, -1) % paper_cfg.n_tokens + 1
    vals = torch.randn(n_paper, len(inputs))
    req = torch.arange(1, len(labels) + 1).expand(n_paper, -1)

    def run_paper() -> None:
        with torch.inference_mode():
            paper(ids, vals, req)

    out["model"]["paper preset"] = {
        "s_per_source": _best(run_paper, repeats) / n_paper,
        "flops_per_source": forward_flops(paper_cfg, len(inputs)).forward(len(labels)),
    }
    out.update(_measure_isochrones(predictor, values, joined, repeats, tok))
    with tempfile.TemporaryDirectory() as tmp:
        compact = Path(tmp) / f"{partition}.parquet"
        io.write_model_inputs(joined, str(compact))
        out["compact_read"] = _best(lambda: io.read_model_inputs(str(compact)), repeats) / n
        out["compact_bytes_per_source"] = compact.stat().st_size / n
    out["bulk_bytes_per_source"] = (xp_file.stat().st_size + gs_file.stat().st_size) / n
    return out


def _measure_isochrones(predictor: Any, values: Any, joined: Any, repeats: int, tok: Any) -> dict[str, Any]:
    """Seconds per fitted star of the isochrone step and the fraction of the partition's stars fitted
    (module docstring, stage 6)."""
    import numpy as np

    from xpengine.catalog.sky import icrs_to_galactic
    from xpengine.inference.galactic_prior import log_weight_table
    from xpengine.inference.isochrone_fit import fit_isochrones, load_fit_grid

    grid = load_fit_grid()
    inputs = list(predictor.default_inputs)
    pred = predictor.predict(values, request=["teff", "logg", "m_h"], inputs=inputs, batch_size=1024)
    t, lg = pred["teff"], pred["logg"]
    outside = (lg > 3.5) | (t < 3500.0) | (t > 5500.0)
    plx = joined.column("parallax").to_numpy(zero_copy_only=False).astype(np.float64)
    eplx = joined.column("parallax_error").to_numpy(zero_copy_only=False).astype(np.float64)
    g = joined.column("phot_g_mean_mag").to_numpy(zero_copy_only=False).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        good = plx / eplx >= 5.0
        abs_g = np.where(good, g + 5.0 * np.log10(plx / 100.0), np.nan)
        abs_g_err = np.hypot(5.0 / np.log(10.0) * eplx / plx, 0.1)
    rows = np.flatnonzero(outside)
    args = [pred[k][rows] for k in ("teff", "teff_error", "logg", "logg_error", "m_h", "m_h_error")]
    ra, dec = (joined.column(c).to_numpy(zero_copy_only=False).astype(np.float64) for c in ("ra", "dec"))
    l_deg, b_deg = icrs_to_galactic(ra[rows], dec[rows])
    g0 = np.where(np.isfinite(abs_g[rows]), np.nan, g[rows])  # the prior: stars without a parallax M_G

    j = predictor.vocabulary.index("bprp")  # the colour bound's observed BP−RP token (since session 22)
    bound = {
        "bp_rp": tok.values[rows, j].astype(np.float64),
        "bp_rp_error": tok.errors[rows, j].astype(np.float64),
    }

    def fit():  # the catalogue's step: the distance-prior table (since session 21), then the fit
        prior = log_weight_table(g0, l_deg, b_deg)
        return fit_isochrones(grid, *args, abs_g[rows], abs_g_err[rows], distance_prior=prior, **bound)

    s_per_fit = _best(fit, repeats) / max(rows.size, 1)
    frac = rows.size / len(t)
    return {
        "isochrones": s_per_fit * frac,
        "isochrone_s_per_fit": s_per_fit,
        "isochrone_fraction": frac,
        "isochrone_fraction_with_m_g": float(np.isfinite(abs_g[rows]).mean()) if rows.size else 0.0,
    }


def project(
    m: dict[str, Any], cores_here: int, gpu_fraction: float, gpu_measured: dict[str, float] | None
) -> list[dict[str, Any]]:
    """gpu_measured: model name (as in m["model"]) → sources/s measured on the GPU; a model missing
    from it gets the assumed fraction of the peak."""
    gpu_measured = gpu_measured or {}
    rows = []
    for machine in MACHINES:
        cores = machine["cores"] or cores_here
        for inputs in ("bulk .csv.gz", "compact Parquet"):
            read = (
                m["parse_xp"] + m["parse_gaia_source"] + m["join"]
                if inputs == "bulk .csv.gz"
                else m["compact_read"]
            )
            for model, mm in m["model"].items():
                cpu_stages = {
                    "read" if inputs == "bulk .csv.gz" else "compact read": read,
                    "tokens": m["tokens"],
                    **({"isochrones": m["isochrones"]} if "isochrones" in m else {}),
                }
                if machine["gpu"]:
                    gpu_rate = gpu_measured.get(model) or (
                        H100_BF16_TFLOPS * 1e12 * gpu_fraction / mm["flops_per_source"]
                    )
                    cpu_wall = N_DR3 * sum(cpu_stages.values()) / cores
                    gpu_wall = N_DR3 / gpu_rate
                    wall = max(cpu_wall, gpu_wall)
                    bottleneck = (
                        f"GPU model ({gpu_wall / 3600:.1f} h)"
                        if gpu_wall >= cpu_wall
                        else f"CPU {max(cpu_stages, key=cpu_stages.get)} ({cpu_wall / 3600:.1f} h of CPU stages)"
                    )
                else:
                    stages = {**cpu_stages, "model": mm["s_per_source"]}
                    wall = N_DR3 * sum(stages.values()) / cores
                    top = max(stages, key=stages.get)
                    bottleneck = f"{top} ({stages[top] / sum(stages.values()):.0%} of the CPU time)"
                rows.append(
                    {
                        "machine": machine["name"],
                        "cores": cores,
                        "inputs": inputs,
                        "model": model,
                        "wall_hours": wall / 3600,
                        "sources_per_s": N_DR3 / wall,
                        "bottleneck": bottleneck,
                    }
                )
    return rows


def render(result: dict[str, Any]) -> str:
    m = result["measured"]
    us = lambda s: f"{s * 1e6:.1f} µs"  # noqa: E731
    lines = [
        "# Projection to all of Gaia DR3 (219,197,643 sources)",
        "",
        command_line(result),
        "",
        f"Per-core costs measured here (one thread, {m['n_sources']} sources of bulk partition {m['partition']}, best of {result['repeats']}):",
        "",
        "| stage | per source | sources/s per core |",
        "|---|---|---|",
    ]
    for name in ("parse_xp", "parse_gaia_source", "join", "tokens", "compact_read"):
        lines.append(f"| {name} | {us(m[name])} | {1 / m[name]:,.0f} |")
    if "isochrones" in m:
        lines.append(
            f"| isochrones ({m['isochrone_fraction']:.0%} of the sources fitted, {m['isochrone_fraction_with_m_g']:.0%} "
            f"of them with M_G; {us(m['isochrone_s_per_fit'])} per fit) | {us(m['isochrones'])} | {1 / m['isochrones']:,.0f} |"
        )
    for model, mm in m["model"].items():
        lines.append(
            f"| model: {model} ({mm['flops_per_source'] / 1e6:.1f} MFLOP/source, {len(m['model_labels'])} labels) | "
            f"{us(mm['s_per_source'])} | {1 / mm['s_per_source']:,.0f} |"
        )
    lines += [
        "",
        f"Bytes per source: bulk gzip text {m['bulk_bytes_per_source']:.0f}, compact Parquet {m['compact_bytes_per_source']:.0f}.",
        f"GPU model rate: {result['gpu_assumption']}.",
        "",
        "| machine | inputs | model | wall time | sources/s | bottleneck |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["projection"]:
        h = r["wall_hours"]
        wall = f"{h:.1f} h" if h < 48 else f"{h / 24:.1f} d"
        lines.append(
            f"| {r['machine']} | {r['inputs']} | {r['model']} | {wall} | {r['sources_per_s']:,.0f} | {r['bottleneck']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = check_parser(__doc__)
    ap.add_argument("--model", default="gaia-xp")
    ap.add_argument("--partition", default="000000-003111", help="bundled-sky partition to time")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--gpu-fraction",
        type=float,
        default=0.05,
        help="fraction of the H100's bf16 peak (an H200 computes at the same rates): 0.0352 was measured "
        "for the paper preset's bf16 inference on an H200 (gpu_check.py, session 9)",
    )
    ap.add_argument(
        "--gpu-measured",
        nargs="+",
        default=[],
        metavar="MODEL=RATE",
        help="model sources/s measured on the GPU (gpu_check.py), per model of the table: "
        "'gaia-xp=250000' 'paper preset=90000'; the others keep the assumed fraction",
    )
    args = ap.parse_args(argv)
    gpu_measured: dict[str, float] = {}
    for item in args.gpu_measured:
        name, sep, rate = item.rpartition("=")
        if not sep:
            ap.error(f"--gpu-measured {item!r}: expected MODEL=RATE")
        gpu_measured[name] = float(rate)
    measured = measure(args.model, args.repeats, args.partition)
    unknown = sorted(set(gpu_measured) - set(measured["model"]))
    if unknown:
        ap.error(f"--gpu-measured: no model {unknown} in the table (models: {sorted(measured['model'])})")
    cores = os.cpu_count() or 1
    result = {
        **run_header("benchmarks/project_dr3.py", argv, load=True),
        "repeats": args.repeats,
        "measured": measured,
        "gpu_assumption": "; ".join(
            [f"{k}: measured {v:,.0f} sources/s" for k, v in gpu_measured.items()]
            + [
                f"{k}: {args.gpu_fraction:.2%} of the H100's {H100_BF16_TFLOPS:.0f} TFLOP/s bf16 peak (--gpu-fraction)"
                for k in measured["model"]
                if k not in gpu_measured
            ]
        ),
        "projection": project(measured, cores, args.gpu_fraction, gpu_measured),
    }
    write_outputs(result, args.json, args.markdown, render(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
