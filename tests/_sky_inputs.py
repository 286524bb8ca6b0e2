"""Catalogue-job inputs made from the bundled sky's partitions, for the Ray job tests."""

from __future__ import annotations

import os
import shutil

KINDS = ("XpContinuousMeanSpectrum", "GaiaSource")


def copy_sky(sky_dir: str, dest, parts) -> None:
    """Copy the bundled sky's XP and GaiaSource files of `parts` into `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    for p in parts:
        for kind in KINDS:
            shutil.copy(os.path.join(sky_dir, f"{kind}_{p}.csv.gz"), dest / f"{kind}_{p}.csv.gz")


def add_truncated_partition(sky_dir: str, dest, name: str) -> None:
    """Partition `name` in `dest` with its XP file cut to a third (a truncated gzip) and a whole
    GaiaSource partner: a corrupt partition that must fail alone."""
    good = open(os.path.join(sky_dir, f"XpContinuousMeanSpectrum_{name}.csv.gz"), "rb").read()
    (dest / f"XpContinuousMeanSpectrum_{name}.csv.gz").write_bytes(good[: len(good) // 3])
    shutil.copy(os.path.join(sky_dir, f"GaiaSource_{name}.csv.gz"), dest / f"GaiaSource_{name}.csv.gz")


def sky_token_batch(model: str, partition: str = "000000-003111") -> dict:
    """One bundled-sky partition (1000 stars, with 2MASS and E(B−V)) as the job's token batch in the
    vocabulary of `model`."""
    from importlib.resources import files

    import numpy as np

    from xpengine.inference.predictor import Predictor
    from xpengine.pipeline.stages import PartitionTask, featurize_partition

    sky = files("xpengine") / "data" / "sky"
    task = PartitionTask(
        name=partition,
        xp=str(sky / f"XpContinuousMeanSpectrum_{partition}.csv.gz"),
        gaia=str(sky / f"GaiaSource_{partition}.csv.gz"),
    )
    (chunk,) = featurize_partition(
        {k: np.array([v]) for k, v in task.to_row().items()},
        vocabulary_json=Predictor.load(model, device="cpu").vocabulary.to_json(),
        chunk_rows=100_000,
        tmass=str(sky / "tmass.parquet"),
        ebv=str(sky / "ebv.parquet"),
    )
    return chunk
