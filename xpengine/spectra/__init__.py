"""Gaia XP spectra: sampling matrices (coefficients <-> flux) and the engine's XP representation.

`sampling`: GaiaXPy's design matrices for the default 336–1020 nm / 2 nm grid, coefficients -> merged
flux (and errors), plain least-squares flux -> coefficients. `representation`: THE representation the
engine feeds its model (projection onto the well-determined subspace), identical for archive
coefficients and sampled spectra; datasets and checkpoints store `REPRESENTATION_ID`.
"""

from xpengine.spectra.representation import (
    DEFAULT_THRESHOLD,
    REPRESENTATION_ID,
    XPRepresentation,
    XPSubspace,
    build_representation,
    check_representation_id,
    coefficients_from_sampled,
    default_representation,
    project_coefficient_errors,
    project_coefficients,
    representation_id,
    sampled_coefficient_errors,
)
from xpengine.spectra.sampling import (
    DEFAULT_SAMPLING_NPZ,
    XPSampling,
    coefficients_to_flux,
    correlation_matrix,
    default_sampling,
    flux_errors_from_covariance,
    flux_to_coefficients,
    load_sampling_from_gaiaxpy,
    load_sampling_npz,
    save_sampling_npz,
    write_default_sampling_npz,
)

__all__ = [
    "DEFAULT_SAMPLING_NPZ",
    "DEFAULT_THRESHOLD",
    "REPRESENTATION_ID",
    "XPRepresentation",
    "XPSampling",
    "XPSubspace",
    "build_representation",
    "check_representation_id",
    "coefficients_from_sampled",
    "coefficients_to_flux",
    "correlation_matrix",
    "default_representation",
    "default_sampling",
    "flux_errors_from_covariance",
    "flux_to_coefficients",
    "load_sampling_from_gaiaxpy",
    "load_sampling_npz",
    "project_coefficient_errors",
    "project_coefficients",
    "representation_id",
    "sampled_coefficient_errors",
    "save_sampling_npz",
    "write_default_sampling_npz",
]
