"""The catalogue's model stage as plain Python (no Ray): features of a joined XP table, and the predictor
that turns token batches into catalogue columns (labels, σ, distance) with flags.

`catalogue_batch` builds one token batch from a joined XP (+ gaia_source, 2MASS, E(B−V)) table;
`CatalogPredictor` loads a model once and serves it. The Ray job (`xpengine.pipeline`) maps both over
partitions; `Predictor.from_xp` calls them on a notebook's table, so both get the same features and flags.
The flag policy (training domain, error thresholds) is `xpengine.catalog.flag_policy.catalogue_flags`,
a pure function of the predicted and measured arrays.
"""

from __future__ import annotations

import logging

import numpy as np

from xpengine.catalog.flag_policy import (
    DEFAULT_FLAG_POLICY,
    FlagPolicy,
    catalogue_flags,
)
from xpengine.catalog.schema import (
    LABELS,
    MASS_AGE_LABELS,
    check_learned_labels,
    label_tokens,
    model_default_labels,
    tokens_to_labels,
)
from xpengine.catalog.sky import icrs_to_galactic
from xpengine.features._columns import InputColumns
from xpengine.features._token_steps import sky_position
from xpengine.features.astrometry import FALLBACK_ZERO_POINT_MAS, parallax_distance
from xpengine.features.flags import SourceFlag, read_without_relevancy
from xpengine.inference.catalogue_isochrones import ISOCHRONE_INPUTS, bound_model_ebv, isochrone_step
from xpengine.model.calibration import all_xp_orders
from xpengine.model.luminosity_domain import outside_domain

__all__ = [
    "ISOCHRONE_INPUTS",
    "PARALLAX_COLUMNS",
    "PASSTHROUGH_FLOAT64",
    "CatalogPredictor",
    "catalogue_batch",
]

log = logging.getLogger(__name__)

PASSTHROUGH_FLOAT64 = ("ra", "dec", "l", "b")
PARALLAX_COLUMNS = ("parallax_corrected", "parallax_corrected_error", "ruwe")


def _corrected_parallax(
    col, n: int, zero_point_fallback: float | None = None, g_mag: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Zero-point corrected parallax, its error [mas] and RUWE (N,) for the catalogue's distance: the
    rules of the g_fakemag token (zero point, RUWE, negative-parallax rule) without its σ_ϖ ceiling;
    NaN where the parallax is unusable. col: the joined table's column reader (`_ColumnReader`); g_mag
    (N,): the G the tokens used (gaia_source's, or the synthetic G of the star's own XP where it has
    none: G_FROM_XP), as the g_fakemag token does; None: the table's phot_g_mean_mag."""
    from xpengine.features.astrometry import pseudo_luminosity

    if n == 0 or not col.has("parallax"):
        nan = np.full(n, np.nan)
        return nan, nan, nan
    # read as the tokens read it, so that the context and the distance take one zero point
    position = (None, None) if col.columns is None else sky_position(col.columns)
    lum = pseudo_luminosity(
        col("phot_g_mean_mag") if g_mag is None else np.asarray(g_mag, dtype=np.float64),
        col("parallax"),
        col("parallax_error"),
        ruwe=col("ruwe"),
        nu_eff_used_in_astrometry=col("nu_eff_used_in_astrometry"),
        pseudocolour=col("pseudocolour"),
        ecl_lat=col("ecl_lat"),
        astrometric_params_solved=col("astrometric_params_solved"),
        max_parallax_error=np.inf,
        zero_point_fallback=zero_point_fallback,
        ra=position[0],
        dec=position[1],
    )
    # σ_ϖ as the zero point left it (widened where the fallback was used)
    return lum.parallax_corrected_mas, lum.parallax_error_mas, col("ruwe")


class _ColumnReader:
    """col(name, dtype=float64) → (N,) the joined table's column `name` as numpy converts it (text and
    decimal columns too, as the catalogue always read them), all NaN where the table has none; found as
    the token builder finds it (`features._columns.InputColumns`: exactly, else in another case, a
    VOTable's PARALLAX), so that the context and the distance read the same column (a review found
    upper-case names fed the model but not the distance). One per batch (session 31's review)."""

    def __init__(self, table) -> None:
        self.table = table
        self.n = 0 if table is None else table.num_rows
        self.columns = None if table is None else InputColumns(table)

    def has(self, name: str) -> bool:
        return self.columns is not None and self.columns.has(name)

    def __call__(self, name: str, dtype=np.float64) -> np.ndarray:
        if not self.has(name):
            return np.full(self.n, np.nan, dtype=dtype)
        found = self.columns.column_name(name)
        return self.table.column(found).to_numpy(zero_copy_only=False).astype(dtype)


def catalogue_batch(
    joined, vocab, name: str | None = None, *, representation=None, **token_options
) -> dict[str, np.ndarray]:
    """One batch of the catalogue's predictor stage from a joined XP (+ gaia_source, 2MASS, E(B−V))
    table: tokens, flags and the columns the catalogue passes through. Used by the job and by
    `predict_xp`, so a notebook gets exactly the catalogue's features.

    name: what the caller calls the table (unused: a batch carries no partition bookkeeping; the Ray
    job keeps that on its driver, `xpengine.pipeline.bookkeeping`)."""
    from xpengine.features import build_tokens

    # the job's zero point where Lindegren's cannot be made, unless told (None: dropped, as training's)
    token_options.setdefault("zero_point_fallback", FALLBACK_ZERO_POINT_MAS)
    tok = build_tokens(joined, vocab, representation=representation, **token_options)
    col = _ColumnReader(joined)
    plx, plx_err, ruwe = _corrected_parallax(col, col.n, token_options.get("zero_point_fallback"), tok.g_mag)
    sky = {c: col(c) for c in PASSTHROUGH_FLOAT64}
    missing = ~(np.isfinite(sky["l"]) & np.isfinite(sky["b"]))
    if missing.any():  # a gaia_source extract without l, b (they are optional): from ra, dec
        l_deg, b_deg = icrs_to_galactic(sky["ra"][missing], sky["dec"][missing])
        sky["l"][missing], sky["b"][missing] = l_deg, b_deg
    return {
        "source_id": tok.source_id.astype(np.int64),
        "values": tok.values.astype(np.float32),
        "errors": tok.errors.astype(np.float32),
        "flags": tok.flags.astype(np.int64),
        **sky,
        "phot_g_mean_mag": col("phot_g_mean_mag", np.float32),
        "g_used": tok.g_mag.astype(np.float64),
        "parallax_corrected": plx,
        "parallax_corrected_error": plx_err,
        "ruwe": ruwe,
        # the input E(B−V) as given (≤ 0 too, which its ln token cannot hold): the isochrone step's
        "ebv_input": col("ebv"),
        "ebv_input_error": col("ebv_error"),
    }


class CatalogPredictor:
    """map_batches callable: token batches → catalogue columns (physical units) with flags.

    Loads the model once per actor. Rows with no input token get NaN labels and the NO_PREDICTION
    flag; every row comes out exactly once. flag_policy: the thresholds of the catalogue's quality
    flags (`xpengine.catalog.flag_policy.FlagPolicy`; None = the catalogue's, `DEFAULT_FLAG_POLICY`).
    """

    def __init__(
        self,
        model: str,
        labels: list[str] | None,
        *,
        device: str = "auto",
        dtype: str = "float32",
        batch_size: int = 1024,
        inputs: list[str] | None = None,
        torch_threads: int | None = None,
        flag_policy: FlagPolicy | None = None,
        sim_to_real: bool = True,
    ) -> None:
        """labels: catalogue labels; None = the model's default labels
        (`xpengine.catalog.schema.model_default_labels`); a label the model was not trained to
        predict is a ValueError. inputs: context tokens (token-list syntax); None = the model's
        default inputs; tokens the vocabulary lacks or the model never read are left out (logged).
        sim_to_real: the stars are real (the Predictor's `sim_to_real`; False for a simulated sky)."""
        from xpengine.inference.predictor import Predictor

        if torch_threads:
            import torch

            torch.set_num_threads(int(torch_threads))
        # a loaded Predictor (notebooks: `predict_xp`) or a checkpoint / bundled model name
        self.predictor = (
            model
            if isinstance(model, Predictor)
            else Predictor.load(model, device=device, dtype=dtype, sim_to_real=sim_to_real)
        )
        model = self.predictor.model_name if isinstance(model, Predictor) else model
        learned = self.predictor.learned
        if labels is None:
            labels = model_default_labels(self.predictor.checkpoint.train_config or {}, learned, model)
        self.labels = list(labels)
        vocab = self.predictor.vocabulary
        missing = [t for t in label_tokens(self.labels) if t not in vocab]
        if missing:
            raise ValueError(f"model {model!r} cannot predict tokens {missing}; its vocabulary: {vocab.name}")
        check_learned_labels(self.labels, learned, model)
        self.request = list(dict.fromkeys(label_tokens(self.labels)))
        # the model's pseudo-luminosity gives a distance where the parallax does not (see __call__),
        # when the model learned to predict it
        self.model_distance = "g_fakemag" in learned.outputs and "g_fakemag" not in self.request
        self.inputs = None
        if inputs:
            chosen: list[str] = []
            for item in inputs:
                try:
                    chosen += [t for t in vocab.select([item]) if t not in chosen]
                except ValueError:
                    log.info("input token %r is not in the model's vocabulary: skipped", item)
            self.inputs = self.predictor.select_inputs(chosen)  # less what the model never read
        context = self.inputs if self.inputs is not None else self.predictor.default_inputs
        self._context_cols = np.asarray(vocab.indices(list(context)), dtype=np.int64)
        # rows with every XP order of the context take the calibration's every-order entries (ALL_XP_ORDERS)
        xp_names = set(vocab.xp_names)
        self._xp_context_cols = [vocab.index(t) for t in context if t in xp_names]
        cal = self.predictor.calibration
        from xpengine.inference.predictor import DERIVED  # the predictor is loaded by now

        used = {*self.request, *(DERIVED[t] for t in self.request if t in DERIVED)}  # age from ln_age
        self._all_orders_calibrated = cal is not None and bool(used & set(cal.all_orders))
        self.flag_policy = flag_policy if flag_policy is not None else DEFAULT_FLAG_POLICY
        # the flag policy judges the mass/age domain by the predicted Teff and logg: asked for whenever
        # the catalogue holds mass or age, whether or not they are among its labels; the isochrone
        # mass and age of the stars outside it (`catalogue_isochrones`) also need [M/H]
        holds_mass_age = bool(MASS_AGE_LABELS & set(self.labels))
        self._isochrones = (
            holds_mass_age
            and self.flag_policy.mass_age_from_isochrones
            and all(t in learned.outputs for t in ISOCHRONE_INPUTS)
        )
        domain_tokens = ("teff", "logg")
        if self._isochrones:
            # and E(B−V) for M_G, unless an input gives it
            domain_tokens = (*ISOCHRONE_INPUTS, *(("logebv",) if "logebv" not in context else ()))
        self._domain_request = [
            t for t in domain_tokens if holds_mass_age and t in learned.outputs and t not in self.request
        ]
        # the `ebv` column is held to the bound of the star's colour at its labels (`ebv_bound`): they are
        # predicted for it whether or not they are among the labels (a review found none without `teff`)
        self._ebv_bound = self.flag_policy.ebv_colour_bound and "ebv" in self.labels and "bprp" in vocab
        self._ebv_bound &= "teff" in learned.outputs
        if self._ebv_bound:
            bound_tokens = [t for t in ISOCHRONE_INPUTS if t in learned.outputs and t not in self.request]
            self._domain_request += [t for t in bound_tokens if t not in self._domain_request]
        if self._isochrones or self._ebv_bound:
            from xpengine.inference.isochrone_fit import load_fit_grid

            load_fit_grid()  # now, so that a node without the grid fails at start, not mid-job
        # a requested token that is also an input is asked for in a pass of its own without it (else the
        # model echoes a damped copy of its input: e.g. `ebv` with logebv among the inputs)
        self._echo_inputs = {
            t: [c for c in context if c != t] for t in (*self.request, *self._domain_request) if t in context
        }
        for t in self._echo_inputs:
            log.info("token %r is both requested and an input: predicted in a pass without it", t)
        self._fakemag_in_context = "g_fakemag" in context
        self._inputs_without_fakemag = [t for t in context if t != "g_fakemag"]
        self.batch_size = batch_size
        self._fakemag_col = vocab.index("g_fakemag") if "g_fakemag" in vocab else None
        # input-token columns the flag policy reads (None: not in the vocabulary)
        self._logebv_col = vocab.index("logebv") if "logebv" in vocab else None
        self._bprp_col = vocab.index("bprp") if "bprp" in vocab else None

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = np.asarray(batch["values"], dtype=np.float32)
        errors = np.asarray(batch["errors"], dtype=np.float32)
        flags = np.asarray(batch["flags"], dtype=np.int64).copy()
        # the G the star's XP were normalised by: gaia_source's, or the synthetic G of its own XP
        # (G_FROM_XP); the calibration's G bins and the model distance need it
        g = np.asarray(batch.get("g_used", batch["phot_g_mean_mag"]), dtype=np.float64)
        fakemag = _token_column(values, self._fakemag_col)
        fakemag_error = _token_column(errors, self._fakemag_col)
        bprp = _token_column(values, self._bprp_col)
        bprp_error = _token_column(errors, self._bprp_col)

        # a pseudo-luminosity above the range the model learned it in (a dwarf's, for a model whose
        # parallaxes were giants') is left out of the star's context (`xpengine.model.luminosity_domain`)
        lum_out = outside_domain(
            self.predictor.learned.luminosity_index_max, fakemag, fakemag_error, bprp, bprp_error
        )
        if lum_out is not None and lum_out.any() and self._fakemag_in_context:
            values = values.copy()
            values[lum_out, self._fakemag_col] = np.nan
            flags[lum_out] |= int(SourceFlag.PARALLAX_LEFT_OUT)
        # tokens the model is given: finite values among the context's tokens
        n_tokens = np.isfinite(values[:, self._context_cols]).sum(axis=1)
        # an XP band missing: never in training (its cuts keep at least 3 orders of each band), and such
        # stars came out far off with σ that did not say so (review of session 32: BP removed from 400
        # simulated stars, 27 % of those outside the giant domain > 3σ from their two-band Teff, K dwarfs
        # read as 10,000 K ± 1,000 K; with both gone, the colours alone gave a Teff): no prediction, the
        # row kept with NO_BP / NO_RP and NO_PREDICTION, the model given nothing (n_input_tokens 0)
        no_band = (flags & int(SourceFlag.NO_BP | SourceFlag.NO_RP)) != 0
        if no_band.any():
            values = values.copy()
            values[np.ix_(no_band, self._context_cols)] = np.nan
            n_tokens = np.where(no_band, 0, n_tokens)
            flags[no_band] &= ~np.int64(SourceFlag.PARALLAX_LEFT_OUT)
        usable = n_tokens > 0
        # read without relevancy counts (a sampled spectrum), both bands, every context order present: the
        # calibration's every-order entries, as they were fitted (not an archive row whose relevancy is long)
        every_order = read_without_relevancy(flags) & all_xp_orders(values, self._xp_context_cols)

        # distance: the measured parallax where it is significant, else the model's pseudo-luminosity
        # (never for a star whose own pseudo-luminosity was left out: the model learned it on giants)
        dist, dist_err, by_parallax = parallax_distance(
            batch["parallax_corrected"], batch["parallax_corrected_error"], batch["ruwe"]
        )
        need_model_distance = self.model_distance & ~by_parallax & np.isfinite(g)
        if lum_out is not None:
            need_model_distance &= ~lum_out
        means, sigmas, derived, fm, sfm = self._predict(values, errors, g, need_model_distance, every_order)

        out = tokens_to_labels(means, sigmas, self.labels, derived=derived)
        no_pred = ~usable
        for t in self.request:
            no_pred |= ~np.isfinite(means[t])
        for col in list(out):
            out[col][no_pred] = np.nan
        flags[no_pred] |= int(SourceFlag.NO_PREDICTION)
        if self._all_orders_calibrated:  # the rows given the every-order entries
            flags[every_order & ~no_pred] |= int(SourceFlag.ALL_XP_ORDERS)

        with np.errstate(invalid="ignore", divide="ignore"):
            by_model = need_model_distance & usable & np.isfinite(fm) & (fm > 0)
            model_dist = 1000.0 * 10 ** (0.2 * g) / fm
            dist = np.where(by_model, model_dist, dist)
            dist_err = np.where(by_model, model_dist * np.abs(sfm / fm), dist_err)
        flags[by_parallax] |= int(SourceFlag.DISTANCE_FROM_PARALLAX)
        flags[by_model] |= int(SourceFlag.DISTANCE_FROM_MODEL)

        flags |= catalogue_flags(
            self.flag_policy,
            self.labels,
            means,
            out,
            g=g,
            dist=dist,
            by_parallax=by_parallax,
            fakemag=fakemag,
            fakemag_error=fakemag_error,
            logebv=_token_column(values, self._logebv_col),
            bprp=bprp,
            bprp_error=bprp_error,
            luminosity_outside=lum_out,
        )
        if self._ebv_bound:  # the model's E(B−V) held to what the star's colour allows
            flags = bound_model_ebv(self.flag_policy, out, means, sigmas, bprp, bprp_error, flags)
        if self._isochrones:  # on a GPU the fit's matrix products run there, beside the model
            dev = self.predictor.device if getattr(self.predictor.device, "type", "cpu") == "cuda" else None
            logebv = (_token_column(values, self._logebv_col), _token_column(errors, self._logebv_col))
            flags, iso_dist, iso_dist_err = isochrone_step(
                self.flag_policy, batch, out, means, sigmas, flags, g=g, dist=(dist, dist_err),
                by_parallax=by_parallax, logebv=logebv, colour=(bprp, bprp_error), device=dev,
            )  # fmt: skip
            # the fitted stars' distance from their isochrone M_G, in place of a model distance the model
            # learned on giants (or of none: a star whose pseudo-luminosity was left out)
            by_iso = np.isfinite(iso_dist) & ~by_parallax
            dist, dist_err = np.where(by_iso, iso_dist, dist), np.where(by_iso, iso_dist_err, dist_err)
            flags[by_iso] &= ~np.int64(SourceFlag.DISTANCE_FROM_MODEL)
            flags[by_iso] |= int(SourceFlag.DISTANCE_FROM_ISOCHRONES)
        no_dist = ~np.isfinite(dist)  # NaN, never inf, and none of the three (a σ alone may be unknown)
        dist = np.where(no_dist, np.nan, dist)
        dist_err = np.where(no_dist | ~np.isfinite(dist_err), np.nan, dist_err)
        flags[no_dist] &= ~np.int64(SourceFlag.DISTANCE_FROM_MODEL | SourceFlag.DISTANCE_FROM_ISOCHRONES)
        flags[no_dist] |= int(SourceFlag.NO_DISTANCE)
        return {
            "source_id": batch["source_id"],
            **{c: batch[c] for c in PASSTHROUGH_FLOAT64},
            "phot_g_mean_mag": batch["phot_g_mean_mag"],
            **out,
            "distance_pc": dist.astype(np.float32),
            "distance_pc_error": dist_err.astype(np.float32),
            "n_input_tokens": n_tokens.astype(np.int16),
            "flags": flags,
        }

    def _predict(
        self,
        values: np.ndarray,
        errors: np.ndarray,
        g: np.ndarray,
        need_model_distance: np.ndarray,
        every_order: np.ndarray,
    ) -> tuple[dict, dict, dict, np.ndarray, np.ndarray]:
        """The model's answers for a batch: (means, sigmas) per requested token (those of the catalogue's
        labels and the flag policy's teff/logg), the derived linear labels (age from ln age, with the
        Predictor's own calibrated σ) and, where `need_model_distance`, the predicted g_fakemag and σ.

        A token is never requested while it is in the star's context (the model would echo a damped
        copy of its input): stars with g_fakemag in the context get it predicted in a second pass
        without it, and a requested token among the inputs (`_echo_inputs`) gets a pass of its own
        without it. Every pass passes the stars' G (the calibration's G bins)."""
        n = len(values)
        fm_in_context = np.zeros(n, dtype=bool)
        if self._fakemag_col is not None and self._fakemag_in_context:
            fm_in_context = np.isfinite(values[:, self._fakemag_col])
        every = [*self.request, *self._domain_request]
        means = {t: np.full(n, np.nan) for t in every}
        sigmas = {t: np.full(n, np.nan) for t in every}
        request = [t for t in every if t not in self._echo_inputs]
        derived = {
            lab: (np.full(n, np.nan), np.full(n, np.nan)) for lab in self.labels if LABELS[lab].log_token
        }
        fm = np.full(n, np.nan)
        sfm = np.full(n, np.nan)
        one_pass = need_model_distance & ~fm_in_context  # labels and g_fakemag together
        passes = [(one_pass, [*request, "g_fakemag"], self.inputs), (~one_pass, request, self.inputs)]
        passes += [(np.ones(n, dtype=bool), [t], inputs) for t, inputs in self._echo_inputs.items()]
        for rows, req, inputs in passes:
            idx = np.flatnonzero(rows)
            if idx.size == 0 or not req:
                continue
            pred = self.predictor.predict(
                values[idx],
                errors[idx],
                req,
                inputs=inputs,
                batch_size=self.batch_size,
                g_mag=g[idx],
                all_orders=every_order[idx],
            )
            for t in req:
                if t in means:
                    means[t][idx] = pred[t]
                    sigmas[t][idx] = pred[f"{t}_error"]
            for lab, (val, err) in derived.items():
                if lab in pred:  # its log token was asked for in this pass
                    val[idx] = pred[lab]
                    err[idx] = pred[f"{lab}_error"]
            if "g_fakemag" in req:
                fm[idx] = pred["g_fakemag"]
                sfm[idx] = pred["g_fakemag_error"]
        second = np.flatnonzero(need_model_distance & fm_in_context)
        if second.size:
            pred = self.predictor.predict(
                values[second],
                errors[second],
                ["g_fakemag"],
                inputs=self._inputs_without_fakemag,
                batch_size=self.batch_size,
                g_mag=g[second],
                all_orders=every_order[second],
            )
            fm[second] = pred["g_fakemag"]
            sfm[second] = pred["g_fakemag_error"]
        return means, sigmas, derived, fm, sfm


def _token_column(a: np.ndarray, col: int | None) -> np.ndarray | None:
    """One token's column of a (N, T) value or error matrix; None when the vocabulary lacks it."""
    return None if col is None else a[:, col]
