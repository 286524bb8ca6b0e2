"""Dereddened 2MASS J − Ks for catalogue stars: the colour the `red-clump` preset's colour–metallicity cuts need.

The catalogue holds no 2MASS magnitudes, but the job's 2MASS table (`--tmass`, as the archive's
`tmass_psc_xsc_best_neighbour` join gives it: source_id, j_m, ks_m) and the catalogue's own E(B−V) make
(J − Ks)0 = (J − Ks) − E(J−Ks)/E(B−V) · E(B−V), with E(J−Ks)/E(B−V) = 3.1 · (A_J − A_Ks)/A_V = 3.1 · (0.289 −
0.118) = 0.530 for a giant behind R_V = 3.1 dust: the law of the MIST/C3K tables, which the catalogue's own
E(B−V) and A_G follow (0.530 for 4,300–5,000 K giants at E(B−V) 0.05–0.6 there). Until session 28 it was Yuan,
Liu & Xiang's (2013, MNRAS 430, 2188) 0.72 − 0.306 = 0.414, per SFD-scale E(B−V): against the catalogue's
E(B−V) it left a clump star's (J−Ks)0 0.045 mag too red at E(B−V) 0.37 (found by a review). Stars without
both magnitudes or without E(B−V) get no row.

    xpengine query CATALOG --preset red-clump --join colours=JK0.parquet -p jk0_view=colours

after `dereddened_jk(CATALOG, TMASS).to_parquet(...)` (or `write_dereddened_jk`).
"""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa

__all__ = ["E_JK_PER_EBV", "dereddened_jk", "write_dereddened_jk"]

E_JK_PER_EBV = 3.1 * (0.289 - 0.118)
"""E(J − Ks)/E(B − V) of a giant behind R_V = 3.1 dust, A_J/A_V = 0.289 and A_Ks/A_V = 0.118 (the MIST/C3K
tables' law, as the catalogue's E(B−V); `tests/test_catalog_colours.py` checks it against the tables)."""


def dereddened_jk(catalog: str | os.PathLike, tmass: str | os.PathLike) -> pa.Table:
    """(source_id int64, jk0 float64 [mag]) for the catalogue's stars with J, Ks and a finite E(B−V)."""
    from xpengine.catalog.query import query_catalog
    from xpengine.io.tables import read_table

    cat = query_catalog(catalog, sql="SELECT source_id, ebv FROM catalog WHERE isfinite(ebv)")
    tm = read_table(tmass, columns=["source_id", "j_m", "ks_m"])
    tm = tm.set_column(0, "source_id", tm.column("source_id").cast(pa.int64()))
    both = cat.join(tm, "source_id", join_type="inner").sort_by("source_id")
    col = {
        k: np.asarray(both.column(k).to_numpy(zero_copy_only=False), dtype=np.float64)
        for k in ("j_m", "ks_m", "ebv")
    }
    jk0 = col["j_m"] - col["ks_m"] - E_JK_PER_EBV * col["ebv"]
    ok = np.isfinite(jk0)
    sid = np.asarray(both.column("source_id").to_numpy(), dtype=np.int64)
    return pa.table({"source_id": pa.array(sid[ok]), "jk0": pa.array(jk0[ok])})


def write_dereddened_jk(
    catalog: str | os.PathLike,
    tmass: str | os.PathLike,
    output: str | os.PathLike,
    overwrite: bool = False,
) -> int:
    """Write `dereddened_jk` to a Parquet file (atomically); returns the number of rows.

    An existing `output` is refused (QueryError) unless `overwrite`, as `xpengine query --output` does:
    a colour table is an input of later queries, not a scratch file to lose silently. So is an `output`
    inside the catalogue: read as catalogue rows, it would break the next query.
    """
    import pyarrow.parquet as pq

    from xpengine.catalog.errors import QueryError
    from xpengine.catalog.locate import locate_table
    from xpengine.catalog.tables import holds_path
    from xpengine.io.atomic import file_written_atomically

    if holds_path(locate_table(catalog, "catalogue", ("parquet",)), output):
        raise QueryError(
            f"output file {os.fspath(output)!r} lies in the catalogue {os.fspath(catalog)!r}, which queries "
            "read; write it elsewhere"
        )
    if os.path.exists(output) and not overwrite:
        raise QueryError(f"output file {os.fspath(output)!r} exists; pass overwrite=True to replace it")
    table = dereddened_jk(catalog, tmass)
    with file_written_atomically(output) as tmp:
        pq.write_table(table, tmp)
    return table.num_rows
