"""Training-set schema and builders (real APOGEE x XP, real surveys, simulated sky).

- `schema`: the one Parquet layout of every training / validation / test set.
- `splits`: deterministic train/val/test assignment by Gaia source_id (keyed BLAKE2b).
- `apogee_xp`: APOGEE DR17 labels + real Gaia XP sampled spectra (`apogee_xp_dev.fits.gz` layout).
- `survey`: allStar + DistMass VAC + Gaia XP/gaia_source bulk partitions (Zhang et al. 2026).
- `synthetic`: a simulated sky through the survey builder.
- `mixed`: one training set of real and simulated stars (each keeps its split; tokens a source lacks
  stay missing; synthetic training stars weighted by replication / subsampling).
- `xp`: the two XP entry paths (archive coefficients, sampled spectra) into the engine's representation
  (token errors for sampled spectra: `xpengine.spectra.sampled_errors`, which the sampled reader uses too).
- `labels`: APOGEE flags, DistMass ages, the paper's cuts (pure functions).
- `cli`: `xpengine build-dataset {apogee-xp,apogee,synthetic,mixed}`.

Only numpy is imported here; astropy, pyarrow and the builders' dependencies load when used.
"""

from xpengine.datasets.mixed import MixedBuild, build_mixed, keep_at_most, synthetic_copies
from xpengine.datasets.splits import DEFAULT_SALT, read_default_split, split_by_source_id, split_counts

__all__ = [
    "DEFAULT_SALT",
    "MixedBuild",
    "build_mixed",
    "keep_at_most",
    "read_default_split",
    "split_by_source_id",
    "split_counts",
    "synthetic_copies",
]
