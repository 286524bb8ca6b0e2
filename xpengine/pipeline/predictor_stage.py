"""The job's predictor stage, as plain Python (no Ray import): the map_batches callable that takes
`stages.featurize_partition`'s token batches.

`CatalogPredictor` is `xpengine.inference.catalogue.CatalogPredictor` (also `Predictor.from_xp`'s) with the
job's predictor pool (`tuning.PoolPlan`: device, dtype, threads, batch size) and flag policy; it sets the
partition key aside while the model runs and reports its timings to the job's `Ledger`. Given the
driver's code (`code_identity.expected_code`), it refuses to start under other xpengine code.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import numpy as np

from xpengine.catalog.flag_policy import FlagPolicy
from xpengine.inference.catalogue import CatalogPredictor as _CatalogPredictor
from xpengine.pipeline.bookkeeping import PARTITION_KEY, process_started_at, report
from xpengine.pipeline.code_identity import check_worker_code
from xpengine.pipeline.tuning import PoolPlan

__all__ = ["CatalogPredictor"]

log = logging.getLogger(__name__)

_IMPORTED_AT = time.time()  # when this process imported the stage (an actor: before its constructor)


class CatalogPredictor(_CatalogPredictor):
    """The job's predictor stage: `xpengine.inference.catalogue.CatalogPredictor` run with the job's
    predictor pool (`tuning.PoolPlan`) and flag policy, keeping the partition key out of the model's
    batches and reporting its timings to the job's ledger.

    pool.batch_size / pool.torch_threads None: from the measured table (`xpengine.pipeline.tuning.MEASURED`)
    for this device and model architecture, else a short calibration here at actor start (batch size;
    thread counts up to the actor's CPUs when it has several). `setting` records the choice; `startup`
    the seconds the actor's start took (torch import, model load, settings)."""

    def __init__(
        self,
        model: str,
        labels: list[str] | None,
        *,
        pool: PoolPlan | None = None,
        flag_policy: FlagPolicy | None = None,
        inputs: list[str] | None = None,
        device: str | None = None,
        ledger: Any = None,
        calibration_budget_s: float = 1.0,
        sim_to_real: bool = True,
        code: dict[str, Any] | None = None,
    ) -> None:
        """device: overrides `pool.device` (a direct call's shorthand: `device="cpu"`). sim_to_real: the
        stars are real (the job's `sim_to_real_sigma`). code: the driver's (`code_identity.expected_code`):
        CodeMismatchError, before anything is loaded, where this process runs other xpengine code."""
        check_worker_code(code, "predictor actor")  # (~30 ms, before the start-up breakdown's clock)
        t_start = time.perf_counter()
        at = time.time()
        import torch

        from xpengine.pipeline import tuning

        t_torch = time.perf_counter()
        pool = pool or PoolPlan()
        self.ledger = ledger
        if pool.torch_threads:
            torch.set_num_threads(int(pool.torch_threads))
        super().__init__(
            model,
            labels,
            device=device or pool.device,
            dtype=pool.dtype,
            batch_size=pool.batch_size or 1,
            inputs=inputs,
            flag_policy=flag_policy,
            sim_to_real=sim_to_real,
        )
        t_loaded = time.perf_counter()
        dev = self.predictor.device
        signature = tuning.device_signature(
            dev.type, cuda_name=torch.cuda.get_device_name(dev) if dev.type == "cuda" else None
        )
        architecture = tuning.architecture_name(self.predictor.checkpoint.model_config)
        entry = tuning.lookup(tuning.MEASURED, signature, architecture)
        threads = torch.get_num_threads() if dev.type == "cpu" else None
        if pool.batch_size:
            self.setting = tuning.Setting(pool.batch_size, threads, "config")
        elif entry is not None:  # a measured row: no calibration at start
            self.setting = tuning.Setting(
                int(entry["batch_size"]), threads, f"table: {signature}, {architecture}"
            )
        else:
            self.setting = self._calibrate(
                dev.type, int(max(1, pool.cpus_per_actor)), pool.torch_threads, calibration_budget_s
            )
        self.batch_size = self.setting.batch_size
        if dev.type == "cpu" and self.setting.torch_threads:
            torch.set_num_threads(self.setting.torch_threads)
        t_set = time.perf_counter()
        # an accelerator's first batch pays for its kernels and handles: paid here, while the
        # separate read stage reads. A CPU actor reads its own partitions (the stages fused), so a
        # warm-up there would only move its first batch's extra cost (~0.1 s), not hide it.
        if dev.type != "cpu" and self.setting.source != "calibrated":
            self._warm_up()
        t_ready = time.perf_counter()
        self.startup = {
            "torch_import_s": round(t_torch - t_start, 3),
            "model_load_s": round(t_loaded - t_torch, 3),
            "settings_s": round(t_set - t_loaded, 3),
            "warm_up_s": round(t_ready - t_set, 3),
        }
        log.info(
            "predictor on %s (%s, %s): batch %d, %s torch thread(s), %s%s; torch imported in %.2f s, "
            "model loaded in %.2f s, settings in %.2f s, warm-up %.2f s",
            signature,
            architecture,
            self.predictor.autocast_dtype,
            self.setting.batch_size,
            self.setting.torch_threads,
            self.setting.source,
            f" {self.setting.rates}" if self.setting.rates else "",
            self.startup["torch_import_s"],
            self.startup["model_load_s"],
            self.startup["settings_s"],
            self.startup["warm_up_s"],
        )
        report(
            ledger,
            {
                "event": "actor_started",
                "at": at,
                "process_started_at": process_started_at(),
                "stages_imported_at": _IMPORTED_AT,
                "ready_at": time.time(),
                "pid": os.getpid(),
                **self.startup,
                "setting": self.setting.to_dict(),
            },
            required=False,  # the start-up breakdown: never worth an actor's life
        )
        self._model_s = 0.0
        self._first_call_at: float | None = None
        predict = self.predictor.predict

        def timed_predict(*args: Any, **kw: Any) -> dict[str, np.ndarray]:
            t0 = time.perf_counter()
            try:
                return predict(*args, **kw)
            finally:
                self._model_s += time.perf_counter() - t0

        self.predictor.predict = timed_predict  # this actor's own Predictor

    def _synthetic_values(self, n: int) -> np.ndarray:
        """(n, vocabulary) token values: the job's context tokens drawn around the model's
        standardization centre, the rest NaN (calibration and warm-up batches)."""
        pred = self.predictor
        context = self.inputs if self.inputs is not None else pred.default_inputs
        cols = pred.vocabulary.indices(context)
        rng = np.random.default_rng(0)
        values = np.full((n, len(pred.vocabulary)), np.nan, dtype=np.float32)
        centre = np.asarray(pred.standardization.center, dtype=np.float64)[cols]
        scale = np.asarray(pred.standardization.scale, dtype=np.float64)[cols]
        values[:, cols] = centre + scale * rng.standard_normal((n, len(cols)))
        return values

    def _warm_up(self) -> None:
        """One model batch of synthetic stars at the actor's batch size (results discarded)."""
        n = self.batch_size
        self.predictor.predict(
            self._synthetic_values(n), None, list(self.request), inputs=self.inputs, batch_size=n
        )

    def _calibrate(self, device_type: str, cpus: int, torch_threads: int | None, budget_s: float):
        import torch

        from xpengine.pipeline import tuning

        pred = self.predictor
        batches = tuning.CPU_BATCHES if device_type == "cpu" else tuning.GPU_BATCHES
        values = self._synthetic_values(max(batches))
        request = list(self.request)

        def run(b: int) -> None:
            pred.predict(values[:b], None, request, inputs=self.inputs, batch_size=b)

        # thread counts are tried only for an actor with several CPUs and no thread count given;
        # otherwise torch keeps the threads it has (Ray sets one per CPU of the actor)
        threads: list[int | None] = [None]
        if device_type == "cpu" and not torch_threads and cpus > 1:
            threads = sorted({2**k for k in range(8) if 2**k <= cpus} | {cpus})
        rates = tuning.calibrate(
            run, batches, threads=threads, set_threads=torch.set_num_threads, budget_s=budget_s
        )
        batch, n_threads = tuning.choose(rates)
        if device_type == "cpu" and n_threads is None:
            n_threads = torch.get_num_threads()
        return tuning.Setting(
            batch,
            n_threads if device_type == "cpu" else None,
            "calibrated",
            rates={f"{b}x{t}" if t else str(b): r for (b, t), r in rates.items()},
        )

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        t0 = time.perf_counter()
        first_call = self._first_call_at is None
        if first_call:
            self._first_call_at = time.time()
        self._model_s = 0.0
        # the model sees the catalogue's inputs only: the partition key waits here for the results
        batch = dict(batch)
        key = batch.pop(PARTITION_KEY, None)
        out = super().__call__(batch)
        if key is not None:
            out[PARTITION_KEY] = key
        report(
            self.ledger,
            {
                "event": "predicted",
                "rows": len(out["source_id"]),
                "predict_s": time.perf_counter() - t0,
                "model_s": self._model_s,
                "batch_size": self.batch_size,
                **({"first_call_at": self._first_call_at, "pid": os.getpid()} if first_call else {}),
            },
        )
        return out
