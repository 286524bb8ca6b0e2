"""`simulate_sky`: write a synthetic Gaia sky in the real bulk formats, with its ground truth.

Output directory (all byte-identical for the same arguments):

- `XpContinuousMeanSpectrum_AAAAAA-BBBBBB.csv.gz`, `GaiaSource_AAAAAA-BBBBBB.csv.gz` per partition
  (gzip ECSV as the Gaia bulk download; each chunk's text is formatted by `xpengine.io.write_bulk_*`
  and streamed into one gzip member with MTIME 0 and no file name), rows sorted by source_id;
  `_MD5SUM.txt` (`md5  name` lines) for them.
- `allStar-synthetic.fits` (APOGEE DR17 allStar-like, HDU 1), `APOGEE_DistMass-synthetic.fits`
  (DistMass VAC-like, HDU 1), `tmass.parquet`, `ebv.parquet`, `truth.parquet`.

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
from xpengine.simulate import physics as ph
from xpengine.simulate import populations as pp
from xpengine.simulate.calibration import load_calibration
from xpengine.simulate.coords import bulk_suffix, default_partitions, healpix_nest_to_radec
from xpengine.simulate.observe import (
    apogee_labels,
    ebv_estimates,
    gaia_photometry_astrometry,
    tmass_photometry,
)
from xpengine.simulate.sky import SkyConfig, _propose, draw_stars
from xpengine.simulate.xp import (
    XPNoiseModel,
    add_xp_noise,
    emulator_domain,
    intrinsic_spectra,
    scale_and_redden,
)

__all__ = ["simulate_sky"]

logger = logging.getLogger(__name__)

_ASPCAP_STAR_BAD = 1 << 23
_ASPCAP_M_H_BAD = 1 << 19
_EXTRATARG_DUPLICATE = 16
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


def _observe_factory(cfg: SkyConfig, cal: dict[str, np.ndarray]):
    def observe(stars: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
        cls = (stars["evolutionary_state"] > 0).astype(np.int8)
        spec = intrinsic_spectra(
            cls,
            stars["teff"],
            stars["logg"],
            stars["fe_h"],
            stars["alpha_m"],
            rng if cfg.residual_variation else None,
            cal,
        )
        mu = 5.0 * np.log10(stars["distance_kpc"] * 1000.0) - 5.0
        obs = scale_and_redden(spec, stars["ebv"], stars["abs_g0"], mu)
        keep = (
            (obs["g"] <= cfg.g_limit) & (obs["g"] >= cfg.g_bright) & np.all(np.isfinite(obs["flux"]), axis=1)
        )
        return {
            "keep": keep,
            "flux": obs["flux"],
            "coefficients": obs["coefficients"],
            "g": obs["g"],
            "bp": obs["bp"],
            "rp": obs["rp"],
            "a_g": obs["a_g"],
            "a_bp": obs["a_bp"],
            "a_rp": obs["a_rp"],
            "distance_modulus": mu,
        }

    return observe


def _population_config(cfg: SkyConfig) -> pp.SkyPopulationConfig:
    """The MIST draw's knobs: `cfg.populations`, or its defaults with the sky's magnitude limits."""
    if cfg.populations is not None:
        return cfg.populations
    return pp.SkyPopulationConfig(g_limit=cfg.g_limit, g_bright=cfg.g_bright)


def _hpx_directions(hpx8_lo: int, hpx8_hi: int) -> pp.Directions:
    """Directions uniform over the HEALPix-8 pixels [hpx8_lo, hpx8_hi] (as `sky._propose` draws them: a
    level-8 pixel, a level-12 sub-pixel, a level-24 sub-pixel whose centre is the position), carrying the
    level-12 pixel `hpx12` (for the source_id) and the level-24 index `deep` within it."""

    def directions(rng: np.random.Generator, k: int) -> dict[str, np.ndarray]:
        hpx8 = rng.integers(hpx8_lo, hpx8_hi + 1, k, dtype=np.int64)
        sub12 = rng.integers(0, 256, k, dtype=np.int64)
        deep = rng.integers(0, 4**12, k, dtype=np.int64)
        hpx12 = (hpx8 << 8) | sub12
        ra, dec = healpix_nest_to_radec((hpx12 << 24) | deep, 24)
        return {"ra": ra, "dec": dec, "hpx12": hpx12, "deep": deep}

    return directions


#: reasons a MIST star has no emulated XP spectrum (counted in the summary's `xp_emulator`)
_OUTSIDE = (
    "dwarf_too_hot",
    "dwarf_too_cool",
    "giant_too_hot",
    "giant_too_cool",
    "logg_outside",
    "colour_mismatch",
    "non_finite",
)


def _observe_factory_mist(cfg: SkyConfig, cal: dict[str, np.ndarray], tally: dict[str, int]):
    """`observe` hook of :func:`xpengine.simulate.populations.draw_sky_arrays` for the MIST sky.

    Stars whose Teff or logg lie outside the range the spectral emulator was fitted on
    (:func:`xpengine.simulate.xp.emulator_domain`) are dropped (no extrapolated spectrum), and so are stars
    whose emulated spectrum's intrinsic BP − RP differs from MIST's by more than `cfg.xp_colour_tolerance`:
    inside the per-label ranges the degree-4 emulator still fails where the real training stars do not
    cover the label combination (metal-poor K dwarfs off by up to 1.6 mag in BP − RP against their own real
    photometry; M dwarfs at MIST's logg ≈ 4.85, above the ASPCAP dwarfs', 0.2–0.9 mag too red), while
    elsewhere it agrees with MIST to a median +0.010 mag, robust σ 0.032 mag. Each drop is counted in `tally`
    by reason, with `examined` = every star that reached this hook (passed the magnitude cut).
    The others get the emulator's spectrum at their labels, reddened with their E(B−V) (Fitzpatrick 1999)
    and scaled so that its synthetic G is the MIST G (abs_g0 + μ + A_G of the MIST tables: the magnitude cut
    of the draw stays exact); BP and RP are the spectrum's synthetic photometry, so gaia_source agrees with
    the XP coefficients as in DR3. `a_bp`, `a_rp` become A_G(MIST) + (A_BP − A_G)(spectrum) and `abs_bp0`,
    `abs_rp0` the spectrum's intrinsic colours added to MIST's M_G (so that bp = abs_bp0 + μ + a_bp); MIST's
    own values are kept as `mist_abs_bp0`, `mist_abs_rp0`, `mist_a_bp`, `mist_a_rp`.
    """

    def observe(stars: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
        dom = emulator_domain(stars["teff"], stars["logg"], stars["fe_h"], stars["alpha_m"], cal)
        inside = dom["inside"]
        dwarf = dom["cls"] == 0
        reasons = {
            "dwarf_too_hot": dwarf & dom["too_hot"],
            "dwarf_too_cool": dwarf & dom["too_cool"],
            "giant_too_hot": ~dwarf & dom["too_hot"],
            "giant_too_cool": ~dwarf & dom["too_cool"],
        }
        reasons["logg_outside"] = ~inside & ~np.any(np.stack(list(reasons.values())), axis=0)
        tally["examined"] += int(inside.size)
        for name, mask in reasons.items():
            tally[name] += int(mask.sum())
        n = inside.shape[0]
        sel = np.nonzero(inside)[0]
        spec = intrinsic_spectra(
            dom["cls"][sel],
            stars["teff"][sel],
            stars["logg"][sel],
            stars["fe_h"][sel],
            stars["alpha_m"][sel],
            rng if cfg.residual_variation else None,
            cal,
        )
        mu = 5.0 * np.log10(stars["distance_kpc"] * 1000.0) - 5.0
        obs = scale_and_redden(spec, stars["ebv"][sel], stars["abs_g0"][sel], mu[sel], a_g=stars["a_g"][sel])
        n_coef = obs["coefficients"].shape[1]
        out: dict[str, np.ndarray] = {
            "flux": np.full((n, obs["flux"].shape[1]), np.nan),
            "coefficients": np.full((n, n_coef), np.nan),
        }
        for key in ("flux", "coefficients"):
            out[key][sel] = obs[key]
        for b in ("bp", "rp"):
            out[f"mist_abs_{b}0"] = stars[f"abs_{b}0"]
            out[f"mist_a_{b}"] = stars[f"a_{b}"]
            a_b = np.full(n, np.nan)
            a_b[sel] = stars["a_g"][sel] + obs[f"a_{b}"] - obs["a_g"]
            out[f"a_{b}"] = a_b
            m = np.full(n, np.nan)
            m[sel] = obs[b]
            out[b] = m
            out[f"abs_{b}0"] = m - mu - a_b
        g = np.full(n, np.nan)
        g[sel] = obs["g"]  # = the MIST G of the draw's magnitude cut, to rounding
        out["g"] = g
        out["distance_modulus"] = mu
        out["xp_labels_clamped"] = dom["clamped"]
        colour = out["abs_bp0"] - out["abs_rp0"] - (stars["abs_bp0"] - stars["abs_rp0"])
        with np.errstate(invalid="ignore"):
            mismatch = inside & ~(np.abs(colour) <= cfg.xp_colour_tolerance)
        finite = np.all(np.isfinite(out["flux"]), axis=1) & np.isfinite(g)
        tally["colour_mismatch"] += int((mismatch & finite).sum())
        tally["non_finite"] += int((inside & ~finite).sum())
        keep = inside & ~mismatch & finite
        tally["kept"] += int(keep.sum())
        return {"keep": keep, **out}

    return observe


def _list_array(values: np.ndarray, mask: np.ndarray | None, value_type: pa.DataType) -> pa.Array:
    """(N, n) array -> list<value_type> Arrow array; rows where `mask` is True are null."""
    n, m = values.shape
    flat = pa.array(np.ascontiguousarray(values, dtype=value_type.to_pandas_dtype()).ravel(), value_type)
    offsets = pa.array(np.arange(0, (n + 1) * m, m, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, flat, mask=None if mask is None else pa.array(mask))


def _xp_table(source_id: np.ndarray, xp: dict[str, np.ndarray], model: XPNoiseModel) -> pa.Table:
    from xpengine.io.schema import XP_COLUMNS

    miss = {"bp": xp["missing_bp"], "rp": np.zeros_like(xp["missing_bp"])}
    cols: dict[str, pa.Array] = {
        "source_id": pa.array(source_id, pa.int64()),
        "solution_id": pa.array(xp["solution_id"], pa.int64()),
    }
    for b in ("bp", "rp"):
        m = miss[b]
        nb = xp[f"{b}_coefficients"].shape[1]
        scalar = {
            f"{b}_basis_function_id": np.full(len(source_id), 56 if b == "bp" else 57, np.int16),
            f"{b}_degrees_of_freedom": xp[f"{b}_degrees_of_freedom"],
            f"{b}_n_parameters": np.full(len(source_id), nb, np.int16),
            f"{b}_n_measurements": xp[f"{b}_n_measurements"],
            f"{b}_n_rejected_measurements": xp[f"{b}_n_rejected_measurements"],
            f"{b}_standard_deviation": xp[f"{b}_standard_deviation"],
            f"{b}_chi_squared": xp[f"{b}_chi_squared"],
        }
        for k, v in scalar.items():
            cols[k] = pa.array(v, mask=m)
        cols[f"{b}_coefficients"] = _list_array(xp[f"{b}_coefficients"], m, pa.float64())
        cols[f"{b}_coefficient_errors"] = _list_array(xp[f"{b}_coefficient_errors"], m, pa.float32())
        corr = np.stack(model.corr_vec[b])[xp[f"{b}_corr_level"]]  # (N, n(n-1)/2) float32
        cols[f"{b}_coefficient_correlations"] = _list_array(corr, m, pa.float32())
        cols[f"{b}_n_relevant_bases"] = pa.array(xp[f"{b}_n_relevant_bases"], mask=m)
        cols[f"{b}_relative_shrinking"] = pa.array(xp[f"{b}_relative_shrinking"], mask=m)
    order = [c.name for c in XP_COLUMNS]
    fields = [pa.field(c.name, c.type) for c in XP_COLUMNS]
    return pa.Table.from_arrays(
        [cols[n].cast(f.type) for n, f in zip(order, fields, strict=True)], schema=pa.schema(fields)
    )


def _gaia_source_table(source_id: np.ndarray, s: dict[str, np.ndarray], g: dict[str, np.ndarray]) -> pa.Table:
    from xpengine.io.schema import GAIA_SOURCE_COLUMNS

    values: dict[str, Any] = {
        "source_id": source_id,
        "ra": s["ra"],
        "dec": s["dec"],
        "l": s["l"],
        "b": s["b"],
        "ecl_lat": s["ecl_lat"],
        "has_xp_continuous": np.ones(len(source_id), dtype=bool),
        **g,
    }
    arrays, fields = [], []
    for spec in GAIA_SOURCE_COLUMNS:
        v = np.asarray(values[spec.name])
        mask = ~np.isfinite(v) if v.dtype.kind == "f" else None
        if v.dtype.kind == "f" and spec.type in (pa.float32(), pa.float64()):
            v = np.where(np.isfinite(v), v, 0.0).astype(spec.type.to_pandas_dtype())
        arrays.append(pa.array(v, type=spec.type, mask=mask))
        fields.append(pa.field(spec.name, spec.type))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


class _BulkStream:
    """Append chunks to one bulk `.csv.gz` file: each chunk is formatted by the project's bulk writer
    (`xpengine.io.write_bulk_*`, to a temporary plain-text file), its ECSV header kept from the first
    chunk only, and the text streamed into a gzip member with MTIME 0 and no file name (so identical
    content gives identical bytes). Memory stays at one chunk whatever the partition size. The stream
    writes `tmp`, the temporary name `xpengine.io.file_written_atomically` gives for `path`; close it
    before that block ends (which renames it onto `path`, or removes it on an error).

    level ≤ 3: ISA-L (fast, as the bulk writer); level > 3: zlib (smaller: small skies).
    """

    def __init__(self, path: Path, tmp: Path, writer, level: int) -> None:
        self.path = path
        self.writer = writer
        self.raw = open(tmp, "wb")
        if level <= 3:
            from isal import igzip

            self.gz = igzip.IGzipFile(filename="", mode="wb", fileobj=self.raw, compresslevel=level, mtime=0)
        else:
            import gzip

            self.gz = gzip.GzipFile(filename="", mode="wb", fileobj=self.raw, compresslevel=level, mtime=0)
        self.first = True

    def write(self, table: pa.Table) -> None:
        text = self.path.with_name(self.path.name + ".chunk.csv")
        self.writer(table, text, overwrite=True)
        with open(text, "rb") as fh:
            if not self.first:
                # skip the `# ` header lines and the column-name row
                line = fh.readline()
                while line.startswith(b"#"):
                    line = fh.readline()
            for block in iter(lambda: fh.read(1 << 22), b""):
                self.gz.write(block)
        text.unlink()
        self.first = False

    def close(self) -> None:
        try:
            self.gz.close()
        finally:
            self.raw.close()


def _apogee_id(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """2MASS-style designations `2MHHMMSSss±DDMMSSs`."""
    h = ra / 15.0
    hh = np.floor(h).astype(int)
    mm = np.floor((h - hh) * 60).astype(int)
    ss = (h - hh - mm / 60.0) * 3600.0
    sign = np.where(dec < 0, "-", "+")
    ad = np.abs(dec)
    dd = np.floor(ad).astype(int)
    dm = np.floor((ad - dd) * 60).astype(int)
    ds = (ad - dd - dm / 60.0) * 3600.0
    return np.array(
        [
            f"2M{a:02d}{b:02d}{int(c * 100):04d}{sg}{d:02d}{e:02d}{int(f * 10):03d}"
            for a, b, c, sg, d, e, f in zip(hh, mm, ss, sign, dd, dm, ds, strict=True)
        ]
    )


def _apogee_rows(
    s: dict[str, np.ndarray],
    tm: dict[str, np.ndarray],
    source_id: np.ndarray,
    rng: np.random.Generator,
    cfg: SkyConfig,
) -> dict[str, np.ndarray]:
    """APOGEE-like allStar rows (and the truth needed for DistMass) for the selected stars of a chunk.

    True M_H: physics "polynomial" :func:`xpengine.simulate.physics.metallicity_mh` (Salaris et al. 1993,
    0.638/0.362); "mist" the stars' `m_h` (0.694/0.306, the metallicity of their isochrone)."""
    ak_targ = tm["a_ks"] + rng.normal(0.0, 0.03, len(source_id))
    sel = apogee_labels({**tm, "ak_targ": ak_targ}, rng, cfg.apogee_fraction, cfg.survey_h_max)
    idx = np.nonzero(sel)[0]
    n = idx.size
    h = tm["h_m"][idx]
    snr = np.clip(160.0 * 10.0 ** (-0.2 * (h - 11.0)) * 10.0 ** rng.normal(0.0, 0.15, n), 5.0, 1500.0)
    teff_err = 8.0 + 600.0 / snr
    logg_err = 0.02 + 3.0 / snr
    mh_err = 0.008 + 1.0 / snr
    teff = s["teff"][idx] + rng.normal(0.0, 1.0, n) * np.hypot(teff_err, 40.0)
    logg = s["logg"][idx] + rng.normal(0.0, 1.0, n) * np.hypot(logg_err, 0.06)
    if cfg.physics == "mist":
        m_h_true = s["m_h"][idx]
    else:
        m_h_true = ph.metallicity_mh(s["fe_h"][idx], s["alpha_m"][idx])
    m_h = m_h_true + rng.normal(0.0, 1.0, n) * np.hypot(mh_err, 0.03)
    fe_h = s["fe_h"][idx] + rng.normal(0.0, 1.0, n) * np.hypot(mh_err, 0.03)
    alpha = s["alpha_m"][idx] + rng.normal(0.0, 1.0, n) * np.hypot(0.5 * mh_err, 0.02)
    # flags: STAR_BAD more likely at low SNR and at the Teff extremes; M_H_BAD rare; harmless bits
    p_bad = 0.01 + 0.10 * (snr < 30) + 0.05 * ((teff < 3700) | (teff > 6500))
    flag = np.zeros(n, dtype=np.int64)
    flag |= np.where(rng.random(n) < p_bad, _ASPCAP_STAR_BAD, 0)
    flag |= np.where(rng.random(n) < 0.01, _ASPCAP_M_H_BAD, 0)
    flag |= np.where(rng.random(n) < 0.10, 1 << 0, 0)  # TEFF_WARN-like warning
    flag |= np.where(rng.random(n) < 0.05, 1 << 8, 0)  # a SN warning-like bit
    starflag = np.where(rng.random(n) < 0.04, 1 << rng.integers(0, 20, n), 0).astype(np.int64)
    failed = rng.random(n) < 0.02  # ASPCAP produced no labels
    for arr in (teff, logg, m_h, fe_h, alpha):
        arr[failed] = np.nan
    tel = np.where(s["dec"][idx] < -20.0, "lco25m", "apo25m")
    field = np.array([f"{lv:03.0f}{bv:+03.0f}" for lv, bv in zip(s["l"][idx], s["b"][idx], strict=True)])
    gaia_id = np.where(rng.random(n) < 0.01, 0, source_id[idx])
    out = {
        "APOGEE_ID": _apogee_id(s["ra"][idx], s["dec"][idx]),
        "TELESCOPE": tel,
        "FIELD": field,
        "GAIAEDR3_SOURCE_ID": gaia_id.astype(np.int64),
        "TEFF": teff,
        "TEFF_ERR": teff_err,
        "LOGG": logg,
        "LOGG_ERR": logg_err,
        "M_H": m_h,
        "M_H_ERR": mh_err,
        "FE_H": fe_h,
        "ALPHA_M": alpha,
        "J": np.nan_to_num(tm["j_m"][idx], nan=99.0),
        "J_ERR": np.nan_to_num(tm["j_msigcom"][idx], nan=99.0),
        "H": np.nan_to_num(tm["h_m"][idx], nan=99.0),
        "H_ERR": np.nan_to_num(tm["h_msigcom"][idx], nan=99.0),
        "K": np.nan_to_num(tm["ks_m"][idx], nan=99.0),
        "K_ERR": np.nan_to_num(tm["ks_msigcom"][idx], nan=99.0),
        "AK_TARG": ak_targ[idx],
        "SFD_EBV": ph.dust_ebv(np.full(n, 50.0), s["l"][idx], s["b"][idx]),
        "SNR": snr,
        "ASPCAPFLAG": flag,
        "STARFLAG": starflag,
        "EXTRATARG": np.where(rng.random(n) < 0.05, 1 << 1, 0).astype(np.int16),  # some non-main targets
        # truth carried along for DistMass
        "_mass": s["mass"][idx],
        "_fe_h_true": s["fe_h"][idx],
        "_distance_pc": s["distance_kpc"][idx] * 1000.0,
        "_state": s["evolutionary_state"][idx],
    }
    if cfg.physics == "mist":  # what an isochrone age of the (noisy) mass needs
        out["_initial_mass"] = s["initial_mass"][idx]
        out["_eep"] = s["eep"][idx]
    # duplicates: a second visit set observed at the other telescope / field, EXTRATARG bit 4
    dup = np.nonzero(rng.random(n) < cfg.apogee_duplicate_rate)[0]
    if dup.size:
        rows = {k: v[dup].copy() for k, v in out.items()}
        rows["TELESCOPE"] = np.where(rows["TELESCOPE"] == "apo25m", "apo1m", "lco25m")
        rows["EXTRATARG"] = (rows["EXTRATARG"] | _EXTRATARG_DUPLICATE).astype(np.int16)
        for c, e in (("TEFF", 20.0), ("LOGG", 0.03), ("M_H", 0.02), ("FE_H", 0.02)):
            rows[c] = rows[c] + rng.normal(0.0, e, dup.size)
        out = {k: np.concatenate([out[k], rows[k]]) for k in out}
    return out


def _distmass_rows(a: dict[str, np.ndarray], rng: np.random.Generator, physics: str) -> dict[str, np.ndarray]:
    """DistMass-VAC-like rows for APOGEE giants (non-duplicates with labels), 90% coverage.

    Ages follow from the noisy mass (× 1 + N(0, 0.08)) and the noisy [Fe/H] or [M/H], as in the VAC: physics
    "polynomial" by the REFERENCE §7 mass–age relation; "mist" on the MIST isochrones, the age at which a
    star of that initial mass (the true initial mass × noisy/true current mass) and the noisy M_H (clipped
    to the grid) reaches the star's EEP (:func:`xpengine.simulate.isochrones.log_age_at_eep`; noise-free
    inputs give back the true age). NaN where no isochrone age ≤ 10^10.3 yr matches (the survey builder
    drops such stars); then both × 10^N(0, 0.03).
    """
    ok = (
        ((a["EXTRATARG"] & _EXTRATARG_DUPLICATE) == 0)
        & np.isfinite(a["LOGG"])
        & (a["LOGG"] < 3.5)
        & (a["_state"] > 0)
        & (rng.random(a["LOGG"].shape[0]) < 0.9)
    )
    idx = np.nonzero(ok)[0]
    n = idx.size
    mass_true = a["_mass"][idx]
    mass = mass_true * (1.0 + rng.normal(0.0, 0.08, n))
    mass = np.clip(mass, 0.3, 6.0)
    mass_err = mass * rng.uniform(0.06, 0.12, n)
    # ages follow from the (noisy) mass through the isochrone relation, as in the VAC
    if physics == "mist":
        from xpengine.simulate import isochrones as iso

        grid = iso.load_mist()
        m_h = np.clip(a["M_H"][idx], grid.feh[0], grid.feh[-1])
        log_age = np.full(n, np.nan)
        ok = np.isfinite(m_h)
        if ok.any():
            initial = a["_initial_mass"][idx] * mass / mass_true
            log_age[ok] = iso.log_age_at_eep(initial[ok], a["_eep"][idx][ok], m_h[ok], grid=grid)
        age_model_gyr = 10.0 ** (log_age - 9.0)
    else:
        age_model_gyr = ph.giant_age_gyr(mass, a["FE_H"][idx])
    age_yr = age_model_gyr * 1e9 * 10.0 ** rng.normal(0.0, 0.03, n)
    age_uncor = age_yr * 10.0 ** rng.normal(0.02, 0.03, n)
    age_err = np.stack([rng.uniform(0.08, 0.15, n), rng.uniform(0.08, 0.15, n)], axis=1)
    dist = a["_distance_pc"][idx] * (1.0 + rng.normal(0.0, 0.08, n))
    bitmask = np.where(rng.random(n) < 0.05, 1 << rng.integers(0, 8, n), 0).astype(np.int64)
    return {
        "APOGEE_ID": a["APOGEE_ID"][idx],
        "TEFF": a["TEFF"][idx],
        "LOGG": a["LOGG"][idx],
        "WEIGHTED_DIST": dist,
        "WEIGHTED_DIST_ERR": dist * rng.uniform(0.05, 0.12, n),
        "AGE_COR_SS": age_yr,
        "AGE_UNCOR_SS": age_uncor,
        "AGE_ERR": age_err,
        "MASS": mass,
        "MASS_ERR": mass_err,
        "BITMASK": bitmask,
    }


_ALLSTAR_FORMATS = {
    "APOGEE_ID": "18A",
    "TELESCOPE": "8A",
    "FIELD": "20A",
    "GAIAEDR3_SOURCE_ID": "K",
    "TEFF": "E",
    "TEFF_ERR": "E",
    "LOGG": "E",
    "LOGG_ERR": "E",
    "M_H": "E",
    "M_H_ERR": "E",
    "FE_H": "E",
    "ALPHA_M": "E",
    "J": "E",
    "J_ERR": "E",
    "H": "E",
    "H_ERR": "E",
    "K": "E",
    "K_ERR": "E",
    "AK_TARG": "E",
    "SFD_EBV": "E",
    "SNR": "E",
    "ASPCAPFLAG": "K",
    "STARFLAG": "K",
    "EXTRATARG": "I",
}
_DISTMASS_FORMATS = {
    "APOGEE_ID": "18A",
    "TEFF": "E",
    "LOGG": "E",
    "WEIGHTED_DIST": "E",
    "WEIGHTED_DIST_ERR": "E",
    "AGE_COR_SS": "D",
    "AGE_UNCOR_SS": "D",
    "AGE_ERR": "2E",
    "MASS": "E",
    "MASS_ERR": "E",
    "BITMASK": "K",
}


def _write_fits(path: Path, data: dict[str, np.ndarray], formats: dict[str, str], extname: str) -> None:
    from astropy.io import fits

    cols = [fits.Column(name=k, format=f, array=data[k]) for k, f in formats.items()]
    hdu = fits.BinTableHDU.from_columns(cols, name=extname)
    hdu.header["COMMENT"] = "xpengine synthetic sky (simulated data, not a real survey)"
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path, overwrite=True, checksum=False)


def _simulate_partition(job: dict[str, Any]) -> dict[str, Any]:
    """Simulate and write one partition (bulk files + Parquet parts); returns its APOGEE rows and counts.

    Runs in the main process or in a worker process (all inputs are plain data)."""
    import pyarrow.parquet as pq

    from xpengine.io import write_bulk_gaia_source, write_bulk_xp_continuous

    cfg: SkyConfig = job["config"]
    seed, k, lo, hi, n_part = job["seed"], job["index"], job["lo"], job["hi"], job["n"]
    out = Path(job["output_dir"])
    cal = load_calibration()
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
        "files": [f"XpContinuousMeanSpectrum_{suffix}.csv.gz", f"GaiaSource_{suffix}.csv.gz"],
    }


_TMASS_COLUMNS = ("j_m", "j_msigcom", "h_m", "h_msigcom", "ks_m", "ks_msigcom")


def _truth_columns(
    source_id: np.ndarray,
    suffix: str,
    s: dict[str, np.ndarray],
    tm: dict[str, np.ndarray],
    gcols: dict[str, np.ndarray],
    xp: dict[str, np.ndarray],
    missing_bp: np.ndarray,
) -> dict[str, np.ndarray]:
    return {
        "source_id": source_id,
        "partition": np.full(source_id.shape[0], suffix),
        "population": np.array(list(pp.POPULATIONS))[s["population"]],  # the polynomial sky has no bulge
        "evolutionary_state": np.array(["dwarf", "rgb", "red_clump"])[s["evolutionary_state"]],
        "mass": s["mass"],
        "age_gyr": s["age_gyr"],
        "teff": s["teff"],
        "logg": s["logg"],
        "fe_h": s["fe_h"],
        "alpha_m": s["alpha_m"],
        "m_h": ph.metallicity_mh(s["fe_h"], s["alpha_m"]),
        "luminosity_lsun": s["luminosity"],
        "mbol": s["mbol"],
        "abs_g": s["abs_g0"],
        "distance_pc": s["distance_kpc"] * 1000.0,
        "parallax_true_mas": 1.0 / s["distance_kpc"],
        "ebv": s["ebv"],
        "a_g": s["a_g"],
        "a_bp": s["a_bp"],
        "a_rp": s["a_rp"],
        "ra": s["ra"],
        "dec": s["dec"],
        "l": s["l"],
        "b": s["b"],
        "g": s["g"],
        "bp": s["bp"],
        "rp": s["rp"],
        "bp_rp": s["bp"] - s["rp"],
        "j": tm["j_true"],
        "h": tm["h_true"],
        "ks": tm["ks_true"],
        "parallax_zero_point": gcols["parallax_zero_point"],
        "n_transits": xp["n_transits"],
        "missing_bp": missing_bp,
    }


def _truth_columns_mist(truth: dict[str, np.ndarray], s: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The truth of a MIST sky: the columns of :func:`_truth_columns` with the isochrone's [M/H], then the
    MIST-only columns (isochrone coordinates, absolute magnitudes and extinctions in every
    band, MIST's own BP/RP for comparison with the spectrum's, the emulator clamp flag)."""
    # population: thin, thick, halo, bulge; evolutionary_state: the coarse states of the polynomial sky
    # (dwarf = pre-MS, MS and subgiant; rgb = RGB and AGB; red_clump = red and secondary clump), phase_name
    # the MIST phase (xpengine.simulate.isochrones.PHASES)
    out = dict(truth)
    out["m_h"] = s["m_h"]  # [Fe/H] + log10(0.694·10^[α/Fe] + 0.306): the isochrone's metallicity
    extra = {
        "phase_name": s["phase_name"],
        "initial_mass": s["initial_mass"],
        "log_age": s["log_age"],
        "eep": s["eep"],
        "abs_bp": s["abs_bp0"],
        "abs_rp": s["abs_rp0"],
        "abs_j": s["abs_j0"],
        "abs_h": s["abs_h0"],
        "abs_ks": s["abs_ks0"],
        "a_j": s["a_j"],
        "a_h": s["a_h"],
        "a_ks": s["a_ks"],
        "mist_abs_bp": s["mist_abs_bp0"],
        "mist_abs_rp": s["mist_abs_rp0"],
        "mist_a_bp": s["mist_a_bp"],
        "mist_a_rp": s["mist_a_rp"],
        "xp_labels_clamped": s["xp_labels_clamped"],
        "selection_weight": s["selection_weight"],
    }
    return {**out, **extra}


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
    overwrite : replace existing files (refused otherwise).

    Returns a summary dict (counts per partition, file names, number of giants and APOGEE rows).
    """
    if n_sources < 1:
        raise ValueError(f"n_sources={n_sources}; expected >= 1")
    if workers < 1:
        raise ValueError(f"workers={workers}; expected >= 1")
    cfg = SkyConfig() if config is None else config
    parts = partitions if partitions is not None else default_partitions(n_partitions)
    for lo, hi in parts:
        bulk_suffix(lo, hi)  # validates
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    products = [
        "allStar-synthetic.fits",
        "APOGEE_DistMass-synthetic.fits",
        "tmass.parquet",
        "ebv.parquet",
        "truth.parquet",
    ]
    if not overwrite:
        existing = [p for p in products if (out / p).exists()]
        existing += [
            f"{kind}_{bulk_suffix(lo, hi)}.csv.gz"
            for lo, hi in parts
            for kind in ("XpContinuousMeanSpectrum", "GaiaSource")
            if (out / f"{kind}_{bulk_suffix(lo, hi)}.csv.gz").exists()
        ]
        if existing:
            raise FileExistsError(f"{out}: {existing} exist; pass overwrite=True to replace them")
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
    write_text_atomically(
        out / "_MD5SUM.txt", "".join(f"{md5_of(out / name)}  {name}\n" for name in bulk_files)
    )
    summary: dict[str, Any] = {
        "n_sources": n_sources,
        "seed": seed,
        "physics": cfg.physics,
        "partitions": [
            {"suffix": r["suffix"], "n_sources": r["n_sources"], "n_chunks": r["n_chunks"]} for r in results
        ],
        "n_giants": sum(r["n_giants"] for r in results),
        "n_apogee_rows": int(apogee["APOGEE_ID"].shape[0]),
        "n_distmass_rows": int(distmass["APOGEE_ID"].shape[0]),
        "files": [*bulk_files, "_MD5SUM.txt", *products],
    }
    if cfg.physics == "mist":
        tally = {k: sum(r["xp_emulator"][k] for r in results) for k in results[0]["xp_emulator"]}
        outside = {k: tally[k] for k in _OUTSIDE}
        summary["xp_emulator"] = {
            "examined": tally["examined"],
            "kept": tally["kept"],
            "outside": outside,
            "fraction_outside": sum(outside.values()) / max(tally["examined"], 1),
        }
        logger.info(
            "MIST sky: %d of %d magnitude-limited stars (%.1f%%) outside the XP emulator's range, not simulated: %s",
            sum(outside.values()),
            tally["examined"],
            100.0 * summary["xp_emulator"]["fraction_outside"],
            outside,
        )
    return summary
