"""Input scenarios of the robustness tests (Zhang et al. 2026 §4.1, Fig. 4 and 5; Leung & Bovy 2024 §4).

Each scenario says which of a star's tokens the model may see; everything else is hidden (NaN), and
the labels are requested. All scenarios keep at most `context_length` (64) tokens per star, the
number the model was trained with.

- ``standard`` (Fig. 4b): BP and RP coefficients 0–29 + BP−RP, J−H, J−K (63 tokens).
- ``first5`` (Fig. 4c): BP and RP coefficients 0–4 + the three colours (13 tokens).
- ``random64`` (Fig. 4d): 64 tokens drawn at random (seeded) among the XP coefficients and colours
  ("64 randomly selected XP coefficients or colors", paper §4.1.1), one of 32 random sets per star
  (see :func:`scenario_groups`); labels, extinction and pseudo-luminosity are never drawn, so no label
  leaks in.
- ``high_order`` (Fig. 4e): BP and RP coefficients 25 and above only, no colours: mostly noise, so the
  predicted σ must grow.
- ``identity`` (Fig. 4f): the catalogue values of the evaluated labels mixed into the inputs, with the
  colours and as many low-order coefficients as fit (bp0..bp(k−1), rp0..rp(k−1), k ≤ 30): the labels
  must come back with σ ≈ 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from xpengine.evaluate.baseline import standard_input_names
from xpengine.features.vocabulary import Vocabulary

__all__ = ["SCENARIOS", "Scenario", "scenario_groups", "scenario_mask"]

COLOURS = ("bprp", "jh", "jk")


@dataclass(frozen=True)
class Scenario:
    name: str
    panel: str
    description: str


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("standard", "Fig. 4b / 5b", "BP/RP 0–29 + BP−RP, J−H, J−K"),
    Scenario("first5", "Fig. 4c", "BP/RP 0–4 + colours"),
    Scenario("random64", "Fig. 4d", "64 random XP coefficients or colours per star"),
    Scenario("high_order", "Fig. 4e", "BP/RP 25 and above only (noise-dominated)"),
    Scenario("identity", "Fig. 4f", "true labels mixed into the inputs"),
)
_BY_NAME = {s.name: s for s in SCENARIOS}


def _columns(vocab: Vocabulary, names: Sequence[str]) -> np.ndarray:
    return np.asarray([vocab.index(n) for n in names if n in vocab], dtype=np.int64)


def scenario_groups(
    name: str,
    vocabulary: Vocabulary,
    n_stars: int,
    *,
    labels: Sequence[str] = (),
    context_length: int = 64,
    seed: int | np.random.Generator = 0,
    n_random_sets: int = 32,
) -> list[tuple[np.ndarray, list[str]]]:
    """The scenario as groups of stars sharing one input token list.

    Returns [(rows (n,) int64, token names)], the rows of all groups together covering 0..n_stars−1
    once. A predictor is run once per group with its token list as the context columns (at most
    `context_length` names, as the :class:`~xpengine.inference.predictor.Predictor` requires).
    ``random64`` draws `n_random_sets` random 64-token subsets of the XP coefficients and colours
    (seeded) and gives each star one of them at random: the paper draws one subset per star, which a
    predictor with a fixed context-column list can only approximate by such groups; a star's missing
    tokens within its subset are simply absent (fewer than 64 in its context).
    """
    if name not in _BY_NAME:
        raise ValueError(f"unknown scenario {name!r}; expected one of {list(_BY_NAME)}")
    rows = np.arange(n_stars, dtype=np.int64)
    if name == "standard":
        names = standard_input_names(30)
    elif name == "first5":
        names = standard_input_names(5)
    elif name == "high_order":
        names = [f"bp{i}" for i in range(25, vocabulary.n_bp)] + [
            f"rp{i}" for i in range(25, vocabulary.n_rp)
        ]
    elif name == "identity":
        lab = [x for x in labels if x in vocabulary]
        k = max(0, min(30, (context_length - len(lab) - len(COLOURS)) // 2))
        names = [*lab, *COLOURS, *(f"bp{i}" for i in range(k)), *(f"rp{i}" for i in range(k))]
    else:  # random64
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        pool = [tok.name for tok in vocabulary.tokens if tok.kind in ("xp", "colour")]
        k = min(64, context_length, len(pool))
        sets = [sorted(rng.choice(len(pool), size=k, replace=False)) for _ in range(n_random_sets)]
        which = rng.integers(0, n_random_sets, size=n_stars)
        return [
            (rows[which == g], [pool[i] for i in sets[g]]) for g in range(n_random_sets) if np.any(which == g)
        ]
    names = [n for n in names if n in vocabulary][:context_length]
    return [(rows, names)]


def scenario_mask(
    name: str,
    vocabulary: Vocabulary,
    values: np.ndarray,
    *,
    labels: Sequence[str] = (),
    context_length: int = 64,
    seed: int | np.random.Generator = 0,
    n_random_sets: int = 32,
) -> np.ndarray:
    """Which entries of `values` (N, T) (vocabulary order, NaN = missing) the model may see.

    Returns (N, T) bool, True only where the token is in the star's group list
    (:func:`scenario_groups`) and finite.
    """
    values = np.asarray(values)
    n, t = values.shape
    if t != len(vocabulary):
        raise ValueError(f"values have {t} columns but vocabulary {vocabulary.name} has {len(vocabulary)}")
    allowed = np.zeros((n, t), dtype=bool)
    for rows, names in scenario_groups(
        name,
        vocabulary,
        n,
        labels=labels,
        context_length=context_length,
        seed=seed,
        n_random_sets=n_random_sets,
    ):
        allowed[np.ix_(rows, vocabulary.indices(names))] = True
    return allowed & np.isfinite(values)
