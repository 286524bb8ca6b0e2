"""Where the tests' data lives (not a test module).

- Bundled: the small real Gaia DR3 sample files (about 1.5 MB in all) are byte copies in `tests/data/`,
  their origin and sha256 recorded in `tests/data/PROVENANCE.md`. Tests that read them run on any
  checkout and never skip: a missing bundled file is a broken checkout and fails loudly.
- Shared: the large real data (the 83 MB APOGEE x XP dev file) stays in the workplace's shared folder,
  `../shared` beside the repository (as on developer machines and in CI) or the directory named by
  XPENGINE_SHARED_DIR. Tests that need it skip where it is absent, naming the full path they looked for.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
DATA = TESTS / "data"
SHARED = Path(os.environ.get("XPENGINE_SHARED_DIR") or TESTS.parents[1] / "shared")

# --- bundled real Gaia DR3 samples (tests/data; see PROVENANCE.md) ------------------------------------
XP_DIR = DATA / "gaia_xp"  # xp_continuous_mean_spectrum rows in the archive's formats, one sampled spectrum
GAIA_SOURCE_DIR = DATA / "gaia_source"  # gaia_source rows (archive VOTable and ECSV)
CALIBRATE_DIR = DATA / "gaiaxpy_calibrate"  # GaiaXPy's golden `calibrate` outputs for XP_CONTINUOUS_RAW*
STAR = 5937083312263887616  # the one source of the astroquery DataLink products
STAR_CONTINUOUS = XP_DIR / f"XP_CONTINUOUS-Gaia_DR3_{STAR}.csv"
STAR_SAMPLED = XP_DIR / f"XP_SAMPLED-Gaia_DR3_{STAR}.csv"
SCO18 = XP_DIR / "18Sco-XP-spectra.csv"  # 18 Sco, 4345775217221821312, with phot_g_mean_mag

# --- large shared data (not bundled) -----------------------------------------------------------------
APOGEE_XP_DEV = SHARED / "data" / "apogee_xp" / "apogee_xp_dev.fits.gz"


def missing_reason(path: str | os.PathLike) -> str:
    """The skip reason for a missing shared file: the full path looked for, and how to provide it."""
    return (
        f"shared data file not found: {path} (not bundled in tests/data; put the workplace's shared/ "
        "folder beside the repository or set XPENGINE_SHARED_DIR)"
    )


def needs_file(path: str | os.PathLike) -> pytest.MarkDecorator:
    """A skipif marker for tests that read the large shared file `path`."""
    return pytest.mark.skipif(not os.path.exists(path), reason=missing_reason(path))


def skip_unless_exists(path: str | os.PathLike) -> None:
    """Skip the calling test or fixture, naming `path`, when the large shared file is absent."""
    if not os.path.exists(path):
        pytest.skip(missing_reason(path))


# --- the repository's scripts (benchmarks/, training/), which are not in the package --------------------
ROOT = TESTS.parent


def load_script(relpath: str, name: str):
    """Import the script ROOT/relpath as module `name` (registered in sys.modules, where dataclasses look
    their module up)."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(name, ROOT / relpath)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
