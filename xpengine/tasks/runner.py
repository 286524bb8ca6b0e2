"""Task runners: compute one task, write its data files (Parquet / CSV / JSON) and figures (PNG) into an
output directory, return its summary. Used by the `xpengine` subcommands of
:mod:`xpengine.tasks.cli` and by :func:`run_figures` (:mod:`xpengine.tasks.figures`, re-exported here), which
regenerates every figure at once.

Every runner refuses to replace existing files unless ``overwrite=True``, and checks that before
computing anything.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from xpengine.tasks.common import prepare_output, write_json, write_table
from xpengine.tasks.figures import (  # re-exported: they lived here
    extinction_grid_from_data,
    run_figures,
)

__all__ = [
    "OUTPUTS",
    "extinction_grid_from_data",
    "run_attention",
    "run_embeddings",
    "run_extinction",
    "run_figures",
    "run_inpainting",
    "run_label_grid",
    "run_reconstruction",
    "run_sequences",
    "run_spectra_from_labels",
]

logger = logging.getLogger(__name__)

OUTPUTS: dict[str, tuple[str, ...]] = {
    "spectra": ("spectra_from_labels.parquet", "spectra_from_labels.png"),
    "sequences": ("label_sequences.parquet", "fig07_label_sequences.png"),
    "reconstruction": (
        "reconstruction.parquet",
        "reconstruction.json",
        "reconstruction_residuals.csv",
        "fig08_reconstruction_gallery.png",
        "fig09_fractional_residuals.png",
        "fig10_rmse_vs_astrometry.png",
        "fig11_rmse_vs_labels.png",
    ),
    "inpainting": ("inpainting.parquet", "inpainting.json", "fig12_inpainting_gallery.png"),
    "label_grid": (
        "label_grid.parquet",
        "age_metallicity.csv",
        "label_grid.json",
        "fig13_kiel_grid.png",
        "fig14_mass_age_grid.png",
        "fig15_age_metallicity.png",
    ),
    "extinction": (
        "extinction_curve.csv",
        "extinction_curves.parquet",
        "extinction_curve.json",
        "fig16_extinction_curve.png",
    ),
    "attention": ("attention.json", "fig17_attention.png"),
    "embeddings": ("embeddings.parquet", "embedding_colours.json", "fig18_embedding_colours.png"),
}
"""The files each runner writes (figures only when asked)."""

PathLike = str | os.PathLike


def _files(task: str, figures: bool) -> tuple[str, ...]:
    return tuple(f for f in OUTPUTS[task] if figures or not f.endswith(".png"))


def run_spectra_from_labels(
    predictor: Any,
    labels: Mapping[str, Any],
    output: PathLike,
    *,
    names: Sequence[str] | None = None,
    figures: bool = True,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Spectra from labels (task 1): `spectra_from_labels.parquet` (one row per star: inputs, coefficient
    means and σ, G-normalised flux and σ, flux at 10 pc, M_G; wavelengths and units in the metadata) and a
    figure."""
    from xpengine.tasks.generative import spectra_from_labels

    out = prepare_output(output, _files("spectra", figures), overwrite=overwrite)
    gen = spectra_from_labels(predictor, labels)
    cols = gen.columns()
    if names is not None:
        cols = {"name": np.asarray(list(names)), **cols}
    files = [
        write_table(cols, out / "spectra_from_labels.parquet", metadata=gen.metadata(), overwrite=overwrite)
    ]
    if figures:
        from xpengine.tasks.plots import plot_spectra

        absolute = bool(np.isfinite(gen.flux_10pc).any())
        files.append(
            plot_spectra(
                gen, out / "spectra_from_labels.png", absolute=absolute, labels=names, overwrite=overwrite
            )
        )
    return {"n_stars": len(gen), "inputs": gen.inputs, "abs_g": gen.abs_g, "files": [p.name for p in files]}


def run_sequences(
    predictor: Any, output: PathLike, *, figures: bool = True, overwrite: bool = False
) -> dict[str, Any]:
    """Spectra along the label sequences of paper Fig. 7 (:data:`generative.DEFAULT_SEQUENCES`)."""
    from xpengine.tasks.generative import label_sequences

    out = prepare_output(output, _files("sequences", figures), overwrite=overwrite)
    results = label_sequences(predictor)
    if not results:
        raise ValueError("no label sequence could be run with this model's vocabulary")
    rows: dict[str, list[Any]] = {"sequence": [], "vary": [], "value": [], "abs_g": []}
    flux, flux10 = [], []
    for seq, gen in results:
        rows["sequence"] += [seq.name] * len(gen)
        rows["vary"] += [seq.vary] * len(gen)
        rows["value"] += list(np.asarray(seq.values, dtype=np.float64))
        rows["abs_g"] += list(gen.abs_g)
        flux.append(gen.flux)
        flux10.append(gen.flux_10pc)
    cols = {k: np.asarray(v) for k, v in rows.items()}
    cols["flux"] = np.concatenate(flux).astype(np.float32)
    cols["flux_10pc"] = np.concatenate(flux10).astype(np.float32)
    meta = results[0][1].metadata() | {
        "task": "label_sequences",
        "sequences": [{"name": s.name, "vary": s.vary, "fixed": s.fixed} for s, _ in results],
    }
    files = [write_table(cols, out / "label_sequences.parquet", metadata=meta, overwrite=overwrite)]
    if figures:
        from xpengine.tasks.plots import plot_sequences

        files.append(plot_sequences(results, out / "fig07_label_sequences.png", overwrite=overwrite))
    summary = {s.name: {"vary": s.vary, "values": s.values, "abs_g": g.abs_g} for s, g in results}
    return {"sequences": summary, "files": [p.name for p in files]}


def run_reconstruction(
    predictor: Any,
    stars: Any,
    output: PathLike,
    *,
    inputs: Sequence[str] | None = None,
    figures: bool = True,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Reconstruction from true labels (task 2, paper Figs. 8–11)."""
    from xpengine.tasks.reconstruction import reconstruct_from_labels

    out = prepare_output(output, _files("reconstruction", figures), overwrite=overwrite)
    t0 = time.perf_counter()
    rec = reconstruct_from_labels(predictor, stars, inputs=inputs)
    summary = rec.summary() | {"seconds": time.perf_counter() - t0}
    meta = {
        "task": "reconstruction",
        "wavelength_nm": rec.wavelength_nm,
        "inputs": rec.inputs,
        "flux": "G-normalised sampled flux",
        "rmse_definition": summary["rmse_definition"],
    }
    files = [write_table(rec.columns(), out / "reconstruction.parquet", metadata=meta, overwrite=overwrite)]
    p16, p50, p84 = rec.residual_percentiles((16.0, 50.0, 84.0))
    files.append(
        write_table(
            {"wavelength_nm": rec.wavelength_nm, "p16": p16, "median": p50, "p84": p84},
            out / "reconstruction_residuals.csv",
            overwrite=overwrite,
        )
    )
    if figures:
        from xpengine.tasks import plots

        files += [
            plots.plot_reconstruction_gallery(
                rec, out / "fig08_reconstruction_gallery.png", overwrite=overwrite
            ),
            plots.plot_residuals_vs_wavelength(
                rec, out / "fig09_fractional_residuals.png", overwrite=overwrite
            ),
            plots.plot_rmse_vs_astrometry(rec, out / "fig10_rmse_vs_astrometry.png", overwrite=overwrite),
            plots.plot_rmse_vs_labels(rec, out / "fig11_rmse_vs_labels.png", overwrite=overwrite),
        ]
    summary["files"] = [p.name for p in files] + ["reconstruction.json"]
    write_json(summary, out / "reconstruction.json", overwrite=overwrite)
    return summary


def run_inpainting(
    predictor: Any, stars: Any, output: PathLike, *, figures: bool = True, overwrite: bool = False
) -> dict[str, Any]:
    """BP → RP and RP → BP inpainting (task 3, paper Fig. 12)."""
    from xpengine.tasks.reconstruction import inpaint

    out = prepare_output(output, _files("inpainting", figures), overwrite=overwrite)
    recs = [inpaint(predictor, stars, d) for d in ("rp_to_bp", "bp_to_rp")]
    summary: dict[str, Any] = {r.task: r.summary() for r in recs}
    cols: dict[str, Any] = {"source_id": stars.source_id}
    for r in recs:
        cols[f"rmse_{r.task}"] = r.rmse
        cols[f"rmse_gnorm_{r.task}"] = r.rmse_gnorm
        cols[f"generated_flux_{r.task}"] = r.generated.astype(np.float32)
    cols["observed_flux"] = recs[0].observed.astype(np.float32)
    meta = {
        "task": "inpainting",
        "wavelength_nm": recs[0].wavelength_nm,
        "split_nm": 640.0,
        "rmse_definition": summary["rp_to_bp"]["rmse_definition"],
    }
    files = [write_table(cols, out / "inpainting.parquet", metadata=meta, overwrite=overwrite)]
    if figures:
        from xpengine.tasks.plots import plot_inpainting_gallery

        files.append(plot_inpainting_gallery(recs, out / "fig12_inpainting_gallery.png", overwrite=overwrite))
    summary["files"] = [p.name for p in files] + ["inpainting.json"]
    write_json(summary, out / "inpainting.json", overwrite=overwrite)
    return summary


def run_label_grid(
    predictor: Any, output: PathLike, *, stars: Any = None, figures: bool = True, overwrite: bool = False
) -> dict[str, Any]:
    """Label → label grids (task 4, paper Figs. 13–15); `stars` (optional) adds the data panels."""
    from xpengine.tasks.label_grid import label_grid

    out = prepare_output(output, _files("label_grid", figures), overwrite=overwrite)
    grid = label_grid(predictor)
    summary = grid.summary()
    files = [
        write_table(
            grid.kiel, out / "label_grid.parquet", metadata={"task": "label_grid"}, overwrite=overwrite
        ),
        write_table(grid.slice, out / "age_metallicity.csv", overwrite=overwrite),
    ]
    if figures:
        from xpengine.tasks import plots

        files += [
            plots.plot_kiel_grid(grid, out / "fig13_kiel_grid.png", data=stars, overwrite=overwrite),
            plots.plot_mass_age_grid(grid, out / "fig14_mass_age_grid.png", data=stars, overwrite=overwrite),
            plots.plot_age_metallicity(grid, out / "fig15_age_metallicity.png", overwrite=overwrite),
        ]
    summary["files"] = [p.name for p in files] + ["label_grid.json"]
    write_json(summary, out / "label_grid.json", overwrite=overwrite)
    return summary


def run_extinction(
    predictor: Any, output: PathLike, *, figures: bool = True, overwrite: bool = False, **kwargs: Any
) -> dict[str, Any]:
    """The model's extinction curve (task 5, paper Fig. 16); kwargs go to
    :func:`~xpengine.tasks.extinction.model_extinction_curve`."""
    from xpengine.tasks.extinction import model_extinction_curve

    out = prepare_output(output, _files("extinction", figures), overwrite=overwrite)
    res = model_extinction_curve(predictor, **kwargs)
    summary = res.summary()
    n_g, n_e, _ = res.curves.shape
    grid_cols = {
        "logg": np.repeat(res.logg, n_e),
        "teff": np.repeat(res.teff, n_e),
        "ebv": np.tile(res.ebv, n_g),
        "curve": res.curves.reshape(n_g * n_e, -1).astype(np.float32),
        "flux_reddened": res.reddened.reshape(n_g * n_e, -1).astype(np.float32),
        "flux_reference": np.repeat(res.reference, n_e, axis=0).astype(np.float32),
    }
    files = [
        write_table(res.columns(), out / "extinction_curve.csv", overwrite=overwrite),
        write_table(
            grid_cols,
            out / "extinction_curves.parquet",
            metadata={"task": "extinction", "wavelength_nm": res.wavelength_nm} | summary,
            overwrite=overwrite,
        ),
    ]
    if figures:
        from xpengine.tasks.plots import plot_extinction

        files.append(plot_extinction(res, out / "fig16_extinction_curve.png", overwrite=overwrite))
    summary["files"] = [p.name for p in files] + ["extinction_curve.json"]
    write_json(summary, out / "extinction_curve.json", overwrite=overwrite)
    return summary


def run_attention(
    predictor: Any,
    output: PathLike,
    *,
    labels: Mapping[str, float] | None = None,
    stars: Any = None,
    ebv_low: float = 0.01,
    ebv_high: float = 0.37,
    figures: bool = True,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Cross-attention maps (task 6a, paper Fig. 17) for `labels`, else the first fully labelled test star
    of `stars`, else the paper's Fig. 16 giant."""
    from xpengine.tasks.probing import attention_maps, star_labels_from_test

    out = prepare_output(output, _files("attention", figures), overwrite=overwrite)
    if labels is None and stars is not None:
        labels = star_labels_from_test(stars)
    maps = attention_maps(predictor, labels, ebv_low=ebv_low, ebv_high=ebv_high)
    files = []
    if figures:
        from xpengine.tasks.plots import plot_attention

        files.append(plot_attention(maps, out / "fig17_attention.png", overwrite=overwrite))
    d = maps.to_dict()
    d["files"] = [p.name for p in files] + ["attention.json"]
    write_json(d, out / "attention.json", overwrite=overwrite)
    diff = maps.difference
    return {
        "labels": maps.labels,
        "requests": maps.requests,
        "context": maps.context,
        "max_abs_difference": float(np.max(np.abs(diff))),
        "logebv_attention_change": {
            r: float(diff[i, maps.context.index("logebv")]) for i, r in enumerate(maps.requests)
        }
        if "logebv" in maps.context
        else {},
        "files": d["files"],
    }


def run_embeddings(
    predictor: Any,
    stars: Any,
    output: PathLike,
    *,
    inputs: Sequence[str] | None = None,
    targets: Sequence[str] = ("bprp", "jk"),
    seed: int = 0,
    figures: bool = True,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Embeddings export and colours from embeddings (task 6b, paper Fig. 18)."""
    from xpengine.tasks.probing import colour_regression, encode_stars

    out = prepare_output(output, _files("embeddings", figures), overwrite=overwrite)
    emb = encode_stars(predictor, stars.values, inputs)
    d = emb.embedding.shape[1]
    files = [
        write_table(
            {"source_id": stars.source_id, "n_context": emb.n_context, "embedding": emb.embedding},
            out / "embeddings.parquet",
            metadata={
                "task": "embeddings",
                "inputs": emb.inputs,
                "d_model": d,
                "pooling": "mean of the encoder output over valid context positions",
            },
            overwrite=overwrite,
        )
    ]
    fits, skipped = [], {}
    for t in targets:
        try:
            fits.append(colour_regression(emb.embedding, stars.column(t), name=t, seed=seed))
        except ValueError as exc:
            logger.warning("colour %s from embeddings skipped: %s", t, exc)
            skipped[t] = str(exc)
    if figures:
        from xpengine.tasks.plots import plot_embedding_colours

        files.append(plot_embedding_colours(fits, out / "fig18_embedding_colours.png", overwrite=overwrite))
    summary = {
        "n_stars": len(stars),
        "d_model": d,
        "inputs": emb.inputs,
        "colours": {f.target: f.summary() for f in fits},
        "colours_skipped": skipped,
        "files": [p.name for p in files] + ["embedding_colours.json"],
    }
    write_json(summary, out / "embedding_colours.json", overwrite=overwrite)
    return summary
