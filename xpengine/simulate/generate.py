"""`simulate_sky`: write a synthetic Gaia sky in the real bulk formats, with its ground truth.

Output directory (all byte-identical for the same arguments):

- `XpContinuousMeanSpectrum_AAAAAA-BBBBBB.csv.gz`, `GaiaSource_AAAAAA-BBBBBB.csv.gz` per partition
  (gzip ECSV as the Gaia bulk download; each chunk's text is formatted by `xpengine.io.write_bulk_*`
  and streamed into one gzip member with MTIME 0 and no file name), rows sorted by source_id;
  `_MD5SUM.txt` (`md5  name` lines) for them.
- `allStar-synthetic.fits` (APOGEE DR17 allStar-like, HDU 1), `APOGEE_DistMass-synthetic.fits`
  (DistMass VAC-like, HDU 1), `tmass.parquet`, `ebv.parquet`, `truth.parquet`.

Layout: this module plans the partitions and chunks, draws and writes them; the draws' `observe` hooks
are in `_observe_hooks`, the bulk tables and their gzip stream in `_bulk_files`, the APOGEE-like rows and
FITS files in `_survey_files`, the truth columns in `_truth`, what an earlier sky left in the folder
(refused, or with overwrite removed first, so that two skies are never read as one) in `_output_dir`.

Source ids: source_id = hpx12 << 35 | running number (bits 0–34), with hpx12 the true level-12 pixel of
the position, so hpx8 = source_id >> 43 lies in the file's range and ids are unique by construction.
Random numbers: one `np.random.Generator` per (seed, partition, chunk) from `np.random.SeedSequence`,
so results do not depend on how the work is scheduled (`workers` processes give the same bytes).
Memory: one chunk (`chunk_size` sources) per process at a time; only the APOGEE-like rows (≈ 2% of the
sources) are kept until the end.

Stellar physics (`SkyConfig.physics`, `xpengine simulate --physics`), same files either way:

- "polynomial" (default; the bundled sky `xpengine/data/sky`): :func:`xpengine.simulate.sky.draw_stars`,
  thin/thick disk and halo giants and dwarfs from the REFERENCE §7 relations.
- "mist": :func:`xpengine.simulate.populations.draw_sky_arrays` (MIST v2.5 isochrones; thin and thick disk,
  halo, bulge; Kroupa IMF; every phase from the pre-main sequence to the AGB), with directions drawn
  uniformly in each chunk's HEALPix pixels as the polynomial sky draws them. What differs:
  * G: the MIST absolute G plus the MIST-table A_G of the star's own SED (the draw's magnitude cut is
    exact); the XP spectrum is the emulator's at the star's Teff, logg, [Fe/H], [α/M], reddened with its
    E(B−V) (Fitzpatrick 1999) and scaled to that G; BP, RP are the spectrum's synthetic photometry (so
    gaia_source agrees with the XP coefficients), whence truth `a_bp` = A_G + (A_BP − A_G) of the spectrum
    and `abs_bp` = bp − μ − a_bp (MIST's own in `mist_abs_bp`, `mist_a_bp`; likewise RP).
  * 2MASS: MIST absolute J, H, Ks plus the MIST-table extinctions (`observe.tmass_photometry`).
  * [M/H] (truth and APOGEE M_H): [Fe/H] + log10(0.694·10^[α/Fe] + 0.306), the metallicity of the
    star's isochrone (Salaris et al. 1993 form, isochrones.total_metallicity), not the polynomial sky's
    0.638/0.362 (≤ 0.02 dex apart for [α/Fe] ≤ 0.4).
  * XP emulator range: stars outside it get no spectrum and are not simulated (the draw goes on until
    `n_sources` are written): Teff or logg outside the real training stars' range of their emulator class
    (:func:`xpengine.simulate.xp.emulator_domain`), or an emulated intrinsic BP − RP more than
    `SkyConfig.xp_colour_tolerance` (0.15 mag) from MIST's (the emulator fails inside those ranges where
    its training set has no such stars: cool M dwarfs at MIST's logg, metal-poor K dwarfs). Counted by
    reason in the summary's `xp_emulator` (emulator v1: ≈ 14–19% of the magnitude-limited stars, hot
    dwarfs, cool dwarfs, metal-poor dwarfs; v2, fitted across the dev file's label space: 2.2%, mostly
    M giants below 3800 K and warm giants whose emulated colour misses MIST's; see
    benchmarks/results/realism_report.md). [Fe/H] or [α/M] beyond the fitted range are clamped by the emulator
    (≤ 0.1 dex: only [Fe/H] < −2.40 dwarfs, < −2.45 giants) and flagged in truth `xp_labels_clamped`.
  * DistMass ages: on the isochrones (isochrones.log_age_at_eep at the star's EEP) from the noisy mass
    and M_H, instead of the §7 mass–age relation.
  * truth: populations thin/thick/halo/bulge; `evolutionary_state` coarse as before (dwarf = pre-MS, MS,
    subgiant; rgb = RGB and AGB; red_clump = red and secondary clump) and `phase_name` the MIST phase;
    also `initial_mass`, `log_age`, `eep`, absolute magnitudes and extinctions in every band,
    `selection_weight`.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from xpengine.io.atomic import file_written_atomically, write_text_atomically
from xpengine.io.partitions import md5_of
from xpengine.simulate import populations as pp
from xpengine.simulate._bulk_files import _BulkStream, _gaia_source_table, _xp_table
from xpengine.simulate._observe_hooks import (
    _OUTSIDE,
    _hpx_directions,
    _observe_factory,
    _observe_factory_mist,
    _population_config,
)
from xpengine.simulate._output_dir import MD5SUM, PRODUCTS, bulk_names, prepare_output
from xpengine.simulate._survey_files import (
    _ALLSTAR_FORMATS,
    _DISTMASS_FORMATS,
    _apogee_rows,
    _distmass_rows,
    _write_fits,
)
from xpengine.simulate._truth import _TMASS_COLUMNS, _truth_columns, _truth_columns_mist
from xpengine.simulate.calibration import load_calibration
from xpengine.simulate.coords import bulk_suffix, default_partitions
from xpengine.simulate.observe import (
    ebv_estimates,
    gaia_photometry_astrometry,
    tmass_photometry,
)
from xpengine.simulate.sky import SkyConfig, _propose, draw_stars
from xpengine.simulate.xp import (
    XPNoiseModel,
    add_xp_noise,
)

__all__ = ["planned_partitions", "simulate_sky"]

logger = logging.getLogger(__name__)

TRUTH_VERSION = "1"


def round_significant(x: np.ndarray, digits: int) -> np.ndarray:
    """Round to `digits` significant digits (so the bulk text is shorter; 7 digits ≪ XP noise)."""
    if digits < 1:
        raise ValueError(f"digits={digits}; expected >= 1")
    with np.errstate(divide="ignore", invalid="ignore"):
        mag = np.floor(np.log10(np.abs(x)))
    mag = np.where(np.isfinite(mag), mag, 0.0)
    scale = 10.0 ** (digits - 1 - mag)
    return np.round(x * scale) / scale


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), *map(int, keys)])))


def _chunk_plan(
    seed: int, part: int, lo: int, hi: int, n: int, chunk_size: int, cfg: SkyConfig
) -> list[tuple[int, int, int]]:
    """Split pixels [lo, hi] into contiguous sub-ranges with source counts ∝ a pilot estimate of the
    visible-star density (so the file stays sorted by source_id and the sky density is respected; 2048
    proposals of the configured physics per sub-range)."""
    n_chunks = max(1, math.ceil(n / chunk_size))
    n_chunks = min(n_chunks, hi - lo + 1)
    edges = np.linspace(lo, hi + 1, n_chunks + 1).astype(np.int64)
    if n_chunks == 1:
        return [(lo, hi, n)]
    dens = np.empty(n_chunks)
    for j in range(n_chunks):
        pilot_rng = _rng(seed, part, 1_000_000 + j)
        if cfg.physics == "mist":
            directions = _hpx_directions(int(edges[j]), int(edges[j + 1] - 1))
            mean_w = pp.visible_density(2048, pilot_rng, directions, _population_config(cfg))
        else:
            pilot_cfg = replace(cfg, batch_size=2048)
            prop = _propose(pilot_rng, 2048, int(edges[j]), int(edges[j + 1] - 1), pilot_cfg)
            mean_w = prop["weight"].mean()
        dens[j] = mean_w * (edges[j + 1] - edges[j])
    counts = _largest_remainder(dens / dens.sum() * n, n)
    return [(int(edges[j]), int(edges[j + 1] - 1), counts[j]) for j in range(n_chunks) if counts[j] > 0]


def _largest_remainder(share: np.ndarray, n: int) -> list[int]:
    """Integer counts summing to `n`, as close to the real `share` (summing to `n`) as possible."""
    counts = np.floor(share).astype(np.int64)
    rem = int(n - counts.sum())
    counts[np.argsort(-(share - counts), kind="stable")[:rem]] += 1
    return [int(c) for c in counts]


#: pilot proposals per partition for :func:`_density_split` (8 sub-ranges of 1024)
_SPLIT_PILOTS = 8


def _density_split(seed: int, parts: list[tuple[int, int]], n: int, cfg: SkyConfig) -> list[int]:
    """Sources per partition ∝ the number of stars visible in its pixels (MIST physics).

    An even split would give a high-latitude patch as many stars as a patch in the plane, so a sky of few
    partitions over-weights the halo and the old thick disk. The density of each partition is a pilot
    estimate (8 × 1024 proposals spread over its pixels, seeded from (seed, partition)), times its pixel
    count; the counts are then the largest-remainder rounding, so they sum to `n` exactly.
    """
    pcfg = _population_config(cfg)
    dens = np.empty(len(parts))
    for k, (lo, hi) in enumerate(parts):
        edges = np.linspace(lo, hi + 1, _SPLIT_PILOTS + 1).astype(np.int64)
        w = []
        for j in range(_SPLIT_PILOTS):
            if edges[j + 1] <= edges[j]:
                continue
            rng = _rng(seed, k, 2_000_000 + j)
            w.append(
                pp.visible_density(1024, rng, _hpx_directions(int(edges[j]), int(edges[j + 1] - 1)), pcfg)
            )
        dens[k] = float(np.mean(w)) * (hi - lo + 1)
    counts = _largest_remainder(dens / dens.sum() * n, n)
    logger.info("MIST sky: sources per partition in proportion to the visible-star density: %s", counts)
    return counts


def _simulate_partition(job: dict[str, Any]) -> dict[str, Any]:
    """Simulate and write one partition (bulk files + Parquet parts); returns its APOGEE rows and counts.

    Runs in the main process or in a worker process (all inputs are plain data)."""
    import pyarrow.parquet as pq

    from xpengine.io import write_bulk_gaia_source, write_bulk_xp_continuous

    cfg: SkyConfig = job["config"]
    seed, k, lo, hi, n_part = job["seed"], job["index"], job["lo"], job["hi"], job["n"]
    out = Path(job["output_dir"])
    cal = load_calibration(cfg.emulator)
    model = XPNoiseModel(cal, cfg.correlation_levels)
    tally = dict.fromkeys(("examined", "kept", *_OUTSIDE), 0)
    if cfg.physics == "mist":
        pcfg = _population_config(cfg)
        observe = _observe_factory_mist(cfg, cal, tally)

        def draw(rng: np.random.Generator, cn: int, clo: int, chi: int) -> dict[str, np.ndarray]:
            return pp.draw_sky_arrays(cn, rng, pcfg, directions=_hpx_directions(clo, chi), observe=observe)

    else:
        observe = _observe_factory(cfg, cal)

        def draw(rng: np.random.Generator, cn: int, clo: int, chi: int) -> dict[str, np.ndarray]:
            return draw_stars(rng, cn, clo, chi, cfg, observe)

    suffix = bulk_suffix(lo, hi)
    plan = _chunk_plan(seed, k, lo, hi, n_part, job["chunk_size"], cfg)
    level = 2 if cfg.gzip_level is None else cfg.gzip_level
    xp_path = out / f"XpContinuousMeanSpectrum_{suffix}.csv.gz"
    gs_path = out / f"GaiaSource_{suffix}.csv.gz"
    writers: dict[str, pq.ParquetWriter] = {}
    apogee_parts: list[dict[str, np.ndarray]] = []
    n_giants = 0
    with file_written_atomically(xp_path) as xp_tmp, file_written_atomically(gs_path) as gs_tmp:
        xp_stream = _BulkStream(xp_path, xp_tmp, write_bulk_xp_continuous, level)
        try:
            gs_stream = _BulkStream(gs_path, gs_tmp, write_bulk_gaia_source, level)
        except BaseException:
            xp_stream.close()
            raise
        try:
            for j, (clo, chi, cn) in enumerate(plan):
                rng = _rng(seed, k, j)
                s = draw(rng, cn, clo, chi)
                # ids: level-12 pixel << 35 | running number within the partition (rows sorted by source_id)
                order = np.lexsort((s["dec"], s["ra"], s["hpx12"]))
                s = {key: v[order] for key, v in s.items()}
                base = sum(c for _, _, c in plan[:j])
                source_id = (s["hpx12"] << 35) | (np.arange(cn, dtype=np.int64) + base + 1)
                n_bp = s["coefficients"].shape[1] // 2
                bp_true, rp_true = s["coefficients"][:, :n_bp], s["coefficients"][:, n_bp:]
                missing_bp = rng.random(cn) < cfg.missing_bp_rate
                xp = add_xp_noise(bp_true, rp_true, s["flux"], s["g"], s["ecl_lat"], missing_bp, rng, model)
                if cfg.coefficient_digits is not None:
                    for b in ("bp", "rp"):
                        xp[f"{b}_coefficients"] = round_significant(
                            xp[f"{b}_coefficients"], cfg.coefficient_digits
                        )
                s["n_transits"] = xp["n_transits"]
                gcols = gaia_photometry_astrometry(
                    s, rng, no_parallax_rate=cfg.no_parallax_rate, six_param_base=cfg.six_param_base
                )
                tm = tmass_photometry(s, cal, rng, cfg.tmass_random_missing, physics=cfg.physics)
                ebv_est = ebv_estimates(s["ebv"], rng, cfg.ebv_missing_rate)
                apogee_parts.append(_apogee_rows(s, tm, source_id, rng, cfg))
                xp_stream.write(_xp_table(source_id, xp, model))
                gs_stream.write(_gaia_source_table(source_id, s, gcols))
                n_giants += int((s["evolutionary_state"] > 0).sum())
                truth = _truth_columns(source_id, suffix, s, tm, gcols, xp, missing_bp)
                if cfg.physics == "mist":
                    truth = _truth_columns_mist(truth, s)
                tmass = {"source_id": source_id, **{c: tm[c] for c in _TMASS_COLUMNS}}
                ebvt = {"source_id": source_id, **ebv_est}
                for name, data in (("truth", truth), ("tmass", tmass), ("ebv", ebvt)):
                    table = pa.table(data)
                    if name not in writers:
                        writers[name] = pq.ParquetWriter(
                            out / f".{name}.{k:05d}.parquet", table.schema, compression="zstd"
                        )
                    writers[name].write_table(table)
                logger.info("partition %s chunk %d/%d: %d sources", suffix, j + 1, len(plan), cn)
        finally:
            xp_stream.close()
            gs_stream.close()
            for w in writers.values():
                w.close()
    apogee = {key: np.concatenate([a[key] for a in apogee_parts]) for key in apogee_parts[0]}
    return {
        "suffix": suffix,
        "n_sources": n_part,
        "n_chunks": len(plan),
        "n_giants": n_giants,
        "xp_emulator": tally,
        "apogee": apogee,
        "files": bulk_names(suffix),
    }


def _merge_parquet(parts: list[Path], dest: Path) -> None:
    """Concatenate Parquet parts (same schema) into `dest`, row group by row group, then delete them."""
    import pyarrow.parquet as pq

    writer = None
    try:
        for p in parts:
            pf = pq.ParquetFile(p)
            for i in range(pf.num_row_groups):
                t = pf.read_row_group(i)
                if writer is None:
                    writer = pq.ParquetWriter(dest, t.schema, compression="zstd")
                writer.write_table(t)
    finally:
        if writer is not None:
            writer.close()
    for p in parts:
        p.unlink()


def planned_partitions(
    n_sources: int, workers: int, n_partitions: int, partitions: list[tuple[int, int]] | None
) -> list[tuple[int, int]]:
    """The HEALPix-8 ranges of the sky `simulate_sky` would write, its arguments checked (ValueError
    naming the bad one) before anything is written, so the command line can report a bad argument in one
    line without mistaking a failure of the simulation for one."""
    if n_sources < 1:
        raise ValueError(f"n_sources={n_sources}; expected >= 1")
    if workers < 1:
        raise ValueError(f"workers={workers}; expected >= 1")
    parts = partitions if partitions is not None else default_partitions(n_partitions)
    for lo, hi in parts:
        bulk_suffix(lo, hi)  # validates
    return parts


def simulate_sky(
    output_dir: str | os.PathLike[str],
    n_sources: int,
    *,
    seed: int = 0,
    n_partitions: int = 2,
    partitions: list[tuple[int, int]] | None = None,
    chunk_size: int = 10_000,
    config: SkyConfig | None = None,
    workers: int = 1,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Simulate `n_sources` Gaia XP sources in bulk partitions and write every product.

    Parameters
    ----------
    output_dir : directory (created) that receives the files listed in the module docstring.
    n_sources : total number of sources: split evenly over the partitions for the polynomial physics (the
        bundled sky), in proportion to each partition's visible-star density for MIST
        (:func:`_density_split`, so the sky's latitude mix is the real one whatever the partitions).
    seed : random seed; the same arguments give byte-identical files (whatever `workers`).
    n_partitions, partitions : HEALPix-8 ranges (inclusive); default :func:`default_partitions`.
    chunk_size : sources generated and written at a time (memory scales with it, not with n_sources).
    workers : processes simulating partitions in parallel (1 = in this process).
    overwrite : replace the files of an earlier sky in `output_dir`: every file an earlier `simulate_sky`
        wrote there is removed first, its partitions of other ranges too (they would be read with the new
        sky). Without it, any such file is refused. Either way, other bulk partitions there are refused
        (`xpengine.simulate._output_dir`: `SkyFolderError`, a FileExistsError naming them).

    Returns a summary dict (counts per partition, file names, number of giants and APOGEE rows).
    """
    parts = planned_partitions(n_sources, workers, n_partitions, partitions)
    cfg = SkyConfig() if config is None else config
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    prepare_output(out, [bulk_suffix(lo, hi) for lo, hi in parts], overwrite)
    if cfg.physics == "mist":
        per_part = _density_split(seed, parts, n_sources, cfg)
    else:
        per_part = [
            n_sources // len(parts) + (1 if k < n_sources % len(parts) else 0) for k in range(len(parts))
        ]
    jobs = [
        {
            "config": cfg,
            "seed": seed,
            "index": k,
            "lo": lo,
            "hi": hi,
            "n": n,
            "output_dir": str(out),
            "chunk_size": chunk_size,
        }
        for k, ((lo, hi), n) in enumerate(zip(parts, per_part, strict=True))
        if n > 0
    ]
    if workers == 1 or len(jobs) == 1:
        results = [_simulate_partition(j) for j in jobs]
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
            results = list(pool.map(_simulate_partition, jobs))
    for name in ("truth", "tmass", "ebv"):
        _merge_parquet([out / f".{name}.{j['index']:05d}.parquet" for j in jobs], out / f"{name}.parquet")
    apogee = {k: np.concatenate([r["apogee"][k] for r in results]) for k in results[0]["apogee"]}
    distmass = _distmass_rows(apogee, _rng(seed, 999_999), cfg.physics)
    _write_fits(out / "allStar-synthetic.fits", apogee, _ALLSTAR_FORMATS, "ALLSTAR")
    _write_fits(out / "APOGEE_DistMass-synthetic.fits", distmass, _DISTMASS_FORMATS, "DISTMASS")
    bulk_files = sorted(f for r in results for f in r["files"])
    write_text_atomically(out / MD5SUM, "".join(f"{md5_of(out / name)}  {name}\n" for name in bulk_files))
    summary: dict[str, Any] = {
        "n_sources": n_sources,
        "seed": seed,
        "physics": cfg.physics,
        "emulator": "packaged default" if cfg.emulator is None else Path(cfg.emulator).name,
        "partitions": [
            {"suffix": r["suffix"], "n_sources": r["n_sources"], "n_chunks": r["n_chunks"]} for r in results
        ],
        "n_giants": sum(r["n_giants"] for r in results),
        "n_apogee_rows": int(apogee["APOGEE_ID"].shape[0]),
        "n_distmass_rows": int(distmass["APOGEE_ID"].shape[0]),
        "files": [*bulk_files, MD5SUM, *PRODUCTS],
    }
    if cfg.physics == "mist":
        summary["xp_emulator"] = _emulator_summary(results)
    return summary


def _emulator_summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The MIST sky's `xp_emulator` summary (stars outside the emulator's range by reason), logged."""
    tally = {k: sum(r["xp_emulator"][k] for r in results) for k in results[0]["xp_emulator"]}
    outside = {k: tally[k] for k in _OUTSIDE}
    emulator = {
        "examined": tally["examined"],
        "kept": tally["kept"],
        "outside": outside,
        "fraction_outside": sum(outside.values()) / max(tally["examined"], 1),
    }
    logger.info(
        "MIST sky: %d of %d magnitude-limited stars (%.1f%%) outside the XP emulator's range, not simulated: %s",
        sum(outside.values()),
        tally["examined"],
        100.0 * emulator["fraction_outside"],
        outside,
    )
    return emulator
