"""Pure, vectorised feature steps: arrays in, arrays out, no I/O."""

from xpengine.features.astrometry import (
    PseudoLuminosity,
    absmag_to_fakemag,
    correct_parallax,
    ebv_to_logebv,
    fakemag_to_absmag,
    fakemag_to_distance_pc,
    fakemag_to_parallax,
    infer_astrometric_params_solved,
    leung2023_zero_point_offset,
    lindegren2021_zero_point,
    parallax_quality_mask,
    parallax_to_fakemag,
    parallax_zero_point,
    pseudo_luminosity,
)
from xpengine.features.colours import (
    bp_rp_colour,
    clean_2mass_photometry,
    flux_over_error_to_mag_error,
    gaia_mag_error,
    tmass_colours,
)
from xpengine.features.flags import SourceFlag, describe_flags, has_flag
from xpengine.features.normalise import g_flux_from_columns, g_mag_to_flux, normalise_by_g_flux
from xpengine.features.relevancy import (
    apply_relevancy,
    propagate_relevancy,
    relevancy_mask,
    xp_relevancy_mask,
)
from xpengine.features.synthetic_photometry import (
    SyntheticPhotometry,
    bp_rp_from_xp,
    calibrated_bp_rp,
    calibrated_g_flux,
    g_flux_from_xp,
    synthetic_gaia_photometry,
    synthetic_gaia_photometry_from_sampled,
)
from xpengine.features.token_matrix import TokenMatrix, align_to_vocabulary
from xpengine.features.tokens import Representation, TokenBatch, build_tokens
from xpengine.features.vocabulary import PAPER_VOCABULARY, Token, Vocabulary, paper_vocabulary

__all__ = [
    "PAPER_VOCABULARY",
    "PseudoLuminosity",
    "Representation",
    "SourceFlag",
    "SyntheticPhotometry",
    "Token",
    "TokenBatch",
    "TokenMatrix",
    "Vocabulary",
    "absmag_to_fakemag",
    "align_to_vocabulary",
    "apply_relevancy",
    "bp_rp_colour",
    "bp_rp_from_xp",
    "build_tokens",
    "calibrated_bp_rp",
    "calibrated_g_flux",
    "clean_2mass_photometry",
    "correct_parallax",
    "describe_flags",
    "ebv_to_logebv",
    "fakemag_to_absmag",
    "fakemag_to_distance_pc",
    "fakemag_to_parallax",
    "flux_over_error_to_mag_error",
    "g_flux_from_columns",
    "g_flux_from_xp",
    "g_mag_to_flux",
    "gaia_mag_error",
    "has_flag",
    "infer_astrometric_params_solved",
    "leung2023_zero_point_offset",
    "lindegren2021_zero_point",
    "normalise_by_g_flux",
    "paper_vocabulary",
    "parallax_quality_mask",
    "parallax_to_fakemag",
    "parallax_zero_point",
    "propagate_relevancy",
    "pseudo_luminosity",
    "relevancy_mask",
    "synthetic_gaia_photometry",
    "synthetic_gaia_photometry_from_sampled",
    "tmass_colours",
    "xp_relevancy_mask",
]
