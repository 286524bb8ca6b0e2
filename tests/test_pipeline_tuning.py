"""The predictor stage's per-device choices (xpengine.pipeline.tuning) and bf16 detection: pure functions."""

from __future__ import annotations

import pytest

from xpengine.inference.predictor import bf16_native_for
from xpengine.pipeline import tuning

SAPPHIRE_RAPIDS = "fpu vme sse2 avx2 avx512f avx512_bf16 avx512_vnni amx_bf16 amx_tile amx_int8"
ICE_LAKE = "fpu vme sse2 avx2 avx512f avx512_vnni avx512_vbmi2"


@pytest.mark.parametrize(
    ("flags", "native"),
    [
        (SAPPHIRE_RAPIDS, True),
        (ICE_LAKE, False),
        ("fpu avx512_bf16", True),  # Cooper Lake / Zen 4: AVX512-BF16 without AMX
        ("fpu amx_bf16", True),
        ("", False),
        (["avx2", "amx_bf16"], True),
        ("avx512_bf16x", False),  # whole flags only
    ],
)
def test_cpu_bf16_from_flags(flags, native):
    assert bf16_native_for("cpu", cpu_flags=flags) is native


@pytest.mark.parametrize(
    ("capability", "native"), [((7, 5), False), ((8, 0), True), ((8, 9), True), ((9, 0), True), (None, False)]
)
def test_cuda_bf16_from_compute_capability(capability, native):
    assert bf16_native_for("cuda", cuda_capability=capability) is native


def test_other_devices_have_no_native_bf16():
    assert not bf16_native_for("mps", cpu_flags=SAPPHIRE_RAPIDS, cuda_capability=(9, 0))


def test_choose_takes_the_fastest_and_breaks_near_ties_by_threads_then_batch():
    assert tuning.choose({(128, 1): 900.0, (256, 1): 1000.0, (512, 1): 950.0}) == (256, 1)
    # within 3 % of the best: fewer threads first, then the smaller batch
    assert tuning.choose({(256, 2): 1000.0, (512, 1): 980.0, (256, 1): 975.0}) == (256, 1)
    assert tuning.choose({(1024, None): 5000.0, (4096, None): 5100.0}) == (1024, None)
    assert tuning.choose({(1024, None): 5000.0, (4096, None): 9000.0}) == (4096, None)
    with pytest.raises(ValueError):
        tuning.choose({})
    with pytest.raises(ValueError):
        tuning.choose({(128, 1): 0.0})


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_calibrate_times_each_setting_and_keeps_the_best_of_its_runs():
    clock = FakeClock()
    per_star = {(128, 1): 1e-3, (256, 1): 0.5e-3, (128, 2): 0.6e-3, (256, 2): 0.4e-3}
    current = {"threads": 1}
    calls = []

    def run(batch):
        calls.append((batch, current["threads"]))
        clock.t += batch * per_star[(batch, current["threads"])]

    rates = tuning.calibrate(
        run,
        [128, 256],
        threads=[1, 2],
        set_threads=lambda n: current.__setitem__("threads", n),
        budget_s=100.0,
        timer=clock,
    )
    assert rates == pytest.approx({k: 1 / v for k, v in per_star.items()})
    assert len(calls) == 4 * 3  # a warm-up and two timed calls per setting
    assert tuning.choose(rates) == (256, 2)


def test_calibrate_stops_at_its_budget_but_always_measures_one_setting():
    clock = FakeClock()

    def run(batch):
        clock.t += 1.0

    rates = tuning.calibrate(run, [128, 256, 512], budget_s=0.5, timer=clock)
    assert list(rates) == [(128, None)]


def test_calibrate_leaves_a_cold_devices_first_call_out_of_its_budget():
    clock = FakeClock()
    calls = []

    def run(batch):
        calls.append(batch)
        clock.t += 3.0 if len(calls) == 1 else batch * 1e-6  # the first call pays the device's start

    rates = tuning.calibrate(run, [2048, 8192, 32768], budget_s=1.0, timer=clock)
    assert list(rates) == [(2048, None), (8192, None), (32768, None)]
    assert tuning.choose(rates)[0] == 2048  # equal rates: the smaller batch


@pytest.mark.parametrize(
    ("kwargs", "plan"),
    [
        # nothing given, nothing measured: one thread per actor, the actors fill the node
        ({"total_cpus": 2, "actors": None, "cpus_per_actor": None, "torch_threads": None, "table_threads": None}, (2, 1.0, 1)),
        ({"total_cpus": 16, "actors": None, "cpus_per_actor": None, "torch_threads": None, "table_threads": 4}, (4, 4.0, 4)),
        ({"total_cpus": 2, "actors": None, "cpus_per_actor": None, "torch_threads": 2, "table_threads": 1}, (1, 2.0, 2)),
        ({"total_cpus": 8, "actors": 1, "cpus_per_actor": None, "torch_threads": None, "table_threads": None}, (1, 1.0, 1)),
        # CPUs given: threads up to them, never more than the CPUs unless asked for
        ({"total_cpus": 8, "actors": None, "cpus_per_actor": 2.0, "torch_threads": None, "table_threads": 4}, (4, 2.0, 2)),
        ({"total_cpus": 2, "actors": None, "cpus_per_actor": 1.0, "torch_threads": 2, "table_threads": None}, (2, 1.0, 2)),
        # a table row made on a bigger machine never asks for more CPUs than the cluster has
        ({"total_cpus": 2, "actors": None, "cpus_per_actor": None, "torch_threads": None, "table_threads": 4}, (1, 2, 2)),
    ],
)  # fmt: skip
def test_cpu_plan(kwargs, plan):
    assert tuning.cpu_plan(**kwargs) == plan


def test_lookup_and_architecture_names():
    import json
    import os

    table = {"cpu:X:2": {"small": {"batch_size": 256, "threads_per_actor": 1}}}
    assert tuning.lookup(table, "cpu:X:2", "small") == {"batch_size": 256, "threads_per_actor": 1}
    assert tuning.lookup(table, "cpu:X:2", "paper") is None
    assert tuning.lookup(table, "cpu:Y:2", "small") is None
    from xpengine.inference.predictor import resolve_model_path
    from xpengine.model.transformer import PRESETS

    with open(os.path.join(resolve_model_path("gaia-xp"), "config.json")) as f:
        assert tuning.architecture_name(json.load(f)["model"]) == "paper"  # gaia-xp v5
    assert tuning.architecture_name(PRESETS["paper"]) == "paper"
    assert tuning.architecture_name({"d_model": 48}) == "custom"
    assert tuning.device_signature("cuda", cuda_name="NVIDIA H100 80GB HBM3") == "cuda:NVIDIA H100 80GB HBM3"
    cpu = tuning.device_signature("cpu", cpus=2)
    assert cpu.startswith("cpu:") and cpu.endswith(":2")


def test_table_threads_name_the_architecture_only_when_the_answer_depends_on_it():
    """Naming the model's architecture imports torch; the driver's pool plan does without it when
    every row for its CPU gives one thread (what an unmeasured architecture gets)."""
    asked = []

    def arch(name):
        return lambda: asked.append(name) or name

    one = {"cpu:X:2": {"small": {"batch_size": 128, "threads_per_actor": 1}}}
    assert tuning.table_threads(one, "cpu:X:2", arch("small")) is None and not asked
    assert tuning.table_threads(one, "cpu:Y:2", arch("small")) is None and not asked
    two = {"cpu:X:2": {"small": {"batch_size": 128, "threads_per_actor": 2}}}
    assert tuning.table_threads(two, "cpu:X:2", arch("small")) == 2
    assert tuning.table_threads(two, "cpu:X:2", arch("paper")) is None
    assert asked == ["small", "paper"]
    # same plan either way: no table threads means one thread per actor
    for table, name in ((one, "small"), (two, "small"), (two, "paper")):
        entry = tuning.lookup(table, "cpu:X:2", name)
        old = tuning.cpu_plan(2, actors=None, cpus_per_actor=None, torch_threads=None,
                              table_threads=None if entry is None else entry["threads_per_actor"])  # fmt: skip
        new = tuning.cpu_plan(2, actors=None, cpus_per_actor=None, torch_threads=None,
                              table_threads=tuning.table_threads(table, "cpu:X:2", lambda n=name: n))  # fmt: skip
        assert new == old


def test_every_table_row_is_complete():
    for signature, rows in tuning.MEASURED.items():
        assert signature.startswith(("cpu:", "cuda:"))
        for architecture, row in rows.items():
            assert architecture in ("paper", "small", "tiny", "custom")
            assert int(row["batch_size"]) >= 1 and row["measured"]
            if signature.startswith("cpu:"):
                assert int(row["threads_per_actor"]) >= 1
