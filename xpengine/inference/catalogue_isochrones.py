"""The catalogue's isochrone step (`CatalogPredictor`): mass and age of the predicted stars outside the
model's mass/age domain from MIST isochrones (`xpengine.inference.isochrone_fit`), with the inputs the
catalogue has for them: M_G where the parallax is significant, the distance prior of their G and line of
sight, and their colour (the observed BP−RP's one-sided bound, or with an input E(B−V) the dereddened
(BP−RP)₀ on both sides).

The E(B−V) behind M_G and (BP−RP)₀ is the input's where given: the joined table's raw `ebv`, `ebv_error`
(`catalogue_batch` passes them as `ebv_input`, `ebv_input_error`), so that a map's 0 near the Sun counts as
0 (a value down to −0.05 as 0, its σ kept; lower is a placeholder), though the model's ln E(B−V) token
cannot hold it (flag NO_EXTINCTION); one without a σ > 0 gets 16 % of it, at least 0.01 mag. The token's
value comes first where it has one, as in the token builder. Else the model's own E(B−V), for M_G only. A
star whose fit an input E(B−V) entered is flagged ISOCHRONE_INPUT_EBV.

The same fit gives the distance of a fitted star without a parallax M_G (since session 28): its posterior
absolute G (which the distance prior of its G₀ and line of sight enters) with the extinction-corrected G,
d = 10^((G₀ − M_G) / 5 + 1) pc, σ_d / d = (ln 10 / 5) · sqrt(σ_M² + (A_G/E(B−V) · σ_E(B−V))²). The
catalogue puts it in place of the model's pseudo-luminosity distance, which the model learned on giants
(flag DISTANCE_FROM_ISOCHRONES; on simulated dwarfs the model's came out 4.5 times too far).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from xpengine.catalog.flag_policy import FlagPolicy, absolute_g, extinction_coefficients, high_uncertainty
from xpengine.features.flags import SourceFlag

__all__ = [
    "COLOUR_ARGS",
    "EBV_DEFAULT_ERROR_FLOOR",
    "EBV_DEFAULT_RELATIVE_ERROR",
    "ISOCHRONE_INPUTS",
    "bound_model_ebv",
    "dereddened_colour",
    "input_ebv",
    "isochrone_step",
    "weak_parallax",
]

ISOCHRONE_INPUTS = ("teff", "logg", "m_h")
"""The predicted tokens the isochrone mass and age of a star outside the mass/age domain start from."""
COLOUR_ARGS = ("bp_rp", "bp_rp_error", "bp_rp0", "bp_rp0_error")  # `fit_isochrones`' colour arguments
EBV_INPUT_MIN = -0.05
"""The lowest raw input E(B−V) [mag] taken (as 0): a map's noise around 0; below, a placeholder (−1, −99)."""
EBV_DEFAULT_RELATIVE_ERROR, EBV_DEFAULT_ERROR_FLOOR = 0.16, 0.01
"""σ of an input E(B−V) given without one: 16 % of it (the accuracy Schlegel, Finkbeiner & Davis 1998, ApJ
500, 525, state for their map), at least 0.01 mag (our choice: a map's zero point), never an exact value."""


def input_ebv(
    batch: dict[str, np.ndarray], logebv: np.ndarray | None, logebv_error: np.ndarray | None, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """E(B−V), σ [mag] and given (N,) of an input E(B−V): the logebv token's where it has one (the token
    builder takes a `logebv` column before `ebv`), else the raw input's where the batch has it, from
    `EBV_INPUT_MIN` up (≤ 0 as 0: a map's 0 near the Sun; lower is a placeholder, none); NaN and False
    elsewhere. A given E(B−V) without a σ > 0 has the default one (`EBV_DEFAULT_RELATIVE_ERROR`, at
    least `EBV_DEFAULT_ERROR_FLOOR`)."""
    ebv, err = np.full(n, np.nan), np.full(n, np.nan)
    if logebv is not None:
        ebv = np.exp(np.asarray(logebv, dtype=np.float64))
        if logebv_error is not None:
            err = ebv * np.abs(np.asarray(logebv_error, dtype=np.float64))
    raw = batch.get("ebv_input")
    if raw is not None:
        raw = np.asarray(raw, dtype=np.float64)
        raw_err = np.abs(np.asarray(batch.get("ebv_input_error", np.full(n, np.nan)), dtype=np.float64))
        with np.errstate(invalid="ignore"):
            use = ~np.isfinite(ebv) & (raw >= EBV_INPUT_MIN)
        ebv = np.where(use, np.maximum(raw, 0.0), ebv)
        err = np.where(use, raw_err, err)
    given = np.isfinite(ebv)
    default = np.maximum(EBV_DEFAULT_RELATIVE_ERROR * np.nan_to_num(ebv), EBV_DEFAULT_ERROR_FLOOR)
    with np.errstate(invalid="ignore"):
        stated = np.isfinite(err) & (err > 0)  # the token builder stores a σ not given as 0
    return ebv, np.where(given & ~stated, default, err), given


def dereddened_colour(
    bprp: np.ndarray,
    bprp_error: np.ndarray | None,
    ebv: np.ndarray,
    ebv_err: np.ndarray,
    k_c: np.ndarray,
    given,
) -> tuple[np.ndarray, np.ndarray]:
    """(BP−RP)₀ and σ (N,) of the stars whose E(B−V) is an input's (`given`; NaN elsewhere): the observed
    colour less E(BP−RP) = k_c · E(B−V), σ from the colour's (0 where NaN) and E(B−V)'s. Never the model's
    own E(B−V): it comes from the same spectrum as its Teff."""
    err = np.hypot(np.nan_to_num(np.zeros_like(bprp) if bprp_error is None else bprp_error), k_c * ebv_err)
    return np.where(given, bprp - k_c * ebv, np.nan), err


def model_ebv(
    out: dict[str, np.ndarray], means: dict[str, np.ndarray], sigmas: dict[str, np.ndarray], n: int
):
    """The model's E(B−V) and σ (N,): the catalogue's calibrated `ebv` column where written, else its raw
    ln E(B−V); NaN where neither."""
    if "ebv" in out:
        return out["ebv"].astype(np.float64), out["ebv_error"].astype(np.float64)
    if "logebv" in means:
        e = np.exp(means["logebv"])
        return e, e * sigmas["logebv"]
    return np.full(n, np.nan), np.full(n, np.nan)


def absolute_g_inputs(
    g, dist, dist_err, by_parallax, ebv, ebv_err, a_g_per_ebv
) -> tuple[np.ndarray, np.ndarray]:
    """M_G and σ (N,) of the stars with a significant parallax and a known E(B−V) (`flag_policy.absolute_g`,
    A_G = a_g_per_ebv · E(B−V)), NaN elsewhere (the isochrone fit then goes without it); σ from the
    distance's and E(B−V)'s."""
    abs_g = absolute_g(g, dist, ebv, a_g_per_ebv)
    with np.errstate(invalid="ignore", divide="ignore"):
        err = np.hypot(5.0 / np.log(10.0) * dist_err / dist, a_g_per_ebv * ebv_err)
    ok = by_parallax & np.isfinite(abs_g) & np.isfinite(err)
    return np.where(ok, abs_g, np.nan), np.where(ok, err, np.nan)


def weak_parallax(batch: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The zero-point-corrected parallax and σ [mas] (N,) of each star whose astrometry is trusted (RUWE ≤
    `MAX_RUWE` or unknown; σ > 0; not below −`MAX_NEGATIVE_SIGMA` σ, the features' spurious solution), NaN
    elsewhere: the isochrone fit's parallax term of a star without a parallax M_G
    (`galactic_prior.log_weight_table`)."""
    from xpengine.features.astrometry import MAX_NEGATIVE_SIGMA, MAX_RUWE

    plx = np.asarray(batch["parallax_corrected"], dtype=np.float64)
    err = np.asarray(batch["parallax_corrected_error"], dtype=np.float64)
    ruwe = batch.get("ruwe")
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(plx) & np.isfinite(err) & (err > 0)
        ok &= ~(plx < -MAX_NEGATIVE_SIGMA * err)  # a spurious solution (NO_PARALLAX), found by a review
        if ruwe is not None:
            ok &= ~(np.asarray(ruwe, dtype=np.float64) > MAX_RUWE)
    return np.where(ok, plx, np.nan), np.where(ok, err, np.nan)


def isochrone_step(
    policy: FlagPolicy,
    batch: dict[str, np.ndarray],
    out: dict[str, np.ndarray],
    means: dict[str, np.ndarray],
    sigmas: dict[str, np.ndarray],
    flags: np.ndarray,
    *,
    g: np.ndarray,
    dist: tuple[np.ndarray, np.ndarray],
    by_parallax: np.ndarray,
    logebv: tuple[np.ndarray | None, np.ndarray | None],
    colour: tuple[np.ndarray | None, np.ndarray | None],
    device: Any = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mass and age of the predicted stars outside the mass/age domain, in place in `out` (module
    docstring): g the G the XP were normalised by; dist (distance, σ) [pc]; logebv the ln E(B−V) token's
    (values, errors) or Nones; colour the `bprp` token's (values, errors) or Nones. Returns the flags
    (ISOCHRONE_INPUT_EBV on the fitted rows whose fit the input E(B−V) entered) and the isochrone distance
    and σ [pc] (N,) of the fitted rows without a parallax M_G (module docstring), NaN elsewhere."""
    n = flags.shape[0]
    e_in, e_in_err, given = input_ebv(batch, *logebv, n)
    e_mod, e_mod_err = model_ebv(out, means, sigmas, n)
    ebv, ebv_err = np.where(given, e_in, e_mod), np.where(given, e_in_err, e_mod_err)
    bprp, bprp_error = colour
    # an input E(B−V), or the model's raw one where the catalogue has no `ebv` column (`bound_model_ebv`
    # held that one), held to the most the star's colour allows (`ebv_bound`)
    held = given if "ebv" in out else np.ones(n, bool)
    held &= policy.ebv_colour_bound
    ebv, ebv_err, hit = _held_to_colour(policy, ebv, ebv_err, held, means, sigmas, bprp, bprp_error)
    k_g, k_c = extinction_coefficients(policy, ebv, *map(means.get, ISOCHRONE_INPUTS))
    abs_g = absolute_g_inputs(g, *dist, by_parallax, ebv, ebv_err, k_g)
    bprp0, bprp0_error = (None, None)
    if bprp is not None:  # the input E(B−V) gives (BP−RP)₀ ± σ, a two-sided term
        bprp0, bprp0_error = dereddened_colour(bprp, bprp_error, ebv, ebv_err, k_c, given)
    # the distance prior's G₀ and line of sight, for stars without a parallax M_G (`galactic_prior`), with
    # the likelihood of a parallax too uncertain for one (RUWE ≤ 1.4 or unknown, as the catalogue's own)
    sky = (
        np.where(np.isfinite(abs_g[0]), np.nan, g - k_g * ebv),
        batch["l"],
        batch["b"],
        *weak_parallax(batch),
    )
    colour = (bprp, bprp_error, bprp0, bprp0_error)
    flags, post_g, post_g_error = isochrone_mass_age(
        policy, out, means, sigmas, flags, abs_g, sky, device, colour, ebv_given=given
    )
    # a held E(B−V) is flagged where the fit took it: an input's where it entered (ISOCHRONE_INPUT_EBV),
    # the model's raw one (no `ebv` column, which `bound_model_ebv` flags) where the fit answered
    took = np.where(given, SourceFlag.ISOCHRONE_INPUT_EBV, SourceFlag.MASS_AGE_FROM_ISOCHRONES).astype(
        np.int64
    )
    flags[hit & ((flags & took) != 0)] |= int(SourceFlag.EBV_COLOUR_BOUND)
    with np.errstate(invalid="ignore", over="ignore"):
        d = 10.0 ** ((sky[0] - post_g) / 5.0 + 1.0)  # G₀ is NaN where the star has a parallax M_G
        d_err = d * np.log(10.0) / 5.0 * np.hypot(post_g_error, k_g * ebv_err)
    # a distance whose σ is unknown (an E(B−V) without one) is kept, its σ NaN (review of session 29)
    ok = np.isfinite(d)
    return flags, np.where(ok, d, np.nan), np.where(ok & np.isfinite(d_err), d_err, np.nan)


def _held_to_colour(policy, ebv, ebv_err, rows, means, sigmas, bprp, bprp_error):
    """E(B−V), σ (N,) with those of `rows` held to the bound of the stars' observed colour and predicted
    labels (`ebv_bound`), and (N,) bool where the estimate was above it (flag EBV_COLOUR_BOUND); unchanged
    without a colour or a Teff. E(BP−RP)/E(B−V) is taken at the estimate clipped to 0–0.5 mag, where a
    held value lands (at 7.9 mag it is 15 % lower for a B star, a looser bound)."""
    from xpengine.inference.ebv_bound import bound_ebv, colour_ebv_bound

    if bprp is None or "teff" not in means:
        return ebv, ebv_err, np.zeros(ebv.shape[0], bool)
    _, k_c = extinction_coefficients(policy, np.clip(ebv, 0.0, 0.5), *map(means.get, ISOCHRONE_INPUTS))
    err = np.zeros(ebv.shape[0]) if bprp_error is None else bprp_error
    labels = [a for t in ("logg", "m_h") for a in (means.get(t), sigmas.get(t))]
    e_c, sigma_c = colour_ebv_bound(means["teff"], sigmas["teff"], bprp, err, k_c, *labels)
    return bound_ebv(ebv, ebv_err, np.where(rows, e_c, np.nan), sigma_c)


def bound_model_ebv(policy, out, means, sigmas, bprp, bprp_error, flags) -> np.ndarray:
    """The catalogue's `ebv` column (the model's E(B−V)) and its σ held, in place in `out`, to the most
    the star's observed BP−RP allows at its predicted labels (`xpengine.inference.ebv_bound`); returns the
    flags with EBV_COLOUR_BOUND on the rows whose E(B−V) was above that bound. Nothing without an `ebv`
    column or a colour."""
    if "ebv" not in out:
        return flags
    e, s = (out[k].astype(np.float64) for k in ("ebv", "ebv_error"))
    e, s, hit = _held_to_colour(policy, e, s, np.ones(e.shape[0], bool), means, sigmas, bprp, bprp_error)
    out["ebv"], out["ebv_error"] = e.astype(out["ebv"].dtype), s.astype(out["ebv_error"].dtype)
    flags = flags.copy()
    flags[hit] |= int(SourceFlag.EBV_COLOUR_BOUND)
    return flags


def isochrone_mass_age(
    policy: FlagPolicy,
    out: dict[str, np.ndarray],
    means: dict[str, np.ndarray],
    sigmas: dict[str, np.ndarray],
    flags: np.ndarray,
    abs_g: tuple[np.ndarray, np.ndarray],
    sky: tuple[np.ndarray, ...],
    device: object = None,
    colour: tuple[np.ndarray | None, ...] = (None, None, None, None),
    ebv_given: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mass and age of the predicted stars outside the mass/age domain, in place in `out`: the MIST
    isochrone posterior (`xpengine.inference.isochrone_fit`) at their predicted Teff, logg and [M/H] with
    σ and, where known, M_G (abs_g: M_G and σ), with the distance prior of their extinction-corrected G and
    line of sight (sky: G₀, l, b and optionally the parallax and σ of `weak_parallax`; `galactic_prior`)
    where known (its χ² a measurement in the fit's; a star that no isochrone fits with it is fitted without,
    flagged PARALLAX_CONFLICT), and the bound of their observed BP−RP and
    σ (colour: the `bprp` token, None without it; extinction only reddens), or, with an input E(B−V), of
    their dereddened (BP−RP)₀ and σ (colour's last two, NaN elsewhere). Rows given it are flagged
    MASS_AGE_FROM_ISOCHRONES; a star off every isochrone keeps the model's values. HIGH_UNCERTAINTY is
    judged again on the final columns. ebv_given (N,): the stars whose E(B−V) behind abs_g, sky's G₀ and the
    dereddened colour is an input's; those of them whose fit it entered (M_G, a distance prior, or a
    (BP−RP)₀ the fit kept) are flagged ISOCHRONE_INPUT_EBV. Returns the flags and the rows' posterior M_G
    and σ [mag] (N,; NaN but on the rows given the fit's mass and age)."""
    outside = (flags & int(SourceFlag.OUTSIDE_TRAINING_DOMAIN)) != 0
    predicted = (flags & int(SourceFlag.NO_PREDICTION)) == 0
    rows = np.flatnonzero(outside & predicted)
    post_g, post_g_error = np.full(flags.shape[0], np.nan), np.full(flags.shape[0], np.nan)
    if rows.size == 0:
        return flags, post_g, post_g_error
    from xpengine.inference.galactic_prior import log_weight_table, parallax_chi2_table
    from xpengine.inference.isochrone_fit import fit_isochrones, load_fit_grid

    g0, *line_of_sight = (np.asarray(a)[rows] for a in sky[:3])
    prior = log_weight_table(g0, *line_of_sight)
    plx_chi2 = None if len(sky) < 5 else parallax_chi2_table(g0, *(np.asarray(a)[rows] for a in sky[3:5]))
    fit = fit_isochrones(
        load_fit_grid(),
        *(a[rows] for t in ISOCHRONE_INPUTS for a in (means[t], sigmas[t])),
        *(a[rows] for a in abs_g),
        **{k: None if c is None else np.asarray(c)[rows] for k, c in zip(COLOUR_ARGS, colour, strict=True)},
        distance_prior=prior,
        parallax_chi2=plx_chi2,
        device=device,
    )
    got = np.isfinite(fit["mass"]) & np.isfinite(fit["age"])
    entered = np.zeros(rows.size, bool)
    if ebv_given is not None:  # the input E(B−V) reached the fit through M_G, G₀ (the distance prior,
        # the parallax's term, the isochrone distance) or (BP−RP)₀
        reached = np.isfinite(abs_g[0][rows]) | np.isfinite(g0) | fit["bp_rp0_used"]
        entered = np.asarray(ebv_given)[rows] & reached & got
    input_ebv_rows = rows[entered]
    conflict_rows = rows[got & fit["parallax_dropped"]]
    rows = rows[got]
    post_g[rows], post_g_error[rows] = fit["abs_g"][got], fit["abs_g_error"][got]
    for lab in ("mass", "age"):
        if lab in out:
            out[lab][rows] = fit[lab][got]
            out[f"{lab}_error"][rows] = fit[f"{lab}_error"][got]
    flags = flags.copy()
    flags[rows] |= int(SourceFlag.MASS_AGE_FROM_ISOCHRONES)
    flags[input_ebv_rows] |= int(SourceFlag.ISOCHRONE_INPUT_EBV)
    flags[conflict_rows] |= int(SourceFlag.PARALLAX_CONFLICT)
    flags &= ~np.int64(SourceFlag.HIGH_UNCERTAINTY)
    flags[high_uncertainty(policy, out)] |= int(SourceFlag.HIGH_UNCERTAINTY)
    return flags, post_g, post_g_error
