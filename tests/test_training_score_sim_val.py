"""training/score_sim_val.py on the bundled sky's survey stars (marked synthetic), scored with gaia-xp."""

import re
from importlib.resources import files

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _paths import load_script

from xpengine.datasets.schema import read_training_set, write_training_set
from xpengine.evaluate.metrics import robust_sigma
from xpengine.evaluate.runner import align_to_vocabulary
from xpengine.inference.predictor import Predictor

score_sim_val = load_script("training/score_sim_val.py", "score_sim_val")


@pytest.fixture(scope="module")
def sky_as_mixed(tmp_path_factory):
    """(path, table): the bundled sky's survey stars as a mixed file, every row marked synthetic."""
    from xpengine.datasets.synthetic import build_synthetic

    tmp = tmp_path_factory.mktemp("mixed")
    src = str(tmp / "sky.parquet")
    write_training_set(build_synthetic(str(files("xpengine") / "data" / "sky")).table, src)
    t = pq.read_table(src)
    t = t.append_column("data_source", pa.array(["synthetic"] * t.num_rows))
    data = str(tmp / "mixed.parquet")
    pq.write_table(t, data)
    return data, t


def test_mass_sigma_and_counts_match_a_direct_prediction(sky_as_mixed):
    data, t = sky_as_mixed

    line = score_sim_val.score("gaia-xp", data, split="train")
    n = int(re.search(r"n (\d+) ", line).group(1))
    sigma = float(re.search(r"mass σ ([0-9.]+) ", line).group(1))

    arrays = read_training_set(data, split="train")
    p = Predictor.load("gaia-xp", device="cpu", calibrate=False)
    v, e = align_to_vocabulary(arrays.values, arrays.errors, arrays.vocabulary, p.vocabulary)
    out = p.predict(
        v, e, ["mass", "ln_age"], inputs=[x for x in p.default_inputs if x not in ("mass", "ln_age")]
    )
    truth = t.filter(pa.compute.equal(t.column("split"), "train")).column("truth_mass").to_numpy()
    assert n == len(truth) > 10
    assert abs(sigma - robust_sigma(out["mass"] - truth)) < 6e-4  # printed to 3 decimals
    assert np.isfinite(sigma)


def test_bias_by_true_metallicity_matches_a_direct_prediction(sky_as_mixed):
    data, t = sky_as_mixed
    line = score_sim_val.score("gaia-xp", data, split="train")
    bins = dict(re.findall(r"(-?[0-9.]+\.\.-?[0-9.]+):([+-][0-9.]+/[+-][0-9.]+)", line))
    assert bins, line
    arrays = read_training_set(data, split="train")
    p = Predictor.load("gaia-xp", device="cpu", calibrate=False)
    v, e = align_to_vocabulary(arrays.values, arrays.errors, arrays.vocabulary, p.vocabulary)
    out = p.predict(
        v, e, ["mass", "ln_age"], inputs=[x for x in p.default_inputs if x not in ("mass", "ln_age")]
    )
    tr = t.filter(pa.compute.equal(t.column("split"), "train"))
    fe_h, age, mass = (tr.column(c).to_numpy() for c in ("truth_fe_h", "truth_age_gyr", "truth_mass"))
    for lo, hi in score_sim_val.FEH_BINS:
        s = (fe_h >= lo) & (fe_h < hi)
        key = f"{lo:g}..{hi:g}"
        if not s.any():
            assert key not in bins
            continue
        d_age, d_mass = (float(x) for x in bins[key].split("/"))
        assert abs(d_age - np.median(out["ln_age"][s] - np.log(age[s]))) < 6e-4
        assert abs(d_mass - np.median(np.log(out["mass"][s] / mass[s]))) < 6e-4


def test_sigma_by_g_and_m_h_against_the_true_iron_abundance(sky_as_mixed):
    data, t = sky_as_mixed
    line = score_sim_val.score("gaia-xp", data, split="train")
    arrays = read_training_set(data, split="train")
    p = Predictor.load("gaia-xp", device="cpu", calibrate=False)
    v, e = align_to_vocabulary(arrays.values, arrays.errors, arrays.vocabulary, p.vocabulary)
    req = ["mass", "ln_age", "m_h"]
    out = p.predict(v, e, req, inputs=[x for x in p.default_inputs if x not in req])
    tr = t.filter(pa.compute.equal(t.column("split"), "train"))
    g, fe_h, mass = (tr.column(c).to_numpy() for c in ("phot_g_mean_mag", "truth_fe_h", "truth_mass"))
    m = re.search(r"\[M/H\] vs true \[Fe/H\] σ ([0-9.]+) bias ([+-][0-9.]+)", line)
    assert m, line
    assert abs(float(m.group(1)) - robust_sigma(out["m_h"] - fe_h)) < 6e-4
    assert abs(float(m.group(2)) - np.median(out["m_h"] - fe_h)) < 6e-4
    bins = dict(re.findall(r"([0-9.]+-[0-9.]+):([0-9.]+)/[0-9.]+\(n=", line))
    assert bins, line
    for lo, hi in score_sim_val.G_BINS:
        s = (g >= lo) & (g < hi)
        if s.any():
            assert abs(float(bins[f"{lo:g}-{hi:g}"]) - robust_sigma(out["mass"][s] - mass[s])) < 6e-4
