"""Gaia DR3 readers and writers.

Reading (any of: bulk `*.csv.gz` ECSV, archive CSV/ECSV, FITS, VOTable, Parquet; local or fsspec URL):
- `read_xp_continuous` / `iter_xp_continuous`: `gaiadr3.xp_continuous_mean_spectrum` rows (a file of
  sampled spectra is recognised and read by `read_xp_sampled` into the same table).
- `read_xp_sampled` / `iter_xp_sampled`: archive `XP_SAMPLED` / `XpSampledMeanSpectrum` and GaiaXPy
  `calibrate` output (files or in-memory tables) as projected coefficients (`xpengine.spectra`).
- `read_gaia_source` / `iter_gaia_source`: the `gaiadr3.gaia_source` columns the engine needs;
  `read_embedded_columns`: those (and 2MASS, E(B−V)) an XP file holds beside its XP (an ADQL join).
- `read_table`: any other table (2MASS, E(B−V)), `join_sources`: left join on source_id.
- `read_fits_columns` / `open_fits_table`: large local FITS tables (APOGEE allStar, DistMass, the
  APOGEE×XP file) memory-mapped, as numpy columns.
- `discover_partitions`: pair bulk XP and GaiaSource partition files; `read_md5sums`, `verify_md5sums`.
Writing:
- `write_bulk_xp_continuous`, `write_bulk_gaia_source`: the Gaia bulk-download layout.
- `write_model_inputs` / `read_model_inputs`: compact Parquet of what the model needs
  (`ModelInputsWriter` chunk by chunk; `is_model_inputs`, `iter_model_inputs` for the catalogue job;
  `xpengine compact` converts bulk partitions into `ModelInputs_AAAAAA-BBBBBB.parquet`).
- `OutputTarget`: refuse an existing output unless asked, write under a temporary name, rename on
  success (`with OutputTarget(path, overwrite, hint="--overwrite") as tmp: ...`).
- `file_written_atomically`, `write_bytes_atomically`, `write_text_atomically`,
  `directory_written_atomically` (`xpengine.io.atomic`): the same for local files and directories.
Maths: `covariance_from_correlations`, `list_column_to_numpy`.
Row-level problems (an unreadable value, a NaN/inf/absurd coefficient, a wrong-length array) never
fail a file: the row is kept, the value (or the band) null, and `read_problem` says what, where.
`coefficient_counts` (and the `xpengine.n_coefficients` schema metadata of the XP reader) tells the
coefficient counts of a table (Gaia DR3: 55 per band; DR4: 51 for BP).
"""

from xpengine.io._arrays import list_column_to_numpy
from xpengine.io._source import OutputTarget
from xpengine.io._xp_rows import coefficient_counts
from xpengine.io.atomic import (
    directory_written_atomically,
    file_written_atomically,
    write_bytes_atomically,
    write_text_atomically,
)
from xpengine.io.bulk import write_bulk_gaia_source, write_bulk_xp_continuous
from xpengine.io.embedded import embedded_columns, read_embedded_columns
from xpengine.io.errors import GaiaFileError
from xpengine.io.fits_tables import open_fits_table, read_fits_columns
from xpengine.io.formats import identify_format
from xpengine.io.gaia_source import iter_gaia_source, read_gaia_source
from xpengine.io.model_inputs import (
    ModelInputsWriter,
    is_model_inputs,
    iter_model_inputs,
    model_inputs_provenance,
    model_inputs_table,
    read_model_inputs,
    write_model_inputs,
)
from xpengine.io.partitions import (
    Partition,
    discover_partitions,
    md5_of,
    read_md5sums,
    sha256_of,
    verify_md5sums,
)
from xpengine.io.schema import (
    DR3_N_COEFFICIENTS,
    GAIA_SOURCE_COLUMNS,
    GAIA_SOURCE_REQUIRED,
    MAX_ABS_XP_COEFFICIENT,
    READ_PROBLEM,
    XP_COLUMNS,
    gaia_source_schema,
    xp_column_names,
    xp_schema,
)
from xpengine.io.tables import EBV_COLUMNS, TMASS_COLUMNS, join_sources, read_table
from xpengine.io.xp_continuous import covariance_from_correlations, iter_xp_continuous, read_xp_continuous
from xpengine.io.xp_sampled import iter_xp_sampled, read_xp_sampled, sampled_layout

__all__ = [
    "DR3_N_COEFFICIENTS",
    "EBV_COLUMNS",
    "GAIA_SOURCE_COLUMNS",
    "GAIA_SOURCE_REQUIRED",
    "MAX_ABS_XP_COEFFICIENT",
    "READ_PROBLEM",
    "TMASS_COLUMNS",
    "XP_COLUMNS",
    "GaiaFileError",
    "ModelInputsWriter",
    "OutputTarget",
    "Partition",
    "coefficient_counts",
    "covariance_from_correlations",
    "directory_written_atomically",
    "discover_partitions",
    "embedded_columns",
    "file_written_atomically",
    "gaia_source_schema",
    "identify_format",
    "is_model_inputs",
    "iter_gaia_source",
    "iter_model_inputs",
    "iter_xp_continuous",
    "iter_xp_sampled",
    "join_sources",
    "list_column_to_numpy",
    "md5_of",
    "model_inputs_provenance",
    "model_inputs_table",
    "open_fits_table",
    "read_embedded_columns",
    "read_fits_columns",
    "read_gaia_source",
    "read_md5sums",
    "read_model_inputs",
    "read_table",
    "read_xp_continuous",
    "read_xp_sampled",
    "sampled_layout",
    "sha256_of",
    "verify_md5sums",
    "write_bulk_gaia_source",
    "write_bulk_xp_continuous",
    "write_bytes_atomically",
    "write_model_inputs",
    "write_text_atomically",
    "xp_column_names",
    "xp_schema",
]
