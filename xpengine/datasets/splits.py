"""Deterministic train / validation / test assignment by Gaia source_id.

A star's split depends only on its `source_id` and a salt, never on the order, the number or the
content of the rows around it: rebuilding a data set from another input (more stars, other cuts,
re-ordered files) keeps every surviving star in the same split, and the same star observed twice can
never land in two splits.

Hash: BLAKE2b (RFC 7693) with an 8-byte digest, keyed by the salt, of the decimal string of the
source_id; the digest read as a big-endian unsigned 64-bit integer and divided by 2^64 gives a number
u ∈ [0, 1) that is uniform and independent of any other hash. In particular it does not correlate with
the rule that held back the project's independent APOGEE×XP test set (`int(sha256(str(id)), 16) % 5`,
see `shared/data/apogee_xp/PROVENANCE.md`): different hash function, keyed, and a range test rather
than a residue (tested in `tests/test_datasets_splits.py`).

Assignment: test when u ≥ 1 − f_test, validation when 1 − f_test − f_val ≤ u < 1 − f_test, train
otherwise. The test interval sits at the top of [0, 1) and does not depend on f_val, so changing the
validation fraction moves stars only between train and validation; the test set is stable.
"""

from __future__ import annotations

import hashlib

import numpy as np

__all__ = [
    "DEFAULT_SALT",
    "DEFAULT_SPLIT_FILE",
    "read_default_split",
    "split_by_source_id",
    "split_counts",
    "split_table",
    "split_uniform",
]

DEFAULT_SALT: bytes = b"xpengine-split-v1"
"""Key of the split hash. Changing it reshuffles every split: never change it for a shipped data set."""


def _integer_ids(source_id: np.ndarray) -> np.ndarray:
    """`source_id` as an array, refusing a non-integer dtype: float64 cannot hold Gaia ids (above 2^53)
    exactly, so casting float ids to int64 would silently give other sources' ids."""
    ids = np.asarray(source_id)
    if ids.size and ids.dtype.kind not in "iu":
        raise ValueError(
            f"source_id must be integers (Gaia int64 ids), got dtype {ids.dtype}: float64 cannot hold "
            "ids above 2^53 exactly"
        )
    return ids


def split_uniform(source_id: np.ndarray, *, salt: bytes = DEFAULT_SALT) -> np.ndarray:
    """Deterministic pseudo-uniform number u ∈ [0, 1) per source (N,) float64 from its int64 source_id.

    u = BLAKE2b-64(key=salt, str(source_id)) / 2^64. About 1 µs per source on this machine's CPU,
    so 10^6 sources take about a second.
    """
    ids = _integer_ids(source_id)
    if ids.ndim != 1:
        raise ValueError(f"source_id must be a 1-D array (N,), got shape {ids.shape}")
    if len(salt) > hashlib.blake2b.MAX_KEY_SIZE:
        raise ValueError(f"salt must be at most {hashlib.blake2b.MAX_KEY_SIZE} bytes, got {len(salt)}")
    digests = b"".join(
        hashlib.blake2b(str(int(s)).encode(), digest_size=8, key=salt).digest() for s in ids.tolist()
    )
    h = np.frombuffer(digests, dtype=">u8").astype(np.float64)  # (N,) in [0, 2^64)
    # float64 rounding of values near 2^64 could give exactly 1.0: clip into [0, 1).
    return np.minimum(h / 2.0**64, np.nextafter(1.0, 0.0))


def split_by_source_id(
    source_id: np.ndarray,
    *,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    salt: bytes = DEFAULT_SALT,
) -> np.ndarray:
    """Split name per source (N,) str: "train", "val" or "test", deterministic in source_id.

    val_fraction, test_fraction: expected fractions of the whole set (0 ≤ each, sum < 1); the rest is
    train. The shipped APOGEE×XP split uses 0.1 / 0.1 (80/10/10). The paper's 90/10 train/test split
    with a validation slice of 10% of the training part is `val_fraction=0.09, test_fraction=0.1`.
    """
    for name, f in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not (0.0 <= f < 1.0):
            raise ValueError(f"{name} must be in [0, 1), got {f}")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(
            f"val_fraction + test_fraction must be < 1 to leave a training set, got "
            f"{val_fraction} + {test_fraction}"
        )
    u = split_uniform(source_id, salt=salt)
    out = np.full(u.shape, "train", dtype="<U5")
    out[u >= 1.0 - test_fraction - val_fraction] = "val"
    out[u >= 1.0 - test_fraction] = "test"
    return out


def split_counts(split: np.ndarray) -> dict[str, int]:
    """Number of rows per split name, in the order train, val, test (absent splits count 0)."""
    split = np.asarray(split).astype(str)
    return {name: int(np.count_nonzero(split == name)) for name in ("train", "val", "test")}


DEFAULT_SPLIT_FILE = "apogee_xp_dev_split.parquet"
"""Shipped split of `shared/data/apogee_xp/apogee_xp_dev.fits.gz` (in `xpengine/data/splits/`)."""


def split_table(
    source_id: np.ndarray,
    *,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    salt: bytes = DEFAULT_SALT,
    note: str = "",
) -> object:
    """A pyarrow Table (source_id int64, split string) of the unique ids, sorted by source_id.

    The split parameters are stored in the schema metadata under `xpengine.split`.
    """
    import json

    import pyarrow as pa

    ids = np.unique(np.asarray(_integer_ids(source_id), dtype=np.int64))
    split = split_by_source_id(ids, val_fraction=val_fraction, test_fraction=test_fraction, salt=salt)
    meta = {
        "function": "xpengine.datasets.splits.split_by_source_id",
        "val_fraction": val_fraction,
        "test_fraction": test_fraction,
        "salt": salt.decode("latin-1"),
        "counts": split_counts(split),
        "note": note,
    }
    table = pa.table({"source_id": pa.array(ids), "split": pa.array(split)})
    return table.replace_schema_metadata({b"xpengine.split": json.dumps(meta).encode()})


def read_default_split() -> tuple[np.ndarray, np.ndarray]:
    """(source_id (N,) int64, split (N,) str) of the shipped APOGEE×XP dev split, sorted by source_id."""
    from importlib import resources

    import pyarrow.parquet as pq

    from xpengine.io._arrays import source_id_numpy

    ref = resources.files("xpengine") / "data" / "splits" / DEFAULT_SPLIT_FILE
    with resources.as_file(ref) as path:
        table = pq.read_table(path)
        sid = source_id_numpy(table.column("source_id"), str(path), "source_id")
    return (
        sid,
        np.asarray(table.column("split").to_numpy(zero_copy_only=False)).astype(str),
    )
