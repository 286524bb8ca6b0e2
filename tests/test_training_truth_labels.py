"""training/truth_labels.py: a simulated training-schema file with mass and ln age set to the truth."""

from importlib.resources import files

import numpy as np
import pyarrow.parquet as pq
import pytest
from _paths import load_script

from xpengine.datasets.schema import read_training_set, write_training_set

truth_labels = load_script("training/truth_labels.py", "truth_labels")


@pytest.fixture(scope="module")
def sky_file(tmp_path_factory) -> str:
    from xpengine.datasets.synthetic import build_synthetic

    path = str(tmp_path_factory.mktemp("truth") / "sky.parquet")
    write_training_set(build_synthetic(str(files("xpengine") / "data" / "sky")).table, path)
    return path


def test_mass_and_ln_age_become_the_truth_and_nothing_else_changes(sky_file, tmp_path):
    out = str(tmp_path / "truth.parquet")
    assert truth_labels.main([sky_file, out]) == 0
    a, b = pq.read_table(sky_file), pq.read_table(out)
    assert a.schema == b.schema and a.num_rows == b.num_rows
    np.testing.assert_allclose(b.column("mass").to_numpy(), a.column("truth_mass").to_numpy(), rtol=1e-6)
    np.testing.assert_allclose(
        b.column("ln_age").to_numpy(), np.log(a.column("truth_age_gyr").to_numpy()), rtol=1e-6
    )
    assert (b.column("mass_error").to_numpy() == 0).all() and (b.column("ln_age_error").to_numpy() == 0).all()
    assert not np.allclose(a.column("mass").to_numpy(), b.column("mass").to_numpy(), equal_nan=True)
    for name in a.column_names:
        if name not in ("mass", "ln_age", "mass_error", "ln_age_error"):
            np.testing.assert_array_equal(  # NaN == NaN here
                a.column(name).to_numpy(zero_copy_only=False),
                b.column(name).to_numpy(zero_copy_only=False),
                name,
            )
    read_training_set(out)  # still a valid training-schema file
    with pytest.raises(ValueError, match="has no truth column"):
        truth_labels.with_truth(a, ["jk"])


def test_m_h_truth_can_be_the_true_iron_abundance(sky_file, tmp_path):
    out = str(tmp_path / "fe.parquet")
    assert truth_labels.main([sky_file, out, "--tokens", "m_h", "--m-h-truth", "fe_h"]) == 0
    a, b = pq.read_table(sky_file), pq.read_table(out)
    np.testing.assert_allclose(b.column("m_h").to_numpy(), a.column("truth_fe_h").to_numpy(), rtol=1e-6)
    assert (b.column("m_h_error").to_numpy() == 0).all()
    # the default is the total metallicity, which differs from [Fe/H] for α-rich stars
    tot = truth_labels.with_truth(a, ["m_h"]).column("m_h").to_numpy()
    np.testing.assert_allclose(tot, a.column("truth_m_h").to_numpy(), rtol=1e-6)
    alpha_rich = a.column("truth_alpha_m").to_numpy() > 0.2
    assert alpha_rich.any() and np.all(tot[alpha_rich] > b.column("m_h").to_numpy()[alpha_rich] + 0.1)
