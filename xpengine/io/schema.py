"""Column lists, Gaia dtypes and units of the Gaia tables the engine reads.

Sources: Gaia DR3 data model, tables `gaiadr3.xp_continuous_mean_spectrum` and `gaiadr3.gaia_source`
(https://gea.esac.esa.int/archive/documentation/GDR3/Gaia_archive/chap_datamodel/), as written by the
Gaia archive in its ECSV output (descriptions and UCDs copied from those headers). See REFERENCE.md §1-2.

Array columns are `list<...>` here; their length is a property of the data (`X_n_parameters`, 55 in DR3,
51 for BP in DR4), never of the schema.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

__all__ = [
    "BANDS",
    "DR3_N_COEFFICIENTS",
    "GAIA_SOURCE_COLUMNS",
    "GAIA_SOURCE_REQUIRED",
    "MAX_ABS_XP_COEFFICIENT",
    "META_N_COEFFICIENTS",
    "META_SOURCE",
    "META_XP_INPUT",
    "READ_PROBLEM",
    "XP_COLUMNS",
    "ColumnSpec",
    "gaia_source_schema",
    "n_correlations",
    "xp_column_names",
    "xp_schema",
]

BANDS: tuple[str, str] = ("bp", "rp")
READ_PROBLEM = "read_problem"
"""Name of the string column that reports row-level read problems (null when the row is fine)."""

DR3_N_COEFFICIENTS: int = 55
"""Coefficients per band in Gaia DR3 (`X_n_parameters`); Gaia DR4 will have 51 for BP."""

META_SOURCE = b"xpengine.source"
"""Schema-metadata key of the reader's output: the file (URL) the rows come from."""
META_N_COEFFICIENTS = b"xpengine.n_coefficients"
"""Schema-metadata key of the XP reader's output: JSON `{"bp": [55], "rp": [55]}`, the distinct numbers
of coefficients per source of each band (missing bands not counted)."""

META_XP_INPUT = b"xpengine.xp_input"
"""Schema-metadata key of the XP reader's output when the rows come from SAMPLED spectra (archive
`XP_SAMPLED`, bulk `XpSampledMeanSpectrum`, GaiaXPy `calibrate`; `xpengine.io.xp_sampled`): JSON
`{"kind": "sampled", "layout": "long" | "array", "representation": "svd-proj-1e-5-v1", ...}`. Absent for
continuous coefficients. Such rows hold the projected coefficients c' (already in the engine's XP
representation), conservative errors and null `X_n_relevant_bases` (no relevancy truncation)."""

MAX_ABS_XP_COEFFICIENT: float = 1e12
"""Largest |value| [e⁻/s] believed in `X_coefficients` and `X_coefficient_errors`; a row with a larger,
non-finite (NaN, ±inf) or, for errors, negative value has a corrupt band, read as missing.

XP coefficients scale with the source's flux. In the real Gaia DR3 rows at hand (tests/data/gaia_xp and
../shared/data/gaia_dr3_samples: G 5.3 to 17.6) the largest |coefficient| is 9.2e6 e⁻/s, for 18 Sco
(G = 5.33, f_G = 1.4e8 e⁻/s), i.e. 0.07 f_G; the bundled simulated sky stays below 0.15 f_G. Even a
G = 0 source would have f_G = 10^(25.687/2.5) = 1.9e10 e⁻/s, and DR3 has no XP spectrum that bright,
so 1e12 is 50 times above anything physical and 1e5 times above the largest value seen, while far
below the values that break the maths (1e308 overflows float32 after normalisation, and any huge
value leaks into every token through the BP+RP projection).
"""


@dataclass(frozen=True)
class ColumnSpec:
    """One Gaia column: name, Arrow type, unit (astropy/VO string), description and UCD."""

    name: str
    type: pa.DataType
    unit: str | None = None
    description: str = ""
    ucd: str | None = None
    required: bool = False

    @property
    def is_array(self) -> bool:
        return pa.types.is_list(self.type)

    @property
    def ecsv_datatype(self) -> str:
        """ECSV 1.0 `datatype` (arrays are `string` with a `subtype`)."""
        return "string" if self.is_array else self._ecsv_name(self.type)

    @property
    def ecsv_subtype_base(self) -> str | None:
        """Element type of an array column, e.g. "float64" (None for scalars)."""
        return self._ecsv_name(self.type.value_type) if self.is_array else None

    def _ecsv_name(self, t: pa.DataType) -> str:
        try:
            return _ECSV_NAMES[t]
        except KeyError:
            raise ValueError(
                f"column {self.name!r} has type {t}, which ECSV cannot hold; expected one of "
                f"{sorted(set(_ECSV_NAMES.values()))} or a list of them"
            ) from None


_ECSV_NAMES: dict[pa.DataType, str] = {
    pa.int8(): "int8",
    pa.int16(): "int16",
    pa.int32(): "int32",
    pa.int64(): "int64",
    pa.uint8(): "uint8",
    pa.uint16(): "uint16",
    pa.uint32(): "uint32",
    pa.uint64(): "uint64",
    pa.float16(): "float16",
    pa.float32(): "float32",
    pa.float64(): "float64",
    pa.bool_(): "bool",
    pa.string(): "string",
    pa.large_string(): "string",
}
ECSV_TYPES: dict[str, pa.DataType] = {
    "int8": pa.int8(),
    "int16": pa.int16(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "uint8": pa.uint8(),
    "uint16": pa.uint16(),
    "uint32": pa.uint32(),
    "uint64": pa.uint64(),
    "float16": pa.float16(),
    "float32": pa.float32(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "string": pa.string(),
}


def _xp_band_columns(band: str) -> list[ColumnSpec]:
    b = band.upper()
    return [
        ColumnSpec(
            f"{band}_basis_function_id",
            pa.int16(),
            description=f"Identifier defining the set of basis functions for the {b} spectrum representation",
            ucd="meta.id",
        ),
        ColumnSpec(
            f"{band}_degrees_of_freedom",
            pa.int16(),
            description=f"Degrees of freedom for the {b} spectrum representation",
            ucd="stat.fit.dof",
        ),
        ColumnSpec(
            f"{band}_n_parameters",
            pa.int16(),
            description=f"Number of parameters for the {b} spectrum representation",
            ucd="stat.fit.param",
        ),
        ColumnSpec(
            f"{band}_n_measurements",
            pa.int16(),
            description=f"Number of measurements used for the {b} spectrum generation",
            ucd="meta.number",
        ),
        ColumnSpec(
            f"{band}_n_rejected_measurements",
            pa.int16(),
            description=f"Number of rejected measurements in the {b} spectrum generation",
            ucd="meta.number",
        ),
        ColumnSpec(
            f"{band}_standard_deviation",
            pa.float32(),
            description=f"Standard deviation for the {b} spectrum representation",
            ucd="stat.stdev",
        ),
        ColumnSpec(
            f"{band}_chi_squared",
            pa.float32(),
            description=f"Chi squared for the {b} spectrum representation",
            ucd="stat.fit.chi2",
        ),
        ColumnSpec(
            f"{band}_coefficients",
            pa.list_(pa.float64()),
            description=f"Basis function coefficients for the {b} spectrum representation",
            ucd="stat.fit.param",
            required=True,
        ),
        ColumnSpec(
            f"{band}_coefficient_errors",
            pa.list_(pa.float32()),
            description=f"Basis function coefficient errors for the {b} spectrum representation",
            ucd="stat.error",
            required=True,
        ),
        ColumnSpec(
            f"{band}_coefficient_correlations",
            pa.list_(pa.float32()),
            description=f"Correlation matrix for {b} coefficients",
            ucd="stat.correlation",
        ),
        ColumnSpec(
            f"{band}_n_relevant_bases",
            pa.int16(),
            description=(
                f"Number of bases that are relevant for the representation of this mean {b} spectrum"
            ),
            ucd="meta.number",
        ),
        ColumnSpec(
            f"{band}_relative_shrinking",
            pa.float32(),
            description=(
                "Measure of the relative shrinking of the coefficient vector when truncation is "
                f"applied for the mean {b} spectrum"
            ),
            ucd="stat.fit.param",
        ),
    ]


XP_COLUMNS: tuple[ColumnSpec, ...] = (
    ColumnSpec(
        "source_id",
        pa.int64(),
        description="Unique source identifier (unique within a particular Data Release)",
        ucd="meta.id;meta.main",
        required=True,
    ),
    ColumnSpec("solution_id", pa.int64(), description="Solution Identifier", ucd="meta.version"),
    *_xp_band_columns("bp"),
    *_xp_band_columns("rp"),
)
"""The 26 columns of `gaiadr3.xp_continuous_mean_spectrum`, in Gaia order."""

XP_BY_NAME: dict[str, ColumnSpec] = {c.name: c for c in XP_COLUMNS}


def n_correlations(n_parameters: int) -> int:
    """Length of a strict-lower-triangle correlation vector for `n_parameters` coefficients."""
    return n_parameters * (n_parameters - 1) // 2


def xp_column_names(*, with_correlations: bool = False) -> list[str]:
    """XP column names in Gaia order, without the correlation columns unless asked."""
    return [
        c.name for c in XP_COLUMNS if with_correlations or not c.name.endswith("_coefficient_correlations")
    ]


def xp_schema(
    columns: list[str] | None = None, *, with_correlations: bool = False, read_problem: bool = True
) -> pa.Schema:
    """Arrow schema of the table returned by `read_xp_continuous` (Gaia order, then `read_problem`)."""
    names = columns if columns is not None else xp_column_names(with_correlations=with_correlations)
    fields = [pa.field(n, XP_BY_NAME[n].type) for n in names]
    if read_problem:
        fields.append(pa.field(READ_PROBLEM, pa.string()))
    return pa.schema(fields)


_E_S = "'electron'.s**-1"

GAIA_SOURCE_COLUMNS: tuple[ColumnSpec, ...] = (
    ColumnSpec(
        "source_id",
        pa.int64(),
        description="Unique source identifier (unique within a particular Data Release)",
        ucd="meta.id",
        required=True,
    ),
    ColumnSpec("ra", pa.float64(), "deg", "Right ascension", "pos.eq.ra;meta.main", required=True),
    ColumnSpec("dec", pa.float64(), "deg", "Declination", "pos.eq.dec;meta.main", required=True),
    ColumnSpec("l", pa.float64(), "deg", "Galactic longitude", "pos.galactic.lon"),
    ColumnSpec("b", pa.float64(), "deg", "Galactic latitude", "pos.galactic.lat"),
    ColumnSpec("ecl_lat", pa.float64(), "deg", "Ecliptic latitude", "pos.ecliptic.lat"),
    ColumnSpec("parallax", pa.float64(), "mas", "Parallax", "pos.parallax.trig", required=True),
    ColumnSpec(
        "parallax_error",
        pa.float32(),
        "mas",
        "Standard error of parallax",
        "stat.error;pos.parallax.trig",
        required=True,
    ),
    ColumnSpec("ruwe", pa.float32(), None, "Renormalised unit weight error", "stat.error"),
    ColumnSpec("phot_g_mean_flux", pa.float64(), _E_S, "G-band mean flux", "phot.flux;em.opt"),
    ColumnSpec(
        "phot_g_mean_flux_error",
        pa.float32(),
        _E_S,
        "Error on G-band mean flux",
        "stat.error;phot.flux;em.opt",
    ),
    ColumnSpec(
        "phot_g_mean_mag", pa.float32(), "mag", "G-band mean magnitude", "phot.mag;em.opt", required=True
    ),
    ColumnSpec("phot_bp_mean_mag", pa.float32(), "mag", "Integrated BP mean magnitude", "phot.mag;em.opt.B"),
    ColumnSpec("phot_rp_mean_mag", pa.float32(), "mag", "Integrated RP mean magnitude", "phot.mag;em.opt.R"),
    ColumnSpec("bp_rp", pa.float32(), "mag", "BP - RP colour", "phot.color;em.opt.B;em.opt.R"),
    ColumnSpec(
        "phot_bp_mean_flux_over_error",
        pa.float32(),
        None,
        "Integrated BP mean flux divided by its error",
        "stat.snr;phot.flux;em.opt.B",
    ),
    ColumnSpec(
        "phot_rp_mean_flux_over_error",
        pa.float32(),
        None,
        "Integrated RP mean flux divided by its error",
        "stat.snr;phot.flux;em.opt.R",
    ),
    ColumnSpec(
        "nu_eff_used_in_astrometry",
        pa.float32(),
        "um**-1",
        "Effective wavenumber of the source used in the astrometric solution",
        "em.wavenumber;stat.fit",
    ),
    ColumnSpec(
        "pseudocolour",
        pa.float32(),
        "um**-1",
        "Astrometrically estimated pseudocolour of the source",
        "em.wavenumber;stat.fit",
    ),
    ColumnSpec(
        "astrometric_params_solved",
        pa.int16(),
        None,
        "Which parameters have been solved for? (3 = 2-p, 31 = 5-p, 95 = 6-p solution)",
        "meta.number",
    ),
    ColumnSpec(
        "has_xp_continuous",
        pa.bool_(),
        None,
        "Flag indicating the availability of mean BP/RP spectrum in continuous representation for "
        "this source",
        "meta.code.status",
    ),
)
"""The `gaiadr3.gaia_source` columns the engine uses (REFERENCE §2), with their Gaia dtypes."""

GAIA_SOURCE_BY_NAME: dict[str, ColumnSpec] = {c.name: c for c in GAIA_SOURCE_COLUMNS}
GAIA_SOURCE_REQUIRED: tuple[str, ...] = tuple(c.name for c in GAIA_SOURCE_COLUMNS if c.required)


def gaia_source_schema(columns: list[str] | None = None) -> pa.Schema:
    """Arrow schema for the engine's gaia_source columns (all of them unless `columns` is given)."""
    names = columns if columns is not None else [c.name for c in GAIA_SOURCE_COLUMNS]
    return pa.schema([pa.field(n, GAIA_SOURCE_BY_NAME[n].type) for n in names])
