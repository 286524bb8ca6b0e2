"""`Predictor.from_xp` and the catalogue predictor give a notebook the catalogue's own numbers and flags
(a review of session 19 found four ways they did not), on the bundled gaia-xp and real or bundled data:

- a parallax given without G keeps its distance and the measured-luminosity rules (the parallax is
  corrected at the G the tokens used: the synthetic G of the star's XP, G_FROM_XP);
- a G override replaces the table's G flux too, so the spectrum is normalised by the G it was given;
- from_xp sets HIGH_UNCERTAINTY with the catalogue's thresholds (`DEFAULT_FLAG_POLICY`);
- a requested token that is also an input is predicted without it (no echo of the input).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from _sky_inputs import sky_token_batch

from xpengine import io
from xpengine.catalog.flag_policy import DEFAULT_FLAG_POLICY
from xpengine.features.flags import SourceFlag, has_flag
from xpengine.features.normalise import g_mag_to_flux
from xpengine.inference.catalogue import CatalogPredictor
from xpengine.inference.predictor import Predictor

SCO = Path(__file__).parent / "data" / "gaia_xp" / "18Sco-XP-spectra.csv"  # the solar twin, real DR3 XP
SKY = Path(__file__).parents[1] / "xpengine" / "data" / "sky"


@pytest.fixture(scope="module")
def gaia_xp() -> Predictor:
    return Predictor.load("gaia-xp", device="cpu")


def test_parallax_without_g_keeps_its_distance(gaia_xp) -> None:
    xp = io.read_xp_continuous(SCO)
    given = {"parallax": 70.74, "parallax_error": 0.078, "zero_point_fallback": -0.017}
    no_g = gaia_xp.from_xp(xp, **given)
    with_g = gaia_xp.from_xp(xp, g_mag=5.33, **given)
    assert has_flag(int(no_g["flags"][0]), SourceFlag.G_FROM_XP)
    for df in (no_g, with_g):
        assert has_flag(int(df["flags"][0]), SourceFlag.DISTANCE_FROM_PARALLAX)
        assert df["distance_pc"][0] == pytest.approx(1000.0 / (70.74 + 0.017), rel=1e-5)
    assert has_flag(int(no_g["flags"][0]), SourceFlag.OUTSIDE_TRAINING_DOMAIN)  # a dwarf by its parallax


def test_g_override_replaces_the_tables_g_flux(gaia_xp) -> None:
    xp = io.read_xp_continuous(SCO)
    table = pa.Table.from_pandas(xp.to_pandas() if hasattr(xp, "to_pandas") else xp, preserve_index=False)
    table = table.append_column("phot_g_mean_mag", pa.array([5.33])).append_column(
        "phot_g_mean_flux", pa.array(g_mag_to_flux(np.array([5.33])))
    )
    override = gaia_xp.from_xp(table, g_mag=6.33)
    bare = gaia_xp.from_xp(table.drop_columns(["phot_g_mean_flux", "phot_g_mean_mag"]), g_mag=6.33)
    as_given = gaia_xp.from_xp(table)
    for lab in ("teff", "logg", "m_h"):
        assert override[lab][0] == pytest.approx(bare[lab][0], rel=1e-6), lab
    assert abs(override["teff"][0] - as_given["teff"][0]) > 1.0  # the spectrum's scale moved by 1 mag


@pytest.mark.slow
def test_from_xp_flags_high_uncertainty_as_the_catalogue_does(gaia_xp) -> None:
    """from_xp on a bundled-sky partition: HIGH_UNCERTAINTY exactly where DEFAULT_FLAG_POLICY's error
    thresholds say (the σ of mass relative to mass > 0.3, ...), on some rows and not all."""
    gaia = io.read_gaia_source(SKY / "GaiaSource_000000-003111.csv.gz")
    chunk = next(io.iter_xp_continuous(SKY / "XpContinuousMeanSpectrum_000000-003111.csv.gz", batch_rows=300))
    joined = io.join_sources(chunk, gaia)
    df = gaia_xp.from_xp(joined if isinstance(joined, pa.Table) else pa.Table.from_batches([joined]))
    flagged = has_flag(df["flags"].to_numpy().astype(np.int64), SourceFlag.HIGH_UNCERTAINTY)
    expect = np.zeros(len(df), dtype=bool)
    for lab, limit in DEFAULT_FLAG_POLICY.max_relative_error.items():
        expect |= (df[f"{lab}_error"] / df[lab]).to_numpy() > limit
    for lab, limit in DEFAULT_FLAG_POLICY.max_error.items():
        expect |= df[f"{lab}_error"].to_numpy() > limit
    assert 0 < flagged.sum() < len(df)
    np.testing.assert_array_equal(flagged, expect)


@pytest.mark.slow
def test_a_requested_input_is_not_echoed(gaia_xp) -> None:
    """With logebv among the inputs, the `ebv` label comes from a pass without it: the same E(B−V) as a
    catalogue whose inputs lack logebv, not a damped copy of the input (g_fakemag makes room for it)."""
    batch = {k: v[:200] for k, v in sky_token_batch("gaia-xp").items()}
    base = [t for t in gaia_xp.default_inputs if t != "g_fakemag"]  # room for one more (64 at most)
    # without the colour bound, which holds `ebv` at the pass's own Teff (the input E(B−V) moves Teff)
    raw = dataclasses.replace(DEFAULT_FLAG_POLICY, ebv_colour_bound=False)
    default = CatalogPredictor(gaia_xp, ["teff", "ebv"], device="cpu", inputs=base, flag_policy=raw)
    with_input = CatalogPredictor(
        gaia_xp, ["teff", "ebv"], device="cpu", inputs=[*base, "logebv"], flag_policy=raw
    )
    assert "logebv" in with_input.inputs and "logebv" not in default.inputs
    a, b = default(batch), with_input(batch)
    ok = np.isfinite(a["ebv"])
    assert ok.sum() > 150
    np.testing.assert_allclose(b["ebv"][ok], a["ebv"][ok], rtol=1e-5)
    np.testing.assert_allclose(b["ebv_error"][ok], a["ebv_error"][ok], rtol=1e-5)
    assert not np.allclose(b["teff"][ok], a["teff"][ok])  # Teff does read the given E(B−V)


def test_astropy_tables_from_fits_are_read(gaia_xp) -> None:
    """An astropy Table read from a FITS file has big-endian columns (Arrow refuses them as they are) and
    may mask integer columns: from_xp reads it as the same star, a masked count as a missing one."""
    import warnings

    from astropy.table import Table

    fits = Path(__file__).parent / "data" / "gaia_xp" / "XP_CONTINUOUS-Gaia_DR3_5937083312263887616.fits"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = Table.read(fits)
    assert not table["source_id"].dtype.isnative
    ours = gaia_xp.from_xp(io.read_xp_continuous(fits))
    theirs = gaia_xp.from_xp(table)
    assert int(theirs["source_id"][0]) == 5937083312263887616
    for lab in ("teff", "logg", "m_h", "mass"):
        assert theirs[lab][0] == pytest.approx(ours[lab][0], rel=1e-6), lab
    masked = Table(table, masked=True)
    masked["bp_n_relevant_bases"].mask = [True]
    assert has_flag(int(gaia_xp.from_xp(masked)["flags"][0]), SourceFlag.NO_RELEVANCY)
