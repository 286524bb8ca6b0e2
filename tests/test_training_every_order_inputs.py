"""training/every_order_inputs.py: copies of compact model-input files with the relevancy counts (and the
parallax) nulled, which the job then reads as every-order inputs (NO_RELEVANCY) without parallax."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from _paths import load_script

SKY = Path(__file__).parents[1] / "xpengine" / "data" / "sky"


@pytest.fixture(scope="module")
def compact(tmp_path_factory) -> Path:
    from xpengine.cli import main as xpengine_main

    out = tmp_path_factory.mktemp("compact")
    src = out / "src"
    src.mkdir()
    for kind in ("XpContinuousMeanSpectrum", "GaiaSource"):
        (src / f"{kind}_000000-003111.csv.gz").symlink_to(SKY / f"{kind}_000000-003111.csv.gz")
    assert xpengine_main(["compact", "--input", str(src), "--output", str(out / "mi")]) == 0
    return out / "mi"


def test_nulls_only_the_named_columns_and_keeps_the_metadata(compact, tmp_path) -> None:
    mod = load_script("training/every_order_inputs.py", "every_order_inputs")
    assert mod.main([str(compact), str(tmp_path / "e"), "--every-order", "--no-parallax"]) == 0
    (src,) = compact.glob("ModelInputs_*.parquet")
    a, b = pq.read_table(src), pq.read_table(tmp_path / "e" / src.name)
    assert b.schema.metadata == a.schema.metadata and b.schema == a.schema and b.num_rows == a.num_rows
    nulled = set(mod.EVERY_ORDER) | set(mod.NO_PARALLAX)
    for c in a.column_names:
        if c in nulled:
            assert b.column(c).null_count == b.num_rows and a.column(c).null_count < a.num_rows
        else:
            x, y = a.column(c).to_pylist(), b.column(c).to_pylist()
            assert [str(v) for v in x] == [str(v) for v in y], c  # NaN-safe equality
    # the job's reading of such a copy: every row without relevancy keeps every coefficient
    from xpengine.io.model_inputs import read_model_inputs

    t = read_model_inputs(str(tmp_path / "e" / src.name))
    assert np.isnan(t["bp_n_relevant_bases"]).all() and np.isnan(t["parallax"]).all()


def test_refuses_nothing_to_do_and_a_used_output(compact, tmp_path) -> None:
    mod = load_script("training/every_order_inputs.py", "every_order_inputs")
    with pytest.raises(SystemExit):
        mod.main([str(compact), str(tmp_path / "x")])
    assert mod.main([str(compact), str(tmp_path / "y"), "--every-order"]) == 0
    with pytest.raises(SystemExit):  # the output already holds model-input files
        mod.main([str(compact), str(tmp_path / "y"), "--every-order"])
