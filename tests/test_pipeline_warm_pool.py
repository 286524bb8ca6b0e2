"""The catalogue job on a warm predictor pool (`--warm-pool`): detached actors found by name by the next
job, the same catalogue as Ray Data's actor pool, a bad partition failing alone, idle actors ending
themselves, and `stop_pools` (session fixture `ray_local`: its cluster stands in for a running one)."""

from __future__ import annotations

import os
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
from _sky_inputs import add_truncated_partition, copy_sky

from xpengine.pipeline import warm_pool
from xpengine.pipeline.config import InferenceConfig
from xpengine.pipeline.ray_job import run_inference

pytestmark = [pytest.mark.ray, pytest.mark.slow]

PARTS = ("000000-003111", "245760-248871")
COLS = [
    "source_id",
    "teff",
    "logg",
    "m_h",
    "mass",
    "age",
    "teff_error",
    "mass_error",
    "age_error",
    "distance_pc",
    "flags",
]


def _copy_sky(sky_dir: str, dest, parts=PARTS) -> None:
    copy_sky(sky_dir, dest, parts)


@pytest.fixture
def no_pools_left(ray_local):
    """Every warm pool this test started is stopped at its end (they hold the session cluster's CPUs)."""
    warm_pool.stop_pools()
    yield
    warm_pool.stop_pools()


def _cfg(inp, out, model, **kw) -> InferenceConfig:
    return InferenceConfig(
        input=[str(inp)], model=model, output=str(out), chunk_rows=400, checksum=False,
        labels=["teff", "logg", "m_h", "mass", "age"], torch_threads=1, cpus_per_actor=1, batch_size=256,
        **kw,
    )  # fmt: skip


def test_second_job_finds_the_pool_warm_and_the_catalogue_is_ray_datas(
    no_pools_left, tmp_path, sky_dir, tiny_sky_model, capsys
):
    inp = tmp_path / "in"
    _copy_sky(sky_dir, inp)
    # a third partition whose XP file is corrupt (truncated gzip): it fails alone
    bad = "688128-691239"
    add_truncated_partition(sky_dir, inp, bad)

    first = run_inference(_cfg(inp, tmp_path / "warm1", tiny_sky_model, warm_pool=True, actors=1))
    assert list(first.partitions_failed) == [bad] and sorted(first.partitions_done) == sorted(PARTS)
    assert first.ray_operators == [f"warm pool {first.predictor['warm_pool']}"]
    [started] = first.startup["actors"]
    assert not started["reused"] and started["partitions_served"] == 3 and "torch_import_s" in started
    assert first.predictor["stage_seconds"]["model"] > 0  # the actor's timings reach the job's ledger
    pools = warm_pool.list_pools()
    assert list(pools) == [first.predictor["warm_pool"]] and len(pools[first.predictor["warm_pool"]]) == 1

    second = run_inference(_cfg(inp, tmp_path / "warm2", tiny_sky_model, warm_pool=True, actors=1))
    [found] = second.startup["actors"]
    assert found["reused"] and found["pid"] == started["pid"] and found["partitions_served"] == 6
    assert "torch_import_s" not in found
    assert second.predictor["warm_pool"] == first.predictor["warm_pool"]

    # Ray Data's actor pool on the same stars writes the same catalogue (to float32 rounding: Ray Data
    # may cut the model batches elsewhere); the two warm jobs, the same batches, write identical ones
    plain = run_inference(_cfg(inp, tmp_path / "ray_data", tiny_sky_model, actors=1))
    assert plain.ray_operators != first.ray_operators and list(plain.partitions_failed) == [bad]
    for p in PARTS:
        ref = pq.read_table(tmp_path / "ray_data" / f"{p}.parquet", columns=COLS).to_pandas()
        w1 = pq.read_table(tmp_path / "warm1" / f"{p}.parquet", columns=COLS).to_pandas()
        w2 = pq.read_table(tmp_path / "warm2" / f"{p}.parquet", columns=COLS).to_pandas()
        assert len(w1) == len(ref) == 1000 and w1.equals(w2)
        assert (w1["source_id"] == ref["source_id"]).all() and (w1["flags"] == ref["flags"]).all()
        for c in COLS[1:-1]:
            # the isochrone mass and age (flag MASS_AGE_FROM_ISOCHRONES): the fit's float32 χ² is centred on
            # the stars fitted with it, which moves an answer by up to ~2e-5 (session 23; a hard edge of the
            # χ² ball moved one star's age by 1.2e-4 before its weights were made continuous there)
            rtol = 1e-4 if c in ("mass", "age", "mass_error", "age_error") else 1e-5
            np.testing.assert_allclose(w1[c], ref[c], rtol=rtol, equal_nan=True, err_msg=f"{p} {c}")

    # other labels are another pool: the idle one is stopped first, so its CPU comes free
    other = run_inference(
        InferenceConfig(
            input=[str(inp)], model=tiny_sky_model, output=str(tmp_path / "other"), chunk_rows=400,
            checksum=False, labels=["teff", "logg"], torch_threads=1, cpus_per_actor=1, actors=1,
            warm_pool=True,
        )
    )  # fmt: skip
    assert other.predictor["warm_pool"] != first.predictor["warm_pool"]
    assert list(warm_pool.list_pools()) == [other.predictor["warm_pool"]]
    assert sorted(other.partitions_done) == sorted(PARTS)

    # `xpengine pool list|stop` on the running cluster (here the session's, which it leaves running)
    import ray

    from xpengine.cli import main

    address = ray.get_runtime_context().gcs_address
    assert main(["pool", "list", "--address", address]) == 0
    listed = capsys.readouterr().out
    assert (
        f"{warm_pool.PREFIX}{other.predictor['warm_pool']}-0: pid" in listed
        and "3 partition(s) for 1 job(s)" in listed
    )
    assert main(["pool", "stop", "--address", address]) == 0
    assert "stopped 1 warm pool actor(s)" in capsys.readouterr().out
    assert warm_pool.list_pools() == {} and ray.is_initialized()
    assert main(["pool", "list", "--address", address]) == 0
    assert "no warm pool on this cluster" in capsys.readouterr().out


def test_a_partition_whose_actor_dies_is_retried_on_a_new_one(
    no_pools_left, tmp_path, sky_dir, tiny_sky_model, monkeypatch
):
    inp = tmp_path / "in"
    _copy_sky(sky_dir, inp)
    marker = tmp_path / "died"
    monkeypatch.setenv(warm_pool.DIE_ENV, f"{PARTS[1]}|{marker}")
    s = run_inference(_cfg(inp, tmp_path / "out", tiny_sky_model, warm_pool=True, actors=1))
    assert marker.exists(), "the test hook never fired"
    assert s.ok and sorted(s.partitions_done) == sorted(PARTS) and s.sources_written == 2000
    # the actor that died is gone: the pool's actor now is the one started for the retry
    [actor] = s.startup["actors"]
    assert not actor["reused"] and actor["partitions_served"] >= 1
    for p in PARTS:
        assert pq.read_metadata(tmp_path / "out" / f"{p}.parquet").num_rows == 1000


def test_a_loopback_address_is_told_apart():
    from xpengine.pipeline.cluster import is_loopback

    for a in ("127.0.0.1:6379", "localhost:6379", "ray://127.0.0.1:10001", "[::1]:6379", "127.0.1.1:1"):
        assert is_loopback(a), a
    for a in ("10.0.0.5:6379", "head-node:6379", "auto", "ray://192.0.2.2:10001"):
        assert not is_loopback(a), a


def test_an_idle_warm_actor_ends_itself(no_pools_left, tmp_path, sky_dir, tiny_sky_model):
    inp = tmp_path / "in"
    _copy_sky(sky_dir, inp, parts=PARTS[:1])
    s = run_inference(
        _cfg(inp, tmp_path / "out", tiny_sky_model, warm_pool=True, actors=1, warm_pool_idle_s=1.0)
    )
    assert s.ok and s.sources_written == 1000
    deadline = time.monotonic() + 30
    while warm_pool.list_pools() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert warm_pool.list_pools() == {}, "the idle actor is still there after 30 s"


def test_pool_key_follows_what_changes_the_output(tiny_sky_model):
    from xpengine.pipeline.identity import _model_provenance
    from xpengine.pipeline.tuning import PoolPlan

    prov = _model_provenance(tiny_sky_model)
    base = InferenceConfig(model=tiny_sky_model, labels=["teff", "mass"])
    pool = PoolPlan(actors=2, cpus_per_actor=1.0, torch_threads=1, device="cpu")
    key = warm_pool.pool_key(base, pool, prov)
    assert len(key) == 12 and key == warm_pool.pool_key(
        base, PoolPlan(**{**pool.to_dict(), "actors": 5}), prov
    )
    assert key != warm_pool.pool_key(InferenceConfig(model=tiny_sky_model, labels=["teff"]), pool, prov)
    assert key != warm_pool.pool_key(
        InferenceConfig(model=tiny_sky_model, labels=["teff", "mass"], giant_logg_max=3.0), pool, prov
    )
    assert key != warm_pool.pool_key(base, PoolPlan(**{**pool.to_dict(), "torch_threads": 2}), prov)
    assert key != warm_pool.pool_key(base, pool, {**prov, "model_sha256": "0" * 64})


def test_warm_pool_idle_seconds_are_checked():
    with pytest.raises(ValueError, match="warm_pool_idle_s"):
        InferenceConfig(warm_pool=True, warm_pool_idle_s=0).validate()


def test_reads_overlapped_with_the_model_give_the_same_rows(sky_dir, tiny_sky_model):
    """The accelerator actor's path (the next partition read on a thread of its own while the model
    runs), taken here by a CPU worker given a read thread, as plain Python: the same rows and events."""
    from concurrent.futures import ThreadPoolExecutor

    from xpengine.pipeline.bookkeeping import PARTITION_KEY, Ledger
    from xpengine.pipeline.config import DEFAULT_FLAG_POLICY
    from xpengine.pipeline.identity import _model_vocabulary_json
    from xpengine.pipeline.stages import PartitionTask
    from xpengine.pipeline.tuning import PoolPlan

    pool = PoolPlan(actors=1, cpus_per_actor=1, torch_threads=1, device="cpu", batch_size=256)
    worker = warm_pool.PoolWorker(
        "k", tiny_sky_model, ["teff", "logg", "mass"], pool=pool, flag_policy=DEFAULT_FLAG_POLICY,
        inputs=None, idle_s=None,
    )  # fmt: skip
    assert worker._read_thread is None  # a CPU actor reads on its model thread
    task = PartitionTask(
        name=PARTS[0],
        xp=os.path.join(sky_dir, f"XpContinuousMeanSpectrum_{PARTS[0]}.csv.gz"),
        gaia=os.path.join(sky_dir, f"GaiaSource_{PARTS[0]}.csv.gz"),
    )
    row = {**task.to_row(), "index": 3}
    featurize = {
        "vocabulary_json": _model_vocabulary_json(tiny_sky_model),
        "chunk_rows": 400,
        "tmass": None,
        "ebv": None,
    }
    ledger = Ledger()
    alone = worker.run(row, featurize, ledger)
    worker._read_thread = ThreadPoolExecutor(1)
    overlapped = worker.run(row, featurize, ledger)
    assert (
        [len(b["source_id"]) for b in alone] == [len(b["source_id"]) for b in overlapped] == [400, 400, 200]
    )
    for a, b in zip(alone, overlapped, strict=True):
        assert a.keys() == b.keys() and (a[PARTITION_KEY] == 3).all()
        for k in a:
            assert np.array_equal(a[k], b[k], equal_nan=a[k].dtype.kind == "f"), k
    reads = [e for e in ledger.take() if e["event"] == "read"]
    assert [(e["index"], e["rows"]) for e in reads] == [(3, 1000), (3, 1000)]
    assert worker.info()["partitions"] == 2 and worker.info()["busy"] == 0
