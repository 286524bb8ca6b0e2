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
