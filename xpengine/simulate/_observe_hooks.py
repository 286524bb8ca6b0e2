"""The `observe` hooks of :func:`xpengine.simulate.generate.simulate_sky`'s two draws: the polynomial
sky's (the emulator's spectrum of every star) and the MIST sky's (stars outside the XP emulator's range
dropped and counted by reason in `_OUTSIDE`), with the MIST draw's configuration and its directions
uniform over a range of HEALPix-8 pixels."""

from __future__ import annotations

import numpy as np

from xpengine.simulate import populations as pp
from xpengine.simulate.coords import healpix_nest_to_radec
from xpengine.simulate.sky import SkyConfig
from xpengine.simulate.xp import (
    emulator_domain,
    intrinsic_spectra,
    scale_and_redden,
)


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
