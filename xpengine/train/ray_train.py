"""Run the training loop inside Ray Train (one `TorchTrainer` worker, on a GPU when there is one).

The loop itself (:func:`xpengine.train.loop.train`) knows nothing of Ray; here its metrics and
checkpoints are forwarded to `ray.train.report`, so Ray's storage keeps them and the driver gets a
`ray.train.Result`. The worker function lives in the installed package (Ray pickles it by reference).
Ray is imported inside the functions only.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from xpengine.train.config import TrainConfig

__all__ = ["run_ray_training", "train_worker"]

logger = logging.getLogger(__name__)


def train_worker(loop_config: dict[str, Any]) -> None:
    """Ray Train worker: read the training set, train, report every logged epoch.

    loop_config: {"train": TrainConfig.to_dict(), "output_dir": str, "resume_from": str | None,
    "allow_data_change": bool (optional)}.
    """
    import ray.train

    from xpengine.datasets.schema import read_training_set
    from xpengine.train.loop import hold_freed_memory, resolve_device, train

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = TrainConfig.from_dict(loop_config["train"])
    if resolve_device(config.device).type == "cpu":
        hold_freed_memory()  # the worker process only trains (see the function)
    if not config.data_path:
        raise ValueError("data_path is not set in the training configuration")
    train_arrays = read_training_set(config.data_path, split="train")
    val_arrays = read_training_set(config.data_path, split="val", vocabulary=train_arrays.vocabulary)

    def report(metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
        if checkpoint_dir is None:
            ray.train.report(metrics)
        else:
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(str(checkpoint_dir)))

    train(
        config,
        train_arrays,
        val_arrays,
        output_dir=loop_config["output_dir"],
        report_fn=report,
        resume_from=loop_config.get("resume_from"),
        allow_data_change=bool(loop_config.get("allow_data_change", False)),
    )


def _absolute_paths(train: dict[str, Any]) -> dict[str, Any]:
    """The training configuration's file paths made absolute here, on the driver: a Ray Train worker
    runs in its own session directory (Ray 2.60 Train V2 changes into it), where a relative path names
    nothing. `init_from` only when it names an existing path here (else it is a bundled model's name)."""
    train = dict(train)
    for key in ("data_path", "truncate_counts", "init_from"):
        value = train.get(key)
        if value and (key != "init_from" or Path(value).exists()):
            train[key] = str(Path(value).resolve())
    return train


def worker_cpus(nodes: list[dict[str, Any]], use_gpu: bool) -> int:
    """The CPUs the one training worker asks for: all of the largest live machine's (`ray.nodes()`
    records), among those with a GPU when `use_gpu`; a worker runs on one machine, so a cluster's total
    would never be granted (found by a review)."""
    res = [n.get("Resources") or {} for n in nodes if n.get("Alive")]
    res = [r for r in res if not use_gpu or r.get("GPU", 0) >= 1] or res
    return max(1, int(max((r.get("CPU", 0) for r in res), default=1)))


def run_ray_training(
    config: TrainConfig,
    *,
    output_dir: str | os.PathLike,
    resume_from: str | os.PathLike | None = None,
    use_gpu: bool | None = None,
    cpus_per_worker: int | None = None,
    run_name: str = "xpengine-train",
    allow_data_change: bool = False,
) -> Any:
    """Train with one Ray Train worker; returns the `ray.train.Result`.

    use_gpu: None → a GPU when the Ray cluster has one. Ray's own run records (reported metrics,
    copies of the checkpoints) go to `<output_dir>/ray`; the model is written under `output_dir` by
    the loop, as without Ray. Starts a local Ray cluster when none is connected. A fresh run (no
    resume_from) into a directory that holds a run already is refused (FileExistsError), as the loop does.
    allow_data_change: resume on a data file other than the checkpoint's (`xpengine.train.loop.train`).
    cpus_per_worker: the worker's CPUs, which Ray turns into its OMP_NUM_THREADS and so torch's threads;
    None: every CPU of the cluster's largest machine (one with a GPU when `use_gpu`; Train's controller
    takes none). Until session 28 it was 1: one
    thread on any machine, and a chunk resumed with --no-ray ran on another thread count.
    """
    import ray
    from ray.train import CheckpointConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from xpengine.train.run_files import check_fresh_output_dir

    output_dir = Path(output_dir).resolve()
    if resume_from is None:
        check_fresh_output_dir(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS") or "local", include_dashboard=False)
    if use_gpu is None:
        use_gpu = ray.cluster_resources().get("GPU", 0) >= 1
    if cpus_per_worker is None:
        cpus_per_worker = worker_cpus(ray.nodes(), use_gpu)
    loop_config = {
        "train": _absolute_paths({**config.to_dict(), "output_dir": str(output_dir)}),
        "output_dir": str(output_dir),
        "resume_from": None if resume_from is None else str(Path(resume_from).resolve()),
        "allow_data_change": allow_data_change,
    }
    trainer = TorchTrainer(
        train_worker,
        train_loop_config=loop_config,
        scaling_config=ScalingConfig(
            num_workers=1, use_gpu=use_gpu, resources_per_worker={"CPU": cpus_per_worker}
        ),
        run_config=RunConfig(
            name=run_name,
            storage_path=str(output_dir / "ray"),
            checkpoint_config=CheckpointConfig(num_to_keep=config.keep_checkpoints),
        ),
    )
    logger.info("starting Ray Train (use_gpu=%s, %d CPU), output in %s", use_gpu, cpus_per_worker, output_dir)
    return trainer.fit()
