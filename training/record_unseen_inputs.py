"""Record in a model's config.json what the training loop records since, for a checkpoint trained before:
- per learned output, the learned inputs that no training star had beside it (`inputs_unseen_with`, the
  rule of `xpengine.train.train_data.learned_tokens`; recorded by the loop since session 16): the
  Predictor leaves those inputs out of the context when it asks for that output;
- the pseudo-luminosity domain (`pseudo_luminosity_domain`, `xpengine.model.luminosity_domain`; recorded
  by the loop since session 17): a star above it keeps its parallax out of its context.

    python training/record_unseen_inputs.py xpengine/data/models/gaia-xp --data runs/gaia_xp_mixed9.parquet

--data: the training-schema file the model was trained on (its train split is read, as the loop reads it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runs from a checkout without installing

import numpy as np

from xpengine.datasets.schema import read_training_set
from xpengine.model.metadata import (
    CONFIG_FILE,
    LEARNED_INPUTS_KEY,
    LEARNED_OUTPUTS_KEY,
    LUMINOSITY_DOMAIN_KEY,
    UNSEEN_INPUTS_KEY,
    LearnedTokens,
    luminosity_domain_entry,
)
from xpengine.train.config import expand_tokens
from xpengine.train.train_data import learned_tokens, with_luminosity_domain


def unseen_inputs(config: dict, data: str) -> dict[str, list[str]]:
    """Per learned output of the model whose config.json is `config`, the learned inputs that no star of
    `data`'s train split had beside it."""
    train = config["train"]
    arrays = read_training_set(data, split="train")
    vocab = arrays.vocabulary
    learned = learned_tokens(
        arrays.values,
        vocab,
        expand_tokens(train["requestable"], vocab),
        focus=expand_tokens(train.get("focus_inputs") or [], vocab),
        focus_fraction=float(train.get("focus_fraction") or 0.0),
    )
    outputs, inputs = set(config[LEARNED_OUTPUTS_KEY]), set(config[LEARNED_INPUTS_KEY])
    if set(learned.outputs) != outputs:
        raise SystemExit(
            f"{data}: its learned outputs {learned.outputs} differ from the model's {sorted(outputs)}"
        )
    return {
        o: [t for t in ts if t in inputs] for o, ts in learned.unseen_inputs if any(t in inputs for t in ts)
    }


def luminosity_domain(config: dict, data: str) -> dict | None:
    """The pseudo-luminosity domain entry of `data`'s train split for a model that reads g_fakemag and
    BP−RP (None otherwise): the training loop's own record (`train_data.with_luminosity_domain`) over the
    stars it trains on (those with a requestable token)."""
    arrays = read_training_set(data, split="train")
    vocab = arrays.vocabulary
    req = vocab.indices(expand_tokens(config["train"]["requestable"], vocab))
    keep = np.isfinite(arrays.values[:, req]).any(axis=1)
    learned = LearnedTokens(
        outputs=tuple(config[LEARNED_OUTPUTS_KEY]), inputs=tuple(config[LEARNED_INPUTS_KEY])
    )
    got = with_luminosity_domain(learned, arrays.values[keep], arrays.errors[keep], vocab)
    if got.luminosity_index_max is None:
        return None
    return luminosity_domain_entry(got.luminosity_index_max, got.luminosity_n_stars)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("--data", required=True)
    args = ap.parse_args(argv)
    path = args.model_dir / CONFIG_FILE
    config = json.loads(path.read_text())
    unseen = unseen_inputs(config, args.data)
    config[UNSEEN_INPUTS_KEY] = unseen
    domain = luminosity_domain(config, args.data)
    if domain is not None:
        config[LUMINOSITY_DOMAIN_KEY] = domain
    from xpengine.io.atomic import write_text_atomically

    write_text_atomically(path, json.dumps(config, indent=1))  # a kill midway never leaves half a config
    print(json.dumps({UNSEEN_INPUTS_KEY: unseen, LUMINOSITY_DOMAIN_KEY: domain}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
