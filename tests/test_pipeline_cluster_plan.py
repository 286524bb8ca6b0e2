"""The predictor pool's plan leaves a CPU for the read tasks beside GPU actors (a review of session 19:
configs/infer/gpu.yaml's 2 CPUs per actor on a 2-CPU machine hung for ever, its reads never scheduled)."""

from __future__ import annotations

import logging

import pytest

from xpengine.pipeline.cluster import _leave_a_reader, plan_pool
from xpengine.pipeline.config import Resources


def test_gpu_actors_leave_room_for_a_read_task(caplog) -> None:
    assert _leave_a_reader(1, 2.0, 1.0, 4.0) == 2.0  # room enough: as configured
    assert _leave_a_reader(4, 1.0, 1.0, 8.0) == 1.0
    with caplog.at_level(logging.WARNING, logger="xpengine.pipeline.cluster"):
        assert _leave_a_reader(1, 2.0, 1.0, 2.0) == pytest.approx(1.0)
        assert _leave_a_reader(4, 2.0, 1.0, 8.0) == pytest.approx(7.0 / 4)  # 4 GPUs beside 8 vCPUs
    assert "leave none for the read tasks" in caplog.text
    with pytest.raises(ValueError, match="no room for 1 GPU actor"):
        _leave_a_reader(1, 1.0, 1.0, 1.0)


@pytest.mark.ray
def test_plan_pool_on_a_two_cpu_cluster(ray_local) -> None:
    """The session's local cluster has 2 CPUs: gpu.yaml's GPU actor (2 CPUs) gets 1, the read task 1."""
    plan = plan_pool(Resources(gpus_per_actor=1.0, cpus_per_actor=2.0, actors=1, device="cpu"))
    assert (plan.actors, plan.gpus_per_actor, plan.cpus_per_actor, plan.read_cpus) == (1, 1.0, 1.0, 1.0)


def test_the_actors_are_cut_to_the_partitions_before_their_cpus_are_lowered(monkeypatch, caplog) -> None:
    """Review 20: 1 partition on a 2-GPU, 4-CPU node, 2 CPUs per actor: 1 actor of 2 CPUs leaves 2 for
    the reads, so its CPUs are not lowered (nor warned of) as they would be for the 2 actors planned."""
    import ray

    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 4.0, "GPU": 2.0})
    with caplog.at_level(logging.WARNING, logger="xpengine.pipeline"):
        plan = plan_pool(Resources(cpus_per_actor=2.0, read_cpus=1.0), "custom", partitions=1)
    assert (plan.actors, plan.cpus_per_actor) == (1, 2.0)
    assert "leave none for the read tasks" not in caplog.text
    plan = plan_pool(Resources(cpus_per_actor=2.0, read_cpus=1.0), "custom", partitions=2)
    assert (plan.actors, plan.cpus_per_actor) == (2, pytest.approx(1.5))  # both run: lowered as before
