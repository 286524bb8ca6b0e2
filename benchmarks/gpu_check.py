"""Everything a lent GPU should check, in one call (the device machine has torch, numpy, pandas, pyarrow,
pyyaml and safetensors, but no Ray, astropy, gaiaxpy or xgboost: this script needs none of them).

    # on the device machine, carrying the real training set (40 MB):
    #   run(command="python3 benchmarks/gpu_check.py --data runs/apogee_xp_dev.parquet --out $OUT",
    #       carry=["runs/apogee_xp_dev.parquet"], timeout_s=540)
    python benchmarks/gpu_check.py --data runs/apogee_xp_dev.parquet --out /tmp/gpu --device cpu --quick   # dry run here

Steps (each timed, each failure reported without stopping the others):

1. predictor: the bundled `apogee-xp` model on the real test split, CPU fp32 vs DEVICE fp32 vs DEVICE
   bf16: largest |Δ mean| / σ against CPU fp32 (fp32 ≲ 1e-3; bf16 ≲ 0.1, measured 0.08 on the CPU), robust σ against
   the APOGEE labels, and stars/s on the device.
2. training: the paper-size model (8.8 M parameters) on the real train split with the loop's AMP path
   (bf16 autocast where supported, else fp16 + GradScaler), `--epochs` epochs, then `--resume-epochs` more
   from its checkpoint (the resume path on the device); stars/s and validation σ per epoch; the
   checkpoint reloaded on the CPU must give the device's predictions.
3. fp16 + GradScaler for one epoch (the path for GPUs without bf16).
4. `bench_model.py --device DEVICE` (FLOPs per star, fraction of the device's peak), as a subprocess.

A short table is printed last; full logs and JSON go to --out.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from xpengine.datasets.schema import read_training_set  # noqa: E402
from xpengine.inference.predictor import Predictor  # noqa: E402

INPUTS = [f"bp{i}" for i in range(30)] + [f"rp{i}" for i in range(30)] + ["bprp", "jh", "jk"]
LABELS = ["teff", "logg", "m_h", "alpha_m"]


def robust_sigma(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(1.4826 * np.median(np.abs(x - np.median(x)))) if x.size else float("nan")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def check_predictor(data: str, device: torch.device, max_stars: int | None) -> dict:
    test = read_training_set(data, split="test")
    values = test.values[:max_stars] if max_stars else test.values
    truth = {lab: test.values[: len(values), test.vocabulary.index(lab)] for lab in LABELS}
    out: dict = {"n_stars": len(values)}
    ref = Predictor.load("apogee-xp", device="cpu", calibrate=False)
    names = ref.vocabulary.names
    cols = [test.vocabulary.index(n) if n in test.vocabulary else None for n in names]
    x = np.full((len(values), len(names)), np.nan, dtype=np.float32)
    for j, c in enumerate(cols):
        if c is not None:
            x[:, j] = values[:, c]
    base = ref.predict(x, request=LABELS, inputs=INPUTS)
    out["cpu_fp32_sigma"] = {lab: robust_sigma(base[lab] - truth[lab]) for lab in LABELS}
    for dtype in ("float32", "bfloat16"):
        p = Predictor.load("apogee-xp", device=str(device), dtype=dtype, calibrate=False)
        p.predict(x[:4096], request=LABELS, inputs=INPUTS)  # warm-up
        sync(device)
        t0 = time.perf_counter()
        r = p.predict(x, request=LABELS, inputs=INPUTS)
        sync(device)
        dt = time.perf_counter() - t0
        out[dtype] = {
            "stars_per_s": len(x) / dt,
            "max_abs_dmean_over_sigma": {
                lab: float(np.nanmax(np.abs(r[lab] - base[lab]) / base[f"{lab}_error"])) for lab in LABELS
            },
            "sigma_vs_truth": {lab: robust_sigma(r[lab] - truth[lab]) for lab in LABELS},
        }
    return out


def check_training(
    data: str, device: torch.device, out_dir: Path, epochs: int, more: int, quick: bool
) -> dict:
    from xpengine.model.checkpoint import load_checkpoint
    from xpengine.train.config import TrainConfig
    from xpengine.train.loop import train

    train_arrays = read_training_set(data, split="train")
    val_arrays = read_training_set(data, split="val")
    base = {
        "model": "tiny" if quick else "paper",
        "batch_size": 1024,
        "lr": 1e-3,
        "scheduler_t0": epochs + more,
        "eta_min": 1e-6,
        "n_requests": 4,
        "requestable": LABELS,
        "focus_inputs": INPUTS,
        "focus_fraction": 0.8,
        "focus_max_masked": 30,
        "val_labels": LABELS,
        "val_every": 1,
        "checkpoint_every": 1,
        "device": str(device),
        "precision": "auto",
    }
    res: dict = {}
    run = out_dir / "train_paper"
    r1 = train(TrainConfig.from_dict({**base, "epochs": epochs}), train_arrays, val_arrays, output_dir=run)
    r2 = train(
        TrainConfig.from_dict({**base, "epochs": epochs + more}),
        train_arrays,
        val_arrays,
        output_dir=run,
        resume_from=run,
    )
    res["history"] = r1.history + r2.history
    res["stars_per_s"] = [h["train_stars_per_s"] for h in res["history"]]
    res["val_sigma_last"] = {lab: res["history"][-1].get(f"val_sigma_{lab}") for lab in LABELS}
    # The checkpoint on the CPU must predict what the device predicts (fp32 both).
    dev = Predictor.load(r2.model_dir, device=str(device), dtype="float32", calibrate=False)
    cpu = Predictor.load(r2.model_dir, device="cpu", dtype="float32", calibrate=False)
    x = val_arrays.values[:2000]
    a = dev.predict(x, request=LABELS, inputs=INPUTS)
    b = cpu.predict(x, request=LABELS, inputs=INPUTS)
    res["cpu_vs_device_max_dmean_over_sigma"] = {
        lab: float(np.nanmax(np.abs(a[lab] - b[lab]) / b[f"{lab}_error"])) for lab in LABELS
    }
    res["n_parameters"] = load_checkpoint(r2.model_dir).provenance.get("n_parameters")
    # fp16 + GradScaler, one epoch.
    r3 = train(
        TrainConfig.from_dict(
            {**base, "epochs": 1, "precision": "fp16" if device.type == "cuda" else "fp32"}
        ),
        train_arrays,
        val_arrays,
        output_dir=out_dir / "train_fp16",
    )
    res["fp16_epoch"] = r3.history[-1]
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="training-schema Parquet of the APOGEE x XP dev split")
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--resume-epochs", type=int, default=4)
    ap.add_argument("--quick", action="store_true", help="tiny model, 1+1 epochs, 2000 test stars (dry run)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device)
    if args.quick:
        args.epochs, args.resume_epochs = 1, 1
    report: dict = {
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
    }
    steps = {
        "predictor": lambda: check_predictor(args.data, device, 2000 if args.quick else None),
        "training": lambda: check_training(
            args.data, device, out, args.epochs, args.resume_epochs, args.quick
        ),
    }
    for name, fn in steps.items():
        t0 = time.perf_counter()
        try:
            report[name] = fn()
            report[name]["wall_s"] = time.perf_counter() - t0
        except Exception:  # report and go on: one call must bring back every result it can
            report[name] = {"error": traceback.format_exc()}
            print(report[name]["error"], file=sys.stderr)
    bench = [sys.executable, str(ROOT / "benchmarks" / "bench_model.py"), "--device", str(device)]
    bench += ["--quick", "--presets", "tiny"] if args.quick else ["--json", str(out / "bench_model.json")]
    t0 = time.perf_counter()
    proc = subprocess.run(bench, capture_output=True, text=True)
    (out / "bench_model.txt").write_text(proc.stdout + proc.stderr)
    report["bench_model"] = {"rc": proc.returncode, "wall_s": time.perf_counter() - t0}
    (out / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str))

    print(proc.stdout[-3000:])
    print(f"# {report['device']}, torch {report['torch']}")
    pr = report.get("predictor", {})
    if "error" not in pr:
        for dt in ("float32", "bfloat16"):
            d = pr[dt]
            print(
                f"predictor {dt:<8} {d['stars_per_s']:>10.0f} stars/s  max|Δμ|/σ vs CPU "
                + " ".join(f"{k} {v:.2g}" for k, v in d["max_abs_dmean_over_sigma"].items())
                + "  σ: "
                + " ".join(f"{k} {v:.3g}" for k, v in d["sigma_vs_truth"].items())
            )
    tr = report.get("training", {})
    if "error" not in tr:
        print(
            f"training {tr['n_parameters']:,} params: stars/s per epoch {[round(s) for s in tr['stars_per_s']]}"
        )
        print(f"  val σ after {len(tr['history'])} epochs: {tr['val_sigma_last']}")
        print(f"  CPU vs device checkpoint max|Δμ|/σ: {tr['cpu_vs_device_max_dmean_over_sigma']}")
        print(
            f"  fp16 epoch: loss {tr['fp16_epoch']['train_loss']:.3f}, {tr['fp16_epoch']['train_stars_per_s']:.0f} stars/s"
        )
    for name in ("predictor", "training"):
        if "error" in report.get(name, {}):
            print(f"{name}: FAILED (see {out / 'gpu_check.json'})")
    print(f"bench_model rc {proc.returncode}")
    return 0 if all("error" not in report.get(n, {}) for n in steps) and proc.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
