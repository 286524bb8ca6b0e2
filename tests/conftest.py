"""Shared pytest fixtures. Each block is owned by the area named in its comment; keep blocks
self-contained so that engineers can add theirs without touching others'."""

from __future__ import annotations

import os
import tempfile

import pytest

# --- inference area: the isochrone grid of `xpengine.inference.isochrone_fit` is cached on disk; the suite
# keeps its own cache (built once per process, ~2 s) instead of writing the user's ~/.cache/xpengine
os.environ.setdefault("XPENGINE_CACHE", tempfile.mkdtemp(prefix="xpengine-test-cache-"))


# --- model / train area: a local Ray cluster for tests marked `ray` --------------------------------
@pytest.fixture(scope="session")
def ray_local():
    """A local Ray cluster (2 CPUs, no dashboard) for the whole session; shut down at the end only if
    this fixture started it."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()


# --- model / train / tasks areas: tiny models on a shared 2-core machine ------------------------------
@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch intra-op thread for a module of tiny-model tests: two threads oversubscribe a shared
    2-core box (measured 25-50x slower under load). Use with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- catalogue engine area: a tiny model trained on the bundled sky, for plumbing tests -----------
@pytest.fixture(scope="session")
def sky_dir():
    """The bundled simulated sky (package data)."""
    from importlib.resources import files

    return str(files("xpengine") / "data" / "sky")


@pytest.fixture(scope="session")
def tiny_sky_model(tmp_path_factory, sky_dir):
    """A tiny transformer (full vocabulary) trained for 2 epochs on the bundled sky's survey stars
    through the project's own dataset builder and training loop: for plumbing tests only."""
    from xpengine.datasets.schema import read_training_set, write_training_set
    from xpengine.datasets.synthetic import build_synthetic
    from xpengine.train.config import TrainConfig
    from xpengine.train.loop import train

    root = tmp_path_factory.mktemp("tiny_sky_model")
    data = root / "sky.parquet"
    write_training_set(build_synthetic(sky_dir).table, str(data))
    cfg = TrainConfig.from_dict(
        {
            "model": "tiny",
            "epochs": 2,
            "batch_size": 32,
            "val_every": 2,
            "checkpoint_every": 2,
            "device": "cpu",
            "precision": "fp32",
            "val_labels": ["teff", "logg", "m_h", "mass", "ln_age"],
        }
    )
    result = train(cfg, read_training_set(str(data), split="train"), None, output_dir=root / "run")
    return str(result.model_dir)


# --- datasets area: the real APOGEE x XP dev file built once per session ---------------------------
@pytest.fixture(scope="session")
def apogee_xp_dev_build():
    """`build_apogee_xp` of the whole real dev file (about 8 s on the 2-core box); skipped, naming the
    path looked for, when the shared data file is absent."""
    from _datasets_real import DEV  # tests/ is on sys.path (pytest's rootdir conftest)
    from _paths import skip_unless_exists

    skip_unless_exists(DEV)
    from xpengine.datasets.apogee_xp import build_apogee_xp

    return build_apogee_xp(DEV)


# --- catalogue query area: small simulated catalogues (tests/_query_catalog.py) ----------------------
@pytest.fixture(scope="session")
def simulated_catalog(tmp_path_factory):
    """Factory (name, n, seed, **write_catalog keywords) → (directory, columns): `simulate(n, seed)`
    written by `write_catalog` into a fresh temporary directory `name`; the query test modules' `cat`."""
    from _query_catalog import simulate, write_catalog  # tests/ is on sys.path (pytest's rootdir conftest)

    def make(name: str, n: int, seed: int, **kwargs):
        cols = simulate(n, seed=seed)
        d = tmp_path_factory.mktemp(name)
        write_catalog(d, cols, **kwargs)
        return d, cols

    return make


# --- GaiaXPy, imported by reference tests, sets matplotlib's text.usetex globally: undo it ------------
@pytest.fixture(autouse=True)
def _no_usetex():
    yield
    import sys

    if "matplotlib" in sys.modules:
        sys.modules["matplotlib"].rcParams["text.usetex"] = False


# --- object storage: an S3-compatible server on loopback (moto) ------------------------------------
@pytest.fixture
def s3_server(monkeypatch):
    """A moto S3 server on 127.0.0.1 for this test, with the AWS environment pointing at it (the
    variables also returned, for subprocesses)."""
    import socket

    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {
        "AWS_ACCESS_KEY_ID": "xpengine-test",
        "AWS_SECRET_ACCESS_KEY": "xpengine-test-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    yield env
    server.stop()
