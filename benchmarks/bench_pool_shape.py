"""The Ray job's fixed cost and marginal rate for two shapes of its CPU actor pool, side by side in one run.

    python benchmarks/bench_pool_shape.py [--partitions 8] [--repeats 2] [--json F] [--markdown F]

On a 2-core box the job's fixed cost (issue 16's target: ≤ 5 s) is CPU-bound start-up: each predictor
actor is a process that imports Ray Data and torch and loads the model (about 5 CPU-s each), beside Ray
Data's helper actors. One actor with two torch threads pays that once. This asks what it costs in
throughput. For each shape (the measured table's default: 2 actors × 1 thread; and 1 actor × 2 threads),
alternating, each `--repeats` times: the job on 2 partitions and on `--partitions` partitions of the
bundled sky (`bench_pipeline._make_inputs`: 1000 sources each, real bulk format), each on a fresh local
cluster with 2 CPUs. The marginal rate is the difference of sources over the difference of work time (after
`ray.init`) between the two runs; the fixed cost is the 2-partition run's work time less its sources at that
rate (`bench_pipeline.py`'s definition).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_pipeline as bp  # noqa: E402
from check_report import check_parser, command_line, run_header, write_outputs  # noqa: E402

SHAPES = {
    "2 actors × 1 thread (the table's default)": {},
    "1 actor × 2 threads": {"actors": 1, "torch_threads": 2},
}
FIXED_COST_TARGET_S = 5.0  # issue 16's target for the job's fixed cost
# bench_pipeline's job snippet with the shape's resources passed to InferenceConfig
JOB = bp.RAY.replace(
    "progress_interval_s=1e9,", "progress_interval_s=1e9, **json.loads(os.environ['SHAPE']),"
)


def measure(inputs: dict[int, Path], out: Path, shape: dict[str, Any], tag: str) -> dict[str, Any]:
    """One shape's pair of runs (2 and N partitions): work times, marginal rate, fixed cost, peak memory."""
    runs = {}
    for n, path in inputs.items():
        res, peak = bp._run(
            JOB, [str(path), str(out / f"{tag}_{n}"), "gaia-xp"], env={"SHAPE": json.dumps(shape)}
        )
        if not res["ok"]:
            raise RuntimeError(f"the job failed on {n} partitions: {res}")
        runs[n] = {"work_s": res["work_s"], "sources": res["sources"], "peak_mb": peak}
    r2, rn = (runs[n] for n in sorted(runs))
    rate = (rn["sources"] - r2["sources"]) / (rn["work_s"] - r2["work_s"])
    return {
        "runs": runs,
        "marginal_sources_per_s": rate,
        "fixed_cost_s": r2["work_s"] - r2["sources"] / rate,
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# The Ray job's CPU pool: 2 actors × 1 thread against 1 actor × 2 threads",
        "",
        command_line(result),
        "",
    ]
    lines += [
        f"Each shape alternately, {result['repeats']} times: the job on 2 and on {result['partitions']} partitions "
        "(1000 sources each), fresh local cluster (2 CPUs) per run; marginal rate from the difference, fixed "
        "cost = 2-partition work time − its sources at that rate. Target (issue 16): fixed cost ≤ 5 s.",
        "Ratios: the marginal rate over the default shape's in the same repeat; the fixed cost over the "
        "5-s target.",
        "",
        "| repeat | shape | work, 2 partitions [s] | work, N [s] | marginal [sources/s] | marginal / default | "
        "fixed cost [s] | fixed cost / 5 s | peak memory, 2 partitions [MB] |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    default = {row["repeat"]: row for row in result["rows"] if row["shape"] == next(iter(SHAPES))}
    for row in result["rows"]:
        r = row["runs"]
        lo, hi = sorted(r, key=int)
        base = default.get(row["repeat"])
        ratio = row["marginal_sources_per_s"] / base["marginal_sources_per_s"] if base else float("nan")
        lines.append(
            f"| {row['repeat']} | {row['shape']} | {r[lo]['work_s']:.2f} | {r[hi]['work_s']:.2f} | "
            f"{row['marginal_sources_per_s']:.1f} | {ratio:.2f} | {row['fixed_cost_s']:.2f} | "
            f"{row['fixed_cost_s'] / FIXED_COST_TARGET_S:.2f} | {r[lo]['peak_mb']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = check_parser(__doc__)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args(argv)
    if args.partitions <= 2:
        raise SystemExit("bench_pool_shape: --partitions must be above 2")
    result: dict[str, Any] = run_header("benchmarks/bench_pool_shape.py", argv, load=True)
    result.update(partitions=args.partitions, repeats=args.repeats, rows=[])
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        inputs = {2: tmp_path / "in2", args.partitions: tmp_path / "inN"}
        for n, path in inputs.items():
            bp._make_inputs(path, n)
        for rep in range(args.repeats):
            for k, (name, shape) in enumerate(SHAPES.items()):
                row = measure(inputs, tmp_path, shape, f"r{rep}s{k}")
                result["rows"].append({"repeat": rep, "shape": name, **row})
                print(
                    f"repeat {rep}  {name}: marginal {row['marginal_sources_per_s']:.1f} sources/s, "
                    f"fixed cost {row['fixed_cost_s']:.2f} s ({row['fixed_cost_s'] / FIXED_COST_TARGET_S:.2f}× "
                    "the target)",
                    flush=True,
                )
    write_outputs(result, args.json, args.markdown, markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
