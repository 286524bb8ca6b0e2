"""Shared pieces of the generative and probing tasks: label units, XP tokens → sampled flux, the
pseudo-luminosity → absolute flux at 10 pc, prediction in (N, Q) matrices, and file writers.

Units (REFERENCE §1, §3; Leung & Bovy 2024; Zhang et al. 2026 §2):
- XP tokens are the engine's XP representation (`xpengine.spectra.representation`) of the BP/RP
  coefficients divided by the source's G flux f_G [e⁻ s⁻¹]: dimensionless.
- Their sampled spectrum, `[c_bp, c_rp] @ A` on GaiaXPy's 336–1020 nm grid
  (:func:`xpengine.spectra.coefficients_to_flux`), is then the *G-normalised flux*
  [W m⁻² nm⁻¹ per e⁻ s⁻¹ of G flux] (:data:`NORMALISED_FLUX_UNIT`).
- Multiplying by the G flux the star would have at 10 pc, f_G,10 = 10^((25.6873668671 − M_G)/2.5), with
  M_G = 5 (log10 fakemag − 2) from the pseudo-luminosity (REFERENCE §3), gives the absolute flux at 10 pc
  [W m⁻² nm⁻¹] of the paper's Fig. 7 (:func:`absolute_flux_10pc`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from xpengine.evaluate.report import to_jsonable
from xpengine.features.astrometry import fakemag_to_absmag
from xpengine.features.normalise import g_mag_to_flux
from xpengine.features.vocabulary import Vocabulary

__all__ = [
    "FLUX_UNIT",
    "LABEL_INPUTS",
    "M_G_SUN",
    "NORMALISED_FLUX_UNIT",
    "abs_g_to_log_lg",
    "absolute_flux_10pc",
    "label_tokens",
    "labels_to_values",
    "load_predictor",
    "new_figure",
    "predict_matrix",
    "prepare_output",
    "save_figure",
    "to_jsonable",
    "tokens_to_flux",
    "write_json",
    "write_table",
    "xp_flux_errors",
]

logger = logging.getLogger(__name__)

FLUX_UNIT = "W m^-2 nm^-1"
NORMALISED_FLUX_UNIT = "W m^-2 nm^-1 per (e- s^-1 of G flux)"

M_G_SUN = 4.67
"""Absolute Gaia G magnitude of the Sun (Casagrande & VandenBerg 2018, MNRAS 479, L102: 4.67), used for
log10(L_G/L_G,☉) = −0.4 (M_G − M_G,☉) in the Kiel-diagram figures (paper Fig. 13)."""

LABEL_INPUTS: dict[str, tuple[str, str]] = {
    "teff": ("teff", "K"),
    "logg": ("logg", "dex"),
    "m_h": ("m_h", "dex"),
    "alpha_m": ("alpha_m", "dex"),
    "mass": ("mass", "Msun"),
    "age": ("ln_age", "Gyr → ln(age/Gyr)"),
    "ln_age": ("ln_age", "ln(age/Gyr)"),
    "ebv": ("logebv", "mag → ln E(B-V)"),
    "logebv": ("logebv", "ln E(B-V)"),
    "g_fakemag": ("g_fakemag", "10^(0.2 M_G + 2)"),
    "abs_g": ("g_fakemag", "M_G [mag] → 10^(0.2 M_G + 2)"),
    "bprp": ("bprp", "mag"),
    "jh": ("jh", "mag"),
    "jk": ("jk", "mag"),
}
"""User-facing label names → (token, unit as given). `age` [Gyr], `ebv` [mag] and `abs_g` [mag] are
converted to the tokens ln_age, logebv and g_fakemag."""


def label_tokens(vocabulary: Vocabulary) -> list[str]:
    """The vocabulary's label-like tokens (kinds label, extinction, luminosity), in vocabulary order."""
    return [t.name for t in vocabulary.tokens if t.kind in ("label", "extinction", "luminosity")]


def _positive_log(x: np.ndarray, name: str) -> np.ndarray:
    bad = np.isfinite(x) & ~(x > 0)
    if bad.any():
        raise ValueError(
            f"label {name!r} must be > 0 to take its logarithm; got {x[bad][:5].tolist()} "
            f"(rows {np.flatnonzero(bad)[:5].tolist()}); use NaN for a missing value"
        )
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(x)


def labels_to_values(labels: Mapping[str, Any], vocabulary: Vocabulary) -> tuple[np.ndarray, list[str]]:
    """Token matrix (N, T) float32 in vocabulary order from user labels, and the tokens given.

    labels: {name: scalar or (N,) array} with names from :data:`LABEL_INPUTS` (physical units: Teff [K],
    logg [dex], [M/H] [dex], mass [M☉], age [Gyr] or ln_age, E(B−V) [mag] or logebv, g_fakemag or abs_g
    [mag]); scalars broadcast. NaN = not given for that star. Unknown names, two names for one token and
    tokens the model's vocabulary lacks are errors.
    """
    if not labels:
        raise ValueError(f"no labels given; expected some of {sorted(LABEL_INPUTS)}")
    unknown = sorted(k for k in labels if k not in LABEL_INPUTS)
    if unknown:
        raise ValueError(f"unknown labels {unknown}; expected some of {sorted(LABEL_INPUTS)}")
    arrays = {k: np.atleast_1d(np.asarray(v, dtype=np.float64)) for k, v in labels.items()}
    for k, a in arrays.items():
        if a.ndim != 1:
            raise ValueError(f"label {k!r} must be a scalar or a 1-D array, got shape {a.shape}")
    n = max(a.shape[0] for a in arrays.values())
    for k, a in arrays.items():
        if a.shape[0] not in (1, n):
            raise ValueError(f"label {k!r} has {a.shape[0]} values, others {n}; expected 1 or {n}")
    values = np.full((n, len(vocabulary)), np.nan, dtype=np.float32)
    given: list[str] = []
    for k, a in arrays.items():
        token = LABEL_INPUTS[k][0]
        if token not in vocabulary:
            raise ValueError(
                f"label {k!r} needs token {token!r}, which vocabulary {vocabulary.name} does not have"
            )
        if token in given:
            raise ValueError(f"token {token!r} given twice (through {k!r} and another name)")
        x = np.broadcast_to(a, (n,))
        if k == "age":
            x = _positive_log(x, k)
        elif k == "ebv":
            x = _positive_log(x, k)
        elif k == "abs_g":
            x = np.power(10.0, 0.2 * x + 2.0)
        values[:, vocabulary.index(token)] = x
        given.append(token)
    return values, given


def load_predictor(model: str | os.PathLike, *, device: str = "cpu", batch_size: int = 256) -> Any:
    """`Predictor.load(model)` on `device`; `batch_size` stars per forward pass (the tasks request up to
    111 tokens per star, so a smaller batch than for labels keeps memory at ~100 MB)."""
    from xpengine.inference.predictor import Predictor

    return Predictor.load(model, device=device, batch_size=batch_size)


def predict_matrix(
    predictor: Any,
    values: np.ndarray,
    request: Sequence[str],
    inputs: Sequence[str],
    *,
    batch_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Means and σ (N, Q) float64 in physical units of the `request` tokens given the `inputs` tokens.

    values: (N, T) in the predictor's vocabulary order, NaN = missing. A thin wrapper over
    `predictor.predict`; each requested token is decoded independently (the model has no joint output).
    """
    if not request:
        raise ValueError("nothing requested")
    if not inputs:
        raise ValueError("no input tokens given")
    # XP coefficients the model never learned to predict (its training stars had no values for them,
    # e.g. high orders beyond every star's relevancy) are truncated: 0 with σ 0, as the archive
    # truncates irrelevant orders. Any other unlearned token is refused by the predictor.
    learned = getattr(getattr(predictor, "learned", None), "outputs", None)
    xp = set(predictor.vocabulary.xp_names)
    truncated = [r for r in request if learned is not None and r in xp and r not in learned]
    if truncated:
        logger.info(
            "XP coefficients %s were never learned by the model: generated as 0 (truncated)", truncated
        )
    asked = [r for r in request if r not in truncated]
    n = np.asarray(values).shape[0]
    out = (
        predictor.predict(values, request=asked, inputs=list(inputs), batch_size=batch_size) if asked else {}
    )
    zero = np.zeros(n)
    mu = np.stack([np.asarray(out[r], dtype=np.float64) if r in out else zero for r in request], axis=1)
    sg = np.stack(
        [np.asarray(out[f"{r}_error"], dtype=np.float64) if r in out else zero for r in request], axis=1
    )  # (N, Q) each
    return mu, sg


def _split_bands(coefficients: np.ndarray, vocabulary: Vocabulary) -> tuple[np.ndarray, np.ndarray]:
    c = np.asarray(coefficients, dtype=np.float64)
    n_xp = vocabulary.n_bp + vocabulary.n_rp
    if c.ndim != 2 or c.shape[1] != n_xp:
        raise ValueError(
            f"XP coefficients must be (N, {n_xp}) = (N, n_bp + n_rp) for vocabulary {vocabulary.name}, "
            f"got {c.shape}"
        )
    return c[:, : vocabulary.n_bp], c[:, vocabulary.n_bp :]


def _zero_missing(band: np.ndarray) -> np.ndarray:
    """NaN coefficients → 0 (GaiaXPy truncation: non-relevant coefficients do not contribute); a row with
    no finite coefficient stays all-NaN (band missing)."""
    present = np.isfinite(band).any(axis=1)
    out = np.where(np.isfinite(band), band, 0.0)
    out[~present] = np.nan
    return out


def tokens_to_flux(coefficients: np.ndarray, vocabulary: Vocabulary, sampling: Any = None) -> np.ndarray:
    """Sampled flux (N, n_wl) of XP tokens (N, n_bp + n_rp) in `vocabulary` xp order.

    G-normalised tokens give the G-normalised flux (:data:`NORMALISED_FLUX_UNIT`). NaN coefficients are
    treated as truncated (zero contribution, as GaiaXPy's `truncation=True` and the relevancy masking of
    the feature builder); a band with no finite coefficient is missing (NaN where only it contributes).
    """
    from xpengine.spectra import coefficients_to_flux

    bp, rp = _split_bands(coefficients, vocabulary)
    return coefficients_to_flux(_zero_missing(bp), _zero_missing(rp), sampling)


def xp_flux_errors(errors: np.ndarray, vocabulary: Vocabulary, sampling: Any = None) -> np.ndarray:
    """1σ of the sampled flux (N, n_wl) from per-coefficient σ (N, n_bp + n_rp), taking the coefficients
    as independent (the model's marginal σ carry no correlations): var = Σ_i σ_i² A_ij²."""
    from xpengine.spectra import flux_errors_from_covariance

    bp, rp = _split_bands(errors, vocabulary)
    return flux_errors_from_covariance(_zero_missing(bp), _zero_missing(rp), sampling=sampling)


def absolute_flux_10pc(flux_normalised: np.ndarray, fakemag: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Absolute flux at 10 pc (N, n_wl) [W m⁻² nm⁻¹] and M_G (N,) [mag] from G-normalised flux and the
    pseudo-luminosity fakemag = 10^(0.2 M_G + 2) (REFERENCE §3).

    M_G = 5 (log10 fakemag − 2) (`features.fakemag_to_absmag`); at 10 pc the apparent G equals M_G, so the
    G flux there is f_G,10 = 10^((25.6873668671 − M_G)/2.5) e⁻ s⁻¹ (`features.g_mag_to_flux`) and the
    absolute flux is flux_normalised · f_G,10. NaN where fakemag ≤ 0 or is NaN.
    """
    abs_g, _ = fakemag_to_absmag(np.asarray(fakemag, dtype=np.float64))
    f_g10 = g_mag_to_flux(abs_g)  # (N,) e-/s
    return np.asarray(flux_normalised, dtype=np.float64) * f_g10[:, None], abs_g


def abs_g_to_log_lg(abs_g: np.ndarray) -> np.ndarray:
    """log10(L_G / L_G,☉) = −0.4 (M_G − 4.67) (N,) from the absolute G magnitude (:data:`M_G_SUN`)."""
    return -0.4 * (np.asarray(abs_g, dtype=np.float64) - M_G_SUN)


# ----------------------------------------------------------------------------------------------------------
# output


def prepare_output(directory: str | os.PathLike, names: Sequence[str], *, overwrite: bool) -> Path:
    """Create `directory`; refuse (FileExistsError naming them) when any of `names` already exists there
    and `overwrite` is False, before anything is computed."""
    out = Path(directory)
    existing = [n for n in names if (out / n).exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"{out}: {', '.join(existing)} already exist; pass overwrite=True (--overwrite) to replace them"
        )
    out.mkdir(parents=True, exist_ok=True)
    return out


def write_json(obj: Any, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write `obj` as indented strict JSON (NaN → null); refuses to overwrite unless asked."""
    p = Path(path)
    if p.exists() and not overwrite:
        raise FileExistsError(f"{p} exists; pass overwrite=True to replace it")
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(to_jsonable(obj), indent=1, allow_nan=False) + "\n")
    return p


def write_table(
    columns: Mapping[str, Any],
    path: str | os.PathLike,
    *,
    metadata: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write columns to Parquet (`.parquet`) or CSV (`.csv`); 2-D (N, K) arrays become fixed-size list
    columns (Parquet only). `metadata` is stored as JSON under the key `xpengine.task` (Parquet).
    Refuses to overwrite unless asked."""
    import pyarrow as pa

    p = Path(path)
    if p.exists() and not overwrite:
        raise FileExistsError(f"{p} exists; pass overwrite=True to replace it")
    p.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, pa.Array] = {}
    for name, col in columns.items():
        a = np.asarray(col)
        if a.ndim == 2:
            if p.suffix == ".csv":
                raise ValueError(f"column {name!r} is 2-D {a.shape}; CSV holds scalar columns only")
            flat = pa.array(a.reshape(-1))
            arrays[name] = pa.FixedSizeListArray.from_arrays(flat, a.shape[1])
        elif a.ndim == 1:
            arrays[name] = pa.array(a)
        else:
            raise ValueError(f"column {name!r} has shape {a.shape}; expected (N,) or (N, K)")
    table = pa.table(arrays)
    if p.suffix == ".csv":
        import pyarrow.csv as pcsv

        pcsv.write_csv(table, p)
    elif p.suffix == ".parquet":
        import pyarrow.parquet as pq

        if metadata:
            table = table.replace_schema_metadata(
                {b"xpengine.task": json.dumps(to_jsonable(metadata)).encode()}
            )
        pq.write_table(table, p, compression="zstd")
    else:
        raise ValueError(f"{p}: unknown table format {p.suffix!r}; expected .parquet or .csv")
    return p


def new_figure(nrows: int, ncols: int, width: float = 3.2, height: float = 2.8) -> tuple[Any, np.ndarray]:
    """A matplotlib Figure (object API, Agg canvas, no pyplot) with an (nrows, ncols) array of axes."""
    from matplotlib.figure import Figure

    w, h = width * ncols + 0.6, height * nrows + 0.5
    fig = Figure(figsize=(w, h))
    axes = np.atleast_2d(fig.subplots(nrows, ncols, squeeze=False))
    # margins in inches (room for tick and axis labels), whatever the figure size
    fig.subplots_adjust(
        wspace=0.45, hspace=0.55, left=0.8 / w, right=1 - 0.2 / w, top=1 - 0.55 / h, bottom=0.6 / h
    )
    return fig, axes


def save_figure(fig: Any, path: str | os.PathLike, *, overwrite: bool = False, dpi: int = 110) -> Path:
    """Save a Figure as PNG through the Agg canvas; refuses to overwrite unless asked."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    p = Path(path)
    if p.exists() and not overwrite:
        raise FileExistsError(f"{p} exists; pass overwrite=True to replace it")
    p.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(p, dpi=dpi)
    return p
