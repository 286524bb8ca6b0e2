"""xpengine.catalog.colours: dereddened 2MASS J − Ks for the red-clump preset's colour–metallicity cuts."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from xpengine.catalog.colours import E_JK_PER_EBV, dereddened_jk, write_dereddened_jk
from xpengine.catalog.query import query_catalog


def _files(tmp_path):
    cat = tmp_path / "cat"
    cat.mkdir()
    pq.write_table(
        pa.table(
            {
                "source_id": np.array([5, 1, 3, 4], dtype=np.int64),
                "ebv": [0.1, 0.0, np.nan, 0.5],
                "teff": [4800.0, 4700.0, 4600.0, 4900.0],
            }
        ),
        cat / "000000-003111.parquet",
    )
    tmass = (
        tmp_path / "tmass.csv"
    )  # a CSV, as an archive export would be; source 4 has no Ks, 9 is not in the catalogue
    tmass.write_text("source_id,j_m,ks_m\n1,10.0,9.3\n3,11.0,10.4\n4,12.0,\n5,9.0,8.5\n9,8.0,7.0\n")
    return cat, tmass


def test_jk0_is_the_2mass_colour_less_the_catalogues_reddening(tmp_path) -> None:
    cat, tmass = _files(tmp_path)
    t = dereddened_jk(cat, tmass)
    assert t.column("source_id").to_pylist() == [1, 5]  # 3: no E(B−V); 4: no Ks; 9: not a catalogue star
    np.testing.assert_allclose(t.column("jk0").to_numpy(), [0.7, 0.5 - E_JK_PER_EBV * 0.1])
    assert E_JK_PER_EBV == pytest.approx(0.530, abs=1e-3)


def test_the_reddening_of_j_minus_ks_is_the_mist_tables_for_giants() -> None:
    """E(J−Ks)/E(B−V) is the law the catalogue's E(B−V) follows (MIST/C3K, R_V = 3.1), for red-clump and
    RGB giants at the extinctions the preset meets."""
    pytest.importorskip("lachesis", reason="the MIST bolometric-correction tables (astrolachesis)")
    from xpengine.simulate.isochrones import extinction

    teff, ebv = np.meshgrid([4300.0, 4600.0, 4800.0, 5000.0], [0.05, 0.3, 0.6])
    teff, ebv = teff.ravel(), ebv.ravel()
    a = extinction(teff, np.full(teff.size, 2.5), np.zeros(teff.size), 3.1 * ebv)
    np.testing.assert_allclose((a["a_j"] - a["a_ks"]) / ebv, E_JK_PER_EBV, rtol=0.01)


def test_the_written_table_feeds_the_red_clump_colour_cuts(tmp_path) -> None:
    cat, tmass = _files(tmp_path)
    out = tmp_path / "jk0.parquet"
    assert write_dereddened_jk(cat, tmass, out) == 2
    rows = query_catalog(
        cat,
        "SELECT c.source_id, k.jk0 FROM catalog c JOIN colours k USING (source_id) ORDER BY 1",
        joins={"colours": out},
    )
    assert rows.column("source_id").to_pylist() == [1, 5]
