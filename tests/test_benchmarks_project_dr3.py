"""benchmarks/project_dr3.py's projection arithmetic on hand-made per-core costs."""

from __future__ import annotations

import pytest
from _paths import load_script

project_dr3 = load_script("benchmarks/project_dr3.py", "project_dr3")

MEASURED = {
    "parse_xp": 60e-6,
    "parse_gaia_source": 10e-6,
    "join": 2e-6,
    "tokens": 8e-6,
    "compact_read": 3e-6,
    "model": {
        "gaia-xp": {"s_per_source": 8e-3, "flops_per_source": 265e6},
        "paper preset": {"s_per_source": 4e-3, "flops_per_source": 183e6},
    },
}


def _row(rows, machine, inputs, model):
    (r,) = [
        r for r in rows if r["machine"].startswith(machine) and r["inputs"] == inputs and r["model"] == model
    ]
    return r


def test_cpu_rows_add_the_stages_and_gpu_rows_take_the_slower_side():
    n = project_dr3.N_DR3
    rows = project_dr3.project(MEASURED, 2, 0.05, {"gaia-xp": 100_000.0})
    box = _row(rows, "this box", "bulk .csv.gz", "gaia-xp")
    assert box["wall_hours"] == pytest.approx(n * (60e-6 + 10e-6 + 2e-6 + 8e-6 + 8e-3) / 2 / 3600)
    assert box["bottleneck"].startswith("model")
    # a measured rate replaces the assumed fraction for that model only
    gpu = _row(rows, "GPU node", "bulk .csv.gz", "gaia-xp")
    assert gpu["wall_hours"] == pytest.approx(n / 100_000.0 / 3600)
    assert gpu["bottleneck"].startswith("GPU model")
    paper = _row(rows, "GPU node", "bulk .csv.gz", "paper preset")
    gpu_s = n * 183e6 / (project_dr3.H100_BF16_TFLOPS * 1e12 * 0.05)
    cpu_s = n * (60e-6 + 10e-6 + 2e-6 + 8e-6) / 16
    assert paper["wall_hours"] == pytest.approx(max(gpu_s, cpu_s) / 3600)
    assert paper["bottleneck"].startswith("CPU read" if cpu_s > gpu_s else "GPU model")


def test_gpu_measured_needs_model_equals_rate(tmp_path):
    with pytest.raises(SystemExit):
        project_dr3.main(["--json", str(tmp_path / "x.json"), "--gpu-measured", "123"])


def test_the_isochrone_stage_runs_on_the_cpu_cores_of_every_machine():
    """Since session 20 the stars outside the model's domain get an isochrone fit on the CPU: a CPU stage
    on every machine, which can become the GPU node's bottleneck."""
    n = project_dr3.N_DR3
    m = {**MEASURED, "isochrones": 1e-3}
    rows = project_dr3.project(m, 2, 0.05, {"gaia-xp": 1_000_000.0})
    box = _row(rows, "this box", "bulk .csv.gz", "gaia-xp")
    assert box["wall_hours"] == pytest.approx(n * (60e-6 + 10e-6 + 2e-6 + 8e-6 + 1e-3 + 8e-3) / 2 / 3600)
    gpu = _row(rows, "GPU node", "bulk .csv.gz", "gaia-xp")
    assert gpu["wall_hours"] == pytest.approx(n * (60e-6 + 10e-6 + 2e-6 + 8e-6 + 1e-3) / 16 / 3600)
    assert gpu["bottleneck"].startswith("CPU isochrones")
