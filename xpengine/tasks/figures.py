"""`run_figures`: every figure of the generative and probing tasks (paper Figs. 7–18) and of the
evaluation report at once, from the task runners of :mod:`xpengine.tasks.runner` (which re-exports
both names of this module), and `extinction_grid_from_data`, the E(B−V) grid it uses.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from xpengine.tasks.common import prepare_output, write_json

__all__ = ["extinction_grid_from_data", "run_figures"]

logger = logging.getLogger("xpengine.tasks.runner")

PathLike = str | os.PathLike


def extinction_grid_from_data(
    logebv: np.ndarray, paper_ebv: Sequence[float] = (0.4, 0.8, 1.2), paper_ref: float = 0.01
) -> dict[str, Any]:
    """E(B−V) values [mag] for the extinction curve inside the range of a sample's ln E(B−V) (N,).

    The reference is max(paper_ref, 5th percentile); the reddened values are the paper's that do not
    exceed the 99th percentile, or, when fewer than two do, the 50th, 75th and 99th percentiles. With
    fewer than 20 finite values the paper's grid is returned unchanged. Returns {"ebv", "ebv_ref"}.
    """
    e = np.exp(np.asarray(logebv, dtype=np.float64))
    e = e[np.isfinite(e)]
    if e.size < 20:
        return {"ebv": [float(x) for x in paper_ebv], "ebv_ref": float(paper_ref)}
    p5, p50, p75, p99 = np.percentile(e, [5, 50, 75, 99])
    ref = max(paper_ref, float(p5))
    inside = [float(x) for x in paper_ebv if ref < x <= p99]
    if len(inside) < 2:
        inside = sorted({round(float(x), 3) for x in (p50, p75, p99) if x > ref})
    if not inside:
        return {"ebv": [float(x) for x in paper_ebv], "ebv_ref": float(paper_ref)}
    return {"ebv": inside, "ebv_ref": round(ref, 4)}


def run_figures(
    model: str,
    data: str,
    output: PathLike,
    *,
    split: str | None = "test",
    max_stars: int | None = 3000,
    seed: int = 0,
    device: str = "cpu",
    batch_size: int = 256,
    evaluation: bool = True,
    evaluation_max_stars: int | None = None,
    extinction_grid: str = "data",
    overwrite: bool = False,
) -> dict[str, Any]:
    """Regenerate every figure of the generative and probing tasks (paper Figs. 7–18) and, when
    `evaluation`, those of the evaluation report (:func:`xpengine.evaluate.evaluation.run_evaluation`, written
    into `output/evaluation/`). Writes `output/figures.json` with each task's summary and timing.

    split: rows of `data` to use (None: all rows). max_stars: seeded random subset of them for the per-star
    tasks (None: all);
    evaluation_max_stars: the same for the evaluation (default: max_stars).
    extinction_grid: "paper" (E(B−V) 0.4, 0.8, 1.2 against 0.01, §4.5) or "data" (default: the same, but
    kept inside the E(B−V) range of the stars, see :func:`extinction_grid_from_data`, so that the
    model is not asked to extrapolate beyond what it was trained on).
    """
    from xpengine.tasks.common import load_predictor
    from xpengine.tasks.data import load_stars
    from xpengine.tasks.runner import (
        OUTPUTS,
        run_attention,
        run_embeddings,
        run_extinction,
        run_inpainting,
        run_label_grid,
        run_reconstruction,
        run_sequences,
    )

    out = Path(output)
    every = [f for files in OUTPUTS.values() for f in files] + ["figures.json"]
    prepare_output(out, every, overwrite=overwrite)
    if evaluation and (out / "evaluation" / "metrics.json").exists() and not overwrite:
        raise FileExistsError(f"{out / 'evaluation'} holds an evaluation; pass overwrite=True to replace it")
    predictor = load_predictor(model, device=device, batch_size=batch_size)
    stars = load_stars(data, predictor.vocabulary, split=split, max_stars=max_stars, seed=seed)
    summary: dict[str, Any] = {
        "model": str(model),
        "data": str(data),
        "split": split,
        "n_stars": len(stars),
        "max_stars": max_stars,
        "seed": seed,
        "device": device,
        "tasks": {},
        "seconds": {},
    }
    if extinction_grid == "data":
        ext_kwargs = extinction_grid_from_data(stars.column("logebv"))
    elif extinction_grid == "paper":
        ext_kwargs = {}
    else:
        raise ValueError(f"extinction_grid must be 'paper' or 'data', got {extinction_grid!r}")
    summary["extinction_grid"] = {"mode": extinction_grid, **ext_kwargs}
    steps: list[tuple[str, Any]] = [
        ("sequences", lambda: run_sequences(predictor, out, overwrite=overwrite)),
        ("reconstruction", lambda: run_reconstruction(predictor, stars, out, overwrite=overwrite)),
        ("inpainting", lambda: run_inpainting(predictor, stars, out, overwrite=overwrite)),
        ("label_grid", lambda: run_label_grid(predictor, out, stars=stars, overwrite=overwrite)),
        ("extinction", lambda: run_extinction(predictor, out, overwrite=overwrite, **ext_kwargs)),
        ("attention", lambda: run_attention(predictor, out, stars=stars, overwrite=overwrite)),
        ("embeddings", lambda: run_embeddings(predictor, stars, out, seed=seed, overwrite=overwrite)),
    ]
    for name, step in steps:
        t0 = time.perf_counter()
        try:
            summary["tasks"][name] = step()
        except ValueError as exc:  # a task the model or data cannot support (missing tokens, too few stars)
            logger.warning("task %s skipped: %s", name, exc)
            summary["tasks"][name] = {"skipped": str(exc)}
        summary["seconds"][name] = round(time.perf_counter() - t0, 2)
        logger.info("%s done in %.1f s", name, summary["seconds"][name])
    if evaluation:
        from xpengine.evaluate.evaluation import run_evaluation

        t0 = time.perf_counter()
        metrics = run_evaluation(
            model,
            data,
            out / "evaluation",
            split=split,
            device=device,
            max_stars=evaluation_max_stars if evaluation_max_stars is not None else max_stars,
            seed=seed,
            figures=True,
            overwrite=overwrite,
        )
        summary["seconds"]["evaluation"] = round(time.perf_counter() - t0, 2)
        summary["evaluation"] = {"directory": "evaluation", "files": metrics.get("files", [])}
    summary["figures"] = sorted(p.name for p in out.glob("fig*.png"))
    write_json(summary, out / "figures.json", overwrite=overwrite)
    logger.info("figures written to %s", out)
    return summary
