"""Catalogue Parquet files carry their units for astropy (`table_meta_yaml`) as well as for xpengine
(`xpengine.units`), and pandas and pyarrow still read them."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from xpengine.catalog.schema import catalog_schema, catalog_units
from xpengine.pipeline.ray_job import _rejected_table
from xpengine.pipeline.writer import CatalogWriter, PartitionRecord

LABELS = ["teff", "logg", "m_h", "alpha_m", "mass", "age", "ebv"]
PROVENANCE = {
    "model": "tiny",
    "model_sha256": "ab" * 32,
    "inputs": {"xp_file": {"size": 12}},
    "labels": LABELS,
}


def _columns(schema: pa.Schema, n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(5)
    sid = np.sort(rng.integers(1, 2**40, n)) + (10 << 43)
    cols = {"source_id": sid, "hpx8": (sid >> 43).astype(np.int32)}
    for f in schema:
        if f.name not in cols:
            cols[f.name] = rng.uniform(0.1, 100.0, n).astype(f.type.to_pandas_dtype())
    return cols


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[str, str, pa.Table]:
    """One partition written as the catalogue engine writes it: `catalog_schema(labels, metadata=
    {"provenance": ...})`, `CatalogWriter.write_partition`, rejected rows through the engine's
    `_rejected_table` (the catalogue columns plus `reason`)."""
    schema = catalog_schema(LABELS, metadata={"provenance": PROVENANCE})
    cols = _columns(schema, 40)
    table = pa.Table.from_pydict({f.name: pa.array(cols[f.name], type=f.type) for f in schema}, schema=schema)
    rejected = _rejected_table(table.slice(0, 3), ["duplicate: source_id also in partition x"] * 3)
    writer = CatalogWriter(str(tmp_path_factory.mktemp("cat")))
    record = PartitionRecord(partition="p1", status="done", input_rows=43, output_rows=40, inputs={})
    path = writer.write_partition("p1", table, record, rejected)
    return path, writer.rejected_path("p1"), table


def test_astropy_reads_units_descriptions_and_provenance(written):
    import astropy.units as u
    from astropy.table import Table

    path, _, table = written
    t = Table.read(path)
    assert t.colnames == table.column_names
    assert t["teff"].unit == u.K and t["teff_error"].unit == u.K
    assert t["mass"].unit == u.solMass and t["mass_error"].unit == u.solMass
    assert t["age"].unit == u.Gyr and t["age_error"].unit == u.Gyr
    assert t["logg"].unit == u.dex and t["ebv"].unit == u.mag
    assert t["ra"].unit == u.deg and t["distance_pc"].unit == u.pc
    assert t["source_id"].unit is None and t["flags"].unit is None
    # every unit comes from the one unit table
    for name, unit in catalog_units(LABELS).items():
        assert t[name].unit == (u.Unit(unit) if unit else None), name
    mass = float(t["mass"][0])
    assert t["mass"].quantity[0].to_value(u.kg) == pytest.approx(mass * 1.98840987e30)  # IAU 2015 M_sun
    assert t["teff"].description == "effective temperature: the model's mean"
    # age is exp of the mean ln age (a median); mass and age are the isochrones' on the rows flagged so
    assert t["age"].description.startswith("stellar age: exp of the model's mean ln_age")
    for name in ("mass", "age"):
        assert "MASS_AGE_FROM_ISOCHRONES" in t[name].description
    assert "MASS_AGE_FROM_ISOCHRONES" not in t["teff"].description
    assert t["age_error"].description == "1-sigma uncertainty of age"
    assert t["source_id"].description == "Gaia DR3 source_id"
    assert t.meta["xpengine.provenance"] == PROVENANCE
    for name in table.column_names:  # values and dtypes as written
        assert t[name].dtype == table.schema.field(name).type.to_pandas_dtype()
        np.testing.assert_array_equal(np.asarray(t[name]), table.column(name).to_numpy())


def test_astropy_reads_the_rejected_rows_file(written):
    """The rejected-rows file keeps the catalogue's metadata and adds `reason`: astropy (which fails on a
    column its header does not list) still reads it, with units."""
    import astropy.units as u
    from astropy.table import Table

    _, rejected_path, _ = written
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="No table::len::reason")  # string length: from the data
        t = Table.read(rejected_path)
    assert len(t) == 3 and t["teff"].unit == u.K
    assert list(t["reason"]) == ["duplicate: source_id also in partition x"] * 3


def test_pandas_and_pyarrow_read_it_unchanged(written):
    import pandas as pd

    path, _, table = written
    back = pq.read_table(path)
    # plus the job's mark of its own catalogue file (`CatalogWriter.write_partition`, review 20)
    meta = dict(back.schema.metadata)
    assert json.loads(meta.pop(b"xpengine.catalogue_file"))["partition"] == "p1"
    assert back.equals(table) and meta == table.schema.metadata
    assert json.loads(back.schema.metadata[b"xpengine.units"]) == catalog_units(LABELS)
    assert json.loads(back.schema.metadata[b"xpengine.provenance"]) == PROVENANCE
    df = pd.read_parquet(path)
    assert list(df.columns) == table.column_names
    assert df["source_id"].dtype == np.int64 and df["teff"].dtype == np.float32
    np.testing.assert_array_equal(df["age"].to_numpy(), table.column("age").to_numpy())


def test_astropy_header_lists_every_column_with_its_numpy_dtype():
    import yaml

    schema = catalog_schema(["teff"], metadata={"note": "plain text stays text"})
    header = yaml.safe_load(schema.metadata[b"table_meta_yaml"])
    listed = {c["name"]: c for c in header["datatype"]}
    assert list(listed) == [*schema.names, "reason"]
    assert listed["hpx8"]["datatype"] == "int32" and listed["n_input_tokens"]["datatype"] == "int16"
    assert "unit" not in listed["flags"] and listed["ra"]["unit"] == "deg"
    assert header["meta"]["xpengine.note"] == "plain text stays text"
    assert schema.metadata[b"xpengine.note"] == b"plain text stays text"


def test_header_is_the_text_safe_dump_writes():
    import yaml

    s = catalog_schema(("teff", "logg", "mass", "age"), {"model": "gaia-xp", "labels": ["teff", "σ ☉"]})
    text = s.metadata[b"table_meta_yaml"].decode()
    assert text == yaml.safe_dump(yaml.safe_load(text), sort_keys=False, default_flow_style=None, width=130)
