"""`benchmarks/bench_pool_shape.py`: the fixed cost and marginal rate it derives from a pair of job runs, and
its table (the runs themselves are Ray jobs of minutes: the script is run by hand, its result committed)."""

from __future__ import annotations

import pytest
from _paths import load_script


def test_marginal_rate_and_fixed_cost_from_two_runs(monkeypatch, tmp_path):
    bps = load_script("benchmarks/bench_pool_shape.py", "bench_pool_shape")
    work = {"in2": 12.0, "inN": 36.0}  # 2000 sources in 12 s, 8000 in 36 s: 250 sources/s, 4 s fixed

    def fake_run(code, args, env=None):
        assert "SHAPE" in env and "actors" in env["SHAPE"]
        tag = args[0].rsplit("/", 1)[-1]
        n = 2000 if tag == "in2" else 8000
        return {"ok": True, "work_s": work[tag], "sources": n}, 1234.0

    monkeypatch.setattr(bps.bp, "_run", fake_run)
    row = bps.measure({2: tmp_path / "in2", 8: tmp_path / "inN"}, tmp_path, {"actors": 1}, "t")
    assert row["marginal_sources_per_s"] == pytest.approx(250.0)
    assert row["fixed_cost_s"] == pytest.approx(4.0)
    result = {
        "command": "c",
        "machine": "m",
        "date_utc": "d",
        "partitions": 8,
        "repeats": 1,
        "rows": [{"repeat": 0, "shape": "1 actor × 2 threads", **row}],
    }
    text = bps.markdown(result)
    # no default-shape row in this repeat: its ratio is NaN, the fixed cost's against the 5-s target
    assert "| 0 | 1 actor × 2 threads | 12.00 | 36.00 | 250.0 | nan | 4.00 | 0.80 | 1234 |" in text
    default = {**row, "repeat": 0, "shape": next(iter(bps.SHAPES)), "marginal_sources_per_s": 500.0}
    text = bps.markdown({**result, "rows": [default, *result["rows"]]})
    assert "| 250.0 | 0.50 | 4.00 | 0.80 |" in text


def test_a_failed_job_is_not_a_measurement(monkeypatch, tmp_path):
    bps = load_script("benchmarks/bench_pool_shape.py", "bench_pool_shape")
    monkeypatch.setattr(
        bps.bp, "_run", lambda code, args, env=None: ({"ok": False, "work_s": 1.0, "sources": 0}, 1.0)
    )
    with pytest.raises(RuntimeError, match="failed"):
        bps.measure({2: tmp_path / "a", 8: tmp_path / "b"}, tmp_path, {}, "t")
