"""The synthetic Gaia sky: realistic XP spectra, photometry, astrometry and labels with ground truth.

Entry points: :func:`simulate_sky` (write a sky in the real bulk formats) and the `xpengine simulate`
command (:mod:`xpengine.simulate.cli`). Modules: `coords` (HEALPix, source ids, Galactic coordinates),
`physics` (populations, stellar relations, dust), `calibration` (the data-driven spectral emulator and
noise templates fitted on real data), `xp` (spectra → coefficients → noise), `observe` (photometry,
astrometry, 2MASS, APOGEE-like labels), `sky` (drawing visible stars), `isochrones` and `populations`
(the MIST v2.5 four-population sky of `SkyConfig(physics="mist")`), `generate` (writing files).
"""

from xpengine.simulate.generate import simulate_sky
from xpengine.simulate.sky import SkyConfig

__all__ = ["SkyConfig", "simulate_sky"]
