"""`xpengine features` (xpengine.features.cli) end to end on a real XP file, with a stand-in join."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _paths import SHARED as _SHARED

from xpengine.cli import build_parser, main
from xpengine.features import SourceFlag

XP_FILE = Path(
    f"{_SHARED}/data/gaia_dr3_samples/gaiaxpy/tests/files/xp_continuous/XP_CONTINUOUS_RAW_with_missing_BP.ecsv"
)
IDS = [5853498713190525696, 5405570973190252288, 5762406957886626816]


def _astropy_read_xp(source: str) -> pa.Table:
    """Stand-in XP reader (astropy) for when xpengine.io has no read_xp_continuous yet."""
    import warnings

    from astropy.table import Table

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = Table.read(source)
    cols = {}
    for c in t.colnames:
        col = t[c]
        if c == "source_id":
            cols[c] = pa.array(np.asarray(col))
        elif col.dtype == object:
            cols[c] = pa.array(
                [None if np.ma.is_masked(x) or len(x) == 0 else np.asarray(x, float) for x in col]
            )
        else:
            cols[c] = pa.array(np.ma.filled(np.ma.asarray(col).astype(float), np.nan))
    return pa.table(cols)


def _real_or_standin_reader():
    try:
        from xpengine.io import read_xp_continuous
    except ImportError:
        return _astropy_read_xp
    return read_xp_continuous


def _left_join(left: pa.Table, right: pa.Table | None) -> pa.Table:
    if right is None:
        return left
    ids = right.column("source_id").to_numpy()
    pos = {int(s): i for i, s in enumerate(ids)}
    take = pa.array([pos.get(int(s)) for s in left.column("source_id").to_numpy()], pa.int64())
    out = left
    for name in right.column_names:
        if name != "source_id":
            out = out.append_column(name, right.column(name).take(take))
    return out


@pytest.fixture
def stub_io(monkeypatch: pytest.MonkeyPatch) -> dict:
    """xpengine.io with the documented signatures; the join is a plain left join on source_id."""
    calls: dict = {}
    reader = _real_or_standin_reader()
    mod = types.ModuleType("xpengine.io")
    mod.read_xp_continuous = reader  # resolved before xpengine.io is replaced
    from xpengine.io.tables import read_table

    mod.read_table = read_table

    def read_gaia_source(source: str) -> pa.Table:
        calls["gaia"] = source
        return pq.read_table(source)

    def join_sources(xp, gaia, tmass=None, ebv=None):
        calls["join"] = (gaia is not None, tmass is not None, ebv is not None)
        return _left_join(_left_join(_left_join(xp, gaia), tmass), ebv)

    mod.read_gaia_source = read_gaia_source
    mod.join_sources = join_sources
    monkeypatch.setitem(sys.modules, "xpengine.io", mod)
    return calls


def test_help_lists_the_options() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["features", "--help"])
    args = build_parser().parse_args(["features", "--xp", "a.csv", "--output", "o.parquet"])
    assert args.representation == "projected" and args.min_relevant == 10 and callable(args.func)


def test_features_command_writes_tokens(
    tmp_path: Path, stub_io: dict, caplog: pytest.LogCaptureFixture
) -> None:
    gaia = tmp_path / "gaia.parquet"
    pq.write_table(
        pa.table(
            {
                "source_id": pa.array(IDS[:2], pa.int64()),  # the third source has no gaia_source row
                "phot_g_mean_mag": [15.0, 16.0],
                "parallax": [1.0, 0.3],
                "parallax_error": [0.05, 0.05],
                "ruwe": [1.0, 1.0],
                "nu_eff_used_in_astrometry": [1.5, 1.5],
                "pseudocolour": [None, None],
                "ecl_lat": [10.0, 10.0],
                "astrometric_params_solved": pa.array([31, 31], pa.int16()),
            }
        ),
        gaia,
    )
    tmass = tmp_path / "tmass.csv"
    tmass.write_text(
        "source_id,j_m,j_msigcom,h_m,h_msigcom,ks_m,ks_msigcom\n5853498713190525696,12.0,0.02,11.5,0.03,11.3,0.025\n"
    )
    out = tmp_path / "tokens.parquet"
    argv = [
        "features",
        "--xp",
        str(XP_FILE),
        "--gaia-source",
        str(gaia),
        "--tmass",
        str(tmass),
        "--output",
        str(out),
    ]
    assert main(argv) == 0
    assert stub_io["join"] == (True, True, False)
    t = pq.read_table(out)
    assert t.column("source_id").to_pylist() == IDS
    assert t.column_names[:4] == ["source_id", "flags", "bp0", "bp0_error"] and t.num_columns == 242
    flags = [SourceFlag(x) for x in t.column("flags").to_pylist()]
    assert (
        SourceFlag.NO_BP in flags[1]
        and SourceFlag.NO_2MASS not in flags[0]
        and SourceFlag.NO_2MASS in flags[1]
    )
    assert SourceFlag.NO_GAIA_SOURCE in flags[2] and SourceFlag.NO_GAIA_PHOTOMETRY in flags[2]
    assert t.column("bp0").to_pylist()[2] is None or np.isnan(t.column("bp0").to_pylist()[2])
    np.testing.assert_allclose(t.column("jh").to_pylist()[0], 0.5, rtol=1e-6)
    meta = t.schema.metadata
    prov = json.loads(meta[b"xpengine.provenance"])
    assert (
        prov["xp"] == str(XP_FILE)
        and prov["representation"] == "projected"
        and prov["representation_id"].startswith("svd-proj")
    )
    assert json.loads(meta[b"xpengine.vocabulary"])["n_bp"] == 55
    # refuses to overwrite unless asked
    before = out.stat().st_mtime_ns
    with caplog.at_level("ERROR"):
        assert main(argv) == 1
    assert "exists; pass --overwrite" in caplog.text and out.stat().st_mtime_ns == before
    assert main([*argv, "--overwrite"]) == 0


def test_features_command_without_gaia_source(tmp_path: Path, stub_io: dict) -> None:
    out = tmp_path / "t.parquet"
    assert main(["features", "--xp", str(XP_FILE), "--output", str(out)]) == 0
    assert "join" not in stub_io
    flags = np.array(pq.read_table(out, columns=["flags"]).column("flags").to_pylist())
    assert ((flags & int(SourceFlag.NO_GAIA_SOURCE | SourceFlag.NO_GAIA_PHOTOMETRY)) != 0).all()
