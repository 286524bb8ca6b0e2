"""SQL functions every catalogue connection has (`xpengine.catalog.query.CatalogConnection`).

`a_g_per_ebv(teff, logg, m_h, ebv)`: A_G / E(B−V) of a star of Teff [K], logg, [M/H] behind E(B−V)
[mag], star by star (`xpengine.catalog.extinction.coefficients`, the MIST law the catalogue's own
M_G uses). `e_bp_rp_per_ebv(teff, logg, m_h, ebv)`: E(BP−RP) / E(B−V) the same way. A NULL argument
gives NULL, as SQL does; a NaN Teff gives the solar-type constants (2.740, 1.339), a NaN logg or [M/H]
the law's defaults (logg of its fit, [M/H] 0), as in the catalogue. Example, dereddened M_G:

    SELECT source_id, phot_g_mean_mag - 5 * log10(distance_pc / 10)
           - a_g_per_ebv(teff, logg, m_h, ebv) * ebv AS mg0 FROM catalog
"""

from __future__ import annotations

from typing import Any

import numpy as np

from xpengine.catalog.extinction import coefficients

__all__ = ["SQL_FUNCTIONS", "register", "statement_core"]

SQL_FUNCTIONS = ("a_g_per_ebv", "e_bp_rp_per_ebv")


def _float64(a: Any) -> np.ndarray:
    """A pyarrow numeric array (nulls handled by DuckDB before the call) as float64."""
    return np.asarray(a.to_numpy(zero_copy_only=False), dtype=np.float64)


def _coefficient(which: int):
    import pyarrow as pa

    def f(teff: Any, logg: Any, m_h: Any, ebv: Any) -> Any:
        k = coefficients(_float64(teff), _float64(ebv), _float64(logg), _float64(m_h), law="mist")[which]
        return pa.array(k, type=pa.float64())

    return f


def register(con: Any, duckdb: Any) -> None:
    """Register `SQL_FUNCTIONS` on DuckDB connection `con` (vectorised over Arrow batches)."""
    double = duckdb.sqltype("DOUBLE")
    for which, name in enumerate(SQL_FUNCTIONS):
        con.create_function(name, _coefficient(which), [double] * 4, double, type="arrow")


def statement_core(sql: str, duckdb: Any) -> str:
    """One statement's text without its trailing `;` and comments (found by DuckDB's tokenizer, so a `;`
    or `--` inside a string stays), to be wrapped as a subquery."""
    tokens = duckdb.tokenize(sql)
    end = len(tokens)
    while end and (str(tokens[end - 1][1]).endswith("comment") or sql[tokens[end - 1][0]] == ";"):
        end -= 1
    return sql[: tokens[end][0]] if end < len(tokens) else sql
