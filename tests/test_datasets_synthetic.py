"""Synthetic-sky builder (xpengine.datasets.synthetic) and the `build-dataset apogee/synthetic` commands.

The sky here is hand-made in the simulator's layout (allStar-synthetic.fits, APOGEE_DistMass-synthetic.fits,
Gaia bulk partitions, 2MASS / E(B−V) Parquet tables, truth.parquet).
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _datasets_sky import STARS, apogee_id, write_allstar, write_distmass, write_gaia_partitions

from xpengine.datasets.schema import read_training_set
from xpengine.datasets.synthetic import build_synthetic, sky_inputs


def _kept_ids() -> list[int]:
    return sorted({s["sid"] for s in STARS.values() if s["sid"]})


def _write_synthetic_sky(d: str) -> None:
    write_allstar(os.path.join(d, "allStar-synthetic.fits"))
    write_distmass(os.path.join(d, "APOGEE_DistMass-synthetic.fits"))
    write_gaia_partitions(d)
    ids = np.array(_kept_ids(), dtype=np.int64)
    n = ids.size
    pq.write_table(
        pa.table(
            {
                "source_id": ids,
                "j_m": np.full(n, 11.0),
                "j_msigcom": np.full(n, 0.021),
                "h_m": np.full(n, 10.3),
                "h_msigcom": np.full(n, 0.022),
                "ks_m": np.r_[np.full(n - 1, 10.1), 99.0],  # last star: Ks missing
                "ks_msigcom": np.r_[np.full(n - 1, 0.02), np.nan],
            }
        ),
        os.path.join(d, "tmass_synthetic.parquet"),
    )
    pq.write_table(
        pa.table({"source_id": ids, "ebv": np.linspace(0.05, 0.5, n), "ebv_error": np.full(n, 0.02)}),
        os.path.join(d, "ebv_synthetic.parquet"),
    )
    pq.write_table(
        pa.table(
            {
                "source_id": ids,
                "mass": np.linspace(0.9, 1.9, n),
                "age_gyr": np.linspace(1.0, 10.0, n),
                "population": np.array(["thin"] * n),  # non-numeric: not copied
            }
        ),
        os.path.join(d, "truth.parquet"),
    )


@pytest.fixture(scope="module")
def sky(tmp_path_factory) -> str:
    d = str(tmp_path_factory.mktemp("synthetic_sky"))
    _write_synthetic_sky(d)
    return d


def test_sky_inputs_found_by_name(sky) -> None:
    inputs, truth = sky_inputs(sky)
    assert inputs.allstar.endswith("allStar-synthetic.fits")
    assert inputs.distmass.endswith("APOGEE_DistMass-synthetic.fits")
    assert inputs.tmass.endswith("tmass_synthetic.parquet")
    assert inputs.ebv.endswith("ebv_synthetic.parquet")
    assert truth.endswith("truth.parquet")


def test_synthetic_uses_tables_and_truth(sky) -> None:
    b = build_synthetic(sky)
    t = b.table
    assert set(t.column("origin").to_pylist()) == {"synthetic"}
    rows = {a: i for i, a in enumerate(t.column("apogee_id").to_pylist())}
    i = rows[apogee_id("good")]
    # 2MASS from the Parquet table (not allStar's J=10, H=9.4)
    assert t.column("jh")[i].as_py() == pytest.approx(0.7, abs=1e-5)
    assert t.column("jh_error")[i].as_py() == pytest.approx(np.hypot(0.021, 0.022), rel=1e-5)
    # ln E(B−V) with σ = σ_E / E
    ids = np.array(_kept_ids())
    ebv = np.linspace(0.05, 0.5, ids.size)[list(ids).index(STARS["good"]["sid"])]
    assert t.column("logebv")[i].as_py() == pytest.approx(np.log(ebv), rel=1e-5)
    assert t.column("logebv_error")[i].as_py() == pytest.approx(0.02 / ebv, rel=1e-5)
    # truth columns copied, non-numeric ones skipped
    assert "truth_mass" in t.column_names and "truth_age_gyr" in t.column_names
    assert "truth_population" not in t.column_names
    assert t.column("truth_mass")[i].as_py() == pytest.approx(
        np.linspace(0.9, 1.9, ids.size)[list(ids).index(STARS["good"]["sid"])]
    )
    # same recipe as the survey builder: flagged labels NaN, cuts applied
    assert b.summary["mass_cut_dropped"] == 1 and b.summary["extratarg_duplicates_dropped"] == 1
    assert b.summary["sky"] == os.path.abspath(sky)


def test_not_a_sky(tmp_path) -> None:
    with pytest.raises(ValueError, match="no allStar file"):
        build_synthetic(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_synthetic(str(tmp_path / "missing"))


def _cli(argv: list[str]) -> int:
    from xpengine.datasets.cli import register

    parser = argparse.ArgumentParser(prog="xpengine")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_cli_synthetic_and_apogee(sky, tmp_path) -> None:
    out = str(tmp_path / "syn.parquet")
    assert _cli(["build-dataset", "synthetic", "--sky", sky, "--output", out]) == 0
    arrays = read_training_set(out)
    assert arrays.values.shape[1] == 120
    assert arrays.provenance["origin"] == "synthetic"
    assert arrays.provenance["xp_relevancy"] == "the archive's X_n_relevant_bases"
    out1 = str(tmp_path / "syn_every.parquet")
    assert _cli(["build-dataset", "synthetic", "--sky", sky, "--every-order", "--output", out1]) == 0
    assert read_training_set(out1).provenance["xp_relevancy"].startswith("every coefficient")
    out2 = str(tmp_path / "apogee.parquet")
    argv = [
        "build-dataset",
        "apogee",
        "--allstar",
        os.path.join(sky, "allStar-synthetic.fits"),
        "--distmass",
        os.path.join(sky, "APOGEE_DistMass-synthetic.fits"),
        "--xp",
        sky,
        "--gaia-source",
        sky,
        "--ebv",
        os.path.join(sky, "ebv_synthetic.parquet"),
        "--output",
        out2,
        "--keep-without-evolution",
        "--xp-correlations",
    ]
    assert _cli(argv) == 0
    a2 = read_training_set(out2)
    assert a2.provenance["origin"] == "apogee-dr17"
    assert a2.provenance["xp_correlations_used"] is True
    assert a2.values.shape[0] == arrays.values.shape[0] + 1  # + the star without DistMass entry


@pytest.fixture(scope="module")
def simulated_sky(tmp_path_factory) -> str:
    """A small sky written by xpengine.simulate (the real simulator, not hand-made files)."""
    generate = pytest.importorskip("xpengine.simulate.generate")
    from xpengine.simulate.sky import SkyConfig

    d = str(tmp_path_factory.mktemp("simulated_sky"))
    generate.simulate_sky(d, 1500, seed=3, n_partitions=2, config=SkyConfig(correlation_levels=1))
    return d


def test_simulated_sky_labels_follow_truth(simulated_sky) -> None:
    b = build_synthetic(simulated_sky, keep_without_evolution=True)
    t = b.table.to_pandas()
    assert len(t) > 10 and set(t["origin"]) == {"synthetic"}
    assert b.summary["tmass_source"].endswith("tmass.parquet")
    # every star has XP tokens on the archive scale and its truth attached
    assert np.all(np.isfinite(t["truth_mass"])) and t["bp0"].between(0.0, 0.2).all()
    evo = np.isfinite(t["mass"])
    assert evo.sum() >= 5
    # noisy labels scatter around the truth by their stated errors (generous 6σ bound)
    z_mass = (t["mass"] - t["truth_mass"])[evo] / t["mass_error"][evo]
    z_age = (t["ln_age"] - np.log(t["truth_age_gyr"]))[evo] / t["ln_age_error"][evo]
    assert np.all(np.abs(z_mass) < 6) and np.all(np.abs(z_age) < 6)
    ok = np.isfinite(t["logebv"])
    assert np.median(np.abs(np.exp(t["logebv"][ok]) - t["truth_ebv"][ok])) < 0.1
    # same split function as every other builder
    from xpengine.datasets.splits import split_by_source_id

    np.testing.assert_array_equal(
        t["split"].to_numpy().astype(str), split_by_source_id(t["source_id"].to_numpy(), val_fraction=0.09)
    )


def test_every_order_keeps_the_coefficients_beyond_the_relevancy(simulated_sky) -> None:
    """`every_order` keeps the orders the archive rule leaves out (noise and errors included); the orders
    inside the relevancy are the same values, and the provenance says which rule was used."""
    archive = build_synthetic(simulated_sky, keep_without_evolution=True)
    every = build_synthetic(simulated_sky, keep_without_evolution=True, every_order=True)
    a, e = archive.table.to_pandas(), every.table.to_pandas()
    assert list(a["source_id"]) == list(e["source_id"])
    xp = [f"{b}{i}" for b in ("bp", "rp") for i in range(55)]
    fa, fe = np.isfinite(a[xp].to_numpy()), np.isfinite(e[xp].to_numpy())
    assert fe.all() and not fa.all()  # the simulator leaves faint stars' high orders out
    np.testing.assert_array_equal(a[xp].to_numpy()[fa], e[xp].to_numpy()[fa])
    assert np.isfinite(e[[f"{c}_error" for c in xp]].to_numpy()).all()
    assert every.summary["xp_relevancy"].startswith("every coefficient")
    assert archive.summary["xp_relevancy"] == "the archive's X_n_relevant_bases"
