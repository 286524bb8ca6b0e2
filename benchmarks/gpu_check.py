"""Everything a lent GPU should check, in one call (the device machine has torch, numpy, pandas, pyarrow,
pyyaml and safetensors, but no Ray, astropy, gaiaxpy or xgboost: this script needs none of them).

    # on the device machine: `bash benchmarks/gpu_check.sh prepare` here builds runs/gpu (the real training
    # set packed, 7 MB; the isochrone grid cached here, 13 MB: steps 5-6 give the stars outside the mass/age
    # domain their isochrone mass and age, and the device has no MIST files; the gaiadr3-zeropoint package
    # the read stage needs), then
    #   run(command="bash benchmarks/gpu_check.sh run", carry=["runs/gpu"], timeout_s=590)
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
5. the job's GPU configuration without Ray (`configs/infer/gpu.yaml`): the read stage on the bundled sky,
   then the job's predictor actor on DEVICE (its batch size from the measured table or calibrated at
   start) in bf16 and fp32 against a CPU fp32 actor: values, flags and stars/s on `chunk_rows` batches
   (the model-stage rate that `project_dr3.py --gpu-measured` takes).
6. the warm pool's accelerator path without Ray (`warm_pool.PoolWorker`): its next partition read on a
   thread of its own while the model runs, two partitions in flight; rows against a CPU worker's, and
   stars/s with and without the overlapped reads.
7. torch.compile on inference: `bench_model.py --infer-only` without and with `--compile`, the job's
   small preset, bf16, 7 labels, batches 8192 and 32768 (skipped by --quick or --no-compile).

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


SKY_PARTS = ("000000-003111", "245760-248871", "688128-691239")


def _stack(chunks: list[dict], n: int | None = None) -> dict:
    """The chunks as one batch; with n, the rows repeated up to n (a throughput batch)."""
    out = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
    if n is None:
        return out
    reps = -(-n // len(out["source_id"]))
    return {k: np.concatenate([v] * reps)[:n] for k, v in out.items()}


def _sky_rows() -> list[dict]:
    """The bundled sky's partitions as the job's partition rows (`PartitionTask.to_row` plus its index)."""
    from xpengine.pipeline.stages import PartitionTask

    sky = ROOT / "xpengine" / "data" / "sky"
    rows = []
    for i, part in enumerate(SKY_PARTS):
        lo, hi = (int(x) for x in part.split("-"))
        task = PartitionTask(
            name=part,
            xp=str(sky / f"XpContinuousMeanSpectrum_{part}.csv.gz"),
            gaia=str(sky / f"GaiaSource_{part}.csv.gz"),
            hpx8_range=(lo, hi),
        )
        rows.append({**task.to_row(), "index": i})
    return rows


def _device_pool(cfg, dev: str, dtype: str, batch: int | None):
    """The pool plan of one predictor on `dev` with the configuration's CPUs per actor."""
    from xpengine.pipeline.tuning import PoolPlan

    return PoolPlan(
        device=dev,
        dtype=dtype,
        batch_size=batch,
        gpus_per_actor=1.0 if dev != "cpu" else 0.0,
        cpus_per_actor=float(cfg.resources.cpus_per_actor or 1),
    )


def check_job_stage(device: torch.device, quick: bool) -> dict:
    """The job's GPU configuration (`configs/infer/gpu.yaml`) without Ray: its read stage
    (`stages.featurize_partition`) on the bundled sky's three partitions, then its predictor actor
    (`predictor_stage.CatalogPredictor`, batch size from the measured table or calibrated at actor start) on
    DEVICE in the YAML's dtype and in fp32, against a CPU fp32 actor: the catalogue's values and flags,
    and its stars/s on batches of `chunk_rows` rows, as Ray hands them to a GPU actor."""
    from xpengine.model.metadata import VOCABULARY_FILE, resolve_model_path
    from xpengine.pipeline.config import load_inference_config, resolve_inputs, resolve_labels
    from xpengine.pipeline.predictor_stage import CatalogPredictor
    from xpengine.pipeline.stages import featurize_partition

    cfg = load_inference_config(ROOT / "configs" / "infer" / "gpu.yaml")
    labels, inputs = resolve_labels(cfg), resolve_inputs(cfg)
    vocab = (Path(resolve_model_path(cfg.model)) / VOCABULARY_FILE).read_text()  # as the job hands it on
    chunks: list[dict] = []
    t0 = time.perf_counter()
    for r in _sky_rows():
        row = {k: np.array([v]) for k, v in r.items()}
        chunks += list(featurize_partition(row, vocabulary_json=vocab, chunk_rows=cfg.resources.chunk_rows))
    real = _stack(chunks)
    n_real = len(real["source_id"])
    out: dict = {
        "model": cfg.model,
        "labels": labels,
        "n_sky_sources": n_real,
        "read_s": time.perf_counter() - t0,
    }

    def actor(dev: str, dtype: str, batch: int | None) -> CatalogPredictor:
        return CatalogPredictor(
            cfg.model,
            labels,
            pool=_device_pool(cfg, dev, dtype, batch),
            flag_policy=cfg.flags,
            inputs=inputs,
            sim_to_real=cfg.sim_to_real_sigma,
        )

    ref = actor("cpu", "float32", 1024)(dict(real))
    rows = cfg.resources.chunk_rows
    n_timed = 4096 if quick else 32 * rows
    big = _stack(chunks, n_timed)
    for dtype in dict.fromkeys([cfg.resources.dtype, "float32"]):
        t1 = time.perf_counter()
        a = actor(str(device), dtype, None)
        res: dict = {
            "actor_start_s": time.perf_counter() - t1,
            "startup": a.startup,
            "setting": a.setting.to_dict(),
        }
        got = a(dict(real))
        res["max_abs_dmean_over_sigma"] = {
            lab: float(np.nanmax(np.abs(got[lab] - ref[lab]) / ref[f"{lab}_error"]))
            for lab in labels
            if f"{lab}_error" in ref
        }
        res["flags_equal_fraction"] = float(np.mean(got["flags"] == ref["flags"]))
        sync(device)
        t1 = time.perf_counter()
        model_s = 0.0
        for s in range(0, n_timed, rows):
            a({k: v[s : s + rows] for k, v in big.items()})
            model_s += a._model_s
        sync(device)
        dt = time.perf_counter() - t1
        res["stars_per_s"] = n_timed / dt
        res["model_share"] = model_s / dt
        res["n_timed"] = n_timed
        out[dtype] = res
    return out


def check_warm_pool(device: torch.device, quick: bool) -> dict:
    """The warm pool's accelerator path without Ray (`warm_pool.PoolWorker`, plain Python): one worker on
    DEVICE with the GPU configuration (`configs/infer/gpu.yaml`), which reads its next partition on a
    thread of its own while the model runs, driven as Ray drives the threaded actor (two partitions in
    flight) over the bundled sky's partitions, `rounds` times over. Its rows against a CPU fp32 worker's
    (max |Δμ|/σ per label, equal flags), and stars/s with the overlapped reads and without them (the read
    thread removed, so each call reads on the model thread)."""
    from concurrent.futures import ThreadPoolExecutor

    from xpengine.model.metadata import VOCABULARY_FILE, resolve_model_path
    from xpengine.pipeline.bookkeeping import Ledger
    from xpengine.pipeline.config import load_inference_config, resolve_inputs, resolve_labels
    from xpengine.pipeline.warm_pool import PoolWorker

    cfg = load_inference_config(ROOT / "configs" / "infer" / "gpu.yaml")
    labels, inputs = resolve_labels(cfg), resolve_inputs(cfg)
    featurize = {
        "vocabulary_json": (Path(resolve_model_path(cfg.model)) / VOCABULARY_FILE).read_text(),
        "chunk_rows": cfg.resources.chunk_rows,
        "tmass": None,
        "ebv": None,
    }
    rows = _sky_rows()

    def worker(dev: str, dtype: str, batch: int | None) -> PoolWorker:
        return PoolWorker(
            "gpu-check",
            cfg.model,
            labels,
            pool=_device_pool(cfg, dev, dtype, batch),
            flag_policy=cfg.flags,
            inputs=inputs,
            idle_s=None,
            sim_to_real=cfg.sim_to_real_sigma,
        )

    def joined(batches: list[dict]) -> dict:
        out = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
        order = np.argsort(out["source_id"], kind="stable")
        return {k: v[order] for k, v in out.items()}

    ref_worker = worker("cpu", "float32", 1024)
    ref = [joined(ref_worker.run(r, featurize, Ledger())) for r in rows]
    t0 = time.perf_counter()
    w = worker(str(device), cfg.resources.dtype, None)
    out: dict = {
        "model": cfg.model,
        "dtype": cfg.resources.dtype,
        "worker_start_s": time.perf_counter() - t0,
        "overlap_reads": w.overlap_reads,
        "setting": w.predictor.setting.to_dict(),
    }
    rounds = 1 if quick else 8
    work = [rows[i % len(rows)] for i in range(rounds * len(rows))]
    n_stars = sum(len(r["source_id"]) for r in ref) * rounds

    def timed(label: str) -> list[list[dict]]:
        ledger = Ledger()
        sync(device)
        t1 = time.perf_counter()
        with ThreadPoolExecutor(2) as calls:  # two partitions in flight, as the driver keeps them
            results = list(calls.map(lambda r: w.run(r, featurize, ledger), work))
        sync(device)
        dt = time.perf_counter() - t1
        out[label] = {"stars_per_s": n_stars / dt, "wall_s": dt, "partitions": len(work)}
        return results

    got = timed("overlapped" if w.overlap_reads else "reads_on_model_thread")
    first = [joined(b) for b in got[: len(rows)]]
    out["max_abs_dmean_over_sigma"] = {
        lab: float(
            max(
                np.nanmax(np.abs(g[lab] - r[lab]) / r[f"{lab}_error"])
                for g, r in zip(first, ref, strict=True)
            )
        )
        for lab in labels
        if f"{lab}_error" in ref[0]
    }
    out["flags_equal_fraction"] = float(
        np.mean(np.concatenate([g["flags"] == r["flags"] for g, r in zip(first, ref, strict=True)]))
    )
    out["source_ids_equal"] = all(
        np.array_equal(g["source_id"], r["source_id"]) for g, r in zip(first, ref, strict=True)
    )
    if w.overlap_reads:
        w._read_thread = None  # the same worker, each call reading on the model thread
        timed("reads_on_model_thread")
        out["overlap_speedup"] = (
            out["overlapped"]["stars_per_s"] / out["reads_on_model_thread"]["stars_per_s"]
        )
    return out


def check_training(
    data: str, device: torch.device, out_dir: Path, epochs: int, more: int, quick: bool, lr: float
) -> dict:
    from xpengine.model.checkpoint import load_checkpoint
    from xpengine.train.config import TrainConfig
    from xpengine.train.loop import train

    train_arrays = read_training_set(data, split="train")
    val_arrays = read_training_set(data, split="val")
    base = {
        "model": "tiny" if quick else "paper",
        "batch_size": 1024,
        "lr": lr,
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


def _run(cmd: list[str], timeout: float | None) -> tuple[str, int | str]:
    """A subprocess's output and return code ("timeout" when it ran past `timeout` seconds)."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        return proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as exc:
        partial = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout
        return f"timed out after {timeout} s\n{partial or ''}", "timeout"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="training-schema Parquet of the APOGEE x XP dev split")
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--resume-epochs", type=int, default=4)
    ap.add_argument(
        "--steps",
        nargs="+",
        choices=["predictor", "job_stage", "warm_pool", "training", "bench_model", "compile"],
        help="run only these steps (default: all)",
    )
    ap.add_argument("--lr", type=float, default=3e-4, help="training step's learning rate")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile inference timing")
    ap.add_argument("--quick", action="store_true", help="tiny model, 1+1 epochs, 2000 test stars (dry run)")
    ap.add_argument(
        "--bench-timeout",
        type=float,
        default=240.0,
        help="seconds for bench_model.py (its output so far is kept)",
    )
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
    # the never-measured paths first (the job's GPU actor with its torch isochrone fit, the warm pool), so
    # that a call cut short still brings them back; the report is written after every step
    steps = {
        "job_stage": lambda: check_job_stage(device, args.quick),
        "warm_pool": lambda: check_warm_pool(device, args.quick),
        "predictor": lambda: check_predictor(args.data, device, 2000 if args.quick else None),
        "training": lambda: check_training(
            args.data, device, out, args.epochs, args.resume_epochs, args.quick, args.lr
        ),
    }
    if args.steps:
        steps = {k: v for k, v in steps.items() if k in args.steps}
    for name, fn in steps.items():
        t0 = time.perf_counter()
        try:
            report[name] = fn()
            report[name]["wall_s"] = time.perf_counter() - t0
        except Exception:  # report and go on: one call must bring back every result it can
            report[name] = {"error": traceback.format_exc()}
            print(report[name]["error"], file=sys.stderr)
        (out / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str))
        print(f"step {name} done in {time.perf_counter() - t0:.1f} s", flush=True)
    # bench_model and the compile timing: always, unless --steps names others only
    wanted = set(args.steps or ["bench_model", "compile"])
    bench_text, bench_rc = "", 0
    if "bench_model" in wanted:
        bench = [sys.executable, str(ROOT / "benchmarks" / "bench_model.py"), "--device", str(device)]
        bench += ["--quick", "--presets", "tiny"] if args.quick else ["--json", str(out / "bench_model.json")]
        t0 = time.perf_counter()
        bench_text, bench_rc = _run(bench, args.bench_timeout)
        (out / "bench_model.txt").write_text(bench_text)
        report["bench_model"] = {"rc": bench_rc, "wall_s": time.perf_counter() - t0}
        (out / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str))
    if "compile" in wanted and not args.quick and not args.no_compile:
        # torch.compile on the inference path (issue 16: use it where it pays): the job's small preset,
        # eager and compiled in one process each, bf16, 7 labels, the batches a GPU actor uses
        for tag, extra in (("bench_eager", []), ("bench_compile", ["--compile"])):
            cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_model.py"), "--device", str(device)]
            cmd += ["--presets", "small", "--infer-only", "--dtypes", "bf16", "--labels", "7"]
            cmd += ["--batch-sizes", "8192", "32768", "--json", str(out / f"{tag}.json"), *extra]
            t0 = time.perf_counter()
            text, rc = _run(cmd, 150)
            (out / f"{tag}.txt").write_text(text)
            report["compile" if extra else "eager"] = {"rc": rc, "wall_s": time.perf_counter() - t0}
            (out / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str))
            print(text[-1500:])
    (out / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str))

    print(bench_text[-3000:])
    print(f"# {report['device']}, torch {report['torch']}")
    pr = report.get("predictor", {})
    if pr and "error" not in pr:
        for dt in ("float32", "bfloat16"):
            d = pr[dt]
            print(
                f"predictor {dt:<8} {d['stars_per_s']:>10.0f} stars/s  max|Δμ|/σ vs CPU "
                + " ".join(f"{k} {v:.2g}" for k, v in d["max_abs_dmean_over_sigma"].items())
                + "  σ: "
                + " ".join(f"{k} {v:.3g}" for k, v in d["sigma_vs_truth"].items())
            )
    js = report.get("job_stage", {})
    if "error" not in js:
        for dt in ("bfloat16", "float32"):
            d = js.get(dt)
            if d:
                print(
                    f"job stage {dt:<8} {d['stars_per_s']:>10.0f} stars/s ({d['n_timed']:,} rows, model "
                    f"{d['model_share']:.0%}), batch {d['setting']['batch_size']} ({d['setting']['source']}"
                    f"{', ' + str(d['setting'].get('calibration_stars_per_s')) if d['setting'].get('calibration_stars_per_s') else ''}), "
                    f"actor start {d['actor_start_s']:.1f} s; max|Δμ|/σ vs CPU actor "
                    + " ".join(f"{k} {v:.2g}" for k, v in d["max_abs_dmean_over_sigma"].items())
                    + f"; flags equal {d['flags_equal_fraction']:.4f}"
                )
    wp = report.get("warm_pool", {})
    if wp and "error" not in wp:
        speeds = ", ".join(
            f"{k} {wp[k]['stars_per_s']:.0f} stars/s"
            for k in ("overlapped", "reads_on_model_thread")
            if k in wp
        )
        print(
            f"warm pool worker ({wp['dtype']}, overlap_reads {wp['overlap_reads']}): {speeds}; max|Δμ|/σ vs CPU "
            + " ".join(f"{k} {v:.2g}" for k, v in wp["max_abs_dmean_over_sigma"].items())
            + f"; flags equal {wp['flags_equal_fraction']:.4f}; source ids equal {wp['source_ids_equal']}"
        )
    cp = report.get("compile", {})
    if cp:
        print(
            f"torch.compile inference (bench_model --compile): rc {cp.get('rc')}, see {out / 'bench_compile.txt'}"
        )
    tr = report.get("training", {})
    if tr and "error" not in tr:
        print(
            f"training {tr['n_parameters']:,} params: stars/s per epoch {[round(s) for s in tr['stars_per_s']]}"
        )
        print(f"  val σ after {len(tr['history'])} epochs: {tr['val_sigma_last']}")
        print(f"  CPU vs device checkpoint max|Δμ|/σ: {tr['cpu_vs_device_max_dmean_over_sigma']}")
        print(
            f"  fp16 epoch: loss {tr['fp16_epoch']['train_loss']:.3f}, {tr['fp16_epoch']['train_stars_per_s']:.0f} stars/s"
        )
    for name in ("predictor", "job_stage", "warm_pool", "training"):
        if "error" in report.get(name, {}):
            print(f"{name}: FAILED (see {out / 'gpu_check.json'})")
    if "bench_model" in report:
        print(f"bench_model rc {bench_rc}")
    return 0 if all("error" not in report.get(n, {}) for n in steps) and bench_rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
