"""Columns an XP file holds beside its XP: the gaia_source, 2MASS and E(B−V) columns of an ADQL join
(`xp_continuous_mean_spectrum` with `gaia_source`, and `tmass_psc_xsc_best_neighbour` with
`tmass_original_valid` for J, H, Ks), or GaiaXPy's 18 Sco file with its `phot_g_mean_mag`.

The catalogue job, `xpengine features` and `read_xp_continuous(..., with_gaia_source=True)` use them for
each kind of side table not given otherwise (`--gaia-source`, `--tmass`, `--ebv`). Names must be the
archive's (lower case, no table prefix); look-alikes are named in a warning. 2MASS is taken when all six
of `TMASS_COLUMNS` are there; E(B−V) when `ebv` is (`ebv_error` optional).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from xpengine.io.gaia_source import read_gaia_source
from xpengine.io.schema import GAIA_SOURCE_COLUMNS, META_SOURCE, XP_BY_NAME
from xpengine.io.tables import EBV_COLUMNS, TMASS_COLUMNS

__all__ = [
    "embedded_columns",
    "kept_and_replaced",
    "read_embedded_columns",
    "split_embedded",
    "with_own_columns",
]

logger = logging.getLogger(__name__)
_reader_log = logging.getLogger("xpengine.io.xp_continuous")  # the readers' warning keeps their logger

KINDS = ("gaia_source", "2MASS", "E(B-V)")
"""The side tables an XP file's own columns can stand for, in the order of `embedded_columns`."""


def split_embedded(columns: list[str] | tuple[str, ...]) -> dict[str, list[str]]:
    """{kind: its columns} of a list of embedded columns (`KINDS`)."""
    out: dict[str, list[str]] = {k: [] for k in KINDS}
    for c in columns:
        kind = "2MASS" if c in TMASS_COLUMNS else "E(B-V)" if c in EBV_COLUMNS else "gaia_source"
        out[kind].append(c)
    return out


def kept_and_replaced(
    columns: list[str] | tuple[str, ...], given: dict[str, Any]
) -> tuple[list[str], dict[str, list[str]]]:
    """(the embedded `columns` kept, {kind: columns replaced}) where `given` names, per kind of `KINDS`,
    the table given for it otherwise (a path, a table; None or "" where none): a given table replaces the
    file's own columns of its kind (the job's plan and `xpengine features` both)."""
    kept: list[str] = []
    replaced: dict[str, list[str]] = {}
    for kind, cols in split_embedded(columns).items():
        if cols and given.get(kind) is not None and given.get(kind) != "":
            replaced[kind] = cols
        else:
            kept += cols
    return [c for c in columns if c in kept], replaced


def embedded_columns(
    source: str | os.PathLike[str], *, storage_options: dict[str, Any] | None = None
) -> list[str]:
    """The engine's gaia_source columns (G, parallax, RUWE, ...: `GAIA_SOURCE_COLUMNS`, in Gaia order), then
    2MASS's (all six) and E(B−V)'s, that an XP file holds beside its XP. Reads the file's header only
    (`formats.table_column_names`). [] for a file without `source_id` (a one-source XP_SAMPLED download)
    and a model-inputs file (it carries its own); a bulk XP partition holds none."""
    from xpengine.io.formats import table_column_names
    from xpengine.io.model_inputs import is_model_inputs

    if is_model_inputs(source, storage_options=storage_options):  # `xpengine compact` output: its own
        return []
    in_file = set(table_column_names(source, storage_options))
    if "source_id" not in in_file:  # nothing to match them by
        return []
    own = [
        c.name
        for c in GAIA_SOURCE_COLUMNS
        if c.name in in_file and c.name != "source_id" and c.name not in XP_BY_NAME
    ]
    tmass = [c for c in TMASS_COLUMNS if c in in_file]
    if len(tmass) == len(TMASS_COLUMNS):
        own += tmass
    elif tmass:
        logger.warning(
            "%s holds 2MASS column(s) %s but not all of %s: not used (give a --tmass table)",
            os.fspath(source),
            tmass,
            list(TMASS_COLUMNS),
        )
    if "ebv" in in_file:
        own += [c for c in EBV_COLUMNS if c in in_file]
    elif "ebv_error" in in_file:
        logger.warning("%s holds ebv_error but no ebv column: not used", os.fspath(source))
    _warn_look_alikes(os.fspath(source), in_file)
    return own


def _warn_look_alikes(url: str, in_file: set[str]) -> None:
    """Warn about columns that look like the engine's but are not named so (`PHOT_G_MEAN_MAG`,
    `gaia_source.parallax`, `J_M`): not used."""
    engine = {c.name for c in GAIA_SOURCE_COLUMNS} | set(XP_BY_NAME) | set(TMASS_COLUMNS) | set(EBV_COLUMNS)
    near = {
        name: key
        for name in sorted(in_file)
        if name not in engine and (key := name.rsplit(".", 1)[-1].lower()) in engine and key not in in_file
    }
    if near:
        logger.warning(
            "%s: column(s) %s look like %s but are not named so: not used (rename them to the archive's "
            "lower-case names, without a table prefix)",
            url,
            sorted(near),
            sorted(set(near.values())),
        )


def read_embedded_columns(
    source: str | os.PathLike[str],
    *,
    columns: list[str] | tuple[str, ...] | None = None,
    storage_options: dict[str, Any] | None = None,
) -> pa.Table | None:
    """The `columns` (default: all of `embedded_columns`) an XP file holds beside its XP, as a table:
    `source_id`, the columns (gaia_source's with their Gaia dtypes, 2MASS and E(B−V) float32), then
    `read_problem` (unreadable values null and reported, as `io.iter_gaia_source` does). None when there
    are none. Columns the file lacks are absent (not measured: no parallax column, no parallax token).

    A file with one row per wavelength (the archive's long-layout XP_SAMPLED) repeats a source's values
    on each of its rows, and a join through a cross-match can repeat a source: one row per source, the
    first row's values (a disagreement is logged, naming the source, the data row and the column).

    Raises
    ------
    GaiaFileError : what `io.iter_gaia_source` raises.
    """
    if columns is None:
        columns = embedded_columns(source, storage_options=storage_options)
    columns = list(columns)
    if not columns:
        return None
    floats = {c: pa.float32() for c in columns if c in TMASS_COLUMNS or c in EBV_COLUMNS}
    table = read_gaia_source(source, columns=columns, storage_options=storage_options, types=floats)
    ids = np.asarray(table.column("source_id"), dtype=np.int64)
    first_of_row = _first_rows(ids)  # (N,)
    first = np.unique(first_of_row)  # each source's first row, in the file's order
    if len(first) == len(ids):
        return table
    meta = table.schema.metadata or {}
    url = meta.get(META_SOURCE, os.fspath(source).encode()).decode()
    rep = table.take(pa.array(first_of_row))
    for name in columns:
        same = pc.fill_null(pc.equal(table.column(name), rep.column(name)), False)
        both_null = pc.and_(table.column(name).is_null(), rep.column(name).is_null())
        bad = ~np.asarray(pc.or_(same, both_null))
        if bad.any():
            # a join through a cross-match can repeat a source with other values: the job keeps a
            # source's first row (its other rows go to `_rejected/`), and so do its columns here
            row = int(np.flatnonzero(bad)[0])
            logger.warning(
                "%s: source %d has rows with different %s values (data row %d differs from its first row); "
                "the first row's values are used for all of its rows (%d row(s) differ in this column)",
                url,
                ids[row],
                name,
                row + 1,
                int(bad.sum()),
            )
    return table.take(pa.array(first))


def with_own_columns(
    table: pa.Table,
    source: Any,
    with_gaia_source: bool | list[str] | tuple[str, ...],
    reader: str,
    storage_options: dict[str, Any] | None = None,
) -> pa.Table:
    """An XP reader's table (`reader`: its name, for the warning) with the columns its file holds beside
    the XP joined on (`with_gaia_source` True: all of `embedded_columns`; a list: those), labelled "XP file"
    in `read_problem`; False: the table as it is, with a warning naming such columns. A source that is not
    a file (an in-memory table) has none."""
    if not isinstance(source, str | os.PathLike):
        return table
    if with_gaia_source is False:
        url = (table.schema.metadata or {}).get(META_SOURCE, os.fspath(source).encode()).decode()
        _warn_gaia_source_columns(url, embedded_columns(source, storage_options=storage_options), reader)
        return table
    own = (
        embedded_columns(source, storage_options=storage_options)
        if with_gaia_source is True
        else list(with_gaia_source)
    )
    gaia = read_embedded_columns(source, columns=own, storage_options=storage_options) if own else None
    if gaia is None:
        return table
    from xpengine.io.tables import join_sources

    return join_sources(table, gaia, gaia_label="XP file")


def _warn_gaia_source_columns(url: str, embedded: list[str], reader: str = "read_xp_continuous") -> None:
    """Warn that `reader` left out the gaia_source (G, parallax, RUWE, ra/dec, ...), 2MASS or E(B−V)
    columns an XP file holds beside its XP: a catalogue made from its table alone would treat the stars
    as having none (flags G_FROM_XP, NO_PARALLAX, NO_2MASS; no distance prior without ra/dec) without
    saying why."""
    if embedded:
        _reader_log.warning(
            "%s holds gaia_source / 2MASS / E(B-V) column(s) %s beside its XP, left out of this table: read it with "
            "%s(..., with_gaia_source=True), or give them to Predictor.from_xp (g_mag=, parallax=, ...). The "
            "job and `xpengine features` use them for each kind of table not given otherwise",
            url,
            embedded,
            reader,
        )


def _first_rows(ids: np.ndarray) -> np.ndarray:
    """(N,) index of the first row with each row's source_id."""
    _, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    return first[inverse]
