"""The flags of the rows the catalogue job sets aside in `_rejected/` (a second copy of a source, in
its file or in another partition): those of the prediction each row carries, plus DUPLICATE_SOURCE
(why it is there). NO_PREDICTION only where the row holds no prediction; until session 20 every
rejected row had it, its predicted values there all the same."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from xpengine.catalog.schema import catalog_schema
from xpengine.features.flags import SourceFlag
from xpengine.pipeline.duplicates import GIVEN_UP_KEY, OTHER_PARTITION_REASON
from xpengine.pipeline.finish import _rows_table, resolve_cross_partition_duplicates
from xpengine.pipeline.writer import CatalogWriter, PartitionRecord

LABELS = ["teff"]
DUP = int(SourceFlag.DUPLICATE_SOURCE)
NO_PRED = int(SourceFlag.NO_PREDICTION)
NO_GAIA = int(SourceFlag.NO_GAIA_SOURCE)
OUTSIDE = int(SourceFlag.OUTSIDE_PARTITION_RANGE)


def _sid(pixel: int, k: int) -> int:
    return (pixel << 43) | k


def _columns(rows: list[tuple[int, int, float]]) -> dict[str, np.ndarray]:
    """The columns of a partition's predicted rows, as the model stage hands them to the driver:
    (source_id, flags, teff) each."""
    schema = catalog_schema(LABELS)
    cols = {f.name: np.zeros(len(rows), dtype=f.type.to_pandas_dtype()) for f in schema}
    cols["source_id"] = np.array([r[0] for r in rows], dtype=np.int64)
    cols["flags"] = np.array([r[1] for r in rows], dtype=np.int64)
    cols["teff"] = np.array([r[2] for r in rows], dtype=np.float32)
    return cols


def _single_file(writer: CatalogWriter, name: str, rows: list[tuple[int, int, float]]) -> None:
    """A done single-file partition (every source unanchored) of `rows`, as `_finish_partition` leaves it."""
    cols = _columns(rows)
    sid = cols["source_id"]
    record = PartitionRecord(
        partition=name,
        status="done",
        input_rows=len(sid),
        output_rows=len(sid),
        inputs={"xp": f"/in/{name}.csv"},
        problems={"unanchored_source_ids": [int(x) for x in sid]},
        job={"labels": LABELS},
    )
    writer.write_partition(name, _rows_table(catalog_schema(LABELS), cols, sid), record)


def _flags_and_teff(table: pa.Table) -> dict[int, tuple[int, float]]:
    return {
        r["source_id"]: (r["flags"], r["teff"])
        for r in table.select(["source_id", "flags", "teff"]).to_pylist()
    }


def test_a_source_repeated_in_its_file_is_set_aside_with_its_predictions_flags(tmp_path):
    """Two rows of one predicted source, and two of one without a prediction (no input token): the
    second of each goes to `_rejected/` with its own flags plus DUPLICATE_SOURCE."""
    from xpengine.pipeline.config import InferenceConfig
    from xpengine.pipeline.finish import _finish_partition
    from xpengine.pipeline.stages import PartitionTask

    xp = tmp_path / "stars.csv"
    xp.write_text("source_id\n")
    predicted, unpredicted = _sid(5, 1), _sid(5, 2)
    cols = _columns(
        [
            (predicted, NO_GAIA, 5000.0),
            (unpredicted, NO_GAIA | NO_PRED, np.nan),
            (predicted, NO_GAIA, 5100.0),
            (unpredicted, NO_GAIA | NO_PRED, np.nan),
        ]
    )
    w = CatalogWriter(str(tmp_path / "out"))
    summary = SimpleNamespace(partitions_done=[], partitions_failed={}, sources_written=0, rows_rejected=0)
    cfg = InferenceConfig(labels=LABELS, checksum=False)
    task = PartitionTask(name="stars", xp=str(xp))
    assert _finish_partition(w, task, [cols], cfg, {}, {"labels": LABELS}, summary, 0.1) == 2
    assert _flags_and_teff(w.read_partition("stars"))[predicted] == (NO_GAIA, 5000.0)
    rejected = _flags_and_teff(w.read_rejected("stars"))
    assert rejected[predicted] == (NO_GAIA | DUP, 5100.0)  # not NO_PREDICTION: its teff is there
    flags, teff = rejected[unpredicted]
    assert flags == NO_GAIA | NO_PRED | DUP and np.isnan(teff)


def test_a_source_given_up_to_another_partition_keeps_its_catalogue_flags(tmp_path):
    """A source in two single files: the copy moved to the loser's `_rejected/` has the flags it had in
    the loser's catalogue plus DUPLICATE_SOURCE, and the record keeps those catalogue flags."""
    out = tmp_path / "out"
    w = CatalogWriter(str(out))
    s, other = _sid(5, 2), _sid(5, 7)
    _single_file(w, "a_stars", [(s, NO_GAIA, 4800.0)])
    _single_file(w, "b_stars", [(s, NO_GAIA | OUTSIDE, 4810.0), (other, 0, 5200.0)])
    assert resolve_cross_partition_duplicates(w) == {"sources": 1, "moved_to_rejected": {"b_stars": 1}}
    rejected = w.read_rejected("b_stars")
    assert _flags_and_teff(rejected) == {s: (NO_GAIA | OUTSIDE | DUP, 4810.0)}
    assert rejected.column("reason").to_pylist() == [f"{OTHER_PARTITION_REASON}a_stars"]
    assert w.done_records()["b_stars"]["problems"][GIVEN_UP_KEY] == {"a_stars": [[s, NO_GAIA | OUTSIDE]]}


def test_rows_an_earlier_version_set_aside_get_their_catalogue_flags_back(tmp_path):
    """Rows an earlier version moved (flags DUPLICATE_SOURCE | NO_PREDICTION added to every one) and
    left without a record of the move (killed before it): the resolve records the catalogue flags,
    NO_PREDICTION only on the row whose labels are all NaN."""
    out = tmp_path / "out"
    w = CatalogWriter(str(out))
    s, blank, other = _sid(5, 2), _sid(5, 3), _sid(5, 7)
    _single_file(w, "a_stars", [(s, NO_GAIA, 4800.0), (blank, NO_GAIA | NO_PRED, np.nan)])
    _single_file(w, "b_stars", [(s, NO_GAIA, 4810.0), (blank, NO_GAIA | NO_PRED, np.nan), (other, 0, 5200.0)])
    table = w.read_partition("b_stars")
    moved = pc.is_in(table.column("source_id"), value_set=pa.array([s, blank], pa.int64()))
    gone = table.filter(moved)
    legacy = gone.set_column(
        gone.schema.get_field_index("flags"),
        gone.schema.field("flags"),
        pc.bit_wise_or(gone.column("flags"), pa.scalar(DUP | NO_PRED, pa.int64())),
    ).append_column("reason", pa.array([f"{OTHER_PARTITION_REASON}a_stars"] * 2))
    (out / "_rejected").mkdir()
    pq.write_table(legacy, w.rejected_path("b_stars"))
    pq.write_table(table.filter(pc.invert(moved)), w.catalog_path("b_stars"))
    assert resolve_cross_partition_duplicates(w) == {"sources": 0, "moved_to_rejected": {"b_stars": 0}}
    given = w.done_records()["b_stars"]["problems"][GIVEN_UP_KEY]
    assert given == {"a_stars": [[s, NO_GAIA], [blank, NO_GAIA | NO_PRED]]}


def test_the_copy_kept_is_the_one_with_a_prediction(tmp_path):
    """A source in two single files whose first copy by name has no prediction (NO_PREDICTION: e.g. no
    G there) and the second has one: the predicted copy stays in the catalogue (until session 29 the
    first by name did, a NaN row over a good one). A copy read with a problem loses to a clean one."""
    w = CatalogWriter(str(tmp_path / "out"))
    s, t, other = _sid(5, 2), _sid(5, 3), _sid(5, 7)
    _single_file(w, "a_stars", [(s, NO_GAIA | NO_PRED, np.nan), (t, int(SourceFlag.READ_PROBLEM), 4700.0)])
    _single_file(w, "b_stars", [(s, 0, 4810.0), (t, 0, 4750.0), (other, 0, 5200.0)])
    result = resolve_cross_partition_duplicates(w)
    assert result == {"sources": 2, "moved_to_rejected": {"a_stars": 2}}
    assert sorted(w.read_partition("b_stars").column("source_id").to_pylist()) == [s, t, other]
    assert w.read_partition("a_stars").num_rows == 0
    assert w.read_rejected("a_stars").column("reason").to_pylist() == [f"{OTHER_PARTITION_REASON}b_stars"] * 2
    assert resolve_cross_partition_duplicates(w) == {"sources": 0, "moved_to_rejected": {}}


def test_a_bulk_partitions_nan_row_gives_way_to_a_predicted_copy(tmp_path):
    """The copy in its own partition's HEALPix range is kept over another file's, unless it alone has no
    prediction."""
    w = CatalogWriter(str(tmp_path / "out"))
    s, kept = _sid(5, 2), _sid(5, 4)
    cols = _columns([(s, NO_PRED, np.nan), (kept, 0, 4900.0)])
    record = PartitionRecord(
        partition="XpContinuousMeanSpectrum_000005-000005",
        status="done",
        input_rows=2,
        output_rows=2,
        inputs={},
        problems={"unanchored_source_ids": []},
        hpx8_range=[5, 5],
        job={"labels": LABELS},
    )
    bulk = record.partition
    w.write_partition(bulk, _rows_table(catalog_schema(LABELS), cols, cols["source_id"]), record)
    _single_file(w, "extra", [(s, 0, 4810.0), (kept, 0, 4950.0)])
    assert resolve_cross_partition_duplicates(w) == {
        "sources": 2,
        "moved_to_rejected": {bulk: 1, "extra": 1},
    }
    assert w.read_partition(bulk).column("source_id").to_pylist() == [kept]
    assert w.read_partition("extra").column("source_id").to_pylist() == [s]
    assert resolve_cross_partition_duplicates(w) == {"sources": 0, "moved_to_rejected": {}}


def test_the_predicted_row_of_a_source_repeated_in_its_file_is_kept(tmp_path):
    """A source whose first row in its file has no prediction and whose second has one: the second stays
    in the catalogue (until session 29 the first did)."""
    from xpengine.pipeline.config import InferenceConfig
    from xpengine.pipeline.finish import _finish_partition
    from xpengine.pipeline.stages import PartitionTask

    xp = tmp_path / "stars.csv"
    xp.write_text("source_id\n")
    s = _sid(5, 1)
    cols = _columns(
        [(s, NO_GAIA | NO_PRED, np.nan), (s, int(SourceFlag.READ_PROBLEM), 4900.0), (s, 0, 5000.0)]
    )
    w = CatalogWriter(str(tmp_path / "out"))
    summary = SimpleNamespace(partitions_done=[], partitions_failed={}, sources_written=0, rows_rejected=0)
    cfg = InferenceConfig(labels=LABELS, checksum=False)
    task = PartitionTask(name="stars", xp=str(xp))
    assert _finish_partition(w, task, [cols], cfg, {}, {"labels": LABELS}, summary, 0.1) == 1
    assert _flags_and_teff(w.read_partition("stars")) == {s: (0, 5000.0)}
    assert sorted(r["teff"] for r in w.read_rejected("stars").to_pylist() if r["teff"] == r["teff"]) == [
        4900.0
    ]
