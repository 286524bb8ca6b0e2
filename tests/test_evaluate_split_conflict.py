"""`xpengine evaluate` refuses to fit the σ calibration on the rows it scores (--split = --val-split on the
same file): the reported z-spreads would be calibrated on the test data itself."""

from __future__ import annotations

import pytest

import xpengine.evaluate.cli as evaluate_cli
from xpengine.cli import main


@pytest.fixture
def calls(monkeypatch):
    """Record run_evaluation's calls instead of loading a model."""
    seen: list[dict] = []

    def fake(model, data, output, **kwargs):
        seen.append({"model": model, "data": data, **kwargs})
        return {}

    monkeypatch.setattr(evaluate_cli, "run_evaluation", fake)
    return seen


def _argv(tmp_path, *extra: str) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = tmp_path / "data.parquet"  # the CLI reads its split column before the run
    pq.write_table(pa.table({"split": ["train", "val", "test"]}), data)
    return ["evaluate", "--model", "m", "--data", str(data), "--output", str(tmp_path / "out"), *extra]


@pytest.mark.parametrize(
    "extra",
    [
        ("--split", "val"),  # --val-split defaults to val
        ("--split", "val", "--val-split", "val"),
        ("--split", "test", "--val-split", "test"),
    ],
)
def test_same_split_of_the_same_file_is_refused(tmp_path, capsys, calls, extra):
    with pytest.raises(SystemExit) as exc:
        main(_argv(tmp_path, *extra))
    assert exc.value.code == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert "error:" in last and "--split" in last and "--val-split" in last
    assert calls == []


def test_val_data_naming_the_same_file_is_refused(tmp_path, capsys, calls):
    argv = _argv(tmp_path, "--split", "val", "--val-split", "val")
    argv += ["--val-data", str(tmp_path / "." / "data.parquet")]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "--val-split val" in capsys.readouterr().err
    assert calls == []


def test_disjoint_rows_are_accepted(tmp_path, calls):
    assert main(_argv(tmp_path)) == 0  # defaults: --split test, --val-split val
    assert main(_argv(tmp_path, "--split", "val", "--val-split", "train")) == 0
    other = tmp_path / "other.parquet"
    other.write_bytes(b"")
    assert main(_argv(tmp_path, "--split", "val", "--val-split", "val", "--val-data", str(other))) == 0
    assert [(c["split"], c["val_split"]) for c in calls] == [
        ("test", "val"),
        ("val", "train"),
        ("val", "val"),
    ]


def test_run_evaluation_skips_a_calibration_on_the_scored_rows(tmp_path) -> None:
    """The library path (`xpengine figures` calls it with its own --split) never fits the σ calibration on
    rows it scores: the same file's val rows are skipped when the scored split is val or all."""
    from xpengine.evaluate.evaluation import _scored_rows

    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    a.write_bytes(b"")
    b.write_bytes(b"")
    assert _scored_rows(str(a), str(a), "val", "val")
    assert _scored_rows(str(a), str(a), "val", "all")
    assert _scored_rows(
        str(tmp_path / "." / "a.parquet"), str(a), "val", "val"
    )  # the same file, spelled apart
    assert not _scored_rows(str(a), str(a), "val", "test")
    assert not _scored_rows(str(b), str(a), "val", "val")


@pytest.mark.parametrize("split", ["all", "train"])
def test_the_baseline_is_not_trained_on_the_rows_it_is_scored_on(tmp_path, calls, capsys, split):
    """--baseline-train naming --data with --split all (or train): XGBoost would be scored on its own
    training stars; refused with the reason (review of session 26), before any model is loaded."""
    argv = _argv(tmp_path, "--split", split, "--val-data", str(tmp_path / "other.parquet"))
    data = argv[argv.index("--data") + 1]
    with pytest.raises(SystemExit) as info:
        main([*argv, "--baseline-train", data])
    assert info.value.code == 2 and not calls
    assert "XGBoost would be scored on the stars it was trained on" in capsys.readouterr().err
