"""benchmarks/distance_check.py: the rows given an isochrone distance, scored before and after against the
truth (median ratio, ln σ, z-spread, fraction beyond ×2), with their mass and ln age."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _paths import load_script

from xpengine.features.flags import SourceFlag


def _catalogue(path, sid, dist, dist_err, flags, mass, age):
    path.mkdir()
    n = sid.size
    pq.write_table(
        pa.table(
            {
                "source_id": sid, "distance_pc": dist, "distance_pc_error": dist_err, "flags": flags,
                "mass": mass, "mass_error": np.full(n, 0.1), "age": age, "age_error": 0.2 * age,
                "ebv": np.full(n, 0.05),
            }
        ),
        path / "000000-003111.parquet",
    )  # fmt: skip


def test_the_rows_given_isochrone_distances_are_scored_before_and_after(tmp_path):
    dc = load_script("benchmarks/distance_check.py", "distance_check_bench")
    rng = np.random.default_rng(1)
    n = 400
    sid = np.arange(n, dtype=np.int64) + 1
    true_d = rng.uniform(200, 3000, n)
    iso = np.arange(n) < 300  # 300 rows get the isochrones' distance, the rest keep a parallax's
    before_flags = np.where(iso, int(SourceFlag.DISTANCE_FROM_MODEL), int(SourceFlag.DISTANCE_FROM_PARALLAX))
    after_flags = np.where(iso, int(SourceFlag.DISTANCE_FROM_ISOCHRONES), before_flags)
    before = true_d * 4.0 * np.exp(rng.normal(0, 0.5, n))  # a giant's distance for dwarfs: 4x too far
    after = true_d * np.exp(rng.normal(0, 0.3, n))
    mass, age = rng.uniform(0.7, 1.3, n), rng.uniform(1, 10, n)
    _catalogue(tmp_path / "b", sid, before, 0.5 * before, before_flags, mass, age)
    _catalogue(tmp_path / "a", sid, after, 0.3 * after, after_flags, mass + 0.05, age)
    truth = pd.DataFrame(
        {"source_id": sid, "distance_pc": true_d, "logg": np.where(np.arange(n) % 3 == 0, 2.5, 4.4),
         "g": rng.uniform(12, 17.6, n), "mass": mass, "age_gyr": age, "ebv": np.full(n, 0.04)}
    )  # fmt: skip
    truth.to_parquet(tmp_path / "truth.parquet")
    r = dc.compare(str(tmp_path / "b"), str(tmp_path / "a"), str(tmp_path / "truth.parquet"))
    assert r["n_isochrone_distance"] == 300 and r["n_had_model_distance"] == 300 and r["n_had_none"] == 0
    b, a = r["distance"]["all"]["before"], r["distance"]["all"]["after"]
    assert b["median_ratio"] == pytest.approx(4.0, rel=0.1) and a["median_ratio"] == pytest.approx(
        1.0, abs=0.06
    )
    assert b["ln_sigma"] == pytest.approx(0.5, rel=0.15) and a["ln_sigma"] == pytest.approx(0.3, rel=0.15)
    assert a["z_spread"] == pytest.approx(1.0, rel=0.15) and b["frac_beyond"] > 0.8 > 0.1 > a["frac_beyond"]
    assert r["distance"]["true dwarfs"]["after"]["n"] + r["distance"]["true giants"]["after"]["n"] == 300
    assert (
        r["labels"]["after"]["mass"]["bias"] == pytest.approx(0.05)
        and r["labels"]["before"]["mass"]["bias"] == 0
    )
    assert r["ebv_bias"] == pytest.approx(0.01)
    out = tmp_path / "r.json"
    assert dc.main(["--before", str(tmp_path / "b"), "--after", str(tmp_path / "a"), "--truth",
                    str(tmp_path / "truth.parquet"), "--json", str(out)]) == 0  # fmt: skip
    assert out.is_file()
