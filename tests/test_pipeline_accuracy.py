"""The real bundled `synthetic-sky` model through the Ray job on the bundled sky, against the simulated truth.

The figures asserted are the ones measured when the model was bundled (README, issue notes), with ~25 %
headroom: the test fails if the engine (features, representation, model loading, unit conversion,
flags) degrades them, not merely if it runs.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from xpengine.features.flags import SourceFlag
from xpengine.pipeline.config import InferenceConfig
from xpengine.pipeline.ray_job import run_inference

pytestmark = [pytest.mark.ray, pytest.mark.slow]

PARTS = ("000000-003111", "245760-248871", "688128-691239")


def _robust_sigma(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(1.4826 * np.median(np.abs(x - np.median(x))))


def test_bundled_model_recovers_the_simulated_truth(ray_local, tmp_path, sky_dir):
    inp = tmp_path / "in"
    inp.mkdir()
    for p in PARTS:
        for kind in ("XpContinuousMeanSpectrum", "GaiaSource"):
            shutil.copy(os.path.join(sky_dir, f"{kind}_{p}.csv.gz"), inp)
    out = tmp_path / "catalog"
    s = run_inference(
        InferenceConfig(
            input=[str(inp)],
            output=str(out),
            model="synthetic-sky",
            tmass=os.path.join(sky_dir, "tmass.parquet"),
            ebv=os.path.join(sky_dir, "ebv.parquet"),
        )
    )
    assert s.ok and s.sources_written == 3000
    cat = pa.concat_tables([pq.read_table(out / f"{p}.parquet") for p in PARTS]).to_pandas()
    truth = pq.read_table(os.path.join(sky_dir, "truth.parquet")).to_pandas()
    m = cat.merge(truth, on="source_id", suffixes=("", "_true"))
    assert len(m) == 3000
    giant = (m["logg_true"] < 3.5).to_numpy()
    flags = m["flags"].to_numpy()
    outside = (flags & int(SourceFlag.OUTSIDE_TRAINING_DOMAIN)) != 0
    # giants: measured 162 K, 0.242 dex, 0.109 dex, 0.247 Msun, 3.09 Gyr (bundled sky, all G to 17.65;
    # the model bundled before the focus-context recipe gave 244 K, 0.45, 0.147, 0.265, 3.65)
    limits = {"teff": 205.0, "logg": 0.31, "m_h": 0.14, "mass": 0.31}
    for lab, lim in limits.items():
        sig = _robust_sigma((m[lab] - m[f"{lab}_true"]).to_numpy()[giant])
        assert sig < lim, f"{lab}: robust sigma {sig:.3g} on simulated giants, expected < {lim}"
    age_sig = _robust_sigma((m["age"] - m["age_gyr"]).to_numpy()[giant])
    assert age_sig < 3.9, age_sig
    # dwarfs are flagged outside the mass/age domain far more often than giants
    assert outside[~giant].mean() > 0.5 and outside[giant].mean() < 0.1
    # the domain flag rests on the measured M_G and colour where they exist: of the rows left
    # unflagged, most are truly in the domain (measured 0.825; 0.50 when it rested on predicted logg)
    domain = ((m["logg_true"] < 3.5) & (m["teff_true"] > 3500) & (m["teff_true"] < 5500)).to_numpy()
    assert domain[~outside].mean() > 0.75, domain[~outside].mean()
    assert outside[domain].mean() < 0.05 and outside[~domain].mean() > 0.85
    # the σ are positive and in physical units
    ok = (flags & int(SourceFlag.NO_PREDICTION)) == 0
    assert ok.all()
    assert (m["age_error"][ok] > 0).all() and (m["teff_error"][ok] > 10).all()
    # distance: from the measured parallax where it is significant (median ratio to the truth within
    # 5 %); elsewhere from the model's pseudo-luminosity, flagged by route; every row has one route
    d_ratio = (m["distance_pc"] / m["distance_pc_true"]).to_numpy()
    by_plx = (flags & int(SourceFlag.DISTANCE_FROM_PARALLAX)) != 0
    by_model = (flags & int(SourceFlag.DISTANCE_FROM_MODEL)) != 0
    # (since session 28 the stars outside the domain take their isochrone fit's distance)
    by_model |= (flags & int(SourceFlag.DISTANCE_FROM_ISOCHRONES)) != 0
    assert by_plx.sum() > 1000 and not (by_plx & by_model).any()
    assert 0.95 <= np.median(d_ratio[by_plx]) <= 1.05, np.median(d_ratio[by_plx])
    assert np.isfinite(m["distance_pc"]).to_numpy()[by_plx | by_model].all()
    assert not np.isfinite(m["distance_pc"]).to_numpy()[~(by_plx | by_model)].any()
