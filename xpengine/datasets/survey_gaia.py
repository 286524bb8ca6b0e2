"""The Gaia side of the survey builder (`xpengine.datasets.survey.build_survey`, steps 6–7): the survey
stars' XP continuous rows with their gaia_source, 2MASS and E(B−V) columns, over all partitions
(`xp_and_gaia`, `match_xp`), and the `build_tokens` input columns of the matched stars (`token_inputs`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from xpengine.datasets.survey import SurveyInputs

__all__ = ["float_column", "match_xp", "read_side_table", "token_inputs", "xp_and_gaia"]

logger = logging.getLogger("xpengine.datasets.survey")  # the builder's log, as before these moved here


def read_side_table(path: str | None, columns: tuple[str, ...], what: str, ids: np.ndarray) -> Any:
    """A 2MASS / E(B−V) table restricted to the wanted source ids (None when no path)."""
    if path is None:
        return None
    import pyarrow as pa
    import pyarrow.compute as pc

    from xpengine.io import read_table

    t = read_table(path)
    missing = [c for c in ("source_id", *columns) if c not in t.column_names]
    if missing:
        raise ValueError(f"{what} table {path}: missing column(s) {missing}; columns: {t.column_names}")
    keep = [c for c in ("source_id", *columns, "ebv_error") if c in t.column_names]
    t = t.select(list(dict.fromkeys(keep)))
    mask = pc.is_in(pc.cast(t.column("source_id"), pa.int64()), value_set=pa.array(ids, pa.int64()))
    return t.filter(mask)


def xp_and_gaia(
    inputs: SurveyInputs,
    ids: np.ndarray,
    *,
    with_correlations: bool,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[Any, dict[str, int]]:
    """XP rows (+ gaia_source, 2MASS, E(B−V) columns) of the wanted sources, over all partitions."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from xpengine.io import discover_partitions, join_sources, read_gaia_source, read_xp_continuous

    parts = discover_partitions(inputs.xp, inputs.gaia_source)
    if not parts:
        raise ValueError(
            f"no XpContinuousMeanSpectrum_AAAAAA-BBBBBB files found in {inputs.xp!r}; expected the Gaia "
            "DR3 bulk layout (REFERENCE §1)"
        )
    tmass = read_side_table(
        inputs.tmass, ("j_m", "j_msigcom", "h_m", "h_msigcom", "ks_m", "ks_msigcom"), "2MASS", ids
    )
    ebv = read_side_table(inputs.ebv, ("ebv",), "E(B-V)", ids)
    value_set = pa.array(ids, pa.int64())
    tables = []
    n_no_gaia_file = 0
    used = [p for p in parts if p.contains(ids).any()]
    logger.info("%d of %d XP partitions hold survey stars", len(used), len(parts))
    for i, part in enumerate(used):
        xp = read_xp_continuous(part.xp_url, with_correlations=with_correlations)
        xp = xp.filter(pc.is_in(xp.column("source_id"), value_set=value_set))
        if xp.num_rows == 0:
            continue
        gaia = None
        if part.gaia_url is not None:
            gaia = read_gaia_source(part.gaia_url)
            gaia = gaia.filter(pc.is_in(gaia.column("source_id"), value_set=value_set))
        else:
            n_no_gaia_file += xp.num_rows
        tables.append(join_sources(xp, gaia, tmass=tmass, ebv=ebv))
        if progress is not None:
            progress(i + 1, len(used))
    counts = {
        "partitions": len(parts),
        "partitions_read": len(used),
        "xp_rows_without_gaia_file": n_no_gaia_file,
    }
    if not tables:
        return None, counts
    return pa.concat_tables(tables, promote_options="permissive"), counts


def float_column(table: Any, name: str) -> np.ndarray | None:
    import pyarrow as pa
    import pyarrow.compute as pc

    if name not in table.column_names:
        return None
    col = table.column(name)
    if pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_boolean(col.type):
        return np.asarray(pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
    return col.to_numpy(zero_copy_only=False)


def match_xp(
    inputs: SurveyInputs, stars: dict[str, np.ndarray], summary: dict[str, Any], *, with_correlations: bool
) -> tuple[Any, np.ndarray, dict[str, np.ndarray]]:
    """Step 6: the survey stars' XP and gaia_source rows. Returns (joined table, its source_id (M,),
    the survey columns of the same M stars in that order); stars without XP are dropped."""
    ids = stars["source_id"]
    joined, xp_counts = xp_and_gaia(
        inputs,
        ids,
        with_correlations=with_correlations,
        progress=lambda i, n: logger.info("XP partitions %d / %d", i, n) if i % 50 == 0 or i == n else None,
    )
    summary.update(xp_counts)
    if joined is None or joined.num_rows == 0:
        raise ValueError(
            f"empty cross-match: none of the {ids.size} survey stars (Gaia source_id from GAIAEDR3_SOURCE_ID) "
            f"has an XP continuous row in {inputs.xp!r} ({xp_counts['partitions']} partitions, "
            f"{xp_counts['partitions_read']} covering the stars' HEALPix ranges)"
        )
    xp_sid = np.asarray(joined.column("source_id").to_numpy(), dtype=np.int64)
    if np.unique(xp_sid).size != xp_sid.size:
        raise ValueError(
            f"XP files in {inputs.xp!r} hold some source_id more than once; expected unique sources"
        )
    order = np.argsort(ids)
    pos = order[np.searchsorted(ids, xp_sid, sorter=order)]  # row of each XP source in `stars`
    summary["without_xp_dropped"] = int(ids.size - xp_sid.size)
    return joined, xp_sid, {k: v[pos] for k, v in stars.items()}


def token_inputs(
    inputs: SurveyInputs,
    joined: Any,
    xp_sid: np.ndarray,
    star: dict[str, np.ndarray],
    vocab: Any,
    summary: dict[str, Any],
) -> dict[str, np.ndarray]:
    """Step 7's input: the `build_tokens` columns of the M matched stars (XP in the representation,
    gaia_source, 2MASS from the `tmass` table or allStar J/H/K, E(B−V), the survey labels)."""
    from xpengine.datasets.xp import archive_xp_columns
    from xpengine.features.tokens import GAIA_SOURCE_COLUMNS
    from xpengine.io import list_column_to_numpy

    data: dict[str, np.ndarray] = {"source_id": xp_sid}
    corr = {}
    for band, n in (("bp", vocab.n_bp), ("rp", vocab.n_rp)):
        data[f"{band}_raw"] = list_column_to_numpy(joined.column(f"{band}_coefficients"), n)
        data[f"{band}_raw_err"] = list_column_to_numpy(joined.column(f"{band}_coefficient_errors"), n)
        c = f"{band}_coefficient_correlations"
        corr[band] = (
            list_column_to_numpy(joined.column(c), n * (n - 1) // 2) if c in joined.column_names else None
        )
    xp_cols = archive_xp_columns(
        data.pop("bp_raw"),
        data.pop("rp_raw"),
        data.pop("bp_raw_err"),
        data.pop("rp_raw_err"),
        float_column(joined, "bp_n_relevant_bases"),
        float_column(joined, "rp_n_relevant_bases"),
        bp_correlations=corr["bp"],
        rp_correlations=corr["rp"],
    )
    data.update(xp_cols)
    if "read_problem" in joined.column_names:  # row-level parse problems upstream → READ_PROBLEM bit
        from xpengine.features.flags import SourceFlag

        problem = np.asarray(
            joined.column("read_problem").is_valid().to_numpy(zero_copy_only=False), dtype=bool
        )
        data["flags"] = np.where(problem, int(SourceFlag.READ_PROBLEM), 0).astype(np.int64)
    for c in GAIA_SOURCE_COLUMNS:
        v = float_column(joined, c)
        if v is not None:
            data[c] = v
    if inputs.tmass is not None:
        for c in ("j_m", "j_msigcom", "h_m", "h_msigcom", "ks_m", "ks_msigcom"):
            data[c] = float_column(joined, c)
        summary["tmass_source"] = inputs.tmass
    else:
        for band, name in (("j", "j_m"), ("h", "h_m"), ("k", "ks_m")):
            data[name] = star[band]
            data[name.replace("_m", "_msigcom")] = star[f"{band}_error"]
        summary["tmass_source"] = "allStar J, H, K"
    if inputs.ebv is not None:
        data["ebv"] = float_column(joined, "ebv")
        data["ebv_error"] = float_column(joined, "ebv_error")
    for name in ("teff", "logg", "m_h", "alpha_m", "mass", "ln_age"):
        data[name] = star[name]
        data[f"{name}_error"] = star[f"{name}_error"]
    return data
