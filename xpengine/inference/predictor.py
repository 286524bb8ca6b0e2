"""Predictions from a trained model (Ray-free): tokens in physical units in, labels with errors out.

Usage::

    from xpengine.inference import Predictor
    p = Predictor.load("path/to/run/model")   # or the name of a bundled model (available_models())
    out = p.predict(values, request=["teff", "logg", "m_h", "mass", "ln_age"])
    out["teff"], out["teff_error"], out["age"], out["age_error"]   # (N,) float64 arrays

Inputs are (N, T) matrices in the model's vocabulary order (NaN = missing), exactly as the feature
pipeline writes them, or a mapping of named token columns (:meth:`Predictor.perceive`). Only the tokens
listed in `inputs` form the context (default: the fixed input the model was validated with, e.g.
BP/RP 0–29 + colours); each star's valid ones among them are used. The encoder runs once per star and
all requested tokens are decoded together; every request is answered independently of the others.

Outputs, physical units (Leung & Bovy 2024; Zhang et al. 2026 §3.5): `<name>` = μ·scale + centre and
`<name>_error` = sqrt(exp(logvar))·scale, the model's predictive σ. For `ln_age` also `age` [Gyr] =
exp(μ) with σ_age = age·σ_ln_age (first-order, paper §3.5); for `logebv` also `ebv` [mag] likewise.
Stars with no valid input token get NaN everywhere (never an error).

A model answers only what it learned (the checkpoint's `learned_outputs` / `learned_inputs`,
:class:`~xpengine.model.checkpoint.LearnedTokens`): requesting a token it was never trained to predict
is a ValueError naming the token, the model and the tokens it did learn; input tokens it never read in
training are left out of its context, with one log line. Checkpoints without that record treat their
whole vocabulary as learned (with a warning when loaded).

For Ray Data, the class is its own batch UDF: construct it with the model and the request, and pass
the class to `map_batches` (see :meth:`Predictor.__call__` for the batch layout)::

    ds.map_batches(Predictor, fn_constructor_kwargs={"source": "runs/paper/model",
                   "request": ["teff", "mass", "ln_age"]}, batch_size=4096, num_gpus=1, concurrency=1)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

# re-exported: they lived here
from xpengine.features.astrometry import FALLBACK_ZERO_POINT_MAS
from xpengine.inference.precision import bf16_native_for, cpu_flags, effective_dtype, native_bf16
from xpengine.model.calibration import DERIVED, all_xp_orders
from xpengine.model.checkpoint import (
    Checkpoint,
    LearnedTokens,
    available_models,
    describe_tokens,
    load_checkpoint,
    resolve_model_path,
)
from xpengine.model.context import predict_standardized
from xpengine.model.metadata import FALLBACK_INPUTS

__all__ = [
    "DERIVED",
    "FALLBACK_INPUTS",
    "Predictor",
    "available_models",
    "bf16_native_for",
    "cpu_flags",
    "effective_dtype",
    "native_bf16",
    "resolve_model_path",
]

logger = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
_FALLBACK_REQUEST = ("teff", "logg", "m_h", "mass", "ln_age")


class Predictor:
    """A trained model ready to predict (loaded once; thread-compatible, not thread-safe).

    source: checkpoint directory or bundled model name. device: "auto" (CUDA when available), "cpu",
    "cuda", ...; dtype: "float32", "bfloat16" (bf16 autocast, weights stay float32; only where the
    hardware has bf16, see `native_bf16`, else float32 with a warning) or "auto" (bf16 where native).
    request: default tokens to predict (default: the model's validation labels, else teff, logg, m_h,
    mass, ln_age, that it learned to predict); a token it did not learn is a ValueError. inputs: default
    context tokens, in the token-list syntax of the training configuration (`bp0..29`,
    `kind:colour`, names); default: the model's validation inputs. Either way, tokens the model never
    read in training are left out (one log line).
    batch_size: stars per forward pass. calibrate: apply the checkpoint's `calibration.json` (σ
    calibration fitted on the validation split), when it has one. sim_to_real: the stars are real (the
    default): the σ of tokens learned from simulated stars only (gaia-xp: mass, ln_age and the age derived
    from it) also carry the calibration's measured sim-to-real term (`Calibration.sim_to_real`, format 4),
    the extra spread real spectra show over simulated ones. False for simulated stars, which have none: the
    calibration skies and simulated test skies are scored with σ as calibrated on them.
    """

    def __init__(
        self,
        source: str | os.PathLike | Checkpoint,
        *,
        device: str = "auto",
        dtype: str = "float32",
        request: Sequence[str] | None = None,
        inputs: Sequence[str] | None = None,
        batch_size: int = 4096,
        calibrate: bool = True,
        sim_to_real: bool = True,
    ) -> None:
        if dtype not in (*_DTYPES, "auto"):
            raise ValueError(f"dtype must be one of {[*sorted(_DTYPES), 'auto']}, got {dtype!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.autocast_dtype = _DTYPES[effective_dtype(dtype, self.device)]
        self.batch_size = batch_size
        ckpt = source if isinstance(source, Checkpoint) else load_checkpoint(resolve_model_path(source))
        self.checkpoint = ckpt
        self.model = ckpt.model.to(self.device).eval()
        self.vocabulary = ckpt.vocabulary
        self.standardization = ckpt.standardization
        self.learned: LearnedTokens = ckpt.learned or LearnedTokens.whole_vocabulary(ckpt.vocabulary)
        self.model_name = ckpt.path.name
        self._logged: set[tuple] = set()  # the once-only log lines already written (`_log_once`)
        train_cfg = ckpt.train_config or {}
        self.default_inputs: list[str] = self.select_inputs(
            inputs or train_cfg.get("val_inputs") or FALLBACK_INPUTS
        )
        if request is None:
            # the labels the model was validated on (else the paper's five) that it learned
            fallback = [n for n in _FALLBACK_REQUEST if n in self.vocabulary]
            wanted = self._expand(train_cfg.get("val_labels") or fallback)
            request = [n for n in wanted if n in self.learned.outputs]
        self.default_request: list[str] = self.check_request(request)
        self._check_inputs(self.default_inputs)
        # σ calibration fitted on the validation split (`xpengine evaluate --store-calibration`):
        # σ ← sqrt((a σ)² + b²) per token, applied before the linear age / E(B−V) errors are derived.
        self.calibration = None
        cal_file = ckpt.path / "calibration.json"
        if calibrate and cal_file.is_file():
            from xpengine.model.calibration import Calibration

            self.calibration = Calibration.load(cal_file)
            logger.info("σ calibration from %s applied", cal_file)
        if self.calibration is not None and self.calibration.by_class and "logg" not in self.learned.outputs:
            raise ValueError(
                f"{cal_file}: σ factors per class of star need the model's predicted logg, which it did not learn"
            )
        self.sim_to_real = bool(sim_to_real and self.calibration is not None and self.calibration.sim_to_real)
        if self.sim_to_real:
            logger.info(
                "σ of %s include the sim-to-real term of %s (real stars)",
                ", ".join(sorted(self.calibration.sim_to_real)),
                cal_file,
            )

    @classmethod
    def load(
        cls,
        source: str | os.PathLike,
        *,
        device: str = "auto",
        dtype: str = "float32",
        calibrate: bool = True,
        sim_to_real: bool = True,
        **kwargs: Any,
    ) -> Predictor:
        """Load a checkpoint directory or bundled model by name (see the class docstring)."""
        return cls(source, device=device, dtype=dtype, calibrate=calibrate, sim_to_real=sim_to_real, **kwargs)

    @property
    def xp_representation(self) -> str | None:
        """The XP representation id the model was trained on (`xpengine.spectra.REPRESENTATION_ID`),
        from its provenance; compare it with the id of the token files before predicting."""
        return self.checkpoint.provenance.get("xp_representation")

    @property
    def names(self) -> list[str]:
        """Token names of the model's vocabulary: the column order `predict` expects."""
        return self.vocabulary.names

    def _expand(self, spec: Sequence[str]) -> list[str]:
        return self.vocabulary.select(list(spec))

    def check_request(self, request: Sequence[str]) -> list[str]:
        """The token names selected by `request` (token-list syntax); a ValueError naming them, the
        model and the tokens it learned when any is a token the model was not trained to predict."""
        names = self._expand(request)
        learned = set(self.learned.outputs)
        unlearned = [n for n in names if n not in learned]
        if unlearned:
            raise ValueError(
                f"model {self.model_name!r} was not trained to predict {unlearned} (its training data had "
                f"no values for them, or they were not requestable), so it cannot answer them; it learned "
                f"to predict: {describe_tokens(self.learned.outputs)}"
            )
        return names

    def select_inputs(self, inputs: Sequence[str]) -> list[str]:
        """The context tokens selected by `inputs` (token-list syntax) less those the model never read
        in training, which are left out with one log line (a warning for the first set, DEBUG after)."""
        names = self._expand(inputs)
        learned = set(self.learned.inputs)
        dropped = tuple(n for n in self.vocabulary.names if n in names and n not in learned)
        if dropped:  # a warning for the first set; other sets (evaluate's random contexts) at DEBUG
            self._log_once(
                ("never read", dropped),
                logging.DEBUG if any(k[0] == "never read" for k in self._logged) else logging.WARNING,
                "model %r never read input tokens %s in training: left out of its context",
                self.model_name,
                describe_tokens(dropped),
            )
        kept = [n for n in names if n in learned]
        if names and not kept:
            raise ValueError(
                f"none of the input tokens {describe_tokens(names)} were read by model "
                f"{self.model_name!r} in training; it reads: {describe_tokens(self.learned.inputs)}"
            )
        return kept

    def _check_inputs(self, inputs: list[str]) -> None:
        limit = self.checkpoint.model_config.context_length
        if len(inputs) > limit:
            raise ValueError(
                f"{len(inputs)} input tokens requested but the model was trained with at most {limit} "
                "context tokens; choose fewer inputs"
            )
        if not inputs:
            raise ValueError("no input tokens selected")

    @property
    def context_length(self) -> int:
        """The most context tokens the model takes (its training context length)."""
        return self.checkpoint.model_config.context_length

    def predict(
        self,
        values: np.ndarray,
        errors: np.ndarray | None = None,
        request: Sequence[str] | None = None,
        *,
        inputs: Sequence[str] | None = None,
        batch_size: int | None = None,
        g_mag: np.ndarray | None = None,
        all_orders: np.ndarray | bool | None = None,
    ) -> dict[str, np.ndarray]:
        """Predict the `request` tokens of N stars.

        request: tokens to predict (default: :attr:`default_request`); a ValueError when the model was
        not trained to predict one of them. inputs: context tokens (default: :attr:`default_inputs`);
        those the model never read in training are left out. values: (N, T) physical units in vocabulary order (:attr:`names`), NaN = missing. errors: (N, T)
        or None; accepted for symmetry with the training data but unused: the model of Leung & Bovy
        takes no input uncertainties (they enter only the training loss). g_mag: (N,) Gaia G [mag] where
        known, for σ calibrations with a factor per G bin (`calibration.json` format 2; None or NaN: the
        calibration's σ map alone). all_orders: (N,) bool (or one bool): the rows read without relevancy
        counts (sampled spectra), which take the calibration's every-order entries (format 5); None: the
        rows with every context XP token finite (`all_xp_orders`; an archive row whose relevancy reaches
        past the model's orders looks the same, so callers that know the relevancy pass it).
        Returns `{name, name_error, [age, age_error], [ebv, ebv_error]}` of (N,) float64 arrays.
        """
        values = np.asarray(values, dtype=np.float32)
        t = len(self.vocabulary)
        if values.ndim != 2 or values.shape[1] != t:
            raise ValueError(
                f"values must be (N, {t}) in the order of vocabulary {self.vocabulary.name}, got {values.shape}"
            )
        if errors is not None and np.shape(errors) != values.shape:
            raise ValueError(f"errors shape {np.shape(errors)} differs from values shape {values.shape}")
        req = self.default_request if request is None else self.check_request(request)
        inp = self.default_inputs if inputs is None else self.select_inputs(inputs)
        self._check_inputs(inp)
        if not req:
            raise ValueError("nothing requested")
        asked = req  # with the logg that picks a class's σ factor (`Calibration.by_class`), not returned
        if self.calibration is not None and set(self.calibration.by_class) & set(req) and "logg" not in req:
            req = [*req, "logg"]
        req_cols = np.asarray(self.vocabulary.indices(req), dtype=np.int64)
        n = values.shape[0]
        mean = np.full((n, len(req)), np.nan)  # (N, Q) standardised
        sigma = np.full((n, len(req)), np.nan)  # (N, Q) standardised
        step = batch_size or self.batch_size
        groups = []  # (request indices, context columns, request columns): one encoder pass each
        for drop, idx in self.context_groups(req, inp).items():
            context = [t for t in inp if t not in drop]
            if not context:
                raise ValueError(
                    f"no context left for {[req[j] for j in idx]}: the model never saw them beside "
                    f"{describe_tokens(list(drop))}, the only inputs given"
                )
            groups.append(
                (
                    idx,
                    torch.tensor(self.vocabulary.indices(context), dtype=torch.int64, device=self.device),
                    torch.from_numpy(req_cols[idx]).to(self.device),
                )
            )
        for start in range(0, n, step):
            chunk = values[start : start + step]  # (b, T)
            z, _ = self.standardization.transform(chunk)  # (b, T) float32
            zt = torch.from_numpy(z).to(self.device, non_blocking=True)
            rows = slice(start, start + len(chunk))
            for idx, in_cols, q_cols in groups:
                m, lv, _ = predict_standardized(
                    self.model, zt, in_cols, q_cols, batch_size=step, autocast_dtype=self.autocast_dtype
                )  # (b, q)
                mean[rows, idx] = m.cpu().numpy()
                sigma[rows, idx] = np.exp(0.5 * lv.cpu().numpy().astype(np.float64))
        mu, sg = self.standardization.inverse(mean, sigma, req_cols)  # (N, Q) physical
        full = None  # the rows taking the calibration's every-order entries (format 5)
        if self.calibration is not None:
            full = np.broadcast_to(all_orders, (n,)) if all_orders is not None else None
            if full is None:
                xp = set(self.vocabulary.xp_names)
                full = all_xp_orders(values, self.vocabulary.indices([t for t in inp if t in xp]))
        out: dict[str, np.ndarray] = {}
        for j, name in enumerate(req):
            if self.calibration is not None:  # a G-bin mean shift (calibration format 3), if any
                mu[:, j] = self.calibration.shift(name, mu[:, j], g_mag, full)
            out[name] = mu[:, j]
            out[f"{name}_error"] = (
                sg[:, j] if self.calibration is None else self.calibration.apply(name, sg[:, j], g_mag, full)
            )
            if name in DERIVED:
                lin = np.exp(mu[:, j])
                out[DERIVED[name]] = lin
                out[f"{DERIVED[name]}_error"] = (
                    lin * out[f"{name}_error"]
                    if self.calibration is None
                    else self.calibration.derived_sigma(DERIVED[name], name, lin, sg[:, j], g_mag, full)
                )
                if self.sim_to_real:
                    out[f"{DERIVED[name]}_error"] = self.calibration.add_sim_to_real_derived(
                        name, lin, out[f"{DERIVED[name]}_error"], derived=DERIVED[name]
                    )
            if self.sim_to_real:
                out[f"{name}_error"] = self.calibration.add_sim_to_real(name, mu[:, j], out[f"{name}_error"])
        for name in set(self.calibration.by_class if self.calibration else ()) & set(asked):
            factor = self.calibration.class_factor(name, out["logg"])  # the linear label derived follows
            for key in (name, DERIVED.get(name)):
                if key is not None and f"{key}_error" in out:
                    out[f"{key}_error"] = out[f"{key}_error"] * factor
        if len(req) > len(asked):  # the logg added above
            del out["logg"], out["logg_error"]
        return out

    def context_groups(self, request: list[str], inputs: list[str]) -> dict[tuple[str, ...], list[int]]:
        """The requests grouped by the inputs to leave out of their context: those the model never saw
        beside that output in training (`LearnedTokens.unseen_inputs`). {left-out tokens: indices into
        `request`}; one group, () → all, when nothing is left out. Each group is one encoder pass."""
        groups: dict[tuple[str, ...], list[int]] = {}
        present = set(inputs)
        for j, name in enumerate(request):
            drop = tuple(t for t in self.learned.unseen_for(name) if t in present)
            groups.setdefault(drop, []).append(j)
            if drop:
                self._log_once(
                    ("never beside", name, drop),
                    logging.INFO,
                    "%s: %s asked for without %s in the context (never beside it in training)",
                    self.model_name,
                    name,
                    describe_tokens(list(drop)),
                )
        return groups

    def _log_once(self, key: tuple, level: int, msg: str, *args) -> None:
        """Log `msg` the first time `key` is seen by this Predictor (a batch loop repeats its calls)."""
        if key not in self._logged:
            self._logged.add(key)
            logger.log(level, msg, *args)

    def encoder_passes(self, request: list[str], inputs: list[str]) -> list[tuple[int, int]]:
        """(context tokens, requests) of each encoder pass `predict` makes per star for this request
        and these inputs (one per `context_groups` group): what a star costs, for benchmarks and
        projections."""
        return [
            (len(inputs) - len(drop), len(idx)) for drop, idx in self.context_groups(request, inputs).items()
        ]

    def from_xp(
        self,
        xp: Any,
        *,
        g_mag: Any = None,
        parallax: Any = None,
        parallax_error: Any = None,
        ruwe: Any = None,
        tmass: Mapping[str, Any] | None = None,
        labels: Sequence[str] | None = None,
        zero_point_fallback: float | None = FALLBACK_ZERO_POINT_MAS,
        sampling: Any = None,
        source_id: int | None = None,
        flag_policy: Any = None,
        ebv: Any = None,
        ebv_error: Any = None,
    ):
        """Labels with errors and flags for stars given as Gaia XP coefficients or sampled spectra: the
        catalogue's own features and flag rules (`xpengine.inference.catalogue`), without a Ray job. For
        notebooks.

        xp: an astropy Table, pandas DataFrame, pyarrow Table or dict of arrays with the archive's XP
            columns (`source_id`, `bp_coefficients`, `bp_coefficient_errors`, `bp_n_relevant_bases`,
            same for RP; `xpengine.io.read_xp_continuous` gives them), and optionally any gaia_source
            columns (`phot_g_mean_mag`, `parallax`, `nu_eff_used_in_astrometry`, ...).
            Or sampled spectra [W m⁻² nm⁻¹ on 336–1020 nm / 2 nm]: `source_id`, `flux`, `flux_error`
            arrays of 343 values, one row per source (GaiaXPy `calibrate` output; other columns such as
            `phot_g_mean_mag` are kept), or one row per wavelength with `wavelength` (the archive's
            XP_SAMPLED); read by `xpengine.io.read_xp_sampled` into the same representation, with no
            relevancy truncation (a sampled spectrum has no `n_relevant_bases`).
        sampling: (343,) wavelengths [nm] of sampled arrays (GaiaXPy `calibrate`'s second value); only
            the default grid is accepted. source_id: the star of a one-row-per-wavelength table that
            has no `source_id` column or metadata.
        g_mag, parallax [mas], parallax_error [mas], ruwe: (N,) or scalars overriding those columns.
            Without G the XP are normalised by their own synthetic G (flag G_FROM_XP).
        ebv, ebv_error: E(B−V), σ [mag] known without the XP (a map's; −0.05–0 as 0; no σ: 16 %, ≥ 0.01).
        tmass: {"j_m", "j_msigcom", "h_m", "h_msigcom", "ks_m", "ks_msigcom"} arrays for J−H, J−Ks.
        labels: catalogue labels (default: the ones this model learned).
        zero_point_fallback: parallax zero point [mas] where Lindegren et al.'s cannot be computed, σ_ϖ
            widened by 0.02 mas, flag NO_ZERO_POINT, as the job's (default −0.017); None drops them.
        flag_policy: the flags' thresholds (`xpengine.catalog.flag_policy.FlagPolicy`; None: the
            catalogue's, `DEFAULT_FLAG_POLICY`).

        Returns a pandas DataFrame: source_id, each label and `<label>_error`, distance_pc(_error),
        n_input_tokens, flags and flag_names.
        """
        from xpengine.features.flags import describe_flags
        from xpengine.inference.catalogue import CatalogPredictor, catalogue_batch
        from xpengine.inference.input_tables import xp_input_table
        from xpengine.spectra.representation import token_representation

        overrides = {
            "phot_g_mean_mag": g_mag,
            "parallax": parallax,
            "parallax_error": parallax_error,
            "ruwe": ruwe,
            "ebv": ebv,
            "ebv_error": ebv_error,
            **(dict(tmass) if tmass else {}),
        }
        table = xp_input_table(xp, overrides, sampling=sampling, source_id=source_id)
        batch = catalogue_batch(
            table,
            self.vocabulary,
            "from_xp",
            representation=token_representation(),
            zero_point_fallback=zero_point_fallback,
        )
        out = CatalogPredictor(self, labels, batch_size=self.batch_size, flag_policy=flag_policy)(batch)
        keep = [k for k in out if k not in ("partition", "partition_rows", "read_error")]
        import pandas as pd

        df = pd.DataFrame({k: out[k] for k in keep})
        df["flag_names"] = [describe_flags(int(f)) for f in df["flags"]]
        return df

    def perceive(
        self,
        columns: Mapping[str, np.ndarray],
        request: Sequence[str] | None = None,
        *,
        inputs: Sequence[str] | None = None,
        batch_size: int | None = None,
    ) -> dict[str, np.ndarray]:
        """Like :meth:`predict` with named token columns ({token name: (N,) array}); tokens not given
        are missing. Column names that are not tokens of the vocabulary are an error (typos would
        otherwise silently drop inputs); `<name>_error` columns are accepted and ignored."""
        values = self.vocabulary.matrix(columns)
        return self.predict(values, request=request, inputs=inputs, batch_size=batch_size)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Ray Data batch UDF (`batch_format="numpy"`): predict the default request for one batch.

        The batch holds either a 2-D `values` column (N, T) in vocabulary order (a fixed-shape tensor
        column; a 1-D object column of length-T arrays is stacked), or one column per token named as
        in the vocabulary (absent tokens are missing; other columns are ignored). Returns the
        predictions plus `source_id` when the batch has it.
        """
        if "values" in batch:
            values = np.asarray(batch["values"])
            if values.dtype == object:
                values = (
                    np.stack([np.asarray(v, dtype=np.float32) for v in values])
                    if len(values)
                    else (np.empty((0, len(self.vocabulary)), dtype=np.float32))
                )
        else:
            values = self.vocabulary.matrix(batch, strict=False)
        out = self.predict(values)
        if "source_id" in batch:
            out = {"source_id": np.asarray(batch["source_id"]), **out}
        return out
