"""Shared pytest fixtures. Each block is owned by the area named in its comment; keep blocks
self-contained so that engineers can add theirs without touching others'."""

from __future__ import annotations

import os

import pytest


# --- model / train area: a local Ray cluster for tests marked `ray` --------------------------------
@pytest.fixture(scope="session")
def ray_local():
    """A local Ray cluster (2 CPUs, no dashboard) for the whole session; shut down at the end only if
    this fixture started it."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()
