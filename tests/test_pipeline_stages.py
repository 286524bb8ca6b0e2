"""The catalogue engine's stages without Ray: featurisation, prediction with flags, atomic writing."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from xpengine.catalog.schema import catalog_schema, catalog_units, tokens_to_labels
from xpengine.features.flags import FEATURE_FLAGS, SourceFlag
from xpengine.features.vocabulary import PAPER_VOCABULARY
from xpengine.pipeline.bookkeeping import PARTITION_KEY, Ledger, PartitionBook
from xpengine.pipeline.config import InferenceConfig, load_inference_config
from xpengine.pipeline.predictor_stage import CatalogPredictor
from xpengine.pipeline.stages import PartitionTask, featurize_partition
from xpengine.pipeline.writer import CatalogWriter, PartitionRecord

PART = "000000-003111"


def _task_batch(task: PartitionTask, index: int = 0) -> dict[str, np.ndarray]:
    return {k: np.array([v]) for k, v in {**task.to_row(), "index": index}.items()}


def _featurize(task: PartitionTask, chunk_rows: int = 400, index: int = 0, **kw):
    return list(
        featurize_partition(
            _task_batch(task, index), vocabulary_json=PAPER_VOCABULARY.to_json(), chunk_rows=chunk_rows, **kw
        )
    )


def _sky_task(sky_dir: str) -> PartitionTask:
    return PartitionTask(
        name=PART,
        xp=os.path.join(sky_dir, f"XpContinuousMeanSpectrum_{PART}.csv.gz"),
        gaia=os.path.join(sky_dir, f"GaiaSource_{PART}.csv.gz"),
        hpx8_range=(0, 3111),
    )


BOOKKEEPING = {
    "partition",
    "partition_rows",
    "read_error",
    "stage_read_s",
    "stage_predict_s",
    "stage_model_s",
}


def test_featurize_yields_every_row_once_and_reports_the_total(sky_dir):
    from xpengine import io

    task = _sky_task(sky_dir)
    expected = io.read_xp_continuous(task.xp, columns=["source_id"]).column("source_id").to_numpy()
    ledger = Ledger()
    chunks = _featurize(
        task,
        index=3,
        ledger=ledger,
        tmass=os.path.join(sky_dir, "tmass.parquet"),
        ebv=os.path.join(sky_dir, "ebv.parquet"),
    )
    assert len(chunks) > 1  # chunked: memory does not grow with the partition
    sid = np.concatenate([c["source_id"] for c in chunks])
    assert sorted(sid.tolist()) == sorted(expected.tolist())
    # the rows carry their partition's index in the plan, nothing else of the bookkeeping
    for c in chunks:
        assert c[PARTITION_KEY].dtype == np.int32 and (c[PARTITION_KEY] == 3).all()
        assert not BOOKKEEPING & set(c)
    # the total goes to the ledger, once
    (event,) = ledger.take()
    assert (event["event"], event["index"], event["rows"]) == ("read", 3, len(expected))
    assert event["read_s"] > 0
    v = np.concatenate([c["values"] for c in chunks])
    assert v.shape == (len(expected), len(PAPER_VOCABULARY))
    # gaia_source joined: positions and G present; 2MASS and E(B-V) joined for most sources
    c0 = chunks[0]
    assert np.isfinite(c0["l"]).all() and np.isfinite(c0["phot_g_mean_mag"]).all()
    assert np.isfinite(v[:, PAPER_VOCABULARY.index("jh")]).mean() > 0.8
    assert np.isfinite(v[:, PAPER_VOCABULARY.index("logebv")]).mean() > 0.8


def test_corrupt_partition_is_a_ledger_event_not_a_row(tmp_path, sky_dir):
    src = _sky_task(sky_dir).xp
    bad = tmp_path / f"XpContinuousMeanSpectrum_{PART}.csv.gz"
    data = open(src, "rb").read()
    bad.write_bytes(data[: len(data) // 2])  # truncated gzip
    ledger = Ledger()
    chunks = _featurize(PartitionTask(name=PART, xp=str(bad)), index=1, ledger=ledger)
    # rows read before the damage may have gone out; none is a marker
    assert all((c["source_id"] > 0).all() for c in chunks)
    (event,) = ledger.take()
    assert (event["event"], event["index"]) == ("failed", 1)
    assert str(bad) in event["error"] or "gzip" in event["error"].lower()
    # without a ledger (a direct call) the error is raised
    with pytest.raises(Exception, match=r"gzip|EOF|Compressed|truncat|end of"):
        _featurize(PartitionTask(name=PART, xp=str(bad)))


def test_partition_book_joins_rows_and_events():
    book = PartitionBook(3, clock=iter(range(100)).__next__)
    rows = {"source_id": np.arange(5, dtype=np.int64)}
    # a batch with the end of partition 0 and the start of partition 1 (GPU actors' re-batching)
    book.add_rows(np.array([0, 0, 1, 1, 1], dtype=np.int32), rows)
    assert list(book.complete()) == []  # no totals yet
    book.apply([{"event": "read", "index": 0, "rows": 2, "read_s": 0.5}])
    ((index, parts, _),) = list(book.complete())
    assert index == 0 and parts[0]["source_id"].tolist() == [0, 1]
    book.apply([{"event": "failed", "index": 2, "error": "boom", "read_s": 0.1}])
    assert list(book.failed()) == [(2, "boom", 0)]
    book.add_rows(np.array([2], dtype=np.int32), {"source_id": np.array([9])})  # after failing: dropped
    book.apply([{"event": "predicted", "rows": 5, "predict_s": 2.0, "model_s": 1.5, "batch_size": 128}])
    assert book.stage_s == {"read": 0.6, "predict": 2.0, "model": 1.5} and book.batch_sizes == {128}
    assert [(i, r) for i, r, _ in book.unsettled()] == [(1, "incomplete: received 3 rows, expected unknown")]
    assert book.buffered == 3 and book.peak_buffered == 5


def test_partition_book_keeps_the_start_up_times():
    """The first partition read (the earliest start of a read or failed read) and each actor's first
    predictor call, by process, for the job's start-up breakdown."""
    book = PartitionBook(3)
    book.apply(
        [
            {"event": "read", "index": 1, "rows": 1, "read_s": 0.1, "started_at": 105.0},
            {"event": "failed", "index": 2, "error": "x", "read_s": 0.1, "started_at": 103.0},
            {
                "event": "predicted",
                "rows": 1,
                "predict_s": 1.0,
                "model_s": 1.0,
                "first_call_at": 107.0,
                "pid": 7,
            },
            {"event": "predicted", "rows": 1, "predict_s": 1.0, "model_s": 1.0},
            {"event": "read", "index": 0, "rows": 1, "read_s": 0.1},  # no time: left out
        ]
    )
    assert book.first_read_at == 103.0 and book.first_calls == {7: 107.0}


def test_actor_start_up_breakdown():
    from xpengine.pipeline.ray_job import _actor_startups

    ev = {"at": 103.0, "ready_at": 105.5, "pid": 7, "process_started_at": 100.5, "stages_imported_at": 102.9}
    ev |= {"torch_import_s": 2.0, "model_load_s": 0.1, "settings_s": 0.0, "warm_up_s": 0.0, "setting": None}
    (a,) = _actor_startups([ev], {7: 106.0}, t0_wall=100.0)
    assert (a["process_started_after_s"], a["stages_imported_after_s"]) == (0.5, 2.9)
    assert (a["constructor_began_after_s"], a["ready_after_s"], a["first_call_after_s"]) == (3.0, 5.5, 6.0)
    assert a["torch_import_s"] == 2.0 and a["warm_up_s"] == 0.0
    (b,) = _actor_startups([{"at": 101.0}], {}, t0_wall=100.0)  # an actor that never predicted
    assert b["constructor_began_after_s"] == 1.0 and b["first_call_after_s"] is None


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="Linux's /proc")
def test_process_start_time_is_not_a_second_early():
    """The breakdown's process start: a fresh process reports a start after its parent launched it and
    before it answered, to the clock tick (psutil's `create_time` could be up to a second early)."""
    import subprocess
    import sys
    import time

    code = "from xpengine.pipeline.bookkeeping import process_started_at; print(process_started_at())"
    launched = time.time()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    answered = time.time()
    started = float(out)
    assert launched - 0.05 <= started <= answered


@pytest.mark.parametrize(
    "gpus, actors, partitions, in_flight",
    [(0.0, 2, 2, 1), (0.0, 2, 1, 1), (0.0, 2, 3, None), (0.0, 2, 30, None), (1.0, 1, 1, None)],
)
def test_partitions_queued_per_actor(gpus, actors, partitions, in_flight):
    """No more partitions than CPU actors: one each (the first actor up never takes two); otherwise,
    and for GPU actors (row batches), Ray Data's default."""
    from xpengine.pipeline.ray_job import _tasks_in_flight
    from xpengine.pipeline.tuning import PoolPlan

    assert _tasks_in_flight(PoolPlan(actors=actors, gpus_per_actor=gpus), partitions) == in_flight


def test_model_sees_no_bookkeeping_columns(tiny_sky_model, sky_dir, monkeypatch):
    """The job's predictor stage sets the partition key aside: the model-serving class gets the
    catalogue's inputs only, and the key comes back on the results."""
    from xpengine.inference import catalogue

    seen = []
    serve = catalogue.CatalogPredictor.__call__

    def spy(self, batch):
        seen.append(set(batch))
        return serve(self, batch)

    monkeypatch.setattr(catalogue.CatalogPredictor, "__call__", spy)
    batch = _featurize(_sky_task(sky_dir), chunk_rows=300, index=5)[0]
    ledger = Ledger()
    pred = CatalogPredictor(tiny_sky_model, ["teff", "logg"], device="cpu", ledger=ledger)
    out = pred(batch)
    assert seen and PARTITION_KEY not in seen[0] and not BOOKKEEPING & seen[0]
    assert (out[PARTITION_KEY] == 5).all() and not BOOKKEEPING & set(out)
    started, predicted = ledger.take()
    assert started["event"] == "actor_started" and {"torch_import_s", "model_load_s", "settings_s"} <= set(
        started
    )
    # the start-up breakdown: when the constructor ended, no warm-up on a CPU, the first call's time
    assert (
        started["ready_at"] >= started["at"] and started["warm_up_s"] == 0.0 and started["pid"] == os.getpid()
    )
    assert predicted["event"] == "predicted" and predicted["rows"] == len(batch["source_id"])
    assert predicted["first_call_at"] >= started["ready_at"] and predicted["pid"] == os.getpid()
    pred(batch)
    assert "first_call_at" not in ledger.take()[0]  # the first call only


def test_warm_up_runs_one_synthetic_batch_of_the_context_tokens(tiny_sky_model):
    """An accelerator's actor warms up in its constructor (here called directly, on the CPU): one
    model batch of synthetic stars with the job's context tokens and nothing else."""
    pred = CatalogPredictor(tiny_sky_model, ["teff", "logg"], device="cpu")
    values = pred._synthetic_values(3)
    cols = pred.predictor.vocabulary.indices(pred.predictor.default_inputs)
    assert np.isfinite(values[:, cols]).all()
    assert np.isnan(np.delete(values, cols, axis=1)).all()
    calls = []
    predict = pred.predictor.predict
    pred.predictor.predict = lambda *a, **kw: calls.append((len(a[0]), kw["batch_size"])) or predict(*a, **kw)
    pred._warm_up()
    assert calls == [(pred.batch_size, pred.batch_size)]


def test_catalog_predictor_units_flags_and_no_loss(tiny_sky_model, sky_dir):
    chunks = _featurize(_sky_task(sky_dir), chunk_rows=5000)
    batch = chunks[0]
    n = len(batch["source_id"])
    # a source with no usable input at all must still come out, flagged
    batch["values"][0, :] = np.nan
    pred = CatalogPredictor(tiny_sky_model, ["teff", "logg", "m_h", "mass", "age"], device="cpu")
    out = pred(batch)
    assert len(out["source_id"]) == n
    assert out["n_input_tokens"][0] == 0
    assert out["flags"][0] & SourceFlag.NO_PREDICTION
    assert np.isnan(out["teff"][0]) and np.isnan(out["age_error"][0])
    ok = ~(out["flags"] & SourceFlag.NO_PREDICTION).astype(bool)
    assert ok.sum() > 0.9 * n
    assert (out["age"][ok] > 0).all() and (out["age_error"][ok] > 0).all()
    assert (out["teff_error"][ok] > 0).all()
    assert np.isfinite(out["distance_pc"][ok]).mean() > 0.9
    # flags of the feature step are kept
    feature_bits = int(FEATURE_FLAGS)
    assert ((out["flags"] & feature_bits) == (batch["flags"] & feature_bits)).all()


def test_log_labels_convert_to_linear_units():
    out = tokens_to_labels(
        {"ln_age": np.log(np.array([2.0, 10.0])), "teff": np.array([4500.0, 5000.0])},
        {"ln_age": np.array([0.1, 0.2]), "teff": np.array([50.0, 60.0])},
        ["age", "teff"],
    )
    np.testing.assert_allclose(out["age"], [2.0, 10.0], rtol=1e-6)
    np.testing.assert_allclose(out["age_error"], [0.2, 2.0], rtol=1e-6)
    np.testing.assert_allclose(out["teff_error"], [50.0, 60.0])


def test_catalog_schema_units_and_unknown_label():
    s = catalog_schema(["teff", "age"], metadata={"provenance": {"model": "x"}})
    units = json.loads(s.metadata[b"xpengine.units"])
    assert units["teff"] == "K" and units["age_error"] == "Gyr" and units["ra"] == "deg"
    assert s.field("source_id").type == "int64" and s.field("flags").type == "int64"
    assert catalog_units(["mass"])["mass"] == "Msun"
    with pytest.raises(ValueError, match="unknown catalogue label"):
        catalog_schema(["teff", "agee"])


def test_writer_is_atomic_and_resumable(tmp_path):
    import pyarrow as pa

    w = CatalogWriter(str(tmp_path / "cat"))
    schema = catalog_schema(["teff"])
    table = pa.Table.from_pydict({f.name: pa.array([1], type=f.type) for f in schema}, schema=schema)
    rec = PartitionRecord(partition="p1", status="done", input_rows=1, output_rows=1, inputs={})
    w.write_partition("p1", table, rec)
    w.write_record(
        PartitionRecord(partition="p2", status="failed", input_rows=0, output_rows=0, inputs={}, error="boom")
    )
    assert w.done_partitions() == {"p1"}
    assert w.read_manifest()["p2"]["error"] == "boom"
    assert sorted(os.listdir(tmp_path / "cat")) == ["_manifest", "_tmp", "p1.parquet"]
    assert os.listdir(tmp_path / "cat" / "_tmp") == []  # no temporary left
    # a 'done' record whose file vanished is not done (crash between file and manifest)
    os.remove(tmp_path / "cat" / "p1.parquet")
    assert w.done_partitions() == set()


def test_flat_and_nested_config_keys_fill_resources_and_flag_policy(tmp_path):
    from xpengine.catalog.flag_policy import FlagPolicy
    from xpengine.pipeline.config import DEFAULT_FLAG_POLICY, Resources

    p = tmp_path / "c.yaml"
    p.write_text("actors: 2\nbatch_size: 64\ngiant_logg_max: 3.2\ngiant_teff_range: [3600, 5400]\n")
    cfg = load_inference_config(p, {"torch_threads": 1, "dtype": None})
    assert cfg.resources == Resources(actors=2, batch_size=64, torch_threads=1)
    assert isinstance(cfg.flags, FlagPolicy) and cfg.flags.giant_teff_range == (3600.0, 5400.0)
    assert cfg.flags.giant_logg_max == 3.2 and cfg.flags.max_error == DEFAULT_FLAG_POLICY.max_error
    p.write_text(
        "resources: {actors: 2, batch_size: 64}\nflags: {giant_logg_max: 3.2, giant_teff_range: [3600, 5400]}\n"
    )
    nested = load_inference_config(p, {"torch_threads": 1})
    assert nested == cfg and nested.to_dict() == cfg.to_dict()
    # the provenance keeps the flat keys, in their old order
    fields = list(Resources.__dataclass_fields__)
    assert list(cfg.to_dict())[9 : 9 + len(fields)] == fields
    assert cfg.to_dict()["giant_logg_max"] == 3.2 and "resources" not in cfg.to_dict()
    assert InferenceConfig(actors=3).resources.actors == 3  # the constructor takes flat keys too
    p.write_text("resources: {actors: 2}\nactors: 3\n")
    with pytest.raises(ValueError, match="both flat and under"):
        load_inference_config(p)
    p.write_text("flags: {hot_bp_rp_max: 0.5}\n")
    with pytest.raises(ValueError, match="unknown `flags` keys"):
        load_inference_config(p)


def test_config_errors_are_collected(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("labels: [teff, nope]\nactors: 0\nbatch_size: 0\n")
    with pytest.raises(ValueError) as e:
        load_inference_config(p)
    msg = str(e.value)
    assert "labels" in msg and "actors" in msg and "batch_size" in msg
    p.write_text("colour: red\n")
    with pytest.raises(ValueError, match="unknown configuration keys"):
        load_inference_config(p)
    # no labels given: the model's own (the default model, gaia-xp, learned all seven catalogue labels)
    from xpengine.pipeline.config import resolve_labels

    assert InferenceConfig().labels is None
    assert resolve_labels(InferenceConfig()) == ["teff", "logg", "m_h", "alpha_m", "mass", "age", "ebv"]


def test_every_config_yaml_loads():
    import glob

    import yaml

    root = os.path.join(os.path.dirname(__file__), "..", "configs")
    files = glob.glob(os.path.join(root, "**", "*.yaml"), recursive=True)
    assert len(files) >= 8
    for f in files:
        with open(f) as fh:
            first = fh.readline()
            assert first.startswith("#"), f"{f} must start with the command that uses it"
            yaml.safe_load(fh.read())
    for f in glob.glob(os.path.join(root, "infer", "*.yaml")):
        load_inference_config(f)


def test_a_diagnostic_event_the_ledger_cannot_take_is_logged_not_raised(caplog):
    from xpengine.pipeline.bookkeeping import report

    class Refusing:
        def report(self, event):
            raise ConnectionError("ledger unreachable")

    with caplog.at_level("WARNING", logger="xpengine.pipeline.bookkeeping"):
        report(Refusing(), {"event": "actor_started"}, required=False)
    assert "actor_started" in caplog.text and "ledger unreachable" in caplog.text
    with pytest.raises(ConnectionError):
        report(Refusing(), {"event": "read", "index": 0, "rows": 1})
