"""xpengine: stellar masses, ages and atmospheric parameters from Gaia XP spectra."""

__version__ = "0.1.0"
