"""A toy training set in the training schema, for tests, examples and benchmarks (not physics).

Three latent variables per star drive every token linearly (plus noise): the labels are then simple
functions of a few XP tokens, so a model that learns anything brings their error well below their
spread. Some labels are missing (NaN, error 0) to exercise masking. For a realistic sky use the
simulator (`xpengine.simulate`) instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from xpengine.datasets.schema import training_table, write_training_set
from xpengine.features.vocabulary import Vocabulary, paper_vocabulary

__all__ = ["TOY_LABELS", "toy_training_table", "write_toy_training_set"]

# label: (centre, slope per latent 0/1/2, noise σ = known error), physical units of the vocabulary.
TOY_LABELS: dict[str, tuple[float, tuple[float, float, float], float]] = {
    "teff": (4800.0, (300.0, 80.0, 0.0), 20.0),
    "logg": (2.5, (0.2, 0.5, 0.0), 0.02),
    "m_h": (-0.2, (0.0, 0.0, 0.3), 0.01),
    "mass": (1.2, (0.1, 0.1, 0.1), 0.02),
    "ln_age": (1.5, (-0.2, 0.0, 0.4), 0.03),
}


def toy_training_table(
    n_stars: int,
    *,
    seed: int = 0,
    n_bp: int = 3,
    n_rp: int = 3,
    val_fraction: float = 0.2,
    missing_label_fraction: float = 0.1,
    vocabulary: Vocabulary | None = None,
) -> pa.Table:
    """Training-schema table of `n_stars` toy stars over `paper_vocabulary(n_bp, n_rp)`.

    Every XP token and colour is a fixed random linear mix of the three latents plus 1% noise;
    `ln E(B−V)` and `g_fakemag` are pure noise. Rows are split train / val at random.
    """
    rng = np.random.default_rng(seed)
    vocab = vocabulary or paper_vocabulary(n_bp=n_bp, n_rp=n_rp)
    n_tok = len(vocab)
    z = rng.standard_normal((n_stars, 3))  # (N, 3) latents
    values = np.full((n_stars, n_tok), np.nan)  # (N, T)
    errors = np.zeros((n_stars, n_tok))  # (N, T)
    mix = np.random.default_rng(12345).normal(size=(3, n_tok))  # fixed across seeds: same "physics"
    for j, tok in enumerate(vocab.tokens):
        if tok.name in TOY_LABELS:
            centre, slopes, sigma = TOY_LABELS[tok.name]
            values[:, j] = centre + z @ np.asarray(slopes) + sigma * rng.standard_normal(n_stars)
            errors[:, j] = sigma
            values[rng.random(n_stars) < missing_label_fraction, j] = np.nan
        elif tok.kind in ("xp", "colour"):
            values[:, j] = z @ mix[:, j] + 0.01 * rng.standard_normal(n_stars)
            errors[:, j] = 0.01
        else:  # extinction, luminosity, unknown extras: uninformative
            values[:, j] = rng.standard_normal(n_stars)
            errors[:, j] = 0.1
    errors[np.isnan(values)] = 0.0
    split = np.where(rng.random(n_stars) < val_fraction, "val", "train")
    return training_table(
        np.arange(n_stars, dtype=np.int64) + 1,
        values.astype(np.float32),
        errors.astype(np.float32),
        vocab,
        split=split,
        origin="toy",
        extra={"latent0": z[:, 0], "latent1": z[:, 1], "latent2": z[:, 2]},
        provenance={"generator": "xpengine.train.toy", "seed": seed, "n_stars": n_stars},
    )


def write_toy_training_set(path: str | Path, n_stars: int, *, overwrite: bool = False, **kwargs) -> Path:
    """Write :func:`toy_training_table` to Parquet at `path` and return the path."""
    write_training_set(toy_training_table(n_stars, **kwargs), str(path), overwrite=overwrite)
    return Path(path)
